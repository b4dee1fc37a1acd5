//! The node's protocol core without I/O: one [`Peer`] machine per remote peer, the
//! [`Context`] they share (keys, limiters, requests in flight), and the routing of every
//! input to the right machine.
//!
//! The behaviour feeds it libp2p's events as inputs (with tokens standing for libp2p's
//! request ids and response channels) and carries out the [`Action`]s it returns; the
//! `session` fuzz target and the unit tests feed two of them to each other directly, on a
//! virtual clock. Cross-peer budgets (pending handshakes, sessions) are counted here, at the
//! moment an input may need them, and handed to the peer machine that decides.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use libp2p::PeerId;
use libp2p::swarm::ConnectionId;

use crate::config::Config;
use crate::crypto::{RsaKeyPair, Secret};
use crate::error::{CloseReason, OpenError, RefuseError, RejectCode, SendError, SessionError};
use crate::limits::{AddrKey, AddressCaps, ConnRefusal, LogThrottle};
use crate::offload::{JobResult, JobTag};
use crate::peer::{Action, Budget, ChannelToken, Context, Failure, Peer, ReqToken, secs};
use crate::session::SessionState;
use crate::types::{Event, MessageId, OpenId, SessionInfo, StateCounts};
use crate::wire::{self, Request, Response};

/// Housekeeping runs at least this often.
pub(crate) const MAX_TICK: Duration = Duration::from_secs(1);

/// Most inbound connections tracked by the connection gate, in the transport upgrade and
/// up (a bound on memory; libp2p's own limits are far lower).
const MAX_GATED: usize = 4096;

/// See the module documentation.
pub(crate) struct Peers {
    peers: HashMap<PeerId, Peer>,
    cx: Context,
    gate: Gate,
}

/// Inbound connections by address, for the per-address caps on connections that have not
/// authenticated (SPEC.md §8).
struct Gate {
    /// Accepted by the transport, upgrade (Noise, Yamux) not done.
    pending: HashMap<ConnectionId, AddrKey>,
    /// Up, inbound, with the peer.
    up: HashMap<ConnectionId, (AddrKey, PeerId)>,
    /// Connections refused at connection time so far.
    refused: u64,
    log: LogThrottle<AddrKey>,
}

impl Peers {
    pub(crate) fn new(
        local_peer: PeerId,
        config: Config,
        key: Option<Arc<RsaKeyPair>>,
        now: Instant,
    ) -> Self {
        Peers {
            peers: HashMap::new(),
            cx: Context::new(local_peer, config, key, now),
            gate: Gate {
                pending: HashMap::new(),
                up: HashMap::new(),
                refused: 0,
                log: LogThrottle::new(Duration::from_secs(60), 1024),
            },
        }
    }

    pub(crate) fn config(&self) -> &Config {
        &self.cx.config
    }

    pub(crate) fn local_peer(&self) -> PeerId {
        self.cx.local_peer
    }

    /// The actions produced so far, in order; the driver carries them out.
    pub(crate) fn take_actions(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.cx.actions)
    }

    /// Runs `f` on `peer`'s machine (a fresh one if the peer is unknown) at `now`, then
    /// forgets the machine if it is empty and either asked for it or was made for `f`.
    fn route<R>(
        &mut self,
        peer: PeerId,
        now: Instant,
        f: impl FnOnce(&mut Peer, &mut Context) -> R,
    ) -> R {
        self.cx.now = now;
        let mut created = false;
        let p = self.peers.entry(peer).or_insert_with(|| {
            created = true;
            Peer::new(peer)
        });
        let out = f(p, &mut self.cx);
        let asked = std::mem::take(&mut p.gc);
        let forget = (created || asked) && p.is_empty();
        if forget {
            self.peers.remove(&peer);
        }
        out
    }

    /// Every other peer's share of the node-wide budgets; `addr`, the address of the input
    /// (for the per-address share of peers' handshakes).
    fn budget_without(&self, peer: &PeerId, addr: Option<AddrKey>) -> Budget {
        let others = self.peers.iter().filter(|(id, _)| *id != peer);
        let mut b = Budget::default();
        for (_, p) in others {
            let inbound = usize::from(p.responder.is_some() || p.auth_pending.is_some());
            b.inbound += inbound;
            b.opens += usize::from(p.initiator.is_some()) + p.waiting.len();
            b.sessions += usize::from(p.session.is_some());
            if inbound > 0
                && let Some(k) = addr
                && p.connections.iter().any(|c| self.key_of(*c) == Some(k))
            {
                b.inbound_from_addr += 1;
            }
        }
        b
    }

    fn key_of(&self, connection: ConnectionId) -> Option<AddrKey> {
        self.cx.connection_ip(connection).map(AddrKey::from)
    }

    fn caps(&self) -> AddressCaps {
        let c = &self.cx.config;
        AddressCaps {
            pending: c.max_pending_connections_per_address,
            unauthenticated: c.max_unauthenticated_per_address,
            banned: c.banned_address_connections,
        }
    }

    /// What the address `key` holds: connections in the transport upgrade (but `except`),
    /// and inbound connections up whose peer has no session (but `except`).
    fn held_by(&self, key: AddrKey, except: ConnectionId) -> (usize, usize) {
        let pending = self
            .gate
            .pending
            .iter()
            .filter(|(c, k)| **k == key && **c != except)
            .count();
        let unauthenticated = self
            .gate
            .up
            .iter()
            .filter(|(c, (k, p))| *k == key && **c != except && !self.has_session(p))
            .count();
        (pending, unauthenticated)
    }

    fn refuse(&mut self, key: AddrKey, why: ConnRefusal, now: Instant) -> ConnRefusal {
        self.gate.refused += 1;
        if let Some(n) = self.gate.log.hit(key, now) {
            tracing::debug!(address = %key, count = n, "refusing a connection: {why}");
        }
        why
    }

    // ----- the connection gate -----

    /// An inbound connection from `ip` was accepted by the transport and is about to start
    /// its upgrade: refused if its address already holds its share of connections that
    /// have not authenticated (SPEC.md §8).
    pub(crate) fn admit_inbound_pending(
        &mut self,
        connection: ConnectionId,
        ip: Option<IpAddr>,
        now: Instant,
    ) -> Result<(), ConnRefusal> {
        let Some(key) = ip.map(AddrKey::from) else {
            return Ok(());
        };
        if self.gate.pending.len() >= MAX_GATED {
            return Err(self.refuse(key, ConnRefusal::Full, now));
        }
        let banned = self.cx.ip_failures.banned(&key, now).map(secs);
        let (pending, unauthenticated) = self.held_by(key, connection);
        if let Err(why) = self.caps().admit_pending(pending, unauthenticated, banned) {
            return Err(self.refuse(key, why, now));
        }
        self.gate.pending.insert(connection, key);
        Ok(())
    }

    /// An inbound connection from `ip` finished its upgrade: `peer` is who it is. Refused
    /// if its address holds its share of connections without a session, unless the peer
    /// has a session already.
    pub(crate) fn admit_inbound_established(
        &mut self,
        connection: ConnectionId,
        peer: PeerId,
        ip: Option<IpAddr>,
        now: Instant,
    ) -> Result<(), ConnRefusal> {
        self.gate.pending.remove(&connection);
        let Some(key) = ip.map(AddrKey::from) else {
            return Ok(());
        };
        if !self.has_session(&peer) {
            if self.gate.up.len() >= MAX_GATED {
                return Err(self.refuse(key, ConnRefusal::Full, now));
            }
            let banned = self.cx.ip_failures.banned(&key, now).map(secs);
            let (pending, unauthenticated) = self.held_by(key, connection);
            if let Err(why) = self
                .caps()
                .admit_established(pending, unauthenticated, banned)
            {
                return Err(self.refuse(key, why, now));
            }
        }
        // A peer with a session was let in above; it is tracked while there is room (its
        // session may end while the connection stays).
        if self.gate.up.len() < MAX_GATED {
            self.gate.up.insert(connection, (key, peer));
        }
        Ok(())
    }

    /// An inbound connection failed or was refused before it was up.
    pub(crate) fn on_listen_failure(&mut self, connection: ConnectionId) {
        self.gate.pending.remove(&connection);
        self.gate.up.remove(&connection);
    }

    /// Inbound connections in their transport upgrade or up without a session.
    pub(crate) fn unauthenticated_connections(&self) -> usize {
        let up = self
            .gate
            .up
            .values()
            .filter(|(_, p)| !self.has_session(p))
            .count();
        self.gate.pending.len() + up
    }

    /// Connections refused at connection time so far.
    pub(crate) fn refused_connections(&self) -> u64 {
        self.gate.refused
    }

    // ----- local commands -----

    /// Opens a session with `peer` using `secret`.
    pub(crate) fn open(&mut self, peer: PeerId, open: OpenId, secret: Secret, now: Instant) {
        let others = self.budget_without(&peer, None);
        self.route(peer, now, |p, cx| p.start_open(cx, open, secret, others));
    }

    /// Queues a chat message that is not private (tests and the fuzzing hooks).
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn send_message(
        &mut self,
        peer: PeerId,
        text: String,
        sent_at_ms: u64,
        now: Instant,
    ) -> Result<MessageId, SendError> {
        self.send_chat(peer, text, sent_at_ms, false, now)
    }

    /// Queues a chat message, `private` if it is for this peer alone (SPEC.md §3.5).
    pub(crate) fn send_chat(
        &mut self,
        peer: PeerId,
        text: String,
        sent_at_ms: u64,
        private: bool,
        now: Instant,
    ) -> Result<MessageId, SendError> {
        self.route(peer, now, |p, cx| {
            p.queue_message(cx, text, sent_at_ms, private)
        })
    }

    fn session_state(&self, peer: &PeerId) -> Result<SessionState, SessionError> {
        self.peers
            .get(peer)
            .and_then(|p| p.session.as_ref())
            .map(|s| s.state)
            .ok_or(SessionError::NoSession)
    }

    pub(crate) fn rotate(&mut self, peer: PeerId, now: Instant) -> Result<(), SessionError> {
        let state = self.session_state(&peer)?;
        if state != SessionState::Active {
            return Err(SessionError::NotActive(state));
        }
        self.route(peer, now, |p, cx| p.start_rotation(cx));
        Ok(())
    }

    pub(crate) fn close_session(&mut self, peer: PeerId, now: Instant) -> Result<(), SessionError> {
        let state = self.session_state(&peer)?;
        if state == SessionState::Closing {
            return Err(SessionError::NotActive(state));
        }
        self.route(peer, now, |p, cx| {
            p.close(cx, CloseReason::LocalClosed, Some(RejectCode::UserClosed))
        });
        Ok(())
    }

    /// The user refuses `peer` (SPEC.md §9): from now on its `HELLO`s and `AUTH`s are
    /// answered `REFUSED`, and what it has under way with us ends (see
    /// `Peer::on_refused`). An established session is not closed. Refusing a peer already
    /// refused changes nothing; one more than `max_refused_peers` fails.
    pub(crate) fn refuse_peer(&mut self, peer: PeerId, now: Instant) -> Result<(), RefuseError> {
        if !self.cx.refused.contains(&peer) {
            let max = self.cx.config.max_refused_peers;
            if self.cx.refused.len() >= max {
                return Err(RefuseError::Full { max });
            }
            self.cx.refused.insert(peer);
        }
        self.route(peer, now, |p, cx| p.on_refused(cx));
        Ok(())
    }

    /// Lets `peer` open sessions again; whether it was refused.
    pub(crate) fn allow_peer(&mut self, peer: &PeerId) -> bool {
        self.cx.refused.remove(peer)
    }

    pub(crate) fn is_refused(&self, peer: &PeerId) -> bool {
        self.cx.refused.contains(peer)
    }

    /// Replaces our secret (SPEC.md §4): handshakes answered from now on use it; the ones
    /// peers started under the old one and not yet authenticated are discarded; sessions
    /// are untouched.
    pub(crate) fn set_secret(&mut self, secret: Secret, now: Instant) {
        self.cx.local_auth = secret.auth_key();
        self.cx.config.secret = secret;
        let peers: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, p)| p.responder.is_some() || p.auth_pending.is_some())
            .map(|(id, _)| *id)
            .collect();
        for peer in peers {
            self.route(peer, now, |p, cx| p.on_secret_changed(cx));
        }
    }

    pub(crate) fn shutdown(&mut self, now: Instant) {
        self.cx.shutting_down = true;
        let peers: Vec<PeerId> = self.peers.keys().copied().collect();
        for peer in peers {
            self.route(peer, now, |p, cx| {
                p.initiator = None;
                p.responder = None;
                if let Some(pending) = p.auth_pending.take() {
                    cx.reject(pending.channel, RejectCode::Busy, 0);
                }
                let error = OpenError::LocalLimit("the node is shutting down");
                let waiting = std::mem::take(&mut p.waiting)
                    .into_iter()
                    .map(|(o, _, _)| o);
                cx.fail_open(Some(peer), waiting, error);
                p.close(cx, CloseReason::Shutdown, Some(RejectCode::Shutdown));
            });
        }
    }

    // ----- inputs from the peer -----

    /// A request from `peer` on `connection`, to be answered on `channel`.
    pub(crate) fn on_request(
        &mut self,
        peer: PeerId,
        connection: ConnectionId,
        request: Request,
        channel: ChannelToken,
        now: Instant,
    ) {
        match request {
            Request::Invalid(e) => {
                self.cx.now = now;
                self.cx.note_misbehaviour(peer, "sent an invalid frame");
                tracing::debug!(%peer, "invalid request: {e}");
                let detail = match e {
                    wire::WireError::TooLarge { max, .. } => u32::try_from(max).unwrap_or(u32::MAX),
                    _ => 0,
                };
                self.cx.reject(channel, e.reject_code(), detail);
            }
            Request::Hello(hello) => {
                let others = self.budget_without(&peer, self.key_of(connection));
                self.route(peer, now, |p, cx| {
                    p.on_hello(cx, connection, hello, channel, others)
                });
            }
            Request::Auth(auth) => {
                self.route(peer, now, |p, cx| p.on_auth(cx, connection, auth, channel))
            }
            Request::Record(rec) => self.route(peer, now, |p, cx| p.on_record(cx, rec, channel)),
            Request::Abort { hs_id, code } => {
                self.route(peer, now, |p, cx| {
                    p.on_abort(cx, hs_id, code);
                    cx.respond(channel, Response::Done);
                });
            }
        }
    }

    /// Whether the request of `peer` under `channel` is held for later (a `HELLO` waiting
    /// for our key, or a request waiting for a private-key result): the driver keeps its
    /// channel until an action answers or forgets it.
    pub(crate) fn holds(&self, peer: &PeerId, channel: ChannelToken) -> bool {
        self.cx.deferred_hellos.iter().any(|d| d.channel == channel)
            || self.peers.get(peer).is_some_and(|p| p.holds(channel))
    }

    /// The answer to our request `token`.
    pub(crate) fn on_response(&mut self, token: ReqToken, response: Response, now: Instant) {
        let Some(pending) = self.cx.outbound.remove(&token) else {
            return;
        };
        let peer = pending.peer();
        self.route(peer, now, |p, cx| p.on_response(cx, pending, response));
    }

    /// A private-key job finished (or was refused as `Busy`): the peer's machine decides
    /// whether it is still wanted.
    pub(crate) fn on_private_done(&mut self, tag: JobTag, result: JobResult, now: Instant) {
        if !self.peers.contains_key(&tag.peer) {
            return; // forgotten meanwhile: the result is stale, and zeroized on drop
        }
        self.route(tag.peer, now, |p, cx| p.on_private_done(cx, tag, result));
    }

    /// Our request `token` failed.
    pub(crate) fn on_outbound_failure(&mut self, token: ReqToken, error: Failure, now: Instant) {
        let Some(pending) = self.cx.outbound.remove(&token) else {
            return;
        };
        let peer = pending.peer();
        self.route(peer, now, |p, cx| p.on_outbound_failure(cx, pending, error));
    }

    /// A request from `peer` failed before we answered it.
    pub(crate) fn note_misbehaviour(&mut self, peer: PeerId, what: &'static str, now: Instant) {
        self.cx.now = now;
        self.cx.note_misbehaviour(peer, what);
    }

    // ----- connections -----

    /// A connection to `peer` is up; `dial` is the open that dialed it, if any.
    pub(crate) fn on_connection_established(
        &mut self,
        peer: PeerId,
        connection: ConnectionId,
        ip: Option<IpAddr>,
        dial: Option<(OpenId, Secret)>,
        now: Instant,
    ) {
        self.cx.connections.insert(connection, (peer, ip));
        self.route(peer, now, |p, cx| p.on_connected(cx, connection));
        if let Some((open, secret)) = dial {
            self.open(peer, open, secret, now);
        }
        self.route(peer, now, |p, cx| p.try_start_waiting(cx));
    }

    pub(crate) fn on_connection_closed(
        &mut self,
        peer: PeerId,
        connection: ConnectionId,
        remaining: u32,
        now: Instant,
    ) {
        self.cx.connections.remove(&connection);
        self.gate.up.remove(&connection);
        self.gate.pending.remove(&connection);
        if !self.peers.contains_key(&peer) {
            return;
        }
        self.route(peer, now, |p, cx| {
            p.on_disconnected(cx, connection, remaining)
        });
    }

    /// Dialing `peer` failed; `why` is one readable line.
    pub(crate) fn on_dial_failure(&mut self, peer: PeerId, why: String, now: Instant) {
        if !self.peers.contains_key(&peer) {
            return;
        }
        self.route(peer, now, |p, cx| p.on_dial_failure(cx, why));
    }

    // ----- our key and time -----

    /// A new RSA key is in use: held `HELLO`s are answered and waiting opens start.
    /// `is_open` tells whether a held request's channel can still be answered.
    pub(crate) fn on_key_ready(
        &mut self,
        key: Arc<RsaKeyPair>,
        is_open: &dyn Fn(ChannelToken) -> bool,
        now: Instant,
    ) {
        self.cx.now = now;
        self.cx.key = Some(key);
        for d in std::mem::take(&mut self.cx.deferred_hellos) {
            if is_open(d.channel) {
                let others = self.budget_without(&d.peer, self.key_of(d.connection));
                self.route(d.peer, now, |p, cx| {
                    p.on_hello(cx, d.connection, d.hello, d.channel, others)
                });
            } else {
                self.cx.push(Action::Forget { channel: d.channel });
            }
        }
        let waiting: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, p)| !p.waiting.is_empty())
            .map(|(id, _)| *id)
            .collect();
        for peer in waiting {
            self.route(peer, now, |p, cx| p.try_start_waiting(cx));
        }
    }

    /// Runs every timer due at `now`; returns when the next tick is due.
    pub(crate) fn on_tick(
        &mut self,
        now: Instant,
        is_open: &dyn Fn(ChannelToken) -> bool,
    ) -> Instant {
        let mut next = now + MAX_TICK;
        let peers: Vec<PeerId> = self.peers.keys().copied().collect();
        let mut close = Vec::new();
        for peer in peers {
            if self.route(peer, now, |p, cx| p.on_tick(cx, &mut next)) {
                close.push(peer);
            }
        }
        for peer in close {
            tracing::debug!(%peer, "closing a connection that did not authenticate in time");
            self.cx.push(Action::CloseConnections { peer });
        }
        // HELLOs waiting for our key beyond the request timeout have been dropped by
        // request-response already; forget them.
        let limit = self.cx.config.request_timeout;
        let (kept, gone) = std::mem::take(&mut self.cx.deferred_hellos)
            .into_iter()
            .partition(|d| is_open(d.channel) && now.saturating_duration_since(d.received) < limit);
        self.cx.deferred_hellos = kept;
        for d in gone {
            self.cx.push(Action::Forget { channel: d.channel });
        }
        self.cx.peer_failures.prune(now);
        self.cx.ip_failures.prune(now);
        self.cx.hello_by_peer.prune(now);
        self.cx.hello_by_addr.prune(now);
        next.max(now + Duration::from_millis(1))
    }

    /// Sends what the queues of peers with news hold.
    pub(crate) fn flush_dirty(&mut self, now: Instant) {
        for peer in std::mem::take(&mut self.cx.dirty) {
            if self.peers.contains_key(&peer) {
                self.route(peer, now, |p, cx| p.flush(cx));
            }
        }
    }

    pub(crate) fn has_dirty(&self) -> bool {
        !self.cx.dirty.is_empty()
    }

    // ----- queries -----

    pub(crate) fn sessions(&self, now: Instant) -> impl Iterator<Item = SessionInfo> + '_ {
        self.peers.values().filter_map(move |p| p.info(now))
    }

    pub(crate) fn session(&self, peer: &PeerId, now: Instant) -> Option<SessionInfo> {
        self.peers.get(peer)?.info(now)
    }

    pub(crate) fn has_session(&self, peer: &PeerId) -> bool {
        self.peers.get(peer).is_some_and(|p| p.session.is_some())
    }

    pub(crate) fn connected_peers(&self) -> impl Iterator<Item = &PeerId> + '_ {
        self.peers
            .iter()
            .filter(|(_, p)| !p.connections.is_empty())
            .map(|(id, _)| id)
    }

    pub(crate) fn closing_sessions(&self) -> usize {
        self.peers
            .values()
            .filter(|p| {
                p.session
                    .as_ref()
                    .is_some_and(|s| s.state == SessionState::Closing)
            })
            .count()
    }

    pub(crate) fn state_counts(&self) -> StateCounts {
        StateCounts {
            peers: self.peers.len(),
            connections: self.cx.connections.len(),
            sessions: self.peers.values().filter(|p| p.session.is_some()).count(),
            handshakes: self
                .peers
                .values()
                .map(|p| {
                    usize::from(p.initiator.is_some())
                        + usize::from(p.responder.is_some() || p.auth_pending.is_some())
                })
                .sum(),
            outbound_requests: self.cx.outbound.len(),
            queued_messages: self.peers.values().map(|p| p.queue.len()).sum(),
            deferred_hellos: self.cx.deferred_hellos.len(),
            waiting_opens: self.peers.values().map(|p| p.waiting.len()).sum(),
            private_pending: self.peers.values().map(|p| p.private_pending()).sum(),
            held_records: self
                .peers
                .values()
                .map(|p| p.rekey_pending.as_ref().map_or(0, |r| r.held.len()))
                .sum(),
        }
    }

    /// Installs an active session made without a handshake (fuzzing only).
    #[cfg(feature = "fuzzing")]
    pub(crate) fn install_synthetic(
        &mut self,
        peer: PeerId,
        est: crate::handshake::Established,
        now: Instant,
    ) {
        self.route(peer, now, |p, cx| {
            let session = crate::session::Session::new(peer, est, cx.params(), now);
            p.install_session(cx, session, None);
            p.activate(cx);
        });
    }

    /// Seals arbitrary plaintext on the session with `peer` (fuzzing only: a misbehaving
    /// but authenticated node).
    #[cfg(feature = "fuzzing")]
    pub(crate) fn seal_raw(
        &mut self,
        peer: PeerId,
        plaintext: Vec<u8>,
        now: Instant,
    ) -> Option<wire::Record> {
        self.cx.now = now;
        let session = self.peers.get_mut(&peer)?.session.as_mut()?;
        session.seal_bytes(plaintext, now)
    }

    /// Reports an event in order with the core's own (the key ring's events).
    pub(crate) fn emit(&mut self, event: Event) {
        self.cx.emit(event);
    }
}

#[cfg(test)]
mod tests {
    //! The lock-out rules of SPEC.md §8 at the router, where the cross-peer budgets are
    //! counted: one node fed connections, `HELLO`s and opens directly, on a virtual clock.

    use super::*;
    use crate::test_keys::test_key;
    use crate::wire::{Hello, VERSION};

    struct Node {
        core: Peers,
        now: Instant,
        next: usize,
    }

    impl Node {
        fn new(config: impl FnOnce(Config) -> Config) -> Node {
            let now = Instant::now();
            let config = config(Config::new(Secret::generate()).with_rsa_key(test_key(0)));
            let key = config.rsa_key.clone();
            Node {
                core: Peers::new(PeerId::random(), config, key, now),
                now,
                next: 1,
            }
        }

        /// A new peer connected from `ip`; its connection.
        fn connect(&mut self, ip: &str) -> (PeerId, ConnectionId) {
            let peer = PeerId::random();
            let c = ConnectionId::new_unchecked(self.next);
            self.next += 1;
            let ip: IpAddr = ip.parse().expect("ip");
            self.core
                .on_connection_established(peer, c, Some(ip), None, self.now);
            self.core.take_actions();
            (peer, c)
        }

        /// `peer` sends a `HELLO` on `c`: the answer's reject code and detail, or `None` for
        /// a `CHALLENGE`.
        fn hello(&mut self, peer: PeerId, c: ConnectionId) -> Option<(RejectCode, u32)> {
            let hello = Hello {
                version: VERSION,
                hs_id: rand::random(),
                nonce: rand::random(),
                public_key: test_key(1).public_der().to_vec(),
                share: crate::crypto::dh_share(&curve25519_dalek::Scalar::from(7u64)),
            };
            let channel = ChannelToken(self.next as u64);
            self.next += 1;
            self.core
                .on_request(peer, c, Request::Hello(hello), channel, self.now);
            self.core
                .take_actions()
                .into_iter()
                .find_map(|a| match a {
                    Action::Respond {
                        channel: ch,
                        response,
                    } if ch == channel => Some(response),
                    _ => None,
                })
                .map(|r| match r {
                    Response::Challenge(_) => None,
                    Response::Reject { code, detail } => Some((code, detail)),
                    other => panic!("unexpected answer {other:?}"),
                })
                .expect("the HELLO is answered")
        }
    }

    #[test]
    fn a_refused_peers_hellos_are_refused_first_and_cost_nothing() {
        let mut n = Node::new(|c| {
            c.with_hello_rate_per_peer(3, Duration::from_secs(60))
                .with_hello_rate_per_address(3, Duration::from_secs(60))
        });
        let (p, c) = n.connect("10.0.0.2");
        n.core.refuse_peer(p, n.now).expect("room");
        for _ in 0..100 {
            assert_eq!(n.hello(p, c), Some((RejectCode::Refused, 0)));
        }
        assert_eq!(n.core.state_counts().handshakes, 0);
        // REFUSED comes before the HELLO rates: none of them was used up, so once allowed
        // the peer (and its address) get their whole burst.
        assert!(n.core.allow_peer(&p));
        for _ in 0..3 {
            assert_eq!(n.hello(p, c), None);
        }
        assert_eq!(n.hello(p, c), Some((RejectCode::Busy, 60)));
    }

    #[test]
    fn a_hello_held_for_our_key_is_answered_refused_when_its_peer_is_refused() {
        let now = Instant::now();
        let config = Config::new(Secret::generate());
        let mut n = Node {
            core: Peers::new(PeerId::random(), config, None, now),
            now,
            next: 1,
        };
        let (p, c) = n.connect("10.0.0.2");
        let hello = Hello {
            version: VERSION,
            hs_id: rand::random(),
            nonce: rand::random(),
            public_key: test_key(1).public_der().to_vec(),
            share: crate::crypto::dh_share(&curve25519_dalek::Scalar::from(7u64)),
        };
        n.core
            .on_request(p, c, Request::Hello(hello), ChannelToken(42), now);
        assert!(
            n.core.take_actions().is_empty(),
            "held until our key exists"
        );
        assert!(n.core.holds(&p, ChannelToken(42)));
        n.core.refuse_peer(p, now).expect("room");
        let answers: Vec<_> = n
            .core
            .take_actions()
            .into_iter()
            .filter_map(|a| match a {
                Action::Respond { channel, response } => Some((channel, response)),
                _ => None,
            })
            .collect();
        assert!(
            matches!(
                answers.as_slice(),
                [(
                    ChannelToken(42),
                    Response::Reject {
                        code: RejectCode::Refused,
                        detail: 0
                    }
                )]
            ),
            "{answers:?}"
        );
        assert!(!n.core.holds(&p, ChannelToken(42)));
        assert_eq!(n.core.state_counts().deferred_hellos, 0);
    }

    fn no_rate_limits(c: Config) -> Config {
        c.with_hello_rate_per_peer(1000, Duration::ZERO)
            .with_hello_rate_per_address(1000, Duration::ZERO)
    }

    #[test]
    fn one_address_takes_at_most_its_share_of_peers_handshakes() {
        let mut n = Node::new(no_rate_limits);
        let busy = Some((RejectCode::Busy, 10));
        let mut attackers = Vec::new();
        for i in 0..20 {
            let (p, c) = n.connect("10.0.0.2");
            let answer = n.hello(p, c);
            assert_eq!(answer, if i < 8 { None } else { busy }, "HELLO {i}");
            attackers.push((p, c));
        }
        // A peer that already has a pending handshake replaces it: no new place taken.
        let (p, c) = attackers[0];
        assert_eq!(n.hello(p, c), None);
        // IPv6: one /64 is one address.
        for i in 0..9 {
            let (p, c) = n.connect(&format!("2001:db8:0:1::{}", i + 1));
            let answer = n.hello(p, c);
            assert_eq!(answer, if i < 8 { None } else { busy }, "IPv6 HELLO {i}");
        }
        // Another address is served.
        let (p, c) = n.connect("10.0.0.3");
        assert_eq!(n.hello(p, c), None);
        assert_eq!(n.core.state_counts().handshakes, 17);
    }

    #[test]
    fn our_own_opens_have_a_budget_of_their_own() {
        let mut n = Node::new(|c| {
            no_rate_limits(c)
                .with_max_pending_handshakes(4)
                .with_max_pending_opens(2)
        });
        for i in 0..5 {
            let (p, c) = n.connect(&format!("10.0.1.{}", i + 1));
            let answer = n.hello(p, c);
            let expected = if i < 4 {
                None
            } else {
                Some((RejectCode::Busy, 10))
            };
            assert_eq!(answer, expected, "HELLO {i}");
        }
        // The peers' budget is full; our opens still start (and have their own limit).
        let mut started = 0;
        let mut failed = Vec::new();
        for i in 0..3 {
            let (p, _) = n.connect(&format!("10.0.2.{}", i + 1));
            n.core.open(p, OpenId(i), Secret::generate(), n.now);
            for a in n.core.take_actions() {
                match a {
                    Action::Send {
                        request: Request::Hello(_),
                        ..
                    } => started += 1,
                    Action::Event(Event::OpenFailed { error, .. }) => failed.push(error),
                    _ => {}
                }
            }
        }
        assert_eq!(started, 2);
        assert_eq!(
            failed,
            vec![OpenError::LocalLimit("too many handshakes in progress")]
        );
    }

    #[test]
    fn hellos_are_rate_limited_per_peer_then_per_address() {
        let every = Duration::from_secs(1);
        let mut n = Node::new(|c| {
            c.with_hello_rate_per_peer(3, every)
                .with_hello_rate_per_address(5, every)
        });
        let (p, c) = n.connect("10.0.0.2");
        for _ in 0..3 {
            assert_eq!(n.hello(p, c), None);
        }
        assert_eq!(n.hello(p, c), Some((RejectCode::Busy, 1)));
        assert_eq!(n.hello(p, c), Some((RejectCode::Busy, 1)));
        // Over its own rate, the peer took nothing from its address's: two more peers
        // from the address get the two places left, the third is refused.
        let (q, d) = n.connect("10.0.0.2");
        assert_eq!(n.hello(q, d), None);
        let (r, e) = n.connect("10.0.0.2");
        assert_eq!(n.hello(r, e), None);
        let (s, f) = n.connect("10.0.0.2");
        assert_eq!(n.hello(s, f), Some((RejectCode::Busy, 1)));
        // Another address has its own rate.
        let (t, g) = n.connect("10.0.0.3");
        assert_eq!(n.hello(t, g), None);
        // A second later, one more each.
        n.now += every;
        assert_eq!(n.hello(p, c), None);
        assert_eq!(n.hello(p, c), Some((RejectCode::Busy, 1)));
    }

    #[test]
    fn connections_that_have_not_authenticated_are_capped_per_address() {
        let mut n = Node::new(|c| c.with_max_unauthenticated_per_address(8, 3));
        let now = n.now;
        let a: IpAddr = "10.0.0.2".parse().expect("ip");
        let b: IpAddr = "10.0.0.3".parse().expect("ip");
        let conns: Vec<ConnectionId> = (100..200).map(ConnectionId::new_unchecked).collect();
        // 100 sockets from one address: 8 get into the transport upgrade, the rest are
        // refused at once.
        let admitted = conns
            .iter()
            .filter(|c| n.core.admit_inbound_pending(**c, Some(a), now).is_ok())
            .count();
        assert_eq!(admitted, 8);
        assert_eq!(n.core.refused_connections(), 92);
        assert_eq!(
            n.core.admit_inbound_pending(conns[8], Some(a), now),
            Err(ConnRefusal::Pending)
        );
        // Another address is not affected.
        let other = ConnectionId::new_unchecked(300);
        assert_eq!(n.core.admit_inbound_pending(other, Some(b), now), Ok(()));
        // One upgrade times out: its place is free again.
        n.core.on_listen_failure(conns[0]);
        assert_eq!(n.core.admit_inbound_pending(conns[8], Some(a), now), Ok(()));
        // Up without a session: 3 from the address, then refused.
        for (i, c) in conns[1..5].iter().enumerate() {
            let r = n
                .core
                .admit_inbound_established(*c, PeerId::random(), Some(a), now);
            if i < 3 {
                assert_eq!(r, Ok(()));
            } else {
                assert_eq!(r, Err(ConnRefusal::Unauthenticated));
                n.core.on_listen_failure(*c);
            }
        }
        // A connection that closes frees its place.
        n.core
            .on_connection_closed(PeerId::random(), conns[1], 0, now);
        let r = n
            .core
            .admit_inbound_established(conns[5], PeerId::random(), Some(a), now);
        assert_eq!(r, Ok(()));
        assert!(n.core.gate.pending.len() <= 8 + 1);
    }

    #[test]
    fn a_banned_address_keeps_room_for_a_newcomer_to_be_told_the_time_left() {
        let mut n = Node::new(|c| {
            c.with_ip_auth_limit(3, Duration::from_secs(60), Duration::from_secs(60))
        });
        let ip: IpAddr = "10.0.0.2".parse().expect("ip");
        let mut started = false;
        for _ in 0..3 {
            n.core.cx.now = n.now;
            started = n.core.cx.record_auth_failure(PeerId::random(), Some(ip));
        }
        assert!(started, "the 3rd failure starts the ban (and says so)");
        let now = n.now;
        let c1 = ConnectionId::new_unchecked(100);
        let c2 = ConnectionId::new_unchecked(101);
        let c3 = ConnectionId::new_unchecked(102);
        assert_eq!(n.core.admit_inbound_pending(c1, Some(ip), now), Ok(()));
        assert_eq!(n.core.admit_inbound_pending(c2, Some(ip), now), Ok(()));
        assert_eq!(
            n.core.admit_inbound_pending(c3, Some(ip), now),
            Err(ConnRefusal::Banned(60))
        );
        // The newcomer's connection comes up and its HELLO is answered RATE_LIMITED with
        // the seconds left.
        let newcomer = PeerId::random();
        assert_eq!(
            n.core
                .admit_inbound_established(c1, newcomer, Some(ip), now),
            Ok(())
        );
        n.core
            .on_connection_established(newcomer, c1, Some(ip), None, now);
        n.core.take_actions();
        n.now += Duration::from_secs(18);
        assert_eq!(n.hello(newcomer, c1), Some((RejectCode::RateLimited, 42)));
        // Every address-keyed limit treats the /64 or the IPv4 address as one.
        let mapped: IpAddr = "::ffff:10.0.0.2".parse().expect("ip");
        assert!(
            n.core
                .cx
                .ban_remaining(&PeerId::random(), Some(mapped))
                .is_some()
        );
    }
}
