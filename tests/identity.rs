//! Identity and trust with real processes (issue 12, items 2, 3 and 6): pinned connection
//! strings, trust on first use (a known name or pinned address with another identity is
//! refused with a warning), a safety number that lasts across restarts, `block`, and
//! `new-secret` while running. Loopback only, mDNS off, headless.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use noctua::face::headless::{Event, EventLine};
use support::NodeProc;

fn data_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "noctua-test-identity-{tag}-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&d).expect("mkdir");
    d
}

/// A headless node on 127.0.0.1 (any port, unless `extra` has a `--listen`); with
/// `profile`, under `dir`.
fn start(name: &str, profile: Option<(&Path, &str)>, extra: &[&str]) -> NodeProc {
    let mut args: Vec<String> = ["--id", name, "--no-mdns", "--headless"]
        .iter()
        .map(ToString::to_string)
        .collect();
    if !extra.contains(&"--listen") {
        args.extend(["--listen".into(), "/ip4/127.0.0.1/tcp/0".into()]);
    }
    if let Some((dir, p)) = profile {
        args.extend([
            "--profile".into(),
            p.into(),
            "--data-dir".into(),
            dir.display().to_string(),
        ]);
    }
    args.extend(extra.iter().map(ToString::to_string));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    NodeProc::start_args(name, &refs)
}

fn event(line: &str) -> Event {
    EventLine::parse(line)
        .unwrap_or_else(|e| panic!("not an event ({e}): {line}"))
        .event
}

/// (peer id, first connection string, first pinned string).
fn ready(node: &mut NodeProc) -> (String, String, String) {
    let line = node.expect_contains("\"event\":\"ready\"");
    let Event::Ready {
        peer_id,
        conn_strings,
        pinned_conn_strings,
        ..
    } = event(&line)
    else {
        panic!("not ready: {line}")
    };
    (
        peer_id,
        conn_strings[0].clone(),
        pinned_conn_strings[0].clone(),
    )
}

fn stop(mut node: NodeProc, code: i32) {
    node.send("exit");
    let status = node.wait_exit(Duration::from_secs(20));
    assert_eq!(status.code(), Some(code), "{}", node.name);
}

/// `verify who` on `node`: (number, lasts, trust).
fn verify(node: &mut NodeProc, who: &str) -> (String, bool, String) {
    node.send(&format!("verify {who}"));
    let line = node.expect_contains("\"event\":\"verify\"");
    let Event::Verify {
        safety_number,
        lasts,
        trust,
        ..
    } = event(&line)
    else {
        panic!("not verify: {line}")
    };
    (safety_number, lasts, trust)
}

#[test]
fn a_pinned_string_refuses_another_identity_at_that_address() {
    let mut alice = start("Alice", None, &[]);
    let (_, alice_conn, alice_pinned) = ready(&mut alice);
    let mut carol = start("Carol", None, &[]);
    let (carol_id, _, _) = ready(&mut carol);
    let mut bob = start("Bob", None, &[]);
    ready(&mut bob);

    // Alice's address and secret, Carol's identity: not the peer Bob was given.
    let wrong = format!("{alice_conn}:{carol_id}");
    bob.send(&format!("connect {wrong}"));
    let failed = bob.expect_contains("\"event\":\"connect_failed\"");
    assert!(
        failed.contains("this is not the peer you were given") && failed.contains(&carol_id),
        "{failed}"
    );
    // The right pin works.
    bob.send(&format!("connect {alice_pinned}"));
    bob.expect_contains("\"event\":\"session_established\"");
    alice.expect_contains("\"event\":\"session_established\"");
    stop(bob, 3);
    stop(alice, 0);
    stop(carol, 0);
}

#[test]
fn a_known_name_with_another_identity_is_refused_with_a_warning() {
    let dir = data_dir("name");
    let mut alice = start("Alice", Some((&dir, "alice")), &[]);
    let (_, alice_conn, _) = ready(&mut alice);
    // The real Bob keeps his identity: Alice pins the name Bob to it.
    let mut bob = start("Bob", Some((&dir, "bob")), &[]);
    let (bob_id, _, _) = ready(&mut bob);
    bob.send(&format!("connect {alice_conn}"));
    bob.expect_contains("\"event\":\"session_established\"");
    alice.expect_contains("\"event\":\"session_established\"");
    alice.send("peers");
    let peers = alice.expect_contains("\"event\":\"peers\"");
    assert!(peers.contains("\"trust\":\"pinned\""), "{peers}");
    stop(bob, 0);
    alice.expect_contains("\"event\":\"session_closed\"");

    // Someone else calls itself Bob.
    let mut fake = start("Bob", Some((&dir, "mallory")), &[]);
    let (fake_id, _, _) = ready(&mut fake);
    fake.send(&format!("connect {alice_conn}"));
    let warning = alice.expect_contains("\"event\":\"identity_warning\"");
    let Event::IdentityWarning {
        peer_id,
        name,
        known_peer_id,
        ..
    } = event(&warning)
    else {
        panic!("{warning}")
    };
    assert_eq!(
        (peer_id.as_str(), name.as_str(), known_peer_id.as_str()),
        (fake_id.as_str(), "Bob", bob_id.as_str())
    );
    // Whatever it sends is not shown; Alice still answers commands in order.
    fake.send("I am Bob, really");
    fake.expect("the message not delivered", |l| {
        l.contains("\"event\":\"delivery_failed\"") || l.contains("\"event\":\"error\"")
    });
    alice.send("sessions");
    let sessions = alice.expect_contains("\"event\":\"sessions\"");
    assert!(!sessions.contains(&fake_id), "{sessions}");
    assert!(
        !alice
            .seen
            .iter()
            .any(|l| l.contains("\"event\":\"message\"")),
        "{:?}",
        alice.seen
    );
    assert!(
        !alice
            .seen
            .iter()
            .any(|l| l.contains("\"event\":\"session_established\"") && l.contains(&fake_id)),
        "{:?}",
        alice.seen
    );

    stop(fake, 4);
    stop(alice, 0);
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

#[test]
fn the_lasting_safety_number_and_trust_survive_a_restart() {
    let dir = data_dir("trust");
    let mut alice = start("Alice", Some((&dir, "alice")), &[]);
    let (_, alice_conn, alice_pinned) = ready(&mut alice);
    let mut bob = start("Bob", Some((&dir, "bob")), &[]);
    ready(&mut bob);
    bob.send(&format!("connect {alice_pinned}"));
    bob.expect_contains("\"event\":\"session_established\"");
    let up = alice.expect_contains("\"event\":\"session_established\"");
    // The session's own line says the number lasts, and that it was not compared yet.
    assert!(
        up.contains("\"lasts\":true") && !up.contains("\"verified\""),
        "{up}"
    );
    let (number, lasts, trust) = verify(&mut alice, "Bob");
    assert!(lasts, "both keep their identity");
    assert_eq!(trust, "pinned");
    let (bobs_view, _, _) = verify(&mut bob, "Alice");
    assert_eq!(bobs_view, number, "the same on both sides");
    alice.send("trust Bob");
    alice.expect_contains("\"event\":\"trusted\"");
    stop(bob, 0);
    stop(alice, 0);

    // Both restart: the same strings, the same number, still verified.
    let mut alice = start("Alice", Some((&dir, "alice")), &[]);
    let (_, conn_again, _) = ready(&mut alice);
    assert_eq!(conn_again, alice_conn);
    let mut bob = start("Bob", Some((&dir, "bob")), &[]);
    ready(&mut bob);
    bob.send(&format!("connect {alice_conn}"));
    bob.expect_contains("\"event\":\"session_established\"");
    let up = alice.expect_contains("\"event\":\"session_established\"");
    // Verified once: the new session says so itself, no need to compare again.
    assert!(
        up.contains("\"lasts\":true,") && up.contains("\"verified\":true"),
        "{up}"
    );
    let (again, lasts, trust) = verify(&mut alice, "Bob");
    assert_eq!(again, number);
    assert!(lasts);
    assert_eq!(trust, "verified");

    // An ephemeral peer gets a per-session number, and nothing to trust.
    let mut eph = start("Eve", None, &[]);
    ready(&mut eph);
    eph.send(&format!("connect {alice_conn}"));
    eph.expect_contains("\"event\":\"session_established\"");
    let up = alice.expect_contains("\"event\":\"session_established\"");
    assert!(
        !up.contains("\"lasts\"") && !up.contains("\"verified\""),
        "{up}"
    );
    let (_, lasts, trust) = verify(&mut alice, "Eve");
    assert!(!lasts);
    assert_eq!(trust, "new");
    alice.send("trust Eve");
    let err = alice.expect_contains("\"event\":\"error\"");
    assert!(err.contains("per session"), "{err}");
    stop(eph, 0);
    stop(bob, 0);
    stop(alice, 3);
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

#[test]
fn block_closes_refuses_and_lasts_and_unblock_lets_in() {
    let dir = data_dir("block");
    let mut alice = start("Alice", Some((&dir, "alice")), &[]);
    let (_, alice_conn, _) = ready(&mut alice);
    let mut bob = start("Bob", Some((&dir, "bob")), &[]);
    let (bob_id, bob_conn, bob_pinned) = ready(&mut bob);
    bob.send(&format!("connect {alice_conn}"));
    bob.expect_contains("\"event\":\"session_established\"");
    alice.expect_contains("\"event\":\"session_established\"");
    alice.send("block Bob");
    alice.expect_contains("\"event\":\"blocked\"");
    bob.expect_contains("\"event\":\"session_closed\"");
    // Connecting to a blocked peer does not lift the block, whether the string names the
    // identity or only the address: only `unblock` does.
    for target in [&bob_pinned, &bob_conn] {
        alice.send(&format!("connect {target}"));
        let refused = alice.expect_contains("\"event\":\"error\"");
        assert!(refused.contains("Bob is blocked"), "{refused}");
    }
    bob.send(&format!("connect {alice_conn}"));
    let failed = bob.expect_contains("\"event\":\"connect_failed\"");
    assert!(failed.contains("refused"), "{failed}");
    // 3: her two connects to the blocked Bob failed (README, "Exit status").
    stop(alice, 3);

    // Still blocked after a restart, and listed so (though away).
    let mut alice = start("Alice", Some((&dir, "alice")), &[]);
    ready(&mut alice);
    alice.send("peers");
    let peers = alice.expect_contains("\"event\":\"peers\"");
    let Event::Peers { peers } = event(&peers) else {
        panic!("{peers}")
    };
    let row = peers
        .iter()
        .find(|p| p.peer_id == bob_id)
        .expect("Bob is listed");
    assert_eq!(
        (row.trust.as_str(), row.name.as_deref(), row.connected),
        ("blocked", Some("Bob"), false)
    );
    bob.send(&format!("connect {alice_conn}"));
    let failed = bob.expect_contains("\"event\":\"connect_failed\"");
    assert!(failed.contains("refused"), "{failed}");
    alice.send("unblock Bob");
    alice.expect_contains("\"event\":\"unblocked\"");
    bob.send(&format!("connect {alice_conn}"));
    bob.expect_contains("\"event\":\"session_established\"");
    stop(bob, 3);
    stop(alice, 0);
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

#[test]
fn a_new_secret_while_running_keeps_sessions_and_refuses_the_old_string() {
    let mut alice = start("Alice", None, &[]);
    let (_, old_conn, _) = ready(&mut alice);
    let mut bob = start("Bob", None, &[]);
    ready(&mut bob);
    bob.send(&format!("connect {old_conn}"));
    bob.expect_contains("\"event\":\"session_established\"");
    alice.expect_contains("\"event\":\"session_established\"");

    alice.send("new-secret");
    let changed = alice.expect_contains("\"event\":\"secret_changed\"");
    let Event::SecretChanged {
        conn_strings,
        saved,
        ..
    } = event(&changed)
    else {
        panic!("{changed}")
    };
    assert!(!saved, "no profile");
    assert_ne!(conn_strings[0], old_conn);
    // The session stays.
    bob.send("still here");
    bob.expect_contains("\"event\":\"delivered\"");

    let mut carol = start("Carol", None, &[]);
    ready(&mut carol);
    carol.send(&format!("connect {old_conn}"));
    let failed = carol.expect_contains("\"event\":\"connect_failed\"");
    assert!(failed.contains("wrong secret"), "{failed}");
    carol.send(&format!("connect {}", conn_strings[0]));
    carol.expect_contains("\"event\":\"session_established\"");
    stop(carol, 3);
    stop(bob, 0);
    stop(alice, 0);
}

#[test]
fn another_identity_at_a_pinned_address_is_refused_with_a_warning_in_words() {
    let dir = data_dir("addr");
    let d = dir.display().to_string();
    // Alice in the terminal (piped): the warning as a person reads it.
    let mut alice = NodeProc::start_args(
        "Alice",
        &[
            "--id",
            "Alice",
            "--no-mdns",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--profile",
            "alice",
            "--data-dir",
            &d,
        ],
    );
    alice.conn_string();
    let mut bob = start("Bob", Some((&dir, "bob")), &[]);
    let (bob_id, bob_conn, _) = ready(&mut bob);
    alice.send(&format!("connect {bob_conn}"));
    alice.expect_contains("[+] Bob connected");
    stop(bob, 0);
    alice.expect("Bob's goodbye", |l| l.contains("[-]") && l.contains("Bob"));

    // Carol, another lasting identity, now answers at Bob's address.
    let port = bob_conn.split(':').nth(1).expect("port");
    let listen = format!("/ip4/127.0.0.1/tcp/{port}");
    let mut carol = start("Carol", Some((&dir, "carol")), &["--listen", &listen]);
    let (carol_id, carol_conn, _) = ready(&mut carol);
    assert!(
        carol_conn.starts_with(&format!("127.0.0.1:{port}:")),
        "{carol_conn}"
    );
    alice.send(&format!("connect {carol_conn}"));
    let warning = alice.expect_contains("WARNING: Bob (");
    assert!(
        warning.contains("is known with another identity")
            && warning.contains(&format!("127.0.0.1/tcp/{port}"))
            && warning.contains(&carol_id[carol_id.len() - 6..])
            && warning.contains(&bob_id[bob_id.len() - 6..])
            && warning.contains("Session refused")
            && warning.contains("`forget Bob`"),
        "{warning}"
    );
    // After `forget Bob`, the address is free to belong to Carol.
    alice.send("forget Bob");
    alice.expect_contains("is forgotten");
    alice.send(&format!("connect {carol_conn}"));
    alice.expect_contains("[+] Carol connected");
    stop(carol, 0);
    stop(alice, 0);
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

/// A connect that rides on a connection the peer had opened to us (Bob connected first;
/// Alice disconnected him, then connects to his pinned string) still records the address
/// Alice dialed in her profile: without it she could not reconnect to him after a
/// restart. (Found by hand: the profile kept `addrs = []`.)
#[test]
fn a_connect_on_the_peers_own_connection_still_records_the_dialed_address() {
    let dir = data_dir("dialed");
    let mut alice = start("Alice", Some((&dir, "alice")), &[]);
    let (_, alice_conn, _) = ready(&mut alice);
    let mut bob = start("Bob", Some((&dir, "bob")), &[]);
    let (_, bob_conn, bob_pinned) = ready(&mut bob);
    bob.send(&format!("connect {alice_conn}"));
    bob.expect_contains("\"event\":\"session_established\"");
    alice.expect_contains("\"event\":\"session_established\"");
    alice.send("disconnect Bob");
    alice.expect_contains("\"event\":\"disconnected\"");
    bob.expect_contains("\"event\":\"session_closed\"");
    alice.send(&format!("connect {bob_pinned}"));
    alice.expect_contains("\"event\":\"session_established\"");
    // host:port of Bob's string, as a multiaddr's parts.
    let mut parts = bob_conn.split(':');
    let (host, port) = (parts.next().expect("host"), parts.next().expect("port"));
    let peers = std::fs::read_to_string(dir.join("profiles/alice/peers.toml")).expect("peers");
    let addrs = peers
        .lines()
        .find(|l| l.starts_with("addrs"))
        .unwrap_or_else(|| panic!("no addrs in {peers}"));
    assert!(
        addrs.contains(&format!("/ip4/{host}/tcp/{port}")),
        "Bob's address is not recorded: {addrs}"
    );
    stop(bob, 0);
    stop(alice, 0);
    std::fs::remove_dir_all(&dir).expect("cleanup");
}
