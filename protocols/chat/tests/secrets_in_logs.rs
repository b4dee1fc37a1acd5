//! No secret reaches the logs.
//!
//! A real node and the spec peer of the `noctua-spec-peer` crate (which computes every secret
//! itself) run a full session: handshake, messages both ways, a rotation driven by each side,
//! close. All `tracing` output of the process, libp2p's included and `log` records bridged,
//! is captured at TRACE level. Then every secret is looked for in the capture in every common
//! encoding, and in the `Debug` output of the configuration, the secret, the key pair and
//! every event the node emitted: the node's own RSA private key (`d`, the primes, `dp`, `dq`
//! as bytes, hex, decimal and base64, its PKCS#1 and PKCS#8 DER and PEM; learnt through the
//! debug-build hook `NOCTUA_INSECURE_TEST_KEY_DUMP`), the connection secret, `K_pw`, `Z`,
//! `K_conf`, the RSA-transported contributions and each rotation's `Z_e`, the keys of every
//! epoch, and the spec peer's own RSA private key. `tests/secrets_in_output.rs` does the same
//! for the binary's stdout, stderr and log file.

mod log_capture;

use std::time::Duration;

use libp2p_swarm_test::SwarmExt as _;
use noctua_chat::{CloseReason, Event, RsaKeyPair, Secret};
use noctua_spec_peer::leaks::*;
use noctua_spec_peer::*;

/// Generates the node's key with the debug-build hook on, and reads the private key back.
fn node_key_with_its_private_half() -> (RsaKeyPair, rsa::PrivateKey) {
    let dir = std::env::temp_dir().join(format!(
        "noctua-secrets-in-logs-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    // SAFETY: this test binary has this one test, which sets and removes the variable before
    // it starts any other thread (the runtime is single-threaded and nothing runs on it yet);
    // no other thread reads the environment meanwhile.
    unsafe { std::env::set_var("NOCTUA_INSECURE_TEST_KEY_DUMP", &dir) };
    let pair = RsaKeyPair::generate(2048).expect("keygen");
    unsafe { std::env::remove_var("NOCTUA_INSECURE_TEST_KEY_DUMP") };
    let files: Vec<_> = std::fs::read_dir(&dir)
        .expect("dump dir")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(
        files.len(),
        1,
        "the debug-build hook wrote the key: {files:?}"
    );
    let der = std::fs::read(&files[0]).expect("dumped key");
    std::fs::remove_dir_all(&dir).expect("remove temp dir");
    let private = rsa::pkcs8::DecodePrivateKey::from_pkcs8_der(&der).expect("PKCS#8 DER");
    let public =
        rsa::pkcs1::EncodeRsaPublicKey::to_pkcs1_der(&rsa::PrivateKey::to_public_key(&private))
            .expect("PKCS#1");
    assert_eq!(
        public.as_bytes(),
        pair.public_der(),
        "the dumped key is the node's"
    );
    (pair, private)
}

/// The node sends `text` to the spec peer, which acknowledges it; waits for the receipt.
async fn node_message_acked(hx: &mut Harness, s: &mut SpecSession, text: &str) {
    let spec_id = hx.spec_id;
    hx.behaviour().send_message(&spec_id, text).unwrap();
    let (_, answered) = hx.answer_next(s).await;
    assert!(
        matches!(answered.response, Response::Ack(_)),
        "{answered:?}"
    );
    hx.node_event(|e| matches!(e, Event::MessageDelivered { .. }).then_some(()))
        .await;
}

#[tokio::test]
async fn no_secret_reaches_the_logs() {
    assert!(
        log_capture::install("trace"),
        "the capturing subscriber could not be installed"
    );
    let (node_pair, node_private) = node_key_with_its_private_half();
    let node_pair = std::sync::Arc::new(node_pair);
    let start = log_capture::len();
    tokio::time::timeout(Duration::from_secs(30), async {
        let secret = Secret::generate();
        let config = node_config(secret.clone()).with_rsa_key(node_pair.clone());
        let config_debug = [format!("{config:?}"), format!("{config:#?}")];
        let mut hx = Harness::new(config).await;
        let spec_id = hx.spec_id;

        // Handshake, step by step.
        let init = hx.initiator(secret.expose());
        let ch = hx.expect_challenge(init.hello()).await;
        let sent = init.on_challenge(&ch).expect("CHALLENGE acceptable");
        let ok = hx.expect_auth_ok(sent.auth()).await;
        let mut s = sent.on_auth_ok(&ok).expect("AUTH_OK verifies");
        let confirm = s.confirmation();
        hx.send_acked(&s, confirm).await;
        hx.node_event(|e| matches!(e, Event::SessionEstablished { .. }).then_some(()))
            .await;
        let info_debug = format!("{:?}", hx.behaviour().session(&spec_id).expect("session"));

        // Messages both ways.
        let rec = s.chat(1, &["hello from the spec peer"]);
        hx.send_acked(&s, rec).await;
        node_message_acked(&mut hx, &mut s, "hello from the node").await;

        // A rotation driven by the spec peer (epoch 1) ...
        let init = s.rekey_init();
        let reply = hx.send_for_reply(init).await;
        let commit = s.rekey_commit(&reply).expect("REKEY_REPLY valid");
        let done = hx.send_for_reply(commit).await;
        s.rekey_done(&done).expect("REKEY_DONE valid");
        hx.node_event(|e| matches!(e, Event::SessionRotated { epoch: 1, .. }).then_some(()))
            .await;
        // ... and one by the node (epoch 2).
        hx.behaviour().rotate(&spec_id).expect("active");
        let (_, a1) = hx.answer_next(&mut s).await;
        assert!(matches!(a1.response, Response::Reply(_)), "{a1:?}");
        let (_, a2) = hx.answer_next(&mut s).await;
        assert!(matches!(a2.response, Response::Reply(_)), "{a2:?}");
        hx.node_event(|e| matches!(e, Event::SessionRotated { epoch: 2, .. }).then_some(()))
            .await;
        assert_eq!(s.epoch, 2);
        let rec = s.chat(2, &["in epoch 2"]);
        hx.send_acked(&s, rec).await;
        node_message_acked(&mut hx, &mut s, "node in epoch 2").await;
        // A wrong record, so that refusals are logged too.
        let bad = tampered(&s.chat(3, &["tampered"]));
        hx.expect_reject(Request::Record(bad), RejectCode::DecryptFailed)
            .await;
        // A message of the node's that we refuse: DeliveryFailed.
        hx.behaviour()
            .send_message(&spec_id, "to be refused")
            .unwrap();
        let (req, ch) = hx.next_inbound().await;
        assert!(matches!(req, Request::Record(_)), "{req:?}");
        hx.respond(
            ch,
            Response::Reject {
                code: RejectCode::Malformed,
                detail: 0,
            },
        );
        hx.node_event(|e| matches!(e, Event::DeliveryFailed { .. }).then_some(()))
            .await;
        // An open that cannot succeed: OpenFailed.
        hx.behaviour().connect(
            "/memory/999999".parse().expect("address"),
            Secret::generate(),
        );
        hx.node_event(|e| matches!(e, Event::OpenFailed { .. }).then_some(()))
            .await;

        // Close.
        hx.behaviour().close_session(&spec_id).expect("session");
        let (_, answered) = hx.answer_next(&mut s).await;
        assert!(
            matches!(answered.content, Some(Content::Close { .. })),
            "{answered:?}"
        );
        let reason = hx
            .node_event(|e| match e {
                Event::SessionClosed { reason, .. } => Some(reason.clone()),
                _ => None,
            })
            .await;
        assert_eq!(reason, CloseReason::LocalClosed);
        // A failed authentication (wrong secret) for good measure.
        let init = hx.initiator(Secret::generate().expose());
        let ch = hx.expect_challenge(init.hello()).await;
        let sent = init.on_challenge(&ch).unwrap();
        hx.expect_reject(sent.auth(), RejectCode::AuthFailed).await;
        hx.node_event(|e| matches!(e, Event::InboundAuthFailed { .. }).then_some(()))
            .await;
        // A secret changed while running (SPEC.md §4) and a handshake under the new one, then
        // the peer refused (§9): the new secret and that handshake's secrets are looked for
        // too.
        let new_secret = Secret::generate();
        hx.behaviour().set_secret(new_secret.clone());
        let mut s2 = hx.handshake(new_secret.expose()).await;
        hx.node_event(|e| matches!(e, Event::SessionEstablished { .. }).then_some(()))
            .await;
        hx.behaviour().close_session(&spec_id).unwrap();
        let (_, answered) = hx.answer_next(&mut s2).await;
        assert!(
            matches!(answered.content, Some(Content::Close { .. })),
            "{answered:?}"
        );
        hx.behaviour().refuse_peer(spec_id).unwrap();
        let init = hx.initiator(new_secret.expose());
        hx.expect_reject(init.hello(), RejectCode::Refused).await;

        let mut key_events = Vec::new();
        // The key events, from two more nodes: one generating its key, one that cannot.
        for (bits, wanted) in [(2048, "KeyReady"), (1234, "KeyGenerationFailed")] {
            let mut other = libp2p::Swarm::new_ephemeral_tokio(|kp| {
                noctua_chat::Behaviour::new(
                    kp.public().to_peer_id(),
                    noctua_chat::Config::new(secret.clone())
                        .with_rsa_bits(bits)
                        .with_rsa_regenerate_every(None),
                )
            });
            loop {
                let ev = futures::StreamExt::select_next_some(&mut other).await;
                if let libp2p::swarm::SwarmEvent::Behaviour(ev) = ev {
                    let shown = format!("{ev:?}");
                    let done = shown.starts_with(wanted);
                    key_events.push(shown);
                    if done {
                        break;
                    }
                }
            }
        }

        // ----- what the spec peer knows -----
        let mut secrets = vec![
            known("the connection secret (text)", secret.expose().as_bytes()),
            known("K_pw", &s.k_pw),
            known("Z of the handshake", &s.z),
            known("K_conf", &s.k_conf),
            known(
                "the new connection secret (text)",
                new_secret.expose().as_bytes(),
            ),
            known("K_pw of the new secret", &s2.k_pw),
            known("Z of the handshake under the new secret", &s2.z),
            known("K_conf of the handshake under the new secret", &s2.k_conf),
        ];
        for (i, c) in s2.contributions.iter().enumerate() {
            secrets.push(known(format!("contribution {i} under the new secret"), c));
        }
        assert_eq!(
            s.contributions.len(),
            8,
            "k_i, k_r, then k_a, k_b, Z_e of each rotation"
        );
        for (i, c) in s.contributions.iter().enumerate() {
            let name = match i {
                0 => "k_i".to_string(),
                1 => "k_r".to_string(),
                n => format!(
                    "{} of rotation {}",
                    ["k_a", "k_b", "Z_e"][(n - 2) % 3],
                    (n - 2) / 3 + 1
                ),
            };
            secrets.push(known(name, c));
        }
        let epochs: Vec<u32> = s.key_history.iter().map(|(e, _)| *e).collect();
        assert_eq!(epochs, [0, 1, 2]);
        for (e, k) in &s.key_history {
            for (part, bytes) in [
                ("chain", k.chain),
                ("key_i2r", k.key_i2r),
                ("key_r2i", k.key_r2i),
                ("ack_i", k.ack_i),
                ("ack_r", k.ack_r),
            ] {
                secrets.push(known(format!("epoch {e} {part}"), &bytes));
            }
        }
        secrets.extend(private_key_forms("the node's", &node_private));
        secrets.extend(private_key_forms("the spec peer's", &spec_rsa_key()));

        // ----- the capture is real -----
        let captured = log_capture::since(start);
        let lines = captured.lines().count();
        let has = |level: &str, needle: &str| {
            captured
                .lines()
                .any(|l| log_capture::level(l) == Some(level) && l.contains(needle))
        };
        assert!(
            lines > 100,
            "logging captured almost nothing ({lines} lines)"
        );
        assert!(
            has("TRACE", "libp2p"),
            "no TRACE line from libp2p was captured"
        );
        assert!(has("DEBUG", "noctua_chat"), "no DEBUG line from the node");
        assert!(
            has("INFO", "session established"),
            "no INFO line from the node"
        );
        assert!(
            has("DEBUG", "session rotated") && has("INFO", "session closed"),
            "the rotation and the close were logged"
        );
        assert!(
            captured.contains(&spec_id.to_string()),
            "peer ids appear in the capture"
        );
        // The detector finds a canary logged in each encoding.
        let canary = Known {
            name: "canary".into(),
            bytes: random::<64>().to_vec(),
            number: true,
        };
        let canary_start = log_capture::len();
        tracing::trace!("canary hex {}", hex_lower(&canary.bytes));
        tracing::debug!("canary debug {:?}", canary.bytes);
        tracing::info!("canary pretty {:#?}", &canary.bytes[..]);
        tracing::warn!("canary base64 {}", base64(&canary.bytes, STANDARD, false));
        tracing::error!("canary decimal {}", decimal(&canary.bytes));
        let pem: Vec<String> = base64(&canary.bytes, STANDARD, true)
            .as_bytes()
            .chunks(64)
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect();
        tracing::info!(
            "canary PEM\n-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----",
            pem.join("\n")
        );
        let canary_log = log_capture::since(canary_start);
        let hits = find(&canary, &canary_log, &strip_ws(&canary_log), None);
        for enc in [
            "lowercase hex",
            "Debug {:?}",
            "base64 standard, unpadded",
            "decimal",
            "base64 across line breaks (PEM)",
        ] {
            assert!(
                hits.iter().any(|h| h.contains(&format!("as {enc}:"))),
                "the detector misses a canary as {enc}: {hits:#?}\n{canary_log}"
            );
        }
        let pretty_start = canary_log.find("canary pretty").expect("logged");
        let pretty = &canary_log[pretty_start..];
        let pretty_hits = find(&canary, pretty, &strip_ws(pretty), None);
        assert!(
            pretty_hits.iter().any(|h| h.contains("as Debug {:?}")),
            "the detector misses a pretty-printed canary: {pretty_hits:#?}"
        );

        // ----- no secret in the logs -----
        let raw = log_capture::bytes_since(start);
        let text_no_ws = strip_ws(&captured);
        let mut leaks = Vec::new();
        for k in &secrets {
            leaks.extend(find(k, &captured, &text_no_ws, Some(&raw)));
        }

        // ----- nor in Debug output -----
        let mut debug_outputs: Vec<(String, String)> = vec![
            ("Config {:?}".into(), config_debug[0].clone()),
            ("Config {:#?}".into(), config_debug[1].clone()),
            ("Secret {:?}".into(), format!("{secret:?}")),
            ("Secret {:#?}".into(), format!("{secret:#?}")),
            ("RsaKeyPair {:?}".into(), format!("{node_pair:?}")),
            ("RsaKeyPair {:#?}".into(), format!("{node_pair:#?}")),
            ("SessionInfo {:?}".into(), info_debug),
        ];
        let own_key = RsaKeyPair::generate(2048).expect("keygen");
        debug_outputs.push(("a fresh RsaKeyPair {:#?}".into(), format!("{own_key:#?}")));
        for line in &hx.log {
            if let Some(ev) = line.strip_prefix("node: ") {
                debug_outputs.push(("Event {:?}".into(), ev.to_owned()));
            }
        }
        debug_outputs.extend(key_events.into_iter().map(|e| ("Event {:?}".into(), e)));
        let kinds: std::collections::BTreeSet<&str> = debug_outputs
            .iter()
            .filter(|(w, _)| w.starts_with("Event"))
            .map(|(_, d)| d.split([' ', '(', '{']).next().unwrap_or(""))
            .collect();
        for expected in [
            "SessionEstablished",
            "MessageReceived",
            "MessageDelivered",
            "SessionRotated",
            "SessionClosed",
            "InboundAuthFailed",
            "DeliveryFailed",
            "OpenFailed",
            "KeyReady",
            "KeyGenerationFailed",
        ] {
            assert!(
                kinds.contains(expected),
                "event {expected} checked: {kinds:?}"
            );
        }
        for (what, text) in &debug_outputs {
            for k in &secrets {
                for hit in find(k, text, &strip_ws(text), None) {
                    leaks.push(format!("{what}: {hit}"));
                }
            }
            if what.starts_with("Config")
                || what.starts_with("Secret")
                || what.contains("RsaKeyPair")
            {
                assert!(
                    !looks_like_key_material(text),
                    "{what} prints something that looks like key material: {text}"
                );
            }
        }
        eprintln!(
            "SECRETS: {} secrets x {} encodings looked for in {lines} captured lines \
             ({} bytes) and {} Debug outputs; {} hits",
            secrets.len(),
            encodings(&[0; 32]).len(),
            captured.len(),
            debug_outputs.len(),
            leaks.len()
        );
        assert!(leaks.is_empty(), "secrets leaked:\n{}", leaks.join("\n"));
    })
    .await
    .expect("the test did not finish within 30 s");
}
