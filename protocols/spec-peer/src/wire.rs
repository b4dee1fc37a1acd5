//! The spec peer's own encoder and decoder, written from SPEC.md §3 (protocol 2 field lists
//! from the lead's design) and nothing else: no byte the spec peer sends or reads goes
//! through `noctua_chat::wire`. Parsing is straight-line and strict: a field that runs past
//! the end, an unknown type or kind byte, a sender byte other than 0 or 1, or any byte left
//! over is `MALFORMED`; a length over a limit is `TOO_LARGE` with the limit as detail, checked
//! as soon as the length prefix is read.
//!
//! The type names mirror the crate's (so tests read the same), but they are this crate's
//! own types.

use crate::RejectCode;

/// §3.2 request type bytes.
pub const T_HELLO: u8 = 0x01;
/// `AUTH`.
pub const T_AUTH: u8 = 0x02;
/// `RECORD`.
pub const T_RECORD: u8 = 0x03;
/// `ABORT`.
pub const T_ABORT: u8 = 0x04;
/// §3.3 response type bytes: `CHALLENGE`.
pub const T_CHALLENGE: u8 = 0x81;
/// `AUTH_OK`.
pub const T_AUTH_OK: u8 = 0x82;
/// `ACK`.
pub const T_ACK: u8 = 0x83;
/// `REPLY`.
pub const T_REPLY: u8 = 0x84;
/// `REJECT`.
pub const T_REJECT: u8 = 0x85;
/// `DONE`.
pub const T_DONE: u8 = 0x86;

/// §3.5 content kind bytes: `CHAT`.
pub const K_CHAT: u8 = 0x01;
/// `CHAT` message `flags` bit 0: sent to this peer alone (§3.5).
pub const CHAT_FLAG_PRIVATE: u8 = 0x01;
/// §3.5 `PROFILE.flags` bit 0: the sender keeps its identity across restarts.
pub const PROFILE_FLAG_LASTING: u8 = 0x01;
/// `PROFILE`.
pub const K_PROFILE: u8 = 0x02;
/// `REKEY_INIT`.
pub const K_REKEY_INIT: u8 = 0x03;
/// `REKEY_REPLY`.
pub const K_REKEY_REPLY: u8 = 0x04;
/// `REKEY_COMMIT`.
pub const K_REKEY_COMMIT: u8 = 0x05;
/// `REKEY_DONE`.
pub const K_REKEY_DONE: u8 = 0x06;
/// `CLOSE`.
pub const K_CLOSE: u8 = 0x07;
/// `PING`.
pub const K_PING: u8 = 0x08;

/// §2/§8: an encoded RSA public key longer than this is `TOO_LARGE`.
pub const MAX_PUBLIC_KEY: usize = 600;
/// §2/§8: a `wrapped` field longer than this is `TOO_LARGE`.
pub const MAX_WRAPPED: usize = 512;
/// §3.5/§8: display name bytes.
pub const MAX_NAME: usize = 64;
/// §3.5/§8: messages per `CHAT` record.
pub const MAX_CHAT_COUNT: usize = 1024;
/// §3.4: the AEAD tag.
pub const TAG_LEN: usize = 16;

/// Who wrote a record (§3.4 `sender`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// `0`: the session's initiator.
    Initiator,
    /// `1`: the session's responder.
    Responder,
}

impl Role {
    /// The `sender` byte.
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

/// `HELLO` (§3.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// `version` (2).
    pub version: u8,
    /// `hs_id`.
    pub hs_id: [u8; 16],
    /// `nonce_i`.
    pub nonce: [u8; 32],
    /// `pub_i` (PKCS#1 DER).
    pub public_key: Vec<u8>,
    /// `share_i` (ristretto255 encoding).
    pub share: [u8; 32],
}

/// `AUTH` (§3.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Auth {
    /// `hs_id`.
    pub hs_id: [u8; 16],
    /// `wrapped_i`.
    pub wrapped: Vec<u8>,
    /// `mac_i`.
    pub mac: [u8; 32],
}

/// `CHALLENGE` (§3.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// `hs_id`.
    pub hs_id: [u8; 16],
    /// `nonce_r`.
    pub nonce: [u8; 32],
    /// `pub_r`.
    pub public_key: Vec<u8>,
    /// `share_r`.
    pub share: [u8; 32],
}

/// `AUTH_OK` (§3.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthOk {
    /// `hs_id`.
    pub hs_id: [u8; 16],
    /// `wrapped_r`.
    pub wrapped: Vec<u8>,
    /// `mac_r`.
    pub mac: [u8; 32],
    /// R's `PROFILE` record.
    pub record: Record,
}

/// A record (§3.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// `session_id`.
    pub session_id: [u8; 16],
    /// `epoch`.
    pub epoch: u32,
    /// `sender`.
    pub sender: Role,
    /// `seq`.
    pub seq: u64,
    /// `sealed`: ciphertext then the 16-byte tag.
    pub sealed: Vec<u8>,
}

/// `ACK` (§3.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    /// `session_id`.
    pub session_id: [u8; 16],
    /// `epoch`.
    pub epoch: u32,
    /// `seq`.
    pub seq: u64,
    /// `tag`.
    pub tag: [u8; 16],
}

/// A request (§3.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `HELLO`.
    Hello(Hello),
    /// `AUTH`.
    Auth(Auth),
    /// `RECORD`.
    Record(Record),
    /// `ABORT`.
    Abort {
        /// `hs_id`.
        hs_id: [u8; 16],
        /// `code`.
        code: u16,
    },
    /// Not a request: what the node sent did not parse (inbound only; encodes as an empty
    /// body, i.e. a frame of length 0).
    Invalid(String),
}

/// A response (§3.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// `CHALLENGE`.
    Challenge(Challenge),
    /// `AUTH_OK`.
    AuthOk(AuthOk),
    /// `ACK`.
    Ack(Ack),
    /// `REPLY`.
    Reply(Record),
    /// `REJECT`.
    Reject {
        /// `code`.
        code: RejectCode,
        /// `detail`.
        detail: u32,
    },
    /// `DONE`.
    Done,
}

/// One message of a `CHAT` content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    /// `msg_id`.
    pub id: u64,
    /// `sent_at_ms`.
    pub sent_at_ms: u64,
    /// `flags` (§3.5): bit 0 = private; the other bits MUST be 0.
    pub flags: u8,
    /// `text`.
    pub text: String,
}

/// A record's plaintext (§3.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// `CHAT`.
    Chat(Vec<ChatMessage>),
    /// `PROFILE`.
    Profile {
        /// `name`.
        name: String,
        /// `flags` as sent (bit 0 lasting; the encoder writes any byte, so tests can set
        /// reserved bits; the decoder refuses them).
        flags: u8,
    },
    /// `REKEY_INIT`.
    RekeyInit {
        /// `new_epoch`.
        new_epoch: u32,
        /// `nonce`.
        nonce: [u8; 32],
        /// `pub`.
        public_key: Vec<u8>,
        /// `share`.
        share: [u8; 32],
    },
    /// `REKEY_REPLY`.
    RekeyReply {
        /// `new_epoch`.
        new_epoch: u32,
        /// `nonce`.
        nonce: [u8; 32],
        /// `pub`.
        public_key: Vec<u8>,
        /// `share`.
        share: [u8; 32],
        /// `wrapped`.
        wrapped: Vec<u8>,
    },
    /// `REKEY_COMMIT`.
    RekeyCommit {
        /// `new_epoch`.
        new_epoch: u32,
        /// `wrapped`.
        wrapped: Vec<u8>,
    },
    /// `REKEY_DONE`.
    RekeyDone {
        /// `new_epoch`.
        new_epoch: u32,
    },
    /// `CLOSE`.
    Close {
        /// `code`.
        code: u16,
    },
    /// `PING`.
    Ping,
}

impl Content {
    /// The §3.5 name of the kind.
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

/// Why bytes did not parse: the `REJECT` a receiver answers (§3, §9).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    /// `MALFORMED` or `TOO_LARGE`.
    pub code: RejectCode,
    /// The limit for `TOO_LARGE`, else 0.
    pub detail: u32,
    /// For failure messages.
    pub what: String,
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?} ({}): {}", self.code, self.detail, self.what)
    }
}

fn malformed(what: impl Into<String>) -> DecodeError {
    DecodeError {
        code: RejectCode::Malformed,
        detail: 0,
        what: what.into(),
    }
}

fn too_large(what: &str, limit: usize) -> DecodeError {
    DecodeError {
        code: RejectCode::TooLarge,
        detail: limit as u32,
        what: format!("{what} over {limit}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Reading.
// ---------------------------------------------------------------------------------------------

struct Rd<'a> {
    b: &'a [u8],
}

impl<'a> Rd<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], DecodeError> {
        if self.b.len() < n {
            return Err(malformed(format!("{what} runs past the end")));
        }
        let (head, rest) = self.b.split_at(n);
        self.b = rest;
        Ok(head)
    }

    fn arr<const N: usize>(&mut self, what: &str) -> Result<[u8; N], DecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N, what)?);
        Ok(a)
    }

    fn u8(&mut self, what: &str) -> Result<u8, DecodeError> {
        Ok(self.arr::<1>(what)?[0])
    }

    fn u16(&mut self, what: &str) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.arr(what)?))
    }

    fn u32(&mut self, what: &str) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.arr(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.arr(what)?))
    }

    /// `bytes16` whose length must not exceed `limit` (`TOO_LARGE`, detail `limit`).
    fn bytes16(&mut self, what: &str, limit: usize) -> Result<Vec<u8>, DecodeError> {
        let len = usize::from(self.u16(what)?);
        if len > limit {
            return Err(too_large(what, limit));
        }
        Ok(self.take(len, what)?.to_vec())
    }

    /// `bytes32` whose length must not exceed `limit`.
    fn bytes32(&mut self, what: &str, limit: usize) -> Result<Vec<u8>, DecodeError> {
        let len = self.u32(what)? as usize;
        if len > limit {
            return Err(too_large(what, limit));
        }
        Ok(self.take(len, what)?.to_vec())
    }

    fn end(&self) -> Result<(), DecodeError> {
        if self.b.is_empty() {
            Ok(())
        } else {
            Err(malformed(format!("{} byte(s) left over", self.b.len())))
        }
    }
}

fn read_record(r: &mut Rd<'_>) -> Result<Record, DecodeError> {
    let session_id = r.arr("session_id")?;
    let epoch = r.u32("epoch")?;
    let sender = match r.u8("sender")? {
        0 => Role::Initiator,
        1 => Role::Responder,
        other => return Err(malformed(format!("sender {other}"))),
    };
    let seq = r.u64("seq")?;
    // `sealed` is bounded only by the frame it travels in.
    let sealed = r.bytes32("sealed", usize::MAX)?;
    if sealed.len() < TAG_LEN {
        return Err(malformed("sealed shorter than the tag"));
    }
    Ok(Record {
        session_id,
        epoch,
        sender,
        seq,
        sealed,
    })
}

/// Decodes a request body (§3.2).
pub fn decode_request(body: &[u8]) -> Result<Request, DecodeError> {
    let mut r = Rd { b: body };
    let req = match r.u8("type")? {
        T_HELLO => {
            let version = r.u8("version")?;
            let hs_id = r.arr("hs_id")?;
            let nonce = r.arr("nonce_i")?;
            let public_key = r.bytes16("pub_i", MAX_PUBLIC_KEY)?;
            let share = r.arr("share_i")?;
            Request::Hello(Hello {
                version,
                hs_id,
                nonce,
                public_key,
                share,
            })
        }
        T_AUTH => {
            let hs_id = r.arr("hs_id")?;
            let wrapped = r.bytes16("wrapped_i", MAX_WRAPPED)?;
            let mac = r.arr("mac_i")?;
            Request::Auth(Auth {
                hs_id,
                wrapped,
                mac,
            })
        }
        T_RECORD => Request::Record(read_record(&mut r)?),
        T_ABORT => {
            let hs_id = r.arr("hs_id")?;
            let code = r.u16("code")?;
            Request::Abort { hs_id, code }
        }
        other => return Err(malformed(format!("request type {other:#04x}"))),
    };
    r.end()?;
    Ok(req)
}

/// Decodes a response body (§3.3).
pub fn decode_response(body: &[u8]) -> Result<Response, DecodeError> {
    let mut r = Rd { b: body };
    let resp = match r.u8("type")? {
        T_CHALLENGE => {
            let hs_id = r.arr("hs_id")?;
            let nonce = r.arr("nonce_r")?;
            let public_key = r.bytes16("pub_r", MAX_PUBLIC_KEY)?;
            let share = r.arr("share_r")?;
            Response::Challenge(Challenge {
                hs_id,
                nonce,
                public_key,
                share,
            })
        }
        T_AUTH_OK => {
            let hs_id = r.arr("hs_id")?;
            let wrapped = r.bytes16("wrapped_r", MAX_WRAPPED)?;
            let mac = r.arr("mac_r")?;
            let record = read_record(&mut r)?;
            Response::AuthOk(AuthOk {
                hs_id,
                wrapped,
                mac,
                record,
            })
        }
        T_ACK => {
            let session_id = r.arr("session_id")?;
            let epoch = r.u32("epoch")?;
            let seq = r.u64("seq")?;
            let tag = r.arr("tag")?;
            Response::Ack(Ack {
                session_id,
                epoch,
                seq,
                tag,
            })
        }
        T_REPLY => Response::Reply(read_record(&mut r)?),
        T_REJECT => {
            let code = RejectCode::from_u16(r.u16("code")?);
            let detail = r.u32("detail")?;
            Response::Reject { code, detail }
        }
        T_DONE => Response::Done,
        other => return Err(malformed(format!("response type {other:#04x}"))),
    };
    r.end()?;
    Ok(resp)
}

/// Decodes a record's plaintext (§3.5); `max_message` is the receiver's text limit.
pub fn decode_content(plain: &[u8], max_message: usize) -> Result<Content, DecodeError> {
    let mut r = Rd { b: plain };
    let content = match r.u8("kind")? {
        K_CHAT => {
            let count = usize::from(r.u16("count")?);
            if count > MAX_CHAT_COUNT {
                return Err(too_large("count", MAX_CHAT_COUNT));
            }
            if count == 0 {
                return Err(malformed("CHAT with no message"));
            }
            let mut msgs = Vec::with_capacity(count);
            for _ in 0..count {
                let id = r.u64("msg_id")?;
                let sent_at_ms = r.u64("sent_at_ms")?;
                let flags = r.u8("flags")?;
                if flags & !CHAT_FLAG_PRIVATE != 0 {
                    return Err(malformed(format!(
                        "flags {flags:#04x} has a reserved bit set"
                    )));
                }
                let text = r.bytes32("text", max_message)?;
                let text = String::from_utf8(text).map_err(|_| malformed("text is not UTF-8"))?;
                msgs.push(ChatMessage {
                    id,
                    sent_at_ms,
                    flags,
                    text,
                });
            }
            Content::Chat(msgs)
        }
        K_PROFILE => {
            let name = r.bytes16("name", MAX_NAME)?;
            let name = String::from_utf8(name).map_err(|_| malformed("name is not UTF-8"))?;
            let flags = r.u8("profile flags")?;
            if flags & !PROFILE_FLAG_LASTING != 0 {
                return Err(malformed("reserved profile flag set"));
            }
            Content::Profile { name, flags }
        }
        K_REKEY_INIT => {
            let new_epoch = r.u32("new_epoch")?;
            let nonce = r.arr("nonce")?;
            let public_key = r.bytes16("pub", MAX_PUBLIC_KEY)?;
            let share = r.arr("share")?;
            Content::RekeyInit {
                new_epoch,
                nonce,
                public_key,
                share,
            }
        }
        K_REKEY_REPLY => {
            let new_epoch = r.u32("new_epoch")?;
            let nonce = r.arr("nonce")?;
            let public_key = r.bytes16("pub", MAX_PUBLIC_KEY)?;
            let share = r.arr("share")?;
            let wrapped = r.bytes16("wrapped", MAX_WRAPPED)?;
            Content::RekeyReply {
                new_epoch,
                nonce,
                public_key,
                share,
                wrapped,
            }
        }
        K_REKEY_COMMIT => {
            let new_epoch = r.u32("new_epoch")?;
            let wrapped = r.bytes16("wrapped", MAX_WRAPPED)?;
            Content::RekeyCommit { new_epoch, wrapped }
        }
        K_REKEY_DONE => Content::RekeyDone {
            new_epoch: r.u32("new_epoch")?,
        },
        K_CLOSE => Content::Close {
            code: r.u16("code")?,
        },
        K_PING => Content::Ping,
        other => return Err(malformed(format!("content kind {other:#04x}"))),
    };
    r.end()?;
    Ok(content)
}

// ---------------------------------------------------------------------------------------------
// Writing. Lengths are written as they are: a test may build an over-limit field on purpose;
// only a length that does not fit its prefix at all panics (a test bug).
// ---------------------------------------------------------------------------------------------

fn put_bytes16(out: &mut Vec<u8>, x: &[u8]) {
    let len = u16::try_from(x.len()).expect("bytes16 field over 65535 bytes");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(x);
}

fn put_bytes32(out: &mut Vec<u8>, x: &[u8]) {
    let len = u32::try_from(x.len()).expect("bytes32 field over 4 GiB");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(x);
}

/// `record` (§3.4).
pub fn encode_record(out: &mut Vec<u8>, rec: &Record) {
    out.extend_from_slice(&rec.session_id);
    out.extend_from_slice(&rec.epoch.to_be_bytes());
    out.push(rec.sender.to_byte());
    out.extend_from_slice(&rec.seq.to_be_bytes());
    put_bytes32(out, &rec.sealed);
}

/// Encodes a request body (§3.2). `Invalid` encodes as no bytes at all.
pub fn encode_request(req: &Request) -> Vec<u8> {
    let mut out = Vec::new();
    match req {
        Request::Hello(h) => {
            out.push(T_HELLO);
            out.push(h.version);
            out.extend_from_slice(&h.hs_id);
            out.extend_from_slice(&h.nonce);
            put_bytes16(&mut out, &h.public_key);
            out.extend_from_slice(&h.share);
        }
        Request::Auth(a) => {
            out.push(T_AUTH);
            out.extend_from_slice(&a.hs_id);
            put_bytes16(&mut out, &a.wrapped);
            out.extend_from_slice(&a.mac);
        }
        Request::Record(rec) => {
            out.push(T_RECORD);
            encode_record(&mut out, rec);
        }
        Request::Abort { hs_id, code } => {
            out.push(T_ABORT);
            out.extend_from_slice(hs_id);
            out.extend_from_slice(&code.to_be_bytes());
        }
        Request::Invalid(_) => {}
    }
    out
}

/// Encodes a response body (§3.3).
pub fn encode_response(resp: &Response) -> Vec<u8> {
    let mut out = Vec::new();
    match resp {
        Response::Challenge(c) => {
            out.push(T_CHALLENGE);
            out.extend_from_slice(&c.hs_id);
            out.extend_from_slice(&c.nonce);
            put_bytes16(&mut out, &c.public_key);
            out.extend_from_slice(&c.share);
        }
        Response::AuthOk(a) => {
            out.push(T_AUTH_OK);
            out.extend_from_slice(&a.hs_id);
            put_bytes16(&mut out, &a.wrapped);
            out.extend_from_slice(&a.mac);
            encode_record(&mut out, &a.record);
        }
        Response::Ack(a) => {
            out.push(T_ACK);
            out.extend_from_slice(&a.session_id);
            out.extend_from_slice(&a.epoch.to_be_bytes());
            out.extend_from_slice(&a.seq.to_be_bytes());
            out.extend_from_slice(&a.tag);
        }
        Response::Reply(rec) => {
            out.push(T_REPLY);
            encode_record(&mut out, rec);
        }
        Response::Reject { code, detail } => {
            out.push(T_REJECT);
            out.extend_from_slice(&code.to_u16().to_be_bytes());
            out.extend_from_slice(&detail.to_be_bytes());
        }
        Response::Done => out.push(T_DONE),
    }
    out
}

/// Encodes a record's plaintext (§3.5).
pub fn encode_content(content: &Content) -> Vec<u8> {
    let mut out = Vec::new();
    match content {
        Content::Chat(msgs) => {
            out.push(K_CHAT);
            let count = u16::try_from(msgs.len()).expect("CHAT count over 65535");
            out.extend_from_slice(&count.to_be_bytes());
            for m in msgs {
                out.extend_from_slice(&m.id.to_be_bytes());
                out.extend_from_slice(&m.sent_at_ms.to_be_bytes());
                out.push(m.flags);
                put_bytes32(&mut out, m.text.as_bytes());
            }
        }
        Content::Profile { name, flags } => {
            out.push(K_PROFILE);
            put_bytes16(&mut out, name.as_bytes());
            out.push(*flags);
        }
        Content::RekeyInit {
            new_epoch,
            nonce,
            public_key,
            share,
        } => {
            out.push(K_REKEY_INIT);
            out.extend_from_slice(&new_epoch.to_be_bytes());
            out.extend_from_slice(nonce);
            put_bytes16(&mut out, public_key);
            out.extend_from_slice(share);
        }
        Content::RekeyReply {
            new_epoch,
            nonce,
            public_key,
            share,
            wrapped,
        } => {
            out.push(K_REKEY_REPLY);
            out.extend_from_slice(&new_epoch.to_be_bytes());
            out.extend_from_slice(nonce);
            put_bytes16(&mut out, public_key);
            out.extend_from_slice(share);
            put_bytes16(&mut out, wrapped);
        }
        Content::RekeyCommit { new_epoch, wrapped } => {
            out.push(K_REKEY_COMMIT);
            out.extend_from_slice(&new_epoch.to_be_bytes());
            put_bytes16(&mut out, wrapped);
        }
        Content::RekeyDone { new_epoch } => {
            out.push(K_REKEY_DONE);
            out.extend_from_slice(&new_epoch.to_be_bytes());
        }
        Content::Close { code } => {
            out.push(K_CLOSE);
            out.extend_from_slice(&code.to_be_bytes());
        }
        Content::Ping => out.push(K_PING),
    }
    out
}

/// `u32 length || body` (§3.1).
pub fn frame(body: &[u8]) -> Vec<u8> {
    let mut f = u32::try_from(body.len())
        .expect("frame over 4 GiB")
        .to_be_bytes()
        .to_vec();
    f.extend_from_slice(body);
    f
}
