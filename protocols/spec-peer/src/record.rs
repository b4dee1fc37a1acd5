//! Records (§3.4), the keys of an epoch (§5.5, §7), ack tags (§6.2) and the safety number
//! (§5.6).

use crate::*;
use aes_gcm::aead::AeadInOut;
use aes_gcm::{Aes256Gcm, KeyInit as _};
use libp2p::PeerId;

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

/// `okm = HKDF-Expand(prk, "noctua/chat/2 epoch keys" || session_id || u32(epoch), 160)`.
pub fn epoch_keys(prk: &[u8; 32], session_id: &[u8; 16], epoch: u32) -> EpochKeys {
    let info = [LABEL_EPOCH_KEYS, &session_id[..], &epoch.to_be_bytes()].concat();
    EpochKeys::from_okm(&hkdf_expand(prk, &info, 160))
}

/// The §6.2 ack tag: `HMAC(ack_X, "noctua/chat/2 ack" || sid || u32 epoch || u8 sender || u64 seq)[0..16]`.
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
    digits(&h(&[LABEL_SAFETY, th]))
}

/// The §5.6 identity safety number of two `PeerId`s (either order).
pub fn identity_safety_number(a: &PeerId, b: &PeerId) -> String {
    let (a, b) = (peer_field(a), peer_field(b));
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    digits(&h(&[LABEL_IDENTITY_SAFETY, &lo, &hi]))
}

/// Six groups of five digits from the first 30 bytes of `s` (§5.6).
fn digits(s: &[u8; 32]) -> String {
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
