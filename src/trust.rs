//! The trust book: peers we have met, pinned on first use. Pure: no I/O, no clock (times
//! are passed in), so every decision here is unit-tested and fuzzable.
//!
//! A peer that keeps its identity across restarts (its PROFILE carries LASTING) is
//! *pinned* the first time we meet it: its name and the addresses we dialed it at belong
//! to that PeerId from then on. Another identity that shows up under that name, or at one
//! of those addresses, gets a [`Verdict::NameConflict`] or [`Verdict::AddressConflict`]:
//! the node refuses the session and warns loudly. Ephemeral peers (no profile on their
//! side) are remembered for this run only and never pin anything: their identity is new
//! at every start, so a pin would only produce false alarms.
//!
//! What is kept on disk ([`KnownPeers::persisted`]) is lasting peers and blocked peers;
//! the profile module writes it.

use std::collections::BTreeMap;
use std::fmt;

use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};

/// Most peers remembered (in memory and in the profile).
pub const MAX_KNOWN: usize = 1024;
/// Most addresses remembered per peer (most recent first).
pub const MAX_ADDRS: usize = 4;
/// Longest name kept (bytes; a PROFILE name is at most 64 bytes after cleaning anyway).
pub const MAX_NAME: usize = 256;

/// One peer we have met.
#[derive(Clone, PartialEq, Eq)]
pub struct KnownPeer {
    /// Its libp2p identity.
    pub peer: PeerId,
    /// The name it gave (cleaned by the node).
    pub name: String,
    /// Whether it keeps its identity across restarts (its PROFILE said LASTING).
    pub lasting: bool,
    /// Whether our user compared the (lasting) safety number and said `trust`.
    pub verified: bool,
    /// Whether our user blocked it.
    pub blocked: bool,
    /// Addresses we dialed it at, most recent first, without `/p2p/` (at most
    /// [`MAX_ADDRS`]).
    pub addrs: Vec<Multiaddr>,
    /// The secret we dialed it with (to reconnect), if we dialed it. Never in `Debug`.
    pub secret: Option<String>,
    /// When we last had a session with it (seconds since the Unix epoch), if ever.
    pub last_seen: Option<u64>,
}

impl fmt::Debug for KnownPeer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KnownPeer")
            .field("peer", &self.peer)
            .field("name", &self.name)
            .field("lasting", &self.lasting)
            .field("verified", &self.verified)
            .field("blocked", &self.blocked)
            .field("addrs", &self.addrs)
            .field("secret", &self.secret.as_ref().map(|_| "<hidden>"))
            .field("last_seen", &self.last_seen)
            .finish()
    }
}

impl KnownPeer {
    /// A peer met for the first time.
    pub fn new(peer: PeerId, name: impl Into<String>, lasting: bool) -> Self {
        KnownPeer {
            peer,
            name: clip(name.into()),
            lasting,
            verified: false,
            blocked: false,
            addrs: Vec::new(),
            secret: None,
            last_seen: None,
        }
    }

    /// Its trust state, as `peers` shows it.
    pub fn state(&self) -> TrustState {
        if self.blocked {
            TrustState::Blocked
        } else if self.verified {
            TrustState::Verified
        } else if self.lasting {
            TrustState::Pinned
        } else {
            TrustState::New
        }
    }

    /// Whether it belongs in the profile's file.
    pub fn persists(&self) -> bool {
        self.lasting || self.blocked
    }

    fn add_addr(&mut self, addr: Multiaddr) {
        let addr = without_p2p(&addr);
        self.addrs.retain(|a| *a != addr);
        self.addrs.insert(0, addr);
        self.addrs.truncate(MAX_ADDRS);
    }
}

/// How far we trust a peer, as `peers` and `verify` show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrustState {
    /// Never met, or met without a lasting identity (nothing pinned).
    New,
    /// Lasting identity, pinned on first use, number not compared.
    Pinned,
    /// Lasting identity whose safety number our user compared (`trust`).
    Verified,
    /// Blocked by our user.
    Blocked,
}

impl TrustState {
    /// One lower-case word: `new`, `pinned`, `verified`, `blocked`.
    pub fn as_str(self) -> &'static str {
        match self {
            TrustState::New => "new",
            TrustState::Pinned => "pinned",
            TrustState::Verified => "verified",
            TrustState::Blocked => "blocked",
        }
    }
}

impl fmt::Display for TrustState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What [`KnownPeers::check`] decides about a session that was just established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Our user blocked this identity: close the session.
    Blocked,
    /// Never met (or only as an ephemeral peer this run, under no pinned name or address).
    New,
    /// Met before with this identity.
    Known {
        /// Whether our user verified it.
        verified: bool,
    },
    /// A lasting known peer, another identity, has this name: refuse and warn.
    NameConflict {
        /// The identity the name is pinned to.
        known: PeerId,
    },
    /// We dialed an address pinned to a lasting known peer, and another identity answered:
    /// refuse and warn.
    AddressConflict {
        /// The identity the address is pinned to.
        known: PeerId,
        /// The address (without `/p2p/`).
        addr: Multiaddr,
    },
}

impl Verdict {
    /// Whether the session must be refused.
    pub fn refuses(&self) -> bool {
        !matches!(self, Verdict::New | Verdict::Known { .. })
    }
}

/// Why a change to the trust book was not made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrustError {
    /// The peer is not in the book.
    #[error("this peer is not known")]
    Unknown,
    /// `trust` on a peer whose safety number changes with every session.
    #[error(
        "its safety number is per session (one of you runs without --profile), so there is \
         nothing lasting to trust: compare the number with `verify` in each session instead"
    )]
    NotLasting,
    /// The book is full of verified or blocked peers.
    #[error("too many known peers ({MAX_KNOWN}): forget some first")]
    Full,
    /// The same identity appears twice (in a loaded file).
    #[error("peer {0} is listed twice")]
    Duplicate(PeerId),
}

/// The peers we know, by identity. Bounded by [`MAX_KNOWN`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KnownPeers {
    peers: BTreeMap<PeerId, KnownPeer>,
}

impl KnownPeers {
    /// An empty book.
    pub fn new() -> Self {
        Self::default()
    }

    /// A book from loaded records (the profile's `peers.toml`). Fails on a duplicate or on
    /// more than [`MAX_KNOWN`] records.
    pub fn from_peers(list: Vec<KnownPeer>) -> Result<Self, TrustError> {
        if list.len() > MAX_KNOWN {
            return Err(TrustError::Full);
        }
        let mut peers = BTreeMap::new();
        for mut p in list {
            p.name = clip(p.name);
            let mut addrs: Vec<Multiaddr> = Vec::new();
            for a in p.addrs.iter().map(without_p2p) {
                if !addrs.contains(&a) {
                    addrs.push(a);
                }
            }
            addrs.truncate(MAX_ADDRS);
            p.addrs = addrs;
            let id = p.peer;
            if peers.insert(id, p).is_some() {
                return Err(TrustError::Duplicate(id));
            }
        }
        Ok(KnownPeers { peers })
    }

    /// How many peers are known.
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// The record of one peer.
    pub fn get(&self, peer: &PeerId) -> Option<&KnownPeer> {
        self.peers.get(peer)
    }

    /// Every known peer, by identity.
    pub fn iter(&self) -> impl Iterator<Item = &KnownPeer> {
        self.peers.values()
    }

    /// The records that belong in the profile: lasting or blocked peers.
    pub fn persisted(&self) -> impl Iterator<Item = &KnownPeer> {
        self.peers.values().filter(|p| p.persists())
    }

    /// A peer's trust state (`New` when unknown).
    pub fn state(&self, peer: &PeerId) -> TrustState {
        self.get(peer).map_or(TrustState::New, KnownPeer::state)
    }

    /// Whether our user blocked this identity.
    pub fn is_blocked(&self, peer: &PeerId) -> bool {
        self.get(peer).is_some_and(|p| p.blocked)
    }

    /// The lasting known peer (other than `not`) that this name is pinned to, if any.
    pub fn pinned_name(&self, name: &str, not: &PeerId) -> Option<&KnownPeer> {
        self.peers
            .values()
            .find(|p| p.lasting && p.peer != *not && p.name == name)
    }

    /// Decides about a session just established with `peer`, which calls itself `name`;
    /// `dialed` is the address we dialed it at when we opened the connection (None when it
    /// dialed us: its source port says nothing).
    ///
    /// Order: blocked first, then a name pinned to another lasting identity, then an
    /// address pinned to another lasting identity, then known or new.
    pub fn check(&self, peer: &PeerId, name: &str, dialed: Option<&Multiaddr>) -> Verdict {
        if self.is_blocked(peer) {
            return Verdict::Blocked;
        }
        if let Some(known) = self.pinned_name(name, peer) {
            return Verdict::NameConflict { known: known.peer };
        }
        if let Some(addr) = dialed {
            let addr = without_p2p(addr);
            if let Some(known) = self
                .peers
                .values()
                .find(|p| p.lasting && p.peer != *peer && p.addrs.contains(&addr))
            {
                return Verdict::AddressConflict {
                    known: known.peer,
                    addr,
                };
            }
        }
        match self.get(peer) {
            Some(p) => Verdict::Known {
                verified: p.verified,
            },
            None => Verdict::New,
        }
    }

    /// Records a session with `peer` (call after [`check`](Self::check) accepted it):
    /// its name and lasting flag, the address we dialed (if we did) and the secret we
    /// dialed with (if we did; an earlier one is kept otherwise), at time `now` (Unix
    /// seconds). A full book forgets its least recently seen peer that is neither verified
    /// nor blocked; if there is none, [`TrustError::Full`].
    pub fn remember(
        &mut self,
        peer: PeerId,
        name: &str,
        lasting: bool,
        dialed: Option<Multiaddr>,
        secret: Option<String>,
        now: u64,
    ) -> Result<(), TrustError> {
        if !self.peers.contains_key(&peer) {
            self.make_room()?;
        }
        let entry = self
            .peers
            .entry(peer)
            .or_insert_with(|| KnownPeer::new(peer, name, lasting));
        entry.name = clip(name.to_string());
        if entry.lasting && !lasting {
            // The same key without a profile on its side: the number no longer lasts, so
            // an earlier comparison says nothing about the next sessions.
            entry.verified = false;
        }
        entry.lasting = lasting;
        if let Some(addr) = dialed {
            entry.add_addr(addr);
        }
        if secret.is_some() {
            entry.secret = secret;
        }
        entry.last_seen = Some(now);
        Ok(())
    }

    /// Records that our user compared `peer`'s lasting safety number.
    pub fn trust(&mut self, peer: &PeerId) -> Result<(), TrustError> {
        let p = self.peers.get_mut(peer).ok_or(TrustError::Unknown)?;
        if !p.lasting {
            return Err(TrustError::NotLasting);
        }
        p.verified = true;
        Ok(())
    }

    /// Forgets everything about `peer` (its pins too, and a block). Returns whether it
    /// was known.
    pub fn forget(&mut self, peer: &PeerId) -> bool {
        self.peers.remove(peer).is_some()
    }

    /// Blocks `peer` (known or not; `name` labels a new record).
    pub fn block(&mut self, peer: PeerId, name: &str) -> Result<(), TrustError> {
        if !self.peers.contains_key(&peer) {
            self.make_room()?;
        }
        let entry = self
            .peers
            .entry(peer)
            .or_insert_with(|| KnownPeer::new(peer, name, false));
        entry.blocked = true;
        // A blocked peer is not reconnected: drop the means.
        entry.secret = None;
        Ok(())
    }

    /// Unblocks `peer`. Returns whether it was blocked.
    pub fn unblock(&mut self, peer: &PeerId) -> bool {
        match self.peers.get_mut(peer) {
            Some(p) if p.blocked => {
                p.blocked = false;
                true
            }
            _ => false,
        }
    }

    /// Makes room for one more record, or says the book is full.
    fn make_room(&mut self) -> Result<(), TrustError> {
        if self.peers.len() < MAX_KNOWN {
            return Ok(());
        }
        let victim = self
            .peers
            .values()
            .filter(|p| !p.verified && !p.blocked)
            .min_by_key(|p| (p.last_seen.unwrap_or(0), p.lasting))
            .map(|p| p.peer)
            .ok_or(TrustError::Full)?;
        self.peers.remove(&victim);
        Ok(())
    }
}

/// `addr` without a trailing `/p2p/...`: addresses are pinned as dialed, identity apart.
pub fn without_p2p(addr: &Multiaddr) -> Multiaddr {
    addr.iter()
        .filter(|p| !matches!(p, Protocol::P2p(_)))
        .collect()
}

/// `name` cut to [`MAX_NAME`] bytes at a character boundary.
fn clip(mut name: String) -> String {
    if name.len() > MAX_NAME {
        let mut end = MAX_NAME;
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        name.truncate(end);
    }
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> PeerId {
        PeerId::random()
    }

    fn addr(port: u16) -> Multiaddr {
        format!("/ip4/127.0.0.1/tcp/{port}").parse().expect("addr")
    }

    #[test]
    fn a_lasting_peer_is_pinned_on_first_use() {
        let mut book = KnownPeers::new();
        let bob = id();
        assert_eq!(book.check(&bob, "Bob", Some(&addr(5000))), Verdict::New);
        book.remember(bob, "Bob", true, Some(addr(5000)), Some("s3".into()), 10)
            .expect("room");
        assert_eq!(book.state(&bob), TrustState::Pinned);
        assert_eq!(
            book.check(&bob, "Bob", Some(&addr(5000))),
            Verdict::Known { verified: false }
        );
        let p = book.get(&bob).expect("known");
        assert_eq!(p.addrs, vec![addr(5000)]);
        assert_eq!(p.secret.as_deref(), Some("s3"));
        assert_eq!(p.last_seen, Some(10));
        assert_eq!(book.persisted().count(), 1);
    }

    #[test]
    fn another_identity_under_a_pinned_name_is_a_conflict() {
        let mut book = KnownPeers::new();
        let (bob, mallory) = (id(), id());
        book.remember(bob, "Bob", true, None, None, 1)
            .expect("room");
        assert_eq!(
            book.check(&mallory, "Bob", None),
            Verdict::NameConflict { known: bob }
        );
        assert!(book.check(&mallory, "Bob", None).refuses());
        // Another name is fine; the pinned peer itself is fine.
        assert_eq!(book.check(&mallory, "Mallory", None), Verdict::New);
        assert!(!book.check(&bob, "Bob", None).refuses());
    }

    #[test]
    fn another_identity_at_a_pinned_address_is_a_conflict() {
        let mut book = KnownPeers::new();
        let (bob, other) = (id(), id());
        book.remember(bob, "Bob", true, Some(addr(5000)), None, 1)
            .expect("room");
        let pinned = addr(5000).with(Protocol::P2p(other));
        assert_eq!(
            book.check(&other, "Carol", Some(&pinned)),
            Verdict::AddressConflict {
                known: bob,
                addr: addr(5000)
            }
        );
        // It dialed us: its source address proves nothing.
        assert_eq!(book.check(&other, "Carol", None), Verdict::New);
        assert_eq!(book.check(&other, "Carol", Some(&addr(5001))), Verdict::New);
    }

    #[test]
    fn ephemeral_peers_pin_nothing_and_are_not_persisted() {
        let mut book = KnownPeers::new();
        let (eve, other) = (id(), id());
        book.remember(eve, "Eve", false, Some(addr(6000)), None, 1)
            .expect("room");
        assert_eq!(book.state(&eve), TrustState::New);
        assert_eq!(book.check(&other, "Eve", Some(&addr(6000))), Verdict::New);
        assert_eq!(book.persisted().count(), 0);
        assert_eq!(book.trust(&eve), Err(TrustError::NotLasting));
    }

    #[test]
    fn blocked_comes_first_and_persists_even_for_an_ephemeral_peer() {
        let mut book = KnownPeers::new();
        let eve = id();
        book.block(eve, "Eve").expect("room");
        assert_eq!(book.check(&eve, "Eve", None), Verdict::Blocked);
        assert_eq!(book.state(&eve), TrustState::Blocked);
        assert_eq!(book.persisted().count(), 1);
        assert!(book.unblock(&eve));
        assert!(!book.unblock(&eve));
        assert_eq!(
            book.check(&eve, "Eve", None),
            Verdict::Known { verified: false }
        );
        assert_eq!(book.persisted().count(), 0);
    }

    #[test]
    fn block_drops_the_secret_so_nothing_reconnects() {
        let mut book = KnownPeers::new();
        let bob = id();
        book.remember(bob, "Bob", true, Some(addr(1)), Some("s".into()), 1)
            .expect("room");
        book.block(bob, "ignored").expect("room");
        let p = book.get(&bob).expect("known");
        assert_eq!(p.secret, None);
        assert_eq!(p.name, "Bob");
    }

    #[test]
    fn trust_and_forget() {
        let mut book = KnownPeers::new();
        let bob = id();
        assert_eq!(book.trust(&bob), Err(TrustError::Unknown));
        book.remember(bob, "Bob", true, None, None, 1)
            .expect("room");
        book.trust(&bob).expect("lasting");
        assert_eq!(book.state(&bob), TrustState::Verified);
        assert_eq!(
            book.check(&bob, "Bob", None),
            Verdict::Known { verified: true }
        );
        // A later session keeps the verification while the number lasts...
        book.remember(bob, "Bob", true, None, None, 2)
            .expect("room");
        assert_eq!(book.state(&bob), TrustState::Verified);
        // ...and drops it when it stops lasting.
        book.remember(bob, "Bob", false, None, None, 3)
            .expect("room");
        assert_eq!(book.state(&bob), TrustState::New);
        assert!(book.forget(&bob));
        assert!(!book.forget(&bob));
        // Forgotten: the name is free again.
        assert_eq!(book.check(&id(), "Bob", None), Verdict::New);
    }

    #[test]
    fn addresses_are_bounded_most_recent_first_without_p2p() {
        let mut book = KnownPeers::new();
        let bob = id();
        for port in 1..=6 {
            let a = addr(port).with(Protocol::P2p(bob));
            book.remember(bob, "Bob", true, Some(a), None, 1)
                .expect("room");
        }
        book.remember(bob, "Bob", true, Some(addr(4)), None, 1)
            .expect("room");
        let p = book.get(&bob).expect("known");
        assert_eq!(p.addrs, vec![addr(4), addr(6), addr(5), addr(3)]);
    }

    #[test]
    fn the_book_is_bounded_and_never_evicts_verified_or_blocked_peers() {
        let mut book = KnownPeers::new();
        let mut keep = Vec::new();
        for i in 0..MAX_KNOWN {
            let p = id();
            book.remember(p, &format!("p{i}"), true, None, None, 100 + i as u64)
                .expect("room");
            if i % 2 == 0 {
                book.trust(&p).expect("lasting");
            } else {
                book.block(p, "").expect("room");
            }
            keep.push(p);
        }
        assert_eq!(
            book.remember(id(), "new", true, None, None, 9999),
            Err(TrustError::Full)
        );
        assert_eq!(book.block(id(), "x"), Err(TrustError::Full));
        // One that may go: the least recently seen of those goes first.
        assert!(book.unblock(&keep[1]));
        assert!(book.unblock(&keep[3]));
        let newcomer = id();
        book.remember(newcomer, "new", true, None, None, 9999)
            .expect("room");
        assert_eq!(book.len(), MAX_KNOWN);
        assert!(book.get(&keep[1]).is_none());
        assert!(book.get(&keep[3]).is_some());
        assert!(book.get(&newcomer).is_some());
    }

    #[test]
    fn loaded_records_are_checked() {
        let bob = id();
        let rec = KnownPeer::new(bob, "Bob", true);
        assert_eq!(
            KnownPeers::from_peers(vec![rec.clone(), rec.clone()]),
            Err(TrustError::Duplicate(bob))
        );
        let many = (0..=MAX_KNOWN)
            .map(|_| KnownPeer::new(id(), "x", true))
            .collect();
        assert_eq!(KnownPeers::from_peers(many), Err(TrustError::Full));
        let mut long = rec;
        long.name = "é".repeat(MAX_NAME);
        long.addrs = [1, 2, 1, 3, 2, 4, 5].into_iter().map(addr).collect();
        let book = KnownPeers::from_peers(vec![long]).expect("fits");
        let p = book.get(&bob).expect("known");
        assert!(p.name.len() <= MAX_NAME && p.name.len() > MAX_NAME - 2);
        assert_eq!(p.addrs, vec![addr(1), addr(2), addr(3), addr(4)]);
    }

    #[test]
    fn debug_hides_the_secret() {
        let mut p = KnownPeer::new(id(), "Bob", true);
        p.secret = Some("hunter2-secret".into());
        let shown = format!("{p:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("<hidden>"));
    }
}
