//! The crate against SPEC.md's known-answer vectors (appendix A): every message vector
//! decodes with the crate's decoder and re-encodes to the same bytes, every content vector
//! likewise, every `REJECT` row decodes to its code, and every body the appendix says to
//! refuse is refused with its code and detail.
//!
//! The vectors were computed by the spec peer, an implementation written from SPEC.md
//! independently of the crate; they are read here from SPEC.md itself (with a parser of
//! this file's own), so SPEC.md, the spec peer and the crate must all agree byte for byte.
//!
//! The key-schedule vectors (A.2, A.6) are computed by the crate from their fixed inputs
//! through `noctua_chat::fuzzing::{handshake_vector, rotation_vector}` (module
//! `key_schedule`).

use std::collections::BTreeMap;

use noctua_chat::wire::{
    Content, Request, Response, decode_content, decode_request, decode_response, encode_content,
    encode_request, encode_response,
};

use noctua_chat::{RejectCode, SafetyNumber};

const SPEC: &str = include_str!("../SPEC.md");
const HEADING: &str = "## Appendix A. Known-answer vectors";

fn unhex(s: &str) -> Vec<u8> {
    assert!(s.len().is_multiple_of(2), "odd hex length");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digit"))
        .collect()
}

/// `name = hex` lines inside the appendix's code blocks, and its reject table as
/// `reject_<code>`.
fn vectors() -> BTreeMap<String, Vec<u8>> {
    let start = SPEC.find(HEADING).expect("SPEC.md has appendix A");
    let mut map = BTreeMap::new();
    let mut in_block = false;
    for line in SPEC[start..].lines() {
        if line.starts_with("```") {
            in_block = !in_block;
        } else if in_block {
            let (name, hex) = line.split_once(" = ").expect("`name = hex`");
            assert!(map.insert(name.to_string(), unhex(hex)).is_none(), "{name}");
        } else if let Some(row) = line.strip_prefix("| ") {
            let cells: Vec<&str> = row.split('|').map(|c| c.trim().trim_matches('`')).collect();
            if let Ok(code) = cells[0].parse::<u16>() {
                map.insert(format!("reject_{code}"), unhex(cells[2]));
            }
        }
    }
    map
}

fn get<'a>(v: &'a BTreeMap<String, Vec<u8>>, name: &str) -> &'a [u8] {
    v.get(name)
        .unwrap_or_else(|| panic!("appendix A has no {name}"))
}

#[test]
fn request_vectors_decode_and_reencode_byte_for_byte() {
    let v = vectors();
    for name in [
        "hello",
        "auth",
        "record",
        "record_chat",
        "record_rekey_init",
        "abort",
    ] {
        let body = get(&v, name);
        let req = decode_request(body).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!matches!(req, Request::Invalid(_)), "{name}");
        assert_eq!(encode_request(&req), body, "{name} re-encoded");
    }
    // The HELLO's fields are where §3.2 puts them.
    let Ok(Request::Hello(hello)) = decode_request(get(&v, "hello")) else {
        panic!("hello is not a HELLO");
    };
    assert_eq!(hello.version, 2);
    assert_eq!(&hello.hs_id[..], get(&v, "hs_id"));
    assert_eq!(&hello.nonce[..], get(&v, "nonce_i"));
    assert_eq!(hello.public_key, get(&v, "pub_i"));
    let hf = get(&v, "hello_frame");
    assert_eq!(&hf[4..], get(&v, "hello"));
    assert_eq!(
        u32::from_be_bytes(hf[..4].try_into().unwrap()) as usize,
        hf.len() - 4
    );
}

#[test]
fn response_vectors_decode_and_reencode_byte_for_byte() {
    let v = vectors();
    for name in ["challenge", "auth_ok", "ack", "done", "reply_rekey_done"] {
        let body = get(&v, name);
        let resp = decode_response(body).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!matches!(resp, Response::Invalid(_)), "{name}");
        assert_eq!(encode_response(&resp), body, "{name} re-encoded");
    }
    let Ok(Response::AuthOk(ok)) = decode_response(get(&v, "auth_ok")) else {
        panic!("auth_ok is not AUTH_OK");
    };
    assert_eq!(ok.wrapped, get(&v, "wrapped_r"));
    assert_eq!(&ok.mac[..], get(&v, "mac_r"));
    assert_eq!(&ok.record.session_id[..], get(&v, "session_id"));
}

#[test]
fn content_vectors_decode_and_reencode_byte_for_byte() {
    let v = vectors();
    let mut n = 0;
    for (name, body) in &v {
        if name.starts_with("content_") {
            let c = decode_content(body, 65_536).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(&encode_content(&c), body, "{name} re-encoded");
            n += 1;
        }
    }
    assert_eq!(n, 9, "one vector per content kind, and a lasting PROFILE");
    // The PROFILE flags (§3.5): I's says ephemeral, R's lasting.
    for (name, who, lasting) in [
        ("content_profile", "Alice", false),
        ("content_profile_lasting", "Bob", true),
    ] {
        let c = decode_content(get(&v, name), 65_536).expect(name);
        assert_eq!(
            c,
            Content::Profile {
                name: who.into(),
                lasting
            },
            "{name}"
        );
    }
}

#[test]
fn identity_safety_number_vector_matches_the_crate() {
    let v = vectors();
    let peer_i = libp2p::PeerId::from_bytes(get(&v, "peer_i")).unwrap();
    let peer_r = libp2p::PeerId::from_bytes(get(&v, "peer_r")).unwrap();
    let expected = get(&v, "identity_safety_number");
    for (a, b) in [(&peer_i, &peer_r), (&peer_r, &peer_i)] {
        let number = SafetyNumber::from_identities(a, b).to_string();
        assert_eq!(number.as_bytes(), expected, "from either side");
    }
    assert_ne!(expected, get(&v, "safety_number"));
}

#[test]
fn every_reject_row_decodes_to_its_code() {
    let v = vectors();
    let mut n = 0;
    for (name, body) in &v {
        if let Some(code) = name.strip_prefix("reject_") {
            let code: u16 = code.parse().expect("numeric code");
            match decode_response(body) {
                Ok(Response::Reject { code: c, detail: 0 }) => {
                    assert_eq!(c.to_u16(), code, "{name}");
                    assert_ne!(c, RejectCode::Unknown(code), "{name}: the crate knows it");
                }
                other => panic!("{name}: {other:?}"),
            }
            assert_eq!(&encode_response(&decode_response(body).unwrap()), body);
            n += 1;
        }
    }
    assert_eq!(n, 20, "every code of §9");
}

#[test]
fn bodies_the_appendix_refuses_are_refused_with_their_code() {
    let v = vectors();
    let mut n = 0;
    for (name, body) in &v {
        let (code, detail) = if name.starts_with("malformed_") {
            (RejectCode::Malformed, 0)
        } else if let Some(rest) = name.strip_prefix("too_large_") {
            let limit = rest.split('_').next().and_then(|d| d.parse().ok());
            (RejectCode::TooLarge, limit.expect("too_large_N_"))
        } else {
            continue;
        };
        let e = decode_request(body).expect_err(name);
        assert_eq!(
            (e.reject_code(), e.reject_detail()),
            (code, detail),
            "{name}: {e}"
        );
        n += 1;
    }
    assert!(n >= 8, "appendix A.7");
}

/// The key schedule (A.2, A.6) through the crate's own derivations, the functions its
/// handshake and session state machines call, exposed by `noctua_chat::fuzzing` (the
/// `fuzzing` feature, which this package's dev-dependency on itself turns on for every test
/// build, `cargo test --workspace` or `cargo test -p noctua-chat`). Every value both sides
/// derive is checked as each side derives it.
mod key_schedule {
    use super::*;
    use noctua_chat::Role;
    use noctua_chat::fuzzing::{
        EpochKeyVector, HandshakeInputs, RotationInputs, Secret, handshake_vector, rotation_vector,
    };

    fn a<const N: usize>(v: &BTreeMap<String, Vec<u8>>, n: &str) -> [u8; N] {
        get(v, n)
            .try_into()
            .unwrap_or_else(|_| panic!("{n} is not {N} bytes"))
    }

    fn check_epoch(v: &BTreeMap<String, Vec<u8>>, epoch: u32, side: &str, k: &EpochKeyVector) {
        for (name, got) in [
            ("chain", &k.chain),
            ("key_i2r", &k.key_i2r),
            ("key_r2i", &k.key_r2i),
            ("ack_i", &k.ack_i),
            ("ack_r", &k.ack_r),
        ] {
            let name = format!("{name}_{epoch}");
            assert_eq!(&got[..], get(v, &name), "{name} at {side}");
        }
    }

    #[test]
    fn handshake_and_rotation_vectors_match_the_crates_key_schedule() {
        let v = vectors();
        let secret = Secret::new(String::from_utf8(get(&v, "secret").to_vec()).unwrap()).unwrap();
        let peer_i = libp2p::PeerId::from_bytes(get(&v, "peer_i")).unwrap();
        let peer_r = libp2p::PeerId::from_bytes(get(&v, "peer_r")).unwrap();
        let hs = handshake_vector(&HandshakeInputs {
            secret: &secret,
            peer_i: &peer_i,
            peer_r: &peer_r,
            hs_id: a(&v, "hs_id"),
            nonce_i: a(&v, "nonce_i"),
            nonce_r: a(&v, "nonce_r"),
            pub_i: get(&v, "pub_i"),
            pub_r: get(&v, "pub_r"),
            y_i_wide: a(&v, "y_i_wide"),
            y_r_wide: a(&v, "y_r_wide"),
            k_i: a(&v, "k_i"),
            k_r: a(&v, "k_r"),
            wrapped_i: get(&v, "wrapped_i"),
            wrapped_r: get(&v, "wrapped_r"),
        })
        .expect("the crate accepts the handshake inputs");
        for (name, got) in [
            ("k_pw", &hs.k_pw[..]),
            ("g", &hs.g[..]),
            ("y_i", &hs.y_i[..]),
            ("y_r", &hs.y_r[..]),
            ("share_i", &hs.share_i[..]),
            ("share_r", &hs.share_r[..]),
            ("z", &hs.z_at_i[..]),
            ("z", &hs.z_at_r[..]),
            ("th", &hs.th[..]),
            ("k_conf", &hs.k_conf_at_i[..]),
            ("k_conf", &hs.k_conf_at_r[..]),
            ("mac_i", &hs.mac_i[..]),
            ("mac_r", &hs.mac_r[..]),
            ("session_id", &hs.session_id_at_i[..]),
            ("session_id", &hs.session_id_at_r[..]),
            ("safety_number", hs.safety_number_at_i.as_bytes()),
            ("safety_number", hs.safety_number_at_r.as_bytes()),
        ] {
            assert_eq!(got, get(&v, name), "{name}");
        }
        check_epoch(&v, 0, "the initiator", &hs.epoch0_at_i);
        check_epoch(&v, 0, "the responder", &hs.epoch0_at_r);

        // A.6: the session rotates from epoch 0 to 1, started by its initiator.
        let rot = rotation_vector(&RotationInputs {
            chain: hs.epoch0_at_i.chain,
            session_id: hs.session_id_at_i,
            new_epoch: 1,
            rotator: Role::Initiator,
            pub_a: get(&v, "pub_i"),
            pub_b: get(&v, "pub_r"),
            nonce_a: a(&v, "nonce_a"),
            nonce_b: a(&v, "nonce_b"),
            x_a_wide: a(&v, "x_a_wide"),
            x_b_wide: a(&v, "x_b_wide"),
            k_a: a(&v, "k_a"),
            k_b: a(&v, "k_b"),
            wrapped_a: get(&v, "wrapped_a"),
            wrapped_b: get(&v, "wrapped_b"),
        })
        .expect("the crate accepts the rotation inputs");
        for (name, got) in [
            ("share_a", &rot.share_a[..]),
            ("share_b", &rot.share_b[..]),
            ("z_1", &rot.z_at_a[..]),
            ("z_1", &rot.z_at_b[..]),
            ("rth_1", &rot.rth[..]),
        ] {
            assert_eq!(got, get(&v, name), "{name}");
        }
        check_epoch(&v, 1, "A", &rot.epoch_at_a);
        check_epoch(&v, 1, "B", &rot.epoch_at_b);
    }

    #[test]
    fn the_hook_refuses_what_a_peer_refuses() {
        // The hook runs the crate's checks too: a scalar input that reduces to zero (which
        // `scalar()` never returns) and an RSA key a peer would refuse give nothing.
        let v = vectors();
        let secret = Secret::new("x").unwrap();
        let peer = libp2p::PeerId::from_bytes(get(&v, "peer_i")).unwrap();
        let base = HandshakeInputs {
            secret: &secret,
            peer_i: &peer,
            peer_r: &peer,
            hs_id: [0; 16],
            nonce_i: [0; 32],
            nonce_r: [0; 32],
            pub_i: get(&v, "pub_i"),
            pub_r: get(&v, "pub_r"),
            y_i_wide: [7; 64],
            y_r_wide: [9; 64],
            k_i: [0; 32],
            k_r: [0; 32],
            wrapped_i: &[],
            wrapped_r: &[],
        };
        assert!(handshake_vector(&base).is_some());
        let zero = HandshakeInputs {
            y_i_wide: [0; 64],
            ..base
        };
        assert!(handshake_vector(&zero).is_none(), "zero scalar");
        let bad_key = HandshakeInputs {
            pub_r: &[0x30, 0x00],
            ..base
        };
        assert!(handshake_vector(&bad_key).is_none(), "unacceptable key");
    }
}
