//! What a peer machine may read or change beyond its own peer: the node's configuration and
//! keys, the cross-peer limiters and lists, the requests in flight, and where its actions go.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use libp2p::PeerId;
use libp2p::swarm::ConnectionId;

use super::{Action, ChannelToken, Pending, ReqToken};
use crate::config::Config;
use crate::crypto::{AuthKey, RsaKeyPair};
use crate::error::{OpenError, RejectCode};
use crate::limits::{AddrKey, FailureLimiter, LogThrottle, RateLimiter};
use crate::offload::{JobTag, PrivateJob, Purpose};
use crate::session::SessionParams;
use crate::types::{Event, OpenId};
use crate::wire::{Hello, Request, Response, SESSION_ID_LEN};

/// How many recently closed sessions are remembered (see `Context::recently_closed`).
const RECENTLY_CLOSED: usize = 1024;

/// How many peers or addresses the rate limiters and ban lists track at most.
const MAX_TRACKED: usize = 4096;

/// Every *other* peer's share of the node-wide budgets, counted by the router when an input
/// may need it (a `HELLO`, an open). The peer adds its own share at the moment it decides.
///
/// Peers' handshakes and our own opens draw on separate budgets (SPEC.md §8), so that
/// peers sending `HELLO`s cannot use up our ability to connect, nor our opens theirs.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Budget {
    /// Handshakes other peers started with us, in progress (a held `HELLO` is counted by
    /// the context).
    pub(crate) inbound: usize,
    /// Of those, the ones whose peer is connected from the address of the input.
    pub(crate) inbound_from_addr: usize,
    /// Our opens towards other peers: handshakes in progress and opens waiting.
    pub(crate) opens: usize,
    /// Sessions (any state), other peers.
    pub(crate) sessions: usize,
}

/// A `HELLO` that arrived before our RSA key existed: answered as soon as it does.
pub(crate) struct DeferredHello {
    pub(crate) peer: PeerId,
    pub(crate) connection: ConnectionId,
    pub(crate) hello: Hello,
    pub(crate) channel: ChannelToken,
    pub(crate) received: Instant,
}

/// Why an outbound request failed (libp2p's `OutboundFailure`, which is neither `Clone` nor
/// constructible outside libp2p, reduced to what the machine decides on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FailureKind {
    DialFailure,
    Timeout,
    ConnectionClosed,
    UnsupportedProtocols,
    /// The peer refused our protocol, seen as an I/O error (multistream-select `V1Lazy`).
    RefusedProtocol,
    /// Another I/O error, with its text.
    Io(String),
}

/// An outbound failure: its kind and the text libp2p gives it (kept for logs and reasons).
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    pub(crate) kind: FailureKind,
    pub(crate) text: String,
}

/// See the module documentation.
pub(crate) struct Context {
    pub(crate) config: Config,
    pub(crate) local_peer: PeerId,
    pub(crate) local_auth: AuthKey,
    /// Our current RSA key, once generated.
    pub(crate) key: Option<Arc<RsaKeyPair>>,
    /// The time of the input being handled.
    pub(crate) now: Instant,
    pub(crate) connections: HashMap<ConnectionId, (PeerId, Option<IpAddr>)>,
    pub(crate) outbound: HashMap<ReqToken, Pending>,
    pub(crate) deferred_hellos: VecDeque<DeferredHello>,
    pub(crate) peer_failures: FailureLimiter<PeerId>,
    pub(crate) ip_failures: FailureLimiter<AddrKey>,
    /// `HELLO`s per peer and per address (SPEC.md §8).
    pub(crate) hello_by_peer: RateLimiter<PeerId>,
    pub(crate) hello_by_addr: RateLimiter<AddrKey>,
    pub(crate) log_throttle: LogThrottle<(PeerId, &'static str)>,
    /// Sessions closed in the last `rotation_grace` (at most [`RECENTLY_CLOSED`]): records
    /// the peer sent before it learnt of the close (its own goodbye, in-flight chat) are
    /// refused as `UNKNOWN_SESSION` without being taken for misbehaviour.
    pub(crate) recently_closed: VecDeque<(PeerId, [u8; SESSION_ID_LEN], Instant)>,
    /// Peers whose queue should be flushed.
    pub(crate) dirty: HashSet<PeerId>,
    /// Peers the user refuses sessions with (SPEC.md §9 `REFUSED`); at most
    /// `config.max_refused_peers`.
    pub(crate) refused: HashSet<PeerId>,
    pub(crate) shutting_down: bool,
    pub(crate) next_message_id: u64,
    next_request: u64,
    next_job: u64,
    pub(crate) actions: Vec<Action>,
}

impl Context {
    pub(crate) fn new(
        local_peer: PeerId,
        config: Config,
        key: Option<Arc<RsaKeyPair>>,
        now: Instant,
    ) -> Self {
        let (pf, pw, pb) = config.peer_failures;
        let (ipf, ipw, ipb) = config.ip_failures;
        let (peer_burst, peer_every) = config.hello_rate_per_peer;
        let (addr_burst, addr_every) = config.hello_rate_per_address;
        Context {
            local_auth: config.secret.auth_key(),
            config,
            local_peer,
            key,
            now,
            connections: HashMap::new(),
            outbound: HashMap::new(),
            deferred_hellos: VecDeque::new(),
            peer_failures: FailureLimiter::new(pf, pw, pb, MAX_TRACKED),
            ip_failures: FailureLimiter::new(ipf, ipw, ipb, MAX_TRACKED),
            hello_by_peer: RateLimiter::new(peer_burst, peer_every, MAX_TRACKED),
            hello_by_addr: RateLimiter::new(addr_burst, addr_every, MAX_TRACKED),
            log_throttle: LogThrottle::new(Duration::from_secs(60), 4096),
            recently_closed: VecDeque::new(),
            dirty: HashSet::new(),
            refused: HashSet::new(),
            shutting_down: false,
            next_message_id: 1,
            next_request: 1,
            next_job: 1,
            actions: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, action: Action) {
        self.actions.push(action);
    }

    pub(crate) fn emit(&mut self, event: Event) {
        self.actions.push(Action::Event(event));
    }

    pub(crate) fn schedule(&mut self, at: Instant) {
        self.actions.push(Action::WakeAt(at));
    }

    /// Sends `request`, remembering what it was for.
    pub(crate) fn send(&mut self, peer: PeerId, request: Request, pending: Pending) {
        let token = ReqToken(self.next_request);
        self.next_request += 1;
        self.outbound.insert(token, pending);
        self.actions.push(Action::Send {
            peer,
            token,
            request,
        });
    }

    /// Asks the driver to run a private-key decryption; returns the job's number, which the
    /// waiting state keeps to recognise its result (never reused in a process).
    pub(crate) fn private_job(
        &mut self,
        peer: PeerId,
        purpose: Purpose,
        key: Arc<RsaKeyPair>,
        wrapped: Vec<u8>,
    ) -> u64 {
        let seq = self.next_job;
        self.next_job += 1;
        self.actions.push(Action::PrivateOp(PrivateJob {
            tag: JobTag { peer, seq, purpose },
            key,
            wrapped,
        }));
        seq
    }

    pub(crate) fn respond(&mut self, channel: ChannelToken, response: Response) {
        self.actions.push(Action::Respond { channel, response });
    }

    pub(crate) fn reject(&mut self, channel: ChannelToken, code: RejectCode, detail: u32) {
        self.respond(channel, Response::Reject { code, detail });
    }

    pub(crate) fn fail_open(
        &mut self,
        peer: Option<PeerId>,
        opens: impl IntoIterator<Item = OpenId>,
        error: OpenError,
    ) {
        for open in opens {
            self.emit(Event::OpenFailed {
                open,
                peer,
                error: error.clone(),
            });
        }
    }

    /// Logs a peer's misbehaviour, throttled per peer and kind.
    pub(crate) fn note_misbehaviour(&mut self, peer: PeerId, what: &'static str) {
        if let Some(n) = self.log_throttle.hit((peer, what), self.now) {
            if n == 1 {
                tracing::warn!(%peer, "peer misbehaved: {what}");
            } else {
                tracing::warn!(%peer, count = n, "peer misbehaved: {what} ({n} times since last report)");
            }
        }
    }

    pub(crate) fn params(&self) -> SessionParams {
        SessionParams {
            window: self.config.replay_window,
            grace: self.config.rotation_grace,
            max_message: self.config.max_message_size,
            rotate_every: self.config.rotate_every,
            rotate_after_messages: self.config.rotate_after_messages,
        }
    }

    pub(crate) fn ban_remaining(&self, peer: &PeerId, ip: Option<IpAddr>) -> Option<Duration> {
        let by_peer = self.peer_failures.banned(peer, self.now);
        let by_ip = ip.and_then(|ip| self.ip_failures.banned(&AddrKey::from(ip), self.now));
        by_peer.max(by_ip)
    }

    pub(crate) fn connection_ip(&self, connection: ConnectionId) -> Option<IpAddr> {
        self.connections.get(&connection).and_then(|(_, ip)| *ip)
    }

    /// Counts a failed authentication of `peer` from `ip`; returns whether it started a
    /// ban of the peer or of its address.
    pub(crate) fn record_auth_failure(&mut self, peer: PeerId, ip: Option<IpAddr>) -> bool {
        let now = self.now;
        let banned_peer = self.peer_failures.record_failure(&peer, now);
        let banned_ip =
            ip.is_some_and(|ip| self.ip_failures.record_failure(&AddrKey::from(ip), now));
        banned_peer || banned_ip
    }

    /// Whether a `HELLO` from `peer` on `connection` may start (or replace) a handshake
    /// (SPEC.md §8): the peer's and the address's `HELLO` rate, then, unless it replaces
    /// the peer's own pending handshake (`has_responder`, or a held `HELLO`), the
    /// per-address and node-wide caps on peers' handshakes. `Err` carries the answer:
    /// `BUSY` with the seconds to wait.
    pub(crate) fn admit_hello(
        &mut self,
        peer: PeerId,
        connection: ConnectionId,
        others: &Budget,
        has_responder: bool,
    ) -> Result<(), (RejectCode, u32)> {
        let now = self.now;
        let key = self.connection_ip(connection).map(AddrKey::from);
        // The peer first: a HELLO over the peer's own rate takes nothing from its
        // address's, so one flooding peer cannot use up the rate of honest peers behind
        // the same address (many identities from one address still can: that is what the
        // per-address rate is for).
        if let Err(wait) = self.hello_by_peer.try_take(&peer, now) {
            self.note_misbehaviour(peer, "sent HELLOs too fast");
            return Err((RejectCode::Busy, secs(wait)));
        }
        if let Some(k) = key
            && let Err(wait) = self.hello_by_addr.try_take(&k, now)
        {
            self.note_misbehaviour(peer, "sent HELLOs too fast (its address did)");
            return Err((RejectCode::Busy, secs(wait)));
        }
        let held = self.deferred_hellos.iter().any(|d| d.peer == peer);
        if has_responder || held {
            // One pending handshake per peer: this one takes the place of the last.
            return Ok(());
        }
        let retry = secs(self.config.handshake_timeout);
        if let Some(k) = key {
            let held_from_addr = self
                .deferred_hellos
                .iter()
                .filter(|d| self.connection_ip(d.connection).map(AddrKey::from) == Some(k))
                .count();
            if others.inbound_from_addr + held_from_addr >= self.config.max_handshakes_per_address {
                self.note_misbehaviour(peer, "hit the handshake limit of its address");
                return Err((RejectCode::Busy, retry));
            }
        }
        if others.inbound + self.deferred_hellos.len() >= self.config.max_pending_handshakes {
            self.note_misbehaviour(peer, "hit the handshake limit");
            return Err((RejectCode::Busy, retry));
        }
        Ok(())
    }

    pub(crate) fn remember_closed(&mut self, peer: PeerId, session_id: [u8; SESSION_ID_LEN]) {
        let now = self.now;
        let grace = self.config.rotation_grace;
        while self.recently_closed.len() >= RECENTLY_CLOSED
            || self
                .recently_closed
                .front()
                .is_some_and(|(_, _, at)| now.saturating_duration_since(*at) >= grace)
        {
            self.recently_closed.pop_front();
        }
        self.recently_closed.push_back((peer, session_id, now));
    }

    pub(crate) fn was_recently_closed(
        &self,
        peer: &PeerId,
        session_id: &[u8; SESSION_ID_LEN],
    ) -> bool {
        let grace = self.config.rotation_grace;
        self.recently_closed.iter().any(|(p, id, at)| {
            p == peer && id == session_id && self.now.saturating_duration_since(*at) < grace
        })
    }
}

/// Whole seconds for a `RATE_LIMITED` or `BUSY` answer, rounded up (so that a peer that
/// waits that long finds the limit over: 60 s is 60, 59.2 s is 60, 0.3 s is 1).
pub(crate) fn secs(d: Duration) -> u32 {
    let whole = d.as_secs().saturating_add(u64::from(d.subsec_nanos() > 0));
    u32::try_from(whole).unwrap_or(u32::MAX)
}
