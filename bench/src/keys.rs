//! RSA keys, generated before any timed section (on plain threads, in parallel).

use std::sync::Arc;
use std::time::{Duration, Instant};

use noctua_chat::RsaKeyPair;

/// Generates `count` keys of `bits`; returns them with the wall time it took.
pub fn generate(bits: usize, count: usize) -> (Vec<Arc<RsaKeyPair>>, Duration) {
    let t0 = Instant::now();
    let threads: Vec<_> = (0..count)
        .map(|_| {
            std::thread::spawn(move || {
                Arc::new(RsaKeyPair::generate(bits).expect("RSA key generation"))
            })
        })
        .collect();
    let keys = threads
        .into_iter()
        .map(|t| t.join().expect("key thread"))
        .collect();
    (keys, t0.elapsed())
}
