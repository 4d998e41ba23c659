//! The VRRP service: every instance runs on one dedicated OS thread with
//! its own single-threaded tokio runtime, so a data plane saturating its
//! worker threads can never delay an advert or a master-down timer (the
//! keepalived "thread timer expired" split brains). The thread asks for
//! real-time scheduling when allowed and reports timer lateness.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, oneshot};

use super::instance::{self, Cmd, Ctx, Groups, Resume, Tracker};
use super::status::InstanceStatus;
use crate::config::VrrpConfig;
use crate::net;

enum Control {
    Reload(Vec<VrrpConfig>, oneshot::Sender<()>),
    SetPriority(String, Option<u8>, oneshot::Sender<bool>),
    /// Graceful (`false`: hand the VIPs to the peer) or detach (`true`: an
    /// upgraded process has taken over; nothing is sent, nothing removed).
    Shutdown(bool, oneshot::Sender<()>),
}

struct Running {
    cfg: VrrpConfig,
    cmd: mpsc::UnboundedSender<Cmd>,
    status: Arc<Mutex<InstanceStatus>>,
    task: tokio::task::JoinHandle<()>,
}

/// Handle held by the daemon; cheap to query from any thread.
pub struct VrrpService {
    control: mpsc::UnboundedSender<Control>,
    statuses: Arc<Mutex<Vec<Arc<Mutex<InstanceStatus>>>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl VrrpService {
    /// Starts the VRRP thread and every configured instance; `resume` (by
    /// instance name) carries the roles an upgraded-from process held.
    pub fn start(
        cfgs: Vec<VrrpConfig>,
        tracker: Tracker,
        resume: HashMap<String, Resume>,
    ) -> std::io::Result<VrrpService> {
        let (control, mut control_rx) = mpsc::unbounded_channel();
        let statuses: Arc<Mutex<Vec<Arc<Mutex<InstanceStatus>>>>> = Arc::default();
        let st = statuses.clone();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
        let thread = std::thread::Builder::new()
            .name("tandem-vrrp".into())
            .spawn(move || {
                raise_priority();
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                rt.block_on(async move {
                    let ctx = match context(tracker) {
                        Ok(c) => c,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e.to_string()));
                            return;
                        }
                    };
                    let mut running: Vec<Running> = Vec::new();
                    apply(&ctx, &mut running, cfgs, &st, &resume).await;
                    let _ = ready_tx.send(Ok(()));
                    while let Some(c) = control_rx.recv().await {
                        match c {
                            Control::Reload(cfgs, done) => {
                                apply(&ctx, &mut running, cfgs, &st, &HashMap::new()).await;
                                let _ = done.send(());
                            }
                            Control::SetPriority(name, prio, done) => {
                                let found = running
                                    .iter()
                                    .find(|r| r.cfg.name == name)
                                    .map(|r| r.cmd.send(Cmd::SetPriority(prio)).is_ok())
                                    .unwrap_or(false);
                                let _ = done.send(found);
                            }
                            Control::Shutdown(detach, done) => {
                                for r in &running {
                                    let _ = r.cmd.send(if detach {
                                        Cmd::Detach
                                    } else {
                                        Cmd::Shutdown
                                    });
                                }
                                for r in running.drain(..) {
                                    let _ = r.task.await;
                                }
                                let _ = done.send(());
                                return;
                            }
                        }
                    }
                });
            })?;
        match ready_rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(std::io::Error::other(e)),
            Err(_) => return Err(std::io::Error::other("VRRP thread did not start")),
        }
        Ok(VrrpService {
            control,
            statuses,
            thread: Mutex::new(Some(thread)),
        })
    }

    pub fn status(&self) -> Vec<InstanceStatus> {
        self.statuses
            .lock()
            .map(|v| {
                v.iter()
                    .filter_map(|s| s.lock().ok().map(|s| s.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Applies a new instance list: unchanged instances are not touched.
    pub async fn reload(&self, cfgs: Vec<VrrpConfig>) {
        let (tx, rx) = oneshot::channel();
        if self.control.send(Control::Reload(cfgs, tx)).is_ok() {
            let _ = rx.await;
        }
    }

    /// Runtime priority of one instance (None: back to the configured one).
    /// Returns false if no such instance runs.
    pub async fn set_priority(&self, instance: &str, priority: Option<u8>) -> bool {
        let (tx, rx) = oneshot::channel();
        if self
            .control
            .send(Control::SetPriority(instance.to_string(), priority, tx))
            .is_err()
        {
            return false;
        }
        rx.await.unwrap_or(false)
    }

    /// Graceful stop of every instance (make-before-break handover), then
    /// the thread ends.
    pub async fn shutdown(&self) {
        self.stop(false).await
    }

    /// In-place upgrade: the new process runs the election now. Every
    /// instance stops without a priority-0 advert and leaves its addresses.
    pub async fn detach(&self) {
        self.stop(true).await
    }

    async fn stop(&self, detach: bool) {
        let (tx, rx) = oneshot::channel();
        if self.control.send(Control::Shutdown(detach, tx)).is_ok() {
            let _ = rx.await;
        }
        let t = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(t) = t {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }
}

fn context(tracker: Tracker) -> Result<Ctx, net::NetError> {
    let (netlink, conn) = net::netlink_connect()?;
    tokio::spawn(conn);
    let (links, _) = broadcast::channel(1024);
    let (mut watcher, wconn) = net::LinkWatcher::new()?;
    tokio::spawn(wconn);
    let tx = links.clone();
    tokio::spawn(async move {
        while let Some(ev) = watcher.next().await {
            let _ = tx.send(ev);
        }
    });
    Ok(Ctx {
        netlink,
        links,
        tracker,
        groups: Groups::default(),
    })
}

/// Fields whose change needs a new router (new socket, new VRID, new
/// addresses); priority, tracking, interval, preemption and hooks are
/// applied to the running instance without a state change. The reload plan
/// (`runtime::plan`) reports with the same rule.
pub fn needs_restart(a: &VrrpConfig, b: &VrrpConfig) -> bool {
    a.interface != b.interface
        || a.vrid != b.vrid
        || a.virtual_ips != b.virtual_ips
        || a.version != b.version
        || a.unicast_peers != b.unicast_peers
        || a.unicast_source != b.unicast_source
}

async fn apply(
    ctx: &Ctx,
    running: &mut Vec<Running>,
    cfgs: Vec<VrrpConfig>,
    statuses: &Arc<Mutex<Vec<Arc<Mutex<InstanceStatus>>>>>,
    resume: &HashMap<String, Resume>,
) {
    let wanted: HashMap<String, VrrpConfig> =
        cfgs.iter().map(|c| (c.name.clone(), c.clone())).collect();
    // Stop removed or fundamentally changed instances (gracefully), all at
    // once: each handover waits for its successor, and they are independent.
    let mut keep = Vec::new();
    let mut stopping = Vec::new();
    for r in running.drain(..) {
        match wanted.get(&r.cfg.name) {
            Some(w) if !needs_restart(&r.cfg, w) => keep.push(r),
            _ => {
                tracing::info!(instance = %r.cfg.name, "vrrp instance removed or changed: stopping it");
                let _ = r.cmd.send(Cmd::Shutdown);
                stopping.push(r.task);
            }
        }
    }
    for t in stopping {
        let _ = t.await;
    }
    *running = keep;
    for cfg in cfgs {
        if let Some(r) = running.iter_mut().find(|r| r.cfg.name == cfg.name) {
            if r.cfg != cfg {
                let _ = r.cmd.send(Cmd::Reconfigure(Box::new(cfg.clone())));
                r.cfg = cfg;
            }
            continue;
        }
        let (tx, rx) = mpsc::unbounded_channel();
        if resume.get(&cfg.name).is_some_and(|r| r.master) {
            instance::expect_resume();
        }
        let status = Arc::new(Mutex::new(InstanceStatus::new(&cfg)));
        let task = tokio::spawn(instance::run(
            cfg.clone(),
            ctx.clone(),
            rx,
            status.clone(),
            resume.get(&cfg.name).copied(),
        ));
        running.push(Running {
            cfg,
            cmd: tx,
            status,
            task,
        });
    }
    if let Ok(mut s) = statuses.lock() {
        *s = running.iter().map(|r| r.status.clone()).collect();
    }
}

/// Real-time scheduling for the election thread alone where permitted
/// (CAP_SYS_NICE, which the shipped unit grants); otherwise the dedicated
/// thread has to do, and a saturated data plane can make adverts late
/// (`timer_lateness_max_us` shows by how much).
fn raise_priority() {
    let param = libc::sched_param { sched_priority: 10 };
    // SAFETY: plain syscall on the calling thread (tid 0) with a valid parameter.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_RR, &param) };
    if rc == 0 {
        tracing::info!(
            policy = "SCHED_RR",
            priority = 10,
            "election thread runs at real-time priority"
        );
    } else {
        let e = std::io::Error::last_os_error();
        tracing::warn!(error = %e, "election thread stays at normal priority (grant CAP_SYS_NICE for SCHED_RR): adverts may be late under load");
    }
}

/// Resigns (priority 0, see [`super::farewell`]) every instance this node was master of, then
/// removes its virtual IPs from their interfaces: used by
/// `tandem cleanup` (systemd ExecStopPost) after any exit, crash included.
pub async fn cleanup(cfgs: &[VrrpConfig]) -> Result<Vec<String>, net::NetError> {
    let (nl, conn) = net::netlink_connect()?;
    tokio::spawn(conn);
    let mut removed = Vec::new();
    for c in cfgs {
        let Ok(Some(link)) = net::get_link(&nl, &c.interface).await else {
            continue;
        };
        // Before the addresses go: they are the evidence that this node was master.
        match super::farewell::send_farewell(&nl, c, &link).await {
            Ok(0) => {}
            Ok(n) => removed.push(format!(
                "sent priority 0 for {} (vrid {}) on {} to {n} destination(s)",
                c.name, c.vrid, c.interface
            )),
            // Still remove the VIPs: the backup then takes over after Master_Down_Interval.
            Err(e) => removed.push(format!(
                "could not send priority 0 for {} on {}: {e}",
                c.name, c.interface
            )),
        }
        for vip in &c.virtual_ips {
            if net::has_vip(&nl, link.index, vip.addr).await? {
                net::del_vip(&nl, link.index, vip.addr, vip.prefix).await?;
                removed.push(format!("removed {vip} on {}", c.interface));
            }
        }
    }
    Ok(removed)
}
