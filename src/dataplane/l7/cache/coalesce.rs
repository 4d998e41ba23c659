//! Request coalescing: concurrent callers with the same key share one
//! execution of a future and each get a clone of its output.
//!
//! The first caller for a key (the leader) runs its future; later callers
//! wait on a `watch` channel. If the leader is cancelled (its future
//! dropped) or panics, the channel closes without a value and the waiters
//! start over: one becomes the new leader, so no one waits forever. A key is
//! removed from the map as soon as its flight ends, whichever way it ends.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio::sync::watch;

type Flights<K, V> = Mutex<HashMap<K, watch::Receiver<Option<V>>>>;

/// Shares one execution per key among concurrent callers.
#[derive(Debug)]
pub struct Coalescer<K, V> {
    /// In-flight keys. Only the leader holds the sender, so the channel
    /// closes exactly when the leader goes away.
    flights: Flights<K, V>,
}

impl<K, V> Default for Coalescer<K, V> {
    fn default() -> Self {
        Coalescer {
            flights: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Eq + Hash + Clone, V: Clone> Coalescer<K, V> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `f` unless a call with the same key is already running, in which
    /// case waits for that one's output instead. `f` is called at most once,
    /// and only if this caller becomes the leader.
    pub async fn run<F, Fut>(&self, key: K, f: F) -> V
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = V>,
    {
        let tx = loop {
            let mut rx = {
                let mut flights = lock(&self.flights);
                match flights.get(&key) {
                    Some(rx) => rx.clone(),
                    None => {
                        let (tx, rx) = watch::channel(None);
                        flights.insert(key.clone(), rx);
                        break tx;
                    }
                }
            };
            // Err: the leader went away without a value; go round again.
            let value = rx
                .wait_for(Option::is_some)
                .await
                .ok()
                .and_then(|v| v.clone());
            if let Some(value) = value {
                return value;
            }
        };
        let flight = Flight {
            flights: &self.flights,
            key,
            tx,
        };
        let value = f().await;
        // Publish before the key leaves the map, so a caller arriving in
        // between still gets this value rather than starting a new flight.
        flight.tx.send_replace(Some(value.clone()));
        value
    }
}

/// The leader's registration; dropping it (completion, cancellation or
/// panic) removes the key and then, by dropping the sender, wakes waiters.
struct Flight<'a, K: Eq + Hash, V> {
    flights: &'a Flights<K, V>,
    key: K,
    tx: watch::Sender<Option<V>>,
}

impl<K: Eq + Hash, V> Drop for Flight<'_, K, V> {
    fn drop(&mut self) {
        // Only this flight can be registered under the key: a new leader
        // inserts only when the key is absent.
        lock(self.flights).remove(&self.key);
    }
}

/// The map stays consistent across a panic (single inserts and removes),
/// so a poisoned lock is simply taken over.
fn lock<K, V>(flights: &Flights<K, V>) -> MutexGuard<'_, HashMap<K, watch::Receiver<Option<V>>>> {
    flights.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;
    use tokio::sync::{Barrier, Notify};
    use tokio::task::JoinSet;
    use tokio::time::timeout;

    fn in_flight<K, V>(c: &Coalescer<K, V>) -> usize {
        lock(&c.flights).len()
    }

    /// Yields until `cond` holds; on the current-thread runtime every other
    /// task runs between two checks.
    async fn until(cond: impl Fn() -> bool) {
        while !cond() {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn hundred_concurrent_callers_share_one_execution() {
        let co = Arc::new(Coalescer::<&str, u64>::new());
        let executions = Arc::new(AtomicUsize::new(0));
        let entered = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(Notify::new());
        let mut tasks = JoinSet::new();
        for _ in 0..100 {
            let (co, executions, entered, gate) = (
                co.clone(),
                executions.clone(),
                entered.clone(),
                gate.clone(),
            );
            tasks.spawn(async move {
                entered.fetch_add(1, Ordering::SeqCst);
                co.run("key", || async move {
                    executions.fetch_add(1, Ordering::SeqCst);
                    gate.notified().await;
                    42
                })
                .await
            });
        }
        // Single-threaded: a task that has entered has also registered with
        // the coalescer, as nothing awaits in between.
        until(|| entered.load(Ordering::SeqCst) == 100).await;
        assert_eq!(in_flight(&co), 1);
        gate.notify_one();
        let results = timeout(Duration::from_secs(10), tasks.join_all())
            .await
            .unwrap();
        assert_eq!(results, vec![42; 100]);
        assert_eq!(executions.load(Ordering::SeqCst), 1);
        assert_eq!(in_flight(&co), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hundred_concurrent_callers_on_threads_share_one_execution() {
        let co = Arc::new(Coalescer::<u32, Arc<str>>::new());
        let executions = Arc::new(AtomicUsize::new(0));
        let entered = Arc::new(AtomicUsize::new(0));
        let mut tasks = JoinSet::new();
        for _ in 0..100 {
            let (co, executions, entered) = (co.clone(), executions.clone(), entered.clone());
            tasks.spawn(async move {
                entered.fetch_add(1, Ordering::SeqCst);
                let entered = entered.clone();
                co.run(7, || async move {
                    executions.fetch_add(1, Ordering::SeqCst);
                    // Hold the flight open until everyone has arrived, plus
                    // a margin for the last ones to register.
                    while entered.load(Ordering::SeqCst) < 100 {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    Arc::from("shared")
                })
                .await
            });
        }
        let results = timeout(Duration::from_secs(10), tasks.join_all())
            .await
            .unwrap();
        assert!(results.iter().all(|r| &**r == "shared"));
        assert_eq!(results.len(), 100);
        assert_eq!(executions.load(Ordering::SeqCst), 1);
        assert_eq!(in_flight(&co), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn different_keys_run_in_parallel() {
        let co = Arc::new(Coalescer::<u32, u32>::new());
        // Each execution waits for the other: serialised runs would deadlock.
        let barrier = Arc::new(Barrier::new(2));
        let mut tasks = JoinSet::new();
        for k in 0..2 {
            let (co, barrier) = (co.clone(), barrier.clone());
            tasks.spawn(async move {
                co.run(k, || async move {
                    barrier.wait().await;
                    k * 10
                })
                .await
            });
        }
        let mut results = timeout(Duration::from_secs(10), tasks.join_all())
            .await
            .unwrap();
        results.sort_unstable();
        assert_eq!(results, [0, 10]);
        assert_eq!(in_flight(&co), 0);
    }

    #[tokio::test]
    async fn a_waiter_takes_over_from_a_cancelled_leader() {
        let co = Arc::new(Coalescer::<&str, u32>::new());
        let executions = Arc::new(AtomicUsize::new(0));
        let leader_started = Arc::new(Notify::new());

        let leader = tokio::spawn({
            let (co, executions, started) =
                (co.clone(), executions.clone(), leader_started.clone());
            async move {
                co.run("key", || async move {
                    executions.fetch_add(1, Ordering::SeqCst);
                    started.notify_one();
                    std::future::pending::<u32>().await
                })
                .await
            }
        });
        leader_started.notified().await;

        let entered = Arc::new(AtomicUsize::new(0));
        let mut waiters = JoinSet::new();
        for _ in 0..10 {
            let (co, executions, entered) = (co.clone(), executions.clone(), entered.clone());
            waiters.spawn(async move {
                entered.fetch_add(1, Ordering::SeqCst);
                co.run("key", || async move {
                    executions.fetch_add(1, Ordering::SeqCst);
                    tokio::task::yield_now().await;
                    7
                })
                .await
            });
        }
        until(|| entered.load(Ordering::SeqCst) == 10).await;
        // Everyone is waiting on the stuck leader.
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
        assert_eq!(executions.load(Ordering::SeqCst), 1);
        assert!(waiters.try_join_next().is_none());

        leader.abort();
        assert!(leader.await.unwrap_err().is_cancelled());
        let results = timeout(Duration::from_secs(10), waiters.join_all())
            .await
            .unwrap();
        assert_eq!(results, vec![7; 10]);
        // The stuck leader plus exactly one successor.
        assert_eq!(executions.load(Ordering::SeqCst), 2);
        assert_eq!(in_flight(&co), 0);
    }

    #[tokio::test]
    async fn a_panicking_leader_is_replaced_too() {
        let co = Arc::new(Coalescer::<&str, u32>::new());
        let started = Arc::new(Notify::new());
        let release = Arc::new(Notify::new());
        let leader = tokio::spawn({
            let (co, started, release) = (co.clone(), started.clone(), release.clone());
            async move {
                co.run("key", || async move {
                    started.notify_one();
                    release.notified().await;
                    panic!("upstream handler bug")
                })
                .await
            }
        });
        started.notified().await;
        let entered = Arc::new(AtomicUsize::new(0));
        let waiter = tokio::spawn({
            let (co, entered) = (co.clone(), entered.clone());
            async move {
                entered.fetch_add(1, Ordering::SeqCst);
                co.run("key", || async { 9 }).await
            }
        });
        until(|| entered.load(Ordering::SeqCst) == 1).await;
        release.notify_one();
        assert!(leader.await.unwrap_err().is_panic());
        assert_eq!(
            timeout(Duration::from_secs(10), waiter)
                .await
                .unwrap()
                .unwrap(),
            9
        );
        assert_eq!(in_flight(&co), 0);
    }

    #[tokio::test]
    async fn sequential_calls_each_run() {
        let co = Coalescer::<&str, usize>::new();
        let executions = AtomicUsize::new(0);
        for i in 1..=3 {
            let n = co
                .run("key", || async {
                    executions.fetch_add(1, Ordering::SeqCst) + 1
                })
                .await;
            assert_eq!(n, i);
            assert_eq!(in_flight(&co), 0);
        }
    }
}
