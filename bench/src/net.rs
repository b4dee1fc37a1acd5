//! The libp2p swarm every in-process node uses, Noctua and stock alike: what a real
//! `noctua` node builds (TCP with nodelay + Noise + Yamux, and QUIC), with one shared
//! swarm configuration.

use std::time::Duration;

use futures::StreamExt;
use libp2p::core::upgrade::Version;
use libp2p::identity::Keypair;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, Swarm};

/// Idle-connection timeout: long enough that no connection closes during a run.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// Inbound streams being negotiated at once, per connection (libp2p's default is 128). Set
/// for both systems so that the stock baseline with 256 requests outstanding (one stream
/// each) does not drop streams; Noctua never has more than 16 requests in flight per peer.
pub const MAX_NEGOTIATING_INBOUND: usize = 1024;

/// Which transport a measurement runs over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// TCP (nodelay) + Noise + Yamux.
    Tcp,
    /// QUIC v1 (`libp2p::quic`).
    Quic,
}

impl Transport {
    /// A loopback listen address with a free port.
    pub fn listen_addr(self) -> Multiaddr {
        match self {
            Transport::Tcp => "/ip4/127.0.0.1/tcp/0".parse().expect("valid multiaddr"),
            Transport::Quic => "/ip4/127.0.0.1/udp/0/quic-v1"
                .parse()
                .expect("valid multiaddr"),
        }
    }

    /// Short name for figure ids.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Quic => "quic",
        }
    }
}

/// Builds a swarm with a new identity, both transports and the shared configuration.
/// `lazy` selects multistream-select `V1Lazy` for outbound substreams.
pub fn build_swarm<B: NetworkBehaviour>(lazy: bool, make: impl FnOnce(&Keypair) -> B) -> Swarm<B> {
    libp2p::SwarmBuilder::with_new_identity()
        .with_tokio()
        .with_tcp(
            libp2p::tcp::Config::default().nodelay(true),
            libp2p::noise::Config::new,
            libp2p::yamux::Config::default,
        )
        .expect("TCP transport")
        .with_quic()
        .with_behaviour(make)
        .expect("behaviour")
        .with_swarm_config(|c| {
            let c = c
                .with_idle_connection_timeout(IDLE_TIMEOUT)
                .with_max_negotiating_inbound_streams(MAX_NEGOTIATING_INBOUND);
            if lazy {
                c.with_substream_upgrade_protocol_override(Version::V1Lazy)
            } else {
                c
            }
        })
        .build()
}

/// Starts listening on `transport` and returns the address (with `/p2p/<id>`) once known.
pub async fn listen<B: NetworkBehaviour>(swarm: &mut Swarm<B>, transport: Transport) -> Multiaddr {
    swarm
        .listen_on(transport.listen_addr())
        .expect("listen on loopback");
    let peer = *swarm.local_peer_id();
    let address = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
                return address;
            }
        }
    })
    .await
    .expect("a listen address within 10 s");
    address.with(Protocol::P2p(peer))
}
