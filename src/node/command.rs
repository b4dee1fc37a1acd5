//! What a face asks the node to do: commands go down one bounded channel as [`Request`]s.

use tokio::sync::oneshot;

use crate::connstr::ConnString;

/// A command with an optional signal sent when it has been carried out (for `connect`:
/// when the session is up or has failed). Scripted input waits on it so that `connect ...`
/// followed by a message does what it says.
#[derive(Debug)]
pub struct Request {
    /// What to do.
    pub command: Command,
    /// Signalled when done.
    pub done: Option<oneshot::Sender<()>>,
}

impl Request {
    /// A request nobody waits on.
    pub fn new(command: Command) -> Self {
        Request {
            command,
            done: None,
        }
    }
}

/// What the node can be asked to do. Peers are named as the user typed them (a display
/// name or a unique start of one, the peer's number, or a peer-id prefix or suffix); the
/// node resolves them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Open a session with a connection string.
    Connect(Box<ConnString>),
    /// Open a session with a discovered or connected peer.
    ConnectDiscovered {
        /// Which peer, as typed.
        who: String,
        /// Its secret.
        secret: String,
    },
    /// List the sessions ([`crate::node::Output::Sessions`]).
    Sessions,
    /// List known peers ([`crate::node::Output::Peers`]).
    Peers,
    /// Send to every peer with an active session.
    Broadcast(String),
    /// Send to one peer.
    Msg {
        /// Which peer, as typed.
        to: String,
        /// The text.
        text: String,
    },
    /// Show the safety number of a session.
    Verify(String),
    /// Rotate the keys of one session, or of all.
    Rotate(Option<String>),
    /// Close the session with a peer.
    Disconnect(String),
    /// Record that the user compared a peer's lasting safety number (`trust`).
    Trust(String),
    /// Forget a known peer: its pins, verification and block (`forget`).
    Forget(String),
    /// Block a peer's identity: close its session, refuse it, keep that in the profile.
    Block(String),
    /// Lift a block.
    Unblock(String),
    /// Replace our connection secret while running; sessions stay (`new-secret`).
    NewSecret,
    /// Leave: wait briefly (5 s at most) for the receipts of messages on their way, then
    /// close every session (peers see a goodbye).
    Exit,
    /// Input ended: wait for outstanding receipts, then leave.
    Finish,
}
