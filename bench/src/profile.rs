//! `noctua-bench profile`: one system, one scenario, nothing else in the process — for
//! `perf record` or `valgrind --tool=callgrind`, so that costs per message can be compared
//! between Noctua and the stock baseline.

use std::time::{Duration, Instant};

use crate::keys;
use crate::net::Transport;
use crate::pair::PairClient;
use crate::process::System;
use crate::{noctua, raw, stock};

/// What to profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// Sequential 100-byte round trips.
    Rtt,
    /// 100-byte messages, 64 outstanding.
    Tput,
    /// 16 KiB messages, 64 outstanding.
    TputBig,
    /// Handshakes (RSA-2048): dial to session active.
    Handshake,
}

/// Runs `count` operations of `scenario` on `system` (over QUIC with `quic`, else TCP; the
/// raw baseline is always TCP), after a short warm-up, and prints the
/// elapsed time of the measured part (setup and key generation excluded). With `pause`,
/// prints `READY` before the measured part and waits for a line on stdin (so that a
/// profiler can be switched on, e.g. `callgrind_control -i on`), and exits at once after.
pub async fn run(
    system: System,
    scenario: Scenario,
    count: usize,
    lazy: bool,
    pause: bool,
    quic: bool,
) {
    let (keys, _) = if system == System::Noctua {
        keys::generate(2048, 2)
    } else {
        (Vec::new(), Duration::ZERO)
    };
    let t = if quic {
        Transport::Quic
    } else {
        Transport::Tcp
    };
    let (size, window) = match scenario {
        Scenario::TputBig => (16 * 1024, 64),
        _ => (100, 64),
    };
    if scenario == Scenario::Handshake {
        if pause {
            wait_for_go().await;
        }
        let t0 = Instant::now();
        for _ in 0..count {
            let ok = match system {
                System::Noctua => {
                    let s = noctua::config(0, keys[0].clone());
                    let c = noctua::config(1, keys[1].clone());
                    match noctua::Client::connect(0, s, c, t, lazy).await {
                        Ok((c, _)) => {
                            c.close().await;
                            true
                        }
                        Err(_) => false,
                    }
                }
                System::Stock => match stock::Client::connect(t, lazy).await {
                    Ok((c, _)) => {
                        c.close().await;
                        true
                    }
                    Err(_) => false,
                },
                System::Raw => match raw::Client::connect().await {
                    Ok((c, _)) => {
                        c.close();
                        true
                    }
                    Err(_) => false,
                },
            };
            assert!(ok, "handshake failed");
        }
        finish(t0, system, scenario, count, pause);
    } else {
        match system {
            System::Noctua => {
                let s = noctua::config(0, keys[0].clone());
                let c = noctua::config(1, keys[1].clone());
                let (mut c, _) = noctua::Client::connect(0, s, c, t, lazy)
                    .await
                    .expect("session");
                let t0 = drive(&mut c, scenario, count, size, window, pause).await;
                finish(t0, system, scenario, count, pause);
                c.close().await;
            }
            System::Stock => {
                let (mut c, _) = stock::Client::connect(t, lazy).await.expect("connection");
                let t0 = drive(&mut c, scenario, count, size, window, pause).await;
                finish(t0, system, scenario, count, pause);
                c.close().await;
            }
            System::Raw => {
                let (mut c, _) = raw::Client::connect().await.expect("connection");
                let t0 = drive(&mut c, scenario, count, size, window, pause).await;
                finish(t0, system, scenario, count, pause);
                c.close();
            }
        }
    }
}

/// Prints the measured time; with `pause`, exits at once (no teardown in the profile).
fn finish(t0: Instant, system: System, scenario: Scenario, count: usize, pause: bool) {
    let el = t0.elapsed();
    println!(
        "{} {:?}: {count} in {:.3} s ({:.1} us each)",
        system.name(),
        scenario,
        el.as_secs_f64(),
        el.as_secs_f64() * 1e6 / count as f64
    );
    if pause {
        std::process::exit(0);
    }
}

async fn wait_for_go() {
    println!("READY");
    let _ = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        let _ = std::io::stdin().read_line(&mut line);
    })
    .await;
}

async fn drive<C: PairClient>(
    c: &mut C,
    scenario: Scenario,
    count: usize,
    size: usize,
    window: usize,
    pause: bool,
) -> Instant {
    match scenario {
        Scenario::Rtt => {
            c.rtt(count / 10 + 1, size).await;
            if pause {
                wait_for_go().await;
            }
            let t0 = Instant::now();
            let r = c.rtt(count, size).await;
            assert_eq!(r.lost, 0, "lost messages");
            t0
        }
        _ => {
            c.throughput(count / 10 + 1, window, size).await;
            if pause {
                wait_for_go().await;
            }
            let t0 = Instant::now();
            let r = c.throughput(count, window, size).await;
            assert_eq!(r.lost, 0, "lost messages");
            t0
        }
    }
}
