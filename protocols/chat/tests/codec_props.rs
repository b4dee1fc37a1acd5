//! Property tests of the wire codec: every message round-trips, and no input panics the
//! decoders or decodes into something that re-encodes differently.

use noctua_chat::RejectCode;
use noctua_chat::wire::{
    Ack, Auth, AuthOk, Challenge, ChatMessage, Content, Hello, Record, Request, Response, Role,
    decode_content, decode_request, decode_response, encode_content, encode_request,
    encode_response,
};
use proptest::prelude::*;

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
            bytes(600)
        )
            .prop_map(|(version, hs_id, nonce, public_key)| Request::Hello(Hello {
                version,
                hs_id,
                nonce,
                public_key
            })),
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
        (any::<[u8; 16]>(), any::<[u8; 32]>(), bytes(600)).prop_map(
            |(hs_id, nonce, public_key)| {
                Response::Challenge(Challenge {
                    hs_id,
                    nonce,
                    public_key,
                })
            }
        ),
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
    let msg =
        (any::<u64>(), any::<u64>(), ".{0,40}").prop_map(|(id, sent_at_ms, text)| ChatMessage {
            id,
            sent_at_ms,
            text,
        });
    prop_oneof![
        proptest::collection::vec(msg, 1..20).prop_map(Content::Chat),
        "[a-zA-Z é]{0,20}".prop_map(|name| Content::Profile { name }),
        (any::<u32>(), any::<[u8; 32]>(), bytes(600)).prop_map(|(new_epoch, nonce, public_key)| {
            Content::RekeyInit {
                new_epoch,
                nonce,
                public_key,
            }
        }),
        (any::<u32>(), any::<[u8; 32]>(), bytes(600), bytes(512)).prop_map(
            |(new_epoch, nonce, public_key, wrapped)| Content::RekeyReply {
                new_epoch,
                nonce,
                public_key,
                wrapped
            }
        ),
        (any::<u32>(), bytes(512))
            .prop_map(|(new_epoch, wrapped)| Content::RekeyCommit { new_epoch, wrapped }),
        any::<u32>().prop_map(|new_epoch| Content::RekeyDone { new_epoch }),
        any::<u16>().prop_map(|code| Content::Close { code }),
        Just(Content::Ping),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

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
