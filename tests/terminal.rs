//! The interactive terminal, driven through tmux: an incoming message must be printed
//! above the prompt without garbling a half-typed line, and Ctrl-C must leave cleanly.
//!
//! Needs tmux. Without it the test is skipped with a message, unless
//! `NOCTUA_REQUIRE_NETNS=1` (set by `.ci/run`: CI must run every environment-dependent
//! test), in which case it fails.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use support::NodeProc;

struct Tmux {
    socket: String,
}

impl Tmux {
    fn available() -> bool {
        Command::new("tmux")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success())
    }

    fn new() -> Self {
        Tmux {
            socket: format!("noctua-test-{}", std::process::id()),
        }
    }

    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("run tmux");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn pane(&self, target: &str) -> Vec<String> {
        self.run(&["capture-pane", "-p", "-t", target])
            .lines()
            .map(|l| l.trim_end().to_string())
            .filter(|l| !l.is_empty())
            .collect()
    }

    /// Polls the screen (tmux has no events to await) until `pred` holds.
    fn wait_for(&self, target: &str, what: &str, pred: impl Fn(&[String]) -> bool) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let lines = self.pane(target);
            if pred(&lines) {
                return lines;
            }
            if Instant::now() > deadline {
                panic!("screen never showed {what}:\n{}", lines.join("\n"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
    }
}

#[test]
fn an_incoming_message_does_not_garble_a_half_typed_line() {
    if !Tmux::available() {
        if std::env::var("NOCTUA_REQUIRE_NETNS").as_deref() == Ok("1") {
            panic!("tmux is required here (NOCTUA_REQUIRE_NETNS=1) but not installed");
        }
        eprintln!("SKIPPED: tmux is not installed (apt-get install tmux)");
        return;
    }
    let tmux = Tmux::new();
    let cmd = format!(
        "{} --id Alice --secret alpha-secret --no-mdns --listen /ip4/127.0.0.1/tcp/0",
        support::bin()
    );
    tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "alice",
        "-x",
        "120",
        "-y",
        "30",
        &cmd,
    ]);
    let screen = tmux.wait_for("alice", "the connection string", |l| {
        l.iter()
            .any(|x| x.starts_with("127.0.0.1:") && x.ends_with(":alpha-secret"))
    });
    let cs = screen
        .iter()
        .find(|x| x.starts_with("127.0.0.1:") && x.ends_with(":alpha-secret"))
        .unwrap()
        .clone();

    let mut bob = NodeProc::start("Bob", "bravo-secret", &[]);
    bob.send(&format!("connect {cs}"));
    bob.expect_contains("[+] Alice connected");
    tmux.wait_for("alice", "Bob's arrival", |l| {
        l.iter().any(|x| x.contains("[+] Bob connected to you"))
    });

    // Alice types half a line, without Enter.
    tmux.run(&["send-keys", "-t", "alice", "-l", "half typ"]);
    tmux.wait_for("alice", "the half-typed line", |l| {
        l.last().is_some_and(|x| x == "> half typ")
    });
    // A message arrives meanwhile.
    bob.send("incoming while you type");
    let screen = tmux.wait_for("alice", "Bob's message", |l| {
        l.iter()
            .any(|x| x.ends_with("Bob: incoming while you type"))
    });
    let last = screen.last().unwrap();
    assert_eq!(
        last,
        "> half typ",
        "the prompt keeps the half-typed line:\n{}",
        screen.join("\n")
    );
    let msg = screen
        .iter()
        .position(|x| x.ends_with("Bob: incoming while you type"))
        .unwrap();
    assert!(msg < screen.len() - 1, "the message is above the prompt");
    let msg_line = &screen[msg];
    assert!(
        msg_line.starts_with('[') && !msg_line.contains("half"),
        "the message line is intact: {msg_line:?}"
    );

    // Finishing the line sends it whole.
    tmux.run(&["send-keys", "-t", "alice", "-l", "ed line"]);
    tmux.run(&["send-keys", "-t", "alice", "Enter"]);
    bob.expect_contains("Alice: half typed line");

    // Ctrl-C leaves cleanly: Bob sees a goodbye, not a timeout.
    tmux.run(&["send-keys", "-t", "alice", "C-c"]);
    let l = bob.expect_contains("Alice disconnected");
    assert!(l.contains("the peer left"), "{l}");
}
