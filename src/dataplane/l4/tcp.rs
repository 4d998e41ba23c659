//! TCP proxying.
//!
//! Lifecycle of a connection: the accept loop takes a listener slot (or
//! queues for one, bounded), leases a backend from the pool (retrying the
//! next backend on connect failure), optionally writes a PROXY header, then
//! forwards both directions in one task. EOF in one direction shuts down
//! writing on the other side (half-close); the connection ends when both
//! directions are done, on error (the other side is reset), or after
//! `idle_timeout` without traffic.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio::io::{AsyncRead, AsyncWriteExt};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::splice::Pipe;
use crate::balance::client_key;
use crate::config::{ListenerConfig, ProxyProtocol, SpliceMode};
use crate::dataplane::accept::admit;
use crate::dataplane::proxy_protocol;
use crate::pool::{Lease, PickError, Pool};
use crate::stats::ListenerStats;

/// A read this large means a bulk transfer is under way...
const BULK_READ: usize = 16 * 1024;
/// ...and this many in a row switch `splice = "auto"` to splice(2).
const BULK_READS: u32 = 2;

/// What a listener's connections use; swapped atomically on reload.
#[derive(Debug)]
pub struct ListenerRt {
    pub cfg: ListenerConfig,
    pub pool: Arc<Pool>,
    /// None = unlimited.
    pub limit: Option<Arc<Semaphore>>,
    pub policy: crate::dataplane::policy::ClientPolicy,
    pub access_log: Option<crate::accesslog::AccessLog>,
}

impl ListenerRt {
    pub fn new(cfg: ListenerConfig, pool: Arc<Pool>, previous: Option<&ListenerRt>) -> Self {
        // Keep the semaphore across reloads while the limit is unchanged so
        // connections admitted under the old snapshot still count.
        let limit = match previous {
            Some(p) if p.cfg.max_connections == cfg.max_connections => p.limit.clone(),
            _ => (cfg.max_connections > 0)
                .then(|| Arc::new(Semaphore::new(cfg.max_connections as usize))),
        };
        let policy = crate::dataplane::policy::ClientPolicy::new(
            cfg.acl.clone(),
            cfg.accept_proxy.clone(),
            cfg.rate_limit,
            previous.map(|p| &p.policy),
        );
        ListenerRt {
            access_log: cfg
                .access_log
                .as_ref()
                .map(crate::accesslog::AccessLog::new),
            cfg,
            pool,
            limit,
            policy,
        }
    }
}

struct ActiveGuard<'a>(&'a AtomicU64);
impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Accepts until `stop` fires. Connections are tracked by `tracker` so
/// shutdown can wait for them to finish.
pub async fn serve(
    listener: TcpListener,
    rt: Arc<ArcSwap<ListenerRt>>,
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
        let stats = stats.clone();
        tracker.spawn(async move {
            let Some(_slot) = admission.slot(snap.cfg.queue_timeout, &stats).await else {
                return;
            };
            stats.active.fetch_add(1, Ordering::Relaxed);
            let _active = ActiveGuard(&stats.active);
            handle(stream, peer, &snap, &stats).await;
        });
    }
}

/// Leases a backend and connects, retrying other backends on failure.
pub async fn connect_backend(pool: &Pool, key: u64) -> Result<(TcpStream, Lease), PickError> {
    let mut tried: Vec<usize> = Vec::new();
    loop {
        let lease = pool.lease(key, &tried).await?;
        let t0 = Instant::now();
        match tokio::time::timeout(pool.cfg.connect_timeout, TcpStream::connect(lease.addr)).await {
            Ok(Ok(s)) => {
                lease.connected(t0.elapsed());
                return Ok((s, lease));
            }
            Ok(Err(e)) => {
                tracing::debug!(pool = %pool.name(), backend = %lease.name, error = %e, "connect failed");
                if !crate::net::local_shortage(&e) {
                    lease.failed(&e.to_string());
                }
            }
            Err(_) => lease.failed("connect timeout"),
        }
        tried.push(lease.index);
        if tried.len() > pool.cfg.retries as usize {
            return Err(PickError::NoBackend);
        }
        lease.retried();
    }
}

async fn handle(client: TcpStream, peer: SocketAddr, rt: &ListenerRt, stats: &ListenerStats) {
    let started = Instant::now();
    let moved = [AtomicU64::new(0), AtomicU64::new(0)];
    let mut backend: Option<String> = None;
    let mut client_addr = peer;
    let reason = serve_connection(
        client,
        peer,
        rt,
        stats,
        &moved,
        &mut backend,
        &mut client_addr,
    )
    .await;
    if let Some(al) = &rt.access_log {
        al.log(&crate::accesslog::Entry {
            time: std::time::SystemTime::now(),
            listener: &rt.cfg.name,
            protocol: "tcp",
            client: client_addr,
            method: "-",
            path: "-",
            status: 0,
            route: "-",
            backend: backend.as_deref().unwrap_or("-"),
            duration: started.elapsed(),
            bytes_in: Some(moved[0].load(Ordering::Relaxed)),
            bytes_out: Some(moved[1].load(Ordering::Relaxed)),
            reason,
        });
    }
}

/// One client connection from admission to close; returns how it ended
/// (the connection log's `reason`).
async fn serve_connection(
    client: TcpStream,
    peer: SocketAddr,
    rt: &ListenerRt,
    stats: &ListenerStats,
    moved: &[AtomicU64; 2],
    backend: &mut Option<String>,
    client_addr: &mut SocketAddr,
) -> &'static str {
    let (peer, proxied_local, _ticket) = if rt.policy.is_open() {
        (peer, None, None)
    } else {
        match rt.policy.admit(&client, peer, true, &stats.policy).await {
            Ok(a) => (a.peer, a.local, a._ticket),
            // Dropping the client closes it before any backend is touched.
            Err(r) => return r.as_str(),
        }
    };
    *client_addr = peer;
    let (server, lease) = match connect_backend(&rt.pool, client_key(peer.ip())).await {
        Ok(x) => x,
        Err(e) => {
            // Dropping the client closes it at once: never a hang.
            return match e {
                PickError::NoBackend => {
                    stats.no_backend.fetch_add(1, Ordering::Relaxed);
                    rt.pool.shared.no_backend.fetch_add(1, Ordering::Relaxed);
                    "no_backend"
                }
                PickError::Saturated => {
                    stats.rejected.fetch_add(1, Ordering::Relaxed);
                    "saturated"
                }
            };
        }
    };
    if rt.access_log.is_some() {
        *backend = Some(lease.name.clone());
    }
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let counters = Counters {
        up: [&stats.bytes_in, &lease.state.bytes_out, &moved[0]],
        down: [&stats.bytes_out, &lease.state.bytes_in, &moved[1]],
        spliced: &stats.spliced,
    };
    let header = match rt.cfg.send_proxy {
        ProxyProtocol::None => None,
        ProxyProtocol::V1 | ProxyProtocol::V2 => {
            let local = proxied_local
                .or_else(|| client.local_addr().ok())
                .unwrap_or(rt.cfg.bind);
            Some(if rt.cfg.send_proxy == ProxyProtocol::V1 {
                proxy_protocol::v1(peer, local)
            } else {
                proxy_protocol::v2(peer, local)
            })
        }
    };
    let r = forward(
        client,
        server,
        header.as_deref(),
        rt.cfg.splice,
        rt.cfg.idle_timeout,
        &counters,
        &lease.state.cut_token(),
    )
    .await;
    drop(lease);
    match r {
        Ok(()) => "closed",
        Err(e) => {
            tracing::debug!(listener = %rt.cfg.name, error = %e, "connection ended with error");
            match e.kind() {
                io::ErrorKind::TimedOut => "idle_timeout",
                io::ErrorKind::ConnectionAborted => "backend_disabled",
                _ => "reset",
            }
        }
    }
}

/// Byte counters updated as data flows (so long transfers show up live).
pub struct Counters<'a> {
    pub up: [&'a AtomicU64; 3],
    pub down: [&'a AtomicU64; 3],
    /// Bytes of either direction that went through splice(2).
    pub spliced: &'a AtomicU64,
}

/// Activity counter for the idle timeout: the data path only bumps a
/// counter (no clock read per chunk); the watchdog samples it.
struct Activity(AtomicU64);

impl Activity {
    fn touch(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// Forwards both directions until both have finished (or one fails, or the
/// connection is idle too long).
pub async fn forward(
    mut client: TcpStream,
    mut server: TcpStream,
    proxy_header: Option<&[u8]>,
    mode: SpliceMode,
    idle: Duration,
    counters: &Counters<'_>,
    cut: &CancellationToken,
) -> io::Result<()> {
    if let Some(h) = proxy_header {
        server.write_all(h).await?;
    }
    let act = Activity(AtomicU64::new(0));
    let result = {
        let (mut cr, mut cw) = client.split();
        let (mut sr, mut sw) = server.split();
        let up = pump(&mut cr, &mut sw, mode, &act, &counters.up, counters.spliced);
        let down = pump(
            &mut sr,
            &mut cw,
            mode,
            &act,
            &counters.down,
            counters.spliced,
        );
        tokio::select! {
            r = futures::future::try_join(up, down) => r.map(|_| ()),
            _ = idle_watch(&act, idle) => Err(io::Error::new(io::ErrorKind::TimedOut, "idle timeout")),
            _ = cut.cancelled() => Err(io::Error::new(io::ErrorKind::ConnectionAborted, "backend disabled")),
        }
    };
    if result.is_err() {
        // Propagate the failure as a reset so neither peer mistakes a broken
        // stream for a clean end of data.
        let _ = socket2::SockRef::from(&client).set_linger(Some(Duration::ZERO));
        let _ = socket2::SockRef::from(&server).set_linger(Some(Duration::ZERO));
    }
    result
}

/// Returns once no byte moved for `idle`, checked every quarter of it, so
/// the connection closes between `idle` and 1.25 × `idle` of silence.
async fn idle_watch(act: &Activity, idle: Duration) {
    let step = (idle / 4).max(Duration::from_millis(5));
    let mut seen = act.0.load(Ordering::Relaxed);
    let mut quiet_since = Instant::now();
    loop {
        tokio::time::sleep(step).await;
        let now = act.0.load(Ordering::Relaxed);
        if now != seen {
            seen = now;
            quiet_since = Instant::now();
        } else if quiet_since.elapsed() >= idle {
            return;
        }
    }
}

thread_local! {
    /// One read buffer per worker thread instead of one per connection
    /// and direction: it stays hot in cache, and 10,000 idle connections
    /// cost no buffer memory. Bytes only leave it when a write is partial.
    static READ_BUF: std::cell::RefCell<Box<[u8]>> =
        std::cell::RefCell::new(vec![0u8; READ_CHUNK].into_boxed_slice());
}

/// Largest read per wakeup on the copy path.
const READ_CHUNK: usize = 64 * 1024;

enum Step {
    Eof,
    /// n bytes read and written in full.
    Moved(usize),
    /// n bytes read; the tail the socket did not take yet.
    Partial(usize, Vec<u8>),
}

/// Reads once into the thread's buffer and writes as much as the
/// destination takes right away, all inside one poll.
async fn copy_once(src: &mut ReadHalf<'_>, dst: &WriteHalf<'_>) -> io::Result<Step> {
    std::future::poll_fn(|cx| {
        READ_BUF.with(|cell| {
            let mut guard = cell.borrow_mut();
            let mut rb = tokio::io::ReadBuf::new(&mut guard[..]);
            match std::pin::Pin::new(&mut *src).poll_read(cx, &mut rb) {
                std::task::Poll::Pending => std::task::Poll::Pending,
                std::task::Poll::Ready(Err(e)) => std::task::Poll::Ready(Err(e)),
                std::task::Poll::Ready(Ok(())) => {
                    let n = rb.filled().len();
                    if n == 0 {
                        return std::task::Poll::Ready(Ok(Step::Eof));
                    }
                    let out: &TcpStream = dst.as_ref();
                    let written = match out.try_write(&guard[..n]) {
                        Ok(w) => w,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
                        Err(e) => return std::task::Poll::Ready(Err(e)),
                    };
                    std::task::Poll::Ready(Ok(if written == n {
                        Step::Moved(n)
                    } else {
                        Step::Partial(n, guard[written..n].to_vec())
                    }))
                }
            }
        })
    })
    .await
}

async fn pump(
    src: &mut ReadHalf<'_>,
    dst: &mut WriteHalf<'_>,
    mode: SpliceMode,
    act: &Activity,
    counters: &[&AtomicU64; 3],
    spliced: &AtomicU64,
) -> io::Result<u64> {
    let mut total = 0u64;
    let add = |n: usize| {
        for c in counters {
            c.fetch_add(n as u64, Ordering::Relaxed);
        }
    };
    if mode != SpliceMode::Always {
        let mut bulk_reads = 0;
        loop {
            let n = match copy_once(src, dst).await? {
                Step::Eof => {
                    dst.shutdown().await?;
                    return Ok(total);
                }
                Step::Moved(n) => n,
                Step::Partial(n, rest) => {
                    dst.write_all(&rest).await?;
                    n
                }
            };
            total += n as u64;
            add(n);
            act.touch();
            if mode == SpliceMode::Auto {
                bulk_reads = if n >= BULK_READ { bulk_reads + 1 } else { 0 };
                if bulk_reads >= BULK_READS {
                    break;
                }
            }
        }
    }
    // Bulk transfer (or splice = "always"): move bytes kernel-side.
    let mut pipe = match Pipe::new() {
        Ok(p) => p,
        Err(e) => return Err(e),
    };
    let s: &TcpStream = src.as_ref();
    let d: &TcpStream = dst.as_ref();
    loop {
        let n = pipe.fill(s).await?;
        if n == 0 {
            dst.shutdown().await?;
            return Ok(total);
        }
        pipe.drain(d).await?;
        total += n as u64;
        add(n);
        spliced.fetch_add(n as u64, Ordering::Relaxed);
        act.touch();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    async fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let a = TcpStream::connect(l.local_addr().expect("addr"));
        let (a, b) = tokio::join!(a, l.accept());
        (a.expect("connect"), b.expect("accept").0)
    }

    /// client <-> [proxy_c | forward | proxy_s] <-> server
    async fn through(mode: SpliceMode, payload: usize) {
        let (mut client, proxy_c) = pair().await;
        let (proxy_s, mut server) = pair().await;
        let zero: [AtomicU64; 7] = Default::default();
        let fwd = async {
            let c = Counters {
                up: [&zero[0], &zero[1], &zero[4]],
                down: [&zero[2], &zero[3], &zero[5]],
                spliced: &zero[6],
            };
            let cut = CancellationToken::new();
            forward(
                proxy_c,
                proxy_s,
                None,
                mode,
                Duration::from_secs(10),
                &c,
                &cut,
            )
            .await
        };
        let data: Vec<u8> = (0..payload).map(|i| (i * 7 + 3) as u8).collect();
        let echo = async {
            // Server reads everything until the client half-closes, then
            // answers with the reversed bytes: proves half-close propagates.
            let mut got = Vec::new();
            server.read_to_end(&mut got).await.expect("server read");
            got.reverse();
            server.write_all(&got).await.expect("server write");
            server.shutdown().await.expect("server shutdown");
        };
        let cl = async {
            client.write_all(&data).await.expect("client write");
            client.shutdown().await.expect("client shutdown");
            let mut back = Vec::new();
            client.read_to_end(&mut back).await.expect("client read");
            back
        };
        let (f, _, back) = tokio::join!(fwd, echo, cl);
        f.expect("forward");
        // "always" splices everything; "auto" only past the first bulk reads; "never" nothing.
        let spliced = zero[6].load(Ordering::Relaxed);
        match mode {
            SpliceMode::Never => assert_eq!(spliced, 0),
            SpliceMode::Always => assert_eq!(spliced, 2 * payload as u64),
            SpliceMode::Auto if payload < BULK_READ * BULK_READS as usize => assert_eq!(spliced, 0),
            SpliceMode::Auto => assert!(
                spliced > payload as u64 && spliced < 2 * payload as u64,
                "auto spliced {spliced} of {} bytes",
                2 * payload
            ),
        }
        let mut want = data.clone();
        want.reverse();
        assert!(back == want, "payload mismatch ({} bytes)", back.len());
        assert_eq!(zero[0].load(Ordering::Relaxed), payload as u64);
        assert_eq!(zero[2].load(Ordering::Relaxed), payload as u64);
        assert_eq!(zero[4].load(Ordering::Relaxed), payload as u64);
    }

    #[tokio::test]
    async fn half_close_copy() {
        through(SpliceMode::Never, 100).await;
    }

    #[tokio::test]
    async fn half_close_splice() {
        through(SpliceMode::Always, 100).await;
    }

    #[tokio::test]
    async fn auto_switches_to_splice_on_bulk() {
        through(SpliceMode::Auto, 3 * 1024 * 1024 + 17).await;
    }

    #[tokio::test]
    async fn idle_timeout_closes() {
        let (_client, proxy_c) = pair().await;
        let (proxy_s, _server) = pair().await;
        let z = AtomicU64::new(0);
        let c = Counters {
            up: [&z, &z, &z],
            down: [&z, &z, &z],
            spliced: &z,
        };
        let t = Instant::now();
        let r = forward(
            proxy_c,
            proxy_s,
            None,
            SpliceMode::Auto,
            Duration::from_millis(200),
            &c,
            &CancellationToken::new(),
        )
        .await;
        assert_eq!(r.err().map(|e| e.kind()), Some(io::ErrorKind::TimedOut));
        assert!(t.elapsed() >= Duration::from_millis(190));
    }
}
