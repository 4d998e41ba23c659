//! Backend selection: six algorithms behind one [`Balancer`] trait.
//!
//! The proxy describes a pool as a [`View`] of [`Candidate`] snapshots at connection time and asks
//! the pool's balancer for an index. Everything here is synchronous and I/O-free; balancers keep
//! only small per-pool state (atomics, or a lock held for one pass over the pool) and do not
//! allocate on a pick once that state has settled.
//!
//! Candidate indexes are the balancers' notion of backend identity: weighted_round_robin and
//! source_hash keep per-index state, so the caller must keep a backend at the same index for as
//! long as it stays in the pool (mark it unusable rather than removing it from the list).

pub mod least_connections;
pub mod least_response_time;
pub mod maglev;
pub mod random_two_choices;
pub mod round_robin;
pub mod source_hash;
pub mod weighted_round_robin;

pub use least_connections::LeastConnections;
pub use least_response_time::LeastResponseTime;
pub use maglev::{flow_key, Maglev, Proto};
pub use random_two_choices::RandomTwoChoices;
pub use round_robin::RoundRobin;
pub use source_hash::SourceHash;
pub use weighted_round_robin::WeightedRoundRobin;

use std::cmp::Ordering as CmpOrdering;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A snapshot of one backend as the balancer sees it at pick time.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Candidate {
    /// Configured weight, 1..=256; may be changed at runtime.
    pub weight: u32,
    /// healthy && enabled && not draining && not at its connection limit && not already tried
    /// for this connection.
    pub usable: bool,
    /// Backup backends serve only when no primary backend is usable.
    pub backup: bool,
    /// Active connections / in-flight requests right now.
    pub active: u64,
    /// EWMA of connect / first-byte time in nanoseconds; 0 = no sample yet.
    pub ewma_ns: u64,
}

impl Candidate {
    /// The weight the algorithms compute with. A zero weight would divide by zero or starve the
    /// backend silently, so it counts as 1; rejecting it is the configuration loader's job.
    pub fn effective_weight(&self) -> u32 {
        self.weight.max(1)
    }
}

/// Access to the candidates without forcing the caller to allocate a `Vec` per pick.
///
/// A view must be a snapshot: algorithms walk it more than once per pick and expect the same
/// answers each time.
pub trait View {
    fn len(&self) -> usize;
    /// Panics if `i >= len()`, like slice indexing.
    fn get(&self, i: usize) -> Candidate;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl View for [Candidate] {
    fn len(&self) -> usize {
        <[Candidate]>::len(self)
    }
    fn get(&self, i: usize) -> Candidate {
        self[i]
    }
}

impl<const N: usize> View for [Candidate; N] {
    fn len(&self) -> usize {
        N
    }
    fn get(&self, i: usize) -> Candidate {
        self[i]
    }
}

impl View for Vec<Candidate> {
    fn len(&self) -> usize {
        self.as_slice().len()
    }
    fn get(&self, i: usize) -> Candidate {
        self[i]
    }
}

/// `[Candidate]` is unsized and so cannot become a `&dyn View` itself; this lets a caller
/// holding `s: &[Candidate]` pass `&s`.
impl<T: View + ?Sized> View for &T {
    fn len(&self) -> usize {
        (**self).len()
    }
    fn get(&self, i: usize) -> Candidate {
        (**self).get(i)
    }
}

pub trait Balancer: Send + Sync + std::fmt::Debug {
    /// Index of the chosen backend, or None when no backend is usable.
    /// `key` is a hash of the client identity (source IP) — only source_hash uses it.
    fn pick(&self, view: &dyn View, key: u64) -> Option<usize>;
}

/// The backends allowed to serve a pick: the usable primaries, or the usable backups when no
/// primary is usable. Every algorithm chooses only among a tier's members.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tier {
    /// True when the pool has fallen back to its backups.
    pub backup: bool,
    /// Number of members; always at least 1.
    pub count: usize,
}

impl Tier {
    /// The serving tier, or None when nothing in the view is usable.
    pub fn of(view: &dyn View) -> Option<Tier> {
        let (mut primaries, mut backups) = (0, 0);
        for i in 0..view.len() {
            let c = view.get(i);
            if c.usable {
                if c.backup {
                    backups += 1;
                } else {
                    primaries += 1;
                }
            }
        }
        if primaries > 0 {
            Some(Tier {
                backup: false,
                count: primaries,
            })
        } else if backups > 0 {
            Some(Tier {
                backup: true,
                count: backups,
            })
        } else {
            None
        }
    }

    pub fn admits(self, c: &Candidate) -> bool {
        c.usable && c.backup == self.backup
    }

    /// Members in index order, with their indexes.
    pub fn members(self, view: &dyn View) -> impl Iterator<Item = (usize, Candidate)> + '_ {
        (0..view.len())
            .map(move |i| (i, view.get(i)))
            .filter(move |(_, c)| self.admits(c))
    }
}

/// Orders two backends by `cost / weight`. Cross-multiplying keeps exact integer precision;
/// saturation can only merge scores that are already astronomically large.
pub(crate) fn cmp_load(a_cost: u128, a_weight: u32, b_cost: u128, b_weight: u32) -> CmpOrdering {
    a_cost
        .saturating_mul(u128::from(b_weight))
        .cmp(&b_cost.saturating_mul(u128::from(a_weight)))
}

/// The tier member with the least `cost / weight`. Exact ties take turns (the `tick`-th tied
/// member is chosen) so that equal backends share load instead of the lowest index absorbing
/// every burst; rotating over the tied members themselves, rather than over a start position in
/// the whole pool, keeps the shares exactly equal when unusable backends sit between them.
pub(crate) fn least_loaded(
    view: &dyn View,
    tier: Tier,
    tick: &AtomicUsize,
    cost: impl Fn(&Candidate) -> u128,
) -> Option<usize> {
    let mut best: Option<(usize, u128, u32)> = None;
    let mut ties = 0;
    for (i, c) in tier.members(view) {
        let (cost, weight) = (cost(&c), c.effective_weight());
        let order = match best {
            None => CmpOrdering::Less,
            Some((_, best_cost, best_weight)) => cmp_load(cost, weight, best_cost, best_weight),
        };
        match order {
            CmpOrdering::Less => {
                best = Some((i, cost, weight));
                ties = 1;
            }
            CmpOrdering::Equal => ties += 1,
            CmpOrdering::Greater => {}
        }
    }
    let (first, best_cost, best_weight) = best?;
    if ties == 1 {
        // No shared counter traffic when there is nothing to rotate.
        return Some(first);
    }
    // Relaxed: the counter only spreads ties; it publishes no other memory.
    let turn = tick.fetch_add(1, Ordering::Relaxed) % ties;
    tier.members(view)
        .filter(|(_, c)| {
            cmp_load(cost(c), c.effective_weight(), best_cost, best_weight) == CmpOrdering::Equal
        })
        .nth(turn)
        .map(|(i, _)| i)
}

/// The splitmix64 finalizer: a cheap bijective mix whose output bits each depend on every input
/// bit, used wherever structured inputs (indexes, counters, FNV state) must look random.
pub(crate) fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Stable 64-bit hash of a client IP for source_hash.
///
/// Deterministic across processes, runs and versions (a change here remaps every client, so a
/// test pins known values). IPv4-mapped IPv6 addresses hash like the IPv4 address, so a client
/// keeps its backend whether it arrives on a dual-stack or an IPv4-only listener.
pub fn client_key(ip: IpAddr) -> u64 {
    const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
    let fnv = |h: u64, b: &u8| (h ^ u64::from(*b)).wrapping_mul(FNV_PRIME);
    // The family tag keeps e.g. 0.0.0.1 and ::1 from starting from the same state.
    let h = match ip.to_canonical() {
        IpAddr::V4(a) => a.octets().iter().fold(fnv(FNV_OFFSET, &4), fnv),
        IpAddr::V6(a) => a.octets().iter().fold(fnv(FNV_OFFSET, &6), fnv),
    };
    // FNV-1a alone leaves the low bits weak for short inputs; source_hash reduces modulo the
    // table size, so the final mix matters.
    mix64(h)
}

pub use crate::config::Algorithm;

/// Building a balancer is this module's business; the config only names the algorithm.
pub trait Build {
    /// A balancer with fresh state; build one per pool.
    fn build(self) -> Box<dyn Balancer>;

    /// Like [`Build::build`], told the address of the backend at each index: `maglev`
    /// derives its table from backend identities so that every node builds the same one.
    fn build_for(self, addrs: impl IntoIterator<Item = std::net::SocketAddr>) -> Box<dyn Balancer>;
}

impl Build for Algorithm {
    fn build(self) -> Box<dyn Balancer> {
        match self {
            Algorithm::RoundRobin => Box::new(RoundRobin::new()),
            Algorithm::WeightedRoundRobin => Box::new(WeightedRoundRobin::new()),
            Algorithm::LeastConnections => Box::new(LeastConnections::new()),
            Algorithm::LeastResponseTime => Box::new(LeastResponseTime::new()),
            Algorithm::SourceHash => Box::new(SourceHash::new()),
            Algorithm::RandomTwoChoices => Box::new(RandomTwoChoices::new()),
            Algorithm::Maglev => Box::new(Maglev::new([])),
        }
    }

    fn build_for(self, addrs: impl IntoIterator<Item = std::net::SocketAddr>) -> Box<dyn Balancer> {
        match self {
            Algorithm::Maglev => Box::new(Maglev::new(addrs)),
            other => other.build(),
        }
    }
}

/// Shared test support: a deterministic PRNG, random pools, the contract every algorithm must
/// meet, and a connection simulator for the statistical tests.
#[cfg(test)]
pub(crate) mod testing {
    use super::{Balancer, Candidate};

    /// xorshift64*: deterministic, so a failing case reproduces exactly.
    pub struct Prng(u64);

    impl Prng {
        pub fn new(seed: u64) -> Prng {
            Prng(seed | 1)
        }
        pub fn next_u64(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        pub fn below(&mut self, n: u64) -> u64 {
            self.next_u64() % n
        }
    }

    pub fn primary(weight: u32) -> Candidate {
        Candidate {
            weight,
            usable: true,
            backup: false,
            active: 0,
            ewma_ns: 0,
        }
    }

    pub fn backup(weight: u32) -> Candidate {
        Candidate {
            backup: true,
            ..primary(weight)
        }
    }

    pub fn unusable(c: Candidate) -> Candidate {
        Candidate { usable: false, ..c }
    }

    pub fn random_view(rng: &mut Prng) -> Vec<Candidate> {
        let len = rng.below(13) as usize;
        (0..len)
            .map(|_| Candidate {
                // Includes the out-of-contract weight 0 to prove it cannot break a pick.
                weight: rng.below(257) as u32,
                usable: rng.below(100) < 60,
                backup: rng.below(100) < 30,
                active: rng.below(50),
                ewma_ns: if rng.below(4) == 0 {
                    0
                } else {
                    1 + rng.below(100_000_000)
                },
            })
            .collect()
    }

    /// The tiering rule restated independently of `Tier`, so the tests check it rather than
    /// trust it.
    pub fn expected_eligible(view: &[Candidate]) -> Vec<usize> {
        let usable = |backup: bool| -> Vec<usize> {
            (0..view.len())
                .filter(|&i| view[i].usable && view[i].backup == backup)
                .collect()
        };
        let primaries = usable(false);
        if primaries.is_empty() {
            usable(true)
        } else {
            primaries
        }
    }

    pub fn never_picks_ineligible(b: &dyn Balancer) {
        let mut rng = Prng::new(0x5eed_0001);
        for case in 0..4000 {
            let view = random_view(&mut rng);
            let eligible = expected_eligible(&view);
            for _ in 0..3 {
                let got = b.pick(&view, rng.next_u64());
                match got {
                    None => assert!(eligible.is_empty(), "case {case}: None for {view:?}"),
                    Some(i) => assert!(
                        eligible.contains(&i),
                        "case {case}: picked {i}, eligible {eligible:?}, view {view:?}"
                    ),
                }
            }
        }
    }

    pub fn none_without_usable(b: &dyn Balancer) {
        let empty: [Candidate; 0] = [];
        assert_eq!(b.pick(&empty, 1), None);
        let view = [
            unusable(primary(1)),
            unusable(backup(5)),
            unusable(primary(256)),
        ];
        for key in 0..100 {
            assert_eq!(b.pick(&view, key), None);
        }
    }

    pub fn backups_only_as_fallback(b: &dyn Balancer) {
        let mut view = [
            backup(256),
            unusable(primary(3)),
            primary(1),
            backup(100),
            backup(1),
        ];
        for key in 0..500 {
            assert_eq!(b.pick(&view, key), Some(2), "a primary is usable");
        }
        view[2].usable = false;
        let mut used = [0; 5];
        for key in 0..500 {
            let i = b.pick(&view, key).expect("backups are usable");
            assert!([0, 3, 4].contains(&i), "picked non-backup {i}");
            used[i] += 1;
        }
        assert!(
            used[0] + used[3] > 0,
            "backups serve once primaries are gone"
        );
        view[1].usable = true;
        for key in 0..500 {
            assert_eq!(
                b.pick(&view, key),
                Some(1),
                "backups yield to a recovered primary"
            );
        }
    }

    pub fn single_usable_always_chosen(b: &dyn Balancer) {
        let mut rng = Prng::new(0x5eed_0002);
        for len in 1..=8 {
            for only in 0..len {
                let view: Vec<Candidate> = (0..len)
                    .map(|i| Candidate {
                        weight: 1 + rng.below(256) as u32,
                        usable: i == only,
                        backup: rng.below(2) == 0,
                        active: rng.below(1000),
                        ewma_ns: rng.below(1_000_000),
                    })
                    .collect();
                for _ in 0..50 {
                    assert_eq!(b.pick(&view, rng.next_u64()), Some(only));
                }
            }
        }
    }

    /// Expands to the four contract tests every algorithm must pass.
    macro_rules! contract_tests {
        ($make:expr) => {
            #[test]
            fn contract_never_picks_ineligible() {
                $crate::balance::testing::never_picks_ineligible(&$make)
            }
            #[test]
            fn contract_none_without_usable() {
                $crate::balance::testing::none_without_usable(&$make)
            }
            #[test]
            fn contract_backups_only_as_fallback() {
                $crate::balance::testing::backups_only_as_fallback(&$make)
            }
            #[test]
            fn contract_single_usable_always_chosen() {
                $crate::balance::testing::single_usable_always_chosen(&$make)
            }
        };
    }
    pub(crate) use contract_tests;

    /// Each step picks a backend and opens a connection on it that closes 1..=max_life steps
    /// later; `active` in the view tracks the open connections. Returns picks per backend.
    pub fn simulate(
        b: &dyn Balancer,
        mut view: Vec<Candidate>,
        steps: usize,
        max_life: usize,
        rng: &mut Prng,
    ) -> Vec<u64> {
        let mut picks = vec![0; view.len()];
        let mut closing: Vec<Vec<usize>> = vec![Vec::new(); max_life + 1];
        for step in 0..steps {
            for i in std::mem::take(&mut closing[step % (max_life + 1)]) {
                view[i].active -= 1;
            }
            let i = b.pick(&view, rng.next_u64()).expect("pool is usable");
            picks[i] += 1;
            view[i].active += 1;
            let life = 1 + rng.below(max_life as u64) as usize;
            closing[(step + life) % (max_life + 1)].push(i);
        }
        picks
    }

    pub fn share(counts: &[u64], i: usize) -> f64 {
        counts[i] as f64 / counts.iter().sum::<u64>() as f64
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{backup, expected_eligible, primary, random_view, unusable, Prng};
    use super::*;
    use std::collections::HashSet;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn names_round_trip() {
        for a in Algorithm::ALL {
            assert_eq!(Algorithm::from_name(a.name()), Some(a));
        }
        let names: HashSet<_> = Algorithm::ALL.iter().map(|a| a.name()).collect();
        assert_eq!(names.len(), Algorithm::ALL.len());
        for bad in ["", "roundrobin", "Round_Robin", "least_conn", "random"] {
            assert_eq!(Algorithm::from_name(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn built_balancers_pick() {
        let view = [unusable(primary(1)), primary(2), backup(1)];
        for a in Algorithm::ALL {
            assert_eq!(a.build().pick(&view, 42), Some(1), "{}", a.name());
        }
    }

    #[test]
    fn tier_prefers_primaries_then_backups() {
        let mut rng = Prng::new(7);
        for _ in 0..2000 {
            let view = random_view(&mut rng);
            let expected = expected_eligible(&view);
            let got: Vec<usize> = match Tier::of(&view) {
                Some(t) => {
                    assert_eq!(t.count, expected.len());
                    t.members(&view).map(|(i, _)| i).collect()
                }
                None => Vec::new(),
            };
            assert_eq!(got, expected, "{view:?}");
        }
    }

    #[test]
    fn cmp_load_compares_fractions() {
        // (active + 1) / weight: 3/3 == 1/1, 4/3 > 1/1, 2/3 < 1/1.
        assert_eq!(cmp_load(3, 3, 1, 1), CmpOrdering::Equal);
        assert_eq!(cmp_load(4, 3, 1, 1), CmpOrdering::Greater);
        assert_eq!(cmp_load(2, 3, 1, 1), CmpOrdering::Less);
        assert_eq!(cmp_load(u128::MAX, 1, 1, 256), CmpOrdering::Greater);
    }

    #[test]
    fn client_key_is_pinned() {
        // Changing these values remaps every client to a new backend on upgrade. Cross-checked
        // against an independent implementation of FNV-1a (with the family tag) + splitmix64.
        let v4 = client_key(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)));
        let v6 = client_key(IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)));
        assert_eq!(v4, 0xb886_a149_d105_d033);
        assert_eq!(v6, 0xe669_f80a_5808_2337);
    }

    #[test]
    fn client_key_canonicalises_mapped_ipv4() {
        let v4 = Ipv4Addr::new(203, 0, 113, 9);
        assert_eq!(
            client_key(IpAddr::V4(v4)),
            client_key(IpAddr::V6(v4.to_ipv6_mapped()))
        );
        assert_ne!(
            client_key(IpAddr::V4(Ipv4Addr::new(0, 0, 0, 1))),
            client_key(IpAddr::V6(Ipv6Addr::LOCALHOST))
        );
    }

    #[test]
    fn client_key_spreads_adjacent_addresses() {
        let keys: Vec<u64> = (0..65536u32)
            .map(|n| client_key(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n))))
            .collect();
        assert_eq!(keys.iter().collect::<HashSet<_>>().len(), keys.len());
        // Low bits matter because source_hash reduces modulo a table size: every residue class
        // mod 16 should hold close to 1/16 of the keys (expected 4096, sd ~62).
        let mut buckets = [0u32; 16];
        for k in &keys {
            buckets[(k % 16) as usize] += 1;
        }
        assert!(
            buckets.iter().all(|&n| (3800..=4400).contains(&n)),
            "{buckets:?}"
        );
    }

    #[test]
    fn concurrent_picks_respect_the_contract() {
        for a in Algorithm::ALL {
            let b = a.build();
            std::thread::scope(|s| {
                for t in 0..4 {
                    let b = &b;
                    s.spawn(move || {
                        let mut rng = Prng::new(100 + t);
                        for _ in 0..500 {
                            let view = random_view(&mut rng);
                            let eligible = expected_eligible(&view);
                            match b.pick(&view, rng.next_u64()) {
                                None => assert!(eligible.is_empty()),
                                Some(i) => assert!(eligible.contains(&i)),
                            }
                        }
                    });
                }
            });
        }
    }
}
