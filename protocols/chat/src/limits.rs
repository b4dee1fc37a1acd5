//! Bounded bookkeeping against abuse: failed-authentication rate limiting (SPEC.md §8) and
//! log throttling, so that a flood is logged once, not once per packet.

use std::collections::HashMap;
use std::collections::VecDeque;
use std::hash::Hash;
use std::time::{Duration, Instant};

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
