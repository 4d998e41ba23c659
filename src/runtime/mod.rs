//! Assembles the running daemon from a [`Config`], applies reloads as a diff,
//! and drains on shutdown. One file per job: `daemon.rs` start, shutdown and the
//! upgrade hand-over; `apply.rs` reload (prepare, then commit); `plan.rs` the typed
//! change list (pure); `listener.rs` the listener enums; `status.rs` the status
//! snapshot; `signals.rs` signals, sd_notify and the watchdog; `control.rs` the admin
//! API's `Control` trait; `scaleout.rs` the anycast and sync glue.
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
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{self, Config, HealthConfig, ListenerConfig};
use crate::dataplane::l7::server::{HttpPool, HttpRt};
use crate::dataplane::l7::sticky::StickyTable;
use crate::pool::Pool;
use crate::stats::ListenerStats;
use crate::vrrp::instance::Resume;
use crate::vrrp::service::VrrpService;
use listener::Engine;
use plan::ListenerKey;

mod apply;
mod control;
mod daemon;
mod listener;
pub mod plan;
pub mod scaleout;
mod signals;
mod status;
pub mod upgrade;

pub use crate::admin::control::BackendAction;
pub use plan::Change;
pub use signals::{run_until_signalled, signals};

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

struct ListenerEntry {
    cfg: ListenerConfig,
    engine: Engine,
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
    scaleout: std::sync::OnceLock<scaleout::ScaleOut>,
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

impl Daemon {
    fn vrrp_service(&self) -> Option<Arc<VrrpService>> {
        self.vrrp.lock().ok().and_then(|v| v.clone())
    }

    pub fn scaleout(&self) -> Option<&scaleout::ScaleOut> {
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
