//! Multi-node tests in network namespaces the test creates (never the machine's own
//! namespace: that is where mDNS would leak). Each node runs the real binary, headless,
//! with mDNS and auto-connect on.
//!
//! Needs root, iproute2 and util-linux. Where they are missing the tests are skipped with a
//! message, unless `NOCTUA_REQUIRE_NETNS=1` (set by `.ci/run`), which makes that a failure.

#[path = "../src/lab.rs"]
mod lab;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use lab::{Lab, LabEvent};

fn lab_or_skip(test: &str) -> bool {
    match lab::check() {
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

fn log_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("noctua-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A lab plus everything its nodes reported so far.
struct Run {
    lab: Lab,
    events: Vec<LabEvent>,
}

impl Run {
    fn new(test: &str, secrets: &[&str]) -> Run {
        Self::with(test, secrets, true)
    }

    fn with(test: &str, secrets: &[&str], auto_connect: bool) -> Run {
        Self::with_args(test, secrets, auto_connect, &[])
    }

    fn with_args(test: &str, secrets: &[&str], auto_connect: bool, extra: &[&str]) -> Run {
        let bin = PathBuf::from(env!("CARGO_BIN_EXE_noctua"));
        let mut lab = Lab::create(secrets.len(), &log_dir(test), &bin).expect("create the lab");
        lab.set_auto_connect(auto_connect);
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        for (i, s) in secrets.iter().enumerate() {
            lab.start(i, s, &extra).expect("start a node");
        }
        Run {
            lab,
            events: Vec::new(),
        }
    }

    /// Collects events until `done` holds for what was collected (60 s at most).
    async fn until(&mut self, what: &str, mut done: impl FnMut(&[LabEvent], &Lab) -> bool) {
        let limit = Duration::from_secs(60);
        let result = tokio::time::timeout(limit, async {
            while !done(&self.events, &self.lab) {
                match self.lab.next_event().await {
                    Some(ev) => self.events.push(ev),
                    None => return false,
                }
            }
            true
        })
        .await;
        if result != Ok(true) {
            let tail: Vec<String> = self
                .events
                .iter()
                .rev()
                .take(40)
                .map(|e| format!("node{}: {}", e.node, e.event))
                .collect();
            let mut stderr = String::new();
            for i in 0..self.lab.len() {
                let f = self.lab.dir().join(format!("node{i}.stderr"));
                if let Ok(t) = std::fs::read_to_string(&f)
                    && !t.trim().is_empty()
                {
                    stderr.push_str(&format!("node{i} stderr: {t}\n"));
                }
            }
            panic!(
                "never saw {what}; last events:\n{}\n{stderr}",
                tail.join("\n")
            );
        }
    }

    fn peer(&self, i: usize) -> String {
        self.lab.peer_id(i).expect("ready seen").to_string()
    }

    /// Peer ids node `i` has an open session with, from its events so far.
    fn sessions_of(events: &[LabEvent], i: usize) -> HashSet<String> {
        let mut set = HashSet::new();
        for e in events.iter().filter(|e| e.node == i) {
            match e.kind() {
                "session_established" => {
                    set.insert(e.str("peer_id").to_string());
                }
                "session_closed" => {
                    set.remove(e.str("peer_id"));
                }
                _ => {}
            }
        }
        set
    }

    async fn all_ready(&mut self, nodes: &[usize]) {
        let nodes = nodes.to_vec();
        self.until("every node ready", |_, lab| {
            nodes.iter().all(|i| lab.peer_id(*i).is_some())
        })
        .await;
    }

    /// Waits until every node in `group` has a session with every other one.
    async fn full_mesh(&mut self, group: &[usize]) {
        let group = group.to_vec();
        self.until("a full mesh", |evs, lab| {
            group.iter().all(|&i| {
                let s = Self::sessions_of(evs, i);
                group
                    .iter()
                    .filter(|&&j| j != i)
                    .all(|&j| lab.peer_id(j).is_some_and(|p| s.contains(p)))
            })
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_discover_each_other_mesh_admit_only_the_shared_secret_and_broadcast_exactly_once() {
    let test = "mesh";
    if !lab_or_skip(test) {
        return;
    }
    let honest: Vec<usize> = (0..5).collect();
    let outsider = 5;
    let mut run = Run::new(test, &["lab", "lab", "lab", "lab", "lab", "not-lab"]);
    run.all_ready(&[0, 1, 2, 3, 4, 5]).await;
    run.full_mesh(&honest).await;

    // The outsider is discovered by everyone, refused by everyone (or refuses them), once.
    let out_id = run.peer(outsider);
    let ids: Vec<String> = honest.iter().map(|&i| run.peer(i)).collect();
    run.until(
        "the outsider discovered and refused by every node",
        |evs, _| {
            honest.iter().all(|&h| {
                let discovered = evs
                    .iter()
                    .any(|e| e.node == h && e.kind() == "discovered" && e.str("peer_id") == out_id);
                let refused = evs.iter().any(|e| {
                    e.kind() == "auth_failed"
                        && ((e.node == h && e.str("peer_id") == out_id)
                            || (e.node == outsider && e.str("peer_id") == ids[h]))
                });
                discovered && refused
            })
        },
    )
    .await;

    // Every honest node broadcasts once; every other honest node receives it once.
    for &i in &honest {
        run.lab
            .send(i, &format!("hello from node{i}"))
            .await
            .unwrap();
    }
    run.until("every broadcast delivered and received", |evs, _| {
        honest.iter().all(|&i| {
            let received = evs
                .iter()
                .filter(|e| e.node == i && e.kind() == "message")
                .count();
            let delivered = evs
                .iter()
                .filter(|e| e.node == i && e.kind() == "delivered")
                .count();
            received >= 4 && delivered >= 4
        })
    })
    .await;
    // The node's own counters say the same: exactly one message over each session.
    for &i in &honest {
        run.lab.send(i, "sessions").await.unwrap();
    }
    run.until("session listings", |evs, _| {
        honest
            .iter()
            .all(|&i| evs.iter().any(|e| e.node == i && e.kind() == "sessions"))
    })
    .await;

    for &i in &honest {
        // Each message from each other honest node, exactly once.
        let mut from: HashMap<String, usize> = HashMap::new();
        for e in run
            .events
            .iter()
            .filter(|e| e.node == i && e.kind() == "message")
        {
            *from.entry(e.str("text").to_string()).or_default() += 1;
        }
        let want: HashMap<String, usize> = honest
            .iter()
            .filter(|&&j| j != i)
            .map(|j| (format!("hello from node{j}"), 1))
            .collect();
        assert_eq!(from, want, "node{i} received");
        let listing = run
            .events
            .iter()
            .rev()
            .find(|e| e.node == i && e.kind() == "sessions")
            .unwrap();
        let sessions = listing.event["sessions"].as_array().unwrap();
        assert_eq!(sessions.len(), 4, "node{i}: {sessions:?}");
        for s in sessions {
            assert_eq!(s["received"], 1, "node{i}: {s}");
            assert_eq!(s["sent"], 1, "node{i}: {s}");
            assert_ne!(s["peer_id"].as_str(), Some(out_id.as_str()));
        }
    }
    // Nobody admitted the outsider, and nobody retried against it.
    assert!(
        !run.events.iter().any(|e| e.kind() == "session_established"
            && (e.node == outsider || e.str("peer_id") == out_id)),
        "the outsider was admitted"
    );
    for &h in &honest {
        let tries = run
            .events
            .iter()
            .filter(|e| {
                e.kind() == "auth_failed"
                    && ((e.node == h && e.str("peer_id") == out_id)
                        || (e.node == outsider && e.str("peer_id") == ids[h]))
            })
            .count();
        assert!(
            tries <= 2,
            "node{h} and the outsider: {tries} failed attempts (a retry storm)"
        );
    }

    run.lab.shutdown().await;
    assert!(!any_of_mine_left(&run), "namespaces left behind");
}

fn any_of_mine_left(run: &Run) -> bool {
    lab::leftover_namespaces()
        .iter()
        .any(|n| n.starts_with(&format!("{}-", run.lab.id())))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_node_is_noticed_and_rejoins_when_restarted() {
    let test = "kill";
    if !lab_or_skip(test) {
        return;
    }
    let all: Vec<usize> = (0..5).collect();
    let mut run = Run::new(test, &["lab"; 5]);
    run.all_ready(&all).await;
    run.full_mesh(&all).await;

    let victim = 2;
    let old_id = run.peer(victim);
    run.lab.kill(victim).await;
    let others: Vec<usize> = all.iter().copied().filter(|&i| i != victim).collect();
    let before = run.events.len();
    run.until(
        "every other node closing its session with the killed one",
        |evs, _| {
            others.iter().all(|&i| {
                evs[before..].iter().any(|e| {
                    e.node == i && e.kind() == "session_closed" && e.str("peer_id") == old_id
                })
            })
        },
    )
    .await;
    for e in run.events[before..]
        .iter()
        .filter(|e| e.kind() == "session_closed" && e.str("peer_id") == old_id)
    {
        // Over TCP the kernel resets the connection at once; over QUIC there is no reset,
        // and the loss is noticed by QUIC's idle timeout or our keep-alive.
        assert!(
            ["connection lost", "the peer stopped answering"].contains(&e.str("reason")),
            "{}",
            e.event
        );
    }

    // Restarted (a new identity), it is discovered and admitted again by everyone.
    run.lab.start(victim, "lab", &[]).unwrap();
    run.until("the restarted node ready", |_, lab| {
        lab.peer_id(victim).is_some_and(|p| p != old_id)
    })
    .await;
    run.full_mesh(&all).await;
    run.lab.shutdown().await;
    assert!(!any_of_mine_left(&run), "namespaces left behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_discovered_peer_is_listed_and_connected_by_its_number() {
    let test = "discover";
    if !lab_or_skip(test) {
        return;
    }
    // No auto-connect: the user picks a discovered peer from `peers` and gives its secret.
    let mut run = Run::with(test, &["alpha", "bravo"], false);
    run.all_ready(&[0, 1]).await;
    let bravo = run.peer(1);
    run.until("node 0 discovering node 1", |evs, _| {
        evs.iter()
            .any(|e| e.node == 0 && e.kind() == "discovered" && e.str("peer_id") == bravo)
    })
    .await;
    run.lab.send(0, "peers").await.unwrap();
    run.until("the peer list", |evs, _| {
        evs.iter().any(|e| e.node == 0 && e.kind() == "peers")
    })
    .await;
    let list = run
        .events
        .iter()
        .rev()
        .find(|e| e.node == 0 && e.kind() == "peers")
        .unwrap()
        .event["peers"]
        .clone();
    let row = list
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["peer_id"] == bravo.as_str())
        .expect("node 1 listed");
    assert_eq!(row["discovered"], true);
    assert_eq!(row["session"], serde_json::Value::Null);
    let addrs = row["addrs"].as_array().unwrap();
    assert!(
        addrs
            .iter()
            .any(|a| a.as_str().unwrap().contains("/ip4/10.77.0.2/")),
        "{addrs:?}"
    );
    let index = row["index"].as_u64().unwrap();
    // A wrong secret first: refused, once.
    run.lab
        .send(0, &format!("connect {index} not-bravo"))
        .await
        .unwrap();
    run.until("the refusal", |evs, _| {
        evs.iter()
            .any(|e| e.node == 0 && e.kind() == "connect_failed")
    })
    .await;
    // Then the right one, by id prefix this time.
    run.lab
        .send(0, &format!("connect {} bravo", &bravo[..12]))
        .await
        .unwrap();
    run.until("the session", |evs, _| {
        evs.iter()
            .any(|e| e.node == 0 && e.kind() == "session_established" && e.str("peer_id") == bravo)
    })
    .await;
    let failed = run
        .events
        .iter()
        .find(|e| e.node == 0 && e.kind() == "connect_failed")
        .unwrap();
    assert!(
        failed.str("error").contains("wrong secret"),
        "{}",
        failed.event
    );
    run.lab.shutdown().await;
    assert!(!any_of_mine_left(&run), "namespaces left behind");
}

/// Fast failure detection for fault tests: a quiet session is probed every second and a
/// peer that does not answer within two seconds is gone.
const FAST: &[&str] = &["--keepalive", "1s", "--request-timeout", "2s"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_is_noticed_messages_fail_clearly_and_the_mesh_heals() {
    let test = "partition";
    if !lab_or_skip(test) {
        return;
    }
    let all = [0, 1, 2];
    let mut run = Run::with_args(test, &["lab"; 3], true, FAST);
    run.all_ready(&all).await;
    run.full_mesh(&all).await;
    let cut = run.peer(0);

    // Node 0's link goes down: nobody hears from it any more.
    run.lab.set_link(0, false).unwrap();
    let mark = run.events.len();
    run.lab.send(1, "msg node0 are you there?").await.unwrap();
    run.until("node 1 reporting what happened to its message", |evs, _| {
        evs[mark..].iter().any(|e| {
            e.node == 1
                && ((e.kind() == "delivery_failed" && e.str("peer_id") == cut)
                    || (e.kind() == "error" && e.str("message").contains("node0")))
        })
    })
    .await;
    run.until(
        "both sides of the cut closing their sessions",
        |evs, lab| {
            let others_closed = [1, 2].iter().all(|&i| {
                evs[mark..]
                    .iter()
                    .any(|e| e.node == i && e.kind() == "session_closed" && e.str("peer_id") == cut)
            });
            let cut_closed = [1, 2].iter().all(|&j| {
                let pj = lab.peer_id(j).unwrap_or_default();
                evs[mark..]
                    .iter()
                    .any(|e| e.node == 0 && e.kind() == "session_closed" && e.str("peer_id") == pj)
            });
            others_closed && cut_closed
        },
    )
    .await;
    // Nodes 1 and 2 still talk to each other.
    let mark = run.events.len();
    run.lab.send(1, "msg node2 still here").await.unwrap();
    run.until("1 -> 2 during the partition", |evs, _| {
        evs[mark..]
            .iter()
            .any(|e| e.node == 2 && e.kind() == "message" && e.str("text") == "still here")
    })
    .await;

    // Healed: the nodes reconnect on their own and messages flow again.
    run.lab.set_link(0, true).unwrap();
    run.full_mesh(&all).await;
    let mark = run.events.len();
    run.lab.send(0, "back again").await.unwrap();
    run.until("node 0's broadcast after the heal", |evs, _| {
        [1, 2].iter().all(|&i| {
            evs[mark..]
                .iter()
                .any(|e| e.node == i && e.kind() == "message" && e.str("text") == "back again")
        })
    })
    .await;
    run.lab.shutdown().await;
    assert!(!any_of_mine_left(&run), "namespaces left behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_killed_mid_burst_and_mid_rotation_leaves_every_message_accounted_for() {
    let test = "faults";
    if !lab_or_skip(test) {
        return;
    }
    let all = [0, 1];
    let mut run = Run::with_args(test, &["lab"; 2], true, FAST);
    run.all_ready(&all).await;
    run.full_mesh(&all).await;
    let victim = run.peer(0);

    // A burst of messages from node 1, and node 0 killed while they are in flight.
    let mark = run.events.len();
    for k in 0..100 {
        run.lab
            .send(1, &format!("msg node0 burst {k}"))
            .await
            .unwrap();
    }
    run.lab.kill(0).await;
    // Every message gets exactly one outcome: delivered, or failed with a reason.
    run.until("an outcome for each of the 100 messages", |evs, _| {
        let sent: HashSet<u64> = evs[mark..]
            .iter()
            .filter(|e| e.node == 1 && e.kind() == "sent")
            .filter_map(|e| e.event["id"].as_u64())
            .collect();
        let done = evs[mark..]
            .iter()
            .filter(|e| e.node == 1 && matches!(e.kind(), "delivered" | "delivery_failed"))
            .count();
        let refused = evs[mark..]
            .iter()
            .filter(|e| e.node == 1 && e.kind() == "error")
            .count();
        sent.len() + refused == 100 && done == sent.len()
    })
    .await;
    let mut outcomes: HashMap<u64, usize> = HashMap::new();
    for e in run.events[mark..]
        .iter()
        .filter(|e| e.node == 1 && matches!(e.kind(), "delivered" | "delivery_failed"))
    {
        *outcomes.entry(e.event["id"].as_u64().unwrap()).or_default() += 1;
        if e.kind() == "delivery_failed" {
            assert!(!e.str("reason").is_empty(), "{}", e.event);
        }
    }
    assert!(
        outcomes.values().all(|n| *n == 1),
        "one outcome each: {outcomes:?}"
    );
    run.until("node 1 noticing", |evs, _| {
        evs[mark..]
            .iter()
            .any(|e| e.node == 1 && e.kind() == "session_closed" && e.str("peer_id") == victim)
    })
    .await;

    // Restarted, it rejoins; then it is killed in the middle of a rotation.
    run.lab
        .start(
            0,
            "lab",
            &FAST.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )
        .unwrap();
    run.until("the restart", |_, lab| {
        lab.peer_id(0).is_some_and(|p| p != victim)
    })
    .await;
    run.full_mesh(&all).await;
    let victim = run.peer(0);
    let mark = run.events.len();
    run.lab.send(1, "rotate node0").await.unwrap();
    run.lab.kill(0).await;
    run.until("node 1 closing the session cleanly", |evs, _| {
        evs[mark..]
            .iter()
            .any(|e| e.node == 1 && e.kind() == "session_closed" && e.str("peer_id") == victim)
    })
    .await;
    // Node 1 is still healthy: a fresh node 0 joins it again.
    run.lab
        .start(
            0,
            "lab",
            &FAST.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )
        .unwrap();
    run.until("the second restart", |_, lab| {
        lab.peer_id(0).is_some_and(|p| p != victim)
    })
    .await;
    run.full_mesh(&all).await;
    run.lab.shutdown().await;
    assert!(!any_of_mine_left(&run), "namespaces left behind");
}

/// `noctua lab` without `--duration` stops at end of input (it used to run on until
/// Ctrl-C), says goodbye and leaves nothing behind.
#[test]
fn the_lab_command_stops_at_end_of_input() {
    if !lab_or_skip("end of input") {
        return;
    }
    let dir = log_dir("lab-eof");
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_noctua"))
        .args(["lab", "--nodes", "2", "--dir"])
        .arg(&dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start noctua lab");
    let pid = child.id().to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let Ok(out) = rx.recv_timeout(Duration::from_secs(60)) else {
        // Ends the lab (it tears down on SIGTERM) so that nothing is left behind.
        let _ = std::process::Command::new("kill").arg(&pid).status();
        panic!("noctua lab did not stop at end of input within 60 s");
    };
    let out = out.expect("output");
    let status = out.status;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        status.success(),
        "exit {status}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("lab removed: no namespace, link or process left"),
        "{stdout}"
    );
}
