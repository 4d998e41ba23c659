//! Every default and range of a numeric or duration setting, in one table: the validators
//! read these constants (so a default is written once), and [`TABLE`] lists them by key for
//! the tests and the docs. A default that depends on another setting (a rate limit's burst,
//! an L4 vs HTTP idle timeout, VRRPv2 vs v3 intervals) is computed where it is validated,
//! and its range is still here.

use std::time::Duration;

/// An integer setting: its default and the inclusive range it must lie in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Int {
    pub default: u64,
    pub min: u64,
    pub max: u64,
}

/// One row of [`TABLE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setting {
    Int(Int),
    Duration(Duration),
}

/// `global.workers`
pub const GLOBAL_WORKERS: Int = Int {
    default: 0,
    min: 0,
    max: 256,
};

/// `global.shutdown_timeout`
pub const GLOBAL_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// `pool.weight`
pub const POOL_WEIGHT: Int = Int {
    default: 1,
    min: 1,
    max: 256,
};

/// `pool.max_connections`
pub const POOL_MAX_CONNECTIONS: Int = Int {
    default: 0,
    min: 0,
    max: 10_000_000,
};

/// `pool.connect_timeout`
pub const POOL_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// `pool.retries`
pub const POOL_RETRIES: Int = Int {
    default: 2,
    min: 0,
    max: 16,
};

/// `pool.queue_size`
pub const POOL_QUEUE_SIZE: Int = Int {
    default: 128,
    min: 0,
    max: 1_000_000,
};

/// `pool.queue_timeout`
pub const POOL_QUEUE_TIMEOUT: Duration = Duration::from_secs(3);

/// `pool.passive_failures`
pub const POOL_PASSIVE_FAILURES: Int = Int {
    default: 3,
    min: 0,
    max: 1000,
};

/// `pool.slow_start`
pub const POOL_SLOW_START: Duration = Duration::ZERO;

/// `pool.outlier.ejection_time`
pub const OUTLIER_EJECTION_TIME: Duration = Duration::from_secs(10);

/// `pool.outlier.consecutive_5xx`
pub const OUTLIER_CONSECUTIVE_5XX: Int = Int {
    default: 5,
    min: 0,
    max: 10_000,
};

/// `pool.outlier.consecutive_failures`
pub const OUTLIER_CONSECUTIVE_FAILURES: Int = Int {
    default: 5,
    min: 0,
    max: 10_000,
};

/// `pool.outlier.max_ejected_percent`
pub const OUTLIER_MAX_EJECTED_PERCENT: Int = Int {
    default: 50,
    min: 1,
    max: 100,
};

/// `listener.accept_proxy_timeout`
pub const LISTENER_ACCEPT_PROXY_TIMEOUT: Duration = Duration::from_secs(5);

/// `listener.rate_limit.rate`
pub const RATE_LIMIT_RATE: Int = Int {
    default: 0,
    min: 0,
    max: 10_000_000,
};

/// `listener.rate_limit.max_connections`
pub const RATE_LIMIT_MAX_CONNECTIONS: Int = Int {
    default: 0,
    min: 0,
    max: 10_000_000,
};

/// `listener.rate_limit.max_clients`
pub const RATE_LIMIT_MAX_CLIENTS: Int = Int {
    default: 100_000,
    min: 16,
    max: 10_000_000,
};

/// `pool.health.interval`
pub const HEALTH_INTERVAL: Duration = Duration::from_secs(2);

/// `pool.health.timeout`
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(1);

/// `pool.health.port`
pub const HEALTH_PORT: Int = Int {
    default: 1,
    min: 1,
    max: 65535,
};

/// `pool.health.rise`
pub const HEALTH_RISE: Int = Int {
    default: 2,
    min: 1,
    max: 100,
};

/// `pool.health.fall`
pub const HEALTH_FALL: Int = Int {
    default: 3,
    min: 1,
    max: 100,
};

/// `listener.max_connections`
pub const LISTENER_MAX_CONNECTIONS: Int = Int {
    default: 10_000,
    min: 0,
    max: 10_000_000,
};

/// `listener.queue_size`
pub const LISTENER_QUEUE_SIZE: Int = Int {
    default: 1024,
    min: 0,
    max: 1_000_000,
};

/// `listener.queue_timeout`
pub const LISTENER_QUEUE_TIMEOUT: Duration = Duration::from_secs(5);

/// `listener.backlog`
pub const LISTENER_BACKLOG: Int = Int {
    default: 1024,
    min: 1,
    max: 65535,
};

/// `listener.max_flows`
pub const LISTENER_MAX_FLOWS: Int = Int {
    default: 65536,
    min: 1,
    max: 10_000_000,
};

/// `vrrp.vrid`
pub const VRRP_VRID: Int = Int {
    default: 1,
    min: 1,
    max: 255,
};

/// `vrrp.priority`
pub const VRRP_PRIORITY: Int = Int {
    default: 100,
    min: 1,
    max: 255,
};

/// `vrrp.garp_interval`
pub const VRRP_GARP_INTERVAL: Duration = Duration::from_millis(100);

/// `vrrp.vip_lifetime`
pub const VRRP_VIP_LIFETIME: Duration = Duration::from_secs(3);

/// `vrrp.handover_timeout`
pub const VRRP_HANDOVER_TIMEOUT: Duration = Duration::from_secs(2);

/// `vrrp.notify_timeout`
pub const VRRP_NOTIFY_TIMEOUT: Duration = Duration::from_secs(10);

/// `vrrp.garp_count`
pub const VRRP_GARP_COUNT: Int = Int {
    default: 5,
    min: 1,
    max: 100,
};

/// `vrrp.garp_refresh`
pub const VRRP_GARP_REFRESH: Duration = Duration::ZERO;

/// `listener.routes.split.weight`
pub const ROUTE_SPLIT_WEIGHT: Int = Int {
    default: 1,
    min: 0,
    max: 1_000_000,
};

/// `listener.routes.rate_limit.rate`
pub const ROUTE_RATE_LIMIT_RATE: Int = Int {
    default: 1,
    min: 1,
    max: 10_000_000,
};

/// `listener.routes.rate_limit.max_clients`
pub const ROUTE_RATE_LIMIT_MAX_CLIENTS: Int = Int {
    default: 100_000,
    min: 16,
    max: 10_000_000,
};

/// `listener.header_timeout`
pub const HTTP_HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// `listener.keepalive_timeout`
pub const HTTP_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(60);

/// `listener.max_header_bytes`
pub const HTTP_MAX_HEADER_BYTES: Int = Int {
    default: 64 * 1024,
    min: 1024,
    max: 1 << 20,
};

/// `listener.max_headers`
pub const HTTP_MAX_HEADERS: Int = Int {
    default: 100,
    min: 8,
    max: 1000,
};

/// `listener.max_body_bytes`
pub const HTTP_MAX_BODY_BYTES: Int = Int {
    default: 0,
    min: 0,
    max: u64::MAX,
};

/// `pool.sticky.ttl`
pub const STICKY_TTL: Duration = Duration::from_secs(3600);

/// `pool.sticky.max_entries`
pub const STICKY_MAX_ENTRIES: Int = Int {
    default: 100_000,
    min: 1,
    max: 100_000_000,
};

/// `anycast.table`
pub const ANYCAST_TABLE: Int = Int {
    default: 100,
    min: 1,
    max: u32::MAX as u64 - 1,
};

/// `anycast.converge`
pub const ANYCAST_CONVERGE: Duration = Duration::from_secs(2);

/// `anycast.announce_delay`
pub const ANYCAST_ANNOUNCE_DELAY: Duration = Duration::from_secs(1);

/// `sync.max_queue`
pub const SYNC_MAX_QUEUE: Int = Int {
    default: 65536,
    min: 16,
    max: 1 << 24,
};

/// Every constant above, by config key.
pub const TABLE: &[(&str, Setting)] = &[
    ("global.workers", Setting::Int(GLOBAL_WORKERS)),
    (
        "global.shutdown_timeout",
        Setting::Duration(GLOBAL_SHUTDOWN_TIMEOUT),
    ),
    ("pool.weight", Setting::Int(POOL_WEIGHT)),
    ("pool.max_connections", Setting::Int(POOL_MAX_CONNECTIONS)),
    (
        "pool.connect_timeout",
        Setting::Duration(POOL_CONNECT_TIMEOUT),
    ),
    ("pool.retries", Setting::Int(POOL_RETRIES)),
    ("pool.queue_size", Setting::Int(POOL_QUEUE_SIZE)),
    ("pool.queue_timeout", Setting::Duration(POOL_QUEUE_TIMEOUT)),
    ("pool.passive_failures", Setting::Int(POOL_PASSIVE_FAILURES)),
    ("pool.slow_start", Setting::Duration(POOL_SLOW_START)),
    (
        "pool.outlier.ejection_time",
        Setting::Duration(OUTLIER_EJECTION_TIME),
    ),
    (
        "pool.outlier.consecutive_5xx",
        Setting::Int(OUTLIER_CONSECUTIVE_5XX),
    ),
    (
        "pool.outlier.consecutive_failures",
        Setting::Int(OUTLIER_CONSECUTIVE_FAILURES),
    ),
    (
        "pool.outlier.max_ejected_percent",
        Setting::Int(OUTLIER_MAX_EJECTED_PERCENT),
    ),
    (
        "listener.accept_proxy_timeout",
        Setting::Duration(LISTENER_ACCEPT_PROXY_TIMEOUT),
    ),
    ("listener.rate_limit.rate", Setting::Int(RATE_LIMIT_RATE)),
    (
        "listener.rate_limit.max_connections",
        Setting::Int(RATE_LIMIT_MAX_CONNECTIONS),
    ),
    (
        "listener.rate_limit.max_clients",
        Setting::Int(RATE_LIMIT_MAX_CLIENTS),
    ),
    ("pool.health.interval", Setting::Duration(HEALTH_INTERVAL)),
    ("pool.health.timeout", Setting::Duration(HEALTH_TIMEOUT)),
    ("pool.health.port", Setting::Int(HEALTH_PORT)),
    ("pool.health.rise", Setting::Int(HEALTH_RISE)),
    ("pool.health.fall", Setting::Int(HEALTH_FALL)),
    (
        "listener.max_connections",
        Setting::Int(LISTENER_MAX_CONNECTIONS),
    ),
    ("listener.queue_size", Setting::Int(LISTENER_QUEUE_SIZE)),
    (
        "listener.queue_timeout",
        Setting::Duration(LISTENER_QUEUE_TIMEOUT),
    ),
    ("listener.backlog", Setting::Int(LISTENER_BACKLOG)),
    ("listener.max_flows", Setting::Int(LISTENER_MAX_FLOWS)),
    ("vrrp.vrid", Setting::Int(VRRP_VRID)),
    ("vrrp.priority", Setting::Int(VRRP_PRIORITY)),
    ("vrrp.garp_interval", Setting::Duration(VRRP_GARP_INTERVAL)),
    ("vrrp.vip_lifetime", Setting::Duration(VRRP_VIP_LIFETIME)),
    (
        "vrrp.handover_timeout",
        Setting::Duration(VRRP_HANDOVER_TIMEOUT),
    ),
    (
        "vrrp.notify_timeout",
        Setting::Duration(VRRP_NOTIFY_TIMEOUT),
    ),
    ("vrrp.garp_count", Setting::Int(VRRP_GARP_COUNT)),
    ("vrrp.garp_refresh", Setting::Duration(VRRP_GARP_REFRESH)),
    (
        "listener.routes.split.weight",
        Setting::Int(ROUTE_SPLIT_WEIGHT),
    ),
    (
        "listener.routes.rate_limit.rate",
        Setting::Int(ROUTE_RATE_LIMIT_RATE),
    ),
    (
        "listener.routes.rate_limit.max_clients",
        Setting::Int(ROUTE_RATE_LIMIT_MAX_CLIENTS),
    ),
    (
        "listener.header_timeout",
        Setting::Duration(HTTP_HEADER_TIMEOUT),
    ),
    (
        "listener.keepalive_timeout",
        Setting::Duration(HTTP_KEEPALIVE_TIMEOUT),
    ),
    (
        "listener.max_header_bytes",
        Setting::Int(HTTP_MAX_HEADER_BYTES),
    ),
    ("listener.max_headers", Setting::Int(HTTP_MAX_HEADERS)),
    ("listener.max_body_bytes", Setting::Int(HTTP_MAX_BODY_BYTES)),
    ("pool.sticky.ttl", Setting::Duration(STICKY_TTL)),
    ("pool.sticky.max_entries", Setting::Int(STICKY_MAX_ENTRIES)),
    ("anycast.table", Setting::Int(ANYCAST_TABLE)),
    ("anycast.converge", Setting::Duration(ANYCAST_CONVERGE)),
    (
        "anycast.announce_delay",
        Setting::Duration(ANYCAST_ANNOUNCE_DELAY),
    ),
    ("sync.max_queue", Setting::Int(SYNC_MAX_QUEUE)),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_default_lies_in_its_range_and_keys_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for (key, s) in TABLE {
            if let Setting::Int(i) = s {
                assert!(i.min <= i.default && i.default <= i.max, "{key}: {i:?}");
            }
            assert!(seen.insert(*key), "{key} twice");
        }
    }

    #[test]
    fn the_defaults_are_what_a_minimal_config_gets() {
        let src = "[[pool]]\nname = \"p\"\nbackends = [{ address = \"127.0.0.1:1\" }]\n\
                   [[listener]]\nname = \"l\"\nbind = \"127.0.0.1:2\"\npool = \"p\"\n";
        let cfg = crate::config::parse(std::path::Path::new("t.toml"), src).expect("valid");
        let (p, l) = (&cfg.pools[0], &cfg.listeners[0]);
        assert_eq!(p.retries as u64, POOL_RETRIES.default);
        assert_eq!(p.queue_size as u64, POOL_QUEUE_SIZE.default);
        assert_eq!(p.connect_timeout, POOL_CONNECT_TIMEOUT);
        assert_eq!(p.health.rise as u64, HEALTH_RISE.default);
        assert_eq!(p.health.fall as u64, HEALTH_FALL.default);
        assert_eq!(p.health.interval, HEALTH_INTERVAL);
        assert_eq!(p.backends[0].weight as u64, POOL_WEIGHT.default);
        assert_eq!(l.backlog as u64, LISTENER_BACKLOG.default);
        assert_eq!(l.queue_size as u64, LISTENER_QUEUE_SIZE.default);
        assert_eq!(cfg.global.shutdown_timeout, GLOBAL_SHUTDOWN_TIMEOUT);
    }
}
