//! The spec peer against itself: round trips of its encoder and decoder, their strictness,
//! and a full handshake, chat and rotations between a [`SpecInitiator`] and a
//! [`SpecResponder`] (no node involved).

use libp2p::PeerId;

use crate::*;

fn wrong(body: &[u8]) -> (RejectCode, u32) {
    let e = decode_request(body).expect_err("must not parse");
    (e.code, e.detail)
}

fn pair() -> (PeerId, PeerId) {
    (PeerId::random(), PeerId::random())
}

/// Runs HELLO/CHALLENGE/AUTH/AUTH_OK/confirmation through the encoder and decoder, the way
/// two spec peers would talk on the wire.
fn through_wire_req(r: Request) -> Request {
    decode_request(&encode_request(&r)).expect("own request parses")
}

fn through_wire_resp(r: Response) -> Response {
    decode_response(&encode_response(&r)).expect("own response parses")
}

fn handshake(secret_i: &str, secret_r: &str) -> Result<(SpecSession, SpecSession), String> {
    let (pi, pr) = pair();
    let init = SpecInitiator::new(pi, pr, secret_i.as_bytes(), spec_rsa_key());
    let mut resp = SpecResponder::new(pr, secret_r.as_bytes(), spec_rsa_key());
    let Request::Hello(hello) = through_wire_req(init.hello()) else {
        unreachable!()
    };
    let Response::Challenge(ch) = through_wire_resp(resp.on_hello(pi, &hello)) else {
        return Err("HELLO refused".into());
    };
    let sent = init.on_challenge(&ch)?;
    let Request::Auth(auth) = through_wire_req(sent.auth()) else {
        unreachable!()
    };
    let (answer, r_session) = resp.on_auth(pi, &auth);
    let answer = through_wire_resp(answer);
    let Response::AuthOk(ok) = answer else {
        return Err(format!("AUTH answered {answer:?}"));
    };
    let mut i_session = sent.on_auth_ok(&ok)?;
    let mut r_session = r_session.expect("session with AUTH_OK");
    assert!(!r_session.confirmed);
    let confirm = i_session.confirmation();
    let Request::Record(confirm) = through_wire_req(Request::Record(confirm)) else {
        unreachable!()
    };
    let answered = r_session.answer(&confirm);
    let Response::Ack(ack) = through_wire_resp(answered.response) else {
        return Err("confirmation not acked".into());
    };
    i_session.verify_ack(&confirm, &ack)?;
    assert!(r_session.confirmed);
    Ok((i_session, r_session))
}

#[test]
fn handshake_chat_and_rotations_between_two_spec_peers() {
    let (mut i, mut r) = handshake("7kq2-m9xd-4htr", "7kq2-m9xd-4htr").expect("handshake");
    assert_eq!(i.session_id, r.session_id);
    assert_eq!(i.safety_number(), r.safety_number());
    assert_eq!(i.keys[&0].key_i2r, r.keys[&0].key_i2r);
    assert_eq!(r.remote_name.as_deref(), Some("Spec"));

    let rec = i.chat(1, &["hello"]);
    let ans = r.answer(&rec);
    let Response::Ack(ack) = ans.response else {
        panic!("{ans:?}")
    };
    i.verify_ack(&rec, &ack).expect("ack verifies");
    assert!(matches!(
        r.answer(&rec).response,
        Response::Reject {
            code: RejectCode::Replayed,
            ..
        }
    ));

    // Two rotations, one started by each side; each must change every key.
    for starter_is_i in [true, false] {
        let (a, b) = if starter_is_i {
            (&mut i, &mut r)
        } else {
            (&mut r, &mut i)
        };
        let before = a.keys[&a.epoch].clone();
        let init = a.rekey_init();
        let Response::Reply(reply) = b.answer(&init).response else {
            panic!("REKEY_INIT not answered with REPLY");
        };
        let commit = a.rekey_commit(&reply).expect("REKEY_REPLY acceptable");
        let Response::Reply(done) = b.answer(&commit).response else {
            panic!("REKEY_COMMIT not answered with REPLY");
        };
        a.rekey_done(&done).expect("REKEY_DONE acceptable");
        assert_eq!(a.epoch, b.epoch);
        let (ka, kb) = (&a.keys[&a.epoch], &b.keys[&b.epoch]);
        assert_eq!(ka.chain, kb.chain);
        assert_eq!(ka.key_r2i, kb.key_r2i);
        assert_ne!(ka.chain, before.chain);
        assert_ne!(ka.key_i2r, before.key_i2r);
    }
    assert_eq!(i.epoch, 2);
    let rec = r.chat(7, &["after two rotations"]);
    let ans = i.answer(&rec);
    assert!(matches!(ans.response, Response::Ack(_)), "{ans:?}");
}

#[test]
fn a_wrong_secret_fails_at_auth() {
    let Err(err) = handshake("7kq2-m9xd-4htr", "7kq2-m9xd-4htx") else {
        panic!("a handshake with different secrets completed");
    };
    assert!(err.contains("AuthFailed"), "{err}");
}

#[test]
fn bad_shares_are_bad_key() {
    let (pi, pr) = pair();
    let init = SpecInitiator::new(pi, pr, b"s", spec_rsa_key());
    let mut resp = SpecResponder::new(pr, b"s", spec_rsa_key());
    // The identity (all zero) and a non-canonical encoding (p, i.e. 2^255 - 19, little-endian).
    let mut p = [0xffu8; 32];
    p[0] = 0xed;
    p[31] = 0x7f;
    for share in [[0u8; 32], p, [0xff; 32]] {
        let Request::Hello(h) = init.hello_with(VERSION, share) else {
            unreachable!()
        };
        assert_eq!(
            resp.on_hello(pi, &h),
            Response::Reject {
                code: RejectCode::BadKey,
                detail: 0
            }
        );
    }
    let Request::Hello(h) = init.hello_with_version(1) else {
        unreachable!()
    };
    assert_eq!(
        resp.on_hello(pi, &h),
        Response::Reject {
            code: RejectCode::UnsupportedVersion,
            detail: 0
        }
    );
}

#[test]
fn decoder_is_strict() {
    let (pi, pr) = pair();
    let init = SpecInitiator::new(pi, pr, b"s", spec_rsa_key());
    let hello = encode_request(&init.hello());
    assert_eq!(decode_request(&hello), Ok(init.hello()));
    for cut in 0..hello.len() {
        assert_eq!(
            wrong(&hello[..cut]).0,
            RejectCode::Malformed,
            "cut at {cut}"
        );
    }
    let mut long = hello.clone();
    long.push(0);
    assert_eq!(wrong(&long), (RejectCode::Malformed, 0));
    // The length prefix of pub_i over the limit is TOO_LARGE even before the bytes follow.
    let mut big = hello[..50].to_vec();
    big.extend_from_slice(&601u16.to_be_bytes());
    assert_eq!(wrong(&big), (RejectCode::TooLarge, 600));
    for t in [0x00, 0x05, 0x81, 0xff] {
        assert_eq!(wrong(&[t]).0, RejectCode::Malformed);
    }
    // Responses and contents are strict too.
    let done = encode_response(&Response::Done);
    assert_eq!(decode_response(&done), Ok(Response::Done));
    assert!(decode_response(&[0x86, 0]).is_err());
    assert!(
        decode_response(&[0x01]).is_err(),
        "a request type is no response"
    );
    assert!(decode_content(&[0x08, 0], DEFAULT_MAX_MESSAGE).is_err());
    assert_eq!(
        decode_content(&[0x01, 0x04, 0x01], DEFAULT_MAX_MESSAGE).map_err(|e| (e.code, e.detail)),
        Err((RejectCode::TooLarge, 1024))
    );
    assert!(decode_content(&[0x01, 0, 0], DEFAULT_MAX_MESSAGE).is_err());
    let text_over = encode_content(&chat_content(1, &["abcde"]));
    assert_eq!(
        decode_content(&text_over, 4).map_err(|e| (e.code, e.detail)),
        Err((RejectCode::TooLarge, 4))
    );
    // §3.5 `flags`: bit 0 is private, every other bit is MALFORMED.
    let flags_at = 1 + 2 + 8 + 8;
    let mut flagged = encode_content(&chat_content(1, &["hi"]));
    assert_eq!(flagged[flags_at], 0, "chat_content sends a broadcast");
    flagged[flags_at] = CHAT_FLAG_PRIVATE;
    let Ok(Content::Chat(msgs)) = decode_content(&flagged, DEFAULT_MAX_MESSAGE) else {
        panic!("a private CHAT did not decode");
    };
    assert_eq!(msgs[0].flags, CHAT_FLAG_PRIVATE);
    for bit in 1..8 {
        flagged[flags_at] = CHAT_FLAG_PRIVATE | (1 << bit);
        assert_eq!(
            decode_content(&flagged, DEFAULT_MAX_MESSAGE).map_err(|e| e.code),
            Err(RejectCode::Malformed),
            "flags bit {bit}"
        );
    }
}

#[test]
fn every_reject_code_round_trips_and_unknown_ones_are_kept() {
    for c in RejectCode::ALL {
        assert_eq!(RejectCode::from_u16(c.to_u16()), *c);
        let r = Response::Reject {
            code: *c,
            detail: 7,
        };
        assert_eq!(decode_response(&encode_response(&r)), Ok(r));
    }
    assert_eq!(RejectCode::from_u16(21), RejectCode::Unknown(21));
    assert_eq!(RejectCode::ALL.len(), 23);
}

// ---------------------------------------------------------------------------------------------
// The framing on real libp2p streams: two spec peer swarms over the memory transport.
// ---------------------------------------------------------------------------------------------

mod swarms {
    use std::task::Poll;

    use futures::StreamExt as _;
    use libp2p::Swarm;
    use libp2p::request_response::{Event, Message};
    use libp2p::swarm::SwarmEvent;
    use libp2p_swarm_test::SwarmExt as _;

    use crate::*;

    /// Sends `req` from `a` (through [`SpecCodec`], or verbatim bytes through [`RawCodec`])
    /// and lets `b` answer each request it reads with `answer`; returns `a`'s response.
    async fn exchange(
        a: &mut Swarm<SpecBehaviour>,
        b: &mut Swarm<SpecBehaviour>,
        req: Result<Request, Vec<u8>>,
        mut answer: impl FnMut(Request) -> Response,
    ) -> Result<Response, String> {
        let b_id = *b.local_peer_id();
        let raw = req.is_err();
        match req {
            Ok(r) => {
                a.behaviour_mut().chat.send_request(&b_id, r);
            }
            Err(bytes) => {
                a.behaviour_mut().raw.send_request(&b_id, bytes);
            }
        }
        loop {
            let step = futures::future::poll_fn(|cx| {
                if let Poll::Ready(Some(e)) = a.poll_next_unpin(cx) {
                    return Poll::Ready((true, e));
                }
                if let Poll::Ready(Some(e)) = b.poll_next_unpin(cx) {
                    return Poll::Ready((false, e));
                }
                Poll::Pending
            })
            .await;
            match step {
                (
                    false,
                    SwarmEvent::Behaviour(SpecBehaviourEvent::Chat(Event::Message {
                        message:
                            Message::Request {
                                request, channel, ..
                            },
                        ..
                    })),
                ) => {
                    let resp = answer(request);
                    b.behaviour_mut()
                        .chat
                        .send_response(channel, resp)
                        .expect("channel open");
                }
                (
                    true,
                    SwarmEvent::Behaviour(SpecBehaviourEvent::Chat(Event::Message {
                        message: Message::Response { response, .. },
                        ..
                    })),
                ) if !raw => return Ok(response),
                (
                    true,
                    SwarmEvent::Behaviour(SpecBehaviourEvent::Raw(Event::Message {
                        message: Message::Response { response, .. },
                        ..
                    })),
                ) if raw => return Ok(response),
                (
                    true,
                    SwarmEvent::Behaviour(SpecBehaviourEvent::Chat(Event::OutboundFailure {
                        error,
                        ..
                    })),
                )
                | (
                    true,
                    SwarmEvent::Behaviour(SpecBehaviourEvent::Raw(Event::OutboundFailure {
                        error,
                        ..
                    })),
                ) => return Err(error.to_string()),
                _ => {}
            }
        }
    }

    #[tokio::test]
    async fn a_handshake_and_a_record_cross_real_streams_and_bad_frames_arrive_as_invalid() {
        tokio::time::timeout(std::time::Duration::from_secs(30), run())
            .await
            .expect("the exchange did not finish within 30 s");
    }

    async fn run() {
        let mut a = Swarm::new_ephemeral_tokio(|_| SpecBehaviour::new());
        let mut b = Swarm::new_ephemeral_tokio(|_| SpecBehaviour::new());
        b.listen().with_memory_addr_external().await;
        a.connect(&mut b).await;
        let (a_id, b_id) = (*a.local_peer_id(), *b.local_peer_id());
        let init = SpecInitiator::new(a_id, b_id, b"secret", spec_rsa_key());
        let mut resp = SpecResponder::new(b_id, b"secret", spec_rsa_key());

        let hello = init.hello();
        let got = exchange(&mut a, &mut b, Ok(hello), |r| match r {
            Request::Hello(h) => resp.on_hello(a_id, &h),
            other => panic!("expected HELLO, got {other:?}"),
        })
        .await;
        let Ok(Response::Challenge(ch)) = got else {
            panic!("{got:?}")
        };
        let sent = init.on_challenge(&ch).expect("CHALLENGE acceptable");
        let mut r_session = None;
        let got = exchange(&mut a, &mut b, Ok(sent.auth()), |r| match r {
            Request::Auth(auth) => {
                let (resp, s) = resp.on_auth(a_id, &auth);
                r_session = s;
                resp
            }
            other => panic!("expected AUTH, got {other:?}"),
        })
        .await;
        let Ok(Response::AuthOk(ok)) = got else {
            panic!("{got:?}")
        };
        let mut i_session = sent.on_auth_ok(&ok).expect("AUTH_OK verifies");
        let mut r_session = r_session.expect("responder session");
        let confirm = i_session.confirmation();
        let got = exchange(
            &mut a,
            &mut b,
            Ok(Request::Record(confirm.clone())),
            |r| match r {
                Request::Record(rec) => r_session.answer(&rec).response,
                other => panic!("expected RECORD, got {other:?}"),
            },
        )
        .await;
        let Ok(Response::Ack(ack)) = got else {
            panic!("{got:?}")
        };
        i_session.verify_ack(&confirm, &ack).expect("ACK verifies");

        // A HELLO with a byte left over reaches the reader as Invalid; the answer frame
        // (REJECT MALFORMED) comes back through the raw codec.
        let mut body =
            encode_request(&SpecInitiator::new(a_id, b_id, b"s", spec_rsa_key()).hello());
        body.push(0);
        let mut seen = None;
        let got = exchange(&mut a, &mut b, Err(frame(&body)), |r| {
            seen = Some(r);
            Response::Reject {
                code: RejectCode::Malformed,
                detail: 0,
            }
        })
        .await;
        assert!(
            matches!(seen, Some(Request::Invalid(ref e)) if e.contains("left over")),
            "{seen:?}"
        );
        assert_eq!(
            got,
            Ok(Response::Reject {
                code: RejectCode::Malformed,
                detail: 0
            })
        );
        // A frame of length 0 likewise.
        let got = exchange(&mut a, &mut b, Err(vec![0, 0, 0, 0]), |r| {
            assert!(matches!(r, Request::Invalid(_)), "{r:?}");
            Response::Done
        })
        .await;
        assert_eq!(got, Ok(Response::Done));
    }
}
