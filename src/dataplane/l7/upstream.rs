//! Upstream side of the HTTP proxy: one pooled hyper client per pool.
//!
//! The balancer picks a backend per request; the request URI then names
//! that backend's socket address, so hyper's connection pool (keyed by
//! authority) keeps bounded, idle-timed keep-alive connections per backend.
//! The connector dials with the pool's connect timeout and TCP_NODELAY and,
//! when the pool has `tls = { ... }`, re-encrypts with rustls (mTLS when a
//! client certificate is configured).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::Uri;
use http_body_util::combinators::BoxBody;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::config::{HttpPoolConfig, UpstreamTlsConfig};
use crate::dataplane::tls::{self, UpstreamTls, Verify};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The one body type the proxy moves around, both directions.
pub type Body = BoxBody<Bytes, BoxError>;

/// A backend connection, plain or TLS.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Connection for Stream {
    fn connected(&self) -> Connected {
        match self {
            Stream::Tls(s) if s.get_ref().1.alpn_protocol() == Some(b"h2") => {
                Connected::new().negotiated_h2()
            }
            _ => Connected::new(),
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }
}

#[derive(Clone)]
pub struct Connector {
    connect_timeout: Duration,
    tls: Option<(Arc<rustls::ClientConfig>, UpstreamTls)>,
}

impl tower_service::Service<Uri> for Connector {
    type Response = TokioIo<Stream>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<TokioIo<Stream>>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let addr: SocketAddr = uri
                .authority()
                .and_then(|a| a.as_str().parse().ok())
                .ok_or_else(|| {
                    io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "backend URI without an address",
                    )
                })?;
            this.connect(addr).await.map(TokioIo::new)
        })
    }
}

impl Connector {
    /// Dials a backend: TCP with the pool's connect timeout and
    /// TCP_NODELAY, then TLS when the pool re-encrypts.
    pub async fn connect(&self, addr: SocketAddr) -> io::Result<Stream> {
        let tcp = tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timeout"))??;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => Ok(Stream::Plain(tcp)),
            Some((cfg, u)) => {
                let name = tls::server_name(u, addr.ip())
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
                let s = tokio::time::timeout(
                    self.connect_timeout,
                    tokio_rustls::TlsConnector::from(cfg.clone()).connect(name, tcp),
                )
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "TLS handshake timeout"))??;
                Ok(Stream::Tls(Box::new(s)))
            }
        }
    }
}

impl Stream {
    /// The TCP socket underneath, for liveness checks.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => s.get_ref().0,
        }
    }
}

/// The pooled client of one pool.
pub struct Upstream {
    pub client: Client<Connector, Body>,
    /// Dials for the HTTP/1 fast path, which pools its own connections.
    pub connector: Connector,
    /// Unique per built client: keys the fast path's idle connections, so
    /// connections dialled with old settings are never reused.
    pub id: u64,
    pub scheme: &'static str,
    /// The settings this client was built from (rebuilt when they change).
    pub built_from: (HttpPoolConfig, Duration),
}

impl Upstream {
    pub fn new(cfg: &HttpPoolConfig, connect_timeout: Duration) -> Result<Upstream, String> {
        let tls = match &cfg.tls {
            None => None,
            Some(t) => {
                let u = upstream_tls(t);
                let alpn: Vec<&[u8]> = if cfg.http2 {
                    vec![b"h2"]
                } else {
                    vec![b"http/1.1"]
                };
                let c = tls::client_config(&u, &alpn).map_err(|e| e.to_string())?;
                Some((c, u))
            }
        };
        let scheme = if tls.is_some() { "https" } else { "http" };
        let connector = Connector {
            connect_timeout,
            tls,
        };
        let mut b = Client::builder(TokioExecutor::new());
        b.pool_idle_timeout(cfg.idle_timeout)
            .pool_max_idle_per_host(cfg.max_idle_per_backend)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            // We set Host ourselves: the backend sees the client's host.
            .set_host(false)
            // A request that never left is safe to send on a fresh
            // connection when a pooled one turned out to be closed.
            .retry_canceled_requests(true)
            .http2_only(cfg.http2);
        Ok(Upstream {
            client: b.build(connector.clone()),
            connector,
            id: {
                static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
                NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            },
            scheme,
            built_from: (cfg.clone(), connect_timeout),
        })
    }
}

pub(crate) fn upstream_tls(t: &UpstreamTlsConfig) -> UpstreamTls {
    UpstreamTls {
        verify: match &t.verify {
            Some(p) => Verify::CaFile(p.clone()),
            None => Verify::Insecure,
        },
        server_name: t.server_name.clone(),
        client_cert: t.client_cert.clone(),
        client_key: t.client_key.clone(),
    }
}
