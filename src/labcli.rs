//! `noctua lab`: the command around [`crate::lab::Lab`]: starts the nodes, prints what
//! they report, forwards commands typed on stdin, and tears everything down at the end.

use std::collections::HashMap;
use std::process::ExitCode;

use tokio::io::{AsyncBufReadExt, BufReader};

use crate::cli::LabArgs;
use crate::face::headless::{Event, EventLine};
use crate::face::shutdown_signal;
use crate::lab::{Lab, LabEvent, check, clean_stale, leftover_namespaces};

/// `noctua lab`: runs a lab until Ctrl-C, end of input or `--duration`, printing what
/// happens; returns a process exit code.
pub(crate) async fn run(args: LabArgs) -> ExitCode {
    let mut lab = match prepare(&args).await {
        Ok(Some(lab)) => lab,
        Ok(None) => return ExitCode::SUCCESS,
        Err(code) => return code,
    };
    let stop = if args.duration.is_some() {
        "Ctrl-C or the duration stops the lab"
    } else {
        "Ctrl-C or end of input stops the lab"
    };
    println!(
        "commands: '<n> <command>' or 'all <command>'; 'restart <n>', 'kill <n>', 'start <n>'; {stop}"
    );
    let secrets = secrets(&args);

    let mut printer = Printer {
        names: HashMap::new(),
        sessions: vec![0; args.nodes],
    };
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
                printer.print(&lab, &ev);
            }
            line = stdin.next_line(), if stdin_open => match line {
                Ok(Some(line)) => match lab_command(&line) {
                    Some((what, i)) => control(&mut lab, what, i, &secrets, &args.node_args).await,
                    None => forward(&mut lab, &line).await,
                },
                // End of input ends a lab that has no --duration; with one, the lab runs on
                // (so that `noctua lab --duration 10m < /dev/null &` works).
                _ if deadline.is_none() => break,
                _ => stdin_open = false,
            },
            _ = sleep => break,
            _ = shutdown_signal() => break,
        }
    }
    println!("stopping the lab...");
    lab.shutdown().await;
    for (i, n) in printer.sessions.iter().enumerate() {
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

/// Checks the machine, removes stale labs, creates the lab and starts its nodes. `None`
/// when there is nothing more to do (`--cleanup`); `Err` holds the exit code of a failure
/// already reported.
async fn prepare(args: &LabArgs) -> Result<Option<Lab>, ExitCode> {
    let fail = |e: &dyn std::fmt::Display| {
        eprintln!("noctua lab: {e}");
        ExitCode::FAILURE
    };
    check().map_err(|e| fail(&e))?;
    let stale = clean_stale();
    if stale > 0 {
        println!("removed {stale} namespace(s) left by an earlier lab");
    }
    if args.cleanup {
        return Ok(None);
    }
    if args.outsiders >= args.nodes {
        eprintln!("noctua lab: --outsiders must be smaller than --nodes");
        return Err(ExitCode::from(2));
    }
    let bin = std::env::current_exe()
        .map_err(|e| fail(&format!("cannot find the noctua binary: {e}")))?;
    let mut lab = Lab::create(args.nodes, &args.dir, &bin).map_err(|e| fail(&e))?;
    lab.set_profiles(args.profiles);
    for (i, secret) in secrets(args).iter().enumerate() {
        if let Err(e) = lab.start(i, secret, &args.node_args) {
            let code = fail(&e);
            lab.shutdown().await;
            return Err(code);
        }
    }
    for r in lab.raised_limits() {
        println!(
            "raised {} from {} to {} so that {} nodes fit in the host's neighbour table \
             (put back when the lab ends)",
            r.name, r.before, r.now, args.nodes
        );
    }
    println!(
        "lab {}: {} nodes on 10.77.0.0/24 ({} outsider(s)), event logs in {}",
        lab.id(),
        args.nodes,
        args.outsiders,
        args.dir.display()
    );
    Ok(Some(lab))
}

/// Each node's secret: the shared one, or the outsiders' for the last `--outsiders`.
fn secrets(args: &LabArgs) -> Vec<String> {
    let outsider_secret = format!("{}-outsider", args.secret);
    (0..args.nodes)
        .map(|i| {
            if i >= args.nodes - args.outsiders {
                outsider_secret.clone()
            } else {
                args.secret.clone()
            }
        })
        .collect()
}

/// A lab command: `restart <n>` (exit with goodbyes, start again: with `--profiles` the
/// node keeps its identity), `kill <n>` (SIGKILL, no goodbye), `start <n>`.
fn lab_command(line: &str) -> Option<(&str, usize)> {
    let mut words = line.split_whitespace();
    let what = words.next()?;
    let i = words.next()?.parse().ok()?;
    (matches!(what, "restart" | "kill" | "start") && words.next().is_none()).then_some((what, i))
}

async fn control(lab: &mut Lab, what: &str, i: usize, secrets: &[String], extra: &[String]) {
    if i >= lab.len() {
        println!("no node {i} (0 to {})", lab.len() - 1);
        return;
    }
    match what {
        "kill" => lab.kill(i).await,
        "restart" => lab.stop(i, std::time::Duration::from_secs(10)).await,
        _ => {}
    }
    if what != "kill"
        && let Err(e) = lab.start(i, &secrets[i], extra)
    {
        println!("{e}");
    }
}

/// Sends `<n> <command>` to node n, or `all <command>` to every node.
async fn forward(lab: &mut Lab, line: &str) {
    let (target, cmd) = line.trim().split_once(' ').unwrap_or((line.trim(), ""));
    let targets: Vec<usize> = if target == "all" {
        (0..lab.len()).collect()
    } else {
        match target.parse::<usize>() {
            Ok(i) if i < lab.len() => vec![i],
            _ => {
                println!(
                    "usage: <n> <command> or all <command> (n from 0 to {})",
                    lab.len() - 1
                );
                return;
            }
        }
    };
    for i in targets {
        if let Err(e) = lab.send(i, cmd).await {
            println!("{e}");
        }
    }
}

/// Prints what the nodes report, naming peers by their node number.
struct Printer {
    names: HashMap<String, String>,
    sessions: Vec<usize>,
}

impl Printer {
    fn peer(&self, peer_id: &str, name: &str) -> String {
        self.names
            .get(peer_id)
            .cloned()
            .unwrap_or_else(|| name.to_string())
    }

    fn print(&mut self, lab: &Lab, ev: &LabEvent) {
        let who = format!("node{}", ev.node);
        match &ev.event {
            Event::Ready { peer_id, .. } => {
                self.names.insert(peer_id.clone(), who.clone());
                println!("{who}: ready at {} ({peer_id})", lab.ip(ev.node));
            }
            Event::SessionEstablished {
                peer_id,
                name,
                safety_number,
                ..
            } => {
                self.sessions[ev.node] += 1;
                let peer = self.peer(peer_id, name);
                println!("{who}: session with {peer} (safety {safety_number})");
            }
            Event::SessionClosed {
                peer_id,
                name,
                reason,
            } => {
                self.sessions[ev.node] = self.sessions[ev.node].saturating_sub(1);
                let peer = self.peer(peer_id, name);
                println!("{who}: session with {peer} closed: {reason}");
            }
            Event::AuthFailed { peer_id, .. } => {
                println!("{who}: refused {} (wrong secret)", self.peer(peer_id, ""))
            }
            Event::Message {
                peer_id,
                name,
                text,
                ..
            } => println!("{who}: <{}> {text}", self.peer(peer_id, name)),
            Event::DeliveryFailed {
                peer_id,
                name,
                reason,
                ..
            } => println!(
                "{who}: not delivered to {}: {reason}",
                self.peer(peer_id, name)
            ),
            Event::Reconnecting {
                peer_id,
                name,
                attempt,
                next_in_ms,
            } => println!(
                "{who}: reconnecting to {} (attempt {attempt}, next in {} ms)",
                self.peer(peer_id, name),
                next_in_ms
            ),
            Event::Waiting { peer_id, name } => {
                println!(
                    "{who}: waiting for {} to reconnect",
                    self.peer(peer_id, name)
                )
            }
            Event::NotDelivered {
                peer_id,
                name,
                message,
                ..
            } => println!(
                "{who}: not delivered to {}: {message}",
                self.peer(peer_id, name)
            ),
            Event::ConnectFailed { .. }
            | Event::ReconnectStopped { .. }
            | Event::Disconnected { .. }
            | Event::Queued { .. }
            | Event::Error { .. }
            | Event::CommandError { .. }
            | Event::Sessions { .. }
            | Event::Peers { .. } => {
                let line = EventLine {
                    event: ev.event.clone(),
                    ts: ev.ts,
                };
                println!("{who}: {}", line.to_json());
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::lab_command;

    #[test]
    fn lab_commands_are_told_from_node_commands() {
        assert_eq!(lab_command("restart 2"), Some(("restart", 2)));
        assert_eq!(lab_command(" kill 0 "), Some(("kill", 0)));
        assert_eq!(lab_command("start 1"), Some(("start", 1)));
        // Node commands: forwarded.
        assert_eq!(lab_command("2 msg node1 hi"), None);
        assert_eq!(lab_command("restart two"), None);
        assert_eq!(lab_command("restart 1 now"), None);
        assert_eq!(lab_command("all sessions"), None);
    }
}
