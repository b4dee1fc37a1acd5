//! Our opens and our side of a handshake (initiator), up to the session being announced.

use std::time::Instant;

use crate::crypto::{AuthKey, Secret, ct_eq};
use crate::error::{CloseReason, OpenError, RejectCode};
use crate::handshake::Established;
use crate::handshake::{HandshakeError, Initiator};
use crate::offload::{JobResult, Purpose};
use crate::session::{Session, SessionState, Slot};
use crate::types::{Event, OpenId, SessionId};
use crate::wire::{self, Content, HS_ID_LEN, Record, Request, Response, Role};

use super::{Budget, Context, InitStage, InitiatorHs, Open, Peer, Pending};

impl Peer {
    /// A local open towards this peer (`Behaviour::open_session`, or a dial that connected).
    pub(crate) fn start_open(
        &mut self,
        cx: &mut Context,
        open: OpenId,
        secret: Secret,
        others: Budget,
    ) {
        let now = cx.now;
        let peer = self.id;
        if peer == cx.local_peer {
            return cx.fail_open(None, [open], OpenError::Dial("that is this node".into()));
        }
        if cx.shutting_down {
            let error = OpenError::LocalLimit("the node is shutting down");
            return cx.fail_open(Some(peer), [open], error);
        }
        if cx.refused.contains(&peer) {
            return cx.fail_open(Some(peer), [open], OpenError::RefusedHere);
        }
        if self.session.as_ref().is_some_and(|s| s.is_open()) {
            return cx.fail_open(Some(peer), [open], OpenError::AlreadyActive);
        }
        if self.initiator.is_some()
            || self.peer_handshaking()
            || self
                .session
                .as_ref()
                .is_some_and(|s| s.state == SessionState::Handshaking)
        {
            // A handshake with this peer is already under way: this open waits for it. Its
            // session answers the open only if it proves the open's secret (SPEC.md
            // §5.7.1); otherwise our own handshake runs after it.
            self.opens.push(Open::new(open, &secret));
            return;
        }
        if others.opens + self.handshakes() >= cx.config.max_pending_opens {
            let error = OpenError::LocalLimit("too many handshakes in progress");
            return cx.fail_open(Some(peer), [open], error);
        }
        if others.sessions + usize::from(self.session.is_some()) >= cx.config.max_sessions {
            let error = OpenError::LocalLimit("too many sessions");
            return cx.fail_open(Some(peer), [open], error);
        }
        let connected = !self.connections.is_empty();
        self.waiting.push((open, secret, now));
        if !connected {
            cx.push(super::Action::Dial { peer });
        }
        cx.schedule(now + cx.config.handshake_timeout);
        self.try_start_waiting(cx);
    }

    /// Starts a handshake for the first open waiting on this peer, once the peer is connected
    /// and our key exists.
    pub(crate) fn try_start_waiting(&mut self, cx: &mut Context) {
        let Some(key) = cx.key.clone() else {
            return;
        };
        if self.connections.is_empty() || self.waiting.is_empty() || self.initiator.is_some() {
            return;
        }
        let peer_is_opening = self.peer_handshaking()
            || self
                .session
                .as_ref()
                .is_some_and(|s| s.state == SessionState::Handshaking);
        if peer_is_opening {
            // The peer is already opening a session with us (for instance its HELLO waited
            // for our key): starting a second handshake would cross it. Wait
            // for it (its session answers only the opens it proves, SPEC.md §5.7.1).
            let riding = self.waiting.drain(..).map(|(o, s, _)| Open::new(o, &s));
            self.opens.extend(riding);
            return;
        }
        let waiting = std::mem::take(&mut self.waiting);
        let Some((_, secret, _)) = waiting.first() else {
            return;
        };
        let auth = secret.auth_key();
        self.opens
            .extend(waiting.iter().map(|(o, s, _)| Open::new(*o, s)));
        self.start_initiator(cx, key, auth, false);
    }

    /// Sends our `HELLO` proving `auth` (the secret of the first open it serves);
    /// `restarted` when it replaces one lost to a closed connection.
    pub(crate) fn start_initiator(
        &mut self,
        cx: &mut Context,
        key: std::sync::Arc<crate::crypto::RsaKeyPair>,
        auth: AuthKey,
        restarted: bool,
    ) {
        let peer = self.id;
        let (init, hello) = Initiator::start(cx.local_peer, peer, key, &auth);
        let hs_id = *init.hs_id();
        let now = cx.now;
        self.initiator = Some(InitiatorHs {
            stage: InitStage::SentHello(init),
            hs_id,
            started: now,
            auth,
            restarted,
        });
        self.yielded_at = None;
        self.idle_since = None;
        tracing::debug!(%peer, "handshake: sending HELLO");
        cx.send(peer, Request::Hello(hello), Pending::Hello { peer, hs_id });
        cx.schedule(now + cx.config.handshake_timeout);
    }

    /// Runs our own handshake for opens that no session proved, once nothing else is under
    /// way with the peer (SPEC.md §5.7.1: after a crossing, or when the peer's handshake
    /// that they waited for failed). While our opens wait for a crossing handshake of the
    /// peer (`yielded_at`), only `force` starts it.
    pub(crate) fn resume_opens(&mut self, cx: &mut Context, force: bool) {
        if self.opens.is_empty()
            || (self.yielded_at.is_some() && !force)
            || self.initiator.is_some()
            || self.peer_handshaking()
            || self.connections.is_empty()
            || cx.deferred_hellos.iter().any(|d| d.peer == self.id)
            || self
                .session
                .as_ref()
                .is_some_and(|s| s.state != SessionState::Active)
        {
            return;
        }
        let Some(key) = cx.key.clone() else {
            return;
        };
        let auth = self.opens[0].auth.clone();
        tracing::debug!(peer = %self.id, "running our own handshake for opens the peer has not proved");
        self.start_initiator(cx, key, auth, false);
    }

    /// Our handshake gives way to the peer's crossing one (SPEC.md §5.7): our opens wait for
    /// it, once each. An open that already yielded fails instead.
    pub(crate) fn yield_to_peer(&mut self, cx: &mut Context) {
        let now = cx.now;
        if let Some(hs) = self.initiator.take()
            && matches!(hs.stage, InitStage::SentAuth(_))
        {
            // Its AUTH is on its way: the answer still tells whether its secret is right.
            self.abandoned = Some((hs.hs_id, hs.auth));
        }
        let (again, first): (Vec<Open>, Vec<Open>) = std::mem::take(&mut self.opens)
            .into_iter()
            .partition(|o| o.yielded);
        self.opens = first;
        for o in &mut self.opens {
            o.yielded = true;
        }
        let peer = self.id;
        cx.fail_open(
            Some(peer),
            again.into_iter().map(|o| o.id),
            OpenError::NotProven,
        );
        if !self.opens.is_empty() {
            self.yielded_at = Some(now);
            cx.schedule(now + cx.config.handshake_timeout);
        }
    }

    /// Our opens waited for the peer's crossing handshake until `deadline` and no session
    /// proved them: they fail (SPEC.md §5.7.2).
    pub(crate) fn yield_expired(&mut self, cx: &mut Context, yielded: Instant) {
        let deadline = yielded + cx.config.handshake_timeout;
        if cx.now < deadline {
            return;
        }
        self.yielded_at = None;
        if self.initiator.is_some() {
            return;
        }
        let peer = self.id;
        tracing::debug!(%peer, "the peer's crossing handshake never proved our opens' secret");
        let opens = std::mem::take(&mut self.opens).into_iter().map(|o| o.id);
        cx.fail_open(Some(peer), opens, OpenError::NotProven);
        self.gc = true;
    }

    /// Ends our initiator handshake with an error. With `abort`, the peer is told to drop
    /// what it holds for handshake `hs_id`.
    pub(crate) fn fail_initiator(
        &mut self,
        cx: &mut Context,
        error: OpenError,
        abort: Option<([u8; HS_ID_LEN], RejectCode)>,
    ) {
        let peer = self.id;
        self.initiator = None;
        self.yielded_at = None;
        let opens = std::mem::take(&mut self.opens);
        let connected = !self.connections.is_empty();
        tracing::debug!(%peer, "handshake failed: {error}");
        if let Some((hs_id, code)) = abort.filter(|_| connected) {
            let request = Request::Abort {
                hs_id,
                code: code.to_u16(),
            };
            cx.send(peer, request, Pending::Abort { peer });
        }
        cx.fail_open(Some(peer), opens.into_iter().map(|o| o.id), error);
        self.gc = true;
    }

    pub(crate) fn on_hello_response(
        &mut self,
        cx: &mut Context,
        hs_id: [u8; HS_ID_LEN],
        resp: Response,
    ) {
        let peer = self.id;
        let Some(hs) = self.initiator.take_if(|hs| hs.hs_id == hs_id) else {
            // A handshake we abandoned (simultaneous open): nothing to do.
            return;
        };
        let InitStage::SentHello(init) = hs.stage else {
            self.initiator = Some(hs);
            return;
        };
        match resp {
            Response::Challenge(ch) => match init.on_challenge(&ch) {
                Ok((wait, auth)) => {
                    self.initiator = Some(InitiatorHs {
                        stage: InitStage::SentAuth(wait),
                        hs_id,
                        started: hs.started,
                        auth: hs.auth,
                        restarted: hs.restarted,
                    });
                    cx.send(peer, Request::Auth(auth), Pending::Auth { peer, hs_id });
                }
                Err(e) => {
                    // A bad share or key in the CHALLENGE (SPEC.md §5.1): fail the open and
                    // tell the responder, which holds a pending handshake for it.
                    let err = if e.code == RejectCode::AuthFailed {
                        OpenError::PeerAuthFailed
                    } else {
                        OpenError::Protocol(e.what.into())
                    };
                    self.fail_initiator(cx, err, Some((hs_id, e.code)))
                }
            },
            Response::Reject {
                code: RejectCode::HandshakeConflict,
                ..
            } => {
                // A claim to check (SPEC.md §5.7.2): only a smaller PeerId wins the
                // tie-break, and its own handshake must exist or follow. Our opens wait for
                // it, once; the session it makes answers only those whose secret it proves.
                if peer.to_bytes() >= cx.local_peer.to_bytes() {
                    tracing::debug!(%peer, "HANDSHAKE_CONFLICT from a peer that cannot win the tie-break");
                    return self.fail_initiator(cx, OpenError::NotProven, None);
                }
                tracing::debug!(%peer, "simultaneous handshake: the peer's goes ahead");
                self.yield_to_peer(cx);
            }
            other => self.fail_initiator(cx, open_error_from_response(other), None),
        }
    }

    pub(crate) fn on_auth_response(
        &mut self,
        cx: &mut Context,
        hs_id: [u8; HS_ID_LEN],
        resp: Response,
    ) {
        let Some(hs) = self.initiator.take_if(|hs| hs.hs_id == hs_id) else {
            return self.on_abandoned_auth_response(cx, hs_id, &resp);
        };
        let InitStage::SentAuth(wait) = hs.stage else {
            self.initiator = Some(hs);
            return;
        };
        let ok = match resp {
            Response::AuthOk(ok) => ok,
            other => return self.fail_initiator(cx, open_error_from_response(other), None),
        };
        let checked = match wait.check_auth_ok(&ok) {
            Ok(checked) => checked,
            Err(e) => return self.initiator_refused(cx, e, hs_id),
        };
        if !cx.config.offload_private {
            let session_id = checked.session_id();
            let est = checked.finish(None);
            return self.complete_initiator(cx, est, ok.record, session_id, hs_id, hs.auth);
        }
        // `wrapped_r` is unwrapped off the event loop; until its result comes back the
        // handshake waits as if `AUTH_OK` were still on its way (DESIGN-offload.md).
        let purpose = Purpose::Handshake { hs_id };
        let seq = cx.private_job(
            self.id,
            purpose,
            checked.key().clone(),
            checked.wrapped().to_vec(),
        );
        self.initiator = Some(InitiatorHs {
            stage: InitStage::Unwrapping {
                checked,
                record: ok.record,
                seq,
            },
            ..hs
        });
    }

    /// The answer to the `AUTH` of a handshake we abandoned for a crossing one. An
    /// `AUTH_FAILED` proves the secret it used wrong: the opens waiting with that secret
    /// fail now (`WrongSecret`) rather than run a handshake of their own that would be
    /// refused again and counted against us. Any other answer changes nothing.
    fn on_abandoned_auth_response(
        &mut self,
        cx: &mut Context,
        hs_id: [u8; HS_ID_LEN],
        resp: &Response,
    ) {
        let Some((_, auth)) = self.abandoned.take_if(|(id, _)| *id == hs_id) else {
            return;
        };
        if !matches!(
            resp,
            Response::Reject {
                code: RejectCode::AuthFailed,
                ..
            }
        ) {
            return;
        }
        let (wrong, others): (Vec<Open>, Vec<Open>) = std::mem::take(&mut self.opens)
            .into_iter()
            .partition(|o| ct_eq(o.auth.as_bytes(), auth.as_bytes()));
        self.opens = others;
        if self.opens.is_empty() {
            self.yielded_at = None;
            self.gc = true;
        }
        let peer = self.id;
        tracing::debug!(%peer, failed = wrong.len(), "the abandoned handshake's secret was refused");
        cx.fail_open(
            Some(peer),
            wrong.into_iter().map(|o| o.id),
            OpenError::WrongSecret,
        );
    }

    /// The private-key result for our handshake's `AUTH_OK`: continues only the job our
    /// waiting handshake asked for; anything else is dropped. `false`: not ours.
    pub(crate) fn on_auth_ok_result(
        &mut self,
        cx: &mut Context,
        seq: u64,
        hs_id: [u8; HS_ID_LEN],
        result: JobResult,
    ) -> bool {
        let Some(hs) = self.initiator.take_if(|hs| {
            hs.hs_id == hs_id
                && matches!(&hs.stage, InitStage::Unwrapping { seq: s, .. } if *s == seq)
        }) else {
            return false;
        };
        let InitStage::Unwrapping {
            checked, record, ..
        } = hs.stage
        else {
            return false;
        };
        let session_id = checked.session_id();
        // `Busy` (the pool was full) unwraps here, as before the pool: it is our own open.
        // A decryption error fails it, as inline.
        let est = checked.finish(result.ok());
        self.complete_initiator(cx, est, record, session_id, hs_id, hs.auth);
        true
    }

    /// `AUTH_OK` refused before or after our private key: the open fails, the peer is told.
    fn initiator_refused(&mut self, cx: &mut Context, e: HandshakeError, hs_id: [u8; HS_ID_LEN]) {
        let err = if e.code == RejectCode::AuthFailed {
            OpenError::PeerAuthFailed
        } else {
            OpenError::Protocol(e.what.into())
        };
        self.fail_initiator(cx, err, Some((hs_id, e.code)))
    }

    fn complete_initiator(
        &mut self,
        cx: &mut Context,
        est: Result<Established, HandshakeError>,
        rec: Record,
        session_id: [u8; wire::SESSION_ID_LEN],
        hs_id: [u8; HS_ID_LEN],
        proved: crate::crypto::AuthKey,
    ) {
        let now = cx.now;
        let peer = self.id;
        let est = match est {
            Ok(est) => est,
            Err(e) => return self.initiator_refused(cx, e, hs_id),
        };
        let mut session = Session::new(peer, est, cx.params(), now);
        // Key confirmation: the responder's first record must open under the new keys.
        let well_formed = rec.session_id == session_id
            && rec.epoch == 0
            && rec.sender == Role::Responder
            && rec.seq == 0;
        let (name, lasting) = match well_formed.then(|| session.open(&rec, now)) {
            Some(Ok((Content::Profile { name, lasting }, Slot::Current))) => (name, lasting),
            _ => {
                let err = OpenError::Protocol("key confirmation failed".into());
                return self.fail_initiator(cx, err, Some((hs_id, RejectCode::DecryptFailed)));
            }
        };
        let local_lasting = cx.config.lasting_identity;
        session.set_profile(&cx.local_peer, local_lasting, name, lasting);
        let profile = Content::Profile {
            name: cx.config.name.clone(),
            lasting: local_lasting,
        };
        let Some(rec) = session.seal(&profile, now) else {
            let err = OpenError::Protocol("cannot seal".into());
            return self.fail_initiator(cx, err, Some((hs_id, RejectCode::BadState)));
        };
        let (epoch, seq) = (rec.epoch, rec.seq);
        self.install_session(cx, session, Some(proved));
        self.session_hs = Some(hs_id);
        tracing::debug!(%peer, "handshake: keys agreed, confirming");
        let pending = Pending::Confirm {
            peer,
            session_id,
            epoch,
            seq,
        };
        cx.send(peer, Request::Record(rec), pending);
        cx.schedule(now + cx.config.handshake_timeout);
    }

    /// Puts a freshly agreed session in place, replacing any older one with the peer.
    /// `proves` is the secret the peer proved in its handshake (`None`: none, a session
    /// made without a handshake, which answers no open). The caller records the
    /// handshake's id in `session_hs`.
    pub(crate) fn install_session(
        &mut self,
        cx: &mut Context,
        session: Session,
        proves: Option<AuthKey>,
    ) {
        let peer = self.id;
        self.initiator = None;
        self.responder = None;
        if let Some(p) = self.auth_pending.take() {
            // The peer's handshake waiting for our private key gives way to the session
            // installed now, exactly as an AUTH that had not arrived yet would: the
            // responder state is gone, so it would be answered UNKNOWN_HANDSHAKE
            // (SPEC.md §5.7.2: one session per pair; the peer's open is answered by this
            // session if it proves the open's secret).
            cx.reject(p.channel, RejectCode::UnknownHandshake, 0);
        }
        self.idle_since = None;
        let old = self.session.replace(session);
        self.session_proves = proves;
        self.session_hs = None;
        let was_announced = std::mem::replace(&mut self.announced, false);
        self.ping_in_flight = false;
        if let Some(old) = &old {
            cx.remember_closed(peer, old.id);
        }
        if let Some(old) = old
            && was_announced
        {
            tracing::debug!(%peer, "new session replaces the old one");
            cx.emit(Event::SessionClosed {
                peer,
                session_id: SessionId(old.id),
                reason: CloseReason::Replaced,
            });
        }
        self.set_keep_alive(cx, true);
    }

    /// The session is confirmed on our side: announce it and start sending.
    pub(crate) fn activate(&mut self, cx: &mut Context) {
        let peer = self.id;
        let Some(s) = self.session.as_mut() else {
            return;
        };
        s.confirm();
        if self.announced {
            return;
        }
        self.announced = true;
        // The session answers only the opens whose secret the peer proved in it (SPEC.md
        // §5.7.1); the others wait for our own handshake, which runs once this one is done.
        let (opens, unproven): (Vec<Open>, Vec<Open>) = std::mem::take(&mut self.opens)
            .into_iter()
            .partition(|o| self.proves(o));
        self.opens = unproven;
        self.yielded_at = None;
        for open in &self.opens {
            tracing::debug!(%peer, open = %open.id, "the session does not prove this open's secret: it waits for our own handshake");
        }
        let Some(s) = self.session.as_ref() else {
            return;
        };
        let ev = Event::SessionEstablished {
            peer,
            session_id: SessionId(s.id),
            role: s.role,
            remote_name: s.remote_name.clone().unwrap_or_default(),
            safety_number: s.safety_number.clone(),
            remote_lasting: s.remote_lasting,
            safety_number_lasts: s.safety_number_lasts,
            opens: opens.into_iter().map(|o| o.id).collect(),
        };
        let due = s.rotation_due_at();
        let keepalive = s.ping_due_at(cx.config.keepalive_interval);
        tracing::info!(%peer, session = %SessionId(s.id).short(), role = %s.role, "session established");
        cx.emit(ev);
        cx.dirty.insert(peer);
        cx.schedule(due.min(keepalive));
        self.resume_opens(cx, true);
    }
}

/// What a refusal of our `HELLO` or `AUTH` means for the open.
pub(crate) fn open_error_from_response(resp: Response) -> OpenError {
    match resp {
        Response::Reject { code, detail } => match code {
            RejectCode::AuthFailed => OpenError::WrongSecret,
            RejectCode::RateLimited => OpenError::RateLimited(detail),
            RejectCode::Busy => OpenError::Busy,
            RejectCode::Refused => OpenError::Refused,
            other => OpenError::Rejected(other),
        },
        Response::Invalid(e) => OpenError::Protocol(format!("invalid answer: {e}")),
        other => OpenError::Protocol(format!("unexpected answer {other:?}")),
    }
}
