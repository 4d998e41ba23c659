//! Reload: prepare everything (pools, snapshots with their certificates, every new
//! socket bound), then commit, so a reload that fails while preparing changes nothing;
//! the typed plan (`plan::diff`) is what gets logged and what `tandem reload` prints.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::listener::Fresh;
use super::plan::{self, listener_key as key_of, Change, Fate, ListenerKey};
use super::{CheckerKey, Daemon, Inner, Snapshot, StartError};
use crate::config::{Config, HealthConfig, StickyConfig, VrrpConfig};
use crate::dataplane::l7::server::HttpPool;
use crate::dataplane::l7::sticky::StickyTable;
use crate::dataplane::l7::upstream::Upstream;
use crate::pool::Pool;
use crate::vrrp::instance::Tracker;
use crate::vrrp::service::VrrpService;

pub(super) fn build_pools(
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
pub(super) fn build_http_pools(
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

impl Daemon {
    pub(super) fn publish(
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
                inner
                    .listeners
                    .get(&key_of(l))
                    .map(|e| (e.cfg.clone(), e.stats.clone(), e.engine.http()))
            })
            .collect();
        self.snapshot.store(Arc::new(Snapshot {
            config,
            pools,
            http_pools,
            listeners,
        }));
    }

    /// Starts the VRRP service on first use, or hands it the new instance list.
    pub(super) async fn sync_vrrp(&self, cfgs: &[VrrpConfig]) -> std::io::Result<()> {
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

    /// Re-reads the config file and applies it. On any error nothing changes
    /// and every error is returned (and logged). On success: the new
    /// generation and what changed.
    pub async fn reload(&self) -> Result<(u64, Vec<Change>), Vec<String>> {
        let mut inner = self.inner.lock().await;
        let cfg = match crate::preflight::load(&self.config_path) {
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
                None => added.push((l.clone(), Fresh::build(l, &pools, &http_pools)?)),
                Some(e) => match plan::listener_fate(&e.cfg, l) {
                    // Unchanged listeners get a new snapshot too: their pools are new.
                    Fate::Keep | Fate::Swap => {
                        updates.push((key, l.clone(), e.engine.renew(l, &pools, &http_pools)?))
                    }
                    Fate::Rebind(_) => {
                        rebinds.push((l.clone(), Fresh::build(l, &pools, &http_pools)?))
                    }
                },
            }
        }
        let mut bound = Vec::new();
        for (l, rt) in added {
            bound.push((l.clone(), rt.bind(&l)?));
        }
        // A listener that changes backlog or engine (tcp <-> http) on the
        // same address must free it before the new socket binds: the one step
        // that cannot be prepared, so it comes after every other bind succeeded.
        for (l, rt) in rebinds {
            if let Some(e) = inner.listeners.remove(&key_of(&l)) {
                e.stop.cancel();
            }
            bound.push((l.clone(), rt.bind(&l)?));
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
        for (key, l, renewal) in updates {
            if let Some(e) = inner.listeners.get_mut(&key) {
                renewal.commit();
                e.cfg = l;
            }
        }
        for (l, prepared) in bound {
            self.spawn_listener(inner, l, prepared);
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
}

/// Starts, keeps or restarts health checkers so exactly one runs per
/// (pool, backend) with the current settings.
pub(super) fn sync_checkers(inner: &mut Inner, pools: &BTreeMap<String, Arc<Pool>>) {
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
