//! Fuzz target `wire`: the public codec of `/noctua/chat/2.0.0` (SPEC.md §3).
//!
//! Every input is used three ways:
//! 1. as a body for `decode_request`, `decode_response` and `decode_content` (two size
//!    limits): nothing panics, whatever decodes re-encodes to the same bytes (encodings are
//!    canonical), one more byte is `Trailing(1)`, a shorter prefix never decodes, and a
//!    larger `max_message` accepts whatever a smaller one did;
//! 2. as a stream read by the framing codec `noctua_chat::Codec` (`read_request` and
//!    `read_response`, through `futures::io::Cursor`, whole or in small chunks with
//!    `Pending` in between): the result is exactly what SPEC.md §3.1 says for that
//!    stream, the codec reads no further than the frame (nothing past the length of an
//!    oversized frame), and a decoded message written back by the codec gives the same
//!    frame;
//! 3. as the source of structured messages (within and over the limits) that must
//!    round-trip through the encoders and decoders, or be refused as `TOO_LARGE`.

#![no_main]

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::executor::block_on;
use futures::io::{AsyncRead, Cursor};
use libfuzzer_sys::arbitrary::{Result as AResult, Unstructured};
use libfuzzer_sys::fuzz_target;
use libp2p::request_response::Codec as _;
use noctua_chat::wire::{
    self, Ack, Auth, AuthOk, Challenge, ChatMessage, Content, Hello, Record, Request, Response,
    Role, WireError,
};
use noctua_chat::{Codec, PROTOCOL, RejectCode};

fuzz_target!(|data: &[u8]| {
    decoders(data);
    framing(data);
    let _ = structured(&mut Unstructured::new(data));
});

// ---------------------------------------------------------------------------------------
// 1. Decoders on arbitrary bytes
// ---------------------------------------------------------------------------------------

fn decoders(data: &[u8]) {
    let req = wire::decode_request(data);
    if let Ok(r) = &req {
        assert!(!matches!(r, Request::Invalid(_)));
        assert_eq!(
            wire::encode_request(r),
            data,
            "request not canonical: {r:?}"
        );
        assert_strict(data, |b| wire::decode_request(b).is_ok());
    }
    let resp = wire::decode_response(data);
    if let Ok(r) = &resp {
        assert!(!matches!(r, Response::Invalid(_)));
        assert_eq!(
            wire::encode_response(r),
            data,
            "response not canonical: {r:?}"
        );
        assert_strict(data, |b| wire::decode_response(b).is_ok());
    }
    let small = 16;
    let big = 1 << 16;
    let c_small = wire::decode_content(data, small);
    let c_big = wire::decode_content(data, big);
    if let Ok(c) = &c_big {
        assert_eq!(
            wire::encode_content(c),
            data,
            "content not canonical: {c:?}"
        );
        if let Content::Chat(msgs) = c {
            assert_eq!(
                wire::encode_chat(msgs.iter()),
                data,
                "encode_chat differs from encode_content"
            );
            let len = 3 + msgs
                .iter()
                .map(|m| wire::chat_message_encoded_len(m.text.len()))
                .sum::<usize>();
            assert_eq!(len, data.len(), "chat_message_encoded_len is wrong");
        }
        assert_strict(data, |b| wire::decode_content(b, big).is_ok());
    }
    match (&c_small, &c_big) {
        (Ok(a), Ok(b)) => assert_eq!(a, b),
        (Ok(a), Err(e)) => panic!("{a:?} decodes with max {small} but not {big}: {e}"),
        (Err(WireError::TooLarge { .. }), _) => {}
        (Err(e), Ok(c)) => panic!("{c:?} decodes with max {big} but with {small}: {e}"),
        (Err(a), Err(b)) => assert_eq!(a, b),
    }
    for e in [req.err(), resp.err(), c_small.err(), c_big.err()]
        .into_iter()
        .flatten()
    {
        check_error(&e);
    }
}

/// A decodable message is refused with one more byte, and its prefixes are refused.
fn assert_strict(data: &[u8], decodes: impl Fn(&[u8]) -> bool) {
    let mut longer = data.to_vec();
    longer.push(0);
    assert!(!decodes(&longer), "accepted with a trailing byte");
    for cut in [data.len() - 1, data.len() / 2, 1, 0] {
        if cut < data.len() {
            assert!(!decodes(&data[..cut]), "prefix of {cut} bytes accepted");
        }
    }
}

fn check_error(e: &WireError) {
    let msg = e.to_string();
    assert!(!msg.is_empty());
    match e {
        WireError::TooLarge { len, max, .. } => {
            assert!(len > max, "TooLarge with len {len} <= max {max}");
            assert_eq!(e.reject_code(), RejectCode::TooLarge);
            assert_eq!(
                u64::from(e.reject_detail()),
                (*max).min(u64::from(u32::MAX))
            );
        }
        _ => {
            assert_eq!(e.reject_code(), RejectCode::Malformed);
            assert_eq!(e.reject_detail(), 0);
        }
    }
}

// ---------------------------------------------------------------------------------------
// 2. The framing codec
// ---------------------------------------------------------------------------------------

/// An `AsyncRead` that hands out at most `chunk` bytes per read, returning `Pending` (and
/// waking itself) before every read.
struct Trickle {
    inner: Cursor<Vec<u8>>,
    chunk: usize,
    ready: bool,
}

impl AsyncRead for Trickle {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        if !self.ready {
            self.ready = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        self.ready = false;
        let n = buf.len().min(self.chunk);
        Pin::new(&mut self.inner).poll_read(cx, &mut buf[..n])
    }
}

/// What SPEC.md §3.1 says a reader gets from `data`, and how many bytes it may consume.
fn expected_frame(data: &[u8], max: usize) -> (Result<&[u8], WireError>, u64) {
    let Some(prefix) = data.get(..4) else {
        return (Err(WireError::Truncated), data.len() as u64);
    };
    let len = u32::from_be_bytes(prefix.try_into().expect("4 bytes")) as usize;
    if len == 0 {
        return (Err(WireError::Invalid("empty frame")), 4);
    }
    if len > max {
        let e = WireError::TooLarge {
            what: "frame",
            len: len as u64,
            max: max as u64,
        };
        return (Err(e), 4);
    }
    match data.get(4..4 + len) {
        Some(body) => (Ok(body), (4 + len) as u64),
        None => (Err(WireError::Truncated), data.len() as u64),
    }
}

fn framing(data: &[u8]) {
    let max = match data.first() {
        Some(b) => [1, 16, 64, 300, 66_560, 262_144, 16 << 20][usize::from(b % 7)],
        None => 262_144,
    };
    let chunk = data.get(1).map_or(1, |b| 1 + usize::from(b % 8));
    let (frame, consumed) = expected_frame(data, max);

    // Requests.
    let expected = match frame {
        Ok(body) => wire::decode_request(body).unwrap_or_else(Request::Invalid),
        Err(ref e) => Request::Invalid(e.clone()),
    };
    let mut codec = Codec::new(max);
    let mut cursor = Cursor::new(data.to_vec());
    let got = block_on(codec.read_request(&PROTOCOL, &mut cursor)).expect("a cursor never fails");
    assert!(
        got == expected,
        "read_request: got {got:?}, expected {expected:?}"
    );
    assert_eq!(
        cursor.position(),
        consumed,
        "read_request consumed the wrong bytes"
    );
    let mut trickle = Trickle {
        inner: Cursor::new(data.to_vec()),
        chunk,
        ready: false,
    };
    let got2 = block_on(codec.read_request(&PROTOCOL, &mut trickle)).expect("never fails");
    assert!(got2 == got, "chunked read differs: {got2:?} vs {got:?}");
    assert_eq!(trickle.inner.position(), consumed);
    if !matches!(got, Request::Invalid(_)) {
        let mut out = Vec::new();
        block_on(codec.write_request(&PROTOCOL, &mut out, got)).expect("fits the frame limit");
        assert_eq!(
            out,
            data[..consumed as usize],
            "write_request differs from the frame"
        );
    }

    // Responses.
    let expected = match frame {
        Ok(body) => wire::decode_response(body).unwrap_or_else(Response::Invalid),
        Err(ref e) => Response::Invalid(e.clone()),
    };
    let mut cursor = Cursor::new(data.to_vec());
    let got = block_on(codec.read_response(&PROTOCOL, &mut cursor)).expect("never fails");
    assert!(
        got == expected,
        "read_response: got {got:?}, expected {expected:?}"
    );
    assert_eq!(
        cursor.position(),
        consumed,
        "read_response consumed the wrong bytes"
    );
    if !matches!(got, Response::Invalid(_)) {
        let mut out = Vec::new();
        block_on(codec.write_response(&PROTOCOL, &mut out, got)).expect("fits the frame limit");
        assert_eq!(
            out,
            data[..consumed as usize],
            "write_response differs from the frame"
        );
    }

    // Writing any body longer than the limit is refused, not truncated.
    if let Ok(body) = frame {
        if body.len() > 1 {
            let mut small = Codec::new(body.len() - 1);
            if let Ok(req) = wire::decode_request(body) {
                let mut out = Vec::new();
                let r = block_on(small.write_request(&PROTOCOL, &mut out, req));
                assert!(r.is_err() && out.is_empty(), "oversized frame written");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// 3. Structured messages round-trip
// ---------------------------------------------------------------------------------------

/// A byte string of at most `max` bytes, sometimes a few bytes over it.
fn bytes(u: &mut Unstructured<'_>, max: usize) -> AResult<(Vec<u8>, bool)> {
    let over = u.ratio(1, 16)?;
    let len = if over {
        max + 1 + u.int_in_range(0..=8)?
    } else {
        u.int_in_range(0..=max)?
    };
    let mut v = vec![0u8; len];
    let avail = u.len().min(len);
    u.fill_buffer(&mut v[..avail])?;
    Ok((v, over))
}

fn record(u: &mut Unstructured<'_>) -> AResult<Record> {
    let len = 16 + u.int_in_range(0..=300usize)?;
    let mut sealed = vec![0u8; len];
    u.fill_buffer(&mut sealed)?;
    Ok(Record {
        session_id: u.arbitrary()?,
        epoch: u.arbitrary()?,
        sender: if u.arbitrary()? {
            Role::Initiator
        } else {
            Role::Responder
        },
        seq: u.arbitrary()?,
        sealed,
    })
}

fn check_round_trip<T: PartialEq + std::fmt::Debug>(
    value: &T,
    over: bool,
    decoded: Result<T, WireError>,
) {
    if over {
        match decoded {
            Err(WireError::TooLarge { .. }) => {}
            other => panic!("{value:?} over a limit decoded as {other:?}"),
        }
    } else {
        assert_eq!(
            decoded.as_ref().ok(),
            Some(value),
            "round trip of {value:?}"
        );
    }
}

fn structured(u: &mut Unstructured<'_>) -> AResult<()> {
    match u.int_in_range(0..=2u8)? {
        0 => {
            let (req, over) = match u.int_in_range(0..=3u8)? {
                0 => {
                    let (public_key, over) = bytes(u, wire::MAX_PUBLIC_KEY_LEN)?;
                    let h = Hello {
                        version: u.arbitrary()?,
                        hs_id: u.arbitrary()?,
                        nonce: u.arbitrary()?,
                        public_key,
                        share: u.arbitrary()?,
                    };
                    (Request::Hello(h), over)
                }
                1 => {
                    let (wrapped, over) = bytes(u, wire::MAX_WRAPPED_LEN)?;
                    let a = Auth {
                        hs_id: u.arbitrary()?,
                        wrapped,
                        mac: u.arbitrary()?,
                    };
                    (Request::Auth(a), over)
                }
                2 => (Request::Record(record(u)?), false),
                _ => (
                    Request::Abort {
                        hs_id: u.arbitrary()?,
                        code: u.arbitrary()?,
                    },
                    false,
                ),
            };
            let enc = wire::encode_request(&req);
            check_round_trip(&req, over, wire::decode_request(&enc));
        }
        1 => {
            let (resp, over) = match u.int_in_range(0..=5u8)? {
                0 => {
                    let (public_key, over) = bytes(u, wire::MAX_PUBLIC_KEY_LEN)?;
                    let c = Challenge {
                        hs_id: u.arbitrary()?,
                        nonce: u.arbitrary()?,
                        public_key,
                        share: u.arbitrary()?,
                    };
                    (Response::Challenge(c), over)
                }
                1 => {
                    let (wrapped, over) = bytes(u, wire::MAX_WRAPPED_LEN)?;
                    let a = AuthOk {
                        hs_id: u.arbitrary()?,
                        wrapped,
                        mac: u.arbitrary()?,
                        record: record(u)?,
                    };
                    (Response::AuthOk(a), over)
                }
                2 => {
                    let a = Ack {
                        session_id: u.arbitrary()?,
                        epoch: u.arbitrary()?,
                        seq: u.arbitrary()?,
                        tag: u.arbitrary()?,
                    };
                    (Response::Ack(a), false)
                }
                3 => (Response::Reply(record(u)?), false),
                4 => {
                    let code = RejectCode::from_u16(u.arbitrary()?);
                    assert_eq!(RejectCode::from_u16(code.to_u16()), code);
                    (
                        Response::Reject {
                            code,
                            detail: u.arbitrary()?,
                        },
                        false,
                    )
                }
                _ => (Response::Done, false),
            };
            let enc = wire::encode_response(&resp);
            check_round_trip(&resp, over, wire::decode_response(&enc));
        }
        _ => {
            let max_message = 1 + u.int_in_range(0..=200usize)?;
            let (content, over) = match u.int_in_range(0..=7u8)? {
                0 => {
                    let n = 1 + u.int_in_range(0..=5usize)?;
                    let mut over = false;
                    let mut msgs = Vec::with_capacity(n);
                    for _ in 0..n {
                        let text: String = u.arbitrary()?;
                        over |= text.len() > max_message;
                        msgs.push(ChatMessage {
                            id: u.arbitrary()?,
                            sent_at_ms: u.arbitrary()?,
                            private: u.arbitrary()?,
                            text,
                        });
                    }
                    (Content::Chat(msgs), over)
                }
                1 => {
                    let name: String = u.arbitrary()?;
                    let over = name.len() > wire::MAX_NAME_LEN;
                    let lasting = u.arbitrary()?;
                    (Content::Profile { name, lasting }, over)
                }
                2 => {
                    let (public_key, over) = bytes(u, wire::MAX_PUBLIC_KEY_LEN)?;
                    let c = Content::RekeyInit {
                        new_epoch: u.arbitrary()?,
                        nonce: u.arbitrary()?,
                        public_key,
                        share: u.arbitrary()?,
                    };
                    (c, over)
                }
                3 => {
                    let (public_key, o1) = bytes(u, wire::MAX_PUBLIC_KEY_LEN)?;
                    let (wrapped, o2) = bytes(u, wire::MAX_WRAPPED_LEN)?;
                    let c = Content::RekeyReply {
                        new_epoch: u.arbitrary()?,
                        nonce: u.arbitrary()?,
                        public_key,
                        share: u.arbitrary()?,
                        wrapped,
                    };
                    (c, o1 || o2)
                }
                4 => {
                    let (wrapped, over) = bytes(u, wire::MAX_WRAPPED_LEN)?;
                    let c = Content::RekeyCommit {
                        new_epoch: u.arbitrary()?,
                        wrapped,
                    };
                    (c, over)
                }
                5 => (
                    Content::RekeyDone {
                        new_epoch: u.arbitrary()?,
                    },
                    false,
                ),
                6 => (
                    Content::Close {
                        code: u.arbitrary()?,
                    },
                    false,
                ),
                _ => (Content::Ping, false),
            };
            let enc = wire::encode_content(&content);
            check_round_trip(&content, over, wire::decode_content(&enc, max_message));
            assert!(!content.kind_name().is_empty());
        }
    }
    Ok(())
}
