//! The status document served at `GET /v1/status` and printed by
//! `tandem status`. One type both ways so the CLI and the daemon can never
//! disagree about field names.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Status {
    pub version: String,
    pub pid: u32,
    pub config_file: String,
    /// Increments on every successful reload.
    pub generation: u64,
    pub uptime_seconds: u64,
    pub listeners: Vec<ListenerStatus>,
    pub pools: Vec<PoolStatus>,
    #[serde(default)]
    pub vrrp: Vec<VrrpStatus>,
    /// `[[anycast]]` addresses: announced or why not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub anycast: Vec<crate::anycast::AnycastStatus>,
    /// `[sync]`: peers seen, counters, replication lag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync: Option<crate::sync::SyncStatus>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct ListenerStatus {
    pub name: String,
    pub bind: String,
    pub protocol: String,
    pub pool: String,
    pub active: u64,
    pub total: u64,
    pub queued: u64,
    pub rejected: u64,
    pub no_backend: u64,
    pub dropped: u64,
    /// Refused by the listener's allow/deny lists.
    #[serde(default)]
    pub denied: u64,
    /// Over a per-client rate or connection limit (429 on HTTP).
    #[serde(default)]
    pub rate_limited: u64,
    /// Missing, malformed or untrusted PROXY headers (accept_proxy).
    #[serde(default)]
    pub proxy_errors: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// TCP listeners: bytes of bytes_in + bytes_out moved by splice(2).
    #[serde(default)]
    pub spliced_bytes: u64,
    /// HTTP listeners: per-route request counters.
    #[serde(default)]
    pub routes: Vec<RouteStatus>,
    /// HTTP listeners: request duration histogram.
    #[serde(default)]
    pub request_seconds: Option<super::metrics::HistogramSnapshot>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct RouteStatus {
    pub name: String,
    pub requests: u64,
    /// Responses by status class: 1xx, 2xx, 3xx, 4xx, 5xx.
    pub by_class: [u64; 5],
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct PoolStatus {
    pub name: String,
    pub algorithm: String,
    pub healthy: usize,
    pub backends: Vec<BackendStatus>,
    pub queued: u32,
    pub queue_timeouts: u64,
    pub no_backend: u64,
    #[serde(default)]
    pub retries: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct BackendStatus {
    pub name: String,
    pub address: String,
    /// The weight in use (runtime override or configured).
    pub weight: u32,
    #[serde(default)]
    pub configured_weight: u32,
    /// Drain/disable/weight set at runtime (kept across reloads until the
    /// config changes this backend).
    #[serde(default)]
    pub runtime: bool,
    pub backup: bool,
    /// "up" or "down".
    pub health: String,
    /// "enabled", "draining" or "disabled".
    pub admin: String,
    pub active: u64,
    pub total: u64,
    pub connect_failures: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub last_check: String,
    pub reason: String,
    /// Seconds since the last health change; None if it never changed.
    pub since_seconds: Option<u64>,
    #[serde(default)]
    pub checks_ok: u64,
    #[serde(default)]
    pub checks_failed: u64,
    /// Seconds left out of traffic after an outlier ejection.
    #[serde(default)]
    pub ejected_seconds: Option<f64>,
    #[serde(default)]
    pub ejections: u64,
    /// The weight balancing uses right now (lower during a slow start).
    #[serde(default)]
    pub effective_weight: u32,
    /// Connect time (TCP) or time to first byte (HTTP).
    #[serde(default)]
    pub latency_seconds: Option<super::metrics::HistogramSnapshot>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct VrrpStatus {
    pub name: String,
    pub interface: String,
    /// "ipv4" or "ipv6": one address family per instance.
    #[serde(default)]
    pub family: String,
    /// The address adverts are sent from (IPv6: the link-local address).
    #[serde(default)]
    pub source: Option<String>,
    pub vrid: u8,
    pub state: String,
    pub priority: u8,
    /// Set at runtime with `tandem vrrp priority`.
    #[serde(default)]
    pub priority_override: Option<u8>,
    pub effective_priority: u8,
    pub master: Option<String>,
    pub reason: String,
    pub virtual_ips: Vec<String>,
    pub advert_interval_ms: u64,
    pub master_down_interval_ms: u64,
    pub skew_ms: u64,
    pub adverts_sent: u64,
    pub adverts_received: u64,
    pub transitions: u64,
    pub dropped: std::collections::BTreeMap<String, u64>,
    #[serde(default)]
    pub peers: Vec<PeerStatus>,
    pub timer_lateness_max_us: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct PeerStatus {
    pub address: String,
    pub priority: u8,
    pub checksum: String,
    pub adverts: u64,
    pub last_seen_ms_ago: u64,
}

impl ListenerStatus {
    /// The wire form of a listener's counters; `routes`: an HTTP listener's, by route.
    pub fn from_stats(
        l: &crate::config::ListenerConfig,
        s: &crate::stats::ListenerStats,
        routes: Option<Vec<RouteStatus>>,
    ) -> ListenerStatus {
        use std::sync::atomic::Ordering::Relaxed;
        ListenerStatus {
            request_seconds: routes.as_ref().map(|_| s.request_seconds.snapshot()),
            routes: routes.unwrap_or_default(),
            name: l.name.clone(),
            bind: l.bind.to_string(),
            protocol: l.protocol.name().into(),
            pool: l.pool.clone(),
            active: s.active.load(Relaxed),
            total: s.total.load(Relaxed),
            queued: s.queued.load(Relaxed),
            rejected: s.rejected.load(Relaxed),
            no_backend: s.no_backend.load(Relaxed),
            dropped: s.dropped.load(Relaxed),
            denied: s.policy.denied.load(Relaxed),
            rate_limited: s.policy.rate_limited.load(Relaxed),
            proxy_errors: s.policy.proxy_errors.load(Relaxed),
            bytes_in: s.bytes_in.load(Relaxed),
            bytes_out: s.bytes_out.load(Relaxed),
            spliced_bytes: s.spliced.load(Relaxed),
        }
    }
}

impl PoolStatus {
    /// The wire form of a pool's snapshot; `now` (Unix seconds) dates health changes.
    pub fn from_snapshot(p: crate::pool::PoolSnapshot, now: u64) -> PoolStatus {
        PoolStatus {
            name: p.name,
            algorithm: p.algorithm.name().into(),
            healthy: p.healthy,
            queued: p.queued,
            queue_timeouts: p.queue_timeouts,
            retries: p.retries,
            no_backend: p.no_backend,
            backends: p
                .backends
                .into_iter()
                .map(|b| BackendStatus {
                    name: b.name,
                    address: b.address.to_string(),
                    weight: b.weight,
                    configured_weight: b.configured_weight,
                    effective_weight: b.effective_weight,
                    runtime: b.runtime,
                    backup: b.backup,
                    health: if b.healthy { "up" } else { "down" }.into(),
                    admin: b.admin.name().into(),
                    active: b.active,
                    total: b.total,
                    connect_failures: b.connect_failures,
                    bytes_in: b.bytes_in,
                    bytes_out: b.bytes_out,
                    since_seconds: (b.check.changed_at > 0)
                        .then(|| now.saturating_sub(b.check.changed_at)),
                    last_check: b.check.last_result,
                    reason: b.check.reason,
                    checks_ok: b.checks_ok,
                    checks_failed: b.checks_failed,
                    latency_seconds: Some(b.latency),
                    ejected_seconds: b.ejected_for.map(|d| d.as_secs_f64()),
                    ejections: b.ejections,
                })
                .collect(),
        }
    }
}

impl From<&crate::vrrp::status::InstanceStatus> for VrrpStatus {
    fn from(i: &crate::vrrp::status::InstanceStatus) -> VrrpStatus {
        let ms = |d: std::time::Duration| d.as_millis().min(u64::MAX as u128) as u64;
        let mut peers: Vec<PeerStatus> = i
            .peers
            .iter()
            .map(|p| PeerStatus {
                address: p.address.to_string(),
                priority: p.priority,
                checksum: p.checksum.name().into(),
                adverts: p.adverts,
                last_seen_ms_ago: ms(p.last_seen_ago),
            })
            .collect();
        peers.sort_by(|a, b| a.address.cmp(&b.address));
        VrrpStatus {
            name: i.name.clone(),
            interface: i.interface.clone(),
            family: if i.ipv6 { "ipv6" } else { "ipv4" }.into(),
            source: i.source.map(|a| a.to_string()),
            vrid: i.vrid,
            state: match i.waiting {
                Some(_) => "waiting".into(),
                None => i.state.to_string(),
            },
            priority: i.priority,
            priority_override: i.priority_override,
            effective_priority: i.effective_priority,
            master: i.master.map(|m| m.to_string()),
            reason: match &i.waiting {
                Some(why) => why.clone(),
                None => i.reason.to_string(),
            },
            virtual_ips: i.virtual_ips.iter().map(|v| v.to_string()).collect(),
            advert_interval_ms: ms(i.advert_interval),
            master_down_interval_ms: ms(i.master_down_interval),
            skew_ms: ms(i.skew),
            adverts_sent: i.adverts_sent,
            adverts_received: i.adverts_received,
            transitions: i.transitions,
            dropped: i.dropped.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
            peers,
            timer_lateness_max_us: i.timer_lateness_max.as_micros().min(u64::MAX as u128) as u64,
        }
    }
}

/// `n` bytes in binary units with one decimal ("4.7KiB"); `sep` goes
/// between number and unit (the table packs them, the status page spaces).
pub(crate) fn human_bytes(n: u64, sep: &str) -> String {
    const U: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i < U.len() - 1 {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n}{sep}B")
    } else {
        format!("{v:.1}{sep}{}", U[i])
    }
}

fn table(out: &mut String, header: &[&str], rows: &[Vec<String>]) {
    let mut w: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::from("  ");
        for (i, c) in cells.iter().enumerate() {
            s.push_str(c);
            if i + 1 < cells.len() {
                s.push_str(&" ".repeat(w[i] - c.chars().count() + 2));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    out.push_str(&line(header.to_vec()));
    for r in rows {
        out.push_str(&line(r.iter().map(|s| s.as_str()).collect()));
    }
}

impl Status {
    /// The human view of `tandem status`.
    pub fn render(&self) -> String {
        let mut o = String::new();
        o.push_str(&format!(
            "tandem {}  pid {}  up {}s  config {} (generation {})\n",
            self.version, self.pid, self.uptime_seconds, self.config_file, self.generation
        ));
        if !self.vrrp.is_empty() {
            o.push_str("\nVRRP\n");
            let rows: Vec<Vec<String>> = self
                .vrrp
                .iter()
                .map(|v| {
                    vec![
                        v.name.clone(),
                        format!("{}/{}", v.interface, v.vrid),
                        v.state.clone(),
                        match (v.priority == v.effective_priority, v.priority_override) {
                            (_, Some(o)) => format!(
                                "{} (runtime {o}, cfg {})",
                                v.effective_priority, v.priority
                            ),
                            (true, None) => v.priority.to_string(),
                            (false, None) => {
                                format!("{} (cfg {})", v.effective_priority, v.priority)
                            }
                        },
                        v.master.clone().unwrap_or_else(|| "-".into()),
                        v.virtual_ips.join(","),
                        format!("{}/{}", v.adverts_sent, v.adverts_received),
                        v.reason.clone(),
                    ]
                })
                .collect();
            table(
                &mut o,
                &[
                    "INSTANCE", "IF/VRID", "STATE", "PRIO", "MASTER", "VIPS", "TX/RX", "WHY",
                ],
                &rows,
            );
        }
        o.push_str("\nLISTENERS\n");
        let rows: Vec<Vec<String>> = self
            .listeners
            .iter()
            .map(|l| {
                vec![
                    l.name.clone(),
                    format!("{}/{}", l.bind, l.protocol),
                    l.pool.clone(),
                    l.active.to_string(),
                    l.total.to_string(),
                    l.queued.to_string(),
                    (l.rejected + l.no_backend + l.dropped).to_string(),
                    human_bytes(l.bytes_in, ""),
                    human_bytes(l.bytes_out, ""),
                ]
            })
            .collect();
        table(
            &mut o,
            &[
                "NAME", "BIND", "POOL", "ACTIVE", "TOTAL", "QUEUED", "REFUSED", "IN", "OUT",
            ],
            &rows,
        );
        for p in &self.pools {
            o.push_str(&format!(
                "\nPOOL {}  ({}, {}/{} healthy{})\n",
                p.name,
                p.algorithm,
                p.healthy,
                p.backends.len(),
                if p.queued > 0 {
                    format!(", {} queued", p.queued)
                } else {
                    String::new()
                }
            ));
            let rows: Vec<Vec<String>> = p
                .backends
                .iter()
                .map(|b| {
                    vec![
                        b.name.clone(),
                        b.address.clone(),
                        format!(
                            "{}{}{}",
                            b.weight,
                            if b.weight != b.configured_weight && b.configured_weight != 0 {
                                "*"
                            } else {
                                ""
                            },
                            if b.backup { " backup" } else { "" }
                        ),
                        if b.admin == "enabled" {
                            b.health.to_uppercase()
                        } else {
                            format!("{} ({})", b.health.to_uppercase(), b.admin)
                        },
                        b.active.to_string(),
                        b.total.to_string(),
                        b.connect_failures.to_string(),
                        human_bytes(b.bytes_in + b.bytes_out, ""),
                        b.last_check.clone(),
                    ]
                })
                .collect();
            table(
                &mut o,
                &[
                    "BACKEND",
                    "ADDRESS",
                    "WEIGHT",
                    "HEALTH",
                    "ACTIVE",
                    "TOTAL",
                    "FAILS",
                    "BYTES",
                    "LAST CHECK",
                ],
                &rows,
            );
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_a_readable_table() {
        let s = Status {
            version: "0.1.0".into(),
            pid: 42,
            config_file: "/etc/tandem/tandem.toml".into(),
            listeners: vec![ListenerStatus {
                name: "web".into(),
                bind: "0.0.0.0:80".into(),
                protocol: "tcp".into(),
                pool: "web".into(),
                total: 3,
                bytes_in: 2048,
                ..Default::default()
            }],
            pools: vec![PoolStatus {
                name: "web".into(),
                algorithm: "round_robin".into(),
                healthy: 1,
                backends: vec![BackendStatus {
                    name: "a".into(),
                    address: "10.0.0.1:80".into(),
                    weight: 1,
                    health: "up".into(),
                    admin: "enabled".into(),
                    last_check: "ok".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        let t = s.render();
        assert!(t.contains("POOL web  (round_robin, 1/1 healthy)"), "{t}");
        assert!(t.contains("10.0.0.1:80"));
        assert!(t.contains("2.0KiB"));
        let json = serde_json::to_string(&s).expect("json");
        let back: Status = serde_json::from_str(&json).expect("parse");
        assert_eq!(back.pools[0].backends[0].address, "10.0.0.1:80");
    }
}
