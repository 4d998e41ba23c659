//! The HTTP engine through a real `tandem` process on loopback: routing,
//! proxy headers, errors, smuggling and slowloris defences, streaming,
//! WebSockets, HTTP/2, TLS with SNI, sticky sessions and the cache.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use common::web::{self, get, header, request, Web};
use common::*;

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

fn pool(name: &str, webs: &[&Web], extra: &str) -> String {
    let list: Vec<String> = webs
        .iter()
        .map(|w| format!("{{ name = \"{}\", address = \"{}\" }}", w.name, w.addr))
        .collect();
    format!(
        "[[pool]]\nname = \"{name}\"\nhealth = {{ check = \"tcp\", interval = \"200ms\", timeout = \"100ms\" }}\nbackends = [{}]\n{extra}\n",
        list.join(", ")
    )
}

fn http_listener(port: u16, body: &str) -> String {
    format!("[[listener]]\nname = \"web\"\nbind = \"127.0.0.1:{port}\"\nprotocol = \"http\"\n{body}\n")
}

#[test]
fn routes_match_and_act() {
    let dir = TempDir::new("routes");
    let (api, stat, web, admin) = (Web::start("api"), Web::start("static"), Web::start("web"), Web::start("admin"));
    let port = free_port();
    let cfg = pool("api", &[&api], "")
        + &pool("static", &[&stat], "")
        + &pool("web", &[&web], "")
        + &pool("admin", &[&admin], "")
        + &http_listener(
            port,
            r#"routes = [
  { match = { path_exact = "/healthz" }, respond = { status = 200, body = "ok" } },
  { match = { host = "old.example.com" }, redirect = { status = 308, location = "https://new.example.com{uri}" } },
  { match = { path_prefix = "/api", method = ["GET", "POST"] }, pool = "api", strip_prefix = "/api" },
  { match = { path_prefix = "/static/" }, pool = "static" },
  { match = { host = "*.admin.test", header = { "X-Token" = { regex = "^s3cr[e]t$" } } }, pool = "admin" },
  { match = { cookie = { beta = "1" }, query = { v = "2" } }, pool = "admin", rewrite_path = "/inspect" },
  { pool = "web" },
]"#,
        );
    let _d = Daemon::start(&dir, &cfg);
    let a = addr(port);
    let cases: Vec<(&str, &str, &str, u16, &str)> = vec![
        // (path, extra headers, expected backend or body, status, note)
        ("/healthz", "", "ok", 200, "fixed response"),
        ("/api/users", "", "api", 200, "prefix + strip"),
        ("/apix", "", "web", 200, "segment-aware prefix: /apix is not /api"),
        ("/static/app.js", "", "static", 200, "prefix"),
        ("/", "Host: x.admin.test\r\nX-Token: s3cret\r\n", "admin", 200, "wildcard host + header regex"),
        ("/", "Host: x.admin.test\r\nX-Token: nope\r\n", "web", 200, "header mismatch falls through"),
        ("/?v=2", "Cookie: a=b; beta=1\r\n", "GET /inspect?v=2", 200, "cookie + query, rewrite"),
        ("/elsewhere", "", "web", 200, "default route"),
    ];
    for (path, extra, want, status, note) in cases {
        let host_given = extra.starts_with("Host:");
        let raw = format!(
            "GET {path} HTTP/1.1\r\n{}{extra}Connection: close\r\n\r\n",
            if host_given { "" } else { "Host: test.local\r\n" }
        );
        let (s, h, body) = request(a, &raw).unwrap_or_else(|e| panic!("{note}: {e}"));
        let body = String::from_utf8_lossy(&body);
        assert_eq!(s, status, "{note}");
        let got = header(&h, "x-backend").map(String::from).unwrap_or_else(|| body.to_string());
        assert!(got == want || body.starts_with(want), "{note}: got {got:?} / {body:?}");
    }
    // Method matcher: DELETE /api is not routed to api.
    let (s, h, _) = request(a, "DELETE /api/x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").expect("delete");
    assert_eq!((s, header(&h, "x-backend")), (200, Some("web")));
    // Redirect keeps path and query.
    let (s, h, _) = request(a, "GET /a/b?c=1 HTTP/1.1\r\nHost: old.example.com\r\nConnection: close\r\n\r\n").expect("redirect");
    assert_eq!(s, 308);
    assert_eq!(header(&h, "location"), Some("https://new.example.com/a/b?c=1"));
}

#[test]
fn proxy_headers_are_rewritten() {
    let dir = TempDir::new("hdrs");
    let w = Web::start("web");
    let port = free_port();
    let cfg = pool("web", &[&w], "")
        + &http_listener(
            port,
            r#"forwarded = true
routes = [{ pool = "web", request_headers = { set = { "X-Env" = "prod" }, remove = ["X-Debug"] }, response_headers = { add = { "X-Served-By" = "tandem" }, remove = ["X-Backend"] } }]"#,
        );
    let _d = Daemon::start(&dir, &cfg);
    let raw = "GET /inspect HTTP/1.1\r\nHost: shop.test\r\nX-Forwarded-For: 203.0.113.9\r\nConnection: keep-alive, X-Secret\r\nX-Secret: hop\r\nKeep-Alive: timeout=5\r\nProxy-Authorization: Basic x\r\nX-Debug: 1\r\nX-Env: dev\r\n\r\n";
    let mut s = TcpStream::connect(addr(port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(3))).expect("t");
    s.write_all(raw.as_bytes()).expect("write");
    let (status, h, body) = web::read_response(&mut BufReader::new(s)).expect("response");
    assert_eq!(status, 200);
    let seen = String::from_utf8_lossy(&body).to_ascii_lowercase();
    assert!(seen.contains("x-forwarded-for: 203.0.113.9, 127.0.0.1"), "XFF appended:\n{seen}");
    assert!(seen.contains("x-forwarded-proto: http"), "{seen}");
    assert!(seen.contains("x-forwarded-host: shop.test"), "{seen}");
    assert!(seen.contains("forwarded: for=127.0.0.1"), "RFC 7239:\n{seen}");
    assert!(seen.contains("via: 1.1 tandem"), "{seen}");
    assert!(seen.contains("host: shop.test"), "{seen}");
    assert!(seen.contains("x-request-id: "), "request id added:\n{seen}");
    assert!(seen.contains("x-env: prod") && !seen.contains("x-env: dev"), "set replaces:\n{seen}");
    for gone in ["x-secret", "keep-alive", "proxy-authorization", "x-debug"] {
        assert!(!seen.contains(gone), "{gone} must be stripped:\n{seen}");
    }
    assert_eq!(header(&h, "x-served-by"), Some("tandem"));
    assert_eq!(header(&h, "x-backend"), None, "response header removed");
    assert!(header(&h, "via").is_some_and(|v| v.contains("tandem")));
}

#[test]
fn errors_are_502_503_504_never_a_hang() {
    let dir = TempDir::new("errs");
    let slow = Web::start("slow");
    let dead = free_port();
    let port = free_port();
    let cfg = format!(
        "[[pool]]\nname = \"dead\"\nhealth = {{ check = \"none\" }}\npassive_failures = 0\nretries = 0\nbackends = [{{ address = \"127.0.0.1:{dead}\" }}]\n\
         [[pool]]\nname = \"down\"\nhealth = {{ check = \"tcp\", interval = \"100ms\", timeout = \"50ms\" }}\nbackends = [{{ address = \"127.0.0.1:{dead}\" }}]\n\
         [[pool]]\nname = \"slow\"\nresponse_timeout = \"300ms\"\nhealth = {{ check = \"none\" }}\nbackends = [{{ address = \"{}\" }}]\n",
        slow.addr
    ) + &http_listener(
        port,
        r#"error_pages = { "503" = "sorry, try later" }
routes = [
  { match = { path_prefix = "/dead" }, pool = "dead" },
  { match = { path_prefix = "/down" }, pool = "down" },
  { pool = "slow" },
]"#,
    );
    let d = Daemon::start(&dir, &cfg);
    d.wait_for("down pool marked down", Duration::from_secs(3), |d| d.health("down", &format!("127.0.0.1:{dead}")) == "down");
    let t = Instant::now();
    let (s, _, _) = get(addr(port), "/dead", "").expect("dead");
    assert_eq!(s, 502, "connection refused by the backend");
    let (s, h, body) = get(addr(port), "/down", "").expect("down");
    assert_eq!(s, 503, "no healthy backend");
    assert!(header(&h, "retry-after").is_some());
    assert_eq!(body, "sorry, try later", "configured error body");
    let (s, _, _) = get(addr(port), "/slow?ms=2000", "").expect("slow");
    assert_eq!(s, 504, "upstream timeout");
    assert!(t.elapsed() < Duration::from_secs(2), "errors come fast: {:?}", t.elapsed());
}

#[test]
fn smuggling_and_malformed_requests_are_rejected_and_closed() {
    let dir = TempDir::new("smuggle");
    let w = Web::start("web");
    let port = free_port();
    let _d = Daemon::start(&dir, &(pool("web", &[&w], "") + &http_listener(port, "pool = \"web\"")));
    let bad = [
        "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
        "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
    ];
    for raw in bad {
        let mut s = TcpStream::connect(addr(port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(3))).expect("t");
        s.write_all(raw.as_bytes()).expect("write");
        let mut r = BufReader::new(s);
        let (status, h, _) = web::read_response(&mut r).unwrap_or_else(|e| panic!("{raw:?}: {e}"));
        assert_eq!(status, 400, "{raw:?}");
        assert_eq!(header(&h, "connection"), Some("close"), "{raw:?}");
        // The connection is closed after the 400: nothing smuggled behind it.
        let mut rest = Vec::new();
        let _ = r.read_to_end(&mut rest);
        assert!(rest.is_empty(), "{raw:?}: bytes after the 400: {rest:?}");
    }
    assert_eq!(w.requests.load(std::sync::atomic::Ordering::Relaxed), 0, "nothing reached the backend");
}

#[test]
fn slowloris_is_cut_while_normal_clients_are_served() {
    let dir = TempDir::new("slowloris");
    let w = Web::start("web");
    let port = free_port();
    let _d = Daemon::start(
        &dir,
        &(pool("web", &[&w], "") + &http_listener(port, "pool = \"web\"\nheader_timeout = \"500ms\"")),
    );
    let mut slow = TcpStream::connect(addr(port)).expect("connect");
    slow.set_read_timeout(Some(Duration::from_secs(3))).expect("t");
    let t = Instant::now();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n").expect("w");
    let mut cut = false;
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(100));
        let (s, _, body) = get(addr(port), "/", "").expect("normal client served meanwhile");
        assert_eq!((s, body.as_str()), (200, "web"));
        if slow.write_all(b"X-Drip: 1\r\n").is_err() {
            cut = true;
            break;
        }
        let mut b = [0u8; 256];
        slow.set_nonblocking(true).expect("nb");
        let r = slow.read(&mut b);
        slow.set_nonblocking(false).expect("b");
        if matches!(r, Ok(_)) {
            cut = true;
            break;
        }
    }
    assert!(cut, "slow client still connected after {:?}", t.elapsed());
    assert!(t.elapsed() < Duration::from_millis(1500), "cut after {:?}", t.elapsed());
}

#[test]
fn large_streaming_upload_and_download_are_byte_exact() {
    const N: u64 = 256 * 1024 * 1024;
    let dir = TempDir::new("l7big");
    let w = Web::start("web");
    let port = free_port();
    let _d = Daemon::start(&dir, &(pool("web", &[&w], "") + &http_listener(port, "pool = \"web\"")));
    // Download.
    let mut s = TcpStream::connect(addr(port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).expect("t");
    write!(s, "GET /big?n={N} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").expect("w");
    let mut r = BufReader::new(s);
    let mut line = String::new();
    loop {
        line.clear();
        r.read_line(&mut line).expect("head");
        if line == "\r\n" {
            break;
        }
    }
    let mut buf = vec![0u8; 256 * 1024];
    let mut got = 0u64;
    loop {
        let n = r.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        for (k, b) in buf[..n].iter().enumerate() {
            assert_eq!(*b, web::pattern(got + k as u64), "download byte {}", got + k as u64);
        }
        got += n as u64;
    }
    assert_eq!(got, N);
    // Upload, echoed back while it streams.
    let s = TcpStream::connect(addr(port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).expect("t");
    let mut wr = s.try_clone().expect("clone");
    let writer = std::thread::spawn(move || {
        write!(wr, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {N}\r\nConnection: close\r\n\r\n").expect("w");
        let mut buf = vec![0u8; 256 * 1024];
        let mut off = 0u64;
        while off < N {
            let k = (N - off).min(buf.len() as u64) as usize;
            for (j, b) in buf[..k].iter_mut().enumerate() {
                *b = web::pattern(off + j as u64);
            }
            wr.write_all(&buf[..k]).expect("upload");
            off += k as u64;
        }
    });
    let mut r = BufReader::new(s);
    loop {
        line.clear();
        r.read_line(&mut line).expect("head");
        if line == "\r\n" {
            break;
        }
    }
    let mut got = 0u64;
    while got < N {
        let n = r.read(&mut buf).expect("read");
        assert!(n > 0, "echo ended early at {got}");
        for (k, b) in buf[..n].iter().enumerate() {
            assert_eq!(*b, web::pattern(got + k as u64), "upload byte {}", got + k as u64);
        }
        got += n as u64;
    }
    writer.join().expect("writer");
    assert_eq!(got, N);
}

#[test]
fn websocket_upgrade_is_tunnelled() {
    let dir = TempDir::new("ws");
    let w = Web::start("web");
    let port = free_port();
    let _d = Daemon::start(&dir, &(pool("web", &[&w], "") + &http_listener(port, "pool = \"web\"")));
    let mut s = TcpStream::connect(addr(port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(3))).expect("t");
    s.write_all(b"GET /ws HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").expect("w");
    let mut r = BufReader::new(s.try_clone().expect("clone"));
    let mut line = String::new();
    r.read_line(&mut line).expect("status");
    assert!(line.starts_with("HTTP/1.1 101"), "{line}");
    let mut upgrade = false;
    loop {
        line.clear();
        r.read_line(&mut line).expect("head");
        if line.to_ascii_lowercase().starts_with("upgrade: websocket") {
            upgrade = true;
        }
        if line == "\r\n" {
            break;
        }
    }
    assert!(upgrade, "Upgrade header passed back");
    // A long-lived exchange over the tunnel.
    for i in 0..50 {
        let msg = format!("frame {i}");
        s.write_all(msg.as_bytes()).expect("send");
        let mut got = vec![0u8; msg.len()];
        r.read_exact(&mut got).expect("echo");
        assert_eq!(got, msg.as_bytes());
        if i % 10 == 0 {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[test]
fn http2_prior_knowledge_and_pooled_upstream_connections() {
    let dir = TempDir::new("h2c");
    let w = Web::start("web");
    let port = free_port();
    let cfg = format!(
        "[[pool]]\nname = \"web\"\nhealth = {{ check = \"none\" }}\nbackends = [{{ address = \"{}\" }}]\n",
        w.addr
    ) + &http_listener(port, "pool = \"web\"");
    let _d = Daemon::start(&dir, &cfg);
    let out = Command::new("curl")
        .args(["-s", "--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_version} %{http_code}"])
        .arg(format!("http://127.0.0.1:{port}/"))
        .output()
        .expect("curl (apt install curl)");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "2 200");
    // 50 requests from fresh client connections reuse a few upstream ones.
    for _ in 0..50 {
        let (s, _, body) = get(addr(port), "/", "").expect("get");
        assert_eq!((s, body.as_str()), (200, "web"));
    }
    let conns = w.connections.load(std::sync::atomic::Ordering::Relaxed);
    assert!(conns <= 3, "upstream keep-alive pool: {conns} connections for 51 requests");
}
