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
    pub(super) fn bind_conflicts(
        &mut self,
        global: &Global,
        listeners: &[(usize, ListenerConfig)],
    ) {
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
        if protocol == Protocol::Udp && !matches!(a, raw::AccessLogOpt::On(false)) {
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::global::tests::{check, errors, ok, Row, BASE, POOL};
    use super::*;

    /// [`BASE`] with `keys` appended to its tcp listener (line 8 on).
    fn lt(keys: &str) -> String {
        format!("{BASE}{keys}\n")
    }

    /// [`POOL`] and a listener of `protocol` on it with `keys` from line 9.
    fn lp(protocol: &str, keys: &str) -> String {
        format!("{POOL}[[listener]]\nname = \"l\"\nbind = \"127.0.0.1:8080\"\nprotocol = \"{protocol}\"\npool = \"web\"\n{keys}\n")
    }

    /// A listener `name` on `bind` (5 lines, the bind on the 3rd).
    fn at(name: &str, bind: &str, protocol: &str) -> String {
        format!("[[listener]]\nname = \"{name}\"\nbind = \"{bind}\"\nprotocol = \"{protocol}\"\npool = \"web\"\n")
    }

    #[test]
    fn listener_errors() {
        let rows: Vec<Row> = vec![
            // Name, bind, protocol, pool.
            (format!("{POOL}[[listener]]\nname = \"l/1\"\nbind = \"127.0.0.1:8080\"\npool = \"web\"\n"), "listener[0].name", "invalid name \"l/1\"", 5),
            (format!("{POOL}[[listener]]\nname = \"l\"\nbind = \"127.0.0.1:0\"\npool = \"web\"\n"), "listener[0].bind", "port 0 is not a listening port", 6),
            (format!("{POOL}[[listener]]\nname = \"l\"\nbind = \"[::1]\"\npool = \"web\"\n"), "listener[0].bind", "is not an address with a port", 6),
            // A missing pool on a tcp listener is reported where the listener starts.
            (format!("{POOL}[[listener]]\nname = \"l\"\nbind = \"127.0.0.1:8080\"\n"), "listener[0].pool", "missing required key `pool`", 4),
            (format!("{POOL}[[listener]]\nname = \"l\"\nbind = \"127.0.0.1:8080\"\nprotocol = \"udp\"\npool = \"\"\n"), "listener[0].pool", "missing required key `pool`", 8),
            // ACLs.
            (lt("allow = [\"2001:db8::/129\"]"), "listener[0].allow[0]", "prefix must be 0..=128", 8),
            (lt("allow = [\"10.0.0.0/8\", \"10.0.0.0/x\"]"), "listener[0].allow[1]", "prefix must be 0..=32", 8),
            (lt("deny = [\"10.0.0.0/8\", \"example.com\"]"), "listener[0].deny[1]", "\"example.com\" is not an address or address/prefix", 8),
            // Reading PROXY from clients.
            (lt("accept_proxy = true\naccept_proxy_from = [\"10.0.0.256\"]"), "listener[0].accept_proxy_from[0]", "is not an address", 9),
            (lt("accept_proxy = true\naccept_proxy_timeout = \"0\""), "listener[0].accept_proxy_timeout", "must be greater than 0", 9),
            (lt("accept_proxy = true\naccept_proxy_timeout = \"5\""), "listener[0].accept_proxy_timeout", "missing unit", 9),
            (lt("accept_proxy_timeout = \"1s\""), "listener[0].accept_proxy_timeout", "only valid with accept_proxy = true", 8),
            (lt("accept_proxy = false\naccept_proxy_from = [\"10.0.0.1\"]"), "listener[0].accept_proxy_from", "only valid with accept_proxy = true", 9),
            // Rate limits.
            (lp("udp", "rate_limit = { rate = 10 }"), "listener[0].rate_limit", "only valid on tcp, http and https listeners", 9),
            (lt("rate_limit = { rate = 10000001 }"), "listener[0].rate_limit.rate", "10000001 is out of range 0..=10000000", 8),
            (lt("rate_limit = { rate = 10, burst = 0 }"), "listener[0].rate_limit.burst", "0 is out of range 1..=10000000", 8),
            (lt("rate_limit = { rate = 10, burst = 10000001 }"), "listener[0].rate_limit.burst", "out of range 1..=10000000", 8),
            (lt("rate_limit = { max_connections = 10000001 }"), "listener[0].rate_limit.max_connections", "out of range 0..=10000000", 8),
            (lt("rate_limit = { rate = 10, max_clients = 15 }"), "listener[0].rate_limit.max_clients", "15 is out of range 16..=10000000", 8),
            (lt("rate_limit = { rate = 0, max_connections = 0 }"), "listener[0].rate_limit.rate", "both are 0: nothing is limited", 8),
            // Access logs.
            (lp("udp", "access_log = true"), "listener[0].access_log", "only valid on tcp, http and https listeners", 9),
            (lt("access_log = { format = \"xml\" }"), "listener[0].access_log.format", "unknown format \"xml\"", 8),
            (lt("access_log = { format = \"{client} {nope}\" }"), "listener[0].access_log.format", "unknown placeholder {nope}", 8),
            (lt("access_log = { format = \"{client\" }"), "listener[0].access_log.format", "unclosed '{'", 8),
            (lt("access_log = { path = \"access.log\" }"), "listener[0].access_log.path", "must be an absolute path", 8),
            (lt("access_log = { path = \"/nonexistent-tandem-dir/access.log\" }"), "listener[0].access_log.path", "directory of /nonexistent-tandem-dir/access.log does not exist", 8),
            (lt("access_log = { path = \"/tmp\" }"), "listener[0].access_log.path", "/tmp is a directory", 8),
            // HTTP keys on a tcp or udp listener.
            (lt("hsts = \"max-age=60\""), "listener[0].hsts", "only valid on http and https listeners", 8),
            (lt("http2 = false"), "listener[0].http2", "only valid on http and https listeners", 8),
            (lt("routes = []"), "listener[0].routes", "only valid on http and https listeners", 8),
            (lt("header_timeout = \"1s\""), "listener[0].header_timeout", "only valid on http and https", 8),
            (lt("keepalive_timeout = \"1s\""), "listener[0].keepalive_timeout", "only valid on http and https", 8),
            (lt("max_body_bytes = 1"), "listener[0].max_body_bytes", "only valid on http and https", 8),
            (lt("max_header_bytes = 4096"), "listener[0].max_header_bytes", "only valid on http and https", 8),
            (lt("max_headers = 10"), "listener[0].max_headers", "only valid on http and https", 8),
            (lt("request_id = \"X-Id\""), "listener[0].request_id", "only valid on http and https", 8),
            (lt("forwarded = true"), "listener[0].forwarded", "only valid on http and https", 8),
            (lt("trusted_proxies = [\"10.0.0.0/8\"]"), "listener[0].trusted_proxies", "only valid on http and https", 8),
            (lt("error_pages = { 503 = \"busy\" }"), "listener[0].error_pages", "only valid on http and https", 8),
            (lp("udp", "tls = { certificates = [] }"), "listener[0].tls", "only valid on http and https", 9),
            // PROXY to backends, splice, timeouts, limits.
            (lt("send_proxy = \"v3\""), "listener[0].send_proxy", "unknown PROXY protocol version \"v3\"; expected none, v1 or v2", 8),
            (lp("http", "send_proxy = \"v1\""), "listener[0].send_proxy", "only valid on tcp listeners", 9),
            (lp("udp", "send_proxy = \"v2\""), "listener[0].send_proxy", "only valid on tcp listeners", 9),
            (lt("splice = \"sometimes\""), "listener[0].splice", "unknown splice mode \"sometimes\"; expected auto, always or never", 8),
            (lt("idle_timeout = \"0\""), "listener[0].idle_timeout", "must be greater than 0", 8),
            (lt("idle_timeout = \"1y\""), "listener[0].idle_timeout", "unknown unit", 8),
            (lt("queue_timeout = \"-1s\""), "listener[0].queue_timeout", "invalid duration", 8),
            (lt("max_connections = 10000001"), "listener[0].max_connections", "out of range 0..=10000000", 8),
            (lt("queue_size = 1000001"), "listener[0].queue_size", "out of range 0..=1000000", 8),
            (lt("backlog = 0"), "listener[0].backlog", "0 is out of range 1..=65535", 8),
            (lt("backlog = 65536"), "listener[0].backlog", "65536 is out of range 1..=65535", 8),
            (lp("udp", "max_flows = 0"), "listener[0].max_flows", "0 is out of range 1..=10000000", 9),
        ];
        check(&rows);
    }

    #[test]
    fn listener_bind_conflicts() {
        let two = |a: (&str, &str), b: (&str, &str)| {
            format!("{POOL}{}{}", at("a", a.0, a.1), at("b", b.0, b.1))
        };
        let admin =
            "[global]\nadmin_listen = \"127.0.0.1:9000\"\nadmin_token = \"0123456789abcdef\"\n";
        let rows: Vec<Row> = vec![
            // IPv6: the same address, and the wildcard against a specific one.
            (two(("[::1]:8080", "tcp"), ("[::1]:8080", "https")), "listener[1].bind", "tcp [::1]:8080 is already used by listener \"a\" on [::1]:8080", 11),
            (two(("[::1]:8080", "http"), ("[::]:8080", "tcp")), "listener[1].bind", "(a wildcard bind takes tcp port 8080 on every address of its family)", 11),
            (two(("0.0.0.0:53", "udp"), ("0.0.0.0:53", "udp")), "listener[1].bind", "udp 0.0.0.0:53 is already used by listener \"a\"", 11),
            // The admin and metrics endpoints are TCP binds too.
            (format!("[global]\nadmin_listen = \"127.0.0.1:9000\"\nadmin_token = \"0123456789abcdef\"\nmetrics_listen = \"127.0.0.1:9000\"\n{POOL}"), "global.metrics_listen", "tcp 127.0.0.1:9000 is already used by admin_listen on 127.0.0.1:9000", 4),
            (format!("{admin}{POOL}{}", at("a", "0.0.0.0:9000", "http")), "listener[0].bind", "is already used by admin_listen on 127.0.0.1:9000 (a wildcard bind", 9),
            (format!("[global]\nmetrics_listen = \"[::]:9100\"\n{POOL}{}", at("m", "[::1]:9100", "tcp")), "listener[0].bind", "is already used by metrics_listen on [::]:9100", 8),
        ];
        check(&rows);
        // Each later listener that clashes is reported once, at its own bind.
        let errs = errors(&format!(
            "{POOL}{}{}{}",
            at("a", "127.0.0.1:8080", "tcp"),
            at("b", "127.0.0.1:8080", "tcp"),
            at("c", "127.0.0.1:8080", "tcp"),
        ));
        let keys: Vec<&str> = errs.iter().map(|d| d.key.as_str()).collect();
        assert_eq!(keys, ["listener[1].bind", "listener[2].bind"], "{errs:?}");
        // Two invalid port-0 binds are one error each, not also a clash.
        let errs = errors(&format!(
            "{POOL}{}{}",
            at("a", "127.0.0.1:0", "tcp"),
            at("b", "127.0.0.1:0", "tcp"),
        ));
        assert!(
            errs.iter()
                .all(|d| d.message.contains("port 0 is not a listening port")),
            "{errs:?}"
        );
        assert_eq!(errs.len(), 2);
    }

    #[test]
    fn listener_binds_that_do_not_clash() {
        let many = [
            at("t", "127.0.0.1:8080", "tcp"),
            // Same port, other transport.
            at("u", "127.0.0.1:8080", "udp"),
            // UDP may overlap a wildcard.
            at("u-any", "0.0.0.0:8080", "udp"),
            // Another family.
            at("t6", "[::]:8080", "http"),
            // Another port, another address.
            at("t2", "127.0.0.2:8081", "tcp"),
            at("t3", "127.0.0.3:8081", "tcp"),
        ]
        .concat();
        let c = ok(&format!(
            "[global]\nadmin_listen = \"127.0.0.1:9000\"\nadmin_token = \"0123456789abcdef\"\nmetrics_listen = \"127.0.0.1:9100\"\n{POOL}{many}"
        ));
        assert_eq!(c.listeners.len(), 6);
        assert_eq!(c.listeners[1].protocol, Protocol::Udp);
    }

    #[test]
    fn listener_defaults() {
        let c = ok(BASE);
        let l = &c.listeners[0];
        assert_eq!(l.name, "l");
        assert_eq!(l.bind, "127.0.0.1:8080".parse().expect("addr"));
        assert_eq!(l.protocol, Protocol::Tcp);
        assert_eq!(l.pool, "web");
        assert_eq!(
            l.max_connections as u64,
            defaults::LISTENER_MAX_CONNECTIONS.default
        );
        assert_eq!(l.queue_size as u64, defaults::LISTENER_QUEUE_SIZE.default);
        assert_eq!(l.queue_timeout, defaults::LISTENER_QUEUE_TIMEOUT);
        assert_eq!(l.idle_timeout, Duration::from_secs(300));
        assert_eq!(l.send_proxy, ProxyProtocol::None);
        assert_eq!(l.splice, SpliceMode::Auto);
        assert_eq!(l.backlog as u64, defaults::LISTENER_BACKLOG.default);
        assert_eq!(l.max_flows as u64, defaults::LISTENER_MAX_FLOWS.default);
        assert_eq!(l.http, None);
        assert!(l.acl.allow.is_empty() && l.acl.deny.is_empty());
        assert_eq!(l.accept_proxy, None);
        assert_eq!(l.rate_limit, None);
        assert_eq!(l.access_log, None);
        // UDP idles out sooner.
        let c = ok(&lp("udp", ""));
        assert_eq!(c.listeners[0].idle_timeout, Duration::from_secs(30));
    }

    #[test]
    fn listener_valid_values() {
        let c = ok(&lt(concat!(
            "max_connections = 0\n",
            "queue_size = 0\n",
            "queue_timeout = \"250ms\"\n",
            "idle_timeout = \"1h\"\n",
            "send_proxy = \"v2\"\n",
            "splice = \"never\"\n",
            "backlog = 65535\n",
            "allow = [\"10.0.0.0/8\", \"2001:db8::1\"]\n",
            "deny = [\"10.9.0.0/16\"]\n",
            "accept_proxy = true\n",
            "accept_proxy_from = [\"192.0.2.0/24\"]\n",
            "rate_limit = { rate = 100 }\n",
            "access_log = { format = \"{client} {status} {duration_ms}\", path = \"/tmp/tandem-unit-access.log\" }",
        )));
        let l = &c.listeners[0];
        assert_eq!((l.max_connections, l.queue_size, l.backlog), (0, 0, 65535));
        assert_eq!(l.queue_timeout, Duration::from_millis(250));
        assert_eq!(l.idle_timeout, Duration::from_secs(3600));
        assert_eq!(l.send_proxy, ProxyProtocol::V2);
        assert_eq!(l.splice, SpliceMode::Never);
        assert_eq!(l.acl.allow[0], Cidr::parse("10.0.0.0/8").expect("cidr"));
        assert_eq!(l.acl.allow[1].prefix, 128);
        assert_eq!(l.acl.deny, vec![Cidr::parse("10.9.0.0/16").expect("cidr")]);
        let ap = l.accept_proxy.as_ref().expect("accept_proxy");
        assert_eq!(ap.timeout, defaults::LISTENER_ACCEPT_PROXY_TIMEOUT);
        assert_eq!(ap.trusted, vec![Cidr::parse("192.0.2.0/24").expect("cidr")]);
        let rl = l.rate_limit.expect("rate_limit");
        // burst defaults to the rate.
        assert_eq!((rl.rate, rl.burst, rl.max_connections), (100, 100, 0));
        assert_eq!(
            rl.max_clients as u64,
            defaults::RATE_LIMIT_MAX_CLIENTS.default
        );
        let al = l.access_log.as_ref().expect("access_log");
        assert_eq!(
            al.format,
            accesslog::LogFormat::Template("{client} {status} {duration_ms}".into())
        );
        assert_eq!(
            al.path.as_deref(),
            Some(Path::new("/tmp/tandem-unit-access.log"))
        );

        // Connection limit only: burst is at least 1.
        let rl = ok(&lt(
            "rate_limit = { max_connections = 10, max_clients = 16 }",
        ))
        .listeners[0]
            .rate_limit
            .expect("rate_limit");
        assert_eq!(
            (rl.rate, rl.burst, rl.max_connections, rl.max_clients),
            (0, 1, 10, 16)
        );
        // access_log forms.
        let fmt = |v: &str| {
            ok(&lt(&format!("access_log = {v}"))).listeners[0]
                .access_log
                .clone()
        };
        assert_eq!(fmt("false"), None);
        let tr = accesslog::AccessLogConfig {
            format: accesslog::LogFormat::Tracing,
            path: None,
        };
        assert_eq!(fmt("true"), Some(tr));
        assert_eq!(
            fmt("{}").map(|a| a.format),
            Some(accesslog::LogFormat::Json)
        );
        assert_eq!(
            fmt("{ format = \"common\" }").map(|a| a.format),
            Some(accesslog::LogFormat::Common)
        );
        // accept_proxy with its default timeout and no trusted list.
        let ap = ok(&lt("accept_proxy = true\naccept_proxy_timeout = \"2s\"")).listeners[0]
            .accept_proxy
            .clone()
            .expect("accept_proxy");
        assert_eq!(ap.timeout, Duration::from_secs(2));
        assert!(ap.trusted.is_empty());
        // send_proxy = "none" is allowed anywhere.
        assert_eq!(
            ok(&lp("udp", "send_proxy = \"none\"\nmax_flows = 1")).listeners[0].max_flows,
            1
        );
    }

    #[test]
    fn listener_udp_access_log_off() {
        let c = ok(&lp("udp", "access_log = false"));
        assert_eq!(c.listeners[0].access_log, None);
    }
}
