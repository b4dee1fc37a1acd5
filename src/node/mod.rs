//! The node: one libp2p swarm (TCP + QUIC, Noise, Yamux, mDNS, connection limits and the
//! chat behaviour) and its event loop.
//!
//! Data flows one way: transport -> behaviour -> this loop -> a face (terminal, headless,
//! or any other user of the library) through a bounded channel of [`Output`]s. Faces send
//! [`Request`]s down one bounded channel. Nothing here prints, nothing here knows about a
//! face, and nothing here touches keys or nonces.
//!
//! ```no_run
//! # async fn demo() -> Result<(), noctua::node::StartError> {
//! use noctua::node::{Command, Node, NodeConfig, Output, Request};
//! use noctua_chat::Secret;
//! use tokio::sync::mpsc;
//!
//! let secret = Secret::generate();
//! let cfg = NodeConfig {
//!     name: "bot".into(),
//!     secret: secret.clone(),
//!     listen: vec!["/ip4/127.0.0.1/tcp/0".parse().expect("multiaddr")],
//!     mdns: false,
//!     auto_connect: false,
//!     chat: noctua_chat::Config::new(secret),
//!     outbox_ttl: noctua::node::DEFAULT_OUTBOX_TTL,
//!     identity: None,
//!     profile: None,
//! };
//! let (out_tx, mut out_rx) = mpsc::channel(1024);
//! let (req_tx, req_rx) = mpsc::channel(64);
//! let node = Node::start(cfg, out_tx).await?;
//! tokio::spawn(node.run(req_rx));
//! let _ = req_tx.send(Request::new(Command::Sessions)).await;
//! while let Some(output) = out_rx.recv().await {
//!     if let Output::Sessions { rows, .. } = output {
//!         println!("{} session(s)", rows.len());
//!         break;
//!     }
//! }
//! # Ok(())
//! # }
//! ```

mod addrs;
mod auto;
mod command;
mod error;
mod events;
mod handle;
mod identity;
mod names;
mod outbox;
mod output;
mod reconnect;
mod swarm;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::Duration;

use futures::StreamExt;
use libp2p::core::transport::ListenerId;
use libp2p::{Multiaddr, PeerId, Swarm};
use noctua_chat::{MessageId, OpenId, Secret, SessionInfo};
use tokio::sync::{mpsc, oneshot};

pub use addrs::{ListenError, check_ports_free, conn_strings, default_listen};
pub use command::{Command, Request};
pub use error::{
    BoxError, CommandError, ConnectError, DeliveryFailure, DialFailure, ResolveError, StartError,
};
pub use names::{name_problem, short_peer};
pub use outbox::{DEFAULT_TTL as DEFAULT_OUTBOX_TTL, OutboxFull, Undelivered};
pub use output::{LinkRow, Output, PeerRow, SessionRow, TrustChange};
pub use reconnect::{LinkStatus, short_duration, short_wait};
pub use swarm::DIAL_TIMEOUT;

use auto::AutoConnect;
use names::Names;
use outbox::Outbox;
use reconnect::Reconnect;
use swarm::NodeBehaviour;

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
    /// How long a message for a peer that is reconnecting waits (`--outbox-ttl`).
    pub outbox_ttl: Duration,
    /// Our libp2p identity; `None`: a fresh Ed25519 key (ephemeral).
    pub identity: Option<libp2p::identity::Keypair>,
    /// The profile that keeps the identity, secret and known peers (`--profile`).
    pub profile: Option<crate::profile::Profile>,
}

/// How long `Finish` waits for receipts (and connects in progress), `Exit` for receipts,
/// and both for goodbyes to be acknowledged.
const FINISH_WAIT: Duration = Duration::from_secs(12);
const EXIT_WAIT: Duration = Duration::from_secs(5);
const GOODBYE_WAIT: Duration = Duration::from_secs(3);

/// A `connect` in progress.
struct Connecting {
    /// What the user asked for (secret left out).
    label: String,
    /// The address being dialed (`None` when opening to a known peer).
    dialing: Option<Multiaddr>,
    /// The known peer opened to (`None` when dialing an address).
    peer: Option<PeerId>,
    /// Addresses still to try if this one cannot be reached.
    addrs: VecDeque<Multiaddr>,
    secret: Secret,
    done: Option<oneshot::Sender<()>>,
    /// When the current dial started.
    started: tokio::time::Instant,
    /// How the current dial failed, from the swarm's report (which comes before the
    /// protocol's `OpenFailed`).
    dial_failure: Option<DialFailure>,
    /// What went wrong with earlier addresses.
    errors: Vec<ConnectError>,
    /// The first address dialed, when it is TCP to an IP address: after a timeout, a
    /// plain TCP connect there tells a silent service from an unreachable host.
    first_tcp: Option<std::net::SocketAddr>,
}

/// The running node.
pub struct Node {
    swarm: Swarm<NodeBehaviour>,
    out: mpsc::Sender<Output>,
    name: String,
    secret: Secret,
    names: Names,
    discovered: BTreeMap<PeerId, Vec<Multiaddr>>,
    auto: AutoConnect,
    connects: HashMap<OpenId, Connecting>,
    /// Messages sent and not yet confirmed: the local id grouping a message's deliveries.
    outstanding: HashMap<MessageId, u64>,
    next_local: u64,
    /// Remote address of a connection to each connected peer (for `peers`).
    remote_addrs: HashMap<PeerId, Multiaddr>,
    listeners: HashSet<ListenerId>,
    /// Listeners whose addresses were already shown (banner or a later line).
    reported: HashSet<ListenerId>,
    listen_addrs: Vec<Multiaddr>,
    /// Known peers to re-open sessions with (or wait for) when a session drops.
    reconnect: Reconnect,
    /// Messages waiting for a peer that is expected back.
    outbox: Outbox,
    /// Known peers, pinned on first use (from the profile, plus this run's).
    trust: crate::trust::KnownPeers,
    /// Where they are saved, with a profile.
    profile: Option<crate::profile::Profile>,
    /// The address we dialed for our outbound connection to each peer (the TOFU address
    /// check; an inbound connection's source address says nothing).
    dialed: HashMap<PeerId, Multiaddr>,
    /// Peers whose session the TOFU check refused: their messages are not shown.
    tofu_refused: HashSet<PeerId>,
    /// Whether the profile's secret was replaced at start (banner).
    secret_changed: bool,
}

impl Node {
    /// Builds the swarm and starts listening. Returns once the listen addresses are known
    /// (a few milliseconds), so that the banner can be printed at once; RSA key generation
    /// continues in the background.
    pub async fn start(cfg: NodeConfig, out: mpsc::Sender<Output>) -> Result<Self, StartError> {
        addrs::check_ports_free(&cfg.listen).map_err(|(addr, _)| StartError::InUse(addr))?;
        let mut swarm = swarm::build(cfg.mdns, cfg.chat, cfg.identity)?;
        let listening = swarm::listen(&mut swarm, &cfg.listen).await?;
        let mut node = Node {
            swarm,
            out,
            name: cfg.name,
            secret: cfg.secret,
            names: Names::default(),
            discovered: BTreeMap::new(),
            auto: AutoConnect::new(cfg.auto_connect),
            connects: HashMap::new(),
            outstanding: HashMap::new(),
            next_local: 1,
            remote_addrs: HashMap::new(),
            listeners: listening.listeners,
            reported: listening.reported,
            listen_addrs: listening.addrs,
            reconnect: Reconnect::default(),
            outbox: Outbox::new(cfg.outbox_ttl),
            trust: cfg
                .profile
                .as_ref()
                .map(|p| p.peers().clone())
                .unwrap_or_default(),
            secret_changed: cfg.profile.as_ref().is_some_and(|p| p.secret_changed()),
            profile: cfg.profile,
            dialed: HashMap::new(),
            tofu_refused: HashSet::new(),
        };
        node.save_port();
        node.refuse_blocked();
        for ev in listening.early {
            node.on_swarm_event(ev).await;
        }
        Ok(node)
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
            pinned: self.pinned_conn_strings(),
            profile: self.profile.as_ref().map(|p| p.name().to_string()),
            secret_changed: self.secret_changed,
        }
    }

    /// Reports that message `local` did not reach `peer`.
    async fn delivery_failed(&mut self, local: u64, peer: PeerId, reason: DeliveryFailure) {
        let name = self.names.display(&peer);
        self.emit(Output::DeliveryFailed {
            local,
            peer,
            name,
            reason,
        })
        .await;
    }

    async fn emit(&mut self, o: Output) {
        // A face that went away is not an error for the node: it keeps running until told
        // to stop (or its command channel closes).
        let _ = self.out.send(o).await;
    }

    fn chat(&mut self) -> &mut noctua_chat::Behaviour {
        &mut self.swarm.behaviour_mut().chat
    }

    /// Runs until `exit`, the end of input, or the face going away. Before leaving, it
    /// waits a little for the receipts of messages still on their way (a message typed
    /// just before `exit` is not lost), then says goodbye to every peer.
    pub async fn run(mut self, mut requests: mpsc::Receiver<Request>) {
        let mut finish = false;
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let auto = self.auto.enabled();
        // Here rather than in `start`: the face reads outputs by now.
        self.resume_known_peers().await;
        loop {
            tokio::select! {
                ev = self.swarm.select_next_some() => self.on_swarm_event(ev).await,
                _ = tick.tick() => {
                    if auto {
                        self.auto_open_due();
                    }
                    self.reconnect_due().await;
                    self.expire_outbox().await;
                }
                req = requests.recv() => match req {
                    Some(Request { command: Command::Exit, done }) => {
                        signal(done);
                        break;
                    }
                    Some(Request { command: Command::Finish, done }) => {
                        signal(done);
                        finish = true;
                        break;
                    }
                    Some(Request { command, done }) => self.on_command(command, done).await,
                    None => break,
                },
            }
        }
        self.give_up_outbox(Undelivered::Exit).await;
        if finish {
            self.wait_for_receipts(FINISH_WAIT, true).await;
        } else {
            self.wait_for_receipts(EXIT_WAIT, false).await;
        }
        self.goodbye().await;
        self.emit(Output::Stopped).await;
    }

    /// Handles swarm events until every sent message has its receipt (and, with
    /// `connects`, every connect in progress has ended), for at most `limit`.
    async fn wait_for_receipts(&mut self, limit: Duration, connects: bool) {
        let deadline = tokio::time::Instant::now() + limit;
        if !self.outstanding.is_empty() {
            let n = self.outstanding.len();
            self.emit(Output::Notice(format!(
                "waiting up to {} s for {n} receipt(s) before leaving...",
                limit.as_secs()
            )))
            .await;
        }
        while !self.outstanding.is_empty() || (connects && !self.connects.is_empty()) {
            match tokio::time::timeout_at(deadline, self.swarm.select_next_some()).await {
                Ok(ev) => self.on_swarm_event(ev).await,
                Err(_) => {
                    let n = self.outstanding.len();
                    self.emit(Output::Notice(format!(
                        "gave up waiting for {n} receipt(s) after {} s",
                        limit.as_secs()
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

    fn has_session(&self, peer: &PeerId) -> bool {
        self.swarm.behaviour().chat.session(peer).is_some()
    }

    /// The protocol's sessions, whatever their state.
    fn sessions(&self) -> impl Iterator<Item = SessionInfo> + '_ {
        self.swarm.behaviour().chat.sessions()
    }

    /// Every peer we know of: with a session, connected, or discovered.
    fn known_peers(&self) -> Vec<PeerId> {
        let mut set: Vec<PeerId> = self.sessions().map(|s| s.peer).collect();
        // Peers kept in the profile (lasting or blocked), even when away.
        set.extend(self.trust.persisted().map(|k| k.peer));
        set.extend(self.swarm.connected_peers().copied());
        set.extend(self.discovered.keys().copied());
        set.extend(self.reconnect.expected_peers());
        set.sort();
        set.dedup();
        set
    }

    /// Finds a peer as the user typed it. A peer whose session dropped and that is
    /// expected back answers to the name it had, unless a peer with a session has it now.
    fn resolve(&self, who: &str) -> Result<PeerId, ResolveError> {
        match self.names.resolve(who, &self.known_peers()) {
            Err(ResolveError::Left(name)) => {
                let back: Vec<PeerId> = self
                    .reconnect
                    .expected_peers()
                    .into_iter()
                    .filter(|p| self.names.former(p) == Some(&name))
                    .collect();
                match back.as_slice() {
                    [peer] => Ok(*peer),
                    _ => Err(ResolveError::Left(name)),
                }
            }
            other => other,
        }
    }

    /// Opens a session to a discovered peer with our own secret.
    fn auto_open(&mut self, peer: PeerId) {
        let secret = self.secret.clone();
        let open = self.chat().open_session(peer, secret);
        self.auto.opened(peer, open);
    }

    /// Starts the automatic connections whose time has come, for peers still discovered,
    /// as many as there are free automatic open slots.
    fn auto_open_due(&mut self) {
        if !self.auto.enabled() {
            return;
        }
        // A peer that has a session by now (it opened one to us) is marked busy and does
        // not use a slot: ask again until the slots are used or nobody is due.
        loop {
            let due = self.auto.due(tokio::time::Instant::now(), |p| {
                self.discovered.contains_key(p)
            });
            let mut skipped = false;
            for &peer in &due {
                if self.has_session(&peer) {
                    self.auto.busy(peer);
                    skipped = true;
                    continue;
                }
                tracing::debug!(%peer, "connecting automatically");
                self.auto_open(peer);
            }
            if due.is_empty() || !skipped {
                break;
            }
        }
    }
}

/// Reconnecting and the outbox: the node's side of [`reconnect`] and [`outbox`].
impl Node {
    /// Starts the reconnect attempts whose time has come.
    async fn reconnect_due(&mut self) {
        for a in self.reconnect.due(tokio::time::Instant::now()) {
            let open = match a.addr {
                Some(addr) if !self.swarm.is_connected(&a.peer) => {
                    // Pinned to the peer: whoever answers there now must be it.
                    let addr = with_peer(addr, a.peer);
                    self.chat().connect(addr, a.secret)
                }
                _ => self.chat().open_session(a.peer, a.secret),
            };
            tracing::debug!(peer = %a.peer, attempt = a.attempt, "reconnecting");
            self.reconnect.opening(a.peer, open);
        }
    }

    /// With a profile: reconnects at start to the known peers we dialed before (their
    /// secret and addresses are in the profile), unless blocked.
    async fn resume_known_peers(&mut self) {
        let now = tokio::time::Instant::now();
        let known: Vec<(PeerId, String, String, Vec<Multiaddr>)> = self
            .trust
            .iter()
            .filter(|k| !k.blocked && !k.addrs.is_empty())
            .filter_map(|k| {
                let secret = k.secret.clone()?;
                Some((k.peer, k.name.clone(), secret, k.addrs.clone()))
            })
            .collect();
        for (peer, name, secret, addrs) in known {
            let Ok(secret) = Secret::new(secret) else {
                continue;
            };
            // The name it had, held for it while no one else takes it.
            self.names.assign(peer, &name);
            self.names.forget(&peer);
            let plan = self.reconnect.resume(peer, secret, addrs, now);
            self.after_plan(peer, plan, None).await;
        }
    }

    /// Reports queued messages that waited too long, each once; stops waiting for peers
    /// that did not come back within the same time.
    async fn expire_outbox(&mut self) {
        let ttl = self.outbox.ttl();
        let now = tokio::time::Instant::now();
        for (peer, m) in self.outbox.expire(now) {
            self.not_delivered(m.local, peer, Undelivered::Expired(ttl))
                .await;
        }
        for peer in self.reconnect.stop_waiting(now, ttl) {
            let name = self.names.display(&peer);
            self.give_up_peer(peer, Undelivered::GaveUp).await;
            self.emit(Output::Notice(format!(
                "stopped waiting for {name}: it did not come back within {}",
                short_duration(ttl)
            )))
            .await;
        }
    }

    /// Reports everything still queued as not delivered (the node is leaving).
    async fn give_up_outbox(&mut self, why: Undelivered) {
        for (peer, m) in self.outbox.drain() {
            self.not_delivered(m.local, peer, why).await;
        }
    }

    /// Reports what was queued for `peer` as not delivered.
    async fn give_up_peer(&mut self, peer: PeerId, why: Undelivered) {
        for m in self.outbox.take(&peer) {
            self.not_delivered(m.local, peer, why).await;
        }
    }

    async fn not_delivered(&mut self, local: u64, peer: PeerId, reason: Undelivered) {
        let name = self.names.display(&peer);
        self.emit(Output::NotDelivered {
            local,
            peer,
            name,
            reason,
        })
        .await;
    }

    /// `peer`'s session is back: sends what waited for it, in order, each with its receipt.
    async fn flush_outbox(&mut self, peer: PeerId) {
        for m in self.outbox.take(&peer) {
            let sent = if m.private {
                self.chat().send_private_message(&peer, m.text)
            } else {
                self.chat().send_message(&peer, m.text)
            };
            match sent {
                Ok(id) => {
                    self.outstanding.insert(id, m.local);
                }
                Err(e) => {
                    self.delivery_failed(m.local, peer, DeliveryFailure::NotSent(e))
                        .await
                }
            }
        }
    }

    /// Queues message `local` for `peer` (expected back); says so, or why it cannot.
    async fn queue(&mut self, peer: PeerId, local: u64, text: String, private: bool) {
        let now = tokio::time::Instant::now();
        match self.outbox.push(peer, local, text, private, now) {
            Ok(()) => {
                let name = self.names.display(&peer);
                let waiting = self.outbox.len(&peer);
                self.emit(Output::Queued {
                    local,
                    peer,
                    name,
                    waiting,
                })
                .await;
            }
            Err(full) => {
                tracing::debug!(%peer, "outbox full: {full}");
                self.not_delivered(local, peer, Undelivered::Full(full))
                    .await;
            }
        }
    }

    /// A session with `peer` ended for `reason`: reconnect, wait, or let it go.
    async fn after_close(&mut self, peer: PeerId, reason: &noctua_chat::CloseReason) {
        if matches!(reason, noctua_chat::CloseReason::Replaced) || self.has_session(&peer) {
            // A newer session with the peer took its place: nothing was lost.
            return;
        }
        let now = tokio::time::Instant::now();
        let plan = self.reconnect.closed(peer, reason, now, rand::random());
        self.after_plan(peer, plan, None).await;
    }

    /// Tells the user what comes next for `peer`.
    async fn after_plan(
        &mut self,
        peer: PeerId,
        plan: reconnect::Plan,
        error: Option<noctua_chat::OpenError>,
    ) {
        let name = self.names.display(&peer);
        match plan {
            reconnect::Plan::Retry { attempt, next_in } => {
                self.emit(Output::Reconnecting {
                    peer,
                    name,
                    attempt,
                    next_in,
                })
                .await
            }
            reconnect::Plan::Await => self.emit(Output::Waiting { peer, name }).await,
            reconnect::Plan::Stop => {
                if let Some(error) = error {
                    self.emit(Output::ReconnectStopped { peer, name, error })
                        .await;
                }
                self.give_up_peer(peer, Undelivered::GaveUp).await;
                if !self.has_session(&peer) {
                    self.names.forget(&peer);
                }
            }
        }
    }
}

/// `addr` ending in `/p2p/peer` (replacing any other `/p2p` part).
fn with_peer(addr: Multiaddr, peer: PeerId) -> Multiaddr {
    use libp2p::multiaddr::Protocol;
    let mut a: Multiaddr = addr
        .iter()
        .filter(|p| !matches!(p, Protocol::P2p(_)))
        .collect();
    a.push(Protocol::P2p(peer));
    a
}

fn signal(done: Option<oneshot::Sender<()>>) {
    if let Some(d) = done {
        let _ = d.send(());
    }
}
