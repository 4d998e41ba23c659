//! Smooth weighted round robin, as in nginx: each pick adds every eligible backend's weight to
//! its running score, picks the highest score and subtracts the eligible total from the winner.
//!
//! With a stable pool the schedule repeats every `sum(weights)` picks, each backend chosen exactly
//! `weight` times per period, and the choices interleave (5:1:1 gives a a b a c a a) instead of arriving in bursts, so a heavy
//! backend never receives a run of new connections back to back. The price is a short per-pool
//! lock around the scores; it covers one pass over the pool and is never held across I/O.

use super::{Balancer, Tier, View};
use std::sync::{Mutex, PoisonError};

#[derive(Debug, Default)]
pub struct WeightedRoundRobin {
    /// Running score per candidate index.
    current: Mutex<Vec<i64>>,
}

impl WeightedRoundRobin {
    pub fn new() -> WeightedRoundRobin {
        WeightedRoundRobin::default()
    }
}

impl Balancer for WeightedRoundRobin {
    fn pick(&self, view: &dyn View, _key: u64) -> Option<usize> {
        let tier = Tier::of(view)?;
        // A panic elsewhere cannot leave the scores invalid (any values are a legal state), so a
        // poisoned lock is simply reused.
        let mut current = self.current.lock().unwrap_or_else(PoisonError::into_inner);
        if current.len() != view.len() {
            // Indexes no longer line up with the old pool, so old scores mean nothing; starting
            // from zero only costs one period of smoothness.
            current.clear();
            current.resize(view.len(), 0);
        }
        let mut total = 0;
        let mut best: Option<usize> = None;
        for (i, c) in tier.members(view) {
            let weight = i64::from(c.effective_weight());
            current[i] += weight;
            total += weight;
            // Strictly greater: ties go to the lowest index, which makes the sequence reproducible.
            if best.is_none_or(|b| current[i] > current[b]) {
                best = Some(i);
            }
        }
        // Backends outside the tier keep their scores: one that is skipped briefly (already
        // tried, at its limit) resumes its place in the rotation instead of jumping the queue.
        // Scores stay bounded because the eligible scores always sum to a constant.
        let best = best?;
        current[best] -= total;
        Some(best)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::testing::{contract_tests, primary, share};

    contract_tests!(WeightedRoundRobin::new());

    fn sequence(
        wrr: &WeightedRoundRobin,
        view: &[crate::balance::Candidate],
        n: usize,
    ) -> Vec<usize> {
        (0..n).filter_map(|_| wrr.pick(&view, 0)).collect()
    }

    #[test]
    fn five_one_one_interleaves() {
        let wrr = WeightedRoundRobin::new();
        let view = [primary(5), primary(1), primary(1)];
        assert_eq!(sequence(&wrr, &view, 7), [0, 0, 1, 0, 2, 0, 0]);
        // Plain weighted round robin would send five in a row; the smooth variant's longest run,
        // across period boundaries too, is four.
        let picks = sequence(&wrr, &view, 7000);
        let longest = picks
            .chunk_by(|a, b| a == b)
            .filter(|run| run[0] == 0)
            .map(<[usize]>::len)
            .max();
        assert_eq!(longest, Some(4));
        for period in picks.chunks(7) {
            let mut counts = [0; 3];
            period.iter().for_each(|&i| counts[i] += 1);
            assert_eq!(
                counts,
                [5, 1, 1],
                "every period honours the weights exactly"
            );
        }
    }

    #[test]
    fn three_to_one_share() {
        let wrr = WeightedRoundRobin::new();
        let view = [primary(3), primary(1)];
        let mut counts = [0; 2];
        for i in sequence(&wrr, &view, 20_000) {
            counts[i] += 1;
        }
        let s = share(&counts, 0);
        assert!((0.73..=0.77).contains(&s), "share {s}");
        // The schedule is exact, not just statistically close.
        assert_eq!(counts, [15_000, 5_000]);
    }

    #[test]
    fn follows_weight_changes() {
        let wrr = WeightedRoundRobin::new();
        let mut view = [primary(1), primary(1)];
        sequence(&wrr, &view, 101);
        view[0].weight = 4;
        let mut counts = [0; 2];
        // Skip one period while the old scores settle, then expect an exact 4:1.
        sequence(&wrr, &view, 5);
        for i in sequence(&wrr, &view, 5000) {
            counts[i] += 1;
        }
        assert_eq!(counts, [4000, 1000]);
    }

    #[test]
    fn survives_pool_growing_and_shrinking() {
        let wrr = WeightedRoundRobin::new();
        let small = vec![primary(2), primary(1)];
        let large = vec![primary(1), primary(1), primary(1), primary(1)];
        for round in 0..50 {
            let view = if round % 2 == 0 { &small } else { &large };
            let mut counts = vec![0; view.len()];
            for i in sequence(&wrr, view, 12) {
                counts[i] += 1;
            }
            let expected = if round % 2 == 0 {
                vec![8, 4]
            } else {
                vec![3; 4]
            };
            assert_eq!(counts, expected);
        }
    }
}
