//! Drives one VRRP instance: the thin I/O shell around [`Router`].
//!
//! Lifecycle: wait for the interface and its source address — the primary
//! IPv4 address, or for an IPv6 instance the link-local address once DAD is
//! done with it (logged once, never a permanent fault) → remove stale copies of our VIPs left by
//! a crash → open the raw VRRP socket and the GARP socket → start the
//! router → loop: feed it received adverts, timer expiries, link events,
//! tracking results and sync-group news; carry out what it asks (send
//! adverts, add/remove VIPs by netlink, gratuitous ARP bursts, notify
//! hooks). On shutdown the router hands over make-before-break and the task
//! ends once it is Stopped.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{broadcast, mpsc};

use super::machine::{Event, Params, Router, State};
use super::packet::{self, Advert, Version};
use super::receive::{Datagram, Policy, Receiver, Verdict};
use super::status::{InstanceStatus, PeerSnapshot};
use crate::config::VrrpConfig;
use crate::net::{self, GarpSender, NaSender, NetEvent, VrrpSocket};

/// Answers "does this pool have a serving backend?" (None: unknown pool).
pub type Tracker = Arc<dyn Fn(&str) -> Option<bool> + Send + Sync>;

/// How often tracked pools are re-read.
const TRACK_EVERY: Duration = Duration::from_millis(100);
/// How long a leaving master keeps its VIPs after hearing its successor.
const HANDOVER_LINGER: Duration = Duration::from_millis(50);
/// How often a missing interface or address is looked for again.
const WAIT_RETRY: Duration = Duration::from_millis(500);

#[derive(Debug)]
pub enum Cmd {
    Shutdown,
    Reconfigure(Box<VrrpConfig>),
    /// Runtime priority (maintenance); None returns to the configured one.
    SetPriority(Option<u8>),
    /// In-place upgrade: the next process has taken over. Stop at once
    /// without resigning and without touching the addresses.
    Detach,
}

/// News shared between members of a sync group.
#[derive(Debug, Clone)]
pub struct GroupMsg {
    pub group: String,
    pub from: String,
    pub kind: GroupKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupKind {
    BecameMaster,
    LeftMaster,
    FaultChanged,
}

/// Sync-group state: which members are in fault, plus a bus for news.
#[derive(Clone)]
pub struct Groups {
    pub bus: broadcast::Sender<GroupMsg>,
    faulted: Arc<Mutex<HashMap<String, HashSet<String>>>>,
}

impl Default for Groups {
    fn default() -> Self {
        Groups {
            bus: broadcast::channel(256).0,
            faulted: Arc::default(),
        }
    }
}

impl Groups {
    fn set_faulted(&self, group: &str, member: &str, faulted: bool) {
        if let Ok(mut m) = self.faulted.lock() {
            let set = m.entry(group.to_string()).or_default();
            if faulted {
                set.insert(member.to_string());
            } else {
                set.remove(member);
            }
        }
    }

    /// Another member of `group` is in fault.
    fn other_faulted(&self, group: &str, me: &str) -> Option<String> {
        self.faulted
            .lock()
            .ok()?
            .get(group)?
            .iter()
            .find(|m| m.as_str() != me)
            .cloned()
    }
}

/// Everything an instance shares with the rest of the VRRP service.
#[derive(Clone)]
pub struct Ctx {
    pub netlink: rtnetlink::Handle,
    pub links: broadcast::Sender<NetEvent>,
    pub tracker: Tracker,
    pub groups: Groups,
}

/// Rate limit for receive-error logs: once per peer and reason per minute
/// (RFC 9568 §7.1 asks for rate-limited logging).
struct LogLimiter(HashMap<(IpAddr, &'static str), Instant>);

impl LogLimiter {
    fn allow(&mut self, peer: IpAddr, reason: &'static str, now: Instant) -> bool {
        match self.0.get(&(peer, reason)) {
            Some(t) if now.duration_since(*t) < Duration::from_secs(60) => false,
            _ => {
                self.0.insert((peer, reason), now);
                true
            }
        }
    }
}

/// Per-instance driver state that outlives one interface incarnation.
struct Driver {
    cfg: VrrpConfig,
    ctx: Ctx,
    status: Arc<Mutex<InstanceStatus>>,
    hooks: HookTx,
    sent: u64,
    transitions: u64,
    /// Receive policy, drop counters and peer table (pure).
    rx: Receiver,
    limiter: LogLimiter,
    lateness_max: Duration,
    shutting_down: bool,
    /// Where adverts go out from on the current interface incarnation.
    source: Option<IpAddr>,
    /// Set at runtime (`tandem vrrp priority`); kept across reloads that do
    /// not change the configured priority.
    priority_override: Option<u8>,
    /// The previous process (in-place upgrade) was Master: resume as Master,
    /// keep the addresses. Used once, by the first interface incarnation.
    resume_master: bool,
    /// Counted in [`RESUMING`] until the first advert is out.
    resume_pending: bool,
}

/// Masters resumed from an in-place upgrade that have not sent their first
/// advert yet. The new process reports ready only once this is zero, so the
/// old process stops advertising only after this one has started: on a slow
/// host, opening sockets and reading links can take longer than the peer's
/// Master_Down_Interval.
static RESUMING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Registers a master about to be resumed (before its task runs).
pub(super) fn expect_resume() {
    RESUMING.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
}

fn resumed() {
    RESUMING.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
}

/// Waits until every resumed master has advertised; false on timeout.
pub async fn wait_resumed(timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while RESUMING.load(std::sync::atomic::Ordering::SeqCst) > 0 {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    true
}

/// What the previous process of an in-place upgrade hands to an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resume {
    pub master: bool,
    pub priority_override: Option<u8>,
}

enum Exit {
    /// Shut down (graceful handover done).
    Stopped,
    /// The interface went away: wait for it again.
    InterfaceGone,
}

/// Runs one instance until it is shut down.
pub async fn run(
    cfg: VrrpConfig,
    ctx: Ctx,
    mut cmds: mpsc::UnboundedReceiver<Cmd>,
    status: Arc<Mutex<InstanceStatus>>,
    resume: Option<Resume>,
) {
    let (hooks, hook_runner) = spawn_hook_runner(&cfg);
    let hook_deadline = cfg.notify_timeout * 4;
    let rx = Receiver::new(policy(&cfg), unspecified(&cfg), 0);
    let mut d = Driver {
        cfg,
        ctx,
        status,
        hooks,
        sent: 0,
        transitions: 0,
        rx,
        limiter: LogLimiter(HashMap::new()),
        lateness_max: Duration::ZERO,
        shutting_down: false,
        source: None,
        priority_override: resume.as_ref().and_then(|r| r.priority_override),
        resume_master: resume.is_some_and(|r| r.master),
        resume_pending: resume.is_some_and(|r| r.master),
    };
    loop {
        let Some((link, primary)) = d.wait_for_interface(&mut cmds).await else {
            break;
        };
        match d.serve(link, primary, &mut cmds).await {
            Exit::Stopped => break,
            Exit::InterfaceGone => continue,
        }
    }
    if std::mem::take(&mut d.resume_pending) {
        resumed();
    }
    d.publish(None);
    // Let queued hooks report the last transitions (stopped included)
    // before the daemon exits, within a bound.
    let Driver { hooks, .. } = d;
    drop(hooks);
    let _ = tokio::time::timeout(hook_deadline, hook_runner).await;
}

/// The receive policy an instance's config calls for.
fn policy(cfg: &VrrpConfig) -> Policy {
    Policy {
        vrid: cfg.vrid,
        version: cfg.version,
        interval_cs: cfg.interval_cs(),
        ipv6: cfg.is_ipv6(),
        vips: cfg.virtual_ips.iter().map(|v| v.addr).collect(),
        unicast_peers: cfg.unicast_peers.clone(),
    }
}

fn unspecified(cfg: &VrrpConfig) -> IpAddr {
    if cfg.is_ipv6() {
        IpAddr::V6(Ipv6Addr::UNSPECIFIED)
    } else {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    }
}

impl Driver {
    fn vip_v6(&self) -> Vec<Ipv6Addr> {
        self.cfg
            .virtual_ips
            .iter()
            .filter_map(|v| match v.addr {
                IpAddr::V6(a) => Some(a),
                IpAddr::V4(_) => None,
            })
            .collect()
    }

    fn vip_v4(&self) -> Vec<Ipv4Addr> {
        self.cfg
            .virtual_ips
            .iter()
            .filter_map(|v| match v.addr {
                IpAddr::V4(a) => Some(a),
                IpAddr::V6(_) => None,
            })
            .collect()
    }

    /// Waits until the interface exists and has a primary IPv4 address (or
    /// the configured unicast source), or for IPv6 a usable link-local
    /// address. Returns None if shut down meanwhile.
    async fn wait_for_interface(
        &mut self,
        cmds: &mut mpsc::UnboundedReceiver<Cmd>,
    ) -> Option<(net::Link, IpAddr)> {
        let mut logged = "";
        loop {
            let link = net::get_link(&self.ctx.netlink, &self.cfg.interface).await;
            let what = match link {
                Ok(Some(link)) => {
                    let primary = match self.cfg.unicast_source {
                        _ if self.cfg.is_ipv6() => {
                            net::link_local_ipv6(&self.ctx.netlink, link.index, &self.vip_v6())
                                .await
                                .map(|a| a.map(IpAddr::V6))
                        }
                        Some(IpAddr::V4(a)) => Ok(Some(IpAddr::V4(a))),
                        _ => net::primary_ipv4(&self.ctx.netlink, link.index, &self.vip_v4())
                            .await
                            .map(|a| a.map(IpAddr::V4)),
                    };
                    match primary {
                        Ok(Some(p)) => {
                            if !logged.is_empty() {
                                tracing::info!(instance = %self.cfg.name, interface = %self.cfg.interface, "interface ready");
                            }
                            return Some((link, p));
                        }
                        Ok(None) if self.cfg.is_ipv6() => {
                            "has no usable IPv6 link-local address yet"
                        }
                        Ok(None) => "has no IPv4 address yet",
                        Err(_) => "cannot be read",
                    }
                }
                Ok(None) => "does not exist yet",
                Err(_) => "cannot be read",
            };
            if logged != what {
                tracing::warn!(instance = %self.cfg.name, interface = %self.cfg.interface, "waiting: interface {what}");
                logged = what;
            }
            self.publish_waiting(what);
            tokio::select! {
                c = cmds.recv() => match c {
                    None | Some(Cmd::Shutdown) | Some(Cmd::Detach) => return None,
                    Some(Cmd::Reconfigure(c)) => self.reconfigured(*c),
                    Some(Cmd::SetPriority(p)) => self.priority_override = p,
                },
                _ = tokio::time::sleep(WAIT_RETRY) => {}
            }
        }
    }

    fn publish_waiting(&self, what: &str) {
        if let Ok(mut s) = self.status.lock() {
            s.waiting = Some(format!("interface {} {what}", self.cfg.interface));
        }
    }

    fn params(&self, primary: IpAddr) -> Params {
        Params {
            vrid: self.cfg.vrid,
            priority: self.cfg.priority,
            advert_interval: self.cfg.advert_interval,
            version: self.version(),
            preempt: self.cfg.preempt,
            preempt_delay: self.cfg.preempt_delay,
            primary_ip: primary,
            handover_timeout: self.cfg.handover_timeout,
        }
    }

    fn version(&self) -> Version {
        self.cfg.version
    }

    async fn serve(
        &mut self,
        link: net::Link,
        primary: IpAddr,
        cmds: &mut mpsc::UnboundedReceiver<Cmd>,
    ) -> Exit {
        let name = self.cfg.name.clone();
        let resume_master = std::mem::take(&mut self.resume_master);
        // Stale VIPs from a crashed run answer ARP next to the real master:
        // remove them before anything else (we start as backup). After an
        // in-place upgrade they are not stale: the previous process held them.
        for vip in self.cfg.virtual_ips.iter().filter(|_| !resume_master) {
            if let Ok(true) = net::has_vip(&self.ctx.netlink, link.index, vip.addr).await {
                tracing::warn!(instance = %name, vip = %vip, "removing a stale copy of our virtual IP");
                let _ = net::del_vip(&self.ctx.netlink, link.index, vip.addr, vip.prefix).await;
            }
        }
        let multicast = self.cfg.unicast_peers.is_empty();
        let opened = match primary {
            IpAddr::V4(p) => VrrpSocket::open(&link.name, link.index, p, multicast),
            IpAddr::V6(p) => VrrpSocket::open_v6(&link.name, link.index, p),
        };
        let sock = match opened {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(instance = %name, error = %e, "cannot open the VRRP socket");
                self.publish_waiting(&format!("cannot open the VRRP socket: {e}"));
                tokio::time::sleep(Duration::from_secs(2)).await;
                return Exit::InterfaceGone;
            }
        };
        let (garp, na) = if self.cfg.is_ipv6() {
            match NaSender::open(&link.name, link.index) {
                Ok(n) => (None, Some(n)),
                Err(e) => {
                    tracing::error!(instance = %name, error = %e, "cannot open the neighbour advertisement socket; failover will wait for neighbour unreachability detection");
                    (None, None)
                }
            }
        } else {
            match GarpSender::open(link.index) {
                Ok(g) => (Some(g), None),
                Err(e) => {
                    tracing::error!(instance = %name, error = %e, "cannot open the gratuitous ARP socket; failover will wait for ARP expiry");
                    (None, None)
                }
            }
        };
        self.rx.set_local(primary, link.index);
        self.source = Some(primary);
        let mut links = self.ctx.links.subscribe();
        let mut group_rx = self.ctx.groups.bus.subscribe();
        let mut router = Router::new(self.params(primary));
        let now = Instant::now();
        if resume_master {
            router.resume_master(now);
        } else {
            router.startup(now);
        }
        tracing::info!(
            instance = %name, interface = %link.name, vrid = self.cfg.vrid,
            priority = self.cfg.priority, source = %primary,
            mode = if multicast { "multicast" } else { "unicast" },
            "vrrp instance started"
        );
        let mut io = Io {
            sock,
            garp,
            na,
            link,
            primary,
            holding: false,
            garp_left: 0,
            garp_next: None,
            renew_next: None,
            refresh_next: None,
        };
        let mut own_fault = !io.link.up;
        let mut track_fault = false;
        let mut group_fault: Option<String> = None;
        if own_fault {
            router.set_fault(now, true);
        }
        let mut next_track = now;
        let mut buf = vec![0u8; 2048];
        loop {
            self.drain(&mut router, &mut io).await;
            self.publish(Some(&router));
            if router.state() == State::Stopped {
                return Exit::Stopped;
            }
            let router_deadline = router.poll_timeout();
            let deadline = [
                router_deadline,
                io.garp_next,
                io.renew_next,
                io.refresh_next,
                Some(next_track),
            ]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
            tokio::select! {
                biased;
                c = cmds.recv() => match c {
                    None | Some(Cmd::Shutdown) => {
                        if !self.shutting_down {
                            self.shutting_down = true;
                            tracing::info!(instance = %name, state = %router.state(), "vrrp instance shutting down");
                            router.shutdown(Instant::now());
                        }
                    }
                    Some(Cmd::Detach) => {
                        tracing::info!(instance = %name, state = %router.state(), "vrrp instance handed to the upgraded process");
                        return Exit::Stopped;
                    }
                    Some(Cmd::Reconfigure(c)) => {
                        self.reconfigured(*c);
                        // The refresh follows the new interval at once: "0s" stops it, a
                        // new value starts or re-times it while the addresses are held.
                        io.refresh_next = (io.holding && !self.cfg.garp_refresh.is_zero())
                            .then(|| Instant::now() + self.cfg.garp_refresh);
                        router.reconfigure(
                            Instant::now(),
                            self.cfg.preempt,
                            self.cfg.preempt_delay,
                            self.cfg.handover_timeout,
                            self.cfg.advert_interval,
                        );
                        next_track = Instant::now();
                    }
                    Some(Cmd::SetPriority(p)) => {
                        tracing::info!(instance = %name, priority = ?p, configured = self.cfg.priority, "priority set at runtime");
                        self.priority_override = p;
                        next_track = Instant::now();
                    }
                },
                r = io.sock.recv(&mut buf) => match r {
                    Ok(rx) => {
                        let now = Instant::now();
                        self.on_packet(&mut router, rx, &buf, now);
                    }
                    Err(e) => {
                        tracing::debug!(instance = %name, error = %e, "vrrp receive error");
                    }
                },
                ev = links.recv() => match ev {
                    Ok(NetEvent::LinkChanged { index, up, .. }) if index == io.link.index && up == own_fault => {
                        own_fault = !up;
                        tracing::warn!(instance = %name, interface = %io.link.name, up, "interface link changed");
                        self.apply_fault(&mut router, own_fault || track_fault, &group_fault);
                    }
                    Ok(NetEvent::LinkRemoved { index, .. }) if index == io.link.index => {
                        tracing::warn!(instance = %name, interface = %io.link.name, "interface removed");
                        router.set_fault(Instant::now(), true);
                        self.drain(&mut router, &mut io).await;
                        return Exit::InterfaceGone;
                    }
                    Ok(NetEvent::LinkChanged { name: ifname, .. }) if self.cfg.track_interfaces.contains(&ifname) => {
                        next_track = Instant::now();
                    }
                    Ok(NetEvent::AddressRemoved { index, addr, .. }) if index == io.link.index && io.holding
                        && self.cfg.virtual_ips.iter().any(|v| v.addr == addr) => {
                        tracing::warn!(instance = %name, vip = %addr, "virtual IP removed by someone else while master: re-adding");
                        io.renew_next = Some(Instant::now());
                    }
                    Ok(NetEvent::Overrun) => next_track = Instant::now(),
                    _ => {}
                },
                g = group_rx.recv() => {
                    if let Ok(msg) = g {
                        self.on_group(&mut router, &msg, &mut group_fault, own_fault || track_fault);
                    }
                },
                _ = tokio::time::sleep_until(deadline.into()) => {
                    let now = Instant::now();
                    if let Some(d) = router_deadline {
                        if now >= d {
                            // How late the election woke up: the number that
                            // tells whether the node can keep its promises.
                            self.lateness_max = self.lateness_max.max(now - d);
                            router.handle_timeout(now);
                        }
                    }
                    if now >= next_track {
                        next_track = now + TRACK_EVERY;
                        let (prio, fault) = self.evaluate_tracking().await;
                        if fault != track_fault {
                            track_fault = fault;
                            self.apply_fault(&mut router, own_fault || track_fault, &group_fault);
                        }
                        if prio != router.effective_priority() && router.state() != State::Fault {
                            tracing::info!(instance = %name, priority = prio, "effective priority changed by tracking");
                            router.set_priority(now, prio);
                        }
                    }
                    io.on_timers(&self.cfg, &self.ctx.netlink, now).await;
                }
            }
        }
    }

    fn apply_fault(
        &mut self,
        router: &mut Router,
        local_fault: bool,
        group_fault: &Option<String>,
    ) {
        if let Some(g) = &self.cfg.sync_group {
            self.ctx.groups.set_faulted(g, &self.cfg.name, local_fault);
            let _ = self.ctx.groups.bus.send(GroupMsg {
                group: g.clone(),
                from: self.cfg.name.clone(),
                kind: GroupKind::FaultChanged,
            });
        }
        router.set_fault_because(
            Instant::now(),
            local_fault || group_fault.is_some(),
            fault_reason(local_fault),
        );
    }

    fn on_group(
        &mut self,
        router: &mut Router,
        msg: &GroupMsg,
        group_fault: &mut Option<String>,
        local_fault: bool,
    ) {
        let Some(g) = &self.cfg.sync_group else {
            return;
        };
        if &msg.group != g || msg.from == self.cfg.name {
            return;
        }
        let now = Instant::now();
        match msg.kind {
            GroupKind::FaultChanged => {
                let other = self.ctx.groups.other_faulted(g, &self.cfg.name);
                if other != *group_fault {
                    *group_fault = other;
                    router.set_fault_because(
                        now,
                        local_fault || group_fault.is_some(),
                        fault_reason(local_fault),
                    );
                }
            }
            GroupKind::BecameMaster if router.state() == State::Backup => router.force_master(now),
            GroupKind::LeftMaster if router.state() == State::Master => router.force_backup(now),
            _ => {}
        }
    }

    /// Takes a reloaded config; a runtime priority survives unless the
    /// configured priority itself changed.
    fn reconfigured(&mut self, cfg: VrrpConfig) {
        if cfg.priority != self.cfg.priority {
            self.priority_override = None;
        }
        self.rx.policy = policy(&cfg);
        self.cfg = cfg;
    }

    fn base_priority(&self) -> u8 {
        self.priority_override.unwrap_or(self.cfg.priority)
    }

    /// Effective priority and hard fault from tracked pools and interfaces.
    async fn evaluate_tracking(&self) -> (u8, bool) {
        let base = self.base_priority();
        let mut prio = base as i32;
        let mut fault = false;
        for t in &self.cfg.track {
            let healthy = (self.ctx.tracker)(&t.pool).unwrap_or(true);
            if !healthy {
                match t.weight {
                    Some(w) => prio += w,
                    None => fault = true,
                }
            }
        }
        for ifname in &self.cfg.track_interfaces {
            match net::get_link(&self.ctx.netlink, ifname).await {
                Ok(Some(l)) if l.up => {}
                _ => fault = true,
            }
        }
        // A tracked owner loses ownership semantics once a track fails.
        let clamped = if prio == 255 && base == 255 {
            255
        } else {
            prio.clamp(1, 254)
        };
        (clamped as u8, fault)
    }

    /// Judges one datagram with the pure receive policy; only an admitted
    /// advert reaches the router. Drops are counted there and logged here.
    fn on_packet(&mut self, router: &mut Router, rx: net::Received, buf: &[u8], now: Instant) {
        let bytes = &buf[..rx.len.min(buf.len())];
        let verdict = match rx.v6 {
            Some(h) => self.rx.receive(
                now,
                &Datagram {
                    ifindex: rx.ifindex,
                    src: IpAddr::V6(h.src),
                    dst: IpAddr::V6(h.dst),
                    ttl: h.hop_limit,
                    payload: bytes,
                },
            ),
            None => self.rx.receive_ipv4(now, rx.ifindex, bytes),
        };
        match verdict {
            Verdict::Own => {}
            Verdict::Admit { src, advert, .. } => router.handle_advert(now, src, &advert),
            Verdict::Drop { src, drop } => {
                let reason = drop.reason();
                if let Some(p) = src {
                    // Other virtual routers on the link are normal, not news.
                    if reason != "vrid" && self.limiter.allow(p, reason, now) {
                        tracing::warn!(instance = %self.cfg.name, peer = %p, reason, detail = %drop, "dropped VRRP packet (logged once a minute per peer and reason)");
                    }
                }
            }
        }
    }

    /// Carries out everything the router queued, in order.
    async fn drain(&mut self, router: &mut Router, io: &mut Io) {
        // Events before adverts: a new master adds its VIPs and sends its
        // gratuitous ARP before the advert that tells a leaving master it
        // may let go, so clients never point at a node without the address.
        loop {
            let mut progressed = false;
            while let Some(ev) = router.poll_event() {
                progressed = true;
                self.on_event(router, io, ev).await;
            }
            while let Some(t) = router.poll_transmit() {
                progressed = true;
                self.transmit(io, t.priority, t.interval_cs).await;
            }
            if !progressed {
                break;
            }
        }
    }

    async fn transmit(&mut self, io: &Io, priority: u8, interval_cs: u16) {
        let adv = Advert {
            version: self.version(),
            vrid: self.cfg.vrid,
            priority,
            interval_cs,
            addrs: packet::advert_order(self.cfg.virtual_ips.iter().map(|v| v.addr)),
        };
        let form = super::farewell::checksum_form(&self.cfg);
        let src = io.primary;
        let dsts = super::farewell::destinations(&self.cfg, src.is_ipv6());
        for dst in dsts {
            let bytes = packet::encode(&adv, src, dst, form);
            match io.sock.send_to(&bytes, dst).await {
                Ok(()) => {
                    self.sent += 1;
                    if std::mem::take(&mut self.resume_pending) {
                        resumed();
                    }
                }
                Err(e) => {
                    tracing::debug!(instance = %self.cfg.name, error = %e, "advert send failed")
                }
            }
        }
    }

    async fn on_event(&mut self, router: &Router, io: &mut Io, ev: Event) {
        let name = self.cfg.name.clone();
        match ev {
            Event::StateChanged { from, to, reason } => {
                self.transitions += 1;
                tracing::info!(instance = %name, from = %from, to = %to, reason = %reason, priority = router.effective_priority(), "vrrp state change");
                let _ = self.hooks.send((from, to, reason.to_string()));
                if let Some(g) = &self.cfg.sync_group {
                    let kind = match (from, to) {
                        (_, State::Master) => Some(GroupKind::BecameMaster),
                        (State::Master, State::Backup) => Some(GroupKind::LeftMaster),
                        _ => None,
                    };
                    let forced = matches!(
                        reason,
                        super::machine::Reason::ForcedMaster | super::machine::Reason::ForcedBackup
                    );
                    if let (Some(kind), false) = (kind, forced) {
                        let _ = self.ctx.groups.bus.send(GroupMsg {
                            group: g.clone(),
                            from: name.clone(),
                            kind,
                        });
                    }
                }
            }
            Event::ClaimAddresses => {
                io.holding = true;
                for vip in &self.cfg.virtual_ips {
                    if let Err(e) = net::add_vip(
                        &self.ctx.netlink,
                        io.link.index,
                        vip.addr,
                        vip.prefix,
                        lifetime(&self.cfg),
                    )
                    .await
                    {
                        tracing::error!(instance = %name, vip = %vip, error = %e, "cannot add virtual IP");
                    }
                }
                tracing::info!(instance = %name, vips = ?self.cfg.virtual_ips.iter().map(|v| v.to_string()).collect::<Vec<_>>(), "virtual IPs claimed");
                io.start_garp_burst(&self.cfg, &self.vip_v4(), &self.vip_v6());
                io.renew_next = lifetime(&self.cfg).map(|l| Instant::now() + l / 3);
                io.refresh_next = (!self.cfg.garp_refresh.is_zero())
                    .then(|| Instant::now() + self.cfg.garp_refresh);
            }
            Event::ReleaseAddresses => {
                if matches!(router.state(), State::Stopped | State::Backup) {
                    // Make-before-break, last step: a successor is master
                    // and has sent its gratuitous ARP (we heard its advert).
                    // Packets still in flight towards us (hosts that have
                    // not processed the GARP yet) are served for a moment
                    // longer instead of being dropped; the successor's
                    // GARP burst outlasts this. A fault releases at once.
                    tokio::time::sleep(HANDOVER_LINGER).await;
                }
                io.holding = false;
                io.garp_left = 0;
                io.garp_next = None;
                io.renew_next = None;
                io.refresh_next = None;
                for vip in &self.cfg.virtual_ips {
                    if let Err(e) =
                        net::del_vip(&self.ctx.netlink, io.link.index, vip.addr, vip.prefix).await
                    {
                        tracing::error!(instance = %name, vip = %vip, error = %e, "cannot remove virtual IP");
                    }
                }
                tracing::info!(instance = %name, "virtual IPs released");
            }
            Event::Reassert {
                peer,
                peer_priority,
            } => {
                tracing::warn!(instance = %name, peer = %peer, peer_priority, "master with lower priority seen (preempted peer or healed split brain): re-asserting with advert and gratuitous ARP");
                if io.holding {
                    io.start_garp_burst(&self.cfg, &self.vip_v4(), &self.vip_v6());
                }
            }
            Event::PeerMasterSeen { peer, priority } => {
                tracing::info!(instance = %name, master = %peer, priority, "master is now {peer}");
            }
        }
    }

    fn publish(&self, router: Option<&Router>) {
        let now = Instant::now();
        let peers: Vec<PeerSnapshot> = self
            .rx
            .peers()
            .iter()
            .map(|(a, p)| PeerSnapshot {
                address: *a,
                priority: p.priority,
                checksum: p.form,
                adverts: p.adverts,
                last_seen_ago: now.duration_since(p.last_seen),
            })
            .collect();
        let Ok(mut s) = self.status.lock() else {
            return;
        };
        s.name = self.cfg.name.clone();
        s.interface = self.cfg.interface.clone();
        s.ipv6 = self.cfg.is_ipv6();
        s.source = self.source;
        s.vrid = self.cfg.vrid;
        s.priority = self.cfg.priority;
        s.priority_override = self.priority_override;
        s.virtual_ips = self.cfg.virtual_ips.clone();
        s.advert_interval = self.cfg.advert_interval;
        s.adverts_sent = self.sent;
        s.adverts_received = self.rx.received();
        s.transitions = self.transitions;
        s.dropped = self.rx.drops().clone();
        s.peers = peers;
        s.timer_lateness_max = self.lateness_max;
        s.waiting = None;
        match router {
            Some(r) => {
                s.state = r.state();
                s.effective_priority = r.effective_priority();
                s.master = r.master();
                s.reason = *r.reason();
                s.master_down_interval = r.master_down_interval();
                s.skew = r.skew_time();
            }
            None => {
                s.state = State::Stopped;
                s.master = None;
            }
        }
    }
}

fn lifetime(cfg: &VrrpConfig) -> Option<Duration> {
    (!cfg.vip_lifetime.is_zero()).then_some(cfg.vip_lifetime)
}

/// Sockets and timers of one interface incarnation.
struct Io {
    sock: VrrpSocket,
    garp: Option<GarpSender>,
    /// IPv6 instances announce with unsolicited neighbour advertisements.
    na: Option<NaSender>,
    link: net::Link,
    primary: IpAddr,
    holding: bool,
    garp_left: u32,
    garp_next: Option<Instant>,
    renew_next: Option<Instant>,
    refresh_next: Option<Instant>,
}

impl Io {
    /// Announces every VIP: gratuitous ARP for IPv4, an unsolicited
    /// neighbour advertisement (override set) for IPv6.
    fn send_garp(&self, vips: &[Ipv4Addr], vips6: &[Ipv6Addr]) {
        if let Some(g) = &self.garp {
            for vip in vips {
                if let Err(e) = g.send(self.link.mac, *vip) {
                    tracing::debug!(vip = %vip, error = %e, "gratuitous ARP send failed");
                }
            }
        }
        if let Some(n) = &self.na {
            for vip in vips6 {
                if let Err(e) = n.send(self.link.mac, *vip) {
                    tracing::debug!(vip = %vip, error = %e, "neighbour advertisement send failed");
                }
            }
        }
    }

    /// First announcement at once, the rest of the burst spaced by garp_interval.
    fn start_garp_burst(&mut self, cfg: &VrrpConfig, vips: &[Ipv4Addr], vips6: &[Ipv6Addr]) {
        self.send_garp(vips, vips6);
        self.garp_left = cfg.garp_count.saturating_sub(1);
        self.garp_next = (self.garp_left > 0).then(|| Instant::now() + cfg.garp_interval);
    }

    async fn on_timers(&mut self, cfg: &VrrpConfig, nl: &rtnetlink::Handle, now: Instant) {
        let (vips, vips6): (Vec<IpAddr>, Vec<IpAddr>) = cfg
            .virtual_ips
            .iter()
            .map(|v| v.addr)
            .partition(|a| a.is_ipv4());
        let vips: Vec<Ipv4Addr> = vips
            .into_iter()
            .filter_map(|a| match a {
                IpAddr::V4(a) => Some(a),
                IpAddr::V6(_) => None,
            })
            .collect();
        let vips6: Vec<Ipv6Addr> = vips6
            .into_iter()
            .filter_map(|a| match a {
                IpAddr::V6(a) => Some(a),
                IpAddr::V4(_) => None,
            })
            .collect();
        if self.garp_next.is_some_and(|t| now >= t) {
            self.send_garp(&vips, &vips6);
            self.garp_left = self.garp_left.saturating_sub(1);
            self.garp_next = (self.garp_left > 0).then(|| now + cfg.garp_interval);
        }
        if self.refresh_next.is_some_and(|t| now >= t) {
            self.send_garp(&vips, &vips6);
            self.refresh_next = (!cfg.garp_refresh.is_zero()).then(|| now + cfg.garp_refresh);
        }
        if self.renew_next.is_some_and(|t| now >= t) && self.holding {
            for vip in &cfg.virtual_ips {
                if let Err(e) =
                    net::add_vip(nl, self.link.index, vip.addr, vip.prefix, lifetime(cfg)).await
                {
                    tracing::error!(vip = %vip, error = %e, "cannot renew virtual IP");
                }
            }
            self.renew_next = lifetime(cfg).map(|l| now + l / 3);
        }
    }
}

/// Runs notify hooks one at a time, in transition order, each bounded by
/// `notify_timeout`; the state machine never waits for them.
type HookTx = mpsc::UnboundedSender<(State, State, String)>;

/// An own fault (link, tracking) wins over the group's in the status reason.
fn fault_reason(local_fault: bool) -> super::machine::Reason {
    if local_fault {
        super::machine::Reason::Fault
    } else {
        super::machine::Reason::GroupFault
    }
}

fn spawn_hook_runner(cfg: &VrrpConfig) -> (HookTx, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(State, State, String)>();
    let Some(prog) = cfg.notify.clone() else {
        let h = tokio::spawn(async move { while rx.recv().await.is_some() {} });
        return (tx, h);
    };
    let (name, vrid, timeout) = (cfg.name.clone(), cfg.vrid, cfg.notify_timeout);
    let h = tokio::spawn(async move {
        while let Some((from, to, reason)) = rx.recv().await {
            let mut cmd = tokio::process::Command::new(&prog);
            cmd.arg(&name)
                .arg(to.to_string())
                .env("TANDEM_INSTANCE", &name)
                .env("TANDEM_STATE", to.to_string())
                .env("TANDEM_PREVIOUS_STATE", from.to_string())
                .env("TANDEM_VRID", vrid.to_string())
                .env("TANDEM_REASON", &reason)
                .stdin(std::process::Stdio::null())
                // Its own process group, so a timeout also kills what the hook started
                // (`sleep 1000 &` in a shell hook would otherwise outlive the daemon).
                .process_group(0)
                .kill_on_drop(true);
            match cmd.spawn() {
                Err(e) => {
                    tracing::error!(instance = %name, hook = %prog.display(), error = %e, "notify hook failed to start")
                }
                Ok(mut child) => match tokio::time::timeout(timeout, child.wait()).await {
                    Ok(Ok(st)) if st.success() => {}
                    Ok(Ok(st)) => {
                        tracing::warn!(instance = %name, hook = %prog.display(), status = %st, state = %to, "notify hook failed")
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(instance = %name, error = %e, "notify hook wait failed")
                    }
                    Err(_) => {
                        if let Some(pid) = child.id() {
                            let _ = nix::sys::signal::killpg(
                                nix::unistd::Pid::from_raw(pid as i32),
                                nix::sys::signal::Signal::SIGKILL,
                            );
                        }
                        let _ = child.kill().await;
                        tracing::warn!(instance = %name, hook = %prog.display(), state = %to, "notify hook timed out and was killed");
                    }
                },
            }
        }
    });
    (tx, h)
}
