//! The HTTP/1.1 fast path: tandem's own proxy loop for HTTP/1 clients, on
//! plain TCP and over TLS.
//!
//! Lifecycle of one connection (one task on the worker that accepted it):
//! read until a whole request head is in the connection's buffer → parse it
//! in place ([`head`]) and refuse ambiguous framing, bad Host, CONNECT →
//! route it (the same router as HTTP/2) → for a forward, claim a backend
//! (stickiness, then the pool's algorithm), take an idle connection to it
//! from this worker's table ([`upconn`]) or dial one → write the rewritten
//! head ([`write`]) and pass the body through as it comes, following its
//! framing ([`body`]) → read the response head, relay 1xx, write the
//! rewritten head and pass the body back → return the backend connection
//! to the table and loop for the next request. A 101 turns the connection
//! into a byte tunnel (WebSocket). Buffers and field vectors belong to the
//! connection and are reused, so a keep-alive request allocates nothing.
//!
//! Routes with a response cache and pools that speak HTTP/2 to their
//! backends go through the hyper-based path in `server.rs` (the "slow
//! path"), as does every HTTP/2 client.

pub mod body;
pub mod head;
pub mod upconn;
pub mod write;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use arc_swap::ArcSwap;
use bytes::{Buf, BytesMut};
use http::Method;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use self::body::BodyFramer;
use self::head::{BodyKind, HeadError, RequestHead};
use self::upconn::UpConn;
use self::write::{RequestEdits, ResponseEdits};
use super::headers::{ForwardedInfo, HeaderOps};
use super::router::{self, Action, RequestView};
use super::server::{HttpPool, HttpRt};
use super::sticky;
use crate::balance::client_key;
use crate::config::StickyConfig;
use crate::pool::{Claim, PickError};
use crate::stats::ListenerStats;

/// Client read buffer: a request head and the start of its body.
const CLIENT_BUF: usize = 16 * 1024;
/// A keep-alive connection quiet this long gives its buffers back; the next
/// request allocates them again. Back-to-back requests never wait this long,
/// so the fast path keeps its zero allocations per request.
const IDLE_RELEASE: std::time::Duration = std::time::Duration::from_millis(250);

/// Waiting for a client's bytes without a buffer to read them into, so an
/// idle connection (a new one that has sent nothing yet, or a keep-alive one
/// between requests) holds no read buffer: 10,000 idle clients cost tasks
/// and sockets, not 10,000 × 16 KiB.
pub trait ReadReady {
    fn poll_read_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>>;
}

impl ReadReady for tokio::net::TcpStream {
    /// A one-byte peek, not `poll_read_ready`: tokio reports a socket ready
    /// until a read has seen it empty, so a fresh connection would look ready
    /// before its client has sent a byte. The peek leaves the byte queued.
    fn poll_read_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let mut one = [0u8; 1];
        let mut buf = tokio::io::ReadBuf::new(&mut one);
        self.poll_peek(cx, &mut buf).map_ok(|_| ())
    }
}

impl<S> ReadReady for tokio_rustls::server::TlsStream<S> {
    /// rustls may hold decrypted bytes that the socket's readiness does not show, so a TLS
    /// connection always reads (its session buffers dwarf ours anyway).
    fn poll_read_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

impl<T: ReadReady + ?Sized> ReadReady for &mut T {
    fn poll_read_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        (**self).poll_read_ready(cx)
    }
}

async fn read_ready<S: ReadReady>(io: &mut S) -> std::io::Result<()> {
    std::future::poll_fn(|cx| io.poll_read_ready(cx)).await
}
/// Largest read while streaming a body.
const STREAM_CHUNK: usize = 64 * 1024;
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What the fast path knows about its client connection.
pub struct Client<'a> {
    pub rt: &'a Arc<ArcSwap<HttpRt>>,
    pub stats: &'a ListenerStats,
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub scheme: &'static str,
    pub stop: &'a CancellationToken,
    /// h2c with prior knowledge may start this connection.
    pub h2c: bool,
    /// The verified client certificate's subject (mTLS listeners).
    pub client_subject: Option<&'a str>,
}

/// How a connection served by the fast path ended.
pub enum End {
    Closed,
    /// The client opened with the HTTP/2 preface: serve it with hyper,
    /// replaying these bytes.
    H2(BytesMut),
}

/// Per-connection buffers, reused request after request.
struct Bufs {
    rbuf: BytesMut,
    wbuf: Vec<u8>,
    head: RequestHead,
    tried: Vec<usize>,
    target: String,
}

enum Next {
    KeepAlive,
    Close,
}

fn reason(status: u16) -> &'static str {
    http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("")
}

/// Serves HTTP/1 requests on `io` until the client leaves, the keep-alive
/// timeout passes or the listener stops.
pub async fn serve<S>(mut io: S, c: Client<'_>) -> End
where
    S: AsyncRead + AsyncWrite + ReadReady + Unpin + Send,
{
    // Allocated when the client's first bytes arrive (see `ReadReady`).
    let mut b = Bufs {
        rbuf: BytesMut::new(),
        wbuf: Vec::new(),
        head: RequestHead::default(),
        tried: Vec::with_capacity(4),
        target: String::new(),
    };
    let mut snap = c.rt.load_full();
    let mut first = true;
    loop {
        // A reload swapped the listener's snapshot: later requests use it.
        {
            let cur = c.rt.load();
            if !Arc::ptr_eq(&snap, &cur) {
                snap = arc_swap::Guard::into_inner(cur);
            }
        }
        match read_head(&mut io, &mut b, &c, &snap, first).await {
            HeadRead::Ready => {}
            HeadRead::Closed => return End::Closed,
            HeadRead::H2 => return End::H2(std::mem::take(&mut b.rbuf)),
            HeadRead::Reject(status, why) => {
                c.stats.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(client = %c.peer, reason = why, status, "request rejected");
                b.wbuf.clear();
                simple_response(&mut b.wbuf, &snap, &c, status, why_text(status), None, true);
                let _ = io.write_all(&b.wbuf).await;
                let _ = io.shutdown().await;
                return End::Closed;
            }
        }
        first = false;
        if b.wbuf.capacity() == 0 {
            b.wbuf.reserve(4096);
        }
        let started = Instant::now();
        let next = exchange(&mut io, &mut b, &c, &snap, started).await;
        c.stats.request_seconds.observe(started.elapsed());
        // Keep-alive was promised in the response head (a stop that came
        // later is noticed by read_head, which gives the client's next
        // request a grace); closing now would reset that request.
        match next {
            Next::KeepAlive => {}
            Next::Close => {
                let _ = io.flush().await;
                let _ = io.shutdown().await;
                return End::Closed;
            }
        }
    }
}

fn why_text(status: u16) -> &'static str {
    match status {
        400 => "malformed request",
        405 => "method not allowed",
        408 => "request timed out",
        413 => "request body too large",
        431 => "request header fields too large",
        _ => "",
    }
}

enum HeadRead {
    Ready,
    Closed,
    H2,
    Reject(u16, &'static str),
}

/// Reads until a request head is complete. Between requests the wait is the
/// keep-alive timeout (and ends quietly when the listener stops); once a
/// byte has arrived the whole head must arrive within `header_timeout`.
async fn read_head<S>(
    io: &mut S,
    b: &mut Bufs,
    c: &Client<'_>,
    rt: &HttpRt,
    first: bool,
) -> HeadRead
where
    S: AsyncRead + ReadReady + Unpin,
{
    let cfg = &rt.http;
    let mut deadline: Option<tokio::time::Instant> = None;
    loop {
        if !b.rbuf.is_empty() {
            if first && c.h2c {
                let n = b.rbuf.len().min(H2_PREFACE.len());
                if b.rbuf[..n] == H2_PREFACE[..n] {
                    if n == H2_PREFACE.len() {
                        return HeadRead::H2;
                    }
                    // Part of the preface so far: read on.
                    deadline
                        .get_or_insert_with(|| tokio::time::Instant::now() + cfg.header_timeout);
                    match read_until(io, &mut b.rbuf, deadline, c.stop, false).await {
                        Ok(0) | Err(_) => return HeadRead::Closed,
                        Ok(_) => continue,
                    }
                }
            }
            // Empty lines before a request are tolerated (RFC 9112 §2.2).
            while b.rbuf.starts_with(b"\r\n") {
                b.rbuf.advance(2);
            }
            if !b.rbuf.is_empty() {
                match head::parse_request(&b.rbuf, cfg.max_headers, &mut b.head) {
                    Ok(()) => {
                        if b.head.len > cfg.max_header_bytes {
                            return HeadRead::Reject(431, "head_too_large");
                        }
                        return HeadRead::Ready;
                    }
                    Err(HeadError::Incomplete) => {
                        if b.rbuf.len() >= cfg.max_header_bytes {
                            return HeadRead::Reject(431, "head_too_large");
                        }
                    }
                    Err(HeadError::TooManyFields) => {
                        return HeadRead::Reject(431, "too_many_headers")
                    }
                    Err(e) => return HeadRead::Reject(400, e.reason()),
                }
                deadline.get_or_insert_with(|| tokio::time::Instant::now() + cfg.header_timeout);
            }
        }
        let idle = b.rbuf.is_empty();
        let until = match deadline {
            Some(d) => d,
            None => tokio::time::Instant::now() + cfg.keepalive_timeout,
        };
        if idle && b.rbuf.capacity() > 0 {
            // Between requests the buffers stay while the next request is
            // quick to come (a real read: the hot path pays no extra call).
            let soon = (tokio::time::Instant::now() + IDLE_RELEASE).min(until);
            match read_until(io, &mut b.rbuf, Some(soon), c.stop, true).await {
                Ok(0) => return HeadRead::Closed,
                Ok(_) => {
                    deadline = Some(tokio::time::Instant::now() + cfg.header_timeout);
                    continue;
                }
                Err(ReadErr::Timeout) if soon < until => {
                    b.rbuf = BytesMut::new();
                    b.wbuf = Vec::new();
                }
                Err(_) => return HeadRead::Closed,
            }
        }
        if idle {
            let wait = read_ready(io);
            let r = tokio::select! {
                r = tokio::time::timeout_at(until, wait) => r,
                _ = c.stop.cancelled() => tokio::time::timeout(DRAIN_GRACE, read_ready(io)).await,
            };
            match r {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => return HeadRead::Closed,
            }
        }
        match read_until(io, &mut b.rbuf, Some(until), c.stop, idle).await {
            Ok(0) => return HeadRead::Closed,
            Ok(_) => {
                if deadline.is_none() {
                    deadline = Some(tokio::time::Instant::now() + cfg.header_timeout);
                }
            }
            Err(ReadErr::Timeout) if !idle => return HeadRead::Reject(408, "header_timeout"),
            Err(_) => return HeadRead::Closed,
        }
    }
}

#[derive(Debug)]
enum ReadErr {
    Timeout,
    Stopped,
    Io,
}

/// How long an idle keep-alive connection may still send a request once its
/// listener stops (shutdown, upgrade).
const DRAIN_GRACE: std::time::Duration = std::time::Duration::from_millis(500);

/// One read into `buf` (growing it in place when full), bounded by
/// `deadline`; with `stoppable`, a listener stop ends the wait.
async fn read_until<S>(
    io: &mut S,
    buf: &mut BytesMut,
    deadline: Option<tokio::time::Instant>,
    stop: &CancellationToken,
    stoppable: bool,
) -> Result<usize, ReadErr>
where
    S: AsyncRead + Unpin,
{
    if buf.capacity() - buf.len() < 4096 {
        buf.reserve(CLIENT_BUF);
    }
    let read = io.read_buf(buf);
    let timed = async {
        match deadline {
            Some(d) => tokio::time::timeout_at(d, read)
                .await
                .map_err(|_| ReadErr::Timeout),
            None => Ok(read.await),
        }
    };
    let r = if stoppable {
        let mut timed = std::pin::pin!(timed);
        tokio::select! {
            r = timed.as_mut() => r,
            _ = stop.cancelled() => {
                // The client may have its next request on the wire already:
                // closing now would race it into a reset. A request that
                // arrives within the grace is served (with Connection: close).
                match tokio::time::timeout(DRAIN_GRACE, timed).await {
                    Ok(r) => r,
                    Err(_) => Err(ReadErr::Stopped),
                }
            }
        }
    } else {
        timed.await
    };
    match r {
        Ok(Ok(n)) => Ok(n),
        Ok(Err(_)) => Err(ReadErr::Io),
        Err(e) => Err(e),
    }
}

/// A response tandem makes itself, written into `out`.
fn simple_response(
    out: &mut Vec<u8>,
    rt: &HttpRt,
    c: &Client<'_>,
    status: u16,
    detail: &str,
    ops: Option<&HeaderOps>,
    close: bool,
) {
    use std::io::Write;
    let page;
    let body: &str = match rt.http.error_pages.get(&status) {
        Some(p) => p,
        None => {
            page = format!("{status} {}\n{detail}\n", reason(status));
            &page
        }
    };
    let _ = write!(
        out,
        "HTTP/1.1 {status} {}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\n",
        reason(status),
        body.len()
    );
    match status {
        503 => out.extend_from_slice(b"retry-after: 5\r\n"),
        429 => out.extend_from_slice(b"retry-after: 1\r\n"),
        _ => {}
    }
    finish_own_head(out, rt, c, ops, close);
    out.extend_from_slice(body.as_bytes());
}

/// The fields every response tandem writes itself ends with.
fn finish_own_head(
    out: &mut Vec<u8>,
    rt: &HttpRt,
    c: &Client<'_>,
    ops: Option<&HeaderOps>,
    close: bool,
) {
    if let Some(h) = rt.http.hsts.as_deref().filter(|_| c.scheme == "https") {
        write::field(out, b"strict-transport-security", h.as_bytes());
    }
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    if let Some(ops) = ops {
        for (i, (n, v)) in ops.set.iter().enumerate() {
            if ops.set[i + 1..].iter().any(|(m, _)| m == n) {
                continue;
            }
            write::field(out, n.as_str().as_bytes(), v.as_bytes());
        }
        for (n, v) in &ops.add {
            write::field(out, n.as_str().as_bytes(), v.as_bytes());
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// Consumes a request body the proxy does not forward (fixed replies,
/// redirects, errors) when it is already buffered; otherwise the connection
/// must close after the reply.
fn skip_body(b: &mut Bufs) -> bool {
    let len = b.head.len;
    match b.head.body {
        BodyKind::None => {
            b.rbuf.advance(len);
            true
        }
        BodyKind::Length(n) if (b.rbuf.len() - len) as u64 >= n => {
            b.rbuf.advance(len + n as usize);
            true
        }
        _ => false,
    }
}

fn idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

/// One request, from a parsed head to the end of the response.
async fn exchange<S>(
    io: &mut S,
    b: &mut Bufs,
    c: &Client<'_>,
    rt: &Arc<HttpRt>,
    started: Instant,
) -> Next
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let buf = &b.rbuf[..];
    let head = &b.head;
    if head.method == Method::CONNECT {
        b.wbuf.clear();
        simple_response(
            &mut b.wbuf,
            rt,
            c,
            405,
            "CONNECT is not supported",
            None,
            true,
        );
        let _ = io.write_all(&b.wbuf).await;
        return Next::Close;
    }
    let view = RequestView {
        method: &head.method,
        host: head.host_str(buf),
        path: head.path_str(buf),
        query: head.query_str(buf),
        headers: head.fields(buf),
        client: Some(c.peer.ip()),
    };
    let log = rt
        .access_log
        .is_some()
        .then(|| (head.method.clone(), view.path.to_string()));
    if !rt.policy.request(c.peer.ip()) {
        return too_many(io, b, c, rt, log, None, started).await;
    }
    let Some((idx, route)) = rt.router.route(&view) else {
        let keep = skip_body(b) && b.head.keep_alive;
        b.wbuf.clear();
        simple_response(
            &mut b.wbuf,
            rt,
            c,
            404,
            "no route matches this request",
            None,
            !keep,
        );
        let ok = io.write_all(&b.wbuf).await.is_ok();
        finish_log(rt, c, log, 404, None, None, started);
        return if ok && keep {
            Next::KeepAlive
        } else {
            Next::Close
        };
    };
    if !rt.route_allows(idx, c.peer.ip()) {
        rt.route_stats[idx].record_code(429);
        return too_many(io, b, c, rt, log, Some(idx), started).await;
    }
    let outcome = match &route.action {
        Action::Respond {
            status,
            body,
            content_type,
        } => {
            use std::io::Write;
            let status = *status;
            let keep = skip_body(b) && b.head.keep_alive;
            b.wbuf.clear();
            let _ = write!(
                b.wbuf,
                "HTTP/1.1 {status} {}\r\ncontent-type: {}\r\ncontent-length: {}\r\n",
                reason(status),
                content_type
                    .as_deref()
                    .unwrap_or("text/plain; charset=utf-8"),
                body.len()
            );
            finish_own_head(&mut b.wbuf, rt, c, Some(&route.response_headers), !keep);
            b.wbuf.extend_from_slice(body.as_bytes());
            let ok = io.write_all(&b.wbuf).await.is_ok();
            (status, None, ok && keep)
        }
        Action::Redirect { status, location } => {
            use std::io::Write;
            let status = *status;
            let loc = router::expand_location(location, &view, c.scheme);
            let keep = skip_body(b) && b.head.keep_alive;
            b.wbuf.clear();
            let _ = write!(
                b.wbuf,
                "HTTP/1.1 {status} {}\r\ncontent-type: text/plain\r\ncontent-length: 0\r\n",
                reason(status)
            );
            if http::HeaderValue::from_str(&loc).is_ok() {
                write::field(&mut b.wbuf, b"location", loc.as_bytes());
            }
            finish_own_head(&mut b.wbuf, rt, c, Some(&route.response_headers), !keep);
            let ok = io.write_all(&b.wbuf).await.is_ok();
            (status, None, ok && keep)
        }
        Action::Forward {
            pool,
            split,
            split_sticky,
            strip_prefix,
            rewrite_path,
        } => {
            let pool = router::split_pool(pool, split, *split_sticky, c.peer.ip());
            let Some(hp) = rt.pools.get(pool) else {
                let keep = skip_body(b) && b.head.keep_alive;
                b.wbuf.clear();
                simple_response(
                    &mut b.wbuf,
                    rt,
                    c,
                    502,
                    "pool missing",
                    Some(&route.response_headers),
                    !keep,
                );
                let ok = io.write_all(&b.wbuf).await.is_ok();
                rt.route_stats[idx].record_code(502);
                finish_log(rt, c, log, 502, Some(idx), None, started);
                return if ok && keep {
                    Next::KeepAlive
                } else {
                    Next::Close
                };
            };
            // The backend's target: unchanged unless the route rewrites it.
            b.target.clear();
            let t = if strip_prefix.is_none() && rewrite_path.is_none() {
                let s = b.head.path.0 as usize;
                let e = b.head.query.map_or(b.head.path.1, |q| q.1) as usize;
                TargetRef::Raw(s, e - s)
            } else {
                b.target.push_str(&router::rewritten_path(
                    strip_prefix.as_deref(),
                    rewrite_path.as_deref(),
                    view.path,
                    route.matcher.path.as_ref(),
                ));
                if let Some(q) = view.query {
                    b.target.push('?');
                    b.target.push_str(q);
                }
                TargetRef::Owned
            };
            // Compression runs in the hyper engine; only requests that
            // may get a compressed answer leave the fast path.
            let compress = route.compress.is_some()
                && super::compress::choose(b.head.fields(buf).get_all("accept-encoding")).is_some();
            if hp.pool.cfg.http.http2 || rt.caches[idx].is_some() || compress {
                let target = match t {
                    TargetRef::Raw(o, l) => String::from_utf8_lossy(&buf[o..o + l]).into_owned(),
                    TargetRef::Owned => b.target.clone(),
                };
                slow::forward(io, b, c, rt, idx, hp, target).await
            } else {
                let target = std::mem::take(&mut b.target);
                let r = forward(io, b, c, rt, idx, hp, &target, t).await;
                b.target = target;
                r
            }
        }
    };
    let (status, backend, keep) = outcome;
    rt.route_stats[idx].record_code(status);
    finish_log(rt, c, log, status, Some(idx), backend, started);
    if keep {
        Next::KeepAlive
    } else {
        Next::Close
    }
}

/// 429 for a client over a listener or route request rate.
async fn too_many<S>(
    io: &mut S,
    b: &mut Bufs,
    c: &Client<'_>,
    rt: &HttpRt,
    log: Option<(Method, String)>,
    route: Option<usize>,
    started: Instant,
) -> Next
where
    S: AsyncWrite + Unpin,
{
    c.stats
        .policy
        .count(crate::dataplane::policy::Refusal::RateLimited);
    let keep = skip_body(b) && b.head.keep_alive;
    b.wbuf.clear();
    simple_response(
        &mut b.wbuf,
        rt,
        c,
        429,
        "request rate limit exceeded",
        None,
        !keep,
    );
    let ok = io.write_all(&b.wbuf).await.is_ok();
    finish_log(rt, c, log, 429, route, None, started);
    if ok && keep {
        Next::KeepAlive
    } else {
        Next::Close
    }
}

fn finish_log(
    rt: &HttpRt,
    c: &Client<'_>,
    log: Option<(Method, String)>,
    status: u16,
    route: Option<usize>,
    backend: Option<&str>,
    started: Instant,
) {
    if let (Some((method, path)), Some(al)) = (log, &rt.access_log) {
        al.log(&crate::accesslog::Entry {
            time: SystemTime::now(),
            listener: &rt.cfg.name,
            protocol: c.scheme,
            client: c.peer,
            method: method.as_str(),
            path: &path,
            status,
            route: route
                .map(|i| rt.router.routes()[i].name.as_str())
                .unwrap_or("-"),
            backend: backend.unwrap_or("-"),
            duration: started.elapsed(),
            bytes_in: None,
            bytes_out: None,
            reason: "-",
        });
    }
}

/// Where the backend's request target is: inside the read buffer (offset,
/// length) or in `Bufs::target`.
#[derive(Clone, Copy)]
enum TargetRef {
    Raw(usize, usize),
    Owned,
}

/// (status sent, backend name, keep the client connection)
type Outcome<'a> = (u16, Option<&'a str>, bool);

/// A request id: 16 hex digits of time and process, 8 of a sequence.
fn request_id(out: &mut [u8; 24]) -> &[u8] {
    use std::sync::atomic::AtomicU64;
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let t = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
        ^ (std::process::id() as u64) << 40;
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for i in 0..16 {
        out[i] = HEX[(t >> (60 - 4 * i) & 0xf) as usize];
    }
    for i in 0..8 {
        out[16 + i] = HEX[((n as u32) >> (28 - 4 * i) & 0xf) as usize];
    }
    &out[..]
}

/// Picks the backend: sticky first (while it is serving), else the pool's
/// algorithm. Returns the claim and whether the client needs the cookie.
async fn pick<'p>(
    hp: &'p HttpPool,
    fields: crate::dataplane::l7::fields::Fields<'_>,
    peer: SocketAddr,
    tried: &[usize],
) -> Result<(Claim<'p>, bool), PickError> {
    let key = client_key(peer.ip());
    let cfg = &hp.pool.cfg.http;
    let wanted: Option<usize> = match &cfg.sticky {
        Some(StickyConfig::Cookie { name }) => {
            sticky::cookie_value_in(fields.get_all("cookie"), name)
                .and_then(|t| hp.tokens.get(t).copied())
        }
        Some(StickyConfig::AppCookie { name, .. }) => {
            sticky::cookie_value_in(fields.get_all("cookie"), name)
                .and_then(|session| hp.table.as_ref()?.lookup(session, Instant::now()))
                .and_then(|b| hp.pool.backends.iter().position(|x| x.cfg.name == b))
        }
        _ => None,
    };
    if let Some(i) = wanted.filter(|i| !tried.contains(i)) {
        if hp.pool.backends[i].serving() {
            let others: Vec<usize> = (0..hp.pool.backends.len())
                .filter(|j| *j != i)
                .chain(tried.iter().copied())
                .collect();
            if let Ok(l) = hp.pool.try_claim(key, &others) {
                return Ok((l, false));
            }
        }
    }
    let claim = hp.pool.claim(key, tried).await?;
    let needs_cookie = matches!(cfg.sticky, Some(StickyConfig::Cookie { .. }));
    Ok((claim, needs_cookie))
}

/// Sends an error of a forwarded request and says whether the connection
/// can stay open.
#[allow(clippy::too_many_arguments)]
async fn forward_error<S>(
    io: &mut S,
    b: &mut Bufs,
    c: &Client<'_>,
    rt: &HttpRt,
    ops: &HeaderOps,
    status: u16,
    detail: &str,
    body_left: bool,
) -> bool
where
    S: AsyncWrite + Unpin,
{
    let keep = !body_left && b.head.keep_alive;
    send_error(io, &mut b.wbuf, c, rt, ops, status, detail, keep).await
}

#[allow(clippy::too_many_arguments)]
async fn send_error<W>(
    w: &mut W,
    wbuf: &mut Vec<u8>,
    c: &Client<'_>,
    rt: &HttpRt,
    ops: &HeaderOps,
    status: u16,
    detail: &str,
    keep: bool,
) -> bool
where
    W: AsyncWrite + Unpin,
{
    wbuf.clear();
    simple_response(wbuf, rt, c, status, detail, Some(ops), !keep);
    w.write_all(wbuf).await.is_ok() && keep
}

/// How waiting for the response head ended.
enum Waited {
    Head,
    /// Nothing at all came back on a reused connection: it was stale.
    Stale,
    Timeout,
    Failed(&'static str),
}

async fn read_response_head<R>(
    rd: &mut R,
    buf: &mut BytesMut,
    rh: &mut head::ResponseHead,
    method: &Method,
    deadline: tokio::time::Instant,
) -> Waited
where
    R: AsyncRead + Unpin,
{
    loop {
        if !buf.is_empty() {
            match head::parse_response(buf, method, rh) {
                Ok(()) => return Waited::Head,
                Err(HeadError::Incomplete) => {
                    if buf.len() > 64 * 1024 {
                        return Waited::Failed("response head too large");
                    }
                }
                Err(_) => return Waited::Failed("malformed response head"),
            }
        }
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(16 * 1024);
        }
        let was_empty = buf.is_empty();
        match tokio::time::timeout_at(deadline, rd.read_buf(buf)).await {
            Err(_) => return Waited::Timeout,
            Ok(Ok(0)) | Ok(Err(_)) if was_empty => return Waited::Stale,
            Ok(Ok(0)) => return Waited::Failed("backend closed mid-head"),
            Ok(Err(_)) => return Waited::Failed("backend read error"),
            Ok(Ok(_)) => {}
        }
    }
}

/// Reads response heads until a final one (or 101), relaying interim
/// responses to an HTTP/1.1 client.
#[allow(clippy::too_many_arguments)]
async fn final_head<W, R>(
    cw: &mut W,
    wbuf: &mut Vec<u8>,
    rd: &mut R,
    buf: &mut BytesMut,
    rh: &mut head::ResponseHead,
    method: &Method,
    deadline: tokio::time::Instant,
    minor: u8,
    mut early: Option<Waited>,
) -> Result<(), Waited>
where
    W: AsyncWrite + Unpin,
    R: AsyncRead + Unpin,
{
    loop {
        let w = match early.take() {
            Some(w) => w,
            None => read_response_head(rd, buf, rh, method, deadline).await,
        };
        if !matches!(w, Waited::Head) {
            return Err(w);
        }
        let st = rh.status;
        if (100..200).contains(&st) && st != 101 {
            let n = rh.len;
            if minor == 1 {
                wbuf.clear();
                wbuf.extend_from_slice(&buf[..n]);
                if cw.write_all(wbuf).await.is_err() {
                    return Err(Waited::Failed("client gone"));
                }
            }
            buf.advance(n);
            continue;
        }
        return Ok(());
    }
}

/// What the response half of an exchange needs to know.
struct Ctx<'a, 'r> {
    c: &'a Client<'a>,
    rt: &'r HttpRt,
    idx: usize,
    hp: &'r HttpPool,
    set_cookie: bool,
    client_keep: bool,
    app_session: Option<&'a str>,
}

#[allow(clippy::too_many_arguments)]
async fn forward<'r, S>(
    io: &mut S,
    b: &mut Bufs,
    c: &Client<'_>,
    rt: &'r HttpRt,
    idx: usize,
    hp: &'r HttpPool,
    owned_target: &str,
    target: TargetRef,
) -> Outcome<'r>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let route = &rt.router.routes()[idx];
    let ops = &route.response_headers;
    let pool = &hp.pool;
    let limit = rt.http.max_body_bytes;
    if let BodyKind::Length(n) = b.head.body {
        if limit > 0 && n > limit {
            let keep = forward_error(io, b, c, rt, ops, 413, "request body too large", true).await;
            return (413, None, keep);
        }
    }
    let bodiless = b.head.body == BodyKind::None;
    let method = b.head.method.clone();
    let retryable = idempotent(&method) && bodiless;
    let expect_continue = b
        .head
        .fields(&b.rbuf)
        .get("expect")
        .is_some_and(|v| v.eq_ignore_ascii_case(b"100-continue"));
    let websocket = b.head.websocket;
    let client_keep = b.head.keep_alive;
    let minor = b.head.minor;
    // The app cookie the request carried, for a backend that deletes it.
    let app_session: Option<String> = match (&pool.cfg.http.sticky, &hp.table) {
        (Some(StickyConfig::AppCookie { name, .. }), Some(_)) => {
            sticky::cookie_value_in(b.head.fields(&b.rbuf).get_all("cookie"), name)
                .map(str::to_string)
        }
        _ => None,
    };
    b.tried.clear();
    let mut rid = [0u8; 24];
    let rid_name = rt.request_id.as_ref().map(|n| n.as_str());
    let rid_val: &[u8] = if rid_name.is_some() {
        request_id(&mut rid)
    } else {
        &[]
    };
    let trusted = rt.trusts(c.peer.ip());
    let mut fresh_only = false;
    loop {
        let buf = &b.rbuf[..];
        let (claim, set_cookie) = match pick(hp, b.head.fields(buf), c.peer, &b.tried).await {
            Ok(x) => x,
            Err(PickError::NoBackend) => {
                pool.shared.no_backend.fetch_add(1, Ordering::Relaxed);
                let status = if b.tried.is_empty() { 503 } else { 502 };
                let keep =
                    forward_error(io, b, c, rt, ops, status, "no backend available", !bodiless)
                        .await;
                return (status, None, keep);
            }
            Err(PickError::Saturated) => {
                let keep =
                    forward_error(io, b, c, rt, ops, 503, "all backends are busy", !bodiless).await;
                return (503, None, keep);
            }
        };
        let backend = claim.backend();
        let addr = backend.cfg.address;
        let name = backend.cfg.name.as_str();
        let reused_conn = if fresh_only {
            None
        } else {
            upconn::checkout(&hp.upstream, addr)
        };
        let reused = reused_conn.is_some();
        let mut up = match reused_conn {
            Some(u) => u,
            None => match hp.upstream.connector.connect(addr).await {
                Ok(s) => UpConn::new(s),
                Err(e) => {
                    if !crate::net::local_shortage(&e) {
                        claim.failed(&e.to_string());
                    }
                    b.tried.push(claim.index);
                    if retryable && b.tried.len() <= pool.cfg.retries as usize {
                        claim.retried();
                        continue;
                    }
                    let keep = forward_error(
                        io,
                        b,
                        c,
                        rt,
                        ops,
                        502,
                        "cannot connect to a backend",
                        !bodiless,
                    )
                    .await;
                    return (502, Some(name), keep);
                }
            },
        };
        // The head for the backend, then whatever body bytes are buffered.
        b.wbuf.clear();
        let host = b.head.host_str(buf);
        let target_bytes: &[u8] = match target {
            TargetRef::Raw(o, l) => &buf[o..o + l],
            TargetRef::Owned => owned_target.as_bytes(),
        };
        write::request_head(
            &mut b.wbuf,
            method.as_str().as_bytes(),
            target_bytes,
            b.head.fields(buf),
            &RequestEdits {
                forwarded: ForwardedInfo {
                    client: c.peer.ip(),
                    proto: c.scheme,
                    host,
                    by: Some(c.local),
                },
                via: "1.1 tandem",
                rfc7239: rt.http.forwarded,
                trusted,
                request_id: rid_name.map(|n| (n, rid_val)),
                ops: &route.request_headers,
                websocket,
                client_cert: rt
                    .http
                    .tls_opts
                    .client_subject_header
                    .as_deref()
                    .map(|h| (h, c.client_subject)),
            },
        );
        let mut framer = BodyFramer::new(b.head.body);
        let after_head = &buf[b.head.len..];
        let in_buf = match framer.advance(after_head) {
            Ok(n) => n,
            Err(e) => {
                c.stats.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(client = %c.peer, reason = e.reason(), "request rejected: bad body framing");
                let keep =
                    forward_error(io, b, c, rt, ops, 400, "malformed request body", true).await;
                return (400, None, keep);
            }
        };
        if limit > 0 && framer.payload > limit {
            let keep = forward_error(io, b, c, rt, ops, 413, "request body too large", true).await;
            return (413, None, keep);
        }
        b.wbuf.extend_from_slice(&after_head[..in_buf]);
        let t0 = Instant::now();
        if up.io.write_all(&b.wbuf).await.is_err() {
            if reused && bodiless {
                // A stale pooled connection: try a fresh one, not a failure.
                fresh_only = true;
                continue;
            }
            claim.failed("write to backend failed");
            let keep = forward_error(io, b, c, rt, ops, 502, "backend error", true).await;
            return (502, Some(name), keep);
        }
        let consumed = b.head.len + in_buf;
        let response_deadline =
            |from: Instant| tokio::time::Instant::from_std(from + pool.cfg.http.response_timeout);
        // Expect: 100-continue: the backend answers before the body comes.
        let mut early: Option<Waited> = None;
        if expect_continue && !framer.done() {
            let w = read_response_head(
                &mut up.io,
                &mut up.buf,
                &mut up.head,
                &method,
                response_deadline(Instant::now()),
            )
            .await;
            match w {
                Waited::Head if up.head.status == 100 => {
                    let n = up.head.len;
                    up.buf.advance(n);
                    if minor == 1
                        && io
                            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                            .await
                            .is_err()
                    {
                        return (499, Some(name), false);
                    }
                }
                other => early = Some(other),
            }
        }
        b.rbuf.advance(consumed);
        let cx = Ctx {
            c,
            rt,
            idx,
            hp,
            set_cookie,
            client_keep,
            app_session: app_session.as_deref(),
        };
        if early.is_none() && !framer.done() {
            // The body is still coming: full duplex, because a backend may
            // answer (or echo) while it streams.
            return duplex(io, b, up, &mut framer, claim, &cx, &method, minor, t0).await;
        }
        let got = final_head(
            io,
            &mut b.wbuf,
            &mut up.io,
            &mut up.buf,
            &mut up.head,
            &method,
            response_deadline(Instant::now()),
            minor,
            early,
        )
        .await;
        match got {
            Ok(()) => {}
            Err(Waited::Stale) if reused && retryable => {
                fresh_only = true;
                continue;
            }
            Err(w) => {
                let (status, detail) = wait_failure(&claim, name, w);
                let keep = forward_error(io, b, c, rt, ops, status, detail, false).await;
                return (status, Some(name), keep);
            }
        }
        claim.connected(t0.elapsed());
        claim.responded(up.head.status);
        if up.head.status == 101 {
            return tunnel(io, b, up, claim, &cx, websocket).await;
        }
        let (outcome, reusable) = respond(
            io,
            &mut b.wbuf,
            &mut up.io,
            &mut up.buf,
            &up.head,
            &claim,
            &cx,
        )
        .await;
        if reusable {
            upconn::checkin(
                &hp.upstream,
                claim.backend().cfg.address,
                up,
                pool.cfg.http.max_idle_per_backend,
                pool.cfg.http.idle_timeout,
            );
        }
        return outcome;
    }
}

/// Counts a failed wait for a response against the backend.
fn wait_failure(claim: &Claim<'_>, name: &str, w: Waited) -> (u16, &'static str) {
    match w {
        Waited::Timeout => {
            claim.failed("response timeout");
            (504, "backend did not answer in time")
        }
        Waited::Stale | Waited::Head => {
            claim.failed("backend closed the connection");
            (502, "backend error")
        }
        Waited::Failed(why) => {
            tracing::debug!(backend = %name, reason = why, "upstream request failed");
            claim.failed(why);
            (502, "backend error")
        }
    }
}

/// A 101 to a WebSocket upgrade: the connection becomes a byte tunnel.
async fn tunnel<'r, S>(
    io: &mut S,
    b: &mut Bufs,
    mut up: UpConn,
    claim: Claim<'r>,
    cx: &Ctx<'_, 'r>,
    websocket: bool,
) -> Outcome<'r>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let name = claim.backend().cfg.name.as_str();
    let ops = &cx.rt.router.routes()[cx.idx].response_headers;
    if !websocket {
        claim.failed("unexpected 101");
        let keep = forward_error(io, b, cx.c, cx.rt, ops, 502, "backend error", false).await;
        return (502, Some(name), keep);
    }
    let hlen = up.head.len;
    b.wbuf.clear();
    write::response_head(
        &mut b.wbuf,
        101,
        up.head.reason.of(&up.buf),
        up.head.fields(&up.buf),
        &ResponseEdits {
            via: "1.1 tandem",
            extra: &[],
            ops,
            close: false,
            upgrade: true,
        },
    );
    b.wbuf.extend_from_slice(&up.buf[hlen..]);
    up.buf.clear();
    if io.write_all(&b.wbuf).await.is_err() {
        return (101, Some(name), false);
    }
    // Bytes the client sent after its upgrade request go first.
    if !b.rbuf.is_empty() {
        if up.io.write_all(&b.rbuf).await.is_err() {
            return (101, Some(name), false);
        }
        b.rbuf.clear();
    }
    let _ = tokio::io::copy_bidirectional(io, &mut up.io).await;
    drop(claim);
    (101, Some(name), false)
}

/// The request body streams to the backend while its response streams
/// back; each direction on its own half of both connections.
#[allow(clippy::too_many_arguments)]
async fn duplex<'r, S>(
    io: &mut S,
    b: &mut Bufs,
    mut up: UpConn,
    framer: &mut BodyFramer,
    claim: Claim<'r>,
    cx: &Ctx<'_, 'r>,
    method: &Method,
    minor: u8,
    t0: Instant,
) -> Outcome<'r>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let rt = cx.rt;
    let name = claim.backend().cfg.name.as_str();
    let ops = &rt.router.routes()[cx.idx].response_headers;
    let limit = rt.http.max_body_bytes;
    let head_sent = std::sync::atomic::AtomicBool::new(false);
    let response_timeout = cx.hp.pool.cfg.http.response_timeout;
    enum Done<'r> {
        PumpFailed(Pump),
        Response(Outcome<'r>, bool, bool),
        /// No response head within response_timeout of the body's end.
        Timeout,
    }
    let done = {
        let Bufs { rbuf, wbuf, .. } = &mut *b;
        let UpConn {
            io: uio,
            buf: ubuf,
            head: uhead,
            ..
        } = &mut up;
        let (mut crd, mut cwr) = tokio::io::split(&mut *io);
        let (mut urd, mut uwr) = tokio::io::split(uio);
        let pump = pump_body(&mut crd, &mut uwr, rbuf, framer, rt, limit);
        let resp = async {
            // While the body is still coming the backend may rightly wait for
            // it (the client's pace is bounded by the pump); the response
            // timeout runs from the body's end, in the loop below.
            let deadline =
                tokio::time::Instant::now() + std::time::Duration::from_secs(365 * 86_400);
            let got = final_head(
                &mut cwr, wbuf, &mut urd, ubuf, uhead, method, deadline, minor, None,
            )
            .await;
            if let Err(w) = got {
                let (status, detail) = wait_failure(&claim, name, w);
                let _ = send_error(&mut cwr, wbuf, cx.c, rt, ops, status, detail, false).await;
                head_sent.store(true, Ordering::Relaxed);
                return ((status, Some(name), false), false);
            }
            claim.connected(t0.elapsed());
            claim.responded(uhead.status);
            if uhead.status == 101 {
                claim.failed("unexpected 101");
                let _ =
                    send_error(&mut cwr, wbuf, cx.c, rt, ops, 502, "backend error", false).await;
                head_sent.store(true, Ordering::Relaxed);
                return ((502, Some(name), false), false);
            }
            head_sent.store(true, Ordering::Relaxed);
            respond(&mut cwr, wbuf, &mut urd, ubuf, uhead, &claim, cx).await
        };
        let mut pump = std::pin::pin!(pump);
        let mut resp = std::pin::pin!(resp);
        let mut pumped = false;
        let mut answer_by: Option<tokio::time::Instant> = None;
        loop {
            let waiting = answer_by.filter(|_| !head_sent.load(Ordering::Relaxed));
            tokio::select! {
                r = &mut pump, if !pumped => match r {
                    Ok(()) => {
                        pumped = true;
                        answer_by = Some(tokio::time::Instant::now() + response_timeout);
                    }
                    Err(e) => break Done::PumpFailed(e),
                },
                (outcome, reusable) = &mut resp => break Done::Response(outcome, reusable, pumped),
                _ = tokio::time::sleep_until(waiting.unwrap_or_else(tokio::time::Instant::now)), if waiting.is_some() => {
                    if head_sent.load(Ordering::Relaxed) {
                        // The head came in time; respond() bounds the body itself.
                        answer_by = None;
                        continue;
                    }
                    break Done::Timeout;
                }
            }
        }
    };
    match done {
        Done::Response(outcome, reusable, pumped) => {
            if reusable && pumped {
                upconn::checkin(
                    &cx.hp.upstream,
                    claim.backend().cfg.address,
                    up,
                    cx.hp.pool.cfg.http.max_idle_per_backend,
                    cx.hp.pool.cfg.http.idle_timeout,
                );
            }
            // A response that ended before the request body did leaves the
            // client connection out of step: close it.
            (outcome.0, outcome.1, outcome.2 && pumped)
        }
        Done::Timeout => {
            let (status, detail) = wait_failure(&claim, name, Waited::Timeout);
            let _ = send_error(io, &mut b.wbuf, cx.c, rt, ops, status, detail, false).await;
            (status, Some(name), false)
        }
        Done::PumpFailed(e) => {
            let sent = head_sent.load(Ordering::Relaxed);
            let (status, detail) = match e {
                Pump::ClientGone => return (499, Some(name), false),
                // The client's fault, never the backend's.
                Pump::ClientSlow => (408, "request body timed out"),
                Pump::ClientBad(why) => {
                    cx.c.stats.dropped.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(client = %cx.c.peer, reason = why, "request rejected: bad body framing");
                    (400, "malformed request body")
                }
                Pump::TooLarge => (413, "request body too large"),
                Pump::Backend => {
                    claim.failed("write to backend failed");
                    (502, "backend error")
                }
            };
            if !sent {
                let _ = send_error(io, &mut b.wbuf, cx.c, rt, ops, status, detail, false).await;
            }
            (status, Some(name), false)
        }
    }
}

enum Pump {
    ClientGone,
    ClientSlow,
    ClientBad(&'static str),
    TooLarge,
    Backend,
}

/// Moves the rest of a request body from the client to the backend.
async fn pump_body<R, W>(
    crd: &mut R,
    uwr: &mut W,
    rbuf: &mut BytesMut,
    framer: &mut BodyFramer,
    rt: &HttpRt,
    limit: u64,
) -> Result<(), Pump>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    // A client that stops sending mid-body has `header_timeout` per read.
    let idle = rt.http.header_timeout;
    while !framer.done() {
        if rbuf.is_empty() {
            rbuf.reserve(STREAM_CHUNK);
            match tokio::time::timeout(idle, crd.read_buf(rbuf)).await {
                Err(_) => return Err(Pump::ClientSlow),
                Ok(Ok(0)) | Ok(Err(_)) => return Err(Pump::ClientGone),
                Ok(Ok(_)) => {}
            }
        }
        let n = framer
            .advance(rbuf)
            .map_err(|e| Pump::ClientBad(e.reason()))?;
        if limit > 0 && framer.payload > limit {
            return Err(Pump::TooLarge);
        }
        if uwr.write_all(&rbuf[..n]).await.is_err() {
            return Err(Pump::Backend);
        }
        rbuf.advance(n);
    }
    Ok(())
}

/// Writes the response head for the client and passes the body back.
/// Returns the outcome and whether the backend connection can be reused.
#[allow(clippy::too_many_arguments)]
async fn respond<'r, W, R>(
    cw: &mut W,
    wbuf: &mut Vec<u8>,
    urd: &mut R,
    ubuf: &mut BytesMut,
    uhead: &head::ResponseHead,
    claim: &Claim<'r>,
    cx: &Ctx<'_, 'r>,
) -> (Outcome<'r>, bool)
where
    W: AsyncWrite + Unpin,
    R: AsyncRead + Unpin,
{
    let (c, rt, hp) = (cx.c, cx.rt, cx.hp);
    let route = &rt.router.routes()[cx.idx];
    let pool = &hp.pool;
    let name = claim.backend().cfg.name.as_str();
    let status = uhead.status;
    // Stickiness: tandem's cookie, or learning the application's.
    let mut cookie_buf = None;
    if cx.set_cookie {
        if let Some(StickyConfig::Cookie { name: cname }) = &pool.cfg.http.sticky {
            let token = &hp.token_of[claim.index];
            cookie_buf = Some(sticky::set_cookie_header(
                cname,
                token,
                c.scheme == "https",
                None,
            ));
        }
    }
    if let (Some(StickyConfig::AppCookie { name: cname, .. }), Some(table)) =
        (&pool.cfg.http.sticky, &hp.table)
    {
        let fields = uhead.fields(ubuf);
        match sticky::learn_set_cookie_in(fields.get_all("set-cookie"), cname, SystemTime::now()) {
            Some(sticky::SetCookie::Set(session)) => table.learn(&session, name, Instant::now()),
            Some(sticky::SetCookie::Deleted) => {
                if let Some(old) = cx.app_session {
                    table.forget(old);
                }
            }
            None => {}
        }
    }
    let mut extra: [(&str, &[u8]); 2] = [("", &[]), ("", &[])];
    let mut n_extra = 0;
    if let Some(v) = &cookie_buf {
        extra[n_extra] = ("set-cookie", v.as_bytes());
        n_extra += 1;
    }
    if let Some(h) = rt.http.hsts.as_deref().filter(|_| c.scheme == "https") {
        extra[n_extra] = ("strict-transport-security", h.as_bytes());
        n_extra += 1;
    }
    let until_close = uhead.body == BodyKind::UntilClose;
    let close = !cx.client_keep || until_close || c.stop.is_cancelled();
    let hlen = uhead.len;
    wbuf.clear();
    write::response_head(
        wbuf,
        status,
        uhead.reason.of(ubuf),
        uhead.fields(ubuf),
        &ResponseEdits {
            via: "1.1 tandem",
            extra: &extra[..n_extra],
            ops: &route.response_headers,
            close,
            upgrade: false,
        },
    );
    let backend_keep = uhead.keep_alive;
    let mut framer = BodyFramer::new(uhead.body);
    ubuf.advance(hlen);
    let n = match framer.advance(ubuf) {
        Ok(n) => n,
        Err(_) => {
            claim.failed("malformed response body");
            let keep = send_error(
                cw,
                wbuf,
                c,
                rt,
                &route.response_headers,
                502,
                "backend error",
                false,
            )
            .await;
            return ((502, Some(name), keep), false);
        }
    };
    wbuf.extend_from_slice(&ubuf[..n]);
    ubuf.advance(n);
    if cw.write_all(wbuf).await.is_err() {
        return ((status, Some(name), false), false);
    }
    // The rest of the body, straight from the backend's socket.
    let idle = pool.cfg.http.response_timeout;
    while !framer.done() {
        ubuf.clear();
        ubuf.reserve(STREAM_CHUNK);
        let got = match tokio::time::timeout(idle, urd.read_buf(ubuf)).await {
            Err(_) => {
                claim.failed("response body timeout");
                return ((status, Some(name), false), false);
            }
            Ok(Err(_)) => {
                claim.failed("backend read error");
                return ((status, Some(name), false), false);
            }
            Ok(Ok(n)) => n,
        };
        if got == 0 {
            if framer.until_close() {
                break;
            }
            claim.failed("backend closed mid-body");
            return ((status, Some(name), false), false);
        }
        let n = match framer.advance(ubuf) {
            Ok(n) => n,
            Err(_) => {
                claim.failed("malformed response body");
                return ((status, Some(name), false), false);
            }
        };
        if cw.write_all(&ubuf[..n]).await.is_err() {
            return ((status, Some(name), false), false);
        }
        ubuf.advance(n);
    }
    let reusable = backend_keep && framer.done() && ubuf.is_empty();
    ((status, Some(name), !close), reusable)
}

mod slow {
    //! Requests the fast path hands to the hyper-based engine: cached
    //! routes and pools with HTTP/2 backends. The request becomes an
    //! `http::Request` (its body read first, bounded), the response is
    //! written back as HTTP/1.1.

    use super::*;
    use crate::dataplane::l7::server;
    use http_body_util::BodyExt;

    /// Bodies the slow path buffers: the listener's limit, or this.
    const MAX_BUFFERED: u64 = 64 * 1024 * 1024;

    pub(super) async fn forward<'r, S>(
        io: &mut S,
        b: &mut Bufs,
        c: &Client<'_>,
        rt: &'r Arc<HttpRt>,
        idx: usize,
        hp: &'r Arc<HttpPool>,
        target: String,
    ) -> Outcome<'r>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let route = &rt.router.routes()[idx];
        let ops = &route.response_headers;
        let limit = match rt.http.max_body_bytes {
            0 => MAX_BUFFERED,
            n => n.min(MAX_BUFFERED),
        };
        let buf = &b.rbuf[..];
        let mut req = http::Request::builder()
            .method(b.head.method.clone())
            .version(if b.head.minor == 0 {
                http::Version::HTTP_10
            } else {
                http::Version::HTTP_11
            })
            .uri(
                std::str::from_utf8(
                    &buf[b.head.path.0 as usize
                        ..b.head.query.map_or(b.head.path.1, |q| q.1) as usize],
                )
                .unwrap_or("/"),
            );
        for f in &b.head.fields {
            req = req.header(f.name(buf), f.value(buf));
        }
        let Ok(req) = req.body(()) else {
            let keep = forward_error(io, b, c, rt, ops, 400, "malformed request", true).await;
            return (400, None, keep);
        };
        let (mut parts, ()) = req.into_parts();
        if let Some(h) = b.head.host_str(buf) {
            if let Ok(v) = http::HeaderValue::from_str(h) {
                parts.headers.insert(http::header::HOST, v);
            }
        }
        // The body, read whole (bounded).
        let mut framer = BodyFramer::new(b.head.body);
        let mut body = Vec::new();
        let hlen = b.head.len;
        b.rbuf.advance(hlen);
        loop {
            let n = match framer.advance(&b.rbuf) {
                Ok(n) => n,
                Err(_) => {
                    let _ =
                        forward_error(io, b, c, rt, ops, 400, "malformed request body", true).await;
                    return (400, None, false);
                }
            };
            body.extend_from_slice(&b.rbuf[..n]);
            b.rbuf.advance(n);
            if framer.payload > limit {
                let _ = forward_error(io, b, c, rt, ops, 413, "request body too large", true).await;
                return (413, None, false);
            }
            if framer.done() {
                break;
            }
            b.rbuf.reserve(STREAM_CHUNK);
            match tokio::time::timeout(rt.http.header_timeout, io.read_buf(&mut b.rbuf)).await {
                Err(_) => {
                    let _ =
                        forward_error(io, b, c, rt, ops, 408, "request body timed out", true).await;
                    return (408, None, false);
                }
                Ok(Ok(0)) | Ok(Err(_)) => return (499, None, false),
                Ok(Ok(_)) => {}
            }
        }
        let payload = if b.head.body == BodyKind::Chunked {
            dechunk(&body)
        } else {
            body
        };
        let client_keep = b.head.keep_alive;
        let conn = server::Conn::for_fast_path(
            c.rt.clone(),
            c.peer,
            c.local,
            c.scheme,
            c.client_subject.map(str::to_string),
        );
        let body = http_body_util::Full::new(bytes::Bytes::from(payload))
            .map_err(|never| match never {})
            .boxed();
        let (resp, backend) = server::forward_slow(parts, body, &conn, rt, idx, hp, &target).await;
        let status = resp.status().as_u16();
        let backend: Option<&'r str> = backend.and_then(|n| {
            hp.pool
                .backends
                .iter()
                .find(|x| x.cfg.name == n)
                .map(|x| x.cfg.name.as_str())
        });
        let head_only = b.head.method == Method::HEAD;
        let keep = write_response(io, b, c, rt, resp, client_keep, head_only).await;
        (status, backend, keep)
    }

    /// The payload of a complete chunked body (framing already checked).
    fn dechunk(raw: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(raw.len());
        let mut i = 0;
        while i < raw.len() {
            let Some(eol) = raw[i..].windows(2).position(|w| w == b"\r\n") else {
                break;
            };
            let line = &raw[i..i + eol];
            let hex = line
                .split(|&b| b == b';' || b == b' ' || b == b'\t')
                .next()
                .unwrap_or(b"");
            let n = std::str::from_utf8(hex)
                .ok()
                .and_then(|h| usize::from_str_radix(h, 16).ok())
                .unwrap_or(0);
            i += eol + 2;
            if n == 0 {
                break;
            }
            let end = (i + n).min(raw.len());
            out.extend_from_slice(&raw[i..end]);
            i = end + 2;
        }
        out
    }

    /// Writes a hyper response as HTTP/1.1 (its length when known, else
    /// chunked); true when the connection may carry another request.
    async fn write_response<S>(
        io: &mut S,
        b: &mut Bufs,
        c: &Client<'_>,
        rt: &HttpRt,
        resp: http::Response<crate::dataplane::l7::upstream::Body>,
        client_keep: bool,
        head_only: bool,
    ) -> bool
    where
        S: AsyncWrite + Unpin,
    {
        use std::io::Write;
        let (parts, mut body) = resp.into_parts();
        let st = parts.status.as_u16();
        let close = !client_keep || c.stop.is_cancelled();
        let bodiless = head_only || st == 204 || st == 304 || (100..200).contains(&st);
        let length = parts
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let chunked = !bodiless && length.is_none();
        let head_only = bodiless;
        b.wbuf.clear();
        let _ = write!(b.wbuf, "HTTP/1.1 {st} {}\r\n", reason(st));
        for (n, v) in &parts.headers {
            if *n == http::header::CONNECTION || *n == http::header::TRANSFER_ENCODING {
                continue;
            }
            write::field(&mut b.wbuf, n.as_str().as_bytes(), v.as_bytes());
        }
        if let Some(h) = rt.http.hsts.as_deref().filter(|_| c.scheme == "https") {
            if !parts
                .headers
                .contains_key(http::header::STRICT_TRANSPORT_SECURITY)
            {
                write::field(&mut b.wbuf, b"strict-transport-security", h.as_bytes());
            }
        }
        if chunked {
            b.wbuf.extend_from_slice(b"transfer-encoding: chunked\r\n");
        }
        if close {
            b.wbuf.extend_from_slice(b"connection: close\r\n");
        }
        b.wbuf.extend_from_slice(b"\r\n");
        if io.write_all(&b.wbuf).await.is_err() {
            return false;
        }
        if head_only {
            return !close;
        }
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else {
                return false;
            };
            let Ok(data) = frame.into_data() else {
                continue;
            };
            if data.is_empty() {
                continue;
            }
            let ok = if chunked {
                b.wbuf.clear();
                let _ = write!(b.wbuf, "{:x}\r\n", data.len());
                io.write_all(&b.wbuf).await.is_ok()
                    && io.write_all(&data).await.is_ok()
                    && io.write_all(b"\r\n").await.is_ok()
            } else {
                io.write_all(&data).await.is_ok()
            };
            if !ok {
                return false;
            }
        }
        if chunked && io.write_all(b"0\r\n\r\n").await.is_err() {
            return false;
        }
        !close
    }
}
