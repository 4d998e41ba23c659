//! Round robin: eligible backends take turns in index order, regardless of weight or load.
//!
//! The cheapest algorithm (one atomic increment per pick) and perfectly even when backends are
//! alike; it is blind to weights, slow backends and long-lived connections, which the other
//! algorithms trade a little cost to account for. When the eligible set changes, the rotation
//! simply continues over the new set.

use super::{Balancer, Tier, View};
use std::sync::atomic::{AtomicUsize, Ordering};

#[derive(Debug, Default)]
pub struct RoundRobin {
    next: AtomicUsize,
}

impl RoundRobin {
    pub fn new() -> RoundRobin {
        RoundRobin::default()
    }
}

impl Balancer for RoundRobin {
    fn pick(&self, view: &dyn View, _key: u64) -> Option<usize> {
        let tier = Tier::of(view)?;
        // Relaxed: the counter only hands out turns; it publishes no other memory. Wrapping at
        // usize::MAX merely skews a single turn.
        let turn = self.next.fetch_add(1, Ordering::Relaxed) % tier.count;
        tier.members(view).nth(turn).map(|(i, _)| i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::testing::{contract_tests, primary, unusable};

    contract_tests!(RoundRobin::new());

    #[test]
    fn rotates_in_index_order() {
        let rr = RoundRobin::new();
        let view = [primary(1), primary(1), primary(1)];
        let picks: Vec<usize> = (0..7).filter_map(|k| rr.pick(&view, k)).collect();
        assert_eq!(picks, [0, 1, 2, 0, 1, 2, 0]);
    }

    #[test]
    fn exactly_equal_shares_ignoring_weight_and_gaps() {
        let rr = RoundRobin::new();
        let view = [
            primary(200),
            unusable(primary(1)),
            primary(1),
            primary(7),
            unusable(primary(9)),
        ];
        let mut counts = [0; 5];
        for k in 0..3000 {
            counts[rr.pick(&view, k).expect("usable")] += 1;
        }
        assert_eq!(counts, [1000, 0, 1000, 1000, 0]);
    }
}
