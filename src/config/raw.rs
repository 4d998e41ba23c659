//! Raw serde shapes of the TOML file. Every struct denies unknown keys so a
//! typo is an error, never a silently ignored setting. Optional fields stay
//! `Option` here; defaults and ranges are applied by the validator, which
//! knows the key path to blame.

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Global {
    pub admin_socket: Option<String>,
    pub admin_listen: Option<String>,
    pub admin_token: Option<String>,
    pub sticky_secret: Option<String>,
    pub metrics_listen: Option<String>,
    pub workers: Option<u64>,
    pub shutdown_timeout: Option<String>,
    pub log_level: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pool {
    pub name: String,
    pub algorithm: Option<String>,
    #[serde(default)]
    pub backends: Vec<Backend>,
    pub health: Option<Health>,
    pub connect_timeout: Option<String>,
    pub retries: Option<u64>,
    pub queue_size: Option<u64>,
    pub queue_timeout: Option<String>,
    pub passive_failures: Option<u64>,
    pub slow_start: Option<String>,
    pub outlier: Option<Outlier>,
    // HTTP upstream behaviour (pools used by http/https listeners).
    pub sticky: Option<Sticky>,
    pub http2: Option<bool>,
    pub tls: Option<UpstreamTls>,
    pub max_idle_per_backend: Option<u64>,
    pub upstream_idle_timeout: Option<String>,
    pub response_timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Outlier {
    pub consecutive_5xx: Option<u64>,
    pub consecutive_failures: Option<u64>,
    pub ejection_time: Option<String>,
    pub max_ejection_time: Option<String>,
    pub max_ejected_percent: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backend {
    pub address: String,
    pub name: Option<String>,
    pub weight: Option<u64>,
    pub backup: Option<bool>,
    pub max_connections: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Health {
    pub check: Option<String>,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub rise: Option<u64>,
    pub fall: Option<u64>,
    pub port: Option<u64>,
    pub path: Option<String>,
    pub host: Option<String>,
    pub expect_status: Option<Vec<u16>>,
    pub expect_body: Option<String>,
    /// check = "https": CA file or "none"; default: the pool's tls.verify.
    pub verify: Option<String>,
    pub sni: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    pub name: String,
    pub bind: String,
    pub protocol: Option<String>,
    pub pool: Option<String>,
    pub max_connections: Option<u64>,
    pub queue_size: Option<u64>,
    pub queue_timeout: Option<String>,
    pub idle_timeout: Option<String>,
    pub send_proxy: Option<String>,
    pub splice: Option<String>,
    pub backlog: Option<u64>,
    pub max_flows: Option<u64>,
    // Client admission (every protocol; PROXY and rate limits: TCP-based).
    pub allow: Option<Vec<String>>,
    pub deny: Option<Vec<String>>,
    pub accept_proxy: Option<bool>,
    pub accept_proxy_from: Option<Vec<String>>,
    pub accept_proxy_timeout: Option<String>,
    pub rate_limit: Option<RateLimit>,
    // HTTP / HTTPS listeners.
    pub routes: Option<Vec<Route>>,
    pub tls: Option<ListenerTls>,
    pub hsts: Option<String>,
    pub request_id: Option<String>,
    pub forwarded: Option<bool>,
    pub trusted_proxies: Option<Vec<String>>,
    pub http2: Option<bool>,
    pub header_timeout: Option<String>,
    pub keepalive_timeout: Option<String>,
    pub max_header_bytes: Option<u64>,
    pub max_headers: Option<u64>,
    pub max_body_bytes: Option<u64>,
    pub access_log: Option<AccessLogOpt>,
    pub error_pages: Option<std::collections::BTreeMap<String, String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub rate: Option<u64>,
    pub burst: Option<u64>,
    pub max_connections: Option<u64>,
    pub max_clients: Option<u64>,
}

/// `access_log = true` or `access_log = { format = "json", path = "..." }`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum AccessLogOpt {
    On(bool),
    Table(AccessLogTable),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessLogTable {
    pub format: Option<String>,
    pub path: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerTls {
    pub certificates: Vec<Certificate>,
    pub client_ca: Option<String>,
    pub client_auth: Option<String>,
    pub client_subject_header: Option<String>,
    pub min_version: Option<String>,
    pub cipher_suites: Option<Vec<String>>,
    pub groups: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Certificate {
    pub cert: String,
    pub key: String,
    pub names: Option<Vec<String>>,
    pub default: Option<bool>,
    pub ocsp: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    pub name: Option<String>,
    #[serde(rename = "match")]
    pub matcher: Option<Match>,
    pub pool: Option<String>,
    pub split: Option<Vec<SplitTarget>>,
    pub split_sticky: Option<bool>,
    pub strip_prefix: Option<String>,
    pub rewrite_path: Option<String>,
    pub redirect: Option<Redirect>,
    pub respond: Option<Respond>,
    pub request_headers: Option<HeaderOps>,
    pub response_headers: Option<HeaderOps>,
    pub cache: Option<CacheOpt>,
    pub compress: Option<CompressOpt>,
    pub rate_limit: Option<RateLimit>,
}

/// `compress = true` or `compress = { types = [...], min_bytes = 1024 }`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum CompressOpt {
    On(bool),
    Table(CompressTable),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompressTable {
    pub types: Option<Vec<String>>,
    pub min_bytes: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitTarget {
    pub pool: String,
    pub weight: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Match {
    pub source: Option<Vec<String>>,
    pub host: Option<String>,
    pub path_prefix: Option<String>,
    pub path_exact: Option<String>,
    pub path_regex: Option<String>,
    pub method: Option<OneOrMany>,
    pub header: Option<std::collections::BTreeMap<String, ValueMatch>>,
    pub cookie: Option<std::collections::BTreeMap<String, ValueMatch>>,
    pub query: Option<std::collections::BTreeMap<String, ValueMatch>>,
}

/// `"value"` (equals), `true` (present) or `{ regex = "..." }`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum ValueMatch {
    Present(bool),
    Equals(String),
    Table(ValueMatchTable),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValueMatchTable {
    pub equals: Option<String>,
    pub regex: Option<String>,
    pub present: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderOps {
    pub set: Option<std::collections::BTreeMap<String, String>>,
    pub add: Option<std::collections::BTreeMap<String, String>>,
    pub remove: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Redirect {
    pub status: Option<u64>,
    pub location: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Respond {
    pub status: Option<u64>,
    pub body: Option<String>,
    pub content_type: Option<String>,
}

/// `cache = true` or `cache = { max_bytes = 67108864 }`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum CacheOpt {
    On(bool),
    Table(CacheTable),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheTable {
    pub max_bytes: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sticky {
    pub mode: String,
    pub name: Option<String>,
    pub ttl: Option<String>,
    pub max_entries: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTls {
    pub verify: String,
    pub server_name: Option<String>,
    pub client_cert: Option<String>,
    pub client_key: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vrrp {
    pub name: String,
    pub interface: String,
    pub vrid: u64,
    pub priority: Option<u64>,
    pub advert_interval: Option<String>,
    #[serde(default)]
    pub virtual_ips: Vec<String>,
    pub preempt: Option<bool>,
    pub preempt_delay: Option<String>,
    pub version: Option<u64>,
    pub checksum: Option<String>,
    pub unicast_peers: Option<Vec<String>>,
    pub unicast_source: Option<String>,
    #[serde(default)]
    pub track: Vec<Track>,
    #[serde(default)]
    pub track_interfaces: Vec<String>,
    pub notify: Option<String>,
    pub notify_timeout: Option<String>,
    pub sync_group: Option<String>,
    pub garp_count: Option<u64>,
    pub garp_interval: Option<String>,
    pub garp_refresh: Option<String>,
    pub vip_lifetime: Option<String>,
    pub handover_timeout: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Track {
    pub pool: String,
    pub weight: Option<i64>,
}
