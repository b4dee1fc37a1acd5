//! Lab figures: real `noctua` processes, one per network namespace, started by
//! `noctua lab` (mDNS and `--auto-connect` on, headless), measured from outside.
//!
//! Per lab of N nodes: the time from the last node's `ready` to each node's full mesh (a
//! session with each of the N-1 others, from the nodes' own event logs, as
//! `bench/labs.sh`); one broadcast from every node once the mesh is complete, every
//! receipt counted per (sender, receiver) (exactly once each: no loss, no duplicate);
//! `VmRSS` of every node process (found with `ip netns pids`); the node processes' CPU
//! time per session established once every node had its RSA key; and how long a lab command takes to be answered
//! (`<k> sessions` through the lab's stdin to the node's answer on the lab's stdout) while
//! the mesh forms.
//!
//! Needs root and `ip` (iproute2); without them the group is skipped with one line.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

/// The text every node broadcasts once the mesh is complete (followed by its index).
const BROADCAST: &str = "lab-broadcast-from-node";
/// How often the event logs are read while the lab runs.
const POLL: Duration = Duration::from_millis(200);
/// How often a lab command is timed while the mesh forms (one at a time).
const PROBE_EVERY: Duration = Duration::from_millis(300);
/// A lab command unanswered after this long counts as unanswered.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether labs can run here: `Err` says why not, in one line.
pub fn available(bin: &Path) -> Result<(), String> {
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(str::to_string))
        })
        .unwrap_or_default();
    if uid != "0" {
        return Err(
            "labs need network namespaces, which need root (run noctua-bench as root)".into(),
        );
    }
    let ip = std::process::Command::new("ip")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ip {
        return Err("labs need `ip` (install iproute2)".into());
    }
    if !bin.is_file() {
        return Err(format!(
            "noctua binary not found at {} (build it: cargo build --release -p noctua, or pass --noctua-bin)",
            bin.display()
        ));
    }
    Ok(())
}

/// Limits of one lab.
#[derive(Debug, Clone)]
pub struct LabLimits {
    /// Longest wait for every node's `ready`.
    pub ready: Duration,
    /// Longest wait for the full mesh after the last `ready`.
    pub mesh: Duration,
    /// Longest wait for every broadcast receipt.
    pub broadcast: Duration,
}

/// What one lab measured (all times in ms unless named otherwise).
#[derive(Debug, Default)]
pub struct LabResult {
    /// Nodes.
    pub n: usize,
    /// Per node meshed: its full mesh after the last `ready`, ms.
    pub mesh_ms: Vec<f64>,
    /// The last node's full mesh after the first `ready`, ms.
    pub mesh_from_first_ready_ms: Option<f64>,
    /// Nodes that never had a session with every other.
    pub nodes_not_meshed: usize,
    /// Ordered (node, peer) pairs without a session at the end of the mesh wait.
    pub pairs_missing: usize,
    /// Sessions established (counted once, at their initiator) until the full mesh.
    pub sessions: usize,
    /// Sessions closed before their node's full mesh.
    pub closed_before_mesh: usize,
    /// First `ready` to last `ready`, ms.
    pub ready_spread_ms: f64,
    /// Per (sender, receiver): broadcast latency, sender's `sent` to receiver's `message`, ms.
    pub bcast_ms: Vec<f64>,
    /// Broadcast receipts expected: N(N-1).
    pub bcast_expected: usize,
    /// (sender, receiver) pairs that got the sender's broadcast exactly once.
    pub bcast_once: usize,
    /// Pairs that never got it.
    pub bcast_lost: usize,
    /// Receipts beyond the first, over all pairs.
    pub bcast_duplicates: usize,
    /// `delivered` events at the senders.
    pub bcast_delivered: usize,
    /// `delivery_failed`, `not_delivered` and `queued` events at the senders.
    pub bcast_failed: usize,
    /// Per node `VmRSS` at the full mesh, KiB.
    pub rss_kib: Vec<f64>,
    /// Node CPU seconds (user + system), all nodes, from their start to the full mesh.
    pub cpu_total_s: f64,
    /// Of which before every node had its RSA key (`key_ready`, as seen by the harness).
    pub cpu_at_keys_s: f64,
    /// Sessions (distinct ids) established when every node had its key, as seen then.
    pub sessions_at_keys: usize,
    /// Sessions (distinct ids) established at the full mesh, as seen then.
    pub sessions_at_mesh: usize,
    /// Lab command round trips during the mesh formation, ms.
    pub probe_ms: Vec<f64>,
    /// Lab commands unanswered within [`PROBE_TIMEOUT`].
    pub probes_unanswered: u64,
    /// `net.ipv4.neigh.default.gc_thresh3` during the lab.
    pub arp_gc_thresh3: Option<u64>,
    /// Where the event logs are.
    pub dir: PathBuf,
}

impl LabResult {
    /// The result as JSON (for the figures' `extra`).
    pub fn summary(&self) -> Value {
        let max = |v: &[f64]| v.iter().copied().fold(f64::NAN, f64::max);
        json!({
            "nodes": self.n,
            "mesh_max_ms": max(&self.mesh_ms),
            "mesh_from_first_ready_ms": self.mesh_from_first_ready_ms,
            "nodes_not_meshed": self.nodes_not_meshed,
            "pairs_missing": self.pairs_missing,
            "sessions": self.sessions,
            "closed_before_mesh": self.closed_before_mesh,
            "ready_spread_ms": self.ready_spread_ms,
            "broadcast_expected": self.bcast_expected,
            "broadcast_exactly_once": self.bcast_once,
            "broadcast_lost": self.bcast_lost,
            "broadcast_duplicates": self.bcast_duplicates,
            "broadcast_delivered": self.bcast_delivered,
            "broadcast_failed": self.bcast_failed,
            "rss_max_kib": max(&self.rss_kib),
            "cpu_total_s": self.cpu_total_s,
            "cpu_at_keys_s": self.cpu_at_keys_s,
            "sessions_at_keys": self.sessions_at_keys,
            "sessions_at_mesh": self.sessions_at_mesh,
            "probes": self.probe_ms.len(),
            "probe_max_ms": max(&self.probe_ms),
            "probes_unanswered": self.probes_unanswered,
            "arp_gc_thresh3": self.arp_gc_thresh3,
            "dir": self.dir.display().to_string(),
        })
    }
}

/// The lab process and what its stdout says.
struct LabProc {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::UnboundedReceiver<(String, Instant)>,
}

impl LabProc {
    async fn send(&mut self, line: &str) -> Result<(), String> {
        self.stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .map_err(|e| format!("cannot write to the lab: {e}"))
    }

    /// Asks the lab to stop (SIGTERM: goodbyes, namespaces removed) and waits for it.
    async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .output();
        }
        if tokio::time::timeout(Duration::from_secs(90), self.child.wait())
            .await
            .is_err()
        {
            eprintln!("[lab] the lab did not stop within 90 s: killing it");
            let _ = self.child.start_kill();
            let _ = self.child.wait().await;
        }
    }
}

/// One node's event log, read as it grows.
struct Log {
    file: Option<std::fs::File>,
    path: PathBuf,
    partial: Vec<u8>,
}

impl Log {
    /// New complete lines since the last call.
    fn read_new(&mut self) -> Vec<Value> {
        if self.file.is_none() {
            self.file = std::fs::File::open(&self.path).ok();
        }
        let Some(f) = self.file.as_mut() else {
            return Vec::new();
        };
        let _ = f.read_to_end(&mut self.partial);
        let Some(end) = self.partial.iter().rposition(|b| *b == b'\n') else {
            return Vec::new();
        };
        let rest = self.partial.split_off(end + 1);
        let done = std::mem::replace(&mut self.partial, rest);
        done.split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .filter_map(|l| serde_json::from_slice(l).ok())
            .collect()
    }
}

/// A key for the pair (`node`, `peer`) the same from both ends: the two peer ids in order
/// (the id of `node` from its `ready`).
fn pair_key(node: usize, peer: &str, index: &HashMap<String, usize>) -> String {
    let me = index
        .iter()
        .find(|(_, i)| **i == node)
        .map(|(p, _)| p.as_str())
        .unwrap_or("");
    if me < peer {
        format!("{me}-{peer}")
    } else {
        format!("{peer}-{me}")
    }
}

/// What the event logs said so far.
#[derive(Default)]
struct State {
    /// Node index by peer id (from `ready`).
    index: HashMap<String, usize>,
    /// Per node: `ready` ts.
    ready: Vec<Option<u64>>,
    /// Per node: whether its RSA key is ready (`key_ready`).
    keyed: Vec<bool>,
    /// Per node: first `session_established` ts per peer index.
    first_session: Vec<HashMap<usize, u64>>,
    /// Per node: peers with a session now.
    active: Vec<HashSet<String>>,
    /// Sessions by id (both ends report one), with the first report's ts. Not counted by
    /// `inbound`: when two opens cross, one session can answer both, and then both ends
    /// say `inbound: false`.
    sessions: HashMap<String, u64>,
    /// Per node: `session_closed` ts.
    closed: Vec<Vec<u64>>,
    /// Per (sender, receiver): broadcast receipts' ts.
    received: HashMap<(usize, usize), Vec<u64>>,
    /// Per sender: its broadcast's `sent` ts.
    sent: HashMap<usize, u64>,
    /// Per sender: `delivered` events.
    delivered: Vec<usize>,
    /// Per sender: `delivery_failed`, `not_delivered`, `queued` events.
    failed: Vec<usize>,
    /// Events whose peer id was not known yet (peer's `ready` not read yet): kept to be
    /// applied once it is.
    pending: Vec<(usize, Value)>,
}

impl State {
    fn new(n: usize) -> State {
        State {
            ready: vec![None; n],
            keyed: vec![false; n],
            first_session: vec![HashMap::new(); n],
            active: vec![HashSet::new(); n],
            closed: vec![Vec::new(); n],
            delivered: vec![0; n],
            failed: vec![0; n],
            ..State::default()
        }
    }

    fn apply(&mut self, node: usize, v: Value) {
        let ts = v["ts"].as_u64().unwrap_or(0);
        let peer = v["peer_id"].as_str().unwrap_or("").to_string();
        match v["event"].as_str().unwrap_or("") {
            "ready" => {
                self.ready[node] = Some(ts);
                self.index.insert(peer, node);
                let pending = std::mem::take(&mut self.pending);
                for (k, ev) in pending {
                    self.apply(k, ev);
                }
            }
            "key_ready" => self.keyed[node] = true,
            "session_established" => {
                self.active[node].insert(peer.clone());
                if let Some(id) = v["session"].as_str() {
                    let first = self
                        .sessions
                        .entry(format!("{id}/{}", pair_key(node, &peer, &self.index)))
                        .or_insert(ts);
                    *first = (*first).min(ts);
                }
                match self.index.get(&peer) {
                    Some(&p) => {
                        self.first_session[node].entry(p).or_insert(ts);
                    }
                    None => self.pending.push((
                        node,
                        json!({"event": "first_session", "peer_id": peer, "ts": ts}),
                    )),
                }
            }
            "first_session" => match self.index.get(&peer) {
                Some(&p) => {
                    self.first_session[node].entry(p).or_insert(ts);
                }
                None => self.pending.push((node, v)),
            },
            "session_closed" => {
                self.active[node].remove(&peer);
                self.closed[node].push(ts);
            }
            "sent" if v["text"].as_str().is_some_and(|t| t.starts_with(BROADCAST)) => {
                self.sent.entry(node).or_insert(ts);
            }
            "message" if v["text"].as_str().is_some_and(|t| t.starts_with(BROADCAST)) => {
                match self.index.get(&peer) {
                    Some(&from) => self.received.entry((from, node)).or_default().push(ts),
                    None => self.pending.push((node, v)),
                }
            }
            "delivered" => self.delivered[node] += 1,
            "delivery_failed" | "not_delivered" | "queued" => self.failed[node] += 1,
            _ => {}
        }
    }

    fn all_ready(&self) -> bool {
        self.ready.iter().all(Option::is_some)
    }

    /// Whether every node has a session with every other now.
    fn meshed(&self) -> bool {
        let n = self.ready.len();
        self.active.iter().all(|a| a.len() >= n - 1)
    }

    fn receipts(&self) -> usize {
        self.received.values().map(Vec::len).sum()
    }
}

/// Runs one lab of `n` nodes with `bin`, its logs in `dir` (emptied first).
pub async fn run(
    bin: &Path,
    n: usize,
    dir: &Path,
    limits: &LabLimits,
) -> Result<LabResult, String> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| format!("cannot empty {}: {e}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let arp_gc_thresh3 = std::fs::read_to_string("/proc/sys/net/ipv4/neigh/default/gc_thresh3")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok());
    // Recorded only: `noctua lab` raises the host's neighbour table limits for N nodes
    // itself, and puts them back (it prints a line saying so, kept in lab.stdout).
    let cap = limits.ready + limits.mesh + limits.broadcast + Duration::from_secs(60);
    let stderr = std::fs::File::create(dir.join("lab.stderr"))
        .map(Stdio::from)
        .unwrap_or_else(|_| Stdio::null());
    let mut child = Command::new(bin)
        .arg("lab")
        .args([
            "--nodes",
            &n.to_string(),
            "--duration",
            &format!("{}s", cap.as_secs()),
        ])
        .arg("--dir")
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start {} lab: {e}", bin.display()))?;
    let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        return Err("the lab's stdin or stdout is missing".into());
    };
    let (tx, lines) = mpsc::unbounded_channel();
    let transcript = dir.join("lab.out");
    tokio::spawn(async move {
        let mut out = tokio::fs::File::create(&transcript).await.ok();
        let mut r = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = r.next_line().await {
            if let Some(f) = out.as_mut() {
                let _ = f.write_all(format!("{line}\n").as_bytes()).await;
            }
            let _ = tx.send((line, Instant::now()));
        }
    });
    let mut lab = LabProc {
        child,
        stdin,
        lines,
    };
    let result = measure(&mut lab, n, dir, limits).await;
    lab.stop().await;
    let mut result = result.map_err(|e| {
        // What the lab itself said, when it said anything (e.g. why it could not start).
        let said = std::fs::read_to_string(dir.join("lab.stderr")).unwrap_or_default();
        match said.lines().rev().find(|l| !l.trim().is_empty()) {
            Some(last) => format!("{e}; the lab said: {}", last.trim()),
            None => e,
        }
    })?;
    // The logs are complete now: the figures come from them.
    let from_logs = analyze(dir, n);
    result.mesh_ms = from_logs.mesh_ms;
    result.mesh_from_first_ready_ms = from_logs.mesh_from_first_ready_ms;
    result.nodes_not_meshed = from_logs.nodes_not_meshed;
    result.pairs_missing = from_logs.pairs_missing;
    result.sessions = from_logs.sessions;
    result.closed_before_mesh = from_logs.closed_before_mesh;
    result.ready_spread_ms = from_logs.ready_spread_ms;
    result.bcast_ms = from_logs.bcast_ms;
    result.bcast_expected = from_logs.bcast_expected;
    result.bcast_once = from_logs.bcast_once;
    result.bcast_lost = from_logs.bcast_lost;
    result.bcast_duplicates = from_logs.bcast_duplicates;
    result.bcast_delivered = from_logs.bcast_delivered;
    result.bcast_failed = from_logs.bcast_failed;
    result.arp_gc_thresh3 = arp_gc_thresh3;
    result.dir = dir.to_path_buf();
    Ok(result)
}

/// The figures of a lab that already ran, from its event logs alone (no memory, CPU or
/// command figures: those are sampled while it runs).
pub fn analyze(dir: &Path, n: usize) -> LabResult {
    let mut state = State::new(n);
    for (i, log) in logs(dir, n).iter_mut().enumerate() {
        for v in log.read_new() {
            state.apply(i, v);
        }
    }
    let mut r = LabResult {
        n,
        dir: dir.to_path_buf(),
        ..LabResult::default()
    };
    figures_from_logs(&state, &mut r);
    r
}

fn logs(dir: &Path, n: usize) -> Vec<Log> {
    (0..n)
        .map(|i| Log {
            file: None,
            path: dir.join(format!("node{i}.jsonl")),
            partial: Vec::new(),
        })
        .collect()
}

/// Drives the running lab: waits for ready and mesh (timing lab commands meanwhile),
/// samples memory and CPU, broadcasts from every node and waits for the receipts.
async fn measure(
    lab: &mut LabProc,
    n: usize,
    dir: &Path,
    limits: &LabLimits,
) -> Result<LabResult, String> {
    let mut state = State::new(n);
    let mut logs = logs(dir, n);
    let mut lab_id: Option<String> = None;
    let mut result = LabResult {
        n,
        ..LabResult::default()
    };
    let start = Instant::now();
    let mut pids: Vec<Option<u32>> = vec![None; n];
    let mut probe: Option<(usize, Instant)> = None;
    let mut next_probe = 0usize;
    let mut last_probe = Instant::now();
    let mut mesh_deadline: Option<Instant> = None;
    let mut keys_seen = false;
    let mut tick = tokio::time::interval(POLL);
    loop {
        tokio::select! {
            line = lab.lines.recv() => {
                let Some((line, at)) = line else {
                    return Err("the lab ended before its mesh was complete".into());
                };
                if lab_id.is_none()
                    && let Some(rest) = line.strip_prefix("lab ")
                {
                    lab_id = rest.split(':').next().map(str::to_string);
                }
                if let Some((k, sent)) = probe
                    && line.starts_with(&format!("node{k}: "))
                    && line.contains("\"event\":\"sessions\"")
                {
                    result.probe_ms.push(crate::stats::ms(at.duration_since(sent)));
                    probe = None;
                }
            }
            _ = tick.tick() => {
                for (i, log) in logs.iter_mut().enumerate() {
                    for v in log.read_new() {
                        state.apply(i, v);
                    }
                }
                let now = Instant::now();
                if !keys_seen && state.keyed.iter().all(|k| *k) && pids.iter().all(Option::is_some) {
                    keys_seen = true;
                    result.cpu_at_keys_s = cpu_seconds(&pids);
                    result.sessions_at_keys = state.sessions.len();
                }
                if mesh_deadline.is_none() {
                    if state.all_ready() {
                        let id = lab_id.clone().ok_or("the lab never said its id")?;
                        for (i, pid) in pids.iter_mut().enumerate() {
                            *pid = netns_pid(&format!("{id}-n{i}"));
                        }
                        mesh_deadline = Some(now + limits.mesh);
                    } else if now.duration_since(start) > limits.ready {
                        let ready = state.ready.iter().filter(|r| r.is_some()).count();
                        return Err(format!("only {ready} of {n} nodes ready within {} s", limits.ready.as_secs()));
                    }
                    continue;
                }
                if let Some((k, sent)) = probe
                    && now.duration_since(sent) > PROBE_TIMEOUT
                {
                    eprintln!("[lab] 'node {k} sessions' unanswered after {} s", PROBE_TIMEOUT.as_secs());
                    result.probes_unanswered += 1;
                    probe = None;
                }
                // At least one lab command is timed, and none is left half-timed.
                let timed = !result.probe_ms.is_empty() || result.probes_unanswered > 0;
                if state.meshed() && probe.is_none() && timed {
                    break;
                }
                if mesh_deadline.is_some_and(|d| now > d) {
                    eprintln!("[lab] n={n}: no full mesh within {} s of the last ready", limits.mesh.as_secs());
                    break;
                }
                if probe.is_none() && (!timed || now.duration_since(last_probe) >= PROBE_EVERY) {
                    let k = next_probe % n;
                    next_probe += 1;
                    lab.send(&format!("{k} sessions")).await?;
                    let sent = Instant::now();
                    probe = Some((k, sent));
                    last_probe = sent;
                }
            }
        }
    }
    // Memory and CPU at the full mesh (or at the timeout).
    result.rss_kib = pids
        .iter()
        .filter_map(|p| p.and_then(|p| crate::process::rss_kib(&format!("/proc/{p}/status"))))
        .map(|k| k as f64)
        .collect();
    result.cpu_total_s = cpu_seconds(&pids);
    result.sessions_at_mesh = state.sessions.len();
    if !keys_seen {
        // Every key was ready only at the mesh (or never, as seen): no window to divide.
        result.cpu_at_keys_s = result.cpu_total_s;
        result.sessions_at_keys = result.sessions_at_mesh;
    }
    if !state.meshed() {
        return Ok(result);
    }
    // One broadcast from every node.
    let expected = n * (n - 1);
    for i in 0..n {
        lab.send(&format!("{i} /say {BROADCAST}{i}")).await?;
    }
    let deadline = Instant::now() + limits.broadcast;
    loop {
        tokio::time::sleep(POLL).await;
        for (i, log) in logs.iter_mut().enumerate() {
            for v in log.read_new() {
                state.apply(i, v);
            }
        }
        let delivered: usize = state.delivered.iter().sum();
        if (state.receipts() >= expected && delivered >= expected) || Instant::now() > deadline {
            break;
        }
    }
    // A duplicate would come close behind: give it a moment before stopping the lab.
    tokio::time::sleep(Duration::from_secs(1)).await;
    Ok(result)
}

/// The figures that come from the complete event logs.
fn figures_from_logs(state: &State, r: &mut LabResult) {
    let n = r.n;
    let readies: Vec<u64> = state.ready.iter().flatten().copied().collect();
    let (Some(&first), Some(&last)) = (readies.iter().min(), readies.iter().max()) else {
        r.nodes_not_meshed = n;
        r.pairs_missing = n * (n - 1);
        return;
    };
    r.ready_spread_ms = (last - first) as f64;
    let mut mesh_ts = Vec::new();
    for i in 0..n {
        let mut firsts: Vec<u64> = state.first_session[i].values().copied().collect();
        firsts.sort_unstable();
        r.pairs_missing += (n - 1).saturating_sub(firsts.len());
        match firsts.get(n.saturating_sub(2)) {
            Some(&t) if firsts.len() >= n - 1 => {
                mesh_ts.push(t);
                r.mesh_ms.push(t.saturating_sub(last) as f64);
                r.closed_before_mesh += state.closed[i].iter().filter(|c| **c <= t).count();
            }
            _ => r.nodes_not_meshed += 1,
        }
    }
    if let Some(&mesh) = mesh_ts.iter().max()
        && r.nodes_not_meshed == 0
    {
        r.mesh_from_first_ready_ms = Some(mesh.saturating_sub(first) as f64);
        r.sessions = state.sessions.values().filter(|t| **t <= mesh).count();
    } else {
        r.sessions = state.sessions.len();
    }
    r.bcast_expected = n * (n - 1);
    for from in 0..n {
        for to in (0..n).filter(|t| *t != from) {
            match state.received.get(&(from, to)).map(Vec::as_slice) {
                None | Some([]) => r.bcast_lost += 1,
                Some(ts) => {
                    r.bcast_once += 1;
                    r.bcast_duplicates += ts.len() - 1;
                    if let Some(sent) = state.sent.get(&from) {
                        r.bcast_ms.push(ts[0].saturating_sub(*sent) as f64);
                    }
                }
            }
        }
    }
    r.bcast_delivered = state.delivered.iter().sum();
    r.bcast_failed = state.failed.iter().sum();
}

/// The pid of the one process in namespace `ns` (the node: `ip netns exec` and `setpriv`
/// exec it).
fn netns_pid(ns: &str) -> Option<u32> {
    let out = std::process::Command::new("ip")
        .args(["netns", "pids", ns])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .next()
}

/// User + system CPU seconds of these processes now (0 for any already gone).
fn cpu_seconds(pids: &[Option<u32>]) -> f64 {
    let tick = clock_ticks();
    pids.iter()
        .flatten()
        .filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/stat")).ok())
        .filter_map(|s| {
            // Fields after the command name (which is in parentheses and may hold spaces):
            // state is field 3, utime 14, stime 15.
            let rest = &s[s.rfind(')')? + 2..];
            let f: Vec<&str> = rest.split_whitespace().collect();
            let ut: u64 = f.get(11)?.parse().ok()?;
            let st: u64 = f.get(12)?.parse().ok()?;
            Some((ut + st) as f64 / tick)
        })
        .sum()
}

/// Clock ticks per second of `/proc/<pid>/stat` (`getconf CLK_TCK`; 100 on Linux).
fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .trim()
                .parse::<f64>()
                .ok()
        })
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(v: Value) -> String {
        format!("{v}\n")
    }

    #[test]
    fn logs_give_mesh_times_sessions_once_and_broadcast_losses_and_duplicates() {
        let dir =
            std::env::temp_dir().join(format!("noctua-bench-lab-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let ids = ["PA", "PB", "PC"];
        let ready =
            |i: usize, ts: u64| line(json!({"event": "ready", "peer_id": ids[i], "ts": ts}));
        let session = |peer: usize, id: &str, ts: u64| {
            line(
                json!({"event": "session_established", "peer_id": ids[peer], "session": id, "inbound": false, "ts": ts}),
            )
        };
        let msg = |from: usize, ts: u64| {
            line(
                json!({"event": "message", "peer_id": ids[from], "text": format!("{BROADCAST}{from}"), "ts": ts}),
            )
        };
        let sent = |ts: u64| line(json!({"event": "sent", "id": 1, "text": BROADCAST, "ts": ts}));
        // A and B both report session s1 as theirs (crossing opens): one session. A's log
        // is read first, so its sessions and messages name peers whose `ready` is not read
        // yet: they wait until it is.
        let logs = [
            [
                ready(0, 1000),
                session(1, "s1", 1500),
                session(2, "s2", 1600),
                sent(2000),
                msg(1, 2001),
                msg(2, 2002),
            ]
            .concat(),
            [
                ready(1, 1100),
                session(0, "s1", 1500),
                session(2, "s3", 1900),
                sent(2000),
                msg(0, 2003),
                msg(0, 2004),
                msg(2, 2005),
            ]
            .concat(),
            [
                ready(2, 1200),
                session(0, "s2", 1600),
                session(1, "s3", 1800),
                sent(2000),
                msg(1, 2006),
            ]
            .concat(),
        ];
        for (i, l) in logs.iter().enumerate() {
            std::fs::write(dir.join(format!("node{i}.jsonl")), l).unwrap();
        }
        let r = analyze(&dir, 3);
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(r.nodes_not_meshed, 0);
        assert_eq!(r.pairs_missing, 0);
        assert_eq!(r.sessions, 3, "s1 reported by both ends is one session");
        // Per node: its last first-session minus the last ready (1200).
        assert_eq!(r.mesh_ms, vec![400.0, 700.0, 600.0]);
        assert_eq!(r.mesh_from_first_ready_ms, Some(900.0));
        assert_eq!(r.ready_spread_ms, 200.0);
        assert_eq!(r.bcast_expected, 6);
        // A -> B twice (one duplicate), A -> C never (lost).
        assert_eq!(r.bcast_once, 5);
        assert_eq!(r.bcast_lost, 1);
        assert_eq!(r.bcast_duplicates, 1);
        assert_eq!(r.bcast_ms.len(), 5);
    }
}
