//! Smoke test of the benchmark harness: `noctua-bench --quick` runs every figure briefly and
//! writes JSON with every figure, finite numbers and no message lost. It checks that the
//! harness works, never how fast anything is (no timing is asserted). The lab figure runs
//! one lab of 8 `noctua` processes in network namespaces: it needs root, `ip` and the
//! release binary, and is skipped (saying why) without them, unless
//! `NOCTUA_REQUIRE_NETNS=1`, which makes a skip a failure.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// Figures every quick run must produce (start-up and memory need the release `noctua`).
const IN_PROCESS: &[&str] = &[
    "handshake.rsa2048",
    "handshake.rsa3072",
    "rtt.tcp",
    "rtt.quic",
    "throughput.small_w64.tcp",
    "throughput.small_w64.tcp.latency",
    "throughput.small_w256.tcp",
    "throughput.small_w256.tcp.latency",
    "throughput.16k_w64.tcp",
    "throughput.16k_w64.tcp.latency",
    "throughput.small_w64.quic",
    "throughput.small_w64.quic.latency",
    "rotation.auto",
    "rotation.manual",
    "scale.n4.mesh",
    "scale.n4.rss",
    "scale.n4.rss_per_node",
    "scale.n4.broadcast",
    "scale.n8.mesh",
    "scale.n8.rss",
    "scale.n8.rss_per_node",
    "scale.n8.broadcast",
];
const NEEDS_BINARY: &[&str] = &[
    "startup.banner",
    "startup.ready",
    "memory.idle_rss",
    "memory.idle_anon",
    "memory.per_session",
];

/// The release `noctua` binary next to this build's target directory, or `NOCTUA_BIN`.
fn noctua_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("NOCTUA_BIN") {
        return PathBuf::from(p);
    }
    // <target>/<profile>/noctua-bench -> <target>/release/noctua
    let exe = Path::new(env!("CARGO_BIN_EXE_noctua-bench"));
    exe.parent()
        .and_then(Path::parent)
        .map(|t| t.join("release").join("noctua"))
        .unwrap_or_else(|| PathBuf::from("target/release/noctua"))
}

fn check_side(id: &str, name: &str, side: &Value) {
    for key in ["median", "p99", "min", "max", "mean"] {
        let x = side[key].as_f64();
        assert!(
            x.is_some_and(f64::is_finite),
            "{id}: {name}.{key} is not a finite number: {}",
            side[key]
        );
    }
    assert!(
        side["n"].as_u64().unwrap_or(0) >= 1,
        "{id}: {name} has no samples"
    );
    assert_eq!(side["lost"].as_u64(), Some(0), "{id}: {name} lost messages");
}

#[test]
fn quick_run_has_every_figure_with_finite_numbers_and_no_loss() {
    let bin = noctua_bin();
    let have_bin = bin.is_file();
    let json = std::env::temp_dir().join(format!("noctua-bench-smoke-{}.json", std::process::id()));
    let labs = std::env::temp_dir().join(format!("noctua-bench-smoke-labs-{}", std::process::id()));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_noctua-bench"));
    cmd.arg("--quick")
        .arg("--lab-dir")
        .arg(&labs)
        .arg("--json")
        .arg(&json)
        .arg("--noctua-bin")
        .arg(&bin);
    let require_netns = std::env::var_os("NOCTUA_REQUIRE_NETNS").is_some_and(|v| v == "1");
    if !have_bin {
        assert!(
            !require_netns,
            "NOCTUA_REQUIRE_NETNS=1 but the release noctua binary the lab figure runs is missing at {}",
            bin.display()
        );
        // CI builds the release binary first and sets this, so a missing binary there is a
        // failure, never a silent skip of two figures.
        assert!(
            std::env::var_os("NOCTUA_REQUIRE_RELEASE_BIN").is_none(),
            "NOCTUA_REQUIRE_RELEASE_BIN is set but the release noctua binary is missing at {}",
            bin.display()
        );
        println!(
            "release noctua binary not found at {}: skipping the start-up, memory and lab figures \
             (build it with `cargo build --release -p noctua`, or set NOCTUA_BIN)",
            bin.display()
        );
        cmd.arg("--only=handshake,rtt,throughput,rotation,scale");
    }
    let out = cmd.output().expect("run noctua-bench");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "noctua-bench failed: {stderr}");
    println!("{}", String::from_utf8_lossy(&out.stdout));

    let _ = std::fs::remove_dir_all(&labs);
    let text = std::fs::read_to_string(&json).expect("JSON written");
    let _ = std::fs::remove_file(&json);
    let doc: Value = serde_json::from_str(&text).expect("valid JSON");
    let figures = doc["figures"].as_object().expect("figures object");

    let mut expected: Vec<&str> = IN_PROCESS.to_vec();
    if have_bin {
        expected.extend(NEEDS_BINARY);
    }
    for id in &expected {
        let f = &figures
            .get(*id)
            .unwrap_or_else(|| panic!("figure {id} missing; stderr: {stderr}"));
        check_side(id, "noctua", &f["noctua"]);
        assert!(
            !f["stock"].is_null() || !f["raw"].is_null(),
            "{id}: no baseline"
        );
        for base in ["stock", "raw"] {
            if !f[base].is_null() {
                check_side(id, base, &f[base]);
            }
        }
        let r = f["ratio_stock_p50"]
            .as_f64()
            .or(f["ratio_raw_p50"].as_f64());
        assert!(r.is_some_and(f64::is_finite), "{id}: no finite ratio");
        assert_eq!(f["lost"].as_u64(), Some(0), "{id}: lost messages");
    }
    for id in ["rotation.auto", "rotation.manual"] {
        let n = figures[id]["extra"]["rotations"].as_u64().unwrap_or(0);
        assert!(n >= 1, "{id}: the session never rotated");
    }
    for sys in ["noctua", "stock", "raw"] {
        assert_eq!(doc["lost"][sys].as_u64(), Some(0), "{sys} lost messages");
    }
    // The harness floor is measured in the same run (its value is never asserted).
    let floor = &figures["rtt.tcp"]["extra"];
    assert!(
        floor["minimal_p50_ms"].as_f64().is_some_and(f64::is_finite),
        "rtt.tcp: no minimal ping-pong floor: {floor}"
    );
    assert!(
        floor["raw_over_minimal_p50"]
            .as_f64()
            .is_some_and(f64::is_finite),
        "rtt.tcp: no raw/minimal ratio: {floor}"
    );
    assert_eq!(
        floor["minimal_lost"].as_u64(),
        Some(0),
        "minimal ping-pong lost"
    );
    // Scale: every broadcast reached every receiver exactly once, for every system.
    for n in [4, 8] {
        let dups = &figures[&format!("scale.n{n}.broadcast")]["extra"]["duplicates"];
        assert_eq!(
            dups,
            &serde_json::json!([0, 0, 0]),
            "scale.n{n}: duplicate receipts"
        );
    }
    check_lab(&doc, have_bin, require_netns, &stderr);
}

/// The lab figure (`--quick`: one lab of 8 nodes): present with numbers, the full mesh,
/// and every node's broadcast received by every other exactly once. Without root or `ip`
/// the harness skips it with a reason, which is a failure under NOCTUA_REQUIRE_NETNS=1.
fn check_lab(doc: &Value, have_bin: bool, require_netns: bool, stderr: &str) {
    let skipped = doc["skipped"]
        .as_array()
        .expect("skipped array")
        .iter()
        .find(|s| s["group"] == "lab");
    if let Some(s) = skipped {
        assert!(
            !require_netns,
            "NOCTUA_REQUIRE_NETNS=1 but the lab figure was skipped: {}",
            s["reason"]
        );
        println!("lab figure skipped: {}", s["reason"]);
        return;
    }
    if !have_bin {
        return;
    }
    let figures = doc["figures"].as_object().expect("figures object");
    for id in [
        "lab.n8.mesh",
        "lab.n8.broadcast",
        "lab.n8.rss",
        "lab.n8.cpu_per_session_from_start",
        "lab.n8.command_rtt",
    ] {
        let f = figures
            .get(id)
            .unwrap_or_else(|| panic!("figure {id} missing; stderr: {stderr}"));
        check_side(id, "noctua", &f["noctua"]);
        assert_eq!(f["lost"].as_u64(), Some(0), "{id}: lost");
    }
    // CPU per handshake divides the CPU of a window (every key ready to the full mesh) by
    // the sessions in it, which a fast mesh can leave empty: present, with the CPU counted.
    let cpu = figures
        .get("lab.n8.cpu_per_handshake")
        .unwrap_or_else(|| panic!("figure lab.n8.cpu_per_handshake missing; stderr: {stderr}"));
    assert!(
        cpu["extra"]["cpu_total_s"]
            .as_f64()
            .is_some_and(|c| c > 0.0),
        "no node CPU counted: {}",
        cpu["extra"]
    );
    assert!(
        cpu["extra"]["sessions_at_mesh"]
            .as_u64()
            .is_some_and(|s| s >= 28),
        "{}",
        cpu["extra"]
    );
    let mesh = &figures["lab.n8.mesh"]["extra"];
    assert_eq!(mesh["nodes"].as_u64(), Some(8));
    assert_eq!(mesh["nodes_not_meshed"].as_u64(), Some(0), "{mesh}");
    assert_eq!(mesh["pairs_missing"].as_u64(), Some(0), "{mesh}");
    assert!(
        mesh["sessions"].as_u64().is_some_and(|s| s >= 28),
        "8 nodes need at least 28 sessions: {mesh}"
    );
    assert_eq!(mesh["broadcast_expected"].as_u64(), Some(56), "{mesh}");
    assert_eq!(mesh["broadcast_exactly_once"].as_u64(), Some(56), "{mesh}");
    assert_eq!(mesh["broadcast_lost"].as_u64(), Some(0), "{mesh}");
    assert_eq!(mesh["broadcast_duplicates"].as_u64(), Some(0), "{mesh}");
    assert_eq!(mesh["broadcast_failed"].as_u64(), Some(0), "{mesh}");
    assert_eq!(mesh["probes_unanswered"].as_u64(), Some(0), "{mesh}");
    assert!(mesh["probes"].as_u64().is_some_and(|p| p >= 1), "{mesh}");
    let targets = doc["targets"].as_array().expect("targets");
    assert!(!targets.is_empty());
}
