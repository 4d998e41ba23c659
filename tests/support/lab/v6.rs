//! IPv6 for the lab: dual-stack hosts (DAD off inside the lab's own
//! namespaces, so link-local and test addresses are usable at once), IPv6
//! address checks, and raw Ethernet frames built with pnet for
//! hostile-advert tests. (The backend that reports what the proxy told it
//! is [`Mode::Forwarded`](crate::support::Mode::Forwarded).)

use std::net::Ipv6Addr;
use std::time::Duration;

use super::{Host, Lab};

/// Adds a host with `eth0` at `ip4_cidr` and `ip6_cidr`. Duplicate address
/// detection is switched off in the host's namespace (it would hold the
/// link-local address "tentative" for a second or more, PLATFORM.md), and
/// the call returns once eth0's link-local address is usable.
pub fn add_dual_host(lab: &mut Lab, name: &str, ip4_cidr: &str, ip6_cidr: &str) -> Host {
    let host = lab.add_host(name, ip4_cidr);
    let sh = "for k in all default eth0; do echo 0 > /proc/sys/net/ipv6/conf/$k/accept_dad; done";
    let out = lab.exec(name, &["sh", "-c", sh]);
    assert!(
        out.status.success(),
        "accept_dad=0 in {}: {}",
        host.ns,
        String::from_utf8_lossy(&out.stderr)
    );
    // Down and up again: the link-local address is regenerated without DAD.
    lab.ip(name, &["link", "set", "eth0", "down"]);
    lab.ip(name, &["link", "set", "eth0", "up"]);
    lab.ip(
        name,
        &["-6", "addr", "add", ip6_cidr, "dev", "eth0", "nodad"],
    );
    let ll = std::cell::RefCell::new(String::new());
    crate::support::poll(
        &format!("{name}: a usable link-local address"),
        Duration::from_secs(5),
        Duration::from_millis(20),
        || {
            let now = lab.ip(
                name,
                &["-6", "addr", "show", "dev", "eth0", "scope", "link"],
            );
            let usable = now.contains("fe80") && !now.contains("tentative");
            *ll.borrow_mut() = now;
            usable
        },
        || ll.borrow().clone(),
    );
    host
}

/// The host's link-local address on eth0.
pub fn link_local(lab: &Lab, host: &str) -> Ipv6Addr {
    lab.ip(
        host,
        &["-6", "-br", "addr", "show", "dev", "eth0", "scope", "link"],
    )
    .split_whitespace()
    .skip(2)
    .find_map(|a| a.split('/').next()?.parse().ok())
    .unwrap_or_else(|| panic!("{host} has no link-local address"))
}

/// Whether the host's eth0 holds the IPv6 address `ip`.
pub fn has_addr6(lab: &Lab, host: &str, ip: &str) -> bool {
    let want: Ipv6Addr = ip.parse().expect("IPv6 literal");
    lab.ip(host, &["-6", "-br", "addr", "show", "dev", "eth0"])
        .split_whitespace()
        .skip(2)
        .any(|a| a.split('/').next().and_then(|s| s.parse().ok()) == Some(want))
}

/// The neighbour entry's state word (REACHABLE, STALE, DELAY, PROBE, ...).
pub fn neigh_state(lab: &Lab, host: &str, ip: &str) -> String {
    lab.ip(host, &["neigh", "show", ip, "dev", "eth0"])
        .split_whitespace()
        .last()
        .unwrap_or("")
        .to_string()
}

/// A whole Ethernet frame carrying an IPv6 packet with `payload` as next
/// header 112 (VRRP), built with pnet's packet types.
pub fn vrrp6_frame(
    src_mac: [u8; 6],
    src: Ipv6Addr,
    dst: Ipv6Addr,
    hop_limit: u8,
    payload: &[u8],
) -> Vec<u8> {
    use pnet_packet::ethernet::{EtherTypes, MutableEthernetPacket};
    use pnet_packet::ip::IpNextHeaderProtocol;
    use pnet_packet::ipv6::MutableIpv6Packet;
    const ETH: usize = 14;
    const IP6: usize = 40;
    let mut frame = vec![0u8; ETH + IP6 + payload.len()];
    {
        let mut eth = MutableEthernetPacket::new(&mut frame).expect("ethernet buffer");
        // RFC 2464 §7: IPv6 multicast maps to 33:33 + the low 32 bits.
        let o = dst.octets();
        eth.set_destination([0x33, 0x33, o[12], o[13], o[14], o[15]].into());
        eth.set_source(src_mac.into());
        eth.set_ethertype(EtherTypes::Ipv6);
    }
    {
        let mut ip = MutableIpv6Packet::new(&mut frame[ETH..]).expect("ipv6 buffer");
        ip.set_version(6);
        ip.set_payload_length(u16::try_from(payload.len()).expect("small"));
        ip.set_next_header(IpNextHeaderProtocol::new(112));
        ip.set_hop_limit(hop_limit);
        ip.set_source(src);
        ip.set_destination(dst);
        ip.set_payload(payload);
    }
    frame
}

/// Sends whole Ethernet frames from `host`'s eth0 (a send-only AF_PACKET socket).
pub fn send_frames(lab: &Lab, host: &str, frames: Vec<Vec<u8>>) {
    lab.in_ns(host, move || {
        use socket2::{Domain, Socket, Type};
        let s = Socket::new(Domain::PACKET, Type::RAW, None).expect("packet socket");
        let idx = nix::net::if_::if_nametoindex("eth0").expect("eth0 index");
        let mut storage = socket2::SockAddrStorage::zeroed();
        // SAFETY: sockaddr_ll fits in the zeroed, aligned sockaddr_storage;
        // the length below is exactly sockaddr_ll's (as src/net/garp.rs does).
        let ll = unsafe { storage.view_as::<libc::sockaddr_ll>() };
        ll.sll_family = libc::AF_PACKET as libc::sa_family_t;
        ll.sll_ifindex = i32::try_from(idx).expect("ifindex");
        // SAFETY: the storage holds an initialised sockaddr_ll of this length.
        let addr = unsafe {
            socket2::SockAddr::new(
                storage,
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        s.bind(&addr).expect("bind packet socket to eth0");
        for f in frames {
            s.send(&f).expect("send frame");
        }
    })
    .join()
    .expect("send frames");
}
