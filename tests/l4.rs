//! L4 forwarding through a real `tandem` process on loopback.

mod support;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use support::*;

fn pool(name: &str, backends: &[&Backend], extra: &str) -> String {
    Pool::new(name).backends(backends).raw(extra).to_string()
}

/// Pool `name`: the one nameless backend at `address`, no health checks.
fn unchecked(name: &str, address: &str) -> Pool {
    Pool::new(name)
        .health(r#"{ check = "none" }"#)
        .backend_table(&format!("{{ address = \"{address}\" }}"))
}

/// Pool `name`: the one nameless backend at 127.0.0.1:`port`, TCP checks every 100 ms.
fn fast_checked(name: &str, port: u16) -> Pool {
    Pool::new(name)
        .health(r#"{ check = "tcp", interval = "100ms", timeout = "50ms" }"#)
        .backend_table(&format!("{{ address = \"127.0.0.1:{port}\" }}"))
}

fn listener(name: &str, port: u16, pool: &str, extra: &str) -> String {
    Listener::local(name, port, pool).raw(extra).to_string()
}

#[test]
fn tcp_round_trip_and_half_close() {
    let dir = TempDir::new("half");
    let sink = Backend::start("sink", Mode::Sink);
    let port = free_port();
    let _d = Daemon::start(
        &dir,
        &(pool("p", &[&sink], "health = { check = \"tcp\" }") + &listener("l", port, "p", "")),
    );
    for _ in 0..3 {
        let mut c = TcpStream::connect(addr(port)).expect("connect");
        let payload = vec![b'x'; 100_000];
        c.write_all(&payload).expect("write");
        // Half-close: the backend sees EOF, and only then answers.
        c.shutdown(Shutdown::Write).expect("shutdown");
        let mut reply = String::new();
        c.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        c.read_to_string(&mut reply).expect("read reply");
        assert_eq!(reply, "got 100000 bytes\n");
    }
}

/// Deterministic byte pattern so the receiver can verify without storing it.
fn pattern(i: u64) -> u8 {
    (i.wrapping_mul(2_654_435_761) >> 13) as u8
}

#[test]
fn large_transfer_is_byte_exact() {
    const TOTAL: u64 = 256 * 1024 * 1024;
    let dir = TempDir::new("large");
    let echo = Backend::start("echo", Mode::Echo);
    let port = free_port();
    let _d = Daemon::start(
        &dir,
        &(pool("p", &[&echo], "health = { check = \"tcp\" }")
            + &listener("l", port, "p", "idle_timeout = \"30s\"")),
    );
    let c = TcpStream::connect(addr(port)).expect("connect");
    let mut w = c.try_clone().expect("clone");
    let writer = std::thread::spawn(move || {
        let mut buf = vec![0u8; 256 * 1024];
        let mut off = 0u64;
        while off < TOTAL {
            let n = (TOTAL - off).min(buf.len() as u64) as usize;
            for (k, b) in buf[..n].iter_mut().enumerate() {
                *b = pattern(off + k as u64);
            }
            w.write_all(&buf[..n]).expect("write");
            off += n as u64;
        }
        w.shutdown(Shutdown::Write).expect("shutdown");
    });
    let mut r = c;
    r.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut buf = vec![0u8; 256 * 1024];
    let mut got = 0u64;
    let t0 = Instant::now();
    loop {
        let n = r.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        for (k, b) in buf[..n].iter().enumerate() {
            assert_eq!(
                *b,
                pattern(got + k as u64),
                "byte {} differs",
                got + k as u64
            );
        }
        got += n as u64;
    }
    writer.join().expect("writer");
    assert_eq!(got, TOTAL);
    eprintln!(
        "256 MiB echoed through tandem in {:.2}s",
        t0.elapsed().as_secs_f64()
    );
}

#[test]
fn udp_round_trip_replies_come_from_the_listener() {
    let dir = TempDir::new("udp");
    // UDP echo backend that prefixes its replies so we know it answered.
    let backend = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let baddr = backend.local_addr().expect("addr");
    backend
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let t = std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        let mut peers = std::collections::HashSet::new();
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
            if let Ok((n, from)) = backend.recv_from(&mut buf) {
                peers.insert(from);
                let mut out = b"echo:".to_vec();
                out.extend_from_slice(&buf[..n]);
                let _ = backend.send_to(&out, from);
            }
        }
        peers.len()
    });
    let port = free_udp_port();
    let body = Config::new()
        .pool(unchecked("u", &baddr.to_string()))
        .listener(Listener::local("u", port, "u").protocol("udp"))
        .render();
    let d = Daemon::start(&dir, &body);
    let clients: Vec<UdpSocket> = (0..3)
        .map(|_| {
            let c = UdpSocket::bind("127.0.0.1:0").expect("bind");
            c.set_read_timeout(Some(Duration::from_secs(2))).expect("t");
            c
        })
        .collect();
    for round in 0..5 {
        for (i, c) in clients.iter().enumerate() {
            let msg = format!("c{i}-r{round}");
            c.send_to(msg.as_bytes(), addr(port)).expect("send");
            let mut buf = [0u8; 2048];
            let (n, from) = c.recv_from(&mut buf).expect("reply");
            assert_eq!(
                from,
                addr(port),
                "reply must come from the listener address"
            );
            assert_eq!(&buf[..n], format!("echo:{msg}").as_bytes());
        }
    }
    let s = d.status();
    let l = &s.listeners[0];
    assert_eq!(l.total, 3, "one flow per client: {l:?}");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    // Three clients → three flows → three distinct backend-side sockets.
    assert_eq!(t.join().expect("backend"), 3);
}

#[test]
fn dead_backend_is_marked_down_and_traffic_continues() {
    let dir = TempDir::new("health");
    let a = Backend::start("a", Mode::Plain);
    let b = Backend::start("b", Mode::Plain);
    let c = Backend::start("c", Mode::Plain);
    let port = free_port();
    let interval = Duration::from_millis(200);
    let timeout = Duration::from_millis(100);
    let fall = 2u32;
    let d = Daemon::start(
        &dir,
        &(pool(
            "p",
            &[&a, &b, &c],
            "algorithm = \"round_robin\"\npassive_failures = 0\nhealth = { check = \"http\", path = \"/health\", interval = \"200ms\", timeout = \"100ms\", rise = 2, fall = 2 }",
        ) + &listener("l", port, "p", "")),
    );
    d.wait_for("all backends up", Duration::from_secs(5), |d| {
        ["a", "b", "c"].iter().all(|n| d.health("p", n) == "up")
    });
    let b_port = b.addr.port();
    drop(b); // the backend dies
    let killed = Instant::now();
    // Traffic keeps working from the first moment (retries cover the gap).
    let mut failures = 0;
    let down_after = loop {
        if http_get(addr(port)).body().is_err() {
            failures += 1;
        }
        if d.health("p", "b") == "down" {
            break killed.elapsed();
        }
        assert!(
            killed.elapsed() < Duration::from_secs(5),
            "b never marked down"
        );
    };
    // interval × fall + timeout, plus the ±10% jitter and polling slack.
    let budget = interval.mul_f64(1.1) * fall + timeout + Duration::from_millis(300);
    assert!(
        down_after <= budget,
        "marked down after {down_after:?}, budget {budget:?}"
    );
    eprintln!("backend marked down {down_after:?} after it died (budget {budget:?})");
    let mut seen = std::collections::HashMap::new();
    for _ in 0..60 {
        match http_get(addr(port)).body() {
            Ok(body) => *seen.entry(body).or_insert(0) += 1,
            Err(e) => panic!("request failed after the backend was marked down: {e}"),
        }
    }
    assert_eq!(failures, 0, "requests failed while the backend was dying");
    assert!(!seen.contains_key("b"));
    assert_eq!(seen.get("a"), Some(&30));
    assert_eq!(seen.get("c"), Some(&30));
    // It comes back after `rise` successful probes.
    let b2 = Backend::start_on("b", Mode::Plain, b_port);
    let back = d.wait_for("b back up", Duration::from_secs(5), |d| {
        d.health("p", "b") == "up"
    });
    assert!(
        back >= interval.mul_f64(0.9),
        "rejoined too early: {back:?} (rise = 2)"
    );
    let bodies: Vec<String> = (0..30)
        .filter_map(|_| http_get(addr(port)).body().ok())
        .collect();
    assert_eq!(bodies.len(), 30);
    assert!(bodies.iter().any(|b| b == "b"), "b gets traffic again");
    drop(b2);
}

#[test]
fn no_healthy_backend_closes_at_once() {
    let dir = TempDir::new("nobackend");
    let dead = free_port();
    let port = free_port();
    let body = fast_checked("p", dead).to_string() + &listener("l", port, "p", "");
    let d = Daemon::start(&dir, &body);
    d.wait_for("backend down", Duration::from_secs(3), |d| {
        d.health("p", &format!("127.0.0.1:{dead}")) == "down"
    });
    for _ in 0..5 {
        let mut c = TcpStream::connect(addr(port)).expect("connect");
        c.set_read_timeout(Some(Duration::from_secs(2))).expect("t");
        let t0 = Instant::now();
        let mut buf = [0u8; 16];
        let r = c.read(&mut buf);
        assert!(matches!(r, Ok(0) | Err(_)), "expected close, got {r:?}");
        assert!(
            t0.elapsed() < Duration::from_millis(300),
            "close took {:?}",
            t0.elapsed()
        );
    }
    let s = d.status();
    assert!(s.listeners[0].no_backend >= 5);
}

#[test]
fn listener_limit_queues_then_refuses() {
    let dir = TempDir::new("limit");
    let echo = Backend::start("echo", Mode::Echo);
    let port = free_port();
    let d = Daemon::start(
        &dir,
        &(pool("p", &[&echo], "health = { check = \"tcp\" }")
            + &listener(
                "l",
                port,
                "p",
                "max_connections = 1\nqueue_size = 1\nqueue_timeout = \"2s\"",
            )),
    );
    let roundtrip = |c: &mut TcpStream, msg: &[u8]| -> std::io::Result<Vec<u8>> {
        c.write_all(msg)?;
        let mut buf = vec![0u8; msg.len()];
        c.read_exact(&mut buf)?;
        Ok(buf)
    };
    let mut first = TcpStream::connect(addr(port)).expect("first");
    first
        .set_read_timeout(Some(Duration::from_secs(3)))
        .expect("t");
    assert_eq!(roundtrip(&mut first, b"one").expect("first works"), b"one");
    // Second is accepted by the kernel but waits in tandem's queue.
    let mut second = TcpStream::connect(addr(port)).expect("second");
    second
        .set_read_timeout(Some(Duration::from_secs(3)))
        .expect("t");
    second.write_all(b"two").expect("write second");
    d.wait_for("second queued", Duration::from_secs(2), |d| {
        d.status().listeners[0].queued == 1
    });
    // Third finds the queue full: closed at once.
    let mut third = TcpStream::connect(addr(port)).expect("third");
    third
        .set_read_timeout(Some(Duration::from_secs(2)))
        .expect("t");
    let mut buf = [0u8; 4];
    let r = third.read(&mut buf);
    assert!(
        matches!(r, Ok(0) | Err(_)),
        "third must be refused, got {r:?}"
    );
    // Releasing the first slot lets the second through, bytes intact.
    drop(first);
    let mut got = [0u8; 3];
    second
        .read_exact(&mut got)
        .expect("second served after first closed");
    assert_eq!(&got, b"two");
    assert_eq!(d.status().listeners[0].rejected, 1);
}

#[test]
fn proxy_protocol_v2_header_reaches_backend() {
    let dir = TempDir::new("proxyv2");
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let baddr = l.local_addr().expect("addr");
    let port = free_port();
    let body = unchecked("p", &baddr.to_string()).to_string()
        + &listener("l", port, "p", "send_proxy = \"v2\"");
    let _d = Daemon::start(&dir, &body);
    let mut c = TcpStream::connect(addr(port)).expect("connect");
    let client_port = c.local_addr().expect("local").port();
    c.write_all(b"hello").expect("write");
    let (mut s, _) = l.accept().expect("accept");
    let mut head = [0u8; 16 + 12 + 5];
    s.read_exact(&mut head).expect("read header");
    assert_eq!(&head[..12], b"\r\n\r\n\0\r\nQUIT\n");
    assert_eq!(&head[12..16], &[0x21, 0x11, 0x00, 0x0c]);
    assert_eq!(&head[16..20], &[127, 0, 0, 1]);
    assert_eq!(&head[20..24], &[127, 0, 0, 1]);
    assert_eq!(u16::from_be_bytes([head[24], head[25]]), client_port);
    assert_eq!(u16::from_be_bytes([head[26], head[27]]), port);
    assert_eq!(&head[28..], b"hello");
}

#[test]
fn sighup_moves_new_connections_and_keeps_open_ones() {
    let dir = TempDir::new("reload");
    let a = Backend::start("a", Mode::Plain);
    let b = Backend::start("b", Mode::Plain);
    let port = free_port();
    let hc = "health = { check = \"tcp\", interval = \"200ms\", timeout = \"100ms\" }";
    let d = Daemon::start(
        &dir,
        &(pool("p", &[&a], hc) + &listener("l", port, "p", "")),
    );
    assert_eq!(http_get(addr(port)).body().expect("get"), "a");
    // An open keep-alive connection on the old pool.
    let mut open = TcpStream::connect(addr(port)).expect("connect");
    open.set_read_timeout(Some(Duration::from_secs(3)))
        .expect("t");
    let ka = |c: &mut TcpStream| -> String {
        c.write_all(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
            .expect("write");
        let mut buf = [0u8; 256];
        let n = c.read(&mut buf).expect("read");
        String::from_utf8_lossy(&buf[..n])
            .lines()
            .last()
            .unwrap_or("")
            .to_string()
    };
    assert_eq!(ka(&mut open), "a");
    d.write_config(&(pool("p", &[&b], hc) + &listener("l", port, "p", "")));
    d.signal("HUP");
    d.wait_for("generation 2", Duration::from_secs(3), |d| {
        d.status().generation == 2
    });
    for _ in 0..5 {
        assert_eq!(http_get(addr(port)).body().expect("get"), "b");
    }
    assert_eq!(
        ka(&mut open),
        "a",
        "established connection keeps its backend"
    );

    // A broken file: the daemon logs every error and keeps the old config.
    std::fs::write(&d.config, "[global\nthis is not toml").expect("write");
    d.signal("HUP");
    d.wait_for("reload rejection logged", Duration::from_secs(3), |d| {
        d.log_text().contains("reload rejected")
    });
    assert_eq!(d.status().generation, 2);
    assert_eq!(http_get(addr(port)).body().expect("still serving"), "b");
    // `tandem reload` reports the errors and exits 1.
    let out = std::process::Command::new(BIN)
        .args(["reload", "-s"])
        .arg(&d.socket)
        .output()
        .expect("reload");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("tandem.toml:1:"),
        "errors name file and line: {err}"
    );
}

/// `tandem reload` prints the reload plan: what was added, changed and removed, and what
/// only a restart applies; and the new listener really serves.
#[test]
fn tandem_reload_prints_what_changed() {
    let dir = TempDir::new("plan");
    let a = Backend::start("a", Mode::Plain);
    let b = Backend::start("b", Mode::Plain);
    let (p1, p2) = (free_port(), free_port());
    let hc = "health = { check = \"tcp\", interval = \"200ms\", timeout = \"100ms\" }";
    let d = Daemon::start(
        &dir,
        &(pool("p", &[&a], hc) + &listener("one", p1, "p", "")),
    );
    let reload = || {
        let out = std::process::Command::new(BIN)
            .args(["reload", "-s"])
            .arg(&d.socket)
            .output()
            .expect("reload");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(reload().contains("no change"), "same file: nothing to do");
    let cfg = pool("p", &[&a, &b], hc)
        + &listener("one", p1, "p", "idle_timeout = \"9s\"")
        + &listener("two", p2, "p", "");
    // `workers` can only change at a restart: the plan must say so.
    d.write_config(&cfg);
    let text = std::fs::read_to_string(&d.config).expect("read config");
    std::fs::write(&d.config, text.replacen("workers = 2", "workers = 3", 1)).expect("write");
    let out = reload();
    for want in [
        format!("listener two: add tcp 127.0.0.1:{p2}"),
        format!("listener one: new settings on 127.0.0.1:{p1}"),
        "pool p: update".to_string(),
        format!("health check p/{}: start", b.addr),
        "global.workers: changed, takes effect at the next restart".to_string(),
    ] {
        assert!(out.contains(&want), "want {want:?} in:\n{out}");
    }
    assert!(
        !out.contains(&format!("p/{}", a.addr)),
        "a's checker is kept:\n{out}"
    );
    assert!(
        http_get(addr(p2)).body().is_ok(),
        "the added listener serves"
    );
    d.write_config(&(pool("p", &[&a], hc) + &listener("one", p1, "p", "")));
    let out = reload();
    assert!(
        out.contains(&format!("listener two: remove 127.0.0.1:{p2}")),
        "{out}"
    );
    assert!(
        out.contains(&format!("health check p/{}: stop", b.addr)),
        "{out}"
    );
}

#[test]
fn sigterm_drains_open_connections_then_exits_zero() {
    let dir = TempDir::new("drain");
    let echo = Backend::start("echo", Mode::Echo);
    let port = free_port();
    let mut d = Daemon::start(
        &dir,
        &(pool("p", &[&echo], "health = { check = \"tcp\" }") + &listener("l", port, "p", "")),
    );
    let mut c = TcpStream::connect(addr(port)).expect("connect");
    c.set_read_timeout(Some(Duration::from_secs(3))).expect("t");
    c.write_all(b"ping").expect("w");
    let mut buf = [0u8; 4];
    c.read_exact(&mut buf).expect("r");
    d.signal("TERM");
    // New connections are no longer accepted...
    wait_for(
        "new connections refused after SIGTERM",
        Duration::from_secs(3),
        || TcpStream::connect_timeout(&addr(port), Duration::from_millis(200)).is_err(),
    );
    // ...while the open one keeps working until the client closes it.
    c.write_all(b"pong").expect("w2");
    c.read_exact(&mut buf).expect("r2");
    assert_eq!(&buf, b"pong");
    assert!(
        d.child.try_wait().expect("wait").is_none(),
        "exited before drain"
    );
    drop(c);
    let st = d
        .wait_exit(Duration::from_secs(5))
        .expect("exits after drain");
    assert!(st.success(), "exit status {st:?}");
}

#[test]
fn udp_with_no_healthy_backend_drops_and_counts() {
    let dir = TempDir::new("udpdown");
    let dead = free_port();
    let port = free_udp_port();
    let body = Config::new()
        .pool(fast_checked("u", dead))
        .listener(Listener::local("u", port, "u").protocol("udp"))
        .render();
    let d = Daemon::start(&dir, &body);
    d.wait_for("backend down", Duration::from_secs(3), |d| {
        d.health("u", &format!("127.0.0.1:{dead}")) == "down"
    });
    let c = UdpSocket::bind("127.0.0.1:0").expect("bind");
    c.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("t");
    for _ in 0..5 {
        c.send_to(b"hello", addr(port)).expect("send");
    }
    let mut buf = [0u8; 64];
    assert!(c.recv_from(&mut buf).is_err(), "no reply without a backend");
    d.wait_for("5 drops counted", Duration::from_secs(2), |d| {
        d.status().listeners[0].dropped == 5
    });
    assert_eq!(d.status().listeners[0].no_backend, 5);
}
