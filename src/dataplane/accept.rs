//! The accept loop every listener shares (L4, L7, admin, metrics), and
//! the listener admission (`max_connections` with a bounded queue) that L4
//! and L7 listeners share.

use std::future::Future;
use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::stats::ListenerStats;

const FIRST_BACKOFF: Duration = Duration::from_millis(5);
const MAX_BACKOFF: Duration = Duration::from_millis(500);

/// A burst of accept failures ends after this long without one. Under fd
/// exhaustion accepts alternate with failures (each connection shed frees a
/// descriptor), so a single success does not end it.
const BURST_QUIET: Duration = Duration::from_secs(1);

/// Accepts connections until a stop token fires. Accept errors never end
/// the loop: EMFILE/ENFILE and friends are backed off (5 ms doubling to
/// 500 ms) so it does not spin while descriptors are exhausted, and logged
/// once per burst: a warning at the first failure, a line with the count
/// once accepts have worked for [`BURST_QUIET`]. The waiting connections stay
/// in the kernel's backlog meanwhile and are served once descriptors free up.
pub struct Acceptor {
    backoff: Duration,
    burst: Option<Burst>,
}

struct Burst {
    began: Instant,
    last: Instant,
    failures: u64,
}

impl Default for Acceptor {
    fn default() -> Self {
        Acceptor {
            backoff: FIRST_BACKOFF,
            burst: None,
        }
    }
}

impl Acceptor {
    /// The next accepted connection, or None once `stop` has fired.
    /// `name` labels the warning (the listener's name).
    pub async fn next<T, Fut>(
        &mut self,
        stop: &CancellationToken,
        name: impl Fn() -> String,
        mut accept: impl FnMut() -> Fut,
    ) -> Option<T>
    where
        Fut: Future<Output = io::Result<T>>,
    {
        loop {
            let r = tokio::select! {
                biased;
                _ = stop.cancelled() => return None,
                r = accept() => r,
            };
            match r {
                Ok(x) => {
                    self.backoff = FIRST_BACKOFF;
                    if let Some(b) = self.burst.take_if(|b| b.last.elapsed() >= BURST_QUIET) {
                        tracing::info!(
                            listener = %name(),
                            failed_accepts = b.failures,
                            for_ms = (b.last - b.began).as_millis() as u64,
                            "accepting again"
                        );
                    }
                    return Some(x);
                }
                Err(e) => {
                    let now = Instant::now();
                    match &mut self.burst {
                        Some(b) => {
                            b.failures += 1;
                            b.last = now;
                        }
                        None => {
                            tracing::warn!(
                                listener = %name(),
                                error = %e,
                                "accept failed; backing off, not logging again until it recovers"
                            );
                            self.burst = Some(Burst {
                                began: now,
                                last: now,
                                failures: 1,
                            });
                        }
                    }
                    tokio::time::sleep(self.backoff).await;
                    self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}

/// A connection's claim on its listener's `max_connections`: admitted at
/// once, waiting in the listener queue, or (with no limit) free.
pub enum Admission {
    Unlimited,
    Admitted(OwnedSemaphorePermit),
    Queued(Arc<Semaphore>),
}

/// Decides at accept time, without waiting: None when the queue is full
/// (counted as rejected). A queued connection is counted in `queued` here,
/// so a burst of accepts cannot overfill the queue.
pub fn admit(
    limit: Option<&Arc<Semaphore>>,
    queue_size: u64,
    stats: &ListenerStats,
) -> Option<Admission> {
    let Some(sem) = limit else {
        return Some(Admission::Unlimited);
    };
    if let Ok(p) = sem.clone().try_acquire_owned() {
        return Some(Admission::Admitted(p));
    }
    if stats.queued.load(Ordering::Relaxed) >= queue_size {
        stats.rejected.fetch_add(1, Ordering::Relaxed);
        return None;
    }
    stats.queued.fetch_add(1, Ordering::Relaxed);
    Some(Admission::Queued(sem.clone()))
}

/// A slot held for the connection's life (nothing when unlimited).
pub struct Slot {
    _permit: Option<OwnedSemaphorePermit>,
}

impl Admission {
    /// Waits, in the connection's own task, for a queued connection's
    /// slot; None when `timeout` passes first (counted as rejected).
    pub async fn slot(self, timeout: Duration, stats: &ListenerStats) -> Option<Slot> {
        match self {
            Admission::Unlimited => Some(Slot { _permit: None }),
            Admission::Admitted(p) => Some(Slot { _permit: Some(p) }),
            Admission::Queued(sem) => {
                let r = tokio::time::timeout(timeout, sem.acquire_owned()).await;
                stats.queued.fetch_sub(1, Ordering::Relaxed);
                match r {
                    Ok(Ok(p)) => Some(Slot { _permit: Some(p) }),
                    _ => {
                        stats.rejected.fetch_add(1, Ordering::Relaxed);
                        None
                    }
                }
            }
        }
    }
}
