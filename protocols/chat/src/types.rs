//! The crate's public vocabulary: ids, snapshots and the [`Event`]s the behaviour reports.
//! Shared by the peer machine (which produces events) and the behaviour (which hands them
//! to the swarm).

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use libp2p::{PeerId, StreamProtocol};

use crate::codec::PROTOCOL;
use crate::crypto::{SafetyNumber, hex};
use crate::error::{CloseReason, DeliveryError, OpenError};
use crate::session::{Rejections, SessionState};
use crate::wire::{ChatMessage, Role, SESSION_ID_LEN};

/// Identifies one call to [`Behaviour::connect`] or [`Behaviour::open_session`]; its outcome
/// is reported once, in [`Event::SessionEstablished`] or [`Event::OpenFailed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OpenId(pub(crate) u64);

impl fmt::Display for OpenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Identifies one message we sent; its fate is reported once, in
/// [`Event::MessageDelivered`] or [`Event::DeliveryFailed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(pub(crate) u64);

impl MessageId {
    /// The numeric value.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A session's id (derived from its handshake transcript; the same on both sides).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionId(pub(crate) [u8; SESSION_ID_LEN]);

impl SessionId {
    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; SESSION_ID_LEN] {
        &self.0
    }

    /// The first 8 hex digits, enough to tell sessions apart on screen.
    pub fn short(&self) -> String {
        hex(&self.0[..4])
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex(&self.0))
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({})", self.short())
    }
}

/// A snapshot of one session, for listing.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    /// The peer.
    pub peer: PeerId,
    /// The session id.
    pub id: SessionId,
    /// Our role in it.
    pub role: Role,
    /// Its state.
    pub state: SessionState,
    /// Current epoch (0 until the first rotation).
    pub epoch: u32,
    /// The peer's display name, once known.
    pub remote_name: Option<String>,
    /// The safety number to compare out of band.
    pub safety_number: SafetyNumber,
    /// Whether `safety_number` is the identity safety number (both sides keep their
    /// identity, SPEC.md §5.6): the same in every session with this peer, so comparing it
    /// once is enough. False: a per-session number.
    pub safety_number_lasts: bool,
    /// Whether the peer says it keeps its libp2p identity across restarts (its `PROFILE`'s
    /// lasting flag, SPEC.md §3.5).
    pub remote_lasting: bool,
    /// Time since the handshake.
    pub age: Duration,
    /// Time until the next scheduled rotation (zero if due or in progress).
    pub next_rotation_in: Duration,
    /// Chat messages sent (confirmed or not).
    pub messages_sent: u64,
    /// Chat messages received.
    pub messages_received: u64,
    /// Messages waiting to be sent.
    pub queued: usize,
    /// Records refused on this session, by cause.
    pub rejections: Rejections,
}

/// Counts of internal state, for tests and diagnostics ("nothing left behind").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StateCounts {
    /// Peers with any state at all (connections, sessions, handshakes, queues).
    pub peers: usize,
    /// Connections tracked.
    pub connections: usize,
    /// Sessions (any state).
    pub sessions: usize,
    /// Handshakes in progress (either role).
    pub handshakes: usize,
    /// Requests in flight.
    pub outbound_requests: usize,
    /// Messages queued, all peers.
    pub queued_messages: usize,
    /// `HELLO`s waiting for our RSA key.
    pub deferred_hellos: usize,
    /// Opens waiting for a connection or our key.
    pub waiting_opens: usize,
    /// Handshake and rotation steps waiting for a private-key result (off the event loop).
    pub private_pending: usize,
    /// Records of a peer waiting behind its `REKEY_COMMIT` while our key unwraps it.
    pub held_records: usize,
}

/// What the behaviour reports.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event {
    /// A new RSA key pair is in use: the one generated at start-up (not emitted when the
    /// configuration supplied a key), then each regeneration.
    KeyReady {
        /// Modulus size.
        bits: usize,
        /// 0 for the first key, then 1, 2, ...
        generation: u64,
        /// Short public-key fingerprint (not secret).
        fingerprint: String,
    },
    /// RSA key generation failed; it is retried.
    KeyGenerationFailed {
        /// Why.
        error: String,
    },
    /// A session is active: both sides proved the secret and confirmed the keys.
    SessionEstablished {
        /// The peer.
        peer: PeerId,
        /// The session id.
        session_id: SessionId,
        /// Our role.
        role: Role,
        /// The peer's display name (as it chose it; not an authenticated identity).
        remote_name: String,
        /// The safety number.
        safety_number: SafetyNumber,
        /// Whether the peer says it keeps its libp2p identity across restarts (SPEC.md
        /// §3.5).
        remote_lasting: bool,
        /// Whether `safety_number` is the identity safety number, the same in every session
        /// between the two identities (both sides last, SPEC.md §5.6); false: per session.
        safety_number_lasts: bool,
        /// The opens this session answers (empty if the peer opened it).
        opens: Vec<OpenId>,
    },
    /// An open failed.
    OpenFailed {
        /// Which open.
        open: OpenId,
        /// The peer, when known.
        peer: Option<PeerId>,
        /// Why.
        error: OpenError,
    },
    /// A peer tried to open a session with a wrong secret.
    InboundAuthFailed {
        /// The peer.
        peer: PeerId,
        /// Its IP address, when known.
        address: Option<IpAddr>,
        /// Whether this failure got the peer or its address banned for a while.
        banned: bool,
    },
    /// A session moved to a new epoch.
    SessionRotated {
        /// The peer.
        peer: PeerId,
        /// The session.
        session_id: SessionId,
        /// The new epoch.
        epoch: u32,
    },
    /// A session ended.
    SessionClosed {
        /// The peer.
        peer: PeerId,
        /// The session.
        session_id: SessionId,
        /// Why.
        reason: CloseReason,
    },
    /// A chat message arrived.
    MessageReceived {
        /// From whom.
        peer: PeerId,
        /// On which session.
        session_id: SessionId,
        /// The sender's display name at the time.
        remote_name: String,
        /// The message (its text is as the peer sent it: sanitize before display).
        message: ChatMessage,
    },
    /// A message we sent was confirmed by the peer.
    MessageDelivered {
        /// To whom.
        peer: PeerId,
        /// Which message.
        message: MessageId,
    },
    /// A message we sent was not delivered (or not confirmed).
    DeliveryFailed {
        /// To whom.
        peer: PeerId,
        /// Which message.
        message: MessageId,
        /// Why.
        error: DeliveryError,
    },
}

/// The protocol this behaviour speaks (for nodes that list their protocols).
pub fn protocol() -> StreamProtocol {
    PROTOCOL
}
