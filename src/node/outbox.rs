//! The outbox (issue 12, item 5): messages for a peer whose session is down but expected
//! back (reconnecting, or awaited), kept in memory only, in order, bounded per peer, and
//! handed back exactly once: to be sent when the session returns, or as not delivered
//! when they expire, the user disconnects the peer, reconnecting stops, or the node exits.
//!
//! Pure bookkeeping: time is passed in. Never written to disk.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::time::Duration;

use libp2p::PeerId;
use tokio::time::Instant;

use crate::node::reconnect::short_duration;

/// Most messages queued per peer.
pub(crate) const MAX_MESSAGES: usize = 100;
/// Most bytes of text queued per peer.
pub(crate) const MAX_BYTES: usize = 256 * 1024;
/// Most peers with a queue.
pub(crate) const MAX_PEERS: usize = 1024;
/// How long a message waits by default (`--outbox-ttl`).
pub const DEFAULT_TTL: Duration = Duration::from_secs(600);

/// A message waiting for its peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Queued {
    /// The local id its `Sent` carried (receipts and failures refer to it).
    pub(crate) local: u64,
    pub(crate) text: String,
    /// `msg` (private) rather than a broadcast.
    pub(crate) private: bool,
    /// When it was queued.
    pub(crate) at: Instant,
}

/// Why a queued message was given up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Undelivered {
    /// It waited longer than the outbox's time to live.
    Expired(Duration),
    /// The node is leaving.
    Exit,
    /// The user disconnected the peer.
    Disconnected,
    /// The user blocked the peer.
    Blocked,
    /// Reconnecting stopped (the peer refused us, or closed the session itself).
    GaveUp,
    /// It could not be queued.
    Full(OutboxFull),
}

impl Undelivered {
    /// A short word for machines (headless `reason`).
    pub fn code(&self) -> &'static str {
        match self {
            Undelivered::Expired(_) => "expired",
            Undelivered::Exit => "exit",
            Undelivered::Disconnected => "disconnected",
            Undelivered::Blocked => "blocked",
            Undelivered::GaveUp => "gave_up",
            Undelivered::Full(_) => "outbox_full",
        }
    }
}

impl fmt::Display for Undelivered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Undelivered::Expired(ttl) => write!(
                f,
                "the peer did not come back within {}",
                short_duration(*ttl)
            ),
            Undelivered::Exit => f.write_str("queued when you left"),
            Undelivered::Disconnected => f.write_str("you disconnected the peer"),
            Undelivered::Blocked => f.write_str("you blocked the peer"),
            Undelivered::GaveUp => f.write_str("reconnecting stopped"),
            Undelivered::Full(e) => write!(f, "{e}"),
        }
    }
}

/// Why a message could not be queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OutboxFull {
    /// The peer's queue holds [`MAX_MESSAGES`] messages or [`MAX_BYTES`] bytes.
    #[error("the outbox for this peer is full ({MAX_MESSAGES} messages or 256 KiB)")]
    Peer,
    /// [`MAX_PEERS`] peers have queues.
    #[error("the outbox is full ({MAX_PEERS} peers)")]
    Peers,
}

#[derive(Default)]
struct Queue {
    items: VecDeque<Queued>,
    bytes: usize,
}

/// Per-peer queues.
pub(crate) struct Outbox {
    ttl: Duration,
    queues: HashMap<PeerId, Queue>,
}

impl Outbox {
    pub(crate) fn new(ttl: Duration) -> Self {
        Outbox {
            ttl,
            queues: HashMap::new(),
        }
    }

    /// Queues `text` for `peer`.
    pub(crate) fn push(
        &mut self,
        peer: PeerId,
        local: u64,
        text: String,
        private: bool,
        now: Instant,
    ) -> Result<(), OutboxFull> {
        if !self.queues.contains_key(&peer) && self.queues.len() >= MAX_PEERS {
            return Err(OutboxFull::Peers);
        }
        let q = self.queues.entry(peer).or_default();
        if q.items.len() >= MAX_MESSAGES || q.bytes + text.len() > MAX_BYTES {
            if q.items.is_empty() {
                self.queues.remove(&peer);
            }
            return Err(OutboxFull::Peer);
        }
        q.bytes += text.len();
        q.items.push_back(Queued {
            local,
            text,
            private,
            at: now,
        });
        Ok(())
    }

    /// Everything queued for `peer`, oldest first; the queue is emptied (each message is
    /// handed back once).
    pub(crate) fn take(&mut self, peer: &PeerId) -> Vec<Queued> {
        self.queues
            .remove(peer)
            .map(|q| q.items.into())
            .unwrap_or_default()
    }

    /// Messages that waited `ttl` or longer by `now`, removed, oldest first per peer.
    pub(crate) fn expire(&mut self, now: Instant) -> Vec<(PeerId, Queued)> {
        let mut out = Vec::new();
        for (peer, q) in &mut self.queues {
            while let Some(first) = q.items.front() {
                if now.saturating_duration_since(first.at) < self.ttl {
                    break;
                }
                if let Some(m) = q.items.pop_front() {
                    q.bytes -= m.text.len();
                    out.push((*peer, m));
                }
            }
        }
        self.queues.retain(|_, q| !q.items.is_empty());
        out.sort_by_key(|(_, m)| m.local);
        out
    }

    /// Everything still queued (the node is leaving), in the order typed.
    pub(crate) fn drain(&mut self) -> Vec<(PeerId, Queued)> {
        let mut out: Vec<(PeerId, Queued)> = self
            .queues
            .drain()
            .flat_map(|(p, q)| q.items.into_iter().map(move |m| (p, m)))
            .collect();
        out.sort_by_key(|(_, m)| m.local);
        out
    }

    /// The time to live.
    pub(crate) fn ttl(&self) -> Duration {
        self.ttl
    }

    /// How many messages wait for `peer`.
    pub(crate) fn len(&self, peer: &PeerId) -> usize {
        self.queues.get(peer).map_or(0, |q| q.items.len())
    }

    /// Whether nothing is queued.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.queues.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(10);

    #[test]
    fn messages_come_back_once_in_order() {
        let mut o = Outbox::new(TTL);
        let (bob, carol) = (PeerId::random(), PeerId::random());
        let t0 = Instant::now();
        for i in 1..=3 {
            o.push(bob, i, format!("m{i}"), true, t0).expect("room");
        }
        o.push(carol, 4, "c".into(), false, t0).expect("room");
        assert_eq!(o.len(&bob), 3);
        let got: Vec<u64> = o.take(&bob).iter().map(|m| m.local).collect();
        assert_eq!(got, vec![1, 2, 3]);
        assert!(o.take(&bob).is_empty(), "handed back once");
        assert_eq!(o.len(&carol), 1);
        assert!(!o.is_empty());
    }

    #[test]
    fn expiry_reports_each_message_exactly_once() {
        let mut o = Outbox::new(TTL);
        let bob = PeerId::random();
        let t0 = Instant::now();
        o.push(bob, 1, "a".into(), true, t0).expect("room");
        o.push(bob, 2, "b".into(), true, t0 + Duration::from_secs(5))
            .expect("room");
        assert!(o.expire(t0 + TTL - Duration::from_millis(1)).is_empty());
        let first = o.expire(t0 + TTL);
        assert_eq!(first.len(), 1);
        assert_eq!((first[0].0, first[0].1.local), (bob, 1));
        assert!(o.expire(t0 + TTL).is_empty(), "not twice");
        let second = o.expire(t0 + TTL * 2);
        assert_eq!(second.iter().map(|(_, m)| m.local).collect::<Vec<_>>(), [2]);
        assert!(o.is_empty());
        assert!(o.drain().is_empty(), "nothing left to report at exit");
    }

    #[test]
    fn exit_drains_everything_in_the_order_typed() {
        let mut o = Outbox::new(TTL);
        let (bob, carol) = (PeerId::random(), PeerId::random());
        let t0 = Instant::now();
        o.push(carol, 1, "x".into(), false, t0).expect("room");
        o.push(bob, 2, "y".into(), false, t0).expect("room");
        o.push(carol, 3, "z".into(), false, t0).expect("room");
        let order: Vec<u64> = o.drain().iter().map(|(_, m)| m.local).collect();
        assert_eq!(order, vec![1, 2, 3]);
        assert!(o.drain().is_empty());
        assert!(o.take(&carol).is_empty());
    }

    #[test]
    fn queues_are_bounded_by_count_and_bytes() {
        let mut o = Outbox::new(TTL);
        let (bob, carol) = (PeerId::random(), PeerId::random());
        let t0 = Instant::now();
        for i in 0..MAX_MESSAGES as u64 {
            o.push(bob, i, "x".into(), true, t0).expect("room");
        }
        assert_eq!(
            o.push(bob, 999, "x".into(), true, t0),
            Err(OutboxFull::Peer)
        );
        assert_eq!(o.len(&bob), MAX_MESSAGES);
        let big = "y".repeat(MAX_BYTES / 2);
        o.push(carol, 1, big.clone(), true, t0).expect("room");
        o.push(carol, 2, big.clone(), true, t0).expect("room");
        assert_eq!(
            o.push(carol, 3, "z".into(), true, t0),
            Err(OutboxFull::Peer)
        );
        // Room comes back once messages leave.
        o.take(&carol);
        o.push(carol, 4, big, true, t0).expect("room again");
        // And the number of peers is bounded.
        let mut o = Outbox::new(TTL);
        for i in 0..MAX_PEERS as u64 {
            o.push(PeerId::random(), i, "p".into(), true, t0)
                .expect("room");
        }
        assert_eq!(
            o.push(PeerId::random(), 0, "p".into(), true, t0),
            Err(OutboxFull::Peers)
        );
        // A message too big for an empty queue leaves no empty queue behind.
        let mut o = Outbox::new(TTL);
        let huge = "h".repeat(MAX_BYTES + 1);
        assert_eq!(o.push(bob, 1, huge, true, t0), Err(OutboxFull::Peer));
        assert!(o.is_empty());
    }
}
