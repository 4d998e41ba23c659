//! Hardening through real `tandem` processes on loopback (issue 17): holes closed from
//! outside (forged sticky cookies, unbounded admin/metrics connections), faults (fd
//! exhaustion, many idle connections) and paths no other suite reaches.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::web::{get, header, Web};
use common::*;

fn pool(name: &str, webs: &[&Web], extra: &str) -> String {
    let list: Vec<String> = webs
        .iter()
        .map(|w| format!("{{ name = \"{}\", address = \"{}\" }}", w.name, w.addr))
        .collect();
    format!(
        "[[pool]]\nname = \"{name}\"\nalgorithm = \"round_robin\"\nhealth = {{ check = \"tcp\", interval = \"200ms\", timeout = \"100ms\" }}\nbackends = [{}]\n{extra}\n",
        list.join(", ")
    )
}

fn http_listener(port: u16, body: &str) -> String {
    format!(
        "[[listener]]\nname = \"web\"\nbind = \"127.0.0.1:{port}\"\nprotocol = \"http\"\n{body}\n"
    )
}

// ------------------------------------------------------------- sticky ---

/// The `NAME=VALUE` part of a Set-Cookie for TANDEM_SRV, if any.
fn issued(h: &[(String, String)]) -> Option<String> {
    header(h, "set-cookie")
        .filter(|c| c.starts_with("TANDEM_SRV="))
        .and_then(|c| c.split(';').next())
        .map(str::to_string)
}

/// A sticky tandem on a fresh port with `secret`, and backend → cookie as it issues them.
fn sticky_node(
    tag: &str,
    webs: &[&Web],
    secret: &str,
) -> (Daemon, TempDir, u16, BTreeMap<String, String>) {
    let dir = TempDir::new(tag);
    let port = free_port();
    let cfg = pool(
        "web",
        webs,
        "sticky = { mode = \"cookie\", name = \"TANDEM_SRV\" }",
    ) + &http_listener(port, "pool = \"web\"");
    let d = Daemon::start_with_global(&dir, &format!("sticky_secret = \"{secret}\""), &cfg);
    let mut cookies = BTreeMap::new();
    // Round robin: fresh clients visit every backend within a few requests.
    for _ in 0..(4 * webs.len()) {
        let (s, h, body) = get(addr(port), "/", "").expect("fresh request");
        assert_eq!(s, 200);
        let c = issued(&h).unwrap_or_else(|| panic!("no sticky cookie for a fresh client: {h:?}"));
        if let Some(old) = cookies.insert(body.clone(), c.clone()) {
            assert_eq!(old, c, "one token per backend");
        }
    }
    assert_eq!(cookies.len(), webs.len(), "every backend seen: {cookies:?}");
    (d, dir, port, cookies)
}

#[test]
fn sticky_cookie_cannot_be_forged() {
    let (a, b, c) = (
        Web::start("alpha"),
        Web::start("bravo"),
        Web::start("charlie"),
    );
    let webs = [&a, &b, &c];
    let secret = "pair-shared-secret-0123456789";
    let (_n1, _d1, p1, tokens1) = sticky_node("sticky1", &webs, secret);
    let (_n2, _d2, p2, tokens2) = sticky_node("sticky2", &webs, secret);
    let (_n3, _d3, _p3, tokens3) = sticky_node("sticky3", &webs, "another-secret-entirely-42");
    assert_eq!(
        tokens1, tokens2,
        "two nodes with one secret issue the same cookies"
    );
    for (backend, t) in &tokens1 {
        assert_ne!(
            Some(t),
            tokens3.get(backend),
            "another secret, other cookies"
        );
        // A valid cookie pins, on either node, and is not re-issued.
        for port in [p1, p2] {
            for _ in 0..6 {
                let (_, h, body) = get(addr(port), "/", &format!("Cookie: {t}\r\n")).expect("get");
                assert_eq!(&body, backend, "valid cookie {t} pins on :{port}");
                assert_eq!(issued(&h), None, "a valid cookie is not re-issued");
            }
        }
    }
    // Forgeries: every edit of a real token, a token from another secret, junk. None pins:
    // each is re-issued a real cookie and the balancer spreads them.
    let real = tokens1["bravo"].clone();
    let value = real.trim_start_matches("TANDEM_SRV=").to_string();
    let mut forged: Vec<String> = (0..value.len())
        .step_by(5)
        .map(|i| {
            let mut v = value.clone().into_bytes();
            v[i] = if v[i] == b'f' { b'0' } else { b'f' };
            format!("TANDEM_SRV={}", String::from_utf8(v).unwrap())
        })
        .collect();
    forged.push(tokens3["bravo"].clone());
    forged.push("TANDEM_SRV=bravo".into());
    forged.push(format!("TANDEM_SRV={}", "0".repeat(32)));
    forged.push(format!("TANDEM_SRV={}", &value[..16]));
    let mut served = BTreeSet::new();
    for f in &forged {
        let (s, h, body) = get(addr(p1), "/", &format!("Cookie: {f}\r\n")).expect("forged");
        assert_eq!(s, 200);
        let reissued = issued(&h).unwrap_or_else(|| panic!("forged {f} not re-issued"));
        assert_eq!(
            reissued, tokens1[&body],
            "re-issued the real cookie of {body}"
        );
        served.insert(body);
    }
    assert_eq!(served.len(), 3, "forged cookies do not pin: {served:?}");
}

/// The metrics and admin TCP listeners hold partial request heads for at
/// most their header timeout, cap concurrent connections, and refuse
/// oversized heads, so a flood from anyone who can reach the port neither
/// grows memory nor locks operators out for long.
#[test]
fn admin_and_metrics_tcp_listeners_bound_slow_and_huge_heads() {
    use std::io::{Read, Write};
    use std::time::{Duration, Instant};
    let dir = TempDir::new("adminlimits");
    let (mport, aport) = (free_port(), free_port());
    let d = Daemon::start_with_global(
        &dir,
        &format!(
            "metrics_listen = \"127.0.0.1:{mport}\"\nadmin_listen = \"127.0.0.1:{aport}\"\nadmin_token = \"0123456789abcdef0123456789abcdef\""
        ),
        "[[pool]]\nname = \"p\"\nhealth = { check = \"none\" }\nbackends = [{ address = \"127.0.0.1:9\" }]\n",
    );
    let (m, a) = (addr(mport), addr(aport));
    wait_port(m);
    wait_port(a);
    let ok = |to: std::net::SocketAddr| get(to, "/metrics", "").map(|(s, _, _)| s).unwrap_or(0);
    assert_eq!(ok(m), 200);
    // 80 slowloris connections (partial heads) on each listener: beyond
    // the cap of 64, new connections are closed at once.
    let mut held = Vec::new();
    for to in [m, a] {
        for _ in 0..80 {
            let mut s = std::net::TcpStream::connect(to).expect("connect");
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Pad: ")
                .expect("write");
            held.push(s);
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    let closed_now = held
        .iter_mut()
        .map(|s| {
            s.set_read_timeout(Some(Duration::from_millis(20))).ok();
            let mut b = [0u8; 16];
            match s.read(&mut b) {
                Ok(0) => true,
                Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
                Ok(_) => false,
            }
        })
        .filter(|closed| *closed)
        .count();
    assert!(
        closed_now >= 2 * (80 - 64),
        "only {closed_now} closed beyond the cap"
    );
    // Within the header timeout (5 s) every partial head is cut.
    let t0 = Instant::now();
    for s in held.iter_mut() {
        s.set_read_timeout(Some(Duration::from_secs(8))).ok();
        let mut b = [0u8; 256];
        let _ = s.read(&mut b);
    }
    assert!(
        t0.elapsed() < Duration::from_secs(7),
        "held for {:?}",
        t0.elapsed()
    );
    drop(held);
    // A head larger than 16 KiB is refused, not buffered.
    let mut big = std::net::TcpStream::connect(m).expect("connect");
    let pad = "a".repeat(64 * 1024);
    let _ = big
        .write_all(format!("GET /metrics HTTP/1.1\r\nHost: x\r\nX-Pad: {pad}\r\n\r\n").as_bytes());
    big.set_read_timeout(Some(Duration::from_secs(3))).ok();
    let mut resp = Vec::new();
    let _ = big.read_to_end(&mut resp);
    assert!(
        !resp.starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&resp[..resp.len().min(64)])
    );
    // Operators get in again once the flood is gone.
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(ok(m), 200);
    assert!(d.log_text().contains("connection limit reached"));
}
