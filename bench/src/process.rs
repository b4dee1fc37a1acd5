//! Child processes: the real `noctua` binary, and the two baselines as processes of this
//! binary (`serve-stock`, `serve-raw`), started the same way and read line by line.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// A running child with its stdout read on a thread, each line stamped when read.
pub struct Child {
    child: std::process::Child,
    lines: mpsc::Receiver<(String, Instant)>,
    /// When `spawn` was called.
    pub t0: Instant,
}

impl Child {
    /// Spawns `cmd` with piped stdin (kept open: closing it asks the child to leave) and
    /// piped stdout; stderr is discarded when `quiet`, else shared with ours.
    pub fn spawn(cmd: &mut Command, quiet: bool) -> std::io::Result<Child> {
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped());
        if quiet {
            cmd.stderr(Stdio::null());
        }
        let t0 = Instant::now();
        let mut child = cmd.spawn()?;
        let out = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send((line, Instant::now())).is_err() {
                    // Nobody listens any more; keep draining so the child never blocks.
                    continue;
                }
            }
        });
        Ok(Child { child, lines, t0 })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits (blocking) for a line satisfying `pred`; returns it with the time since spawn.
    pub fn wait_line(
        &self,
        timeout: Duration,
        mut pred: impl FnMut(&str) -> bool,
    ) -> Option<(String, Duration)> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            let (line, at) = self.lines.recv_timeout(left).ok()?;
            if pred(&line) {
                return Some((line, at.duration_since(self.t0)));
            }
        }
    }

    /// Resident set size now, in KiB.
    pub fn rss_kib(&self) -> Option<u64> {
        rss_kib(&format!("/proc/{}/status", self.pid()))
    }

    /// Anonymous resident memory now (heap, stacks: what the process itself allocated,
    /// without the pages of its executable and libraries), in KiB.
    pub fn rss_anon_kib(&self) -> Option<u64> {
        status_field(&format!("/proc/{}/status", self.pid()), "RssAnon:")
    }

    /// Closes stdin (the child leaves on end of input), waits a little, then kills.
    pub fn finish(mut self) {
        drop(self.child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `VmRSS` of a `/proc/<pid>/status` file, in KiB.
pub fn rss_kib(status_path: &str) -> Option<u64> {
    status_field(status_path, "VmRSS:")
}

/// A `kB` field of a `/proc/<pid>/status` file.
fn status_field(status_path: &str, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(status_path).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// This process's resident set size, in KiB.
pub fn self_rss_kib() -> Option<u64> {
    rss_kib("/proc/self/status")
}

/// Which node process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum System {
    /// The real `noctua` binary.
    Noctua,
    /// A stock request-response node (`noctua-bench serve-stock`).
    Stock,
    /// A raw TCP ack server (`noctua-bench serve-raw`).
    Raw,
}

impl System {
    /// Name used in figures and on the command line of `scale-child`.
    pub fn name(self) -> &'static str {
        match self {
            System::Noctua => "noctua",
            System::Stock => "stock",
            System::Raw => "raw",
        }
    }

    /// Parses [`System::name`].
    pub fn parse(s: &str) -> Option<System> {
        [System::Noctua, System::Stock, System::Raw]
            .into_iter()
            .find(|x| x.name() == s)
    }
}

/// The secret given to node processes.
pub const NODE_SECRET: &str = "bench-node-secret";

/// The command that starts a node of `system`; `headless` selects Noctua's JSON face
/// (baselines always print the same two lines).
pub fn node_command(system: System, noctua_bin: &Path, headless: bool) -> Command {
    match system {
        System::Noctua => {
            let mut c = Command::new(noctua_bin);
            c.args(["--no-mdns", "--listen", "/ip4/127.0.0.1/tcp/0"])
                // Not `--secret`: the node warns about secrets on its command line.
                .env("NOCTUA_SECRET", NODE_SECRET);
            if headless {
                c.arg("--headless");
            }
            c
        }
        System::Stock | System::Raw => {
            let exe = std::env::current_exe().expect("own executable");
            let mut c = Command::new(exe);
            c.arg(if system == System::Stock {
                "serve-stock"
            } else {
                "serve-raw"
            });
            c
        }
    }
}

/// One start of a node process.
#[derive(Debug, Clone, Copy)]
pub struct Startup {
    /// Spawn to banner (the connection string, or the baseline's address line).
    pub banner: Duration,
    /// Spawn to ready for handshakes (Noctua: RSA key present).
    pub ready: Duration,
    /// Resident memory once idle, KiB.
    pub idle_rss_kib: u64,
    /// Of which anonymous (not the executable's pages), KiB.
    pub idle_anon_kib: u64,
}

/// Starts a node process (interactive face, piped: the banner as a user sees it), times
/// banner and readiness, samples idle memory after `settle`, and stops it.
pub fn startup_once(
    system: System,
    noctua_bin: &Path,
    settle: Duration,
) -> Result<Startup, String> {
    let child = Child::spawn(&mut node_command(system, noctua_bin, false), true)
        .map_err(|e| format!("cannot start {}: {e}", system.name()))?;
    let result = (|| {
        let timeout = Duration::from_secs(20);
        let banner = match system {
            System::Noctua => {
                child
                    .wait_line(timeout, |l| l.contains("Connection string"))
                    .ok_or("no banner")?;
                // The banner is complete with the connection string itself, the next line.
                child
                    .wait_line(timeout, |_| true)
                    .ok_or("no connection string")?
                    .1
            }
            _ => {
                child
                    .wait_line(timeout, |l| l.starts_with("banner "))
                    .ok_or("no banner")?
                    .1
            }
        };
        let ready = match system {
            System::Noctua => child.wait_line(timeout, |l| l.contains("key ready")),
            _ => child.wait_line(timeout, |l| l == "ready"),
        }
        .ok_or("never ready")?
        .1;
        std::thread::sleep(settle);
        let idle_rss_kib = child.rss_kib().ok_or("no VmRSS")?;
        let idle_anon_kib = child.rss_anon_kib().ok_or("no RssAnon")?;
        Ok::<_, &str>(Startup {
            banner,
            ready,
            idle_rss_kib,
            idle_anon_kib,
        })
    })();
    child.finish();
    result.map_err(|e| format!("{}: {e}", system.name()))
}
