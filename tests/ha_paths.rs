//! HA paths in the network-namespace lab that no other lab test reaches: periodic gratuitous
//! ARP (`garp_refresh`), interface tracking (`track_interfaces`), the notify hook timeout,
//! a config reload on the master with no gap in adverts, and VRRPv2 interop with keepalived.
//!
//! What the wire carries is watched from the client's namespace with an AF_PACKET socket
//! (`Capture`): every gratuitous ARP and every VRRP advert, with its arrival time.

mod support;

use std::io::Read;
use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use support::lab::*;
use support::*;
use tandem::admin::status::VrrpStatus;

const VIP: &str = "10.79.0.100";
const VIP_OCTETS: [u8; 4] = [10, 79, 0, 100];

fn vip_addr() -> SocketAddr {
    SocketAddr::from((VIP_OCTETS, 80))
}

/// Switch, lb1/lb2, a client and one HTTP backend.
fn pair(tag: &str) -> Pair {
    Pair::new(tag, "10.79.0", 1)
}

const TCP_CHECK: &str =
    r#"{ check = "tcp", interval = "200ms", timeout = "100ms", rise = 1, fall = 2 }"#;

/// One VIP on eth0 (VRID 53, 100 ms adverts), a listener on it, one backend.
fn node_config(priority: u8, extra_vrrp: &str) -> String {
    Node::new("10.79.0", 1, 53, priority)
        .pool(|p| p.health(TCP_CHECK))
        .vrrp(|v| v.preempt_delay("0s").raw(extra_vrrp))
        .render()
}

fn wait_state(lab: &Lab, label: &str, state: &str, timeout: Duration) -> Duration {
    lab.wait_for(&format!("{label} {state}"), timeout, || {
        lab.vrrp_state(label, "vip1") == state
    })
}

/// The first VRRP instance of a node's status document (None if the daemon does not answer).
fn vrrp_status(lab: &Lab, label: &str) -> Option<VrrpStatus> {
    lab.status(label).and_then(|s| s.vrrp.first().cloned())
}

/// [`vrrp_status`] of a node that must answer.
fn vrrp(lab: &Lab, label: &str) -> VrrpStatus {
    vrrp_status(lab, label).unwrap_or_else(|| panic!("{label}: no VRRP status"))
}

/// Runs `tandem ARGS -s <label's admin socket>` and returns stdout; panics on failure.
fn tandem_cli(lab: &Lab, label: &str, args: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(args)
        .arg("-s")
        .arg(lab.dir.join(format!("{label}.sock")))
        .output()
        .expect("run tandem");
    assert!(
        out.status.success(),
        "tandem {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn sleep_until(t: Instant) {
    let now = Instant::now();
    if t > now {
        std::thread::sleep(t - now);
    }
}

// ---------------------------------------------------------------------------------------------
// Packet capture in a host namespace.

type Frame = (Instant, Vec<u8>);

/// Every frame a host's namespace sees (AF_PACKET, ETH_P_ALL), with arrival times, until
/// stopped or `max` has passed.
struct Capture {
    stop: Arc<AtomicBool>,
    frames: Arc<Mutex<Vec<Frame>>>,
    thread: Option<JoinHandle<()>>,
}

impl Capture {
    fn start(lab: &Lab, host: &str, max: Duration) -> Capture {
        use socket2::{Domain, Protocol, Socket, Type};
        let stop = Arc::new(AtomicBool::new(false));
        let frames = Arc::new(Mutex::new(Vec::new()));
        let (s2, f2) = (stop.clone(), frames.clone());
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = lab.in_ns(host, move || {
            let proto = i32::from((libc::ETH_P_ALL as u16).to_be());
            let sock = Socket::new(Domain::PACKET, Type::RAW, Some(Protocol::from(proto)))
                .expect("AF_PACKET socket");
            sock.set_read_timeout(Some(Duration::from_millis(20)))
                .expect("read timeout");
            let _ = tx.send(());
            let t0 = Instant::now();
            let mut buf = vec![0u8; 4096];
            while !s2.load(Ordering::Relaxed) && t0.elapsed() < max {
                if let Ok(n) = (&sock).read(&mut buf) {
                    let at = Instant::now();
                    if let Ok(mut v) = f2.lock() {
                        v.push((at, buf[..n].to_vec()));
                    }
                }
            }
        });
        rx.recv_timeout(Duration::from_secs(5))
            .expect("capture ready");
        Capture {
            stop,
            frames,
            thread: Some(thread),
        }
    }

    fn snapshot(&self) -> Vec<Frame> {
        self.frames.lock().map(|v| v.clone()).unwrap_or_default()
    }

    fn stop(mut self) -> Vec<Frame> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.snapshot()
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn mac_str(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The sender MAC of a gratuitous ARP *request* for the VIP (sender IP = target IP = VIP).
/// tandem sends a request and a reply per announcement: counting requests counts
/// announcements. Ordinary ARP (the client resolving the VIP, the master answering it) has
/// a different sender or target IP and does not match.
fn garp_sender(frame: &[u8]) -> Option<String> {
    let is_arp = frame.len() >= 42 && frame[12..14] == [0x08, 0x06];
    if is_arp
        && frame[20..22] == [0, 1]
        && frame[28..32] == VIP_OCTETS
        && frame[38..42] == VIP_OCTETS
    {
        Some(mac_str(&frame[22..28]))
    } else {
        None
    }
}

/// Arrival times of gratuitous ARP announcements for the VIP from `mac`.
fn garps_from(frames: &[Frame], mac: &str) -> Vec<Instant> {
    frames
        .iter()
        .filter(|(_, f)| garp_sender(f).as_deref() == Some(mac))
        .map(|(t, _)| *t)
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Advert {
    src: [u8; 4],
    version: u8,
    vrid: u8,
    priority: u8,
}

/// A VRRP advert (IPv4 protocol 112) in an Ethernet frame.
fn vrrp_advert(frame: &[u8]) -> Option<Advert> {
    if frame.len() < 14 + 20 + 8 || frame[12..14] != [0x08, 0x00] || frame[14 + 9] != 112 {
        return None;
    }
    let ihl = usize::from(frame[14] & 0x0f) * 4;
    let v = frame.get(14 + ihl..14 + ihl + 3)?;
    let mut src = [0u8; 4];
    src.copy_from_slice(&frame[26..30]);
    Some(Advert {
        src,
        version: v[0] >> 4,
        vrid: v[1],
        priority: v[2],
    })
}

/// Adverts for VRID 53 from `src`, with arrival times.
fn adverts_from(frames: &[Frame], src: [u8; 4]) -> Vec<(Instant, Advert)> {
    frames
        .iter()
        .filter_map(|(t, f)| vrrp_advert(f).map(|a| (*t, a)))
        .filter(|(_, a)| a.src == src && a.vrid == 53)
        .collect()
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

/// Gaps between consecutive instants.
fn gaps(ts: &[Instant]) -> Vec<Duration> {
    ts.windows(2).map(|w| w[1] - w[0]).collect()
}

fn in_window(ts: &[Instant], from: Instant, to: Instant) -> Vec<Instant> {
    ts.iter()
        .copied()
        .filter(|t| *t >= from && *t < to)
        .collect()
}

/// Checks that the announcements in `[from, to)` are a steady refresh every ~300 ms.
fn assert_refresh(who: &str, ts: &[Instant], from: Instant, to: Instant) {
    let w = in_window(ts, from, to);
    let span = to - from;
    // One every 300 ms; allow for the window's edges and a loaded machine.
    let expected = span.as_millis() / 300;
    assert!(
        w.len() as u128 + 2 >= expected && w.len() as u128 <= expected + 2,
        "{who}: {} refresh announcements in {span:?}, expected about {expected}: gaps {:?} ms",
        w.len(),
        gaps(&w).into_iter().map(ms).collect::<Vec<_>>()
    );
    for g in gaps(&w) {
        assert!(
            g >= Duration::from_millis(200) && g <= Duration::from_millis(500),
            "{who}: refresh gap {g:?}, want ~300 ms: {:?} ms",
            gaps(&w).into_iter().map(ms).collect::<Vec<_>>()
        );
    }
}

fn wait_first_garp(lab: &Lab, cap: &Capture, mac: &str) -> Instant {
    let mut first = None;
    lab.wait_for(
        &format!("first gratuitous ARP from {mac}"),
        Duration::from_secs(3),
        || {
            first = garps_from(&cap.snapshot(), mac).first().copied();
            first.is_some()
        },
    );
    first.expect("first GARP")
}

// ---------------------------------------------------------------------------------------------
// 1. Gratuitous ARP refresh.

#[test]
fn garp_refresh_repeats_announcements_while_master_and_moves_with_the_master() {
    reenter!();
    let p = pair("garp");
    let lab = &p.lab;
    let (mac1, mac2) = (lab.host("lb1").mac.clone(), lab.host("lb2").mac.clone());
    let cap = Capture::start(lab, "client", Duration::from_secs(40));
    let refresh = "garp_refresh = \"300ms\"";
    lab.tandem("lb1", "lb1", &node_config(150, refresh));
    wait_state(lab, "lb1", "master", Duration::from_secs(5));
    lab.tandem("lb2", "lb2", &node_config(100, refresh));
    wait_state(lab, "lb2", "backup", Duration::from_secs(5));
    let first1 = wait_first_garp(lab, &cap, &mac1);
    // The burst (garp_count 5, 100 ms apart) is over 400 ms after the first announcement.
    sleep_until(first1 + Duration::from_millis(3500));

    // Planned switchover: lb2 becomes master, lb1 must stop refreshing.
    let switch = Instant::now();
    tandem_cli(lab, "lb1", &["vrrp", "priority", "vip1", "50"]);
    wait_state(lab, "lb2", "master", Duration::from_secs(3));
    wait_state(lab, "lb1", "backup", Duration::from_secs(2));
    let lb1_backup = Instant::now();
    let first2 = wait_first_garp(lab, &cap, &mac2);
    sleep_until(first2 + Duration::from_millis(3500));
    let end = Instant::now();
    let frames = cap.stop();

    let g1 = garps_from(&frames, &mac1);
    let g2 = garps_from(&frames, &mac2);
    eprintln!(
        "lb1 announcements at {:?} ms; lb2 at {:?} ms (from lb1's first)",
        g1.iter().map(|t| ms(*t - first1)).collect::<Vec<_>>(),
        g2.iter().map(|t| ms(*t - first1)).collect::<Vec<_>>()
    );
    // The burst: 5 announcements within its 400 ms (+ a refresh at 300 ms).
    let burst = in_window(&g1, first1, first1 + Duration::from_millis(450));
    assert!(
        (5..=6).contains(&burst.len()),
        "burst of {} announcements",
        burst.len()
    );
    // Then a refresh every 300 ms for as long as lb1 is master.
    assert_refresh("lb1", &g1, first1 + Duration::from_secs(1), switch);
    // lb1 released the VIP: no announcement from it after it became backup (give the
    // status poll and the 50 ms handover linger 150 ms).
    let late: Vec<u128> = g1
        .iter()
        .filter(|t| **t > lb1_backup + Duration::from_millis(150))
        .map(|t| ms(*t - lb1_backup))
        .collect();
    assert!(
        late.is_empty(),
        "lb1 kept announcing after it left master: at {late:?} ms after"
    );
    // A backup never announces; lb2 started after the switchover, and refreshes in turn.
    assert!(
        g2.iter().all(|t| *t >= switch),
        "lb2 announced the VIP while backup"
    );
    assert_refresh("lb2", &g2, first2 + Duration::from_secs(1), end);
}

#[test]
fn without_garp_refresh_only_the_burst_is_sent() {
    reenter!();
    let p = pair("garp0");
    let lab = &p.lab;
    let mac1 = lab.host("lb1").mac.clone();
    let cap = Capture::start(lab, "client", Duration::from_secs(20));
    // garp_refresh defaults to off; a burst of 3, 200 ms apart.
    lab.tandem(
        "lb1",
        "lb1",
        &node_config(150, "garp_count = 3\ngarp_interval = \"200ms\""),
    );
    wait_state(lab, "lb1", "master", Duration::from_secs(5));
    let first = wait_first_garp(lab, &cap, &mac1);
    sleep_until(first + Duration::from_millis(3500));
    let frames = cap.stop();
    let g = garps_from(&frames, &mac1);
    let rel: Vec<u128> = g.iter().map(|t| ms(*t - first)).collect();
    assert_eq!(g.len(), 3, "announcements at {rel:?} ms");
    for gap in gaps(&g) {
        assert!(
            gap >= Duration::from_millis(150) && gap <= Duration::from_millis(350),
            "burst spacing {rel:?} ms, want 200 ms"
        );
    }
    assert_eq!(lab.vrrp_state("lb1", "vip1"), "master");
}

/// Reloading a master from `garp_refresh = "300ms"` to the default (off) must stop the
/// refresh, as the reload reports "reconfigure in place".
#[test]
fn reload_turning_garp_refresh_off_stops_the_refresh() {
    reenter!(ignored);
    // The instance keeps its refresh timer (`Io::refresh_next`) across the reconfigure and
    // re-arms it with `now + cfg.garp_refresh`: with the new value zero, the timer fires on
    // every turn of the event loop, a busy loop that sends gratuitous ARP as fast as the
    // socket takes it until the node leaves master. (By reading the code, the opposite
    // reload, off → on, does not start the refresh until the next takeover either.)
    let p = pair("garprl");
    let lab = &p.lab;
    let mac1 = lab.host("lb1").mac.clone();
    let cap = Capture::start(lab, "client", Duration::from_secs(20));
    lab.tandem("lb1", "lb1", &node_config(150, "garp_refresh = \"300ms\""));
    wait_state(lab, "lb1", "master", Duration::from_secs(5));
    let first = wait_first_garp(lab, &cap, &mac1);
    sleep_until(first + Duration::from_millis(1500));
    lab.write_config("lb1", &node_config(150, ""));
    let out = tandem_cli(lab, "lb1", &["reload"]);
    assert!(out.contains("vrrp vip1: reconfigure in place"), "{out}");
    let reloaded = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    let frames = cap.stop();
    let after = garps_from(&frames, &mac1)
        .into_iter()
        .filter(|t| *t > reloaded + Duration::from_millis(350))
        .count();
    assert_eq!(lab.vrrp_state("lb1", "vip1"), "master");
    assert_eq!(
        after, 0,
        "{after} gratuitous ARP announcements in the 1.65 s after the refresh was turned off"
    );
}

// ---------------------------------------------------------------------------------------------
// 2. track_interfaces.

#[test]
fn tracked_interface_down_faults_the_instance_and_recovery_preempts() {
    reenter!();
    let p = pair("trkif");
    let lab = &p.lab;
    // No dummy driver here: a veth pair inside lb1 (trk0 is tracked, oth0 is not).
    for (a, b) in [("trk0", "trk0p"), ("oth0", "oth0p")] {
        lab.ip(
            "lb1",
            &["link", "add", a, "type", "veth", "peer", "name", b],
        );
        for dev in [a, b] {
            lab.ip("lb1", &["link", "set", dev, "up"]);
        }
    }
    lab.tandem(
        "lb1",
        "lb1",
        &node_config(150, "track_interfaces = [\"trk0\"]"),
    );
    wait_state(lab, "lb1", "master", Duration::from_secs(5));
    lab.tandem("lb2", "lb2", &node_config(100, ""));
    wait_state(lab, "lb2", "backup", Duration::from_secs(5));

    // An interface that is not tracked changes nothing.
    lab.ip("lb1", &["link", "set", "oth0", "down"]);
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(lab.vrrp_state("lb1", "vip1"), "master");
    assert_eq!(lab.vrrp_state("lb2", "vip1"), "backup");

    let recover = |what: &str| {
        let t = wait_state(lab, "lb1", "master", Duration::from_secs(5));
        wait_state(lab, "lb2", "backup", Duration::from_secs(2));
        assert!(lab.has_addr("lb1", VIP) && !lab.has_addr("lb2", VIP));
        eprintln!("{what}: lb1 master again after {t:?}");
    };
    let fault = |what: &str, change: &dyn Fn()| {
        let t0 = Instant::now();
        change();
        let f = wait_state(lab, "lb1", "fault", Duration::from_secs(2));
        let m = lab.wait_for("lb2 master", Duration::from_secs(2), || {
            lab.vrrp_state("lb2", "vip1") == "master"
        });
        eprintln!(
            "{what}: lb1 fault after {f:?}, lb2 master {m:?} later ({:?} in all)",
            t0.elapsed()
        );
        assert!(
            f < Duration::from_millis(500),
            "{what}: fault took {f:?} (tracking runs every 100 ms and on link events)"
        );
        let s1 = vrrp(lab, "lb1");
        assert_eq!(
            s1.reason, "fault: interface down or tracking failure",
            "{s1:?}"
        );
        // The master resigned (priority 0): lb2 did not wait Master_Down_Interval.
        let s2 = vrrp(lab, "lb2");
        assert_eq!(
            s2.reason, "master 10.79.0.1 resigned (priority 0)",
            "{s2:?}"
        );
        lab.wait_for("VIP on lb2 only", Duration::from_secs(1), || {
            lab.has_addr("lb2", VIP) && !lab.has_addr("lb1", VIP)
        });
        // The fault holds while the interface stays down.
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(lab.vrrp_state("lb1", "vip1"), "fault", "{what}");
        let r = lab
            .in_ns("client", || {
                http_get(vip_addr()).timeout(Duration::from_secs(2)).body()
            })
            .join()
            .expect("client");
        assert!(r.is_ok(), "{what}: VIP served by lb2: {r:?}");
    };

    // Administratively down, then up.
    fault("trk0 admin down", &|| {
        lab.ip("lb1", &["link", "set", "trk0", "down"]);
    });
    lab.ip("lb1", &["link", "set", "trk0", "up"]);
    recover("trk0 admin up");

    // Carrier loss: trk0 stays up but its peer goes down (NO-CARRIER).
    fault("trk0 carrier lost", &|| {
        lab.ip("lb1", &["link", "set", "trk0p", "down"]);
    });
    lab.ip("lb1", &["link", "set", "trk0p", "up"]);
    recover("trk0 carrier back");

    // The tracked interface disappears, then comes back.
    fault("trk0 deleted", &|| {
        lab.ip("lb1", &["link", "del", "trk0"]);
    });
    lab.ip(
        "lb1",
        &[
            "link", "add", "trk0", "type", "veth", "peer", "name", "trk0p",
        ],
    );
    lab.ip("lb1", &["link", "set", "trk0p", "up"]);
    lab.ip("lb1", &["link", "set", "trk0", "up"]);
    recover("trk0 re-created");
    let s = vrrp(lab, "lb1");
    assert_eq!(s.effective_priority, 150, "{s:?}");
}

// ---------------------------------------------------------------------------------------------
// 3. Notify hook timeout.

fn alive(pid: u32) -> bool {
    // A zombie is dead for our purpose: the daemon has not reaped it yet.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s
            .rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z"),
        Err(_) => false,
    }
}

fn read_pid(path: &std::path::Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

#[test]
fn notify_hook_that_hangs_is_killed_after_notify_timeout_and_the_election_goes_on() {
    reenter!();
    let p = pair("ntfto");
    let lab = &p.lab;
    let calls = lab.dir.join("calls.txt");
    let pidfile = lab.dir.join("hook.pid");
    let hung = lab.dir.join("hung");
    // The first call (initialize → backup) hangs for good, as its own process (`exec`); every
    // later call records itself and returns.
    let hook = lab.file(
        "hook.sh",
        &format!(
            "#!/bin/sh\necho \"$1 $2\" >> {calls}\nif [ ! -e {hung} ]; then\n  : > {hung}\n  echo $$ > {pidfile}.tmp && mv {pidfile}.tmp {pidfile}\n  exec sleep 1000\nfi\n",
            calls = calls.display(),
            hung = hung.display(),
            pidfile = pidfile.display(),
        ),
    );
    make_executable(&hook);
    lab.tandem(
        "lb1",
        "lb1",
        &node_config(
            150,
            &format!("notify = \"{hook}\"\nnotify_timeout = \"1500ms\""),
        ),
    );
    let mut pid = None;
    lab.wait_for("the hook's PID", Duration::from_secs(3), || {
        pid = read_pid(&pidfile);
        pid.is_some()
    });
    let pid = pid.expect("pid");
    let started = Instant::now();
    assert!(alive(pid), "hook {pid} running");
    // The election does not wait for the hook: master after Master_Down_Interval while the
    // first hook still hangs.
    wait_state(lab, "lb1", "master", Duration::from_secs(2));
    assert!(
        alive(pid),
        "the hung hook was still running when lb1 became master"
    );
    assert!(lab.has_addr("lb1", VIP));
    // Killed after notify_timeout (1.5 s after it started), not before.
    wait_for(
        &format!("hook {pid} killed"),
        Duration::from_secs(5),
        || !alive(pid),
    );
    let lived = started.elapsed();
    eprintln!("hung hook killed {lived:?} after it wrote its PID (notify_timeout 1.5 s)");
    assert!(
        lived >= Duration::from_millis(1200) && lived <= Duration::from_millis(2500),
        "hook lived {lived:?}, notify_timeout is 1.5 s"
    );
    lab.wait_for("timeout logged", Duration::from_secs(2), || {
        lab.log("lb1")
            .contains("notify hook timed out and was killed")
    });
    let log = lab.log("lb1");
    let line = log
        .lines()
        .find(|l| l.contains("notify hook timed out and was killed"))
        .unwrap_or_default();
    assert!(line.contains("backup") && line.contains("vip1"), "{line}");
    // The queued hook for the master transition runs once the hung one is gone.
    lab.wait_for("the master hook", Duration::from_secs(2), || {
        std::fs::read_to_string(&calls).is_ok_and(|s| s.lines().any(|l| l == "vip1 master"))
    });
    // The daemon keeps running its election: a higher priority peer takes over, and the
    // hook runner reports that too.
    lab.tandem("lb2", "lb2", &node_config(200, ""));
    wait_state(lab, "lb2", "master", Duration::from_secs(5));
    wait_state(lab, "lb1", "backup", Duration::from_secs(2));
    lab.wait_for("the second backup hook", Duration::from_secs(3), || {
        std::fs::read_to_string(&calls).is_ok_and(|s| s.lines().count() >= 3)
    });
    let text = std::fs::read_to_string(&calls).expect("calls");
    assert_eq!(
        text.lines().collect::<Vec<_>>(),
        vec!["vip1 backup", "vip1 master", "vip1 backup"],
        "hook calls in order"
    );
    assert_eq!(
        log.matches("notify hook timed out").count(),
        1,
        "only the hung hook timed out"
    );
}

/// Kills a process this test's hook left behind (by PID, once).
struct KillOnDrop(Option<u32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(pid) = self.0.take() {
            if alive(pid) {
                let _ =
                    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), Signal::SIGKILL);
            }
        }
    }
}

/// A hook is usually a shell script that runs other programs; when it times out, what it
/// started must go too, or every hung `curl` in a hook outlives the kill.
#[test]
fn notify_hook_timeout_also_kills_what_the_hook_started() {
    reenter!(ignored);
    // `spawn_hook_runner` runs the hook in the daemon's process group and, on timeout,
    // `child.kill()`s the hook's PID alone: the shell dies, its `sleep` is reparented to
    // init and keeps running (measured: still alive after the daemon exited).
    // Killing the hook's own process group (setsid/process_group(0) at spawn, then
    // kill(-pgid)) would take its children along.
    let p = pair("ntfkids");
    let lab = &p.lab;
    let (shpid, kidpid, hung) = (
        lab.dir.join("sh.pid"),
        lab.dir.join("kid.pid"),
        lab.dir.join("hung"),
    );
    let hook = lab.file(
        "hook.sh",
        &format!(
            "#!/bin/sh\nif [ ! -e {hung} ]; then\n  : > {hung}\n  sleep 1000 &\n  echo $! > {kid}\n  echo $$ > {sh}\n  wait\nfi\n",
            hung = hung.display(),
            kid = kidpid.display(),
            sh = shpid.display(),
        ),
    );
    make_executable(&hook);
    lab.tandem(
        "lb1",
        "lb1",
        &node_config(
            150,
            &format!("notify = \"{hook}\"\nnotify_timeout = \"1s\""),
        ),
    );
    let mut pids = None;
    lab.wait_for("the hook's PIDs", Duration::from_secs(3), || {
        pids = read_pid(&shpid).zip(read_pid(&kidpid));
        pids.is_some()
    });
    let (sh, kid) = pids.expect("pids");
    let _guard = KillOnDrop(Some(kid));
    lab.wait_for("timeout logged", Duration::from_secs(4), || {
        lab.log("lb1")
            .contains("notify hook timed out and was killed")
    });
    std::thread::sleep(Duration::from_millis(200));
    assert!(!alive(sh), "the hook itself was killed");
    assert!(
        !alive(kid),
        "the hook's child {kid} (sleep 1000) survived the timeout kill"
    );
}

// ---------------------------------------------------------------------------------------------
// 4. Reload on the master: no gap in adverts, no transition.

#[test]
fn reload_on_the_master_keeps_the_vip_and_the_adverts_flowing() {
    reenter!();
    let p = pair("reload");
    let lab = &p.lab;
    let cap = Capture::start(lab, "client", Duration::from_secs(60));
    lab.tandem("lb1", "lb1", &node_config(150, ""));
    wait_state(lab, "lb1", "master", Duration::from_secs(5));
    lab.tandem("lb2", "lb2", &node_config(100, ""));
    wait_state(lab, "lb2", "backup", Duration::from_secs(5));
    // Every address change on lb1, from the kernel.
    lab.spawn(
        "lb1",
        "addrmon",
        &["ip", "-o", "-4", "monitor", "address", "dev", "eth0"],
    );
    std::thread::sleep(Duration::from_millis(500));
    let t1 = vrrp_status(lab, "lb1").map(|v| v.transitions);
    let t2 = vrrp_status(lab, "lb2").map(|v| v.transitions);
    assert!(t1.is_some() && t2.is_some());

    // Two configs that differ in the VRRP instance (priority, GARP burst, hook timeout)
    // and in the data plane (health-check interval), but not in anything that restarts the
    // instance (interface, VRID, addresses, version, unicast peers).
    let a = node_config(150, "");
    let b = node_config(160, "garp_count = 3\nnotify_timeout = \"5s\"")
        .replace("interval = \"200ms\"", "interval = \"300ms\"");
    assert_ne!(a, b);

    // Watch lb2 and lb1's VIP while reloading.
    let stop = Arc::new(AtomicBool::new(false));
    let watch = {
        let stop = stop.clone();
        let sock2 = lab.dir.join("lb2.sock");
        let ns1 = lab.host("lb1").ns.clone();
        std::thread::spawn(move || {
            let (mut states, mut max_age, mut vip_missing) =
                (std::collections::BTreeSet::new(), 0u64, 0usize);
            let t0 = Instant::now();
            while !stop.load(Ordering::Relaxed) && t0.elapsed() < Duration::from_secs(60) {
                if let Some(v) = support::daemon::status_at(&sock2) {
                    let i = v.vrrp.first();
                    states.insert(i.map_or("?", |i| i.state.as_str()).to_string());
                    max_age = max_age.max(
                        i.and_then(|i| i.peers.first())
                            .map_or(0, |p| p.last_seen_ms_ago),
                    );
                }
                let addrs = Command::new("ip")
                    .args(["-n", &ns1, "-br", "-4", "addr", "show", "dev", "eth0"])
                    .output()
                    .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                    .unwrap_or_default();
                if !addrs.contains(&format!("{VIP}/24")) {
                    vip_missing += 1;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            (states, max_age, vip_missing)
        })
    };
    let reload_start = Instant::now();
    for i in 0..6 {
        let (body, prio) = if i % 2 == 0 { (&b, 160) } else { (&a, 150) };
        let generation = lab.status("lb1").expect("status").generation;
        lab.write_config("lb1", body);
        if i < 3 {
            let out = tandem_cli(lab, "lb1", &["reload"]);
            assert!(
                out.contains("vrrp vip1: reconfigure in place"),
                "reload {i}: {out}"
            );
        } else {
            lab.kill("lb1", Signal::SIGHUP);
        }
        lab.wait_for(
            &format!("reload {i} applied, priority {prio} on the wire"),
            Duration::from_secs(3),
            || {
                let s = lab.status("lb1");
                let g = s.as_ref().map(|s| s.generation);
                g == Some(generation + 1)
                    && s.as_ref()
                        .is_some_and(|s| s.vrrp[0].effective_priority == prio)
                    && vrrp_status(lab, "lb2").and_then(|v| v.peers.first().map(|p| p.priority))
                        == Some(prio)
            },
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let reload_end = Instant::now();
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let (states, max_age, vip_missing) = watch.join().expect("watch thread");

    let s1 = vrrp(lab, "lb1");
    let s2 = vrrp(lab, "lb2");
    assert_eq!(s1.state, "master", "{s1:?}");
    assert_eq!(s2.state, "backup", "{s2:?}");
    assert_eq!(
        Some(s1.transitions),
        t1,
        "the master had a transition: {s1:?}"
    );
    assert_eq!(
        Some(s2.transitions),
        t2,
        "the backup had a transition: {s2:?}"
    );
    assert_eq!(
        states,
        ["backup".to_string()].into(),
        "lb2's states during the reloads"
    );
    assert_eq!(vip_missing, 0, "lb1's VIP missing in {vip_missing} samples");
    // 100 ms adverts: a peer heard less than 250 ms ago at every sample.
    assert!(
        max_age < 250,
        "lb2 last heard lb1 {max_age} ms ago during a reload"
    );
    // On the wire: lb1's adverts never paused.
    let frames = cap.snapshot();
    let adv: Vec<Instant> = adverts_from(&frames, [10, 79, 0, 1])
        .into_iter()
        .map(|(t, _)| t)
        .filter(|t| *t >= reload_start && *t <= reload_end)
        .collect();
    let worst = gaps(&adv).into_iter().max().unwrap_or_default();
    eprintln!(
        "6 reloads in {:?}: {} adverts from lb1, largest gap {worst:?}, lb2 last heard ≤ {max_age} ms",
        reload_end - reload_start,
        adv.len()
    );
    let expected = (reload_end - reload_start).as_millis() / 100;
    assert!(
        adv.len() as u128 + 5 >= expected,
        "{} adverts in {:?}",
        adv.len(),
        reload_end - reload_start
    );
    assert!(
        worst < Duration::from_millis(250),
        "gap of {worst:?} in lb1's adverts"
    );
    // The address was never deleted, not even for a moment.
    let mon = lab.log("addrmon");
    assert!(
        !mon.lines()
            .any(|l| l.starts_with("Deleted") && l.contains(VIP)),
        "VIP deleted during a reload:\n{mon}"
    );

    // The monitor does see a deletion (so its silence above means something), and the master
    // puts back an address someone else removed.
    lab.ip("lb1", &["addr", "del", &format!("{VIP}/24"), "dev", "eth0"]);
    lab.wait_for("lb1 re-adds its VIP", Duration::from_secs(2), || {
        lab.has_addr("lb1", VIP)
    });
    lab.wait_for(
        "the monitor saw the deletion",
        Duration::from_secs(2),
        || {
            lab.log("addrmon")
                .lines()
                .any(|l| l.starts_with("Deleted") && l.contains(VIP))
        },
    );
    assert!(
        lab.log("lb1")
            .contains("virtual IP removed by someone else"),
        "re-add logged"
    );
    assert_eq!(lab.vrrp_state("lb1", "vip1"), "master");
    drop(cap);
}

// ---------------------------------------------------------------------------------------------
// 5. keepalived VRRPv2 interop.

fn keepalived_v2(lab: &Lab, host: &str, label: &str, priority: u8) {
    let conf = lab.file(
        &format!("{label}.conf"),
        &format!(
            r#"global_defs {{
    vrrp_version 2
    script_user root
    enable_script_security
}}
vrrp_instance vip1 {{
    state BACKUP
    interface eth0
    virtual_router_id 53
    priority {priority}
    advert_int 1
    virtual_ipaddress {{
        {VIP}/24
    }}
}}
"#
        ),
    );
    let dir = lab.dir.display().to_string();
    lab.spawn(
        host,
        label,
        &[
            "keepalived",
            "-n",
            "-l",
            "-D",
            "-P",
            "-f",
            &conf,
            "-p",
            &format!("{dir}/{label}.pid"),
            "-r",
            &format!("{dir}/{label}.vrrp.pid"),
            "-c",
            &format!("{dir}/{label}.chk.pid"),
        ],
    );
}

/// tandem speaking VRRPv2: whole-second adverts.
fn v2_config(priority: u8) -> String {
    node_config(priority, "version = 2")
        .replace("advert_interval = \"100ms\"", "advert_interval = \"1s\"")
}

fn clear_vip(lab: &Lab, host: &str) {
    let _ = lab.exec(
        host,
        &["ip", "addr", "del", &format!("{VIP}/24"), "dev", "eth0"],
    );
}

#[test]
fn interoperates_with_keepalived_vrrp_v2_both_ways() {
    reenter!();
    assert!(
        Command::new("keepalived").arg("--version").output().is_ok(),
        "THIS TEST NEEDS keepalived (apt install keepalived; .ci/run installs it)"
    );
    let p = pair("kad2");
    let lab = &p.lab;
    let cap = Capture::start(lab, "client", Duration::from_secs(90));

    // tandem 150 vs keepalived 100: tandem is master; kill it, keepalived takes over.
    lab.tandem("lb1", "lb1", &v2_config(150));
    wait_state(lab, "lb1", "master", Duration::from_secs(6));
    keepalived_v2(lab, "lb2", "ka2", 100);
    lab.wait_for("keepalived backup", Duration::from_secs(5), || {
        lab.log("ka2").contains("Entering BACKUP STATE")
    });
    // keepalived's Master_Down_Interval is 3 × 1 s + skew: staying backup past it proves it
    // accepts tandem's VRRPv2 adverts (a v3 advert would be dropped as the wrong version).
    std::thread::sleep(Duration::from_millis(4500));
    assert!(
        !lab.log("ka2").contains("Entering MASTER STATE"),
        "keepalived did not accept tandem's adverts:\n{}",
        lab.log("ka2")
    );
    assert!(!lab.has_addr("lb2", VIP), "keepalived must stay backup");
    assert_eq!(lab.vrrp_state("lb1", "vip1"), "master");
    let killed = Instant::now();
    lab.kill("lb1", Signal::SIGKILL);
    lab.wait_for("keepalived takes over", Duration::from_secs(6), || {
        lab.has_addr("lb2", VIP)
    });
    eprintln!(
        "keepalived took over from tandem after {:?}",
        killed.elapsed()
    );
    lab.kill("ka2", Signal::SIGKILL);
    lab.reap("ka2");
    lab.reap("lb1");
    clear_vip(lab, "lb1");
    clear_vip(lab, "lb2");

    // keepalived 150 vs tandem 100: keepalived is master; tandem stays backup.
    keepalived_v2(lab, "lb1", "ka1", 150);
    lab.wait_for("keepalived master", Duration::from_secs(6), || {
        lab.has_addr("lb1", VIP)
    });
    lab.tandem("lb2", "lb2", &v2_config(100));
    wait_state(lab, "lb2", "backup", Duration::from_secs(5));
    // Past tandem's own Master_Down_Interval (3.6 s).
    std::thread::sleep(Duration::from_millis(4500));
    assert_eq!(lab.vrrp_state("lb2", "vip1"), "backup");
    let s = vrrp(lab, "lb2");
    assert_eq!(s.master.as_deref(), Some("10.79.0.1"), "{s:?}");
    assert_eq!(s.peers[0].address, "10.79.0.1", "{s:?}");
    assert_eq!(s.peers[0].priority, 150, "{s:?}");
    assert_eq!(
        s.peers[0].checksum, "plain",
        "VRRPv2's one checksum form: {s:?}"
    );
    assert_eq!(s.advert_interval_ms, 1000, "{s:?}");
    assert!(!lab.has_addr("lb2", VIP));
    lab.kill("ka1", Signal::SIGKILL);
    let t = wait_state(lab, "lb2", "master", Duration::from_secs(6));
    eprintln!("tandem took over from keepalived after {t:?}");
    assert!(lab.has_addr("lb2", VIP));
    // keepalived's VRRP child outlives its SIGKILLed parent just long enough to resign with
    // a VRRPv2 priority-0 advert: tandem then takes over after Skew_Time ((256 - 100) / 256 s
    // at 1 s adverts), otherwise after Master_Down_Interval (3.6 s).
    let reason = vrrp(lab, "lb2").reason;
    if lab.log("ka1").contains("sent 0 priority") {
        assert_eq!(reason, "master 10.79.0.1 resigned (priority 0)");
        assert!(
            t >= Duration::from_millis(400) && t < Duration::from_millis(1500),
            "takeover {t:?} after keepalived resigned, Skew_Time is 609 ms"
        );
    } else {
        assert_eq!(reason, "master down timer expired");
        assert!(t >= Duration::from_millis(2500), "takeover after {t:?}");
    }
    lab.reap("ka1");
    clear_vip(lab, "lb1");

    // keepalived 150 comes back and preempts the running tandem master.
    let back = Instant::now();
    keepalived_v2(lab, "lb1", "ka1b", 150);
    wait_state(lab, "lb2", "backup", Duration::from_secs(8));
    lab.wait_for("VIP back on keepalived", Duration::from_secs(2), || {
        lab.has_addr("lb1", VIP) && !lab.has_addr("lb2", VIP)
    });
    eprintln!(
        "keepalived preempted tandem {:?} after it started",
        back.elapsed()
    );
    let s = vrrp(lab, "lb2");
    assert_eq!(s.master.as_deref(), Some("10.79.0.1"), "{s:?}");
    let frames = cap.stop();

    // Both speakers sent version 2 on the wire.
    let t1 = adverts_from(&frames, [10, 79, 0, 1]);
    let t2 = adverts_from(&frames, [10, 79, 0, 2]);
    assert!(
        t1.len() >= 5 && t2.len() >= 5,
        "{} / {} adverts",
        t1.len(),
        t2.len()
    );
    for (_, a) in t1.iter().chain(t2.iter()) {
        assert_eq!(a.version, 2, "{a:?}");
    }
}

fn make_executable(path: &str) {
    let ok = Command::new("chmod")
        .args(["+x", path])
        .status()
        .expect("chmod");
    assert!(ok.success(), "chmod +x {path}");
}
