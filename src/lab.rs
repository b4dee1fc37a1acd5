//! A lab of Noctua nodes on one Linux machine: each node in its own network namespace,
//! all on one bridge (which lives in a namespace of its own, so nothing touches the
//! machine's own network), with mDNS and auto-connect on, driven headless. Used by
//! `noctua lab` and by the multi-node tests.
//!
//! Needs root and `ip` (iproute2) and `setpriv` (util-linux); [`Lab::freeze`] also needs
//! `kill` (procps). Everything created carries the lab's id (`noctua-lab-<pid>-...`) and is
//! removed by [`Lab::shutdown`], by `Drop`, and, for labs whose process died without
//! cleaning up, by [`clean_stale`].

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

use crate::face::headless::{Event, EventLine};

const PREFIX: &str = "noctua-lab-";

/// An event from node `node`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabEvent {
    /// Which node (0-based).
    pub node: usize,
    /// The event (see [`Event`] and HEADLESS.md).
    pub event: Event,
    /// When the node wrote it: Unix time in milliseconds.
    pub ts: u64,
}

/// Why a lab could not do what it was asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LabError {
    /// Network namespaces need root.
    #[error("network namespaces need root (run as root)")]
    NotRoot,
    /// A tool is missing.
    #[error("`{tool}` is missing (install {package})")]
    MissingTool {
        /// The command.
        tool: &'static str,
        /// The package that has it.
        package: &'static str,
    },
    /// The probe namespace could not be created.
    #[error("cannot create a network namespace: {0}")]
    Namespace(#[source] Box<LabError>),
    /// A node's process could not be started.
    #[error("cannot start node {node}: {source}")]
    Start {
        /// Which node.
        node: usize,
        /// Why.
        source: std::io::Error,
    },
    /// A command could not be run at all.
    #[error("{command}: {source}")]
    Spawn {
        /// The command.
        command: String,
        /// Why.
        source: std::io::Error,
    },
    /// A command ran and failed.
    #[error("`{command}` failed: {stderr}")]
    Failed {
        /// The command line.
        command: String,
        /// What it said.
        stderr: String,
    },
    /// A lab has 1 to 250 nodes.
    #[error("a lab has 1 to 250 nodes")]
    Size,
    /// A host limit the lab needs raised could not be written.
    #[error("cannot raise {name} for this many nodes: {source}")]
    Sysctl {
        /// The sysctl.
        name: String,
        /// Why.
        source: std::io::Error,
    },
    /// The log directory cannot be created.
    #[error("cannot create {path}: {source}")]
    Dir {
        /// The directory.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The node is already running.
    #[error("node {0} is already running")]
    Running(usize),
    /// The node is not running.
    #[error("node {0} is not running")]
    NotRunning(usize),
    /// Talking to a node failed.
    #[error("node {node}: {source}")]
    Io {
        /// Which node.
        node: usize,
        /// Why.
        source: std::io::Error,
    },
}

struct LabNode {
    ns: String,
    ip: Ipv4Addr,
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    peer_id: Option<String>,
}

/// A running lab.
pub struct Lab {
    id: String,
    hub: String,
    nodes: Vec<LabNode>,
    dir: PathBuf,
    bin: PathBuf,
    events_tx: mpsc::Sender<LabEvent>,
    events_rx: mpsc::Receiver<LabEvent>,
    auto_connect: bool,
    /// Give every node a profile of its own under `dir` (`--profiles`).
    profiles: bool,
    /// Host limits this lab raised, to put back when it ends.
    raised: Vec<Raised>,
    torn_down: bool,
}

/// A host setting (under /proc/sys) a lab raised: its path, the value before, ours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Raised {
    /// The sysctl's name, e.g. `net.ipv4.neigh.default.gc_thresh3`.
    pub name: String,
    /// Its value before the lab.
    pub before: u64,
    /// The value the lab set.
    pub now: u64,
}

/// The neighbour (ARP/NDP) table sizes `n` lab nodes need: each node's namespace holds
/// an entry per peer it talks to, plus a few for multicast and the bridge; the kernel's
/// table is one for every namespace of the host (`gc_thresh3`, 1024 by default, is the
/// hard limit over all of them). Returns (soft limit `gc_thresh2`, hard limit `gc_thresh3`).
///
/// At 32 nodes the need (32 x 36 = 1152) already passes the default 1024: entries are
/// refused ("neighbor table overflow"), UDP sends fail with ENOBUFS, and mDNS goes silent
/// for the nodes that come last, which is how 32-node labs sometimes stalled and 64-node
/// labs never meshed.
pub fn neighbour_table_need(n: usize) -> (u64, u64) {
    let need = (n as u64) * (n as u64 + 4) + 256;
    (need, 2 * need)
}

/// Raises the host's neighbour table limits (IPv4 and IPv6) to fit `n` nodes; never
/// lowers them. Returns what it changed.
fn raise_neighbour_limits(n: usize) -> Result<Vec<Raised>, LabError> {
    let (soft, hard) = neighbour_table_need(n);
    let mut raised = Vec::new();
    for family in ["ipv4", "ipv6"] {
        // The hard limit first: the kernel wants thresh2 <= thresh3.
        for (knob, want) in [("gc_thresh3", hard), ("gc_thresh2", soft)] {
            let name = format!("net.{family}.neigh.default.{knob}");
            let path = format!("/proc/sys/net/{family}/neigh/default/{knob}");
            let Some(before) = read_sysctl(&path) else {
                continue;
            };
            if before >= want {
                continue;
            }
            std::fs::write(&path, want.to_string()).map_err(|source| LabError::Sysctl {
                name: name.clone(),
                source,
            })?;
            raised.push(Raised {
                name,
                before,
                now: want,
            });
        }
    }
    Ok(raised)
}

fn read_sysctl(path: &str) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn sysctl_path(name: &str) -> String {
    format!("/proc/sys/{}", name.replace('.', "/"))
}

/// Can labs run here? `Err` says what is missing, in one line.
pub fn check() -> Result<(), LabError> {
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(str::to_string))
        })
        .unwrap_or_default();
    if uid != "0" {
        return Err(LabError::NotRoot);
    }
    for (tool, package) in [("ip", "iproute2"), ("setpriv", "util-linux")] {
        let ok = std::process::Command::new(tool)
            .arg(if tool == "ip" { "-V" } else { "--version" })
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok {
            return Err(LabError::MissingTool { tool, package });
        }
    }
    // Unique per call (tests probe from several threads of one process at once), and named
    // `p<pid>-<n>` so `clean_stale` knows its owner and `leftover_namespaces` ignores it.
    let probe = format!("{PREFIX}p{}-{}", std::process::id(), lab_seq());
    run_sync(&["ip", "netns", "add", &probe]).map_err(|e| LabError::Namespace(Box::new(e)))?;
    let _ = run_sync(&["ip", "netns", "del", &probe]);
    Ok(())
}

/// Removes namespaces left by labs whose process is gone (e.g. killed with SIGKILL).
/// Returns how many were removed.
pub fn clean_stale() -> usize {
    let Ok(out) = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
    else {
        return 0;
    };
    let mut removed = 0;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let owner = rest.split('-').next().unwrap_or("");
        let pid = owner.strip_prefix('p').unwrap_or(owner);
        let alive = pid
            .parse::<u32>()
            .is_ok_and(|p| Path::new(&format!("/proc/{p}")).exists());
        if !alive && run_sync(&["ip", "netns", "del", name]).is_ok() {
            removed += 1;
        }
    }
    removed
}

fn run_sync(args: &[&str]) -> Result<(), LabError> {
    let out = std::process::Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|source| LabError::Spawn {
            command: args[0].to_string(),
            source,
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(LabError::Failed {
            command: args.join(" "),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

impl Lab {
    /// Creates `n` node namespaces on a bridge. Node `i` gets address 10.77.0.(i+1)/24 on
    /// its `eth0`. Logs go to `dir`.
    pub fn create(n: usize, dir: &Path, bin: &Path) -> Result<Lab, LabError> {
        if n == 0 || n > 250 {
            return Err(LabError::Size);
        }
        std::fs::create_dir_all(dir).map_err(|source| LabError::Dir {
            path: dir.display().to_string(),
            source,
        })?;
        let id = format!("{PREFIX}{}-{}", std::process::id(), lab_seq());
        let hub = format!("{id}-hub");
        let (events_tx, events_rx) = mpsc::channel(65_536);
        let mut lab = Lab {
            id: id.clone(),
            hub: hub.clone(),
            nodes: Vec::new(),
            dir: dir.to_path_buf(),
            bin: bin.to_path_buf(),
            events_tx,
            events_rx,
            auto_connect: true,
            profiles: false,
            raised: Vec::new(),
            torn_down: false,
        };
        lab.raised = raise_neighbour_limits(n)?;
        run_sync(&["ip", "netns", "add", &hub])?;
        run_sync(&["ip", "-n", &hub, "link", "add", "br0", "type", "bridge"])?;
        run_sync(&["ip", "-n", &hub, "link", "set", "br0", "up"])?;
        for i in 0..n {
            let ns = format!("{id}-n{i}");
            let ip = Ipv4Addr::new(10, 77, 0, (i + 1) as u8);
            // Register first so that a failure below still cleans this namespace up.
            lab.nodes.push(LabNode {
                ns: ns.clone(),
                ip,
                child: None,
                stdin: None,
                peer_id: None,
            });
            let veth = format!("nq{i}");
            run_sync(&["ip", "netns", "add", &ns])?;
            run_sync(&[
                "ip", "-n", &hub, "link", "add", &veth, "type", "veth", "peer", "name", "eth0",
                "netns", &ns,
            ])?;
            run_sync(&["ip", "-n", &hub, "link", "set", &veth, "master", "br0"])?;
            run_sync(&["ip", "-n", &hub, "link", "set", &veth, "up"])?;
            run_sync(&["ip", "-n", &ns, "link", "set", "lo", "up"])?;
            run_sync(&[
                "ip",
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{ip}/24"),
                "dev",
                "eth0",
            ])?;
            run_sync(&["ip", "-n", &ns, "link", "set", "eth0", "up"])?;
        }
        Ok(lab)
    }

    /// The host limits this lab raised (put back when it ends, unless another lab still
    /// runs or someone changed them meanwhile).
    pub fn raised_limits(&self) -> &[Raised] {
        &self.raised
    }

    /// Whether nodes started from now on open sessions to every peer they discover (on
    /// by default).
    pub fn set_auto_connect(&mut self, on: bool) {
        self.auto_connect = on;
    }

    /// Whether nodes started from now on run with a profile of their own (`--profile
    /// node<i>` in `<dir>/profiles-data`), so that a node restarted keeps its identity,
    /// its secret and its known peers (off by default: ephemeral nodes).
    pub fn set_profiles(&mut self, on: bool) {
        self.profiles = on;
    }

    /// The data directory node profiles are kept in (with [`Lab::set_profiles`]).
    pub fn profiles_dir(&self) -> PathBuf {
        self.dir.join("profiles-data")
    }

    /// Where the logs go.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the lab has no nodes (never, once created).
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// The lab's id (prefix of every namespace it created).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Node `i`'s address.
    pub fn ip(&self, i: usize) -> Ipv4Addr {
        self.nodes[i].ip
    }

    /// Node `i`'s namespace.
    pub fn netns(&self, i: usize) -> &str {
        &self.nodes[i].ns
    }

    /// Node `i`'s libp2p id, once its `ready` event was seen.
    pub fn peer_id(&self, i: usize) -> Option<&str> {
        self.nodes[i].peer_id.as_deref()
    }

    /// Starts node `i` (headless, mDNS on, auto-connect as set) with `secret` and `extra`
    /// arguments. Its events are written to `<dir>/node<i>.jsonl` and delivered by
    /// [`Lab::next_event`]; its logs go to `<dir>/node<i>.log`.
    pub fn start(&mut self, i: usize, secret: &str, extra: &[String]) -> Result<(), LabError> {
        let node = &mut self.nodes[i];
        if node.child.is_some() {
            return Err(LabError::Running(i));
        }
        node.peer_id = None;
        let log = self.dir.join(format!("node{i}.log"));
        // Start-up errors (before logging is set up) land here.
        let stderr = std::fs::File::create(self.dir.join(format!("node{i}.stderr")))
            .map(Stdio::from)
            .unwrap_or_else(|_| Stdio::null());
        let mut cmd = Command::new("ip");
        cmd.args([
            "netns",
            "exec",
            &node.ns,
            "setpriv",
            "--pdeathsig",
            "KILL",
            "--",
        ])
        .arg(&self.bin)
        // The nodes take their flags from the lab only, never from the user's config file.
        .args(["--headless", "--no-config", "--port", "4001"])
        .args(["--id", &format!("node{i}")])
        .arg("--log-file")
        .arg(&log)
        .args(extra)
        // Through the environment, which only the owner can read, rather than the
        // command line, which every local user can (the node would warn about it).
        .env("NOCTUA_SECRET", secret)
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .kill_on_drop(true);
        if self.auto_connect {
            cmd.arg("--auto-connect");
        }
        if self.profiles {
            cmd.arg("--data-dir")
                .arg(self.dir.join("profiles-data"))
                .args(["--profile", &format!("node{i}")]);
        }
        if !extra.iter().any(|a| a.starts_with("--log-level")) {
            cmd.args(["--log-level", "info"]);
        }
        let mut child = cmd
            .spawn()
            .map_err(|source| LabError::Start { node: i, source })?;
        let stdout = child.stdout.take().ok_or(LabError::NotRunning(i))?;
        node.stdin = child.stdin.take();
        node.child = Some(child);
        let tx = self.events_tx.clone();
        let path = self.dir.join(format!("node{i}.jsonl"));
        tokio::spawn(async move {
            let mut file = tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .await
                .ok();
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(f) = file.as_mut() {
                    let _ = f.write_all(line.as_bytes()).await;
                    let _ = f.write_all(b"\n").await;
                }
                if let Ok(parsed) = EventLine::parse(&line)
                    && tx
                        .send(LabEvent {
                            node: i,
                            event: parsed.event,
                            ts: parsed.ts,
                        })
                        .await
                        .is_err()
                {
                    break;
                }
            }
        });
        Ok(())
    }

    /// Sends a command line to node `i`.
    pub async fn send(&mut self, i: usize, line: &str) -> Result<(), LabError> {
        let stdin = self.nodes[i]
            .stdin
            .as_mut()
            .ok_or(LabError::NotRunning(i))?;
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .map_err(|source| LabError::Io { node: i, source })
    }

    /// The next event from any node (remembering peer ids from `ready` events).
    pub async fn next_event(&mut self) -> Option<LabEvent> {
        let ev = self.events_rx.recv().await?;
        if let Event::Ready { peer_id, .. } = &ev.event {
            self.nodes[ev.node].peer_id = Some(peer_id.clone());
        }
        Some(ev)
    }

    /// Kills node `i` with SIGKILL (no goodbye), and waits for it to be gone.
    pub async fn kill(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        node.stdin = None;
        if let Some(mut c) = node.child.take() {
            let _ = c.start_kill();
            let _ = c.wait().await;
        }
    }

    /// Freezes node `i` (SIGSTOP): its process stops answering while its sockets stay
    /// open, so that what is sent to it stays in flight until it is killed or resumed.
    pub fn freeze(&self, i: usize) -> Result<(), LabError> {
        let pid = self.nodes[i]
            .child
            .as_ref()
            .and_then(Child::id)
            .ok_or(LabError::NotRunning(i))?;
        // `ip netns exec` and `setpriv` exec the node: the child's pid is the node's. The
        // `kill` command, because tokio's `Child` can only send SIGKILL.
        run_sync(&["kill", "-STOP", &pid.to_string()])
    }

    /// Asks node `i` to exit (goodbyes sent), waiting up to `limit`; kills it after that.
    pub async fn stop(&mut self, i: usize, limit: Duration) {
        let _ = self.send(i, "exit").await;
        let node = &mut self.nodes[i];
        node.stdin = None;
        if let Some(mut c) = node.child.take()
            && tokio::time::timeout(limit, c.wait()).await.is_err()
        {
            let _ = c.start_kill();
            let _ = c.wait().await;
        }
    }

    /// Takes node `i`'s link down (a partition) or up (healed).
    pub fn set_link(&self, i: usize, up: bool) -> Result<(), LabError> {
        let veth = format!("nq{i}");
        run_sync(&[
            "ip",
            "-n",
            &self.hub,
            "link",
            "set",
            &veth,
            if up { "up" } else { "down" },
        ])
    }

    /// Stops every node (with goodbyes), then removes every namespace and link.
    pub async fn shutdown(&mut self) {
        for i in 0..self.nodes.len() {
            let _ = self.send(i, "exit").await;
            self.nodes[i].stdin = None;
        }
        for i in 0..self.nodes.len() {
            if let Some(mut c) = self.nodes[i].child.take()
                && tokio::time::timeout(Duration::from_secs(5), c.wait())
                    .await
                    .is_err()
            {
                let _ = c.start_kill();
                let _ = c.wait().await;
            }
        }
        self.teardown();
    }

    fn teardown(&mut self) {
        if self.torn_down {
            return;
        }
        self.torn_down = true;
        for n in &mut self.nodes {
            if let Some(mut c) = n.child.take() {
                let _ = c.start_kill();
            }
            let _ = run_sync(&["ip", "netns", "del", &n.ns]);
        }
        let _ = run_sync(&["ip", "netns", "del", &self.hub]);
        if !self.raised.is_empty() && !other_labs_running() {
            // Soft limits first (thresh2 <= thresh3 at every step).
            for r in self.raised.iter().rev() {
                let path = sysctl_path(&r.name);
                if read_sysctl(&path) == Some(r.now) {
                    let _ = std::fs::write(&path, r.before.to_string());
                }
            }
        }
    }
}

/// Whether any lab's namespaces (this process's or another's) are still there.
fn other_labs_running() -> bool {
    std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .is_ok_and(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter_map(|l| l.split_whitespace().next())
                .any(|n| n.starts_with(PREFIX) && !n.starts_with(&format!("{PREFIX}p")))
        })
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.teardown();
    }
}

fn lab_seq() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static SEQ: AtomicU32 = AtomicU32::new(0);
    SEQ.fetch_add(1, Ordering::Relaxed)
}

/// Namespaces of this process's labs that still exist (for tests: nothing left behind).
pub fn leftover_namespaces() -> Vec<String> {
    let mine = format!("{PREFIX}{}-", std::process::id());
    std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter_map(|l| l.split_whitespace().next())
                .filter(|n| n.starts_with(&mine))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}
