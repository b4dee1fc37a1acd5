//! One peer's session (SPEC.md §6, §7): its epochs, its rotation state machine, validation of
//! every incoming record, and the counters the user sees. Pure logic: no I/O, no timers;
//! time comes in as arguments.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use curve25519_dalek::scalar::Scalar;
use libp2p::PeerId;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::channel::{AckCheck, EpochKeys, SEQ_ROTATE};
use crate::crypto::{
    CONTRIBUTION_LEN, PeerPublicKey, RsaKeyPair, SHARE_LEN, SafetyNumber, decode_share, dh_share,
    hash_bytes16, random, scalar, shared_secret,
};
use crate::error::RejectCode;
use crate::handshake::Established;
use crate::wire::{Ack, Content, NONCE_LEN, Record, Role, SESSION_ID_LEN, decode_content};

/// The life cycle of a session, as shown to the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionState {
    /// Handshake in progress (including the final confirmation).
    Handshaking,
    /// Keys agreed; messages flow.
    Active,
    /// Active, and moving to a new epoch; messages still flow.
    Rotating,
    /// A `CLOSE` was sent or received; nothing more is accepted.
    Closing,
}

impl fmt::Display for SessionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SessionState::Handshaking => "handshaking",
            SessionState::Active => "active",
            SessionState::Rotating => "rotating",
            SessionState::Closing => "closing",
        })
    }
}

/// Records refused on a session, by cause (SPEC.md §6.2).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rejections {
    /// Failed AEAD authentication: tampering (or a bug).
    pub tampered: u64,
    /// Sequence number already accepted.
    pub replayed: u64,
    /// Sequence number too far behind the window.
    pub out_of_window: u64,
    /// Epoch stale (grace expired) or unknown.
    pub wrong_epoch: u64,
    /// Our own records sent back to us.
    pub reflected: u64,
    /// Did not parse, too large, or not allowed at that moment.
    pub malformed: u64,
}

impl Rejections {
    fn count(&mut self, code: RejectCode) {
        let slot = match code {
            RejectCode::DecryptFailed => &mut self.tampered,
            RejectCode::Replayed => &mut self.replayed,
            RejectCode::OutOfWindow => &mut self.out_of_window,
            RejectCode::StaleEpoch | RejectCode::UnknownEpoch => &mut self.wrong_epoch,
            RejectCode::Reflected => &mut self.reflected,
            _ => &mut self.malformed,
        };
        *slot += 1;
    }

    /// Sum over all causes.
    pub fn total(&self) -> u64 {
        self.tampered
            + self.replayed
            + self.out_of_window
            + self.wrong_epoch
            + self.reflected
            + self.malformed
    }
}

/// Tunables a session needs from the behaviour's configuration.
#[derive(Debug, Clone)]
pub(crate) struct SessionParams {
    pub(crate) window: usize,
    pub(crate) grace: Duration,
    pub(crate) max_message: usize,
    pub(crate) rotate_every: Duration,
    pub(crate) rotate_after_messages: u64,
}

/// Which epoch of a session a record belonged to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Slot {
    Current,
    Previous,
    Next,
}

/// A rotation in progress (SPEC.md §7). Its scalar and shared element are `Zeroizing`: they
/// are wiped when the rotation completes (the variant is replaced) or is abandoned (dropped).
enum Rotation {
    /// We started it: `REKEY_INIT` sent, waiting for `REKEY_REPLY`.
    Initiated {
        new_epoch: u32,
        nonce_a: [u8; NONCE_LEN],
        key: Arc<RsaKeyPair>,
        /// `x_a`.
        x_a: Zeroizing<Scalar>,
        share_a: [u8; SHARE_LEN],
        started: Instant,
    },
    /// We started it and got the peer's `REKEY_REPLY`, whose `wrapped_b` our private key is
    /// unwrapping (off the event loop, DESIGN-offload.md). `x_a` is gone: `z_e` is computed.
    /// Towards the peer this is already `Committed` (its `REKEY_COMMIT` is the next thing
    /// it hears about this rotation).
    Unwrapping {
        new_epoch: u32,
        nonce_a: [u8; NONCE_LEN],
        key: Arc<RsaKeyPair>,
        share_a: [u8; SHARE_LEN],
        z_e: Zeroizing<[u8; SHARE_LEN]>,
        pub_b: PeerPublicKey,
        /// `pub_b` as the peer sent it (hashed into `rth`).
        pub_b_bytes: Vec<u8>,
        nonce_b: [u8; NONCE_LEN],
        share_b: [u8; SHARE_LEN],
        wrapped_b: Vec<u8>,
        started: Instant,
    },
    /// We started it and sent `REKEY_COMMIT`; `next` holds the new keys until `REKEY_DONE`.
    Committed { started: Instant },
    /// The peer started it; we answered `REKEY_REPLY` and wait for `REKEY_COMMIT`.
    Replied {
        new_epoch: u32,
        nonce_a: [u8; NONCE_LEN],
        nonce_b: [u8; NONCE_LEN],
        pub_a: Vec<u8>,
        share_a: [u8; SHARE_LEN],
        share_b: [u8; SHARE_LEN],
        /// `Z_e = x_b · dec(share_a)`; `x_b` itself is gone once this is computed.
        z_e: Zeroizing<[u8; SHARE_LEN]>,
        key: Arc<RsaKeyPair>,
        k_b: Zeroizing<[u8; CONTRIBUTION_LEN]>,
        wrapped_b: Vec<u8>,
        started: Instant,
    },
}

impl Rotation {
    fn started(&self) -> Instant {
        match self {
            Rotation::Initiated { started, .. }
            | Rotation::Unwrapping { started, .. }
            | Rotation::Committed { started, .. }
            | Rotation::Replied { started, .. } => *started,
        }
    }
}

/// A failed rotation step: what to tell the peer, a description for the close reason, and
/// whether the rotation in progress was lost with it (then the session must close: the two
/// sides may disagree about the epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RotationError {
    pub(crate) code: RejectCode,
    pub(crate) what: &'static str,
    pub(crate) fatal: bool,
}

fn rot_err(code: RejectCode, what: &'static str) -> RotationError {
    RotationError {
        code,
        what,
        fatal: false,
    }
}

fn fatal(code: RejectCode, what: &'static str) -> RotationError {
    RotationError {
        code,
        what,
        fatal: true,
    }
}

/// Why a record was refused: the `REJECT` code and detail (SPEC.md §6.2, §9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub(crate) code: RejectCode,
    pub(crate) detail: u32,
}

impl From<RejectCode> for Refusal {
    fn from(code: RejectCode) -> Self {
        Refusal { code, detail: 0 }
    }
}

/// One peer's session.
pub(crate) struct Session {
    pub(crate) peer: PeerId,
    pub(crate) id: [u8; SESSION_ID_LEN],
    pub(crate) role: Role,
    pub(crate) created: Instant,
    pub(crate) state: SessionState,
    pub(crate) safety_number: SafetyNumber,
    /// Whether `safety_number` is the identity safety number (both sides last, SPEC.md
    /// §5.6); set with the peer's `PROFILE`.
    pub(crate) safety_number_lasts: bool,
    pub(crate) remote_name: Option<String>,
    /// Whether the peer's `PROFILE` says it keeps its identity (SPEC.md §3.5).
    pub(crate) remote_lasting: bool,
    pub(crate) messages_sent: u64,
    pub(crate) messages_received: u64,
    pub(crate) rejections: Rejections,
    pub(crate) last_sent: Instant,
    /// When a record of the peer last opened (its own proof that it is alive).
    last_heard: Instant,
    pub(crate) epoch_started: Instant,
    current: EpochKeys,
    previous: Option<(EpochKeys, Instant)>,
    /// The receipt key of the last epoch dropped (see [`AckCheck`]).
    late_acks: Option<AckCheck>,
    next: Option<EpochKeys>,
    rotation: Option<Rotation>,
    /// After losing a simultaneous rotation: no rotation of ours before this.
    yield_until: Option<Instant>,
    epoch_records: u64,
    params: SessionParams,
}

impl Session {
    /// Takes in the peer's `PROFILE` (its name and lasting flag). When both we
    /// (`local_lasting`) and the peer last, the safety number becomes the identity safety
    /// number of the two `PeerId`s (SPEC.md §5.6); otherwise it stays the per-session one.
    pub(crate) fn set_profile(
        &mut self,
        local: &PeerId,
        local_lasting: bool,
        name: String,
        remote_lasting: bool,
    ) {
        self.remote_name = Some(name);
        self.remote_lasting = remote_lasting;
        if local_lasting && remote_lasting {
            self.safety_number = SafetyNumber::from_identities(local, &self.peer);
            self.safety_number_lasts = true;
        }
    }

    pub(crate) fn new(peer: PeerId, est: Established, params: SessionParams, now: Instant) -> Self {
        let current = EpochKeys::new(0, est.role, est.session_id, est.secrets, params.window);
        Session {
            peer,
            id: est.session_id,
            role: est.role,
            created: now,
            state: SessionState::Handshaking,
            safety_number: est.safety_number,
            safety_number_lasts: false,
            remote_name: None,
            remote_lasting: false,
            messages_sent: 0,
            messages_received: 0,
            rejections: Rejections::default(),
            last_sent: now,
            last_heard: now,
            epoch_started: now,
            current,
            previous: None,
            late_acks: None,
            next: None,
            rotation: None,
            yield_until: None,
            epoch_records: 0,
            params,
        }
    }

    pub(crate) fn epoch(&self) -> u32 {
        self.current.number
    }

    pub(crate) fn is_open(&self) -> bool {
        matches!(self.state, SessionState::Active | SessionState::Rotating)
    }

    /// Seals `content` under the current epoch. `None` if the epoch cannot send any more
    /// (sequence numbers exhausted).
    pub(crate) fn seal(&mut self, content: &Content, now: Instant) -> Option<Record> {
        self.seal_bytes(crate::wire::encode_content(content), now)
    }

    /// Seals an already encoded plaintext (see [`crate::wire::encode_chat`]).
    pub(crate) fn seal_bytes(&mut self, plaintext: Vec<u8>, now: Instant) -> Option<Record> {
        let rec = self.current.seal(plaintext)?;
        self.epoch_records += 1;
        self.last_sent = now;
        Some(rec)
    }

    /// Counts the messages of a batch beyond its first towards the rotation threshold
    /// (each record already counts as one).
    pub(crate) fn count_extra_messages(&mut self, n: u64) {
        self.epoch_records = self.epoch_records.saturating_add(n);
    }

    /// Validates and opens a record from the peer (SPEC.md §6.2 steps 2-6; the caller
    /// checked step 1). Every refusal is counted.
    pub(crate) fn open(&mut self, rec: &Record, now: Instant) -> Result<(Content, Slot), Refusal> {
        let result = self.open_inner(rec, now);
        match result {
            Ok(_) => self.last_heard = now,
            Err(r) => self.rejections.count(r.code),
        }
        result
    }

    /// When a `PING` is due (SPEC.md §6.4): `interval` after the last record either side
    /// sent, the responder a quarter longer, so that while the initiator pings the
    /// responder hears it and does not ping too (one keep-alive per quiet session, not two).
    pub(crate) fn ping_due_at(&self, interval: Duration) -> Instant {
        let interval = match self.role {
            Role::Initiator => interval,
            Role::Responder => interval + interval / 4,
        };
        self.last_sent.max(self.last_heard) + interval
    }

    /// Counts a record refused after it opened (its kind not allowed at that moment).
    pub(crate) fn note_refused(&mut self, code: RejectCode) {
        self.rejections.count(code);
    }

    fn open_inner(&mut self, rec: &Record, now: Instant) -> Result<(Content, Slot), Refusal> {
        if self.state == SessionState::Closing {
            return Err(RejectCode::SessionClosed.into());
        }
        if rec.sender == self.role {
            return Err(RejectCode::Reflected.into());
        }
        let (keys, slot) = if rec.epoch == self.current.number {
            (&mut self.current, Slot::Current)
        } else if let Some((prev, expires)) = self
            .previous
            .as_mut()
            .filter(|(p, _)| p.number == rec.epoch)
        {
            if now >= *expires {
                return Err(RejectCode::StaleEpoch.into());
            }
            (prev, Slot::Previous)
        } else if let Some(next) = self.next.as_mut().filter(|n| n.number == rec.epoch) {
            (next, Slot::Next)
        } else if rec.epoch < self.current.number {
            return Err(RejectCode::StaleEpoch.into());
        } else {
            return Err(RejectCode::UnknownEpoch.into());
        };
        let plain = Zeroizing::new(keys.open(rec).map_err(|e| Refusal::from(e.code()))?);
        let content = decode_content(&plain, self.params.max_message).map_err(|e| Refusal {
            code: e.reject_code(),
            detail: e.reject_detail(),
        })?;
        if slot == Slot::Current {
            self.epoch_records += 1;
        }
        Ok((content, slot))
    }

    /// Our `ACK` for a record of the peer's that was opened from `slot`.
    pub(crate) fn ack(&self, slot: Slot, seq: u64) -> Option<Ack> {
        self.keys(slot).map(|k| k.ack(seq))
    }

    /// Checks the peer's `ACK` of our record (`epoch`, `seq`), in constant time.
    pub(crate) fn verify_ack(&self, epoch: u32, seq: u64, ack: &Ack) -> bool {
        match [Slot::Current, Slot::Previous, Slot::Next]
            .into_iter()
            .filter_map(|s| self.keys(s))
            .find(|k| k.number == epoch)
        {
            Some(k) => k.verify_ack(ack, seq),
            None => self
                .late_acks
                .as_ref()
                .is_some_and(|c| c.verify(epoch, ack, seq)),
        }
    }

    fn keys(&self, slot: Slot) -> Option<&EpochKeys> {
        match slot {
            Slot::Current => Some(&self.current),
            Slot::Previous => self.previous.as_ref().map(|(k, _)| k),
            Slot::Next => self.next.as_ref(),
        }
    }

    /// Marks the session confirmed (SPEC.md §5.4).
    pub(crate) fn confirm(&mut self) {
        if self.state == SessionState::Handshaking {
            self.state = SessionState::Active;
        }
    }

    pub(crate) fn set_closing(&mut self) {
        self.state = SessionState::Closing;
        self.rotation = None;
        self.next = None;
    }

    // ----- rotation (SPEC.md §7) -----

    /// When the current epoch is due to rotate by time.
    pub(crate) fn rotation_due_at(&self) -> Instant {
        let every = self.params.rotate_every;
        // The responder waits 5 % longer, so that usually only the initiator starts.
        let every = match self.role {
            Role::Initiator => every,
            Role::Responder => every + every / 20,
        };
        self.epoch_started + every
    }

    /// Is a rotation due now (time, message count, or sequence numbers)?
    pub(crate) fn rotation_due(&self, now: Instant) -> bool {
        self.state == SessionState::Active
            && self.rotation.is_none()
            && self.yield_until.is_none_or(|t| now >= t)
            && (now >= self.rotation_due_at()
                || self.epoch_records >= self.params.rotate_after_messages
                || self.current.sent() >= SEQ_ROTATE)
    }

    /// When the rotation in progress started, if any.
    pub(crate) fn rotation_started(&self) -> Option<Instant> {
        self.rotation.as_ref().map(Rotation::started)
    }

    /// Starts a rotation: returns the `REKEY_INIT` to send under the current epoch.
    pub(crate) fn begin_rotation(&mut self, key: Arc<RsaKeyPair>, now: Instant) -> Option<Content> {
        if self.state != SessionState::Active || self.rotation.is_some() {
            return None;
        }
        let new_epoch = self.current.number.checked_add(1)?;
        let nonce_a = random::<NONCE_LEN>();
        let x_a = scalar();
        let share_a = dh_share(&x_a);
        let content = Content::RekeyInit {
            new_epoch,
            nonce: nonce_a,
            public_key: key.public_der().to_vec(),
            share: share_a,
        };
        self.rotation = Some(Rotation::Initiated {
            new_epoch,
            nonce_a,
            key,
            x_a,
            share_a,
            started: now,
        });
        self.state = SessionState::Rotating;
        Some(content)
    }

    /// The peer starts a rotation: answer with `REKEY_REPLY`, or refuse. A bad RSA key or
    /// `share` is refused (`BAD_KEY`) before anything of ours changes, so a rotation of our
    /// own that would otherwise yield to this one goes on.
    pub(crate) fn on_rekey_init(
        &mut self,
        new_epoch: u32,
        nonce_a: [u8; NONCE_LEN],
        pub_a: &[u8],
        share_a: &[u8; SHARE_LEN],
        key: Arc<RsaKeyPair>,
        now: Instant,
    ) -> Result<Content, RotationError> {
        if !self.is_open() || Some(new_epoch) != self.current.number.checked_add(1) {
            return Err(rot_err(
                RejectCode::BadState,
                "rekey for an unexpected epoch",
            ));
        }
        let yield_ours = match &self.rotation {
            None => false,
            // Simultaneous rotation: the session initiator's wins (SPEC.md §7.1), also when
            // the peer's REKEY_INIT arrives after its REKEY_REPLY to ours (two streams: they
            // can cross) and ours is already unwrapping that reply or committed.
            Some(
                Rotation::Initiated { .. }
                | Rotation::Unwrapping { .. }
                | Rotation::Committed { .. },
            ) if self.role == Role::Initiator => {
                return Err(rot_err(
                    RejectCode::RotationConflict,
                    "simultaneous rotation",
                ));
            }
            Some(Rotation::Initiated { .. }) => true,
            Some(_) => {
                return Err(rot_err(
                    RejectCode::BadState,
                    "rotation already in progress",
                ));
            }
        };
        let pub_a_key = PeerPublicKey::parse(pub_a)
            .map_err(|_| rot_err(RejectCode::BadKey, "peer rekey key"))?;
        let share_a_point =
            decode_share(share_a).ok_or(rot_err(RejectCode::BadKey, "peer rekey share"))?;
        let x_b = scalar();
        let share_b = dh_share(&x_b);
        let z_e = shared_secret(&x_b, &share_a_point)
            .ok_or(rot_err(RejectCode::BadKey, "peer rekey share"))?;
        drop(x_b);
        let k_b = Zeroizing::new(random::<CONTRIBUTION_LEN>());
        let wrapped_b = pub_a_key
            .wrap_contribution(&k_b)
            .map_err(|_| rot_err(RejectCode::BadKey, "wrapping for peer key"))?;
        if yield_ours {
            tracing::debug!(peer = %self.peer, "simultaneous rotation: yielding to the peer's");
            self.rotation = None;
            self.yield_until = None;
        }
        let nonce_b = random::<NONCE_LEN>();
        let reply = Content::RekeyReply {
            new_epoch,
            nonce: nonce_b,
            public_key: key.public_der().to_vec(),
            share: share_b,
            wrapped: wrapped_b.clone(),
        };
        self.rotation = Some(Rotation::Replied {
            new_epoch,
            nonce_a,
            nonce_b,
            pub_a: pub_a.to_vec(),
            share_a: *share_a,
            share_b,
            z_e,
            key,
            k_b,
            wrapped_b,
            started: now,
        });
        self.state = SessionState::Rotating;
        Ok(reply)
    }

    /// Our rotation got its `REKEY_REPLY`: derive the next epoch and return `REKEY_COMMIT`.
    pub(crate) fn on_rekey_reply(&mut self, content: &Content) -> Result<Content, RotationError> {
        let (_, _, new_epoch) = self.check_rekey_reply(content)?;
        self.finish_rekey_reply(new_epoch, None)
    }

    /// Everything of `REKEY_REPLY` before our private key: the epoch, the peer's key and
    /// share, `Z_e`. The rotation then waits (`Unwrapping`) for `wrapped_b` to be unwrapped
    /// with the returned key; [`Session::finish_rekey_reply`] continues it.
    pub(crate) fn check_rekey_reply(
        &mut self,
        content: &Content,
    ) -> Result<(Arc<RsaKeyPair>, Vec<u8>, u32), RotationError> {
        let Content::RekeyReply {
            new_epoch,
            nonce: nonce_b,
            public_key: pub_b,
            share: share_b,
            wrapped: wrapped_b,
        } = content
        else {
            return Err(rot_err(RejectCode::BadState, "expected REKEY_REPLY"));
        };
        if !matches!(self.rotation, Some(Rotation::Initiated { .. })) {
            // Refuse it without touching the rotation in progress (e.g. the peer's own).
            return Err(rot_err(
                RejectCode::BadState,
                "no rotation of ours in progress",
            ));
        }
        let Some(Rotation::Initiated {
            new_epoch: ours,
            nonce_a,
            key,
            x_a,
            share_a,
            started,
        }) = self.rotation.take()
        else {
            return Err(rot_err(
                RejectCode::BadState,
                "no rotation of ours in progress",
            ));
        };
        if *new_epoch != ours {
            return Err(rot_err(
                RejectCode::BadState,
                "REKEY_REPLY for another epoch",
            ));
        }
        let pub_b_key = PeerPublicKey::parse(pub_b)
            .map_err(|_| rot_err(RejectCode::BadKey, "peer rekey key"))?;
        // Our rotation is gone (taken above): any failure from here fails it (SPEC.md §7).
        let share_b_point =
            decode_share(share_b).ok_or(rot_err(RejectCode::BadKey, "peer rekey share"))?;
        let z_e = shared_secret(&x_a, &share_b_point)
            .ok_or(rot_err(RejectCode::BadKey, "peer rekey share"))?;
        drop(x_a);
        self.rotation = Some(Rotation::Unwrapping {
            new_epoch: ours,
            nonce_a,
            key: key.clone(),
            share_a,
            z_e,
            pub_b: pub_b_key,
            pub_b_bytes: pub_b.clone(),
            nonce_b: *nonce_b,
            share_b: *share_b,
            wrapped_b: wrapped_b.clone(),
            started,
        });
        Ok((key, wrapped_b.clone(), ours))
    }

    /// Whether our rotation to `new_epoch` waits for its `wrapped_b` to be unwrapped.
    pub(crate) fn rekey_reply_waits(&self, new_epoch: u32) -> bool {
        matches!(self.rotation, Some(Rotation::Unwrapping { new_epoch: e, .. }) if e == new_epoch)
    }

    /// The rest of `REKEY_REPLY` once `wrapped_b` is unwrapped (`k_b`; `None`: unwrap it
    /// here): wrap our contribution, derive the next epoch, return `REKEY_COMMIT`.
    pub(crate) fn finish_rekey_reply(
        &mut self,
        new_epoch: u32,
        k_b: Option<Zeroizing<[u8; CONTRIBUTION_LEN]>>,
    ) -> Result<Content, RotationError> {
        if !self.rekey_reply_waits(new_epoch) {
            return Err(rot_err(
                RejectCode::BadState,
                "no rotation of ours in progress",
            ));
        }
        let Some(Rotation::Unwrapping {
            new_epoch: ours,
            nonce_a,
            key,
            share_a,
            z_e,
            pub_b,
            pub_b_bytes,
            nonce_b,
            share_b,
            wrapped_b,
            started,
        }) = self.rotation.take()
        else {
            return Err(rot_err(
                RejectCode::BadState,
                "no rotation of ours in progress",
            ));
        };
        // The record carrying `wrapped_b` was authenticated by the session before we got here.
        let k_b = match k_b {
            Some(k) => k,
            None => key
                .unwrap_contribution(&wrapped_b)
                .map_err(|_| rot_err(RejectCode::DecryptFailed, "peer key material"))?,
        };
        let k_a = Zeroizing::new(random::<CONTRIBUTION_LEN>());
        let wrapped_a = pub_b
            .wrap_contribution(&k_a)
            .map_err(|_| rot_err(RejectCode::BadKey, "wrapping for peer key"))?;
        let rth = rekey_hash(
            &self.id,
            ours,
            self.role,
            key.public_der(),
            &pub_b_bytes,
            &nonce_a,
            &nonce_b,
            &share_a,
            &share_b,
            &wrapped_a,
            &wrapped_b,
        );
        let secrets = self
            .current
            .secrets()
            .next(&rth, &z_e, &k_a, &k_b, &self.id, ours);
        self.next = Some(EpochKeys::new(
            ours,
            self.role,
            self.id,
            secrets,
            self.params.window,
        ));
        self.rotation = Some(Rotation::Committed { started });
        Ok(Content::RekeyCommit {
            new_epoch: ours,
            wrapped: wrapped_a,
        })
    }

    /// The peer's rotation committed: derive and install the new epoch. The caller answers
    /// with `REKEY_DONE` sealed under it.
    #[cfg(test)]
    pub(crate) fn on_rekey_commit(
        &mut self,
        new_epoch: u32,
        wrapped_a: &[u8],
        now: Instant,
    ) -> Result<(), RotationError> {
        self.on_rekey_commit_with(new_epoch, wrapped_a, None, now)
    }

    /// The key our reply to the peer's rotation for `new_epoch` used, if that rotation waits
    /// for its `REKEY_COMMIT` (to unwrap `wrapped_a` off the event loop, DESIGN-offload.md).
    pub(crate) fn rekey_commit_key(&self, new_epoch: u32) -> Option<Arc<RsaKeyPair>> {
        match &self.rotation {
            Some(Rotation::Replied {
                new_epoch: e, key, ..
            }) if *e == new_epoch => Some(key.clone()),
            _ => None,
        }
    }

    /// [`Session::on_rekey_commit`], with `wrapped_a` already unwrapped (`k_a`) when given.
    pub(crate) fn on_rekey_commit_with(
        &mut self,
        new_epoch: u32,
        wrapped_a: &[u8],
        k_a: Option<Zeroizing<[u8; CONTRIBUTION_LEN]>>,
        now: Instant,
    ) -> Result<(), RotationError> {
        if !matches!(self.rotation, Some(Rotation::Replied { .. })) {
            // Nothing of ours is at stake: refuse it and carry on.
            return Err(rot_err(
                RejectCode::BadState,
                "REKEY_COMMIT without a rotation",
            ));
        }
        let Some(Rotation::Replied {
            new_epoch: expected,
            nonce_a,
            nonce_b,
            pub_a,
            share_a,
            share_b,
            z_e,
            key,
            k_b,
            wrapped_b,
            ..
        }) = self.rotation.take()
        else {
            return Err(rot_err(
                RejectCode::BadState,
                "REKEY_COMMIT without a rotation",
            ));
        };
        if new_epoch != expected {
            return Err(fatal(
                RejectCode::BadState,
                "REKEY_COMMIT for another epoch",
            ));
        }
        let k_a = match k_a {
            Some(k) => k,
            None => key
                .unwrap_contribution(wrapped_a)
                .map_err(|_| fatal(RejectCode::DecryptFailed, "peer key material"))?,
        };
        let rth = rekey_hash(
            &self.id,
            new_epoch,
            self.role.peer(),
            &pub_a,
            key.public_der(),
            &nonce_a,
            &nonce_b,
            &share_a,
            &share_b,
            wrapped_a,
            &wrapped_b,
        );
        let secrets = self
            .current
            .secrets()
            .next(&rth, &z_e, &k_a, &k_b, &self.id, new_epoch);
        let keys = EpochKeys::new(new_epoch, self.role, self.id, secrets, self.params.window);
        self.install(keys, now);
        Ok(())
    }

    /// Our rotation is confirmed (`REKEY_DONE`, or any valid record of the new epoch).
    pub(crate) fn promote_next(&mut self, now: Instant) -> bool {
        match self.next.take() {
            Some(keys) => {
                self.install(keys, now);
                true
            }
            None => false,
        }
    }

    fn install(&mut self, keys: EpochKeys, now: Instant) {
        let mut old = std::mem::replace(&mut self.current, keys);
        old.retire();
        // Any older epoch still in its grace window is dropped (zeroized) here.
        if let Some((dropped, _)) = self.previous.replace((old, now + self.params.grace)) {
            self.late_acks = Some(dropped.ack_check());
        }
        self.next = None;
        self.rotation = None;
        self.yield_until = None;
        self.epoch_started = now;
        self.epoch_records = 0;
        if self.state == SessionState::Rotating {
            self.state = SessionState::Active;
        }
    }

    /// Gives up our own rotation to `new_epoch` if it is still waiting for its reply (the
    /// peer won a simultaneous rotation, SPEC.md §7.1). A rotation we already yielded, or
    /// the peer's, is left alone.
    pub(crate) fn abandon_rotation(&mut self, new_epoch: u32, now: Instant, hold_off: Duration) {
        if self.is_initiating(new_epoch) {
            self.abort_rotation();
            // The peer's rotation is on its way: do not start another meanwhile.
            self.yield_until = Some(now + hold_off);
        }
    }

    /// Is our own rotation to `new_epoch` still waiting for the peer's reply?
    pub(crate) fn is_initiating(&self, new_epoch: u32) -> bool {
        matches!(self.rotation, Some(Rotation::Initiated { new_epoch: e, .. }) if e == new_epoch)
    }

    /// Gives up a rotation in progress (the session is about to close).
    pub(crate) fn abort_rotation(&mut self) {
        self.rotation = None;
        self.next = None;
        if self.state == SessionState::Rotating {
            self.state = SessionState::Active;
        }
    }

    /// Zeroizes the previous epoch once its grace window ended. Returns when to look again.
    pub(crate) fn expire_previous(&mut self, now: Instant) -> Option<Instant> {
        match &self.previous {
            Some((_, expires)) if now >= *expires => {
                self.late_acks = self.previous.take().map(|(k, _)| k.ack_check());
                None
            }
            Some((_, expires)) => Some(*expires),
            None => None,
        }
    }

    /// Does the rotation in progress use this RSA key generation (to hold on to it)?
    #[cfg(test)]
    pub(crate) fn has_previous(&self) -> bool {
        self.previous.is_some()
    }
}

/// `rth` (SPEC.md §7): the rotation's transcript hash, which both sides compute from the
/// same fields (`rotator` is the role of side A, the side that started the rotation).
#[allow(clippy::too_many_arguments)]
pub(crate) fn rekey_hash(
    session_id: &[u8; SESSION_ID_LEN],
    new_epoch: u32,
    rotator: Role,
    pub_a: &[u8],
    pub_b: &[u8],
    nonce_a: &[u8; NONCE_LEN],
    nonce_b: &[u8; NONCE_LEN],
    share_a: &[u8; SHARE_LEN],
    share_b: &[u8; SHARE_LEN],
    wrapped_a: &[u8],
    wrapped_b: &[u8],
) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"noctua/chat/2 rekey");
    h.update(session_id);
    h.update(new_epoch.to_be_bytes());
    h.update([rotator.to_byte()]);
    hash_bytes16(&mut h, pub_a);
    hash_bytes16(&mut h, pub_b);
    h.update(nonce_a);
    h.update(nonce_b);
    h.update(share_a);
    h.update(share_b);
    hash_bytes16(&mut h, wrapped_a);
    hash_bytes16(&mut h, wrapped_b);
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::EpochSecrets;
    use crate::test_keys::test_key;
    use crate::wire::ChatMessage;

    fn params() -> SessionParams {
        SessionParams {
            window: 256,
            grace: Duration::from_secs(30),
            max_message: 1000,
            rotate_every: Duration::from_secs(60),
            rotate_after_messages: 10,
        }
    }

    fn pair(now: Instant) -> (Session, Session) {
        let mk = |role| Established {
            role,
            session_id: [9; 16],
            secrets: EpochSecrets::initial(&[1; 32], &[4; 32], &[2; 32], &[3; 32], &[9; 16]),
            safety_number: SafetyNumber::from_transcript(&[1; 32]),
        };
        let mut i = Session::new(PeerId::random(), mk(Role::Initiator), params(), now);
        let mut r = Session::new(PeerId::random(), mk(Role::Responder), params(), now);
        i.confirm();
        r.confirm();
        (i, r)
    }

    fn chat(text: &str) -> Content {
        Content::Chat(vec![ChatMessage {
            id: 1,
            sent_at_ms: 0,
            private: false,
            text: text.into(),
        }])
    }

    /// Runs a full rotation started by `a`; returns the records a sent in the old epoch
    /// just before committing (still in flight).
    fn rotate(a: &mut Session, b: &mut Session, now: Instant, ka: usize, kb: usize) -> Record {
        let init = a.begin_rotation(test_key(ka), now).unwrap();
        let rec = a.seal(&init, now).unwrap();
        let (content, _) = b.open(&rec, now).unwrap();
        let Content::RekeyInit {
            new_epoch,
            nonce,
            public_key,
            share,
        } = content
        else {
            panic!()
        };
        let reply = b
            .on_rekey_init(new_epoch, nonce, &public_key, &share, test_key(kb), now)
            .unwrap();
        let reply_rec = b.seal(&reply, now).unwrap();
        let (reply, _) = a.open(&reply_rec, now).unwrap();
        let in_flight = a.seal(&chat("in flight"), now).unwrap();
        let commit = a.on_rekey_reply(&reply).unwrap();
        let commit_rec = a.seal(&commit, now).unwrap();
        let (commit, _) = b.open(&commit_rec, now).unwrap();
        let Content::RekeyCommit { new_epoch, wrapped } = commit else {
            panic!()
        };
        b.on_rekey_commit(new_epoch, &wrapped, now).unwrap();
        let done = b.seal(&Content::RekeyDone { new_epoch }, now).unwrap();
        let (_, slot) = a.open(&done, now).unwrap();
        assert_eq!(slot, Slot::Next);
        assert!(a.promote_next(now));
        in_flight
    }

    #[test]
    fn a_stray_rekey_reply_leaves_the_peers_rotation_intact() {
        // b answers a's rotation (b: Replied); a REKEY_REPLY arriving at b then (b never
        // started a rotation) is refused and must not discard b's state, so a's commit
        // still installs the new epoch at b.
        let now = Instant::now();
        let (mut a, mut b) = pair(now);
        let init = a.begin_rotation(test_key(0), now).unwrap();
        let Content::RekeyInit {
            new_epoch,
            nonce,
            public_key,
            share,
        } = init
        else {
            panic!()
        };
        let reply = b
            .on_rekey_init(new_epoch, nonce, &public_key, &share, test_key(1), now)
            .unwrap();
        assert_eq!(
            b.on_rekey_reply(&reply).unwrap_err().code,
            RejectCode::BadState
        );
        let Content::RekeyCommit { new_epoch, wrapped } = a.on_rekey_reply(&reply).unwrap() else {
            panic!()
        };
        b.on_rekey_commit(new_epoch, &wrapped, now).unwrap();
        assert_eq!(b.epoch(), 1);
    }

    #[test]
    fn rotation_moves_both_sides_to_the_same_new_epoch() {
        let now = Instant::now();
        let (mut i, mut r) = pair(now);
        let in_flight = rotate(&mut i, &mut r, now, 0, 1);
        assert_eq!((i.epoch(), r.epoch()), (1, 1));
        assert_eq!(
            (i.state, r.state),
            (SessionState::Active, SessionState::Active)
        );
        // New epoch works both ways.
        let m = i.seal(&chat("a"), now).unwrap();
        assert_eq!(m.epoch, 1);
        assert!(r.open(&m, now).is_ok());
        let m = r.seal(&chat("b"), now).unwrap();
        assert!(i.open(&m, now).is_ok());
        // The old epoch's message still in flight is accepted during the grace window...
        assert_eq!(r.open(&in_flight, now).unwrap().1, Slot::Previous);
    }

    #[test]
    fn old_epoch_is_refused_after_grace_and_forgotten() {
        let now = Instant::now();
        let (mut i, mut r) = pair(now);
        let old = i.seal(&chat("old"), now).unwrap();
        rotate(&mut i, &mut r, now, 0, 1);
        let later = now + Duration::from_secs(31);
        assert_eq!(r.open(&old, later), Err(RejectCode::StaleEpoch.into()));
        r.expire_previous(later);
        assert!(!r.has_previous());
        assert_eq!(r.open(&old, later), Err(RejectCode::StaleEpoch.into()));
        assert_eq!(r.rejections.wrong_epoch, 2);
    }

    /// A receipt the peer made under an epoch before it saw our rotation complete, landing
    /// after that epoch was dropped (zero grace), still verifies: before, the message was
    /// reported lost ("invalid receipt"). A forged or misplaced one still does not.
    #[test]
    fn a_late_receipt_for_a_dropped_epoch_still_verifies_and_only_it() {
        let now = Instant::now();
        let (mut i, mut r) = pair(now);
        let old = i.seal(&chat("old"), now).unwrap();
        let (_, slot) = r.open(&old, now).unwrap();
        let ack = r.ack(slot, old.seq).unwrap();
        rotate(&mut i, &mut r, now, 0, 1);
        let later = now + Duration::from_secs(31);
        i.expire_previous(later);
        assert!(!i.has_previous());
        assert!(i.verify_ack(0, old.seq, &ack));
        assert!(!i.verify_ack(0, old.seq + 1, &ack), "another record's");
        assert!(!i.verify_ack(1, old.seq, &ack), "another epoch's");
        let mut forged = ack.clone();
        forged.tag[0] ^= 1;
        assert!(!i.verify_ack(0, old.seq, &forged));
        // Two rotations later that epoch's receipts are gone too.
        rotate(&mut i, &mut r, later, 0, 1);
        rotate(&mut i, &mut r, later, 0, 1);
        i.expire_previous(later + Duration::from_secs(31));
        assert!(!i.verify_ack(0, old.seq, &ack));
    }

    #[test]
    fn responder_can_rotate_too_and_keys_change_each_epoch() {
        let now = Instant::now();
        let (mut i, mut r) = pair(now);
        let before = i.seal(&chat("x"), now).unwrap();
        rotate(&mut r, &mut i, now, 1, 0);
        rotate(&mut i, &mut r, now, 0, 1);
        assert_eq!((i.epoch(), r.epoch()), (2, 2));
        let after = i.seal(&chat("x"), now).unwrap();
        assert_eq!(after.seq, 0);
        // Same seq and plaintext, different epoch keys.
        assert_ne!(before.sealed, after.sealed);
    }

    #[test]
    fn simultaneous_rotation_converges_on_the_initiators() {
        let now = Instant::now();
        let (mut i, mut r) = pair(now);
        let init_i = i.begin_rotation(test_key(0), now).unwrap();
        let init_r = r.begin_rotation(test_key(1), now).unwrap();
        let rec_i = i.seal(&init_i, now).unwrap();
        let rec_r = r.seal(&init_r, now).unwrap();
        // I receives R's INIT: conflict, I's rotation stands.
        let (c, _) = i.open(&rec_r, now).unwrap();
        let Content::RekeyInit {
            new_epoch,
            nonce,
            public_key,
            share,
        } = c
        else {
            panic!()
        };
        let err = i
            .on_rekey_init(new_epoch, nonce, &public_key, &share, test_key(0), now)
            .unwrap_err();
        assert_eq!(err.code, RejectCode::RotationConflict);
        // R receives I's INIT: yields and answers.
        let (c, _) = r.open(&rec_i, now).unwrap();
        let Content::RekeyInit {
            new_epoch,
            nonce,
            public_key,
            share,
        } = c
        else {
            panic!()
        };
        let reply = r
            .on_rekey_init(new_epoch, nonce, &public_key, &share, test_key(1), now)
            .unwrap();
        let reply_rec = r.seal(&reply, now).unwrap();
        let (reply, _) = i.open(&reply_rec, now).unwrap();
        let commit = i.on_rekey_reply(&reply).unwrap();
        let commit_rec = i.seal(&commit, now).unwrap();
        let (commit, _) = r.open(&commit_rec, now).unwrap();
        let Content::RekeyCommit { new_epoch, wrapped } = commit else {
            panic!()
        };
        r.on_rekey_commit(new_epoch, &wrapped, now).unwrap();
        let first = r.seal(&chat("hi"), now).unwrap();
        assert_eq!(i.open(&first, now).unwrap().1, Slot::Next);
        assert!(i.promote_next(now));
        assert_eq!((i.epoch(), r.epoch()), (1, 1));
        let m = i.seal(&chat("ok"), now).unwrap();
        assert!(r.open(&m, now).is_ok());
    }

    /// One keep-alive per quiet session: the responder waits a quarter longer, and a record
    /// heard from the peer (its PING) counts like one sent, so it never pings while the
    /// initiator does; it does once the initiator goes quiet.
    #[test]
    fn only_the_initiator_pings_a_quiet_session_while_it_answers() {
        let t0 = Instant::now();
        let (mut i, mut r) = pair(t0);
        let every = Duration::from_secs(15);
        assert_eq!(i.ping_due_at(every), t0 + every);
        assert_eq!(r.ping_due_at(every), t0 + every + every / 4);
        // The initiator pings at 15 s; the responder opens it: its own PING moves away.
        let mut t = t0;
        for _ in 0..4 {
            t = i.ping_due_at(every);
            assert!(t < r.ping_due_at(every), "the responder would ping too");
            let ping = i.seal(&Content::Ping, t).unwrap();
            r.open(&ping, t).unwrap();
        }
        assert_eq!(r.ping_due_at(every), t + every + every / 4);
        // A record the peer refuses to open does not count as heard.
        let mut forged = i.seal(&Content::Ping, t).unwrap();
        forged.sealed[0] ^= 1;
        assert!(r.open(&forged, t + every).is_err());
        assert_eq!(r.ping_due_at(every), t + every + every / 4);
    }

    /// The responder's REKEY_INIT can arrive after its REKEY_REPLY to ours (each travels on
    /// a stream of its own): still a simultaneous rotation, answered ROTATION_CONFLICT (not
    /// BAD_STATE, which counts against the peer), whether our rotation is unwrapping the
    /// reply or committed.
    #[test]
    fn a_simultaneous_init_overtaken_by_its_reply_is_still_a_conflict() {
        let now = Instant::now();
        for committed in [false, true] {
            let (mut i, mut r) = pair(now);
            let init_i = i.begin_rotation(test_key(0), now).unwrap();
            let init_r = r.begin_rotation(test_key(1), now).unwrap();
            let rec_i = i.seal(&init_i, now).unwrap();
            let rec_r = r.seal(&init_r, now).unwrap();
            // R yields to I's INIT and replies; the reply reaches I first.
            let (c, _) = r.open(&rec_i, now).unwrap();
            let Content::RekeyInit {
                new_epoch,
                nonce,
                public_key,
                share,
            } = c
            else {
                panic!()
            };
            let reply = r
                .on_rekey_init(new_epoch, nonce, &public_key, &share, test_key(1), now)
                .unwrap();
            let reply_rec = r.seal(&reply, now).unwrap();
            let (reply, _) = i.open(&reply_rec, now).unwrap();
            if committed {
                i.on_rekey_reply(&reply).unwrap();
            } else {
                i.check_rekey_reply(&reply).unwrap();
            }
            // Then R's own INIT.
            let (c, _) = i.open(&rec_r, now).unwrap();
            let Content::RekeyInit {
                new_epoch,
                nonce,
                public_key,
                share,
            } = c
            else {
                panic!()
            };
            let err = i
                .on_rekey_init(new_epoch, nonce, &public_key, &share, test_key(0), now)
                .unwrap_err();
            assert_eq!(
                err.code,
                RejectCode::RotationConflict,
                "committed: {committed}"
            );
        }
    }

    #[test]
    fn rekey_messages_out_of_order_are_bad_state() {
        let now = Instant::now();
        let (mut i, mut r) = pair(now);
        let err = r.on_rekey_commit(1, &[0; 256], now).unwrap_err();
        assert_eq!(err.code, RejectCode::BadState);
        let err = r
            .on_rekey_init(
                5,
                [0; 32],
                test_key(0).public_der(),
                &[0; 32],
                test_key(1),
                now,
            )
            .unwrap_err();
        assert_eq!(err.code, RejectCode::BadState);
        let reply = Content::RekeyReply {
            new_epoch: 1,
            nonce: [0; 32],
            public_key: vec![],
            share: [0; 32],
            wrapped: vec![],
        };
        assert_eq!(
            i.on_rekey_reply(&reply).unwrap_err().code,
            RejectCode::BadState
        );
    }

    #[test]
    fn reflected_and_unknown_epoch_records_are_counted() {
        let now = Instant::now();
        let (mut i, _r) = pair(now);
        let mine = i.seal(&chat("x"), now).unwrap();
        assert_eq!(i.open(&mine, now), Err(RejectCode::Reflected.into()));
        let mut future = mine.clone();
        future.sender = Role::Responder;
        future.epoch = 7;
        assert_eq!(i.open(&future, now), Err(RejectCode::UnknownEpoch.into()));
        assert_eq!(i.rejections.reflected, 1);
        assert_eq!(i.rejections.wrong_epoch, 1);
    }

    #[test]
    fn rotation_is_due_by_count_and_by_time() {
        let now = Instant::now();
        let (mut i, mut r) = pair(now);
        assert!(!i.rotation_due(now));
        for _ in 0..10 {
            let m = i.seal(&chat("x"), now).unwrap();
            r.open(&m, now).unwrap();
        }
        assert!(i.rotation_due(now));
        assert!(r.rotation_due(now));
        let (i2, r2) = pair(now);
        let t = now + Duration::from_secs(60);
        assert!(i2.rotation_due(t));
        // The responder waits 5 % longer.
        assert!(!r2.rotation_due(t));
        assert!(r2.rotation_due(now + Duration::from_secs(63)));
    }

    /// The public messages of one rotation started by `a`, and `a`'s scalar `x_a` (which a
    /// passive thief never sees).
    struct Observed {
        init: Content,
        reply: Content,
        commit: Content,
        x_a: Scalar,
    }

    fn rotate_observed(a: &mut Session, b: &mut Session, now: Instant) -> Observed {
        let init = a.begin_rotation(test_key(0), now).unwrap();
        let Some(Rotation::Initiated { x_a, .. }) = &a.rotation else {
            panic!()
        };
        let x_a = **x_a;
        let Content::RekeyInit {
            new_epoch,
            nonce,
            ref public_key,
            share,
        } = init
        else {
            panic!()
        };
        let reply = b
            .on_rekey_init(new_epoch, nonce, public_key, &share, test_key(1), now)
            .unwrap();
        let commit = a.on_rekey_reply(&reply).unwrap();
        let Content::RekeyCommit {
            new_epoch,
            ref wrapped,
        } = commit
        else {
            panic!()
        };
        b.on_rekey_commit(new_epoch, wrapped, now).unwrap();
        assert!(a.promote_next(now));
        Observed {
            init,
            reply,
            commit,
            x_a,
        }
    }

    #[test]
    fn every_rotation_runs_a_fresh_diffie_hellman_exchange() {
        // Two rotations with the same RSA key pairs: fresh shares each time, and keys that
        // differ from each other and from the previous epoch.
        let now = Instant::now();
        let (mut a, mut b) = pair(now);
        let first = rotate_observed(&mut a, &mut b, now);
        let k1 = a.current.secrets().key_i2r;
        let second = rotate_observed(&mut a, &mut b, now);
        let k2 = a.current.secrets().key_i2r;
        assert_eq!((a.epoch(), b.epoch()), (2, 2));
        assert_eq!(k2, b.current.secrets().key_i2r);
        assert_ne!(k1, k2);
        let shares = |o: &Observed| match (&o.init, &o.reply) {
            (Content::RekeyInit { share: sa, .. }, Content::RekeyReply { share: sb, .. }) => {
                (*sa, *sb)
            }
            _ => panic!(),
        };
        let (sa1, sb1) = shares(&first);
        let (sa2, sb2) = shares(&second);
        assert!(sa1 != sa2 && sb1 != sb2 && sa1 != sb1);
    }

    #[test]
    fn rsa_private_keys_and_the_chain_key_do_not_give_the_next_epoch() {
        // A thief who read a node's memory before the rotation holds chain_e and, say, both
        // RSA private keys (here: the test keys), and records the rotation's messages. It
        // unwraps k_a and k_b and computes rth, but Z_e needs x_a or x_b: none of the values
        // it can form without a scalar gives epoch e+1. (Protocol 1 fell to exactly this: its
        // epoch keys were HKDF(chain_e, k_a || k_b || rth).)
        let now = Instant::now();
        let (mut a, mut b) = pair(now);
        let chain_e = a.current.secrets().chain;
        let session_id = a.id;
        let o = rotate_observed(&mut a, &mut b, now);
        let target = a.current.secrets().key_i2r;
        let (
            Content::RekeyInit {
                new_epoch,
                nonce: nonce_a,
                public_key: pub_a,
                share: share_a,
            },
            Content::RekeyReply {
                nonce: nonce_b,
                public_key: pub_b,
                share: share_b,
                wrapped: wrapped_b,
                ..
            },
            Content::RekeyCommit {
                wrapped: wrapped_a, ..
            },
        ) = (&o.init, &o.reply, &o.commit)
        else {
            panic!()
        };
        let k_a = test_key(1).unwrap_contribution(wrapped_a).unwrap();
        let k_b = test_key(0).unwrap_contribution(wrapped_b).unwrap();
        let rth = rekey_hash(
            &session_id,
            *new_epoch,
            a.role,
            pub_a,
            pub_b,
            nonce_a,
            nonce_b,
            share_a,
            share_b,
            wrapped_a,
            wrapped_b,
        );
        let chain = EpochSecrets {
            chain: chain_e,
            key_i2r: [0; 32],
            key_r2i: [0; 32],
            ack_i: [0; 32],
            ack_r: [0; 32],
        };
        let derive = |z: &[u8; 32]| chain.next(&rth, z, &k_a, &k_b, &session_id, *new_epoch);
        // Protocol 1's schedule: no Diffie-Hellman input at all.
        let p1 = {
            let mut ext = hkdf::HkdfExtract::<Sha256>::new(Some(&chain_e));
            ext.input_ikm(&k_a[..]);
            ext.input_ikm(&k_b[..]);
            ext.input_ikm(&rth);
            let (_, hk) = ext.finalize();
            let mut okm = [0u8; 64];
            hk.expand_multi_info(
                &[
                    b"noctua/chat/2 epoch keys",
                    &session_id,
                    &new_epoch.to_be_bytes(),
                ],
                &mut okm,
            )
            .unwrap();
            okm
        };
        assert_ne!(p1[32..64], target);
        let pa = decode_share(share_a).unwrap();
        let pb = decode_share(share_b).unwrap();
        let b_point = curve25519_dalek::constants::RISTRETTO_BASEPOINT_POINT;
        for guess in [pa, pb, pa + pb, pa - pb, b_point] {
            let z = guess.compress().to_bytes();
            assert_ne!(derive(&z).key_i2r, target, "derived e+1 without a scalar");
        }
        // Control: with x_a the same inputs do give e+1.
        let z = shared_secret(&o.x_a, &pb).unwrap();
        assert_eq!(derive(&z).key_i2r, target);
    }

    #[test]
    fn a_bad_rekey_share_is_refused_and_fails_only_a_rotation_in_progress() {
        let now = Instant::now();
        let (mut a, mut b) = pair(now);
        // REKEY_INIT with the identity or a non-canonical share: BAD_KEY, the session goes
        // on in its epoch and a later honest rotation works.
        for bad in [[0u8; 32], [0xff; 32]] {
            let err = b
                .on_rekey_init(1, [0; 32], test_key(0).public_der(), &bad, test_key(1), now)
                .unwrap_err();
            assert_eq!((err.code, err.fatal), (RejectCode::BadKey, false));
            assert!(b.rotation.is_none());
        }
        // A responder with its own rotation waiting does not yield to a bad one.
        b.begin_rotation(test_key(1), now).unwrap();
        let err = b
            .on_rekey_init(
                1,
                [0; 32],
                test_key(0).public_der(),
                &[0; 32],
                test_key(1),
                now,
            )
            .unwrap_err();
        assert_eq!(err.code, RejectCode::BadKey);
        assert!(b.is_initiating(1));
        b.abort_rotation();
        // REKEY_REPLY with a bad share: our rotation in progress fails.
        let init = a.begin_rotation(test_key(0), now).unwrap();
        let Content::RekeyInit {
            new_epoch,
            nonce,
            public_key,
            share,
        } = init
        else {
            panic!()
        };
        let mut reply = b
            .on_rekey_init(new_epoch, nonce, &public_key, &share, test_key(1), now)
            .unwrap();
        if let Content::RekeyReply { share, .. } = &mut reply {
            *share = [0; 32];
        }
        assert_eq!(
            a.on_rekey_reply(&reply).unwrap_err().code,
            RejectCode::BadKey
        );
        assert!(a.rotation.is_none());
        assert_eq!(a.epoch(), 0);
    }

    #[test]
    fn closing_session_refuses_records() {
        let now = Instant::now();
        let (mut i, mut r) = pair(now);
        let m = i.seal(&chat("x"), now).unwrap();
        r.set_closing();
        assert_eq!(r.open(&m, now), Err(RejectCode::SessionClosed.into()));
    }
}
