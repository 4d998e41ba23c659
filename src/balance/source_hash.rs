//! Source hash: a client keeps landing on the same backend, via a Maglev lookup table.
//!
//! Each eligible backend walks its own pseudo-random permutation of the table's slots and, on
//! each of its turns, claims the next slot nobody holds yet; turns are dealt in proportion to
//! weight until the table is full. A client key then maps to `table[key % size]`. Compared with
//! a hash ring this gives near-exact weighted balance and O(1) lookups; the price is a table
//! rebuild when the eligible set changes, and a few percent more than the minimal 1/N of keys
//! moving when a backend leaves, because the leaver's slots are refilled by the others' turns.
//!
//! Backends are identified by candidate index: a backend's permutation is derived from its index
//! alone, which is what lets survivors keep their slots when another backend leaves. The caller
//! must therefore keep a backend at the same index while it stays in the pool, and mark departing
//! backends unusable rather than shifting the list.

use super::{mix64, Balancer, Tier, View};
use std::fmt;
use std::sync::{PoisonError, RwLock};

/// Table sizes are prime so that every skip in `1..size` walks a full permutation. The Maglev
/// paper keeps the table at least ~100 slots per backend to hold the imbalance near 1%, hence
/// 4099 up to 40 backends, 16411 up to 164 and 65537 beyond (balance degrades gently past 655).
/// Small pools get small tables because a rebuild costs O(size · log size) and the cache should
/// stay in L1/L2. The size follows the configured pool length, not the eligible count, since a
/// new size remaps nearly every key: health flaps must never do that, only growing the pool
/// across a threshold.
const SIZES: [usize; 3] = [4099, 16411, 65537];

fn table_size(pool_len: usize) -> usize {
    SIZES
        .into_iter()
        .find(|&size| size >= pool_len.saturating_mul(100))
        .unwrap_or(SIZES[2])
}

const EMPTY: u32 = u32::MAX;

#[derive(Debug, Default)]
pub struct SourceHash {
    /// The two most recently built tables, newest first. Usability also covers per-connection
    /// conditions (already tried, at its connection limit), so the eligible set can flip back and
    /// forth between two states many times a second; keeping the previous table makes that
    /// flip-flop free instead of a rebuild per pick.
    tables: RwLock<[Option<Table>; 2]>,
}

impl SourceHash {
    pub fn new() -> SourceHash {
        SourceHash::default()
    }
}

impl Balancer for SourceHash {
    fn pick(&self, view: &dyn View, key: u64) -> Option<usize> {
        let tier = Tier::of(view)?;
        if tier.count == 1 {
            return tier.members(view).next().map(|(i, _)| i);
        }
        {
            // Tables are only ever replaced whole, so a poisoned lock still guards valid data.
            let tables = self.tables.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(table) = tables.iter().flatten().find(|t| t.serves(view, tier)) {
                return Some(table.lookup(key));
            }
        }
        // Built outside the lock so readers of other tables are never stalled by a rebuild.
        let table = Table::build(view, tier)?;
        let pick = table.lookup(key);
        let mut tables = self.tables.write().unwrap_or_else(PoisonError::into_inner);
        // Another thread may have raced us to the same table; a duplicate would evict the
        // other useful entry.
        if !tables.iter().flatten().any(|t| t.same_inputs(&table)) {
            tables.rotate_right(1);
            tables[0] = Some(table);
        }
        Some(pick)
    }
}

/// A filled lookup table and the exact inputs it was built from. Comparing the inputs themselves
/// (rather than a hash of them) costs the same single pass and cannot collide.
struct Table {
    pool_len: usize,
    /// (candidate index, effective weight) of each member, in index order.
    members: Vec<(usize, u32)>,
    slots: Vec<u32>,
}

impl fmt::Debug for Table {
    // The slots are tens of thousands of numbers; nobody wants them in a log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Table")
            .field("pool_len", &self.pool_len)
            .field("members", &self.members)
            .field("size", &self.slots.len())
            .finish()
    }
}

/// One backend's walk through its permutation: slot `offset + j * skip (mod size)` at step `j`.
struct Cursor {
    next: usize,
    skip: usize,
    /// Weight banked towards the next turn.
    credit: u32,
}

impl Table {
    fn build(view: &dyn View, tier: Tier) -> Option<Table> {
        let pool_len = view.len();
        let size = table_size(pool_len);
        let members: Vec<(usize, u32)> = tier
            .members(view)
            .map(|(i, c)| (i, c.effective_weight()))
            .collect();
        let max_weight = members.iter().map(|&(_, w)| w).max()?;
        let mut cursors: Vec<Cursor> = members
            .iter()
            .map(|&(index, _)| {
                // Two independent hashes of the index; distinct constants decorrelate them.
                let id = index as u64;
                let offset = mix64(id ^ 0x6f66_6673_6574_0000) % size as u64;
                let skip = mix64(id ^ 0x736b_6970_0000_0000) % (size as u64 - 1) + 1;
                Cursor {
                    next: offset as usize,
                    skip: skip as usize,
                    credit: 0,
                }
            })
            .collect();
        let mut slots = vec![EMPTY; size];
        let mut filled = 0;
        // Each round banks every member's weight; a member takes one turn per `max_weight`
        // banked. The heaviest member thus moves every round and a weight-w member w/max times
        // as often, so slot counts are proportional to weight within one slot, whatever the
        // total weight — unlike "w turns per round", which lets the first members fill a table
        // smaller than one round.
        while filled < size {
            for (&(index, weight), cursor) in members.iter().zip(&mut cursors) {
                cursor.credit += weight;
                if cursor.credit < max_weight {
                    continue;
                }
                cursor.credit -= max_weight;
                // Terminates: the permutation visits every slot and at least one is empty.
                while slots[cursor.next] != EMPTY {
                    cursor.next = (cursor.next + cursor.skip) % size;
                }
                slots[cursor.next] = index as u32;
                filled += 1;
                if filled == size {
                    break;
                }
            }
        }
        Some(Table {
            pool_len,
            members,
            slots,
        })
    }

    fn serves(&self, view: &dyn View, tier: Tier) -> bool {
        self.pool_len == view.len()
            && self.members.len() == tier.count
            && tier
                .members(view)
                .zip(&self.members)
                .all(|((i, c), &(index, weight))| i == index && c.effective_weight() == weight)
    }

    fn same_inputs(&self, other: &Table) -> bool {
        self.pool_len == other.pool_len && self.members == other.members
    }

    fn lookup(&self, key: u64) -> usize {
        self.slots[(key % self.slots.len() as u64) as usize] as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::testing::{contract_tests, primary, share, unusable};
    use crate::balance::{client_key, Candidate};
    use std::net::{IpAddr, Ipv4Addr};

    contract_tests!(SourceHash::new());

    fn keys(n: u32) -> Vec<u64> {
        (0..n)
            .map(|i| client_key(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i))))
            .collect()
    }

    fn mapping(sh: &SourceHash, view: &[Candidate], keys: &[u64]) -> Vec<usize> {
        keys.iter()
            .map(|&k| sh.pick(&view, k).expect("usable"))
            .collect()
    }

    fn moved(before: &[usize], after: &[usize]) -> usize {
        before.iter().zip(after).filter(|(a, b)| a != b).count()
    }

    #[test]
    fn same_key_same_backend_across_instances() {
        let view = [primary(1), primary(2), primary(1), primary(5)];
        let keys = keys(2000);
        let first = mapping(&SourceHash::new(), &view, &keys);
        let sh = SourceHash::new();
        for _ in 0..3 {
            assert_eq!(mapping(&sh, &view, &keys), first);
        }
    }

    #[test]
    fn three_to_one_share() {
        let sh = SourceHash::new();
        let mut counts = [0; 2];
        for i in mapping(&sh, &[primary(3), primary(1)], &keys(20_000)) {
            counts[i] += 1;
        }
        let s = share(&counts, 0);
        assert!((0.73..=0.77).contains(&s), "share {s}");
    }

    #[test]
    fn slots_follow_weights_even_when_total_weight_exceeds_table() {
        // 40 backends of weight ~200: the total (~8000) is twice the 4099-slot table.
        let view: Vec<Candidate> = (0..40).map(|i| primary(180 + i)).collect();
        let table = Table::build(&view, Tier::of(&view).expect("usable")).expect("members");
        let total: u32 = view.iter().map(|c| c.weight).sum();
        for (i, c) in view.iter().enumerate() {
            let got = table.slots.iter().filter(|&&s| s as usize == i).count() as f64;
            let want = 4099.0 * f64::from(c.weight) / f64::from(total);
            assert!(
                (got - want).abs() <= 2.0,
                "backend {i}: {got} slots, want {want}"
            );
        }
    }

    #[test]
    fn equal_backends_get_equal_shares() {
        let sh = SourceHash::new();
        let view = vec![primary(1); 10];
        let mut counts = [0; 10];
        for i in mapping(&sh, &view, &keys(20_000)) {
            counts[i] += 1;
        }
        for i in 0..10 {
            let s = share(&counts, i);
            assert!((0.085..=0.115).contains(&s), "backend {i} share {s}");
        }
    }

    #[test]
    fn removing_one_of_ten_moves_few_keys() {
        let sh = SourceHash::new();
        let mut view = vec![primary(1); 10];
        let keys = keys(20_000);
        let before = mapping(&sh, &view, &keys);
        view[3] = unusable(view[3]);
        let after = mapping(&sh, &view, &keys);

        let on_removed = before.iter().filter(|&&i| i == 3).count();
        let total_moved = moved(&before, &after) as f64 / keys.len() as f64;
        let survivors_moved = before
            .iter()
            .zip(&after)
            .filter(|(b, a)| **b != 3 && b != a)
            .count() as f64
            / keys.len() as f64;
        eprintln!(
            "removal: {:.2}% on removed backend, {:.2}% moved in total, {:.2}% of keys moved between survivors",
            100.0 * on_removed as f64 / keys.len() as f64,
            100.0 * total_moved,
            100.0 * survivors_moved
        );
        assert!(after.iter().all(|&i| i != 3));
        // The ideal is exactly the removed backend's ~10%; Maglev adds a few percent of churn.
        assert!(total_moved < 0.15, "{total_moved}");
        assert!(survivors_moved < 0.05, "{survivors_moved}");

        view[3].usable = true;
        assert_eq!(
            mapping(&sh, &view, &keys),
            before,
            "restoring restores every mapping"
        );
    }

    #[test]
    fn adding_an_eleventh_moves_about_one_eleventh() {
        let sh = SourceHash::new();
        let keys = keys(20_000);
        let mut view = vec![primary(1); 10];
        view.push(unusable(primary(1)));
        let before = mapping(&sh, &view, &keys);
        view[10].usable = true;
        let after = mapping(&sh, &view, &keys);
        let to_new = after.iter().filter(|&&i| i == 10).count() as f64 / keys.len() as f64;
        let total_moved = moved(&before, &after) as f64 / keys.len() as f64;
        eprintln!(
            "addition: {:.2}% moved to the new backend, {:.2}% moved in total",
            100.0 * to_new,
            100.0 * total_moved
        );
        assert!((0.07..=0.11).contains(&to_new), "{to_new}");
        assert!(total_moved < 0.15, "{total_moved}");
    }

    #[test]
    fn flip_flopping_sets_stay_cached() {
        let sh = SourceHash::new();
        let full = [primary(1), primary(1), primary(1)];
        let mut partial = full;
        partial[1].usable = false;
        for k in 0..10 {
            sh.pick(&full, k);
            sh.pick(&partial, k);
        }
        let tables = sh.tables.read().expect("not poisoned");
        assert!(tables
            .iter()
            .flatten()
            .any(|t| t.serves(&full, Tier::of(&full).expect("usable"))));
        assert!(tables
            .iter()
            .flatten()
            .any(|t| t.serves(&partial, Tier::of(&partial).expect("usable"))));
    }

    #[test]
    fn table_sizes_are_prime_and_scale_with_the_pool() {
        for size in SIZES {
            assert!((2..size)
                .take_while(|d| d * d <= size)
                .all(|d| size % d != 0));
        }
        assert_eq!(table_size(2), 4099);
        assert_eq!(table_size(40), 4099);
        assert_eq!(table_size(41), 16411);
        assert_eq!(table_size(1000), 65537);
        assert_eq!(table_size(usize::MAX), 65537);
    }
}
