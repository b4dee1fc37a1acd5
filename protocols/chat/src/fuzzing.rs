//! Thin public wrappers around the crate's internal state machines, for the fuzz targets in
//! `fuzz/` only (feature `fuzzing`). Nothing here changes behaviour: every method forwards
//! to the `pub(crate)` item of the same name, and the few types are plain mirrors of
//! internal ones. Not a stable API.

use std::sync::Arc;
use std::time::{Duration, Instant};

use libp2p::PeerId;

use crate::crypto::{self, EpochSecrets};
use crate::error::RejectCode;
use crate::handshake;
use crate::session::{self, Rejections, SessionState};
use crate::wire::{
    Ack, Auth, AuthOk, Challenge, Content, Hello, MAC_LEN, NONCE_LEN, Record, Role, SESSION_ID_LEN,
};

pub use crate::crypto::{RsaKeyPair, SafetyNumber, Secret};

/// `K_auth` derived from a connection secret (SPEC.md §4).
#[derive(Clone)]
pub struct AuthKey(crypto::AuthKey);

impl AuthKey {
    /// Derives `K_auth` from `secret`.
    pub fn from_secret(secret: &Secret) -> Self {
        AuthKey(secret.auth_key())
    }

    /// The key bytes (to compute proofs as a hostile peer that knows the secret would).
    pub fn as_bytes(&self) -> &[u8; 32] {
        self.0.as_bytes()
    }
}

/// Mirror of the internal handshake error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandshakeError {
    /// What to tell the peer.
    pub code: RejectCode,
    /// What failed.
    pub what: &'static str,
}

impl From<handshake::HandshakeError> for HandshakeError {
    fn from(e: handshake::HandshakeError) -> Self {
        HandshakeError {
            code: e.code,
            what: e.what,
        }
    }
}

/// What a completed handshake yields.
pub struct Established(handshake::Established);

impl Established {
    /// Epoch-0 keys made without a handshake (no RSA), from fixed inputs, the way the
    /// crate's own session tests do. Both roles built from the same `seed` and
    /// `session_id` share keys.
    pub fn synthetic(role: Role, seed: [u8; 32], session_id: [u8; SESSION_ID_LEN]) -> Self {
        let auth = Secret::new("fuzz").expect("a valid secret").auth_key();
        Established(handshake::Established {
            role,
            session_id,
            secrets: EpochSecrets::initial(&seed, &[1; 32], &[2; 32], &auth, &session_id),
            safety_number: SafetyNumber::from_transcript(&seed),
        })
    }

    /// The side of the session.
    pub fn role(&self) -> Role {
        self.0.role
    }

    /// The session id.
    pub fn session_id(&self) -> [u8; SESSION_ID_LEN] {
        self.0.session_id
    }

    /// The safety number.
    pub fn safety_number(&self) -> &SafetyNumber {
        &self.0.safety_number
    }
}

/// The initiator after sending `HELLO`.
pub struct Initiator(handshake::Initiator);

impl Initiator {
    /// See the internal `Initiator::start`.
    pub fn start(
        local: PeerId,
        remote: PeerId,
        key: Arc<RsaKeyPair>,
        auth: &AuthKey,
    ) -> (Self, Hello) {
        let (i, hello) = handshake::Initiator::start(local, remote, key, auth.0.clone());
        (Initiator(i), hello)
    }

    /// The handshake id.
    pub fn hs_id(&self) -> [u8; 16] {
        *self.0.hs_id()
    }

    /// See the internal `Initiator::on_challenge`.
    pub fn on_challenge(self, ch: &Challenge) -> Result<(AwaitingAuthOk, Auth), HandshakeError> {
        self.0
            .on_challenge(ch)
            .map(|(w, a)| (AwaitingAuthOk(w), a))
            .map_err(Into::into)
    }
}

/// The initiator after sending `AUTH`.
pub struct AwaitingAuthOk(handshake::AwaitingAuthOk);

impl AwaitingAuthOk {
    /// The id the session will have.
    pub fn session_id(&self) -> [u8; SESSION_ID_LEN] {
        self.0.session_id()
    }

    /// See the internal `AwaitingAuthOk::on_auth_ok`.
    pub fn on_auth_ok(self, ok: &AuthOk) -> Result<Established, HandshakeError> {
        self.0.on_auth_ok(ok).map(Established).map_err(Into::into)
    }
}

/// The fields of `AUTH_OK` besides its record.
pub struct AuthOkParts {
    /// `wrapped_r`.
    pub wrapped: Vec<u8>,
    /// `mac_r`.
    pub mac: [u8; MAC_LEN],
}

/// The responder after answering `HELLO`.
pub struct Responder(handshake::Responder);

impl Responder {
    /// See the internal `Responder::on_hello`.
    pub fn on_hello(
        local: PeerId,
        remote: PeerId,
        hello: &Hello,
        key: Arc<RsaKeyPair>,
    ) -> Result<(Self, Challenge), HandshakeError> {
        handshake::Responder::on_hello(local, remote, hello, key)
            .map(|(r, c)| (Responder(r), c))
            .map_err(Into::into)
    }

    /// The handshake id.
    pub fn hs_id(&self) -> [u8; 16] {
        *self.0.hs_id()
    }

    /// See the internal `Responder::on_auth`.
    pub fn on_auth(
        self,
        auth_msg: &Auth,
        auth: &AuthKey,
    ) -> Result<(Established, AuthOkParts), HandshakeError> {
        self.0
            .on_auth(auth_msg, &auth.0)
            .map(|(e, p)| {
                (
                    Established(e),
                    AuthOkParts {
                        wrapped: p.wrapped,
                        mac: p.mac,
                    },
                )
            })
            .map_err(Into::into)
    }
}

/// Mirror of the internal session parameters.
#[derive(Debug, Clone)]
pub struct SessionParams {
    /// Replay window in records.
    pub window: usize,
    /// Grace of the previous epoch.
    pub grace: Duration,
    /// Largest chat text.
    pub max_message: usize,
    /// Rotation interval.
    pub rotate_every: Duration,
    /// Rotation after this many records.
    pub rotate_after_messages: u64,
}

/// Mirror of the internal slot (which epoch a record opened under).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// The current epoch.
    Current,
    /// The previous epoch, within its grace.
    Previous,
    /// The next epoch of our own rotation.
    Next,
}

impl From<session::Slot> for Slot {
    fn from(s: session::Slot) -> Self {
        match s {
            session::Slot::Current => Slot::Current,
            session::Slot::Previous => Slot::Previous,
            session::Slot::Next => Slot::Next,
        }
    }
}

impl From<Slot> for session::Slot {
    fn from(s: Slot) -> Self {
        match s {
            Slot::Current => session::Slot::Current,
            Slot::Previous => session::Slot::Previous,
            Slot::Next => session::Slot::Next,
        }
    }
}

/// Mirror of the internal record refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// The reject code.
    pub code: RejectCode,
    /// The reject detail.
    pub detail: u32,
}

/// Mirror of the internal rotation error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RotationError {
    /// What to tell the peer.
    pub code: RejectCode,
    /// What failed.
    pub what: &'static str,
    /// Whether the rotation in progress was lost (the session must close).
    pub fatal: bool,
}

impl From<session::RotationError> for RotationError {
    fn from(e: session::RotationError) -> Self {
        RotationError {
            code: e.code,
            what: e.what,
            fatal: e.fatal,
        }
    }
}

/// One peer's session.
pub struct Session(session::Session);

impl Session {
    /// See the internal `Session::new`.
    pub fn new(peer: PeerId, est: Established, params: SessionParams, now: Instant) -> Self {
        let params = session::SessionParams {
            window: params.window,
            grace: params.grace,
            max_message: params.max_message,
            rotate_every: params.rotate_every,
            rotate_after_messages: params.rotate_after_messages,
        };
        Session(session::Session::new(peer, est.0, params, now))
    }

    /// The session id.
    pub fn id(&self) -> [u8; SESSION_ID_LEN] {
        self.0.id
    }

    /// Our role.
    pub fn role(&self) -> Role {
        self.0.role
    }

    /// The life-cycle state.
    pub fn state(&self) -> SessionState {
        self.0.state
    }

    /// The safety number.
    pub fn safety_number(&self) -> &SafetyNumber {
        &self.0.safety_number
    }

    /// Refusal counters.
    pub fn rejections(&self) -> Rejections {
        self.0.rejections
    }

    /// The current epoch.
    pub fn epoch(&self) -> u32 {
        self.0.epoch()
    }

    /// Active or rotating.
    pub fn is_open(&self) -> bool {
        self.0.is_open()
    }

    /// See the internal `Session::seal`.
    pub fn seal(&mut self, content: &Content, now: Instant) -> Option<Record> {
        self.0.seal(content, now)
    }

    /// See the internal `Session::seal_bytes`.
    pub fn seal_bytes(&mut self, plaintext: Vec<u8>, now: Instant) -> Option<Record> {
        self.0.seal_bytes(plaintext, now)
    }

    /// See the internal `Session::count_extra_messages`.
    pub fn count_extra_messages(&mut self, n: u64) {
        self.0.count_extra_messages(n)
    }

    /// See the internal `Session::open`.
    pub fn open(&mut self, rec: &Record, now: Instant) -> Result<(Content, Slot), Refusal> {
        self.0
            .open(rec, now)
            .map(|(c, s)| (c, s.into()))
            .map_err(|r| Refusal {
                code: r.code,
                detail: r.detail,
            })
    }

    /// See the internal `Session::note_refused`.
    pub fn note_refused(&mut self, code: RejectCode) {
        self.0.note_refused(code)
    }

    /// See the internal `Session::ack`.
    pub fn ack(&self, slot: Slot, seq: u64) -> Option<Ack> {
        self.0.ack(slot.into(), seq)
    }

    /// See the internal `Session::verify_ack`.
    pub fn verify_ack(&self, epoch: u32, seq: u64, ack: &Ack) -> bool {
        self.0.verify_ack(epoch, seq, ack)
    }

    /// See the internal `Session::confirm`.
    pub fn confirm(&mut self) {
        self.0.confirm()
    }

    /// See the internal `Session::set_closing`.
    pub fn set_closing(&mut self) {
        self.0.set_closing()
    }

    /// See the internal `Session::rotation_due`.
    pub fn rotation_due(&self, now: Instant) -> bool {
        self.0.rotation_due(now)
    }

    /// See the internal `Session::rotation_started`.
    pub fn rotation_started(&self) -> Option<Instant> {
        self.0.rotation_started()
    }

    /// See the internal `Session::begin_rotation`.
    pub fn begin_rotation(&mut self, key: Arc<RsaKeyPair>, now: Instant) -> Option<Content> {
        self.0.begin_rotation(key, now)
    }

    /// See the internal `Session::on_rekey_init`.
    pub fn on_rekey_init(
        &mut self,
        new_epoch: u32,
        nonce_a: [u8; NONCE_LEN],
        pub_a: &[u8],
        key: Arc<RsaKeyPair>,
        now: Instant,
    ) -> Result<Content, RotationError> {
        self.0
            .on_rekey_init(new_epoch, nonce_a, pub_a, key, now)
            .map_err(Into::into)
    }

    /// See the internal `Session::on_rekey_reply`.
    pub fn on_rekey_reply(&mut self, content: &Content) -> Result<Content, RotationError> {
        self.0.on_rekey_reply(content).map_err(Into::into)
    }

    /// See the internal `Session::on_rekey_commit`.
    pub fn on_rekey_commit(
        &mut self,
        new_epoch: u32,
        wrapped_a: &[u8],
        now: Instant,
    ) -> Result<(), RotationError> {
        self.0
            .on_rekey_commit(new_epoch, wrapped_a, now)
            .map_err(Into::into)
    }

    /// See the internal `Session::promote_next`.
    pub fn promote_next(&mut self, now: Instant) -> bool {
        self.0.promote_next(now)
    }

    /// See the internal `Session::abandon_rotation`.
    pub fn abandon_rotation(&mut self, new_epoch: u32, now: Instant, hold_off: Duration) {
        self.0.abandon_rotation(new_epoch, now, hold_off)
    }

    /// See the internal `Session::is_initiating`.
    pub fn is_initiating(&self, new_epoch: u32) -> bool {
        self.0.is_initiating(new_epoch)
    }

    /// See the internal `Session::abort_rotation`.
    pub fn abort_rotation(&mut self) {
        self.0.abort_rotation()
    }

    /// See the internal `Session::expire_previous`.
    pub fn expire_previous(&mut self, now: Instant) -> Option<Instant> {
        self.0.expire_previous(now)
    }
}
