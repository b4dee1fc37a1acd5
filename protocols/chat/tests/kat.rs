//! The crate against SPEC.md's known-answer vectors (appendix A): every message vector
//! decodes with the crate's decoder and re-encodes to the same bytes, every content vector
//! likewise, every `REJECT` row decodes to its code, and every body the appendix says to
//! refuse is refused with its code and detail.
//!
//! The vectors were computed by the spec peer, an implementation written from SPEC.md
//! independently of the crate; they are read here from SPEC.md itself (with a parser of
//! this file's own), so SPEC.md, the spec peer and the crate must all agree byte for byte.
//!
//! The key-schedule vectors (A.2, A.6) need a hook that computes the crate's handshake and
//! rotation from fixed inputs; the crate has none yet. The test for them is written against
//! the API it needs (module `key_schedule`, compiled out until the hook exists) and is listed
//! as ignored meanwhile.

use std::collections::BTreeMap;

use noctua_chat::RejectCode;
use noctua_chat::wire::{
    Request, Response, decode_content, decode_request, decode_response, encode_content,
    encode_request, encode_response,
};

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
    assert_eq!(n, 8, "one vector per content kind");
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
    assert_eq!(n, 19, "every code of §9");
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

#[test]
#[ignore = "needs a crate hook computing the handshake and rotation from fixed inputs: see module `key_schedule` (compiled out) for the API it expects; the lead wires it at merge"]
fn key_schedule_vectors() {}

/// The test the key-schedule vectors need, against the hook it expects in
/// `noctua_chat::fuzzing` (names are a proposal):
///
/// ```text
/// pub struct HandshakeVector { g, share_i, share_r, z, th: [u8; 32], session_id: [u8; 16],
///     k_conf, mac_i, mac_r, chain_0, key_i2r, key_r2i, ack_i, ack_r: [u8; 32],
///     safety_number: String }
/// pub fn handshake_vector(secret: &Secret, peer_i: &PeerId, peer_r: &PeerId, hs_id: [u8; 16],
///     nonce_i: [u8; 32], nonce_r: [u8; 32], pub_i: &[u8], pub_r: &[u8], y_i_wide: [u8; 64],
///     y_r_wide: [u8; 64], k_i: [u8; 32], k_r: [u8; 32], wrapped_i: &[u8], wrapped_r: &[u8])
///     -> HandshakeVector
/// pub struct RotationVector { share_a, share_b, z, rth, chain, key_i2r, key_r2i, ack_i,
///     ack_r: [u8; 32] }
/// pub fn rotation_vector(chain_e: [u8; 32], session_id: [u8; 16], new_epoch: u32,
///     role_a: Role, pub_a: &[u8], pub_b: &[u8], nonce_a: [u8; 32], nonce_b: [u8; 32],
///     x_a_wide: [u8; 64], x_b_wide: [u8; 64], k_a: [u8; 32], k_b: [u8; 32],
///     wrapped_a: &[u8], wrapped_b: &[u8]) -> RotationVector
/// ```
///
/// Enable by deleting the `cfg` line once the hook exists (and the ignored stub above).
#[cfg(any())]
mod key_schedule {
    use super::*;
    use noctua_chat::fuzzing::{handshake_vector, rotation_vector};
    use noctua_chat::{Role, Secret};

    fn a<const N: usize>(v: &BTreeMap<String, Vec<u8>>, n: &str) -> [u8; N] {
        get(v, n)
            .try_into()
            .unwrap_or_else(|_| panic!("{n} is not {N} bytes"))
    }

    #[test]
    fn key_schedule_vectors() {
        let v = vectors();
        let secret = Secret::new(String::from_utf8(get(&v, "secret").to_vec()).unwrap()).unwrap();
        let peer_i = libp2p::PeerId::from_bytes(get(&v, "peer_i")).unwrap();
        let peer_r = libp2p::PeerId::from_bytes(get(&v, "peer_r")).unwrap();
        let hs = handshake_vector(
            &secret,
            &peer_i,
            &peer_r,
            a(&v, "hs_id"),
            a(&v, "nonce_i"),
            a(&v, "nonce_r"),
            get(&v, "pub_i"),
            get(&v, "pub_r"),
            a(&v, "y_i_wide"),
            a(&v, "y_r_wide"),
            a(&v, "k_i"),
            a(&v, "k_r"),
            get(&v, "wrapped_i"),
            get(&v, "wrapped_r"),
        );
        for (name, got) in [
            ("g", &hs.g[..]),
            ("share_i", &hs.share_i[..]),
            ("share_r", &hs.share_r[..]),
            ("z", &hs.z[..]),
            ("th", &hs.th[..]),
            ("session_id", &hs.session_id[..]),
            ("k_conf", &hs.k_conf[..]),
            ("mac_i", &hs.mac_i[..]),
            ("mac_r", &hs.mac_r[..]),
            ("chain_0", &hs.chain_0[..]),
            ("key_i2r_0", &hs.key_i2r[..]),
            ("key_r2i_0", &hs.key_r2i[..]),
            ("ack_i_0", &hs.ack_i[..]),
            ("ack_r_0", &hs.ack_r[..]),
            ("safety_number", hs.safety_number.as_bytes()),
        ] {
            assert_eq!(got, get(&v, name), "{name}");
        }
        let rot = rotation_vector(
            a(&v, "chain_0"),
            a(&v, "session_id"),
            1,
            Role::Initiator,
            get(&v, "pub_i"),
            get(&v, "pub_r"),
            a(&v, "nonce_a"),
            a(&v, "nonce_b"),
            a(&v, "x_a_wide"),
            a(&v, "x_b_wide"),
            a(&v, "k_a"),
            a(&v, "k_b"),
            get(&v, "wrapped_a"),
            get(&v, "wrapped_b"),
        );
        for (name, got) in [
            ("share_a", &rot.share_a[..]),
            ("share_b", &rot.share_b[..]),
            ("z_1", &rot.z[..]),
            ("rth_1", &rot.rth[..]),
            ("chain_1", &rot.chain[..]),
            ("key_i2r_1", &rot.key_i2r[..]),
            ("key_r2i_1", &rot.key_r2i[..]),
            ("ack_i_1", &rot.ack_i[..]),
            ("ack_r_1", &rot.ack_r[..]),
        ] {
            assert_eq!(got, get(&v, name), "{name}");
        }
    }
}
