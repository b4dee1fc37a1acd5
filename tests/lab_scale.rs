//! A lab bigger than the host's neighbour (ARP) table allows by default: 40 nodes in
//! network namespaces need ~1 900 entries in a table that the kernel shares between every
//! namespace and caps at `gc_thresh3` (1024 by default). Before `noctua lab` raised the
//! limit, entries were refused, UDP sends failed with ENOBUFS, mDNS went silent for the
//! nodes that came last, and such labs never meshed (32-node labs sometimes stalled; 64-node
//! labs formed 1024 of 4032 sessions).
//!
//! Its own test binary, so that no other lab of this process runs beside it (the limits
//! are put back only when no lab is left). Needs root, iproute2 and util-linux; skipped
//! with a message where they are missing, unless `NOCTUA_REQUIRE_NETNS=1`.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use noctua::face::headless::Event;
use noctua::lab::{self, Lab, LabEvent};

mod support;
use support::netns_or_skip;

const NODES: usize = 40;

fn sysctl(name: &str) -> u64 {
    let path = format!("/proc/sys/{}", name.replace('.', "/"));
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("read {path}: {e}"))
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("{path}: {e}"))
}

const LIMITS: [&str; 4] = [
    "net.ipv4.neigh.default.gc_thresh3",
    "net.ipv4.neigh.default.gc_thresh2",
    "net.ipv6.neigh.default.gc_thresh3",
    "net.ipv6.neigh.default.gc_thresh2",
];

/// Collects events into `events` until `done` holds (`what` names it in the failure).
async fn until(
    lab: &mut Lab,
    events: &mut Vec<LabEvent>,
    what: &str,
    limit: Duration,
    mut done: impl FnMut(&[LabEvent], &Lab) -> bool,
) {
    let ok = tokio::time::timeout(limit, async {
        while !done(events, lab) {
            match lab.next_event().await {
                Some(ev) => events.push(ev),
                None => return false,
            }
        }
        true
    })
    .await;
    assert_eq!(
        ok,
        Ok(true),
        "never saw {what} within {limit:?} ({} events; logs in {})",
        events.len(),
        lab.dir().display()
    );
}

/// For each node, the peers it has a session with.
fn sessions(events: &[LabEvent], n: usize) -> Vec<HashSet<String>> {
    let mut s = vec![HashSet::new(); n];
    for e in events {
        match &e.event {
            Event::SessionEstablished { peer_id, .. } => {
                s[e.node].insert(peer_id.clone());
            }
            Event::SessionClosed { peer_id, .. } => {
                s[e.node].remove(peer_id);
            }
            _ => {}
        }
    }
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lab_past_the_hosts_neighbour_table_meshes_broadcasts_once_and_puts_the_limits_back() {
    let test = "lab_scale";
    if !netns_or_skip(test) {
        return;
    }
    let before: HashMap<&str, u64> = LIMITS.iter().map(|n| (*n, sysctl(n))).collect();
    let (soft, hard) = lab::neighbour_table_need(NODES);
    assert!(
        hard > 1024,
        "the test must need more than the kernel's default"
    );

    let dir = std::env::temp_dir().join(format!("noctua-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_noctua"));
    let mut lab = Lab::create(NODES, &dir, &bin).expect("create the lab");
    // Raised where it was lower, never lowered.
    for name in LIMITS {
        let want = if name.ends_with("thresh3") {
            hard
        } else {
            soft
        };
        assert_eq!(
            sysctl(name),
            before[name].max(want),
            "{name} during the lab"
        );
        let raised = lab.raised_limits().iter().any(|r| r.name == name);
        assert_eq!(raised, before[name] < want, "{name} reported as raised");
    }
    for i in 0..NODES {
        lab.start(i, "lab-scale", &[]).expect("start a node");
    }
    let mut events = Vec::new();
    until(
        &mut lab,
        &mut events,
        "every node ready",
        Duration::from_secs(120),
        |_, lab| (0..NODES).all(|i| lab.peer_id(i).is_some()),
    )
    .await;
    // A bound against hanging, not a performance figure (those are in noctua-bench).
    until(
        &mut lab,
        &mut events,
        "the full mesh",
        Duration::from_secs(240),
        |evs, _| sessions(evs, NODES).iter().all(|s| s.len() == NODES - 1),
    )
    .await;

    // Every node says one thing to everyone; every other node hears it exactly once.
    let mark = events.len();
    for i in 0..NODES {
        lab.send(i, &format!("hello from node{i}"))
            .await
            .expect("send");
    }
    until(
        &mut lab,
        &mut events,
        "every broadcast delivered and heard",
        Duration::from_secs(120),
        |evs, _| {
            // Both ends: a sender's receipt can be read before the receiver's `message`
            // line (each node's output is a stream of its own).
            let mut delivered = vec![0; NODES];
            let mut heard = vec![0; NODES];
            for e in &evs[mark..] {
                match e.event {
                    Event::Delivered { .. } => delivered[e.node] += 1,
                    Event::Message { .. } => heard[e.node] += 1,
                    _ => {}
                }
            }
            delivered.iter().all(|&d| d >= NODES - 1) && heard.iter().all(|&h| h >= NODES - 1)
        },
    )
    .await;
    for i in 0..NODES {
        let mut heard: HashMap<String, usize> = HashMap::new();
        for e in events[mark..].iter().filter(|e| e.node == i) {
            if let Event::Message { text, .. } = &e.event {
                *heard.entry(text.clone()).or_default() += 1;
            }
        }
        let want: HashMap<String, usize> = (0..NODES)
            .filter(|&j| j != i)
            .map(|j| (format!("hello from node{j}"), 1))
            .collect();
        assert_eq!(heard, want, "node{i} heard");
        let failed = events[mark..]
            .iter()
            .filter(|e| e.node == i && matches!(e.event, Event::DeliveryFailed { .. }))
            .count();
        assert_eq!(failed, 0, "node{i}: deliveries failed");
    }

    lab.shutdown().await;
    assert!(
        lab::leftover_namespaces().is_empty(),
        "namespaces left behind"
    );
    // Put back, unless another process runs a lab right now (then they stay raised for it).
    let others = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("noctua-lab-"))
        .unwrap_or(false);
    if others {
        eprintln!(
            "{test}: another lab runs on this machine: not checking that the limits were put back"
        );
    } else {
        for name in LIMITS {
            assert_eq!(sysctl(name), before[name], "{name} after the lab");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
