//! haproxy.cfg sections → tandem pools (backends), listeners (frontends)
//! and global settings. `listen` is both. Every statement ends up in the
//! report: imported, approximated (what changes) or not imported (why).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::emit::{Table, V};
use super::haproxy::{time, Line, Section};
use super::report::{Kind, Loc, Report};
use super::{sanitize_name, Names};

#[derive(Clone, Default)]
struct Settings {
    mode_http: bool,
    connect: Option<Duration>,
    client: Option<Duration>,
    server: Option<Duration>,
    http_request: Option<Duration>,
    keep_alive: Option<Duration>,
    queue: Option<Duration>,
    check: Option<Duration>,
    maxconn: Option<i64>,
    balance: Option<(Vec<String>, Loc)>,
    retries: Option<i64>,
    httpchk: Option<(Vec<String>, Loc)>,
    check_send: Option<(Vec<String>, Loc)>,
    check_expect: Option<(Vec<String>, Loc)>,
    tcp_check: bool,
    httplog: bool,
    forwardfor: bool,
    default_server: Vec<String>,
}

/// Global settings that affect mapping.
#[derive(Default)]
struct Globals {
    ca_base: Option<PathBuf>,
    crt_base: Option<PathBuf>,
    verify_none: bool,
}

fn stmt(l: &Line) -> String {
    l.text()
}

fn ni(r: &mut Report, l: &Line, why: &str) {
    r.add(Kind::NotImported, &l.loc, stmt(l), why);
}

/// Applies a proxy-settings keyword; false if `l` is not one.
fn setting(s: &mut Settings, l: &Line, r: &mut Report, report: bool) -> bool {
    let w = &l.words;
    let k = w[0].as_str();
    let a1 = w.get(1).map(String::as_str);
    let ok = |r: &mut Report, kind: Kind, detail: &str| {
        if report {
            r.add(kind, &l.loc, stmt(l), detail);
        }
    };
    match k {
        "mode" => match a1 {
            Some("http") => s.mode_http = true,
            Some("tcp") => s.mode_http = false,
            _ => ok(r, Kind::NotImported, "tandem proxies tcp and http only"),
        },
        "timeout" => {
            let Some(d) = w.get(2).and_then(|t| time(t)) else {
                ok(r, Kind::NotImported, "not a time");
                return true;
            };
            match a1.unwrap_or("") {
                "connect" => s.connect = Some(d),
                "client" => s.client = Some(d),
                "server" => s.server = Some(d),
                "http-request" => s.http_request = Some(d),
                "http-keep-alive" => s.keep_alive = Some(d),
                "queue" => s.queue = Some(d),
                "check" => s.check = Some(d),
                "tunnel" => ok(r, Kind::Approximated, "tandem applies the listener's idle_timeout to upgraded (WebSocket) and TCP streams"),
                _ => ok(r, Kind::NotImported, "no tandem equivalent"),
            }
        }
        "maxconn" => match a1.and_then(|v| v.parse().ok()) {
            Some(v) => s.maxconn = Some(v),
            None => ok(r, Kind::NotImported, "not a number"),
        },
        "balance" => s.balance = Some((w[1..].to_vec(), l.loc.clone())),
        "retries" => s.retries = a1.and_then(|v| v.parse().ok()),
        "default-server" => s.default_server.extend(w[1..].iter().cloned()),
        "http-check" => match a1 {
            Some("expect") => s.check_expect = Some((w[2..].to_vec(), l.loc.clone())),
            Some("send") => s.check_send = Some((w[2..].to_vec(), l.loc.clone())),
            _ => ok(r, Kind::NotImported, "tandem's HTTP check is one GET with an expected status or body"),
        },
        "tcp-check" => {
            s.tcp_check = true;
            if a1 != Some("connect") {
                ok(r, Kind::Approximated, "tandem's TCP check only connects: send/expect steps are dropped");
            }
        }
        "option" => match a1.unwrap_or("") {
            "httpchk" => s.httpchk = Some((w[2..].to_vec(), l.loc.clone())),
            "tcp-check" => s.tcp_check = true,
            "ssl-hello-chk" | "mysql-check" | "pgsql-check" | "redis-check" | "smtpchk" | "ldap-check" | "spop-check" => {
                s.tcp_check = true;
                ok(r, Kind::Approximated, "a TCP connect check instead of the protocol check");
            }
            "httplog" => s.httplog = true,
            "forwardfor" => s.forwardfor = true,
            "redispatch" => ok(r, Kind::Imported, "tandem tries another backend when a connect fails (retries)"),
            "http-server-close" | "http-keep-alive" | "httpclose" | "http-pretend-keepalive" | "http-no-delay" => {
                ok(r, Kind::Approximated, "tandem keeps client and backend connections alive independently (pooled upstream connections)")
            }
            "dontlognull" | "tcplog" | "log-health-checks" | "logasap" | "log-separate-errors" | "dontlog-normal" => {
                ok(r, Kind::NotImported, "tandem logs with tracing: access_log for requests, one line per health change")
            }
            "splice-auto" | "splice-request" | "splice-response" => ok(r, Kind::Imported, "tandem's splice = \"auto\" (the default) on tcp listeners"),
            _ => return false,
        },
        _ => return false,
    }
    true
}

/// One haproxy `server` line, parsed.
#[derive(Default, Clone)]
struct Server {
    name: String,
    addr: Option<std::net::SocketAddr>,
    addr_problem: Option<String>,
    weight: Option<i64>,
    backup: bool,
    check: bool,
    inter: Option<Duration>,
    rise: Option<i64>,
    fall: Option<i64>,
    port: Option<i64>,
    maxconn: Option<i64>,
    send_proxy: Option<&'static str>,
    ssl: bool,
    verify_none: bool,
    ca_file: Option<String>,
    sni: Option<String>,
    cookie: Option<String>,
    disabled: bool,
    dropped: Vec<String>,
    loc: Option<Loc>,
}

const SERVER_VALUE: &[&str] = &[
    "weight",
    "inter",
    "fastinter",
    "downinter",
    "rise",
    "fall",
    "port",
    "addr",
    "maxconn",
    "maxqueue",
    "minconn",
    "cookie",
    "ca-file",
    "crt",
    "sni",
    "verify",
    "slowstart",
    "on-error",
    "on-marked-down",
    "on-marked-up",
    "observe",
    "error-limit",
    "id",
    "source",
    "resolvers",
    "resolve-prefer",
    "resolve-opts",
    "resolve-net",
    "init-addr",
    "check-sni",
    "alpn",
    "check-alpn",
    "proto",
    "agent-port",
    "agent-inter",
    "agent-addr",
    "agent-send",
    "ciphers",
    "ciphersuites",
    "ssl-min-ver",
    "ssl-max-ver",
    "crl-file",
    "verifyhost",
    "namespace",
    "pool-max-conn",
    "pool-low-conn",
    "pool-purge-delay",
    "max-reuse",
    "tcp-ut",
    "redir",
    "track",
    "usesrc",
    "set-proxy-v2-tlv-fmt",
    "check-proto",
    "check-via-socks4",
    "log-proto",
    "guid",
    "hash-key",
    "shard",
    "ws",
];

fn parse_server(words: &[String], loc: &Loc, g: &Globals) -> Server {
    let mut s = Server {
        name: words.get(1).cloned().unwrap_or_default(),
        loc: Some(loc.clone()),
        ..Server::default()
    };
    match words.get(2) {
        None => s.addr_problem = Some("no address".into()),
        Some(a) => {
            let a = a
                .strip_prefix("ipv4@")
                .or_else(|| a.strip_prefix("ipv6@"))
                .unwrap_or(a);
            match a.parse::<std::net::SocketAddr>() {
                Ok(sa) if sa.port() != 0 => s.addr = Some(sa),
                _ => {
                    let v6 = a.matches(':').count() > 1 && !a.starts_with('[');
                    s.addr_problem = Some(if a.parse::<std::net::IpAddr>().is_ok() || v6 {
                        format!("{a} has no port: tandem backends need IP:PORT (HAProxy reused the client's port)")
                    } else if a.contains('@') {
                        format!("{a}: tandem backends are IP:PORT over TCP")
                    } else if a
                        .rsplit_once(':')
                        .and_then(|(_, p)| p.parse::<u16>().ok())
                        .is_some()
                    {
                        format!("{a}: tandem does not resolve host names (a config means the same on every start); write the IP address")
                    } else {
                        format!("{a} is not IP:PORT")
                    });
                }
            }
        }
    }
    params(&mut s, words.get(3..).unwrap_or(&[]), g);
    s
}

fn params(s: &mut Server, p: &[String], g: &Globals) {
    let mut i = 0;
    while i < p.len() {
        let k = p[i].as_str();
        let v = p.get(i + 1).cloned();
        let takes = SERVER_VALUE.contains(&k);
        i += if takes { 2 } else { 1 };
        let num = || v.as_deref().and_then(|v| v.parse::<i64>().ok());
        match k {
            "weight" => s.weight = num(),
            "backup" => s.backup = true,
            "check" => s.check = true,
            "no-check" => s.check = false,
            "inter" => s.inter = v.as_deref().and_then(time),
            "fastinter" | "downinter" => s.dropped.push(format!("{k} {}", v.unwrap_or_default())),
            "rise" => s.rise = num(),
            "fall" => s.fall = num(),
            "port" => s.port = num(),
            "maxconn" => s.maxconn = num(),
            "send-proxy" => s.send_proxy = Some("v1"),
            "send-proxy-v2" | "send-proxy-v2-ssl" | "send-proxy-v2-ssl-cn" => {
                s.send_proxy = Some("v2")
            }
            "ssl" => s.ssl = true,
            "no-ssl" => s.ssl = false,
            "check-ssl" | "no-sslv3" | "no-tlsv10" | "no-tlsv11" | "force-tlsv12"
            | "force-tlsv13" => {}
            "verify" => s.verify_none = v.as_deref() == Some("none"),
            "ca-file" => {
                s.ca_file = v.map(|f| match (&g.ca_base, Path::new(&f).is_relative()) {
                    (Some(b), true) => b.join(&f).display().to_string(),
                    _ => f,
                })
            }
            "sni" => s.sni = v,
            "cookie" => s.cookie = v,
            "disabled" => s.disabled = true,
            "enabled" => s.disabled = false,
            _ => s.dropped.push(if takes {
                format!("{k} {}", v.unwrap_or_default())
            } else {
                k.to_string()
            }),
        }
    }
}

/// A backend (or the backend half of a listen) as a pool.
fn pool(
    sec: &Section,
    set: &Settings,
    g: &Globals,
    name: &str,
    r: &mut Report,
) -> Option<(Table, PoolInfo)> {
    let mut t = Table::new("pool");
    t.owner = sec.loc.to_string();
    t.comments.push(format!(
        "from {} {} {}",
        sec.loc,
        sec.kind,
        sec.name().unwrap_or("")
    ));
    let mut servers: Vec<Server> = Vec::new();
    let mut sticky: Option<V> = None;
    let mut stick_table = None;
    let mut info = PoolInfo::default();
    let listen = sec.kind == "listen";
    for l in &sec.lines {
        let w = &l.words;
        match w[0].as_str() {
            "server" => {
                let mut defaults = Server::default();
                params(&mut defaults, &set.default_server, g);
                let mut merged: Vec<String> = w[..w.len().min(3)].to_vec();
                merged.extend(set.default_server.iter().cloned());
                merged.extend(w.iter().skip(3).cloned());
                servers.push(parse_server(&merged, &l.loc, g));
            }
            "cookie" => {
                let name = w.get(1).cloned().unwrap_or_default();
                let opts: Vec<&str> = w.iter().skip(2).map(String::as_str).collect();
                if opts.contains(&"insert") {
                    sticky = Some(V::T(vec![
                        ("mode".into(), V::s("cookie")),
                        ("name".into(), V::s(name.clone())),
                    ]));
                    let extra: Vec<&str> = opts
                        .iter()
                        .copied()
                        .filter(|o| !matches!(*o, "insert" | "indirect" | "nocache"))
                        .collect();
                    let mut why = "tandem's cookie value names the backend with its own token (the servers' `cookie` values are not used): clients' current cookies stop matching once, after the switch".to_string();
                    if !extra.is_empty() {
                        why.push_str(&format!("; options not reproduced: {}", extra.join(" ")));
                    }
                    r.add(
                        Kind::Approximated,
                        &l.loc,
                        stmt(l),
                        format!("sticky = {{ mode = \"cookie\", name = \"{name}\" }}: {why}"),
                    );
                } else if opts.contains(&"prefix") || opts.contains(&"rewrite") {
                    sticky = Some(V::T(vec![
                        ("mode".into(), V::s("app_cookie")),
                        ("name".into(), V::s(name.clone())),
                    ]));
                    r.add(Kind::Approximated, &l.loc, stmt(l), format!("sticky = {{ mode = \"app_cookie\", name = \"{name}\" }}: tandem learns which backend set the cookie instead of rewriting its value"));
                } else {
                    ni(
                        r,
                        l,
                        "only `insert`, `prefix` and `rewrite` cookies have a tandem equivalent",
                    );
                }
            }
            "appsession" => {
                let name = w.get(1).cloned().unwrap_or_default();
                let ttl = w
                    .iter()
                    .position(|x| x == "timeout")
                    .and_then(|i| w.get(i + 1))
                    .and_then(|t| time(t));
                let mut kv = vec![
                    ("mode".into(), V::s("app_cookie")),
                    ("name".into(), V::s(name.clone())),
                ];
                if let Some(ttl) = ttl {
                    kv.push(("ttl".into(), V::dur(ttl)));
                }
                sticky = Some(V::T(kv));
                r.add(Kind::Imported, &l.loc, stmt(l), format!("sticky app_cookie {name:?}: tandem learns the session cookie from Set-Cookie"));
            }
            "stick-table" => stick_table = Some(l.clone()),
            "stick" => {
                let on = w.get(1).map(String::as_str);
                let what = w.get(2).map(String::as_str).unwrap_or("");
                match (on, what) {
                    (Some("on" | "match"), "src") => {
                        info.stick_src = Some(l.loc.clone());
                    }
                    (Some("store-request"), "src") => {}
                    (Some("on" | "match" | "store-response"), c)
                        if c.starts_with("req.cook(")
                            || c.starts_with("res.cook(")
                            || c.starts_with("cookie(") =>
                    {
                        let n = c
                            .split_once('(')
                            .map(|x| x.1.trim_end_matches(')'))
                            .unwrap_or("");
                        sticky = Some(V::T(vec![
                            ("mode".into(), V::s("app_cookie")),
                            ("name".into(), V::s(n)),
                        ]));
                        r.add(Kind::Approximated, &l.loc, stmt(l), format!("sticky app_cookie {n:?}: learned from Set-Cookie, kept for 1h of inactivity, not in a shared stick-table"));
                    }
                    _ => ni(
                        r,
                        l,
                        "only `stick on src` and cookie stickiness have tandem equivalents",
                    ),
                }
            }
            "http-request" | "http-response" => {
                if listen {
                    continue; // the listener half handles them
                }
                match header_op(l) {
                    Ok(op) => info.header_ops.push(op),
                    Err(why) => ni(r, l, &why),
                }
            }
            "fullconn"
            | "hash-type"
            | "http-reuse"
            | "load-server-state-from-file"
            | "description"
            | "id"
            | "log"
            | "errorfile"
            | "email-alert" => {
                if !listen || !FRONTEND_KEYS.contains(&w[0].as_str()) {
                    ni(r, l, "no tandem equivalent");
                }
            }
            k => {
                if SETTING_KEYS.contains(&k) {
                    continue; // applied through `set`
                }
                if !listen || !FRONTEND_KEYS.contains(&k) {
                    ni(r, l, "no tandem equivalent");
                }
            }
        }
    }
    if let Some(src) = &info.stick_src {
        if stick_table.is_none() {
            r.add(
                Kind::NotImported,
                src,
                "stick on src",
                "no stick-table in this backend",
            );
            info.stick_src = None;
        } else if set.mode_http {
            sticky = Some(V::T(vec![("mode".into(), V::s("source_ip"))]));
            r.add(Kind::Approximated, src, "stick-table + stick on src", "sticky = { mode = \"source_ip\" }: a consistent hash of the client address, not a learned table (no expiry; adding or removing a backend moves a share of the clients)");
        } else {
            r.add(
                Kind::Approximated,
                src,
                "stick-table + stick on src",
                "algorithm = \"source_hash\": a hash of the client address, not a learned table",
            );
        }
    } else if let Some(st) = &stick_table {
        ni(r, st, "a stick-table without `stick on src` (rate limiting, tracking) has no tandem equivalent");
    }
    // Servers → backends.
    let mut backends = Vec::new();
    let mut names = HashSet::new();
    let mut addrs = HashSet::new();
    let mut checked: Vec<&Server> = Vec::new();
    let mut send_proxy = HashSet::new();
    let mut tls_servers = 0;
    for s in &servers {
        let loc = s.loc.clone().unwrap_or_else(|| sec.loc.clone());
        let what = format!("server {}", s.name);
        let Some(addr) = s.addr else {
            r.add(
                Kind::NotImported,
                &loc,
                what,
                s.addr_problem.clone().unwrap_or_default(),
            );
            continue;
        };
        if !addrs.insert(addr) {
            r.add(
                Kind::NotImported,
                &loc,
                what,
                format!("{addr} is already a backend of this pool"),
            );
            continue;
        }
        if s.disabled {
            r.add(
                Kind::NotImported,
                &loc,
                what,
                "disabled in HAProxy: add it back and use `tandem backend disable` at runtime",
            );
            continue;
        }
        let mut name = sanitize_name(&s.name);
        while !names.insert(name.clone()) {
            name.push('_');
        }
        let mut b = vec![
            ("name".to_string(), V::s(name)),
            ("address".into(), V::s(addr.to_string())),
        ];
        match s.weight {
            None | Some(1) => {}
            Some(w @ 2..=256) => b.push(("weight".into(), V::I(w))),
            Some(0) => r.add(
                Kind::Approximated,
                &loc,
                format!("{what} weight 0"),
                "weight 1: drain it at runtime with `tandem backend drain` instead",
            ),
            Some(w) => r.add(
                Kind::Approximated,
                &loc,
                format!("{what} weight {w}"),
                "out of tandem's 1..=256: weight 1",
            ),
        }
        if s.backup {
            b.push(("backup".into(), V::B(true)));
        }
        if let Some(m) = s.maxconn.filter(|m| *m > 0) {
            b.push(("max_connections".into(), V::I(m.min(10_000_000))));
        }
        if s.check {
            checked.push(s);
        }
        send_proxy.insert(s.send_proxy);
        if s.ssl {
            tls_servers += 1;
        }
        if s.cookie.is_some()
            && !sticky.as_ref().is_some_and(
                |v| matches!(v, V::T(kv) if kv.iter().any(|(_, x)| *x == V::s("cookie"))),
            )
        {
            r.add(
                Kind::NotImported,
                &loc,
                format!("{what} cookie"),
                "a server cookie value without a `cookie ... insert` line",
            );
        }
        if !s.dropped.is_empty() {
            r.add(
                Kind::NotImported,
                &loc,
                format!("{what}: {}", s.dropped.join(", ")),
                "no tandem equivalent for these server options",
            );
        }
        backends.push(V::T(b));
    }
    if backends.is_empty() {
        r.add(
            Kind::NotImported,
            &sec.loc,
            format!("{} {}", sec.kind, sec.name().unwrap_or("")),
            "no server could be imported",
        );
        return None;
    }
    t.set("name", V::s(name));
    // Balance.
    let weighted = servers.iter().any(|s| s.weight.is_some_and(|w| w != 1));
    let (alg, approx): (&str, Option<String>) = match set
        .balance
        .as_ref()
        .map(|b| b.0.first().map(String::as_str).unwrap_or(""))
    {
        None | Some("roundrobin") | Some("static-rr") => (
            if weighted {
                "weighted_round_robin"
            } else {
                "round_robin"
            },
            None,
        ),
        Some("leastconn") => ("least_connections", None),
        Some("source") => ("source_hash", None),
        Some("random") => (
            "random_two_choices",
            (set.balance
                .as_ref()
                .and_then(|b| b.0.get(1))
                .is_some_and(|d| d != "random(2)" && d != "2"))
            .then(|| "two random draws".to_string()),
        ),
        Some("first") => (
            "least_connections",
            Some("least connections instead of filling the first server up to its maxconn".into()),
        ),
        Some(other) => (
            "round_robin",
            Some(format!(
                "tandem cannot hash on `{other}`: requests no longer stick to a server by it"
            )),
        ),
    };
    let alg = if info.stick_src.is_some() && !set.mode_http {
        "source_hash"
    } else {
        alg
    };
    if let Some((b, loc)) = &set.balance {
        match approx {
            None => r.add(
                Kind::Imported,
                loc,
                format!("balance {}", b.join(" ")),
                format!("algorithm = \"{alg}\""),
            ),
            Some(why) => r.add(
                Kind::Approximated,
                loc,
                format!("balance {}", b.join(" ")),
                format!("algorithm = \"{alg}\": {why}"),
            ),
        }
    }
    t.set("algorithm", V::s(alg));
    if let Some(c) = set.connect {
        t.set("connect_timeout", V::dur(c));
    }
    if let Some(n) = set.retries {
        t.set("retries", V::I(n.clamp(0, 16)));
    }
    if let Some(q) = set.queue {
        t.set("queue_timeout", V::dur(q));
    }
    // Health.
    let h = health(set, &checked, &sec.loc, r, &mut t.comments);
    t.set("health", h);
    if set.mode_http {
        if let Some(s) = sticky {
            t.set("sticky", s);
        }
        if let Some(d) = set.server {
            t.set("response_timeout", V::dur(d));
        }
    } else if sticky.is_some() {
        r.add(
            Kind::NotImported,
            &sec.loc,
            "cookie stickiness",
            "only HTTP pools can stick by cookie (this backend is mode tcp)",
        );
    }
    if tls_servers > 0 {
        if !set.mode_http {
            r.add(
                Kind::NotImported,
                &sec.loc,
                format!("{} {}", sec.kind, sec.name().unwrap_or("")),
                "ssl towards servers of a tcp backend: tandem's L4 proxy does not re-encrypt",
            );
            return None;
        }
        let s = servers.iter().find(|s| s.ssl).cloned().unwrap_or_default();
        if tls_servers != backends.len() {
            r.add(
                Kind::Approximated,
                &sec.loc,
                "ssl on some servers",
                "tandem uses TLS towards every backend of the pool",
            );
        }
        let mut kv = Vec::new();
        if s.verify_none || (g.verify_none && s.ca_file.is_none()) {
            kv.push(("verify".to_string(), V::s("none")));
        } else if let Some(ca) = &s.ca_file {
            if !Path::new(ca).exists() {
                r.add(
                    Kind::NotImported,
                    &sec.loc,
                    format!("{} {}", sec.kind, sec.name().unwrap_or("")),
                    format!("ca-file {ca} does not exist on this machine (tandem check reads it)"),
                );
                return None;
            }
            kv.push(("verify".into(), V::s(ca.clone())));
        } else {
            r.add(
                Kind::NotImported,
                &sec.loc,
                format!("{} {}", sec.kind, sec.name().unwrap_or("")),
                "ssl with verify required needs a ca-file",
            );
            return None;
        }
        if let Some(sni) = &s.sni {
            match sni.strip_prefix("str(").and_then(|x| x.strip_suffix(')')) {
                Some(n) => kv.push(("server_name".into(), V::s(n))),
                None => r.add(
                    Kind::NotImported,
                    &sec.loc,
                    format!("sni {sni}"),
                    "tandem's server_name is a fixed name",
                ),
            }
        }
        t.set("tls", V::T(kv));
    }
    t.set("backends", V::A(backends));
    info.send_proxy = if send_proxy.len() == 1 {
        send_proxy.into_iter().next().flatten()
    } else {
        if send_proxy.iter().any(|s| s.is_some()) {
            r.add(
                Kind::Approximated,
                &sec.loc,
                "send-proxy on some servers",
                "tandem sends the PROXY header to every backend of a listener or to none: none",
            );
        }
        None
    };
    info.http = set.mode_http;
    r.add(
        Kind::Imported,
        &sec.loc,
        format!("{} {}", sec.kind, sec.name().unwrap_or("")),
        format!("pool {name:?}"),
    );
    Some((t, info))
}

fn health(
    set: &Settings,
    checked: &[&Server],
    at: &Loc,
    r: &mut Report,
    comments: &mut Vec<String>,
) -> V {
    let Some(first) = checked.first() else {
        comments.push("no server had `check`: HAProxy never probed them; tandem only marks a backend down after failed connections (passive_failures)".into());
        return V::T(vec![("check".into(), V::s("none"))]);
    };
    let mut kv: Vec<(String, V)> = Vec::new();
    if let Some((args, loc)) = &set.httpchk {
        kv.push(("check".into(), V::s("http")));
        let (mut method, mut path, mut host) = ("OPTIONS".to_string(), "/".to_string(), None);
        match args.len() {
            0 => {}
            1 => path = args[0].clone(),
            _ => {
                method = args[0].clone();
                path = args[1].clone();
                if let Some(v) = args.get(2) {
                    // Old style: "HTTP/1.1\r\nHost:\ www".
                    for h in v.split("\r\n").skip(1) {
                        if let Some((n, val)) = h.split_once(':') {
                            if n.eq_ignore_ascii_case("host") {
                                host = Some(val.trim().to_string());
                            }
                        }
                    }
                }
            }
        }
        if let Some((send, _)) = &set.check_send {
            let mut i = 0;
            while i < send.len() {
                match send[i].as_str() {
                    "meth" => method = send.get(i + 1).cloned().unwrap_or(method),
                    "uri" => path = send.get(i + 1).cloned().unwrap_or(path),
                    "hdr"
                        if send
                            .get(i + 1)
                            .is_some_and(|n| n.eq_ignore_ascii_case("host")) =>
                    {
                        host = send.get(i + 2).cloned();
                        i += 1;
                    }
                    _ => {}
                }
                i += 2;
            }
        }
        if method != "GET" {
            r.add(
                Kind::Approximated,
                loc,
                "option httpchk",
                format!("tandem probes with GET instead of {method}"),
            );
        }
        kv.push(("path".into(), V::s(path)));
        if let Some(h) = host {
            kv.push(("host".into(), V::s(h)));
        }
        let any_2xx_3xx = || {
            V::A(
                [
                    200, 201, 202, 203, 204, 205, 206, 300, 301, 302, 303, 304, 307, 308,
                ]
                .into_iter()
                .map(V::I)
                .collect(),
            )
        };
        match &set.check_expect {
            None => {
                comments.push(
                    "HAProxy's httpchk accepts any 2xx or 3xx status: expect_status lists them"
                        .into(),
                );
                kv.push(("expect_status".into(), any_2xx_3xx()));
            }
            Some((e, eloc)) => match (e.first().map(String::as_str), e.get(1)) {
                (Some("status"), Some(v)) => {
                    let mut list = Vec::new();
                    for part in v.split(',') {
                        match part.split_once('-') {
                            Some((a, b)) => {
                                if let (Ok(a), Ok(b)) = (a.parse::<i64>(), b.parse::<i64>()) {
                                    list.extend((a..=b.min(a + 100)).map(V::I));
                                }
                            }
                            None => list.extend(part.parse::<i64>().ok().map(V::I)),
                        }
                    }
                    if list.is_empty() {
                        r.add(
                            Kind::NotImported,
                            eloc,
                            format!("http-check expect {}", e.join(" ")),
                            "not a status list",
                        );
                        list = vec![V::I(200)];
                    }
                    kv.push(("expect_status".into(), V::A(list)));
                }
                (Some("string"), Some(v)) => {
                    kv.push(("expect_status".into(), any_2xx_3xx()));
                    kv.push(("expect_body".into(), V::s(v.clone())));
                    r.add(
                        Kind::Approximated,
                        eloc,
                        format!("http-check expect {}", e.join(" ")),
                        "tandem also requires a 2xx/3xx status",
                    );
                }
                (Some("rstatus"), Some(v))
                    if v.trim_start_matches('^').starts_with('2')
                        && v.trim_start_matches('^').len() == 1 =>
                {
                    kv.push((
                        "expect_status".into(),
                        V::A(
                            [200, 201, 202, 203, 204, 205, 206]
                                .into_iter()
                                .map(V::I)
                                .collect(),
                        ),
                    ));
                }
                _ => {
                    r.add(Kind::NotImported, eloc, format!("http-check expect {}", e.join(" ")), "tandem expects a status list or a body substring; using HAProxy's default (2xx/3xx)");
                    kv.push(("expect_status".into(), any_2xx_3xx()));
                }
            },
        }
    } else {
        kv.push(("check".into(), V::s("tcp")));
    }
    let interval = first.inter.unwrap_or(Duration::from_secs(2));
    let interval = interval.max(Duration::from_millis(10));
    kv.push(("interval".into(), V::dur(interval)));
    let timeout = match set.check {
        Some(t) if t < interval => t,
        Some(_) => interval / 2,
        None => {
            let t = if interval > Duration::from_secs(1) {
                Duration::from_secs(1)
            } else {
                interval / 2
            };
            comments.push(format!("no `timeout check`: HAProxy gave a probe the whole interval; tandem needs a shorter timeout ({})", super::emit::duration(t)));
            t
        }
    };
    kv.push(("timeout".into(), V::dur(timeout)));
    kv.push(("rise".into(), V::I(first.rise.unwrap_or(2).clamp(1, 100))));
    kv.push(("fall".into(), V::I(first.fall.unwrap_or(3).clamp(1, 100))));
    if let Some(p) = first.port.filter(|p| (1..=65535).contains(p)) {
        kv.push(("port".into(), V::I(p)));
    }
    if checked.iter().any(|s| {
        s.inter != first.inter
            || s.rise != first.rise
            || s.fall != first.fall
            || s.port != first.port
    }) {
        r.add(Kind::Approximated, at, "per-server check settings", "tandem checks every backend of a pool alike: the first checked server's inter/rise/fall/port apply to all");
    }
    V::T(kv)
}

#[derive(Default, Clone)]
struct PoolInfo {
    send_proxy: Option<&'static str>,
    http: bool,
    stick_src: Option<Loc>,
    header_ops: Vec<HeaderOp>,
}

#[derive(Clone, Debug, PartialEq)]
enum HeaderOp {
    Set(bool, String, String),
    Add(bool, String, String),
    Del(bool, String),
}

/// `http-request|http-response set-header|add-header|del-header ...`
/// without a condition.
fn header_op(l: &Line) -> Result<HeaderOp, String> {
    let w = &l.words;
    let req = w[0] == "http-request";
    let act = w.get(1).map(String::as_str).unwrap_or("");
    if w.iter().any(|x| x == "if" || x == "unless") {
        return Err("a conditional header rule: tandem applies header changes per route".into());
    }
    let name = w.get(2).cloned().ok_or("missing header name")?;
    match act {
        "set-header" | "add-header" => {
            let v = w.get(3).cloned().ok_or("missing header value")?;
            if v.contains("%[") || v.contains("%{") || (v.contains('%') && !v.contains("%%")) {
                return Err("the value uses HAProxy log-format expressions; tandem header values are fixed strings".into());
            }
            let v = v.replace("%%", "%");
            Ok(if act == "set-header" {
                HeaderOp::Set(req, name, v)
            } else {
                HeaderOp::Add(req, name, v)
            })
        }
        "del-header" => Ok(HeaderOp::Del(req, name)),
        _ => Err("no tandem equivalent".into()),
    }
}

/// Keywords `setting` handles (for every proxy kind).
const SETTING_KEYS: &[&str] = &[
    "mode",
    "timeout",
    "maxconn",
    "balance",
    "retries",
    "default-server",
    "http-check",
    "tcp-check",
    "option",
];

const FRONTEND_KEYS: &[&str] = &[
    "bind",
    "acl",
    "use_backend",
    "default_backend",
    "http-request",
    "http-response",
    "redirect",
    "capture",
    "monitor-uri",
    "log",
    "errorfile",
    "description",
    "id",
    "unique-id-format",
    "unique-id-header",
    "tcp-request",
    "compression",
    "filter",
    "declare",
    "monitor",
    "stats",
    "maxconn",
    "backlog",
    "option",
];

// ---------------------------------------------------------------------------
// ACLs and routes
// ---------------------------------------------------------------------------

#[derive(Clone, Default, PartialEq, Debug)]
pub struct M {
    pub host: Option<String>,
    pub path: Option<(&'static str, String)>,
    pub methods: Vec<String>,
    pub header: Vec<(String, V)>,
    pub cookie: Vec<(String, V)>,
    pub query: Vec<(String, V)>,
}

impl M {
    fn and(&self, o: &M) -> Result<M, String> {
        let mut m = self.clone();
        match (&m.host, &o.host) {
            (Some(a), Some(b)) if a != b => {
                return Err("two different host conditions in one rule".into())
            }
            (None, Some(b)) => m.host = Some(b.clone()),
            _ => {}
        }
        match (&m.path, &o.path) {
            (Some(a), Some(b)) if a != b => {
                return Err(
                    "two path conditions in one rule (tandem matches one path per route)".into(),
                )
            }
            (None, Some(b)) => m.path = Some(b.clone()),
            _ => {}
        }
        if !o.methods.is_empty() {
            if m.methods.is_empty() {
                m.methods = o.methods.clone();
            } else {
                m.methods.retain(|x| o.methods.contains(x));
                if m.methods.is_empty() {
                    return Err("method conditions that never hold together".into());
                }
            }
        }
        for (list, other) in [
            (&mut m.header, &o.header),
            (&mut m.cookie, &o.cookie),
            (&mut m.query, &o.query),
        ] {
            for (k, v) in other {
                match list.iter().find(|(k2, _)| k2.eq_ignore_ascii_case(k)) {
                    Some((_, v2)) if v2 != v => {
                        return Err(format!("two conditions on {k} in one rule"))
                    }
                    Some(_) => {}
                    None => list.push((k.clone(), v.clone())),
                }
            }
        }
        Ok(m)
    }

    pub fn to_v(&self) -> V {
        let mut kv = Vec::new();
        if let Some(h) = &self.host {
            kv.push(("host".to_string(), V::s(h.clone())));
        }
        if let Some((k, p)) = &self.path {
            kv.push((k.to_string(), V::s(p.clone())));
        }
        match self.methods.len() {
            0 => {}
            1 => kv.push(("method".into(), V::s(self.methods[0].clone()))),
            _ => kv.push(("method".into(), V::strs(self.methods.clone()))),
        }
        for (k, list) in [
            ("header", &self.header),
            ("cookie", &self.cookie),
            ("query", &self.query),
        ] {
            if !list.is_empty() {
                kv.push((k.into(), V::T(list.clone())));
            }
        }
        V::T(kv)
    }
}

/// `criterion [flags] values...` → alternatives (any one matches).
pub fn acl_alternatives(words: &[String]) -> Result<Vec<M>, String> {
    let Some(crit) = words.first() else {
        return Err("empty ACL".into());
    };
    let mut icase = false;
    let mut method: Option<String> = None;
    let mut values = Vec::new();
    let mut i = 1;
    while i < words.len() {
        let w = words[i].as_str();
        match w {
            "-i" => icase = true,
            "-m" => {
                method = words.get(i + 1).cloned();
                i += 1;
            }
            "--" => {
                values.extend(words[i + 1..].iter().cloned());
                break;
            }
            "-f" | "-M" => return Err("ACL values from files are not imported".into()),
            "-n" | "-u" => {}
            _ => values.push(w.to_string()),
        }
        i += 1;
    }
    // fetch + match method ("path_beg" = "path -m beg").
    let (fetch, arg, suffix) = split_criterion(crit);
    let meth = method.unwrap_or_else(|| suffix.unwrap_or("str").to_string());
    let esc = |v: &str| regex::escape(v);
    let ci = if icase { "(?i)" } else { "" };
    let rx = |v: &str| -> String {
        match meth.as_str() {
            "beg" => format!("{ci}^{}", esc(v)),
            "end" => format!("{ci}{}$", esc(v)),
            "sub" => format!("{ci}{}", esc(v)),
            "reg" => format!("{ci}{v}"),
            "dom" => format!("{ci}(^|[./?:]){}($|[./?:])", esc(v)),
            _ => format!("{ci}^{}$", esc(v)),
        }
    };
    let val = |v: &str| -> V {
        if meth == "str" && !icase {
            V::s(v)
        } else {
            V::T(vec![("regex".into(), V::s(rx(v)))])
        }
    };
    let m = |f: &dyn Fn(&mut M)| {
        let mut x = M::default();
        f(&mut x);
        x
    };
    if meth == "found" {
        let present = V::B(true);
        return match (fetch, arg) {
            ("hdr" | "req.hdr", Some(a)) => Ok(vec![m(&|x| {
                x.header.push((a.to_string(), present.clone()))
            })]),
            ("cook" | "req.cook", Some(a)) => Ok(vec![m(&|x| {
                x.cookie.push((a.to_string(), present.clone()))
            })]),
            ("urlp" | "url_param", Some(a)) => {
                Ok(vec![m(&|x| x.query.push((a.to_string(), present.clone())))])
            }
            _ => Err(format!("`{crit} -m found` has no tandem equivalent")),
        };
    }
    if values.is_empty() {
        return Err("an ACL without values".into());
    }
    if !matches!(meth.as_str(), "str" | "beg" | "end" | "sub" | "reg" | "dom") {
        return Err(format!("match method -m {meth} has no tandem equivalent"));
    }
    match (fetch, arg) {
        ("path" | "url", None) => Ok(values
            .iter()
            .map(|v| {
                m(&|x| {
                    x.path = Some(match (meth.as_str(), icase) {
                        ("beg", false) => ("path_prefix", v.clone()),
                        ("str", false) => ("path_exact", v.clone()),
                        _ => ("path_regex", rx(v)),
                    })
                })
            })
            .collect()),
        ("method", None) => Ok(vec![m(&|x| x.methods = values.iter().map(|v| v.to_ascii_uppercase()).collect())]),
        ("hdr" | "req.hdr" | "hdr_val", Some(h)) if h.eq_ignore_ascii_case("host") => {
            let mut out = Vec::new();
            for v in &values {
                if v.contains(':') {
                    return Err(format!("host {v:?} with a port: tandem matches host names without the port"));
                }
                match meth.as_str() {
                    "str" => out.push(m(&|x| x.host = Some(v.to_ascii_lowercase()))),
                    "end" if v.starts_with('.') => out.push(m(&|x| x.host = Some(format!("*{}", v.to_ascii_lowercase())))),
                    "dom" => {
                        out.push(m(&|x| x.host = Some(v.to_ascii_lowercase())));
                        out.push(m(&|x| x.host = Some(format!("*.{}", v.to_ascii_lowercase()))));
                    }
                    _ => {
                        let re = format!("(?i){}", rx(v).trim_start_matches("(?i)"));
                        out.push(m(&|x| x.header.push(("Host".into(), V::T(vec![("regex".into(), V::s(re.clone()))])))));
                    }
                }
            }
            Ok(out)
        }
        ("hdr" | "req.hdr", Some(h)) => Ok(values.iter().map(|v| m(&|x| x.header.push((h.to_string(), val(v))))).collect()),
        ("cook" | "req.cook", Some(c)) => Ok(values.iter().map(|v| m(&|x| x.cookie.push((c.to_string(), val(v))))).collect()),
        ("urlp" | "url_param", Some(q)) => Ok(values.iter().map(|v| m(&|x| x.query.push((q.to_string(), val(v))))).collect()),
        ("src", _) => Err("tandem routes have no client-address matcher (src)".into()),
        _ => Err(format!("`{crit}` has no tandem route matcher (supported: path*, url_beg, hdr*(...), method, cook(...), urlp(...))")),
    }
}

/// "path_beg" → ("path", None, Some("beg")); "hdr_end(host)" →
/// ("hdr", Some("host"), Some("end")); "req.hdr(x)" → ("req.hdr", Some("x"), None).
fn split_criterion(c: &str) -> (&str, Option<&str>, Option<&str>) {
    let (head, arg) = match c.split_once('(') {
        Some((h, rest)) => (
            h,
            Some(rest.trim_end_matches(')').split(',').next().unwrap_or("")),
        ),
        None => (c, None),
    };
    for base in [
        "path",
        "url",
        "hdr",
        "cook",
        "urlp",
        "url_param",
        "req.hdr",
        "req.cook",
    ] {
        if let Some(sfx) = head.strip_prefix(base).and_then(|s| s.strip_prefix('_')) {
            if matches!(
                sfx,
                "beg" | "end" | "sub" | "reg" | "dom" | "len" | "dir" | "cnt"
            ) {
                return (base, arg, Some(sfx));
            }
        }
    }
    (head, arg, None)
}

fn predefined(name: &str) -> Option<Result<Vec<M>, String>> {
    let meth = |ms: &[&str]| {
        Some(Ok(vec![M {
            methods: ms.iter().map(|s| s.to_string()).collect(),
            ..M::default()
        }]))
    };
    match name {
        "TRUE" => Some(Ok(vec![M::default()])),
        "FALSE" => Some(Ok(vec![])),
        "METH_GET" => meth(&["GET", "HEAD"]),
        "METH_POST" => meth(&["POST"]),
        "METH_PUT" => meth(&["PUT"]),
        "METH_DELETE" => meth(&["DELETE"]),
        "METH_OPTIONS" => meth(&["OPTIONS"]),
        "METH_HEAD" => meth(&["HEAD"]),
        "METH_CONNECT" => meth(&["CONNECT"]),
        "METH_TRACE" => meth(&["TRACE"]),
        "HTTP" => Some(Ok(vec![M::default()])),
        _ => None,
    }
}

/// A rule condition (`if a b || !c { path_beg /x }`) → alternatives in DNF.
pub fn condition(
    words: &[String],
    acls: &HashMap<String, Vec<Result<Vec<M>, String>>>,
) -> Result<Vec<M>, String> {
    let Some(kw) = words.first() else {
        return Ok(vec![M::default()]);
    };
    if kw == "unless" {
        return Err("`unless` (a negated condition): tandem routes cannot negate".into());
    }
    if kw != "if" {
        return Err(format!(
            "unexpected `{kw}` where `if` or `unless` was expected"
        ));
    }
    let mut groups: Vec<Vec<Vec<M>>> = vec![Vec::new()];
    let mut i = 1;
    while i < words.len() {
        let w = words[i].as_str();
        i += 1;
        if w == "||" || w == "or" {
            groups.push(Vec::new());
            continue;
        }
        if w.starts_with('!') {
            return Err(format!(
                "`{w}` (a negated ACL): tandem routes cannot negate"
            ));
        }
        let alts = if w == "{" {
            let end = words[i..]
                .iter()
                .position(|x| x == "}")
                .ok_or("unterminated anonymous ACL `{ ... }`")?;
            let a = acl_alternatives(&words[i..i + end])?;
            i += end + 1;
            a
        } else if let Some(lines) = acls.get(w) {
            let mut all = Vec::new();
            for l in lines {
                all.extend(l.clone().map_err(|e| format!("ACL {w}: {e}"))?);
            }
            all
        } else if let Some(p) = predefined(w) {
            p?
        } else {
            return Err(format!("ACL {w} is not defined"));
        };
        if let Some(g) = groups.last_mut() {
            g.push(alts);
        }
    }
    let mut out = Vec::new();
    for g in groups {
        let mut acc = vec![M::default()];
        for alts in g {
            let mut next = Vec::new();
            for a in &acc {
                for b in &alts {
                    next.push(a.and(b)?);
                }
            }
            acc = next;
            if acc.len() > 64 {
                return Err("more than 64 route combinations".into());
            }
        }
        out.extend(acc);
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// Frontends
// ---------------------------------------------------------------------------

fn bind_addrs(spec: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for part in spec.split(',') {
        let p = part
            .strip_prefix("ipv4@")
            .or_else(|| part.strip_prefix("ipv6@"))
            .unwrap_or(part);
        if p.contains('@') || p.starts_with('/') {
            return Err(format!("{part}: tandem listens on IP:PORT only"));
        }
        let (host, port) = p
            .rsplit_once(':')
            .ok_or_else(|| format!("{part}: no port"))?;
        if port.contains('-') {
            return Err(format!("{part}: port ranges are not supported"));
        }
        let port: u16 = port.parse().map_err(|_| format!("{part}: bad port"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let ip = match host {
            "" | "*" | "0.0.0.0" => "0.0.0.0".to_string(),
            "::" => "[::]".to_string(),
            h => match h.parse::<std::net::IpAddr>() {
                Ok(std::net::IpAddr::V6(v6)) => format!("[{v6}]"),
                Ok(v4) => v4.to_string(),
                Err(_) => return Err(format!("{part}: tandem does not resolve host names")),
            },
        };
        out.push(format!("{ip}:{port}"));
    }
    Ok(out)
}

struct Route {
    m: M,
    action: Vec<(String, V)>,
    pool: Option<String>,
}

#[allow(clippy::too_many_arguments)]
fn listeners(
    sec: &Section,
    set: &Settings,
    g: &Globals,
    pools: &HashMap<String, (String, PoolInfo)>,
    self_pool: Option<&str>,
    names: &mut Names,
    r: &mut Report,
    global_maxconn: Option<i64>,
) -> Vec<Table> {
    let fe = sec.name().unwrap_or("");
    let mut acls: HashMap<String, Vec<Result<Vec<M>, String>>> = HashMap::new();
    let mut binds: Vec<&Line> = Vec::new();
    let mut routes: Vec<Route> = Vec::new();
    let mut default: Option<String> = self_pool.map(String::from);
    let mut ops: Vec<HeaderOp> = Vec::new();
    let mut tcp_rules = false;
    let listen = sec.kind == "listen";
    let target = |b: &str, r: &mut Report, l: &Line| -> Option<String> {
        if b.contains("%[") {
            ni(
                r,
                l,
                "a backend name computed at runtime has no tandem equivalent",
            );
            return None;
        }
        match pools.get(b) {
            Some((p, _)) => Some(p.clone()),
            None => {
                ni(r, l, &format!("backend {b} was not imported"));
                None
            }
        }
    };
    for l in &sec.lines {
        let w = &l.words;
        match w[0].as_str() {
            "bind" => binds.push(l),
            "acl" => match w.get(1) {
                Some(n) => acls
                    .entry(n.clone())
                    .or_default()
                    .push(acl_alternatives(&w[2..])),
                None => ni(r, l, "acl without a name"),
            },
            "default_backend" => {
                if let Some(b) = w.get(1) {
                    default = target(b, r, l);
                }
            }
            "use_backend" => {
                let Some(b) = w.get(1) else { continue };
                let Some(p) = target(b, r, l) else { continue };
                if !set.mode_http {
                    if w.len() == 2 {
                        default = Some(p);
                    } else {
                        ni(r, l, "conditional use_backend in mode tcp: tandem's tcp listeners forward to one pool");
                    }
                    continue;
                }
                match condition(&w[2..], &acls) {
                    Ok(alts) => {
                        for m in alts {
                            routes.push(Route {
                                m,
                                action: vec![("pool".into(), V::s(p.clone()))],
                                pool: Some(p.clone()),
                            });
                        }
                        r.add(Kind::Imported, &l.loc, stmt(l), "a route");
                    }
                    Err(why) => ni(
                        r,
                        l,
                        &format!("{why}; requests it matched now fall through to the next rule"),
                    ),
                }
            }
            "redirect" | "http-request"
                if set.mode_http
                    && (w[0] == "redirect"
                        || w.get(1).is_some_and(|a| a == "redirect" || a == "deny")) =>
            {
                let body = if w[0] == "redirect" { &w[1..] } else { &w[2..] };
                let (act, cond) = match body.iter().position(|x| x == "if" || x == "unless") {
                    Some(i) => (&body[..i], &body[i..]),
                    None => (body, &body[body.len()..]),
                };
                let action = if w[0] == "http-request" && w[1] == "deny" {
                    let status = act
                        .iter()
                        .position(|x| x == "deny_status")
                        .and_then(|i| act.get(i + 1))
                        .and_then(|s| s.parse::<i64>().ok())
                        .unwrap_or(403);
                    Ok(vec![(
                        "respond".to_string(),
                        V::T(vec![
                            ("status".into(), V::I(status)),
                            ("body".into(), V::s("Forbidden\n")),
                        ]),
                    )])
                } else {
                    redirect(act)
                };
                match (action, condition(cond, &acls)) {
                    (Ok(a), Ok(alts)) => {
                        for m in alts {
                            routes.push(Route {
                                m,
                                action: a.clone(),
                                pool: None,
                            });
                        }
                        r.add(Kind::Imported, &l.loc, stmt(l), "a route");
                    }
                    (Err(why), _) | (_, Err(why)) => ni(r, l, &why),
                }
            }
            "http-request" | "http-response" => match header_op(l) {
                Ok(op) => {
                    ops.push(op);
                    r.add(
                        Kind::Imported,
                        &l.loc,
                        stmt(l),
                        "header change on every route",
                    );
                }
                Err(why) => ni(r, l, &why),
            },
            "tcp-request" => {
                tcp_rules = true;
                ni(r, l, "tandem has no tcp-request rules");
            }
            "monitor-uri" => match w.get(1) {
                Some(u) if set.mode_http => {
                    routes.insert(
                        0,
                        Route {
                            m: M {
                                path: Some(("path_exact", u.clone())),
                                ..M::default()
                            },
                            action: vec![(
                                "respond".into(),
                                V::T(vec![
                                    ("status".into(), V::I(200)),
                                    ("body".into(), V::s("ok\n")),
                                ]),
                            )],
                            pool: None,
                        },
                    );
                    r.add(Kind::Imported, &l.loc, stmt(l), "a route answering 200");
                }
                _ => ni(r, l, "no tandem equivalent"),
            },
            "maxconn" | "option" | "mode" | "timeout" | "balance" | "retries"
            | "default-server" | "http-check" | "tcp-check" => {}
            k => {
                if !listen || FRONTEND_KEYS.contains(&k) {
                    ni(r, l, "no tandem equivalent");
                }
            }
        }
    }
    let _ = tcp_rules;
    // Header changes of the backends apply to routes forwarding there.
    let mut out = Vec::new();
    if default.is_none() && routes.is_empty() {
        r.add(
            Kind::NotImported,
            &sec.loc,
            format!("{} {fe}", sec.kind),
            "no backend to forward to (no imported default_backend or use_backend)",
        );
        return out;
    }
    let proto_http = set.mode_http;
    for (bi, b) in binds.iter().enumerate() {
        let Some(spec) = b.words.get(1) else {
            ni(r, b, "bind without an address");
            continue;
        };
        let addrs = match bind_addrs(spec) {
            Ok(a) => a,
            Err(why) => {
                ni(r, b, &why);
                continue;
            }
        };
        // Bind options.
        let opts = &b.words[2..];
        let mut ssl = false;
        let mut crts: Vec<String> = Vec::new();
        let mut alpn: Option<String> = None;
        let mut maxconn = None;
        let mut backlog = None;
        let mut dropped = Vec::new();
        let mut i = 0;
        while i < opts.len() {
            let o = opts[i].as_str();
            let v = opts.get(i + 1).cloned();
            match o {
                "ssl" => ssl = true,
                "crt" => {
                    i += 1;
                    if let Some(c) = v {
                        crts.push(match (&g.crt_base, Path::new(&c).is_relative()) {
                            (Some(base), true) => base.join(&c).display().to_string(),
                            _ => c,
                        });
                    }
                }
                "alpn" => {
                    i += 1;
                    alpn = v;
                }
                "maxconn" => {
                    i += 1;
                    maxconn = v.and_then(|x| x.parse::<i64>().ok());
                }
                "backlog" => {
                    i += 1;
                    backlog = v.and_then(|x| x.parse::<i64>().ok());
                }
                "accept-proxy" => r.add(Kind::NotImported, &b.loc, "bind ... accept-proxy", "tandem does not read PROXY protocol headers from clients: whatever sends them must stop, or its requests fail"),
                "v4v6" | "v6only" | "transparent" | "defer-accept" | "tfo" | "no-sslv3" | "no-tlsv10" | "no-tlsv11" | "prefer-client-ciphers" => {
                    if matches!(o, "transparent" | "tfo" | "v6only") {
                        dropped.push(o.to_string());
                    }
                }
                "ssl-min-ver" | "ssl-max-ver" | "ciphers" | "ciphersuites" | "curves" | "ecdhe" => {
                    i += 1;
                    r.add(Kind::Approximated, &b.loc, format!("bind ... {o} {}", v.unwrap_or_default()), "tandem uses rustls' defaults: TLS 1.2 and 1.3 with modern cipher suites");
                }
                "name" | "id" | "process" | "thread" | "interface" | "mss" | "nice" | "uid" | "gid" | "mode" | "user" | "group" | "level" | "severity-output" | "npn" | "tcp-ut" | "namespace" | "ca-file" | "verify" | "crt-list" | "crl-file" | "ca-ignore-err" | "crt-ignore-err" | "ocsp-update" | "proto" | "label" => {
                    i += 1;
                    if !matches!(o, "name" | "id" | "process" | "thread" | "npn") {
                        dropped.push(format!("{o} {}", v.unwrap_or_default()));
                    }
                }
                other => dropped.push(other.to_string()),
            }
            i += 1;
        }
        if !dropped.is_empty() {
            r.add(Kind::NotImported, &b.loc, format!("bind {spec}: {}", dropped.join(", ")), "no tandem equivalent for these bind options (client certificates, crt-list, interface binding...)");
        }
        // Certificates.
        let mut certs: Vec<V> = Vec::new();
        if ssl {
            if !proto_http {
                ni(
                    r,
                    b,
                    "TLS on a tcp frontend: tandem terminates TLS on https listeners only",
                );
                continue;
            }
            let mut files = Vec::new();
            for c in &crts {
                let p = Path::new(c);
                if p.is_dir() {
                    let mut list: Vec<PathBuf> = std::fs::read_dir(p)
                        .into_iter()
                        .flatten()
                        .filter_map(|e| e.ok())
                        .map(|e| e.path())
                        .filter(|f| {
                            f.is_file()
                                && !f.extension().is_some_and(|x| {
                                    matches!(x.to_str(), Some("key" | "ocsp" | "issuer" | "sctl"))
                                })
                        })
                        .collect();
                    list.sort();
                    files.extend(list.into_iter().map(|f| f.display().to_string()));
                } else {
                    files.push(c.clone());
                }
            }
            for (k, f) in files.iter().enumerate() {
                let pem = match std::fs::read_to_string(f) {
                    Ok(t) => t,
                    Err(e) => {
                        r.add(
                            Kind::NotImported,
                            &b.loc,
                            format!("bind ... crt {f}"),
                            format!(
                                "cannot read it here ({e}); tandem check loads every certificate"
                            ),
                        );
                        continue;
                    }
                };
                let key = if pem.contains("PRIVATE KEY-----") {
                    f.clone()
                } else {
                    format!("{f}.key")
                };
                let mut kv = vec![
                    ("cert".to_string(), V::s(f.clone())),
                    ("key".into(), V::s(key)),
                ];
                if k == 0 && files.len() > 1 {
                    kv.push(("default".into(), V::B(true)));
                }
                certs.push(V::T(kv));
            }
            if certs.is_empty() {
                r.add(Kind::NotImported, &b.loc, stmt(b), "no usable certificate");
                continue;
            }
        }
        for addr in addrs {
            let base = if bi == 0 && out.is_empty() {
                sanitize_name(fe)
            } else {
                sanitize_name(&format!("{fe}-{}", out.len() + 1))
            };
            let lname = names.unique("listener", &base);
            let mut t = Table::new("listener");
            t.owner = sec.loc.to_string();
            t.comments
                .push(format!("from {} {} {fe}, {}", sec.loc, sec.kind, b.loc));
            t.set("name", V::s(lname.clone()));
            t.set("bind", V::s(addr.clone()));
            let proto = match (proto_http, ssl) {
                (false, _) => "tcp",
                (true, false) => "http",
                (true, true) => "https",
            };
            t.set("protocol", V::s(proto));
            let mc = maxconn.or(set.maxconn).or(global_maxconn);
            if let Some(m) = mc {
                t.set("max_connections", V::I(m.clamp(0, 10_000_000)));
            }
            if let Some(bl) = backlog {
                t.set("backlog", V::I(bl.clamp(1, 65535)));
            }
            if let Some(c) = set.client {
                t.set("idle_timeout", V::dur(c));
            }
            if !proto_http {
                let Some(p) = &default else { continue };
                t.set("pool", V::s(p.clone()));
                if let Some(sp) = pools
                    .values()
                    .find(|(n, _)| n == p)
                    .and_then(|(_, i)| i.send_proxy)
                {
                    t.set("send_proxy", V::s(sp));
                }
            } else {
                let mut list: Vec<V> = Vec::new();
                let mut all = routes
                    .iter()
                    .map(|x| (x.m.clone(), x.action.clone(), x.pool.clone()))
                    .collect::<Vec<_>>();
                if let Some(d) = &default {
                    all.push((
                        M::default(),
                        vec![("pool".into(), V::s(d.clone()))],
                        Some(d.clone()),
                    ));
                }
                let simple = all.len() == 1
                    && ops.is_empty()
                    && all[0].2.as_ref().is_some_and(|p| {
                        pools
                            .values()
                            .find(|(n, _)| n == p)
                            .is_none_or(|(_, i)| i.header_ops.is_empty())
                    });
                if simple {
                    t.set("pool", V::s(all[0].2.clone().unwrap_or_default()));
                } else {
                    for (m, action, pool) in all {
                        let mut kv = Vec::new();
                        let mv = m.to_v();
                        if mv != V::T(vec![]) {
                            kv.push(("match".to_string(), mv));
                        }
                        kv.extend(action);
                        if let Some(p) = &pool {
                            let mut o = ops.clone();
                            if let Some((_, info)) = pools.values().find(|(n, _)| n == p) {
                                o.extend(info.header_ops.iter().cloned());
                            }
                            for (req, key) in
                                [(true, "request_headers"), (false, "response_headers")]
                            {
                                let mut set_ = Vec::new();
                                let mut add = Vec::new();
                                let mut del = Vec::new();
                                for op in &o {
                                    match op {
                                        HeaderOp::Set(q, n, v) if *q == req => {
                                            set_.push((n.clone(), V::s(v.clone())))
                                        }
                                        HeaderOp::Add(q, n, v) if *q == req => {
                                            add.push((n.clone(), V::s(v.clone())))
                                        }
                                        HeaderOp::Del(q, n) if *q == req => del.push(n.clone()),
                                        _ => {}
                                    }
                                }
                                let mut hk = Vec::new();
                                if !set_.is_empty() {
                                    hk.push(("set".to_string(), V::T(set_)));
                                }
                                if !add.is_empty() {
                                    hk.push(("add".to_string(), V::T(add)));
                                }
                                if !del.is_empty() {
                                    hk.push(("remove".to_string(), V::strs(del)));
                                }
                                if !hk.is_empty() {
                                    kv.push((key.to_string(), V::T(hk)));
                                }
                            }
                        }
                        list.push(V::T(kv));
                    }
                    t.set("routes", V::A(list));
                }
                if proto == "https" {
                    t.set(
                        "tls",
                        V::T(vec![("certificates".into(), V::A(certs.clone()))]),
                    );
                    let h2 = alpn
                        .as_deref()
                        .is_some_and(|a| a.split(',').any(|p| p == "h2"));
                    t.set("http2", V::B(h2));
                    if !h2 {
                        t.comments.push(
                            "no `alpn h2` on the bind: HTTP/2 stays off, as in HAProxy".into(),
                        );
                    }
                }
                if let Some(d) = set.http_request {
                    t.set("header_timeout", V::dur(d));
                }
                if let Some(d) = set.keep_alive {
                    t.set("keepalive_timeout", V::dur(d));
                }
                if set.httplog {
                    t.set("access_log", V::B(true));
                }
                if !set.forwardfor && bi == 0 {
                    r.add(
                        Kind::Approximated,
                        &sec.loc,
                        format!("{} {fe} without option forwardfor", sec.kind),
                        "tandem always adds X-Forwarded-For (and X-Forwarded-Proto/Host)",
                    );
                }
            }
            r.add(
                Kind::Imported,
                &b.loc,
                stmt(b),
                format!("listener {lname:?} ({proto} {addr})"),
            );
            out.push(t);
        }
    }
    if binds.is_empty() {
        r.add(
            Kind::NotImported,
            &sec.loc,
            format!("{} {fe}", sec.kind),
            "no bind line",
        );
    }
    out
}

fn redirect(act: &[String]) -> Result<Vec<(String, V)>, String> {
    let kind = act.first().map(String::as_str).unwrap_or("");
    let target = act.get(1).cloned().ok_or("redirect without a target")?;
    let mut code = 302;
    let mut drop_query = false;
    let mut i = 2;
    while i < act.len() {
        match act[i].as_str() {
            "code" => {
                code = act.get(i + 1).and_then(|c| c.parse().ok()).unwrap_or(302);
                i += 1;
            }
            "drop-query" => drop_query = true,
            o => return Err(format!("redirect option `{o}` has no tandem equivalent")),
        }
        i += 1;
    }
    if target.contains("%[") || target.contains('{') {
        return Err("a computed redirect target has no tandem equivalent".into());
    }
    let rest = if drop_query { "{path}" } else { "{uri}" };
    let location = match kind {
        "scheme" => format!("{target}://{{host}}{rest}"),
        "prefix" => format!("{}{rest}", target.trim_end_matches('/')),
        "location" => target,
        _ => return Err(format!("redirect {kind} has no tandem equivalent")),
    };
    Ok(vec![(
        "redirect".into(),
        V::T(vec![
            ("status".into(), V::I(code)),
            ("location".into(), V::s(location)),
        ]),
    )])
}

/// The result: tables in input order, and the `[global]` keys.
pub struct Mapped {
    pub tables: Vec<Table>,
    pub global: Vec<(String, V)>,
    /// Pool names made from HAProxy backends (keepalived scripts that
    /// check the local proxy track them).
    pub pools: Vec<String>,
}

pub fn map(sections: &[Section], names: &mut Names, r: &mut Report) -> Mapped {
    let mut g = Globals::default();
    let mut global_keys = Vec::new();
    let mut global_maxconn = None;
    // Global first: it sets bases for paths.
    for s in sections.iter().filter(|s| s.kind == "global") {
        for l in &s.lines {
            let w = &l.words;
            let a1 = w.get(1);
            match w[0].as_str() {
                "ca-base" => g.ca_base = a1.map(PathBuf::from),
                "crt-base" => g.crt_base = a1.map(PathBuf::from),
                "ssl-server-verify" => g.verify_none = a1.is_some_and(|v| v == "none"),
                "nbthread" => match a1.and_then(|v| v.parse::<i64>().ok()) {
                    Some(n) if (1..=256).contains(&n) => {
                        global_keys.push(("workers".to_string(), V::I(n)));
                        r.add(Kind::Imported, &l.loc, stmt(l), format!("workers = {n}"));
                    }
                    _ => ni(r, l, "nbthread must be 1..=256"),
                },
                "hard-stop-after" => match a1.and_then(|v| time(v)) {
                    Some(d) => {
                        global_keys.push(("shutdown_timeout".to_string(), V::dur(d)));
                        r.add(Kind::Imported, &l.loc, stmt(l), "shutdown_timeout");
                    }
                    None => ni(r, l, "not a time"),
                },
                "maxconn" => {
                    global_maxconn = a1.and_then(|v| v.parse::<i64>().ok());
                    r.add(Kind::Approximated, &l.loc, stmt(l), "tandem limits connections per listener: max_connections on every listener without its own maxconn (the process has no total cap)");
                }
                "daemon" | "master-worker" | "pidfile" | "user" | "group" | "uid" | "gid" | "chroot" | "nbproc" => {
                    ni(r, l, "tandem runs in the foreground under systemd as the tandem user (systemd/tandem.service)")
                }
                "log" | "log-tag" | "log-send-hostname" => ni(r, l, "tandem logs to stderr (the journal); set log_level in [global]"),
                "stats" => ni(r, l, "tandem's admin API is global.admin_socket (`tandem status`, `tandem backend ...`); metrics: global.metrics_listen"),
                k if k.starts_with("ssl-default") || k.starts_with("tune.ssl") || k == "ssl-dh-param-file" => {
                    r.add(Kind::Approximated, &l.loc, stmt(l), "tandem uses rustls' defaults: TLS 1.2 and 1.3 with modern cipher suites")
                }
                _ => ni(r, l, "no tandem equivalent"),
            }
        }
    }
    // Defaults: report once, apply to the proxies that follow.
    let mut defaults: HashMap<String, Settings> = HashMap::new();
    let mut current = Settings::default();
    let mut per_proxy: Vec<Option<Settings>> = Vec::new();
    for s in sections {
        match s.kind.as_str() {
            "defaults" => {
                let mut d = match s
                    .args
                    .iter()
                    .position(|a| a == "from")
                    .and_then(|i| s.args.get(i + 1))
                {
                    Some(f) => defaults.get(f).cloned().unwrap_or_default(),
                    None => Settings::default(),
                };
                for l in &s.lines {
                    if setting(&mut d, l, r, true) {
                        if !r.notes.last().is_some_and(|n| n.loc == l.loc) {
                            r.add(
                                Kind::Imported,
                                &l.loc,
                                stmt(l),
                                "applies to the proxies below",
                            );
                        }
                    } else {
                        ni(r, l, "no tandem equivalent");
                    }
                }
                if let Some(n) = s.name().filter(|n| *n != "from") {
                    defaults.insert(n.to_string(), d.clone());
                }
                current = d;
                per_proxy.push(None);
            }
            "frontend" | "backend" | "listen" => {
                let mut set = match s
                    .args
                    .iter()
                    .position(|a| a == "from")
                    .and_then(|i| s.args.get(i + 1))
                {
                    Some(f) => defaults.get(f).cloned().unwrap_or_default(),
                    None => current.clone(),
                };
                r.owner = s.loc.to_string();
                for l in &s.lines {
                    if !setting(&mut set, l, r, true) && l.words[0] == "option" {
                        ni(r, l, "no tandem equivalent");
                    }
                }
                r.owner.clear();
                per_proxy.push(Some(set));
            }
            "global" => per_proxy.push(None),
            other => {
                r.add(
                    Kind::NotImported,
                    &s.loc,
                    format!("{other} {}", s.args.join(" ")),
                    "no tandem equivalent for this section",
                );
                per_proxy.push(None);
            }
        }
    }
    // Pools (backend, listen), then listeners (frontend, listen).
    let mut pools: HashMap<String, (String, PoolInfo)> = HashMap::new();
    let mut tables: Vec<(usize, usize, Table)> = Vec::new();
    let mut pool_names = Vec::new();
    for (i, s) in sections.iter().enumerate() {
        let Some(set) = &per_proxy[i] else { continue };
        if s.kind == "backend" || s.kind == "listen" {
            r.owner = s.loc.to_string();
            let pname = names.unique("pool", &sanitize_name(s.name().unwrap_or("backend")));
            if let Some((t, info)) = pool(s, set, &g, &pname, r) {
                pools.insert(s.name().unwrap_or("").to_string(), (pname.clone(), info));
                pool_names.push(pname);
                tables.push((i, 0, t));
            } else {
                names.release("pool", &pname);
            }
            r.owner.clear();
        }
    }
    for (i, s) in sections.iter().enumerate() {
        let Some(set) = &per_proxy[i] else { continue };
        if s.kind == "frontend" || s.kind == "listen" {
            r.owner = s.loc.to_string();
            let own = if s.kind == "listen" {
                pools.get(s.name().unwrap_or("")).map(|p| p.0.clone())
            } else {
                None
            };
            for (k, t) in listeners(s, set, &g, &pools, own.as_deref(), names, r, global_maxconn)
                .into_iter()
                .enumerate()
            {
                tables.push((i, 1 + k, t));
            }
            r.owner.clear();
        }
    }
    tables.sort_by_key(|(i, k, _)| (*i, *k));
    Mapped {
        tables: tables.into_iter().map(|(_, _, t)| t).collect(),
        global: global_keys,
        pools: pool_names,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn acl_table() {
        let host = |h: &str| M {
            host: Some(h.into()),
            ..M::default()
        };
        let path = |k: &'static str, p: &str| M {
            path: Some((k, p.into())),
            ..M::default()
        };
        let cases: Vec<(&str, Result<Vec<M>, &str>)> = vec![
            ("path_beg /api /v2", Ok(vec![path("path_prefix", "/api"), path("path_prefix", "/v2")])),
            ("path -i /Login", Ok(vec![path("path_regex", "(?i)^/Login$")])),
            ("path /login", Ok(vec![path("path_exact", "/login")])),
            ("path_end .jpg", Ok(vec![path("path_regex", "\\.jpg$")])),
            ("path_reg ^/u/[0-9]+$", Ok(vec![path("path_regex", "^/u/[0-9]+$")])),
            ("url_beg /static", Ok(vec![path("path_prefix", "/static")])),
            ("path -m beg /x", Ok(vec![path("path_prefix", "/x")])),
            ("hdr(host) -i WWW.example.com", Ok(vec![host("www.example.com")])),
            ("hdr_end(host) -i .example.com", Ok(vec![host("*.example.com")])),
            ("hdr_dom(host) example.org", Ok(vec![host("example.org"), host("*.example.org")])),
            ("method POST put", Ok(vec![M { methods: vec!["POST".into(), "PUT".into()], ..M::default() }])),
            ("hdr(X-Canary) yes", Ok(vec![M { header: vec![("X-Canary".into(), V::s("yes"))], ..M::default() }])),
            ("req.hdr(X-Env) -m found", Ok(vec![M { header: vec![("X-Env".into(), V::B(true))], ..M::default() }])),
            ("cook(beta) 1", Ok(vec![M { cookie: vec![("beta".into(), V::s("1"))], ..M::default() }])),
            ("src 10.0.0.0/8", Err("tandem routes have no client-address matcher (src)")),
            ("hdr(host) example.com:8080", Err("host \"example.com:8080\" with a port: tandem matches host names without the port")),
            ("path_beg -f /etc/haproxy/paths.lst", Err("ACL values from files are not imported")),
            ("ssl_fc", Err("an ACL without values")),
            ("path_len 10", Err("match method -m len has no tandem equivalent")),
        ];
        for (src, want) in cases {
            assert_eq!(
                acl_alternatives(&w(src)),
                want.map_err(String::from),
                "{src}"
            );
        }
    }

    #[test]
    fn conditions_expand_to_dnf() {
        let mut acls = HashMap::new();
        acls.insert(
            "api".to_string(),
            vec![acl_alternatives(&w("path_beg /api"))],
        );
        acls.insert(
            "site".to_string(),
            vec![
                acl_alternatives(&w("hdr(host) a.com")),
                acl_alternatives(&w("hdr(host) b.com")),
            ],
        );
        acls.insert(
            "office".to_string(),
            vec![acl_alternatives(&w("src 10.0.0.0/8"))],
        );
        let got = condition(&w("if site api"), &acls).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].host.as_deref(), Some("b.com"));
        assert_eq!(got[1].path, Some(("path_prefix", "/api".into())));
        assert_eq!(
            condition(&w("if api || METH_POST"), &acls).unwrap().len(),
            2
        );
        assert_eq!(
            condition(&w("if { path_beg /x } METH_GET"), &acls).unwrap()[0].methods,
            ["GET", "HEAD"]
        );
        assert_eq!(condition(&w("if FALSE"), &acls).unwrap(), vec![]);
        for (c, e) in [
            (
                "if !api",
                "`!api` (a negated ACL): tandem routes cannot negate",
            ),
            (
                "unless api",
                "`unless` (a negated condition): tandem routes cannot negate",
            ),
            ("if nope", "ACL nope is not defined"),
            (
                "if office",
                "ACL office: tandem routes have no client-address matcher (src)",
            ),
            (
                "if api { path_beg /b }",
                "two path conditions in one rule (tandem matches one path per route)",
            ),
            ("if { path_beg /b", "unterminated anonymous ACL `{ ... }`"),
        ] {
            assert_eq!(condition(&w(c), &acls).unwrap_err(), e, "{c}");
        }
    }

    #[test]
    fn bind_address_forms() {
        for (spec, want) in [
            ("*:80", Ok(vec!["0.0.0.0:80".to_string()])),
            (":80", Ok(vec!["0.0.0.0:80".into()])),
            (
                "10.0.0.1:443,10.0.0.2:443",
                Ok(vec!["10.0.0.1:443".into(), "10.0.0.2:443".into()]),
            ),
            (":::80", Ok(vec!["[::]:80".into()])),
            ("[2001:db8::1]:80", Ok(vec!["[2001:db8::1]:80".into()])),
            ("ipv4@127.0.0.1:81", Ok(vec!["127.0.0.1:81".into()])),
            (
                "unix@/run/h.sock",
                Err("unix@/run/h.sock: tandem listens on IP:PORT only".to_string()),
            ),
            (
                ":8000-8010",
                Err(":8000-8010: port ranges are not supported".into()),
            ),
            (
                "www.example.com:80",
                Err("www.example.com:80: tandem does not resolve host names".into()),
            ),
        ] {
            assert_eq!(bind_addrs(spec), want, "{spec}");
        }
    }

    #[test]
    fn redirects() {
        assert_eq!(
            redirect(&w("scheme https code 301")).unwrap(),
            vec![(
                "redirect".to_string(),
                V::T(vec![
                    ("status".into(), V::I(301)),
                    ("location".into(), V::s("https://{host}{uri}"))
                ])
            )]
        );
        assert_eq!(
            redirect(&w("prefix https://new.example.com/ drop-query")).unwrap()[0].1,
            V::T(vec![
                ("status".into(), V::I(302)),
                ("location".into(), V::s("https://new.example.com{path}"))
            ])
        );
        assert!(redirect(&w("location /x set-cookie A=1")).is_err());
    }

    #[test]
    fn server_lines() {
        let g = Globals::default();
        let loc = Loc {
            file: "h".into(),
            line: 1,
        };
        let s = parse_server(&w("server web1 10.0.0.1:8080 check inter 500ms rise 3 fall 2 weight 20 maxconn 100 backup send-proxy-v2 slowstart 30s"), &loc, &g);
        assert_eq!(s.addr, Some("10.0.0.1:8080".parse().unwrap()));
        assert!(s.check && s.backup);
        assert_eq!(
            (s.inter, s.rise, s.fall, s.weight, s.maxconn),
            (
                Some(Duration::from_millis(500)),
                Some(3),
                Some(2),
                Some(20),
                Some(100)
            )
        );
        assert_eq!(s.send_proxy, Some("v2"));
        assert_eq!(s.dropped, ["slowstart 30s"]);
        let s = parse_server(&w("server app app.internal:80 check"), &loc, &g);
        assert!(s
            .addr_problem
            .unwrap()
            .contains("does not resolve host names"));
        let s = parse_server(&w("server app 10.0.0.1 check"), &loc, &g);
        assert!(s.addr_problem.unwrap().contains("has no port"));
    }
}
