//! `noctua-bench`: measures Noctua and, in the same run with the same harness, two
//! baselines — stock libp2p `request_response` (cbor codec, no application crypto) on the
//! same swarm configuration, and plain tokio TCP with length-prefixed frames — and prints a
//! table of medians, p99 and Noctua/baseline ratios (also written as JSON with `--json`).
//!
//! ```text
//! cargo build --release -p noctua -p noctua-bench
//! target/release/noctua-bench [--quick] [--json out.json] [--noctua-bin path] [--only rtt,...] [--lazy]
//! ```
//!
//! Every message of every scenario is accounted for: failures and missing receipts are
//! counted as lost, per system, and reported.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod figures;
mod guess;
mod keys;
mod lab;
mod minimal;
mod net;
mod noctua;
mod pair;
mod plot;
mod process;
mod profile;
mod raw;
mod report;
mod scale;
mod serve;
mod stats;
mod stock;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::figures::{Group, Opts};

/// Benchmark harness: Noctua against stock libp2p request-response and raw TCP, on
/// loopback, in one run.
#[derive(Debug, Parser)]
#[command(name = "noctua-bench", version, about)]
struct Cli {
    /// Run everything briefly (seconds): checks the harness, not the performance
    #[arg(long)]
    quick: bool,

    /// Also write the results as JSON to this file
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,

    /// The noctua binary, for start-up and memory figures
    #[arg(long, value_name = "PATH", default_value = "target/release/noctua")]
    noctua_bin: PathBuf,

    /// Only these figure groups (comma-separated) [default: all]
    #[arg(long, value_enum, value_delimiter = ',', value_name = "FIGURE")]
    only: Vec<Group>,

    /// Let the stock baseline use multistream-select V1Lazy for outbound substreams too
    /// (Noctua always does, as the node ships)
    #[arg(long)]
    lazy: bool,

    /// Lab sizes for the lab figures (comma-separated) [default: 32,64,128; --quick: 8]
    #[arg(long, value_delimiter = ',', value_name = "N")]
    lab_nodes: Vec<usize>,

    /// Directory for the labs' event logs (one subdirectory per size, emptied first)
    #[arg(long, value_name = "DIR")]
    lab_dir: Option<PathBuf>,

    /// Poll the measuring clients on the main thread (the runtime's `block_on`), with the
    /// servers on the workers: the harness's topology before 2026-11-29, kept to show what
    /// it cost (every message crosses threads twice)
    #[arg(long)]
    client_on_main_thread: bool,

    #[command(subcommand)]
    mode: Option<Mode>,
}

/// Modes the harness starts itself in, as child processes.
#[derive(Debug, Subcommand)]
enum Mode {
    /// A stock request-response node process (baseline for start-up and memory)
    #[command(hide = true)]
    ServeStock,
    /// A raw TCP ack server process (baseline for start-up and memory)
    #[command(hide = true)]
    ServeRaw,
    /// One system and one scenario alone, for profilers (perf, callgrind)
    Profile {
        /// noctua, stock or raw
        #[arg(long, default_value = "noctua")]
        system: String,
        /// What to run
        #[arg(long, value_enum, default_value = "rtt")]
        scenario: profile::Scenario,
        /// Operations measured
        #[arg(short = 'n', long, default_value_t = 10_000)]
        count: usize,
        /// V1Lazy
        #[arg(long)]
        lazy: bool,
        /// Print READY before the measured part and wait for a line on stdin
        #[arg(long)]
        pause: bool,
        /// Over QUIC instead of TCP
        #[arg(long)]
        quic: bool,
    },
    /// The CPU ceiling of online guessing: wrong-secret HELLO+AUTH refused per second by
    /// the protocol core (no transport, no rate limits), one line
    Guess {
        /// Guesses measured
        #[arg(short = 'n', long, default_value_t = 2000)]
        count: usize,
    },
    /// The lab figures of a lab that already ran (`noctua lab --dir DIR`), from its nodes'
    /// event logs: mesh times, sessions, broadcast receipts; one JSON line
    LabAnalyze {
        /// The lab's directory (node0.jsonl, node1.jsonl, ...)
        #[arg(long)]
        dir: PathBuf,
        /// Number of nodes
        #[arg(long)]
        nodes: usize,
    },
    /// Time to full mesh against N, as an SVG, from the JSON of one or more runs (lab
    /// and scale figures)
    Plot {
        /// A run's JSON (`--json` of a run); may be given several times
        #[arg(long = "json", value_name = "PATH", required = true)]
        inputs: Vec<PathBuf>,
        /// The SVG to write
        #[arg(long, value_name = "PATH")]
        out: PathBuf,
        /// The plot's title
        #[arg(
            long,
            default_value = "Noctua: time to full mesh against the number of nodes"
        )]
        title: String,
    },
    /// One N-node mesh in this process; prints one JSON line
    #[command(hide = true)]
    ScaleChild {
        /// noctua, stock or raw
        #[arg(long)]
        system: String,
        /// Number of nodes
        #[arg(long)]
        nodes: usize,
        /// Number of broadcasts
        #[arg(long)]
        broadcasts: usize,
        /// RSA keys to generate and share among the nodes
        #[arg(long, default_value_t = 4)]
        keys: usize,
        /// V1Lazy
        #[arg(long)]
        lazy: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Two workers, like the noctua binary.
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("noctua-bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The whole harness runs as a task on the runtime's workers, never on the thread that
    // blocks on it: every measuring client then shares its two workers with the server it
    // measures (same topology for every system). Polled from `block_on`, a client sat on
    // the main thread and every message crossed threads twice (raw TCP: 65-78 us p50
    // instead of 13-15 us).
    let main_thread = cli.client_on_main_thread;
    let code = rt.block_on(async {
        if main_thread {
            return run(cli).await;
        }
        match tokio::spawn(run(cli)).await {
            Ok(code) => code,
            Err(e) => {
                eprintln!("noctua-bench: the harness task failed: {e}");
                ExitCode::FAILURE
            }
        }
    });
    rt.shutdown_background();
    code
}

async fn run(cli: Cli) -> ExitCode {
    match cli.mode {
        Some(Mode::ServeStock) => {
            serve::stock_node().await;
            return ExitCode::SUCCESS;
        }
        Some(Mode::ServeRaw) => {
            serve::raw_node().await;
            return ExitCode::SUCCESS;
        }
        Some(Mode::ScaleChild {
            system,
            nodes,
            broadcasts,
            keys,
            lazy,
        }) => {
            let Some(sys) = process::System::parse(&system) else {
                eprintln!("noctua-bench: unknown system {system:?}");
                return ExitCode::from(2);
            };
            if nodes < 2 {
                eprintln!("noctua-bench: a mesh needs at least 2 nodes");
                return ExitCode::from(2);
            }
            let v = scale::child(sys, nodes, broadcasts, lazy, keys).await;
            println!("{v}");
            return ExitCode::SUCCESS;
        }
        Some(Mode::LabAnalyze { dir, nodes }) => {
            if nodes < 2 {
                eprintln!("noctua-bench: a lab needs at least 2 nodes");
                return ExitCode::from(2);
            }
            let r = lab::analyze(&dir, nodes);
            let mut v = r.summary();
            v["mesh_ms"] = r.mesh_ms.into();
            println!("{v}");
            return ExitCode::SUCCESS;
        }
        Some(Mode::Plot { inputs, out, title }) => {
            let mut docs = Vec::new();
            for path in &inputs {
                let doc = std::fs::read_to_string(path)
                    .map_err(|e| e.to_string())
                    .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()));
                match doc {
                    Ok(d) => docs.push(d),
                    Err(e) => {
                        eprintln!("noctua-bench: cannot read {}: {e}", path.display());
                        return ExitCode::from(2);
                    }
                }
            }
            let Some(svg) = plot::mesh_svg(&docs, &title) else {
                eprintln!("noctua-bench: no lab or scale mesh figure in the given JSON");
                return ExitCode::FAILURE;
            };
            if let Err(e) = std::fs::write(&out, svg) {
                eprintln!("noctua-bench: cannot write {}: {e}", out.display());
                return ExitCode::FAILURE;
            }
            eprintln!("[bench] plot written to {}", out.display());
            return ExitCode::SUCCESS;
        }
        Some(Mode::Guess { count }) => {
            guess::run(count.max(1));
            return ExitCode::SUCCESS;
        }
        Some(Mode::Profile {
            system,
            scenario,
            count,
            lazy,
            pause,
            quic,
        }) => {
            let Some(sys) = process::System::parse(&system) else {
                eprintln!("noctua-bench: unknown system {system:?}");
                return ExitCode::from(2);
            };
            profile::run(sys, scenario, count.max(1), lazy, pause, quic).await;
            return ExitCode::SUCCESS;
        }
        None => {}
    }
    let opts = Opts {
        quick: cli.quick,
        lazy: cli.lazy,
        noctua_bin: cli.noctua_bin,
        client_on_main_thread: cli.client_on_main_thread,
        lab_nodes: cli.lab_nodes,
        lab_dir: cli
            .lab_dir
            .unwrap_or_else(|| std::env::temp_dir().join("noctua-bench-labs")),
        groups: if cli.only.is_empty() {
            Group::ALL.to_vec()
        } else {
            cli.only
        },
    };
    let report = figures::run(&opts).await;
    println!("{}", report.table());
    if let Some(path) = &cli.json {
        let text = serde_json::to_string_pretty(&report.json()).expect("JSON");
        if let Err(e) = std::fs::write(path, text + "\n") {
            eprintln!("noctua-bench: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
        eprintln!("[bench] results written to {}", path.display());
    }
    ExitCode::SUCCESS
}
