//! Operating a live daemon: Prometheus metrics that follow traffic and
//! health (checked by `promtool`), the token-protected TCP admin API, and
//! reloads under load with zero failed requests.

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::*;

/// `name{labels}` → value, from one scrape.
fn scrape(metrics: SocketAddr) -> (String, HashMap<String, f64>) {
    let (status, _, body) = http_get(metrics).path("/metrics").send().expect("scrape");
    assert_eq!(status, 200, "{body}");
    let mut m = HashMap::new();
    for line in body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        if let Some((k, v)) = line.rsplit_once(' ') {
            m.insert(k.to_string(), v.parse().expect("sample value"));
        }
    }
    (body, m)
}

/// Sum of the samples of `name` whose labels contain every `needle`.
fn sum(m: &HashMap<String, f64>, name: &str, needles: &[&str]) -> f64 {
    m.iter()
        .filter(|(k, _)| k.split('{').next() == Some(name) && needles.iter().all(|n| k.contains(n)))
        .map(|(_, v)| v)
        .sum()
}

fn promtool(text: &str) {
    if !tool("/usr/bin/promtool", "prometheus") {
        return;
    }
    let mut child = Command::new("/usr/bin/promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool");
    std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), text.as_bytes())
        .expect("feed promtool");
    let out = child.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

const TOKEN: &str = "test-token-0123456789abcdef";

#[test]
fn metrics_follow_traffic_and_health_and_pass_promtool() {
    let dir = TempDir::new("metrics");
    let (w1, w2) = (Backend::http("w1"), Backend::http("w2"));
    let (http, tcp, mport, aport) = (free_port(), free_port(), free_port(), free_port());
    // [global] keys first, then the sections.
    let cfg = Config::new()
        .raw(&format!(
            "metrics_listen = \"127.0.0.1:{mport}\"\nadmin_listen = \"127.0.0.1:{aport}\"\nadmin_token = \"{TOKEN}\""
        ))
        .pool(
            Pool::new("web")
                .health(r#"{ check = "tcp", interval = "100ms", timeout = "50ms", rise = 1, fall = 1 }"#)
                .backends(&[&w1, &w2]),
        )
        .listener(
            Listener::bare("front", &format!("127.0.0.1:{http}"))
                .protocol("http")
                .set(
                    "routes",
                    r#"[{ match = { path_prefix = "/gone" }, respond = { status = 404, body = "no" } }, { pool = "web" }]"#,
                ),
        )
        .listener(Listener::local("l4", tcp, "web"))
        .render();
    let d = Daemon::start(&dir, &cfg);
    d.wait_for("both up", Duration::from_secs(3), |d| {
        d.health("web", "w1") == "up" && d.health("web", "w2") == "up"
    });
    let m = addr(mport);
    let (text0, m0) = scrape(m);
    promtool(&text0);
    assert_eq!(sum(&m0, "tandem_backend_up", &["backend=\"w2\""]), 1.0);
    assert_eq!(sum(&m0, "tandem_pool_backends_healthy", &[]), 2.0);

    for i in 0..20 {
        let (s, _, _) = http_get(addr(http))
            .path(&format!("/page{i}"))
            .send()
            .expect("http");
        assert_eq!(s, 200);
    }
    for _ in 0..3 {
        let (s, _, _) = http_get(addr(http)).path("/gone").send().expect("http");
        assert_eq!(s, 404);
    }
    for _ in 0..5 {
        let (s, _, _) = http_get(addr(tcp)).send().expect("tcp");
        assert_eq!(s, 200);
    }
    let (_, m1) = scrape(m);
    let delta = |name: &str, needles: &[&str]| sum(&m1, name, needles) - sum(&m0, name, needles);
    assert_eq!(
        delta(
            "tandem_route_requests_total",
            &["listener=\"front\"", "code=\"2xx\""]
        ),
        20.0
    );
    assert_eq!(
        delta(
            "tandem_route_requests_total",
            &["listener=\"front\"", "code=\"4xx\""]
        ),
        3.0
    );
    assert_eq!(
        delta(
            "tandem_http_request_duration_seconds_count",
            &["listener=\"front\""]
        ),
        23.0
    );
    assert_eq!(
        delta("tandem_listener_connections_total", &["listener=\"front\""]),
        23.0
    );
    assert_eq!(
        delta("tandem_listener_connections_total", &["listener=\"l4\""]),
        5.0
    );
    assert_eq!(
        delta("tandem_backend_connections_total", &["pool=\"web\""]),
        25.0
    );
    assert!(delta("tandem_listener_received_bytes_total", &["listener=\"l4\""]) > 0.0);
    assert!(delta("tandem_backend_sent_bytes_total", &[]) > 0.0);
    assert!(delta("tandem_backend_latency_seconds_count", &[]) >= 25.0);
    // The +Inf bucket always equals the count.
    assert_eq!(
        sum(
            &m1,
            "tandem_http_request_duration_seconds_bucket",
            &["le=\"+Inf\""]
        ),
        sum(&m1, "tandem_http_request_duration_seconds_count", &[])
    );
    assert!(
        sum(
            &m1,
            "tandem_backend_health_checks_total",
            &["result=\"ok\""]
        ) > 0.0
    );

    // A backend dies: its gauge, the pool's and the failed checks follow.
    w2.stop_now();
    drop(w2);
    let mut m2 = HashMap::new();
    wait_for("w2 down in /metrics", Duration::from_secs(3), || {
        m2 = scrape(m).1;
        sum(&m2, "tandem_backend_up", &["backend=\"w2\""]) == 0.0
    });
    assert_eq!(sum(&m2, "tandem_pool_backends_healthy", &[]), 1.0);
    assert!(
        sum(
            &m2,
            "tandem_backend_health_checks_total",
            &["backend=\"w2\"", "result=\"fail\""]
        ) >= 1.0
    );
    // A runtime drain shows as the admin state.
    let out = Command::new(BIN)
        .args(["backend", "drain", "web/w1", "-s"])
        .arg(&d.socket)
        .output()
        .expect("drain");
    assert!(out.status.success());
    let (text3, m3) = scrape(m);
    assert_eq!(
        sum(
            &m3,
            "tandem_backend_admin_state",
            &["backend=\"w1\"", "state=\"draining\""]
        ),
        1.0
    );
    promtool(&text3);

    // The status page and JSON are on the metrics listener too.
    let (s, h, page) = http_get(m).send().expect("page");
    assert_eq!(s, 200);
    assert!(header(&h, "content-type").is_some_and(|v| v.starts_with("text/html")));
    assert!(page.contains("data-backend=\"w1\"") && page.contains(">draining<"));
    let (s, _, js) = http_get(m).path("/status.json").send().expect("json");
    assert_eq!(s, 200);
    let v: tandem::admin::status::Status = serde_json::from_str(&js).expect("status json");
    assert_eq!(v.pools[0].healthy, 0, "w1 draining, w2 down: {v:?}");
    // ... but it is read-only: no admin API there.
    let (s, _, _) = http_get(m).path("/v1/status").send().expect("metrics /v1");
    assert_eq!(s, 404);
    let (s, _, _) = request(
        m,
        "POST /v1/reload HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .expect("post");
    assert_eq!(s, 405);

    // The TCP admin API wants the token.
    let a = addr(aport);
    let (s, _, body) = http_get(a).path("/v1/status").send().expect("admin");
    assert_eq!(s, 401, "{body}");
    let (s, _, _) = http_get(a)
        .path("/v1/status")
        .headers("Authorization: Bearer wrong-token-0123456789abc\r\n")
        .send()
        .expect("admin");
    assert_eq!(s, 401);
    let auth = format!("Authorization: Bearer {TOKEN}\r\n");
    let (s, _, body) = http_get(a)
        .path("/v1/status")
        .headers(&auth)
        .send()
        .expect("admin");
    assert_eq!(s, 200);
    assert!(body.contains("\"pools\""), "{body}");
    let (s, _, body) = request(
        a,
        &format!(
            "POST /v1/backends/web/w1/enable HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
        ),
    )
    .expect("enable");
    let body = String::from_utf8_lossy(&body).to_string();
    assert_eq!(s, 200, "{body}");
    let s = d.status();
    assert_eq!(s.backend("web", "w1").admin, "enabled");
}

/// The result of one bounded wrk run.
#[derive(Debug, Default)]
struct WrkResult {
    requests: u64,
    socket_errors: String,
    non_2xx: u64,
    raw: String,
}

fn wrk(target: SocketAddr, secs: u32) -> std::thread::JoinHandle<WrkResult> {
    std::thread::spawn(move || {
        let out = Command::new("/usr/bin/wrk")
            .args(["-t1", "-c16", &format!("-d{secs}s"), "--timeout", "2s"])
            .arg(format!("http://{target}/"))
            .output()
            .expect("wrk");
        let raw = String::from_utf8_lossy(&out.stdout).to_string();
        let mut r = WrkResult::default();
        for line in raw.lines().map(str::trim) {
            if let Some(n) = line
                .split(" requests in")
                .next()
                .filter(|_| line.contains(" requests in"))
            {
                r.requests = n.trim().parse().unwrap_or(0);
            }
            if line.starts_with("Socket errors:") {
                r.socket_errors = line.to_string();
            }
            if let Some(n) = line.strip_prefix("Non-2xx or 3xx responses:") {
                r.non_2xx = n.trim().parse().unwrap_or(u64::MAX);
            }
        }
        r.raw = raw;
        r
    })
}

/// One config of the reload series; `i` varies pools, routes, health
/// checks, algorithms and an extra listener.
fn reload_config(i: usize, http: u16, tcp: u16, extra: u16, webs: &[&Backend]) -> String {
    let algos = [
        "round_robin",
        "least_connections",
        "random_two_choices",
        "weighted_round_robin",
    ];
    // Every config keeps at least two backends; some drop the third.
    let n = if i % 3 == 2 { 2 } else { 3 };
    let weighted = |p: Pool, n: usize| {
        webs[..n].iter().enumerate().fold(p, |p, (k, w)| {
            p.backend_with(
                &w.name,
                &w.addr.to_string(),
                &format!("weight = {}", 1 + (i + k) % 3),
            )
        })
    };
    let interval = 100 + 50 * (i % 4);
    let mut cfg = Config::new()
        .pool(weighted(
            Pool::new("web").algorithm(algos[i % algos.len()]).health(&format!(
                r#"{{ check = "http", path = "/health", interval = "{interval}ms", timeout = "80ms" }}"#
            )),
            n,
        ))
        .pool(weighted(
            Pool::new("alt").health(r#"{ check = "tcp", interval = "200ms", timeout = "100ms" }"#),
            2,
        ))
        .listener(
            Listener::bare("front", &format!("127.0.0.1:{http}"))
                .protocol("http")
                .set(
                    "routes",
                    &format!(
                        r#"[{{ match = {{ path_prefix = "/v{i}/" }}, pool = "alt" }}, {{ match = {{ path_exact = "/r{i}" }}, respond = {{ status = 204 }} }}, {{ pool = "{}" }}]"#,
                        if i % 2 == 0 { "web" } else { "alt" }
                    ),
                ),
        )
        .listener(Listener::local("l4", tcp, "web"));
    if i % 2 == 1 {
        cfg = cfg.listener(Listener::local("extra", extra, "alt"));
    }
    cfg.render()
}

#[test]
fn twenty_reloads_under_load_fail_no_request() {
    if !tool("/usr/bin/wrk", "wrk") {
        return;
    }
    let dir = TempDir::new("reload-load");
    let webs = [
        Backend::http("w1"),
        Backend::http("w2"),
        Backend::http("w3"),
    ];
    let refs: Vec<&Backend> = webs.iter().collect();
    let (http, tcp, extra) = (free_port(), free_port(), free_port());
    let d = Daemon::start(&dir, &reload_config(0, http, tcp, extra, &refs));
    d.wait_for("pool up", Duration::from_secs(3), |d| {
        d.status().pools[0].healthy == 3
    });

    // New connections too, not only wrk's keep-alive ones: one request per
    // connection on both listeners, for the whole run.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let prober = {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        std::thread::spawn(move || {
            let mut errors = Vec::new();
            let t0 = Instant::now();
            while !stop.load(Ordering::Relaxed) && t0.elapsed() < Duration::from_secs(30) {
                for port in [http, tcp] {
                    match http_get(addr(port)).send() {
                        Ok((200, _, _)) => ok.fetch_add(1, Ordering::Relaxed),
                        other => {
                            errors.push(format!("{port}: {other:?}"));
                            failed.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            errors
        })
    };
    let loads = [wrk(addr(http), 10), wrk(addr(tcp), 10)];
    let t0 = Instant::now();
    let mut generation = d.status().generation;
    for i in 1..=20 {
        std::thread::sleep(Duration::from_millis(400));
        let invalid = i == 10;
        if invalid {
            // A route to a pool that does not exist: rejected, nothing changes.
            let bad = reload_config(i, http, tcp, extra, &refs)
                .replace("pool = \"alt\" }, {", "pool = \"nope\" }, {");
            d.write_config(&bad);
        } else {
            d.write_config(&reload_config(i, http, tcp, extra, &refs));
        }
        let out = Command::new(BIN)
            .args(["reload", "-s"])
            .arg(&d.socket)
            .output()
            .expect("tandem reload");
        let msg = String::from_utf8_lossy(&out.stderr).to_string()
            + &String::from_utf8_lossy(&out.stdout);
        let now = d.status().generation;
        if invalid {
            assert!(!out.status.success(), "invalid config accepted: {msg}");
            assert!(msg.contains("nope"), "the error names the problem: {msg}");
            assert_eq!(now, generation, "a rejected reload changes nothing");
        } else {
            assert!(out.status.success(), "reload {i}: {msg}");
            assert_eq!(now, generation + 1, "reload {i} applied");
            generation = now;
        }
    }
    let reload_time = t0.elapsed();
    let results: Vec<WrkResult> = loads.into_iter().map(|h| h.join().expect("wrk")).collect();
    stop.store(true, Ordering::Relaxed);
    let errors = prober.join().expect("prober");
    for (what, r) in ["http", "tcp"].iter().zip(&results) {
        eprintln!(
            "{what}: {} requests through 20 reloads, socket errors: {:?}, non-2xx: {}",
            r.requests, r.socket_errors, r.non_2xx
        );
        assert!(
            r.requests > 500,
            "{what}: wrk did too little work:\n{}",
            r.raw
        );
        assert!(
            r.socket_errors.is_empty(),
            "{what}: {}\n{}",
            r.socket_errors,
            r.raw
        );
        assert_eq!(r.non_2xx, 0, "{what}:\n{}", r.raw);
    }
    eprintln!(
        "new connections: {} ok, {} failed; reloads took {reload_time:?}",
        ok.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed)
    );
    assert!(
        errors.is_empty(),
        "failed requests on new connections: {errors:?}"
    );
    assert!(ok.load(Ordering::Relaxed) > 100);
    // The last config (i = 20: even) has no extra listener: it is gone.
    assert!(std::net::TcpStream::connect(addr(extra)).is_err());
    let s = d.status();
    assert_eq!(s.pools[0].algorithm, "round_robin");
}
