//! Answers to our requests, and their failures: each request's [`Pending`] says what it was
//! for, so each answer is handled exactly once.

use crate::error::{CloseReason, DeliveryError, OpenError, RejectCode};
use crate::session::Slot;
use crate::types::{Event, SessionId};
use crate::wire::{self, Content, Request, Response, SESSION_ID_LEN};

use super::open::open_error_from_response;
use super::{Context, Failure, FailureKind, Peer, Pending, QueuedMessage, ReplyPending};
use crate::offload::{JobResult, Purpose};

impl Peer {
    pub(crate) fn on_response(&mut self, cx: &mut Context, pending: Pending, resp: Response) {
        let peer = self.id;
        if let Response::Invalid(e) = &resp {
            cx.note_misbehaviour(peer, "sent an invalid response");
            tracing::debug!(%peer, "invalid response: {e}");
        }
        match pending {
            Pending::Hello { hs_id, .. } => self.on_hello_response(cx, hs_id, resp),
            Pending::Auth { hs_id, .. } => self.on_auth_response(cx, hs_id, resp),
            Pending::Abort { .. } => {}
            Pending::Confirm {
                session_id,
                epoch,
                seq,
                ..
            } => {
                let ok = matches!(&resp, Response::Ack(ack) if self.session_is(&session_id)
                    && self.verify_ack(epoch, seq, ack));
                if ok {
                    self.activate(cx);
                } else if self.is_unconfirmed(&session_id) {
                    let err = match resp {
                        Response::Ack(_) => OpenError::Protocol("invalid receipt".into()),
                        other => open_error_from_response(other),
                    };
                    self.drop_unconfirmed(cx, err);
                }
            }
            Pending::Chat {
                session_id,
                epoch,
                seq,
                messages,
                ..
            } => self.on_chat_response(cx, session_id, (epoch, seq), messages, Ok(resp)),
            Pending::Ping {
                session_id,
                epoch,
                seq,
                ..
            } => self.on_ping_response(cx, session_id, epoch, seq, resp),
            Pending::RekeyInit {
                session_id,
                new_epoch,
                ..
            } => self.on_rekey_init_response(cx, session_id, new_epoch, resp),
            Pending::RekeyCommit {
                session_id,
                new_epoch,
                ..
            } => self.on_rekey_commit_response(cx, session_id, new_epoch, resp),
            Pending::Close {
                session_id, reason, ..
            } => self.finish_close(cx, SessionId(session_id), reason),
        }
    }

    fn verify_ack(&self, epoch: u32, seq: u64, ack: &wire::Ack) -> bool {
        self.session
            .as_ref()
            .is_some_and(|s| s.verify_ack(epoch, seq, ack))
    }

    fn on_ping_response(
        &mut self,
        cx: &mut Context,
        session_id: [u8; SESSION_ID_LEN],
        epoch: u32,
        seq: u64,
        resp: Response,
    ) {
        self.ping_in_flight = false;
        if !self.session_is(&session_id) {
            return;
        }
        match resp {
            Response::Ack(ack) if self.verify_ack(epoch, seq, &ack) => {}
            Response::Reject {
                code: RejectCode::UnknownSession,
                ..
            } => self.close(cx, CloseReason::RemoteForgot, None),
            Response::Reject {
                code: RejectCode::StaleEpoch,
                ..
            } => {}
            _ => cx.note_misbehaviour(self.id, "answered a keep-alive wrongly"),
        }
    }

    /// The answer to (or failure of) a `CHAT` record carrying `messages`.
    fn on_chat_response(
        &mut self,
        cx: &mut Context,
        session_id: [u8; SESSION_ID_LEN],
        (epoch, seq): (u32, u64),
        messages: Vec<QueuedMessage>,
        resp: Result<Response, DeliveryError>,
    ) {
        let peer = self.id;
        let same_session = self.session_is(&session_id);
        if same_session {
            self.in_flight = self.in_flight.saturating_sub(1);
            cx.dirty.insert(peer);
        }
        let fail = |cx: &mut Context, messages: Vec<QueuedMessage>, error: DeliveryError| {
            for m in messages {
                cx.emit(Event::DeliveryFailed {
                    peer,
                    message: m.id,
                    error: error.clone(),
                });
            }
        };
        let resp = match resp {
            Ok(r) => r,
            Err(e) => return fail(cx, messages, e),
        };
        if !same_session {
            let error = DeliveryError::SessionClosed("the session ended before the receipt".into());
            return fail(cx, messages, error);
        }
        match resp {
            Response::Ack(ack) if self.verify_ack(epoch, seq, &ack) => {
                for m in messages {
                    cx.emit(Event::MessageDelivered {
                        peer,
                        message: m.id,
                    });
                }
            }
            Response::Ack(_) => {
                cx.note_misbehaviour(peer, "sent an invalid receipt");
                fail(cx, messages, DeliveryError::BadReceipt)
            }
            Response::Reject {
                code: RejectCode::StaleEpoch,
                ..
            } => {
                // Not processed: the epoch's keys were gone. Send again under the current one.
                for m in messages.into_iter().rev() {
                    self.queue.push_front(m);
                }
            }
            Response::Reject {
                code: RejectCode::UnknownSession,
                ..
            } => {
                let error = DeliveryError::Rejected(RejectCode::UnknownSession);
                fail(cx, messages, error);
                self.close(cx, CloseReason::RemoteForgot, None);
            }
            Response::Reject { code, .. } => fail(cx, messages, DeliveryError::Rejected(code)),
            _ => {
                cx.note_misbehaviour(peer, "answered a message wrongly");
                fail(cx, messages, DeliveryError::BadReceipt)
            }
        }
    }

    fn on_rekey_init_response(
        &mut self,
        cx: &mut Context,
        session_id: [u8; SESSION_ID_LEN],
        new_epoch: u32,
        resp: Response,
    ) {
        let now = cx.now;
        let peer = self.id;
        let hold_off = cx.config.handshake_timeout;
        let Some(s) = self.session.as_mut().filter(|s| s.id == session_id) else {
            return;
        };
        let offload = cx.config.offload_private;
        let result = match resp {
            Response::Reply(rec) if rec.session_id == session_id => match s.open(&rec, now) {
                Ok((content, _)) if offload => match s.check_rekey_reply(&content) {
                    Ok((key, wrapped, epoch)) => {
                        // `wrapped_b` is unwrapped off the event loop; `REKEY_COMMIT` goes
                        // out when the result comes back (DESIGN-offload.md).
                        let purpose = Purpose::Rotation { session_id, epoch };
                        let seq = cx.private_job(peer, purpose, key, wrapped);
                        self.reply_pending = Some(ReplyPending {
                            seq,
                            session_id,
                            epoch,
                        });
                        return;
                    }
                    Err(e) => Err(e.what.to_string()),
                },
                Ok((content, _)) => s.on_rekey_reply(&content).map_err(|e| e.what.to_string()),
                Err(r) => Err(format!("reply refused: {}", r.code)),
            },
            Response::Reject { .. } if !s.is_initiating(new_epoch) => {
                // We already yielded to the peer's simultaneous rotation: this refusal of
                // ours is expected and changes nothing.
                return;
            }
            Response::Reject {
                code: RejectCode::RotationConflict,
                ..
            } => {
                // Simultaneous rotation: the peer's goes ahead.
                s.abandon_rotation(new_epoch, now, hold_off);
                return;
            }
            Response::Reject { code, .. } => Err(format!("the peer refused: {code}")),
            other => Err(format!("unexpected answer {other:?}")),
        };
        self.send_rekey_commit(cx, session_id, new_epoch, result);
    }

    /// The private-key result for our rotation's `REKEY_REPLY`: continues only the job that
    /// waits, while the rotation still waits for it; anything else is dropped.
    pub(crate) fn on_rekey_reply_result(
        &mut self,
        cx: &mut Context,
        seq: u64,
        session_id: [u8; SESSION_ID_LEN],
        epoch: u32,
        result: JobResult,
    ) {
        let peer = self.id;
        if self
            .reply_pending
            .take_if(|p| p.seq == seq && p.session_id == session_id && p.epoch == epoch)
            .is_none()
        {
            tracing::debug!(%peer, seq, "stale private-key result dropped");
            return;
        }
        let Some(s) = self
            .session
            .as_mut()
            .filter(|s| s.id == session_id && s.rekey_reply_waits(epoch))
        else {
            return; // the session closed or the rotation failed meanwhile
        };
        // `Busy` (the pool was full) unwraps here, as before the pool; a decryption error
        // fails the rotation, as inline.
        let result = s
            .finish_rekey_reply(epoch, result.ok())
            .map_err(|e| e.what.to_string());
        self.send_rekey_commit(cx, session_id, epoch, result);
    }

    /// Sends our rotation's `REKEY_COMMIT`, or closes the session if the rotation failed.
    fn send_rekey_commit(
        &mut self,
        cx: &mut Context,
        session_id: [u8; SESSION_ID_LEN],
        new_epoch: u32,
        result: Result<Content, String>,
    ) {
        let now = cx.now;
        let peer = self.id;
        let Some(s) = self.session.as_mut().filter(|s| s.id == session_id) else {
            return;
        };
        match result {
            Ok(commit) => match s.seal(&commit, now) {
                Some(rec) => {
                    let pending = Pending::RekeyCommit {
                        peer,
                        session_id,
                        new_epoch,
                    };
                    cx.send(peer, Request::Record(rec), pending);
                }
                None => self.close(cx, CloseReason::Exhausted, None),
            },
            Err(why) => {
                tracing::warn!(%peer, "rotation failed: {why}");
                let reason = CloseReason::RotationFailed(why);
                self.close(cx, reason, Some(RejectCode::BadState));
            }
        }
    }

    fn on_rekey_commit_response(
        &mut self,
        cx: &mut Context,
        session_id: [u8; SESSION_ID_LEN],
        new_epoch: u32,
        resp: Response,
    ) {
        let now = cx.now;
        let peer = self.id;
        let Some(s) = self.session.as_mut().filter(|s| s.id == session_id) else {
            return;
        };
        let result = match resp {
            Response::Reply(rec) if rec.session_id == session_id => match s.open(&rec, now) {
                Ok((Content::RekeyDone { new_epoch: e }, slot)) if e == new_epoch => {
                    if slot == Slot::Next {
                        s.promote_next(now);
                        Ok(true)
                    } else {
                        // Already promoted by an earlier record of the new epoch.
                        Ok(false)
                    }
                }
                Ok(_) => Err("unexpected reply to REKEY_COMMIT".to_string()),
                Err(r) => Err(format!("reply refused: {}", r.code)),
            },
            Response::Reject { code, .. } => Err(format!("the peer refused: {code}")),
            other => Err(format!("unexpected answer {other:?}")),
        };
        match result {
            Ok(promoted) => {
                if promoted {
                    tracing::debug!(%peer, epoch = new_epoch, "session rotated");
                    cx.emit(Event::SessionRotated {
                        peer,
                        session_id: SessionId(session_id),
                        epoch: new_epoch,
                    });
                }
                cx.dirty.insert(peer);
                cx.schedule(now + cx.config.rotation_grace);
            }
            Err(why) => {
                tracing::warn!(%peer, "rotation failed: {why}");
                self.close(cx, CloseReason::RotationFailed(why), None);
            }
        }
    }

    /// One of our requests got no answer.
    pub(crate) fn on_outbound_failure(
        &mut self,
        cx: &mut Context,
        pending: Pending,
        error: Failure,
    ) {
        use FailureKind as F;
        let peer = self.id;
        let open_err = || match &error.kind {
            F::DialFailure => OpenError::Dial("the peer could not be reached".into()),
            F::Timeout => OpenError::Timeout,
            F::ConnectionClosed => OpenError::ConnectionClosed,
            F::UnsupportedProtocols | F::RefusedProtocol => OpenError::UnsupportedProtocol,
            F::Io(e) => OpenError::Protocol(e.clone()),
        };
        let delivery_err = || match &error.kind {
            F::Timeout => DeliveryError::Timeout,
            F::ConnectionClosed | F::DialFailure => DeliveryError::ConnectionClosed,
            F::UnsupportedProtocols | F::RefusedProtocol => {
                DeliveryError::Io("protocol not supported".into())
            }
            F::Io(e) => DeliveryError::Io(e.clone()),
        };
        tracing::debug!(%peer, "request failed: {}", error.text);
        match pending {
            Pending::Hello { hs_id, .. } | Pending::Auth { hs_id, .. } => {
                let Some(hs) = self.initiator.take_if(|hs| hs.hs_id == hs_id) else {
                    return;
                };
                // The connection that carried our HELLO or AUTH closed, but another one to
                // the peer is up (two crossing dials, one of them dropped): start once more
                // on it rather than fail the open, since the peer may be waiting for exactly
                // this handshake after a HANDSHAKE_CONFLICT (SPEC.md §5.4).
                let restart = matches!(error.kind, F::ConnectionClosed)
                    && !hs.restarted
                    && !self.connections.is_empty();
                match cx.key.clone() {
                    Some(key) if restart => {
                        tracing::debug!(%peer, "handshake lost to a closed connection: starting it again");
                        self.start_initiator(cx, key, hs.auth, true);
                    }
                    _ => {
                        self.initiator = Some(hs);
                        self.fail_initiator(cx, open_err(), None);
                    }
                }
            }
            Pending::Abort { .. } => {}
            Pending::Confirm { session_id, .. } => {
                if self.is_unconfirmed(&session_id) {
                    self.drop_unconfirmed(cx, open_err());
                }
            }
            Pending::Chat {
                session_id,
                epoch,
                seq,
                messages,
                ..
            } => {
                let resp = Err(delivery_err());
                self.on_chat_response(cx, session_id, (epoch, seq), messages, resp)
            }
            Pending::Ping { session_id, .. } => {
                self.ping_in_flight = false;
                if self.session_is(&session_id) {
                    let reason = match error.kind {
                        F::ConnectionClosed | F::DialFailure => CloseReason::ConnectionLost,
                        _ => CloseReason::PeerUnresponsive,
                    };
                    self.close(cx, reason, None);
                }
            }
            Pending::RekeyInit { session_id, .. } | Pending::RekeyCommit { session_id, .. } => {
                if self.session_is(&session_id) {
                    let reason = CloseReason::RotationFailed(error.text.clone());
                    self.close(cx, reason, None);
                }
            }
            Pending::Close {
                session_id, reason, ..
            } => self.finish_close(cx, SessionId(session_id), reason),
        }
    }
}
