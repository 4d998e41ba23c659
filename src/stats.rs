//! Counters the planes keep and the admin API reads: on the ground floor, so that pools,
//! listeners and VRRP never import the admin module that reports them, and the shared
//! accept loop and the L4/L7 engines never import each other for them.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

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

/// Per-listener counters, kept across reloads.
#[derive(Debug, Default, Serialize)]
pub struct ListenerStats {
    pub active: AtomicU64,
    pub total: AtomicU64,
    pub queued: AtomicU64,
    /// Refused because the listener queue was full or the wait timed out.
    pub rejected: AtomicU64,
    /// Closed at once because no backend was available.
    pub no_backend: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    /// TCP: bytes moved kernel-side by splice(2) (part of bytes_in + bytes_out).
    pub spliced: AtomicU64,
    /// UDP: datagrams dropped (no backend, table full); HTTP: requests
    /// rejected for bad framing, HTTP/2 connections closed for floods or
    /// protocol errors.
    pub dropped: AtomicU64,
    /// HTTP: time until response headers.
    #[serde(skip)]
    pub request_seconds: Histogram,
    /// Refused by ACL, rate limits or a bad PROXY header.
    #[serde(flatten)]
    pub policy: PolicyStats,
}

/// Counters of one listener's admission decisions; kept across reloads.
#[derive(Debug, Default, Serialize)]
pub struct PolicyStats {
    pub denied: AtomicU64,
    pub rate_limited: AtomicU64,
    pub proxy_errors: AtomicU64,
}

/// Why a client was turned away (each has its own counter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Denied,
    RateLimited,
    TooManyConnections,
    BadProxy,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Denied => "denied",
            Refusal::RateLimited => "rate_limited",
            Refusal::TooManyConnections => "too_many_connections",
            Refusal::BadProxy => "bad_proxy",
        }
    }
}

impl PolicyStats {
    pub fn count(&self, r: Refusal) {
        let c = match r {
            Refusal::Denied => &self.denied,
            Refusal::RateLimited | Refusal::TooManyConnections => &self.rate_limited,
            Refusal::BadProxy => &self.proxy_errors,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }
}
