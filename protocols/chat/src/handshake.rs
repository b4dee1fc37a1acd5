//! The handshake as a pure state machine (SPEC.md §5): no I/O, no timers, no global state.
//! The behaviour feeds it wire messages and sends what it returns.
//!
//! The secret is proven with CPace over ristretto255 (SPEC.md §5.1, §5.8): each side blinds a
//! generator derived from `K_pw`, `hs_id` and both `PeerId`s with an ephemeral scalar, and
//! the proofs are keyed from the shared element `Z`, which also feeds the key schedule.
//!
//! Initiator: [`Initiator::start`] → `HELLO`; [`Initiator::on_challenge`] → `AUTH`;
//! [`AwaitingAuthOk::on_auth_ok`] → [`Established`].
//! Responder: [`Responder::on_hello`] → `CHALLENGE`; [`Responder::on_auth`] → [`Established`]
//! plus the fields of `AUTH_OK`.
//!
//! Every scalar, shared element and derived key lives in a `Zeroizing` wrapper and is wiped
//! when the step that needed it returns or the state is dropped (a discarded handshake).

use std::sync::Arc;

use curve25519_dalek::ristretto::RistrettoPoint;
use curve25519_dalek::scalar::Scalar;
use libp2p::PeerId;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::crypto::{
    AuthKey, CONTRIBUTION_LEN, EpochSecrets, PeerPublicKey, RsaKeyPair, SHARE_LEN, SafetyNumber,
    bytes16, confirm_key, ct_eq, decode_share, hash_bytes16, hmac, random, scalar, share_of,
    shared_secret,
};
use crate::error::RejectCode;
use crate::wire::{
    Auth, AuthOk, Challenge, HS_ID_LEN, Hello, MAC_LEN, NONCE_LEN, Role, SESSION_ID_LEN, VERSION,
};

const INITIATOR_PROOF: &[u8] = b"noctua/chat/2 initiator proof";
const RESPONDER_PROOF: &[u8] = b"noctua/chat/2 responder proof";

/// What a completed handshake yields: everything a session needs.
pub(crate) struct Established {
    pub(crate) role: Role,
    pub(crate) session_id: [u8; SESSION_ID_LEN],
    pub(crate) secrets: EpochSecrets,
    pub(crate) safety_number: SafetyNumber,
}

/// Why a handshake step failed; `code` is what to tell the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HandshakeError {
    pub(crate) code: RejectCode,
    pub(crate) what: &'static str,
}

impl HandshakeError {
    pub(crate) fn new(code: RejectCode, what: &'static str) -> Self {
        HandshakeError { code, what }
    }
}

/// The public transcript fields, hashed (SPEC.md §5.1).
#[allow(clippy::too_many_arguments)]
pub(crate) fn transcript_hash(
    hs_id: &[u8; HS_ID_LEN],
    initiator: &PeerId,
    responder: &PeerId,
    pub_i: &[u8],
    pub_r: &[u8],
    nonce_i: &[u8; NONCE_LEN],
    nonce_r: &[u8; NONCE_LEN],
    share_i: &[u8; SHARE_LEN],
    share_r: &[u8; SHARE_LEN],
) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"noctua/chat/2 handshake");
    h.update(hs_id);
    hash_bytes16(&mut h, &initiator.to_bytes());
    hash_bytes16(&mut h, &responder.to_bytes());
    hash_bytes16(&mut h, pub_i);
    hash_bytes16(&mut h, pub_r);
    h.update(nonce_i);
    h.update(nonce_r);
    h.update(share_i);
    h.update(share_r);
    h.finalize().into()
}

fn session_id_of(th: &[u8; 32]) -> [u8; SESSION_ID_LEN] {
    let d = Sha256::new()
        .chain_update(b"noctua/chat/2 session id")
        .chain_update(th)
        .finalize();
    let mut id = [0u8; SESSION_ID_LEN];
    id.copy_from_slice(&d[..SESSION_ID_LEN]);
    id
}

/// `mac_i = HMAC(K_conf, "noctua/chat/2 initiator proof" || th || bytes16(wrapped_i))`.
pub(crate) fn initiator_proof(k_conf: &[u8; 32], th: &[u8; 32], wrapped_i: &[u8]) -> [u8; MAC_LEN] {
    hmac(k_conf, &[INITIATOR_PROOF, th, &bytes16(wrapped_i)])
}

/// `mac_r = HMAC(K_conf, "noctua/chat/2 responder proof" || th || bytes16(wrapped_i) ||
/// bytes16(wrapped_r))`.
pub(crate) fn responder_proof(
    k_conf: &[u8; 32],
    th: &[u8; 32],
    wrapped_i: &[u8],
    wrapped_r: &[u8],
) -> [u8; MAC_LEN] {
    hmac(
        k_conf,
        &[
            RESPONDER_PROOF,
            th,
            &bytes16(wrapped_i),
            &bytes16(wrapped_r),
        ],
    )
}

/// `share = enc(y · g)` with the CPace generator of `hs_id` between `initiator` and
/// `responder` under the password key `auth` (SPEC.md §5.1): what each side sends.
pub(crate) fn cpace_share(
    auth: &AuthKey,
    hs_id: &[u8; HS_ID_LEN],
    initiator: &PeerId,
    responder: &PeerId,
    y: &Scalar,
) -> [u8; SHARE_LEN] {
    let g = auth.generator(hs_id, &initiator.to_bytes(), &responder.to_bytes());
    share_of(y, &g)
}

/// `Z = y · peer_share` and `K_conf` from it and the transcript hash (SPEC.md §5.1); `None`
/// if `Z` is the identity (a failed proof).
#[allow(clippy::type_complexity)]
pub(crate) fn proof_keys(
    y: &Scalar,
    peer_share: &RistrettoPoint,
    th: &[u8; 32],
) -> Option<(Zeroizing<[u8; SHARE_LEN]>, Zeroizing<[u8; 32]>)> {
    let z = shared_secret(y, peer_share)?;
    let k_conf = confirm_key(th, &z);
    Some((z, k_conf))
}

/// The session a completed handshake yields (SPEC.md §5.5, §5.6): its id, epoch 0 and the
/// safety number, all from the transcript hash, `Z` and both contributions.
pub(crate) fn establish(
    role: Role,
    th: &[u8; 32],
    z: &[u8; SHARE_LEN],
    k_i: &[u8; CONTRIBUTION_LEN],
    k_r: &[u8; CONTRIBUTION_LEN],
) -> Established {
    let session_id = session_id_of(th);
    Established {
        role,
        session_id,
        secrets: EpochSecrets::initial(th, z, k_i, k_r, &session_id),
        safety_number: SafetyNumber::from_transcript(th),
    }
}

/// The initiator after sending `HELLO`.
pub(crate) struct Initiator {
    local: PeerId,
    remote: PeerId,
    hs_id: [u8; HS_ID_LEN],
    nonce: [u8; NONCE_LEN],
    key: Arc<RsaKeyPair>,
    /// `y_i`, zeroized on drop.
    y: Zeroizing<Scalar>,
    share: [u8; SHARE_LEN],
}

impl Initiator {
    /// Starts a handshake towards `remote` proving the secret whose `K_pw` is `auth` (the
    /// open's secret, SPEC.md §5).
    pub(crate) fn start(
        local: PeerId,
        remote: PeerId,
        key: Arc<RsaKeyPair>,
        auth: &AuthKey,
    ) -> (Self, Hello) {
        let hs_id = random::<HS_ID_LEN>();
        let nonce = random::<NONCE_LEN>();
        let y = scalar();
        let share = cpace_share(auth, &hs_id, &local, &remote, &y);
        let hello = Hello {
            version: VERSION,
            hs_id,
            nonce,
            public_key: key.public_der().to_vec(),
            share,
        };
        (
            Initiator {
                local,
                remote,
                hs_id,
                nonce,
                key,
                y,
                share,
            },
            hello,
        )
    }

    pub(crate) fn hs_id(&self) -> &[u8; HS_ID_LEN] {
        &self.hs_id
    }

    /// Validates the responder's key and share, computes `Z` and `K_conf`, wraps our
    /// contribution for the responder's key and proves the secret.
    pub(crate) fn on_challenge(
        self,
        ch: &Challenge,
    ) -> Result<(AwaitingAuthOk, Auth), HandshakeError> {
        if ch.hs_id != self.hs_id {
            return Err(HandshakeError::new(
                RejectCode::UnknownHandshake,
                "challenge for another handshake",
            ));
        }
        let pub_r = PeerPublicKey::parse(&ch.public_key)
            .map_err(|_| HandshakeError::new(RejectCode::BadKey, "responder key"))?;
        let share_r = decode_share(&ch.share)
            .ok_or(HandshakeError::new(RejectCode::BadKey, "responder share"))?;
        let th = transcript_hash(
            &self.hs_id,
            &self.local,
            &self.remote,
            self.key.public_der(),
            pub_r.der(),
            &self.nonce,
            &ch.nonce,
            &self.share,
            &ch.share,
        );
        let (z, k_conf) = proof_keys(&self.y, &share_r, &th).ok_or(HandshakeError::new(
            RejectCode::AuthFailed,
            "shared element is the identity",
        ))?;
        let k_i = Zeroizing::new(random::<CONTRIBUTION_LEN>());
        let wrapped_i = pub_r
            .wrap_contribution(&k_i)
            .map_err(|_| HandshakeError::new(RejectCode::BadKey, "wrapping for responder key"))?;
        let mac_i = initiator_proof(&k_conf, &th, &wrapped_i);
        let auth = Auth {
            hs_id: self.hs_id,
            wrapped: wrapped_i.clone(),
            mac: mac_i,
        };
        Ok((
            AwaitingAuthOk {
                hs_id: self.hs_id,
                th,
                z,
                k_conf,
                k_i,
                wrapped_i,
                key: self.key,
            },
            auth,
        ))
    }
}

/// The initiator after sending `AUTH`.
pub(crate) struct AwaitingAuthOk {
    hs_id: [u8; HS_ID_LEN],
    th: [u8; 32],
    z: Zeroizing<[u8; SHARE_LEN]>,
    k_conf: Zeroizing<[u8; 32]>,
    k_i: Zeroizing<[u8; CONTRIBUTION_LEN]>,
    wrapped_i: Vec<u8>,
    key: Arc<RsaKeyPair>,
}

impl AwaitingAuthOk {
    pub(crate) fn session_id(&self) -> [u8; SESSION_ID_LEN] {
        session_id_of(&self.th)
    }

    /// Verifies the responder's proof (constant time) before touching its ciphertext, then
    /// unwraps its contribution and derives epoch 0. The caller still has to open the
    /// record inside `AUTH_OK` with the result (key confirmation).
    #[cfg(test)]
    pub(crate) fn on_auth_ok(self, ok: &AuthOk) -> Result<Established, HandshakeError> {
        self.check_auth_ok(ok)?.finish(None)
    }

    /// Everything of `AUTH_OK` before our private key: the handshake id and the responder's
    /// proof (constant time). [`AuthOkChecked::finish`] does the rest.
    pub(crate) fn check_auth_ok(self, ok: &AuthOk) -> Result<AuthOkChecked, HandshakeError> {
        if ok.hs_id != self.hs_id {
            return Err(HandshakeError::new(
                RejectCode::UnknownHandshake,
                "AUTH_OK for another handshake",
            ));
        }
        let expected = responder_proof(&self.k_conf, &self.th, &self.wrapped_i, &ok.wrapped);
        if !ct_eq(&expected, &ok.mac) {
            return Err(HandshakeError::new(
                RejectCode::AuthFailed,
                "responder proof did not verify",
            ));
        }
        Ok(AuthOkChecked {
            wait: self,
            wrapped_r: ok.wrapped.clone(),
        })
    }
}

/// The initiator once the responder's proof in `AUTH_OK` verified: `wrapped_r` is left to
/// unwrap with our private key (off the event loop, DESIGN-offload.md).
pub(crate) struct AuthOkChecked {
    wait: AwaitingAuthOk,
    wrapped_r: Vec<u8>,
}

impl AuthOkChecked {
    /// The key that unwraps `wrapped_r` (the one our `HELLO` announced).
    pub(crate) fn key(&self) -> &Arc<RsaKeyPair> {
        &self.wait.key
    }

    /// The responder's key material.
    pub(crate) fn wrapped(&self) -> &[u8] {
        &self.wrapped_r
    }

    pub(crate) fn session_id(&self) -> [u8; SESSION_ID_LEN] {
        self.wait.session_id()
    }

    /// Derives epoch 0 with the responder's contribution (`k_r`; `None`: unwrap it here).
    pub(crate) fn finish(
        self,
        k_r: Option<Zeroizing<[u8; CONTRIBUTION_LEN]>>,
    ) -> Result<Established, HandshakeError> {
        let w = &self.wait;
        let k_r = match k_r {
            Some(k) => k,
            None => w.key.unwrap_contribution(&self.wrapped_r).map_err(|_| {
                HandshakeError::new(RejectCode::DecryptFailed, "responder key material")
            })?,
        };
        Ok(establish(Role::Initiator, &w.th, &w.z, &w.k_i, &k_r))
    }
}

/// The responder after answering `HELLO` with `CHALLENGE`. It keeps `y_r` and the decoded
/// `share_i` and computes `Z` only when an `AUTH` arrives (SPEC.md §5.1 allows either), so
/// that a flood of `HELLO`s costs one scalar multiplication each, not two.
pub(crate) struct Responder {
    hs_id: [u8; HS_ID_LEN],
    th: [u8; 32],
    pub_i: PeerPublicKey,
    key: Arc<RsaKeyPair>,
    /// `y_r`, zeroized on drop.
    y: Zeroizing<Scalar>,
    share_i: RistrettoPoint,
}

/// The fields of `AUTH_OK` besides its record.
pub(crate) struct AuthOkParts {
    pub(crate) wrapped: Vec<u8>,
    pub(crate) mac: [u8; MAC_LEN],
}

impl Responder {
    /// Validates a `HELLO` and builds the `CHALLENGE`, blinding the generator of our own
    /// secret (`auth`, our `K_pw`).
    pub(crate) fn on_hello(
        local: PeerId,
        remote: PeerId,
        hello: &Hello,
        key: Arc<RsaKeyPair>,
        auth: &AuthKey,
    ) -> Result<(Self, Challenge), HandshakeError> {
        if hello.version != VERSION {
            return Err(HandshakeError::new(
                RejectCode::UnsupportedVersion,
                "protocol version",
            ));
        }
        let pub_i = PeerPublicKey::parse(&hello.public_key)
            .map_err(|_| HandshakeError::new(RejectCode::BadKey, "initiator key"))?;
        let share_i = decode_share(&hello.share)
            .ok_or(HandshakeError::new(RejectCode::BadKey, "initiator share"))?;
        let y = scalar();
        let share_r = cpace_share(auth, &hello.hs_id, &remote, &local, &y);
        let nonce_r = random::<NONCE_LEN>();
        let th = transcript_hash(
            &hello.hs_id,
            &remote,
            &local,
            pub_i.der(),
            key.public_der(),
            &hello.nonce,
            &nonce_r,
            &hello.share,
            &share_r,
        );
        let challenge = Challenge {
            hs_id: hello.hs_id,
            nonce: nonce_r,
            public_key: key.public_der().to_vec(),
            share: share_r,
        };
        Ok((
            Responder {
                hs_id: hello.hs_id,
                th,
                pub_i,
                key,
                y,
                share_i,
            },
            challenge,
        ))
    }

    pub(crate) fn hs_id(&self) -> &[u8; HS_ID_LEN] {
        &self.hs_id
    }

    /// Computes `Z` and checks the initiator's proof in constant time; only if it holds is
    /// the RSA private key applied to its ciphertext (SPEC.md §5.2). Inline form of
    /// [`Responder::check_auth`] then [`AuthChecked::finish`].
    pub(crate) fn on_auth(
        self,
        auth_msg: &Auth,
    ) -> Result<(Established, AuthOkParts), HandshakeError> {
        let checked = self.check_auth(auth_msg)?;
        let k_i = checked
            .key
            .unwrap_contribution(&checked.wrapped_i)
            .map_err(|_| {
                HandshakeError::new(RejectCode::DecryptFailed, "initiator key material")
            })?;
        checked.finish(&k_i)
    }

    /// Everything of `AUTH` that comes before the private key: the handshake id and the
    /// initiator's proof (constant time). What is left is one RSA decryption of
    /// [`AuthChecked::wrapped`], which may run elsewhere (DESIGN-offload.md).
    pub(crate) fn check_auth(self, auth_msg: &Auth) -> Result<AuthChecked, HandshakeError> {
        if auth_msg.hs_id != self.hs_id {
            return Err(HandshakeError::new(
                RejectCode::UnknownHandshake,
                "AUTH for another handshake",
            ));
        }
        let (z, k_conf) = proof_keys(&self.y, &self.share_i, &self.th).ok_or(
            HandshakeError::new(RejectCode::AuthFailed, "shared element is the identity"),
        )?;
        let expected = initiator_proof(&k_conf, &self.th, &auth_msg.wrapped);
        if !ct_eq(&expected, &auth_msg.mac) {
            return Err(HandshakeError::new(
                RejectCode::AuthFailed,
                "initiator proof did not verify",
            ));
        }
        Ok(AuthChecked {
            hs_id: self.hs_id,
            th: self.th,
            pub_i: self.pub_i,
            key: self.key,
            z,
            k_conf,
            wrapped_i: auth_msg.wrapped.clone(),
        })
    }
}

/// The responder once `AUTH`'s proof verified, waiting for its private key to unwrap
/// `wrapped_i` (DESIGN-offload.md).
pub(crate) struct AuthChecked {
    hs_id: [u8; HS_ID_LEN],
    th: [u8; 32],
    pub_i: PeerPublicKey,
    key: Arc<RsaKeyPair>,
    z: Zeroizing<[u8; SHARE_LEN]>,
    k_conf: Zeroizing<[u8; 32]>,
    wrapped_i: Vec<u8>,
}

impl AuthChecked {
    pub(crate) fn hs_id(&self) -> &[u8; HS_ID_LEN] {
        &self.hs_id
    }

    /// The key to decrypt with (the one this handshake started with).
    pub(crate) fn key(&self) -> &Arc<RsaKeyPair> {
        &self.key
    }

    /// The ciphertext to decrypt.
    pub(crate) fn wrapped(&self) -> &[u8] {
        &self.wrapped_i
    }

    /// With the initiator's contribution unwrapped: our own, wrapped for the initiator, our
    /// proof, and epoch 0.
    pub(crate) fn finish(
        self,
        k_i: &Zeroizing<[u8; CONTRIBUTION_LEN]>,
    ) -> Result<(Established, AuthOkParts), HandshakeError> {
        let k_r = Zeroizing::new(random::<CONTRIBUTION_LEN>());
        let wrapped_r = self
            .pub_i
            .wrap_contribution(&k_r)
            .map_err(|_| HandshakeError::new(RejectCode::BadKey, "wrapping for initiator key"))?;
        let mac_r = responder_proof(&self.k_conf, &self.th, &self.wrapped_i, &wrapped_r);
        Ok((
            establish(Role::Responder, &self.th, &self.z, k_i, &k_r),
            AuthOkParts {
                wrapped: wrapped_r,
                mac: mac_r,
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::Secret;
    use crate::test_keys::test_key;
    use crate::wire::Record;
    use curve25519_dalek::constants::RISTRETTO_BASEPOINT_POINT;
    use hkdf::Hkdf;

    fn dummy_record() -> Record {
        Record {
            session_id: [0; 16],
            epoch: 0,
            sender: Role::Responder,
            seq: 0,
            sealed: vec![0; 16],
        }
    }

    fn key(secret: &str) -> AuthKey {
        Secret::new(secret).unwrap().auth_key()
    }

    struct Run {
        i: Result<Established, HandshakeError>,
        r: Option<Established>,
    }

    fn run(secret_i: &str, secret_r: &str, tamper: impl Fn(&mut Auth)) -> Run {
        let (pi, pr) = (PeerId::random(), PeerId::random());
        let (ki, kr) = (test_key(0), test_key(1));
        let (init, hello) = Initiator::start(pi, pr, ki, &key(secret_i));
        let (resp, ch) = Responder::on_hello(pr, pi, &hello, kr, &key(secret_r)).unwrap();
        let (wait, mut auth) = init.on_challenge(&ch).unwrap();
        tamper(&mut auth);
        match resp.on_auth(&auth) {
            Ok((est_r, parts)) => {
                let ok = AuthOk {
                    hs_id: auth.hs_id,
                    wrapped: parts.wrapped,
                    mac: parts.mac,
                    record: dummy_record(),
                };
                Run {
                    i: wait.on_auth_ok(&ok),
                    r: Some(est_r),
                }
            }
            Err(e) => Run { i: Err(e), r: None },
        }
    }

    #[test]
    fn right_secret_gives_both_sides_the_same_keys_and_safety_number() {
        let run = run("s3cret", "s3cret", |_| {});
        let i = run.i.unwrap();
        let r = run.r.unwrap();
        assert_eq!(i.session_id, r.session_id);
        assert_eq!(i.safety_number, r.safety_number);
        assert_eq!(i.secrets.key_i2r, r.secrets.key_i2r);
        assert_eq!(i.secrets.key_r2i, r.secrets.key_r2i);
        assert_ne!(i.secrets.key_i2r, i.secrets.key_r2i);
        assert_eq!((i.role, r.role), (Role::Initiator, Role::Responder));
    }

    #[test]
    fn wrong_secret_fails_at_the_responder() {
        let run = run("guess", "s3cret", |_| {});
        assert_eq!(run.i.err().unwrap().code, RejectCode::AuthFailed);
        assert!(run.r.is_none());
    }

    #[test]
    fn tampered_ciphertext_or_mac_fails_before_decryption() {
        for tamper in [
            (|a: &mut Auth| a.wrapped[5] ^= 1) as fn(&mut Auth),
            |a: &mut Auth| a.mac[0] ^= 1,
            |a: &mut Auth| a.wrapped.truncate(10),
        ] {
            let run = run("s", "s", tamper);
            assert_eq!(run.i.err().unwrap().code, RejectCode::AuthFailed);
        }
    }

    #[test]
    fn proof_does_not_transfer_to_another_responder() {
        // A relay: I talks to R1, and R1 forwards I's HELLO and AUTH to R2, which shares
        // the secret.
        let (pi, pr1, pr2) = (PeerId::random(), PeerId::random(), PeerId::random());
        let auth = key("shared");
        let (init, hello) = Initiator::start(pi, pr1, test_key(0), &auth);
        let (_r1, ch1) = Responder::on_hello(pr1, pi, &hello, test_key(1), &auth).unwrap();
        let (r2, _ch2) = Responder::on_hello(pr2, pi, &hello, test_key(2), &auth).unwrap();
        let (_wait, auth_msg) = init.on_challenge(&ch1).unwrap();
        let err = r2.on_auth(&auth_msg).err().unwrap();
        assert_eq!(err.code, RejectCode::AuthFailed);
    }

    #[test]
    fn responder_proof_is_checked_by_the_initiator() {
        let (pi, pr) = (PeerId::random(), PeerId::random());
        let auth = key("s");
        let (init, hello) = Initiator::start(pi, pr, test_key(0), &auth);
        let (resp, ch) = Responder::on_hello(pr, pi, &hello, test_key(1), &auth).unwrap();
        let (wait, auth_msg) = init.on_challenge(&ch).unwrap();
        let (_, parts) = resp.on_auth(&auth_msg).unwrap();
        let mut mac = parts.mac;
        mac[31] ^= 0x80;
        let ok = AuthOk {
            hs_id: auth_msg.hs_id,
            wrapped: parts.wrapped,
            mac,
            record: dummy_record(),
        };
        assert_eq!(
            wait.on_auth_ok(&ok).err().unwrap().code,
            RejectCode::AuthFailed
        );
    }

    #[test]
    fn bad_keys_and_versions_are_refused() {
        let (pi, pr) = (PeerId::random(), PeerId::random());
        let auth = key("s");
        let (_, mut hello) = Initiator::start(pi, pr, test_key(0), &auth);
        for version in [1, 3] {
            hello.version = version;
            let err = Responder::on_hello(pr, pi, &hello, test_key(1), &auth)
                .err()
                .unwrap();
            assert_eq!(err.code, RejectCode::UnsupportedVersion);
        }
        hello.version = VERSION;
        hello.public_key.truncate(100);
        let err = Responder::on_hello(pr, pi, &hello, test_key(1), &auth)
            .err()
            .unwrap();
        assert_eq!(err.code, RejectCode::BadKey);
    }

    /// Shares a peer must refuse (SPEC.md §2): the identity, a non-canonical encoding (the
    /// field element p, i.e. 0 written non-reduced), a negative field element, and bytes
    /// that are no point at all.
    fn bad_shares() -> Vec<[u8; SHARE_LEN]> {
        let mut p = [0xffu8; 32];
        p[0] = 0xed;
        p[31] = 0x7f;
        let mut negative = RISTRETTO_BASEPOINT_POINT.compress().to_bytes();
        negative[0] |= 1;
        vec![[0u8; 32], p, negative, [0xff; 32]]
    }

    #[test]
    fn a_bad_or_identity_share_is_bad_key_on_both_sides() {
        let (pi, pr) = (PeerId::random(), PeerId::random());
        let auth = key("s");
        for bad in bad_shares() {
            assert!(decode_share(&bad).is_none());
            // Responder: the HELLO is refused before any state exists.
            let (_, mut hello) = Initiator::start(pi, pr, test_key(0), &auth);
            hello.share = bad;
            let err = Responder::on_hello(pr, pi, &hello, test_key(1), &auth)
                .err()
                .unwrap();
            assert_eq!(err.code, RejectCode::BadKey);
            // Initiator: a CHALLENGE carrying it fails the handshake.
            let (init, hello) = Initiator::start(pi, pr, test_key(0), &auth);
            let (_, mut ch) = Responder::on_hello(pr, pi, &hello, test_key(1), &auth).unwrap();
            ch.share = bad;
            let err = init.on_challenge(&ch).err().unwrap();
            assert_eq!(err.code, RejectCode::BadKey);
        }
    }

    /// `K_conf` from a candidate `enc(Z)`, as SPEC.md §5.1 derives it.
    fn k_conf_from(th: &[u8; 32], z: &[u8; 32]) -> [u8; 32] {
        *confirm_key(th, z)
    }

    /// The protocol-1 proof key: HKDF of the secret alone. With it, anyone who saw an AUTH
    /// could test guesses of the secret offline.
    fn protocol_1_key(secret: &str) -> [u8; 32] {
        let hk = Hkdf::<Sha256>::new(Some(b"noctua/chat/1 secret"), secret.as_bytes());
        let mut k = [0u8; 32];
        hk.expand(b"auth", &mut k).unwrap();
        k
    }

    /// Everything an observer of a handshake sees, and the responder's scalar (which an
    /// observer does not see, and a responder does).
    struct Observed {
        pi: PeerId,
        pr: PeerId,
        hello: Hello,
        ch: Challenge,
        auth: Auth,
        th: [u8; 32],
        y_r: Scalar,
    }

    fn observe(secret_i: &str, secret_r: &str) -> Observed {
        let (pi, pr) = (PeerId::random(), PeerId::random());
        let (init, hello) = Initiator::start(pi, pr, test_key(0), &key(secret_i));
        let (resp, ch) = Responder::on_hello(pr, pi, &hello, test_key(1), &key(secret_r)).unwrap();
        let (_wait, auth) = init.on_challenge(&ch).unwrap();
        // The transcript hash is public: every input is on the wire.
        let th = transcript_hash(
            &hello.hs_id,
            &pi,
            &pr,
            &hello.public_key,
            &ch.public_key,
            &hello.nonce,
            &ch.nonce,
            &hello.share,
            &ch.share,
        );
        assert_eq!(th, resp.th);
        Observed {
            pi,
            pr,
            hello,
            ch,
            auth,
            th,
            y_r: *resp.y,
        }
    }

    /// Every `enc(Z)` an attacker can form from the transcript and a candidate secret
    /// without either side's scalar: the generator, both shares, their sum and difference.
    fn scalar_free_candidates(o: &Observed, secret: &str) -> Vec<[u8; 32]> {
        let g = *key(secret).generator(&o.hello.hs_id, &o.pi.to_bytes(), &o.pr.to_bytes());
        let si = decode_share(&o.hello.share).unwrap();
        let sr = decode_share(&o.ch.share).unwrap();
        [g, si, sr, si + sr, si - sr, si + g, sr + g]
            .iter()
            .map(|p| p.compress().to_bytes())
            .collect()
    }

    #[test]
    fn a_passive_observer_who_knows_the_secret_cannot_check_the_proof() {
        // Today's protocol 1 falls to this: the proof is an HMAC keyed from the secret alone,
        // so the transcript plus the right secret verifies it (and a wrong one does not):
        // an offline test of every guess. In protocol 2 the proof needs Z, which needs a
        // scalar no observer sees, so even the *right* secret verifies nothing.
        let o = observe("correct-horse", "correct-horse");
        let mac_i = o.auth.mac;
        for secret in ["correct-horse", "wrong-guess"] {
            let p1 = hmac(
                &protocol_1_key(secret),
                &[INITIATOR_PROOF, &o.th, &bytes16(&o.auth.wrapped)],
            );
            assert!(!ct_eq(&p1, &mac_i));
            for z in scalar_free_candidates(&o, secret) {
                let k = k_conf_from(&o.th, &z);
                assert!(
                    !ct_eq(&initiator_proof(&k, &o.th, &o.auth.wrapped), &mac_i),
                    "the proof verified without a scalar"
                );
            }
        }
        // Control: the responder, which holds y_r, does verify it (so the recomputation
        // above is the right formula, missing only the scalar).
        let z = shared_secret(&o.y_r, &decode_share(&o.hello.share).unwrap()).unwrap();
        let k = k_conf_from(&o.th, &z);
        assert!(ct_eq(&initiator_proof(&k, &o.th, &o.auth.wrapped), &mac_i));
    }

    #[test]
    fn an_active_responder_tests_one_guess_per_handshake() {
        // A host that answers a dial (an address taken over) picks its guess, so it knows
        // y_r and its generator. After the AUTH it can tell whether *that* guess was right
        // and nothing else: with its scalar, Z = y_r · share_i is the same whatever secret it
        // tries afterwards, and the proof verifies only if its guess was the dialer's secret.
        let o = observe("dialer-secret", "attacker-guess");
        let z = shared_secret(&o.y_r, &decode_share(&o.hello.share).unwrap()).unwrap();
        let k = k_conf_from(&o.th, &z);
        assert!(!ct_eq(
            &initiator_proof(&k, &o.th, &o.auth.wrapped),
            &o.auth.mac
        ));
        // Offline after the fact, with the right secret as a candidate: still nothing. The
        // dialer's Z is y_i · y_r · g(guess), and y_i · g(guess) is on no wire.
        for secret in ["dialer-secret", "attacker-guess", "another"] {
            let g = key(secret).generator(&o.hello.hs_id, &o.pi.to_bytes(), &o.pr.to_bytes());
            let mut zs = scalar_free_candidates(&o, secret);
            zs.push((o.y_r * *g).compress().to_bytes());
            for z in zs {
                let k = k_conf_from(&o.th, &z);
                assert!(!ct_eq(
                    &initiator_proof(&k, &o.th, &o.auth.wrapped),
                    &o.auth.mac
                ));
            }
        }
        // Control: had the guess been right, that one handshake would have told it so.
        let o = observe("dialer-secret", "dialer-secret");
        let z = shared_secret(&o.y_r, &decode_share(&o.hello.share).unwrap()).unwrap();
        let k = k_conf_from(&o.th, &z);
        assert!(ct_eq(
            &initiator_proof(&k, &o.th, &o.auth.wrapped),
            &o.auth.mac
        ));
    }

    #[test]
    fn shares_are_fresh_and_say_nothing_about_the_secret() {
        // Two handshakes with the same secret, peers and keys give unrelated shares, and a
        // share is never the generator itself (y is never 0 or 1 in practice; the point is
        // that it is blinded).
        let (pi, pr) = (PeerId::random(), PeerId::random());
        let auth = key("same");
        let (_, h1) = Initiator::start(pi, pr, test_key(0), &auth);
        let (_, h2) = Initiator::start(pi, pr, test_key(0), &auth);
        assert_ne!(h1.share, h2.share);
        let g = auth.generator(&h1.hs_id, &pi.to_bytes(), &pr.to_bytes());
        assert_ne!(h1.share, g.compress().to_bytes());
        assert!(decode_share(&h1.share).is_some());
    }

    #[test]
    fn the_generator_binds_the_secret_the_handshake_and_both_peers() {
        let (a, b, c) = (PeerId::random(), PeerId::random(), PeerId::random());
        let k = key("s");
        let base = *k.generator(&[1; 16], &a.to_bytes(), &b.to_bytes());
        for other in [
            *key("t").generator(&[1; 16], &a.to_bytes(), &b.to_bytes()),
            *k.generator(&[2; 16], &a.to_bytes(), &b.to_bytes()),
            *k.generator(&[1; 16], &b.to_bytes(), &a.to_bytes()),
            *k.generator(&[1; 16], &a.to_bytes(), &c.to_bytes()),
        ] {
            assert_ne!(base.compress(), other.compress());
        }
    }
}
