//! Pre-generated RSA keys for unit tests: generating one per test would dominate run time.

use std::sync::{Arc, OnceLock};

use crate::crypto::RsaKeyPair;

static KEYS: [OnceLock<Arc<RsaKeyPair>>; 4] = [const { OnceLock::new() }; 4];

/// The `i`-th test key (2048 bits), generated once per test binary.
pub(crate) fn test_key(i: usize) -> Arc<RsaKeyPair> {
    KEYS[i % KEYS.len()]
        .get_or_init(|| Arc::new(RsaKeyPair::generate(2048).expect("RSA key generation")))
        .clone()
}
