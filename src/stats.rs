//! Counters the planes keep and the admin API reads: on the ground floor, so that pools,
//! listeners and VRRP never import the admin module that reports them.

use std::sync::atomic::{AtomicU64, Ordering};

/// Latency buckets in seconds: sub-millisecond LAN hops up to slow backends.
pub const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A lock-free latency histogram (microsecond sum).
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: std::time::Duration) {
        let secs = d.as_secs_f64();
        // Cumulative buckets are built at exposition time: store each
        // observation once, in the first bucket that holds it.
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(
            d.as_micros().min(u64::MAX as u128) as u64,
            Ordering::Relaxed,
        );
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut cumulative = [0u64; BUCKETS.len()];
        let mut acc = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            acc += b.load(Ordering::Relaxed);
            cumulative[i] = acc;
        }
        HistogramSnapshot {
            cumulative,
            count: self.count.load(Ordering::Relaxed),
            sum: self.sum_us.load(Ordering::Relaxed) as f64 / 1e6,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize)]
pub struct HistogramSnapshot {
    pub cumulative: [u64; BUCKETS.len()],
    pub count: u64,
    pub sum: f64,
}
