//! Assembles the running daemon from a [`Config`], applies reloads as a diff,
//! and drains on shutdown.
//!
//! Reload keeps everything that did not change: a listener whose address and
//! protocol stay keeps its socket (no connection is refused during the swap)
//! and only sees a new snapshot (pool, limits, timeouts); backend state
//! (health, counters, active connections) is carried over by pool name and
//! address; a health checker whose backend and settings are unchanged keeps
//! running with its rise/fall counts. New sockets are bound *before*
//! anything is swapped, so a reload that cannot bind changes nothing.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admin;
use crate::admin::status::{BackendStatus, ListenerStatus, PoolStatus, RouteStatus, Status};
use crate::config::StickyConfig;
use crate::config::{self, Config, HealthConfig, ListenerConfig, Protocol, VrrpConfig};
use crate::l4::tcp::{ListenerRt, ListenerStats};
use crate::l7::server::{HttpPool, HttpRt};
use crate::l7::sticky::StickyTable;
use crate::l7::upstream::Upstream;
use crate::pool::Pool;
use crate::vrrp::instance::Tracker;
use crate::vrrp::service::VrrpService;

mod control;
pub mod plan;
pub use crate::admin::control::BackendAction;
use plan::{listener_key as key_of, Change, Fate, ListenerKey};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Config(#[from] config::ConfigErrors),
    #[error("admin socket {path}: {source}")]
    Admin {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot start VRRP: {source}")]
    Vrrp { source: std::io::Error },
    #[error("{0}")]
    ScaleOut(String),
    #[error("listener {name}: {message}")]
    Listener { name: String, message: String },
    #[error("listener {name} ({proto} {addr}): cannot bind: {source}")]
    Bind {
        name: String,
        proto: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
}

type CheckerKey = (String, SocketAddr);

/// A listener's swappable snapshot: L4 engine or HTTP engine.
#[derive(Clone)]
enum Rt {
    L4(Arc<ArcSwap<ListenerRt>>),
    Http(Arc<ArcSwap<HttpRt>>),
}

/// A new snapshot, built before anything is swapped.
enum NewRt {
    L4(Box<ListenerRt>),
    Http(Box<HttpRt>),
}

struct ListenerEntry {
    cfg: ListenerConfig,
    rt: Rt,
    stats: Arc<ListenerStats>,
    stop: CancellationToken,
}

/// A listener as status sees it (HTTP listeners also expose route counters).
type ListenerView = (
    ListenerConfig,
    Arc<ListenerStats>,
    Option<Arc<ArcSwap<HttpRt>>>,
);

/// What status and the data plane read; replaced whole on reload.
struct Snapshot {
    config: Arc<Config>,
    pools: BTreeMap<String, Arc<Pool>>,
    http_pools: HashMap<String, Arc<HttpPool>>,
    listeners: Vec<ListenerView>,
}

struct Inner {
    listeners: HashMap<ListenerKey, ListenerEntry>,
    checkers: HashMap<CheckerKey, (HealthConfig, CancellationToken)>,
}

pub struct Daemon {
    config_path: PathBuf,
    started: Instant,
    generation: AtomicU64,
    snapshot: Arc<ArcSwap<Snapshot>>,
    inner: tokio::sync::Mutex<Inner>,
    /// Started with the first VRRP instance; None on an L4-only node.
    vrrp: std::sync::Mutex<Option<Arc<VrrpService>>>,
    conns: TaskTracker,
    stop_admin: CancellationToken,
    /// Anycast announcer and sticky sync (issue 13), set once at start.
    scaleout: std::sync::OnceLock<crate::scaleout::ScaleOut>,
}

/// A socket bound during the prepare phase of start/reload.
enum Bound {
    /// One socket per data-plane worker; registered with the worker's
    /// runtime when the worker starts serving it.
    Tcp(Vec<std::net::TcpListener>),
    Udp(tokio::net::UdpSocket),
}

fn proto_str(p: Protocol) -> &'static str {
    p.name()
}

fn bind(l: &ListenerConfig) -> Result<Bound, StartError> {
    let err = |source| StartError::Bind {
        name: l.name.clone(),
        proto: proto_str(l.protocol),
        addr: l.bind,
        source,
    };
    match l.protocol {
        Protocol::Tcp | Protocol::Http | Protocol::Https => {
            let n = crate::worker::get().len();
            crate::l4::bind_tcp_n(l.bind, l.backlog, n)
                .map(Bound::Tcp)
                .map_err(err)
        }
        Protocol::Udp => {
            let std = crate::l4::bind_udp(l.bind).map_err(err)?;
            tokio::net::UdpSocket::from_std(std)
                .map(Bound::Udp)
                .map_err(err)
        }
    }
}

fn build_pools(
    cfg: &Config,
    old: Option<&BTreeMap<String, Arc<Pool>>>,
) -> BTreeMap<String, Arc<Pool>> {
    cfg.pools
        .iter()
        .map(|p| {
            let prev = old.and_then(|o| o.get(&p.name)).map(|a| a.as_ref());
            (p.name.clone(), Arc::new(Pool::build(p.clone(), prev)))
        })
        .collect()
}

/// HTTP views of the pools: the pooled upstream client and sticky table
/// are kept from the previous generation while their settings are unchanged
/// (so keep-alive connections to backends survive a reload).
fn build_http_pools(
    cfg: &Config,
    pools: &BTreeMap<String, Arc<Pool>>,
    old: Option<&HashMap<String, Arc<HttpPool>>>,
) -> Result<HashMap<String, Arc<HttpPool>>, StartError> {
    let mut out = HashMap::new();
    for pc in &cfg.pools {
        let Some(pool) = pools.get(&pc.name) else {
            continue;
        };
        let prev = old.and_then(|o| o.get(&pc.name));
        let want = (pc.http.clone(), pc.connect_timeout);
        let upstream = match prev {
            Some(p) if p.upstream.built_from == want => p.upstream.clone(),
            _ => Arc::new(
                Upstream::new(&pc.http, pc.connect_timeout).map_err(|message| {
                    StartError::Listener {
                        name: format!("pool {}", pc.name),
                        message,
                    }
                })?,
            ),
        };
        let table = match &pc.http.sticky {
            Some(StickyConfig::AppCookie {
                ttl, max_entries, ..
            }) => match prev.and_then(|p| p.table.clone()) {
                Some(t) if prev.is_some_and(|p| p.pool.cfg.http.sticky == pc.http.sticky) => {
                    Some(t)
                }
                _ => Some(Arc::new(StickyTable::new(*max_entries, *ttl))),
            },
            _ => None,
        };
        out.insert(
            pc.name.clone(),
            Arc::new(HttpPool::new(pool.clone(), upstream, table)),
        );
    }
    Ok(out)
}

/// Builds a listener's snapshot (TLS certificates are read here, so a
/// reload picks up renewed certificates).
fn make_rt(
    l: &ListenerConfig,
    pools: &BTreeMap<String, Arc<Pool>>,
    http_pools: &HashMap<String, Arc<HttpPool>>,
    prev: Option<&Rt>,
) -> Result<NewRt, StartError> {
    let err = |message: String| StartError::Listener {
        name: l.name.clone(),
        message,
    };
    match &l.http {
        None => {
            let pool = pools
                .get(&l.pool)
                .cloned()
                .ok_or_else(|| err(format!("no pool named {:?}", l.pool)))?;
            let prev = match prev {
                Some(Rt::L4(r)) => Some(r.load_full()),
                _ => None,
            };
            Ok(NewRt::L4(Box::new(ListenerRt::new(
                l.clone(),
                pool,
                prev.as_deref(),
            ))))
        }
        Some(h) => {
            let tls = match &h.tls {
                None => None,
                Some(certs) => {
                    let specs: Vec<_> = certs.iter().map(crate::tls::spec).collect();
                    let default = certs.iter().position(|c| c.default);
                    Some(
                        crate::tls::server_config(&specs, default, h.http2)
                            .map_err(|e| err(e.to_string()))?,
                    )
                }
            };
            let prev = match prev {
                Some(Rt::Http(r)) => Some(r.load_full()),
                _ => None,
            };
            Ok(NewRt::Http(Box::new(
                HttpRt::new(l.clone(), http_pools, tls, prev.as_deref()).map_err(err)?,
            )))
        }
    }
}

impl Daemon {
    /// Binds every socket and starts every task; fails without side effects
    /// left running if any listener cannot bind.
    pub async fn start(config_path: &Path, cfg: Config) -> Result<Arc<Daemon>, StartError> {
        let admin_listener =
            admin::bind(&cfg.global.admin_socket).map_err(|source| StartError::Admin {
                path: cfg.global.admin_socket.display().to_string(),
                source,
            })?;
        let pools = build_pools(&cfg, None);
        let http_pools = build_http_pools(&cfg, &pools, None)?;
        let mut bound = Vec::new();
        for l in &cfg.listeners {
            let rt = make_rt(l, &pools, &http_pools, None)?;
            bound.push((l.clone(), bind(l)?, rt));
        }
        let daemon = Arc::new(Daemon {
            config_path: config_path.to_path_buf(),
            started: Instant::now(),
            generation: AtomicU64::new(1),
            snapshot: Arc::new(ArcSwap::from_pointee(Snapshot {
                config: Arc::new(cfg.clone()),
                pools: pools.clone(),
                http_pools: http_pools.clone(),
                listeners: Vec::new(),
            })),
            vrrp: std::sync::Mutex::new(None),
            inner: tokio::sync::Mutex::new(Inner {
                listeners: HashMap::new(),
                checkers: HashMap::new(),
            }),
            conns: TaskTracker::new(),
            stop_admin: CancellationToken::new(),
            scaleout: std::sync::OnceLock::new(),
        });
        {
            let mut inner = daemon.inner.lock().await;
            for (l, sock, rt) in bound {
                daemon.spawn_listener(&mut inner, l, sock, rt);
            }
            sync_checkers(&mut inner, &pools);
            daemon.publish(&inner, Arc::new(cfg.clone()), pools, http_pools);
        }
        // Listeners are bound (IP_FREEBIND) before the election starts, so
        // the moment this node claims a VIP it already serves it.
        daemon
            .sync_vrrp(&cfg.vrrp)
            .await
            .map_err(|source| StartError::Vrrp { source })?;
        let scaleout = crate::scaleout::ScaleOut::start(&daemon)
            .await
            .map_err(StartError::ScaleOut)?;
        let _ = daemon.scaleout.set(scaleout);
        tokio::spawn(admin::serve(
            admin_listener,
            daemon.clone(),
            daemon.stop_admin.clone(),
        ));
        for (addr, token, what) in [
            (cfg.global.metrics_listen, None, "metrics"),
            (
                cfg.global.admin_listen,
                cfg.global.admin_token.clone(),
                "admin",
            ),
        ] {
            let Some(addr) = addr else { continue };
            let l = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| StartError::Admin {
                    path: format!("{what} listener {addr}"),
                    source,
                })?;
            tracing::info!(address = %addr, "{what} listener");
            tokio::spawn(admin::serve_tcp(
                l,
                daemon.clone() as admin::Ctl,
                daemon.stop_admin.clone(),
                token,
            ));
        }
        let snap = daemon.snapshot.load();
        tracing::info!(
            config = %config_path.display(),
            listeners = snap.config.listeners.len(),
            pools = snap.config.pools.len(),
            "tandem started"
        );
        Ok(daemon)
    }

    fn spawn_listener(&self, inner: &mut Inner, cfg: ListenerConfig, sock: Bound, rt: NewRt) {
        let stats = Arc::new(ListenerStats::default());
        let stop = CancellationToken::new();
        let rt = match (sock, rt) {
            (Bound::Tcp(socks), NewRt::L4(r)) => {
                let r = Arc::new(ArcSwap::from(Arc::new(*r)));
                for (i, sock) in socks.into_iter().enumerate() {
                    let (r, stats, stop, conns) =
                        (r.clone(), stats.clone(), stop.clone(), self.conns.clone());
                    let name = cfg.name.clone();
                    crate::worker::get().handle(i).spawn(async move {
                        match tokio::net::TcpListener::from_std(sock) {
                            Ok(l) => crate::l4::tcp::serve(l, r, stats, stop, conns).await,
                            Err(e) => tracing::error!(listener = %name, error = %e, "cannot register listener"),
                        }
                    });
                }
                Rt::L4(r)
            }
            (Bound::Udp(s), NewRt::L4(r)) => {
                let r = Arc::new(ArcSwap::from(Arc::new(*r)));
                self.conns.spawn(crate::l4::udp::serve(
                    s,
                    r.clone(),
                    stats.clone(),
                    stop.clone(),
                ));
                Rt::L4(r)
            }
            (Bound::Tcp(socks), NewRt::Http(r)) => {
                let r = Arc::new(ArcSwap::from(Arc::new(*r)));
                for (i, sock) in socks.into_iter().enumerate() {
                    let (r, stats, stop, conns) =
                        (r.clone(), stats.clone(), stop.clone(), self.conns.clone());
                    let name = cfg.name.clone();
                    crate::worker::get().handle(i).spawn(async move {
                        match tokio::net::TcpListener::from_std(sock) {
                            Ok(l) => crate::l7::server::serve(l, r, stats, stop, conns).await,
                            Err(e) => tracing::error!(listener = %name, error = %e, "cannot register listener"),
                        }
                    });
                }
                Rt::Http(r)
            }
            (Bound::Udp(_), NewRt::Http(_)) => {
                tracing::error!(listener = %cfg.name, "an http listener cannot use a UDP socket");
                return;
            }
        };
        tracing::info!(listener = %cfg.name, bind = %cfg.bind, protocol = proto_str(cfg.protocol), "listening");
        inner.listeners.insert(
            key_of(&cfg),
            ListenerEntry {
                cfg,
                rt,
                stats,
                stop,
            },
        );
    }

    fn publish(
        &self,
        inner: &Inner,
        config: Arc<Config>,
        pools: BTreeMap<String, Arc<Pool>>,
        http_pools: HashMap<String, Arc<HttpPool>>,
    ) {
        // Keep the config file's order in status output.
        let listeners = config
            .listeners
            .iter()
            .filter_map(|l| {
                inner.listeners.get(&key_of(l)).map(|e| {
                    let http = match &e.rt {
                        Rt::Http(r) => Some(r.clone()),
                        Rt::L4(_) => None,
                    };
                    (e.cfg.clone(), e.stats.clone(), http)
                })
            })
            .collect();
        self.snapshot.store(Arc::new(Snapshot {
            config,
            pools,
            http_pools,
            listeners,
        }));
    }

    fn vrrp_service(&self) -> Option<Arc<VrrpService>> {
        self.vrrp.lock().ok().and_then(|v| v.clone())
    }

    /// Starts the VRRP service on first use, or hands it the new instance list.
    async fn sync_vrrp(&self, cfgs: &[VrrpConfig]) -> std::io::Result<()> {
        if let Some(svc) = self.vrrp_service() {
            svc.reload(cfgs.to_vec()).await;
            return Ok(());
        }
        if cfgs.is_empty() {
            return Ok(());
        }
        let snap = self.snapshot.clone();
        let tracker: Tracker =
            Arc::new(move |pool: &str| snap.load().pools.get(pool).map(|p| p.any_serving()));
        let cfgs = cfgs.to_vec();
        let svc = tokio::task::spawn_blocking(move || VrrpService::start(cfgs, tracker))
            .await
            .map_err(std::io::Error::other)??;
        if let Ok(mut v) = self.vrrp.lock() {
            *v = Some(Arc::new(svc));
        }
        Ok(())
    }

    pub fn scaleout(&self) -> Option<&crate::scaleout::ScaleOut> {
        self.scaleout.get()
    }

    /// The app-cookie session tables of the running config, by pool.
    pub fn sticky_tables(&self) -> Vec<(String, Arc<StickyTable>)> {
        let snap = self.snapshot.load();
        snap.http_pools
            .iter()
            .filter_map(|(name, hp)| hp.table.clone().map(|t| (name.clone(), t)))
            .collect()
    }

    pub fn config(&self) -> Arc<Config> {
        self.snapshot.load().config.clone()
    }

    pub fn pool(&self, name: &str) -> Option<Arc<Pool>> {
        self.snapshot.load().pools.get(name).cloned()
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    /// Re-reads the config file and applies it. On any error nothing changes
    /// and every error is returned (and logged). On success: the new
    /// generation and what changed.
    pub async fn reload(&self) -> Result<(u64, Vec<Change>), Vec<String>> {
        let mut inner = self.inner.lock().await;
        let cfg = match config::load(&self.config_path) {
            Ok(c) => c,
            Err(errs) => {
                let list: Vec<String> = errs.0.iter().map(|d| d.to_string()).collect();
                for e in &list {
                    tracing::error!(error = %e, "reload rejected: invalid config");
                }
                return Err(list);
            }
        };
        let vrrp = cfg.vrrp.clone();
        match self.apply(&mut inner, cfg) {
            Ok(done) => {
                if let Err(e) = self.sync_vrrp(&vrrp).await {
                    tracing::error!(error = %e, "cannot start VRRP");
                }
                Ok(done)
            }
            Err(e) => {
                tracing::error!(error = %e, "reload rejected");
                Err(vec![e.to_string()])
            }
        }
    }

    /// Prepare (build every snapshot, reading certificates; bind every new
    /// address), then commit. A failure while preparing changes nothing.
    fn apply(&self, inner: &mut Inner, cfg: Config) -> Result<(u64, Vec<Change>), StartError> {
        let old = self.snapshot.load_full();
        let changes = plan::diff(&old.config, &cfg);
        let pools = build_pools(&cfg, Some(&old.pools));
        let http_pools = build_http_pools(&cfg, &pools, Some(&old.http_pools))?;
        let mut updates = Vec::new();
        let mut added = Vec::new();
        let mut rebinds = Vec::new();
        for l in &cfg.listeners {
            let key = key_of(l);
            match inner.listeners.get(&key) {
                None => added.push((l.clone(), make_rt(l, &pools, &http_pools, None)?)),
                Some(e) => match plan::listener_fate(&e.cfg, l) {
                    // Unchanged listeners get a new snapshot too: their pools are new.
                    Fate::Keep | Fate::Swap => updates.push((
                        key,
                        l.clone(),
                        make_rt(l, &pools, &http_pools, Some(&e.rt))?,
                    )),
                    Fate::Rebind(_) => {
                        rebinds.push((l.clone(), make_rt(l, &pools, &http_pools, None)?))
                    }
                },
            }
        }
        let mut bound = Vec::new();
        for (l, rt) in added {
            bound.push((l.clone(), bind(&l)?, rt));
        }
        // A listener that changes backlog or engine (tcp <-> http) on the
        // same address must free it before the new socket binds: the one step
        // that cannot be prepared, so it comes after every other bind succeeded.
        for (l, rt) in rebinds {
            if let Some(e) = inner.listeners.remove(&key_of(&l)) {
                e.stop.cancel();
            }
            bound.push((l.clone(), bind(&l)?, rt));
        }
        // Commit.
        let wanted: std::collections::HashSet<ListenerKey> =
            cfg.listeners.iter().map(key_of).collect();
        inner.listeners.retain(|key, e| {
            if !wanted.contains(key) {
                e.stop.cancel();
            }
            wanted.contains(key)
        });
        for (key, l, rt) in updates {
            if let Some(e) = inner.listeners.get_mut(&key) {
                match (&e.rt, rt) {
                    (Rt::L4(cur), NewRt::L4(r)) => cur.store(Arc::new(*r)),
                    (Rt::Http(cur), NewRt::Http(r)) => cur.store(Arc::new(*r)),
                    _ => {}
                }
                e.cfg = l;
            }
        }
        for (l, sock, rt) in bound {
            self.spawn_listener(inner, l, sock, rt);
        }
        sync_checkers(inner, &pools);
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        self.publish(inner, Arc::new(cfg), pools, http_pools);
        for c in &changes {
            match c {
                Change::NeedsRestart { .. } => tracing::warn!(generation, change = %c, "reload"),
                _ => tracing::info!(generation, change = %c, "reload"),
            }
        }
        tracing::info!(generation, changes = changes.len(), config = %self.config_path.display(), "config reloaded");
        Ok((generation, changes))
    }

    /// Stops accepting, lets connections finish up to `shutdown_timeout`.
    pub async fn shutdown(&self) {
        let timeout = self.config().global.shutdown_timeout;
        // Anycast first: withdraw, serve while the routers converge, then hand over and drain.
        if let Some(s) = self.scaleout.get() {
            s.shutdown().await;
        }
        // Make-before-break: the listeners keep serving while each master
        // hands its VIPs over; only then do we stop accepting and drain.
        if let Some(svc) = self.vrrp_service() {
            svc.shutdown().await;
        }
        {
            let inner = self.inner.lock().await;
            for e in inner.listeners.values() {
                e.stop.cancel();
            }
            for (_, tok) in inner.checkers.values() {
                tok.cancel();
            }
        }
        self.conns.close();
        let active = self.conns.len();
        if active > 0 {
            tracing::info!(connections = active, timeout = %config::duration::format(timeout), "draining connections");
        }
        if tokio::time::timeout(timeout, self.conns.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                remaining = self.conns.len(),
                "shutdown timeout: closing remaining connections"
            );
        }
        self.stop_admin.cancel();
        let _ = std::fs::remove_file(&self.config().global.admin_socket);
    }

    pub fn status(&self) -> Status {
        let snap = self.snapshot.load();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let listeners = snap
            .listeners
            .iter()
            .map(|(l, s, http)| ListenerStatus {
                request_seconds: http.as_ref().map(|_| s.request_seconds.snapshot()),
                routes: http
                    .as_ref()
                    .map(|h| {
                        let h = h.load();
                        h.router
                            .routes()
                            .iter()
                            .zip(&h.route_stats)
                            .map(|(r, st)| RouteStatus {
                                name: r.name.clone(),
                                requests: st.requests.load(Ordering::Relaxed),
                                by_class: std::array::from_fn(|i| {
                                    st.by_class[i].load(Ordering::Relaxed)
                                }),
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
                name: l.name.clone(),
                bind: l.bind.to_string(),
                protocol: proto_str(l.protocol).into(),
                pool: l.pool.clone(),
                active: s.active.load(Ordering::Relaxed),
                total: s.total.load(Ordering::Relaxed),
                queued: s.queued.load(Ordering::Relaxed),
                rejected: s.rejected.load(Ordering::Relaxed),
                no_backend: s.no_backend.load(Ordering::Relaxed),
                dropped: s.dropped.load(Ordering::Relaxed),
                bytes_in: s.bytes_in.load(Ordering::Relaxed),
                bytes_out: s.bytes_out.load(Ordering::Relaxed),
            })
            .collect();
        let pools = snap
            .config
            .pools
            .iter()
            .filter_map(|pc| snap.pools.get(&pc.name))
            .map(|p| PoolStatus {
                name: p.cfg.name.clone(),
                algorithm: p.cfg.algorithm.name().into(),
                healthy: p.healthy_count(),
                queued: p.queued(),
                queue_timeouts: p.shared.queue_timeouts.load(Ordering::Relaxed),
                retries: p.shared.retries.load(Ordering::Relaxed),
                no_backend: p.shared.no_backend.load(Ordering::Relaxed),
                backends: p
                    .backends
                    .iter()
                    .map(|b| {
                        let info = b.state.check_info();
                        BackendStatus {
                            name: b.cfg.name.clone(),
                            address: b.cfg.address.to_string(),
                            weight: b.state.weight(b.cfg.weight),
                            configured_weight: b.cfg.weight,
                            runtime: b.state.has_runtime_state(),
                            backup: b.cfg.backup,
                            health: if b.state.is_healthy() { "up" } else { "down" }.into(),
                            admin: serde_json::to_value(b.state.admin())
                                .ok()
                                .and_then(|v| v.as_str().map(String::from))
                                .unwrap_or_default(),
                            active: b.state.active.load(Ordering::Relaxed),
                            total: b.state.total.load(Ordering::Relaxed),
                            connect_failures: b.state.connect_failures.load(Ordering::Relaxed),
                            bytes_in: b.state.bytes_in.load(Ordering::Relaxed),
                            bytes_out: b.state.bytes_out.load(Ordering::Relaxed),
                            last_check: info.last_result,
                            reason: info.reason,
                            since_seconds: (info.changed_at > 0)
                                .then(|| now.saturating_sub(info.changed_at)),
                            checks_ok: b.state.checks_ok.load(Ordering::Relaxed),
                            checks_failed: b.state.checks_failed.load(Ordering::Relaxed),
                            latency_seconds: Some(b.state.latency.snapshot()),
                        }
                    })
                    .collect(),
            })
            .collect();
        let mut status = Status {
            version: env!("CARGO_PKG_VERSION").into(),
            pid: std::process::id(),
            config_file: self.config_path.display().to_string(),
            generation: self.generation(),
            uptime_seconds: self.started.elapsed().as_secs(),
            listeners,
            pools,
            vrrp: self
                .vrrp_service()
                .map(|v| v.status().iter().map(Into::into).collect())
                .unwrap_or_default(),
            anycast: Vec::new(),
            sync: None,
        };
        if let Some(s) = self.scaleout.get() {
            s.status(&mut status);
        }
        status
    }
}

/// Starts, keeps or restarts health checkers so exactly one runs per
/// (pool, backend) with the current settings.
fn sync_checkers(inner: &mut Inner, pools: &BTreeMap<String, Arc<Pool>>) {
    let mut wanted: HashMap<CheckerKey, (HealthConfig, &crate::pool::Backend, &str)> =
        HashMap::new();
    for p in pools.values() {
        for b in &p.backends {
            wanted.insert(
                (p.cfg.name.clone(), b.cfg.address),
                (p.cfg.health.clone(), b, &p.cfg.name),
            );
        }
    }
    inner
        .checkers
        .retain(|key, (hc, tok)| match wanted.get(key) {
            Some((w, _, _)) if w == hc => true,
            _ => {
                tok.cancel();
                false
            }
        });
    for (key, (hc, b, pool)) in wanted {
        if inner.checkers.contains_key(&key) {
            continue;
        }
        let tok = CancellationToken::new();
        crate::health::spawn(
            pool.to_string(),
            b.cfg.name.clone(),
            b.cfg.address,
            hc.clone(),
            b.state.clone(),
            tok.clone(),
        );
        inner.checkers.insert(key, (hc, tok));
    }
}

/// Waits for SIGHUP/SIGTERM/SIGINT on a plain thread (signal-hook) and
/// forwards them into the async world.
pub fn signals() -> std::io::Result<tokio::sync::mpsc::UnboundedReceiver<i32>> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut sigs = signal_hook::iterator::Signals::new([SIGHUP, SIGTERM, SIGINT])?;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::Builder::new()
        .name("tandem-signals".into())
        .spawn(move || {
            for s in sigs.forever() {
                if tx.send(s).is_err() {
                    break;
                }
            }
        })?;
    Ok(rx)
}

/// Runs the daemon until SIGTERM/SIGINT.
pub async fn run_until_signalled(config_path: &Path, cfg: Config) -> Result<(), StartError> {
    let mut sigs = signals().map_err(|source| StartError::Admin {
        path: "signal handler".into(),
        source,
    })?;
    let daemon = Daemon::start(config_path, cfg).await?;
    // Listeners are bound and VRRP instances initialized: tell systemd.
    crate::sd::notify("READY=1\nSTATUS=running");
    if let Some(every) = crate::sd::watchdog_interval() {
        tokio::spawn(async move {
            // Pinged from the data-plane runtime: a wedged runtime stops
            // the pings and systemd restarts us.
            let mut t = tokio::time::interval(every / 2);
            loop {
                t.tick().await;
                crate::sd::notify("WATCHDOG=1");
            }
        });
    }
    while let Some(sig) = sigs.recv().await {
        match sig {
            signal_hook::consts::SIGHUP => {
                tracing::info!("SIGHUP: reloading configuration");
                crate::sd::reloading();
                let status = match daemon.reload().await {
                    Ok((g, _)) => format!("STATUS=running (generation {g})"),
                    Err(e) => format!("STATUS=running; last reload rejected: {}", e.len()),
                };
                crate::sd::notify(&format!("READY=1\n{status}"));
            }
            _ => {
                tracing::info!(signal = sig, "shutting down");
                break;
            }
        }
    }
    crate::sd::notify("STOPPING=1\nSTATUS=handing over and draining");
    daemon.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}
