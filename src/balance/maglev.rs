//! Maglev: the same key picks the same backend on every node of a scale-out group.
//!
//! Several tandem nodes behind an ECMP router each receive an arbitrary share of the flows, and
//! the router moves flows between nodes when one joins or leaves. For a moved flow (or the next
//! request of a session) to land on the same backend, every node must compute the same table
//! from the same configuration. So, unlike `source_hash`, which derives a backend's permutation
//! from its position in the pool, Maglev derives it from the backend's *identity* (its address),
//! and fills the table visiting backends in identity order: two nodes whose configs list the
//! same backends in a different order, or that run different processes and Rust versions, build
//! byte-identical tables.
//!
//! Health does not rebuild the table. The table is built over every configured member of the
//! serving tier, healthy or not; a lookup that lands on an unusable backend re-probes with the
//! key's own deterministic sequence of further slots until it meets a usable one. Hence a
//! backend that goes down moves exactly its own keys — the ideal 1/N — and nobody else's, and
//! the moved keys spread over the survivors in proportion to their slots (weights); when it
//! comes back every key returns. Rebuilding over the healthy set instead (what `source_hash`
//! does) also moves a few percent of the survivors' keys, and with nodes that disagree for a
//! moment about one backend's health, those extra moves would differ between nodes. A rebuild
//! happens only when membership or weights change (config reload, runtime weight).

use super::{mix64, Balancer, Tier, View};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::{PoisonError, RwLock};

/// Prime table sizes (every skip in 1..size then walks a full permutation), at least ~100 slots
/// per backend as in the Maglev paper; chosen by the configured member count, never by health.
const SIZES: [usize; 3] = [4099, 16411, 65537];

fn table_size(members: usize) -> usize {
    SIZES
        .into_iter()
        .find(|&size| size >= members.saturating_mul(100))
        .unwrap_or(SIZES[2])
}

/// Re-probes before giving up on random slots and scanning the table: with 1 in 10 backends
/// usable the chance that 64 probes all miss is 0.9^64 ≈ 0.1%, and the scan still finds one.
const MAX_PROBES: u64 = 64;

/// Stable identity of a backend: its address, hashed the same way on every node and release.
/// IPv4-mapped IPv6 addresses count as IPv4, as in [`super::client_key`].
pub fn backend_id(addr: SocketAddr) -> u64 {
    let mut h = Fnv::new();
    match addr.ip().to_canonical() {
        IpAddr::V4(a) => h.bytes(&[4]).bytes(&a.octets()),
        IpAddr::V6(a) => h.bytes(&[6]).bytes(&a.octets()),
    };
    h.bytes(&addr.port().to_be_bytes());
    mix64(h.0)
}

/// Transport protocol of a flow, part of the L4 key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    Tcp,
    Udp,
}

/// Key of an L4 flow: its 5-tuple (client address and port, service address and port,
/// protocol). Every node of an ECMP group sees the same tuple for a flow (the service address is
/// the shared anycast address), so with `maglev` they all pick the same backend for it, and the
/// flows of one client spread over the backends instead of following its source address.
pub fn flow_key(client: SocketAddr, local: SocketAddr, proto: Proto) -> u64 {
    let mut h = Fnv::new();
    h.bytes(&[match proto {
        Proto::Tcp => 6,
        Proto::Udp => 17,
    }]);
    for a in [client, local] {
        match a.ip().to_canonical() {
            IpAddr::V4(ip) => h.bytes(&[4]).bytes(&ip.octets()),
            IpAddr::V6(ip) => h.bytes(&[6]).bytes(&ip.octets()),
        };
        h.bytes(&a.port().to_be_bytes());
    }
    mix64(h.0)
}

/// FNV-1a, written out because std's hashers are not stable across releases.
struct Fnv(u64);

impl Fnv {
    fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn bytes(&mut self, b: &[u8]) -> &mut Fnv {
        for &x in b {
            self.0 = (self.0 ^ u64::from(x)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        self
    }
}

/// Slot of the `probe`-th lookup of `key` (probe 0 is the key's home slot).
fn slot_of(key: u64, probe: u64, size: usize) -> usize {
    let k = if probe == 0 {
        key
    } else {
        mix64(key ^ probe.wrapping_mul(0x9e37_79b9_7f4a_7c15))
    };
    (k % size as u64) as usize
}

#[derive(Default)]
pub struct Maglev {
    /// Identity of the backend at each candidate index; indexes beyond it fall back to the
    /// index itself (a caller that did not say who its backends are still gets a valid table,
    /// just not one that other nodes share).
    ids: Vec<u64>,
    /// Primary and backup tables (built lazily, replaced when members or weights change).
    tables: RwLock<[Option<Table>; 2]>,
}

impl fmt::Debug for Maglev {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Maglev")
            .field("backends", &self.ids.len())
            .finish()
    }
}

impl Maglev {
    /// A balancer for a pool whose backend at index `i` has address `addrs[i]`.
    pub fn new(addrs: impl IntoIterator<Item = SocketAddr>) -> Maglev {
        Maglev {
            ids: addrs.into_iter().map(backend_id).collect(),
            tables: RwLock::default(),
        }
    }

    fn id(&self, index: usize) -> u64 {
        self.ids
            .get(index)
            .copied()
            .unwrap_or_else(|| mix64(index as u64 ^ 0x6d61_676c_6576_0000))
    }

    /// The tier's members (usable or not) as (identity, candidate index, weight).
    fn members(&self, view: &dyn View, backup: bool) -> Vec<Member> {
        (0..view.len())
            .map(|i| (i, view.get(i)))
            .filter(|(_, c)| c.backup == backup)
            .map(|(i, c)| Member {
                id: self.id(i),
                index: i,
                weight: c.effective_weight(),
            })
            .collect()
    }
}

impl Balancer for Maglev {
    fn pick(&self, view: &dyn View, key: u64) -> Option<usize> {
        let tier = Tier::of(view)?;
        let which = usize::from(tier.backup);
        {
            // Tables are replaced whole, so a poisoned lock still guards valid data.
            let tables = self.tables.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(t) = tables[which]
                .as_ref()
                .filter(|t| t.serves(self, view, tier))
            {
                return t.lookup(view, tier, key);
            }
        }
        let table = Table::build(self.members(view, tier.backup))?;
        let pick = table.lookup(view, tier, key);
        self.tables.write().unwrap_or_else(PoisonError::into_inner)[which] = Some(table);
        pick
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Member {
    id: u64,
    index: usize,
    weight: u32,
}

struct Table {
    /// In candidate-index order, as `serves` compares them.
    members: Vec<Member>,
    /// Candidate index per slot.
    slots: Vec<u32>,
}

impl fmt::Debug for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Table")
            .field("members", &self.members)
            .field("size", &self.slots.len())
            .finish()
    }
}

const EMPTY: u32 = u32::MAX;

impl Table {
    fn build(members: Vec<Member>) -> Option<Table> {
        let max_weight = members.iter().map(|m| m.weight).max()?;
        let size = table_size(members.len());
        // Identity order, not configuration order: this is what makes the table the same on
        // every node. Equal identities (the same address twice, which the config rejects) fall
        // back to index order so the build stays deterministic.
        let mut order: Vec<Member> = members.clone();
        order.sort_by_key(|m| (m.id, m.index));
        struct Cursor {
            next: usize,
            skip: usize,
            credit: u32,
        }
        let mut cursors: Vec<Cursor> = order
            .iter()
            .map(|m| Cursor {
                next: (mix64(m.id ^ 0x6f66_6673_6574_0001) % size as u64) as usize,
                skip: (mix64(m.id ^ 0x736b_6970_0000_0001) % (size as u64 - 1) + 1) as usize,
                credit: 0,
            })
            .collect();
        let mut slots = vec![EMPTY; size];
        let mut filled = 0;
        // Weighted turns: each round banks every member's weight and a member claims a slot per
        // `max_weight` banked, so slot counts follow weights within one slot.
        while filled < size {
            for (m, c) in order.iter().zip(&mut cursors) {
                c.credit += m.weight;
                if c.credit < max_weight {
                    continue;
                }
                c.credit -= max_weight;
                // Terminates: the permutation visits every slot and one is still empty.
                while slots[c.next] != EMPTY {
                    c.next = (c.next + c.skip) % size;
                }
                slots[c.next] = m.index as u32;
                filled += 1;
                if filled == size {
                    break;
                }
            }
        }
        Some(Table { members, slots })
    }

    fn serves(&self, mg: &Maglev, view: &dyn View, tier: Tier) -> bool {
        let mut it = self.members.iter();
        for i in 0..view.len() {
            let c = view.get(i);
            if c.backup != tier.backup {
                continue;
            }
            match it.next() {
                Some(m) if m.index == i && m.weight == c.effective_weight() && m.id == mg.id(i) => {
                }
                _ => return false,
            }
        }
        it.next().is_none()
    }

    fn lookup(&self, view: &dyn View, tier: Tier, key: u64) -> Option<usize> {
        let size = self.slots.len();
        let usable = |i: usize| i < view.len() && tier.admits(&view.get(i));
        for probe in 0..MAX_PROBES {
            let i = self.slots[slot_of(key, probe, size)] as usize;
            if usable(i) {
                return Some(i);
            }
        }
        let start = slot_of(key, MAX_PROBES, size);
        (0..size)
            .map(|j| self.slots[(start + j) % size] as usize)
            .find(|&i| usable(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::balance::testing::{contract_tests, primary, share, unusable, Prng};
    use crate::balance::{client_key, Candidate};
    use std::net::Ipv4Addr;

    fn addrs(n: usize) -> Vec<SocketAddr> {
        (0..n)
            .map(|i| SocketAddr::from(([10, 0, 1, 10 + i as u8], 8080)))
            .collect()
    }

    contract_tests!(Maglev::new(addrs(13)));

    fn keys(n: u32) -> Vec<u64> {
        (0..n)
            .map(|i| client_key(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i))))
            .collect()
    }

    /// Backend address per key: identity-level, comparable between differently ordered pools.
    fn mapping(
        m: &Maglev,
        view: &[Candidate],
        addrs: &[SocketAddr],
        keys: &[u64],
    ) -> Vec<SocketAddr> {
        keys.iter()
            .map(|&k| addrs[m.pick(&view, k).expect("usable")])
            .collect()
    }

    fn moved(a: &[SocketAddr], b: &[SocketAddr]) -> usize {
        a.iter().zip(b).filter(|(x, y)| x != y).count()
    }

    #[test]
    fn same_table_whatever_the_backend_order() {
        let a = addrs(7);
        let view: Vec<Candidate> = (0..7).map(|i| primary(1 + (i % 3) as u32)).collect();
        let keys = keys(5000);
        let first = mapping(&Maglev::new(a.clone()), &view, &a, &keys);
        let mut rng = Prng::new(99);
        for _ in 0..20 {
            // Shuffle the pool (address and weight together), as another node's config might.
            let mut perm: Vec<usize> = (0..7).collect();
            for i in (1..7).rev() {
                perm.swap(i, rng.below(i as u64 + 1) as usize);
            }
            let a2: Vec<SocketAddr> = perm.iter().map(|&i| a[i]).collect();
            let v2: Vec<Candidate> = perm.iter().map(|&i| view[i]).collect();
            assert_eq!(mapping(&Maglev::new(a2.clone()), &v2, &a2, &keys), first);
        }
    }

    #[test]
    fn table_is_pinned() {
        // Cross-checked against an independent implementation (Python, FNV-1a + splitmix64 +
        // the fill loop). A change here remaps every flow of every scale-out group on upgrade, and a group
        // upgraded node by node would disagree meanwhile: change only on purpose.
        let a = addrs(3);
        let m = Maglev::new(a.clone());
        let view = [primary(1), primary(1), primary(1)];
        let got: Vec<usize> = (0..12u64)
            .map(|k| m.pick(&view, mix64(k)).expect("usable"))
            .collect();
        assert_eq!(got, PINNED);
        assert_eq!(backend_id(a[0]), 0xed13_fac2_15b2_14d3);
        let c = SocketAddr::from(([192, 0, 2, 1], 40000));
        let s = SocketAddr::from(([198, 51, 100, 7], 443));
        assert_eq!(flow_key(c, s, Proto::Tcp), 0x137b_efe3_57db_de8c);
    }
    const PINNED: [usize; 12] = [2, 0, 2, 0, 0, 2, 2, 0, 1, 0, 1, 2];

    #[test]
    fn flow_key_covers_the_whole_tuple() {
        let c = SocketAddr::from(([192, 0, 2, 1], 40000));
        let s = SocketAddr::from(([198, 51, 100, 7], 443));
        let k = flow_key(c, s, Proto::Tcp);
        assert_ne!(k, flow_key(c, s, Proto::Udp));
        assert_ne!(
            k,
            flow_key(SocketAddr::from(([192, 0, 2, 1], 40001)), s, Proto::Tcp)
        );
        assert_ne!(
            k,
            flow_key(c, SocketAddr::from(([198, 51, 100, 7], 444)), Proto::Tcp)
        );
        assert_ne!(k, flow_key(s, c, Proto::Tcp), "direction matters");
        let mapped = SocketAddr::new(
            IpAddr::V6(Ipv4Addr::new(192, 0, 2, 1).to_ipv6_mapped()),
            40000,
        );
        assert_eq!(k, flow_key(mapped, s, Proto::Tcp));
        // Source ports of one client spread evenly over 4 backends.
        let m = Maglev::new(addrs(4));
        let view = [primary(1); 4];
        let mut counts = [0u64; 4];
        for port in 1024..21024u16 {
            let key = flow_key(SocketAddr::from(([192, 0, 2, 1], port)), s, Proto::Tcp);
            counts[m.pick(&view, key).expect("usable")] += 1;
        }
        for i in 0..4 {
            assert!((0.23..=0.27).contains(&share(&counts, i)), "{counts:?}");
        }
    }

    #[test]
    fn weights_set_the_shares() {
        let a = addrs(3);
        let m = Maglev::new(a);
        let view = [primary(1), primary(2), primary(5)];
        let mut counts = [0u64; 3];
        for k in keys(40_000) {
            counts[m.pick(&view, k).expect("usable")] += 1;
        }
        for (i, want) in [0.125, 0.25, 0.625].into_iter().enumerate() {
            let got = share(&counts, i);
            assert!((got - want).abs() < 0.015, "backend {i}: {got} want {want}");
        }
        // Exact slot counts: proportional to weight within one slot.
        let t = Table::build(m.members(&view, false)).expect("members");
        for (i, w) in [1.0, 2.0, 5.0].into_iter().enumerate() {
            let got = t.slots.iter().filter(|&&s| s as usize == i).count() as f64;
            assert!((got - 4099.0 * w / 8.0).abs() <= 2.0, "{i}: {got}");
        }
    }

    /// The acceptance number: one of ten backends goes away.
    #[test]
    fn one_of_ten_down_moves_only_its_own_keys() {
        let a = addrs(10);
        let m = Maglev::new(a.clone());
        let mut view = vec![primary(1); 10];
        let keys = keys(50_000);
        let before = mapping(&m, &view, &a, &keys);
        view[3] = unusable(view[3]);
        let after = mapping(&m, &view, &a, &keys);
        let on_removed = before.iter().filter(|&&x| x == a[3]).count();
        let total = moved(&before, &after);
        let survivors_moved = before
            .iter()
            .zip(&after)
            .filter(|(b, x)| **b != a[3] && b != x)
            .count();
        eprintln!(
            "maglev, 1 of 10 backends down: {:.2}% of keys moved (ideal {:.2}%: the keys it held), {} keys moved between survivors",
            100.0 * total as f64 / keys.len() as f64,
            100.0 * on_removed as f64 / keys.len() as f64,
            survivors_moved
        );
        assert_eq!(survivors_moved, 0);
        assert_eq!(total, on_removed);
        let f = total as f64 / keys.len() as f64;
        assert!((0.09..=0.11).contains(&f), "{f}");
        // The moved keys spread evenly over the nine survivors.
        let mut to = std::collections::HashMap::new();
        for (b, x) in before.iter().zip(&after) {
            if b != x {
                *to.entry(*x).or_insert(0usize) += 1;
            }
        }
        assert_eq!(to.len(), 9);
        let mean = on_removed as f64 / 9.0;
        assert!(
            to.values().all(|&n| (n as f64 - mean).abs() < 0.25 * mean),
            "{to:?}"
        );
        view[3].usable = true;
        assert_eq!(
            mapping(&m, &view, &a, &keys),
            before,
            "it comes back: every key returns"
        );
    }

    #[test]
    fn one_of_ten_removed_from_the_config_moves_little_more() {
        // Removal from the config rebuilds the table over nine members: Maglev's bound, not 0.
        let a = addrs(10);
        let keys = keys(50_000);
        let before = mapping(&Maglev::new(a.clone()), &[primary(1); 10], &a, &keys);
        let mut a9 = a.clone();
        a9.remove(3);
        let after = mapping(&Maglev::new(a9.clone()), &[primary(1); 9], &a9, &keys);
        let f = moved(&before, &after) as f64 / keys.len() as f64;
        eprintln!(
            "maglev, 1 of 10 backends removed from the config: {:.2}% of keys moved (ideal 10%)",
            100.0 * f
        );
        assert!((0.09..=0.14).contains(&f), "{f}");
    }

    #[test]
    fn many_down_still_finds_the_survivor_deterministically() {
        let a = addrs(10);
        let m = Maglev::new(a);
        let mut view = vec![unusable(primary(1)); 10];
        view[7].usable = true;
        for k in keys(2000) {
            assert_eq!(m.pick(&view, k), Some(7));
        }
        view[2].usable = true;
        let first: Vec<_> = keys(2000).iter().map(|&k| m.pick(&view, k)).collect();
        let other = Maglev::new(addrs(10));
        let again: Vec<_> = keys(2000).iter().map(|&k| other.pick(&view, k)).collect();
        assert_eq!(first, again);
    }

    #[test]
    fn weight_change_rebuilds_and_backups_get_their_own_table() {
        let a = addrs(4);
        let m = Maglev::new(a);
        let mut view = [
            primary(1),
            primary(1),
            crate::balance::testing::backup(1),
            crate::balance::testing::backup(1),
        ];
        let k = keys(20_000);
        let count = |m: &Maglev, v: &[Candidate], i: usize| {
            k.iter().filter(|&&x| m.pick(&v, x) == Some(i)).count()
        };
        assert!(count(&m, &view, 0) > 9000);
        view[0].weight = 3;
        let c0 = count(&m, &view, 0) as f64 / k.len() as f64;
        assert!((0.73..=0.77).contains(&c0), "{c0}");
        view[0].usable = false;
        view[1].usable = false;
        let b2 = count(&m, &view, 2) as f64 / k.len() as f64;
        assert!((0.45..=0.55).contains(&b2), "{b2}");
    }

    #[test]
    fn table_sizes_are_prime() {
        for size in SIZES {
            assert!((2..size)
                .take_while(|d| d * d <= size)
                .all(|d| size % d != 0));
        }
        assert_eq!(table_size(10), 4099);
        assert_eq!(table_size(41), 16411);
        assert_eq!(table_size(10_000), 65537);
    }
}
