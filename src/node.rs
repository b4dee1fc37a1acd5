//! The node: one libp2p swarm (TCP + QUIC, Noise, Yamux, mDNS, connection limits and the
//! chat behaviour) and its event loop.
//!
//! Data flows one way: transport -> behaviour -> this loop -> a face (terminal or headless)
//! through a bounded channel of [`Output`]s. Faces send [`Request`]s down one bounded
//! channel. Nothing here prints, and nothing here touches keys or nonces.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use libp2p::core::transport::ListenerId;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent, behaviour::toggle::Toggle};
use libp2p::{Multiaddr, PeerId, Swarm, connection_limits, mdns};
use noctua_chat::{
    Event as ChatEvent, MessageId, OpenError, OpenId, SafetyNumber, Secret, SessionInfo,
    SessionState,
};
use tokio::sync::{mpsc, oneshot};

use crate::commands::Line;
use crate::connstr::ConnString;
use crate::sanitize;

/// Everything the node needs to start.
pub struct NodeConfig {
    /// Display name.
    pub name: String,
    /// Our connection secret.
    pub secret: Secret,
    /// Addresses to listen on.
    pub listen: Vec<Multiaddr>,
    /// Announce and discover with mDNS.
    pub mdns: bool,
    /// Open sessions to every discovered peer with our own secret.
    pub auto_connect: bool,
    /// The chat protocol's configuration.
    pub chat: noctua_chat::Config,
}

/// A command from a face, with an optional signal sent when it has been carried out (for
/// `connect`: when the session is up or has failed). Scripted input waits on it so that
/// `connect ...` followed by a message does what it says.
pub struct Request {
    /// What to do.
    pub command: Command,
    /// Signalled when done.
    pub done: Option<oneshot::Sender<()>>,
}

/// What a face asks the node to do.
#[derive(Debug)]
pub enum Command {
    /// A parsed line of the command language.
    Line(Line),
    /// Leave now: close every session (peers see a goodbye).
    Exit,
    /// Input ended: wait for outstanding receipts, then leave.
    Finish,
}

/// One row of `sessions`.
#[derive(Debug, Clone)]
pub struct SessionRow {
    /// Display name.
    pub name: String,
    /// The peer.
    pub peer: PeerId,
    /// The snapshot.
    pub info: SessionInfo,
}

/// One row of `peers`.
#[derive(Debug, Clone)]
pub struct PeerRow {
    /// 1-based index, usable as `connect <n> <secret>`.
    pub index: usize,
    /// The peer.
    pub peer: PeerId,
    /// Display name if a session told us one.
    pub name: Option<String>,
    /// Addresses (discovered or connected).
    pub addrs: Vec<Multiaddr>,
    /// Whether a libp2p connection is open.
    pub connected: bool,
    /// Whether mDNS currently lists it.
    pub discovered: bool,
    /// Session state, if any.
    pub session: Option<SessionState>,
}

/// What the node reports to its face.
#[derive(Debug, Clone)]
pub enum Output {
    /// Listening; the node is ready to be shown to the user.
    Ready {
        /// Our name.
        name: String,
        /// Our libp2p id.
        peer: PeerId,
        /// The secret (for the banner only).
        secret: String,
        /// Connection strings, one per usable address (LAN addresses first).
        conn_strings: Vec<String>,
        /// Every listen address.
        listen: Vec<Multiaddr>,
    },
    /// A new listen address appeared after start.
    Listening(Multiaddr),
    /// The RSA key pair is ready (or regenerated).
    KeyReady {
        /// Modulus size.
        bits: usize,
        /// Generation (0 first).
        generation: u64,
    },
    /// Something worth a line (yellow).
    Notice(String),
    /// An error worth a line (red).
    Error(String),
    /// A connect attempt started.
    Connecting {
        /// What we dial, as the user typed it (secret left out).
        target: String,
    },
    /// A connect attempt failed.
    ConnectFailed {
        /// What we dialed (secret left out).
        target: String,
        /// Why, one line.
        error: String,
    },
    /// A session is active.
    SessionEstablished {
        /// The peer.
        peer: PeerId,
        /// Its display name (sanitized, unique among current peers).
        name: String,
        /// Short session id.
        session: String,
        /// The safety number.
        safety_number: String,
        /// Whether the peer opened it.
        inbound: bool,
    },
    /// A session moved to a new epoch.
    SessionRotated {
        /// The peer.
        peer: PeerId,
        /// Display name.
        name: String,
        /// New epoch.
        epoch: u32,
    },
    /// A session ended.
    SessionClosed {
        /// The peer.
        peer: PeerId,
        /// Display name.
        name: String,
        /// Why, one line.
        reason: String,
    },
    /// Someone failed to authenticate to us.
    AuthFailed {
        /// The peer.
        peer: PeerId,
        /// Its address, if known.
        address: Option<IpAddr>,
        /// Whether it is now banned for a while.
        banned: bool,
    },
    /// A chat message arrived.
    Message {
        /// From.
        peer: PeerId,
        /// Display name (sanitized).
        name: String,
        /// Arrival time.
        at: SystemTime,
        /// Text (sanitized).
        text: String,
    },
    /// We sent a message (to one or several peers).
    Sent {
        /// Local id grouping the per-peer deliveries.
        local: u64,
        /// The text.
        text: String,
        /// Recipients.
        to: Vec<(PeerId, String)>,
        /// Time sent.
        at: SystemTime,
    },
    /// A sent message reached a peer.
    Delivered {
        /// Local id.
        local: u64,
        /// The peer.
        peer: PeerId,
        /// Display name.
        name: String,
    },
    /// A sent message did not reach a peer.
    DeliveryFailed {
        /// Local id.
        local: u64,
        /// The peer.
        peer: PeerId,
        /// Display name.
        name: String,
        /// Why.
        reason: String,
    },
    /// Answer to `sessions`.
    Sessions(Vec<SessionRow>),
    /// Answer to `peers`.
    Peers(Vec<PeerRow>),
    /// Answer to `verify`.
    Verify {
        /// The peer.
        peer: PeerId,
        /// Display name.
        name: String,
        /// The number to compare.
        safety_number: String,
    },
    /// mDNS found a peer.
    Discovered {
        /// The peer.
        peer: PeerId,
        /// Its addresses.
        addrs: Vec<Multiaddr>,
    },
    /// mDNS stopped seeing a peer.
    Expired {
        /// The peer.
        peer: PeerId,
    },
    /// The node stopped; nothing follows.
    Stopped,
}

#[derive(NetworkBehaviour)]
pub(crate) struct NodeBehaviour {
    limits: connection_limits::Behaviour,
    chat: noctua_chat::Behaviour,
    mdns: Toggle<mdns::tokio::Behaviour>,
}

/// The state of automatic connection to one discovered peer.
#[derive(Debug, Clone, Copy)]
enum Auto {
    /// An attempt is under way or a session exists.
    Busy,
    /// The connection was lost (partition, restart): try again at `at`. The delay
    /// doubles at each failure up to [`AUTO_RETRY_MAX`].
    Retry { at: tokio::time::Instant },
    /// The peer refused our secret (or we its): never again while it stays discovered.
    Refused,
}

/// First and largest delay between automatic reconnection attempts.
const AUTO_RETRY_MIN: Duration = Duration::from_secs(1);
const AUTO_RETRY_MAX: Duration = Duration::from_secs(16);

struct Connecting {
    label: String,
    addrs: VecDeque<Multiaddr>,
    secret: Secret,
    done: Option<oneshot::Sender<()>>,
    errors: Vec<String>,
}

/// How long a dial (connection and transport handshake) may take.
pub const DIAL_TIMEOUT: Duration = Duration::from_secs(5);
/// Most connections we keep (in and out); the chat behaviour bounds sessions itself.
const MAX_CONNECTIONS: u32 = 512;
/// How long `Finish` waits for receipts, and exit waits for goodbyes to be acknowledged.
const FINISH_WAIT: Duration = Duration::from_secs(12);
const GOODBYE_WAIT: Duration = Duration::from_secs(3);

/// The running node.
pub struct Node {
    swarm: Swarm<NodeBehaviour>,
    out: mpsc::Sender<Output>,
    name: String,
    secret: Secret,
    auto_connect: bool,
    names: HashMap<PeerId, String>,
    discovered: BTreeMap<PeerId, Vec<Multiaddr>>,
    /// Automatic connections: per discovered peer, what happened and when to try again.
    auto: HashMap<PeerId, Auto>,
    /// Opens started automatically, to route their outcome.
    auto_opens: HashMap<OpenId, PeerId>,
    /// The last delay used before reconnecting to each peer (for the backoff).
    auto_delays: HashMap<PeerId, Duration>,
    peer_list: Vec<PeerId>,
    connects: HashMap<OpenId, Connecting>,
    outstanding: HashMap<MessageId, (u64, PeerId)>,
    next_local: u64,
    /// Remote address of a connection to each connected peer (for `peers`).
    remote_addrs: HashMap<PeerId, Multiaddr>,
    listeners: HashSet<ListenerId>,
    /// Listeners whose addresses were already shown (banner or a later line).
    reported: HashSet<ListenerId>,
    listen_addrs: Vec<Multiaddr>,
}

/// Why the node could not start.
#[derive(Debug)]
pub struct StartError(pub String);

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Node {
    /// Builds the swarm and starts listening. Returns once the listen addresses are known
    /// (a few milliseconds), so that the banner can be printed at once; RSA key generation
    /// continues in the background.
    pub async fn start(cfg: NodeConfig, out: mpsc::Sender<Output>) -> Result<Self, StartError> {
        let mdns_on = cfg.mdns;
        let chat_cfg = cfg.chat;
        let mut swarm = libp2p::SwarmBuilder::with_new_identity()
            .with_tokio()
            .with_tcp(
                libp2p::tcp::Config::default().nodelay(true),
                libp2p::noise::Config::new,
                libp2p::yamux::Config::default,
            )
            .map_err(|e| StartError(format!("cannot set up TCP: {e}")))?
            .with_quic()
            .with_dns()
            .map_err(|e| StartError(format!("cannot set up DNS: {e}")))?
            .with_behaviour(|kp| {
                let peer = kp.public().to_peer_id();
                let mdns = if mdns_on {
                    match mdns::tokio::Behaviour::new(mdns_config(), peer) {
                        Ok(m) => Some(m),
                        Err(e) => {
                            tracing::warn!("mDNS unavailable: {e}");
                            None
                        }
                    }
                } else {
                    None
                };
                NodeBehaviour {
                    limits: connection_limits::Behaviour::new(
                        connection_limits::ConnectionLimits::default()
                            .with_max_established(Some(MAX_CONNECTIONS))
                            .with_max_established_per_peer(Some(4))
                            .with_max_pending_incoming(Some(64))
                            .with_max_pending_outgoing(Some(64)),
                    ),
                    chat: noctua_chat::Behaviour::new(peer, chat_cfg),
                    mdns: Toggle::from(mdns),
                }
            })
            .map_err(|e| StartError(format!("cannot build the node: {e}")))?
            .with_swarm_config(|c| {
                c.with_idle_connection_timeout(Duration::from_secs(30))
                    // Send each request with its protocol proposal instead of waiting for the
                    // peer to accept it first: one round trip fewer per message (BENCHMARKS.md).
                    // A peer that does not speak Noctua is still recognised (noctua-chat maps
                    // the late refusal).
                    .with_substream_upgrade_protocol_override(
                        libp2p::core::upgrade::Version::V1Lazy,
                    )
            })
            .with_connection_timeout(DIAL_TIMEOUT)
            .build();

        let mut listeners = HashSet::new();
        for addr in &cfg.listen {
            let id = swarm
                .listen_on(addr.clone())
                .map_err(|e| StartError(format!("cannot listen on {addr}: {e}")))?;
            listeners.insert(id);
        }
        let mut node = Node {
            swarm,
            out,
            name: cfg.name,
            secret: cfg.secret,
            auto_connect: cfg.auto_connect,
            names: HashMap::new(),
            discovered: BTreeMap::new(),
            auto: HashMap::new(),
            auto_opens: HashMap::new(),
            auto_delays: HashMap::new(),
            peer_list: Vec::new(),
            connects: HashMap::new(),
            outstanding: HashMap::new(),
            next_local: 1,
            remote_addrs: HashMap::new(),
            listeners,
            reported: HashSet::new(),
            listen_addrs: Vec::new(),
        };
        node.await_listeners(cfg.listen.len()).await?;
        Ok(node)
    }

    /// Polls the swarm until every listener reported an address (or failed).
    async fn await_listeners(&mut self, n: usize) -> Result<(), StartError> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        let mut reported: HashSet<ListenerId> = HashSet::new();
        let mut early = Vec::new();
        while reported.len() < n {
            let ev = tokio::time::timeout_at(deadline, self.swarm.select_next_some())
                .await
                .map_err(|_| StartError("listening did not start within 5 s".into()))?;
            match ev {
                SwarmEvent::NewListenAddr {
                    listener_id,
                    address,
                } => {
                    reported.insert(listener_id);
                    self.listen_addrs.push(address);
                }
                SwarmEvent::ListenerClosed {
                    listener_id,
                    reason,
                    ..
                } if self.listeners.contains(&listener_id) => {
                    let why = match reason {
                        Err(e) => e.to_string(),
                        Ok(()) => "closed".into(),
                    };
                    return Err(StartError(format!("cannot listen: {why}")));
                }
                SwarmEvent::ListenerError { error, .. } => {
                    return Err(StartError(format!("cannot listen: {error}")));
                }
                other => early.push(other),
            }
        }
        self.reported = reported;
        for ev in early {
            self.on_swarm_event(ev).await;
        }
        Ok(())
    }

    /// Our libp2p id.
    pub fn peer_id(&self) -> PeerId {
        *self.swarm.local_peer_id()
    }

    /// The banner's information.
    pub fn ready_output(&self) -> Output {
        Output::Ready {
            name: self.name.clone(),
            peer: self.peer_id(),
            secret: self.secret.expose().to_string(),
            conn_strings: conn_strings(&self.listen_addrs, self.secret.expose()),
            listen: self.listen_addrs.clone(),
        }
    }

    async fn emit(&mut self, o: Output) {
        // A face that went away is not an error for the node: it keeps running until told
        // to stop (or its command channel closes).
        let _ = self.out.send(o).await;
    }

    fn chat(&mut self) -> &mut noctua_chat::Behaviour {
        &mut self.swarm.behaviour_mut().chat
    }

    /// Runs until `exit`, the end of input, or the face going away.
    pub async fn run(mut self, mut requests: mpsc::Receiver<Request>) {
        let mut finish = false;
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                ev = self.swarm.select_next_some() => self.on_swarm_event(ev).await,
                _ = tick.tick(), if self.auto_connect => self.auto_retry(),
                req = requests.recv() => match req {
                    Some(Request { command: Command::Exit, done }) => {
                        if let Some(d) = done {
                            let _ = d.send(());
                        }
                        break;
                    }
                    Some(Request { command: Command::Finish, done }) => {
                        if let Some(d) = done {
                            let _ = d.send(());
                        }
                        finish = true;
                        break;
                    }
                    Some(Request { command: Command::Line(line), done }) => {
                        self.on_line(line, done).await;
                    }
                    None => break,
                },
            }
        }
        if finish {
            self.wait_for_receipts().await;
        }
        self.goodbye().await;
        self.emit(Output::Stopped).await;
    }

    async fn wait_for_receipts(&mut self) {
        let deadline = tokio::time::Instant::now() + FINISH_WAIT;
        while !self.outstanding.is_empty() || !self.connects.is_empty() {
            match tokio::time::timeout_at(deadline, self.swarm.select_next_some()).await {
                Ok(ev) => self.on_swarm_event(ev).await,
                Err(_) => {
                    let n = self.outstanding.len();
                    self.emit(Output::Notice(format!(
                        "gave up waiting for {n} receipt(s) after {} s",
                        FINISH_WAIT.as_secs()
                    )))
                    .await;
                    break;
                }
            }
        }
    }

    async fn goodbye(&mut self) {
        self.chat().shutdown();
        let deadline = tokio::time::Instant::now() + GOODBYE_WAIT;
        while self.swarm.behaviour().chat.closing_sessions() > 0 {
            match tokio::time::timeout_at(deadline, self.swarm.select_next_some()).await {
                Ok(ev) => self.on_swarm_event(ev).await,
                Err(_) => break,
            }
        }
    }

    // ----- commands -----

    async fn on_line(&mut self, line: Line, done: Option<oneshot::Sender<()>>) {
        let mut done = done;
        match line {
            Line::Empty | Line::Clear | Line::Help | Line::Exit => {}
            Line::Connect(cs) => {
                self.connect_string(*cs, done.take()).await;
            }
            Line::ConnectDiscovered { who, secret } => {
                self.connect_discovered(&who, &secret, done.take()).await;
            }
            Line::Sessions => {
                let rows = self.session_rows();
                self.emit(Output::Sessions(rows)).await;
            }
            Line::Peers => {
                let rows = self.peer_rows();
                self.emit(Output::Peers(rows)).await;
            }
            Line::Broadcast(text) => {
                let to: Vec<PeerId> = self
                    .swarm
                    .behaviour()
                    .chat
                    .sessions()
                    .filter(|s| matches!(s.state, SessionState::Active | SessionState::Rotating))
                    .map(|s| s.peer)
                    .collect();
                if to.is_empty() {
                    self.emit(Output::Notice(
                        "nobody to send to yet: connect to a peer first (see 'help')".into(),
                    ))
                    .await;
                } else {
                    self.send(text, to).await;
                }
            }
            Line::Msg { to, text } => match self.resolve(&to) {
                Ok(peer) if self.has_session(&peer) => self.send(text, vec![peer]).await,
                Ok(peer) => {
                    let n = self.display(&peer);
                    self.emit(Output::Error(format!("no session with {n}")))
                        .await;
                }
                Err(e) => self.emit(Output::Error(e)).await,
            },
            Line::Verify(who) => match self.resolve(&who) {
                Ok(peer) => match self.swarm.behaviour().chat.session(&peer) {
                    Some(s) => {
                        let name = self.display(&peer);
                        self.emit(Output::Verify {
                            peer,
                            name,
                            safety_number: s.safety_number.to_string(),
                        })
                        .await
                    }
                    None => {
                        let n = self.display(&peer);
                        self.emit(Output::Error(format!("no session with {n}")))
                            .await
                    }
                },
                Err(e) => self.emit(Output::Error(e)).await,
            },
            Line::Rotate(who) => {
                let peers: Vec<PeerId> = match who {
                    Some(w) => match self.resolve(&w) {
                        Ok(p) => vec![p],
                        Err(e) => return self.emit(Output::Error(e)).await,
                    },
                    None => self
                        .swarm
                        .behaviour()
                        .chat
                        .sessions()
                        .map(|s| s.peer)
                        .collect(),
                };
                if peers.is_empty() {
                    self.emit(Output::Notice("no sessions to rotate".into()))
                        .await;
                }
                for peer in peers {
                    let name = self.display(&peer);
                    match self.chat().rotate(&peer) {
                        Ok(()) => {
                            self.emit(Output::Notice(format!("rotating keys with {name}...")))
                                .await
                        }
                        Err(e) => {
                            self.emit(Output::Error(format!("cannot rotate with {name}: {e}")))
                                .await
                        }
                    }
                }
            }
            Line::Disconnect(who) => match self.resolve(&who) {
                Ok(peer) => {
                    let name = self.display(&peer);
                    if let Err(e) = self.chat().close_session(&peer) {
                        self.emit(Output::Error(format!("cannot disconnect {name}: {e}")))
                            .await;
                    }
                }
                Err(e) => self.emit(Output::Error(e)).await,
            },
        }
        if let Some(d) = done {
            let _ = d.send(());
        }
    }

    fn has_session(&self, peer: &PeerId) -> bool {
        self.swarm.behaviour().chat.session(peer).is_some()
    }

    async fn send(&mut self, text: String, to: Vec<PeerId>) {
        let local = self.next_local;
        self.next_local += 1;
        let mut recipients = Vec::new();
        let mut errors = Vec::new();
        for peer in to {
            let name = self.display(&peer);
            match self.chat().send_message(&peer, text.clone()) {
                Ok(id) => {
                    self.outstanding.insert(id, (local, peer));
                    recipients.push((peer, name));
                }
                Err(e) => errors.push((peer, name, e.to_string())),
            }
        }
        if !recipients.is_empty() || !errors.is_empty() {
            let mut all = recipients.clone();
            all.extend(errors.iter().map(|(p, n, _)| (*p, n.clone())));
            self.emit(Output::Sent {
                local,
                text,
                to: all,
                at: SystemTime::now(),
            })
            .await;
        }
        for (peer, name, reason) in errors {
            self.emit(Output::DeliveryFailed {
                local,
                peer,
                name,
                reason,
            })
            .await;
        }
    }

    async fn connect_string(&mut self, cs: ConnString, done: Option<oneshot::Sender<()>>) {
        let secret = match Secret::new(cs.secret.clone()) {
            Ok(s) => s,
            Err(e) => {
                self.emit(Output::Error(format!("bad secret: {e}"))).await;
                return signal(done);
            }
        };
        // `Target`'s Display brackets IPv6 hosts and leaves the secret out.
        let label = cs.target.to_string();
        let mut addrs: VecDeque<Multiaddr> = cs.dial_addrs().into();
        let Some(first) = addrs.pop_front() else {
            self.emit(Output::Error("nothing to dial".into())).await;
            return signal(done);
        };
        self.emit(Output::Connecting {
            target: label.clone(),
        })
        .await;
        let open = self.chat().connect(first, secret.clone());
        self.connects.insert(
            open,
            Connecting {
                label,
                addrs,
                secret,
                done,
                errors: Vec::new(),
            },
        );
    }

    async fn connect_discovered(
        &mut self,
        who: &str,
        secret: &str,
        done: Option<oneshot::Sender<()>>,
    ) {
        let secret = match Secret::new(secret) {
            Ok(s) => s,
            Err(e) => {
                self.emit(Output::Error(format!("bad secret: {e}"))).await;
                return signal(done);
            }
        };
        let peer = match self.resolve(who) {
            Ok(p) => p,
            Err(e) => {
                self.emit(Output::Error(e)).await;
                return signal(done);
            }
        };
        let label = self.display(&peer);
        self.emit(Output::Connecting {
            target: label.clone(),
        })
        .await;
        let open = self.chat().open_session(peer, secret.clone());
        self.connects.insert(
            open,
            Connecting {
                label,
                addrs: VecDeque::new(),
                secret,
                done,
                errors: Vec::new(),
            },
        );
    }

    // ----- names and targets -----

    /// The display name of a peer: its (sanitized, disambiguated) name if a session told
    /// us one, else `Peer_` and the end of its id.
    fn display(&self, peer: &PeerId) -> String {
        self.names
            .get(peer)
            .cloned()
            .unwrap_or_else(|| short_peer(peer))
    }

    fn assign_name(&mut self, peer: PeerId, remote: &str) -> String {
        let base = sanitize::name(remote);
        let base = if base.is_empty() {
            short_peer(&peer)
        } else {
            base
        };
        let taken = self
            .names
            .iter()
            .any(|(p, n)| *p != peer && n.eq_ignore_ascii_case(&base));
        let name = sanitize::disambiguate(&base, &peer.to_base58(), taken);
        self.names.insert(peer, name.clone());
        name
    }

    /// Finds a peer by display name, number in the last `peers` list, or id prefix.
    fn resolve(&self, who: &str) -> Result<PeerId, String> {
        let who = who.trim();
        if let Ok(n) = who.parse::<usize>() {
            return self
                .peer_list
                .get(n.wrapping_sub(1))
                .copied()
                .ok_or_else(|| format!("no peer number {n}: see 'peers'"));
        }
        let known = self.known_peers();
        let by_name: Vec<PeerId> = known
            .iter()
            .filter(|p| {
                self.names.get(p).is_some_and(|n| {
                    n.eq_ignore_ascii_case(who)
                        || n.split('#')
                            .next()
                            .is_some_and(|b| b.eq_ignore_ascii_case(who))
                })
            })
            .copied()
            .collect();
        let exact: Vec<PeerId> = by_name
            .iter()
            .filter(|p| {
                self.names
                    .get(p)
                    .is_some_and(|n| n.eq_ignore_ascii_case(who))
            })
            .copied()
            .collect();
        if exact.len() == 1 {
            return Ok(exact[0]);
        }
        match by_name.len() {
            1 => return Ok(by_name[0]),
            n if n > 1 => {
                let names: Vec<String> = by_name.iter().map(|p| self.display(p)).collect();
                return Err(format!("{who:?} is ambiguous: {}", names.join(", ")));
            }
            _ => {}
        }
        if who.len() >= 3 {
            let by_id: Vec<PeerId> = known
                .iter()
                .filter(|p| {
                    let s = p.to_base58();
                    s.starts_with(who) || s.ends_with(who)
                })
                .copied()
                .collect();
            match by_id.len() {
                1 => return Ok(by_id[0]),
                n if n > 1 => {
                    return Err(format!("{who:?} matches {n} peers: give more of the id"));
                }
                _ => {}
            }
        }
        Err(format!("no peer called {who:?}: see 'peers' or 'sessions'"))
    }

    fn known_peers(&self) -> Vec<PeerId> {
        let mut set: Vec<PeerId> = self
            .swarm
            .behaviour()
            .chat
            .sessions()
            .map(|s| s.peer)
            .collect();
        set.extend(self.swarm.connected_peers().copied());
        set.extend(self.discovered.keys().copied());
        set.sort();
        set.dedup();
        set
    }

    fn session_rows(&self) -> Vec<SessionRow> {
        let mut rows: Vec<SessionRow> = self
            .swarm
            .behaviour()
            .chat
            .sessions()
            .map(|info| SessionRow {
                name: self.display(&info.peer),
                peer: info.peer,
                info,
            })
            .collect();
        rows.sort_by(|a, b| a.name.cmp(&b.name));
        rows
    }

    fn peer_rows(&mut self) -> Vec<PeerRow> {
        let peers = self.known_peers();
        let chat = &self.swarm.behaviour().chat;
        let mut rows: Vec<PeerRow> = peers
            .iter()
            .map(|p| PeerRow {
                index: 0,
                peer: *p,
                name: self.names.get(p).cloned(),
                addrs: {
                    let mut a: Vec<Multiaddr> =
                        self.remote_addrs.get(p).cloned().into_iter().collect();
                    for d in self.discovered.get(p).into_iter().flatten() {
                        if !a.contains(d) {
                            a.push(d.clone());
                        }
                    }
                    a
                },
                connected: self.swarm.is_connected(p),
                discovered: self.discovered.contains_key(p),
                session: chat.session(p).map(|s| s.state),
            })
            .collect();
        rows.sort_by_key(|r| (r.session.is_none(), !r.connected, r.peer));
        for (i, r) in rows.iter_mut().enumerate() {
            r.index = i + 1;
        }
        self.peer_list = rows.iter().map(|r| r.peer).collect();
        rows
    }

    // ----- events -----

    async fn on_swarm_event(&mut self, ev: SwarmEvent<NodeBehaviourEvent>) {
        match ev {
            SwarmEvent::Behaviour(NodeBehaviourEvent::Chat(ev)) => self.on_chat(ev).await,
            SwarmEvent::Behaviour(NodeBehaviourEvent::Mdns(ev)) => self.on_mdns(ev).await,
            SwarmEvent::Behaviour(NodeBehaviourEvent::Limits(v)) => match v {},
            SwarmEvent::NewListenAddr {
                listener_id,
                address,
            } if self.listeners.contains(&listener_id) && !self.listen_addrs.contains(&address) => {
                // More interfaces of a listener the banner already covered are not news.
                let covered = self.reported.contains(&listener_id);
                self.listen_addrs.push(address.clone());
                if !covered {
                    self.reported.insert(listener_id);
                    self.emit(Output::Listening(address)).await;
                }
            }
            SwarmEvent::ConnectionEstablished {
                peer_id, endpoint, ..
            } => {
                self.remote_addrs
                    .insert(peer_id, endpoint.get_remote_address().clone());
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                self.remote_addrs.remove(&peer_id);
            }
            SwarmEvent::ExpiredListenAddr { address, .. } => {
                self.listen_addrs.retain(|a| *a != address);
            }
            SwarmEvent::ListenerError { error, .. } => {
                tracing::warn!("listener error: {error}");
            }
            SwarmEvent::IncomingConnectionError { error, .. } => {
                tracing::debug!("incoming connection failed: {error}");
            }
            _ => {}
        }
    }

    async fn on_chat(&mut self, ev: ChatEvent) {
        match ev {
            ChatEvent::KeyReady {
                bits, generation, ..
            } => self.emit(Output::KeyReady { bits, generation }).await,
            ChatEvent::KeyGenerationFailed { error } => {
                self.emit(Output::Error(format!("RSA key generation failed: {error}")))
                    .await
            }
            ChatEvent::SessionEstablished {
                peer,
                session_id,
                remote_name,
                safety_number,
                opens,
                ..
            } => {
                let name = self.assign_name(peer, &remote_name);
                let inbound = opens.is_empty();
                for open in opens {
                    self.auto_opens.remove(&open);
                    if let Some(c) = self.connects.remove(&open) {
                        signal(c.done);
                    }
                }
                if self.auto_connect {
                    self.auto.insert(peer, Auto::Busy);
                    self.auto_delays.remove(&peer);
                }
                self.emit(Output::SessionEstablished {
                    peer,
                    name,
                    session: session_id.short(),
                    safety_number: safety(&safety_number),
                    inbound,
                })
                .await;
            }
            ChatEvent::OpenFailed { open, error, .. } => self.on_open_failed(open, error).await,
            ChatEvent::InboundAuthFailed {
                peer,
                address,
                banned,
            } => {
                self.emit(Output::AuthFailed {
                    peer,
                    address,
                    banned,
                })
                .await
            }
            ChatEvent::SessionRotated { peer, epoch, .. } => {
                let name = self.display(&peer);
                self.emit(Output::SessionRotated { peer, name, epoch })
                    .await
            }
            ChatEvent::SessionClosed { peer, reason, .. } => {
                let name = self.display(&peer);
                self.names.remove(&peer);
                // A lost connection (partition, crash) is worth reconnecting to while the
                // peer is still discovered; a goodbye or our own close is not.
                let lost = matches!(
                    reason,
                    noctua_chat::CloseReason::ConnectionLost
                        | noctua_chat::CloseReason::PeerUnresponsive
                        | noctua_chat::CloseReason::RotationFailed(_)
                        | noctua_chat::CloseReason::RemoteForgot
                );
                if self.auto_connect {
                    if lost {
                        self.auto.entry(peer).or_insert(Auto::Busy);
                        self.auto_ended(peer, true);
                    } else {
                        self.auto.insert(peer, Auto::Refused);
                    }
                }
                self.emit(Output::SessionClosed {
                    peer,
                    name,
                    reason: reason.to_string(),
                })
                .await
            }
            ChatEvent::MessageReceived {
                peer,
                remote_name,
                message,
                ..
            } => {
                let name = match self.names.get(&peer) {
                    Some(n) => n.clone(),
                    None => self.assign_name(peer, &remote_name),
                };
                self.emit(Output::Message {
                    peer,
                    name,
                    at: SystemTime::now(),
                    text: sanitize::message(&message.text),
                })
                .await
            }
            ChatEvent::MessageDelivered { peer, message } => {
                if let Some((local, _)) = self.outstanding.remove(&message) {
                    let name = self.display(&peer);
                    self.emit(Output::Delivered { local, peer, name }).await;
                }
            }
            ChatEvent::DeliveryFailed {
                peer,
                message,
                error,
            } => {
                if let Some((local, _)) = self.outstanding.remove(&message) {
                    let name = self.display(&peer);
                    self.emit(Output::DeliveryFailed {
                        local,
                        peer,
                        name,
                        reason: error.to_string(),
                    })
                    .await;
                }
            }
            _ => {}
        }
    }

    async fn on_open_failed(&mut self, open: OpenId, error: OpenError) {
        if let Some(peer) = self.auto_opens.remove(&open) {
            // Automatic attempts fail quietly. A refused secret is final (no retry storms);
            // anything else (unreachable, timed out) is retried with a growing delay.
            tracing::debug!(%peer, "automatic connection failed: {error}");
            let refused = matches!(
                error,
                OpenError::WrongSecret
                    | OpenError::PeerAuthFailed
                    | OpenError::RateLimited(_)
                    | OpenError::UnsupportedProtocol
                    | OpenError::Refused(_)
            );
            let already = matches!(error, OpenError::AlreadyActive);
            if !already {
                self.auto_ended(peer, !refused);
            }
            return;
        }
        let Some(mut c) = self.connects.remove(&open) else {
            return;
        };
        // An unreachable first address (TCP) gets a second chance over the next one
        // (QUIC), unless the host actively refused it (wrong port: no point waiting for
        // QUIC to time out); anything the peer itself said is final.
        if let OpenError::Dial(why) = &error {
            c.errors.push(describe_dial(why, &c.label));
            if !why.contains("refused")
                && let Some(next) = c.addrs.pop_front()
            {
                let secret = c.secret.clone();
                let open = self.chat().connect(next, secret);
                self.connects.insert(open, c);
                return;
            }
            let msg = c
                .errors
                .first()
                .cloned()
                .unwrap_or_else(|| error.to_string());
            self.emit(Output::ConnectFailed {
                target: c.label,
                error: msg,
            })
            .await;
        } else {
            self.emit(Output::ConnectFailed {
                target: c.label,
                error: describe_open_error(&error),
            })
            .await;
        }
        signal(c.done);
    }

    /// Opens a session to a discovered peer with our own secret.
    fn auto_open(&mut self, peer: PeerId) {
        self.auto.insert(peer, Auto::Busy);
        let secret = self.secret.clone();
        let open = self.chat().open_session(peer, secret);
        self.auto_opens.insert(open, peer);
    }

    /// Retries automatic connections whose time has come, for peers still discovered.
    fn auto_retry(&mut self) {
        let now = tokio::time::Instant::now();
        let due: Vec<PeerId> = self
            .auto
            .iter()
            .filter(|(p, a)| {
                matches!(a, Auto::Retry { at } if *at <= now) && self.discovered.contains_key(p)
            })
            .map(|(p, _)| *p)
            .collect();
        for peer in due {
            if self.has_session(&peer) {
                self.auto.insert(peer, Auto::Busy);
                continue;
            }
            tracing::debug!(%peer, "reconnecting automatically");
            self.auto_open(peer);
        }
    }

    /// An automatic attempt or session with `peer` ended; `retry` says whether to try again.
    fn auto_ended(&mut self, peer: PeerId, retry: bool) {
        if !self.auto_connect || !self.auto.contains_key(&peer) {
            return;
        }
        if !retry {
            self.auto.insert(peer, Auto::Refused);
            self.auto_delays.remove(&peer);
            return;
        }
        let last = self
            .auto_delays
            .get(&peer)
            .copied()
            .unwrap_or(Duration::ZERO);
        let delay = if last.is_zero() {
            AUTO_RETRY_MIN
        } else {
            (last * 2).min(AUTO_RETRY_MAX)
        };
        self.auto_delays.insert(peer, delay);
        self.auto.insert(
            peer,
            Auto::Retry {
                at: tokio::time::Instant::now() + delay,
            },
        );
    }

    async fn on_mdns(&mut self, ev: mdns::Event) {
        match ev {
            mdns::Event::Discovered(list) => {
                let mut fresh: BTreeMap<PeerId, Vec<Multiaddr>> = BTreeMap::new();
                for (peer, addr) in list {
                    let known = self.discovered.entry(peer).or_default();
                    if !known.contains(&addr) {
                        known.push(addr.clone());
                        fresh.entry(peer).or_default().push(addr);
                    }
                }
                for (peer, addrs) in fresh {
                    self.emit(Output::Discovered { peer, addrs }).await;
                    if self.auto_connect
                        && !self.auto.contains_key(&peer)
                        && !self.has_session(&peer)
                    {
                        self.auto_open(peer);
                    }
                }
            }
            mdns::Event::Expired(list) => {
                let mut gone = Vec::new();
                for (peer, addr) in list {
                    if let Some(addrs) = self.discovered.get_mut(&peer) {
                        addrs.retain(|a| *a != addr);
                        if addrs.is_empty() {
                            self.discovered.remove(&peer);
                            gone.push(peer);
                        }
                    }
                }
                for peer in gone {
                    self.auto.remove(&peer);
                    self.emit(Output::Expired { peer }).await;
                }
            }
        }
    }
}

/// mDNS with a one-minute TTL (peers that vanish leave the list within a minute) and a
/// query every 20 s (a lost announcement costs at most that).
fn mdns_config() -> mdns::Config {
    mdns::Config {
        ttl: Duration::from_secs(60),
        query_interval: Duration::from_secs(20),
        ..mdns::Config::default()
    }
}

fn signal(done: Option<oneshot::Sender<()>>) {
    if let Some(d) = done {
        let _ = d.send(());
    }
}

fn safety(sn: &SafetyNumber) -> String {
    sn.to_string()
}

/// `Peer_` and the last 6 characters of the peer id.
pub fn short_peer(peer: &PeerId) -> String {
    let s = peer.to_base58();
    format!("Peer_{}", &s[s.len().saturating_sub(6)..])
}

/// One line for a failed dial, in the user's terms.
fn describe_dial(why: &str, target: &str) -> String {
    let lower = why.to_ascii_lowercase();
    if lower.contains("refused") {
        format!("connection refused: nothing is listening at {target} (is the port right?)")
    } else if lower.contains("timed out") || lower.contains("timeout") {
        format!(
            "no answer from {target} within {} s: the host is unreachable or filtered",
            DIAL_TIMEOUT.as_secs()
        )
    } else if lower.contains("no route") || lower.contains("unreachable") {
        format!("{target} is unreachable from here ({why})")
    } else if lower.contains("failed to lookup")
        || lower.contains("resolve")
        || lower.contains("dns")
    {
        format!("cannot resolve the host name in {target}")
    } else {
        why.to_string()
    }
}

fn describe_open_error(e: &OpenError) -> String {
    match e {
        OpenError::WrongSecret => "wrong secret: the peer refused it".into(),
        OpenError::UnsupportedProtocol => {
            "that address answers, but it is not a Noctua node".into()
        }
        OpenError::Timeout => "no answer in time (the handshake timed out)".into(),
        other => other.to_string(),
    }
}

/// Connection strings for the banner: one per listen address that others can dial,
/// LAN addresses first; unspecified addresses (0.0.0.0, ::) are expanded to this
/// machine's interface addresses.
pub fn conn_strings(listen: &[Multiaddr], secret: &str) -> Vec<String> {
    let mut out: Vec<(u8, String)> = Vec::new();
    let interfaces = interface_addrs();
    for addr in listen {
        let mut ip = None;
        let mut tcp = None;
        for p in addr.iter() {
            match p {
                Protocol::Ip4(a) => ip = Some(IpAddr::V4(a)),
                Protocol::Ip6(a) => ip = Some(IpAddr::V6(a)),
                Protocol::Tcp(port) => tcp = Some(port),
                _ => {}
            }
        }
        // QUIC listens on the same port number; the TCP address stands for both. A node
        // listening on QUIC alone gets `multiaddr:secret` strings.
        let Some(ip) = ip else { continue };
        let Some(port) = tcp else {
            let quic_only = !listen
                .iter()
                .any(|a| a.iter().any(|p| matches!(p, Protocol::Tcp(_))));
            if quic_only {
                let ips = if ip.is_unspecified() {
                    interfaces
                        .iter()
                        .copied()
                        .filter(|i| i.is_ipv4() == ip.is_ipv4())
                        .collect()
                } else {
                    vec![ip]
                };
                for i in ips {
                    let m: Multiaddr = addr
                        .iter()
                        .map(|p| match p {
                            Protocol::Ip4(_) | Protocol::Ip6(_) => Protocol::from(i),
                            other => other,
                        })
                        .collect();
                    let s = format!("{m}:{secret}");
                    if !out.iter().any(|(_, o)| *o == s) {
                        out.push((u8::from(i.is_loopback()) * 2, s));
                    }
                }
            }
            continue;
        };
        let ips: Vec<IpAddr> = if ip.is_unspecified() {
            interfaces
                .iter()
                .copied()
                .filter(|i| i.is_ipv4() == ip.is_ipv4())
                .collect()
        } else {
            vec![ip]
        };
        for ip in ips {
            let rank = if ip.is_loopback() {
                2
            } else if is_link_local(&ip) {
                1
            } else {
                0
            };
            let s = crate::connstr::format(&ip, port, secret);
            if !out.iter().any(|(_, o)| *o == s) {
                out.push((rank, s));
            }
        }
    }
    out.sort_by_key(|(r, _)| *r);
    out.into_iter().map(|(_, s)| s).collect()
}

fn is_link_local(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    }
}

fn interface_addrs() -> Vec<IpAddr> {
    let mut v: Vec<IpAddr> = if_addrs::get_if_addrs()
        .map(|list| list.into_iter().map(|i| i.ip()).collect())
        .unwrap_or_default();
    // Link-local IPv6 needs a zone id to be dialed; it is no use in a connection string.
    v.retain(|ip| !(ip.is_ipv6() && is_link_local(ip)));
    if v.is_empty() {
        v.push(IpAddr::from([127, 0, 0, 1]));
    }
    v
}

/// Time since `t` in a short human form (`5s`, `3m 2s`, `1h 4m`).
pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m {:02}s", s / 60, s % 60)
    } else {
        format!("{}h {:02}m", s / 3600, (s % 3600) / 60)
    }
}
