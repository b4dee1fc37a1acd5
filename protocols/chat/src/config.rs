//! Configuration of the chat behaviour. Every limit of SPEC.md §8 lives here with its
//! default; builder methods change one at a time.

use std::sync::Arc;
use std::time::Duration;

use crate::crypto::{RsaKeyPair, Secret};

/// Configuration for [`crate::Behaviour`].
#[derive(Clone)]
pub struct Config {
    pub(crate) secret: Secret,
    pub(crate) name: String,
    pub(crate) lasting_identity: bool,
    pub(crate) max_refused_peers: usize,
    pub(crate) rsa_bits: usize,
    pub(crate) rsa_key: Option<Arc<RsaKeyPair>>,
    pub(crate) rsa_regenerate_every: Option<Duration>,
    pub(crate) rotate_every: Duration,
    pub(crate) rotate_after_messages: u64,
    pub(crate) rotation_grace: Duration,
    pub(crate) handshake_timeout: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) keepalive_interval: Duration,
    pub(crate) unauthenticated_grace: Duration,
    pub(crate) max_frame_size: usize,
    pub(crate) max_message_size: usize,
    pub(crate) max_sessions: usize,
    pub(crate) max_pending_handshakes: usize,
    pub(crate) max_pending_opens: usize,
    pub(crate) max_handshakes_per_address: usize,
    pub(crate) max_pending_connections_per_address: usize,
    pub(crate) max_unauthenticated_per_address: usize,
    pub(crate) banned_address_connections: usize,
    pub(crate) hello_rate_per_peer: (u32, Duration),
    pub(crate) hello_rate_per_address: (u32, Duration),
    pub(crate) max_queued_messages: usize,
    pub(crate) max_in_flight: usize,
    pub(crate) max_concurrent_streams: usize,
    pub(crate) replay_window: usize,
    pub(crate) peer_failures: (usize, Duration, Duration),
    pub(crate) ip_failures: (usize, Duration, Duration),
    /// Whether the peer machines hand private-key work to the behaviour's pool instead of
    /// doing it inline (DESIGN-offload.md; on by default).
    pub(crate) offload_private: bool,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret is deliberately absent.
        f.debug_struct("Config")
            .field("name", &self.name)
            .field("lasting_identity", &self.lasting_identity)
            .field("rsa_bits", &self.rsa_bits)
            .field("rotate_every", &self.rotate_every)
            .field("rotate_after_messages", &self.rotate_after_messages)
            .finish_non_exhaustive()
    }
}

/// Hard ceiling on the frame size a configuration may allow.
pub const MAX_FRAME_CEILING: usize = 16 * 1024 * 1024;

impl Config {
    /// A configuration with the node's own connection secret (what dialers must know) and
    /// every other setting at its default.
    pub fn new(secret: Secret) -> Self {
        Config {
            secret,
            name: String::new(),
            lasting_identity: false,
            max_refused_peers: 4096,
            rsa_bits: 2048,
            rsa_key: None,
            rsa_regenerate_every: Some(Duration::from_secs(10 * 60)),
            rotate_every: Duration::from_secs(30 * 60),
            rotate_after_messages: 10_000,
            rotation_grace: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(10),
            keepalive_interval: Duration::from_secs(15),
            unauthenticated_grace: Duration::from_secs(10),
            max_frame_size: 256 * 1024,
            max_message_size: 64 * 1024,
            max_sessions: 256,
            max_pending_handshakes: 64,
            max_pending_opens: 64,
            max_handshakes_per_address: 8,
            max_pending_connections_per_address: 8,
            max_unauthenticated_per_address: 16,
            banned_address_connections: 2,
            hello_rate_per_peer: (32, Duration::from_millis(100)),
            hello_rate_per_address: (64, Duration::from_millis(50)),
            max_queued_messages: 1024,
            max_in_flight: 16,
            max_concurrent_streams: 64,
            replay_window: 256,
            peer_failures: (5, Duration::from_secs(60), Duration::from_secs(60)),
            ip_failures: (10, Duration::from_secs(60), Duration::from_secs(60)),
            offload_private: true,
        }
    }

    /// The node's connection secret.
    pub fn secret(&self) -> &Secret {
        &self.secret
    }

    /// Display name sent to peers in `PROFILE` (at most 64 bytes; longer names are cut at a
    /// character boundary).
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        let mut name: String = name.into();
        if name.len() > crate::wire::MAX_NAME_LEN {
            let mut cut = crate::wire::MAX_NAME_LEN;
            while !name.is_char_boundary(cut) {
                cut -= 1;
            }
            name.truncate(cut);
        }
        self.name = name;
        self
    }

    /// The display name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether this node keeps its libp2p identity across restarts (it runs with a stored
    /// profile): sent as the `PROFILE`'s lasting flag (SPEC.md §3.5). When both sides of a
    /// session last, its safety number is the identity safety number, the same in every
    /// session between the two identities (SPEC.md §5.6). Default: false (ephemeral).
    pub fn with_lasting_identity(mut self, lasting: bool) -> Self {
        self.lasting_identity = lasting;
        self
    }

    /// Whether this node says it keeps its identity (see
    /// [`Config::with_lasting_identity`]).
    pub fn lasting_identity(&self) -> bool {
        self.lasting_identity
    }

    /// Most peers [`crate::Behaviour::refuse_peer`] keeps refused (default 4096, SPEC.md §8);
    /// refusing one more fails.
    pub fn with_max_refused_peers(mut self, n: usize) -> Self {
        self.max_refused_peers = n;
        self
    }

    /// RSA modulus size for generated keys: 2048 (default), 3072 or 4096.
    pub fn with_rsa_bits(mut self, bits: usize) -> Self {
        self.rsa_bits = bits;
        self
    }

    /// Whether private-key work (the RSA-OAEP decryptions of `AUTH`, `AUTH_OK`,
    /// `REKEY_REPLY` and `REKEY_COMMIT`, ~2.5 ms each at 2048 bits) runs on a small pool of
    /// worker threads instead of the swarm's event loop, so that one peer's handshake or
    /// rotation does not stall every other peer's messages. On by default; `false` runs it
    /// inline, in the order the requests came (deterministic: useful for tests). The wire
    /// is the same either way (SPEC.md §8.1).
    pub fn with_private_offload(mut self, on: bool) -> Self {
        self.offload_private = on;
        self
    }

    /// Use this key pair instead of generating one at start (tests, or a key kept from a
    /// previous run). Regeneration still replaces it on schedule.
    pub fn with_rsa_key(mut self, key: Arc<RsaKeyPair>) -> Self {
        self.rsa_key = Some(key);
        self
    }

    /// How often the RSA key pair is regenerated (default 10 min; `None`: never, which gives
    /// up forward secrecy across epochs).
    pub fn with_rsa_regenerate_every(mut self, every: Option<Duration>) -> Self {
        self.rsa_regenerate_every = every;
        self
    }

    /// Rotate each session this often (default 30 min).
    pub fn with_rotate_every(mut self, every: Duration) -> Self {
        self.rotate_every = every.max(Duration::from_millis(10));
        self
    }

    /// Rotate after this many records sent and received in an epoch (default 10 000).
    pub fn with_rotate_after_messages(mut self, n: u64) -> Self {
        self.rotate_after_messages = n.max(1);
        self
    }

    /// Keep the previous epoch's receive keys this long after a rotation (default 30 s).
    pub fn with_rotation_grace(mut self, grace: Duration) -> Self {
        self.rotation_grace = grace;
        self
    }

    /// Give up a handshake or rotation after this long (default 10 s).
    pub fn with_handshake_timeout(mut self, t: Duration) -> Self {
        self.handshake_timeout = t;
        self
    }

    /// Time allowed for each request to be answered (default 10 s).
    pub fn with_request_timeout(mut self, t: Duration) -> Self {
        self.request_timeout = t;
        self
    }

    /// Send a `PING` after this long without sending anything (default 15 s).
    pub fn with_keepalive_interval(mut self, t: Duration) -> Self {
        self.keepalive_interval = t.max(Duration::from_millis(10));
        self
    }

    /// Close a connection that has no session and no handshake after this long (default
    /// 10 s).
    pub fn with_unauthenticated_grace(mut self, t: Duration) -> Self {
        self.unauthenticated_grace = t;
        self
    }

    /// Largest frame accepted or sent (default 256 KiB, at most 16 MiB).
    pub fn with_max_frame_size(mut self, n: usize) -> Self {
        self.max_frame_size = n.clamp(64 * 1024 + 1024, MAX_FRAME_CEILING);
        self
    }

    /// Largest chat text in bytes (default 64 KiB; at least 16 KiB).
    pub fn with_max_message_size(mut self, n: usize) -> Self {
        self.max_message_size = n.max(16 * 1024);
        self
    }

    /// Most sessions at once (default 256).
    pub fn with_max_sessions(mut self, n: usize) -> Self {
        self.max_sessions = n.max(1);
        self
    }

    /// Most handshakes peers have started with us that are in progress at once (default
    /// 64). Our own opens have a budget of their own ([`Config::with_max_pending_opens`]).
    pub fn with_max_pending_handshakes(mut self, n: usize) -> Self {
        self.max_pending_handshakes = n.max(1);
        self
    }

    /// Most of our own opens in progress at once, handshaking or waiting for a connection
    /// (default 64). Separate from the peers' handshakes, so that peers cannot use up our
    /// ability to connect.
    pub fn with_max_pending_opens(mut self, n: usize) -> Self {
        self.max_pending_opens = n.max(1);
        self
    }

    /// Most handshakes in progress at once started from one address (an IPv4 address or an
    /// IPv6 /64), whatever the number of peer identities behind it (default 8).
    pub fn with_max_handshakes_per_address(mut self, n: usize) -> Self {
        self.max_handshakes_per_address = n.max(1);
        self
    }

    /// Most inbound connections from one address that may be in their transport handshake
    /// (Noise, Yamux) at once, and most that may be up without a session (defaults 8 and
    /// 16). Further connections from that address are refused at once, so that idle
    /// sockets from one address cannot fill the node-wide pools.
    pub fn with_max_unauthenticated_per_address(mut self, pending: usize, up: usize) -> Self {
        self.max_pending_connections_per_address = pending.max(1);
        self.max_unauthenticated_per_address = up.max(1);
        self
    }

    /// Most connections without a session an address banned after failed authentications
    /// may hold (default 2): enough for a newcomer from it to be told how long the ban
    /// lasts (`RATE_LIMITED`), not enough to crowd anyone. 0 refuses them all.
    pub fn with_banned_address_connections(mut self, n: usize) -> Self {
        self.banned_address_connections = n;
        self
    }

    /// `HELLO` rate limit per peer: a burst of `burst`, then one every `every` (default 32,
    /// then one per 100 ms). The excess is answered `BUSY` with the seconds to wait.
    pub fn with_hello_rate_per_peer(mut self, burst: u32, every: Duration) -> Self {
        self.hello_rate_per_peer = (burst.max(1), every);
        self
    }

    /// `HELLO` rate limit per address (IPv4 address or IPv6 /64), over all its peers: a
    /// burst of `burst`, then one every `every` (default 64, then one per 50 ms).
    pub fn with_hello_rate_per_address(mut self, burst: u32, every: Duration) -> Self {
        self.hello_rate_per_address = (burst.max(1), every);
        self
    }

    /// Most messages waiting to be sent to one peer (default 1024).
    pub fn with_max_queued_messages(mut self, n: usize) -> Self {
        self.max_queued_messages = n.max(1);
        self
    }

    /// Most chat requests in flight to one peer; more messages wait and are coalesced into
    /// the next request (default 16).
    pub fn with_max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = n.max(1);
        self
    }

    /// Most concurrent streams per connection (default 64).
    pub fn with_max_concurrent_streams(mut self, n: usize) -> Self {
        self.max_concurrent_streams = n.max(4);
        self
    }

    /// Replay window in records (default 256).
    pub fn with_replay_window(mut self, n: usize) -> Self {
        self.replay_window = n.clamp(64, 1 << 16);
        self
    }

    /// Ban a peer for `ban` after `failures` failed authentications within `window`
    /// (default 5 in 60 s, banned 60 s).
    pub fn with_peer_auth_limit(
        mut self,
        failures: usize,
        window: Duration,
        ban: Duration,
    ) -> Self {
        self.peer_failures = (failures.max(1), window, ban);
        self
    }

    /// Ban an address (an IPv4 address or an IPv6 /64) likewise (default 10 in 60 s, banned
    /// 60 s).
    pub fn with_ip_auth_limit(mut self, failures: usize, window: Duration, ban: Duration) -> Self {
        self.ip_failures = (failures.max(1), window, ban);
        self
    }

    /// The rotation interval.
    pub fn rotate_every(&self) -> Duration {
        self.rotate_every
    }

    /// The largest chat text.
    pub fn max_message_size(&self) -> usize {
        self.max_message_size
    }

    /// The keep-alive interval.
    pub fn keepalive_interval(&self) -> Duration {
        self.keepalive_interval
    }
}
