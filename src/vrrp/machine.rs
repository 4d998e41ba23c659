//! The VRRP router state machine of RFC 5798 §6, sans-I/O.
//!
//! Lifecycle: [`Router::new`] (state Initialize) → [`Router::startup`] →
//! the driver feeds inputs — received adverts ([`Router::handle_advert`]),
//! timer expiry ([`Router::handle_timeout`] once `now >= poll_timeout()`),
//! tracking ([`Router::set_priority`]), faults ([`Router::set_fault`]) and
//! sync-group decisions ([`Router::force_master`] / [`Router::force_backup`]) —
//! and after *every* call drains [`Router::poll_transmit`] (adverts to send)
//! and [`Router::poll_event`] (state changes, address claim / release,
//! re-announce). [`Router::shutdown`] starts a make-before-break handover that
//! ends in Stopped, after which the router ignores every input.
//!
//! Time is always passed in by the caller; nothing here reads a clock, opens
//! a socket or sleeps, so every transition is unit-testable to the microsecond.

use std::collections::VecDeque;
use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::packet::{Advert, Version, PRIORITY_OWNER, PRIORITY_STOP};

/// Configuration of one virtual router.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Params {
    pub vrid: u8,
    /// Configured priority 1..=255; 255 means address owner (RFC 5798 §5.2.4).
    pub priority: u8,
    /// Multiple of 10 ms in 10 ms..=40.95 s (v2: whole seconds 1..=255 s).
    /// [`Router::new`] rounds and clamps into range; reject bad values in
    /// config validation so the operator sees them.
    pub advert_interval: Duration,
    pub version: Version,
    /// RFC 5798 §6.1 Preempt_Mode, default true. Ignored by the owner, which
    /// always preempts (same section).
    pub preempt: bool,
    /// Non-RFC: after (re)entering Backup, keep accepting a lower-priority
    /// master for this long before preempting it.
    pub preempt_delay: Duration,
    /// Our primary address on the interface; the equal-priority tie-break
    /// compares it (RFC 5798 §6.4.3).
    pub primary_ip: IpAddr,
    /// Non-RFC make-before-break: how long a resigning master keeps the
    /// addresses while waiting to hear its successor. Zero releases at once.
    pub handover_timeout: Duration,
}

/// RFC 5798 §6.4 states plus our Fault / Leaving / Stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    Initialize,
    Backup,
    Master,
    /// Interface down or hard tracking failure: never holds the addresses.
    Fault,
    /// Graceful shutdown in progress: still holds the addresses.
    Leaving,
    /// Terminal.
    Stopped,
}

impl State {
    /// Whether a router in this state has the virtual addresses configured.
    pub const fn holds_addresses(self) -> bool {
        matches!(self, State::Master | State::Leaving)
    }

    fn name(self) -> &'static str {
        match self {
            State::Initialize => "initialize",
            State::Backup => "backup",
            State::Master => "master",
            State::Fault => "fault",
            State::Leaving => "leaving",
            State::Stopped => "stopped",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An advertisement the driver must send now; it adds version, VRID and the
/// address list from its configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transmit {
    pub priority: u8,
    pub interval_cs: u16,
}

/// Why the router is in its current state: the answer to "why is this node
/// (not) master?". `Display` renders the operator-facing sentence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    NotStarted,
    /// Backup after startup, no master heard yet.
    Startup,
    /// Priority 255 goes straight to Master (RFC 5798 §6.4.1).
    Owner,
    /// Backup under, or yielded to, a higher-priority master.
    HigherPriority {
        peer: IpAddr,
        priority: u8,
    },
    /// Backup under an equal-priority master: RFC 5798 §6.4.2 accepts it
    /// whatever the addresses (the tie-break applies between masters only).
    EqualPriority {
        peer: IpAddr,
        priority: u8,
    },
    /// Yielded to an equal-priority master with a higher primary address.
    LostTieBreak {
        peer: IpAddr,
        priority: u8,
    },
    /// Backup under a lower-priority master because preempt is off.
    NoPreempt {
        peer: IpAddr,
        priority: u8,
    },
    /// Backup under a lower-priority master until preempt_delay has passed.
    PreemptDelay {
        peer: IpAddr,
        priority: u8,
    },
    /// Backup ignoring a lower-priority master, waiting for the down timer.
    Preempting {
        peer: IpAddr,
        priority: u8,
    },
    /// The master sent priority 0: Backup waiting Skew_Time, or Master after it.
    Resigned {
        peer: IpAddr,
    },
    /// Master because no advertisement came for Master_Down_Interval.
    MasterDown,
    /// Master after preempting a lower-priority master.
    Preempted {
        peer: IpAddr,
        priority: u8,
    },
    ForcedMaster,
    ForcedBackup,
    Fault,
    /// This instance is fine; a member of its sync group is in fault.
    GroupFault,
    FaultCleared,
    /// Leaving: sent priority 0, waiting to hear the successor.
    ShuttingDown,
    HandoverComplete {
        peer: IpAddr,
    },
    HandoverTimeout,
    /// Stopped without holding the addresses.
    Shutdown,
    /// Master carried over from the previous process of an in-place upgrade.
    Upgraded,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::NotStarted => write!(f, "not started"),
            Reason::Startup => write!(f, "startup: waiting Master_Down_Interval for a master"),
            Reason::Owner => write!(f, "priority 255 address owner"),
            Reason::HigherPriority { peer, priority } => {
                write!(f, "higher priority {priority} from {peer}")
            }
            Reason::EqualPriority { peer, priority } => {
                write!(f, "equal priority {priority} from {peer}: an equal-priority master is not preempted")
            }
            Reason::LostTieBreak { peer, priority } => {
                write!(
                    f,
                    "equal priority {priority} from {peer}, which has the higher primary address"
                )
            }
            Reason::NoPreempt { peer, priority } => {
                write!(
                    f,
                    "preempt disabled: keeping lower priority {priority} master {peer}"
                )
            }
            Reason::PreemptDelay { peer, priority } => {
                write!(
                    f,
                    "preempt_delay running: keeping lower priority {priority} master {peer}"
                )
            }
            Reason::Preempting { peer, priority } => {
                write!(f, "will preempt lower priority {priority} from {peer} when the master down timer expires")
            }
            Reason::Resigned { peer } => write!(f, "master {peer} resigned (priority 0)"),
            Reason::MasterDown => write!(f, "master down timer expired"),
            Reason::Preempted { peer, priority } => {
                write!(f, "preempted lower priority {priority} from {peer}")
            }
            Reason::ForcedMaster => write!(f, "sync group: another member became master"),
            Reason::ForcedBackup => write!(f, "sync group: another member left master"),
            Reason::Fault => write!(f, "fault: interface down or tracking failure"),
            Reason::GroupFault => write!(f, "fault: another member of the sync group is in fault"),
            Reason::FaultCleared => write!(
                f,
                "fault cleared: waiting Master_Down_Interval for a master"
            ),
            Reason::ShuttingDown => {
                write!(f, "graceful shutdown: sent priority 0, keeping addresses until a new master is heard")
            }
            Reason::HandoverComplete { peer } => write!(f, "handed over to new master {peer}"),
            Reason::HandoverTimeout => write!(f, "handover timeout: no new master heard"),
            Reason::Shutdown => write!(f, "shut down"),
            Reason::Upgraded => write!(
                f,
                "master carried over from the previous process (upgrade in place)"
            ),
        }
    }
}

/// Something the driver must act on or log, in the order it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Exactly one per state change, emitted before any Claim/Release it causes.
    StateChanged {
        from: State,
        to: State,
        reason: Reason,
    },
    /// Add the VIPs and send the gratuitous ARP / unsolicited NA burst
    /// (RFC 5798 §6.4.1, §6.4.2). Never emitted while already holding.
    ClaimAddresses,
    /// Remove the VIPs. Never emitted while not holding.
    ReleaseAddresses,
    /// We are master and heard a lower-priority master (a healed partition):
    /// re-send the GARP / NA burst so caches poisoned by the other master
    /// point back at us (OPERATOR-PAIN 3.1/3.2). Our advert is already queued.
    Reassert { peer: IpAddr, peer_priority: u8 },
    /// The master we know of changed to `peer` (for logging).
    PeerMasterSeen { peer: IpAddr, priority: u8 },
}

/// What armed the Backup's Master_Down_Timer, so that its expiry can say why
/// we became master.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DownCause {
    Silence,
    Resigned(IpAddr),
    Preempting(IpAddr, u8),
}

/// One VRRP virtual router (one VRID on one interface and address family).
#[derive(Debug)]
pub struct Router {
    params: Params,
    interval_cs: u16,
    state: State,
    priority: u8,
    master_adver_interval: Duration,
    adver_timer: Option<Instant>,
    down_timer: Option<Instant>,
    handover_deadline: Option<Instant>,
    backup_since: Option<Instant>,
    /// The peer we believe is master, with its advertised priority.
    peer_master: Option<(IpAddr, u8)>,
    down_cause: DownCause,
    reason: Reason,
    transmits: VecDeque<Transmit>,
    events: VecDeque<Event>,
}

/// Rounds `d` to what the wire can carry, so timers and the advertised
/// interval never disagree and a zero interval cannot spin the driver.
fn normalise_interval(version: Version, d: Duration) -> (Duration, u16) {
    let cs = crate::config::interval_centiseconds(version, d);
    (Duration::from_millis(u64::from(cs) * 10), cs)
}

/// IP addresses compared "as unsigned integers" for the tie-break (RFC 5798 §6.4.3).
fn ip_key(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

impl Router {
    pub fn new(p: Params) -> Router {
        let (advert_interval, interval_cs) = normalise_interval(p.version, p.advert_interval);
        // Priority 0 on the wire means "resigning" (RFC 5798 §5.2.4); it cannot be ours.
        let priority = p.priority.max(1);
        let params = Params {
            advert_interval,
            priority,
            ..p
        };
        Router {
            params,
            interval_cs,
            state: State::Initialize,
            priority,
            master_adver_interval: advert_interval,
            adver_timer: None,
            down_timer: None,
            handover_deadline: None,
            backup_since: None,
            peer_master: None,
            down_cause: DownCause::Silence,
            reason: Reason::NotStarted,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// RFC 5798 §6.4.1: the owner becomes Master at once, anyone else Backup
    /// with Master_Down_Timer armed. No-op outside Initialize (e.g. when a
    /// fault was reported before startup: clearing it starts the router).
    pub fn startup(&mut self, now: Instant) {
        if self.state != State::Initialize {
            return;
        }
        if self.priority == PRIORITY_OWNER {
            self.become_master(now, Reason::Owner);
        } else {
            self.master_adver_interval = self.params.advert_interval;
            self.become_backup(now, Reason::Startup);
        }
    }

    /// In-place upgrade: the previous process was Master and hands over to
    /// this one, so it resumes as Master at once, advertising now (the peer
    /// hears no gap longer than one advert interval). No-op outside Initialize.
    pub fn resume_master(&mut self, now: Instant) {
        if self.state == State::Initialize {
            self.become_master(now, Reason::Upgraded);
        }
    }

    /// An advertisement from `src` that the driver has validated (checksum,
    /// TTL, version, VRID, address list; v2: interval equal to ours).
    pub fn handle_advert(&mut self, now: Instant, src: IpAddr, adv: &Advert) {
        // Our own multicast looped back would look, to a Master, like an
        // equal-priority peer that lost the tie-break: answering it with an
        // advert each time would be an advert storm.
        if src == self.params.primary_ip
            || adv.vrid != self.params.vrid
            || adv.version != self.params.version
        {
            return;
        }
        match self.state {
            State::Backup => self.backup_receive(now, src, adv),
            State::Master => self.master_receive(now, src, adv),
            // Make-before-break: any live master other than us has taken
            // over, so releasing now leaves no gap.
            State::Leaving if adv.priority != PRIORITY_STOP => {
                self.go_inert(State::Stopped, Reason::HandoverComplete { peer: src });
            }
            State::Leaving | State::Initialize | State::Fault | State::Stopped => {}
        }
    }

    /// Fires whatever timers are due at `now`; early calls do nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        let due = |t: Option<Instant>| t.is_some_and(|t| t <= now);
        match self.state {
            State::Master if due(self.adver_timer) => {
                self.send(self.priority);
                self.adver_timer = Some(now + self.params.advert_interval);
            }
            State::Backup if due(self.down_timer) => {
                let reason = match self.down_cause {
                    DownCause::Silence => Reason::MasterDown,
                    DownCause::Resigned(peer) => Reason::Resigned { peer },
                    DownCause::Preempting(peer, priority) => Reason::Preempted { peer, priority },
                };
                self.become_master(now, reason);
            }
            State::Leaving if due(self.handover_deadline) => {
                self.go_inert(State::Stopped, Reason::HandoverTimeout);
            }
            State::Leaving if due(self.adver_timer) => {
                // Repeat the resignation in case the first one was lost;
                // a new master answers priority 0 at once (§6.4.3).
                self.send(PRIORITY_STOP);
                self.adver_timer = Some(now + self.params.advert_interval);
            }
            _ => {}
        }
    }

    /// Earliest instant at which [`Router::handle_timeout`] has work to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [self.adver_timer, self.down_timer, self.handover_deadline]
            .into_iter()
            .flatten()
            .min()
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Tracking changed our effective priority (0 is treated as 1: priority 0
    /// on the wire means resigning). A Master advertises the new value at
    /// once so Backups can preempt it; a Backup re-judges its known master
    /// as if its last advert had just arrived.
    pub fn set_priority(&mut self, now: Instant, effective: u8) {
        let priority = effective.max(1);
        if priority == self.priority || self.state == State::Stopped {
            return;
        }
        self.priority = priority;
        match self.state {
            State::Master => {
                self.send(priority);
                self.adver_timer = Some(now + self.params.advert_interval);
            }
            State::Backup => {
                if let Some((peer, peer_priority)) = self.peer_master {
                    let preempting = matches!(self.down_cause, DownCause::Preempting(..));
                    match self.judge_peer(now, peer, peer_priority) {
                        // Was ignoring this master, now must not: its next
                        // advert could come after our stale timer fires.
                        Ok(reason) if preempting => {
                            self.down_timer = Some(now + self.master_down_interval());
                            self.down_cause = DownCause::Silence;
                            self.reason = reason;
                        }
                        Ok(reason) => self.reason = reason,
                        // Now outrank it: the timer armed by its last
                        // accepted advert is left to run out (§6.4.2).
                        Err(reason) => {
                            self.down_cause = DownCause::Preempting(peer, peer_priority);
                            self.reason = reason;
                        }
                    }
                }
            }
            State::Initialize | State::Fault | State::Leaving | State::Stopped => {}
        }
    }

    /// Applies reloaded settings in place, without a state change: a
    /// master keeps its addresses and advertises the new interval at once;
    /// a backup keeps following the master it knows. VRID, version and
    /// addresses are not changeable here (they need a new router).
    pub fn reconfigure(
        &mut self,
        now: Instant,
        preempt: bool,
        preempt_delay: Duration,
        handover_timeout: Duration,
        advert_interval: Duration,
    ) {
        self.params.preempt = preempt;
        self.params.preempt_delay = preempt_delay;
        self.params.handover_timeout = handover_timeout;
        let (interval, cs) = normalise_interval(self.params.version, advert_interval);
        if interval == self.params.advert_interval {
            return;
        }
        self.params.advert_interval = interval;
        self.interval_cs = cs;
        match self.state {
            State::Master => {
                // Peers learn the new interval from this advert (v3) before
                // their down timers could be computed from the old one.
                self.send(self.priority);
                self.adver_timer = Some(now + interval);
            }
            State::Backup if self.params.version == Version::V2 => {
                // v2 does not learn the master's interval: ours is the one.
                self.master_adver_interval = interval;
            }
            _ => {}
        }
    }

    /// Interface down / hard tracking failure (true) or recovery (false).
    /// Fault never holds the addresses; a Master resigns with priority 0 so
    /// a Backup takes over after Skew_Time rather than Master_Down_Interval.
    /// Recovery goes to Backup, or straight to Master only for the owner.
    pub fn set_fault(&mut self, now: Instant, fault: bool) {
        self.set_fault_because(now, fault, Reason::Fault)
    }

    /// [`Router::set_fault`], naming why (an own fault, or the sync group's).
    pub fn set_fault_because(&mut self, now: Instant, fault: bool, why: Reason) {
        match (fault, self.state) {
            (true, State::Initialize | State::Backup) => self.go_inert(State::Fault, why),
            (true, State::Master) => {
                self.send(PRIORITY_STOP);
                self.go_inert(State::Fault, why);
            }
            // Already resigned; we were stopping anyway, so do not come back.
            (true, State::Leaving) => self.go_inert(State::Stopped, why),
            (false, State::Fault) => {
                if self.priority == PRIORITY_OWNER {
                    self.become_master(now, Reason::Owner);
                } else {
                    self.master_adver_interval = self.params.advert_interval;
                    self.become_backup(now, Reason::FaultCleared);
                }
            }
            _ => {}
        }
    }

    /// Graceful stop. A Master sends priority 0 (RFC 5798 §6.4.3) but, unlike
    /// the RFC, keeps the addresses in Leaving until it hears the new master
    /// or `handover_timeout` passes (make-before-break). Other states stop at once.
    pub fn shutdown(&mut self, now: Instant) {
        match self.state {
            State::Master => {
                self.send(PRIORITY_STOP);
                if self.params.handover_timeout.is_zero() {
                    self.go_inert(State::Stopped, Reason::Shutdown);
                    return;
                }
                self.adver_timer = Some(now + self.params.advert_interval);
                // An absurdly long timeout overflows Instant: wait for a successor forever.
                self.handover_deadline = now.checked_add(self.params.handover_timeout);
                self.transition(State::Leaving, Reason::ShuttingDown);
            }
            State::Initialize | State::Backup | State::Fault => {
                self.go_inert(State::Stopped, Reason::Shutdown)
            }
            State::Leaving | State::Stopped => {}
        }
    }

    /// Sync group: another member became master, so must we. Only acts in Backup.
    pub fn force_master(&mut self, now: Instant) {
        if self.state == State::Backup {
            self.become_master(now, Reason::ForcedMaster);
        }
    }

    /// Sync group: another member left master, so must we. Only acts in
    /// Master; resigns with priority 0 so the peer router's member takes
    /// over after Skew_Time instead of leaving the addresses unowned.
    pub fn force_backup(&mut self, now: Instant) {
        if self.state == State::Master {
            self.send(PRIORITY_STOP);
            self.master_adver_interval = self.params.advert_interval;
            self.become_backup(now, Reason::ForcedBackup);
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn effective_priority(&self) -> u8 {
        self.priority
    }

    /// The current master as far as we know: ourselves while holding the
    /// addresses, the last advertising peer in Backup, otherwise unknown.
    pub fn master(&self) -> Option<IpAddr> {
        match self.state {
            State::Master | State::Leaving => Some(self.params.primary_ip),
            State::Backup => self.peer_master.map(|(ip, _)| ip),
            State::Initialize | State::Fault | State::Stopped => None,
        }
    }

    /// v3: learned from the master's adverts (RFC 5798 §6.4.2); v2 and
    /// Master: our own Advertisement_Interval.
    pub fn master_adver_interval(&self) -> Duration {
        self.master_adver_interval
    }

    /// RFC 5798 §6.1: ((256 − Priority) × Master_Adver_Interval) / 256, in
    /// microseconds rather than the RFC's centiseconds so sub-second
    /// intervals keep their precision; RFC 3768 §6.1 (v2): (256 − Priority)/256 s.
    /// Uses the effective priority.
    pub fn skew_time(&self) -> Duration {
        let base_us = match self.params.version {
            Version::V3 => self.master_adver_interval.as_micros(),
            Version::V2 => 1_000_000,
        };
        let skew_us = (256 - u128::from(self.priority)) * base_us / 256;
        Duration::from_micros(u64::try_from(skew_us).unwrap_or(u64::MAX))
    }

    /// RFC 5798 §6.1: 3 × Master_Adver_Interval + Skew_Time.
    pub fn master_down_interval(&self) -> Duration {
        3 * self.master_adver_interval + self.skew_time()
    }

    pub fn reason(&self) -> &Reason {
        &self.reason
    }

    /// RFC 5798 §6.4.2 "ADVERTISEMENT received" in Backup.
    fn backup_receive(&mut self, now: Instant, src: IpAddr, adv: &Advert) {
        if adv.priority == PRIORITY_STOP {
            // The master resigned: the best Backup (smallest skew) takes over first.
            self.down_timer = Some(now + self.skew_time());
            self.down_cause = DownCause::Resigned(src);
            self.reason = Reason::Resigned { peer: src };
            if self.peer_master.is_some_and(|(ip, _)| ip == src) {
                self.peer_master = None;
            }
            return;
        }
        match self.judge_peer(now, src, adv.priority) {
            Ok(reason) => {
                self.learn_interval(adv);
                self.down_timer = Some(now + self.master_down_interval());
                self.down_cause = DownCause::Silence;
                self.reason = reason;
            }
            // Discard: let Master_Down_Timer run out and preempt.
            Err(reason) => {
                self.down_cause = DownCause::Preempting(src, adv.priority);
                self.reason = reason;
            }
        }
        self.set_peer_master(src, adv.priority);
    }

    /// Whether a Backup accepts `peer` at `priority` as master (Ok: reset the
    /// down timer) or preempts it (Err), with the reason either way.
    /// RFC 5798 §6.4.2: accept if Preempt_Mode is False or the advertised
    /// priority is >= ours; the owner always preempts (§6.1); our
    /// preempt_delay extension accepts until the delay has passed.
    fn judge_peer(&self, now: Instant, peer: IpAddr, priority: u8) -> Result<Reason, Reason> {
        if priority > self.priority {
            return Ok(Reason::HigherPriority { peer, priority });
        }
        if priority == self.priority {
            return Ok(Reason::EqualPriority { peer, priority });
        }
        if self.priority == PRIORITY_OWNER {
            return Err(Reason::Preempting { peer, priority });
        }
        if !self.params.preempt {
            return Ok(Reason::NoPreempt { peer, priority });
        }
        let delay_over = self
            .backup_since
            .and_then(|since| since.checked_add(self.params.preempt_delay))
            .is_some_and(|until| now >= until);
        if delay_over {
            Err(Reason::Preempting { peer, priority })
        } else {
            Ok(Reason::PreemptDelay { peer, priority })
        }
    }

    /// RFC 5798 §6.4.3 "ADVERTISEMENT received" in Master.
    fn master_receive(&mut self, now: Instant, src: IpAddr, adv: &Advert) {
        if adv.priority == PRIORITY_STOP {
            // Another master resigned; answer at once so Backups that just
            // armed Skew_Time timers learn a master is still here.
            self.send(self.priority);
            self.adver_timer = Some(now + self.params.advert_interval);
            return;
        }
        let peer_wins = adv.priority > self.priority
            || (adv.priority == self.priority && ip_key(src) > ip_key(self.params.primary_ip));
        if peer_wins {
            // Deliberate deviation (keepalived `higher_prio_send_advert`,
            // OPERATOR-PAIN 3.2): one last advert at our priority before
            // yielding. After a healed partition the winner may never have
            // heard us; this lower-priority advert makes it Reassert and
            // re-GARP, repairing ARP caches we pointed at ourselves.
            self.send(self.priority);
            self.learn_interval(adv);
            let reason = if adv.priority > self.priority {
                Reason::HigherPriority {
                    peer: src,
                    priority: adv.priority,
                }
            } else {
                Reason::LostTieBreak {
                    peer: src,
                    priority: adv.priority,
                }
            };
            self.become_backup(now, reason);
            self.set_peer_master(src, adv.priority);
        } else {
            // Split brain healing: the loser yields when it hears this advert;
            // the driver re-announces the addresses.
            self.send(self.priority);
            self.adver_timer = Some(now + self.params.advert_interval);
            self.events.push_back(Event::Reassert {
                peer: src,
                peer_priority: adv.priority,
            });
        }
    }

    /// v3 Backups adopt the master's interval (RFC 5798 §6.4.2);
    /// v2 routers all use the configured one (RFC 3768 §7.1 drops mismatches).
    fn learn_interval(&mut self, adv: &Advert) {
        if self.params.version == Version::V3 && adv.interval_cs > 0 {
            self.master_adver_interval = Duration::from_millis(u64::from(adv.interval_cs) * 10);
        }
    }

    fn become_master(&mut self, now: Instant, reason: Reason) {
        self.down_timer = None;
        self.peer_master = None;
        self.master_adver_interval = self.params.advert_interval;
        // RFC 5798 §6.4.1 / §6.4.2: send an ADVERTISEMENT, then (driver) GARP.
        self.send(self.priority);
        self.adver_timer = Some(now + self.params.advert_interval);
        self.transition(State::Master, reason);
    }

    /// Callers set Master_Adver_Interval first: learned when yielding to a
    /// peer, our own after startup / fault.
    fn become_backup(&mut self, now: Instant, reason: Reason) {
        self.adver_timer = None;
        self.handover_deadline = None;
        self.peer_master = None;
        self.backup_since = Some(now);
        self.down_cause = DownCause::Silence;
        self.down_timer = Some(now + self.master_down_interval());
        self.transition(State::Backup, reason);
    }

    /// Fault and Stopped: no timers, no known master, addresses released.
    fn go_inert(&mut self, to: State, reason: Reason) {
        self.adver_timer = None;
        self.down_timer = None;
        self.handover_deadline = None;
        self.peer_master = None;
        self.transition(to, reason);
    }

    /// The single place that changes `state`, so StateChanged and
    /// Claim/Release can only ever be emitted once per actual change.
    fn transition(&mut self, to: State, reason: Reason) {
        let from = self.state;
        self.state = to;
        self.reason = reason;
        self.events
            .push_back(Event::StateChanged { from, to, reason });
        match (from.holds_addresses(), to.holds_addresses()) {
            (false, true) => self.events.push_back(Event::ClaimAddresses),
            (true, false) => self.events.push_back(Event::ReleaseAddresses),
            _ => {}
        }
    }

    fn set_peer_master(&mut self, peer: IpAddr, priority: u8) {
        let changed = self.peer_master.map(|(ip, _)| ip) != Some(peer);
        self.peer_master = Some((peer, priority));
        if changed {
            self.events
                .push_back(Event::PeerMasterSeen { peer, priority });
        }
    }

    fn send(&mut self, priority: u8) {
        self.transmits.push_back(Transmit {
            priority,
            interval_cs: self.interval_cs,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vrrp::sim::{Ledger, Rng};
    use std::net::{Ipv4Addr, Ipv6Addr};

    const SEC: Duration = Duration::from_secs(1);
    const ME: u8 = 5;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    thread_local! {
        /// The address family the scenarios below run in: IPv4 by default,
        /// IPv6 link-local when [`every_scenario_over_ipv6`] replays them.
        static V6: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }

    fn ip(last: u8) -> IpAddr {
        if V6.with(|v| v.get()) {
            IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, u16::from(last)))
        } else {
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
        }
    }

    /// The same fake-clock scenarios with IPv6 link-local router addresses
    /// (VRRPv3 over IPv6 runs the same state machine, RFC 5798 §6). The
    /// VRRPv2-only ones are left out: RFC 3768 is IPv4 only.
    #[test]
    fn every_scenario_over_ipv6() {
        V6.with(|v| v.set(true));
        let scenarios: &[(&str, fn())] = &[
            (
                "skew_and_down_interval_arithmetic",
                skew_and_down_interval_arithmetic,
            ),
            ("skew_uses_effective_priority", skew_uses_effective_priority),
            (
                "startup_as_owner_goes_straight_to_master",
                startup_as_owner_goes_straight_to_master,
            ),
            (
                "startup_as_non_owner_waits_master_down_interval",
                startup_as_non_owner_waits_master_down_interval,
            ),
            (
                "down_timer_expiry_makes_master",
                down_timer_expiry_makes_master,
            ),
            (
                "backup_accepting_adverts_never_takes_over",
                backup_accepting_adverts_never_takes_over,
            ),
            (
                "backup_does_not_preempt_an_equal_priority_master",
                backup_does_not_preempt_an_equal_priority_master,
            ),
            (
                "priority_zero_in_backup_takes_over_after_skew_time",
                priority_zero_in_backup_takes_over_after_skew_time,
            ),
            (
                "priority_zero_in_master_answers_at_once",
                priority_zero_in_master_answers_at_once,
            ),
            (
                "higher_priority_advert_makes_master_yield",
                higher_priority_advert_makes_master_yield,
            ),
            (
                "equal_priority_tie_break_on_primary_address",
                equal_priority_tie_break_on_primary_address,
            ),
            (
                "lower_priority_advert_in_master_reasserts",
                lower_priority_advert_in_master_reasserts,
            ),
            (
                "own_looped_back_and_foreign_adverts_are_ignored",
                own_looped_back_and_foreign_adverts_are_ignored,
            ),
            (
                "preempt_false_keeps_a_lower_priority_master",
                preempt_false_keeps_a_lower_priority_master,
            ),
            (
                "preempt_true_lets_the_down_timer_run_out",
                preempt_true_lets_the_down_timer_run_out,
            ),
            (
                "preempt_delay_accepts_the_lower_master_until_it_has_passed",
                preempt_delay_accepts_the_lower_master_until_it_has_passed,
            ),
            (
                "owner_preempts_even_with_preempt_off",
                owner_preempts_even_with_preempt_off,
            ),
            (
                "v3_backup_learns_the_master_interval",
                v3_backup_learns_the_master_interval,
            ),
            (
                "reconfigure_changes_interval_without_a_transition",
                reconfigure_changes_interval_without_a_transition,
            ),
            (
                "set_priority_in_master_advertises_at_once",
                set_priority_in_master_advertises_at_once,
            ),
            (
                "set_priority_in_backup_rejudges_the_known_master",
                set_priority_in_backup_rejudges_the_known_master,
            ),
            (
                "fault_from_initialize_then_clear_starts_as_backup",
                fault_from_initialize_then_clear_starts_as_backup,
            ),
            ("fault_from_backup", fault_from_backup),
            (
                "fault_from_master_releases_and_resigns",
                fault_from_master_releases_and_resigns,
            ),
            (
                "fault_cleared_owner_goes_master",
                fault_cleared_owner_goes_master,
            ),
            (
                "fault_while_leaving_stops_and_releases",
                fault_while_leaving_stops_and_releases,
            ),
            (
                "shutdown_as_master_holds_addresses_until_the_new_master_is_heard",
                shutdown_as_master_holds_addresses_until_the_new_master_is_heard,
            ),
            (
                "shutdown_as_master_releases_at_the_handover_deadline",
                shutdown_as_master_releases_at_the_handover_deadline,
            ),
            (
                "shutdown_with_zero_handover_timeout_releases_at_once",
                shutdown_with_zero_handover_timeout_releases_at_once,
            ),
            (
                "shutdown_outside_master_stops_silently",
                shutdown_outside_master_stops_silently,
            ),
            ("stopped_is_terminal", stopped_is_terminal),
            (
                "force_master_and_force_backup",
                force_master_and_force_backup,
            ),
            (
                "random_inputs_keep_events_consistent",
                random_inputs_keep_events_consistent,
            ),
        ];
        assert!(ip(1).is_ipv6());
        for (name, f) in scenarios {
            eprintln!("IPv6: {name}");
            f();
        }
    }

    fn params(priority: u8) -> Params {
        Params {
            vrid: 7,
            priority,
            advert_interval: SEC,
            version: Version::V3,
            preempt: true,
            preempt_delay: Duration::ZERO,
            primary_ip: ip(ME),
            handover_timeout: 3 * SEC,
        }
    }

    fn adv(priority: u8, interval_cs: u16) -> Advert {
        Advert {
            version: Version::V3,
            vrid: 7,
            priority,
            interval_cs,
            addrs: vec![ip(100)],
        }
    }

    fn tx(priority: u8) -> Transmit {
        Transmit {
            priority,
            interval_cs: 100,
        }
    }

    fn changed(from: State, to: State, reason: Reason) -> Event {
        Event::StateChanged { from, to, reason }
    }

    fn drain(r: &mut Router) -> (Vec<Transmit>, Vec<Event>) {
        let mut t = Vec::new();
        while let Some(x) = r.poll_transmit() {
            t.push(x);
        }
        let mut e = Vec::new();
        while let Some(x) = r.poll_event() {
            e.push(x);
        }
        (t, e)
    }

    fn quiet(r: &mut Router) {
        assert_eq!(drain(r), (vec![], vec![]), "expected no output");
    }

    /// Started non-owner, drained.
    fn backup(p: Params, t0: Instant) -> Router {
        let mut r = Router::new(p);
        r.startup(t0);
        drain(&mut r);
        assert_eq!(r.state(), State::Backup);
        r
    }

    /// Non-owner that became Master by down-timer expiry; returns the instant.
    fn master(p: Params, t0: Instant) -> (Router, Instant) {
        let mut r = backup(p, t0);
        let t = r.poll_timeout().expect("down timer");
        r.handle_timeout(t);
        drain(&mut r);
        assert_eq!(r.state(), State::Master);
        (r, t)
    }

    /// Fires due timers up to and including `until`, like a driver would.
    /// Returns what was sent, the events, and when addresses were claimed.
    fn run_until(r: &mut Router, until: Instant) -> (Vec<Transmit>, Vec<Event>, Option<Instant>) {
        let mut out = (Vec::new(), Vec::new(), None);
        while let Some(at) = r.poll_timeout().filter(|&t| t <= until) {
            r.handle_timeout(at);
            assert!(
                r.poll_timeout().is_none_or(|t| t > at),
                "timer still due after handling"
            );
            let (t, e) = drain(r);
            if e.contains(&Event::ClaimAddresses) {
                out.2 = out.2.or(Some(at));
            }
            out.0.extend(t);
            out.1.extend(e);
        }
        out
    }

    fn timers(priority: u8, interval: Duration, version: Version) -> (Duration, Duration) {
        let r = Router::new(Params {
            advert_interval: interval,
            version,
            ..params(priority)
        });
        (r.skew_time(), r.master_down_interval())
    }

    #[test]
    fn skew_and_down_interval_arithmetic() {
        // (256 − 100) × 1 s / 256 = 609.375 ms exactly; 3 s + that.
        assert_eq!(timers(100, SEC, Version::V3), (us(609_375), us(3_609_375)));
        // (256 − 200) × 100 ms / 256 = 21.875 ms; 300 ms + that = 321.875 ms.
        assert_eq!(timers(200, ms(100), Version::V3), (us(21_875), us(321_875)));
        // 7.8125 ms truncated to whole microseconds.
        assert_eq!(timers(254, SEC, Version::V3), (us(7_812), us(3_007_812)));
        assert_eq!(timers(1, SEC, Version::V3), (us(996_093), us(3_996_093)));
        // v2: skew is (256 − Priority)/256 s whatever the interval (RFC 3768 §6.1).
        assert_eq!(timers(100, SEC, Version::V2), (us(609_375), us(3_609_375)));
        assert_eq!(
            timers(100, 3 * SEC, Version::V2),
            (us(609_375), us(9_609_375))
        );
        // v3 skew scales with the interval.
        assert_eq!(
            timers(100, 3 * SEC, Version::V3),
            (us(1_828_125), us(10_828_125))
        );
    }

    #[test]
    fn skew_uses_effective_priority() {
        let t0 = Instant::now();
        let mut r = Router::new(Params {
            advert_interval: ms(100),
            ..params(100)
        });
        r.set_priority(t0, 200);
        assert_eq!(r.effective_priority(), 200);
        assert_eq!(r.skew_time(), us(21_875));
        assert_eq!(r.master_down_interval(), us(321_875));
    }

    #[test]
    fn params_are_normalised_to_what_the_wire_carries() {
        let interval = |d, v| {
            let r = Router::new(Params {
                advert_interval: d,
                version: v,
                ..params(100)
            });
            (r.master_adver_interval(), r.interval_cs)
        };
        assert_eq!(interval(ms(1234), Version::V3), (ms(1230), 123));
        assert_eq!(interval(ms(1235), Version::V3), (ms(1240), 124));
        assert_eq!(interval(Duration::ZERO, Version::V3), (ms(10), 1));
        assert_eq!(interval(50 * SEC, Version::V3), (ms(40_950), 4095));
        assert_eq!(interval(ms(1400), Version::V2), (SEC, 100));
        assert_eq!(interval(Duration::ZERO, Version::V2), (SEC, 100));
        assert_eq!(interval(300 * SEC, Version::V2), (255 * SEC, 25_500));
        assert_eq!(Router::new(params(0)).effective_priority(), 1);
    }

    #[test]
    fn startup_as_owner_goes_straight_to_master() {
        let t0 = Instant::now();
        let mut r = Router::new(params(255));
        assert_eq!(r.state(), State::Initialize);
        assert_eq!(r.poll_timeout(), None);
        assert_eq!(r.reason(), &Reason::NotStarted);
        r.startup(t0);
        assert_eq!(
            drain(&mut r),
            (
                vec![tx(255)],
                vec![
                    changed(State::Initialize, State::Master, Reason::Owner),
                    Event::ClaimAddresses
                ]
            )
        );
        assert_eq!(r.master(), Some(ip(ME)));
        assert_eq!(r.poll_timeout(), Some(t0 + SEC));
        r.handle_timeout(t0 + SEC - us(1));
        quiet(&mut r);
        r.handle_timeout(t0 + SEC);
        assert_eq!(drain(&mut r), (vec![tx(255)], vec![]));
        assert_eq!(r.poll_timeout(), Some(t0 + 2 * SEC));
        // A second startup is ignored.
        r.startup(t0 + 2 * SEC);
        quiet(&mut r);
    }

    #[test]
    fn an_upgraded_master_resumes_advertising_at_once() {
        let t0 = Instant::now();
        let mut r = Router::new(params(100));
        r.resume_master(t0);
        assert_eq!(
            drain(&mut r),
            (
                vec![tx(100)],
                vec![
                    changed(State::Initialize, State::Master, Reason::Upgraded),
                    Event::ClaimAddresses
                ]
            )
        );
        assert_eq!(r.poll_timeout(), Some(t0 + SEC));
        // A second resume is ignored, and so is resuming a router already started.
        r.resume_master(t0 + SEC);
        quiet(&mut r);
        let mut b = Router::new(params(100));
        b.startup(t0);
        drain(&mut b);
        b.resume_master(t0);
        quiet(&mut b);
        assert_eq!(b.state(), State::Backup);
    }

    #[test]
    fn startup_as_non_owner_waits_master_down_interval() {
        let t0 = Instant::now();
        let mut r = Router::new(params(100));
        r.startup(t0);
        assert_eq!(
            drain(&mut r),
            (
                vec![],
                vec![changed(State::Initialize, State::Backup, Reason::Startup)]
            )
        );
        assert_eq!(r.poll_timeout(), Some(t0 + us(3_609_375)));
        assert_eq!(r.master(), None);
        assert_eq!(r.master_adver_interval(), SEC);
    }

    #[test]
    fn down_timer_expiry_makes_master() {
        let t0 = Instant::now();
        let mut r = backup(params(100), t0);
        let due = t0 + us(3_609_375);
        r.handle_timeout(due - us(1));
        quiet(&mut r);
        assert_eq!(r.state(), State::Backup);
        r.handle_timeout(due);
        assert_eq!(
            drain(&mut r),
            (
                vec![tx(100)],
                vec![
                    changed(State::Backup, State::Master, Reason::MasterDown),
                    Event::ClaimAddresses
                ]
            )
        );
        assert_eq!(r.poll_timeout(), Some(due + SEC));
        assert_eq!(r.master(), Some(ip(ME)));
        assert_eq!(r.reason().to_string(), "master down timer expired");
    }

    #[test]
    fn backup_accepting_adverts_never_takes_over() {
        let t0 = Instant::now();
        let mut r = backup(params(100), t0);
        r.handle_advert(t0 + ms(500), ip(9), &adv(150, 100));
        assert_eq!(
            drain(&mut r),
            (
                vec![],
                vec![Event::PeerMasterSeen {
                    peer: ip(9),
                    priority: 150
                }]
            )
        );
        assert_eq!(
            r.reason().to_string(),
            format!("higher priority 150 from {}", ip(9))
        );
        for k in 1..60u32 {
            let t = t0 + ms(500) + k * SEC;
            assert!(run_until(&mut r, t).1.is_empty());
            r.handle_advert(t, ip(9), &adv(150, 100));
            // Same master again: no repeated PeerMasterSeen.
            quiet(&mut r);
            assert_eq!(r.poll_timeout(), Some(t + us(3_609_375)));
        }
        assert_eq!(r.state(), State::Backup);
        assert_eq!(r.master(), Some(ip(9)));
    }

    #[test]
    fn backup_does_not_preempt_an_equal_priority_master() {
        // RFC 5798 §6.4.2 accepts priority >= ours, whatever the addresses:
        // the tie-break only settles two simultaneous masters.
        let t0 = Instant::now();
        let mut r = backup(params(100), t0);
        for k in 0..30u32 {
            let t = t0 + k * SEC;
            assert!(run_until(&mut r, t).1.is_empty());
            r.handle_advert(t, ip(3), &adv(100, 100));
        }
        assert_eq!(r.state(), State::Backup);
        assert_eq!(
            r.reason(),
            &Reason::EqualPriority {
                peer: ip(3),
                priority: 100
            }
        );
    }

    #[test]
    fn priority_zero_in_backup_takes_over_after_skew_time() {
        let t0 = Instant::now();
        let mut r = backup(params(100), t0);
        r.handle_advert(t0 + ms(500), ip(9), &adv(150, 100));
        drain(&mut r);
        let t = t0 + ms(1500);
        r.handle_advert(t, ip(9), &adv(0, 100));
        quiet(&mut r);
        assert_eq!(r.poll_timeout(), Some(t + us(609_375)));
        assert_eq!(r.master(), None, "the resigning master is no longer ours");
        assert_eq!(r.reason(), &Reason::Resigned { peer: ip(9) });
        r.handle_timeout(t + us(609_374));
        quiet(&mut r);
        r.handle_timeout(t + us(609_375));
        assert_eq!(
            drain(&mut r),
            (
                vec![tx(100)],
                vec![
                    changed(
                        State::Backup,
                        State::Master,
                        Reason::Resigned { peer: ip(9) }
                    ),
                    Event::ClaimAddresses
                ]
            )
        );
    }

    #[test]
    fn priority_zero_in_master_answers_at_once() {
        let t0 = Instant::now();
        let (mut r, _) = master(params(100), t0);
        let t = t0 + 10 * SEC + ms(300);
        r.handle_advert(t, ip(9), &adv(0, 100));
        assert_eq!(drain(&mut r), (vec![tx(100)], vec![]));
        assert_eq!(r.poll_timeout(), Some(t + SEC));
        assert_eq!(r.state(), State::Master);
    }

    #[test]
    fn higher_priority_advert_makes_master_yield() {
        let t0 = Instant::now();
        let (mut r, _) = master(params(100), t0);
        let t = t0 + 10 * SEC;
        r.handle_advert(t, ip(9), &adv(150, 200));
        let reason = Reason::HigherPriority {
            peer: ip(9),
            priority: 150,
        };
        assert_eq!(
            drain(&mut r),
            (
                // One last advert at our own priority (see master_receive).
                vec![tx(100)],
                vec![
                    changed(State::Master, State::Backup, reason),
                    Event::ReleaseAddresses,
                    Event::PeerMasterSeen {
                        peer: ip(9),
                        priority: 150
                    }
                ]
            )
        );
        // Learned 2 s: 6 s + 156 × 2 s / 256.
        assert_eq!(r.master_adver_interval(), 2 * SEC);
        assert_eq!(r.poll_timeout(), Some(t + us(7_218_750)));
        assert_eq!(r.master(), Some(ip(9)));
    }

    #[test]
    fn equal_priority_tie_break_on_primary_address() {
        let t0 = Instant::now();
        // Peer address higher: we yield. 10.0.0.10 > 10.0.0.9 as integers
        // (but not as strings).
        let (mut r, _) = master(
            Params {
                primary_ip: ip(9),
                ..params(100)
            },
            t0,
        );
        let t = t0 + 10 * SEC;
        r.handle_advert(t, ip(10), &adv(100, 100));
        let (sent, events) = drain(&mut r);
        assert_eq!(sent, vec![tx(100)]);
        assert_eq!(
            events[..2],
            [
                changed(
                    State::Master,
                    State::Backup,
                    Reason::LostTieBreak {
                        peer: ip(10),
                        priority: 100
                    }
                ),
                Event::ReleaseAddresses
            ]
        );

        // Peer address lower: we stay and re-announce.
        let (mut r, _) = master(params(100), t0);
        r.handle_advert(t, ip(3), &adv(100, 100));
        assert_eq!(
            drain(&mut r),
            (
                vec![tx(100)],
                vec![Event::Reassert {
                    peer: ip(3),
                    peer_priority: 100
                }]
            )
        );
        assert_eq!(r.state(), State::Master);
    }

    #[test]
    fn tie_break_compares_ipv6_as_integers() {
        let t0 = Instant::now();
        let me = IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0xff));
        let peer = IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 1, 0));
        let (mut r, _) = master(
            Params {
                primary_ip: me,
                ..params(100)
            },
            t0,
        );
        r.handle_advert(t0 + 10 * SEC, peer, &adv(100, 100));
        assert_eq!(r.state(), State::Backup);
    }

    #[test]
    fn lower_priority_advert_in_master_reasserts() {
        let t0 = Instant::now();
        let (mut r, _) = master(params(100), t0);
        let t = t0 + 10 * SEC + ms(250);
        r.handle_advert(t, ip(9), &adv(50, 100));
        assert_eq!(
            drain(&mut r),
            (
                vec![tx(100)],
                vec![Event::Reassert {
                    peer: ip(9),
                    peer_priority: 50
                }]
            )
        );
        assert_eq!(r.poll_timeout(), Some(t + SEC), "advert timer reset");
        assert_eq!(r.state(), State::Master);
    }

    #[test]
    fn own_looped_back_and_foreign_adverts_are_ignored() {
        let t0 = Instant::now();
        let (mut r, tm) = master(params(100), t0);
        r.handle_advert(tm + ms(1), ip(ME), &adv(100, 100));
        quiet(&mut r);
        r.handle_advert(
            tm + ms(1),
            ip(9),
            &Advert {
                vrid: 8,
                ..adv(200, 100)
            },
        );
        r.handle_advert(
            tm + ms(1),
            ip(9),
            &Advert {
                version: Version::V2,
                ..adv(200, 100)
            },
        );
        quiet(&mut r);
        assert_eq!(r.state(), State::Master);
        assert_eq!(r.poll_timeout(), Some(tm + SEC));
    }

    /// A Backup (priority 200) under a lower-priority master that advertises
    /// every second from t0 + 500 ms; returns when the Backup became master.
    fn lower_master_for(p: Params, secs: u32) -> (Router, Option<Instant>, Instant) {
        let t0 = Instant::now();
        let mut r = backup(p, t0);
        let mut became = None;
        for k in 0..secs {
            let t = t0 + ms(500) + k * SEC;
            became = became.or(run_until(&mut r, t).2);
            r.handle_advert(t, ip(9), &adv(100, 100));
            drain(&mut r);
        }
        (r, became, t0)
    }

    #[test]
    fn preempt_false_keeps_a_lower_priority_master() {
        let p = Params {
            preempt: false,
            ..params(200)
        };
        let (mut r, became, t0) = lower_master_for(p, 60);
        assert_eq!(became, None);
        assert_eq!(r.state(), State::Backup);
        assert_eq!(
            r.reason(),
            &Reason::NoPreempt {
                peer: ip(9),
                priority: 100
            }
        );
        // Once the master goes silent the down timer runs out normally.
        let last = t0 + ms(500) + 59 * SEC;
        assert_eq!(r.poll_timeout(), Some(last + us(3_218_750)));
        let (_, events, claimed) = run_until(&mut r, last + 10 * SEC);
        assert_eq!(
            events[0],
            changed(State::Backup, State::Master, Reason::MasterDown)
        );
        assert_eq!(claimed, Some(last + us(3_218_750)));
    }

    #[test]
    fn preempt_true_lets_the_down_timer_run_out() {
        let (mut r, became, t0) = lower_master_for(params(200), 10);
        // No lower-priority advert resets the startup timer.
        assert_eq!(became, Some(t0 + us(3_218_750)));
        assert_eq!(
            r.reason(),
            &Reason::Preempted {
                peer: ip(9),
                priority: 100
            }
        );
        assert_eq!(
            r.reason().to_string(),
            format!("preempted lower priority 100 from {}", ip(9))
        );
        // The adverts after the takeover drew a re-announcement.
        r.handle_advert(t0 + 20 * SEC, ip(9), &adv(100, 100));
        assert_eq!(
            drain(&mut r).1,
            vec![Event::Reassert {
                peer: ip(9),
                peer_priority: 100
            }]
        );
    }

    #[test]
    fn preempt_delay_accepts_the_lower_master_until_it_has_passed() {
        let p = Params {
            preempt_delay: 10 * SEC,
            ..params(200)
        };
        let t0 = Instant::now();
        let mut r = backup(p, t0);
        let mut became = None;
        for k in 0..20u32 {
            let t = t0 + k * SEC;
            became = became.or(run_until(&mut r, t).2);
            r.handle_advert(t, ip(9), &adv(100, 100));
            drain(&mut r);
            if k == 5 {
                assert_eq!(
                    r.reason(),
                    &Reason::PreemptDelay {
                        peer: ip(9),
                        priority: 100
                    }
                );
            }
            if k == 10 {
                assert_eq!(
                    r.reason(),
                    &Reason::Preempting {
                        peer: ip(9),
                        priority: 100
                    }
                );
            }
        }
        // Adverts up to t0 + 9 s were accepted; from t0 + 10 s on they are
        // ignored, so the timer armed at 9 s expires.
        assert_eq!(became, Some(t0 + 9 * SEC + us(3_218_750)));

        // Re-entering Backup (here after a fault) restarts the delay.
        let t = t0 + 30 * SEC;
        r.set_fault(t, true);
        r.set_fault(t, false);
        drain(&mut r);
        r.handle_advert(t + SEC, ip(9), &adv(100, 100));
        assert_eq!(
            r.poll_timeout(),
            Some(t + SEC + us(3_218_750)),
            "lower master accepted again"
        );
    }

    #[test]
    fn owner_preempts_even_with_preempt_off() {
        let t0 = Instant::now();
        let p = Params {
            preempt: false,
            ..params(100)
        };
        let mut r = backup(p, t0);
        r.handle_advert(t0 + SEC, ip(9), &adv(150, 100));
        r.set_priority(t0 + SEC + ms(100), 255);
        assert_eq!(
            r.reason(),
            &Reason::Preempting {
                peer: ip(9),
                priority: 150
            }
        );
        // Further adverts from the 150 master are ignored; the timer armed
        // at t0 + 1 s (computed at priority 100) runs out.
        for k in 2..4u32 {
            r.handle_advert(t0 + k * SEC, ip(9), &adv(150, 100));
        }
        drain(&mut r);
        let due = t0 + SEC + us(3_609_375);
        assert!(run_until(&mut r, due - us(1)).1.is_empty());
        assert_eq!(
            run_until(&mut r, due).1[0],
            changed(
                State::Backup,
                State::Master,
                Reason::Preempted {
                    peer: ip(9),
                    priority: 150
                }
            )
        );
    }

    #[test]
    fn v3_backup_learns_the_master_interval() {
        let t0 = Instant::now();
        let mut r = backup(params(100), t0);
        r.handle_advert(t0, ip(9), &adv(150, 250));
        assert_eq!(r.master_adver_interval(), ms(2500));
        // 7.5 s + 156 × 2.5 s / 256 = 7.5 s + 1.5234375 s (truncated to µs).
        assert_eq!(r.skew_time(), us(1_523_437));
        assert_eq!(r.master_down_interval(), us(9_023_437));
        assert_eq!(r.poll_timeout(), Some(t0 + us(9_023_437)));
        // Becoming master goes back to our own interval.
        run_until(&mut r, t0 + 20 * SEC);
        assert_eq!(r.master_adver_interval(), SEC);
        assert_eq!(r.poll_transmit(), None);
    }

    #[test]
    fn v2_backup_does_not_learn_the_interval() {
        let t0 = Instant::now();
        let mut r = backup(
            Params {
                version: Version::V2,
                ..params(100)
            },
            t0,
        );
        let v2 = Advert {
            version: Version::V2,
            ..adv(150, 300)
        };
        r.handle_advert(t0, ip(9), &v2);
        assert_eq!(r.master_adver_interval(), SEC);
        assert_eq!(r.poll_timeout(), Some(t0 + us(3_609_375)));
    }

    #[test]
    fn reconfigure_changes_interval_without_a_transition() {
        let t0 = Instant::now();
        let (mut r, tm) = master(params(100), t0);
        let t = tm + ms(300);
        r.reconfigure(t, true, Duration::ZERO, SEC, ms(200));
        let (txs, evs) = drain(&mut r);
        assert_eq!(
            txs,
            vec![Transmit {
                priority: 100,
                interval_cs: 20
            }]
        );
        assert!(evs.is_empty(), "no state change: {evs:?}");
        assert_eq!(r.state(), State::Master);
        assert_eq!(r.poll_timeout(), Some(t + ms(200)));
        // Same interval again: nothing to send.
        r.reconfigure(t, false, SEC, SEC, ms(200));
        assert_eq!(drain(&mut r), (vec![], vec![]));
    }

    #[test]
    fn set_priority_in_master_advertises_at_once() {
        let t0 = Instant::now();
        let (mut r, tm) = master(params(100), t0);
        let t = tm + ms(400);
        r.set_priority(t, 80);
        assert_eq!(drain(&mut r), (vec![tx(80)], vec![]));
        assert_eq!(r.poll_timeout(), Some(t + SEC));
        assert_eq!(r.effective_priority(), 80);
        r.set_priority(t, 80);
        quiet(&mut r);
        // 0 would mean "resigning" on the wire.
        r.set_priority(t, 0);
        assert_eq!(drain(&mut r), (vec![tx(1)], vec![]));
        // A Backup with a higher priority then preempts us as usual.
        r.handle_advert(t + SEC, ip(9), &adv(90, 100));
        assert_eq!(r.state(), State::Backup);
    }

    #[test]
    fn set_priority_in_backup_rejudges_the_known_master() {
        // Lowered below the master we were about to preempt: the stale
        // timer is re-armed so we do not take over from a better master.
        let t0 = Instant::now();
        let mut r = backup(params(200), t0);
        r.handle_advert(t0 + ms(500), ip(9), &adv(150, 100));
        assert_eq!(
            r.reason(),
            &Reason::Preempting {
                peer: ip(9),
                priority: 150
            }
        );
        let t = t0 + SEC;
        r.set_priority(t, 100);
        assert_eq!(
            r.reason(),
            &Reason::HigherPriority {
                peer: ip(9),
                priority: 150
            }
        );
        assert_eq!(r.poll_timeout(), Some(t + us(3_609_375)));
        for k in 1..30u32 {
            let t = t0 + ms(500) + k * SEC;
            assert!(run_until(&mut r, t).1.is_empty());
            r.handle_advert(t, ip(9), &adv(150, 100));
        }
        assert_eq!(r.state(), State::Backup);

        // Raised above the master: its adverts are ignored from then on.
        let t0 = Instant::now();
        let mut r = backup(params(100), t0);
        for k in 0..6u32 {
            r.handle_advert(t0 + k * SEC, ip(9), &adv(150, 100));
        }
        r.set_priority(t0 + ms(5500), 200);
        assert_eq!(
            r.reason(),
            &Reason::Preempting {
                peer: ip(9),
                priority: 150
            }
        );
        for k in 6..9u32 {
            r.handle_advert(t0 + k * SEC, ip(9), &adv(150, 100));
        }
        drain(&mut r);
        // The timer armed by the advert at 5 s (at priority 100) expires.
        let due = t0 + 5 * SEC + us(3_609_375);
        assert!(run_until(&mut r, due - us(1)).1.is_empty());
        assert_eq!(
            run_until(&mut r, due).1[0],
            changed(
                State::Backup,
                State::Master,
                Reason::Preempted {
                    peer: ip(9),
                    priority: 150
                }
            )
        );
    }

    #[test]
    fn fault_from_initialize_then_clear_starts_as_backup() {
        let t0 = Instant::now();
        let mut r = Router::new(params(100));
        r.set_fault(t0, true);
        assert_eq!(
            drain(&mut r),
            (
                vec![],
                vec![changed(State::Initialize, State::Fault, Reason::Fault)]
            )
        );
        r.startup(t0);
        quiet(&mut r);
        assert_eq!(r.poll_timeout(), None);
        r.set_fault(t0 + SEC, false);
        assert_eq!(
            drain(&mut r),
            (
                vec![],
                vec![changed(State::Fault, State::Backup, Reason::FaultCleared)]
            )
        );
        assert_eq!(r.poll_timeout(), Some(t0 + SEC + us(3_609_375)));
    }

    #[test]
    fn a_group_fault_says_so_and_clears_like_any_fault() {
        let t0 = Instant::now();
        let mut r = backup(params(100), t0);
        r.set_fault_because(t0 + SEC, true, Reason::GroupFault);
        assert_eq!(
            drain(&mut r),
            (
                vec![],
                vec![changed(State::Backup, State::Fault, Reason::GroupFault)]
            )
        );
        assert!(r.reason().to_string().contains("sync group"));
        r.set_fault_because(t0 + 2 * SEC, false, Reason::GroupFault);
        assert_eq!(
            drain(&mut r).1,
            vec![changed(State::Fault, State::Backup, Reason::FaultCleared)]
        );
    }

    #[test]
    fn fault_from_backup() {
        let t0 = Instant::now();
        let mut r = backup(params(100), t0);
        r.handle_advert(t0, ip(9), &adv(150, 200));
        drain(&mut r);
        r.set_fault(t0 + SEC, true);
        assert_eq!(
            drain(&mut r),
            (
                vec![],
                vec![changed(State::Backup, State::Fault, Reason::Fault)]
            )
        );
        assert_eq!(r.poll_timeout(), None);
        assert_eq!(r.master(), None);
        // Adverts and timeouts do nothing in Fault; a repeated fault neither.
        r.handle_advert(t0 + 2 * SEC, ip(9), &adv(0, 100));
        r.handle_timeout(t0 + 100 * SEC);
        r.set_fault(t0 + 2 * SEC, true);
        quiet(&mut r);
        // Clearing restarts from our own interval, not the learned one.
        r.set_fault(t0 + 3 * SEC, false);
        assert_eq!(
            drain(&mut r).1,
            vec![changed(State::Fault, State::Backup, Reason::FaultCleared)]
        );
        assert_eq!(r.master_adver_interval(), SEC);
        assert_eq!(r.poll_timeout(), Some(t0 + 3 * SEC + us(3_609_375)));
    }

    #[test]
    fn fault_from_master_releases_and_resigns() {
        let t0 = Instant::now();
        let (mut r, tm) = master(params(100), t0);
        r.set_fault(tm + ms(10), true);
        assert_eq!(
            drain(&mut r),
            (
                vec![tx(0)],
                vec![
                    changed(State::Master, State::Fault, Reason::Fault),
                    Event::ReleaseAddresses
                ]
            )
        );
        assert_eq!(r.poll_timeout(), None);
        // Never straight back to Master for a non-owner.
        r.set_fault(tm + SEC, false);
        assert_eq!(
            drain(&mut r),
            (
                vec![],
                vec![changed(State::Fault, State::Backup, Reason::FaultCleared)]
            )
        );
    }

    #[test]
    fn fault_cleared_owner_goes_master() {
        let t0 = Instant::now();
        let mut r = Router::new(params(255));
        r.startup(t0);
        drain(&mut r);
        r.set_fault(t0 + SEC, true);
        drain(&mut r);
        r.set_fault(t0 + 2 * SEC, false);
        assert_eq!(
            drain(&mut r),
            (
                vec![tx(255)],
                vec![
                    changed(State::Fault, State::Master, Reason::Owner),
                    Event::ClaimAddresses
                ]
            )
        );
    }

    #[test]
    fn fault_while_leaving_stops_and_releases() {
        let t0 = Instant::now();
        let (mut r, tm) = master(params(100), t0);
        r.shutdown(tm);
        drain(&mut r);
        r.set_fault(tm + ms(100), true);
        assert_eq!(
            drain(&mut r),
            (
                vec![],
                vec![
                    changed(State::Leaving, State::Stopped, Reason::Fault),
                    Event::ReleaseAddresses
                ]
            )
        );
        r.set_fault(tm + SEC, false);
        quiet(&mut r);
        assert_eq!(r.state(), State::Stopped);
    }

    #[test]
    fn shutdown_as_master_holds_addresses_until_the_new_master_is_heard() {
        let t0 = Instant::now();
        let (mut r, tm) = master(params(100), t0);
        let t = tm + ms(300);
        r.shutdown(t);
        assert_eq!(
            drain(&mut r),
            (
                vec![tx(0)],
                vec![changed(State::Master, State::Leaving, Reason::ShuttingDown)]
            )
        );
        assert_eq!(r.master(), Some(ip(ME)), "still holding");
        assert_eq!(r.poll_timeout(), Some(t + SEC));
        r.handle_timeout(t + SEC);
        assert_eq!(
            drain(&mut r),
            (vec![tx(0)], vec![]),
            "priority 0 repeated every interval"
        );
        // Another resigning router is not a successor; a second shutdown is a no-op.
        r.handle_advert(t + ms(1200), ip(9), &adv(0, 100));
        r.shutdown(t + ms(1200));
        quiet(&mut r);
        r.handle_advert(t + ms(1500), ip(9), &adv(90, 100));
        assert_eq!(
            drain(&mut r),
            (
                vec![],
                vec![
                    changed(
                        State::Leaving,
                        State::Stopped,
                        Reason::HandoverComplete { peer: ip(9) }
                    ),
                    Event::ReleaseAddresses
                ]
            )
        );
        assert_eq!(r.poll_timeout(), None);
        assert_eq!(r.master(), None);
    }

    #[test]
    fn shutdown_as_master_releases_at_the_handover_deadline() {
        let t0 = Instant::now();
        let (mut r, tm) = master(params(100), t0);
        r.shutdown(tm);
        drain(&mut r);
        let (sent, events, _) = run_until(&mut r, tm + 10 * SEC);
        // Priority 0 at +1 s and +2 s; at +3 s the deadline wins over the advert timer.
        assert_eq!(sent, vec![tx(0), tx(0)]);
        assert_eq!(
            events,
            vec![
                changed(State::Leaving, State::Stopped, Reason::HandoverTimeout),
                Event::ReleaseAddresses
            ]
        );
        assert_eq!(r.poll_timeout(), None);
    }

    #[test]
    fn shutdown_with_zero_handover_timeout_releases_at_once() {
        let t0 = Instant::now();
        let p = Params {
            handover_timeout: Duration::ZERO,
            ..params(100)
        };
        let (mut r, tm) = master(p, t0);
        r.shutdown(tm);
        assert_eq!(
            drain(&mut r),
            (
                vec![tx(0)],
                vec![
                    changed(State::Master, State::Stopped, Reason::Shutdown),
                    Event::ReleaseAddresses
                ]
            )
        );
    }

    #[test]
    fn shutdown_outside_master_stops_silently() {
        let t0 = Instant::now();
        let mut r = Router::new(params(100));
        r.shutdown(t0);
        assert_eq!(
            drain(&mut r),
            (
                vec![],
                vec![changed(State::Initialize, State::Stopped, Reason::Shutdown)]
            )
        );

        let mut r = backup(params(100), t0);
        r.shutdown(t0);
        assert_eq!(
            drain(&mut r),
            (
                vec![],
                vec![changed(State::Backup, State::Stopped, Reason::Shutdown)]
            )
        );

        let mut r = backup(params(100), t0);
        r.set_fault(t0, true);
        drain(&mut r);
        r.shutdown(t0);
        assert_eq!(
            drain(&mut r),
            (
                vec![],
                vec![changed(State::Fault, State::Stopped, Reason::Shutdown)]
            )
        );
    }

    #[test]
    fn stopped_is_terminal() {
        let t0 = Instant::now();
        let mut r = backup(params(100), t0);
        r.shutdown(t0);
        drain(&mut r);
        let t = t0 + SEC;
        r.startup(t);
        r.handle_advert(t, ip(9), &adv(150, 100));
        r.handle_advert(t, ip(9), &adv(0, 100));
        r.handle_timeout(t + 100 * SEC);
        r.set_priority(t, 255);
        r.set_fault(t, true);
        r.set_fault(t, false);
        r.force_master(t);
        r.force_backup(t);
        r.shutdown(t);
        quiet(&mut r);
        assert_eq!(r.state(), State::Stopped);
        assert_eq!(r.poll_timeout(), None);
        assert_eq!(r.effective_priority(), 100);
    }

    #[test]
    fn force_master_and_force_backup() {
        let t0 = Instant::now();
        let mut r = backup(params(100), t0);
        r.force_backup(t0);
        quiet(&mut r);
        r.force_master(t0 + SEC);
        assert_eq!(
            drain(&mut r),
            (
                vec![tx(100)],
                vec![
                    changed(State::Backup, State::Master, Reason::ForcedMaster),
                    Event::ClaimAddresses
                ]
            )
        );
        r.force_master(t0 + SEC);
        quiet(&mut r);
        r.force_backup(t0 + 2 * SEC);
        assert_eq!(
            drain(&mut r),
            (
                vec![tx(0)],
                vec![
                    changed(State::Master, State::Backup, Reason::ForcedBackup),
                    Event::ReleaseAddresses
                ]
            )
        );
        assert_eq!(r.poll_timeout(), Some(t0 + 2 * SEC + us(3_609_375)));
        // Neither acts in Fault or Initialize.
        r.set_fault(t0 + 3 * SEC, true);
        drain(&mut r);
        r.force_master(t0 + 3 * SEC);
        quiet(&mut r);
        let mut r = Router::new(params(100));
        r.force_master(t0);
        quiet(&mut r);
    }

    #[test]
    fn reasons_render_for_operators() {
        let r = Reason::HigherPriority {
            peer: ip(2),
            priority: 150,
        };
        assert_eq!(r.to_string(), "higher priority 150 from 10.0.0.2");
        assert_eq!(Reason::Owner.to_string(), "priority 255 address owner");
        assert_eq!(State::Leaving.to_string(), "leaving");
    }

    /// Random inputs in random order: the event stream must stay consistent
    /// (one StateChanged per change, Claim/Release strictly alternating with
    /// ownership), and handling a due timer must leave none due.
    #[test]
    fn random_inputs_keep_events_consistent() {
        let t0 = Instant::now();
        for seed in 0..200u64 {
            let mut rng = Rng::new(seed);
            let mut r = Router::new(Params {
                priority: [1, 100, 200, 254, 255][rng.below(5) as usize],
                preempt: rng.below(2) == 0,
                preempt_delay: ms(rng.below(3000)),
                ..params(100)
            });
            let mut ledger = Ledger::new();
            let mut now = t0;
            for _ in 0..300 {
                now += ms(rng.below(1500));
                match rng.below(10) {
                    0 => r.startup(now),
                    1..=4 => {
                        let peer = ip([3, 9][rng.below(2) as usize]);
                        let prio = [0, 1, 50, 100, 200, 254, 255][rng.below(7) as usize];
                        r.handle_advert(now, peer, &adv(prio, 1 + rng.below(300) as u16));
                    }
                    5 => r.set_priority(now, rng.below(256) as u8),
                    6 => r.set_fault(now, rng.below(2) == 0),
                    7 => r.force_master(now),
                    8 => r.force_backup(now),
                    _ if rng.below(50) == 0 => r.shutdown(now),
                    _ => {}
                }
                // Drive timers like a driver would.
                while let Some(t) = r.poll_timeout().filter(|&t| t <= now) {
                    r.handle_timeout(t);
                    assert!(
                        r.poll_timeout().is_none_or(|n| n > t),
                        "seed {seed}: timer still due"
                    );
                    for e in drain(&mut r).1 {
                        ledger.apply(&e);
                    }
                }
                for e in drain(&mut r).1 {
                    ledger.apply(&e);
                }
                ledger.assert_matches(&r);
                assert_eq!(
                    r.master().is_some() && r.state().holds_addresses(),
                    r.master() == Some(ip(ME))
                );
            }
        }
    }
}
