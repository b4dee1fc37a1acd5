//! Property tests of the wire codec: every message round-trips, and no input panics the
//! decoders or decodes into something that re-encodes differently. Random bytes almost never
//! decode, so the decoders are also fed valid encodings with one change each (a bit flipped,
//! cut short, extended, a length field changed): each is refused cleanly or decodes to a
//! message that encodes to exactly those bytes.

use noctua_chat::RejectCode;
use noctua_chat::wire::{
    Ack, Auth, AuthOk, Challenge, ChatMessage, Content, Hello, Record, Request, Response, Role,
    decode_content, decode_request, decode_response, encode_content, encode_request,
    encode_response,
};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::TestCaseError;

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..=max)
}

fn role() -> impl Strategy<Value = Role> {
    prop_oneof![Just(Role::Initiator), Just(Role::Responder)]
}

fn record() -> impl Strategy<Value = Record> {
    (
        any::<[u8; 16]>(),
        any::<u32>(),
        role(),
        any::<u64>(),
        16..300usize,
    )
        .prop_flat_map(|(session_id, epoch, sender, seq, len)| {
            proptest::collection::vec(any::<u8>(), len).prop_map(move |sealed| Record {
                session_id,
                epoch,
                sender,
                seq,
                sealed,
            })
        })
}

fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        (
            any::<u8>(),
            any::<[u8; 16]>(),
            any::<[u8; 32]>(),
            bytes(600),
            any::<[u8; 32]>()
        )
            .prop_map(
                |(version, hs_id, nonce, public_key, share)| Request::Hello(Hello {
                    version,
                    hs_id,
                    nonce,
                    public_key,
                    share
                })
            ),
        (any::<[u8; 16]>(), bytes(512), any::<[u8; 32]>()).prop_map(|(hs_id, wrapped, mac)| {
            Request::Auth(Auth {
                hs_id,
                wrapped,
                mac,
            })
        }),
        record().prop_map(Request::Record),
        (any::<[u8; 16]>(), any::<u16>()).prop_map(|(hs_id, code)| Request::Abort { hs_id, code }),
    ]
}

fn response() -> impl Strategy<Value = Response> {
    prop_oneof![
        (
            any::<[u8; 16]>(),
            any::<[u8; 32]>(),
            bytes(600),
            any::<[u8; 32]>()
        )
            .prop_map(|(hs_id, nonce, public_key, share)| {
                Response::Challenge(Challenge {
                    hs_id,
                    nonce,
                    public_key,
                    share,
                })
            }),
        (any::<[u8; 16]>(), bytes(512), any::<[u8; 32]>(), record()).prop_map(
            |(hs_id, wrapped, mac, record)| Response::AuthOk(AuthOk {
                hs_id,
                wrapped,
                mac,
                record
            })
        ),
        (
            any::<[u8; 16]>(),
            any::<u32>(),
            any::<u64>(),
            any::<[u8; 16]>()
        )
            .prop_map(|(session_id, epoch, seq, tag)| Response::Ack(Ack {
                session_id,
                epoch,
                seq,
                tag
            })),
        record().prop_map(Response::Reply),
        (any::<u16>(), any::<u32>()).prop_map(|(c, detail)| Response::Reject {
            code: RejectCode::from_u16(c),
            detail
        }),
        Just(Response::Done),
    ]
}

fn content() -> impl Strategy<Value = Content> {
    let msg = (any::<u64>(), any::<u64>(), any::<bool>(), ".{0,40}").prop_map(
        |(id, sent_at_ms, private, text)| ChatMessage {
            id,
            sent_at_ms,
            private,
            text,
        },
    );
    prop_oneof![
        proptest::collection::vec(msg, 1..20).prop_map(Content::Chat),
        ("[a-zA-Z é]{0,20}", any::<bool>())
            .prop_map(|(name, lasting)| Content::Profile { name, lasting }),
        (
            any::<u32>(),
            any::<[u8; 32]>(),
            bytes(600),
            any::<[u8; 32]>()
        )
            .prop_map(|(new_epoch, nonce, public_key, share)| {
                Content::RekeyInit {
                    new_epoch,
                    nonce,
                    public_key,
                    share,
                }
            }),
        (
            any::<u32>(),
            any::<[u8; 32]>(),
            bytes(600),
            any::<[u8; 32]>(),
            bytes(512)
        )
            .prop_map(|(new_epoch, nonce, public_key, share, wrapped)| {
                Content::RekeyReply {
                    new_epoch,
                    nonce,
                    public_key,
                    share,
                    wrapped,
                }
            }),
        (any::<u32>(), bytes(512))
            .prop_map(|(new_epoch, wrapped)| Content::RekeyCommit { new_epoch, wrapped }),
        any::<u32>().prop_map(|new_epoch| Content::RekeyDone { new_epoch }),
        any::<u16>().prop_map(|code| Content::Close { code }),
        Just(Content::Ping),
    ]
}

/// One change to a valid encoding.
#[derive(Debug, Clone)]
enum Mutation {
    /// Flip bit `bit` of one byte.
    FlipBit(Index, u8),
    /// Keep only the first bytes (a strict prefix).
    Truncate(Index),
    /// Append bytes.
    Extend(Vec<u8>),
    /// Add `delta` to one big-endian `u16` (`wide`: `u32`) whose value fits in the bytes that
    /// follow it, as every length field's does: that is, change a length field (or a field
    /// that looks like one).
    Length { at: Index, wide: bool, delta: i8 },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<Index>(), 0..8u8).prop_map(|(at, bit)| Mutation::FlipBit(at, bit)),
        any::<Index>().prop_map(Mutation::Truncate),
        proptest::collection::vec(any::<u8>(), 1..8).prop_map(Mutation::Extend),
        (any::<Index>(), any::<bool>(), any::<i8>())
            .prop_filter("a change", |(_, _, d)| *d != 0)
            .prop_map(|(at, wide, delta)| Mutation::Length { at, wide, delta }),
    ]
}

/// Offsets of the big-endian integers of `width` bytes whose value fits in what follows
/// them: every length field of a valid encoding is one of them.
fn length_like(bytes: &[u8], width: usize) -> Vec<usize> {
    (0..bytes.len().saturating_sub(width - 1))
        .filter(|&i| {
            let v = bytes[i..i + width]
                .iter()
                .fold(0usize, |v, b| (v << 8) | usize::from(*b));
            v <= bytes.len() - i - width
        })
        .collect()
}

/// `bytes` changed by `m`; `None` when the change does not apply (no length-like field).
fn mutate(bytes: &[u8], m: &Mutation) -> Option<Vec<u8>> {
    let mut out = bytes.to_vec();
    match m {
        Mutation::FlipBit(at, bit) => out[at.index(bytes.len())] ^= 1 << bit,
        Mutation::Truncate(at) => out.truncate(at.index(bytes.len())),
        Mutation::Extend(more) => out.extend_from_slice(more),
        Mutation::Length { at, wide, delta } => {
            let width = if *wide { 4 } else { 2 };
            let fields = length_like(bytes, width);
            if fields.is_empty() {
                return None;
            }
            let i = fields[at.index(fields.len())];
            let field = &mut out[i..i + width];
            let v = field.iter().fold(0i64, |v, b| (v << 8) | i64::from(*b));
            let max = (1i64 << (8 * width)) - 1;
            let new = (v + i64::from(*delta)).clamp(0, max);
            if new == v {
                return None;
            }
            for (k, b) in field.iter_mut().enumerate() {
                *b = (new >> (8 * (width - 1 - k))) as u8;
            }
        }
    }
    Some(out)
}

/// A mutant of a valid encoding is refused (an error, no panic), or decodes to a value that
/// encodes to exactly the mutant's bytes.
fn refused_or_canonical<T: std::fmt::Debug, E>(
    mutant: &[u8],
    decode: impl Fn(&[u8]) -> Result<T, E>,
    encode: impl Fn(&T) -> Vec<u8>,
) -> Result<(), TestCaseError> {
    if let Ok(v) = decode(mutant) {
        prop_assert_eq!(encode(&v), mutant.to_vec(), "decoded as {:?}", v);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn mutated_requests_are_refused_or_canonical(req in request(), m in mutation()) {
        if let Some(mutant) = mutate(&encode_request(&req), &m) {
            refused_or_canonical(&mutant, decode_request, encode_request)?;
        }
    }

    #[test]
    fn mutated_responses_are_refused_or_canonical(resp in response(), m in mutation()) {
        if let Some(mutant) = mutate(&encode_response(&resp), &m) {
            refused_or_canonical(&mutant, decode_response, encode_response)?;
        }
    }

    #[test]
    fn mutated_contents_are_refused_or_canonical(c in content(), m in mutation()) {
        if let Some(mutant) = mutate(&encode_content(&c), &m) {
            refused_or_canonical(&mutant, |b| decode_content(b, 1 << 16), encode_content)?;
        }
    }

    /// A changed length field never goes unnoticed: the message is refused, or what decodes
    /// is another message (a length can only move bytes between fields it delimits).
    #[test]
    fn changed_length_fields_are_refused_or_decode_to_another_message(
        req in request(), at in any::<Index>(), wide in any::<bool>(), delta in any::<i8>()
    ) {
        let bytes = encode_request(&req);
        if let Some(mutant) = mutate(&bytes, &Mutation::Length { at, wide, delta })
            && let Ok(other) = decode_request(&mutant)
        {
            prop_assert_ne!(&other, &req);
            prop_assert_eq!(encode_request(&other), mutant);
        }
    }

    #[test]
    fn requests_round_trip(req in request()) {
        prop_assert_eq!(decode_request(&encode_request(&req)).unwrap(), req);
    }

    #[test]
    fn responses_round_trip(resp in response()) {
        prop_assert_eq!(decode_response(&encode_response(&resp)).unwrap(), resp);
    }

    #[test]
    fn contents_round_trip(c in content()) {
        prop_assert_eq!(decode_content(&encode_content(&c), 1 << 16).unwrap(), c);
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_decode_canonically(data in bytes(700)) {
        if let Ok(req) = decode_request(&data) {
            prop_assert_eq!(encode_request(&req), data.clone());
        }
        if let Ok(resp) = decode_response(&data) {
            prop_assert_eq!(encode_response(&resp), data.clone());
        }
        if let Ok(c) = decode_content(&data, 1 << 16) {
            prop_assert_eq!(encode_content(&c), data.clone());
        }
    }

    #[test]
    fn truncations_and_extensions_of_valid_messages_are_refused(req in request(), cut in any::<prop::sample::Index>(), extra in any::<u8>()) {
        let bytes = encode_request(&req);
        let n = cut.index(bytes.len());
        prop_assert!(decode_request(&bytes[..n]).is_err());
        let mut longer = bytes.clone();
        longer.push(extra);
        prop_assert!(decode_request(&longer).is_err());
    }
}
