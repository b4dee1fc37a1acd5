//! The command language shared by the terminal and headless faces: one line in, one
//! [`Line`] out, or a one-line hint saying what is wrong. Most lines are node
//! [`Command`]s; a few (`help`, `clear`, `exit`) are the face's own business.

use std::fmt;

use crate::connstr::ConnString;
use crate::node::Command;

/// What a line of input asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Line {
    /// Nothing (empty or blank line).
    Empty,
    /// Something for the node to do.
    Command(Command),
    /// `clear` / `cls`.
    Clear,
    /// `help` / `h`.
    Help,
    /// `exit` / `quit` / `sair`.
    Exit,
}

/// A line that names a command but uses it wrongly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Hint(pub(crate) String);

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
pub(crate) fn parse(line: &str) -> Result<Line, Hint> {
    let trimmed = line.trim();
    if trimmed.is_empty() {
        return Ok(Line::Empty);
    }
    if let Some(rest) = trimmed.strip_prefix('@') {
        let (to, text) = split_word(rest);
        if to.is_empty() || text.is_empty() {
            return Err(hint("usage: @peer message"));
        }
        return Ok(Line::Command(Command::Msg {
            to: to.into(),
            text: text.into(),
        }));
    }
    let (word, rest) = split_word(trimmed);
    // IRC habits: `/help`, `/quit` work too; any other `/word` is a mistyped command rather
    // than something to send to everyone.
    let slash = word.len() > 1 && word.starts_with('/');
    let word = if slash { &word[1..] } else { word };
    match word.to_ascii_lowercase().as_str() {
        "connect" | "c" => parse_connect(rest),
        "sessions" => no_args(rest, "sessions", Line::Command(Command::Sessions)),
        "peers" => no_args(rest, "peers", Line::Command(Command::Peers)),
        "msg" => {
            let (to, text) = split_word(rest);
            if to.is_empty() || text.is_empty() {
                return Err(hint("usage: msg <peer> <message>"));
            }
            Ok(Line::Command(Command::Msg {
                to: to.into(),
                text: text.into(),
            }))
        }
        "verify" => {
            one_arg(rest, "usage: verify <peer>").map(|w| Line::Command(Command::Verify(w)))
        }
        "rotate" => {
            let (who, extra) = split_word(rest);
            if !extra.is_empty() {
                return Err(hint("usage: rotate [peer]"));
            }
            Ok(Line::Command(Command::Rotate(
                (!who.is_empty()).then(|| who.to_string()),
            )))
        }
        "disconnect" => {
            one_arg(rest, "usage: disconnect <peer>").map(|w| Line::Command(Command::Disconnect(w)))
        }
        "clear" | "cls" => no_args(rest, "clear", Line::Clear),
        "help" | "h" => Ok(Line::Help),
        "exit" | "quit" | "sair" => no_args(rest, "exit", Line::Exit),
        w if slash => Err(hint(format!(
            "unknown command \"/{w}\"; type 'help' for the list of commands"
        ))),
        _ => Ok(Line::Command(Command::Broadcast(trimmed.to_string()))),
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
            Ok(cs) => Ok(Line::Command(Command::Connect(Box::new(cs)))),
            Err(e) => Err(hint(format!("bad connection string: {e}"))),
        };
    }
    let (secret, extra) = split_word(second);
    if !extra.is_empty() {
        return Err(hint(USAGE));
    }
    Ok(Line::Command(Command::ConnectDiscovered {
        who: first.to_string(),
        secret: secret.to_string(),
    }))
}

/// The help text.
pub(crate) const HELP: &[(&str, &str)] = &[
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
        assert_eq!(parse("sessions"), Ok(Line::Command(Command::Sessions)));
        assert_eq!(parse("PEERS"), Ok(Line::Command(Command::Peers)));
        assert_eq!(parse("h"), Ok(Line::Help));
        assert_eq!(parse("cls"), Ok(Line::Clear));
        for w in ["exit", "quit", "sair"] {
            assert_eq!(parse(w), Ok(Line::Exit));
        }
        assert_eq!(parse("rotate"), Ok(Line::Command(Command::Rotate(None))));
        assert_eq!(
            parse("rotate bob"),
            Ok(Line::Command(Command::Rotate(Some("bob".into()))))
        );
        assert_eq!(
            parse("verify bob"),
            Ok(Line::Command(Command::Verify("bob".into())))
        );
        assert_eq!(
            parse("disconnect 2"),
            Ok(Line::Command(Command::Disconnect("2".into())))
        );
    }

    #[test]
    fn messages() {
        assert_eq!(
            parse("hello there"),
            Ok(Line::Command(Command::Broadcast("hello there".into())))
        );
        assert_eq!(
            parse("msg bob hi  you"),
            Ok(Line::Command(Command::Msg {
                to: "bob".into(),
                text: "hi  you".into()
            }))
        );
        assert_eq!(
            parse("@bob hi"),
            Ok(Line::Command(Command::Msg {
                to: "bob".into(),
                text: "hi".into()
            }))
        );
        // Words that merely start like a command are chat.
        assert_eq!(
            parse("helpful"),
            Ok(Line::Command(Command::Broadcast("helpful".into())))
        );
        assert_eq!(
            parse("c'est la vie"),
            Ok(Line::Command(Command::Broadcast("c'est la vie".into())))
        );
        assert_eq!(parse("/quit"), Ok(Line::Exit));
        assert_eq!(
            parse("/"),
            Ok(Line::Command(Command::Broadcast("/".into())))
        );
    }

    #[test]
    fn connect_forms() {
        assert!(matches!(
            parse("connect 127.0.0.1:5000:abc"),
            Ok(Line::Command(Command::Connect(_)))
        ));
        assert!(matches!(
            parse("c [::1]:5000:abc"),
            Ok(Line::Command(Command::Connect(_)))
        ));
        assert_eq!(
            parse("connect 1 s3cret"),
            Ok(Line::Command(Command::ConnectDiscovered {
                who: "1".into(),
                secret: "s3cret".into()
            }))
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
