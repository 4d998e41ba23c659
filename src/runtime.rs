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
use std::os::fd::{AsFd, OwnedFd};
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
use crate::vrrp::instance::{Resume, Tracker};
use crate::vrrp::service::VrrpService;

mod control;
pub mod plan;
pub mod upgrade;
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
    /// Copies of the listening sockets, handed over by `tandem upgrade`.
    fds: Vec<OwnedFd>,
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
    /// Open (cancelled) once this process may accept: at once, or after an
    /// upgrade's old process said go.
    gate: CancellationToken,
    /// Fired when a `tandem upgrade` handed everything to a new process.
    retired: CancellationToken,
    upgrading: tokio::sync::Mutex<()>,
    /// Copies of the sockets that live as long as the process (admin,
    /// metrics, sync), by hand-over key.
    held: std::sync::Mutex<Vec<(String, Vec<OwnedFd>)>>,
    /// VRRP roles from the old process, used by the first VRRP start.
    resume: std::sync::Mutex<HashMap<String, Resume>>,
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
    let inherited = upgrade::take(&upgrade::listener_key(l.protocol.is_stream(), l.bind));
    if !inherited.is_empty() {
        return adopt(l, inherited).map_err(err);
    }
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

/// Sockets from the old process of an upgrade: already bound and
/// listening, so no connection waiting in their queues is lost.
fn adopt(l: &ListenerConfig, fds: Vec<OwnedFd>) -> std::io::Result<Bound> {
    if l.protocol.is_stream() {
        fds.into_iter()
            .map(|fd| {
                let s = std::net::TcpListener::from(fd);
                // A new backlog applies to a listening socket in place.
                socket2::SockRef::from(&s).listen(l.backlog as i32)?;
                s.set_nonblocking(true)?;
                Ok(s)
            })
            .collect::<std::io::Result<Vec<_>>>()
            .map(Bound::Tcp)
    } else {
        let fd = fds.into_iter().next().ok_or(std::io::ErrorKind::NotFound)?;
        let s = std::net::UdpSocket::from(fd);
        s.set_nonblocking(true)?;
        tokio::net::UdpSocket::from_std(s).map(Bound::Udp)
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
                        crate::tls::server_config_with(&specs, default, h.http2, &h.tls_opts)
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
    /// left running if any listener cannot bind. `carried`: the state an
    /// upgrade's old process handed over (its sockets are adopted by key);
    /// such a daemon accepts only once [`Daemon::open`] is called.
    pub async fn start(
        config_path: &Path,
        cfg: Config,
        carried: Option<&upgrade::Carried>,
    ) -> Result<Arc<Daemon>, StartError> {
        let admin_err = |source| StartError::Admin {
            path: cfg.global.admin_socket.display().to_string(),
            source,
        };
        let admin_key = format!("admin-socket {}", cfg.global.admin_socket.display());
        let admin_listener = match upgrade::take(&admin_key).into_iter().next() {
            Some(fd) => {
                let l = std::os::unix::net::UnixListener::from(fd);
                l.set_nonblocking(true).map_err(admin_err)?;
                tokio::net::UnixListener::from_std(l).map_err(admin_err)?
            }
            None => admin::bind(&cfg.global.admin_socket).map_err(admin_err)?,
        };
        let mut held = vec![(admin_key, dup(&admin_listener))];
        let pools = build_pools(&cfg, None);
        if let Some(c) = carried {
            restore_backends(&pools, &c.backends);
            if let Some(secret) = c.sticky_boot_secret {
                if !crate::l7::sticky::adopt_boot_secret(secret) {
                    tracing::warn!("the per-boot sticky key was drawn before the upgrade hand-over: cookie-sticky clients may move");
                }
            }
        }
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
            gate: CancellationToken::new(),
            retired: CancellationToken::new(),
            upgrading: tokio::sync::Mutex::new(()),
            held: std::sync::Mutex::new(Vec::new()),
            resume: std::sync::Mutex::new(
                carried.map(|c| resume_roles(&cfg, c)).unwrap_or_default(),
            ),
        });
        if carried.is_none() {
            daemon.gate.cancel();
        }
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
        let (gate, ctl, stop) = (
            daemon.gate.clone(),
            daemon.clone() as admin::Ctl,
            daemon.stop_admin.clone(),
        );
        tokio::spawn(async move {
            gate.cancelled().await;
            admin::serve(admin_listener, ctl, stop).await
        });
        for (addr, token, what) in [
            (cfg.global.metrics_listen, None, "metrics"),
            (
                cfg.global.admin_listen,
                cfg.global.admin_token.clone(),
                "admin",
            ),
        ] {
            let Some(addr) = addr else { continue };
            let err = |source| StartError::Admin {
                path: format!("{what} listener {addr}"),
                source,
            };
            let key = format!("{what} {addr}");
            let l = match upgrade::take(&key).into_iter().next() {
                Some(fd) => {
                    let l = std::net::TcpListener::from(fd);
                    l.set_nonblocking(true).map_err(err)?;
                    tokio::net::TcpListener::from_std(l).map_err(err)?
                }
                None => tokio::net::TcpListener::bind(addr).await.map_err(err)?,
            };
            held.push((key, dup(&l)));
            tracing::info!(address = %addr, "{what} listener");
            let (gate, ctl, stop) = (
                daemon.gate.clone(),
                daemon.clone() as admin::Ctl,
                daemon.stop_admin.clone(),
            );
            tokio::spawn(async move {
                gate.cancelled().await;
                admin::serve_tcp(l, ctl, stop, token).await
            });
        }
        daemon.hold(held);
        for key in upgrade::release_unused() {
            tracing::info!(socket = %key, "upgrade: socket not in the new config, closed");
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

    /// One accept loop per worker socket, on that worker's runtime, once
    /// the upgrade gate opens. Tracked like the connections: a drain must
    /// not end while an accept that raced the stop is being handed on.
    fn spawn_accept_loops<S, F>(
        &self,
        name: &str,
        socks: Vec<std::net::TcpListener>,
        stop: &CancellationToken,
        serve: S,
    ) where
        S: Fn(tokio::net::TcpListener) -> F + Clone + Send + 'static,
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        for (i, sock) in socks.into_iter().enumerate() {
            let (name, gate, stop, serve) = (
                name.to_string(),
                self.gate.clone(),
                stop.clone(),
                serve.clone(),
            );
            let accepting = self.conns.track_future(async move {
                if !opened(&gate, &stop).await {
                    return;
                }
                match tokio::net::TcpListener::from_std(sock) {
                    Ok(l) => serve(l).await,
                    Err(e) => {
                        tracing::error!(listener = %name, error = %e, "cannot register listener")
                    }
                }
            });
            crate::worker::get().handle(i).spawn(accepting);
        }
    }

    fn spawn_listener(&self, inner: &mut Inner, cfg: ListenerConfig, sock: Bound, rt: NewRt) {
        let stats = Arc::new(ListenerStats::default());
        let stop = CancellationToken::new();
        let fds = match &sock {
            Bound::Tcp(socks) => socks.iter().flat_map(dup).collect(),
            Bound::Udp(s) => dup(s),
        };
        let rt = match (sock, rt) {
            (Bound::Tcp(socks), NewRt::L4(r)) => {
                let r = Arc::new(ArcSwap::from(Arc::new(*r)));
                let (r2, stats2, stop2, conns) =
                    (r.clone(), stats.clone(), stop.clone(), self.conns.clone());
                self.spawn_accept_loops(&cfg.name, socks, &stop, move |l| {
                    crate::l4::tcp::serve(
                        l,
                        r2.clone(),
                        stats2.clone(),
                        stop2.clone(),
                        conns.clone(),
                    )
                });
                Rt::L4(r)
            }
            (Bound::Udp(s), NewRt::L4(r)) => {
                let r = Arc::new(ArcSwap::from(Arc::new(*r)));
                let (gate, r2, stats2, stop2) =
                    (self.gate.clone(), r.clone(), stats.clone(), stop.clone());
                self.conns.spawn(async move {
                    if opened(&gate, &stop2).await {
                        crate::l4::udp::serve(s, r2, stats2, stop2).await
                    }
                });
                Rt::L4(r)
            }
            (Bound::Tcp(socks), NewRt::Http(r)) => {
                let r = Arc::new(ArcSwap::from(Arc::new(*r)));
                let (r2, stats2, stop2, conns) =
                    (r.clone(), stats.clone(), stop.clone(), self.conns.clone());
                self.spawn_accept_loops(&cfg.name, socks, &stop, move |l| {
                    crate::l7::server::serve(
                        l,
                        r2.clone(),
                        stats2.clone(),
                        stop2.clone(),
                        conns.clone(),
                    )
                });
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
                fds,
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
        let resume = self
            .resume
            .lock()
            .map(|mut r| std::mem::take(&mut *r))
            .unwrap_or_default();
        let svc = tokio::task::spawn_blocking(move || VrrpService::start(cfgs, tracker, resume))
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
        // A reload also reopens access logs (rotation without SIGUSR1).
        crate::accesslog::reopen_all();
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
        // Anycast first: withdraw, serve while the routers converge, then hand over and drain.
        if let Some(s) = self.scaleout.get() {
            s.shutdown().await;
        }
        // Make-before-break: the listeners keep serving while each master
        // hands its VIPs over; only then do we stop accepting and drain.
        if let Some(svc) = self.vrrp_service() {
            svc.shutdown().await;
        }
        self.drain().await;
        let _ = std::fs::remove_file(&self.config().global.admin_socket);
    }

    /// After `tandem upgrade`: the new process accepts on the same sockets
    /// and runs the election. Stop accepting, leave the election without a
    /// word (no priority 0, the VIPs stay where they are), drain, keep the
    /// admin socket file (it is the new process's now).
    async fn retire(&self) {
        self.stop_admin.cancel();
        if let Some(s) = self.scaleout.get() {
            s.stop();
        }
        if let Some(svc) = self.vrrp_service() {
            svc.detach().await;
        }
        self.drain().await;
    }

    /// Stops every listener and checker, lets connections finish up to
    /// `shutdown_timeout`.
    async fn drain(&self) {
        let timeout = self.config().global.shutdown_timeout;
        {
            let mut inner = self.inner.lock().await;
            for e in inner.listeners.values_mut() {
                e.stop.cancel();
                // The copies kept for a hand-over would keep the port open:
                // a stopped listener must refuse, not queue, new connections.
                e.fds.clear();
            }
            for (_, tok) in inner.checkers.values() {
                tok.cancel();
            }
        }
        if let Ok(mut h) = self.held.lock() {
            h.clear();
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
    }

    fn hold(&self, sockets: Vec<(String, Vec<OwnedFd>)>) {
        if let Ok(mut h) = self.held.lock() {
            h.extend(sockets);
        }
    }

    /// Keeps a copy of a process-long socket (sticky sync) for an upgrade.
    pub fn hold_socket(&self, key: String, s: &impl AsFd) {
        self.hold(vec![(key, dup(s))]);
    }

    /// Lets a daemon started from an upgrade hand-over accept.
    pub fn open(&self) {
        self.gate.cancel();
    }

    /// Resolves once this process has handed everything to a new one.
    pub async fn retired(&self) {
        self.retired.cancelled().await
    }

    /// What the new process needs: every socket (by key) and the state.
    async fn handover(&self) -> (upgrade::Carried, Vec<(String, Vec<OwnedFd>)>) {
        let mut sockets = Vec::new();
        {
            let inner = self.inner.lock().await;
            for e in inner.listeners.values() {
                let fds = e.fds.iter().flat_map(dup).collect();
                let key = upgrade::listener_key(e.cfg.protocol.is_stream(), e.cfg.bind);
                sockets.push((key, fds));
            }
        }
        if let Ok(h) = self.held.lock() {
            for (k, fds) in h.iter() {
                sockets.push((k.clone(), fds.iter().flat_map(dup).collect()));
            }
        }
        let vrrp = self
            .vrrp_service()
            .map(|v| v.status())
            .unwrap_or_default()
            .into_iter()
            .map(|i| upgrade::CarriedInstance {
                master: i.state == crate::vrrp::machine::State::Master,
                virtual_ips: i.virtual_ips.iter().map(|v| v.to_string()).collect(),
                name: i.name,
                interface: i.interface,
                vrid: i.vrid,
                priority_override: i.priority_override,
            })
            .collect();
        let snap = self.snapshot.load();
        let backends = snap
            .pools
            .values()
            .flat_map(|p| {
                p.backends.iter().map(|b| upgrade::CarriedBackend {
                    pool: p.cfg.name.clone(),
                    address: b.cfg.address,
                    admin: b.state.admin(),
                    weight: b.state.weight_override(),
                    healthy: b.state.is_healthy(),
                })
            })
            .collect();
        let carried = upgrade::Carried {
            from_pid: std::process::id(),
            from_version: crate::version(),
            sockets: Vec::new(),
            vrrp,
            backends,
            sticky_boot_secret: Some(crate::l7::sticky::boot_secret_for_upgrade()),
        };
        (carried, sockets)
    }

    /// `tandem upgrade`: starts the binary at our own path and hands over.
    /// On success this process retires (see [`Daemon::retired`]); on any
    /// failure nothing here has changed and the error says why.
    pub async fn upgrade(&self) -> Result<(u32, String), String> {
        let _one = self
            .upgrading
            .try_lock()
            .map_err(|_| "an upgrade is already in progress".to_string())?;
        if self.retired.is_cancelled() {
            return Err("this process has already handed over".into());
        }
        let (carried, sockets) = self.handover().await;
        let count: usize = sockets.iter().map(|(_, v)| v.len()).sum();
        tracing::info!(sockets = count, binary = ?upgrade::binary().ok(), "upgrade: starting the new process");
        let pending = tokio::task::spawn_blocking(move || upgrade::launch(carried, sockets))
            .await
            .map_err(|e| e.to_string())??;
        let (pid, version) = (pending.pid, pending.version.clone());
        // systemd must follow the new process before it reports READY.
        crate::sd::notify(&format!("MAINPID={pid}"));
        match tokio::task::spawn_blocking(move || pending.go()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                crate::sd::notify(&format!("MAINPID={}", std::process::id()));
                return Err(e);
            }
            Err(e) => {
                crate::sd::notify(&format!("MAINPID={}", std::process::id()));
                return Err(e.to_string());
            }
        }
        tracing::info!(new_pid = pid, version = %version, "upgrade: the new process accepts; draining and exiting");
        self.retired.cancel();
        Ok((pid, version))
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
                denied: s.policy.denied.load(Ordering::Relaxed),
                rate_limited: s.policy.rate_limited.load(Ordering::Relaxed),
                proxy_errors: s.policy.proxy_errors.load(Ordering::Relaxed),
                bytes_in: s.bytes_in.load(Ordering::Relaxed),
                bytes_out: s.bytes_out.load(Ordering::Relaxed),
                spliced_bytes: s.spliced.load(Ordering::Relaxed),
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
                            ejected_seconds: b.state.ejected_for().map(|d| d.as_secs_f64()),
                            ejections: b.state.ejections.load(Ordering::Relaxed),
                            effective_weight: b
                                .state
                                .ramped_weight(b.state.weight(b.cfg.weight), p.cfg.slow_start),
                        }
                    })
                    .collect(),
            })
            .collect();
        let mut status = Status {
            version: crate::version(),
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

/// A close-on-exec copy of a socket, to hand over later (none if the
/// process is out of descriptors: that socket is then re-bound by the new process).
fn dup(s: &impl AsFd) -> Vec<OwnedFd> {
    s.as_fd().try_clone_to_owned().into_iter().collect()
}

/// Waits for the upgrade gate to open; false if the listener was stopped first.
async fn opened(gate: &CancellationToken, stop: &CancellationToken) -> bool {
    tokio::select! {
        biased;
        _ = stop.cancelled() => false,
        _ = gate.cancelled() => true,
    }
}

/// Backends keep their drain/disable, runtime weight and health across an upgrade.
fn restore_backends(pools: &BTreeMap<String, Arc<Pool>>, carried: &[upgrade::CarriedBackend]) {
    for c in carried {
        let Some(b) = pools
            .get(&c.pool)
            .and_then(|p| p.backends.iter().find(|b| b.cfg.address == c.address))
        else {
            continue;
        };
        b.state.set_admin(c.admin);
        b.state.set_weight_override(c.weight);
        b.state
            .set_healthy(c.healthy, "carried over by the upgrade");
    }
}

/// The roles to resume: only for an instance the new config runs as the
/// same virtual router; anything else starts afresh as Backup.
fn resume_roles(cfg: &Config, carried: &upgrade::Carried) -> HashMap<String, Resume> {
    cfg.vrrp
        .iter()
        .filter_map(|v| {
            let c = carried.vrrp.iter().find(|c| c.name == v.name)?;
            let vips: Vec<String> = v.virtual_ips.iter().map(|x| x.to_string()).collect();
            (c.interface == v.interface && c.vrid == v.vrid && c.virtual_ips == vips).then(|| {
                (
                    v.name.clone(),
                    Resume {
                        master: c.master,
                        priority_override: c.priority_override,
                    },
                )
            })
        })
        .collect()
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
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};
    let mut sigs = signal_hook::iterator::Signals::new([SIGHUP, SIGTERM, SIGINT, SIGUSR1])?;
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

/// Runs the daemon until SIGTERM/SIGINT, or until it hands over to an
/// upgraded process. With `handoff`, this process is that upgraded one.
pub async fn run_until_signalled(
    config_path: &Path,
    cfg: Config,
    handoff: Option<upgrade::Handoff>,
) -> Result<(), StartError> {
    let mut sigs = signals().map_err(|source| StartError::Admin {
        path: "signal handler".into(),
        source,
    })?;
    let daemon = match Daemon::start(config_path, cfg, handoff.as_ref().map(|h| &h.carried)).await {
        Ok(d) => d,
        Err(e) => {
            if let Some(h) = &handoff {
                h.refuse(&e.to_string());
            }
            return Err(e);
        }
    };
    if let Some(h) = handoff {
        let from = h.carried.from_pid;
        // Adverts overlap instead of pausing: the old process goes on
        // advertising until ours are out (our own adverts are ignored by
        // both, the peer just hears the master twice as often for a moment).
        if !crate::vrrp::instance::wait_resumed(std::time::Duration::from_secs(5)).await {
            tracing::warn!("upgrade: a resumed master has not advertised within 5 s; going on");
        }
        match tokio::task::spawn_blocking(move || h.ready().map(|()| h)).await {
            Ok(Ok(h)) => {
                daemon.open();
                h.running();
                tracing::info!(from_pid = from, version = %crate::version(), "upgrade: took over listeners and VRRP roles");
            }
            _ => {
                // The old process gave up on us and keeps serving: leave at
                // once, without resigning or removing an address.
                tracing::error!(from_pid = from, "upgrade aborted by the old process");
                std::process::exit(1);
            }
        }
    }
    // Listeners are bound and VRRP instances initialized: tell systemd.
    crate::sd::notify("READY=1\nSTATUS=running");
    if let Some(every) = crate::sd::watchdog_interval() {
        let d = daemon.clone();
        tokio::spawn(async move {
            // Pinged from the data-plane runtime: a wedged runtime stops
            // the pings and systemd restarts us.
            let mut t = tokio::time::interval(every / 2);
            while !d.retired.is_cancelled() {
                t.tick().await;
                crate::sd::notify("WATCHDOG=1");
            }
        });
    }
    loop {
        let sig = tokio::select! {
            s = sigs.recv() => s,
            _ = daemon.retired() => {
                daemon.retire().await;
                // Let the answer to `tandem upgrade` reach its caller.
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                tracing::info!("handed over to the upgraded process: exiting");
                return Ok(());
            }
        };
        let Some(sig) = sig else { break };
        match sig {
            signal_hook::consts::SIGUSR1 => {
                // logrotate's postrotate: new lines go to a fresh file.
                crate::accesslog::reopen_all();
                tracing::info!("SIGUSR1: reopening access logs");
            }
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
