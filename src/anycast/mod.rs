//! Scale-out: announce service addresses to the routers through a real routing daemon.
//!
//! Each `[[anycast]]` address is announced while this node can serve it (every listed pool has
//! a serving backend, no operator drain, not shutting down) and withdrawn otherwise; the
//! routers' ECMP spreads flows over the nodes that announce it. The [`decision`] is pure; the
//! controller here polls the inputs every 50 ms and tells an [`Announcer`] what changed. The
//! announcer shipped is [`kernel::KernelRoutes`] (BIRD learns a kernel table); an FRR or other
//! announcer only has to implement the trait.
//!
//! Shutdown: [`AnycastHandle::withdraw_all`] withdraws every address, then waits the longest
//! `converge` time while the listeners keep serving, so that the routers have moved new flows to
//! the other nodes before this one stops accepting.

pub mod decision;
pub mod kernel;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::AnycastConfig;
use crate::net::NetError;
use decision::{decide, Inputs, Reason};

/// The boundary to a routing daemon.
pub trait Announcer: Send + 'static {
    fn name(&self) -> &'static str;
    /// Puts the address where this node accepts its traffic (before any announcement).
    fn prepare(&mut self, a: &AnycastConfig) -> impl Future<Output = Result<(), NetError>> + Send;
    fn announce(&mut self, a: &AnycastConfig) -> impl Future<Output = Result<(), NetError>> + Send;
    fn withdraw(&mut self, a: &AnycastConfig) -> impl Future<Output = Result<(), NetError>> + Send;
    /// The address left the config: withdraw it and take it off its interface.
    fn forget(&mut self, a: &AnycastConfig) -> impl Future<Output = Result<(), NetError>> + Send;
}

/// The running config's `[[anycast]]` sections.
pub type Configs = Arc<dyn Fn() -> Vec<AnycastConfig> + Send + Sync>;
/// Whether a pool has a serving backend (None: no such pool).
pub type PoolHealth = Arc<dyn Fn(&str) -> Option<bool> + Send + Sync>;

const TICK: Duration = Duration::from_millis(50);

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AnycastStatus {
    pub name: String,
    pub address: String,
    pub table: u32,
    pub announced: bool,
    /// Why (not): "announced", "withdrawn: pool web has no serving backend", ...
    pub reason: String,
    pub detail: Reason,
    pub since_seconds: f64,
    pub transitions: u64,
}

struct Entry {
    cfg: AnycastConfig,
    prepared: bool,
    announced: bool,
    reason: Reason,
    since: Instant,
    healthy_since: Option<Instant>,
    transitions: u64,
    error: Option<String>,
}

pub struct AnycastHandle {
    drained: Mutex<HashSet<String>>,
    shutting_down: AtomicBool,
    status: Mutex<Vec<AnycastStatus>>,
    /// True once nothing is announced after a shutdown request.
    all_withdrawn: watch::Receiver<bool>,
    max_converge: Mutex<Duration>,
    names: Mutex<Vec<String>>,
}

impl AnycastHandle {
    pub fn status(&self) -> Vec<AnycastStatus> {
        self.status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Operator drain (true) or undrain (false) of one address.
    pub fn set_drained(&self, name: &str, drained: bool) -> Result<String, (u16, String)> {
        if !self
            .names
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .any(|n| n == name)
        {
            return Err((404, format!("no [[anycast]] named {name:?}")));
        }
        let mut d = self.drained.lock().unwrap_or_else(PoisonError::into_inner);
        let msg = if drained {
            d.insert(name.to_string());
            format!("{name}: drained, the route is withdrawn (listeners keep serving)")
        } else {
            d.remove(name);
            format!("{name}: enabled, announced again once its pools are healthy")
        };
        tracing::info!(anycast = name, drained, "{msg}");
        Ok(msg)
    }

    /// Withdraws everything, then keeps serving for the longest `converge` before returning.
    pub async fn withdraw_all(&self) {
        self.shutting_down.store(true, Ordering::Release);
        let mut rx = self.all_withdrawn.clone();
        let _ = tokio::time::timeout(Duration::from_secs(5), rx.wait_for(|done| *done)).await;
        let converge = *self
            .max_converge
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if !converge.is_zero() {
            tracing::info!(converge = %crate::config::duration::format(converge), "anycast routes withdrawn: serving while the routers converge");
            tokio::time::sleep(converge).await;
        }
    }
}

/// Starts the controller with an announcer; it runs until `stop`.
pub fn start<A: Announcer>(
    mut announcer: A,
    configs: Configs,
    health: PoolHealth,
    stop: CancellationToken,
) -> Arc<AnycastHandle> {
    let (done_tx, done_rx) = watch::channel(false);
    let handle = Arc::new(AnycastHandle {
        drained: Mutex::new(HashSet::new()),
        shutting_down: AtomicBool::new(false),
        status: Mutex::new(Vec::new()),
        all_withdrawn: done_rx,
        max_converge: Mutex::new(Duration::ZERO),
        names: Mutex::new(Vec::new()),
    });
    let h = handle.clone();
    tracing::info!(announcer = announcer.name(), "anycast announcer started");
    tokio::spawn(async move {
        let mut entries: HashMap<String, Entry> = HashMap::new();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let cfgs = configs();
            step(&mut announcer, &mut entries, &cfgs, &health, &h).await;
            let shutting = h.shutting_down.load(Ordering::Acquire);
            let _ = done_tx.send(shutting && entries.values().all(|e| !e.announced));
        }
    });
    handle
}

async fn step<A: Announcer>(
    announcer: &mut A,
    entries: &mut HashMap<String, Entry>,
    cfgs: &[AnycastConfig],
    health: &PoolHealth,
    h: &AnycastHandle,
) {
    let now = Instant::now();
    // Addresses removed from the config (or changed): forget the old one.
    let wanted: HashMap<&str, &AnycastConfig> = cfgs.iter().map(|c| (c.name.as_str(), c)).collect();
    let gone: Vec<String> = entries
        .iter()
        .filter(|(n, e)| wanted.get(n.as_str()).is_none_or(|c| **c != e.cfg))
        .map(|(n, _)| n.clone())
        .collect();
    for name in gone {
        if let Some(e) = entries.remove(&name) {
            if let Err(err) = announcer.forget(&e.cfg).await {
                tracing::warn!(anycast = %name, error = %err, "cannot remove anycast address");
            }
            tracing::info!(anycast = %name, address = %e.cfg.address, "anycast address removed from the config: withdrawn");
        }
    }
    let drained = h
        .drained
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let shutting_down = h.shutting_down.load(Ordering::Acquire);
    for c in cfgs {
        let e = entries.entry(c.name.clone()).or_insert_with(|| Entry {
            cfg: c.clone(),
            prepared: false,
            announced: false,
            reason: Reason::Settling { remaining_ms: 0 },
            since: now,
            healthy_since: None,
            transitions: 0,
            error: None,
        });
        if !e.prepared && !shutting_down {
            match announcer.prepare(c).await {
                Ok(()) => {
                    e.prepared = true;
                    e.error = None;
                }
                Err(err) => e.error = Some(err.to_string()),
            }
        }
        let pool_down = c.pools.iter().find(|p| health(p) != Some(true)).cloned();
        if pool_down.is_some() {
            e.healthy_since = None;
        } else if e.healthy_since.is_none() {
            e.healthy_since = Some(now);
        }
        let inputs = Inputs {
            shutting_down,
            drained: drained.contains(&c.name),
            pool_down,
            healthy_since: e.healthy_since,
            error: e.error.clone(),
        };
        let reason = decide(&inputs, c.announce_delay, now);
        let want = reason.announced();
        if want != e.announced {
            let r = if want {
                announcer.announce(c).await
            } else {
                announcer.withdraw(c).await
            };
            match r {
                Ok(()) => {
                    e.announced = want;
                    e.transitions += 1;
                    e.since = now;
                    tracing::info!(anycast = %c.name, address = %c.address, announced = want, reason = %reason.text(), "anycast route {}", if want { "announced" } else { "withdrawn" });
                }
                Err(err) => {
                    tracing::warn!(anycast = %c.name, error = %err, "anycast announcer failed");
                    e.error = Some(err.to_string());
                }
            }
        } else if want && e.error.is_some() && e.prepared {
            e.error = None;
        }
        // Settling counts down each tick: log only changes of kind.
        if std::mem::discriminant(&reason) != std::mem::discriminant(&e.reason)
            && !want
            && !e.announced
        {
            tracing::debug!(anycast = %c.name, reason = %reason.text(), "anycast not announced");
        }
        e.reason = reason;
    }
    let mut status: Vec<AnycastStatus> = cfgs
        .iter()
        .filter_map(|c| entries.get(&c.name))
        .map(|e| AnycastStatus {
            name: e.cfg.name.clone(),
            address: e.cfg.address.to_string(),
            table: e.cfg.table,
            announced: e.announced,
            reason: e.reason.text(),
            detail: e.reason.clone(),
            since_seconds: now.saturating_duration_since(e.since).as_secs_f64(),
            transitions: e.transitions,
        })
        .collect();
    status.sort_by(|a, b| a.name.cmp(&b.name));
    *h.status.lock().unwrap_or_else(PoisonError::into_inner) = status;
    *h.max_converge
        .lock()
        .unwrap_or_else(PoisonError::into_inner) =
        cfgs.iter().map(|c| c.converge).max().unwrap_or_default();
    *h.names.lock().unwrap_or_else(PoisonError::into_inner) =
        cfgs.iter().map(|c| c.name.clone()).collect();
}

/// `tandem cleanup`: takes the anycast addresses off their interfaces (the routes went with the
/// TUN device when the process ended).
pub async fn cleanup(cfgs: &[AnycastConfig]) -> Result<Vec<String>, NetError> {
    let (nl, conn) = crate::net::netlink_connect()?;
    tokio::spawn(conn);
    let mut removed = Vec::new();
    for c in cfgs {
        let Ok(index) = crate::net::ifindex(&c.interface) else {
            continue;
        };
        if crate::net::has_vip(&nl, index, c.address).await? {
            crate::net::del_vip(&nl, index, c.address, c.prefix_len()).await?;
            removed.push(format!(
                "{}/{} on {}",
                c.address,
                c.prefix_len(),
                c.interface
            ));
        }
    }
    Ok(removed)
}
