//! Failover benchmark: tandem vs keepalived in the same network-namespace
//! lab, same machine, same run. Not a test: it measures and prints a table.
//!
//! For each scenario (SIGKILL of the master, link down of the master,
//! graceful stop) and advert interval, a client opens a new connection to
//! the VIP every 5 ms (50 ms connect timeout) and we record the gap (first
//! failed probe → first success after it), the failed probes, and the
//! takeover time (event → VIP configured on the backup). keepalived's nodes
//! serve the VIP with a small HTTP responder bound to 0.0.0.0:80, so its
//! numbers are pure address failover; tandem's include its own proxy.
//!
//! Run: `bash benches/failover.sh [--runs N]` (root or unshare).

#[path = "../tests/support/mod.rs"]
mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use support::lab::*;
use support::*;

const VIP: &str = "10.77.0.100";

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

fn tandem_cfg(priority: u8, interval_ms: u64) -> String {
    Node::new("10.77.0", 1, 51, priority)
        .pool(|p| p.health(r#"{ check = "tcp", interval = "1s", timeout = "200ms" }"#))
        .vrrp(|v| v.advert(&format!("{interval_ms}ms")))
        .render()
}

fn keepalived_cfg(priority: u8, interval_ms: u64) -> String {
    format!(
        "global_defs {{\n  vrrp_version 3\n}}\nvrrp_instance vip1 {{\n  state BACKUP\n  interface eth0\n  virtual_router_id 51\n  priority {priority}\n  advert_int {:.2}\n  virtual_ipaddress {{\n    {VIP}/24\n  }}\n}}\n",
        interval_ms as f64 / 1000.0
    )
}

fn start(lab: &Lab, imp: Impl, node: &str, priority: u8, interval_ms: u64) {
    match imp {
        Impl::Tandem => {
            lab.tandem(node, node, &tandem_cfg(priority, interval_ms));
        }
        Impl::Keepalived => {
            let conf = lab.file(
                &format!("{node}.conf"),
                &keepalived_cfg(priority, interval_ms),
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

fn run_once(imp: Impl, sc: Scenario, interval_ms: u64) -> Sample {
    let pair = Pair::new("fo", "10.77.0", 1);
    let lab = &pair.lab;
    let mut responders: Vec<Backend> = if imp == Impl::Keepalived {
        vec![
            Backend::in_lab(lab, "lb1", 80, "lb1"),
            Backend::in_lab(lab, "lb2", 80, "lb2"),
        ]
    } else {
        Vec::new()
    };
    start(lab, imp, "lb1", 150, interval_ms);
    lab.wait_for("lb1 holds the VIP", Duration::from_secs(10), || {
        lab.has_addr("lb1", VIP)
    });
    start(lab, imp, "lb2", 100, interval_ms);
    std::thread::sleep(Duration::from_millis(interval_ms * 10 + 500));
    assert!(!lab.has_addr("lb2", VIP), "{imp:?}: lb2 must be backup");
    let vip = SocketAddr::from(([10, 77, 0, 100], 80));
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
        lab.has_addr("lb2", VIP)
    });
    std::thread::sleep(Duration::from_millis(1500));
    let probes = client.stop();
    let (failed, gap) = outage(&probes, t);
    if std::env::var_os("FAILOVER_VERBOSE").is_some() {
        for p in probes.iter().filter(|p| !p.ok && p.at >= t) {
            eprintln!(
                "  {imp:?} {sc:?} {interval_ms}ms: +{:.1} ms {}",
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
            if only
                .as_deref()
                .is_some_and(|o| o != format!("{sc:?}-{interval}"))
            {
                continue;
            }
            let mut per: Vec<(Impl, Vec<Sample>)> = vec![(Impl::Tandem, Vec::new())];
            if have_keepalived {
                per.push((Impl::Keepalived, Vec::new()));
            }
            for _ in 0..runs {
                // Interleave implementations so machine noise hits both.
                for (imp, samples) in per.iter_mut() {
                    samples.push(run_once(*imp, sc, interval));
                }
            }
            for (imp, samples) in per {
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
                    "| {:<9} | {:<10} | {:>4} ms | {:>4} | {:>7.0} | {:>7.0} | {:>6.0} | {:>6.0} | {:>8.0} | {:>8.0} |",
                    format!("{sc:?}"),
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
    println!("| scenario  | impl       | advert  | runs | gap med | gap max | failed med | failed max | takeover med | takeover max |");
    println!("|-----------|------------|---------|------|---------|---------|--------|--------|----------|----------|");
    for r in &rows {
        println!("{r}");
    }
    println!("\n(gap/takeover in ms; gap = first failed probe → first success after it; takeover = event → VIP on the backup)");
}
