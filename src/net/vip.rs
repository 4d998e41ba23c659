//! Adding, renewing, removing and listing virtual IP addresses over rtnetlink.
//!
//! Our addresses carry IFA_PROTO = [`TANDEM_ADDR_PROTO`] (kernel ≥ 5.18, IPv4 and
//! IPv6 alike, no interface-name length limit unlike IFA_LABEL), so a restarted
//! daemon can find and clean up what a previous instance left behind.
//! With a lifetime the address is self-fencing: the kernel removes it when the
//! daemon stops renewing it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use futures::TryStreamExt;
use netlink_packet_route::address::{
    AddressAttribute, AddressFlags, AddressMessage, AddressProtocol, CacheInfo,
};
use netlink_packet_route::AddressFamily;
use rtnetlink::{AddressMessageBuilder, Handle};

use super::{iface_label, netlink_errno, netlink_error, Result};

/// IFA_PROTO value marking addresses tandem added (0–3 are reserved for
/// unspec/kernel_lo/kernel_ra/kernel_ll; 116 is ASCII 't').
pub const TANDEM_ADDR_PROTO: u8 = 116;

fn target(addr: IpAddr, prefix: u8, ifindex: u32) -> String {
    format!("{addr}/{prefix} on {}", iface_label(ifindex))
}

fn message(ifindex: u32, addr: IpAddr, prefix: u8) -> AddressMessage {
    match addr {
        IpAddr::V4(a) => AddressMessageBuilder::<Ipv4Addr>::new()
            .index(ifindex)
            .address(a, prefix)
            .build(),
        IpAddr::V6(a) => AddressMessageBuilder::<Ipv6Addr>::new()
            .index(ifindex)
            .address(a, prefix)
            .build(),
    }
}

/// Adds the address, or updates it in place if present (NLM_F_REPLACE), so this
/// is also the renewal call. `lifetime: Some(d)` sets the valid lifetime to d
/// (rounded up to whole seconds, at least 1); `None` makes it permanent — also
/// when replacing an address that had a lifetime. IPv4 VIPs are preferred as long
/// as they are valid, IPv6 VIPs are deprecated from the start (never a source
/// address for connections tandem opens). IPv6 VIPs skip DAD: a backup
/// must not be left with a "tentative" or "dadfailed" address after a brief
/// double-master.
pub async fn add_vip(
    handle: &Handle,
    ifindex: u32,
    addr: IpAddr,
    prefix: u8,
    lifetime: Option<Duration>,
) -> Result<()> {
    let mut req = handle.address().add(ifindex, addr, prefix).replace();
    let msg = req.message_mut();
    msg.attributes
        .push(AddressAttribute::Protocol(AddressProtocol::from(
            TANDEM_ADDR_PROTO,
        )));
    if addr.is_ipv6() {
        msg.attributes
            .push(AddressAttribute::Flags(AddressFlags::Nodad));
    }
    let valid = lifetime.map(lifetime_secs);
    // An IPv6 VIP is added deprecated (preferred lifetime 0): it receives and answers like
    // any address, but source address selection (RFC 6724 rule 3) never picks it for a
    // connection this node opens. Otherwise the VIP, in the same /64 as the backends, would
    // become the source of upstream connections, and every request in flight on one when
    // the VIP moves to the peer would hang: the backend's answer goes to the new master.
    // IPv4 needs no such care: a VIP is a secondary address, never the preferred source.
    let preferred = if addr.is_ipv6() { Some(0) } else { valid };
    if valid.is_some() || preferred.is_some() {
        let mut ci = CacheInfo::default();
        ci.ifa_valid = valid.unwrap_or(u32::MAX);
        ci.ifa_preferred = preferred.unwrap_or(u32::MAX);
        msg.attributes.push(AddressAttribute::CacheInfo(ci));
    }
    req.execute()
        .await
        .map_err(|e| netlink_error("add address", target(addr, prefix, ifindex), e))
}

// u32::MAX means "forever" to the kernel, so cap below it; 0 would be rejected.
fn lifetime_secs(d: Duration) -> u32 {
    let s = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    s.clamp(1, u64::from(u32::MAX - 1)) as u32
}

/// Removes the address; absent (or already expired) is not an error.
pub async fn del_vip(handle: &Handle, ifindex: u32, addr: IpAddr, prefix: u8) -> Result<()> {
    match handle
        .address()
        .del(message(ifindex, addr, prefix))
        .execute()
        .await
    {
        Ok(()) => Ok(()),
        Err(e) if netlink_errno(&e) == Some(libc::EADDRNOTAVAIL) => Ok(()),
        Err(e) => Err(netlink_error(
            "delete address",
            target(addr, prefix, ifindex),
            e,
        )),
    }
}

pub async fn has_vip(handle: &Handle, ifindex: u32, addr: IpAddr) -> Result<bool> {
    Ok(dump(handle, ifindex, Some(addr))
        .await?
        .iter()
        .any(|m| addr_of(m).is_some_and(|(a, _)| a == addr)))
}

/// All addresses (both families) on the interface, ours or not.
pub async fn list_addrs(handle: &Handle, ifindex: u32) -> Result<Vec<(IpAddr, u8)>> {
    Ok(dump(handle, ifindex, None)
        .await?
        .iter()
        .filter_map(addr_of)
        .collect())
}

/// The addresses on the interface that carry our IFA_PROTO mark: what a
/// previous instance of the daemon left behind.
pub async fn list_marked_vips(handle: &Handle, ifindex: u32) -> Result<Vec<(IpAddr, u8)>> {
    Ok(dump(handle, ifindex, None)
        .await?
        .iter()
        .filter(|m| is_marked(m))
        .filter_map(addr_of)
        .collect())
}

async fn dump(handle: &Handle, ifindex: u32, addr: Option<IpAddr>) -> Result<Vec<AddressMessage>> {
    let mut req = handle.address().get().set_link_index_filter(ifindex);
    if let Some(a) = addr {
        // Ask only for the right family: halves the dump on dual-stack hosts.
        req.message_mut().header.family = if a.is_ipv4() {
            AddressFamily::Inet
        } else {
            AddressFamily::Inet6
        };
        req = req.set_address_filter(a);
    }
    req.execute()
        .try_collect()
        .await
        .map_err(|e| netlink_error("list addresses on", iface_label(ifindex), e))
}

/// The interface's own address and prefix. IFA_LOCAL is the local side for IPv4
/// (IFA_ADDRESS is the peer on point-to-point links); IPv6 sends only IFA_ADDRESS.
pub(crate) fn addr_of(msg: &AddressMessage) -> Option<(IpAddr, u8)> {
    let local = msg.attributes.iter().find_map(|a| match a {
        AddressAttribute::Local(a) => Some(*a),
        _ => None,
    });
    let address = || {
        msg.attributes.iter().find_map(|a| match a {
            AddressAttribute::Address(a) => Some(*a),
            _ => None,
        })
    };
    local.or_else(address).map(|a| (a, msg.header.prefix_len))
}

pub(crate) fn is_marked(msg: &AddressMessage) -> bool {
    msg.attributes
        .iter()
        .any(|a| matches!(a, AddressAttribute::Protocol(p) if u8::from(*p) == TANDEM_ADDR_PROTO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::link::ifindex;
    use crate::net::testns::{netlink, Lab};
    use std::time::Instant;

    /// The kernel's view of one address: (valid_lft, preferred_lft, flags, marked).
    async fn kernel_view(
        h: &Handle,
        idx: u32,
        addr: IpAddr,
    ) -> Option<(u32, u32, AddressFlags, bool)> {
        let msgs = dump(h, idx, Some(addr)).await.unwrap();
        let m = msgs.first()?;
        let (mut valid, mut pref, mut flags) = (0, 0, AddressFlags::empty());
        for a in &m.attributes {
            match a {
                AddressAttribute::CacheInfo(c) => (valid, pref) = (c.ifa_valid, c.ifa_preferred),
                AddressAttribute::Flags(f) => flags = *f,
                _ => {}
            }
        }
        Some((valid, pref, flags, is_marked(m)))
    }

    #[test]
    fn lifetime_rounding() {
        assert_eq!(lifetime_secs(Duration::from_millis(1)), 1);
        assert_eq!(lifetime_secs(Duration::ZERO), 1);
        assert_eq!(lifetime_secs(Duration::from_millis(2500)), 3);
        assert_eq!(lifetime_secs(Duration::from_secs(3)), 3);
        assert_eq!(lifetime_secs(Duration::from_secs(u64::MAX)), u32::MAX - 1);
    }

    #[test]
    fn add_has_del_round_trip() {
        let Some(lab) = Lab::new(2) else { return };
        lab.veth(0, "a0", 1, "b0");
        lab.ip(1, "link set b0 up");
        lab.ip(0, "link set a0 up");
        lab.ip(0, "addr add 10.77.0.1/24 dev a0");
        lab.run(0, || async {
            let h = netlink();
            let idx = ifindex("a0").unwrap();
            for (vip, prefix) in [("10.77.0.100", 24u8), ("fd77::100", 64)] {
                let vip: IpAddr = vip.parse().unwrap();
                assert!(!has_vip(&h, idx, vip).await.unwrap());
                del_vip(&h, idx, vip, prefix)
                    .await
                    .expect("deleting an absent VIP is Ok");

                add_vip(&h, idx, vip, prefix, None).await.unwrap();
                add_vip(&h, idx, vip, prefix, None)
                    .await
                    .expect("second add is idempotent");
                assert!(has_vip(&h, idx, vip).await.unwrap());
                let n = list_addrs(&h, idx)
                    .await
                    .unwrap()
                    .iter()
                    .filter(|(a, _)| *a == vip)
                    .count();
                assert_eq!(n, 1, "exactly one copy after two adds");
                assert!(list_marked_vips(&h, idx)
                    .await
                    .unwrap()
                    .contains(&(vip, prefix)));

                let (valid, preferred, flags, marked) = kernel_view(&h, idx, vip).await.unwrap();
                assert_eq!(valid, u32::MAX, "no lifetime = forever");
                assert!(marked, "IFA_PROTO mark stored by the kernel");
                if vip.is_ipv6() {
                    assert!(flags.contains(AddressFlags::Nodad), "{flags:?}");
                    assert!(!flags.contains(AddressFlags::Tentative), "{flags:?}");
                    assert_eq!(preferred, 0, "an IPv6 VIP is never a source address");
                } else {
                    assert_eq!(preferred, u32::MAX, "an IPv4 VIP stays preferred");
                }

                del_vip(&h, idx, vip, prefix).await.unwrap();
                assert!(!has_vip(&h, idx, vip).await.unwrap());
                del_vip(&h, idx, vip, prefix)
                    .await
                    .expect("second delete is Ok");
            }
            // Addresses added by others are listed but not marked as ours.
            let all = list_addrs(&h, idx).await.unwrap();
            assert!(all.contains(&("10.77.0.1".parse().unwrap(), 24)), "{all:?}");
            assert!(list_marked_vips(&h, idx).await.unwrap().is_empty());
            // Replace rewrites IFA_PROTO in place: an address someone else added
            // becomes ours (and a candidate for our cleanup) once we add it too.
            let foreign: IpAddr = "10.77.0.1".parse().unwrap();
            add_vip(&h, idx, foreign, 24, None).await.unwrap();
            assert!(kernel_view(&h, idx, foreign).await.unwrap().3);
        });
    }

    #[test]
    fn add_on_missing_interface_names_it() {
        let Some(lab) = Lab::new(1) else { return };
        lab.run(0, || async {
            let h = netlink();
            let e = add_vip(&h, 4242, "10.1.2.3".parse().unwrap(), 32, None)
                .await
                .unwrap_err();
            let s = e.to_string();
            assert!(s.contains("10.1.2.3/32") && s.contains("4242"), "{s}");
        });
    }

    /// Polls until the address is gone; returns when (from `t0`) or None if still there at `limit`.
    async fn gone_after(
        h: &Handle,
        idx: u32,
        vip: IpAddr,
        t0: Instant,
        limit: Duration,
    ) -> Option<Duration> {
        while t0.elapsed() < limit {
            if !has_vip(h, idx, vip).await.unwrap() {
                return Some(t0.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }

    #[test]
    fn lifetime_expires_and_renewal_extends_it() {
        let Some(lab) = Lab::new(1) else { return };
        lab.ip(0, "link add a0 type veth peer name b0");
        lab.run(0, || async {
            let h = netlink();
            let idx = ifindex("a0").unwrap();
            for (vip, prefix) in [("10.77.0.100", 24u8), ("fd77::100", 64)] {
                let vip: IpAddr = vip.parse().unwrap();

                // Expiry without renewal.
                let t0 = Instant::now();
                add_vip(&h, idx, vip, prefix, Some(Duration::from_secs(2)))
                    .await
                    .unwrap();
                let (valid, pref, _, _) = kernel_view(&h, idx, vip).await.unwrap();
                let want_pref = if vip.is_ipv6() { 0 } else { 2 };
                assert_eq!((valid, pref), (2, want_pref));
                let gone = gone_after(&h, idx, vip, t0, Duration::from_secs(4)).await;
                eprintln!("{vip}: lifetime 2 s, kernel removed it after {gone:?}");
                let gone = gone.expect("address with 2 s lifetime still present after 4 s");
                assert!(
                    gone >= Duration::from_millis(1900),
                    "removed too early: {gone:?}"
                );
                assert!(
                    gone <= Duration::from_millis(3200),
                    "removed late: {gone:?}"
                );

                // Renewal before expiry keeps it past the original deadline.
                let t0 = Instant::now();
                add_vip(&h, idx, vip, prefix, Some(Duration::from_secs(2)))
                    .await
                    .unwrap();
                tokio::time::sleep(Duration::from_millis(1200)).await;
                add_vip(&h, idx, vip, prefix, Some(Duration::from_secs(2)))
                    .await
                    .unwrap();
                let (valid, _, _, marked) = kernel_view(&h, idx, vip).await.unwrap();
                assert_eq!(valid, 2, "replace resets the remaining lifetime");
                assert!(marked);
                tokio::time::sleep_until((t0 + Duration::from_millis(2600)).into()).await;
                assert!(
                    has_vip(&h, idx, vip).await.unwrap(),
                    "renewed address expired at the original deadline"
                );
                let gone = gone_after(&h, idx, vip, t0, Duration::from_secs(5)).await;
                eprintln!("{vip}: renewed at 1.2 s with 2 s, kernel removed it after {gone:?}");
                let gone = gone.expect("renewed address never expired");
                assert!(gone >= Duration::from_millis(3100), "{gone:?}");

                // Replacing without a lifetime makes a dynamic address permanent again.
                add_vip(&h, idx, vip, prefix, Some(Duration::from_secs(2)))
                    .await
                    .unwrap();
                add_vip(&h, idx, vip, prefix, None).await.unwrap();
                let (valid, _, _, _) = kernel_view(&h, idx, vip).await.unwrap();
                assert_eq!(valid, u32::MAX);
                del_vip(&h, idx, vip, prefix).await.unwrap();
            }
        });
    }
}
