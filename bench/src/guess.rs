//! `noctua-bench guess`: the CPU ceiling of online guessing. How many wrong-secret guesses
//! (a `HELLO` and an `AUTH` with a wrong proof, each from a fresh peer) one node's protocol
//! core refuses per second on one core: the PAKE's hash-to-group and two scalar
//! multiplications, HKDF, HMAC, the RSA public-key parse, the peer bookkeeping. The
//! transport (Noise, streams) is left out, so a real node's ceiling is lower; rate limits
//! are off here (they would stop the measurement long before the CPU does).
//!
//! SECURITY.md uses the figure to bound what many addresses together can try.

use std::sync::Arc;
use std::time::{Duration, Instant};

use libp2p::PeerId;
use noctua_chat::fuzzing::{Node, NodeAction, RsaKeyPair, cpace_share};
use noctua_chat::wire::{self, Auth, Hello, Request, Response};
use noctua_chat::{Config, RejectCode, Secret};

use crate::stats::percentile;

/// Measures `n` refused guesses and prints one line.
pub(crate) fn run(n: usize) {
    let key = Arc::new(RsaKeyPair::generate(2048).expect("RSA key generation"));
    let attacker_key = RsaKeyPair::generate(2048).expect("RSA key generation");
    let local = PeerId::random();
    let real = Secret::new("the-real-secret").expect("valid");
    let guess = Secret::new("a-wrong-guess").expect("valid");
    let start = Instant::now();
    let never = Duration::from_secs(1 << 30);
    let config = Config::new(real)
        .with_rsa_key(key)
        .with_rsa_regenerate_every(None)
        .with_peer_auth_limit(usize::MAX, Duration::from_secs(1), never)
        .with_ip_auth_limit(usize::MAX, Duration::from_secs(1), never);
    let mut node = Node::new(local, config, start);
    let _ = node.take_actions();
    // The attacker's work (its identities, its shares) happens before the clock starts.
    let hellos: Vec<(PeerId, Hello)> = (0..n)
        .map(|i| {
            let peer = PeerId::random();
            let hs_id = [(i % 251) as u8; 16];
            let mut seed = [7u8; 64];
            seed[..8].copy_from_slice(&(i as u64).to_be_bytes());
            let hello = Hello {
                version: wire::VERSION,
                hs_id,
                nonce: [1; 32],
                public_key: attacker_key.public_der().to_vec(),
                share: cpace_share(&guess, &hs_id, &peer, &local, &seed),
            };
            (peer, hello)
        })
        .collect();
    let mut samples = Vec::with_capacity(n);
    let mut refused = 0usize;
    let t_all = Instant::now();
    for (i, (peer, hello)) in hellos.into_iter().enumerate() {
        let conn = i + 1;
        let now = start + Duration::from_millis(i as u64);
        node.connected(peer, conn, now);
        let t0 = Instant::now();
        node.on_request(peer, conn, Request::Hello(hello.clone()), 2 * i as u64, now);
        let challenge = node.take_actions().into_iter().find_map(|a| match a {
            NodeAction::Respond {
                response: Response::Challenge(ch),
                ..
            } => Some(ch),
            _ => None,
        });
        let Some(ch) = challenge else {
            continue;
        };
        let auth = Auth {
            hs_id: ch.hs_id,
            wrapped: vec![0; 256],
            mac: [0; 32],
        };
        node.on_request(peer, conn, Request::Auth(auth), 2 * i as u64 + 1, now);
        let refusal = node.take_actions().into_iter().any(|a| {
            matches!(
                a,
                NodeAction::Respond {
                    response: Response::Reject {
                        code: RejectCode::AuthFailed,
                        ..
                    },
                    ..
                }
            )
        });
        samples.push(t0.elapsed().as_secs_f64() * 1e6);
        refused += usize::from(refusal);
        node.disconnected(peer, conn, 0, now);
        let _ = node.take_actions();
    }
    let total = t_all.elapsed();
    samples.sort_by(f64::total_cmp);
    let (p50, p99) = (percentile(&samples, 0.5), percentile(&samples, 0.99));
    println!(
        "guess: {refused}/{n} wrong-secret HELLO+AUTH refused as AUTH_FAILED; per guess p50 \
         {p50:.1} µs, p99 {p99:.1} µs; {:.0} guesses/s on one core at p50 (whole loop: {:.0}/s)",
        1e6 / p50,
        n as f64 / total.as_secs_f64()
    );
}
