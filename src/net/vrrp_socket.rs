//! The raw socket for VRRP (IP protocol 112 / IPv6 next header 112), one per
//! interface and address family: sends advertisements with TTL / hop limit
//! 255 from a chosen local address and receives them with the incoming
//! interface index (and, for IPv6, the addresses and hop limit the kernel
//! strips with the header). VRRP payloads are not parsed here.
//!
//! IPv6 (RFC 5798 §5.1.2): the socket joins ff02::12 on the interface and
//! sends from the interface's link-local address. The checksum is ours, not
//! the kernel's (no IPV6_CHECKSUM): with it the kernel would silently discard
//! bad-checksum adverts, and those must be counted like every other drop.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;

use nix::sys::socket::{
    recvmsg, sendmsg, setsockopt, sockopt, ControlMessage, ControlMessageOwned, MsgFlags,
    SockaddrIn, SockaddrIn6,
};
use socket2::{Domain, InterfaceIndexOrAddress, Protocol, Socket, Type};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use super::{os_error, Capability, NetError, Result};

pub const VRRP_PROTO: u8 = 112;
pub const VRRP_GROUP_V4: Ipv4Addr = Ipv4Addr::new(224, 0, 0, 18);
pub const VRRP_GROUP_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 0x12);
/// IPTOS_PREC_INTERNETCONTROL, as keepalived sends it.
const TOS_INTERNETCONTROL: u32 = 0xc0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// The interface the packet arrived on (IP_PKTINFO).
    pub ifindex: u32,
    /// Bytes in the buffer: IPv4 starts with the IPv4 header, IPv6 with the
    /// VRRP message (the kernel strips IPv6 headers from raw sockets).
    pub len: usize,
    /// IPv6 only: what the stripped header said.
    pub v6: Option<V6Header>,
}

/// The parts of a received IPv6 header the receive checks need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct V6Header {
    pub src: Ipv6Addr,
    /// From IPV6_PKTINFO; needed for the pseudo-header checksum.
    pub dst: Ipv6Addr,
    /// From IPV6_HOPLIMIT; None if the kernel sent no such control message.
    pub hop_limit: Option<u8>,
}

pub struct VrrpSocket {
    fd: AsyncFd<Socket>,
    ifname: String,
    ifindex: u32,
    local: IpAddr,
}

impl VrrpSocket {
    /// Opens the socket on `ifname` (must run inside a tokio runtime).
    /// `local` is the source address of everything sent and must be configured
    /// on the interface; with `multicast` the socket joins 224.0.0.18 there,
    /// without it only unicast advertisements are received.
    pub fn open(ifname: &str, ifindex: u32, local: Ipv4Addr, multicast: bool) -> Result<Self> {
        let target = || format!("{ifname} (ifindex {ifindex})");
        let err = |op, e| os_error(op, target(), Capability::NetRaw, e);
        let sock = Socket::new(
            Domain::IPV4,
            Type::RAW,
            Some(Protocol::from(i32::from(VRRP_PROTO))),
        )
        .map_err(|e| err("open raw VRRP socket on", e))?;
        // Without this a raw socket receives protocol 112 from every interface.
        sock.bind_device(Some(ifname.as_bytes()))
            .map_err(|e| err("bind raw VRRP socket to", e))?;
        if multicast {
            sock.join_multicast_v4_n(&VRRP_GROUP_V4, &InterfaceIndexOrAddress::Index(ifindex))
                .map_err(|e| err("join 224.0.0.18 on", e))?;
            sock.set_multicast_if_v4(&local)
                .map_err(|e| err("set multicast interface (by local address) on", e))?;
        }
        // RFC 5798 receivers drop advertisements whose TTL is not 255.
        sock.set_ttl_v4(255)
            .and_then(|()| sock.set_multicast_ttl_v4(255))
            .and_then(|()| sock.set_multicast_loop_v4(false))
            .and_then(|()| sock.set_tos_v4(TOS_INTERNETCONTROL))
            .and_then(|()| {
                setsockopt(&sock, sockopt::Ipv4PacketInfo, &true).map_err(io::Error::from)
            })
            .and_then(|()| sock.set_nonblocking(true))
            .map_err(|e| err("configure raw VRRP socket on", e))?;
        // SAFETY: the Socket owns its descriptor for as long as the AsyncFd owns
        // the Socket, and as_raw_fd always returns that same descriptor.
        let fd = unsafe { AsyncFd::register(sock) }
            .map_err(|e| err("register raw VRRP socket with tokio for", e.into_parts().1))?;
        Ok(VrrpSocket {
            fd,
            ifname: ifname.to_string(),
            ifindex,
            local: IpAddr::V4(local),
        })
    }

    /// Opens the IPv6 socket on `ifname`, joined to ff02::12 there; `local`
    /// is the interface's link-local address (RFC 5798 §5.1.2.1).
    pub fn open_v6(ifname: &str, ifindex: u32, local: Ipv6Addr) -> Result<Self> {
        let target = || format!("{ifname} (ifindex {ifindex})");
        let err = |op, e| os_error(op, target(), Capability::NetRaw, e);
        let sock = Socket::new(
            Domain::IPV6,
            Type::RAW,
            Some(Protocol::from(i32::from(VRRP_PROTO))),
        )
        .map_err(|e| err("open raw IPv6 VRRP socket on", e))?;
        sock.bind_device(Some(ifname.as_bytes()))
            .map_err(|e| err("bind raw IPv6 VRRP socket to", e))?;
        sock.join_multicast_v6(&VRRP_GROUP_V6, ifindex)
            .map_err(|e| err("join ff02::12 on", e))?;
        // RFC 5798 §5.1.2.3: hop limit 255, so receivers can prove the advert
        // was not routed; traffic class as keepalived sets it.
        sock.set_multicast_if_v6(ifindex)
            .and_then(|()| sock.set_multicast_hops_v6(255))
            .and_then(|()| sock.set_unicast_hops_v6(255))
            .and_then(|()| sock.set_multicast_loop_v6(false))
            .and_then(|()| sock.set_tclass_v6(TOS_INTERNETCONTROL))
            .and_then(|()| {
                setsockopt(&sock, sockopt::Ipv6RecvPacketInfo, &true).map_err(io::Error::from)
            })
            .and_then(|()| {
                setsockopt(&sock, sockopt::Ipv6RecvHopLimit, &true).map_err(io::Error::from)
            })
            .and_then(|()| sock.set_nonblocking(true))
            .map_err(|e| err("configure raw IPv6 VRRP socket on", e))?;
        // SAFETY: as in `open`.
        let fd = unsafe { AsyncFd::register(sock) }
            .map_err(|e| err("register raw VRRP socket with tokio for", e.into_parts().1))?;
        Ok(VrrpSocket {
            fd,
            ifname: ifname.to_string(),
            ifindex,
            local: IpAddr::V6(local),
        })
    }

    /// Sends `payload` as the body of an IPv4 packet (protocol 112) to `dst`.
    ///
    /// The source address is set per packet with IP_PKTINFO (`ipi_spec_dst`),
    /// not by bind(2): binding a raw socket to a unicast address also makes the
    /// kernel drop every received packet whose destination differs, i.e. all
    /// multicast advertisements.
    pub async fn send_to(&self, payload: &[u8], dst: impl Into<IpAddr>) -> Result<()> {
        let dst = dst.into();
        let res = match (dst, self.local) {
            (IpAddr::V4(d), IpAddr::V4(l)) => self.send_v4(payload, d, l).await,
            (IpAddr::V6(d), IpAddr::V6(l)) => self.send_v6(payload, d, l).await,
            _ => Err(io::Error::from_raw_os_error(libc::EAFNOSUPPORT)),
        };
        match res {
            Ok(n) if n == payload.len() => Ok(()),
            Ok(n) => Err(NetError::Io {
                op: "send VRRP advertisement",
                target: format!(
                    "to {dst} on {} (only {n} of {} bytes sent)",
                    self.ifname,
                    payload.len()
                ),
                source: io::Error::from(io::ErrorKind::WriteZero),
            }),
            Err(e) => Err(os_error(
                "send VRRP advertisement",
                format!("from {} to {dst} on {}", self.local, self.ifname),
                Capability::NetRaw,
                e,
            )),
        }
    }

    /// The source is set per packet with IPV6_PKTINFO, as for IPv4: bind(2)
    /// to the link-local address would filter what the socket receives.
    async fn send_v6(&self, payload: &[u8], dst: Ipv6Addr, local: Ipv6Addr) -> io::Result<usize> {
        let pktinfo = libc::in6_pktinfo {
            ipi6_addr: libc::in6_addr {
                s6_addr: local.octets(),
            },
            ipi6_ifindex: self.ifindex,
        };
        let addr = SockaddrIn6::from(SocketAddrV6::new(dst, 0, 0, self.ifindex));
        let iov = [IoSlice::new(payload)];
        let cmsg = [ControlMessage::Ipv6PacketInfo(&pktinfo)];
        self.fd
            .async_io(Interest::WRITABLE, |s| {
                sendmsg(s.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), Some(&addr))
                    .map_err(io::Error::from)
            })
            .await
    }

    async fn send_v4(&self, payload: &[u8], dst: Ipv4Addr, local: Ipv4Addr) -> io::Result<usize> {
        let pktinfo = libc::in_pktinfo {
            ipi_ifindex: i32::try_from(self.ifindex).unwrap_or(0),
            ipi_spec_dst: libc::in_addr {
                s_addr: u32::from(local).to_be(),
            },
            ipi_addr: libc::in_addr { s_addr: 0 },
        };
        let addr = SockaddrIn::from(SocketAddrV4::new(dst, 0));
        let iov = [IoSlice::new(payload)];
        let cmsg = [ControlMessage::Ipv4PacketInfo(&pktinfo)];
        self.fd
            .async_io(Interest::WRITABLE, |s| {
                sendmsg(s.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), Some(&addr))
                    .map_err(io::Error::from)
            })
            .await
    }

    /// Receives one packet; `buf` gets the IPv4 header followed by the
    /// payload, or for IPv6 the payload alone (see [`Received`]).
    pub async fn recv(&self, buf: &mut [u8]) -> Result<Received> {
        let cap = buf.len();
        let v6 = self.local.is_ipv6();
        let mut cmsg = nix::cmsg_space!(libc::in6_pktinfo, libc::c_int);
        let res = self
            .fd
            .async_io(Interest::READABLE, |s| {
                let mut iov = [IoSliceMut::new(&mut *buf)];
                // MSG_TRUNC makes the kernel report the real datagram length.
                if v6 {
                    let msg = recvmsg::<SockaddrIn6>(
                        s.as_raw_fd(),
                        &mut iov,
                        Some(&mut cmsg),
                        MsgFlags::MSG_TRUNC,
                    )
                    .map_err(io::Error::from)?;
                    let mut hdr = V6Header {
                        src: msg.address.map(|a| a.ip()).unwrap_or(Ipv6Addr::UNSPECIFIED),
                        dst: Ipv6Addr::UNSPECIFIED,
                        hop_limit: None,
                    };
                    let mut ifindex = 0;
                    for c in msg.cmsgs().map_err(io::Error::from)? {
                        match c {
                            ControlMessageOwned::Ipv6PacketInfo(info) => {
                                ifindex = info.ipi6_ifindex;
                                hdr.dst = Ipv6Addr::from(info.ipi6_addr.s6_addr);
                            }
                            ControlMessageOwned::Ipv6HopLimit(h) => {
                                hdr.hop_limit = u8::try_from(h).ok();
                            }
                            _ => {}
                        }
                    }
                    Ok((msg.bytes, ifindex, Some(hdr)))
                } else {
                    let msg = recvmsg::<SockaddrIn>(
                        s.as_raw_fd(),
                        &mut iov,
                        Some(&mut cmsg),
                        MsgFlags::MSG_TRUNC,
                    )
                    .map_err(io::Error::from)?;
                    let mut ifindex = 0;
                    for c in msg.cmsgs().map_err(io::Error::from)? {
                        if let ControlMessageOwned::Ipv4PacketInfo(info) = c {
                            ifindex = u32::try_from(info.ipi_ifindex).unwrap_or(0);
                        }
                    }
                    Ok((msg.bytes, ifindex, None))
                }
            })
            .await;
        let (len, ifindex, v6) = res.map_err(|e| {
            os_error(
                "receive VRRP on",
                self.ifname.clone(),
                Capability::NetRaw,
                e,
            )
        })?;
        if len > cap {
            return Err(NetError::Truncated {
                op: "receive VRRP on",
                target: self.ifname.clone(),
                len,
                cap,
            });
        }
        Ok(Received { ifindex, len, v6 })
    }

    pub fn local(&self) -> IpAddr {
        self.local
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::link::ifindex;
    use crate::net::testns::{self, Lab};
    use std::time::Duration;

    async fn recv_timeout(s: &VrrpSocket, buf: &mut [u8], ms: u64) -> Option<Received> {
        tokio::time::timeout(Duration::from_millis(ms), s.recv(buf))
            .await
            .ok()
            .map(|r| r.unwrap())
    }

    #[test]
    fn multicast_and_unicast_between_namespaces() {
        let Some(lab) = Lab::new(2) else { return };
        lab.veth(0, "a0", 1, "b0");
        lab.ip(0, "addr add 10.77.0.1/24 dev a0");
        // A second address, added later: the sender must use it because we ask,
        // not because the kernel would pick it.
        lab.ip(0, "addr add 10.77.0.5/24 dev a0");
        lab.ip(1, "addr add 10.77.0.2/24 dev b0");
        lab.ip(0, "link set a0 up");
        lab.ip(1, "link set b0 up");
        let (a, b) = (lab.ns(0).to_string(), lab.ns(1).to_string());
        lab.run(1, move || async move {
            let b_idx = ifindex("b0").unwrap();
            let sb = VrrpSocket::open("b0", b_idx, Ipv4Addr::new(10, 77, 0, 2), true).unwrap();
            testns::enter(&a);
            let a_idx = ifindex("a0").unwrap();
            let sa = VrrpSocket::open("a0", a_idx, Ipv4Addr::new(10, 77, 0, 5), true).unwrap();

            let payload = [0x31u8, 7, 100, 1, 0, 100, 0, 0, 10, 77, 0, 100];
            let mut buf = [0u8; 1500];
            for dst in [VRRP_GROUP_V4, Ipv4Addr::new(10, 77, 0, 2)] {
                sa.send_to(&payload, dst).await.unwrap();
                let r = recv_timeout(&sb, &mut buf, 2000)
                    .await
                    .unwrap_or_else(|| panic!("B got nothing for {dst}"));
                assert_eq!(r.ifindex, b_idx);
                let ihl = usize::from(buf[0] & 0xf) * 4;
                assert_eq!(buf[0] >> 4, 4);
                assert_eq!(r.len, ihl + payload.len());
                assert_eq!(buf[1], 0xc0, "TOS");
                assert_eq!(buf[8], 255, "TTL for {dst}");
                assert_eq!(buf[9], VRRP_PROTO);
                assert_eq!(
                    buf[12..16],
                    [10, 77, 0, 5],
                    "source = requested local address"
                );
                assert_eq!(buf[16..20], dst.octets());
                assert_eq!(&buf[ihl..r.len], &payload);
            }
            // Multicast loop is off: the sender does not hear itself.
            assert!(recv_timeout(&sa, &mut buf, 300).await.is_none());
            // B answers by multicast: A receives it with its own ifindex.
            testns::enter(&b);
            sb.send_to(&payload, VRRP_GROUP_V4).await.unwrap();
            let r = recv_timeout(&sa, &mut buf, 2000)
                .await
                .expect("A got B's advertisement");
            assert_eq!(r.ifindex, a_idx);
            assert_eq!(buf[12..16], [10, 77, 0, 2]);

            // Too-small buffer is an error value, not a silent short read.
            sa.send_to(&payload, VRRP_GROUP_V4).await.unwrap();
            let mut small = [0u8; 8];
            let e = tokio::time::timeout(Duration::from_secs(2), sb.recv(&mut small))
                .await
                .expect("B got the packet")
                .unwrap_err();
            assert!(matches!(e, NetError::Truncated { .. }), "{e}");
        });
    }

    #[test]
    fn unicast_only_socket_ignores_multicast() {
        let Some(lab) = Lab::new(2) else { return };
        lab.veth(0, "a0", 1, "b0");
        lab.ip(0, "addr add 10.77.0.1/24 dev a0");
        lab.ip(1, "addr add 10.77.0.2/24 dev b0");
        lab.ip(0, "link set a0 up");
        lab.ip(1, "link set b0 up");
        let a = lab.ns(0).to_string();
        lab.run(1, move || async move {
            let sb = VrrpSocket::open(
                "b0",
                ifindex("b0").unwrap(),
                Ipv4Addr::new(10, 77, 0, 2),
                false,
            )
            .unwrap();
            testns::enter(&a);
            let sa = VrrpSocket::open(
                "a0",
                ifindex("a0").unwrap(),
                Ipv4Addr::new(10, 77, 0, 1),
                false,
            )
            .unwrap();
            let mut buf = [0u8; 1500];
            sa.send_to(b"mcast", VRRP_GROUP_V4).await.unwrap();
            assert!(
                recv_timeout(&sb, &mut buf, 300).await.is_none(),
                "not joined, must not receive"
            );
            sa.send_to(b"ucast", Ipv4Addr::new(10, 77, 0, 2))
                .await
                .unwrap();
            let r = recv_timeout(&sb, &mut buf, 2000)
                .await
                .expect("unicast arrives");
            assert_eq!(&buf[r.len - 5..r.len], b"ucast");
            assert_eq!(buf[8], 255);
        });
    }

    /// Waits for the link-local address of `dev` in the current namespace.
    async fn link_local(dev: &str) -> Ipv6Addr {
        let (h, conn) = crate::net::netlink_connect().unwrap();
        tokio::spawn(conn);
        let idx = ifindex(dev).unwrap();
        for _ in 0..250 {
            if let Some(a) = crate::net::link_local_ipv6(&h, idx, &[]).await.unwrap() {
                return a;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("{dev} got no usable link-local address");
    }

    #[test]
    fn ipv6_multicast_from_link_local_with_hop_limit_255() {
        let Some(lab) = Lab::new(2) else { return };
        lab.veth(0, "a0", 1, "b0");
        lab.ip(0, "link set a0 up");
        lab.ip(1, "link set b0 up");
        let a = lab.ns(0).to_string();
        lab.run(1, move || async move {
            let b_idx = ifindex("b0").unwrap();
            let b_ll = link_local("b0").await;
            let sb = VrrpSocket::open_v6("b0", b_idx, b_ll).unwrap();
            testns::enter(&a);
            let a_idx = ifindex("a0").unwrap();
            let a_ll = link_local("a0").await;
            let sa = VrrpSocket::open_v6("a0", a_idx, a_ll).unwrap();
            assert_eq!(sa.local(), IpAddr::V6(a_ll));

            let payload = [0x31u8, 7, 100, 1, 0, 100, 0xab, 0xcd];
            let mut buf = [0u8; 1500];
            sa.send_to(&payload, VRRP_GROUP_V6).await.unwrap();
            let r = recv_timeout(&sb, &mut buf, 2000)
                .await
                .expect("B got A's IPv6 advert");
            assert_eq!(r.ifindex, b_idx);
            // The kernel strips the IPv6 header and leaves the payload as
            // sent: no IPV6_CHECKSUM rewriting, so bad checksums reach us.
            assert_eq!(&buf[..r.len], &payload);
            let h = r.v6.expect("IPv6 header fields");
            assert_eq!(h.src, a_ll, "source is the link-local address");
            assert_eq!(h.dst, VRRP_GROUP_V6);
            assert_eq!(h.hop_limit, Some(255));
            // Multicast loop is off: the sender does not hear itself.
            assert!(recv_timeout(&sa, &mut buf, 300).await.is_none());
            // A family mismatch is an error value, not a panic.
            assert!(sa.send_to(&payload, VRRP_GROUP_V4).await.is_err());
        });
    }
}
