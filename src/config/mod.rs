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
pub mod diag;
pub mod duration;
mod http;
pub mod policy;
mod raw;
mod sync;

pub use anycast::AnycastConfig;
pub use http::*;
pub use sync::SyncConfig;

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

    /// Binds that `run` would fail on with EADDRINUSE, found here so that `check` says so.
    /// TCP and UDP have separate ports, and the protocols over TCP (tcp, http, https, the admin
    /// and metrics listeners) share one: two listening TCP sockets cannot have the same address
    /// and port, and a wildcard (0.0.0.0 or [::]) takes the port on every address of its family
    /// even with SO_REUSEADDR. UDP sockets with SO_REUSEADDR may overlap a wildcard (the most
    /// specific one receives), so only identical UDP binds are refused.
    fn bind_conflicts(&mut self, global: &Global, listeners: &[(usize, ListenerConfig)]) {
        struct Bind {
            key: String,
            what: String,
            addr: SocketAddr,
            stream: bool,
        }
        let mut binds: Vec<Bind> = Vec::new();
        for (key, addr) in [
            ("global.admin_listen", global.admin_listen),
            ("global.metrics_listen", global.metrics_listen),
        ] {
            if let Some(addr) = addr {
                binds.push(Bind {
                    key: key.into(),
                    what: key.trim_start_matches("global.").into(),
                    addr,
                    stream: true,
                });
            }
        }
        // Port 0 only appears as the placeholder of an invalid bind.
        for (i, l) in listeners.iter().filter(|(_, l)| l.bind.port() != 0) {
            binds.push(Bind {
                key: format!("listener[{i}].bind"),
                what: format!("listener {:?}", l.name),
                addr: l.bind,
                stream: l.protocol.is_stream(),
            });
        }
        for (n, b) in binds.iter().enumerate() {
            let clash = binds[..n].iter().find(|a| {
                a.stream == b.stream
                    && a.addr.port() == b.addr.port()
                    && a.addr.is_ipv4() == b.addr.is_ipv4()
                    && (a.addr.ip() == b.addr.ip()
                        || (b.stream
                            && (a.addr.ip().is_unspecified() || b.addr.ip().is_unspecified())))
            });
            if let Some(a) = clash {
                let transport = if b.stream { "tcp" } else { "udp" };
                let why = if a.addr.ip() == b.addr.ip() {
                    String::new()
                } else {
                    format!(
                        " (a wildcard bind takes {transport} port {} on every address of its family)",
                        b.addr.port()
                    )
                };
                self.err(
                    &b.key,
                    format!(
                        "{transport} {} is already used by {} on {}{why}: `run` would fail with EADDRINUSE",
                        b.addr, a.what, a.addr
                    ),
                );
            }
        }
    }

    fn global(&mut self, g: raw::Global) -> Global {
        let admin_socket = PathBuf::from(
            g.admin_socket
                .as_deref()
                .unwrap_or("/run/tandem/admin.sock"),
        );
        if !admin_socket.is_absolute() {
            self.err("global.admin_socket", "must be an absolute path");
        }
        let workers = self.range("global.workers", g.workers, 0, 0, 256) as usize;
        let shutdown_timeout = self.duration(
            "global.shutdown_timeout",
            g.shutdown_timeout.as_deref(),
            Duration::from_secs(30),
        );
        let log_level = g.log_level.unwrap_or_else(|| "info".into());
        if !matches!(
            log_level.as_str(),
            "error" | "warn" | "info" | "debug" | "trace"
        ) {
            self.err(
                "global.log_level",
                format!("unknown level {log_level:?}; expected error, warn, info, debug or trace"),
            );
        }
        let mut addr = |key: &str, v: Option<String>| {
            v.and_then(|s| match parse_socket_addr(&s) {
                Ok(a) => Some(a),
                Err(e) => {
                    self.err(&format!("global.{key}"), e);
                    None
                }
            })
        };
        let admin_listen = addr("admin_listen", g.admin_listen);
        let metrics_listen = addr("metrics_listen", g.metrics_listen);
        let admin_token = g.admin_token;
        if admin_listen.is_some() && admin_token.as_ref().is_none_or(|t| t.len() < 16) {
            self.err(
                "global.admin_token",
                "admin_listen exposes the admin API over TCP: set admin_token (at least 16 characters)",
            );
        }
        let sticky_secret = g.sticky_secret.and_then(|s| {
            if s.len() < 16 {
                self.err(
                    "global.sticky_secret",
                    "too short to key sticky cookies: use at least 16 characters (the same on both nodes)",
                );
                return None;
            }
            Some(StickySecret::new(&s))
        });
        Global {
            admin_socket,
            admin_listen,
            admin_token,
            sticky_secret,
            metrics_listen,
            workers,
            shutdown_timeout,
            log_level,
        }
    }

    fn pool(&mut self, i: usize, mut p: raw::Pool) -> Option<PoolConfig> {
        let at = |k: &str| format!("pool[{i}].{k}");
        self.name(&at("name"), &p.name);
        let algorithm = match p.algorithm.as_deref() {
            None => Algorithm::RoundRobin,
            Some(s) => Algorithm::from_name(s).unwrap_or_else(|| {
                let all: Vec<&str> = Algorithm::ALL.iter().map(|a| a.name()).collect();
                self.err(
                    &at("algorithm"),
                    format!(
                        "unknown algorithm {s:?}; expected one of {}",
                        all.join(", ")
                    ),
                );
                Algorithm::RoundRobin
            }),
        };
        if p.backends.is_empty() {
            self.err(&at("backends"), "a pool needs at least one backend");
        }
        let mut backends = Vec::new();
        let mut names = HashSet::new();
        let mut addrs = HashSet::new();
        for (j, b) in std::mem::take(&mut p.backends).into_iter().enumerate() {
            let bat = |k: &str| format!("pool[{i}].backends[{j}].{k}");
            let address = match parse_socket_addr(&b.address) {
                Ok(a) => a,
                Err(e) => {
                    self.err(&bat("address"), e);
                    continue;
                }
            };
            if !addrs.insert(address) {
                self.err(
                    &bat("address"),
                    format!("backend {address} appears twice in this pool"),
                );
            }
            let name = b.name.unwrap_or_else(|| address.to_string());
            self.name(&bat("name"), &name);
            if !names.insert(name.clone()) {
                self.err(&bat("name"), format!("duplicate backend name {name:?}"));
            }
            backends.push(BackendConfig {
                name,
                address,
                weight: self.range(&bat("weight"), b.weight, 1, 1, 256) as u32,
                backup: b.backup.unwrap_or(false),
                max_connections: self.range(
                    &bat("max_connections"),
                    b.max_connections,
                    0,
                    0,
                    10_000_000,
                ) as u32,
            });
        }
        let http = self.http_pool(i, &mut p);
        let health = self.health(i, p.health.take().unwrap_or_default(), http.tls.as_ref());
        let connect_timeout = self.duration(
            &at("connect_timeout"),
            p.connect_timeout.as_deref(),
            Duration::from_secs(3),
        );
        if connect_timeout.is_zero() {
            self.err(&at("connect_timeout"), "must be greater than 0");
        }
        if p.slow_start.is_some() && algorithm == Algorithm::RoundRobin {
            self.err(
                &at("slow_start"),
                "round_robin ignores weights, so a slow start cannot ramp; use weighted_round_robin, least_connections or another weighted algorithm",
            );
        }
        let cfg = PoolConfig {
            http,
            name: p.name,
            algorithm,
            backends,
            health,
            connect_timeout,
            retries: self.range(&at("retries"), p.retries, 2, 0, 16) as u32,
            queue_size: self.range(&at("queue_size"), p.queue_size, 128, 0, 1_000_000) as u32,
            queue_timeout: self.duration(
                &at("queue_timeout"),
                p.queue_timeout.as_deref(),
                Duration::from_secs(3),
            ),
            passive_failures: self.range(&at("passive_failures"), p.passive_failures, 3, 0, 1000)
                as u32,
            slow_start: self.duration(&at("slow_start"), p.slow_start.as_deref(), Duration::ZERO),
            outlier: p.outlier.take().map(|o| self.outlier(i, o)),
        };
        Some(cfg)
    }

    fn outlier(&mut self, i: usize, o: raw::Outlier) -> OutlierConfig {
        let at = |k: &str| format!("pool[{i}].outlier.{k}");
        let ejection_time = self.duration(
            &at("ejection_time"),
            o.ejection_time.as_deref(),
            Duration::from_secs(10),
        );
        if ejection_time.is_zero() {
            self.err(&at("ejection_time"), "must be greater than 0");
        }
        let max_ejection_time = self.duration(
            &at("max_ejection_time"),
            o.max_ejection_time.as_deref(),
            (ejection_time * 30).max(Duration::from_secs(300)),
        );
        if max_ejection_time < ejection_time {
            self.err(
                &at("max_ejection_time"),
                "must not be shorter than ejection_time",
            );
        }
        let c = OutlierConfig {
            consecutive_5xx: self.range(&at("consecutive_5xx"), o.consecutive_5xx, 5, 0, 10_000)
                as u32,
            consecutive_failures: self.range(
                &at("consecutive_failures"),
                o.consecutive_failures,
                5,
                0,
                10_000,
            ) as u32,
            ejection_time,
            max_ejection_time,
            max_ejected_percent: self.range(
                &at("max_ejected_percent"),
                o.max_ejected_percent,
                50,
                1,
                100,
            ) as u32,
        };
        if c.consecutive_5xx == 0 && c.consecutive_failures == 0 {
            self.err(
                &at("consecutive_5xx"),
                "consecutive_5xx and consecutive_failures are both 0: nothing would eject",
            );
        }
        c
    }

    fn access_log(
        &mut self,
        i: usize,
        a: raw::AccessLogOpt,
        protocol: Protocol,
    ) -> Option<accesslog::AccessLogConfig> {
        use accesslog::{AccessLogConfig, LogFormat};
        let at = |k: &str| format!("listener[{i}].access_log{k}");
        if protocol == Protocol::Udp {
            self.err(&at(""), "only valid on tcp, http and https listeners");
            return None;
        }
        let t = match a {
            raw::AccessLogOpt::On(false) => return None,
            raw::AccessLogOpt::On(true) => {
                return Some(AccessLogConfig {
                    format: LogFormat::Tracing,
                    path: None,
                })
            }
            raw::AccessLogOpt::Table(t) => t,
        };
        let format = match t.format.as_deref() {
            None | Some("json") => LogFormat::Json,
            Some("common") => LogFormat::Common,
            Some(tpl) if tpl.contains('{') => {
                if let Err(e) = accesslog::check_template(tpl) {
                    self.err(&at(".format"), e);
                }
                LogFormat::Template(tpl.to_string())
            }
            Some(other) => {
                self.err(
                    &at(".format"),
                    format!("unknown format {other:?}; expected \"json\", \"common\" or a template with {{placeholders}}"),
                );
                LogFormat::Json
            }
        };
        let path = t.path.map(PathBuf::from);
        if let Some(p) = &path {
            if !p.is_absolute() {
                self.err(&at(".path"), "must be an absolute path");
            } else if !p.parent().is_some_and(|d| d.is_dir()) {
                self.err(
                    &at(".path"),
                    format!("directory of {} does not exist", p.display()),
                );
            } else if p.is_dir() {
                self.err(&at(".path"), format!("{} is a directory", p.display()));
            }
        }
        Some(AccessLogConfig { format, path })
    }

    /// `listener[i]`'s client admission: ACLs, PROXY from clients, rate limits.
    fn admission(
        &mut self,
        i: usize,
        l: &mut raw::Listener,
        protocol: Protocol,
    ) -> (
        policy::AclConfig,
        Option<policy::AcceptProxyConfig>,
        Option<policy::RateLimitConfig>,
    ) {
        let at = |k: &str| format!("listener[{i}].{k}");
        let mut cidrs = |key: &str, v: Option<Vec<String>>| -> Vec<Cidr> {
            let mut out = Vec::new();
            for (k, s) in v.unwrap_or_default().iter().enumerate() {
                match Cidr::parse(s) {
                    Ok(c) => out.push(c),
                    Err(e) => self.err(&format!("listener[{i}].{key}[{k}]"), e),
                }
            }
            out
        };
        let acl = policy::AclConfig {
            allow: cidrs("allow", l.allow.take()),
            deny: cidrs("deny", l.deny.take()),
        };
        let from = cidrs("accept_proxy_from", l.accept_proxy_from.take());
        let timeout = self.duration(
            &at("accept_proxy_timeout"),
            l.accept_proxy_timeout.as_deref(),
            Duration::from_secs(5),
        );
        let accept_proxy = if l.accept_proxy.unwrap_or(false) {
            if protocol == Protocol::Udp {
                self.err(
                    &at("accept_proxy"),
                    "only valid on tcp, http and https listeners",
                );
            }
            if timeout.is_zero() {
                self.err(&at("accept_proxy_timeout"), "must be greater than 0");
            }
            Some(policy::AcceptProxyConfig {
                trusted: from,
                timeout,
            })
        } else {
            for (k, set) in [
                ("accept_proxy_from", !from.is_empty()),
                ("accept_proxy_timeout", l.accept_proxy_timeout.is_some()),
            ] {
                if set {
                    self.err(&at(k), "only valid with accept_proxy = true");
                }
            }
            None
        };
        let rate_limit = l.rate_limit.take().map(|r| {
            let rat = |k: &str| format!("listener[{i}].rate_limit.{k}");
            if protocol == Protocol::Udp {
                self.err(
                    &at("rate_limit"),
                    "only valid on tcp, http and https listeners",
                );
            }
            let rate = self.range(&rat("rate"), r.rate, 0, 0, 10_000_000) as u32;
            let c = policy::RateLimitConfig {
                rate,
                burst: self.range(&rat("burst"), r.burst, rate.max(1) as u64, 1, 10_000_000) as u32,
                max_connections: self.range(
                    &rat("max_connections"),
                    r.max_connections,
                    0,
                    0,
                    10_000_000,
                ) as u32,
                max_clients: self.range(&rat("max_clients"), r.max_clients, 100_000, 16, 10_000_000)
                    as u32,
            };
            if c.rate == 0 && c.max_connections == 0 {
                self.err(
                    &rat("rate"),
                    "set rate, max_connections or both (both are 0: nothing is limited)",
                );
            }
            c
        });
        (acl, accept_proxy, rate_limit)
    }

    fn health(
        &mut self,
        i: usize,
        h: raw::Health,
        pool_tls: Option<&UpstreamTlsConfig>,
    ) -> HealthConfig {
        let at = |k: &str| format!("pool[{i}].health.{k}");
        let kind = h.check.as_deref().unwrap_or("tcp");
        let tls = if kind == "https" {
            let verify = match (h.verify.as_deref(), pool_tls) {
                (Some("none"), _) => None,
                (Some(path), _) => Some(PathBuf::from(path)),
                (None, Some(t)) => t.verify.clone(),
                (None, None) => {
                    self.err(
                        &at("verify"),
                        "check = \"https\" needs verify (a CA file, or \"none\" to skip verification) when the pool has no tls",
                    );
                    None
                }
            };
            Some(UpstreamTlsConfig {
                verify,
                server_name: h
                    .sni
                    .clone()
                    .or_else(|| pool_tls.and_then(|t| t.server_name.clone())),
                client_cert: pool_tls.and_then(|t| t.client_cert.clone()),
                client_key: pool_tls.and_then(|t| t.client_key.clone()),
            })
        } else {
            for (k, set) in [("verify", h.verify.is_some()), ("sni", h.sni.is_some())] {
                if set {
                    self.err(
                        &at(k),
                        format!("only valid with check = \"https\", not {kind:?}"),
                    );
                }
            }
            None
        };
        let check = match kind {
            "none" => HealthCheck::None,
            "tcp" => HealthCheck::Tcp,
            "http" | "https" => {
                let path = h.path.clone().unwrap_or_else(|| "/".into());
                if !path.starts_with('/') || path.chars().any(|c| c.is_whitespace()) {
                    self.err(
                        &at("path"),
                        format!("{path:?} must start with '/' and contain no spaces"),
                    );
                }
                let expect_status = h.expect_status.clone().unwrap_or_else(|| vec![200]);
                if expect_status.is_empty() {
                    self.err(&at("expect_status"), "needs at least one status code");
                }
                for (k, s) in expect_status.iter().enumerate() {
                    if !(100..=599).contains(s) {
                        self.err(
                            &format!("pool[{i}].health.expect_status[{k}]"),
                            format!("{s} is not an HTTP status (100..=599)"),
                        );
                    }
                }
                HealthCheck::Http {
                    path,
                    host: h.host.clone(),
                    expect_status,
                    expect_body: h.expect_body.clone(),
                    tls,
                }
            }
            other => {
                self.err(
                    &at("check"),
                    format!("unknown check {other:?}; expected tcp, http, https or none"),
                );
                HealthCheck::Tcp
            }
        };
        if !matches!(check, HealthCheck::Http { .. }) {
            for (k, set) in [
                ("path", h.path.is_some()),
                ("host", h.host.is_some()),
                ("expect_status", h.expect_status.is_some()),
                ("expect_body", h.expect_body.is_some()),
            ] {
                if set {
                    self.err(
                        &at(k),
                        format!("only valid with check = \"http\" or \"https\", not {kind:?}"),
                    );
                }
            }
        }
        let interval = self.duration(
            &at("interval"),
            h.interval.as_deref(),
            Duration::from_secs(2),
        );
        let timeout = self.duration(&at("timeout"), h.timeout.as_deref(), Duration::from_secs(1));
        if interval < Duration::from_millis(10) {
            self.err(&at("interval"), "must be at least 10ms");
        }
        if timeout.is_zero() {
            self.err(&at("timeout"), "must be greater than 0");
        } else if timeout >= interval {
            self.err(
                &at("timeout"),
                format!(
                    "timeout ({}) must be shorter than interval ({})",
                    duration::format(timeout),
                    duration::format(interval)
                ),
            );
        }
        let port = h
            .port
            .map(|p| self.range(&at("port"), Some(p), 1, 1, 65535) as u16);
        HealthConfig {
            check,
            interval,
            timeout,
            rise: self.range(&at("rise"), h.rise, 2, 1, 100) as u32,
            fall: self.range(&at("fall"), h.fall, 3, 1, 100) as u32,
            port,
        }
    }

    fn listener(
        &mut self,
        i: usize,
        mut l: raw::Listener,
        pools: &HashSet<&str>,
    ) -> Option<ListenerConfig> {
        let at = |k: &str| format!("listener[{i}].{k}");
        self.name(&at("name"), &l.name);
        let bind = match parse_socket_addr(&l.bind) {
            Ok(a) if a.port() == 0 => {
                self.err(&at("bind"), "port 0 is not a listening port");
                a
            }
            Ok(a) => a,
            Err(e) => {
                self.err(&at("bind"), e);
                SocketAddr::from(([0, 0, 0, 0], 0))
            }
        };
        let protocol = match l.protocol.as_deref().unwrap_or("tcp") {
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            "http" => Protocol::Http,
            "https" => Protocol::Https,
            other => {
                self.err(
                    &at("protocol"),
                    format!("unknown protocol {other:?}; expected tcp, udp, http or https"),
                );
                Protocol::Tcp
            }
        };
        let is_http = matches!(protocol, Protocol::Http | Protocol::Https);
        let (acl, accept_proxy, rate_limit) = self.admission(i, &mut l, protocol);
        let access_log = l
            .access_log
            .take()
            .and_then(|a| self.access_log(i, a, protocol));
        let pool = l.pool.take().unwrap_or_default();
        if pool.is_empty() && !is_http {
            self.err(&at("pool"), "missing required key `pool`");
        } else if !pool.is_empty() && !pools.contains(pool.as_str()) {
            self.err(&at("pool"), format!("no pool named {pool:?} is defined"));
        }
        let http = if is_http {
            Some(self.http_listener(
                i,
                &mut l,
                protocol == Protocol::Https,
                (!pool.is_empty()).then_some(pool.as_str()),
                pools,
            ))
        } else {
            let http_only = [
                ("routes", l.routes.is_some()),
                ("tls", l.tls.is_some()),
                ("hsts", l.hsts.is_some()),
                ("request_id", l.request_id.is_some()),
                ("forwarded", l.forwarded.is_some()),
                ("trusted_proxies", l.trusted_proxies.is_some()),
                ("http2", l.http2.is_some()),
                ("header_timeout", l.header_timeout.is_some()),
                ("keepalive_timeout", l.keepalive_timeout.is_some()),
                ("max_header_bytes", l.max_header_bytes.is_some()),
                ("max_headers", l.max_headers.is_some()),
                ("max_body_bytes", l.max_body_bytes.is_some()),
                ("error_pages", l.error_pages.is_some()),
            ];
            for (k, set) in http_only {
                if set {
                    self.err(&at(k), "only valid on http and https listeners");
                }
            }
            None
        };
        let send_proxy = match l.send_proxy.as_deref() {
            None | Some("none") => ProxyProtocol::None,
            Some("v1") => ProxyProtocol::V1,
            Some("v2") => ProxyProtocol::V2,
            Some(other) => {
                self.err(
                    &at("send_proxy"),
                    format!("unknown PROXY protocol version {other:?}; expected none, v1 or v2"),
                );
                ProxyProtocol::None
            }
        };
        if send_proxy != ProxyProtocol::None && protocol != Protocol::Tcp {
            self.err(&at("send_proxy"), "only valid on tcp listeners");
        }
        let splice = match l.splice.as_deref() {
            None | Some("auto") => SpliceMode::Auto,
            Some("always") => SpliceMode::Always,
            Some("never") => SpliceMode::Never,
            Some(other) => {
                self.err(
                    &at("splice"),
                    format!("unknown splice mode {other:?}; expected auto, always or never"),
                );
                SpliceMode::Auto
            }
        };
        let default_idle = match protocol {
            Protocol::Tcp | Protocol::Http | Protocol::Https => Duration::from_secs(300),
            Protocol::Udp => Duration::from_secs(30),
        };
        let idle_timeout =
            self.duration(&at("idle_timeout"), l.idle_timeout.as_deref(), default_idle);
        if idle_timeout.is_zero() {
            self.err(&at("idle_timeout"), "must be greater than 0");
        }
        let cfg = ListenerConfig {
            name: l.name,
            bind,
            protocol,
            pool,
            max_connections: self.range(
                &at("max_connections"),
                l.max_connections,
                10_000,
                0,
                10_000_000,
            ) as u32,
            queue_size: self.range(&at("queue_size"), l.queue_size, 1024, 0, 1_000_000) as u32,
            queue_timeout: self.duration(
                &at("queue_timeout"),
                l.queue_timeout.as_deref(),
                Duration::from_secs(5),
            ),
            idle_timeout,
            send_proxy,
            splice,
            backlog: self.range(&at("backlog"), l.backlog, 1024, 1, 65535) as u32,
            max_flows: self.range(&at("max_flows"), l.max_flows, 65536, 1, 10_000_000) as u32,
            http,
            acl,
            accept_proxy,
            rate_limit,
            access_log,
        };
        Some(cfg)
    }
}

/// A node that restarts waits this long as backup before it takes the
/// address back from a lower-priority master, so a crash-looping node
/// (systemd restarts it every few seconds) never keeps stealing the VIP.
pub const DEFAULT_PREEMPT_DELAY: Duration = Duration::from_secs(30);

impl Validator<'_> {
    fn vrrp(&mut self, i: usize, v: raw::Vrrp, pools: &HashSet<&str>) -> VrrpConfig {
        let at = |k: &str| format!("vrrp[{i}].{k}");
        self.name(&at("name"), &v.name);
        if v.interface.is_empty() || v.interface.len() > 15 || v.interface.contains(['/', ' ']) {
            self.err(
                &at("interface"),
                format!("{:?} is not a valid interface name", v.interface),
            );
        }
        let vrid = self.range(&at("vrid"), Some(v.vrid), 1, 1, 255) as u8;
        let priority = self.range(&at("priority"), v.priority, 100, 1, 255) as u8;
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
            Duration::from_millis(100),
        );
        let vip_lifetime = self.duration(
            &at("vip_lifetime"),
            v.vip_lifetime.as_deref(),
            Duration::from_secs(3),
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
            Duration::from_secs(2),
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
                Duration::from_secs(10),
            ),
            sync_group: v.sync_group,
            garp_count: self.range(&at("garp_count"), v.garp_count, 5, 1, 100) as u32,
            garp_interval,
            garp_refresh: self.duration(
                &at("garp_refresh"),
                v.garp_refresh.as_deref(),
                Duration::ZERO,
            ),
            vip_lifetime,
            handover_timeout,
        }
    }

    fn vrrp_cross_checks(&mut self, all: &[(usize, VrrpConfig)]) {
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
