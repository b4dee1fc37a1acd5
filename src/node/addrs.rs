//! Addresses: what the node listens on by default, and the connection strings others can
//! dial (one per usable address, LAN first).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, UdpSocket};

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

/// TCP and QUIC on every interface, IPv4 and (when this machine has it) IPv6, on `port`
/// (or on one port free for all of them).
pub fn default_listen(port: u16) -> Result<Vec<Multiaddr>, ListenError> {
    let v6 = ipv6_available();
    let port = if port == 0 { free_port(v6)? } else { port };
    let mut ips = vec![IpAddr::V4(Ipv4Addr::UNSPECIFIED)];
    if v6 {
        ips.push(IpAddr::V6(Ipv6Addr::UNSPECIFIED));
    }
    Ok(ips
        .into_iter()
        .flat_map(|ip| {
            [
                Multiaddr::from(ip).with(Protocol::Tcp(port)),
                Multiaddr::from(ip)
                    .with(Protocol::Udp(port))
                    .with(Protocol::QuicV1),
            ]
        })
        .collect())
}

/// Whether IPv6 sockets can be opened here (a kernel or namespace may lack IPv6).
fn ipv6_available() -> bool {
    UdpSocket::bind(SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0))).is_ok()
}

/// A port free for TCP and UDP (on IPv6 too with `v6`), so that one `host:port` reaches
/// both transports on either family.
fn free_port(v6: bool) -> Result<u16, ListenError> {
    for _ in 0..20 {
        let tcp = TcpListener::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)))?;
        let port = tcp.local_addr()?.port();
        let v4_udp = UdpSocket::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port))).is_ok();
        let v6_free = !v6 || {
            let any = SocketAddr::from((Ipv6Addr::UNSPECIFIED, port));
            // Probed one at a time, each released before the next.
            only_v6_tcp(any) && UdpSocket::bind(any).is_ok()
        };
        if v4_udp && v6_free {
            return Ok(port);
        }
    }
    Err(ListenError::NoCommonPort)
}

/// Whether `addr` (IPv6) is free for TCP. std binds IPv6 dual-stack, which the IPv4
/// listener held by the caller would block; a listener bound on IPv6 only is what libp2p
/// makes, so the same port is free when the dual-stack bind fails only for that reason.
fn only_v6_tcp(addr: SocketAddr) -> bool {
    // Without socket options at hand, ask for the port on the IPv6 loopback: taken there
    // means taken on `::` too.
    TcpListener::bind(SocketAddr::from((Ipv6Addr::LOCALHOST, addr.port()))).is_ok()
}

/// The first of `addrs` whose port another socket holds, with the error binding it gave.
///
/// libp2p's listeners ask for port reuse, so a second node on a port that a first node
/// holds would share it, and take part of its connections, instead of failing. Binding
/// each port once first, without reuse, finds a port in use: TCP ports with the same
/// rules as any server (a port held by a listener is in use), UDP ports (QUIC) exactly.
/// Port 0 (any free port) is not checked.
pub fn check_ports_free(addrs: &[Multiaddr]) -> Result<(), (Multiaddr, io::Error)> {
    for addr in addrs {
        let mut ip = None;
        let mut probe = None;
        for p in addr.iter() {
            match p {
                Protocol::Ip4(a) => ip = Some(IpAddr::V4(a)),
                Protocol::Ip6(a) => ip = Some(IpAddr::V6(a)),
                Protocol::Tcp(port) if port != 0 => probe = Some((port, true)),
                Protocol::Udp(port) if port != 0 => probe = Some((port, false)),
                _ => {}
            }
        }
        let (Some(ip), Some((port, tcp))) = (ip, probe) else {
            continue;
        };
        let at = SocketAddr::from((ip, port));
        let bound = if tcp {
            TcpListener::bind(at).map(drop)
        } else {
            UdpSocket::bind(at).map(drop)
        };
        match bound {
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => return Err((addr.clone(), e)),
            // Anything else (an address not on this machine...) is for libp2p to report.
            _ => {}
        }
    }
    Ok(())
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
    fn the_default_listen_addresses_share_one_port_on_both_families() {
        let addrs = default_listen(4001).expect("addresses");
        assert_eq!(addrs[0].to_string(), "/ip4/0.0.0.0/tcp/4001");
        assert_eq!(addrs[1].to_string(), "/ip4/0.0.0.0/udp/4001/quic-v1");
        if ipv6_available() {
            assert_eq!(addrs[2].to_string(), "/ip6/::/tcp/4001");
            assert_eq!(addrs[3].to_string(), "/ip6/::/udp/4001/quic-v1");
        } else {
            assert_eq!(addrs.len(), 2);
        }
    }

    #[test]
    fn a_port_in_use_is_found_before_listening() {
        let held = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = held.local_addr().expect("addr").port();
        let tcp: Multiaddr = format!("/ip4/127.0.0.1/tcp/{port}")
            .parse()
            .expect("multiaddr");
        let (addr, e) = check_ports_free(std::slice::from_ref(&tcp)).expect_err("in use");
        assert_eq!(addr, tcp);
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
        let udp = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let port = udp.local_addr().expect("addr").port();
        let quic: Multiaddr = format!("/ip4/127.0.0.1/udp/{port}/quic-v1")
            .parse()
            .expect("multiaddr");
        assert!(check_ports_free(&[quic]).is_err());
        let any: Multiaddr = "/ip4/127.0.0.1/tcp/0".parse().expect("multiaddr");
        assert!(check_ports_free(&[any]).is_ok());
    }
}
