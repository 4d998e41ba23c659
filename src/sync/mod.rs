//! Sticky-session replication between the nodes of a pair or a scale-out group.
//!
//! Lifecycle: [`start`] binds the UDP socket and spawns three tasks: the *attacher* hangs an
//! observer on every app-cookie [`StickyTable`] (tables are created per pool, and anew when a
//! reload changes a pool's sticky settings, so it looks again every half second); the *sender*
//! drains the observers' bounded queue, batching what arrives within a couple of milliseconds
//! into authenticated datagrams ([`codec`]) sent to every peer; the *receiver* authenticates,
//! checks for replay and imports each record into the table of the same pool.
//!
//! Why UDP: entries are idempotent soft state (the last write wins, and a lost one costs at most
//! the stickiness of that one session on a failover), so there is nothing to gain from a stream's
//! retransmission and ordering, while one socket serves any number of peers without connection
//! management or head-of-line blocking. A refresh every ttl/2 of use (see `StickyTable`) repairs
//! a lost update of a live session.
//!
//! `source_ip` stickiness has no table to share: it is the pool's hash of the client address,
//! the same on every node with the same config (`maglev` or `source_hash`).

pub mod codec;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::SyncConfig;
use crate::dataplane::l7::sticky::{StickyEvent, StickyObserver, StickyTable};
use codec::{DecodeError, Record, ReplayGuard};

/// The app-cookie tables of the running config, by pool name.
pub type Tables = Arc<dyn Fn() -> Vec<(String, Arc<StickyTable>)> + Send + Sync>;

/// How long a batch waits for more records before it is sent.
const BATCH_DELAY: Duration = Duration::from_millis(2);
/// Accepted clock difference between nodes (and age of a batch).
const REPLAY_WINDOW_US: u64 = 60_000_000;

#[derive(Debug, Default)]
pub struct SyncStats {
    pub sent_datagrams: AtomicU64,
    pub sent_records: AtomicU64,
    pub send_errors: AtomicU64,
    pub received_datagrams: AtomicU64,
    pub applied_records: AtomicU64,
    pub rejected_unauthenticated: AtomicU64,
    pub rejected_malformed: AtomicU64,
    pub rejected_replayed: AtomicU64,
    pub rejected_unknown_peer: AtomicU64,
    pub dropped_queue_full: AtomicU64,
    pub dropped_oversize: AtomicU64,
    pub unknown_pool: AtomicU64,
    lag_count: AtomicU64,
    lag_sum_us: AtomicU64,
    lag_max_us: AtomicU64,
    lag_last_us: AtomicU64,
}

impl SyncStats {
    fn lag(&self, us: u64) {
        self.lag_count.fetch_add(1, Ordering::Relaxed);
        self.lag_sum_us.fetch_add(us, Ordering::Relaxed);
        self.lag_max_us.fetch_max(us, Ordering::Relaxed);
        self.lag_last_us.store(us, Ordering::Relaxed);
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PeerStatus {
    pub address: String,
    /// Seconds since the last authentic datagram; None = never heard.
    pub last_seen_seconds: Option<f64>,
    pub received_datagrams: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SyncStatus {
    pub listen: String,
    pub peers: Vec<PeerStatus>,
    pub sent_datagrams: u64,
    pub sent_records: u64,
    pub send_errors: u64,
    pub received_datagrams: u64,
    pub applied_records: u64,
    pub rejected_unauthenticated: u64,
    pub rejected_malformed: u64,
    pub rejected_replayed: u64,
    pub rejected_unknown_peer: u64,
    pub dropped_queue_full: u64,
    pub dropped_oversize: u64,
    pub unknown_pool: u64,
    /// Learned on a peer → imported here (includes the peer's batching), over received batches.
    pub lag_mean_ms: f64,
    pub lag_max_ms: f64,
    pub lag_last_ms: f64,
    pub lag_samples: u64,
}

struct Event {
    record: Record,
    at_us: u64,
}

#[derive(Default)]
struct Peer {
    last_seen: Option<Instant>,
    received: u64,
}

pub struct SyncHandle {
    cfg: SyncConfig,
    stats: Arc<SyncStats>,
    peers: Arc<Mutex<HashMap<IpAddr, Peer>>>,
}

impl SyncHandle {
    pub fn stats(&self) -> &SyncStats {
        &self.stats
    }

    pub fn status(&self) -> SyncStatus {
        let s = &self.stats;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let ms = |us: u64| us as f64 / 1000.0;
        let n = get(&s.lag_count);
        let peers = self.peers.lock().unwrap_or_else(PoisonError::into_inner);
        SyncStatus {
            listen: self.cfg.listen.to_string(),
            peers: self
                .cfg
                .peers
                .iter()
                .map(|p| {
                    let info = peers.get(&p.ip());
                    PeerStatus {
                        address: p.to_string(),
                        last_seen_seconds: info
                            .and_then(|i| i.last_seen)
                            .map(|t| t.elapsed().as_secs_f64()),
                        received_datagrams: info.map(|i| i.received).unwrap_or(0),
                    }
                })
                .collect(),
            sent_datagrams: get(&s.sent_datagrams),
            sent_records: get(&s.sent_records),
            send_errors: get(&s.send_errors),
            received_datagrams: get(&s.received_datagrams),
            applied_records: get(&s.applied_records),
            rejected_unauthenticated: get(&s.rejected_unauthenticated),
            rejected_malformed: get(&s.rejected_malformed),
            rejected_replayed: get(&s.rejected_replayed),
            rejected_unknown_peer: get(&s.rejected_unknown_peer),
            dropped_queue_full: get(&s.dropped_queue_full),
            dropped_oversize: get(&s.dropped_oversize),
            unknown_pool: get(&s.unknown_pool),
            lag_mean_ms: if n == 0 {
                0.0
            } else {
                ms(get(&s.lag_sum_us)) / n as f64
            },
            lag_max_ms: ms(get(&s.lag_max_us)),
            lag_last_ms: ms(get(&s.lag_last_us)),
            lag_samples: n,
        }
    }
}

fn unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Hears one pool's table and queues its changes for the sender.
struct PoolObserver {
    pool: String,
    tx: mpsc::Sender<Event>,
    stats: Arc<SyncStats>,
}

impl StickyObserver for PoolObserver {
    fn event(&self, e: StickyEvent<'_>) {
        let record = match e {
            StickyEvent::Learned { session, backend } => Record::Learn {
                pool: self.pool.clone(),
                session: session.to_owned(),
                backend: backend.to_owned(),
            },
            StickyEvent::Forgotten { session } => Record::Forget {
                pool: self.pool.clone(),
                session: session.to_owned(),
            },
        };
        if !record.fits() {
            self.stats.dropped_oversize.fetch_add(1, Ordering::Relaxed);
            return;
        }
        // Never blocks the proxy: a full queue means the peers are far behind anyway.
        if self
            .tx
            .try_send(Event {
                record,
                at_us: unix_us(),
            })
            .is_err()
        {
            self.stats
                .dropped_queue_full
                .fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Runs on `sock` (bound to `cfg.listen`) until `stop`.
pub fn start(
    cfg: SyncConfig,
    sock: UdpSocket,
    tables: Tables,
    stop: CancellationToken,
) -> Arc<SyncHandle> {
    let sock = Arc::new(sock);
    let stats = Arc::new(SyncStats::default());
    let peers = Arc::new(Mutex::new(HashMap::new()));
    let (tx, rx) = mpsc::channel(cfg.max_queue);
    let key = codec::key(&cfg.key);
    tracing::info!(listen = %cfg.listen, peers = ?cfg.peers, "sticky sync listening");
    tokio::spawn(attach(tables.clone(), tx, stats.clone(), stop.clone()));
    tokio::spawn(send(
        sock.clone(),
        cfg.peers.clone(),
        key.clone(),
        rx,
        stats.clone(),
        stop.clone(),
    ));
    tokio::spawn(receive(
        sock,
        cfg.peers.clone(),
        key,
        tables,
        stats.clone(),
        peers.clone(),
        stop,
    ));
    Arc::new(SyncHandle { cfg, stats, peers })
}

async fn attach(
    tables: Tables,
    tx: mpsc::Sender<Event>,
    stats: Arc<SyncStats>,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        for (pool, table) in tables() {
            let observer = Arc::new(PoolObserver {
                pool: pool.clone(),
                tx: tx.clone(),
                stats: stats.clone(),
            });
            if table.observe(observer) {
                tracing::debug!(pool = %pool, "sticky sync: replicating the pool's session table");
            }
        }
    }
}

async fn send(
    sock: Arc<UdpSocket>,
    peers: Vec<SocketAddr>,
    key: ring::hmac::Key,
    mut rx: mpsc::Receiver<Event>,
    stats: Arc<SyncStats>,
    stop: CancellationToken,
) {
    // A random sender id per start: a restarted node's sequence numbers start again.
    let sender = random_u64();
    let mut seq = 0u64;
    let mut batch: Vec<Record> = Vec::new();
    loop {
        let first = tokio::select! {
            _ = stop.cancelled() => return,
            e = rx.recv() => match e { Some(e) => e, None => return },
        };
        let oldest = first.at_us;
        batch.push(first.record);
        let deadline = tokio::time::Instant::now() + BATCH_DELAY;
        while batch.len() < 512 {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(e)) => batch.push(e.record),
                _ => break,
            }
        }
        for d in codec::encode(&key, sender, &mut seq, oldest, &batch) {
            for p in &peers {
                if let Err(e) = sock.send_to(&d, p).await {
                    stats.send_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(peer = %p, error = %e, "sticky sync: send failed");
                } else {
                    stats.sent_datagrams.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        stats
            .sent_records
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        batch.clear();
    }
}

fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    // ring's system RNG; falling back to time and pid only weakens restart detection.
    if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b).is_err() {
        return unix_us() ^ (u64::from(std::process::id()) << 40);
    }
    u64::from_be_bytes(b)
}

async fn receive(
    sock: Arc<UdpSocket>,
    peers: Vec<SocketAddr>,
    key: ring::hmac::Key,
    tables: Tables,
    stats: Arc<SyncStats>,
    seen: Arc<Mutex<HashMap<IpAddr, Peer>>>,
    stop: CancellationToken,
) {
    let mut guard = ReplayGuard::new(peers.len() * 4 + 4, REPLAY_WINDOW_US);
    let mut buf = vec![0u8; 65536];
    loop {
        let (n, from) = tokio::select! {
            _ = stop.cancelled() => return,
            r = sock.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::debug!(error = %e, "sticky sync: receive failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        stats.received_datagrams.fetch_add(1, Ordering::Relaxed);
        if !peers.iter().any(|p| p.ip() == from.ip()) {
            stats.rejected_unknown_peer.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(from = %from, "sticky sync: datagram from an address that is not a peer dropped");
            continue;
        }
        let m = match codec::decode(&key, &buf[..n]) {
            Ok(m) => m,
            Err(e) => {
                let counter = if e.is_auth() {
                    &stats.rejected_unauthenticated
                } else {
                    &stats.rejected_malformed
                };
                counter.fetch_add(1, Ordering::Relaxed);
                log_reject(from, e);
                continue;
            }
        };
        let now = unix_us();
        if let Err(why) = guard.check(&m, now) {
            stats.rejected_replayed.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(from = %from, reason = ?why, "sticky sync: replayed or stale datagram dropped");
            continue;
        }
        if let Ok(mut s) = seen.lock() {
            let p = s.entry(from.ip()).or_default();
            p.last_seen = Some(Instant::now());
            p.received += 1;
        }
        stats.lag(now.saturating_sub(m.oldest_us));
        let tables = tables();
        let at = Instant::now();
        for r in m.records {
            let pool = match &r {
                Record::Learn { pool, .. } | Record::Forget { pool, .. } => pool,
            };
            let Some((_, table)) = tables.iter().find(|(p, _)| p == pool) else {
                stats.unknown_pool.fetch_add(1, Ordering::Relaxed);
                continue;
            };
            match &r {
                Record::Learn {
                    session, backend, ..
                } => table.import(session, backend, at),
                Record::Forget { session, .. } => table.import_forget(session),
            }
            stats.applied_records.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// One warning per kind of rejection per minute at most: a stranger flooding the port must not
/// flood the log too.
fn log_reject(from: SocketAddr, e: DecodeError) {
    static LAST: Mutex<Option<Instant>> = Mutex::new(None);
    let mut last = LAST.lock().unwrap_or_else(PoisonError::into_inner);
    if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
        *last = Some(Instant::now());
        tracing::warn!(from = %from, error = %e, "sticky sync: datagram rejected (further rejections are counted, not logged, for a minute)");
    }
}
