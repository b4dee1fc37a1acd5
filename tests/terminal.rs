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

    /// A tmux server of its own: tests run in parallel, and each kills its server.
    fn new() -> Self {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Tmux {
            socket: format!("noctua-test-{}-{n}", std::process::id()),
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

/// Skips (or, where every environment test must run, fails) without tmux.
fn tmux_or_skip() -> Option<Tmux> {
    if Tmux::available() {
        return Some(Tmux::new());
    }
    if std::env::var("NOCTUA_REQUIRE_NETNS").as_deref() == Ok("1") {
        panic!("tmux is required here (NOCTUA_REQUIRE_NETNS=1) but not installed");
    }
    eprintln!("SKIPPED: tmux is not installed (apt-get install tmux)");
    None
}

/// Starts Alice in tmux session `alice` (the node is the pane's process, so that signals
/// reach it), and Bob on pipes, connected to her. Returns Bob and Alice's process id.
fn alice_in_tmux_and_bob(tmux: &Tmux) -> (NodeProc, u32) {
    let cmd = format!(
        "exec {} --id Alice --secret alpha-secret --no-mdns --listen /ip4/127.0.0.1/tcp/0",
        support::bin()
    );
    tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "alice",
        "-x",
        "100",
        "-y",
        "40",
        &cmd,
    ]);
    // Keep the last screen after the node leaves.
    tmux.run(&["set-option", "-t", "alice", "remain-on-exit", "on"]);
    let screen = tmux.wait_for("alice", "the connection string", |l| {
        l.iter()
            .any(|x| x.starts_with("127.0.0.1:") && x.ends_with(":alpha-secret"))
    });
    let cs = screen
        .iter()
        .find(|x| x.starts_with("127.0.0.1:") && x.ends_with(":alpha-secret"))
        .unwrap()
        .clone();
    let pid: u32 = tmux
        .run(&["display-message", "-p", "-t", "alice", "#{pane_pid}"])
        .trim()
        .parse()
        .expect("pane pid");
    let mut bob = NodeProc::start("Bob", "bravo-secret", &[]);
    bob.send(&format!("connect {cs}"));
    bob.expect_contains("[+] Alice connected");
    tmux.wait_for("alice", "Bob's arrival", |l| {
        l.iter().any(|x| x.contains("[+] Bob connected to you"))
    });
    (bob, pid)
}

/// Types `text` and Enter in the pane.
fn type_line(tmux: &Tmux, text: &str) {
    tmux.run(&["send-keys", "-t", "alice", "-l", text]);
    tmux.run(&["send-keys", "-t", "alice", "Enter"]);
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

/// Issue 11, items 1 to 3 at the keyboard: chat that starts with a command word is chat,
/// names are typed as shown, and `exit` typed right after a message does not lose it.
/// The screen is printed (the transcript for the issue).
#[test]
fn at_the_keyboard_chat_is_chat_names_resolve_and_exit_keeps_the_last_message() {
    let Some(tmux) = tmux_or_skip() else { return };
    let (mut bob, _) = alice_in_tmux_and_bob(&tmux);
    for line in ["help me please", "exit strategy", "c u later"] {
        type_line(&tmux, line);
        bob.expect_contains(&format!("Alice: {line}"));
    }
    // A pasted block whose first line is `exit` is chat (bracketed paste, as a terminal
    // pastes when the program asks for it).
    tmux.run(&["set-buffer", "exit\nwas the first line of a paste"]);
    tmux.run(&["paste-buffer", "-p", "-t", "alice"]);
    tmux.run(&["send-keys", "-t", "alice", "Enter"]);
    bob.expect("the pasted block", |l| l.ends_with("Alice: exit"));
    bob.expect_contains("was the first line of a paste");
    type_line(&tmux, "/say exit");
    bob.expect("the escaped line", |l| l.ends_with("Alice: exit"));
    type_line(&tmux, "verify Bob");
    tmux.wait_for("alice", "the safety number", |l| {
        l.iter().any(|x| x.starts_with("Safety number with Bob"))
    });
    type_line(&tmux, "@Bob just for you");
    bob.expect_contains("Alice (private): just for you");
    // The last message and `exit` in one go, as fast as tmux can type them.
    tmux.run(&["send-keys", "-t", "alice", "-l", "the last word"]);
    tmux.run(&["send-keys", "-t", "alice", "Enter"]);
    type_line(&tmux, "exit");
    let screen = tmux.wait_for("alice", "the goodbye", |l| {
        l.iter().any(|x| x.contains("said goodbye to Bob"))
    });
    println!("--- Alice's terminal ---\n{}", screen.join("\n"));
    let text = screen.join("\n");
    assert!(
        text.contains("\"the last word\" delivered to Bob"),
        "{text}"
    );
    assert!(!text.contains("not delivered"), "{text}");
    assert!(!text.contains("takes no arguments"), "{text}");
    bob.expect_contains("Alice: the last word");
    let l = bob.expect_contains("Alice disconnected");
    assert!(l.contains("the peer left"), "{l}");
}

/// Issue 11, item 3: SIGTERM, SIGHUP (the window closed) and Ctrl-D at the prompt each
/// wait for the receipt of what was just sent, and say goodbye.
#[test]
fn sigterm_sighup_and_ctrl_d_in_the_terminal_say_goodbye() {
    for how in ["TERM", "HUP", "C-d"] {
        let Some(tmux) = tmux_or_skip() else { return };
        let (mut bob, pid) = alice_in_tmux_and_bob(&tmux);
        type_line(&tmux, &format!("before {how}"));
        // The line was read (a new prompt is up): the message is on its way.
        let typed = format!("> before {how}");
        tmux.wait_for("alice", "the line taken", |l| {
            l.contains(&typed) && l.last().is_some_and(|x| x == ">")
        });
        match how {
            "C-d" => {
                tmux.run(&["send-keys", "-t", "alice", "C-d"]);
            }
            sig => {
                let ok = Command::new("kill")
                    .args([&format!("-{sig}"), &pid.to_string()])
                    .status()
                    .expect("kill");
                assert!(ok.success());
            }
        }
        bob.expect_contains(&format!("Alice: before {how}"));
        let l = bob.expect_contains("Alice disconnected");
        assert!(l.contains("the peer left"), "{how}: {l}");
    }
}

/// Issue 11, item 7: Tab completes command words and peer names.
#[test]
fn tab_completes_commands_and_names() {
    let Some(tmux) = tmux_or_skip() else { return };
    let (mut bob, _) = alice_in_tmux_and_bob(&tmux);
    tmux.run(&["send-keys", "-t", "alice", "-l", "/ver"]);
    tmux.run(&["send-keys", "-t", "alice", "Tab"]);
    tmux.wait_for("alice", "the completed command", |l| {
        l.last().is_some_and(|x| x == "> /verify")
    });
    tmux.run(&["send-keys", "-t", "alice", "-l", "B"]);
    tmux.run(&["send-keys", "-t", "alice", "Tab"]);
    tmux.wait_for("alice", "the completed name", |l| {
        l.last().is_some_and(|x| x == "> /verify Bob")
    });
    tmux.run(&["send-keys", "-t", "alice", "Enter"]);
    tmux.wait_for("alice", "the safety number", |l| {
        l.iter().any(|x| x.starts_with("Safety number with Bob"))
    });
    tmux.run(&["send-keys", "-t", "alice", "-l", "@B"]);
    tmux.run(&["send-keys", "-t", "alice", "Tab"]);
    tmux.run(&["send-keys", "-t", "alice", "-l", "completed"]);
    tmux.run(&["send-keys", "-t", "alice", "Enter"]);
    bob.expect_contains("Alice (private): completed");
}
