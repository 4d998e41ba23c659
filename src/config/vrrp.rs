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
        self.interface_name(&at("interface"), &v.interface);
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
                Ok(vip) if vip.addr.is_multicast() => {
                    self.err(&p, format!("{vip} is a multicast address"))
                }
                Ok(vip) => {
                    if virtual_ips.iter().any(|x: &VirtualIp| x.addr == vip.addr) {
                        self.err(&p, format!("{} is listed twice", vip.addr));
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
        if let (Some(src), Some(peer)) = (unicast_source, unicast_peers.first()) {
            if peer.is_ipv6() != src.is_ipv6() {
                self.err(
                    &at("unicast_source"),
                    format!("{src} is not of the unicast_peers' address family"),
                );
            }
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
            self.interface_name(&format!("vrrp[{i}].track_interfaces[{k}]"), name);
        }
        if let Some(g) = &v.sync_group {
            self.name(&at("sync_group"), g);
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
                    if other == v.name {
                        continue;
                    }
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

#[cfg(test)]
mod tests {
    use super::super::global::tests::{check, errors, ok, Row, POOL};
    use super::*;

    /// An instance `v1` on eth0, VRID 1 (lines 1-4), `keys` from line 5, then one IPv4
    /// virtual IP; the pool `web` comes last so that line numbers start at the instance.
    fn v(keys: &str) -> String {
        format!("[[vrrp]]\nname = \"v1\"\ninterface = \"eth0\"\nvrid = 1\n{keys}\nvirtual_ips = [\"192.0.2.10/24\"]\n{POOL}")
    }

    /// Like [`v`] without the virtual IP: `keys` must set them.
    fn vx(keys: &str) -> String {
        format!("[[vrrp]]\nname = \"v1\"\ninterface = \"eth0\"\nvrid = 1\n{keys}\n{POOL}")
    }

    /// One five-line instance: `[[vrrp]]`, name, interface, vrid, virtual_ips.
    fn inst(name: &str, interface: &str, vrid: u32, vip: &str) -> String {
        format!("[[vrrp]]\nname = \"{name}\"\ninterface = \"{interface}\"\nvrid = {vrid}\nvirtual_ips = [\"{vip}\"]\n")
    }

    #[test]
    fn vrrp_errors() {
        let rows: Vec<Row> = vec![
            // Name, interface, VRID, priority, version.
            (inst("v 1", "eth0", 1, "192.0.2.10"), "vrrp[0].name", "invalid name \"v 1\"", 2),
            (inst("v1", "", 1, "192.0.2.10"), "vrrp[0].interface", "\"\" is not a valid interface name", 3),
            (inst("v1", "eth0/1", 1, "192.0.2.10"), "vrrp[0].interface", "\"eth0/1\" is not a valid interface name", 3),
            (inst("v1", "eth 0", 1, "192.0.2.10"), "vrrp[0].interface", "is not a valid interface name", 3),
            (inst("v1", "a-sixteen-chars!", 1, "192.0.2.10"), "vrrp[0].interface", "is not a valid interface name", 3),
            (inst("v1", "eth0", 0, "192.0.2.10"), "vrrp[0].vrid", "0 is out of range 1..=255", 4),
            (inst("v1", "eth0", 256, "192.0.2.10"), "vrrp[0].vrid", "256 is out of range 1..=255", 4),
            (v("priority = 0"), "vrrp[0].priority", "0 is out of range 1..=255", 5),
            (v("priority = 256"), "vrrp[0].priority", "256 is out of range 1..=255", 5),
            (v("version = 4"), "vrrp[0].version", "VRRP version 4 is not supported; use 3 (RFC 5798) or 2 (RFC 3768)", 5),
            // Advertisement intervals: v3 counts centiseconds, v2 whole seconds.
            (v("advert_interval = \"5ms\""), "vrrp[0].advert_interval", "must be a multiple of 10ms between 10ms and 40.95s", 5),
            (v("advert_interval = \"15ms\""), "vrrp[0].advert_interval", "must be a multiple of 10ms", 5),
            (v("advert_interval = \"41s\""), "vrrp[0].advert_interval", "must be a multiple of 10ms", 5),
            (v("advert_interval = \"0\""), "vrrp[0].advert_interval", "must be a multiple of 10ms", 5),
            (v("advert_interval = \"1\""), "vrrp[0].advert_interval", "missing unit", 5),
            (v("version = 2\nadvert_interval = \"1500ms\""), "vrrp[0].advert_interval", "VRRPv2 counts whole seconds: use 1s..=255s", 6),
            (v("version = 2\nadvert_interval = \"256s\""), "vrrp[0].advert_interval", "VRRPv2 counts whole seconds", 6),
            (v("version = 2\nadvert_interval = \"0\""), "vrrp[0].advert_interval", "VRRPv2 counts whole seconds", 6),
            // Virtual IPs.
            (vx(""), "vrrp[0].virtual_ips", "at least one virtual IP is needed", 1),
            (vx("virtual_ips = []"), "vrrp[0].virtual_ips", "at least one virtual IP is needed", 5),
            (vx("virtual_ips = [\"192.0.2.10/24\", \"192.0.2.10/24\"]"), "vrrp[0].virtual_ips[1]", "192.0.2.10 is listed twice", 5),
            (vx("virtual_ips = [\"192.0.2.10/33\"]"), "vrrp[0].virtual_ips[0]", "prefix length must be 0..=32", 5),
            (vx("virtual_ips = [\"2001:db8::1/129\"]"), "vrrp[0].virtual_ips[0]", "prefix length must be 0..=128", 5),
            (vx("virtual_ips = [\"192.0.2.10/x\"]"), "vrrp[0].virtual_ips[0]", "prefix length", 5),
            (vx("virtual_ips = [\"vip\"]"), "vrrp[0].virtual_ips[0]", "\"vip\" is not an address", 5),
            (vx("virtual_ips = [\"ff02::1\"]"), "vrrp[0].virtual_ips[0]", "ff02::1/128 is a multicast address", 5),
            // Mixed families: every later address of the other family is reported.
            (vx("virtual_ips = [\"192.0.2.10\", \"192.0.2.11\", \"2001:db8::1\"]"), "vrrp[0].virtual_ips[2]", "2001:db8::1/128 is IPv6 but the first virtual IP of this instance (192.0.2.10) is IPv4", 5),
            // Checksum.
            (v("checksum = \"none\""), "vrrp[0].checksum", "unknown checksum form \"none\"; expected pseudo_header (keepalived) or plain (RFC 9568)", 5),
            (v("version = 2\nchecksum = \"pseudo_header\""), "vrrp[0].checksum", "VRRPv2 has a single checksum form; remove this key", 6),
            // Unicast.
            (v("unicast_peers = []"), "vrrp[0].unicast_peers", "an empty peer list would elect nobody", 5),
            (v("unicast_peers = [\"192.0.2.2\", \"fe80::2\"]"), "vrrp[0].unicast_peers[1]", "IPv6 peers are not supported yet", 5),
            (v("unicast_peers = [\"peer-b\"]"), "vrrp[0].unicast_peers[0]", "\"peer-b\" is not an IP address", 5),
            (v("unicast_peers = [\"192.0.2.2\"]\nunicast_source = \"192.0.2.300\""), "vrrp[0].unicast_source", "\"192.0.2.300\" is not an IP address", 6),
            (v("unicast_source = \"192.0.2.1\""), "vrrp[0].unicast_source", "only meaningful with unicast_peers", 5),
            // Tracking.
            (v("track = [{ pool = \"web\" }, { pool = \"api\" }]"), "vrrp[0].track[1].pool", "no pool named \"api\" is defined", 5),
            (v("track = [{ pool = \"web\", weight = 0 }]"), "vrrp[0].track[0].weight", "0 is out of range -254..=254 (and not 0)", 5),
            (v("track = [{ pool = \"web\", weight = 255 }]"), "vrrp[0].track[0].weight", "255 is out of range -254..=254", 5),
            (v("track = [{ pool = \"web\", weight = -255 }]"), "vrrp[0].track[0].weight", "-255 is out of range -254..=254", 5),
            (v("track = [{ pool = \"web\", weight = 4294967296 }]"), "vrrp[0].track[0].weight", "4294967296 is out of range", 5),
            (v("track_interfaces = [\"eth1\", \"\"]"), "vrrp[0].track_interfaces[1]", "\"\" is not a valid interface name", 5),
            (v("track_interfaces = [\"a-sixteen-chars!\"]"), "vrrp[0].track_interfaces[0]", "is not a valid interface name", 5),
            // Hooks and timers.
            (v("notify = \"hooks/notify.sh\""), "vrrp[0].notify", "must be an absolute path to an executable", 5),
            (v("notify_timeout = \"10\""), "vrrp[0].notify_timeout", "missing unit", 5),
            (v("preempt_delay = \"later\""), "vrrp[0].preempt_delay", "invalid duration", 5),
            (v("garp_interval = \"1q\""), "vrrp[0].garp_interval", "unknown unit", 5),
            (v("garp_refresh = \"\""), "vrrp[0].garp_refresh", "empty duration", 5),
            (v("garp_count = 0"), "vrrp[0].garp_count", "0 is out of range 1..=100", 5),
            (v("garp_count = 101"), "vrrp[0].garp_count", "101 is out of range 1..=100", 5),
            (v("vip_lifetime = \"1s\""), "vrrp[0].vip_lifetime", "must be 0 (permanent) or whole seconds, at least 2s", 5),
            (v("vip_lifetime = \"2500ms\""), "vrrp[0].vip_lifetime", "whole seconds", 5),
            (v("vip_lifetime = \"3\""), "vrrp[0].vip_lifetime", "missing unit", 5),
            (v("handover_timeout = \"0\""), "vrrp[0].handover_timeout", "must be greater than 0", 5),
            (v("handover_timeout = \"2 s\""), "vrrp[0].handover_timeout", "invalid duration", 5),
        ];
        check(&rows);
    }

    #[test]
    fn vrrp_cross_instance_errors() {
        // The second instance is lines 6-10: name 7, vrid 9, virtual_ips 10.
        let two = |a: String, b: String| format!("{a}{b}{POOL}");
        let rows: Vec<Row> = vec![
            (
                two(
                    inst("a", "eth0", 1, "192.0.2.10"),
                    inst("a", "eth0", 2, "192.0.2.11"),
                ),
                "vrrp[1].name",
                "duplicate vrrp name \"a\"",
                7,
            ),
            (
                two(
                    inst("a", "eth0", 7, "192.0.2.10"),
                    inst("b", "eth0", 7, "192.0.2.11"),
                ),
                "vrrp[1].vrid",
                "VRID 7 is already used on eth0 by another IPv4 instance",
                9,
            ),
            (
                two(
                    inst("a", "eth0", 1, "192.0.2.10/24"),
                    inst("b", "eth1", 2, "192.0.2.10/32"),
                ),
                "vrrp[1].virtual_ips[0]",
                "192.0.2.10 is also a virtual IP of instance \"a\"",
                10,
            ),
            (
                two(
                    inst("a", "eth0", 1, "2001:db8::1"),
                    inst("b", "eth1", 2, "2001:db8::1"),
                ),
                "vrrp[1].virtual_ips[0]",
                "2001:db8::1 is also a virtual IP of instance \"a\"",
                10,
            ),
        ];
        check(&rows);
        // Three instances with one VRID on one interface: the second and the third.
        let errs = errors(&format!(
            "{}{}{}",
            inst("a", "eth0", 9, "192.0.2.10"),
            inst("b", "eth0", 9, "192.0.2.11"),
            inst("c", "eth0", 9, "192.0.2.12"),
        ));
        let keys: Vec<&str> = errs.iter().map(|d| d.key.as_str()).collect();
        assert_eq!(keys, ["vrrp[1].vrid", "vrrp[2].vrid"], "{errs:?}");
    }

    #[test]
    fn vrrp_defaults() {
        let c = ok(&vx("virtual_ips = [\"192.0.2.10\"]"));
        let r = &c.vrrp[0];
        assert_eq!(
            (r.name.as_str(), r.interface.as_str(), r.vrid),
            ("v1", "eth0", 1)
        );
        assert_eq!(r.priority as u64, defaults::VRRP_PRIORITY.default);
        assert_eq!(r.advert_interval, Duration::from_secs(1));
        assert_eq!(r.interval_cs(), 100);
        assert_eq!(
            r.virtual_ips,
            vec![parse_cidr("192.0.2.10/32").expect("cidr")]
        );
        assert!(!r.is_ipv6());
        assert!(r.preempt);
        assert_eq!(r.preempt_delay, DEFAULT_PREEMPT_DELAY);
        assert_eq!(r.version, VrrpVersion::V3);
        assert_eq!(r.checksum, ChecksumMode::PseudoHeader);
        assert!(r.unicast_peers.is_empty());
        assert_eq!(r.unicast_source, None);
        assert!(r.track.is_empty() && r.track_interfaces.is_empty());
        assert_eq!(r.notify, None);
        assert_eq!(r.notify_timeout, defaults::VRRP_NOTIFY_TIMEOUT);
        assert_eq!(r.sync_group, None);
        assert_eq!(r.garp_count as u64, defaults::VRRP_GARP_COUNT.default);
        assert_eq!(r.garp_interval, defaults::VRRP_GARP_INTERVAL);
        assert_eq!(r.garp_refresh, defaults::VRRP_GARP_REFRESH);
        assert_eq!(r.vip_lifetime, defaults::VRRP_VIP_LIFETIME);
        assert_eq!(r.handover_timeout, defaults::VRRP_HANDOVER_TIMEOUT);
    }

    #[test]
    fn vrrp_valid_values() {
        let c = ok(&v(concat!(
            "priority = 255\n",
            "advert_interval = \"40.95s\"\n",
            "preempt = false\n",
            "preempt_delay = \"0\"\n",
            "checksum = \"plain\"\n",
            "unicast_peers = [\"192.0.2.2\", \"192.0.2.3\"]\n",
            "unicast_source = \"192.0.2.1\"\n",
            "track = [{ pool = \"web\" }, { pool = \"web\", weight = -254 }]\n",
            "track_interfaces = [\"eth1\", \"bond0.100\"]\n",
            "notify = \"/usr/local/bin/notify\"\n",
            "notify_timeout = \"30s\"\n",
            "sync_group = \"site\"\n",
            "garp_count = 100\n",
            "garp_interval = \"1s\"\n",
            "garp_refresh = \"1m\"\n",
            "vip_lifetime = \"0\"\n",
            "handover_timeout = \"500ms\"",
        )));
        let r = &c.vrrp[0];
        assert_eq!(r.priority, 255);
        assert_eq!(r.advert_interval, Duration::from_millis(40_950));
        assert_eq!(r.interval_cs(), 4095);
        assert!(!r.preempt);
        assert_eq!(r.preempt_delay, Duration::ZERO);
        assert_eq!(r.checksum, ChecksumMode::Plain);
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        assert_eq!(r.unicast_peers, vec![ip("192.0.2.2"), ip("192.0.2.3")]);
        assert_eq!(r.unicast_source, Some(ip("192.0.2.1")));
        assert_eq!(
            r.track,
            vec![
                TrackPool {
                    pool: "web".into(),
                    weight: None
                },
                TrackPool {
                    pool: "web".into(),
                    weight: Some(-254)
                },
            ]
        );
        assert_eq!(r.track_interfaces, ["eth1", "bond0.100"]);
        assert_eq!(
            r.notify.as_deref(),
            Some(Path::new("/usr/local/bin/notify"))
        );
        assert_eq!(r.notify_timeout, Duration::from_secs(30));
        assert_eq!(r.sync_group.as_deref(), Some("site"));
        assert_eq!(r.garp_count, 100);
        assert_eq!(r.garp_interval, Duration::from_secs(1));
        assert_eq!(r.garp_refresh, Duration::from_secs(60));
        assert_eq!(r.vip_lifetime, Duration::ZERO);
        assert_eq!(r.handover_timeout, Duration::from_millis(500));
        assert_eq!(r.virtual_ips[0].to_string(), "192.0.2.10/24");

        // VRRPv2: whole seconds up to 255s.
        let r = ok(&v(
            "version = 2\nadvert_interval = \"255s\"\nvip_lifetime = \"2s\"",
        ))
        .vrrp[0]
            .clone();
        assert_eq!(
            (r.version, r.advert_interval),
            (VrrpVersion::V2, Duration::from_secs(255))
        );
        assert_eq!(r.interval_cs(), 25_500);
        assert_eq!(r.vip_lifetime, Duration::from_secs(2));
        // The shortest v3 interval.
        assert_eq!(
            ok(&v("advert_interval = \"10ms\"")).vrrp[0].interval_cs(),
            1
        );
        // IPv6: a bare address is a /128.
        let r = ok(&vx("virtual_ips = [\"2001:db8::1\", \"fe80::1/64\"]")).vrrp[0].clone();
        assert!(r.is_ipv6());
        assert_eq!(r.virtual_ips[0].prefix, 128);
        assert_eq!(r.virtual_ips[1].to_string(), "fe80::1/64");
    }

    #[test]
    fn vrrp_instances_that_do_not_clash() {
        // One VRID on two interfaces, two VRIDs on one interface, one sync group.
        let c = ok(&format!(
            "{}{}{}",
            inst("a", "eth0", 1, "192.0.2.10"),
            inst("b", "eth1", 1, "192.0.2.11"),
            inst("c", "eth0", 2, "192.0.2.12"),
        ));
        assert_eq!(c.vrrp.len(), 3);
        let c = ok(&format!(
            "{}sync_group = \"g\"\n{}sync_group = \"g\"\n",
            inst("a", "eth0", 1, "192.0.2.10"),
            inst("b", "eth1", 2, "192.0.2.11"),
        ));
        assert!(c.vrrp.iter().all(|r| r.sync_group.as_deref() == Some("g")));
    }

    #[test]
    fn vrrp_ipv4_multicast_vip() {
        check(&[(
            vx("virtual_ips = [\"224.0.0.18\"]"),
            "vrrp[0].virtual_ips[0]",
            "is a multicast address",
            5,
        )]);
    }

    #[test]
    fn vrrp_unicast_source_family() {
        check(&[(
            v("unicast_peers = [\"192.0.2.2\"]\nunicast_source = \"2001:db8::1\""),
            "vrrp[0].unicast_source",
            "",
            6,
        )]);
    }

    #[test]
    fn vrrp_same_address_two_prefixes() {
        check(&[(
            vx("virtual_ips = [\"192.0.2.10/24\", \"192.0.2.10/32\"]"),
            "vrrp[0].virtual_ips[1]",
            "listed twice",
            5,
        )]);
    }

    #[test]
    fn vrrp_sync_group_name() {
        check(&[
            (
                v("sync_group = \"\""),
                "vrrp[0].sync_group",
                "invalid name",
                5,
            ),
            (
                v("sync_group = \"a b\""),
                "vrrp[0].sync_group",
                "invalid name",
                5,
            ),
        ]);
    }

    #[test]
    fn vrrp_track_interface_chars() {
        check(&[(
            v("track_interfaces = [\"eth 1\"]"),
            "vrrp[0].track_interfaces[0]",
            "is not a valid interface name",
            5,
        )]);
    }
}
