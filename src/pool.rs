//! Pools of backends as the data plane sees them.
//!
//! A [`Pool`] is an immutable snapshot built from one config generation; its
//! backends point at [`BackendState`]s that outlive reloads (matched by pool
//! name and address) so health, counters and in-flight connection counts
//! survive a SIGHUP. Everything the hot path touches is an atomic: picking a
//! backend never takes a lock shared across pools.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::balance::{Balancer, Build, Candidate, View};
use crate::config::{BackendConfig, OutlierConfig, PoolConfig};
use crate::stats::Histogram;

/// Administrative state set at runtime (drain/disable), independent of health.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdminState {
    Enabled,
    Draining,
    Disabled,
}

impl AdminState {
    /// The name the admin API and the config use.
    pub fn name(self) -> &'static str {
        match self {
            AdminState::Enabled => "enabled",
            AdminState::Draining => "draining",
            AdminState::Disabled => "disabled",
        }
    }

    fn from_u8(v: u8) -> Self {
        match v {
            1 => AdminState::Draining,
            2 => AdminState::Disabled,
            _ => AdminState::Enabled,
        }
    }
}

/// What the health checker last concluded, for `tandem status`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CheckInfo {
    /// Result text of the last probe ("ok", "connect refused", "status 500", ...).
    pub last_result: String,
    /// Unix time (seconds) of the last health state change; 0 = never changed.
    pub changed_at: u64,
    /// Why the backend is in its current state.
    pub reason: String,
}

/// Live state of one backend; shared by every config generation that keeps it.
#[derive(Debug)]
pub struct BackendState {
    healthy: AtomicBool,
    admin: AtomicU8,
    /// Set by passive marking so the active checker restarts its rise count.
    passive_down: AtomicBool,
    pub active: AtomicU64,
    pub total: AtomicU64,
    pub connect_failures: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    ewma_ns: AtomicU64,
    passive_streak: AtomicU32,
    check: Mutex<CheckInfo>,
    /// Weight set at runtime; 0 = the configured weight.
    weight_override: AtomicU32,
    /// Cancelled to close every open connection of this backend (disable).
    cut: Mutex<CancellationToken>,
    pub checks_ok: AtomicU64,
    pub checks_failed: AtomicU64,
    /// Connect time (TCP) or time to first response byte (HTTP).
    pub latency: Histogram,
    /// When the backend last came up ([`now_ms`]); 0 once its slow start
    /// is over (or it never went down).
    up_since_ms: AtomicU64,
    /// 5xx responses in a row (outlier detection).
    streak_5xx: AtomicU32,
    /// Ejected from traffic until this [`now_ms`]; 0 = not ejected.
    ejected_until_ms: AtomicU64,
    /// When the last ejection started, and how many came in a row: each
    /// doubles the next one's length until a quiet spell resets it.
    last_ejection_ms: AtomicU64,
    ejection_run: AtomicU32,
    pub ejections: AtomicU64,
}

/// Milliseconds on a process-wide monotonic clock, never 0.
pub fn now_ms() -> u64 {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

impl Default for BackendState {
    fn default() -> Self {
        BackendState {
            // Optimistic start: the first probe runs at once and a failure
            // marks the backend down immediately (see health.rs), while
            // retries cover the first few connections.
            healthy: AtomicBool::new(true),
            admin: AtomicU8::new(0),
            passive_down: AtomicBool::new(false),
            active: AtomicU64::new(0),
            total: AtomicU64::new(0),
            connect_failures: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            ewma_ns: AtomicU64::new(0),
            passive_streak: AtomicU32::new(0),
            check: Mutex::new(CheckInfo::default()),
            weight_override: AtomicU32::new(0),
            cut: Mutex::new(CancellationToken::new()),
            checks_ok: AtomicU64::new(0),
            checks_failed: AtomicU64::new(0),
            latency: Histogram::default(),
            up_since_ms: AtomicU64::new(0),
            streak_5xx: AtomicU32::new(0),
            ejected_until_ms: AtomicU64::new(0),
            last_ejection_ms: AtomicU64::new(0),
            ejection_run: AtomicU32::new(0),
            ejections: AtomicU64::new(0),
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl BackendState {
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    pub fn admin(&self) -> AdminState {
        AdminState::from_u8(self.admin.load(Ordering::Relaxed))
    }

    pub fn set_admin(&self, s: AdminState) {
        self.admin.store(s as u8, Ordering::Relaxed);
    }

    /// The weight balancers use: the runtime one if set, else the configured.
    pub fn weight(&self, configured: u32) -> u32 {
        match self.weight_override.load(Ordering::Relaxed) {
            0 => configured,
            w => w,
        }
    }

    pub fn weight_override(&self) -> Option<u32> {
        match self.weight_override.load(Ordering::Relaxed) {
            0 => None,
            w => Some(w),
        }
    }

    pub fn set_weight_override(&self, w: Option<u32>) {
        self.weight_override
            .store(w.unwrap_or(0), Ordering::Relaxed);
    }

    /// Whether anything about this backend was changed at runtime.
    pub fn has_runtime_state(&self) -> bool {
        self.admin() != AdminState::Enabled || self.weight_override().is_some()
    }

    /// Forgets runtime changes (the config changed this backend).
    pub fn clear_runtime_state(&self) {
        self.set_admin(AdminState::Enabled);
        self.set_weight_override(None);
    }

    /// A token cancelled when this backend's connections must be closed.
    pub fn cut_token(&self) -> CancellationToken {
        self.cut.lock().map(|t| t.clone()).unwrap_or_default()
    }

    /// Closes every open connection of this backend; later ones get a
    /// fresh token.
    pub fn cut_connections(&self) {
        if let Ok(mut t) = self.cut.lock() {
            t.cancel();
            *t = CancellationToken::new();
        }
    }

    /// Records a health transition; returns true if the state changed.
    pub fn set_healthy(&self, up: bool, reason: &str) -> bool {
        let was = self.healthy.swap(up, Ordering::AcqRel);
        if up && !was {
            self.up_since_ms.store(now_ms(), Ordering::Relaxed);
        }
        if was != up {
            if let Ok(mut c) = self.check.lock() {
                c.changed_at = unix_now();
                c.reason = reason.to_string();
            }
        }
        was != up
    }

    pub fn set_last_result(&self, text: &str) {
        if let Ok(mut c) = self.check.lock() {
            if c.last_result != text {
                c.last_result = text.to_string();
            }
        }
    }

    pub fn check_info(&self) -> CheckInfo {
        self.check.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// True once after a passive mark-down, so the checker restarts its rise count.
    pub fn take_passive_down(&self) -> bool {
        self.passive_down.swap(false, Ordering::AcqRel)
    }

    /// The weight to balance with: `full` scaled down while a slow start
    /// ramps (never below 1).
    pub fn ramped_weight(&self, full: u32, slow_start: Duration) -> u32 {
        let since = self.up_since_ms.load(Ordering::Relaxed);
        if since == 0 || slow_start.is_zero() {
            return full;
        }
        let span = slow_start.as_millis() as u64;
        let elapsed = now_ms().saturating_sub(since);
        if elapsed >= span {
            self.up_since_ms.store(0, Ordering::Relaxed);
            return full;
        }
        ((full as u64 * elapsed / span) as u32).max(1)
    }

    /// Whether outlier detection has this backend out of traffic. The
    /// first look after the ejection ends brings it back (and says so).
    pub fn is_ejected(&self) -> bool {
        let until = self.ejected_until_ms.load(Ordering::Relaxed);
        if until == 0 {
            return false;
        }
        if now_ms() < until {
            return true;
        }
        if self
            .ejected_until_ms
            .compare_exchange(until, 0, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            tracing::info!(
                ejections = self.ejection_run.load(Ordering::Relaxed),
                "backend back from outlier ejection"
            );
        }
        false
    }

    pub fn ejected_for(&self) -> Option<Duration> {
        let until = self.ejected_until_ms.load(Ordering::Relaxed);
        let now = now_ms();
        (until > now).then(|| Duration::from_millis(until - now))
    }

    pub fn ewma_ns(&self) -> u64 {
        self.ewma_ns.load(Ordering::Relaxed)
    }

    /// EWMA with alpha 1/8: reacts within a handful of samples without
    /// letting one slow connect swing the balancer. Racy read-modify-write is
    /// fine: a lost sample only delays convergence slightly.
    pub fn observe_latency(&self, d: Duration) {
        let sample = d.as_nanos().min(u64::MAX as u128) as u64;
        let old = self.ewma_ns.load(Ordering::Relaxed);
        let new = if old == 0 {
            sample.max(1)
        } else {
            let o = old as i128;
            (o + (sample as i128 - o) / 8).max(1) as u64
        };
        self.ewma_ns.store(new, Ordering::Relaxed);
    }
}

/// One backend inside one pool snapshot.
#[derive(Debug)]
pub struct Backend {
    pub cfg: BackendConfig,
    pub state: Arc<BackendState>,
}

impl Backend {
    /// Eligible for new work right now (ignoring connection limits).
    pub fn serving(&self) -> bool {
        self.state.is_healthy()
            && self.state.admin() == AdminState::Enabled
            && !self.state.is_ejected()
    }

    fn has_room(&self) -> bool {
        self.cfg.max_connections == 0
            || self.state.active.load(Ordering::Relaxed) < self.cfg.max_connections as u64
    }
}

/// Shared between generations of the same pool so waiters queued on an old
/// snapshot are woken by connections released on a new one and vice versa.
#[derive(Debug, Default)]
pub struct PoolShared {
    released: Notify,
    waiters: AtomicU32,
    pub queue_timeouts: AtomicU64,
    pub no_backend: AtomicU64,
    pub retries: AtomicU64,
}

#[derive(Debug)]
pub struct Pool {
    pub cfg: PoolConfig,
    pub backends: Vec<Backend>,
    pub shared: Arc<PoolShared>,
    balancer: Box<dyn Balancer>,
    /// Every backend's state, for decisions about the pool as a whole
    /// (the share of ejected outliers) made from a [`Lease`].
    members: Arc<[Arc<BackendState>]>,
}

/// Why no backend could be leased.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PickError {
    /// Nothing healthy and enabled (or all already tried): fail fast.
    NoBackend,
    /// Backends exist but are at their connection limit and the queue is
    /// full or the wait timed out.
    Saturated,
}

struct PickView<'a> {
    backends: &'a [Backend],
    excluded: &'a [usize],
    slow_start: Duration,
}

impl View for PickView<'_> {
    fn len(&self) -> usize {
        self.backends.len()
    }
    fn get(&self, i: usize) -> Candidate {
        let b = &self.backends[i];
        Candidate {
            weight: b
                .state
                .ramped_weight(b.state.weight(b.cfg.weight), self.slow_start),
            usable: b.serving() && b.has_room() && !self.excluded.contains(&i),
            backup: b.cfg.backup,
            active: b.state.active.load(Ordering::Relaxed),
            ewma_ns: b.state.ewma_ns(),
        }
    }
}

/// A claim on one backend: counts as an active connection until dropped.
#[derive(Debug)]
pub struct Lease {
    pub index: usize,
    pub addr: SocketAddr,
    pub name: String,
    pub state: Arc<BackendState>,
    shared: Arc<PoolShared>,
    passive_failures: u32,
    pool: String,
    outlier: Option<OutlierConfig>,
    members: Arc<[Arc<BackendState>]>,
}

/// A [`Lease`] that borrows its pool instead of owning copies of the names
/// and handles: what the HTTP/1 fast path holds for one request, with no
/// allocation and no shared reference count touched.
#[derive(Debug)]
pub struct Claim<'a> {
    pub index: usize,
    pool: &'a Pool,
}

/// Who a live-traffic verdict is about, for outlier ejection and logs.
struct Subject<'a> {
    state: &'a BackendState,
    members: &'a [Arc<BackendState>],
    outlier: Option<&'a OutlierConfig>,
    pool: &'a str,
    name: &'a str,
}

/// Takes the backend out of traffic for a while, unless that would leave
/// more than `max_ejected_percent` of the pool ejected.
fn eject(s: &Subject<'_>, o: &OutlierConfig, why: &str) {
    let now = now_ms();
    let out = s
        .members
        .iter()
        .filter(|m| m.ejected_for().is_some())
        .count();
    if (out + 1) * 100 > o.max_ejected_percent as usize * s.members.len() {
        tracing::debug!(pool = %s.pool, backend = %s.name, why, "outlier not ejected: pool share limit");
        return;
    }
    let st = s.state;
    // A backend that stayed clean for max_ejection_time starts over.
    let last = st.last_ejection_ms.swap(now, Ordering::Relaxed);
    let run = if last != 0 && now.saturating_sub(last) > o.max_ejection_time.as_millis() as u64 {
        st.ejection_run.store(1, Ordering::Relaxed);
        1
    } else {
        st.ejection_run.fetch_add(1, Ordering::Relaxed) + 1
    };
    let len = o
        .ejection_time
        .saturating_mul(1u32 << (run - 1).min(16))
        .min(o.max_ejection_time);
    st.ejected_until_ms
        .store(now + len.as_millis() as u64, Ordering::Relaxed);
    st.ejections.fetch_add(1, Ordering::Relaxed);
    st.streak_5xx.store(0, Ordering::Relaxed);
    st.passive_streak.store(0, Ordering::Relaxed);
    tracing::warn!(
        pool = %s.pool,
        backend = %s.name,
        reason = %why,
        ejected_for_ms = len.as_millis() as u64,
        ejections_in_a_row = run,
        "backend ejected (outlier)"
    );
}

/// A response came back: 5xx in a row count towards ejection.
fn mark_response(s: &Subject<'_>, status: u16) {
    let Some(o) = s.outlier.filter(|o| o.consecutive_5xx > 0) else {
        return;
    };
    if status < 500 {
        if s.state.streak_5xx.load(Ordering::Relaxed) != 0 {
            s.state.streak_5xx.store(0, Ordering::Relaxed);
        }
        return;
    }
    let n = s.state.streak_5xx.fetch_add(1, Ordering::AcqRel) + 1;
    if n >= o.consecutive_5xx {
        eject(s, o, &format!("{n} consecutive {status}-class responses"));
    }
}

fn mark_connected(state: &BackendState, connect_time: Duration) {
    state.passive_streak.store(0, Ordering::Relaxed);
    state.observe_latency(connect_time);
    state.latency.observe(connect_time);
}

/// Live traffic failed to reach the backend. After `passive_failures` in a
/// row the backend is marked down until active checks bring it back.
fn mark_failed(s: &Subject<'_>, passive_failures: u32, addr: SocketAddr, why: &str) {
    let (state, pool, name) = (s.state, s.pool, s.name);
    state.connect_failures.fetch_add(1, Ordering::Relaxed);
    let streak = state.passive_streak.fetch_add(1, Ordering::AcqRel) + 1;
    if let Some(o) = s.outlier.filter(|o| o.consecutive_failures > 0) {
        if streak >= o.consecutive_failures {
            eject(s, o, &format!("{streak} consecutive failures ({why})"));
        }
    }
    if passive_failures != 0 && streak >= passive_failures {
        let reason = format!("{streak} consecutive failures in live traffic ({why})");
        state.passive_down.store(true, Ordering::Release);
        if state.set_healthy(false, &reason) {
            tracing::warn!(
                pool = %pool,
                backend = %name,
                address = %addr,
                state = "down",
                reason = %reason,
                "backend down (passive)"
            );
        }
    }
}

fn release(state: &BackendState, shared: &PoolShared) {
    state.active.fetch_sub(1, Ordering::AcqRel);
    if shared.waiters.load(Ordering::Acquire) > 0 {
        shared.released.notify_one();
    }
}

impl Lease {
    /// Live traffic reached the backend: resets the passive failure streak.
    pub fn connected(&self, connect_time: Duration) {
        mark_connected(&self.state, connect_time);
    }

    /// Counts a retry on another backend (after this one failed).
    pub fn retried(&self) {
        self.shared.retries.fetch_add(1, Ordering::Relaxed);
    }

    fn subject(&self) -> Subject<'_> {
        Subject {
            state: &self.state,
            members: &self.members,
            outlier: self.outlier.as_ref(),
            pool: &self.pool,
            name: &self.name,
        }
    }

    pub fn failed(&self, why: &str) {
        mark_failed(&self.subject(), self.passive_failures, self.addr, why);
    }

    /// The backend answered with `status` (outlier detection).
    pub fn responded(&self, status: u16) {
        mark_response(&self.subject(), status);
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        release(&self.state, &self.shared);
    }
}

impl<'a> Claim<'a> {
    pub fn backend(&self) -> &'a Backend {
        &self.pool.backends[self.index]
    }

    pub fn connected(&self, connect_time: Duration) {
        mark_connected(&self.backend().state, connect_time);
    }

    pub fn retried(&self) {
        self.pool.shared.retries.fetch_add(1, Ordering::Relaxed);
    }

    fn subject(&self) -> Subject<'a> {
        let b = self.backend();
        Subject {
            state: &b.state,
            members: &self.pool.members,
            outlier: self.pool.cfg.outlier.as_ref(),
            pool: &self.pool.cfg.name,
            name: &b.cfg.name,
        }
    }

    pub fn failed(&self, why: &str) {
        let b = self.backend();
        mark_failed(
            &self.subject(),
            self.pool.cfg.passive_failures,
            b.cfg.address,
            why,
        );
    }

    /// The backend answered with `status` (outlier detection).
    pub fn responded(&self, status: u16) {
        mark_response(&self.subject(), status);
    }

    /// The owned form, for work that outlives the borrow of the pool.
    pub fn into_lease(self) -> Lease {
        let b = self.backend();
        let lease = Lease {
            index: self.index,
            addr: b.cfg.address,
            name: b.cfg.name.clone(),
            state: b.state.clone(),
            shared: self.pool.shared.clone(),
            passive_failures: self.pool.cfg.passive_failures,
            pool: self.pool.cfg.name.clone(),
            outlier: self.pool.cfg.outlier,
            members: self.pool.members.clone(),
        };
        // The active count moves to the lease.
        std::mem::forget(self);
        lease
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        release(&self.backend().state, &self.pool.shared);
    }
}

impl Pool {
    /// Builds a snapshot, reusing backend state from `previous` where the
    /// same address stays in the same pool.
    pub fn build(cfg: PoolConfig, previous: Option<&Pool>) -> Pool {
        let backends = cfg
            .backends
            .iter()
            .map(|b| {
                let old = previous.and_then(|p| p.backends.iter().find(|o| o.cfg.address == b.address));
                let state = old.map(|o| o.state.clone()).unwrap_or_default();
                // Runtime changes (drain, weight) survive a reload until the
                // config itself changes this backend.
                if old.is_some_and(|o| o.cfg != *b) && state.has_runtime_state() {
                    tracing::info!(pool = %cfg.name, backend = %b.name, "backend changed in the config: runtime drain/disable/weight cleared");
                    state.clear_runtime_state();
                }
                Backend {
                    cfg: b.clone(),
                    state,
                }
            })
            .collect::<Vec<Backend>>();
        let shared = previous.map(|p| p.shared.clone()).unwrap_or_default();
        Pool {
            members: backends.iter().map(|b| b.state.clone()).collect(),
            balancer: cfg
                .algorithm
                .build_for(cfg.backends.iter().map(|b| b.address)),
            cfg,
            backends,
            shared,
        }
    }

    pub fn name(&self) -> &str {
        &self.cfg.name
    }

    pub fn healthy_count(&self) -> usize {
        self.backends.iter().filter(|b| b.serving()).count()
    }

    pub fn any_serving(&self) -> bool {
        self.backends.iter().any(|b| b.serving())
    }

    /// Picks and leases a backend without waiting.
    pub fn try_lease(&self, key: u64, tried: &[usize]) -> Result<Lease, PickError> {
        self.try_claim(key, tried).map(Claim::into_lease)
    }

    /// Picks and claims a backend without waiting.
    pub fn try_claim(&self, key: u64, tried: &[usize]) -> Result<Claim<'_>, PickError> {
        // First pick without building an exclusion list (the common case).
        let view = PickView {
            backends: &self.backends,
            excluded: tried,
            slow_start: self.cfg.slow_start,
        };
        if let Some(i) = self.balancer.pick(&view, key) {
            if let Some(c) = self.claim_index(i) {
                return Ok(c);
            }
        }
        let mut excluded: Vec<usize> = tried.to_vec();
        // A racing connection may fill a backend between pick and claim;
        // exclude it and pick again, a bounded number of times.
        for _ in 0..=self.backends.len() {
            let view = PickView {
                backends: &self.backends,
                excluded: &excluded,
                slow_start: self.cfg.slow_start,
            };
            let Some(i) = self.balancer.pick(&view, key) else {
                break;
            };
            match self.claim_index(i) {
                Some(c) => return Ok(c),
                None => excluded.push(i),
            }
        }
        let saturated = self
            .backends
            .iter()
            .enumerate()
            .any(|(i, b)| b.serving() && !tried.contains(&i) && !b.has_room());
        if saturated {
            Err(PickError::Saturated)
        } else {
            Err(PickError::NoBackend)
        }
    }

    /// Counts a connection on backend `i` unless it is at its limit.
    fn claim_index(&self, i: usize) -> Option<Claim<'_>> {
        let b = &self.backends[i];
        let prev = b.state.active.fetch_add(1, Ordering::AcqRel);
        if b.cfg.max_connections != 0 && prev >= b.cfg.max_connections as u64 {
            b.state.active.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        b.state.total.fetch_add(1, Ordering::Relaxed);
        Some(Claim {
            index: i,
            pool: self,
        })
    }

    /// Leases a backend, waiting in the pool's bounded queue while every
    /// eligible backend is at its connection limit.
    pub async fn lease(&self, key: u64, tried: &[usize]) -> Result<Lease, PickError> {
        self.claim(key, tried).await.map(Claim::into_lease)
    }

    /// [`Pool::lease`] as a borrowed [`Claim`].
    pub async fn claim(&self, key: u64, tried: &[usize]) -> Result<Claim<'_>, PickError> {
        match self.try_claim(key, tried) {
            Err(PickError::Saturated) => {}
            other => return other,
        }
        let waiting = self.shared.waiters.fetch_add(1, Ordering::AcqRel);
        let _guard = WaiterGuard(&self.shared);
        if waiting >= self.cfg.queue_size {
            self.shared.queue_timeouts.fetch_add(1, Ordering::Relaxed);
            return Err(PickError::Saturated);
        }
        let deadline = Instant::now() + self.cfg.queue_timeout;
        loop {
            let notified = self.shared.released.notified();
            match self.try_claim(key, tried) {
                Err(PickError::Saturated) => {}
                other => return other,
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || tokio::time::timeout(left, notified).await.is_err() {
                self.shared.queue_timeouts.fetch_add(1, Ordering::Relaxed);
                return Err(PickError::Saturated);
            }
        }
    }

    pub fn queued(&self) -> u32 {
        self.shared.waiters.load(Ordering::Relaxed)
    }
}

struct WaiterGuard<'a>(&'a PoolShared);
impl Drop for WaiterGuard<'_> {
    fn drop(&mut self) {
        self.0.waiters.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A backend as status and metrics see it; `admin::status` maps it to the wire type.
#[derive(Debug, Clone)]
pub struct BackendSnapshot {
    pub name: String,
    pub address: SocketAddr,
    /// The weight in use (runtime override or configured).
    pub weight: u32,
    pub configured_weight: u32,
    /// The weight balancing uses right now (lower during a slow start).
    pub effective_weight: u32,
    /// Drain/disable/weight set at runtime.
    pub runtime: bool,
    pub backup: bool,
    pub healthy: bool,
    pub admin: AdminState,
    pub active: u64,
    pub total: u64,
    pub connect_failures: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub check: CheckInfo,
    pub checks_ok: u64,
    pub checks_failed: u64,
    pub latency: crate::stats::HistogramSnapshot,
    pub ejected_for: Option<Duration>,
    pub ejections: u64,
}

/// A pool as status and metrics see it.
#[derive(Debug, Clone)]
pub struct PoolSnapshot {
    pub name: String,
    pub algorithm: crate::config::Algorithm,
    pub healthy: usize,
    pub queued: u32,
    pub queue_timeouts: u64,
    pub retries: u64,
    pub no_backend: u64,
    pub backends: Vec<BackendSnapshot>,
}

impl Pool {
    pub fn snapshot(&self) -> PoolSnapshot {
        PoolSnapshot {
            name: self.cfg.name.clone(),
            algorithm: self.cfg.algorithm,
            healthy: self.healthy_count(),
            queued: self.queued(),
            queue_timeouts: self.shared.queue_timeouts.load(Ordering::Relaxed),
            retries: self.shared.retries.load(Ordering::Relaxed),
            no_backend: self.shared.no_backend.load(Ordering::Relaxed),
            backends: self
                .backends
                .iter()
                .map(|b| {
                    let s = &b.state;
                    let weight = s.weight(b.cfg.weight);
                    BackendSnapshot {
                        name: b.cfg.name.clone(),
                        address: b.cfg.address,
                        weight,
                        configured_weight: b.cfg.weight,
                        effective_weight: s.ramped_weight(weight, self.cfg.slow_start),
                        runtime: s.has_runtime_state(),
                        backup: b.cfg.backup,
                        healthy: s.is_healthy(),
                        admin: s.admin(),
                        active: s.active.load(Ordering::Relaxed),
                        total: s.total.load(Ordering::Relaxed),
                        connect_failures: s.connect_failures.load(Ordering::Relaxed),
                        bytes_in: s.bytes_in.load(Ordering::Relaxed),
                        bytes_out: s.bytes_out.load(Ordering::Relaxed),
                        check: s.check_info(),
                        checks_ok: s.checks_ok.load(Ordering::Relaxed),
                        checks_failed: s.checks_failed.load(Ordering::Relaxed),
                        latency: s.latency.snapshot(),
                        ejected_for: s.ejected_for(),
                        ejections: s.ejections.load(Ordering::Relaxed),
                    }
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::Algorithm;
    use crate::config::{HealthCheck, HealthConfig};

    #[test]
    fn admin_state_names_are_the_wire_names() {
        for s in [
            AdminState::Enabled,
            AdminState::Draining,
            AdminState::Disabled,
        ] {
            assert_eq!(serde_json::to_value(s).unwrap(), s.name());
        }
    }

    fn pool(max_conn: u32, n: usize) -> Pool {
        let backends = (0..n)
            .map(|i| BackendConfig {
                name: format!("b{i}"),
                address: SocketAddr::from(([127, 0, 0, 1], 10000 + i as u16)),
                weight: 1,
                backup: false,
                max_connections: max_conn,
            })
            .collect();
        Pool::build(
            PoolConfig {
                name: "p".into(),
                algorithm: Algorithm::RoundRobin,
                backends,
                health: HealthConfig {
                    check: HealthCheck::None,
                    interval: Duration::from_secs(1),
                    timeout: Duration::from_millis(500),
                    rise: 1,
                    fall: 1,
                    port: None,
                },
                connect_timeout: Duration::from_secs(1),
                retries: 1,
                queue_size: 2,
                queue_timeout: Duration::from_millis(200),
                passive_failures: 2,
                slow_start: Duration::ZERO,
                outlier: None,
                http: crate::config::HttpPoolConfig::default(),
            },
            None,
        )
    }

    #[test]
    fn lease_counts_active_and_releases() {
        let p = pool(0, 2);
        let a = p.try_lease(0, &[]).expect("lease");
        assert_eq!(p.backends[a.index].state.active.load(Ordering::Relaxed), 1);
        drop(a);
        assert!(p
            .backends
            .iter()
            .all(|b| b.state.active.load(Ordering::Relaxed) == 0));
    }

    #[test]
    fn max_connections_is_enforced_and_reported_as_saturated() {
        let p = pool(1, 2);
        let a = p.try_lease(0, &[]).expect("first");
        let b = p.try_lease(0, &[]).expect("second");
        assert_ne!(a.index, b.index);
        assert_eq!(p.try_lease(0, &[]).err(), Some(PickError::Saturated));
        drop(a);
        assert!(p.try_lease(0, &[]).is_ok());
    }

    #[test]
    fn tried_backends_are_excluded_and_down_means_no_backend() {
        let p = pool(0, 2);
        assert_eq!(p.try_lease(0, &[0]).expect("lease").index, 1);
        assert_eq!(p.try_lease(0, &[0, 1]).err(), Some(PickError::NoBackend));
        for b in &p.backends {
            b.state.set_healthy(false, "test");
        }
        assert_eq!(p.try_lease(0, &[]).err(), Some(PickError::NoBackend));
    }

    #[test]
    fn passive_failures_mark_down_after_threshold() {
        let p = pool(0, 1);
        let l = p.try_lease(0, &[]).expect("lease");
        l.failed("refused");
        assert!(p.backends[0].state.is_healthy());
        l.failed("refused");
        assert!(!p.backends[0].state.is_healthy());
        assert!(p.backends[0].state.take_passive_down());
        assert!(!p.backends[0].state.take_passive_down());
    }

    #[test]
    fn slow_start_ramps_a_returning_backend() {
        let st = BackendState::default();
        let ramp = Duration::from_millis(400);
        // Up from the start: no ramp.
        assert_eq!(st.ramped_weight(100, ramp), 100);
        st.set_healthy(false, "x");
        st.set_healthy(true, "back");
        let w0 = st.ramped_weight(100, ramp);
        assert!(w0 < 30, "{w0}");
        assert_eq!(st.ramped_weight(100, Duration::ZERO), 100, "off");
        std::thread::sleep(Duration::from_millis(220));
        let w1 = st.ramped_weight(100, ramp);
        assert!((40..=90).contains(&w1), "{w1}");
        // Never 0, even for weight 1.
        assert_eq!(st.ramped_weight(1, ramp), 1);
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(st.ramped_weight(100, ramp), 100);
    }

    fn outlier_pool(n: usize, pct: u32) -> Pool {
        let mut cfg = pool(0, n).cfg.clone();
        cfg.passive_failures = 0;
        cfg.outlier = Some(OutlierConfig {
            consecutive_5xx: 3,
            consecutive_failures: 2,
            ejection_time: Duration::from_millis(150),
            max_ejection_time: Duration::from_millis(500),
            max_ejected_percent: pct,
        });
        Pool::build(cfg, None)
    }

    #[test]
    fn consecutive_5xx_eject_for_a_growing_time_then_return() {
        let p = outlier_pool(2, 50);
        let c = p.try_claim(0, &[1]).expect("claim");
        assert_eq!(c.index, 0);
        c.responded(502);
        c.responded(503);
        c.responded(200); // the run is broken
        c.responded(500);
        c.responded(500);
        assert!(p.backends[0].serving());
        c.responded(500);
        assert!(!p.backends[0].serving(), "ejected after 3 in a row");
        assert!(
            p.backends[0].state.is_healthy(),
            "ejection is not a health verdict"
        );
        drop(c);
        for _ in 0..4 {
            assert_eq!(p.try_lease(0, &[]).expect("lease").index, 1);
        }
        std::thread::sleep(Duration::from_millis(170));
        assert!(p.backends[0].serving(), "back after ejection_time");
        // The second ejection in a row lasts twice as long.
        let c = p.try_claim(0, &[1]).expect("claim");
        for _ in 0..3 {
            c.responded(504);
        }
        let left = p.backends[0].state.ejected_for().expect("ejected");
        assert!(left > Duration::from_millis(200), "{left:?}");
        assert_eq!(p.backends[0].state.ejections.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn connect_failures_eject_but_never_past_the_pool_share() {
        let p = outlier_pool(2, 50);
        let a = p.try_lease(0, &[1]).expect("lease");
        a.failed("refused");
        a.failed("refused");
        assert!(!p.backends[0].serving());
        // Ejecting the second backend too would leave 100% out: refused.
        let b = p.try_lease(0, &[0]).expect("lease");
        for _ in 0..5 {
            b.failed("refused");
        }
        assert!(p.backends[1].serving());
        // A one-backend pool never ejects at 50%.
        let q = outlier_pool(1, 50);
        let c = q.try_lease(0, &[]).expect("lease");
        for _ in 0..5 {
            c.failed("refused");
        }
        assert!(q.backends[0].serving());
    }

    #[test]
    fn runtime_weight_and_drain_survive_reload_until_the_backend_changes() {
        let p = pool(0, 2);
        p.backends[0].state.set_weight_override(Some(7));
        p.backends[1].state.set_admin(AdminState::Draining);
        let q = Pool::build(p.cfg.clone(), Some(&p));
        assert_eq!(q.backends[0].state.weight(1), 7);
        assert_eq!(q.backends[1].state.admin(), AdminState::Draining);
        // Draining backends get no new connections.
        for _ in 0..4 {
            assert_eq!(q.try_lease(0, &[]).expect("lease").index, 0);
        }
        let mut changed = q.cfg.clone();
        changed.backends[1].weight = 3;
        let r = Pool::build(changed, Some(&q));
        assert_eq!(r.backends[1].state.admin(), AdminState::Enabled);
        assert_eq!(
            r.backends[0].state.weight(1),
            7,
            "unchanged backend keeps its runtime weight"
        );
    }

    #[test]
    fn state_survives_rebuild_for_same_address() {
        let p = pool(0, 2);
        p.backends[1].state.set_healthy(false, "x");
        let q = Pool::build(p.cfg.clone(), Some(&p));
        assert!(!q.backends[1].state.is_healthy());
        assert!(Arc::ptr_eq(&p.shared, &q.shared));
    }

    #[tokio::test]
    async fn queued_lease_gets_released_slot_or_times_out() {
        let p = Arc::new(pool(1, 1));
        let first = p.try_lease(0, &[]).expect("first");
        let p2 = p.clone();
        let waiter = tokio::spawn(async move { p2.lease(0, &[]).await.map(|l| l.index) });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(p.queued(), 1);
        drop(first);
        assert_eq!(waiter.await.expect("join"), Ok(0));
        let _hold = p.try_lease(0, &[]).expect("hold");
        let t = Instant::now();
        assert_eq!(p.lease(0, &[]).await.err(), Some(PickError::Saturated));
        assert!(t.elapsed() >= Duration::from_millis(190));
    }
}
