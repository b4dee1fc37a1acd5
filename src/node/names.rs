//! Peer naming and resolution: the names a user sees and types.
//!
//! A peer chooses its own name; the node cleans it (no escape sequences or invisible
//! characters: see [`crate::sanitize`]) and makes it unique among current peers
//! (`Bob#a1b2`), so that what the user types resolves to the peer they saw.

use std::collections::HashMap;

use libp2p::PeerId;

use crate::node::error::ResolveError;
use crate::sanitize;

/// `Peer_` and the last 6 characters of the peer id.
pub fn short_peer(peer: &PeerId) -> String {
    let s = peer.to_base58();
    format!("Peer_{}", &s[s.len().saturating_sub(6)..])
}

/// Display names of the peers that told us one, and the numbering of the last `peers`
/// listing.
#[derive(Debug, Default)]
pub(crate) struct Names {
    labels: HashMap<PeerId, String>,
    listed: Vec<PeerId>,
}

impl Names {
    /// The display name of a peer: its (cleaned, unique) name if a session told us one,
    /// else `Peer_` and the end of its id.
    pub(crate) fn display(&self, peer: &PeerId) -> String {
        self.labels
            .get(peer)
            .cloned()
            .unwrap_or_else(|| short_peer(peer))
    }

    /// The name a session told us, if any.
    pub(crate) fn get(&self, peer: &PeerId) -> Option<&String> {
        self.labels.get(peer)
    }

    /// Gives `peer` a display name from the name it sent (`remote`).
    pub(crate) fn assign(&mut self, peer: PeerId, remote: &str) -> String {
        let base = sanitize::name(remote);
        let base = if base.is_empty() {
            short_peer(&peer)
        } else {
            base
        };
        let taken = self
            .labels
            .iter()
            .any(|(p, n)| *p != peer && n.eq_ignore_ascii_case(&base));
        let name = sanitize::disambiguate(&base, &peer.to_base58(), taken);
        self.labels.insert(peer, name.clone());
        name
    }

    /// The peer's name, assigning one from `remote` if it has none yet.
    pub(crate) fn get_or_assign(&mut self, peer: PeerId, remote: &str) -> String {
        match self.labels.get(&peer) {
            Some(n) => n.clone(),
            None => self.assign(peer, remote),
        }
    }

    /// Forgets a peer's name (its session ended).
    pub(crate) fn forget(&mut self, peer: &PeerId) {
        self.labels.remove(peer);
    }

    /// Remembers the order of a `peers` listing, for `connect <n>` and friends.
    pub(crate) fn set_listing(&mut self, peers: Vec<PeerId>) {
        self.listed = peers;
    }

    /// Finds a peer among `known` by display name, number in the last `peers` listing, or
    /// id prefix (or suffix) of at least three characters.
    pub(crate) fn resolve(&self, who: &str, known: &[PeerId]) -> Result<PeerId, ResolveError> {
        let who = who.trim();
        if let Ok(n) = who.parse::<usize>() {
            return self
                .listed
                .get(n.wrapping_sub(1))
                .copied()
                .ok_or(ResolveError::NoNumber(n));
        }
        if let Some(found) = self.by_name(who, known)? {
            return Ok(found);
        }
        if who.len() >= 3 {
            let by_id: Vec<PeerId> = known
                .iter()
                .filter(|p| {
                    let s = p.to_base58();
                    s.starts_with(who) || s.ends_with(who)
                })
                .copied()
                .collect();
            match by_id.len() {
                1 => return Ok(by_id[0]),
                n if n > 1 => {
                    return Err(ResolveError::AmbiguousId {
                        who: who.to_string(),
                        count: n,
                    });
                }
                _ => {}
            }
        }
        Err(ResolveError::Unknown(who.to_string()))
    }

    /// A peer whose name is `who` exactly, or whose name without its `#` suffix is.
    fn by_name(&self, who: &str, known: &[PeerId]) -> Result<Option<PeerId>, ResolveError> {
        let fits = |p: &PeerId, whole: bool| {
            self.labels.get(p).is_some_and(|n| {
                n.eq_ignore_ascii_case(who)
                    || (!whole
                        && n.split('#')
                            .next()
                            .is_some_and(|b| b.eq_ignore_ascii_case(who)))
            })
        };
        let by_name: Vec<PeerId> = known.iter().filter(|p| fits(p, false)).copied().collect();
        let exact: Vec<PeerId> = by_name.iter().filter(|p| fits(p, true)).copied().collect();
        if exact.len() == 1 {
            return Ok(Some(exact[0]));
        }
        match by_name.len() {
            0 => Ok(None),
            1 => Ok(Some(by_name[0])),
            _ => Err(ResolveError::Ambiguous {
                who: who.to_string(),
                names: by_name.iter().map(|p| self.display(p)).collect(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_cleaned_made_unique_and_resolved() {
        let (a, b) = (PeerId::random(), PeerId::random());
        let mut names = Names::default();
        assert_eq!(names.assign(a, "Bob\u{1b}[31m"), "Bob");
        let second = names.assign(b, "bob");
        assert!(second.starts_with("bob#"), "{second}");
        let known = [a, b];
        assert_eq!(names.resolve("Bob", &known), Ok(a));
        assert_eq!(names.resolve(&second, &known), Ok(b));
        assert_eq!(
            names.resolve("nobody", &known),
            Err(ResolveError::Unknown("nobody".into()))
        );
        assert_eq!(names.resolve("3", &known), Err(ResolveError::NoNumber(3)));
        names.set_listing(vec![b, a]);
        assert_eq!(names.resolve("1", &known), Ok(b));
        assert_eq!(names.resolve(&a.to_base58()[..12], &known), Ok(a));
    }
}
