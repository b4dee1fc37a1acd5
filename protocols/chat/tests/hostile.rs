//! Hostile peers against a real node that also serves an honest peer.
//!
//! Every test runs three kinds of swarms over TCP + Noise + Yamux on 127.0.0.1:
//!
//! * the **node** under test (`noctua_chat::Behaviour`);
//! * an **honest peer** (another `Behaviour`) with an active session with the node;
//! * one or more **abusers** ([`spec_peer::RawStreams`]): raw `/noctua/chat/1.0.0` streams
//!   under the test's full control, speaking the protocol (built by the spec peer of
//!   `spec_peer`) deliberately wrong: garbage, truncated and oversized frames, bodies that
//!   never end, messages out of order, wrong MACs, replays, floods, silence.
//!
//! Throughout each case the test checks that
//!
//! * (a) the node stays responsive: the honest peer's messages are delivered (it gets the
//!   receipt) during and after the abuse, each within [`HONEST_BOUND`];
//! * (b) memory stays bounded: `state_counts()` is sampled after every poll and its maximum
//!   stays below fixed bounds; after the abuse the counts return to the honest baseline;
//! * (c) each case is logged once, not once per packet: the node's `tracing` output is
//!   captured and the warnings that name the abuser are counted.
//!
//! Each test prints a `HOSTILE` summary line (run with `--nocapture` to see it). Tests run one
//! at a time (a lock), so that floods do not distort each other's timings and log windows.

mod common;
mod log_capture;
mod spec_peer;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::channel::mpsc;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::{Swarm, SwarmEvent};
use libp2p::{Multiaddr, PeerId};
use noctua_chat::wire::{self, Auth, Content, Record, Request, Response, Role};
use noctua_chat::{
    Behaviour, CloseReason, Config, Event, MessageId, RejectCode, Secret, SessionState, StateCounts,
};
use spec_peer::{
    OpenedStream, Outcome, RawStreams, Script, SpecInitiator, SpecSession, StreamOutcome,
    chat_content, frame, random, record_header, run_script, seal_raw, spec_rsa_key, tampered,
};

/// What the tests capture: everything at INFO and above, plus libp2p-swarm's connection
/// spans (DEBUG), whose `peer=` field attributes libp2p's own warnings to a connection.
/// What a node would log with: `info` plus [`noctua_chat::LOG_DIRECTIVES`] (spelled out: a
/// `const` cannot concatenate), and libp2p-swarm's debug lines to see connections.
const LOG_FILTER: &str = "info,libp2p_swarm=debug,libp2p_request_response::handler=error";

/// Most time an honest message may take to be confirmed, during or after abuse.
const HONEST_BOUND: Duration = Duration::from_secs(3);

/// Most warnings naming one abuser that the node itself (`noctua_chat`) may log in a case.
const MAX_WARNINGS: usize = 6;

/// Wall-clock limit of one test.
const TEST_LIMIT: Duration = Duration::from_secs(30);

static SERIAL: futures::lock::Mutex<()> = futures::lock::Mutex::new(());

/// Runs one test body: one at a time, with log capture installed, within [`TEST_LIMIT`].
async fn run_case<F: Future<Output = ()>>(name: &str, body: impl FnOnce() -> F) {
    let _one_at_a_time = SERIAL.lock().await;
    assert!(
        LOG_FILTER.ends_with(noctua_chat::LOG_DIRECTIVES),
        "LOG_FILTER must end with noctua_chat::LOG_DIRECTIVES"
    );
    assert!(
        log_capture::install(LOG_FILTER),
        "the capturing subscriber could not be installed"
    );
    if tokio::time::timeout(TEST_LIMIT, body()).await.is_err() {
        panic!("{name}: did not finish within {TEST_LIMIT:?}");
    }
}

/// The node's configuration: the secret, a pre-generated key, and short timeouts so that the
/// node's own clean-up happens within a test.
fn node_config(secret: &Secret) -> Config {
    Config::new(secret.clone())
        .with_name("node")
        .with_rsa_key(common::key(0))
        .with_rsa_regenerate_every(None)
        .with_request_timeout(Duration::from_secs(3))
        .with_handshake_timeout(Duration::from_secs(3))
        .with_unauthenticated_grace(Duration::from_secs(25))
        .with_keepalive_interval(Duration::from_secs(60))
}

/// What the node holds with only the honest peer's session (one outbound request allowed:
/// a keep-alive may be in flight).
fn is_baseline(c: &StateCounts) -> bool {
    c.peers == 1
        && c.connections == 1
        && c.sessions == 1
        && c.handshakes == 0
        && c.outbound_requests <= 1
        && c.queued_messages == 0
        && c.deferred_hellos == 0
        && c.waiting_opens == 0
}

/// Upper bounds for `state_counts()` during a case with `abusers` abusing identities, one
/// connection each, and `abuser_sessions` sessions they may hold.
fn bounds(abusers: usize, abuser_sessions: usize) -> StateCounts {
    StateCounts {
        peers: 1 + abusers,
        connections: 1 + abusers,
        sessions: 1 + abuser_sessions,
        handshakes: abusers,
        outbound_requests: 2,
        queued_messages: 1,
        deferred_hellos: 0,
        waiting_opens: 0,
    }
}

fn max_counts(a: StateCounts, b: StateCounts) -> StateCounts {
    StateCounts {
        peers: a.peers.max(b.peers),
        connections: a.connections.max(b.connections),
        sessions: a.sessions.max(b.sessions),
        handshakes: a.handshakes.max(b.handshakes),
        outbound_requests: a.outbound_requests.max(b.outbound_requests),
        queued_messages: a.queued_messages.max(b.queued_messages),
        deferred_hellos: a.deferred_hellos.max(b.deferred_hellos),
        waiting_opens: a.waiting_opens.max(b.waiting_opens),
    }
}

fn within_bounds(max: &StateCounts, b: &StateCounts) -> bool {
    max.peers <= b.peers
        && max.connections <= b.connections
        && max.sessions <= b.sessions
        && max.handshakes <= b.handshakes
        && max.outbound_requests <= b.outbound_requests
        && max.queued_messages <= b.queued_messages
        && max.deferred_hellos <= b.deferred_hellos
        && max.waiting_opens <= b.waiting_opens
}

/// An abusing identity: a swarm of raw streams, connected to the node (or trying to).
struct Abuser {
    swarm: Swarm<RawStreams>,
    id: PeerId,
    streams: mpsc::UnboundedReceiver<OpenedStream>,
    connected: bool,
    closed: usize,
    dial_error: Option<String>,
}

/// An honest message on its way.
struct HonestMsg {
    id: MessageId,
    text: String,
    sent: Instant,
}

/// The result of a flood: one outcome per script, in order, and the honest messages sent
/// meanwhile.
struct Flood {
    outcomes: Vec<StreamOutcome>,
    elapsed: Duration,
    honest: Vec<Duration>,
}

/// The node, the honest peer and the abusers, driven together.
struct World {
    node: Swarm<Behaviour>,
    node_id: PeerId,
    addr: Multiaddr,
    secret: Secret,
    honest: Swarm<Behaviour>,
    honest_id: PeerId,
    honest_session: Option<noctua_chat::SessionId>,
    abusers: Vec<Abuser>,
    node_events: Vec<(Instant, Event)>,
    node_swarm_events: Vec<String>,
    honest_events: Vec<(Instant, Event)>,
    scripts: HashMap<u64, Script>,
    outcomes: HashMap<u64, StreamOutcome>,
    done_tx: mpsc::UnboundedSender<(u64, StreamOutcome)>,
    done_rx: mpsc::UnboundedReceiver<(u64, StreamOutcome)>,
    next_tag: u64,
    /// How long a hostile stream may run before the abuser gives up on it.
    stream_limit: Duration,
    max: StateCounts,
    honest_latencies: Vec<Duration>,
    /// Honest messages sent and not confirmed yet.
    honest_pending: usize,
    log_start: usize,
    started: Instant,
    /// Whether the honest session may end (only when the test ends it itself).
    honest_may_close: bool,
}

impl World {
    /// Starts the node and the honest peer over TCP + Noise and opens their session.
    async fn new(config: Config) -> World {
        let mut w = World::start(config).await;
        w.open_honest_session().await;
        w
    }

    /// Starts the node and the honest peer (not connected yet).
    async fn start(config: Config) -> World {
        let log_start = log_capture::len();
        let secret = config.secret().clone();
        let (node, addr) = common::tcp_noise_node(config, Duration::from_secs(60)).await;
        let honest_config = common::config(1, "honest-own-secret")
            .with_name("honest")
            .with_keepalive_interval(Duration::from_secs(60));
        let (honest, _) = common::tcp_noise_node(honest_config, Duration::from_secs(60)).await;
        let node_id = *node.local_peer_id();
        let honest_id = *honest.local_peer_id();
        let addr = addr.with(Protocol::P2p(node_id));
        let (done_tx, done_rx) = mpsc::unbounded();
        World {
            node,
            node_id,
            addr,
            secret,
            honest,
            honest_id,
            honest_session: None,
            abusers: Vec::new(),
            node_events: Vec::new(),
            node_swarm_events: Vec::new(),
            honest_events: Vec::new(),
            scripts: HashMap::new(),
            outcomes: HashMap::new(),
            done_tx,
            done_rx,
            next_tag: 1,
            stream_limit: Duration::from_secs(15),
            max: StateCounts::default(),
            honest_latencies: Vec::new(),
            honest_pending: 0,
            log_start,
            started: Instant::now(),
            honest_may_close: false,
        }
    }

    /// The honest peer dials the node and opens its session.
    async fn open_honest_session(&mut self) {
        let w = self;
        let open = w
            .honest
            .behaviour_mut()
            .connect(w.addr.clone(), w.secret.clone());
        w.until("the honest session", Duration::from_secs(10), |w| {
            let failed = w.honest_events.iter().find_map(|(_, e)| match e {
                Event::OpenFailed { open: o, error, .. } if *o == open => Some(error.clone()),
                _ => None,
            });
            if let Some(e) = failed {
                panic!("the honest peer could not open its session: {e}");
            }
            let on_node = w.node_events.iter().any(
                |(_, e)| matches!(e, Event::SessionEstablished { peer, .. } if *peer == w.honest_id),
            );
            let on_honest = w.honest_events.iter().any(
                |(_, e)| matches!(e, Event::SessionEstablished { opens, .. } if opens.contains(&open)),
            );
            on_node && on_honest && is_baseline(&w.node.behaviour().state_counts())
        })
        .await;
        w.honest_session = w.node.behaviour().session(&w.honest_id).map(|s| s.id);
        w.max = w.node.behaviour().state_counts();
    }

    // ----- driving -----

    /// Polls every swarm and channel once (a bounded number of events each); returns when
    /// anything happened.
    async fn pump(&mut self) {
        futures::future::poll_fn(|cx| {
            let mut progressed = false;
            for _ in 0..64 {
                match self.node.poll_next_unpin(cx) {
                    std::task::Poll::Ready(Some(ev)) => {
                        progressed = true;
                        self.on_node_event(ev);
                    }
                    _ => break,
                }
            }
            for _ in 0..64 {
                match self.honest.poll_next_unpin(cx) {
                    std::task::Poll::Ready(Some(SwarmEvent::Behaviour(ev))) => {
                        progressed = true;
                        self.honest_events.push((Instant::now(), ev));
                    }
                    std::task::Poll::Ready(Some(_)) => progressed = true,
                    _ => break,
                }
            }
            for i in 0..self.abusers.len() {
                for _ in 0..64 {
                    match self.abusers[i].swarm.poll_next_unpin(cx) {
                        std::task::Poll::Ready(Some(ev)) => {
                            progressed = true;
                            self.on_abuser_event(i, ev);
                        }
                        _ => break,
                    }
                }
                while let std::task::Poll::Ready(Some((tag, stream))) =
                    self.abusers[i].streams.poll_next_unpin(cx)
                {
                    progressed = true;
                    self.on_stream(tag, stream);
                }
            }
            while let std::task::Poll::Ready(Some((tag, outcome))) =
                self.done_rx.poll_next_unpin(cx)
            {
                progressed = true;
                self.outcomes.insert(tag, outcome);
            }
            self.sample();
            if progressed {
                std::task::Poll::Ready(())
            } else {
                std::task::Poll::Pending
            }
        })
        .await
    }

    fn sample(&mut self) {
        let c = self.node.behaviour().state_counts();
        self.max = max_counts(self.max, c);
    }

    fn on_node_event(&mut self, ev: SwarmEvent<Event>) {
        match ev {
            SwarmEvent::Behaviour(e) => {
                if let Event::SessionClosed { peer, reason, .. } = &e {
                    assert!(
                        self.honest_may_close || *peer != self.honest_id,
                        "the honest session was closed: {reason}"
                    );
                }
                self.node_events.push((Instant::now(), e));
            }
            other => self.node_swarm_events.push(format!("{other:?}")),
        }
    }

    fn on_abuser_event(&mut self, i: usize, ev: SwarmEvent<std::convert::Infallible>) {
        let a = &mut self.abusers[i];
        match ev {
            SwarmEvent::ConnectionEstablished { .. } => a.connected = true,
            SwarmEvent::ConnectionClosed { .. } => {
                a.connected = false;
                a.closed += 1;
            }
            SwarmEvent::OutgoingConnectionError { error, .. } => {
                a.dial_error = Some(error.to_string())
            }
            _ => {}
        }
    }

    fn on_stream(&mut self, tag: u64, stream: Result<libp2p::Stream, String>) {
        let script = self
            .scripts
            .remove(&tag)
            .expect("a script for every stream");
        match stream {
            Ok(stream) => {
                let done = self.done_tx.clone();
                let limit = self.stream_limit;
                tokio::spawn(async move {
                    let outcome = run_script(stream, script, limit).await;
                    let _ = done.unbounded_send((tag, outcome));
                });
            }
            Err(e) => {
                self.outcomes.insert(
                    tag,
                    StreamOutcome {
                        outcome: Outcome::OpenFailed(e),
                        written: 0,
                        elapsed: Duration::ZERO,
                    },
                );
            }
        }
    }

    /// Drives everything until `cond` holds, checking it at least every 20 ms (state can
    /// change without an event), for at most `limit`.
    async fn until(&mut self, what: &str, limit: Duration, mut cond: impl FnMut(&World) -> bool) {
        let deadline = Instant::now() + limit;
        while !cond(self) {
            if Instant::now() > deadline {
                panic!(
                    "timed out after {limit:?} waiting for {what}; node counts {:?}; node swarm: {:?}",
                    self.node.behaviour().state_counts(),
                    self.node_swarm_events
                        .iter()
                        .rev()
                        .take(5)
                        .collect::<Vec<_>>()
                );
            }
            let _ = tokio::time::timeout(Duration::from_millis(20), self.pump()).await;
        }
    }

    /// Drives everything for `d` of wall time (for cases about time passing).
    async fn drive_for(&mut self, d: Duration) {
        let end = Instant::now() + d;
        self.until("time to pass", d + Duration::from_secs(1), |_| {
            Instant::now() >= end
        })
        .await;
    }

    // ----- abusers -----

    /// A new abusing identity, dialing the node from 127.0.0.1. Returns its index; whether
    /// the connection was accepted is in `connected` / `dial_error`.
    async fn add_abuser(&mut self) -> usize {
        let (behaviour, streams) = RawStreams::new();
        let mut swarm = libp2p::SwarmBuilder::with_new_identity()
            .with_tokio()
            .with_tcp(
                libp2p::tcp::Config::default(),
                libp2p::noise::Config::new,
                libp2p::yamux::Config::default,
            )
            .expect("TCP transport")
            .with_behaviour(|_| behaviour)
            .expect("behaviour")
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
            .build();
        let id = *swarm.local_peer_id();
        swarm.dial(self.addr.clone()).expect("dial");
        self.abusers.push(Abuser {
            swarm,
            id,
            streams,
            connected: false,
            closed: 0,
            dial_error: None,
        });
        let i = self.abusers.len() - 1;
        self.until("the abuser's connection", Duration::from_secs(10), |w| {
            w.abusers[i].connected || w.abusers[i].dial_error.is_some()
        })
        .await;
        i
    }

    /// A new abuser that must be connected.
    async fn connected_abuser(&mut self) -> usize {
        let a = self.add_abuser().await;
        assert!(
            self.abusers[a].connected,
            "abuser refused: {:?}",
            self.abusers[a].dial_error
        );
        a
    }

    fn disconnect(&mut self, a: usize) {
        let node = self.node_id;
        let _ = self.abusers[a].swarm.disconnect_peer_id(node);
    }

    /// Starts `script` on a new stream of abuser `a`; its outcome appears under the tag.
    fn launch(&mut self, a: usize, script: Script) -> u64 {
        let tag = self.next_tag;
        self.next_tag += 1;
        self.scripts.insert(tag, script);
        let node = self.node_id;
        self.abusers[a].swarm.behaviour_mut().open(node, tag);
        tag
    }

    async fn outcome(&mut self, tag: u64) -> StreamOutcome {
        let limit = self.stream_limit + Duration::from_secs(5);
        self.until("a stream's outcome", limit, |w| {
            w.outcomes.contains_key(&tag)
        })
        .await;
        self.outcomes.remove(&tag).expect("checked above")
    }

    /// Sends one request on a new stream and returns what happened.
    async fn call(&mut self, a: usize, req: &Request) -> Outcome {
        let tag = self.launch(a, Script::request(req));
        self.outcome(tag).await.outcome
    }

    async fn expect_response(&mut self, a: usize, req: &Request) -> Response {
        match self.call(a, req).await {
            Outcome::Response(r) => r,
            other => panic!("{req:?}: expected a response, got {other:?}"),
        }
    }

    async fn expect_reject(&mut self, a: usize, req: &Request, code: RejectCode) -> u32 {
        match self.call(a, req).await {
            Outcome::Response(Response::Reject { code: c, detail }) if c == code => detail,
            other => panic!("{req:?}: expected REJECT {code:?}, got {other:?}"),
        }
    }

    /// A handshake of abuser `a` towards the node with `secret` (not sent yet).
    fn initiator(&self, a: usize, secret: &str) -> SpecInitiator {
        SpecInitiator::new(
            self.abusers[a].id,
            self.node_id,
            secret.as_bytes(),
            spec_rsa_key(),
        )
    }

    /// A complete, honest handshake of abuser `a` (it knows the secret): the session, and
    /// the `HELLO` and `AUTH` it sent.
    async fn handshake(&mut self, a: usize) -> (SpecSession, Request, Request) {
        let secret = self.secret.expose().to_owned();
        let init = self.initiator(a, &secret);
        let hello = init.hello();
        let ch = match self.expect_response(a, &hello).await {
            Response::Challenge(c) => c,
            other => panic!("HELLO: {other:?}"),
        };
        let sent = init.on_challenge(&ch).expect("CHALLENGE acceptable");
        let auth = sent.auth();
        let ok = match self.expect_response(a, &auth).await {
            Response::AuthOk(ok) => ok,
            other => panic!("AUTH: {other:?}"),
        };
        let mut s = sent.on_auth_ok(&ok).expect("AUTH_OK verifies");
        let confirm = s.confirmation();
        self.send_acked(a, &s, confirm).await;
        (s, hello, auth)
    }

    /// Sends our record and expects a verified `ACK`.
    async fn send_acked(&mut self, a: usize, s: &SpecSession, rec: Record) {
        match self.expect_response(a, &Request::Record(rec.clone())).await {
            Response::Ack(ack) => s.verify_ack(&rec, &ack).expect("ACK verifies"),
            other => panic!("{rec:?}: expected ACK, got {other:?}"),
        }
    }

    /// A rotation driven by the abuser's session (§7).
    async fn rotate(&mut self, a: usize, s: &mut SpecSession) {
        let init = s.rekey_init();
        let reply = match self.expect_response(a, &Request::Record(init)).await {
            Response::Reply(r) => r,
            other => panic!("REKEY_INIT: {other:?}"),
        };
        let commit = s.rekey_commit(&reply).expect("REKEY_REPLY valid");
        let done = match self.expect_response(a, &Request::Record(commit)).await {
            Response::Reply(r) => r,
            other => panic!("REKEY_COMMIT: {other:?}"),
        };
        s.rekey_done(&done).expect("REKEY_DONE valid");
    }

    /// Runs `scripts` (abuser, script) with at most `in_flight` streams open per abuser, as
    /// fast as the streams complete; with `honest_every`, the honest peer sends a message at
    /// that interval meanwhile. Returns once every script has an outcome and every honest
    /// message its receipt.
    async fn flood(
        &mut self,
        scripts: Vec<(usize, Script)>,
        in_flight: usize,
        honest_every: Option<Duration>,
    ) -> Flood {
        let started = Instant::now();
        let total = scripts.len();
        let mut queue = scripts.into_iter().enumerate();
        let mut next: Option<(usize, (usize, Script))> = queue.next();
        let mut open: HashMap<u64, (usize, usize)> = HashMap::new();
        let mut per_abuser: HashMap<usize, usize> = HashMap::new();
        let mut results: Vec<Option<StreamOutcome>> = vec![None; total];
        let mut done = 0;
        let mut honest = Vec::new();
        let mut next_honest = started;
        let deadline = started + Duration::from_secs(25);
        while done < total {
            // Open as many streams as allowed.
            while let Some((idx, (a, _))) = &next {
                let (idx, a) = (*idx, *a);
                if per_abuser.get(&a).copied().unwrap_or(0) >= in_flight {
                    break;
                }
                let Some((_, (_, script))) = next.take() else {
                    break;
                };
                let tag = self.launch(a, script);
                open.insert(tag, (idx, a));
                *per_abuser.entry(a).or_insert(0) += 1;
                next = queue.next();
            }
            if let Some(every) = honest_every
                && Instant::now() >= next_honest
            {
                honest.push(self.honest_send(&format!("during flood #{}", honest.len())));
                next_honest += every;
            }
            let finished: Vec<u64> = open
                .keys()
                .copied()
                .filter(|t| self.outcomes.contains_key(t))
                .collect();
            for tag in finished {
                let (idx, a) = open.remove(&tag).expect("open");
                results[idx] = self.outcomes.remove(&tag);
                *per_abuser.get_mut(&a).expect("counted") -= 1;
                done += 1;
            }
            if done >= total {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "flood not finished after 25 s: {done}/{total} outcomes; node {:?}",
                self.node.behaviour().state_counts()
            );
            let _ = tokio::time::timeout(Duration::from_millis(20), self.pump()).await;
        }
        let elapsed = started.elapsed();
        let mut latencies = Vec::new();
        for m in honest {
            latencies.push(self.honest_wait(m).await);
        }
        Flood {
            outcomes: results.into_iter().map(|o| o.expect("all done")).collect(),
            elapsed,
            honest: latencies,
        }
    }

    // ----- the honest peer -----

    fn honest_send(&mut self, text: &str) -> HonestMsg {
        let node = self.node_id;
        // Unique, so that its arrival cannot be mistaken for an earlier message's.
        let text = format!(
            "{text} (honest #{})",
            self.honest_latencies.len() + self.honest_pending
        );
        self.honest_pending += 1;
        let id = self
            .honest
            .behaviour_mut()
            .send_message(&node, text.clone())
            .expect("the honest session accepts messages");
        HonestMsg {
            id,
            text,
            sent: Instant::now(),
        }
    }

    /// Waits for the receipt of an honest message (and its arrival at the node); returns the
    /// latency and checks it against [`HONEST_BOUND`].
    async fn honest_wait(&mut self, m: HonestMsg) -> Duration {
        let limit = HONEST_BOUND + Duration::from_secs(7);
        let honest_id = self.honest_id;
        self.until("the honest message's receipt", limit, |w| {
            if let Some(e) = w.honest_events.iter().find_map(|(_, e)| match e {
                Event::DeliveryFailed { message, error, .. } if *message == m.id => Some(error),
                _ => None,
            }) {
                panic!("the honest message {:?} was not delivered: {e}", m.text);
            }
            w.honest_events.iter().any(
                |(_, e)| matches!(e, Event::MessageDelivered { message, .. } if *message == m.id),
            )
        })
        .await;
        let delivered_at = self
            .honest_events
            .iter()
            .find_map(|(t, e)| match e {
                Event::MessageDelivered { message, .. } if *message == m.id => Some(*t),
                _ => None,
            })
            .expect("seen above");
        let received = self.node_events.iter().any(|(_, e)| {
            matches!(e, Event::MessageReceived { peer, message, .. }
                if *peer == honest_id && message.text == m.text)
        });
        assert!(
            received,
            "the node reported the honest message {:?}",
            m.text
        );
        let latency = delivered_at.saturating_duration_since(m.sent);
        assert!(
            latency <= HONEST_BOUND,
            "the honest message {:?} took {latency:?} (bound {HONEST_BOUND:?})",
            m.text
        );
        self.honest_latencies.push(latency);
        self.honest_pending -= 1;
        latency
    }

    async fn honest_roundtrip(&mut self, text: &str) -> Duration {
        let m = self.honest_send(text);
        self.honest_wait(m).await
    }

    // ----- checks -----

    fn assert_bounded(&self, case: &str, b: StateCounts) {
        assert!(
            within_bounds(&self.max, &b),
            "{case}: state grew beyond its bounds: max {:?}, bounds {b:?}",
            self.max
        );
    }

    /// Waits until the node holds only the honest session again, and checks that it is the
    /// same session as before, active and never refused anything.
    async fn back_to_baseline(&mut self, limit: Duration) -> Duration {
        let t = Instant::now();
        self.until("the honest baseline", limit, |w| {
            is_baseline(&w.node.behaviour().state_counts())
        })
        .await;
        let info = self
            .node
            .behaviour()
            .session(&self.honest_id)
            .expect("the honest session survived");
        assert_eq!(
            Some(info.id),
            self.honest_session,
            "the honest session is the same"
        );
        assert_eq!(info.state, SessionState::Active);
        assert_eq!(
            info.rejections.total(),
            0,
            "nothing of the honest session was refused: {:?}",
            info.rejections
        );
        t.elapsed()
    }

    /// Captured lines of this test that name `peer`.
    fn lines_about(&self, peer: &PeerId) -> Vec<String> {
        let id = peer.to_string();
        log_capture::since(self.log_start)
            .lines()
            .filter(|l| l.contains(&id))
            .map(str::to_owned)
            .collect()
    }

    /// Warnings naming abuser `a`: (the node's own, libp2p's and others').
    fn warnings_about(&self, a: usize) -> (Vec<String>, Vec<String>) {
        self.lines_about(&self.abusers[a].id)
            .into_iter()
            .filter(|l| log_capture::is_warning(l))
            .partition(|l| l.contains(" noctua_chat::"))
    }

    /// Lines at INFO naming abuser `a`, from the node itself.
    fn infos_about(&self, a: usize) -> Vec<String> {
        self.lines_about(&self.abusers[a].id)
            .into_iter()
            .filter(|l| log_capture::level(l) == Some("INFO") && l.contains(" noctua_chat::"))
            .collect()
    }

    /// Checks (c) for every abuser and prints the case's summary line.
    fn finish(&self, case: &str, notes: &[String]) {
        let mut per_abuser = Vec::new();
        let never_connected = self
            .abusers
            .iter()
            .filter(|a| a.dial_error.is_some() && a.closed == 0 && !a.connected)
            .count();
        if never_connected > 0 {
            per_abuser.push(format!("{never_connected} abusers refused at connection"));
        }
        for (i, a) in self.abusers.iter().enumerate() {
            let (own, other) = self.warnings_about(i);
            if a.dial_error.is_some() && a.closed == 0 && !a.connected {
                assert!(own.is_empty() && other.is_empty(), "{own:?} {other:?}");
                continue;
            }
            let infos = self.infos_about(i);
            let dropped = other
                .iter()
                .filter(|l| l.contains("Dropping inbound stream"))
                .count();
            per_abuser.push(format!(
                "abuser{i} {}: node warnings {} {:?}; node infos {}; libp2p warnings {} \
                 (of which 'Dropping inbound stream because we are at capacity': {dropped}){}",
                short(&a.id),
                own.len(),
                own.iter().map(|l| message_of(l)).collect::<Vec<_>>(),
                infos.len(),
                other.len(),
                other
                    .iter()
                    .find(|l| !l.contains("Dropping inbound stream"))
                    .map(|l| format!("; e.g. {}", message_of(l)))
                    .unwrap_or_default(),
            ));
            assert!(
                own.len() <= MAX_WARNINGS,
                "{case}: the node logged {} warnings about abuser{i} (bound {MAX_WARNINGS}):\n{}",
                own.len(),
                own.join("\n")
            );
        }
        let lat = &self.honest_latencies;
        let max_lat = lat.iter().max().copied().unwrap_or_default();
        eprintln!(
            "HOSTILE [{case}] {:.1} s; honest messages {} (max latency {} ms); max state {:?}; {}{}",
            self.started.elapsed().as_secs_f32(),
            lat.len(),
            max_lat.as_millis(),
            self.max,
            per_abuser.join("; "),
            if notes.is_empty() {
                String::new()
            } else {
                format!("; {}", notes.join("; "))
            }
        );
    }
}

fn short(p: &PeerId) -> String {
    let s = p.to_string();
    s[s.len() - 6..].to_owned()
}

/// The message part of a captured line (after the target).
fn message_of(line: &str) -> String {
    // "LEVEL [span{fields}: ...]target::path: message fields"; spans (e.g. `Swarm::poll`)
    // are not lower-case module paths.
    let mut from = 0;
    let mut at = 0;
    while let Some(i) = line[at..].find(": ") {
        let word_start = line[..at + i].rfind([' ', '}']).map_or(0, |j| j + 1);
        let word = &line[word_start..at + i];
        let is_target = word.contains("::")
            && word
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == ':');
        if is_target {
            from = at + i + 2;
            break;
        }
        at += i + 2;
    }
    line[from..].chars().take(120).collect()
}

// ---------------------------------------------------------------------------------------------
// Building hostile requests.
// ---------------------------------------------------------------------------------------------

/// A `RECORD` with the given header and `len` random bytes as `sealed`.
fn random_record(session_id: [u8; 16], epoch: u32, sender: Role, seq: u64, len: usize) -> Record {
    let mut sealed = vec![0u8; len];
    rand::Rng::fill_bytes(&mut rand::rng(), &mut sealed);
    Record {
        session_id,
        epoch,
        sender,
        seq,
        sealed,
    }
}

fn chat(id: u64, text: &str) -> Content {
    chat_content(id, &[text])
}

fn expect_all(flood: &Flood, range: std::ops::Range<usize>, code: RejectCode, what: &str) {
    for (i, o) in flood.outcomes[range.clone()].iter().enumerate() {
        assert_eq!(
            o.outcome.reject_code(),
            Some(code),
            "{what} #{i}: expected REJECT {code:?}, got {:?}",
            o.outcome
        );
    }
}

// ---------------------------------------------------------------------------------------------
// The cases.
// ---------------------------------------------------------------------------------------------

/// Garbage and truncated frames, 100 of each kind, 32 streams at a time, while the honest
/// peer chats: every one is answered `MALFORMED`, and the node logs the abuser once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_truncated_frames() {
    run_case("garbage and truncated frames", || async {
        let case = "garbage and truncated frames";
        let secret = Secret::generate();
        let mut w = World::new(node_config(&secret)).await;
        let a = w.connected_abuser().await;

        let hello = wire::encode_request(&w.initiator(a, secret.expose()).hello());
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
            // The node answers a `sealed` length past the end of the frame TOO_LARGE (detail:
            // the body's length) rather than MALFORMED: see
            // `record_length_past_the_end_is_malformed`. Either is a refusal.
            let ok = match o.outcome.reject_code() {
                Some(RejectCode::Malformed) => true,
                Some(RejectCode::TooLarge) => *what == "RECORD sealed length past the end",
                _ => false,
            };
            assert!(ok, "{what}: expected REJECT MALFORMED, got {:?}", o.outcome);
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
            let plain = wire::encode_content(&Content::RekeyInit {
                new_epoch: 1,
                nonce: random(),
                public_key: s.local_pub.clone(),
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
        sent.mac_i = spec_peer::hmac(
            &sent.init.k_auth,
            &[
                spec_peer::LABEL_INITIATOR_PROOF,
                &sent.th,
                &spec_peer::bytes16(&sent.wrapped_i),
            ],
        );
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
            let plain = wire::encode_content(&chat(seq, "wrong key"));
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
        let confirm = s.seal_at(0, 0, &Content::Profile { name: "x".into() });
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
            let plain = wire::encode_content(&chat(seq, "into the honest session"));
            let rec = seal_raw(&k0.key_i2r, honest_sid, 0, Role::Initiator, seq, &plain);
            scripts.push((a, Script::request(&Request::Record(rec))));
        }
        // 200..400: random session ids.
        for seq in 300..500u64 {
            let plain = wire::encode_content(&chat(seq, "nowhere"));
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
            let plain = wire::encode_content(&chat(seq, "wrong epoch"));
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
            let plain = wire::encode_content(&chat(seq, "stale"));
            let rec = seal_raw(&k0.key_i2r, s.session_id, 0, Role::Initiator, seq, &plain);
            scripts.push((a, Script::request(&Request::Record(rec))));
        }
        for seq in 0..100u64 {
            let plain = wire::encode_content(&chat(seq, "next"));
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
                    "hello" => matches!(o.outcome, Outcome::Response(Response::Challenge(_))),
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
/// stream; with them (as the node runs), the flood stays within a few lines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_flood_is_logged_once_including_libp2p() {
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
        let ip_banned_at = Instant::now();
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
        // ... and the honest peer, on the same address, is served.
        let during = w.honest_roundtrip("during the address ban").await;
        assert!(ip_banned_at.elapsed() < ip_ban, "checked while the ban lasted");
        let denied = w
            .node_swarm_events
            .iter()
            .filter(|e| e.starts_with("IncomingConnectionError"))
            .count();
        assert!(denied >= refused, "{denied} refusals seen by the node");

        // Time passes: both bans end.
        let wait = (ip_banned_at + ip_ban + Duration::from_millis(300))
            .saturating_duration_since(Instant::now());
        w.drive_for(wait).await;
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
/// `TOO_LARGE` for lengths over a limit)", and `TOO_LARGE`'s detail is "the limit". A
/// `RECORD` whose `sealed` length (1000) runs past the end of its 54-byte frame is answered
/// `TOO_LARGE` with detail 54 (the frame body's length, which is no limit of §8).
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
