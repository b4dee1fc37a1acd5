//! Swarm assembly: TCP and QUIC with Noise and Yamux, DNS, connection limits, mDNS and the
//! chat behaviour.

use std::collections::HashSet;
use std::time::Duration;

use futures::StreamExt;
use libp2p::core::transport::ListenerId;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent, behaviour::toggle::Toggle};
use libp2p::{Multiaddr, Swarm, connection_limits, mdns};

use crate::node::error::StartError;

/// How long a dial (connection and transport handshake) may take.
pub const DIAL_TIMEOUT: Duration = Duration::from_secs(5);
/// Most connections we keep (in and out); the chat behaviour bounds sessions itself.
const MAX_CONNECTIONS: u32 = 512;
/// How long listeners may take to report their addresses.
const LISTEN_WAIT: Duration = Duration::from_secs(5);

#[derive(NetworkBehaviour)]
pub(crate) struct NodeBehaviour {
    limits: connection_limits::Behaviour,
    pub(crate) chat: noctua_chat::Behaviour,
    mdns: Toggle<mdns::tokio::Behaviour>,
}

/// Builds the swarm (not yet listening).
pub(crate) fn build(
    mdns_on: bool,
    chat: noctua_chat::Config,
    identity: Option<libp2p::identity::Keypair>,
) -> Result<Swarm<NodeBehaviour>, StartError> {
    // A profile's lasting key, or (ephemeral, the default) a fresh one.
    let identity = identity.unwrap_or_else(libp2p::identity::Keypair::generate_ed25519);
    let swarm = libp2p::SwarmBuilder::with_existing_identity(identity)
        .with_tokio()
        .with_tcp(
            libp2p::tcp::Config::default().nodelay(true),
            libp2p::noise::Config::new,
            libp2p::yamux::Config::default,
        )
        .map_err(|e| StartError::Tcp(Box::new(e)))?
        .with_quic()
        .with_dns()
        .map_err(StartError::Dns)?
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
                chat: noctua_chat::Behaviour::new(peer, chat),
                mdns: Toggle::from(mdns),
            }
        })
        .map_err(|e| StartError::Behaviour(Box::new(e)))?
        .with_swarm_config(|c| {
            c.with_idle_connection_timeout(Duration::from_secs(30))
                // Send each request with its protocol proposal instead of waiting for the
                // peer to accept it first: one round trip fewer per message (BENCHMARKS.md).
                // A peer that does not speak Noctua is still recognised (noctua-chat maps
                // the late refusal).
                .with_substream_upgrade_protocol_override(libp2p::core::upgrade::Version::V1Lazy)
        })
        .with_connection_timeout(DIAL_TIMEOUT)
        .build();
    Ok(swarm)
}

/// What listening produced: the listeners, those whose addresses the banner shows, their
/// addresses, and the events that arrived meanwhile (to be handled as usual afterwards).
pub(crate) struct Listening {
    pub(crate) listeners: HashSet<ListenerId>,
    pub(crate) reported: HashSet<ListenerId>,
    pub(crate) addrs: Vec<Multiaddr>,
    pub(crate) early: Vec<SwarmEvent<NodeBehaviourEvent>>,
}

/// Starts listening on `addrs` and polls the swarm until every listener reported an
/// address (or failed): a few milliseconds, so that the banner can be printed at once.
pub(crate) async fn listen(
    swarm: &mut Swarm<NodeBehaviour>,
    addrs: &[Multiaddr],
) -> Result<Listening, StartError> {
    let mut listeners = HashSet::new();
    for addr in addrs {
        let id = swarm
            .listen_on(addr.clone())
            .map_err(|source| StartError::ListenOn {
                address: addr.clone(),
                source,
            })?;
        listeners.insert(id);
    }
    let deadline = tokio::time::Instant::now() + LISTEN_WAIT;
    let mut out = Listening {
        listeners,
        reported: HashSet::new(),
        addrs: Vec::new(),
        early: Vec::new(),
    };
    while out.reported.len() < addrs.len() {
        let ev = tokio::time::timeout_at(deadline, swarm.select_next_some())
            .await
            .map_err(|_| StartError::ListenTimeout)?;
        match ev {
            SwarmEvent::NewListenAddr {
                listener_id,
                address,
            } => {
                out.reported.insert(listener_id);
                out.addrs.push(address);
            }
            SwarmEvent::ListenerClosed {
                listener_id,
                reason,
                ..
            } if out.listeners.contains(&listener_id) => {
                let why = match reason {
                    Err(e) => e.to_string(),
                    Ok(()) => "closed".into(),
                };
                return Err(StartError::Listen(why));
            }
            SwarmEvent::ListenerError { error, .. } => {
                return Err(StartError::Listen(error.to_string()));
            }
            other => out.early.push(other),
        }
    }
    Ok(out)
}

/// How often each node asks the LAN who is there, once its first query was answered.
///
/// libp2p's mDNS stops its quick start-up queries at the first answer, and a peer whose
/// answers were lost (a burst of answers overflowing a busy node's socket buffer, as when
/// 32 lab nodes start at once) is only found at the next query, by any node, since answers
/// are multicast. With 20 s, a lab of 32 nodes had some pairs meet 17-18 s after the rest
/// (issue 10). Every query costs one answer from each node, so the traffic is n²
/// small packets per interval: for 32 nodes, about 250 a second at 4 s; for a handful,
/// nothing to speak of.
const MDNS_QUERY_INTERVAL: Duration = Duration::from_secs(4);

/// mDNS with a one-minute TTL (peers that vanish leave the list within a minute) and a
/// query every [`MDNS_QUERY_INTERVAL`] (a lost announcement costs at most that).
fn mdns_config() -> mdns::Config {
    mdns::Config {
        ttl: Duration::from_secs(60),
        query_interval: MDNS_QUERY_INTERVAL,
        ..mdns::Config::default()
    }
}
