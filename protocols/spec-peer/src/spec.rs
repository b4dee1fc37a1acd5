//! The constants of the spec and its primitives (§2, §3): hashes, HMAC, HKDF, ristretto255,
//! the fields every transcript is made of, and RSA-OAEP key transport.

use curve25519_dalek::constants::RISTRETTO_BASEPOINT_POINT;
use curve25519_dalek::ristretto::{CompressedRistretto, RistrettoPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::IsIdentity;
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use libp2p::PeerId;
use rand::Rng as _;
use rsa::pkcs1::{DecodeRsaPublicKey, EncodeRsaPublicKey};
use rsa::traits::PublicKeyParts;
use sha2::{Digest, Sha256, Sha512};

/// The libp2p protocol id (§1).
pub const PROTOCOL_ID: &str = "/noctua/chat/2.0.0";
/// `HELLO.version`.
pub const VERSION: u8 = 2;

/// §4 salt of `K_pw`.
pub const LABEL_SECRET: &[u8] = b"noctua/chat/2 secret";
/// §4 info of `K_pw`.
pub const LABEL_PASSWORD: &[u8] = b"pake password";
/// §5 CPace generator prefix.
pub const LABEL_GENERATOR: &[u8] = b"noctua/chat/2 cpace generator";
/// §5.1 transcript hash prefix.
pub const LABEL_HANDSHAKE: &[u8] = b"noctua/chat/2 handshake";
/// §5.1 session id prefix.
pub const LABEL_SESSION_ID: &[u8] = b"noctua/chat/2 session id";
/// §5 `K_conf` info.
pub const LABEL_CONFIRM: &[u8] = b"noctua/chat/2 confirm";
/// §5.2 initiator proof prefix.
pub const LABEL_INITIATOR_PROOF: &[u8] = b"noctua/chat/2 initiator proof";
/// §5.3 responder proof prefix.
pub const LABEL_RESPONDER_PROOF: &[u8] = b"noctua/chat/2 responder proof";
/// §5.5 / §7 HKDF-Expand info prefix.
pub const LABEL_EPOCH_KEYS: &[u8] = b"noctua/chat/2 epoch keys";
/// §5.6 safety number prefix.
pub const LABEL_SAFETY: &[u8] = b"noctua/chat/2 safety number";
/// §5.6 identity safety number prefix.
pub const LABEL_IDENTITY_SAFETY: &[u8] = b"noctua/chat/2 identity safety number";
/// §3.4 associated data prefix (20 bytes).
pub const LABEL_RECORD: &[u8] = b"noctua/chat/2 record";
/// §6.2 ack tag prefix.
pub const LABEL_ACK: &[u8] = b"noctua/chat/2 ack";
/// §7 rekey transcript prefix.
pub const LABEL_REKEY: &[u8] = b"noctua/chat/2 rekey";

/// §3.1: the largest frame any receiver may allow (16 MiB); the spec peer reads up to it.
pub const MAX_FRAME_CEILING: usize = 16 * 1024 * 1024;
/// §3.1 default `max_frame_size`.
pub const DEFAULT_MAX_FRAME: usize = 262_144;
/// §3.5 default `max_message_size`.
pub const DEFAULT_MAX_MESSAGE: usize = 65_536;
/// §6.2 default replay window.
pub const DEFAULT_WINDOW: u64 = 256;
/// §6.1: no record uses a `seq` at or above this; §6.2 step 4 refuses one.
pub const SEQ_LIMIT: u64 = 1 << 32;
/// §2 accepted moduli.
pub const ACCEPTED_BITS: [usize; 3] = [2048, 3072, 4096];

// ---------------------------------------------------------------------------------------------
// Primitives (§2, §3).
// ---------------------------------------------------------------------------------------------

/// `H(x)` over the concatenation of `parts`.
pub fn h(parts: &[&[u8]]) -> [u8; 32] {
    let mut d = Sha256::new();
    for p in parts {
        d.update(p);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(&d.finalize());
    out
}

fn hmac_instance(key: &[u8], parts: &[&[u8]]) -> Hmac<Sha256> {
    let mut m = <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(key).expect("HMAC takes any key");
    for p in parts {
        m.update(p);
    }
    m
}

/// `HMAC(k, x)` over the concatenation of `parts`.
pub fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(&hmac_instance(key, parts).finalize().into_bytes());
    out
}

/// Constant-time check of a (possibly truncated, leftmost bytes) HMAC.
pub fn hmac_verify(key: &[u8], parts: &[&[u8]], tag: &[u8]) -> bool {
    let m = hmac_instance(key, parts);
    if tag.len() == 32 {
        m.verify_slice(tag).is_ok()
    } else {
        m.verify_truncated_left(tag).is_ok()
    }
}

/// `HKDF-Extract(salt, ikm)` (RFC 5869, SHA-256).
pub fn hkdf_extract(salt: &[u8], ikm: &[u8]) -> [u8; 32] {
    let (prk, _) = Hkdf::<Sha256>::extract(Some(salt), ikm);
    let mut out = [0u8; 32];
    out.copy_from_slice(&prk);
    out
}

/// `HKDF-Expand(prk, info, L)` (RFC 5869, SHA-256).
pub fn hkdf_expand(prk: &[u8], info: &[u8], len: usize) -> Vec<u8> {
    let hk = Hkdf::<Sha256>::from_prk(prk).expect("PRK is 32 bytes");
    let mut okm = vec![0u8; len];
    hk.expand(info, &mut okm).expect("length within 255*32");
    okm
}

/// `random(n)`.
pub fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    rand::rng().fill_bytes(&mut b);
    b
}

/// `bytes16(x)`: `u16` length then the bytes.
pub fn bytes16(x: &[u8]) -> Vec<u8> {
    let len = u16::try_from(x.len()).expect("bytes16 field over 65535 bytes");
    let mut v = len.to_be_bytes().to_vec();
    v.extend_from_slice(x);
    v
}

/// `peer(X)`: `bytes16` of the binary `PeerId`.
pub fn peer_field(p: &PeerId) -> Vec<u8> {
    bytes16(&p.to_bytes())
}

/// `K_pw = HKDF-Expand(HKDF-Extract("noctua/chat/2 secret", secret bytes), "pake password", 32)`
/// (§4); "secret bytes" is the secret's text (as in `host:port:secret`) in UTF-8.
pub fn k_pw(secret: &[u8]) -> [u8; 32] {
    let prk = hkdf_extract(LABEL_SECRET, secret);
    let okm = hkdf_expand(&prk, LABEL_PASSWORD, 32);
    let mut out = [0u8; 32];
    out.copy_from_slice(&okm);
    out
}

/// `H512(x)`: SHA-512 over the concatenation of `parts`.
pub fn h512(parts: &[&[u8]]) -> [u8; 64] {
    let mut d = Sha512::new();
    for p in parts {
        d.update(p);
    }
    let mut out = [0u8; 64];
    out.copy_from_slice(&d.finalize());
    out
}

/// `G.hash(x)`: RFC 9496 element derivation from the 64 bytes `H512(x)`.
pub fn g_hash(parts: &[&[u8]]) -> RistrettoPoint {
    RistrettoPoint::from_uniform_bytes(&h512(parts))
}

/// The CPace generator of §5:
/// `G.hash("noctua/chat/2 cpace generator" || K_pw || hs_id || peer(I) || peer(R))`.
pub fn cpace_generator(
    k_pw: &[u8; 32],
    hs_id: &[u8; 16],
    peer_i: &[u8],
    peer_r: &[u8],
) -> RistrettoPoint {
    g_hash(&[
        LABEL_GENERATOR,
        k_pw,
        hs_id,
        &bytes16(peer_i),
        &bytes16(peer_r),
    ])
}

/// `scalar()` from 64 given bytes: reduced modulo the group order. `None` for zero (the
/// spec draws again).
pub fn scalar_from(wide: &[u8; 64]) -> Option<Scalar> {
    let s = Scalar::from_bytes_mod_order_wide(wide);
    (s != Scalar::ZERO).then_some(s)
}

/// `scalar()`: `random(64)` reduced; a zero scalar is drawn again.
pub fn scalar() -> Scalar {
    loop {
        if let Some(s) = scalar_from(&random::<64>()) {
            return s;
        }
    }
}

/// `enc(P)`: the 32-byte canonical encoding.
pub fn enc(p: &RistrettoPoint) -> [u8; 32] {
    p.compress().to_bytes()
}

/// `dec(share)`: refuses a non-canonical encoding and the identity (both `BAD_KEY`).
pub fn dec(share: &[u8; 32]) -> Option<RistrettoPoint> {
    let p = CompressedRistretto(*share).decompress()?;
    (!p.is_identity()).then_some(p)
}

/// `enc(s · P)`, or `None` if the product is the identity (a failed proof in the handshake).
pub fn dh(s: &Scalar, p: &RistrettoPoint) -> Option<[u8; 32]> {
    let z = s * p;
    (!z.is_identity()).then(|| enc(&z))
}

/// `B`, the ristretto255 base point.
pub fn base_point() -> RistrettoPoint {
    RISTRETTO_BASEPOINT_POINT
}

/// Parses and validates an RSA public key per §2 (PKCS#1 DER, 2048/3072/4096 bits, e = 65537).
pub fn parse_public_key(der: &[u8]) -> Result<rsa::PublicKey, String> {
    let key = rsa::PublicKey::from_pkcs1_der(der).map_err(|e| format!("bad PKCS#1 DER: {e}"))?;
    let n = key.n_bytes();
    let bits = match n.first() {
        Some(top) => n.len() * 8 - top.leading_zeros() as usize,
        None => 0,
    };
    if !ACCEPTED_BITS.contains(&bits) {
        return Err(format!("modulus of {bits} bits"));
    }
    if *key.e_bytes() != [1u8, 0, 1] {
        return Err("public exponent is not 65537".into());
    }
    Ok(key)
}

/// PKCS#1 `RSAPublicKey` DER of a private key's public half.
pub fn public_der(key: &rsa::PrivateKey) -> Vec<u8> {
    key.to_public_key()
        .to_pkcs1_der()
        .expect("encodable key")
        .as_bytes()
        .to_vec()
}

/// `OAEP(pub, m)`: RSAES-OAEP, SHA-256 for hash and MGF1, empty label.
pub fn oaep_wrap(public_der: &[u8], m: &[u8]) -> Result<Vec<u8>, String> {
    let key = parse_public_key(public_der)?;
    key.oaep_encrypt_with_rng::<Sha256, _>(&mut rand::rng(), m)
        .map_err(|e| format!("OAEP encryption failed: {e}"))
}

/// Inverse of [`oaep_wrap`]; the result must be exactly 32 bytes (§5.2).
pub fn oaep_unwrap(key: &rsa::PrivateKey, c: &[u8]) -> Result<[u8; 32], String> {
    let m = key
        .oaep_decrypt::<Sha256>(c)
        .map_err(|e| format!("OAEP decryption failed: {e}"))?;
    <[u8; 32]>::try_from(m.as_slice()).map_err(|_| format!("unwrapped {} bytes, not 32", m.len()))
}
