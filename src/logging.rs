//! Logging, away from the chat screen: to `--log-file`, or to stderr unless stderr is the
//! interactive terminal.

use crate::cli::Args;

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// `RUST_LOG` does not parse.
    #[error("invalid RUST_LOG {value:?}: {source}")]
    RustLog {
        /// Its value.
        value: String,
        /// Why.
        source: tracing_subscriber::filter::ParseError,
    },
    /// `--log-level` is neither a level nor directives.
    #[error(
        "invalid --log-level {0:?}: use error, warn, info, debug, trace or off, \
         or directives like noctua_chat=debug,info"
    )]
    Level(String),
    /// `--log-level` looks like directives but does not parse.
    #[error(
        "invalid --log-level {value:?}: use error, warn, info, debug, trace or off, \
         or RUST_LOG-style directives ({source})"
    )]
    Directives {
        /// Its value.
        value: String,
        /// Why.
        source: tracing_subscriber::filter::ParseError,
    },
    /// The log file cannot be opened.
    #[error("cannot open log file {path}: {source}")]
    File {
        /// The path.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// `directives` plus [`noctua_chat::LOG_DIRECTIVES`] (which keep a peer's stream flood from
/// writing one libp2p warning per stream), unless they name libp2p-request-response, and
/// plus `libp2p_mdns=warn` unless they name libp2p-mdns: at info it writes a line for
/// every address it discovers or lets expire (over a million lines in a 128-node lab;
/// the node's own `discovered`/`expired` events say the same once per peer).
fn with_quiet_libp2p(directives: &str) -> String {
    let mut out = directives.to_owned();
    if !directives.contains("libp2p_request_response") {
        out.push(',');
        out.push_str(noctua_chat::LOG_DIRECTIVES);
    }
    if !directives.contains("libp2p_mdns") {
        out.push_str(",libp2p_mdns=warn");
    }
    out
}

/// Installs the global subscriber. In the `interactive` terminal without `--log-file`,
/// nothing is logged: stderr is the chat screen.
pub(crate) fn init(args: &Args, interactive: bool) -> Result<(), LogError> {
    use tracing_subscriber::EnvFilter;
    let filter = match std::env::var("RUST_LOG") {
        Ok(v) if !v.is_empty() => EnvFilter::try_new(&v).map_err(|source| LogError::RustLog {
            value: v.clone(),
            source,
        })?,
        _ => {
            const LEVELS: [&str; 6] = ["error", "warn", "info", "debug", "trace", "off"];
            // A bare word must be a level: `loud` would otherwise be taken as a log target.
            let bad = args.log_level.split(',').any(|d| {
                let d = d.trim();
                !d.contains('=') && !LEVELS.contains(&d.to_ascii_lowercase().as_str())
            });
            if bad {
                return Err(LogError::Level(args.log_level.clone()));
            }
            EnvFilter::try_new(with_quiet_libp2p(&args.log_level)).map_err(|source| {
                LogError::Directives {
                    value: args.log_level.clone(),
                    source,
                }
            })?
        }
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    if let Some(path) = &args.log_file {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| LogError::File {
                path: path.display().to_string(),
                source,
            })?;
        builder
            .with_ansi(false)
            .with_writer(std::sync::Mutex::new(file))
            .init();
    } else if interactive {
        // stderr is the chat screen: log nothing there.
    } else {
        // Colors only for a person reading a terminal, not in `2>file` or a pipe.
        use std::io::IsTerminal;
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        builder
            .with_ansi(std::io::stderr().is_terminal() && !no_color)
            .with_writer(std::io::stderr)
            .init();
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
            format!("warn,{},libp2p_mdns=warn", noctua_chat::LOG_DIRECTIVES)
        );
        assert_eq!(
            with_quiet_libp2p("info,libp2p_request_response=debug,libp2p_mdns=info"),
            "info,libp2p_request_response=debug,libp2p_mdns=info"
        );
        assert!(
            tracing_subscriber::EnvFilter::try_new(with_quiet_libp2p("debug")).is_ok(),
            "the directives parse"
        );
    }
}
