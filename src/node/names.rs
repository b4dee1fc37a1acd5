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

/// Why `name` cannot be our own display name, if it cannot: every name must be typed
/// exactly as shown, as one word after `msg`, and must not read as a peer number.
pub fn name_problem(name: &str) -> Option<&'static str> {
    if name.chars().any(char::is_whitespace) {
        Some("a name is typed as one word after 'msg': use no spaces (e.g. Bob_Smith)")
    } else if is_number(name) {
        Some("a name of digits alone reads as a peer number: add a letter")
    } else {
        None
    }
}

fn is_number(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_digit())
}

/// Display names of the peers that told us one, and each peer's number: given the first
/// time the node meets it, it never changes while the node runs.
#[derive(Debug, Default)]
pub(crate) struct Names {
    labels: HashMap<PeerId, String>,
    /// Names of peers whose session ended: `msg Bob` must not reach `Bobby` by prefix
    /// once Bob has left.
    former: HashMap<PeerId, String>,
    numbers: HashMap<PeerId, usize>,
    last_number: usize,
}

/// Most names of departed peers remembered (beyond it, the oldest are not told apart).
const MAX_FORMER: usize = 1024;

impl Names {
    /// The display name of a peer: its (cleaned, unique) name if a session told us one
    /// (or the name it had, once its session ended), else `Peer_` and the end of its id.
    pub(crate) fn display(&self, peer: &PeerId) -> String {
        self.labels
            .get(peer)
            .or_else(|| self.former.get(peer))
            .cloned()
            .unwrap_or_else(|| short_peer(peer))
    }

    /// The name a peer had before its session ended.
    pub(crate) fn former(&self, peer: &PeerId) -> Option<&String> {
        self.former.get(peer)
    }

    /// The name a session told us, if any.
    pub(crate) fn get(&self, peer: &PeerId) -> Option<&String> {
        self.labels.get(peer)
    }

    /// Gives `peer` a display name from the name it sent (`remote`). The name is made one
    /// word (spaces become `_`) so that it can be typed as shown after `msg`; one that
    /// reads as a number, or that another peer has, gets `#` and the end of the peer id.
    pub(crate) fn assign(&mut self, peer: PeerId, remote: &str) -> String {
        let base = sanitize::name(remote).replace(' ', "_");
        let base = if base.is_empty() {
            short_peer(&peer)
        } else {
            base
        };
        let taken = is_number(&base)
            || self
                .labels
                .iter()
                .any(|(p, n)| *p != peer && n.eq_ignore_ascii_case(&base));
        let name = sanitize::disambiguate(&base, &peer.to_base58(), taken);
        self.labels.insert(peer, name.clone());
        self.former.remove(&peer);
        self.number(peer);
        name
    }

    /// The peer's name, assigning one from `remote` if it has none yet.
    pub(crate) fn get_or_assign(&mut self, peer: PeerId, remote: &str) -> String {
        match self.labels.get(&peer) {
            Some(n) => n.clone(),
            None => self.assign(peer, remote),
        }
    }

    /// Forgets a peer's name (its session ended). Its number stays, and its name is kept
    /// aside so that it does not resolve to another peer by prefix.
    pub(crate) fn forget(&mut self, peer: &PeerId) {
        if let Some(name) = self.labels.remove(peer) {
            if self.former.len() >= MAX_FORMER
                && let Some(oldest) = self.former.keys().next().copied()
            {
                self.former.remove(&oldest);
            }
            self.former.insert(*peer, name);
        }
    }

    /// The peer's number, given now if it has none.
    pub(crate) fn number(&mut self, peer: PeerId) -> usize {
        if let Some(n) = self.numbers.get(&peer) {
            return *n;
        }
        self.last_number += 1;
        self.numbers.insert(peer, self.last_number);
        self.last_number
    }

    /// Finds a peer among `known` by its number, its display name (whole, without its `#`
    /// suffix, or a unique start of it), or an id prefix (or suffix) of at least three
    /// characters.
    pub(crate) fn resolve(&self, who: &str, known: &[PeerId]) -> Result<PeerId, ResolveError> {
        let who = who.trim();
        if let Ok(n) = who.parse::<usize>() {
            return known
                .iter()
                .find(|p| self.numbers.get(p) == Some(&n))
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

    /// A peer whose name is `who` exactly; else whose name without its `#` suffix is; else
    /// the one peer whose name starts with `who` (case aside).
    fn by_name(&self, who: &str, known: &[PeerId]) -> Result<Option<PeerId>, ResolveError> {
        let lower = who.to_lowercase();
        let name = |p: &PeerId| self.labels.get(p).map(|n| n.to_lowercase());
        let pick = |fits: &dyn Fn(&str) -> bool| -> Vec<PeerId> {
            known
                .iter()
                .filter(|p| name(p).is_some_and(|n| fits(&n)))
                .copied()
                .collect()
        };
        let exact = pick(&|n| n == lower);
        if exact.len() == 1 {
            return Ok(Some(exact[0]));
        }
        let base = pick(&|n| n.split('#').next() == Some(lower.as_str()));
        if base.is_empty()
            && let Some(gone) = self
                .former
                .values()
                .map(|n| (n, n.to_lowercase()))
                .find(|(_, n)| *n == lower || n.split('#').next() == Some(lower.as_str()))
                .map(|(n, _)| n)
        {
            // The whole name of a peer that left: never another peer's by prefix.
            return Err(ResolveError::Left(gone.clone()));
        }
        let candidates = if base.is_empty() {
            pick(&|n| n.starts_with(&lower))
        } else {
            base
        };
        match candidates.len() {
            0 => Ok(None),
            1 => Ok(Some(candidates[0])),
            _ => {
                let mut names: Vec<String> = candidates.iter().map(|p| self.display(p)).collect();
                names.sort();
                Err(ResolveError::Ambiguous {
                    who: who.to_string(),
                    names,
                })
            }
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
        // Numbers come in order of arrival and are valid at once.
        assert_eq!(names.resolve("1", &known), Ok(a));
        assert_eq!(names.resolve("2", &known), Ok(b));
        assert_eq!(names.resolve(&a.to_base58()[..12], &known), Ok(a));
    }

    /// Issue 11, item 1: a name is addressable exactly as shown.
    #[test]
    fn names_are_one_word_and_never_a_number() {
        let (bob, smith, digits) = (PeerId::random(), PeerId::random(), PeerId::random());
        let mut names = Names::default();
        assert_eq!(names.assign(bob, "Bob"), "Bob");
        assert_eq!(names.assign(smith, "Bob  Smith"), "Bob_Smith");
        let n = names.assign(digits, "1");
        assert!(n.starts_with("1#"), "{n}");
        let known = [bob, smith, digits];
        assert_eq!(names.resolve("Bob_Smith", &known), Ok(smith));
        assert_eq!(names.resolve("bob", &known), Ok(bob));
        assert_eq!(names.resolve("1", &known), Ok(bob), "1 is a number");
        assert_eq!(names.resolve(&n, &known), Ok(digits));
        assert!(name_problem("Bob Smith").is_some());
        assert!(name_problem("42").is_some());
        assert_eq!(name_problem("Bob_Smith"), None);
    }

    #[test]
    fn a_unique_start_of_a_name_is_enough() {
        let (alice, alan, bob) = (PeerId::random(), PeerId::random(), PeerId::random());
        let mut names = Names::default();
        names.assign(alice, "Alice");
        names.assign(alan, "Alan");
        names.assign(bob, "Bob");
        let known = [alice, alan, bob];
        assert_eq!(names.resolve("Ali", &known), Ok(alice));
        assert_eq!(names.resolve("b", &known), Ok(bob));
        assert!(matches!(
            names.resolve("Al", &known),
            Err(ResolveError::Ambiguous { .. })
        ));
        // Once Alice has left, "Alice" is hers, not a prefix of anyone else's name.
        let alicia = PeerId::random();
        names.assign(alicia, "Alicia");
        names.forget(&alice);
        let known = [alan, bob, alicia];
        assert_eq!(
            names.resolve("Alice", &known),
            Err(ResolveError::Left("Alice".into()))
        );
        assert_eq!(names.resolve("Alic", &known), Ok(alicia));
    }
}
