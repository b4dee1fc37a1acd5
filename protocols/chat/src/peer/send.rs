//! What we send on our own: queued chat, rotations, keep-alives, and closing a session.

use crate::error::{CloseReason, DeliveryError, OpenError, RejectCode, SendError};
use crate::session::SessionState;
use crate::types::{Event, MessageId, SessionId};
use crate::wire::{self, ChatMessage, Content, MAX_BATCH, RECORD_OVERHEAD, Request};

use super::{Context, Peer, Pending, QueuedMessage};

impl Peer {
    /// Queues a chat message (`Behaviour::send_message`); `sent_at_ms` is the sender's wall
    /// clock, which the machine never reads itself; `private` marks it as sent to this peer
    /// alone (SPEC.md §3.5 `flags`).
    pub(crate) fn queue_message(
        &mut self,
        cx: &mut Context,
        text: String,
        sent_at_ms: u64,
        private: bool,
    ) -> Result<MessageId, SendError> {
        match self.session.as_ref().map(|s| s.state) {
            None => return Err(SendError::NoSession),
            Some(SessionState::Closing) => return Err(SendError::Closing),
            Some(_) => {}
        }
        if self.queue.len() >= cx.config.max_queued_messages {
            return Err(SendError::QueueFull);
        }
        let id = MessageId(cx.next_message_id);
        cx.next_message_id += 1;
        self.queue.push_back(QueuedMessage {
            id,
            wire: ChatMessage {
                id: id.0,
                sent_at_ms,
                private,
                text,
            },
        });
        cx.dirty.insert(self.id);
        Ok(id)
    }

    /// Sends what the queue holds, in batches, while the in-flight limit allows.
    pub(crate) fn flush(&mut self, cx: &mut Context) {
        let now = cx.now;
        let peer = self.id;
        let budget = cx.config.max_frame_size - RECORD_OVERHEAD;
        let max_in_flight = cx.config.max_in_flight;
        self.drop_stale_rekey_pending(cx);
        if self.rekey_pending.is_some() {
            // The peer's REKEY_COMMIT is being unwrapped: inline, what we send next would go
            // under the new epoch, so it waits for it (a record sent under the old one now
            // could be acked under keys a zero grace retires before the receipt lands).
            return;
        }
        loop {
            let Some(s) = self.session.as_mut() else {
                return;
            };
            if !s.is_open() || self.queue.is_empty() || self.in_flight >= max_in_flight {
                break;
            }
            let mut batch = Vec::new();
            let mut size = 3;
            while let Some(m) = self.queue.front() {
                let len = wire::chat_message_encoded_len(m.wire.text.len());
                if !batch.is_empty() && (size + len > budget || batch.len() >= MAX_BATCH) {
                    break;
                }
                size += len;
                if let Some(m) = self.queue.pop_front() {
                    batch.push(m);
                }
            }
            let plain = wire::encode_chat(batch.iter().map(|m| &m.wire));
            let Some(rec) = s.seal_bytes(plain, now) else {
                self.queue.extend(batch);
                return self.close(cx, CloseReason::Exhausted, Some(RejectCode::Shutdown));
            };
            s.messages_sent += batch.len() as u64;
            s.count_extra_messages((batch.len() as u64).saturating_sub(1));
            self.in_flight += 1;
            let pending = Pending::Chat {
                peer,
                session_id: s.id,
                epoch: rec.epoch,
                seq: rec.seq,
                messages: batch,
            };
            cx.send(peer, Request::Record(rec), pending);
        }
        self.maybe_rotate(cx);
    }

    pub(crate) fn maybe_rotate(&mut self, cx: &mut Context) {
        if self
            .session
            .as_ref()
            .is_some_and(|s| s.rotation_due(cx.now))
        {
            self.start_rotation(cx);
        }
    }

    pub(crate) fn start_rotation(&mut self, cx: &mut Context) {
        let now = cx.now;
        let peer = self.id;
        let Some(key) = cx.key.clone() else {
            return;
        };
        let Some(s) = self.session.as_mut() else {
            return;
        };
        let Some(init) = s.begin_rotation(key, now) else {
            return;
        };
        let Some(rec) = s.seal(&init, now) else {
            return self.close(cx, CloseReason::Exhausted, None);
        };
        let Content::RekeyInit { new_epoch, .. } = init else {
            return;
        };
        let session_id = s.id;
        tracing::debug!(%peer, new_epoch, "rotation: starting");
        let pending = Pending::RekeyInit {
            peer,
            session_id,
            new_epoch,
        };
        cx.send(peer, Request::Record(rec), pending);
        cx.schedule(now + cx.config.handshake_timeout);
    }

    pub(crate) fn send_ping(&mut self, cx: &mut Context) {
        let peer = self.id;
        self.drop_stale_rekey_pending(cx);
        if self.rekey_pending.is_some() {
            return; // as `flush`: the next keep-alive goes under the new epoch
        }
        let Some(s) = self.session.as_mut() else {
            return;
        };
        let Some(rec) = s.seal(&Content::Ping, cx.now) else {
            return self.close(cx, CloseReason::Exhausted, None);
        };
        self.ping_in_flight = true;
        let pending = Pending::Ping {
            peer,
            session_id: s.id,
            epoch: rec.epoch,
            seq: rec.seq,
        };
        cx.send(peer, Request::Record(rec), pending);
    }

    /// Ends the session. With `notify`, the peer gets a `CLOSE` first and the session is
    /// removed when it answers; otherwise at once.
    pub(crate) fn close(
        &mut self,
        cx: &mut Context,
        reason: CloseReason,
        notify: Option<RejectCode>,
    ) {
        let peer = self.id;
        let Some(s) = self.session.as_mut() else {
            return;
        };
        let session_id = SessionId(s.id);
        for m in self.queue.drain(..) {
            cx.emit(Event::DeliveryFailed {
                peer,
                message: m.id,
                error: DeliveryError::SessionClosed(reason.to_string()),
            });
        }
        if let Some(code) = notify
            && s.is_open()
            && !self.connections.is_empty()
            && let Some(rec) = s.seal(
                &Content::Close {
                    code: code.to_u16(),
                },
                cx.now,
            )
        {
            s.set_closing();
            let pending = Pending::Close {
                peer,
                session_id: session_id.0,
                reason,
            };
            cx.send(peer, Request::Record(rec), pending);
            return;
        }
        self.finish_close(cx, session_id, reason);
    }

    /// Removes session `session_id` (if it is still ours), failing what waited on it.
    pub(crate) fn finish_close(
        &mut self,
        cx: &mut Context,
        session_id: SessionId,
        reason: CloseReason,
    ) {
        let peer = self.id;
        if self.session.as_ref().map(|s| s.id) != Some(session_id.0) {
            return;
        }
        self.session = None;
        self.session_proves = None;
        self.session_hs = None;
        self.ping_in_flight = false;
        let announced = std::mem::replace(&mut self.announced, false);
        cx.remember_closed(peer, session_id.0);
        // The opens of an announced session were answered when it was announced: any left
        // wait for a handshake under way (one made while this session was closing) and
        // belong to the session it makes.
        let opens = if announced {
            Vec::new()
        } else {
            std::mem::take(&mut self.opens)
        };
        for m in self.queue.drain(..) {
            cx.emit(Event::DeliveryFailed {
                peer,
                message: m.id,
                error: DeliveryError::SessionClosed(reason.to_string()),
            });
        }
        if announced {
            tracing::info!(%peer, session = %session_id.short(), "session closed: {reason}");
            cx.emit(Event::SessionClosed {
                peer,
                session_id,
                reason,
            });
        } else {
            let opens = opens.into_iter().map(|o| o.id);
            cx.fail_open(Some(peer), opens, OpenError::ConnectionClosed);
        }
        self.set_keep_alive(cx, false);
        self.gc = true;
    }
}
