//! Scale: N in-process nodes fully meshed, in a fresh child process per (system, N) so that
//! its memory is that mesh's alone. The child prints one JSON line with its results.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use libp2p::PeerId;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::net::Transport;
use crate::pair::{MESSAGE_TIMEOUT, payload};
use crate::process::{self, System};
use crate::{keys, noctua, raw, stock};

/// Prints to stderr while `$loud` is set.
macro_rules! say {
    ($loud:expr, $($arg:tt)*) => {
        if $loud.load(Ordering::Relaxed) {
            eprintln!($($arg)*);
        }
    };
}

/// Message size of a broadcast.
const SIZE: usize = 100;
/// Longest a mesh may take to form.
const MESH_TIMEOUT: Duration = Duration::from_secs(120);

/// What a mesh reports while forming and broadcasting.
enum MeshEv {
    /// The reporting node has a session with node `.0` now; `.1`: reported by the side
    /// that opened it (so that each session or hello exchange is counted once).
    Session(usize, bool),
    /// A session of the reporting node with node `.0` ended.
    Closed(usize),
    /// An open or dial failed for good.
    SessionFailed,
    /// A broadcast message's receipt reached node 0.
    Delivered,
    /// A broadcast message failed.
    Failed,
}

/// Events of a mesh, in the order the nodes saw them: (node index, event, when).
type MeshRx = mpsc::UnboundedReceiver<(usize, MeshEv, Instant)>;
/// The sending side of [`MeshRx`].
type MeshTx = mpsc::UnboundedSender<(usize, MeshEv, Instant)>;

/// Runs one mesh in this process and returns the result line (the `scale-child` mode).
pub async fn child(
    system: System,
    n: usize,
    broadcasts: usize,
    lazy: bool,
    key_count: usize,
) -> Value {
    let (keys, keygen) = if system == System::Noctua {
        keys::generate(2048, key_count.max(1))
    } else {
        (Vec::new(), Duration::ZERO)
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let rss_before = process::self_rss_kib().unwrap_or(0);
    let pairs = n * (n - 1) / 2;
    // Reports of failures while measuring; silenced when the nodes are stopped at the end.
    let loud = Arc::new(AtomicBool::new(true));
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mesh = Mesh::spawn(system, n, lazy, &keys, &tx, &loud).await;

    let (mesh_ms, mesh_missing, sessions) = form_mesh(&mesh, &mut rx).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss_after = process::self_rss_kib().unwrap_or(0);

    let (bcast_ms, mut lost) = broadcast_rounds(&mesh, &mut rx, broadcasts).await;
    // Exactly once: what each receiver counted, against what it should have.
    let got = mesh.received();
    let received: u64 = got.iter().sum();
    let expected = broadcasts as u64;
    let missing: u64 = got.iter().map(|g| expected.saturating_sub(*g)).sum();
    let duplicates: u64 = got.iter().map(|g| g.saturating_sub(expected)).sum();
    lost = lost.max(missing);

    let retries = mesh.open_retries();
    loud.store(false, Ordering::Relaxed);
    mesh.stop().await;
    json!({
        "system": system.name(),
        "nodes": n,
        "pairs": pairs,
        "mesh_ms": mesh_ms,
        "mesh_missing": mesh_missing,
        "rss_before_kib": rss_before,
        "rss_after_kib": rss_after,
        "broadcast_ms": bcast_ms,
        "lost": lost,
        "duplicates": duplicates,
        "received": received,
        "sessions_established": sessions,
        "open_retries": retries,
        "keygen_ms": crate::stats::ms(keygen),
    })
}

/// Full mesh, opened the way `noctua --auto-connect` does: every node "discovers" every
/// other at once and opens to it, so every pair's opens cross. Returns how long until every
/// node had a session with every other (ms), how many pairs {i, j} lacked one on either
/// side at the end, and how many sessions (or hello exchanges) were reported on the way.
async fn form_mesh(mesh: &Mesh, rx: &mut MeshRx) -> (f64, usize, usize) {
    let n = mesh.len();
    let t0 = Instant::now();
    mesh.connect_all();
    // Per node, per peer: sessions up now (a replaced session may close after or before its
    // successor is up, so a count rather than a flag).
    let mut up = vec![vec![0i64; n]; n];
    let mut full = 0usize;
    let mut sessions = 0usize;
    let mut last = t0;
    let complete = |up: &Vec<Vec<i64>>, i: usize| (0..n).all(|j| j == i || up[i][j] > 0);
    let deadline = tokio::time::Instant::from_std(t0 + MESH_TIMEOUT);
    while full < n {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some((i, MeshEv::Session(j, opener), at))) if i < n && j < n => {
                sessions += usize::from(opener);
                let was = complete(&up, i);
                up[i][j] += 1;
                if !was && complete(&up, i) {
                    full += 1;
                    last = last.max(at);
                }
            }
            Ok(Some((i, MeshEv::Closed(j), _))) if i < n && j < n => {
                let was = complete(&up, i);
                up[i][j] -= 1;
                if was && !complete(&up, i) {
                    full -= 1;
                }
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    let missing = (0..n)
        .flat_map(|i| (i + 1..n).map(move |j| (i, j)))
        .filter(|&(i, j)| up[i][j] <= 0 || up[j][i] <= 0)
        .count();
    (crate::stats::ms(last.duration_since(t0)), missing, sessions)
}

/// Broadcasts: node 0 sends one message to every other node, then waits for all receipts;
/// `rounds` times. Returns the time of each complete round (ms) and the messages lost.
async fn broadcast_rounds(mesh: &Mesh, rx: &mut MeshRx, rounds: usize) -> (Vec<f64>, u64) {
    let n = mesh.len();
    let text = payload(SIZE);
    let mut bcast_ms = Vec::new();
    let mut lost = 0u64;
    for _ in 0..rounds {
        // Drain what is left from earlier phases (e.g. responder-side session events).
        while rx.try_recv().is_ok() {}
        let t0 = Instant::now();
        mesh.broadcast_from_first(&text);
        let (mut ok, mut bad, mut last) = (0usize, 0usize, t0);
        let deadline = tokio::time::Instant::from_std(t0 + MESSAGE_TIMEOUT);
        while ok + bad < n - 1 {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some((0, MeshEv::Delivered, at))) => {
                    ok += 1;
                    last = last.max(at);
                }
                Ok(Some((0, MeshEv::Failed, _))) => bad += 1,
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        lost += (n - 1 - ok) as u64;
        if ok == n - 1 {
            bcast_ms.push(crate::stats::ms(last.duration_since(t0)));
        }
    }
    (bcast_ms, lost)
}

/// The nodes of one mesh, all of one system.
enum Mesh {
    Noctua(Vec<noctua::Node>),
    Stock(Vec<stock::Node>),
    Raw(Vec<raw::MeshNode>),
}

impl Mesh {
    /// Starts `n` nodes, listening, before the clock starts; their events go to `tx` as
    /// [`MeshEv`]s (failures reported on stderr while `loud`).
    async fn spawn(
        system: System,
        n: usize,
        lazy: bool,
        keys: &[Arc<noctua_chat::RsaKeyPair>],
        tx: &MeshTx,
        loud: &Arc<AtomicBool>,
    ) -> Mesh {
        match system {
            System::Noctua => {
                let (etx, erx) = mpsc::unbounded_channel();
                let mut nodes = Vec::new();
                for i in 0..n {
                    let cfg = noctua::mesh_config(i, n, keys[i % keys.len()].clone());
                    let node = noctua::Node::spawn(i, cfg, Transport::Tcp, lazy, Some(etx.clone()));
                    nodes.push(node.await);
                }
                let index: HashMap<PeerId, usize> =
                    nodes.iter().enumerate().map(|(i, x)| (x.peer, i)).collect();
                forward(erx, tx.clone(), loud.clone(), move |ev| {
                    noctua_event(&index, ev)
                });
                Mesh::Noctua(nodes)
            }
            System::Stock => {
                let (etx, erx) = mpsc::unbounded_channel();
                let mut nodes = Vec::new();
                for i in 0..n {
                    nodes
                        .push(stock::Node::spawn(i, Transport::Tcp, lazy, Some(etx.clone())).await);
                }
                let index: HashMap<PeerId, usize> =
                    nodes.iter().enumerate().map(|(i, x)| (x.peer, i)).collect();
                forward(erx, tx.clone(), loud.clone(), move |ev| {
                    stock_event(&index, ev)
                });
                Mesh::Stock(nodes)
            }
            System::Raw => {
                let (etx, erx) = mpsc::unbounded_channel();
                let mut nodes = Vec::new();
                for i in 0..n {
                    nodes.push(
                        raw::MeshNode::spawn(i, etx.clone())
                            .await
                            .expect("raw node"),
                    );
                }
                forward(erx, tx.clone(), loud.clone(), raw_event);
                Mesh::Raw(nodes)
            }
        }
    }

    fn len(&self) -> usize {
        match self {
            Mesh::Noctua(nn) => nn.len(),
            Mesh::Stock(sn) => sn.len(),
            Mesh::Raw(rn) => rn.len(),
        }
    }

    /// Every node opens to every other, all at once (so every pair's opens cross).
    fn connect_all(&self) {
        let n = self.len();
        for j in 0..n {
            for i in (0..n).filter(|i| *i != j) {
                match self {
                    Mesh::Noctua(nn) => nn[j].send(noctua::Cmd::Discover(
                        nn[i].peer,
                        nn[i].addr.clone(),
                        noctua::mesh_secret(),
                    )),
                    Mesh::Stock(sn) => sn[j].send(stock::Cmd::Dial(sn[i].addr.clone())),
                    Mesh::Raw(rn) => rn[j].send(raw::Cmd::Connect(i, rn[i].addr)),
                }
            }
        }
    }

    /// Node 0 sends `text` to every other node.
    fn broadcast_from_first(&self, text: &str) {
        for j in 1..self.len() {
            match self {
                Mesh::Noctua(nn) => nn[0].send(noctua::Cmd::Send(nn[j].peer, text.to_owned())),
                Mesh::Stock(sn) => sn[0].send(stock::Cmd::Send(sn[j].peer, text.to_owned())),
                Mesh::Raw(rn) => rn[0].send(raw::Cmd::Send(j, SIZE)),
            }
        }
    }

    /// Automatic opens that failed and were retried, all nodes (Noctua only; 0 otherwise).
    fn open_retries(&self) -> u64 {
        match self {
            Mesh::Noctua(nn) => nn
                .iter()
                .map(|x| x.counters.open_retries.load(Ordering::Relaxed))
                .sum(),
            Mesh::Stock(_) | Mesh::Raw(_) => 0,
        }
    }

    /// Messages each receiver (every node but 0) counted, set-up traffic excluded.
    fn received(&self) -> Vec<u64> {
        match self {
            Mesh::Noctua(nn) => nn
                .iter()
                .skip(1)
                .map(|x| x.counters.received.load(Ordering::Relaxed))
                .collect(),
            Mesh::Stock(sn) => sn
                .iter()
                .skip(1)
                .map(|x| x.counters.received.load(Ordering::Relaxed))
                .collect(),
            Mesh::Raw(rn) => rn
                .iter()
                .skip(1)
                .map(|x| x.counters.received.load(Ordering::Relaxed))
                .collect(),
        }
    }

    async fn stop(self) {
        match self {
            Mesh::Noctua(nn) => {
                for x in nn {
                    x.stop().await;
                }
            }
            Mesh::Stock(sn) => {
                for x in sn {
                    x.stop().await;
                }
            }
            Mesh::Raw(rn) => {
                for x in rn {
                    x.stop();
                }
            }
        }
    }
}

/// Forwards one system's node events to the mesh's channel, as [`MeshEv`]s made by `map`,
/// with the failures `map` describes printed while `loud`.
fn forward<E: Send + 'static>(
    mut events: mpsc::UnboundedReceiver<(usize, E, Instant)>,
    tx: MeshTx,
    loud: Arc<AtomicBool>,
    map: impl Fn(E) -> (MeshEv, Option<String>) + Send + 'static,
) {
    tokio::spawn(async move {
        while let Some((i, ev, at)) = events.recv().await {
            let (m, failure) = map(ev);
            if let Some(failure) = failure {
                say!(loud, "[scale] node {i}: {failure}");
            }
            let _ = tx.send((i, m, at));
        }
    });
}

/// A node index of a peer (`usize::MAX`, ignored by the mesh, for an unknown one).
fn idx(index: &HashMap<PeerId, usize>, p: &PeerId) -> usize {
    index.get(p).copied().unwrap_or(usize::MAX)
}

fn noctua_event(index: &HashMap<PeerId, usize>, ev: noctua::Ev) -> (MeshEv, Option<String>) {
    match ev {
        noctua::Ev::Established { peer, initiator } => {
            (MeshEv::Session(idx(index, &peer), initiator), None)
        }
        noctua::Ev::OpenFailed(e) => (MeshEv::SessionFailed, Some(format!("open failed: {e}"))),
        noctua::Ev::Delivered => (MeshEv::Delivered, None),
        noctua::Ev::Failed(p, e) => (MeshEv::Failed, Some(format!("delivery to {p} failed: {e}"))),
        noctua::Ev::Closed(p, r) => (
            MeshEv::Closed(idx(index, &p)),
            Some(format!("session with {p} closed: {r}")),
        ),
    }
}

fn stock_event(index: &HashMap<PeerId, usize>, ev: stock::Ev) -> (MeshEv, Option<String>) {
    match ev {
        stock::Ev::Session(p) => (MeshEv::Session(idx(index, &p), true), None),
        stock::Ev::DialFailed(e) => (MeshEv::SessionFailed, Some(format!("dial failed: {e}"))),
        stock::Ev::Delivered => (MeshEv::Delivered, None),
        stock::Ev::Failed(p, e) => (MeshEv::Failed, Some(format!("request to {p} failed: {e}"))),
    }
}

fn raw_event(ev: raw::Ev) -> (MeshEv, Option<String>) {
    match ev {
        raw::Ev::Session(i) => (MeshEv::Session(i, true), None),
        raw::Ev::ConnectFailed(e) => (MeshEv::SessionFailed, Some(format!("connect failed: {e}"))),
        raw::Ev::Delivered => (MeshEv::Delivered, None),
        raw::Ev::Failed(p, e) => (MeshEv::Failed, Some(format!("send to {p} failed: {e}"))),
    }
}

/// Runs `scale-child` for one (system, N) and returns its result line.
pub fn run_child(
    system: System,
    n: usize,
    broadcasts: usize,
    lazy: bool,
    quick: bool,
) -> Result<Value, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut cmd = std::process::Command::new(exe);
    cmd.args([
        "scale-child",
        "--system",
        system.name(),
        "--nodes",
        &n.to_string(),
        "--broadcasts",
        &broadcasts.to_string(),
        "--keys",
        if quick { "2" } else { "4" },
    ]);
    if lazy {
        cmd.arg("--lazy");
    }
    let child = process::Child::spawn(&mut cmd, false).map_err(|e| e.to_string())?;
    let line = child.wait_line(Duration::from_secs(600), |l| l.starts_with('{'));
    child.finish();
    let (line, _) =
        line.ok_or_else(|| format!("scale child {} n={n} gave no result", system.name()))?;
    serde_json::from_str(&line).map_err(|e| e.to_string())
}
