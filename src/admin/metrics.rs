//! Prometheus text exposition (format 0.0.4), written by hand: the data
//! already lives in atomics and the status snapshot, so a metrics library
//! would only add a second copy of every counter.
//!
//! Names follow Prometheus conventions: `tandem_` prefix, base units
//! (`_seconds`, `_bytes`), `_total` for counters. Every metric family is
//! declared once in [`FAMILIES`] with its type and help text.

use std::fmt::Write;

use super::status::Status;

pub use crate::stats::{Histogram, HistogramSnapshot, BUCKETS};

/// (name, type, help)
const FAMILIES: &[(&str, &str, &str)] = &[
    (
        "tandem_build_info",
        "gauge",
        "Version of the running tandem.",
    ),
    (
        "tandem_config_generation",
        "gauge",
        "Config generation (increments on every successful reload).",
    ),
    (
        "tandem_uptime_seconds",
        "gauge",
        "Seconds since the daemon started.",
    ),
    (
        "tandem_listener_connections_active",
        "gauge",
        "Open client connections (UDP: flows).",
    ),
    (
        "tandem_listener_connections_total",
        "counter",
        "Client connections accepted (UDP: flows created).",
    ),
    (
        "tandem_listener_queued",
        "gauge",
        "Connections waiting for a listener slot.",
    ),
    (
        "tandem_listener_rejected_total",
        "counter",
        "Connections refused: listener queue full or wait timed out.",
    ),
    (
        "tandem_listener_no_backend_total",
        "counter",
        "Connections or datagrams with no backend to go to.",
    ),
    (
        "tandem_listener_dropped_total",
        "counter",
        "UDP datagrams dropped, HTTP requests rejected for bad framing, HTTP/2 connections closed for floods or protocol errors.",
    ),
    (
        "tandem_listener_denied_total",
        "counter",
        "Clients refused by the listener's allow/deny lists.",
    ),
    (
        "tandem_listener_rate_limited_total",
        "counter",
        "Requests (429) or connections refused by per-client rate and connection limits.",
    ),
    (
        "tandem_listener_proxy_errors_total",
        "counter",
        "Connections closed for a missing, malformed or untrusted PROXY header.",
    ),
    (
        "tandem_listener_received_bytes_total",
        "counter",
        "Bytes received from clients.",
    ),
    (
        "tandem_listener_sent_bytes_total",
        "counter",
        "Bytes sent to clients.",
    ),
    (
        "tandem_listener_spliced_bytes_total",
        "counter",
        "Bytes of the received and sent totals that TCP listeners moved kernel-side with splice(2).",
    ),
    (
        "tandem_route_requests_total",
        "counter",
        "HTTP requests by route and response status class.",
    ),
    (
        "tandem_http_request_duration_seconds",
        "histogram",
        "HTTP request duration until response headers, per listener.",
    ),
    (
        "tandem_pool_backends_healthy",
        "gauge",
        "Backends up and enabled in the pool.",
    ),
    (
        "tandem_pool_queue_depth",
        "gauge",
        "Connections waiting because every backend is at max_connections.",
    ),
    (
        "tandem_pool_queue_timeouts_total",
        "counter",
        "Waits for a backend slot that timed out.",
    ),
    (
        "tandem_pool_no_backend_total",
        "counter",
        "Requests or connections the pool had no backend for.",
    ),
    (
        "tandem_pool_retries_total",
        "counter",
        "Connection attempts retried on another backend.",
    ),
    (
        "tandem_backend_up",
        "gauge",
        "1 when the backend passes its health checks.",
    ),
    (
        "tandem_backend_admin_state",
        "gauge",
        "Runtime administrative state (1 for the current state).",
    ),
    (
        "tandem_backend_weight",
        "gauge",
        "Weight in use (runtime override or configured).",
    ),
    (
        "tandem_backend_connections_active",
        "gauge",
        "Open connections or in-flight requests to the backend.",
    ),
    (
        "tandem_backend_connections_total",
        "counter",
        "Connections or requests sent to the backend.",
    ),
    (
        "tandem_backend_effective_weight",
        "gauge",
        "Weight in use now: lower while a slow start ramps.",
    ),
    (
        "tandem_backend_ejected",
        "gauge",
        "1 while outlier detection keeps the backend out of traffic.",
    ),
    (
        "tandem_backend_ejections_total",
        "counter",
        "Outlier ejections of the backend.",
    ),
    (
        "tandem_backend_connect_failures_total",
        "counter",
        "Failed connection attempts seen in live traffic.",
    ),
    (
        "tandem_backend_received_bytes_total",
        "counter",
        "Bytes received from the backend.",
    ),
    (
        "tandem_backend_sent_bytes_total",
        "counter",
        "Bytes sent to the backend.",
    ),
    (
        "tandem_backend_health_checks_total",
        "counter",
        "Active health check results.",
    ),
    (
        "tandem_backend_latency_seconds",
        "histogram",
        "Connect time (TCP) or time to first response byte (HTTP).",
    ),
    (
        "tandem_vrrp_state",
        "gauge",
        "1 for the VRRP instance's current state.",
    ),
    ("tandem_vrrp_priority", "gauge", "Configured VRRP priority."),
    (
        "tandem_vrrp_effective_priority",
        "gauge",
        "Priority in use after tracking and runtime changes.",
    ),
    (
        "tandem_vrrp_adverts_sent_total",
        "counter",
        "VRRP advertisements sent.",
    ),
    (
        "tandem_vrrp_adverts_received_total",
        "counter",
        "Valid VRRP advertisements received.",
    ),
    (
        "tandem_vrrp_dropped_total",
        "counter",
        "VRRP packets dropped, by reason.",
    ),
    (
        "tandem_vrrp_transitions_total",
        "counter",
        "VRRP state transitions.",
    ),
    (
        "tandem_vrrp_timer_lateness_max_seconds",
        "gauge",
        "Worst lateness of the election thread's timers.",
    ),
    (
        "tandem_vrrp_master_down_interval_seconds",
        "gauge",
        "Computed Master_Down_Interval.",
    ),
    (
        "tandem_vrrp_peer_info",
        "gauge",
        "Peers heard, with their priority and checksum form.",
    ),
    (
        "tandem_vrrp_virtual_ip_info",
        "gauge",
        "Virtual IPs of each VRRP instance, with the instance's address family.",
    ),
    (
        "tandem_anycast_announced",
        "gauge",
        "1 while this node announces the anycast address to its routers, 0 while withdrawn (status says why).",
    ),
    (
        "tandem_anycast_transitions_total",
        "counter",
        "Announce/withdraw changes of the anycast address.",
    ),
    (
        "tandem_sync_peer_last_seen_seconds",
        "gauge",
        "Seconds since the last authentic sticky-sync datagram from the peer (absent: never heard).",
    ),
    (
        "tandem_sync_sent_records_total",
        "counter",
        "Sticky-session records sent to the peers.",
    ),
    (
        "tandem_sync_applied_records_total",
        "counter",
        "Sticky-session records from peers applied to the local tables.",
    ),
    (
        "tandem_sync_rejected_total",
        "counter",
        "Sync datagrams rejected, by reason (unauthenticated, malformed, replayed, unknown_peer).",
    ),
    (
        "tandem_sync_dropped_total",
        "counter",
        "Sync records not sent, by reason (queue_full, oversize).",
    ),
    (
        "tandem_sync_lag_mean_seconds",
        "gauge",
        "Mean time from a session learned on a peer to its import here.",
    ),
    (
        "tandem_sync_lag_max_seconds",
        "gauge",
        "Longest time from a session learned on a peer to its import here.",
    ),
];

fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

struct Out {
    text: String,
    current: &'static str,
}

impl Out {
    fn family(&mut self, name: &'static str) {
        if self.current == name {
            return;
        }
        self.current = name;
        if let Some((n, ty, help)) = FAMILIES.iter().find(|(n, _, _)| *n == name) {
            let _ = writeln!(self.text, "# HELP {n} {help}");
            let _ = writeln!(self.text, "# TYPE {n} {ty}");
        }
    }

    fn sample(&mut self, name: &'static str, labels: &[(&str, &str)], value: f64) {
        self.family(name);
        self.line(name, "", labels, value);
    }

    fn line(&mut self, name: &str, suffix: &str, labels: &[(&str, &str)], value: f64) {
        let _ = write!(self.text, "{name}{suffix}");
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{k}=\"{}\"", esc(v));
            }
            self.text.push('}');
        }
        if value.fract() == 0.0 && value.abs() < 1e15 {
            let _ = writeln!(self.text, " {}", value as i64);
        } else {
            let _ = writeln!(self.text, " {value}");
        }
    }

    fn histogram(&mut self, name: &'static str, labels: &[(&str, &str)], h: &HistogramSnapshot) {
        self.family(name);
        for (i, b) in BUCKETS.iter().enumerate() {
            let le = b.to_string();
            let mut l = labels.to_vec();
            l.push(("le", &le));
            self.line(name, "_bucket", &l, h.cumulative[i] as f64);
        }
        let mut l = labels.to_vec();
        l.push(("le", "+Inf"));
        self.line(name, "_bucket", &l, h.count as f64);
        self.line(name, "_sum", labels, h.sum);
        self.line(name, "_count", labels, h.count as f64);
    }
}

const VRRP_STATES: [&str; 7] = [
    "initialize",
    "backup",
    "master",
    "fault",
    "leaving",
    "stopped",
    "waiting",
];
const ADMIN_STATES: [&str; 3] = ["enabled", "draining", "disabled"];

/// Renders the whole exposition from one status document. Families are
/// emitted contiguously (all samples of a family together), as the text
/// format requires.
pub fn render(s: &Status) -> String {
    let mut o = Out {
        text: String::with_capacity(16 * 1024),
        current: "",
    };
    o.sample("tandem_build_info", &[("version", &s.version)], 1.0);
    o.sample("tandem_config_generation", &[], s.generation as f64);
    o.sample("tandem_uptime_seconds", &[], s.uptime_seconds as f64);

    type L = fn(&super::status::ListenerStatus) -> u64;
    let listener_families: [(&'static str, L); 12] = [
        ("tandem_listener_connections_active", |l| l.active),
        ("tandem_listener_connections_total", |l| l.total),
        ("tandem_listener_queued", |l| l.queued),
        ("tandem_listener_rejected_total", |l| l.rejected),
        ("tandem_listener_no_backend_total", |l| l.no_backend),
        ("tandem_listener_dropped_total", |l| l.dropped),
        ("tandem_listener_denied_total", |l| l.denied),
        ("tandem_listener_rate_limited_total", |l| l.rate_limited),
        ("tandem_listener_proxy_errors_total", |l| l.proxy_errors),
        ("tandem_listener_received_bytes_total", |l| l.bytes_in),
        ("tandem_listener_sent_bytes_total", |l| l.bytes_out),
        ("tandem_listener_spliced_bytes_total", |l| l.spliced_bytes),
    ];
    for (name, f) in listener_families {
        for l in &s.listeners {
            o.sample(
                name,
                &[("listener", &l.name), ("protocol", &l.protocol)],
                f(l) as f64,
            );
        }
    }
    for l in &s.listeners {
        for r in &l.routes {
            for (i, class) in ["1xx", "2xx", "3xx", "4xx", "5xx"].iter().enumerate() {
                o.sample(
                    "tandem_route_requests_total",
                    &[("listener", &l.name), ("route", &r.name), ("code", class)],
                    r.by_class[i] as f64,
                );
            }
        }
    }
    for l in &s.listeners {
        if let Some(h) = &l.request_seconds {
            o.histogram(
                "tandem_http_request_duration_seconds",
                &[("listener", &l.name)],
                h,
            );
        }
    }
    type P = fn(&super::status::PoolStatus) -> u64;
    let pool_families: [(&'static str, P); 5] = [
        ("tandem_pool_backends_healthy", |p| p.healthy as u64),
        ("tandem_pool_queue_depth", |p| p.queued as u64),
        ("tandem_pool_queue_timeouts_total", |p| p.queue_timeouts),
        ("tandem_pool_no_backend_total", |p| p.no_backend),
        ("tandem_pool_retries_total", |p| p.retries),
    ];
    for (name, f) in pool_families {
        for p in &s.pools {
            o.sample(name, &[("pool", &p.name)], f(p) as f64);
        }
    }
    type B = fn(&super::status::BackendStatus) -> u64;
    let backend_families: [(&'static str, B); 10] = [
        ("tandem_backend_up", |b| u64::from(b.health == "up")),
        ("tandem_backend_weight", |b| b.weight as u64),
        ("tandem_backend_effective_weight", |b| {
            b.effective_weight as u64
        }),
        ("tandem_backend_ejected", |b| {
            u64::from(b.ejected_seconds.is_some())
        }),
        ("tandem_backend_ejections_total", |b| b.ejections),
        ("tandem_backend_connections_active", |b| b.active),
        ("tandem_backend_connections_total", |b| b.total),
        ("tandem_backend_connect_failures_total", |b| {
            b.connect_failures
        }),
        ("tandem_backend_received_bytes_total", |b| b.bytes_in),
        ("tandem_backend_sent_bytes_total", |b| b.bytes_out),
    ];
    for (name, f) in backend_families {
        for p in &s.pools {
            for b in &p.backends {
                o.sample(
                    name,
                    &[("pool", &p.name), ("backend", &b.name)],
                    f(b) as f64,
                );
            }
        }
    }
    for p in &s.pools {
        for b in &p.backends {
            for st in ADMIN_STATES {
                o.sample(
                    "tandem_backend_admin_state",
                    &[("pool", &p.name), ("backend", &b.name), ("state", st)],
                    f64::from(u8::from(b.admin == st)),
                );
            }
        }
    }
    for p in &s.pools {
        for b in &p.backends {
            for (result, n) in [("ok", b.checks_ok), ("fail", b.checks_failed)] {
                o.sample(
                    "tandem_backend_health_checks_total",
                    &[("pool", &p.name), ("backend", &b.name), ("result", result)],
                    n as f64,
                );
            }
        }
    }
    for p in &s.pools {
        for b in &p.backends {
            if let Some(h) = &b.latency_seconds {
                o.histogram(
                    "tandem_backend_latency_seconds",
                    &[("pool", &p.name), ("backend", &b.name)],
                    h,
                );
            }
        }
    }
    for v in &s.vrrp {
        for st in VRRP_STATES {
            o.sample(
                "tandem_vrrp_state",
                &[("vrrp_instance", &v.name), ("state", st)],
                f64::from(u8::from(v.state == st)),
            );
        }
    }
    type V = fn(&super::status::VrrpStatus) -> f64;
    let vrrp_families: [(&'static str, V); 7] = [
        ("tandem_vrrp_priority", |v| v.priority as f64),
        ("tandem_vrrp_effective_priority", |v| {
            v.effective_priority as f64
        }),
        ("tandem_vrrp_adverts_sent_total", |v| v.adverts_sent as f64),
        ("tandem_vrrp_adverts_received_total", |v| {
            v.adverts_received as f64
        }),
        ("tandem_vrrp_transitions_total", |v| v.transitions as f64),
        ("tandem_vrrp_timer_lateness_max_seconds", |v| {
            v.timer_lateness_max_us as f64 / 1e6
        }),
        ("tandem_vrrp_master_down_interval_seconds", |v| {
            v.master_down_interval_ms as f64 / 1e3
        }),
    ];
    for (name, f) in vrrp_families {
        for v in &s.vrrp {
            o.sample(name, &[("vrrp_instance", &v.name)], f(v));
        }
    }
    for v in &s.vrrp {
        for (reason, n) in &v.dropped {
            o.sample(
                "tandem_vrrp_dropped_total",
                &[("vrrp_instance", &v.name), ("reason", reason)],
                *n as f64,
            );
        }
    }
    for v in &s.vrrp {
        for p in &v.peers {
            let prio = p.priority.to_string();
            o.sample(
                "tandem_vrrp_peer_info",
                &[
                    ("vrrp_instance", &v.name),
                    ("peer", &p.address),
                    ("priority", &prio),
                    ("checksum", &p.checksum),
                ],
                1.0,
            );
        }
    }
    for v in &s.vrrp {
        for vip in &v.virtual_ips {
            o.sample(
                "tandem_vrrp_virtual_ip_info",
                &[
                    ("vrrp_instance", &v.name),
                    ("family", &v.family),
                    ("virtual_ip", vip),
                ],
                1.0,
            );
        }
    }
    for a in &s.anycast {
        let l = [
            ("anycast", a.name.as_str()),
            ("address", a.address.as_str()),
        ];
        o.sample(
            "tandem_anycast_announced",
            &l,
            f64::from(u8::from(a.announced)),
        );
    }
    for a in &s.anycast {
        let l = [
            ("anycast", a.name.as_str()),
            ("address", a.address.as_str()),
        ];
        o.sample("tandem_anycast_transitions_total", &l, a.transitions as f64);
    }
    if let Some(y) = &s.sync {
        for p in &y.peers {
            if let Some(seen) = p.last_seen_seconds {
                o.sample(
                    "tandem_sync_peer_last_seen_seconds",
                    &[("peer", &p.address)],
                    seen,
                );
            }
        }
        o.sample("tandem_sync_sent_records_total", &[], y.sent_records as f64);
        o.sample(
            "tandem_sync_applied_records_total",
            &[],
            y.applied_records as f64,
        );
        for (reason, n) in [
            ("unauthenticated", y.rejected_unauthenticated),
            ("malformed", y.rejected_malformed),
            ("replayed", y.rejected_replayed),
            ("unknown_peer", y.rejected_unknown_peer),
        ] {
            o.sample(
                "tandem_sync_rejected_total",
                &[("reason", reason)],
                n as f64,
            );
        }
        for (reason, n) in [
            ("queue_full", y.dropped_queue_full),
            ("oversize", y.dropped_oversize),
        ] {
            o.sample("tandem_sync_dropped_total", &[("reason", reason)], n as f64);
        }
        o.sample("tandem_sync_lag_mean_seconds", &[], y.lag_mean_ms / 1000.0);
        o.sample("tandem_sync_lag_max_seconds", &[], y.lag_max_ms / 1000.0);
    }
    o.text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::status::{BackendStatus, ListenerStatus, PoolStatus, VrrpStatus};

    #[test]
    fn anycast_and_sync_are_exposed() {
        let st = Status {
            anycast: vec![crate::anycast::AnycastStatus {
                name: "web".into(),
                address: "192.0.2.10".into(),
                table: 100,
                announced: true,
                reason: "announced".into(),
                detail: crate::anycast::decision::Reason::Announced,
                since_seconds: 1.0,
                transitions: 3,
            }],
            sync: Some(crate::sync::SyncStatus {
                peers: vec![
                    crate::sync::PeerStatus {
                        address: "10.0.0.12:7480".into(),
                        last_seen_seconds: Some(0.5),
                        received_datagrams: 9,
                    },
                    crate::sync::PeerStatus {
                        address: "10.0.0.13:7480".into(),
                        last_seen_seconds: None,
                        received_datagrams: 0,
                    },
                ],
                applied_records: 42,
                rejected_unauthenticated: 2,
                lag_mean_ms: 4.5,
                lag_max_ms: 10.0,
                ..Default::default()
            }),
            ..Default::default()
        };
        let text = render(&st);
        for line in [
            "tandem_anycast_announced{anycast=\"web\",address=\"192.0.2.10\"} 1",
            "tandem_anycast_transitions_total{anycast=\"web\",address=\"192.0.2.10\"} 3",
            "tandem_sync_peer_last_seen_seconds{peer=\"10.0.0.12:7480\"} 0.5",
            "tandem_sync_applied_records_total 42",
            "tandem_sync_rejected_total{reason=\"unauthenticated\"} 2",
            "tandem_sync_lag_mean_seconds 0.0045",
            "tandem_sync_lag_max_seconds 0.01",
        ] {
            assert!(text.contains(line), "{line} missing in\n{text}");
        }
        assert!(
            !text.contains("10.0.0.13:7480"),
            "a peer never heard has no age"
        );
    }

    #[test]
    fn histogram_is_cumulative_with_sum_and_count() {
        let h = Histogram::default();
        for ms in [0.2, 3.0, 3.0, 700.0, 20_000.0] {
            h.observe(std::time::Duration::from_secs_f64(ms / 1000.0));
        }
        let s = h.snapshot();
        assert_eq!(s.count, 5);
        assert_eq!(s.cumulative[0], 1, "≤0.5ms");
        assert_eq!(s.cumulative[3], 3, "≤5ms");
        assert_eq!(
            s.cumulative[BUCKETS.len() - 1],
            4,
            "the 20 s one is only in +Inf"
        );
        assert!((s.sum - 20.7062).abs() < 0.001, "{}", s.sum);
    }

    #[test]
    fn exposition_groups_families_and_escapes_labels() {
        let st = Status {
            version: "0.1.0".into(),
            listeners: vec![
                ListenerStatus {
                    name: "a".into(),
                    protocol: "tcp".into(),
                    total: 3,
                    ..Default::default()
                },
                ListenerStatus {
                    name: "b\"x".into(),
                    protocol: "udp".into(),
                    ..Default::default()
                },
            ],
            pools: vec![PoolStatus {
                name: "web".into(),
                backends: vec![BackendStatus {
                    name: "w1".into(),
                    health: "up".into(),
                    admin: "enabled".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            vrrp: vec![VrrpStatus {
                name: "v".into(),
                state: "master".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let text = render(&st);
        assert!(
            text.contains("tandem_listener_connections_total{listener=\"a\",protocol=\"tcp\"} 3")
        );
        assert!(text.contains("listener=\"b\\\"x\""), "escaped: {text}");
        assert!(text.contains("tandem_backend_up{pool=\"web\",backend=\"w1\"} 1"));
        assert!(text.contains("tandem_vrrp_state{vrrp_instance=\"v\",state=\"master\"} 1"));
        assert!(text.contains("tandem_vrrp_state{vrrp_instance=\"v\",state=\"backup\"} 0"));
        assert!(
            !text.contains("tandem_sync_"),
            "no sync section, no sync metrics"
        );
        // Each family's TYPE line appears exactly once.
        for (name, _, _) in FAMILIES {
            assert!(
                text.matches(&format!("# TYPE {name} ")).count() <= 1,
                "{name}"
            );
        }
    }
}
