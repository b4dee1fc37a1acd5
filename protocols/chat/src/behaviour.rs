//! The `NetworkBehaviour`: wires the handshake, sessions and rotation to libp2p's
//! request-response, one session per peer.
//!
//! Everything a peer sends arrives in [`Behaviour::on_request`] (requests) or
//! [`Behaviour::on_response`] (answers to our requests); every outbound request is
//! remembered in `outbound` with what it was for, so its answer or failure is handled
//! exactly once. Timers (handshake and rotation timeouts, scheduled rotation, keep-alive,
//! grace windows, idle unauthenticated connections) run from one `Delay` in `on_tick`.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::FutureExt;
use futures_timer::Delay;
use libp2p::core::transport::PortUse;
use libp2p::core::{Endpoint, Multiaddr};
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, OutboundRequestId, ResponseChannel};
use libp2p::swarm::behaviour::{ConnectionClosed, ConnectionEstablished, DialFailure, FromSwarm};
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{
    CloseConnection, ConnectionDenied, ConnectionId, DialError, NetworkBehaviour, NotifyHandler,
    THandler, THandlerInEvent, THandlerOutEvent, ToSwarm,
};
use libp2p::{PeerId, StreamProtocol};

use crate::codec::{Codec, PROTOCOL};
use crate::config::Config;
use crate::crypto::{AuthKey, RsaKeyPair, SafetyNumber, Secret, hex};
use crate::error::{CloseReason, DeliveryError, OpenError, RejectCode, SendError, SessionError};
use crate::handler::{Handler, HandlerIn};
use crate::handshake::{AwaitingAuthOk, Established, Initiator, Responder};
use crate::keys::{KeyRing, KeyRingEvent};
use crate::limits::{FailureLimiter, LogThrottle};
use crate::session::{Rejections, Session, SessionParams, SessionState, Slot};
use crate::wire::{
    self, AuthOk, ChatMessage, Content, HS_ID_LEN, Hello, MAX_BATCH, RECORD_OVERHEAD, Request,
    Response, Role, SESSION_ID_LEN,
};

/// Identifies one call to [`Behaviour::connect`] or [`Behaviour::open_session`]; its outcome
/// is reported once, in [`Event::SessionEstablished`] or [`Event::OpenFailed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OpenId(u64);

impl fmt::Display for OpenId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Identifies one message we sent; its fate is reported once, in
/// [`Event::MessageDelivered`] or [`Event::DeliveryFailed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(u64);

impl MessageId {
    /// The numeric value.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A session's id (derived from its handshake transcript; the same on both sides).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SessionId([u8; SESSION_ID_LEN]);

impl SessionId {
    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; SESSION_ID_LEN] {
        &self.0
    }

    /// The first 8 hex digits, enough to tell sessions apart on screen.
    pub fn short(&self) -> String {
        hex(&self.0[..4])
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex(&self.0))
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({})", self.short())
    }
}

/// A snapshot of one session, for listing.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    /// The peer.
    pub peer: PeerId,
    /// The session id.
    pub id: SessionId,
    /// Our role in it.
    pub role: Role,
    /// Its state.
    pub state: SessionState,
    /// Current epoch (0 until the first rotation).
    pub epoch: u32,
    /// The peer's display name, once known.
    pub remote_name: Option<String>,
    /// The safety number to compare out of band.
    pub safety_number: SafetyNumber,
    /// Time since the handshake.
    pub age: Duration,
    /// Time until the next scheduled rotation (zero if due or in progress).
    pub next_rotation_in: Duration,
    /// Chat messages sent (confirmed or not).
    pub messages_sent: u64,
    /// Chat messages received.
    pub messages_received: u64,
    /// Messages waiting to be sent.
    pub queued: usize,
    /// Records refused on this session, by cause.
    pub rejections: Rejections,
}

/// Counts of internal state, for tests and diagnostics ("nothing left behind").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StateCounts {
    /// Peers with any state at all (connections, sessions, handshakes, queues).
    pub peers: usize,
    /// Connections tracked.
    pub connections: usize,
    /// Sessions (any state).
    pub sessions: usize,
    /// Handshakes in progress (either role).
    pub handshakes: usize,
    /// Requests in flight.
    pub outbound_requests: usize,
    /// Messages queued, all peers.
    pub queued_messages: usize,
    /// `HELLO`s waiting for our RSA key.
    pub deferred_hellos: usize,
    /// Opens waiting for a connection or our key.
    pub waiting_opens: usize,
}

/// What the behaviour reports.
#[derive(Debug)]
#[non_exhaustive]
pub enum Event {
    /// A new RSA key pair is in use: the one generated at start-up (not emitted when the
    /// configuration supplied a key), then each regeneration.
    KeyReady {
        /// Modulus size.
        bits: usize,
        /// 0 for the first key, then 1, 2, ...
        generation: u64,
        /// Short public-key fingerprint (not secret).
        fingerprint: String,
    },
    /// RSA key generation failed; it is retried.
    KeyGenerationFailed {
        /// Why.
        error: String,
    },
    /// A session is active: both sides proved the secret and confirmed the keys.
    SessionEstablished {
        /// The peer.
        peer: PeerId,
        /// The session id.
        session_id: SessionId,
        /// Our role.
        role: Role,
        /// The peer's display name (as it chose it; not an authenticated identity).
        remote_name: String,
        /// The safety number.
        safety_number: SafetyNumber,
        /// The opens this session answers (empty if the peer opened it).
        opens: Vec<OpenId>,
    },
    /// An open failed.
    OpenFailed {
        /// Which open.
        open: OpenId,
        /// The peer, when known.
        peer: Option<PeerId>,
        /// Why.
        error: OpenError,
    },
    /// A peer tried to open a session with a wrong secret.
    InboundAuthFailed {
        /// The peer.
        peer: PeerId,
        /// Its IP address, when known.
        address: Option<IpAddr>,
        /// Whether this failure got the peer or its address banned for a while.
        banned: bool,
    },
    /// A session moved to a new epoch.
    SessionRotated {
        /// The peer.
        peer: PeerId,
        /// The session.
        session_id: SessionId,
        /// The new epoch.
        epoch: u32,
    },
    /// A session ended.
    SessionClosed {
        /// The peer.
        peer: PeerId,
        /// The session.
        session_id: SessionId,
        /// Why.
        reason: CloseReason,
    },
    /// A chat message arrived.
    MessageReceived {
        /// From whom.
        peer: PeerId,
        /// On which session.
        session_id: SessionId,
        /// The sender's display name at the time.
        remote_name: String,
        /// The message (its text is as the peer sent it: sanitize before display).
        message: ChatMessage,
    },
    /// A message we sent was confirmed by the peer.
    MessageDelivered {
        /// To whom.
        peer: PeerId,
        /// Which message.
        message: MessageId,
    },
    /// A message we sent was not delivered (or not confirmed).
    DeliveryFailed {
        /// To whom.
        peer: PeerId,
        /// Which message.
        message: MessageId,
        /// Why.
        error: DeliveryError,
    },
}

struct QueuedMessage {
    id: MessageId,
    wire: ChatMessage,
}

enum InitStage {
    SentHello(Initiator),
    SentAuth(AwaitingAuthOk),
}

struct InitiatorHs {
    stage: InitStage,
    hs_id: [u8; HS_ID_LEN],
    started: Instant,
}

struct ResponderHs {
    state: Responder,
    started: Instant,
}

/// Everything we track about one peer.
#[derive(Default)]
struct Peer {
    connections: Vec<ConnectionId>,
    session: Option<Session>,
    /// Whether `SessionEstablished` was emitted for the current session.
    announced: bool,
    initiator: Option<InitiatorHs>,
    responder: Option<ResponderHs>,
    /// Opens answered by the next session established with this peer.
    opens: Vec<OpenId>,
    /// Opens waiting for a connection or for our RSA key, with the secret to use.
    waiting: Vec<(OpenId, Secret, Instant)>,
    queue: VecDeque<QueuedMessage>,
    in_flight: usize,
    ping_in_flight: bool,
    /// Since when the peer is connected without any session or handshake.
    idle_since: Option<Instant>,
}

impl Peer {
    fn is_empty(&self) -> bool {
        self.connections.is_empty()
            && self.session.is_none()
            && self.initiator.is_none()
            && self.responder.is_none()
            && self.opens.is_empty()
            && self.waiting.is_empty()
            && self.queue.is_empty()
    }

    fn is_unauthenticated_idle(&self) -> bool {
        !self.connections.is_empty()
            && self.session.is_none()
            && self.initiator.is_none()
            && self.responder.is_none()
            && self.waiting.is_empty()
    }
}

/// What an outbound request was for.
enum Pending {
    Hello {
        peer: PeerId,
        hs_id: [u8; HS_ID_LEN],
    },
    Auth {
        peer: PeerId,
        hs_id: [u8; HS_ID_LEN],
    },
    Confirm {
        peer: PeerId,
        session_id: [u8; SESSION_ID_LEN],
        epoch: u32,
        seq: u64,
    },
    Chat {
        peer: PeerId,
        session_id: [u8; SESSION_ID_LEN],
        epoch: u32,
        seq: u64,
        messages: Vec<QueuedMessage>,
    },
    RekeyInit {
        peer: PeerId,
        session_id: [u8; SESSION_ID_LEN],
        new_epoch: u32,
    },
    RekeyCommit {
        peer: PeerId,
        session_id: [u8; SESSION_ID_LEN],
        new_epoch: u32,
    },
    Close {
        peer: PeerId,
        session_id: [u8; SESSION_ID_LEN],
        reason: CloseReason,
    },
    Ping {
        peer: PeerId,
        session_id: [u8; SESSION_ID_LEN],
        epoch: u32,
        seq: u64,
    },
    Abort,
}

struct DeferredHello {
    peer: PeerId,
    connection: ConnectionId,
    hello: Hello,
    channel: ResponseChannel<Response>,
    received: Instant,
}

/// Housekeeping runs at least this often.
const MAX_TICK: Duration = Duration::from_secs(1);

/// The Noctua chat behaviour. See the crate documentation for an example.
pub struct Behaviour {
    inner: request_response::Behaviour<Codec>,
    config: Config,
    local_peer: PeerId,
    local_auth: AuthKey,
    keys: KeyRing,
    peers: HashMap<PeerId, Peer>,
    connections: HashMap<ConnectionId, (PeerId, Option<IpAddr>)>,
    pending_dials: HashMap<ConnectionId, (OpenId, Secret)>,
    outbound: HashMap<OutboundRequestId, Pending>,
    deferred_hellos: VecDeque<DeferredHello>,
    peer_failures: FailureLimiter<PeerId>,
    ip_failures: FailureLimiter<IpAddr>,
    log_throttle: LogThrottle<(PeerId, &'static str)>,
    /// Sessions closed in the last `rotation_grace` (at most [`RECENTLY_CLOSED`]): records
    /// the peer sent before it learnt of the close (its own goodbye, in-flight chat) are
    /// refused as `UNKNOWN_SESSION` without being taken for misbehaviour.
    recently_closed: VecDeque<(PeerId, [u8; SESSION_ID_LEN], Instant)>,
    events: VecDeque<ToSwarm<Event, HandlerIn>>,
    dirty: HashSet<PeerId>,
    timer: Delay,
    timer_at: Instant,
    next_message_id: u64,
    next_open_id: u64,
    shutting_down: bool,
    waker: Option<Waker>,
}

/// How many recently closed sessions are remembered (see `Behaviour::recently_closed`).
const RECENTLY_CLOSED: usize = 1024;

impl Behaviour {
    /// Creates the behaviour for the node whose libp2p identity is `local_peer`. Unless the
    /// configuration carries a key, RSA key generation starts at once on its own thread; the
    /// node can accept handshakes as soon as [`Event::KeyReady`] is emitted (earlier ones
    /// wait for it).
    pub fn new(local_peer: PeerId, config: Config) -> Self {
        let inner = request_response::Behaviour::with_codec(
            Codec::new(config.max_frame_size),
            [(PROTOCOL, request_response::ProtocolSupport::Full)],
            request_response::Config::default()
                .with_request_timeout(config.request_timeout)
                .with_max_concurrent_streams(config.max_concurrent_streams),
        );
        let keys = KeyRing::new(
            config.rsa_bits,
            config.rsa_regenerate_every,
            config.rsa_key.clone(),
        );
        let (pf, pw, pb) = config.peer_failures;
        let (ipf, ipw, ipb) = config.ip_failures;
        let now = Instant::now();
        Behaviour {
            inner,
            local_auth: config.secret.auth_key(),
            config,
            local_peer,
            keys,
            peers: HashMap::new(),
            connections: HashMap::new(),
            pending_dials: HashMap::new(),
            outbound: HashMap::new(),
            deferred_hellos: VecDeque::new(),
            peer_failures: FailureLimiter::new(pf, pw, pb, 4096),
            ip_failures: FailureLimiter::new(ipf, ipw, ipb, 4096),
            log_throttle: LogThrottle::new(Duration::from_secs(60), 4096),
            recently_closed: VecDeque::new(),
            events: VecDeque::new(),
            dirty: HashSet::new(),
            timer: Delay::new(MAX_TICK),
            timer_at: now + MAX_TICK,
            next_message_id: 1,
            next_open_id: 1,
            shutting_down: false,
            waker: None,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Whether the RSA key exists (handshakes can proceed without waiting).
    pub fn key_ready(&self) -> bool {
        self.keys.current().is_some()
    }

    /// The current RSA key, once generated.
    pub fn current_key(&self) -> Option<&Arc<RsaKeyPair>> {
        self.keys.current()
    }

    /// Starts an RSA key regeneration now (it also happens on schedule).
    pub fn regenerate_key(&mut self) {
        self.keys.regenerate();
        self.wake();
    }

    /// Dials `address` (a peer whose `PeerId` we may not know yet) and opens a session with
    /// it using `secret`, the peer's connection secret.
    pub fn connect(&mut self, address: Multiaddr, secret: Secret) -> OpenId {
        let open = self.next_open();
        let peer_in_addr = address.iter().find_map(|p| match p {
            Protocol::P2p(id) => Some(id),
            _ => None,
        });
        if peer_in_addr == Some(self.local_peer) {
            self.push_event(Event::OpenFailed {
                open,
                peer: None,
                error: OpenError::Dial("that address is this node".into()),
            });
            return open;
        }
        let opts = match peer_in_addr {
            Some(peer) => DialOpts::peer_id(peer)
                .addresses(vec![address])
                .condition(PeerCondition::Always)
                .build(),
            None => DialOpts::unknown_peer_id().address(address).build(),
        };
        self.pending_dials
            .insert(opts.connection_id(), (open, secret));
        self.events.push_back(ToSwarm::Dial { opts });
        self.wake();
        open
    }

    /// Opens a session with a peer we know (connected, or with addresses known to the
    /// swarm, e.g. from mDNS), using `secret`, the peer's connection secret.
    pub fn open_session(&mut self, peer: PeerId, secret: Secret) -> OpenId {
        let open = self.next_open();
        self.start_open(peer, open, secret);
        self.wake();
        open
    }

    /// Queues a chat message for `peer`. It is sent as soon as the session is active
    /// (possibly together with other queued messages), and its fate is reported by
    /// [`Event::MessageDelivered`] or [`Event::DeliveryFailed`].
    pub fn send_message(
        &mut self,
        peer: &PeerId,
        text: impl Into<String>,
    ) -> Result<MessageId, SendError> {
        let text = text.into();
        let max = self.max_text_len();
        if text.len() > max {
            return Err(SendError::TooLarge {
                len: text.len(),
                max,
            });
        }
        let limit = self.config.max_queued_messages;
        let p = self.peers.get_mut(peer).ok_or(SendError::NoSession)?;
        match p.session.as_ref().map(|s| s.state) {
            None => return Err(SendError::NoSession),
            Some(SessionState::Closing) => return Err(SendError::Closing),
            Some(_) => {}
        }
        if p.queue.len() >= limit {
            return Err(SendError::QueueFull);
        }
        let id = MessageId(self.next_message_id);
        self.next_message_id += 1;
        p.queue.push_back(QueuedMessage {
            id,
            wire: ChatMessage {
                id: id.0,
                sent_at_ms: unix_ms(),
                text,
            },
        });
        self.dirty.insert(*peer);
        self.wake();
        Ok(id)
    }

    /// Longest text [`Behaviour::send_message`] accepts.
    pub fn max_text_len(&self) -> usize {
        self.config.max_message_size.min(
            self.config.max_frame_size - RECORD_OVERHEAD - 3 - wire::chat_message_encoded_len(0),
        )
    }

    /// All sessions, in no particular order.
    pub fn sessions(&self) -> impl Iterator<Item = SessionInfo> + '_ {
        let now = Instant::now();
        self.peers
            .values()
            .filter_map(move |p| p.session.as_ref().map(|s| (p, s)))
            .map(move |(p, s)| info(p, s, now))
    }

    /// One peer's session.
    pub fn session(&self, peer: &PeerId) -> Option<SessionInfo> {
        let p = self.peers.get(peer)?;
        p.session.as_ref().map(|s| info(p, s, Instant::now()))
    }

    /// Peers we are connected to (with or without a session).
    pub fn connected_peers(&self) -> impl Iterator<Item = &PeerId> + '_ {
        self.peers
            .iter()
            .filter(|(_, p)| !p.connections.is_empty())
            .map(|(id, _)| id)
    }

    /// Starts a rotation of the session with `peer` now.
    pub fn rotate(&mut self, peer: &PeerId) -> Result<(), SessionError> {
        let state = self
            .peers
            .get(peer)
            .and_then(|p| p.session.as_ref())
            .map(|s| s.state)
            .ok_or(SessionError::NoSession)?;
        if state != SessionState::Active {
            return Err(SessionError::NotActive(state));
        }
        self.start_rotation(*peer, Instant::now());
        self.wake();
        Ok(())
    }

    /// Ends the session with `peer`: the peer is told (`CLOSE`), queued messages are
    /// reported as not delivered, and [`Event::SessionClosed`] follows the peer's answer.
    pub fn close_session(&mut self, peer: &PeerId) -> Result<(), SessionError> {
        let state = self
            .peers
            .get(peer)
            .and_then(|p| p.session.as_ref())
            .map(|s| s.state)
            .ok_or(SessionError::NoSession)?;
        if state == SessionState::Closing {
            return Err(SessionError::NotActive(state));
        }
        self.close(
            *peer,
            CloseReason::LocalClosed,
            Some(RejectCode::UserClosed),
        );
        self.wake();
        Ok(())
    }

    /// Closes every session (telling each peer) and refuses new ones. Poll until
    /// [`Behaviour::closing_sessions`] is 0 (or a deadline passes) before dropping the swarm,
    /// so that peers see a goodbye rather than a timeout.
    pub fn shutdown(&mut self) {
        self.shutting_down = true;
        let peers: Vec<PeerId> = self.peers.keys().copied().collect();
        for peer in peers {
            if let Some(p) = self.peers.get_mut(&peer) {
                p.initiator = None;
                p.responder = None;
                for (open, _, _) in std::mem::take(&mut p.waiting) {
                    self.events
                        .push_back(ToSwarm::GenerateEvent(Event::OpenFailed {
                            open,
                            peer: Some(peer),
                            error: OpenError::LocalLimit("the node is shutting down"),
                        }));
                }
            }
            self.close(peer, CloseReason::Shutdown, Some(RejectCode::Shutdown));
        }
        self.wake();
    }

    /// Sessions still waiting for the peer to acknowledge our `CLOSE`.
    pub fn closing_sessions(&self) -> usize {
        self.peers
            .values()
            .filter(|p| {
                p.session
                    .as_ref()
                    .is_some_and(|s| s.state == SessionState::Closing)
            })
            .count()
    }

    /// Internal state sizes, for tests and diagnostics.
    pub fn state_counts(&self) -> StateCounts {
        StateCounts {
            peers: self.peers.len(),
            connections: self.connections.len(),
            sessions: self.peers.values().filter(|p| p.session.is_some()).count(),
            handshakes: self
                .peers
                .values()
                .map(|p| usize::from(p.initiator.is_some()) + usize::from(p.responder.is_some()))
                .sum(),
            outbound_requests: self.outbound.len(),
            queued_messages: self.peers.values().map(|p| p.queue.len()).sum(),
            deferred_hellos: self.deferred_hellos.len(),
            waiting_opens: self.peers.values().map(|p| p.waiting.len()).sum(),
        }
    }

    // ------------------------------------------------------------------------------------
    // Internals
    // ------------------------------------------------------------------------------------

    fn wake(&mut self) {
        if let Some(w) = self.waker.take() {
            w.wake();
        }
    }

    fn next_open(&mut self) -> OpenId {
        let id = OpenId(self.next_open_id);
        self.next_open_id += 1;
        id
    }

    fn push_event(&mut self, ev: Event) {
        self.events.push_back(ToSwarm::GenerateEvent(ev));
    }

    fn schedule(&mut self, at: Instant) {
        if at < self.timer_at {
            let now = Instant::now();
            self.timer_at = at;
            self.timer.reset(at.saturating_duration_since(now));
        }
    }

    fn params(&self) -> SessionParams {
        SessionParams {
            window: self.config.replay_window,
            grace: self.config.rotation_grace,
            max_message: self.config.max_message_size,
            rotate_every: self.config.rotate_every,
            rotate_after_messages: self.config.rotate_after_messages,
        }
    }

    fn send(&mut self, peer: PeerId, req: Request, pending: Pending) {
        let id = self.inner.send_request(&peer, req);
        self.outbound.insert(id, pending);
    }

    fn respond(&mut self, channel: ResponseChannel<Response>, resp: Response) {
        // An error means the requester went away (timeout, closed stream): nothing to do.
        let _ = self.inner.send_response(channel, resp);
    }

    fn reject(&mut self, channel: ResponseChannel<Response>, code: RejectCode, detail: u32) {
        self.respond(channel, Response::Reject { code, detail });
    }

    fn note_misbehaviour(&mut self, peer: PeerId, what: &'static str) {
        if let Some(n) = self.log_throttle.hit((peer, what), Instant::now()) {
            if n == 1 {
                tracing::warn!(%peer, "peer misbehaved: {what}");
            } else {
                tracing::warn!(%peer, count = n, "peer misbehaved: {what} ({n} times since last report)");
            }
        }
    }

    fn set_keep_alive(&mut self, peer: PeerId, keep: bool) {
        if let Some(p) = self.peers.get(&peer) {
            for c in p.connections.clone() {
                self.events.push_back(ToSwarm::NotifyHandler {
                    peer_id: peer,
                    handler: NotifyHandler::One(c),
                    event: HandlerIn::KeepAlive(keep),
                });
            }
        }
    }

    fn gc_peer(&mut self, peer: &PeerId) {
        if self.peers.get(peer).is_some_and(Peer::is_empty) {
            self.peers.remove(peer);
        }
    }

    fn fail_open(&mut self, peer: Option<PeerId>, opens: Vec<OpenId>, error: OpenError) {
        for open in opens {
            self.push_event(Event::OpenFailed {
                open,
                peer,
                error: error.clone(),
            });
        }
    }

    fn pending_handshakes(&self) -> usize {
        self.peers
            .values()
            .map(|p| {
                usize::from(p.initiator.is_some())
                    + usize::from(p.responder.is_some())
                    + p.waiting.len()
            })
            .sum::<usize>()
            + self.deferred_hellos.len()
    }

    fn session_count(&self) -> usize {
        self.peers.values().filter(|p| p.session.is_some()).count()
    }

    // ----- opening (initiator side) -----

    fn start_open(&mut self, peer: PeerId, open: OpenId, secret: Secret) {
        let now = Instant::now();
        if peer == self.local_peer {
            return self.fail_open(
                None,
                vec![open],
                OpenError::Dial("that is this node".into()),
            );
        }
        if self.shutting_down {
            return self.fail_open(
                Some(peer),
                vec![open],
                OpenError::LocalLimit("the node is shutting down"),
            );
        }
        let existing = self.peers.get(&peer);
        if existing
            .and_then(|p| p.session.as_ref())
            .is_some_and(|s| s.is_open())
        {
            return self.fail_open(Some(peer), vec![open], OpenError::AlreadyActive);
        }
        if existing.is_some_and(|p| {
            p.initiator.is_some()
                || p.responder.is_some()
                || p.session
                    .as_ref()
                    .is_some_and(|s| s.state == SessionState::Handshaking)
        }) {
            // A handshake with this peer is already under way: this open rides on it.
            if let Some(p) = self.peers.get_mut(&peer) {
                p.opens.push(open);
            }
            return;
        }
        if self.pending_handshakes() >= self.config.max_pending_handshakes {
            return self.fail_open(
                Some(peer),
                vec![open],
                OpenError::LocalLimit("too many handshakes in progress"),
            );
        }
        if self.session_count() >= self.config.max_sessions {
            return self.fail_open(
                Some(peer),
                vec![open],
                OpenError::LocalLimit("too many sessions"),
            );
        }
        let p = self.peers.entry(peer).or_default();
        let connected = !p.connections.is_empty();
        p.waiting.push((open, secret, now));
        if !connected {
            let opts = DialOpts::peer_id(peer)
                .condition(PeerCondition::DisconnectedAndNotDialing)
                .build();
            self.events.push_back(ToSwarm::Dial { opts });
        }
        self.schedule(now + self.config.handshake_timeout);
        self.try_start_waiting(peer);
    }

    /// Starts a handshake for the first open waiting on `peer`, once the peer is connected
    /// and our key exists.
    fn try_start_waiting(&mut self, peer: PeerId) {
        let Some(key) = self.keys.current().cloned() else {
            return;
        };
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        if p.connections.is_empty() || p.waiting.is_empty() || p.initiator.is_some() {
            return;
        }
        let peer_is_opening = p.responder.is_some()
            || p.session
                .as_ref()
                .is_some_and(|s| s.state == SessionState::Handshaking);
        if peer_is_opening {
            // The peer is already opening a session with us (for instance its HELLO waited
            // for our key): starting a second handshake would cross it. Ride on it.
            p.opens.extend(p.waiting.drain(..).map(|(o, _, _)| o));
            return;
        }
        let mut waiting = std::mem::take(&mut p.waiting).into_iter();
        let Some((first, secret, _)) = waiting.next() else {
            return;
        };
        p.opens.push(first);
        p.opens.extend(waiting.map(|(o, _, _)| o));
        let (init, hello) = Initiator::start(self.local_peer, peer, key, secret.auth_key());
        let hs_id = *init.hs_id();
        let now = Instant::now();
        p.initiator = Some(InitiatorHs {
            stage: InitStage::SentHello(init),
            hs_id,
            started: now,
        });
        p.idle_since = None;
        tracing::debug!(%peer, "handshake: sending HELLO");
        self.send(peer, Request::Hello(hello), Pending::Hello { peer, hs_id });
        self.schedule(now + self.config.handshake_timeout);
    }

    /// Ends our initiator handshake with `peer` with an error. With `abort`, the peer is
    /// told to drop what it holds for handshake `hs_id`.
    fn fail_initiator(
        &mut self,
        peer: PeerId,
        error: OpenError,
        abort: Option<([u8; HS_ID_LEN], RejectCode)>,
    ) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        p.initiator = None;
        let opens = std::mem::take(&mut p.opens);
        let connected = !p.connections.is_empty();
        tracing::debug!(%peer, "handshake failed: {error}");
        if let Some((hs_id, code)) = abort.filter(|_| connected) {
            self.send(
                peer,
                Request::Abort {
                    hs_id,
                    code: code.to_u16(),
                },
                Pending::Abort,
            );
        }
        self.fail_open(Some(peer), opens, error);
        self.gc_peer(&peer);
    }

    fn on_hello_response(&mut self, peer: PeerId, hs_id: [u8; HS_ID_LEN], resp: Response) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        let Some(hs) = p.initiator.take_if(|hs| hs.hs_id == hs_id) else {
            // A handshake we abandoned (simultaneous open): nothing to do.
            return;
        };
        let InitStage::SentHello(init) = hs.stage else {
            p.initiator = Some(hs);
            return;
        };
        match resp {
            Response::Challenge(ch) => match init.on_challenge(&ch) {
                Ok((wait, auth)) => {
                    p.initiator = Some(InitiatorHs {
                        stage: InitStage::SentAuth(wait),
                        hs_id,
                        started: hs.started,
                    });
                    self.send(peer, Request::Auth(auth), Pending::Auth { peer, hs_id });
                }
                Err(e) => self.fail_initiator(peer, OpenError::Protocol(e.what.into()), None),
            },
            Response::Reject {
                code: RejectCode::HandshakeConflict,
                ..
            } => {
                // The peer's own handshake towards us goes ahead; our opens ride on it.
                tracing::debug!(%peer, "simultaneous handshake: the peer's goes ahead");
            }
            other => self.fail_initiator(peer, open_error_from_response(other), None),
        }
    }

    fn on_auth_response(&mut self, peer: PeerId, hs_id: [u8; HS_ID_LEN], resp: Response) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        let Some(hs) = p.initiator.take_if(|hs| hs.hs_id == hs_id) else {
            return;
        };
        let InitStage::SentAuth(wait) = hs.stage else {
            p.initiator = Some(hs);
            return;
        };
        match resp {
            Response::AuthOk(ok) => self.complete_initiator(peer, wait, ok, hs_id),
            other => self.fail_initiator(peer, open_error_from_response(other), None),
        }
    }

    fn complete_initiator(
        &mut self,
        peer: PeerId,
        wait: AwaitingAuthOk,
        ok: AuthOk,
        hs_id: [u8; HS_ID_LEN],
    ) {
        let now = Instant::now();
        let session_id = wait.session_id();
        let est = match wait.on_auth_ok(&ok) {
            Ok(est) => est,
            Err(e) => {
                let err = if e.code == RejectCode::AuthFailed {
                    OpenError::PeerAuthFailed
                } else {
                    OpenError::Protocol(e.what.into())
                };
                return self.fail_initiator(peer, err, Some((hs_id, e.code)));
            }
        };
        let mut session = Session::new(peer, est, self.params(), now);
        // Key confirmation: the responder's first record must open under the new keys.
        let rec = &ok.record;
        let well_formed = rec.session_id == session_id
            && rec.epoch == 0
            && rec.sender == Role::Responder
            && rec.seq == 0;
        let name = match well_formed.then(|| session.open(rec, now)) {
            Some(Ok((Content::Profile { name }, Slot::Current))) => name,
            _ => {
                let err = OpenError::Protocol("key confirmation failed".into());
                return self.fail_initiator(peer, err, Some((hs_id, RejectCode::DecryptFailed)));
            }
        };
        session.remote_name = Some(name);
        let profile = Content::Profile {
            name: self.config.name.clone(),
        };
        let Some(rec) = session.seal(&profile, now) else {
            let err = OpenError::Protocol("cannot seal".into());
            return self.fail_initiator(peer, err, Some((hs_id, RejectCode::BadState)));
        };
        let (epoch, seq) = (rec.epoch, rec.seq);
        self.install_session(peer, session);
        tracing::debug!(%peer, "handshake: keys agreed, confirming");
        self.send(
            peer,
            Request::Record(rec),
            Pending::Confirm {
                peer,
                session_id,
                epoch,
                seq,
            },
        );
        self.schedule(now + self.config.handshake_timeout);
    }

    /// Puts a freshly agreed session in place, replacing any older one with the peer.
    fn install_session(&mut self, peer: PeerId, session: Session) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        p.initiator = None;
        p.responder = None;
        p.idle_since = None;
        let old = p.session.replace(session);
        let was_announced = std::mem::replace(&mut p.announced, false);
        p.ping_in_flight = false;
        if let Some(old) = &old {
            self.remember_closed(peer, old.id);
        }
        if let Some(old) = old
            && was_announced
        {
            tracing::debug!(%peer, "new session replaces the old one");
            self.push_event(Event::SessionClosed {
                peer,
                session_id: SessionId(old.id),
                reason: CloseReason::Replaced,
            });
        }
        self.set_keep_alive(peer, true);
    }

    /// The session with `peer` is confirmed on our side: announce it and start sending.
    fn activate(&mut self, peer: PeerId) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        let Some(s) = p.session.as_mut() else {
            return;
        };
        s.confirm();
        if p.announced {
            return;
        }
        p.announced = true;
        let opens = std::mem::take(&mut p.opens);
        let ev = Event::SessionEstablished {
            peer,
            session_id: SessionId(s.id),
            role: s.role,
            remote_name: s.remote_name.clone().unwrap_or_default(),
            safety_number: s.safety_number.clone(),
            opens,
        };
        let due = s.rotation_due_at();
        let keepalive = s.last_sent + self.config.keepalive_interval;
        tracing::info!(%peer, session = %SessionId(s.id).short(), role = %s.role, "session established");
        self.push_event(ev);
        self.dirty.insert(peer);
        self.schedule(due.min(keepalive));
    }

    // ----- inbound requests -----

    fn on_request(
        &mut self,
        peer: PeerId,
        connection: ConnectionId,
        request: Request,
        channel: ResponseChannel<Response>,
    ) {
        match request {
            Request::Invalid(e) => {
                self.note_misbehaviour(peer, "sent an invalid frame");
                tracing::debug!(%peer, "invalid request: {e}");
                let detail = match e {
                    wire::WireError::TooLarge { max, .. } => u32::try_from(max).unwrap_or(u32::MAX),
                    _ => 0,
                };
                self.reject(channel, e.reject_code(), detail);
            }
            Request::Hello(hello) => self.on_hello(peer, connection, hello, channel),
            Request::Auth(auth) => self.on_auth(peer, connection, auth, channel),
            Request::Record(rec) => self.on_record(peer, rec, channel),
            Request::Abort { hs_id, code } => {
                self.on_abort(peer, hs_id, code);
                self.respond(channel, Response::Done);
            }
        }
    }

    fn ban_remaining(&self, peer: &PeerId, ip: Option<IpAddr>) -> Option<Duration> {
        let now = Instant::now();
        let by_peer = self.peer_failures.banned(peer, now);
        let by_ip = ip.and_then(|ip| self.ip_failures.banned(&ip, now));
        by_peer.max(by_ip)
    }

    fn connection_ip(&self, connection: ConnectionId) -> Option<IpAddr> {
        self.connections.get(&connection).and_then(|(_, ip)| *ip)
    }

    fn on_hello(
        &mut self,
        peer: PeerId,
        connection: ConnectionId,
        hello: Hello,
        channel: ResponseChannel<Response>,
    ) {
        let now = Instant::now();
        if self.shutting_down {
            return self.reject(channel, RejectCode::Busy, 0);
        }
        if let Some(left) = self.ban_remaining(&peer, self.connection_ip(connection)) {
            self.note_misbehaviour(peer, "kept trying while rate-limited");
            return self.reject(channel, RejectCode::RateLimited, secs(left));
        }
        // Simultaneous handshakes (SPEC.md §5.7): the smaller PeerId's goes ahead.
        if let Some(p) = self.peers.get_mut(&peer)
            && p.initiator.is_some()
        {
            if self.local_peer.to_bytes() < peer.to_bytes() {
                return self.reject(channel, RejectCode::HandshakeConflict, 0);
            }
            tracing::debug!(%peer, "simultaneous handshake: yielding to the peer's");
            p.initiator = None;
        }
        let has_session = self.peers.get(&peer).is_some_and(|p| p.session.is_some());
        let replacing = self.peers.get(&peer).is_some_and(|p| p.responder.is_some())
            || self.deferred_hellos.iter().any(|d| d.peer == peer);
        if !replacing && self.pending_handshakes() >= self.config.max_pending_handshakes {
            self.note_misbehaviour(peer, "hit the handshake limit");
            return self.reject(channel, RejectCode::Busy, 0);
        }
        if !has_session && self.session_count() >= self.config.max_sessions {
            return self.reject(channel, RejectCode::Busy, 0);
        }
        let Some(key) = self.keys.current().cloned() else {
            // Our key is still being generated: answer as soon as it exists. One held HELLO
            // per peer, like one pending handshake per peer (SPEC.md §8): a newer one
            // replaces it, and the older is answered UNKNOWN_HANDSHAKE.
            if let Some(i) = self.deferred_hellos.iter().position(|d| d.peer == peer)
                && let Some(old) = self.deferred_hellos.remove(i)
            {
                self.reject(old.channel, RejectCode::UnknownHandshake, 0);
            }
            self.deferred_hellos.push_back(DeferredHello {
                peer,
                connection,
                hello,
                channel,
                received: now,
            });
            return;
        };
        match Responder::on_hello(self.local_peer, peer, &hello, key) {
            Ok((state, challenge)) => {
                let p = self.peers.entry(peer).or_default();
                p.responder = Some(ResponderHs {
                    state,
                    started: now,
                });
                p.idle_since = None;
                self.respond(channel, Response::Challenge(challenge));
                self.schedule(now + self.config.handshake_timeout);
            }
            Err(e) => {
                self.note_misbehaviour(peer, "sent an unacceptable HELLO");
                tracing::debug!(%peer, "refused HELLO: {}", e.what);
                self.reject(channel, e.code, 0);
            }
        }
    }

    fn on_auth(
        &mut self,
        peer: PeerId,
        connection: ConnectionId,
        auth: wire::Auth,
        channel: ResponseChannel<Response>,
    ) {
        let now = Instant::now();
        let ip = self.connection_ip(connection);
        if let Some(left) = self.ban_remaining(&peer, ip) {
            return self.reject(channel, RejectCode::RateLimited, secs(left));
        }
        let Some(hs) = self
            .peers
            .get_mut(&peer)
            .and_then(|p| p.responder.take_if(|r| *r.state.hs_id() == auth.hs_id))
        else {
            self.note_misbehaviour(peer, "sent AUTH for an unknown handshake");
            return self.reject(channel, RejectCode::UnknownHandshake, 0);
        };
        match hs.state.on_auth(&auth, &self.local_auth) {
            Ok((est, parts)) => self.complete_responder(peer, est, parts, auth.hs_id, channel, now),
            Err(e) => {
                if e.code == RejectCode::AuthFailed {
                    let banned_peer = self.peer_failures.record_failure(&peer, now);
                    let banned_ip = ip.is_some_and(|ip| self.ip_failures.record_failure(&ip, now));
                    let banned = banned_peer || banned_ip;
                    if banned {
                        tracing::warn!(%peer, address = ?ip, "too many failed authentications: banned for a while");
                    } else if let Some(n) =
                        self.log_throttle.hit((peer, "failed to authenticate"), now)
                    {
                        // Logged once, then summarised (the events still count every one).
                        if n == 1 {
                            tracing::info!(%peer, "a peer failed to authenticate (wrong secret)");
                        } else {
                            tracing::info!(%peer, count = n, "a peer failed to authenticate (wrong secret; {n} times since last report)");
                        }
                    }
                    self.push_event(Event::InboundAuthFailed {
                        peer,
                        address: ip,
                        banned,
                    });
                } else {
                    self.note_misbehaviour(peer, "sent an invalid AUTH");
                }
                self.reject(channel, e.code, 0);
                self.gc_peer(&peer);
            }
        }
    }

    fn complete_responder(
        &mut self,
        peer: PeerId,
        est: Established,
        parts: crate::handshake::AuthOkParts,
        hs_id: [u8; HS_ID_LEN],
        channel: ResponseChannel<Response>,
        now: Instant,
    ) {
        let mut session = Session::new(peer, est, self.params(), now);
        let profile = Content::Profile {
            name: self.config.name.clone(),
        };
        let Some(record) = session.seal(&profile, now) else {
            return self.reject(channel, RejectCode::BadState, 0);
        };
        self.install_session(peer, session);
        tracing::debug!(%peer, "handshake: peer authenticated, awaiting confirmation");
        self.respond(
            channel,
            Response::AuthOk(AuthOk {
                hs_id,
                wrapped: parts.wrapped,
                mac: parts.mac,
                record,
            }),
        );
        self.schedule(now + self.config.handshake_timeout);
    }

    fn on_abort(&mut self, peer: PeerId, hs_id: [u8; HS_ID_LEN], code: u16) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        tracing::debug!(%peer, code = %RejectCode::from_u16(code), "peer aborted a handshake");
        if p.responder
            .as_ref()
            .is_some_and(|r| *r.state.hs_id() == hs_id)
        {
            p.responder = None;
        }
        // An unconfirmed session produced by that handshake is discarded too.
        if !p.announced
            && p.session
                .as_ref()
                .is_some_and(|s| s.state == SessionState::Handshaking)
        {
            self.drop_unconfirmed(peer, OpenError::Refused(RejectCode::from_u16(code)));
        }
        self.gc_peer(&peer);
    }

    /// Discards a session that never became active (no `SessionClosed`: it was never
    /// announced), failing the opens that waited for it.
    /// Whether our session with `peer` is `session_id` and still awaits confirmation (an
    /// initiator's may be confirmed by the responder's first record before the `ACK`).
    fn is_unconfirmed(&self, peer: &PeerId, session_id: &[u8; SESSION_ID_LEN]) -> bool {
        self.peers
            .get(peer)
            .and_then(|p| p.session.as_ref())
            .is_some_and(|s| s.id == *session_id && s.state == SessionState::Handshaking)
    }

    fn drop_unconfirmed(&mut self, peer: PeerId, error: OpenError) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        p.session = None;
        let opens = std::mem::take(&mut p.opens);
        let queued: Vec<_> = p.queue.drain(..).collect();
        self.fail_open(Some(peer), opens, error.clone());
        for m in queued {
            self.push_event(Event::DeliveryFailed {
                peer,
                message: m.id,
                error: DeliveryError::SessionClosed(error.to_string()),
            });
        }
        self.set_keep_alive(peer, false);
        self.gc_peer(&peer);
    }

    fn on_record(&mut self, peer: PeerId, rec: wire::Record, channel: ResponseChannel<Response>) {
        let now = Instant::now();
        let Some(s) = self
            .peers
            .get_mut(&peer)
            .and_then(|p| p.session.as_mut())
            .filter(|s| s.id == rec.session_id)
        else {
            if self.was_recently_closed(&peer, &rec.session_id, now) {
                tracing::debug!(%peer, "record for a session we just closed");
            } else {
                self.note_misbehaviour(peer, "sent a record for an unknown session");
            }
            return self.reject(channel, RejectCode::UnknownSession, 0);
        };
        let (content, mut slot) = match s.open(&rec, now) {
            Ok(ok) => ok,
            Err(refusal) => {
                let code = refusal.code;
                let what = match code {
                    RejectCode::DecryptFailed => "sent a record that failed authentication",
                    RejectCode::Replayed => "replayed a record",
                    RejectCode::OutOfWindow => "sent a record outside the replay window",
                    RejectCode::StaleEpoch | RejectCode::UnknownEpoch => {
                        "sent a record for a wrong epoch"
                    }
                    RejectCode::Reflected => "reflected our own record",
                    _ => "sent an invalid record",
                };
                // A stale epoch or a session we are closing is what an honest peer's
                // in-flight records meet; the rest is misbehaviour.
                if !matches!(code, RejectCode::StaleEpoch | RejectCode::SessionClosed) {
                    self.note_misbehaviour(peer, what);
                }
                return self.reject(channel, code, refusal.detail);
            }
        };
        if slot == Slot::Next && s.promote_next(now) {
            // The peer already uses the epoch our rotation created: it is confirmed.
            slot = Slot::Current;
            let (sid, epoch) = (SessionId(s.id), s.epoch());
            self.push_event(Event::SessionRotated {
                peer,
                session_id: sid,
                epoch,
            });
        }
        let Some(s) = self.peers.get_mut(&peer).and_then(|p| p.session.as_mut()) else {
            return;
        };
        if s.state == SessionState::Handshaking && s.role == Role::Initiator {
            // R sends records only once our PROFILE has made its session ACTIVE, so one that
            // opens under the session's keys confirms it as its ACK would (SPEC.md §5.4),
            // which may still be on its way.
            self.activate(peer);
        }
        let Some(s) = self.peers.get_mut(&peer).and_then(|p| p.session.as_mut()) else {
            return;
        };
        let state = s.state;
        let ack = s.ack(slot, rec.seq);
        match content {
            Content::Profile { name }
                if state == SessionState::Handshaking && s.role == Role::Responder =>
            {
                s.remote_name = Some(name);
                self.respond_ack(channel, ack);
                self.activate(peer);
            }
            _ if state == SessionState::Handshaking => {
                s.note_refused(RejectCode::BadState);
                self.note_misbehaviour(peer, "sent a record before confirming the session");
                self.reject(channel, RejectCode::BadState, 0);
            }
            Content::Chat(messages) => {
                s.messages_received += messages.len() as u64;
                s.count_extra_messages((messages.len() as u64).saturating_sub(1));
                let session_id = SessionId(s.id);
                let remote_name = s.remote_name.clone().unwrap_or_default();
                self.respond_ack(channel, ack);
                for message in messages {
                    self.push_event(Event::MessageReceived {
                        peer,
                        session_id,
                        remote_name: remote_name.clone(),
                        message,
                    });
                }
                self.maybe_rotate(peer, now);
            }
            Content::Ping => self.respond_ack(channel, ack),
            Content::Close { code } => {
                self.respond_ack(channel, ack);
                let code = RejectCode::from_u16(code);
                tracing::info!(%peer, "the peer closed the session: {code}");
                self.close(peer, CloseReason::RemoteClosed(code), None);
            }
            Content::RekeyInit {
                new_epoch,
                nonce,
                public_key,
            } => self.on_rekey_init(peer, new_epoch, nonce, public_key, channel, now),
            Content::RekeyCommit { new_epoch, wrapped } => {
                self.on_rekey_commit(peer, new_epoch, wrapped, channel, now)
            }
            Content::Profile { .. } | Content::RekeyReply { .. } | Content::RekeyDone { .. } => {
                s.note_refused(RejectCode::BadState);
                self.note_misbehaviour(peer, "sent a record kind not allowed in a request");
                self.reject(channel, RejectCode::BadState, 0);
            }
        }
    }

    fn respond_ack(&mut self, channel: ResponseChannel<Response>, ack: Option<wire::Ack>) {
        match ack {
            Some(ack) => self.respond(channel, Response::Ack(ack)),
            None => self.reject(channel, RejectCode::StaleEpoch, 0),
        }
    }

    fn on_rekey_init(
        &mut self,
        peer: PeerId,
        new_epoch: u32,
        nonce: [u8; wire::NONCE_LEN],
        public_key: Vec<u8>,
        channel: ResponseChannel<Response>,
        now: Instant,
    ) {
        let Some(key) = self.keys.current().cloned() else {
            return self.reject(channel, RejectCode::Busy, 0);
        };
        let Some(s) = self.peers.get_mut(&peer).and_then(|p| p.session.as_mut()) else {
            return;
        };
        match s.on_rekey_init(new_epoch, nonce, &public_key, key, now) {
            Ok(reply) => match s.seal(&reply, now) {
                Some(rec) => {
                    tracing::debug!(%peer, new_epoch, "rotation: answering the peer's");
                    self.respond(channel, Response::Reply(rec));
                    self.schedule(now + self.config.handshake_timeout);
                }
                None => self.close(peer, CloseReason::Exhausted, None),
            },
            Err(e) => {
                tracing::debug!(%peer, "refused REKEY_INIT: {}", e.what);
                if e.code != RejectCode::RotationConflict {
                    s.note_refused(e.code);
                }
                self.reject(channel, e.code, 0);
            }
        }
    }

    fn on_rekey_commit(
        &mut self,
        peer: PeerId,
        new_epoch: u32,
        wrapped: Vec<u8>,
        channel: ResponseChannel<Response>,
        now: Instant,
    ) {
        let Some(s) = self.peers.get_mut(&peer).and_then(|p| p.session.as_mut()) else {
            return;
        };
        match s.on_rekey_commit(new_epoch, &wrapped, now) {
            Ok(()) => {
                let sid = SessionId(s.id);
                match s.seal(&Content::RekeyDone { new_epoch }, now) {
                    Some(rec) => {
                        self.respond(channel, Response::Reply(rec));
                        tracing::debug!(%peer, epoch = new_epoch, "session rotated");
                        self.push_event(Event::SessionRotated {
                            peer,
                            session_id: sid,
                            epoch: new_epoch,
                        });
                        self.dirty.insert(peer);
                        self.schedule(now + self.config.rotation_grace);
                    }
                    None => self.close(peer, CloseReason::Exhausted, None),
                }
            }
            Err(e) => {
                s.note_refused(e.code);
                self.reject(channel, e.code, 0);
                if e.fatal {
                    self.close(
                        peer,
                        CloseReason::RotationFailed(e.what.into()),
                        Some(e.code),
                    );
                }
            }
        }
    }

    // ----- sending -----

    fn flush(&mut self, peer: PeerId) {
        let now = Instant::now();
        let budget = self.config.max_frame_size - RECORD_OVERHEAD;
        let max_in_flight = self.config.max_in_flight;
        loop {
            let Some(p) = self.peers.get_mut(&peer) else {
                return;
            };
            let Some(s) = p.session.as_mut() else {
                return;
            };
            if !s.is_open() || p.queue.is_empty() || p.in_flight >= max_in_flight {
                break;
            }
            let mut batch = Vec::new();
            let mut size = 3;
            while let Some(m) = p.queue.front() {
                let len = wire::chat_message_encoded_len(m.wire.text.len());
                if !batch.is_empty() && (size + len > budget || batch.len() >= MAX_BATCH) {
                    break;
                }
                size += len;
                if let Some(m) = p.queue.pop_front() {
                    batch.push(m);
                }
            }
            let plain = wire::encode_chat(batch.iter().map(|m| &m.wire));
            let Some(rec) = s.seal_bytes(plain, now) else {
                p.queue.extend(batch);
                return self.close(peer, CloseReason::Exhausted, Some(RejectCode::Shutdown));
            };
            s.messages_sent += batch.len() as u64;
            s.count_extra_messages((batch.len() as u64).saturating_sub(1));
            p.in_flight += 1;
            let pending = Pending::Chat {
                peer,
                session_id: s.id,
                epoch: rec.epoch,
                seq: rec.seq,
                messages: batch,
            };
            self.send(peer, Request::Record(rec), pending);
        }
        self.maybe_rotate(peer, now);
    }

    fn maybe_rotate(&mut self, peer: PeerId, now: Instant) {
        let due = self
            .peers
            .get(&peer)
            .and_then(|p| p.session.as_ref())
            .is_some_and(|s| s.rotation_due(now));
        if due {
            self.start_rotation(peer, now);
        }
    }

    fn start_rotation(&mut self, peer: PeerId, now: Instant) {
        let Some(key) = self.keys.current().cloned() else {
            return;
        };
        let Some(s) = self.peers.get_mut(&peer).and_then(|p| p.session.as_mut()) else {
            return;
        };
        let Some(init) = s.begin_rotation(key, now) else {
            return;
        };
        let Some(rec) = s.seal(&init, now) else {
            return self.close(peer, CloseReason::Exhausted, None);
        };
        let Content::RekeyInit { new_epoch, .. } = init else {
            return;
        };
        let session_id = s.id;
        tracing::debug!(%peer, new_epoch, "rotation: starting");
        self.send(
            peer,
            Request::Record(rec),
            Pending::RekeyInit {
                peer,
                session_id,
                new_epoch,
            },
        );
        self.schedule(now + self.config.handshake_timeout);
    }

    fn send_ping(&mut self, peer: PeerId, now: Instant) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        let Some(s) = p.session.as_mut() else {
            return;
        };
        let Some(rec) = s.seal(&Content::Ping, now) else {
            return self.close(peer, CloseReason::Exhausted, None);
        };
        p.ping_in_flight = true;
        let pending = Pending::Ping {
            peer,
            session_id: s.id,
            epoch: rec.epoch,
            seq: rec.seq,
        };
        self.send(peer, Request::Record(rec), pending);
    }

    /// Ends the session with `peer`. With `notify`, the peer gets a `CLOSE` first and the
    /// session is removed when it answers; otherwise at once.
    fn close(&mut self, peer: PeerId, reason: CloseReason, notify: Option<RejectCode>) {
        let now = Instant::now();
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        let Some(s) = p.session.as_mut() else {
            return;
        };
        let session_id = SessionId(s.id);
        let queued: Vec<_> = p.queue.drain(..).collect();
        for m in queued {
            self.events
                .push_back(ToSwarm::GenerateEvent(Event::DeliveryFailed {
                    peer,
                    message: m.id,
                    error: DeliveryError::SessionClosed(reason.to_string()),
                }));
        }
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        let Some(s) = p.session.as_mut() else {
            return;
        };
        if let Some(code) = notify
            && s.is_open()
            && !p.connections.is_empty()
            && let Some(rec) = s.seal(
                &Content::Close {
                    code: code.to_u16(),
                },
                now,
            )
        {
            s.set_closing();
            self.send(
                peer,
                Request::Record(rec),
                Pending::Close {
                    peer,
                    session_id: session_id.0,
                    reason,
                },
            );
            return;
        }
        self.finish_close(peer, session_id, reason);
    }

    fn remember_closed(&mut self, peer: PeerId, session_id: [u8; SESSION_ID_LEN]) {
        let now = Instant::now();
        let grace = self.config.rotation_grace;
        while self.recently_closed.len() >= RECENTLY_CLOSED
            || self
                .recently_closed
                .front()
                .is_some_and(|(_, _, at)| now.duration_since(*at) >= grace)
        {
            self.recently_closed.pop_front();
        }
        self.recently_closed.push_back((peer, session_id, now));
    }

    fn was_recently_closed(
        &self,
        peer: &PeerId,
        session_id: &[u8; SESSION_ID_LEN],
        now: Instant,
    ) -> bool {
        let grace = self.config.rotation_grace;
        self.recently_closed
            .iter()
            .any(|(p, id, at)| p == peer && id == session_id && now.duration_since(*at) < grace)
    }

    fn finish_close(&mut self, peer: PeerId, session_id: SessionId, reason: CloseReason) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        if p.session.as_ref().map(|s| s.id) != Some(session_id.0) {
            return;
        }
        p.session = None;
        p.ping_in_flight = false;
        let announced = std::mem::replace(&mut p.announced, false);
        self.remember_closed(peer, session_id.0);
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        let opens = std::mem::take(&mut p.opens);
        let queued: Vec<_> = p.queue.drain(..).collect();
        for m in queued {
            self.push_event(Event::DeliveryFailed {
                peer,
                message: m.id,
                error: DeliveryError::SessionClosed(reason.to_string()),
            });
        }
        if announced {
            tracing::info!(%peer, session = %session_id.short(), "session closed: {reason}");
            self.push_event(Event::SessionClosed {
                peer,
                session_id,
                reason,
            });
        } else {
            self.fail_open(Some(peer), opens, OpenError::ConnectionClosed);
        }
        self.set_keep_alive(peer, false);
        self.gc_peer(&peer);
    }

    // ----- answers to our requests -----

    fn on_response(&mut self, peer: PeerId, id: OutboundRequestId, resp: Response) {
        let Some(pending) = self.outbound.remove(&id) else {
            return;
        };
        if let Response::Invalid(e) = &resp {
            self.note_misbehaviour(peer, "sent an invalid response");
            tracing::debug!(%peer, "invalid response: {e}");
        }
        let now = Instant::now();
        match pending {
            Pending::Hello { peer, hs_id } => self.on_hello_response(peer, hs_id, resp),
            Pending::Auth { peer, hs_id } => self.on_auth_response(peer, hs_id, resp),
            Pending::Abort => {}
            Pending::Confirm {
                peer,
                session_id,
                epoch,
                seq,
            } => {
                let ok = matches!(&resp, Response::Ack(ack) if self.session_is(&peer, &session_id)
                    && self.verify_ack(&peer, epoch, seq, ack));
                if ok {
                    self.activate(peer);
                } else if self.is_unconfirmed(&peer, &session_id) {
                    let err = match resp {
                        Response::Ack(_) => OpenError::Protocol("invalid receipt".into()),
                        other => open_error_from_response(other),
                    };
                    self.drop_unconfirmed(peer, err);
                }
            }
            Pending::Chat {
                peer,
                session_id,
                epoch,
                seq,
                messages,
            } => self.on_chat_response(peer, session_id, epoch, seq, messages, Ok(resp)),
            Pending::Ping {
                peer,
                session_id,
                epoch,
                seq,
            } => {
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.ping_in_flight = false;
                }
                if !self.session_is(&peer, &session_id) {
                    return;
                }
                match resp {
                    Response::Ack(ack) if self.verify_ack(&peer, epoch, seq, &ack) => {}
                    Response::Reject {
                        code: RejectCode::UnknownSession,
                        ..
                    } => self.close(peer, CloseReason::RemoteForgot, None),
                    Response::Reject {
                        code: RejectCode::StaleEpoch,
                        ..
                    } => {}
                    _ => {
                        self.note_misbehaviour(peer, "answered a keep-alive wrongly");
                    }
                }
            }
            Pending::RekeyInit {
                peer,
                session_id,
                new_epoch,
            } => self.on_rekey_init_response(peer, session_id, new_epoch, resp, now),
            Pending::RekeyCommit {
                peer,
                session_id,
                new_epoch,
            } => self.on_rekey_commit_response(peer, session_id, new_epoch, resp, now),
            Pending::Close {
                peer,
                session_id,
                reason,
            } => self.finish_close(peer, SessionId(session_id), reason),
        }
    }

    fn session_is(&self, peer: &PeerId, id: &[u8; SESSION_ID_LEN]) -> bool {
        self.peers
            .get(peer)
            .and_then(|p| p.session.as_ref())
            .is_some_and(|s| s.id == *id)
    }

    fn verify_ack(&self, peer: &PeerId, epoch: u32, seq: u64, ack: &wire::Ack) -> bool {
        self.peers
            .get(peer)
            .and_then(|p| p.session.as_ref())
            .is_some_and(|s| s.verify_ack(epoch, seq, ack))
    }

    fn on_chat_response(
        &mut self,
        peer: PeerId,
        session_id: [u8; SESSION_ID_LEN],
        epoch: u32,
        seq: u64,
        messages: Vec<QueuedMessage>,
        resp: Result<Response, DeliveryError>,
    ) {
        let same_session = self.session_is(&peer, &session_id);
        if same_session {
            if let Some(p) = self.peers.get_mut(&peer) {
                p.in_flight = p.in_flight.saturating_sub(1);
            }
            self.dirty.insert(peer);
        }
        let fail = |this: &mut Self, messages: Vec<QueuedMessage>, error: DeliveryError| {
            for m in messages {
                this.push_event(Event::DeliveryFailed {
                    peer,
                    message: m.id,
                    error: error.clone(),
                });
            }
        };
        let resp = match resp {
            Ok(r) => r,
            Err(e) => return fail(self, messages, e),
        };
        if !same_session {
            return fail(
                self,
                messages,
                DeliveryError::SessionClosed("the session ended before the receipt".into()),
            );
        }
        match resp {
            Response::Ack(ack) if self.verify_ack(&peer, epoch, seq, &ack) => {
                for m in messages {
                    self.push_event(Event::MessageDelivered {
                        peer,
                        message: m.id,
                    });
                }
            }
            Response::Ack(_) => {
                self.note_misbehaviour(peer, "sent an invalid receipt");
                fail(self, messages, DeliveryError::BadReceipt)
            }
            Response::Reject {
                code: RejectCode::StaleEpoch,
                ..
            } => {
                // Not processed: the epoch's keys were gone. Send again under the current one.
                if let Some(p) = self.peers.get_mut(&peer) {
                    for m in messages.into_iter().rev() {
                        p.queue.push_front(m);
                    }
                }
            }
            Response::Reject {
                code: RejectCode::UnknownSession,
                ..
            } => {
                fail(
                    self,
                    messages,
                    DeliveryError::Rejected(RejectCode::UnknownSession),
                );
                self.close(peer, CloseReason::RemoteForgot, None);
            }
            Response::Reject { code, .. } => fail(self, messages, DeliveryError::Rejected(code)),
            _ => {
                self.note_misbehaviour(peer, "answered a message wrongly");
                fail(self, messages, DeliveryError::BadReceipt)
            }
        }
    }

    fn on_rekey_init_response(
        &mut self,
        peer: PeerId,
        session_id: [u8; SESSION_ID_LEN],
        new_epoch: u32,
        resp: Response,
        now: Instant,
    ) {
        if !self.session_is(&peer, &session_id) {
            return;
        }
        let Some(s) = self.peers.get_mut(&peer).and_then(|p| p.session.as_mut()) else {
            return;
        };
        let hold_off = self.config.handshake_timeout;
        let result = match resp {
            Response::Reply(rec) if rec.session_id == session_id => match s.open(&rec, now) {
                Ok((content, _)) => s.on_rekey_reply(&content).map_err(|e| e.what.to_string()),
                Err(r) => Err(format!("reply refused: {}", r.code)),
            },
            Response::Reject { .. } if !s.is_initiating(new_epoch) => {
                // We already yielded to the peer's simultaneous rotation: this refusal of
                // ours is expected and changes nothing.
                return;
            }
            Response::Reject {
                code: RejectCode::RotationConflict,
                ..
            } => {
                // Simultaneous rotation: the peer's goes ahead.
                s.abandon_rotation(new_epoch, now, hold_off);
                return;
            }
            Response::Reject { code, .. } => Err(format!("the peer refused: {code}")),
            other => Err(format!("unexpected answer {other:?}")),
        };
        match result {
            Ok(commit) => match s.seal(&commit, now) {
                Some(rec) => self.send(
                    peer,
                    Request::Record(rec),
                    Pending::RekeyCommit {
                        peer,
                        session_id,
                        new_epoch,
                    },
                ),
                None => self.close(peer, CloseReason::Exhausted, None),
            },
            Err(why) => {
                tracing::warn!(%peer, "rotation failed: {why}");
                self.close(
                    peer,
                    CloseReason::RotationFailed(why),
                    Some(RejectCode::BadState),
                );
            }
        }
    }

    fn on_rekey_commit_response(
        &mut self,
        peer: PeerId,
        session_id: [u8; SESSION_ID_LEN],
        new_epoch: u32,
        resp: Response,
        now: Instant,
    ) {
        if !self.session_is(&peer, &session_id) {
            return;
        }
        let Some(s) = self.peers.get_mut(&peer).and_then(|p| p.session.as_mut()) else {
            return;
        };
        let result = match resp {
            Response::Reply(rec) if rec.session_id == session_id => match s.open(&rec, now) {
                Ok((Content::RekeyDone { new_epoch: e }, slot)) if e == new_epoch => {
                    if slot == Slot::Next {
                        s.promote_next(now);
                        Ok(true)
                    } else {
                        // Already promoted by an earlier record of the new epoch.
                        Ok(false)
                    }
                }
                Ok(_) => Err("unexpected reply to REKEY_COMMIT".to_string()),
                Err(r) => Err(format!("reply refused: {}", r.code)),
            },
            Response::Reject { code, .. } => Err(format!("the peer refused: {code}")),
            other => Err(format!("unexpected answer {other:?}")),
        };
        match result {
            Ok(promoted) => {
                if promoted {
                    tracing::debug!(%peer, epoch = new_epoch, "session rotated");
                    self.push_event(Event::SessionRotated {
                        peer,
                        session_id: SessionId(session_id),
                        epoch: new_epoch,
                    });
                }
                self.dirty.insert(peer);
                self.schedule(now + self.config.rotation_grace);
            }
            Err(why) => {
                tracing::warn!(%peer, "rotation failed: {why}");
                self.close(peer, CloseReason::RotationFailed(why), None);
            }
        }
    }

    fn on_outbound_failure(
        &mut self,
        peer: PeerId,
        id: OutboundRequestId,
        error: request_response::OutboundFailure,
    ) {
        let Some(pending) = self.outbound.remove(&id) else {
            return;
        };
        use request_response::OutboundFailure as F;
        let open_err = || match &error {
            F::DialFailure => OpenError::Dial("the peer could not be reached".into()),
            F::Timeout => OpenError::Timeout,
            F::ConnectionClosed => OpenError::ConnectionClosed,
            F::UnsupportedProtocols => OpenError::UnsupportedProtocol,
            F::Io(e) if refused_protocol(e) => OpenError::UnsupportedProtocol,
            F::Io(e) => OpenError::Protocol(e.to_string()),
        };
        let delivery_err = || match &error {
            F::Timeout => DeliveryError::Timeout,
            F::ConnectionClosed | F::DialFailure => DeliveryError::ConnectionClosed,
            F::UnsupportedProtocols => DeliveryError::Io("protocol not supported".into()),
            F::Io(e) if refused_protocol(e) => DeliveryError::Io("protocol not supported".into()),
            F::Io(e) => DeliveryError::Io(e.to_string()),
        };
        tracing::debug!(%peer, "request failed: {error}");
        match pending {
            Pending::Hello { peer, hs_id } | Pending::Auth { peer, hs_id } => {
                if self
                    .peers
                    .get(&peer)
                    .and_then(|p| p.initiator.as_ref())
                    .is_some_and(|hs| hs.hs_id == hs_id)
                {
                    self.fail_initiator(peer, open_err(), None);
                }
            }
            Pending::Abort => {}
            Pending::Confirm {
                peer, session_id, ..
            } => {
                if self.is_unconfirmed(&peer, &session_id) {
                    self.drop_unconfirmed(peer, open_err());
                }
            }
            Pending::Chat {
                peer,
                session_id,
                epoch,
                seq,
                messages,
            } => self.on_chat_response(peer, session_id, epoch, seq, messages, Err(delivery_err())),
            Pending::Ping {
                peer, session_id, ..
            } => {
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.ping_in_flight = false;
                }
                if self.session_is(&peer, &session_id) {
                    let reason = match error {
                        F::ConnectionClosed | F::DialFailure => CloseReason::ConnectionLost,
                        _ => CloseReason::PeerUnresponsive,
                    };
                    self.close(peer, reason, None);
                }
            }
            Pending::RekeyInit {
                peer, session_id, ..
            }
            | Pending::RekeyCommit {
                peer, session_id, ..
            } => {
                if self.session_is(&peer, &session_id) {
                    self.close(peer, CloseReason::RotationFailed(error.to_string()), None);
                }
            }
            Pending::Close {
                peer,
                session_id,
                reason,
            } => self.finish_close(peer, SessionId(session_id), reason),
        }
    }

    // ----- key ring and timers -----

    fn on_key_event(&mut self, ev: KeyRingEvent) {
        match ev {
            KeyRingEvent::Ready(key) => {
                tracing::debug!(
                    bits = key.bits(),
                    generation = key.generation(),
                    "RSA key ready"
                );
                self.push_event(Event::KeyReady {
                    bits: key.bits(),
                    generation: key.generation(),
                    fingerprint: key.fingerprint(),
                });
                for d in std::mem::take(&mut self.deferred_hellos) {
                    if d.channel.is_open() {
                        self.on_hello(d.peer, d.connection, d.hello, d.channel);
                    }
                }
                let waiting: Vec<PeerId> = self
                    .peers
                    .iter()
                    .filter(|(_, p)| !p.waiting.is_empty())
                    .map(|(id, _)| *id)
                    .collect();
                for peer in waiting {
                    self.try_start_waiting(peer);
                }
            }
            KeyRingEvent::Failed(e) => {
                tracing::warn!("RSA key generation failed: {e}");
                self.push_event(Event::KeyGenerationFailed {
                    error: e.to_string(),
                });
            }
        }
    }

    fn on_tick(&mut self, now: Instant) {
        let timeout = self.config.handshake_timeout;
        let grace = self.config.unauthenticated_grace;
        let keepalive = self.config.keepalive_interval;
        let mut next = now + MAX_TICK;
        let peers: Vec<PeerId> = self.peers.keys().copied().collect();
        let mut close_conns = Vec::new();
        for peer in peers {
            let Some(p) = self.peers.get_mut(&peer) else {
                continue;
            };
            // Opens waiting too long for a connection or our key.
            let (expired, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut p.waiting)
                .into_iter()
                .partition(|(_, _, t)| now.duration_since(*t) >= timeout);
            p.waiting = kept;
            for (_, _, t) in &p.waiting {
                next = next.min(*t + timeout);
            }
            let expired: Vec<OpenId> = expired.into_iter().map(|(o, _, _)| o).collect();
            // Handshakes past their deadline.
            let init_late = p
                .initiator
                .as_ref()
                .filter(|h| now.duration_since(h.started) >= timeout)
                .map(|h| h.hs_id);
            if let Some(h) = &p.initiator {
                next = next.min(h.started + timeout);
            }
            if p.responder
                .as_ref()
                .is_some_and(|h| now.duration_since(h.started) >= timeout)
            {
                tracing::debug!(%peer, "inbound handshake timed out");
                p.responder = None;
            }
            if let Some(h) = &p.responder {
                next = next.min(h.started + timeout);
            }
            let mut unconfirmed_late = false;
            let mut rotation_late = false;
            let mut ping = false;
            let mut rotate = false;
            if let Some(s) = p.session.as_mut() {
                if s.state == SessionState::Handshaking {
                    unconfirmed_late = now.duration_since(s.created) >= timeout;
                    next = next.min(s.created + timeout);
                } else {
                    if let Some(exp) = s.expire_previous(now) {
                        next = next.min(exp);
                    }
                    if let Some(started) = s.rotation_started() {
                        rotation_late = now.duration_since(started) >= timeout;
                        next = next.min(started + timeout);
                    }
                    if s.is_open() {
                        rotate = s.rotation_due(now);
                        next = next.min(s.rotation_due_at());
                        let ping_at = s.last_sent + keepalive;
                        ping = now >= ping_at && !p.ping_in_flight;
                        next = next.min(ping_at.max(now + Duration::from_millis(1)));
                    }
                }
            }
            // Connections that never authenticated.
            if p.is_unauthenticated_idle() {
                let since = *p.idle_since.get_or_insert(now);
                if now.duration_since(since) >= grace {
                    close_conns.push(peer);
                    p.idle_since = None;
                } else {
                    next = next.min(since + grace);
                }
            } else {
                p.idle_since = None;
            }
            self.fail_open(Some(peer), expired, OpenError::Timeout);
            if let Some(hs_id) = init_late {
                self.fail_initiator(
                    peer,
                    OpenError::Timeout,
                    Some((hs_id, RejectCode::Shutdown)),
                );
            }
            if unconfirmed_late {
                self.drop_unconfirmed(peer, OpenError::Timeout);
            }
            if rotation_late {
                if let Some(s) = self.peers.get_mut(&peer).and_then(|p| p.session.as_mut()) {
                    s.abort_rotation();
                }
                self.close(
                    peer,
                    CloseReason::RotationFailed("timed out".into()),
                    Some(RejectCode::BadState),
                );
            } else if rotate {
                self.start_rotation(peer, now);
            } else if ping {
                self.send_ping(peer, now);
            }
            self.gc_peer(&peer);
        }
        for peer in close_conns {
            tracing::debug!(%peer, "closing a connection that did not authenticate in time");
            self.events.push_back(ToSwarm::CloseConnection {
                peer_id: peer,
                connection: CloseConnection::All,
            });
        }
        // HELLOs waiting for our key beyond the request timeout have been dropped by
        // request-response already; forget them.
        let limit = self.config.request_timeout;
        self.deferred_hellos
            .retain(|d| d.channel.is_open() && now.duration_since(d.received) < limit);
        self.peer_failures.prune(now);
        self.ip_failures.prune(now);
        self.timer_at = next.max(now + Duration::from_millis(1));
        self.timer
            .reset(self.timer_at.saturating_duration_since(now));
    }

    // ----- connection tracking -----

    fn on_connection_established(&mut self, ev: ConnectionEstablished<'_>) {
        let ip = ip_of(ev.endpoint.get_remote_address());
        self.connections.insert(ev.connection_id, (ev.peer_id, ip));
        let now = Instant::now();
        let p = self.peers.entry(ev.peer_id).or_default();
        p.connections.push(ev.connection_id);
        if p.is_unauthenticated_idle() && p.idle_since.is_none() {
            p.idle_since = Some(now);
        }
        self.schedule(now + self.config.unauthenticated_grace);
        if let Some((open, secret)) = self.pending_dials.remove(&ev.connection_id) {
            self.start_open(ev.peer_id, open, secret);
        }
        self.try_start_waiting(ev.peer_id);
    }

    fn on_connection_closed(&mut self, ev: ConnectionClosed<'_>) {
        self.connections.remove(&ev.connection_id);
        let peer = ev.peer_id;
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        p.connections.retain(|c| *c != ev.connection_id);
        if ev.remaining_established > 0 || !p.connections.is_empty() {
            return;
        }
        // The last connection is gone: so is everything that needed it.
        p.responder = None;
        if p.initiator.is_some() {
            self.fail_initiator(peer, OpenError::ConnectionClosed, None);
        }
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        let waiting: Vec<OpenId> = p.waiting.drain(..).map(|(o, _, _)| o).collect();
        self.fail_open(Some(peer), waiting, OpenError::ConnectionClosed);
        match self.peers.get(&peer).and_then(|p| p.session.as_ref()) {
            Some(s) if s.state == SessionState::Handshaking => {
                self.drop_unconfirmed(peer, OpenError::ConnectionClosed)
            }
            Some(s) if s.state == SessionState::Closing => {
                let id = SessionId(s.id);
                let reason = CloseReason::LocalClosed;
                self.finish_close(peer, id, reason);
            }
            Some(s) => {
                let id = SessionId(s.id);
                self.finish_close(peer, id, CloseReason::ConnectionLost);
            }
            None => {}
        }
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        let opens = std::mem::take(&mut p.opens);
        self.fail_open(Some(peer), opens, OpenError::ConnectionClosed);
        self.gc_peer(&peer);
    }

    fn on_dial_failure(&mut self, ev: DialFailure<'_>) {
        if let Some((open, _)) = self.pending_dials.remove(&ev.connection_id) {
            self.fail_open(
                ev.peer_id,
                vec![open],
                OpenError::Dial(describe_dial_error(ev.error)),
            );
            return;
        }
        let Some(peer) = ev.peer_id else {
            return;
        };
        if matches!(ev.error, DialError::DialPeerConditionFalse(_)) {
            return;
        }
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        if !p.connections.is_empty() {
            return;
        }
        let waiting: Vec<OpenId> = p.waiting.drain(..).map(|(o, _, _)| o).collect();
        let why = describe_dial_error(ev.error);
        self.fail_open(Some(peer), waiting, OpenError::Dial(why));
        self.gc_peer(&peer);
    }

    fn new_handler(
        &self,
        inner: THandler<request_response::Behaviour<Codec>>,
        peer: &PeerId,
    ) -> Handler {
        let keep = self.peers.get(peer).is_some_and(|p| p.session.is_some());
        Handler::new(inner, keep)
    }
}

fn info(p: &Peer, s: &Session, now: Instant) -> SessionInfo {
    SessionInfo {
        peer: s.peer,
        id: SessionId(s.id),
        role: s.role,
        state: s.state,
        epoch: s.epoch(),
        remote_name: s.remote_name.clone(),
        safety_number: s.safety_number.clone(),
        age: now.saturating_duration_since(s.created),
        next_rotation_in: s.rotation_due_at().saturating_duration_since(now),
        messages_sent: s.messages_sent,
        messages_received: s.messages_received,
        queued: p.queue.len(),
        rejections: s.rejections,
    }
}

/// Whether a request failed because the peer refused our protocol. With multistream-select
/// `V1Lazy` (which the node uses) the request is written together with the protocol
/// proposal, so the refusal only shows when the answer is read, as an I/O error that
/// carries the negotiation error.
fn refused_protocol(e: &std::io::Error) -> bool {
    use libp2p::core::upgrade::NegotiationError;
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<NegotiationError>())
        .is_some_and(|n| matches!(n, NegotiationError::Failed))
}

fn open_error_from_response(resp: Response) -> OpenError {
    match resp {
        Response::Reject { code, detail } => match code {
            RejectCode::AuthFailed => OpenError::WrongSecret,
            RejectCode::RateLimited => OpenError::RateLimited(detail),
            RejectCode::Busy => OpenError::Busy,
            other => OpenError::Refused(other),
        },
        Response::Invalid(e) => OpenError::Protocol(format!("invalid answer: {e}")),
        other => OpenError::Protocol(format!("unexpected answer {other:?}")),
    }
}

fn secs(d: Duration) -> u32 {
    u32::try_from(d.as_secs().saturating_add(1)).unwrap_or(u32::MAX)
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn ip_of(addr: &Multiaddr) -> Option<IpAddr> {
    addr.iter().find_map(|p| match p {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
        _ => None,
    })
}

/// One line a user can read, from libp2p's nested dial errors.
pub(crate) fn describe_dial_error(e: &DialError) -> String {
    match e {
        DialError::LocalPeerId { .. } => "that address is this node".into(),
        DialError::NoAddresses => "no known address for that peer".into(),
        DialError::DialPeerConditionFalse(_) => "already dialing that peer".into(),
        DialError::Aborted => "dial aborted".into(),
        DialError::WrongPeerId { .. } => "a different peer answered at that address".into(),
        DialError::Denied { cause } => format!("connection refused locally: {cause}"),
        DialError::Transport(errors) => {
            let mut parts: Vec<String> = errors
                .iter()
                .map(|(_, err)| {
                    let mut msg = err.to_string();
                    let mut src = std::error::Error::source(err);
                    while let Some(s) = src {
                        msg = s.to_string();
                        src = s.source();
                    }
                    msg
                })
                .collect();
            parts.dedup();
            if parts.is_empty() {
                "transport error".into()
            } else {
                parts.join("; ")
            }
        }
    }
}

impl NetworkBehaviour for Behaviour {
    type ConnectionHandler = Handler;
    type ToSwarm = Event;

    fn handle_pending_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        if let Some(ip) = ip_of(remote_addr)
            && let Some(left) = self.ip_failures.banned(&ip, Instant::now())
        {
            tracing::debug!(%ip, "refusing a connection from a banned address");
            return Err(ConnectionDenied::new(RateLimitedAddress(secs(left))));
        }
        self.inner
            .handle_pending_inbound_connection(connection_id, local_addr, remote_addr)
    }

    fn handle_established_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        peer: PeerId,
        local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        let inner = self.inner.handle_established_inbound_connection(
            connection_id,
            peer,
            local_addr,
            remote_addr,
        )?;
        Ok(self.new_handler(inner, &peer))
    }

    fn handle_pending_outbound_connection(
        &mut self,
        connection_id: ConnectionId,
        maybe_peer: Option<PeerId>,
        addresses: &[Multiaddr],
        effective_role: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        self.inner.handle_pending_outbound_connection(
            connection_id,
            maybe_peer,
            addresses,
            effective_role,
        )
    }

    fn handle_established_outbound_connection(
        &mut self,
        connection_id: ConnectionId,
        peer: PeerId,
        addr: &Multiaddr,
        role_override: Endpoint,
        port_use: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        let inner = self.inner.handle_established_outbound_connection(
            connection_id,
            peer,
            addr,
            role_override,
            port_use,
        )?;
        Ok(self.new_handler(inner, &peer))
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        self.inner.on_swarm_event(event);
        match event {
            FromSwarm::ConnectionEstablished(ev) => self.on_connection_established(ev),
            FromSwarm::ConnectionClosed(ev) => self.on_connection_closed(ev),
            FromSwarm::DialFailure(ev) => self.on_dial_failure(ev),
            _ => {}
        }
    }

    fn on_connection_handler_event(
        &mut self,
        peer_id: PeerId,
        connection_id: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        self.inner
            .on_connection_handler_event(peer_id, connection_id, event)
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<ToSwarm<Event, THandlerInEvent<Self>>> {
        loop {
            if let Some(ev) = self.events.pop_front() {
                return Poll::Ready(ev);
            }
            if let Poll::Ready(ev) = self.keys.poll(cx) {
                self.on_key_event(ev);
                continue;
            }
            if self.timer.poll_unpin(cx).is_ready() {
                self.on_tick(Instant::now());
                continue;
            }
            if !self.dirty.is_empty() {
                for peer in std::mem::take(&mut self.dirty) {
                    self.flush(peer);
                }
                continue;
            }
            match self.inner.poll(cx) {
                Poll::Ready(ToSwarm::GenerateEvent(ev)) => {
                    self.on_inner_event(ev);
                    continue;
                }
                Poll::Ready(other) => {
                    return Poll::Ready(
                        other
                            .map_in(HandlerIn::Request)
                            .map_out(|_| unreachable!("GenerateEvent is handled above")),
                    );
                }
                Poll::Pending => {}
            }
            if self.events.is_empty() && self.dirty.is_empty() {
                self.waker = Some(cx.waker().clone());
                return Poll::Pending;
            }
        }
    }
}

impl Behaviour {
    fn on_inner_event(&mut self, ev: request_response::Event<Request, Response>) {
        use request_response::{Event as E, Message as M};
        match ev {
            E::Message {
                peer,
                connection_id,
                message: M::Request {
                    request, channel, ..
                },
            } => self.on_request(peer, connection_id, request, channel),
            E::Message {
                peer,
                message:
                    M::Response {
                        request_id,
                        response,
                    },
                ..
            } => self.on_response(peer, request_id, response),
            E::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => self.on_outbound_failure(peer, request_id, error),
            E::InboundFailure { peer, error, .. } => {
                if matches!(error, request_response::InboundFailure::Timeout) {
                    self.note_misbehaviour(peer, "left a request unfinished (timeout)");
                }
                tracing::debug!(%peer, "inbound request failed: {error}");
            }
            E::ResponseSent { .. } => {}
        }
    }
}

/// Why a connection from a banned address was refused.
#[derive(Debug)]
struct RateLimitedAddress(u32);

impl fmt::Display for RateLimitedAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "address banned after failed authentications ({} s left)",
            self.0
        )
    }
}

impl std::error::Error for RateLimitedAddress {}

/// The protocol this behaviour speaks (for nodes that list their protocols).
pub fn protocol() -> StreamProtocol {
    PROTOCOL
}
