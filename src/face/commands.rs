//! The command language shared by the terminal and headless faces: one line in, one
//! [`Line`] out, or a one-line hint saying what is wrong. Most lines are node
//! [`Command`]s; a few (`help`, `clear`, `exit`) are the face's own business.
//!
//! # The input rule
//!
//! A line is chat unless it is unmistakably a command, and a command is never sent as chat:
//!
//! - `/word ...` is always a command (`/msg`, `/quit`, ...), as in IRC clients; an unknown
//!   `/word` gets a hint and is not sent. `/say <text>` sends `<text>` as it is, and a line
//!   starting with `//` is sent without its first `/`: the escapes for a line that looks
//!   like a command.
//! - `@peer text` is a private message.
//! - Without a slash, a line is a command only in a command's exact shape: `help`,
//!   `sessions`, `peers`, `clear`, `rotate`, `exit`, `quit` or `sair` alone on the line;
//!   `connect <host:port:secret>` or `c <host:port:secret>`; `connect <n|id> <secret>`;
//!   `msg <peer> <text>`; `verify <peer>`, `disconnect <peer>`, `rotate <peer>`. Anything
//!   else is chat: `help me please`, `exit strategy`, `c u later`.
//! - A line meant as chat that carries a connection string (which holds a secret), or a
//!   `msg` without its text, is refused with a hint rather than sent to everyone.

use std::fmt;

use crate::connstr::{ConnString, Host, Target};
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

/// How many whitespace-separated words `s` has.
fn words(s: &str) -> usize {
    s.split_whitespace().count()
}

/// Every command word, with and without a slash (for `help` and Tab completion).
pub(crate) const COMMAND_WORDS: &[&str] = &[
    "connect",
    "c",
    "msg",
    "say",
    "sessions",
    "peers",
    "verify",
    "rotate",
    "disconnect",
    "trust",
    "forget",
    "block",
    "unblock",
    "new-secret",
    "clear",
    "cls",
    "help",
    "h",
    "exit",
    "quit",
    "sair",
];

/// Commands that need a peer name as their first argument (for Tab completion).
pub(crate) const PEER_COMMANDS: &[&str] = &[
    "msg",
    "verify",
    "rotate",
    "disconnect",
    "connect",
    "trust",
    "forget",
    "block",
    "unblock",
];

/// Parses one line of input, following the input rule (see the module documentation).
pub(crate) fn parse(line: &str) -> Result<Line, Hint> {
    let trimmed = line.trim();
    if trimmed.is_empty() {
        return Ok(Line::Empty);
    }
    if let Some(escaped) = trimmed.strip_prefix("//") {
        return Ok(broadcast(format!("/{escaped}")));
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
    if let Some(name) = word.strip_prefix('/')
        && !name.is_empty()
        && name.starts_with(char::is_alphabetic)
        && name.chars().all(|c| c.is_alphabetic() || c == '-')
    {
        return slash_command(&name.to_lowercase(), rest);
    }
    match bare_command(&word.to_lowercase(), rest) {
        Some(parsed) => parsed,
        None => chat(trimmed),
    }
}

fn broadcast(text: String) -> Line {
    Line::Command(Command::Broadcast(text))
}

/// A line meant as chat: sent to everyone, unless it carries a connection string.
fn chat(text: &str) -> Result<Line, Hint> {
    if text.split_whitespace().any(looks_like_conn_string) {
        return Err(hint(
            "not sent: it carries a connection string (a secret); use 'connect' or '/say'",
        ));
    }
    Ok(broadcast(text.to_string()))
}

/// A word that parses as a connection string with a believable host (an IP address, a
/// dotted host name, `localhost`, or a multiaddr), so that `10:30:00` stays chat.
fn looks_like_conn_string(word: &str) -> bool {
    match word.parse::<ConnString>() {
        Ok(cs) => match cs.target {
            Target::Host {
                host: Host::Dns(name),
                ..
            } => name.contains('.') || name.eq_ignore_ascii_case("localhost"),
            _ => true,
        },
        Err(_) => false,
    }
}

/// A `/word` command: always a command, with strict arguments.
fn slash_command(word: &str, rest: &str) -> Result<Line, Hint> {
    match word {
        "say" => {
            if rest.is_empty() {
                Err(hint("usage: /say <text>"))
            } else {
                Ok(broadcast(rest.to_string()))
            }
        }
        "connect" | "c" => parse_connect(rest),
        "msg" | "m" => parse_msg(rest),
        "verify" => one_arg(rest, "usage: /verify <peer>").map(|w| cmd(Command::Verify(w))),
        "disconnect" => {
            one_arg(rest, "usage: /disconnect <peer>").map(|w| cmd(Command::Disconnect(w)))
        }
        "trust" => one_arg(rest, "usage: /trust <peer>").map(|w| cmd(Command::Trust(w))),
        "forget" => one_arg(rest, "usage: /forget <peer>").map(|w| cmd(Command::Forget(w))),
        "block" => one_arg(rest, "usage: /block <peer>").map(|w| cmd(Command::Block(w))),
        "unblock" => one_arg(rest, "usage: /unblock <peer>").map(|w| cmd(Command::Unblock(w))),
        "rotate" => {
            let (who, extra) = split_word(rest);
            if !extra.is_empty() {
                return Err(hint("usage: /rotate [peer]"));
            }
            Ok(cmd(Command::Rotate(
                (!who.is_empty()).then(|| who.to_string()),
            )))
        }
        "new-secret" => no_args(rest, "/new-secret", cmd(Command::NewSecret)),
        "sessions" => no_args(rest, "/sessions", cmd(Command::Sessions)),
        "peers" => no_args(rest, "/peers", cmd(Command::Peers)),
        "clear" | "cls" => no_args(rest, "/clear", Line::Clear),
        "help" | "h" => Ok(Line::Help),
        "exit" | "quit" | "sair" => no_args(rest, "/exit", Line::Exit),
        w => Err(hint(format!(
            "unknown command \"/{w}\": see '/help' ('//{w} ...' sends the line as chat)"
        ))),
    }
}

fn cmd(c: Command) -> Line {
    Line::Command(c)
}

/// A command word without a slash: `Some` when the line has the command's exact shape (or
/// must not be sent as chat), `None` when it is chat.
fn bare_command(word: &str, rest: &str) -> Option<Result<Line, Hint>> {
    let alone = rest.is_empty();
    let line = match word {
        "help" | "h" if alone => Line::Help,
        "sessions" if alone => cmd(Command::Sessions),
        "peers" if alone => cmd(Command::Peers),
        "clear" | "cls" if alone => Line::Clear,
        "exit" | "quit" | "sair" if alone => Line::Exit,
        "rotate" if words(rest) <= 1 => cmd(Command::Rotate((!alone).then(|| rest.to_string()))),
        "verify" if words(rest) == 1 => cmd(Command::Verify(rest.to_string())),
        "disconnect" if words(rest) == 1 => cmd(Command::Disconnect(rest.to_string())),
        "trust" if words(rest) == 1 => cmd(Command::Trust(rest.to_string())),
        "forget" if words(rest) == 1 => cmd(Command::Forget(rest.to_string())),
        "block" if words(rest) == 1 => cmd(Command::Block(rest.to_string())),
        "unblock" if words(rest) == 1 => cmd(Command::Unblock(rest.to_string())),
        "new-secret" if alone => cmd(Command::NewSecret),
        // Alone, these can only be a command missing its peer.
        "verify" | "disconnect" | "trust" | "forget" | "block" | "unblock" if alone => {
            return Some(Err(hint(format!("usage: {word} <peer>"))));
        }
        // A private message is never sent to everyone, even without its text.
        "msg" => return Some(parse_msg(rest)),
        // `connect` alone, or with one or two words: a connect (a mistyped string is never
        // sent as chat); longer lines are chat ("connect with me later").
        "connect" if words(rest) <= 2 => return Some(parse_connect(rest)),
        // `c` only with a connection string or `<number> <secret>`: "c u later" is chat.
        "c" if words(rest) == 1 && rest.contains(':') => return Some(parse_connect(rest)),
        "c" if words(rest) == 2 && split_word(rest).0.parse::<usize>().is_ok() => {
            return Some(parse_connect(rest));
        }
        _ => return None,
    };
    Some(Ok(line))
}

fn parse_msg(rest: &str) -> Result<Line, Hint> {
    let (to, text) = split_word(rest);
    if to.is_empty() || text.is_empty() {
        return Err(hint("usage: msg <peer> <message>"));
    }
    Ok(cmd(Command::Msg {
        to: to.into(),
        text: text.into(),
    }))
}

fn no_args(rest: &str, name: &str, line: Line) -> Result<Line, Hint> {
    if rest.is_empty() {
        Ok(line)
    } else {
        Err(hint(format!(
            "'{name}' takes no arguments (to send this line as chat, leave out the '/')"
        )))
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

/// The help text: every command and what it does.
pub(crate) const HELP: &[(&str, &str)] = &[
    (
        "connect, c <host:port:secret>",
        "connect to a peer with its connection string",
    ),
    (
        "connect <n|name|id> <secret>",
        "connect to a discovered peer (see 'peers')",
    ),
    ("<text>", "send to every peer with an active session"),
    (
        "msg <peer> <text>, @peer <text>",
        "send to one peer, marked private",
    ),
    (
        "/say <text>, //<text>",
        "send a line that looks like a command",
    ),
    ("sessions", "list sessions, and peers reconnecting"),
    ("peers", "list peers with their numbers"),
    (
        "verify <peer>",
        "the safety number to compare with the peer",
    ),
    ("rotate [peer]", "new session keys now (all if no peer)"),
    (
        "disconnect <peer>",
        "end the session; refused until you connect",
    ),
    (
        "trust <peer>",
        "record that you compared its lasting number",
    ),
    ("forget <peer>", "drop its pinned name and addresses"),
    (
        "block <peer>, unblock <peer>",
        "refuse its identity (kept in the profile)",
    ),
    ("new-secret", "a new secret from now on; sessions stay"),
    ("clear, cls", "clear the screen"),
    ("help, h", "this help"),
    (
        "exit, quit, sair",
        "wait for receipts, say goodbye and leave",
    ),
];

/// The input rule, as `help` ends with it (and README.md says it).
pub(crate) const INPUT_RULE: &[&str] = &[
    "Every command also works with a '/' (/msg, /quit); with a '/' it is always",
    "a command. Without one, a line is a command only in the exact form above:",
    "'help me' or 'exit strategy' is chat. A <peer> is a name as shown, a unique",
    "start of one, its number in 'peers', or the start of its peer id; Tab",
    "completes commands and names. A message is at most 64 KiB. A line carrying a",
    "connection string (it holds a secret) is never sent as chat.",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn chat_line(s: &str) -> Result<Line, Hint> {
        Ok(Line::Command(Command::Broadcast(s.into())))
    }

    #[test]
    fn commands_and_aliases() {
        assert_eq!(parse("  "), Ok(Line::Empty));
        assert_eq!(parse("sessions"), Ok(Line::Command(Command::Sessions)));
        assert_eq!(parse("PEERS"), Ok(Line::Command(Command::Peers)));
        assert_eq!(parse("h"), Ok(Line::Help));
        assert_eq!(parse("cls"), Ok(Line::Clear));
        for w in ["exit", "quit", "sair", "/exit", "/QUIT", "/sair"] {
            assert_eq!(parse(w), Ok(Line::Exit), "{w}");
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
            parse("/verify bob"),
            Ok(Line::Command(Command::Verify("bob".into())))
        );
        assert_eq!(
            parse("disconnect 2"),
            Ok(Line::Command(Command::Disconnect("2".into())))
        );
        assert_eq!(parse("/help me"), Ok(Line::Help));
    }

    #[test]
    fn messages() {
        assert_eq!(parse("hello there"), chat_line("hello there"));
        assert_eq!(
            parse("msg bob hi  you"),
            Ok(Line::Command(Command::Msg {
                to: "bob".into(),
                text: "hi  you".into()
            }))
        );
        assert_eq!(
            parse("/m bob hi"),
            Ok(Line::Command(Command::Msg {
                to: "bob".into(),
                text: "hi".into()
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
        assert_eq!(parse("helpful"), chat_line("helpful"));
        assert_eq!(parse("c'est la vie"), chat_line("c'est la vie"));
        assert_eq!(parse("/"), chat_line("/"));
        assert_eq!(parse("/o\\"), chat_line("/o\\"));
    }

    /// Issue 11, item 2: the lines a person chatting typed, and were eaten.
    #[test]
    fn chat_that_starts_with_a_command_word_is_chat() {
        for line in [
            "help me please",
            "clear skies today",
            "exit strategy",
            "c u later",
            "quit smoking",
            "sessions of the parliament",
            "peers review it",
            "verify this for me",
            "rotate the picture",
            "connect with me later",
            "exit\nthen the rest of a pasted block",
            "meet at 10:30:00",
        ] {
            let line = line.replace("\\n", "\n");
            assert_eq!(parse(&line), chat_line(&line), "{line:?}");
        }
    }

    #[test]
    fn the_escapes_send_a_line_that_looks_like_a_command() {
        assert_eq!(parse("/say exit"), chat_line("exit"));
        assert_eq!(parse("/say help me"), chat_line("help me"));
        assert_eq!(parse("//quit"), chat_line("/quit"));
        assert_eq!(parse("//  spaced"), chat_line("/  spaced"));
        assert_eq!(
            parse("/say 127.0.0.1:5000:s3cret"),
            chat_line("127.0.0.1:5000:s3cret"),
            "an explicit /say is obeyed"
        );
        assert!(parse("/say").is_err());
    }

    /// A connection string carries a secret: never broadcast by mistake.
    #[test]
    fn a_mistyped_connect_is_never_chat() {
        for line in [
            "conect 127.0.0.1:5000:s3cret",
            "127.0.0.1:5000:s3cret",
            "here: [::1]:5000:s3cret",
            "alice.local:5000:s3cret",
            "/ip4/10.0.0.2/tcp/5000:s3cret",
            "connect 127.0.0.1:5000",
            "c 127.0.0.1:99999:x",
            "msg bob",
            "msg",
            "/conect 127.0.0.1:5000:s3cret",
        ] {
            assert!(parse(line).is_err(), "{line:?} must not be sent");
        }
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
        assert!(matches!(
            parse("/c [::1]:5000:abc"),
            Ok(Line::Command(Command::Connect(_)))
        ));
        for line in ["connect 1 s3cret", "c 1 s3cret", "/connect 1 s3cret"] {
            assert_eq!(
                parse(line),
                Ok(Line::Command(Command::ConnectDiscovered {
                    who: "1".into(),
                    secret: "s3cret".into()
                })),
                "{line}"
            );
        }
    }

    #[test]
    fn identity_commands() {
        for (line, want) in [
            ("trust bob", Command::Trust("bob".into())),
            ("/trust bob", Command::Trust("bob".into())),
            ("forget 2", Command::Forget("2".into())),
            ("block 12D3KooW", Command::Block("12D3KooW".into())),
            ("/unblock bob", Command::Unblock("bob".into())),
            ("new-secret", Command::NewSecret),
            ("/new-secret", Command::NewSecret),
        ] {
            assert_eq!(parse(line), Ok(Line::Command(want)), "{line}");
        }
        // Not in a command's exact shape: chat.
        for line in [
            "trust me on this",
            "block party tonight",
            "new-secret please",
        ] {
            assert_eq!(parse(line), chat_line(line), "{line}");
        }
        for line in ["trust", "block", "/forget a b", "/new-secret now"] {
            assert!(parse(line).is_err(), "{line}");
        }
    }

    #[test]
    fn wrong_arguments_get_one_line_hints() {
        for bad in [
            "connect",
            "connect 1.2.3.4:99999:x",
            "/connect a b c",
            "msg",
            "msg bob",
            "@bob",
            "verify",
            "/verify a b",
            "disconnect",
            "/sessions now",
            "/exit please",
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
