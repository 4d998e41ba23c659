//! `[[vrrp]]`: one VRRP instance (RFC 5798) per family, its timers, tracking and hooks,
//! and the checks across instances (sync groups, VRIDs on an interface).

// The model types, `raw` and the shared Validator helpers all live in the parent.
use super::*;

/// A node that restarts waits this long as backup before it takes the
/// address back from a lower-priority master, so a crash-looping node
/// (systemd restarts it every few seconds) never keeps stealing the VIP.
pub const DEFAULT_PREEMPT_DELAY: Duration = Duration::from_secs(30);

impl Validator<'_> {
    pub(super) fn vrrp(&mut self, i: usize, v: raw::Vrrp, pools: &HashSet<&str>) -> VrrpConfig {
        let at = |k: &str| format!("vrrp[{i}].{k}");
        self.name(&at("name"), &v.name);
        if v.interface.is_empty() || v.interface.len() > 15 || v.interface.contains(['/', ' ']) {
            self.err(
                &at("interface"),
                format!("{:?} is not a valid interface name", v.interface),
            );
        }
        let vrid = self.int(&at("vrid"), Some(v.vrid), defaults::VRRP_VRID) as u8;
        let priority = self.int(&at("priority"), v.priority, defaults::VRRP_PRIORITY) as u8;
        let version = match v.version {
            None | Some(3) => VrrpVersion::V3,
            Some(2) => VrrpVersion::V2,
            Some(other) => {
                self.err(
                    &at("version"),
                    format!(
                        "VRRP version {other} is not supported; use 3 (RFC 5798) or 2 (RFC 3768)"
                    ),
                );
                VrrpVersion::V3
            }
        };
        let default_interval = Duration::from_secs(1);
        let advert_interval = self.duration(
            &at("advert_interval"),
            v.advert_interval.as_deref(),
            default_interval,
        );
        if version == VrrpVersion::V3 {
            // RFC 5798 §5.2.7: 12 bits of centiseconds.
            let cs = advert_interval.as_millis();
            if advert_interval.as_micros() % 10_000 != 0 || !(1..=4095).contains(&(cs / 10)) {
                self.err(&at("advert_interval"), "must be a multiple of 10ms between 10ms and 40.95s (VRRPv3 counts centiseconds)");
            }
        } else if advert_interval.subsec_nanos() != 0
            || !(1..=255).contains(&advert_interval.as_secs())
        {
            self.err(
                &at("advert_interval"),
                "VRRPv2 counts whole seconds: use 1s..=255s",
            );
        }
        if v.virtual_ips.is_empty() {
            self.err(&at("virtual_ips"), "at least one virtual IP is needed");
        }
        let mut virtual_ips = Vec::new();
        for (k, s) in v.virtual_ips.iter().enumerate() {
            let p = format!("vrrp[{i}].virtual_ips[{k}]");
            match parse_cidr(s) {
                Ok(vip)
                    if virtual_ips
                        .first()
                        .is_some_and(|f: &VirtualIp| f.addr.is_ipv6() != vip.addr.is_ipv6()) =>
                {
                    let first = virtual_ips.first().map(|f| f.addr).unwrap_or(vip.addr);
                    let (this, other) = if vip.addr.is_ipv6() {
                        ("IPv6", "IPv4")
                    } else {
                        ("IPv4", "IPv6")
                    };
                    self.err(
                        &p,
                        format!(
                            "{vip} is {this} but the first virtual IP of this instance ({first}) is {other}: one address family per instance; put the {this} addresses in a [[vrrp]] instance of their own and give both the same sync_group"
                        ),
                    )
                }
                Ok(vip) if vip.addr.is_ipv6() && version == VrrpVersion::V2 => self.err(
                    &p,
                    format!("{vip} is an IPv6 address but VRRPv2 (RFC 3768) is IPv4 only; use version = 3"),
                ),
                Ok(vip) if vip.addr.is_ipv6() && vip.addr.is_multicast() => {
                    self.err(&p, format!("{vip} is a multicast address"))
                }
                Ok(vip) => {
                    if virtual_ips.contains(&vip) {
                        self.err(&p, format!("{vip} is listed twice"));
                    }
                    virtual_ips.push(vip);
                }
                Err(e) => self.err(&p, e),
            }
        }
        let checksum = match v.checksum.as_deref() {
            None | Some("pseudo_header") => ChecksumMode::PseudoHeader,
            Some("plain") => ChecksumMode::Plain,
            Some(other) => {
                self.err(&at("checksum"), format!("unknown checksum form {other:?}; expected pseudo_header (keepalived) or plain (RFC 9568)"));
                ChecksumMode::PseudoHeader
            }
        };
        let ipv6 = virtual_ips.first().is_some_and(|f| f.addr.is_ipv6());
        if v.checksum.is_some() && ipv6 {
            self.err(
                &at("checksum"),
                "VRRPv3 over IPv6 has a single checksum form (the IPv6 pseudo-header, RFC 5798 §5.2.8); remove this key",
            );
        }
        if ipv6 && v.unicast_peers.is_some() {
            self.err(
                &at("unicast_peers"),
                "unicast VRRP is IPv4 only for now; an IPv6 instance advertises to ff02::12 from its link-local address",
            );
        }
        if v.checksum.is_some() && version == VrrpVersion::V2 {
            self.err(
                &at("checksum"),
                "VRRPv2 has a single checksum form; remove this key",
            );
        }
        let mut unicast_peers = Vec::new();
        if let Some(peers) = &v.unicast_peers {
            if peers.is_empty() {
                self.err(
                    &at("unicast_peers"),
                    "an empty peer list would elect nobody; remove the key for multicast",
                );
            }
            for (k, s) in peers.iter().enumerate() {
                match s.parse::<IpAddr>() {
                    Ok(ip) if ip.is_ipv4() => unicast_peers.push(ip),
                    Ok(_) => self.err(
                        &format!("vrrp[{i}].unicast_peers[{k}]"),
                        "IPv6 peers are not supported yet",
                    ),
                    Err(_) => self.err(
                        &format!("vrrp[{i}].unicast_peers[{k}]"),
                        format!("{s:?} is not an IP address"),
                    ),
                }
            }
        }
        let unicast_source = v
            .unicast_source
            .as_deref()
            .and_then(|s| match s.parse::<IpAddr>() {
                Ok(ip) => Some(ip),
                Err(_) => {
                    self.err(&at("unicast_source"), format!("{s:?} is not an IP address"));
                    None
                }
            });
        if unicast_source.is_some() && v.unicast_peers.is_none() {
            self.err(&at("unicast_source"), "only meaningful with unicast_peers");
        }
        let mut track = Vec::new();
        for (k, t) in v.track.iter().enumerate() {
            let p = format!("vrrp[{i}].track[{k}]");
            if !pools.contains(t.pool.as_str()) {
                self.err(
                    &format!("{p}.pool"),
                    format!("no pool named {:?} is defined", t.pool),
                );
            }
            let weight = t.weight.map(|w| {
                if w == 0 || !(-254..=254).contains(&w) {
                    self.err(&format!("{p}.weight"), format!("{w} is out of range -254..=254 (and not 0); omit weight to go to FAULT instead"));
                }
                w as i32
            });
            track.push(TrackPool {
                pool: t.pool.clone(),
                weight,
            });
        }
        for (k, name) in v.track_interfaces.iter().enumerate() {
            if name.is_empty() || name.len() > 15 {
                self.err(
                    &format!("vrrp[{i}].track_interfaces[{k}]"),
                    format!("{name:?} is not a valid interface name"),
                );
            }
        }
        let notify = v.notify.as_ref().map(PathBuf::from);
        if let Some(n) = &notify {
            if !n.is_absolute() {
                self.err(&at("notify"), "must be an absolute path to an executable");
            }
        }
        let garp_interval = self.duration(
            &at("garp_interval"),
            v.garp_interval.as_deref(),
            defaults::VRRP_GARP_INTERVAL,
        );
        let vip_lifetime = self.duration(
            &at("vip_lifetime"),
            v.vip_lifetime.as_deref(),
            defaults::VRRP_VIP_LIFETIME,
        );
        if !vip_lifetime.is_zero()
            && (vip_lifetime < Duration::from_secs(2) || vip_lifetime.subsec_nanos() != 0)
        {
            self.err(
                &at("vip_lifetime"),
                "must be 0 (permanent) or whole seconds, at least 2s (the kernel counts seconds)",
            );
        }
        let handover_timeout = self.duration(
            &at("handover_timeout"),
            v.handover_timeout.as_deref(),
            defaults::VRRP_HANDOVER_TIMEOUT,
        );
        if handover_timeout.is_zero() {
            self.err(&at("handover_timeout"), "must be greater than 0");
        }
        VrrpConfig {
            name: v.name,
            interface: v.interface,
            vrid,
            priority,
            advert_interval,
            virtual_ips,
            preempt: v.preempt.unwrap_or(true),
            preempt_delay: self.duration(
                &at("preempt_delay"),
                v.preempt_delay.as_deref(),
                DEFAULT_PREEMPT_DELAY,
            ),
            version,
            checksum,
            unicast_peers,
            unicast_source,
            track,
            track_interfaces: v.track_interfaces,
            notify,
            notify_timeout: self.duration(
                &at("notify_timeout"),
                v.notify_timeout.as_deref(),
                defaults::VRRP_NOTIFY_TIMEOUT,
            ),
            sync_group: v.sync_group,
            garp_count: self.int(&at("garp_count"), v.garp_count, defaults::VRRP_GARP_COUNT) as u32,
            garp_interval,
            garp_refresh: self.duration(
                &at("garp_refresh"),
                v.garp_refresh.as_deref(),
                defaults::VRRP_GARP_REFRESH,
            ),
            vip_lifetime,
            handover_timeout,
        }
    }

    pub(super) fn vrrp_cross_checks(&mut self, all: &[(usize, VrrpConfig)]) {
        self.unique_names("vrrp", all.iter().map(|(i, v)| (*i, v.name.as_str())));
        let mut ids = HashSet::new();
        let mut vips = std::collections::HashMap::new();
        for (i, v) in all {
            // RFC 5798 §7.3: a VRID is unique per interface and address
            // family (the virtual MACs differ), so an IPv4 and an IPv6
            // instance may share one, as keepalived set-ups often do.
            if !ids.insert((v.interface.as_str(), v.vrid, v.is_ipv6())) {
                self.err(
                    &format!("vrrp[{i}].vrid"),
                    format!(
                        "VRID {} is already used on {} by another {} instance",
                        v.vrid,
                        v.interface,
                        if v.is_ipv6() { "IPv6" } else { "IPv4" }
                    ),
                );
            }
            for (k, vip) in v.virtual_ips.iter().enumerate() {
                if let Some(other) = vips.insert(vip.addr, v.name.clone()) {
                    self.err(
                        &format!("vrrp[{i}].virtual_ips[{k}]"),
                        format!("{} is also a virtual IP of instance {other:?}", vip.addr),
                    );
                }
            }
        }
    }
}

/// `"192.0.2.10/24"`; a bare address means a host route (/32).
pub fn parse_cidr(s: &str) -> Result<VirtualIp, String> {
    let (a, p) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let addr: IpAddr = a
        .parse()
        .map_err(|_| format!("{s:?} is not an address: write e.g. \"192.0.2.10/24\""))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match p {
        None => max,
        Some(p) => p
            .parse::<u8>()
            .ok()
            .filter(|p| *p <= max)
            .ok_or_else(|| format!("{s:?}: prefix length must be 0..={max}"))?,
    };
    Ok(VirtualIp { addr, prefix })
}
