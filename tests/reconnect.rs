//! Issue 12 items 4-6, with real processes: a session that drops is re-opened by the side
//! that knows the other's secret, messages typed meanwhile are queued and delivered once
//! with their receipts, an outbox that expires reports each message once, and `disconnect`
//! keeps a peer out.
//!
//! Loopback, mDNS off; the link-cut case runs in network namespaces this test creates
//! (named `node-<pid>-...`, deleted at the end), skipped with a message without root
//! unless `NOCTUA_REQUIRE_NETNS=1`.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{NodeProc, ip, netns_or_skip};

/// Keep-alives every second, two seconds to answer: a frozen peer is found out in ~3 s.
const FAST: &[&str] = &["--keepalive", "1s", "--request-timeout", "2s"];

fn signal(node: &NodeProc, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &node.pid().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill {sig} {}", node.pid());
}

fn start(name: &str, secret: &str, extra: &[&str]) -> NodeProc {
    let mut args: Vec<&str> = FAST.to_vec();
    args.extend_from_slice(extra);
    NodeProc::start(name, secret, &args)
}

/// Lines of `node` seen so far that contain `needle`.
fn count(node: &NodeProc, needle: &str) -> usize {
    node.seen.iter().filter(|l| l.contains(needle)).count()
}

/// The headless event of `node` next satisfying `pred`.
fn event(node: &mut NodeProc, kind: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let kind_s = kind.to_string();
    let line = node.expect(&format!("a {kind} event"), move |l| {
        serde_json::from_str::<Value>(l).is_ok_and(|v| v["event"] == kind_s.as_str() && pred(&v))
    });
    serde_json::from_str(&line).expect("json")
}

fn events<'a>(node: &'a NodeProc, kind: &'a str) -> impl Iterator<Item = Value> + 'a {
    node.seen
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(move |v| v["event"] == kind)
}

/// Alice dials Bob (so Alice knows Bob's secret); both see the session.
fn pair(alice: &mut NodeProc, bob: &mut NodeProc) {
    let cs = bob.conn_string();
    alice.send(&format!("connect {cs}"));
    alice.expect_contains("[+] Bob connected");
    bob.expect_contains("[+] Alice connected to you");
}

#[test]
fn a_frozen_peer_is_reconnected_by_itself_and_outage_messages_arrive_once() {
    let mut bob = start("Bob", "bob-secret-for-reconnect-1", &[]);
    let mut alice = start("Alice", "alice-secret-for-reconnect-1", &[]);
    pair(&mut alice, &mut bob);

    signal(&bob, "-STOP");
    let frozen = Instant::now();
    alice.expect_contains("Bob disconnected: the peer stopped answering");
    alice.expect_contains("reconnecting to Bob (attempt 1");
    alice.send("msg Bob typed during the outage");
    alice.send("msg Bob and a second one");
    alice.expect_contains("\"typed during the outage\" queued for Bob (1 waiting)");
    alice.expect_contains("\"and a second one\" queued for Bob (2 waiting)");
    alice.send("sessions");
    alice.expect_contains("2 message(s) queued");
    // Let a failed attempt or two go by before the peer comes back.
    alice.expect_contains("reconnecting to Bob (attempt 2");
    signal(&bob, "-CONT");
    eprintln!("Bob frozen for {:?}", frozen.elapsed());

    alice.expect_within(Duration::from_secs(90), "Bob back", |l| {
        l.contains("[+] Bob connected")
    });
    alice.expect_all(&[
        "\"typed during the outage\" delivered to Bob",
        "\"and a second one\" delivered to Bob",
    ]);
    bob.expect_contains("Alice (private): typed during the outage");
    bob.expect_contains("Alice (private): and a second one");
    // Once each: a message that is not sent twice is not received twice.
    alice.send("msg Bob after");
    bob.expect_contains("Alice (private): after");
    assert_eq!(count(&bob, "typed during the outage"), 1, "{:?}", bob.seen);
    assert_eq!(count(&bob, "and a second one"), 1, "{:?}", bob.seen);
    // And in the order typed.
    let order: Vec<usize> = ["typed during the outage", "and a second one", "after"]
        .iter()
        .map(|n| bob.seen.iter().position(|l| l.contains(n)).expect("seen"))
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");
    assert_eq!(count(&alice, "not delivered"), 0, "{:?}", alice.seen);

    alice.send("exit");
    alice.wait_exit(Duration::from_secs(20));
}

#[test]
fn an_expiring_outbox_reports_each_message_once() {
    let mut bob = start("Bob", "bob-secret-for-reconnect-2", &[]);
    let mut alice = start(
        "Alice",
        "alice-secret-for-reconnect-2",
        &["--headless", "--outbox-ttl", "2s"],
    );
    let cs = bob.conn_string();
    alice.send(&format!("connect {cs}"));
    let up = event(&mut alice, "session_established", |_| true);
    let bob_id = up["peer_id"].as_str().expect("peer id").to_string();

    // Bob is gone for good: Alice tries again and again, and queues meanwhile.
    drop(bob);
    let r = event(&mut alice, "reconnecting", |_| true);
    assert_eq!(r["peer_id"], bob_id.as_str());
    assert_eq!(r["attempt"], 1);
    assert!(r["next_in_ms"].as_u64().expect("next_in_ms") <= 1250, "{r}");
    alice.send("msg Bob first");
    alice.send("broadcast second");
    let q1 = event(&mut alice, "queued", |_| true);
    let q2 = event(&mut alice, "queued", |_| true);
    assert_eq!(
        (q1["waiting"].as_u64(), q2["waiting"].as_u64()),
        (Some(1), Some(2))
    );
    let ids = [q1["id"].as_u64(), q2["id"].as_u64()];
    assert_ne!(ids[0], ids[1]);

    let mut reported = Vec::new();
    for _ in 0..2 {
        let nd = event(&mut alice, "not_delivered", |_| true);
        assert_eq!(nd["reason"], "expired", "{nd}");
        assert_eq!(nd["peer_id"], bob_id.as_str());
        assert!(
            nd["message"]
                .as_str()
                .is_some_and(|m| m.contains("did not come back within 2 s")),
            "{nd}"
        );
        reported.push(nd["id"].as_u64());
    }
    assert_eq!(reported, ids, "in the order typed");

    // Reported once: not again later, nor when leaving.
    alice.send("msg Bob third");
    event(&mut alice, "queued", |v| v["waiting"] == 1);
    alice.send("exit");
    let last = event(&mut alice, "not_delivered", |_| true);
    assert_eq!(last["reason"], "exit", "{last}");
    alice.expect("stopped", |l| l.contains("\"event\":\"stopped\""));
    alice.wait_exit(Duration::from_secs(20));
    let all: Vec<Value> = events(&alice, "not_delivered").collect();
    assert_eq!(all.len(), 3, "{all:?}");
    assert_eq!(events(&alice, "delivered").count(), 0);
}

#[test]
fn the_side_without_the_secret_waits_and_queues() {
    let mut bob = start("Bob", "bob-secret-for-reconnect-3", &[]);
    let mut alice = start("Alice", "alice-secret-for-reconnect-3", &[]);
    pair(&mut alice, &mut bob);
    // Bob cannot dial Alice (he never had her secret): he waits for her.
    signal(&alice, "-STOP");
    bob.expect_contains("waiting for Alice to reconnect");
    bob.send("msg Alice are you there");
    bob.expect_contains("\"are you there\" queued for Alice");
    bob.send("peers");
    bob.expect_contains("waiting for it to reconnect, 1 message(s) queued");
    signal(&alice, "-CONT");
    bob.expect_within(Duration::from_secs(90), "Alice back", |l| {
        l.contains("[+] Alice connected to you")
    });
    bob.expect_contains("\"are you there\" delivered to Alice");
    alice.expect_contains("Bob (private): are you there");
    assert_eq!(count(&alice, "are you there"), 1);
}

#[test]
fn a_peer_that_says_goodbye_is_not_reconnected() {
    let mut bob = start("Bob", "bob-secret-for-reconnect-4", &[]);
    let mut alice = start("Alice", "alice-secret-for-reconnect-4", &[]);
    pair(&mut alice, &mut bob);
    bob.send("disconnect Alice");
    bob.expect_contains("disconnected Alice");
    alice.expect_contains("Bob disconnected: the peer closed the session");
    alice.send("msg Bob still there?");
    alice.expect_contains("no session");
    assert_eq!(count(&alice, "reconnecting"), 0, "{:?}", alice.seen);
}

#[test]
fn after_disconnect_the_peer_is_refused_until_we_connect_to_it_again() {
    // Issue 12 item 6, as a user tried it: Carol knows Alice's secret.
    let mut alice = start("Alice", "alice-secret-for-reconnect-6", &[]);
    let mut carol = start("Carol", "carol-secret-for-reconnect-6", &[]);
    let alice_cs = alice.conn_string();
    let carol_cs = carol.conn_string();
    carol.send(&format!("connect {alice_cs}"));
    carol.expect_contains("[+] Alice connected");
    alice.expect_contains("[+] Carol connected to you");

    alice.send("disconnect Carol");
    alice.expect_contains("disconnected Carol: it cannot reconnect until you connect to it again");
    carol.expect_contains("Alice disconnected: the peer closed the session");
    // Carol tries again at once: refused, with a reason, and no session on either side.
    carol.send(&format!("connect {alice_cs}"));
    carol.expect_contains("the peer refused the session: its user disconnected or blocked us");
    alice.send("msg Carol hello?");
    alice.expect_contains("no session");
    assert_eq!(count(&alice, "[+] Carol connected"), 1, "{:?}", alice.seen);

    // Alice connects to Carol: that lets her in again.
    alice.send(&format!("connect {carol_cs}"));
    alice.expect_contains("[+] Carol connected");
    alice.send("msg Carol welcome back");
    alice.expect_contains("\"welcome back\" delivered to Carol");
    carol.expect_contains("Alice (private): welcome back");
}

#[test]
fn disconnect_while_the_peer_is_away_refuses_its_reconnect_and_it_stops() {
    // Bob dialed Alice: Bob reconnects, Alice waits.
    let mut alice = start("Alice", "alice-secret-for-reconnect-7", &[]);
    let mut bob = start("Bob", "bob-secret-for-reconnect-7", &[]);
    let cs = alice.conn_string();
    bob.send(&format!("connect {cs}"));
    bob.expect_contains("[+] Alice connected");
    alice.expect_contains("[+] Bob connected to you");

    signal(&bob, "-STOP");
    alice.expect_contains("waiting for Bob to reconnect");
    alice.send("msg Bob you will not get this");
    alice.expect_contains("queued for Bob");
    alice.send("disconnect Bob");
    alice.expect_all(&[
        "\"you will not get this\" not delivered to Bob: you disconnected the peer",
        "disconnected Bob",
    ]);
    signal(&bob, "-CONT");

    bob.expect_within(Duration::from_secs(60), "the refusal", |l| {
        l.contains("stopped reconnecting to Alice: the peer refused the session")
    });
    let attempts = count(&bob, "reconnecting to Alice");
    assert!(attempts >= 1, "{:?}", bob.seen);
    // And it stays stopped: no attempt after the refusal (the first would come within
    // 1.25 s, the second within 2.5 s).
    bob.send("sessions");
    bob.expect_contains("no sessions yet");
    std::thread::sleep(Duration::from_secs(3));
    bob.send("peers");
    bob.expect_contains("PEER ID");
    assert_eq!(
        count(&bob, "reconnecting to Alice"),
        attempts,
        "{:?}",
        bob.seen
    );
    assert_eq!(count(&alice, "[+] Bob connected"), 1, "{:?}", alice.seen);
    assert_eq!(count(&bob, "you will not get this"), 0);
}

#[test]
fn an_ephemeral_peer_that_leaves_is_not_reconnected() {
    // Without a profile it comes back, if ever, with another identity: nothing to wait for.
    let mut bob = start("Bob", "bob-secret-for-reconnect-9", &[]);
    let mut alice = start("Alice", "alice-secret-for-reconnect-9", &[]);
    pair(&mut alice, &mut bob);
    bob.send("exit");
    bob.wait_exit(Duration::from_secs(20));
    alice.expect_contains("Bob disconnected: the peer left");
    alice.send("msg Bob still there?");
    alice.expect_contains("Bob has left");
    assert_eq!(count(&alice, "reconnecting"), 0, "{:?}", alice.seen);
    assert_eq!(count(&alice, "queued"), 0, "{:?}", alice.seen);
}

#[test]
fn block_while_reconnecting_stops_it_and_reports_what_was_queued() {
    let mut bob = start("Bob", "bob-secret-for-reconnect-10", &[]);
    let mut alice = start("Alice", "alice-secret-for-reconnect-10", &[]);
    pair(&mut alice, &mut bob);
    signal(&bob, "-STOP");
    alice.expect_contains("reconnecting to Bob (attempt 1");
    alice.send("msg Bob not for a blocked peer");
    alice.expect_contains("queued for Bob");
    alice.send("block Bob");
    alice.expect_contains("\"not for a blocked peer\" not delivered to Bob: you blocked the peer");
    signal(&bob, "-CONT");
    let attempts = count(&alice, "reconnecting to Bob");
    // No attempt after the block (the next would have come within 2.5 s).
    std::thread::sleep(Duration::from_secs(3));
    alice.send("sessions");
    alice.expect_contains("no sessions yet");
    assert_eq!(
        count(&alice, "reconnecting to Bob"),
        attempts,
        "{:?}",
        alice.seen
    );
    assert_eq!(count(&alice, "[+] Bob connected"), 1, "{:?}", alice.seen);
    assert_eq!(count(&bob, "not for a blocked peer"), 0);
}

#[test]
fn waiting_ends_when_the_peer_does_not_come_back_within_the_outbox_ttl() {
    let mut bob = start(
        "Bob",
        "bob-secret-for-reconnect-11",
        &["--outbox-ttl", "2s"],
    );
    let mut alice = start("Alice", "alice-secret-for-reconnect-11", &[]);
    pair(&mut alice, &mut bob);
    drop(alice); // killed: an ephemeral identity that never comes back
    bob.expect_contains("waiting for Alice to reconnect");
    bob.send("msg Alice lost cause");
    bob.expect_contains("queued for Alice");
    bob.expect_all(&[
        "\"lost cause\" not delivered to Alice: the peer did not come back within 2 s",
        "stopped waiting for Alice: it did not come back within 2 s",
    ]);
    bob.send("msg Alice again");
    bob.expect_contains("Alice has left");
    assert_eq!(
        count(&bob, "not delivered"),
        1,
        "reported once: {:?}",
        bob.seen
    );
}

// ---- profiles --------------------------------------------------------------------

/// A fresh data directory for this test's profiles (removed on drop).
struct DataDir(std::path::PathBuf);

impl DataDir {
    fn new(case: &str) -> DataDir {
        let dir = std::env::temp_dir().join(format!("noctua-node-{}-{case}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        DataDir(dir)
    }

    fn path(&self) -> &str {
        self.0.to_str().expect("utf-8 temp dir")
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A loopback TCP port free right now (the profile keeps a node's port; the tests pin it
/// with --listen so that they stay on loopback).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// `name` with profile `profile` in `dir`, listening on 127.0.0.1:`port`.
fn with_profile(name: &str, profile: &str, dir: &DataDir, port: u16) -> NodeProc {
    let listen = format!("/ip4/127.0.0.1/tcp/{port}");
    let mut args = vec![
        "--id",
        name,
        "--no-mdns",
        "--listen",
        &listen,
        "--profile",
        profile,
        "--data-dir",
        dir.path(),
    ];
    args.extend_from_slice(FAST);
    NodeProc::start_args(name, &args)
}

fn peer_id_line(node: &mut NodeProc) -> String {
    node.expect_contains("Peer ID: ")
}

#[test]
fn a_node_restarted_with_its_profile_is_reconnected_and_outage_messages_arrive_once() {
    let dir = DataDir::new("restart");
    let port = free_port();
    let mut bob = with_profile("Bob", "bob", &dir, port);
    let bob_id = peer_id_line(&mut bob);
    let bob_cs = bob.conn_string();
    let mut alice = start("Alice", "alice-secret-for-reconnect-8", &[]);
    alice.send(&format!("connect {bob_cs}"));
    alice.expect_contains("[+] Bob connected");

    bob.send("exit");
    bob.wait_exit(Duration::from_secs(20));
    alice.expect_contains("Bob disconnected: the peer left");
    alice.expect_contains("reconnecting to Bob (attempt 1");
    alice.send("msg Bob while you restarted");
    alice.expect_contains("queued for Bob");

    let mut bob = with_profile("Bob", "bob", &dir, port);
    assert_eq!(peer_id_line(&mut bob), bob_id, "the same identity");
    assert_eq!(bob.conn_string(), bob_cs, "the same connection string");
    alice.expect_within(Duration::from_secs(90), "Bob back", |l| {
        l.contains("[+] Bob connected")
    });
    alice.expect_contains("\"while you restarted\" delivered to Bob");
    bob.expect_contains("Alice (private): while you restarted");
    alice.send("msg Bob and after");
    bob.expect_contains("Alice (private): and after");
    assert_eq!(count(&bob, "while you restarted"), 1, "{:?}", bob.seen);
}

#[test]
fn a_node_restarted_with_its_profile_reconnects_to_its_known_peers() {
    let dir = DataDir::new("resume");
    let (alice_port, bob_port) = (free_port(), free_port());
    let mut bob = with_profile("Bob", "bob", &dir, bob_port);
    let bob_cs = bob.conn_string();
    let mut alice = with_profile("Alice", "alice", &dir, alice_port);
    alice.send(&format!("connect {bob_cs}"));
    alice.expect_contains("[+] Bob connected");
    bob.expect_contains("[+] Alice connected to you");

    alice.send("exit");
    alice.wait_exit(Duration::from_secs(20));
    // Bob never had Alice's secret: he waits for her, and queues.
    bob.expect_contains("waiting for Alice to reconnect");
    bob.send("msg Alice welcome back");
    bob.expect_contains("queued for Alice");

    // Alice comes back: her profile knows Bob, how to reach him and his secret.
    let mut alice = with_profile("Alice", "alice", &dir, alice_port);
    alice.expect_contains("reconnecting to Bob (attempt 1");
    alice.expect_within(Duration::from_secs(60), "Bob back", |l| {
        l.contains("[+] Bob connected")
    });
    alice.expect_contains("Bob (private): welcome back");
    bob.expect_contains("\"welcome back\" delivered to Alice");
    assert_eq!(count(&alice, "welcome back"), 1, "{:?}", alice.seen);
}

// ---- network namespaces -------------------------------------------------------------

/// Two namespaces joined by one veth pair (10.83.0.1 - 10.83.0.2). Deleted on drop.
struct Link {
    a: String,
    b: String,
}

impl Link {
    fn create(case: &str) -> Link {
        let prefix = format!("node-{}-{case}", std::process::id());
        let link = Link {
            a: format!("{prefix}-a"),
            b: format!("{prefix}-b"),
        };
        ip(&["netns", "add", &link.a]);
        ip(&["netns", "add", &link.b]);
        ip(&[
            "-n", &link.a, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns",
            &link.b,
        ]);
        for (ns, addr) in [(&link.a, "10.83.0.1/24"), (&link.b, "10.83.0.2/24")] {
            ip(&["-n", ns, "link", "set", "lo", "up"]);
            ip(&["-n", ns, "addr", "add", addr, "dev", "eth0"]);
            ip(&["-n", ns, "link", "set", "eth0", "up"]);
        }
        link
    }

    /// Cuts (`false`) or restores (`true`) the link: both ends of the veth go down, so
    /// packets go nowhere and no TCP reset is sent; the nodes find out by their
    /// keep-alives.
    fn set(&self, up: bool) {
        for ns in [&self.a, &self.b] {
            ip(&[
                "-n",
                ns,
                "link",
                "set",
                "eth0",
                if up { "up" } else { "down" },
            ]);
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

#[test]
fn a_cut_link_is_reconnected_when_restored_and_outage_messages_arrive_once() {
    let test = "a_cut_link_is_reconnected_when_restored_and_outage_messages_arrive_once";
    if !netns_or_skip(test) {
        return;
    }
    let link = Link::create("cut");
    let node = |ns: &str, name: &str, secret: &str| {
        let mut args = vec![
            "--id",
            name,
            "--secret",
            secret,
            "--no-mdns",
            "--listen",
            "/ip4/0.0.0.0/tcp/4400",
        ];
        args.extend_from_slice(FAST);
        NodeProc::start_in_netns(name, ns, &args)
    };
    let mut alice = node(&link.a, "Alice", "alice-secret-for-reconnect-5");
    let mut bob = node(&link.b, "Bob", "bob-secret-for-reconnect-5");
    bob.expect_contains("Peer ID");
    alice.send("connect 10.83.0.2:4400:bob-secret-for-reconnect-5");
    alice.expect_contains("[+] Bob connected");
    bob.expect_contains("[+] Alice connected to you");

    link.set(false);
    alice.expect_contains("reconnecting to Bob (attempt 1");
    bob.expect_contains("waiting for Alice to reconnect");
    alice.send("msg Bob during the cut");
    alice.expect_contains("queued for Bob");
    bob.send("msg Alice other way");
    bob.expect_contains("queued for Alice");
    alice.expect_contains("reconnecting to Bob (attempt 2");
    link.set(true);

    alice.expect_within(Duration::from_secs(90), "Bob back", |l| {
        l.contains("[+] Bob connected")
    });
    // Each side's receipt and the other's message, in whatever order they come.
    alice.expect_all(&[
        "\"during the cut\" delivered to Bob",
        "Bob (private): other way",
    ]);
    bob.expect_all(&[
        "\"other way\" delivered to Alice",
        "Alice (private): during the cut",
    ]);
    assert_eq!(count(&bob, "during the cut"), 1);
    assert_eq!(count(&alice, "other way"), 1);
}

// ---- the lab with profiles ----------------------------------------------------------

/// The next event of node `i` satisfying `pred`, within `limit`.
async fn lab_event(
    lab: &mut noctua::lab::Lab,
    i: usize,
    limit: Duration,
    what: &str,
    pred: impl Fn(&noctua::face::headless::Event) -> bool,
) -> noctua::face::headless::Event {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, lab.next_event()).await {
            Ok(Some(e)) if e.node == i && pred(&e.event) => return e.event,
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => panic!("node{i}: no {what} within {limit:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lab_with_profiles_restarts_a_node_with_its_identity_and_it_is_reconnected() {
    use noctua::face::headless::Event;
    let test = "the_lab_with_profiles_restarts_a_node_with_its_identity_and_it_is_reconnected";
    if !netns_or_skip(test) {
        return;
    }
    let dir = DataDir::new("lab");
    let bin = std::path::PathBuf::from(env!("CARGO_BIN_EXE_noctua"));
    let mut lab = noctua::lab::Lab::create(2, &dir.0, &bin).expect("create the lab");
    lab.set_auto_connect(false);
    lab.set_profiles(true);
    let extra: Vec<String> = FAST.iter().map(|s| s.to_string()).collect();
    let limit = Duration::from_secs(30);
    for i in 0..2 {
        lab.start(i, &format!("lab-secret-{i}"), &extra)
            .expect("start");
        lab_event(&mut lab, i, limit, "ready", |e| {
            matches!(e, Event::Ready { .. })
        })
        .await;
    }
    let first = lab.peer_id(1).expect("node1's id").to_string();
    assert!(dir.0.join("profiles-data/profiles/node1").is_dir());
    lab.send(0, &format!("connect {}:4001:lab-secret-1", lab.ip(1)))
        .await
        .expect("send");
    lab_event(&mut lab, 0, limit, "a session", |e| {
        matches!(e, Event::SessionEstablished { .. })
    })
    .await;

    lab.stop(1, Duration::from_secs(10)).await;
    lab_event(&mut lab, 0, limit, "reconnecting", |e| {
        matches!(e, Event::Reconnecting { .. })
    })
    .await;
    lab.send(0, "msg node1 across the restart")
        .await
        .expect("send");
    lab_event(&mut lab, 0, limit, "queued", |e| {
        matches!(e, Event::Queued { .. })
    })
    .await;
    lab.start(1, "lab-secret-1", &extra).expect("restart");
    lab_event(&mut lab, 1, limit, "ready", |e| {
        matches!(e, Event::Ready { .. })
    })
    .await;
    assert_eq!(lab.peer_id(1), Some(first.as_str()), "the same identity");
    lab_event(
        &mut lab,
        1,
        Duration::from_secs(90),
        "the message",
        |e| matches!(e, Event::Message { text, .. } if text == "across the restart"),
    )
    .await;
    lab.shutdown().await;
}
