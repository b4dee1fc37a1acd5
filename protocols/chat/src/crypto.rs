//! Cryptographic building blocks (SPEC.md §2, §4, §5.5, §5.6): the connection secret and its
//! password key, the CPace group operations on ristretto255, RSA key transport, the HKDF key
//! schedule, HMAC proofs and the safety number.
//!
//! Everything secret here zeroizes itself when dropped and has a `Debug` that prints no
//! secret bytes, so that no log line can carry one by accident. Randomness comes from the
//! operating system's generator only ([`random`]).

use std::fmt;

use curve25519_dalek::constants::RISTRETTO_BASEPOINT_POINT;
use curve25519_dalek::ristretto::{CompressedRistretto, RistrettoPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::IsIdentity;
use hkdf::{Hkdf, HkdfExtract};
use hmac::{Hmac, KeyInit, Mac};
use rand::Rng;
use rand::rand_core::UnwrapErr;
use rand::rngs::SysRng;
use rsa::pkcs1::{DecodeRsaPublicKey, EncodeRsaPublicKey};
use rsa::traits::PublicKeyParts;
use rsa::{PrivateKey, PublicKey};
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

pub(crate) use crate::wire::SHARE_LEN;
use crate::wire::{ACK_TAG_LEN, Role, SESSION_ID_LEN};

type HmacSha256 = Hmac<Sha256>;

/// Length of each side's contribution to the session keys.
pub(crate) const CONTRIBUTION_LEN: usize = 32;

/// RSA modulus sizes a peer may use (SPEC.md §2).
pub const ACCEPTED_RSA_BITS: [usize; 3] = [2048, 3072, 4096];

/// `random(n)` (SPEC.md §2): an array of bytes straight from the operating system's
/// generator (`getrandom`), never from a userspace generator whose state would predict its
/// future output.
///
/// The OS generator does not fail on the systems we run on once the kernel's pool is seeded;
/// if it ever did, drawing key material from anything else would be worse than stopping, so
/// a failure panics (nothing a peer or a user sends can cause it).
pub(crate) fn random<const N: usize>() -> [u8; N] {
    let mut out = [0u8; N];
    UnwrapErr(SysRng).fill_bytes(&mut out);
    out
}

/// `scalar()` (SPEC.md §2): 64 bytes of [`random`] reduced modulo the group order, never zero.
pub(crate) fn scalar() -> Zeroizing<Scalar> {
    loop {
        let wide = Zeroizing::new(random::<64>());
        if let Some(s) = scalar_from_wide(&wide) {
            return s;
        }
    }
}

/// The reduction inside [`scalar`]: 64 bytes modulo the group order, `None` for zero (the
/// known-answer vectors feed it fixed bytes, SPEC.md appendix A).
pub(crate) fn scalar_from_wide(wide: &[u8; 64]) -> Option<Zeroizing<Scalar>> {
    let s = Zeroizing::new(Scalar::from_bytes_mod_order_wide(wide));
    (*s != Scalar::ZERO).then_some(s)
}

/// `dec(share)` (SPEC.md §2): a canonical encoding of a group element other than the
/// identity, or `None` (the caller answers `BAD_KEY`).
pub(crate) fn decode_share(share: &[u8; SHARE_LEN]) -> Option<RistrettoPoint> {
    let point = CompressedRistretto(*share).decompress()?;
    if point.is_identity() {
        return None;
    }
    Some(point)
}

/// `enc(y · P)`.
pub(crate) fn share_of(y: &Scalar, p: &RistrettoPoint) -> [u8; SHARE_LEN] {
    (y * p).compress().to_bytes()
}

/// `enc(x · B)`: a rotation's Diffie-Hellman share (SPEC.md §7).
pub(crate) fn dh_share(x: &Scalar) -> [u8; SHARE_LEN] {
    share_of(x, &RISTRETTO_BASEPOINT_POINT)
}

/// `enc(y · P)` as a shared secret: `None` if it is the identity (SPEC.md §5.1: a failed
/// proof; §7: a failed rotation). The point itself is zeroized before returning.
pub(crate) fn shared_secret(y: &Scalar, p: &RistrettoPoint) -> Option<Zeroizing<[u8; SHARE_LEN]>> {
    let mut z = y * p;
    let identity = z.is_identity();
    let out = Zeroizing::new(z.compress().to_bytes());
    z.zeroize();
    if identity { None } else { Some(out) }
}

/// `H512(x)`.
fn h512(parts: &[&[u8]]) -> Zeroizing<[u8; 64]> {
    let mut h = Sha512::new();
    for p in parts {
        h.update(p);
    }
    Zeroizing::new(h.finalize().into())
}

/// `HKDF-Expand(HKDF-Extract(salt, ikm), info, 32)`.
fn hkdf32(salt: &[u8], ikm: &[&[u8]], info: &[u8]) -> Zeroizing<[u8; 32]> {
    let mut ext = HkdfExtract::<Sha256>::new(Some(salt));
    for part in ikm {
        ext.input_ikm(part);
    }
    let (mut prk, hk) = ext.finalize();
    let mut out = Zeroizing::new([0u8; 32]);
    // 32 bytes is far below HKDF-SHA256's 8160-byte limit.
    let _ = hk.expand(info, &mut out[..]);
    prk.as_mut_slice().zeroize();
    out
}

/// `K_conf = HKDF-Expand(HKDF-Extract(th, enc(Z)), "noctua/chat/2 confirm", 32)` (SPEC.md §5.1).
pub(crate) fn confirm_key(th: &[u8; 32], z: &[u8; SHARE_LEN]) -> Zeroizing<[u8; 32]> {
    hkdf32(th, &[z], b"noctua/chat/2 confirm")
}

/// A connection secret: what a dialer must know to open a session with us.
///
/// It is zeroized on drop, never printed by `Debug`, and compared in constant time. Use
/// [`Secret::expose`] only to show it to the user (the banner, a connection string).
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Secret(String);

/// Why a user-chosen secret is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// The secret is empty.
    #[error("the secret is empty")]
    Empty,
    /// Longer than 256 bytes.
    #[error("the secret is longer than 256 bytes")]
    TooLong,
    /// Contains `:` (the connection-string separator) or whitespace or a control character.
    #[error("the secret may not contain ':', spaces or control characters")]
    BadCharacter,
}

impl Secret {
    /// Longest accepted secret, in bytes.
    pub const MAX_LEN: usize = 256;

    /// Bits of entropy in a generated secret (SPEC.md §4).
    pub const GENERATED_BITS: u32 = 60;

    /// A fresh secret of 60 random bits, as 12 characters of lower-case Crockford base32 in
    /// three groups of four joined by `-` (SPEC.md §4), e.g. `7kq2-m9xd-4htr`: short enough
    /// to read aloud; guessing it is online only, one guess per handshake.
    pub fn generate() -> Self {
        let bits = Zeroizing::new(u64::from_be_bytes(random::<8>()) >> 4);
        let mut out = String::with_capacity(14);
        for i in 0..12 {
            if i > 0 && i % 4 == 0 {
                out.push('-');
            }
            let shift = 5 * (11 - i);
            let index = ((*bits >> shift) & 0x1f) as usize;
            out.push(char::from(CROCKFORD[index]));
        }
        Secret(out)
    }

    /// A rough estimate of the secret's strength in bits: how many guesses, as a power of
    /// two, a guesser that knows how people choose secrets needs. A secret in the generated
    /// form counts [`Self::GENERATED_BITS`]; for others the estimate is generous to short
    /// random strings and hard on words, repeats, runs and common choices. It is for a
    /// warning (SPEC.md §4), not a guarantee.
    pub fn strength_bits(&self) -> u32 {
        strength_bits(&self.0)
    }

    /// A user-chosen secret. It may not be empty, longer than 256 bytes, or contain `:`,
    /// whitespace or control characters (it has to survive a `host:port:secret` string).
    pub fn new(text: impl Into<String>) -> Result<Self, SecretError> {
        let text = text.into();
        let secret = Secret(text);
        if secret.0.is_empty() {
            return Err(SecretError::Empty);
        }
        if secret.0.len() > Self::MAX_LEN {
            return Err(SecretError::TooLong);
        }
        if secret
            .0
            .chars()
            .any(|c| c == ':' || c.is_whitespace() || c.is_control())
        {
            return Err(SecretError::BadCharacter);
        }
        Ok(secret)
    }

    /// The secret's text, to show to the user. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Derives the password key `K_pw` (SPEC.md §4).
    pub(crate) fn auth_key(&self) -> AuthKey {
        let hk = Hkdf::<Sha256>::new(Some(b"noctua/chat/2 secret"), self.0.as_bytes());
        let mut key = [0u8; 32];
        // 32 bytes is far below HKDF-SHA256's 8160-byte limit.
        let _ = hk.expand(b"pake password", &mut key);
        AuthKey(key)
    }
}

impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
    }
}

impl Eq for Secret {}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl std::str::FromStr for Secret {
    type Err = SecretError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Secret::new(s)
    }
}

/// Lower-case Crockford base32 (SPEC.md §4): no `i`, `l`, `o`, `u`.
const CROCKFORD: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

/// Is `text` a secret in the generated form (`xxxx-xxxx-xxxx`, Crockford base32)?
fn is_generated_form(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() == 14
        && b.iter().enumerate().all(|(i, c)| {
            if i == 4 || i == 9 {
                *c == b'-'
            } else {
                CROCKFORD.contains(c)
            }
        })
}

/// Choices so common that a guesser tries them (and their variants with digits) first.
const COMMON: [&str; 24] = [
    "password", "passw0rd", "secret", "letmein", "welcome", "qwerty", "qwertz", "azerty", "abc",
    "abcd", "admin", "login", "hello", "dragon", "monkey", "master", "iloveyou", "sunshine",
    "princess", "football", "baseball", "noctua", "chat", "test",
];

/// See [`Secret::strength_bits`]. Pure, and constant in nothing: it only runs on the user's
/// own secret, on the user's machine.
pub(crate) fn strength_bits(text: &str) -> u32 {
    if is_generated_form(text) {
        return Secret::GENERATED_BITS;
    }
    let lower = text.to_lowercase();
    // A common choice, possibly followed by digits or punctuation: a dictionary hit costs
    // the guesser ~10 bits, each trailing character ~3.3 bits (mostly digits).
    let stem = lower.trim_end_matches(|c: char| !c.is_alphabetic());
    let suffix_chars = lower.chars().count() - stem.chars().count();
    if COMMON.contains(&stem) || (stem.is_empty() && lower.chars().all(|c| c.is_ascii_digit())) {
        let digits_only = stem.is_empty();
        let base = if digits_only { 0.0 } else { 10.0 };
        return (base + 3.33 * suffix_chars as f64).round() as u32;
    }
    // The pool a guesser must search, from the classes of characters used.
    let (mut lower_c, mut upper_c, mut digit_c, mut other_c) = (false, false, false, false);
    for c in text.chars() {
        if c.is_ascii_lowercase() {
            lower_c = true;
        } else if c.is_ascii_uppercase() {
            upper_c = true;
        } else if c.is_ascii_digit() {
            digit_c = true;
        } else {
            other_c = true;
        }
    }
    let pool = 26 * u32::from(lower_c)
        + 26 * u32::from(upper_c)
        + 10 * u32::from(digit_c)
        + 33 * u32::from(other_c);
    let per_char = f64::from(pool.max(2)).log2();
    // A character that repeats the previous one, or continues a run (`abc`, `321`), adds
    // about one bit, not a full character's worth.
    let mut bits = 0.0;
    let mut prev: Option<char> = None;
    for c in text.chars() {
        let cheap = prev.is_some_and(|p| {
            let (p, c) = (p as i64, c as i64);
            (c - p).abs() <= 1
        });
        bits += if cheap { 1.0 } else { per_char };
        prev = Some(c);
    }
    bits.round() as u32
}

/// Unpadded URL-safe base64 (RFC 4648 §5), constant-time.
#[cfg(test)]
fn base64url(bytes: &[u8]) -> String {
    use base64ct::Encoding;
    base64ct::Base64UrlUnpadded::encode_string(bytes)
}

/// `K_pw`: the PAKE's password key derived from a connection secret (SPEC.md §4). It keys
/// nothing directly: it selects the CPace generator ([`AuthKey::generator`]).
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub(crate) struct AuthKey([u8; 32]);

impl AuthKey {
    pub(crate) fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The CPace generator `g = G.hash("noctua/chat/2 cpace generator" || K_pw || hs_id ||
    /// peer(I) || peer(R))` (SPEC.md §5.1), bound to the handshake and both `PeerId`s.
    pub(crate) fn generator(
        &self,
        hs_id: &[u8],
        initiator: &[u8],
        responder: &[u8],
    ) -> Zeroizing<RistrettoPoint> {
        let wide = h512(&[
            b"noctua/chat/2 cpace generator",
            &self.0,
            hs_id,
            &bytes16(initiator),
            &bytes16(responder),
        ]);
        Zeroizing::new(RistrettoPoint::from_uniform_bytes(&wide))
    }
}

impl fmt::Debug for AuthKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuthKey(<redacted>)")
    }
}

pub(crate) fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC accepts keys of any length.
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// Constant-time equality of two byte strings (lengths are not secret).
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// Writes a `bytes16` field (u16 length + bytes) into a hash.
pub(crate) fn hash_bytes16(h: &mut Sha256, v: &[u8]) {
    let len = u16::try_from(v.len()).unwrap_or(u16::MAX);
    h.update(len.to_be_bytes());
    h.update(&v[..usize::from(len)]);
}

/// `bytes16` encoding of a value, for MAC inputs.
pub(crate) fn bytes16(v: &[u8]) -> Vec<u8> {
    let len = u16::try_from(v.len()).unwrap_or(u16::MAX);
    let mut out = Vec::with_capacity(2 + v.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&v[..usize::from(len)]);
    out
}

/// An RSA key pair of this node, with its public half pre-encoded for the wire.
pub struct RsaKeyPair {
    private: PrivateKey,
    public_der: Vec<u8>,
    bits: usize,
    generation: u64,
}

impl fmt::Debug for RsaKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RsaKeyPair")
            .field("bits", &self.bits)
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

/// Why an RSA operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The requested size is not one of [`ACCEPTED_RSA_BITS`].
    #[error("unsupported RSA key size {0} (use 2048, 3072 or 4096)")]
    UnsupportedSize(usize),
    /// Key generation failed.
    #[error("RSA key generation failed")]
    Generation,
    /// A peer's public key is not acceptable.
    #[error("unacceptable RSA public key: {0}")]
    BadPublicKey(&'static str),
    /// Encryption or decryption failed.
    #[error("RSA operation failed")]
    Operation,
}

impl RsaKeyPair {
    /// Generates a key pair (slow: tens to hundreds of milliseconds; run it off the event
    /// loop).
    pub fn generate(bits: usize) -> Result<Self, KeyError> {
        if !ACCEPTED_RSA_BITS.contains(&bits) {
            return Err(KeyError::UnsupportedSize(bits));
        }
        let private = PrivateKey::new(&mut SysRng, bits).map_err(|_| KeyError::Generation)?;
        #[cfg(debug_assertions)]
        insecure_test_key_dump::write(&private);
        Self::from_private(private, 0)
    }

    fn from_private(private: PrivateKey, generation: u64) -> Result<Self, KeyError> {
        let public = private.to_public_key();
        let bits = public.size() * 8;
        let public_der = public
            .to_pkcs1_der()
            .map_err(|_| KeyError::Generation)?
            .as_bytes()
            .to_vec();
        Ok(RsaKeyPair {
            private,
            public_der,
            bits,
            generation,
        })
    }

    pub(crate) fn with_generation(mut self, generation: u64) -> Self {
        self.generation = generation;
        self
    }

    /// Modulus size in bits.
    pub fn bits(&self) -> usize {
        self.bits
    }

    /// How many regenerations preceded this key (0 for the first).
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The public key as sent on the wire (PKCS#1 DER).
    pub fn public_der(&self) -> &[u8] {
        &self.public_der
    }

    /// A short, non-secret fingerprint of the public key (first 8 bytes of its SHA-256, hex).
    pub fn fingerprint(&self) -> String {
        hex(&Sha256::digest(&self.public_der)[..8])
    }

    /// RSA-OAEP-SHA256 decryption of a 32-byte contribution.
    pub(crate) fn unwrap_contribution(
        &self,
        wrapped: &[u8],
    ) -> Result<Zeroizing<[u8; CONTRIBUTION_LEN]>, KeyError> {
        if wrapped.len() != self.private.size() {
            return Err(KeyError::Operation);
        }
        let plain = Zeroizing::new(
            self.private
                .oaep_decrypt_with_rng::<Sha256, _>(&mut SysRng, wrapped)
                .map_err(|_| KeyError::Operation)?,
        );
        if plain.len() != CONTRIBUTION_LEN {
            return Err(KeyError::Operation);
        }
        let mut out = Zeroizing::new([0u8; CONTRIBUTION_LEN]);
        out.copy_from_slice(&plain);
        Ok(out)
    }
}

/// A peer's RSA public key, validated (SPEC.md §2).
#[derive(Clone)]
pub(crate) struct PeerPublicKey {
    key: PublicKey,
    der: Vec<u8>,
}

impl PeerPublicKey {
    pub(crate) fn parse(der: &[u8]) -> Result<Self, KeyError> {
        let key = PublicKey::from_pkcs1_der(der).map_err(|_| KeyError::BadPublicKey("encoding"))?;
        let bits = key.n().as_ref().bit_width_vartime() as usize;
        if !ACCEPTED_RSA_BITS.contains(&bits) {
            return Err(KeyError::BadPublicKey("modulus size"));
        }
        if key.e().bit_width_vartime() != 17 || key.e().as_words()[0] != 65537 {
            return Err(KeyError::BadPublicKey("public exponent"));
        }
        Ok(PeerPublicKey {
            key,
            der: der.to_vec(),
        })
    }

    pub(crate) fn der(&self) -> &[u8] {
        &self.der
    }

    /// RSA-OAEP-SHA256 encryption of a 32-byte contribution.
    pub(crate) fn wrap_contribution(
        &self,
        contribution: &[u8; CONTRIBUTION_LEN],
    ) -> Result<Vec<u8>, KeyError> {
        self.key
            .oaep_encrypt_with_rng::<Sha256, _>(&mut SysRng, contribution)
            .map_err(|_| KeyError::Operation)
    }
}

/// The keys of one epoch (SPEC.md §5.5).
#[derive(Zeroize, ZeroizeOnDrop)]
pub(crate) struct EpochSecrets {
    pub(crate) chain: [u8; 32],
    pub(crate) key_i2r: [u8; 32],
    pub(crate) key_r2i: [u8; 32],
    pub(crate) ack_i: [u8; 32],
    pub(crate) ack_r: [u8; 32],
}

impl EpochSecrets {
    fn expand(hk: &Hkdf<Sha256>, session_id: &[u8; SESSION_ID_LEN], epoch: u32) -> Self {
        let mut okm = Zeroizing::new([0u8; 160]);
        // 160 bytes is far below HKDF-SHA256's limit.
        let _ = hk.expand_multi_info(
            &[
                b"noctua/chat/2 epoch keys",
                session_id,
                &epoch.to_be_bytes(),
            ],
            &mut okm[..],
        );
        let mut s = EpochSecrets {
            chain: [0; 32],
            key_i2r: [0; 32],
            key_r2i: [0; 32],
            ack_i: [0; 32],
            ack_r: [0; 32],
        };
        s.chain.copy_from_slice(&okm[0..32]);
        s.key_i2r.copy_from_slice(&okm[32..64]);
        s.key_r2i.copy_from_slice(&okm[64..96]);
        s.ack_i.copy_from_slice(&okm[96..128]);
        s.ack_r.copy_from_slice(&okm[128..160]);
        s
    }

    /// Epoch 0, from the handshake: `prk_0 = HKDF-Extract(th, enc(Z) || k_i || k_r)`
    /// (SPEC.md §5.5).
    pub(crate) fn initial(
        th: &[u8; 32],
        z: &[u8; SHARE_LEN],
        k_i: &[u8; CONTRIBUTION_LEN],
        k_r: &[u8; CONTRIBUTION_LEN],
        session_id: &[u8; SESSION_ID_LEN],
    ) -> Self {
        Self::derive(th, &[z, k_i, k_r], session_id, 0)
    }

    /// Epoch `new_epoch`, from the previous chain key and a rotation:
    /// `prk = HKDF-Extract(chain_e, enc(Z_e) || k_a || k_b || rth)` (SPEC.md §7).
    pub(crate) fn next(
        &self,
        rth: &[u8; 32],
        z_e: &[u8; SHARE_LEN],
        k_a: &[u8; CONTRIBUTION_LEN],
        k_b: &[u8; CONTRIBUTION_LEN],
        session_id: &[u8; SESSION_ID_LEN],
        new_epoch: u32,
    ) -> Self {
        Self::derive(&self.chain, &[z_e, k_a, k_b, rth], session_id, new_epoch)
    }

    /// `HKDF-Extract(salt, ikm...)` then the epoch expansion. The PRK is overwritten before
    /// it goes (the HMAC states inside `Hkdf` zeroize themselves: `sha2`'s `zeroize` feature).
    fn derive(salt: &[u8], ikm: &[&[u8]], session_id: &[u8; SESSION_ID_LEN], epoch: u32) -> Self {
        let mut ext = HkdfExtract::<Sha256>::new(Some(salt));
        for part in ikm {
            ext.input_ikm(part);
        }
        let (mut prk, hk) = ext.finalize();
        let out = Self::expand(&hk, session_id, epoch);
        prk.as_mut_slice().zeroize();
        out
    }

    /// Zeroizes what a retired epoch no longer needs: the chain key and the send key of
    /// the side with `role` (SPEC.md §7.1).
    pub(crate) fn retire(&mut self, role: Role) {
        self.chain.zeroize();
        match role {
            Role::Initiator => self.key_i2r.zeroize(),
            Role::Responder => self.key_r2i.zeroize(),
        }
    }

    /// The record key of the side with `role`.
    pub(crate) fn record_key(&self, role: Role) -> &[u8; 32] {
        match role {
            Role::Initiator => &self.key_i2r,
            Role::Responder => &self.key_r2i,
        }
    }

    /// The ack key of the side with `role`.
    pub(crate) fn ack_key(&self, role: Role) -> &[u8; 32] {
        match role {
            Role::Initiator => &self.ack_i,
            Role::Responder => &self.ack_r,
        }
    }
}

/// `tag = HMAC(ack_X, "noctua/chat/2 ack" || session_id || epoch || sender || seq)[..16]`.
pub(crate) fn ack_tag(
    ack_key: &[u8; 32],
    session_id: &[u8; SESSION_ID_LEN],
    epoch: u32,
    sender: Role,
    seq: u64,
) -> [u8; ACK_TAG_LEN] {
    let full = hmac(
        ack_key,
        &[
            b"noctua/chat/2 ack",
            session_id,
            &epoch.to_be_bytes(),
            &[sender.to_byte()],
            &seq.to_be_bytes(),
        ],
    );
    let mut tag = [0u8; ACK_TAG_LEN];
    tag.copy_from_slice(&full[..ACK_TAG_LEN]);
    tag
}

/// A session's safety number: 30 digits two people compare out of band (SPEC.md §5.6).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SafetyNumber([u32; 6]);

impl SafetyNumber {
    /// The per-session number (SPEC.md §5.6): from the handshake transcript `th`.
    pub(crate) fn from_transcript(th: &[u8; 32]) -> Self {
        let s = Sha256::new()
            .chain_update(b"noctua/chat/2 safety number")
            .chain_update(th)
            .finalize();
        Self::from_hash(&s)
    }

    /// The identity safety number of two lasting identities (SPEC.md §5.6): from both
    /// `PeerId`s' binary forms, sorted, so the same whichever side computes it, in every
    /// session and across restarts.
    pub fn from_identities(a: &libp2p::PeerId, b: &libp2p::PeerId) -> Self {
        let (a, b) = (bytes16(&a.to_bytes()), bytes16(&b.to_bytes()));
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        let s = Sha256::new()
            .chain_update(b"noctua/chat/2 identity safety number")
            .chain_update(&lo)
            .chain_update(&hi)
            .finalize();
        Self::from_hash(&s)
    }

    fn from_hash(s: &[u8]) -> Self {
        let mut groups = [0u32; 6];
        for (j, g) in groups.iter_mut().enumerate() {
            let mut v: u64 = 0;
            for b in &s[5 * j..5 * j + 5] {
                v = (v << 8) | u64::from(*b);
            }
            *g = (v % 100_000) as u32;
        }
        SafetyNumber(groups)
    }
}

impl fmt::Display for SafetyNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, g) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{g:05}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for SafetyNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SafetyNumber({self})")
    }
}

/// Lower-case hex of a byte string, constant-time (session ids, fingerprints).
pub(crate) fn hex(bytes: &[u8]) -> String {
    base16ct::lower::encode_string(bytes)
}

/// Test hook, present in debug builds only (`cfg(debug_assertions)`; release builds do not
/// contain it): when the environment variable `NOCTUA_INSECURE_TEST_KEY_DUMP` names a
/// directory, every RSA private key this process generates is written there as PKCS#8 DER
/// (`<pid>-<n>.der`), so that tests can look for the node's own private key in its logs and
/// output (`protocols/chat/tests/secrets_in_logs.rs`, `tests/secrets_in_output.rs`). It
/// defeats the point of the key: never set it outside tests.
#[cfg(debug_assertions)]
mod insecure_test_key_dump {
    use std::sync::atomic::{AtomicU64, Ordering};

    /// The variable naming the directory.
    pub(super) const VAR: &str = "NOCTUA_INSECURE_TEST_KEY_DUMP";

    pub(super) fn write(private: &rsa::PrivateKey) {
        static COUNT: AtomicU64 = AtomicU64::new(0);
        let Some(dir) = std::env::var_os(VAR) else {
            return;
        };
        let Ok(der) = rsa::pkcs8::EncodePrivateKey::to_pkcs8_der(private) else {
            return;
        };
        let n = COUNT.fetch_add(1, Ordering::Relaxed);
        let path = std::path::Path::new(&dir).join(format!("{}-{n}.der", std::process::id()));
        // A test that set the variable notices a missing file; nothing else depends on it.
        let _ = std::fs::write(path, der.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_are_three_groups_of_four_crockford_chars() {
        let a = Secret::generate();
        let b = Secret::generate();
        let text = a.expose();
        assert_eq!(text.len(), 14);
        let groups: Vec<&str> = text.split('-').collect();
        assert_eq!(groups.len(), 3);
        for g in &groups {
            assert_eq!(g.len(), 4);
            assert!(g.bytes().all(|c| CROCKFORD.contains(&c)), "{text}");
            assert!(!g.contains(['i', 'l', 'o', 'u']));
        }
        assert_ne!(a, b);
        assert!(Secret::new(text).is_ok());
        assert_eq!(a.strength_bits(), 60);
    }

    #[test]
    fn generated_secrets_carry_sixty_uniform_bits() {
        // Every character position takes every one of the 32 symbols over enough draws
        // (a stuck position or a skewed alphabet would not), including the first, which
        // holds the top bits.
        let mut seen = [[false; 32]; 12];
        for _ in 0..2000 {
            let s = Secret::generate();
            let chars: Vec<u8> = s.expose().bytes().filter(|c| *c != b'-').collect();
            for (i, c) in chars.iter().enumerate() {
                let index = CROCKFORD.iter().position(|x| x == c).unwrap();
                seen[i][index] = true;
            }
        }
        assert!(seen.iter().all(|pos| pos.iter().all(|s| *s)));
    }

    #[test]
    fn a_protocol_1_default_secret_is_still_a_valid_strong_secret() {
        let old = Secret::new("Zm9vYmFyYmF6cXV4MTIzNA").unwrap();
        assert!(old.strength_bits() >= 100);
    }

    #[test]
    fn weak_secrets_are_estimated_weak_and_strong_ones_strong() {
        for weak in [
            "1",
            "1234",
            "123456",
            "aaaaaaaa",
            "abcdefgh",
            "password",
            "Password1",
            "secret",
            "letmein!",
            "qwerty123",
            "hunter2",
            "12345678901",
        ] {
            let bits = Secret::new(weak).unwrap().strength_bits();
            assert!(bits < 40, "{weak:?} estimated at {bits} bits");
        }
        for strong in [
            "7kq2-m9xd-4htr",
            "correct-horse-battery-staple",
            "Tr0ub4dor&3-x9Lq",
            "Zm9vYmFyYmF6cXV4MTIzNA",
        ] {
            let bits = Secret::new(strong).unwrap().strength_bits();
            assert!(bits >= 40, "{strong:?} estimated at {bits} bits");
        }
        // More of the same kind never makes a secret weaker.
        assert!(strength_bits("x7q") < strength_bits("x7q9"));
    }

    #[test]
    fn key_material_comes_from_the_os_generator_only() {
        // No source file of the crate may draw from a userspace generator (rand's
        // thread-local `rng()`, `thread_rng`, `StdRng`...): its state predicts future key
        // material (issue 10, item 4). Tests may, so test modules are cut off first.
        fn visit(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
            for e in std::fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    visit(&p, out);
                } else if p.extension().is_some_and(|x| x == "rs") {
                    out.push(p);
                }
            }
        }
        let mut files = Vec::new();
        visit(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
            &mut files,
        );
        assert!(files.len() > 10);
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap();
            for bad in [
                "rand::rng()",
                "thread_rng",
                "StdRng",
                "SmallRng",
                "ThreadRng",
            ] {
                assert!(!code.contains(bad), "{} uses {bad}", f.display());
            }
        }
        assert!(include_str!("crypto.rs").contains("UnwrapErr(SysRng)"));
    }

    #[test]
    fn scalars_are_never_zero_and_shares_decode() {
        for _ in 0..64 {
            let y = scalar();
            assert_ne!(*y, Scalar::ZERO);
            let share = dh_share(&y);
            assert!(decode_share(&share).is_some());
        }
        assert!(decode_share(&[0; 32]).is_none());
    }

    #[test]
    fn base64url_matches_rfc4648_vectors() {
        assert_eq!(base64url(b""), "");
        assert_eq!(base64url(b"f"), "Zg");
        assert_eq!(base64url(b"fo"), "Zm8");
        assert_eq!(base64url(b"foo"), "Zm9v");
        assert_eq!(base64url(b"foob"), "Zm9vYg");
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
    }

    #[test]
    fn hex_matches_rfc4648_base16_vectors_in_lower_case() {
        for (input, expected) in [
            (&b""[..], ""),
            (b"f", "66"),
            (b"fo", "666f"),
            (b"foo", "666f6f"),
            (b"foob", "666f6f62"),
            (b"fooba", "666f6f6261"),
            (b"foobar", "666f6f626172"),
            (&[0x00, 0xab, 0xff], "00abff"),
        ] {
            assert_eq!(hex(input), expected);
        }
    }

    #[test]
    fn user_secrets_are_validated() {
        assert_eq!(Secret::new(""), Err(SecretError::Empty));
        assert_eq!(Secret::new("a:b"), Err(SecretError::BadCharacter));
        assert_eq!(Secret::new("a b"), Err(SecretError::BadCharacter));
        assert_eq!(Secret::new("a\u{1b}b"), Err(SecretError::BadCharacter));
        assert_eq!(Secret::new("x".repeat(257)), Err(SecretError::TooLong));
        assert!(Secret::new("lab-secret").is_ok());
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let s = Secret::new("hunter2-very-secret").unwrap();
        assert!(!format!("{s:?}").contains("hunter2"));
        assert!(!format!("{:?}", s.auth_key()).contains("hunter2"));
        assert_eq!(format!("{:?}", s.auth_key()), "AuthKey(<redacted>)");
    }

    #[test]
    fn different_secrets_give_different_password_keys() {
        let a = Secret::new("one").unwrap().auth_key();
        let b = Secret::new("two").unwrap().auth_key();
        assert_ne!(a.as_bytes(), b.as_bytes());
        assert_eq!(
            a.as_bytes(),
            Secret::new("one").unwrap().auth_key().as_bytes()
        );
    }

    #[test]
    fn safety_number_has_six_groups_of_five_digits() {
        let sn = SafetyNumber::from_transcript(&[42; 32]).to_string();
        let groups: Vec<_> = sn.split(' ').collect();
        assert_eq!(groups.len(), 6);
        assert!(
            groups
                .iter()
                .all(|g| g.len() == 5 && g.chars().all(|c| c.is_ascii_digit()))
        );
        assert_ne!(sn, SafetyNumber::from_transcript(&[43; 32]).to_string());
    }

    #[test]
    fn identity_safety_number_is_order_independent_and_per_pair() {
        let (a, b, c) = (
            libp2p::PeerId::random(),
            libp2p::PeerId::random(),
            libp2p::PeerId::random(),
        );
        let ab = SafetyNumber::from_identities(&a, &b);
        assert_eq!(ab, SafetyNumber::from_identities(&b, &a));
        assert_ne!(ab, SafetyNumber::from_identities(&a, &c));
        assert_ne!(ab, SafetyNumber::from_identities(&c, &b));
        let text = ab.to_string();
        assert_eq!(text.len(), 35);
        assert!(text.split(' ').all(|g| g.len() == 5));
    }

    #[test]
    fn ct_eq_compares_contents_and_lengths() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
    }
}
