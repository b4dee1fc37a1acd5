//! The `NetworkBehaviour`: libp2p plumbing around the I/O-free protocol core
//! ([`crate::peers::Peers`] and its per-peer machines), plus the public API.
//!
//! Everything a peer sends arrives from request-response as an event; the behaviour gives
//! each response channel a [`ChannelToken`], maps each `OutboundRequestId` back to the
//! [`ReqToken`] the core named it with, feeds the input to the core with the current time,
//! and carries out the [`Action`]s the core returns (requests, responses, events, dials,
//! keep-alive switches, a timer). The RSA key ring runs here too, as it owns a thread.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use futures::FutureExt;
use futures_timer::Delay;
use libp2p::PeerId;
use libp2p::core::transport::PortUse;
use libp2p::core::{ConnectedPoint, Endpoint, Multiaddr};
use libp2p::multiaddr::Protocol;
use libp2p::request_response::{self, OutboundRequestId, ResponseChannel};
use libp2p::swarm::behaviour::{ConnectionClosed, ConnectionEstablished, DialFailure, FromSwarm};
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{
    CloseConnection, ConnectionDenied, ConnectionId, DialError, NetworkBehaviour, NotifyHandler,
    THandler, THandlerInEvent, THandlerOutEvent, ToSwarm,
};

use crate::codec::{Codec, PROTOCOL};
use crate::config::Config;
use crate::crypto::{RsaKeyPair, Secret};
use crate::error::{OpenError, RefuseError, SendError, SessionError, describe_dial_error, failure};
use crate::handler::{Handler, HandlerIn};
use crate::keys::{KeyRing, KeyRingEvent};
use crate::offload::{self, JobResult, JobTag, PrivatePool, Submit};
use crate::peer::{Action, ChannelToken, ReqToken};
use crate::peers::{MAX_TICK, Peers};
use crate::types::{Event, MessageId, OpenId, SessionInfo, StateCounts};
use crate::wire::{self, RECORD_OVERHEAD, Request, Response};

/// How many private-key jobs may wait for the pool; more are answered `BUSY`.
const PRIVATE_QUEUE: usize = 64;

/// The Noctua chat behaviour. See the crate documentation for an example.
pub struct Behaviour {
    inner: request_response::Behaviour<Codec>,
    keys: KeyRing,
    core: Peers,
    /// Opens by address ([`Behaviour::connect`]), until their connection is up.
    pending_dials: HashMap<ConnectionId, (OpenId, Secret)>,
    /// Our requests in flight, by libp2p's id, with the core's name for them.
    requests: HashMap<OutboundRequestId, ReqToken>,
    /// Inbound requests not answered yet, by the core's name for them.
    channels: HashMap<ChannelToken, ResponseChannel<Response>>,
    next_channel: u64,
    events: VecDeque<ToSwarm<Event, HandlerIn>>,
    timer: Delay,
    timer_at: Instant,
    next_open_id: u64,
    waker: Option<Waker>,
    /// Our listen addresses, as the swarm reports them: the swarm drops these from a dial
    /// (it never dials itself), so `connect` recognises them first.
    listen_addrs: Vec<Multiaddr>,
    /// Every established connection: its peer, and the address we dialed if we dialed it
    /// (bounded by the swarm's connection limits). `connect` to an address we already
    /// have a connection to opens on that connection instead of dialing again.
    connections: HashMap<ConnectionId, (PeerId, Option<Multiaddr>)>,
    /// Runs private-key work off the event loop when the configuration asks for it
    /// (DESIGN-offload.md); `None`: such work runs inline.
    private: Option<PrivatePool>,
    /// Private-key results to feed back to the core: refused jobs (`Busy`) and jobs run
    /// inline. Bounded by the actions of one `carry_out`.
    private_done: VecDeque<(JobTag, JobResult)>,
}

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
        let now = Instant::now();
        let private = config
            .offload_private
            .then(|| PrivatePool::new(PrivatePool::default_threads(), PRIVATE_QUEUE));
        let core = Peers::new(local_peer, config, keys.current().cloned(), now);
        Behaviour {
            inner,
            keys,
            core,
            pending_dials: HashMap::new(),
            requests: HashMap::new(),
            channels: HashMap::new(),
            next_channel: 1,
            events: VecDeque::new(),
            timer: Delay::new(MAX_TICK),
            timer_at: now + MAX_TICK,
            next_open_id: 1,
            waker: None,
            listen_addrs: Vec::new(),
            connections: HashMap::new(),
            private,
            private_done: VecDeque::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        self.core.config()
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
    ///
    /// Every dial of this behaviour (this one and the core's re-dials) asks for a new source
    /// port ([`PortUse::New`]). libp2p's TCP transport dials from the port it listens on by
    /// default ([`PortUse::Reuse`]); two listening nodes dialing each other at the same
    /// moment (two people typing `connect` at once, two lab nodes discovering each other)
    /// then send SYNs with the same two ends, and the kernel joins them into one TCP
    /// *simultaneous open*: one connection on which both ends believe they dialed, both
    /// start Noise as the initiator and both fail at once ("input error"), with no session
    /// on either side and nothing accepted by either listener. A new port per dial gives two
    /// ordinary connections, and the protocol's crossing rules keep one session. Port reuse
    /// only serves NAT hole punching, which Noctua does not do.
    ///
    /// An address that ends in `/p2p/PEER` (a pinned connection string, SPEC.md §4) is
    /// dialed asking the transport to check that identity, and an existing connection is
    /// reused only if it is with `PEER` itself, never one that merely goes to the same
    /// address. If another identity answers, the open fails with [`OpenError::WrongPeer`].
    pub fn connect(&mut self, address: Multiaddr, secret: Secret) -> OpenId {
        let open = self.next_open();
        let peer_in_addr = address.iter().find_map(|p| match p {
            Protocol::P2p(id) => Some(id),
            _ => None,
        });
        let without_peer: Multiaddr = address
            .iter()
            .filter(|p| !matches!(p, Protocol::P2p(_)))
            .collect();
        if peer_in_addr == Some(self.core.local_peer()) || self.listen_addrs.contains(&without_peer)
        {
            self.events
                .push_back(ToSwarm::GenerateEvent(Event::OpenFailed {
                    open,
                    peer: None,
                    error: OpenError::Dial("that address is this node".into()),
                }));
            return open;
        }
        // Already connected to that peer, or to whoever answers at that address: open on
        // that connection. A user who retries `connect` (a wrong secret, say) then reuses
        // one connection instead of piling up new ones until the per-peer connection limit
        // refuses the next dial locally; the listener sees every attempt and applies its
        // failure limits (SPEC §8).
        let known = match peer_in_addr {
            Some(peer) => self
                .connections
                .values()
                .any(|(p, _)| *p == peer)
                .then_some(peer),
            None => self
                .connections
                .values()
                .find(|(_, dialed)| dialed.as_ref() == Some(&without_peer))
                .map(|(p, _)| *p),
        };
        if let Some(peer) = known {
            self.core.open(peer, open, secret, Instant::now());
            self.carry_out();
            self.wake();
            return open;
        }
        // A new source port: see above.
        let opts = match peer_in_addr {
            Some(peer) => DialOpts::peer_id(peer)
                .addresses(vec![address])
                .condition(PeerCondition::Always)
                .allocate_new_port()
                .build(),
            None => DialOpts::unknown_peer_id()
                .address(address)
                .allocate_new_port()
                .build(),
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
        self.core.open(peer, open, secret, Instant::now());
        self.carry_out();
        self.wake();
        open
    }

    /// Queues a chat message for `peer`. It is sent as soon as the session is active
    /// (possibly together with other queued messages), and its fate is reported by
    /// [`Event::MessageDelivered`] or [`Event::DeliveryFailed`]. The message is not marked
    /// private: use this when the same text goes to everyone (a broadcast), and
    /// [`Behaviour::send_private_message`] for a message meant for `peer` alone.
    pub fn send_message(
        &mut self,
        peer: &PeerId,
        text: impl Into<String>,
    ) -> Result<MessageId, SendError> {
        self.send_chat(peer, text.into(), false)
    }

    /// Like [`Behaviour::send_message`], but the message is marked private (sent to `peer`
    /// alone, SPEC.md §3.5): the receiver sees [`ChatMessage::private`](crate::ChatMessage)
    /// set.
    pub fn send_private_message(
        &mut self,
        peer: &PeerId,
        text: impl Into<String>,
    ) -> Result<MessageId, SendError> {
        self.send_chat(peer, text.into(), true)
    }

    fn send_chat(
        &mut self,
        peer: &PeerId,
        text: String,
        private: bool,
    ) -> Result<MessageId, SendError> {
        let max = self.max_text_len();
        if text.len() > max {
            return Err(SendError::TooLarge {
                len: text.len(),
                max,
            });
        }
        let id = self
            .core
            .send_chat(*peer, text, unix_ms(), private, Instant::now())?;
        self.carry_out();
        self.wake();
        Ok(id)
    }

    /// Longest text [`Behaviour::send_message`] accepts.
    pub fn max_text_len(&self) -> usize {
        let config = self.core.config();
        config
            .max_message_size
            .min(config.max_frame_size - RECORD_OVERHEAD - 3 - wire::chat_message_encoded_len(0))
    }

    /// All sessions, in no particular order.
    pub fn sessions(&self) -> impl Iterator<Item = SessionInfo> + '_ {
        self.core.sessions(Instant::now())
    }

    /// One peer's session.
    pub fn session(&self, peer: &PeerId) -> Option<SessionInfo> {
        self.core.session(peer, Instant::now())
    }

    /// Peers we are connected to (with or without a session).
    pub fn connected_peers(&self) -> impl Iterator<Item = &PeerId> + '_ {
        self.core.connected_peers()
    }

    /// Starts a rotation of the session with `peer` now.
    pub fn rotate(&mut self, peer: &PeerId) -> Result<(), SessionError> {
        self.core.rotate(*peer, Instant::now())?;
        self.carry_out();
        self.wake();
        Ok(())
    }

    /// Ends the session with `peer`: the peer is told (`CLOSE`), queued messages are
    /// reported as not delivered, and [`Event::SessionClosed`] follows the peer's answer.
    pub fn close_session(&mut self, peer: &PeerId) -> Result<(), SessionError> {
        self.core.close_session(*peer, Instant::now())?;
        self.carry_out();
        self.wake();
        Ok(())
    }

    /// Refuses sessions with `peer` until [`Behaviour::allow_peer`] (SPEC.md §9): its
    /// `HELLO`s (and `AUTH`s) are answered `REFUSED`, so its opens fail with
    /// [`OpenError::Refused`]; its handshakes in progress with us are dropped; our opens
    /// towards it fail with [`OpenError::RefusedHere`], as do later ones. An established
    /// session is *not* closed by this call: call [`Behaviour::close_session`] first to end
    /// it. At most [`Config::with_max_refused_peers`] peers (default 4096) are refused at
    /// once; beyond that this fails and nothing changes.
    pub fn refuse_peer(&mut self, peer: PeerId) -> Result<(), RefuseError> {
        self.core.refuse_peer(peer, Instant::now())?;
        self.carry_out();
        self.wake();
        Ok(())
    }

    /// Accepts sessions with `peer` again; returns whether it was refused.
    pub fn allow_peer(&mut self, peer: &PeerId) -> bool {
        self.core.allow_peer(peer)
    }

    /// Whether `peer` is refused ([`Behaviour::refuse_peer`]).
    pub fn is_refused(&self, peer: &PeerId) -> bool {
        self.core.is_refused(peer)
    }

    /// Replaces our connection secret while running (SPEC.md §4): every handshake we answer
    /// from now on must prove `secret`; a handshake a peer started under the old secret and
    /// has not authenticated yet is discarded (its `AUTH` gets `UNKNOWN_HANDSHAKE`). Sessions
    /// already established, and handshakes already authenticated, are untouched.
    /// [`Behaviour::config`] reports the new secret from now on.
    pub fn set_secret(&mut self, secret: Secret) {
        self.core.set_secret(secret, Instant::now());
        self.carry_out();
        self.wake();
    }

    /// Closes every session (telling each peer) and refuses new ones. Poll until
    /// [`Behaviour::closing_sessions`] is 0 (or a deadline passes) before dropping the swarm,
    /// so that peers see a goodbye rather than a timeout.
    pub fn shutdown(&mut self) {
        self.core.shutdown(Instant::now());
        self.carry_out();
        self.wake();
    }

    /// Sessions still waiting for the peer to acknowledge our `CLOSE`.
    pub fn closing_sessions(&self) -> usize {
        self.core.closing_sessions()
    }

    /// Inbound connections refused at connection time so far because their address held
    /// its share of connections that have not authenticated (SPEC.md §8), for tests and
    /// diagnostics.
    pub fn refused_connections(&self) -> u64 {
        self.core.refused_connections()
    }

    /// Inbound connections that have not authenticated: in their transport upgrade, or up
    /// without a session (what the per-address caps of SPEC.md §8 count), for tests and
    /// diagnostics.
    pub fn unauthenticated_connections(&self) -> usize {
        self.core.unauthenticated_connections()
    }

    /// Internal state sizes, for tests and diagnostics.
    pub fn state_counts(&self) -> StateCounts {
        self.core.state_counts()
    }

    // ------------------------------------------------------------------------------------
    // Plumbing
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

    fn schedule(&mut self, at: Instant) {
        if at < self.timer_at {
            let now = Instant::now();
            self.timer_at = at;
            self.timer.reset(at.saturating_duration_since(now));
        }
    }

    /// Carries out what the core asked for, in order.
    fn carry_out(&mut self) {
        for action in self.core.take_actions() {
            match action {
                Action::Send {
                    peer,
                    token,
                    request,
                } => {
                    let id = self.inner.send_request(&peer, request);
                    self.requests.insert(id, token);
                }
                Action::Respond { channel, response } => {
                    if let Some(channel) = self.channels.remove(&channel) {
                        // An error means the requester went away (timeout, closed stream):
                        // nothing to do.
                        let _ = self.inner.send_response(channel, response);
                    }
                }
                Action::Forget { channel } => {
                    self.channels.remove(&channel);
                }
                Action::Event(ev) => self.events.push_back(ToSwarm::GenerateEvent(ev)),
                Action::Dial { peer } => {
                    // A new source port, as in `connect`.
                    let opts = DialOpts::peer_id(peer)
                        .condition(PeerCondition::DisconnectedAndNotDialing)
                        .allocate_new_port()
                        .build();
                    self.events.push_back(ToSwarm::Dial { opts });
                }
                Action::KeepAlive {
                    peer,
                    connections,
                    keep,
                } => {
                    for c in connections {
                        self.events.push_back(ToSwarm::NotifyHandler {
                            peer_id: peer,
                            handler: NotifyHandler::One(c),
                            event: HandlerIn::KeepAlive(keep),
                        });
                    }
                }
                Action::CloseConnections { peer } => {
                    self.events.push_back(ToSwarm::CloseConnection {
                        peer_id: peer,
                        connection: CloseConnection::All,
                    });
                }
                Action::WakeAt(at) => self.schedule(at),
                Action::PrivateOp(job) => {
                    match &self.private {
                        Some(pool) => {
                            if let Submit::Busy(tag) = pool.submit(job) {
                                self.private_done
                                    .push_back((tag, Err(offload::JobError::Busy)));
                            }
                        }
                        None => {
                            let result = offload::run(&job);
                            self.private_done.push_back((job.tag, result));
                        }
                    }
                    self.wake();
                }
            }
        }
    }

    fn on_inner_event(&mut self, ev: request_response::Event<Request, Response>) {
        use request_response::{Event as E, Message as M};
        let now = Instant::now();
        match ev {
            E::Message {
                peer,
                connection_id,
                message: M::Request {
                    request, channel, ..
                },
            } => {
                let token = ChannelToken(self.next_channel);
                self.next_channel += 1;
                self.channels.insert(token, channel);
                self.core
                    .on_request(peer, connection_id, request, token, now);
                self.carry_out();
                if !self.core.holds(&peer, token) {
                    // Answered, or dropped unanswered (the requester sees the stream end).
                    self.channels.remove(&token);
                }
            }
            E::Message {
                message:
                    M::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                if let Some(token) = self.requests.remove(&request_id) {
                    self.core.on_response(token, response, now);
                }
            }
            E::OutboundFailure {
                request_id, error, ..
            } => {
                if let Some(token) = self.requests.remove(&request_id) {
                    self.core.on_outbound_failure(token, failure(&error), now);
                }
            }
            E::InboundFailure { peer, error, .. } => {
                if matches!(error, request_response::InboundFailure::Timeout) {
                    let what = "left a request unfinished (timeout)";
                    self.core.note_misbehaviour(peer, what, now);
                }
                tracing::debug!(%peer, "inbound request failed: {error}");
            }
            E::ResponseSent { .. } => {}
        }
        self.carry_out();
    }

    fn on_key_event(&mut self, ev: KeyRingEvent) {
        match ev {
            KeyRingEvent::Ready(key) => {
                tracing::debug!(
                    bits = key.bits(),
                    generation = key.generation(),
                    "RSA key ready"
                );
                self.core.emit(Event::KeyReady {
                    bits: key.bits(),
                    generation: key.generation(),
                    fingerprint: key.fingerprint(),
                });
                let channels = &self.channels;
                let is_open = |t: ChannelToken| channels.get(&t).is_some_and(|c| c.is_open());
                self.core.on_key_ready(key, &is_open, Instant::now());
            }
            KeyRingEvent::Failed(e) => {
                tracing::warn!("RSA key generation failed: {e}");
                self.core.emit(Event::KeyGenerationFailed {
                    error: e.to_string(),
                });
            }
        }
        self.carry_out();
    }

    fn on_tick(&mut self, now: Instant) {
        let channels = &self.channels;
        let is_open = |t: ChannelToken| channels.get(&t).is_some_and(|c| c.is_open());
        let next = self.core.on_tick(now, &is_open);
        self.carry_out();
        self.timer_at = next;
        self.timer
            .reset(self.timer_at.saturating_duration_since(now));
    }

    fn on_connection_established(&mut self, ev: ConnectionEstablished<'_>) {
        let ip = ip_of(ev.endpoint.get_remote_address());
        let dialed = match ev.endpoint {
            ConnectedPoint::Dialer { address, .. } => Some(
                address
                    .iter()
                    .filter(|p| !matches!(p, Protocol::P2p(_)))
                    .collect(),
            ),
            ConnectedPoint::Listener { .. } => None,
        };
        self.connections
            .insert(ev.connection_id, (ev.peer_id, dialed));
        let dial = self.pending_dials.remove(&ev.connection_id);
        self.core
            .on_connection_established(ev.peer_id, ev.connection_id, ip, dial, Instant::now());
        self.carry_out();
    }

    fn on_connection_closed(&mut self, ev: ConnectionClosed<'_>) {
        self.connections.remove(&ev.connection_id);
        let remaining = u32::try_from(ev.remaining_established).unwrap_or(u32::MAX);
        self.core
            .on_connection_closed(ev.peer_id, ev.connection_id, remaining, Instant::now());
        self.carry_out();
    }

    fn on_dial_failure(&mut self, ev: DialFailure<'_>) {
        if let Some((open, _)) = self.pending_dials.remove(&ev.connection_id) {
            let error = match (ev.peer_id, ev.error) {
                (Some(expected), DialError::WrongPeerId { obtained, .. }) => OpenError::WrongPeer {
                    expected,
                    found: *obtained,
                },
                _ => OpenError::Dial(describe_dial_error(ev.error)),
            };
            self.events
                .push_back(ToSwarm::GenerateEvent(Event::OpenFailed {
                    open,
                    peer: ev.peer_id,
                    error,
                }));
            return;
        }
        let Some(peer) = ev.peer_id else {
            return;
        };
        if matches!(ev.error, DialError::DialPeerConditionFalse(_)) {
            return;
        }
        let why = describe_dial_error(ev.error);
        self.core.on_dial_failure(peer, why, Instant::now());
        self.carry_out();
    }

    fn new_handler(
        &self,
        inner: THandler<request_response::Behaviour<Codec>>,
        peer: &PeerId,
    ) -> Handler {
        Handler::new(inner, self.core.has_session(peer))
    }
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

impl NetworkBehaviour for Behaviour {
    type ConnectionHandler = Handler;
    type ToSwarm = Event;

    fn handle_pending_inbound_connection(
        &mut self,
        connection_id: ConnectionId,
        local_addr: &Multiaddr,
        remote_addr: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        // One address gets only its share of the connections that have not authenticated
        // (SPEC.md §8); a banned one keeps a little room, so that a newcomer from it is
        // told how long the ban lasts instead of seeing its connection reset.
        self.core
            .admit_inbound_pending(connection_id, ip_of(remote_addr), Instant::now())
            .map_err(ConnectionDenied::new)?;
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
        self.core
            .admit_inbound_established(connection_id, peer, ip_of(remote_addr), Instant::now())
            .map_err(ConnectionDenied::new)?;
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
            FromSwarm::ListenFailure(ev) => self.core.on_listen_failure(ev.connection_id),
            FromSwarm::NewListenAddr(ev) if !self.listen_addrs.contains(ev.addr) => {
                self.listen_addrs.push(ev.addr.clone());
            }
            FromSwarm::ExpiredListenAddr(ev) => self.listen_addrs.retain(|a| a != ev.addr),
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
            if let Some((tag, result)) = self.private_done.pop_front() {
                self.core.on_private_done(tag, result, Instant::now());
                self.carry_out();
                continue;
            }
            if let Some(pool) = self.private.as_mut()
                && let Poll::Ready((tag, result)) = pool.poll(cx)
            {
                self.core.on_private_done(tag, result, Instant::now());
                self.carry_out();
                continue;
            }
            if self.core.has_dirty() {
                self.core.flush_dirty(Instant::now());
                self.carry_out();
                continue;
            }
            match self.inner.poll(cx) {
                Poll::Ready(ToSwarm::GenerateEvent(ev)) => {
                    self.on_inner_event(ev);
                    continue;
                }
                Poll::Ready(ToSwarm::Dial { opts }) => {
                    // request-response dials a peer it holds a request for and has no
                    // connection to, from the listening port: the crossing `connect`
                    // avoids. The same dial from a new port.
                    let opts = match opts.get_peer_id() {
                        Some(peer) => DialOpts::peer_id(peer)
                            .condition(PeerCondition::DisconnectedAndNotDialing)
                            .allocate_new_port()
                            .build(),
                        None => opts,
                    };
                    return Poll::Ready(ToSwarm::Dial { opts });
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
            if self.events.is_empty() && !self.core.has_dirty() && self.private_done.is_empty() {
                self.waker = Some(cx.waker().clone());
                return Poll::Pending;
            }
        }
    }
}
