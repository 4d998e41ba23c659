//! L4 forwarding: TCP (with optional zero-copy splice) and UDP flows.

pub mod proxy_protocol;
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
    let domain = Domain::for_address(addr);
    let proto = if ty == Type::STREAM {
        Protocol::TCP
    } else {
        Protocol::UDP
    };
    let s = Socket::new(domain, ty.cloexec(), Some(proto))?;
    s.set_reuse_address(true)?;
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

pub fn bind_udp(addr: SocketAddr) -> io::Result<std::net::UdpSocket> {
    Ok(bind_socket(addr, Type::DGRAM, None)?.into())
}
