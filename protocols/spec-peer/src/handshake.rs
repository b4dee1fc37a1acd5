//! The handshake (§5, protocol 2: CPace over ristretto255 plus RSA-OAEP key transport): the
//! initiator side, and the responder side for nodes that open a
//! session to the spec peer.

use std::collections::HashMap;
use std::sync::Arc;

use curve25519_dalek::scalar::Scalar;
use libp2p::PeerId;

use crate::*;

/// The initiator before `CHALLENGE`.
pub struct SpecInitiator {
    /// Our `PeerId` (I).
    pub local: PeerId,
    /// The responder's `PeerId` (R).
    pub remote: PeerId,
    /// `K_pw` of the secret we use (the open's secret).
    pub k_pw: [u8; 32],
    /// Our RSA key.
    pub rsa: Arc<rsa::PrivateKey>,
    /// `pub_i` as sent.
    pub pub_i: Vec<u8>,
    /// `hs_id`.
    pub hs_id: [u8; 16],
    /// `nonce_i`.
    pub nonce_i: [u8; 32],
    /// `y_i`.
    pub y_i: Scalar,
    /// `share_i = enc(y_i · g)`.
    pub share_i: [u8; 32],
    /// Display name we send in our `PROFILE`.
    pub name: String,
    /// Whether our `PROFILE` carries the lasting flag (§3.5).
    pub lasting: bool,
}

impl SpecInitiator {
    /// Fresh handshake state with `secret` (the responder's connection secret, as text bytes).
    pub fn new(local: PeerId, remote: PeerId, secret: &[u8], rsa: Arc<rsa::PrivateKey>) -> Self {
        let k_pw = k_pw(secret);
        let hs_id: [u8; 16] = random();
        let g = cpace_generator(&k_pw, &hs_id, &local.to_bytes(), &remote.to_bytes());
        let y_i = scalar();
        SpecInitiator {
            local,
            remote,
            k_pw,
            pub_i: public_der(&rsa),
            rsa,
            hs_id,
            nonce_i: random(),
            share_i: enc(&(y_i * g)),
            y_i,
            name: "Spec".into(),
            lasting: false,
        }
    }

    /// `HELLO(version=2, hs_id, nonce_i, pub_i, share_i)`.
    pub fn hello(&self) -> Request {
        self.hello_with(VERSION, self.share_i)
    }

    /// `HELLO` with any version byte.
    pub fn hello_with_version(&self, version: u8) -> Request {
        self.hello_with(version, self.share_i)
    }

    /// `HELLO` with any version byte and any `share`.
    pub fn hello_with(&self, version: u8, share: [u8; 32]) -> Request {
        Request::Hello(Hello {
            version,
            hs_id: self.hs_id,
            nonce: self.nonce_i,
            public_key: self.pub_i.clone(),
            share,
        })
    }

    /// Processes `CHALLENGE`: checks `pub_r` and `share_r`, computes `Z`, `th`,
    /// `session_id`, `K_conf`, picks `k_i` and builds `AUTH`. An error starting with
    /// `BAD_KEY` means `share_r` or `pub_r` is not acceptable (§5: I aborts with `BAD_KEY`).
    pub fn on_challenge(self, ch: &Challenge) -> Result<SpecAuthSent, String> {
        if ch.hs_id != self.hs_id {
            return Err("CHALLENGE for another hs_id".into());
        }
        parse_public_key(&ch.public_key).map_err(|e| format!("BAD_KEY: pub_r refused: {e}"))?;
        let share_r_point =
            dec(&ch.share).ok_or("BAD_KEY: share_r is not a canonical non-identity element")?;
        let z = dh(&self.y_i, &share_r_point).ok_or("AUTH_FAILED: Z is the identity")?;
        let th = transcript_hash(
            &self.hs_id,
            &self.local.to_bytes(),
            &self.remote.to_bytes(),
            &self.pub_i,
            &ch.public_key,
            &self.nonce_i,
            &ch.nonce,
            &self.share_i,
            &ch.share,
        );
        let session_id = session_id_of(&th);
        let k_conf = confirm_key(&th, &z);
        let k_i: [u8; 32] = random();
        let wrapped_i = oaep_wrap(&ch.public_key, &k_i)?;
        let mac_i = initiator_proof(&k_conf, &th, &wrapped_i);
        Ok(SpecAuthSent {
            init: self,
            pub_r: ch.public_key.clone(),
            nonce_r: ch.nonce,
            share_r: ch.share,
            th,
            session_id,
            z,
            k_conf,
            k_i,
            wrapped_i,
            mac_i,
        })
    }
}

/// `th` of §5.1 (protocol 2: the shares are the last two fields). `peer_*` are the binary
/// `PeerId`s (this function writes their `bytes16`).
#[allow(clippy::too_many_arguments)]
pub fn transcript_hash(
    hs_id: &[u8; 16],
    peer_i: &[u8],
    peer_r: &[u8],
    pub_i: &[u8],
    pub_r: &[u8],
    nonce_i: &[u8; 32],
    nonce_r: &[u8; 32],
    share_i: &[u8; 32],
    share_r: &[u8; 32],
) -> [u8; 32] {
    h(&[
        LABEL_HANDSHAKE,
        hs_id,
        &bytes16(peer_i),
        &bytes16(peer_r),
        &bytes16(pub_i),
        &bytes16(pub_r),
        nonce_i,
        nonce_r,
        share_i,
        share_r,
    ])
}

/// `session_id = H("noctua/chat/2 session id" || th)[0..16]`.
pub fn session_id_of(th: &[u8; 32]) -> [u8; 16] {
    let d = h(&[LABEL_SESSION_ID, th]);
    let mut sid = [0u8; 16];
    sid.copy_from_slice(&d[..16]);
    sid
}

/// `K_conf = HKDF-Expand(HKDF-Extract(salt = th, ikm = enc(Z)), "noctua/chat/2 confirm", 32)`.
pub fn confirm_key(th: &[u8; 32], z: &[u8; 32]) -> [u8; 32] {
    let prk_h = hkdf_extract(th, z);
    let mut k = [0u8; 32];
    k.copy_from_slice(&hkdf_expand(&prk_h, LABEL_CONFIRM, 32));
    k
}

/// `mac_i = HMAC(K_conf, "noctua/chat/2 initiator proof" || th || bytes16(wrapped_i))`.
pub fn initiator_proof(k_conf: &[u8; 32], th: &[u8; 32], wrapped_i: &[u8]) -> [u8; 32] {
    hmac(k_conf, &[LABEL_INITIATOR_PROOF, th, &bytes16(wrapped_i)])
}

/// `mac_r = HMAC(K_conf, "noctua/chat/2 responder proof" || th || bytes16(wrapped_i) || bytes16(wrapped_r))`.
pub fn responder_proof(
    k_conf: &[u8; 32],
    th: &[u8; 32],
    wrapped_i: &[u8],
    wrapped_r: &[u8],
) -> [u8; 32] {
    hmac(
        k_conf,
        &[
            LABEL_RESPONDER_PROOF,
            th,
            &bytes16(wrapped_i),
            &bytes16(wrapped_r),
        ],
    )
}

/// The epoch-0 keys of §5.5: `prk_0 = HKDF-Extract(salt = th, ikm = enc(Z) || k_i || k_r)`.
pub fn epoch0_keys(
    th: &[u8; 32],
    session_id: &[u8; 16],
    z: &[u8; 32],
    k_i: &[u8; 32],
    k_r: &[u8; 32],
) -> EpochKeys {
    let ikm = [&z[..], &k_i[..], &k_r[..]].concat();
    let prk_0 = hkdf_extract(th, &ikm);
    epoch_keys(&prk_0, session_id, 0)
}

/// The initiator after `AUTH`.
pub struct SpecAuthSent {
    /// The state before.
    pub init: SpecInitiator,
    /// `pub_r`.
    pub pub_r: Vec<u8>,
    /// `nonce_r`.
    pub nonce_r: [u8; 32],
    /// `share_r`.
    pub share_r: [u8; 32],
    /// Transcript hash.
    pub th: [u8; 32],
    /// Session id.
    pub session_id: [u8; 16],
    /// `enc(Z)`.
    pub z: [u8; 32],
    /// `K_conf`.
    pub k_conf: [u8; 32],
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
        responder_proof(&self.k_conf, &self.th, &self.wrapped_i, wrapped_r)
    }

    /// Processes `AUTH_OK`: verifies `mac_r` (constant time), unwraps `k_r`, derives the
    /// epoch-0 keys and opens R's `PROFILE` record (key confirmation).
    pub fn on_auth_ok(self, ok: &AuthOk) -> Result<SpecSession, String> {
        if ok.hs_id != self.init.hs_id {
            return Err("AUTH_OK for another hs_id".into());
        }
        let verified = hmac_verify(
            &self.k_conf,
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
        let keys = epoch0_keys(&self.th, &self.session_id, &self.z, &self.k_i, &k_r);
        let first_keys = keys.clone();

        let mut session = SpecSession {
            role: Role::Initiator,
            local: self.init.local,
            remote: self.init.remote,
            th: self.th,
            session_id: self.session_id,
            k_pw: self.init.k_pw,
            z: self.z,
            k_conf: self.k_conf,
            rsa: self.init.rsa.clone(),
            local_pub: self.init.pub_i.clone(),
            remote_pub: self.pub_r.clone(),
            name: self.init.name.clone(),
            lasting: self.init.lasting,
            remote_name: None,
            remote_flags: None,
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
            Content::Profile { name, flags } => {
                session.remote_name = Some(name);
                session.remote_flags = Some(flags);
            }
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
    /// `None` when `Z` is the identity: every `AUTH` then fails (§5).
    z: Option<[u8; 32]>,
    pub_i: Vec<u8>,
    pub_r: Vec<u8>,
}

/// The responder: answers `HELLO` and `AUTH` with our own connection secret.
pub struct SpecResponder {
    /// Our `PeerId` (R).
    pub local: PeerId,
    /// `K_pw` of our secret.
    pub k_pw: [u8; 32],
    /// Our RSA key.
    pub rsa: Arc<rsa::PrivateKey>,
    /// Display name in our `PROFILE`.
    pub name: String,
    /// Whether our `PROFILE` carries the lasting flag (§3.5).
    pub lasting: bool,
    pending: Option<PendingHandshake>,
}

impl SpecResponder {
    /// A responder whose connection secret is `secret` (text bytes).
    pub fn new(local: PeerId, secret: &[u8], rsa: Arc<rsa::PrivateKey>) -> Self {
        SpecResponder {
            local,
            k_pw: k_pw(secret),
            rsa,
            name: "Spec".into(),
            lasting: false,
            pending: None,
        }
    }

    /// Answers a `HELLO` from `remote` (§5.1): `UNSUPPORTED_VERSION`, `BAD_KEY` (RSA key or
    /// `share_i`), or `CHALLENGE` with our share; `Z` is computed now.
    pub fn on_hello(&mut self, remote: PeerId, hello: &Hello) -> Response {
        let reject = |code| Response::Reject { code, detail: 0 };
        if hello.version != VERSION {
            return reject(RejectCode::UnsupportedVersion);
        }
        if parse_public_key(&hello.public_key).is_err() {
            return reject(RejectCode::BadKey);
        }
        let Some(share_i) = dec(&hello.share) else {
            return reject(RejectCode::BadKey);
        };
        let g = cpace_generator(
            &self.k_pw,
            &hello.hs_id,
            &remote.to_bytes(),
            &self.local.to_bytes(),
        );
        let y_r = scalar();
        let share_r = enc(&(y_r * g));
        let z = dh(&y_r, &share_i);
        let nonce_r: [u8; 32] = random();
        let pub_r = public_der(&self.rsa);
        let th = transcript_hash(
            &hello.hs_id,
            &remote.to_bytes(),
            &self.local.to_bytes(),
            &hello.public_key,
            &pub_r,
            &hello.nonce,
            &nonce_r,
            &hello.share,
            &share_r,
        );
        self.pending = Some(PendingHandshake {
            remote,
            hs_id: hello.hs_id,
            th,
            z,
            pub_i: hello.public_key.clone(),
            pub_r: pub_r.clone(),
        });
        Response::Challenge(Challenge {
            hs_id: hello.hs_id,
            nonce: nonce_r,
            public_key: pub_r,
            share: share_r,
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
        let Some(z) = p.z else {
            return reject(RejectCode::AuthFailed);
        };
        let k_conf = confirm_key(&p.th, &z);
        let ok = hmac_verify(
            &k_conf,
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
        let mac_r = responder_proof(&k_conf, &p.th, &auth.wrapped, &wrapped_r);
        let session_id = session_id_of(&p.th);
        let keys = epoch0_keys(&p.th, &session_id, &z, &k_i, &k_r);
        let first_keys = keys.clone();
        let mut session = SpecSession {
            role: Role::Responder,
            local: self.local,
            remote,
            th: p.th,
            session_id,
            k_pw: self.k_pw,
            z,
            k_conf,
            rsa: self.rsa.clone(),
            local_pub: p.pub_r,
            remote_pub: p.pub_i,
            name: self.name.clone(),
            lasting: self.lasting,
            remote_name: None,
            remote_flags: None,
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
        let profile = session.profile();
        let record = session.seal(&profile);
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
