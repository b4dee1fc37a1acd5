//! Bounded bookkeeping against abuse (SPEC.md §8): failed-authentication bans, `HELLO` rate
//! limits, the per-address caps on connections that have not authenticated, and log
//! throttling, so that a flood is logged once, not once per packet.
//!
//! Everything keyed by a remote address is keyed by [`AddrKey`]: an IPv4 address, or the /64
//! an IPv6 address belongs to (one IPv6 host commonly holds a whole /64, so keying by the
//! full address would give it 2^64 fresh budgets).

use std::collections::HashMap;
use std::collections::VecDeque;
use std::fmt;
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

/// The key of every per-address limit: an IPv4 address, or an IPv6 /64 prefix. An
/// IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) is the IPv4 address it maps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum AddrKey {
    V4(Ipv4Addr),
    /// The upper 64 bits of the address.
    V6(u64),
}

impl From<IpAddr> for AddrKey {
    fn from(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => AddrKey::V4(v4),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => AddrKey::V4(v4),
                None => AddrKey::V6((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

impl fmt::Display for AddrKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddrKey::V4(v4) => write!(f, "{v4}"),
            AddrKey::V6(prefix) => write!(f, "{}/64", Ipv6Addr::from(u128::from(*prefix) << 64)),
        }
    }
}

/// A token bucket per key: `burst` tokens, one more every `every`. Memory is bounded by
/// `max_keys`: a key whose bucket is full again is forgotten (a fresh bucket is the same),
/// and when the table is full of live buckets the one touched longest ago gives way (its
/// key starts over with a full bucket: the limit fails open for that key rather than
/// refusing every new key, and the per-address limit still applies to it).
#[derive(Debug)]
pub(crate) struct RateLimiter<K> {
    buckets: HashMap<K, Bucket>,
    burst: u32,
    every: Duration,
    max_keys: usize,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: u32,
    /// When `tokens` was last brought up to date (refills count from here).
    at: Instant,
}

impl<K: Eq + Hash + Clone> RateLimiter<K> {
    /// `burst` tokens per key (at least 1), one more every `every`.
    pub(crate) fn new(burst: u32, every: Duration, max_keys: usize) -> Self {
        RateLimiter {
            buckets: HashMap::new(),
            burst: burst.max(1),
            every,
            max_keys: max_keys.max(1),
        }
    }

    /// The bucket brought up to `now`.
    fn refilled(&self, b: Bucket, now: Instant) -> Bucket {
        let elapsed = now.saturating_duration_since(b.at);
        let every = self.every.as_nanos();
        if every == 0 {
            return Bucket {
                tokens: self.burst,
                at: now,
            };
        }
        let n = elapsed.as_nanos() / every;
        if n == 0 {
            return b;
        }
        let tokens = u128::from(b.tokens).saturating_add(n);
        if tokens >= u128::from(self.burst) {
            return Bucket {
                tokens: self.burst,
                at: now,
            };
        }
        // n < burst here, so the multiplication cannot overflow.
        let step = self
            .every
            .saturating_mul(u32::try_from(n).unwrap_or(u32::MAX));
        Bucket {
            tokens: tokens as u32,
            at: b.at + step,
        }
    }

    /// Takes one token of `key`'s bucket; `Err` with how long until the next one when it is
    /// empty.
    pub(crate) fn try_take(&mut self, key: &K, now: Instant) -> Result<(), Duration> {
        let current = match self.buckets.get(key) {
            Some(b) => self.refilled(*b, now),
            None => {
                if self.buckets.len() >= self.max_keys {
                    self.make_room(now);
                }
                Bucket {
                    tokens: self.burst,
                    at: now,
                }
            }
        };
        if current.tokens == 0 {
            self.buckets.insert(key.clone(), current);
            let next = (current.at + self.every).saturating_duration_since(now);
            return Err(next.max(Duration::from_millis(1)));
        }
        self.buckets.insert(
            key.clone(),
            Bucket {
                tokens: current.tokens - 1,
                at: current.at,
            },
        );
        Ok(())
    }

    /// Forgets full buckets; if none is full, the one touched longest ago.
    fn make_room(&mut self, now: Instant) {
        let before = self.buckets.len();
        let burst = self.burst;
        let every = self.every;
        self.buckets.retain(|_, b| {
            let since = now.saturating_duration_since(b.at).as_nanos();
            let missing = u128::from(burst - b.tokens.min(burst));
            every.as_nanos() != 0 && since < missing.saturating_mul(every.as_nanos())
        });
        if self.buckets.len() < before {
            return;
        }
        if let Some(oldest) = self
            .buckets
            .iter()
            .min_by_key(|(_, b)| b.at)
            .map(|(k, _)| k.clone())
        {
            self.buckets.remove(&oldest);
        }
    }

    /// Forgets the buckets that are full again.
    pub(crate) fn prune(&mut self, now: Instant) {
        let burst = self.burst;
        let every = self.every.as_nanos();
        self.buckets.retain(|_, b| {
            let since = now.saturating_duration_since(b.at).as_nanos();
            let missing = u128::from(burst - b.tokens.min(burst));
            every != 0 && since < missing.saturating_mul(every)
        });
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.buckets.len()
    }
}

/// How many connections one address may hold before they authenticate (SPEC.md §8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AddressCaps {
    /// Inbound connections still in the transport upgrade (TCP accepted, Noise and Yamux
    /// not done): the node-wide pool of these is small (64) and an idle socket holds a
    /// place until the upgrade times out.
    pub(crate) pending: usize,
    /// Inbound connections up, whose peer has no session.
    pub(crate) unauthenticated: usize,
    /// Both together, while the address is banned after failed authentications: enough
    /// for a newcomer to be told how long the ban lasts, not enough to crowd anyone.
    pub(crate) banned: usize,
}

/// Why a connection was refused at connection time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConnRefusal {
    /// The address holds `caps.pending` connections in the transport upgrade.
    Pending,
    /// The address holds `caps.unauthenticated` connections without a session.
    Unauthenticated,
    /// The address is banned and already holds `caps.banned` connections; the ban has this
    /// many seconds left.
    Banned(u32),
    /// The node tracks as many inbound connections as it will (a bound on memory).
    Full,
}

impl fmt::Display for ConnRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnRefusal::Pending => f.write_str(
                "too many connections from this address still in their transport handshake",
            ),
            ConnRefusal::Unauthenticated => {
                f.write_str("too many unauthenticated connections from this address")
            }
            ConnRefusal::Banned(left) => write!(
                f,
                "address banned after failed authentications ({left} s left)"
            ),
            ConnRefusal::Full => f.write_str("too many inbound connections"),
        }
    }
}

impl std::error::Error for ConnRefusal {}

impl AddressCaps {
    /// Whether a new inbound connection from an address may start its transport upgrade,
    /// given what the address holds: `pending` connections in the upgrade, `unauthenticated`
    /// up without a session, and the seconds left of the address's ban, if any.
    pub(crate) fn admit_pending(
        &self,
        pending: usize,
        unauthenticated: usize,
        banned: Option<u32>,
    ) -> Result<(), ConnRefusal> {
        if let Some(left) = banned
            && pending + unauthenticated >= self.banned
        {
            return Err(ConnRefusal::Banned(left));
        }
        if pending >= self.pending {
            return Err(ConnRefusal::Pending);
        }
        Ok(())
    }

    /// Whether an inbound connection that finished its transport upgrade may stay, given
    /// what else the address holds (`pending` others in the upgrade, `unauthenticated`
    /// others up without a session). A peer that has a session is let in regardless.
    pub(crate) fn admit_established(
        &self,
        pending: usize,
        unauthenticated: usize,
        banned: Option<u32>,
    ) -> Result<(), ConnRefusal> {
        if let Some(left) = banned
            && pending + unauthenticated >= self.banned
        {
            return Err(ConnRefusal::Banned(left));
        }
        if unauthenticated >= self.unauthenticated {
            return Err(ConnRefusal::Unauthenticated);
        }
        Ok(())
    }
}

/// Counts failures per key (a peer or an IP address) in a sliding window and bans a key that
/// reaches the threshold for a fixed time. Memory is bounded by `max_keys`.
#[derive(Debug)]
pub(crate) struct FailureLimiter<K> {
    entries: HashMap<K, Entry>,
    threshold: usize,
    window: Duration,
    ban: Duration,
    max_keys: usize,
}

#[derive(Debug, Default)]
struct Entry {
    failures: VecDeque<Instant>,
    banned_until: Option<Instant>,
}

impl<K: Eq + Hash + Clone> FailureLimiter<K> {
    pub(crate) fn new(threshold: usize, window: Duration, ban: Duration, max_keys: usize) -> Self {
        FailureLimiter {
            entries: HashMap::new(),
            threshold: threshold.max(1),
            window,
            ban,
            max_keys: max_keys.max(1),
        }
    }

    /// Records a failure; returns `true` if this one started a ban.
    pub(crate) fn record_failure(&mut self, key: &K, now: Instant) -> bool {
        if !self.entries.contains_key(key) && self.entries.len() >= self.max_keys {
            self.prune(now);
            if self.entries.len() >= self.max_keys {
                // Still full of live entries: forget the one whose last failure is oldest.
                // A flood of distinct keys can only push out other flooders' history.
                if let Some(oldest) = self
                    .entries
                    .iter()
                    .filter(|(_, e)| e.banned_until.is_none())
                    .min_by_key(|(_, e)| e.failures.back().copied())
                    .map(|(k, _)| k.clone())
                {
                    self.entries.remove(&oldest);
                } else {
                    return false;
                }
            }
        }
        let entry = self.entries.entry(key.clone()).or_default();
        if entry.banned_until.is_some_and(|t| now < t) {
            return false;
        }
        while entry
            .failures
            .front()
            .is_some_and(|t| now.duration_since(*t) > self.window)
        {
            entry.failures.pop_front();
        }
        entry.failures.push_back(now);
        if entry.failures.len() >= self.threshold {
            entry.failures.clear();
            entry.banned_until = Some(now + self.ban);
            return true;
        }
        false
    }

    /// If `key` is banned, for how much longer.
    pub(crate) fn banned(&self, key: &K, now: Instant) -> Option<Duration> {
        self.entries
            .get(key)
            .and_then(|e| e.banned_until)
            .filter(|t| now < *t)
            .map(|t| t - now)
    }

    /// Drops entries with no recent failure and no live ban.
    pub(crate) fn prune(&mut self, now: Instant) {
        let window = self.window;
        self.entries.retain(|_, e| {
            if e.banned_until.is_some_and(|t| now >= t) {
                e.banned_until = None;
            }
            e.banned_until.is_some()
                || e.failures
                    .back()
                    .is_some_and(|t| now.duration_since(*t) <= window)
        });
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

/// Decides when a repeated event is worth a log line: the first occurrence of each key,
/// then at most one summary per `interval`. Bounded by `max_keys`.
#[derive(Debug)]
pub(crate) struct LogThrottle<K> {
    entries: HashMap<K, (u64, Instant)>,
    interval: Duration,
    max_keys: usize,
}

impl<K: Eq + Hash> LogThrottle<K> {
    pub(crate) fn new(interval: Duration, max_keys: usize) -> Self {
        LogThrottle {
            entries: HashMap::new(),
            interval,
            max_keys,
        }
    }

    /// Counts an occurrence; returns `Some(n)` when it should be logged, with the number of
    /// occurrences since the last log line (including this one).
    pub(crate) fn hit(&mut self, key: K, now: Instant) -> Option<u64> {
        if let Some((count, last)) = self.entries.get_mut(&key) {
            *count += 1;
            if now.duration_since(*last) >= self.interval {
                let n = *count;
                *count = 0;
                *last = now;
                return Some(n);
            }
            return None;
        }
        if self.entries.len() >= self.max_keys {
            let interval = self.interval;
            self.entries
                .retain(|_, (_, last)| now.duration_since(*last) < interval);
            if self.entries.len() >= self.max_keys {
                // Too many distinct offenders to track: log nothing more for new ones until
                // the table drains (the counters still tell the story).
                return None;
            }
        }
        self.entries.insert(key, (0, now));
        Some(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bans_at_threshold_and_releases_after_ban() {
        let mut l = FailureLimiter::new(3, Duration::from_secs(60), Duration::from_secs(10), 100);
        let t = Instant::now();
        assert!(!l.record_failure(&"a", t));
        assert!(!l.record_failure(&"a", t));
        assert!(l.banned(&"a", t).is_none());
        assert!(l.record_failure(&"a", t));
        assert!(l.banned(&"a", t).is_some());
        assert!(l.banned(&"b", t).is_none());
        assert!(l.banned(&"a", t + Duration::from_secs(11)).is_none());
    }

    #[test]
    fn failures_outside_the_window_do_not_count() {
        let mut l = FailureLimiter::new(2, Duration::from_secs(5), Duration::from_secs(10), 100);
        let t = Instant::now();
        l.record_failure(&1, t);
        assert!(!l.record_failure(&1, t + Duration::from_secs(6)));
        assert!(l.record_failure(&1, t + Duration::from_secs(7)));
    }

    #[test]
    fn memory_is_bounded_under_a_flood_of_keys() {
        let mut l = FailureLimiter::new(5, Duration::from_secs(60), Duration::from_secs(60), 50);
        let t = Instant::now();
        for k in 0..10_000u32 {
            l.record_failure(&k, t);
        }
        assert!(l.len() <= 50);
    }

    #[test]
    fn addresses_are_keyed_by_ipv4_address_or_ipv6_slash_64() {
        let k = |s: &str| AddrKey::from(s.parse::<IpAddr>().expect("ip"));
        assert_eq!(k("10.0.0.1"), k("10.0.0.1"));
        assert_ne!(k("10.0.0.1"), k("10.0.0.2"));
        // One /64: one key, whatever the interface identifier.
        assert_eq!(k("2001:db8:1:2::1"), k("2001:db8:1:2:ffff:ffff:ffff:ffff"));
        assert_ne!(k("2001:db8:1:2::1"), k("2001:db8:1:3::1"));
        // An IPv4-mapped address is its IPv4 address.
        assert_eq!(k("::ffff:10.0.0.1"), k("10.0.0.1"));
        assert_eq!(k("2001:db8:1:2::7").to_string(), "2001:db8:1:2::/64");
        assert_eq!(k("192.0.2.9").to_string(), "192.0.2.9");
    }

    #[test]
    fn token_bucket_allows_a_burst_then_the_rate() {
        let every = Duration::from_millis(500);
        let mut l = RateLimiter::new(3, every, 100);
        let t = Instant::now();
        for _ in 0..3 {
            assert!(l.try_take(&"a", t).is_ok());
        }
        let wait = l.try_take(&"a", t).expect_err("empty");
        assert_eq!(wait, every);
        // Another key has its own bucket.
        assert!(l.try_take(&"b", t).is_ok());
        // Half a period later: still empty, and the wait shrinks.
        let wait = l.try_take(&"a", t + every / 2).expect_err("still empty");
        assert_eq!(wait, every / 2);
        // One period: one token, not more.
        assert!(l.try_take(&"a", t + every).is_ok());
        assert!(l.try_take(&"a", t + every).is_err());
        // A long pause refills to the burst, not beyond.
        let later = t + every * 100;
        for _ in 0..3 {
            assert!(l.try_take(&"a", later).is_ok());
        }
        assert!(l.try_take(&"a", later).is_err());
    }

    #[test]
    fn token_bucket_refills_at_the_rate_under_a_steady_flood() {
        // 1 token per 100 ms: a flood every 10 ms for 10 s gets burst + 100 through.
        let every = Duration::from_millis(100);
        let mut l = RateLimiter::new(5, every, 100);
        let t = Instant::now();
        let admitted = (0..1000)
            .filter(|i| l.try_take(&1u8, t + Duration::from_millis(10 * i)).is_ok())
            .count();
        assert!((104..=106).contains(&admitted), "{admitted}");
    }

    #[test]
    fn token_bucket_memory_is_bounded_and_full_buckets_are_forgotten() {
        let mut l = RateLimiter::new(2, Duration::from_secs(1), 50);
        let t = Instant::now();
        for k in 0..10_000u32 {
            let _ = l.try_take(&k, t);
        }
        assert!(l.len() <= 50);
        l.prune(t + Duration::from_secs(2));
        assert_eq!(l.len(), 0, "every bucket is full again");
    }

    #[test]
    fn address_caps_refuse_the_excess_and_keep_a_little_room_while_banned() {
        let caps = AddressCaps {
            pending: 8,
            unauthenticated: 16,
            banned: 2,
        };
        assert_eq!(caps.admit_pending(7, 100, None), Ok(()));
        assert_eq!(caps.admit_pending(8, 0, None), Err(ConnRefusal::Pending));
        assert_eq!(caps.admit_established(100, 15, None), Ok(()));
        assert_eq!(
            caps.admit_established(0, 16, None),
            Err(ConnRefusal::Unauthenticated)
        );
        let left = 42;
        assert_eq!(caps.admit_pending(0, 1, Some(left)), Ok(()));
        assert_eq!(caps.admit_established(1, 0, Some(left)), Ok(()));
        assert_eq!(
            caps.admit_pending(1, 1, Some(left)),
            Err(ConnRefusal::Banned(left))
        );
        assert_eq!(
            caps.admit_established(0, 2, Some(left)),
            Err(ConnRefusal::Banned(left))
        );
        assert_eq!(
            ConnRefusal::Banned(left).to_string(),
            "address banned after failed authentications (42 s left)"
        );
    }

    #[test]
    fn log_throttle_logs_first_then_summaries() {
        let mut th = LogThrottle::new(Duration::from_secs(60), 10);
        let t = Instant::now();
        assert_eq!(th.hit("x", t), Some(1));
        for _ in 0..1000 {
            assert_eq!(th.hit("x", t + Duration::from_secs(1)), None);
        }
        assert_eq!(th.hit("x", t + Duration::from_secs(61)), Some(1001));
        assert_eq!(th.hit("y", t), Some(1));
    }
}
