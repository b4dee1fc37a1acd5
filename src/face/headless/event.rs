//! The headless event schema (version [`SCHEMA_VERSION`]), as types: what `--headless`
//! writes, one [`EventLine`] per line, and what readers (the lab, the tests, any script
//! in Rust) parse back. `HEADLESS.md` documents the same schema for other languages.
//!
//! On the wire every line is one JSON object: the event's fields, `event` (its kind, in
//! snake case) and `ts`, with the keys in alphabetical order (what schema 1 always wrote).

use serde::{Deserialize, Serialize};

/// The schema version written in the `ready` event.
pub const SCHEMA_VERSION: u32 = 1;

/// One line of the event stream: an event and when it was written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventLine {
    /// The event.
    #[serde(flatten)]
    pub event: Event,
    /// When it was written: Unix time in milliseconds.
    pub ts: u64,
}

impl EventLine {
    /// The line as written: a JSON object with its keys sorted, without a newline.
    pub fn to_json(&self) -> String {
        // Through `Value`, whose maps keep their keys sorted: the order schema 1 always had.
        match serde_json::to_value(self) {
            Ok(v) => v.to_string(),
            // Only maps with non-string keys fail to serialize; the schema has none.
            Err(e) => format!(
                r#"{{"event":"error","message":{},"ts":{}}}"#,
                serde_json::Value::String(e.to_string()),
                self.ts
            ),
        }
    }

    /// Parses one line of the event stream.
    pub fn parse(line: &str) -> Result<EventLine, serde_json::Error> {
        serde_json::from_str(line)
    }
}

/// A headless event. Peers are identified by `peer_id` (the libp2p id, base58); a `name`
/// is the display name shown in the terminal (cleaned and unique among current peers; it
/// is chosen by the peer and is not an authenticated identity).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// First line; the node is listening.
    Ready {
        /// [`SCHEMA_VERSION`].
        schema: u32,
        /// Our name.
        name: String,
        /// Our peer id.
        peer_id: String,
        /// `host:port:secret` strings others can connect with.
        conn_strings: Vec<String>,
        /// Every listen address (multiaddrs).
        listen: Vec<String>,
        /// The same strings pinned to our identity: `host:port:secret:PEERID`.
        #[serde(default)]
        pinned_conn_strings: Vec<String>,
        /// The profile's name (`--profile`), if the identity lasts.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        profile: Option<String>,
        /// The profile's secret was replaced at this start (`--new-secret`): strings
        /// given out before no longer work.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        secret_changed: bool,
    },
    /// A listen address appeared later.
    Listening {
        /// The multiaddr.
        address: String,
    },
    /// The RSA key pair exists (generation 0), or was regenerated.
    KeyReady {
        /// Modulus size.
        bits: usize,
        /// Generation.
        generation: u64,
    },
    /// mDNS found a peer.
    Discovered {
        /// The peer.
        peer_id: String,
        /// Its addresses (multiaddrs).
        addrs: Vec<String>,
    },
    /// mDNS no longer sees the peer.
    Expired {
        /// The peer.
        peer_id: String,
    },
    /// A `connect` started.
    Connecting {
        /// What is dialed (secret left out).
        target: String,
    },
    /// A `connect` failed.
    ConnectFailed {
        /// What was dialed.
        target: String,
        /// Why, one sentence.
        error: String,
    },
    /// A session is active.
    SessionEstablished {
        /// The peer.
        peer_id: String,
        /// Its display name.
        name: String,
        /// Short session id (8 hex digits).
        session: String,
        /// The safety number to compare.
        safety_number: String,
        /// Whether the number lasts (both sides keep their identity); absent when not.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        lasts: bool,
        /// Whether our user compared this lasting number before (`trust`); absent when not.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        verified: bool,
        /// Whether the peer opened it.
        inbound: bool,
    },
    /// The session moved to new keys.
    SessionRotated {
        /// The peer.
        peer_id: String,
        /// Its display name.
        name: String,
        /// The new epoch.
        epoch: u32,
    },
    /// The session ended.
    SessionClosed {
        /// The peer.
        peer_id: String,
        /// Its display name.
        name: String,
        /// Why (`connection lost`, `the peer left`, ...).
        reason: String,
    },
    /// A peer tried to connect with a wrong secret.
    AuthFailed {
        /// The peer.
        peer_id: String,
        /// Its IP address, if known.
        address: Option<String>,
        /// Whether it is now ignored for a while.
        banned: bool,
    },
    /// A message arrived.
    Message {
        /// From.
        peer_id: String,
        /// Display name.
        name: String,
        /// Arrival, Unix time in milliseconds.
        received_ms: u64,
        /// The text (cleaned: no escape sequences or invisible characters).
        text: String,
        /// `true` when the sender sent it to us alone (its `msg`/`@peer`); absent for a
        /// broadcast.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        private: bool,
    },
    /// We sent a message; `id` groups its deliveries.
    Sent {
        /// Local id.
        id: u64,
        /// The text.
        text: String,
        /// When, Unix time in milliseconds.
        sent_ms: u64,
        /// Recipients.
        to: Vec<Recipient>,
        /// `true` for a private message (`msg`, `@peer`); absent for a broadcast.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        private: bool,
    },
    /// A peer confirmed message `id`.
    Delivered {
        /// Local id.
        id: u64,
        /// The peer.
        peer_id: String,
        /// Display name.
        name: String,
    },
    /// Message `id` did not reach that peer.
    DeliveryFailed {
        /// Local id.
        id: u64,
        /// The peer.
        peer_id: String,
        /// Display name.
        name: String,
        /// Why.
        reason: String,
    },
    /// Answer to `sessions`.
    Sessions {
        /// One entry per session.
        sessions: Vec<SessionEntry>,
        /// Peers whose session is down but expected back (absent when none).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        down: Vec<LinkEntry>,
    },
    /// Answer to `peers`.
    Peers {
        /// One entry per known peer.
        peers: Vec<PeerEntry>,
    },
    /// Answer to `verify`.
    Verify {
        /// The peer.
        peer_id: String,
        /// Display name.
        name: String,
        /// The number to compare.
        safety_number: String,
        /// Whether it is the identity number (the same in every session: compare once).
        #[serde(default)]
        lasts: bool,
        /// Trust state: `new`, `pinned`, `verified` or `blocked`.
        #[serde(default)]
        trust: String,
    },
    /// Another identity showed up under a pinned name or at a pinned address: its session
    /// was closed at once and nothing from it is shown.
    IdentityWarning {
        /// The identity that showed up.
        peer_id: String,
        /// The name it claims.
        name: String,
        /// The identity the name or address is pinned to.
        known_peer_id: String,
        /// That peer's name.
        known_name: String,
        /// Whether that peer was verified.
        verified: bool,
        /// The pinned address, for an address conflict.
        address: Option<String>,
    },
    /// A blocked identity opened a session: it was closed.
    BlockedRefused {
        /// The peer.
        peer_id: String,
        /// Its name.
        name: String,
    },
    /// `trust`: the user compared the lasting safety number.
    Trusted {
        /// The peer.
        peer_id: String,
        /// Display name.
        name: String,
    },
    /// `forget`: nothing is known about the peer any more.
    Forgotten {
        /// The peer.
        peer_id: String,
        /// Display name.
        name: String,
    },
    /// `block`: the identity is refused (kept in the profile).
    Blocked {
        /// The peer.
        peer_id: String,
        /// Display name.
        name: String,
    },
    /// `unblock`.
    Unblocked {
        /// The peer.
        peer_id: String,
        /// Display name.
        name: String,
    },
    /// `new-secret`: the connection secret was replaced; sessions stay.
    SecretChanged {
        /// The new connection strings.
        conn_strings: Vec<String>,
        /// The same, pinned.
        pinned_conn_strings: Vec<String>,
        /// Whether it was saved to the profile.
        saved: bool,
    },
    /// Something worth knowing (e.g. nobody to send to).
    Notice {
        /// One sentence.
        message: String,
    },
    /// A command failed.
    Error {
        /// One sentence.
        message: String,
    },
    /// A line was not a valid command.
    CommandError {
        /// The line.
        input: String,
        /// What is wrong, one sentence.
        message: String,
    },
    /// Answer to `help`.
    Help {
        /// The commands.
        commands: Vec<HelpEntry>,
    },
    /// A session with a known peer dropped; it will be re-opened by itself. Written when
    /// the session drops and after each failed attempt.
    Reconnecting {
        /// The peer.
        peer_id: String,
        /// Display name.
        name: String,
        /// The next attempt (1-based).
        attempt: u32,
        /// Milliseconds until it starts.
        next_in_ms: u64,
    },
    /// A session dropped and only the peer can re-open it (it dialed us): messages for it
    /// are queued until it does.
    Waiting {
        /// The peer.
        peer_id: String,
        /// Display name.
        name: String,
    },
    /// Reconnecting stopped for good (the peer refused us, or our secret).
    ReconnectStopped {
        /// The peer.
        peer_id: String,
        /// Display name.
        name: String,
        /// The last attempt's failure, one sentence.
        error: String,
    },
    /// `disconnect` ended the session (or the reconnecting); the peer's new handshakes are
    /// refused until we connect to it again.
    Disconnected {
        /// The peer.
        peer_id: String,
        /// Display name.
        name: String,
    },
    /// Message `id` waits for the peer's session to return (it is delivered then, with a
    /// `delivered` event, or reported once by `not_delivered`).
    Queued {
        /// Local id (of the `sent` event).
        id: u64,
        /// The peer.
        peer_id: String,
        /// Display name.
        name: String,
        /// How many messages wait for this peer now.
        waiting: usize,
    },
    /// Queued message `id` was given up: reported once, instead of `delivered`.
    NotDelivered {
        /// Local id.
        id: u64,
        /// The peer.
        peer_id: String,
        /// Display name.
        name: String,
        /// `expired`, `exit`, `disconnected`, `gave_up` or `outbox_full`.
        reason: String,
        /// Why, one sentence.
        message: String,
    },
    /// Last line.
    Stopped,
}

impl Event {
    /// The peer the event is about, for the events that name one.
    pub fn peer_id(&self) -> Option<&str> {
        match self {
            Event::Ready { peer_id, .. }
            | Event::Discovered { peer_id, .. }
            | Event::Expired { peer_id }
            | Event::SessionEstablished { peer_id, .. }
            | Event::SessionRotated { peer_id, .. }
            | Event::SessionClosed { peer_id, .. }
            | Event::AuthFailed { peer_id, .. }
            | Event::Message { peer_id, .. }
            | Event::Delivered { peer_id, .. }
            | Event::DeliveryFailed { peer_id, .. }
            | Event::Reconnecting { peer_id, .. }
            | Event::Waiting { peer_id, .. }
            | Event::ReconnectStopped { peer_id, .. }
            | Event::Disconnected { peer_id, .. }
            | Event::Queued { peer_id, .. }
            | Event::NotDelivered { peer_id, .. }
            | Event::Verify { peer_id, .. }
            | Event::IdentityWarning { peer_id, .. }
            | Event::BlockedRefused { peer_id, .. }
            | Event::Trusted { peer_id, .. }
            | Event::Forgotten { peer_id, .. }
            | Event::Blocked { peer_id, .. }
            | Event::Unblocked { peer_id, .. } => Some(peer_id),
            _ => None,
        }
    }
}

/// A recipient of a sent message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipient {
    /// The peer.
    pub peer_id: String,
    /// Display name.
    pub name: String,
}

/// One row of `sessions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionEntry {
    /// The peer.
    pub peer_id: String,
    /// Display name.
    pub name: String,
    /// Short session id.
    pub session: String,
    /// `handshaking`, `active`, `rotating` or `closing`.
    pub state: String,
    /// Who opened it.
    pub role: String,
    /// Key epoch.
    pub epoch: u32,
    /// Age in seconds.
    pub age_s: u64,
    /// Age, for people (`3m 02s`).
    pub age: String,
    /// Seconds until the next scheduled rotation.
    pub next_rotation_s: u64,
    /// Messages sent.
    pub sent: u64,
    /// Messages received.
    pub received: u64,
    /// Messages waiting to be sent.
    pub queued: usize,
    /// Records refused.
    pub refused: u64,
}

/// One row of `peers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerEntry {
    /// The peer's number: given when the node first met it, it never changes while the
    /// node runs; usable wherever a peer is named (`msg 2 hi`, `connect 2 <secret>`).
    pub index: usize,
    /// The peer.
    pub peer_id: String,
    /// Display name, if a session told us one.
    pub name: Option<String>,
    /// Whether a connection is open.
    pub connected: bool,
    /// Whether mDNS lists it.
    pub discovered: bool,
    /// Session state, if any (`active`, `handshaking`...): the same as `state`, under
    /// the name schema 1 gave it (in `sessions`, `session` is the session's id).
    pub session: Option<String>,
    /// Session state, if any: what `session` holds, under a name that says so.
    #[serde(default)]
    pub state: Option<String>,
    /// Addresses (multiaddrs).
    pub addrs: Vec<String>,
    /// Trust state: `new`, `pinned`, `verified` or `blocked`.
    #[serde(default)]
    pub trust: String,
    /// Without a session: `reconnecting` or `waiting` (absent otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    /// While reconnecting: the next attempt (1-based).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// While reconnecting: milliseconds until the next attempt (0: under way).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_in_ms: Option<u64>,
    /// Messages queued for it (absent when none).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub queued: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// A peer whose session is down but expected back (in `sessions`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkEntry {
    /// The peer.
    pub peer_id: String,
    /// Display name.
    pub name: String,
    /// `reconnecting` or `waiting`.
    pub link: String,
    /// While reconnecting: the next attempt (1-based).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// While reconnecting: milliseconds until the next attempt (0: under way).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_in_ms: Option<u64>,
    /// Messages queued for it.
    pub queued: usize,
}

/// One command of `help`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelpEntry {
    /// The command's syntax.
    pub command: String,
    /// What it does.
    pub description: String,
}
