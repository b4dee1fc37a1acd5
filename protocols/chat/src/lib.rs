//! `noctua-chat`: the `/noctua/chat/2.0.0` protocol as a libp2p [`NetworkBehaviour`].
//!
//! Two nodes that share a connection secret open an end-to-end encrypted *session*: a
//! request-response exchange in which both sides prove knowledge of the listener's secret
//! with a balanced PAKE (CPace over ristretto255, bound to both `PeerId`s: nothing on the wire
//! lets anyone test guesses offline), agree an ephemeral Diffie-Hellman value, and contribute
//! key material wrapped with each other's RSA-OAEP key; every chat message then travels as an AES-256-GCM
//! record with a counter nonce, a replay window and an authenticated delivery receipt.
//! Sessions rotate to fresh keys every 30 minutes and after a number of messages, and each
//! has a safety number users can compare: per session, or, when both nodes keep their libp2p
//! identity ([`Config::with_lasting_identity`]), one number per pair of identities that
//! users compare once. A user can refuse a peer ([`Behaviour::refuse_peer`]: its handshakes
//! are answered `REFUSED`) and replace the node's secret while running
//! ([`Behaviour::set_secret`]). `SPEC.md` in this crate is the wire contract.
//!
//! This crate knows nothing of terminals or user interfaces: a node drives a
//! [`Behaviour`] and reacts to its [`Event`]s.
//!
//! # Example
//!
//! ```no_run
//! use libp2p::{PeerId, Multiaddr};
//! use noctua_chat::{Behaviour, Config, Event, Secret};
//!
//! # fn demo(local: PeerId, friend_addr: Multiaddr, friend_secret: &str) -> Result<(), Box<dyn std::error::Error>> {
//! // Our own secret: what others must know to reach us. Publish it as host:port:secret.
//! let config = Config::new(Secret::generate()).with_name("Alice");
//! let mut chat = Behaviour::new(local, config);
//!
//! // Dial a friend's connection string and open a session with their secret.
//! let open = chat.connect(friend_addr, Secret::new(friend_secret)?);
//!
//! // ... put `chat` in a Swarm and poll it; on Event::SessionEstablished { peer, .. }:
//! # let peer = PeerId::random();
//! let id = chat.send_message(&peer, "Hello ?")?;
//! // Event::MessageDelivered { message: id, .. } confirms it arrived.
//! # let _ = (open, id);
//! # Ok(()) }
//! ```
//!
//! # Security properties
//!
//! See `SPEC.md` §10 for what is and is not protected. In short: mutual authentication by
//! secret through a PAKE bound to both `PeerId`s, both RSA keys, nonces and shares, one
//! online guess per handshake and none offline; RSA private keys applied only to input from
//! peers that already proved the secret; per-direction AES-256-GCM keys; replay, reordering,
//! reflection and tampering refused and counted; an ephemeral Diffie-Hellman exchange in
//! every handshake and rotation (forward secrecy, and a passive thief of a node's memory is
//! out after the next rotation); key material from the operating system's generator; every
//! queue, frame, session and handshake bounded.
//!
//! # Structure
//!
//! A hierarchy of state machines, I/O only at the top (rust-libp2p's coding guidelines):
//! `handshake` (secret proof, key transport) and `session` (one session's epochs, rotation,
//! records) are pure; `peer` is everything about one remote peer (opens, handshakes in both
//! roles, records, rekeys, timers) as *input + now -> actions*; `peers` routes every input
//! to the right peer machine and holds the budgets they share; `behaviour` is the
//! [`NetworkBehaviour`] plumbing that turns libp2p's events into inputs and actions back
//! into libp2p calls; `handler`, `codec` and `wire` are the connection handler, the framing
//! and the message types; `types` holds the public ids and [`Event`]s.

#![forbid(unsafe_code)]
#![warn(missing_docs, unreachable_pub)]

mod behaviour;
mod channel;
mod codec;
mod config;
mod crypto;
mod error;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod handler;
mod handshake;
mod keys;
mod limits;
#[allow(dead_code)] // draft: wired into the behaviour and the machines next (DESIGN-offload.md)
mod offload;
mod peer;
mod peers;
mod session;
#[cfg(test)]
mod test_keys;
mod types;
pub mod wire;

pub use behaviour::Behaviour;
pub use codec::{Codec, PROTOCOL};
pub use config::{Config, MAX_FRAME_CEILING};
pub use crypto::{ACCEPTED_RSA_BITS, KeyError, RsaKeyPair, SafetyNumber, Secret, SecretError};
pub use error::{
    CloseReason, DeliveryError, OpenError, RefuseError, RejectCode, SendError, SessionError,
};
pub use handler::{Handler, HandlerIn};
pub use session::{Rejections, SessionState};
pub use types::{Event, MessageId, OpenId, SessionId, SessionInfo, StateCounts, protocol};
pub use wire::{ChatMessage, Role};

#[doc(no_inline)]
pub use libp2p::swarm::NetworkBehaviour;

/// `tracing` directives an application should add to its log filter (unless the user asked
/// for these targets explicitly).
///
/// libp2p-request-response logs `Dropping inbound stream because we are at capacity` at
/// WARN once per inbound stream over its per-connection limit, so a peer opening streams in
/// a loop writes one line per stream: an unbounded log from a remote peer. Capping that
/// target at ERROR bounds it; the behaviour's own, throttled warnings still name such a
/// peer.
pub const LOG_DIRECTIVES: &str = "libp2p_request_response::handler=error";
