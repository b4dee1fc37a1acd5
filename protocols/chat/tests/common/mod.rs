//! Test harness: swarms running `noctua_chat::Behaviour`, driven together, with every wait
//! bounded and tied to an observable event or state, never to a sleep.

#![allow(dead_code)]

use std::future::Future;
use std::task::Poll;
use std::time::Duration;

use futures::StreamExt;
use libp2p::swarm::{Swarm, SwarmEvent};
use libp2p::{Multiaddr, PeerId};
use libp2p_swarm_test::SwarmExt;
use noctua_chat::{Behaviour, Config, Event, Secret};
use noctua_spec_peer::node_key;

/// A configuration for test node `i` with secret `secret`, the shared test key `i` and no
/// scheduled key regeneration.
pub fn config(i: usize, secret: &str) -> Config {
    Config::new(Secret::new(secret).unwrap())
        .with_name(format!("node{i}"))
        .with_rsa_key(node_key(i))
        .with_rsa_regenerate_every(None)
}

/// A swarm on the memory transport (plaintext; see the TCP+Noise test for real security),
/// listening, with its listen address.
pub async fn node(config: Config) -> (Swarm<Behaviour>, Multiaddr) {
    let mut swarm =
        Swarm::new_ephemeral_tokio(|kp| Behaviour::new(kp.public().to_peer_id(), config));
    let (addr, _) = swarm.listen().await;
    (swarm, addr)
}

/// A swarm over TCP + Noise + Yamux on 127.0.0.1, with the given idle-connection timeout.
pub async fn tcp_noise_node(config: Config, idle: Duration) -> (Swarm<Behaviour>, Multiaddr) {
    tcp_noise_swarm(idle, false, |kp| {
        Behaviour::new(kp.public().to_peer_id(), config)
    })
    .await
}

/// A chat node over TCP + Noise + Yamux on 127.0.0.1 with the libp2p identity `keypair`
/// (a node restarted with its profile: the same `PeerId` on a new port).
pub async fn tcp_noise_node_with_identity(
    keypair: libp2p::identity::Keypair,
    config: Config,
) -> (Swarm<Behaviour>, Multiaddr) {
    tcp_noise_swarm_with(keypair, Duration::from_secs(10), false, |kp| {
        Behaviour::new(kp.public().to_peer_id(), config)
    })
    .await
}

/// A swarm of any behaviour over TCP + Noise + Yamux on 127.0.0.1; `lazy` negotiates
/// outbound streams with multistream-select `V1Lazy`, as the node does.
pub async fn tcp_noise_swarm<B: libp2p::swarm::NetworkBehaviour>(
    idle: Duration,
    lazy: bool,
    make: impl FnOnce(&libp2p::identity::Keypair) -> B,
) -> (Swarm<B>, Multiaddr) {
    tcp_noise_swarm_with(
        libp2p::identity::Keypair::generate_ed25519(),
        idle,
        lazy,
        make,
    )
    .await
}

/// [`tcp_noise_swarm`] with a given identity.
pub async fn tcp_noise_swarm_with<B: libp2p::swarm::NetworkBehaviour>(
    keypair: libp2p::identity::Keypair,
    idle: Duration,
    lazy: bool,
    make: impl FnOnce(&libp2p::identity::Keypair) -> B,
) -> (Swarm<B>, Multiaddr) {
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(keypair)
        .with_tokio()
        .with_tcp(
            libp2p::tcp::Config::default(),
            libp2p::noise::Config::new,
            libp2p::yamux::Config::default,
        )
        .unwrap()
        .with_behaviour(make)
        .unwrap()
        .with_swarm_config(|c| {
            let c = c.with_idle_connection_timeout(idle);
            if lazy {
                c.with_substream_upgrade_protocol_override(libp2p::core::upgrade::Version::V1Lazy)
            } else {
                c
            }
        })
        .build();
    swarm
        .listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap())
        .unwrap();
    let addr = within(Duration::from_secs(5), async {
        loop {
            if let SwarmEvent::NewListenAddr { address, .. } = swarm.select_next_some().await {
                return address;
            }
        }
    })
    .await;
    (swarm, addr)
}

/// Several swarms driven together.
pub struct Net {
    pub swarms: Vec<Swarm<Behaviour>>,
    pub addrs: Vec<Multiaddr>,
    next_start: usize,
}

impl Net {
    pub async fn new(configs: Vec<Config>) -> Self {
        let mut swarms = Vec::new();
        let mut addrs = Vec::new();
        for c in configs {
            let (s, a) = node(c).await;
            swarms.push(s);
            addrs.push(a);
        }
        Net {
            swarms,
            addrs,
            next_start: 0,
        }
    }

    pub fn from_swarms(swarms: Vec<Swarm<Behaviour>>, addrs: Vec<Multiaddr>) -> Self {
        Net {
            swarms,
            addrs,
            next_start: 0,
        }
    }

    /// Polls every swarm for `d` of wall time (for tests about time passing, e.g. idle
    /// timeouts), returning the behaviour events seen.
    pub async fn drive_for(&mut self, d: Duration) -> Vec<(usize, Event)> {
        let mut out = Vec::new();
        let deadline = tokio::time::Instant::now() + d;
        while let Ok((i, ev)) = tokio::time::timeout_at(deadline, self.next()).await {
            out.push((i, ev));
        }
        out
    }

    pub fn peer(&self, i: usize) -> PeerId {
        *self.swarms[i].local_peer_id()
    }

    pub fn b(&mut self, i: usize) -> &mut Behaviour {
        self.swarms[i].behaviour_mut()
    }

    /// The next event of any swarm (swarm-level events included).
    pub async fn next_any(&mut self) -> (usize, SwarmEvent<Event>) {
        let n = self.swarms.len();
        let start = self.next_start;
        self.next_start = (start + 1) % n.max(1);
        let swarms = &mut self.swarms;
        futures::future::poll_fn(|cx| {
            for k in 0..n {
                let i = (start + k) % n;
                if let Poll::Ready(Some(ev)) = swarms[i].poll_next_unpin(cx) {
                    return Poll::Ready((i, ev));
                }
            }
            Poll::Pending
        })
        .await
    }

    /// Waits for the `OpenFailed` event of `open` and returns its error.
    pub async fn open_failure(&mut self, open: noctua_chat::OpenId) -> noctua_chat::OpenError {
        self.until(|_, ev| match ev {
            Event::OpenFailed { open: o, error, .. } if *o == open => Some(error.clone()),
            _ => None,
        })
        .await
    }

    /// The next behaviour event of any swarm.
    pub async fn next(&mut self) -> (usize, Event) {
        loop {
            match self.next_any().await {
                (i, SwarmEvent::Behaviour(ev)) => return (i, ev),
                (i, other) => tracing::debug!(node = i, "swarm event: {other:?}"),
            }
        }
    }

    /// Drives all swarms until `f` returns `Some` for a behaviour event, with a timeout.
    /// Events `f` declines are passed to `seen` for bookkeeping.
    pub async fn until<T>(&mut self, mut f: impl FnMut(usize, &Event) -> Option<T>) -> T {
        within(Duration::from_secs(20), async {
            loop {
                let (i, ev) = self.next().await;
                if let Some(t) = f(i, &ev) {
                    return t;
                }
            }
        })
        .await
    }

    /// Collects behaviour events until `done` says the collection is complete.
    pub async fn collect(
        &mut self,
        mut done: impl FnMut(&[(usize, Event)]) -> bool,
    ) -> Vec<(usize, Event)> {
        let mut out = Vec::new();
        within(Duration::from_secs(20), async {
            while !done(&out) {
                out.push(self.next().await);
            }
        })
        .await;
        out
    }

    /// Drives all swarms until a condition on their state holds. The condition is checked
    /// after every round of polls, so internal progress that emits no event is seen too.
    pub async fn until_state(&mut self, mut cond: impl FnMut(&[Swarm<Behaviour>]) -> bool) {
        let swarms = &mut self.swarms;
        within(
            Duration::from_secs(20),
            futures::future::poll_fn(|cx| {
                loop {
                    if cond(swarms) {
                        return Poll::Ready(());
                    }
                    let mut progressed = false;
                    for (i, s) in swarms.iter_mut().enumerate() {
                        if let Poll::Ready(Some(ev)) = s.poll_next_unpin(cx) {
                            tracing::debug!(node = i, "event: {ev:?}");
                            progressed = true;
                        }
                    }
                    if !progressed {
                        return if cond(swarms) {
                            Poll::Ready(())
                        } else {
                            Poll::Pending
                        };
                    }
                }
            }),
        )
        .await
    }

    /// `a` opens a session to `b` by dialing `b`'s address with `secret`; waits for both
    /// sides to report it. Returns (session id, safety numbers equal).
    pub async fn open(&mut self, a: usize, b: usize, secret: &str) -> noctua_chat::SessionId {
        let addr = self.addrs[b].clone();
        let open = self.b(a).connect(addr, Secret::new(secret).unwrap());
        let (pa, pb) = (self.peer(a), self.peer(b));
        let mut ids = (None, None);
        self.until(|i, ev| {
            match ev {
                Event::SessionEstablished {
                    peer,
                    session_id,
                    opens,
                    ..
                } if i == a && *peer == pb => {
                    assert!(opens.contains(&open), "the dialer's open is answered");
                    ids.0 = Some(*session_id);
                }
                Event::SessionEstablished {
                    peer, session_id, ..
                } if i == b && *peer == pa => ids.1 = Some(*session_id),
                Event::OpenFailed { open: o, error, .. } if *o == open => {
                    panic!("open failed: {error}")
                }
                _ => {}
            }
            match ids {
                (Some(x), Some(y)) => {
                    assert_eq!(x, y, "both sides agree on the session id");
                    Some(x)
                }
                _ => None,
            }
        })
        .await
    }
}

/// Fails the test if `fut` does not finish in time (instead of hanging CI).
pub async fn within<T>(limit: Duration, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(limit, fut).await {
        Ok(t) => t,
        Err(_) => panic!("timed out after {limit:?}"),
    }
}

/// Installs a tracing subscriber once (RUST_LOG controls it).
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}
