//! Tab completion for the interactive terminal: command words (bare, or after `/`) and
//! the display names of the peers with a session (after `@`, or as the first argument of
//! a command that names a peer).

use std::sync::{Arc, Mutex, PoisonError};

use rustyline::Context;
use rustyline::completion::Completer;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::validate::Validator;

use crate::face::commands::{COMMAND_WORDS, PEER_COMMANDS};

/// The names completion offers, kept up to date by the face as sessions come and go.
#[derive(Debug, Clone, Default)]
pub(crate) struct PeerNames(Arc<Mutex<Vec<String>>>);

impl PeerNames {
    /// A peer with a session, under this display name.
    pub(crate) fn add(&self, name: &str) {
        let mut names = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if !names.iter().any(|n| n == name) {
            names.push(name.to_string());
            names.sort();
        }
    }

    /// The session with the peer of that name ended.
    pub(crate) fn remove(&self, name: &str) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|n| n != name);
    }

    fn starting_with(&self, prefix: &str) -> Vec<String> {
        let prefix = prefix.to_lowercase();
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|n| n.to_lowercase().starts_with(&prefix))
            .cloned()
            .collect()
    }
}

/// The line editor's helper: completion only.
pub(crate) struct TabCompletion {
    pub(crate) names: PeerNames,
}

/// Candidates for the word that ends at `pos` in `line`: where it starts, and the
/// completions (each with a space after it when it is the whole word).
pub(crate) fn candidates(line: &str, pos: usize, names: &PeerNames) -> (usize, Vec<String>) {
    let before = line.get(..pos).unwrap_or(line);
    let start = before.rfind(char::is_whitespace).map_or(0, |i| {
        i + before[i..].chars().next().map_or(1, char::len_utf8)
    });
    let word = &before[start..];
    let earlier: Vec<&str> = before[..start].split_whitespace().collect();
    let with_space = |v: Vec<String>| v.into_iter().map(|c| c + " ").collect::<Vec<_>>();
    match earlier.as_slice() {
        [] => {
            if let Some(partial) = word.strip_prefix('@') {
                let found = names.starting_with(partial);
                return (
                    start,
                    with_space(found.iter().map(|n| format!("@{n}")).collect()),
                );
            }
            let (slash, partial) = match word.strip_prefix('/') {
                Some(p) => ("/", p),
                None => ("", word),
            };
            if partial.is_empty() && slash.is_empty() {
                return (start, Vec::new());
            }
            let found = COMMAND_WORDS
                .iter()
                .filter(|c| c.len() > 1 && c.starts_with(&partial.to_lowercase()))
                .map(|c| format!("{slash}{c}"))
                .collect();
            (start, with_space(found))
        }
        [first]
            if PEER_COMMANDS.contains(&first.trim_start_matches('/').to_lowercase().as_str()) =>
        {
            (start, with_space(names.starting_with(word)))
        }
        _ => (start, Vec::new()),
    }
}

impl Completer for TabCompletion {
    type Candidate = String;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<String>)> {
        Ok(candidates(line, pos, &self.names))
    }
}

impl Hinter for TabCompletion {
    type Hint = String;
}

impl Highlighter for TabCompletion {}

impl Validator for TabCompletion {}

impl rustyline::Helper for TabCompletion {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_and_names_complete() {
        let names = PeerNames::default();
        names.add("Alice");
        names.add("Alan");
        names.add("Bob");
        let c = |line: &str| candidates(line, line.len(), &names);
        assert_eq!(c("/qu"), (0, vec!["/quit ".to_string()]));
        assert_eq!(c("sess"), (0, vec!["sessions ".to_string()]));
        assert_eq!(c("@B"), (0, vec!["@Bob ".to_string()]));
        assert_eq!(
            c("msg Al"),
            (4, vec!["Alan ".to_string(), "Alice ".to_string()])
        );
        assert_eq!(c("/verify b"), (8, vec!["Bob ".to_string()]));
        assert_eq!(c("hello Al"), (6, vec![]));
        assert_eq!(c(""), (0, vec![]));
        names.remove("Bob");
        assert_eq!(c("@B"), (0, vec![]));
    }
}
