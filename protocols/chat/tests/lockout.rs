//! The per-address caps on connections that have not authenticated (SPEC.md §8, issue 10
//! item 5), through a real swarm on loopback: idle sockets from one address (`::1`) are
//! refused at connection time beyond the cap, a peer from another address (`127.0.0.1`)
//! still gets a session meanwhile, and nothing is left once the sockets are gone. The
//! lock-out itself (the node's bounded pool of connections in their transport upgrade)
//! is tried with the real binary in network namespaces, in the workspace's
//! `tests/lockout.rs`.

mod common;

use std::net::TcpStream;
use std::time::Duration;

use common::{Net, config, init_tracing, tcp_noise_node, within};
use futures::StreamExt;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::SwarmEvent;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sockets_from_one_address_are_refused_beyond_the_cap_and_leave_nothing() {
    init_tracing();
    let long = Duration::from_secs(30);
    let (mut target, addr4) = tcp_noise_node(config(0, "right"), long).await;
    let (dialer, addr1) = tcp_noise_node(config(1, "x"), long).await;
    // The same node on ::1 too: the idle sockets come from there, the peer from 127.0.0.1.
    if target.listen_on("/ip6/::1/tcp/0".parse().unwrap()).is_err() {
        eprintln!("SKIPPED: no IPv6 loopback");
        return;
    }
    let addr6 = within(Duration::from_secs(5), async {
        loop {
            if let SwarmEvent::NewListenAddr { address, .. } = target.select_next_some().await
                && address.iter().any(|p| matches!(p, Protocol::Ip6(_)))
            {
                return address;
            }
        }
    })
    .await;
    let port = addr6
        .iter()
        .find_map(|p| match p {
            Protocol::Tcp(port) => Some(port),
            _ => None,
        })
        .expect("a TCP port");
    let mut net = Net::from_swarms(vec![target, dialer], vec![addr4, addr1]);

    // 40 sockets that never send a byte, all from ::1: 8 are let into the transport
    // upgrade (the default cap), the other 32 refused at once.
    let idle: Vec<TcpStream> = (0..40)
        .map(|_| TcpStream::connect(("::1", port)).expect("connect"))
        .collect();
    net.until_state(|s| s[0].behaviour().refused_connections() >= 32)
        .await;
    net.until_state(|s| s[0].behaviour().unauthenticated_connections() == 8)
        .await;
    assert_eq!(net.swarms[0].behaviour().refused_connections(), 32);

    // Meanwhile a peer from 127.0.0.1 gets its session.
    net.open(1, 0, "right").await;

    // The sockets go: the node forgets them (their upgrade fails), and ::1 is welcome
    // again.
    drop(idle);
    net.until_state(|s| s[0].behaviour().unauthenticated_connections() == 0)
        .await;
    let again: Vec<TcpStream> = (0..8)
        .map(|_| TcpStream::connect(("::1", port)).expect("connect"))
        .collect();
    net.until_state(|s| s[0].behaviour().unauthenticated_connections() == 8)
        .await;
    assert_eq!(
        net.swarms[0].behaviour().refused_connections(),
        32,
        "nothing refused once the earlier sockets were gone"
    );
    drop(again);
}
