//! TEMPORARY stub until the real balance module lands (same interface).
use std::sync::atomic::{AtomicUsize, Ordering};

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Candidate {
    pub weight: u32,
    pub usable: bool,
    pub backup: bool,
    pub active: u64,
    pub ewma_ns: u64,
}

pub trait View {
    fn len(&self) -> usize;
    fn get(&self, i: usize) -> Candidate;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

pub trait Balancer: Send + Sync + std::fmt::Debug {
    fn pick(&self, view: &dyn View, key: u64) -> Option<usize>;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    RoundRobin,
    WeightedRoundRobin,
    LeastConnections,
    LeastResponseTime,
    SourceHash,
    RandomTwoChoices,
}

impl Algorithm {
    pub const ALL: [Algorithm; 6] = [
        Algorithm::RoundRobin,
        Algorithm::WeightedRoundRobin,
        Algorithm::LeastConnections,
        Algorithm::LeastResponseTime,
        Algorithm::SourceHash,
        Algorithm::RandomTwoChoices,
    ];
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::RoundRobin => "round_robin",
            Algorithm::WeightedRoundRobin => "weighted_round_robin",
            Algorithm::LeastConnections => "least_connections",
            Algorithm::LeastResponseTime => "least_response_time",
            Algorithm::SourceHash => "source_hash",
            Algorithm::RandomTwoChoices => "random_two_choices",
        }
    }
    pub fn from_name(s: &str) -> Option<Algorithm> {
        Self::ALL.into_iter().find(|a| a.name() == s)
    }
    pub fn build(self) -> Box<dyn Balancer> {
        Box::new(Rr(AtomicUsize::new(0)))
    }
}

#[derive(Debug)]
struct Rr(AtomicUsize);
impl Balancer for Rr {
    fn pick(&self, view: &dyn View, _key: u64) -> Option<usize> {
        let n = view.len();
        let start = self.0.fetch_add(1, Ordering::Relaxed);
        let primary = (0..n).any(|i| view.get(i).usable && !view.get(i).backup);
        (0..n)
            .map(|k| (start + k) % n)
            .find(|&i| view.get(i).usable && view.get(i).backup != primary)
    }
}

pub fn client_key(ip: std::net::IpAddr) -> u64 {
    match ip {
        std::net::IpAddr::V4(a) => u32::from(a) as u64,
        std::net::IpAddr::V6(a) => u128::from(a) as u64,
    }
}
