//! The crate's I/O-free protocol core, exposed for the fuzz targets in `fuzz/` only (feature
//! `fuzzing`). Not a stable API.
//!
//! A [`Node`] is what a [`crate::Behaviour`] drives: every per-peer state machine of one
//! node with the budgets they share. The fuzzer wires two of them back to back through a
//! simulated network and a virtual clock; tokens stand for libp2p's request ids and
//! response channels exactly as in the behaviour, so the same code runs in both.

use std::sync::Arc;
use std::time::Instant;

use curve25519_dalek::scalar::Scalar;
use libp2p::PeerId;
use libp2p::swarm::ConnectionId;

use crate::config::Config;
use crate::crypto::{self, EpochSecrets};
use crate::error::{SendError, SessionError};
use crate::handshake;
use crate::peer::{Action, ChannelToken, Failure, FailureKind, ReqToken};
use crate::peers::Peers;
use crate::types::{Event, MessageId, OpenId, SessionInfo, StateCounts};
use crate::wire::{Record, Request, Response, Role, SESSION_ID_LEN};

pub use crate::crypto::{RsaKeyPair, SafetyNumber, Secret};

/// A CPace share `enc(y · g)` (SPEC.md §5.1) for the handshake `hs_id` between `initiator`
/// and `responder` under `secret`, with the scalar `y` taken from `seed` (reduced modulo the
/// group order) so that a fuzz input stays deterministic. With it and
/// [`cpace_confirm_key`] a harness computes proofs as a hostile peer that knows the secret
/// would. A seed that reduces to zero gives the identity, which peers refuse.
pub fn cpace_share(
    secret: &Secret,
    hs_id: &[u8],
    initiator: &PeerId,
    responder: &PeerId,
    seed: &[u8; 64],
) -> [u8; 32] {
    let g = secret
        .auth_key()
        .generator(hs_id, &initiator.to_bytes(), &responder.to_bytes());
    let y = Scalar::from_bytes_mod_order_wide(seed);
    crypto::share_of(&y, &g)
}

/// A rotation's Diffie-Hellman share `enc(x · B)` (SPEC.md §7) with `x` taken from `seed`.
pub fn dh_share(seed: &[u8; 64]) -> [u8; 32] {
    crypto::dh_share(&Scalar::from_bytes_mod_order_wide(seed))
}

/// `K_conf` (SPEC.md §5.1) of a side whose scalar came from `seed` (see [`cpace_share`]),
/// given the peer's share and the transcript hash; `None` if the share is refused or `Z` is
/// the identity.
pub fn cpace_confirm_key(
    seed: &[u8; 64],
    peer_share: &[u8; 32],
    th: &[u8; 32],
) -> Option<[u8; 32]> {
    let y = Scalar::from_bytes_mod_order_wide(seed);
    let z = crypto::shared_secret(&y, &crypto::decode_share(peer_share)?)?;
    Some(*crypto::confirm_key(th, &z))
}

/// Why an outbound request failed (the kinds of libp2p's `OutboundFailure`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureCause {
    /// The peer could not be dialed.
    DialFailure,
    /// No answer in time.
    Timeout,
    /// The connection closed before the answer.
    ConnectionClosed,
    /// The peer does not speak the protocol.
    UnsupportedProtocols,
}

/// What a [`Node`] asks its driver to do (see `crate::peer::Action`).
#[derive(Debug)]
pub enum NodeAction {
    /// Send `request` to `peer`; answer with [`Node::on_response`] under `token`.
    Send {
        /// To whom.
        peer: PeerId,
        /// The request's name.
        token: u64,
        /// The request.
        request: Request,
    },
    /// Answer the request received under `channel`.
    Respond {
        /// The channel's name.
        channel: u64,
        /// The answer.
        response: Response,
    },
    /// Drop the request held under `channel` unanswered.
    Forget {
        /// The channel's name.
        channel: u64,
    },
    /// An event for the application.
    Event(Event),
    /// Dial `peer`.
    Dial {
        /// Whom.
        peer: PeerId,
    },
    /// Keep the connections to `peer` open, or not.
    KeepAlive {
        /// Whom.
        peer: PeerId,
        /// Keep them or not.
        keep: bool,
    },
    /// Close every connection to `peer`.
    CloseConnections {
        /// Whom.
        peer: PeerId,
    },
    /// Tick no later than this.
    WakeAt(Instant),
}

impl From<Action> for NodeAction {
    fn from(a: Action) -> Self {
        match a {
            Action::Send {
                peer,
                token,
                request,
            } => NodeAction::Send {
                peer,
                token: token.0,
                request,
            },
            Action::Respond { channel, response } => NodeAction::Respond {
                channel: channel.0,
                response,
            },
            Action::Forget { channel } => NodeAction::Forget { channel: channel.0 },
            Action::Event(e) => NodeAction::Event(e),
            Action::Dial { peer } => NodeAction::Dial { peer },
            Action::KeepAlive { peer, keep, .. } => NodeAction::KeepAlive { peer, keep },
            Action::CloseConnections { peer } => NodeAction::CloseConnections { peer },
            Action::WakeAt(at) => NodeAction::WakeAt(at),
        }
    }
}

/// One node's protocol core. The configuration must carry the RSA key
/// ([`Config::with_rsa_key`]): nothing here generates keys.
pub struct Node {
    core: Peers,
    next_open: u64,
}

impl Node {
    /// A node with identity `local` at virtual time `now`.
    pub fn new(local: PeerId, config: Config, now: Instant) -> Self {
        let key = config.rsa_key.clone();
        Node {
            core: Peers::new(local, config, key, now),
            next_open: 1,
        }
    }

    /// What the node asked for since the last call, in order.
    pub fn take_actions(&mut self) -> Vec<NodeAction> {
        self.core
            .take_actions()
            .into_iter()
            .map(NodeAction::from)
            .collect()
    }

    /// `Behaviour::open_session`.
    pub fn open(&mut self, peer: PeerId, secret: Secret, now: Instant) -> OpenId {
        let open = OpenId(self.next_open);
        self.next_open += 1;
        self.core.open(peer, open, secret, now);
        open
    }

    /// `Behaviour::send_message` (without the length check, which is the behaviour's).
    pub fn send_message(
        &mut self,
        peer: PeerId,
        text: String,
        now: Instant,
    ) -> Result<MessageId, SendError> {
        self.core.send_message(peer, text, 0, now)
    }

    /// `Behaviour::rotate`.
    pub fn rotate(&mut self, peer: PeerId, now: Instant) -> Result<(), SessionError> {
        self.core.rotate(peer, now)
    }

    /// `Behaviour::close_session`.
    pub fn close_session(&mut self, peer: PeerId, now: Instant) -> Result<(), SessionError> {
        self.core.close_session(peer, now)
    }

    /// `Behaviour::shutdown`.
    pub fn shutdown(&mut self, now: Instant) {
        self.core.shutdown(now)
    }

    /// A request from `peer` on connection number `connection`, to answer under `channel`.
    pub fn on_request(
        &mut self,
        peer: PeerId,
        connection: usize,
        request: Request,
        channel: u64,
        now: Instant,
    ) {
        let connection = ConnectionId::new_unchecked(connection);
        self.core
            .on_request(peer, connection, request, ChannelToken(channel), now)
    }

    /// Whether the request under `channel` is held for later.
    pub fn holds(&self, channel: u64) -> bool {
        self.core.holds(ChannelToken(channel))
    }

    /// The answer to our request `token`.
    pub fn on_response(&mut self, token: u64, response: Response, now: Instant) {
        self.core.on_response(ReqToken(token), response, now)
    }

    /// Our request `token` failed.
    pub fn on_outbound_failure(&mut self, token: u64, cause: FailureCause, now: Instant) {
        let (kind, text) = match cause {
            FailureCause::DialFailure => (FailureKind::DialFailure, "Failed to dial the peer"),
            FailureCause::Timeout => (FailureKind::Timeout, "Timeout while waiting for a response"),
            FailureCause::ConnectionClosed => (
                FailureKind::ConnectionClosed,
                "Connection was closed before a response was received",
            ),
            FailureCause::UnsupportedProtocols => (
                FailureKind::UnsupportedProtocols,
                "The remote supports none of the requested protocols",
            ),
        };
        let failure = Failure {
            kind,
            text: text.into(),
        };
        self.core.on_outbound_failure(ReqToken(token), failure, now)
    }

    /// A connection to `peer` is up.
    pub fn connected(&mut self, peer: PeerId, connection: usize, now: Instant) {
        let connection = ConnectionId::new_unchecked(connection);
        self.core
            .on_connection_established(peer, connection, None, None, now)
    }

    /// A connection to `peer` closed, `remaining` others still open.
    pub fn disconnected(&mut self, peer: PeerId, connection: usize, remaining: u32, now: Instant) {
        let connection = ConnectionId::new_unchecked(connection);
        self.core
            .on_connection_closed(peer, connection, remaining, now)
    }

    /// Runs the timers; returns when the next tick is due. Every held channel counts as
    /// open.
    pub fn tick(&mut self, now: Instant) -> Instant {
        self.core.on_tick(now, &|_| true)
    }

    /// Sends what the queues hold (the behaviour does this on every poll).
    pub fn flush(&mut self, now: Instant) {
        self.core.flush_dirty(now)
    }

    /// The session with `peer`.
    pub fn session(&self, peer: &PeerId, now: Instant) -> Option<SessionInfo> {
        self.core.session(peer, now)
    }

    /// Internal state sizes.
    pub fn state_counts(&self) -> StateCounts {
        self.core.state_counts()
    }

    /// Installs an active session with `peer` made without a handshake (no RSA) from fixed
    /// inputs: two nodes given the same `seed` and `session_id` in opposite roles share
    /// keys. For inputs that start past the handshake. `peer` must be connected.
    pub fn install_synthetic_session(
        &mut self,
        peer: PeerId,
        role: Role,
        seed: [u8; 32],
        session_id: [u8; SESSION_ID_LEN],
        now: Instant,
    ) {
        let est = handshake::Established {
            role,
            session_id,
            secrets: EpochSecrets::initial(&seed, &[3; 32], &[1; 32], &[2; 32], &session_id),
            safety_number: SafetyNumber::from_transcript(&seed),
        };
        self.core.install_synthetic(peer, est, now)
    }

    /// Seals arbitrary plaintext on the session with `peer`, as an authenticated but
    /// misbehaving node would (the record is not sent: the caller puts it on the network).
    pub fn seal_raw(&mut self, peer: PeerId, plaintext: Vec<u8>, now: Instant) -> Option<Record> {
        self.core.seal_raw(peer, plaintext, now)
    }

    /// The node's RSA key.
    pub fn key(&self) -> Option<Arc<RsaKeyPair>> {
        self.core.config().rsa_key.clone()
    }
}
