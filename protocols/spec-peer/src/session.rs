//! An established session (§6, §7): sealing and opening records, answering them as the
//! spec says, and rotations driven from either side.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use curve25519_dalek::scalar::Scalar;
use libp2p::PeerId;

use crate::*;

#[derive(Default)]
pub(crate) struct RecvWindow {
    highest: Option<u64>,
    seen: HashSet<u64>,
}

/// Our side of a rotation we started (A in §7), between `REKEY_INIT` and `REKEY_DONE`.
pub struct RekeyOut {
    /// `e+1`.
    pub new_epoch: u32,
    /// `nonce_a`.
    pub nonce_a: [u8; 32],
    /// `pub_a`.
    pub pub_a: Vec<u8>,
    /// `x_a`.
    pub x_a: Scalar,
    /// `share_a = enc(x_a · B)`.
    pub share_a: [u8; 32],
}

/// Our side of a rotation the peer started (B in §7), between `REKEY_REPLY` and `COMMIT`.
pub(crate) struct RekeyIn {
    new_epoch: u32,
    nonce_a: [u8; 32],
    pub_a: Vec<u8>,
    share_a: [u8; 32],
    nonce_b: [u8; 32],
    pub_b: Vec<u8>,
    share_b: [u8; 32],
    z_e: [u8; 32],
    k_b: [u8; 32],
    wrapped_b: Vec<u8>,
}

/// What [`SpecSession::answer`] did with an inbound record.
#[derive(Debug)]
pub struct Answered {
    /// The response to send back.
    pub response: Response,
    /// The content, if the record opened.
    pub content: Option<Content>,
}

/// An established session as the spec describes it.
pub struct SpecSession {
    /// Our role.
    pub role: Role,
    /// Our `PeerId`.
    pub local: PeerId,
    /// The peer's.
    pub remote: PeerId,
    /// `th`.
    pub th: [u8; 32],
    /// `session_id`.
    pub session_id: [u8; 16],
    /// `K_pw` of the secret this session's PAKE used.
    pub k_pw: [u8; 32],
    /// `enc(Z)` of the handshake.
    pub z: [u8; 32],
    /// `K_conf` of the handshake.
    pub k_conf: [u8; 32],
    /// Our RSA key.
    pub rsa: Arc<rsa::PrivateKey>,
    /// Our public key as sent.
    pub local_pub: Vec<u8>,
    /// The peer's latest public key.
    pub remote_pub: Vec<u8>,
    /// Our display name.
    pub name: String,
    /// Whether our `PROFILE` says we keep our identity (§3.5 lasting flag).
    pub lasting: bool,
    /// The peer's display name from its `PROFILE`.
    pub remote_name: Option<String>,
    /// The `flags` of the peer's `PROFILE`, once opened.
    pub remote_flags: Option<u8>,
    /// The responder's `PROFILE` record from `AUTH_OK` (handy to reflect back).
    pub auth_ok_record: Option<Record>,
    /// The epoch we send in.
    pub epoch: u32,
    /// Keys of every epoch derived so far.
    pub keys: HashMap<u32, EpochKeys>,
    pub(crate) send_seq: HashMap<u32, u64>,
    pub(crate) recv: HashMap<u32, RecvWindow>,
    /// Whether the peer's `PROFILE` was opened (for the initiator: the one in `AUTH_OK`; for
    /// the responder: the initiator's confirmation record, §5.4).
    pub confirmed: bool,
    /// A rotation we started.
    pub rekey_out: Option<RekeyOut>,
    pub(crate) rekey_in: Option<RekeyIn>,
    /// Every RSA-transported contribution this side has known, in order: the handshake's
    /// `k_i` and `k_r`, then each rotation's `k_a` and `k_b`, then that rotation's `enc(Z_e)`
    /// (for tests that look for secrets).
    pub contributions: Vec<[u8; 32]>,
    /// The keys of every epoch ever derived, never pruned (unlike [`SpecSession::keys`]).
    pub key_history: Vec<(u32, EpochKeys)>,
}

impl SpecSession {
    /// The peer's role.
    pub fn peer_role(&self) -> Role {
        self.role.peer()
    }

    /// The safety number the session shows (§5.6): the identity safety number when both
    /// `PROFILE`s carry the lasting flag, else the per-session number of `th`.
    pub fn safety_number(&self) -> String {
        if self.safety_number_lasts() {
            identity_safety_number(&self.local, &self.remote)
        } else {
            safety_number(&self.th)
        }
    }

    /// Whether both `PROFILE`s say their sender lasts (§5.6).
    pub fn safety_number_lasts(&self) -> bool {
        self.lasting
            && self
                .remote_flags
                .is_some_and(|f| f & PROFILE_FLAG_LASTING != 0)
    }

    /// Our `PROFILE` content (§3.5).
    pub fn profile(&self) -> Content {
        Content::Profile {
            name: self.name.clone(),
            flags: if self.lasting {
                PROFILE_FLAG_LASTING
            } else {
                0
            },
        }
    }

    /// Keys of `epoch`.
    pub fn epoch_keys(&self, epoch: u32) -> &EpochKeys {
        self.keys
            .get(&epoch)
            .unwrap_or_else(|| panic!("no keys for epoch {epoch}"))
    }

    /// The next `seq` we would use in `epoch`, without taking it.
    pub fn peek_seq(&self, epoch: u32) -> u64 {
        self.send_seq.get(&epoch).copied().unwrap_or(0)
    }

    /// Takes the next `seq` of `epoch`.
    pub fn take_seq(&mut self, epoch: u32) -> u64 {
        let s = self.send_seq.entry(epoch).or_insert(0);
        let v = *s;
        *s += 1;
        v
    }

    /// Moves our send counter of `epoch` forward so that the next record uses `seq`.
    pub fn skip_to(&mut self, epoch: u32, seq: u64) {
        self.send_seq.insert(epoch, seq);
    }

    /// Seals `content` as our record with the given epoch and seq (honest header).
    pub fn seal_at(&self, epoch: u32, seq: u64, content: &Content) -> Record {
        let key = self.epoch_keys(epoch).seal_key(self.role);
        seal_raw(
            key,
            self.session_id,
            epoch,
            self.role,
            seq,
            &encode_content(content),
        )
    }

    /// Seals `content` in the current epoch with the next `seq`.
    pub fn seal(&mut self, content: &Content) -> Record {
        let epoch = self.epoch;
        let seq = self.take_seq(epoch);
        self.seal_at(epoch, seq, content)
    }

    /// Our `PROFILE` confirmation record (§5.4: epoch 0, seq 0).
    pub fn confirmation(&mut self) -> Record {
        let profile = self.profile();
        self.seal(&profile)
    }

    /// A `CHAT` record carrying `texts` (ids start at `first_id`).
    pub fn chat(&mut self, first_id: u64, texts: &[&str]) -> Record {
        let content = chat_content(first_id, texts);
        self.seal(&content)
    }

    /// Opens a record written by the peer (its direction key of the record's epoch) and
    /// parses the plaintext. Does not check or update the replay window.
    pub fn open(&self, rec: &Record) -> Result<Content, String> {
        let keys = self
            .keys
            .get(&rec.epoch)
            .ok_or_else(|| format!("no keys for epoch {}", rec.epoch))?;
        let plain = open_raw(keys.seal_key(rec.sender), rec)?;
        decode_content(&plain, DEFAULT_MAX_MESSAGE).map_err(|e| format!("plaintext: {e}"))
    }

    /// The tag the peer must put in its `ACK` of our record `rec`.
    pub fn expected_ack_tag(&self, rec: &Record) -> [u8; 16] {
        ack_tag(
            self.epoch_keys(rec.epoch).ack_key(self.peer_role()),
            &rec.session_id,
            rec.epoch,
            rec.sender.to_byte(),
            rec.seq,
        )
    }

    /// Verifies the peer's `ACK` of our record `rec` (fields and tag, constant time).
    pub fn verify_ack(&self, rec: &Record, ack: &Ack) -> Result<(), String> {
        if ack.session_id != rec.session_id || ack.epoch != rec.epoch || ack.seq != rec.seq {
            return Err(format!(
                "ACK for (epoch {}, seq {}) does not match record (epoch {}, seq {})",
                ack.epoch, ack.seq, rec.epoch, rec.seq
            ));
        }
        let keys = self
            .keys
            .get(&rec.epoch)
            .ok_or_else(|| format!("no keys for epoch {}", rec.epoch))?;
        let ok = hmac_verify(
            keys.ack_key(self.peer_role()),
            &[
                LABEL_ACK,
                &rec.session_id,
                &rec.epoch.to_be_bytes(),
                &[rec.sender.to_byte()],
                &rec.seq.to_be_bytes(),
            ],
            &ack.tag,
        );
        if ok {
            Ok(())
        } else {
            Err("ACK tag does not verify".into())
        }
    }

    /// Our `ACK` of the peer's record `rec`.
    pub fn make_ack(&self, rec: &Record) -> Ack {
        Ack {
            session_id: rec.session_id,
            epoch: rec.epoch,
            seq: rec.seq,
            tag: ack_tag(
                self.epoch_keys(rec.epoch).ack_key(self.role),
                &rec.session_id,
                rec.epoch,
                rec.sender.to_byte(),
                rec.seq,
            ),
        }
    }

    fn reject(code: RejectCode) -> Answered {
        Answered {
            response: Response::Reject { code, detail: 0 },
            content: None,
        }
    }

    /// Receives a `RECORD` request from the peer the way §6.2 says, and builds the answer:
    /// `ACK`, a `REPLY` for rotation messages (we act as B of §7), or a `REJECT`.
    pub fn answer(&mut self, rec: &Record) -> Answered {
        if rec.session_id != self.session_id {
            return Self::reject(RejectCode::UnknownSession);
        }
        if rec.sender == self.role {
            return Self::reject(RejectCode::Reflected);
        }
        if !self.keys.contains_key(&rec.epoch) {
            return Self::reject(RejectCode::UnknownEpoch);
        }
        // §6.2 step 4: no sender uses seq >= 2^32 (§6.1); refused before decrypting.
        if rec.seq >= SEQ_LIMIT {
            return Self::reject(RejectCode::OutOfWindow);
        }
        let window = self.recv.entry(rec.epoch).or_default();
        if let Some(hi) = window.highest
            && rec.seq + (DEFAULT_WINDOW - 1) < hi
        {
            return Self::reject(RejectCode::OutOfWindow);
        }
        if window.seen.contains(&rec.seq) {
            return Self::reject(RejectCode::Replayed);
        }
        let plain = match open_raw(self.epoch_keys(rec.epoch).seal_key(rec.sender), rec) {
            Ok(p) => p,
            Err(_) => return Self::reject(RejectCode::DecryptFailed),
        };
        let window = self.recv.entry(rec.epoch).or_default();
        window.seen.insert(rec.seq);
        window.highest = Some(window.highest.map_or(rec.seq, |h| h.max(rec.seq)));
        let content = match decode_content(&plain, DEFAULT_MAX_MESSAGE) {
            Ok(c) => c,
            Err(e) => {
                return Answered {
                    response: Response::Reject {
                        code: e.code,
                        detail: e.detail,
                    },
                    content: None,
                };
            }
        };
        if !self.confirmed {
            // §5.4: the responder's session becomes ACTIVE on the initiator's PROFILE; until
            // then nothing else is allowed.
            return match content {
                Content::Profile { name, flags } => {
                    self.confirmed = true;
                    self.remote_name = Some(name.clone());
                    self.remote_flags = Some(flags);
                    Answered {
                        response: Response::Ack(self.make_ack(rec)),
                        content: Some(Content::Profile { name, flags }),
                    }
                }
                other => Answered {
                    response: Response::Reject {
                        code: RejectCode::BadState,
                        detail: 0,
                    },
                    content: Some(other),
                },
            };
        }
        // A valid record of a new epoch installs it (§7, "or on any valid record of e+1").
        if rec.epoch > self.epoch && self.rekey_out.is_some() {
            self.epoch = rec.epoch;
            self.rekey_out = None;
        }
        let response = match &content {
            Content::RekeyInit {
                new_epoch,
                nonce,
                public_key,
                share,
            } => match self.on_rekey_init(rec.epoch, *new_epoch, nonce, public_key, share) {
                Ok(reply) => Response::Reply(reply),
                Err(code) => Response::Reject { code, detail: 0 },
            },
            Content::RekeyCommit { new_epoch, wrapped } => {
                match self.on_rekey_commit(*new_epoch, wrapped) {
                    Ok(done) => Response::Reply(done),
                    Err(code) => Response::Reject { code, detail: 0 },
                }
            }
            Content::RekeyReply { .. } | Content::RekeyDone { .. } | Content::Profile { .. } => {
                Response::Reject {
                    code: RejectCode::BadState,
                    detail: 0,
                }
            }
            Content::Chat(_) | Content::Ping | Content::Close { .. } => {
                Response::Ack(self.make_ack(rec))
            }
        };
        Answered {
            response,
            content: Some(content),
        }
    }

    // -- rotation (§7) ------------------------------------------------------------------------

    /// Keys of `e+1` from `chain_e`, `enc(Z_e)`, `k_a`, `k_b` and `rth`.
    pub fn derive_next(
        &self,
        e: u32,
        z_e: &[u8; 32],
        k_a: &[u8; 32],
        k_b: &[u8; 32],
        rth: &[u8; 32],
    ) -> EpochKeys {
        rekey_keys(
            &self.epoch_keys(e).chain,
            &self.session_id,
            e + 1,
            z_e,
            k_a,
            k_b,
            rth,
        )
    }

    /// Starts a rotation to `epoch + 1` (we are A): the `REKEY_INIT` record, sealed in the
    /// current epoch.
    pub fn rekey_init(&mut self) -> Record {
        let new_epoch = self.epoch + 1;
        let nonce_a: [u8; 32] = random();
        let pub_a = self.local_pub.clone();
        let x_a = scalar();
        let share_a = enc(&(x_a * base_point()));
        let rec = self.seal(&Content::RekeyInit {
            new_epoch,
            nonce: nonce_a,
            public_key: pub_a.clone(),
            share: share_a,
        });
        self.rekey_out = Some(RekeyOut {
            new_epoch,
            nonce_a,
            pub_a,
            x_a,
            share_a,
        });
        rec
    }

    /// Processes B's `REPLY(REKEY_REPLY)`: derives `e+1` (receive-ready) and returns the
    /// `REKEY_COMMIT` record, sealed in epoch `e`.
    pub fn rekey_commit(&mut self, reply: &Record) -> Result<Record, String> {
        let out = self.rekey_out.as_ref().ok_or("no rotation in progress")?;
        let e = out.new_epoch - 1;
        if reply.epoch != e
            || reply.sender != self.peer_role()
            || reply.session_id != self.session_id
        {
            return Err(format!(
                "REKEY_REPLY record has an unexpected header: {reply:?}"
            ));
        }
        let (nonce_b, pub_b, share_b, wrapped_b) = match self.open(reply)? {
            Content::RekeyReply {
                new_epoch,
                nonce,
                public_key,
                share,
                wrapped,
            } if new_epoch == out.new_epoch => (nonce, public_key, share, wrapped),
            other => {
                return Err(format!(
                    "expected REKEY_REPLY({}), got {other:?}",
                    out.new_epoch
                ));
            }
        };
        let share_b_point = dec(&share_b).ok_or("BAD_KEY: share_b is not acceptable")?;
        let z_e = dh(&out.x_a, &share_b_point).ok_or("Z_e is the identity")?;
        let k_b = oaep_unwrap(&self.rsa, &wrapped_b)?;
        let k_a: [u8; 32] = random();
        let wrapped_a = oaep_wrap(&pub_b, &k_a)?;
        let rth = rekey_transcript(
            &self.session_id,
            out.new_epoch,
            self.role,
            &out.pub_a,
            &pub_b,
            &out.nonce_a,
            &nonce_b,
            &out.share_a,
            &share_b,
            &wrapped_a,
            &wrapped_b,
        );
        let new_epoch = out.new_epoch;
        let keys = self.derive_next(e, &z_e, &k_a, &k_b, &rth);
        self.contributions.extend([k_a, k_b, z_e]);
        self.key_history.push((new_epoch, keys.clone()));
        self.keys.insert(new_epoch, keys);
        self.remote_pub = pub_b;
        Ok(self.seal(&Content::RekeyCommit {
            new_epoch,
            wrapped: wrapped_a,
        }))
    }

    /// Processes B's `REPLY(REKEY_DONE)`, sealed in `e+1`: installs `e+1`.
    pub fn rekey_done(&mut self, reply: &Record) -> Result<(), String> {
        let out = self.rekey_out.as_ref().ok_or("no rotation in progress")?;
        if reply.epoch != out.new_epoch || reply.sender != self.peer_role() {
            return Err(format!(
                "REKEY_DONE record has an unexpected header: {reply:?}"
            ));
        }
        match self.open(reply)? {
            Content::RekeyDone { new_epoch } if new_epoch == out.new_epoch => {}
            other => {
                return Err(format!(
                    "expected REKEY_DONE({}), got {other:?}",
                    out.new_epoch
                ));
            }
        }
        self.install(out.new_epoch);
        Ok(())
    }

    fn install(&mut self, epoch: u32) {
        self.epoch = epoch;
        self.rekey_out = None;
        // Only one previous epoch is kept (§7.1).
        self.keys.retain(|e, _| *e + 1 >= epoch);
    }

    fn on_rekey_init(
        &mut self,
        e: u32,
        new_epoch: u32,
        nonce_a: &[u8; 32],
        pub_a: &[u8],
        share_a: &[u8; 32],
    ) -> Result<Record, RejectCode> {
        if new_epoch != self.epoch + 1 || e != self.epoch {
            return Err(RejectCode::BadState);
        }
        if self.rekey_out.is_some() {
            // Simultaneous rotation (§7.1): the session's initiator keeps its own.
            if self.role == Role::Initiator {
                return Err(RejectCode::RotationConflict);
            }
            self.rekey_out = None;
        }
        parse_public_key(pub_a).map_err(|_| RejectCode::BadKey)?;
        let share_a_point = dec(share_a).ok_or(RejectCode::BadKey)?;
        let x_b = scalar();
        let share_b = enc(&(x_b * base_point()));
        let z_e = dh(&x_b, &share_a_point).ok_or(RejectCode::BadKey)?;
        let k_b: [u8; 32] = random();
        let wrapped_b = oaep_wrap(pub_a, &k_b).map_err(|_| RejectCode::BadKey)?;
        let nonce_b: [u8; 32] = random();
        let pub_b = self.local_pub.clone();
        let reply = self.seal(&Content::RekeyReply {
            new_epoch,
            nonce: nonce_b,
            public_key: pub_b.clone(),
            share: share_b,
            wrapped: wrapped_b.clone(),
        });
        self.rekey_in = Some(RekeyIn {
            new_epoch,
            nonce_a: *nonce_a,
            pub_a: pub_a.to_vec(),
            share_a: *share_a,
            nonce_b,
            pub_b,
            share_b,
            z_e,
            k_b,
            wrapped_b,
        });
        Ok(reply)
    }

    fn on_rekey_commit(&mut self, new_epoch: u32, wrapped_a: &[u8]) -> Result<Record, RejectCode> {
        let Some(st) = self.rekey_in.take_if(|st| st.new_epoch == new_epoch) else {
            return Err(RejectCode::BadState);
        };
        let k_a = oaep_unwrap(&self.rsa, wrapped_a).map_err(|_| RejectCode::DecryptFailed)?;
        let rth = rekey_transcript(
            &self.session_id,
            new_epoch,
            self.peer_role(),
            &st.pub_a,
            &st.pub_b,
            &st.nonce_a,
            &st.nonce_b,
            &st.share_a,
            &st.share_b,
            wrapped_a,
            &st.wrapped_b,
        );
        let keys = self.derive_next(new_epoch - 1, &st.z_e, &k_a, &st.k_b, &rth);
        self.contributions.extend([k_a, st.k_b, st.z_e]);
        self.key_history.push((new_epoch, keys.clone()));
        self.keys.insert(new_epoch, keys);
        self.remote_pub = st.pub_a;
        self.install(new_epoch);
        Ok(self.seal(&Content::RekeyDone { new_epoch }))
    }
}

/// `rth` of §7 (protocol 2: the shares come before the wrapped values).
#[allow(clippy::too_many_arguments)]
pub fn rekey_transcript(
    session_id: &[u8; 16],
    new_epoch: u32,
    role_a: Role,
    pub_a: &[u8],
    pub_b: &[u8],
    nonce_a: &[u8; 32],
    nonce_b: &[u8; 32],
    share_a: &[u8; 32],
    share_b: &[u8; 32],
    wrapped_a: &[u8],
    wrapped_b: &[u8],
) -> [u8; 32] {
    h(&[
        LABEL_REKEY,
        session_id,
        &new_epoch.to_be_bytes(),
        &[role_a.to_byte()],
        &bytes16(pub_a),
        &bytes16(pub_b),
        nonce_a,
        nonce_b,
        share_a,
        share_b,
        &bytes16(wrapped_a),
        &bytes16(wrapped_b),
    ])
}

/// The keys of epoch `new_epoch` (§7):
/// `prk = HKDF-Extract(salt = chain_e, ikm = enc(Z_e) || k_a || k_b || rth)`, then
/// `HKDF-Expand(prk, "noctua/chat/2 epoch keys" || session_id || u32(new_epoch), 160)`.
pub fn rekey_keys(
    chain_e: &[u8; 32],
    session_id: &[u8; 16],
    new_epoch: u32,
    z_e: &[u8; 32],
    k_a: &[u8; 32],
    k_b: &[u8; 32],
    rth: &[u8; 32],
) -> EpochKeys {
    let ikm = [&z_e[..], &k_a[..], &k_b[..], &rth[..]].concat();
    let prk = hkdf_extract(chain_e, &ikm);
    epoch_keys(&prk, session_id, new_epoch)
}

/// A `CHAT` content with `texts` (ids `first_id..`, `sent_at_ms` = now).
pub fn chat_content(first_id: u64, texts: &[&str]) -> Content {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    Content::Chat(
        texts
            .iter()
            .enumerate()
            .map(|(i, t)| ChatMessage {
                id: first_id + i as u64,
                sent_at_ms: now,
                flags: 0,
                text: (*t).to_owned(),
            })
            .collect(),
    )
}
