//! The one toy backend of the tests, on its own threads, on loopback or
//! inside a lab host's namespace ([`Spec::in_ns`]). Its [`Mode`]:
//!
//! - [`Mode::Http`]: HTTP/1.1 with keep-alive. Behaviour by path:
//!   - `/inspect`: the request head it received, as the body;
//!   - `/big?n=N`: N bytes of a deterministic pattern (Content-Length);
//!   - `/echo`: the request body back (Content-Length bodies);
//!   - `/slow?ms=N`: answers after N ms;
//!   - `/cache?...`: counts requests per path+query, `max-age=N`, `nostore`,
//!     `cookie`, `vary=Header` set the matching response headers;
//!   - `/setcookie?name=N&value=V`: a Set-Cookie;
//!   - `/ws`: 101 Switching Protocols, then echoes raw bytes;
//!   - `/text?n=N&type=T`: N bytes of repetitive text as `T` (text/plain),
//!     `&encoded` adds Content-Encoding: gzip, `&notransform` Cache-Control: no-transform;
//!   - `/notfound`: a 404 with the name;
//!   - anything else: the backend's name.
//!
//!   Every response carries `X-Backend: <name>`. While `broken` is set
//!   every request gets a 500. The head and the body go out in separate
//!   writes, as a real server's may.
//! - [`Mode::Plain`]: as `Http`, but the default answer is the name and a
//!   newline (raw TCP readers wait for it), each answer is one write (a
//!   client reading once has all of it), and a request's
//!   `Connection: close` is answered in kind.
//! - [`Mode::Forwarded`]: as `Http`, but one request per connection
//!   (`Connection: close`), a PROXY v1 line before it is taken, and the
//!   default answer is its name and what the proxy in front told it: the
//!   PROXY line, X-Forwarded-For and Forwarded.
//! - [`Mode::Echo`]: every byte back until EOF, then close.
//! - [`Mode::Sink`]: reads until the client half-closes, then replies
//!   `got N bytes` and closes.
//!
//! Stops (closing its listening socket) on drop.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::lab::Lab;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Http,
    Plain,
    Forwarded,
    Echo,
    Sink,
}

pub struct Backend {
    pub addr: SocketAddr,
    pub name: String,
    stop: Arc<AtomicBool>,
    /// HTTP requests read.
    pub requests: Arc<AtomicU64>,
    /// Connections accepted.
    pub connections: Arc<AtomicU64>,
    /// `/cache` requests per path and query.
    pub hits: Arc<Mutex<HashMap<String, u64>>>,
    /// While set, every HTTP request gets a 500.
    pub broken: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// What to start: see [`Backend::spec`].
#[must_use]
pub struct Spec<'a> {
    name: String,
    mode: Mode,
    bind: SocketAddr,
    ns: Option<(&'a Lab, &'a str)>,
}

impl<'a> Spec<'a> {
    pub fn mode(mut self, mode: Mode) -> Spec<'a> {
        self.mode = mode;
        self
    }

    /// 127.0.0.1:`port` (or `[::]`/`0.0.0.0` as [`Spec::bind`] set, this port).
    pub fn port(mut self, port: u16) -> Spec<'a> {
        self.bind.set_port(port);
        self
    }

    pub fn bind(mut self, bind: SocketAddr) -> Spec<'a> {
        self.bind = bind;
        self
    }

    /// Listens inside `host`'s network namespace (on 0.0.0.0 unless
    /// [`Spec::bind`] says otherwise).
    pub fn in_ns<'b>(self, lab: &'b Lab, host: &'b str) -> Spec<'b>
    where
        'a: 'b,
    {
        let bind = if self.bind.ip().is_loopback() {
            SocketAddr::from(([0, 0, 0, 0], self.bind.port()))
        } else {
            self.bind
        };
        Spec {
            bind,
            ns: Some((lab, host)),
            ..self
        }
    }

    pub fn start(self) -> Backend {
        let stop = Arc::new(AtomicBool::new(false));
        let ctx = Arc::new(Ctx {
            name: self.name.clone(),
            mode: self.mode,
            stop: stop.clone(),
            requests: Arc::default(),
            connections: Arc::default(),
            hits: Arc::default(),
            broken: Arc::default(),
        });
        let (tx, rx) = std::sync::mpsc::channel();
        let (bind, c2) = (self.bind, ctx.clone());
        let accept = move || {
            let l = TcpListener::bind(bind).unwrap_or_else(|e| panic!("backend bind {bind}: {e}"));
            l.set_nonblocking(true).expect("nonblocking");
            let _ = tx.send(l.local_addr().expect("addr"));
            accept_loop(&l, &c2);
        };
        let thread = match self.ns {
            Some((lab, host)) => lab.in_ns(host, accept),
            None => std::thread::spawn(accept),
        };
        let addr = rx
            .recv_timeout(Duration::from_secs(5))
            .expect("backend ready");
        Backend {
            addr,
            name: self.name,
            stop,
            requests: ctx.requests.clone(),
            connections: ctx.connections.clone(),
            hits: ctx.hits.clone(),
            broken: ctx.broken.clone(),
            thread: Some(thread),
        }
    }
}

impl Backend {
    /// An HTTP backend on 127.0.0.1, any port; change it before `start`.
    pub fn spec(name: &str) -> Spec<'static> {
        Spec {
            name: name.to_string(),
            mode: Mode::Http,
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            ns: None,
        }
    }

    /// [`Mode::Http`] on 127.0.0.1, any port.
    pub fn http(name: &str) -> Backend {
        Self::spec(name).start()
    }

    /// `mode` on 127.0.0.1, any port.
    pub fn start(name: &str, mode: Mode) -> Backend {
        Self::spec(name).mode(mode).start()
    }

    /// `mode` on 127.0.0.1:`port`.
    pub fn start_on(name: &str, mode: Mode, port: u16) -> Backend {
        Self::spec(name).mode(mode).port(port).start()
    }

    /// [`Mode::Plain`] on 0.0.0.0:`port` in lab host `host`.
    pub fn in_lab(lab: &Lab, host: &str, port: u16, name: &str) -> Backend {
        Self::spec(name)
            .mode(Mode::Plain)
            .port(port)
            .in_ns(lab, host)
            .start()
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

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What every connection of one backend shares.
struct Ctx {
    name: String,
    mode: Mode,
    stop: Arc<AtomicBool>,
    requests: Arc<AtomicU64>,
    connections: Arc<AtomicU64>,
    hits: Arc<Mutex<HashMap<String, u64>>>,
    broken: Arc<AtomicBool>,
}

fn accept_loop(l: &TcpListener, ctx: &Arc<Ctx>) {
    while !ctx.stop.load(Ordering::Relaxed) {
        match l.accept() {
            Ok((s, _)) => {
                ctx.connections.fetch_add(1, Ordering::Relaxed);
                let _ = s.set_nonblocking(false);
                let ctx = ctx.clone();
                std::thread::spawn(move || match ctx.mode {
                    Mode::Http | Mode::Plain | Mode::Forwarded => {
                        let _ = serve_http(s, &ctx);
                    }
                    Mode::Echo => echo(s, &ctx.stop),
                    Mode::Sink => sink(s),
                });
            }
            Err(_) => std::thread::sleep(Duration::from_millis(1)),
        }
    }
}

/// A read that timed out (the socket's read timeout): time to look at `stop`.
fn timed_out(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

fn echo(s: TcpStream, stop: &AtomicBool) {
    let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
    if let Ok(mut w) = s.try_clone() {
        let _ = relay(&mut &s, &mut w, &mut vec![0u8; 64 * 1024], stop);
    }
}

/// Writes back to `w` every byte read from `r` until EOF, an error, or
/// `stop` (seen when a read times out).
fn relay(
    r: &mut impl Read,
    w: &mut impl Write,
    buf: &mut [u8],
    stop: &AtomicBool,
) -> std::io::Result<()> {
    loop {
        match r.read(buf) {
            Ok(0) => return Ok(()),
            Ok(n) => w.write_all(&buf[..n])?,
            Err(e) if timed_out(&e) => {
                if stop.load(Ordering::Relaxed) {
                    return Ok(());
                }
            }
            Err(e) => return Err(e),
        }
    }
}

fn sink(mut s: TcpStream) {
    let mut n = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(_) => return,
        }
    }
    let _ = s.write_all(format!("got {n} bytes\n").as_bytes());
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

fn serve_http(s: TcpStream, ctx: &Ctx) -> std::io::Result<()> {
    let Ctx {
        name,
        stop,
        requests,
        hits,
        broken,
        ..
    } = ctx;
    let name = name.as_str();
    let forwarded = ctx.mode == Mode::Forwarded;
    s.set_read_timeout(Some(Duration::from_millis(200)))?;
    let mut w = s.try_clone()?;
    let mut r = BufReader::new(s);
    loop {
        // Request head.
        let mut head = Vec::new();
        let mut proxy = String::new();
        loop {
            let mut line = String::new();
            match r.read_line(&mut line) {
                Ok(0) => return Ok(()),
                Ok(_) => {
                    if line == "\r\n" {
                        break;
                    }
                    if forwarded
                        && head.is_empty()
                        && proxy.is_empty()
                        && line.starts_with("PROXY ")
                    {
                        proxy = line.trim_end().to_string();
                        continue;
                    }
                    head.push(line.trim_end().to_string());
                }
                Err(e) if timed_out(&e) => {
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
        let close =
            forwarded || header("connection").is_some_and(|c| c.eq_ignore_ascii_case("close"));
        let mut extra = String::new();
        if forwarded || (close && ctx.mode == Mode::Plain) {
            extra.push_str("Connection: close\r\n");
        }
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
                        Err(e) if timed_out(&e) => continue,
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
                return relay(&mut r, &mut w, &mut [0u8; 4096], stop);
            }
            _ => {
                if path == "/notfound" {
                    status = "404 Not Found";
                }
                body = if forwarded {
                    // Every value of a header, in order, comma-joined.
                    let all = |n: &str| {
                        headers
                            .iter()
                            .filter(|(k, _)| k == n)
                            .map(|(_, v)| v.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    };
                    format!(
                        "{name}\nproxy={proxy}\nxff={}\nforwarded={}\n",
                        all("x-forwarded-for"),
                        all("forwarded")
                    )
                    .into_bytes()
                } else if ctx.mode == Mode::Plain {
                    format!("{name}\n").into_bytes()
                } else {
                    name.as_bytes().to_vec()
                };
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
            if ctx.mode == Mode::Http {
                write!(
                    w,
                    "HTTP/1.1 {status}\r\nX-Backend: {name}\r\nContent-Length: {}\r\n{extra}\r\n",
                    body.len()
                )?;
                w.write_all(&body)?;
            } else {
                let head = format!(
                    "HTTP/1.1 {status}\r\nX-Backend: {name}\r\nContent-Length: {}\r\n{extra}\r\n",
                    body.len()
                );
                w.write_all(&[head.as_bytes(), &body].concat())?;
            }
        }
        if close {
            return Ok(());
        }
    }
}
