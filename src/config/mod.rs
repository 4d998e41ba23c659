//! Configuration: TOML text → raw serde structs → validated, typed [`Config`].
//!
//! Lifecycle: [`load`] reads a file, parses it once into a spanned tree, then
//! deserializes each section and each array element separately so that one
//! bad pool does not hide the errors of the next one. Semantic validation
//! (ranges, references, duplicates) runs on everything that deserialized and
//! reports by key path. `tandem check`, start-up and reload all call [`load`];
//! an invalid config never replaces a valid one.

pub mod diag;
pub mod duration;
mod raw;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;
use toml::de::{DeTable, DeValue, ValueDeserializer};

pub use diag::{ConfigErrors, Diagnostic, SpanIndex};

use crate::balance::Algorithm;

/// The validated configuration of one node.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Config {
    pub file: PathBuf,
    pub global: Global,
    pub pools: Vec<PoolConfig>,
    pub listeners: Vec<ListenerConfig>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Global {
    pub admin_socket: PathBuf,
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
}

impl Config {
    pub fn pool(&self, name: &str) -> Option<&PoolConfig> {
        self.pools.iter().find(|p| p.name == name)
    }
}

/// Reads and validates a config file.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let src = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![Diagnostic {
            file: path.to_path_buf(),
            line: 1,
            col: 1,
            key: String::new(),
            message: format!("cannot read file: {e}"),
        }])
    })?;
    parse(path, &src)
}

/// Validates config text; `path` is used in messages and stored in the result.
pub fn parse(path: &Path, src: &str) -> Result<Config, ConfigErrors> {
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
        Ok(cfg)
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

const SECTIONS: &str = "global, pool, listener";

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
        for (key, value) in root.into_iter() {
            match key.get_ref().as_ref() {
                "global" => {
                    if let Some(g) = self.de::<raw::Global>(value) {
                        global = g;
                    }
                }
                "pool" => pools = self.array_of_tables::<raw::Pool>("pool", value),
                "listener" => listeners = self.array_of_tables::<raw::Listener>("listener", value),
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
        let pools: Vec<PoolConfig> = pools.into_iter().map(|(_, p)| p).collect();
        let pool_names: HashSet<&str> = pools.iter().map(|p| p.name.as_str()).collect();
        let listeners: Vec<(usize, ListenerConfig)> = listeners
            .into_iter()
            .filter_map(|(i, l)| self.listener(i, l, &pool_names).map(|l| (i, l)))
            .collect();
        self.unique_names(
            "listener",
            listeners.iter().map(|(i, l)| (*i, l.name.as_str())),
        );
        let mut binds = HashSet::new();
        for (i, l) in &listeners {
            // Port 0 only appears as the placeholder of an invalid bind.
            if l.bind.port() != 0 && !binds.insert((l.bind, l.protocol)) {
                self.err(
                    &format!("listener[{i}].bind"),
                    format!(
                        "{} {} is already used by another listener",
                        proto_name(l.protocol),
                        l.bind
                    ),
                );
            }
        }
        Config {
            file: path.to_path_buf(),
            global,
            pools,
            listeners: listeners.into_iter().map(|(_, l)| l).collect(),
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
        Global {
            admin_socket,
            workers,
            shutdown_timeout,
            log_level,
        }
    }

    fn pool(&mut self, i: usize, p: raw::Pool) -> Option<PoolConfig> {
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
        for (j, b) in p.backends.into_iter().enumerate() {
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
        let health = self.health(i, p.health.unwrap_or_default());
        let connect_timeout = self.duration(
            &at("connect_timeout"),
            p.connect_timeout.as_deref(),
            Duration::from_secs(3),
        );
        if connect_timeout.is_zero() {
            self.err(&at("connect_timeout"), "must be greater than 0");
        }
        let cfg = PoolConfig {
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
        };
        Some(cfg)
    }

    fn health(&mut self, i: usize, h: raw::Health) -> HealthConfig {
        let at = |k: &str| format!("pool[{i}].health.{k}");
        let kind = h.check.as_deref().unwrap_or("tcp");
        let check = match kind {
            "none" => HealthCheck::None,
            "tcp" => HealthCheck::Tcp,
            "http" => {
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
                }
            }
            other => {
                self.err(
                    &at("check"),
                    format!("unknown check {other:?}; expected tcp, http or none"),
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
                        format!("only valid with check = \"http\", not {kind:?}"),
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
        l: raw::Listener,
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
            other => {
                self.err(
                    &at("protocol"),
                    format!("unknown protocol {other:?}; expected tcp or udp"),
                );
                Protocol::Tcp
            }
        };
        let pool = l.pool.unwrap_or_default();
        if pool.is_empty() {
            self.err(&at("pool"), "missing required key `pool`");
        } else if !pools.contains(pool.as_str()) {
            self.err(&at("pool"), format!("no pool named {pool:?} is defined"));
        }
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
            Protocol::Tcp => Duration::from_secs(300),
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
        };
        Some(cfg)
    }
}

fn proto_name(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
    }
}

/// `IP:PORT` or `[IPv6]:PORT`; names are not resolved so a config means the
/// same thing on every start, whatever DNS says.
pub fn parse_socket_addr(s: &str) -> Result<SocketAddr, String> {
    s.parse::<SocketAddr>().map_err(|_| {
        format!("{s:?} is not an address with a port: write e.g. \"10.0.0.11:8080\" or \"[2001:db8::1]:80\"")
    })
}
