//! `[[listener]]`: bind address and limits, client admission (ACLs, PROXY, rate limits),
//! access logs, and the bind conflicts `run` would hit.

// The model types, `raw` and the shared Validator helpers all live in the parent.
use super::*;

impl Validator<'_> {
    /// Binds that `run` would fail on with EADDRINUSE, found here so that `check` says so.
    /// TCP and UDP have separate ports, and the protocols over TCP (tcp, http, https, the admin
    /// and metrics listeners) share one: two listening TCP sockets cannot have the same address
    /// and port, and a wildcard (0.0.0.0 or [::]) takes the port on every address of its family
    /// even with SO_REUSEADDR. UDP sockets with SO_REUSEADDR may overlap a wildcard (the most
    /// specific one receives), so only identical UDP binds are refused.
    pub(super) fn bind_conflicts(&mut self, global: &Global, listeners: &[(usize, ListenerConfig)]) {
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
            defaults::LISTENER_ACCEPT_PROXY_TIMEOUT,
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
            let rate = self.int(&rat("rate"), r.rate, defaults::RATE_LIMIT_RATE) as u32;
            let c = policy::RateLimitConfig {
                rate,
                burst: self.range(&rat("burst"), r.burst, rate.max(1) as u64, 1, 10_000_000) as u32,
                max_connections: self.int(
                    &rat("max_connections"),
                    r.max_connections,
                    defaults::RATE_LIMIT_MAX_CONNECTIONS,
                ) as u32,
                max_clients: self.int(
                    &rat("max_clients"),
                    r.max_clients,
                    defaults::RATE_LIMIT_MAX_CLIENTS,
                ) as u32,
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
    pub(super) fn listener(
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
            max_connections: self.int(
                &at("max_connections"),
                l.max_connections,
                defaults::LISTENER_MAX_CONNECTIONS,
            ) as u32,
            queue_size: self.int(
                &at("queue_size"),
                l.queue_size,
                defaults::LISTENER_QUEUE_SIZE,
            ) as u32,
            queue_timeout: self.duration(
                &at("queue_timeout"),
                l.queue_timeout.as_deref(),
                defaults::LISTENER_QUEUE_TIMEOUT,
            ),
            idle_timeout,
            send_proxy,
            splice,
            backlog: self.int(&at("backlog"), l.backlog, defaults::LISTENER_BACKLOG) as u32,
            max_flows: self.int(&at("max_flows"), l.max_flows, defaults::LISTENER_MAX_FLOWS) as u32,
            http,
            acl,
            accept_proxy,
            rate_limit,
            access_log,
        };
        Some(cfg)
    }
}
