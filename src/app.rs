//! From parsed flags to a running node and its face: logging, the runtime, the node's
//! configuration, and the exit status.

use std::io::IsTerminal;
use std::process::ExitCode;

use noctua_chat::{Secret, SecretError};
use tokio::sync::mpsc;

use crate::cli::{self, Args};
use crate::config::{self, ConfigError};
use crate::face::{headless, terminal};
use crate::logging::{self, LogError};
use crate::node::{Command, ListenError, Node, NodeConfig, Request, StartError};
use crate::profile::{self, Profile, ProfileError, SecretChoice};
use crate::sanitize;

/// Why `noctua` stopped with an error: one sentence on stderr, and an exit status.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The config file cannot be used (missing `--config` file, unknown key, bad value).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// `--new-secret` or `--data-dir` without a profile (from the flag or the config file).
    #[error("{0} needs a profile: give --profile NAME (or set profile in the config file)")]
    NeedsProfile(&'static str),
    /// Logging could not be set up (a bad `--log-level`, `RUST_LOG` or `--log-file`).
    #[error(transparent)]
    Logging(#[from] LogError),
    /// `--secret` is not a valid secret.
    #[error("invalid --secret: {0}")]
    Secret(#[from] SecretError),
    /// `--secret-file` cannot be used.
    #[error(transparent)]
    SecretFile(#[from] SecretFileError),
    /// The profile cannot be used (a bad name, its files' permissions, a corrupt file, in
    /// use by another noctua).
    #[error(transparent)]
    Profile(#[from] ProfileError),
    /// `--id` has nothing printable.
    #[error("invalid --id: it must contain printable characters")]
    Id,
    /// `--id` could not be typed as one word after `msg`, or reads as a peer number.
    #[error("invalid --id {0:?}: {1}")]
    IdShape(String, &'static str),
    /// The async runtime could not start.
    #[error("cannot start the runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// No default listen address.
    #[error(transparent)]
    Listen(#[from] ListenError),
    /// The node could not start.
    #[error(transparent)]
    Start(#[from] StartError),
    /// The port a profile's last run used (its connection string's port) is taken.
    #[error(
        "cannot listen on {addr}: address already in use; it is the port of profile \
         {profile}'s last run, so its connection string stays the same once that port is \
         free (or give --port N for another one: the string changes)"
    )]
    ProfilePortInUse {
        /// The address.
        addr: libp2p::Multiaddr,
        /// The profile's name.
        profile: String,
    },
    /// The face failed (the terminal could not be set up).
    #[error(transparent)]
    Face(#[from] std::io::Error),
}

impl RunError {
    /// 2 for a bad command line, 1 for anything else.
    pub fn exit_code(&self) -> ExitCode {
        match self {
            RunError::Config(_)
            | RunError::NeedsProfile(_)
            | RunError::Logging(_)
            | RunError::Secret(_)
            | RunError::SecretFile(_)
            | RunError::Id
            | RunError::IdShape(..)
            | RunError::Profile(ProfileError::BadName(_)) => ExitCode::from(2),
            _ => ExitCode::FAILURE,
        }
    }
}

/// Runs `noctua` with parsed flags: sets up logging away from the chat screen, starts the
/// node (which prints its banner at once; the RSA key is generated in the background) and
/// hands over to a face, the terminal or headless JSON; or runs `noctua lab`, or prints
/// completions or the man page.
pub fn main(mut args: Args) -> ExitCode {
    match &args.tool {
        Some(cli::Tool::Completions { shell }) => return print(&cli::completions(*shell)),
        Some(cli::Tool::Man) => {
            return match cli::man_page() {
                Ok(page) => print(&page),
                Err(e) => fail(&RunError::Face(e)),
            };
        }
        Some(cli::Tool::Lab(_)) => {}
        None => {
            if let Err(e) = resolve_flags(&mut args) {
                return fail(&e);
            }
        }
    }
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
            Ok(tally) => ExitCode::from(tally.exit_code()),
            Err(e) => fail(&e),
        }
    });
    // Background threads (RSA key generation) must not keep the process alive.
    runtime.shutdown_background();
    code
}

/// The flags as the node uses them: the command line over the config file, then the
/// checks that need both.
fn resolve_flags(args: &mut Args) -> Result<(), RunError> {
    config::apply(args)?;
    if args.profile.is_none() {
        if args.new_secret {
            return Err(RunError::NeedsProfile("--new-secret"));
        }
        if args.given("data_dir") {
            return Err(RunError::NeedsProfile("--data-dir"));
        }
    }
    Ok(())
}

/// Writes `bytes` (a completion script, the man page) to stdout. A reader that stops early
/// (`noctua man | head`) is not an error.
fn print(bytes: &[u8]) -> ExitCode {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("noctua: cannot write to stdout: {e}");
            ExitCode::FAILURE
        }
    }
}

fn fail(e: &RunError) -> ExitCode {
    eprintln!("noctua: {e}");
    e.exit_code()
}

async fn run(args: Args) -> Result<crate::face::Tally, RunError> {
    let cfg = node_config(&args)?;
    if let Some(warning) = cmdline_secret_warning(&args.secrets_on_command_line()) {
        eprintln!("noctua: warning: {warning}");
    }
    let (out_tx, out_rx) = mpsc::channel(1024);
    let (req_tx, req_rx) = mpsc::channel(64);
    // With a profile and no --port, the listen port is the stored one (node_config).
    let stored_port = cfg
        .profile
        .as_ref()
        .filter(|p| args.port == 0 && p.port().is_some())
        .map(|p| p.name().to_string());
    let node = match (Node::start(cfg, out_tx).await, stored_port) {
        (Ok(node), _) => node,
        (Err(StartError::InUse(addr)), Some(profile)) => {
            return Err(RunError::ProfilePortInUse { addr, profile });
        }
        (Err(e), _) => return Err(e.into()),
    };
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
    let given = match (&args.secret, &args.secret_file) {
        (_, Some(path)) => Some(read_secret_file(path)?),
        (Some(s), None) => Some(Secret::new(s.clone())?),
        (None, None) => None,
    };
    let profile = match &args.profile {
        Some(name) => {
            profile::check_name(name)?;
            let dir = profile::data_dir(args.data_dir.as_deref())?;
            let choice = match (&given, args.new_secret) {
                (_, true) => SecretChoice::New,
                (Some(s), false) => SecretChoice::Given(s.clone()),
                (None, false) => SecretChoice::Keep,
            };
            Some(Profile::open(&dir, name, choice)?)
        }
        None => None,
    };
    let secret = match (&profile, given) {
        (Some(p), _) => p.secret().clone(),
        (None, Some(s)) => s,
        (None, None) => Secret::generate(),
    };
    // Guessing is online only (SPEC.md §10), one guess per handshake within the limits, but
    // a weak user-chosen secret still falls to many addresses: say so, with SECURITY.md's rate.
    let bits = secret.strength_bits();
    if (args.secret.is_some() || args.secret_file.is_some()) && bits < 40 {
        eprintln!(
            "noctua: warning: this secret is weak (about {bits} bits): each address can test \
             about 600 guesses an hour against it (SECURITY.md); leave out --secret for a \
             generated one"
        );
    }
    let name = match &args.id {
        Some(id) => {
            let clean = sanitize::name(id);
            if clean.is_empty() {
                return Err(RunError::Id);
            }
            if let Some(why) = crate::node::name_problem(&clean) {
                return Err(RunError::IdShape(clean, why));
            }
            clean
        }
        None => format!("Peer_{}", random_hex(3)),
    };
    let listen = if args.listen.is_empty() {
        // With a profile, the port of the last run: the connection string stays the same.
        let port = match (&profile, args.port) {
            (Some(p), 0) => p.port().unwrap_or(0),
            (_, port) => port,
        };
        crate::node::default_listen(port)?
    } else {
        match profile.as_ref().and_then(Profile::port) {
            Some(port) => args.listen.iter().map(|a| with_port(a, port)).collect(),
            None => args.listen.clone(),
        }
    };
    let chat = noctua_chat::Config::new(secret.clone())
        .with_name(name.clone())
        .with_rsa_bits(args.rsa_bits)
        .with_rotate_every(args.rotate_every)
        .with_rotate_after_messages(args.rotate_after)
        .with_rsa_regenerate_every(Some(args.rsa_regenerate_every))
        .with_keepalive_interval(args.keepalive)
        .with_request_timeout(args.request_timeout)
        // PROFILE carries LASTING, so that with a lasting peer the safety number lasts.
        .with_lasting_identity(profile.is_some());
    Ok(NodeConfig {
        name,
        secret,
        listen,
        mdns: !args.no_mdns,
        auto_connect: args.auto_connect,
        chat,
        outbox_ttl: args.outbox_ttl,
        identity: profile.as_ref().map(|p| p.identity().clone()),
        profile,
    })
}

/// `addr` with a TCP or UDP port 0 ("any") replaced by `port`: with a profile, `--listen`
/// addresses without a port get the one of the last run, so the connection string stays.
fn with_port(addr: &libp2p::Multiaddr, port: u16) -> libp2p::Multiaddr {
    use libp2p::multiaddr::Protocol;
    addr.iter()
        .map(|p| match p {
            Protocol::Tcp(0) => Protocol::Tcp(port),
            Protocol::Udp(0) => Protocol::Udp(port),
            other => other,
        })
        .collect()
}

/// The one-line warning for secrets given on the command line (`flags` as returned by
/// [`Args::secrets_on_command_line`]), if any: every local user can read a process's
/// command line.
pub(crate) fn cmdline_secret_warning(flags: &[&str]) -> Option<String> {
    let (what, advice) = match flags {
        [] => return None,
        ["--secret"] => (
            "the secret given with --secret is",
            "use --secret-file (or NOCTUA_SECRET) instead",
        ),
        ["--connect"] => (
            "the peer's secret in --connect is",
            "type `connect` at the prompt (or on stdin) instead",
        ),
        _ => (
            "the secrets given with --secret and --connect are",
            "use --secret-file, and type `connect` at the prompt (or on stdin) instead",
        ),
    };
    Some(format!(
        "{what} on the command line, which other local users can read in /proc; {advice}"
    ))
}

/// Why `--secret-file` cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SecretFileError {
    /// The file cannot be read.
    #[error("cannot read --secret-file {path}: {source}")]
    Read {
        /// The path.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Group or other users may read it.
    #[error(
        "--secret-file {path} can be read by other users (mode {mode:03o}): run chmod 600 {path}"
    )]
    Readable {
        /// The path.
        path: String,
        /// Its permission bits.
        mode: u32,
    },
    /// Its content is not a valid secret.
    #[error("invalid secret in --secret-file {path}: {source}")]
    Invalid {
        /// The path.
        path: String,
        /// Why.
        source: SecretError,
    },
}

/// Longest secret file read (a secret has at most 256 characters; this leaves room for
/// a newline and rejects a mistaken path to a large file without reading it all).
const SECRET_FILE_MAX: u64 = 1024;

/// Reads our secret from `path`: the whole file, without one trailing newline (`\n` or
/// `\r\n`). On Unix, a file that its group or other users can read is refused, as ssh
/// refuses such a private key: whoever reads it can open sessions with us.
pub(crate) fn read_secret_file(path: &std::path::Path) -> Result<Secret, SecretFileError> {
    use std::io::Read;
    let shown = path.display().to_string();
    let read_err = |source| SecretFileError::Read {
        path: shown.clone(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_err)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = file.metadata().map_err(read_err)?.permissions().mode() & 0o777;
        if mode & 0o044 != 0 {
            return Err(SecretFileError::Readable { path: shown, mode });
        }
    }
    let mut text = String::new();
    file.take(SECRET_FILE_MAX)
        .read_to_string(&mut text)
        .map_err(read_err)?;
    let text = text
        .strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(&text);
    Secret::new(text).map_err(|source| SecretFileError::Invalid {
        path: shown,
        source,
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
    use super::*;

    fn file_with(name: &str, content: &[u8], mode: u32) -> std::path::PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = std::env::temp_dir().join(format!("noctua-unit-{}-{name}", std::process::id()));
        std::fs::write(&path, content).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        path
    }

    #[test]
    fn a_secret_file_loses_one_trailing_newline_and_nothing_else() {
        for (name, content, want) in [
            ("lf", &b"s3cret\n"[..], Some("s3cret")),
            ("crlf", b"s3cret\r\n", Some("s3cret")),
            ("bare", b"s3cret", Some("s3cret")),
            ("two", b"s3cret\n\n", None),
            ("space", b" s3cret\n", None),
            ("empty", b"\n", None),
        ] {
            let path = file_with(name, content, 0o600);
            let got = read_secret_file(&path);
            std::fs::remove_file(&path).expect("remove");
            match (got, want) {
                (Ok(s), Some(w)) => assert_eq!(s.expose(), w, "{name}"),
                (Err(SecretFileError::Invalid { .. }), None) => {}
                (other, _) => panic!("{name}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_secret_file_the_group_or_others_can_read_is_refused() {
        for mode in [0o640, 0o604, 0o644] {
            let path = file_with("mode", b"s3cret\n", mode);
            let got = read_secret_file(&path);
            std::fs::remove_file(&path).expect("remove");
            assert!(
                matches!(got, Err(SecretFileError::Readable { mode: m, .. }) if m == mode),
                "{mode:o}: {got:?}"
            );
        }
        let missing = std::env::temp_dir().join("noctua-unit-no-such-file");
        assert!(matches!(
            read_secret_file(&missing),
            Err(SecretFileError::Read { .. })
        ));
    }

    #[test]
    fn secrets_on_the_command_line_get_one_warning_that_names_the_way_out() {
        assert_eq!(cmdline_secret_warning(&[]), None);
        let one = cmdline_secret_warning(&["--secret"]).expect("a warning");
        assert!(
            one.contains("/proc") && one.contains("--secret-file"),
            "{one}"
        );
        let connect = cmdline_secret_warning(&["--connect"]).expect("a warning");
        assert!(
            connect.contains("type `connect` at the prompt"),
            "{connect}"
        );
        let both = cmdline_secret_warning(&["--secret", "--connect"]).expect("a warning");
        assert!(
            both.contains("--secret-file") && both.contains("`connect`"),
            "{both}"
        );
        assert_eq!(both.lines().count(), 1);
    }

    #[test]
    fn a_profile_port_fills_only_listen_ports_left_at_zero() {
        let any: libp2p::Multiaddr = "/ip4/127.0.0.1/udp/0/quic-v1".parse().expect("addr");
        let fixed: libp2p::Multiaddr = "/ip4/127.0.0.1/tcp/5000".parse().expect("addr");
        assert_eq!(
            with_port(&any, 4242).to_string(),
            "/ip4/127.0.0.1/udp/4242/quic-v1"
        );
        assert_eq!(with_port(&fixed, 4242), fixed);
    }

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
