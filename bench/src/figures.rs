//! The figures: each group measures Noctua and the baselines in the same run, interleaved
//! in rounds so that background load hits all systems alike.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use noctua_chat::RsaKeyPair;
use serde_json::json;
use tokio::sync::mpsc;

use crate::net::Transport;
use crate::pair::{PairClient, Run};
use crate::process::{self, System};
use crate::report::{Figure, Report, Side, Skipped};
use crate::{keys, lab, minimal, noctua, raw, scale, stock};

/// A group of figures, as named on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Group {
    /// Process start to banner, and to RSA key ready.
    Startup,
    /// Idle RSS of a node process and its growth per session.
    Memory,
    /// Dial to active session, RSA-2048 and RSA-3072.
    Handshake,
    /// Sequential message round trip over TCP and QUIC.
    Rtt,
    /// Messages per second with many outstanding.
    Throughput,
    /// Round trips while sessions rotate.
    Rotation,
    /// N nodes fully meshed.
    Scale,
    /// `noctua lab`: N real node processes in network namespaces (needs root).
    Lab,
}

impl Group {
    /// Every group, in run order.
    pub const ALL: [Group; 8] = [
        Group::Startup,
        Group::Memory,
        Group::Handshake,
        Group::Rtt,
        Group::Throughput,
        Group::Rotation,
        Group::Scale,
        Group::Lab,
    ];

    /// The group's name in figure ids.
    pub fn name(self) -> &'static str {
        match self {
            Group::Startup => "startup",
            Group::Memory => "memory",
            Group::Handshake => "handshake",
            Group::Rtt => "rtt",
            Group::Throughput => "throughput",
            Group::Rotation => "rotation",
            Group::Scale => "scale",
            Group::Lab => "lab",
        }
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Opts {
    /// Short runs (seconds).
    pub quick: bool,
    /// `V1Lazy` multistream-select for outbound substreams (Noctua and stock alike).
    pub lazy: bool,
    /// The `noctua` binary.
    pub noctua_bin: PathBuf,
    /// Groups to run.
    pub groups: Vec<Group>,
    /// Whether the measuring clients are polled on the main thread (`--client-on-main-thread`).
    pub client_on_main_thread: bool,
    /// Lab sizes instead of the default ones (`--lab-nodes`).
    pub lab_nodes: Vec<usize>,
    /// Where the labs' event logs go (one directory per size).
    pub lab_dir: PathBuf,
}

impl Opts {
    /// Where the in-process clients and servers run, in words.
    pub fn topology(&self) -> &'static str {
        if self.client_on_main_thread {
            "topology: client polled on the main thread (block_on), servers on the 2 workers (--client-on-main-thread)"
        } else {
            TOPOLOGY
        }
    }
}

/// Sizes of every measurement.
#[derive(Debug, Clone)]
struct Params {
    startup_runs: usize,
    settle: Duration,
    mem_runs: usize,
    growth_peers: usize,
    hs_runs: usize,
    rtt_msgs: usize,
    rounds: usize,
    warmup: usize,
    tput_small: usize,
    tput_big: usize,
    tput_runs: usize,
    rot_msgs: usize,
    rot_after: u64,
    rot_manual_every: usize,
    scale_sizes: Vec<usize>,
    scale_repeats: usize,
    broadcasts: usize,
    lab_sizes: Vec<usize>,
    lab_limits: lab::LabLimits,
}

impl Params {
    fn new(quick: bool, lab_nodes: &[usize]) -> Params {
        let mut p = Params::base(quick);
        if !lab_nodes.is_empty() {
            p.lab_sizes = lab_nodes.to_vec();
        }
        p
    }

    fn base(quick: bool) -> Params {
        if quick {
            Params {
                startup_runs: 3,
                settle: Duration::from_millis(100),
                mem_runs: 2,
                growth_peers: 3,
                hs_runs: 4,
                rtt_msgs: 60,
                rounds: 2,
                warmup: 5,
                tput_small: 600,
                tput_big: 80,
                tput_runs: 1,
                rot_msgs: 80,
                rot_after: 16,
                rot_manual_every: 10,
                scale_sizes: vec![4, 8],
                scale_repeats: 1,
                broadcasts: 3,
                lab_sizes: vec![8],
                lab_limits: lab::LabLimits {
                    ready: Duration::from_secs(60),
                    mesh: Duration::from_secs(60),
                    broadcast: Duration::from_secs(30),
                },
            }
        } else {
            Params {
                startup_runs: 20,
                settle: Duration::from_millis(500),
                mem_runs: 5,
                growth_peers: 16,
                hs_runs: 40,
                rtt_msgs: 2000,
                rounds: 4,
                warmup: 50,
                tput_small: 20_000,
                tput_big: 2_000,
                tput_runs: 5,
                rot_msgs: 1000,
                rot_after: 40,
                rot_manual_every: 25,
                scale_sizes: vec![8, 16, 32],
                scale_repeats: 3,
                broadcasts: 20,
                lab_sizes: vec![32, 64, 128],
                lab_limits: lab::LabLimits {
                    ready: Duration::from_secs(120),
                    mesh: Duration::from_secs(240),
                    broadcast: Duration::from_secs(60),
                },
            }
        }
    }
}

/// Where clients and servers of the in-process figures run, the same for every system.
pub const TOPOLOGY: &str = "topology: client and server in one process, both tasks on one 2-worker tokio runtime (no main-thread client)";

/// The payload of every small message.
const SMALL: usize = 100;
/// The payload of every large message.
const BIG: usize = 16 * 1024;

/// Runs the selected groups and returns the report.
pub async fn run(opts: &Opts) -> Report {
    let p = Params::new(opts.quick, &opts.lab_nodes);
    let mut report = Report::default();
    report.meta.insert("quick".into(), opts.quick.into());
    report.meta.insert("noctua_v1lazy".into(), true.into());
    report.meta.insert("stock_v1lazy".into(), opts.lazy.into());
    report
        .meta
        .insert("topology".into(), opts.topology().into());
    report.meta.insert(
        "noctua_bin".into(),
        opts.noctua_bin.display().to_string().into(),
    );
    report.meta.insert("machine".into(), machine());
    report.meta.insert(
        "groups".into(),
        opts.groups
            .iter()
            .map(|g| g.name())
            .collect::<Vec<_>>()
            .into(),
    );
    let has = |g: Group| opts.groups.contains(&g);

    // Keys first: nothing timed may generate one.
    let needs_keys = [
        Group::Memory,
        Group::Handshake,
        Group::Rtt,
        Group::Throughput,
        Group::Rotation,
    ]
    .iter()
    .any(|g| has(*g));
    let (k2048, t2048) = if needs_keys {
        keys::generate(2048, 4)
    } else {
        (Vec::new(), Duration::ZERO)
    };
    let (k3072, t3072) = if has(Group::Handshake) {
        keys::generate(3072, 2)
    } else {
        (Vec::new(), Duration::ZERO)
    };
    report.meta.insert(
        "keygen_ms".into(),
        json!({ "rsa2048_x4": crate::stats::ms(t2048), "rsa3072_x2": crate::stats::ms(t3072) }),
    );

    let bin_ok = opts.noctua_bin.is_file();
    for g in Group::ALL.into_iter().filter(|g| has(*g)) {
        eprintln!("[bench] {} ...", g.name());
        let t0 = Instant::now();
        match g {
            Group::Startup | Group::Memory if !bin_ok => {
                let reason = format!(
                    "noctua binary not found at {} (build it: cargo build --release -p noctua, or pass --noctua-bin)",
                    opts.noctua_bin.display()
                );
                eprintln!("[bench] skipping {}: {reason}", g.name());
                report.skipped.push(Skipped {
                    group: g.name(),
                    reason,
                });
            }
            Group::Startup => startup(&mut report, opts, &p),
            Group::Memory => memory(&mut report, opts, &p, &k2048).await,
            Group::Handshake => handshake(&mut report, opts, &p, &k2048, &k3072).await,
            Group::Rtt => rtt(&mut report, opts, &p, &k2048).await,
            Group::Throughput => throughput(&mut report, opts, &p, &k2048).await,
            Group::Rotation => rotation(&mut report, opts, &p, &k2048).await,
            Group::Scale => scale_group(&mut report, opts, &p),
            Group::Lab => match lab::available(&opts.noctua_bin) {
                Ok(()) => lab_group(&mut report, opts, &p).await,
                Err(reason) => {
                    eprintln!("[bench] skipping lab: {reason}");
                    report.skipped.push(Skipped {
                        group: g.name(),
                        reason,
                    });
                }
            },
        }
        eprintln!(
            "[bench] {} done in {:.1} s",
            g.name(),
            t0.elapsed().as_secs_f64()
        );
    }
    report
}

fn machine() -> serde_json::Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let nproc = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    json!({ "nproc": nproc, "cpu": cpu, "kernel": kernel })
}

/// Folds a server-side count into a run's loss: whatever the server did not receive is lost
/// even if the client somehow saw a receipt.
fn reconcile(run: &mut Run, attempted: usize, received: u64) {
    let missing = (attempted as u64).saturating_sub(received);
    run.lost = run.lost.max(missing);
}

/// What the server counted since `before`, once it has caught up with `attempted` (its
/// count may trail the client's last receipt by an event-loop turn) or a second passed.
async fn received_since<C: PairClient>(c: &mut C, before: u64, attempted: usize) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        let got = c.server_received() - before;
        if got >= attempted as u64 || Instant::now() >= deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

async fn measure_rtt<C: PairClient>(c: &mut C, n: usize, size: usize) -> Run {
    let before = c.server_received();
    let mut run = c.rtt(n, size).await;
    let received = received_since(c, before, n).await;
    reconcile(&mut run, n, received);
    run
}

async fn measure_tput<C: PairClient>(c: &mut C, total: usize, window: usize, size: usize) -> Run {
    let before = c.server_received();
    let mut run = c.throughput(total, window, size).await;
    let received = received_since(c, before, total).await;
    reconcile(&mut run, total, received);
    run
}

fn startup(report: &mut Report, opts: &Opts, p: &Params) {
    let mut banner = [Vec::new(), Vec::new(), Vec::new()];
    let mut ready = [Vec::new(), Vec::new(), Vec::new()];
    let mut failed = [0u64; 3];
    let systems = [System::Noctua, System::Stock, System::Raw];
    tokio::task::block_in_place(|| {
        for _ in 0..p.startup_runs {
            for (i, sys) in systems.iter().enumerate() {
                match process::startup_once(*sys, &opts.noctua_bin, Duration::ZERO) {
                    Ok(s) => {
                        banner[i].push(crate::stats::ms(s.banner));
                        ready[i].push(crate::stats::ms(s.ready));
                    }
                    Err(e) => {
                        eprintln!("[bench] start-up failed: {e}");
                        failed[i] += 1;
                    }
                }
            }
        }
    });
    for (id, samples, note) in [
        (
            "startup.banner",
            &banner,
            "spawn to the connection-string line (noctua, interactive face piped) / to the address line (baseline processes)",
        ),
        (
            "startup.ready",
            &ready,
            "spawn to '[i] RSA-2048 key ready' (noctua) / to 'ready' (baselines: no key)",
        ),
    ] {
        let mut f = Figure::new(id, "startup", "ms");
        f.noctua = Side::new(&samples[0], false, failed[0]);
        f.stock = Side::new(&samples[1], false, failed[1]);
        f.raw = Side::new(&samples[2], false, failed[2]);
        f.notes = format!("{note}; {} starts each", p.startup_runs);
        report.figures.push(f);
    }
}

async fn memory(report: &mut Report, opts: &Opts, p: &Params, keys: &[Arc<RsaKeyPair>]) {
    let systems = [System::Noctua, System::Stock, System::Raw];
    let mut idle = [Vec::new(), Vec::new(), Vec::new()];
    let mut anon = [Vec::new(), Vec::new(), Vec::new()];
    let mut failed = [0u64; 3];
    tokio::task::block_in_place(|| {
        for _ in 0..p.mem_runs {
            for (i, sys) in systems.iter().enumerate() {
                match process::startup_once(*sys, &opts.noctua_bin, p.settle) {
                    Ok(s) => {
                        idle[i].push(s.idle_rss_kib as f64 / 1024.0);
                        anon[i].push(s.idle_anon_kib as f64 / 1024.0);
                    }
                    Err(e) => {
                        eprintln!("[bench] start failed: {e}");
                        failed[i] += 1;
                    }
                }
            }
        }
    });
    let mut f = Figure::new("memory.idle_rss", "memory", "MiB");
    f.noctua = Side::new(&idle[0], false, failed[0]);
    f.stock = Side::new(&idle[1], false, failed[1]);
    f.raw = Side::new(&idle[2], false, failed[2]);
    f.notes = format!(
        "VmRSS {} ms after ready, {} processes each",
        p.settle.as_millis(),
        p.mem_runs
    );
    report.figures.push(f);
    let mut a = Figure::new("memory.idle_anon", "memory", "MiB");
    a.noctua = Side::new(&anon[0], false, failed[0]);
    a.stock = Side::new(&anon[1], false, failed[1]);
    a.raw = Side::new(&anon[2], false, failed[2]);
    a.notes = "RssAnon of the same processes: heap and stacks, without the executable's and libraries' pages (which make most of VmRSS)".into();
    report.figures.push(a);

    let mut g = Figure::new("memory.per_session", "memory", "KiB");
    let mut totals = serde_json::Map::new();
    for (i, sys) in systems.iter().enumerate() {
        match growth(*sys, opts, p, keys).await {
            Ok((rss, failed)) => {
                let deltas: Vec<f64> = rss.windows(2).map(|w| w[1] as f64 - w[0] as f64).collect();
                let per =
                    (rss[rss.len() - 1] as f64 - rss[0] as f64) / (rss.len() - 1).max(1) as f64;
                totals.insert(
                    sys.name().into(),
                    json!({ "rss_kib": rss, "mean_growth_kib_per_session": per }),
                );
                let side = Side::new(&deltas, false, failed);
                match i {
                    0 => g.noctua = side,
                    1 => g.stock = side,
                    _ => g.raw = side,
                }
            }
            Err(e) => {
                eprintln!("[bench] growth of {} failed: {e}", sys.name());
                let side = Some(Side::failed(1));
                match i {
                    0 => g.noctua = side,
                    1 => g.stock = side,
                    _ => g.raw = side,
                }
            }
        }
    }
    g.notes = format!(
        "VmRSS growth of one node process per added session ({} in-process peers connect one by one; stock: connection + one request; raw: TCP connection + one frame)",
        p.growth_peers
    );
    g.put("per_system", totals);
    report.figures.push(g);
}

/// Starts a node process, connects `growth_peers` in-process peers one at a time, and
/// returns its RSS (KiB) before and after each, with the number of failed sessions.
async fn growth(
    sys: System,
    opts: &Opts,
    p: &Params,
    keys: &[Arc<RsaKeyPair>],
) -> Result<(Vec<u64>, u64), String> {
    let child = process::Child::spawn(
        &mut process::node_command(sys, &opts.noctua_bin, true),
        true,
    )
    .map_err(|e| e.to_string())?;
    let timeout = Duration::from_secs(30);
    let addr = match tokio::task::block_in_place(|| child_address(sys, &child, timeout, p)) {
        Ok(a) => a,
        Err(e) => {
            child.finish();
            return Err(e);
        }
    };
    let mut rss = vec![child.rss_kib().ok_or("no VmRSS")?];
    let mut failed = 0u64;
    let mut peers = GrowthPeers::default();
    let settle = Duration::from_millis(if opts.quick { 50 } else { 150 });
    for k in 0..p.growth_peers {
        if !peers.connect(sys, opts, k, keys, &addr, timeout).await? {
            failed += 1;
        }
        tokio::time::sleep(settle).await;
        rss.push(child.rss_kib().ok_or("no VmRSS")?);
    }
    peers.stop().await;
    tokio::task::block_in_place(|| child.finish());
    Ok((rss, failed))
}

/// Waits until the node process `child` is ready and returns the address to dial it at.
fn child_address(
    sys: System,
    child: &process::Child,
    timeout: Duration,
    p: &Params,
) -> Result<String, String> {
    let addr = match sys {
        System::Noctua => {
            let (line, _) = child
                .wait_line(timeout, |l| l.contains("\"event\":\"ready\""))
                .ok_or("no ready event")?;
            let v: serde_json::Value = serde_json::from_str(&line).map_err(|e| e.to_string())?;
            let listen = v["listen"][0].as_str().ok_or("no listen address")?;
            let peer = v["peer_id"].as_str().ok_or("no peer id")?;
            child
                .wait_line(timeout, |l| l.contains("\"event\":\"key_ready\""))
                .ok_or("no key_ready event")?;
            format!("{listen}/p2p/{peer}")
        }
        _ => {
            let (line, _) = child
                .wait_line(timeout, |l| l.starts_with("banner "))
                .ok_or("no banner")?;
            line["banner ".len()..].to_string()
        }
    };
    std::thread::sleep(p.settle);
    Ok(addr)
}

/// The in-process peers of the growth figure, kept connected until the figure is done.
#[derive(Default)]
struct GrowthPeers {
    noctua: Vec<noctua::Node>,
    stock: Vec<stock::Node>,
    raw: Vec<tokio::net::TcpStream>,
}

impl GrowthPeers {
    /// Connects peer number `k` of system `sys` to `addr`; whether its session formed.
    async fn connect(
        &mut self,
        sys: System,
        opts: &Opts,
        k: usize,
        keys: &[Arc<RsaKeyPair>],
        addr: &str,
        timeout: Duration,
    ) -> Result<bool, String> {
        let ok = match sys {
            System::Noctua => {
                let (tx, mut rx) = mpsc::unbounded_channel();
                let cfg = noctua::config(100 + k, keys[k % keys.len()].clone());
                let node =
                    noctua::Node::spawn(100 + k, cfg, Transport::Tcp, opts.lazy, Some(tx)).await;
                node.send(noctua::Cmd::Connect(
                    addr.parse().map_err(|e| format!("{e}"))?,
                    noctua_chat::Secret::new(process::NODE_SECRET).expect("secret"),
                ));
                self.noctua.push(node);
                first_outcome(timeout, &mut rx, |ev| match ev {
                    noctua::Ev::Established { .. } => Some(Ok(())),
                    noctua::Ev::OpenFailed(e) => Some(Err(format!("open failed: {e}"))),
                    _ => None,
                })
                .await
            }
            System::Stock => {
                let (tx, mut rx) = mpsc::unbounded_channel();
                let node = stock::Node::spawn(100 + k, Transport::Tcp, opts.lazy, Some(tx)).await;
                node.send(stock::Cmd::Dial(addr.parse().map_err(|e| format!("{e}"))?));
                self.stock.push(node);
                first_outcome(timeout, &mut rx, |ev| match ev {
                    stock::Ev::Session(_) => Some(Ok(())),
                    stock::Ev::DialFailed(e) => Some(Err(format!("stock dial failed: {e}"))),
                    _ => None,
                })
                .await
            }
            System::Raw => match tokio::time::timeout(timeout, raw_connect(addr)).await {
                Ok(Ok(s)) => {
                    self.raw.push(s);
                    true
                }
                _ => false,
            },
        };
        Ok(ok)
    }

    async fn stop(self) {
        for n in self.noctua {
            n.stop().await;
        }
        for n in self.stock {
            n.stop().await;
        }
        drop(self.raw);
    }
}

/// The first event of `rx` that `outcome` decides (success, or a failure it explains),
/// within `timeout`; a closed channel or the timeout is a failure.
async fn first_outcome<P, E, X>(
    timeout: Duration,
    rx: &mut mpsc::UnboundedReceiver<(P, E, X)>,
    outcome: impl Fn(E) -> Option<Result<(), String>>,
) -> bool {
    let wait = async {
        while let Some((_, ev, _)) = rx.recv().await {
            match outcome(ev) {
                Some(Ok(())) => return true,
                Some(Err(e)) => {
                    eprintln!("[bench] {e}");
                    return false;
                }
                None => {}
            }
        }
        false
    };
    tokio::time::timeout(timeout, wait).await.unwrap_or(false)
}

/// One raw-TCP peer: connects, sends one small frame and reads its answer.
async fn raw_connect(addr: &str) -> std::io::Result<tokio::net::TcpStream> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    tokio::io::AsyncWriteExt::write_all(&mut s, &raw::frame(raw::DATA, 0, SMALL)).await?;
    let mut buf = Vec::new();
    raw::read_frame(&mut s, &mut buf).await?;
    Ok(s)
}

async fn handshake(
    report: &mut Report,
    opts: &Opts,
    p: &Params,
    k2048: &[Arc<RsaKeyPair>],
    k3072: &[Arc<RsaKeyPair>],
) {
    let mut n2048 = Vec::new();
    let mut n3072 = Vec::new();
    let (mut st, mut rw) = (Vec::new(), Vec::new());
    let (mut lost_n2048, mut lost_n3072, mut lost_s, mut lost_r) = (0u64, 0u64, 0u64, 0u64);
    // One untimed warm-up of each (first-use costs).
    for r in 0..=p.hs_runs {
        let keep = r > 0;
        for (keys, samples, lost) in [
            (k2048, &mut n2048, &mut lost_n2048),
            (k3072, &mut n3072, &mut lost_n3072),
        ] {
            let server = noctua::config(0, keys[0].clone());
            let client = noctua::config(1, keys[1].clone());
            match noctua::Client::connect(0, server, client, Transport::Tcp, opts.lazy).await {
                Ok((c, d)) => {
                    if keep {
                        samples.push(crate::stats::ms(d));
                    }
                    c.close().await;
                }
                Err(e) => {
                    eprintln!("[bench] handshake failed: {e}");
                    *lost += 1;
                }
            }
        }
        match stock::Client::connect(Transport::Tcp, opts.lazy).await {
            Ok((c, d)) => {
                if keep {
                    st.push(crate::stats::ms(d));
                }
                c.close().await;
            }
            Err(e) => {
                eprintln!("[bench] stock connect failed: {e}");
                lost_s += 1;
            }
        }
        match raw::Client::connect().await {
            Ok((c, d)) => {
                if keep {
                    rw.push(crate::stats::ms(d));
                }
                c.close();
            }
            Err(e) => {
                eprintln!("[bench] raw connect failed: {e}");
                lost_r += 1;
            }
        }
    }
    for (id, samples, lost, bits) in [
        ("handshake.rsa2048", &n2048, lost_n2048, 2048),
        ("handshake.rsa3072", &n3072, lost_n3072, 3072),
    ] {
        let mut f = Figure::new(id, "handshake", "ms");
        f.noctua = Side::new(samples, false, lost);
        f.stock = Side::new(&st, false, lost_s);
        f.raw = Side::new(&rw, false, lost_r);
        f.notes = format!(
            "TCP+Noise+Yamux dial to session active (RSA-{bits}, keys pre-generated); stock: dial to first response; raw: connect + one frame; {} each",
            p.hs_runs
        );
        report.figures.push(f);
    }
}

/// A Noctua client and server pair with pre-generated keys.
async fn noctua_pair(
    keys: &[Arc<RsaKeyPair>],
    t: Transport,
    lazy: bool,
    tweak: impl Fn(noctua_chat::Config) -> noctua_chat::Config,
) -> Option<noctua::Client> {
    let server = tweak(noctua::config(0, keys[0].clone()));
    let client = tweak(noctua::config(1, keys[1].clone()));
    match noctua::Client::connect(0, server, client, t, lazy).await {
        Ok((c, _)) => Some(c),
        Err(e) => {
            eprintln!("[bench] noctua session failed: {e}");
            None
        }
    }
}

async fn stock_pair(t: Transport, lazy: bool) -> Option<stock::Client> {
    match stock::Client::connect(t, lazy).await {
        Ok((c, _)) => Some(c),
        Err(e) => {
            eprintln!("[bench] stock connection failed: {e}");
            None
        }
    }
}

async fn raw_pair() -> Option<raw::Client> {
    match raw::Client::connect().await {
        Ok((c, _)) => Some(c),
        Err(e) => {
            eprintln!("[bench] raw connection failed: {e}");
            None
        }
    }
}

/// A run's latency side; a client that could not even connect loses everything.
fn lat_side(run: Option<Run>, attempted: usize) -> Option<Side> {
    match run {
        Some(r) => Side::new(&r.lat_ms, false, r.lost).or_else(|| Some(Side::failed(r.lost))),
        None => Some(Side::failed(attempted as u64)),
    }
}

async fn rtt(report: &mut Report, opts: &Opts, p: &Params, keys: &[Arc<RsaKeyPair>]) {
    for t in [Transport::Tcp, Transport::Quic] {
        let mut nc = noctua_pair(keys, t, opts.lazy, |c| c).await;
        let mut sc = stock_pair(t, opts.lazy).await;
        let mut rc = if t == Transport::Tcp {
            raw_pair().await
        } else {
            None
        };
        // The harness's floor, over TCP: the smallest tokio ping-pong, as many bytes each
        // way as a raw frame.
        let mut mc = if t == Transport::Tcp {
            match minimal::PingPong::connect(raw::frame(raw::DATA, 0, SMALL).len()).await {
                Ok(c) => Some(c),
                Err(e) => {
                    eprintln!("[bench] minimal ping-pong failed: {e}");
                    None
                }
            }
        } else {
            None
        };
        // Warm-up, untimed.
        if let Some(c) = nc.as_mut() {
            c.rtt(p.warmup, SMALL).await;
        }
        if let Some(c) = sc.as_mut() {
            c.rtt(p.warmup, SMALL).await;
        }
        if let Some(c) = rc.as_mut() {
            c.rtt(p.warmup, SMALL).await;
        }
        if let Some(c) = mc.as_mut() {
            c.rtt(p.warmup).await;
        }
        let per_round = p.rtt_msgs / p.rounds;
        let (mut nr, mut sr, mut rr, mut mr) = (
            Run::default(),
            Run::default(),
            Run::default(),
            Run::default(),
        );
        for _ in 0..p.rounds {
            if let Some(c) = nc.as_mut() {
                nr.absorb(measure_rtt(c, per_round, SMALL).await);
            }
            if let Some(c) = sc.as_mut() {
                sr.absorb(measure_rtt(c, per_round, SMALL).await);
            }
            if let Some(c) = rc.as_mut() {
                rr.absorb(measure_rtt(c, per_round, SMALL).await);
            }
            if let Some(c) = mc.as_mut() {
                mr.absorb(c.rtt(per_round).await);
            }
        }
        let attempted = per_round * p.rounds;
        let mut f = Figure::new(format!("rtt.{}", t.name()), "rtt", "ms");
        f.noctua = lat_side(nc.is_some().then_some(nr), attempted);
        f.stock = lat_side(sc.is_some().then_some(sr), attempted);
        if t == Transport::Tcp {
            f.raw = lat_side(rc.is_some().then_some(rr), attempted);
            let floor = lat_side(mc.is_some().then_some(mr), attempted);
            if let Some(m) = &floor {
                f.put("minimal_p50_ms", m.summary.median);
                f.put("minimal_p99_ms", m.summary.tail);
                f.put("minimal_lost", m.lost);
            }
            let over = |a: &Option<Side>| {
                let (a, b) = (a.as_ref()?.summary.median, floor.as_ref()?.summary.median);
                (b > 0.0 && a.is_finite() && b.is_finite()).then(|| a / b)
            };
            if let Some(r) = over(&f.raw) {
                f.put("raw_over_minimal_p50", r);
            }
            if let Some(r) = over(&f.noctua) {
                f.put("noctua_over_minimal_p50", r);
            }
        }
        f.notes = format!(
            "{SMALL}-byte text, sequential send to delivery receipt, {attempted} messages in {} interleaved rounds; {}{}",
            p.rounds,
            opts.topology(),
            if t == Transport::Quic {
                "; no raw baseline over QUIC"
            } else {
                "; harness floor: a minimal tokio ping-pong (read_exact/write_all, same bytes as a raw frame, same topology) in the same rounds, extra.minimal_p50_ms"
            }
        );
        report.figures.push(f);
        if let Some(c) = mc {
            c.close();
        }
        if let Some(c) = nc {
            c.close().await;
        }
        if let Some(c) = sc {
            c.close().await;
        }
        if let Some(c) = rc {
            c.close();
        }
    }
}

async fn throughput(report: &mut Report, opts: &Opts, p: &Params, keys: &[Arc<RsaKeyPair>]) {
    let cases = [
        ("small_w64", Transport::Tcp, 64, SMALL, p.tput_small),
        ("small_w256", Transport::Tcp, 256, SMALL, p.tput_small),
        ("16k_w64", Transport::Tcp, 64, BIG, p.tput_big),
        ("small_w64", Transport::Quic, 64, SMALL, p.tput_small),
    ];
    for (name, t, window, size, total) in cases {
        let mut nc = noctua_pair(keys, t, opts.lazy, |c| c).await;
        let mut sc = stock_pair(t, opts.lazy).await;
        let mut rc = if t == Transport::Tcp {
            raw_pair().await
        } else {
            None
        };
        let warm = (total / 10).max(window);
        if let Some(c) = nc.as_mut() {
            c.throughput(warm, window, size).await;
        }
        if let Some(c) = sc.as_mut() {
            c.throughput(warm, window, size).await;
        }
        if let Some(c) = rc.as_mut() {
            c.throughput(warm, window, size).await;
        }
        let mut rates = [Vec::new(), Vec::new(), Vec::new()];
        let mut all = [Run::default(), Run::default(), Run::default()];
        for _ in 0..p.tput_runs {
            if let Some(c) = nc.as_mut() {
                let r = measure_tput(c, total, window, size).await;
                rates[0].push(r.rate());
                all[0].absorb(r);
            }
            if let Some(c) = sc.as_mut() {
                let r = measure_tput(c, total, window, size).await;
                rates[1].push(r.rate());
                all[1].absorb(r);
            }
            if let Some(c) = rc.as_mut() {
                let r = measure_tput(c, total, window, size).await;
                rates[2].push(r.rate());
                all[2].absorb(r);
            }
        }
        let id = format!("throughput.{name}.{}", t.name());
        let attempted = total * p.tput_runs;
        let present = [nc.is_some(), sc.is_some(), rc.is_some()];
        let side = |i: usize| {
            if present[i] {
                Side::new(&rates[i], true, all[i].lost).or_else(|| Some(Side::failed(all[i].lost)))
            } else {
                Some(Side::failed(attempted as u64))
            }
        };
        let mut f = Figure::new(id.clone(), "throughput", "msg/s").higher();
        f.noctua = side(0);
        f.stock = side(1);
        if t == Transport::Tcp {
            f.raw = side(2);
        }
        let mib = |i: usize| {
            rates[i].iter().copied().fold(f64::NAN, f64::max) * size as f64 / (1024.0 * 1024.0)
        };
        f.notes = format!(
            "{size}-byte messages, {window} outstanding, {total} per run, {} interleaved runs (rate per run; the p99 column is the slowest 1%)",
            p.tput_runs
        );
        if size == BIG {
            f.put("best_mib_per_s_noctua", mib(0));
            f.put("best_mib_per_s_stock", mib(1));
            f.put("best_mib_per_s_raw", mib(2));
        }
        report.figures.push(f);
        // Latency of each message under that load (losses are counted on the rate row).
        let mut l = Figure::new(format!("{id}.latency"), "throughput", "ms");
        l.noctua = present[0]
            .then(|| Side::new(&all[0].lat_ms, false, 0))
            .flatten();
        l.stock = present[1]
            .then(|| Side::new(&all[1].lat_ms, false, 0))
            .flatten();
        if t == Transport::Tcp {
            l.raw = present[2]
                .then(|| Side::new(&all[2].lat_ms, false, 0))
                .flatten();
        }
        l.notes = "per-message send-to-receipt latency during the throughput runs".into();
        report.figures.push(l);
        if let Some(c) = nc {
            c.close().await;
        }
        if let Some(c) = sc {
            c.close().await;
        }
        if let Some(c) = rc {
            c.close();
        }
    }
}

async fn rotation(report: &mut Report, opts: &Opts, p: &Params, keys: &[Arc<RsaKeyPair>]) {
    let after = p.rot_after;
    let mut auto = noctua_pair(keys, Transport::Tcp, opts.lazy, |c| {
        c.with_rotate_after_messages(after)
    })
    .await;
    let mut manual = noctua_pair(keys, Transport::Tcp, opts.lazy, |c| c).await;
    let mut sc = stock_pair(Transport::Tcp, opts.lazy).await;
    let mut rc = raw_pair().await;
    if let Some(c) = sc.as_mut() {
        c.rtt(p.warmup, SMALL).await;
    }
    if let Some(c) = rc.as_mut() {
        c.rtt(p.warmup, SMALL).await;
    }
    let per_round = p.rot_msgs / p.rounds;
    let (mut ar, mut mr, mut sr, mut rr) = (
        Run::default(),
        Run::default(),
        Run::default(),
        Run::default(),
    );
    for _ in 0..p.rounds {
        if let Some(c) = auto.as_mut() {
            let before = c.server_received();
            let mut r = c.rtt_rotating(per_round, SMALL, None).await;
            let received = received_since(c, before, per_round).await;
            reconcile(&mut r, per_round, received);
            ar.absorb(r);
        }
        if let Some(c) = manual.as_mut() {
            let before = c.server_received();
            let mut r = c
                .rtt_rotating(per_round, SMALL, Some(p.rot_manual_every))
                .await;
            let received = received_since(c, before, per_round).await;
            reconcile(&mut r, per_round, received);
            mr.absorb(r);
        }
        if let Some(c) = sc.as_mut() {
            sr.absorb(measure_rtt(c, per_round, SMALL).await);
        }
        if let Some(c) = rc.as_mut() {
            rr.absorb(measure_rtt(c, per_round, SMALL).await);
        }
    }
    let attempted = per_round * p.rounds;
    for (id, client, run, how) in [
        (
            "rotation.auto",
            &auto,
            ar,
            format!("with_rotate_after_messages({after}) on both sides"),
        ),
        (
            "rotation.manual",
            &manual,
            mr,
            format!("rotate() before every {}th message", p.rot_manual_every),
        ),
    ] {
        let mut f = Figure::new(id, "rotation", "ms");
        let rotations = client.as_ref().map(|c| c.rotations).unwrap_or(0);
        f.noctua = lat_side(client.is_some().then_some(run), attempted);
        f.stock = lat_side(sc.is_some().then_some(sr.clone()), attempted);
        f.raw = lat_side(rc.is_some().then_some(rr.clone()), attempted);
        f.notes = format!(
            "sequential {SMALL}-byte round trips over TCP while the session rotates ({how}); {rotations} rotations completed during {attempted} messages; baselines do not rotate"
        );
        f.put("rotations", rotations);
        report.figures.push(f);
    }
    for c in [auto, manual].into_iter().flatten() {
        c.close().await;
    }
    if let Some(c) = sc {
        c.close().await;
    }
    if let Some(c) = rc {
        c.close();
    }
}

/// The three systems of the scale figures, in the order their results are kept.
const SCALE_SYSTEMS: [System; 3] = [System::Noctua, System::Stock, System::Raw];

fn scale_group(report: &mut Report, opts: &Opts, p: &Params) {
    for &n in &p.scale_sizes {
        let (results, failures) = scale_runs(opts, p, n);
        let pairs = n * (n - 1) / 2;
        let mut mesh = Figure::new(format!("scale.n{n}.mesh"), "scale", "ms");
        let mut rss = Figure::new(format!("scale.n{n}.rss"), "scale", "MiB");
        let mut grow = Figure::new(format!("scale.n{n}.rss_per_node"), "scale", "KiB");
        let mut bcast = Figure::new(format!("scale.n{n}.broadcast"), "scale", "ms");
        for i in 0..SCALE_SYSTEMS.len() {
            let [m, r, g, b] = scale_sides(&results[i], failures[i], n);
            *system_side(&mut mesh, i) = m;
            *system_side(&mut rss, i) = r;
            *system_side(&mut grow, i) = g;
            *system_side(&mut bcast, i) = b;
        }
        mesh.notes = format!(
            "{n} in-process nodes, TCP+Noise+Yamux, every node opens to every other at once as --auto-connect does on discovery (each of the {pairs} pairs' opens cross; Noctua: open_session to a known address, retried after 1, 2, 4 s unless refused; stock: dial + hello request both ways; raw: connect + HELLO both ways): time until every node has a session with every other; {} fresh processes each; lost = pairs without a session on both sides; extra.<system>[].sessions_established: sessions (at their initiator) or hello exchanges reported; extra.noctua[].open_retries: automatic opens that failed (dial errors, busy) and were retried",
            p.scale_repeats
        );
        rss.notes = format!(
            "VmRSS of the child process holding the {n}-node mesh ({} processes each)",
            p.scale_repeats
        );
        grow.notes = "(RSS after mesh - RSS before the nodes existed) / N".into();
        bcast.notes = format!(
            "node 0 sends one {SMALL}-byte message to each of the other {} nodes; time until every receipt; {} broadcasts; each receiver must count exactly {} (lost = short, extra.duplicates = over, per system)",
            n - 1,
            p.broadcasts,
            p.broadcasts
        );
        let dups: Vec<Option<u64>> = results
            .iter()
            .map(|runs| runs.iter().map(|r| r["duplicates"].as_u64()).sum())
            .collect();
        bcast.put("duplicates", dups);
        for (i, r) in results.iter().enumerate() {
            mesh.put(["noctua", "stock", "raw"][i], r.clone());
        }
        report.figures.extend([mesh, rss, grow, bcast]);
    }
}

/// Runs each system's `scale-child` for N nodes `scale_repeats` times, interleaved, each in
/// a fresh process: the result documents and the number of failed runs, per system.
fn scale_runs(opts: &Opts, p: &Params, n: usize) -> (Vec<Vec<serde_json::Value>>, [u64; 3]) {
    let mut results: Vec<Vec<serde_json::Value>> = vec![Vec::new(), Vec::new(), Vec::new()];
    let mut failures = [0u64; 3];
    for _ in 0..p.scale_repeats {
        for (i, sys) in SCALE_SYSTEMS.into_iter().enumerate() {
            let r = tokio::task::block_in_place(|| {
                scale::run_child(sys, n, p.broadcasts, opts.lazy, opts.quick)
            });
            match r {
                Ok(v) => results[i].push(v),
                Err(e) => {
                    eprintln!("[bench] scale {} n={n}: {e}", sys.name());
                    failures[i] += 1;
                }
            }
        }
    }
    (results, failures)
}

/// One system's sides of the mesh, RSS, RSS-per-node and broadcast figures, from its runs'
/// results (any failed run makes the figures NaN and counts as lost).
fn scale_sides(results: &[serde_json::Value], failures: u64, n: usize) -> [Option<Side>; 4] {
    let get = |key: &str| -> Vec<f64> {
        if failures > 0 {
            return vec![f64::NAN];
        }
        results
            .iter()
            .flat_map(|v| match &v[key] {
                serde_json::Value::Array(a) => a.iter().filter_map(|x| x.as_f64()).collect(),
                x => x.as_f64().into_iter().collect::<Vec<_>>(),
            })
            .collect()
    };
    let lost = |key: &str| -> u64 {
        failures
            + results
                .iter()
                .map(|v| v[key].as_u64().unwrap_or(u64::MAX))
                .sum::<u64>()
    };
    let ml = lost("mesh_missing");
    let mesh = Side::new(&get("mesh_ms"), false, ml).or(Some(Side::failed(ml)));
    let after = get("rss_after_kib");
    let before = get("rss_before_kib");
    let rss = Side::new(
        &after.iter().map(|k| k / 1024.0).collect::<Vec<_>>(),
        false,
        0,
    )
    .or(Some(Side::failed(0)));
    let per_node: Vec<f64> = after
        .iter()
        .zip(&before)
        .map(|(a, b)| (a - b) / n as f64)
        .collect();
    let grow = Side::new(&per_node, false, 0).or(Some(Side::failed(0)));
    let bl = lost("lost");
    let bcast = Side::new(&get("broadcast_ms"), false, bl).or_else(|| Some(Side::failed(bl)));
    [mesh, rss, grow, bcast]
}

/// The side of `figure` for the system at index `i` of [`SCALE_SYSTEMS`].
fn system_side(figure: &mut Figure, i: usize) -> &mut Option<Side> {
    match i {
        0 => &mut figure.noctua,
        1 => &mut figure.stock,
        _ => &mut figure.raw,
    }
}

/// The lab figures: one `noctua lab` per size, one after the other.
async fn lab_group(report: &mut Report, opts: &Opts, p: &Params) {
    for &n in &p.lab_sizes {
        if n < 2 {
            eprintln!("[bench] lab of {n} node(s): a mesh needs at least 2, skipped");
            continue;
        }
        let dir = opts.lab_dir.join(format!("n{n}"));
        eprintln!("[bench] lab of {n} nodes, event logs in {}", dir.display());
        let r = match lab::run(&opts.noctua_bin, n, &dir, &p.lab_limits).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("[bench] lab of {n} nodes failed: {e}");
                let mut f = Figure::new(format!("lab.n{n}.mesh"), "lab", "s");
                f.noctua = Some(Side::failed((n * (n - 1)) as u64));
                f.notes = format!("the lab failed: {e}");
                report.figures.push(f);
                continue;
            }
        };
        report.figures.extend(lab_figures(&r));
    }
}

/// The figures of one lab.
fn lab_figures(r: &lab::LabResult) -> Vec<Figure> {
    let n = r.n;
    let summary = r.summary();
    let side = |samples: &[f64], lost: u64| {
        Side::new(samples, false, lost).or_else(|| Some(Side::failed(lost)))
    };
    let mut mesh = Figure::new(format!("lab.n{n}.mesh"), "lab", "s");
    let mesh_s: Vec<f64> = r.mesh_ms.iter().map(|m| m / 1e3).collect();
    mesh.noctua = side(&mesh_s, r.pairs_missing as u64);
    mesh.notes = format!(
        "noctua lab --nodes {n} (real processes, one network namespace each, mDNS + --auto-connect): per node, its session with every other node after the last node's `ready` (first session per peer, from the node's event log); lost = (node, peer) pairs without a session; max in extra.mesh_max_ms; {} sessions established to the full mesh (distinct session ids), {} closed before it",
        r.sessions, r.closed_before_mesh
    );
    mesh.extra = summary.as_object().cloned().unwrap_or_default();
    let mut bcast = Figure::new(format!("lab.n{n}.broadcast"), "lab", "ms");
    bcast.noctua = side(&r.bcast_ms, r.bcast_lost as u64);
    bcast.notes = format!(
        "once the mesh is complete every node broadcasts once (/say): receipts counted per (sender, receiver), {} expected, {} exactly once, {} lost, {} duplicates; latency = receiver's `message` ts - sender's `sent` ts (ms clock)",
        r.bcast_expected, r.bcast_once, r.bcast_lost, r.bcast_duplicates
    );
    bcast.put("expected", r.bcast_expected);
    bcast.put("exactly_once", r.bcast_once);
    bcast.put("duplicates", r.bcast_duplicates);
    bcast.put("delivered", r.bcast_delivered);
    bcast.put("failed", r.bcast_failed);
    let mut rss = Figure::new(format!("lab.n{n}.rss"), "lab", "MiB");
    let mib: Vec<f64> = r.rss_kib.iter().map(|k| k / 1024.0).collect();
    rss.noctua = side(&mib, 0);
    rss.notes = format!(
        "VmRSS of each node process (pid from `ip netns pids`) at the full mesh ({} sessions each)",
        n - 1
    );
    let mut cpu = Figure::new(format!("lab.n{n}.cpu_per_handshake"), "lab", "ms");
    // The window: from the moment every node had its RSA key (key generation, which ends
    // after `ready`, is then behind) to the full mesh, both as the harness saw them; its
    // CPU over the sessions established within it. mDNS and idle work stay inside.
    let window_cpu = r.cpu_total_s - r.cpu_at_keys_s;
    let window_sessions = r.sessions_at_mesh.saturating_sub(r.sessions_at_keys);
    let per = |cpu_s: f64, sessions: usize| (sessions > 0).then(|| cpu_s * 1e3 / sessions as f64);
    cpu.noctua = side(
        &per(window_cpu, window_sessions)
            .into_iter()
            .collect::<Vec<_>>(),
        0,
    );
    cpu.notes = format!(
        "CPU (user+system) of all node processes from the moment every node had its RSA key to the full mesh ({window_cpu:.2} s), / sessions established in that window ({window_sessions} of {}); mDNS and idle work are included; from the nodes' start (key generation included): {:.1} s CPU, {} ms per session",
        r.sessions_at_mesh,
        r.cpu_total_s,
        per(r.cpu_total_s, r.sessions_at_mesh)
            .map(|x| format!("{x:.2}"))
            .unwrap_or_else(|| "-".into())
    );
    cpu.put("cpu_total_s", r.cpu_total_s);
    cpu.put("cpu_at_keys_s", r.cpu_at_keys_s);
    cpu.put("sessions_at_keys", r.sessions_at_keys);
    cpu.put("sessions_at_mesh", r.sessions_at_mesh);
    cpu.put(
        "per_session_from_start_ms",
        per(r.cpu_total_s, r.sessions_at_mesh),
    );
    // Always defined, an upper bound: everything the nodes did from their start.
    let mut whole = Figure::new(format!("lab.n{n}.cpu_per_session_from_start"), "lab", "ms");
    whole.noctua = side(
        &per(r.cpu_total_s, r.sessions_at_mesh)
            .into_iter()
            .collect::<Vec<_>>(),
        0,
    );
    whole.notes = format!(
        "CPU (user+system) of all node processes from their start to the full mesh ({:.1} s), / all sessions established ({}): an upper bound, with each node's RSA key generation and mDNS inside (cpu_per_handshake is the window after the last key; at small N it holds few or no sessions)",
        r.cpu_total_s, r.sessions_at_mesh
    );
    let mut probe = Figure::new(format!("lab.n{n}.command_rtt"), "lab", "ms");
    probe.noctua = side(&r.probe_ms, r.probes_unanswered);
    probe.notes = format!(
        "lab responsiveness while the mesh forms: '<k> sessions' written to the lab's stdin until node k's answer is on the lab's stdout, one at a time every {} ms; lost = unanswered within 5 s",
        300
    );
    vec![mesh, bcast, rss, cpu, whole, probe]
}
