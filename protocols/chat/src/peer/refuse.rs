//! The user's decisions about who may open sessions: refusing a peer (SPEC.md §9
//! `REFUSED`) and replacing our secret while running (SPEC.md §4).

use crate::error::{OpenError, RejectCode};
use crate::session::SessionState;

use super::{Context, Peer, Pending};
use crate::wire::Request;

impl Peer {
    /// The user refuses this peer (already recorded in `cx.refused`): its held `HELLO`s are
    /// answered `REFUSED`, its pending handshake with us is dropped (a later `AUTH` for it
    /// meets `REFUSED` too), our handshake and opens towards it end (`RefusedHere`), and a
    /// session of ours with it that is not confirmed yet is discarded. A confirmed session
    /// is left alone: the caller closes it first if it wants it gone (SPEC.md §9).
    pub(crate) fn on_refused(&mut self, cx: &mut Context) {
        let peer = self.id;
        let (held, kept) = std::mem::take(&mut cx.deferred_hellos)
            .into_iter()
            .partition::<Vec<_>, _>(|d| d.peer == peer);
        cx.deferred_hellos = kept.into();
        for d in held {
            cx.reject(d.channel, RejectCode::Refused, 0);
        }
        self.responder = None;
        if let Some(p) = self.auth_pending.take() {
            cx.reject(p.channel, RejectCode::Refused, 0);
        }
        self.abandoned = None;
        let connected = !self.connections.is_empty();
        if let Some(hs) = self.initiator.take() {
            // The peer holds a pending handshake for our HELLO: tell it to drop it.
            if connected {
                let request = Request::Abort {
                    hs_id: hs.hs_id,
                    code: RejectCode::Refused.to_u16(),
                };
                cx.send(peer, request, Pending::Abort { peer });
            }
        }
        let unconfirmed = !self.announced
            && self
                .session
                .as_ref()
                .is_some_and(|s| s.state == SessionState::Handshaking);
        if unconfirmed {
            if let Some(hs_id) = self.session_hs.filter(|_| connected) {
                let request = Request::Abort {
                    hs_id,
                    code: RejectCode::Refused.to_u16(),
                };
                cx.send(peer, request, Pending::Abort { peer });
            }
            self.drop_unconfirmed(cx, OpenError::RefusedHere);
        }
        self.yielded_at = None;
        let opens = std::mem::take(&mut self.opens).into_iter().map(|o| o.id);
        let waiting = std::mem::take(&mut self.waiting)
            .into_iter()
            .map(|(o, _, _)| o);
        let all: Vec<_> = opens.chain(waiting).collect();
        cx.fail_open(Some(peer), all, OpenError::RefusedHere);
        self.gc = true;
    }

    /// Our secret changed (`cx.local_auth` holds the new one): a handshake the peer started
    /// under the old secret and whose `AUTH` has not arrived is discarded (its `AUTH` gets
    /// `UNKNOWN_HANDSHAKE`, SPEC.md §4). Sessions, confirmed or awaiting confirmation, are
    /// untouched. Opens of ours that waited for that handshake run their own.
    pub(crate) fn on_secret_changed(&mut self, cx: &mut Context) {
        // An AUTH that proved the old secret and waits for our private key (found by the
        // session fuzzer: it completed after the change) is dropped like any handshake
        // started under the old secret.
        let waiting = self.auth_pending.take();
        if let Some(pending) = &waiting {
            cx.reject(pending.channel, RejectCode::UnknownHandshake, 0);
        }
        if self.responder.take().is_some() || waiting.is_some() {
            tracing::debug!(peer = %self.id, "secret changed: dropping a handshake started under the old one");
            self.gc = true;
            self.resume_opens(cx, true);
        }
    }
}
