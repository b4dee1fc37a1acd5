//! Pre-generated RSA keys for unit tests: generating one per test would dominate run time.
//!
//! Integration tests use the shared helper of the `noctua-spec-peer` dev crate instead. Unit
//! tests cannot: they are built against this crate compiled for testing, whose `RsaKeyPair`
//! is a different type from the one the dev crate (built against the plain library) returns.

use std::sync::{Arc, OnceLock};

use crate::crypto::RsaKeyPair;

static KEYS: [OnceLock<Arc<RsaKeyPair>>; 4] = [const { OnceLock::new() }; 4];

/// The `i`-th test key (2048 bits), generated once per test binary.
pub(crate) fn test_key(i: usize) -> Arc<RsaKeyPair> {
    KEYS[i % KEYS.len()]
        .get_or_init(|| Arc::new(RsaKeyPair::generate(2048).expect("RSA key generation")))
        .clone()
}
