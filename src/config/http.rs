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
            if let Err(e) = validate_status_redirect(status) {
                self.err(&at("redirect.status"), e);
            }
            ActionConfig::Redirect {
                // In range once validated (a rejected config is never used).
                status: u16::try_from(status).unwrap_or(301),
                location: red.location,
            }
        } else if let Some(resp) = r.respond {
            let status = resp.status.unwrap_or(200);
            if let Err(e) = validate_status_respond(status) {
                self.err(&at("respond.status"), e);
            }
            ActionConfig::Respond {
                status: u16::try_from(status).unwrap_or(200),
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
pub fn validate_status_redirect(status: u64) -> Result<(), String> {
    match status {
        301 | 302 | 303 | 307 | 308 => Ok(()),
        _ => Err(format!(
            "redirect status {status} is not one of 301, 302, 303, 307, 308"
        )),
    }
}

/// Status codes allowed for a `Respond` action: a final status (RFC 9110
/// §15); 1xx are interim and cannot end an exchange.
pub fn validate_status_respond(status: u64) -> Result<(), String> {
    if (200..=599).contains(&status) {
        Ok(())
    } else {
        Err(format!("respond status {status} is not within 200..=599"))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::global::tests::{check, ok, Row, POOL};
    use super::*;

    /// [`POOL`] and an http listener `h` (lines 4-7) with `keys` from line 8.
    fn h(keys: &str) -> String {
        format!("{POOL}[[listener]]\nname = \"h\"\nbind = \"127.0.0.1:8080\"\nprotocol = \"http\"\n{keys}\n")
    }

    /// Like [`h`] for an https listener.
    fn hs(keys: &str) -> String {
        format!("{POOL}[[listener]]\nname = \"h\"\nbind = \"127.0.0.1:8443\"\nprotocol = \"https\"\n{keys}\n")
    }

    /// `routes = [{ <route> }]` on line 8.
    fn route(r: &str) -> String {
        h(&format!("routes = [{{ {r} }}]"))
    }

    /// [`POOL`] with `keys` appended (line 4 on).
    fn p(keys: &str) -> String {
        format!("{POOL}{keys}\n")
    }

    const CERT: &str = "{ cert = \"/etc/t/c.pem\", key = \"/etc/t/c.key\" }";

    #[test]
    fn http_route_errors() {
        let rows: Vec<Row> = vec![
            // Matchers.
            (route("match = { header = { x-a = false } }, pool = \"web\""), "listener[0].routes[0].match.header.x-a", "`false` cannot be matched; omit the key instead", 8),
            (route("match = { cookie = { s = { equals = \"a\", regex = \"b\" } } }, pool = \"web\""), "listener[0].routes[0].match.cookie.s", "use exactly one of equals, regex, present = true", 8),
            (route("match = { query = { q = { present = false } } }, pool = \"web\""), "listener[0].routes[0].match.query.q", "use exactly one of", 8),
            (route("match = { query = { q = {} } }, pool = \"web\""), "listener[0].routes[0].match.query.q", "use exactly one of", 8),
            (route("match = { source = [\"10.0.0.0/33\"] }, pool = \"web\""), "listener[0].routes[0].match.source[0]", "prefix must be 0..=32", 8),
            // Actions: exactly one, and their own keys.
            (route("match = { host = \"a.test\" }"), "listener[0].routes[0].pool", "a route needs exactly one of pool, split, redirect, respond", 8),
            (route("redirect = { location = \"/x\" }, respond = { status = 204 }"), "listener[0].routes[0].pool", "exactly one of pool, split, redirect, respond", 8),
            (route("split = []"), "listener[0].routes[0].split", "a split needs at least one pool", 8),
            (route("split = [{ pool = \"web\", weight = 1000001 }]"), "listener[0].routes[0].split[0].weight", "1000001 is out of range 0..=1000000", 8),
            (route("pool = \"nope\""), "listener[0].routes[0].pool", "no pool named \"nope\" is defined", 8),
            (route("redirect = { location = \"https://a.test/\" }, strip_prefix = \"/a\""), "listener[0].routes[0].strip_prefix", "strip_prefix/rewrite_path only apply to routes with a pool", 8),
            (route("respond = { status = 204 }, rewrite_path = \"/b\""), "listener[0].routes[0].strip_prefix", "only apply to routes with a pool", 8),
            (route("pool = \"web\", strip_prefix = \"/a\", rewrite_path = \"/b\""), "listener[0].routes[0].rewrite_path", "use strip_prefix or rewrite_path, not both", 8),
            (route("redirect = { status = 200, location = \"/x\" }"), "listener[0].routes[0].redirect.status", "redirect status 200 is not one of 301, 302, 303, 307, 308", 8),
            (route("respond = { status = 101 }"), "listener[0].routes[0].respond.status", "respond status 101 is not within 200..=599", 8),
            (route("respond = { status = 600 }"), "listener[0].routes[0].respond.status", "respond status 600 is not within 200..=599", 8),
            // Cache and compression.
            (route("pool = \"web\", cache = { max_bytes = 4095 }"), "listener[0].routes[0].cache.max_bytes", "4095 is out of range 4096..=1099511627776", 8),
            (route("pool = \"web\", compress = { types = [] }"), "listener[0].routes[0].compress.types", "needs at least one type", 8),
            (route("pool = \"web\", compress = { types = [\"text/html\", \"/html\"] }"), "listener[0].routes[0].compress.types[1]", "\"/html\" is not a media type", 8),
            (route("pool = \"web\", compress = { types = [\"text/html;charset=utf-8\"] }"), "listener[0].routes[0].compress.types[0]", "is not a media type", 8),
            (route("pool = \"web\", compress = { types = [\"a/b/c\"] }"), "listener[0].routes[0].compress.types[0]", "is not a media type", 8),
            (route("pool = \"web\", compress = { min_bytes = 1073741825 }"), "listener[0].routes[0].compress.min_bytes", "1073741825 is out of range 0..=1073741824", 8),
            (route("redirect = { location = \"/x\" }, compress = { min_bytes = 0 }"), "listener[0].routes[0].compress", "only applies to routes with a pool or split", 8),
            // Per-route rate limits.
            (route("pool = \"web\", rate_limit = { rate = 5, max_connections = 1 }"), "listener[0].routes[0].rate_limit.max_connections", "connections belong to listeners", 8),
            (route("pool = \"web\", rate_limit = { rate = 0 }"), "listener[0].routes[0].rate_limit.rate", "0 is out of range 1..=10000000", 8),
            (route("pool = \"web\", rate_limit = { rate = 5, burst = 0 }"), "listener[0].routes[0].rate_limit.burst", "0 is out of range 1..=10000000", 8),
            (route("pool = \"web\", rate_limit = { max_clients = 15 }"), "listener[0].routes[0].rate_limit.max_clients", "15 is out of range 16..=10000000", 8),
        ];
        check(&rows);
        // The second route of the second listener.
        let src = format!(
            "{}[[listener]]\nname = \"h2\"\nbind = \"127.0.0.1:8081\"\nprotocol = \"http\"\nroutes = [\n  {{ pool = \"web\" }},\n  {{ pool = \"web\", respond = {{}} }},\n]\n",
            h("pool = \"web\"")
        );
        check(&[(src, "listener[1].routes[1].pool", "exactly one of", 15)]);
    }

    #[test]
    fn http_listener_errors() {
        let rows: Vec<Row> = vec![
            // Missing keys are reported where the listener starts.
            (h(""), "listener[0].routes", "an http listener needs routes (or a pool)", 4),
            (h("routes = []"), "listener[0].routes", "an http listener needs routes (or a pool)", 8),
            (hs("pool = \"web\""), "listener[0].tls", "an https listener needs tls = { certificates = [...] }", 4),
            (h(&format!("pool = \"web\"\ntls = {{ certificates = [{CERT}] }}")), "listener[0].tls", "tls is only valid with protocol = \"https\"", 9),
            (h("pool = \"web\"\nhsts = \"max-age=31536000\""), "listener[0].hsts", "hsts is only valid with protocol = \"https\"", 9),
            // TLS options.
            (hs("pool = \"web\"\ntls = { certificates = [] }"), "listener[0].tls.certificates", "at least one certificate is needed", 9),
            (hs(&format!("pool = \"web\"\ntls = {{ certificates = [{}, {}] }}", CERT.replace(" }", ", default = true }"), CERT.replace(" }", ", default = true }"))), "listener[0].tls.certificates", "only one certificate can be the default", 9),
            (hs(&format!("pool = \"web\"\ntls = {{ certificates = [{CERT}], min_version = \"TLSv1.3\" }}")), "listener[0].tls.min_version", "\"TLSv1.3\": expected \"1.2\" or \"1.3\"", 9),
            (hs(&format!("pool = \"web\"\ntls = {{ certificates = [{CERT}], client_ca = \"/etc/t/ca.pem\", client_auth = \"sometimes\" }}")), "listener[0].tls.client_auth", "\"sometimes\": expected \"required\" or \"optional\"", 9),
            (hs(&format!("pool = \"web\"\ntls = {{ certificates = [{CERT}], client_ca = \"/etc/t/ca.pem\", client_subject_header = \"X Subject\" }}")), "listener[0].tls.client_subject_header", "\"X Subject\" is not a valid header name", 9),
            (hs(&format!("pool = \"web\"\ntls = {{ certificates = [{CERT}], client_subject_header = \"X-Subject\" }}")), "listener[0].tls.client_subject_header", "only valid with client_ca", 9),
            // Error pages, request ids, timeouts, trusted proxies, limits.
            (h("pool = \"web\"\nerror_pages = { 200 = \"ok\" }"), "listener[0].error_pages.200", "keys are HTTP error statuses 400..=599", 9),
            (h("pool = \"web\"\nerror_pages = { 503 = \"busy\", oops = \"x\" }"), "listener[0].error_pages.oops", "keys are HTTP error statuses", 9),
            (h("pool = \"web\"\nrequest_id = \"X Request Id\""), "listener[0].request_id", "\"X Request Id\" is not a valid header name", 9),
            (h("pool = \"web\"\nheader_timeout = \"0\""), "listener[0].header_timeout", "must be greater than 0", 9),
            (h("pool = \"web\"\nheader_timeout = \"10\""), "listener[0].header_timeout", "missing unit", 9),
            (h("pool = \"web\"\nkeepalive_timeout = \"1 min\""), "listener[0].keepalive_timeout", "invalid duration", 9),
            (h("pool = \"web\"\ntrusted_proxies = [\"10.0.0.0/8\", \"10.0.0.0/40\"]"), "listener[0].trusted_proxies[1]", "prefix must be 0..=32", 9),
            (h("pool = \"web\"\ntrusted_proxies = [\"proxy\"]"), "listener[0].trusted_proxies[0]", "is not an address or address/prefix", 9),
            (h("pool = \"web\"\nmax_header_bytes = 1023"), "listener[0].max_header_bytes", "1023 is out of range 1024..=1048576", 9),
            (h("pool = \"web\"\nmax_header_bytes = 1048577"), "listener[0].max_header_bytes", "out of range 1024..=1048576", 9),
            (h("pool = \"web\"\nmax_headers = 7"), "listener[0].max_headers", "7 is out of range 8..=1000", 9),
            (h("pool = \"web\"\nmax_headers = 1001"), "listener[0].max_headers", "1001 is out of range 8..=1000", 9),
        ];
        check(&rows);
    }

    #[test]
    fn http_pool_errors() {
        let rows: Vec<Row> = vec![
            (
                p("sticky = { mode = \"ip\" }"),
                "pool[0].sticky.mode",
                "unknown mode \"ip\"; expected cookie, app_cookie or source_ip",
                4,
            ),
            (
                p("sticky = { mode = \"app_cookie\" }"),
                "pool[0].sticky.name",
                "app_cookie needs the application's cookie name",
                4,
            ),
            (
                p("sticky = { mode = \"app_cookie\", name = \"JSESSIONID\", ttl = \"1\" }"),
                "pool[0].sticky.ttl",
                "missing unit",
                4,
            ),
            (
                p("sticky = { mode = \"app_cookie\", name = \"JSESSIONID\", max_entries = 0 }"),
                "pool[0].sticky.max_entries",
                "0 is out of range 1..=100000000",
                4,
            ),
            (
                p("tls = { verify = \"none\", client_cert = \"/etc/t/c.pem\" }"),
                "pool[0].tls.client_key",
                "client_cert and client_key go together",
                4,
            ),
            (
                p("tls = { verify = \"none\", client_key = \"/etc/t/c.key\" }"),
                "pool[0].tls.client_key",
                "client_cert and client_key go together",
                4,
            ),
            (
                p("max_idle_per_backend = 100001"),
                "pool[0].max_idle_per_backend",
                "100001 is out of range 0..=100000",
                4,
            ),
            (
                p("upstream_idle_timeout = \"forever\""),
                "pool[0].upstream_idle_timeout",
                "invalid duration",
                4,
            ),
            (
                p("response_timeout = \"60\""),
                "pool[0].response_timeout",
                "missing unit",
                4,
            ),
        ];
        check(&rows);
    }

    #[test]
    fn http_listener_defaults() {
        let c = ok(&h("pool = \"web\""));
        let l = &c.listeners[0];
        assert_eq!(l.idle_timeout, Duration::from_secs(300));
        let x = l.http.as_ref().expect("http");
        assert_eq!(x.routes.len(), 1);
        let r = &x.routes[0];
        assert_eq!(r.name, "default");
        assert_eq!(r.matcher, MatchConfig::default());
        assert_eq!(
            r.action,
            ActionConfig::Forward {
                pool: "web".into(),
                split: vec![],
                split_sticky: false,
                strip_prefix: None,
                rewrite_path: None,
            }
        );
        assert_eq!(
            (r.cache.as_ref(), r.compress.as_ref(), r.rate_limit.as_ref()),
            (None, None, None)
        );
        assert_eq!(x.tls, None);
        assert_eq!(x.tls_opts, TlsOptions::default());
        assert_eq!(x.hsts, None);
        assert_eq!(x.request_id.as_deref(), Some("X-Request-Id"));
        assert!(!x.forwarded);
        assert!(x.trusted_proxies.is_empty());
        assert!(x.http2);
        assert_eq!(x.header_timeout, defaults::HTTP_HEADER_TIMEOUT);
        assert_eq!(x.keepalive_timeout, defaults::HTTP_KEEPALIVE_TIMEOUT);
        assert_eq!(
            x.max_header_bytes as u64,
            defaults::HTTP_MAX_HEADER_BYTES.default
        );
        assert_eq!(x.max_headers as u64, defaults::HTTP_MAX_HEADERS.default);
        assert_eq!(x.max_body_bytes, defaults::HTTP_MAX_BODY_BYTES.default);
        assert!(x.error_pages.is_empty());
        // And a pool's HTTP side.
        assert_eq!(c.pools[0].http, HttpPoolConfig::default());
    }

    #[test]
    fn http_listener_valid_values() {
        let c = ok(&h(concat!(
            "pool = \"web\"\n",
            "request_id = \"\"\n",
            "forwarded = true\n",
            "trusted_proxies = [\"10.0.0.0/8\", \"::1\"]\n",
            "http2 = false\n",
            "header_timeout = \"500ms\"\n",
            "keepalive_timeout = \"0\"\n",
            "max_header_bytes = 1024\n",
            "max_headers = 8\n",
            "max_body_bytes = 18446744073709551615\n",
            "error_pages = { 503 = \"busy\", 404 = \"gone\" }",
        )));
        let x = c.listeners[0].http.clone().expect("http");
        // request_id = "" turns the header off.
        assert_eq!(x.request_id, None);
        assert!(x.forwarded && !x.http2);
        assert_eq!(
            x.trusted_proxies,
            vec![
                Cidr::parse("10.0.0.0/8").expect("cidr"),
                Cidr::parse("::1/128").expect("cidr")
            ]
        );
        assert_eq!(x.header_timeout, Duration::from_millis(500));
        assert_eq!(x.keepalive_timeout, Duration::ZERO);
        assert_eq!(
            (x.max_header_bytes, x.max_headers, x.max_body_bytes),
            (1024, 8, u64::MAX)
        );
        assert_eq!(
            x.error_pages,
            BTreeMap::from([(404, "gone".to_string()), (503, "busy".to_string())])
        );

        // https: certificates and options.
        let c = ok(&hs(&format!(
            "pool = \"web\"\nhsts = \"max-age=60\"\ntls = {{ certificates = [{CERT}, {{ cert = \"/etc/t/d.pem\", key = \"/etc/t/d.key\", names = [\"d.test\"], default = true, ocsp = \"/etc/t/d.ocsp\" }}], min_version = \"1.3\", client_ca = \"/etc/t/ca.pem\", client_auth = \"optional\", cipher_suites = [\"TLS13_AES_128_GCM_SHA256\"], groups = [\"x25519\"] }}"
        )));
        let x = c.listeners[0].http.clone().expect("http");
        assert_eq!(x.hsts.as_deref(), Some("max-age=60"));
        let certs = x.tls.expect("tls");
        assert_eq!(
            certs[0],
            CertConfig {
                cert: "/etc/t/c.pem".into(),
                key: "/etc/t/c.key".into(),
                names: None,
                default: false,
                ocsp: None
            }
        );
        assert_eq!(certs[1].names.as_deref(), Some(&["d.test".to_string()][..]));
        assert!(certs[1].default);
        assert_eq!(certs[1].ocsp.as_deref(), Some(Path::new("/etc/t/d.ocsp")));
        let o = &x.tls_opts;
        assert!(o.min_tls13 && !o.client_auth_required);
        assert_eq!(o.client_ca.as_deref(), Some(Path::new("/etc/t/ca.pem")));
        // The default subject header, lowercased.
        assert_eq!(o.client_subject_header.as_deref(), Some("x-client-subject"));
        assert_eq!(
            (o.cipher_suites.as_slice(), o.groups.as_slice()),
            (
                &["TLS13_AES_128_GCM_SHA256".to_string()][..],
                &["x25519".to_string()][..]
            )
        );
        // client_ca alone: client certificates are required.
        let c = ok(&hs(&format!("pool = \"web\"\ntls = {{ certificates = [{CERT}], client_ca = \"/etc/t/ca.pem\", client_subject_header = \"X-Subject\" }}")));
        let o = c.listeners[0].http.clone().expect("http").tls_opts;
        assert!(o.client_auth_required && !o.min_tls13);
        assert_eq!(o.client_subject_header.as_deref(), Some("x-subject"));
    }

    #[test]
    fn http_route_values() {
        let c = ok(&(h(concat!(
            "pool = \"web\"\n",
            "routes = [\n",
            "  { name = \"api\", match = { host = \"a.test\", path_prefix = \"/api\", method = \"GET\", source = [\"10.0.0.0/8\"], header = { x-a = true, x-b = \"1\" }, cookie = { s = { regex = \"^a\" } }, query = { q = { present = true }, r = { equals = \"2\" } } }, split = [{ pool = \"web\", weight = 3 }, { pool = \"api\", weight = 0 }], split_sticky = true, cache = true, compress = true, rate_limit = { rate = 5 } },\n",
            "  { match = { method = [\"GET\", \"HEAD\"], path_exact = \"/old\" }, redirect = { location = \"/new\" } },\n",
            "  { match = { path_regex = \"^/x\" }, respond = { body = \"hi\", content_type = \"text/plain\" }, request_headers = { set = { a = \"1\" }, remove = [\"b\"] } },\n",
            "  { pool = \"api\", strip_prefix = \"/v1\", cache = { max_bytes = 4096 }, compress = { types = [\"Text/HTML\", \"text/\"], min_bytes = 0 }, rate_limit = { rate = 2, burst = 10, max_clients = 16 } },\n",
            "]",
        )) + "[[pool]]\nname = \"api\"\nbackends = [{ address = \"10.0.0.2:80\" }]\n"));
        let rs = &c.listeners[0].http.as_ref().expect("http").routes;
        assert_eq!(rs.len(), 5, "four routes and the default one");
        let r = &rs[0];
        assert_eq!(r.name, "api");
        let m = &r.matcher;
        assert_eq!(
            (m.host.as_deref(), m.path_prefix.as_deref()),
            (Some("a.test"), Some("/api"))
        );
        assert_eq!(m.methods, ["GET"]);
        assert_eq!(m.sources, vec![Cidr::parse("10.0.0.0/8").expect("cidr")]);
        assert_eq!(
            m.headers,
            vec![
                ("x-a".into(), ValueMatchConfig::Present),
                ("x-b".into(), ValueMatchConfig::Equals("1".into()))
            ]
        );
        assert_eq!(
            m.cookies,
            vec![("s".into(), ValueMatchConfig::Regex("^a".into()))]
        );
        assert_eq!(
            m.query,
            vec![
                ("q".into(), ValueMatchConfig::Present),
                ("r".into(), ValueMatchConfig::Equals("2".into()))
            ]
        );
        // A split forwards to its first pool; one weight may be 0.
        assert_eq!(
            r.action,
            ActionConfig::Forward {
                pool: "web".into(),
                split: vec![("web".into(), 3), ("api".into(), 0)],
                split_sticky: true,
                strip_prefix: None,
                rewrite_path: None,
            }
        );
        assert_eq!(r.cache, Some(DEFAULT_CACHE_BYTES));
        assert_eq!(r.compress, Some(CompressConfig::default()));
        let rl = r.rate_limit.expect("rate_limit");
        assert_eq!((rl.rate, rl.burst, rl.max_connections), (5, 5, 0));
        assert_eq!(
            rl.max_clients as u64,
            defaults::ROUTE_RATE_LIMIT_MAX_CLIENTS.default
        );

        let r = &rs[1];
        assert_eq!(r.name, "route1");
        assert_eq!(r.matcher.methods, ["GET", "HEAD"]);
        assert_eq!(r.matcher.path_exact.as_deref(), Some("/old"));
        assert_eq!(
            r.action,
            ActionConfig::Redirect {
                status: 301,
                location: "/new".into()
            }
        );

        let r = &rs[2];
        assert_eq!(r.matcher.path_regex.as_deref(), Some("^/x"));
        assert_eq!(
            r.action,
            ActionConfig::Respond {
                status: 200,
                body: "hi".into(),
                content_type: Some("text/plain".into())
            }
        );
        assert_eq!(
            r.request_headers,
            HeaderOpsConfig {
                set: vec![("a".into(), "1".into())],
                add: vec![],
                remove: vec!["b".into()]
            }
        );
        assert_eq!(r.response_headers, HeaderOpsConfig::default());

        let r = &rs[3];
        let ActionConfig::Forward {
            pool, strip_prefix, ..
        } = &r.action
        else {
            panic!("{r:?}")
        };
        assert_eq!(
            (pool.as_str(), strip_prefix.as_deref()),
            ("api", Some("/v1"))
        );
        assert_eq!(r.cache, Some(4096));
        let cz = r.compress.as_ref().expect("compress");
        assert_eq!(
            (cz.types.as_slice(), cz.min_bytes),
            (&["text/html".to_string(), "text/".to_string()][..], 0)
        );
        let rl = r.rate_limit.expect("rate_limit");
        assert_eq!((rl.rate, rl.burst, rl.max_clients), (2, 10, 16));

        // The listener's own pool comes last, as the default route.
        assert_eq!(rs[4].name, "default");
        // Every redirect status, and the respond range ends.
        for s in [301, 302, 303, 307, 308] {
            ok(&route(&format!(
                "redirect = {{ status = {s}, location = \"/x\" }}"
            )));
        }
        for s in [200, 599] {
            ok(&route(&format!("respond = {{ status = {s} }}")));
        }
        // cache = false / compress = false are off.
        let c = ok(&route("pool = \"web\", cache = false, compress = false"));
        let r = &c.listeners[0].http.as_ref().expect("http").routes[0];
        assert_eq!((r.cache, r.compress.as_ref()), (None, None));
    }

    #[test]
    fn http_pool_values() {
        let sticky = |s: &str| {
            ok(&p(&format!("sticky = {s}"))).pools[0]
                .http
                .sticky
                .clone()
        };
        assert_eq!(
            sticky("{ mode = \"cookie\" }"),
            Some(StickyConfig::Cookie {
                name: "TANDEM_SRV".into()
            })
        );
        assert_eq!(
            sticky("{ mode = \"cookie\", name = \"SRV\" }"),
            Some(StickyConfig::Cookie { name: "SRV".into() })
        );
        assert_eq!(
            sticky("{ mode = \"source_ip\" }"),
            Some(StickyConfig::SourceIp)
        );
        assert_eq!(
            sticky("{ mode = \"app_cookie\", name = \"JSESSIONID\" }"),
            Some(StickyConfig::AppCookie {
                name: "JSESSIONID".into(),
                ttl: defaults::STICKY_TTL,
                max_entries: defaults::STICKY_MAX_ENTRIES.default as usize,
            })
        );
        assert_eq!(
            sticky("{ mode = \"app_cookie\", name = \"S\", ttl = \"10m\", max_entries = 1 }"),
            Some(StickyConfig::AppCookie {
                name: "S".into(),
                ttl: Duration::from_secs(600),
                max_entries: 1
            })
        );
        let x = ok(&p(concat!(
            "http2 = true\n",
            "tls = { verify = \"/etc/t/ca.pem\", server_name = \"b.test\", client_cert = \"/etc/t/c.pem\", client_key = \"/etc/t/c.key\" }\n",
            "max_idle_per_backend = 0\n",
            "upstream_idle_timeout = \"30s\"\n",
            "response_timeout = \"2m\"",
        )))
        .pools[0]
            .http
            .clone();
        assert!(x.http2);
        assert_eq!(
            x.tls,
            Some(UpstreamTlsConfig {
                verify: Some("/etc/t/ca.pem".into()),
                server_name: Some("b.test".into()),
                client_cert: Some("/etc/t/c.pem".into()),
                client_key: Some("/etc/t/c.key".into()),
            })
        );
        assert_eq!(x.max_idle_per_backend, 0);
        assert_eq!(x.idle_timeout, Duration::from_secs(30));
        assert_eq!(x.response_timeout, Duration::from_secs(120));
        // verify = "none": no verification.
        let t = ok(&p("tls = { verify = \"none\" }")).pools[0]
            .http
            .tls
            .clone()
            .expect("tls");
        assert_eq!(t.verify, None);
    }

    #[test]
    fn http_status_beyond_u16() {
        check(&[
            (
                route("respond = { status = 70000 }"),
                "listener[0].routes[0].respond.status",
                "70000",
                8,
            ),
            (
                route("redirect = { status = 65837, location = \"/x\" }"),
                "listener[0].routes[0].redirect.status",
                "65837",
                8,
            ),
        ]);
    }

    #[test]
    fn status_validation_table() {
        for s in [301, 302, 303, 307, 308] {
            assert!(validate_status_redirect(s).is_ok(), "{s}");
        }
        for s in [0, 200, 300, 304, 305, 306, 309, 400, 999] {
            assert!(validate_status_redirect(s).is_err(), "{s}");
        }
        for s in [200, 204, 301, 404, 418, 503, 599] {
            assert!(validate_status_respond(s).is_ok(), "{s}");
        }
        for s in [0, 99, 100, 101, 199, 600, 999] {
            assert!(validate_status_respond(s).is_err(), "{s}");
        }
    }
}
