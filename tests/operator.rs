//! What HAProxy operators use every day, through a real `tandem` process on
//! loopback: client ACLs and `source` routes, PROXY from clients, per-client
//! rate and connection limits, weighted canary splits, outlier ejection and
//! slow start. Clients pick their source inside 127.0.0.0/8 to stand for
//! different addresses.

mod support;

use std::io::{BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use socket2::{Domain, Socket, Type};
use support::config::checked_pool;
use support::*;
use tandem::admin::status::ListenerStatus;

fn pool(name: &str, webs: &[&Backend], extra: &str) -> String {
    let health = r#"{ check = "tcp", interval = "100ms", timeout = "50ms", rise = 1, fall = 1 }"#;
    checked_pool(name, health, webs, extra).to_string()
}

fn listener(name: &str, port: u16, protocol: &str, body: &str) -> String {
    Listener::bare(name, &format!("127.0.0.1:{port}"))
        .protocol(protocol)
        .raw(body)
        .to_string()
}

/// A connection from `src` (any 127.0.0.0/8 address works on loopback).
fn connect_from(src: &str, to: SocketAddr) -> std::io::Result<TcpStream> {
    let s = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    let ip: IpAddr = src.parse().map_err(std::io::Error::other)?;
    s.bind(&SocketAddr::new(ip, 0).into())?;
    s.connect_timeout(&to.into(), Duration::from_secs(2))?;
    let s: TcpStream = s.into();
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    Ok(s)
}

/// One request (with `prefix` bytes first, e.g. a PROXY header) from `src`.
fn get_from(
    src: &str,
    to: SocketAddr,
    prefix: &[u8],
    path: &str,
) -> Result<(u16, Headers, String), String> {
    let mut s = connect_from(src, to).map_err(|e| e.to_string())?;
    s.write_all(prefix).map_err(|e| e.to_string())?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: test.local\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    read_response(&mut BufReader::new(s))
        .map(|(st, h, b)| (st, h, String::from_utf8_lossy(&b).into_owned()))
}

/// What a TCP connection answers within 2 s: stops at EOF, or once the
/// `Mode::Http` backend's reply (which ends with its name and a newline)
/// is in.
fn tcp_answer(mut c: TcpStream) -> String {
    let _ = c.set_read_timeout(Some(Duration::from_millis(200)));
    let t0 = Instant::now();
    let mut got = Vec::new();
    let mut b = [0u8; 512];
    while t0.elapsed() < Duration::from_secs(2) && !got.ends_with(b"\n") {
        match c.read(&mut b) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&b[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// True when the server closed the connection without a byte of answer.
fn closed_silently(mut s: TcpStream) -> bool {
    let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut b = [0u8; 64];
    matches!(s.read(&mut b), Ok(0) | Err(_))
}

fn listener_status(d: &Daemon, name: &str) -> ListenerStatus {
    d.status().listener(name).clone()
}

fn metrics(port: u16) -> String {
    http_get(addr(port))
        .path("/metrics")
        .send()
        .map(|(_, _, b)| b)
        .unwrap_or_default()
}

#[test]
fn acl_refuses_before_any_backend_and_source_routes_pick_pools() {
    let dir = TempDir::new("acl");
    let (main, office) = (Backend::http("main"), Backend::http("office"));
    let echo = Backend::start("tcpb", Mode::Plain);
    let (hport, tport, mport) = (free_port(), free_port(), free_port());
    let cfg = pool("main", &[&main], "")
        + &pool("office", &[&office], "")
        + &format!(
            "[[pool]]\nname = \"tcp\"\nhealth = {{ check = \"none\" }}\nbackends = [{{ address = \"{}\" }}]\n",
            echo.addr
        )
        + &listener(
            "web",
            hport,
            "http",
            r#"allow = ["127.0.0.0/8", "::1"]
deny = ["127.0.0.66", "127.0.9.0/24"]
routes = [
  { match = { source = ["127.0.0.3/32"] }, pool = "office" },
  { pool = "main" },
]"#,
        )
        + &listener("tcp", tport, "tcp", "pool = \"tcp\"\ndeny = [\"127.0.0.66\"]");
    let d = Daemon::start_with_global(
        &dir,
        &format!("metrics_listen = \"127.0.0.1:{mport}\""),
        &cfg,
    );
    let (h, t) = (addr(hport), addr(tport));
    wait_port(h);
    assert_eq!(
        get_from("127.0.0.1", h, b"", "/").expect("allowed").2,
        "main"
    );
    assert_eq!(
        get_from("127.0.0.3", h, b"", "/").expect("office").2,
        "office",
        "source route"
    );
    let before = main.requests.load(std::sync::atomic::Ordering::Relaxed);
    for src in ["127.0.0.66", "127.0.9.7"] {
        let r = get_from(src, h, b"", "/");
        assert!(r.is_err(), "{src} denied, got {r:?}");
    }
    assert_eq!(
        main.requests.load(std::sync::atomic::Ordering::Relaxed),
        before,
        "a denied client never reaches a backend"
    );
    assert_eq!(listener_status(&d, "web").denied, 2);

    // L4: the denied client is closed before a backend connection opens.
    let accepted = echo.connections.load(std::sync::atomic::Ordering::Relaxed);
    assert!(closed_silently(
        connect_from("127.0.0.66", t).expect("connect")
    ));
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        echo.connections.load(std::sync::atomic::Ordering::Relaxed),
        accepted
    );
    let mut ok = connect_from("127.0.0.1", t).expect("connect");
    ok.write_all(b"GET / HTTP/1.0\r\n\r\n").expect("write");
    let got = tcp_answer(ok);
    assert!(got.contains("tcpb"), "{got:?}");
    assert_eq!(listener_status(&d, "tcp").denied, 1);
    assert!(metrics(mport)
        .contains("tandem_listener_denied_total{listener=\"web\",protocol=\"http\"} 2"));
}

#[test]
fn accept_proxy_takes_the_client_address_from_the_header() {
    let dir = TempDir::new("acceptproxy");
    let w = Backend::http("w");
    let echo = Backend::start("tcpb", Mode::Plain);
    let (hport, tport) = (free_port(), free_port());
    let cfg = pool("w", &[&w], "")
        + &format!(
            "[[pool]]\nname = \"tcp\"\nhealth = {{ check = \"none\" }}\nbackends = [{{ address = \"{}\" }}]\n",
            echo.addr
        )
        + &listener(
            "web",
            hport,
            "http",
            r#"pool = "w"
accept_proxy = true
accept_proxy_from = ["127.0.0.1"]
accept_proxy_timeout = "500ms"
deny = ["203.0.113.66"]
"#,
        )
        + &listener(
            "tcp",
            tport,
            "tcp",
            "pool = \"tcp\"\naccept_proxy = true\nallow = [\"198.51.100.0/24\"]",
        );
    let d = Daemon::start(&dir, &cfg);
    let h = addr(hport);
    wait_port(h);
    // v1 and v2 headers both set the client tandem reports to the backend.
    let v1 = b"PROXY TCP4 203.0.113.7 192.0.2.1 5555 80\r\n".to_vec();
    let mut v2 = b"\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c".to_vec();
    v2.extend_from_slice(&[203, 0, 113, 8, 192, 0, 2, 1, 0x15, 0xb3, 0, 80]);
    for (hdr, want) in [(&v1, "203.0.113.7"), (&v2, "203.0.113.8")] {
        let (st, _, body) = get_from("127.0.0.1", h, hdr, "/inspect").expect("proxied request");
        assert_eq!(st, 200);
        let xff = body
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("x-forwarded-for:"))
            .unwrap_or_default()
            .to_string();
        assert!(xff.ends_with(want), "{xff:?} in {body}");
    }
    // The ACL judges the address from the header.
    let denied = b"PROXY TCP4 203.0.113.66 192.0.2.1 5555 80\r\n";
    assert!(get_from("127.0.0.1", h, denied, "/").is_err());
    // No header, a malformed one, or one from an untrusted peer: closed.
    assert!(get_from("127.0.0.1", h, b"", "/").is_err(), "no header");
    assert!(get_from("127.0.0.1", h, b"PROXY TCP4 nonsense\r\n", "/").is_err());
    assert!(
        get_from("127.0.0.2", h, &v1, "/").is_err(),
        "untrusted peer"
    );
    // A client that sends nothing is cut at accept_proxy_timeout.
    let mut idle = connect_from("127.0.0.1", h).expect("connect");
    let t0 = Instant::now();
    let mut b = [0u8; 16];
    let _ = idle.read(&mut b);
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    let st = listener_status(&d, "web");
    assert_eq!(st.denied, 1, "{st:?}");
    // Three refused headers, the untrusted peer and the silent client.
    assert_eq!(st.proxy_errors, 5, "{st:?}");

    // L4: the header is consumed (the backend sees only the client's
    // bytes) and its address drives the allow list.
    let t = addr(tport);
    let mut s = connect_from("127.0.0.1", t).expect("connect");
    s.write_all(b"PROXY TCP4 198.51.100.9 192.0.2.1 4444 80\r\nGET / HTTP/1.0\r\n\r\n")
        .expect("write");
    let got = tcp_answer(s);
    assert!(got.starts_with("HTTP/1.1 200"), "{got:?}");
    let mut s = connect_from("127.0.0.1", t).expect("connect");
    s.write_all(b"PROXY TCP4 192.0.2.9 192.0.2.1 4444 80\r\n")
        .expect("write");
    assert!(closed_silently(s), "outside the allow list");
}

#[test]
fn rate_limits_answer_429_and_cap_connections_per_client() {
    let dir = TempDir::new("ratelimit");
    let w = Backend::http("w");
    let echo = Backend::start("tcpb", Mode::Plain);
    let (hport, tport, mport) = (free_port(), free_port(), free_port());
    let cfg = pool("w", &[&w], "")
        + &format!(
            "[[pool]]\nname = \"tcp\"\nhealth = {{ check = \"none\" }}\nbackends = [{{ address = \"{}\" }}]\n",
            echo.addr
        )
        + &listener(
            "web",
            hport,
            "http",
            "pool = \"w\"\nrate_limit = { rate = 2, burst = 5, max_connections = 3 }",
        )
        + &listener(
            "tcp",
            tport,
            "tcp",
            "pool = \"tcp\"\nrate_limit = { rate = 1, burst = 2 }",
        );
    let d = Daemon::start_with_global(
        &dir,
        &format!("metrics_listen = \"127.0.0.1:{mport}\""),
        &cfg,
    );
    let h = addr(hport);
    wait_port(h);
    // Keep-alive: the burst passes, then 429 with Retry-After, on the
    // same connection.
    let mut s = connect_from("127.0.0.1", h).expect("connect");
    let mut r = BufReader::new(s.try_clone().expect("clone"));
    let mut codes = Vec::new();
    for _ in 0..8 {
        s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            .expect("write");
        let (st, hd, _) = read_response(&mut r).expect("response");
        if st == 429 {
            assert_eq!(header(&hd, "retry-after"), Some("1"));
        }
        codes.push(st);
    }
    assert_eq!(codes[..5], [200; 5], "{codes:?}");
    assert!(codes[5..].iter().all(|c| *c == 429), "{codes:?}");
    // Another client has its own bucket.
    assert_eq!(get_from("127.0.0.2", h, b"", "/").expect("other").0, 200);
    // The bucket refills at the rate.
    std::thread::sleep(Duration::from_millis(600));
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .expect("write");
    assert_eq!(read_response(&mut r).expect("response").0, 200);
    drop((s, r));

    // Connections: three open from one client, the fourth is closed.
    std::thread::sleep(Duration::from_millis(100));
    let held: Vec<TcpStream> = (0..3)
        .map(|_| connect_from("127.0.0.5", h).expect("connect"))
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    assert!(closed_silently(
        connect_from("127.0.0.5", h).expect("connect")
    ));
    assert_eq!(
        get_from("127.0.0.6", h, b"", "/").expect("other client").0,
        200
    );
    drop(held);
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        get_from("127.0.0.5", h, b"", "/").expect("after close").0,
        200
    );

    // L4: the rate counts new connections.
    let t = addr(tport);
    // Opened back to back (well inside a second), read afterwards.
    let conns: Vec<TcpStream> = (0..5)
        .map(|_| {
            let mut c = connect_from("127.0.0.7", t).expect("connect");
            let _ = c.write_all(b"GET / HTTP/1.0\r\n\r\n");
            c
        })
        .collect();
    let outcomes: Vec<bool> = conns
        .into_iter()
        .map(|c| tcp_answer(c).contains("tcpb"))
        .collect();
    // A burst of 2 passes and the rest are refused (one more may pass if a
    // loaded machine spreads the five connects over a full second); which
    // ones depends on which worker thread admits first.
    let passed = outcomes.iter().filter(|o| **o).count();
    assert!((2..=3).contains(&passed), "{outcomes:?}");
    let st = listener_status(&d, "web");
    assert!(st.rate_limited >= 4, "{st:?}");
    let refused = 5 - passed as u64;
    assert_eq!(listener_status(&d, "tcp").rate_limited, refused);
    assert!(metrics(mport).contains(&format!(
        "tandem_listener_rate_limited_total{{listener=\"tcp\",protocol=\"tcp\"}} {refused}"
    )));
}

#[test]
fn split_sends_a_weighted_share_to_the_canary() {
    let dir = TempDir::new("split");
    let (v1, v2) = (Backend::http("v1"), Backend::http("v2"));
    let port = free_port();
    let cfg = pool("v1", &[&v1], "")
        + &pool("v2", &[&v2], "")
        + &listener(
            "web",
            port,
            "http",
            r#"routes = [
  { match = { path_prefix = "/sticky" }, split = [{ pool = "v1", weight = 50 }, { pool = "v2", weight = 50 }], split_sticky = true },
  { split = [{ pool = "v1", weight = 80 }, { pool = "v2", weight = 20 }] },
]"#,
        );
    let _d = Daemon::start(&dir, &cfg);
    let a = addr(port);
    wait_port(a);
    let mut s = connect_from("127.0.0.1", a).expect("connect");
    let mut r = BufReader::new(s.try_clone().expect("clone"));
    let mut canary = 0;
    let n = 1000;
    for _ in 0..n {
        s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            .expect("write");
        let (st, _, body) = read_response(&mut r).expect("response");
        assert_eq!(st, 200);
        if body == b"v2" {
            canary += 1;
        }
    }
    // 20% of 1000 = 200, sd ~13.
    assert!((140..260).contains(&canary), "canary got {canary} of {n}");
    // Sticky: each client stays on its side; clients land on both sides.
    let mut sides = std::collections::HashSet::new();
    for i in 1..=16 {
        let src = format!("127.0.1.{i}");
        let first = get_from(&src, a, b"", "/sticky").expect("first").2;
        for _ in 0..5 {
            assert_eq!(get_from(&src, a, b"", "/sticky").expect("again").2, first);
        }
        sides.insert(first);
    }
    assert_eq!(sides.len(), 2, "{sides:?}");
}

#[test]
fn outlier_ejection_takes_a_failing_backend_out_and_brings_it_back() {
    let dir = TempDir::new("outlier");
    let (good, bad) = (Backend::http("good"), Backend::http("bad"));
    let port = free_port();
    let cfg = pool(
        "p",
        &[&good, &bad],
        "passive_failures = 0\noutlier = { consecutive_5xx = 3, ejection_time = \"3s\", max_ejected_percent = 50 }",
    ) + &listener("web", port, "http", "pool = \"p\"");
    let d = Daemon::start(&dir, &cfg);
    let a = addr(port);
    wait_port(a);
    bad.broken.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut fails = 0;
    for _ in 0..40 {
        if http_get(a).send().expect("get").0 == 500 {
            fails += 1;
        }
    }
    assert_eq!(
        fails, 3,
        "three 500s eject the backend; then only the good one answers"
    );
    let st = d.status();
    let b = st.backend("p", "bad");
    assert!(b.ejected_seconds.is_some(), "{b:?}");
    assert_eq!(b.ejections, 1);
    assert_eq!(b.health, "up", "ejection is not a health verdict");
    // The good backend is never ejected with it (max_ejected_percent),
    // even when it fails too.
    good.broken
        .store(true, std::sync::atomic::Ordering::Relaxed);
    for _ in 0..6 {
        assert_eq!(http_get(a).send().expect("get").0, 500);
    }
    assert!(d.status().backend("p", "good").ejected_seconds.is_none());
    good.broken
        .store(false, std::sync::atomic::Ordering::Relaxed);
    bad.broken
        .store(false, std::sync::atomic::Ordering::Relaxed);
    // After ejection_time it takes traffic again.
    d.wait_for("ejection over", Duration::from_secs(5), |d| {
        d.status().backend("p", "bad").ejected_seconds.is_none()
    });
    let mut seen = std::collections::HashSet::new();
    for _ in 0..10 {
        let (st, _, body) = http_get(a).send().expect("get");
        assert_eq!(st, 200);
        seen.insert(body);
    }
    assert!(seen.contains("bad"), "{seen:?}");
    assert!(d.log_text().contains("backend ejected (outlier)"));
}

#[test]
fn slow_start_ramps_a_returning_backend() {
    let dir = TempDir::new("slowstart");
    let steady = Backend::http("steady");
    let back = Backend::http("back");
    let back_port = back.addr.port();
    let port = free_port();
    let cfg = format!(
        r#"[[pool]]
name = "p"
algorithm = "weighted_round_robin"
slow_start = "10s"
health = {{ check = "tcp", interval = "100ms", timeout = "50ms", rise = 1, fall = 1 }}
backends = [
  {{ name = "steady", address = "{}", weight = 100 }},
  {{ name = "back", address = "{}", weight = 100 }},
]
"#,
        steady.addr, back.addr
    ) + &listener("web", port, "http", "pool = \"p\"");
    let d = Daemon::start(&dir, &cfg);
    let a = addr(port);
    wait_port(a);
    let weight = |d: &Daemon| d.status().backend("p", "back").effective_weight;
    assert_eq!(weight(&d), 100, "no ramp at boot");
    drop(back);
    d.wait_for("back down", Duration::from_secs(5), |d| {
        d.health("p", "back") == "down"
    });
    let _back = Backend::spec("back").port(back_port).start();
    d.wait_for("back up", Duration::from_secs(5), |d| {
        d.health("p", "back") == "up"
    });
    let share = |n: usize| {
        let mut s = connect_from("127.0.0.1", a).expect("connect");
        let mut r = BufReader::new(s.try_clone().expect("clone"));
        let mut back = 0;
        for _ in 0..n {
            s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
                .expect("write");
            if read_response(&mut r).expect("response").2 == b"back" {
                back += 1;
            }
        }
        back as f64 / n as f64
    };
    // A request takes a few ms here (up to ~30 ms on a loaded box), so
    // 60 requests stay well inside the first fifth of the ramp.
    let early_weight = weight(&d);
    let early = share(60);
    assert!(
        early_weight < 50,
        "effective weight {early_weight} right after coming up"
    );
    assert!(early < 0.25, "share {early} right after coming up");
    d.wait_for("ramp done", Duration::from_secs(15), |d| weight(d) == 100);
    let late = share(100);
    assert!((0.4..=0.6).contains(&late), "share {late} after the ramp");
}

fn wait_for_lines(path: &std::path::Path, n: usize) -> Vec<String> {
    let t0 = Instant::now();
    loop {
        let lines: Vec<String> = std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect();
        if lines.len() >= n || t0.elapsed() > Duration::from_secs(5) {
            return lines;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

#[test]
fn access_logs_are_written_in_the_chosen_format_and_reopened_for_logrotate() {
    let dir = TempDir::new("accesslog");
    let w = Backend::http("w1");
    let echo = Backend::start("tcpb", Mode::Plain);
    let (hport, tport) = (free_port(), free_port());
    let (alog, clog) = (dir.path("access.log"), dir.path("conn.log"));
    let cfg = pool("w", &[&w], "")
        + &format!(
            "[[pool]]\nname = \"tcp\"\nhealth = {{ check = \"none\" }}\nbackends = [{{ name = \"e1\", address = \"{}\" }}]\n",
            echo.addr
        )
        + &listener(
            "web",
            hport,
            "http",
            &format!(
                "pool = \"w\"\naccess_log = {{ format = \"json\", path = \"{}\" }}",
                alog.display()
            ),
        )
        + &listener(
            "tcp",
            tport,
            "tcp",
            &format!(
                "pool = \"tcp\"\ndeny = [\"127.0.0.66\"]\naccess_log = {{ format = \"{{client_ip}} {{backend}} {{bytes_in}} {{bytes_out}} {{reason}}\", path = \"{}\" }}",
                clog.display()
            ),
        );
    let d = Daemon::start(&dir, &cfg);
    let h = addr(hport);
    wait_port(h);
    assert_eq!(get_from("127.0.0.9", h, b"", "/x?y=1").expect("get").0, 200);
    let lines = wait_for_lines(&alog, 1);
    assert_eq!(lines.len(), 1, "{lines:?}");
    let v: serde_json::Value = serde_json::from_str(&lines[0]).expect("json line");
    assert_eq!(v["client_ip"], "127.0.0.9");
    assert_eq!(v["method"], "GET");
    assert_eq!(v["path"], "/x");
    assert_eq!(v["status"], 200);
    assert_eq!(v["backend"], "w1");
    assert_eq!(v["listener"], "web");
    assert!(v["duration_ms"].as_f64().is_some(), "{v}");

    // L4 connection log: one line per connection, with bytes and why it ended.
    let t = addr(tport);
    let mut c = connect_from("127.0.0.10", t).expect("connect");
    c.write_all(b"GET / HTTP/1.0\r\n\r\n").expect("write");
    assert!(tcp_answer(c.try_clone().expect("clone")).contains("tcpb"));
    drop(c);
    assert!(closed_silently(
        connect_from("127.0.0.66", t).expect("connect")
    ));
    let lines = wait_for_lines(&clog, 2);
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("127.0.0.10 e1 18 ") && l.ends_with(" closed")),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l == "127.0.0.66 - 0 0 denied"),
        "{lines:?}"
    );

    // logrotate: move the file away, SIGUSR1, and new lines go to a new file.
    let rotated = dir.path("access.log.1");
    std::fs::rename(&alog, &rotated).expect("rotate");
    d.signal("USR1");
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(
        get_from("127.0.0.11", h, b"", "/after").expect("get").0,
        200
    );
    let fresh = wait_for_lines(&alog, 1);
    assert_eq!(fresh.len(), 1, "{fresh:?}");
    assert!(fresh[0].contains("/after"));
    assert!(!std::fs::read_to_string(&rotated)
        .unwrap_or_default()
        .contains("/after"));
}

/// A TLS client: optional client certificate, optional TLS 1.2-only.
/// Returns the stream after the handshake, or the handshake error, and the
/// stapled OCSP response.
fn tls_client(
    port: u16,
    client_cert: Option<(&str, &str)>,
    tls12_only: bool,
) -> Result<
    (
        rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
        Vec<u8>,
    ),
    String,
> {
    use rustls_pki_types::pem::PemObject;
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = if tls12_only {
        &[&rustls::version::TLS12]
    } else {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    };
    let verifier = std::sync::Arc::new(support::tls::AnyCert::new(provider.clone()));
    let seen = verifier.1.clone();
    let b = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut cfg = match client_cert {
        Some((cert, key)) => {
            let chain: Vec<_> = rustls_pki_types::CertificateDer::pem_slice_iter(cert.as_bytes())
                .collect::<Result<_, _>>()
                .map_err(|e| e.to_string())?;
            let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes())
                .map_err(|e| e.to_string())?;
            b.with_client_auth_cert(chain, key)
                .map_err(|e| e.to_string())?
        }
        None => b.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let name = rustls_pki_types::ServerName::try_from("mtls.test").map_err(|e| e.to_string())?;
    let conn =
        rustls::ClientConnection::new(std::sync::Arc::new(cfg), name).map_err(|e| e.to_string())?;
    let sock = TcpStream::connect(addr(port)).map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(Duration::from_secs(3)))
        .map_err(|e| e.to_string())?;
    let mut tls = rustls::StreamOwned::new(conn, sock);
    while tls.conn.is_handshaking() {
        tls.conn
            .complete_io(&mut tls.sock)
            .map_err(|e| e.to_string())?;
    }
    // TLS 1.3 reports a refused client certificate only with the first
    // read after the handshake: callers make a request to find out.
    let ocsp = seen.lock().map(|o| o.clone()).unwrap_or_default();
    Ok((tls, ocsp))
}

/// GET /inspect with a forged subject header; the backend's view of the
/// request head, or the error.
fn inspect_over(
    tls: &mut rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
) -> Result<String, String> {
    write!(
        tls,
        "GET /inspect HTTP/1.1\r\nHost: mtls.test\r\nX-Client-DN: CN=forged\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut r = BufReader::new(tls);
    let (st, _, body) = read_response(&mut r)?;
    if st != 200 {
        return Err(format!("status {st}"));
    }
    Ok(String::from_utf8_lossy(&body).into_owned())
}

fn subject_lines(head: &str) -> Vec<String> {
    head.lines()
        .filter(|l| l.to_ascii_lowercase().starts_with("x-client-dn:"))
        .map(|l| l.to_string())
        .collect()
}

#[test]
fn downstream_mtls_passes_the_verified_subject_and_tls_settings_apply() {
    let dir = TempDir::new("mtls");
    let w = Backend::http("w");
    let ca = support::tls::certs::ca();
    let other_ca = support::tls::certs::ca();
    let (cert, key, _) = support::tls::certs::leaf(&ca, &["mtls.test"]);
    let (client_cert, client_key) = support::tls::certs::client(&ca, "client1", "Example, Inc");
    let (rogue_cert, rogue_key) = support::tls::certs::client(&other_ca, "rogue", "Evil");
    let write = |n: &str, body: &[u8]| {
        let p = dir.path(n);
        std::fs::write(&p, body).expect("write");
        p
    };
    let (cert_p, key_p, ca_p) = (
        write("server.pem", cert.as_bytes()),
        write("server.key", key.as_bytes()),
        write("ca.pem", ca.pem.as_bytes()),
    );
    // A stapled OCSP response next to the certificate (opaque bytes to us).
    write("server.pem.ocsp", b"\x30\x03\x0a\x01\x00");
    let (req_port, opt_port) = (free_port(), free_port());
    let tls = |extra: &str| {
        format!(
            "tls = {{ certificates = [{{ cert = \"{}\", key = \"{}\" }}], client_ca = \"{}\", client_subject_header = \"X-Client-DN\"{extra} }}",
            cert_p.display(),
            key_p.display(),
            ca_p.display()
        )
    };
    let cfg = pool("w", &[&w], "")
        + &listener(
            "req",
            req_port,
            "https",
            &format!("pool = \"w\"\nhttp2 = false\n{}", tls("")),
        )
        + &listener(
            "opt",
            opt_port,
            "https",
            &format!(
                "pool = \"w\"\nhttp2 = false\n{}",
                tls(", client_auth = \"optional\", min_version = \"1.3\"")
            ),
        );
    let _d = Daemon::start(&dir, &cfg);
    wait_port(addr(req_port));

    // Required: a verified client gets its subject passed on (and only
    // ours: the forged header is gone).
    let (mut s, ocsp) = tls_client(req_port, Some((&client_cert, &client_key)), false)
        .expect("handshake with a client certificate");
    assert_eq!(ocsp, b"\x30\x03\x0a\x01\x00", "OCSP response stapled");
    let head = inspect_over(&mut s).expect("request");
    // RFC 4514 order is the reverse of the certificate's RDN sequence,
    // which rcgen writes CN first.
    assert_eq!(
        subject_lines(&head),
        ["x-client-dn: O=Example\\, Inc,CN=client1"],
        "{head}"
    );
    // No certificate, or one from another CA: no request gets through.
    for (what, cc) in [
        ("no certificate", None),
        (
            "untrusted CA",
            Some((rogue_cert.as_str(), rogue_key.as_str())),
        ),
    ] {
        let r = tls_client(req_port, cc, false).and_then(|(mut s, _)| inspect_over(&mut s));
        assert!(r.is_err(), "{what}: {r:?}");
    }

    // Optional: without a certificate the request is served, without the
    // header (and the forged one is still removed).
    let (mut s, _) = tls_client(opt_port, None, false).expect("optional handshake");
    let head = inspect_over(&mut s).expect("request");
    assert!(subject_lines(&head).is_empty(), "{head}");
    let (mut s, _) =
        tls_client(opt_port, Some((&client_cert, &client_key)), false).expect("handshake");
    assert_eq!(
        subject_lines(&inspect_over(&mut s).expect("request")).len(),
        1
    );
    // min_version = "1.3": a TLS 1.2-only client is refused; the other
    // listener still speaks 1.2.
    assert!(tls_client(opt_port, None, true).is_err());
    let (mut s, _) =
        tls_client(req_port, Some((&client_cert, &client_key)), true).expect("TLS 1.2");
    assert!(inspect_over(&mut s).is_ok());
}

#[test]
fn https_health_checks_verify_the_backend_certificate() {
    let dir = TempDir::new("hchttps");
    let w = Backend::http("w");
    let ca = support::tls::certs::ca();
    let other = support::tls::certs::ca();
    let (cert, key, _) = support::tls::certs::leaf(&ca, &["backend.test"]);
    let write = |n: &str, body: &[u8]| {
        let p = dir.path(n);
        std::fs::write(&p, body).expect("write");
        p
    };
    let (cert_p, key_p, ca_p, other_p) = (
        write("b.pem", cert.as_bytes()),
        write("b.key", key.as_bytes()),
        write("ca.pem", ca.pem.as_bytes()),
        write("other.pem", other.pem.as_bytes()),
    );
    // The TLS backend is a tandem https listener in front of `w`.
    let tport = free_port();
    let backend = format!("127.0.0.1:{tport}");
    let checked = |name: &str, health: &str| {
        format!(
            "[[pool]]\nname = \"{name}\"\nhealth = {{ check = \"https\", interval = \"200ms\", timeout = \"150ms\", rise = 1, fall = 1, path = \"/\", host = \"backend.test\", {health} }}\nbackends = [{{ name = \"b\", address = \"{backend}\" }}]\n"
        )
    };
    let cfg = pool("w", &[&w], "")
        + &checked(
            "good",
            &format!("verify = \"{}\", sni = \"backend.test\"", ca_p.display()),
        )
        + &checked(
            "wrongca",
            &format!("verify = \"{}\", sni = \"backend.test\"", other_p.display()),
        )
        + &checked(
            "wrongname",
            &format!("verify = \"{}\", sni = \"other.test\"", ca_p.display()),
        )
        + &checked("noverify", "verify = \"none\"")
        + &checked("plainhttp", "verify = \"none\"")
            .replace("check = \"https\"", "check = \"http\"")
            .replace(", verify = \"none\"", "")
        + &listener(
            "tlsb",
            tport,
            "https",
            &format!(
                "pool = \"w\"\ntls = {{ certificates = [{{ cert = \"{}\", key = \"{}\" }}] }}",
                cert_p.display(),
                key_p.display()
            ),
        );
    let d = Daemon::start(&dir, &cfg);
    wait_port(addr(tport));
    let last = |d: &Daemon, p: &str| {
        let s = d.status();
        let b = s.backend(p, "b");
        (b.health.to_string(), b.last_check.to_string())
    };
    d.wait_for("checks ran", Duration::from_secs(5), |d| {
        ["good", "wrongca", "wrongname", "noverify", "plainhttp"]
            .iter()
            .all(|p| !last(d, p).1.is_empty())
    });
    // Give every checker a few rounds, then read the verdicts.
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(last(&d, "good"), ("up".into(), "ok".into()));
    assert_eq!(last(&d, "noverify").0, "up");
    for p in ["wrongca", "wrongname"] {
        let (h, why) = last(&d, p);
        assert_eq!(h, "down", "{p}: {why}");
        assert!(why.contains("TLS"), "{p}: {why}");
    }
    // Plain HTTP to a TLS port fails too: the check really speaks TLS.
    assert_eq!(last(&d, "plainhttp").0, "down");
}

/// One request on a fresh connection read to EOF: (status, headers,
/// body), with a chunked body decoded.
fn raw_exchange(a: SocketAddr, req: &str) -> (u16, Headers, Vec<u8>) {
    let mut s = TcpStream::connect(a).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    s.write_all(req.as_bytes()).expect("write");
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("response head");
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .expect("status");
    let headers: Headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[end + 4..].to_vec();
    if header(&headers, "transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
        let mut out = Vec::new();
        let mut rest = &body[..];
        while let Some(nl) = rest.windows(2).position(|w| w == b"\r\n") {
            let size = usize::from_str_radix(
                std::str::from_utf8(&rest[..nl])
                    .unwrap_or("0")
                    .split(';')
                    .next()
                    .unwrap_or("0")
                    .trim(),
                16,
            )
            .expect("chunk size");
            if size == 0 {
                break;
            }
            out.extend_from_slice(&rest[nl + 2..nl + 2 + size]);
            rest = &rest[nl + 2 + size + 2..];
        }
        body = out;
    }
    (status, headers, body)
}

#[test]
fn compression_by_accept_encoding_and_content_type() {
    use async_compression::tokio::bufread::{BrotliDecoder, GzipDecoder};
    use tokio::io::AsyncReadExt;
    let dir = TempDir::new("compress");
    let w = Backend::http("w");
    let port = free_port();
    let cfg = pool("w", &[&w], "")
        + &listener(
            "web",
            port,
            "http",
            r#"routes = [
  { match = { path_prefix = "/json" }, pool = "w", rewrite_path = "/text", compress = { types = ["application/json"], min_bytes = 100 } },
  { pool = "w", compress = true },
]"#,
        );
    let _d = Daemon::start(&dir, &cfg);
    let a = addr(port);
    wait_port(a);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let decode = |enc: &str, wire: &[u8]| -> String {
        rt.block_on(async {
            let mut out = String::new();
            match enc {
                "gzip" => GzipDecoder::new(wire).read_to_string(&mut out).await,
                "br" => BrotliDecoder::new(wire).read_to_string(&mut out).await,
                other => panic!("unexpected encoding {other}"),
            }
            .expect("decode");
            out
        })
    };
    let fetch = |path: &str, accept: &str| {
        let extra = if accept.is_empty() {
            String::new()
        } else {
            format!("Accept-Encoding: {accept}\r\n")
        };
        raw_exchange(
            a,
            &format!("GET {path} HTTP/1.1\r\nHost: t\r\n{extra}Connection: close\r\n\r\n"),
        )
    };
    let plain = "the quick brown fox jumps over the lazy dog. "
        .repeat(200)
        .chars()
        .take(5000)
        .collect::<String>();
    for (accept, want) in [
        ("gzip", "gzip"),
        ("gzip, br", "br"),
        ("br;q=0.1, gzip", "gzip"),
    ] {
        let (st, h, body) = fetch("/text?n=5000", accept);
        assert_eq!(st, 200);
        assert_eq!(
            header(&h, "content-encoding"),
            Some(want),
            "{accept}: {h:?}"
        );
        assert!(
            header(&h, "vary").is_some_and(|v| v.to_ascii_lowercase().contains("accept-encoding"))
        );
        assert!(
            body.len() < 1000,
            "{want}: {} bytes on the wire",
            body.len()
        );
        assert_eq!(decode(want, &body), plain);
    }
    // Not for clients that do not ask, not for types outside the list,
    // not twice, not against no-transform, not below min_bytes.
    for (path, accept) in [
        ("/text?n=5000", ""),
        ("/text?n=5000", "identity"),
        ("/text?n=5000&type=image%2Fpng", "gzip"),
        ("/text?n=5000&encoded", "gzip"),
        ("/text?n=5000&notransform", "gzip"),
        ("/text?n=100", "gzip"),
        ("/json?n=5000", "gzip"),
        ("/json?n=50&type=application%2Fjson", "gzip"),
    ] {
        let (st, h, body) = fetch(path, accept);
        assert_eq!(st, 200);
        let enc = header(&h, "content-encoding");
        assert!(
            enc.is_none() || path.contains("encoded"),
            "{path} {accept}: {h:?}"
        );
        if !path.contains("encoded") {
            assert!(!body.is_empty() && body.starts_with(b"the quick"), "{path}");
        }
    }
    let (_, h, body) = fetch("/json?n=5000&type=application%2Fjson", "gzip");
    assert_eq!(header(&h, "content-encoding"), Some("gzip"));
    assert_eq!(decode("gzip", &body).len(), 5000);
}

#[test]
fn route_rate_limit_applies_to_its_route_only() {
    let dir = TempDir::new("routerate");
    let w = Backend::http("w");
    let port = free_port();
    let cfg = pool("w", &[&w], "")
        + &listener(
            "web",
            port,
            "http",
            r#"routes = [
  { match = { path_prefix = "/login" }, pool = "w", rate_limit = { rate = 1, burst = 2 } },
  { pool = "w" },
]"#,
        );
    let d = Daemon::start(&dir, &cfg);
    let a = addr(port);
    wait_port(a);
    let codes: Vec<u16> = (0..4)
        .map(|_| get_from("127.0.0.1", a, b"", "/login").expect("login").0)
        .collect();
    assert_eq!(codes[..2], [200, 200], "{codes:?}");
    assert!(codes[2..].contains(&429), "{codes:?}");
    for _ in 0..5 {
        assert_eq!(get_from("127.0.0.1", a, b"", "/home").expect("home").0, 200);
    }
    // Another client has its own bucket on the route.
    assert_eq!(
        get_from("127.0.0.2", a, b"", "/login").expect("login").0,
        200
    );
    let st = listener_status(&d, "web");
    let login = st
        .routes
        .iter()
        .find(|r| r.name == "route0")
        .cloned()
        .unwrap_or_default();
    assert!(login.by_class[3] >= 1, "{st:?}");
}
