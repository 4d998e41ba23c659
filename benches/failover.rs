//! Failover benchmark: tandem vs keepalived in the same network-namespace
//! lab, same machine, same run. Not a test: it measures and prints a table.
//!
//! For each scenario (SIGKILL of the master, link down of the master,
//! graceful stop), advert interval and address family, a client opens a new
//! connection to the VIP every 5 ms (50 ms connect timeout) and we record
//! the gap (first failed probe → first success after it), the failed
//! probes, and the takeover time (event → VIP configured on the backup).
//! keepalived's nodes serve the VIP with a small HTTP responder bound to
//! 0.0.0.0:80 (IPv4) or [::]:80 (IPv6), so its numbers are pure address
//! failover; tandem's include its own proxy.
//!
//! IPv4: VIP 10.77.0.100/24, a VRRPv3 instance over IPv4, listener on
//! 10.77.0.100:80. IPv6: every host dual-stack, VIP 2001:db8:77::100/64, a
//! VRRPv3 instance over IPv6 (adverts from the link-local address to
//! ff02::12), listener on [2001:db8:77::100]:80 in front of an IPv6 backend;
//! keepalived runs an inet6 instance (its family follows the VIP).
//!
//! Run: `bash benches/failover.sh [--runs N]` (root or unshare).
//! `FAILOVER_ONLY` picks cases: comma-separated patterns, each of
//! dash-separated parts: a family (`v4`, `v6`), a scenario (`Kill`,
//! `LinkDown`, `Graceful`) and an advert interval in ms (`100`, `20`), in
//! any order; a part left out matches any, except that a pattern without a
//! family means IPv4 (as before the IPv6 family: `Kill-100`). E.g.
//! `FAILOVER_ONLY=v6`, `FAILOVER_ONLY=v6-100`, `FAILOVER_ONLY=Kill-100,v6-Kill-100`.

#[path = "../tests/support/mod.rs"]
mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use support::lab::v6::*;
use support::lab::*;
use support::*;

const VIP: &str = "10.77.0.100";
const VIP6: &str = "2001:db8:77::100";

#[derive(Clone, Copy, PartialEq, Debug)]
enum Family {
    V4,
    V6,
}

impl Family {
    fn label(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }

    fn vip(self) -> SocketAddr {
        match self {
            Family::V4 => SocketAddr::from(([10, 77, 0, 100], 80)),
            Family::V6 => SocketAddr::new(VIP6.parse().expect("IPv6 VIP"), 80),
        }
    }

    /// Whether `host`'s eth0 holds this family's VIP.
    fn has_vip(self, lab: &Lab, host: &str) -> bool {
        match self {
            Family::V4 => lab.has_addr(host, VIP),
            Family::V6 => has_addr6(lab, host, VIP6),
        }
    }

    /// The lab: the standard IPv4 pair, or the same hosts dual-stack with
    /// the backend listening on [::]:8080.
    fn pair(self) -> Pair {
        match self {
            Family::V4 => Pair::new("fo", "10.77.0", 1),
            Family::V6 => {
                let mut lab = Lab::new("fo6");
                for (name, n) in [("lb1", "1"), ("lb2", "2"), ("client", "50"), ("be1", "21")] {
                    add_dual_host(
                        &mut lab,
                        name,
                        &format!("10.77.0.{n}/24"),
                        &format!("2001:db8:77::{n}/64"),
                    );
                }
                let backends = vec![Backend::spec("web1")
                    .mode(Mode::Plain)
                    .bind("[::]:8080".parse().expect("addr"))
                    .in_ns(&lab, "be1")
                    .start()];
                Pair { lab, backends }
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Impl {
    Tandem,
    Keepalived,
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Scenario {
    Kill,
    LinkDown,
    Graceful,
}

struct Sample {
    gap: Duration,
    failed: usize,
    takeover: Duration,
}

const HEALTH: &str = r#"{ check = "tcp", interval = "1s", timeout = "200ms" }"#;

fn tandem_cfg(fam: Family, priority: u8, interval_ms: u64) -> String {
    let advert = format!("{interval_ms}ms");
    match fam {
        Family::V4 => Node::new("10.77.0", 1, 51, priority)
            .pool(|p| p.health(HEALTH))
            .vrrp(|v| v.advert(&advert))
            .render(),
        Family::V6 => Config::new()
            .pool(
                Pool::new("web")
                    .health(HEALTH)
                    .backend("web1", "[2001:db8:77::21]:8080"),
            )
            .listener(Listener::new("web", &format!("[{VIP6}]:80"), "web"))
            .vrrp(
                Vrrp::new("vip1", 51, priority)
                    .advert(&advert)
                    .vip(&format!("{VIP6}/64")),
            )
            .render(),
    }
}

fn keepalived_cfg(fam: Family, priority: u8, interval_ms: u64) -> String {
    // keepalived picks the instance's family from its addresses: an IPv6
    // VIP makes it an inet6 instance (adverts from eth0's link-local).
    let vip = match fam {
        Family::V4 => format!("{VIP}/24"),
        Family::V6 => format!("{VIP6}/64"),
    };
    format!(
        "global_defs {{\n  vrrp_version 3\n}}\nvrrp_instance vip1 {{\n  state BACKUP\n  interface eth0\n  virtual_router_id 51\n  priority {priority}\n  advert_int {:.2}\n  virtual_ipaddress {{\n    {vip}\n  }}\n}}\n",
        interval_ms as f64 / 1000.0
    )
}

fn start(lab: &Lab, fam: Family, imp: Impl, node: &str, priority: u8, interval_ms: u64) {
    match imp {
        Impl::Tandem => {
            lab.tandem(node, node, &tandem_cfg(fam, priority, interval_ms));
        }
        Impl::Keepalived => {
            let conf = lab.file(
                &format!("{node}.conf"),
                &keepalived_cfg(fam, priority, interval_ms),
            );
            let d = lab.dir.display().to_string();
            lab.spawn(
                node,
                node,
                &[
                    "keepalived",
                    "-n",
                    "-l",
                    "-D",
                    "-P",
                    "-f",
                    &conf,
                    "-p",
                    &format!("{d}/{node}.pid"),
                    "-r",
                    &format!("{d}/{node}.vrrp.pid"),
                    "-c",
                    &format!("{d}/{node}.chk.pid"),
                ],
            );
        }
    }
}

/// SIGKILL of keepalived must hit its VRRP child too, or the child sends a
/// goodbye advert and the "crash" is really a graceful stop.
fn kill_node(lab: &Lab, imp: Impl, node: &str, sig: Signal) {
    if imp == Impl::Keepalived && sig == Signal::SIGKILL {
        if let Ok(pid) = std::fs::read_to_string(lab.dir.join(format!("{node}.vrrp.pid"))) {
            if let Ok(pid) = pid.trim().parse::<i32>() {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
    }
    lab.kill(node, sig);
}

fn run_once(fam: Family, imp: Impl, sc: Scenario, interval_ms: u64) -> Sample {
    let pair = fam.pair();
    let lab = &pair.lab;
    let responder = |host: &str| match fam {
        Family::V4 => Backend::in_lab(lab, host, 80, host),
        // [::]:80 takes IPv6 (and IPv4) connections to any address, the VIP too.
        Family::V6 => Backend::spec(host)
            .mode(Mode::Plain)
            .bind("[::]:80".parse().expect("addr"))
            .in_ns(lab, host)
            .start(),
    };
    let mut responders: Vec<Backend> = if imp == Impl::Keepalived {
        vec![responder("lb1"), responder("lb2")]
    } else {
        Vec::new()
    };
    start(lab, fam, imp, "lb1", 150, interval_ms);
    lab.wait_for("lb1 holds the VIP", Duration::from_secs(10), || {
        fam.has_vip(lab, "lb1")
    });
    start(lab, fam, imp, "lb2", 100, interval_ms);
    std::thread::sleep(Duration::from_millis(interval_ms * 10 + 500));
    assert!(
        !fam.has_vip(lab, "lb2"),
        "{} {imp:?}: lb2 must be backup",
        fam.label()
    );
    let vip = fam.vip();
    let client = ProbeClient::start_with_timeout(
        lab,
        "client",
        vip,
        Duration::from_millis(5),
        Duration::from_millis(50),
        4000,
    );
    std::thread::sleep(Duration::from_millis(500));
    let t = Instant::now();
    match sc {
        Scenario::Kill => {
            kill_node(lab, imp, "lb1", Signal::SIGKILL);
            // A crashed node serves nothing: with keepalived the proxy is a
            // separate process, so stop lb1's responder as well.
            if !responders.is_empty() {
                drop(responders.remove(0));
            }
        }
        Scenario::LinkDown => lab.cable("lb1", false),
        Scenario::Graceful => kill_node(lab, imp, "lb1", Signal::SIGTERM),
    }
    let takeover = lab.wait_for("lb2 holds the VIP", Duration::from_secs(10), || {
        fam.has_vip(lab, "lb2")
    });
    std::thread::sleep(Duration::from_millis(1500));
    let probes = client.stop();
    let (failed, gap) = outage(&probes, t);
    if std::env::var_os("FAILOVER_VERBOSE").is_some() {
        for p in probes.iter().filter(|p| !p.ok && p.at >= t) {
            eprintln!(
                "  {} {imp:?} {sc:?} {interval_ms}ms: +{:.1} ms {}",
                fam.label(),
                (p.at - t).as_secs_f64() * 1000.0,
                p.body
            );
        }
    }
    Sample {
        gap,
        failed,
        takeover,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        0.0
    } else {
        v[v.len() / 2]
    }
}

/// Whether `FAILOVER_ONLY` (see the module docs) selects this case.
fn selected(only: Option<&str>, fam: Family, sc: Scenario, interval: u64) -> bool {
    let Some(only) = only else {
        return true;
    };
    only.split(',').map(str::trim).any(|pattern| {
        let mut family = None;
        let mut ok = true;
        for part in pattern.split('-').filter(|p| !p.is_empty()) {
            let p = part.to_ascii_lowercase();
            if p == "v4" || p == "ipv4" {
                family = Some(Family::V4);
            } else if p == "v6" || p == "ipv6" {
                family = Some(Family::V6);
            } else if let Ok(ms) = p.parse::<u64>() {
                ok &= ms == interval;
            } else if ["kill", "linkdown", "graceful"].contains(&p.as_str()) {
                ok &= p == format!("{sc:?}").to_ascii_lowercase();
            } else {
                panic!("FAILOVER_ONLY: unknown part {part:?} in {pattern:?} (want v4, v6, Kill, LinkDown, Graceful or an interval in ms)");
            }
        }
        ok && family.unwrap_or(Family::V4) == fam
    })
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // `cargo bench` passes --bench; re-runs under unshare pass nothing.
    if !enter_with(&args[1..].iter().map(|s| s.as_str()).collect::<Vec<_>>()) {
        return;
    }
    let runs: usize = args
        .iter()
        .position(|a| a == "--runs")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let have_keepalived = std::process::Command::new("keepalived")
        .arg("--version")
        .output()
        .is_ok();
    if !have_keepalived {
        eprintln!("keepalived is not installed (apt install keepalived): measuring tandem only");
    }
    let mut rows = Vec::new();
    let only: Option<String> = std::env::var("FAILOVER_ONLY").ok();
    for interval in [100u64, 20] {
        for sc in [Scenario::Kill, Scenario::LinkDown, Scenario::Graceful] {
            let mut per: Vec<(Family, Impl, Vec<Sample>)> = Vec::new();
            for fam in [Family::V4, Family::V6] {
                if !selected(only.as_deref(), fam, sc, interval) {
                    continue;
                }
                per.push((fam, Impl::Tandem, Vec::new()));
                if have_keepalived {
                    per.push((fam, Impl::Keepalived, Vec::new()));
                }
            }
            for _ in 0..runs {
                // Interleave implementations and families so machine noise
                // hits them all.
                for (fam, imp, samples) in per.iter_mut() {
                    samples.push(run_once(*fam, *imp, sc, interval));
                }
            }
            for (fam, imp, samples) in per {
                let gaps: Vec<f64> = samples
                    .iter()
                    .map(|s| s.gap.as_secs_f64() * 1000.0)
                    .collect();
                let fails: Vec<f64> = samples.iter().map(|s| s.failed as f64).collect();
                let takes: Vec<f64> = samples
                    .iter()
                    .map(|s| s.takeover.as_secs_f64() * 1000.0)
                    .collect();
                let row = format!(
                    "| {:<9} | {:<6} | {:<10} | {:>4} ms | {:>4} | {:>7.0} | {:>7.0} | {:>6.0} | {:>6.0} | {:>8.0} | {:>8.0} |",
                    format!("{sc:?}"),
                    fam.label(),
                    format!("{imp:?}").to_lowercase(),
                    interval,
                    runs,
                    median(gaps.clone()),
                    gaps.iter().cloned().fold(0.0, f64::max),
                    median(fails.clone()),
                    fails.iter().cloned().fold(0.0, f64::max),
                    median(takes.clone()),
                    takes.iter().cloned().fold(0.0, f64::max),
                );
                println!("{row}");
                rows.push(row);
            }
        }
    }
    println!();
    println!("| scenario  | family | impl       | advert  | runs | gap med | gap max | failed med | failed max | takeover med | takeover max |");
    println!("|-----------|--------|------------|---------|------|---------|---------|--------|--------|----------|----------|");
    for r in &rows {
        println!("{r}");
    }
    println!("\n(gap/takeover in ms; gap = first failed probe → first success after it; takeover = event → VIP on the backup)");
}
