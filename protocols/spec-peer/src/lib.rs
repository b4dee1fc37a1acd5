//! A `/noctua/chat/1.0.0` peer written from `SPEC.md` alone, for tests (not published).
//!
//! Nothing here uses `noctua-chat`'s handshake, session, channel or crypto code: the
//! transcript hash, `K_auth`, the proofs, RSA-OAEP key transport, the HKDF key schedule,
//! AES-256-GCM records, ack tags, rotation and the safety number are all computed here from
//! the formulas of the spec. Only `noctua_chat::wire` (message structs and their encoding)
//! and `noctua_chat::Codec` (the framing) are borrowed from the crate, plus the public
//! `Behaviour` API to run the honest node under test.
//!
//! Conformance and hostile-peer tests share it: [`SpecInitiator`] / [`SpecAuthSent`] /
//! [`SpecSession`] hold the protocol state and build honest *or* deliberately wrong
//! messages, [`Harness`] runs a real [`noctua_chat::Behaviour`] swarm and the spec peer's
//! swarm side by side on the memory transport, and [`RawStreams`] / [`run_script`] give a
//! test raw streams to abuse. [`node_key`] and [`spec_rsa_key`] are the RSA keys every
//! integration test shares.
//!
//! Everything is re-exported at the root, so a test can `use noctua_spec_peer::*`.

mod handshake;
mod harness;
mod keys;
mod raw;
mod record;
mod session;
mod spec;
mod streams;

pub use handshake::*;
pub use harness::*;
pub use keys::*;
pub use raw::*;
pub use record::*;
pub use session::*;
pub use spec::*;
pub use streams::*;
