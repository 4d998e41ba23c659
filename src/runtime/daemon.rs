//! Start (bind everything, then start the election and the admin API), shutdown
//! (make-before-break: anycast withdraw, VRRP hand-over, then drain), and the in-place
//! upgrade's two sides (hand everything to a new process; retire without a word).

use std::collections::{BTreeMap, HashMap};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::apply::{build_http_pools, build_pools, sync_checkers};
use super::listener::Fresh;
use super::{dup, scaleout, upgrade, Daemon, Inner, Snapshot, StartError};
use crate::admin;
use crate::config::{self, Config};
use crate::pool::Pool;
use crate::vrrp::instance::Resume;

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
                if !crate::dataplane::l7::sticky::adopt_boot_secret(secret) {
                    tracing::warn!("the per-boot sticky key was drawn before the upgrade hand-over: cookie-sticky clients may move");
                }
            }
        }
        let http_pools = build_http_pools(&cfg, &pools, None)?;
        let mut bound = Vec::new();
        for l in &cfg.listeners {
            let fresh = Fresh::build(l, &pools, &http_pools)?;
            bound.push((l.clone(), fresh.bind(l)?));
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
            for (l, prepared) in bound {
                daemon.spawn_listener(&mut inner, l, prepared);
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
        let scaleout = scaleout::ScaleOut::start(&daemon)
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
    pub(super) async fn retire(&self) {
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

    pub(super) fn hold(&self, sockets: Vec<(String, Vec<OwnedFd>)>) {
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
            sticky_boot_secret: Some(crate::dataplane::l7::sticky::boot_secret_for_upgrade()),
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
