//! Active health checks: one task per backend probes it every `interval`
//! (±10% jitter so checks of many backends never synchronise), counts
//! consecutive results, and flips the backend's health after `rise`
//! successes or `fall` failures. The very first probe decides at once, so a
//! dead backend is out of rotation one probe after start-up, not `fall`
//! probes later. Passive marking (pool.rs) resets the rise count.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::config::{HealthCheck, HealthConfig};
use crate::pool::BackendState;

/// How long a backend marked down by passive checks stays down when the
/// pool has no active check to bring it back.
pub const PASSIVE_COOLDOWN: Duration = Duration::from_secs(10);

/// Outcome of one probe: Ok, or a short reason an operator can act on.
pub type ProbeResult = Result<(), String>;

/// Starts the reason of a probe that could not be made because this host is out of
/// descriptors or buffers: it judges nothing, so the rise/fall counters skip it.
pub const NOT_PROBED: &str = "not probed (local shortage): ";

/// Rise/fall bookkeeping, kept pure so it can be tested without sockets.
#[derive(Debug, Clone, Default)]
pub struct Counter {
    ok_streak: u32,
    fail_streak: u32,
    probes: u64,
}

impl Counter {
    /// Feeds one result; returns `Some(new_health)` when health must change.
    pub fn feed(&mut self, currently_up: bool, ok: bool, rise: u32, fall: u32) -> Option<bool> {
        let first = self.probes == 0;
        self.probes += 1;
        if ok {
            self.ok_streak += 1;
            self.fail_streak = 0;
            (!currently_up && (first || self.ok_streak >= rise)).then_some(true)
        } else {
            self.fail_streak += 1;
            self.ok_streak = 0;
            (currently_up && (first || self.fail_streak >= fall)).then_some(false)
        }
    }

    pub fn reset_rise(&mut self) {
        self.ok_streak = 0;
    }
}

/// Spawns the checker for one backend; it stops when `cancel` fires.
pub fn spawn(
    pool: String,
    name: String,
    addr: SocketAddr,
    cfg: HealthConfig,
    state: Arc<BackendState>,
    cancel: CancellationToken,
) {
    tokio::spawn(async move {
        tokio::select! {
            _ = cancel.cancelled() => {}
            _ = run(&pool, &name, addr, &cfg, &state) => {}
        }
    });
}

fn jittered(interval: Duration, seed: &mut u64) -> Duration {
    // xorshift: cheap, and per-task seeds keep backends out of phase.
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    let span = interval.as_micros() as u64 / 5; // ±10%
    if span == 0 {
        return interval;
    }
    let off = *seed % span;
    interval - Duration::from_micros(span / 2) + Duration::from_micros(off)
}

async fn run(pool: &str, name: &str, addr: SocketAddr, cfg: &HealthConfig, state: &BackendState) {
    let mut seed = (addr.port() as u64) << 32
        ^ Instant::now().elapsed().as_nanos() as u64
        ^ 0x9e37_79b9_7f4a_7c15;
    seed |= 1;
    if matches!(cfg.check, HealthCheck::None) {
        return passive_only(pool, name, addr, state).await;
    }
    let target = SocketAddr::new(addr.ip(), cfg.port.unwrap_or(addr.port()));
    // Built once: the CA file is read when the checker starts (and again
    // after a reload restarts it), not on every probe.
    let tls = match probe_tls(&cfg.check, addr.ip()) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(pool, backend = name, error = %e, "https health check cannot be set up");
            None
        }
    };
    let mut counter = Counter::default();
    // Inside a run of probes skipped for a local shortage (logged once per run).
    let mut short = false;
    // First probe soon but not all at the same instant.
    tokio::time::sleep(jittered(Duration::from_millis(50), &mut seed)).await;
    loop {
        if state.take_passive_down() {
            counter.reset_rise();
        }
        let result = probe_with(&cfg.check, target, cfg.timeout, tls.as_ref()).await;
        if let Err(e) = &result {
            if e.starts_with(NOT_PROBED) {
                if !short {
                    tracing::warn!(pool, backend = name, reason = %e, "health check skipped: this host is out of resources; the backend keeps its state");
                }
                short = true;
                tokio::time::sleep(jittered(cfg.interval, &mut seed)).await;
                continue;
            }
        }
        short = false;
        let text = match &result {
            Ok(()) => "ok".to_string(),
            Err(e) => e.clone(),
        };
        state.set_last_result(&text);
        if result.is_ok() {
            state
                .checks_ok
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        } else {
            state
                .checks_failed
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        let up = state.is_healthy();
        if let Some(new) = counter.feed(up, result.is_ok(), cfg.rise, cfg.fall) {
            let reason = if new {
                format!("health check passed ({text})")
            } else {
                format!("health check failed: {text}")
            };
            if state.set_healthy(new, &reason) {
                if new {
                    tracing::info!(pool, backend = name, address = %addr, state = "up", reason = %reason, "backend up");
                } else {
                    tracing::warn!(pool, backend = name, address = %addr, state = "down", reason = %reason, "backend down");
                }
            }
        }
        tokio::time::sleep(jittered(cfg.interval, &mut seed)).await;
    }
}

/// Without active checks a passively-failed backend gets another chance
/// after a cooldown; otherwise it would stay out forever.
async fn passive_only(pool: &str, name: &str, addr: SocketAddr, state: &BackendState) {
    state.set_last_result("no active check");
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if state.is_healthy() {
            continue;
        }
        state.take_passive_down();
        tokio::time::sleep(PASSIVE_COOLDOWN).await;
        if state.set_healthy(true, "passive cooldown elapsed") {
            tracing::info!(pool, backend = name, address = %addr, state = "up", reason = "passive cooldown elapsed", "backend up");
        }
    }
}

/// The TLS side of an `https` check, built once per checker.
pub type ProbeTls = (
    Arc<rustls::ClientConfig>,
    rustls_pki_types::ServerName<'static>,
);

/// Builds the client config of an `https` check for a backend at `ip`.
pub fn probe_tls(check: &HealthCheck, ip: std::net::IpAddr) -> Result<Option<ProbeTls>, String> {
    let HealthCheck::Http { tls: Some(t), .. } = check else {
        return Ok(None);
    };
    let u = crate::dataplane::l7::upstream::upstream_tls(t);
    let cfg =
        crate::dataplane::tls::client_config(&u, &[b"http/1.1"]).map_err(|e| e.to_string())?;
    let name = crate::dataplane::tls::server_name(&u, ip).map_err(|e| e.to_string())?;
    Ok(Some((cfg, name)))
}

/// One probe with an overall timeout.
pub async fn probe(check: &HealthCheck, addr: SocketAddr, timeout: Duration) -> ProbeResult {
    let tls = probe_tls(check, addr.ip())?;
    probe_with(check, addr, timeout, tls.as_ref()).await
}

/// [`probe`] with the TLS settings already built.
pub async fn probe_with(
    check: &HealthCheck,
    addr: SocketAddr,
    timeout: Duration,
    tls: Option<&ProbeTls>,
) -> ProbeResult {
    match tokio::time::timeout(timeout, probe_inner(check, addr, tls)).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "timeout after {}",
            crate::config::duration::format(timeout)
        )),
    }
}

async fn probe_inner(check: &HealthCheck, addr: SocketAddr, tls: Option<&ProbeTls>) -> ProbeResult {
    let stream = TcpStream::connect(addr).await.map_err(|e| {
        if crate::net::local_shortage(&e) {
            format!("{NOT_PROBED}{e}")
        } else {
            format!("connect: {}", short_io(&e))
        }
    })?;
    match check {
        HealthCheck::None | HealthCheck::Tcp => Ok(()),
        HealthCheck::Http {
            path,
            host,
            expect_status,
            expect_body,
            ..
        } => {
            let host = host.clone().unwrap_or_else(|| addr.to_string());
            let req = format!(
                "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: tandem-health/{}\r\nAccept: */*\r\nConnection: close\r\n\r\n",
                env!("CARGO_PKG_VERSION")
            );
            let raw = match tls {
                None => exchange(stream, req.as_bytes()).await?,
                Some((cfg, name)) => {
                    let s = tokio_rustls::TlsConnector::from(cfg.clone())
                        .connect(name.clone(), stream)
                        .await
                        .map_err(|e| format!("TLS: {e}"))?;
                    exchange(s, req.as_bytes()).await?
                }
            };
            check_http_response(&raw, expect_status, expect_body.as_deref())
        }
    }
}

/// Sends the request and reads the response, bounded, stopping as soon as
/// it is complete so a backend that ignores `Connection: close` is not a
/// timeout.
async fn exchange<S>(mut stream: S, req: &[u8]) -> Result<Vec<u8>, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    stream
        .write_all(req)
        .await
        .map_err(|e| format!("send: {}", short_io(&e)))?;
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    while buf.len() < 64 * 1024 && !response_complete(&buf) {
        let n = match stream.read(&mut chunk).await {
            Ok(n) => n,
            // A TLS peer that closes without close_notify after a complete
            // response is common; judge what arrived.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => 0,
            Err(e) => return Err(format!("read: {}", short_io(&e))),
        };
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(buf)
}

fn short_io(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connection refused".into(),
        std::io::ErrorKind::ConnectionReset => "connection reset".into(),
        _ => e.to_string(),
    }
}

/// True once the head and a Content-Length-delimited body have arrived
/// (without a length the body runs to EOF).
fn response_complete(raw: &[u8]) -> bool {
    let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&raw[..end]);
    let len = head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse::<usize>().ok())
            .flatten()
    });
    match len {
        Some(len) => raw.len() >= end + 4 + len,
        None => false,
    }
}

/// Judges a raw HTTP/1.x response against the expected statuses and body.
pub fn check_http_response(raw: &[u8], expect: &[u16], body_needle: Option<&str>) -> ProbeResult {
    let head_end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| "incomplete HTTP response".to_string())?;
    let head =
        std::str::from_utf8(&raw[..head_end]).map_err(|_| "non-UTF-8 headers".to_string())?;
    let status_line = head.lines().next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") {
        return Err(format!("not an HTTP response: {:.40}", status_line));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line: {:.40}", status_line))?;
    if !expect.contains(&status) {
        return Err(format!("status {status}"));
    }
    if let Some(needle) = body_needle {
        let body = &raw[head_end + 4..];
        if !body
            .windows(needle.len().max(1))
            .any(|w| w == needle.as_bytes())
        {
            return Err(format!("body does not contain {needle:?}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_probe_decides_then_rise_and_fall_apply() {
        let mut c = Counter::default();
        // Optimistic start, first probe fails: down at once.
        assert_eq!(c.feed(true, false, 2, 3), Some(false));
        // Needs rise=2 successes to come back.
        assert_eq!(c.feed(false, true, 2, 3), None);
        assert_eq!(c.feed(false, true, 2, 3), Some(true));
        // Needs fall=3 failures to go down.
        assert_eq!(c.feed(true, false, 2, 3), None);
        assert_eq!(c.feed(true, false, 2, 3), None);
        assert_eq!(c.feed(true, false, 2, 3), Some(false));
        // A success in between resets the fail streak.
        let mut c = Counter::default();
        assert_eq!(c.feed(true, true, 2, 2), None);
        assert_eq!(c.feed(true, false, 2, 2), None);
        assert_eq!(c.feed(true, true, 2, 2), None);
        assert_eq!(c.feed(true, false, 2, 2), None);
        assert_eq!(c.feed(true, false, 2, 2), Some(false));
    }

    #[test]
    fn reset_rise_restarts_the_count() {
        let mut c = Counter::default();
        c.feed(true, false, 3, 1);
        c.feed(false, true, 3, 1);
        c.feed(false, true, 3, 1);
        c.reset_rise();
        assert_eq!(c.feed(false, true, 3, 1), None);
        assert_eq!(c.feed(false, true, 3, 1), None);
        assert_eq!(c.feed(false, true, 3, 1), Some(true));
    }

    #[test]
    fn http_response_judging() {
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\nhealthy";
        assert_eq!(check_http_response(ok, &[200], None), Ok(()));
        assert_eq!(check_http_response(ok, &[200], Some("health")), Ok(()));
        assert_eq!(
            check_http_response(ok, &[200], Some("sick")),
            Err("body does not contain \"sick\"".into())
        );
        assert_eq!(
            check_http_response(b"HTTP/1.0 503 Unavailable\r\n\r\n", &[200, 204], None),
            Err("status 503".into())
        );
        assert!(check_http_response(b"SSH-2.0-OpenSSH\r\n\r\n", &[200], None).is_err());
        assert!(check_http_response(b"HTTP/1.1 200 OK\r\n", &[200], None).is_err());
        assert!(check_http_response(b"HTTP/1.1 abc OK\r\n\r\n", &[200], None).is_err());
    }

    #[test]
    fn completeness_follows_content_length() {
        assert!(!response_complete(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\no"
        ));
        assert!(response_complete(
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
        ));
        assert!(!response_complete(b"HTTP/1.1 200 OK\r\n\r\nstream"));
        assert!(!response_complete(b"HTTP/1.1 200 OK\r\n"));
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        let mut seed = 12345;
        let base = Duration::from_secs(2);
        for _ in 0..1000 {
            let d = jittered(base, &mut seed);
            assert!(
                d >= Duration::from_millis(1800) && d <= Duration::from_millis(2200),
                "{d:?}"
            );
        }
    }

    #[tokio::test]
    async fn probes_real_sockets() {
        use tokio::net::TcpListener;
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = l.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                    .await;
            }
        });
        let t = Duration::from_secs(1);
        assert_eq!(probe(&HealthCheck::Tcp, addr, t).await, Ok(()));
        let http = HealthCheck::Http {
            path: "/health".into(),
            host: None,
            expect_status: vec![200],
            expect_body: Some("ok".into()),
            tls: None,
        };
        assert_eq!(probe(&http, addr, t).await, Ok(()));
        // A closed port is refused.
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr")
        };
        let r = probe(&HealthCheck::Tcp, closed, t).await;
        assert_eq!(r, Err("connect: connection refused".into()));
    }
}
