//! Least connections, weight-aware: picks the eligible backend with the smallest
//! `(active + 1) / weight`, so load settles in proportion to weight.
//!
//! It adapts to uneven connection lifetimes that round robin cannot see, at the cost of a full
//! pass over the pool per pick. The `+ 1` scores the connection about to be placed, which keeps
//! weights meaningful on an idle pool: at zero load the heavier backend wins instead of every
//! backend tying at 0. Exact ties take turns so equal backends share bursts.

use super::{least_loaded, Balancer, Tier, View};
use std::sync::atomic::AtomicUsize;

#[derive(Debug, Default)]
pub struct LeastConnections {
    tick: AtomicUsize,
}

impl LeastConnections {
    pub fn new() -> LeastConnections {
        LeastConnections::default()
    }
}

impl Balancer for LeastConnections {
    fn pick(&self, view: &dyn View, _key: u64) -> Option<usize> {
        let tier = Tier::of(view)?;
        least_loaded(view, tier, &self.tick, |c| u128::from(c.active) + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::testing::{contract_tests, primary, share, simulate, unusable, Prng};
    use crate::balance::Candidate;

    contract_tests!(LeastConnections::new());

    fn with_active(weight: u32, active: u64) -> Candidate {
        Candidate {
            active,
            ..primary(weight)
        }
    }

    #[test]
    fn prefers_fewest_connections_per_weight() {
        let lc = LeastConnections::new();
        assert_eq!(lc.pick(&[with_active(1, 5), with_active(1, 2)], 0), Some(1));
        // (5+1)/3 = 2 beats (2+1)/1 = 3.
        assert_eq!(lc.pick(&[with_active(3, 5), with_active(1, 2)], 0), Some(0));
        // With equal load held constant the heavier backend always wins.
        let view = [with_active(1, 4), with_active(3, 4)];
        assert!((0..1000).all(|k| lc.pick(&view, k) == Some(1)));
    }

    #[test]
    fn ties_take_turns_exactly() {
        let lc = LeastConnections::new();
        let view = [
            with_active(2, 3),
            unusable(with_active(1, 0)),
            with_active(1, 9),
            with_active(2, 3),
            with_active(2, 3),
        ];
        let mut counts = [0; 5];
        for k in 0..3000 {
            counts[lc.pick(&view, k).expect("usable")] += 1;
        }
        assert_eq!(counts, [1000, 0, 0, 1000, 1000]);
    }

    /// Connections live 1..=200 picks, so about 100 are open at once. Least connections holds
    /// (a0 + 1) ≈ 3 (a1 + 1), i.e. backend 0 carries (3T + 2) / 4T of T open connections: 75.5%
    /// at T = 100, and by Little's law pick shares follow connection shares. Integer steps add
    /// about ±1/T, so ±2% covers the bias and the granularity with room to spare while still
    /// failing for a balancer that ignores weights (50%) or sends everything to the heavy one.
    #[test]
    fn long_run_share_tracks_weights() {
        let lc = LeastConnections::new();
        let picks = simulate(
            &lc,
            vec![primary(3), primary(1)],
            50_000,
            200,
            &mut Prng::new(3),
        );
        let s = share(&picks, 0);
        assert!((0.73..=0.77).contains(&s), "share {s}");
    }
}
