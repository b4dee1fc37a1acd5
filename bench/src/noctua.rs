//! Noctua in process: nodes running `noctua_chat::Behaviour` on the shared swarm
//! configuration, as background actors (servers, mesh nodes, peers of a node process) or as
//! a measuring client polled by the measurement loop itself.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, Swarm};
use noctua_chat::{
    Behaviour, Config, Event, MessageId, OpenError, OpenId, Role, RsaKeyPair, Secret, SendError,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::net::{self, Transport};
use crate::pair::{MESSAGE_TIMEOUT, PairClient, Run, payload};

/// The connection secret of benchmark node `i`.
pub fn secret(i: usize) -> Secret {
    Secret::new(format!("bench-secret-{i}")).expect("valid secret")
}

/// A node configuration: secret `i`, the given pre-generated key, no key regeneration
/// (nothing may generate keys inside a timed section); every other setting at its default.
pub fn config(i: usize, key: Arc<RsaKeyPair>) -> Config {
    Config::new(secret(i))
        .with_name(format!("bench{i}"))
        .with_rsa_key(key)
        .with_rsa_regenerate_every(None)
}

/// The secret every node of a mesh shares (as the nodes of a lab do): a node opens
/// sessions to the peers it discovers with its own secret.
pub fn mesh_secret() -> Secret {
    Secret::new("bench-mesh-secret").expect("valid secret")
}

/// [`config`] with the shared [`mesh_secret`], for node `i` of an in-process mesh of `n`.
/// Every in-process node dials from 127.0.0.1, so the per-address limits (SPEC.md §8:
/// 8 connections in their transport handshake, 8 handshakes, a burst of 64 `HELLO`s per
/// address) would act as limits on the whole mesh, which a lab, where each node has an
/// address of its own, never meets: they are raised to what `n` peers need. With the
/// defaults, 881 automatic opens of a 32-node mesh were refused and retried.
pub fn mesh_config(i: usize, n: usize, key: Arc<RsaKeyPair>) -> Config {
    let peers = n.max(8);
    Config::new(mesh_secret())
        .with_name(format!("bench{i}"))
        .with_rsa_key(key)
        .with_rsa_regenerate_every(None)
        .with_max_unauthenticated_per_address(2 * peers, 2 * peers)
        .with_max_handshakes_per_address(2 * peers)
        .with_hello_rate_per_address((4 * peers) as u32, Duration::from_millis(50))
}

/// A swarm running the chat behaviour, negotiating its streams with `V1Lazy` as the node
/// does (`src/node/swarm.rs`), whatever `--lazy` says: that flag is for the stock baseline.
pub fn swarm(cfg: Config, _lazy: bool) -> Swarm<Behaviour> {
    net::build_swarm(true, |kp| Behaviour::new(kp.public().to_peer_id(), cfg))
}

/// Counters kept by an actor node.
#[derive(Debug, Default)]
pub struct Counters {
    /// Chat messages received.
    pub received: AtomicU64,
    /// Rotations completed.
    pub rotated: AtomicU64,
    /// Automatic opens ([`Cmd::Discover`]) that failed and were retried.
    pub open_retries: AtomicU64,
}

/// A command for an actor node.
#[derive(Debug)]
pub enum Cmd {
    /// Dial an address and open a session with the given secret.
    Connect(Multiaddr, Secret),
    /// A peer was "discovered" at this address, as mDNS tells a node: open a session with
    /// the secret unless one exists, the way `noctua --auto-connect` does (`src/node/auto.rs`:
    /// both sides open, so their opens cross; a failed open is retried after 1 s, then 2,
    /// 4, ... up to 16 s, unless the peer refused it; `AlreadyActive` means the other
    /// side's open won).
    Discover(PeerId, Multiaddr, Secret),
    /// Retry the automatic open to a discovered peer (sent by the node to itself).
    Retry(PeerId),
    /// Send one message to a peer with which a session is active.
    Send(PeerId, String),
    /// Stop the node.
    Stop,
}

/// What an actor node reports (received messages and rotations are only counted).
#[derive(Debug)]
pub enum Ev {
    /// A session is active; `initiator` tells whether this node opened it.
    Established {
        /// The peer.
        peer: PeerId,
        /// Whether this node is the session's initiator.
        initiator: bool,
    },
    /// An open failed.
    OpenFailed(String),
    /// A message was confirmed by the peer.
    Delivered,
    /// A message was not delivered.
    Failed(PeerId, String),
    /// A session closed.
    Closed(PeerId, String),
}

/// Events of actor nodes: (node index, event, when the node saw it).
pub type EvTx = mpsc::UnboundedSender<(usize, Ev, Instant)>;

/// A chat node running on its own task.
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
    /// Builds, starts listening (setup, not timed) and spawns node `idx`.
    pub async fn spawn(
        idx: usize,
        cfg: Config,
        transport: Transport,
        lazy: bool,
        events: Option<EvTx>,
    ) -> Node {
        let mut swarm = swarm(cfg, lazy);
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
        let retry_tx = cmd.clone();
        let debug = std::env::var_os("NOCTUA_BENCH_DEBUG").is_some();
        let join = tokio::spawn(async move {
            let mut auto = Auto::default();
            loop {
                tokio::select! {
                    cmd = rx.recv() => match cmd {
                        Some(Cmd::Connect(a, s)) => {
                            swarm.behaviour_mut().connect(a, s);
                        }
                        Some(Cmd::Discover(peer, addr, secret)) => {
                            auto.discovered.insert(peer, (addr, secret));
                            auto.open(&mut swarm, peer);
                        }
                        Some(Cmd::Retry(peer)) => {
                            if debug {
                                eprintln!("[debug] node {idx}: retry {peer}");
                            }
                            auto.open(&mut swarm, peer)
                        }
                        Some(Cmd::Send(p, text)) => {
                            if let Err(e) = swarm.behaviour_mut().send_message(&p, text) {
                                emit(Ev::Failed(p, e.to_string()));
                            }
                        }
                        Some(Cmd::Stop) | None => {
                            if debug && !auto.opens.is_empty() {
                                eprintln!(
                                    "[debug] node {idx}: {} automatic open(s) still waiting, {} session(s)",
                                    auto.opens.len(),
                                    auto.sessions.len()
                                );
                            }
                            break;
                        }
                    },
                    ev = swarm.select_next_some() => {
                        let SwarmEvent::Behaviour(ev) = ev else { continue };
                        match ev {
                            Event::SessionEstablished { peer, role, opens, .. } => {
                                auto.sessions.insert(peer);
                                for o in opens {
                                    auto.opens.remove(&o);
                                }
                                emit(Ev::Established {
                                    peer,
                                    initiator: role == Role::Initiator,
                                })
                            }
                            Event::OpenFailed { open, error, .. } => {
                                if debug {
                                    eprintln!("[debug] node {idx}: open {open:?} failed: {error:?}");
                                }
                                match auto.failed(open, &error) {
                                    // Not an automatic open: the caller decides.
                                    None => emit(Ev::OpenFailed(error.to_string())),
                                    Some((_, Verdict::Nothing)) => {}
                                    Some((peer, Verdict::Retry(delay))) => {
                                        c.open_retries.fetch_add(1, Ordering::Relaxed);
                                        let tx = retry_tx.clone();
                                        tokio::spawn(async move {
                                            tokio::time::sleep(delay).await;
                                            let _ = tx.send(Cmd::Retry(peer));
                                        });
                                    }
                                    Some((_, Verdict::Final)) => emit(Ev::OpenFailed(error.to_string())),
                                }
                            }
                            Event::MessageDelivered { .. } => emit(Ev::Delivered),
                            Event::DeliveryFailed { peer, error, .. } => {
                                emit(Ev::Failed(peer, error.to_string()))
                            }
                            Event::SessionClosed { peer, reason, .. } => {
                                auto.sessions.remove(&peer);
                                emit(Ev::Closed(peer, reason.to_string()))
                            }
                            Event::MessageReceived { .. } => {
                                c.received.fetch_add(1, Ordering::Relaxed);
                            }
                            Event::SessionRotated { .. } => {
                                c.rotated.fetch_add(1, Ordering::Relaxed);
                            }
                            _ => {}
                        }
                    }
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

/// What became of a failed automatic open.
enum Verdict {
    /// The other side's crossing open made the session: nothing ended.
    Nothing,
    /// Try again after this delay.
    Retry(Duration),
    /// The peer refused: never again (reported).
    Final,
}

/// Automatic opens of a node (the bookkeeping of `src/node/auto.rs`, for the mesh).
#[derive(Default)]
struct Auto {
    /// Discovered peers: their address and the secret to open with.
    discovered: HashMap<PeerId, (Multiaddr, Secret)>,
    /// Automatic opens under way.
    opens: HashMap<OpenId, PeerId>,
    /// Peers with a session now.
    sessions: HashSet<PeerId>,
    /// The last retry delay per peer.
    delays: HashMap<PeerId, Duration>,
}

impl Auto {
    /// Opens a session with a discovered `peer` unless one exists or is being opened.
    fn open(&mut self, swarm: &mut Swarm<Behaviour>, peer: PeerId) {
        if self.sessions.contains(&peer) || self.opens.values().any(|p| *p == peer) {
            return;
        }
        if let Some((addr, secret)) = self.discovered.get(&peer) {
            // Given again before every open: the swarm forgets an address whose dial
            // failed, while mDNS, which it stands for, goes on answering with it.
            swarm.add_peer_address(peer, addr.clone());
            let open = swarm.behaviour_mut().open_session(peer, secret.clone());
            self.opens.insert(open, peer);
        }
    }

    /// Whether `open` was automatic, and what to do about its failure.
    fn failed(&mut self, open: OpenId, error: &OpenError) -> Option<(PeerId, Verdict)> {
        let peer = self.opens.remove(&open)?;
        let verdict = match error {
            OpenError::AlreadyActive => Verdict::Nothing,
            _ if self.sessions.contains(&peer) => Verdict::Nothing,
            OpenError::WrongSecret
            | OpenError::PeerAuthFailed
            | OpenError::RateLimited(_)
            | OpenError::UnsupportedProtocol
            | OpenError::Rejected(_)
            | OpenError::Refused => Verdict::Final,
            _ => {
                let last = self.delays.get(&peer).copied().unwrap_or(Duration::ZERO);
                let delay = if last.is_zero() {
                    Duration::from_secs(1)
                } else {
                    (last * 2).min(Duration::from_secs(16))
                };
                self.delays.insert(peer, delay);
                Verdict::Retry(delay)
            }
        };
        Some((peer, verdict))
    }
}

/// A measuring client: its swarm is polled by the measurement loop itself, so no channel
/// hop sits between a send and its receipt. The server is an actor [`Node`].
pub struct Client {
    swarm: Swarm<Behaviour>,
    server: Node,
    /// Rotations the client saw complete.
    pub rotations: u64,
}

/// Why a handshake did not complete.
pub type OpenFailure = String;

impl Client {
    /// Starts a server node (`server_cfg`, secret index `server_idx`) and a client swarm
    /// (setup, not timed), then times the client's dial to the active session.
    pub async fn connect(
        server_idx: usize,
        server_cfg: Config,
        client_cfg: Config,
        transport: Transport,
        lazy: bool,
    ) -> Result<(Client, Duration), OpenFailure> {
        let server = Node::spawn(server_idx, server_cfg, transport, lazy, None).await;
        let swarm = swarm(client_cfg, lazy);
        let mut client = Client {
            swarm,
            server,
            rotations: 0,
        };
        let t0 = Instant::now();
        let open = client
            .swarm
            .behaviour_mut()
            .connect(client.server.addr.clone(), secret(server_idx));
        let deadline = t0 + MESSAGE_TIMEOUT;
        loop {
            match client.next_event(deadline).await {
                None => return Err("handshake timed out".into()),
                Some(Event::SessionEstablished { opens, .. }) if opens.contains(&open) => {
                    return Ok((client, t0.elapsed()));
                }
                Some(Event::OpenFailed { open: o, error, .. }) if o == open => {
                    return Err(error.to_string());
                }
                _ => {}
            }
        }
    }

    /// Stops both sides.
    pub async fn close(self) {
        drop(self.swarm);
        self.server.stop().await;
    }

    async fn next_event(&mut self, deadline: Instant) -> Option<Event> {
        loop {
            match tokio::time::timeout_at(deadline.into(), self.swarm.select_next_some()).await {
                Err(_) => return None,
                Ok(SwarmEvent::Behaviour(ev)) => return Some(ev),
                Ok(_) => {}
            }
        }
    }

    /// Sequential round trips; every `rotate_every` messages a rotation is started with
    /// [`Behaviour::rotate`] just before the next send (if one is not already running).
    pub async fn rtt_rotating(
        &mut self,
        n: usize,
        size: usize,
        rotate_every: Option<usize>,
    ) -> Run {
        let text = payload(size);
        let server = self.server.peer;
        let mut run = Run::default();
        let start = Instant::now();
        for i in 0..n {
            if rotate_every.is_some_and(|every| i > 0 && i % every == 0) {
                let _ = self.swarm.behaviour_mut().rotate(&server);
            }
            let t = text.clone();
            let t0 = Instant::now();
            let id = match self.swarm.behaviour_mut().send_message(&server, t) {
                Ok(id) => id,
                Err(_) => {
                    run.lost += 1;
                    continue;
                }
            };
            let deadline = t0 + MESSAGE_TIMEOUT;
            loop {
                match self.next_event(deadline).await {
                    None => {
                        eprintln!("[bench] noctua message {id} timed out");
                        run.lost += 1;
                        break;
                    }
                    Some(Event::MessageDelivered { message, .. }) if message == id => {
                        run.lat_ms.push(crate::stats::ms(t0.elapsed()));
                        run.delivered += 1;
                        break;
                    }
                    Some(Event::DeliveryFailed { message, error, .. }) if message == id => {
                        eprintln!("[bench] noctua message {id} failed: {error}");
                        run.lost += 1;
                        break;
                    }
                    Some(Event::SessionClosed { reason, .. }) => {
                        eprintln!("[bench] noctua session closed: {reason}");
                    }
                    Some(Event::SessionRotated { .. }) => self.rotations += 1,
                    _ => {}
                }
            }
        }
        run.elapsed = start.elapsed();
        run
    }
}

impl PairClient for Client {
    async fn rtt(&mut self, n: usize, size: usize) -> Run {
        self.rtt_rotating(n, size, None).await
    }

    async fn throughput(&mut self, total: usize, window: usize, size: usize) -> Run {
        let text = payload(size);
        let server = self.server.peer;
        let mut run = Run::default();
        let mut outstanding: HashMap<MessageId, Instant> = HashMap::with_capacity(window * 2);
        let (mut sent, mut done) = (0usize, 0usize);
        let start = Instant::now();
        let mut last_progress = start;
        while done < total {
            while outstanding.len() < window && sent < total {
                match self
                    .swarm
                    .behaviour_mut()
                    .send_message(&server, text.clone())
                {
                    Ok(id) => {
                        outstanding.insert(id, Instant::now());
                        sent += 1;
                    }
                    Err(SendError::QueueFull) => break,
                    Err(_) => {
                        run.lost += 1;
                        sent += 1;
                        done += 1;
                    }
                }
            }
            match self.next_event(last_progress + MESSAGE_TIMEOUT).await {
                None => {
                    let missing = outstanding.len() + (total - sent);
                    run.lost += missing as u64;
                    break;
                }
                Some(Event::MessageDelivered { message, .. }) => {
                    if let Some(t) = outstanding.remove(&message) {
                        run.lat_ms.push(crate::stats::ms(t.elapsed()));
                        run.delivered += 1;
                        done += 1;
                        last_progress = Instant::now();
                    }
                }
                Some(Event::DeliveryFailed { message, error, .. })
                    if outstanding.remove(&message).is_some() =>
                {
                    eprintln!("[bench] noctua message {message} failed: {error}");
                    run.lost += 1;
                    done += 1;
                }
                Some(Event::SessionRotated { .. }) => self.rotations += 1,
                _ => {}
            }
        }
        run.elapsed = start.elapsed();
        run
    }

    fn server_received(&self) -> u64 {
        self.server.counters.received.load(Ordering::Relaxed)
    }
}
