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
pub mod headless;
pub(crate) mod render;
pub(crate) mod script;
pub mod terminal;

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
