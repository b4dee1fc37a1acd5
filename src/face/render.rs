//! Turns node [`Output`]s into the lines a person reads, in the original's colors: cyan
//! headers and information, green ids and success, yellow notices, red errors, blue
//! timestamps. No color when `NO_COLOR` is set or the output is not a terminal.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use noctua_chat::CloseReason;
use owo_colors::OwoColorize;

use crate::face::commands::{HELP, INPUT_RULE};
use crate::node::{
    LinkRow, LinkStatus, Output, PeerRow, SessionRow, TrustChange, short_peer, short_wait,
};
use crate::sanitize;
use crate::trust::TrustState;

/// Color on or off.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Palette {
    color: bool,
}

impl Palette {
    /// Color if `stdout_is_tty` and `NO_COLOR` is unset (https://no-color.org) and the
    /// terminal is not `dumb`.
    pub(crate) fn detect(stdout_is_tty: bool) -> Self {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        let dumb = std::env::var("TERM").is_ok_and(|t| t == "dumb");
        Palette {
            color: stdout_is_tty && !no_color && !dumb,
        }
    }

    /// A palette without color.
    pub(crate) fn plain() -> Self {
        Palette { color: false }
    }

    /// Whether colors are on.
    pub(crate) fn is_color(&self) -> bool {
        self.color
    }

    fn paint(&self, s: &str, f: impl Fn(&str) -> String) -> String {
        if self.color { f(s) } else { s.to_string() }
    }
}

/// One method per color, each painting only when colors are on.
macro_rules! colors {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
        impl Palette {
            $(
                $(#[$doc])*
                pub(crate) fn $name(&self, s: &str) -> String {
                    self.paint(s, |s| s.$name().to_string())
                }
            )*
        }
    };
}

colors!(
    /// Headers and information.
    cyan,
    /// Ids and success.
    green,
    /// Notices.
    yellow,
    /// Errors.
    red,
    /// Timestamps.
    blue,
    /// Emphasis.
    bold,
);

/// `HH:MM:SS` in local time.
pub(crate) fn clock(t: SystemTime) -> String {
    let dt: chrono::DateTime<chrono::Local> = t.into();
    dt.format("%H:%M:%S").to_string()
}

const OWL: &str = r#"       ,___,
       [O.o]
       /)__)
    ---"---"---"#;

struct SentMessage {
    text: String,
    private: bool,
    waiting: usize,
    ok: Vec<String>,
}

/// Renders outputs; remembers sent messages until every recipient answered, so each gets
/// one line saying where it arrived.
pub(crate) struct Renderer {
    p: Palette,
    sent: HashMap<u64, SentMessage>,
}

impl Renderer {
    /// A renderer with this palette.
    pub(crate) fn new(p: Palette) -> Self {
        Renderer {
            p,
            sent: HashMap::new(),
        }
    }

    /// The palette.
    pub(crate) fn palette(&self) -> Palette {
        self.p
    }

    /// The help screen.
    pub(crate) fn help(&self) -> String {
        let p = &self.p;
        let mut s = p.cyan("Commands:");
        for (cmd, what) in HELP {
            // Pad by hand: escape codes take no room on screen.
            let pad = 32usize.saturating_sub(cmd.chars().count());
            s.push_str(&format!("\n  {}{} {what}", p.green(cmd), " ".repeat(pad)));
        }
        s.push('\n');
        for line in INPUT_RULE {
            s.push_str(&format!("\n{line}"));
        }
        s
    }

    fn stamp(&self, at: SystemTime) -> String {
        self.p.blue(&format!("[{}]", clock(at)))
    }

    /// The lines to print for `o` (possibly none).
    pub(crate) fn render(&mut self, o: &Output) -> Vec<String> {
        let p = self.p;
        match o {
            Output::Ready {
                name,
                peer,
                secret,
                conn_strings,
                listen,
                pinned,
                profile,
                secret_changed,
            } => {
                let mut v = banner(p, name, &peer.to_base58(), secret, conn_strings, listen);
                // The identity part (issue 12) goes before the help line and the rule.
                let tail = v.split_off(v.len().saturating_sub(2));
                v.extend(banner_identity(
                    p,
                    pinned,
                    profile.as_deref(),
                    *secret_changed,
                ));
                v.push(String::new());
                v.extend(tail);
                v
            }
            Output::Listening(addr) => vec![p.cyan(&format!("[i] also listening on {addr}"))],
            // Regenerations are routine; no need to interrupt the conversation.
            Output::KeyReady { bits, generation } if *generation == 0 => {
                vec![p.cyan(&format!("[i] RSA-{bits} key ready"))]
            }
            Output::KeyReady { .. } => vec![],
            Output::Notice(s) => vec![p.yellow(&format!("[*] {s}"))],
            Output::Error(e) => vec![p.red(&format!("[!] {e}"))],
            Output::Connecting { target } => {
                vec![p.cyan(&format!("[i] connecting to {target}..."))]
            }
            Output::ConnectFailed { target, error } => {
                vec![p.red(&format!("[!] could not connect to {target}: {error}"))]
            }
            Output::Message {
                name,
                at,
                text,
                private,
                ..
            } => self.message(name, *at, text, *private),
            Output::Sent {
                local,
                text,
                to,
                private,
                ..
            } => {
                self.sent.insert(
                    *local,
                    SentMessage {
                        text: text.clone(),
                        private: *private,
                        waiting: to.len(),
                        ok: Vec::new(),
                    },
                );
                vec![]
            }
            Output::Delivered { local, name, .. } => self.outcome(*local, name, None),
            Output::DeliveryFailed {
                local,
                name,
                reason,
                ..
            } => self.outcome(*local, name, Some(&reason.to_string())),
            Output::NotDelivered {
                local,
                name,
                reason,
                ..
            } => self.outcome(*local, name, Some(&reason.to_string())),
            Output::Queued {
                local,
                name,
                waiting,
                ..
            } => self.queued(*local, name, *waiting),
            Output::Sessions { rows, down } => self.sessions(rows, down),
            Output::Peers(rows) => self.peers(rows),
            Output::Stopped => vec![p.cyan("[i] bye")],
            other => self.peer_event(other),
        }
    }

    /// Lines about one peer: sessions coming and going, verification, discovery.
    fn peer_event(&self, o: &Output) -> Vec<String> {
        let p = self.p;
        let now = self.stamp(SystemTime::now());
        match o {
            Output::SessionEstablished {
                name,
                session,
                safety_number,
                lasts,
                verified,
                inbound,
                ..
            } => {
                let how = if *inbound {
                    "connected to you"
                } else {
                    "connected"
                };
                vec![
                    format!(
                        "{now} {} {} {}",
                        p.green(&format!("[+] {name}")),
                        p.green(how),
                        p.cyan(&format!("(session {session}, end-to-end encrypted)"))
                    ),
                    p.cyan(&format!(
                        "    safety number: {safety_number}  ({})",
                        match (lasts, verified) {
                            (true, true) => "verified: you compared it before".to_string(),
                            (true, false) =>
                                format!("it lasts: compare it once with 'verify {name}'"),
                            _ => format!("compare with 'verify {name}'"),
                        }
                    )),
                ]
            }
            Output::SessionRotated { name, epoch, .. } => vec![format!(
                "{now} {}",
                p.cyan(&format!("[i] new session keys with {name} (epoch {epoch})"))
            )],
            // Closed by us: it is not news that the peer "disconnected".
            Output::SessionClosed {
                name,
                reason: CloseReason::Shutdown,
                ..
            } => vec![format!(
                "{now} {}",
                p.cyan(&format!("[-] said goodbye to {name}"))
            )],
            Output::SessionClosed {
                name,
                reason: CloseReason::LocalClosed,
                ..
            } => vec![format!(
                "{now} {}",
                p.yellow(&format!("[-] you closed the session with {name}"))
            )],
            Output::SessionClosed { name, reason, .. } => vec![format!(
                "{now} {}",
                p.yellow(&format!("[-] {name} disconnected: {reason}"))
            )],
            Output::AuthFailed {
                peer,
                address,
                banned,
            } => {
                let from = address.map(|a| format!(" from {a}")).unwrap_or_default();
                let mut s = format!(
                    "[!] {}{from} tried to connect with a wrong secret",
                    short_peer(peer)
                );
                if *banned {
                    s.push_str(" (too many attempts: ignored for a while)");
                }
                vec![p.yellow(&s)]
            }
            Output::Verify {
                name,
                safety_number,
                peer,
                lasts,
                trust,
            } => {
                let mut v = vec![
                    p.cyan(&format!("Safety number with {name} ({}):", peer.to_base58())),
                    format!("    {}", p.bold(safety_number)),
                    p.cyan("    Compare it with theirs (in person or by phone). If they differ, someone is in the middle."),
                ];
                if *lasts {
                    v.push(p.cyan("    It lasts: the same in every session and after restarts."));
                    if *trust == TrustState::Verified {
                        v.push(p.cyan("    Trust: verified (you compared it)."));
                    } else {
                        v.push(p.cyan(&format!(
                            "    Trust: {trust}. Once compared, type 'trust {name}': no need again."
                        )));
                    }
                } else {
                    v.push(p.cyan(
                        "    It is for this session only: one of you runs without --profile.",
                    ));
                }
                v
            }
            Output::IdentityWarning {
                peer,
                claimed,
                known,
                known_name,
                verified,
                addr,
            } => {
                let state = if *verified { "verified" } else { "pinned" };
                let shown = sanitize::name(known_name);
                let what = match addr {
                    Some(a) => format!("answered at {a}, an address of {shown}"),
                    None => format!("claims the name {}", sanitize::name(claimed)),
                };
                vec![p.red(&format!(
                    "WARNING: {shown} ({}, {state}) is known with another identity: this peer \
                     {} {what}. Session refused. If {shown} really has a new identity, \
                     `forget {shown}` and connect again.",
                    short_id(known),
                    short_id(peer),
                ))]
            }
            Output::BlockedPeerRefused { peer, name } => vec![p.yellow(&format!(
                "[*] {} ({}) is blocked: its session was closed (`unblock` to let it in)",
                sanitize::name(name),
                short_id(peer)
            ))],
            Output::TrustChanged { peer, name, change } => {
                let id = short_id(peer);
                vec![p.green(&match change {
                    TrustChange::Trusted => format!(
                        "[+] {name} ({id}) is verified: its safety number is recorded as compared"
                    ),
                    TrustChange::Forgotten => format!(
                        "[-] {name} ({id}) is forgotten: its name and addresses are no longer pinned"
                    ),
                    TrustChange::Blocked => format!(
                        "[-] {name} ({id}) is blocked: its sessions are refused (`unblock {name}` to undo)"
                    ),
                    TrustChange::Unblocked => format!("[+] {name} ({id}) is no longer blocked"),
                })]
            }
            Output::SecretChanged {
                secret,
                conn_strings,
                pinned,
                saved,
            } => {
                let mut v = vec![p.green(&format!(
                    "[+] new secret: {secret}. Sessions stay; connection strings given out before no \
                     longer work{}",
                    if *saved { " (saved in the profile)" } else { "" }
                ))];
                v.push("New connection strings:".into());
                v.extend(conn_strings.iter().map(|c| p.green(c)));
                v.push("Pinned:".into());
                v.extend(pinned.iter().map(|c| p.green(c)));
                v
            }
            Output::Discovered { peer, addrs } => vec![p.cyan(&format!(
                "[i] discovered {} on the LAN ({})",
                short_peer(peer),
                addrs.first().map(|a| a.to_string()).unwrap_or_default()
            ))],
            Output::Expired { peer } => vec![p.cyan(&format!(
                "[i] {} is no longer seen on the LAN",
                short_peer(peer)
            ))],
            Output::Reconnecting {
                name,
                attempt,
                next_in,
                ..
            } => vec![format!(
                "{now} {}",
                p.yellow(&format!(
                    "[~] reconnecting to {name} (attempt {attempt}, next in {})",
                    short_wait(*next_in)
                ))
            )],
            Output::Waiting { name, .. } => vec![format!(
                "{now} {}",
                p.yellow(&format!(
                    "[~] waiting for {name} to reconnect (messages to {name} are queued)"
                ))
            )],
            Output::ReconnectStopped { name, error, .. } => vec![format!(
                "{now} {}",
                p.red(&format!("[!] stopped reconnecting to {name}: {error}"))
            )],
            Output::Disconnected { name, .. } => vec![format!(
                "{now} {}",
                p.yellow(&format!(
                    "[-] disconnected {name}: it cannot reconnect until you connect to it again"
                ))
            )],
            _ => vec![],
        }
    }

    /// A message: the first line stamped, the others indented under it. The text is the
    /// peer's: cleaned here, before it reaches the terminal.
    /// `[12:00:01] Alice: hi`, or `[12:00:01] Alice (private): hi` for a message the sender
    /// sent to us alone.
    fn message(&self, name: &str, at: SystemTime, text: &str, private: bool) -> Vec<String> {
        let text = sanitize::message(text);
        let mut lines = text.split('\n');
        let first = lines.next().unwrap_or_default();
        let how = if private { " (private)" } else { "" };
        let mut v = vec![format!(
            "{} {}{how}: {first}",
            self.stamp(at),
            self.p.green(name)
        )];
        for l in lines {
            v.push(format!("    {l}"));
        }
        v
    }

    fn outcome(&mut self, local: u64, name: &str, failure: Option<&str>) -> Vec<String> {
        let p = self.p;
        let Some(m) = self.sent.get_mut(&local) else {
            return vec![];
        };
        m.waiting = m.waiting.saturating_sub(1);
        let quote = short_quote(&m.text);
        let mut out = Vec::new();
        match failure {
            Some(reason) => {
                out.push(p.red(&format!("    ✗ {quote} not delivered to {name}: {reason}")))
            }
            None => m.ok.push(name.to_string()),
        }
        if m.waiting == 0 {
            if !m.ok.is_empty() {
                let how = if m.private { " (private)" } else { "" };
                out.push(p.green(&format!(
                    "    ✓ {quote} delivered to {}{how}",
                    m.ok.join(", ")
                )));
            }
            self.sent.remove(&local);
        }
        out
    }

    /// `    … "hi" queued for Bob (2 waiting): sent when the session returns`
    fn queued(&self, local: u64, name: &str, waiting: usize) -> Vec<String> {
        let Some(m) = self.sent.get(&local) else {
            return vec![];
        };
        vec![self.p.yellow(&format!(
            "    … {} queued for {name} ({waiting} waiting): sent when the session returns",
            short_quote(&m.text)
        ))]
    }

    fn sessions(&self, rows: &[SessionRow], down: &[LinkRow]) -> Vec<String> {
        let p = self.p;
        let down_lines = down.iter().map(|d| {
            let queued = match d.queued {
                0 => String::new(),
                n => format!(", {n} message(s) queued"),
            };
            p.yellow(&format!(
                "{:<16} {}{queued}",
                truncate(&d.name, 16),
                d.status
            ))
        });
        if rows.is_empty() {
            if !down.is_empty() {
                return down_lines.collect();
            }
            return vec![p.yellow("[*] no sessions yet: connect to a peer (see 'help')")];
        }
        // At most 80 columns: a terminal's default width.
        let mut v = vec![p.cyan(&format!(
            "{:<16} {:<8} {:<11} {:>5} {:>7} {:>9} {:>6} {:>6}",
            "PEER", "SESSION", "STATE", "EPOCH", "AGE", "NEXT KEYS", "SENT", "RECV"
        ))];
        for r in rows {
            let i = &r.info;
            let mut line = format!(
                "{:<16} {:<8} {:<11} {:>5} {:>7} {:>9} {:>6} {:>6}",
                truncate(&r.name, 16),
                i.id.short(),
                i.state.to_string(),
                i.epoch,
                human(i.age),
                human(i.next_rotation_in),
                i.messages_sent,
                i.messages_received
            );
            let rej = i.rejections.total();
            if rej > 0 {
                line.push_str(&p.yellow(&format!("  ({rej} records refused)")));
            }
            v.push(line);
        }
        v.extend(down_lines);
        v
    }

    fn peers(&self, rows: &[PeerRow]) -> Vec<String> {
        let p = self.p;
        if rows.is_empty() {
            return vec![
                p.yellow("[*] no peers known: none discovered on the LAN and none connected"),
            ];
        }
        // At most 80 columns for usual addresses: the id is shown by its end (`verify`
        // and headless show it whole; the end of an id is enough to name the peer).
        let mut v = vec![p.cyan(&format!(
            "{:>3}  {:<12} {:<11} {:<8} {:<10} ADDRESS",
            "#", "NAME", "STATE", "TRUST", "PEER ID"
        ))];
        for r in rows {
            let state = match (r.session, r.connected, r.discovered) {
                (Some(s), _, _) => s.to_string(),
                (None, _, _) if r.link.is_some() => match r.link {
                    Some(LinkStatus::Waiting) => "waiting".into(),
                    _ => "reconnect".into(),
                },
                (None, true, _) => "connected".into(),
                (None, false, true) => "discovered".into(),
                _ => "known".into(),
            };
            let id = r.peer.to_base58();
            let end = &id[id.len().saturating_sub(8)..];
            v.push(format!(
                "{:>3}  {:<12} {:<11} {:<8} {:<10} {}",
                r.index,
                truncate(r.name.as_deref().unwrap_or("-"), 12),
                state,
                r.trust.as_str(),
                format!("…{end}"),
                r.addrs.first().map(|a| a.to_string()).unwrap_or_default()
            ));
            if let Some(link) = &r.link {
                let queued = match r.queued {
                    0 => String::new(),
                    n => format!(", {n} message(s) queued"),
                };
                v.push(p.yellow(&format!("     {link}{queued}")));
            }
        }
        v
    }
}

/// The banner: who we are and how others reach us.
fn banner(
    p: Palette,
    name: &str,
    peer: &str,
    secret: &str,
    conn_strings: &[String],
    listen: &[libp2p::Multiaddr],
) -> Vec<String> {
    let mut v = vec![p.cyan(OWL), String::new()];
    v.push(p.cyan("==================== Connection Information ===================="));
    v.push(format!("ID: {}", p.green(name)));
    v.push(format!("Peer ID: {}", p.green(peer)));
    let addrs: Vec<&str> = conn_strings
        .iter()
        .map(|c| c.rsplit_once(':').map_or(c.as_str(), |(a, _)| a))
        .collect();
    if addrs.is_empty() {
        for l in listen {
            v.push(format!("Address: {l}"));
        }
    } else {
        for a in &addrs {
            v.push(format!("Address: {a}"));
        }
    }
    v.push(format!("Secret: {secret}"));
    v.push(String::new());
    if conn_strings.len() > 1 {
        v.push("Connection strings (copy one line; the first is your LAN address):".into());
    } else {
        v.push("Connection string (copy this line):".into());
    }
    for c in conn_strings {
        v.push(p.green(c));
    }
    v.push(String::new());
    v.push("Type 'help' to see available commands".into());
    v.push(p.cyan("================================================================="));
    v
}

/// The identity part of the banner: the pinned strings, and the profile.
fn banner_identity(
    p: Palette,
    pinned: &[String],
    profile: Option<&str>,
    secret_changed: bool,
) -> Vec<String> {
    let mut v = Vec::new();
    if !pinned.is_empty() {
        v.push("Pinned (the same, and only this node can answer it; prefer it):".to_string());
        for c in pinned {
            v.push(p.green(c));
        }
        v.push(String::new());
    }
    match profile {
        Some(name) => v.push(p.cyan(&format!(
            "Profile {name}: this identity and connection string stay the same across restarts"
        ))),
        None => {
            v.push(p.cyan("No profile: a new identity at every start (--profile NAME keeps one)"))
        }
    }
    if secret_changed {
        v.push(p.yellow("The secret is new: connection strings given out before no longer work"));
    }
    v
}

/// The end of a peer id, enough to tell two apart on screen (`12D3…abc123`).
fn short_id(peer: &libp2p::PeerId) -> String {
    let s = peer.to_base58();
    format!(
        "{}…{}",
        &s[..4.min(s.len())],
        &s[s.len().saturating_sub(6)..]
    )
}

/// A duration in a short human form (`5s`, `3m 02s`, `1h 04m`).
pub(crate) fn human(d: Duration) -> String {
    let s = d.as_secs();
    if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m {:02}s", s / 60, s % 60)
    } else {
        format!("{}h {:02}m", s / 3600, (s % 3600) / 60)
    }
}

fn short_quote(text: &str) -> String {
    // Our own text, but it may hold pasted escape sequences: cleaned as a peer's would be.
    let one_line: String = sanitize::message(text)
        .chars()
        .map(|c| if c == '\n' { ' ' } else { c })
        .collect();
    if one_line.chars().count() > 24 {
        format!("\"{}…\"", one_line.chars().take(23).collect::<String>())
    } else {
        format!("\"{one_line}\"")
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() > n {
        format!("{}…", s.chars().take(n - 1).collect::<String>())
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::DeliveryFailure;
    use libp2p::PeerId;

    #[test]
    fn plain_palette_has_no_escapes() {
        let mut r = Renderer::new(Palette::plain());
        let lines = r.render(&Output::Message {
            peer: PeerId::random(),
            name: "Bob".into(),
            at: SystemTime::now(),
            text: "hi".into(),
            private: false,
        });
        assert_eq!(lines.len(), 1);
        assert!(!lines[0].contains('\u{1b}'));
        assert!(lines[0].ends_with("] Bob: hi"));
        assert!(lines[0].starts_with('['));
    }

    #[test]
    fn a_private_message_is_marked_on_the_receivers_line() {
        let mut r = Renderer::new(Palette::plain());
        let lines = r.render(&Output::Message {
            peer: PeerId::random(),
            name: "Bob".into(),
            at: SystemTime::now(),
            text: "just you".into(),
            private: true,
        });
        assert_eq!(lines.len(), 1);
        assert!(
            lines[0].ends_with("] Bob (private): just you"),
            "{}",
            lines[0]
        );
    }

    #[test]
    fn delivery_lines_summarise_each_message() {
        let mut r = Renderer::new(Palette::plain());
        let (a, b) = (PeerId::random(), PeerId::random());
        r.render(&Output::Sent {
            local: 1,
            text: "hello".into(),
            to: vec![(a, "A".into()), (b, "B".into())],
            private: false,
            at: SystemTime::now(),
        });
        let l1 = r.render(&Output::Delivered {
            local: 1,
            peer: a,
            name: "A".into(),
        });
        assert!(l1.is_empty(), "wait for every recipient");
        let l2 = r.render(&Output::DeliveryFailed {
            local: 1,
            peer: b,
            name: "B".into(),
            reason: DeliveryFailure::Failed(noctua_chat::DeliveryError::Timeout),
        });
        assert_eq!(l2.len(), 2);
        assert!(l2[0].contains("not delivered to B: no receipt in time"));
        assert!(l2[1].contains("delivered to A"));
    }

    /// Issue 11, item 8: help and the tables fit a terminal of 80 columns.
    #[test]
    fn help_and_tables_fit_80_columns() {
        let r = Renderer::new(Palette::plain());
        for l in r.help().lines() {
            assert!(l.chars().count() <= 80, "{l:?}");
        }
        let rows = vec![PeerRow {
            index: 12,
            peer: PeerId::random(),
            name: Some("A_rather_long_name_indeed".into()),
            addrs: vec!["/ip4/192.168.100.200/tcp/54321".parse().expect("multiaddr")],
            connected: true,
            discovered: true,
            session: Some(noctua_chat::SessionState::Handshaking),
            link: None,
            queued: 0,
            trust: TrustState::Verified,
        }];
        for l in r.peers(&rows) {
            assert!(l.chars().count() <= 80, "{l:?}");
        }
        let reconnecting = LinkStatus::Reconnecting {
            attempt: 12,
            next_in: Duration::from_secs(59),
        };
        let rows = vec![PeerRow {
            session: None,
            link: Some(reconnecting),
            queued: 100,
            ..rows[0].clone()
        }];
        let lines = r.peers(&rows);
        assert!(
            lines[2].contains("reconnecting (attempt 12, next in 59 s), 100 message(s) queued"),
            "{lines:?}"
        );
        for l in lines {
            assert!(l.chars().count() <= 80, "{l:?}");
        }
        // The sessions header (rows have the same widths; a `SessionInfo` cannot be built
        // outside the protocol crate).
        let header = r.sessions(&[], &[]);
        assert_eq!(header.len(), 1, "an empty list is one line");
        let down = [LinkRow {
            name: "A_rather_long_name_indeed".into(),
            peer: PeerId::random(),
            status: reconnecting,
            queued: 3,
        }];
        let lines = r.sessions(&[], &down);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].contains("reconnecting (attempt 12"), "{lines:?}");
        assert!(lines[0].chars().count() <= 80, "{lines:?}");
    }

    #[test]
    fn our_own_text_is_cleaned_in_its_receipt() {
        let mut r = Renderer::new(Palette::plain());
        let a = PeerId::random();
        r.render(&Output::Sent {
            local: 1,
            text: "red\u{1b}[31m\u{1b}]0;title\u{7} text".into(),
            to: vec![(a, "A".into())],
            private: false,
            at: SystemTime::now(),
        });
        let l = r.render(&Output::Delivered {
            local: 1,
            peer: a,
            name: "A".into(),
        });
        assert_eq!(l, vec!["    ✓ \"red text\" delivered to A".to_string()]);
    }

    #[test]
    fn quotes_are_short_and_single_line() {
        assert_eq!(short_quote("a\nb"), "\"a b\"");
        assert!(short_quote(&"x".repeat(100)).chars().count() < 30);
    }
}
