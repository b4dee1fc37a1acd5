//! The handshake (§5): the initiator side, and the responder side for nodes that open a
//! session to the spec peer.

use std::collections::HashMap;
use std::sync::Arc;

use libp2p::PeerId;
use noctua_chat::RejectCode;
use noctua_chat::wire::{Auth, AuthOk, Challenge, Content, Hello, Request, Response, Role};

use crate::*;

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
            // p2 compile-only stub: helper specpeer implements protocol 2 here.
            share: [0; 32],
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
            // p2 compile-only stub: helper specpeer implements protocol 2 here.
            share: [0; 32],
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
