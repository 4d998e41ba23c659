//! Power of two random choices: sample two distinct eligible backends uniformly and take the one
//! with the smaller `(active + 1) / weight`.
//!
//! Nearly as good as least connections at avoiding overloaded backends, but it needs no shared
//! tie-break counter and — crucially when several proxies (or stale load snapshots) feed the
//! same pool — it does not make every chooser herd onto the single least-loaded backend. The
//! trade-off: because sampling is uniform, a backend is only ever considered in 2/N of picks, so
//! a weight share above that in a large pool is not fully honoured; use least_connections when
//! weights must be tracked exactly.

use super::{cmp_load, mix64, Balancer, Candidate, Tier, View};
use std::cmp::Ordering as CmpOrdering;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The golden-ratio increment of splitmix64: odd, so the counter visits all 2^64 states.
const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

#[derive(Debug)]
pub struct RandomTwoChoices {
    /// A Weyl sequence advanced with a single `fetch_add` and passed through the splitmix64
    /// finalizer. This costs the same one atomic operation per pick as a racily updated
    /// xorshift state (load, step, store — where concurrent picks may read the same state and
    /// sample the same pair, harmless but avoidable), yet every pick gets its own draw and there
    /// is no compare-and-swap loop to spin under contention.
    state: AtomicU64,
}

impl RandomTwoChoices {
    /// Seeded from the clock, a stack address (randomised by ASLR) and a process-wide counter,
    /// so pools and processes started together still draw different sequences.
    pub fn new() -> RandomTwoChoices {
        static BUILT: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let marker = 0u8;
        let address = &marker as *const u8 as usize as u64;
        let nth = BUILT.fetch_add(GAMMA, Ordering::Relaxed);
        RandomTwoChoices::with_seed(mix64(nanos ^ address.rotate_left(32)) ^ nth)
    }

    /// A reproducible sequence, for tests.
    pub fn with_seed(seed: u64) -> RandomTwoChoices {
        RandomTwoChoices {
            state: AtomicU64::new(seed),
        }
    }

    fn next_u64(&self) -> u64 {
        // Relaxed: only the uniqueness of each draw matters, not ordering with other memory.
        mix64(
            self.state
                .fetch_add(GAMMA, Ordering::Relaxed)
                .wrapping_add(GAMMA),
        )
    }
}

impl Default for RandomTwoChoices {
    fn default() -> RandomTwoChoices {
        RandomTwoChoices::new()
    }
}

/// Maps 32 random bits onto `0..n` by multiply-and-shift, which avoids a division and the
/// modulo bias of `%` when n does not divide 2^32.
fn below(bits: u64, n: usize) -> usize {
    ((u128::from(bits & 0xffff_ffff) * n as u128) >> 32) as usize
}

fn load(c: &Candidate) -> u128 {
    u128::from(c.active) + 1
}

impl Balancer for RandomTwoChoices {
    fn pick(&self, view: &dyn View, _key: u64) -> Option<usize> {
        let tier = Tier::of(view)?;
        if tier.count == 1 {
            return tier.members(view).next().map(|(i, _)| i);
        }
        let r = self.next_u64();
        let first = below(r >> 32, tier.count);
        // Drawing from count - 1 and stepping over `first` makes the pair distinct without
        // a retry loop.
        let mut second = below(r, tier.count - 1);
        if second >= first {
            second += 1;
        }
        let (mut a, mut b) = (None, None);
        for (pos, (i, c)) in tier.members(view).enumerate() {
            if pos == first {
                a = Some((i, c));
            } else if pos == second {
                b = Some((i, c));
            }
        }
        let ((ai, ac), (bi, bc)) = (a?, b?);
        // On a tie `first` wins; it is already a uniformly random member.
        match cmp_load(
            load(&bc),
            bc.effective_weight(),
            load(&ac),
            ac.effective_weight(),
        ) {
            CmpOrdering::Less => Some(bi),
            _ => Some(ai),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::testing::{contract_tests, primary, share, simulate, Prng};

    contract_tests!(RandomTwoChoices::with_seed(0x2c));

    fn with_active(weight: u32, active: u64) -> Candidate {
        Candidate {
            active,
            ..primary(weight)
        }
    }

    #[test]
    fn seed_makes_it_reproducible() {
        let view = vec![primary(1); 8];
        let run = |seed| {
            let p2c = RandomTwoChoices::with_seed(seed);
            (0..200).map(|k| p2c.pick(&view, k)).collect::<Vec<_>>()
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
    }

    #[test]
    fn entropy_seeds_differ() {
        let (a, b) = (RandomTwoChoices::new(), RandomTwoChoices::new());
        assert_ne!(a.next_u64(), b.next_u64());
    }

    #[test]
    fn most_loaded_backend_is_never_picked() {
        // Any distinct pair that contains it also contains a lighter backend.
        let p2c = RandomTwoChoices::with_seed(5);
        let view = [
            with_active(1, 3),
            with_active(1, 50),
            with_active(1, 3),
            with_active(1, 3),
        ];
        let mut counts = [0; 4];
        for k in 0..4000 {
            counts[p2c.pick(&view, k).expect("usable")] += 1;
        }
        assert_eq!(counts[1], 0);
        // The others tie, so each wins whenever it is drawn first: ~1/3 each (sd ~0.7%).
        for i in [0, 2, 3] {
            let s = share(&counts, i);
            assert!((0.30..=0.37).contains(&s), "backend {i} share {s}");
        }
    }

    #[test]
    fn samples_every_pair_uniformly() {
        // Equal backends tie, so picks are the uniform first draw: 1/5 each, sd ~0.28% over
        // 20,000 picks; ±1.5% is > 5 sd yet catches a biased sampler.
        let p2c = RandomTwoChoices::with_seed(6);
        let view = vec![primary(1); 5];
        let mut counts = [0; 5];
        for k in 0..20_000 {
            counts[p2c.pick(&view, k).expect("usable")] += 1;
        }
        for i in 0..5 {
            let s = share(&counts, i);
            assert!((0.185..=0.215).contains(&s), "backend {i} share {s}");
        }
    }

    /// With two backends every pick compares both, so the dynamics are least connections': the
    /// same (3T + 2) / 4T ≈ 75.5% share at ~100 open connections, and the same ±2% tolerance
    /// (see least_connections.rs).
    #[test]
    fn long_run_share_tracks_weights() {
        let p2c = RandomTwoChoices::with_seed(7);
        let picks = simulate(
            &p2c,
            vec![primary(3), primary(1)],
            50_000,
            200,
            &mut Prng::new(8),
        );
        let s = share(&picks, 0);
        assert!((0.73..=0.77).contains(&s), "share {s}");
    }

    /// With four equal backends the sampled pairs keep in-flight work even: every backend gets
    /// close to a quarter of the picks.
    #[test]
    fn long_run_balances_a_larger_pool() {
        let p2c = RandomTwoChoices::with_seed(9);
        let picks = simulate(&p2c, vec![primary(1); 4], 50_000, 200, &mut Prng::new(10));
        for i in 0..4 {
            let s = share(&picks, i);
            assert!((0.23..=0.27).contains(&s), "backend {i} share {s}");
        }
    }
}
