//! RSA keys for tests, generated once per test binary and shared by every test in it:
//! generating a 2048-bit key takes long enough to dominate a test that made its own.
//!
//! This is the one test-key helper of the workspace's integration tests (swarm, hostile,
//! conformance and log tests). Unit tests inside `noctua-chat` cannot use it (they are built
//! against their own copy of the crate, whose `RsaKeyPair` is another type), so they keep
//! `noctua-chat`'s internal `test_keys`.

use std::sync::{Arc, OnceLock};

use noctua_chat::RsaKeyPair;

/// How many distinct node keys there are; [`node_key`] wraps around after that.
pub const NODE_KEYS: usize = 8;

/// The `i`-th node key (2048 bits, made through the crate's public API), generated on first
/// use. `node_key(i)` and `node_key(i + NODE_KEYS)` are the same key.
pub fn node_key(i: usize) -> Arc<RsaKeyPair> {
    static KEYS: [OnceLock<Arc<RsaKeyPair>>; NODE_KEYS] = [const { OnceLock::new() }; NODE_KEYS];
    KEYS[i % NODE_KEYS]
        .get_or_init(|| Arc::new(RsaKeyPair::generate(2048).expect("RSA key generation")))
        .clone()
}

/// The spec peer's own 2048-bit key, as the `rsa` crate's type: the spec peer computes its
/// side of the protocol without the crate's crypto.
pub fn spec_rsa_key() -> Arc<rsa::PrivateKey> {
    static KEY: OnceLock<Arc<rsa::PrivateKey>> = OnceLock::new();
    KEY.get_or_init(|| {
        Arc::new(rsa::PrivateKey::new(&mut rand::rng(), 2048).expect("RSA key generation"))
    })
    .clone()
}
