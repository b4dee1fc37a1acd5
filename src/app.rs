//! From parsed flags to a running node and its face: logging, the runtime, the node's
//! configuration, and the exit status.

use std::io::IsTerminal;
use std::process::ExitCode;

use noctua_chat::{Secret, SecretError};
use tokio::sync::mpsc;

use crate::cli::{self, Args};
use crate::face::{headless, terminal};
use crate::logging::{self, LogError};
use crate::node::{Command, ListenError, Node, NodeConfig, Request, StartError};
use crate::sanitize;

/// Why `noctua` stopped with an error: one sentence on stderr, and an exit status.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Logging could not be set up (a bad `--log-level`, `RUST_LOG` or `--log-file`).
    #[error(transparent)]
    Logging(#[from] LogError),
    /// `--secret` is not a valid secret.
    #[error("invalid --secret: {0}")]
    Secret(#[from] SecretError),
    /// `--id` has nothing printable.
    #[error("invalid --id: it must contain printable characters")]
    Id,
    /// The async runtime could not start.
    #[error("cannot start the runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// No default listen address.
    #[error(transparent)]
    Listen(#[from] ListenError),
    /// The node could not start.
    #[error(transparent)]
    Start(#[from] StartError),
    /// The face failed (the terminal could not be set up).
    #[error(transparent)]
    Face(#[from] std::io::Error),
}

impl RunError {
    /// 2 for a bad command line, 1 for anything else.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            RunError::Logging(_) | RunError::Secret(_) | RunError::Id => ExitCode::from(2),
            _ => ExitCode::FAILURE,
        }
    }
}

/// Runs `noctua` with parsed flags: sets up logging away from the chat screen, starts the
/// node (which prints its banner at once; the RSA key is generated in the background) and
/// hands over to a face, the terminal or headless JSON; or runs `noctua lab`.
pub fn main(args: Args) -> ExitCode {
    let interactive =
        !args.headless && std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    let result = logging::init(&args, interactive)
        .map_err(RunError::from)
        .and_then(|()| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .map_err(RunError::Runtime)
        });
    let runtime = match result {
        Ok(rt) => rt,
        Err(e) => return fail(&e),
    };
    let code = runtime.block_on(async {
        if let Some(cli::Tool::Lab(lab_args)) = args.tool {
            return crate::labcli::run(lab_args).await;
        }
        match run(args).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&e),
        }
    });
    // Background threads (RSA key generation) must not keep the process alive.
    runtime.shutdown_background();
    code
}

fn fail(e: &RunError) -> ExitCode {
    eprintln!("noctua: {e}");
    e.exit_code()
}

async fn run(args: Args) -> Result<(), RunError> {
    let cfg = node_config(&args)?;
    let (out_tx, out_rx) = mpsc::channel(1024);
    let (req_tx, req_rx) = mpsc::channel(64);
    let node = Node::start(cfg, out_tx).await?;
    let ready = node.ready_output();
    let node_task = tokio::spawn(node.run(req_rx));
    for cs in args.connect {
        let _ = req_tx
            .send(Request::new(Command::Connect(Box::new(cs))))
            .await;
    }
    let face = if args.headless {
        headless::run(ready, req_tx, out_rx).await
    } else {
        terminal::run(ready, req_tx, out_rx).await
    };
    let _ = node_task.await;
    Ok(face?)
}

/// The node's configuration from the flags.
fn node_config(args: &Args) -> Result<NodeConfig, RunError> {
    let secret = match &args.secret {
        Some(s) => Secret::new(s.clone())?,
        None => Secret::generate(),
    };
    let name = match &args.id {
        Some(id) => {
            let clean = sanitize::name(id);
            if clean.is_empty() {
                return Err(RunError::Id);
            }
            clean
        }
        None => format!("Peer_{}", random_hex(3)),
    };
    let listen = if args.listen.is_empty() {
        crate::node::default_listen(args.port)?
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
    Ok(NodeConfig {
        name,
        secret,
        listen,
        mdns: !args.no_mdns,
        auto_connect: args.auto_connect,
        chat,
    })
}

/// `bytes` random bytes in lower-case hex (the default name's suffix; not a secret).
fn random_hex(bytes: usize) -> String {
    use rand::Rng;
    let mut b = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut b);
    base16ct::lower::encode_string(&b)
}

#[cfg(test)]
mod tests {
    use super::random_hex;

    #[test]
    fn default_names_get_six_hex_digits() {
        let h = random_hex(3);
        assert_eq!(h.len(), 6);
        assert!(
            h.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
    }
}
