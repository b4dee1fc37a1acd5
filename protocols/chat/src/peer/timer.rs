//! Deadlines: opens and handshakes that took too long, rotations due or stuck, keep-alives,
//! and connections that never authenticated.

use std::time::{Duration, Instant};

use crate::error::{CloseReason, OpenError, RejectCode};
use crate::session::SessionState;
use crate::types::OpenId;

use super::{Context, Peer};

/// What the session's timers call for at a tick.
#[derive(Default)]
struct SessionDue {
    unconfirmed_late: bool,
    rotation_late: bool,
    rotate: bool,
    ping: bool,
}

impl Peer {
    /// Runs this peer's timers at `cx.now`, lowering `next` to its next deadline. Returns
    /// whether its connections should be closed (connected too long without
    /// authenticating).
    pub(crate) fn on_tick(&mut self, cx: &mut Context, next: &mut Instant) -> bool {
        let now = cx.now;
        let peer = self.id;
        let timeout = cx.config.handshake_timeout;
        // Opens waiting too long for a connection or our key.
        let (expired, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.waiting)
            .into_iter()
            .partition(|(_, _, t)| now.saturating_duration_since(*t) >= timeout);
        self.waiting = kept;
        for (_, _, t) in &self.waiting {
            *next = (*next).min(*t + timeout);
        }
        let expired: Vec<OpenId> = expired.into_iter().map(|(o, _, _)| o).collect();
        // Handshakes past their deadline.
        let init_late = self
            .initiator
            .as_ref()
            .filter(|h| now.saturating_duration_since(h.started) >= timeout)
            .map(|h| h.hs_id);
        if let Some(h) = &self.initiator {
            *next = (*next).min(h.started + timeout);
        }
        if self
            .responder
            .as_ref()
            .is_some_and(|h| now.saturating_duration_since(h.started) >= timeout)
        {
            tracing::debug!(%peer, "inbound handshake timed out");
            self.responder = None;
        }
        if let Some(h) = &self.responder {
            *next = (*next).min(h.started + timeout);
        }
        // A handshake waiting for our private key keeps its deadline; its late result is
        // then dropped (DESIGN-offload.md).
        if let Some(p) = self
            .auth_pending
            .take_if(|p| now.saturating_duration_since(p.started) >= timeout)
        {
            tracing::debug!(%peer, "inbound handshake timed out waiting for the private key");
            cx.push(super::Action::Forget { channel: p.channel });
        }
        if let Some(p) = &self.auth_pending {
            *next = (*next).min(p.started + timeout);
        }
        self.drop_stale_rekey_pending(cx);
        // Our rotation's REKEY_REPLY waiting for our private key, whose rotation is gone.
        if self.reply_pending.as_ref().is_some_and(|p| {
            !self
                .session
                .as_ref()
                .is_some_and(|s| s.id == p.session_id && s.rekey_reply_waits(p.epoch))
        }) {
            self.reply_pending = None;
        }
        let yielded = self.yielded_at;
        if let Some(t) = yielded {
            *next = (*next).min(t + timeout);
        }
        let due = self.session_due(cx, next);
        let close_connections = self.unauthenticated_too_long(cx, next);
        cx.fail_open(Some(peer), expired, OpenError::Timeout);
        if let Some(hs_id) = init_late {
            let abort = Some((hs_id, RejectCode::Shutdown));
            self.fail_initiator(cx, OpenError::Timeout, abort);
        }
        if due.unconfirmed_late {
            self.drop_unconfirmed(cx, OpenError::Timeout);
        }
        if let Some(t) = yielded {
            self.yield_expired(cx, t);
        }
        // Opens that no session proved and nothing serves any more (the peer's handshake
        // they waited for timed out) run their own handshake.
        self.resume_opens(cx, false);
        if due.rotation_late {
            if let Some(s) = self.session.as_mut() {
                s.abort_rotation();
            }
            let reason = CloseReason::RotationFailed("timed out".into());
            self.close(cx, reason, Some(RejectCode::BadState));
        } else if due.rotate {
            self.start_rotation(cx);
        } else if due.ping {
            self.send_ping(cx);
        }
        self.gc = true;
        close_connections
    }

    /// The session's deadlines (confirmation, previous epoch, rotation, keep-alive).
    fn session_due(&mut self, cx: &Context, next: &mut Instant) -> SessionDue {
        let now = cx.now;
        let timeout = cx.config.handshake_timeout;
        let mut due = SessionDue::default();
        let Some(s) = self.session.as_mut() else {
            return due;
        };
        if s.state == SessionState::Handshaking {
            due.unconfirmed_late = now.saturating_duration_since(s.created) >= timeout;
            *next = (*next).min(s.created + timeout);
            return due;
        }
        if let Some(exp) = s.expire_previous(now) {
            *next = (*next).min(exp);
        }
        if let Some(started) = s.rotation_started() {
            due.rotation_late = now.saturating_duration_since(started) >= timeout;
            *next = (*next).min(started + timeout);
        }
        if s.is_open() {
            due.rotate = s.rotation_due(now);
            *next = (*next).min(s.rotation_due_at());
            let ping_at = s.ping_due_at(cx.config.keepalive_interval);
            due.ping = now >= ping_at && !self.ping_in_flight;
            *next = (*next).min(ping_at.max(now + Duration::from_millis(1)));
        }
        due
    }

    /// Whether the peer has been connected without any session or handshake for longer than
    /// the unauthenticated grace.
    fn unauthenticated_too_long(&mut self, cx: &Context, next: &mut Instant) -> bool {
        let now = cx.now;
        let grace = cx.config.unauthenticated_grace;
        if !self.is_unauthenticated_idle() {
            self.idle_since = None;
            return false;
        }
        let since = *self.idle_since.get_or_insert(now);
        if now.saturating_duration_since(since) >= grace {
            self.idle_since = None;
            true
        } else {
            *next = (*next).min(since + grace);
            false
        }
    }
}
