//! HTTP/HTTPS parts of the config: listener options, routes, upstream
//! behaviour of pools. Routes are kept as validated strings here (the
//! config must compare equal across reloads); `l7::router::build_route`
//! compiles one into the router's matching types, and `crate::preflight`
//! runs it once so every bad regex or header name is a config error with
//! its position.

use super::defaults;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use super::{raw, Validator};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HttpListenerConfig {
    pub routes: Vec<RouteConfig>,
    /// Certificates of an https listener (None: plain http).
    pub tls: Option<Vec<CertConfig>>,
    /// Versions, suites, groups and client certificates of an https listener.
    pub tls_opts: TlsOptions,
    /// `Strict-Transport-Security` value added to https responses.
    pub hsts: Option<String>,
    /// Request id header added when absent ("" disables).
    pub request_id: Option<String>,
    /// Also send an RFC 7239 `Forwarded` header.
    pub forwarded: bool,
    /// Clients whose X-Forwarded-For, Forwarded and request id are kept
    /// (and appended to); everyone else's are replaced.
    pub trusted_proxies: Vec<Cidr>,
    /// HTTP/2: ALPN h2 on https, h2c with prior knowledge on http.
    pub http2: bool,
    /// Slow clients (slowloris) are cut when the request head takes longer.
    pub header_timeout: Duration,
    /// Idle keep-alive connections are closed after this.
    pub keepalive_timeout: Duration,
    pub max_header_bytes: usize,
    pub max_headers: usize,
    /// 0 = unlimited.
    pub max_body_bytes: u64,
    /// Response bodies for errors tandem generates (502, 503, 504, ...).
    pub error_pages: BTreeMap<u16, String>,
}

/// An address block, `10.0.0.0/8` or `2001:db8::/32` (a bare address is a
/// single host).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Cidr {
    pub addr: std::net::IpAddr,
    pub prefix: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: std::net::IpAddr = a
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not an address or address/prefix"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            None => max,
            Some(p) => match p.trim().parse::<u8>() {
                Ok(n) if n <= max => n,
                _ => return Err(format!("{s:?}: prefix must be 0..={max}")),
            },
        };
        Ok(Cidr { addr, prefix })
    }

    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        use std::net::IpAddr;
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - self.prefix as u32).unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX.checked_shl(128 - self.prefix as u32).unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CertConfig {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub names: Option<Vec<String>>,
    pub default: bool,
    /// OCSP response to staple; None = `<cert>.ocsp` if present.
    pub ocsp: Option<PathBuf>,
}

/// TLS settings of an https listener beyond its certificates.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct TlsOptions {
    /// CA bundle that client certificates must chain to (mTLS).
    pub client_ca: Option<PathBuf>,
    /// `client_auth = "required"`: no certificate, no handshake;
    /// "optional": clients without one are served without the header.
    pub client_auth_required: bool,
    /// Header (lowercase) carrying the verified subject to backends; any
    /// client-sent header of that name is always removed.
    pub client_subject_header: Option<String>,
    /// Refuse TLS 1.2 (`min_version = "1.3"`).
    pub min_tls13: bool,
    pub cipher_suites: Vec<String>,
    pub groups: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RouteConfig {
    pub name: String,
    pub matcher: MatchConfig,
    pub action: ActionConfig,
    pub request_headers: HeaderOpsConfig,
    pub response_headers: HeaderOpsConfig,
    /// Response cache size in bytes; None = not cached.
    pub cache: Option<usize>,
    pub compress: Option<CompressConfig>,
    /// Per-client request rate on this route (429 above it).
    pub rate_limit: Option<super::policy::RateLimitConfig>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct MatchConfig {
    pub host: Option<String>,
    pub path_prefix: Option<String>,
    pub path_exact: Option<String>,
    pub path_regex: Option<String>,
    pub methods: Vec<String>,
    pub headers: Vec<(String, ValueMatchConfig)>,
    pub cookies: Vec<(String, ValueMatchConfig)>,
    pub query: Vec<(String, ValueMatchConfig)>,
    pub sources: Vec<Cidr>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum ValueMatchConfig {
    Present,
    Equals(String),
    Regex(String),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum ActionConfig {
    Forward {
        pool: String,
        split: Vec<(String, u32)>,
        split_sticky: bool,
        strip_prefix: Option<String>,
        rewrite_path: Option<String>,
    },
    Redirect {
        status: u16,
        location: String,
    },
    Respond {
        status: u16,
        body: String,
        content_type: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct HeaderOpsConfig {
    pub set: Vec<(String, String)>,
    pub add: Vec<(String, String)>,
    pub remove: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum StickyConfig {
    /// tandem's own cookie naming the backend by an opaque token.
    Cookie { name: String },
    /// Learn the application's session cookie from Set-Cookie.
    AppCookie {
        name: String,
        ttl: Duration,
        max_entries: usize,
    },
    /// Consistent hash of the client address.
    SourceIp,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UpstreamTlsConfig {
    /// CA file to verify backends with; None = `verify = "none"`.
    pub verify: Option<PathBuf>,
    pub server_name: Option<String>,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
}

/// How a pool talks HTTP to its backends.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HttpPoolConfig {
    pub sticky: Option<StickyConfig>,
    pub http2: bool,
    pub tls: Option<UpstreamTlsConfig>,
    pub max_idle_per_backend: usize,
    pub idle_timeout: Duration,
    pub response_timeout: Duration,
    /// `[global] sticky_secret`, copied here so the pool's tokens need nothing else.
    #[serde(skip_serializing)]
    pub sticky_secret: Option<super::StickySecret>,
}

impl Default for HttpPoolConfig {
    fn default() -> Self {
        HttpPoolConfig {
            sticky: None,
            http2: false,
            tls: None,
            max_idle_per_backend: 1024,
            idle_timeout: Duration::from_secs(90),
            response_timeout: Duration::from_secs(60),
            sticky_secret: None,
        }
    }
}

/// Default response cache size per cached route.
pub const DEFAULT_CACHE_BYTES: usize = 64 * 1024 * 1024;

fn value_match_raw(v: &raw::ValueMatch) -> Result<ValueMatchConfig, String> {
    match v {
        raw::ValueMatch::Present(true) => Ok(ValueMatchConfig::Present),
        raw::ValueMatch::Present(false) => {
            Err("`false` cannot be matched; omit the key instead".into())
        }
        raw::ValueMatch::Equals(s) => Ok(ValueMatchConfig::Equals(s.clone())),
        raw::ValueMatch::Table(t) => match (&t.equals, &t.regex, t.present) {
            (Some(e), None, None) => Ok(ValueMatchConfig::Equals(e.clone())),
            (None, Some(r), None) => Ok(ValueMatchConfig::Regex(r.clone())),
            (None, None, Some(true)) => Ok(ValueMatchConfig::Present),
            _ => Err("use exactly one of equals, regex, present = true".into()),
        },
    }
}

fn ops_raw(o: Option<raw::HeaderOps>) -> HeaderOpsConfig {
    match o {
        None => HeaderOpsConfig::default(),
        Some(o) => HeaderOpsConfig {
            set: o.set.unwrap_or_default().into_iter().collect(),
            add: o.add.unwrap_or_default().into_iter().collect(),
            remove: o.remove.unwrap_or_default(),
        },
    }
}

impl Validator<'_> {
    /// Validates one route of `listener[i]`.
    fn route(
        &mut self,
        li: usize,
        ri: usize,
        r: raw::Route,
        pools: &std::collections::HashSet<&str>,
    ) -> Option<RouteConfig> {
        let at = |k: &str| format!("listener[{li}].routes[{ri}].{k}");
        let name = r.name.clone().unwrap_or_else(|| format!("route{ri}"));
        let mut matcher = MatchConfig::default();
        if let Some(m) = r.matcher {
            matcher.host = m.host;
            matcher.path_prefix = m.path_prefix;
            matcher.path_exact = m.path_exact;
            matcher.path_regex = m.path_regex;
            matcher.methods = match m.method {
                None => Vec::new(),
                Some(raw::OneOrMany::One(s)) => vec![s],
                Some(raw::OneOrMany::Many(v)) => v,
            };
            for (k, src) in m.source.unwrap_or_default().iter().enumerate() {
                match Cidr::parse(src) {
                    Ok(c) => matcher.sources.push(c),
                    Err(e) => self.err(&at(&format!("match.source[{k}]")), e),
                }
            }
            for (field, map, out) in [
                ("header", m.header, &mut matcher.headers),
                ("cookie", m.cookie, &mut matcher.cookies),
                ("query", m.query, &mut matcher.query),
            ] {
                for (k, v) in map.unwrap_or_default() {
                    match value_match_raw(&v) {
                        Ok(vm) => out.push((k, vm)),
                        Err(e) => self.err(&at(&format!("match.{field}.{k}")), e),
                    }
                }
            }
        }
        let kinds = [
            r.pool.is_some(),
            r.split.is_some(),
            r.redirect.is_some(),
            r.respond.is_some(),
        ];
        if kinds.iter().filter(|k| **k).count() != 1 {
            self.err(
                &at("pool"),
                "a route needs exactly one of pool, split, redirect, respond",
            );
            return None;
        }
        if r.split_sticky.is_some() && r.split.is_none() {
            self.err(&at("split_sticky"), "only valid with split");
        }
        let mut split = Vec::new();
        for (k, t) in r.split.unwrap_or_default().into_iter().enumerate() {
            if !pools.contains(t.pool.as_str()) {
                self.err(
                    &at(&format!("split[{k}].pool")),
                    format!("no pool named {:?} is defined", t.pool),
                );
            }
            let w = self.int(
                &at(&format!("split[{k}].weight")),
                Some(t.weight),
                defaults::ROUTE_SPLIT_WEIGHT,
            );
            split.push((t.pool, w as u32));
        }
        let pool = match (r.pool, split.first()) {
            (Some(p), _) => Some(p),
            (None, Some((first, _))) => {
                if split.iter().all(|(_, w)| *w == 0) {
                    self.err(&at("split"), "at least one weight must be greater than 0");
                }
                Some(first.clone())
            }
            (None, None) if kinds[1] => {
                self.err(&at("split"), "a split needs at least one pool");
                return None;
            }
            (None, None) => None,
        };
        if (r.strip_prefix.is_some() || r.rewrite_path.is_some()) && pool.is_none() {
            self.err(
                &at("strip_prefix"),
                "strip_prefix/rewrite_path only apply to routes with a pool",
            );
        }
        if r.strip_prefix.is_some() && r.rewrite_path.is_some() {
            self.err(
                &at("rewrite_path"),
                "use strip_prefix or rewrite_path, not both",
            );
        }
        let action = if let Some(pool) = pool {
            if split.is_empty() && !pools.contains(pool.as_str()) {
                self.err(&at("pool"), format!("no pool named {pool:?} is defined"));
            }
            ActionConfig::Forward {
                pool,
                split,
                split_sticky: r.split_sticky.unwrap_or(false),
                strip_prefix: r.strip_prefix,
                rewrite_path: r.rewrite_path,
            }
        } else if let Some(red) = r.redirect {
            let status = red.status.unwrap_or(301);
            let status = u16::try_from(status).unwrap_or(0);
            if let Err(e) = validate_status_redirect(status) {
                self.err(&at("redirect.status"), e);
            }
            ActionConfig::Redirect {
                status,
                location: red.location,
            }
        } else if let Some(resp) = r.respond {
            let status = u16::try_from(resp.status.unwrap_or(200)).unwrap_or(0);
            if let Err(e) = validate_status_respond(status) {
                self.err(&at("respond.status"), e);
            }
            ActionConfig::Respond {
                status,
                body: resp.body.unwrap_or_default(),
                content_type: resp.content_type,
            }
        } else {
            return None;
        };
        let cache = match r.cache {
            None | Some(raw::CacheOpt::On(false)) => None,
            Some(raw::CacheOpt::On(true)) => Some(DEFAULT_CACHE_BYTES),
            Some(raw::CacheOpt::Table(t)) => {
                let b = self.range(
                    &at("cache.max_bytes"),
                    t.max_bytes,
                    DEFAULT_CACHE_BYTES as u64,
                    4096,
                    1 << 40,
                );
                Some(b as usize)
            }
        };
        let compress = match r.compress {
            None | Some(raw::CompressOpt::On(false)) => None,
            Some(raw::CompressOpt::On(true)) => Some(CompressConfig::default()),
            Some(raw::CompressOpt::Table(t)) => {
                let mut c = CompressConfig::default();
                if let Some(types) = t.types {
                    for (k, ty) in types.iter().enumerate() {
                        let ok = ty.split('/').count() == 2
                            && !ty.starts_with('/')
                            && ty.bytes().all(|b| b.is_ascii_graphic() && b != b';');
                        if !ok {
                            self.err(
                                &at(&format!("compress.types[{k}]")),
                                format!("{ty:?} is not a media type (\"text/html\", or \"text/\" for a family)"),
                            );
                        }
                    }
                    if types.is_empty() {
                        self.err(&at("compress.types"), "needs at least one type");
                    }
                    c.types = types.iter().map(|t| t.to_ascii_lowercase()).collect();
                }
                c.min_bytes = self.range(
                    &at("compress.min_bytes"),
                    t.min_bytes,
                    c.min_bytes,
                    0,
                    1 << 30,
                );
                Some(c)
            }
        };
        if compress.is_some() && !matches!(action, ActionConfig::Forward { .. }) {
            self.err(
                &at("compress"),
                "only applies to routes with a pool or split",
            );
        }
        let rate_limit = r.rate_limit.map(|rl| {
            let rat = |k: &str| at(&format!("rate_limit.{k}"));
            if rl.max_connections.is_some() {
                self.err(
                    &rat("max_connections"),
                    "connections belong to listeners: set it in the listener's rate_limit",
                );
            }
            let rate = self.int(&rat("rate"), rl.rate, defaults::ROUTE_RATE_LIMIT_RATE) as u32;
            super::policy::RateLimitConfig {
                rate,
                burst: self.range(&rat("burst"), rl.burst, rate as u64, 1, 10_000_000) as u32,
                max_connections: 0,
                max_clients: self.int(
                    &rat("max_clients"),
                    rl.max_clients,
                    defaults::ROUTE_RATE_LIMIT_MAX_CLIENTS,
                ) as u32,
            }
        });
        let cfg = RouteConfig {
            name,
            matcher,
            action,
            request_headers: ops_raw(r.request_headers),
            response_headers: ops_raw(r.response_headers),
            cache,
            compress,
            rate_limit,
        };
        Some(cfg)
    }

    /// The HTTP part of `listener[i]`; `pool` is the listener's own `pool`
    /// key, a shorthand for a single default route.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn http_listener(
        &mut self,
        i: usize,
        l: &mut raw::Listener,
        https: bool,
        pool: Option<&str>,
        pools: &std::collections::HashSet<&str>,
    ) -> HttpListenerConfig {
        let at = |k: &str| format!("listener[{i}].{k}");
        let mut routes = Vec::new();
        for (ri, r) in l.routes.take().unwrap_or_default().into_iter().enumerate() {
            if let Some(rc) = self.route(i, ri, r, pools) {
                routes.push(rc);
            }
        }
        if let Some(p) = pool {
            // `pool = "web"` on an http listener: the default route.
            routes.push(RouteConfig {
                name: "default".into(),
                matcher: MatchConfig::default(),
                action: ActionConfig::Forward {
                    pool: p.to_string(),
                    split: Vec::new(),
                    split_sticky: false,
                    strip_prefix: None,
                    rewrite_path: None,
                },
                request_headers: HeaderOpsConfig::default(),
                response_headers: HeaderOpsConfig::default(),
                cache: None,
                compress: None,
                rate_limit: None,
            });
        }
        if routes.is_empty() {
            self.err(&at("routes"), "an http listener needs routes (or a pool)");
        }
        let mut tls_opts = TlsOptions::default();
        let tls = match (l.tls.take(), https) {
            (Some(t), true) => {
                let tat = |k: &str| format!("listener[{i}].tls.{k}");
                tls_opts.min_tls13 = match t.min_version.as_deref() {
                    None | Some("1.2") => false,
                    Some("1.3") => true,
                    Some(v) => {
                        self.err(
                            &tat("min_version"),
                            format!("{v:?}: expected \"1.2\" or \"1.3\""),
                        );
                        false
                    }
                };
                tls_opts.cipher_suites = t.cipher_suites.clone().unwrap_or_default();
                tls_opts.groups = t.groups.clone().unwrap_or_default();
                tls_opts.client_ca = t.client_ca.as_ref().map(PathBuf::from);
                tls_opts.client_auth_required = match t.client_auth.as_deref() {
                    None | Some("required") => true,
                    Some("optional") => false,
                    Some(v) => {
                        self.err(
                            &tat("client_auth"),
                            format!("{v:?}: expected \"required\" or \"optional\""),
                        );
                        true
                    }
                };
                if tls_opts.client_ca.is_some() {
                    let h = t
                        .client_subject_header
                        .clone()
                        .unwrap_or_else(|| "X-Client-Subject".into());
                    if http::HeaderName::from_bytes(h.as_bytes()).is_err() {
                        self.err(
                            &tat("client_subject_header"),
                            format!("{h:?} is not a valid header name"),
                        );
                    }
                    tls_opts.client_subject_header = Some(h.to_ascii_lowercase());
                } else {
                    for (k, set) in [
                        ("client_auth", t.client_auth.is_some()),
                        ("client_subject_header", t.client_subject_header.is_some()),
                    ] {
                        if set {
                            self.err(&tat(k), "only valid with client_ca");
                        }
                    }
                }
                if t.certificates.is_empty() {
                    self.err(
                        &at("tls.certificates"),
                        "at least one certificate is needed",
                    );
                }
                let defaults = t
                    .certificates
                    .iter()
                    .filter(|c| c.default == Some(true))
                    .count();
                if defaults > 1 {
                    self.err(
                        &at("tls.certificates"),
                        "only one certificate can be the default",
                    );
                }
                let certs: Vec<CertConfig> = t
                    .certificates
                    .into_iter()
                    .map(|c| CertConfig {
                        cert: PathBuf::from(c.cert),
                        key: PathBuf::from(c.key),
                        names: c.names,
                        default: c.default.unwrap_or(false),
                        ocsp: c.ocsp.map(PathBuf::from),
                    })
                    .collect();
                Some(certs)
            }
            (None, true) => {
                self.err(
                    &at("tls"),
                    "an https listener needs tls = { certificates = [...] }",
                );
                None
            }
            (Some(_), false) => {
                self.err(&at("tls"), "tls is only valid with protocol = \"https\"");
                None
            }
            (None, false) => None,
        };
        if l.hsts.is_some() && !https {
            self.err(&at("hsts"), "hsts is only valid with protocol = \"https\"");
        }
        let mut error_pages = BTreeMap::new();
        for (k, body) in l.error_pages.take().unwrap_or_default() {
            match k.parse::<u16>() {
                Ok(code) if (400..=599).contains(&code) => {
                    error_pages.insert(code, body);
                }
                _ => self.err(
                    &format!("listener[{i}].error_pages.{k}"),
                    "keys are HTTP error statuses 400..=599",
                ),
            }
        }
        let request_id = match l.request_id.take() {
            None => Some("X-Request-Id".to_string()),
            Some(s) if s.is_empty() => None,
            Some(s) => {
                if http::HeaderName::from_bytes(s.as_bytes()).is_err() {
                    self.err(
                        &at("request_id"),
                        format!("{s:?} is not a valid header name"),
                    );
                }
                Some(s)
            }
        };
        let header_timeout = self.duration(
            &at("header_timeout"),
            l.header_timeout.as_deref(),
            defaults::HTTP_HEADER_TIMEOUT,
        );
        let keepalive_timeout = self.duration(
            &at("keepalive_timeout"),
            l.keepalive_timeout.as_deref(),
            defaults::HTTP_KEEPALIVE_TIMEOUT,
        );
        if header_timeout.is_zero() {
            self.err(&at("header_timeout"), "must be greater than 0");
        }
        let mut trusted_proxies = Vec::new();
        for (k, t) in l
            .trusted_proxies
            .take()
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            match Cidr::parse(t) {
                Ok(c) => trusted_proxies.push(c),
                Err(e) => self.err(&format!("listener[{i}].trusted_proxies[{k}]"), e),
            }
        }
        HttpListenerConfig {
            routes,
            tls,
            tls_opts,
            hsts: l.hsts.take(),
            request_id,
            forwarded: l.forwarded.unwrap_or(false),
            trusted_proxies,
            http2: l.http2.unwrap_or(true),
            header_timeout,
            keepalive_timeout,
            max_header_bytes: self.int(
                &at("max_header_bytes"),
                l.max_header_bytes,
                defaults::HTTP_MAX_HEADER_BYTES,
            ) as usize,
            max_headers: self.int(
                &at("max_headers"),
                l.max_headers,
                defaults::HTTP_MAX_HEADERS,
            ) as usize,
            max_body_bytes: self.int(
                &at("max_body_bytes"),
                l.max_body_bytes,
                defaults::HTTP_MAX_BODY_BYTES,
            ),
            error_pages,
        }
    }

    pub(super) fn http_pool(&mut self, i: usize, p: &mut raw::Pool) -> HttpPoolConfig {
        let at = |k: &str| format!("pool[{i}].{k}");
        let d = HttpPoolConfig::default();
        let sticky = p.sticky.take().and_then(|s| match s.mode.as_str() {
            "cookie" => Some(StickyConfig::Cookie {
                name: s.name.unwrap_or_else(|| "TANDEM_SRV".into()),
            }),
            "app_cookie" => match s.name {
                Some(name) => Some(StickyConfig::AppCookie {
                    name,
                    ttl: self.duration(&at("sticky.ttl"), s.ttl.as_deref(), defaults::STICKY_TTL),
                    max_entries: self.int(
                        &at("sticky.max_entries"),
                        s.max_entries,
                        defaults::STICKY_MAX_ENTRIES,
                    ) as usize,
                }),
                None => {
                    self.err(
                        &at("sticky.name"),
                        "app_cookie needs the application's cookie name",
                    );
                    None
                }
            },
            "source_ip" => Some(StickyConfig::SourceIp),
            other => {
                self.err(
                    &at("sticky.mode"),
                    format!("unknown mode {other:?}; expected cookie, app_cookie or source_ip"),
                );
                None
            }
        });
        let tls = p.tls.take().map(|t| {
            if t.client_cert.is_some() != t.client_key.is_some() {
                self.err(
                    &at("tls.client_key"),
                    "client_cert and client_key go together",
                );
            }
            let verify = if t.verify == "none" {
                None
            } else {
                Some(PathBuf::from(&t.verify))
            };
            UpstreamTlsConfig {
                verify,
                server_name: t.server_name,
                client_cert: t.client_cert.map(PathBuf::from),
                client_key: t.client_key.map(PathBuf::from),
            }
        });
        HttpPoolConfig {
            sticky,
            http2: p.http2.unwrap_or(false),
            tls,
            max_idle_per_backend: self.range(
                &at("max_idle_per_backend"),
                p.max_idle_per_backend,
                d.max_idle_per_backend as u64,
                0,
                100_000,
            ) as usize,
            idle_timeout: self.duration(
                &at("upstream_idle_timeout"),
                p.upstream_idle_timeout.as_deref(),
                d.idle_timeout,
            ),
            response_timeout: self.duration(
                &at("response_timeout"),
                p.response_timeout.as_deref(),
                d.response_timeout,
            ),
            sticky_secret: None,
        }
    }
}

/// `compress = true` or `compress = { types = [...], min_bytes = N }`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CompressConfig {
    /// Content types (without parameters) to compress; an entry ending in
    /// '/' is a whole family (`text/`).
    pub types: Vec<String>,
    /// Responses with a smaller Content-Length are sent as they are.
    pub min_bytes: u64,
}

/// What `compress = true` compresses.
pub const DEFAULT_COMPRESS_TYPES: &[&str] = &[
    "text/",
    "application/json",
    "application/javascript",
    "application/xml",
    "application/xhtml+xml",
    "application/rss+xml",
    "application/atom+xml",
    "application/wasm",
    "image/svg+xml",
];

impl Default for CompressConfig {
    fn default() -> Self {
        CompressConfig {
            types: DEFAULT_COMPRESS_TYPES
                .iter()
                .map(|s| s.to_string())
                .collect(),
            min_bytes: 256,
        }
    }
}

/// Status codes allowed for a `Redirect` action (RFC 9110 §15.4).
pub fn validate_status_redirect(status: u16) -> Result<(), String> {
    match status {
        301 | 302 | 303 | 307 | 308 => Ok(()),
        _ => Err(format!(
            "redirect status {status} is not one of 301, 302, 303, 307, 308"
        )),
    }
}

/// Status codes allowed for a `Respond` action: a final status (RFC 9110
/// §15); 1xx are interim and cannot end an exchange.
pub fn validate_status_respond(status: u16) -> Result<(), String> {
    if (200..=599).contains(&status) {
        Ok(())
    } else {
        Err(format!("respond status {status} is not within 200..=599"))
    }
}
