//! Announcing a VIP after takeover: gratuitous ARP on a send-only AF_PACKET
//! socket, and IPv6 unsolicited neighbour advertisements on a raw ICMPv6 socket.
//!
//! Two ARP forms are sent because the Linux neighbour cache honours both even
//! inside its 1 s locktime (see PLATFORM.md): a request with sender IP = target
//! IP = VIP, and a reply whose target MAC equals its sender MAC. A reply with a
//! broadcast target MAC is ignored inside locktime, so it is not used.

use std::mem::size_of;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV6};
use std::os::fd::AsRawFd;

use socket2::{Domain, Protocol, SockAddr, SockAddrStorage, Socket, Type};

use super::{iface_label, os_error, Capability, NetError, Result};

pub const ARP_FRAME_LEN: usize = 42;
const ARPOP_REQUEST: u8 = 1;
const ARPOP_REPLY: u8 = 2;

fn arp_frame(
    op: u8,
    mac: [u8; 6],
    vip: Ipv4Addr,
    dst_mac: [u8; 6],
    target_mac: [u8; 6],
) -> [u8; ARP_FRAME_LEN] {
    let mut f = [0u8; ARP_FRAME_LEN];
    f[0..6].copy_from_slice(&dst_mac);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    f[14..16].copy_from_slice(&1u16.to_be_bytes()); // hardware: Ethernet
    f[16..18].copy_from_slice(&0x0800u16.to_be_bytes()); // protocol: IPv4
    f[18] = 6;
    f[19] = 4;
    f[20..22].copy_from_slice(&u16::from(op).to_be_bytes());
    f[22..28].copy_from_slice(&mac);
    f[28..32].copy_from_slice(&vip.octets());
    f[32..38].copy_from_slice(&target_mac);
    f[38..42].copy_from_slice(&vip.octets());
    f
}

/// Broadcast ARP request: sender = target IP = VIP, target MAC zero.
pub fn arp_request_frame(mac: [u8; 6], vip: Ipv4Addr) -> [u8; ARP_FRAME_LEN] {
    arp_frame(ARPOP_REQUEST, mac, vip, [0xff; 6], [0; 6])
}

/// Broadcast ARP reply: sender = target IP = VIP, target MAC = sender MAC.
pub fn arp_reply_frame(mac: [u8; 6], vip: Ipv4Addr) -> [u8; ARP_FRAME_LEN] {
    arp_frame(ARPOP_REPLY, mac, vip, [0xff; 6], mac)
}

/// Sends gratuitous ARP on one interface.
///
/// The AF_PACKET socket has protocol 0 and is bound with protocol 0, so the
/// kernel never hooks it into the receive path: it queues nothing, unlike an
/// ETH_P_ARP/ETH_P_ALL socket, which would buffer every ARP frame on the link
/// for a daemon that never reads them.
pub struct GarpSender {
    sock: Socket,
    ifindex: u32,
}

impl GarpSender {
    pub fn open(ifindex: u32) -> Result<Self> {
        let err = |op, e| os_error(op, iface_label(ifindex), Capability::NetRaw, e);
        let sock = Socket::new(Domain::PACKET, Type::RAW, None)
            .map_err(|e| err("open packet socket for", e))?;
        let mut storage = SockAddrStorage::zeroed();
        // SAFETY: sockaddr_ll fits in sockaddr_storage, which is zeroed and
        // suitably aligned; the length passed below is exactly sockaddr_ll's.
        let ll = unsafe { storage.view_as::<libc::sockaddr_ll>() };
        ll.sll_family = libc::AF_PACKET as libc::sa_family_t;
        ll.sll_protocol = 0;
        ll.sll_ifindex = i32::try_from(ifindex)
            .map_err(|_| NetError::NoSuchInterface(format!("ifindex {ifindex}")))?;
        // SAFETY: the storage holds an initialised sockaddr_ll of this length.
        let addr =
            unsafe { SockAddr::new(storage, size_of::<libc::sockaddr_ll>() as libc::socklen_t) };
        sock.bind(&addr)
            .map_err(|e| err("bind packet socket to", e))?;
        // A full transmit queue must not stall the caller: a lost GARP is
        // repeated by the next announcement anyway.
        sock.set_nonblocking(true)
            .map_err(|e| err("configure packet socket on", e))?;
        Ok(GarpSender { sock, ifindex })
    }

    /// Sends both gratuitous ARP forms for `vip` from `mac`.
    pub fn send(&self, mac: [u8; 6], vip: Ipv4Addr) -> Result<()> {
        let first = self.send_frame(&arp_request_frame(mac, vip));
        let second = self.send_frame(&arp_reply_frame(mac, vip));
        first.and(second)
    }

    fn send_frame(&self, frame: &[u8]) -> Result<()> {
        self.sock.send(frame).map(drop).map_err(|e| {
            os_error(
                "send gratuitous ARP on",
                iface_label(self.ifindex),
                Capability::NetRaw,
                e,
            )
        })
    }
}

pub const NA_LEN: usize = 32;

/// Unsolicited neighbour advertisement for `target` (ICMPv6 part only, checksum
/// left zero for the kernel, which always computes it on ICMPv6 raw sockets):
/// Router = 0, Solicited = 0, Override = 1 so receivers replace a cached
/// link-layer address at once (RFC 4861 §7.2.6), with a target link-layer
/// address option carrying `mac`.
pub fn unsolicited_na(mac: [u8; 6], target: Ipv6Addr) -> [u8; NA_LEN] {
    use pnet_packet::icmpv6::ndp::{
        MutableNeighborAdvertPacket, NdpOption, NdpOptionTypes, NeighborAdvertFlags,
    };
    use pnet_packet::icmpv6::{Icmpv6Code, Icmpv6Types};
    let mut p = [0u8; NA_LEN];
    if let Some(mut na) = MutableNeighborAdvertPacket::new(&mut p) {
        na.set_icmpv6_type(Icmpv6Types::NeighborAdvert);
        na.set_icmpv6_code(Icmpv6Code(0));
        na.set_flags(NeighborAdvertFlags::Override);
        na.set_target_addr(target);
        na.set_options(&[NdpOption {
            option_type: NdpOptionTypes::TargetLLAddr,
            // In units of 8 octets: type, length and the 6-byte MAC.
            length: 1,
            data: mac.to_vec(),
        }]);
    }
    p
}

const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
// linux/icmpv6.h; not exported by libc.
const ICMP6_FILTER: libc::c_int = 1;

/// Sends unsolicited neighbour advertisements to ff02::1 on one interface.
pub struct NaSender {
    sock: Socket,
    ifindex: u32,
}

impl NaSender {
    pub fn open(ifname: &str, ifindex: u32) -> Result<Self> {
        let err = |op, e| {
            os_error(
                op,
                format!("{ifname} (ifindex {ifindex})"),
                Capability::NetRaw,
                e,
            )
        };
        let sock = Socket::new(Domain::IPV6, Type::RAW, Some(Protocol::ICMPV6))
            .map_err(|e| err("open ICMPv6 socket on", e))?;
        sock.bind_device(Some(ifname.as_bytes()))
            .map_err(|e| err("bind ICMPv6 socket to", e))?;
        // Receivers drop neighbour discovery with a hop limit other than 255.
        sock.set_multicast_hops_v6(255)
            .and_then(|()| sock.set_unicast_hops_v6(255))
            .and_then(|()| sock.set_multicast_if_v6(ifindex))
            .and_then(|()| sock.set_multicast_loop_v6(false))
            .and_then(|()| block_all_icmpv6(&sock))
            .and_then(|()| sock.set_nonblocking(true))
            .map_err(|e| err("configure ICMPv6 socket on", e))?;
        Ok(NaSender { sock, ifindex })
    }

    pub fn send(&self, mac: [u8; 6], vip: Ipv6Addr) -> Result<()> {
        let dst = SockAddr::from(SocketAddrV6::new(ALL_NODES, 0, 0, self.ifindex));
        self.sock
            .send_to(&unsolicited_na(mac, vip), &dst)
            .map(drop)
            .map_err(|e| {
                os_error(
                    "send neighbour advertisement on",
                    iface_label(self.ifindex),
                    Capability::NetRaw,
                    e,
                )
            })
    }
}

// A raw ICMPv6 socket otherwise receives every ICMPv6 message on the host and
// queues it for a reader that does not exist.
fn block_all_icmpv6(sock: &Socket) -> std::io::Result<()> {
    let filter = [u32::MAX; 8];
    // SAFETY: passes a pointer to a live 32-byte struct icmp6_filter and its size.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_ICMPV6,
            ICMP6_FILTER,
            filter.as_ptr().cast(),
            size_of::<[u32; 8]>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::link::ifindex;
    use crate::net::testns::{self, mac_of, neigh_mac, netlink, Lab};
    use crate::net::vip::add_vip;
    use std::io::Read;
    use std::time::{Duration, Instant};

    const MAC: [u8; 6] = [0x02, 0x11, 0x22, 0x33, 0x44, 0x55];

    #[test]
    fn arp_request_bytes() {
        let f = arp_request_frame(MAC, Ipv4Addr::new(10, 77, 0, 100));
        #[rustfmt::skip]
        let want: [u8; 42] = [
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0x11, 0x22, 0x33, 0x44, 0x55, 0x08, 0x06,
            0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x01,
            0x02, 0x11, 0x22, 0x33, 0x44, 0x55, 10, 77, 0, 100,
            0, 0, 0, 0, 0, 0, 10, 77, 0, 100,
        ];
        assert_eq!(f, want);
    }

    #[test]
    fn arp_reply_bytes() {
        let f = arp_reply_frame(MAC, Ipv4Addr::new(192, 0, 2, 7));
        #[rustfmt::skip]
        let want: [u8; 42] = [
            0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0x11, 0x22, 0x33, 0x44, 0x55, 0x08, 0x06,
            0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x02,
            0x02, 0x11, 0x22, 0x33, 0x44, 0x55, 192, 0, 2, 7,
            0x02, 0x11, 0x22, 0x33, 0x44, 0x55, 192, 0, 2, 7,
        ];
        assert_eq!(f, want);
    }

    #[test]
    fn na_bytes() {
        let p = unsolicited_na(MAC, "fd77::100".parse().unwrap());
        #[rustfmt::skip]
        let want: [u8; 32] = [
            136, 0, 0, 0, 0x20, 0, 0, 0,
            0xfd, 0x77, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x00,
            2, 1, 0x02, 0x11, 0x22, 0x33, 0x44, 0x55,
        ];
        assert_eq!(p, want);
    }

    const WRONG: &str = "02:00:00:00:00:bb";

    fn two_hosts() -> Option<Lab> {
        let lab = Lab::new(2)?;
        lab.veth(0, "a0", 1, "b0");
        lab.ip(0, "addr add 10.77.0.1/24 dev a0");
        lab.ip(1, "addr add 10.77.0.2/24 dev b0");
        lab.ip(0, "link set a0 up");
        lab.ip(1, "link set b0 up");
        Some(lab)
    }

    /// Waits briefly for B's entry to reach `want` (the flip itself takes µs;
    /// this only absorbs scheduling). Returns the entry seen last.
    fn settle(ns: &str, addr: &str, want: [u8; 6]) -> Option<[u8; 6]> {
        let t = Instant::now();
        loop {
            let m = neigh_mac(ns, "b0", addr);
            if m == Some(want) || t.elapsed() > Duration::from_millis(300) {
                return m;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn garp_forms_flip_neighbour_inside_locktime() {
        let Some(lab) = two_hosts() else { return };
        let (a, b) = (lab.ns(0).to_string(), lab.ns(1).to_string());
        let a_mac = mac_of(&a, "a0");
        let wrong = testns::parse_mac(WRONG);
        assert_eq!(
            lab.ip(1, "-o neigh show nud all").trim(),
            "",
            "B starts with no entries"
        );
        lab.run(0, move || async move {
            let h = netlink();
            let idx = ifindex("a0").unwrap();
            let vip = Ipv4Addr::new(10, 77, 0, 100);
            add_vip(&h, idx, vip.into(), 24, None).await.unwrap();
            let g = GarpSender::open(idx).unwrap();
            // "B talked to the VIP when someone else owned it": a stale entry
            // with another MAC, refreshed just now so the 1 s locktime runs.
            let poison = || {
                testns::ip(&format!(
                    "-n {b} neigh replace 10.77.0.100 lladdr {WRONG} dev b0 nud stale"
                ));
                Instant::now()
            };
            let ignored = arp_frame(ARPOP_REPLY, a_mac, vip, [0xff; 6], [0xff; 6]);
            for (name, frame) in [
                ("request", arp_request_frame(a_mac, vip)),
                (
                    "reply with target MAC = sender MAC",
                    arp_reply_frame(a_mac, vip),
                ),
            ] {
                let t0 = poison();
                // Control: a broadcast-target reply is ignored, so locktime is in force.
                g.send_frame(&ignored).unwrap();
                std::thread::sleep(Duration::from_millis(50));
                assert_eq!(
                    neigh_mac(&b, "b0", "10.77.0.100"),
                    Some(wrong),
                    "locktime control failed"
                );
                g.send_frame(&frame).unwrap();
                let got = settle(&b, "10.77.0.100", a_mac);
                let dt = t0.elapsed();
                assert_eq!(got, Some(a_mac), "GARP {name} not honoured");
                assert!(
                    dt < Duration::from_millis(900),
                    "{name}: too slow to prove locktime ({dt:?})"
                );
                eprintln!("GARP {name}: B's entry flipped {dt:?} after poisoning (locktime 1 s)");
            }
            let t0 = poison();
            g.send(a_mac, vip).unwrap();
            assert_eq!(settle(&b, "10.77.0.100", a_mac), Some(a_mac));
            assert!(t0.elapsed() < Duration::from_millis(900));
        });
    }

    #[test]
    fn garp_socket_receives_nothing() {
        let Some(lab) = two_hosts() else { return };
        let b = lab.ns(1).to_string();
        lab.run(0, move || async move {
            let idx = ifindex("a0").unwrap();
            let g = GarpSender::open(idx).unwrap();
            // A witness that does receive: proves frames reached a0.
            let proto = (libc::ETH_P_ALL as u16).to_be() as i32;
            let witness =
                Socket::new(Domain::PACKET, Type::RAW, Some(Protocol::from(proto))).unwrap();
            witness.bind_device(Some(b"a0")).unwrap();
            witness
                .set_read_timeout(Some(Duration::from_secs(2)))
                .unwrap();

            testns::enter(&b);
            let gb = GarpSender::open(ifindex("b0").unwrap()).unwrap();
            gb.send([2, 0, 0, 0, 0, 0xb], Ipv4Addr::new(10, 77, 0, 2))
                .unwrap();
            g.send([2, 0, 0, 0, 0, 0xa], Ipv4Addr::new(10, 77, 0, 1))
                .unwrap();

            let mut buf = [0u8; 2048];
            // The witness also sees IPv6 chatter and our own frames: wait for B's GARP.
            loop {
                let n = (&witness)
                    .read(&mut buf)
                    .expect("witness saw B's GARP arrive on a0");
                if n >= 42 && buf[12..14] == [0x08, 0x06] && buf[6..12] == [2, 0, 0, 0, 0, 0xb] {
                    break;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
            let e = (&g.sock)
                .read(&mut buf)
                .expect_err("send-only socket received a frame");
            assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock);
        });
    }

    #[test]
    fn unsolicited_na_flips_ipv6_neighbour() {
        let Some(lab) = two_hosts() else { return };
        let (a, b) = (lab.ns(0).to_string(), lab.ns(1).to_string());
        let a_mac = mac_of(&a, "a0");
        // Until addrconf has brought IPv6 up on b0 (its link-local address
        // appears), B ignores neighbour advertisements.
        let t = Instant::now();
        while !lab.ip(1, "-6 addr show dev b0 scope link").contains("fe80") {
            assert!(
                t.elapsed() < Duration::from_secs(5),
                "b0 never got a link-local address"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        lab.ip(
            1,
            &format!("-6 neigh replace fd77::100 lladdr {WRONG} dev b0 nud stale"),
        );
        lab.run(0, move || async move {
            let h = netlink();
            let idx = ifindex("a0").unwrap();
            let vip: Ipv6Addr = "fd77::100".parse().unwrap();
            add_vip(&h, idx, vip.into(), 64, None).await.unwrap();
            let na = NaSender::open("a0", idx).unwrap();
            na.send(a_mac, vip).unwrap();
            assert_eq!(
                settle(&b, "fd77::100", a_mac),
                Some(a_mac),
                "NA not honoured"
            );
        });
    }
}
