//! Faces: what a person or a script sees of the node. Each face reads input, turns it
//! into node [`Command`](crate::node::Command)s sent down one bounded channel, and shows
//! the node's [`Output`](crate::node::Output)s as they come up. The node knows nothing of
//! them.
//!
//! - [`terminal`]: the interactive line editor, or plain lines when input is piped;
//! - [`headless`]: one JSON event per line, for scripts and labs ([`headless::Event`] is
//!   the schema);
//! - `commands`: the command language both share; `script`: driving the node from piped
//!   input; `render`: the terminal's lines and colors.

pub(crate) mod commands;
pub(crate) mod complete;
pub mod headless;
pub(crate) mod render;
pub(crate) mod script;
pub mod terminal;

use crate::node::{CommandError, Output};

/// What failed while a script ran: its exit status (see [`Tally::exit_code`]).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    /// Connects that failed, and commands refused (a bad line, an unknown peer...).
    pub commands_failed: usize,
    /// Messages not delivered to some peer, or not sent at all.
    pub deliveries_failed: usize,
}

impl Tally {
    /// Counts what `o` says went wrong.
    pub(crate) fn count(&mut self, o: &Output) {
        match o {
            Output::ConnectFailed { .. } => self.commands_failed += 1,
            Output::DeliveryFailed { .. }
            | Output::NotDelivered { .. }
            | Output::Error(CommandError::NobodyToSend | CommandError::TooLong { .. }) => {
                self.deliveries_failed += 1
            }
            // A failed key regeneration is the node's, not the script's.
            Output::Error(CommandError::KeyGeneration(_)) => {}
            Output::Error(_) => self.commands_failed += 1,
            _ => {}
        }
    }

    /// A line of input that was not a valid command.
    pub(crate) fn refused_line(&mut self) {
        self.commands_failed += 1;
    }

    /// The exit status of a script (piped input or headless): 0 when everything worked,
    /// 3 when a connect or another command failed, else 4 when a message was not
    /// delivered. (1 is a failure to start, 2 a bad command line.)
    pub fn exit_code(&self) -> u8 {
        if self.commands_failed > 0 {
            3
        } else if self.deliveries_failed > 0 {
            4
        } else {
            0
        }
    }
}

/// Resolves on SIGINT (Ctrl-C), SIGTERM or SIGHUP (the terminal window was closed).
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (mut term, mut hup) = match (
            signal(SignalKind::terminate()),
            signal(SignalKind::hangup()),
        ) {
            (Ok(t), Ok(h)) => (t, h),
            _ => return std::future::pending().await,
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
            _ = hup.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
