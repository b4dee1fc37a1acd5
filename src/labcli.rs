//! `noctua lab`: the command around [`crate::lab::Lab`]: starts the nodes, prints what
//! they report, forwards commands typed on stdin, and tears everything down at the end.

use tokio::io::{AsyncBufReadExt, BufReader};

use crate::lab::{Lab, LabEvent, check, clean_stale, leftover_namespaces};

/// `noctua lab`: runs a lab until Ctrl-C, end of input or `--duration`, printing what
/// happens; returns a process exit code.
pub async fn run(args: crate::cli::LabArgs) -> std::process::ExitCode {
    use std::collections::HashMap;
    use std::process::ExitCode;

    if let Err(e) = check() {
        eprintln!("noctua lab: {e}");
        return ExitCode::FAILURE;
    }
    let stale = clean_stale();
    if stale > 0 {
        println!("removed {stale} namespace(s) left by an earlier lab");
    }
    if args.cleanup {
        return ExitCode::SUCCESS;
    }
    if args.outsiders >= args.nodes {
        eprintln!("noctua lab: --outsiders must be smaller than --nodes");
        return ExitCode::from(2);
    }
    let bin = match std::env::current_exe() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("noctua lab: cannot find the noctua binary: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut lab = match Lab::create(args.nodes, &args.dir, &bin) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("noctua lab: {e}");
            return ExitCode::FAILURE;
        }
    };
    let outsider_secret = format!("{}-outsider", args.secret);
    for i in 0..args.nodes {
        let secret = if i >= args.nodes - args.outsiders {
            &outsider_secret
        } else {
            &args.secret
        };
        if let Err(e) = lab.start(i, secret, &args.node_args) {
            eprintln!("noctua lab: {e}");
            lab.shutdown().await;
            return ExitCode::FAILURE;
        }
    }
    println!(
        "lab {}: {} nodes on 10.77.0.0/24 ({} outsider(s)), event logs in {}",
        lab.id(),
        args.nodes,
        args.outsiders,
        args.dir.display()
    );
    if args.duration.is_some() {
        println!(
            "commands: '<n> <command>' or 'all <command>'; Ctrl-C or the duration stops the lab"
        );
    } else {
        println!(
            "commands: '<n> <command>' or 'all <command>'; Ctrl-C or end of input stops the lab"
        );
    }

    let mut names: HashMap<String, String> = HashMap::new();
    let mut sessions: Vec<usize> = vec![0; args.nodes];
    let deadline = args.duration.map(|d| tokio::time::Instant::now() + d);
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    let mut stdin_open = true;
    loop {
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            ev = lab.next_event() => {
                let Some(ev) = ev else { break };
                let who = format!("node{}", ev.node);
                let peer = |ev: &LabEvent| {
                    let id = ev.str("peer_id");
                    names.get(id).cloned().unwrap_or_else(|| ev.str("name").to_string())
                };
                match ev.kind() {
                    "ready" => {
                        names.insert(ev.str("peer_id").to_string(), who.clone());
                        println!("{who}: ready at {} ({})", lab.ip(ev.node), ev.str("peer_id"));
                    }
                    "session_established" => {
                        sessions[ev.node] += 1;
                        println!("{who}: session with {} (safety {})", peer(&ev), ev.str("safety_number"));
                    }
                    "session_closed" => {
                        sessions[ev.node] = sessions[ev.node].saturating_sub(1);
                        println!("{who}: session with {} closed: {}", peer(&ev), ev.str("reason"));
                    }
                    "auth_failed" => println!("{who}: refused {} (wrong secret)", peer(&ev)),
                    "message" => println!("{who}: <{}> {}", peer(&ev), ev.str("text")),
                    "delivery_failed" => println!("{who}: not delivered to {}: {}", peer(&ev), ev.str("reason")),
                    "connect_failed" | "error" | "command_error" => println!("{who}: {}", ev.event),
                    "sessions" | "peers" => println!("{who}: {}", ev.event),
                    _ => {}
                }
            }
            line = stdin.next_line(), if stdin_open => match line {
                Ok(Some(line)) => {
                    let (target, cmd) = line.trim().split_once(' ').unwrap_or((line.trim(), ""));
                    let targets: Vec<usize> = if target == "all" {
                        (0..lab.len()).collect()
                    } else {
                        match target.parse::<usize>() {
                            Ok(i) if i < lab.len() => vec![i],
                            _ => {
                                println!("usage: <n> <command> or all <command> (n from 0 to {})", lab.len() - 1);
                                continue;
                            }
                        }
                    };
                    for i in targets {
                        if let Err(e) = lab.send(i, cmd).await {
                            println!("{e}");
                        }
                    }
                }
                // End of input ends a lab that has no --duration; with one, the lab runs on
                // (so that `noctua lab --duration 10m < /dev/null &` works).
                _ if deadline.is_none() => break,
                _ => stdin_open = false,
            },
            _ = sleep => break,
            _ = crate::terminal::shutdown_signal() => break,
        }
    }
    println!("stopping the lab...");
    lab.shutdown().await;
    for (i, n) in sessions.iter().enumerate() {
        println!("node{i}: {n} session(s) at the end");
    }
    let left = leftover_namespaces();
    if left.is_empty() {
        println!("lab removed: no namespace, link or process left");
        ExitCode::SUCCESS
    } else {
        eprintln!("noctua lab: could not remove {}", left.join(", "));
        ExitCode::FAILURE
    }
}
