//! The `session` fuzz harness: two simulated peers, an initiator `I` and a responder `R`,
//! driven through the crate's real handshake and session state machines
//! (`noctua_chat::fuzzing`) by a list of operations decoded from the fuzz input.
//!
//! The simulation mirrors what `Behaviour` does with each message (SPEC.md §5-§7) and keeps
//! every message "on the network" in a pending list that the input delivers, drops,
//! duplicates, reorders, corrupts or replaces. Hostile operations also inject arbitrary
//! decoded requests, responses and record contents, sealed or not, and forge handshake proofs
//! the way a peer that knows the secret could.
//!
//! Invariants checked (a violation panics):
//! * nothing panics;
//! * a record is opened (passes authentication) at most once per receiver;
//! * a record that is not byte-for-byte one that a session sealed never passes
//!   authentication, and an opened record yields exactly the plaintext that was sealed;
//! * replay-window liveness: a genuine record of the receiver's current epoch, not seen
//!   before and inside the window, opens; one below the window is `OUT_OF_WINDOW`;
//! * when both sides have the same session and report the same epoch, a fresh record from
//!   each side opens on the other (checked by `Probe` and at the end of every input);
//! * counters only grow: epochs, refusal counters (and every refused `open` counts exactly
//!   once), and each side's `(epoch, seq)` of sealed records;
//! * a genuine `ACK` verifies while its epoch is current, a forged one never does;
//! * a handshake completes on `R` only for an `AUTH` that `I` produced, on `I` only for a
//!   session `R` created, and then with equal safety numbers; forged proofs computed per
//!   SPEC.md §5.2/§5.3 with garbage key material fail with `DECRYPT_FAILED` exactly.
//!
//! RSA private-key operations cost ~3 ms each, so an input gets a budget of
//! [`MAX_RSA_DECRYPTS`] calls that may decrypt (one handshake and two rotations); a message
//! that would exceed it is dropped instead, like a network loss.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use hmac::{Hmac, KeyInit, Mac};
use libp2p::PeerId;
use noctua_chat::fuzzing::{
    AuthKey, AwaitingAuthOk, Initiator, Responder, RsaKeyPair, Secret, Session, SessionParams, Slot,
};
use noctua_chat::wire::{
    self, Ack, Auth, AuthOk, Challenge, ChatMessage, Content, Hello, Record, Request, Response,
    Role,
};
use noctua_chat::{RejectCode, Rejections, SessionState};
use sha2::{Digest, Sha256};

/// Calls that may apply an RSA private key, per input.
pub const MAX_RSA_DECRYPTS: u32 = 6;
/// Operations read from one input (the rest is ignored).
pub const MAX_OPS: usize = 400;
/// Records sealed per input, at most.
const MAX_SEALS: usize = 4096;
/// Size of an RSA-2048 ciphertext.
const WRAPPED_LEN: usize = 256;
/// `max_message` used to decode hostile contents before sealing them.
const DECODE_MAX: usize = 1 << 16;

const I: usize = 0;
const R: usize = 1;

// ---------------------------------------------------------------------------------------
// Input encoding
// ---------------------------------------------------------------------------------------

/// One step of the simulation. `side`, `from` and `to` are taken modulo 2 (0 = `I`,
/// 1 = `R`); `idx` selects a pending message modulo their number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// `I` starts a handshake (at most twice per input).
    HsStart,
    /// Deliver a pending message (any of them: delivery order is the input's choice).
    Deliver { idx: u8 },
    /// Deliver a copy of a pending message and leave it pending (duplication).
    DeliverCopy { idx: u8 },
    /// Lose a pending message.
    Drop { idx: u8 },
    /// Flip bits of one byte of a pending message's encoding (`xor` 0 counts as 1).
    Corrupt { idx: u8, pos: u16, xor: u8 },
    /// Replace a pending message with these bytes, decoded in its direction.
    Replace { idx: u8, bytes: Vec<u8> },
    /// `side` sends a `CHAT` record of `1 + count % 4` messages.
    Chat { side: u8, count: u8, text: Vec<u8> },
    /// `side` seals `1 + n` chat records; only the last one reaches the network.
    Burst { side: u8, n: u8 },
    /// `side` starts a rotation (as on the user's request).
    Rotate { side: u8 },
    /// `side` starts a rotation if one is due (time or record count).
    MaybeRotate { side: u8 },
    /// Advance the virtual clock (see [`advance_step`]).
    Advance { step: u8, amount: u16 },
    /// `side` zeroizes its previous epoch if the grace window is over.
    Expire { side: u8 },
    /// `side` closes the session with `code`.
    Close { side: u8, code: u16 },
    /// `side` sends `PING`.
    Ping { side: u8 },
    /// An arbitrary request (decoded from `bytes`) arrives at `to` from a hostile sender.
    RawRequest { to: u8, bytes: Vec<u8> },
    /// An arbitrary response arrives at `to`, as the answer to a request chosen by `ctx`.
    RawResponse { to: u8, ctx: u8, bytes: Vec<u8> },
    /// `from` seals an arbitrary decoded content and sends it: an authenticated but
    /// misbehaving peer. A 1-byte public key becomes a real one, a 1-byte `wrapped` 256
    /// bytes.
    RawContent { from: u8, bytes: Vec<u8> },
    /// `from` seals arbitrary plaintext bytes (they may not decode).
    RawPlain { from: u8, bytes: Vec<u8> },
    /// Call `on_rekey_init`/`on_rekey_reply`/`on_rekey_commit` of `side` directly with an
    /// arbitrary decoded content (same substitutions as `RawContent`).
    DirectRekey { side: u8, bytes: Vec<u8> },
    /// A hostile `HELLO` with a real key reaches `R` (replacing its pending handshake).
    HostileHello { key: u8, fill: u8, version: u8 },
    /// Someone who knows `R`'s secret sends `R` an `AUTH` with a valid proof for `R`'s
    /// pending handshake but these bytes as key material.
    ForgeAuth { bytes: Vec<u8> },
    /// Someone who knows `I`'s secret answers `I`'s pending `AUTH` with a valid proof over
    /// these bytes as key material.
    ForgeAuthOk { bytes: Vec<u8> },
    /// Check that a fresh record from each side opens on the other, if both are in the
    /// same session and epoch.
    Probe,
    /// Swap two pending messages.
    Swap { a: u8, b: u8 },
}

const N_OPS: u8 = 24;

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    if b.len() < 255 {
        out.push(b.len() as u8);
    } else {
        let n = u16::try_from(b.len()).unwrap_or(u16::MAX);
        out.push(255);
        out.extend_from_slice(&n.to_be_bytes());
    }
    out.extend_from_slice(&b[..b.len().min(usize::from(u16::MAX))]);
}

impl Op {
    /// Appends the op's encoding (what [`run`] decodes).
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Op::HsStart => out.push(0),
            Op::Deliver { idx } => out.extend([1, *idx]),
            Op::DeliverCopy { idx } => out.extend([2, *idx]),
            Op::Drop { idx } => out.extend([3, *idx]),
            Op::Corrupt { idx, pos, xor } => {
                out.extend([4, *idx]);
                out.extend(pos.to_be_bytes());
                out.push(*xor);
            }
            Op::Replace { idx, bytes } => {
                out.extend([5, *idx]);
                put_bytes(out, bytes);
            }
            Op::Chat { side, count, text } => {
                out.extend([6, *side, *count]);
                put_bytes(out, text);
            }
            Op::Burst { side, n } => out.extend([7, *side, *n]),
            Op::Rotate { side } => out.extend([8, *side]),
            Op::MaybeRotate { side } => out.extend([9, *side]),
            Op::Advance { step, amount } => {
                out.extend([10, *step]);
                out.extend(amount.to_be_bytes());
            }
            Op::Expire { side } => out.extend([11, *side]),
            Op::Close { side, code } => {
                out.extend([12, *side]);
                out.extend(code.to_be_bytes());
            }
            Op::Ping { side } => out.extend([13, *side]),
            Op::RawRequest { to, bytes } => {
                out.extend([14, *to]);
                put_bytes(out, bytes);
            }
            Op::RawResponse { to, ctx, bytes } => {
                out.extend([15, *to, *ctx]);
                put_bytes(out, bytes);
            }
            Op::RawContent { from, bytes } => {
                out.extend([16, *from]);
                put_bytes(out, bytes);
            }
            Op::RawPlain { from, bytes } => {
                out.extend([17, *from]);
                put_bytes(out, bytes);
            }
            Op::DirectRekey { side, bytes } => {
                out.extend([18, *side]);
                put_bytes(out, bytes);
            }
            Op::HostileHello { key, fill, version } => out.extend([19, *key, *fill, *version]),
            Op::ForgeAuth { bytes } => {
                out.push(20);
                put_bytes(out, bytes);
            }
            Op::ForgeAuthOk { bytes } => {
                out.push(21);
                put_bytes(out, bytes);
            }
            Op::Probe => out.push(22),
            Op::Swap { a, b } => out.extend([23, *a, *b]),
        }
    }
}

/// The setup byte: bit 0 set = start with an established session made without a handshake
/// (fast, no RSA); bits 1-2 the replay window (64, 256, 100, 64); bits 3-4
/// `rotate_after_messages` (10 000, 3, 10, 1); bit 5 `max_message` 1 000 instead of
/// 65 536; bits 6-7 both set = `I` uses a wrong secret.
pub fn encode(setup: u8, ops: &[Op]) -> Vec<u8> {
    let mut out = vec![setup];
    for op in ops {
        op.encode(&mut out);
    }
    out
}

struct Reader<'a> {
    data: &'a [u8],
}

impl Reader<'_> {
    fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((b, rest)) => {
                self.data = rest;
                *b
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    fn bytes(&mut self) -> Vec<u8> {
        let mut n = usize::from(self.u8());
        if n == 255 {
            n = usize::from(self.u16());
        }
        let n = n.min(self.data.len());
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        head.to_vec()
    }

    fn op(&mut self) -> Op {
        match self.u8() % N_OPS {
            0 => Op::HsStart,
            1 => Op::Deliver { idx: self.u8() },
            2 => Op::DeliverCopy { idx: self.u8() },
            3 => Op::Drop { idx: self.u8() },
            4 => Op::Corrupt {
                idx: self.u8(),
                pos: self.u16(),
                xor: self.u8(),
            },
            5 => Op::Replace {
                idx: self.u8(),
                bytes: self.bytes(),
            },
            6 => Op::Chat {
                side: self.u8(),
                count: self.u8(),
                text: self.bytes(),
            },
            7 => Op::Burst {
                side: self.u8(),
                n: self.u8(),
            },
            8 => Op::Rotate { side: self.u8() },
            9 => Op::MaybeRotate { side: self.u8() },
            10 => Op::Advance {
                step: self.u8(),
                amount: self.u16(),
            },
            11 => Op::Expire { side: self.u8() },
            12 => Op::Close {
                side: self.u8(),
                code: self.u16(),
            },
            13 => Op::Ping { side: self.u8() },
            14 => Op::RawRequest {
                to: self.u8(),
                bytes: self.bytes(),
            },
            15 => Op::RawResponse {
                to: self.u8(),
                ctx: self.u8(),
                bytes: self.bytes(),
            },
            16 => Op::RawContent {
                from: self.u8(),
                bytes: self.bytes(),
            },
            17 => Op::RawPlain {
                from: self.u8(),
                bytes: self.bytes(),
            },
            18 => Op::DirectRekey {
                side: self.u8(),
                bytes: self.bytes(),
            },
            19 => Op::HostileHello {
                key: self.u8(),
                fill: self.u8(),
                version: self.u8(),
            },
            20 => Op::ForgeAuth {
                bytes: self.bytes(),
            },
            21 => Op::ForgeAuthOk {
                bytes: self.bytes(),
            },
            22 => Op::Probe,
            _ => Op::Swap {
                a: self.u8(),
                b: self.u8(),
            },
        }
    }
}

/// Virtual time steps, chosen around the defaults' edges (grace 30 s, rotation 60 s and
/// 63 s for the responder).
fn advance_step(step: u8, amount: u16) -> Duration {
    let ms = |n: u64| Duration::from_millis(n);
    match step % 16 {
        0 => ms(1),
        1 => ms(100),
        2 => ms(1_000),
        3 => ms(10_000),
        4 => ms(29_999),
        5 => ms(30_000),
        6 => ms(30_001),
        7 => ms(60_000),
        8 => ms(63_000),
        9 => ms(600_000),
        10 => ms(1_860_000),
        11 => ms(3_600_000),
        12 => ms(u64::from(amount)),
        13 => Duration::from_secs(u64::from(amount)),
        14 => ms(86_400_000),
        _ => Duration::ZERO,
    }
}

// ---------------------------------------------------------------------------------------
// Fixed material
// ---------------------------------------------------------------------------------------

/// Two RSA-2048 key pairs, generated once per process (generation takes ~0.1-1 s).
pub fn keys() -> &'static [Arc<RsaKeyPair>; 2] {
    static KEYS: OnceLock<[Arc<RsaKeyPair>; 2]> = OnceLock::new();
    KEYS.get_or_init(|| {
        let k = || Arc::new(RsaKeyPair::generate(2048).expect("RSA key generation"));
        [k(), k()]
    })
}

fn peer_id(n: u8) -> PeerId {
    // An identity multihash: a valid PeerId without key generation.
    PeerId::from_bytes(&[0x00, 0x05, b'f', b'u', b'z', b'z', n]).expect("identity multihash")
}

fn auth_key(secret: &str) -> AuthKey {
    AuthKey::from_secret(&Secret::new(secret).expect("valid secret"))
}

fn bytes16(h: &mut Sha256, v: &[u8]) {
    h.update((v.len() as u16).to_be_bytes());
    h.update(v);
}

/// The transcript hash of SPEC.md §5.1, computed independently of the crate.
fn transcript_hash(hello: &Hello, challenge: &Challenge, i: &PeerId, r: &PeerId) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"noctua/chat/1 handshake");
    h.update(hello.hs_id);
    bytes16(&mut h, &i.to_bytes());
    bytes16(&mut h, &r.to_bytes());
    bytes16(&mut h, &hello.public_key);
    bytes16(&mut h, &challenge.public_key);
    h.update(hello.nonce);
    h.update(challenge.nonce);
    h.finalize().into()
}

fn hmac(key: &AuthKey, parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key.as_bytes()).expect("any key");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

fn with_len16(v: &[u8]) -> Vec<u8> {
    let mut out = (v.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(v);
    out
}

/// Makes hostile contents reach deeper: a 1-byte public key becomes one of the real keys,
/// a 1-byte `wrapped` a 256-byte one (the size the RSA decryption accepts).
fn fix_up(content: &mut Content) {
    fn key(pk: &mut Vec<u8>) {
        if pk.len() == 1 {
            *pk = keys()[usize::from(pk[0] % 2)].public_der().to_vec();
        }
    }
    fn wrapped(w: &mut Vec<u8>) {
        if w.len() == 1 {
            *w = vec![w[0]; WRAPPED_LEN];
        }
    }
    match content {
        Content::RekeyInit { public_key, .. } => key(public_key),
        Content::RekeyReply {
            public_key,
            wrapped: w,
            ..
        } => {
            key(public_key);
            wrapped(w);
        }
        Content::RekeyCommit { wrapped: w, .. } => wrapped(w),
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------
// The simulation
// ---------------------------------------------------------------------------------------

type Sid = [u8; 16];

/// What a request was, so that its response can be handled as `Behaviour` does.
#[derive(Debug, Clone, Copy)]
enum Ctx {
    None,
    Chat { sid: Sid, epoch: u32, seq: u64 },
    Confirm { sid: Sid, epoch: u32, seq: u64 },
    RekeyInit { sid: Sid, new_epoch: u32 },
    RekeyCommit { sid: Sid, new_epoch: u32 },
}

/// A message in flight.
#[derive(Clone)]
enum Msg {
    Hello(Hello),
    Challenge(Challenge),
    Auth(Auth),
    AuthOk(AuthOk),
    /// `R` refused `I`'s handshake.
    HsReject,
    /// A `RECORD` request to `to`.
    Req {
        to: usize,
        rec: Record,
        ctx: Ctx,
    },
    /// The response to a request that `to` sent.
    Resp {
        to: usize,
        resp: Response,
        ctx: Ctx,
    },
}

impl Msg {
    fn is_request(&self) -> bool {
        matches!(self, Msg::Hello(_) | Msg::Auth(_) | Msg::Req { .. })
    }

    /// The wire encoding of the message body (for corruption).
    fn encode(&self) -> Vec<u8> {
        match self {
            Msg::Hello(h) => wire::encode_request(&Request::Hello(h.clone())),
            Msg::Auth(a) => wire::encode_request(&Request::Auth(a.clone())),
            Msg::Req { rec, .. } => wire::encode_request(&Request::Record(rec.clone())),
            Msg::Challenge(c) => wire::encode_response(&Response::Challenge(c.clone())),
            Msg::AuthOk(a) => wire::encode_response(&Response::AuthOk(a.clone())),
            Msg::Resp { resp, .. } => wire::encode_response(resp),
            Msg::HsReject => wire::encode_response(&Response::Reject {
                code: RejectCode::BadKey,
                detail: 0,
            }),
        }
    }

    /// This message with its body replaced by `bytes`, if they decode to something that
    /// can stand in its place; `None` means the receiver's codec refuses it (dropped).
    fn with_body(&self, bytes: &[u8]) -> Option<Msg> {
        if self.is_request() {
            match (self, wire::decode_request(bytes).ok()?) {
                (Msg::Hello(_), Request::Hello(h)) => Some(Msg::Hello(h)),
                (Msg::Auth(_), Request::Auth(a)) => Some(Msg::Auth(a)),
                (Msg::Req { to, ctx, .. }, Request::Record(rec)) => Some(Msg::Req {
                    to: *to,
                    rec,
                    ctx: *ctx,
                }),
                _ => None,
            }
        } else {
            match (self, wire::decode_response(bytes).ok()?) {
                (Msg::Challenge(_), Response::Challenge(c)) => Some(Msg::Challenge(c)),
                (Msg::AuthOk(_), Response::AuthOk(a)) => Some(Msg::AuthOk(a)),
                (Msg::Challenge(_) | Msg::AuthOk(_) | Msg::HsReject, Response::Reject { .. }) => {
                    Some(Msg::HsReject)
                }
                (Msg::Resp { to, ctx, .. }, resp) => Some(Msg::Resp {
                    to: *to,
                    resp,
                    ctx: *ctx,
                }),
                _ => None,
            }
        }
    }
}

enum InitState {
    Idle,
    Started(Initiator, Hello),
    Awaiting(AwaitingAuthOk, Transcript),
}

struct Transcript {
    hello: Hello,
    challenge: Challenge,
    auth: Auth,
}

struct PendingHandshake {
    responder: Responder,
    hello: Hello,
    challenge: Challenge,
}

/// A record some session sealed.
struct Sealed {
    id: usize,
    sender: usize,
    plain: Vec<u8>,
}

/// Reference model of one replay window.
#[derive(Default)]
struct WindowModel {
    top: u64,
    seen: BTreeSet<u64>,
}

struct Snapshot {
    sid: Sid,
    epoch: u32,
    rejections: Rejections,
}

struct Sim {
    base: Instant,
    clock: Duration,
    params: SessionParams,
    window: u64,
    auth: [AuthKey; 2],
    peers: [PeerId; 2],
    sess: [Option<Session>; 2],
    /// The handshake id that produced each side's session.
    hs_of: [Option<[u8; 16]>; 2],
    init: InitState,
    pending: Option<PendingHandshake>,
    hs_starts: u8,
    net: Vec<Msg>,
    rsa_budget: u32,
    seals: usize,
    next_msg_id: u64,
    /// Every record sealed, by its encoding.
    genuine: HashMap<Vec<u8>, Sealed>,
    /// (receiver, record id) of every record that passed authentication.
    accepted: HashSet<(usize, usize)>,
    windows: HashMap<(usize, Sid, u32), WindowModel>,
    /// Every ACK made, by encoding, with the side that made it.
    genuine_acks: HashMap<Vec<u8>, usize>,
    /// Every AUTH `I` made, and the key material in them.
    genuine_auths: HashSet<Vec<u8>>,
    genuine_wrapped: HashSet<Vec<u8>>,
    /// Session ids `R` created, with their safety numbers.
    r_sessions: HashMap<Sid, String>,
    last_seal: HashMap<(usize, Sid), (u32, u64)>,
    snapshots: [Option<Snapshot>; 2],
}

impl Sim {
    fn new(setup: u8) -> Self {
        let window = [64usize, 256, 100, 64][usize::from((setup >> 1) & 3)];
        let params = SessionParams {
            window,
            grace: Duration::from_secs(30),
            max_message: if setup & 0x20 != 0 { 1000 } else { 65536 },
            rotate_every: Duration::from_secs(60),
            rotate_after_messages: [10_000, 3, 10, 1][usize::from((setup >> 3) & 3)],
        };
        let wrong_secret = setup & 0xc0 == 0xc0;
        let auth = [
            auth_key(if wrong_secret { "guess" } else { "s3cret" }),
            auth_key("s3cret"),
        ];
        let peers = [peer_id(1), peer_id(2)];
        let base = Instant::now();
        let mut sim = Sim {
            base,
            clock: Duration::ZERO,
            window: (window.clamp(64, 1 << 16).div_ceil(64) * 64) as u64,
            params,
            auth,
            peers,
            sess: [None, None],
            hs_of: [None, None],
            init: InitState::Idle,
            pending: None,
            hs_starts: 0,
            net: Vec::new(),
            rsa_budget: MAX_RSA_DECRYPTS,
            seals: 0,
            next_msg_id: 1,
            genuine: HashMap::new(),
            accepted: HashSet::new(),
            windows: HashMap::new(),
            genuine_acks: HashMap::new(),
            genuine_auths: HashSet::new(),
            genuine_wrapped: HashSet::new(),
            r_sessions: HashMap::new(),
            last_seal: HashMap::new(),
            snapshots: [None, None],
        };
        if setup & 1 != 0 {
            use noctua_chat::fuzzing::Established;
            let sid = [0x5a; 16];
            for (side, role) in [(I, Role::Initiator), (R, Role::Responder)] {
                let est = Established::synthetic(role, [7; 32], sid);
                let mut s = Session::new(sim.peers[1 - side], est, sim.params.clone(), base);
                s.confirm();
                sim.sess[side] = Some(s);
            }
        }
        sim
    }

    fn now(&self) -> Instant {
        self.base + self.clock
    }

    fn take_rsa(&mut self, wrapped_len: usize) -> bool {
        if wrapped_len != WRAPPED_LEN {
            return true; // refused before any private-key operation
        }
        if self.rsa_budget == 0 {
            return false;
        }
        self.rsa_budget -= 1;
        true
    }

    fn pick(&self, idx: u8) -> Option<usize> {
        (!self.net.is_empty()).then(|| usize::from(idx) % self.net.len())
    }

    // ----- sealing and opening, with the invariants -----

    /// Seals on `side`: a content, or raw plaintext bytes.
    fn seal(&mut self, side: usize, content: Option<&Content>, raw: Vec<u8>) -> Option<Record> {
        if self.seals >= MAX_SEALS {
            return None;
        }
        self.seals += 1;
        let now = self.now();
        let s = self.sess[side].as_mut()?;
        let (rec, plain) = match content {
            Some(c) => (s.seal(c, now)?, wire::encode_content(c)),
            None => (s.seal_bytes(raw.clone(), now)?, raw),
        };
        assert_eq!(rec.session_id, s.id());
        assert_eq!(
            rec.epoch,
            s.epoch(),
            "sealed under another epoch than current"
        );
        assert_eq!(rec.sender, s.role());
        assert_eq!(rec.sealed.len(), plain.len() + wire::AEAD_TAG_LEN);
        let key = (side, s.id());
        if let Some(&(e, q)) = self.last_seal.get(&key) {
            if rec.epoch == e {
                assert_eq!(rec.seq, q + 1, "sequence numbers must be consecutive");
            } else {
                assert!(rec.epoch > e, "epoch went back: {e} -> {}", rec.epoch);
                assert_eq!(rec.seq, 0, "a new epoch starts at seq 0");
            }
        }
        self.last_seal.insert(key, (rec.epoch, rec.seq));
        let id = self.genuine.len();
        let enc = wire::encode_request(&Request::Record(rec.clone()));
        self.genuine.insert(
            enc,
            Sealed {
                id,
                sender: side,
                plain,
            },
        );
        Some(rec)
    }

    /// `Session::open` on `side`, checking authentication, at-most-once and the window.
    fn open(&mut self, side: usize, rec: &Record) -> Option<Result<(Content, Slot), RejectCode>> {
        let now = self.now();
        let window = self.window;
        let s = self.sess[side].as_mut()?;
        let enc = wire::encode_request(&Request::Record(rec.clone()));
        let info = self.genuine.get(&enc);
        // What the window model says about a genuine record of the current epoch.
        let model_key = (side, s.id(), rec.epoch);
        let expectation = match info {
            Some(info)
                if info.sender != side
                    && rec.session_id == s.id()
                    && rec.epoch == s.epoch()
                    && s.state() != SessionState::Closing =>
            {
                let m = self.windows.get(&model_key);
                let top = m.map_or(0, |m| m.top);
                if m.is_some_and(|m| m.seen.contains(&rec.seq)) {
                    Some("refused as replayed")
                } else if top > 0 && rec.seq + window < top {
                    Some("out of window")
                } else {
                    Some("accepted")
                }
            }
            _ => None,
        };
        let before = s.rejections();
        let result = s.open(rec, now).map_err(|r| r.code);
        let after = s.rejections();
        match &result {
            Ok(_) => assert_eq!(before, after, "an accepted record changed the counters"),
            Err(_) => assert_eq!(
                after.total(),
                before.total() + 1,
                "a refused record must be counted once"
            ),
        }
        // Authentication passed: accepted, or refused only after decryption.
        let authentic = match &result {
            Ok(_) => true,
            Err(code) => matches!(code, RejectCode::Malformed | RejectCode::TooLarge),
        };
        match expectation {
            Some("accepted") => assert!(
                authentic,
                "a fresh genuine record inside the window was refused: {result:?} \
                 (epoch {}, seq {})",
                rec.epoch, rec.seq
            ),
            Some("out of window") => assert_eq!(
                result.as_ref().err(),
                Some(&RejectCode::OutOfWindow),
                "seq {} below the window",
                rec.seq
            ),
            Some(_) => assert!(
                matches!(result, Err(RejectCode::Replayed | RejectCode::OutOfWindow)),
                "a replay was not refused as such: {result:?}"
            ),
            None => {}
        }
        if authentic {
            let Some(info) = info else {
                panic!(
                    "a record no session sealed passed authentication: {result:?} \
                     (epoch {}, seq {})",
                    rec.epoch, rec.seq
                );
            };
            assert!(
                self.accepted.insert((side, info.id)),
                "record {} (epoch {}, seq {}) opened twice by side {side}",
                info.id,
                rec.epoch,
                rec.seq
            );
            if let Ok((content, _)) = &result {
                assert_eq!(
                    wire::encode_content(content),
                    info.plain,
                    "opened plaintext differs from the sealed one"
                );
            }
            let m = self.windows.entry(model_key).or_default();
            m.seen.insert(rec.seq);
            m.top = m.top.max(rec.seq + 1);
        }
        Some(result)
    }

    fn note_ack(&mut self, side: usize, ack: &Ack) {
        self.genuine_acks
            .insert(wire::encode_response(&Response::Ack(ack.clone())), side);
    }

    // ----- invariants over time -----

    fn check_counters(&mut self) {
        for side in [I, R] {
            let Some(s) = self.sess[side].as_ref() else {
                self.snapshots[side] = None;
                continue;
            };
            let snap = Snapshot {
                sid: s.id(),
                epoch: s.epoch(),
                rejections: s.rejections(),
            };
            if let Some(old) = &self.snapshots[side] {
                if old.sid == snap.sid {
                    assert!(snap.epoch >= old.epoch, "epoch went back");
                    let (a, b) = (&old.rejections, &snap.rejections);
                    assert!(
                        b.tampered >= a.tampered
                            && b.replayed >= a.replayed
                            && b.out_of_window >= a.out_of_window
                            && b.wrong_epoch >= a.wrong_epoch
                            && b.reflected >= a.reflected
                            && b.malformed >= a.malformed,
                        "a refusal counter went down: {a:?} -> {b:?}"
                    );
                }
            }
            self.snapshots[side] = Some(snap);
        }
    }

    /// Both sides in the same session and epoch: fresh records must open both ways.
    fn probe(&mut self) {
        let (Some(i), Some(r)) = (self.sess[I].as_ref(), self.sess[R].as_ref()) else {
            return;
        };
        if i.id() != r.id()
            || i.epoch() != r.epoch()
            || i.state() == SessionState::Closing
            || r.state() == SessionState::Closing
        {
            return;
        }
        let epoch = i.epoch();
        for (from, to) in [(I, R), (R, I)] {
            let content = self.chat_content(1, b"probe");
            let Some(rec) = self.seal(from, Some(&content), Vec::new()) else {
                return; // out of seals for this input
            };
            let result = self.open(to, &rec).expect("session exists");
            assert!(
                matches!(result, Ok((_, Slot::Current))),
                "both sides report epoch {epoch} but a fresh record from side {from} does \
                 not open on side {to}: {result:?}"
            );
        }
    }

    fn chat_content(&mut self, count: usize, text: &[u8]) -> Content {
        let text = String::from_utf8_lossy(&text[..text.len().min(300)]).into_owned();
        let msgs = (0..count)
            .map(|_| {
                self.next_msg_id += 1;
                ChatMessage {
                    id: self.next_msg_id,
                    sent_at_ms: 0,
                    text: text.clone(),
                }
            })
            .collect();
        Content::Chat(msgs)
    }

    // ----- local actions -----

    fn send_chat(&mut self, side: usize, count: usize, text: &[u8]) {
        if !self.sess[side].as_ref().is_some_and(Session::is_open) {
            return; // the behaviour queues until the session is active
        }
        let content = self.chat_content(count, text);
        self.send_content(side, &content);
    }

    /// Seals `content` on `side` and puts it on the network with the matching context.
    fn send_content(&mut self, side: usize, content: &Content) {
        let Some(rec) = self.seal(side, Some(content), Vec::new()) else {
            return;
        };
        let ctx = match content {
            Content::RekeyInit { new_epoch, .. } => Ctx::RekeyInit {
                sid: rec.session_id,
                new_epoch: *new_epoch,
            },
            Content::RekeyCommit { new_epoch, .. } => Ctx::RekeyCommit {
                sid: rec.session_id,
                new_epoch: *new_epoch,
            },
            _ => Ctx::Chat {
                sid: rec.session_id,
                epoch: rec.epoch,
                seq: rec.seq,
            },
        };
        self.net.push(Msg::Req {
            to: 1 - side,
            rec,
            ctx,
        });
    }

    fn rotate(&mut self, side: usize) {
        let now = self.now();
        let Some(s) = self.sess[side].as_mut() else {
            return;
        };
        if let Some(init) = s.begin_rotation(keys()[side].clone(), now) {
            assert_eq!(s.state(), SessionState::Rotating);
            self.send_content(side, &init);
        }
    }

    fn maybe_rotate(&mut self, side: usize) {
        let now = self.now();
        if self.sess[side]
            .as_ref()
            .is_some_and(|s| s.rotation_due(now))
        {
            self.rotate(side);
        }
    }

    /// `Behaviour::close` with a notification: `CLOSE` if still open, then closing.
    fn close(&mut self, side: usize, code: RejectCode) {
        let Some(s) = self.sess[side].as_ref() else {
            return;
        };
        if s.is_open() {
            self.send_content(
                side,
                &Content::Close {
                    code: code.to_u16(),
                },
            );
        }
        if let Some(s) = self.sess[side].as_mut() {
            s.set_closing();
        }
    }

    // ----- handshake -----

    fn hs_start(&mut self) {
        if !matches!(self.init, InitState::Idle) || self.hs_starts >= 2 {
            return;
        }
        self.hs_starts += 1;
        let (init, hello) = Initiator::start(
            self.peers[I],
            self.peers[R],
            keys()[I].clone(),
            &self.auth[I],
        );
        assert_eq!(hello.version, wire::VERSION);
        assert_eq!(init.hs_id(), hello.hs_id);
        self.net.push(Msg::Hello(hello.clone()));
        self.init = InitState::Started(init, hello);
    }

    /// `R` receives a `HELLO`; returns the `CHALLENGE` if it accepted it.
    fn r_on_hello(&mut self, hello: &Hello) -> Option<Challenge> {
        match Responder::on_hello(self.peers[R], self.peers[I], hello, keys()[R].clone()) {
            Ok((responder, challenge)) => {
                assert_eq!(responder.hs_id(), hello.hs_id);
                assert_eq!(challenge.hs_id, hello.hs_id);
                assert_eq!(challenge.public_key, keys()[R].public_der());
                // A new HELLO from the peer replaces its pending handshake.
                self.pending = Some(PendingHandshake {
                    responder,
                    hello: hello.clone(),
                    challenge: challenge.clone(),
                });
                Some(challenge)
            }
            Err(e) => {
                assert!(
                    matches!(e.code, RejectCode::UnsupportedVersion | RejectCode::BadKey),
                    "unexpected HELLO refusal {e:?}"
                );
                None
            }
        }
    }

    /// `R` receives an `AUTH`; returns the `AUTH_OK` if the handshake completed, and the
    /// error code otherwise (`None` when dropped for the RSA budget).
    fn r_on_auth(&mut self, auth: &Auth) -> Option<Result<AuthOk, RejectCode>> {
        let Some(p) = self.pending.take_if(|p| p.responder.hs_id() == auth.hs_id) else {
            return Some(Err(RejectCode::UnknownHandshake));
        };
        if !self.take_rsa(auth.wrapped.len()) {
            self.pending = Some(p);
            return None;
        }
        let now = self.now();
        match p.responder.on_auth(auth, &self.auth[R]) {
            Ok((est, parts)) => {
                let enc = wire::encode_request(&Request::Auth(auth.clone()));
                assert!(
                    self.genuine_auths.contains(&enc)
                        || self.genuine_wrapped.contains(&auth.wrapped),
                    "R completed a handshake for an AUTH that I did not make"
                );
                assert_eq!(est.role(), Role::Responder);
                let sid = est.session_id();
                self.r_sessions.insert(sid, est.safety_number().to_string());
                let s = Session::new(self.peers[I], est, self.params.clone(), now);
                assert_eq!(s.state(), SessionState::Handshaking);
                let profile = Content::Profile { name: "R".into() };
                // The new session replaces any older one at once (SPEC.md §5.7).
                let old = self.sess[R].replace(s);
                let Some(record) = self.seal(R, Some(&profile), Vec::new()) else {
                    // Out of seals: give up this handshake.
                    self.sess[R] = old;
                    return Some(Err(RejectCode::BadState));
                };
                self.hs_of[R] = Some(auth.hs_id);
                Some(Ok(AuthOk {
                    hs_id: auth.hs_id,
                    wrapped: parts.wrapped,
                    mac: parts.mac,
                    record,
                }))
            }
            Err(e) => Some(Err(e.code)),
        }
    }

    /// `I` receives a `CHALLENGE`.
    fn i_on_challenge(&mut self, ch: &Challenge) {
        let InitState::Started(init, hello) = std::mem::replace(&mut self.init, InitState::Idle)
        else {
            return; // an answer to nothing pending: ignored
        };
        match init.on_challenge(ch) {
            Ok((wait, auth)) => {
                assert_eq!(auth.hs_id, hello.hs_id);
                self.genuine_auths
                    .insert(wire::encode_request(&Request::Auth(auth.clone())));
                self.genuine_wrapped.insert(auth.wrapped.clone());
                self.net.push(Msg::Auth(auth.clone()));
                self.init = InitState::Awaiting(
                    wait,
                    Transcript {
                        hello,
                        challenge: ch.clone(),
                        auth,
                    },
                );
            }
            Err(e) => assert!(
                matches!(e.code, RejectCode::UnknownHandshake | RejectCode::BadKey),
                "unexpected CHALLENGE refusal {e:?}"
            ),
        }
    }

    /// `I` receives an `AUTH_OK`; `forged` is set for one made by `ForgeAuthOk`.
    fn i_on_auth_ok(&mut self, ok: &AuthOk, forged: bool) {
        if !matches!(self.init, InitState::Awaiting(..)) || !self.take_rsa(ok.wrapped.len()) {
            return;
        }
        let InitState::Awaiting(wait, tr) = std::mem::replace(&mut self.init, InitState::Idle)
        else {
            return;
        };
        let now = self.now();
        let sid = wait.session_id();
        let est = match wait.on_auth_ok(ok) {
            Ok(est) => est,
            Err(e) => {
                if forged {
                    assert_eq!(
                        e.code,
                        RejectCode::DecryptFailed,
                        "a proof made per SPEC.md §5.3 was refused: {e:?}"
                    );
                }
                return;
            }
        };
        assert!(!forged || self.genuine_wrapped.contains(&ok.wrapped));
        assert_eq!(est.session_id(), sid);
        assert_eq!(est.role(), Role::Initiator);
        let safety = est.safety_number().to_string();
        match self.r_sessions.get(&sid) {
            Some(r_safety) => assert_eq!(
                *r_safety, safety,
                "the two ends of a session show different safety numbers"
            ),
            None => panic!("I completed a handshake that R never completed"),
        }
        let _ = tr;
        // Key confirmation: R's PROFILE must open under the new keys.
        let s = Session::new(self.peers[R], est, self.params.clone(), now);
        let old = self.sess[I].replace(s);
        let rec = &ok.record;
        let well_formed = rec.session_id == sid
            && rec.epoch == 0
            && rec.sender == Role::Responder
            && rec.seq == 0;
        let confirmed = well_formed
            && matches!(
                self.open(I, rec),
                Some(Ok((Content::Profile { .. }, Slot::Current)))
            );
        if !confirmed {
            self.sess[I] = old;
            return;
        }
        let profile = Content::Profile { name: "I".into() };
        let Some(rec) = self.seal(I, Some(&profile), Vec::new()) else {
            self.sess[I] = old;
            return;
        };
        self.hs_of[I] = Some(ok.hs_id);
        self.net.push(Msg::Req {
            to: R,
            ctx: Ctx::Confirm {
                sid,
                epoch: rec.epoch,
                seq: rec.seq,
            },
            rec,
        });
    }

    fn forge_auth(&mut self, wrapped: Vec<u8>) {
        let Some(p) = self.pending.as_ref() else {
            return;
        };
        let mut wrapped = wrapped;
        if wrapped.len() == 1 {
            wrapped = vec![wrapped[0]; WRAPPED_LEN];
        }
        let th = transcript_hash(&p.hello, &p.challenge, &self.peers[I], &self.peers[R]);
        let mac = hmac(
            &self.auth[R],
            &[b"noctua/chat/1 initiator proof", &th, &with_len16(&wrapped)],
        );
        let auth = Auth {
            hs_id: p.hello.hs_id,
            wrapped,
            mac,
        };
        match self.r_on_auth(&auth) {
            None => {}
            Some(Ok(_)) => assert!(
                self.genuine_wrapped.contains(&auth.wrapped),
                "garbage key material accepted"
            ),
            Some(Err(code)) => assert_eq!(
                code,
                RejectCode::DecryptFailed,
                "a proof made per SPEC.md §5.2 was refused"
            ),
        }
    }

    fn forge_auth_ok(&mut self, wrapped: Vec<u8>) {
        let InitState::Awaiting(_, tr) = &self.init else {
            return;
        };
        let mut wrapped = wrapped;
        if wrapped.len() == 1 {
            wrapped = vec![wrapped[0]; WRAPPED_LEN];
        }
        let th = transcript_hash(&tr.hello, &tr.challenge, &self.peers[I], &self.peers[R]);
        let mac = hmac(
            &self.auth[I],
            &[
                b"noctua/chat/1 responder proof",
                &th,
                &with_len16(&tr.auth.wrapped),
                &with_len16(&wrapped),
            ],
        );
        let ok = AuthOk {
            hs_id: tr.hello.hs_id,
            wrapped,
            mac,
            record: Record {
                session_id: [0; 16],
                epoch: 0,
                sender: Role::Responder,
                seq: 0,
                sealed: vec![0; 16],
            },
        };
        self.i_on_auth_ok(&ok, true);
    }

    // ----- delivery -----

    fn deliver(&mut self, msg: Msg) {
        match msg {
            Msg::Hello(hello) => {
                let reply = match self.r_on_hello(&hello) {
                    Some(ch) => Msg::Challenge(ch),
                    None => Msg::HsReject,
                };
                self.net.push(reply);
            }
            Msg::Challenge(ch) => self.i_on_challenge(&ch),
            Msg::Auth(auth) => match self.r_on_auth(&auth) {
                Some(Ok(ok)) => self.net.push(Msg::AuthOk(ok)),
                Some(Err(_)) => self.net.push(Msg::HsReject),
                None => {}
            },
            Msg::AuthOk(ok) => self.i_on_auth_ok(&ok, false),
            Msg::HsReject => {
                if matches!(self.init, InitState::Started(..) | InitState::Awaiting(..)) {
                    self.init = InitState::Idle;
                }
            }
            Msg::Req { to, rec, ctx } => self.on_request(to, &rec, ctx, true),
            Msg::Resp { to, resp, ctx } => self.on_response(to, resp, ctx),
        }
    }

    /// Mirrors `Behaviour::on_record`; answers go back to the sender if `reply`.
    fn on_request(&mut self, x: usize, rec: &Record, ctx: Ctx, reply: bool) {
        let now = self.now();
        let answer = |sim: &mut Sim, resp: Response| {
            if reply {
                sim.net.push(Msg::Resp {
                    to: 1 - x,
                    resp,
                    ctx,
                });
            }
        };
        let reject = |code: RejectCode| Response::Reject { code, detail: 0 };
        if !self.sess[x]
            .as_ref()
            .is_some_and(|s| s.id() == rec.session_id)
        {
            return answer(self, reject(RejectCode::UnknownSession));
        }
        let (content, mut slot) = match self.open(x, rec).expect("session exists") {
            Ok(ok) => ok,
            Err(code) => return answer(self, reject(code)),
        };
        let s = self.sess[x].as_mut().expect("session exists");
        if slot == Slot::Next {
            let before = s.epoch();
            if s.promote_next(now) {
                assert_eq!(s.epoch(), rec.epoch, "promoted to another epoch");
                assert!(s.epoch() > before);
                slot = Slot::Current;
            }
        }
        let state = s.state();
        let ack = s.ack(slot, rec.seq);
        if let Some(a) = &ack {
            assert_eq!(
                (a.session_id, a.epoch, a.seq),
                (rec.session_id, rec.epoch, rec.seq)
            );
            self.note_ack(x, a);
        }
        let ack_or_stale = |ack: Option<Ack>| match ack {
            Some(a) => Response::Ack(a),
            None => reject(RejectCode::StaleEpoch),
        };
        let s = self.sess[x].as_mut().expect("session exists");
        match content {
            Content::Profile { .. }
                if state == SessionState::Handshaking && s.role() == Role::Responder =>
            {
                s.confirm();
                answer(self, ack_or_stale(ack));
            }
            _ if state == SessionState::Handshaking => {
                s.note_refused(RejectCode::BadState);
                answer(self, reject(RejectCode::BadState));
            }
            Content::Chat(messages) => {
                s.count_extra_messages((messages.len() as u64).saturating_sub(1));
                answer(self, ack_or_stale(ack));
                self.maybe_rotate(x);
            }
            Content::Ping => answer(self, ack_or_stale(ack)),
            Content::Close { .. } => {
                s.set_closing();
                answer(self, ack_or_stale(ack));
            }
            Content::RekeyInit {
                new_epoch,
                nonce,
                public_key,
            } => {
                let epoch = s.epoch();
                match s.on_rekey_init(new_epoch, nonce, &public_key, keys()[x].clone(), now) {
                    Ok(reply_content) => {
                        assert_eq!(new_epoch, epoch + 1);
                        assert_eq!(s.state(), SessionState::Rotating);
                        match self.seal(x, Some(&reply_content), Vec::new()) {
                            Some(r) => answer(self, Response::Reply(r)),
                            None => self.close(x, RejectCode::BadState),
                        }
                    }
                    Err(e) => {
                        assert!(!e.fatal);
                        if e.code != RejectCode::RotationConflict {
                            s.note_refused(e.code);
                        }
                        answer(self, reject(e.code));
                    }
                }
            }
            Content::RekeyCommit { new_epoch, wrapped } => {
                if !self.take_rsa(wrapped.len()) {
                    return; // dropped: no answer
                }
                let s = self.sess[x].as_mut().expect("session exists");
                let before = s.epoch();
                match s.on_rekey_commit(new_epoch, &wrapped, now) {
                    Ok(()) => {
                        assert_eq!(s.epoch(), new_epoch);
                        assert_eq!(new_epoch, before + 1);
                        let done = Content::RekeyDone { new_epoch };
                        match self.seal(x, Some(&done), Vec::new()) {
                            Some(r) => answer(self, Response::Reply(r)),
                            None => self.close(x, RejectCode::BadState),
                        }
                    }
                    Err(e) => {
                        s.note_refused(e.code);
                        answer(self, reject(e.code));
                        if e.fatal {
                            self.close(x, e.code);
                        }
                    }
                }
            }
            Content::Profile { .. } | Content::RekeyReply { .. } | Content::RekeyDone { .. } => {
                s.note_refused(RejectCode::BadState);
                answer(self, reject(RejectCode::BadState));
            }
        }
    }

    /// Mirrors `Behaviour`'s handling of responses to records that `y` sent.
    fn on_response(&mut self, y: usize, resp: Response, ctx: Ctx) {
        let now = self.now();
        let session_is =
            |sim: &Sim, sid: &Sid| sim.sess[y].as_ref().is_some_and(|s| s.id() == *sid);
        match ctx {
            Ctx::None => {}
            Ctx::Chat { sid, epoch, seq } | Ctx::Confirm { sid, epoch, seq } => {
                if !session_is(self, &sid) {
                    return;
                }
                let Response::Ack(ack) = resp else {
                    return;
                };
                let s = self.sess[y].as_mut().expect("checked");
                let valid = s.verify_ack(epoch, seq, &ack);
                let enc = wire::encode_response(&Response::Ack(ack.clone()));
                match self.genuine_acks.get(&enc) {
                    Some(&maker) => {
                        if maker == 1 - y
                            && (ack.session_id, ack.epoch, ack.seq) == (sid, epoch, seq)
                            && s.epoch() == epoch
                        {
                            assert!(valid, "a genuine ACK of the current epoch did not verify");
                        }
                        if maker == y {
                            assert!(!valid, "our own ACK verified as the peer's");
                        }
                    }
                    None => assert!(!valid, "a forged ACK verified"),
                }
                if valid && matches!(ctx, Ctx::Confirm { .. }) {
                    s.confirm();
                }
            }
            Ctx::RekeyInit { sid, new_epoch } => {
                if !session_is(self, &sid) {
                    return;
                }
                let s = self.sess[y].as_mut().expect("checked");
                let result = match resp {
                    Response::Reply(rec) if rec.session_id == sid => {
                        let wrapped_len = match self.peek_content(y, &rec) {
                            Some(Content::RekeyReply { wrapped, .. }) => wrapped.len(),
                            _ => 0,
                        };
                        if !self.take_rsa(wrapped_len) {
                            return;
                        }
                        match self.open(y, &rec).expect("session exists") {
                            Ok((content, _)) => {
                                let s = self.sess[y].as_mut().expect("checked");
                                s.on_rekey_reply(&content).map_err(|_| ())
                            }
                            Err(_) => Err(()),
                        }
                    }
                    Response::Reject { .. } if !s.is_initiating(new_epoch) => return,
                    Response::Reject {
                        code: RejectCode::RotationConflict,
                        ..
                    } => {
                        s.abandon_rotation(new_epoch, now, Duration::from_secs(10));
                        return;
                    }
                    _ => Err(()),
                };
                match result {
                    Ok(commit) => {
                        let Content::RekeyCommit { new_epoch: e, .. } = &commit else {
                            panic!("on_rekey_reply answered {commit:?}");
                        };
                        assert_eq!(*e, new_epoch);
                        self.send_content(y, &commit);
                    }
                    Err(()) => self.close(y, RejectCode::BadState),
                }
            }
            Ctx::RekeyCommit { sid, new_epoch } => {
                if !session_is(self, &sid) {
                    return;
                }
                let ok = match resp {
                    Response::Reply(rec) if rec.session_id == sid => {
                        match self.open(y, &rec).expect("session exists") {
                            Ok((Content::RekeyDone { new_epoch: e }, slot)) if e == new_epoch => {
                                if slot == Slot::Next {
                                    let s = self.sess[y].as_mut().expect("checked");
                                    assert!(s.promote_next(now));
                                    assert_eq!(s.epoch(), new_epoch);
                                }
                                true
                            }
                            _ => false,
                        }
                    }
                    _ => false,
                };
                if !ok {
                    self.close(y, RejectCode::BadState);
                }
            }
        }
    }

    /// The content of a genuine record, without opening it (to budget RSA work).
    fn peek_content(&self, _side: usize, rec: &Record) -> Option<Content> {
        let enc = wire::encode_request(&Request::Record(rec.clone()));
        let info = self.genuine.get(&enc)?;
        wire::decode_content(&info.plain, DECODE_MAX).ok()
    }

    // ----- hostile inputs -----

    fn raw_request(&mut self, to: usize, bytes: &[u8]) {
        let Ok(req) = wire::decode_request(bytes) else {
            return;
        };
        match req {
            Request::Hello(hello) => {
                if to == R {
                    let _ = self.r_on_hello(&hello);
                }
            }
            Request::Auth(auth) => {
                if to == R {
                    if let Some(Ok(_)) = self.r_on_auth(&auth) {
                        // Only a copy of I's own AUTH can get here (asserted inside).
                    }
                }
            }
            Request::Record(rec) => self.on_request(to, &rec, Ctx::None, false),
            Request::Abort { hs_id, .. } => {
                if to == R {
                    if self
                        .pending
                        .as_ref()
                        .is_some_and(|p| p.hello.hs_id == hs_id)
                    {
                        self.pending = None;
                    } else if self.hs_of[R] == Some(hs_id)
                        && self.sess[R]
                            .as_ref()
                            .is_some_and(|s| s.state() == SessionState::Handshaking)
                    {
                        self.sess[R] = None;
                        self.hs_of[R] = None;
                    }
                }
            }
            Request::Invalid(_) => unreachable!("decoders never produce Invalid"),
        }
    }

    fn raw_response(&mut self, to: usize, ctx: u8, bytes: &[u8]) {
        let Ok(resp) = wire::decode_response(bytes) else {
            return;
        };
        match resp {
            Response::Challenge(ch) if to == I => self.i_on_challenge(&ch),
            Response::AuthOk(ok) if to == I => self.i_on_auth_ok(&ok, false),
            resp => {
                let Some(s) = self.sess[to].as_ref() else {
                    return;
                };
                let (sid, epoch) = (s.id(), s.epoch());
                let seq = self.last_seal.get(&(to, sid)).map_or(0, |&(_, q)| q);
                let ctx = match ctx % 4 {
                    0 => Ctx::Chat { sid, epoch, seq },
                    1 => Ctx::RekeyInit {
                        sid,
                        new_epoch: epoch.wrapping_add(1),
                    },
                    2 => Ctx::RekeyCommit {
                        sid,
                        new_epoch: epoch.wrapping_add(1),
                    },
                    _ => Ctx::Confirm { sid, epoch, seq },
                };
                self.on_response(to, resp, ctx);
            }
        }
    }

    fn raw_content(&mut self, from: usize, bytes: &[u8]) {
        let Ok(mut content) = wire::decode_content(bytes, DECODE_MAX) else {
            return;
        };
        fix_up(&mut content);
        if self.sess[from].is_some() {
            self.send_content(from, &content);
        }
    }

    fn raw_plain(&mut self, from: usize, bytes: &[u8]) {
        if let Some(rec) = self.seal(from, None, bytes.to_vec()) {
            self.net.push(Msg::Req {
                to: 1 - from,
                ctx: Ctx::Chat {
                    sid: rec.session_id,
                    epoch: rec.epoch,
                    seq: rec.seq,
                },
                rec,
            });
        }
    }

    fn direct_rekey(&mut self, side: usize, bytes: &[u8]) {
        let Ok(mut content) = wire::decode_content(bytes, DECODE_MAX) else {
            return;
        };
        fix_up(&mut content);
        let now = self.now();
        let wrapped_len = match &content {
            Content::RekeyReply { wrapped, .. } | Content::RekeyCommit { wrapped, .. } => {
                wrapped.len()
            }
            _ => 0,
        };
        if self.sess[side].is_none() || !self.take_rsa(wrapped_len) {
            return;
        }
        let s = self.sess[side].as_mut().expect("checked");
        let result = match content {
            Content::RekeyInit {
                new_epoch,
                nonce,
                public_key,
            } => s
                .on_rekey_init(new_epoch, nonce, &public_key, keys()[side].clone(), now)
                .map(|_| ()),
            Content::RekeyCommit { new_epoch, wrapped } => {
                s.on_rekey_commit(new_epoch, &wrapped, now)
            }
            other => {
                // The behaviour closes the session on any failure of its own rotation.
                if let Err(e) = s.on_rekey_reply(&other) {
                    self.close(side, e.code);
                }
                return;
            }
        };
        if let Err(e) = result {
            if e.fatal {
                self.close(side, e.code);
            }
        }
    }

    fn hostile_hello(&mut self, key: u8, fill: u8, version: u8) {
        let hello = Hello {
            version: if version < 0xf0 {
                wire::VERSION
            } else {
                version
            },
            hs_id: [fill; 16],
            nonce: [fill ^ 0x55; 32],
            public_key: keys()[usize::from(key % 2)].public_der().to_vec(),
        };
        let _ = self.r_on_hello(&hello);
    }

    fn step(&mut self, op: Op) {
        let side = |v: u8| usize::from(v % 2);
        match op {
            Op::HsStart => self.hs_start(),
            Op::Deliver { idx } => {
                if let Some(i) = self.pick(idx) {
                    let msg = self.net.remove(i);
                    self.deliver(msg);
                }
            }
            Op::DeliverCopy { idx } => {
                if let Some(i) = self.pick(idx) {
                    let msg = self.net[i].clone();
                    self.deliver(msg);
                }
            }
            Op::Drop { idx } => {
                if let Some(i) = self.pick(idx) {
                    self.net.remove(i);
                }
            }
            Op::Corrupt { idx, pos, xor } => {
                if let Some(i) = self.pick(idx) {
                    let mut body = self.net[i].encode();
                    if body.is_empty() {
                        return;
                    }
                    let p = usize::from(pos) % body.len();
                    body[p] ^= xor.max(1);
                    match self.net[i].with_body(&body) {
                        Some(m) => self.net[i] = m,
                        None => {
                            self.net.remove(i);
                        }
                    }
                }
            }
            Op::Replace { idx, bytes } => {
                if let Some(i) = self.pick(idx) {
                    match self.net[i].with_body(&bytes) {
                        Some(m) => self.net[i] = m,
                        None => {
                            self.net.remove(i);
                        }
                    }
                }
            }
            Op::Chat {
                side: s,
                count,
                text,
            } => self.send_chat(side(s), 1 + usize::from(count % 4), &text),
            Op::Burst { side: s, n } => {
                let x = side(s);
                if !self.sess[x].as_ref().is_some_and(Session::is_open) {
                    return;
                }
                let mut last = None;
                for _ in 0..=n {
                    let c = Content::Ping;
                    last = self.seal(x, Some(&c), Vec::new()).or(last);
                }
                if let Some(rec) = last {
                    self.net.push(Msg::Req {
                        to: 1 - x,
                        ctx: Ctx::Chat {
                            sid: rec.session_id,
                            epoch: rec.epoch,
                            seq: rec.seq,
                        },
                        rec,
                    });
                }
            }
            Op::Rotate { side: s } => self.rotate(side(s)),
            Op::MaybeRotate { side: s } => self.maybe_rotate(side(s)),
            Op::Advance { step, amount } => {
                let d = advance_step(step, amount);
                if self.clock + d < Duration::from_secs(400 * 86_400) {
                    self.clock += d;
                }
            }
            Op::Expire { side: s } => {
                let now = self.now();
                if let Some(sess) = self.sess[side(s)].as_mut() {
                    if let Some(at) = sess.expire_previous(now) {
                        assert!(at > now, "expire_previous kept an expired epoch");
                    }
                }
            }
            Op::Close { side: s, code } => self.close(side(s), RejectCode::from_u16(code)),
            Op::Ping { side: s } => {
                let x = side(s);
                if self.sess[x].as_ref().is_some_and(Session::is_open) {
                    self.send_content(x, &Content::Ping);
                }
            }
            Op::RawRequest { to, bytes } => self.raw_request(side(to), &bytes),
            Op::RawResponse { to, ctx, bytes } => self.raw_response(side(to), ctx, &bytes),
            Op::RawContent { from, bytes } => self.raw_content(side(from), &bytes),
            Op::RawPlain { from, bytes } => self.raw_plain(side(from), &bytes),
            Op::DirectRekey { side: s, bytes } => self.direct_rekey(side(s), &bytes),
            Op::HostileHello { key, fill, version } => self.hostile_hello(key, fill, version),
            Op::ForgeAuth { bytes } => self.forge_auth(bytes),
            Op::ForgeAuthOk { bytes } => self.forge_auth_ok(bytes),
            Op::Probe => self.probe(),
            Op::Swap { a, b } => {
                if let (Some(a), Some(b)) = (self.pick(a), self.pick(b)) {
                    self.net.swap(a, b);
                }
            }
        }
    }
}

/// Runs one fuzz input.
pub fn run(data: &[u8]) {
    let Some((&setup, rest)) = data.split_first() else {
        return;
    };
    let _ = keys();
    let mut sim = Sim::new(setup);
    let mut r = Reader { data: rest };
    let trace = tracing_enabled();
    let mut n = 0;
    while !r.is_empty() && n < MAX_OPS {
        let op = r.op();
        if trace {
            eprintln!("op {n}: {op:?}");
        }
        sim.step(op);
        sim.check_counters();
        if trace {
            sim.trace();
        }
        n += 1;
    }
    sim.probe();
    sim.check_counters();
}

/// `NOCTUA_FUZZ_TRACE=1` prints every operation and the state after it (for reproducing a
/// crash: `fuzz/target/.../session <crash file>`).
fn tracing_enabled() -> bool {
    static TRACE: OnceLock<bool> = OnceLock::new();
    *TRACE.get_or_init(|| std::env::var_os("NOCTUA_FUZZ_TRACE").is_some_and(|v| v == "1"))
}

impl Sim {
    fn trace(&self) {
        for (side, name) in [(I, "I"), (R, "R")] {
            match &self.sess[side] {
                Some(s) => eprintln!(
                    "    {name}: session {:02x}{:02x}.. {:?} epoch {} rotating since {:?} \
                     refused {}",
                    s.id()[0],
                    s.id()[1],
                    s.state(),
                    s.epoch(),
                    s.rotation_started().map(|t| t - self.base),
                    s.rejections().total()
                ),
                None => eprintln!("    {name}: no session"),
            }
        }
        let net: Vec<String> = self
            .net
            .iter()
            .map(|m| match m {
                Msg::Hello(_) => "HELLO".into(),
                Msg::Challenge(_) => "CHALLENGE".into(),
                Msg::Auth(_) => "AUTH".into(),
                Msg::AuthOk(_) => "AUTH_OK".into(),
                Msg::HsReject => "HS_REJECT".into(),
                Msg::Req { to, rec, .. } => format!("RECORD->{to} e{} s{}", rec.epoch, rec.seq),
                Msg::Resp { to, resp, .. } => format!("{resp:?}->{to}"),
            })
            .collect();
        eprintln!(
            "    net {net:?}, clock {:?}, rsa budget {}",
            self.clock, self.rsa_budget
        );
    }
}

/// Decodes an input into its setup byte and operations (for debugging a crash).
pub fn decode(data: &[u8]) -> Option<(u8, Vec<Op>)> {
    let (&setup, rest) = data.split_first()?;
    let mut r = Reader { data: rest };
    let mut ops = Vec::new();
    while !r.is_empty() && ops.len() < MAX_OPS {
        ops.push(r.op());
    }
    Some((setup, ops))
}
