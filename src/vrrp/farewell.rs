//! The last word of a node that died: after a SIGKILL or a panic, systemd runs `tandem cleanup`
//! (ExecStopPost), which sends, for every instance whose addresses are still on its interface,
//! one priority-0 advertisement, as a graceful stop would (RFC 5798 §6.4.3), before it removes
//! the addresses. The backup then takes over after Skew_Time instead of waiting
//! Master_Down_Interval (≈ 3 × the advert interval).
//!
//! Holding a VIP is the evidence that this node was master: a backup never has them (and a
//! stale copy is removed at start), so a node that was backup sends nothing and cannot make a
//! healthy master's peers hold an election. The decision is pure ([`farewell_advert`]); the
//! sending reuses the daemon's encoder and raw socket.

use std::net::{IpAddr, Ipv4Addr};

use super::packet::{self, Advert, ChecksumForm, Version, VRRP_GROUP_V4, VRRP_GROUP_V6};
use crate::config::{ChecksumMode, VrrpConfig};
use crate::net::{self, VrrpSocket};

/// The resignation to send for `cfg`, given the addresses still on its interface, or `None`
/// when none of its VIPs is there (the node was not master: stay silent).
pub fn farewell_advert(cfg: &VrrpConfig, on_interface: &[IpAddr]) -> Option<Advert> {
    let held = cfg
        .virtual_ips
        .iter()
        .any(|v| on_interface.contains(&v.addr));
    held.then(|| Advert {
        version: cfg.version,
        vrid: cfg.vrid,
        priority: 0,
        interval_cs: crate::config::interval_centiseconds(cfg.version, cfg.advert_interval),
        addrs: packet::advert_order(cfg.virtual_ips.iter().map(|v| v.addr)),
    })
}

/// Where the instance sends its adverts: the multicast group, or its unicast peers of the
/// advert's family. Shared with the running instance, so a farewell goes where adverts went.
pub(crate) fn destinations(cfg: &VrrpConfig, ipv6: bool) -> Vec<IpAddr> {
    if ipv6 {
        // IPv6 instances always use ff02::12 (RFC 5798 §5.1.2.2).
        vec![IpAddr::V6(VRRP_GROUP_V6)]
    } else if cfg.unicast_peers.is_empty() {
        vec![IpAddr::V4(VRRP_GROUP_V4)]
    } else {
        cfg.unicast_peers
            .iter()
            .copied()
            .filter(|p| p.is_ipv6() == ipv6)
            .collect()
    }
}

/// The checksum variant the instance's adverts use (v2 has no pseudo-header).
pub(crate) fn checksum_form(cfg: &VrrpConfig) -> ChecksumForm {
    match (cfg.version, cfg.checksum) {
        (Version::V2, _) | (_, ChecksumMode::Plain) => ChecksumForm::Plain,
        (_, ChecksumMode::PseudoHeader) => ChecksumForm::PseudoHeader,
    }
}

/// Sends the farewell of `cfg` on `link` if this node still holds one of its VIPs. Returns the
/// number of adverts sent (0: not master, nothing to say). Must run inside a tokio runtime.
pub async fn send_farewell(
    nl: &rtnetlink::Handle,
    cfg: &VrrpConfig,
    link: &net::Link,
) -> net::Result<usize> {
    let on_interface: Vec<IpAddr> = net::list_addrs(nl, link.index)
        .await?
        .into_iter()
        .map(|(a, _)| a)
        .collect();
    let Some(adv) = farewell_advert(cfg, &on_interface) else {
        return Ok(0);
    };
    if adv.addrs.iter().any(IpAddr::is_ipv6) {
        // The IPv6 transport is not wired here yet; the backup falls back to
        // Master_Down_Interval for such an instance.
        return Ok(0);
    }
    let vips: Vec<Ipv4Addr> = adv
        .addrs
        .iter()
        .filter_map(|a| match a {
            IpAddr::V4(a) => Some(*a),
            IpAddr::V6(_) => None,
        })
        .collect();
    // The same source the daemon used, so the backup recognises its master.
    let src = match cfg.unicast_source {
        Some(IpAddr::V4(a)) => a,
        _ => match net::primary_ipv4(nl, link.index, &vips).await? {
            Some(a) => a,
            None => return Ok(0),
        },
    };
    let dsts = destinations(cfg, false);
    let sock = VrrpSocket::open(&link.name, link.index, src, cfg.unicast_peers.is_empty())?;
    let mut sent = 0;
    for dst in dsts {
        let IpAddr::V4(dst4) = dst else { continue };
        let bytes = packet::encode(&adv, IpAddr::V4(src), dst, checksum_form(cfg));
        sock.send_to(&bytes, dst4).await?;
        sent += 1;
    }
    Ok(sent)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::VirtualIp;
    use std::time::Duration;

    fn cfg() -> VrrpConfig {
        let text = "[[vrrp]]\nname = \"vi\"\ninterface = \"eth0\"\nvrid = 51\npriority = 150\nadvert_interval = \"100ms\"\nvirtual_ips = [\"192.0.2.10/24\", \"192.0.2.11/24\"]\n";
        crate::config::parse(std::path::Path::new("t.toml"), text)
            .expect("config")
            .vrrp
            .remove(0)
    }

    #[test]
    fn a_node_holding_a_vip_resigns_and_a_backup_stays_silent() {
        let c = cfg();
        let vip: IpAddr = "192.0.2.11".parse().unwrap();
        let primary: IpAddr = "192.0.2.1".parse().unwrap();
        assert_eq!(
            farewell_advert(&c, &[primary]),
            None,
            "backup: nothing to say"
        );
        assert_eq!(farewell_advert(&c, &[]), None);
        let adv = farewell_advert(&c, &[primary, vip]).expect("master resigns");
        assert_eq!(adv.priority, 0);
        assert_eq!(adv.vrid, 51);
        assert_eq!(adv.version, Version::V3);
        assert_eq!(adv.interval_cs, 10);
        assert_eq!(adv.addrs.len(), 2, "every VIP of the instance is listed");
        // What the backup decodes: a resignation of this instance.
        let src: IpAddr = "192.0.2.1".parse().unwrap();
        let dst = IpAddr::V4(VRRP_GROUP_V4);
        let bytes = packet::encode(&adv, src, dst, checksum_form(&c));
        let (back, _) = packet::decode(&bytes, src, dst).expect("decodes");
        assert_eq!(back, adv);
    }

    #[test]
    fn v2_and_unicast_peers() {
        let mut c = cfg();
        c.version = Version::V2;
        c.advert_interval = Duration::from_secs(1);
        c.unicast_peers = vec!["192.0.2.2".parse().unwrap(), "2001:db8::2".parse().unwrap()];
        c.virtual_ips = vec![VirtualIp {
            addr: "192.0.2.10".parse().unwrap(),
            prefix: 24,
        }];
        let adv = farewell_advert(&c, &["192.0.2.10".parse().unwrap()]).unwrap();
        assert_eq!((adv.version, adv.interval_cs), (Version::V2, 100));
        assert_eq!(checksum_form(&c), ChecksumForm::Plain);
        assert_eq!(
            destinations(&c, false),
            vec!["192.0.2.2".parse::<IpAddr>().unwrap()]
        );
        // IPv6 adverts always go to ff02::12, as the running instance sends them.
        assert_eq!(destinations(&c, true), vec![IpAddr::V6(VRRP_GROUP_V6)]);
        c.unicast_peers.clear();
        assert_eq!(destinations(&c, false), vec![IpAddr::V4(VRRP_GROUP_V4)]);
    }
}
