//! Paths no other suite reaches (issue 17), through real `tandem` processes on loopback:
//! HTTP/2 to backends, the L7 retry of an idempotent request, passive failure detection
//! end to end, UDP `max_flows`, and `splice = "auto"` switching on a bulk transfer.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::*;

fn listener(name: &str, port: u16, protocol: &str, pool: &str, extra: &str) -> String {
    Listener::local(name, port, pool)
        .protocol(protocol)
        .raw(extra)
        .to_string()
}

/// A port with nothing listening: connecting to it is refused.
fn dead_port() -> u16 {
    free_port()
}

// --------------------------------------------------------- http/2 up ---

/// An h2c (prior knowledge) backend built on hyper: answers with the request's version,
/// method and body length, and counts the connections it accepted.
struct H2Backend {
    addr: SocketAddr,
    conns: Arc<AtomicU64>,
    requests: Arc<AtomicU64>,
    _rt: tokio::runtime::Runtime,
}

impl H2Backend {
    fn start() -> H2Backend {
        use http_body_util::BodyExt;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let l = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let addr = l.local_addr().expect("addr");
        let conns = Arc::new(AtomicU64::new(0));
        let requests = Arc::new(AtomicU64::new(0));
        let (c2, r2) = (conns.clone(), requests.clone());
        rt.spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                c2.fetch_add(1, Ordering::Relaxed);
                let r3 = r2.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(
                        move |req: hyper::Request<hyper::body::Incoming>| {
                            let r4 = r3.clone();
                            async move {
                                r4.fetch_add(1, Ordering::Relaxed);
                                let version = format!("{:?}", req.version());
                                let method = req.method().to_string();
                                let n = req
                                    .into_body()
                                    .collect()
                                    .await
                                    .map(|b| b.to_bytes().len())
                                    .unwrap_or(usize::MAX);
                                Ok::<_, std::convert::Infallible>(hyper::Response::new(
                                    http_body_util::Full::new(bytes::Bytes::from(format!(
                                        "{version} {method} {n}"
                                    ))),
                                ))
                            }
                        },
                    );
                    let _ = hyper::server::conn::http2::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                    .await;
                });
            }
        });
        H2Backend {
            addr,
            conns,
            requests,
            _rt: rt,
        }
    }
}

/// A pool with `http2 = true` speaks HTTP/2 to its backend: HTTP/1.1 clients' requests
/// (GET and POST with a body) arrive as HTTP/2.0, over few multiplexed connections.
#[test]
fn a_pool_with_http2_speaks_http2_to_its_backends() {
    let up = H2Backend::start();
    let dir = TempDir::new("h2up");
    let port = free_port();
    let cfg = format!(
        "[[pool]]\nname = \"h2\"\nhttp2 = true\nhealth = {{ check = \"none\" }}\nbackends = [{{ address = \"{}\" }}]\n",
        up.addr
    ) + &listener("web", port, "http", "h2", "");
    let d = Daemon::start(&dir, &cfg);
    wait_port(addr(port));
    let mut s = TcpStream::connect(addr(port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut r = std::io::BufReader::new(s.try_clone().expect("clone"));
    for i in 0..20 {
        s.write_all(b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n")
            .expect("write");
        let (status, _, body) = read_response(&mut r).expect("response");
        assert_eq!(
            (status, String::from_utf8_lossy(&body).as_ref()),
            (200, "HTTP/2.0 GET 0"),
            "request {i}"
        );
    }
    let body = vec![b'z'; 100_000];
    s.write_all(
        format!(
            "POST /up HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .expect("head");
    s.write_all(&body).expect("body");
    let (status, _, got) = read_response(&mut r).expect("post response");
    assert_eq!(
        (status, String::from_utf8_lossy(&got).as_ref()),
        (200, "HTTP/2.0 POST 100000")
    );
    // Parallel clients share the workers' HTTP/2 connections.
    let threads: Vec<_> = (0..8)
        .map(|_| {
            std::thread::spawn(move || {
                (0..10)
                    .filter(|_| {
                        http_get(addr(port))
                            .send()
                            .is_ok_and(|(s, _, b)| s == 200 && b.starts_with("HTTP/2.0"))
                    })
                    .count()
            })
        })
        .collect();
    let ok: usize = threads.into_iter().map(|t| t.join().expect("client")).sum();
    assert_eq!(ok, 80, "parallel requests over HTTP/2");
    let (conns, reqs) = (
        up.conns.load(Ordering::Relaxed),
        up.requests.load(Ordering::Relaxed),
    );
    eprintln!("101 requests over {conns} HTTP/2 connections");
    assert_eq!(reqs, 101);
    // One per worker (two) at most, plus slack for a race at start.
    assert!(conns <= 4, "{conns} backend connections for 101 requests");
    drop(d);
}

// ------------------------------------------------- retry and passive ---

/// A GET that cannot connect to one backend is retried on another (`retries`); a POST
/// with a body is not (it may have had an effect), and `retries = 0` turns retrying off.
#[test]
fn an_idempotent_request_is_retried_on_another_backend_and_a_post_is_not() {
    let good = Backend::http("good");
    let dead = dead_port();
    let dir = TempDir::new("retry");
    let (p1, p0) = (free_port(), free_port());
    let pool = |name: &str, retries: u32| {
        format!(
            "[[pool]]\nname = \"{name}\"\nalgorithm = \"round_robin\"\nretries = {retries}\npassive_failures = 0\nhealth = {{ check = \"none\" }}\n\
             backends = [{{ name = \"dead\", address = \"127.0.0.1:{dead}\" }}, {{ name = \"good\", address = \"{}\" }}]\n",
            good.addr
        )
    };
    let cfg = pool("r1", 1)
        + &pool("r0", 0)
        + &listener("retrying", p1, "http", "r1", "")
        + &listener("plain", p0, "http", "r0", "");
    let d = Daemon::start(&dir, &cfg);
    wait_port(addr(p1));
    wait_port(addr(p0));
    for i in 0..10 {
        let (status, _, body) = http_get(addr(p1)).send().expect("get");
        assert_eq!((status, body.as_str()), (200, "good"), "GET {i}");
    }
    let retried = d.status().pool("r1").retries;
    assert!(retried >= 4, "only {retried} retries counted for 10 GETs");
    let post = "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello";
    let statuses: Vec<u16> = (0..6)
        .map(|_| request(addr(p1), post).expect("post").0)
        .collect();
    assert!(statuses.contains(&502), "a POST was retried: {statuses:?}");
    assert!(statuses.contains(&200), "{statuses:?}");
    let plain: Vec<u16> = (0..6)
        .map(|_| http_get(addr(p0)).send().expect("get").0)
        .collect();
    assert!(plain.contains(&502), "retries = 0 still retried: {plain:?}");
}

/// Live traffic that cannot reach a backend marks it down after `passive_failures` in a
/// row, with no active check to notice it: later requests no longer try it (no
/// retry needed, no connect failure counted), and the log says so once.
#[test]
fn passive_failures_take_a_dead_backend_out_of_live_traffic() {
    let good = Backend::http("good");
    let flaky = Backend::http("flaky");
    let dir = TempDir::new("passive");
    let port = free_port();
    let cfg = format!(
        "[[pool]]\nname = \"p\"\nalgorithm = \"round_robin\"\nretries = 1\npassive_failures = 2\n\
         health = {{ check = \"none\" }}\n\
         backends = [{{ name = \"flaky\", address = \"{}\" }}, {{ name = \"good\", address = \"{}\" }}]\n",
        flaky.addr, good.addr
    ) + &listener("web", port, "http", "p", "");
    let d = Daemon::start(&dir, &cfg);
    wait_port(addr(port));
    d.wait_for("both up", Duration::from_secs(5), |d| {
        d.health("p", "flaky") == "up" && d.health("p", "good") == "up"
    });
    let bodies: Vec<String> = (0..4)
        .map(|_| {
            http_get(addr(port))
                .headers("Connection: close\r\n")
                .send()
                .expect("get")
                .2
        })
        .collect();
    assert!(bodies.contains(&"flaky".to_string()), "{bodies:?}");
    drop(flaky);
    // Its connection threads notice the stop within their 200 ms read timeout and close
    // the keep-alive connections tandem pooled to it.
    std::thread::sleep(Duration::from_millis(500));
    let t0 = Instant::now();
    for i in 0..8 {
        let (status, _, body) = http_get(addr(port)).send().expect("get");
        assert_eq!((status, body.as_str()), (200, "good"), "request {i}");
    }
    let st = d.status();
    let b = st.backend("p", "flaky");
    assert_eq!(b.health, "down", "{b:?}");
    assert!(b.reason.contains("live traffic"), "{b:?}");
    let failures = b.connect_failures;
    assert_eq!(failures, 2, "tried again after it was marked down: {b:?}");
    for _ in 0..6 {
        assert_eq!(http_get(addr(port)).send().expect("get").2, "good");
    }
    let b2 = d.status();
    assert_eq!(
        b2.backend("p", "flaky").connect_failures,
        2,
        "a down backend is not tried"
    );
    let log = d.log_text();
    assert_eq!(
        log.matches("backend down (passive)").count(),
        1,
        "one log line for the transition:\n{log}"
    );
    eprintln!("passive detection within {:?}", t0.elapsed());
}

// ---------------------------------------------------------------- udp ---

/// A UDP listener tracks at most `max_flows` client flows: a client beyond that is
/// dropped and counted until a flow expires (idle_timeout), then it is served.
#[test]
fn udp_max_flows_bounds_the_flow_table_and_frees_slots_on_expiry() {
    let backend = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let baddr = backend.local_addr().expect("addr");
    backend
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let echo = std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while !stop2.load(Ordering::Relaxed) {
            if let Ok((n, from)) = backend.recv_from(&mut buf) {
                let _ = backend.send_to(&buf[..n], from);
            }
        }
    });
    let dir = TempDir::new("udpflows");
    let port = free_udp_port();
    let cfg = format!(
        "[[pool]]\nname = \"u\"\nhealth = {{ check = \"none\" }}\nbackends = [{{ address = \"{baddr}\" }}]\n"
    ) + &listener("u", port, "udp", "u", "max_flows = 2\nidle_timeout = \"1s\"");
    let d = Daemon::start(&dir, &cfg);
    let clients: Vec<UdpSocket> = (0..3)
        .map(|_| {
            let c = UdpSocket::bind("127.0.0.1:0").expect("bind");
            c.set_read_timeout(Some(Duration::from_millis(500)))
                .expect("t");
            c
        })
        .collect();
    let ask = |c: &UdpSocket, msg: &str| -> bool {
        let _ = c.send_to(msg.as_bytes(), addr(port));
        let mut buf = [0u8; 64];
        matches!(c.recv_from(&mut buf), Ok((n, _)) if &buf[..n] == msg.as_bytes())
    };
    // The listener may take a moment to bind.
    let t0 = Instant::now();
    while !ask(&clients[0], "a0") && t0.elapsed() < Duration::from_secs(5) {}
    assert!(ask(&clients[1], "b0"), "second flow");
    let before = d.status().listener("u").dropped;
    assert!(
        !ask(&clients[2], "c0"),
        "a third flow was let in with max_flows = 2"
    );
    assert!(
        ask(&clients[0], "a1") && ask(&clients[1], "b1"),
        "the two flows keep working"
    );
    assert!(
        d.status().listener("u").dropped > before,
        "the refused datagram is counted"
    );
    // Flows idle for idle_timeout expire; the third client gets a slot.
    std::thread::sleep(Duration::from_millis(2500));
    assert!(ask(&clients[2], "c1"), "served once a slot was free");
    stop.store(true, Ordering::Relaxed);
    let _ = echo.join();
}

// ------------------------------------------------------------- splice ---

/// `splice = "auto"` moves a bulk transfer kernel-side (counted in `spliced_bytes`),
/// byte-exact; a short exchange and `splice = "never"` stay on the copy path.
#[test]
fn splice_auto_switches_on_a_bulk_transfer_and_never_does_not() {
    let sink = Backend::start("sink", Mode::Echo);
    let dir = TempDir::new("splice");
    let (pa, pn) = (free_port(), free_port());
    let cfg = format!(
        "[[pool]]\nname = \"t\"\nhealth = {{ check = \"none\" }}\nbackends = [{{ address = \"{}\" }}]\n",
        sink.addr
    ) + &listener("auto", pa, "tcp", "t", "splice = \"auto\"")
        + &listener("never", pn, "tcp", "t", "splice = \"never\"");
    let d = Daemon::start(&dir, &cfg);
    wait_port(addr(pa));
    wait_port(addr(pn));
    let through = |port: u16, len: usize| {
        let mut s = TcpStream::connect(addr(port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let mut w = s.try_clone().expect("clone");
        let sent = data.clone();
        let writer = std::thread::spawn(move || {
            w.write_all(&sent).expect("send");
            w.shutdown(std::net::Shutdown::Write).expect("half close");
        });
        let mut back = Vec::with_capacity(len);
        s.read_to_end(&mut back).expect("echo");
        writer.join().expect("writer");
        assert!(
            back == data,
            "{len} bytes through port {port}: got {}",
            back.len()
        );
    };
    through(pa, 100);
    let short = d.status().listener("auto").spliced_bytes;
    assert_eq!(short, 0, "a 100-byte exchange was spliced");
    let len = 16 * 1024 * 1024;
    through(pa, len);
    through(pn, len);
    let auto = d.status().listener("auto").spliced_bytes;
    let never = d.status().listener("never").spliced_bytes;
    eprintln!("auto: {auto} of {} bytes spliced; never: {never}", 2 * len);
    assert!(
        auto > len as u64,
        "auto spliced only {auto} of {} bytes",
        2 * len
    );
    assert_eq!(never, 0);
}
