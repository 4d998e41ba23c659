//! L4 forwarding: TCP (with optional zero-copy splice) and UDP flows.

pub mod splice;
pub mod tcp;
pub mod udp;

use std::io;
use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

/// Listening sockets bind with SO_REUSEADDR (restart without TIME_WAIT
/// trouble) and IP_FREEBIND, so a backup node already listens on the virtual
/// IP before it owns it and serves the instant VRRP claims the address.
pub fn bind_socket(addr: SocketAddr, ty: Type, backlog: Option<u32>) -> io::Result<Socket> {
    bind_socket_shared(addr, ty, backlog, false)
}

/// [`bind_socket`], with `SO_REUSEPORT` when `shared`: one socket per
/// data-plane worker on the same address, the kernel spreading
/// connections over them.
pub fn bind_socket_shared(
    addr: SocketAddr,
    ty: Type,
    backlog: Option<u32>,
    shared: bool,
) -> io::Result<Socket> {
    let domain = Domain::for_address(addr);
    let proto = if ty == Type::STREAM {
        Protocol::TCP
    } else {
        Protocol::UDP
    };
    let s = Socket::new(domain, ty.cloexec(), Some(proto))?;
    s.set_reuse_address(true)?;
    if shared {
        s.set_reuse_port(true)?;
    }
    match addr {
        SocketAddr::V4(_) => s.set_freebind_v4(true)?,
        SocketAddr::V6(_) => {
            s.set_freebind_v6(true)?;
            // An explicit [::] bind means IPv6 only; IPv4 gets its own listener.
            s.set_only_v6(true)?;
        }
    }
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    if let Some(b) = backlog {
        s.listen(b as i32)?;
    }
    Ok(s)
}

pub fn bind_tcp(addr: SocketAddr, backlog: u32) -> io::Result<std::net::TcpListener> {
    Ok(bind_socket(addr, Type::STREAM, Some(backlog))?.into())
}

/// `n` listening sockets on one address, one per worker (`SO_REUSEPORT`
/// when more than one). All are bound before any is used, so a failure
/// leaves nothing listening.
pub fn bind_tcp_n(
    addr: SocketAddr,
    backlog: u32,
    n: usize,
) -> io::Result<Vec<std::net::TcpListener>> {
    let shared = n > 1;
    (0..n.max(1))
        .map(|_| Ok(bind_socket_shared(addr, Type::STREAM, Some(backlog), shared)?.into()))
        .collect()
}

pub fn bind_udp(addr: SocketAddr) -> io::Result<std::net::UdpSocket> {
    Ok(bind_socket(addr, Type::DGRAM, None)?.into())
}
