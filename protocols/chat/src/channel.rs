//! One epoch's record protection (SPEC.md §3.4, §6): AES-256-GCM with one key per direction,
//! counter nonces, a replay window, and acknowledgement tags.

use aes_gcm::aead::AeadInOut;
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use zeroize::Zeroizing;

use crate::crypto::{EpochSecrets, ack_tag, ct_eq};
use crate::error::RejectCode;
use crate::wire::{AEAD_TAG_LEN, Ack, Record, Role, SESSION_ID_LEN};

/// Associated-data label of every record.
const RECORD_LABEL: &[u8] = b"noctua/chat/2 record";

/// Sequence numbers at or above this are never used (SPEC.md §6.1).
pub(crate) const SEQ_LIMIT: u64 = 1 << 32;
/// A rotation is forced before the counter reaches this.
pub(crate) const SEQ_ROTATE: u64 = 1 << 31;

/// Why an incoming record was refused (maps onto SPEC.md §9 codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RecordError {
    Replayed,
    OutOfWindow,
    DecryptFailed,
}

impl RecordError {
    pub(crate) fn code(self) -> RejectCode {
        match self {
            RecordError::Replayed => RejectCode::Replayed,
            RecordError::OutOfWindow => RejectCode::OutOfWindow,
            RecordError::DecryptFailed => RejectCode::DecryptFailed,
        }
    }
}

/// Sliding window over received sequence numbers: accepts each number once, and nothing
/// more than `size - 1` below the highest accepted.
#[derive(Debug, Clone)]
pub(crate) struct ReplayWindow {
    /// Highest accepted sequence number plus one (0: nothing accepted yet).
    top: u64,
    /// Bit `i` set: `top - 1 - i` was accepted.
    bits: Vec<u64>,
}

impl ReplayWindow {
    pub(crate) fn new(size: usize) -> Self {
        let words = size.clamp(64, 1 << 16).div_ceil(64);
        ReplayWindow {
            top: 0,
            bits: vec![0; words],
        }
    }

    fn size(&self) -> u64 {
        self.bits.len() as u64 * 64
    }

    /// Would `seq` be accepted? A number no sender may use (`>= 2^32`, SPEC.md §6.1) is
    /// refused here, before any decryption (§6.2 step 4).
    pub(crate) fn check(&self, seq: u64) -> Result<(), RecordError> {
        if seq >= SEQ_LIMIT {
            return Err(RecordError::OutOfWindow);
        }
        let Some(back) = self.top.checked_sub(1).and_then(|t| t.checked_sub(seq)) else {
            // At or above the highest accepted: new.
            return Ok(());
        };
        if back >= self.size() {
            return Err(RecordError::OutOfWindow);
        }
        let (w, b) = ((back / 64) as usize, back % 64);
        if self.bits[w] & (1 << b) != 0 {
            Err(RecordError::Replayed)
        } else {
            Ok(())
        }
    }

    /// Marks `seq` as accepted. Call only after [`ReplayWindow::check`] and authentication.
    pub(crate) fn mark(&mut self, seq: u64) {
        if seq >= SEQ_LIMIT {
            // `check` refuses it; never mark what no sender may use.
            return;
        }
        let next = seq.saturating_add(1);
        if let Some(shift) = next.checked_sub(self.top).filter(|s| *s > 0) {
            self.shift(shift);
            self.top = next;
            self.bits[0] |= 1;
        } else if let Some(back) = self.top.checked_sub(next)
            && back < self.size()
        {
            self.bits[(back / 64) as usize] |= 1 << (back % 64);
        }
    }

    fn shift(&mut self, by: u64) {
        if by >= self.size() {
            self.bits.iter_mut().for_each(|w| *w = 0);
            return;
        }
        let words = (by / 64) as usize;
        let bits = (by % 64) as u32;
        let n = self.bits.len();
        for i in (0..n).rev() {
            let src = i.checked_sub(words);
            let hi = src.map_or(0, |s| self.bits[s]);
            let lo = src
                .and_then(|s| s.checked_sub(1))
                .map_or(0, |s| self.bits[s]);
            self.bits[i] = if bits == 0 {
                hi
            } else {
                (hi << bits) | (lo >> (64 - bits))
            };
        }
    }
}

/// The keys and counters of one epoch of one session.
pub(crate) struct EpochKeys {
    pub(crate) number: u32,
    role: Role,
    session_id: [u8; SESSION_ID_LEN],
    secrets: EpochSecrets,
    send: Option<Aes256Gcm>,
    next_seq: u64,
    recv: Aes256Gcm,
    window: ReplayWindow,
}

impl EpochKeys {
    pub(crate) fn new(
        number: u32,
        role: Role,
        session_id: [u8; SESSION_ID_LEN],
        secrets: EpochSecrets,
        window: usize,
    ) -> Self {
        let send = Aes256Gcm::new(secrets.record_key(role).into());
        let recv = Aes256Gcm::new(secrets.record_key(role.peer()).into());
        EpochKeys {
            number,
            role,
            session_id,
            secrets,
            send: Some(send),
            next_seq: 0,
            recv,
            window: ReplayWindow::new(window),
        }
    }

    pub(crate) fn secrets(&self) -> &EpochSecrets {
        &self.secrets
    }

    /// Records sealed so far in this epoch.
    pub(crate) fn sent(&self) -> u64 {
        self.next_seq
    }

    /// Seals a plaintext as our next record. `None` when this epoch can no longer send
    /// (retired, or out of sequence numbers).
    pub(crate) fn seal(&mut self, mut plaintext: Vec<u8>) -> Option<Record> {
        let cipher = self.send.as_ref()?;
        if self.next_seq >= SEQ_LIMIT {
            return None;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let mut rec = Record {
            session_id: self.session_id,
            epoch: self.number,
            sender: self.role,
            seq,
            sealed: Vec::new(),
        };
        let aad = aad(&rec);
        let tag = cipher
            .encrypt_inout_detached(
                &nonce(self.role, seq),
                &aad,
                plaintext.as_mut_slice().into(),
            )
            .ok()?;
        plaintext.extend_from_slice(&tag);
        rec.sealed = plaintext;
        Some(rec)
    }

    /// Checks the replay window, decrypts, and only then marks the sequence number as seen.
    pub(crate) fn open(&mut self, rec: &Record) -> Result<Vec<u8>, RecordError> {
        self.window.check(rec.seq)?;
        let split = rec
            .sealed
            .len()
            .checked_sub(AEAD_TAG_LEN)
            .ok_or(RecordError::DecryptFailed)?;
        let mut buf = rec.sealed[..split].to_vec();
        let tag =
            aes_gcm::Tag::try_from(&rec.sealed[split..]).map_err(|_| RecordError::DecryptFailed)?;
        self.recv
            .decrypt_inout_detached(
                &nonce(rec.sender, rec.seq),
                &aad(rec),
                buf.as_mut_slice().into(),
                &tag,
            )
            .map_err(|_| RecordError::DecryptFailed)?;
        self.window.mark(rec.seq);
        Ok(buf)
    }

    /// Our acknowledgement of the peer's record `seq` in this epoch.
    pub(crate) fn ack(&self, seq: u64) -> Ack {
        Ack {
            session_id: self.session_id,
            epoch: self.number,
            seq,
            tag: ack_tag(
                self.secrets.ack_key(self.role),
                &self.session_id,
                self.number,
                self.role.peer(),
                seq,
            ),
        }
    }

    /// Verifies, in constant time, the peer's acknowledgement of our record `seq`.
    pub(crate) fn verify_ack(&self, ack: &Ack, seq: u64) -> bool {
        if ack.epoch != self.number || ack.seq != seq || ack.session_id != self.session_id {
            return false;
        }
        let expected = ack_tag(
            self.secrets.ack_key(self.role.peer()),
            &self.session_id,
            self.number,
            self.role,
            seq,
        );
        ct_eq(&expected, &ack.tag)
    }

    /// What checking the peer's late receipts of our records of this epoch needs, to keep
    /// once the epoch itself is dropped.
    pub(crate) fn ack_check(&self) -> AckCheck {
        AckCheck {
            number: self.number,
            role: self.role,
            session_id: self.session_id,
            key: Zeroizing::new(*self.secrets.ack_key(self.role.peer())),
        }
    }

    /// Keeps only what late records of this epoch need (receive key, window, ack keys);
    /// zeroizes the send key and the chain key.
    pub(crate) fn retire(&mut self) {
        self.send = None;
        self.secrets.retire(self.role);
    }
}

/// The peer's receipt key of a dropped epoch: a receipt for a record we sent under that
/// epoch may land after a zero grace window dropped it (the peer acked it before it saw our
/// rotation complete). It verifies receipts only: nothing can be sealed or opened with it.
pub(crate) struct AckCheck {
    number: u32,
    role: Role,
    session_id: [u8; SESSION_ID_LEN],
    key: Zeroizing<[u8; 32]>,
}

impl AckCheck {
    /// [`EpochKeys::verify_ack`], for the dropped epoch.
    pub(crate) fn verify(&self, epoch: u32, ack: &Ack, seq: u64) -> bool {
        if epoch != self.number
            || ack.epoch != self.number
            || ack.seq != seq
            || ack.session_id != self.session_id
        {
            return false;
        }
        let expected = ack_tag(&self.key, &self.session_id, self.number, self.role, seq);
        ct_eq(&expected, &ack.tag)
    }
}

fn nonce(sender: Role, seq: u64) -> Nonce<aes_gcm::aead::consts::U12> {
    let mut n = [0u8; 12];
    n[0] = sender.to_byte();
    n[4..].copy_from_slice(&seq.to_be_bytes());
    n.into()
}

fn aad(rec: &Record) -> [u8; RECORD_LABEL.len() + crate::wire::RECORD_HEADER_LEN] {
    let mut a = [0u8; RECORD_LABEL.len() + crate::wire::RECORD_HEADER_LEN];
    a[..RECORD_LABEL.len()].copy_from_slice(RECORD_LABEL);
    a[RECORD_LABEL.len()..].copy_from_slice(&rec.header());
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets() -> EpochSecrets {
        EpochSecrets::initial(&[1; 32], &[5; 32], &[2; 32], &[3; 32], &[4; 16])
    }

    fn pair() -> (EpochKeys, EpochKeys) {
        (
            EpochKeys::new(0, Role::Initiator, [4; 16], secrets(), 256),
            EpochKeys::new(0, Role::Responder, [4; 16], secrets(), 256),
        )
    }

    #[test]
    fn seal_open_both_directions_with_distinct_keys() {
        let (mut i, mut r) = pair();
        let rec = i.seal(b"hello".to_vec()).unwrap();
        assert_eq!(r.open(&rec).unwrap(), b"hello");
        let back = r.seal(b"hi".to_vec()).unwrap();
        assert_eq!(i.open(&back).unwrap(), b"hi");
        // Same seq (0) in both directions, different keys: ciphertexts differ.
        assert_eq!(rec.seq, back.seq);
        assert_ne!(rec.sealed[..2], back.sealed[..2]);
    }

    #[test]
    fn replay_is_refused_after_acceptance_only() {
        let (mut i, mut r) = pair();
        let rec = i.seal(b"x".to_vec()).unwrap();
        let mut bad = rec.clone();
        bad.sealed[0] ^= 1;
        assert_eq!(r.open(&bad), Err(RecordError::DecryptFailed));
        // A forged record must not burn the sequence number.
        assert!(r.open(&rec).is_ok());
        assert_eq!(r.open(&rec), Err(RecordError::Replayed));
    }

    #[test]
    fn header_tampering_is_detected() {
        let (mut i, mut r) = pair();
        let rec = i.seal(b"x".to_vec()).unwrap();
        let mut other_seq = rec.clone();
        other_seq.seq = 5;
        assert_eq!(r.open(&other_seq), Err(RecordError::DecryptFailed));
        let mut other_epoch = rec.clone();
        other_epoch.epoch = 1;
        assert_eq!(r.open(&other_epoch), Err(RecordError::DecryptFailed));
    }

    #[test]
    fn reflection_does_not_decrypt() {
        let (mut i, _) = pair();
        let rec = i.seal(b"x".to_vec()).unwrap();
        let mut reflected = rec.clone();
        reflected.sender = Role::Responder;
        assert_eq!(i.open(&reflected), Err(RecordError::DecryptFailed));
    }

    /// Seals `plain` from `keys`'s side at any `seq`, even one `seal` never uses.
    fn seal_at(keys: &EpochKeys, seq: u64, plain: &[u8]) -> Record {
        let mut rec = Record {
            session_id: keys.session_id,
            epoch: keys.number,
            sender: keys.role,
            seq,
            sealed: plain.to_vec(),
        };
        let cipher = keys.send.as_ref().expect("can send");
        let tag = cipher
            .encrypt_inout_detached(
                &nonce(keys.role, seq),
                &aad(&rec),
                rec.sealed.as_mut_slice().into(),
            )
            .expect("seals");
        rec.sealed.extend_from_slice(&tag);
        rec
    }

    /// Issue 10 item 6: a record with `seq >= 2^32` (which no sender may use, SPEC.md §6.1)
    /// is refused before decrypting, even when it is sealed under the right key; the
    /// window's arithmetic does not overflow at `u64::MAX` and keeps working afterwards.
    #[test]
    fn seq_of_two_to_the_32_or_more_is_refused_before_decrypting() {
        let (mut i, mut r) = pair();
        for seq in [SEQ_LIMIT, SEQ_LIMIT + 7, u64::MAX - 1, u64::MAX] {
            let rec = seal_at(&i, seq, b"x");
            assert_eq!(r.open(&rec), Err(RecordError::OutOfWindow), "seq {seq}");
        }
        let rec = i.seal(b"y".to_vec()).unwrap();
        assert_eq!(r.open(&rec).as_deref(), Ok(&b"y"[..]));
        let last = seal_at(&i, SEQ_LIMIT - 1, b"z");
        assert_eq!(r.open(&last).as_deref(), Ok(&b"z"[..]));
        assert_eq!(r.open(&last), Err(RecordError::Replayed));
        // Marking never panics, whatever the caller passes.
        let mut w = ReplayWindow::new(256);
        w.mark(u64::MAX);
        w.mark(SEQ_LIMIT - 1);
        assert_eq!(w.check(SEQ_LIMIT - 1), Err(RecordError::Replayed));
        assert_eq!(w.check(u64::MAX), Err(RecordError::OutOfWindow));
    }

    #[test]
    fn reordering_within_window_ok_outside_refused() {
        let (mut i, mut r) = pair();
        let recs: Vec<_> = (0..300).map(|_| i.seal(vec![0]).unwrap()).collect();
        assert!(r.open(&recs[299]).is_ok());
        assert!(r.open(&recs[299 - 255]).is_ok());
        assert_eq!(r.open(&recs[299 - 256]), Err(RecordError::OutOfWindow));
        assert_eq!(r.open(&recs[10]), Err(RecordError::OutOfWindow));
        assert!(r.open(&recs[200]).is_ok());
        assert_eq!(r.open(&recs[200]), Err(RecordError::Replayed));
    }

    #[test]
    fn window_matches_a_reference_model() {
        // Deterministic pseudo-random walk compared against a set-based model.
        let mut w = ReplayWindow::new(128);
        let mut seen = std::collections::BTreeSet::new();
        let mut top: u64 = 0;
        let mut x: u64 = 12345;
        for _ in 0..20_000 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let jump = (x >> 33) % 300;
            let seq = if (x >> 20) & 1 == 0 {
                top + jump / 4
            } else {
                top.saturating_sub(jump)
            };
            let expected = if seen.contains(&seq) {
                Err(RecordError::Replayed)
            } else if top > 0 && seq + 128 < top {
                Err(RecordError::OutOfWindow)
            } else {
                Ok(())
            };
            let got = w.check(seq);
            // The model keeps everything; the window forgets what fell out of it.
            if let Err(RecordError::Replayed) = expected
                && top > 0
                && seq + 128 < top
            {
                assert_eq!(got, Err(RecordError::OutOfWindow));
                continue;
            }
            assert_eq!(got, expected, "seq {seq} top {top}");
            if got.is_ok() {
                w.mark(seq);
                seen.insert(seq);
                top = top.max(seq + 1);
            }
        }
    }

    #[test]
    fn acks_verify_only_for_the_right_record() {
        let (i, r) = pair();
        let ack = r.ack(7);
        assert!(i.verify_ack(&ack, 7));
        assert!(!i.verify_ack(&ack, 8));
        let mut forged = ack.clone();
        forged.tag[0] ^= 1;
        assert!(!i.verify_ack(&forged, 7));
        // An ack made by the initiator for itself does not pass as the responder's.
        assert!(!i.verify_ack(&i.ack(7), 7));
    }

    #[test]
    fn retired_epoch_cannot_send_but_still_receives() {
        let (mut i, mut r) = pair();
        let rec = i.seal(vec![1]).unwrap();
        r.retire();
        assert!(r.seal(vec![1]).is_none());
        assert!(r.open(&rec).is_ok());
    }
}
