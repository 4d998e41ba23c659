//! Test-only discrete-event simulation: N [`Router`]s on one fake LAN.
//!
//! Lifecycle: build a [`Sim`] from per-router [`Params`], start the routers,
//! then alternate scripted disturbances (kill, restart, graceful shutdown,
//! faults, priority changes, partitions) with [`Sim::run_until`], which
//! delivers packets and fires timers strictly in time order on a fake clock.
//! Every advert goes through `packet::encode` and the driver's receive policy
//! ([`Receiver`]: TTL, family, checksum, VRID, version, addresses), multicast
//! loopback included, with configurable latency and loss from a seeded PRNG,
//! so runs are reproducible. Each router's event stream is checked as it is
//! drained ([`Ledger`]); scenario tests then assert on the recorded history.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use super::machine::{Event, Params, Reason, Router, State};
use super::packet::{self, Advert, ChecksumForm, Version};
use super::receive::{Datagram, Policy, Receiver, Verdict};

/// splitmix64: small, deterministic, good enough for test randomness.
pub(super) struct Rng(u64);

impl Rng {
    pub(super) fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub(super) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0); the modulo bias is irrelevant here.
    pub(super) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Replays one router's events and fails on anything inconsistent: a
/// StateChanged whose `from` is not the current state, a Claim while
/// holding, a Release while not holding, or holding in a state that must not.
#[derive(Debug, Clone)]
pub(super) struct Ledger {
    pub(super) state: State,
    pub(super) holding: bool,
}

impl Ledger {
    pub(super) fn new() -> Ledger {
        Ledger {
            state: State::Initialize,
            holding: false,
        }
    }

    pub(super) fn apply(&mut self, ev: &Event) {
        match ev {
            Event::StateChanged { from, to, .. } => {
                assert_eq!(*from, self.state, "StateChanged out of sequence: {ev:?}");
                assert_ne!(from, to, "StateChanged to the same state: {ev:?}");
                self.state = *to;
            }
            Event::ClaimAddresses => {
                assert!(!self.holding, "ClaimAddresses while already holding");
                assert!(
                    self.state.holds_addresses(),
                    "ClaimAddresses in {}",
                    self.state
                );
                self.holding = true;
            }
            Event::ReleaseAddresses => {
                assert!(self.holding, "ReleaseAddresses while not holding");
                assert!(
                    !self.state.holds_addresses(),
                    "ReleaseAddresses in {}",
                    self.state
                );
                self.holding = false;
            }
            Event::Reassert { .. } => {
                assert_eq!(self.state, State::Master, "Reassert outside Master")
            }
            Event::PeerMasterSeen { .. } => {}
        }
    }

    /// After a full drain the ledger and the router must agree.
    pub(super) fn assert_matches(&self, r: &Router) {
        assert_eq!(self.state, r.state(), "ledger and router disagree on state");
        assert_eq!(
            self.holding,
            r.state().holds_addresses(),
            "holding does not match {}",
            r.state()
        );
    }
}

/// A packet on the wire, ordered by arrival time then send order.
struct InFlight {
    at: Instant,
    seq: u64,
    from: usize,
    to: usize,
    src: IpAddr,
    bytes: Vec<u8>,
}

impl PartialEq for InFlight {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for InFlight {}
impl PartialOrd for InFlight {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for InFlight {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

pub(super) struct Node {
    pub(super) params: Params,
    pub(super) router: Router,
    /// The same receive policy the driver applies.
    receiver: Receiver,
    pub(super) alive: bool,
    pub(super) ledger: Ledger,
    group: u8,
    /// Every state entered, with when and why.
    pub(super) history: Vec<(Instant, State, Reason)>,
    pub(super) claims: Vec<Instant>,
    pub(super) releases: Vec<Instant>,
    pub(super) reasserts: Vec<Instant>,
    /// Send times within the last advert interval: a storm detector.
    recent_sends: VecDeque<Instant>,
}

/// Legitimate bursts (periodic advert, answers to priority 0, Reassert
/// replies to several healed masters, a final advert) stay well below this
/// per advert interval; a feedback loop between routers blows past it.
const MAX_SENDS_PER_INTERVAL: usize = 16;

impl Node {
    fn holding(&self) -> bool {
        self.alive && self.ledger.holding
    }

    /// Times this node entered Master.
    pub(super) fn master_entries(&self) -> Vec<Instant> {
        self.history
            .iter()
            .filter(|(_, s, _)| *s == State::Master)
            .map(|(t, _, _)| *t)
            .collect()
    }
}

pub(super) struct Sim {
    pub(super) t0: Instant,
    pub(super) now: Instant,
    pub(super) nodes: Vec<Node>,
    queue: BinaryHeap<Reverse<InFlight>>,
    seq: u64,
    rng: Rng,
    loss_ppm: u64,
    latency_min: Duration,
    latency_max: Duration,
    /// Holder sets over time, appended whenever the set changes.
    pub(super) timeline: Vec<(Instant, Vec<usize>)>,
    /// Steps processed at the current instant: a livelock guard.
    same_instant_steps: u32,
}

pub(super) fn ip_of(i: usize, v6: bool) -> IpAddr {
    let host = u8::try_from(i + 1).expect("few nodes");
    if v6 {
        IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, u16::from(host)))
    } else {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, host))
    }
}

/// The one virtual address every simulated router advertises.
fn vip_of(v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0x100))
    } else {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, 100))
    }
}

fn receiver_for(p: &Params) -> Receiver {
    let v6 = p.primary_ip.is_ipv6();
    let policy = Policy {
        vrid: p.vrid,
        version: p.version,
        interval_cs: crate::config::interval_centiseconds(p.version, p.advert_interval),
        ipv6: v6,
        vips: vec![vip_of(v6)],
        unicast_peers: vec![],
    };
    Receiver::new(policy, p.primary_ip, SIM_IFINDEX)
}

const SIM_IFINDEX: u32 = 1;

impl Sim {
    pub(super) fn new(
        seed: u64,
        params: Vec<Params>,
        latency: (Duration, Duration),
        loss_ppm: u64,
    ) -> Sim {
        let t0 = Instant::now();
        let nodes = params
            .into_iter()
            .map(|p| Node {
                receiver: receiver_for(&p),
                router: Router::new(p.clone()),
                params: p,
                alive: false,
                ledger: Ledger::new(),
                group: 0,
                history: Vec::new(),
                claims: Vec::new(),
                releases: Vec::new(),
                reasserts: Vec::new(),
                recent_sends: VecDeque::new(),
            })
            .collect();
        Sim {
            t0,
            now: t0,
            nodes,
            queue: BinaryHeap::new(),
            seq: 0,
            rng: Rng::new(seed),
            loss_ppm,
            latency_min: latency.0,
            latency_max: latency.1,
            timeline: Vec::new(),
            same_instant_steps: 0,
        }
    }

    pub(super) fn at(&self, d: Duration) -> Instant {
        self.t0 + d
    }

    pub(super) fn start(&mut self, i: usize) {
        let now = self.now;
        let n = &mut self.nodes[i];
        n.router = Router::new(n.params.clone());
        n.ledger = Ledger::new();
        n.alive = true;
        n.router.startup(now);
        self.drain(i);
    }

    pub(super) fn start_all(&mut self) {
        for i in 0..self.nodes.len() {
            self.start(i);
        }
    }

    /// Host dies: nothing more is sent or processed, its addresses vanish.
    pub(super) fn kill(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        n.alive = false;
        n.ledger = Ledger::new();
        self.record_holders();
    }

    pub(super) fn shutdown(&mut self, i: usize) {
        let now = self.now;
        self.nodes[i].router.shutdown(now);
        self.drain(i);
    }

    pub(super) fn set_priority(&mut self, i: usize, p: u8) {
        let now = self.now;
        self.nodes[i].router.set_priority(now, p);
        self.drain(i);
    }

    pub(super) fn set_fault(&mut self, i: usize, fault: bool) {
        let now = self.now;
        self.nodes[i].router.set_fault(now, fault);
        self.drain(i);
    }

    /// Nodes only hear nodes with the same group number.
    pub(super) fn partition(&mut self, groups: &[u8]) {
        for (n, g) in self.nodes.iter_mut().zip(groups) {
            n.group = *g;
        }
    }

    pub(super) fn heal(&mut self) {
        for n in &mut self.nodes {
            n.group = 0;
        }
    }

    pub(super) fn holders(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].holding())
            .collect()
    }

    pub(super) fn state(&self, i: usize) -> State {
        self.nodes[i].router.state()
    }

    fn next_due(&self) -> Option<Instant> {
        let packet = self.queue.peek().map(|Reverse(p)| p.at);
        let timer = self
            .nodes
            .iter()
            .filter(|n| n.alive)
            .filter_map(|n| n.router.poll_timeout())
            .min();
        match (packet, timer) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Processes everything due up to and including `until`, one packet or
    /// one timer at a time, in time order.
    pub(super) fn run_until(&mut self, until: Instant) {
        while let Some(t) = self.next_due() {
            if t > until {
                break;
            }
            if t == self.now {
                self.same_instant_steps += 1;
                assert!(
                    self.same_instant_steps < 10_000,
                    "livelock at {:?}",
                    t - self.t0
                );
            } else {
                assert!(t > self.now, "time went backwards");
                self.same_instant_steps = 0;
                self.now = t;
            }
            self.step();
        }
        self.now = self.now.max(until);
    }

    fn step(&mut self) {
        let now = self.now;
        if self.queue.peek().is_some_and(|Reverse(p)| p.at <= now) {
            if let Some(Reverse(p)) = self.queue.pop() {
                self.deliver(p);
            }
            return;
        }
        for i in 0..self.nodes.len() {
            let n = &mut self.nodes[i];
            if n.alive && n.router.poll_timeout().is_some_and(|t| t <= now) {
                n.router.handle_timeout(now);
                // Handling a due timer must leave nothing due, or a real
                // driver would spin.
                assert!(
                    n.router.poll_timeout().is_none_or(|t| t > now),
                    "timer still due after handling"
                );
                self.drain(i);
                return;
            }
        }
    }

    fn deliver(&mut self, p: InFlight) {
        let now = self.now;
        if !self.nodes[p.to].alive || self.nodes[p.to].group != self.nodes[p.from].group {
            return;
        }
        let n = &mut self.nodes[p.to];
        let v6 = p.src.is_ipv6();
        let dst = if v6 {
            IpAddr::V6(packet::VRRP_GROUP_V6)
        } else {
            IpAddr::V4(packet::VRRP_GROUP_V4)
        };
        let verdict = n.receiver.receive(
            now,
            &Datagram {
                ifindex: SIM_IFINDEX,
                src: p.src,
                dst,
                ttl: Some(packet::VRRP_TTL),
                payload: &p.bytes,
            },
        );
        let (src, adv, form) = match verdict {
            Verdict::Own => return,
            Verdict::Admit { src, advert, form } => (src, advert, form),
            Verdict::Drop { drop, .. } => panic!("simulated advert dropped: {drop}"),
        };
        let expected = match adv.version {
            Version::V2 => ChecksumForm::Plain,
            Version::V3 => ChecksumForm::PseudoHeader,
        };
        assert_eq!(form, expected);
        n.router.handle_advert(now, src, &adv);
        self.drain(p.to);
    }

    fn drain(&mut self, i: usize) {
        let now = self.now;
        while let Some(tx) = self.nodes[i].router.poll_transmit() {
            let n = &self.nodes[i];
            if !n.alive {
                continue;
            }
            let n = &mut self.nodes[i];
            while n
                .recent_sends
                .front()
                .is_some_and(|&t| t + n.params.advert_interval <= now)
            {
                n.recent_sends.pop_front();
            }
            n.recent_sends.push_back(now);
            assert!(
                n.recent_sends.len() <= MAX_SENDS_PER_INTERVAL,
                "advert storm from node {i} at {:?}",
                now - self.t0
            );
            let p = &n.params;
            let v6 = p.primary_ip.is_ipv6();
            let vip = vip_of(v6);
            let dst = if v6 {
                IpAddr::V6(packet::VRRP_GROUP_V6)
            } else {
                IpAddr::V4(packet::VRRP_GROUP_V4)
            };
            let adv = Advert {
                version: p.version,
                vrid: p.vrid,
                priority: tx.priority,
                interval_cs: tx.interval_cs,
                addrs: vec![vip],
            };
            let bytes = packet::encode(&adv, p.primary_ip, dst, ChecksumForm::PseudoHeader);
            let src = p.primary_ip;
            for to in 0..self.nodes.len() {
                // Multicast loops back to the sender (IP_MULTICAST_LOOP), never lost.
                let lost = to != i && self.rng.below(1_000_000) < self.loss_ppm;
                if lost {
                    continue;
                }
                let span = (self.latency_max - self.latency_min).as_micros();
                let jitter = self.rng.below(u64::try_from(span).expect("small") + 1);
                let at = now + self.latency_min + Duration::from_micros(jitter);
                self.seq += 1;
                self.queue.push(Reverse(InFlight {
                    at,
                    seq: self.seq,
                    from: i,
                    to,
                    src,
                    bytes: bytes.clone(),
                }));
            }
        }
        let n = &mut self.nodes[i];
        while let Some(ev) = n.router.poll_event() {
            n.ledger.apply(&ev);
            match ev {
                Event::StateChanged { to, reason, .. } => n.history.push((now, to, reason)),
                Event::ClaimAddresses => n.claims.push(now),
                Event::ReleaseAddresses => n.releases.push(now),
                Event::Reassert { .. } => n.reasserts.push(now),
                Event::PeerMasterSeen { .. } => {}
            }
        }
        n.ledger.assert_matches(&n.router);
        self.record_holders();
    }

    fn record_holders(&mut self) {
        let holders = self.holders();
        if self.timeline.last().map(|(_, h)| h) != Some(&holders) {
            self.timeline.push((self.now, holders));
        }
    }

    /// Routers that take part in the election right now.
    fn candidates(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| {
                self.nodes[i].alive && matches!(self.state(i), State::Backup | State::Master)
            })
            .collect()
    }

    /// After things have settled: exactly one holder if anyone can hold,
    /// and it is the candidate with the highest effective priority (ties by
    /// primary address). Assumes preempt on and no preempt_delay.
    pub(super) fn assert_converged(&self, context: &str) {
        let holders = self.holders();
        let candidates = self.candidates();
        let best = candidates.iter().copied().max_by_key(|&i| {
            let n = &self.nodes[i];
            (n.router.effective_priority(), ip_key(n.params.primary_ip))
        });
        match best {
            None => assert!(
                holders.is_empty(),
                "{context}: holders {holders:?} but no candidate"
            ),
            Some(best) => {
                assert_eq!(
                    holders,
                    vec![best],
                    "{context}: holders {holders:?}, expected [{best}]"
                );
                assert_eq!(self.state(best), State::Master, "{context}");
                for &i in &candidates {
                    if i != best {
                        assert_eq!(self.state(i), State::Backup, "{context}: node {i}");
                    }
                }
            }
        }
    }
}

fn ip_key(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

pub(super) fn node_params(
    i: usize,
    priority: u8,
    interval: Duration,
    version: Version,
    v6: bool,
) -> Params {
    Params {
        vrid: 42,
        priority,
        advert_interval: interval,
        version,
        preempt: true,
        preempt_delay: Duration::ZERO,
        primary_ip: ip_of(i, v6),
        handover_timeout: 3 * interval,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    fn three(interval: Duration, version: Version, v6: bool) -> Vec<Params> {
        vec![
            node_params(0, 200, interval, version, v6),
            node_params(1, 150, interval, version, v6),
            node_params(2, 100, interval, version, v6),
        ]
    }

    /// The first Master entry of node `i` at or after `after`.
    fn became_master_after(sim: &Sim, i: usize, after: Instant) -> Option<Instant> {
        sim.nodes[i]
            .master_entries()
            .into_iter()
            .find(|&t| t >= after)
    }

    #[test]
    fn startup_elects_the_highest_priority() {
        let mut sim = Sim::new(1, three(SEC, Version::V3, false), (ms(1), ms(3)), 0);
        sim.start_all();
        sim.run_until(sim.at(10 * SEC));
        sim.assert_converged("after startup");
        // Node 0 has the smallest skew, so it is master first and nobody else ever is.
        assert_eq!(sim.nodes[0].master_entries().len(), 1);
        assert!(sim.nodes[1].master_entries().is_empty());
        assert!(sim.nodes[2].master_entries().is_empty());
    }

    fn kill_master_scenario(version: Version, v6: bool) {
        let mut sim = Sim::new(2, three(SEC, version, v6), (ms(1), ms(3)), 0);
        sim.start_all();
        sim.run_until(sim.at(30 * SEC));
        sim.assert_converged("before kill");
        let t_kill = sim.at(30 * SEC + ms(300));
        sim.run_until(t_kill);
        sim.kill(0);
        sim.run_until(t_kill + 10 * SEC);
        sim.assert_converged("after kill");
        let took = became_master_after(&sim, 1, t_kill).expect("node 1 takes over") - t_kill;
        // Node 1's down interval: 3 s + (256 − 150)/256 s; v3 learned 1 s from node 0.
        let mdi = 3 * SEC + us(414_062);
        assert_eq!(sim.nodes[1].router.master_down_interval(), mdi);
        assert!(took <= mdi + ms(3), "took {took:?}");
        // The timer was reset by the last advert (≤ 1 s before the kill), so
        // the takeover cannot come much earlier than the full interval.
        assert!(took >= mdi - SEC, "took {took:?}");
        assert!(
            sim.nodes[2].master_entries().is_empty(),
            "node 2 never master"
        );
    }

    #[test]
    fn kill_master_backup_takes_over_within_down_interval_v3() {
        kill_master_scenario(Version::V3, false);
    }

    #[test]
    fn kill_master_backup_takes_over_within_down_interval_v2() {
        kill_master_scenario(Version::V2, false);
    }

    #[test]
    fn kill_master_backup_takes_over_within_down_interval_ipv6() {
        kill_master_scenario(Version::V3, true);
    }

    #[test]
    fn graceful_shutdown_hands_over_without_a_gap() {
        // Fixed 1 ms latency so every instant is exact.
        let mut sim = Sim::new(3, three(SEC, Version::V3, false), (ms(1), ms(1)), 0);
        sim.start_all();
        sim.run_until(sim.at(30 * SEC));
        sim.assert_converged("before shutdown");
        let t_stop = sim.at(30 * SEC + ms(300));
        sim.run_until(t_stop);
        sim.shutdown(0);
        assert_eq!(sim.state(0), State::Leaving);
        assert_eq!(sim.holders(), vec![0], "still holding while leaving");
        sim.run_until(t_stop + 10 * SEC);
        sim.assert_converged("after handover");
        assert_eq!(sim.state(0), State::Stopped);

        // Priority 0 arrives after 1 ms; node 1 waits its Skew_Time (106/256 s).
        let claim = sim.nodes[1].claims.last().copied().expect("node 1 claimed");
        assert_eq!(claim, t_stop + ms(1) + us(414_062));
        // Node 0 releases exactly when node 1's first advert reaches it.
        let release = sim.nodes[0]
            .releases
            .last()
            .copied()
            .expect("node 0 released");
        assert_eq!(release, claim + ms(1));
        assert_eq!(
            sim.nodes[0].history.last().map(|h| h.2),
            Some(Reason::HandoverComplete {
                peer: ip_of(1, false)
            })
        );
        // Never a gap: from the first claim on, someone always held the addresses.
        let first_claim = sim
            .timeline
            .iter()
            .position(|(_, h)| !h.is_empty())
            .expect("claimed");
        assert!(
            sim.timeline[first_claim..]
                .iter()
                .all(|(_, h)| !h.is_empty()),
            "{:?}",
            sim.timeline
        );
        // ... and the overlap was exactly one latency long.
        let overlap: Vec<_> = sim.timeline.iter().filter(|(_, h)| h.len() > 1).collect();
        assert_eq!(overlap.len(), 1);
        assert_eq!(overlap[0], &(claim, vec![0, 1]));
        assert!(sim.nodes[2].master_entries().is_empty());
    }

    #[test]
    fn graceful_shutdown_without_successor_releases_at_deadline() {
        let mut sim = Sim::new(
            4,
            vec![node_params(0, 200, SEC, Version::V3, false)],
            (ms(1), ms(1)),
            0,
        );
        sim.start_all();
        sim.run_until(sim.at(5 * SEC));
        let t_stop = sim.now;
        sim.shutdown(0);
        sim.run_until(t_stop + 10 * SEC);
        assert_eq!(sim.state(0), State::Stopped);
        assert_eq!(sim.nodes[0].releases, vec![t_stop + 3 * SEC]);
    }

    #[test]
    fn partition_then_heal_converges_with_reassert() {
        let mut sim = Sim::new(5, three(SEC, Version::V3, false), (ms(1), ms(3)), 0);
        sim.start_all();
        sim.run_until(sim.at(30 * SEC));
        sim.assert_converged("before partition");
        sim.run_until(sim.at(30 * SEC + ms(300)));
        sim.partition(&[1, 2, 2]);
        sim.run_until(sim.at(45 * SEC));
        assert_eq!(sim.holders(), vec![0, 1], "split brain while partitioned");
        let t_heal = sim.at(45 * SEC + ms(500));
        sim.run_until(t_heal);
        sim.heal();
        sim.run_until(t_heal + SEC + ms(3));
        assert_eq!(
            sim.holders(),
            vec![0],
            "one master within one interval + latency"
        );
        sim.assert_converged("right after heal");
        let reasserted = sim.nodes[0]
            .reasserts
            .iter()
            .any(|&t| t >= t_heal && t <= t_heal + SEC + ms(6));
        assert!(
            reasserted,
            "winner re-announced: {:?}",
            sim.nodes[0].reasserts
        );
        sim.run_until(t_heal + 60 * SEC);
        sim.assert_converged("long after heal");
        assert_eq!(
            sim.nodes[0].master_entries().len(),
            1,
            "node 0 never left master"
        );
    }

    #[test]
    fn equal_priorities_started_together_tie_break_on_address() {
        let params = vec![
            node_params(0, 100, SEC, Version::V3, false),
            node_params(1, 100, SEC, Version::V3, false),
        ];
        let mut sim = Sim::new(6, params, (ms(1), ms(1)), 0);
        sim.start_all();
        sim.run_until(sim.at(10 * SEC));
        // Both down timers expire together, both become master, 10.0.0.2 wins.
        assert_eq!(sim.nodes[0].master_entries().len(), 1);
        assert_eq!(sim.holders(), vec![1]);
        assert_eq!(
            sim.nodes[0].history.last().map(|h| h.2),
            Some(Reason::LostTieBreak {
                peer: ip_of(1, false),
                priority: 100
            })
        );
    }

    #[test]
    fn five_percent_loss_does_not_flap_over_ten_minutes() {
        // Several seeds, so the test does not hinge on one lucky loss pattern.
        let mut episodes = 0;
        for seed in 0..20 {
            let mut sim = Sim::new(
                700 + seed,
                three(SEC, Version::V3, false),
                (ms(1), ms(5)),
                50_000,
            );
            sim.start_all();
            sim.run_until(sim.at(10 * SEC));
            sim.assert_converged(&format!("seed {seed} after startup"));
            let start = sim.now;
            sim.run_until(start + 600 * SEC);
            sim.assert_converged(&format!("seed {seed} after ten minutes"));
            // Loss alone can never demote the highest priority.
            assert_eq!(
                sim.nodes[0].master_entries().len(),
                1,
                "seed {seed}: master changed"
            );
            assert!(sim.nodes[0].releases.is_empty());
            // A backup claims only after three adverts in a row are lost
            // (p = 0.05³ per advert). Such an episode must end quickly: the
            // master's Reassert reply, or failing that its next advert,
            // makes the backup yield.
            for i in [1, 2] {
                let n = &sim.nodes[i];
                assert_eq!(n.claims.len(), n.releases.len(), "seed {seed} node {i}");
                for (c, r) in n.claims.iter().zip(&n.releases) {
                    assert!(
                        *r - *c <= 2 * SEC + ms(10),
                        "seed {seed} node {i}: held {:?}",
                        *r - *c
                    );
                }
                episodes += n.claims.len();
            }
        }
        // Expected ≈ 20 runs × 1200 receptions × 0.05³ ≈ 3.
        assert!(episodes <= 10, "{episodes} spurious takeovers");
    }

    /// Random clusters and disturbances; after each disturbance and a quiet
    /// period long enough for any election, the invariants must hold.
    #[test]
    fn randomized_scenarios_converge() {
        const SCENARIOS: u64 = 500;
        let intervals_cs = [20u64, 50, 100, 100, 200];
        for seed in 0..SCENARIOS {
            let mut rng = Rng::new(seed ^ 0x5eed);
            let n = 2 + rng.below(4) as usize;
            let version = if rng.below(5) == 0 {
                Version::V2
            } else {
                Version::V3
            };
            let v6 = version == Version::V3 && rng.below(4) == 0;
            let common = ms(10 * intervals_cs[rng.below(intervals_cs.len() as u64) as usize]);
            let mut priorities: Vec<u8> = Vec::new();
            let mut params = Vec::new();
            for i in 0..n {
                let interval = match version {
                    // RFC 3768 §7.1: v2 routers must agree on the interval.
                    Version::V2 => SEC,
                    // v3 Backups learn the master's interval: mix them.
                    Version::V3 if rng.below(2) == 0 => common,
                    Version::V3 => {
                        ms(10 * intervals_cs[rng.below(intervals_cs.len() as u64) as usize])
                    }
                };
                let priority = if i == 0 && rng.below(4) == 0 {
                    255
                } else {
                    distinct_priority(&mut rng, &priorities)
                };
                priorities.push(priority);
                params.push(node_params(i, priority, interval, version, v6));
            }
            let max_interval = params
                .iter()
                .map(|p| p.advert_interval)
                .max()
                .expect("nodes");
            // Any election finishes within two down intervals plus a heal round.
            let settle = 2 * (4 * max_interval) + max_interval + ms(50);
            let lat_min = us(rng.below(2_000));
            let lat_max = lat_min + us(rng.below(5_000));
            let mut sim = Sim::new(seed, params, (lat_min, lat_max), 0);
            for i in 0..n {
                sim.run_until(sim.now + ms(rng.below(2_000)));
                sim.start(i);
            }
            sim.run_until(sim.now + settle);
            sim.assert_converged(&format!("seed {seed} after startup"));
            for step in 0..10 {
                let i = rng.below(n as u64) as usize;
                let desc = disturb(&mut sim, &mut rng, i, settle);
                sim.run_until(sim.now + settle);
                sim.assert_converged(&format!("seed {seed} step {step}: {desc}"));
            }
        }
    }

    fn distinct_priority(rng: &mut Rng, taken: &[u8]) -> u8 {
        loop {
            let p = 1 + rng.below(254) as u8;
            if !taken.contains(&p) {
                return p;
            }
        }
    }

    /// Applies one random disturbance to node `i`; returns a description.
    fn disturb(sim: &mut Sim, rng: &mut Rng, i: usize, settle: Duration) -> String {
        let alive = sim.nodes[i].alive && sim.state(i) != State::Stopped;
        match rng.below(6) {
            0 if alive => {
                sim.kill(i);
                format!("kill {i}")
            }
            1 if alive => {
                sim.shutdown(i);
                format!("shutdown {i}")
            }
            2 if alive => {
                let taken: Vec<u8> = (0..sim.nodes.len())
                    .filter(|&j| j != i)
                    .map(|j| sim.nodes[j].router.effective_priority())
                    .collect();
                let p = distinct_priority(rng, &taken);
                // Also the configured value, so a later restart cannot
                // collide with another node's priority.
                sim.nodes[i].params.priority = p;
                sim.set_priority(i, p);
                format!("priority {i} -> {p}")
            }
            3 if alive => {
                sim.set_fault(i, true);
                sim.run_until(sim.now + settle);
                sim.assert_converged(&format!("fault on {i}"));
                sim.set_fault(i, false);
                format!("fault on/off {i}")
            }
            4 => {
                let groups: Vec<u8> = (0..sim.nodes.len()).map(|_| rng.below(2) as u8).collect();
                sim.partition(&groups);
                sim.run_until(sim.now + settle);
                sim.heal();
                format!("partition {groups:?} then heal")
            }
            _ => {
                sim.start(i);
                format!("(re)start {i}")
            }
        }
    }
}
