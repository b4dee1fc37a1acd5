//! Error and reason types: what went wrong, in words a user can act on.

use std::fmt;

use libp2p::request_response::OutboundFailure;
use libp2p::swarm::DialError;

use crate::peer::{Failure, FailureKind};

/// The reject codes of SPEC.md §9, also used as `ABORT` and `CLOSE` codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RejectCode {
    /// The frame or plaintext does not parse.
    Malformed,
    /// A frame or field is over a limit.
    TooLarge,
    /// Unknown protocol version.
    UnsupportedVersion,
    /// The RSA public key is not acceptable.
    BadKey,
    /// The secret proof is wrong.
    AuthFailed,
    /// No such pending handshake.
    UnknownHandshake,
    /// No such session with this peer.
    UnknownSession,
    /// The session is closing.
    SessionClosed,
    /// The epoch's keys are gone.
    StaleEpoch,
    /// An epoch that never existed.
    UnknownEpoch,
    /// The sequence number was already accepted.
    Replayed,
    /// The sequence number is too far behind.
    OutOfWindow,
    /// Decryption failed.
    DecryptFailed,
    /// Our own record sent back to us.
    Reflected,
    /// Too many failed authentications.
    RateLimited,
    /// Session or handshake limit reached.
    Busy,
    /// Simultaneous rotation, lost by the sender.
    RotationConflict,
    /// Valid message at the wrong moment.
    BadState,
    /// Simultaneous handshake, lost by the sender.
    HandshakeConflict,
    /// The receiver's user does not accept sessions from this peer (it ended the session
    /// with `disconnect` or blocked the peer).
    Refused,
    /// The user ended the session (`CLOSE`/`ABORT` only).
    UserClosed,
    /// The node is shutting down (`CLOSE`/`ABORT` only).
    Shutdown,
    /// A new session replaced this one (`CLOSE`/`ABORT` only).
    Replaced,
    /// A code this implementation does not know.
    Unknown(u16),
}

impl RejectCode {
    /// The wire value.
    pub fn to_u16(self) -> u16 {
        match self {
            RejectCode::Malformed => 1,
            RejectCode::TooLarge => 2,
            RejectCode::UnsupportedVersion => 3,
            RejectCode::BadKey => 4,
            RejectCode::AuthFailed => 5,
            RejectCode::UnknownHandshake => 6,
            RejectCode::UnknownSession => 7,
            RejectCode::SessionClosed => 8,
            RejectCode::StaleEpoch => 9,
            RejectCode::UnknownEpoch => 10,
            RejectCode::Replayed => 11,
            RejectCode::OutOfWindow => 12,
            RejectCode::DecryptFailed => 13,
            RejectCode::Reflected => 14,
            RejectCode::RateLimited => 15,
            RejectCode::Busy => 16,
            RejectCode::RotationConflict => 17,
            RejectCode::BadState => 18,
            RejectCode::HandshakeConflict => 19,
            RejectCode::Refused => 20,
            RejectCode::UserClosed => 100,
            RejectCode::Shutdown => 101,
            RejectCode::Replaced => 102,
            RejectCode::Unknown(v) => v,
        }
    }

    /// From the wire value; unknown values are kept as [`RejectCode::Unknown`].
    pub fn from_u16(v: u16) -> Self {
        match v {
            1 => RejectCode::Malformed,
            2 => RejectCode::TooLarge,
            3 => RejectCode::UnsupportedVersion,
            4 => RejectCode::BadKey,
            5 => RejectCode::AuthFailed,
            6 => RejectCode::UnknownHandshake,
            7 => RejectCode::UnknownSession,
            8 => RejectCode::SessionClosed,
            9 => RejectCode::StaleEpoch,
            10 => RejectCode::UnknownEpoch,
            11 => RejectCode::Replayed,
            12 => RejectCode::OutOfWindow,
            13 => RejectCode::DecryptFailed,
            14 => RejectCode::Reflected,
            15 => RejectCode::RateLimited,
            16 => RejectCode::Busy,
            17 => RejectCode::RotationConflict,
            18 => RejectCode::BadState,
            19 => RejectCode::HandshakeConflict,
            20 => RejectCode::Refused,
            100 => RejectCode::UserClosed,
            101 => RejectCode::Shutdown,
            102 => RejectCode::Replaced,
            other => RejectCode::Unknown(other),
        }
    }
}

impl fmt::Display for RejectCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            RejectCode::Malformed => "malformed message",
            RejectCode::TooLarge => "message too large",
            RejectCode::UnsupportedVersion => "unsupported protocol version",
            RejectCode::BadKey => "unacceptable RSA key",
            RejectCode::AuthFailed => "authentication failed",
            RejectCode::UnknownHandshake => "unknown handshake",
            RejectCode::UnknownSession => "unknown session",
            RejectCode::SessionClosed => "session closed",
            RejectCode::StaleEpoch => "stale epoch",
            RejectCode::UnknownEpoch => "unknown epoch",
            RejectCode::Replayed => "replayed record",
            RejectCode::OutOfWindow => "record outside the replay window",
            RejectCode::DecryptFailed => "decryption failed",
            RejectCode::Reflected => "reflected record",
            RejectCode::RateLimited => "rate limited",
            RejectCode::Busy => "peer busy",
            RejectCode::RotationConflict => "rotation conflict",
            RejectCode::BadState => "unexpected message",
            RejectCode::HandshakeConflict => "handshake conflict",
            RejectCode::Refused => "refused by the peer's user",
            RejectCode::UserClosed => "closed by the user",
            RejectCode::Shutdown => "node shutting down",
            RejectCode::Replaced => "replaced by a new session",
            RejectCode::Unknown(v) => return write!(f, "unknown code {v}"),
        };
        f.write_str(s)
    }
}

/// Why opening a session failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The address could not be dialed (unreachable host, closed port, ...).
    #[error("could not connect: {0}")]
    Dial(String),
    /// The address was given with the peer's identity (`/p2p/PEERID`, a pinned connection
    /// string) and another identity answered there: nothing was opened (SPEC.md §4).
    #[error("this is not the peer you were given: expected {expected}, found {found}")]
    WrongPeer {
        /// The identity the address was pinned to (`/p2p/PEER`).
        expected: libp2p::PeerId,
        /// The identity that answered.
        found: libp2p::PeerId,
    },
    /// The peer answered but does not speak `/noctua/chat/2.0.0`.
    #[error("the peer does not speak the Noctua chat protocol")]
    UnsupportedProtocol,
    /// The peer refused our proof: the secret we used is not its secret.
    #[error("wrong secret: the peer refused our proof")]
    WrongSecret,
    /// The peer's proof did not verify: it does not know the secret (or is an impostor).
    #[error("the peer failed to prove it knows the secret")]
    PeerAuthFailed,
    /// No session proved the secret this open was given: the peer's handshake crossed ours
    /// and proved only our own secret, or its claim that its handshake goes ahead
    /// (`HANDSHAKE_CONFLICT`) did not hold (SPEC.md §5.7.1, §5.7.2).
    #[error("the peer at that address did not prove the secret you gave")]
    NotProven,
    /// We sent too many failed attempts; the peer refuses us for a while.
    #[error("the peer is rate-limiting us after failed attempts (retry in {0} s)")]
    RateLimited(u32),
    /// The peer is at its session or handshake limit.
    #[error("the peer is busy (session or handshake limit reached)")]
    Busy,
    /// No answer within the handshake timeout.
    #[error("the handshake timed out")]
    Timeout,
    /// The connection closed during the handshake.
    #[error("the connection closed during the handshake")]
    ConnectionClosed,
    /// A session with this peer is already active.
    #[error("a session with this peer is already active")]
    AlreadyActive,
    /// We are at our own session or handshake limit.
    #[error("local limit reached: {0}")]
    LocalLimit(&'static str),
    /// The peer sent something that breaks the protocol.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The peer refused the handshake with this code (any but `REFUSED`, which is
    /// [`OpenError::Refused`]).
    #[error("the peer refused the handshake: {0}")]
    Rejected(RejectCode),
    /// The peer answered `REFUSED` (SPEC.md §9): its user does not accept sessions from us
    /// (it disconnected or blocked us). Not worth retrying by itself.
    #[error("the peer refused the session: its user disconnected or blocked us")]
    Refused,
    /// We refuse this peer ([`crate::Behaviour::refuse_peer`]): the open was dropped, or not
    /// started. [`crate::Behaviour::allow_peer`] lets it in again.
    #[error("sessions with this peer are refused here (it was disconnected or blocked)")]
    RefusedHere,
}

/// Why [`crate::Behaviour::refuse_peer`] could not refuse a peer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RefuseError {
    /// The set of refused peers is full (SPEC.md §8).
    #[error("too many refused peers (at most {max}): allow one first")]
    Full {
        /// The limit.
        max: usize,
    },
}

/// Why a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// We closed it ([`crate::Behaviour::close_session`]).
    LocalClosed,
    /// The peer sent `CLOSE` with this code.
    RemoteClosed(RejectCode),
    /// The last connection to the peer closed.
    ConnectionLost,
    /// The peer did not answer a keep-alive or a message in time.
    PeerUnresponsive,
    /// A rotation failed; keys could disagree, so the session ended.
    RotationFailed(String),
    /// A new session with the same peer replaced it.
    Replaced,
    /// The peer no longer knows the session (it restarted or dropped it).
    RemoteForgot,
    /// The local node is shutting down.
    Shutdown,
    /// The session ran out of sequence numbers without rotating (should never happen).
    Exhausted,
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::LocalClosed => f.write_str("closed locally"),
            CloseReason::RemoteClosed(RejectCode::UserClosed) => {
                f.write_str("the peer closed the session")
            }
            CloseReason::RemoteClosed(RejectCode::Shutdown) => f.write_str("the peer left"),
            CloseReason::RemoteClosed(code) => write!(f, "the peer closed the session ({code})"),
            CloseReason::ConnectionLost => f.write_str("connection lost"),
            CloseReason::PeerUnresponsive => f.write_str("the peer stopped answering"),
            CloseReason::RotationFailed(why) => write!(f, "key rotation failed: {why}"),
            CloseReason::Replaced => f.write_str("replaced by a new session"),
            CloseReason::RemoteForgot => f.write_str("the peer no longer knows this session"),
            CloseReason::Shutdown => f.write_str("shutting down"),
            CloseReason::Exhausted => f.write_str("sequence numbers exhausted"),
        }
    }
}

/// Why a message was not delivered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeliveryError {
    /// No receipt within the request timeout; the peer may or may not have it.
    #[error("no receipt in time (the peer may not have received it)")]
    Timeout,
    /// The connection closed before the receipt arrived.
    #[error("connection closed before the receipt arrived")]
    ConnectionClosed,
    /// The peer refused the record.
    #[error("refused by the peer: {0}")]
    Rejected(RejectCode),
    /// The receipt did not verify.
    #[error("invalid receipt")]
    BadReceipt,
    /// The session ended before the message could be sent or confirmed.
    #[error("session closed: {0}")]
    SessionClosed(String),
    /// A stream-level failure.
    #[error("stream error: {0}")]
    Io(String),
}

/// Why [`crate::Behaviour::send_message`] refused a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// There is no session with that peer.
    #[error("no session with this peer")]
    NoSession,
    /// The session is closing.
    #[error("the session is closing")]
    Closing,
    /// The text is over the message size limit.
    #[error("message too long ({len} bytes, limit {max})")]
    TooLarge {
        /// Length of the text in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Too many messages are already waiting for this peer.
    #[error("too many messages waiting for this peer")]
    QueueFull,
}

/// Why a session operation (rotate, close) could not be done.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// No session with that peer.
    #[error("no session with this peer")]
    NoSession,
    /// The session is not active (still handshaking, already rotating or closing).
    #[error("the session is {0}")]
    NotActive(crate::SessionState),
}

// ---------------------------------------------------------------------------------------
// libp2p's errors, turned into ours
// ---------------------------------------------------------------------------------------

/// libp2p's outbound failure, reduced to what the core decides on.
pub(crate) fn failure(error: &OutboundFailure) -> Failure {
    use OutboundFailure as F;
    let kind = match error {
        F::DialFailure => FailureKind::DialFailure,
        F::Timeout => FailureKind::Timeout,
        F::ConnectionClosed => FailureKind::ConnectionClosed,
        F::UnsupportedProtocols => FailureKind::UnsupportedProtocols,
        F::Io(e) if refused_protocol(e) => FailureKind::RefusedProtocol,
        F::Io(e) => FailureKind::Io(e.to_string()),
    };
    Failure {
        kind,
        text: error.to_string(),
    }
}

/// Whether a request failed because the peer refused our protocol. With multistream-select
/// `V1Lazy` (which the node uses) the request is written together with the protocol
/// proposal, so the refusal only shows when the answer is read, as an I/O error that
/// carries the negotiation error.
fn refused_protocol(e: &std::io::Error) -> bool {
    use libp2p::core::upgrade::NegotiationError;
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<NegotiationError>())
        .is_some_and(|n| matches!(n, NegotiationError::Failed))
}

/// One line a user can read, from libp2p's nested dial errors.
pub(crate) fn describe_dial_error(e: &DialError) -> String {
    match e {
        DialError::LocalPeerId { .. } => "that address is this node".into(),
        DialError::NoAddresses => "no known address for that peer".into(),
        DialError::DialPeerConditionFalse(_) => "already dialing that peer".into(),
        DialError::Aborted => "dial aborted".into(),
        DialError::WrongPeerId { .. } => "a different peer answered at that address".into(),
        DialError::Denied { cause } => format!("connection refused locally: {cause}"),
        DialError::Transport(errors) => {
            let mut parts: Vec<String> = errors
                .iter()
                .map(|(_, err)| {
                    let mut msg = err.to_string();
                    let mut src = std::error::Error::source(err);
                    while let Some(s) = src {
                        msg = s.to_string();
                        src = s.source();
                    }
                    msg
                })
                .collect();
            parts.dedup();
            if parts.is_empty() {
                "transport error".into()
            } else {
                parts.join("; ")
            }
        }
    }
}
