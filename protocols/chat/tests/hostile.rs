//! Hostile peers against a real node that also serves an honest peer.
//!
//! Every test runs three kinds of swarms over TCP + Noise + Yamux on 127.0.0.1:
//!
//! * the **node** under test (`noctua_chat::Behaviour`);
//! * an **honest peer** (another `Behaviour`) with an active session with the node;
//! * one or more **abusers** ([`spec_peer::RawStreams`]): raw `/noctua/chat/2.0.0` streams
//!   under the test's full control, speaking the protocol (built by the spec peer of the
//!   `noctua-spec-peer` crate) deliberately wrong: garbage, truncated and oversized frames, bodies that
//!   never end, messages out of order, wrong MACs, replays, floods, silence.
//!
//! Throughout each case the test checks that
//!
//! * (a) the node stays responsive: the honest peer's messages are delivered (it gets the
//!   receipt) during and after the abuse (a liveness check with a generous limit; latency
//!   is measured by the benchmark, and only reported here);
//! * (b) memory stays bounded: `state_counts()` is sampled after every poll and its maximum
//!   stays below fixed bounds; after the abuse the counts return to the honest baseline;
//! * (c) each case is logged in a few lines, not once per packet: the node's `tracing` output
//!   is captured and the warnings that name each abuser are counted (at most
//!   `MAX_WARNINGS`).
//!
//! Each test prints a `HOSTILE` summary line (run with `--nocapture` to see it). Tests run one
//! at a time (a lock), so that floods do not distort each other's timings and log windows.

mod common;
mod hostile_harness;
mod log_capture;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use libp2p::PeerId;
use noctua_chat::{CloseReason, Config, Event, Secret, SessionState, StateCounts};
use noctua_spec_peer::{
    self as spec_peer, Auth, Content, Outcome, Record, RejectCode, Request, Response, Role, Script,
    SpecSession, frame, random, record_header, seal_raw, tampered,
};

use hostile_harness::*;

/// Garbage and truncated frames, 100 of each kind, 32 streams at a time, while the honest
/// peer chats: every one is answered `MALFORMED`, and the node logs the abuser in a few lines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_truncated_frames() {
    run_case("garbage and truncated frames", || async {
        let case = "garbage and truncated frames";
        let secret = Secret::generate();
        let mut w = World::new(node_config(&secret)).await;
        let a = w.connected_abuser().await;

        let hello = spec_peer::encode_request(&w.initiator(a, secret.expose()).hello());
        let mut hello_trailing = hello.clone();
        hello_trailing.push(0);
        let mut record_sender_2 = vec![0x03];
        record_sender_2.extend_from_slice(&record_header(&[9; 16], 0, 2, 1));
        record_sender_2.extend_from_slice(&16u32.to_be_bytes());
        record_sender_2.extend_from_slice(&[0; 16]);
        let mut record_short_tag = vec![0x03];
        record_short_tag.extend_from_slice(&record_header(&[9; 16], 0, 0, 1));
        record_short_tag.extend_from_slice(&3u32.to_be_bytes());
        record_short_tag.extend_from_slice(&[0; 3]);
        let mut record_long_len = vec![0x03];
        record_long_len.extend_from_slice(&record_header(&[9; 16], 0, 0, 1));
        record_long_len.extend_from_slice(&1000u32.to_be_bytes());
        record_long_len.extend_from_slice(&[0; 20]);
        let noise: [u8; 64] = random();
        let kinds: Vec<(&str, Vec<u8>)> = vec![
            ("unknown type", frame(&[0xee, 1, 2, 3])),
            ("a response type as a request", frame(&[0x86])),
            ("empty frame", vec![0, 0, 0, 0]),
            ("stream ends inside the body", vec![0, 0, 0, 10, 1, 2]),
            ("stream ends inside the length", vec![0, 0]),
            ("stream closed before any byte", vec![]),
            ("HELLO with a byte left over", frame(&hello_trailing)),
            ("HELLO cut by one byte", frame(&hello[..hello.len() - 1])),
            ("RECORD with sender 2", frame(&record_sender_2)),
            ("RECORD sealed shorter than a tag", frame(&record_short_tag)),
            ("RECORD sealed length past the end", frame(&record_long_len)),
            ("noise", frame(&[&[0x7f][..], &noise[..]].concat())),
        ];
        let mut scripts = Vec::new();
        for _ in 0..100 {
            for (_, bytes) in &kinds {
                scripts.push((a, Script::Send(bytes.clone())));
            }
        }
        let n = scripts.len();
        let flood = w
            .flood(scripts, 32, Some(Duration::from_millis(250)))
            .await;
        for (i, o) in flood.outcomes.iter().enumerate() {
            let (what, _) = &kinds[i % kinds.len()];
            assert_eq!(
                o.outcome.reject_code(),
                Some(RejectCode::Malformed),
                "{what}: expected REJECT MALFORMED, got {:?}",
                o.outcome
            );
        }
        assert!(!flood.honest.is_empty());
        assert!(
            !w.node_events
                .iter()
                .any(|(_, e)| matches!(e, Event::MessageReceived { peer, .. } if *peer == w.abusers[a].id)),
            "nothing of the garbage was delivered"
        );
        w.assert_bounded(case, bounds(1, 0));
        w.disconnect(a);
        let back = w.back_to_baseline(Duration::from_secs(5)).await;
        w.honest_roundtrip("after the garbage").await;
        w.finish(
            case,
            &[format!(
                "{n} garbage streams in {} ms, all MALFORMED; back to baseline {} ms after disconnect",
                flood.elapsed.as_millis(),
                back.as_millis()
            )],
        );
    })
    .await;
}

/// Oversized frames: a length over the limit is refused at once (`TOO_LARGE`, detail = the
/// limit) without reading the body, even when the body keeps coming; a frame at the limit is
/// read to its end and no further; a body that never ends is given up at the request timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_frames_and_bodies_that_never_end() {
    run_case("oversized frames", || async {
        let case = "oversized frames and endless bodies";
        let secret = Secret::generate();
        let mut w = World::new(node_config(&secret)).await;
        let a = w.connected_abuser().await;
        let limit = spec_peer::DEFAULT_MAX_FRAME;
        let over = ((limit + 1) as u32).to_be_bytes().to_vec();
        let at_limit = (limit as u32).to_be_bytes().to_vec();

        let mut scripts = Vec::new();
        // 0..200: a length prefix over the limit, then close.
        for i in 0..200 {
            let prefix = if i % 2 == 0 {
                over.clone()
            } else {
                u32::MAX.to_be_bytes().to_vec()
            };
            scripts.push((a, Script::Send(prefix)));
        }
        // 200..205: over the limit, then as much body as the stream takes (up to 64 MiB).
        for _ in 0..5 {
            scripts.push((a, Script::Flood(over.clone(), 64 << 20)));
        }
        // 205..208: exactly the limit (garbage), then 4 MiB more than announced.
        for _ in 0..3 {
            scripts.push((a, Script::Flood(at_limit.clone(), limit + (4 << 20))));
        }
        // 208..212: a frame of 1000 bytes whose body trickles for ever (a byte per 100 ms).
        for _ in 0..4 {
            let mut prefix = 1000u32.to_be_bytes().to_vec();
            prefix.extend_from_slice(&[0x03; 10]);
            scripts.push((a, Script::Trickle(prefix, Duration::from_millis(100))));
        }
        let flood = w.flood(scripts, 32, Some(Duration::from_millis(250))).await;
        for (i, o) in flood.outcomes[..205].iter().enumerate() {
            match &o.outcome {
                Outcome::Response(Response::Reject {
                    code: RejectCode::TooLarge,
                    detail,
                }) => assert_eq!(*detail as usize, limit, "#{i}"),
                other => panic!("oversized #{i}: expected TOO_LARGE, got {other:?}"),
            }
        }
        let flooded: Vec<usize> = flood.outcomes[200..205].iter().map(|o| o.written).collect();
        for (i, o) in flood.outcomes[200..205].iter().enumerate() {
            assert!(
                o.written <= 2 << 20,
                "endless body #{i}: the node let us write {} bytes before answering",
                o.written
            );
        }
        let at_limit_written: Vec<usize> =
            flood.outcomes[205..208].iter().map(|o| o.written).collect();
        for o in &flood.outcomes[205..208] {
            assert_eq!(
                o.outcome.reject_code(),
                Some(RejectCode::Malformed),
                "{:?}",
                o.outcome
            );
            assert!(o.written <= limit + (2 << 20), "wrote {}", o.written);
        }
        let mut trickle = Vec::new();
        for o in &flood.outcomes[208..212] {
            assert!(
                matches!(o.outcome, Outcome::Ended(_)),
                "an endless body gets no answer; the stream is dropped: {:?}",
                o.outcome
            );
            assert!(
                o.elapsed >= Duration::from_millis(2500) && o.elapsed <= Duration::from_secs(8),
                "dropped after the request timeout (3 s), not {:?}",
                o.elapsed
            );
            trickle.push(format!("{} ms/{} B", o.elapsed.as_millis(), o.written));
        }
        w.assert_bounded(case, bounds(1, 0));
        w.disconnect(a);
        w.back_to_baseline(Duration::from_secs(5)).await;
        w.honest_roundtrip("after the oversized frames").await;
        w.finish(
            case,
            &[
                format!("bytes written before TOO_LARGE with an endless body: {flooded:?}"),
                format!("bytes written at the limit (+4 MiB offered): {at_limit_written:?}"),
                format!("endless trickled bodies dropped after: {trickle:?}"),
            ],
        );
    })
    .await;
}

/// Requests out of order: records with no session, `AUTH` without `HELLO`, `ABORT` of
/// nothing, then, between `AUTH_OK` and the confirmation, rekey and chat contents. All are
/// refused, nothing is delivered, and the unconfirmed session is discarded after the
/// handshake timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_before_authentication() {
    run_case("messages before authentication", || async {
        let case = "messages before authentication";
        let secret = Secret::generate();
        let mut w = World::new(node_config(&secret)).await;
        let a = w.connected_abuser().await;
        let abuser = w.abusers[a].id;

        let mut scripts = Vec::new();
        for seq in 0..200 {
            let rec = random_record(random(), 0, Role::Initiator, seq, 48);
            scripts.push((a, Script::request(&Request::Record(rec))));
        }
        for _ in 0..200 {
            let auth = Auth {
                hs_id: random(),
                wrapped: random::<256>().to_vec(),
                mac: random(),
            };
            scripts.push((a, Script::request(&Request::Auth(auth))));
        }
        for _ in 0..50 {
            let abort = Request::Abort {
                hs_id: random(),
                code: 5,
            };
            scripts.push((a, Script::request(&abort)));
        }
        let flood = w.flood(scripts, 32, Some(Duration::from_millis(250))).await;
        expect_all(
            &flood,
            0..200,
            RejectCode::UnknownSession,
            "RECORD, no session",
        );
        expect_all(
            &flood,
            200..400,
            RejectCode::UnknownHandshake,
            "AUTH, no HELLO",
        );
        for o in &flood.outcomes[400..450] {
            assert!(
                matches!(o.outcome, Outcome::Response(Response::Done)),
                "{:?}",
                o.outcome
            );
        }

        // A handshake whose AUTH names another hs_id, then the right one: the session exists
        // on the node but is not confirmed yet.
        let init = w.initiator(a, secret.expose());
        let ch = match w.expect_response(a, &init.hello()).await {
            Response::Challenge(c) => c,
            other => panic!("{other:?}"),
        };
        let sent = init.on_challenge(&ch).expect("CHALLENGE acceptable");
        let Request::Auth(mut other_hs) = sent.auth() else {
            unreachable!()
        };
        other_hs.hs_id = random();
        w.expect_reject(a, &Request::Auth(other_hs), RejectCode::UnknownHandshake)
            .await;
        let ok = match w.expect_response(a, &sent.auth()).await {
            Response::AuthOk(ok) => ok,
            other => panic!("the pending handshake survived a wrong hs_id: {other:?}"),
        };
        let mut s = sent.on_auth_ok(&ok).expect("AUTH_OK verifies");
        let confirm = s.confirmation();
        assert_eq!(w.node.behaviour().state_counts().sessions, 2);

        // Before the confirmation: rekey, chat, ping and close contents, 40 of each.
        let k0 = s.epoch_keys(0).clone();
        let mut scripts = Vec::new();
        for i in 0..40u64 {
            let contents = [
                Content::RekeyInit {
                    new_epoch: 1,
                    nonce: random(),
                    public_key: s.local_pub.clone(),
                    share: spec_peer::enc(&(spec_peer::scalar() * spec_peer::base_point())),
                },
                Content::RekeyCommit {
                    new_epoch: 1,
                    wrapped: random::<256>().to_vec(),
                },
                chat(i, "too early"),
                Content::Ping,
                Content::Close { code: 100 },
            ];
            for c in contents {
                let rec = s.seal(&c);
                scripts.push((a, Script::request(&Request::Record(rec))));
            }
        }
        // ... and a REKEY_INIT for epoch 1 sealed under a wrong key.
        for seq in 300..340 {
            let plain = spec_peer::encode_content(&Content::RekeyInit {
                new_epoch: 1,
                nonce: random(),
                public_key: s.local_pub.clone(),
                share: spec_peer::enc(&(spec_peer::scalar() * spec_peer::base_point())),
            });
            let rec = seal_raw(&k0.key_r2i, s.session_id, 0, Role::Initiator, seq, &plain);
            scripts.push((a, Script::request(&Request::Record(rec))));
        }
        let flood2 = w.flood(scripts, 32, Some(Duration::from_millis(250))).await;
        expect_all(
            &flood2,
            0..200,
            RejectCode::BadState,
            "content before confirmation",
        );
        expect_all(&flood2, 200..240, RejectCode::DecryptFailed, "wrong key");
        let info = w
            .node
            .behaviour()
            .session(&abuser)
            .expect("unconfirmed session");
        assert_eq!(info.state, SessionState::Handshaking);
        assert_eq!(info.rejections.malformed, 200, "{:?}", info.rejections);
        assert_eq!(info.rejections.tampered, 40, "{:?}", info.rejections);

        // Never confirmed: discarded after the handshake timeout (3 s), and then even the
        // right confirmation is too late.
        w.until(
            "the unconfirmed session to be discarded",
            Duration::from_secs(8),
            |w| w.node.behaviour().session(&abuser).is_none(),
        )
        .await;
        w.expect_reject(a, &Request::Record(confirm), RejectCode::UnknownSession)
            .await;
        assert!(
            !w.node_events.iter().any(|(_, e)| matches!(e,
                Event::SessionEstablished { peer, .. } | Event::MessageReceived { peer, .. }
                    | Event::SessionRotated { peer, .. } if *peer == abuser)),
            "nothing of the abuser's was established, delivered or rotated"
        );
        w.assert_bounded(case, bounds(1, 1));
        w.disconnect(a);
        w.back_to_baseline(Duration::from_secs(5)).await;
        w.honest_roundtrip("after the out-of-order requests").await;
        w.finish(case, &[]);
    })
    .await;
}

/// `config` with authentication-failure limits no test reaches, for cases about failed
/// authentications themselves rather than the bans (see the rate-limit case).
fn without_auth_bans(config: Config) -> Config {
    let minute = Duration::from_secs(60);
    config
        .with_peer_auth_limit(1000, minute, minute)
        .with_ip_auth_limit(1000, minute, minute)
}

/// Wrong MACs: `AUTH` proofs that do not verify (wrong secret, or a proof for other bytes),
/// an `AUTH` whose proof verifies over garbage key material, and records whose AEAD tag, key
/// or header is wrong. Every one is refused; the session goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_macs() {
    run_case("wrong MACs", || async {
        let case = "wrong MACs";
        let secret = Secret::generate();
        // Failed authentications are the point here, not the ban (see the rate-limit case).
        let config = without_auth_bans(node_config(&secret));
        let mut w = World::new(config).await;
        let a = w.connected_abuser().await;
        let abuser = w.abusers[a].id;

        // 20 proofs made with a wrong secret, and 5 right proofs for other key material.
        for attempt in 0..25 {
            let wrong = Secret::generate();
            let good = secret.expose().to_owned();
            let init = w.initiator(a, if attempt < 20 { wrong.expose() } else { &good });
            let ch = match w.expect_response(a, &init.hello()).await {
                Response::Challenge(c) => c,
                other => panic!("{other:?}"),
            };
            let sent = init.on_challenge(&ch).expect("CHALLENGE acceptable");
            let Request::Auth(mut auth) = sent.auth() else {
                unreachable!()
            };
            if attempt >= 20 {
                auth.wrapped[0] ^= 1;
            }
            w.expect_reject(a, &Request::Auth(auth), RejectCode::AuthFailed)
                .await;
        }
        let failures = w
            .node_events
            .iter()
            .filter(|(_, e)| matches!(e, Event::InboundAuthFailed { peer, banned: false, .. } if *peer == abuser))
            .count();
        assert_eq!(failures, 25, "each failed proof is reported");

        // A proof that verifies (the abuser knows the secret) over key material that does not
        // decrypt: DECRYPT_FAILED, after the proof (§5.2).
        let init = w.initiator(a, secret.expose());
        let ch = match w.expect_response(a, &init.hello()).await {
            Response::Challenge(c) => c,
            other => panic!("{other:?}"),
        };
        let mut sent = init.on_challenge(&ch).expect("CHALLENGE acceptable");
        sent.wrapped_i = random::<256>().to_vec();
        sent.mac_i = spec_peer::initiator_proof(&sent.k_conf, &sent.th, &sent.wrapped_i);
        w.expect_reject(a, &sent.auth(), RejectCode::DecryptFailed)
            .await;

        // A real session, then 300 records with a flipped ciphertext bit, 100 sealed with the
        // wrong direction's key, 100 whose header was changed after sealing.
        let (mut s, _, _) = w.handshake(a).await;
        let k0 = s.epoch_keys(0).clone();
        let mut scripts = Vec::new();
        for i in 0..300u64 {
            let rec = s.seal(&chat(i, "tampered"));
            scripts.push((a, Script::request(&Request::Record(tampered(&rec)))));
        }
        for seq in 1000..1100u64 {
            let plain = spec_peer::encode_content(&chat(seq, "wrong key"));
            let rec = seal_raw(&k0.key_r2i, s.session_id, 0, Role::Initiator, seq, &plain);
            scripts.push((a, Script::request(&Request::Record(rec))));
        }
        for seq in 2000..2100u64 {
            let mut rec = s.seal_at(0, seq, &chat(seq, "moved"));
            rec.seq += 50;
            scripts.push((a, Script::request(&Request::Record(rec))));
        }
        let flood = w
            .flood(scripts, 32, Some(Duration::from_millis(250)))
            .await;
        expect_all(&flood, 0..500, RejectCode::DecryptFailed, "wrong MAC");
        // The seqs of refused records were not burnt (§6.2 step 5).
        let rec = s.seal_at(0, 5, &chat(5, "the real one"));
        w.send_acked(a, &s, rec).await;
        let info = w.node.behaviour().session(&abuser).expect("session");
        assert_eq!(info.state, SessionState::Active);
        assert_eq!(info.rejections.tampered, 500, "{:?}", info.rejections);
        let delivered: Vec<&str> = w
            .node_events
            .iter()
            .filter_map(|(_, e)| match e {
                Event::MessageReceived { peer, message, .. } if *peer == abuser => {
                    Some(message.text.as_str())
                }
                _ => None,
            })
            .collect();
        assert_eq!(delivered, ["the real one"]);
        w.assert_bounded(case, bounds(1, 1));
        let infos = w
            .infos_about(a)
            .iter()
            .filter(|l| l.contains("failed to authenticate"))
            .count();
        assert!(
            infos <= 2,
            "25 failed proofs were logged {infos} times (once, then summarised)"
        );
        w.disconnect(a);
        w.back_to_baseline(Duration::from_secs(5)).await;
        w.honest_roundtrip("after the wrong MACs").await;
        w.finish(
            case,
            &[format!(
                "25 failed proofs gave {failures} InboundAuthFailed events and {infos} INFO lines \
                 ('a peer failed to authenticate': once, then summarised)"
            )],
        );
    })
    .await;
}

/// Replays: a `HELLO` and `AUTH` from an earlier handshake, by the same peer and by another
/// one; records replayed a thousand times; records behind the window. Nothing replayed is
/// accepted twice, the abuser's own session survives its replays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_handshakes_and_records() {
    run_case("replays", || async {
        let case = "replayed handshakes and records";
        let secret = Secret::generate();
        let config = without_auth_bans(node_config(&secret));
        let mut w = World::new(config).await;
        let a = w.connected_abuser().await;
        let b = w.connected_abuser().await;
        let (id_a, id_b) = (w.abusers[a].id, w.abusers[b].id);
        let (mut s, hello, auth) = w.handshake(a).await;

        // AUTH again, after its handshake completed: nothing pending.
        w.expect_reject(a, &auth, RejectCode::UnknownHandshake)
            .await;
        // HELLO again: a fresh challenge (new nonce), against which the old AUTH fails.
        let Request::Hello(h) = &hello else {
            unreachable!()
        };
        let ch = match w.expect_response(a, &hello).await {
            Response::Challenge(c) => c,
            other => panic!("{other:?}"),
        };
        assert_eq!(ch.hs_id, h.hs_id);
        w.expect_reject(a, &auth, RejectCode::AuthFailed).await;
        // The same two messages from another peer.
        let ch_b = match w.expect_response(b, &hello).await {
            Response::Challenge(c) => c,
            other => panic!("{other:?}"),
        };
        assert_ne!(ch_b.nonce, ch.nonce, "every challenge is fresh");
        w.expect_reject(b, &auth, RejectCode::AuthFailed).await;
        // The abuser's session is untouched by its failed re-handshake.
        let rec = s.chat(1, &["still mine"]);
        w.send_acked(a, &s, rec).await;

        // Ten records, each replayed 100 times by its sender and 10 times by the other peer.
        let mut originals = Vec::new();
        for i in 0..10u64 {
            let rec = s.chat(10 + i, &[&format!("original {i}")]);
            w.send_acked(a, &s, rec.clone()).await;
            originals.push(rec);
        }
        let mut scripts = Vec::new();
        for _ in 0..100 {
            for rec in &originals {
                scripts.push((a, Script::request(&Request::Record(rec.clone()))));
            }
        }
        for _ in 0..10 {
            for rec in &originals {
                scripts.push((b, Script::request(&Request::Record(rec.clone()))));
            }
        }
        let confirm = s.seal_at(
            0,
            0,
            &Content::Profile {
                name: "x".into(),
                flags: 0,
            },
        );
        for _ in 0..20 {
            scripts.push((a, Script::request(&Request::Record(confirm.clone()))));
        }
        let flood = w.flood(scripts, 32, Some(Duration::from_millis(250))).await;
        expect_all(
            &flood,
            0..1000,
            RejectCode::Replayed,
            "replayed by its sender",
        );
        expect_all(
            &flood,
            1000..1100,
            RejectCode::UnknownSession,
            "replayed by another",
        );
        expect_all(
            &flood,
            1100..1120,
            RejectCode::Replayed,
            "confirmation replayed",
        );

        // Far ahead, then behind the window (256).
        s.skip_to(0, 1000);
        let ahead = s.chat(100, &["far ahead"]);
        w.send_acked(a, &s, ahead).await;
        let mut scripts = Vec::new();
        for seq in 0..100u64 {
            let old = s.seal_at(0, 500 + seq, &chat(200 + seq, "behind"));
            scripts.push((a, Script::request(&Request::Record(old))));
        }
        let flood2 = w.flood(scripts, 32, None).await;
        expect_all(
            &flood2,
            0..100,
            RejectCode::OutOfWindow,
            "behind the window",
        );

        let info = w.node.behaviour().session(&id_a).expect("session");
        assert_eq!(info.state, SessionState::Active);
        assert_eq!(info.rejections.replayed, 1020, "{:?}", info.rejections);
        assert_eq!(info.rejections.out_of_window, 100, "{:?}", info.rejections);
        assert_eq!(info.messages_received, 12, "each message delivered once");
        assert!(w.node.behaviour().session(&id_b).is_none());
        w.assert_bounded(case, bounds(2, 1));
        w.disconnect(a);
        w.disconnect(b);
        w.back_to_baseline(Duration::from_secs(5)).await;
        w.honest_roundtrip("after the replays").await;
        w.finish(case, &[]);
    })
    .await;
}

/// Records naming another session (the honest peer's, a random one, a replaced one) or an
/// epoch that is not current (unknown, far, stale after two rotations). The honest session is
/// never touched: sessions are looked up by peer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_for_another_session_or_epoch() {
    run_case("another session or epoch", || async {
        let case = "records for another session or epoch";
        let secret = Secret::generate();
        let mut w = World::new(node_config(&secret)).await;
        let a = w.connected_abuser().await;
        let abuser = w.abusers[a].id;
        let (mut s, _, _) = w.handshake(a).await;
        let honest_sid = *w.honest_session.expect("honest session").as_bytes();
        let k0 = s.epoch_keys(0).clone();

        let mut scripts = Vec::new();
        // 0..200: the honest session's id, sealed with our keys.
        for seq in 100..300u64 {
            let plain = spec_peer::encode_content(&chat(seq, "into the honest session"));
            let rec = seal_raw(&k0.key_i2r, honest_sid, 0, Role::Initiator, seq, &plain);
            scripts.push((a, Script::request(&Request::Record(rec))));
        }
        // 200..400: random session ids.
        for seq in 300..500u64 {
            let plain = spec_peer::encode_content(&chat(seq, "nowhere"));
            let rec = seal_raw(&k0.key_i2r, random(), 0, Role::Initiator, seq, &plain);
            scripts.push((a, Script::request(&Request::Record(rec))));
        }
        // 400..600: epochs the node never had, sealed with epoch 0's key.
        for (i, epoch) in [1u32, 2, 7, u32::MAX]
            .into_iter()
            .cycle()
            .take(200)
            .enumerate()
        {
            let seq = 500 + i as u64;
            let plain = spec_peer::encode_content(&chat(seq, "wrong epoch"));
            let rec = seal_raw(
                &k0.key_i2r,
                s.session_id,
                epoch,
                Role::Initiator,
                seq,
                &plain,
            );
            scripts.push((a, Script::request(&Request::Record(rec))));
        }
        let flood = w.flood(scripts, 32, Some(Duration::from_millis(250))).await;
        expect_all(
            &flood,
            0..400,
            RejectCode::UnknownSession,
            "another session",
        );
        expect_all(&flood, 400..600, RejectCode::UnknownEpoch, "unknown epoch");

        // Two rotations: epoch 0 is gone (STALE_EPOCH), epoch 3 does not exist yet.
        w.rotate(a, &mut s).await;
        w.rotate(a, &mut s).await;
        assert_eq!(s.epoch, 2);
        let k2 = s.epoch_keys(2).clone();
        let mut scripts = Vec::new();
        for seq in 1000..1100u64 {
            let plain = spec_peer::encode_content(&chat(seq, "stale"));
            let rec = seal_raw(&k0.key_i2r, s.session_id, 0, Role::Initiator, seq, &plain);
            scripts.push((a, Script::request(&Request::Record(rec))));
        }
        for seq in 0..100u64 {
            let plain = spec_peer::encode_content(&chat(seq, "next"));
            let rec = seal_raw(&k2.key_i2r, s.session_id, 3, Role::Initiator, seq, &plain);
            scripts.push((a, Script::request(&Request::Record(rec))));
        }
        let flood2 = w.flood(scripts, 32, Some(Duration::from_millis(250))).await;
        expect_all(&flood2, 0..100, RejectCode::StaleEpoch, "stale epoch");
        expect_all(&flood2, 100..200, RejectCode::UnknownEpoch, "epoch not yet");
        let info = w.node.behaviour().session(&abuser).expect("session");
        assert_eq!((info.state, info.epoch), (SessionState::Active, 2));
        assert_eq!(info.rejections.wrong_epoch, 400, "{:?}", info.rejections);

        // A new handshake replaces the session; the old one's records are UNKNOWN_SESSION.
        let old_records: Vec<Record> = (0..100).map(|i| s.chat(i, &["old"])).collect();
        let (s2, _, _) = w.handshake(a).await;
        w.until(
            "the replaced session's report",
            Duration::from_secs(5),
            |w| {
                w.node_events.iter().any(|(_, e)| {
                    matches!(e,
                Event::SessionClosed { peer, reason: CloseReason::Replaced, .. } if *peer == abuser)
                })
            },
        )
        .await;
        let scripts = old_records
            .into_iter()
            .map(|r| (a, Script::request(&Request::Record(r))))
            .collect();
        let flood3 = w.flood(scripts, 32, None).await;
        expect_all(
            &flood3,
            0..100,
            RejectCode::UnknownSession,
            "replaced session",
        );
        let info = w.node.behaviour().session(&abuser).expect("session");
        assert_eq!(info.id.as_bytes(), &s2.session_id);
        assert_eq!(info.rejections.total(), 0, "{:?}", info.rejections);
        w.assert_bounded(case, bounds(1, 1));
        w.disconnect(a);
        w.back_to_baseline(Duration::from_secs(5)).await;
        w.honest_roundtrip("after the wrong sessions and epochs")
            .await;
        w.finish(case, &[]);
    })
    .await;
}

/// One round of the request flood: `n` of each kind, interleaved, with the kind of each.
fn flood_round(
    w: &World,
    a: usize,
    b: usize,
    s: &mut SpecSession,
    n: usize,
) -> Vec<(usize, Script, &'static str)> {
    let mut scripts = Vec::new();
    for i in 0..n {
        let noise: [u8; 48] = random();
        let garbage = frame(&[&[0x70 + (i % 8) as u8][..], &noise[..]].concat());
        scripts.push((a, Script::Send(garbage), "garbage"));
        let rec = random_record(random(), 0, Role::Initiator, i as u64, 64);
        scripts.push((a, Script::request(&Request::Record(rec)), "record"));
        if i % 3 == 0 {
            let mut init = w.initiator(a, "whatever");
            init.hs_id = random();
            scripts.push((a, Script::request(&init.hello()), "hello"));
        }
        // Valid-looking records of b's own session: right id, epoch, sender and a fresh seq,
        // random ciphertext.
        let seq = s.take_seq(0);
        let rec = random_record(s.session_id, 0, Role::Initiator, seq, 64);
        scripts.push((b, Script::request(&Request::Record(rec)), "session record"));
    }
    scripts
}

/// A flood of requests for about 4 s, as fast as the streams go, 300 streams open at a time
/// per abuser (the node serves 64 per connection): garbage, valid-looking `RECORD`s with no
/// session and `HELLO`s from an unauthenticated abuser, and records that fail authentication
/// from an abuser with a session. The honest peer sends a message every 200 ms throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_flood() {
    run_case("request flood", || async {
        let case = "request flood";
        let secret = Secret::generate();
        let mut w = World::new(node_config(&secret)).await;
        let a = w.connected_abuser().await;
        let b = w.connected_abuser().await;
        let id_b = w.abusers[b].id;
        let (mut s, _, _) = w.handshake(b).await;

        let started = Instant::now();
        let mut tally: BTreeMap<(&str, String), usize> = BTreeMap::new();
        let mut total = 0;
        let mut honest = Vec::new();
        let mut rounds = 0;
        while started.elapsed() < Duration::from_secs(4) && rounds < 40 {
            rounds += 1;
            let round = flood_round(&w, a, b, &mut s, 1000);
            let kinds: Vec<&str> = round.iter().map(|(_, _, k)| *k).collect();
            let scripts = round.into_iter().map(|(who, sc, _)| (who, sc)).collect();
            let flood = w
                .flood(scripts, 300, Some(Duration::from_millis(200)))
                .await;
            honest.extend(flood.honest.iter().map(|d| d.as_millis()));
            total += kinds.len();
            for (kind, o) in kinds.iter().zip(&flood.outcomes) {
                let expected = match *kind {
                    "garbage" => o.outcome.reject_code() == Some(RejectCode::Malformed),
                    "record" => o.outcome.reject_code() == Some(RejectCode::UnknownSession),
                    // A HELLO flood from one peer meets the HELLO rate limit (SPEC §8):
                    // answered BUSY once the peer's burst is spent.
                    "hello" => {
                        matches!(o.outcome, Outcome::Response(Response::Challenge(_)))
                            || o.outcome.reject_code() == Some(RejectCode::Busy)
                    }
                    _ => o.outcome.reject_code() == Some(RejectCode::DecryptFailed),
                };
                let dropped = matches!(o.outcome, Outcome::Ended(_) | Outcome::OpenFailed(_));
                assert!(
                    expected || dropped,
                    "{kind}: an answer that is neither the right one nor a dropped stream: {:?}",
                    o.outcome
                );
                *tally.entry((kind, o.outcome.label())).or_insert(0) += 1;
            }
        }
        let elapsed = started.elapsed();
        let answered = |k: &str| {
            tally
                .iter()
                .filter(|((kind, label), _)| *kind == k && label.starts_with(['R', 'C']))
                .map(|(_, n)| n)
                .sum::<usize>()
        };
        for k in ["garbage", "record", "hello", "session record"] {
            assert!(
                answered(k) > 0,
                "the node answered some {k} requests: {tally:?}"
            );
        }
        let info = w.node.behaviour().session(&id_b).expect("session");
        assert_eq!(info.state, SessionState::Active);
        let refused = info.rejections.tampered as usize;
        assert!(
            refused >= answered("session record") && refused <= total,
            "counted {refused}, answered {}",
            answered("session record")
        );
        // The abuser's session still works after its flood.
        let rec = s.chat(1, &["after my flood"]);
        w.send_acked(b, &s, rec).await;
        w.assert_bounded(case, bounds(2, 1));
        w.disconnect(a);
        w.disconnect(b);
        w.back_to_baseline(Duration::from_secs(5)).await;
        w.honest_roundtrip("after the flood").await;
        let rate = total as f64 / elapsed.as_secs_f64();
        w.finish(
            case,
            &[
                format!(
                    "{total} requests in {rounds} rounds, {} ms ({rate:.0}/s); honest latencies \
                     during the flood (ms): {honest:?}",
                    elapsed.as_millis(),
                ),
                format!("outcomes {tally:?}"),
            ],
        );
    })
    .await;
}

/// The same flood, smaller, counting every warning that names the abuser, libp2p's
/// included. libp2p-request-response logs `Dropping inbound stream because we are at
/// capacity` at WARN once per stream over the per-connection limit (64), so without
/// [`noctua_chat::LOG_DIRECTIVES`] in the filter a flood of streams is logged once per
/// stream; with them (as the node runs), the flood stays within a few lines (at most
/// `MAX_WARNINGS` per abuser, libp2p's warnings included).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_flood_is_logged_in_a_few_lines_including_libp2p() {
    run_case("stream flood, all warnings", || async {
        let secret = Secret::generate();
        let mut w = World::new(node_config(&secret)).await;
        let a = w.connected_abuser().await;
        let b = w.connected_abuser().await;
        let (mut s, _, _) = w.handshake(b).await;
        let round = flood_round(&w, a, b, &mut s, 300);
        let n = round.len();
        let scripts = round.into_iter().map(|(who, sc, _)| (who, sc)).collect();
        w.flood(scripts, 300, None).await;
        for i in [a, b] {
            let (own, other) = w.warnings_about(i);
            let all = own.len() + other.len();
            eprintln!(
                "HOSTILE [stream flood, all warnings] abuser{i}: {n} streams, {} warnings of \
                 the node, {} of libp2p",
                own.len(),
                other.len()
            );
            assert!(
                all <= MAX_WARNINGS,
                "abuser{i}: {all} warnings for one flood ({} of them libp2p's, e.g. {:?})",
                other.len(),
                other.first().map(|l| message_of(l))
            );
        }
    })
    .await;
}

/// A `HELLO` then an `AUTH` with a wrong secret.
async fn failed_auth(w: &mut World, a: usize) -> bool {
    let wrong = Secret::generate();
    let init = w.initiator(a, wrong.expose());
    let ch = match w.expect_response(a, &init.hello()).await {
        Response::Challenge(c) => c,
        other => panic!("{other:?}"),
    };
    let sent = init.on_challenge(&ch).expect("CHALLENGE acceptable");
    let peer = w.abusers[a].id;
    let before = w.node_events.len();
    w.expect_reject(a, &sent.auth(), RejectCode::AuthFailed)
        .await;
    w.until("InboundAuthFailed", Duration::from_secs(5), |w| {
        w.node_events[before..]
            .iter()
            .any(|(_, e)| matches!(e, Event::InboundAuthFailed { peer: p, .. } if *p == peer))
    })
    .await;
    w.node_events[before..]
        .iter()
        .find_map(|(_, e)| match e {
            Event::InboundAuthFailed {
                peer: p, banned, ..
            } if *p == peer => Some(*banned),
            _ => None,
        })
        .expect("seen")
}

/// Failed authentications from one address: the peer is banned at its 3rd failure, the
/// address at the 6th (short bans configured); while banned, `HELLO` and `AUTH` are answered
/// `RATE_LIMITED` (a flood of them too) and new connections from the address are refused,
/// while the honest peer's existing session on the same address goes on. Then both bans
/// end and the abusers are answered again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_authentications_are_rate_limited_then_released() {
    run_case("rate limiting", || async {
        let case = "failed authentications from one address";
        let secret = Secret::generate();
        let peer_ban = Duration::from_secs(2);
        let ip_ban = Duration::from_secs(4);
        let config = node_config(&secret)
            .with_peer_auth_limit(3, Duration::from_secs(60), peer_ban)
            .with_ip_auth_limit(6, Duration::from_secs(60), ip_ban);
        let mut w = World::new(config).await;
        let a = w.connected_abuser().await;
        for attempt in 1..=3 {
            let banned = failed_auth(&mut w, a).await;
            assert_eq!(banned, attempt == 3, "attempt {attempt}: the 3rd bans the peer");
        }
        // A flood while the peer is banned: all RATE_LIMITED, with the seconds left.
        let mut scripts = Vec::new();
        for _ in 0..300 {
            let mut init = w.initiator(a, "wrong");
            init.hs_id = random();
            scripts.push((a, Script::request(&init.hello())));
            let auth = Auth {
                hs_id: random(),
                wrapped: random::<256>().to_vec(),
                mac: random(),
            };
            scripts.push((a, Script::request(&Request::Auth(auth))));
        }
        let flood = w
            .flood(scripts, 32, Some(Duration::from_millis(250)))
            .await;
        let peer_flood_ms = flood.elapsed.as_millis();
        expect_all(&flood, 0..600, RejectCode::RateLimited, "while the peer is banned");
        for o in &flood.outcomes {
            if let Outcome::Response(Response::Reject { detail, .. }) = o.outcome {
                assert!((1..=3).contains(&detail), "seconds until release: {detail}");
            }
        }

        // Another peer from the same address: its 3rd failure is the address's 6th.
        let b = w.connected_abuser().await;
        for attempt in 1..=3 {
            let banned = failed_auth(&mut w, b).await;
            assert_eq!(banned, attempt == 3);
        }
        // New connections from 127.0.0.1 are refused...
        let mut refused = 0;
        for _ in 0..10 {
            let c = w.add_abuser().await;
            assert!(
                !w.abusers[c].connected && w.abusers[c].dial_error.is_some(),
                "a new connection from a banned address is refused"
            );
            refused += 1;
        }
        // ... existing ones are answered RATE_LIMITED (a flood again) ...
        let mut scripts = Vec::new();
        for _ in 0..100 {
            let mut init = w.initiator(b, "wrong");
            init.hs_id = random();
            scripts.push((b, Script::request(&init.hello())));
        }
        let flood2 = w.flood(scripts, 32, None).await;
        expect_all(&flood2, 0..100, RejectCode::RateLimited, "while the address is banned");
        // ... and the honest peer, on the same address, is served. The node's own answers
        // show that the ban outlived the honest message: a new connection from the address
        // is still refused after it, and a `HELLO` is answered `RATE_LIMITED` with the
        // seconds the bans have left.
        let during = w.honest_roundtrip("during the address ban").await;
        let c = w.add_abuser().await;
        assert!(
            !w.abusers[c].connected && w.abusers[c].dial_error.is_some(),
            "the address is still banned after the honest message"
        );
        refused += 1;
        let init = w.initiator(b, "wrong");
        let left = w
            .expect_reject(b, &init.hello(), RejectCode::RateLimited)
            .await;
        assert!(
            (1..=ip_ban.as_secs()).contains(&u64::from(left)),
            "seconds until release: {left}"
        );
        let denied = w
            .node_swarm_events
            .iter()
            .filter(|e| e.starts_with("IncomingConnectionError"))
            .count();
        assert!(denied >= refused, "{denied} refusals seen by the node");

        // Time passes: both bans end. `left` is rounded up to whole seconds (over what
        // remained when the node answered), so both bans are over after it.
        w.drive_for(Duration::from_secs(left.into())).await;
        let c = w.connected_abuser().await;
        for who in [a, b, c] {
            let init = w.initiator(who, "wrong");
            let r = w.expect_response(who, &init.hello()).await;
            assert!(
                matches!(r, Response::Challenge(_)),
                "released after the bans: {r:?}"
            );
        }
        w.assert_bounded(
            case,
            StateCounts {
                peers: 4,
                connections: 4,
                handshakes: 3,
                ..bounds(3, 0)
            },
        );
        let all_warnings: Vec<String> = log_capture::since(w.log_start)
            .lines()
            .filter(|l| log_capture::is_warning(l))
            .map(message_of)
            .collect();
        for i in [a, b, c] {
            w.disconnect(i);
        }
        w.back_to_baseline(Duration::from_secs(5)).await;
        w.honest_roundtrip("after the bans").await;
        assert!(
            all_warnings.len() <= 3 * MAX_WARNINGS,
            "warnings in the whole case: {all_warnings:#?}"
        );
        w.finish(
            case,
            &[
                format!("600 requests while the peer was banned: {peer_flood_ms} ms, all RATE_LIMITED"),
                format!("{refused} connections refused during the address ban ({denied} denials on the node)"),
                format!("honest latency during the address ban {} ms", during.as_millis()),
                format!("all warnings of the case ({}): {all_warnings:?}", all_warnings.len()),
            ],
        );
    })
    .await;
}

/// Slow peers: streams opened and left silent, streams that send a length prefix and then
/// nothing, streams that stop half-way through a body, and connections that never open a
/// stream. The node drops each stream at its request timeout and closes each connection that
/// did not authenticate within its grace, by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_peers() {
    run_case("slow peers", || async {
        let case = "slow peers";
        let secret = Secret::generate();
        let grace = Duration::from_secs(7);
        let config = node_config(&secret).with_unauthenticated_grace(grace);
        let mut w = World::new(config).await;
        let keeper = w.connected_abuser().await;
        let keeper_since = Instant::now();
        let mut init = w.initiator(keeper, "wrong");
        init.hs_id = random();
        let first = w.call(keeper, &init.hello()).await;
        assert!(
            matches!(first, Outcome::Response(Response::Challenge(_))),
            "{first:?}"
        );
        let silent = w.connected_abuser().await;
        let prefix_only = w.connected_abuser().await;
        let half_body = w.connected_abuser().await;
        let mut idle = Vec::new();
        for _ in 0..10 {
            idle.push(w.connected_abuser().await);
        }
        let connected_at = Instant::now();
        let mut scripts = Vec::new();
        for _ in 0..80 {
            scripts.push((silent, Script::Stall(Vec::new())));
            scripts.push((prefix_only, Script::Stall(1000u32.to_be_bytes().to_vec())));
        }
        for _ in 0..20 {
            let mut bytes = (spec_peer::DEFAULT_MAX_FRAME as u32).to_be_bytes().to_vec();
            bytes.extend(std::iter::repeat_n(0x03, 100 * 1024));
            scripts.push((half_body, Script::Stall(bytes)));
        }
        let flood = w
            .flood(scripts, 100, Some(Duration::from_millis(250)))
            .await;
        let mut quick = BTreeMap::new();
        let mut timed_out = BTreeMap::new();
        for (i, o) in flood.outcomes.iter().enumerate() {
            assert!(
                matches!(o.outcome, Outcome::Ended(_) | Outcome::OpenFailed(_)),
                "a silent stream gets no answer: {:?}",
                o.outcome
            );
            let who = if i >= 160 {
                "half body"
            } else if i % 2 == 0 {
                "silent"
            } else {
                "prefix only"
            };
            assert!(
                o.elapsed <= Duration::from_secs(8),
                "{who}: the node held the stream for {:?}",
                o.elapsed
            );
            let slot = if o.elapsed >= Duration::from_millis(2500) {
                &mut timed_out
            } else {
                &mut quick
            };
            *slot.entry(who).or_insert(0usize) += 1;
        }
        assert!(
            timed_out.values().sum::<usize>() > 0,
            "some streams were held until the request timeout"
        );
        // Nobody disconnects: the node closes the connections that did not authenticate. One
        // more abuser keeps a handshake in progress meanwhile, a HELLO a second (never AUTH):
        // §8 closes only connections "if no session or handshake is in progress".
        let slow: Vec<usize> = (0..w.abusers.len()).filter(|i| *i != keeper).collect();
        let deadline = Instant::now() + grace + Duration::from_secs(5);
        let mut closed_at: Option<Duration> = None;
        while closed_at.is_none() || keeper_since.elapsed() < grace + Duration::from_secs(2) {
            assert!(
                Instant::now() < deadline,
                "the slow connections were not closed"
            );
            let mut init = w.initiator(keeper, "wrong");
            init.hs_id = random();
            let hello = w.launch(keeper, Script::request(&init.hello()));
            let next = Instant::now() + Duration::from_secs(1);
            w.until("a second", Duration::from_secs(2), |w| {
                let closed = slow.iter().all(|i| !w.abusers[*i].connected)
                    && w.node.behaviour().state_counts().connections <= 2;
                if closed && closed_at.is_none() {
                    closed_at = Some(connected_at.elapsed());
                }
                Instant::now() >= next && w.outcomes.contains_key(&hello)
            })
            .await;
            let answer = w.outcomes.remove(&hello).expect("seen").outcome;
            assert!(
                matches!(answer, Outcome::Response(Response::Challenge(_))),
                "{answer:?}"
            );
        }
        let closed_after = closed_at.expect("checked by the loop");
        let keeper_connected = w.abusers[keeper].connected;
        let keeper_for = keeper_since.elapsed();
        let keeper_handshakes = w.node.behaviour().state_counts().handshakes;
        assert!(keeper_handshakes <= 1, "one pending handshake per peer");
        w.disconnect(keeper);
        w.until("the honest baseline", Duration::from_secs(5), |w| {
            is_baseline(&w.node.behaviour().state_counts())
        })
        .await;
        assert!(
            closed_after + Duration::from_millis(500) >= grace,
            "closed after the grace, not before: {closed_after:?}"
        );
        w.until(
            "the abusers to see their connections closed",
            Duration::from_secs(5),
            |w| w.abusers.iter().all(|x| !x.connected),
        )
        .await;
        w.assert_bounded(
            case,
            StateCounts {
                handshakes: 1,
                ..bounds(14, 0)
            },
        );
        w.back_to_baseline(Duration::from_secs(1)).await;
        w.honest_roundtrip("after the slow peers").await;
        w.finish(
            case,
            &[
                format!("streams dropped at once (over the 64-stream limit): {quick:?}"),
                format!("streams dropped at the request timeout (3 s): {timed_out:?}"),
                format!(
                    "the 13 idle connections closed {} ms after connecting (grace {} ms)",
                    closed_after.as_millis(),
                    grace.as_millis()
                ),
                format!(
                    "an unauthenticated peer re-sending HELLO every second was still connected \
                     after {} ms: {keeper_connected} (it holds one of the \
                     max_pending_handshakes slots meanwhile)",
                    keeper_for.as_millis()
                ),
            ],
        );
    })
    .await;
}

/// While the node's first RSA key is still being generated, `HELLO`s wait for it (§5.1 "MAY
/// hold the request"). One peer flooding `HELLO`s then should hold one pending handshake
/// (§8: "pending handshakes per peer: 1, a new HELLO replaces"), and an honest peer arriving
/// meanwhile should get its session once the key exists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_flood_while_the_first_key_is_generated() {
    run_case("hello flood during key generation", || async {
        let case = "HELLO flood while the first key is generated";
        let secret = Secret::generate();
        // No key given: a 4096-bit key is generated at start, during which HELLOs wait.
        let config = Config::new(secret.clone())
            .with_name("node")
            .with_rsa_bits(4096)
            .with_rsa_regenerate_every(None)
            .with_request_timeout(Duration::from_secs(10))
            .with_keepalive_interval(Duration::from_secs(60));
        let mut w = World::start(config).await;
        // The honest peer is connected (no session yet), so that its HELLO goes out at once.
        let node_id = w.node_id;
        w.honest.dial(w.addr.clone()).expect("dial");
        w.until("the honest connection", Duration::from_secs(5), |w| {
            w.honest.is_connected(&node_id)
        })
        .await;
        let a = w.connected_abuser().await;
        let flood_start = Instant::now();
        let tags: Vec<u64> = (0..200)
            .map(|_| {
                let mut init = w.initiator(a, "wrong");
                init.hs_id = random();
                w.launch(a, Script::request(&init.hello()))
            })
            .collect();
        // Every HELLO but the one held is answered (UNKNOWN_HANDSHAKE once replaced) or
        // dropped by libp2p over its stream limit.
        w.until(
            "the node to answer all but one of the abuser's HELLOs",
            Duration::from_secs(10),
            |w| {
                w.node.behaviour().key_ready()
                    || tags.iter().filter(|t| w.outcomes.contains_key(t)).count() >= tags.len() - 1
            },
        )
        .await;
        let replaced = tags
            .iter()
            .filter(|t| {
                w.outcomes
                    .get(t)
                    .is_some_and(|o| o.outcome.reject_code() == Some(RejectCode::UnknownHandshake))
            })
            .count();
        let held = w.node.behaviour().state_counts().deferred_hellos;
        let key_ready_early = w.node.behaviour().key_ready();
        let open = w
            .honest
            .behaviour_mut()
            .open_session(node_id, secret.clone());
        w.until("the honest open to end", Duration::from_secs(25), |w| {
            w.honest_events.iter().any(|(_, e)| match e {
                Event::OpenFailed { open: o, .. } => *o == open,
                Event::SessionEstablished { opens, .. } => opens.contains(&open),
                _ => false,
            })
        })
        .await;
        let honest_outcome = w
            .honest_events
            .iter()
            .find_map(|(_, e)| match e {
                Event::OpenFailed { open: o, error, .. } if *o == open => Some(Err(error.clone())),
                Event::SessionEstablished { opens, .. } if opens.contains(&open) => Some(Ok(())),
                _ => None,
            })
            .expect("seen");
        w.until("the key", Duration::from_secs(25), |w| {
            w.node.behaviour().key_ready()
        })
        .await;
        let key_after = flood_start.elapsed();
        eprintln!(
            "HOSTILE [{case}] HELLOs of one peer held at once: {held} (max {}), {replaced} \
             replaced and answered UNKNOWN_HANDSHAKE, key ready before the honest HELLO: \
             {key_ready_early}; the honest open: {honest_outcome:?}; key ready {} ms after the \
             flood began",
            w.max.deferred_hellos,
            key_after.as_millis(),
        );
        assert!(
            !key_ready_early,
            "INCONCLUSIVE: the key was ready before the flood was held"
        );
        assert!(
            replaced > 0,
            "no replaced HELLO was answered UNKNOWN_HANDSHAKE"
        );
        assert!(
            w.max.deferred_hellos <= 2,
            "{} HELLOs held at once, {held} of them one peer's (§8: one pending handshake per \
             peer, a new HELLO replaces); the honest open: {honest_outcome:?}",
            w.max.deferred_hellos
        );
        assert!(
            honest_outcome.is_ok(),
            "one peer's HELLO flood during key generation made the honest open fail: \
             {honest_outcome:?}"
        );
    })
    .await;
}

/// §3: "a message with a field that runs past the end [...] is malformed (`MALFORMED`, or
/// `TOO_LARGE` for lengths over a limit)". A `RECORD` whose `sealed` length (1000) runs past
/// the end of its 54-byte frame is over no limit of §8, only past the end: it is answered
/// `MALFORMED`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_length_past_the_end_is_malformed() {
    run_case("record length past the end", || async {
        let secret = Secret::generate();
        let mut w = World::new(node_config(&secret)).await;
        let a = w.connected_abuser().await;
        let mut body = vec![0x03];
        body.extend_from_slice(&record_header(&[9; 16], 0, 0, 1));
        body.extend_from_slice(&1000u32.to_be_bytes());
        body.extend_from_slice(&[0; 20]);
        let tag = w.launch(a, Script::Send(frame(&body)));
        let outcome = w.outcome(tag).await.outcome;
        assert_eq!(
            outcome.reject_code(),
            Some(RejectCode::Malformed),
            "{outcome:?}"
        );
    })
    .await;
}

/// Not hostile at all: both ends of an honest session say goodbye at the same moment (both
/// nodes shutting down, as at a lab's teardown), so each side's `CLOSE` meets a session the
/// other is closing or has closed. That is no misbehaviour, and no warning may name either
/// peer (it used to log one per session on each side).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_goodbyes_are_not_misbehaviour() {
    run_case("simultaneous goodbyes", || async {
        let secret = Secret::generate();
        let mut w = World::new(node_config(&secret)).await;
        let (node_id, honest_id) = (w.node_id, w.honest_id);
        w.honest_may_close = true;
        w.node.behaviour_mut().shutdown();
        w.honest.behaviour_mut().shutdown();
        w.until(
            "both goodbyes sent and answered",
            Duration::from_secs(10),
            |w| {
                let closed = |evs: &[(Instant, Event)], p: PeerId| {
                    evs.iter()
                        .any(|(_, e)| matches!(e, Event::SessionClosed { peer, .. } if *peer == p))
                };
                closed(&w.node_events, honest_id)
                    && closed(&w.honest_events, node_id)
                    && w.node.behaviour().state_counts().outbound_requests == 0
                    && w.honest.behaviour().state_counts().outbound_requests == 0
            },
        )
        .await;
        let warnings: Vec<String> = [node_id, honest_id]
            .iter()
            .flat_map(|p| w.lines_about(p))
            .filter(|l| log_capture::is_warning(l))
            .collect();
        assert!(warnings.is_empty(), "{warnings:#?}");
    })
    .await;
}

/// A peer the node's user refused (`disconnect`, `block`: SPEC §9 `REFUSED`) floods
/// `HELLO`s with the right secret, after sending the `AUTH` of a handshake answered before
/// the refusal: every one is answered `REFUSED` (or its stream dropped), none holds a
/// handshake or costs a key operation, the honest peer keeps chatting, and once allowed
/// again the same identity's handshake completes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_peer_flooding_hellos_is_refused_and_holds_nothing() {
    run_case("refused peer flood", || async {
        let case = "refused peer flood";
        let secret = Secret::generate();
        let mut w = World::new(node_config(&secret)).await;
        let a = w.connected_abuser().await;
        let id_a = w.abusers[a].id;
        // A handshake answered before the refusal: its AUTH comes after it.
        let init = w.initiator(a, secret.expose());
        let ch = match w.expect_response(a, &init.hello()).await {
            Response::Challenge(c) => c,
            other => panic!("HELLO: {other:?}"),
        };
        let auth = init.on_challenge(&ch).expect("CHALLENGE acceptable").auth();
        w.node
            .behaviour_mut()
            .refuse_peer(id_a)
            .expect("room to refuse");
        w.expect_reject(a, &auth, RejectCode::Refused).await;

        let mut scripts = Vec::new();
        for _ in 0..1000 {
            let mut init = w.initiator(a, secret.expose());
            init.hs_id = random();
            scripts.push((a, Script::request(&init.hello())));
        }
        let flood = w
            .flood(scripts, 300, Some(Duration::from_millis(200)))
            .await;
        let mut refused = 0;
        for o in &flood.outcomes {
            let dropped = matches!(o.outcome, Outcome::Ended(_) | Outcome::OpenFailed(_));
            assert!(
                dropped || o.outcome.reject_code() == Some(RejectCode::Refused),
                "a refused peer's HELLO got {:?}",
                o.outcome
            );
            refused += usize::from(!dropped);
        }
        assert!(refused > 0, "no HELLO was answered at all");
        assert!(
            w.node.behaviour().session(&id_a).is_none(),
            "no session for a refused peer"
        );
        w.assert_bounded(case, bounds(1, 0));
        w.honest_roundtrip("after the refused peer's flood").await;

        // Allowed again (the user connects to it): the same identity gets in.
        assert!(w.node.behaviour_mut().allow_peer(&id_a));
        w.handshake(a).await;
        assert_eq!(
            w.node.behaviour().session(&id_a).map(|i| i.state),
            Some(SessionState::Active)
        );
        w.disconnect(a);
        w.back_to_baseline(Duration::from_secs(5)).await;
        w.finish(
            case,
            &[format!(
                "{} HELLOs from a refused peer: {refused} answered REFUSED, the rest dropped; {} \
                 ms; honest latencies during the flood (ms): {:?}",
                flood.outcomes.len(),
                flood.elapsed.as_millis(),
                flood
                    .honest
                    .iter()
                    .map(Duration::as_millis)
                    .collect::<Vec<_>>()
            )],
        );
    })
    .await;
}
