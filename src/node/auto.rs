//! Automatic connection (`--auto-connect`): a session to every discovered peer with our own
//! secret, retried with a growing delay after a lost connection, never after a refusal.
//! This is bookkeeping only; the node opens the sessions it asks for.

use std::collections::HashMap;
use std::time::Duration;

use libp2p::PeerId;
use noctua_chat::{CloseReason, OpenError, OpenId};
use tokio::time::Instant;

/// First and largest delay between automatic reconnection attempts.
const RETRY_MIN: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(16);

/// The state of automatic connection to one discovered peer.
#[derive(Debug, Clone, Copy)]
enum Auto {
    /// An attempt is under way or a session exists.
    Busy,
    /// The connection was lost (partition, restart): try again at `at`. The delay
    /// doubles at each failure up to [`RETRY_MAX`].
    Retry { at: Instant },
    /// The peer refused our secret (or we its): never again while it stays discovered.
    Refused,
}

/// Automatic connections: per discovered peer, what happened and when to try again.
#[derive(Debug)]
pub(crate) struct AutoConnect {
    enabled: bool,
    state: HashMap<PeerId, Auto>,
    /// Opens started automatically, to route their outcome.
    opens: HashMap<OpenId, PeerId>,
    /// The last delay used before reconnecting to each peer (for the backoff).
    delays: HashMap<PeerId, Duration>,
}

impl AutoConnect {
    pub(crate) fn new(enabled: bool) -> Self {
        AutoConnect {
            enabled,
            state: HashMap::new(),
            opens: HashMap::new(),
            delays: HashMap::new(),
        }
    }

    pub(crate) fn enabled(&self) -> bool {
        self.enabled
    }

    /// Whether a newly discovered peer should get an automatic session.
    pub(crate) fn wants(&self, peer: &PeerId) -> bool {
        self.enabled && !self.state.contains_key(peer)
    }

    /// An automatic open was started.
    pub(crate) fn opened(&mut self, peer: PeerId, open: OpenId) {
        self.state.insert(peer, Auto::Busy);
        self.opens.insert(open, peer);
    }

    /// Peers whose retry time has come, among those `still_there`.
    pub(crate) fn due(&self, now: Instant, still_there: impl Fn(&PeerId) -> bool) -> Vec<PeerId> {
        self.state
            .iter()
            .filter(|(p, a)| matches!(a, Auto::Retry { at } if *at <= now) && still_there(p))
            .map(|(p, _)| *p)
            .collect()
    }

    /// A session with `peer` exists (whoever opened it): nothing to do until it ends.
    pub(crate) fn busy(&mut self, peer: PeerId) {
        if self.enabled {
            self.state.insert(peer, Auto::Busy);
        }
    }

    /// A session was established through `opens`; automatic ones among them are done.
    pub(crate) fn established(&mut self, peer: PeerId, opens: &[OpenId]) {
        for open in opens {
            self.opens.remove(open);
        }
        if self.enabled {
            self.state.insert(peer, Auto::Busy);
            self.delays.remove(&peer);
        }
    }

    /// A session ended. A lost connection (partition, crash) is worth reconnecting to
    /// while the peer is still discovered; a goodbye or our own close is not.
    pub(crate) fn closed(&mut self, peer: PeerId, reason: &CloseReason) {
        if !self.enabled {
            return;
        }
        let lost = matches!(
            reason,
            CloseReason::ConnectionLost
                | CloseReason::PeerUnresponsive
                | CloseReason::RotationFailed(_)
                | CloseReason::RemoteForgot
        );
        if lost {
            self.state.entry(peer).or_insert(Auto::Busy);
            self.ended(peer, true);
        } else {
            self.state.insert(peer, Auto::Refused);
        }
    }

    /// If `open` was automatic, records its failure and returns its peer. Automatic
    /// attempts fail quietly: a refused secret is final (no retry storms); anything else
    /// (unreachable, timed out) is retried with a growing delay.
    pub(crate) fn open_failed(&mut self, open: OpenId, error: &OpenError) -> Option<PeerId> {
        let peer = self.opens.remove(&open)?;
        let retry = match error {
            // The other side opened one meanwhile: nothing ended.
            OpenError::AlreadyActive => return Some(peer),
            OpenError::WrongSecret
            | OpenError::PeerAuthFailed
            | OpenError::RateLimited(_)
            | OpenError::UnsupportedProtocol
            | OpenError::Rejected(_)
            | OpenError::Refused => false,
            // The peer's crossing handshake did not prove our secret in time (or claimed a
            // conflict it could not have): under load an honest peer can be late, so this
            // is retried with the growing delay rather than given up.
            OpenError::NotProven => true,
            _ => true,
        };
        self.ended(peer, retry);
        Some(peer)
    }

    /// mDNS no longer sees the peer: start afresh if it comes back.
    pub(crate) fn forget(&mut self, peer: &PeerId) {
        self.state.remove(peer);
    }

    /// An automatic attempt or session with `peer` ended; `retry` says whether to try again.
    fn ended(&mut self, peer: PeerId, retry: bool) {
        if !self.enabled || !self.state.contains_key(&peer) {
            return;
        }
        if !retry {
            self.state.insert(peer, Auto::Refused);
            self.delays.remove(&peer);
            return;
        }
        let last = self.delays.get(&peer).copied().unwrap_or(Duration::ZERO);
        let delay = if last.is_zero() {
            RETRY_MIN
        } else {
            (last * 2).min(RETRY_MAX)
        };
        self.delays.insert(peer, delay);
        self.state.insert(
            peer,
            Auto::Retry {
                at: Instant::now() + delay,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lost_sessions_are_retried_with_a_growing_delay_and_refusals_never() {
        let mut auto = AutoConnect::new(true);
        let (a, b) = (PeerId::random(), PeerId::random());
        auto.busy(a);
        auto.closed(a, &CloseReason::ConnectionLost);
        assert_eq!(auto.delays.get(&a), Some(&RETRY_MIN));
        auto.closed(a, &CloseReason::ConnectionLost);
        assert_eq!(auto.delays.get(&a), Some(&(RETRY_MIN * 2)));
        let later = Instant::now() + RETRY_MAX * 2;
        assert_eq!(auto.due(later, |_| true), vec![a]);
        assert!(
            auto.due(later, |_| false).is_empty(),
            "only peers still discovered"
        );
        // A goodbye is final: never retried, and not offered again while discovered.
        auto.busy(b);
        auto.closed(b, &CloseReason::Shutdown);
        assert!(!auto.due(later, |_| true).contains(&b));
        assert!(!auto.wants(&b));
    }
}
