//! Issue 10 item 5, "nobody locks others out", tried as an attacker would: the real binary in
//! network namespaces this test creates (named `lockout-...`), on one bridge, with the node
//! under attack, the attacker and the newcomer each on an address of its own. The newcomer
//! must get in while the attack runs.
//!
//! The attackers are this test binary itself, run again inside the attacker's namespace
//! (`ip netns exec ... <this binary> --exact attacker --ignored`) with the attack in
//! `LOCKOUT_ATTACK`: raw TCP sockets that never send a byte, or cheap libp2p identities
//! that send `HELLO` after `HELLO` and never `AUTH`.
//!
//! Needs root and iproute2. Where they are missing the tests are skipped with a message,
//! unless `NOCTUA_REQUIRE_NETNS=1` (set by `.ci/run`), which makes that a failure.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Mutex;
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{ip, netns_or_skip};

/// The node under attack, the attacker and the newcomer (and the peer the node itself
/// connects to, beside the newcomer).
const NODE_IP: &str = "10.79.0.1";
const ATTACKER_IP: &str = "10.79.0.2";
const NEWCOMER_IP: &str = "10.79.0.3";
const PORT: u16 = 4100;

/// One case at a time: each one loads both cores.
static SERIAL: Mutex<()> = Mutex::new(());

/// Three namespaces on a bridge (in a fourth): node, attacker, newcomer. Deleted on drop.
struct Net {
    hub: String,
    spaces: Vec<String>,
}

impl Net {
    fn create(case: &str) -> Net {
        let prefix = format!("lockout-{}-{case}", std::process::id());
        let hub = format!("{prefix}-hub");
        let mut net = Net {
            hub: hub.clone(),
            spaces: Vec::new(),
        };
        ip(&["netns", "add", &hub]);
        ip(&["-n", &hub, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &hub, "link", "set", "br0", "up"]);
        for (i, (role, addr)) in [
            ("node", NODE_IP),
            ("att", ATTACKER_IP),
            ("new", NEWCOMER_IP),
        ]
        .into_iter()
        .enumerate()
        {
            let ns = format!("{prefix}-{role}");
            let veth = format!("lk{i}");
            ip(&["netns", "add", &ns]);
            net.spaces.push(ns.clone());
            ip(&[
                "-n", &hub, "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns",
                &ns,
            ]);
            ip(&["-n", &hub, "link", "set", &veth, "master", "br0"]);
            ip(&["-n", &hub, "link", "set", &veth, "up"]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                "eth0",
            ]);
            ip(&["-n", &ns, "link", "set", "eth0", "up"]);
        }
        net
    }

    fn node(&self) -> &str {
        &self.spaces[0]
    }

    fn attacker(&self) -> &str {
        &self.spaces[1]
    }

    fn newcomer(&self) -> &str {
        &self.spaces[2]
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in self.spaces.iter().chain([&self.hub]) {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

/// A process run in a namespace, its stdout read line by line.
struct Proc {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Proc {
    fn spawn(ns: &str, name: &str, program: &str, args: &[&str], env: &[(&str, &str)]) -> Proc {
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns, program])
            .args(args)
            .env_remove("NOCTUA_SECRET")
            .env_remove("RUST_LOG")
            .envs(env.iter().copied())
            .env("NO_COLOR", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start a process in a namespace");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        Proc {
            name: name.into(),
            child,
            stdin,
            lines: rx,
            seen: Vec::new(),
        }
    }

    /// The node, headless, mDNS off, listening on `addr:port`, its log in `log`.
    fn node(ns: &str, name: &str, secret: &str, addr: &str, port: u16, extra: &[&str]) -> Proc {
        let listen = format!("/ip4/{addr}/tcp/{port}");
        let log = log_path(name);
        let mut args = vec![
            "--headless",
            "--no-mdns",
            "--id",
            name,
            "--secret",
            secret,
            "--listen",
            &listen,
            "--log-level",
            "noctua_chat=debug,libp2p_swarm=debug,warn",
            "--log-file",
            &log,
        ];
        args.extend_from_slice(extra);
        let bin = env!("CARGO_BIN_EXE_noctua");
        let mut p = Proc::spawn(ns, name, bin, &args, &[]);
        p.event("ready", Duration::from_secs(20), |_| true);
        p
    }

    fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{line}").expect("write");
        stdin.flush().expect("flush");
    }

    /// Waits for a stdout line satisfying `pred`.
    fn line(&mut self, what: &str, limit: Duration, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if pred(&line) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => {
                    let tail: Vec<&String> = self.seen.iter().rev().take(30).rev().collect();
                    panic!(
                        "{}: no {what} within {limit:?}; last lines: {tail:#?}",
                        self.name
                    );
                }
            }
        }
    }

    /// Waits for a headless event named `event` satisfying `pred`.
    fn event(&mut self, event: &str, limit: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        let line = self.line(event, limit, |l| {
            serde_json::from_str::<Value>(l)
                .is_ok_and(|v| v["event"].as_str() == Some(event) && pred(&v))
        });
        serde_json::from_str(&line).expect("json")
    }

    /// The node's `PeerId`, from its `ready` line.
    fn peer_id(&self) -> String {
        self.seen
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["event"].as_str() == Some("ready"))
            .and_then(|v| v["peer_id"].as_str().map(str::to_string))
            .expect("a ready line with the peer_id")
    }

    /// Every line seen so far, then the ones waiting.
    fn drain(&mut self) -> &[String] {
        while let Ok(line) = self.lines.try_recv() {
            self.seen.push(line);
        }
        &self.seen
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

fn log_path(name: &str) -> String {
    let dir = std::env::temp_dir().join(format!("noctua-lockout-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("log dir");
    let path: PathBuf = dir.join(format!("{name}.log"));
    let _ = std::fs::remove_file(&path);
    path.display().to_string()
}

fn log_of(name: &str) -> String {
    let dir = std::env::temp_dir().join(format!("noctua-lockout-{}", std::process::id()));
    std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default()
}

/// Starts this test binary as the attacker, in the attacker's namespace.
fn start_attacker(net: &Net, attack: &str) -> Proc {
    let me = std::env::current_exe().expect("test binary");
    let me = me.display().to_string();
    Proc::spawn(
        net.attacker(),
        "attacker",
        &me,
        &["--exact", "attacker", "--ignored", "--nocapture"],
        &[("LOCKOUT_ATTACK", attack)],
    )
}

/// A number from an attacker's report line (`ATTACK ... key=N ...`).
fn field(line: &str, key: &str) -> u64 {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// The newcomer connects and its message arrives at the node.
fn newcomer_gets_in(net: &Net, node: &mut Proc, secret: &str) -> Duration {
    let target = format!("{NODE_IP}:{PORT}:{secret}");
    let started = Instant::now();
    let mut newcomer = Proc::node(
        net.newcomer(),
        "newcomer",
        "newcomer-secret",
        NEWCOMER_IP,
        PORT,
        &["--connect", &target],
    );
    let line = newcomer.line("session_established", Duration::from_secs(30), |l| {
        l.contains("\"session_established\"") || l.contains("\"connect_failed\"")
    });
    assert!(
        line.contains("session_established"),
        "the newcomer was locked out: {line}"
    );
    let took = started.elapsed();
    newcomer.send("hello through the attack");
    node.event("message", Duration::from_secs(15), |v| {
        v["text"].as_str() == Some("hello through the attack")
    });
    took
}

/// (a) 120 idle TCP connections from the attacker's address, each re-opened as soon as it
/// closes (the node drops idle ones after its transport timeout, and refuses the excess):
/// the newcomer still connects and chats, and the node refused the attacker's excess at
/// connection time. Before the per-address cap, the 64 places for connections in their
/// transport handshake were all the attacker's, and every newcomer was refused.
#[test]
fn idle_connections_from_one_address_do_not_lock_out_a_newcomer() {
    let test = "idle_connections_from_one_address_do_not_lock_out_a_newcomer";
    if !netns_or_skip(test) {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let net = Net::create("idle");
    let secret = "idle-node-secret";
    let mut node = Proc::node(net.node(), "idle-node", secret, NODE_IP, PORT, &[]);
    let mut attacker = start_attacker(&net, &format!("idle {NODE_IP}:{PORT} 120 60"));
    // The attack is on: 120 sockets opened, at least 100 more re-opened after the node
    // closed them, and for longer than the node's transport timeout (5 s), so that the
    // sockets it held have timed out and been re-opened too.
    let report = attacker.line("the attack", Duration::from_secs(30), |l| {
        l.starts_with("ATTACK") && field(l, "opened") >= 220 && field(l, "ms") >= 6000
    });
    let took = newcomer_gets_in(&net, &mut node, secret);
    let last = attacker
        .drain()
        .iter()
        .rev()
        .find(|l| l.starts_with("ATTACK"))
        .cloned()
        .unwrap_or(report);
    attacker.kill();
    let log = log_of("idle-node");
    let refused = log
        .lines()
        .filter(|l| l.contains("refusing a connection") && l.contains(ATTACKER_IP))
        .count();
    assert!(
        refused > 0,
        "the node never refused the attacker's excess connections"
    );
    eprintln!(
        "LOCKOUT idle: newcomer in after {} ms; attacker: {last}; refusal log lines: {refused}",
        took.as_millis()
    );
}

/// (b) 72 cheap identities from the attacker's address send `HELLO` after `HELLO` (a new
/// one every second, never `AUTH`): a newcomer's `HELLO` from another address and the
/// node's own `connect` both still succeed. Before, the 64 places for pending handshakes
/// were shared by everyone's `HELLO`s and the node's own opens, and the attacker held them
/// all.
#[test]
fn hello_flood_from_cheap_identities_does_not_lock_out_a_newcomer_or_our_own_connect() {
    let test = "hello_flood_from_cheap_identities_does_not_lock_out_a_newcomer_or_our_own_connect";
    if !netns_or_skip(test) {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let net = Net::create("hello");
    let secret = "hello-node-secret";
    let mut node = Proc::node(net.node(), "hello-node", secret, NODE_IP, PORT, &[]);
    // The peer the node itself connects to, beside the newcomer.
    let other_port = PORT + 1;
    let other_secret = "other-secret";
    let _other = Proc::node(
        net.newcomer(),
        "other",
        other_secret,
        NEWCOMER_IP,
        other_port,
        &[],
    );
    let mut attacker = start_attacker(&net, &format!("hello {NODE_IP}:{PORT} 72 90"));
    let report = attacker.line("the flood", Duration::from_secs(60), |l| {
        l.starts_with("ATTACK") && field(l, "answered") >= 72
    });
    let took = newcomer_gets_in(&net, &mut node, secret);
    let started = Instant::now();
    node.send(&format!(
        "connect {NEWCOMER_IP}:{other_port}:{other_secret}"
    ));
    let line = node.line("our own connect", Duration::from_secs(30), |l| {
        (l.contains("\"session_established\"") && l.contains("\"inbound\":false"))
            || l.contains("\"connect_failed\"")
    });
    assert!(
        line.contains("session_established"),
        "the node's own connect failed during the flood: {line}"
    );
    let own = started.elapsed();
    let last = attacker
        .drain()
        .iter()
        .rev()
        .find(|l| l.starts_with("ATTACK"))
        .cloned()
        .unwrap_or(report);
    attacker.kill();
    assert!(
        field(&last, "busy") + field(&last, "refused") > 0,
        "the flood was never held back: {last}"
    );
    eprintln!(
        "LOCKOUT hello: newcomer in after {} ms, own connect {} ms; attacker: {last}",
        took.as_millis(),
        own.as_millis()
    );
}

/// (c) Ten wrong secrets from the attacker's address (three nodes) ban the address at the
/// tenth, as the node's `auth_failed` event says (and only that one); a
/// newcomer from that address, with the right secret, is then told in one line how long
/// the ban lasts, instead of seeing its connection reset.
#[test]
fn a_newcomer_from_a_banned_address_is_told_how_long_the_ban_lasts() {
    let test = "a_newcomer_from_a_banned_address_is_told_how_long_the_ban_lasts";
    if !netns_or_skip(test) {
        return;
    }
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let net = Net::create("ban");
    let secret = "ban-node-secret";
    let mut node = Proc::node(net.node(), "ban-node", secret, NODE_IP, PORT, &[]);
    let wrong = format!("connect {NODE_IP}:{PORT}:not-the-secret");
    let mut banned = Vec::new();
    let mut guessers = Vec::new();
    // Four attempts per guesser at most: a node holds at most 4 connections to one peer,
    // and each `connect` dials a new one (the failed ones stay until the node under attack
    // closes them, 10 s later).
    for g in 0..3 {
        let name = format!("guesser{g}");
        let mut guesser = Proc::node(
            net.attacker(),
            &name,
            "guesser-secret",
            ATTACKER_IP,
            PORT + g,
            &[],
        );
        let id = guesser.peer_id();
        for _ in 0..4 {
            if banned.len() == 10 {
                break;
            }
            guesser.send(&wrong);
            let failed = guesser.event("connect_failed", Duration::from_secs(20), |_| true);
            assert!(
                failed["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("wrong secret")),
                "{failed}"
            );
            let ev = node.event("auth_failed", Duration::from_secs(10), |v| {
                v["peer_id"].as_str() == Some(&id)
            });
            assert_eq!(ev["address"].as_str(), Some(ATTACKER_IP), "{ev}");
            banned.push(ev["banned"].as_bool().expect("banned is a bool"));
        }
        guessers.push((guesser, id));
    }
    // The address is banned at its 10th failure (default), and that event says so.
    let expected: Vec<bool> = (1..=10).map(|i| i == 10).collect();
    assert_eq!(banned, expected, "auth_failed's banned, attempt by attempt");
    // The guessers leave; their connections close at the node.
    for (g, id) in &mut guessers {
        g.kill();
        let deadline = Instant::now() + Duration::from_secs(15);
        while !log_of("ban-node")
            .lines()
            .any(|l| l.contains("Connection closed") && l.contains(id.as_str()))
        {
            assert!(
                Instant::now() < deadline,
                "the node never saw the guesser's connection close"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    let target = format!("{NODE_IP}:{PORT}:{secret}");
    let mut newcomer = Proc::node(
        net.attacker(),
        "banned-newcomer",
        "newcomer-secret",
        ATTACKER_IP,
        PORT + 5,
        &["--connect", &target],
    );
    let line = newcomer.line("the outcome", Duration::from_secs(20), |l| {
        l.contains("\"session_established\"") || l.contains("\"connect_failed\"")
    });
    let v: Value = serde_json::from_str(&line).expect("json");
    let error = v["error"].as_str().unwrap_or_default().to_string();
    let secs: u64 = error
        .strip_prefix("refused for ")
        .and_then(|r| r.strip_suffix(" s after repeated wrong secrets from this address"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not the one clear line: {line}"));
    assert!((1..=60).contains(&secs), "seconds left: {secs}");
    eprintln!("LOCKOUT ban: the banned newcomer read: {error}");
}

// ----------------------------------------------------------------------------------------
// The attacker (run by the tests above inside the attacker's namespace)
// ----------------------------------------------------------------------------------------

#[test]
#[ignore = "the attacker: run by the lockout tests inside the attacker's namespace"]
fn attacker() {
    let Ok(spec) = std::env::var("LOCKOUT_ATTACK") else {
        return;
    };
    let words: Vec<&str> = spec.split_whitespace().collect();
    let [kind, target, n, secs] = words[..] else {
        panic!("LOCKOUT_ATTACK: {spec}");
    };
    let target: SocketAddr = target.parse().expect("target");
    let n: usize = n.parse().expect("count");
    let duration = Duration::from_secs(secs.parse().expect("seconds"));
    match kind {
        "idle" => idle_attack(target, n, duration),
        "hello" => hello_attack(target, n, duration),
        other => panic!("unknown attack {other}"),
    }
}

/// `n` TCP connections that never send a byte, each re-opened as soon as it closes.
fn idle_attack(target: SocketAddr, n: usize, duration: Duration) {
    let start = Instant::now();
    let end = start + duration;
    let mut socks: Vec<Option<TcpStream>> = (0..n).map(|_| None).collect();
    let mut opened = 0u64;
    let mut last_report = Instant::now();
    while Instant::now() < end {
        let mut open = 0;
        for slot in socks.iter_mut() {
            let alive = slot.as_ref().is_some_and(|s| {
                let mut b = [0u8; 1];
                matches!(s.peek(&mut b), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
            });
            if !alive {
                *slot = TcpStream::connect_timeout(&target, Duration::from_secs(1))
                    .ok()
                    .filter(|s| s.set_nonblocking(true).is_ok());
                opened += u64::from(slot.is_some());
            }
            open += usize::from(slot.is_some());
        }
        if last_report.elapsed() >= Duration::from_millis(250) {
            let ms = start.elapsed().as_millis();
            println!("ATTACK idle open={open} opened={opened} ms={ms}");
            last_report = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `n` libp2p identities, each connected to `target` and sending a `HELLO` a second (a
/// fresh handshake id each time), never an `AUTH`; reconnecting when refused or dropped.
fn hello_attack(target: SocketAddr, n: usize, duration: Duration) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let key = noctua_chat::RsaKeyPair::generate(2048).expect("RSA key");
    let public = key.public_der().to_vec();
    let stats: Arc<[AtomicU64; 5]> = Arc::new(Default::default());
    rt.block_on(async {
        let end = tokio::time::Instant::now() + duration;
        for _ in 0..n {
            let public = public.clone();
            let stats = stats.clone();
            tokio::spawn(async move {
                let addr: libp2p::Multiaddr = format!("/ip4/{}/tcp/{}", target.ip(), target.port())
                    .parse()
                    .expect("multiaddr");
                cheap_identity(addr, public, end, move |what| {
                    stats[what as usize].fetch_add(1, Ordering::Relaxed);
                })
                .await;
            });
        }
        while tokio::time::Instant::now() < end {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let s: Vec<u64> = stats.iter().map(|a| a.load(Ordering::Relaxed)).collect();
            let [challenge, busy, other, refused, connected] = s[..] else {
                return;
            };
            println!(
                "ATTACK hello answered={} challenge={challenge} busy={busy} other={other} \
                 refused={refused} connected={connected}",
                challenge + busy + other
            );
        }
    });
}

/// What a cheap identity saw (an index into the attacker's counters).
#[derive(Clone, Copy)]
enum Seen {
    Challenge = 0,
    Busy = 1,
    Other = 2,
    Refused = 3,
    Connected = 4,
}

/// The `HELLO` a cheap identity sends: valid, with a fresh handshake id, nonce and share (the
/// only place this test depends on the `HELLO` format).
fn cheap_hello(public: &[u8]) -> noctua_chat::wire::Request {
    use noctua_chat::wire;
    wire::Request::Hello(wire::Hello {
        version: wire::VERSION,
        hs_id: rand::random(),
        nonce: rand::random(),
        public_key: public.to_vec(),
        // Any valid group element: the listener cannot tell it from an honest share (it
        // only finds out at AUTH, which a cheap identity never sends).
        share: noctua_spec_peer::enc(
            &(noctua_spec_peer::scalar() * noctua_spec_peer::base_point()),
        ),
    })
}

async fn cheap_identity(
    addr: libp2p::Multiaddr,
    public: Vec<u8>,
    end: tokio::time::Instant,
    mut seen: impl FnMut(Seen),
) {
    use futures::StreamExt;
    use libp2p::request_response::{self, Event as E, Message as M, ProtocolSupport};
    use libp2p::swarm::SwarmEvent;
    use noctua_chat::{Codec, PROTOCOL, RejectCode, wire::Response};

    let Ok(builder) = libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            libp2p::tcp::Config::default(),
            libp2p::noise::Config::new,
            libp2p::yamux::Config::default,
        )
    else {
        return;
    };
    let Ok(builder) = builder.with_behaviour(|_| {
        request_response::Behaviour::<Codec>::with_codec(
            Codec::new(256 * 1024),
            [(PROTOCOL, ProtocolSupport::Outbound)],
            request_response::Config::default().with_request_timeout(Duration::from_secs(10)),
        )
    });
    let mut swarm = builder
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build();
    let mut peer = None;
    let _ = swarm.dial(addr.clone());
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(end) => return,
            _ = tick.tick() => {
                match peer {
                    Some(p) => {
                        swarm.behaviour_mut().send_request(&p, cheap_hello(&public));
                    }
                    None => {
                        let _ = swarm.dial(addr.clone());
                    }
                }
            }
            ev = swarm.select_next_some() => match ev {
                SwarmEvent::ConnectionEstablished { peer_id, .. } => {
                    seen(Seen::Connected);
                    peer = Some(peer_id);
                    swarm.behaviour_mut().send_request(&peer_id, cheap_hello(&public));
                }
                SwarmEvent::ConnectionClosed { num_established: 0, .. } => {
                    peer = None;
                }
                SwarmEvent::OutgoingConnectionError { .. } => seen(Seen::Refused),
                SwarmEvent::Behaviour(E::Message {
                    message: M::Response { response, .. },
                    ..
                }) => match response {
                    Response::Challenge(_) => seen(Seen::Challenge),
                    Response::Reject { code: RejectCode::Busy, .. } => seen(Seen::Busy),
                    _ => seen(Seen::Other),
                },
                _ => {}
            },
        }
    }
}
