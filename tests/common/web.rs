//! A small HTTP/1.1 backend for the L7 tests, on its own threads, with
//! keep-alive. Behaviour by path:
//! - `/inspect`: the request head it received, as the body;
//! - `/big?n=N`: N bytes of a deterministic pattern (Content-Length);
//! - `/echo`: the request body back (Content-Length bodies);
//! - `/slow?ms=N`: answers after N ms;
//! - `/cache?...`: counts requests per path+query, `max-age=N`, `nostore`,
//!   `cookie`, `vary=Header` set the matching response headers;
//! - `/setcookie?name=N&value=V`: a Set-Cookie;
//! - `/ws`: 101 Switching Protocols, then echoes raw bytes;
//! - `/text?n=N&type=T`: N bytes of repetitive text as `T` (text/plain),
//!   `&encoded` adds Content-Encoding: gzip, `&notransform` Cache-Control: no-transform;
//! - anything else: the backend's name.
//!
//! Every response carries `X-Backend: <name>`. While `broken` is set every
//! request gets a 500.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

pub struct Web {
    pub addr: SocketAddr,
    pub name: String,
    stop: Arc<AtomicBool>,
    pub requests: Arc<AtomicU64>,
    pub connections: Arc<AtomicU64>,
    pub hits: Arc<Mutex<HashMap<String, u64>>>,
    pub broken: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Web {
    pub fn start(name: &str) -> Web {
        Self::start_on(name, 0)
    }

    pub fn start_on(name: &str, port: u16) -> Web {
        let l = TcpListener::bind(("127.0.0.1", port)).expect("web bind");
        l.set_nonblocking(true).expect("nonblocking");
        let addr = l.local_addr().expect("addr");
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(AtomicU64::new(0));
        let connections = Arc::new(AtomicU64::new(0));
        let hits: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
        let broken = Arc::new(AtomicBool::new(false));
        let b2 = broken.clone();
        let (s2, r2, c2, h2, n2) = (
            stop.clone(),
            requests.clone(),
            connections.clone(),
            hits.clone(),
            name.to_string(),
        );
        let thread = std::thread::spawn(move || {
            while !s2.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((s, _)) => {
                        c2.fetch_add(1, Ordering::Relaxed);
                        let (stop, req, hits, name, broken) =
                            (s2.clone(), r2.clone(), h2.clone(), n2.clone(), b2.clone());
                        std::thread::spawn(move || {
                            let _ = serve(s, &name, &stop, &req, &hits, &broken);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        Web {
            addr,
            name: name.to_string(),
            stop,
            requests,
            connections,
            hits,
            broken,
            thread: Some(thread),
        }
    }

    /// Stops accepting and closes the listening socket (the backend dies),
    /// for tests that still hold a reference to it.
    pub fn stop_now(&self) {
        self.stop.store(true, Ordering::Relaxed);
        // The accept loop polls every 2 ms; give it time to notice.
        std::thread::sleep(Duration::from_millis(20));
    }

    pub fn hits(&self, key: &str) -> u64 {
        self.hits
            .lock()
            .map(|h| h.get(key).copied().unwrap_or(0))
            .unwrap_or(0)
    }
}

impl Drop for Web {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub fn pattern(i: u64) -> u8 {
    (i.wrapping_mul(2_654_435_761) >> 13) as u8
}

fn query(q: &str) -> HashMap<String, String> {
    q.split('&')
        .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn serve(
    s: TcpStream,
    name: &str,
    stop: &AtomicBool,
    requests: &AtomicU64,
    hits: &Mutex<HashMap<String, u64>>,
    broken: &AtomicBool,
) -> std::io::Result<()> {
    s.set_read_timeout(Some(Duration::from_millis(200)))?;
    let mut w = s.try_clone()?;
    let mut r = BufReader::new(s);
    loop {
        // Request head.
        let mut head = Vec::new();
        loop {
            let mut line = String::new();
            match r.read_line(&mut line) {
                Ok(0) => return Ok(()),
                Ok(_) => {
                    if line == "\r\n" {
                        break;
                    }
                    head.push(line.trim_end().to_string());
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    if stop.load(Ordering::Relaxed) {
                        return Ok(());
                    }
                    continue;
                }
                Err(e) => return Err(e),
            }
        }
        if head.is_empty() {
            continue;
        }
        requests.fetch_add(1, Ordering::Relaxed);
        let mut it = head[0].split_whitespace();
        let method = it.next().unwrap_or("").to_string();
        let target = it.next().unwrap_or("/").to_string();
        let headers: Vec<(String, String)> = head[1..]
            .iter()
            .filter_map(|h| h.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let header = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        let len: usize = header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let (path, q) = target.split_once('?').unwrap_or((&target, ""));
        let q = query(q);
        let close = header("connection").is_some_and(|c| c.eq_ignore_ascii_case("close"));
        let mut extra = String::new();
        let mut body: Vec<u8> = Vec::new();
        let mut big: Option<u64> = None;
        let mut status = "200 OK";
        let path = if broken.load(Ordering::Relaxed) {
            status = "500 Internal Server Error";
            "/broken"
        } else {
            path
        };
        match path {
            "/inspect" => body = head.join("\r\n").into_bytes(),
            "/echo" => {
                // Stream the body back as it arrives.
                write!(
                    w,
                    "HTTP/1.1 200 OK\r\nX-Backend: {name}\r\nContent-Length: {len}\r\n\r\n"
                )?;
                let mut left = len;
                let mut buf = vec![0u8; 64 * 1024];
                while left > 0 {
                    let n = match r.read(&mut buf[..left.min(64 * 1024)]) {
                        Ok(0) => return Ok(()),
                        Ok(n) => n,
                        Err(e)
                            if matches!(
                                e.kind(),
                                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                            ) =>
                        {
                            continue
                        }
                        Err(e) => return Err(e),
                    };
                    w.write_all(&buf[..n])?;
                    left -= n;
                }
                if close {
                    return Ok(());
                }
                continue;
            }
            "/big" => big = q.get("n").and_then(|n| n.parse().ok()),
            "/text" => {
                let n: usize = q.get("n").and_then(|n| n.parse().ok()).unwrap_or(1000);
                let ty = q.get("type").map_or("text/plain", |t| t.as_str());
                extra.push_str(&format!("Content-Type: {}\r\n", ty.replace("%2F", "/")));
                if q.contains_key("encoded") {
                    extra.push_str("Content-Encoding: gzip\r\n");
                }
                if q.contains_key("notransform") {
                    extra.push_str("Cache-Control: no-transform\r\n");
                }
                body = b"the quick brown fox jumps over the lazy dog. "
                    .iter()
                    .copied()
                    .cycle()
                    .take(n)
                    .collect();
            }
            "/slow" => {
                let ms: u64 = q.get("ms").and_then(|n| n.parse().ok()).unwrap_or(1000);
                std::thread::sleep(Duration::from_millis(ms));
                body = b"slow".to_vec();
            }
            "/cache" => {
                let key = target.clone();
                let n = {
                    let mut h = hits.lock().map_err(|_| std::io::Error::other("poisoned"))?;
                    let e = h.entry(key).or_insert(0);
                    *e += 1;
                    *e
                };
                if let Some(ma) = q.get("max-age") {
                    extra.push_str(&format!("Cache-Control: max-age={ma}\r\n"));
                }
                if q.contains_key("nostore") {
                    extra.push_str("Cache-Control: no-store\r\n");
                }
                if q.contains_key("cookie") {
                    extra.push_str("Set-Cookie: s=1\r\n");
                }
                if let Some(v) = q.get("vary") {
                    extra.push_str(&format!("Vary: {v}\r\n"));
                    body = format!(
                        "{name} fetch {n} {v}={}",
                        header(&v.to_ascii_lowercase()).unwrap_or_default()
                    )
                    .into_bytes();
                } else {
                    body = format!("{name} fetch {n}").into_bytes();
                }
                if let Some(ms) = q.get("delay").and_then(|d| d.parse::<u64>().ok()) {
                    std::thread::sleep(Duration::from_millis(ms));
                }
            }
            "/setcookie" => {
                extra.push_str(&format!(
                    "Set-Cookie: {}={}; Path=/\r\n",
                    q.get("name").cloned().unwrap_or_default(),
                    q.get("value").cloned().unwrap_or_default()
                ));
                body = name.as_bytes().to_vec();
            }
            "/ws" => {
                write!(w, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nX-Backend: {name}\r\n\r\n")?;
                let mut buf = [0u8; 4096];
                loop {
                    match r.read(&mut buf) {
                        Ok(0) => return Ok(()),
                        Ok(n) => w.write_all(&buf[..n])?,
                        Err(e)
                            if matches!(
                                e.kind(),
                                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                            ) =>
                        {
                            if stop.load(Ordering::Relaxed) {
                                return Ok(());
                            }
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
            _ => {
                if path == "/notfound" {
                    status = "404 Not Found";
                }
                body = name.as_bytes().to_vec();
            }
        }
        // Discard an unread request body.
        if len > 0 && path != "/echo" {
            let mut sink = vec![0u8; len];
            r.read_exact(&mut sink)?;
        }
        let _ = method;
        if let Some(n) = big {
            write!(
                w,
                "HTTP/1.1 200 OK\r\nX-Backend: {name}\r\nContent-Length: {n}\r\n\r\n"
            )?;
            let mut off = 0u64;
            let mut buf = vec![0u8; 64 * 1024];
            while off < n {
                let k = (n - off).min(buf.len() as u64) as usize;
                for (j, b) in buf[..k].iter_mut().enumerate() {
                    *b = pattern(off + j as u64);
                }
                w.write_all(&buf[..k])?;
                off += k as u64;
            }
        } else {
            write!(
                w,
                "HTTP/1.1 {status}\r\nX-Backend: {name}\r\nContent-Length: {}\r\n{extra}\r\n",
                body.len()
            )?;
            w.write_all(&body)?;
        }
        if close {
            return Ok(());
        }
    }
}

pub type Headers = Vec<(String, String)>;

/// A raw HTTP/1.1 exchange over a fresh connection: returns (status,
/// headers lowercased, body). Reads Content-Length bodies.
pub fn request(addr: SocketAddr, raw: &str) -> Result<(u16, Headers, Vec<u8>), String> {
    let mut s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    s.write_all(raw.as_bytes()).map_err(|e| e.to_string())?;
    read_response(&mut BufReader::new(s))
}

pub fn read_response<R: BufRead>(r: &mut R) -> Result<(u16, Headers, Vec<u8>), String> {
    let mut status_line = String::new();
    r.read_line(&mut status_line).map_err(|e| e.to_string())?;
    if status_line.is_empty() {
        return Err("connection closed without a response".into());
    }
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        r.read_line(&mut line).map_err(|e| e.to_string())?;
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.trim_end().split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).map_err(|e| e.to_string())?;
    Ok((status, headers, body))
}

pub fn get(addr: SocketAddr, path: &str, extra: &str) -> Result<(u16, Headers, String), String> {
    request(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: test.local\r\n{extra}Connection: close\r\n\r\n"),
    )
    .map(|(s, h, b)| (s, h, String::from_utf8_lossy(&b).into_owned()))
}

pub fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}
