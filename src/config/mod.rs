//! Configuration: TOML text → raw serde structs → validated, typed [`Config`].
//!
//! Lifecycle: [`load`] reads a file, parses it once into a spanned tree, then
//! deserializes each section and each array element separately so that one
//! bad pool does not hide the errors of the next one. Semantic validation
//! (ranges, references, duplicates) runs on everything that deserialized and
//! reports by key path. `tandem check`, start-up and reload all call [`load`];
//! an invalid config never replaces a valid one.

pub mod accesslog;
mod anycast;
pub mod defaults;
pub mod diag;
pub mod duration;
mod global;
mod http;
mod listener;
pub mod policy;
mod pool;
mod raw;
mod sync;
mod vrrp;

pub use anycast::AnycastConfig;
pub use http::*;
pub use sync::SyncConfig;
pub use vrrp::{parse_cidr, DEFAULT_PREEMPT_DELAY};

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use toml::de::{DeTable, DeValue, ValueDeserializer};

pub use diag::{ConfigErrors, Diagnostic, SpanIndex};

/// The validated configuration of one node.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Config {
    pub file: PathBuf,
    pub global: Global,
    pub pools: Vec<PoolConfig>,
    pub listeners: Vec<ListenerConfig>,
    pub vrrp: Vec<VrrpConfig>,
    pub anycast: Vec<AnycastConfig>,
    pub sync: Option<SyncConfig>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Global {
    pub admin_socket: PathBuf,
    /// The admin API over TCP too (requires `admin_token`); off by default.
    pub admin_listen: Option<SocketAddr>,
    #[serde(skip_serializing)]
    pub admin_token: Option<String>,
    /// Keys sticky cookies (HMAC); shared by the pair so a failover keeps stickiness.
    #[serde(skip_serializing)]
    pub sticky_secret: Option<StickySecret>,
    /// Prometheus `/metrics` and the status page; off by default.
    pub metrics_listen: Option<SocketAddr>,
    /// Data-plane threads; the VRRP election always has its own thread.
    pub workers: usize,
    pub shutdown_timeout: Duration,
    pub log_level: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PoolConfig {
    pub name: String,
    #[serde(serialize_with = "ser_algorithm")]
    pub algorithm: Algorithm,
    pub backends: Vec<BackendConfig>,
    pub health: HealthConfig,
    pub connect_timeout: Duration,
    pub retries: u32,
    pub queue_size: u32,
    pub queue_timeout: Duration,
    /// Consecutive failed connections in live traffic that mark a backend
    /// down until active checks bring it back; 0 disables passive checks.
    pub passive_failures: u32,
    /// A backend that comes back up ramps its weight from 1 to its full
    /// weight over this time; zero = at once.
    pub slow_start: Duration,
    /// Ejection of backends that fail live traffic; None = off.
    pub outlier: Option<OutlierConfig>,
    /// How HTTP listeners talk to this pool's backends.
    pub http: HttpPoolConfig,
}

/// `outlier = { consecutive_5xx = 5, consecutive_failures = 5, ... }`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct OutlierConfig {
    /// 5xx responses in a row (HTTP) that eject; 0 = not by status.
    pub consecutive_5xx: u32,
    /// Connect failures or timeouts in a row that eject; 0 = not by failures.
    pub consecutive_failures: u32,
    /// First ejection; each further ejection of the same backend lasts
    /// this much longer (doubling), up to `max_ejection_time`.
    pub ejection_time: Duration,
    pub max_ejection_time: Duration,
    /// Never eject when that would leave more than this share of the pool
    /// ejected.
    pub max_ejected_percent: u32,
}

fn ser_algorithm<S: serde::Serializer>(a: &Algorithm, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(a.name())
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BackendConfig {
    pub name: String,
    pub address: SocketAddr,
    pub weight: u32,
    pub backup: bool,
    /// 0 = unlimited.
    pub max_connections: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "check", rename_all = "snake_case")]
pub enum HealthCheck {
    None,
    Tcp,
    Http {
        path: String,
        host: Option<String>,
        expect_status: Vec<u16>,
        expect_body: Option<String>,
        /// `check = "https"`: the probe speaks TLS with these settings.
        tls: Option<UpstreamTlsConfig>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HealthConfig {
    pub check: HealthCheck,
    pub interval: Duration,
    pub timeout: Duration,
    pub rise: u32,
    pub fall: u32,
    /// Probe this port instead of the backend's own.
    pub port: Option<u16>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    Tcp,
    Udp,
    Http,
    Https,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProxyProtocol {
    None,
    V1,
    V2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SpliceMode {
    /// Copy small exchanges, switch to splice(2) once a transfer looks bulk.
    Auto,
    Always,
    Never,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ListenerConfig {
    pub name: String,
    pub bind: SocketAddr,
    pub protocol: Protocol,
    pub pool: String,
    /// 0 = unlimited.
    pub max_connections: u32,
    pub queue_size: u32,
    pub queue_timeout: Duration,
    pub idle_timeout: Duration,
    pub send_proxy: ProxyProtocol,
    pub splice: SpliceMode,
    pub backlog: u32,
    /// UDP only: bound on the client flow table.
    pub max_flows: u32,
    /// HTTP/HTTPS listeners: routes, TLS and HTTP limits.
    pub http: Option<HttpListenerConfig>,
    /// Client-address allow/deny lists.
    pub acl: policy::AclConfig,
    /// Read a PROXY header from each client connection (TCP, HTTP).
    pub accept_proxy: Option<policy::AcceptProxyConfig>,
    /// Per-client rate and connection limits (TCP, HTTP).
    pub rate_limit: Option<policy::RateLimitConfig>,
    /// One line per request (HTTP) or connection (TCP); None = off.
    pub access_log: Option<accesslog::AccessLogConfig>,
}

/// How the IPv4 VRRPv3 checksum is computed on transmit (receive accepts
/// every form): implementations disagree, see VRRP.md §2.4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChecksumMode {
    /// IPv4 pseudo-header included: keepalived's default, Wireshark's "good".
    PseudoHeader,
    /// VRRP bytes only: RFC 9568, Cisco, Juniper.
    Plain,
}

/// VRRP protocol version. Lives here, on the ground floor, so the config can
/// hold it typed; the codec and the state machine use the same type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum VrrpVersion {
    /// RFC 3768: IPv4 only, interval in whole seconds, no pseudo-header.
    V2,
    /// RFC 5798 / RFC 9568: IPv4 and IPv6, interval in centiseconds.
    V3,
}

impl VrrpVersion {
    /// The number in the packet's version nibble.
    pub fn number(self) -> u8 {
        match self {
            VrrpVersion::V2 => 2,
            VrrpVersion::V3 => 3,
        }
    }
}

/// The advertisement interval as the wire carries it, in centiseconds: the
/// one conversion from the configured duration (rounded to the nearest
/// representable value and clamped into the field's range: v3 12 bits of
/// centiseconds, RFC 5798 §5.2.7; v2 8 bits of whole seconds, RFC 3768 §5.3.7).
pub fn interval_centiseconds(version: VrrpVersion, d: Duration) -> u16 {
    let cs = match version {
        VrrpVersion::V3 => ((d.as_millis() + 5) / 10).clamp(1, 4095),
        VrrpVersion::V2 => ((d.as_millis() + 500) / 1000).clamp(1, 255) * 100,
    };
    // Both ranges fit: at most 4095 cs and 25500 cs.
    u16::try_from(cs).unwrap_or(u16::MAX)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct VirtualIp {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl std::fmt::Display for VirtualIp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrackPool {
    pub pool: String,
    /// Priority change while the pool has no healthy backend; None = FAULT.
    pub weight: Option<i32>,
}

/// One VRRP instance (virtual router): an election for a set of VIPs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VrrpConfig {
    pub name: String,
    pub interface: String,
    pub vrid: u8,
    pub priority: u8,
    pub advert_interval: Duration,
    pub virtual_ips: Vec<VirtualIp>,
    pub preempt: bool,
    pub preempt_delay: Duration,
    pub version: VrrpVersion,
    pub checksum: ChecksumMode,
    pub unicast_peers: Vec<IpAddr>,
    pub unicast_source: Option<IpAddr>,
    pub track: Vec<TrackPool>,
    pub track_interfaces: Vec<String>,
    pub notify: Option<PathBuf>,
    pub notify_timeout: Duration,
    pub sync_group: Option<String>,
    pub garp_count: u32,
    pub garp_interval: Duration,
    /// Periodic gratuitous ARP while master; zero = off.
    pub garp_refresh: Duration,
    /// Self-fencing: VIPs are added with this lifetime and renewed while
    /// master, so a killed daemon's address disappears by itself. Zero =
    /// permanent addresses.
    pub vip_lifetime: Duration,
    /// Make-before-break on graceful stop: keep the VIPs until the new
    /// master is heard, or this long.
    pub handover_timeout: Duration,
}

impl VrrpConfig {
    /// One address family per instance (validated): IPv6 when its virtual
    /// IPs are IPv6, which makes it a VRRPv3-over-IPv6 virtual router.
    pub fn is_ipv6(&self) -> bool {
        self.virtual_ips.first().is_some_and(|v| v.addr.is_ipv6())
    }

    /// Max Adver Int as sent on the wire.
    pub fn interval_cs(&self) -> u16 {
        interval_centiseconds(self.version, self.advert_interval)
    }
}

impl Config {
    pub fn pool(&self, name: &str) -> Option<&PoolConfig> {
        self.pools.iter().find(|p| p.name == name)
    }
}

/// The text of a config file (an unreadable file is a diagnostic like any other).
pub fn read(path: &Path) -> Result<String, ConfigErrors> {
    std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![Diagnostic {
            file: path.to_path_buf(),
            line: 1,
            col: 1,
            key: String::new(),
            message: format!("cannot read file: {e}"),
        }])
    })
}

/// Validates config text; `path` is used in messages and stored in the result.
pub fn parse(path: &Path, src: &str) -> Result<Config, ConfigErrors> {
    parse_spanned(path, src).map(|(cfg, _)| cfg)
}

/// Like [`parse`], also returning where each key sits, so a later step (`crate::preflight`:
/// what needs another module or a file) reports at the same `file:line:col: key`.
pub fn parse_spanned(path: &Path, src: &str) -> Result<(Config, SpanIndex), ConfigErrors> {
    let root = match DeTable::parse(src) {
        Ok(r) => r,
        Err(e) => {
            let idx = SpanIndex::bare(path, src);
            return Err(ConfigErrors(vec![idx.at_span(
                e.span(),
                format!("TOML syntax: {}", diag::clean_serde_message(e.message())),
            )]));
        }
    };
    let idx = SpanIndex::new(path, src, &root);
    let mut v = Validator {
        idx: &idx,
        errors: Vec::new(),
    };
    let cfg = v.document(path, root.into_inner());
    if v.errors.is_empty() {
        Ok((cfg, idx))
    } else {
        v.errors.sort_by_key(|d| (d.line, d.col));
        v.errors.dedup();
        Err(ConfigErrors(v.errors))
    }
}

struct Validator<'a> {
    idx: &'a SpanIndex,
    errors: Vec<Diagnostic>,
}

const SECTIONS: &str = "global, pool, listener, vrrp, anycast, sync";

impl Validator<'_> {
    fn err(&mut self, path: &str, msg: impl Into<String>) {
        self.errors.push(self.idx.at_path(path, msg));
    }

    fn de<T: serde::de::DeserializeOwned>(
        &mut self,
        value: toml::Spanned<DeValue<'_>>,
    ) -> Option<T> {
        match T::deserialize(ValueDeserializer::from(value)) {
            Ok(t) => Some(t),
            Err(e) => {
                let d = self
                    .idx
                    .at_span(e.span(), diag::clean_serde_message(e.message()));
                self.errors.push(d);
                None
            }
        }
    }

    fn array_of_tables<T: serde::de::DeserializeOwned>(
        &mut self,
        name: &str,
        value: toml::Spanned<DeValue<'_>>,
    ) -> Vec<(usize, T)> {
        let mut out = Vec::new();
        match value.into_inner() {
            DeValue::Array(items) => {
                for (i, item) in items.into_iter().enumerate() {
                    if let Some(t) = self.de::<T>(item) {
                        out.push((i, t));
                    }
                }
            }
            _ => self.err(
                name,
                format!("must be an array of tables: write [[{name}]] sections"),
            ),
        }
        out
    }

    fn document(&mut self, path: &Path, root: DeTable<'_>) -> Config {
        let mut global = raw::Global::default();
        let mut pools = Vec::new();
        let mut listeners = Vec::new();
        let mut vrrp = Vec::new();
        let mut anycast = Vec::new();
        let mut sync = None;
        for (key, value) in root.into_iter() {
            match key.get_ref().as_ref() {
                "global" => {
                    if let Some(g) = self.de::<raw::Global>(value) {
                        global = g;
                    }
                }
                "pool" => pools = self.array_of_tables::<raw::Pool>("pool", value),
                "listener" => listeners = self.array_of_tables::<raw::Listener>("listener", value),
                "vrrp" => vrrp = self.array_of_tables::<raw::Vrrp>("vrrp", value),
                "anycast" => anycast = self.array_of_tables("anycast", value),
                "sync" => sync = self.de::<sync::RawSync>(value),
                other => {
                    let other = other.to_string();
                    self.err(
                        &other,
                        format!("unknown section `{other}`; expected one of {SECTIONS}"),
                    );
                }
            }
        }
        let global = self.global(global);
        let pools: Vec<(usize, PoolConfig)> = pools
            .into_iter()
            .filter_map(|(i, p)| self.pool(i, p).map(|p| (i, p)))
            .collect();
        self.unique_names("pool", pools.iter().map(|(i, p)| (*i, p.name.as_str())));
        let pools: Vec<PoolConfig> = pools
            .into_iter()
            .map(|(_, mut p)| {
                p.http.sticky_secret = global.sticky_secret.clone();
                p
            })
            .collect();
        let pool_names: HashSet<&str> = pools.iter().map(|p| p.name.as_str()).collect();
        let listeners: Vec<(usize, ListenerConfig)> = listeners
            .into_iter()
            .filter_map(|(i, l)| self.listener(i, l, &pool_names).map(|l| (i, l)))
            .collect();
        self.unique_names(
            "listener",
            listeners.iter().map(|(i, l)| (*i, l.name.as_str())),
        );
        self.bind_conflicts(&global, &listeners);
        let vrrp: Vec<(usize, VrrpConfig)> = vrrp
            .into_iter()
            .map(|(i, v)| (i, self.vrrp(i, v, &pool_names)))
            .collect();
        self.vrrp_cross_checks(&vrrp);
        let anycast = self.anycasts(anycast, &pool_names);
        let sync = sync.and_then(|s| self.sync(s));
        Config {
            file: path.to_path_buf(),
            global,
            pools,
            listeners: listeners.into_iter().map(|(_, l)| l).collect(),
            vrrp: vrrp.into_iter().map(|(_, v)| v).collect(),
            anycast,
            sync,
        }
    }

    fn unique_names<'n>(&mut self, section: &str, names: impl Iterator<Item = (usize, &'n str)>) {
        let mut seen = HashSet::new();
        for (i, n) in names {
            if !seen.insert(n) {
                self.err(
                    &format!("{section}[{i}].name"),
                    format!("duplicate {section} name {n:?}"),
                );
            }
        }
    }

    fn duration(&mut self, path: &str, v: Option<&str>, default: Duration) -> Duration {
        match v {
            None => default,
            Some(s) => match duration::parse(s) {
                Ok(d) => d,
                Err(e) => {
                    self.err(path, e);
                    default
                }
            },
        }
    }

    /// An integer setting with its default and range from [`defaults`].
    fn int(&mut self, path: &str, v: Option<u64>, d: defaults::Int) -> u64 {
        self.range(path, v, d.default, d.min, d.max)
    }

    fn range(&mut self, path: &str, v: Option<u64>, default: u64, lo: u64, hi: u64) -> u64 {
        match v {
            None => default,
            Some(x) if x < lo || x > hi => {
                self.err(path, format!("{x} is out of range {lo}..={hi}"));
                default
            }
            Some(x) => x,
        }
    }

    /// A Linux interface name: 1-15 bytes, no '/' or whitespace.
    fn interface_name(&mut self, path: &str, name: &str) {
        if name.is_empty() || name.len() > 15 || name.contains(['/', ' ']) {
            self.err(path, format!("{name:?} is not a valid interface name"));
        }
    }

    fn name(&mut self, path: &str, name: &str) {
        let ok = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'));
        if !ok {
            self.err(
                path,
                format!("invalid name {name:?}: use 1-64 letters, digits, '-', '_', '.', ':'"),
            );
        }
    }
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Http => "http",
            Protocol::Https => "https",
        }
    }

    /// Listening over TCP (everything but UDP).
    pub fn is_stream(self) -> bool {
        self != Protocol::Udp
    }
}

/// `IP:PORT` or `[IPv6]:PORT`; names are not resolved so a config means the
/// same thing on every start, whatever DNS says.
pub fn parse_socket_addr(s: &str) -> Result<SocketAddr, String> {
    s.parse::<SocketAddr>().map_err(|_| {
        format!("{s:?} is not an address with a port: write e.g. \"10.0.0.11:8080\" or \"[2001:db8::1]:80\"")
    })
}

/// A pool's balancing algorithm, by its configuration name (`balance` builds it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    RoundRobin,
    WeightedRoundRobin,
    LeastConnections,
    LeastResponseTime,
    SourceHash,
    RandomTwoChoices,
    Maglev,
}

impl Algorithm {
    pub const ALL: [Algorithm; 7] = [
        Algorithm::RoundRobin,
        Algorithm::WeightedRoundRobin,
        Algorithm::LeastConnections,
        Algorithm::LeastResponseTime,
        Algorithm::SourceHash,
        Algorithm::RandomTwoChoices,
        Algorithm::Maglev,
    ];

    /// The configuration name.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::RoundRobin => "round_robin",
            Algorithm::WeightedRoundRobin => "weighted_round_robin",
            Algorithm::LeastConnections => "least_connections",
            Algorithm::LeastResponseTime => "least_response_time",
            Algorithm::SourceHash => "source_hash",
            Algorithm::RandomTwoChoices => "random_two_choices",
            Algorithm::Maglev => "maglev",
        }
    }

    pub fn from_name(s: &str) -> Option<Algorithm> {
        Algorithm::ALL.into_iter().find(|a| a.name() == s)
    }
}

/// The secret that keys cookie tokens, as configured (`[global] sticky_secret`). Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct StickySecret(std::sync::Arc<[u8]>);

impl StickySecret {
    pub fn new(secret: &str) -> StickySecret {
        StickySecret(std::sync::Arc::from(secret.as_bytes()))
    }

    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for StickySecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StickySecret(..)")
    }
}
