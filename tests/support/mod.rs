//! Harness for end-to-end tests: runs the real `noctua` binary with piped stdin/stdout,
//! on loopback, with mDNS off (never on in the machine's own network namespace).

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

/// The binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_noctua")
}

/// A running node.
pub struct NodeProc {
    pub name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    /// Every stdout line seen so far.
    pub seen: Vec<String>,
    stderr: Receiver<String>,
}

impl NodeProc {
    /// Starts `noctua --id name --secret secret` on 127.0.0.1 (TCP and QUIC), mDNS off,
    /// plus `extra` arguments.
    pub fn start(name: &str, secret: &str, extra: &[&str]) -> Self {
        let mut args = vec![
            "--id",
            name,
            "--secret",
            secret,
            "--no-mdns",
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
        ];
        args.extend_from_slice(extra);
        Self::start_args(name, &args)
    }

    /// Starts the binary with exactly `args` (tests that check argument handling). mDNS is
    /// still forced off unless the arguments are about to fail anyway.
    pub fn start_args(name: &str, args: &[&str]) -> Self {
        Self::start_env(name, args, &[])
    }

    /// As [`NodeProc::start_args`], with these environment variables set.
    pub fn start_env(name: &str, args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::spawn(name, Command::new(bin()), args, env)
    }

    /// As [`NodeProc::start_args`], inside network namespace `netns` (which the test
    /// created: tests that listen beyond loopback do it there, never in the machine's own).
    pub fn start_in_netns(name: &str, netns: &str, args: &[&str]) -> Self {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", netns, bin()]);
        Self::spawn(name, cmd, args, &[])
    }

    fn spawn(name: &str, mut cmd: Command, args: &[&str], env: &[(&str, &str)]) -> Self {
        assert!(
            args.contains(&"--no-mdns"),
            "tests never run mDNS in the machine's own namespace"
        );
        let mut child = cmd
            .args(args)
            .env_remove("NOCTUA_SECRET")
            .env_remove("RUST_LOG")
            .envs(env.iter().copied())
            .env("NO_COLOR", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start noctua");
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let (etx, erx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if etx.send(line).is_err() {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        NodeProc {
            name: name.into(),
            child,
            stdin,
            lines: rx,
            seen: Vec::new(),
            stderr: erx,
        }
    }

    /// Sends one line to the node's stdin.
    pub fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin still open");
        writeln!(stdin, "{line}").expect("write to node");
        stdin.flush().expect("flush");
    }

    /// Closes stdin (end of input).
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Waits for a stdout line satisfying `pred`; panics with everything seen on timeout.
    pub fn expect(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        self.expect_within(Duration::from_secs(20), what, pred)
    }

    pub fn expect_within(
        &mut self,
        limit: Duration,
        what: &str,
        pred: impl Fn(&str) -> bool,
    ) -> String {
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
                Err(RecvTimeoutError::Timeout) => panic!(
                    "{}: no line matching {what} within {limit:?}; stdout so far:\n{}\nstderr:\n{}",
                    self.name,
                    self.seen.join("\n"),
                    self.stderr_lines().join("\n")
                ),
                Err(RecvTimeoutError::Disconnected) => panic!(
                    "{}: exited before a line matching {what}; stdout:\n{}\nstderr:\n{}",
                    self.name,
                    self.seen.join("\n"),
                    self.stderr_lines().join("\n")
                ),
            }
        }
    }

    /// Waits for a line containing `needle`.
    pub fn expect_contains(&mut self, needle: &str) -> String {
        let n = needle.to_string();
        self.expect(&format!("{needle:?}"), move |l| l.contains(&n))
    }

    /// Waits until a line containing each of `needles` was seen, in any order; returns them
    /// in the order of `needles`.
    pub fn expect_all(&mut self, needles: &[&str]) -> Vec<String> {
        let mut found: Vec<Option<String>> = vec![None; needles.len()];
        while found.iter().any(Option::is_none) {
            let missing: Vec<String> = needles
                .iter()
                .zip(&found)
                .filter(|(_, f)| f.is_none())
                .map(|(n, _)| n.to_string())
                .collect();
            let line = self.expect(&format!("any of {missing:?}"), |l| {
                missing.iter().any(|n| l.contains(n.as_str()))
            });
            for (i, n) in needles.iter().enumerate() {
                if found[i].is_none() && line.contains(n) {
                    found[i] = Some(line.clone());
                }
            }
        }
        found.into_iter().flatten().collect()
    }

    /// The first connection string of the banner (`127.0.0.1:port:secret`).
    pub fn conn_string(&mut self) -> String {
        self.expect("a connection string", |l| {
            l.starts_with("127.0.0.1:") && l.matches(':').count() == 2
        })
    }

    /// Waits for the process to exit, up to `limit`.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                // Drain what is left of stdout.
                while let Ok(l) = self.lines.recv_timeout(Duration::from_millis(200)) {
                    self.seen.push(l);
                }
                return status;
            }
            if Instant::now() >= deadline {
                panic!(
                    "{}: still running after {limit:?}; stdout:\n{}",
                    self.name,
                    self.seen.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Lines written to stderr so far.
    pub fn stderr_lines(&self) -> Vec<String> {
        self.stderr.try_iter().collect()
    }

    /// Every line written to stderr, once the process has exited and closed it (call after
    /// [`NodeProc::wait_exit`]).
    pub fn stderr_to_end(&self) -> Vec<String> {
        let mut lines = Vec::new();
        loop {
            match self.stderr.recv_timeout(Duration::from_secs(10)) {
                Ok(l) => lines.push(l),
                Err(RecvTimeoutError::Disconnected) => return lines,
                Err(RecvTimeoutError::Timeout) => {
                    panic!("{}: stderr still open: {lines:?}", self.name)
                }
            }
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether network namespaces can be made here; without them the test is skipped with a
/// line saying why, unless `NOCTUA_REQUIRE_NETNS=1` makes that a failure.
pub fn netns_or_skip(test: &str) -> bool {
    match noctua::lab::check() {
        Ok(()) => true,
        Err(why) => {
            if std::env::var("NOCTUA_REQUIRE_NETNS").as_deref() == Ok("1") {
                panic!("{test}: network namespaces are required here but unavailable: {why}");
            }
            eprintln!("SKIPPED {test}: {why}");
            false
        }
    }
}

/// Runs `ip ARGS`, failing the test with its stderr if it fails.
pub fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}
