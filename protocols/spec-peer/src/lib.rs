//! A `/noctua/chat/2.0.0` peer written from `SPEC.md` alone, for tests (not published).
//!
//! Nothing here uses `noctua-chat`'s wire format, codec, reject-code mapping, handshake,
//! session, channel or crypto code: the encoder and decoder ([`encode_request`],
//! [`decode_response`], ...), the framing ([`SpecCodec`]), the reject-code table
//! ([`RejectCode`]), CPace over ristretto255, `K_pw`, the transcript hash, the proofs,
//! RSA-OAEP key transport, the HKDF key schedule, AES-256-GCM records, ack tags, rotation
//! with its ephemeral Diffie-Hellman and the safety number are all written here from the
//! spec. The crate is used only to run the honest node under test (its public `Behaviour`
//! API, `Config`, events) and to make the shared node keys ([`node_key`]); [`vectors`] holds
//! the known-answer vectors of SPEC.md's appendix A and the code that computes them.
//!
//! Conformance and hostile-peer tests share it: [`SpecInitiator`] / [`SpecAuthSent`] /
//! [`SpecSession`] hold the protocol state and build honest *or* deliberately wrong
//! messages, [`Harness`] runs a real [`noctua_chat::Behaviour`] swarm and the spec peer's
//! swarm side by side on the memory transport, and [`RawStreams`] / [`run_script`] give a
//! test raw streams to abuse. [`node_key`] and [`spec_rsa_key`] are the RSA keys every
//! integration test shares.
//!
//! Everything is re-exported at the root, so a test can `use noctua_spec_peer::*`.

mod codes;
mod handshake;
mod harness;
mod keys;
pub mod leaks;
mod raw;
mod record;
#[cfg(test)]
mod selftest;
mod session;
mod spec;
mod streams;
pub mod vectors;
mod wire;

pub use codes::*;
pub use handshake::*;
pub use harness::*;
pub use keys::*;
pub use raw::*;
pub use record::*;
pub use session::*;
pub use spec::*;
pub use streams::*;
pub use wire::*;

/// The `rsa` crate the spec peer uses, for tests that read keys (e.g. the node's dumped
/// private key).
pub use rsa;
