//! Two protocol cores wired back to back, no swarm: every request and answer goes through a
//! FIFO the test drives, on a virtual clock.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use libp2p::PeerId;
use libp2p::swarm::ConnectionId;

use super::{Action, ChannelToken, ReqToken};
use crate::config::Config;
use crate::crypto::Secret;
use crate::error::{CloseReason, OpenError};
use crate::offload::{self, JobError, PrivateJob};
use crate::peers::Peers;
use crate::test_keys::test_key;
use crate::types::Event;
use crate::wire::{Request, Response, Role};

const A: usize = 0;
const B: usize = 1;

enum Msg {
    Request {
        from: usize,
        token: ReqToken,
        request: Request,
    },
    Response {
        to: usize,
        token: ReqToken,
        response: Response,
    },
}

struct Net {
    nodes: [Peers; 2],
    ids: [PeerId; 2],
    secrets: [Secret; 2],
    now: Instant,
    wire: VecDeque<Msg>,
    events: [Vec<Event>; 2],
    /// (receiver, channel) -> (requester, its token).
    channels: HashMap<(usize, u64), (usize, ReqToken)>,
    next_channel: u64,
    next_open: u64,
    /// Private-key jobs a node with `hold_jobs` asked for, not yet run (the test runs them).
    jobs: [Vec<PrivateJob>; 2],
    /// Whether a node's private-key jobs wait in `jobs`; otherwise each runs as soon as it
    /// is asked for and its result is fed back in the same pump (as a pool that is never
    /// late would).
    hold_jobs: [bool; 2],
}

impl Net {
    fn new() -> Self {
        Self::with([PeerId::random(), PeerId::random()], false)
    }

    /// Two nodes with these ids; with `same_secret`, both hold one connection secret.
    fn with(ids: [PeerId; 2], same_secret: bool) -> Self {
        Self::configured(ids, same_secret, |_, c| c)
    }

    /// Like [`Net::with`], each node's configuration passed through `f(side, config)`.
    fn configured(
        ids: [PeerId; 2],
        same_secret: bool,
        f: impl Fn(usize, Config) -> Config,
    ) -> Self {
        let shared = Secret::generate();
        let secrets = if same_secret {
            [shared.clone(), shared]
        } else {
            [Secret::generate(), Secret::generate()]
        };
        let now = Instant::now();
        let node = |i: usize, name: &str| {
            let config = f(
                i,
                Config::new(secrets[i].clone())
                    .with_name(name)
                    .with_rsa_key(test_key(i)),
            );
            let key = config.rsa_key.clone();
            Peers::new(ids[i], config, key, now)
        };
        let nodes = [node(A, "alice"), node(B, "bob")];
        Net {
            nodes,
            ids,
            secrets,
            now,
            wire: VecDeque::new(),
            events: [Vec::new(), Vec::new()],
            channels: HashMap::new(),
            next_channel: 1,
            next_open: 100,
            jobs: [Vec::new(), Vec::new()],
            hold_jobs: [false, false],
        }
    }

    fn connect(&mut self) {
        for (side, conn) in [(A, 1), (B, 2)] {
            let peer = self.ids[1 - side];
            let c = ConnectionId::new_unchecked(conn);
            self.nodes[side].on_connection_established(peer, c, None, None, self.now);
        }
        self.pump();
    }

    /// Moves every action of both nodes onto the wire or into the event lists.
    fn pump(&mut self) {
        loop {
            let mut any = false;
            for side in [A, B] {
                self.nodes[side].flush_dirty(self.now);
                for action in self.nodes[side].take_actions() {
                    any = true;
                    match action {
                        Action::Send { token, request, .. } => self.wire.push_back(Msg::Request {
                            from: side,
                            token,
                            request,
                        }),
                        Action::Respond { channel, response } => {
                            if let Some((to, token)) = self.channels.remove(&(side, channel.0)) {
                                self.wire.push_back(Msg::Response {
                                    to,
                                    token,
                                    response,
                                });
                            }
                        }
                        Action::Event(e) => self.events[side].push(e),
                        Action::PrivateOp(job) if self.hold_jobs[side] => self.jobs[side].push(job),
                        Action::PrivateOp(job) => {
                            let result = offload::run(&job);
                            self.nodes[side].on_private_done(job.tag, result, self.now);
                        }
                        _ => {}
                    }
                }
            }
            if !any {
                return;
            }
        }
    }

    /// Delivers the next message on the wire; false if there was none.
    fn deliver_one(&mut self) -> bool {
        self.deliver_at(0)
    }

    /// Delivers the message at `index` on the wire; false if there is none.
    fn deliver_at(&mut self, index: usize) -> bool {
        let Some(msg) = self.wire.remove(index) else {
            return false;
        };
        match msg {
            Msg::Request {
                from,
                token,
                request,
            } => {
                let to = 1 - from;
                let channel = self.next_channel;
                self.next_channel += 1;
                self.channels.insert((to, channel), (from, token));
                let conn = ConnectionId::new_unchecked(1 + to);
                let peer = self.ids[from];
                self.nodes[to].on_request(peer, conn, request, ChannelToken(channel), self.now);
            }
            Msg::Response {
                to,
                token,
                response,
            } => self.nodes[to].on_response(token, response, self.now),
        }
        self.pump();
        true
    }

    fn run(&mut self) {
        self.pump();
        while self.deliver_one() {}
    }

    fn open(&mut self, side: usize) -> crate::types::OpenId {
        self.next_open += 1;
        let open = crate::types::OpenId(self.next_open);
        let (peer, secret) = (self.ids[1 - side], self.secrets[1 - side].clone());
        self.nodes[side].open(peer, open, secret, self.now);
        open
    }

    fn established(&self, side: usize) -> Vec<(Role, Vec<crate::types::OpenId>)> {
        self.events[side]
            .iter()
            .filter_map(|e| match e {
                Event::SessionEstablished { role, opens, .. } => Some((*role, opens.clone())),
                _ => None,
            })
            .collect()
    }

    fn session_id(&self, side: usize) -> Option<crate::types::SessionId> {
        let peer = self.ids[1 - side];
        self.nodes[side].session(&peer, self.now).map(|s| s.id)
    }

    fn establish(&mut self) {
        self.connect();
        self.open(A);
        self.run();
        assert_eq!(self.established(A).len(), 1);
        assert_eq!(self.established(B).len(), 1);
    }
}

#[test]
fn a_handshake_then_a_message_with_its_receipt() {
    let mut net = Net::new();
    net.connect();
    let open = net.open(A);
    net.run();
    assert_eq!(net.established(A), vec![(Role::Initiator, vec![open])]);
    assert_eq!(net.established(B), vec![(Role::Responder, vec![])]);
    assert_eq!(net.session_id(A), net.session_id(B));

    let id = net.nodes[A]
        .send_message(net.ids[B], "hello".into(), 7, net.now)
        .expect("queued");
    net.nodes[A]
        .send_chat(net.ids[B], "just you".into(), 8, true, net.now)
        .expect("queued");
    net.run();
    let received: Vec<_> = net.events[B]
        .iter()
        .filter_map(|e| match e {
            Event::MessageReceived {
                message,
                remote_name,
                ..
            } => Some((
                message.text.clone(),
                message.sent_at_ms,
                message.private,
                remote_name.clone(),
            )),
            _ => None,
        })
        .collect();
    assert_eq!(
        received,
        vec![
            ("hello".to_string(), 7, false, "alice".to_string()),
            ("just you".to_string(), 8, true, "alice".to_string())
        ]
    );
    assert!(
        net.events[A]
            .iter()
            .any(|e| matches!(e, Event::MessageDelivered { message, .. } if *message == id))
    );
    assert_eq!(net.nodes[A].state_counts().outbound_requests, 0);
}

#[test]
fn a_rotation_moves_both_sides_to_epoch_one_and_messages_still_flow() {
    let mut net = Net::new();
    net.establish();
    net.nodes[A].rotate(net.ids[B], net.now).expect("active");
    net.run();
    for side in [A, B] {
        assert!(
            net.events[side]
                .iter()
                .any(|e| matches!(e, Event::SessionRotated { epoch: 1, .. })),
            "side {side} did not rotate"
        );
        let peer = net.ids[1 - side];
        assert_eq!(
            net.nodes[side].session(&peer, net.now).map(|s| s.epoch),
            Some(1)
        );
    }
    net.nodes[B]
        .send_message(net.ids[A], "after".into(), 0, net.now)
        .expect("queued");
    net.run();
    assert!(
        net.events[A].iter().any(
            |e| matches!(e, Event::MessageReceived { message, .. } if message.text == "after")
        )
    );
}

#[test]
fn a_close_ends_the_session_on_both_sides() {
    let mut net = Net::new();
    net.establish();
    net.nodes[A]
        .close_session(net.ids[B], net.now)
        .expect("open");
    net.run();
    let closed = |side: usize| {
        net.events[side].iter().find_map(|e| match e {
            Event::SessionClosed { reason, .. } => Some(reason.clone()),
            _ => None,
        })
    };
    assert!(matches!(closed(A), Some(CloseReason::LocalClosed)));
    assert!(matches!(closed(B), Some(CloseReason::RemoteClosed(_))));
    for side in [A, B] {
        let counts = net.nodes[side].state_counts();
        assert_eq!((counts.sessions, counts.outbound_requests), (0, 0));
    }
}

/// Two ids, the smaller first.
fn ordered_ids() -> [PeerId; 2] {
    let mut ids = [PeerId::random(), PeerId::random()];
    ids.sort_by_key(|p| p.to_bytes());
    ids
}

/// The outcome of every open of `side`: `(open, Some(role of the session that answered))`,
/// or `None` for a failed one, with its error.
fn outcomes(net: &Net, side: usize) -> Vec<(crate::types::OpenId, Result<Role, OpenError>)> {
    net.events[side]
        .iter()
        .flat_map(|e| match e {
            Event::SessionEstablished { opens, role, .. } => {
                opens.iter().map(|o| (*o, Ok(*role))).collect()
            }
            Event::OpenFailed { open, error, .. } => vec![(*open, Err(error.clone()))],
            _ => Vec::new(),
        })
        .collect()
}

#[test]
fn crossing_handshakes_end_in_one_session_that_answers_both_opens() {
    // Both nodes hold the same secret: whichever session forms proves both opens' secret.
    let mut net = Net::with([PeerId::random(), PeerId::random()], true);
    net.connect();
    let open_a = net.open(A);
    let open_b = net.open(B);
    net.run();
    let (a, b) = (net.established(A), net.established(B));
    assert_eq!((a.len(), b.len()), (1, 1), "one session each: {a:?} {b:?}");
    assert_ne!(a[0].0, b[0].0, "one initiator, one responder");
    let mut opens: Vec<_> = a[0].1.iter().chain(&b[0].1).copied().collect();
    opens.sort();
    assert_eq!(opens, vec![open_a, open_b]);
    assert!(net.session_id(A).is_some());
    assert_eq!(net.session_id(A), net.session_id(B));
}

#[test]
fn an_unanswered_open_times_out_on_the_virtual_clock() {
    let mut net = Net::new();
    net.connect();
    let open = net.open(A);
    net.pump();
    // The HELLO is lost: B never hears of the open.
    net.wire.clear();
    let timeout = net.nodes[A].config().handshake_timeout;
    net.now += timeout - Duration::from_millis(1);
    net.nodes[A].on_tick(net.now, &|_| true);
    net.pump();
    assert!(
        !net.events[A]
            .iter()
            .any(|e| matches!(e, Event::OpenFailed { .. })),
        "failed before its deadline"
    );
    net.now += Duration::from_millis(1);
    net.nodes[A].on_tick(net.now, &|_| true);
    net.pump();
    let failed: Vec<_> = net.events[A]
        .iter()
        .filter_map(|e| match e {
            Event::OpenFailed { open, error, .. } => Some((*open, error.clone())),
            _ => None,
        })
        .collect();
    assert!(matches!(failed.as_slice(), [(o, OpenError::Timeout)] if *o == open));
    assert_eq!(net.nodes[A].state_counts().handshakes, 0);
}

#[test]
fn an_open_with_a_wrong_secret_fails_and_the_peer_reports_it() {
    let mut net = Net::new();
    net.connect();
    let open = crate::types::OpenId(7);
    let wrong = Secret::generate();
    net.nodes[A].open(net.ids[B], open, wrong, net.now);
    net.run();
    assert!(net.events[A].iter().any(|e| matches!(
        e,
        Event::OpenFailed { open: o, error: OpenError::WrongSecret, .. } if *o == open
    )));
    assert!(
        net.events[B]
            .iter()
            .any(|e| matches!(e, Event::InboundAuthFailed { .. }))
    );
    assert!(net.session_id(A).is_none() && net.session_id(B).is_none());
}

#[test]
fn an_open_made_while_the_old_session_closes_is_answered_by_the_new_one() {
    // Found by the session fuzzer ("no open waits forever"): the old session's goodbye
    // completing used to take the new handshake's opens with it, unreported.
    let mut net = Net::new();
    net.establish();
    net.nodes[A]
        .close_session(net.ids[B], net.now)
        .expect("open");
    net.pump();
    let open = net.open(A);
    net.run();
    let outcomes: Vec<_> = net.events[A]
        .iter()
        .filter_map(|e| match e {
            Event::SessionEstablished { opens, .. } if opens.contains(&open) => Some("established"),
            Event::OpenFailed { open: o, .. } if *o == open => Some("failed"),
            _ => None,
        })
        .collect();
    assert_eq!(outcomes, vec!["established"]);
    assert_eq!(net.session_id(A), net.session_id(B));
}

/// Issue 10 item 1: handshakes cross, each side opening with the *other's* secret (two
/// users connecting to each other at once). The session the winner of the tie-break opens
/// proves only the loser's own secret, so it must not answer the loser's open: the loser
/// runs its own handshake next, and each open is answered by a session it initiated (the
/// only kind in which the peer proved the open's secret). Both orders of the tie-break.
#[test]
fn crossing_opens_with_different_secrets_are_each_proved_by_their_own_handshake() {
    for ids in [ordered_ids(), {
        let [a, b] = ordered_ids();
        [b, a]
    }] {
        let mut net = Net::with(ids, false);
        net.connect();
        let open_a = net.open(A);
        let open_b = net.open(B);
        net.run();
        assert_eq!(outcomes(&net, A), vec![(open_a, Ok(Role::Initiator))]);
        assert_eq!(outcomes(&net, B), vec![(open_b, Ok(Role::Initiator))]);
        assert!(net.session_id(A).is_some());
        assert_eq!(
            net.session_id(A),
            net.session_id(B),
            "they end in one session"
        );
        for side in [A, B] {
            assert_eq!(net.nodes[side].state_counts().handshakes, 0);
        }
    }
}

/// Issue 10 item 1, the attack: B knows A's secret (A gives it to everyone she invites)
/// but not the secret A uses to open towards B's address. Whatever the tie-break, A's open
/// never completes: B's crossing session proves only A's own secret, and A's own
/// handshake then fails because B cannot prove the secret A gave.
#[test]
fn a_crossing_session_that_proves_only_our_secret_never_answers_our_open() {
    for ids in [ordered_ids(), {
        let [a, b] = ordered_ids();
        [b, a]
    }] {
        let mut net = Net::with(ids, false);
        net.connect();
        let open_a = crate::types::OpenId(1);
        let unknown_to_b = Secret::generate();
        net.nodes[A].open(net.ids[B], open_a, unknown_to_b, net.now);
        let open_b = net.open(B);
        net.run();
        let a = outcomes(&net, A);
        assert!(
            matches!(a.as_slice(), [(o, Err(_))] if *o == open_a),
            "A's open must fail: {a:?}"
        );
        assert_eq!(outcomes(&net, B), vec![(open_b, Ok(Role::Initiator))]);
    }
}

/// SPEC.md §5.7.2: a `HANDSHAKE_CONFLICT` claim is checked. From a larger `PeerId` (which
/// cannot win the tie-break) the open fails at once; from a smaller one whose own
/// handshake never follows, the open fails at the deadline instead of waiting forever.
#[test]
fn a_handshake_conflict_claim_without_a_crossing_handshake_fails_the_open() {
    for b_is_smaller in [false, true] {
        let [small, large] = ordered_ids();
        let ids = if b_is_smaller {
            [large, small]
        } else {
            [small, large]
        };
        let mut net = Net::with(ids, false);
        net.connect();
        let open = net.open(A);
        net.pump();
        let Some(Msg::Request { token, .. }) = net.wire.pop_front() else {
            panic!("A sent no HELLO");
        };
        assert!(net.wire.is_empty());
        let conflict = Response::Reject {
            code: crate::error::RejectCode::HandshakeConflict,
            detail: 0,
        };
        net.nodes[A].on_response(token, conflict, net.now);
        net.pump();
        let failed = |net: &Net| {
            outcomes(net, A)
                .iter()
                .any(|(o, r)| *o == open && *r == Err(OpenError::NotProven))
        };
        if !b_is_smaller {
            assert!(failed(&net), "a false claim fails the open at once");
            continue;
        }
        assert!(outcomes(&net, A).is_empty(), "waits for B's handshake");
        let timeout = net.nodes[A].config().handshake_timeout;
        net.now += timeout;
        net.nodes[A].on_tick(net.now, &|_| true);
        net.pump();
        assert!(failed(&net), "{:?}", outcomes(&net, A));
        assert_eq!(outcomes(&net, A).len(), 1);
    }
}

/// Issue 10 item 6: an `ABORT` naming another (older) handshake must not drop the
/// unconfirmed session a newer handshake produced (SPEC.md §5.4).
#[test]
fn an_abort_for_another_handshake_leaves_the_unconfirmed_session_alone() {
    let mut net = Net::new();
    net.connect();
    let open = net.open(A);
    net.pump();
    while net.session_id(B).is_none() {
        assert!(net.deliver_one(), "B never got to AUTH_OK");
    }
    let stale = Request::Abort {
        hs_id: [0xAB; crate::wire::HS_ID_LEN],
        code: crate::error::RejectCode::Shutdown.to_u16(),
    };
    let conn = ConnectionId::new_unchecked(1 + B);
    net.nodes[B].on_request(net.ids[A], conn, stale, ChannelToken(u64::MAX), net.now);
    net.run();
    assert_eq!(outcomes(&net, A), vec![(open, Ok(Role::Initiator))]);
    assert_eq!(net.established(B), vec![(Role::Responder, vec![])]);
    assert_eq!(net.session_id(A), net.session_id(B));
}

/// The outcome of `side`'s open `open`, if it ended. (`OpenError` is large since
/// `WrongPeer` carries two `PeerId`s; it travels in events, never on a hot path.)
#[allow(clippy::result_large_err)]
fn open_outcome(
    net: &Net,
    side: usize,
    open: crate::types::OpenId,
) -> Option<Result<Role, OpenError>> {
    outcomes(net, side)
        .into_iter()
        .find(|(o, _)| *o == open)
        .map(|(_, r)| r)
}

#[test]
fn a_hello_with_an_identity_share_is_refused_as_bad_key_and_leaves_nothing() {
    let mut net = Net::new();
    net.connect();
    let open = net.open(A);
    net.pump();
    let Some(Msg::Request {
        request: Request::Hello(hello),
        ..
    }) = net.wire.front_mut()
    else {
        panic!("A sends HELLO first")
    };
    hello.share = [0; 32];
    net.deliver_one();
    let Some(Msg::Response {
        response: Response::Reject { code, .. },
        ..
    }) = net.wire.front()
    else {
        panic!("B refuses the HELLO")
    };
    assert_eq!(*code, crate::error::RejectCode::BadKey);
    assert_eq!(net.nodes[B].state_counts().handshakes, 0);
    net.run();
    assert!(matches!(
        open_outcome(&net, A, open),
        Some(Err(OpenError::Rejected(crate::error::RejectCode::BadKey)))
    ));
    assert!(net.established(B).is_empty());
}

#[test]
fn a_challenge_with_a_bad_share_fails_the_open_and_aborts_the_responders_handshake() {
    for bad in [[0u8; 32], [0xff; 32]] {
        let mut net = Net::new();
        net.connect();
        let open = net.open(A);
        net.pump();
        net.deliver_one(); // HELLO -> B, CHALLENGE on the wire
        assert_eq!(net.nodes[B].state_counts().handshakes, 1);
        let Some(Msg::Response {
            response: Response::Challenge(ch),
            ..
        }) = net.wire.front_mut()
        else {
            panic!("B answers with a CHALLENGE")
        };
        ch.share = bad;
        net.deliver_one(); // the CHALLENGE -> A
        assert!(matches!(
            open_outcome(&net, A, open),
            Some(Err(OpenError::Protocol(_)))
        ));
        let Some(Msg::Request {
            request: Request::Abort { code, .. },
            ..
        }) = net.wire.front()
        else {
            panic!("A aborts the handshake")
        };
        assert_eq!(*code, crate::error::RejectCode::BadKey.to_u16());
        net.run();
        assert_eq!(net.nodes[B].state_counts().handshakes, 0);
        assert!(net.established(A).is_empty() && net.established(B).is_empty());
    }
}

#[test]
fn an_auth_failed_for_an_abandoned_handshake_fails_the_opens_with_that_secret_at_once() {
    // A (the larger PeerId) opens B with a wrong secret; its AUTH is in flight when a HELLO
    // of B's arrives (crossing): A yields. B's answer to the abandoned AUTH, AUTH_FAILED,
    // still proves the open's secret wrong: the open fails now, instead of waiting for B's
    // handshake and then trying the wrong secret again.
    let mut ids = ordered_ids();
    ids.reverse();
    let mut net = Net::with(ids, false);
    net.secrets[B] = Secret::new("not-what-B-holds").unwrap();
    net.connect();
    let open = net.open(A);
    net.pump();
    net.deliver_one(); // HELLO -> B
    net.deliver_one(); // CHALLENGE -> A; A's AUTH is now on the wire
    assert!(matches!(
        net.wire.front(),
        Some(Msg::Request {
            request: Request::Auth(_),
            ..
        })
    ));
    // B's crossing HELLO (made by hand: B's own machine waits while it answers A's).
    let (_, hello) = crate::handshake::Initiator::start(
        net.ids[B],
        net.ids[A],
        test_key(B),
        &net.secrets[A].auth_key(),
    );
    let conn = ConnectionId::new_unchecked(1 + A);
    net.nodes[A].on_request(
        net.ids[B],
        conn,
        Request::Hello(hello),
        ChannelToken(9999),
        net.now,
    );
    net.pump();
    assert_eq!(open_outcome(&net, A, open), None, "the open waits");
    net.deliver_one(); // A's AUTH -> B: AUTH_FAILED on the wire
    net.deliver_one(); // AUTH_FAILED -> A
    assert!(matches!(
        open_outcome(&net, A, open),
        Some(Err(OpenError::WrongSecret))
    ));
}

/// Takes our request off the wire (it was lost with its connection) and returns its token.
fn lose_request(net: &mut Net, side: usize) -> ReqToken {
    let at = net
        .wire
        .iter()
        .position(|m| matches!(m, Msg::Request { from, .. } if *from == side))
        .expect("a request on the wire");
    match net.wire.remove(at) {
        Some(Msg::Request { token, .. }) => token,
        _ => unreachable!(),
    }
}

#[test]
fn a_handshake_lost_with_one_of_two_connections_starts_again_on_the_other_once() {
    use super::context::{Failure, FailureKind};
    let closed = || Failure {
        kind: FailureKind::ConnectionClosed,
        text: "connection closed".into(),
    };
    let mut net = Net::new();
    net.connect();
    let peer_b = net.ids[B];
    // A second connection (two crossing dials), then the first one closes while our HELLO
    // is on it.
    let second = ConnectionId::new_unchecked(3);
    net.nodes[A].on_connection_established(peer_b, second, None, None, net.now);
    let open = net.open(A);
    net.pump();
    let token = lose_request(&mut net, A);
    net.nodes[A].on_connection_closed(peer_b, ConnectionId::new_unchecked(1), 1, net.now);
    net.nodes[A].on_outbound_failure(token, closed(), net.now);
    net.pump();
    assert!(
        !net.events[A]
            .iter()
            .any(|e| matches!(e, Event::OpenFailed { .. })),
        "the open failed although a connection was up"
    );
    assert!(
        matches!(
            net.wire.back(),
            Some(Msg::Request {
                from: A,
                request: crate::wire::Request::Hello(_),
                ..
            })
        ),
        "no new HELLO"
    );
    // The restarted handshake completes...
    net.run();
    assert_eq!(net.established(A), vec![(Role::Initiator, vec![open])]);

    // ...but it is restarted once only: a second loss fails the open.
    let mut net = Net::new();
    net.connect();
    net.nodes[A].on_connection_established(peer_b, second, None, None, net.now);
    let open = net.open(A);
    for _ in 0..2 {
        net.pump();
        let token = lose_request(&mut net, A);
        net.nodes[A].on_outbound_failure(token, closed(), net.now);
    }
    net.pump();
    assert!(net.events[A].iter().any(|e| matches!(
        e,
        Event::OpenFailed { open: o, error: OpenError::ConnectionClosed, .. } if *o == open
    )));
}

// ---------------------------------------------------------------------------------------
// Issue 12: lasting identities, refusing a peer, a new secret while running.
// ---------------------------------------------------------------------------------------

/// `(safety number, lasts, remote_lasting)` of each `SessionEstablished` of `side`.
fn numbers(net: &Net, side: usize) -> Vec<(String, bool, bool)> {
    net.events[side]
        .iter()
        .filter_map(|e| match e {
            Event::SessionEstablished {
                safety_number,
                safety_number_lasts,
                remote_lasting,
                ..
            } => Some((
                safety_number.to_string(),
                *safety_number_lasts,
                *remote_lasting,
            )),
            _ => None,
        })
        .collect()
}

fn open_failures(net: &Net, side: usize) -> Vec<OpenError> {
    net.events[side]
        .iter()
        .filter_map(|e| match e {
            Event::OpenFailed { error, .. } => Some(error.clone()),
            _ => None,
        })
        .collect()
}

/// Closes the session `A` holds with `B` and runs until both sides forgot it.
fn close_from_a(net: &mut Net) {
    net.nodes[A]
        .close_session(net.ids[B], net.now)
        .expect("a session");
    net.run();
    assert!(net.session_id(A).is_none() && net.session_id(B).is_none());
}

#[test]
fn two_lasting_identities_show_the_identity_number_in_every_session() {
    let mut net = Net::configured([PeerId::random(), PeerId::random()], false, |_, c| {
        c.with_lasting_identity(true)
    });
    net.establish();
    close_from_a(&mut net);
    // The second session is opened by the other side: roles swap, the number does not.
    net.nodes[B].open(
        net.ids[A],
        crate::types::OpenId(9),
        net.secrets[A].clone(),
        net.now,
    );
    net.run();
    let identity = crate::crypto::SafetyNumber::from_identities(&net.ids[A], &net.ids[B]);
    for side in [A, B] {
        let n = numbers(&net, side);
        assert_eq!(n.len(), 2, "two sessions on side {side}");
        for (number, lasts, remote_lasting) in n {
            assert_eq!(number, identity.to_string(), "side {side}");
            assert!(lasts && remote_lasting, "side {side}");
        }
        let info = net.nodes[side]
            .session(&net.ids[1 - side], net.now)
            .expect("the second session");
        assert!(info.safety_number_lasts && info.remote_lasting);
        assert_eq!(info.safety_number, identity);
    }
}

#[test]
fn one_ephemeral_side_keeps_the_per_session_number() {
    // A lasts, B does not: each side says what the other claimed, and the number is the
    // session's own (a new one for the next session).
    let mut net = Net::configured([PeerId::random(), PeerId::random()], false, |side, c| {
        c.with_lasting_identity(side == A)
    });
    net.establish();
    close_from_a(&mut net);
    net.open(A);
    net.run();
    let identity = crate::crypto::SafetyNumber::from_identities(&net.ids[A], &net.ids[B]);
    let (a, b) = (numbers(&net, A), numbers(&net, B));
    assert_eq!((a.len(), b.len()), (2, 2));
    for i in 0..2 {
        assert_eq!(a[i].0, b[i].0, "both ends of session {i} agree");
        assert_ne!(a[i].0, identity.to_string());
        assert_eq!((a[i].1, a[i].2), (false, false), "A: B is ephemeral");
        assert_eq!((b[i].1, b[i].2), (false, true), "B: A lasts");
    }
    assert_ne!(a[0].0, a[1].0, "per session");
}

#[test]
fn a_refused_peer_is_answered_refused_until_it_is_allowed_again() {
    let mut net = Net::new();
    net.connect();
    net.nodes[B].refuse_peer(net.ids[A], net.now).expect("room");
    assert!(net.nodes[B].is_refused(&net.ids[A]));
    net.open(A);
    net.run();
    assert_eq!(open_failures(&net, A), vec![OpenError::Refused]);
    assert!(net.established(B).is_empty());
    let counts = net.nodes[B].state_counts();
    assert_eq!((counts.sessions, counts.handshakes), (0, 0));
    // No failed authentication was counted against the refused peer: REFUSED comes first.
    assert!(
        !net.events[B]
            .iter()
            .any(|e| matches!(e, Event::InboundAuthFailed { .. }))
    );
    assert!(net.nodes[B].allow_peer(&net.ids[A]));
    assert!(!net.nodes[B].allow_peer(&net.ids[A]), "allowed once");
    net.open(A);
    net.run();
    assert_eq!(net.established(A).len(), 1);
    assert_eq!(net.session_id(A), net.session_id(B));
}

#[test]
fn refusing_drops_the_peers_handshake_in_progress() {
    let mut net = Net::new();
    net.connect();
    net.open(A);
    net.pump();
    assert!(net.deliver_one(), "HELLO");
    assert!(net.deliver_one(), "CHALLENGE; the AUTH is on the wire");
    assert_eq!(net.nodes[B].state_counts().handshakes, 1);
    net.nodes[B].refuse_peer(net.ids[A], net.now).expect("room");
    assert_eq!(net.nodes[B].state_counts().handshakes, 0);
    net.run();
    assert_eq!(open_failures(&net, A), vec![OpenError::Refused]);
    assert!(net.session_id(A).is_none() && net.session_id(B).is_none());
}

#[test]
fn refusing_leaves_an_established_session_and_fails_our_own_opens() {
    let mut net = Net::new();
    net.establish();
    net.nodes[B].refuse_peer(net.ids[A], net.now).expect("room");
    // The session goes on (the node closes it first if it wants it gone).
    let id = net.nodes[A]
        .send_message(net.ids[B], "still here".into(), 0, net.now)
        .expect("queued");
    net.run();
    assert!(
        net.events[A]
            .iter()
            .any(|e| matches!(e, Event::MessageDelivered { message, .. } if *message == id))
    );
    // Our own open towards the refused peer fails locally, and its new handshake (a
    // HELLO that would replace the session) is answered REFUSED.
    net.nodes[B].open(
        net.ids[A],
        crate::types::OpenId(5),
        net.secrets[A].clone(),
        net.now,
    );
    net.pump();
    assert_eq!(open_failures(&net, B), vec![OpenError::RefusedHere]);
    close_from_a(&mut net);
    net.open(A);
    net.run();
    assert_eq!(open_failures(&net, A), vec![OpenError::Refused]);
}

#[test]
fn the_refused_set_is_bounded() {
    let mut net = Net::configured([PeerId::random(), PeerId::random()], false, |_, c| {
        c.with_max_refused_peers(2)
    });
    let (p, q, r) = (PeerId::random(), PeerId::random(), PeerId::random());
    let node = &mut net.nodes[A];
    assert_eq!(node.refuse_peer(p, net.now), Ok(()));
    assert_eq!(node.refuse_peer(q, net.now), Ok(()));
    assert_eq!(node.refuse_peer(p, net.now), Ok(()), "already refused");
    assert_eq!(
        node.refuse_peer(r, net.now),
        Err(crate::error::RefuseError::Full { max: 2 })
    );
    assert!(!node.is_refused(&r));
    node.allow_peer(&p);
    assert_eq!(node.refuse_peer(r, net.now), Ok(()));
    assert_eq!(
        node.state_counts().peers,
        0,
        "refusing creates no peer state"
    );
}

#[test]
fn a_new_secret_keeps_the_session_and_refuses_the_old_one() {
    let mut net = Net::new();
    net.establish();
    let old = net.secrets[B].clone();
    let new = Secret::generate();
    net.nodes[B].set_secret(new.clone(), net.now);
    assert_eq!(net.nodes[B].config().secret().expose(), new.expose());
    let id = net.nodes[A]
        .send_message(net.ids[B], "after the change".into(), 0, net.now)
        .expect("queued");
    net.run();
    assert!(
        net.events[A]
            .iter()
            .any(|e| matches!(e, Event::MessageDelivered { message, .. } if *message == id)),
        "the session keeps chatting"
    );
    close_from_a(&mut net);
    net.nodes[A].open(net.ids[B], crate::types::OpenId(1), old, net.now);
    net.run();
    assert_eq!(open_failures(&net, A), vec![OpenError::WrongSecret]);
    net.nodes[A].open(net.ids[B], crate::types::OpenId(2), new, net.now);
    net.run();
    assert_eq!(net.established(A).len(), 2);
    assert_eq!(net.session_id(A), net.session_id(B));
}

#[test]
fn a_handshake_pending_under_the_old_secret_is_discarded() {
    let mut net = Net::new();
    net.connect();
    net.open(A);
    net.pump();
    assert!(net.deliver_one(), "HELLO");
    assert!(net.deliver_one(), "CHALLENGE; the AUTH is on the wire");
    net.nodes[B].set_secret(Secret::generate(), net.now);
    assert_eq!(net.nodes[B].state_counts().handshakes, 0);
    net.run();
    assert_eq!(
        open_failures(&net, A),
        vec![OpenError::Rejected(
            crate::error::RejectCode::UnknownHandshake
        )]
    );
    // Nothing counted as a failed authentication: the AUTH never met the new secret.
    assert!(
        !net.events[B]
            .iter()
            .any(|e| matches!(e, Event::InboundAuthFailed { .. }))
    );
}

/// A net whose responder B runs its private-key work through `Net::jobs` (DESIGN-offload.md),
/// and whose A works inline.
fn offloading_net() -> Net {
    let mut net = Net::configured([PeerId::random(), PeerId::random()], false, |side, c| {
        c.with_private_offload(side == B)
    });
    net.hold_jobs[B] = true;
    net
}

/// Runs B's `i`-th held job and feeds its result back.
fn finish_job(net: &mut Net, job: PrivateJob) {
    let result = offload::run(&job);
    net.nodes[B].on_private_done(job.tag, result, net.now);
    net.run();
}

#[test]
fn an_offloaded_auth_completes_when_its_result_comes_back() {
    let mut net = offloading_net();
    net.connect();
    net.open(A);
    net.run();
    // B verified the proof and asked for its private key: no answer to AUTH yet.
    assert_eq!(net.jobs[B].len(), 1);
    assert!(net.established(A).is_empty() && net.established(B).is_empty());
    assert_eq!(net.nodes[B].state_counts().handshakes, 1);
    let job = net.jobs[B].pop().unwrap();
    finish_job(&mut net, job);
    assert_eq!(net.established(A).len(), 1);
    assert_eq!(net.established(B).len(), 1);
    assert_eq!(net.session_id(A), net.session_id(B));
}

#[test]
fn a_private_key_result_for_a_replaced_handshake_is_dropped() {
    let mut net = offloading_net();
    net.connect();
    net.open(A);
    net.run();
    let stale = net.jobs[B].pop().expect("first job");
    // A's handshake times out and A opens again: B answers the new HELLO, which replaces
    // the handshake waiting for the private key, and asks for a second job.
    let timeout = net.nodes[A].config().handshake_timeout;
    net.now += timeout;
    net.nodes[A].on_tick(net.now, &|_| true);
    net.nodes[B].on_tick(net.now, &|_| true);
    net.run();
    net.open(A);
    net.run();
    let fresh = net.jobs[B].pop().expect("second job");
    assert_ne!(stale.tag.seq, fresh.tag.seq);
    // The old result arrives now: nothing happens (no AUTH_OK, no session, no event).
    let events_before = net.events[B].len();
    finish_job(&mut net, stale);
    assert!(net.established(A).is_empty() && net.established(B).is_empty());
    assert_eq!(net.events[B].len(), events_before);
    assert_eq!(
        net.nodes[B].state_counts().handshakes,
        1,
        "the new handshake waits on"
    );
    // The current one completes.
    finish_job(&mut net, fresh);
    assert_eq!(net.established(A).len(), 1);
    assert_eq!(net.established(B).len(), 1);
}

#[test]
fn a_private_key_result_after_the_deadline_is_dropped() {
    let mut net = offloading_net();
    net.connect();
    net.open(A);
    net.run();
    let job = net.jobs[B].pop().unwrap();
    net.now += net.nodes[B].config().handshake_timeout;
    net.nodes[B].on_tick(net.now, &|_| true);
    net.run();
    assert_eq!(net.nodes[B].state_counts().handshakes, 0);
    finish_job(&mut net, job);
    assert!(net.established(B).is_empty());
}

#[test]
fn a_full_private_key_queue_answers_busy() {
    let mut net = offloading_net();
    net.connect();
    let open = net.open(A);
    net.run();
    let job = net.jobs[B].pop().unwrap();
    net.nodes[B].on_private_done(job.tag, Err(JobError::Busy), net.now);
    net.run();
    assert!(net.established(B).is_empty());
    assert_eq!(net.nodes[B].state_counts().handshakes, 0);
    // Busy is our load, not the peer's doing: A's open is refused as busy, nothing counted
    // against A on B.
    let failed: Vec<_> = outcomes(&net, A)
        .into_iter()
        .filter(|(o, _)| *o == open)
        .collect();
    assert!(
        matches!(failed.as_slice(), [(_, Err(OpenError::Busy))]),
        "{failed:?}"
    );
}

#[test]
fn an_offloaded_rekey_commit_installs_the_epoch_when_its_result_comes_back() {
    let mut net = offloading_net();
    net.establish_offloaded();
    // A rotates; B (the offloading side) replies, then holds A's REKEY_COMMIT for its key.
    net.nodes[A].rotate(net.ids[B], net.now).expect("active");
    net.run();
    let job = net.jobs[B].pop().expect("REKEY_COMMIT job");
    assert!(matches!(
        job.tag.purpose,
        offload::Purpose::Rotation { epoch: 1, .. }
    ));
    assert!(
        !net.events[B]
            .iter()
            .any(|e| matches!(e, Event::SessionRotated { .. }))
    );
    finish_job(&mut net, job);
    for side in [A, B] {
        let peer = net.ids[1 - side];
        assert_eq!(
            net.nodes[side].session(&peer, net.now).map(|s| s.epoch),
            Some(1),
            "side {side}"
        );
    }
}

#[test]
fn a_rekey_result_with_another_job_number_is_dropped() {
    let mut net = offloading_net();
    net.establish_offloaded();
    net.nodes[A].rotate(net.ids[B], net.now).expect("active");
    net.run();
    let mut job = net.jobs[B].pop().expect("REKEY_COMMIT job");
    let right = job.tag.seq;
    job.tag.seq = right + 1000; // a result for a job this rotation never asked for
    let stale = offload::run(&job);
    net.nodes[B].on_private_done(job.tag, stale, net.now);
    net.run();
    let peer = net.ids[A];
    assert_eq!(
        net.nodes[B].session(&peer, net.now).map(|s| s.epoch),
        Some(0)
    );
    job.tag.seq = right;
    finish_job(&mut net, job);
    assert_eq!(
        net.nodes[B].session(&peer, net.now).map(|s| s.epoch),
        Some(1)
    );
}

/// The finding of DESIGN-offload.md ("Found with the pool on"): a record the rotation's
/// initiator sent under the old epoch after its `REKEY_COMMIT` reached B while B's key was
/// still unwrapping the commit. Acked at once under the old epoch, that receipt could reach
/// A after `REKEY_DONE` had retired the old epoch (zero grace): A could not verify it and
/// reported the message lost. B holds the record until the new epoch is in, as inline, and
/// answers it then (here `STALE_EPOCH`: the grace is zero), so A sends it again.
#[test]
fn a_record_behind_an_unwrapping_rekey_commit_waits_for_the_new_epoch_and_is_never_lost() {
    let mut net = Net::configured([PeerId::random(), PeerId::random()], false, |side, c| {
        c.with_private_offload(side == B)
            .with_rotation_grace(std::time::Duration::ZERO)
    });
    net.hold_jobs[B] = true;
    net.establish_offloaded();
    net.nodes[A].rotate(net.ids[B], net.now).expect("active");
    net.run();
    let job = net.jobs[B].pop().expect("REKEY_COMMIT job");
    // A still sends under epoch 0 (its rotation waits for REKEY_DONE).
    let id = net.nodes[A]
        .send_message(net.ids[B], "during".into(), 0, net.now)
        .expect("queued");
    net.pump();
    assert_eq!(net.wire.len(), 1, "the record");
    net.deliver_one();
    assert!(
        net.wire.is_empty(),
        "B answers nothing before its key is done"
    );
    net.nodes[B].on_private_done(job.tag, offload::run(&job), net.now);
    net.pump();
    // REKEY_DONE and the record's answer travel on different streams: REKEY_DONE first,
    // and A's timer retires epoch 0 at once (zero grace) before the other answer lands.
    let done = net
        .wire
        .iter()
        .position(|m| {
            matches!(
                m,
                Msg::Response {
                    response: Response::Reply(_),
                    ..
                }
            )
        })
        .expect("REKEY_DONE on the wire");
    net.deliver_at(done);
    net.nodes[A].on_tick(net.now, &|_| true);
    net.run();
    let received = net.events[B]
        .iter()
        .filter(|e| matches!(e, Event::MessageReceived { message, .. } if message.text == "during"))
        .count();
    assert_eq!(received, 1, "received exactly once");
    assert!(
        net.events[A]
            .iter()
            .any(|e| matches!(e, Event::MessageDelivered { message, .. } if *message == id)),
        "{:?}",
        net.events[A]
    );
    assert!(
        !net.events[A]
            .iter()
            .any(|e| matches!(e, Event::DeliveryFailed { .. })),
        "{:?}",
        net.events[A]
    );
    for side in [A, B] {
        let peer = net.ids[1 - side];
        assert_eq!(
            net.nodes[side].session(&peer, net.now).map(|s| s.epoch),
            Some(1)
        );
    }
}

/// More records than B holds behind an unwrapping `REKEY_COMMIT`: the ones past the bound
/// are answered `STALE_EPOCH` and sent again, none lost, none received twice.
#[test]
fn records_beyond_the_held_bound_are_sent_again_not_lost() {
    let mut net = Net::configured([PeerId::random(), PeerId::random()], false, |side, c| {
        c.with_private_offload(side == B)
            .with_max_in_flight(super::HELD_RECORDS + 8)
    });
    net.hold_jobs[B] = true;
    net.establish_offloaded();
    net.nodes[A].rotate(net.ids[B], net.now).expect("active");
    net.run();
    let job = net.jobs[B].pop().expect("REKEY_COMMIT job");
    let n = super::HELD_RECORDS + 8;
    // One record each (a flush between them), all sent before B's key is done.
    let ids: Vec<_> = (0..n)
        .map(|i| {
            let id = net.nodes[A]
                .send_message(net.ids[B], format!("m{i}"), 0, net.now)
                .expect("queued");
            net.pump();
            id
        })
        .collect();
    assert_eq!(net.wire.len(), n, "{:?}", net.nodes[A].state_counts());
    // Deliver only the records (and A's resends of the refused ones) while the job waits.
    for _ in 0..4 * n {
        if !net.deliver_one() {
            break;
        }
    }
    let held = net.nodes[B].state_counts().held_records;
    assert_eq!(held, super::HELD_RECORDS);
    net.nodes[B].on_private_done(job.tag, offload::run(&job), net.now);
    net.run();
    let mut texts: Vec<String> = net.events[B]
        .iter()
        .filter_map(|e| match e {
            Event::MessageReceived { message, .. } => Some(message.text.clone()),
            _ => None,
        })
        .collect();
    texts.sort();
    let mut want: Vec<String> = (0..n).map(|i| format!("m{i}")).collect();
    want.sort();
    assert_eq!(texts, want, "each message received exactly once");
    for id in ids {
        assert!(
            net.events[A]
                .iter()
                .any(|e| matches!(e, Event::MessageDelivered { message, .. } if *message == id))
        );
    }
    assert!(
        !net.events[A]
            .iter()
            .any(|e| matches!(e, Event::DeliveryFailed { .. }))
    );
}

/// While B's key unwraps A's `REKEY_COMMIT`, B sends nothing on the session: inline its next
/// record would go under the new epoch, and one sent under the old could be acked under keys
/// a zero grace retires before the receipt lands (found with the swarm test at zero grace).
#[test]
fn nothing_is_sent_while_a_rekey_commit_unwraps_then_it_goes_under_the_new_epoch() {
    let mut net = offloading_net();
    net.establish_offloaded();
    net.nodes[A].rotate(net.ids[B], net.now).expect("active");
    net.run();
    let job = net.jobs[B].pop().expect("REKEY_COMMIT job");
    let id = net.nodes[B]
        .send_message(net.ids[A], "from b".into(), 0, net.now)
        .expect("queued");
    net.pump();
    assert!(net.wire.is_empty(), "held until the new epoch is in");
    net.nodes[B].on_private_done(job.tag, offload::run(&job), net.now);
    net.pump();
    let epochs: Vec<u32> = net
        .wire
        .iter()
        .filter_map(|m| match m {
            Msg::Request {
                request: crate::wire::Request::Record(r),
                ..
            } => Some(r.epoch),
            _ => None,
        })
        .collect();
    assert_eq!(epochs, vec![1], "the message's record, under epoch 1");
    net.run();
    assert!(
        net.events[B]
            .iter()
            .any(|e| matches!(e, Event::MessageDelivered { message, .. } if *message == id))
    );
}

/// Both sides offload and the test runs each job: A's `AUTH_OK` waits for A's key (no
/// session yet), then A's rotation waits for its key on `REKEY_REPLY` (no `REKEY_COMMIT`
/// yet); results with another job number are dropped and change nothing.
#[test]
fn an_offloaded_auth_ok_and_rekey_reply_continue_only_with_their_own_results() {
    let mut net = Net::configured([PeerId::random(), PeerId::random()], false, |_, c| {
        c.with_private_offload(true)
    });
    net.hold_jobs = [true, true];
    net.connect();
    let open = net.open(A);
    net.run();
    let auth = net.jobs[B].pop().expect("B's AUTH job");
    finish_job(&mut net, auth);
    let auth_ok = net.jobs[A].pop().expect("A's AUTH_OK job");
    assert!(
        net.established(A).is_empty(),
        "A waits for its key: {:?}",
        net.events[A]
    );
    assert_eq!(net.nodes[A].state_counts().private_pending, 1);
    // A result under another number: dropped.
    let stale = PrivateJob {
        tag: crate::offload::JobTag {
            seq: auth_ok.tag.seq + 7,
            ..auth_ok.tag
        },
        ..auth_ok.clone()
    };
    net.nodes[A].on_private_done(stale.tag, offload::run(&stale), net.now);
    net.run();
    assert!(net.established(A).is_empty());
    net.nodes[A].on_private_done(auth_ok.tag, offload::run(&auth_ok), net.now);
    net.run();
    assert_eq!(net.established(A), vec![(Role::Initiator, vec![open])]);
    assert_eq!(net.established(B).len(), 1);
    assert_eq!(net.nodes[A].state_counts().private_pending, 0);

    net.nodes[A].rotate(net.ids[B], net.now).expect("active");
    net.run();
    let reply = net.jobs[A].pop().expect("A's REKEY_REPLY job");
    assert!(matches!(
        reply.tag.purpose,
        offload::Purpose::Rotation { epoch: 1, .. }
    ));
    assert!(net.jobs[B].is_empty(), "no REKEY_COMMIT sent yet");
    // Busy: A unwraps it itself (its own rotation; refusing would close the session).
    net.nodes[A].on_private_done(reply.tag, Err(JobError::Busy), net.now);
    net.run();
    let commit = net.jobs[B].pop().expect("B's REKEY_COMMIT job");
    finish_job(&mut net, commit);
    for side in [A, B] {
        let peer = net.ids[1 - side];
        assert_eq!(
            net.nodes[side].session(&peer, net.now).map(|s| s.epoch),
            Some(1),
            "side {side}"
        );
    }
}

impl Net {
    /// `establish` for a net whose B offloads: runs B's AUTH job.
    fn establish_offloaded(&mut self) {
        self.connect();
        self.open(A);
        self.run();
        let job = self.jobs[B].pop().expect("AUTH job");
        finish_job(self, job);
        assert_eq!(self.established(A).len(), 1);
        assert_eq!(self.established(B).len(), 1);
    }
}
