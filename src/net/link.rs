//! Interface lookup (index, MAC, up/down, MTU, primary IPv4 address) and a
//! watcher on the rtnetlink multicast groups that reports link and address changes.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures::channel::mpsc::UnboundedReceiver;
use futures::{StreamExt, TryStreamExt};
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressHeaderFlags, AddressMessage,
};
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkMessage};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use rtnetlink::packet_core::{NetlinkMessage, NetlinkPayload};
use rtnetlink::sys::AsyncSocket;
use rtnetlink::{Handle, MulticastGroup};

use super::vip::{addr_of, is_marked};
use super::{iface_label, netlink_errno, netlink_error, os_error, Capability, NetError, Result};

/// Resolves an interface name in the calling thread's network namespace.
pub fn ifindex(name: &str) -> Result<u32> {
    nix::net::if_::if_nametoindex(name).map_err(|e| match e {
        nix::errno::Errno::ENODEV => NetError::NoSuchInterface(name.to_string()),
        e => os_error(
            "look up",
            format!("interface {name}"),
            Capability::NetAdmin,
            e.into(),
        ),
    })
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub mac: [u8; 6],
    /// Administratively up and the kernel reports it running (operstate up or
    /// unknown, carrier present): only then can it carry VRRP.
    pub up: bool,
    pub mtu: u32,
}

impl Link {
    fn from_message(msg: &LinkMessage) -> Self {
        let mut link = Link {
            index: msg.header.index,
            name: String::new(),
            mac: [0; 6],
            up: is_up(msg),
            mtu: 0,
        };
        for attr in &msg.attributes {
            match attr {
                LinkAttribute::IfName(n) => link.name.clone_from(n),
                LinkAttribute::Address(a) if a.len() == 6 => link.mac.copy_from_slice(a),
                LinkAttribute::Mtu(m) => link.mtu = *m,
                _ => {}
            }
        }
        link
    }
}

// IFF_RUNNING is the kernel's own summary of "operstate up or unknown", so it
// already covers lost carrier on veth/physical links.
fn is_up(msg: &LinkMessage) -> bool {
    msg.header.flags.contains(LinkFlags::Up) && msg.header.flags.contains(LinkFlags::Running)
}

/// Looks up an interface by name; `None` if it does not exist (yet), so the
/// caller can wait for it instead of failing.
pub async fn get_link(handle: &Handle, name: &str) -> Result<Option<Link>> {
    let mut stream = handle.link().get().match_name(name.to_string()).execute();
    match stream.try_next().await {
        Ok(Some(msg)) => Ok(Some(Link::from_message(&msg))),
        Ok(None) => Ok(None),
        Err(e) if netlink_errno(&e) == Some(libc::ENODEV) => Ok(None),
        Err(e) => Err(netlink_error("look up", format!("interface {name}"), e)),
    }
}

/// The first primary (non-secondary) IPv4 address on the interface, skipping the
/// given VIPs and anything carrying our address mark: a VIP in a different subnet
/// is not "secondary" to the kernel, and must never become the VRRP source.
pub async fn primary_ipv4(
    handle: &Handle,
    ifindex: u32,
    exclude: &[Ipv4Addr],
) -> Result<Option<Ipv4Addr>> {
    let mut req = handle.address().get().set_link_index_filter(ifindex);
    req.message_mut().header.family = AddressFamily::Inet;
    let mut stream = req.execute();
    while let Some(msg) = stream
        .try_next()
        .await
        .map_err(|e| netlink_error("list addresses on", iface_label(ifindex), e))?
    {
        if is_secondary(&msg) || is_marked(&msg) {
            continue;
        }
        if let Some((IpAddr::V4(a), _)) = addr_of(&msg) {
            if !exclude.contains(&a) {
                return Ok(Some(a));
            }
        }
    }
    Ok(None)
}

/// The interface's IPv6 link-local address that VRRPv3 over IPv6 sends from
/// (RFC 5798 §5.1.2.1), once duplicate address detection has finished with
/// it: a tentative address cannot be a source yet, and one that failed DAD
/// never will. Our own link-local virtual addresses are skipped.
pub async fn link_local_ipv6(
    handle: &Handle,
    ifindex: u32,
    exclude: &[Ipv6Addr],
) -> Result<Option<Ipv6Addr>> {
    let mut req = handle.address().get().set_link_index_filter(ifindex);
    req.message_mut().header.family = AddressFamily::Inet6;
    let mut stream = req.execute();
    while let Some(msg) = stream
        .try_next()
        .await
        .map_err(|e| netlink_error("list addresses on", iface_label(ifindex), e))?
    {
        if is_marked(&msg) || !usable_v6(&msg) {
            continue;
        }
        if let Some((IpAddr::V6(a), _)) = addr_of(&msg) {
            if is_link_local_v6(a) && !exclude.contains(&a) {
                return Ok(Some(a));
            }
        }
    }
    Ok(None)
}

/// fe80::/10 (RFC 4291 §2.5.6).
pub fn is_link_local_v6(a: Ipv6Addr) -> bool {
    a.segments()[0] & 0xffc0 == 0xfe80
}

fn usable_v6(msg: &AddressMessage) -> bool {
    let bad = AddressFlags::Tentative | AddressFlags::Dadfailed;
    let header_bad = msg.header.flags.contains(AddressHeaderFlags::Tentative)
        || msg.header.flags.contains(AddressHeaderFlags::Dadfailed);
    !header_bad
        && !msg
            .attributes
            .iter()
            .any(|a| matches!(a, AddressAttribute::Flags(f) if f.intersects(bad)))
}

fn is_secondary(msg: &AddressMessage) -> bool {
    msg.header.flags.contains(AddressHeaderFlags::Secondary)
        || msg
            .attributes
            .iter()
            .any(|a| matches!(a, AddressAttribute::Flags(f) if f.contains(AddressFlags::Secondary)))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetEvent {
    LinkChanged {
        index: u32,
        name: String,
        up: bool,
    },
    /// The interface was deleted; its index will not come back (a re-created
    /// interface of the same name gets a new index via `LinkChanged`).
    LinkRemoved {
        index: u32,
        name: String,
    },
    AddressAdded {
        index: u32,
        addr: IpAddr,
        prefix: u8,
    },
    AddressRemoved {
        index: u32,
        addr: IpAddr,
        prefix: u8,
    },
    /// The kernel dropped notifications (socket buffer overrun): re-read the
    /// state you care about with `get_link`/`list_addrs`.
    Overrun,
}

type Notifications = UnboundedReceiver<(
    NetlinkMessage<RouteNetlinkMessage>,
    rtnetlink::sys::SocketAddr,
)>;

/// Subscribed to RTNLGRP_LINK, RTNLGRP_IPV4_IFADDR and RTNLGRP_IPV6_IFADDR in the
/// namespace of the thread that created it. It reports changes only: create it
/// first, then read the initial state, so nothing falls between the two.
pub struct LinkWatcher {
    rx: Notifications,
}

// Bursts (an interface flapping with many addresses) should not overrun the
// socket. The kernel caps the request at net.core.rmem_max; whatever is still
// lost is reported as `NetEvent::Overrun`.
const WATCH_RCVBUF: usize = 1 << 20;

impl LinkWatcher {
    /// Returns the watcher and the future that drives its netlink socket; spawn
    /// the future (`tokio::spawn`), otherwise no events arrive.
    pub fn new() -> Result<(LinkWatcher, impl Future<Output = ()> + Send + 'static)> {
        let groups = [
            MulticastGroup::Link,
            MulticastGroup::Ipv4Ifaddr,
            MulticastGroup::Ipv6Ifaddr,
        ];
        let (mut conn, _handle, rx) =
            rtnetlink::new_multicast_connection(&groups).map_err(|e| {
                os_error(
                    "subscribe to",
                    "rtnetlink link/address groups".into(),
                    Capability::NetAdmin,
                    e,
                )
            })?;
        conn.socket_mut()
            .socket_mut()
            .set_rx_buf_sz(WATCH_RCVBUF)
            .map_err(|e| {
                os_error(
                    "size",
                    "rtnetlink watch socket".into(),
                    Capability::NetAdmin,
                    e,
                )
            })?;
        Ok((LinkWatcher { rx }, conn))
    }

    /// The next event; `None` once the driver future has ended.
    pub async fn next(&mut self) -> Option<NetEvent> {
        loop {
            let (msg, _) = self.rx.next().await?;
            if let Some(ev) = event_of(msg) {
                return Some(ev);
            }
        }
    }
}

fn event_of(msg: NetlinkMessage<RouteNetlinkMessage>) -> Option<NetEvent> {
    match msg.payload {
        NetlinkPayload::Overrun(_) => Some(NetEvent::Overrun),
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(m)) => {
            let l = Link::from_message(&m);
            Some(NetEvent::LinkChanged {
                index: l.index,
                name: l.name,
                up: l.up,
            })
        }
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(m)) => {
            let l = Link::from_message(&m);
            Some(NetEvent::LinkRemoved {
                index: l.index,
                name: l.name,
            })
        }
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewAddress(m)) => {
            addr_of(&m).map(|(addr, prefix)| NetEvent::AddressAdded {
                index: m.header.index,
                addr,
                prefix,
            })
        }
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelAddress(m)) => {
            addr_of(&m).map(|(addr, prefix)| NetEvent::AddressRemoved {
                index: m.header.index,
                addr,
                prefix,
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::testns::{self, netlink, Lab};
    use std::time::Duration;

    async fn expect(w: &mut LinkWatcher, what: &str, pred: impl Fn(&NetEvent) -> bool) -> NetEvent {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            match tokio::time::timeout_at(deadline, w.next()).await {
                Ok(Some(ev)) if pred(&ev) => return ev,
                Ok(Some(_)) => continue,
                Ok(None) => panic!("watcher ended while waiting for {what}"),
                Err(_) => panic!("no event {what} within 5 s"),
            }
        }
    }

    #[test]
    fn get_link_and_primary_ipv4() {
        let Some(lab) = Lab::new(2) else { return };
        lab.veth(0, "a0", 1, "b0");
        lab.ip(0, "addr add 10.77.0.1/24 dev a0");
        lab.ip(0, "addr add 10.77.0.7/24 dev a0"); // secondary
        lab.ip(0, "addr add 10.99.0.100/32 dev a0"); // a VIP outside the subnet: primary to the kernel
        lab.ip(0, "link set a0 mtu 1400");
        let (ns, nsb) = (lab.ns(0).to_string(), lab.ns(1).to_string());
        lab.run(0, move || async move {
            let h = netlink();
            assert!(get_link(&h, "nope0").await.unwrap().is_none());
            assert!(matches!(
                ifindex("nope0"),
                Err(NetError::NoSuchInterface(_))
            ));
            let l = get_link(&h, "a0").await.unwrap().unwrap();
            assert_eq!(l.index, ifindex("a0").unwrap());
            assert_eq!(l.mtu, 1400);
            assert!(!l.up, "b0 is down so a0 has no carrier: {l:?}");
            let mac = testns::mac_of(&ns, "a0");
            assert_eq!(l.mac, mac);
            testns::ip(&format!("-n {ns} link set a0 up"));
            testns::ip(&format!("-n {nsb} link set b0 up"));
            let t = std::time::Instant::now();
            while !get_link(&h, "a0").await.unwrap().unwrap().up {
                assert!(
                    t.elapsed() < Duration::from_secs(5),
                    "a0 never came up with carrier"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let vip: Ipv4Addr = "10.99.0.100".parse().unwrap();
            // 10.99.0.100 was added after 10.77.0.1, so it is listed later; exclude anyway.
            assert_eq!(
                primary_ipv4(&h, l.index, &[vip]).await.unwrap(),
                Some("10.77.0.1".parse().unwrap())
            );
            testns::ip(&format!("-n {ns} addr del 10.77.0.1/24 dev a0"));
            // Deleting the primary promotes 10.77.0.7 (promote_secondaries) or removes it.
            let p = primary_ipv4(&h, l.index, &[vip]).await.unwrap();
            assert!(
                p.is_none() || p == Some("10.77.0.7".parse().unwrap()),
                "{p:?}"
            );
        });
    }

    #[test]
    fn watcher_reports_link_and_address_changes() {
        let Some(lab) = Lab::new(2) else { return };
        lab.veth(0, "a0", 1, "b0");
        lab.ip(1, "link set b0 up");
        lab.ip(0, "link set a0 up");
        let ns = lab.ns(0).to_string();
        lab.run(0, move || async move {
            let (mut w, drive) = LinkWatcher::new().unwrap();
            tokio::spawn(drive);
            let idx = ifindex("a0").unwrap();
            let ip = |args: &str| testns::ip(&format!("-n {ns} {args}"));

            ip("link set a0 down");
            expect(&mut w, "a0 down", |e| {
                matches!(e, NetEvent::LinkChanged { index, name, up: false } if *index == idx && name == "a0")
            })
            .await;
            ip("link set a0 up");
            expect(&mut w, "a0 up", |e| {
                matches!(e, NetEvent::LinkChanged { index, up: true, .. } if *index == idx)
            })
            .await;

            let v4: IpAddr = "10.77.0.9".parse().unwrap();
            ip("addr add 10.77.0.9/24 dev a0");
            let want = NetEvent::AddressAdded { index: idx, addr: v4, prefix: 24 };
            expect(&mut w, "v4 added", |e| *e == want).await;
            ip("addr del 10.77.0.9/24 dev a0");
            let want = NetEvent::AddressRemoved { index: idx, addr: v4, prefix: 24 };
            expect(&mut w, "v4 removed", |e| *e == want).await;

            let v6: IpAddr = "fd77::9".parse().unwrap();
            ip("addr add fd77::9/64 dev a0 nodad");
            let want = NetEvent::AddressAdded { index: idx, addr: v6, prefix: 64 };
            expect(&mut w, "v6 added", |e| *e == want).await;
            ip("addr del fd77::9/64 dev a0");
            let want = NetEvent::AddressRemoved { index: idx, addr: v6, prefix: 64 };
            expect(&mut w, "v6 removed", |e| *e == want).await;

            // Deleting a0 deletes its peer too; the watcher sees a0 go away.
            ip("link del a0");
            expect(&mut w, "a0 removed", |e| {
                matches!(e, NetEvent::LinkRemoved { index, name } if *index == idx && name == "a0")
            })
            .await;
        });
    }
}
