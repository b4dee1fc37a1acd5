//! Reconnecting to known peers after a session drops (issue 12, item 4).
//!
//! Pure bookkeeping: time and randomness are passed in, the node opens what this asks for.
//! Per peer we remember, for this run, the secret and the addresses it was dialed with
//! (only the side that dialed knows the peer's secret, so only that side can re-open);
//! the other side waits for the peer to come back. Why a session ended decides:
//! a lost link, an unresponsive peer, a peer that forgot the session, or a peer with a
//! lasting identity (a profile) that said it is shutting down (a restart) are worth
//! reconnecting to; a peer that closed the session itself, that refuses us, a wrong
//! secret, our own `disconnect`, or the goodbye of an ephemeral peer (it comes back, if
//! ever, with another identity) are not.

use std::collections::HashMap;
use std::fmt;
use std::hash::Hash;
use std::time::Duration;

use libp2p::{Multiaddr, PeerId};
use noctua_chat::{CloseReason, OpenError, OpenId, RejectCode, Secret};
use tokio::time::Instant;

/// First delay before reconnecting; it doubles at each failed attempt...
pub(crate) const BACKOFF_FIRST: Duration = Duration::from_secs(1);
/// ...up to this.
pub(crate) const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// Most peers remembered for reconnecting (beyond it, new ones are not remembered).
pub(crate) const MAX_PEERS: usize = 1024;
/// Most addresses remembered per peer (most recent first).
pub(crate) const MAX_ADDRS: usize = 4;

/// The delay before attempt `attempt` (1-based): [`BACKOFF_FIRST`] doubled at each
/// attempt, capped at [`BACKOFF_MAX`], then spread by ±25% with `rand` (any `u32`,
/// uniformly random in use) so that peers that lost each other together do not retry
/// in step.
pub(crate) fn backoff(attempt: u32, rand: u32) -> Duration {
    let doublings = attempt.saturating_sub(1).min(16);
    let base = BACKOFF_FIRST
        .saturating_mul(1u32 << doublings)
        .min(BACKOFF_MAX);
    // Per mille, in [750, 1250], rounded: integer arithmetic, no float surprises.
    let max = u64::from(u32::MAX);
    let spread = (u64::from(rand) * 500 + max / 2) / max;
    let ms = u64::try_from(base.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(ms * (750 + spread) / 1000)
}

/// Whether a session that ended for `reason` is worth re-opening; `lasting`: the peer
/// keeps its identity across restarts, so its goodbye may be a restart.
pub(crate) fn worth_reconnecting(reason: &CloseReason, lasting: bool) -> bool {
    match reason {
        CloseReason::ConnectionLost
        | CloseReason::PeerUnresponsive
        | CloseReason::RemoteForgot
        | CloseReason::RotationFailed(_) => true,
        CloseReason::RemoteClosed(RejectCode::Shutdown) => lasting,
        _ => false,
    }
}

/// Whether a failed reconnect attempt is worth another: the peer could not be reached or
/// did not answer in time; not when it refused us (`REFUSED`, or another rejection) or our
/// secret, when another identity answers at its address, or when we refuse it ourselves.
fn worth_retrying(error: &OpenError) -> bool {
    !matches!(
        error,
        OpenError::WrongSecret
            | OpenError::PeerAuthFailed
            | OpenError::UnsupportedProtocol
            | OpenError::Rejected(_)
            | OpenError::Refused
            | OpenError::RefusedHere
            | OpenError::WrongPeer { .. }
    )
}

/// Where we are with one peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State<O> {
    /// A session is up (or none was ever lost): nothing to do.
    Idle,
    /// Try again at `at`; `open` is the attempt under way, if one is.
    Retrying {
        attempt: u32,
        at: Instant,
        open: Option<O>,
    },
    /// We cannot re-open (we do not know its secret): the peer has to come back. Since
    /// `since`.
    Awaiting { since: Instant },
    /// Not again: the peer closed the session, refused us, or the user disconnected it.
    Stopped,
}

struct Known<O> {
    /// The secret we dialed it with (never shown, never in Debug).
    secret: Option<Secret>,
    /// Addresses it was dialed at, most recent first.
    addrs: Vec<Multiaddr>,
    /// It keeps its identity across restarts (its last session said so).
    lasting: bool,
    state: State<O>,
}

/// What the node should tell the user about a peer after an event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Plan {
    /// Attempt `attempt` comes in `next_in`.
    Retry {
        /// 1-based attempt number.
        attempt: u32,
        /// Time until it starts.
        next_in: Duration,
    },
    /// The peer has to come back by itself.
    Await,
    /// Nothing more will be tried.
    Stop,
}

/// What `peers`/`sessions` show for a peer without a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkStatus {
    /// Reconnecting: `attempt` is the next (or current) attempt.
    Reconnecting {
        /// 1-based attempt number.
        attempt: u32,
        /// Time until it starts (zero while under way).
        next_in: Duration,
    },
    /// Waiting for the peer to reconnect.
    Waiting,
}

impl fmt::Display for LinkStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinkStatus::Reconnecting { attempt, next_in } if next_in.is_zero() => {
                write!(f, "reconnecting (attempt {attempt}, under way)")
            }
            LinkStatus::Reconnecting { attempt, next_in } => write!(
                f,
                "reconnecting (attempt {attempt}, next in {})",
                short_wait(*next_in)
            ),
            LinkStatus::Waiting => f.write_str("waiting for it to reconnect"),
        }
    }
}

/// `3 s`, `1 min 5 s`, rounded up to the second.
pub fn short_duration(d: Duration) -> String {
    let s = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    if s >= 60 {
        format!("{} min {} s", s / 60, s % 60)
    } else {
        format!("{s} s")
    }
}

/// The time to the next reconnect attempt: `1.2 s` under 10 s (tenths, rounded up, so an
/// attempt announced for "1.2 s" never comes later than that), else as [`short_duration`].
/// Whole seconds made "next in 2 s" for 1.1 s, and the next line, a second later, looked
/// early.
pub fn short_wait(d: Duration) -> String {
    let tenths = d.as_millis().div_ceil(100);
    if tenths < 100 {
        format!("{}.{} s", tenths / 10, tenths % 10)
    } else {
        short_duration(d)
    }
}

#[cfg(test)]
mod short_duration_tests {
    use super::*;

    #[test]
    fn waits_read_in_tenths_under_ten_seconds() {
        assert_eq!(short_wait(Duration::from_millis(969)), "1.0 s");
        assert_eq!(short_wait(Duration::from_millis(1101)), "1.2 s");
        assert_eq!(short_wait(Duration::from_millis(9_950)), "10 s");
        assert_eq!(short_wait(Duration::from_millis(9_900)), "9.9 s");
        assert_eq!(short_wait(Duration::from_millis(10_000)), "10 s");
        assert_eq!(short_wait(Duration::from_millis(10_001)), "11 s");
        assert_eq!(short_wait(Duration::from_secs(65)), "1 min 5 s");
        assert_eq!(short_wait(Duration::ZERO), "0.0 s");
        assert_eq!(short_duration(Duration::from_millis(1101)), "2 s");
    }
}

/// One attempt the node should start now.
#[derive(Clone)]
pub(crate) struct Attempt {
    pub(crate) peer: PeerId,
    pub(crate) attempt: u32,
    pub(crate) secret: Secret,
    /// Where to dial (`None`: open over a connection the node still has).
    pub(crate) addr: Option<Multiaddr>,
}

/// Known peers and their reconnect state; `O` identifies an open (the protocol's
/// [`OpenId`] in the node).
pub(crate) struct Reconnect<O = OpenId> {
    peers: HashMap<PeerId, Known<O>>,
    opens: HashMap<O, PeerId>,
}

impl<O> Default for Reconnect<O> {
    fn default() -> Self {
        Reconnect {
            peers: HashMap::new(),
            opens: HashMap::new(),
        }
    }
}

impl<O: Copy + Eq + Hash> Reconnect<O> {
    /// We dialed `peer` with `secret` at `addr` and a session came up: remember how, so
    /// that we can do it again. Also ends a `disconnect`'s stop.
    pub(crate) fn dialed(&mut self, peer: PeerId, secret: Secret, addr: Option<Multiaddr>) {
        if !self.peers.contains_key(&peer) && self.peers.len() >= MAX_PEERS {
            return;
        }
        let known = self.peers.entry(peer).or_insert(Known {
            secret: None,
            addrs: Vec::new(),
            lasting: false,
            state: State::Idle,
        });
        known.secret = Some(secret);
        if let Some(addr) = addr {
            known.addrs.retain(|a| *a != addr);
            known.addrs.insert(0, addr);
            known.addrs.truncate(MAX_ADDRS);
        }
        known.state = State::Idle;
    }

    /// A peer known from an earlier run (the profile's known peers), with the secret and
    /// the addresses (most recent first) we dialed it with: reconnect to it now.
    pub(crate) fn resume(
        &mut self,
        peer: PeerId,
        secret: Secret,
        addrs: Vec<Multiaddr>,
        now: Instant,
    ) -> Plan {
        if addrs.is_empty() || (!self.peers.contains_key(&peer) && self.peers.len() >= MAX_PEERS) {
            return Plan::Stop;
        }
        let mut addrs = addrs;
        addrs.truncate(MAX_ADDRS);
        self.peers.insert(
            peer,
            Known {
                secret: Some(secret),
                addrs,
                // Known from the profile's peers: only lasting peers are kept there.
                lasting: true,
                state: State::Retrying {
                    attempt: 1,
                    at: now,
                    open: None,
                },
            },
        );
        Plan::Retry {
            attempt: 1,
            next_in: Duration::ZERO,
        }
    }

    /// A session with `peer` came up (whoever opened it); `lasting`: the peer said it
    /// keeps its identity across restarts.
    pub(crate) fn established(&mut self, peer: PeerId, lasting: bool) {
        if !self.peers.contains_key(&peer) && self.peers.len() >= MAX_PEERS {
            return;
        }
        let known = self.peers.entry(peer).or_insert(Known {
            secret: None,
            addrs: Vec::new(),
            lasting: false,
            state: State::Idle,
        });
        if let State::Retrying {
            open: Some(open), ..
        } = known.state
        {
            self.opens.remove(&open);
        }
        known.lasting = lasting;
        known.state = State::Idle;
    }

    /// The session with `peer` ended for `reason`.
    pub(crate) fn closed(
        &mut self,
        peer: PeerId,
        reason: &CloseReason,
        now: Instant,
        rand: u32,
    ) -> Plan {
        let Some(known) = self.peers.get_mut(&peer) else {
            return Plan::Stop;
        };
        if !worth_reconnecting(reason, known.lasting) || known.state == State::Stopped {
            known.state = State::Stopped;
            return Plan::Stop;
        }
        if known.secret.is_none() {
            known.state = State::Awaiting { since: now };
            return Plan::Await;
        }
        schedule(known, 1, now, rand)
    }

    /// Attempts whose time has come. Each is marked under way; report its open with
    /// [`Reconnect::opening`].
    pub(crate) fn due(&mut self, now: Instant) -> Vec<Attempt> {
        let mut due = Vec::new();
        for (peer, known) in &mut self.peers {
            if let State::Retrying {
                attempt,
                at,
                open: None,
            } = known.state
                && at <= now
                && let Some(secret) = &known.secret
            {
                let addr = (!known.addrs.is_empty()).then(|| {
                    let i = (attempt as usize - 1) % known.addrs.len();
                    known.addrs[i].clone()
                });
                due.push(Attempt {
                    peer: *peer,
                    attempt,
                    secret: secret.clone(),
                    addr,
                });
            }
        }
        due.sort_by_key(|a| a.peer);
        due
    }

    /// Attempt for `peer` is under way as `open`.
    pub(crate) fn opening(&mut self, peer: PeerId, open: O) {
        if let Some(Known {
            state: State::Retrying { open: o, .. },
            ..
        }) = self.peers.get_mut(&peer)
        {
            *o = Some(open);
            self.opens.insert(open, peer);
        }
    }

    /// If `open` was a reconnect attempt, records how it failed and returns its peer and
    /// what comes next.
    pub(crate) fn open_failed(
        &mut self,
        open: O,
        error: &OpenError,
        now: Instant,
        rand: u32,
    ) -> Option<(PeerId, Plan)> {
        let peer = self.opens.remove(&open)?;
        let known = self.peers.get_mut(&peer)?;
        let State::Retrying {
            attempt,
            open: Some(o),
            ..
        } = known.state
        else {
            return Some((peer, Plan::Stop));
        };
        if o != open {
            return None;
        }
        if matches!(error, OpenError::AlreadyActive) {
            // The peer's own reconnect won: its session is (about to be) established.
            known.state = State::Idle;
            return Some((peer, Plan::Await));
        }
        if !worth_retrying(error) {
            known.state = State::Stopped;
            return Some((peer, Plan::Stop));
        }
        Some((peer, schedule(known, attempt.saturating_add(1), now, rand)))
    }

    /// The user disconnected `peer`: no more attempts, and no waiting for it.
    /// Returns whether anything was going on.
    pub(crate) fn stop(&mut self, peer: &PeerId) -> bool {
        let Some(known) = self.peers.get_mut(peer) else {
            return false;
        };
        let active = matches!(known.state, State::Retrying { .. } | State::Awaiting { .. });
        if let State::Retrying { open: Some(o), .. } = known.state {
            self.opens.remove(&o);
        }
        known.state = State::Stopped;
        active
    }

    /// Peers awaited for `limit` or longer by `now`: no longer awaited (an ephemeral peer
    /// that died never comes back: its identity died with it).
    pub(crate) fn stop_waiting(&mut self, now: Instant, limit: Duration) -> Vec<PeerId> {
        let mut gone: Vec<PeerId> = Vec::new();
        for (peer, known) in &mut self.peers {
            if let State::Awaiting { since } = known.state
                && now.saturating_duration_since(since) >= limit
            {
                known.state = State::Stopped;
                gone.push(*peer);
            }
        }
        gone.sort();
        gone
    }

    /// Whether messages for `peer` should be queued: its session is down and it is
    /// expected back.
    pub(crate) fn expected(&self, peer: &PeerId) -> bool {
        self.status(peer, Instant::now()).is_some()
    }

    /// What to show for `peer` (`None`: a session is up, or nothing is expected).
    pub(crate) fn status(&self, peer: &PeerId, now: Instant) -> Option<LinkStatus> {
        match self.peers.get(peer)?.state {
            State::Retrying { attempt, at, open } => Some(LinkStatus::Reconnecting {
                attempt,
                next_in: if open.is_some() {
                    Duration::ZERO
                } else {
                    at.saturating_duration_since(now)
                },
            }),
            State::Awaiting { .. } => Some(LinkStatus::Waiting),
            State::Idle | State::Stopped => None,
        }
    }

    /// Peers expected back (reconnecting or awaited).
    pub(crate) fn expected_peers(&self) -> Vec<PeerId> {
        let mut v: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, k)| matches!(k.state, State::Retrying { .. } | State::Awaiting { .. }))
            .map(|(p, _)| *p)
            .collect();
        v.sort();
        v
    }

    /// Known peers dialed at `addr` (its host and port; `/p2p` parts ignored).
    pub(crate) fn dialed_at(&self, addr: &Multiaddr) -> Vec<PeerId> {
        let want = strip_p2p(addr);
        self.peers
            .iter()
            .filter(|(_, k)| k.addrs.iter().any(|a| strip_p2p(a) == want))
            .map(|(p, _)| *p)
            .collect()
    }
}

fn schedule<O>(known: &mut Known<O>, attempt: u32, now: Instant, rand: u32) -> Plan {
    let next_in = backoff(attempt, rand);
    known.state = State::Retrying {
        attempt,
        at: now + next_in,
        open: None,
    };
    Plan::Retry { attempt, next_in }
}

/// `addr` without its `/p2p/...` part.
fn strip_p2p(addr: &Multiaddr) -> Multiaddr {
    addr.iter()
        .filter(|p| !matches!(p, libp2p::multiaddr::Protocol::P2p(_)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> Secret {
        Secret::generate()
    }

    fn addr() -> Multiaddr {
        "/ip4/127.0.0.1/tcp/4001".parse().expect("addr")
    }

    const MID: u32 = u32::MAX / 2;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let at = |n| backoff(n, MID).as_millis();
        assert_eq!(at(1), 1000);
        assert_eq!(at(2), 2000);
        assert_eq!(at(3), 4000);
        assert_eq!(at(6), 32_000);
        assert_eq!(at(7), 60_000);
        assert_eq!(at(1000), 60_000);
        assert_eq!(backoff(u32::MAX, MID), BACKOFF_MAX);
    }

    #[test]
    fn jitter_stays_within_a_quarter() {
        for attempt in [1, 3, 10] {
            let base = backoff(attempt, MID);
            let lo = backoff(attempt, 0);
            let hi = backoff(attempt, u32::MAX);
            assert_eq!(lo, base * 3 / 4, "attempt {attempt}");
            assert_eq!(hi, base * 5 / 4, "attempt {attempt}");
            for r in [1, 1 << 20, 3_000_000_000] {
                let d = backoff(attempt, r);
                assert!(lo <= d && d <= hi, "{d:?} outside {lo:?}..{hi:?}");
            }
        }
    }

    #[test]
    fn the_reason_decides() {
        for r in [
            CloseReason::ConnectionLost,
            CloseReason::PeerUnresponsive,
            CloseReason::RemoteForgot,
        ] {
            assert!(worth_reconnecting(&r, false), "{r:?}");
        }
        // A goodbye is a restart only from a peer that keeps its identity.
        let goodbye = CloseReason::RemoteClosed(RejectCode::Shutdown);
        assert!(worth_reconnecting(&goodbye, true));
        assert!(!worth_reconnecting(&goodbye, false));
        for r in [
            CloseReason::RemoteClosed(RejectCode::UserClosed),
            CloseReason::LocalClosed,
            CloseReason::Shutdown,
            CloseReason::Replaced,
        ] {
            assert!(!worth_reconnecting(&r, true), "{r:?}");
        }
    }

    #[test]
    fn a_dialed_peer_is_retried_with_a_growing_delay_until_it_is_back() {
        let mut r: Reconnect<u64> = Reconnect::default();
        let bob = PeerId::random();
        let t0 = Instant::now();
        r.dialed(bob, secret(), Some(addr()));
        assert_eq!(r.status(&bob, t0), None);
        let plan = r.closed(bob, &CloseReason::PeerUnresponsive, t0, MID);
        assert_eq!(
            plan,
            Plan::Retry {
                attempt: 1,
                next_in: BACKOFF_FIRST
            }
        );
        assert!(r.expected(&bob));
        assert!(r.due(t0).is_empty(), "not before its time");
        let t1 = t0 + BACKOFF_FIRST;
        let due = r.due(t1);
        assert_eq!(due.len(), 1);
        assert_eq!((due[0].peer, due[0].attempt), (bob, 1));
        assert_eq!(due[0].addr, Some(addr()));
        let open = 7;
        r.opening(bob, open);
        assert!(r.due(t1 + BACKOFF_MAX).is_empty(), "one attempt at a time");
        assert_eq!(
            r.status(&bob, t1),
            Some(LinkStatus::Reconnecting {
                attempt: 1,
                next_in: Duration::ZERO
            })
        );
        let (p, plan) = r
            .open_failed(open, &OpenError::Timeout, t1, MID)
            .expect("ours");
        assert_eq!(p, bob);
        assert_eq!(
            plan,
            Plan::Retry {
                attempt: 2,
                next_in: BACKOFF_FIRST * 2
            }
        );
        assert_eq!(
            r.open_failed(open, &OpenError::Timeout, t1, MID),
            None,
            "reported once"
        );
        r.established(bob, false);
        assert!(!r.expected(&bob));
        assert!(r.due(t1 + BACKOFF_MAX).is_empty());
    }

    #[test]
    fn the_side_without_the_secret_waits_and_a_goodbye_or_refusal_stops() {
        let mut r: Reconnect<u64> = Reconnect::default();
        let (alice, bob, carol) = (PeerId::random(), PeerId::random(), PeerId::random());
        let t0 = Instant::now();
        r.established(alice, false);
        assert_eq!(
            r.closed(alice, &CloseReason::ConnectionLost, t0, MID),
            Plan::Await
        );
        assert_eq!(r.status(&alice, t0), Some(LinkStatus::Waiting));
        assert!(r.due(t0 + BACKOFF_MAX).is_empty(), "nothing to dial");
        // Not for ever: after the limit, once.
        let limit = Duration::from_secs(600);
        assert!(r.stop_waiting(t0 + limit / 2, limit).is_empty());
        assert_eq!(r.stop_waiting(t0 + limit, limit), vec![alice]);
        assert!(r.stop_waiting(t0 + limit * 2, limit).is_empty());
        assert!(!r.expected(&alice));
        // A user's close is final.
        r.dialed(bob, secret(), Some(addr()));
        assert_eq!(
            r.closed(
                bob,
                &CloseReason::RemoteClosed(RejectCode::UserClosed),
                t0,
                0
            ),
            Plan::Stop
        );
        assert!(!r.expected(&bob));
        // A refusal while reconnecting is final.
        r.dialed(carol, secret(), Some(addr()));
        r.closed(carol, &CloseReason::ConnectionLost, t0, 0);
        let open = 1;
        r.opening(carol, open);
        assert_eq!(
            r.open_failed(open, &OpenError::Refused, t0, 0),
            Some((carol, Plan::Stop))
        );
        for error in [
            OpenError::WrongSecret,
            OpenError::RefusedHere,
            OpenError::Rejected(RejectCode::Busy),
            OpenError::WrongPeer {
                expected: carol,
                found: alice,
            },
        ] {
            assert!(!worth_retrying(&error), "{error:?}");
        }
        for error in [
            OpenError::Timeout,
            OpenError::Dial("unreachable".into()),
            OpenError::ConnectionClosed,
            OpenError::Busy,
            OpenError::NotProven,
        ] {
            assert!(worth_retrying(&error), "{error:?}");
        }
        assert!(r.due(t0 + BACKOFF_MAX * 10).is_empty());
        // Unknown peers: nothing.
        assert_eq!(
            r.closed(PeerId::random(), &CloseReason::ConnectionLost, t0, 0),
            Plan::Stop
        );
    }

    #[test]
    fn disconnect_stops_reconnecting_until_dialed_again() {
        let mut r: Reconnect<u64> = Reconnect::default();
        let bob = PeerId::random();
        let t0 = Instant::now();
        r.dialed(bob, secret(), Some(addr()));
        r.closed(bob, &CloseReason::ConnectionLost, t0, 0);
        let open = 3;
        r.opening(bob, open);
        assert!(r.stop(&bob));
        assert!(!r.expected(&bob));
        assert!(r.due(t0 + BACKOFF_MAX * 10).is_empty());
        assert_eq!(
            r.open_failed(open, &OpenError::Timeout, t0, 0),
            None,
            "a stopped attempt's outcome is not a reconnect's"
        );
        // A later lost session is not reconnected either...
        r.established(bob, false);
        // ...until the user dials it again (established resets to Idle, so the stop is
        // kept only while no session is up: a new session means the user wanted it).
        assert_eq!(
            r.closed(bob, &CloseReason::ConnectionLost, t0, 0),
            Plan::Retry {
                attempt: 1,
                next_in: BACKOFF_FIRST * 3 / 4
            }
        );
        assert!(!r.stop(&PeerId::random()));
        assert_eq!(r.dialed_at(&addr()), vec![bob]);
    }

    #[test]
    fn peers_known_from_the_profile_are_reconnected_at_once() {
        let mut r: Reconnect<u64> = Reconnect::default();
        let (bob, carol) = (PeerId::random(), PeerId::random());
        let t0 = Instant::now();
        assert_eq!(
            r.resume(bob, secret(), vec![addr()], t0),
            Plan::Retry {
                attempt: 1,
                next_in: Duration::ZERO
            }
        );
        assert_eq!(
            r.resume(carol, secret(), vec![], t0),
            Plan::Stop,
            "nowhere to dial"
        );
        let due = r.due(t0);
        assert_eq!(due.len(), 1);
        assert_eq!((due[0].peer, due[0].addr.clone()), (bob, Some(addr())));
        assert!(r.expected(&bob));
        assert!(!r.expected(&carol));
    }

    #[test]
    fn addresses_rotate_and_are_bounded() {
        let mut r: Reconnect<u64> = Reconnect::default();
        let bob = PeerId::random();
        for port in 1..=6u16 {
            let a: Multiaddr = format!("/ip4/127.0.0.1/tcp/{port}").parse().expect("addr");
            r.dialed(bob, secret(), Some(a));
        }
        let t0 = Instant::now();
        r.closed(bob, &CloseReason::ConnectionLost, t0, 0);
        let first = r.due(t0 + BACKOFF_MAX).remove(0);
        assert_eq!(first.addr, Some("/ip4/127.0.0.1/tcp/6".parse().expect("a")));
        let open = 9;
        r.opening(bob, open);
        r.open_failed(open, &OpenError::Timeout, t0, 0);
        let second = r.due(t0 + BACKOFF_MAX).remove(0);
        assert_eq!(
            second.addr,
            Some("/ip4/127.0.0.1/tcp/5".parse().expect("a"))
        );
        assert_eq!(r.peers[&bob].addrs.len(), MAX_ADDRS);
        // The table is bounded.
        for _ in 0..MAX_PEERS + 10 {
            r.established(PeerId::random(), false);
        }
        assert_eq!(r.peers.len(), MAX_PEERS);
    }
}
