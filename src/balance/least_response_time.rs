//! Least response time: picks the eligible backend with the smallest
//! `ewma_ns * (active + 1) / weight` — expected wait, scaled by the work already queued there.
//!
//! Fast backends attract traffic until their in-flight work makes them look as slow as the rest,
//! so a backend that degrades sheds load before its health check fails. The EWMA lags, though: a
//! backend that was slow keeps a high score until new samples arrive, which it only gets if it is
//! picked. A backend with no sample yet is therefore scored at the smallest known EWMA so that it
//! is tried early instead of being starved of the traffic that would measure it.

use super::{least_loaded, Balancer, Tier, View};
use std::sync::atomic::AtomicUsize;

#[derive(Debug, Default)]
pub struct LeastResponseTime {
    tick: AtomicUsize,
}

impl LeastResponseTime {
    pub fn new() -> LeastResponseTime {
        LeastResponseTime::default()
    }
}

impl Balancer for LeastResponseTime {
    fn pick(&self, view: &dyn View, _key: u64) -> Option<usize> {
        let tier = Tier::of(view)?;
        // 1 when nothing is sampled yet: the score then degenerates to least connections.
        let fastest = tier
            .members(view)
            .map(|(_, c)| c.ewma_ns)
            .filter(|&e| e > 0)
            .min()
            .unwrap_or(1);
        least_loaded(view, tier, &self.tick, |c| {
            let ewma = if c.ewma_ns == 0 { fastest } else { c.ewma_ns };
            u128::from(ewma).saturating_mul(u128::from(c.active) + 1)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::testing::{contract_tests, primary, share, simulate, Prng};
    use crate::balance::Candidate;

    contract_tests!(LeastResponseTime::new());

    const MS: u64 = 1_000_000;

    fn backend(ewma_ns: u64, active: u64) -> Candidate {
        Candidate {
            ewma_ns,
            active,
            ..primary(1)
        }
    }

    #[test]
    fn slow_backend_gets_far_fewer_picks() {
        let lrt = LeastResponseTime::new();
        let idle = [backend(10 * MS, 0), backend(MS, 0)];
        assert!((0..1000).all(|k| lrt.pick(&idle, k) == Some(1)));

        // Under load the fast one is preferred until it holds ~10x the in-flight work:
        // 10 (a_slow + 1) ≈ a_fast + 1 gives the slow backend roughly 1/11 (~8%) of ~100 open
        // connections. Ignoring response time would give 50%.
        let picks = simulate(
            &lrt,
            vec![backend(10 * MS, 0), backend(MS, 0)],
            50_000,
            200,
            &mut Prng::new(4),
        );
        let slow = share(&picks, 0);
        assert!((0.02..=0.15).contains(&slow), "slow share {slow}");
    }

    #[test]
    fn in_flight_work_penalises() {
        let lrt = LeastResponseTime::new();
        assert_eq!(lrt.pick(&[backend(MS, 5), backend(MS, 0)], 0), Some(1));
        // 1 ms x 21 in flight is worse than 10 ms x 1.
        assert_eq!(
            lrt.pick(&[backend(10 * MS, 0), backend(MS, 20)], 0),
            Some(0)
        );
        assert_eq!(lrt.pick(&[backend(10 * MS, 0), backend(MS, 8)], 0), Some(1));
    }

    #[test]
    fn weight_scales_the_score() {
        let lrt = LeastResponseTime::new();
        let heavy = Candidate {
            weight: 4,
            ..backend(3 * MS, 0)
        };
        assert_eq!(lrt.pick(&[backend(MS, 0), heavy], 0), Some(1));
    }

    #[test]
    fn unsampled_backend_is_explored() {
        let lrt = LeastResponseTime::new();
        // Scored as 5 ms: wins against the same latency with work queued.
        assert_eq!(lrt.pick(&[backend(5 * MS, 3), backend(0, 0)], 0), Some(1));
        // Ties with the fastest known backend, so it gets every other pick.
        let view = [backend(5 * MS, 0), backend(0, 0), backend(9 * MS, 0)];
        let mut counts = [0; 3];
        for k in 0..1000 {
            counts[lrt.pick(&view, k).expect("usable")] += 1;
        }
        assert_eq!(counts, [500, 500, 0]);
    }

    #[test]
    fn nothing_sampled_rotates_evenly() {
        let lrt = LeastResponseTime::new();
        let view = [backend(0, 0), backend(0, 0), backend(0, 0)];
        let mut counts = [0; 3];
        for k in 0..3000 {
            counts[lrt.pick(&view, k).expect("usable")] += 1;
        }
        assert_eq!(counts, [1000; 3]);
    }
}
