//! Automatic connection (`--auto-connect`): a session to every discovered peer with our own
//! secret, retried with a growing delay after a lost connection, never after a refusal.
//! This is bookkeeping only; the node opens the sessions it asks for.
//!
//! At most [`MAX_AUTO_OPENS`] automatic opens are under way at once; the other discovered
//! peers wait their turn, oldest first. Opening all of them at once (a node on a LAN of
//! 128 discovers 127 peers within a second) made every node start ~127 handshakes together:
//! the RSA work of each queued behind the others', most ran past the handshake timeout or
//! hit the handshake limit, and the retries repeated the storm (a 128-node lab took 92 s to
//! mesh, with 13 800 timed-out and 7 400 refused automatic opens).

use std::collections::HashMap;
use std::hash::Hash;
use std::time::Duration;

use libp2p::PeerId;
use noctua_chat::{CloseReason, OpenError, OpenId};
use tokio::time::Instant;

/// First and largest delay between automatic reconnection attempts.
const RETRY_MIN: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(16);

/// Automatic opens under way at once. Enough to keep a node busy while its peers answer
/// (a handshake is a few round trips and ~5 ms of RSA on each side), few enough that the
/// handshakes a lab has in flight (this times the number of nodes) finish well within the
/// handshake timeout on a loaded machine.
pub(crate) const MAX_AUTO_OPENS: usize = 4;

/// The state of automatic connection to one discovered peer.
#[derive(Debug, Clone, Copy)]
enum Auto {
    /// An attempt is under way or a session exists.
    Busy,
    /// Open a session at `at` (or later, when an automatic open slot is free): a peer just
    /// discovered (`at` = when), or one whose connection was lost (partition, restart),
    /// whose delay doubles at each failure up to [`RETRY_MAX`].
    Due { at: Instant },
    /// The peer refused our secret (or we its): never again while it stays discovered.
    Refused,
}

/// Automatic connections: per discovered peer, what happened and when to try again. `O`
/// names an open (the protocol's [`OpenId`]; plain numbers in tests).
#[derive(Debug)]
pub(crate) struct AutoConnect<O = OpenId> {
    enabled: bool,
    state: HashMap<PeerId, Auto>,
    /// Opens started automatically, to route their outcome.
    opens: HashMap<O, PeerId>,
    /// The last delay used before reconnecting to each peer (for the backoff).
    delays: HashMap<PeerId, Duration>,
}

impl<O: Copy + Eq + Hash> AutoConnect<O> {
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

    /// mDNS discovered `peer`: it gets an automatic session when its turn comes, unless
    /// something already happened with it (a session, an attempt, a refusal).
    pub(crate) fn discovered(&mut self, peer: PeerId, now: Instant) {
        if self.enabled {
            self.state.entry(peer).or_insert(Auto::Due { at: now });
        }
    }

    /// An automatic open was started.
    pub(crate) fn opened(&mut self, peer: PeerId, open: O) {
        self.state.insert(peer, Auto::Busy);
        self.opens.insert(open, peer);
    }

    /// Peers to open a session to now, among those `still_there`: those whose time has
    /// come, oldest first, as many as there are free automatic open slots.
    pub(crate) fn due(&self, now: Instant, still_there: impl Fn(&PeerId) -> bool) -> Vec<PeerId> {
        let free = MAX_AUTO_OPENS.saturating_sub(self.opens.len());
        if free == 0 {
            return Vec::new();
        }
        let mut due: Vec<(Instant, PeerId)> = self
            .state
            .iter()
            .filter_map(|(p, a)| match a {
                Auto::Due { at } if *at <= now && still_there(p) => Some((*at, *p)),
                _ => None,
            })
            .collect();
        due.sort_unstable();
        due.into_iter().take(free).map(|(_, p)| p).collect()
    }

    /// A session with `peer` exists (whoever opened it): nothing to do until it ends.
    pub(crate) fn busy(&mut self, peer: PeerId) {
        if self.enabled {
            self.state.insert(peer, Auto::Busy);
        }
    }

    /// A session was established through `opens`; automatic ones among them are done.
    pub(crate) fn established(&mut self, peer: PeerId, opens: &[O]) {
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
    pub(crate) fn open_failed(&mut self, open: O, error: &OpenError) -> Option<PeerId> {
        let peer = self.opens.remove(&open)?;
        let retry = match error {
            // The other side opened one meanwhile: nothing ended.
            OpenError::AlreadyActive => return Some(peer),
            // Our own handshake limit (inbound handshakes fill it too): try again soon,
            // without counting it as a failure of the peer.
            OpenError::LocalLimit(_) => {
                if self.enabled && self.state.contains_key(&peer) {
                    self.state.insert(
                        peer,
                        Auto::Due {
                            at: Instant::now() + RETRY_MIN,
                        },
                    );
                }
                return Some(peer);
            }
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
            Auto::Due {
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
        let mut auto = AutoConnect::<u64>::new(true);
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
        auto.discovered(b, later);
        assert!(
            !auto.due(later, |_| true).contains(&b),
            "a refused peer is not offered again while discovered"
        );
    }

    #[test]
    fn at_most_max_auto_opens_are_under_way_and_the_oldest_go_first() {
        let mut auto = AutoConnect::<u64>::new(true);
        let t0 = Instant::now();
        let peers: Vec<PeerId> = (0..3 * MAX_AUTO_OPENS).map(|_| PeerId::random()).collect();
        for (k, p) in peers.iter().enumerate() {
            auto.discovered(*p, t0 + Duration::from_millis(k as u64));
        }
        let now = t0 + Duration::from_secs(1);
        let first = auto.due(now, |_| true);
        assert_eq!(
            first,
            peers[..MAX_AUTO_OPENS].to_vec(),
            "oldest first, capped"
        );
        for (k, p) in first.iter().enumerate() {
            auto.opened(*p, k as u64);
        }
        assert!(auto.due(now, |_| true).is_empty(), "no free slot");
        // One open ends (a session): one slot frees, the next oldest goes.
        auto.established(first[0], &[0]);
        assert_eq!(auto.due(now, |_| true), vec![peers[MAX_AUTO_OPENS]]);
        // Our own handshake limit: the peer waits a moment, not counted as its failure.
        assert_eq!(
            auto.open_failed(1, &OpenError::LocalLimit("handshakes")),
            Some(first[1])
        );
        assert!(!auto.delays.contains_key(&first[1]));
        assert!(!auto.due(now, |_| true).contains(&first[1]));
        let later = Instant::now() + RETRY_MIN * 2;
        assert!(auto.due(later, |p| *p == first[1]).contains(&first[1]));
    }
}
