//! The per-peer state machine: everything about one remote peer (its connections, our opens
//! towards it, the handshakes in both roles, its session, the outgoing queue, rotations and
//! timers), as *input + now -> actions*, with no I/O.
//!
//! This is the middle level of a hierarchy of state machines (rust-libp2p's
//! `docs/coding-guidelines.md`, "hierarchical state machines"): the handshake
//! (`crate::handshake`) and the session with its epochs (`crate::session`) below it, the
//! router over every peer with the cross-peer budgets (`crate::peers`) above it, and the
//! `NetworkBehaviour` (`crate::behaviour`) on top, which only turns libp2p's events into
//! inputs and the [`Action`]s back into libp2p calls.
//!
//! What one peer's machine may read or change beyond itself (configuration, our key, the
//! failure limiters, the list of recently closed sessions, the outbound requests in flight,
//! the action list) is its [`Context`]; the budgets that count every peer (pending
//! handshakes, sessions) come in as a [`Budget`] computed by the router. Nothing here calls
//! `Instant::now()`: time is `Context::now`, set by whoever feeds an input, so the fuzzer
//! and the tests drive it on a virtual clock.
//!
//! The files split the machine by concern:
//! * `open.rs`: our opens and our side of a handshake (initiator);
//! * `inbound.rs`: requests from the peer (`HELLO`, `AUTH`, `ABORT`, records, rekeys);
//! * `answer.rs`: answers to our requests, and their failures;
//! * `send.rs`: the outgoing queue, rotation, keep-alive and closing;
//! * `connection.rs`: connections coming and going, failed dials;
//! * `timer.rs`: deadlines.

mod answer;
mod connection;
mod context;
mod inbound;
mod open;
mod refuse;
mod send;
#[cfg(test)]
mod tests;
mod timer;

use std::collections::VecDeque;
use std::time::Instant;

use libp2p::PeerId;
use libp2p::swarm::ConnectionId;

pub(crate) use context::{Budget, Context, DeferredHello, Failure, FailureKind, secs};

use crate::crypto::{AuthKey, Secret, ct_eq};
use crate::error::CloseReason;
use crate::handshake::{AuthChecked, AuthOkChecked, AwaitingAuthOk, Initiator, Responder};
use crate::offload::PrivateJob;
use crate::session::Session;
use crate::types::{Event, MessageId, OpenId, SessionId, SessionInfo};
use crate::wire::{ChatMessage, HS_ID_LEN, Record, Request, Response, SESSION_ID_LEN};

/// Stands for one outbound request (libp2p's `OutboundRequestId`): the machine names its
/// requests, the behaviour maps each name to libp2p's id and back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct ReqToken(pub(crate) u64);

/// Stands for the channel an inbound request must be answered on (libp2p's
/// `ResponseChannel`); the behaviour holds the channel under this name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct ChannelToken(pub(crate) u64);

/// What the machine asks its driver to do, in order.
#[derive(Debug)]
pub(crate) enum Action {
    /// Send `request` to `peer`; its answer or failure comes back under `token`.
    Send {
        peer: PeerId,
        token: ReqToken,
        request: Request,
    },
    /// Answer the request held under `channel`.
    Respond {
        channel: ChannelToken,
        response: Response,
    },
    /// Drop the request held under `channel` without an answer (a `HELLO` that waited for
    /// our key too long).
    Forget { channel: ChannelToken },
    /// Report an event to the application.
    Event(Event),
    /// Dial `peer` (if neither connected nor dialing).
    Dial { peer: PeerId },
    /// Keep these connections to `peer` open (a session exists) or let them idle out.
    KeepAlive {
        peer: PeerId,
        connections: Vec<ConnectionId>,
        keep: bool,
    },
    /// Close every connection to `peer` (it never authenticated in time).
    CloseConnections { peer: PeerId },
    /// Feed a tick no later than this.
    WakeAt(Instant),
    /// Run this private-key operation off the event loop and feed its result back with
    /// `Peers::on_private_done` (DESIGN-offload.md).
    PrivateOp(PrivateJob),
}

/// An open waiting for a session, with the secret it uses.
///
/// Keeping the secret's key beside the open lets the machine tell whether the session that
/// answers the open is one in which the peer proved *that* secret (SPEC.md §5.7.1): a
/// session only answers the opens it proves.
pub(crate) struct Open {
    pub(crate) id: OpenId,
    pub(crate) auth: AuthKey,
    /// Whether this open already yielded to a crossing handshake of the peer (SPEC.md
    /// §5.7.2: at most once).
    pub(crate) yielded: bool,
}

impl Open {
    pub(crate) fn new(id: OpenId, secret: &Secret) -> Self {
        Open {
            id,
            auth: secret.auth_key(),
            yielded: false,
        }
    }
}

/// A chat message waiting to be sent, or in flight.
#[derive(Debug, Clone)]
pub(crate) struct QueuedMessage {
    pub(crate) id: MessageId,
    pub(crate) wire: ChatMessage,
}

pub(crate) enum InitStage {
    SentHello(Initiator),
    SentAuth(AwaitingAuthOk),
    /// `AUTH_OK` came and its proof verified; our private key unwraps `wrapped_r` off the
    /// event loop (job `seq`). Towards everything else this is still `SentAuth`: as if the
    /// `AUTH_OK` were still on its way (DESIGN-offload.md).
    Unwrapping {
        checked: AuthOkChecked,
        record: Record,
        seq: u64,
    },
}

/// Our handshake towards the peer.
pub(crate) struct InitiatorHs {
    pub(crate) stage: InitStage,
    pub(crate) hs_id: [u8; HS_ID_LEN],
    pub(crate) started: Instant,
    /// The secret this handshake proves (the first waiting open's).
    pub(crate) auth: AuthKey,
    /// Whether this is already the one fresh start after a closed connection (SPEC.md §5.4).
    pub(crate) restarted: bool,
}

/// The peer's handshake towards us.
pub(crate) struct ResponderHs {
    pub(crate) state: Responder,
    pub(crate) started: Instant,
}

/// The peer's handshake once its `AUTH` proof verified, waiting for our private key's
/// result (DESIGN-offload.md). The `AUTH` is answered when the result comes back.
pub(crate) struct AuthPending {
    pub(crate) state: AuthChecked,
    /// The job whose result this waits for; any other result is stale.
    pub(crate) seq: u64,
    pub(crate) channel: ChannelToken,
    /// The address the `AUTH` came from (for the failure limiters).
    pub(crate) ip: Option<std::net::IpAddr>,
    /// When the handshake started (its deadline is unchanged).
    pub(crate) started: Instant,
}

/// The peer's `REKEY_COMMIT` waiting for our private key's result (DESIGN-offload.md). The
/// session's rotation stays `Replied` meanwhile, with its own deadline.
pub(crate) struct RekeyPending {
    pub(crate) seq: u64,
    pub(crate) session_id: [u8; SESSION_ID_LEN],
    pub(crate) epoch: u32,
    pub(crate) wrapped: Vec<u8>,
    pub(crate) channel: ChannelToken,
    /// The peer's later records on this session, in arrival order, at most [`HELD_RECORDS`]:
    /// inline they would have met the new epoch, so they are opened only once it is
    /// installed (or the rotation is gone), exactly as inline.
    pub(crate) held: VecDeque<(Record, ChannelToken)>,
}

/// Our rotation's `REKEY_REPLY` waiting for our private key's result (DESIGN-offload.md).
/// The session's rotation is `Unwrapping` meanwhile, with its own deadline.
pub(crate) struct ReplyPending {
    pub(crate) seq: u64,
    pub(crate) session_id: [u8; SESSION_ID_LEN],
    pub(crate) epoch: u32,
}

/// How many of the peer's records wait behind its `REKEY_COMMIT` while our private key
/// unwraps it; beyond this a record is answered `STALE_EPOCH`, which the sender answers by
/// sending its messages again (never lost). Four times the default in-flight window.
pub(crate) const HELD_RECORDS: usize = 64;

/// What one of our outbound requests was for, so that its answer or failure is handled
/// exactly once.
#[derive(Debug)]
pub(crate) enum Pending {
    Hello {
        peer: PeerId,
        hs_id: [u8; HS_ID_LEN],
    },
    Auth {
        peer: PeerId,
        hs_id: [u8; HS_ID_LEN],
    },
    Confirm {
        peer: PeerId,
        session_id: [u8; SESSION_ID_LEN],
        epoch: u32,
        seq: u64,
    },
    Chat {
        peer: PeerId,
        session_id: [u8; SESSION_ID_LEN],
        epoch: u32,
        seq: u64,
        messages: Vec<QueuedMessage>,
    },
    RekeyInit {
        peer: PeerId,
        session_id: [u8; SESSION_ID_LEN],
        new_epoch: u32,
    },
    RekeyCommit {
        peer: PeerId,
        session_id: [u8; SESSION_ID_LEN],
        new_epoch: u32,
    },
    Close {
        peer: PeerId,
        session_id: [u8; SESSION_ID_LEN],
        reason: CloseReason,
    },
    Ping {
        peer: PeerId,
        session_id: [u8; SESSION_ID_LEN],
        epoch: u32,
        seq: u64,
    },
    Abort {
        peer: PeerId,
    },
}

impl Pending {
    /// The peer the request went to.
    pub(crate) fn peer(&self) -> PeerId {
        match self {
            Pending::Hello { peer, .. }
            | Pending::Auth { peer, .. }
            | Pending::Confirm { peer, .. }
            | Pending::Chat { peer, .. }
            | Pending::RekeyInit { peer, .. }
            | Pending::RekeyCommit { peer, .. }
            | Pending::Close { peer, .. }
            | Pending::Ping { peer, .. }
            | Pending::Abort { peer } => *peer,
        }
    }
}

/// Everything we track about one peer.
pub(crate) struct Peer {
    pub(crate) id: PeerId,
    pub(crate) connections: Vec<ConnectionId>,
    pub(crate) session: Option<Session>,
    /// Whether `SessionEstablished` was emitted for the current session.
    pub(crate) announced: bool,
    /// The secret the peer proved in the handshake of the current session: the one our
    /// `AUTH` used if we opened it, our own if the peer did (SPEC.md §5.7.1).
    pub(crate) session_proves: Option<AuthKey>,
    /// The handshake that produced the current session, so that an `ABORT` for another
    /// (older) handshake leaves it alone (SPEC.md §5.4).
    pub(crate) session_hs: Option<[u8; HS_ID_LEN]>,
    /// Since when our opens wait for the peer's crossing handshake, having yielded ours
    /// (SPEC.md §5.7.2): they fail if it has not completed `handshake_timeout` later.
    pub(crate) yielded_at: Option<Instant>,
    pub(crate) initiator: Option<InitiatorHs>,
    /// Our handshake that gave way to a crossing one after its `AUTH` had left, with the
    /// secret it proved: an `AUTH_FAILED` answering it still says that secret is wrong, so
    /// the opens that use it fail at once instead of trying it again (issue 10, item 2).
    pub(crate) abandoned: Option<([u8; HS_ID_LEN], AuthKey)>,
    pub(crate) responder: Option<ResponderHs>,
    /// The peer's handshake waiting for a private-key result (after `responder`).
    pub(crate) auth_pending: Option<AuthPending>,
    /// The peer's `REKEY_COMMIT` waiting for a private-key result.
    pub(crate) rekey_pending: Option<RekeyPending>,
    /// Our rotation's `REKEY_REPLY` waiting for a private-key result.
    pub(crate) reply_pending: Option<ReplyPending>,
    /// Opens answered by the next session established with this peer.
    pub(crate) opens: Vec<Open>,
    /// Opens waiting for a connection or for our RSA key, with the secret to use.
    pub(crate) waiting: Vec<(OpenId, Secret, Instant)>,
    pub(crate) queue: VecDeque<QueuedMessage>,
    pub(crate) in_flight: usize,
    pub(crate) ping_in_flight: bool,
    /// Since when the peer is connected without any session or handshake.
    pub(crate) idle_since: Option<Instant>,
    /// Set where the machine may have become empty: the router then forgets it.
    pub(crate) gc: bool,
}

impl Peer {
    pub(crate) fn new(id: PeerId) -> Self {
        Peer {
            id,
            connections: Vec::new(),
            session: None,
            announced: false,
            session_proves: None,
            session_hs: None,
            yielded_at: None,
            initiator: None,
            abandoned: None,
            responder: None,
            auth_pending: None,
            rekey_pending: None,
            reply_pending: None,
            opens: Vec::new(),
            waiting: Vec::new(),
            queue: VecDeque::new(),
            in_flight: 0,
            ping_in_flight: false,
            idle_since: None,
            gc: false,
        }
    }

    /// Whether the peer has a handshake towards us in progress (answered `CHALLENGE`, or
    /// `AUTH` waiting for our private key).
    pub(crate) fn peer_handshaking(&self) -> bool {
        self.responder.is_some() || self.auth_pending.is_some()
    }

    /// Nothing left worth keeping.
    pub(crate) fn is_empty(&self) -> bool {
        self.connections.is_empty()
            && self.session.is_none()
            && self.initiator.is_none()
            && self.responder.is_none()
            && self.auth_pending.is_none()
            && self.rekey_pending.is_none()
            && self.reply_pending.is_none()
            && self.opens.is_empty()
            && self.waiting.is_empty()
            && self.queue.is_empty()
    }

    pub(crate) fn is_unauthenticated_idle(&self) -> bool {
        !self.connections.is_empty()
            && self.session.is_none()
            && self.initiator.is_none()
            && self.responder.is_none()
            && self.auth_pending.is_none()
            && self.waiting.is_empty()
    }

    /// This peer's share of the pending-handshake budget (a held `HELLO` is counted by the
    /// context).
    pub(crate) fn handshakes(&self) -> usize {
        usize::from(self.initiator.is_some())
            + usize::from(self.responder.is_some())
            + usize::from(self.auth_pending.is_some())
            + self.waiting.len()
    }

    /// Whether this peer's machine holds the request under `channel` for later (an `AUTH`
    /// or `REKEY_COMMIT` waiting for our private key, or a record waiting behind the latter).
    pub(crate) fn holds(&self, channel: ChannelToken) -> bool {
        self.auth_pending
            .as_ref()
            .is_some_and(|a| a.channel == channel)
            || self
                .rekey_pending
                .as_ref()
                .is_some_and(|r| r.channel == channel || r.held.iter().any(|(_, c)| *c == channel))
    }

    /// How many of this peer's steps wait for a private-key result.
    pub(crate) fn private_pending(&self) -> usize {
        usize::from(self.auth_pending.is_some())
            + usize::from(
                self.initiator
                    .as_ref()
                    .is_some_and(|h| matches!(h.stage, InitStage::Unwrapping { .. })),
            )
            + usize::from(self.rekey_pending.is_some())
            + usize::from(self.reply_pending.is_some())
    }

    pub(crate) fn session_is(&self, id: &[u8; SESSION_ID_LEN]) -> bool {
        self.session.as_ref().is_some_and(|s| s.id == *id)
    }

    /// Whether the session proved `open`'s secret (constant-time comparison of the derived
    /// keys): one we opened with that very secret, or one the peer opened if the open's
    /// secret is our own.
    pub(crate) fn proves(&self, open: &Open) -> bool {
        self.session_proves
            .as_ref()
            .is_some_and(|k| ct_eq(k.as_bytes(), open.auth.as_bytes()))
    }

    /// A snapshot of the session, for listing.
    pub(crate) fn info(&self, now: Instant) -> Option<SessionInfo> {
        let s = self.session.as_ref()?;
        Some(SessionInfo {
            peer: s.peer,
            id: SessionId(s.id),
            role: s.role,
            state: s.state,
            epoch: s.epoch(),
            remote_name: s.remote_name.clone(),
            safety_number: s.safety_number.clone(),
            safety_number_lasts: s.safety_number_lasts,
            remote_lasting: s.remote_lasting,
            age: now.saturating_duration_since(s.created),
            next_rotation_in: s.rotation_due_at().saturating_duration_since(now),
            messages_sent: s.messages_sent,
            messages_received: s.messages_received,
            queued: self.queue.len(),
            rejections: s.rejections,
        })
    }

    /// Tells the handlers of every connection to keep it open, or not.
    pub(crate) fn set_keep_alive(&self, cx: &mut Context, keep: bool) {
        if !self.connections.is_empty() {
            cx.push(Action::KeepAlive {
                peer: self.id,
                connections: self.connections.clone(),
                keep,
            });
        }
    }
}
