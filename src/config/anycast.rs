//! `[[anycast]]`: a service address announced to the routers (through BIRD) while this node
//! can serve it. See `crate::anycast` for the mechanism.

use super::defaults;
use std::collections::HashSet;
use std::net::IpAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Validator;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAnycast {
    pub name: String,
    pub address: String,
    #[serde(default)]
    pub pools: Vec<String>,
    pub interface: Option<String>,
    pub table: Option<u64>,
    pub converge: Option<String>,
    pub announce_delay: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AnycastConfig {
    pub name: String,
    /// The service address, announced as a host route (/32 or /128).
    pub address: IpAddr,
    /// Announced only while every one of these pools has a serving backend.
    pub pools: Vec<String>,
    /// Where the address is kept so that this node accepts its traffic ("lo" by default).
    pub interface: String,
    /// Kernel routing table holding the signal route that BIRD's `kernel` protocol learns.
    pub table: u32,
    /// On shutdown: how long to keep serving after the withdrawal so that the routers stop
    /// sending new flows here before the listeners close.
    pub converge: Duration,
    /// After the pools recover (or at start): healthy this long before announcing, so a
    /// flapping backend does not flap the route.
    pub announce_delay: Duration,
}

impl AnycastConfig {
    pub fn prefix_len(&self) -> u8 {
        if self.address.is_ipv4() {
            32
        } else {
            128
        }
    }
}

/// Parses "192.0.2.10", "192.0.2.10/32", "2001:db8::10" or "2001:db8::10/128".
fn parse_host_address(s: &str) -> Result<IpAddr, String> {
    let (ip, prefix) = match s.split_once('/') {
        Some((ip, p)) => (ip, Some(p)),
        None => (s, None),
    };
    let ip: IpAddr = ip
        .parse()
        .map_err(|_| format!("{s:?} is not an IP address: write e.g. \"192.0.2.10\""))?;
    let full = if ip.is_ipv4() { "32" } else { "128" };
    match prefix {
        Some(p) if p != full => Err(format!(
            "{s:?}: an anycast address is announced as a host route, so the prefix must be /{full}"
        )),
        _ if ip.is_unspecified() || ip.is_multicast() || ip.is_loopback() => Err(format!(
            "{s:?} cannot be announced (unspecified, multicast or loopback)"
        )),
        _ => Ok(ip),
    }
}

impl Validator<'_> {
    pub(super) fn anycasts(
        &mut self,
        items: Vec<(usize, RawAnycast)>,
        pools: &HashSet<&str>,
    ) -> Vec<AnycastConfig> {
        let mut out = Vec::new();
        let mut names = HashSet::new();
        let mut addrs = HashSet::new();
        for (i, a) in items {
            let at = |k: &str| format!("anycast[{i}].{k}");
            self.name(&at("name"), &a.name);
            if !names.insert(a.name.clone()) {
                self.err(&at("name"), format!("duplicate anycast name {:?}", a.name));
            }
            let address = match parse_host_address(&a.address) {
                Ok(ip) => {
                    if !addrs.insert(ip) {
                        self.err(
                            &at("address"),
                            format!("{ip} is already used by another [[anycast]]"),
                        );
                    }
                    Some(ip)
                }
                Err(e) => {
                    self.err(&at("address"), e);
                    None
                }
            };
            if a.pools.is_empty() {
                self.err(
                    &at("pools"),
                    "name at least one pool: its health decides whether the address is announced",
                );
            }
            for (j, p) in a.pools.iter().enumerate() {
                if !pools.contains(p.as_str()) {
                    self.err(
                        &format!("anycast[{i}].pools[{j}]"),
                        format!("no pool named {p:?}"),
                    );
                }
            }
            let interface = a.interface.unwrap_or_else(|| "lo".into());
            if interface.is_empty() || interface.len() > 15 || interface.contains(['/', ' ']) {
                self.err(
                    &at("interface"),
                    format!("{interface:?} is not an interface name"),
                );
            }
            // 0 is "unspec"; 253-255 are the kernel's default, main and local tables, whose
            // routes BIRD would export along with ours.
            let table = self.int(&at("table"), a.table, defaults::ANYCAST_TABLE) as u32;
            if matches!(table, 253..=255) {
                self.err(
                    &at("table"),
                    format!("table {table} is a kernel table (default/main/local): use a dedicated one, e.g. 100"),
                );
            }
            let converge = self.duration(
                &at("converge"),
                a.converge.as_deref(),
                defaults::ANYCAST_CONVERGE,
            );
            if converge > Duration::from_secs(300) {
                self.err(&at("converge"), "at most 5m");
            }
            let announce_delay = self.duration(
                &at("announce_delay"),
                a.announce_delay.as_deref(),
                defaults::ANYCAST_ANNOUNCE_DELAY,
            );
            if announce_delay > Duration::from_secs(300) {
                self.err(&at("announce_delay"), "at most 5m");
            }
            if let Some(address) = address {
                out.push(AnycastConfig {
                    name: a.name,
                    address,
                    pools: a.pools,
                    interface,
                    table,
                    converge,
                    announce_delay,
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::parse_host_address;
    use std::path::Path;

    const POOL: &str = "[[pool]]\nname = \"web\"\nbackends = [{ address = \"10.0.0.1:80\" }]\n";

    fn errors(body: &str) -> Vec<String> {
        match crate::config::parse(Path::new("t.toml"), &format!("{POOL}{body}")) {
            Ok(_) => Vec::new(),
            Err(e) => e.0.iter().map(|d| d.to_string()).collect(),
        }
    }

    #[test]
    fn valid_section_and_defaults() {
        let cfg = crate::config::parse(
            Path::new("t.toml"),
            &format!(
                "{POOL}[[anycast]]\nname = \"web\"\naddress = \"192.0.2.10\"\npools = [\"web\"]\n"
            ),
        )
        .expect("valid");
        let a = &cfg.anycast[0];
        assert_eq!(
            (a.interface.as_str(), a.table, a.prefix_len()),
            ("lo", 100, 32)
        );
        assert_eq!(a.converge, std::time::Duration::from_secs(2));
        assert_eq!(a.announce_delay, std::time::Duration::from_secs(1));
    }

    #[test]
    fn errors_name_file_line_col_and_key() {
        let cases = [
            ("[[anycast]]\nname = \"a\"\naddress = \"192.0.2.10/24\"\npools = [\"web\"]\n", "t.toml:6:11: anycast[0].address", "/32"),
            ("[[anycast]]\nname = \"a\"\naddress = \"192.0.2.10\"\npools = [\"api\"]\n", "t.toml:7:10: anycast[0].pools[0]", "no pool named \"api\""),
            ("[[anycast]]\nname = \"a\"\naddress = \"192.0.2.10\"\npools = []\n", "t.toml:7:9: anycast[0].pools", "at least one pool"),
            ("[[anycast]]\nname = \"a\"\naddress = \"192.0.2.10\"\npools = [\"web\"]\ntable = 254\n", "t.toml:8:9: anycast[0].table", "kernel table"),
            ("[[anycast]]\nname = \"a\"\naddress = \"192.0.2.10\"\npools = [\"web\"]\nconverge = \"soon\"\n", "t.toml:8:12: anycast[0].converge", ""),
            ("[[anycast]]\nname = \"a\"\naddress = \"192.0.2.10\"\npools = [\"web\"]\nbgp = true\n", "t.toml:8:1: anycast[0].bgp", "unknown key"),
            ("[[anycast]]\nname = \"a\"\naddress = \"192.0.2.10\"\npools = [\"web\"]\n[[anycast]]\nname = \"b\"\naddress = \"192.0.2.10\"\npools = [\"web\"]\n", "t.toml:10:11: anycast[1].address", "already used"),
        ];
        for (body, at, what) in cases {
            let errs = errors(body);
            assert!(
                errs.iter().any(|e| e.starts_with(at) && e.contains(what)),
                "{body:?}: want {at} {what:?}, got {errs:?}"
            );
        }
    }

    #[test]
    fn host_addresses() {
        assert_eq!(
            parse_host_address("192.0.2.10").unwrap().to_string(),
            "192.0.2.10"
        );
        assert!(parse_host_address("192.0.2.10/32").is_ok());
        assert!(parse_host_address("2001:db8::10/128").is_ok());
        assert!(parse_host_address("192.0.2.10/24")
            .unwrap_err()
            .contains("/32"));
        assert!(parse_host_address("2001:db8::10/64")
            .unwrap_err()
            .contains("/128"));
        assert!(parse_host_address("0.0.0.0").is_err());
        assert!(parse_host_address("127.0.0.5").is_err());
        assert!(parse_host_address("web").is_err());
    }
}
