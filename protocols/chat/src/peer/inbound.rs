//! Requests from the peer: its handshake (`HELLO`, `AUTH`, `ABORT`) and its records
//! (confirmation, chat, keep-alive, close, rekeys).

use libp2p::swarm::ConnectionId;

use crate::error::{CloseReason, DeliveryError, OpenError, RejectCode};
use std::net::IpAddr;

use crate::handshake::{AuthOkParts, Established, HandshakeError, Responder};
use crate::offload::{JobError, JobResult, JobTag, Purpose};
use crate::session::{Session, SessionState, Slot};
use crate::types::{Event, SessionId};
use crate::wire::{self, AuthOk, Content, HS_ID_LEN, Hello, Record, Response, Role};

use super::context::secs;
use zeroize::Zeroizing;

use super::{
    AuthPending, Budget, ChannelToken, Context, DeferredHello, HELD_RECORDS, Peer, RekeyPending,
    ResponderHs,
};
use crate::crypto::CONTRIBUTION_LEN;

impl Peer {
    pub(crate) fn on_hello(
        &mut self,
        cx: &mut Context,
        connection: ConnectionId,
        hello: Hello,
        channel: ChannelToken,
        others: Budget,
    ) {
        let now = cx.now;
        let peer = self.id;
        if cx.refused.contains(&peer) {
            // Before anything else (SPEC.md §9): it costs nothing and says nothing about
            // the secret.
            tracing::debug!(%peer, "refusing a HELLO from a refused peer");
            return cx.reject(channel, RejectCode::Refused, 0);
        }
        if cx.shutting_down {
            return cx.reject(channel, RejectCode::Busy, 0);
        }
        if let Some(left) = cx.ban_remaining(&peer, cx.connection_ip(connection)) {
            cx.note_misbehaviour(peer, "kept trying while rate-limited");
            return cx.reject(channel, RejectCode::RateLimited, secs(left));
        }
        if let Err((code, detail)) = cx.admit_hello(
            peer,
            connection,
            &others,
            self.responder.is_some() || self.auth_pending.is_some(),
        ) {
            return cx.reject(channel, code, detail);
        }
        // Simultaneous handshakes (SPEC.md §5.7): the smaller PeerId's goes ahead.
        if self.initiator.is_some() {
            if cx.local_peer.to_bytes() < peer.to_bytes() {
                return cx.reject(channel, RejectCode::HandshakeConflict, 0);
            }
            tracing::debug!(%peer, "simultaneous handshake: yielding to the peer's");
            self.yield_to_peer(cx);
        }
        let has_session = self.session.is_some();
        let sessions = others.sessions + usize::from(has_session);
        if !has_session && sessions >= cx.config.max_sessions {
            return cx.reject(channel, RejectCode::Busy, 0);
        }
        let Some(key) = cx.key.clone() else {
            // Our key is still being generated: answer as soon as it exists. One held HELLO
            // per peer, like one pending handshake per peer (SPEC.md §8): a newer one
            // replaces it, and the older is answered UNKNOWN_HANDSHAKE.
            if let Some(i) = cx.deferred_hellos.iter().position(|d| d.peer == peer)
                && let Some(old) = cx.deferred_hellos.remove(i)
            {
                cx.reject(old.channel, RejectCode::UnknownHandshake, 0);
            }
            cx.deferred_hellos.push_back(DeferredHello {
                peer,
                connection,
                hello,
                channel,
                received: now,
            });
            return;
        };
        match Responder::on_hello(cx.local_peer, peer, &hello, key, &cx.local_auth) {
            Ok((state, challenge)) => {
                // A new handshake of the peer replaces one waiting for our private key:
                // its result, when it comes, finds nothing and is dropped.
                if let Some(old) = self.auth_pending.take() {
                    cx.reject(old.channel, RejectCode::UnknownHandshake, 0);
                }
                self.responder = Some(ResponderHs {
                    state,
                    started: now,
                });
                self.idle_since = None;
                cx.respond(channel, Response::Challenge(challenge));
                cx.schedule(now + cx.config.handshake_timeout);
            }
            Err(e) => {
                cx.note_misbehaviour(peer, "sent an unacceptable HELLO");
                tracing::debug!(%peer, "refused HELLO: {}", e.what);
                cx.reject(channel, e.code, 0);
            }
        }
    }

    pub(crate) fn on_auth(
        &mut self,
        cx: &mut Context,
        connection: ConnectionId,
        auth: wire::Auth,
        channel: ChannelToken,
    ) {
        let peer = self.id;
        let ip = cx.connection_ip(connection);
        if cx.refused.contains(&peer) {
            return cx.reject(channel, RejectCode::Refused, 0);
        }
        if let Some(left) = cx.ban_remaining(&peer, ip) {
            return cx.reject(channel, RejectCode::RateLimited, secs(left));
        }
        let Some(hs) = self.responder.take_if(|r| *r.state.hs_id() == auth.hs_id) else {
            cx.note_misbehaviour(peer, "sent AUTH for an unknown handshake");
            return cx.reject(channel, RejectCode::UnknownHandshake, 0);
        };
        if cx.config.offload_private {
            // Everything before the private key runs here; the decryption runs on the
            // driver's pool and comes back through `on_private_done` (DESIGN-offload.md).
            match hs.state.check_auth(&auth) {
                Ok(state) => {
                    let purpose = Purpose::Handshake { hs_id: auth.hs_id };
                    let seq = cx.private_job(
                        peer,
                        purpose,
                        state.key().clone(),
                        state.wrapped().to_vec(),
                    );
                    self.auth_pending = Some(AuthPending {
                        state,
                        seq,
                        channel,
                        ip,
                        started: hs.started,
                    });
                }
                Err(e) => self.auth_refused(cx, e, ip, channel),
            }
            return;
        }
        match hs.state.on_auth(&auth) {
            Ok((est, parts)) => self.complete_responder(cx, est, parts, auth.hs_id, channel),
            Err(e) => self.auth_refused(cx, e, ip, channel),
        }
    }

    /// The private-key result for a job of this peer. Only the job the waiting handshake
    /// asked for continues it; anything else (the handshake was replaced, timed out or
    /// aborted meanwhile) is dropped, its secret zeroized.
    pub(crate) fn on_private_done(&mut self, cx: &mut Context, tag: JobTag, result: JobResult) {
        let peer = self.id;
        let hs_id = match tag.purpose {
            Purpose::Handshake { hs_id } => hs_id,
            Purpose::Rotation { session_id, epoch } => {
                return self.on_rekey_result(cx, tag.seq, session_id, epoch, result);
            }
        };
        let Some(pending) = self
            .auth_pending
            .take_if(|p| p.seq == tag.seq && *p.state.hs_id() == hs_id)
        else {
            // Not the peer's handshake: perhaps our own's AUTH_OK.
            if !self.on_auth_ok_result(cx, tag.seq, hs_id, result) {
                tracing::debug!(%peer, seq = tag.seq, "stale private-key result dropped");
            }
            return;
        };
        let e = match result {
            Ok(k_i) => match pending.state.finish(&k_i) {
                Ok((est, parts)) => {
                    return self.complete_responder(cx, est, parts, hs_id, pending.channel);
                }
                Err(e) => e,
            },
            Err(JobError::Decrypt) => {
                HandshakeError::new(RejectCode::DecryptFailed, "initiator key material")
            }
            Err(JobError::Busy) => HandshakeError::new(RejectCode::Busy, "private-key queue full"),
        };
        self.auth_refused(cx, e, pending.ip, pending.channel);
    }

    /// The private-key result for a `REKEY_COMMIT`: continues only the job that waits, and
    /// only while the session still waits for that commit; anything else is dropped.
    fn on_rekey_result(
        &mut self,
        cx: &mut Context,
        seq: u64,
        session_id: [u8; wire::SESSION_ID_LEN],
        epoch: u32,
        result: JobResult,
    ) {
        let Some(mut pending) = self
            .rekey_pending
            .take_if(|p| p.seq == seq && p.session_id == session_id && p.epoch == epoch)
        else {
            // Not our answer to the peer's rotation: perhaps our own rotation's.
            return self.on_rekey_reply_result(cx, seq, session_id, epoch, result);
        };
        let held = std::mem::take(&mut pending.held);
        let waiting = self
            .session
            .as_ref()
            .is_some_and(|s| s.id == session_id && s.rekey_commit_key(epoch).is_some());
        if !waiting {
            // The rotation was abandoned or the session closed meanwhile.
            cx.push(super::Action::Forget {
                channel: pending.channel,
            });
        } else {
            // A full pool (`Busy`) unwraps here, as before the pool: refusing the commit
            // would fail the peer's rotation and close the session. A decryption error
            // fails the rotation, as inline.
            let k_a = result.ok();
            self.finish_rekey_commit(cx, epoch, &pending.wrapped, k_a, pending.channel);
        }
        // What waited to be sent goes now (under the new epoch if it is in).
        cx.dirty.insert(self.id);
        self.release_held(cx, held);
    }

    /// A `REKEY_COMMIT` waiting for our private key whose rotation is gone (timed out, the
    /// session closed or replaced): its result will be dropped; its channel is let go and
    /// the records behind it are handled now.
    pub(crate) fn drop_stale_rekey_pending(&mut self, cx: &mut Context) {
        let stale = self.rekey_pending.as_ref().is_some_and(|p| {
            !self
                .session
                .as_ref()
                .is_some_and(|s| s.id == p.session_id && s.rekey_commit_key(p.epoch).is_some())
        });
        if stale && let Some(mut p) = self.rekey_pending.take() {
            cx.push(super::Action::Forget { channel: p.channel });
            let held = std::mem::take(&mut p.held);
            cx.dirty.insert(self.id);
            self.release_held(cx, held);
        }
    }

    /// Records that waited behind a `REKEY_COMMIT`, handled now in their order (a record
    /// may start another wait: the rest then wait behind it again).
    pub(crate) fn release_held(
        &mut self,
        cx: &mut Context,
        held: std::collections::VecDeque<(Record, ChannelToken)>,
    ) {
        for (rec, channel) in held {
            self.on_record(cx, rec, channel);
        }
    }

    /// An `AUTH` that does not complete: counted, reported and answered by its code.
    fn auth_refused(
        &mut self,
        cx: &mut Context,
        e: HandshakeError,
        ip: Option<IpAddr>,
        channel: ChannelToken,
    ) {
        let now = cx.now;
        let peer = self.id;
        if e.code == RejectCode::Busy {
            // Our own load, not the peer's doing: nothing counts against it.
        } else if e.code == RejectCode::DecryptFailed {
            // The proof verified but its key material does not decrypt: a private-key
            // operation the peer can repeat at will, so it counts like a wrong proof
            // (SPEC.md §5.2), though it is no wrong secret.
            if cx.record_auth_failure(peer, ip) {
                tracing::warn!(%peer, address = ?ip, "too many failed handshakes: banned for a while");
            }
            cx.note_misbehaviour(peer, "sent an AUTH whose key material does not decrypt");
        } else if e.code == RejectCode::AuthFailed {
            let banned = cx.record_auth_failure(peer, ip);
            if banned {
                tracing::warn!(%peer, address = ?ip, "too many failed authentications: banned for a while");
            } else if let Some(n) = cx.log_throttle.hit((peer, "failed to authenticate"), now) {
                // Logged once, then summarised (the events still count every one).
                if n == 1 {
                    tracing::info!(%peer, "a peer failed to authenticate (wrong secret)");
                } else {
                    tracing::info!(%peer, count = n, "a peer failed to authenticate (wrong secret; {n} times since last report)");
                }
            }
            cx.emit(Event::InboundAuthFailed {
                peer,
                address: ip,
                banned,
            });
        } else {
            cx.note_misbehaviour(peer, "sent an invalid AUTH");
        }
        cx.reject(channel, e.code, 0);
        self.gc = true;
        // Opens that waited for this handshake of the peer now run their own.
        self.resume_opens(cx, true);
    }

    fn complete_responder(
        &mut self,
        cx: &mut Context,
        est: Established,
        parts: AuthOkParts,
        hs_id: [u8; HS_ID_LEN],
        channel: ChannelToken,
    ) {
        let now = cx.now;
        let peer = self.id;
        let mut session = Session::new(peer, est, cx.params(), now);
        let profile = Content::Profile {
            name: cx.config.name.clone(),
            lasting: cx.config.lasting_identity,
        };
        let Some(record) = session.seal(&profile, now) else {
            return cx.reject(channel, RejectCode::BadState, 0);
        };
        // The peer proved our own secret: it answers our opens only if they use it too.
        let proved = cx.local_auth.clone();
        self.install_session(cx, session, Some(proved));
        self.session_hs = Some(hs_id);
        tracing::debug!(%peer, "handshake: peer authenticated, awaiting confirmation");
        let ok = AuthOk {
            hs_id,
            wrapped: parts.wrapped,
            mac: parts.mac,
            record,
        };
        cx.respond(channel, Response::AuthOk(ok));
        cx.schedule(now + cx.config.handshake_timeout);
    }

    pub(crate) fn on_abort(&mut self, cx: &mut Context, hs_id: [u8; HS_ID_LEN], code: u16) {
        let peer = self.id;
        tracing::debug!(%peer, code = %RejectCode::from_u16(code), "peer aborted a handshake");
        if self
            .responder
            .as_ref()
            .is_some_and(|r| *r.state.hs_id() == hs_id)
        {
            self.responder = None;
        }
        if let Some(p) = self.auth_pending.take_if(|p| *p.state.hs_id() == hs_id) {
            cx.push(super::Action::Forget { channel: p.channel });
        }
        // An unconfirmed session produced by that very handshake is discarded too; an ABORT
        // naming an older one changes nothing (SPEC.md §5.4).
        if !self.announced
            && self.session_hs == Some(hs_id)
            && self
                .session
                .as_ref()
                .is_some_and(|s| s.state == SessionState::Handshaking)
        {
            let error = match RejectCode::from_u16(code) {
                RejectCode::Refused => OpenError::Refused,
                other => OpenError::Rejected(other),
            };
            self.drop_unconfirmed(cx, error);
        }
        self.gc = true;
    }

    /// Whether our session is `session_id` and still awaits confirmation (an initiator's
    /// may be confirmed by the responder's first record before the `ACK`).
    pub(crate) fn is_unconfirmed(&self, session_id: &[u8; wire::SESSION_ID_LEN]) -> bool {
        self.session
            .as_ref()
            .is_some_and(|s| s.id == *session_id && s.state == SessionState::Handshaking)
    }

    /// Discards a session that never became active (no `SessionClosed`: it was never
    /// announced), failing the opens that waited for it.
    pub(crate) fn drop_unconfirmed(&mut self, cx: &mut Context, error: OpenError) {
        let peer = self.id;
        self.session = None;
        self.session_proves = None;
        self.session_hs = None;
        self.yielded_at = None;
        let opens = std::mem::take(&mut self.opens);
        cx.fail_open(Some(peer), opens.into_iter().map(|o| o.id), error.clone());
        for m in self.queue.drain(..) {
            cx.emit(Event::DeliveryFailed {
                peer,
                message: m.id,
                error: DeliveryError::SessionClosed(error.to_string()),
            });
        }
        self.set_keep_alive(cx, false);
        self.gc = true;
    }

    /// A `RECORD` request: opened under the session's keys, then acted on by content.
    pub(crate) fn on_record(&mut self, cx: &mut Context, rec: Record, channel: ChannelToken) {
        self.drop_stale_rekey_pending(cx);
        if let Some(p) = self
            .rekey_pending
            .as_mut()
            .filter(|p| p.session_id == rec.session_id)
        {
            // The peer's REKEY_COMMIT is being unwrapped: inline, this record would have
            // met the new epoch, so it waits for it, in order (DESIGN-offload.md).
            if p.held.len() < HELD_RECORDS {
                p.held.push_back((rec, channel));
            } else {
                // Not processed: the sender sends its messages again (SPEC.md §6.2).
                cx.reject(channel, RejectCode::StaleEpoch, 0);
            }
            return;
        }
        let Some((content, slot)) = self.open_record(cx, &rec, channel) else {
            return;
        };
        let Some(s) = self.session.as_ref() else {
            return;
        };
        if s.state == SessionState::Handshaking && s.role == Role::Initiator {
            // R sends records only once our PROFILE has made its session ACTIVE, so one that
            // opens under the session's keys confirms it as its ACK would (SPEC.md §5.4),
            // which may still be on its way.
            self.activate(cx);
        }
        self.on_content(cx, content, slot, rec.seq, channel);
    }

    /// Opens `rec` on our session, answering and logging a refusal; a record of the epoch
    /// our rotation created confirms that rotation.
    fn open_record(
        &mut self,
        cx: &mut Context,
        rec: &Record,
        channel: ChannelToken,
    ) -> Option<(Content, Slot)> {
        let now = cx.now;
        let peer = self.id;
        let Some(s) = self.session.as_mut().filter(|s| s.id == rec.session_id) else {
            if cx.was_recently_closed(&peer, &rec.session_id) {
                tracing::debug!(%peer, "record for a session we just closed");
            } else {
                cx.note_misbehaviour(peer, "sent a record for an unknown session");
            }
            cx.reject(channel, RejectCode::UnknownSession, 0);
            return None;
        };
        let (content, mut slot) = match s.open(rec, now) {
            Ok(ok) => ok,
            Err(refusal) => {
                let code = refusal.code;
                // A stale epoch or a session we are closing is what an honest peer's
                // in-flight records meet; the rest is misbehaviour.
                if !matches!(code, RejectCode::StaleEpoch | RejectCode::SessionClosed) {
                    cx.note_misbehaviour(peer, refusal_what(code));
                }
                cx.reject(channel, code, refusal.detail);
                return None;
            }
        };
        if slot == Slot::Next && s.promote_next(now) {
            // The peer already uses the epoch our rotation created: it is confirmed.
            slot = Slot::Current;
            let (session_id, epoch) = (SessionId(s.id), s.epoch());
            cx.emit(Event::SessionRotated {
                peer,
                session_id,
                epoch,
            });
        }
        Some((content, slot))
    }

    /// Acts on the content of a record that opened.
    fn on_content(
        &mut self,
        cx: &mut Context,
        content: Content,
        slot: Slot,
        seq: u64,
        channel: ChannelToken,
    ) {
        let now = cx.now;
        let peer = self.id;
        let Some(s) = self.session.as_mut() else {
            return;
        };
        let state = s.state;
        let ack = s.ack(slot, seq);
        match content {
            Content::Profile { name, lasting }
                if state == SessionState::Handshaking && s.role == Role::Responder =>
            {
                s.set_profile(&cx.local_peer, cx.config.lasting_identity, name, lasting);
                respond_ack(cx, channel, ack);
                self.activate(cx);
            }
            _ if state == SessionState::Handshaking => {
                s.note_refused(RejectCode::BadState);
                cx.note_misbehaviour(peer, "sent a record before confirming the session");
                cx.reject(channel, RejectCode::BadState, 0);
            }
            Content::Chat(messages) => {
                s.messages_received += messages.len() as u64;
                s.count_extra_messages((messages.len() as u64).saturating_sub(1));
                let session_id = SessionId(s.id);
                let remote_name = s.remote_name.clone().unwrap_or_default();
                respond_ack(cx, channel, ack);
                for message in messages {
                    cx.emit(Event::MessageReceived {
                        peer,
                        session_id,
                        remote_name: remote_name.clone(),
                        message,
                    });
                }
                self.maybe_rotate(cx);
            }
            Content::Ping => respond_ack(cx, channel, ack),
            Content::Close { code } => {
                respond_ack(cx, channel, ack);
                let code = RejectCode::from_u16(code);
                tracing::info!(%peer, "the peer closed the session: {code}");
                self.close(cx, CloseReason::RemoteClosed(code), None);
            }
            Content::RekeyInit {
                new_epoch,
                nonce,
                public_key,
                share,
            } => self.on_rekey_init(cx, new_epoch, nonce, public_key, share, channel),
            Content::RekeyCommit { new_epoch, wrapped } => {
                self.on_rekey_commit(cx, new_epoch, wrapped, channel)
            }
            Content::Profile { .. } | Content::RekeyReply { .. } | Content::RekeyDone { .. } => {
                s.note_refused(RejectCode::BadState);
                cx.note_misbehaviour(peer, "sent a record kind not allowed in a request");
                cx.reject(channel, RejectCode::BadState, 0);
            }
        }
        let _ = now;
    }

    fn on_rekey_init(
        &mut self,
        cx: &mut Context,
        new_epoch: u32,
        nonce: [u8; wire::NONCE_LEN],
        public_key: Vec<u8>,
        share: [u8; wire::SHARE_LEN],
        channel: ChannelToken,
    ) {
        let now = cx.now;
        let peer = self.id;
        let Some(key) = cx.key.clone() else {
            return cx.reject(channel, RejectCode::Busy, 0);
        };
        let Some(s) = self.session.as_mut() else {
            return;
        };
        match s.on_rekey_init(new_epoch, nonce, &public_key, &share, key, now) {
            Ok(reply) => match s.seal(&reply, now) {
                Some(rec) => {
                    tracing::debug!(%peer, new_epoch, "rotation: answering the peer's");
                    cx.respond(channel, Response::Reply(rec));
                    cx.schedule(now + cx.config.handshake_timeout);
                }
                None => self.close(cx, CloseReason::Exhausted, None),
            },
            Err(e) => {
                tracing::debug!(%peer, "refused REKEY_INIT: {}", e.what);
                if e.code != RejectCode::RotationConflict {
                    s.note_refused(e.code);
                }
                cx.reject(channel, e.code, 0);
            }
        }
    }

    fn on_rekey_commit(
        &mut self,
        cx: &mut Context,
        new_epoch: u32,
        wrapped: Vec<u8>,
        channel: ChannelToken,
    ) {
        let peer = self.id;
        let Some(s) = self.session.as_mut() else {
            return;
        };
        if cx.config.offload_private {
            if self.rekey_pending.is_some() {
                // One REKEY_COMMIT at a time: a second one while the first is unwrapped is
                // out of order.
                return cx.reject(channel, RejectCode::BadState, 0);
            }
            if let Some(key) = s.rekey_commit_key(new_epoch) {
                let purpose = Purpose::Rotation {
                    session_id: s.id,
                    epoch: new_epoch,
                };
                let seq = cx.private_job(peer, purpose, key, wrapped.clone());
                self.rekey_pending = Some(RekeyPending {
                    seq,
                    session_id: s.id,
                    epoch: new_epoch,
                    wrapped,
                    channel,
                    held: std::collections::VecDeque::new(),
                });
                return;
            }
            // Not the rotation we replied to: refused inline as before, no private key used.
        }
        self.finish_rekey_commit(cx, new_epoch, &wrapped, None, channel);
    }

    /// The rest of `REKEY_COMMIT`: unwrap (unless `k_a` is given), install the new epoch,
    /// answer `REKEY_DONE`.
    fn finish_rekey_commit(
        &mut self,
        cx: &mut Context,
        new_epoch: u32,
        wrapped: &[u8],
        k_a: Option<Zeroizing<[u8; CONTRIBUTION_LEN]>>,
        channel: ChannelToken,
    ) {
        let now = cx.now;
        let peer = self.id;
        let Some(s) = self.session.as_mut() else {
            return;
        };
        match s.on_rekey_commit_with(new_epoch, wrapped, k_a, now) {
            Ok(()) => {
                let session_id = SessionId(s.id);
                match s.seal(&Content::RekeyDone { new_epoch }, now) {
                    Some(rec) => {
                        cx.respond(channel, Response::Reply(rec));
                        tracing::debug!(%peer, epoch = new_epoch, "session rotated");
                        cx.emit(Event::SessionRotated {
                            peer,
                            session_id,
                            epoch: new_epoch,
                        });
                        cx.dirty.insert(peer);
                        cx.schedule(now + cx.config.rotation_grace);
                    }
                    None => self.close(cx, CloseReason::Exhausted, None),
                }
            }
            Err(e) => {
                s.note_refused(e.code);
                cx.reject(channel, e.code, 0);
                if e.fatal {
                    let reason = CloseReason::RotationFailed(e.what.into());
                    self.close(cx, reason, Some(e.code));
                }
            }
        }
    }
}

/// `ACK`, or `STALE_EPOCH` when the record's epoch is gone.
fn respond_ack(cx: &mut Context, channel: ChannelToken, ack: Option<wire::Ack>) {
    match ack {
        Some(ack) => cx.respond(channel, Response::Ack(ack)),
        None => cx.reject(channel, RejectCode::StaleEpoch, 0),
    }
}

/// How a refused record is logged.
fn refusal_what(code: RejectCode) -> &'static str {
    match code {
        RejectCode::DecryptFailed => "sent a record that failed authentication",
        RejectCode::Replayed => "replayed a record",
        RejectCode::OutOfWindow => "sent a record outside the replay window",
        RejectCode::StaleEpoch | RejectCode::UnknownEpoch => "sent a record for a wrong epoch",
        RejectCode::Reflected => "reflected our own record",
        _ => "sent an invalid record",
    }
}
