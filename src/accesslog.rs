//! Access logs: one line per HTTP request or per L4 connection, as JSON,
//! Common Log Format or an operator's template, written to a file (or the
//! journal) without ever blocking the data plane.
//!
//! A data-plane thread formats the line and hands it to the file's writer
//! thread through a bounded channel; when the writer falls behind (a slow
//! disk), lines are dropped and counted rather than stalling requests.
//! SIGUSR1 and every reload make each writer reopen its file, which is what
//! logrotate's `postrotate` needs.

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use crate::config::accesslog::{check_template, AccessLogConfig, LogFormat, FIELDS};

/// Lines waiting for a writer; beyond this they are dropped.
const QUEUE: usize = 16 * 1024;

/// One thing to log: a request (L7) or a connection (L4).
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    pub time: SystemTime,
    pub listener: &'a str,
    pub protocol: &'a str,
    pub client: SocketAddr,
    /// "-" on L4 lines.
    pub method: &'a str,
    pub path: &'a str,
    /// 0 on L4 lines.
    pub status: u16,
    pub route: &'a str,
    pub backend: &'a str,
    pub duration: Duration,
    /// Bytes from and to the client; None when not measured.
    pub bytes_in: Option<u64>,
    pub bytes_out: Option<u64>,
    /// How an L4 connection ended ("closed", "no_backend", "idle_timeout"...); "-" for L7.
    pub reason: &'a str,
}

fn civil(secs: i64) -> (i64, u32, u32, u32, u32, u32) {
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400);
    // Days since 1970-01-01 to a proleptic Gregorian date (era arithmetic
    // over 400-year cycles of 146097 days).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        y,
        m,
        d,
        (tod / 3600) as u32,
        (tod % 3600 / 60) as u32,
        (tod % 60) as u32,
    )
}

fn unix(t: SystemTime) -> (i64, u32) {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (d.as_secs() as i64, d.subsec_millis()),
        Err(_) => (0, 0),
    }
}

/// RFC 3339 in UTC with milliseconds: `2026-12-04T01:52:06.123Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let (s, ms) = unix(t);
    let (y, mo, d, h, mi, se) = civil(s);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{se:02}.{ms:03}Z")
}

/// Common Log Format time: `04/Dec/2026:01:52:06 +0000`.
pub fn clf_time(t: SystemTime) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (s, _) = unix(t);
    let (y, mo, d, h, mi, se) = civil(s);
    format!(
        "{d:02}/{}/{y:04}:{h:02}:{mi:02}:{se:02} +0000",
        MONTHS[(mo as usize - 1) % 12]
    )
}

fn field(e: &Entry<'_>, name: &str) -> String {
    let opt = |v: Option<u64>| v.map_or_else(|| "-".to_string(), |n| n.to_string());
    match name {
        "time" => rfc3339(e.time),
        "time_unix" => format!(
            "{:.3}",
            e.time
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0)
        ),
        "listener" => e.listener.to_string(),
        "protocol" => e.protocol.to_string(),
        "client" => e.client.to_string(),
        "client_ip" => e.client.ip().to_canonical().to_string(),
        "client_port" => e.client.port().to_string(),
        "method" => e.method.to_string(),
        "path" => e.path.to_string(),
        "status" => {
            if e.status == 0 {
                "-".into()
            } else {
                e.status.to_string()
            }
        }
        "route" => e.route.to_string(),
        "backend" => e.backend.to_string(),
        "duration_ms" => format!("{:.3}", e.duration.as_secs_f64() * 1000.0),
        "bytes_in" => opt(e.bytes_in),
        "bytes_out" => opt(e.bytes_out),
        "reason" => e.reason.to_string(),
        _ => String::new(),
    }
}

/// Request paths may carry anything a client sent: keep a line one line.
fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// The line for `e` (no trailing newline). `Tracing` gives the JSON form.
pub fn format(f: &LogFormat, e: &Entry<'_>) -> String {
    match f {
        LogFormat::Json | LogFormat::Tracing => {
            let mut m = serde_json::Map::new();
            for name in FIELDS {
                if *name == "time_unix" {
                    continue;
                }
                let v = field(e, name);
                let v = match *name {
                    "status" | "bytes_in" | "bytes_out" | "client_port" => v
                        .parse::<u64>()
                        .map(serde_json::Value::from)
                        .unwrap_or(serde_json::Value::Null),
                    "duration_ms" => v
                        .parse::<f64>()
                        .ok()
                        .and_then(serde_json::Number::from_f64)
                        .map(serde_json::Value::Number)
                        .unwrap_or(serde_json::Value::Null),
                    _ => serde_json::Value::String(v),
                };
                m.insert((*name).to_string(), v);
            }
            serde_json::Value::Object(m).to_string()
        }
        LogFormat::Common => {
            let request = if e.method == "-" {
                "-".to_string()
            } else {
                format!("{} {} HTTP/1.1", e.method, sanitize(e.path))
            };
            format!(
                "{} - - [{}] \"{}\" {} {}",
                e.client.ip().to_canonical(),
                clf_time(e.time),
                request.replace('"', "%22"),
                field(e, "status"),
                field(e, "bytes_out"),
            )
        }
        LogFormat::Template(t) => {
            let mut out = String::with_capacity(t.len() + 64);
            let mut rest = t.as_str();
            while let Some(i) = rest.find('{') {
                out.push_str(&rest[..i]);
                let after = &rest[i + 1..];
                match after.find('}') {
                    Some(j) => {
                        out.push_str(&sanitize(&field(e, &after[..j])));
                        rest = &after[j + 1..];
                    }
                    None => {
                        out.push_str(&rest[i..]);
                        rest = "";
                    }
                }
            }
            out.push_str(rest);
            out
        }
    }
}

/// Bumped by SIGUSR1 and reloads: every writer reopens its file.
static REOPEN: AtomicU64 = AtomicU64::new(0);
/// Lines dropped because a writer was behind.
pub static DROPPED: AtomicU64 = AtomicU64::new(0);

pub fn reopen_all() {
    REOPEN.fetch_add(1, Ordering::Relaxed);
}

/// A handle on one file's writer thread; cheap to clone.
#[derive(Debug, Clone)]
pub struct Writer {
    tx: SyncSender<String>,
}

fn registry() -> &'static Mutex<HashMap<PathBuf, Writer>> {
    static R: OnceLock<Mutex<HashMap<PathBuf, Writer>>> = OnceLock::new();
    R.get_or_init(Default::default)
}

impl Writer {
    /// The writer for `path`, started on first use and shared by every
    /// listener and config generation that logs there.
    pub fn for_path(path: &Path) -> Writer {
        let mut r = registry().lock().unwrap_or_else(|e| e.into_inner());
        if let Some(w) = r.get(path) {
            return w.clone();
        }
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
        let p = path.to_path_buf();
        let spawned = std::thread::Builder::new()
            .name("tandem-accesslog".into())
            .spawn(move || write_loop(&p, rx));
        if let Err(e) = spawned {
            tracing::error!(path = %path.display(), error = %e, "cannot start the access log writer");
        }
        let w = Writer { tx };
        r.insert(path.to_path_buf(), w.clone());
        w
    }

    /// Queues a line; never waits.
    pub fn send(&self, line: String) {
        match self.tx.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                DROPPED.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn open(path: &Path) -> Option<std::io::BufWriter<std::fs::File>> {
    match std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        Ok(f) => Some(std::io::BufWriter::with_capacity(64 * 1024, f)),
        Err(e) => {
            tracing::error!(path = %path.display(), error = %e, "cannot open the access log; lines are dropped until it can be reopened (SIGUSR1 or reload)");
            None
        }
    }
}

fn write_loop(path: &Path, rx: Receiver<String>) {
    let mut seen = REOPEN.load(Ordering::Relaxed);
    let mut out = open(path);
    loop {
        let r = rx.recv_timeout(Duration::from_millis(200));
        let now = REOPEN.load(Ordering::Relaxed);
        if now != seen {
            seen = now;
            if let Some(mut o) = out.take() {
                let _ = o.flush();
            }
            out = open(path);
        }
        match r {
            Ok(line) => {
                if let Some(o) = out.as_mut() {
                    let _ = o.write_all(line.as_bytes());
                    let _ = o.write_all(b"\n");
                    // Drain what is queued, then flush once.
                    while let Ok(l) = rx.try_recv() {
                        let _ = o.write_all(l.as_bytes());
                        let _ = o.write_all(b"\n");
                    }
                    let _ = o.flush();
                } else {
                    DROPPED.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// A listener's access log, ready to take entries.
#[derive(Debug, Clone)]
pub struct AccessLog {
    format: LogFormat,
    writer: Option<Writer>,
}

impl AccessLog {
    pub fn new(cfg: &AccessLogConfig) -> AccessLog {
        AccessLog {
            format: cfg.format.clone(),
            writer: cfg.path.as_deref().map(Writer::for_path),
        }
    }

    pub fn log(&self, e: &Entry<'_>) {
        match (&self.format, &self.writer) {
            (LogFormat::Tracing, None) => tracing::info!(
                target: "tandem::access",
                listener = %e.listener,
                client = %e.client,
                method = %e.method,
                path = %e.path,
                status = e.status,
                route = e.route,
                backend = e.backend,
                ms = e.duration.as_secs_f64() * 1000.0,
                bytes_in = e.bytes_in,
                bytes_out = e.bytes_out,
                reason = e.reason,
                "request"
            ),
            (f, None) => {
                tracing::info!(target: "tandem::access", "{}", format(f, e));
            }
            (f, Some(w)) => w.send(format(f, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry<'static> {
        Entry {
            // 2026-12-04T01:52:06.250Z
            time: UNIX_EPOCH + Duration::from_millis(1_796_349_126_250),
            listener: "web",
            protocol: "http",
            client: "[::ffff:192.0.2.7]:5555".parse().expect("addr"),
            method: "GET",
            path: "/a\"b\nc",
            status: 200,
            route: "default",
            backend: "w1",
            duration: Duration::from_micros(1500),
            bytes_in: None,
            bytes_out: Some(1234),
            reason: "-",
        }
    }

    #[test]
    fn calendar_conversion() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(entry().time), "2026-12-04T01:52:06.250Z");
        // Leap day and end of a century.
        let t = |s: u64| UNIX_EPOCH + Duration::from_secs(s);
        assert_eq!(rfc3339(t(951_782_400)), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339(t(4_107_542_399)), "2100-02-28T23:59:59.000Z");
        assert_eq!(clf_time(entry().time), "04/Dec/2026:01:52:06 +0000");
    }

    #[test]
    fn common_log_format() {
        assert_eq!(
            format(&LogFormat::Common, &entry()),
            "192.0.2.7 - - [04/Dec/2026:01:52:06 +0000] \"GET /a%22b?c HTTP/1.1\" 200 1234"
        );
        let mut l4 = entry();
        (l4.method, l4.path, l4.status, l4.bytes_out) = ("-", "-", 0, None);
        assert_eq!(
            format(&LogFormat::Common, &l4),
            "192.0.2.7 - - [04/Dec/2026:01:52:06 +0000] \"-\" - -"
        );
    }

    #[test]
    fn json_lines_parse_back() {
        let line = format(&LogFormat::Json, &entry());
        let v: serde_json::Value = serde_json::from_str(&line).expect("json");
        assert_eq!(v["status"], 200);
        assert_eq!(v["client_ip"], "192.0.2.7");
        assert_eq!(v["path"], "/a\"b\nc");
        assert_eq!(v["bytes_in"], serde_json::Value::Null);
        assert_eq!(v["bytes_out"], 1234);
        assert_eq!(v["duration_ms"], 1.5);
        assert_eq!(v["time"], "2026-12-04T01:52:06.250Z");
        assert!(!line.contains('\n'));
    }

    #[test]
    fn templates() {
        let f = LogFormat::Template(
            "{client_ip} {method} {path} -> {backend} {status} {duration_ms}ms {bytes_in}".into(),
        );
        assert_eq!(
            format(&f, &entry()),
            "192.0.2.7 GET /a\"b?c -> w1 200 1.500ms -"
        );
        assert!(check_template("{client} {status}").is_ok());
        assert!(check_template("plain text").is_ok());
        let e = check_template("{client} {nope}").expect_err("unknown");
        assert!(e.contains("{nope}") && e.contains("client_ip"), "{e}");
        assert!(check_template("{client").is_err());
    }

    #[test]
    fn writer_appends_and_reopens_after_rotation() {
        let dir = std::env::temp_dir().join(format!("tandem-alog-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("access.log");
        let w = Writer::for_path(&path);
        w.send("one".into());
        let wait = |p: &Path, want: &str| {
            for _ in 0..100 {
                if std::fs::read_to_string(p).is_ok_and(|s| s.contains(want)) {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            false
        };
        assert!(wait(&path, "one\n"));
        // logrotate moves the file, then signals: new lines go to a new file.
        let rotated = dir.join("access.log.1");
        std::fs::rename(&path, &rotated).expect("rename");
        reopen_all();
        std::thread::sleep(Duration::from_millis(300));
        w.send("two".into());
        assert!(wait(&path, "two\n"));
        assert!(!std::fs::read_to_string(&rotated)
            .unwrap_or_default()
            .contains("two"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
