//! Addresses: what the node listens on by default, and the connection strings others can
//! dial (one per usable address, LAN first).

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddrV4, TcpListener, UdpSocket};

use libp2p::Multiaddr;
use libp2p::multiaddr::Protocol;

/// Why no default listen address could be chosen.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// Binding a probe socket failed.
    #[error("cannot find a free port: {0}")]
    Probe(#[from] io::Error),
    /// Twenty TCP ports in a row were taken for UDP.
    #[error("cannot find a port free for both TCP and UDP")]
    NoCommonPort,
}

/// TCP and QUIC on every IPv4 interface, on `port` (or on one free port for both).
pub fn default_listen(port: u16) -> Result<Vec<Multiaddr>, ListenError> {
    let port = if port == 0 { free_port()? } else { port };
    Ok(vec![
        Multiaddr::empty()
            .with(Protocol::Ip4(Ipv4Addr::UNSPECIFIED))
            .with(Protocol::Tcp(port)),
        Multiaddr::empty()
            .with(Protocol::Ip4(Ipv4Addr::UNSPECIFIED))
            .with(Protocol::Udp(port))
            .with(Protocol::QuicV1),
    ])
}

/// A port free for both TCP and UDP, so that one `host:port` reaches both transports.
fn free_port() -> Result<u16, ListenError> {
    for _ in 0..20 {
        let tcp = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0))?;
        let port = tcp.local_addr()?.port();
        if UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port)).is_ok() {
            return Ok(port);
        }
    }
    Err(ListenError::NoCommonPort)
}

/// Connection strings for the banner: one per listen address that others can dial,
/// LAN addresses first; unspecified addresses (0.0.0.0, ::) are expanded to this
/// machine's interface addresses.
pub fn conn_strings(listen: &[Multiaddr], secret: &str) -> Vec<String> {
    let mut out: Vec<(u8, String)> = Vec::new();
    let mut push = |rank: u8, s: String| {
        if !out.iter().any(|(_, o)| *o == s) {
            out.push((rank, s));
        }
    };
    let interfaces = interface_addrs();
    let quic_only = !listen
        .iter()
        .any(|a| a.iter().any(|p| matches!(p, Protocol::Tcp(_))));
    for addr in listen {
        let mut ip = None;
        let mut tcp = None;
        for p in addr.iter() {
            match p {
                Protocol::Ip4(a) => ip = Some(IpAddr::V4(a)),
                Protocol::Ip6(a) => ip = Some(IpAddr::V6(a)),
                Protocol::Tcp(port) => tcp = Some(port),
                _ => {}
            }
        }
        let Some(ip) = ip else { continue };
        match tcp {
            // QUIC listens on the same port number; the TCP address stands for both.
            Some(port) => {
                for ip in expand(ip, &interfaces) {
                    push(rank(&ip), crate::connstr::format(&ip, port, secret));
                }
            }
            // A node listening on QUIC alone gets `multiaddr:secret` strings.
            None if quic_only => {
                for i in expand(ip, &interfaces) {
                    let m: Multiaddr = addr
                        .iter()
                        .map(|p| match p {
                            Protocol::Ip4(_) | Protocol::Ip6(_) => Protocol::from(i),
                            other => other,
                        })
                        .collect();
                    push(u8::from(i.is_loopback()) * 2, format!("{m}:{secret}"));
                }
            }
            None => {}
        }
    }
    out.sort_by_key(|(r, _)| *r);
    out.into_iter().map(|(_, s)| s).collect()
}

/// LAN addresses first, then link-local, then loopback.
fn rank(ip: &IpAddr) -> u8 {
    if ip.is_loopback() {
        2
    } else if is_link_local(ip) {
        1
    } else {
        0
    }
}

/// `ip` itself, or, when unspecified, every interface address of its family.
fn expand(ip: IpAddr, interfaces: &[IpAddr]) -> Vec<IpAddr> {
    if ip.is_unspecified() {
        interfaces
            .iter()
            .copied()
            .filter(|i| i.is_ipv4() == ip.is_ipv4())
            .collect()
    } else {
        vec![ip]
    }
}

fn is_link_local(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) == 0xfe80,
    }
}

fn interface_addrs() -> Vec<IpAddr> {
    let mut v: Vec<IpAddr> = if_addrs::get_if_addrs()
        .map(|list| list.into_iter().map(|i| i.ip()).collect())
        .unwrap_or_default();
    // Link-local IPv6 needs a zone id to be dialed; it is no use in a connection string.
    v.retain(|ip| !(ip.is_ipv6() && is_link_local(ip)));
    if v.is_empty() {
        v.push(IpAddr::from([127, 0, 0, 1]));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_listeners_give_one_string_per_port_and_quic_alone_gives_multiaddrs() {
        let tcp: Multiaddr = "/ip4/127.0.0.1/tcp/5000".parse().expect("multiaddr");
        let quic: Multiaddr = "/ip4/127.0.0.1/udp/5000/quic-v1"
            .parse()
            .expect("multiaddr");
        assert_eq!(
            conn_strings(&[tcp, quic.clone()], "s"),
            vec!["127.0.0.1:5000:s"]
        );
        assert_eq!(
            conn_strings(&[quic], "s"),
            vec!["/ip4/127.0.0.1/udp/5000/quic-v1:s"]
        );
    }

    #[test]
    fn the_default_listen_addresses_share_one_port() {
        let addrs = default_listen(4001).expect("addresses");
        assert_eq!(addrs[0].to_string(), "/ip4/0.0.0.0/tcp/4001");
        assert_eq!(addrs[1].to_string(), "/ip4/0.0.0.0/udp/4001/quic-v1");
    }
}
