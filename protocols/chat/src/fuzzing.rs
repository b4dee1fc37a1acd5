//! The crate's I/O-free protocol core, exposed for the fuzz targets in `fuzz/`, the `guess`
//! figure of `bench/` and the known-answer test `tests/kat.rs` (feature `fuzzing`, which the
//! crate's own tests always have through its dev-dependency on itself). Not a stable API.
//!
//! [`handshake_vector`] and [`rotation_vector`] run the key schedule from fixed inputs
//! through the functions the handshake and session state machines call, so that SPEC.md's
//! appendix A checks the node's own derivation.
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
use crate::crypto::{self, CONTRIBUTION_LEN, EpochSecrets, PeerPublicKey, SHARE_LEN};
use crate::error::{RefuseError, SendError, SessionError};
use crate::handshake;
use crate::offload::{self, PrivateJob};
use crate::peer::{Action, ChannelToken, Failure, FailureKind, ReqToken};
use crate::peers::Peers;
use crate::session;
use crate::types::{Event, MessageId, OpenId, SessionInfo, StateCounts};
use crate::wire::{HS_ID_LEN, MAC_LEN, NONCE_LEN, Record, Request, Response, Role, SESSION_ID_LEN};

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

/// The fixed inputs of one handshake (SPEC.md appendix A.1): everything a node would draw
/// from the operating system's generator or get from RSA-OAEP, which is randomised. The
/// vectors fix the OAEP step's input (`k_*`) and output (`wrapped_*`) instead of running it.
pub struct HandshakeInputs<'a> {
    /// The connection secret.
    pub secret: &'a Secret,
    /// The initiator's `PeerId`.
    pub peer_i: &'a PeerId,
    /// The responder's `PeerId`.
    pub peer_r: &'a PeerId,
    /// `hs_id`.
    pub hs_id: [u8; HS_ID_LEN],
    /// The initiator's nonce.
    pub nonce_i: [u8; NONCE_LEN],
    /// The responder's nonce.
    pub nonce_r: [u8; NONCE_LEN],
    /// The initiator's RSA public key (PKCS#1 DER).
    pub pub_i: &'a [u8],
    /// The responder's RSA public key (PKCS#1 DER).
    pub pub_r: &'a [u8],
    /// The 64 bytes `scalar()` reduces to `y_i`.
    pub y_i_wide: [u8; 64],
    /// The 64 bytes `scalar()` reduces to `y_r`.
    pub y_r_wide: [u8; 64],
    /// The initiator's contribution.
    pub k_i: [u8; CONTRIBUTION_LEN],
    /// The responder's contribution.
    pub k_r: [u8; CONTRIBUTION_LEN],
    /// `k_i` wrapped for the responder's key.
    pub wrapped_i: &'a [u8],
    /// `k_r` wrapped for the initiator's key.
    pub wrapped_r: &'a [u8],
}

/// One epoch's keys (SPEC.md §5.5), copied out for comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpochKeyVector {
    /// `chain`.
    pub chain: [u8; 32],
    /// `key_i2r`.
    pub key_i2r: [u8; 32],
    /// `key_r2i`.
    pub key_r2i: [u8; 32],
    /// `ack_i`.
    pub ack_i: [u8; 32],
    /// `ack_r`.
    pub ack_r: [u8; 32],
}

impl EpochKeyVector {
    fn of(s: &EpochSecrets) -> Self {
        EpochKeyVector {
            chain: s.chain,
            key_i2r: s.key_i2r,
            key_r2i: s.key_r2i,
            ack_i: s.ack_i,
            ack_r: s.ack_r,
        }
    }
}

/// What the crate derives from [`HandshakeInputs`] (SPEC.md appendix A.2). Values both sides
/// derive are given as each side computes them (`*_at_i`, `*_at_r`).
#[derive(Debug, Clone)]
pub struct HandshakeVector {
    /// `K_pw`.
    pub k_pw: [u8; 32],
    /// The CPace generator's encoding.
    pub g: [u8; 32],
    /// `y_i` (little-endian scalar).
    pub y_i: [u8; 32],
    /// `y_r`.
    pub y_r: [u8; 32],
    /// The initiator's share.
    pub share_i: [u8; SHARE_LEN],
    /// The responder's share.
    pub share_r: [u8; SHARE_LEN],
    /// `enc(Z)` at the initiator (`y_i · share_r`).
    pub z_at_i: [u8; SHARE_LEN],
    /// `enc(Z)` at the responder (`y_r · share_i`).
    pub z_at_r: [u8; SHARE_LEN],
    /// The transcript hash.
    pub th: [u8; 32],
    /// `K_conf` at the initiator.
    pub k_conf_at_i: [u8; 32],
    /// `K_conf` at the responder.
    pub k_conf_at_r: [u8; 32],
    /// The initiator's proof (made with its `K_conf`).
    pub mac_i: [u8; MAC_LEN],
    /// The responder's proof (made with its `K_conf`).
    pub mac_r: [u8; MAC_LEN],
    /// The session id, as the initiator's `Established` carries it.
    pub session_id_at_i: [u8; SESSION_ID_LEN],
    /// The session id at the responder.
    pub session_id_at_r: [u8; SESSION_ID_LEN],
    /// Epoch 0 at the initiator.
    pub epoch0_at_i: EpochKeyVector,
    /// Epoch 0 at the responder.
    pub epoch0_at_r: EpochKeyVector,
    /// The safety number's text at the initiator.
    pub safety_number_at_i: String,
    /// The safety number's text at the responder.
    pub safety_number_at_r: String,
}

/// The handshake of `inputs` through the crate's own derivations, the functions the
/// handshake state machines call (`handshake::{cpace_share, transcript_hash, proof_keys,
/// initiator_proof, responder_proof, establish}`, `crypto::scalar_from_wide`), once as each
/// side. `None` if the crate refuses an input as a peer would: a scalar that reduces to
/// zero, a share that does not decode, `Z` the identity, or an unacceptable RSA public key.
pub fn handshake_vector(inputs: &HandshakeInputs<'_>) -> Option<HandshakeVector> {
    let HandshakeInputs {
        secret,
        peer_i,
        peer_r,
        hs_id,
        ..
    } = *inputs;
    // The state machines hash the DER of the keys they hold (their own, or the peer's after
    // `PeerPublicKey::parse`).
    let pub_i = PeerPublicKey::parse(inputs.pub_i).ok()?;
    let pub_r = PeerPublicKey::parse(inputs.pub_r).ok()?;
    let auth = secret.auth_key();
    let y_i = crypto::scalar_from_wide(&inputs.y_i_wide)?;
    let y_r = crypto::scalar_from_wide(&inputs.y_r_wide)?;
    // `Initiator::start` and `Responder::on_hello`.
    let share_i = handshake::cpace_share(&auth, &hs_id, peer_i, peer_r, &y_i);
    let share_r = handshake::cpace_share(&auth, &hs_id, peer_i, peer_r, &y_r);
    let th = handshake::transcript_hash(
        &hs_id,
        peer_i,
        peer_r,
        pub_i.der(),
        pub_r.der(),
        &inputs.nonce_i,
        &inputs.nonce_r,
        &share_i,
        &share_r,
    );
    // `Initiator::on_challenge`, then `Responder::on_auth`.
    let (z_i, k_conf_i) = handshake::proof_keys(&y_i, &crypto::decode_share(&share_r)?, &th)?;
    let mac_i = handshake::initiator_proof(&k_conf_i, &th, inputs.wrapped_i);
    let (z_r, k_conf_r) = handshake::proof_keys(&y_r, &crypto::decode_share(&share_i)?, &th)?;
    let mac_r = handshake::responder_proof(&k_conf_r, &th, inputs.wrapped_i, inputs.wrapped_r);
    let est_r = handshake::establish(Role::Responder, &th, &z_r, &inputs.k_i, &inputs.k_r);
    // `AwaitingAuthOk::on_auth_ok`.
    let est_i = handshake::establish(Role::Initiator, &th, &z_i, &inputs.k_i, &inputs.k_r);
    let g = auth.generator(&hs_id, &peer_i.to_bytes(), &peer_r.to_bytes());
    Some(HandshakeVector {
        k_pw: *auth.as_bytes(),
        g: g.compress().to_bytes(),
        y_i: y_i.to_bytes(),
        y_r: y_r.to_bytes(),
        share_i,
        share_r,
        z_at_i: *z_i,
        z_at_r: *z_r,
        th,
        k_conf_at_i: *k_conf_i,
        k_conf_at_r: *k_conf_r,
        mac_i,
        mac_r,
        session_id_at_i: est_i.session_id,
        session_id_at_r: est_r.session_id,
        epoch0_at_i: EpochKeyVector::of(&est_i.secrets),
        epoch0_at_r: EpochKeyVector::of(&est_r.secrets),
        safety_number_at_i: est_i.safety_number.to_string(),
        safety_number_at_r: est_r.safety_number.to_string(),
    })
}

/// The fixed inputs of one rotation (SPEC.md appendix A.6). Side A starts it, side B
/// answers.
pub struct RotationInputs<'a> {
    /// The chain key of the current epoch.
    pub chain: [u8; 32],
    /// The session id.
    pub session_id: [u8; SESSION_ID_LEN],
    /// The epoch the rotation moves to.
    pub new_epoch: u32,
    /// Side A's role in the session.
    pub rotator: Role,
    /// A's RSA public key.
    pub pub_a: &'a [u8],
    /// B's RSA public key.
    pub pub_b: &'a [u8],
    /// A's nonce.
    pub nonce_a: [u8; NONCE_LEN],
    /// B's nonce.
    pub nonce_b: [u8; NONCE_LEN],
    /// The 64 bytes `scalar()` reduces to `x_a`.
    pub x_a_wide: [u8; 64],
    /// The 64 bytes `scalar()` reduces to `x_b`.
    pub x_b_wide: [u8; 64],
    /// A's contribution.
    pub k_a: [u8; CONTRIBUTION_LEN],
    /// B's contribution.
    pub k_b: [u8; CONTRIBUTION_LEN],
    /// `k_a` wrapped for B's key.
    pub wrapped_a: &'a [u8],
    /// `k_b` wrapped for A's key.
    pub wrapped_b: &'a [u8],
}

/// What the crate derives from [`RotationInputs`] (SPEC.md appendix A.6), per side where
/// both sides derive it.
#[derive(Debug, Clone)]
pub struct RotationVector {
    /// A's share `enc(x_a · B)`.
    pub share_a: [u8; SHARE_LEN],
    /// B's share.
    pub share_b: [u8; SHARE_LEN],
    /// `enc(Z_e)` at A (`x_a · share_b`).
    pub z_at_a: [u8; SHARE_LEN],
    /// `enc(Z_e)` at B (`x_b · share_a`).
    pub z_at_b: [u8; SHARE_LEN],
    /// `rth`.
    pub rth: [u8; 32],
    /// The new epoch's keys at A.
    pub epoch_at_a: EpochKeyVector,
    /// The new epoch's keys at B.
    pub epoch_at_b: EpochKeyVector,
}

/// The rotation of `inputs` through the crate's own derivations, the functions
/// `Session::{begin_rotation, on_rekey_init, on_rekey_reply, on_rekey_commit}` call
/// (`crypto::{scalar_from_wide, dh_share, shared_secret}`, `session::rekey_hash`,
/// `EpochSecrets::next`), once as each side. `None` if the crate refuses an input as a peer
/// would (a zero scalar, a share that does not decode, `Z_e` the identity, an unacceptable
/// RSA public key).
pub fn rotation_vector(inputs: &RotationInputs<'_>) -> Option<RotationVector> {
    let pub_a = PeerPublicKey::parse(inputs.pub_a).ok()?;
    let pub_b = PeerPublicKey::parse(inputs.pub_b).ok()?;
    // Only the chain key of the current epoch enters the next one.
    let current = EpochSecrets {
        chain: inputs.chain,
        key_i2r: [0; 32],
        key_r2i: [0; 32],
        ack_i: [0; 32],
        ack_r: [0; 32],
    };
    let x_a = crypto::scalar_from_wide(&inputs.x_a_wide)?;
    let x_b = crypto::scalar_from_wide(&inputs.x_b_wide)?;
    // `begin_rotation`, then `on_rekey_init`.
    let share_a = crypto::dh_share(&x_a);
    let share_b = crypto::dh_share(&x_b);
    let z_b = crypto::shared_secret(&x_b, &crypto::decode_share(&share_a)?)?;
    // `on_rekey_reply` (A) and `on_rekey_commit` (B) hash the same transcript.
    let z_a = crypto::shared_secret(&x_a, &crypto::decode_share(&share_b)?)?;
    let rth = session::rekey_hash(
        &inputs.session_id,
        inputs.new_epoch,
        inputs.rotator,
        pub_a.der(),
        pub_b.der(),
        &inputs.nonce_a,
        &inputs.nonce_b,
        &share_a,
        &share_b,
        inputs.wrapped_a,
        inputs.wrapped_b,
    );
    let next = |z: &[u8; SHARE_LEN]| {
        current.next(
            &rth,
            z,
            &inputs.k_a,
            &inputs.k_b,
            &inputs.session_id,
            inputs.new_epoch,
        )
    };
    Some(RotationVector {
        share_a,
        share_b,
        z_at_a: *z_a,
        z_at_b: *z_b,
        rth,
        epoch_at_a: EpochKeyVector::of(&next(&z_a)),
        epoch_at_b: EpochKeyVector::of(&next(&z_b)),
    })
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
    /// Run this private-key operation and feed its result back with
    /// [`Node::private_done`] (now, later, or never), or refuse it with
    /// [`Node::private_busy`] (the pool was full).
    PrivateOp(PrivateTicket),
}

/// A private-key job a [`Node`] asked for (see `crate::offload`). A harness may also feed
/// results the node never asked for: [`PrivateTicket::renumbered`] gives the same job under
/// another number (stale or future), [`PrivateTicket::for_peer`] one for another peer.
#[derive(Debug, Clone)]
pub struct PrivateTicket(PrivateJob);

impl PrivateTicket {
    /// The peer whose machine asked.
    pub fn peer(&self) -> PeerId {
        self.0.tag.peer
    }

    /// The job's number.
    pub fn seq(&self) -> u64 {
        self.0.tag.seq
    }

    /// The same job under the number `seq`.
    pub fn renumbered(&self, seq: u64) -> Self {
        let mut job = self.0.clone();
        job.tag.seq = seq;
        PrivateTicket(job)
    }

    /// The same job, said to be for `peer`.
    pub fn for_peer(&self, peer: PeerId) -> Self {
        let mut job = self.0.clone();
        job.tag.peer = peer;
        PrivateTicket(job)
    }
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
            Action::PrivateOp(job) => NodeAction::PrivateOp(PrivateTicket(job)),
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

    /// `Behaviour::refuse_peer`.
    pub fn refuse_peer(&mut self, peer: PeerId, now: Instant) -> Result<(), RefuseError> {
        self.core.refuse_peer(peer, now)
    }

    /// `Behaviour::allow_peer`.
    pub fn allow_peer(&mut self, peer: &PeerId) -> bool {
        self.core.allow_peer(peer)
    }

    /// `Behaviour::is_refused`.
    pub fn is_refused(&self, peer: &PeerId) -> bool {
        self.core.is_refused(peer)
    }

    /// `Behaviour::set_secret`.
    pub fn set_secret(&mut self, secret: Secret, now: Instant) {
        self.core.set_secret(secret, now)
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

    /// Whether the request of `peer` under `channel` is held for later.
    pub fn holds(&self, peer: &PeerId, channel: u64) -> bool {
        self.core.holds(peer, ChannelToken(channel))
    }

    /// Runs the private-key job of `ticket` here and feeds its result back, as the
    /// behaviour does when its pool answers.
    pub fn private_done(&mut self, ticket: &PrivateTicket, now: Instant) {
        let result = offload::run(&ticket.0);
        self.core.on_private_done(ticket.0.tag, result, now)
    }

    /// Feeds back that the job of `ticket` never ran (the pool's queue was full).
    pub fn private_busy(&mut self, ticket: &PrivateTicket, now: Instant) {
        self.core
            .on_private_done(ticket.0.tag, Err(offload::JobError::Busy), now)
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
