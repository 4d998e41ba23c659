//! The HTTP engine through a real `tandem` process on loopback: routing,
//! proxy headers, errors, smuggling and slowloris defences, streaming,
//! WebSockets, HTTP/2, TLS with SNI, sticky sessions and the cache.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use support::config::{checked_pool, http_listener};
use support::*;

fn pool(name: &str, webs: &[&Backend], extra: &str) -> String {
    let health = r#"{ check = "tcp", interval = "200ms", timeout = "100ms" }"#;
    checked_pool(name, health, webs, extra).to_string()
}

#[test]
fn routes_match_and_act() {
    let dir = TempDir::new("routes");
    let (api, stat, web, admin) = (
        Backend::http("api"),
        Backend::http("static"),
        Backend::http("web"),
        Backend::http("admin"),
    );
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
        (
            "/apix",
            "",
            "web",
            200,
            "segment-aware prefix: /apix is not /api",
        ),
        ("/static/app.js", "", "static", 200, "prefix"),
        (
            "/",
            "Host: x.admin.test\r\nX-Token: s3cret\r\n",
            "admin",
            200,
            "wildcard host + header regex",
        ),
        (
            "/",
            "Host: x.admin.test\r\nX-Token: nope\r\n",
            "web",
            200,
            "header mismatch falls through",
        ),
        (
            "/?v=2",
            "Cookie: a=b; beta=1\r\n",
            "GET /inspect?v=2",
            200,
            "cookie + query, rewrite",
        ),
        ("/elsewhere", "", "web", 200, "default route"),
    ];
    for (path, extra, want, status, note) in cases {
        let host_given = extra.starts_with("Host:");
        let raw = format!(
            "GET {path} HTTP/1.1\r\n{}{extra}Connection: close\r\n\r\n",
            if host_given {
                ""
            } else {
                "Host: test.local\r\n"
            }
        );
        let (s, h, body) = request(a, &raw).unwrap_or_else(|e| panic!("{note}: {e}"));
        let body = String::from_utf8_lossy(&body);
        assert_eq!(s, status, "{note}");
        let got = header(&h, "x-backend")
            .map(String::from)
            .unwrap_or_else(|| body.to_string());
        assert!(
            got == want || body.starts_with(want),
            "{note}: got {got:?} / {body:?}"
        );
    }
    // Method matcher: DELETE /api is not routed to api.
    let (s, h, _) = request(
        a,
        "DELETE /api/x HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    )
    .expect("delete");
    assert_eq!((s, header(&h, "x-backend")), (200, Some("web")));
    // Redirect keeps path and query.
    let (s, h, _) = request(
        a,
        "GET /a/b?c=1 HTTP/1.1\r\nHost: old.example.com\r\nConnection: close\r\n\r\n",
    )
    .expect("redirect");
    assert_eq!(s, 308);
    assert_eq!(
        header(&h, "location"),
        Some("https://new.example.com/a/b?c=1")
    );
}

#[test]
fn untrusted_clients_cannot_spoof_forwarding_headers() {
    let dir = TempDir::new("untrusted");
    let w = Backend::http("web");
    let port = free_port();
    let cfg = pool("web", &[&w], "")
        + &http_listener(
            port,
            "forwarded = true\ntrusted_proxies = [\"192.0.2.0/24\"]\npool = \"web\"",
        );
    let _d = Daemon::start(&dir, &cfg);
    let raw = "GET /inspect HTTP/1.1\r\nHost: shop.test\r\nX-Forwarded-For: 203.0.113.9\r\nForwarded: for=203.0.113.9\r\nX-Request-Id: forged-id\r\n\r\n";
    let mut s = TcpStream::connect(addr(port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(3))).expect("t");
    s.write_all(raw.as_bytes()).expect("write");
    let (status, _h, body) = read_response(&mut BufReader::new(s)).expect("response");
    assert_eq!(status, 200);
    let seen = String::from_utf8_lossy(&body).to_ascii_lowercase();
    assert!(
        seen.contains("x-forwarded-for: 127.0.0.1\r\n"),
        "XFF replaced:\n{seen}"
    );
    assert!(
        !seen.contains("203.0.113.9"),
        "client-sent forwarding dropped:\n{seen}"
    );
    assert!(
        !seen.contains("forged-id"),
        "client-sent request id replaced:\n{seen}"
    );
    assert!(seen.contains("x-request-id: "), "{seen}");
}

#[test]
fn proxy_headers_are_rewritten() {
    let dir = TempDir::new("hdrs");
    let w = Backend::http("web");
    let port = free_port();
    let cfg = pool("web", &[&w], "")
        + &http_listener(
            port,
            r#"forwarded = true
trusted_proxies = ["127.0.0.0/8"]
routes = [{ pool = "web", request_headers = { set = { "X-Env" = "prod" }, remove = ["X-Debug"] }, response_headers = { add = { "X-Served-By" = "tandem" }, remove = ["X-Backend"] } }]"#,
        );
    let _d = Daemon::start(&dir, &cfg);
    let raw = "GET /inspect HTTP/1.1\r\nHost: shop.test\r\nX-Forwarded-For: 203.0.113.9\r\nConnection: keep-alive, X-Secret\r\nX-Secret: hop\r\nKeep-Alive: timeout=5\r\nProxy-Authorization: Basic x\r\nX-Debug: 1\r\nX-Env: dev\r\n\r\n";
    let mut s = TcpStream::connect(addr(port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(3))).expect("t");
    s.write_all(raw.as_bytes()).expect("write");
    let (status, h, body) = read_response(&mut BufReader::new(s)).expect("response");
    assert_eq!(status, 200);
    let seen = String::from_utf8_lossy(&body).to_ascii_lowercase();
    assert!(
        seen.contains("x-forwarded-for: 203.0.113.9, 127.0.0.1"),
        "XFF appended:\n{seen}"
    );
    assert!(seen.contains("x-forwarded-proto: http"), "{seen}");
    assert!(seen.contains("x-forwarded-host: shop.test"), "{seen}");
    assert!(
        seen.contains("forwarded: for=127.0.0.1"),
        "RFC 7239:\n{seen}"
    );
    assert!(seen.contains("via: 1.1 tandem"), "{seen}");
    assert!(seen.contains("host: shop.test"), "{seen}");
    assert!(seen.contains("x-request-id: "), "request id added:\n{seen}");
    assert!(
        seen.contains("x-env: prod") && !seen.contains("x-env: dev"),
        "set replaces:\n{seen}"
    );
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
    let slow = Backend::http("slow");
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
    d.wait_for("down pool marked down", Duration::from_secs(3), |d| {
        d.health("down", &format!("127.0.0.1:{dead}")) == "down"
    });
    let t = Instant::now();
    let (s, _, _) = http_get(addr(port)).path("/dead").send().expect("dead");
    assert_eq!(s, 502, "connection refused by the backend");
    let (s, h, body) = http_get(addr(port)).path("/down").send().expect("down");
    assert_eq!(s, 503, "no healthy backend");
    assert!(header(&h, "retry-after").is_some());
    assert_eq!(body, "sorry, try later", "configured error body");
    let (s, _, _) = http_get(addr(port))
        .path("/slow?ms=2000")
        .send()
        .expect("slow");
    assert_eq!(s, 504, "upstream timeout");
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "errors come fast: {:?}",
        t.elapsed()
    );
}

#[test]
fn smuggling_and_malformed_requests_are_rejected_and_closed() {
    let dir = TempDir::new("smuggle");
    let w = Backend::http("web");
    let port = free_port();
    let _d = Daemon::start(
        &dir,
        &(pool("web", &[&w], "") + &http_listener(port, "pool = \"web\"")),
    );
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
        let (status, h, _) = read_response(&mut r).unwrap_or_else(|e| panic!("{raw:?}: {e}"));
        assert_eq!(status, 400, "{raw:?}");
        assert_eq!(header(&h, "connection"), Some("close"), "{raw:?}");
        // The connection is closed after the 400: nothing smuggled behind it.
        let mut rest = Vec::new();
        let _ = r.read_to_end(&mut rest);
        assert!(rest.is_empty(), "{raw:?}: bytes after the 400: {rest:?}");
    }
    assert_eq!(
        w.requests.load(std::sync::atomic::Ordering::Relaxed),
        0,
        "nothing reached the backend"
    );
}

#[test]
fn slowloris_is_cut_while_normal_clients_are_served() {
    let dir = TempDir::new("slowloris");
    let w = Backend::http("web");
    let port = free_port();
    let _d = Daemon::start(
        &dir,
        &(pool("web", &[&w], "")
            + &http_listener(port, "pool = \"web\"\nheader_timeout = \"500ms\"")),
    );
    let mut slow = TcpStream::connect(addr(port)).expect("connect");
    slow.set_read_timeout(Some(Duration::from_secs(3)))
        .expect("t");
    let t = Instant::now();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n").expect("w");
    let mut cut = false;
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(100));
        let (s, _, body) = http_get(addr(port))
            .send()
            .expect("normal client served meanwhile");
        assert_eq!((s, body.as_str()), (200, "web"));
        if slow.write_all(b"X-Drip: 1\r\n").is_err() {
            cut = true;
            break;
        }
        let mut b = [0u8; 256];
        slow.set_nonblocking(true).expect("nb");
        let r = slow.read(&mut b);
        slow.set_nonblocking(false).expect("b");
        if r.is_ok() {
            cut = true;
            break;
        }
    }
    assert!(cut, "slow client still connected after {:?}", t.elapsed());
    assert!(
        t.elapsed() < Duration::from_millis(1500),
        "cut after {:?}",
        t.elapsed()
    );
}

#[test]
fn large_streaming_upload_and_download_are_byte_exact() {
    const N: u64 = 256 * 1024 * 1024;
    let dir = TempDir::new("l7big");
    let w = Backend::http("web");
    let port = free_port();
    let _d = Daemon::start(
        &dir,
        &(pool("web", &[&w], "") + &http_listener(port, "pool = \"web\"")),
    );
    // Download.
    let mut s = TcpStream::connect(addr(port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("t");
    write!(
        s,
        "GET /big?n={N} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    .expect("w");
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
            assert_eq!(
                *b,
                pattern(got + k as u64),
                "download byte {}",
                got + k as u64
            );
        }
        got += n as u64;
    }
    assert_eq!(got, N);
    // Upload, echoed back while it streams.
    let s = TcpStream::connect(addr(port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("t");
    let mut wr = s.try_clone().expect("clone");
    let writer = std::thread::spawn(move || {
        write!(
            wr,
            "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {N}\r\nConnection: close\r\n\r\n"
        )
        .expect("w");
        let mut buf = vec![0u8; 256 * 1024];
        let mut off = 0u64;
        while off < N {
            let k = (N - off).min(buf.len() as u64) as usize;
            for (j, b) in buf[..k].iter_mut().enumerate() {
                *b = pattern(off + j as u64);
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
            assert_eq!(
                *b,
                pattern(got + k as u64),
                "upload byte {}",
                got + k as u64
            );
        }
        got += n as u64;
    }
    writer.join().expect("writer");
    assert_eq!(got, N);
}

#[test]
fn websocket_upgrade_is_tunnelled() {
    let dir = TempDir::new("ws");
    let w = Backend::http("web");
    let port = free_port();
    let _d = Daemon::start(
        &dir,
        &(pool("web", &[&w], "") + &http_listener(port, "pool = \"web\"")),
    );
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
    let w = Backend::http("web");
    let port = free_port();
    let cfg = format!(
        "[[pool]]\nname = \"web\"\nhealth = {{ check = \"none\" }}\nbackends = [{{ address = \"{}\" }}]\n",
        w.addr
    ) + &http_listener(port, "pool = \"web\"");
    let _d = Daemon::start(&dir, &cfg);
    let out = Command::new("curl")
        .args([
            "-s",
            "--http2-prior-knowledge",
            "-o",
            "/dev/null",
            "-w",
            "%{http_version} %{http_code}",
        ])
        .arg(format!("http://127.0.0.1:{port}/"))
        .output()
        .expect("curl (apt install curl)");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "2 200");
    // 50 requests from fresh client connections reuse a few upstream ones.
    for _ in 0..50 {
        let (s, _, body) = http_get(addr(port)).send().expect("get");
        assert_eq!((s, body.as_str()), (200, "web"));
    }
    let conns = w.connections.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        conns <= 3,
        "upstream keep-alive pool: {conns} connections for 51 requests"
    );
}

// ---------------------------------------------------------------- TLS ---

use support::tls::{certs, AnyCert};

/// A TLS client with our CA: returns (served certificate DER, ALPN, stream).
fn tls_connect(
    port: u16,
    sni: &str,
    ca_pem: &str,
    alpn: &[&[u8]],
) -> (
    Vec<u8>,
    Option<Vec<u8>>,
    rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
) {
    let mut roots = rustls::RootCertStore::empty();
    use rustls_pki_types::pem::PemObject;
    for c in rustls_pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.expect("ca pem")).expect("add root");
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    // We check *which* certificate is served, including the default one
    // for names it does not cover: accept any, compare DER afterwards.
    cfg.dangerous()
        .set_certificate_verifier(std::sync::Arc::new(AnyCert::new(provider)));
    cfg.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
    let name = rustls_pki_types::ServerName::try_from(sni.to_string()).expect("name");
    let conn = rustls::ClientConnection::new(std::sync::Arc::new(cfg), name).expect("client");
    let sock = TcpStream::connect(addr(port)).expect("connect");
    sock.set_read_timeout(Some(Duration::from_secs(3)))
        .expect("t");
    let mut tls = rustls::StreamOwned::new(conn, sock);
    tls.flush().expect("handshake");
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock).expect("handshake io");
    }
    let der = tls.conn.peer_certificates().expect("peer certs")[0].to_vec();
    let alpn = tls.conn.alpn_protocol().map(|a| a.to_vec());
    (der, alpn, tls)
}

fn tls_get(
    tls: &mut rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
    host: &str,
) -> (u16, String) {
    write!(tls, "GET / HTTP/1.1\r\nHost: {host}\r\n\r\n").expect("write");
    let mut r = BufReader::new(tls);
    let (s, _, body) = read_response(&mut r).expect("response");
    (s, String::from_utf8_lossy(&body).into_owned())
}

#[test]
fn https_sni_wildcard_alpn_and_certificate_reload() {
    let dir = TempDir::new("https");
    let w = Backend::http("web");
    let ca = certs::ca();
    let a = certs::leaf(&ca, &["a.example.com"]);
    let wild = certs::leaf(&ca, &["*.example.com"]);
    let other = certs::leaf(&ca, &["other.test"]);
    for (n, c) in [("a", &a), ("wild", &wild), ("other", &other)] {
        std::fs::write(dir.path(&format!("{n}.pem")), &c.0).expect("write");
        std::fs::write(dir.path(&format!("{n}.key")), &c.1).expect("write");
    }
    std::fs::write(dir.path("ca.pem"), &ca.pem).expect("write");
    let port = free_port();
    let p = |n: &str| dir.path(n).display().to_string();
    let listener = format!(
        "[[listener]]\nname = \"tls\"\nbind = \"127.0.0.1:{port}\"\nprotocol = \"https\"\npool = \"web\"\nhsts = \"max-age=600\"\n\
         tls = {{ certificates = [\n  {{ cert = \"{}\", key = \"{}\", default = true }},\n  {{ cert = \"{}\", key = \"{}\" }},\n  {{ cert = \"{}\", key = \"{}\" }},\n] }}\n",
        p("other.pem"), p("other.key"), p("a.pem"), p("a.key"), p("wild.pem"), p("wild.key")
    );
    let d = Daemon::start(&dir, &(pool("web", &[&w], "") + &listener));
    // SNI: exact beats wildcard; wildcard covers one label; unknown → default.
    for (sni, want) in [
        ("a.example.com", &a.2),
        ("b.example.com", &wild.2),
        ("x.y.example.com", &other.2),
        ("unknown.test", &other.2),
    ] {
        let (der, _, _) = tls_connect_any(port, sni, &ca.pem);
        assert!(&der == want, "{sni}: wrong certificate");
    }
    // ALPN: h2 when offered, http/1.1 otherwise.
    let (_, alpn, _) = tls_connect(port, "a.example.com", &ca.pem, &[b"h2", b"http/1.1"]);
    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
    let (_, alpn, mut keep) = tls_connect(port, "a.example.com", &ca.pem, &[b"http/1.1"]);
    assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));
    assert_eq!(
        tls_get(&mut keep, "a.example.com"),
        (200, "web".to_string())
    );
    // curl over HTTP/2 with the HSTS header.
    let out = Command::new("curl")
        .args([
            "-s",
            "--http2",
            "-D",
            "-",
            "-o",
            "/dev/null",
            "-w",
            "%{http_version}",
        ])
        .args([
            "--cacert",
            &p("ca.pem"),
            "--resolve",
            &format!("a.example.com:{port}:127.0.0.1"),
        ])
        .arg(format!("https://a.example.com:{port}/"))
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
    assert!(text.ends_with('2'), "HTTP/2 over TLS: {text}");
    assert!(
        text.contains("strict-transport-security: max-age=600"),
        "{text}"
    );
    // Renew a.example.com's certificate on disk, SIGHUP: new handshakes get
    // it, the open keep-alive connection keeps working.
    let renewed = certs::leaf(&ca, &["a.example.com"]);
    std::fs::write(dir.path("a.pem"), &renewed.0).expect("write");
    std::fs::write(dir.path("a.key"), &renewed.1).expect("write");
    d.signal("HUP");
    d.wait_for("reload", Duration::from_secs(3), |d| {
        d.status().generation == 2
    });
    let (der, _, _) = tls_connect_any(port, "a.example.com", &ca.pem);
    assert!(der == renewed.2, "renewed certificate served after SIGHUP");
    assert_eq!(
        tls_get(&mut keep, "a.example.com"),
        (200, "web".to_string()),
        "open connection survives"
    );
    // A broken certificate is a config error naming the file; nothing changes.
    std::fs::write(dir.path("a.key"), "not a key").expect("write");
    let out = Command::new(BIN)
        .args(["check", "-c"])
        .arg(&d.config)
        .output()
        .expect("check");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("a.key"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn tls_connect_any(
    port: u16,
    sni: &str,
    ca: &str,
) -> (
    Vec<u8>,
    Option<Vec<u8>>,
    rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
) {
    tls_connect(port, sni, ca, &[b"http/1.1"])
}

// ------------------------------------------------------------- sticky ---

#[test]
fn sticky_cookie_keeps_a_client_on_its_backend_and_falls_back() {
    let dir = TempDir::new("stickyc");
    let (a, b, c) = (
        Backend::http("alpha"),
        Backend::http("bravo"),
        Backend::http("charlie"),
    );
    let port = free_port();
    let cfg = pool(
        "web",
        &[&a, &b, &c],
        "sticky = { mode = \"cookie\", name = \"TANDEM_SRV\" }",
    ) + &http_listener(port, "pool = \"web\"");
    let d = Daemon::start(&dir, &cfg);
    let (_, h, first) = http_get(addr(port)).send().expect("first");
    let set = header(&h, "set-cookie")
        .expect("sticky cookie set")
        .to_string();
    assert!(
        set.starts_with("TANDEM_SRV=") && set.contains("HttpOnly"),
        "{set}"
    );
    let token = set.split(';').next().unwrap_or("").to_string();
    assert!(
        !token.contains(&first) && !token.contains("127.0.0.1"),
        "opaque: {token}"
    );
    for _ in 0..10 {
        let (_, h, body) = http_get(addr(port))
            .headers(&format!("Cookie: {token}\r\n"))
            .send()
            .expect("get");
        assert_eq!(body, first, "sticky");
        assert!(
            header(&h, "set-cookie").is_none(),
            "cookie not re-issued while valid"
        );
    }
    // Its backend goes down: the pool's algorithm takes over, a new cookie is set.
    let victim = match first.as_str() {
        "alpha" => &a,
        "bravo" => &b,
        _ => &c,
    };
    let vport = victim.addr.port();
    drop_backend(victim);
    d.wait_for("victim down", Duration::from_secs(3), |d| {
        d.health("web", &first) == "down"
    });
    let (s, h, body) = http_get(addr(port))
        .headers(&format!("Cookie: {token}\r\n"))
        .send()
        .expect("fallback");
    assert_eq!(s, 200);
    assert_ne!(body, first);
    assert!(
        header(&h, "set-cookie").is_some_and(|c| c.starts_with("TANDEM_SRV=")),
        "re-issued"
    );
    let _ = vport;
}

/// Stops a backend that is borrowed elsewhere in the test (its listener
/// thread notices the stop flag).
fn drop_backend(w: &Backend) {
    w.stop_now();
}

#[test]
fn sticky_app_cookie_learns_the_session_and_source_ip_hashes() {
    let dir = TempDir::new("stickya");
    let (a, b, c) = (
        Backend::http("alpha"),
        Backend::http("bravo"),
        Backend::http("charlie"),
    );
    let port = free_port();
    let cfg = pool(
        "app",
        &[&a, &b, &c],
        "sticky = { mode = \"app_cookie\", name = \"JSESSIONID\", ttl = \"10m\" }",
    ) + &pool(
        "src",
        &[&a, &b, &c],
        "sticky = { mode = \"source_ip\" }\nalgorithm = \"source_hash\"",
    ) + &http_listener(
        port,
        r#"routes = [{ match = { path_prefix = "/src" }, pool = "src" }, { pool = "app" }]"#,
    );
    let d = Daemon::start(&dir, &cfg);
    let (_, h, owner) = http_get(addr(port))
        .path("/setcookie?name=JSESSIONID&value=s3ss10n")
        .send()
        .expect("login");
    assert!(header(&h, "set-cookie").is_some_and(|c| c.contains("JSESSIONID=s3ss10n")));
    for _ in 0..12 {
        let (_, _, body) = http_get(addr(port))
            .headers("Cookie: JSESSIONID=s3ss10n\r\n")
            .send()
            .expect("get");
        assert_eq!(body, owner, "the learned session stays on its backend");
    }
    // The owner goes down: the session falls back to the pool's algorithm.
    let owner_web = [&a, &b, &c]
        .into_iter()
        .find(|w| w.name == owner)
        .expect("owner");
    owner_web.stop_now();
    d.wait_for("owner down", Duration::from_secs(3), |d| {
        d.health("app", &owner) == "down"
    });
    let mut moved = None;
    for _ in 0..20 {
        if let Ok((200, _, body)) = http_get(addr(port))
            .headers("Cookie: JSESSIONID=s3ss10n\r\n")
            .send()
        {
            moved = Some(body);
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let moved = moved.expect("served after the sticky backend died");
    assert_ne!(moved, owner);
    // Without the cookie requests spread.
    let spread: std::collections::HashSet<String> = (0..9)
        .map(|_| http_get(addr(port)).send().expect("get").2)
        .collect();
    assert!(spread.len() > 1, "no affinity without the cookie");
    // source_ip: one source → one backend; several sources → several.
    let from = |src: [u8; 4]| -> String {
        use socket2::{Domain, Socket, Type};
        let s = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
        s.bind(&SocketAddr::from((src, 0)).into())
            .expect("bind source");
        s.connect(&addr(port).into()).expect("connect");
        let mut t: TcpStream = s.into();
        t.set_read_timeout(Some(Duration::from_secs(3))).expect("t");
        t.write_all(b"GET /src HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .expect("w");
        let (_, _, body) = read_response(&mut BufReader::new(t)).expect("resp");
        String::from_utf8_lossy(&body).into_owned()
    };
    let first = from([127, 0, 0, 7]);
    for _ in 0..5 {
        assert_eq!(from([127, 0, 0, 7]), first);
    }
    let many: std::collections::HashSet<String> =
        (10..40u8).map(|i| from([127, 0, 0, i])).collect();
    assert!(
        many.len() >= 2,
        "different sources hash to different backends: {many:?}"
    );
}

// -------------------------------------------------------------- cache ---

#[test]
fn cache_hits_misses_expiry_exclusions_vary_and_coalescing() {
    let dir = TempDir::new("cache");
    let w = Backend::http("web");
    let port = free_port();
    let cfg = pool("web", &[&w], "")
        + &http_listener(port, r#"routes = [{ pool = "web", cache = true }]"#);
    let _d = Daemon::start(&dir, &cfg);
    let a = addr(port);
    let xc = |h: &[(String, String)]| header(h, "x-cache").unwrap_or("").to_string();
    // miss, then hit with Age
    let (_, h, body) = http_get(a).path("/cache?max-age=60").send().expect("1");
    assert_eq!((xc(&h).as_str(), body.as_str()), ("MISS", "web fetch 1"));
    let (_, h, body) = http_get(a).path("/cache?max-age=60").send().expect("2");
    assert_eq!((xc(&h).as_str(), body.as_str()), ("HIT", "web fetch 1"));
    assert!(header(&h, "age").is_some());
    assert_eq!(w.hits("/cache?max-age=60"), 1);
    // expiry
    http_get(a).path("/cache?max-age=1").send().expect("e1");
    assert_eq!(
        xc(&http_get(a).path("/cache?max-age=1").send().expect("e2").1),
        "HIT"
    );
    std::thread::sleep(Duration::from_millis(1300));
    assert_eq!(
        xc(&http_get(a).path("/cache?max-age=1").send().expect("e3").1),
        "MISS"
    );
    assert_eq!(w.hits("/cache?max-age=1"), 2);
    // no-store, Set-Cookie and Authorization are never cached
    for _ in 0..3 {
        http_get(a).path("/cache?nostore").send().expect("ns");
        http_get(a)
            .path("/cache?max-age=60&cookie")
            .send()
            .expect("ck");
        http_get(a)
            .path("/cache?max-age=60&auth")
            .headers("Authorization: Bearer x\r\n")
            .send()
            .expect("auth");
    }
    assert_eq!(w.hits("/cache?nostore"), 3);
    assert_eq!(w.hits("/cache?max-age=60&cookie"), 3);
    assert_eq!(w.hits("/cache?max-age=60&auth"), 3);
    // Vary: one entry per Accept-Language
    for lang in ["fr", "de", "fr", "de", "fr"] {
        let (_, _, body) = http_get(a)
            .path("/cache?max-age=60&vary=Accept-Language")
            .headers(&format!("Accept-Language: {lang}\r\n"))
            .send()
            .expect("vary");
        assert!(body.ends_with(&format!("Accept-Language={lang}")), "{body}");
    }
    assert_eq!(w.hits("/cache?max-age=60&vary=Accept-Language"), 2);
    // coalescing: 20 concurrent misses → one upstream request
    let threads: Vec<_> = (0..20)
        .map(|_| {
            std::thread::spawn(move || {
                http_get(a)
                    .path("/cache?max-age=60&delay=400")
                    .send()
                    .map(|r| r.0)
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().expect("join"), Ok(200));
    }
    assert_eq!(
        w.hits("/cache?max-age=60&delay=400"),
        1,
        "concurrent misses coalesced"
    );
}

#[test]
fn upstream_tls_re_encryption_verifies_the_backend() {
    // One daemon: an http listener whose pool speaks TLS to the daemon's
    // own https listener, which forwards to a plain backend.
    let dir = TempDir::new("reenc");
    let w = Backend::http("web");
    let ca = certs::ca();
    let leaf = certs::leaf(&ca, &["backend.internal"]);
    std::fs::write(dir.path("b.pem"), &leaf.0).expect("w");
    std::fs::write(dir.path("b.key"), &leaf.1).expect("w");
    std::fs::write(dir.path("ca.pem"), &ca.pem).expect("w");
    let other_ca = certs::ca();
    std::fs::write(dir.path("other-ca.pem"), &other_ca.pem).expect("w");
    let (front, back, bad) = (free_port(), free_port(), free_port());
    let p = |n: &str| dir.path(n).display().to_string();
    let cfg = pool("web", &[&w], "")
        + &format!(
            "[[pool]]\nname = \"tls\"\nhealth = {{ check = \"tcp\" }}\nbackends = [{{ address = \"127.0.0.1:{back}\" }}]\n\
             tls = {{ verify = \"{}\", server_name = \"backend.internal\" }}\n\
             [[pool]]\nname = \"tls-wrong-ca\"\nhealth = {{ check = \"tcp\" }}\nbackends = [{{ address = \"127.0.0.1:{back}\" }}]\n\
             tls = {{ verify = \"{}\", server_name = \"backend.internal\" }}\n\
             [[listener]]\nname = \"front\"\nbind = \"127.0.0.1:{front}\"\nprotocol = \"http\"\npool = \"tls\"\n\
             [[listener]]\nname = \"bad\"\nbind = \"127.0.0.1:{bad}\"\nprotocol = \"http\"\npool = \"tls-wrong-ca\"\n\
             [[listener]]\nname = \"back\"\nbind = \"127.0.0.1:{back}\"\nprotocol = \"https\"\npool = \"web\"\n\
             tls = {{ certificates = [{{ cert = \"{}\", key = \"{}\" }}] }}\n",
            p("ca.pem"),
            p("other-ca.pem"),
            p("b.pem"),
            p("b.key")
        );
    let _d = Daemon::start(&dir, &cfg);
    let (s, _, body) = http_get(addr(front)).send().expect("re-encrypted");
    assert_eq!((s, body.as_str()), (200, "web"));
    let (s, _, _) = http_get(addr(bad)).send().expect("wrong CA");
    assert_eq!(s, 502, "a backend certificate from another CA is refused");
}

#[test]
fn listener_queue_holds_several_waiting_connections() {
    let dir = TempDir::new("l7-queue");
    let web = Backend::http("w");
    let port = free_port();
    let d = Daemon::start(
        &dir,
        &(pool("web", &[&web], "")
            + &http_listener(
                port,
                "pool = \"web\"\nmax_connections = 1\nqueue_size = 2\nqueue_timeout = \"3s\"",
            )),
    );
    // The first connection holds the only slot (keep-alive).
    let mut first = TcpStream::connect(addr(port)).expect("first");
    first
        .set_read_timeout(Some(Duration::from_secs(3)))
        .expect("t");
    first
        .write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
        .expect("write first");
    let (status, _, _) = read_response(&mut BufReader::new(&first)).expect("first served");
    assert_eq!(status, 200);
    // Two more wait in the queue at the same time: waiting happens in each
    // connection's task, not in the accept loop.
    let waiting: Vec<_> = (0..2)
        .map(|_| std::thread::spawn(move || http_get(addr(port)).send().map(|(s, _, _)| s)))
        .collect();
    d.wait_for("two queued", Duration::from_secs(2), |d| {
        d.status().listeners[0].queued == 2
    });
    // A fourth finds the queue full and is closed at once.
    assert!(http_get(addr(port)).send().is_err(), "queue full: refused");
    drop(first);
    for w in waiting {
        assert_eq!(w.join().expect("thread"), Ok(200), "queued request served");
    }
    let s = d.status();
    assert_eq!(s.listeners[0].rejected, 1);
    assert_eq!(s.listeners[0].queued, 0);
}
