//! What the node reports to its face: events come up one bounded channel as [`Output`]s.
//! Everything a peer chose (names, message text) is carried as the peer sent it, except
//! display names, which the node cleans and makes unique because it resolves them.

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use libp2p::{Multiaddr, PeerId};
use noctua_chat::{CloseReason, OpenError, SessionInfo, SessionState};

use crate::node::error::{CommandError, ConnectError, DeliveryFailure};
use crate::node::outbox::Undelivered;
use crate::node::reconnect::LinkStatus;
use crate::trust::TrustState;

/// One row of `sessions`.
#[derive(Debug, Clone)]
pub struct SessionRow {
    /// Display name.
    pub name: String,
    /// The peer.
    pub peer: PeerId,
    /// The snapshot.
    pub info: SessionInfo,
}

/// One row of `peers`.
#[derive(Debug, Clone)]
pub struct PeerRow {
    /// 1-based index, usable as `connect <n> <secret>`.
    pub index: usize,
    /// The peer.
    pub peer: PeerId,
    /// Display name if a session told us one.
    pub name: Option<String>,
    /// Addresses (discovered or connected).
    pub addrs: Vec<Multiaddr>,
    /// Whether a libp2p connection is open.
    pub connected: bool,
    /// Whether mDNS currently lists it.
    pub discovered: bool,
    /// Session state, if any.
    pub session: Option<SessionState>,
    /// Trust state: new, pinned, verified or blocked.
    pub trust: TrustState,
    /// Without a session: reconnecting, or waiting for the peer to come back.
    pub link: Option<LinkStatus>,
    /// Messages queued for it (sent when its session returns).
    pub queued: usize,
}

/// A peer whose session is down but expected back (for `sessions`).
#[derive(Debug, Clone)]
pub struct LinkRow {
    /// Display name.
    pub name: String,
    /// The peer.
    pub peer: PeerId,
    /// Reconnecting or waiting.
    pub status: LinkStatus,
    /// Messages queued for it.
    pub queued: usize,
}

/// What the user changed in the known peers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrustChange {
    /// `trust`: the lasting safety number was compared.
    Trusted,
    /// `forget`: everything about the peer was dropped.
    Forgotten,
    /// `block`: the identity is refused.
    Blocked,
    /// `unblock`.
    Unblocked,
}

/// What the node reports to its face.
#[derive(Debug, Clone)]
pub enum Output {
    /// Listening; the node is ready to be shown to the user.
    Ready {
        /// Our name.
        name: String,
        /// Our libp2p id.
        peer: PeerId,
        /// The secret (for the banner only).
        secret: String,
        /// Connection strings, one per usable address (LAN addresses first).
        conn_strings: Vec<String>,
        /// Every listen address.
        listen: Vec<Multiaddr>,
        /// The same strings pinned to our identity (`host:port:secret:PEERID`).
        pinned: Vec<String>,
        /// The profile's name, when the identity lasts (`--profile`).
        profile: Option<String>,
        /// The profile's secret was replaced at this start: old strings stop working.
        secret_changed: bool,
    },
    /// A new listen address appeared after start.
    Listening(Multiaddr),
    /// The RSA key pair is ready (or regenerated).
    KeyReady {
        /// Modulus size.
        bits: usize,
        /// Generation (0 first).
        generation: u64,
    },
    /// Something worth a line (yellow).
    Notice(String),
    /// A command failed (a line in red).
    Error(CommandError),
    /// A connect attempt started.
    Connecting {
        /// What we dial, as the user typed it (secret left out).
        target: String,
    },
    /// A connect attempt failed.
    ConnectFailed {
        /// What we dialed (secret left out).
        target: String,
        /// Why.
        error: ConnectError,
    },
    /// A session is active.
    SessionEstablished {
        /// The peer.
        peer: PeerId,
        /// Its display name (sanitized, unique among current peers).
        name: String,
        /// Short session id.
        session: String,
        /// The safety number.
        safety_number: String,
        /// Whether the number lasts (both sides keep their identity): the same in every
        /// session and after restarts.
        lasts: bool,
        /// Whether our user compared this peer's lasting number before (`trust`).
        verified: bool,
        /// Whether the peer opened it.
        inbound: bool,
    },
    /// A session moved to a new epoch.
    SessionRotated {
        /// The peer.
        peer: PeerId,
        /// Display name.
        name: String,
        /// New epoch.
        epoch: u32,
    },
    /// A session ended.
    SessionClosed {
        /// The peer.
        peer: PeerId,
        /// Display name.
        name: String,
        /// Why.
        reason: CloseReason,
    },
    /// Someone failed to authenticate to us.
    AuthFailed {
        /// The peer.
        peer: PeerId,
        /// Its address, if known.
        address: Option<IpAddr>,
        /// Whether it is now banned for a while.
        banned: bool,
    },
    /// A chat message arrived.
    Message {
        /// From.
        peer: PeerId,
        /// Display name (sanitized).
        name: String,
        /// Arrival time.
        at: SystemTime,
        /// Text, as the peer sent it: a face cleans it for display.
        text: String,
        /// The sender marked it private: sent to us alone (`msg`, `@peer` on its side).
        private: bool,
    },
    /// We sent a message (to one or several peers).
    Sent {
        /// Local id grouping the per-peer deliveries.
        local: u64,
        /// The text.
        text: String,
        /// Recipients.
        to: Vec<(PeerId, String)>,
        /// Whether it was a private message (`msg`), not a broadcast.
        private: bool,
        /// Time sent.
        at: SystemTime,
    },
    /// A sent message reached a peer.
    Delivered {
        /// Local id.
        local: u64,
        /// The peer.
        peer: PeerId,
        /// Display name.
        name: String,
    },
    /// A sent message did not reach a peer.
    DeliveryFailed {
        /// Local id.
        local: u64,
        /// The peer.
        peer: PeerId,
        /// Display name.
        name: String,
        /// Why.
        reason: DeliveryFailure,
    },
    /// Answer to `sessions`.
    Sessions {
        /// The protocol's sessions.
        rows: Vec<SessionRow>,
        /// Peers whose session is down but expected back.
        down: Vec<LinkRow>,
    },
    /// Answer to `peers`.
    Peers(Vec<PeerRow>),
    /// Answer to `verify`.
    Verify {
        /// The peer.
        peer: PeerId,
        /// Display name.
        name: String,
        /// The number to compare.
        safety_number: String,
        /// Whether it is the identity number (both sides keep their identity): the same
        /// in every session, so comparing it once is enough.
        lasts: bool,
        /// Trust state.
        trust: TrustState,
    },
    /// A peer showed up with another identity under a pinned name or at a pinned address:
    /// its session was closed at once.
    IdentityWarning {
        /// The identity that showed up.
        peer: PeerId,
        /// The name it claims (cleaned).
        claimed: String,
        /// The identity the name or address is pinned to.
        known: PeerId,
        /// The known peer's name.
        known_name: String,
        /// Whether the known peer was verified.
        verified: bool,
        /// The pinned address, for an address conflict.
        addr: Option<Multiaddr>,
    },
    /// A blocked identity opened a session: it was closed.
    BlockedPeerRefused {
        /// The peer.
        peer: PeerId,
        /// Its name (cleaned).
        name: String,
    },
    /// The user changed what we know about a peer.
    TrustChanged {
        /// The peer.
        peer: PeerId,
        /// Display name.
        name: String,
        /// What changed.
        change: TrustChange,
    },
    /// `new-secret`: the secret was replaced; sessions stay.
    SecretChanged {
        /// The new secret (for the screen only).
        secret: String,
        /// The new connection strings.
        conn_strings: Vec<String>,
        /// The same, pinned.
        pinned: Vec<String>,
        /// Whether it was saved to the profile (false without one).
        saved: bool,
    },
    /// mDNS found a peer.
    Discovered {
        /// The peer.
        peer: PeerId,
        /// Its addresses.
        addrs: Vec<Multiaddr>,
    },
    /// mDNS stopped seeing a peer.
    Expired {
        /// The peer.
        peer: PeerId,
    },
    /// A session with a known peer dropped and will be re-opened by itself (also after
    /// each failed attempt).
    Reconnecting {
        /// The peer.
        peer: PeerId,
        /// Display name.
        name: String,
        /// The next attempt (1-based).
        attempt: u32,
        /// When it starts.
        next_in: Duration,
    },
    /// A session dropped; only the peer can re-open it (it knows our secret, we do not
    /// know its): we wait for it, and queue messages meanwhile.
    Waiting {
        /// The peer.
        peer: PeerId,
        /// Display name.
        name: String,
    },
    /// Reconnecting to a peer stopped for good: it refused us, or our secret.
    ReconnectStopped {
        /// The peer.
        peer: PeerId,
        /// Display name.
        name: String,
        /// The last attempt's failure.
        error: OpenError,
    },
    /// The user disconnected a peer: no reconnecting, and its new handshakes are refused
    /// until the user connects to it again.
    Disconnected {
        /// The peer.
        peer: PeerId,
        /// Display name.
        name: String,
    },
    /// A message (`Sent` with this `local`) waits for `peer`'s session to return.
    Queued {
        /// Local id.
        local: u64,
        /// The peer.
        peer: PeerId,
        /// Display name.
        name: String,
        /// How many messages now wait for it.
        waiting: usize,
    },
    /// A queued message was given up: reported once, instead of a receipt.
    NotDelivered {
        /// Local id.
        local: u64,
        /// The peer.
        peer: PeerId,
        /// Display name.
        name: String,
        /// Why.
        reason: Undelivered,
    },
    /// The node stopped; nothing follows.
    Stopped,
}
