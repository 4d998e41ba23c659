//! The HTTP engine.
//!
//! Lifecycle of a connection: the accept loop admits it (listener limit and
//! queue, as for TCP), an https listener runs the TLS handshake (SNI picks
//! the certificate, ALPN offers h2), hyper serves HTTP/1.1 or HTTP/2 (h2c
//! with prior knowledge on plain listeners). Each request takes the
//! listener's current snapshot, so a reload changes routes and pools for
//! new requests while requests in flight finish on the old ones. Per
//! request: framing checks (smuggling) → route → respond / redirect / proxy
//! (sticky or balancer pick, retries of idempotent requests on connect
//! failure, response cache, WebSocket tunnels) → response header rules.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use http_body_util::{BodyExt, Empty, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use serde::Serialize;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::cache::{self, Cache, Coalescer, RequestPolicy};
use super::headers::{self, ForwardedInfo};
use super::router::{self, Action, RequestView, Route, Router};
use super::sticky;
use super::upstream::{Body, BoxError, Upstream};
use crate::balance::client_key;
use crate::config::{HttpListenerConfig, ListenerConfig, StickyConfig};
use crate::dataplane::accept::admit;
use crate::dataplane::l7::router::build_route;
use crate::pool::{Lease, PickError, Pool};
use crate::stats::ListenerStats;

/// Per-route counters, reported in status and metrics.
#[derive(Debug, Default, Serialize)]
pub struct RouteStats {
    pub requests: AtomicU64,
    /// 1xx, 2xx, 3xx, 4xx, 5xx.
    pub by_class: [AtomicU64; 5],
}

impl RouteStats {
    fn record(&self, status: StatusCode) {
        self.record_code(status.as_u16());
    }

    pub fn record_code(&self, status: u16) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let class = (status / 100).clamp(1, 5) as usize - 1;
        self.by_class[class].fetch_add(1, Ordering::Relaxed);
    }
}

/// A pool as HTTP sees it: the balancer's pool, its pooled client and
/// sticky-session state. Shared by every listener using the pool.
pub struct HttpPool {
    pub pool: Arc<Pool>,
    pub upstream: Arc<Upstream>,
    /// Opaque cookie token → backend index (cookie mode).
    pub tokens: HashMap<String, usize>,
    /// Backend index → token.
    pub token_of: Vec<String>,
    pub table: Option<Arc<sticky::StickyTable>>,
}

impl HttpPool {
    pub fn new(
        pool: Arc<Pool>,
        upstream: Arc<Upstream>,
        table: Option<Arc<sticky::StickyTable>>,
    ) -> HttpPool {
        // Keyed by [global] sticky_secret, the same on both nodes of a
        // pair, so a failover keeps every client's backend; unset, a
        // per-boot key (warned once).
        let key = sticky::StickyKey::new(pool.cfg.http.sticky_secret.as_ref());
        let token_of: Vec<String> = pool
            .backends
            .iter()
            .map(|b| sticky::backend_token(pool.name(), &b.cfg.name, &key))
            .collect();
        let tokens = token_of
            .iter()
            .cloned()
            .enumerate()
            .map(|(i, t)| (t, i))
            .collect();
        HttpPool {
            pool,
            upstream,
            tokens,
            token_of,
            table,
        }
    }
}

/// What requests of one listener use; swapped on reload.
pub struct HttpRt {
    pub cfg: ListenerConfig,
    pub http: HttpListenerConfig,
    pub router: Router,
    pub route_stats: Vec<Arc<RouteStats>>,
    pub caches: Vec<Option<Arc<Cache>>>,
    /// Per-route request rate tables (kept across reloads like the caches).
    pub route_limits: Vec<Option<Arc<crate::dataplane::policy::RateLimiter>>>,
    pub pools: HashMap<String, Arc<HttpPool>>,
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    pub limit: Option<Arc<Semaphore>>,
    /// ACLs, PROXY from clients, per-client limits.
    pub policy: crate::dataplane::policy::ClientPolicy,
    pub access_log: Option<crate::accesslog::AccessLog>,
    coalescer: Arc<Coalescer<cache::CacheKey, ()>>,
    pub(crate) request_id: Option<HeaderName>,
}

impl HttpRt {
    /// The route's own request rate for this client (true when unlimited).
    pub fn route_allows(&self, idx: usize, ip: std::net::IpAddr) -> bool {
        self.route_limits[idx]
            .as_ref()
            .is_none_or(|l| l.take(ip, std::time::Instant::now()))
    }

    /// Whether the client is a proxy whose forwarding headers we keep.
    pub fn trusts(&self, ip: std::net::IpAddr) -> bool {
        self.http.trusted_proxies.iter().any(|c| c.contains(ip))
    }
}

impl HttpRt {
    /// Builds a snapshot; route counters and caches carry over from
    /// `previous` for routes with the same name and settings.
    pub fn new(
        cfg: ListenerConfig,
        pools: &HashMap<String, Arc<HttpPool>>,
        tls: Option<Arc<rustls::ServerConfig>>,
        previous: Option<&HttpRt>,
    ) -> Result<HttpRt, String> {
        let http = cfg
            .http
            .clone()
            .ok_or_else(|| format!("listener {} is not an http listener", cfg.name))?;
        let mut routes: Vec<Route> = Vec::new();
        let mut route_stats = Vec::new();
        let mut caches = Vec::new();
        let mut route_limits = Vec::new();
        for rc in &http.routes {
            let route = build_route(rc).map_err(|(k, e)| format!("route {}: {k}: {e}", rc.name))?;
            let prev = previous.and_then(|p| {
                p.http.routes.iter().position(|o| o == rc).map(|i| {
                    (
                        p.route_stats[i].clone(),
                        p.caches[i].clone(),
                        p.route_limits[i].clone(),
                    )
                })
            });
            let (stats, cache, limit) = match prev {
                Some(x) => x,
                None => (
                    Arc::new(RouteStats::default()),
                    rc.cache.map(|b| Arc::new(Cache::new(b))),
                    rc.rate_limit
                        .map(|r| Arc::new(crate::dataplane::policy::RateLimiter::new(r))),
                ),
            };
            route_limits.push(limit);
            routes.push(route);
            route_stats.push(stats);
            caches.push(cache);
        }
        let limit = match previous {
            Some(p) if p.cfg.max_connections == cfg.max_connections => p.limit.clone(),
            _ => (cfg.max_connections > 0)
                .then(|| Arc::new(Semaphore::new(cfg.max_connections as usize))),
        };
        let used: HashMap<String, Arc<HttpPool>> = routes
            .iter()
            .filter_map(|r| match &r.action {
                Action::Forward { pool, split, .. } => Some(
                    std::iter::once(pool)
                        .chain(split.iter().map(|(p, _)| p))
                        .filter_map(|p| pools.get(p).map(|hp| (p.clone(), hp.clone())))
                        .collect::<Vec<_>>(),
                ),
                _ => None,
            })
            .flatten()
            .collect();
        let policy = crate::dataplane::policy::ClientPolicy::new(
            cfg.acl.clone(),
            cfg.accept_proxy.clone(),
            cfg.rate_limit,
            previous.map(|p| &p.policy),
        );
        let request_id = match &http.request_id {
            Some(h) => Some(HeaderName::from_bytes(h.as_bytes()).map_err(|e| e.to_string())?),
            None => None,
        };
        Ok(HttpRt {
            router: Router::new(routes),
            route_stats,
            caches,
            route_limits,
            pools: used,
            tls: tls.map(tokio_rustls::TlsAcceptor::from),
            limit,
            policy,
            access_log: cfg
                .access_log
                .as_ref()
                .map(crate::accesslog::AccessLog::new),
            coalescer: previous.map(|p| p.coalescer.clone()).unwrap_or_default(),
            request_id,
            cfg,
            http,
        })
    }
}

/// Per-connection facts every request of the connection needs.
pub(crate) struct Conn {
    rt: Arc<ArcSwap<HttpRt>>,
    stats: Arc<ListenerStats>,
    peer: SocketAddr,
    local: SocketAddr,
    scheme: &'static str,
    in_flight: AtomicU64,
    activity: AtomicU64,
    /// The verified client certificate's subject (mTLS listeners).
    client_subject: Option<String>,
}

impl Conn {
    /// A connection context for requests the HTTP/1 fast path hands to the
    /// hyper engine (no framing scanner: the fast path parsed the head).
    pub(crate) fn for_fast_path(
        rt: Arc<ArcSwap<HttpRt>>,
        peer: SocketAddr,
        local: SocketAddr,
        scheme: &'static str,
        client_subject: Option<String>,
    ) -> Arc<Conn> {
        Arc::new(Conn {
            client_subject,
            rt,
            stats: Arc::new(ListenerStats::default()),
            peer,
            local,
            scheme,
            in_flight: AtomicU64::new(0),
            activity: AtomicU64::new(0),
        })
    }
}

pub async fn serve(
    listener: TcpListener,
    rt: Arc<ArcSwap<HttpRt>>,
    stats: Arc<ListenerStats>,
    stop: CancellationToken,
    tracker: TaskTracker,
) {
    let mut acceptor = crate::dataplane::accept::Acceptor::default();
    loop {
        let Some((stream, peer)) = acceptor
            .next(&stop, || rt.load().cfg.name.clone(), || listener.accept())
            .await
        else {
            break;
        };
        let snap = rt.load_full();
        stats.total.fetch_add(1, Ordering::Relaxed);
        let Some(admission) = admit(snap.limit.as_ref(), snap.cfg.queue_size as u64, &stats) else {
            continue;
        };
        let (rt, stats, stop) = (rt.clone(), stats.clone(), stop.clone());
        tracker.spawn(async move {
            // Waiting for a slot happens here, never in the accept loop.
            let Some(_slot) = admission.slot(snap.cfg.queue_timeout, &stats).await else {
                return;
            };
            stats.active.fetch_add(1, Ordering::Relaxed);
            connection(stream, peer, rt, stats.clone(), stop).await;
            stats.active.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// Counts bytes moving on the client connection, for the keep-alive idle
/// timeout (which must not fire while a request is in flight).
struct Tracked<T> {
    inner: T,
    conn: Arc<Conn>,
    /// The client's HTTP/2 frames, watched for floods.
    guard: super::h2guard::FrameGuard,
}

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Tracked<T> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = std::pin::Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.conn.activity.fetch_add(1, Ordering::Relaxed);
            let this = &mut *self;
            if let Err(abuse) = this.guard.feed(&buf.filled()[before..], Instant::now()) {
                // The bytes are not handed on: the connection ends here.
                buf.set_filled(before);
                this.conn.stats.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(client = %this.conn.peer, reason = abuse.reason(), "HTTP/2 client closed for abuse");
                return std::task::Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    abuse.reason(),
                )));
            }
        }
        r
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Tracked<T> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.conn.activity.fetch_add(1, Ordering::Relaxed);
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.conn.activity.fetch_add(1, Ordering::Relaxed);
        std::pin::Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    rt: Arc<ArcSwap<HttpRt>>,
    stats: Arc<ListenerStats>,
    stop: CancellationToken,
) {
    let _ = stream.set_nodelay(true);
    let snap = rt.load_full();
    let idle = snap.cfg.idle_timeout;
    let mut local = stream.local_addr().unwrap_or(snap.cfg.bind);
    let mut peer = peer;
    // Held for the connection's life: its slot in the per-client limit.
    let mut _ticket = None;
    if !snap.policy.is_open() {
        let Ok(a) = snap.policy.admit(&stream, peer, false, &stats.policy).await else {
            return;
        };
        peer = a.peer;
        local = a.local.unwrap_or(local);
        _ticket = a._ticket;
    }
    let Some(acceptor) = &snap.tls else {
        // Plain: HTTP/1 on the fast path; h2c with prior knowledge goes to
        // hyper with the bytes already read.
        let mut stream = super::deadline::SendDeadline::new(stream, idle);
        let c = super::h1::Client {
            rt: &rt,
            stats: &stats,
            peer,
            local,
            scheme: "http",
            stop: &stop,
            h2c: snap.http.http2,
            client_subject: None,
        };
        if let super::h1::End::H2(prefix) = super::h1::serve(&mut stream, c).await {
            let io = Box::new(Rewind {
                prefix: Some(prefix.freeze()),
                inner: stream,
            });
            serve_hyper(io, peer, local, "http", None, rt, stats, stop).await;
        }
        return;
    };
    let stream = super::deadline::SendDeadline::new(stream, idle);
    let mut tls =
        match tokio::time::timeout(snap.http.header_timeout, acceptor.accept(stream)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::debug!(client = %peer, error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!(client = %peer, "TLS handshake timed out");
                return;
            }
        };
    let subject = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .and_then(|c| crate::dataplane::tls::subject_dn(c));
    if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
        serve_hyper(
            Box::new(tls),
            peer,
            local,
            "https",
            subject,
            rt,
            stats,
            stop,
        )
        .await;
        return;
    }
    let c = super::h1::Client {
        rt: &rt,
        stats: &stats,
        peer,
        local,
        scheme: "https",
        stop: &stop,
        h2c: false,
        client_subject: subject.as_deref(),
    };
    super::h1::serve(&mut tls, c).await;
}

/// Replays bytes already read from a connection before reading on.
struct Rewind<T> {
    prefix: Option<Bytes>,
    inner: T,
}

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Rewind<T> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if let Some(mut p) = self.prefix.take() {
            let n = p.len().min(buf.remaining());
            buf.put_slice(&p.split_to(n));
            if !p.is_empty() {
                self.prefix = Some(p);
            }
            return std::task::Poll::Ready(Ok(()));
        }
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Rewind<T> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Serves a connection with hyper: HTTP/2 clients (ALPN h2, h2c).
#[allow(clippy::too_many_arguments)]
async fn serve_hyper(
    io: Box<dyn ClientIo>,
    peer: SocketAddr,
    local: SocketAddr,
    scheme: &'static str,
    client_subject: Option<String>,
    rt: Arc<ArcSwap<HttpRt>>,
    stats: Arc<ListenerStats>,
    stop: CancellationToken,
) {
    let snap = rt.load_full();
    let conn = Arc::new(Conn {
        rt,
        stats,
        peer,
        local,
        scheme,
        in_flight: AtomicU64::new(0),
        activity: AtomicU64::new(0),
        client_subject,
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(snap.http.header_timeout)
        .max_buf_size(snap.http.max_header_bytes.max(8192))
        .max_headers(snap.http.max_headers)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(snap.http.max_header_bytes.min(u32::MAX as usize) as u32)
        // Flood limits (rapid reset, CONTINUATION, SETTINGS/PING floods):
        // bounded streams, bounded pending resets, bounded send buffers.
        .max_concurrent_streams(256)
        .max_pending_accept_reset_streams(64)
        .max_local_error_reset_streams(Some(256))
        .max_send_buf_size(256 * 1024);
    let builder = builder.http2_only();
    let svc_conn = conn.clone();
    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
        let c = svc_conn.clone();
        async move { Ok::<_, Infallible>(handle(req, &c).await) }
    });
    let io = TokioIo::new(Tracked {
        inner: io,
        conn: conn.clone(),
        guard: super::h2guard::FrameGuard::new(Instant::now()),
    });
    let served = builder.serve_connection_with_upgrades(io, svc);
    // Runs the connection to completion, closing it gracefully when idle
    // for keepalive_timeout (no request in flight, no byte moving) or when
    // the listener stops.
    let mut served = std::pin::pin!(served);
    let keepalive = snap.http.keepalive_timeout;
    let step = (keepalive / 4).max(Duration::from_millis(50));
    let mut seen = conn.activity.load(Ordering::Relaxed);
    let mut quiet_since = Instant::now();
    let mut closing = false;
    loop {
        tokio::select! {
            r = served.as_mut() => {
                if let Err(e) = r {
                    if sent_goaway(e.as_ref()) {
                        conn.stats.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                    tracing::debug!(client = %conn.peer, error = %e, "http connection ended with error");
                }
                return;
            }
            _ = stop.cancelled(), if !closing => {
                closing = true;
                served.as_mut().graceful_shutdown();
            }
            _ = tokio::time::sleep(step), if !closing => {
                let now = conn.activity.load(Ordering::Relaxed);
                if now != seen || conn.in_flight.load(Ordering::Relaxed) > 0 {
                    seen = now;
                    quiet_since = Instant::now();
                } else if quiet_since.elapsed() >= keepalive {
                    closing = true;
                    served.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// The connection ended because tandem's HTTP/2 layer sent a GOAWAY for the
/// client's protocol error (too many resets, oversized headers, bad frames):
/// counted with the listener's dropped requests.
fn sent_goaway(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(h2) = err.downcast_ref::<h2::Error>() {
            return h2.is_go_away() && !h2.is_remote();
        }
        cur = err.source();
    }
    false
}

/// The client side of a connection, plain TCP or TLS.
trait ClientIo: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> ClientIo for T {}

fn full(body: impl Into<Bytes>) -> Body {
    Full::new(body.into())
        .map_err(|never| match never {})
        .boxed()
}

fn empty() -> Body {
    Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed()
}

/// A response tandem generates itself (errors, redirects, fixed replies).
fn simple(status: StatusCode, body: String, content_type: &str) -> Response<Body> {
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    if let Ok(v) = HeaderValue::from_str(content_type) {
        r.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    r
}

fn error(rt: &HttpRt, status: StatusCode, detail: &str) -> Response<Body> {
    let body = rt
        .http
        .error_pages
        .get(&status.as_u16())
        .cloned()
        .unwrap_or_else(|| {
            format!(
                "{} {}\n{detail}\n",
                status.as_u16(),
                status.canonical_reason().unwrap_or("")
            )
        });
    let mut r = simple(status, body, "text/plain; charset=utf-8");
    if status == StatusCode::SERVICE_UNAVAILABLE {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    }
    r
}

/// Marks a response so hyper closes the connection after it (bad framing).
fn too_many_requests(rt: &HttpRt) -> Response<Body> {
    let mut r = error(
        rt,
        StatusCode::TOO_MANY_REQUESTS,
        "request rate limit exceeded",
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

fn closing(mut r: Response<Body>) -> Response<Body> {
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

async fn handle(req: Request<Incoming>, conn: &Arc<Conn>) -> Response<Body> {
    conn.in_flight.fetch_add(1, Ordering::Relaxed);
    let rt = conn.rt.load_full();
    let started = Instant::now();
    // Copied only for the access log: most nodes run without it.
    let logged = rt
        .access_log
        .is_some()
        .then(|| (req.method().clone(), req.uri().path().to_string()));
    let (resp, route_idx, backend) = route_request(req, conn, &rt).await;
    let mut resp = resp;
    if let Some(hsts) = rt.http.hsts.as_deref().filter(|_| conn.scheme == "https") {
        if let Ok(v) = HeaderValue::from_str(hsts) {
            resp.headers_mut()
                .insert(header::STRICT_TRANSPORT_SECURITY, v);
        }
    }
    if let Some(i) = route_idx {
        rt.route_stats[i].record(resp.status());
    }
    conn.stats.request_seconds.observe(started.elapsed());
    if let (Some((method, path)), Some(al)) = (logged, &rt.access_log) {
        al.log(&crate::accesslog::Entry {
            time: std::time::SystemTime::now(),
            listener: &rt.cfg.name,
            protocol: conn.scheme,
            client: conn.peer,
            method: method.as_str(),
            path: &path,
            status: resp.status().as_u16(),
            route: route_idx
                .map(|i| rt.router.routes()[i].name.as_str())
                .unwrap_or("-"),
            backend: backend.as_deref().unwrap_or("-"),
            duration: started.elapsed(),
            bytes_in: None,
            bytes_out: None,
            reason: "-",
        });
    }
    conn.in_flight.fetch_sub(1, Ordering::Relaxed);
    resp
}

/// Returns the response, the index of the route taken and the backend.
async fn route_request(
    req: Request<Incoming>,
    conn: &Arc<Conn>,
    rt: &Arc<HttpRt>,
) -> (Response<Body>, Option<usize>, Option<String>) {
    if let Err(e) = headers::check_request_framing(req.headers(), req.version()) {
        tracing::debug!(client = %conn.peer, reason = e.reason(), "request rejected: bad framing");
        conn.stats.dropped.fetch_add(1, Ordering::Relaxed);
        return (
            closing(error(rt, StatusCode::BAD_REQUEST, &e.to_string())),
            None,
            None,
        );
    }
    if !rt.policy.request(conn.peer.ip()) {
        conn.stats
            .policy
            .count(crate::dataplane::policy::Refusal::RateLimited);
        let mut r = error(
            rt,
            StatusCode::TOO_MANY_REQUESTS,
            "request rate limit exceeded",
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return (r, None, None);
    }
    let (parts, body) = req.into_parts();
    let mut view = RequestView::from_parts(&parts);
    view.client = Some(conn.peer.ip());
    let Some((idx, route)) = rt.router.route(&view) else {
        return (
            error(rt, StatusCode::NOT_FOUND, "no route matches this request"),
            None,
            None,
        );
    };
    if !rt.route_allows(idx, conn.peer.ip()) {
        conn.stats
            .policy
            .count(crate::dataplane::policy::Refusal::RateLimited);
        return (too_many_requests(rt), Some(idx), None);
    }
    let mut resp = match &route.action {
        Action::Respond {
            status,
            body,
            content_type,
        } => simple(
            StatusCode::from_u16(*status).unwrap_or(StatusCode::OK),
            body.clone(),
            content_type
                .as_deref()
                .unwrap_or("text/plain; charset=utf-8"),
        ),
        Action::Redirect { status, location } => {
            let loc = router::expand_location(location, &view, conn.scheme);
            let mut r = simple(
                StatusCode::from_u16(*status).unwrap_or(StatusCode::MOVED_PERMANENTLY),
                String::new(),
                "text/plain",
            );
            if let Ok(v) = HeaderValue::from_str(&loc) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            r
        }
        Action::Forward {
            pool,
            split,
            split_sticky,
            strip_prefix,
            rewrite_path,
        } => {
            let pool = router::split_pool(pool, split, *split_sticky, conn.peer.ip());
            let Some(hp) = rt.pools.get(pool) else {
                return (
                    error(rt, StatusCode::BAD_GATEWAY, "pool missing"),
                    Some(idx),
                    None,
                );
            };
            let path = router::rewritten_path(
                strip_prefix.as_deref(),
                rewrite_path.as_deref(),
                parts.uri.path(),
                route.matcher.path.as_ref(),
            );
            let target = match parts.uri.query() {
                Some(q) => format!("{path}?{q}"),
                None => path,
            };
            let body = body.map_err(|e| Box::new(e) as BoxError).boxed();
            let (r, backend) = forward_slow(parts, body, conn, rt, idx, hp, &target).await;
            return (r, Some(idx), backend);
        }
    };
    headers::apply(&route.response_headers, resp.headers_mut());
    (resp, Some(idx), None)
}

/// Forwards a routed request through the hyper engine (cache, HTTP/2
/// backends, HTTP/2 clients) and applies the route's response rules.
pub(crate) async fn forward_slow(
    parts: http::request::Parts,
    body: Body,
    conn: &Arc<Conn>,
    rt: &Arc<HttpRt>,
    idx: usize,
    hp: &Arc<HttpPool>,
    target: &str,
) -> (Response<Body>, Option<String>) {
    let route = &rt.router.routes()[idx];
    let encoding = route.compress.as_ref().and(super::compress::choose(
        parts
            .headers
            .get_all(header::ACCEPT_ENCODING)
            .iter()
            .map(|v| v.as_bytes()),
    ));
    let method = parts.method.clone();
    let (mut r, backend) = match &rt.caches[idx] {
        Some(cache) => {
            cached(
                parts,
                body,
                conn.clone(),
                rt.clone(),
                idx,
                hp.clone(),
                target.to_string(),
                cache.clone(),
            )
            .await
        }
        None => proxy(parts, Some(body), conn, rt, route, hp, target).await,
    };
    if let Some(c) = &route.compress {
        r = super::compress::apply(c, &method, encoding, r);
    }
    headers::apply(&route.response_headers, r.headers_mut());
    (r, backend)
}

fn idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

/// A response body that holds the backend lease until it is fully sent.
struct LeasedBody {
    inner: Incoming,
    _lease: Lease,
}

impl hyper::body::Body for LeasedBody {
    type Data = Bytes;
    type Error = BoxError;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, BoxError>>> {
        std::pin::Pin::new(&mut self.inner)
            .poll_frame(cx)
            .map_err(|e| Box::new(e) as BoxError)
    }
    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }
    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// Picks the backend: sticky first (while it is serving), else the pool's
/// algorithm. Returns the lease and, for cookie stickiness, whether the
/// client still needs the cookie.
async fn pick(
    hp: &HttpPool,
    parts: &http::request::Parts,
    conn: &Conn,
    tried: &[usize],
) -> Result<(Lease, bool), PickError> {
    let key = client_key(conn.peer.ip());
    let cfg = &hp.pool.cfg.http;
    let wanted: Option<usize> = match &cfg.sticky {
        Some(StickyConfig::Cookie { name }) => {
            sticky::cookie_value(&parts.headers, name).and_then(|t| hp.tokens.get(t).copied())
        }
        Some(StickyConfig::AppCookie { name, .. }) => sticky::cookie_value(&parts.headers, name)
            .and_then(|session| hp.table.as_ref()?.lookup(session, Instant::now()))
            .and_then(|b| hp.pool.backends.iter().position(|x| x.cfg.name == b)),
        _ => None,
    };
    if let Some(i) = wanted.filter(|i| !tried.contains(i)) {
        // Honour the affinity only while that backend serves; otherwise
        // fall back to the algorithm (and, in cookie mode, re-issue).
        let others: Vec<usize> = (0..hp.pool.backends.len())
            .filter(|j| *j != i)
            .chain(tried.iter().copied())
            .collect();
        if hp.pool.backends[i].serving() {
            if let Ok(l) = hp.pool.try_lease(key, &others) {
                return Ok((l, false));
            }
        }
    }
    let lease = hp.pool.lease(key, tried).await?;
    let needs_cookie = matches!(cfg.sticky, Some(StickyConfig::Cookie { .. }));
    Ok((lease, needs_cookie))
}

type Proxied = (Response<Body>, Option<String>);

/// Forwards one request. `body` is None when it was already consumed (a
/// coalesced cache fill re-using a bodiless GET). Boxed with an explicit
/// `Send` so callers that are generic over futures (the cache coalescer)
/// do not run into rustc's higher-ranked lifetime inference.
fn proxy<'a>(
    parts: http::request::Parts,
    body: Option<Body>,
    conn: &'a Arc<Conn>,
    rt: &'a HttpRt,
    route: &'a Route,
    hp: &'a HttpPool,
    target: &'a str,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Proxied> + Send + 'a>> {
    Box::pin(proxy_inner(parts, body, conn, rt, route, hp, target))
}

async fn proxy_inner(
    parts: http::request::Parts,
    body: Option<Body>,
    conn: &Arc<Conn>,
    rt: &HttpRt,
    route: &Route,
    hp: &HttpPool,
    target: &str,
) -> Proxied {
    let pool = &hp.pool;
    let websocket = headers::is_websocket_upgrade(&parts.headers, &parts.method, parts.version);
    let mut parts = parts;
    let client_upgrade = if websocket {
        // Take the client side's upgrade handle before the request is gone.
        let mut tmp = Request::from_parts(parts, ());
        let up = hyper::upgrade::on(&mut tmp);
        parts = tmp.into_parts().0;
        Some(up)
    } else {
        None
    };
    // Bodies: a declared length over the limit is refused up front; a
    // chunked body is cut when it crosses the limit.
    let limit = rt.http.max_body_bytes;
    if limit > 0 {
        let declared = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > limit) {
            return (
                closing(error(
                    rt,
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "request body too large",
                )),
                None,
            );
        }
    }
    let bodiless = body.as_ref().is_none_or(hyper::body::Body::is_end_stream)
        || parts
            .headers
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v == "0");
    let retryable = idempotent(&parts.method) && bodiless;
    let mut body: Option<Body> = body.map(|b| {
        if limit > 0 {
            Limited::new(b, limit as usize).boxed()
        } else {
            b
        }
    });
    // Headers for the backend.
    let host = RequestView::from_parts(&parts).host.map(str::to_string);
    let mut h = parts.headers.clone();
    headers::strip_hop_by_hop(&mut h, websocket);
    if !rt.trusts(conn.peer.ip()) {
        // Only a trusted proxy may tell us who the client was.
        h.remove(header::FORWARDED);
        h.remove(HeaderName::from_static("x-forwarded-for"));
        if let Some(name) = &rt.request_id {
            h.remove(name);
        }
    }
    if let Some(name) = &rt.http.tls_opts.client_subject_header {
        // Only tandem says who the client certificate belongs to.
        if let Ok(name) = HeaderName::from_bytes(name.as_bytes()) {
            h.remove(&name);
            if let Some(v) = conn
                .client_subject
                .as_deref()
                .and_then(|s| HeaderValue::from_str(s).ok())
            {
                h.insert(name, v);
            }
        }
    }
    if let Some(host) = &host {
        if let Ok(v) = HeaderValue::from_str(host) {
            h.insert(header::HOST, v);
        }
    }
    headers::add_forwarding(
        &mut h,
        &ForwardedInfo {
            client: conn.peer.ip(),
            proto: conn.scheme,
            host: host.as_deref(),
            by: Some(conn.local),
        },
        "1.1 tandem",
        rt.http.forwarded,
    );
    if let Some(name) = &rt.request_id {
        headers::ensure_request_id(&mut h, name, new_request_id);
    }
    headers::apply(&route.request_headers, &mut h);
    let mut tried: Vec<usize> = Vec::new();
    loop {
        let (lease, set_cookie) = match pick(hp, &parts, conn, &tried).await {
            Ok(x) => x,
            Err(PickError::NoBackend) => {
                pool.shared.no_backend.fetch_add(1, Ordering::Relaxed);
                let status = if tried.is_empty() {
                    StatusCode::SERVICE_UNAVAILABLE
                } else {
                    StatusCode::BAD_GATEWAY
                };
                return (error(rt, status, "no backend available"), None);
            }
            Err(PickError::Saturated) => {
                return (
                    error(rt, StatusCode::SERVICE_UNAVAILABLE, "all backends are busy"),
                    None,
                )
            }
        };
        let backend = lease.name.clone();
        let uri = format!("{}://{}{}", hp.upstream.scheme, lease.addr, target);
        let mut up = Request::builder()
            .method(parts.method.clone())
            .uri(uri)
            .version(if pool.cfg.http.http2 {
                Version::HTTP_2
            } else {
                Version::HTTP_11
            });
        if let Some(hm) = up.headers_mut() {
            // A request that cannot be retried gets the headers themselves.
            *hm = if retryable && tried.len() < pool.cfg.retries as usize && pool.backends.len() > 1
            {
                h.clone()
            } else {
                std::mem::take(&mut h)
            };
            if pool.cfg.http.http2 {
                hm.remove(header::HOST);
            }
        }
        let req_body = body.take().unwrap_or_else(empty);
        let up = match up.body(req_body) {
            Ok(r) => r,
            Err(e) => return (error(rt, StatusCode::BAD_REQUEST, &e.to_string()), None),
        };
        let t0 = Instant::now();
        let sent = tokio::time::timeout(
            pool.cfg.http.response_timeout,
            hp.upstream.client.request(up),
        )
        .await;
        let resp = match sent {
            Err(_) => {
                lease.failed("response timeout");
                return (
                    error(
                        rt,
                        StatusCode::GATEWAY_TIMEOUT,
                        "backend did not answer in time",
                    ),
                    Some(backend),
                );
            }
            Ok(Err(e)) if e.is_connect() => {
                if !crate::net::local_shortage(&e) {
                    lease.failed(&e.to_string());
                }
                tried.push(lease.index);
                if retryable && tried.len() <= pool.cfg.retries as usize {
                    lease.retried();
                    continue;
                }
                return (
                    error(rt, StatusCode::BAD_GATEWAY, "cannot connect to a backend"),
                    Some(backend),
                );
            }
            Ok(Err(e)) => {
                tracing::debug!(backend = %backend, error = %e, "upstream request failed");
                return (
                    error(rt, StatusCode::BAD_GATEWAY, "backend error"),
                    Some(backend),
                );
            }
            Ok(Ok(r)) => r,
        };
        // Time to response headers feeds least_response_time.
        lease.connected(t0.elapsed());
        lease.responded(resp.status().as_u16());
        let (mut rparts, rbody) = resp.into_parts();
        if rparts.status == StatusCode::SWITCHING_PROTOCOLS {
            if let Some(client_up) = client_upgrade {
                let backend_up = hyper::upgrade::on(Response::from_parts(rparts.clone(), rbody));
                tunnel(client_up, backend_up, lease);
                let mut r = Response::from_parts(rparts, empty());
                headers::strip_hop_by_hop(r.headers_mut(), true);
                return (r, Some(backend));
            }
        }
        headers::strip_hop_by_hop(&mut rparts.headers, false);
        if let Ok(v) = HeaderValue::from_str("1.1 tandem") {
            rparts.headers.append(header::VIA, v);
        }
        if set_cookie {
            if let Some(StickyConfig::Cookie { name }) = &pool.cfg.http.sticky {
                let token = &hp.token_of[lease.index];
                rparts.headers.append(
                    header::SET_COOKIE,
                    sticky::set_cookie_header(name, token, conn.scheme == "https", None),
                );
            }
        }
        if let (Some(StickyConfig::AppCookie { name, .. }), Some(table)) =
            (&pool.cfg.http.sticky, &hp.table)
        {
            match sticky::learn_set_cookie(&rparts.headers, name, SystemTime::now()) {
                Some(sticky::SetCookie::Set(session)) => {
                    table.learn(&session, &backend, Instant::now())
                }
                Some(sticky::SetCookie::Deleted) => {
                    if let Some(old) = sticky::cookie_value(&parts.headers, name) {
                        table.forget(old);
                    }
                }
                None => {}
            }
        }
        let body = LeasedBody {
            inner: rbody,
            _lease: lease,
        }
        .boxed();
        return (Response::from_parts(rparts, body), Some(backend));
    }
}

fn new_request_id() -> HeaderValue {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let t = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let id = format!(
        "{:016x}{:08x}",
        t ^ (std::process::id() as u64) << 40,
        n as u32
    );
    HeaderValue::from_str(&id).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

/// A WebSocket (or other upgraded) connection: bytes both ways until
/// either side closes. The lease keeps the backend's connection count.
fn tunnel(client: hyper::upgrade::OnUpgrade, backend: hyper::upgrade::OnUpgrade, lease: Lease) {
    tokio::spawn(async move {
        let _lease = lease;
        let (c, b) = match tokio::try_join!(client, backend) {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!(error = %e, "upgrade failed");
                return;
            }
        };
        let mut c = TokioIo::new(c);
        let mut b = TokioIo::new(b);
        let _ = tokio::io::copy_bidirectional(&mut c, &mut b).await;
    });
}

/// Serves from the route's cache, or fetches (coalescing concurrent misses
/// for the same key into one upstream request) and stores.
#[allow(clippy::too_many_arguments)]
async fn cached(
    parts: http::request::Parts,
    body: Body,
    conn: Arc<Conn>,
    rt: Arc<HttpRt>,
    idx: usize,
    hp: Arc<HttpPool>,
    target: String,
    store: Arc<Cache>,
) -> (Response<Body>, Option<String>) {
    let route = &rt.router.routes()[idx];
    let policy = cache::request_policy(&parts.method, &parts.headers);
    let host = RequestView::from_parts(&parts)
        .host
        .unwrap_or("")
        .to_ascii_lowercase();
    let key = match (policy, cache::base_key(&parts.method, &host, &target)) {
        (RequestPolicy::Bypass, _) | (_, None) => {
            let (mut r, b) = proxy(parts, Some(body), &conn, &rt, route, &hp, &target).await;
            cache::add_age_and_x_cache(r.headers_mut(), Duration::ZERO, false);
            return (r, b);
        }
        (_, Some(k)) => k,
    };
    if policy == RequestPolicy::Lookup {
        if let Some(hit) = store.get(&key, &parts.headers, Instant::now()) {
            return (serve_hit(hit, &parts.method), None);
        }
    }
    // Miss (or refresh): one upstream request per key at a time. The leader
    // gets its own response through the channel; waiters look the cache up
    // again and fetch for themselves if the leader's response was not
    // storable (it may carry another client's cookie).
    let (tx, rx) = tokio::sync::oneshot::channel();
    let leader = {
        let (parts, conn, rt, hp, target, store, key) = (
            parts.clone(),
            conn.clone(),
            rt.clone(),
            hp.clone(),
            target.clone(),
            store.clone(),
            key.clone(),
        );
        // Boxed as `dyn Future + Send`: the coalescer is generic over the
        // future, and an unboxed one that borrows from itself trips rustc's
        // higher-ranked Send inference.
        move || -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
            Box::pin(async move {
                let r = fetch_and_store(parts, body, conn, rt, idx, hp, target, store, key).await;
                let _ = tx.send(r);
            })
        }
    };
    rt.coalescer.run(key.clone(), leader).await;
    if let Ok(mine) = rx.await {
        return mine;
    }
    if let Some(hit) = store.get(&key, &parts.headers, Instant::now()) {
        return (serve_hit(hit, &parts.method), None);
    }
    let (mut r, b) = proxy(parts, None, &conn, &rt, route, &hp, &target).await;
    cache::add_age_and_x_cache(r.headers_mut(), Duration::ZERO, false);
    (r, b)
}

fn serve_hit(hit: cache::Hit, method: &Method) -> Response<Body> {
    let body = if *method == Method::HEAD {
        Bytes::new()
    } else {
        hit.body
    };
    let mut r = Response::new(full(body));
    *r.status_mut() = hit.status;
    *r.headers_mut() = hit.headers;
    cache::add_age_and_x_cache(r.headers_mut(), hit.age, true);
    r
}

#[allow(clippy::too_many_arguments)]
fn fetch_and_store(
    parts: http::request::Parts,
    body: Body,
    conn: Arc<Conn>,
    rt: Arc<HttpRt>,
    idx: usize,
    hp: Arc<HttpPool>,
    target: String,
    store: Arc<Cache>,
    key: cache::CacheKey,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Proxied> + Send>> {
    Box::pin(fetch_and_store_inner(
        parts, body, conn, rt, idx, hp, target, store, key,
    ))
}

#[allow(clippy::too_many_arguments)]
async fn fetch_and_store_inner(
    parts: http::request::Parts,
    body: Body,
    conn: Arc<Conn>,
    rt: Arc<HttpRt>,
    idx: usize,
    hp: Arc<HttpPool>,
    target: String,
    store: Arc<Cache>,
    key: cache::CacheKey,
) -> Proxied {
    let route = &rt.router.routes()[idx];
    let req_headers = parts.headers.clone();
    let (resp, backend) = proxy(parts, Some(body), &conn, &rt, route, &hp, &target).await;
    let (mut rparts, rbody) = resp.into_parts();
    let fresh = cache::response_freshness(rparts.status, &rparts.headers, SystemTime::now());
    let small = rparts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .is_some_and(|n| n <= store.max_entry_bytes());
    match fresh {
        Some(f) if small => {
            // Small and storable: buffer it, store it, serve it.
            match collect_limited(rbody, store.max_entry_bytes()).await {
                Ok(bytes) => {
                    let stored = Response::from_parts(rparts.clone(), bytes.clone());
                    store.put(key, &req_headers, &stored, f, Instant::now());
                    cache::add_age_and_x_cache(&mut rparts.headers, f.age, false);
                    (Response::from_parts(rparts, full(bytes)), backend)
                }
                Err(e) => {
                    tracing::debug!(error = %e, "cacheable response body failed");
                    (
                        error(&rt, StatusCode::BAD_GATEWAY, "backend error"),
                        backend,
                    )
                }
            }
        }
        _ => {
            cache::add_age_and_x_cache(&mut rparts.headers, Duration::ZERO, false);
            (Response::from_parts(rparts, rbody), backend)
        }
    }
}

/// Buffers a body of at most `max` bytes.
async fn collect_limited(mut body: Body, max: usize) -> Result<Bytes, BoxError> {
    let mut buf = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            if buf.len() + data.len() > max {
                return Err("body larger than the cache entry limit".into());
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
}
