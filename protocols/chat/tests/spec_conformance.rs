//! Conformance of `noctua_chat::Behaviour` with `SPEC.md`, checked against a peer written
//! from the spec alone (the `noctua-spec-peer` crate). Every test runs a real node swarm and the spec peer's
//! swarm over the memory transport.

use std::time::Duration;

use noctua_chat::wire::Role as NodeRole;
use noctua_chat::{CloseReason, DeliveryError, Event, OpenError, Secret, SessionState};
use noctua_spec_peer::*;

const TEST_TIMEOUT: Duration = Duration::from_secs(30);

async fn within<F: std::future::Future<Output = ()>>(f: F) {
    tokio::time::timeout(TEST_TIMEOUT, f)
        .await
        .expect("test did not finish within 30 s");
}

/// Waits for the node's `SessionEstablished` with the spec peer and checks it against the
/// spec peer's own view of the session.
async fn established(hx: &mut Harness, s: &SpecSession) {
    let spec_id = hx.spec_id;
    let (session_id, role, name, safety) = hx
        .node_event(|e| match e {
            Event::SessionEstablished {
                peer,
                session_id,
                role,
                remote_name,
                safety_number,
                ..
            } if *peer == spec_id => Some((
                *session_id.as_bytes(),
                *role,
                remote_name.clone(),
                safety_number.to_string(),
            )),
            _ => None,
        })
        .await;
    assert_eq!(session_id, s.session_id, "session id (§5.1)");
    assert_eq!(role, NodeRole::Responder);
    assert_eq!(name, s.name, "the node shows our PROFILE name");
    assert_eq!(safety, s.safety_number(), "safety number (§5.6)");
}

/// The next chat message the node reports from the spec peer.
async fn received(hx: &mut Harness) -> noctua_chat::ChatMessage {
    let spec_id = hx.spec_id;
    hx.node_event(|e| match e {
        Event::MessageReceived { peer, message, .. } if *peer == spec_id => Some(message.clone()),
        _ => None,
    })
    .await
}

fn chat(id: u64, text: &str) -> Content {
    chat_content(id, &[text])
}

fn texts(content: &Content) -> Vec<String> {
    match content {
        Content::Chat(msgs) => msgs.iter().map(|m| m.text.clone()).collect(),
        other => panic!("expected CHAT, got {other:?}"),
    }
}

/// Minimal DER for a hand-made PKCS#1 `RSAPublicKey` (to offer keys §2 refuses).
fn der_public_key(modulus: &[u8], exponent: &[u8]) -> Vec<u8> {
    fn len(n: usize) -> Vec<u8> {
        match n {
            0..=0x7f => vec![n as u8],
            0x80..=0xff => vec![0x81, n as u8],
            _ => vec![0x82, (n >> 8) as u8, n as u8],
        }
    }
    fn int(v: &[u8]) -> Vec<u8> {
        let mut body = Vec::new();
        if v[0] & 0x80 != 0 {
            body.push(0);
        }
        body.extend_from_slice(v);
        [vec![0x02], len(body.len()), body].concat()
    }
    let seq = [int(modulus), int(exponent)].concat();
    [vec![0x30], len(seq.len()), seq].concat()
}

fn odd_modulus(bits: usize) -> Vec<u8> {
    let mut n = vec![0u8; bits / 8];
    rand::Rng::fill_bytes(&mut rand::rng(), &mut n);
    n[0] |= 0x80;
    *n.last_mut().unwrap() |= 1;
    n
}

// -------------------------------------------------------------------------------------------
// (1) Handshake, chat both ways, receipts.
// -------------------------------------------------------------------------------------------

#[tokio::test]
async fn handshake_chat_and_receipts_both_ways() {
    within(async {
        let secret = Secret::generate();
        let mut hx = Harness::new(node_config(secret.clone())).await;
        let spec_id = hx.spec_id;
        let node_pub = hx
            .node
            .behaviour()
            .current_key()
            .expect("key given in the config")
            .public_der()
            .to_vec();

        // HELLO -> CHALLENGE (§5.1).
        let init = hx.initiator(secret.expose());
        let ch = hx.expect_challenge(init.hello()).await;
        assert_eq!(ch.hs_id, init.hs_id, "CHALLENGE echoes hs_id");
        assert_eq!(ch.public_key, node_pub, "pub_r is the node's current key");
        assert_ne!(ch.nonce, [0; 32]);

        // AUTH -> AUTH_OK (§5.2, §5.3).
        let sent = init.on_challenge(&ch).expect("CHALLENGE acceptable");
        let ok = hx.expect_auth_ok(sent.auth()).await;
        assert_eq!(ok.hs_id, sent.init.hs_id);
        assert_eq!(ok.mac, sent.expected_mac_r(&ok.wrapped), "mac_r (§5.3)");
        assert_eq!(ok.wrapped.len(), 256, "OAEP under a 2048-bit key");
        let mut s = sent
            .on_auth_ok(&ok)
            .expect("AUTH_OK verifies and its PROFILE opens");
        assert_eq!(s.remote_name.as_deref(), Some("Node"));
        assert!(
            hx.node_events
                .iter()
                .all(|e| !matches!(e, Event::SessionEstablished { .. })),
            "no session before confirmation (§5.4)"
        );

        // RECORD(PROFILE) -> ACK (§5.4), then the node announces the session.
        let confirm = s.confirmation();
        assert_eq!((confirm.epoch, confirm.seq), (0, 0));
        hx.send_acked(&s, confirm).await;
        established(&mut hx, &s).await;
        let info = hx
            .behaviour()
            .session(&spec_id)
            .expect("session on the node");
        assert_eq!(info.state, SessionState::Active);
        assert_eq!(info.epoch, 0);
        assert_eq!(info.role, NodeRole::Responder);
        assert_eq!(info.id.as_bytes(), &s.session_id);
        assert_eq!(info.safety_number.to_string(), s.safety_number());
        assert_eq!(info.remote_name.as_deref(), Some("Spec"));

        // A CHAT record with two messages -> one ACK, two MessageReceived (§6.3).
        let rec = s.chat(41, &["hello from the spec", "ünïcödé ✓"]);
        assert_eq!(rec.seq, 1);
        let ack = hx
            .expect(Request::Record(rec.clone()), "ACK", |r| match r {
                Response::Ack(a) => Some(a),
                _ => None,
            })
            .await;
        s.verify_ack(&rec, &ack).expect("ACK tag (§6.2)");
        let mut forged = ack.clone();
        forged.tag[15] ^= 1;
        assert!(
            s.verify_ack(&rec, &forged).is_err(),
            "a wrong tag must not verify"
        );
        let m1 = received(&mut hx).await;
        let m2 = received(&mut hx).await;
        assert_eq!((m1.id, m1.text.as_str()), (41, "hello from the spec"));
        assert_eq!((m2.id, m2.text.as_str()), (42, "ünïcödé ✓"));

        // The node sends: its record is sender 1, epoch 0, next seq after its PROFILE.
        let id = hx
            .behaviour()
            .send_message(&spec_id, "hello from the node")
            .expect("queued");
        let (rec, answered) = hx.answer_next(&mut s).await;
        assert_eq!(rec.session_id, s.session_id);
        assert_eq!((rec.epoch, rec.sender, rec.seq), (0, Role::Responder, 1));
        assert_eq!(
            texts(answered.content.as_ref().expect("opens")),
            ["hello from the node"]
        );
        assert!(matches!(answered.response, Response::Ack(_)));
        let delivered = hx
            .node_event(|e| match e {
                Event::MessageDelivered { peer, message } if *peer == spec_id => Some(*message),
                Event::DeliveryFailed { error, .. } => panic!("delivery failed: {error}"),
                _ => None,
            })
            .await;
        assert_eq!(delivered, id);

        // A receipt with a wrong tag is not a receipt.
        let id2 = hx
            .behaviour()
            .send_message(&spec_id, "second from the node")
            .expect("queued");
        let (req, chan) = hx.next_inbound().await;
        let Request::Record(rec) = req else {
            panic!("expected RECORD, got {req:?}")
        };
        assert_eq!((rec.epoch, rec.seq), (0, 2));
        assert_eq!(
            texts(&s.open(&rec).expect("opens")),
            ["second from the node"]
        );
        let mut bad = s.make_ack(&rec);
        bad.tag[0] ^= 0x80;
        hx.respond(chan, Response::Ack(bad));
        let error = hx
            .node_event(|e| match e {
                Event::DeliveryFailed { message, error, .. } if *message == id2 => {
                    Some(error.clone())
                }
                Event::MessageDelivered { message, .. } if *message == id2 => {
                    panic!("a forged receipt was accepted")
                }
                _ => None,
            })
            .await;
        assert_eq!(error, DeliveryError::BadReceipt);
    })
    .await;
}

// -------------------------------------------------------------------------------------------
// (2) Wrong secret.
// -------------------------------------------------------------------------------------------

#[tokio::test]
async fn wrong_secret_is_auth_failed() {
    within(async {
        let secret = Secret::generate();
        let mut hx = Harness::new(node_config(secret)).await;
        let spec_id = hx.spec_id;
        let wrong = Secret::generate();

        let init = hx.initiator(wrong.expose());
        let ch = hx.expect_challenge(init.hello()).await;
        let sent = init.on_challenge(&ch).expect("CHALLENGE acceptable");
        hx.expect_reject(sent.auth(), RejectCode::AuthFailed).await;
        let banned = hx
            .node_event(|e| match e {
                Event::InboundAuthFailed { peer, banned, .. } if *peer == spec_id => Some(*banned),
                _ => None,
            })
            .await;
        assert!(!banned, "one failure does not ban (§8: 5 per 60 s)");
        // The pending handshake was discarded (§5.2).
        hx.expect_reject(sent.auth(), RejectCode::UnknownHandshake)
            .await;
        assert!(hx.behaviour().session(&spec_id).is_none());
    })
    .await;
}

#[tokio::test]
async fn user_chosen_secret_handshake() {
    within(async {
        // §4: a user-chosen secret's bytes are its text.
        let secret = Secret::new("correct-horse-battery-staple").expect("valid secret");
        let mut hx = Harness::new(node_config(secret)).await;
        let mut s = hx.handshake("correct-horse-battery-staple").await;
        established(&mut hx, &s).await;
        let rec = s.chat(1, &["hi"]);
        hx.send_acked(&s, rec).await;
        assert_eq!(received(&mut hx).await.text, "hi");
    })
    .await;
}

// -------------------------------------------------------------------------------------------
// (3) Abuse of records: every check of §6.2, then the session still works.
// -------------------------------------------------------------------------------------------

#[tokio::test]
async fn abused_records_are_refused_counted_and_the_session_survives() {
    within(async {
        let secret = Secret::generate();
        let mut hx = Harness::new(node_config(secret.clone())).await;
        let spec_id = hx.spec_id;
        let mut s = hx.handshake(secret.expose()).await;
        established(&mut hx, &s).await;

        let r1 = s.chat(1, &["m1"]);
        hx.send_acked(&s, r1).await;

        // Tampered ciphertext: DECRYPT_FAILED, and the seq is not burnt (§6.2 step 5).
        let r2 = s.chat(2, &["m2"]);
        hx.expect_reject(Request::Record(tampered(&r2)), RejectCode::DecryptFailed)
            .await;
        hx.send_acked(&s, r2.clone()).await;

        // The same record again: REPLAYED.
        hx.expect_reject(Request::Record(r2), RejectCode::Replayed)
            .await;

        // The node's own record sent back: REFLECTED.
        let own = s.auth_ok_record.clone().expect("kept from AUTH_OK");
        assert_eq!(own.sender, Role::Responder);
        hx.expect_reject(Request::Record(own), RejectCode::Reflected)
            .await;

        // An epoch the node never had: UNKNOWN_EPOCH.
        let k0 = s.epoch_keys(0).clone();
        let plain = encode_content(&chat(3, "wrong epoch"));
        let wrong_epoch = seal_raw(&k0.key_i2r, s.session_id, 7, Role::Initiator, 3, &plain);
        hx.expect_reject(Request::Record(wrong_epoch), RejectCode::UnknownEpoch)
            .await;

        // Another session id: UNKNOWN_SESSION.
        let plain = encode_content(&chat(4, "wrong session"));
        let other_sid = seal_raw(&k0.key_i2r, random(), 0, Role::Initiator, 3, &plain);
        hx.expect_reject(Request::Record(other_sid), RejectCode::UnknownSession)
            .await;

        // The replay window (default 256): 255 below the highest is in, 256 below is out.
        s.skip_to(0, 300);
        let r300 = s.chat(300, &["m300"]);
        hx.send_acked(&s, r300).await;
        let r44 = s.seal_at(0, 44, &chat(44, "m44"));
        hx.expect_reject(Request::Record(r44), RejectCode::OutOfWindow)
            .await;
        let r45 = s.seal_at(0, 45, &chat(45, "m45"));
        hx.send_acked(&s, r45).await;

        // The session survived all of it.
        let r301 = s.chat(301, &["m301"]);
        hx.send_acked(&s, r301).await;
        let mut got = Vec::new();
        for _ in 0..5 {
            got.push(received(&mut hx).await.text);
        }
        assert_eq!(got, ["m1", "m2", "m300", "m45", "m301"]);
        assert!(
            !hx.node_events.iter().any(|e| matches!(
                e,
                Event::MessageReceived { .. } | Event::SessionClosed { .. }
            )),
            "nothing refused was delivered, nothing closed: {:?}",
            hx.node_events
        );

        let info = hx.behaviour().session(&spec_id).expect("session");
        assert_eq!(info.state, SessionState::Active);
        let rj = info.rejections;
        assert_eq!(rj.tampered, 1, "{rj:?}");
        assert_eq!(rj.replayed, 1, "{rj:?}");
        assert_eq!(rj.out_of_window, 1, "{rj:?}");
        assert_eq!(rj.wrong_epoch, 1, "{rj:?}");
        assert_eq!(rj.reflected, 1, "{rj:?}");
        // UNKNOWN_SESSION has no counter of its own, and §6.2 does not say whether a record
        // naming another session counts "on the session" with this peer (the node does not
        // count it today). Either reading is accepted here.
        assert!(rj.malformed <= 1, "{rj:?}");
        assert_eq!(info.messages_received, 5);
    })
    .await;
}

// -------------------------------------------------------------------------------------------
// (4) Frames: too large, garbage.
// -------------------------------------------------------------------------------------------

async fn expect_raw_reject(hx: &mut Harness, bytes: Vec<u8>, code: RejectCode) -> u32 {
    let shown = format!("{:02x?}", &bytes[..bytes.len().min(24)]);
    match hx.raw_request(bytes).await {
        Ok(Response::Reject { code: c, detail }) if c == code => detail,
        other => panic!(
            "raw {shown}...: expected REJECT {code:?}, got {other:?}\nlog:\n{}",
            hx.log.join("\n")
        ),
    }
}

#[tokio::test]
async fn oversized_and_garbage_frames() {
    within(async {
        let secret = Secret::generate();
        let mut hx = Harness::new(node_config(secret.clone())).await;

        async fn abuse(hx: &mut Harness) {
            // Length prefix above 256 KiB: TOO_LARGE, detail = the limit, body not read.
            let mut big = ((DEFAULT_MAX_FRAME + 1) as u32).to_be_bytes().to_vec();
            big.extend_from_slice(&[0x03; 64]);
            let detail = expect_raw_reject(hx, big, RejectCode::TooLarge).await;
            assert_eq!(detail as usize, DEFAULT_MAX_FRAME);
            let huge = u32::MAX.to_be_bytes().to_vec();
            let detail = expect_raw_reject(hx, huge, RejectCode::TooLarge).await;
            assert_eq!(detail as usize, DEFAULT_MAX_FRAME);

            // Exactly the limit is read (and then refused as garbage, not as too large).
            let at_limit = frame(&vec![0xee; DEFAULT_MAX_FRAME]);
            expect_raw_reject(hx, at_limit, RejectCode::Malformed).await;

            // Unknown type byte.
            expect_raw_reject(hx, frame(&[0xee, 1, 2, 3]), RejectCode::Malformed).await;
            // A response type sent as a request.
            expect_raw_reject(hx, frame(&[0x86]), RejectCode::Malformed).await;
            // Empty frame (length must be at least 1).
            expect_raw_reject(hx, vec![0, 0, 0, 0], RejectCode::Malformed).await;
            // Stream ends inside the frame, and inside the length.
            expect_raw_reject(hx, vec![0, 0, 0, 10, 1, 2], RejectCode::Malformed).await;
            expect_raw_reject(hx, vec![0, 0], RejectCode::Malformed).await;
            // A valid HELLO with one byte left over.
            let init = hx.initiator("whatever");
            let mut body = encode_request(&init.hello());
            body.push(0);
            expect_raw_reject(hx, frame(&body), RejectCode::Malformed).await;
            // A RECORD with sender byte 2.
            let mut body = vec![0x03];
            body.extend_from_slice(&record_header(&[9; 16], 0, 2, 1));
            body.extend_from_slice(&16u32.to_be_bytes());
            body.extend_from_slice(&[0; 16]);
            expect_raw_reject(hx, frame(&body), RejectCode::Malformed).await;
            // A RECORD whose sealed part is shorter than the tag.
            let mut body = vec![0x03];
            body.extend_from_slice(&record_header(&[9; 16], 0, 0, 1));
            body.extend_from_slice(&3u32.to_be_bytes());
            body.extend_from_slice(&[0; 3]);
            expect_raw_reject(hx, frame(&body), RejectCode::Malformed).await;
            // Random noise.
            let noise: [u8; 64] = random();
            expect_raw_reject(
                hx,
                frame(&[&[0x7f][..], &noise[..]].concat()),
                RejectCode::Malformed,
            )
            .await;
            // Through the spec peer's codec: Request::Invalid encodes as an empty frame.
            let shown = hx.request(Request::Invalid(String::new())).await;
            assert!(
                matches!(
                    shown,
                    Ok(Response::Reject {
                        code: RejectCode::Malformed,
                        ..
                    })
                ),
                "{shown:?}"
            );
        }

        // Without a session, then with one: the answers are the same and the session lives.
        abuse(&mut hx).await;
        let mut s = hx.handshake(secret.expose()).await;
        established(&mut hx, &s).await;
        abuse(&mut hx).await;
        let rec = s.chat(1, &["still here"]);
        hx.send_acked(&s, rec).await;
        assert_eq!(received(&mut hx).await.text, "still here");
        let info = hx.node.behaviour().session(&hx.spec_id).expect("session");
        assert_eq!(info.state, SessionState::Active);
    })
    .await;
}

// -------------------------------------------------------------------------------------------
// (5) Rotation (§7).
// -------------------------------------------------------------------------------------------

async fn rotated(hx: &mut Harness) -> u32 {
    let spec_id = hx.spec_id;
    hx.node_event(|e| match e {
        Event::SessionRotated { peer, epoch, .. } if *peer == spec_id => Some(*epoch),
        Event::SessionClosed { reason, .. } => panic!("session closed: {reason}"),
        _ => None,
    })
    .await
}

#[tokio::test]
async fn rotation_driven_by_the_spec_peer() {
    within(async {
        let secret = Secret::generate();
        let mut hx = Harness::new(node_config(secret.clone())).await;
        let spec_id = hx.spec_id;
        let mut s = hx.handshake(secret.expose()).await;
        established(&mut hx, &s).await;
        let rec = s.chat(1, &["before"]);
        hx.send_acked(&s, rec).await;
        assert_eq!(received(&mut hx).await.text, "before");

        // REKEY_INIT(1) in epoch 0 -> REPLY(REKEY_REPLY) in epoch 0.
        let init = s.rekey_init();
        assert_eq!((init.epoch, init.seq), (0, 2));
        let reply = hx.send_for_reply(init).await;
        assert_eq!(
            (reply.epoch, reply.sender, reply.seq),
            (0, Role::Responder, 1)
        );
        // REKEY_COMMIT(1) in epoch 0 -> REPLY(REKEY_DONE) in epoch 1, seq 0.
        let commit = s.rekey_commit(&reply).expect("REKEY_REPLY valid");
        assert_eq!((commit.epoch, commit.seq), (0, 3));
        let done = hx.send_for_reply(commit).await;
        assert_eq!((done.epoch, done.sender, done.seq), (1, Role::Responder, 0));
        s.rekey_done(&done)
            .expect("REKEY_DONE opens under our epoch-1 keys");
        assert_eq!(s.epoch, 1);
        assert_eq!(rotated(&mut hx).await, 1);
        let info = hx.behaviour().session(&spec_id).expect("session");
        assert_eq!(info.epoch, 1);
        assert_eq!(
            info.safety_number.to_string(),
            s.safety_number(),
            "fixed for life (§5.6)"
        );

        // Epoch 1 both ways; counters restarted at 0.
        let rec = s.chat(2, &["in epoch 1"]);
        assert_eq!((rec.epoch, rec.seq), (1, 0));
        hx.send_acked(&s, rec).await;
        assert_eq!(received(&mut hx).await.text, "in epoch 1");
        let id = hx
            .behaviour()
            .send_message(&spec_id, "node in epoch 1")
            .unwrap();
        let (rec, answered) = hx.answer_next(&mut s).await;
        assert_eq!((rec.epoch, rec.seq), (1, 1));
        assert_eq!(
            texts(answered.content.as_ref().expect("opens")),
            ["node in epoch 1"]
        );
        let delivered = hx
            .node_event(|e| match e {
                Event::MessageDelivered { message, .. } => Some(*message),
                Event::DeliveryFailed { error, .. } => panic!("{error}"),
                _ => None,
            })
            .await;
        assert_eq!(delivered, id);

        // A late epoch-0 record within the grace window is still accepted (§7.1), acked
        // under epoch 0's ack key.
        let late = s.seal_at(0, 4, &chat(3, "late in epoch 0"));
        hx.send_acked(&s, late).await;
        assert_eq!(received(&mut hx).await.text, "late in epoch 0");
        // Epoch 2 does not exist yet.
        let k1 = s.epoch_keys(1).clone();
        let plain = encode_content(&chat(4, "epoch 2"));
        let e2 = seal_raw(&k1.key_i2r, s.session_id, 2, Role::Initiator, 9, &plain);
        hx.expect_reject(Request::Record(e2), RejectCode::UnknownEpoch)
            .await;

        // A second rotation discards epoch 0 at once: its records are STALE_EPOCH.
        let k0 = s.epoch_keys(0).clone();
        let init = s.rekey_init();
        let reply = hx.send_for_reply(init).await;
        assert_eq!(reply.epoch, 1);
        let commit = s.rekey_commit(&reply).expect("REKEY_REPLY valid");
        let done = hx.send_for_reply(commit).await;
        s.rekey_done(&done).expect("REKEY_DONE valid");
        assert_eq!(rotated(&mut hx).await, 2);
        let plain = encode_content(&chat(5, "stale"));
        let stale = seal_raw(&k0.key_i2r, s.session_id, 0, Role::Initiator, 5, &plain);
        hx.expect_reject(Request::Record(stale), RejectCode::StaleEpoch)
            .await;
        let late1 = s.seal_at(1, 100, &chat(6, "late in epoch 1"));
        hx.send_acked(&s, late1).await;
        let rec = s.chat(7, &["in epoch 2"]);
        assert_eq!((rec.epoch, rec.seq), (2, 0));
        hx.send_acked(&s, rec).await;
        assert_eq!(received(&mut hx).await.text, "late in epoch 1");
        assert_eq!(received(&mut hx).await.text, "in epoch 2");
        let info = hx.behaviour().session(&spec_id).expect("session");
        assert_eq!(info.epoch, 2);
        assert_eq!(info.rejections.wrong_epoch, 2, "{:?}", info.rejections);
    })
    .await;
}

#[tokio::test]
async fn rotation_driven_by_the_node() {
    within(async {
        let secret = Secret::generate();
        let mut hx = Harness::new(node_config(secret.clone())).await;
        let spec_id = hx.spec_id;
        let mut s = hx.handshake(secret.expose()).await;
        established(&mut hx, &s).await;

        hx.behaviour().rotate(&spec_id).expect("active session");
        let (rec, answered) = hx.answer_next(&mut s).await;
        assert_eq!((rec.epoch, rec.sender), (0, Role::Responder));
        assert!(
            matches!(
                answered.content,
                Some(Content::RekeyInit { new_epoch: 1, .. })
            ),
            "{answered:?}"
        );
        assert!(
            matches!(answered.response, Response::Reply(_)),
            "{answered:?}"
        );
        let (rec, answered) = hx.answer_next(&mut s).await;
        assert_eq!(rec.epoch, 0);
        assert!(
            matches!(
                answered.content,
                Some(Content::RekeyCommit { new_epoch: 1, .. })
            ),
            "{answered:?}"
        );
        let Response::Reply(done) = &answered.response else {
            panic!("expected REPLY(REKEY_DONE), got {answered:?}")
        };
        assert_eq!((done.epoch, done.seq), (1, 0));
        assert_eq!(s.epoch, 1);
        assert_eq!(rotated(&mut hx).await, 1);

        let rec = s.chat(1, &["after the node's rotation"]);
        assert_eq!(rec.epoch, 1);
        hx.send_acked(&s, rec).await;
        assert_eq!(received(&mut hx).await.text, "after the node's rotation");
        hx.behaviour().send_message(&spec_id, "node after").unwrap();
        let (rec, answered) = hx.answer_next(&mut s).await;
        assert_eq!(rec.epoch, 1);
        assert_eq!(
            texts(answered.content.as_ref().expect("opens")),
            ["node after"]
        );
        hx.node_event(|e| match e {
            Event::MessageDelivered { .. } => Some(()),
            Event::DeliveryFailed { error, .. } => panic!("{error}"),
            _ => None,
        })
        .await;
    })
    .await;
}

// -------------------------------------------------------------------------------------------
// Handshake errors (§5, §9).
// -------------------------------------------------------------------------------------------

#[tokio::test]
async fn handshake_refusals() {
    within(async {
        let secret = Secret::generate();
        let mut hx = Harness::new(node_config(secret.clone())).await;

        // Version other than 2 (protocol 1's HELLO layout plus a share is still version 1).
        for version in [0, 1, 3] {
            let init = hx.initiator(secret.expose());
            hx.expect_reject(
                init.hello_with_version(version),
                RejectCode::UnsupportedVersion,
            )
            .await;
        }

        // Keys §2 refuses: 1024-bit modulus; exponent 3.
        for der in [
            der_public_key(&odd_modulus(1024), &[1, 0, 1]),
            der_public_key(&odd_modulus(2048), &[3]),
        ] {
            let mut init = hx.initiator(secret.expose());
            init.pub_i = der;
            hx.expect_reject(init.hello(), RejectCode::BadKey).await;
        }

        // AUTH without HELLO.
        let init = hx.initiator(secret.expose());
        let fake = Auth {
            hs_id: init.hs_id,
            wrapped: vec![1; 256],
            mac: [2; 32],
        };
        hx.expect_reject(Request::Auth(fake), RejectCode::UnknownHandshake)
            .await;

        // A new HELLO replaces the pending one (§5.1).
        let first = hx.initiator(secret.expose());
        let ch1 = hx.expect_challenge(first.hello()).await;
        let second = hx.initiator(secret.expose());
        let ch2 = hx.expect_challenge(second.hello()).await;
        let first = first.on_challenge(&ch1).unwrap();
        hx.expect_reject(first.auth(), RejectCode::UnknownHandshake)
            .await;

        // ABORT discards the pending handshake and is answered DONE (§5.4).
        let second = second.on_challenge(&ch2).unwrap();
        let done = hx.request(second.abort(100)).await;
        assert!(matches!(done, Ok(Response::Done)), "{done:?}");
        hx.expect_reject(second.auth(), RejectCode::UnknownHandshake)
            .await;

        // ABORT after AUTH_OK discards the unconfirmed session.
        let third = hx.initiator(secret.expose());
        let ch3 = hx.expect_challenge(third.hello()).await;
        let third = third.on_challenge(&ch3).unwrap();
        let ok = hx.expect_auth_ok(third.auth()).await;
        let abort = third.abort(100);
        let mut s = third.on_auth_ok(&ok).expect("valid AUTH_OK");
        let done = hx.request(abort).await;
        assert!(matches!(done, Ok(Response::Done)), "{done:?}");
        let confirm = s.confirmation();
        hx.expect_reject(Request::Record(confirm), RejectCode::UnknownSession)
            .await;
        assert!(hx.node.behaviour().session(&hx.spec_id).is_none());

        // A correct proof over a wrapped_i that does not decrypt to 32 bytes: DECRYPT_FAILED
        // (§5.2), whether OAEP fails or yields another length.
        let bad_wrapped = |sent: &SpecAuthSent| {
            vec![
                random::<256>().to_vec(),
                oaep_wrap(&sent.pub_r, &[5; 31]).unwrap(),
            ]
        };
        for i in 0..2 {
            let init = hx.initiator(secret.expose());
            let ch = hx.expect_challenge(init.hello()).await;
            let sent = init.on_challenge(&ch).unwrap();
            let wrapped = bad_wrapped(&sent).swap_remove(i);
            let mac = initiator_proof(&sent.k_conf, &sent.th, &wrapped);
            let auth = Auth {
                hs_id: sent.init.hs_id,
                wrapped,
                mac,
            };
            hx.expect_reject(Request::Auth(auth), RejectCode::DecryptFailed)
                .await;
        }
        assert!(
            !hx.node_events
                .iter()
                .any(|e| matches!(e, Event::InboundAuthFailed { .. })),
            "a valid proof is not a failed authentication: {:?}",
            hx.node_events
        );

        // A public key that is not PKCS#1 DER at all: BAD_KEY.
        let mut init = hx.initiator(secret.expose());
        init.pub_i = vec![0x30, 0x03, 0x02, 0x01, 0x05];
        hx.expect_reject(init.hello(), RejectCode::BadKey).await;

        // And a clean handshake still works afterwards.
        let s = hx.handshake(secret.expose()).await;
        established(&mut hx, &s).await;
    })
    .await;
}

// -------------------------------------------------------------------------------------------
// Contents in the wrong place (§3.5, §7.1) and content limits (§8).
// -------------------------------------------------------------------------------------------

#[tokio::test]
async fn contents_out_of_place_are_bad_state() {
    within(async {
        let secret = Secret::generate();
        let mut hx = Harness::new(node_config(secret.clone())).await;
        let spec_id = hx.spec_id;
        let mut s = hx.handshake(secret.expose()).await;
        established(&mut hx, &s).await;

        // REKEY_DONE never asked for; REKEY_INIT for epoch current+2; REKEY_REPLY as a
        // request. Each is refused and changes nothing else. (REKEY_COMMIT without a reply:
        // see `unexpected_rekey_commit_is_bad_state_and_the_session_survives`.)
        let contents = [
            Content::RekeyDone { new_epoch: 1 },
            Content::RekeyInit {
                new_epoch: 2,
                nonce: random(),
                public_key: s.local_pub.clone(),
                share: enc(&(scalar() * base_point())),
            },
            Content::RekeyReply {
                new_epoch: 1,
                nonce: random(),
                public_key: s.local_pub.clone(),
                share: enc(&(scalar() * base_point())),
                wrapped: vec![7; 256],
            },
        ];
        for content in contents {
            let rec = s.seal(&content);
            hx.expect_reject(Request::Record(rec), RejectCode::BadState)
                .await;
            let info = hx.node.behaviour().session(&spec_id).expect("session");
            assert_eq!(
                (info.state, info.epoch),
                (SessionState::Active, 0),
                "after an out-of-place {}: {:?}",
                content.kind_name(),
                hx.log
            );
        }

        // Plaintexts that do not parse: MALFORMED. An unknown kind; a CHAT with count 0
        // (§3.5: 1..=1024); a CHAT whose text is not UTF-8; a PING with a byte left over.
        let key = s.epoch_keys(0).key_i2r;
        let mut bad_utf8 = encode_content(&chat(9, "ab"));
        *bad_utf8.last_mut().unwrap() = 0xff;
        for plain in [vec![0x42, 1, 2], vec![0x01, 0, 0], bad_utf8, vec![0x08, 0]] {
            let seq = s.take_seq(0);
            let rec = seal_raw(&key, s.session_id, 0, Role::Initiator, seq, &plain);
            hx.expect_reject(Request::Record(rec), RejectCode::Malformed)
                .await;
        }
        // A CHAT text over max_message_size (64 KiB): TOO_LARGE, detail = the limit.
        let rec = s.chat(1, &[&"x".repeat(DEFAULT_MAX_MESSAGE + 1)]);
        // (The detail should be the limit, §9: see `oversized_chat_text_detail_is_the_limit`.)
        hx.expect_reject(Request::Record(rec), RejectCode::TooLarge)
            .await;
        // Exactly the limit is fine.
        let rec = s.chat(2, &[&"y".repeat(DEFAULT_MAX_MESSAGE)]);
        hx.send_acked(&s, rec).await;
        assert_eq!(received(&mut hx).await.text.len(), DEFAULT_MAX_MESSAGE);

        let info = hx.behaviour().session(&spec_id).expect("session survives");
        assert_eq!(info.state, SessionState::Active);
        // 4 MALFORMED + 1 TOO_LARGE at least; with the 3 BAD_STATE it should be 8 (§6.2), see
        // `bad_state_records_are_counted`.
        assert!(info.rejections.malformed >= 5, "{:?}", info.rejections);
    })
    .await;
}

/// §3.5 `flags`: bit 0 marks a message private both ways (the spec peer's to the node's
/// `ChatMessage::private`, the node's `send_private_message` to the spec peer's `flags`),
/// and a reserved bit makes the whole `CHAT` record `MALFORMED`, none of its messages shown.
#[tokio::test]
async fn chat_flags_mark_private_messages_and_reserved_bits_are_malformed() {
    within(async {
        let secret = Secret::generate();
        let mut hx = Harness::new(node_config(secret.clone())).await;
        let mut s = hx.handshake(secret.expose()).await;
        established(&mut hx, &s).await;
        let spec_id = hx.spec_id;

        let content = |flags: [u8; 2]| {
            Content::Chat(vec![
                ChatMessage {
                    id: 1,
                    sent_at_ms: 5,
                    flags: flags[0],
                    text: "first".into(),
                },
                ChatMessage {
                    id: 2,
                    sent_at_ms: 6,
                    flags: flags[1],
                    text: "second".into(),
                },
            ])
        };
        let rec = s.seal(&content([0, CHAT_FLAG_PRIVATE]));
        hx.send_acked(&s, rec).await;
        let (m1, m2) = (received(&mut hx).await, received(&mut hx).await);
        assert_eq!((m1.text.as_str(), m1.private), ("first", false));
        assert_eq!((m2.text.as_str(), m2.private), ("second", true));

        for bad in [0x02, 0x80, 0xff] {
            let rec = s.seal(&content([0, bad]));
            hx.expect_reject(Request::Record(rec), RejectCode::Malformed)
                .await;
        }

        hx.behaviour()
            .send_private_message(&spec_id, "to the spec alone")
            .expect("queued");
        hx.behaviour()
            .send_message(&spec_id, "to everyone")
            .expect("queued");
        let mut seen = Vec::new();
        while seen.len() < 2 {
            let (_, answered) = hx.answer_next(&mut s).await;
            let Some(Content::Chat(msgs)) = answered.content else {
                panic!("expected CHAT, got {:?}", answered.content)
            };
            seen.extend(msgs.into_iter().map(|m| (m.text, m.flags)));
        }
        assert_eq!(
            seen,
            [
                ("to the spec alone".to_string(), CHAT_FLAG_PRIVATE),
                ("to everyone".to_string(), 0)
            ]
        );
        // The refused records delivered nothing: the next message the node reports is new.
        let rec = s.chat(9, &["after"]);
        hx.send_acked(&s, rec).await;
        let m = received(&mut hx).await;
        assert_eq!((m.id, m.text.as_str(), m.private), (9, "after", false));
    })
    .await;
}

/// §3 and §8: a `CHAT` record with more than 1 024 messages, or a display name over 64
/// bytes, is `TOO_LARGE` with the limit as its detail.
#[tokio::test]
async fn content_count_and_name_limits_are_too_large_with_the_limit() {
    within(async {
        let secret = Secret::generate();
        let mut hx = Harness::new(node_config(secret.clone())).await;
        let mut s = hx.handshake(secret.expose()).await;
        established(&mut hx, &s).await;

        // 1025 empty messages in one CHAT.
        let texts: Vec<&str> = vec![""; 1025];
        let rec = s.chat(1, &texts);
        let count = hx.request(Request::Record(rec)).await;
        // A PROFILE with a 65-byte name (as a later record: parsing comes before the state
        // check, §6.2 step 6).
        let rec = s.seal(&Content::Profile {
            name: "n".repeat(65),
            flags: 0,
        });
        let name = hx.request(Request::Record(rec)).await;
        let code = |r: &Result<Response, String>| match r {
            Ok(Response::Reject { code, .. }) => *code,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            (code(&count), code(&name)),
            (RejectCode::TooLarge, RejectCode::TooLarge),
            "§3/§8: TOO_LARGE for both; got {count:?} and {name:?}"
        );
        let detail = |r: &Result<Response, String>| match r {
            Ok(Response::Reject { detail, .. }) => *detail,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            (detail(&count), detail(&name)),
            (1024, 64),
            "the detail is the limit"
        );
    })
    .await;
}

/// §7.1: "a `REKEY_COMMIT` without a matching reply ... is `BAD_STATE`"; only "a rotation
/// that fails" closes the session, and here no rotation is in progress. The node answers
/// `BAD_STATE` and the session stays active (as after an unexpected `REKEY_DONE` or
/// `REKEY_INIT`): a chat record sent afterwards is acknowledged and delivered.
#[tokio::test]
async fn unexpected_rekey_commit_is_bad_state_and_the_session_survives() {
    within(async {
        let secret = Secret::generate();
        let mut hx = Harness::new(node_config(secret.clone())).await;
        let spec_id = hx.spec_id;
        let mut s = hx.handshake(secret.expose()).await;
        established(&mut hx, &s).await;

        let rec = s.seal(&Content::RekeyCommit {
            new_epoch: 1,
            wrapped: vec![7; 256],
        });
        hx.expect_reject(Request::Record(rec), RejectCode::BadState)
            .await;
        let info = hx.node.behaviour().session(&spec_id).expect("session");
        assert_eq!(info.state, SessionState::Active, "{:?}", hx.log);
        let rec = s.chat(1, &["still there?"]);
        hx.send_acked(&s, rec).await;
        assert_eq!(received(&mut hx).await.text, "still there?");
    })
    .await;
}

/// §9: "`TOO_LARGE` | frame or field over a limit; `detail` = the limit in bytes". For a chat
/// text over `max_message_size` inside a record the node answers `TOO_LARGE` with the limit
/// (`max_message_size`) as detail, as it does for an oversized frame.
#[tokio::test]
async fn oversized_chat_text_detail_is_the_limit() {
    within(async {
        let secret = Secret::generate();
        let mut hx = Harness::new(node_config(secret.clone())).await;
        let mut s = hx.handshake(secret.expose()).await;
        established(&mut hx, &s).await;
        let rec = s.chat(1, &[&"x".repeat(DEFAULT_MAX_MESSAGE + 1)]);
        let detail = hx
            .expect_reject(Request::Record(rec), RejectCode::TooLarge)
            .await;
        assert_eq!(detail as usize, DEFAULT_MAX_MESSAGE);
    })
    .await;
}

/// §6.2: "the first failing check decides the `REJECT` code, and the record is counted under
/// that cause on the session" — step 6 included. A record refused `BAD_STATE` is counted in
/// `SessionInfo::rejections` (whose `malformed` field is documented as "did not parse, too
/// large, or not allowed at that moment").
#[tokio::test]
async fn bad_state_records_are_counted() {
    within(async {
        let secret = Secret::generate();
        let mut hx = Harness::new(node_config(secret.clone())).await;
        let spec_id = hx.spec_id;
        let mut s = hx.handshake(secret.expose()).await;
        established(&mut hx, &s).await;
        let rec = s.seal(&Content::RekeyDone { new_epoch: 1 });
        hx.expect_reject(Request::Record(rec), RejectCode::BadState)
            .await;
        let info = hx.node.behaviour().session(&spec_id).expect("session");
        assert_eq!(info.rejections.total(), 1, "{:?}", info.rejections);
    })
    .await;
}

/// §9 names "chat before confirmation" as BAD_STATE.
#[tokio::test]
async fn chat_before_confirmation_is_bad_state() {
    within(async {
        let secret = Secret::generate();
        let mut hx = Harness::new(node_config(secret.clone())).await;
        let init = hx.initiator(secret.expose());
        let ch = hx.expect_challenge(init.hello()).await;
        let sent = init.on_challenge(&ch).unwrap();
        let ok = hx.expect_auth_ok(sent.auth()).await;
        let mut s = sent.on_auth_ok(&ok).unwrap();
        let rec = s.chat(1, &["too early"]);
        hx.expect_reject(Request::Record(rec), RejectCode::BadState)
            .await;
        assert!(
            !hx.node_events.iter().any(|e| matches!(
                e,
                Event::MessageReceived { .. } | Event::SessionEstablished { .. }
            )),
            "{:?}",
            hx.node_events
        );
    })
    .await;
}

// -------------------------------------------------------------------------------------------
// The node as initiator, against the spec peer as responder (§5 from the other side).
// -------------------------------------------------------------------------------------------

#[tokio::test]
async fn node_as_initiator_against_the_spec_responder() {
    within(async {
        let mut hx = Harness::new(node_config(Secret::generate())).await;
        let spec_id = hx.spec_id;
        let spec_secret = Secret::generate();
        let mut responder =
            SpecResponder::new(spec_id, spec_secret.expose().as_bytes(), spec_rsa_key());

        let open = hx.behaviour().open_session(spec_id, spec_secret.clone());
        let mut s = hx.accept_handshake(&mut responder).await;
        assert_eq!(s.remote_name.as_deref(), Some("Node"));
        let (sid, role, name, safety, opens) = hx
            .node_event(|e| match e {
                Event::SessionEstablished {
                    peer,
                    session_id,
                    role,
                    remote_name,
                    safety_number,
                    opens,
                    ..
                } if *peer == spec_id => Some((
                    *session_id.as_bytes(),
                    *role,
                    remote_name.clone(),
                    safety_number.to_string(),
                    opens.clone(),
                )),
                Event::OpenFailed { error, .. } => panic!("open failed: {error}"),
                _ => None,
            })
            .await;
        assert_eq!(sid, s.session_id);
        assert_eq!(role, NodeRole::Initiator);
        assert_eq!(name, "Spec");
        assert_eq!(safety, s.safety_number());
        assert_eq!(opens, vec![open]);

        // Chat both ways: we write sender 1 with key_r2i, the node sender 0 with key_i2r.
        let rec = s.chat(1, &["to the initiator"]);
        assert_eq!((rec.sender, rec.seq), (Role::Responder, 1));
        hx.send_acked(&s, rec).await;
        assert_eq!(received(&mut hx).await.text, "to the initiator");
        let id = hx
            .behaviour()
            .send_message(&spec_id, "to the responder")
            .unwrap();
        let (rec, answered) = hx.answer_next(&mut s).await;
        assert_eq!((rec.epoch, rec.sender, rec.seq), (0, Role::Initiator, 1));
        assert_eq!(
            texts(answered.content.as_ref().expect("opens")),
            ["to the responder"]
        );
        let delivered = hx
            .node_event(|e| match e {
                Event::MessageDelivered { message, .. } => Some(*message),
                Event::DeliveryFailed { error, .. } => panic!("{error}"),
                _ => None,
            })
            .await;
        assert_eq!(delivered, id);

        // Sender 0 is now the node's own role: REFLECTED.
        let k0 = s.epoch_keys(0).clone();
        let plain = encode_content(&chat(2, "reflected"));
        let refl = seal_raw(&k0.key_i2r, s.session_id, 0, Role::Initiator, 50, &plain);
        hx.expect_reject(Request::Record(refl), RejectCode::Reflected)
            .await;
        let info = hx.node.behaviour().session(&spec_id).expect("session");
        assert_eq!(info.rejections.reflected, 1);
    })
    .await;
}

/// §5.4: the responder may send chat the moment its session is ACTIVE, and that record can
/// reach the initiator before the `ACK` of the initiator's PROFILE. The node, as initiator,
/// takes it as confirmation: it accepts the chat (no `BAD_STATE`), announces the session,
/// and the late `ACK` changes nothing.
#[tokio::test]
async fn node_as_initiator_accepts_chat_that_overtakes_the_ack() {
    within(async {
        let mut hx = Harness::new(node_config(Secret::generate())).await;
        let spec_id = hx.spec_id;
        let node_id = hx.node_id;
        let spec_secret = Secret::generate();
        let mut responder =
            SpecResponder::new(spec_id, spec_secret.expose().as_bytes(), spec_rsa_key());
        hx.behaviour().open_session(spec_id, spec_secret.clone());
        let (req, ch) = hx.next_inbound().await;
        let Request::Hello(hello) = req else {
            panic!("expected HELLO, got {req:?}")
        };
        let resp = responder.on_hello(node_id, &hello);
        hx.respond(ch, resp);
        let (req, ch) = hx.next_inbound().await;
        let Request::Auth(auth) = req else {
            panic!("expected AUTH, got {req:?}")
        };
        let (resp, session) = responder.on_auth(node_id, &auth);
        hx.respond(ch, resp);
        let mut s = session.expect("AUTH accepted");
        // The node's PROFILE: answered (ACK computed) but the ACK is held back.
        let (req, profile_ch) = hx.next_inbound().await;
        let Request::Record(profile) = req else {
            panic!("expected the PROFILE record, got {req:?}")
        };
        let answered = s.answer(&profile);
        assert!(matches!(answered.response, Response::Ack(_)));
        // Our chat overtakes that ACK.
        let rec = s.chat(1, &["before your ACK"]);
        hx.send_acked(&s, rec).await;
        assert_eq!(received(&mut hx).await.text, "before your ACK");
        assert!(
            hx.node_events
                .iter()
                .any(|e| matches!(e, Event::SessionEstablished { peer, .. } if *peer == spec_id)),
            "the session is announced: {:?}",
            hx.node_events
        );
        // The late ACK arrives; the session stays, and carries the node's messages.
        hx.respond(profile_ch, answered.response);
        hx.behaviour().send_message(&spec_id, "after").unwrap();
        let (_, answered) = hx.answer_next(&mut s).await;
        assert_eq!(texts(answered.content.as_ref().expect("opens")), ["after"]);
        let info = hx.node.behaviour().session(&spec_id).expect("session");
        assert_eq!(info.state, noctua_chat::SessionState::Active);
        assert_eq!(info.rejections.total(), 0);
    })
    .await;
}

#[tokio::test]
async fn node_as_initiator_refused_or_deceived() {
    within(async {
        let mut hx = Harness::new(node_config(Secret::generate())).await;
        let spec_id = hx.spec_id;
        let spec_secret = Secret::generate();
        let mut responder =
            SpecResponder::new(spec_id, spec_secret.expose().as_bytes(), spec_rsa_key());

        // The node uses a wrong secret: our AUTH_FAILED makes its open fail (WrongSecret).
        let open = hx.behaviour().open_session(spec_id, Secret::generate());
        let (req, ch) = hx.next_inbound().await;
        let Request::Hello(hello) = req else {
            panic!("{req:?}")
        };
        let resp = responder.on_hello(hx.node_id, &hello);
        hx.respond(ch, resp);
        let (req, ch) = hx.next_inbound().await;
        let Request::Auth(auth) = req else {
            panic!("{req:?}")
        };
        let (resp, session) = responder.on_auth(hx.node_id, &auth);
        assert!(session.is_none());
        assert!(
            matches!(
                resp,
                Response::Reject {
                    code: RejectCode::AuthFailed,
                    ..
                }
            ),
            "{resp:?}"
        );
        hx.respond(ch, resp);
        let error = hx
            .node_event(|e| match e {
                Event::OpenFailed { open: o, error, .. } if *o == open => Some(error.clone()),
                Event::SessionEstablished { .. } => panic!("established with a wrong secret"),
                _ => None,
            })
            .await;
        assert_eq!(error, OpenError::WrongSecret);

        // A responder that does not know the secret and fakes mac_r: the node sends
        // ABORT(hs_id, AUTH_FAILED) and fails the open (§5.3).
        let open = hx.behaviour().open_session(spec_id, spec_secret.clone());
        let (req, ch) = hx.next_inbound().await;
        let Request::Hello(hello) = req else {
            panic!("{req:?}")
        };
        let resp = responder.on_hello(hx.node_id, &hello);
        hx.respond(ch, resp);
        let (req, ch) = hx.next_inbound().await;
        let Request::Auth(auth) = req else {
            panic!("{req:?}")
        };
        let (resp, _session) = responder.on_auth(hx.node_id, &auth);
        let Response::AuthOk(mut ok) = resp else {
            panic!("{resp:?}")
        };
        ok.mac[0] ^= 1;
        hx.respond(ch, Response::AuthOk(ok));
        let (req, ch) = hx.next_inbound().await;
        match req {
            Request::Abort { hs_id, code } => {
                assert_eq!(hs_id, hello.hs_id);
                assert_eq!(RejectCode::from_u16(code), RejectCode::AuthFailed);
            }
            other => panic!("expected ABORT, got {other:?}"),
        }
        hx.respond(ch, Response::Done);
        let error = hx
            .node_event(|e| match e {
                Event::OpenFailed { open: o, error, .. } if *o == open => Some(error.clone()),
                Event::SessionEstablished { .. } => panic!("established with a forged proof"),
                _ => None,
            })
            .await;
        assert_eq!(error, OpenError::PeerAuthFailed);
        assert!(hx.node.behaviour().session(&spec_id).is_none());
    })
    .await;
}

// -------------------------------------------------------------------------------------------
// Session life: replacement (§5.7), keep-alive and closing (§6.4), rate limiting (§8).
// -------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_new_handshake_replaces_the_session() {
    within(async {
        let secret = Secret::generate();
        let mut hx = Harness::new(node_config(secret.clone())).await;
        let spec_id = hx.spec_id;
        let mut s1 = hx.handshake(secret.expose()).await;
        established(&mut hx, &s1).await;
        let mut s2 = hx.handshake(secret.expose()).await;
        assert_ne!(s1.session_id, s2.session_id);
        assert_ne!(s1.safety_number(), s2.safety_number());
        established(&mut hx, &s2).await;
        let (closed, reason) = hx
            .node_event(|e| match e {
                Event::SessionClosed {
                    peer,
                    session_id,
                    reason,
                } if *peer == spec_id => Some((*session_id.as_bytes(), reason.clone())),
                _ => None,
            })
            .await;
        assert_eq!(closed, s1.session_id);
        assert_eq!(reason, CloseReason::Replaced);

        let old = s1.chat(1, &["old"]);
        hx.expect_reject(Request::Record(old), RejectCode::UnknownSession)
            .await;
        let new = s2.chat(1, &["new"]);
        hx.send_acked(&s2, new).await;
        assert_eq!(received(&mut hx).await.text, "new");
        let info = hx.node.behaviour().session(&spec_id).expect("session");
        assert_eq!(info.id.as_bytes(), &s2.session_id);
    })
    .await;
}

#[tokio::test]
async fn keepalive_ping_and_close_both_ways() {
    within(async {
        let secret = Secret::generate();
        let config =
            node_config(secret.clone()).with_keepalive_interval(Duration::from_millis(200));
        let mut hx = Harness::new(config).await;
        let spec_id = hx.spec_id;
        let mut s = hx.handshake(secret.expose()).await;
        established(&mut hx, &s).await;

        // Idle: the node sends PING in a record; we ACK it.
        let (rec, answered) = hx.answer_next(&mut s).await;
        assert_eq!(rec.sender, Role::Responder);
        assert!(
            matches!(answered.content, Some(Content::Ping)),
            "{answered:?}"
        );
        assert!(matches!(answered.response, Response::Ack(_)));

        // The node closes: CLOSE(USER_CLOSED) in a record, we ACK, it reports LocalClosed.
        hx.behaviour().close_session(&spec_id).expect("session");
        let (_, answered) = loop {
            let (rec, answered) = hx.answer_next(&mut s).await;
            if !matches!(answered.content, Some(Content::Ping)) {
                break (rec, answered);
            }
        };
        match answered.content {
            Some(Content::Close { code }) => {
                assert_eq!(RejectCode::from_u16(code), RejectCode::UserClosed)
            }
            other => panic!("expected CLOSE, got {other:?}"),
        }
        let reason = hx
            .node_event(|e| match e {
                Event::SessionClosed { reason, .. } => Some(reason.clone()),
                _ => None,
            })
            .await;
        assert_eq!(reason, CloseReason::LocalClosed);

        // We close: the node ACKs and reports RemoteClosed(USER_CLOSED); the session is gone.
        let mut s = hx.handshake(secret.expose()).await;
        established(&mut hx, &s).await;
        let close = s.seal(&Content::Close { code: 100 });
        hx.send_acked(&s, close).await;
        let reason = hx
            .node_event(|e| match e {
                Event::SessionClosed { reason, .. } => Some(reason.clone()),
                _ => None,
            })
            .await;
        assert_eq!(
            reason,
            CloseReason::RemoteClosed(RejectCode::UserClosed.node())
        );
        let late = s.chat(1, &["after close"]);
        let r = hx.request(Request::Record(late)).await;
        assert!(
            matches!(
                r,
                Ok(Response::Reject {
                    code: RejectCode::UnknownSession | RejectCode::SessionClosed,
                    ..
                })
            ),
            "{r:?}"
        );
        assert!(
            !hx.node_events
                .iter()
                .any(|e| matches!(e, Event::MessageReceived { .. })),
            "{:?}",
            hx.node_events
        );
    })
    .await;
}

#[tokio::test]
async fn simultaneous_rotation_the_session_initiator_wins() {
    within(async {
        let secret = Secret::generate();
        let mut hx = Harness::new(node_config(secret.clone())).await;
        let spec_id = hx.spec_id;
        let mut s = hx.handshake(secret.expose()).await;
        established(&mut hx, &s).await;

        // The node (session responder) starts a rotation; we hold its REKEY_INIT...
        hx.behaviour().rotate(&spec_id).expect("active");
        let (req, theirs) = hx.next_inbound().await;
        let Request::Record(their_init) = req else {
            panic!("{req:?}")
        };
        assert!(
            matches!(
                s.open(&their_init),
                Ok(Content::RekeyInit { new_epoch: 1, .. })
            ),
            "{their_init:?}"
        );
        // ... and start ours: the node must abandon its own and answer ours normally.
        let init = s.rekey_init();
        let reply = hx.send_for_reply(init).await;
        // We, the session's initiator, keep ours: the node's gets ROTATION_CONFLICT.
        hx.respond(
            theirs,
            Response::Reject {
                code: RejectCode::RotationConflict,
                detail: 0,
            },
        );
        let commit = s.rekey_commit(&reply).expect("REKEY_REPLY valid");
        let done = hx.send_for_reply(commit).await;
        s.rekey_done(&done).expect("REKEY_DONE valid");
        assert_eq!(rotated(&mut hx).await, 1);

        let rec = s.chat(1, &["one set of keys"]);
        hx.send_acked(&s, rec).await;
        assert_eq!(received(&mut hx).await.text, "one set of keys");
        hx.behaviour().send_message(&spec_id, "agreed").unwrap();
        let (rec, answered) = hx.answer_next(&mut s).await;
        assert_eq!(rec.epoch, 1);
        assert!(
            matches!(answered.response, Response::Ack(_)),
            "{answered:?}"
        );
        let info = hx.node.behaviour().session(&spec_id).expect("session");
        assert_eq!((info.state, info.epoch), (SessionState::Active, 1));
        assert!(
            !hx.node_events
                .iter()
                .any(|e| matches!(e, Event::SessionClosed { .. })),
            "{:?}",
            hx.node_events
        );
    })
    .await;
}

#[tokio::test]
async fn repeated_wrong_secrets_are_rate_limited() {
    within(async {
        let mut hx = Harness::new(node_config(Secret::generate())).await;
        let spec_id = hx.spec_id;
        for attempt in 1..=5 {
            let init = hx.initiator(Secret::generate().expose());
            let ch = hx.expect_challenge(init.hello()).await;
            let sent = init.on_challenge(&ch).unwrap();
            hx.expect_reject(sent.auth(), RejectCode::AuthFailed).await;
            let banned = hx
                .node_event(|e| match e {
                    Event::InboundAuthFailed { peer, banned, .. } if *peer == spec_id => {
                        Some(*banned)
                    }
                    _ => None,
                })
                .await;
            assert_eq!(banned, attempt == 5, "attempt {attempt} (§8: 5 per 60 s)");
        }
        expect_rate_limited(&mut hx, Secret::generate().expose()).await;
    })
    .await;
}

/// §7: "A installs e+1 (on REKEY_DONE, or on any valid record of e+1)"; B "sends in e+1 from
/// now". Our epoch-1 record overtakes our REPLY(REKEY_DONE).
#[tokio::test]
async fn node_rotation_installs_on_any_record_of_the_new_epoch() {
    within(async {
        let secret = Secret::generate();
        let mut hx = Harness::new(node_config(secret.clone())).await;
        let spec_id = hx.spec_id;
        let mut s = hx.handshake(secret.expose()).await;
        established(&mut hx, &s).await;

        hx.behaviour().rotate(&spec_id).expect("active session");
        let (_, answered) = hx.answer_next(&mut s).await;
        assert!(
            matches!(answered.response, Response::Reply(_)),
            "{answered:?}"
        );
        let (req, commit_channel) = hx.next_inbound().await;
        let Request::Record(commit) = req else {
            panic!("{req:?}")
        };
        let answered = s.answer(&commit);
        assert!(
            matches!(
                answered.content,
                Some(Content::RekeyCommit { new_epoch: 1, .. })
            ),
            "{answered:?}"
        );
        assert_eq!(s.epoch, 1);

        // Before the node has our REKEY_DONE, it gets a record of epoch 1.
        let early = s.chat(1, &["early in epoch 1"]);
        assert_eq!((early.epoch, early.seq), (1, 1));
        hx.send_acked(&s, early).await;
        assert_eq!(received(&mut hx).await.text, "early in epoch 1");
        hx.respond(commit_channel, answered.response);
        assert_eq!(rotated(&mut hx).await, 1);

        hx.behaviour().send_message(&spec_id, "in epoch 1").unwrap();
        let (rec, answered) = hx.answer_next(&mut s).await;
        assert_eq!(rec.epoch, 1);
        assert!(
            matches!(answered.response, Response::Ack(_)),
            "{answered:?}"
        );
        hx.node_event(|e| match e {
            Event::MessageDelivered { .. } => Some(()),
            Event::DeliveryFailed { error, .. } => panic!("{error}"),
            _ => None,
        })
        .await;
        let info = hx.node.behaviour().session(&spec_id).expect("session");
        assert_eq!((info.state, info.epoch), (SessionState::Active, 1));
    })
    .await;
}

/// Probes of behaviour the spec leaves open; they assert only what the spec does say and
/// print what the node did, for the report.
#[tokio::test]
async fn probes_of_unspecified_behaviour() {
    within(async {
        let secret = Secret::generate();
        let mut hx = Harness::new(node_config(secret.clone())).await;
        let spec_id = hx.spec_id;

        // §2/§3: no length limit is given for `pub` in HELLO; a 700-byte "key".
        let mut init = hx.initiator(secret.expose());
        init.pub_i = random::<700>().to_vec();
        let r = hx.request(init.hello()).await;
        eprintln!("PROBE HELLO with a 700-byte pub: {r:?}");
        assert!(matches!(r, Ok(Response::Reject { .. })), "{r:?}");

        // §3.5: PROFILE is "sent in: first record of each side"; a later one?
        let mut s = hx.handshake(secret.expose()).await;
        established(&mut hx, &s).await;
        let rec = s.seal(&Content::Profile {
            name: "Renamed".into(),
            flags: 0,
        });
        let r = hx.request(Request::Record(rec)).await;
        eprintln!("PROBE later PROFILE: {r:?}");
        assert!(
            matches!(
                r,
                Ok(Response::Ack(_))
                    | Ok(Response::Reject {
                        code: RejectCode::BadState,
                        ..
                    })
            ),
            "{r:?}"
        );

        // §5.7: the replaced session "closes with REPLACED": is a CLOSE sent?
        let s2 = hx.handshake(secret.expose()).await;
        established(&mut hx, &s2).await;
        hx.node_event(|e| matches!(e, Event::SessionClosed { .. }).then_some(()))
            .await;
        let to_us: Vec<String> = hx
            .inbound
            .iter()
            .map(|(req, _)| format!("{req:?}"))
            .collect();
        eprintln!("PROBE requests to us after replacement: {to_us:?}");
        for (req, _) in &hx.inbound {
            if let Request::Record(r) = req
                && r.session_id == s.session_id
            {
                match s.open(r) {
                    Ok(Content::Close { code }) => assert_eq!(code, 102, "REPLACED"),
                    other => panic!("old session after replacement: {other:?}"),
                }
            }
        }
        let info = hx.node.behaviour().session(&spec_id).expect("session");
        eprintln!("PROBE rejections: {:?}", info.rejections);
    })
    .await;
}

// -------------------------------------------------------------------------------------------
// Crossing handshakes: an open completes only on proof of its own secret (§5.7.1, §5.7.2).
// -------------------------------------------------------------------------------------------

/// A harness whose spec peer's `PeerId` is smaller than the node's (`spec_smaller`), or
/// larger: the tie-break of §5.7 depends on it.
async fn harness_ordered(secret: &Secret, spec_smaller: bool) -> Harness {
    loop {
        let hx = Harness::new(node_config(secret.clone())).await;
        if (hx.spec_id.to_bytes() < hx.node_id.to_bytes()) == spec_smaller {
            return hx;
        }
    }
}

/// The node's `OpenFailed` error for `open`; panics if the open is reported established.
async fn open_failed(hx: &mut Harness, open: noctua_chat::OpenId) -> OpenError {
    hx.node_event(|e| match e {
        Event::OpenFailed { open: o, error, .. } if *o == open => Some(error.clone()),
        Event::SessionEstablished { opens, .. } if opens.contains(&open) => {
            panic!("the open was reported established: {e:?}")
        }
        _ => None,
    })
    .await
}

/// Issue 10 item 1: the node holds `S_N` and opens towards the spec peer with `S_other`.
/// The spec peer answers `REJECT HANDSHAKE_CONFLICT` and then runs its own handshake with
/// `S_N`. That session proves only `S_N`, so it must not answer the open: the node
/// announces it with no opens, then runs its own handshake with `S_other`, which the spec
/// peer (holding `S_N` only) refuses, and the open fails. From a spec peer whose `PeerId`
/// is larger, the claim cannot be true (§5.7.2) and the open fails at once.
#[tokio::test]
async fn a_crossing_session_proving_only_the_nodes_secret_does_not_answer_its_open() {
    within(async {
        let node_secret = Secret::generate();
        for spec_smaller in [true, false] {
            let mut hx = harness_ordered(&node_secret, spec_smaller).await;
            let spec_id = hx.spec_id;
            let other = Secret::generate();
            let open = hx.behaviour().open_session(spec_id, other);
            let (req, ch) = hx.next_inbound().await;
            assert!(matches!(req, Request::Hello(_)), "{req:?}");
            let conflict = Response::Reject {
                code: RejectCode::HandshakeConflict,
                detail: 0,
            };
            hx.respond(ch, conflict);
            if !spec_smaller {
                assert_eq!(open_failed(&mut hx, open).await, OpenError::NotProven);
                continue;
            }
            let s = hx.handshake(node_secret.expose()).await;
            let opens = hx
                .node_event(|e| match e {
                    Event::SessionEstablished { peer, opens, .. } if *peer == spec_id => {
                        Some(opens.clone())
                    }
                    _ => None,
                })
                .await;
            assert!(
                opens.is_empty(),
                "the spec peer's session answered {opens:?}"
            );
            assert_eq!(
                hx.node
                    .behaviour()
                    .session(&spec_id)
                    .map(|i| i.id.as_bytes().to_owned()),
                Some(s.session_id)
            );
            // The node's own handshake for the open, with S_other: we hold S_N only.
            let mut responder =
                SpecResponder::new(spec_id, node_secret.expose().as_bytes(), spec_rsa_key());
            let (req, ch) = hx.next_inbound().await;
            let Request::Hello(hello) = req else {
                panic!("expected the node's HELLO, got {req:?}");
            };
            let challenge = responder.on_hello(hx.node_id, &hello);
            hx.respond(ch, challenge);
            let (req, ch) = hx.next_inbound().await;
            let Request::Auth(auth) = req else {
                panic!("expected the node's AUTH, got {req:?}");
            };
            let (refusal, session) = responder.on_auth(hx.node_id, &auth);
            assert!(session.is_none(), "the node's proof used S_other, not S_N");
            hx.respond(ch, refusal);
            assert_eq!(open_failed(&mut hx, open).await, OpenError::WrongSecret);
        }
    })
    .await;
}

/// Issue 10 item 6 (§5.2, §8): an `AUTH` whose proof verifies but whose `wrapped_i` does
/// not decrypt is answered `DECRYPT_FAILED` and counts as a failed attempt: the fifth
/// starts the peer's ban, and its next `HELLO` is `RATE_LIMITED`.
#[tokio::test]
async fn undecryptable_key_material_after_a_valid_proof_counts_towards_the_limit() {
    within(async {
        let secret = Secret::generate();
        let mut hx = Harness::new(node_config(secret.clone())).await;
        for _ in 0..5 {
            let init = hx.initiator(secret.expose());
            let ch = hx.expect_challenge(init.hello()).await;
            let sent = init.on_challenge(&ch).unwrap();
            let wrapped = random::<256>().to_vec();
            let mac = initiator_proof(&sent.k_conf, &sent.th, &wrapped);
            let auth = Auth {
                hs_id: sent.init.hs_id,
                wrapped,
                mac,
            };
            hx.expect_reject(Request::Auth(auth), RejectCode::DecryptFailed)
                .await;
        }
        expect_rate_limited(&mut hx, secret.expose()).await;
    })
    .await;
}

/// Issue 10 item 6 (§5.4): an `ABORT` naming an older handshake, one a newer `HELLO`
/// replaced, is answered `DONE` and does not discard the unconfirmed session the newer
/// handshake produced: its confirmation is still `ACK`ed.
#[tokio::test]
async fn a_stale_abort_does_not_drop_a_newer_handshakes_session() {
    within(async {
        let secret = Secret::generate();
        let mut hx = Harness::new(node_config(secret.clone())).await;
        let old = hx.initiator(secret.expose());
        let ch_old = hx.expect_challenge(old.hello()).await;
        let new = hx.initiator(secret.expose());
        let ch_new = hx.expect_challenge(new.hello()).await;
        let old = old.on_challenge(&ch_old).unwrap();
        let new = new.on_challenge(&ch_new).unwrap();
        let ok = hx.expect_auth_ok(new.auth()).await;
        let mut s = new.on_auth_ok(&ok).expect("valid AUTH_OK");
        let done = hx.request(old.abort(101)).await;
        assert!(matches!(done, Ok(Response::Done)), "{done:?}");
        let confirm = s.confirmation();
        let ack = hx
            .expect(Request::Record(confirm.clone()), "ACK", |r| match r {
                Response::Ack(a) => Some(a),
                _ => None,
            })
            .await;
        s.verify_ack(&confirm, &ack).expect("ACK verifies");
        established(&mut hx, &s).await;
    })
    .await;
}

/// Issue 10 item 6 (§6.1, §6.2 step 4): a record with `seq >= 2^32`, sealed under the
/// right key, is refused `OUT_OF_WINDOW` before decrypting and counted; the session goes on.
#[tokio::test]
async fn a_record_with_seq_of_two_to_the_32_is_refused_and_counted() {
    within(async {
        let secret = Secret::generate();
        let mut hx = Harness::new(node_config(secret.clone())).await;
        let spec_id = hx.spec_id;
        let mut s = hx.handshake(secret.expose()).await;
        established(&mut hx, &s).await;
        for seq in [SEQ_LIMIT, u64::MAX] {
            let rec = s.seal_at(0, seq, &chat(1, "beyond"));
            hx.expect_reject(Request::Record(rec), RejectCode::OutOfWindow)
                .await;
        }
        let info = hx.node.behaviour().session(&spec_id).expect("session");
        assert_eq!(info.rejections.out_of_window, 2);
        let rec = s.chat(2, &["still here"]);
        hx.send_acked(&s, rec).await;
        assert_eq!(received(&mut hx).await.text, "still here");
    })
    .await;
}

/// A new `HELLO` (with `secret`) is refused `RATE_LIMITED`, its detail the seconds until the
/// ban lapses (§8: at most 60).
async fn expect_rate_limited(hx: &mut Harness, secret: &str) {
    let init = hx.initiator(secret);
    let detail = hx
        .expect_reject(init.hello(), RejectCode::RateLimited)
        .await;
    assert!(
        (1..=60).contains(&detail),
        "seconds until release: {detail}"
    );
}

// -------------------------------------------------------------------------------------------
// Protocol 2: what a symmetric encoder/decoder bug would let through. The spec peer encodes
// and decodes with its own code (written from SPEC.md), so every exchange above already
// checks the node's bytes against the spec; these add the bytes the spec says to refuse.
// -------------------------------------------------------------------------------------------

/// SPEC.md appendix A, parsed.
fn appendix() -> std::collections::BTreeMap<String, Vec<u8>> {
    vectors::parse_appendix(include_str!("../SPEC.md")).expect("SPEC.md has appendix A")
}

/// The node refuses each body of appendix A.7 with the code its name gives (a HELLO with a
/// trailing byte, one byte short, in protocol 1's layout, an unknown type, a sender of 2, a
/// sealed part shorter than the tag, a 601-byte key, a 513-byte wrapped value), and the
/// same bodies with a byte added, with and without a session.
#[tokio::test]
async fn the_appendix_bodies_a_receiver_refuses_are_refused() {
    within(async {
        let secret = Secret::generate();
        let mut hx = Harness::new(node_config(secret.clone())).await;
        let vectors = appendix();
        let refused: Vec<(String, Vec<u8>)> = vectors
            .iter()
            .filter(|(n, _)| n.starts_with("malformed_") || n.starts_with("too_large_"))
            .map(|(n, v)| (n.clone(), v.clone()))
            .collect();
        assert!(refused.len() >= 8, "appendix A.7 lists the refused bodies");
        let mut s = None;
        for round in 0..2 {
            for (name, body) in &refused {
                let (code, detail) = match name.strip_prefix("too_large_") {
                    Some(rest) => (
                        RejectCode::TooLarge,
                        rest.split('_')
                            .next()
                            .and_then(|d| d.parse().ok())
                            .expect("limit"),
                    ),
                    None => (RejectCode::Malformed, 0),
                };
                let got = expect_raw_reject(&mut hx, frame(body), code).await;
                assert_eq!(got, detail, "{name} (round {round})");
            }
            // Every valid request of A.3 with one byte added: MALFORMED (§3).
            for name in ["hello", "auth", "record", "record_chat", "abort"] {
                let mut body = vectors[name].clone();
                body.push(0);
                expect_raw_reject(&mut hx, frame(&body), RejectCode::Malformed).await;
            }
            if round == 0 {
                let session = hx.handshake(secret.expose()).await;
                established(&mut hx, &session).await;
                s = Some(session);
            }
        }
        let mut s = s.expect("session");
        let rec = s.chat(1, &["still here"]);
        hx.send_acked(&s, rec).await;
        assert_eq!(received(&mut hx).await.text, "still here");
    })
    .await;
}

/// §5: a `share_i` that is not the canonical encoding of a ristretto255 element, or is the
/// identity, is `BAD_KEY`; the node keeps no pending handshake for it.
#[tokio::test]
async fn hello_with_a_bad_share_is_bad_key() {
    within(async {
        let secret = Secret::generate();
        let mut hx = Harness::new(node_config(secret.clone())).await;
        // The identity; p = 2^255 - 19 (non-canonical); all ones (not an element); a
        // canonical element with the sign bit that ristretto255 forbids (1 = negative).
        let mut p = [0xffu8; 32];
        p[0] = 0xed;
        p[31] = 0x7f;
        let mut negative = [0u8; 32];
        negative[0] = 1;
        for share in [[0u8; 32], p, [0xff; 32], negative] {
            let init = hx.initiator(secret.expose());
            hx.expect_reject(init.hello_with(2, share), RejectCode::BadKey)
                .await;
            let hs_id = init.hs_id;
            let sent = init.on_challenge(&Challenge {
                hs_id,
                nonce: random(),
                public_key: public_der(&spec_rsa_key()),
                share: enc(&(scalar() * base_point())),
            });
            if let Ok(sent) = sent {
                hx.expect_reject(sent.auth(), RejectCode::UnknownHandshake)
                    .await;
            }
        }
        let s = hx.handshake(secret.expose()).await;
        established(&mut hx, &s).await;
    })
    .await;
}

/// §5: the node's `share_r` is a valid element, fresh for every handshake, and a node
/// that answers a HELLO computes the same `Z`, transcript and `K_conf` as the spec (the
/// handshake completes only if the node's PAKE matches the spec's byte for byte).
#[tokio::test]
async fn the_nodes_share_is_fresh_and_valid() {
    within(async {
        let secret = Secret::generate();
        let mut hx = Harness::new(node_config(secret.clone())).await;
        let mut shares = Vec::new();
        for _ in 0..3 {
            let init = hx.initiator(secret.expose());
            let ch = hx.expect_challenge(init.hello()).await;
            assert!(
                dec(&ch.share).is_some(),
                "share_r decodes and is not the identity"
            );
            assert_ne!(ch.share, init.share_i);
            shares.push(ch.share);
        }
        shares.sort();
        shares.dedup();
        assert_eq!(shares.len(), 3, "a fresh y_r per handshake");
        let s = hx.handshake(secret.expose()).await;
        established(&mut hx, &s).await;
    })
    .await;
}

/// §5: the node as initiator fails its open and sends `ABORT(hs_id, BAD_KEY)` when the
/// `CHALLENGE` carries a bad share (the identity), and never sends `AUTH` for it.
#[tokio::test]
async fn node_as_initiator_refuses_a_bad_share_in_challenge() {
    within(async {
        let secret = Secret::generate();
        let mut hx = Harness::new(node_config(secret)).await;
        let spec_id = hx.spec_id;
        let spec_secret = Secret::generate();
        let mut responder =
            SpecResponder::new(spec_id, spec_secret.expose().as_bytes(), spec_rsa_key());
        let open = hx.behaviour().open_session(spec_id, spec_secret.clone());
        let (req, ch) = hx.next_inbound().await;
        let Request::Hello(hello) = req else {
            panic!("{req:?}")
        };
        assert_eq!(hello.version, 2);
        assert!(dec(&hello.share).is_some(), "the node's share_i is valid");
        let Response::Challenge(mut challenge) = responder.on_hello(hx.node_id, &hello) else {
            panic!("the node's HELLO refused")
        };
        challenge.share = [0; 32];
        hx.respond(ch, Response::Challenge(challenge));
        let (req, ch) = hx.next_inbound().await;
        match req {
            Request::Abort { hs_id, code } => {
                assert_eq!(hs_id, hello.hs_id);
                assert_eq!(RejectCode::from_u16(code), RejectCode::BadKey);
            }
            other => panic!("expected ABORT(BAD_KEY), got {other:?}"),
        }
        hx.respond(ch, Response::Done);
        hx.node_event(|e| match e {
            Event::OpenFailed { open: o, .. } if *o == open => Some(()),
            Event::SessionEstablished { .. } => panic!("established over an identity share"),
            _ => None,
        })
        .await;
        assert!(hx.node.behaviour().session(&spec_id).is_none());
    })
    .await;
}

/// §7: a `REKEY_INIT` whose share is the identity is answered `BAD_KEY` and installs
/// nothing; a `REKEY_REPLY` with one fails the node's rotation in progress
/// (`ROTATION_FAILED`).
#[tokio::test]
async fn rekey_messages_with_a_bad_share() {
    within(async {
        let secret = Secret::generate();
        let mut hx = Harness::new(node_config(secret.clone())).await;
        let spec_id = hx.spec_id;
        let mut s = hx.handshake(secret.expose()).await;
        established(&mut hx, &s).await;

        let bad_init = s.seal(&Content::RekeyInit {
            new_epoch: 1,
            nonce: random(),
            public_key: s.local_pub.clone(),
            share: [0; 32],
        });
        hx.expect_reject(Request::Record(bad_init), RejectCode::BadKey)
            .await;
        let info = hx.node.behaviour().session(&spec_id).expect("session");
        assert_eq!(info.epoch, 0, "nothing installed");

        // The node rotates; our REKEY_REPLY carries the identity as share_b.
        hx.behaviour().rotate(&spec_id).expect("active session");
        let (req, ch) = hx.next_inbound().await;
        let Request::Record(rec) = req else {
            panic!("{req:?}")
        };
        let Ok(Content::RekeyInit {
            new_epoch: 1,
            public_key,
            share,
            ..
        }) = s.open(&rec)
        else {
            panic!("expected REKEY_INIT(1)")
        };
        assert!(dec(&share).is_some(), "the node's share_a is valid");
        let wrapped = oaep_wrap(&public_key, &random::<32>()).expect("node key");
        let reply = s.seal(&Content::RekeyReply {
            new_epoch: 1,
            nonce: random(),
            public_key: s.local_pub.clone(),
            share: [0; 32],
            wrapped,
        });
        hx.respond(ch, Response::Reply(reply));
        let reason = hx
            .node_event(|e| match e {
                Event::SessionClosed { peer, reason, .. } if *peer == spec_id => {
                    Some(reason.clone())
                }
                Event::SessionRotated { .. } => panic!("rotated over an identity share"),
                _ => None,
            })
            .await;
        assert!(
            matches!(reason, CloseReason::RotationFailed(_)),
            "{reason:?}"
        );
    })
    .await;
}

/// §1: the protocol id is `/noctua/chat/2.0.0`; a peer that proposes only
/// `/noctua/chat/1.0.0` is refused at negotiation (a protocol-1 peer does not negotiate).
#[tokio::test]
async fn protocol_1_is_not_negotiated() {
    within(async {
        use futures::StreamExt as _;
        use libp2p::request_response::{self, ProtocolSupport};
        use libp2p_swarm_test::SwarmExt as _;

        assert_eq!(PROTOCOL_ID, "/noctua/chat/2.0.0");
        let secret = Secret::generate();
        let mut node = libp2p::Swarm::new_ephemeral_tokio(|kp| {
            noctua_chat::Behaviour::new(kp.public().to_peer_id(), node_config(secret.clone()))
        });
        let mut old = libp2p::Swarm::new_ephemeral_tokio(|_| {
            request_response::Behaviour::with_codec(
                RawCodec,
                [(
                    libp2p::StreamProtocol::new("/noctua/chat/1.0.0"),
                    ProtocolSupport::Outbound,
                )],
                request_response::Config::default(),
            )
        });
        node.listen().with_memory_addr_external().await;
        old.connect(&mut node).await;
        let node_id = *node.local_peer_id();
        // A protocol-1 HELLO (no share), framed.
        let init = SpecInitiator::new(*old.local_peer_id(), node_id, b"s", spec_rsa_key());
        let mut body = encode_request(&init.hello_with_version(1));
        body.truncate(body.len() - 32);
        old.behaviour_mut().send_request(&node_id, frame(&body));
        loop {
            tokio::select! {
                _ = node.select_next_some() => {}
                ev = old.select_next_some() => match ev {
                    libp2p::swarm::SwarmEvent::Behaviour(
                        request_response::Event::OutboundFailure { error, .. },
                    ) => {
                        assert!(
                            matches!(error, request_response::OutboundFailure::UnsupportedProtocols),
                            "{error}"
                        );
                        break;
                    }
                    libp2p::swarm::SwarmEvent::Behaviour(request_response::Event::Message {
                        message: request_response::Message::Response { response, .. },
                        ..
                    }) => panic!("a protocol-1 request was answered: {response:?}"),
                    _ => {}
                },
            }
        }
    })
    .await;
}

// -------------------------------------------------------------------------------------------
// Issue 12: PROFILE flags and the identity safety number (§3.5, §5.6), REFUSED (§9), a new
// secret while running (§4).
// -------------------------------------------------------------------------------------------

/// The node's view of its session with the spec peer: (safety number, lasts, remote
/// lasting), from its `SessionEstablished`.
async fn node_number(hx: &mut Harness) -> (String, bool, bool) {
    let spec_id = hx.spec_id;
    hx.node_event(|e| match e {
        Event::SessionEstablished {
            peer,
            safety_number,
            safety_number_lasts,
            remote_lasting,
            ..
        } if *peer == spec_id => Some((
            safety_number.to_string(),
            *safety_number_lasts,
            *remote_lasting,
        )),
        _ => None,
    })
    .await
}

/// A spec-peer handshake up to the opened `AUTH_OK` (§5.1-§5.3), `lasting` in our PROFILE.
async fn up_to_auth_ok(hx: &mut Harness, secret: &str, lasting: bool) -> SpecSession {
    let mut init = hx.initiator(secret);
    init.lasting = lasting;
    let ch = hx.expect_challenge(init.hello()).await;
    let sent = init.on_challenge(&ch).expect("CHALLENGE acceptable");
    let ok = hx.expect_auth_ok(sent.auth()).await;
    sent.on_auth_ok(&ok).expect("AUTH_OK verifies")
}

/// §3.5, §5.6: the node's PROFILE carries its lasting flag; when both PROFILEs carry it,
/// both sides show the identity safety number, which the spec peer computes on its own from
/// the two `PeerId`s; otherwise the per-session number of `th`.
#[tokio::test]
async fn lasting_profiles_give_the_identity_safety_number() {
    within(async {
        let secret = Secret::generate();
        let mut hx = Harness::new(node_config(secret.clone()).with_lasting_identity(true)).await;
        let (spec_id, node_id) = (hx.spec_id, hx.node_id);
        let identity = identity_safety_number(&spec_id, &node_id);

        // Both last: the identity number on both sides.
        let mut s = up_to_auth_ok(&mut hx, secret.expose(), true).await;
        assert_eq!(
            s.remote_flags,
            Some(PROFILE_FLAG_LASTING),
            "the node's PROFILE says it lasts"
        );
        let confirm = s.confirmation();
        hx.send_acked(&s, confirm).await;
        assert!(s.safety_number_lasts());
        assert_eq!(s.safety_number(), identity);
        assert_ne!(identity, safety_number(&s.th));
        assert_eq!(node_number(&mut hx).await, (identity.clone(), true, true));

        // The spec peer ephemeral: the per-session number, and the node knows it.
        let mut s = up_to_auth_ok(&mut hx, secret.expose(), false).await;
        let confirm = s.confirmation();
        hx.send_acked(&s, confirm).await;
        assert!(!s.safety_number_lasts());
        assert_eq!(
            node_number(&mut hx).await,
            (safety_number(&s.th), false, false)
        );
    })
    .await;
}

/// §3.5: an ephemeral node's PROFILE has flags 0; a PROFILE with a reserved flag bit is
/// `MALFORMED`, and the session is not confirmed by it.
#[tokio::test]
async fn a_profile_with_a_reserved_flag_bit_is_malformed() {
    within(async {
        let secret = Secret::generate();
        let mut hx = Harness::new(node_config(secret.clone())).await;
        let mut s = up_to_auth_ok(&mut hx, secret.expose(), true).await;
        assert_eq!(s.remote_flags, Some(0), "an ephemeral node's PROFILE");
        // Each at a new seq: a record that opens marks its seq seen before its plaintext is
        // parsed (§6.2 steps 5-6).
        for flags in [0x02, 0x03, 0x80, 0xff] {
            let rec = s.seal(&Content::Profile {
                name: "Spec".into(),
                flags,
            });
            hx.expect_reject(Request::Record(rec), RejectCode::Malformed)
                .await;
        }
        assert!(
            !hx.node_events
                .iter()
                .any(|e| matches!(e, Event::SessionEstablished { .. })),
            "{:?}",
            hx.node_events
        );
        // The honest confirmation, at a seq the window has not seen, still confirms it.
        let confirm = s.confirmation();
        hx.send_acked(&s, confirm).await;
        assert_eq!(node_number(&mut hx).await.0, safety_number(&s.th));
    })
    .await;
}

/// §9: a node whose user refuses the spec peer answers its `HELLO`, and an `AUTH` of a
/// handshake it answered before the refusal, `REJECT REFUSED` (code 20, detail 0), checked
/// by the spec peer's own decoder; allowed again, the handshake goes through.
#[tokio::test]
async fn refused_hello_and_auth_round_trip() {
    within(async {
        let secret = Secret::generate();
        let mut hx = Harness::new(node_config(secret.clone())).await;
        let spec_id = hx.spec_id;
        hx.behaviour().refuse_peer(spec_id).expect("room");
        let init = hx.initiator(secret.expose());
        let detail = hx.expect_reject(init.hello(), RejectCode::Refused).await;
        assert_eq!(detail, 0);
        let body = frame(&encode_request(&init.hello()));
        assert_eq!(
            hx.raw_request(body).await,
            Ok(Response::Reject {
                code: RejectCode::Refused,
                detail: 0
            })
        );
        assert_eq!(
            encode_response(&Response::Reject {
                code: RejectCode::Refused,
                detail: 0
            }),
            [0x85, 0x00, 0x14, 0, 0, 0, 0]
        );

        // Allowed: a HELLO is answered; refused between HELLO and AUTH: the AUTH is REFUSED.
        assert!(hx.behaviour().allow_peer(&spec_id));
        let init = hx.initiator(secret.expose());
        let ch = hx.expect_challenge(init.hello()).await;
        let sent = init.on_challenge(&ch).expect("CHALLENGE acceptable");
        hx.behaviour().refuse_peer(spec_id).expect("room");
        hx.expect_reject(sent.auth(), RejectCode::Refused).await;
        assert_eq!(hx.behaviour().state_counts().handshakes, 0);
        assert!(
            !hx.node_events
                .iter()
                .any(|e| matches!(e, Event::InboundAuthFailed { .. })),
            "a refusal is no failed authentication"
        );

        hx.behaviour().allow_peer(&spec_id);
        let s = hx.handshake(secret.expose()).await;
        established(&mut hx, &s).await;
    })
    .await;
}

/// §9 from the other side: a responder that answers the node's `HELLO` with `REFUSED` fails
/// the node's open with `OpenError::Refused`.
#[tokio::test]
async fn node_as_initiator_answered_refused() {
    within(async {
        let mut hx = Harness::new(node_config(Secret::generate())).await;
        let spec_id = hx.spec_id;
        let open = hx.behaviour().open_session(spec_id, Secret::generate());
        let (req, ch) = hx.next_inbound().await;
        assert!(matches!(req, Request::Hello(_)), "{req:?}");
        hx.respond(
            ch,
            Response::Reject {
                code: RejectCode::Refused,
                detail: 0,
            },
        );
        assert_eq!(open_failed(&mut hx, open).await, OpenError::Refused);
        assert_eq!(hx.behaviour().state_counts().handshakes, 0);
    })
    .await;
}

/// §4: a secret changed between the node's `CHALLENGE` and our `AUTH` discards the pending
/// handshake (`UNKNOWN_HANDSHAKE`, not counted as a failure); an established session keeps
/// working; a new handshake needs the new secret.
#[tokio::test]
async fn a_secret_changed_while_running() {
    within(async {
        let old = Secret::generate();
        let mut hx = Harness::new(node_config(old.clone())).await;
        let mut s = hx.handshake(old.expose()).await;
        established(&mut hx, &s).await;

        let init = hx.initiator(old.expose());
        let ch = hx.expect_challenge(init.hello()).await;
        let sent = init.on_challenge(&ch).expect("CHALLENGE acceptable");
        let new = Secret::generate();
        hx.behaviour().set_secret(new.clone());
        hx.expect_reject(sent.auth(), RejectCode::UnknownHandshake)
            .await;
        assert!(
            !hx.node_events
                .iter()
                .any(|e| matches!(e, Event::InboundAuthFailed { .. })),
        );
        // The session made under the old secret still carries chat.
        let rec = s.chat(1, &["after the change"]);
        hx.send_acked(&s, rec).await;
        assert_eq!(received(&mut hx).await.text, "after the change");
        // The old secret no longer opens a session; the new one does (and replaces it).
        let init = hx.initiator(old.expose());
        let ch = hx.expect_challenge(init.hello()).await;
        let sent = init.on_challenge(&ch).expect("CHALLENGE acceptable");
        hx.expect_reject(sent.auth(), RejectCode::AuthFailed).await;
        let s = hx.handshake(new.expose()).await;
        established(&mut hx, &s).await;
    })
    .await;
}
