//! Smoke test of the benchmark harness: `noctua-bench --quick` runs every figure briefly and
//! writes JSON with every figure, finite numbers and no message lost. It checks that the
//! harness works, never how fast anything is (no timing is asserted).

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
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_noctua-bench"));
    cmd.arg("--quick")
        .arg("--json")
        .arg(&json)
        .arg("--noctua-bin")
        .arg(&bin);
    if !have_bin {
        // CI builds the release binary first and sets this, so a missing binary there is a
        // failure, never a silent skip of two figures.
        assert!(
            std::env::var_os("NOCTUA_REQUIRE_RELEASE_BIN").is_none(),
            "NOCTUA_REQUIRE_RELEASE_BIN is set but the release noctua binary is missing at {}",
            bin.display()
        );
        println!(
            "release noctua binary not found at {}: skipping the start-up and memory figures \
             (build it with `cargo build --release -p noctua`, or set NOCTUA_BIN)",
            bin.display()
        );
        cmd.arg("--only=handshake,rtt,throughput,rotation,scale");
    }
    let out = cmd.output().expect("run noctua-bench");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "noctua-bench failed: {stderr}");
    println!("{}", String::from_utf8_lossy(&out.stdout));

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
    let targets = doc["targets"].as_array().expect("targets");
    assert!(!targets.is_empty());
}
