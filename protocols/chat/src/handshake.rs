//! The handshake as a pure state machine (SPEC.md §5): no I/O, no timers, no global state.
//! The behaviour feeds it wire messages and sends what it returns.
//!
//! Initiator: [`Initiator::start`] → `HELLO`; [`Initiator::on_challenge`] → `AUTH`;
//! [`AwaitingAuthOk::on_auth_ok`] → [`Established`].
//! Responder: [`Responder::on_hello`] → `CHALLENGE`; [`Responder::on_auth`] → [`Established`]
//! plus the fields of `AUTH_OK`.

use std::sync::Arc;

use libp2p::PeerId;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::crypto::{
    AuthKey, CONTRIBUTION_LEN, EpochSecrets, PeerPublicKey, RsaKeyPair, SafetyNumber, bytes16,
    ct_eq, hash_bytes16, random,
};
use crate::error::RejectCode;
use crate::wire::{
    Auth, AuthOk, Challenge, HS_ID_LEN, Hello, MAC_LEN, NONCE_LEN, Role, SESSION_ID_LEN, VERSION,
};

const INITIATOR_PROOF: &[u8] = b"noctua/chat/1 initiator proof";
const RESPONDER_PROOF: &[u8] = b"noctua/chat/1 responder proof";

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
    fn new(code: RejectCode, what: &'static str) -> Self {
        HandshakeError { code, what }
    }
}

/// The public transcript fields, hashed (SPEC.md §5.1).
fn transcript_hash(
    hs_id: &[u8; HS_ID_LEN],
    initiator: &PeerId,
    responder: &PeerId,
    pub_i: &[u8],
    pub_r: &[u8],
    nonce_i: &[u8; NONCE_LEN],
    nonce_r: &[u8; NONCE_LEN],
) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"noctua/chat/1 handshake");
    h.update(hs_id);
    hash_bytes16(&mut h, &initiator.to_bytes());
    hash_bytes16(&mut h, &responder.to_bytes());
    hash_bytes16(&mut h, pub_i);
    hash_bytes16(&mut h, pub_r);
    h.update(nonce_i);
    h.update(nonce_r);
    h.finalize().into()
}

fn session_id_of(th: &[u8; 32]) -> [u8; SESSION_ID_LEN] {
    let d = Sha256::new()
        .chain_update(b"noctua/chat/1 session id")
        .chain_update(th)
        .finalize();
    let mut id = [0u8; SESSION_ID_LEN];
    id.copy_from_slice(&d[..SESSION_ID_LEN]);
    id
}

/// The initiator after sending `HELLO`.
pub(crate) struct Initiator {
    local: PeerId,
    remote: PeerId,
    hs_id: [u8; HS_ID_LEN],
    nonce: [u8; NONCE_LEN],
    key: Arc<RsaKeyPair>,
    auth: AuthKey,
}

impl Initiator {
    pub(crate) fn start(
        local: PeerId,
        remote: PeerId,
        key: Arc<RsaKeyPair>,
        auth: AuthKey,
    ) -> (Self, Hello) {
        let hs_id = random::<HS_ID_LEN>();
        let nonce = random::<NONCE_LEN>();
        let hello = Hello {
            version: VERSION,
            hs_id,
            nonce,
            public_key: key.public_der().to_vec(),
        };
        (
            Initiator {
                local,
                remote,
                hs_id,
                nonce,
                key,
                auth,
            },
            hello,
        )
    }

    pub(crate) fn hs_id(&self) -> &[u8; HS_ID_LEN] {
        &self.hs_id
    }

    /// Validates the responder's key, wraps our contribution for it and proves the secret.
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
        let th = transcript_hash(
            &self.hs_id,
            &self.local,
            &self.remote,
            self.key.public_der(),
            pub_r.der(),
            &self.nonce,
            &ch.nonce,
        );
        let k_i = Zeroizing::new(random::<CONTRIBUTION_LEN>());
        let wrapped_i = pub_r
            .wrap_contribution(&k_i)
            .map_err(|_| HandshakeError::new(RejectCode::BadKey, "wrapping for responder key"))?;
        let mac_i = self.auth.mac(&[INITIATOR_PROOF, &th, &bytes16(&wrapped_i)]);
        let auth = Auth {
            hs_id: self.hs_id,
            wrapped: wrapped_i.clone(),
            mac: mac_i,
        };
        Ok((
            AwaitingAuthOk {
                hs_id: self.hs_id,
                th,
                k_i,
                wrapped_i,
                key: self.key,
                auth: self.auth,
            },
            auth,
        ))
    }
}

/// The initiator after sending `AUTH`.
pub(crate) struct AwaitingAuthOk {
    hs_id: [u8; HS_ID_LEN],
    th: [u8; 32],
    k_i: Zeroizing<[u8; CONTRIBUTION_LEN]>,
    wrapped_i: Vec<u8>,
    key: Arc<RsaKeyPair>,
    auth: AuthKey,
}

impl AwaitingAuthOk {
    pub(crate) fn session_id(&self) -> [u8; SESSION_ID_LEN] {
        session_id_of(&self.th)
    }

    /// Verifies the responder's proof (constant time) before touching its ciphertext, then
    /// unwraps its contribution and derives epoch 0. The caller still has to open the
    /// record inside `AUTH_OK` with the result (key confirmation).
    pub(crate) fn on_auth_ok(self, ok: &AuthOk) -> Result<Established, HandshakeError> {
        if ok.hs_id != self.hs_id {
            return Err(HandshakeError::new(
                RejectCode::UnknownHandshake,
                "AUTH_OK for another handshake",
            ));
        }
        let expected: [u8; MAC_LEN] = self.auth.mac(&[
            RESPONDER_PROOF,
            &self.th,
            &bytes16(&self.wrapped_i),
            &bytes16(&ok.wrapped),
        ]);
        if !ct_eq(&expected, &ok.mac) {
            return Err(HandshakeError::new(
                RejectCode::AuthFailed,
                "responder proof did not verify",
            ));
        }
        let k_r = self.key.unwrap_contribution(&ok.wrapped).map_err(|_| {
            HandshakeError::new(RejectCode::DecryptFailed, "responder key material")
        })?;
        let session_id = session_id_of(&self.th);
        Ok(Established {
            role: Role::Initiator,
            session_id,
            secrets: EpochSecrets::initial(&self.th, &self.k_i, &k_r, &self.auth, &session_id),
            safety_number: SafetyNumber::from_transcript(&self.th),
        })
    }
}

/// The responder after answering `HELLO` with `CHALLENGE`.
pub(crate) struct Responder {
    hs_id: [u8; HS_ID_LEN],
    th: [u8; 32],
    pub_i: PeerPublicKey,
    key: Arc<RsaKeyPair>,
}

/// The fields of `AUTH_OK` besides its record.
pub(crate) struct AuthOkParts {
    pub(crate) wrapped: Vec<u8>,
    pub(crate) mac: [u8; MAC_LEN],
}

impl Responder {
    /// Validates a `HELLO` and builds the `CHALLENGE`.
    pub(crate) fn on_hello(
        local: PeerId,
        remote: PeerId,
        hello: &Hello,
        key: Arc<RsaKeyPair>,
    ) -> Result<(Self, Challenge), HandshakeError> {
        if hello.version != VERSION {
            return Err(HandshakeError::new(
                RejectCode::UnsupportedVersion,
                "protocol version",
            ));
        }
        let pub_i = PeerPublicKey::parse(&hello.public_key)
            .map_err(|_| HandshakeError::new(RejectCode::BadKey, "initiator key"))?;
        let nonce_r = random::<NONCE_LEN>();
        let th = transcript_hash(
            &hello.hs_id,
            &remote,
            &local,
            pub_i.der(),
            key.public_der(),
            &hello.nonce,
            &nonce_r,
        );
        let challenge = Challenge {
            hs_id: hello.hs_id,
            nonce: nonce_r,
            public_key: key.public_der().to_vec(),
        };
        Ok((
            Responder {
                hs_id: hello.hs_id,
                th,
                pub_i,
                key,
            },
            challenge,
        ))
    }

    pub(crate) fn hs_id(&self) -> &[u8; HS_ID_LEN] {
        &self.hs_id
    }

    /// Checks the initiator's proof in constant time; only if it holds is the RSA private
    /// key applied to its ciphertext (SPEC.md §5.2).
    pub(crate) fn on_auth(
        self,
        auth_msg: &Auth,
        auth: &AuthKey,
    ) -> Result<(Established, AuthOkParts), HandshakeError> {
        if auth_msg.hs_id != self.hs_id {
            return Err(HandshakeError::new(
                RejectCode::UnknownHandshake,
                "AUTH for another handshake",
            ));
        }
        let expected = auth.mac(&[INITIATOR_PROOF, &self.th, &bytes16(&auth_msg.wrapped)]);
        if !ct_eq(&expected, &auth_msg.mac) {
            return Err(HandshakeError::new(
                RejectCode::AuthFailed,
                "initiator proof did not verify",
            ));
        }
        let k_i = self
            .key
            .unwrap_contribution(&auth_msg.wrapped)
            .map_err(|_| {
                HandshakeError::new(RejectCode::DecryptFailed, "initiator key material")
            })?;
        let k_r = Zeroizing::new(random::<CONTRIBUTION_LEN>());
        let wrapped_r = self
            .pub_i
            .wrap_contribution(&k_r)
            .map_err(|_| HandshakeError::new(RejectCode::BadKey, "wrapping for initiator key"))?;
        let mac_r = auth.mac(&[
            RESPONDER_PROOF,
            &self.th,
            &bytes16(&auth_msg.wrapped),
            &bytes16(&wrapped_r),
        ]);
        let session_id = session_id_of(&self.th);
        Ok((
            Established {
                role: Role::Responder,
                session_id,
                secrets: EpochSecrets::initial(&self.th, &k_i, &k_r, auth, &session_id),
                safety_number: SafetyNumber::from_transcript(&self.th),
            },
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

    fn dummy_record() -> Record {
        Record {
            session_id: [0; 16],
            epoch: 0,
            sender: Role::Responder,
            seq: 0,
            sealed: vec![0; 16],
        }
    }

    struct Run {
        i: Result<Established, HandshakeError>,
        r: Option<Established>,
    }

    fn run(secret_i: &str, secret_r: &str, tamper: impl Fn(&mut Auth)) -> Run {
        let (pi, pr) = (PeerId::random(), PeerId::random());
        let (ki, kr) = (test_key(0), test_key(1));
        let auth_r = Secret::new(secret_r).unwrap().auth_key();
        let (init, hello) = Initiator::start(pi, pr, ki, Secret::new(secret_i).unwrap().auth_key());
        let (resp, ch) = Responder::on_hello(pr, pi, &hello, kr).unwrap();
        let (wait, mut auth) = init.on_challenge(&ch).unwrap();
        tamper(&mut auth);
        match resp.on_auth(&auth, &auth_r) {
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
        // A relay: I talks to R1, and R1 forwards I's AUTH to R2, which shares the secret.
        let (pi, pr1, pr2) = (PeerId::random(), PeerId::random(), PeerId::random());
        let auth = Secret::new("shared").unwrap().auth_key();
        let (init, hello) = Initiator::start(pi, pr1, test_key(0), auth.clone());
        let (_r1, ch1) = Responder::on_hello(pr1, pi, &hello, test_key(1)).unwrap();
        let (r2, _ch2) = Responder::on_hello(pr2, pi, &hello, test_key(2)).unwrap();
        let (_wait, auth_msg) = init.on_challenge(&ch1).unwrap();
        let err = r2.on_auth(&auth_msg, &auth).err().unwrap();
        assert_eq!(err.code, RejectCode::AuthFailed);
    }

    #[test]
    fn responder_proof_is_checked_by_the_initiator() {
        let (pi, pr) = (PeerId::random(), PeerId::random());
        let auth = Secret::new("s").unwrap().auth_key();
        let (init, hello) = Initiator::start(pi, pr, test_key(0), auth.clone());
        let (resp, ch) = Responder::on_hello(pr, pi, &hello, test_key(1)).unwrap();
        let (wait, auth_msg) = init.on_challenge(&ch).unwrap();
        let (_, parts) = resp.on_auth(&auth_msg, &auth).unwrap();
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
        let auth = Secret::new("s").unwrap().auth_key();
        let (_, mut hello) = Initiator::start(pi, pr, test_key(0), auth);
        hello.version = 2;
        let err = Responder::on_hello(pr, pi, &hello, test_key(1))
            .err()
            .unwrap();
        assert_eq!(err.code, RejectCode::UnsupportedVersion);
        hello.version = 1;
        hello.public_key.truncate(100);
        let err = Responder::on_hello(pr, pi, &hello, test_key(1))
            .err()
            .unwrap();
        assert_eq!(err.code, RejectCode::BadKey);
    }
}
