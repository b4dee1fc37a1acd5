//! Writes the committed seed corpora under `fuzz/seeds/<target>/`: valid encodings of every
//! message made by the real encoders (`wire`), operation lists that run complete honest
//! handshakes, chats and rotations (`session`), and connection strings of every accepted
//! form (`connstr`).
//!
//! Run from `fuzz/`: `cargo run --example gen_seeds` (stable is fine). The output is
//! deterministic, so re-running it only rewrites the same files.

use std::fs;
use std::path::Path;

use noctua_chat::RejectCode;
use noctua_chat::wire::{
    self, Ack, Auth, AuthOk, Challenge, ChatMessage, Content, Hello, Record, Request, Response,
    Role,
};
use noctua_fuzz::session::{Op, encode};

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    fs::create_dir_all(dir).expect("create the seed directory");
    fs::write(dir.join(name), bytes).expect("write a seed");
}

fn frame(body: &[u8]) -> Vec<u8> {
    let mut f = (body.len() as u32).to_be_bytes().to_vec();
    f.extend_from_slice(body);
    f
}

fn record() -> Record {
    Record {
        session_id: [7; 16],
        epoch: 3,
        sender: Role::Responder,
        seq: 99,
        sealed: vec![0xa5; 40],
    }
}

fn wire_seeds(dir: &Path) {
    let requests = [
        (
            "hello",
            Request::Hello(Hello {
                version: wire::VERSION,
                hs_id: [1; 16],
                nonce: [2; 32],
                public_key: vec![0x30; 270],
                share: [6; 32],
            }),
        ),
        (
            "auth",
            Request::Auth(Auth {
                hs_id: [1; 16],
                wrapped: vec![4; 256],
                mac: [5; 32],
            }),
        ),
        ("record", Request::Record(record())),
        (
            "abort",
            Request::Abort {
                hs_id: [9; 16],
                code: 5,
            },
        ),
    ];
    for (name, req) in requests {
        let body = wire::encode_request(&req);
        write(dir, &format!("req-{name}"), &body);
        write(dir, &format!("frame-req-{name}"), &frame(&body));
    }
    let responses = [
        (
            "challenge",
            Response::Challenge(Challenge {
                hs_id: [1; 16],
                nonce: [2; 32],
                public_key: vec![0x30; 270],
                share: [6; 32],
            }),
        ),
        (
            "auth-ok",
            Response::AuthOk(AuthOk {
                hs_id: [1; 16],
                wrapped: vec![4; 256],
                mac: [5; 32],
                record: record(),
            }),
        ),
        (
            "ack",
            Response::Ack(Ack {
                session_id: [1; 16],
                epoch: 2,
                seq: 3,
                tag: [4; 16],
            }),
        ),
        ("reply", Response::Reply(record())),
        (
            "reject",
            Response::Reject {
                code: RejectCode::TooLarge,
                detail: 262_144,
            },
        ),
        ("done", Response::Done),
    ];
    for (name, resp) in responses {
        let body = wire::encode_response(&resp);
        write(dir, &format!("resp-{name}"), &body);
        write(dir, &format!("frame-resp-{name}"), &frame(&body));
    }
    let contents = [
        (
            "chat",
            Content::Chat(vec![
                ChatMessage {
                    id: 1,
                    sent_at_ms: 1_700_000_000_000,
                    private: false,
                    text: "Hello ?".into(),
                },
                ChatMessage {
                    id: 2,
                    sent_at_ms: 1_700_000_000_001,
                    private: true,
                    text: "olá, 世界".into(),
                },
            ]),
        ),
        (
            "profile",
            Content::Profile {
                name: "Alice".into(),
                lasting: true,
            },
        ),
        (
            "rekey-init",
            Content::RekeyInit {
                new_epoch: 1,
                nonce: [1; 32],
                public_key: vec![0x30; 270],
                share: [6; 32],
            },
        ),
        (
            "rekey-reply",
            Content::RekeyReply {
                new_epoch: 1,
                nonce: [1; 32],
                public_key: vec![0x30; 270],
                share: [6; 32],
                wrapped: vec![2; 256],
            },
        ),
        (
            "rekey-commit",
            Content::RekeyCommit {
                new_epoch: 1,
                wrapped: vec![2; 256],
            },
        ),
        ("rekey-done", Content::RekeyDone { new_epoch: 1 }),
        ("close", Content::Close { code: 100 }),
        ("ping", Content::Ping),
    ];
    for (name, c) in contents {
        write(dir, &format!("content-{name}"), &wire::encode_content(&c));
    }
}

fn session_seeds(dir: &Path) {
    use Op::*;
    let d = |n: usize| vec![Deliver { idx: 0 }; n];
    let chat = |side: u8, text: &str| Chat {
        side,
        count: 0,
        text: text.as_bytes().to_vec(),
    };
    // HELLO, CHALLENGE, AUTH, AUTH_OK, the initiator's PROFILE and its ACK.
    let handshake: Vec<Op> = [vec![Open { side: 0 }], d(6)].concat();
    // A rotation started by `side` and run to completion (INIT, REPLY, COMMIT, DONE).
    let rotation = |side: u8| [vec![Rotate { side }], d(4)].concat();

    let seeds: Vec<(&str, u8, Vec<Op>)> = vec![
        (
            "synthetic-chat",
            0b0000_0001,
            [
                vec![chat(0, "hi"), chat(1, "hello")],
                d(4),
                vec![Probe, Advance { step: 5, amount: 0 }],
                d(2),
            ]
            .concat(),
        ),
        (
            "handshake-chat",
            0b0000_0000,
            [
                handshake.clone(),
                vec![chat(0, "Hello ?"), chat(1, "yes")],
                d(4),
                vec![Probe],
            ]
            .concat(),
        ),
        (
            "handshake-rotate",
            0b0000_0000,
            [
                handshake.clone(),
                vec![chat(0, "before")],
                d(2),
                rotation(0),
                vec![Probe, chat(1, "after")],
                d(2),
            ]
            .concat(),
        ),
        (
            "handshake-crossing",
            0b0000_0000,
            [vec![OpenBoth], d(12), vec![Probe]].concat(),
        ),
        (
            // Both sides keep their private-key jobs pending (DESIGN-offload.md): R's AUTH
            // job gets a stale and a foreign result before its own, I's AUTH_OK job is
            // refused Busy (unwrapped inline), then a rotation whose REPLY and COMMIT jobs
            // are run by hand with a message sent while the COMMIT unwraps.
            "private-deferred",
            0b0000_0000,
            [
                vec![
                    Private {
                        side: 0,
                        idx: 0,
                        how: 0,
                    },
                    Private {
                        side: 1,
                        idx: 0,
                        how: 0,
                    },
                    Open { side: 0 },
                ],
                d(3),
                vec![
                    Private {
                        side: 1,
                        idx: 0,
                        how: 3,
                    },
                    Private {
                        side: 1,
                        idx: 0,
                        how: 4,
                    },
                    Private {
                        side: 1,
                        idx: 0,
                        how: 1,
                    },
                ],
                d(1),
                vec![Private {
                    side: 0,
                    idx: 0,
                    how: 2,
                }],
                d(2),
                vec![Rotate { side: 0 }],
                d(2),
                vec![Private {
                    side: 0,
                    idx: 0,
                    how: 1,
                }],
                d(1),
                vec![chat(0, "during")],
                d(1),
                vec![Private {
                    side: 1,
                    idx: 0,
                    how: 1,
                }],
                d(4),
                vec![Probe],
            ]
            .concat(),
        ),
        (
            "handshake-wrong-secret",
            0b1100_0000,
            [handshake.clone(), vec![Open { side: 0 }], d(6)].concat(),
        ),
        (
            "handshake-lost-then-timeout",
            0b0000_0000,
            vec![
                Open { side: 0 },
                Drop { idx: 0 },
                Advance { step: 4, amount: 0 },
                Open { side: 0 },
                Deliver { idx: 0 },
                Reconnect,
                Advance { step: 4, amount: 0 },
            ],
        ),
        (
            "synthetic-two-rotations",
            0b0000_0001,
            [
                rotation(1),
                vec![Advance { step: 3, amount: 0 }],
                rotation(0),
                vec![Probe],
            ]
            .concat(),
        ),
        (
            // Issue 12: R refuses I (its open is answered REFUSED), then allows it again.
            "handshake-refused-then-allowed",
            0b0000_0000,
            [
                vec![Refuse { side: 1 }, Open { side: 0 }],
                d(2),
                vec![Allow { side: 1 }],
                handshake.clone(),
                vec![chat(0, "let in"), Refuse { side: 1 }, chat(1, "still up")],
                d(4),
                vec![Probe],
            ]
            .concat(),
        ),
        (
            // R refuses I between CHALLENGE and AUTH: the AUTH is answered REFUSED.
            "handshake-refused-midway",
            0b0000_0000,
            [
                vec![Open { side: 0 }],
                d(2),
                vec![Refuse { side: 1 }],
                d(4),
                vec![Allow { side: 1 }],
                handshake.clone(),
                vec![Probe],
            ]
            .concat(),
        ),
        (
            // R takes a new secret while running: the session goes on; I's next open with
            // the old string fails; once I has the new string it gets in. Then a change
            // between CHALLENGE and AUTH.
            "handshake-new-secret",
            0b0000_0000,
            [
                handshake.clone(),
                vec![NewSecret { side: 1, pick: 1 }, chat(0, "after the change")],
                d(2),
                vec![Probe, Close { side: 0 }],
                d(6),
                vec![Open { side: 0 }],
                d(4),
                vec![NewSecret { side: 1, pick: 3 }, Open { side: 0 }],
                d(2),
                vec![NewSecret { side: 1, pick: 2 }],
                d(2),
                handshake.clone(),
                vec![Probe],
            ]
            .concat(),
        ),
        (
            "synthetic-simultaneous-rotation",
            0b0000_0001,
            [
                vec![Rotate { side: 0 }, Rotate { side: 1 }],
                d(8),
                vec![Probe],
            ]
            .concat(),
        ),
        (
            "synthetic-window-reorder",
            0b0000_0001,
            [
                vec![
                    chat(0, "a"),
                    Burst { side: 0, n: 70 },
                    chat(0, "b"),
                    DeliverCopy { idx: 1 },
                    Deliver { idx: 2 },
                    Deliver { idx: 0 },
                    DeliverCopy { idx: 0 },
                    Corrupt {
                        idx: 0,
                        pos: 40,
                        xor: 1,
                    },
                    Deliver { idx: 0 },
                ],
                d(4),
            ]
            .concat(),
        ),
        (
            "synthetic-grace-close",
            0b0001_1001,
            [
                vec![chat(0, "old"), Swap { a: 0, b: 0 }],
                rotation(1),
                vec![Advance { step: 6, amount: 0 }],
                d(3),
                vec![Fail { idx: 0, cause: 0 }, Close { side: 1 }],
                d(2),
                vec![Shutdown { side: 0 }],
                d(2),
            ]
            .concat(),
        ),
        (
            "forge-auth-ok",
            0b0000_0000,
            [
                vec![
                    Open { side: 0 },
                    ForgeAuthOk { bytes: vec![9] },
                    HostileHello {
                        to: 0,
                        key: 1,
                        fill: 0,
                    },
                ],
                d(4),
            ]
            .concat(),
        ),
        (
            "handshake-hostile",
            0b0000_0000,
            [
                vec![
                    Open { side: 0 },
                    Deliver { idx: 0 },
                    Deliver { idx: 0 },
                    ForgeAuth { bytes: vec![7] },
                    HostileHello {
                        to: 1,
                        key: 0,
                        fill: 3,
                    },
                    ForgeAuth { bytes: vec![1, 2] },
                    ForgeAuthOk { bytes: vec![9] },
                    Open { side: 0 },
                ],
                d(6),
                vec![
                    RawContent {
                        from: 0,
                        bytes: wire::encode_content(&Content::RekeyInit {
                            new_epoch: 1,
                            nonce: [3; 32],
                            public_key: vec![0],
                            share: [
                                7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                            ],
                        }),
                    },
                    RawPlain {
                        from: 1,
                        bytes: vec![0x01, 0, 0],
                    },
                    RawResponse {
                        to: 0,
                        ctx: 0,
                        bytes: wire::encode_response(&Response::Reject {
                            code: RejectCode::UnknownSession,
                            detail: 0,
                        }),
                    },
                ],
                d(4),
            ]
            .concat(),
        ),
    ];
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        // Seeds of an older input format would only mislead the fuzzer.
        let _ = fs::remove_file(entry.path());
    }
    for (name, setup, ops) in seeds {
        write(dir, name, &encode(setup, &ops));
    }
}

fn connstr_seeds(dir: &Path) {
    let strings = [
        "192.168.1.100:5000:xyw7z9AbC-d_EfGhIjKlMn",
        "[fe80::1]:5000:s3cr3t",
        "[::ffff:1.2.3.4]:1:s",
        "alice.local:5000:geheimnis-ä-密",
        "chat.example.com.:65535:p@ss/w0rd!#",
        "/ip4/1.2.3.4/tcp/5000:secret",
        "/ip6/fe80::1:2/udp/5000/quic-v1:abc",
        "/dns/alice.local/tcp/5000/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN:s",
        "fe80::1:5000:secret",
        "[1.2.3.4]:5000:s",
        "h:1:a\u{1b}b",
    ];
    for (i, s) in strings.iter().enumerate() {
        write(dir, &format!("connstr-{i:02}"), s.as_bytes());
    }
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
    wire_seeds(&root.join("wire"));
    session_seeds(&root.join("session"));
    connstr_seeds(&root.join("connstr"));
    println!("seeds written under {}", root.display());
}
