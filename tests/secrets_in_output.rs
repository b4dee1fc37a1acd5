//! No secret reaches what the binary writes: two real `noctua` processes on loopback (mDNS
//! off) complete a handshake, chat, two rotations (one started by each) and exit, logging at
//! TRACE level, one into `--log-file`, the other to stderr. Then each node's own RSA private
//! key (learnt through the debug-build hook `NOCTUA_INSECURE_TEST_KEY_DUMP`, which makes the
//! node write every key it generates: `d`, the primes, `dp`, `dq` as raw bytes, hex,
//! decimal, base64 and `Debug`, its PKCS#1 and PKCS#8 DER and PEM), both connection secrets
//! and their `K_pw` are looked for in both nodes' stdout, stderr and the log file.
//!
//! A node prints its own connection string (`host:port:secret`) and `Secret: ...` in its
//! banner on purpose: those lines are the only place its own secret may appear, and only in
//! its own stdout.
//! Session keys are not obtainable from outside a process; `protocols/chat/tests/
//! secrets_in_logs.rs` looks for them in an in-process node's tracing output.

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use noctua_spec_peer::leaks::{Known, find, known, private_key_forms, strip_ws};
use noctua_spec_peer::{k_pw, rsa};
use support::NodeProc;

fn nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "noctua-secrets-in-output-{}-{}",
        std::process::id(),
        nanos()
    ));
    std::fs::create_dir_all(dir.join("keys")).expect("temp dir");
    dir
}

/// A secret file readable by its owner only (the node refuses others).
fn secret_file(dir: &Path, name: &str, secret: &str) -> String {
    use std::os::unix::fs::PermissionsExt as _;
    let path = dir.join(name);
    std::fs::write(&path, format!("{secret}\n")).expect("secret file");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    path.to_str().expect("UTF-8 path").to_owned()
}

/// The private keys a process dumped (`<pid>-<n>.der`).
fn dumped_keys(dir: &Path, pid: u32) -> Vec<rsa::PrivateKey> {
    let mut keys = Vec::new();
    for entry in std::fs::read_dir(dir).expect("key dump dir") {
        let path = entry.expect("entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with(&format!("{pid}-")) {
            let der = std::fs::read(&path).expect("dumped key");
            keys.push(rsa::pkcs8::DecodePrivateKey::from_pkcs8_der(&der).expect("PKCS#8 DER"));
        }
    }
    keys
}

/// Where `secrets` appear in `text`.
fn leaks_in(what: &str, text: &str, secrets: &[Known]) -> Vec<String> {
    let no_ws = strip_ws(text);
    secrets
        .iter()
        .flat_map(|k| find(k, text, &no_ws, Some(text.as_bytes())))
        .map(|hit| format!("{what}: {hit}"))
        .collect()
}

/// `lines` without the banner's lines that show `own_secret`: its connection strings
/// (`host:port:secret`) and its `Secret: ...` line.
fn without_own_banner_secret(lines: &[String], own_secret: &str) -> String {
    let suffix = format!(":{own_secret}");
    let secret_line = format!("Secret: {own_secret}");
    // The banner's pinned strings (issue 12): `host:port:secret:PEERID`.
    let pinned = |l: &str| {
        l.rsplit_once(':').is_some_and(|(head, id)| {
            head.ends_with(&suffix) && id.parse::<libp2p::PeerId>().is_ok()
        })
    };
    lines
        .iter()
        .filter(|l| !l.trim().ends_with(&suffix) && l.trim() != secret_line && !pinned(l.trim()))
        .cloned()
        .collect::<Vec<_>>()
        .join("\n")
}

fn start(name: &str, secret_path: &str, keys: &Path, extra: &[&str]) -> NodeProc {
    let mut args = vec![
        "--id",
        name,
        "--secret-file",
        secret_path,
        "--no-mdns",
        "--listen",
        "/ip4/127.0.0.1/tcp/0",
        "--log-level",
        "trace",
    ];
    args.extend_from_slice(extra);
    NodeProc::start_env(
        name,
        &args,
        &[(
            "NOCTUA_INSECURE_TEST_KEY_DUMP",
            keys.to_str().expect("UTF-8 path"),
        )],
    )
}

#[test]
fn no_secret_reaches_stdout_stderr_or_the_log_file() {
    let dir = temp_dir();
    let keys_dir = dir.join("keys");
    let log_file = dir.join("alice.log");
    let s_a = format!("alpha-{:x}", nanos());
    let s_b = format!("bravo-{:x}", nanos() ^ 0x5a5a_5a5a);
    let a_path = secret_file(&dir, "alice.secret", &s_a);
    let b_path = secret_file(&dir, "bob.secret", &s_b);

    let mut alice = start(
        "Alice",
        &a_path,
        &keys_dir,
        &["--log-file", log_file.to_str().expect("UTF-8 path")],
    );
    let mut bob = start("Bob", &b_path, &keys_dir, &[]);
    let cs = alice.conn_string();
    assert!(cs.ends_with(&format!(":{s_a}")), "{cs}");

    // Handshake, chat both ways.
    bob.send(&format!("connect {cs}"));
    bob.expect_contains("[+] Alice connected");
    alice.expect_contains("[+] Bob connected to you");
    bob.send("hello from bob");
    alice.expect_contains("Bob: hello from bob");
    bob.expect_contains("delivered to Alice");
    // A rotation started by each side.
    bob.send("rotate");
    bob.expect_contains("new session keys with Alice (epoch 1)");
    alice.expect_contains("new session keys with Bob (epoch 1)");
    alice.send("rotate");
    alice.expect_contains("new session keys with Bob (epoch 2)");
    bob.expect_contains("new session keys with Alice (epoch 2)");
    alice.send("msg Bob after two rotations");
    bob.expect_contains("Alice (private): after two rotations");
    alice.expect_contains("delivered to Bob");
    // Both leave.
    alice.send("exit");
    assert!(alice.wait_exit(Duration::from_secs(10)).success());
    bob.expect_contains("Alice disconnected");
    bob.send("exit");
    assert!(bob.wait_exit(Duration::from_secs(10)).success());
    let alice_err = alice.stderr_to_end().join("\n");
    let bob_err = bob.stderr_to_end().join("\n");
    let log = std::fs::read_to_string(&log_file).expect("the log file was written");

    // ----- the capture is real -----
    for (what, text) in [("Alice's log file", &log), ("Bob's stderr", &bob_err)] {
        let lines = text.lines().count();
        assert!(lines > 100, "{what}: only {lines} lines at TRACE level");
        assert!(text.contains("TRACE"), "{what} has no TRACE line");
        assert!(text.contains("libp2p"), "{what} has no libp2p line");
        assert!(
            text.contains("noctua_chat"),
            "{what} has no line of the node"
        );
    }

    // ----- what there is to find -----
    let mut secrets = vec![
        known("Alice's secret (text)", s_a.as_bytes()),
        known("Bob's secret (text)", s_b.as_bytes()),
        known("K_pw of Alice's secret", &k_pw(s_a.as_bytes())),
        known("K_pw of Bob's secret", &k_pw(s_b.as_bytes())),
    ];
    for (who, pid) in [("Alice's", alice.pid()), ("Bob's", bob.pid())] {
        let keys = dumped_keys(&keys_dir, pid);
        assert!(
            !keys.is_empty(),
            "{who} node dumped no key: is the debug-build hook in RsaKeyPair::generate?"
        );
        for (i, key) in keys.iter().enumerate() {
            secrets.extend(private_key_forms(&format!("{who} key {i}"), key));
        }
    }

    // The detector finds a key in the forms a leak would take (a PEM block, decimal d).
    let pem_body = noctua_spec_peer::leaks::base64(
        &secrets[secrets.len() - 1].bytes,
        noctua_spec_peer::leaks::STANDARD,
        true,
    );
    let pem: Vec<&str> = pem_body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).expect("ASCII"))
        .collect();
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----",
        pem.join("\n")
    );
    assert!(
        !leaks_in("control", &pem, &secrets).is_empty(),
        "PEM control"
    );
    let d = secrets
        .iter()
        .find(|k| k.number)
        .expect("a key's numbers are looked for");
    let d_text = format!("d = {}", noctua_spec_peer::leaks::decimal(&d.bytes));
    assert!(
        leaks_in("control", &d_text, &secrets)
            .iter()
            .any(|h| h.contains("as decimal")),
        "decimal control"
    );

    // ----- nowhere -----
    let alice_out = without_own_banner_secret(&alice.seen, &s_a);
    let bob_out = without_own_banner_secret(&bob.seen, &s_b);
    assert!(
        alice.seen.len() > alice_out.lines().count(),
        "Alice's banner showed her secret"
    );
    let mut leaks = Vec::new();
    for (what, text) in [
        ("Alice's stdout", &alice_out),
        ("Alice's stderr", &alice_err),
        ("Alice's log file", &log),
        ("Bob's stdout", &bob_out),
        ("Bob's stderr", &bob_err),
    ] {
        leaks.extend(leaks_in(what, text, &secrets));
    }
    eprintln!(
        "SECRETS: {} secrets looked for in {} bytes of stdout, stderr and log file; {} hits",
        secrets.len(),
        alice_out.len() + alice_err.len() + log.len() + bob_out.len() + bob_err.len(),
        leaks.len()
    );
    assert!(leaks.is_empty(), "secrets leaked:\n{}", leaks.join("\n"));
    std::fs::remove_dir_all(&dir).expect("remove temp dir");
}
