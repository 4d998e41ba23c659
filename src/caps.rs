//! Capability preflight: the packaged unit runs tandem as an unprivileged
//! user with exactly CAP_NET_ADMIN, CAP_NET_RAW and CAP_NET_BIND_SERVICE (and
//! CAP_SYS_NICE, optional: without it the election thread runs unprioritised).
//! Checking up front turns a half-working daemon (VRRP socket refused
//! minutes later, a listener that cannot bind) into one clear start-up
//! error that names the missing capability.

use crate::config::Config;

pub const CAP_NET_BIND_SERVICE: u32 = 10;
pub const CAP_NET_ADMIN: u32 = 12;
pub const CAP_NET_RAW: u32 = 13;

fn name(cap: u32) -> &'static str {
    match cap {
        CAP_NET_BIND_SERVICE => "CAP_NET_BIND_SERVICE",
        CAP_NET_ADMIN => "CAP_NET_ADMIN",
        _ => "CAP_NET_RAW",
    }
}

/// The effective capability set from /proc/self/status (None if unreadable).
pub fn effective() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

fn unprivileged_port_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1024)
}

/// What this config needs, with the reason, given the effective set.
pub fn missing(cfg: &Config, eff: u64, port_start: u16) -> Vec<String> {
    let mut need: Vec<(u32, String)> = Vec::new();
    if !cfg.vrrp.is_empty() {
        need.push((
            CAP_NET_ADMIN,
            "to add and remove virtual IPs by netlink".into(),
        ));
        need.push((
            CAP_NET_RAW,
            "to send VRRP adverts and gratuitous ARP".into(),
        ));
    }
    if let Some(l) = cfg.listeners.iter().find(|l| l.bind.port() < port_start) {
        need.push((
            CAP_NET_BIND_SERVICE,
            format!("to bind port {} (listener {})", l.bind.port(), l.name),
        ));
    }
    need.into_iter()
        .filter(|(cap, _)| eff & (1u64 << cap) == 0)
        .map(|(cap, why)| {
            format!(
                "missing capability {} ({why}): run as root or grant it (systemd: AmbientCapabilities={})",
                name(cap),
                name(cap)
            )
        })
        .collect()
}

/// Checks the running process; an empty list means all is well.
pub fn preflight(cfg: &Config) -> Vec<String> {
    match effective() {
        Some(eff) => missing(cfg, eff, unprivileged_port_start()),
        None => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(vrrp: bool, port: u16) -> Config {
        let mut src = format!(
            "[[pool]]\nname = \"p\"\nbackends = [{{ address = \"10.0.0.1:80\" }}]\n[[listener]]\nname = \"l\"\nbind = \"0.0.0.0:{port}\"\npool = \"p\"\n"
        );
        if vrrp {
            src.push_str("[[vrrp]]\nname = \"v\"\ninterface = \"eth0\"\nvrid = 1\nvirtual_ips = [\"10.0.0.100/24\"]\n");
        }
        crate::config::parse(std::path::Path::new("t.toml"), &src).expect("valid")
    }

    #[test]
    fn names_each_missing_capability_and_why() {
        let all = (1 << CAP_NET_ADMIN) | (1 << CAP_NET_RAW) | (1 << CAP_NET_BIND_SERVICE);
        assert!(missing(&cfg(true, 80), all, 1024).is_empty());
        let m = missing(&cfg(true, 80), all & !(1 << CAP_NET_RAW), 1024);
        assert_eq!(m.len(), 1);
        assert!(
            m[0].contains("CAP_NET_RAW") && m[0].contains("VRRP"),
            "{m:?}"
        );
        let m = missing(&cfg(false, 80), 0, 1024);
        assert_eq!(m.len(), 1);
        assert!(
            m[0].contains("CAP_NET_BIND_SERVICE") && m[0].contains("port 80"),
            "{m:?}"
        );
        // High ports and no VRRP need nothing.
        assert!(missing(&cfg(false, 8080), 0, 1024).is_empty());
        // A lowered unprivileged port start makes port 80 free to bind.
        assert!(missing(&cfg(false, 80), 0, 0).is_empty());
    }
}
