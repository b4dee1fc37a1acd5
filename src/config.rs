//! The config file: defaults for the flags a person keeps giving (`--id`, `--port`,
//! `--profile`, `--log-level`...), in TOML, one key per flag under the flag's name:
//!
//! ```toml
//! id = "alice"
//! port = 4001
//! mdns = false
//! rotate-every = "1h"
//! log-level = "info"
//! profile = "home"
//! ```
//!
//! It is `--config PATH` (or `NOCTUA_CONFIG`), which must exist, else the platform's
//! config file, read only if it exists: `$XDG_CONFIG_HOME/noctua/config.toml`, else
//! `~/.config/noctua/config.toml` (on macOS `~/Library/Application Support/noctua/
//! config.toml`, beside the profiles' directory). `--no-config` reads none. A flag given on
//! the command line wins over the file. An unknown key or a bad value is refused with one
//! line naming the file and the line, before anything starts.
//!
//! The secret is deliberately not a key: a file of defaults is not kept like a secret
//! (use `--secret-file` or a profile). The directory logic is the same ten lines as the
//! profiles' data directory ([`crate::profile::data_dir`]) rather than a crate.

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

use libp2p::Multiaddr;
use toml::{Spanned, Value};

use crate::cli::{self, Args};

/// Longest config file read: a file of a dozen defaults is well under 1 KiB, and a mistaken
/// path to a large file is refused without reading it all.
const MAX_LEN: u64 = 64 * 1024;

/// The keys, as written in the file (the flags' names without `--`).
pub const KEYS: [&str; 15] = [
    "id",
    "port",
    "listen",
    "mdns",
    "profile",
    "data-dir",
    "rotate-every",
    "rotate-after",
    "rsa-bits",
    "rsa-regenerate-every",
    "keepalive",
    "request-timeout",
    "outbox-ttl",
    "log-level",
    "log-file",
];

/// Why the config file cannot be used. `Display` is one line naming the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read (for `--config`, also when it does not exist).
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The path.
        path: String,
        /// Why.
        source: io::Error,
    },
    /// The file is larger than any config file.
    #[error("config file {path} is over 64 KiB: not a noctua config file")]
    TooLarge {
        /// The path.
        path: String,
    },
    /// Bad TOML, an unknown key or a bad value.
    #[error("{path} line {line}: {why}")]
    At {
        /// The path.
        path: String,
        /// 1-based line of the problem.
        line: usize,
        /// What is wrong, and what is expected.
        why: String,
    },
}

/// The defaults a config file sets; `None` where it sets nothing.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Settings {
    /// `id`: `--id`.
    pub id: Option<String>,
    /// `port`: `--port`.
    pub port: Option<u16>,
    /// `listen`: `--listen`, a list.
    pub listen: Option<Vec<Multiaddr>>,
    /// `mdns`: `false` is `--no-mdns`.
    pub mdns: Option<bool>,
    /// `profile`: `--profile`.
    pub profile: Option<String>,
    /// `data-dir`: `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `rotate-every`: `--rotate-every`.
    pub rotate_every: Option<Duration>,
    /// `rotate-after`: `--rotate-after`.
    pub rotate_after: Option<u64>,
    /// `rsa-bits`: `--rsa-bits`.
    pub rsa_bits: Option<usize>,
    /// `rsa-regenerate-every`: `--rsa-regenerate-every`.
    pub rsa_regenerate_every: Option<Duration>,
    /// `keepalive`: `--keepalive`.
    pub keepalive: Option<Duration>,
    /// `request-timeout`: `--request-timeout`.
    pub request_timeout: Option<Duration>,
    /// `outbox-ttl`: `--outbox-ttl`.
    pub outbox_ttl: Option<Duration>,
    /// `log-level`: `--log-level`.
    pub log_level: Option<String>,
    /// `log-file`: `--log-file`.
    pub log_file: Option<PathBuf>,
}

/// The platform's config file, from `XDG_CONFIG_HOME` and `HOME` (relative values are
/// ignored, as the XDG spec says); `None` without either.
pub fn default_path() -> Option<PathBuf> {
    default_path_from(
        std::env::var_os("XDG_CONFIG_HOME"),
        std::env::var_os("HOME"),
    )
}

fn default_path_from(
    xdg: Option<std::ffi::OsString>,
    home: Option<std::ffi::OsString>,
) -> Option<PathBuf> {
    let absolute = |v: Option<std::ffi::OsString>| v.map(PathBuf::from).filter(|p| p.is_absolute());
    let dir = match (absolute(xdg), absolute(home)) {
        (Some(x), _) if !cfg!(target_os = "macos") => x,
        (_, Some(h)) if cfg!(target_os = "macos") => h.join("Library/Application Support"),
        (_, Some(h)) => h.join(".config"),
        _ => return None,
    };
    Some(dir.join("noctua").join("config.toml"))
}

/// Reads the config file `args` point at (`--config`, else the default one unless
/// `--no-config`) and fills in every flag that was not given on the command line. Returns
/// the file read, if any.
pub fn apply(args: &mut Args) -> Result<Option<PathBuf>, ConfigError> {
    if args.no_config {
        return Ok(None);
    }
    let (path, explicit) = match &args.config {
        Some(p) => (p.clone(), true),
        None => match default_path() {
            Some(p) => (p, false),
            None => return Ok(None),
        },
    };
    let text = match read(&path) {
        Ok(text) => text,
        Err(ConfigError::Read { source, .. })
            if !explicit && source.kind() == io::ErrorKind::NotFound =>
        {
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    let settings = parse(&path, &text, std::env::var_os("HOME").map(PathBuf::from))?;
    settings.apply_to(args);
    Ok(Some(path))
}

fn read(path: &Path) -> Result<String, ConfigError> {
    let shown = path.display().to_string();
    let read_err = |source| ConfigError::Read {
        path: shown.clone(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_err)?;
    if file.metadata().map_err(read_err)?.is_dir() {
        return Err(read_err(io::Error::other("it is a directory")));
    }
    let mut text = String::new();
    file.take(MAX_LEN + 1)
        .read_to_string(&mut text)
        .map_err(read_err)?;
    if text.len() as u64 > MAX_LEN {
        return Err(ConfigError::TooLarge { path: shown });
    }
    Ok(text)
}

/// Parses a config file's `text` (read from `path`, which names it in errors and anchors
/// relative paths; `home` expands a leading `~/`).
pub fn parse(path: &Path, text: &str, home: Option<PathBuf>) -> Result<Settings, ConfigError> {
    let at = |offset: usize, why: String| ConfigError::At {
        path: path.display().to_string(),
        line: line_of(text, offset),
        why,
    };
    let mut entries: Vec<(Spanned<String>, Spanned<Value>)> =
        toml::from_str::<std::collections::BTreeMap<Spanned<String>, Spanned<Value>>>(text)
            .map_err(|e| {
                let why = e.message().lines().next().unwrap_or("invalid TOML").trim();
                at(e.span().map_or(0, |s| s.start), why.to_string())
            })?
            .into_iter()
            .collect();
    // Report the first problem in the file, not the first in key order.
    entries.sort_by_key(|(k, _)| k.span().start);
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut s = Settings::default();
    for (key, value) in &entries {
        let name = key.get_ref().as_str();
        let v = value.get_ref();
        let bad = |why: String| at(value.span().start, format!("{name}: {why}"));
        match name {
            "id" => s.id = Some(id(string(v).map_err(&bad)?).map_err(&bad)?),
            "port" => s.port = Some(port(v).map_err(&bad)?),
            "listen" => s.listen = Some(listen(v).map_err(&bad)?),
            "mdns" => s.mdns = Some(boolean(v).map_err(&bad)?),
            "profile" => {
                let p = string(v).map_err(&bad)?;
                crate::profile::check_name(p).map_err(|e| bad(e.to_string()))?;
                s.profile = Some(p.to_string());
            }
            "data-dir" => s.data_dir = Some(path_value(v, &base, &home).map_err(&bad)?),
            "rotate-every" => s.rotate_every = Some(duration(v).map_err(&bad)?),
            "rotate-after" => s.rotate_after = Some(count(v).map_err(&bad)?),
            "rsa-bits" => s.rsa_bits = Some(rsa_bits(v).map_err(&bad)?),
            "rsa-regenerate-every" => s.rsa_regenerate_every = Some(duration(v).map_err(&bad)?),
            "keepalive" => s.keepalive = Some(duration(v).map_err(&bad)?),
            "request-timeout" => s.request_timeout = Some(duration(v).map_err(&bad)?),
            "outbox-ttl" => s.outbox_ttl = Some(duration(v).map_err(&bad)?),
            "log-level" => s.log_level = Some(log_level(v).map_err(&bad)?),
            "log-file" => s.log_file = Some(path_value(v, &base, &home).map_err(&bad)?),
            other => return Err(at(key.span().start, unknown_key(other))),
        }
    }
    Ok(s)
}

impl Settings {
    /// Fills in every flag of `args` that the file sets and the command line did not give.
    pub fn apply_to(&self, args: &mut Args) {
        fn set<T: Clone>(given: bool, from: &Option<T>, to: &mut T) {
            if let (false, Some(v)) = (given, from) {
                *to = v.clone();
            }
        }
        fn set_opt<T: Clone>(given: bool, from: &Option<T>, to: &mut Option<T>) {
            if let (false, Some(v)) = (given, from) {
                *to = Some(v.clone());
            }
        }
        set_opt(args.given("id"), &self.id, &mut args.id);
        set(args.given("port"), &self.port, &mut args.port);
        set(args.given("listen"), &self.listen, &mut args.listen);
        // `--mdns` and `--no-mdns` override each other; either one beats the file.
        let mdns_given = args.given("mdns") || args.given("no_mdns");
        if let (false, Some(on)) = (mdns_given, self.mdns) {
            args.no_mdns = !on;
        }
        set_opt(args.given("profile"), &self.profile, &mut args.profile);
        set_opt(args.given("data_dir"), &self.data_dir, &mut args.data_dir);
        set(
            args.given("rotate_every"),
            &self.rotate_every,
            &mut args.rotate_every,
        );
        set(
            args.given("rotate_after"),
            &self.rotate_after,
            &mut args.rotate_after,
        );
        set(args.given("rsa_bits"), &self.rsa_bits, &mut args.rsa_bits);
        set(
            args.given("rsa_regenerate_every"),
            &self.rsa_regenerate_every,
            &mut args.rsa_regenerate_every,
        );
        set(
            args.given("keepalive"),
            &self.keepalive,
            &mut args.keepalive,
        );
        set(
            args.given("request_timeout"),
            &self.request_timeout,
            &mut args.request_timeout,
        );
        set(
            args.given("outbox_ttl"),
            &self.outbox_ttl,
            &mut args.outbox_ttl,
        );
        set(
            args.given("log_level"),
            &self.log_level,
            &mut args.log_level,
        );
        set_opt(args.given("log_file"), &self.log_file, &mut args.log_file);
    }
}

/// 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    let offset = offset.min(text.len());
    text.as_bytes()[..offset]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

fn unknown_key(key: &str) -> String {
    // `rotate_every` for `rotate-every`, `no-mdns` for `mdns = false`: say which one.
    let dashed = key.replace('_', "-");
    let hint = if KEYS.contains(&dashed.as_str()) && dashed != key {
        format!(" (did you mean \"{dashed}\"?)")
    } else if dashed == "no-mdns" {
        " (write mdns = false)".to_string()
    } else if dashed == "secret" || dashed == "secret-file" {
        " (the secret is not kept in the config file: use --secret-file or --profile)".to_string()
    } else {
        format!(" (known keys: {})", KEYS.join(", "))
    };
    format!("unknown key {key:?}{hint}")
}

fn found(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        Value::Integer(i) => i.to_string(),
        Value::Boolean(b) => b.to_string(),
        other => format!("a {}", other.type_str()),
    }
}

fn string(v: &Value) -> Result<&str, String> {
    v.as_str()
        .ok_or_else(|| format!("expected a string in quotes, found {}", found(v)))
}

fn boolean(v: &Value) -> Result<bool, String> {
    v.as_bool()
        .ok_or_else(|| format!("expected true or false, found {}", found(v)))
}

fn port(v: &Value) -> Result<u16, String> {
    v.as_integer()
        .and_then(|i| u16::try_from(i).ok())
        .ok_or_else(|| {
            format!(
                "expected a port number from 0 to 65535 (0: any free port), found {}",
                found(v)
            )
        })
}

fn count(v: &Value) -> Result<u64, String> {
    v.as_integer()
        .and_then(|i| u64::try_from(i).ok())
        .ok_or_else(|| format!("expected a whole number of 0 or more, found {}", found(v)))
}

fn rsa_bits(v: &Value) -> Result<usize, String> {
    let shown = match v {
        Value::Integer(i) => i.to_string(),
        other => {
            return Err(format!(
                "expected 2048, 3072 or 4096, found {}",
                found(other)
            ));
        }
    };
    cli::parse_rsa_bits(&shown).map_err(|e| e.to_string())
}

fn duration(v: &Value) -> Result<Duration, String> {
    match v {
        Value::String(s) => cli::parse_duration(s).map_err(|e| e.to_string()),
        other => Err(format!(
            "expected a duration in quotes like \"90s\", \"30m\" or \"1h\", found {}",
            found(other)
        )),
    }
}

fn listen(v: &Value) -> Result<Vec<Multiaddr>, String> {
    let Some(items) = v.as_array() else {
        return Err(format!(
            "expected a list of multiaddrs like [\"/ip4/0.0.0.0/tcp/4001\"], found {}",
            found(v)
        ));
    };
    items
        .iter()
        .map(|item| cli::parse_listen(string(item)?).map_err(|e| e.to_string()))
        .collect()
}

/// `--id`'s rules (the same as the node applies to the flag).
fn id(s: &str) -> Result<String, String> {
    let clean = crate::sanitize::name(s);
    if clean.is_empty() {
        return Err("it must contain printable characters".to_string());
    }
    if let Some(why) = crate::node::name_problem(&clean) {
        return Err(format!("{clean:?}: {why}"));
    }
    Ok(s.to_string())
}

/// A log level or directives, as `--log-level` takes them.
fn log_level(v: &Value) -> Result<String, String> {
    const LEVELS: [&str; 6] = ["error", "warn", "info", "debug", "trace", "off"];
    let s = string(v)?;
    let bare_word_ok = s.split(',').all(|d| {
        let d = d.trim();
        d.contains('=') || LEVELS.contains(&d.to_ascii_lowercase().as_str())
    });
    if !bare_word_ok || tracing_subscriber::EnvFilter::try_new(s).is_err() {
        return Err(format!(
            "{s:?} is not a log level: use error, warn, info, debug, trace or off, or \
             directives like \"noctua_chat=debug,info\""
        ));
    }
    Ok(s.to_string())
}

/// A path: `~/x` is under `home`, a relative path is relative to the config file's
/// directory `base` (not to wherever noctua is started).
fn path_value(v: &Value, base: &Path, home: &Option<PathBuf>) -> Result<PathBuf, String> {
    let s = string(v)?;
    if s.is_empty() {
        return Err("expected a path, found an empty string".to_string());
    }
    if s == "~" || s.starts_with("~/") {
        let home = home
            .as_ref()
            .ok_or_else(|| format!("{s:?} starts with ~ but HOME is not set"))?;
        return Ok(home.join(s.trim_start_matches('~').trim_start_matches('/')));
    }
    let p = Path::new(s);
    Ok(if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_at(text: &str) -> Result<Settings, ConfigError> {
        parse(
            Path::new("/etc/cfg/config.toml"),
            text,
            Some(PathBuf::from("/home/u")),
        )
    }

    fn error(text: &str) -> String {
        let e = parse_at(text).expect_err("an error");
        let line = e.to_string();
        assert!(!line.contains('\n'), "one line: {line}");
        line
    }

    fn args(argv: &[&str]) -> Args {
        let mut all = vec!["noctua"];
        all.extend_from_slice(argv);
        Args::try_from_iter(all).expect("parses")
    }

    #[test]
    fn every_key_parses() {
        let s = parse_at(
            r#"
id = "alice"
port = 4001
listen = ["/ip4/127.0.0.1/tcp/4001", "/ip4/127.0.0.1/udp/4001/quic-v1"]
mdns = false
profile = "home"
data-dir = "~/noctua-data"
rotate-every = "1h"
rotate-after = 500
rsa-bits = 3072
rsa-regenerate-every = "20m"
keepalive = "20s"
request-timeout = "5s"
outbox-ttl = "1h"
log-level = "noctua_chat=debug,info"
log-file = "logs/noctua.log"
"#,
        )
        .expect("valid");
        assert_eq!(s.id.as_deref(), Some("alice"));
        assert_eq!(s.port, Some(4001));
        assert_eq!(s.listen.as_ref().map(Vec::len), Some(2));
        assert_eq!(s.mdns, Some(false));
        assert_eq!(s.profile.as_deref(), Some("home"));
        assert_eq!(s.data_dir, Some(PathBuf::from("/home/u/noctua-data")));
        assert_eq!(s.rotate_every, Some(Duration::from_secs(3600)));
        assert_eq!(s.rotate_after, Some(500));
        assert_eq!(s.rsa_bits, Some(3072));
        assert_eq!(s.rsa_regenerate_every, Some(Duration::from_secs(1200)));
        assert_eq!(s.keepalive, Some(Duration::from_secs(20)));
        assert_eq!(s.request_timeout, Some(Duration::from_secs(5)));
        assert_eq!(s.outbox_ttl, Some(Duration::from_secs(3600)));
        assert_eq!(s.log_level.as_deref(), Some("noctua_chat=debug,info"));
        assert_eq!(
            s.log_file,
            Some(PathBuf::from("/etc/cfg/logs/noctua.log")),
            "relative to the config file's directory"
        );
        assert_eq!(
            parse_at("# nothing set\n").expect("valid"),
            Settings::default()
        );
    }

    #[test]
    fn an_unknown_key_names_the_file_and_line() {
        assert_eq!(
            error("port = 4001\n\ncolour = \"blue\"\n")
                .split(" (known keys")
                .next(),
            Some(r#"/etc/cfg/config.toml line 3: unknown key "colour""#)
        );
        assert!(error("rotate_every = \"1h\"").contains(r#"did you mean "rotate-every"?"#));
        assert!(error("no-mdns = true").contains("mdns = false"));
        assert!(error("\nsecret = \"x\"").starts_with("/etc/cfg/config.toml line 2:"));
        assert!(error("[lab]\nnodes = 3").contains(r#"unknown key "lab""#));
    }

    #[test]
    fn a_bad_value_names_the_file_line_and_key() {
        for (text, line, want) in [
            ("port = 70000", 1, "port: expected a port number"),
            ("\nport = \"4001\"", 2, "port: expected a port number"),
            ("mdns = \"no\"", 1, "mdns: expected true or false"),
            (
                "rotate-every = \"30\"",
                1,
                "rotate-every: \"30\" needs a unit",
            ),
            ("rotate-every = 30", 1, "rotate-every: expected a duration"),
            (
                "rotate-after = -1",
                1,
                "rotate-after: expected a whole number",
            ),
            (
                "rsa-bits = 1024",
                1,
                "rsa-bits: \"1024\" is not a supported RSA size",
            ),
            ("profile = \"a/b\"", 1, "profile:"),
            (
                "id = \"   \"",
                1,
                "id: it must contain printable characters",
            ),
            (
                "log-level = \"loud\"",
                1,
                "log-level: \"loud\" is not a log level",
            ),
            (
                "listen = \"/ip4/1.2.3.4/tcp/1\"",
                1,
                "listen: expected a list",
            ),
            (
                "listen = [\"1.2.3.4:5\"]",
                1,
                "listen: \"1.2.3.4:5\" is not a multiaddr",
            ),
            ("a = 1\nport = 1\nport = 2", 3, "duplicate key"),
            ("port = ", 1, ""),
        ] {
            let got = error(text);
            let prefix = format!("/etc/cfg/config.toml line {line}: {want}");
            assert!(got.starts_with(&prefix), "{text:?}: {got}");
        }
    }

    #[test]
    fn the_first_problem_in_the_file_is_reported() {
        assert!(
            error("zzz = 1\naaa = 2").contains(r#"line 1: unknown key "zzz""#),
            "file order, not key order"
        );
    }

    #[test]
    fn flags_on_the_command_line_win_over_the_file() {
        let file = parse_at("port = 4001\nid = \"filed\"\nmdns = false\nlog-level = \"info\"")
            .expect("valid");
        let mut a = args(&["--port", "5000"]);
        file.apply_to(&mut a);
        assert_eq!(a.port, 5000, "the flag wins");
        assert_eq!(a.id.as_deref(), Some("filed"), "the file fills the rest");
        assert!(a.no_mdns);
        assert_eq!(a.log_level, "info");

        // A flag given with its default value still wins: `--port 0` asks for any port.
        let mut a = args(&["--port", "0", "--log-level", "warn"]);
        file.apply_to(&mut a);
        assert_eq!(a.port, 0);
        assert_eq!(a.log_level, "warn");

        // `--mdns` turns mDNS back on over `mdns = false`; the last of the pair wins.
        let mut a = args(&["--mdns"]);
        file.apply_to(&mut a);
        assert!(!a.no_mdns);
        let mut a = args(&["--mdns", "--no-mdns"]);
        file.apply_to(&mut a);
        assert!(a.no_mdns);
        let on = parse_at("mdns = true").expect("valid");
        let mut a = args(&["--no-mdns"]);
        on.apply_to(&mut a);
        assert!(a.no_mdns, "--no-mdns beats mdns = true");
    }

    #[test]
    fn the_default_path_follows_xdg_then_home() {
        let p = |x: Option<&str>, h: Option<&str>| {
            default_path_from(x.map(Into::into), h.map(Into::into))
        };
        if cfg!(target_os = "macos") {
            return;
        }
        assert_eq!(
            p(Some("/x"), Some("/h")),
            Some(PathBuf::from("/x/noctua/config.toml"))
        );
        assert_eq!(
            p(Some("relative"), Some("/h")),
            Some(PathBuf::from("/h/.config/noctua/config.toml")),
            "a relative XDG_CONFIG_HOME is ignored"
        );
        assert_eq!(
            p(None, Some("/h")),
            Some(PathBuf::from("/h/.config/noctua/config.toml"))
        );
        assert_eq!(p(None, None), None);
    }
}
