//! The two-node demo: a lab of network namespaces on this one machine,
//! `tandem` on lb1 (priority 150) and lb2 (priority 100) sharing the virtual
//! IP 10.77.0.100, three HTTP backends and a client sending requests
//! through the VIP. It kills the master with SIGKILL, shows the backup
//! taking over, brings the master back (preemption), then stops it
//! gracefully (make-before-break). Run it with `bash tests/demo.sh`.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use support::lab::*;
use support::*;

const VIP: &str = "10.77.0.100";

fn config(priority: u8) -> String {
    Node::new("10.77.0", 3, 51, priority)
        .pool(|p| {
            p.algorithm("round_robin")
                .health(r#"{ check = "http", path = "/", interval = "500ms", timeout = "200ms" }"#)
        })
        .vrrp(|v| {
            // The default (30s) stops a crash-looping node from stealing
            // the VIP back; the demo wants to show preemption at once.
            v.name("web-vip").preempt_delay("0s")
        })
        .render()
}

fn say(t0: Instant, msg: &str) {
    println!("[{:>7.3}s] {msg}", t0.elapsed().as_secs_f64());
}

fn state(lab: &Lab, node: &str) -> String {
    lab.vrrp_state(node, "web-vip")
}

fn who_has_vip(lab: &Lab) -> String {
    let holders: Vec<&str> = ["lb1", "lb2"]
        .into_iter()
        .filter(|n| lab.has_addr(n, VIP))
        .collect();
    if holders.is_empty() {
        "nobody".into()
    } else {
        holders.join(" and ")
    }
}

fn mac_owner(lab: &Lab, mac: Option<String>) -> String {
    match mac {
        Some(m) if m == lab.host("lb1").mac => format!("{m} (lb1)"),
        Some(m) if m == lab.host("lb2").mac => format!("{m} (lb2)"),
        Some(m) => m,
        None => "none".into(),
    }
}

fn summary(what: &str, probes: &[Probe], since: Instant) {
    let after: Vec<&Probe> = probes.iter().filter(|p| p.at >= since).collect();
    let (failed, gap) = outage(probes, since);
    let mut by_backend = std::collections::BTreeMap::new();
    for p in after.iter().filter(|p| p.ok) {
        *by_backend.entry(p.body.clone()).or_insert(0) += 1;
    }
    println!(
        "          {what}: {} requests, {failed} failed{}; answered by {by_backend:?}",
        after.len(),
        if failed > 0 {
            format!(" (outage {:.0} ms)", gap.as_secs_f64() * 1000.0)
        } else {
            String::new()
        }
    );
}

fn main() {
    if !enter_with(&[]) {
        return;
    }
    let t0 = Instant::now();
    println!("tandem demo: two load balancers, one virtual IP ({VIP}), real processes in network namespaces\n");
    let pair = Pair::new("demo", "10.77.0", 3);
    let lab = &pair.lab;
    say(t0, "lab up: switch, lb1 10.77.0.1, lb2 10.77.0.2, client 10.77.0.50, backends web1-3 10.77.0.21-23:8080");

    lab.tandem("lb1", "lb1", &config(150));
    lab.tandem("lb2", "lb2", &config(100));
    say(
        t0,
        "started tandem on lb1 (priority 150) and lb2 (priority 100), adverts every 100 ms",
    );
    lab.wait_for("election", Duration::from_secs(5), || {
        state(lab, "lb1") == "master" && state(lab, "lb2") == "backup"
    });
    say(
        t0,
        &format!(
            "election: lb1 {}, lb2 {}; VIP held by {}",
            state(lab, "lb1"),
            state(lab, "lb2"),
            who_has_vip(lab)
        ),
    );
    let vip = SocketAddr::from(([10, 77, 0, 100], 80));
    let client = ProbeClient::start(lab, "client", vip, Duration::from_millis(10), 100_000);
    std::thread::sleep(Duration::from_secs(1));
    summary("client through the VIP so far", &client.snapshot(), t0);
    say(
        t0,
        &format!(
            "client's ARP entry for the VIP: {}",
            mac_owner(lab, lab.neigh("client", VIP))
        ),
    );
    println!("\n--- lb1: tandem status ---");
    if let Ok(out) = std::process::Command::new(BIN)
        .args(["status", "-s"])
        .arg(lab.dir.join("lb1.sock"))
        .output()
    {
        print!("{}", String::from_utf8_lossy(&out.stdout));
    }
    println!("--------------------------\n");

    // 1. Crash of the master.
    let killed = Instant::now();
    say(
        t0,
        "killing tandem on lb1 with SIGKILL (a crash: no goodbye advert)",
    );
    lab.kill("lb1", Signal::SIGKILL);
    let took = lab.wait_for("lb2 master", Duration::from_secs(5), || {
        state(lab, "lb2") == "master"
    });
    say(
        t0,
        &format!(
            "lb2 became master {:.0} ms after the kill",
            took.as_secs_f64() * 1000.0
        ),
    );
    std::thread::sleep(Duration::from_millis(700));
    say(
        t0,
        &format!(
            "client's ARP entry for the VIP: {} (moved by gratuitous ARP)",
            mac_owner(lab, lab.neigh("client", VIP))
        ),
    );
    summary("client since the kill", &client.snapshot(), killed);
    lab.wait_for("dead node's VIP to expire", Duration::from_secs(5), || {
        !lab.has_addr("lb1", VIP)
    });
    say(
        t0,
        &format!(
        "the dead lb1's copy of the VIP expired by its address lifetime ({:.1} s after the kill)",
        killed.elapsed().as_secs_f64()
    ),
    );

    // 2. The old master comes back and preempts.
    lab.reap("lb1");
    let restarted = Instant::now();
    say(
        t0,
        "restarting tandem on lb1 (priority 150): it will preempt lb2",
    );
    lab.tandem("lb1", "lb1", &config(150));
    let back = lab.wait_for("lb1 master again", Duration::from_secs(5), || {
        state(lab, "lb1") == "master" && state(lab, "lb2") == "backup"
    });
    say(
        t0,
        &format!(
            "lb1 master again {:.0} ms after restart; VIP held by {}",
            back.as_secs_f64() * 1000.0,
            who_has_vip(lab)
        ),
    );
    std::thread::sleep(Duration::from_millis(500));
    summary("client since the restart", &client.snapshot(), restarted);

    // 3. A planned stop: make-before-break.
    let stopped = Instant::now();
    say(t0, "stopping tandem on lb1 gracefully (SIGTERM): priority 0 advert, lb2 takes over, lb1 releases after hearing it");
    lab.kill("lb1", Signal::SIGTERM);
    let took = lab.wait_for("lb2 master", Duration::from_secs(5), || {
        state(lab, "lb2") == "master"
    });
    let _ = lab.wait("lb1", Duration::from_secs(5));
    say(
        t0,
        &format!(
            "lb2 master {:.0} ms after SIGTERM; lb1 exited; VIP held by {}",
            took.as_secs_f64() * 1000.0,
            who_has_vip(lab)
        ),
    );
    std::thread::sleep(Duration::from_millis(500));
    let probes = client.stop();
    summary("client since the graceful stop", &probes, stopped);
    summary("client over the whole demo", &probes, t0);
    drop(pair);
    say(t0, "lab torn down: namespaces and processes removed");
}
