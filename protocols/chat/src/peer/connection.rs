//! Connections coming and going, and dials that failed.

use libp2p::swarm::ConnectionId;

use crate::error::{CloseReason, OpenError};
use crate::session::SessionState;
use crate::types::{OpenId, SessionId};

use super::{Context, Peer};

impl Peer {
    pub(crate) fn on_connected(&mut self, cx: &mut Context, connection: ConnectionId) {
        self.connections.push(connection);
        if self.is_unauthenticated_idle() && self.idle_since.is_none() {
            self.idle_since = Some(cx.now);
        }
        cx.schedule(cx.now + cx.config.unauthenticated_grace);
    }

    /// A connection closed; `remaining` is how many others libp2p still counts.
    pub(crate) fn on_disconnected(
        &mut self,
        cx: &mut Context,
        connection: ConnectionId,
        remaining: u32,
    ) {
        let peer = self.id;
        self.connections.retain(|c| *c != connection);
        if remaining > 0 || !self.connections.is_empty() {
            return;
        }
        // The last connection is gone: so is everything that needed it.
        self.responder = None;
        if let Some(p) = self.auth_pending.take() {
            cx.push(super::Action::Forget { channel: p.channel });
        }
        if self.initiator.is_some() {
            self.fail_initiator(cx, OpenError::ConnectionClosed, None);
        }
        let waiting: Vec<OpenId> = self.waiting.drain(..).map(|(o, _, _)| o).collect();
        cx.fail_open(Some(peer), waiting, OpenError::ConnectionClosed);
        match self.session.as_ref() {
            Some(s) if s.state == SessionState::Handshaking => {
                self.drop_unconfirmed(cx, OpenError::ConnectionClosed)
            }
            Some(s) if s.state == SessionState::Closing => {
                let id = SessionId(s.id);
                self.finish_close(cx, id, CloseReason::LocalClosed);
            }
            Some(s) => {
                let id = SessionId(s.id);
                self.finish_close(cx, id, CloseReason::ConnectionLost);
            }
            None => {}
        }
        let opens = std::mem::take(&mut self.opens).into_iter().map(|o| o.id);
        cx.fail_open(Some(peer), opens, OpenError::ConnectionClosed);
        self.gc = true;
    }

    /// Dialing the peer failed (`why` is one readable line).
    pub(crate) fn on_dial_failure(&mut self, cx: &mut Context, why: String) {
        if !self.connections.is_empty() {
            return;
        }
        let waiting: Vec<OpenId> = self.waiting.drain(..).map(|(o, _, _)| o).collect();
        cx.fail_open(Some(self.id), waiting, OpenError::Dial(why));
        self.gc = true;
    }
}
