//! The command language shared by the terminal and headless faces: one line in, one
//! [`Line`] out, or a one-line hint saying what is wrong.

use std::fmt;

use crate::connstr::ConnString;

/// What a line of input asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// Nothing (empty or blank line).
    Empty,
    /// `connect <host:port:secret>`.
    Connect(Box<ConnString>),
    /// `connect <index | peer-id prefix | name> <secret>`: a discovered peer.
    ConnectDiscovered {
        /// Which peer, as typed.
        who: String,
        /// Its secret.
        secret: String,
    },
    /// `sessions`.
    Sessions,
    /// `peers`.
    Peers,
    /// Plain text: to every peer with an active session.
    Broadcast(String),
    /// `msg <peer> <text>` or `@peer text`.
    Msg {
        /// Which peer, as typed.
        to: String,
        /// The text.
        text: String,
    },
    /// `verify <peer>`.
    Verify(String),
    /// `rotate [peer]`.
    Rotate(Option<String>),
    /// `disconnect <peer>`.
    Disconnect(String),
    /// `clear` / `cls`.
    Clear,
    /// `help` / `h`.
    Help,
    /// `exit` / `quit` / `sair`.
    Exit,
}

/// A line that names a command but uses it wrongly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hint(pub String);

impl fmt::Display for Hint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn hint(s: impl Into<String>) -> Hint {
    Hint(s.into())
}

/// Splits off the first whitespace-separated word.
fn split_word(s: &str) -> (&str, &str) {
    let s = s.trim_start();
    match s.find(char::is_whitespace) {
        Some(i) => (&s[..i], s[i..].trim_start()),
        None => (s, ""),
    }
}

/// Parses one line of input.
///
/// Anything that does not start with a known command word is chat text, except a line
/// starting with `/word`: a known command with a slash (`/quit`) is that command, anything
/// else gets a hint rather than being sent to everyone by accident.
pub fn parse(line: &str) -> Result<Line, Hint> {
    let trimmed = line.trim();
    if trimmed.is_empty() {
        return Ok(Line::Empty);
    }
    if let Some(rest) = trimmed.strip_prefix('@') {
        let (to, text) = split_word(rest);
        if to.is_empty() || text.is_empty() {
            return Err(hint("usage: @peer message"));
        }
        return Ok(Line::Msg {
            to: to.into(),
            text: text.into(),
        });
    }
    let (word, rest) = split_word(trimmed);
    // IRC habits: `/help`, `/quit` work too; any other `/word` is a mistyped command rather
    // than something to send to everyone.
    let slash = word.len() > 1 && word.starts_with('/');
    let word = if slash { &word[1..] } else { word };
    match word.to_ascii_lowercase().as_str() {
        "connect" | "c" => parse_connect(rest),
        "sessions" => no_args(rest, "sessions", Line::Sessions),
        "peers" => no_args(rest, "peers", Line::Peers),
        "msg" => {
            let (to, text) = split_word(rest);
            if to.is_empty() || text.is_empty() {
                return Err(hint("usage: msg <peer> <message>"));
            }
            Ok(Line::Msg {
                to: to.into(),
                text: text.into(),
            })
        }
        "verify" => one_arg(rest, "usage: verify <peer>").map(Line::Verify),
        "rotate" => {
            let (who, extra) = split_word(rest);
            if !extra.is_empty() {
                return Err(hint("usage: rotate [peer]"));
            }
            Ok(Line::Rotate((!who.is_empty()).then(|| who.to_string())))
        }
        "disconnect" => one_arg(rest, "usage: disconnect <peer>").map(Line::Disconnect),
        "clear" | "cls" => no_args(rest, "clear", Line::Clear),
        "help" | "h" => Ok(Line::Help),
        "exit" | "quit" | "sair" => no_args(rest, "exit", Line::Exit),
        w if slash => Err(hint(format!(
            "unknown command \"/{w}\"; type 'help' for the list of commands"
        ))),
        _ => Ok(Line::Broadcast(trimmed.to_string())),
    }
}

fn no_args(rest: &str, name: &str, line: Line) -> Result<Line, Hint> {
    if rest.is_empty() {
        Ok(line)
    } else {
        Err(hint(format!("'{name}' takes no arguments")))
    }
}

fn one_arg(rest: &str, usage: &str) -> Result<String, Hint> {
    let (who, extra) = split_word(rest);
    if who.is_empty() || !extra.is_empty() {
        return Err(hint(usage));
    }
    Ok(who.to_string())
}

fn parse_connect(rest: &str) -> Result<Line, Hint> {
    const USAGE: &str =
        "usage: connect <host:port:secret>  or  connect <peer number|id prefix> <secret>";
    let (first, second) = split_word(rest);
    if first.is_empty() {
        return Err(hint(USAGE));
    }
    if second.is_empty() {
        return match first.parse::<ConnString>() {
            Ok(cs) => Ok(Line::Connect(Box::new(cs))),
            Err(e) => Err(hint(format!("bad connection string: {e}"))),
        };
    }
    let (secret, extra) = split_word(second);
    if !extra.is_empty() {
        return Err(hint(USAGE));
    }
    Ok(Line::ConnectDiscovered {
        who: first.to_string(),
        secret: secret.to_string(),
    })
}

/// What the script driver could not hand to the node, for the face to show.
pub enum Unhandled<'a> {
    /// A line that is not a valid command (the input and a one-line hint).
    Hint(&'a str, Hint),
    /// `help`.
    Help,
    /// Reading the input failed.
    ReadError(std::io::Error),
}

/// Drives the node from a script on stdin (piped terminal input, or headless mode): each
/// command is carried out before the next line is read, so that a script's `connect`
/// finishes before its first message is sent. At the end of input the node is told to
/// wait for receipts and leave; `exit`, SIGINT and SIGTERM make it leave at once.
pub async fn drive_from_stdin(
    requests: &tokio::sync::mpsc::Sender<crate::node::Request>,
    mut unhandled: impl FnMut(Unhandled<'_>),
) {
    use crate::node::{Command, Request};
    use tokio::io::AsyncBufReadExt;

    let stdin = tokio::io::BufReader::new(tokio::io::stdin());
    let mut lines = stdin.lines();
    let mut command = Command::Finish;
    loop {
        let line = tokio::select! {
            l = lines.next_line() => l,
            _ = crate::terminal::shutdown_signal() => { command = Command::Exit; break; }
        };
        let line = match line {
            Ok(Some(l)) => l,
            Ok(None) => break,
            Err(e) => {
                unhandled(Unhandled::ReadError(e));
                break;
            }
        };
        match parse(&line) {
            Err(hint) => unhandled(Unhandled::Hint(&line, hint)),
            Ok(Line::Empty | Line::Clear) => {}
            Ok(Line::Help) => unhandled(Unhandled::Help),
            Ok(Line::Exit) => {
                command = Command::Exit;
                break;
            }
            Ok(l) => {
                let (tx, rx) = tokio::sync::oneshot::channel();
                let req = Request {
                    command: Command::Line(l),
                    done: Some(tx),
                };
                if requests.send(req).await.is_err() {
                    return;
                }
                let _ = rx.await;
            }
        }
    }
    let _ = requests
        .send(Request {
            command,
            done: None,
        })
        .await;
}

/// The help text.
pub const HELP: &[(&str, &str)] = &[
    (
        "connect, c <host:port:secret>",
        "connect to a peer with its connection string",
    ),
    (
        "connect <n|id> <secret>",
        "connect to a discovered peer (see 'peers')",
    ),
    ("<text>", "send to every peer with an active session"),
    ("msg <peer> <text>, @peer <text>", "send to one peer"),
    (
        "sessions",
        "list sessions: state, epoch, age, next rotation, messages",
    ),
    ("peers", "list connected and discovered peers"),
    (
        "verify <peer>",
        "show the safety number to compare with the peer",
    ),
    (
        "rotate [peer]",
        "rotate session keys now (all sessions if no peer)",
    ),
    ("disconnect <peer>", "close the session with a peer"),
    ("clear, cls", "clear the screen"),
    ("help, h", "this help"),
    ("exit, quit, sair", "close every session and leave"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_and_aliases() {
        assert_eq!(parse("  "), Ok(Line::Empty));
        assert_eq!(parse("sessions"), Ok(Line::Sessions));
        assert_eq!(parse("PEERS"), Ok(Line::Peers));
        assert_eq!(parse("h"), Ok(Line::Help));
        assert_eq!(parse("cls"), Ok(Line::Clear));
        for w in ["exit", "quit", "sair"] {
            assert_eq!(parse(w), Ok(Line::Exit));
        }
        assert_eq!(parse("rotate"), Ok(Line::Rotate(None)));
        assert_eq!(parse("rotate bob"), Ok(Line::Rotate(Some("bob".into()))));
        assert_eq!(parse("verify bob"), Ok(Line::Verify("bob".into())));
        assert_eq!(parse("disconnect 2"), Ok(Line::Disconnect("2".into())));
    }

    #[test]
    fn messages() {
        assert_eq!(
            parse("hello there"),
            Ok(Line::Broadcast("hello there".into()))
        );
        assert_eq!(
            parse("msg bob hi  you"),
            Ok(Line::Msg {
                to: "bob".into(),
                text: "hi  you".into()
            })
        );
        assert_eq!(
            parse("@bob hi"),
            Ok(Line::Msg {
                to: "bob".into(),
                text: "hi".into()
            })
        );
        // Words that merely start like a command are chat.
        assert_eq!(parse("helpful"), Ok(Line::Broadcast("helpful".into())));
        assert_eq!(
            parse("c'est la vie"),
            Ok(Line::Broadcast("c'est la vie".into()))
        );
        assert_eq!(parse("/quit"), Ok(Line::Exit));
        assert_eq!(parse("/"), Ok(Line::Broadcast("/".into())));
    }

    #[test]
    fn connect_forms() {
        assert!(matches!(
            parse("connect 127.0.0.1:5000:abc"),
            Ok(Line::Connect(_))
        ));
        assert!(matches!(parse("c [::1]:5000:abc"), Ok(Line::Connect(_))));
        assert_eq!(
            parse("connect 1 s3cret"),
            Ok(Line::ConnectDiscovered {
                who: "1".into(),
                secret: "s3cret".into()
            })
        );
    }

    #[test]
    fn wrong_arguments_get_one_line_hints() {
        for bad in [
            "connect",
            "connect 1.2.3.4:99999:x",
            "connect a b c",
            "msg",
            "msg bob",
            "@bob",
            "verify",
            "verify a b",
            "disconnect",
            "sessions now",
            "exit please",
            "/join",
            "/nick bob",
        ] {
            let h = parse(bad).unwrap_err();
            assert!(!h.0.contains('\n'), "{bad}: {h}");
            assert!(!h.0.is_empty());
        }
        assert!(
            parse("connect 1.2.3.4:99999:x")
                .unwrap_err()
                .0
                .contains("port")
        );
    }
}
