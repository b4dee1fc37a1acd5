//! The command line. `noctua --help` is the reference; every flag is documented here.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::LazyLock;
use std::time::Duration;

use clap::{CommandFactory, Parser};
use libp2p::Multiaddr;

use crate::connstr::ConnString;

/// Noctua: peer-to-peer, end-to-end encrypted chat on the LAN.
///
/// Start it, share the connection string it prints (host:port:secret), and connect to
/// others with `connect <their string>` (or start with `noctua <their string>`). Peers on
/// the same LAN are found by mDNS and listed by `peers`. Type `help` inside for the
/// commands; a line starting with `/` is always a command, any other line is chat unless it
/// is exactly a command. A message is at most 64 KiB.
///
/// Defaults for the flags can be kept in a TOML config file (see --config); flags given on
/// the command line win over it.
///
/// Exit status: 0 when all went well; 1 when the node could not start (e.g. its port is in
/// use); 2 for a bad command line or config file; with piped input or --headless, 3 when a
/// connect or another command failed, else 4 when a message was not delivered.
#[derive(Debug, Parser)]
#[command(
    name = "noctua",
    version = version(),
    about,
    long_about,
    max_term_width = 100,
    args_conflicts_with_subcommands = true
)]
pub struct Args {
    /// Tools besides the chat node itself
    #[command(subcommand)]
    pub tool: Option<Tool>,

    /// Display name shown to peers [default: Peer_ and 6 random hex digits]
    #[arg(long, value_name = "NAME")]
    pub id: Option<String>,

    /// Port for TCP and QUIC (UDP); 0 or absent picks a free port (with --profile: the port
    /// of the last run)
    #[arg(short, long, value_name = "PORT", default_value_t = 0)]
    pub port: u16,

    /// Listen on this multiaddr instead of every interface (repeatable), e.g.
    /// /ip4/127.0.0.1/tcp/5000 or /ip4/0.0.0.0/udp/5000/quic-v1 [default: TCP and QUIC on
    /// every IPv4 and IPv6 interface]
    #[arg(long, value_name = "MULTIADDR", value_parser = parse_listen)]
    pub listen: Vec<Multiaddr>,

    /// Connection secret others need to reach you (1-256 characters, no ':' or spaces)
    /// [default: 60 random bits, as xxxx-xxxx-xxxx]
    #[arg(
        long,
        value_name = "SECRET",
        env = "NOCTUA_SECRET",
        hide_env_values = true
    )]
    pub secret: Option<String>,

    /// Read our connection secret from this file (one trailing newline is ignored). Unlike
    /// --secret, it does not show in the process list; the file should be readable by
    /// its owner only (chmod 600)
    #[arg(long, value_name = "PATH", conflicts_with = "secret")]
    pub secret_file: Option<PathBuf>,

    /// Keep this identity between runs: the libp2p key, the connection secret, the port and
    /// the known peers are stored under DATA_DIR/profiles/NAME (files 0600 in a 0700
    /// directory), so the node comes back with the same PeerId and connection string.
    /// Messages are never stored. NAME: 1-64 letters, digits, '.', '_' or '-' [default:
    /// none: a new identity at every start, nothing stored]
    #[arg(long, value_name = "NAME")]
    pub profile: Option<String>,

    /// Where profiles are kept [default: $XDG_DATA_HOME/noctua, else
    /// ~/.local/share/noctua]
    // Needs a profile, which the config file may give: checked once it is read.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Replace the profile's stored secret with a new one: connection strings given out
    /// before stop working (`new-secret` does the same while running)
    // Needs a profile, which the config file may give: checked once it is read.
    #[arg(long, conflicts_with_all = ["secret", "secret_file"])]
    pub new_secret: bool,

    /// Do not discover or announce peers on the LAN with mDNS
    #[arg(long, overrides_with = "mdns")]
    pub no_mdns: bool,

    /// Discover and announce peers on the LAN with mDNS (the default; this overrides
    /// `mdns = false` in the config file)
    #[arg(long, overrides_with = "no_mdns")]
    pub mdns: bool,

    /// Open sessions to every peer discovered by mDNS, using our own secret (for labs
    /// where every node shares one secret)
    #[arg(long)]
    pub auto_connect: bool,

    /// Connect to this connection string at start (repeatable)
    #[arg(long, value_name = "HOST:PORT:SECRET")]
    pub connect: Vec<ConnString>,

    /// Connection strings to connect to at start, as with --connect
    #[arg(value_name = "HOST:PORT:SECRET")]
    pub targets: Vec<ConnString>,

    /// Rotate session keys this often, e.g. 30m, 90s, 1h
    #[arg(long, value_name = "DURATION", default_value = "30m", value_parser = parse_duration)]
    pub rotate_every: Duration,

    /// Also rotate after this many messages in a session epoch
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub rotate_after: u64,

    /// RSA key size: 2048 or 3072 (4096 accepted)
    #[arg(long, value_name = "BITS", default_value_t = 2048, value_parser = parse_rsa_bits)]
    pub rsa_bits: usize,

    /// Regenerate the RSA key pair this often (forward secrecy across epochs)
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = parse_duration)]
    pub rsa_regenerate_every: Duration,

    /// Check a quiet session with a keep-alive after this long; a peer that does not
    /// answer within --request-timeout is considered gone
    #[arg(long, value_name = "DURATION", default_value = "15s", value_parser = parse_duration)]
    pub keepalive: Duration,

    /// Time a peer has to answer a request (handshake step, message, keep-alive)
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub request_timeout: Duration,

    /// How long a message for a peer that is reconnecting waits in memory before it is
    /// reported as not delivered
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = parse_duration)]
    pub outbox_ttl: Duration,

    /// No prompt, no colors: commands on stdin, one JSON event per line on stdout
    #[arg(long, alias = "json")]
    pub headless: bool,

    /// Log level: error, warn, info, debug, trace or off, or directives like
    /// `noctua_chat=debug,info` (RUST_LOG, if set, takes precedence). libp2p's per-stream
    /// "at capacity" warnings are capped at error unless libp2p_request_response is named
    #[arg(long, value_name = "LEVEL", default_value = "warn")]
    pub log_level: String,

    /// Write logs to this file. Without it, logs go to stderr, except in the interactive
    /// terminal where stderr is the chat screen: there they are only written with
    /// --log-file.
    #[arg(long, value_name = "PATH")]
    pub log_file: Option<PathBuf>,

    /// Read defaults for flags from this TOML file: one key per flag, named as the flag
    /// without its dashes, e.g. `port = 4001`, `mdns = false`, `log-level = "info"`
    /// (README, "Config file"); flags given here win. A missing file given here is an error
    /// [default: $XDG_CONFIG_HOME/noctua/config.toml, else ~/.config/noctua/config.toml,
    /// read if it exists]
    #[arg(
        long,
        value_name = "PATH",
        env = "NOCTUA_CONFIG",
        hide_env_values = true
    )]
    pub config: Option<PathBuf>,

    /// Read no config file, not even the default one
    #[arg(long)]
    pub no_config: bool,

    /// The flags given on the command line itself (clap ids, e.g. `port`, `log_level`):
    /// they win over the config file. Set by [`Args::from_env`].
    #[arg(skip)]
    pub on_command_line: BTreeSet<String>,

    /// Whether `--secret` was given on the command line itself (not through
    /// `NOCTUA_SECRET`), where every local user can read it. Set by [`Args::from_env`].
    #[arg(skip)]
    pub secret_on_command_line: bool,
}

impl Args {
    /// Parses the process's arguments like [`Parser::parse`] (printing help or an error and
    /// exiting when they say so), and notes where the secret came from.
    pub fn from_env() -> Args {
        Args::from_matches(&Args::command().get_matches()).unwrap_or_else(|e| e.exit())
    }

    /// Parses `argv` (the program name first) as [`Args::from_env`] does, returning clap's
    /// error instead of exiting.
    pub fn try_from_iter<I, T>(argv: I) -> Result<Args, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        Args::from_matches(&Args::command().try_get_matches_from(argv)?)
    }

    fn from_matches(matches: &clap::ArgMatches) -> Result<Args, clap::Error> {
        use clap::FromArgMatches;
        use clap::parser::ValueSource;
        let mut args = Args::from_arg_matches(matches)?;
        args.secret_on_command_line =
            matches.value_source("secret") == Some(ValueSource::CommandLine);
        args.on_command_line = matches
            .ids()
            .filter(|id| matches.value_source(id.as_str()) == Some(ValueSource::CommandLine))
            .map(|id| id.as_str().to_string())
            .collect();
        // `noctua HOST:PORT:SECRET`, as croc and wormhole take their code.
        let targets = std::mem::take(&mut args.targets);
        args.connect.extend(targets);
        Ok(args)
    }

    /// Whether flag `id` (its clap id, e.g. `port` or `log_level`) was given on the
    /// command line itself, so that the config file must not change it.
    pub fn given(&self, id: &str) -> bool {
        self.on_command_line.contains(id)
    }

    /// The flags that put a secret on the command line, where other local users can read
    /// it (`/proc/PID/cmdline`, `ps`): `--secret` (not `NOCTUA_SECRET`) and `--connect`
    /// (a connection string always carries the peer's secret).
    pub fn secrets_on_command_line(&self) -> Vec<&'static str> {
        let mut flags = Vec::new();
        if self.secret_on_command_line {
            flags.push("--secret");
        }
        if !self.connect.is_empty() {
            flags.push("--connect");
        }
        flags
    }
}

/// Subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Tool {
    /// Run N nodes on this machine, each in its own network namespace on a shared bridge,
    /// with mDNS and auto-connect on; collect their headless event logs; tear everything
    /// down at the end (also on Ctrl-C). Needs root, iproute2 and util-linux.
    ///
    /// While it runs, lines on stdin are commands for the nodes: `<n> <command>` for node n
    /// (0-based), `all <command>` for every node, e.g. `all hello` or `2 sessions`.
    Lab(LabArgs),

    /// Print a completion script for a shell on stdout, e.g. `noctua completions bash >
    /// ~/.local/share/bash-completion/completions/noctua` (README, "Shell completions and
    /// man page")
    Completions {
        /// The shell
        #[arg(value_name = "SHELL")]
        shell: clap_complete::Shell,
    },

    /// Print the manual page (roff) on stdout, e.g. `noctua man > noctua.1`
    Man,
}

/// The version `noctua --version` prints: the package's, and the chat protocol it speaks
/// (taken from `noctua-chat`, so the two cannot disagree), e.g. `0.1.0 (protocol
/// /noctua/chat/2.0.0)`.
pub fn version() -> &'static str {
    static VERSION: LazyLock<String> = LazyLock::new(|| {
        format!(
            "{} (protocol {})",
            env!("CARGO_PKG_VERSION"),
            noctua_chat::PROTOCOL.as_ref()
        )
    });
    VERSION.as_str()
}

/// The command-line definition, as `--help` shows it (for completions and the man page).
pub fn command() -> clap::Command {
    Args::command()
}

/// The completion script for `shell`.
pub fn completions(shell: clap_complete::Shell) -> Vec<u8> {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut command(), "noctua", &mut out);
    out
}

/// The manual page, noctua(1), in roff.
pub fn man_page() -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    clap_mangen::Man::new(command()).render(&mut out)?;
    Ok(out)
}

/// Options of `noctua lab`.
#[derive(Debug, clap::Args)]
pub struct LabArgs {
    /// Number of nodes
    #[arg(long, short = 'n', default_value_t = 5)]
    pub nodes: usize,

    /// The secret every node shares
    #[arg(long, default_value = "noctua-lab")]
    pub secret: String,

    /// Give this many nodes (the last ones) a different secret: they are discovered but
    /// must not be admitted
    #[arg(long, default_value_t = 0)]
    pub outsiders: usize,

    /// Directory for the per-node event logs (nodeN.jsonl) and logs (nodeN.log)
    #[arg(long, default_value = "noctua-lab-logs")]
    pub dir: PathBuf,

    /// Stop after this long (e.g. 60s), or at Ctrl-C; end of input does not stop it then.
    /// Without it, run until Ctrl-C or end of input
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,

    /// Extra arguments for every node, e.g. --node-arg=--rotate-every=1m
    #[arg(long = "node-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub node_args: Vec<String>,

    /// Only remove namespaces left behind by labs that were killed, then exit
    #[arg(long)]
    pub cleanup: bool,

    /// Give every node a profile of its own under the lab directory, so that a node
    /// restarted in the lab (`restart <n>`) keeps its identity and its known peers
    #[arg(long)]
    pub profiles: bool,
}

/// A command-line value that does not parse; clap prints it after the flag's name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    /// Not a number followed by a unit.
    #[error("{0:?} is not a duration like 500ms, 90s, 30m or 1h")]
    NotADuration(String),
    /// A unit other than ms, s, m, h.
    #[error("unknown unit {unit:?} in {input:?}: use ms, s, m or h")]
    UnknownUnit {
        /// The unit.
        unit: String,
        /// The whole value.
        input: String,
    },
    /// A number without a unit (is `30` seconds or minutes?).
    #[error("{0:?} needs a unit: {0}s, {0}m or {0}h (or {0}ms)")]
    NoUnit(String),
    /// Not a multiaddr.
    #[error(
        "{0:?} is not a multiaddr: write e.g. /ip4/127.0.0.1/tcp/5000 for TCP on 127.0.0.1 \
         port 5000, or /ip6/::1/udp/5000/quic-v1 for QUIC on ::1"
    )]
    NotAMultiaddr(String),
    /// Under 10 ms.
    #[error("{0:?} is too short (at least 10ms)")]
    TooShort(String),
    /// Not an RSA size the protocol accepts.
    #[error("{0:?} is not a supported RSA size: use 2048, 3072 or 4096")]
    RsaBits(String),
}

/// Parses `500ms`, `90s`, `30m`, `1h`. A bare number is refused: `30` could mean seconds
/// or minutes.
pub fn parse_duration(s: &str) -> Result<Duration, ValueError> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| ValueError::NotADuration(s.to_string()))?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "" => return Err(ValueError::NoUnit(s.to_string())),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        _ => {
            return Err(ValueError::UnknownUnit {
                unit: unit.to_string(),
                input: s.to_string(),
            });
        }
    };
    if d < Duration::from_millis(10) {
        return Err(ValueError::TooShort(s.to_string()));
    }
    Ok(d)
}

/// A listen address, with an example when it is not a multiaddr (`127.0.0.1:5000`).
pub(crate) fn parse_listen(s: &str) -> Result<Multiaddr, ValueError> {
    s.trim()
        .parse()
        .map_err(|_| ValueError::NotAMultiaddr(s.to_string()))
}

pub(crate) fn parse_rsa_bits(s: &str) -> Result<usize, ValueError> {
    match s.parse::<usize>() {
        Ok(b) if noctua_chat::ACCEPTED_RSA_BITS.contains(&b) => Ok(b),
        _ => Err(ValueError::RsaBits(s.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(
            parse_duration("30"),
            Err(ValueError::NoUnit("30".into())),
            "seconds or minutes? (issue 11)"
        );
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("m").is_err());
        assert!(parse_duration("1ms").is_err());
    }

    #[test]
    fn cli_is_consistent() {
        use clap::CommandFactory;
        Args::command().debug_assert();
    }

    #[test]
    fn rsa_sizes() {
        assert_eq!(parse_rsa_bits("3072"), Ok(3072));
        assert!(parse_rsa_bits("1024").is_err());
    }
}
