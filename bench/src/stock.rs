//! The stock baseline: libp2p `request_response` with the cbor codec, on the same swarm
//! configuration and transports as Noctua, no application crypto. A request carries the
//! message text (a CBOR string), the response a `u64` (the text's length): the response
//! is the delivery receipt.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::request_response::{self, Message, OutboundRequestId, ProtocolSupport, cbor};
use libp2p::swarm::SwarmEvent;
use libp2p::swarm::dial_opts::DialOpts;
use libp2p::{Multiaddr, PeerId, StreamProtocol, Swarm};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::net::{self, Transport};
use crate::pair::{MESSAGE_TIMEOUT, PairClient, Run, payload};

/// The stock behaviour.
pub type Stock = cbor::Behaviour<String, u64>;

/// Streams (requests) per connection the stock behaviour accepts at once. Its default is
/// 100, which would drop requests with 256 outstanding; raised so that the baseline is not
/// handicapped by a limit Noctua avoids by coalescing.
pub const MAX_STREAMS: usize = 1024;

/// The stock behaviour with Noctua's request timeout (10 s).
pub fn behaviour() -> Stock {
    cbor::Behaviour::new(
        [(
            StreamProtocol::new("/noctua-bench/stock/1.0.0"),
            ProtocolSupport::Full,
        )],
        request_response::Config::default()
            .with_request_timeout(Duration::from_secs(10))
            .with_max_concurrent_streams(MAX_STREAMS),
    )
}

/// A swarm running the stock behaviour.
pub fn swarm(lazy: bool) -> Swarm<Stock> {
    net::build_swarm(lazy, |_| behaviour())
}

/// Counters kept by an actor node.
#[derive(Debug, Default)]
pub struct Counters {
    /// Requests received (and answered), `hello`s excepted.
    pub received: AtomicU64,
    /// `hello` requests received (and answered): set-up, not messages.
    pub hellos: AtomicU64,
}

/// A command for an actor node.
#[derive(Debug)]
pub enum Cmd {
    /// Dial an address; once connected, send a `hello` request: its response makes the
    /// "session" (the stock equivalent of a Noctua handshake).
    Dial(Multiaddr),
    /// Send one request to a connected peer.
    Send(PeerId, String),
    /// Stop the node.
    Stop,
}

/// What an actor node reports.
#[derive(Debug)]
pub enum Ev {
    /// The `hello` exchange after a dial to this peer completed.
    Session(PeerId),
    /// A dial or its `hello` failed.
    DialFailed(String),
    /// A response (receipt) arrived.
    Delivered,
    /// A request failed.
    Failed(PeerId, String),
}

/// Events of actor nodes: (node index, event, when the node saw it).
pub type EvTx = mpsc::UnboundedSender<(usize, Ev, Instant)>;

/// The request that makes a "session" after a dial (never a benchmark message: those are
/// runs of `x`).
const HELLO: &str = "hello";

/// Answers a request: the receipt is the text's length.
fn answer(
    swarm: &mut Swarm<Stock>,
    request: &str,
    channel: request_response::ResponseChannel<u64>,
) {
    let _ = swarm
        .behaviour_mut()
        .send_response(channel, request.len() as u64);
}

/// A stock node running on its own task: answers every request, and sends what it is told.
pub struct Node {
    /// Its libp2p id.
    pub peer: PeerId,
    /// Its listen address, with `/p2p/`.
    pub addr: Multiaddr,
    /// Its counters.
    pub counters: Arc<Counters>,
    cmd: mpsc::UnboundedSender<Cmd>,
    join: JoinHandle<()>,
}

impl Node {
    /// Builds, starts listening and spawns node `idx`.
    pub async fn spawn(idx: usize, transport: Transport, lazy: bool, events: Option<EvTx>) -> Node {
        let mut swarm = swarm(lazy);
        let addr = net::listen(&mut swarm, transport).await;
        let peer = *swarm.local_peer_id();
        let counters = Arc::new(Counters::default());
        let (cmd, mut rx) = mpsc::unbounded_channel();
        let c = counters.clone();
        let emit = move |ev: Ev| {
            if let Some(tx) = &events {
                let _ = tx.send((idx, ev, Instant::now()));
            }
        };
        let join = tokio::spawn(async move {
            let mut hellos: HashSet<OutboundRequestId> = HashSet::new();
            loop {
                tokio::select! {
                    cmd = rx.recv() => match cmd {
                        Some(Cmd::Dial(a)) => {
                            // A new port per dial, as Noctua dials (`Behaviour::connect`):
                            // two nodes dialing each other from their listening ports
                            // would make one TCP simultaneous open on which both run
                            // Noise as the initiator, and fail.
                            let opts = DialOpts::unknown_peer_id()
                                .address(a)
                                .allocate_new_port()
                                .build();
                            if let Err(e) = swarm.dial(opts) {
                                emit(Ev::DialFailed(e.to_string()));
                            }
                        }
                        Some(Cmd::Send(p, text)) => {
                            swarm.behaviour_mut().send_request(&p, text);
                        }
                        Some(Cmd::Stop) | None => break,
                    },
                    ev = swarm.select_next_some() => match ev {
                        SwarmEvent::ConnectionEstablished { peer_id, endpoint, .. }
                            if endpoint.is_dialer() =>
                        {
                            let id = swarm.behaviour_mut().send_request(&peer_id, HELLO.into());
                            hellos.insert(id);
                        }
                        SwarmEvent::OutgoingConnectionError { error, .. } => {
                            emit(Ev::DialFailed(error.to_string()))
                        }
                        SwarmEvent::Behaviour(request_response::Event::Message { peer, message, .. }) => {
                            match message {
                                Message::Request { request, channel, .. } => {
                                    let counter = if request == HELLO { &c.hellos } else { &c.received };
                                    counter.fetch_add(1, Ordering::Relaxed);
                                    answer(&mut swarm, &request, channel);
                                }
                                Message::Response { request_id, .. } => {
                                    if hellos.remove(&request_id) {
                                        emit(Ev::Session(peer));
                                    } else {
                                        emit(Ev::Delivered);
                                    }
                                }
                            }
                        }
                        SwarmEvent::Behaviour(request_response::Event::OutboundFailure {
                            peer, request_id, error, ..
                        }) => {
                            if hellos.remove(&request_id) {
                                emit(Ev::DialFailed(error.to_string()));
                            } else {
                                emit(Ev::Failed(peer, error.to_string()));
                            }
                        }
                        _ => {}
                    },
                }
            }
        });
        Node {
            peer,
            addr,
            counters,
            cmd,
            join,
        }
    }

    /// Sends a command (ignored once the node stopped).
    pub fn send(&self, cmd: Cmd) {
        let _ = self.cmd.send(cmd);
    }

    /// Stops the node and waits for its task.
    pub async fn stop(self) {
        let _ = self.cmd.send(Cmd::Stop);
        let _ = self.join.await;
    }
}

/// A measuring client polled by the measurement loop; the server is an actor [`Node`].
pub struct Client {
    swarm: Swarm<Stock>,
    server: Node,
}

enum Outcome {
    Response(OutboundRequestId),
    Failure(OutboundRequestId),
    Other,
}

impl Client {
    /// Starts a server and a client swarm (setup), then times dial + first request/response
    /// (the stock counterpart of "dial to session active").
    pub async fn connect(transport: Transport, lazy: bool) -> Result<(Client, Duration), String> {
        let server = Node::spawn(0, transport, lazy, None).await;
        let swarm = swarm(lazy);
        let mut client = Client { swarm, server };
        let t0 = Instant::now();
        client
            .swarm
            .dial(client.server.addr.clone())
            .map_err(|e| e.to_string())?;
        let deadline = t0 + MESSAGE_TIMEOUT;
        let server = client.server.peer;
        loop {
            let ev = tokio::time::timeout_at(deadline.into(), client.swarm.select_next_some())
                .await
                .map_err(|_| "dial timed out".to_string())?;
            match ev {
                SwarmEvent::ConnectionEstablished { peer_id, .. } if peer_id == server => break,
                SwarmEvent::OutgoingConnectionError { error, .. } => return Err(error.to_string()),
                _ => {}
            }
        }
        let id = client
            .swarm
            .behaviour_mut()
            .send_request(&server, HELLO.into());
        loop {
            match client.next(deadline).await {
                None => return Err("hello timed out".into()),
                Some(Outcome::Response(r)) if r == id => return Ok((client, t0.elapsed())),
                Some(Outcome::Failure(r)) if r == id => return Err("hello failed".into()),
                _ => {}
            }
        }
    }

    /// Stops both sides.
    pub async fn close(self) {
        drop(self.swarm);
        self.server.stop().await;
    }

    async fn next(&mut self, deadline: Instant) -> Option<Outcome> {
        loop {
            let ev = tokio::time::timeout_at(deadline.into(), self.swarm.select_next_some())
                .await
                .ok()?;
            return Some(match ev {
                SwarmEvent::Behaviour(request_response::Event::Message {
                    message: Message::Response { request_id, .. },
                    ..
                }) => Outcome::Response(request_id),
                SwarmEvent::Behaviour(request_response::Event::OutboundFailure {
                    request_id,
                    ..
                }) => Outcome::Failure(request_id),
                SwarmEvent::Behaviour(_) => Outcome::Other,
                _ => continue,
            });
        }
    }
}

impl PairClient for Client {
    async fn rtt(&mut self, n: usize, size: usize) -> Run {
        let text = payload(size);
        let server = self.server.peer;
        let mut run = Run::default();
        let start = Instant::now();
        for _ in 0..n {
            let t = text.clone();
            let t0 = Instant::now();
            let id = self.swarm.behaviour_mut().send_request(&server, t);
            let deadline = t0 + MESSAGE_TIMEOUT;
            loop {
                match self.next(deadline).await {
                    None => {
                        run.lost += 1;
                        break;
                    }
                    Some(Outcome::Response(r)) if r == id => {
                        run.lat_ms.push(crate::stats::ms(t0.elapsed()));
                        run.delivered += 1;
                        break;
                    }
                    Some(Outcome::Failure(r)) if r == id => {
                        run.lost += 1;
                        break;
                    }
                    _ => {}
                }
            }
        }
        run.elapsed = start.elapsed();
        run
    }

    async fn throughput(&mut self, total: usize, window: usize, size: usize) -> Run {
        let text = payload(size);
        let server = self.server.peer;
        let mut run = Run::default();
        let mut outstanding: HashMap<OutboundRequestId, Instant> =
            HashMap::with_capacity(window * 2);
        let (mut sent, mut done) = (0usize, 0usize);
        let start = Instant::now();
        let mut last_progress = start;
        while done < total {
            while outstanding.len() < window && sent < total {
                let id = self
                    .swarm
                    .behaviour_mut()
                    .send_request(&server, text.clone());
                outstanding.insert(id, Instant::now());
                sent += 1;
            }
            match self.next(last_progress + MESSAGE_TIMEOUT).await {
                None => {
                    run.lost += (outstanding.len() + (total - sent)) as u64;
                    break;
                }
                Some(Outcome::Response(r)) => {
                    if let Some(t) = outstanding.remove(&r) {
                        run.lat_ms.push(crate::stats::ms(t.elapsed()));
                        run.delivered += 1;
                        done += 1;
                        last_progress = Instant::now();
                    }
                }
                Some(Outcome::Failure(r)) if outstanding.remove(&r).is_some() => {
                    run.lost += 1;
                    done += 1;
                }
                Some(_) => {}
            }
        }
        run.elapsed = start.elapsed();
        run
    }

    fn server_received(&self) -> u64 {
        self.server.counters.received.load(Ordering::Relaxed)
    }
}
