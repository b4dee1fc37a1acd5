//! A `/noctua/chat/1.0.0` client written from `SPEC.md` alone.
//!
//! Nothing here uses the crate's handshake, session, channel or crypto code: the transcript
//! hash, `K_auth`, the proofs, RSA-OAEP key transport, the HKDF key schedule, AES-256-GCM
//! records, ack tags, rotation and the safety number are all computed below from the
//! formulas of the spec. Only `noctua_chat::wire` (message structs and their encoding) and
//! `noctua_chat::Codec` (the framing) are borrowed from the crate, plus the public
//! `Behaviour` API to run the honest node under test.
//!
//! The module is meant to be reused by hostile-peer tests: [`SpecInitiator`] /
//! [`SpecAuthSent`] / [`SpecSession`] hold the protocol state and build honest *or*
//! deliberately wrong messages, [`Harness`] runs a real [`noctua_chat::Behaviour`] swarm and
//! the spec peer's swarm side by side on the memory transport.

#![allow(dead_code)]

use std::collections::{HashMap, HashSet, VecDeque};
use std::io;
use std::sync::{Arc, OnceLock};
use std::task::Poll;
use std::time::Duration;

use aes_gcm::aead::AeadInOut;
use aes_gcm::{Aes256Gcm, KeyInit as _};
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, StreamExt};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport, ResponseChannel};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{PeerId, StreamProtocol, Swarm};
use libp2p_swarm_test::SwarmExt;
use noctua_chat::wire::{
    self, Ack, Auth, AuthOk, Challenge, ChatMessage, Content, Hello, Record, Request, Response,
    Role,
};
use noctua_chat::{Config, RejectCode, RsaKeyPair};
use rand::Rng as _;
use rsa::pkcs1::{DecodeRsaPublicKey, EncodeRsaPublicKey};
use rsa::traits::PublicKeyParts;
use sha2::{Digest, Sha256};

// ---------------------------------------------------------------------------------------------
// Constants of the spec.
// ---------------------------------------------------------------------------------------------

/// §4 salt of `K_auth`.
pub const LABEL_SECRET: &[u8] = b"noctua/chat/1 secret";
/// §4 info of `K_auth`.
pub const LABEL_AUTH: &[u8] = b"auth";
/// §5.1 transcript hash prefix.
pub const LABEL_HANDSHAKE: &[u8] = b"noctua/chat/1 handshake";
/// §5.1 session id prefix.
pub const LABEL_SESSION_ID: &[u8] = b"noctua/chat/1 session id";
/// §5.2 initiator proof prefix.
pub const LABEL_INITIATOR_PROOF: &[u8] = b"noctua/chat/1 initiator proof";
/// §5.3 responder proof prefix.
pub const LABEL_RESPONDER_PROOF: &[u8] = b"noctua/chat/1 responder proof";
/// §5.5 / §7 HKDF-Expand info prefix.
pub const LABEL_EPOCH_KEYS: &[u8] = b"noctua/chat/1 epoch keys";
/// §5.6 safety number prefix.
pub const LABEL_SAFETY: &[u8] = b"noctua/chat/1 safety number";
/// §3.4 associated data prefix (20 bytes).
pub const LABEL_RECORD: &[u8] = b"noctua/chat/1 record";
/// §6.2 ack tag prefix.
pub const LABEL_ACK: &[u8] = b"noctua/chat/1 ack";
/// §7 rekey transcript prefix.
pub const LABEL_REKEY: &[u8] = b"noctua/chat/1 rekey";

/// §3.1 default `max_frame_size`.
pub const DEFAULT_MAX_FRAME: usize = 262_144;
/// §3.5 default `max_message_size`.
pub const DEFAULT_MAX_MESSAGE: usize = 65_536;
/// §6.2 default replay window.
pub const DEFAULT_WINDOW: u64 = 256;
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

/// `K_auth = HKDF-Expand(HKDF-Extract("noctua/chat/1 secret", secret bytes), "auth", 32)` (§4).
/// "secret bytes" is read as the secret's text (the string of `host:port:secret`) in UTF-8.
pub fn k_auth(secret: &[u8]) -> [u8; 32] {
    let prk = hkdf_extract(LABEL_SECRET, secret);
    let okm = hkdf_expand(&prk, LABEL_AUTH, 32);
    let mut out = [0u8; 32];
    out.copy_from_slice(&okm);
    out
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

/// A 2048-bit RSA key for spec peers, generated once per test binary.
pub fn spec_rsa_key() -> Arc<rsa::PrivateKey> {
    static KEY: OnceLock<Arc<rsa::PrivateKey>> = OnceLock::new();
    KEY.get_or_init(|| Arc::new(rsa::PrivateKey::new(&mut rand::rng(), 2048).expect("RSA keygen")))
        .clone()
}

/// The honest node's RSA key, generated once per test binary.
pub fn node_rsa_key() -> Arc<RsaKeyPair> {
    static KEY: OnceLock<Arc<RsaKeyPair>> = OnceLock::new();
    KEY.get_or_init(|| Arc::new(RsaKeyPair::generate(2048).expect("RSA keygen")))
        .clone()
}

// ---------------------------------------------------------------------------------------------
// Records (§3.4).
// ---------------------------------------------------------------------------------------------

/// The 29-byte record header: `session_id || u32 epoch || u8 sender || u64 seq`.
pub fn record_header(session_id: &[u8; 16], epoch: u32, sender: u8, seq: u64) -> [u8; 29] {
    let mut hd = [0u8; 29];
    hd[..16].copy_from_slice(session_id);
    hd[16..20].copy_from_slice(&epoch.to_be_bytes());
    hd[20] = sender;
    hd[21..29].copy_from_slice(&seq.to_be_bytes());
    hd
}

/// The 12-byte nonce: `sender u8 || 00 00 00 || seq u64`.
pub fn record_nonce(sender: u8, seq: u64) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[0] = sender;
    n[4..].copy_from_slice(&seq.to_be_bytes());
    n
}

/// Seals `plain` into a record with exactly the given header fields and key: the building
/// block of honest and deliberately wrong records alike.
pub fn seal_raw(
    key: &[u8; 32],
    session_id: [u8; 16],
    epoch: u32,
    sender: Role,
    seq: u64,
    plain: &[u8],
) -> Record {
    let header = record_header(&session_id, epoch, sender.to_byte(), seq);
    let aad = [LABEL_RECORD, &header[..]].concat();
    let nonce = aes_gcm::aead::Nonce::<Aes256Gcm>::from(record_nonce(sender.to_byte(), seq));
    let cipher = Aes256Gcm::new_from_slice(key).expect("32-byte key");
    let mut buf = plain.to_vec();
    let tag = cipher
        .encrypt_inout_detached(&nonce, &aad, buf.as_mut_slice().into())
        .expect("AES-GCM seal");
    buf.extend_from_slice(&tag);
    Record {
        session_id,
        epoch,
        sender,
        seq,
        sealed: buf,
    }
}

/// Opens a record with `key`, using the header as found in the record.
pub fn open_raw(key: &[u8; 32], rec: &Record) -> Result<Vec<u8>, String> {
    if rec.sealed.len() < 16 {
        return Err("sealed shorter than the tag".into());
    }
    let header = record_header(&rec.session_id, rec.epoch, rec.sender.to_byte(), rec.seq);
    let aad = [LABEL_RECORD, &header[..]].concat();
    let nonce =
        aes_gcm::aead::Nonce::<Aes256Gcm>::from(record_nonce(rec.sender.to_byte(), rec.seq));
    let cipher = Aes256Gcm::new_from_slice(key).expect("32-byte key");
    let split = rec.sealed.len() - 16;
    let mut buf = rec.sealed[..split].to_vec();
    let tag = aes_gcm::aead::Tag::<Aes256Gcm>::try_from(&rec.sealed[split..]).expect("16 bytes");
    cipher
        .decrypt_inout_detached(&nonce, &aad, buf.as_mut_slice().into(), &tag)
        .map_err(|_| "AEAD authentication failed".to_string())?;
    Ok(buf)
}

/// A copy of `rec` with one ciphertext bit flipped (or the tag's, for an empty plaintext).
pub fn tampered(rec: &Record) -> Record {
    let mut r = rec.clone();
    r.sealed[0] ^= 0x01;
    r
}

// ---------------------------------------------------------------------------------------------
// Keys of an epoch (§5.5, §7).
// ---------------------------------------------------------------------------------------------

/// The 160 bytes of an epoch's key material, split per §5.5.
#[derive(Clone)]
pub struct EpochKeys {
    /// `chain_e`.
    pub chain: [u8; 32],
    /// Seals records with `sender = 0`.
    pub key_i2r: [u8; 32],
    /// Seals records with `sender = 1`.
    pub key_r2i: [u8; 32],
    /// Key of acks sent by the initiator.
    pub ack_i: [u8; 32],
    /// Key of acks sent by the responder.
    pub ack_r: [u8; 32],
}

impl EpochKeys {
    /// Splits `okm` (160 bytes).
    pub fn from_okm(okm: &[u8]) -> Self {
        assert_eq!(okm.len(), 160);
        let part = |i: usize| {
            let mut k = [0u8; 32];
            k.copy_from_slice(&okm[32 * i..32 * (i + 1)]);
            k
        };
        EpochKeys {
            chain: part(0),
            key_i2r: part(1),
            key_r2i: part(2),
            ack_i: part(3),
            ack_r: part(4),
        }
    }

    /// The direction key of records written by `sender`.
    pub fn seal_key(&self, sender: Role) -> &[u8; 32] {
        match sender {
            Role::Initiator => &self.key_i2r,
            Role::Responder => &self.key_r2i,
        }
    }

    /// The ack key of acks sent by `acker`.
    pub fn ack_key(&self, acker: Role) -> &[u8; 32] {
        match acker {
            Role::Initiator => &self.ack_i,
            Role::Responder => &self.ack_r,
        }
    }
}

/// `okm = HKDF-Expand(prk, "noctua/chat/1 epoch keys" || session_id || u32(epoch), 160)`.
pub fn epoch_keys(prk: &[u8; 32], session_id: &[u8; 16], epoch: u32) -> EpochKeys {
    let info = [LABEL_EPOCH_KEYS, &session_id[..], &epoch.to_be_bytes()].concat();
    EpochKeys::from_okm(&hkdf_expand(prk, &info, 160))
}

/// The §6.2 ack tag: `HMAC(ack_X, "noctua/chat/1 ack" || sid || u32 epoch || u8 sender || u64 seq)[0..16]`.
pub fn ack_tag(
    ack_key: &[u8; 32],
    session_id: &[u8; 16],
    epoch: u32,
    sender: u8,
    seq: u64,
) -> [u8; 16] {
    let full = hmac(
        ack_key,
        &[
            LABEL_ACK,
            session_id,
            &epoch.to_be_bytes(),
            &[sender],
            &seq.to_be_bytes(),
        ],
    );
    let mut t = [0u8; 16];
    t.copy_from_slice(&full[..16]);
    t
}

/// The §5.6 safety number of a transcript hash.
pub fn safety_number(th: &[u8; 32]) -> String {
    let s = h(&[LABEL_SAFETY, th]);
    (0..6)
        .map(|j| {
            let mut v: u64 = 0;
            for b in &s[5 * j..5 * j + 5] {
                v = (v << 8) | u64::from(*b);
            }
            format!("{:05}", v % 100_000)
        })
        .collect::<Vec<_>>()
        .join(" ")
}

// ---------------------------------------------------------------------------------------------
// Handshake, initiator side (§5).
// ---------------------------------------------------------------------------------------------

/// The initiator before `CHALLENGE`.
pub struct SpecInitiator {
    /// Our `PeerId` (I).
    pub local: PeerId,
    /// The responder's `PeerId` (R).
    pub remote: PeerId,
    /// `K_auth` of the secret we use.
    pub k_auth: [u8; 32],
    /// Our RSA key.
    pub rsa: Arc<rsa::PrivateKey>,
    /// `pub_i` as sent.
    pub pub_i: Vec<u8>,
    /// `hs_id`.
    pub hs_id: [u8; 16],
    /// `nonce_i`.
    pub nonce_i: [u8; 32],
    /// Display name we send in our `PROFILE`.
    pub name: String,
}

impl SpecInitiator {
    /// Fresh handshake state with `secret` (the responder's connection secret, as text bytes).
    pub fn new(local: PeerId, remote: PeerId, secret: &[u8], rsa: Arc<rsa::PrivateKey>) -> Self {
        SpecInitiator {
            local,
            remote,
            k_auth: k_auth(secret),
            pub_i: public_der(&rsa),
            rsa,
            hs_id: random(),
            nonce_i: random(),
            name: "Spec".into(),
        }
    }

    /// `HELLO(version=1, hs_id, nonce_i, pub_i)`.
    pub fn hello(&self) -> Request {
        self.hello_with_version(1)
    }

    /// `HELLO` with any version byte.
    pub fn hello_with_version(&self, version: u8) -> Request {
        Request::Hello(Hello {
            version,
            hs_id: self.hs_id,
            nonce: self.nonce_i,
            public_key: self.pub_i.clone(),
        })
    }

    /// Processes `CHALLENGE`: computes `th`, `session_id`, picks `k_i`, builds `AUTH`.
    pub fn on_challenge(self, ch: &Challenge) -> Result<SpecAuthSent, String> {
        if ch.hs_id != self.hs_id {
            return Err("CHALLENGE for another hs_id".into());
        }
        parse_public_key(&ch.public_key).map_err(|e| format!("pub_r refused: {e}"))?;
        let th = transcript_hash(
            &self.hs_id,
            &self.local,
            &self.remote,
            &self.pub_i,
            &ch.public_key,
            &self.nonce_i,
            &ch.nonce,
        );
        let session_id = session_id_of(&th);
        let k_i: [u8; 32] = random();
        let wrapped_i = oaep_wrap(&ch.public_key, &k_i)?;
        let mac_i = hmac(
            &self.k_auth,
            &[LABEL_INITIATOR_PROOF, &th, &bytes16(&wrapped_i)],
        );
        Ok(SpecAuthSent {
            init: self,
            pub_r: ch.public_key.clone(),
            nonce_r: ch.nonce,
            th,
            session_id,
            k_i,
            wrapped_i,
            mac_i,
        })
    }
}

/// `th` of §5.1.
pub fn transcript_hash(
    hs_id: &[u8; 16],
    peer_i: &PeerId,
    peer_r: &PeerId,
    pub_i: &[u8],
    pub_r: &[u8],
    nonce_i: &[u8; 32],
    nonce_r: &[u8; 32],
) -> [u8; 32] {
    h(&[
        LABEL_HANDSHAKE,
        hs_id,
        &peer_field(peer_i),
        &peer_field(peer_r),
        &bytes16(pub_i),
        &bytes16(pub_r),
        nonce_i,
        nonce_r,
    ])
}

/// `session_id = H("noctua/chat/1 session id" || th)[0..16]`.
pub fn session_id_of(th: &[u8; 32]) -> [u8; 16] {
    let d = h(&[LABEL_SESSION_ID, th]);
    let mut sid = [0u8; 16];
    sid.copy_from_slice(&d[..16]);
    sid
}

/// The initiator after `AUTH`.
pub struct SpecAuthSent {
    /// The state before.
    pub init: SpecInitiator,
    /// `pub_r`.
    pub pub_r: Vec<u8>,
    /// `nonce_r`.
    pub nonce_r: [u8; 32],
    /// Transcript hash.
    pub th: [u8; 32],
    /// Session id.
    pub session_id: [u8; 16],
    /// `k_i`.
    pub k_i: [u8; 32],
    /// `wrapped_i`.
    pub wrapped_i: Vec<u8>,
    /// `mac_i`.
    pub mac_i: [u8; 32],
}

impl SpecAuthSent {
    /// `AUTH(hs_id, wrapped_i, mac_i)`.
    pub fn auth(&self) -> Request {
        Request::Auth(Auth {
            hs_id: self.init.hs_id,
            wrapped: self.wrapped_i.clone(),
            mac: self.mac_i,
        })
    }

    /// `ABORT(hs_id, code)`.
    pub fn abort(&self, code: u16) -> Request {
        Request::Abort {
            hs_id: self.init.hs_id,
            code,
        }
    }

    /// The `mac_r` an honest responder must send for `wrapped_r`.
    pub fn expected_mac_r(&self, wrapped_r: &[u8]) -> [u8; 32] {
        hmac(
            &self.init.k_auth,
            &[
                LABEL_RESPONDER_PROOF,
                &self.th,
                &bytes16(&self.wrapped_i),
                &bytes16(wrapped_r),
            ],
        )
    }

    /// Processes `AUTH_OK`: verifies `mac_r` (constant time), unwraps `k_r`, derives the
    /// epoch-0 keys and opens R's `PROFILE` record (key confirmation).
    pub fn on_auth_ok(self, ok: &AuthOk) -> Result<SpecSession, String> {
        if ok.hs_id != self.init.hs_id {
            return Err("AUTH_OK for another hs_id".into());
        }
        let verified = hmac_verify(
            &self.init.k_auth,
            &[
                LABEL_RESPONDER_PROOF,
                &self.th,
                &bytes16(&self.wrapped_i),
                &bytes16(&ok.wrapped),
            ],
            &ok.mac,
        );
        if !verified {
            return Err("mac_r does not verify".into());
        }
        let k_r = oaep_unwrap(&self.init.rsa, &ok.wrapped)?;
        let ikm = [&self.k_i[..], &k_r[..], &self.init.k_auth[..]].concat();
        let prk_0 = hkdf_extract(&self.th, &ikm);
        let keys = epoch_keys(&prk_0, &self.session_id, 0);
        let first_keys = keys.clone();

        let mut session = SpecSession {
            role: Role::Initiator,
            local: self.init.local,
            remote: self.init.remote,
            th: self.th,
            session_id: self.session_id,
            k_auth: self.init.k_auth,
            rsa: self.init.rsa.clone(),
            local_pub: self.init.pub_i.clone(),
            remote_pub: self.pub_r.clone(),
            name: self.init.name.clone(),
            remote_name: None,
            auth_ok_record: Some(ok.record.clone()),
            epoch: 0,
            keys: HashMap::from([(0, keys)]),
            send_seq: HashMap::new(),
            recv: HashMap::new(),
            confirmed: true,
            rekey_out: None,
            rekey_in: None,
            contributions: vec![self.k_i, k_r],
            key_history: vec![(0, first_keys)],
        };
        let rec = &ok.record;
        if rec.session_id != session.session_id
            || rec.epoch != 0
            || rec.sender != Role::Responder
            || rec.seq != 0
        {
            return Err(format!("AUTH_OK record has an unexpected header: {rec:?}"));
        }
        match session.open(rec)? {
            Content::Profile { name } => session.remote_name = Some(name),
            other => {
                return Err(format!(
                    "AUTH_OK record is {}, not PROFILE",
                    other.kind_name()
                ));
            }
        }
        Ok(session)
    }
}

// ---------------------------------------------------------------------------------------------
// Handshake, responder side (§5), for nodes that open a session to the spec peer.
// ---------------------------------------------------------------------------------------------

struct PendingHandshake {
    remote: PeerId,
    hs_id: [u8; 16],
    th: [u8; 32],
    pub_i: Vec<u8>,
    pub_r: Vec<u8>,
}

/// The responder: answers `HELLO` and `AUTH` with our own connection secret.
pub struct SpecResponder {
    /// Our `PeerId` (R).
    pub local: PeerId,
    /// `K_auth` of our secret.
    pub k_auth: [u8; 32],
    /// Our RSA key.
    pub rsa: Arc<rsa::PrivateKey>,
    /// Display name in our `PROFILE`.
    pub name: String,
    pending: Option<PendingHandshake>,
}

impl SpecResponder {
    /// A responder whose connection secret is `secret` (text bytes).
    pub fn new(local: PeerId, secret: &[u8], rsa: Arc<rsa::PrivateKey>) -> Self {
        SpecResponder {
            local,
            k_auth: k_auth(secret),
            rsa,
            name: "Spec".into(),
            pending: None,
        }
    }

    /// Answers a `HELLO` from `remote` (§5.1).
    pub fn on_hello(&mut self, remote: PeerId, hello: &Hello) -> Response {
        let reject = |code| Response::Reject { code, detail: 0 };
        if hello.version != 1 {
            return reject(RejectCode::UnsupportedVersion);
        }
        if parse_public_key(&hello.public_key).is_err() {
            return reject(RejectCode::BadKey);
        }
        let nonce_r: [u8; 32] = random();
        let pub_r = public_der(&self.rsa);
        let th = transcript_hash(
            &hello.hs_id,
            &remote,
            &self.local,
            &hello.public_key,
            &pub_r,
            &hello.nonce,
            &nonce_r,
        );
        self.pending = Some(PendingHandshake {
            remote,
            hs_id: hello.hs_id,
            th,
            pub_i: hello.public_key.clone(),
            pub_r: pub_r.clone(),
        });
        Response::Challenge(Challenge {
            hs_id: hello.hs_id,
            nonce: nonce_r,
            public_key: pub_r,
        })
    }

    /// Answers an `AUTH` (§5.2, §5.3). On success also returns our (unconfirmed) session.
    pub fn on_auth(&mut self, remote: PeerId, auth: &Auth) -> (Response, Option<SpecSession>) {
        let reject = |code| (Response::Reject { code, detail: 0 }, None);
        let Some(p) = self
            .pending
            .take_if(|p| p.remote == remote && p.hs_id == auth.hs_id)
        else {
            return reject(RejectCode::UnknownHandshake);
        };
        let ok = hmac_verify(
            &self.k_auth,
            &[LABEL_INITIATOR_PROOF, &p.th, &bytes16(&auth.wrapped)],
            &auth.mac,
        );
        if !ok {
            return reject(RejectCode::AuthFailed);
        }
        let Ok(k_i) = oaep_unwrap(&self.rsa, &auth.wrapped) else {
            return reject(RejectCode::DecryptFailed);
        };
        let k_r: [u8; 32] = random();
        let Ok(wrapped_r) = oaep_wrap(&p.pub_i, &k_r) else {
            return reject(RejectCode::BadKey);
        };
        let mac_r = hmac(
            &self.k_auth,
            &[
                LABEL_RESPONDER_PROOF,
                &p.th,
                &bytes16(&auth.wrapped),
                &bytes16(&wrapped_r),
            ],
        );
        let session_id = session_id_of(&p.th);
        let ikm = [&k_i[..], &k_r[..], &self.k_auth[..]].concat();
        let prk_0 = hkdf_extract(&p.th, &ikm);
        let keys = epoch_keys(&prk_0, &session_id, 0);
        let first_keys = keys.clone();
        let mut session = SpecSession {
            role: Role::Responder,
            local: self.local,
            remote,
            th: p.th,
            session_id,
            k_auth: self.k_auth,
            rsa: self.rsa.clone(),
            local_pub: p.pub_r,
            remote_pub: p.pub_i,
            name: self.name.clone(),
            remote_name: None,
            auth_ok_record: None,
            epoch: 0,
            keys: HashMap::from([(0, keys)]),
            send_seq: HashMap::new(),
            recv: HashMap::new(),
            confirmed: false,
            rekey_out: None,
            rekey_in: None,
            contributions: vec![k_i, k_r],
            key_history: vec![(0, first_keys)],
        };
        let name = self.name.clone();
        let record = session.seal(&Content::Profile { name });
        session.auth_ok_record = Some(record.clone());
        let response = Response::AuthOk(AuthOk {
            hs_id: auth.hs_id,
            wrapped: wrapped_r,
            mac: mac_r,
            record,
        });
        (response, Some(session))
    }
}

// ---------------------------------------------------------------------------------------------
// A session (§6, §7).
// ---------------------------------------------------------------------------------------------

#[derive(Default)]
struct RecvWindow {
    highest: Option<u64>,
    seen: HashSet<u64>,
}

/// Our side of a rotation we started (A in §7), between `REKEY_INIT` and `REKEY_DONE`.
pub struct RekeyOut {
    /// `e+1`.
    pub new_epoch: u32,
    /// `nonce_a`.
    pub nonce_a: [u8; 32],
    /// `pub_a`.
    pub pub_a: Vec<u8>,
}

/// Our side of a rotation the peer started (B in §7), between `REKEY_REPLY` and `COMMIT`.
struct RekeyIn {
    new_epoch: u32,
    nonce_a: [u8; 32],
    pub_a: Vec<u8>,
    nonce_b: [u8; 32],
    pub_b: Vec<u8>,
    k_b: [u8; 32],
    wrapped_b: Vec<u8>,
}

/// What [`SpecSession::answer`] did with an inbound record.
#[derive(Debug)]
pub struct Answered {
    /// The response to send back.
    pub response: Response,
    /// The content, if the record opened.
    pub content: Option<Content>,
}

/// An established session as the spec describes it.
pub struct SpecSession {
    /// Our role.
    pub role: Role,
    /// Our `PeerId`.
    pub local: PeerId,
    /// The peer's.
    pub remote: PeerId,
    /// `th`.
    pub th: [u8; 32],
    /// `session_id`.
    pub session_id: [u8; 16],
    /// `K_auth`.
    pub k_auth: [u8; 32],
    /// Our RSA key.
    pub rsa: Arc<rsa::PrivateKey>,
    /// Our public key as sent.
    pub local_pub: Vec<u8>,
    /// The peer's latest public key.
    pub remote_pub: Vec<u8>,
    /// Our display name.
    pub name: String,
    /// The peer's display name from its `PROFILE`.
    pub remote_name: Option<String>,
    /// The responder's `PROFILE` record from `AUTH_OK` (handy to reflect back).
    pub auth_ok_record: Option<Record>,
    /// The epoch we send in.
    pub epoch: u32,
    /// Keys of every epoch derived so far.
    pub keys: HashMap<u32, EpochKeys>,
    send_seq: HashMap<u32, u64>,
    recv: HashMap<u32, RecvWindow>,
    /// Whether the peer's `PROFILE` was opened (for the initiator: the one in `AUTH_OK`; for
    /// the responder: the initiator's confirmation record, §5.4).
    pub confirmed: bool,
    /// A rotation we started.
    pub rekey_out: Option<RekeyOut>,
    rekey_in: Option<RekeyIn>,
    /// Every RSA-transported contribution this side has known, in order: the handshake's
    /// `k_i` and `k_r`, then each rotation's `k_a` and `k_b` (for tests that look for secrets).
    pub contributions: Vec<[u8; 32]>,
    /// The keys of every epoch ever derived, never pruned (unlike [`SpecSession::keys`]).
    pub key_history: Vec<(u32, EpochKeys)>,
}

impl SpecSession {
    /// The peer's role.
    pub fn peer_role(&self) -> Role {
        self.role.peer()
    }

    /// The safety number (§5.6).
    pub fn safety_number(&self) -> String {
        safety_number(&self.th)
    }

    /// Keys of `epoch`.
    pub fn epoch_keys(&self, epoch: u32) -> &EpochKeys {
        self.keys
            .get(&epoch)
            .unwrap_or_else(|| panic!("no keys for epoch {epoch}"))
    }

    /// The next `seq` we would use in `epoch`, without taking it.
    pub fn peek_seq(&self, epoch: u32) -> u64 {
        self.send_seq.get(&epoch).copied().unwrap_or(0)
    }

    /// Takes the next `seq` of `epoch`.
    pub fn take_seq(&mut self, epoch: u32) -> u64 {
        let s = self.send_seq.entry(epoch).or_insert(0);
        let v = *s;
        *s += 1;
        v
    }

    /// Moves our send counter of `epoch` forward so that the next record uses `seq`.
    pub fn skip_to(&mut self, epoch: u32, seq: u64) {
        self.send_seq.insert(epoch, seq);
    }

    /// Seals `content` as our record with the given epoch and seq (honest header).
    pub fn seal_at(&self, epoch: u32, seq: u64, content: &Content) -> Record {
        let key = self.epoch_keys(epoch).seal_key(self.role);
        seal_raw(
            key,
            self.session_id,
            epoch,
            self.role,
            seq,
            &wire::encode_content(content),
        )
    }

    /// Seals `content` in the current epoch with the next `seq`.
    pub fn seal(&mut self, content: &Content) -> Record {
        let epoch = self.epoch;
        let seq = self.take_seq(epoch);
        self.seal_at(epoch, seq, content)
    }

    /// Our `PROFILE` confirmation record (§5.4: epoch 0, seq 0).
    pub fn confirmation(&mut self) -> Record {
        let name = self.name.clone();
        self.seal(&Content::Profile { name })
    }

    /// A `CHAT` record carrying `texts` (ids start at `first_id`).
    pub fn chat(&mut self, first_id: u64, texts: &[&str]) -> Record {
        let content = chat_content(first_id, texts);
        self.seal(&content)
    }

    /// Opens a record written by the peer (its direction key of the record's epoch) and
    /// parses the plaintext. Does not check or update the replay window.
    pub fn open(&self, rec: &Record) -> Result<Content, String> {
        let keys = self
            .keys
            .get(&rec.epoch)
            .ok_or_else(|| format!("no keys for epoch {}", rec.epoch))?;
        let plain = open_raw(keys.seal_key(rec.sender), rec)?;
        wire::decode_content(&plain, DEFAULT_MAX_MESSAGE).map_err(|e| format!("plaintext: {e}"))
    }

    /// The tag the peer must put in its `ACK` of our record `rec`.
    pub fn expected_ack_tag(&self, rec: &Record) -> [u8; 16] {
        ack_tag(
            self.epoch_keys(rec.epoch).ack_key(self.peer_role()),
            &rec.session_id,
            rec.epoch,
            rec.sender.to_byte(),
            rec.seq,
        )
    }

    /// Verifies the peer's `ACK` of our record `rec` (fields and tag, constant time).
    pub fn verify_ack(&self, rec: &Record, ack: &Ack) -> Result<(), String> {
        if ack.session_id != rec.session_id || ack.epoch != rec.epoch || ack.seq != rec.seq {
            return Err(format!(
                "ACK for (epoch {}, seq {}) does not match record (epoch {}, seq {})",
                ack.epoch, ack.seq, rec.epoch, rec.seq
            ));
        }
        let keys = self
            .keys
            .get(&rec.epoch)
            .ok_or_else(|| format!("no keys for epoch {}", rec.epoch))?;
        let ok = hmac_verify(
            keys.ack_key(self.peer_role()),
            &[
                LABEL_ACK,
                &rec.session_id,
                &rec.epoch.to_be_bytes(),
                &[rec.sender.to_byte()],
                &rec.seq.to_be_bytes(),
            ],
            &ack.tag,
        );
        if ok {
            Ok(())
        } else {
            Err("ACK tag does not verify".into())
        }
    }

    /// Our `ACK` of the peer's record `rec`.
    pub fn make_ack(&self, rec: &Record) -> Ack {
        Ack {
            session_id: rec.session_id,
            epoch: rec.epoch,
            seq: rec.seq,
            tag: ack_tag(
                self.epoch_keys(rec.epoch).ack_key(self.role),
                &rec.session_id,
                rec.epoch,
                rec.sender.to_byte(),
                rec.seq,
            ),
        }
    }

    fn reject(code: RejectCode) -> Answered {
        Answered {
            response: Response::Reject { code, detail: 0 },
            content: None,
        }
    }

    /// Receives a `RECORD` request from the peer the way §6.2 says, and builds the answer:
    /// `ACK`, a `REPLY` for rotation messages (we act as B of §7), or a `REJECT`.
    pub fn answer(&mut self, rec: &Record) -> Answered {
        if rec.session_id != self.session_id {
            return Self::reject(RejectCode::UnknownSession);
        }
        if rec.sender == self.role {
            return Self::reject(RejectCode::Reflected);
        }
        if !self.keys.contains_key(&rec.epoch) {
            return Self::reject(RejectCode::UnknownEpoch);
        }
        let window = self.recv.entry(rec.epoch).or_default();
        if let Some(hi) = window.highest
            && rec.seq + (DEFAULT_WINDOW - 1) < hi
        {
            return Self::reject(RejectCode::OutOfWindow);
        }
        if window.seen.contains(&rec.seq) {
            return Self::reject(RejectCode::Replayed);
        }
        let plain = match open_raw(self.epoch_keys(rec.epoch).seal_key(rec.sender), rec) {
            Ok(p) => p,
            Err(_) => return Self::reject(RejectCode::DecryptFailed),
        };
        let window = self.recv.entry(rec.epoch).or_default();
        window.seen.insert(rec.seq);
        window.highest = Some(window.highest.map_or(rec.seq, |h| h.max(rec.seq)));
        let content = match wire::decode_content(&plain, DEFAULT_MAX_MESSAGE) {
            Ok(c) => c,
            Err(e) => return Self::reject(e.reject_code()),
        };
        if !self.confirmed {
            // §5.4: the responder's session becomes ACTIVE on the initiator's PROFILE; until
            // then nothing else is allowed.
            return match content {
                Content::Profile { name } => {
                    self.confirmed = true;
                    self.remote_name = Some(name.clone());
                    Answered {
                        response: Response::Ack(self.make_ack(rec)),
                        content: Some(Content::Profile { name }),
                    }
                }
                other => Answered {
                    response: Response::Reject {
                        code: RejectCode::BadState,
                        detail: 0,
                    },
                    content: Some(other),
                },
            };
        }
        // A valid record of a new epoch installs it (§7, "or on any valid record of e+1").
        if rec.epoch > self.epoch && self.rekey_out.is_some() {
            self.epoch = rec.epoch;
            self.rekey_out = None;
        }
        let response = match &content {
            Content::RekeyInit {
                new_epoch,
                nonce,
                public_key,
            } => match self.on_rekey_init(rec.epoch, *new_epoch, nonce, public_key) {
                Ok(reply) => Response::Reply(reply),
                Err(code) => Response::Reject { code, detail: 0 },
            },
            Content::RekeyCommit { new_epoch, wrapped } => {
                match self.on_rekey_commit(*new_epoch, wrapped) {
                    Ok(done) => Response::Reply(done),
                    Err(code) => Response::Reject { code, detail: 0 },
                }
            }
            Content::RekeyReply { .. } | Content::RekeyDone { .. } | Content::Profile { .. } => {
                Response::Reject {
                    code: RejectCode::BadState,
                    detail: 0,
                }
            }
            Content::Chat(_) | Content::Ping | Content::Close { .. } => {
                Response::Ack(self.make_ack(rec))
            }
        };
        Answered {
            response,
            content: Some(content),
        }
    }

    // -- rotation (§7) ------------------------------------------------------------------------

    /// `rth` of §7.
    #[allow(clippy::too_many_arguments)]
    pub fn rekey_transcript(
        &self,
        new_epoch: u32,
        role_a: Role,
        pub_a: &[u8],
        pub_b: &[u8],
        nonce_a: &[u8; 32],
        nonce_b: &[u8; 32],
        wrapped_a: &[u8],
        wrapped_b: &[u8],
    ) -> [u8; 32] {
        h(&[
            LABEL_REKEY,
            &self.session_id,
            &new_epoch.to_be_bytes(),
            &[role_a.to_byte()],
            &bytes16(pub_a),
            &bytes16(pub_b),
            nonce_a,
            nonce_b,
            &bytes16(wrapped_a),
            &bytes16(wrapped_b),
        ])
    }

    /// Keys of `e+1` from `chain_e`, `k_a`, `k_b` and `rth`.
    pub fn derive_next(&self, e: u32, k_a: &[u8; 32], k_b: &[u8; 32], rth: &[u8; 32]) -> EpochKeys {
        let chain = self.epoch_keys(e).chain;
        let ikm = [&k_a[..], &k_b[..], &rth[..]].concat();
        let prk = hkdf_extract(&chain, &ikm);
        epoch_keys(&prk, &self.session_id, e + 1)
    }

    /// Starts a rotation to `epoch + 1` (we are A): the `REKEY_INIT` record, sealed in the
    /// current epoch.
    pub fn rekey_init(&mut self) -> Record {
        let new_epoch = self.epoch + 1;
        let nonce_a: [u8; 32] = random();
        let pub_a = self.local_pub.clone();
        let rec = self.seal(&Content::RekeyInit {
            new_epoch,
            nonce: nonce_a,
            public_key: pub_a.clone(),
        });
        self.rekey_out = Some(RekeyOut {
            new_epoch,
            nonce_a,
            pub_a,
        });
        rec
    }

    /// Processes B's `REPLY(REKEY_REPLY)`: derives `e+1` (receive-ready) and returns the
    /// `REKEY_COMMIT` record, sealed in epoch `e`.
    pub fn rekey_commit(&mut self, reply: &Record) -> Result<Record, String> {
        let out = self.rekey_out.as_ref().ok_or("no rotation in progress")?;
        let e = out.new_epoch - 1;
        if reply.epoch != e
            || reply.sender != self.peer_role()
            || reply.session_id != self.session_id
        {
            return Err(format!(
                "REKEY_REPLY record has an unexpected header: {reply:?}"
            ));
        }
        let (nonce_b, pub_b, wrapped_b) = match self.open(reply)? {
            Content::RekeyReply {
                new_epoch,
                nonce,
                public_key,
                wrapped,
            } if new_epoch == out.new_epoch => (nonce, public_key, wrapped),
            other => {
                return Err(format!(
                    "expected REKEY_REPLY({}), got {other:?}",
                    out.new_epoch
                ));
            }
        };
        let k_b = oaep_unwrap(&self.rsa, &wrapped_b)?;
        let k_a: [u8; 32] = random();
        let wrapped_a = oaep_wrap(&pub_b, &k_a)?;
        let rth = self.rekey_transcript(
            out.new_epoch,
            self.role,
            &out.pub_a,
            &pub_b,
            &out.nonce_a,
            &nonce_b,
            &wrapped_a,
            &wrapped_b,
        );
        let new_epoch = out.new_epoch;
        let keys = self.derive_next(e, &k_a, &k_b, &rth);
        self.contributions.extend([k_a, k_b]);
        self.key_history.push((new_epoch, keys.clone()));
        self.keys.insert(new_epoch, keys);
        self.remote_pub = pub_b;
        Ok(self.seal(&Content::RekeyCommit {
            new_epoch,
            wrapped: wrapped_a,
        }))
    }

    /// Processes B's `REPLY(REKEY_DONE)`, sealed in `e+1`: installs `e+1`.
    pub fn rekey_done(&mut self, reply: &Record) -> Result<(), String> {
        let out = self.rekey_out.as_ref().ok_or("no rotation in progress")?;
        if reply.epoch != out.new_epoch || reply.sender != self.peer_role() {
            return Err(format!(
                "REKEY_DONE record has an unexpected header: {reply:?}"
            ));
        }
        match self.open(reply)? {
            Content::RekeyDone { new_epoch } if new_epoch == out.new_epoch => {}
            other => {
                return Err(format!(
                    "expected REKEY_DONE({}), got {other:?}",
                    out.new_epoch
                ));
            }
        }
        self.install(out.new_epoch);
        Ok(())
    }

    fn install(&mut self, epoch: u32) {
        self.epoch = epoch;
        self.rekey_out = None;
        // Only one previous epoch is kept (§7.1).
        self.keys.retain(|e, _| *e + 1 >= epoch);
    }

    fn on_rekey_init(
        &mut self,
        e: u32,
        new_epoch: u32,
        nonce_a: &[u8; 32],
        pub_a: &[u8],
    ) -> Result<Record, RejectCode> {
        if new_epoch != self.epoch + 1 || e != self.epoch {
            return Err(RejectCode::BadState);
        }
        if self.rekey_out.is_some() {
            // Simultaneous rotation (§7.1): the session's initiator keeps its own.
            if self.role == Role::Initiator {
                return Err(RejectCode::RotationConflict);
            }
            self.rekey_out = None;
        }
        parse_public_key(pub_a).map_err(|_| RejectCode::BadKey)?;
        let k_b: [u8; 32] = random();
        let wrapped_b = oaep_wrap(pub_a, &k_b).map_err(|_| RejectCode::BadKey)?;
        let nonce_b: [u8; 32] = random();
        let pub_b = self.local_pub.clone();
        let reply = self.seal(&Content::RekeyReply {
            new_epoch,
            nonce: nonce_b,
            public_key: pub_b.clone(),
            wrapped: wrapped_b.clone(),
        });
        self.rekey_in = Some(RekeyIn {
            new_epoch,
            nonce_a: *nonce_a,
            pub_a: pub_a.to_vec(),
            nonce_b,
            pub_b,
            k_b,
            wrapped_b,
        });
        Ok(reply)
    }

    fn on_rekey_commit(&mut self, new_epoch: u32, wrapped_a: &[u8]) -> Result<Record, RejectCode> {
        let Some(st) = self.rekey_in.take_if(|st| st.new_epoch == new_epoch) else {
            return Err(RejectCode::BadState);
        };
        let k_a = oaep_unwrap(&self.rsa, wrapped_a).map_err(|_| RejectCode::DecryptFailed)?;
        let rth = self.rekey_transcript(
            new_epoch,
            self.peer_role(),
            &st.pub_a,
            &st.pub_b,
            &st.nonce_a,
            &st.nonce_b,
            wrapped_a,
            &st.wrapped_b,
        );
        let keys = self.derive_next(new_epoch - 1, &k_a, &st.k_b, &rth);
        self.contributions.extend([k_a, st.k_b]);
        self.key_history.push((new_epoch, keys.clone()));
        self.keys.insert(new_epoch, keys);
        self.remote_pub = st.pub_a;
        self.install(new_epoch);
        Ok(self.seal(&Content::RekeyDone { new_epoch }))
    }
}

/// A `CHAT` content with `texts` (ids `first_id..`, `sent_at_ms` = now).
pub fn chat_content(first_id: u64, texts: &[&str]) -> Content {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    Content::Chat(
        texts
            .iter()
            .enumerate()
            .map(|(i, t)| ChatMessage {
                id: first_id + i as u64,
                sent_at_ms: now,
                text: (*t).to_owned(),
            })
            .collect(),
    )
}

// ---------------------------------------------------------------------------------------------
// Raw bytes on a stream.
// ---------------------------------------------------------------------------------------------

/// A codec that writes a request as exactly the given bytes (no framing added) and reads the
/// response frame per §3.1 itself. Outbound only.
#[derive(Debug, Clone, Default)]
pub struct RawCodec;

/// Reads one §3.1 frame (`u32 length || body`) and decodes it as a response.
async fn read_response_frame<T: AsyncRead + Unpin + Send>(io: &mut T) -> io::Result<Response> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len == 0 || len > noctua_chat::MAX_FRAME_CEILING {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("response frame of {len} bytes"),
        ));
    }
    let mut body = Vec::new();
    let n = io.take(len as u64).read_to_end(&mut body).await?;
    if n < len {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    wire::decode_response(&body).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

impl request_response::Codec for RawCodec {
    type Protocol = StreamProtocol;
    type Request = Vec<u8>;
    type Response = Response;

    async fn read_request<T>(&mut self, _: &StreamProtocol, _: &mut T) -> io::Result<Vec<u8>>
    where
        T: AsyncRead + Unpin + Send,
    {
        Err(io::Error::other("the raw codec is outbound only"))
    }

    async fn read_response<T>(&mut self, _: &StreamProtocol, io: &mut T) -> io::Result<Response>
    where
        T: AsyncRead + Unpin + Send,
    {
        read_response_frame(io).await
    }

    async fn write_request<T>(
        &mut self,
        _: &StreamProtocol,
        io: &mut T,
        req: Vec<u8>,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        io.write_all(&req).await
    }

    async fn write_response<T>(
        &mut self,
        _: &StreamProtocol,
        _: &mut T,
        _: Response,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        Err(io::Error::other("the raw codec is outbound only"))
    }
}

/// `u32 length || body`.
pub fn frame(body: &[u8]) -> Vec<u8> {
    let mut f = (body.len() as u32).to_be_bytes().to_vec();
    f.extend_from_slice(body);
    f
}

// ---------------------------------------------------------------------------------------------
// The spec peer's swarm, and a harness that runs it against an honest node.
// ---------------------------------------------------------------------------------------------

/// The spec peer's behaviour: the protocol through the crate's framing codec, plus an
/// outbound-only channel that writes arbitrary bytes.
#[derive(NetworkBehaviour)]
pub struct SpecBehaviour {
    /// Well-formed requests and responses.
    pub chat: request_response::Behaviour<noctua_chat::Codec>,
    /// Hand-made bytes.
    pub raw: request_response::Behaviour<RawCodec>,
}

impl SpecBehaviour {
    /// A spec peer behaviour.
    pub fn new() -> Self {
        let cfg = request_response::Config::default().with_request_timeout(Duration::from_secs(25));
        SpecBehaviour {
            chat: request_response::Behaviour::with_codec(
                noctua_chat::Codec::new(noctua_chat::MAX_FRAME_CEILING),
                [(noctua_chat::PROTOCOL, ProtocolSupport::Full)],
                cfg.clone(),
            ),
            raw: request_response::Behaviour::with_codec(
                RawCodec,
                [(noctua_chat::PROTOCOL, ProtocolSupport::Outbound)],
                cfg,
            ),
        }
    }
}

impl Default for SpecBehaviour {
    fn default() -> Self {
        Self::new()
    }
}

enum Step {
    Node(SwarmEvent<noctua_chat::Event>),
    Spec(SwarmEvent<SpecBehaviourEvent>),
}

/// An honest node (`noctua_chat::Behaviour`) and a spec peer, connected over the memory
/// transport, driven together.
pub struct Harness {
    /// The node under test.
    pub node: Swarm<noctua_chat::Behaviour>,
    /// The spec peer.
    pub spec: Swarm<SpecBehaviour>,
    /// The node's `PeerId`.
    pub node_id: PeerId,
    /// The spec peer's `PeerId`.
    pub spec_id: PeerId,
    /// Node behaviour events not consumed yet, in order.
    pub node_events: VecDeque<noctua_chat::Event>,
    /// Requests the node sent to the spec peer, not answered yet.
    pub inbound: VecDeque<(Request, ResponseChannel<Response>)>,
    /// Everything else that happened, for failure messages.
    pub log: Vec<String>,
    responses: HashMap<OutboundRequestId, Result<Response, String>>,
    raw_responses: HashMap<OutboundRequestId, Result<Response, String>>,
    flip: bool,
}

/// The node's default configuration for tests: `secret`, a display name and the cached key.
pub fn node_config(secret: noctua_chat::Secret) -> Config {
    Config::new(secret)
        .with_name("Node")
        .with_rsa_key(node_rsa_key())
}

impl Harness {
    /// Starts a node with `config`, a spec peer, and connects the spec peer to the node.
    pub async fn new(config: Config) -> Harness {
        let mut node = Swarm::new_ephemeral_tokio(|kp| {
            noctua_chat::Behaviour::new(kp.public().to_peer_id(), config)
        });
        let mut spec = Swarm::new_ephemeral_tokio(|_| SpecBehaviour::new());
        node.listen().with_memory_addr_external().await;
        spec.connect(&mut node).await;
        let node_id = *node.local_peer_id();
        let spec_id = *spec.local_peer_id();
        Harness {
            node,
            spec,
            node_id,
            spec_id,
            node_events: VecDeque::new(),
            inbound: VecDeque::new(),
            log: Vec::new(),
            responses: HashMap::new(),
            raw_responses: HashMap::new(),
            flip: false,
        }
    }

    /// The node's behaviour.
    pub fn behaviour(&mut self) -> &mut noctua_chat::Behaviour {
        self.node.behaviour_mut()
    }

    /// A fresh handshake as initiator towards the node with `secret` (its text).
    pub fn initiator(&self, secret: &str) -> SpecInitiator {
        SpecInitiator::new(
            self.spec_id,
            self.node_id,
            secret.as_bytes(),
            spec_rsa_key(),
        )
    }

    async fn step(&mut self) -> Step {
        let node = &mut self.node;
        let spec = &mut self.spec;
        let flip = &mut self.flip;
        futures::future::poll_fn(|cx| {
            *flip = !*flip;
            for first in [*flip, !*flip] {
                if first {
                    if let Poll::Ready(Some(e)) = node.poll_next_unpin(cx) {
                        return Poll::Ready(Step::Node(e));
                    }
                } else if let Poll::Ready(Some(e)) = spec.poll_next_unpin(cx) {
                    return Poll::Ready(Step::Spec(e));
                }
            }
            Poll::Pending
        })
        .await
    }

    /// Polls both swarms once and files what came out.
    pub async fn pump(&mut self) {
        match self.step().await {
            Step::Node(SwarmEvent::Behaviour(e)) => {
                self.log.push(format!("node: {e:?}"));
                self.node_events.push_back(e);
            }
            Step::Node(e) => self.log.push(format!("node swarm: {e:?}")),
            Step::Spec(SwarmEvent::Behaviour(SpecBehaviourEvent::Chat(e))) => match e {
                request_response::Event::Message { message, .. } => match message {
                    request_response::Message::Request {
                        request, channel, ..
                    } => {
                        self.log.push(format!("spec: inbound {request:?}"));
                        self.inbound.push_back((request, channel));
                    }
                    request_response::Message::Response {
                        request_id,
                        response,
                    } => {
                        self.log.push(format!("spec: response {response:?}"));
                        self.responses.insert(request_id, Ok(response));
                    }
                },
                request_response::Event::OutboundFailure {
                    request_id, error, ..
                } => {
                    self.log.push(format!("spec: outbound failure {error}"));
                    self.responses.insert(request_id, Err(error.to_string()));
                }
                other => self.log.push(format!("spec: {other:?}")),
            },
            Step::Spec(SwarmEvent::Behaviour(SpecBehaviourEvent::Raw(e))) => match e {
                request_response::Event::Message {
                    message:
                        request_response::Message::Response {
                            request_id,
                            response,
                        },
                    ..
                } => {
                    self.log.push(format!("spec raw: response {response:?}"));
                    self.raw_responses.insert(request_id, Ok(response));
                }
                request_response::Event::OutboundFailure {
                    request_id, error, ..
                } => {
                    self.log.push(format!("spec raw: outbound failure {error}"));
                    self.raw_responses
                        .insert(request_id, Err(error.to_string()));
                }
                other => self.log.push(format!("spec raw: {other:?}")),
            },
            Step::Spec(e) => self.log.push(format!("spec swarm: {e:?}")),
        }
    }

    /// Sends `req` from the spec peer to the node and waits for the response.
    pub async fn request(&mut self, req: Request) -> Result<Response, String> {
        let id = self
            .spec
            .behaviour_mut()
            .chat
            .send_request(&self.node_id, req);
        loop {
            if let Some(r) = self.responses.remove(&id) {
                return r;
            }
            self.pump().await;
        }
    }

    /// Sends `req` and expects a response of a given shape, panicking with the log otherwise.
    pub async fn expect<T>(
        &mut self,
        req: Request,
        what: &str,
        f: impl FnOnce(Response) -> Option<T>,
    ) -> T {
        let resp = self.request(req).await;
        let shown = format!("{resp:?}");
        match resp.ok().and_then(f) {
            Some(t) => t,
            None => panic!(
                "expected {what}, got {shown}\nlog:\n{}",
                self.log.join("\n")
            ),
        }
    }

    /// Sends a `HELLO` and expects `CHALLENGE`.
    pub async fn expect_challenge(&mut self, hello: Request) -> Challenge {
        self.expect(hello, "CHALLENGE", |r| match r {
            Response::Challenge(c) => Some(c),
            _ => None,
        })
        .await
    }

    /// Sends an `AUTH` and expects `AUTH_OK`.
    pub async fn expect_auth_ok(&mut self, auth: Request) -> AuthOk {
        self.expect(auth, "AUTH_OK", |r| match r {
            Response::AuthOk(a) => Some(a),
            _ => None,
        })
        .await
    }

    /// Sends `req` and expects `REJECT code`; returns the detail.
    pub async fn expect_reject(&mut self, req: Request, code: RejectCode) -> u32 {
        let resp = self.request(req).await;
        match resp {
            Ok(Response::Reject { code: c, detail }) if c == code => detail,
            other => panic!(
                "expected REJECT {code:?}, got {other:?}\nlog:\n{}",
                self.log.join("\n")
            ),
        }
    }

    /// Writes `bytes` verbatim on a new stream and waits for the response frame.
    pub async fn raw_request(&mut self, bytes: Vec<u8>) -> Result<Response, String> {
        let id = self
            .spec
            .behaviour_mut()
            .raw
            .send_request(&self.node_id, bytes);
        loop {
            if let Some(r) = self.raw_responses.remove(&id) {
                return r;
            }
            self.pump().await;
        }
    }

    /// Waits for a node event that `f` maps to `Some` (earlier unmatched events stay queued).
    pub async fn node_event<T>(
        &mut self,
        mut f: impl FnMut(&noctua_chat::Event) -> Option<T>,
    ) -> T {
        loop {
            if let Some(i) = self.node_events.iter().position(|e| f(e).is_some()) {
                let e = self.node_events.remove(i).expect("index in range");
                return f(&e).expect("matched above");
            }
            self.pump().await;
        }
    }

    /// Waits for the next request the node sends to the spec peer.
    pub async fn next_inbound(&mut self) -> (Request, ResponseChannel<Response>) {
        loop {
            if let Some(x) = self.inbound.pop_front() {
                return x;
            }
            self.pump().await;
        }
    }

    /// Answers an inbound request.
    pub fn respond(&mut self, ch: ResponseChannel<Response>, resp: Response) {
        self.spec
            .behaviour_mut()
            .chat
            .send_response(ch, resp)
            .expect("response channel open");
    }

    /// Runs a full honest handshake as initiator with `secret`; returns the session once the
    /// node's `ACK` of our confirmation verified.
    pub async fn handshake(&mut self, secret: &str) -> SpecSession {
        let init = self.initiator(secret);
        let hello = init.hello();
        let ch = self
            .expect(hello, "CHALLENGE", |r| match r {
                Response::Challenge(c) => Some(c),
                _ => None,
            })
            .await;
        let sent = init.on_challenge(&ch).expect("CHALLENGE acceptable");
        let ok = self
            .expect(sent.auth(), "AUTH_OK", |r| match r {
                Response::AuthOk(a) => Some(a),
                _ => None,
            })
            .await;
        let mut session = sent.on_auth_ok(&ok).expect("AUTH_OK verifies");
        let confirm = session.confirmation();
        let ack = self
            .expect(Request::Record(confirm.clone()), "ACK", |r| match r {
                Response::Ack(a) => Some(a),
                _ => None,
            })
            .await;
        session
            .verify_ack(&confirm, &ack)
            .expect("ACK of the confirmation verifies");
        session
    }

    /// Sends our record and expects a verified `ACK`.
    pub async fn send_acked(&mut self, session: &SpecSession, rec: Record) {
        let ack = self
            .expect(Request::Record(rec.clone()), "ACK", |r| match r {
                Response::Ack(a) => Some(a),
                _ => None,
            })
            .await;
        if let Err(e) = session.verify_ack(&rec, &ack) {
            panic!("{e}\nlog:\n{}", self.log.join("\n"));
        }
    }

    /// Sends our record and expects `REPLY`; returns its record.
    pub async fn send_for_reply(&mut self, rec: Record) -> Record {
        self.expect(Request::Record(rec), "REPLY", |r| match r {
            Response::Reply(rec) => Some(rec),
            _ => None,
        })
        .await
    }

    /// Lets the node run a handshake as initiator towards the spec peer (after
    /// `open_session`/`connect` on the node): answers its `HELLO`, `AUTH` and confirmation
    /// record. Returns the session (confirmed) once the `ACK` is on its way.
    pub async fn accept_handshake(&mut self, responder: &mut SpecResponder) -> SpecSession {
        let node_id = self.node_id;
        let (req, ch) = self.next_inbound().await;
        let Request::Hello(hello) = req else {
            panic!("expected HELLO from the node, got {req:?}");
        };
        let resp = responder.on_hello(node_id, &hello);
        assert!(
            matches!(resp, Response::Challenge(_)),
            "HELLO refused: {resp:?}"
        );
        self.respond(ch, resp);
        let (req, ch) = self.next_inbound().await;
        let Request::Auth(auth) = req else {
            panic!("expected AUTH from the node, got {req:?}");
        };
        let (resp, session) = responder.on_auth(node_id, &auth);
        self.respond(ch, resp.clone());
        let Some(mut session) = session else {
            panic!("AUTH refused: {resp:?}");
        };
        let (rec, answered) = self.answer_next(&mut session).await;
        assert_eq!((rec.epoch, rec.sender, rec.seq), (0, Role::Initiator, 0));
        assert!(
            matches!(answered.content, Some(Content::Profile { .. })),
            "first record is PROFILE: {answered:?}"
        );
        assert!(session.confirmed);
        session
    }

    /// Waits for the next `RECORD` the node sends, answers it as the spec says (see
    /// [`SpecSession::answer`]) and returns the record and what was answered.
    pub async fn answer_next(&mut self, session: &mut SpecSession) -> (Record, Answered) {
        let (req, ch) = self.next_inbound().await;
        let Request::Record(rec) = req else {
            panic!("expected a RECORD from the node, got {req:?}");
        };
        let answered = session.answer(&rec);
        self.respond(ch, answered.response.clone());
        (rec, answered)
    }
}

// ---------------------------------------------------------------------------------------------
// Raw streams under the test's full control, for hostile peers.
// ---------------------------------------------------------------------------------------------
//
// request-response writes a request, closes its side of the stream and only then reads the
// response, and it bounds its own streams: it can neither stall, nor trickle a body, nor
// keep writing past the node's answer. [`RawStreams`] instead hands each negotiated
// `/noctua/chat/1.0.0` stream to the test, and [`run_script`] drives it: write some bytes,
// then stall, trickle, flood or close, while reading whatever the node answers.

/// What a hostile stream writes.
#[derive(Debug, Clone)]
pub enum Script {
    /// Write `bytes`, then close our side (a normal request when `bytes` is one frame).
    Send(Vec<u8>),
    /// Write `bytes` (possibly none), then keep the stream open and send nothing more.
    Stall(Vec<u8>),
    /// Write `bytes`, then one more byte every `every`, for ever (a body that never ends).
    Trickle(Vec<u8>, Duration),
    /// Write `bytes`, then as many more as the stream accepts, up to `limit` bytes in total.
    Flood(Vec<u8>, usize),
}

impl Script {
    /// A well-formed request, framed.
    pub fn request(req: &Request) -> Script {
        Script::Send(frame(&wire::encode_request(req)))
    }
}

/// How a hostile stream ended, seen from the hostile side.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// The node answered with this frame.
    Response(Response),
    /// The node closed or reset the stream without a (decodable) answer.
    Ended(String),
    /// The stream could not be opened (negotiation failed, connection gone, ...).
    OpenFailed(String),
    /// Nothing happened before our own deadline.
    NoAnswer,
}

impl Outcome {
    /// The `REJECT` code, if the node answered `REJECT`.
    pub fn reject_code(&self) -> Option<RejectCode> {
        match self {
            Outcome::Response(Response::Reject { code, .. }) => Some(*code),
            _ => None,
        }
    }

    /// A short name for tallies.
    pub fn label(&self) -> String {
        match self {
            Outcome::Response(Response::Reject { code, .. }) => format!("REJECT {code:?}"),
            Outcome::Response(r) => format!("{r:?}")
                .split('(')
                .next()
                .unwrap_or_default()
                .to_string(),
            Outcome::Ended(_) => "stream ended without answer".into(),
            Outcome::OpenFailed(_) => "stream not opened".into(),
            Outcome::NoAnswer => "no answer".into(),
        }
    }
}

/// The result of [`run_script`].
#[derive(Debug, Clone)]
pub struct StreamOutcome {
    /// What the node did.
    pub outcome: Outcome,
    /// Bytes we managed to write (prefix included) before the outcome.
    pub written: usize,
    /// From the stream's opening to the outcome.
    pub elapsed: Duration,
}

/// Runs `script` on `stream` and reads the node's answer concurrently, for at most `limit`.
pub async fn run_script(stream: libp2p::Stream, script: Script, limit: Duration) -> StreamOutcome {
    use futures::future::Either;
    let started = std::time::Instant::now();
    let (mut r, mut w) = stream.split();
    let written = std::sync::atomic::AtomicUsize::new(0);
    let count = |n: usize| {
        written.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    };
    let reader = async {
        match read_response_frame(&mut r).await {
            Ok(resp) => Outcome::Response(resp),
            Err(e) => Outcome::Ended(e.to_string()),
        }
    };
    let writer = async {
        let (prefix, rest) = match &script {
            Script::Send(b) | Script::Stall(b) | Script::Trickle(b, _) | Script::Flood(b, _) => {
                (b.as_slice(), &script)
            }
        };
        if w.write_all(prefix).await.is_ok() && w.flush().await.is_ok() {
            count(prefix.len());
            match rest {
                Script::Send(_) => {
                    let _ = w.close().await;
                }
                Script::Stall(_) => {}
                Script::Trickle(_, every) => loop {
                    tokio::time::sleep(*every).await;
                    if w.write_all(&[0x42]).await.is_err() || w.flush().await.is_err() {
                        break;
                    }
                    count(1);
                },
                Script::Flood(_, limit) => {
                    let chunk = vec![0x42u8; 16 * 1024];
                    let mut total = prefix.len();
                    while total < *limit {
                        let n = chunk.len().min(*limit - total);
                        if w.write_all(&chunk[..n]).await.is_err() {
                            break;
                        }
                        total += n;
                        count(n);
                    }
                    let _ = w.flush().await;
                }
            }
        }
        // Whatever happened to our side, the outcome is decided by the reader.
        futures::future::pending::<()>().await
    };
    let both = async {
        futures::pin_mut!(reader, writer);
        match futures::future::select(reader, writer).await {
            Either::Left((outcome, _)) => outcome,
            Either::Right(((), _)) => unreachable!("the writer never finishes"),
        }
    };
    let outcome = tokio::time::timeout(limit, both)
        .await
        .unwrap_or(Outcome::NoAnswer);
    StreamOutcome {
        outcome,
        written: written.load(std::sync::atomic::Ordering::Relaxed),
        elapsed: started.elapsed(),
    }
}

/// A negotiated stream (or why it could not be opened), with the tag given to
/// [`RawStreams::open`].
pub type OpenedStream = (u64, Result<libp2p::Stream, String>);

/// A behaviour that opens raw `/noctua/chat/1.0.0` streams on request and hands them over a
/// channel. It accepts no inbound stream.
pub struct RawStreams {
    opens: VecDeque<(PeerId, u64)>,
    tx: futures::channel::mpsc::UnboundedSender<OpenedStream>,
    waker: Option<std::task::Waker>,
}

impl RawStreams {
    /// The behaviour, and the receiving end of its streams.
    pub fn new() -> (
        Self,
        futures::channel::mpsc::UnboundedReceiver<OpenedStream>,
    ) {
        let (tx, rx) = futures::channel::mpsc::unbounded();
        (
            RawStreams {
                opens: VecDeque::new(),
                tx,
                waker: None,
            },
            rx,
        )
    }

    /// Opens a stream to `peer` (which must be connected); it arrives with `tag`.
    pub fn open(&mut self, peer: PeerId, tag: u64) {
        self.opens.push_back((peer, tag));
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }
}

/// The connection handler of [`RawStreams`].
pub struct RawHandler {
    opens: VecDeque<u64>,
    tx: futures::channel::mpsc::UnboundedSender<OpenedStream>,
}

impl libp2p::swarm::ConnectionHandler for RawHandler {
    type FromBehaviour = u64;
    type ToBehaviour = std::convert::Infallible;
    type InboundProtocol = libp2p::core::upgrade::DeniedUpgrade;
    type OutboundProtocol = libp2p::core::upgrade::ReadyUpgrade<StreamProtocol>;
    type InboundOpenInfo = ();
    type OutboundOpenInfo = u64;

    fn listen_protocol(
        &self,
    ) -> libp2p::swarm::SubstreamProtocol<Self::InboundProtocol, Self::InboundOpenInfo> {
        libp2p::swarm::SubstreamProtocol::new(libp2p::core::upgrade::DeniedUpgrade, ())
    }

    fn connection_keep_alive(&self) -> bool {
        true
    }

    fn poll(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> Poll<
        libp2p::swarm::ConnectionHandlerEvent<
            Self::OutboundProtocol,
            Self::OutboundOpenInfo,
            Self::ToBehaviour,
        >,
    > {
        match self.opens.pop_front() {
            Some(tag) => Poll::Ready(
                libp2p::swarm::ConnectionHandlerEvent::OutboundSubstreamRequest {
                    protocol: libp2p::swarm::SubstreamProtocol::new(
                        libp2p::core::upgrade::ReadyUpgrade::new(noctua_chat::PROTOCOL),
                        tag,
                    )
                    .with_timeout(Duration::from_secs(20)),
                },
            ),
            None => Poll::Pending,
        }
    }

    fn on_behaviour_event(&mut self, tag: u64) {
        self.opens.push_back(tag);
    }

    fn on_connection_event(
        &mut self,
        event: libp2p::swarm::handler::ConnectionEvent<
            Self::InboundProtocol,
            Self::OutboundProtocol,
            Self::InboundOpenInfo,
            Self::OutboundOpenInfo,
        >,
    ) {
        use libp2p::swarm::handler::{ConnectionEvent, DialUpgradeError, FullyNegotiatedOutbound};
        match event {
            ConnectionEvent::FullyNegotiatedOutbound(FullyNegotiatedOutbound {
                protocol,
                info,
            }) => {
                let _ = self.tx.unbounded_send((info, Ok(protocol)));
            }
            ConnectionEvent::DialUpgradeError(DialUpgradeError { info, error }) => {
                let _ = self.tx.unbounded_send((info, Err(error.to_string())));
            }
            _ => {}
        }
    }
}

impl NetworkBehaviour for RawStreams {
    type ConnectionHandler = RawHandler;
    type ToSwarm = std::convert::Infallible;

    fn handle_established_inbound_connection(
        &mut self,
        _: libp2p::swarm::ConnectionId,
        _: PeerId,
        _: &libp2p::Multiaddr,
        _: &libp2p::Multiaddr,
    ) -> Result<libp2p::swarm::THandler<Self>, libp2p::swarm::ConnectionDenied> {
        Ok(RawHandler {
            opens: VecDeque::new(),
            tx: self.tx.clone(),
        })
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: libp2p::swarm::ConnectionId,
        _: PeerId,
        _: &libp2p::Multiaddr,
        _: libp2p::core::Endpoint,
        _: libp2p::core::transport::PortUse,
    ) -> Result<libp2p::swarm::THandler<Self>, libp2p::swarm::ConnectionDenied> {
        Ok(RawHandler {
            opens: VecDeque::new(),
            tx: self.tx.clone(),
        })
    }

    fn on_swarm_event(&mut self, _: libp2p::swarm::FromSwarm) {}

    fn on_connection_handler_event(
        &mut self,
        _: PeerId,
        _: libp2p::swarm::ConnectionId,
        event: libp2p::swarm::THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<libp2p::swarm::ToSwarm<Self::ToSwarm, libp2p::swarm::THandlerInEvent<Self>>> {
        if let Some((peer_id, tag)) = self.opens.pop_front() {
            return Poll::Ready(libp2p::swarm::ToSwarm::NotifyHandler {
                peer_id,
                handler: libp2p::swarm::NotifyHandler::Any,
                event: tag,
            });
        }
        self.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}
