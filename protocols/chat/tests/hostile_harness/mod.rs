//! The hostile suite's harness: a [`World`] of the node under test, an honest peer with a
//! session and abusing identities with raw streams, driven together; the checks every case
//! makes (state bounds, the honest baseline, warnings per abuser); and helpers that build
//! hostile requests. The cases themselves are in `hostile.rs`.

use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::channel::mpsc;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::{Swarm, SwarmEvent};
use libp2p::{Multiaddr, PeerId};
use noctua_chat::{Behaviour, Config, Event, MessageId, Secret, SessionState, StateCounts};
use noctua_spec_peer::{
    Content, OpenedStream, Outcome, RawStreams, Record, RejectCode, Request, Response, Role,
    Script, SpecInitiator, SpecSession, StreamOutcome, chat_content, run_script, spec_rsa_key,
};

use crate::{common, log_capture};

/// What the tests capture: everything at INFO and above, plus libp2p-swarm's connection
/// spans (DEBUG), whose `peer=` field attributes libp2p's own warnings to a connection.
/// What a node would log with: `info` plus [`noctua_chat::LOG_DIRECTIVES`] (spelled out: a
/// `const` cannot concatenate), and libp2p-swarm's debug lines to see connections.
const LOG_FILTER: &str = "info,libp2p_swarm=debug,libp2p_request_response::handler=error";

/// How long the harness waits for an honest message's receipt, during or after abuse, before
/// it fails the test: a liveness limit, not a latency bound (latency is the benchmark's to
/// measure; the summary line reports what was seen).
const HONEST_LIVENESS: Duration = Duration::from_secs(10);

/// Most warnings naming one abuser that the node itself (`noctua_chat`) may log in a case.
pub(crate) const MAX_WARNINGS: usize = 6;

/// Wall-clock limit of one test.
const TEST_LIMIT: Duration = Duration::from_secs(30);

static SERIAL: futures::lock::Mutex<()> = futures::lock::Mutex::new(());

/// Runs one test body: one at a time, with log capture installed, within [`TEST_LIMIT`].
pub(crate) async fn run_case<F: Future<Output = ()>>(name: &str, body: impl FnOnce() -> F) {
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
pub(crate) fn node_config(secret: &Secret) -> Config {
    Config::new(secret.clone())
        .with_name("node")
        .with_rsa_key(noctua_spec_peer::node_key(0))
        .with_rsa_regenerate_every(None)
        .with_request_timeout(Duration::from_secs(3))
        .with_handshake_timeout(Duration::from_secs(3))
        .with_unauthenticated_grace(Duration::from_secs(25))
        .with_keepalive_interval(Duration::from_secs(60))
}

/// What the node holds with only the honest peer's session (one outbound request allowed:
/// a keep-alive may be in flight).
pub(crate) fn is_baseline(c: &StateCounts) -> bool {
    c.peers == 1
        && c.connections == 1
        && c.sessions == 1
        && c.handshakes == 0
        && c.outbound_requests <= 1
        && c.queued_messages == 0
        && c.deferred_hellos == 0
        && c.waiting_opens == 0
        && c.private_pending == 0
        && c.held_records == 0
}

/// Upper bounds for `state_counts()` during a case with `abusers` abusing identities, one
/// connection each, and `abuser_sessions` sessions they may hold.
pub(crate) fn bounds(abusers: usize, abuser_sessions: usize) -> StateCounts {
    StateCounts {
        peers: 1 + abusers,
        connections: 1 + abusers,
        sessions: 1 + abuser_sessions,
        handshakes: abusers,
        outbound_requests: 2,
        queued_messages: 1,
        deferred_hellos: 0,
        waiting_opens: 0,
        // An abuser's AUTH may wait for our private key; a rotation of an abuser's session
        // may hold its records (at most 64 each).
        private_pending: abusers + abuser_sessions,
        held_records: 64 * abuser_sessions,
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
        private_pending: a.private_pending.max(b.private_pending),
        held_records: a.held_records.max(b.held_records),
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
        && max.private_pending <= b.private_pending
        && max.held_records <= b.held_records
}

/// An abusing identity: a swarm of raw streams, connected to the node (or trying to).
pub(crate) struct Abuser {
    pub(crate) swarm: Swarm<RawStreams>,
    pub(crate) id: PeerId,
    pub(crate) streams: mpsc::UnboundedReceiver<OpenedStream>,
    pub(crate) connected: bool,
    pub(crate) closed: usize,
    pub(crate) dial_error: Option<String>,
}

/// An honest message on its way.
pub(crate) struct HonestMsg {
    pub(crate) id: MessageId,
    pub(crate) text: String,
    pub(crate) sent: Instant,
}

/// The result of a flood: one outcome per script, in order, and the honest messages sent
/// meanwhile.
pub(crate) struct Flood {
    pub(crate) outcomes: Vec<StreamOutcome>,
    pub(crate) elapsed: Duration,
    pub(crate) honest: Vec<Duration>,
}

/// The node, the honest peer and the abusers, driven together.
pub(crate) struct World {
    pub(crate) node: Swarm<Behaviour>,
    pub(crate) node_id: PeerId,
    pub(crate) addr: Multiaddr,
    pub(crate) secret: Secret,
    pub(crate) honest: Swarm<Behaviour>,
    pub(crate) honest_id: PeerId,
    pub(crate) honest_session: Option<noctua_chat::SessionId>,
    pub(crate) abusers: Vec<Abuser>,
    pub(crate) node_events: Vec<(Instant, Event)>,
    pub(crate) node_swarm_events: Vec<String>,
    pub(crate) honest_events: Vec<(Instant, Event)>,
    pub(crate) scripts: HashMap<u64, Script>,
    pub(crate) outcomes: HashMap<u64, StreamOutcome>,
    done_tx: mpsc::UnboundedSender<(u64, StreamOutcome)>,
    done_rx: mpsc::UnboundedReceiver<(u64, StreamOutcome)>,
    next_tag: u64,
    /// How long a hostile stream may run before the abuser gives up on it.
    stream_limit: Duration,
    pub(crate) max: StateCounts,
    honest_latencies: Vec<Duration>,
    /// Honest messages sent and not confirmed yet.
    honest_pending: usize,
    pub(crate) log_start: usize,
    pub(crate) started: Instant,
    /// Whether the honest session may end (only when the test ends it itself).
    pub(crate) honest_may_close: bool,
}

impl World {
    /// Starts the node and the honest peer over TCP + Noise and opens their session.
    pub(crate) async fn new(config: Config) -> World {
        let mut w = World::start(config).await;
        w.open_honest_session().await;
        w
    }

    /// Starts the node and the honest peer (not connected yet).
    pub(crate) async fn start(config: Config) -> World {
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
    pub(crate) async fn until(
        &mut self,
        what: &str,
        limit: Duration,
        mut cond: impl FnMut(&World) -> bool,
    ) {
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
    pub(crate) async fn drive_for(&mut self, d: Duration) {
        let end = Instant::now() + d;
        self.until("time to pass", d + Duration::from_secs(1), |_| {
            Instant::now() >= end
        })
        .await;
    }

    // ----- abusers -----

    /// A new abusing identity, dialing the node from 127.0.0.1. Returns its index; whether
    /// the connection was accepted is in `connected` / `dial_error`.
    pub(crate) async fn add_abuser(&mut self) -> usize {
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
    pub(crate) async fn connected_abuser(&mut self) -> usize {
        let a = self.add_abuser().await;
        assert!(
            self.abusers[a].connected,
            "abuser refused: {:?}",
            self.abusers[a].dial_error
        );
        a
    }

    pub(crate) fn disconnect(&mut self, a: usize) {
        let node = self.node_id;
        let _ = self.abusers[a].swarm.disconnect_peer_id(node);
    }

    /// Starts `script` on a new stream of abuser `a`; its outcome appears under the tag.
    pub(crate) fn launch(&mut self, a: usize, script: Script) -> u64 {
        let tag = self.next_tag;
        self.next_tag += 1;
        self.scripts.insert(tag, script);
        let node = self.node_id;
        self.abusers[a].swarm.behaviour_mut().open(node, tag);
        tag
    }

    pub(crate) async fn outcome(&mut self, tag: u64) -> StreamOutcome {
        let limit = self.stream_limit + Duration::from_secs(5);
        self.until("a stream's outcome", limit, |w| {
            w.outcomes.contains_key(&tag)
        })
        .await;
        self.outcomes.remove(&tag).expect("checked above")
    }

    /// Sends one request on a new stream and returns what happened.
    pub(crate) async fn call(&mut self, a: usize, req: &Request) -> Outcome {
        let tag = self.launch(a, Script::request(req));
        self.outcome(tag).await.outcome
    }

    pub(crate) async fn expect_response(&mut self, a: usize, req: &Request) -> Response {
        match self.call(a, req).await {
            Outcome::Response(r) => r,
            other => panic!("{req:?}: expected a response, got {other:?}"),
        }
    }

    pub(crate) async fn expect_reject(&mut self, a: usize, req: &Request, code: RejectCode) -> u32 {
        match self.call(a, req).await {
            Outcome::Response(Response::Reject { code: c, detail }) if c == code => detail,
            other => panic!("{req:?}: expected REJECT {code:?}, got {other:?}"),
        }
    }

    /// A handshake of abuser `a` towards the node with `secret` (not sent yet).
    pub(crate) fn initiator(&self, a: usize, secret: &str) -> SpecInitiator {
        SpecInitiator::new(
            self.abusers[a].id,
            self.node_id,
            secret.as_bytes(),
            spec_rsa_key(),
        )
    }

    /// A complete, honest handshake of abuser `a` (it knows the secret): the session, and
    /// the `HELLO` and `AUTH` it sent.
    pub(crate) async fn handshake(&mut self, a: usize) -> (SpecSession, Request, Request) {
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
    pub(crate) async fn send_acked(&mut self, a: usize, s: &SpecSession, rec: Record) {
        match self.expect_response(a, &Request::Record(rec.clone())).await {
            Response::Ack(ack) => s.verify_ack(&rec, &ack).expect("ACK verifies"),
            other => panic!("{rec:?}: expected ACK, got {other:?}"),
        }
    }

    /// A rotation driven by the abuser's session (§7).
    pub(crate) async fn rotate(&mut self, a: usize, s: &mut SpecSession) {
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
    pub(crate) async fn flood(
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

    /// Waits for the receipt of an honest message (and its arrival at the node), at most
    /// [`HONEST_LIVENESS`]; returns the latency, for the summary line.
    async fn honest_wait(&mut self, m: HonestMsg) -> Duration {
        let limit = HONEST_LIVENESS;
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
        self.honest_latencies.push(latency);
        self.honest_pending -= 1;
        latency
    }

    pub(crate) async fn honest_roundtrip(&mut self, text: &str) -> Duration {
        let m = self.honest_send(text);
        self.honest_wait(m).await
    }

    // ----- checks -----

    pub(crate) fn assert_bounded(&self, case: &str, b: StateCounts) {
        assert!(
            within_bounds(&self.max, &b),
            "{case}: state grew beyond its bounds: max {:?}, bounds {b:?}",
            self.max
        );
    }

    /// Waits until the node holds only the honest session again, and checks that it is the
    /// same session as before, active and never refused anything.
    pub(crate) async fn back_to_baseline(&mut self, limit: Duration) -> Duration {
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
    pub(crate) fn lines_about(&self, peer: &PeerId) -> Vec<String> {
        let id = peer.to_string();
        log_capture::since(self.log_start)
            .lines()
            .filter(|l| l.contains(&id))
            .map(str::to_owned)
            .collect()
    }

    /// Warnings naming abuser `a`: (the node's own, libp2p's and others').
    pub(crate) fn warnings_about(&self, a: usize) -> (Vec<String>, Vec<String>) {
        self.lines_about(&self.abusers[a].id)
            .into_iter()
            .filter(|l| log_capture::is_warning(l))
            .partition(|l| l.contains(" noctua_chat::"))
    }

    /// Lines at INFO naming abuser `a`, from the node itself.
    pub(crate) fn infos_about(&self, a: usize) -> Vec<String> {
        self.lines_about(&self.abusers[a].id)
            .into_iter()
            .filter(|l| log_capture::level(l) == Some("INFO") && l.contains(" noctua_chat::"))
            .collect()
    }

    /// Checks (c) for every abuser and prints the case's summary line.
    pub(crate) fn finish(&self, case: &str, notes: &[String]) {
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

pub(crate) fn short(p: &PeerId) -> String {
    let s = p.to_string();
    s[s.len() - 6..].to_owned()
}

/// The message part of a captured line (after the target).
pub(crate) fn message_of(line: &str) -> String {
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
pub(crate) fn random_record(
    session_id: [u8; 16],
    epoch: u32,
    sender: Role,
    seq: u64,
    len: usize,
) -> Record {
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

pub(crate) fn chat(id: u64, text: &str) -> Content {
    chat_content(id, &[text])
}

pub(crate) fn expect_all(
    flood: &Flood,
    range: std::ops::Range<usize>,
    code: RejectCode,
    what: &str,
) {
    for (i, o) in flood.outcomes[range.clone()].iter().enumerate() {
        assert_eq!(
            o.outcome.reject_code(),
            Some(code),
            "{what} #{i}: expected REJECT {code:?}, got {:?}",
            o.outcome
        );
    }
}
