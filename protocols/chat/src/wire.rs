//! The wire format of `/noctua/chat/2.0.0` (SPEC.md §3): message types and their strict,
//! bounded encoding.
//!
//! This module is public so that tests, fuzzers and other implementations can speak the
//! protocol (correctly or deliberately wrong); a node only needs [`crate::Behaviour`].
//! Decoding never panics and never allocates more than the input it was given.

use std::fmt;

use crate::error::RejectCode;

/// Length of a handshake id.
pub const HS_ID_LEN: usize = 16;
/// Length of a session id.
pub const SESSION_ID_LEN: usize = 16;
/// Length of a handshake or rekey nonce.
pub const NONCE_LEN: usize = 32;
/// Length of an encoded ristretto255 element: a PAKE or Diffie-Hellman `share` (SPEC.md §2).
pub const SHARE_LEN: usize = 32;
/// Length of a handshake proof (HMAC-SHA256).
pub const MAC_LEN: usize = 32;
/// Length of an acknowledgement tag (truncated HMAC-SHA256).
pub const ACK_TAG_LEN: usize = 16;
/// Length of the AES-GCM tag at the end of [`Record::sealed`].
pub const AEAD_TAG_LEN: usize = 16;
/// Length of a record header (everything before `sealed`).
pub const RECORD_HEADER_LEN: usize = SESSION_ID_LEN + 4 + 1 + 8;
/// The only protocol version this crate speaks (`HELLO.version`).
pub const VERSION: u8 = 2;
/// `flags` bit 0 of a message in a `CHAT` record: sent to this peer alone (SPEC.md §3.5).
/// Every other bit is reserved and MUST be 0.
pub const CHAT_FLAG_PRIVATE: u8 = 0x01;
/// `flags` bit 0 of a `PROFILE`: the sender keeps its libp2p identity across restarts
/// (SPEC.md §3.5). Every other bit is reserved and MUST be 0.
pub const PROFILE_FLAG_LASTING: u8 = 0x01;

/// Most messages in one `CHAT` record (SPEC.md §3.5).
pub const MAX_BATCH: usize = 1024;
/// Longest display name, in bytes.
pub const MAX_NAME_LEN: usize = 64;
/// Longest encoded RSA public key accepted (a 4096-bit PKCS#1 key is 526 bytes).
pub const MAX_PUBLIC_KEY_LEN: usize = 600;
/// Longest RSA ciphertext accepted (4096-bit modulus).
pub const MAX_WRAPPED_LEN: usize = 512;

/// Which side of a session wrote a record (SPEC.md §3.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The side that started the handshake.
    Initiator,
    /// The side that answered it.
    Responder,
}

impl Role {
    /// The wire value of the role.
    pub fn to_byte(self) -> u8 {
        match self {
            Role::Initiator => 0,
            Role::Responder => 1,
        }
    }

    /// The other role.
    pub fn peer(self) -> Role {
        match self {
            Role::Initiator => Role::Responder,
            Role::Responder => Role::Initiator,
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Initiator => "initiator",
            Role::Responder => "responder",
        })
    }
}

/// Why a frame or a plaintext could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The input ended inside a field or inside the frame.
    #[error("message truncated")]
    Truncated,
    /// A length is over its limit.
    #[error("{what} too large: {len} bytes, limit {max}")]
    TooLarge {
        /// Which field or frame.
        what: &'static str,
        /// The length found.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// The type or kind byte is not defined.
    #[error("unknown message type {0:#04x}")]
    UnknownType(u8),
    /// Bytes were left after the last field.
    #[error("{0} unexpected trailing bytes")]
    Trailing(usize),
    /// A field holds a value that is not allowed.
    #[error("invalid {0}")]
    Invalid(&'static str),
}

impl WireError {
    /// The reject code a receiver answers with (SPEC.md §9).
    pub fn reject_code(&self) -> RejectCode {
        match self {
            WireError::TooLarge { .. } => RejectCode::TooLarge,
            _ => RejectCode::Malformed,
        }
    }

    /// The `REJECT` detail: the limit for `TOO_LARGE`, else 0.
    pub fn reject_detail(&self) -> u32 {
        match self {
            WireError::TooLarge { max, .. } => u32::try_from(*max).unwrap_or(u32::MAX),
            _ => 0,
        }
    }
}

/// `HELLO`: the initiator's first flight (SPEC.md §5.1).
#[derive(Clone, PartialEq, Eq)]
pub struct Hello {
    /// Protocol version, [`VERSION`].
    pub version: u8,
    /// Handshake id chosen by the initiator.
    pub hs_id: [u8; HS_ID_LEN],
    /// The initiator's nonce.
    pub nonce: [u8; NONCE_LEN],
    /// The initiator's RSA public key, PKCS#1 DER.
    pub public_key: Vec<u8>,
    /// `share_i = enc(y_i · g)`: the initiator's CPace share (SPEC.md §5.1).
    pub share: [u8; SHARE_LEN],
}

/// `AUTH`: the initiator's proof and key contribution (SPEC.md §5.2).
#[derive(Clone, PartialEq, Eq)]
pub struct Auth {
    /// The handshake this belongs to.
    pub hs_id: [u8; HS_ID_LEN],
    /// `OAEP(pub_r, k_i)`.
    pub wrapped: Vec<u8>,
    /// `mac_i`.
    pub mac: [u8; MAC_LEN],
}

/// `CHALLENGE`: the responder's answer to `HELLO` (SPEC.md §5.1).
#[derive(Clone, PartialEq, Eq)]
pub struct Challenge {
    /// Echo of the handshake id.
    pub hs_id: [u8; HS_ID_LEN],
    /// The responder's nonce.
    pub nonce: [u8; NONCE_LEN],
    /// The responder's RSA public key, PKCS#1 DER.
    pub public_key: Vec<u8>,
    /// `share_r = enc(y_r · g)`: the responder's CPace share (SPEC.md §5.1).
    pub share: [u8; SHARE_LEN],
}

/// `AUTH_OK`: the responder's proof, key contribution and first record (SPEC.md §5.3).
#[derive(Clone, PartialEq, Eq)]
pub struct AuthOk {
    /// Echo of the handshake id.
    pub hs_id: [u8; HS_ID_LEN],
    /// `OAEP(pub_i, k_r)`.
    pub wrapped: Vec<u8>,
    /// `mac_r`.
    pub mac: [u8; MAC_LEN],
    /// The responder's `PROFILE` record (epoch 0, seq 0).
    pub record: Record,
}

/// A sealed record (SPEC.md §3.4).
#[derive(Clone, PartialEq, Eq)]
pub struct Record {
    /// The session it belongs to.
    pub session_id: [u8; SESSION_ID_LEN],
    /// The epoch whose keys sealed it.
    pub epoch: u32,
    /// Who wrote it.
    pub sender: Role,
    /// The sender's counter in that epoch.
    pub seq: u64,
    /// Ciphertext with the 16-byte GCM tag appended.
    pub sealed: Vec<u8>,
}

impl Record {
    /// The header bytes covered by the associated data.
    pub fn header(&self) -> [u8; RECORD_HEADER_LEN] {
        let mut h = [0u8; RECORD_HEADER_LEN];
        h[..16].copy_from_slice(&self.session_id);
        h[16..20].copy_from_slice(&self.epoch.to_be_bytes());
        h[20] = self.sender.to_byte();
        h[21..29].copy_from_slice(&self.seq.to_be_bytes());
        h
    }
}

/// `ACK`: the delivery receipt for a record (SPEC.md §6.2).
#[derive(Clone, PartialEq, Eq)]
pub struct Ack {
    /// Session of the acknowledged record.
    pub session_id: [u8; SESSION_ID_LEN],
    /// Its epoch.
    pub epoch: u32,
    /// Its sequence number.
    pub seq: u64,
    /// Truncated HMAC under the acknowledging side's ack key.
    pub tag: [u8; ACK_TAG_LEN],
}

/// A request, as read from a stream.
#[derive(Clone, PartialEq, Eq)]
pub enum Request {
    /// `HELLO`.
    Hello(Hello),
    /// `AUTH`.
    Auth(Auth),
    /// `RECORD`.
    Record(Record),
    /// `ABORT`: the sender gives up a handshake.
    Abort {
        /// The handshake given up.
        hs_id: [u8; HS_ID_LEN],
        /// Why (a [`RejectCode`] value).
        code: u16,
    },
    /// Not a request: the frame could not be read or decoded. The codec hands it to the
    /// behaviour (rather than failing the stream silently) so that it can be answered,
    /// counted and attributed to the peer.
    Invalid(WireError),
}

/// A response, as read from a stream.
#[derive(Clone, PartialEq, Eq)]
pub enum Response {
    /// `CHALLENGE`.
    Challenge(Challenge),
    /// `AUTH_OK`.
    AuthOk(AuthOk),
    /// `ACK`.
    Ack(Ack),
    /// `REPLY`: a record answering `REKEY_INIT` or `REKEY_COMMIT`.
    Reply(Record),
    /// `REJECT`.
    Reject {
        /// Why.
        code: RejectCode,
        /// Code-specific detail (a limit, or seconds until a ban ends).
        detail: u32,
    },
    /// `DONE`: answer to `ABORT`.
    Done,
    /// Not a response: it could not be decoded.
    Invalid(WireError),
}

// Debug output must never carry key material or ciphertexts into logs: show sizes only.
impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Request::Hello(_) => f.write_str("HELLO"),
            Request::Auth(_) => f.write_str("AUTH"),
            Request::Record(r) => write!(f, "RECORD(epoch {}, seq {})", r.epoch, r.seq),
            Request::Abort { code, .. } => write!(f, "ABORT({code})"),
            Request::Invalid(e) => write!(f, "invalid request: {e}"),
        }
    }
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Response::Challenge(_) => f.write_str("CHALLENGE"),
            Response::AuthOk(_) => f.write_str("AUTH_OK"),
            Response::Ack(a) => write!(f, "ACK(epoch {}, seq {})", a.epoch, a.seq),
            Response::Reply(r) => write!(f, "REPLY(epoch {}, seq {})", r.epoch, r.seq),
            Response::Reject { code, detail } => write!(f, "REJECT({code}, {detail})"),
            Response::Done => f.write_str("DONE"),
            Response::Invalid(e) => write!(f, "invalid response: {e}"),
        }
    }
}

impl fmt::Debug for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Record(epoch {}, {} seq {}, {} bytes)",
            self.epoch,
            self.sender,
            self.seq,
            self.sealed.len()
        )
    }
}

/// One chat message inside a `CHAT` record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    /// Sender-chosen id, unique per sender and session.
    pub id: u64,
    /// The sender's Unix time in milliseconds (informational).
    pub sent_at_ms: u64,
    /// Sent to this peer alone, not to everyone the sender chats with (`flags` bit 0).
    pub private: bool,
    /// The text, valid UTF-8.
    pub text: String,
}

/// The plaintext of a record (SPEC.md §3.5).
#[derive(Clone, PartialEq, Eq)]
pub enum Content {
    /// One or more chat messages.
    Chat(Vec<ChatMessage>),
    /// The sender's display name and flags; the first record of each side.
    Profile {
        /// Display name, at most [`MAX_NAME_LEN`] bytes.
        name: String,
        /// The sender keeps its libp2p identity across restarts (`flags` bit 0,
        /// [`PROFILE_FLAG_LASTING`]).
        lasting: bool,
    },
    /// Start of a rotation.
    RekeyInit {
        /// The epoch being created.
        new_epoch: u32,
        /// The rotating side's nonce.
        nonce: [u8; NONCE_LEN],
        /// The rotating side's current RSA public key.
        public_key: Vec<u8>,
        /// `share_a = enc(x_a · B)`: its ephemeral Diffie-Hellman share (SPEC.md §7).
        share: [u8; SHARE_LEN],
    },
    /// Answer to `REKEY_INIT`.
    RekeyReply {
        /// The epoch being created.
        new_epoch: u32,
        /// The answering side's nonce.
        nonce: [u8; NONCE_LEN],
        /// The answering side's current RSA public key.
        public_key: Vec<u8>,
        /// `share_b = enc(x_b · B)`: its ephemeral Diffie-Hellman share (SPEC.md §7).
        share: [u8; SHARE_LEN],
        /// Its key material, wrapped for the rotating side's key.
        wrapped: Vec<u8>,
    },
    /// The rotating side's key material.
    RekeyCommit {
        /// The epoch being created.
        new_epoch: u32,
        /// Key material wrapped for the answering side's key.
        wrapped: Vec<u8>,
    },
    /// The answering side installed the new epoch (sealed under it).
    RekeyDone {
        /// The epoch installed.
        new_epoch: u32,
    },
    /// The sender ends the session.
    Close {
        /// Why (SPEC.md §9).
        code: u16,
    },
    /// Liveness probe.
    Ping,
}

impl fmt::Debug for Content {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.kind_name())
    }
}

impl Content {
    /// A short name of the content's kind, for logs.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Content::Chat(_) => "CHAT",
            Content::Profile { .. } => "PROFILE",
            Content::RekeyInit { .. } => "REKEY_INIT",
            Content::RekeyReply { .. } => "REKEY_REPLY",
            Content::RekeyCommit { .. } => "REKEY_COMMIT",
            Content::RekeyDone { .. } => "REKEY_DONE",
            Content::Close { .. } => "CLOSE",
            Content::Ping => "PING",
        }
    }
}

mod tag {
    pub(super) const HELLO: u8 = 0x01;
    pub(super) const AUTH: u8 = 0x02;
    pub(super) const RECORD: u8 = 0x03;
    pub(super) const ABORT: u8 = 0x04;
    pub(super) const CHALLENGE: u8 = 0x81;
    pub(super) const AUTH_OK: u8 = 0x82;
    pub(super) const ACK: u8 = 0x83;
    pub(super) const REPLY: u8 = 0x84;
    pub(super) const REJECT: u8 = 0x85;
    pub(super) const DONE: u8 = 0x86;

    pub(super) const CHAT: u8 = 0x01;
    pub(super) const PROFILE: u8 = 0x02;
    pub(super) const REKEY_INIT: u8 = 0x03;
    pub(super) const REKEY_REPLY: u8 = 0x04;
    pub(super) const REKEY_COMMIT: u8 = 0x05;
    pub(super) const REKEY_DONE: u8 = 0x06;
    pub(super) const CLOSE: u8 = 0x07;
    pub(super) const PING: u8 = 0x08;
}

/// A bounds-checked cursor over untrusted bytes.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.buf.len() < n {
            return Err(WireError::Truncated);
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, WireError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, WireError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, WireError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub(crate) fn bytes16(
        &mut self,
        what: &'static str,
        max: usize,
    ) -> Result<&'a [u8], WireError> {
        let len = usize::from(self.u16()?);
        if len > max {
            return Err(WireError::TooLarge {
                what,
                len: len as u64,
                max: max as u64,
            });
        }
        self.take(len)
    }

    pub(crate) fn bytes32(
        &mut self,
        what: &'static str,
        max: usize,
    ) -> Result<&'a [u8], WireError> {
        let len = self.u32()?;
        if u64::from(len) > max as u64 {
            return Err(WireError::TooLarge {
                what,
                len: u64::from(len),
                max: max as u64,
            });
        }
        self.take(len as usize)
    }

    pub(crate) fn finish(self) -> Result<(), WireError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(WireError::Trailing(self.buf.len()))
        }
    }
}

/// Appends wire fields to a buffer.
pub(crate) struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    pub(crate) fn with_capacity(n: usize) -> Self {
        Writer {
            buf: Vec::with_capacity(n),
        }
    }

    pub(crate) fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }

    pub(crate) fn u16(&mut self, v: u16) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub(crate) fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub(crate) fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub(crate) fn raw(&mut self, v: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(v);
        self
    }

    /// Writes a `bytes16`. Callers keep fields within their limits, which are all far below
    /// `u16::MAX`; an oversized field is truncated in the length so that the encoding stays
    /// self-consistent and the receiver rejects it, instead of panicking here.
    pub(crate) fn bytes16(&mut self, v: &[u8]) -> &mut Self {
        let len = u16::try_from(v.len()).unwrap_or(u16::MAX);
        self.u16(len);
        self.raw(&v[..usize::from(len)])
    }

    pub(crate) fn bytes32(&mut self, v: &[u8]) -> &mut Self {
        let len = u32::try_from(v.len()).unwrap_or(u32::MAX);
        self.u32(len);
        self.raw(&v[..len as usize])
    }

    pub(crate) fn into_vec(self) -> Vec<u8> {
        self.buf
    }
}

fn read_role(r: &mut Reader<'_>) -> Result<Role, WireError> {
    match r.u8()? {
        0 => Ok(Role::Initiator),
        1 => Ok(Role::Responder),
        _ => Err(WireError::Invalid("sender role")),
    }
}

/// `sealed` has no limit of its own: the frame limit bounds it, and a length that runs past
/// the end of the frame is malformed (SPEC.md §3), not over a limit.
fn read_record(r: &mut Reader<'_>) -> Result<Record, WireError> {
    let session_id = r.array()?;
    let epoch = r.u32()?;
    let sender = read_role(r)?;
    let seq = r.u64()?;
    let sealed = r.bytes32("record", usize::MAX)?;
    if sealed.len() < AEAD_TAG_LEN {
        return Err(WireError::Invalid("record shorter than its tag"));
    }
    Ok(Record {
        session_id,
        epoch,
        sender,
        seq,
        sealed: sealed.to_vec(),
    })
}

fn write_record(w: &mut Writer, rec: &Record) {
    w.raw(&rec.header()).bytes32(&rec.sealed);
}

/// Decodes a request body (the frame without its length prefix).
pub fn decode_request(body: &[u8]) -> Result<Request, WireError> {
    let mut r = Reader::new(body);
    let req = match r.u8()? {
        tag::HELLO => Request::Hello(Hello {
            version: r.u8()?,
            hs_id: r.array()?,
            nonce: r.array()?,
            public_key: r.bytes16("public key", MAX_PUBLIC_KEY_LEN)?.to_vec(),
            share: r.array()?,
        }),
        tag::AUTH => Request::Auth(Auth {
            hs_id: r.array()?,
            wrapped: r.bytes16("wrapped key", MAX_WRAPPED_LEN)?.to_vec(),
            mac: r.array()?,
        }),
        tag::RECORD => Request::Record(read_record(&mut r)?),
        tag::ABORT => Request::Abort {
            hs_id: r.array()?,
            code: r.u16()?,
        },
        other => return Err(WireError::UnknownType(other)),
    };
    r.finish()?;
    Ok(req)
}

/// Encodes a request body. [`Request::Invalid`] encodes as an empty body, which no receiver
/// accepts (useful to hostile-peer tests).
pub fn encode_request(req: &Request) -> Vec<u8> {
    let mut w = Writer::with_capacity(64);
    match req {
        Request::Hello(h) => {
            w.u8(tag::HELLO)
                .u8(h.version)
                .raw(&h.hs_id)
                .raw(&h.nonce)
                .bytes16(&h.public_key)
                .raw(&h.share);
        }
        Request::Auth(a) => {
            w.u8(tag::AUTH)
                .raw(&a.hs_id)
                .bytes16(&a.wrapped)
                .raw(&a.mac);
        }
        Request::Record(rec) => {
            w = Writer::with_capacity(1 + RECORD_HEADER_LEN + 4 + rec.sealed.len());
            w.u8(tag::RECORD);
            write_record(&mut w, rec);
        }
        Request::Abort { hs_id, code } => {
            w.u8(tag::ABORT).raw(hs_id).u16(*code);
        }
        Request::Invalid(_) => {}
    }
    w.into_vec()
}

/// Decodes a response body.
pub fn decode_response(body: &[u8]) -> Result<Response, WireError> {
    let mut r = Reader::new(body);
    let resp = match r.u8()? {
        tag::CHALLENGE => Response::Challenge(Challenge {
            hs_id: r.array()?,
            nonce: r.array()?,
            public_key: r.bytes16("public key", MAX_PUBLIC_KEY_LEN)?.to_vec(),
            share: r.array()?,
        }),
        tag::AUTH_OK => Response::AuthOk(AuthOk {
            hs_id: r.array()?,
            wrapped: r.bytes16("wrapped key", MAX_WRAPPED_LEN)?.to_vec(),
            mac: r.array()?,
            record: read_record(&mut r)?,
        }),
        tag::ACK => Response::Ack(Ack {
            session_id: r.array()?,
            epoch: r.u32()?,
            seq: r.u64()?,
            tag: r.array()?,
        }),
        tag::REPLY => Response::Reply(read_record(&mut r)?),
        tag::REJECT => Response::Reject {
            code: RejectCode::from_u16(r.u16()?),
            detail: r.u32()?,
        },
        tag::DONE => Response::Done,
        other => return Err(WireError::UnknownType(other)),
    };
    r.finish()?;
    Ok(resp)
}

/// Encodes a response body. [`Response::Invalid`] encodes as an empty body.
pub fn encode_response(resp: &Response) -> Vec<u8> {
    let mut w = Writer::with_capacity(64);
    match resp {
        Response::Challenge(c) => {
            w.u8(tag::CHALLENGE)
                .raw(&c.hs_id)
                .raw(&c.nonce)
                .bytes16(&c.public_key)
                .raw(&c.share);
        }
        Response::AuthOk(a) => {
            w.u8(tag::AUTH_OK)
                .raw(&a.hs_id)
                .bytes16(&a.wrapped)
                .raw(&a.mac);
            write_record(&mut w, &a.record);
        }
        Response::Ack(a) => {
            w.u8(tag::ACK)
                .raw(&a.session_id)
                .u32(a.epoch)
                .u64(a.seq)
                .raw(&a.tag);
        }
        Response::Reply(rec) => {
            w.u8(tag::REPLY);
            write_record(&mut w, rec);
        }
        Response::Reject { code, detail } => {
            w.u8(tag::REJECT).u16(code.to_u16()).u32(*detail);
        }
        Response::Done => {
            w.u8(tag::DONE);
        }
        Response::Invalid(_) => {}
    }
    w.into_vec()
}

/// Decodes a record's plaintext. `max_message` bounds each chat text.
pub fn decode_content(plain: &[u8], max_message: usize) -> Result<Content, WireError> {
    let mut r = Reader::new(plain);
    let content = match r.u8()? {
        tag::CHAT => {
            let count = usize::from(r.u16()?);
            if count == 0 {
                return Err(WireError::Invalid("empty chat batch"));
            }
            if count > MAX_BATCH {
                return Err(WireError::TooLarge {
                    what: "chat batch",
                    len: count as u64,
                    max: MAX_BATCH as u64,
                });
            }
            // Each message needs at least 21 bytes, so `count` cannot make us reserve more
            // than the input justifies.
            let mut msgs = Vec::with_capacity(count.min(plain.len() / 21));
            for _ in 0..count {
                let id = r.u64()?;
                let sent_at_ms = r.u64()?;
                let flags = r.u8()?;
                if flags & !CHAT_FLAG_PRIVATE != 0 {
                    return Err(WireError::Invalid("message flags (unknown bit set)"));
                }
                let text = r.bytes32("message", max_message)?;
                let text = std::str::from_utf8(text)
                    .map_err(|_| WireError::Invalid("message text (not UTF-8)"))?;
                msgs.push(ChatMessage {
                    id,
                    sent_at_ms,
                    private: flags & CHAT_FLAG_PRIVATE != 0,
                    text: text.to_owned(),
                });
            }
            Content::Chat(msgs)
        }
        tag::PROFILE => {
            let name = r.bytes16("display name", MAX_NAME_LEN)?;
            let name = std::str::from_utf8(name)
                .map_err(|_| WireError::Invalid("display name (not UTF-8)"))?;
            let flags = r.u8()?;
            if flags & !PROFILE_FLAG_LASTING != 0 {
                return Err(WireError::Invalid("profile flags (unknown bit set)"));
            }
            Content::Profile {
                name: name.to_owned(),
                lasting: flags & PROFILE_FLAG_LASTING != 0,
            }
        }
        tag::REKEY_INIT => Content::RekeyInit {
            new_epoch: r.u32()?,
            nonce: r.array()?,
            public_key: r.bytes16("public key", MAX_PUBLIC_KEY_LEN)?.to_vec(),
            share: r.array()?,
        },
        tag::REKEY_REPLY => Content::RekeyReply {
            new_epoch: r.u32()?,
            nonce: r.array()?,
            public_key: r.bytes16("public key", MAX_PUBLIC_KEY_LEN)?.to_vec(),
            share: r.array()?,
            wrapped: r.bytes16("wrapped key", MAX_WRAPPED_LEN)?.to_vec(),
        },
        tag::REKEY_COMMIT => Content::RekeyCommit {
            new_epoch: r.u32()?,
            wrapped: r.bytes16("wrapped key", MAX_WRAPPED_LEN)?.to_vec(),
        },
        tag::REKEY_DONE => Content::RekeyDone {
            new_epoch: r.u32()?,
        },
        tag::CLOSE => Content::Close { code: r.u16()? },
        tag::PING => Content::Ping,
        other => return Err(WireError::UnknownType(other)),
    };
    r.finish()?;
    Ok(content)
}

/// Encodes a record's plaintext.
pub fn encode_content(content: &Content) -> Vec<u8> {
    let mut w = Writer::with_capacity(encoded_content_len_hint(content));
    match content {
        Content::Chat(msgs) => return encode_chat(msgs.iter()),
        Content::Profile { name, lasting } => {
            let flags = if *lasting { PROFILE_FLAG_LASTING } else { 0 };
            w.u8(tag::PROFILE).bytes16(name.as_bytes()).u8(flags);
        }
        Content::RekeyInit {
            new_epoch,
            nonce,
            public_key,
            share,
        } => {
            w.u8(tag::REKEY_INIT)
                .u32(*new_epoch)
                .raw(nonce)
                .bytes16(public_key)
                .raw(share);
        }
        Content::RekeyReply {
            new_epoch,
            nonce,
            public_key,
            share,
            wrapped,
        } => {
            w.u8(tag::REKEY_REPLY)
                .u32(*new_epoch)
                .raw(nonce)
                .bytes16(public_key)
                .raw(share)
                .bytes16(wrapped);
        }
        Content::RekeyCommit { new_epoch, wrapped } => {
            w.u8(tag::REKEY_COMMIT).u32(*new_epoch).bytes16(wrapped);
        }
        Content::RekeyDone { new_epoch } => {
            w.u8(tag::REKEY_DONE).u32(*new_epoch);
        }
        Content::Close { code } => {
            w.u8(tag::CLOSE).u16(*code);
        }
        Content::Ping => {
            w.u8(tag::PING);
        }
    }
    w.into_vec()
}

/// Encodes a `CHAT` plaintext from borrowed messages (the sender keeps its copies for
/// delivery reports and re-sending).
pub fn encode_chat<'a>(msgs: impl Iterator<Item = &'a ChatMessage> + Clone) -> Vec<u8> {
    let (count, size) = msgs.clone().fold((0usize, 3usize), |(n, s), m| {
        (n + 1, s + chat_message_encoded_len(m.text.len()))
    });
    let mut w = Writer::with_capacity(size);
    w.u8(tag::CHAT)
        .u16(u16::try_from(count).unwrap_or(u16::MAX));
    for m in msgs.take(usize::from(u16::MAX)) {
        let flags = if m.private { CHAT_FLAG_PRIVATE } else { 0 };
        w.u64(m.id)
            .u64(m.sent_at_ms)
            .u8(flags)
            .bytes32(m.text.as_bytes());
    }
    w.into_vec()
}

fn encoded_content_len_hint(content: &Content) -> usize {
    match content {
        Content::Chat(msgs) => {
            3 + msgs
                .iter()
                .map(|m| chat_message_encoded_len(m.text.len()))
                .sum::<usize>()
        }
        _ => 64,
    }
}

/// Size of one chat message inside a `CHAT` plaintext.
pub fn chat_message_encoded_len(text_len: usize) -> usize {
    8 + 8 + 1 + 4 + text_len
}

/// Bytes a `RECORD` request adds around its plaintext: frame length, type, header, sealed
/// length and GCM tag.
pub const RECORD_OVERHEAD: usize = 4 + 1 + RECORD_HEADER_LEN + 4 + AEAD_TAG_LEN;

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> Record {
        Record {
            session_id: [7; 16],
            epoch: 3,
            sender: Role::Responder,
            seq: 99,
            sealed: vec![1; 40],
        }
    }

    #[test]
    fn every_request_round_trips() {
        let reqs = [
            Request::Hello(Hello {
                version: VERSION,
                hs_id: [1; 16],
                nonce: [2; 32],
                public_key: vec![3; 270],
                share: [6; 32],
            }),
            Request::Auth(Auth {
                hs_id: [1; 16],
                wrapped: vec![4; 256],
                mac: [5; 32],
            }),
            Request::Record(record()),
            Request::Abort {
                hs_id: [9; 16],
                code: 5,
            },
        ];
        for req in reqs {
            let bytes = encode_request(&req);
            assert_eq!(decode_request(&bytes).unwrap(), req);
        }
    }

    #[test]
    fn every_response_round_trips() {
        let resps = [
            Response::Challenge(Challenge {
                hs_id: [1; 16],
                nonce: [2; 32],
                public_key: vec![3; 270],
                share: [6; 32],
            }),
            Response::AuthOk(AuthOk {
                hs_id: [1; 16],
                wrapped: vec![4; 256],
                mac: [5; 32],
                record: record(),
            }),
            Response::Ack(Ack {
                session_id: [1; 16],
                epoch: 2,
                seq: 3,
                tag: [4; 16],
            }),
            Response::Reply(record()),
            Response::Reject {
                code: RejectCode::AuthFailed,
                detail: 7,
            },
            Response::Done,
        ];
        for resp in resps {
            let bytes = encode_response(&resp);
            assert_eq!(decode_response(&bytes).unwrap(), resp);
        }
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let mut bytes = encode_request(&Request::Abort {
            hs_id: [0; 16],
            code: 1,
        });
        bytes.push(0);
        assert_eq!(decode_request(&bytes), Err(WireError::Trailing(1)));
    }

    #[test]
    fn every_truncation_is_refused_not_panicking() {
        let bytes = encode_response(&Response::AuthOk(AuthOk {
            hs_id: [1; 16],
            wrapped: vec![4; 256],
            mac: [5; 32],
            record: record(),
        }));
        for cut in 0..bytes.len() {
            assert!(decode_response(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn oversized_fields_are_too_large() {
        let hello = Request::Hello(Hello {
            version: VERSION,
            hs_id: [1; 16],
            nonce: [2; 32],
            public_key: vec![3; MAX_PUBLIC_KEY_LEN + 1],
            share: [6; 32],
        });
        let err = decode_request(&encode_request(&hello)).unwrap_err();
        assert_eq!(err.reject_code(), RejectCode::TooLarge);

        let chat = Content::Chat(vec![ChatMessage {
            id: 1,
            sent_at_ms: 2,
            private: false,
            text: "x".repeat(101),
        }]);
        let err = decode_content(&encode_content(&chat), 100).unwrap_err();
        assert!(matches!(err, WireError::TooLarge { .. }));
        assert!(decode_content(&encode_content(&chat), 101).is_ok());
    }

    #[test]
    fn contents_round_trip_and_reject_bad_utf8() {
        let contents = [
            Content::Chat(vec![
                ChatMessage {
                    id: 1,
                    sent_at_ms: 2,
                    private: true,
                    text: "olá".into(),
                },
                ChatMessage {
                    id: 2,
                    sent_at_ms: 3,
                    private: false,
                    text: String::new(),
                },
            ]),
            Content::Profile {
                name: "Alice".into(),
                lasting: false,
            },
            Content::Profile {
                name: "Bob".into(),
                lasting: true,
            },
            Content::RekeyInit {
                new_epoch: 1,
                nonce: [1; 32],
                public_key: vec![1; 10],
                share: [9; 32],
            },
            Content::RekeyReply {
                new_epoch: 1,
                nonce: [1; 32],
                public_key: vec![1; 10],
                share: [9; 32],
                wrapped: vec![2; 256],
            },
            Content::RekeyCommit {
                new_epoch: 1,
                wrapped: vec![2; 256],
            },
            Content::RekeyDone { new_epoch: 9 },
            Content::Close { code: 100 },
            Content::Ping,
        ];
        for c in contents {
            assert_eq!(decode_content(&encode_content(&c), 1000).unwrap(), c);
        }
        let mut bad = encode_content(&Content::Profile {
            name: "ab".into(),
            lasting: false,
        });
        let n = bad.len();
        // The name's last byte (the flags byte follows it).
        bad[n - 2] = 0xff;
        assert!(decode_content(&bad, 1000).is_err());
    }

    #[test]
    fn chat_flags_carry_private_and_refuse_reserved_bits() {
        let one = |private| {
            encode_content(&Content::Chat(vec![ChatMessage {
                id: 7,
                sent_at_ms: 8,
                private,
                text: "hi".into(),
            }]))
        };
        // kind, count, msg_id, sent_at_ms: the flags byte follows at offset 19.
        let flags_at = 1 + 2 + 8 + 8;
        assert_eq!(one(false)[flags_at], 0);
        assert_eq!(one(true)[flags_at], CHAT_FLAG_PRIVATE);
        for (bytes, private) in [(one(false), false), (one(true), true)] {
            let Ok(Content::Chat(msgs)) = decode_content(&bytes, 100) else {
                panic!("a valid CHAT did not decode");
            };
            assert_eq!(msgs[0].private, private);
        }
        for bit in 1..8 {
            let mut bad = one(true);
            bad[flags_at] |= 1 << bit;
            let err = decode_content(&bad, 100).unwrap_err();
            assert_eq!(err.reject_code(), RejectCode::Malformed, "bit {bit}");
        }
    }

    #[test]
    fn profile_flags_carry_lasting_and_refuse_reserved_bits() {
        let one = |lasting| {
            encode_content(&Content::Profile {
                name: "Al".into(),
                lasting,
            })
        };
        // kind, name length, "Al": the flags byte is the last one.
        assert_eq!(one(false), [tag::PROFILE, 0, 2, b'A', b'l', 0]);
        assert_eq!(one(true)[5], PROFILE_FLAG_LASTING);
        for lasting in [false, true] {
            let Ok(Content::Profile { lasting: got, .. }) = decode_content(&one(lasting), 100)
            else {
                panic!("a valid PROFILE did not decode");
            };
            assert_eq!(got, lasting);
        }
        for bit in 1..8 {
            let mut bad = one(true);
            bad[5] |= 1 << bit;
            let err = decode_content(&bad, 100).unwrap_err();
            assert_eq!(err.reject_code(), RejectCode::Malformed, "bit {bit}");
        }
        // Without its flags byte (the layout before issue 12) it is malformed.
        let short = &one(false)[..5];
        let err = decode_content(short, 100).unwrap_err();
        assert_eq!(err.reject_code(), RejectCode::Malformed);
    }

    #[test]
    fn chat_batch_count_is_bounded() {
        let mut w = Writer::with_capacity(8);
        w.u8(tag::CHAT).u16((MAX_BATCH + 1) as u16);
        assert!(matches!(
            decode_content(&w.into_vec(), 100),
            Err(WireError::TooLarge { .. })
        ));
        let mut w = Writer::with_capacity(8);
        w.u8(tag::CHAT).u16(0);
        assert!(decode_content(&w.into_vec(), 100).is_err());
    }
}
