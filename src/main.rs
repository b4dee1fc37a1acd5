//! `noctua`: a peer-to-peer, end-to-end encrypted chat node.
//!
//! `main` reads the command line, sets up logging away from the chat screen, starts the
//! node (which prints its banner at once; the RSA key is generated in the background) and
//! hands over to a face: the terminal, or headless JSON for scripts and labs.

mod cli;
mod commands;
mod connstr;
mod headless;
mod lab;
mod labcli;
mod node;
mod render;
mod sanitize;
mod terminal;

use std::io::IsTerminal;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, UdpSocket};
use std::process::ExitCode;

use clap::Parser;
use libp2p::Multiaddr;
use noctua_chat::Secret;
use tokio::sync::mpsc;

use crate::cli::Args;
use crate::commands::Line;
use crate::node::{Command, Node, NodeConfig, Request};

fn main() -> ExitCode {
    let args = Args::parse();
    let interactive =
        !args.headless && std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    if let Err(e) = init_logging(&args, interactive) {
        eprintln!("noctua: {e}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("noctua: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(run(args));
    // Background threads (RSA key generation) must not keep the process alive.
    runtime.shutdown_background();
    code
}

async fn run(args: Args) -> ExitCode {
    if let Some(cli::Tool::Lab(lab_args)) = args.tool {
        return labcli::run(lab_args).await;
    }
    let secret = match &args.secret {
        Some(s) => match Secret::new(s.clone()) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("noctua: invalid --secret: {e}");
                return ExitCode::from(2);
            }
        },
        None => Secret::generate(),
    };
    let name = match &args.id {
        Some(id) => {
            let clean = sanitize::name(id);
            if clean.is_empty() {
                eprintln!("noctua: invalid --id: it must contain printable characters");
                return ExitCode::from(2);
            }
            clean
        }
        None => format!("Peer_{}", random_hex(3)),
    };
    let listen = if args.listen.is_empty() {
        match default_listen(args.port) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("noctua: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        args.listen.clone()
    };
    let chat = noctua_chat::Config::new(secret.clone())
        .with_name(name.clone())
        .with_rsa_bits(args.rsa_bits)
        .with_rotate_every(args.rotate_every)
        .with_rotate_after_messages(args.rotate_after)
        .with_rsa_regenerate_every(Some(args.rsa_regenerate_every))
        .with_keepalive_interval(args.keepalive)
        .with_request_timeout(args.request_timeout);
    let (out_tx, out_rx) = mpsc::channel(1024);
    let (req_tx, req_rx) = mpsc::channel(64);
    let cfg = NodeConfig {
        name,
        secret,
        listen,
        mdns: !args.no_mdns,
        auto_connect: args.auto_connect,
        chat,
    };
    let node = match Node::start(cfg, out_tx).await {
        Ok(n) => n,
        Err(e) => {
            eprintln!("noctua: {e}");
            return ExitCode::FAILURE;
        }
    };
    let ready = node.ready_output();
    let node_task = tokio::spawn(node.run(req_rx));
    for cs in args.connect {
        let _ = req_tx
            .send(Request {
                command: Command::Line(Line::Connect(Box::new(cs))),
                done: None,
            })
            .await;
    }
    let face = if args.headless {
        headless::run(ready, req_tx, out_rx).await
    } else {
        terminal::run(ready, req_tx, out_rx).await
    };
    let _ = node_task.await;
    match face {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("noctua: {e}");
            ExitCode::FAILURE
        }
    }
}

/// TCP and QUIC on every IPv4 interface, on `port` (or on one free port for both).
fn default_listen(port: u16) -> Result<Vec<Multiaddr>, String> {
    let port = if port == 0 { free_port()? } else { port };
    Ok(vec![
        format!("/ip4/0.0.0.0/tcp/{port}")
            .parse()
            .map_err(|e| format!("bad address: {e}"))?,
        format!("/ip4/0.0.0.0/udp/{port}/quic-v1")
            .parse()
            .map_err(|e| format!("bad address: {e}"))?,
    ])
}

/// A port free for both TCP and UDP, so that one `host:port` reaches both transports.
fn free_port() -> Result<u16, String> {
    for _ in 0..20 {
        let tcp = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0))
            .map_err(|e| format!("cannot find a free port: {e}"))?;
        let port = tcp
            .local_addr()
            .map_err(|e| format!("cannot find a free port: {e}"))?
            .port();
        if UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port)).is_ok() {
            return Ok(port);
        }
    }
    Err("cannot find a port free for both TCP and UDP".into())
}

fn random_hex(bytes: usize) -> String {
    use rand::Rng;
    let mut b = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// `directives` plus [`noctua_chat::LOG_DIRECTIVES`] (which keep a peer's stream flood from
/// writing one libp2p warning per stream), unless they name libp2p-request-response.
fn with_quiet_libp2p(directives: &str) -> String {
    if directives.contains("libp2p_request_response") {
        directives.to_owned()
    } else {
        format!("{directives},{}", noctua_chat::LOG_DIRECTIVES)
    }
}

fn init_logging(args: &Args, interactive: bool) -> Result<(), String> {
    use tracing_subscriber::EnvFilter;
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.is_empty() => {
            EnvFilter::try_new(&v).map_err(|e| format!("invalid RUST_LOG {v:?}: {e}"))?
        }
        _ => {
            const LEVELS: [&str; 6] = ["error", "warn", "info", "debug", "trace", "off"];
            // A bare word must be a level: `loud` would otherwise be taken as a log target.
            let bad = args.log_level.split(',').any(|d| {
                let d = d.trim();
                !d.contains('=') && !LEVELS.contains(&d.to_ascii_lowercase().as_str())
            });
            if bad {
                return Err(format!(
                    "invalid --log-level {:?}: use error, warn, info, debug, trace or off, \
                     or directives like noctua_chat=debug,info",
                    args.log_level
                ));
            }
            EnvFilter::try_new(with_quiet_libp2p(&args.log_level)).map_err(|e| {
                format!(
                    "invalid --log-level {:?}: use error, warn, info, debug, trace or off, \
                 or RUST_LOG-style directives ({e})",
                    args.log_level
                )
            })?
        }
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if let Some(path) = &args.log_file {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| format!("cannot open log file {}: {e}", path.display()))?;
        builder
            .with_ansi(false)
            .with_writer(std::sync::Mutex::new(file))
            .init();
    } else if interactive {
        // stderr is the chat screen: log nothing there.
    } else {
        builder.with_writer(std::io::stderr).init();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::with_quiet_libp2p;

    #[test]
    fn libp2p_stream_warnings_are_capped_unless_asked_for() {
        assert_eq!(
            with_quiet_libp2p("warn"),
            format!("warn,{}", noctua_chat::LOG_DIRECTIVES)
        );
        assert_eq!(
            with_quiet_libp2p("info,libp2p_request_response=debug"),
            "info,libp2p_request_response=debug"
        );
        assert!(
            tracing_subscriber::EnvFilter::try_new(with_quiet_libp2p("debug")).is_ok(),
            "the directives parse"
        );
    }
}
