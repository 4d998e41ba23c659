//! HA pair in a network-namespace lab: real `tandem` processes elect a
//! master for a virtual IP, and the tests kill, unplug, partition and stop
//! them for real.

mod lab;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use lab::*;
use nix::sys::signal::Signal;

const VIP: &str = "10.77.0.100";

fn vip_addr() -> SocketAddr {
    SocketAddr::from(([10, 77, 0, 100], 80))
}

/// The standard pair: switch, lb1/lb2, a client and three HTTP backends.
struct Pair {
    lab: Lab,
    _backends: Vec<HttpBackend>,
}

fn pair(tag: &str) -> Pair {
    let mut lab = Lab::new(tag);
    lab.add_host("lb1", "10.77.0.1/24");
    lab.add_host("lb2", "10.77.0.2/24");
    lab.add_host("client", "10.77.0.50/24");
    for i in 1..=3 {
        lab.add_host(&format!("be{i}"), &format!("10.77.0.2{i}/24"));
    }
    let backends = (1..=3)
        .map(|i| HttpBackend::start(&lab, &format!("be{i}"), 8080, &format!("web{i}")))
        .collect();
    Pair {
        lab,
        _backends: backends,
    }
}

/// A node config: one VIP on eth0, a listener on it, a pool of 3 backends.
fn node_config(priority: u8, extra_vrrp: &str) -> String {
    format!(
        r#"
[[pool]]
name = "web"
algorithm = "round_robin"
health = {{ check = "http", path = "/", interval = "200ms", timeout = "100ms", rise = 1, fall = 2 }}
backends = [
  {{ name = "web1", address = "10.77.0.21:8080" }},
  {{ name = "web2", address = "10.77.0.22:8080" }},
  {{ name = "web3", address = "10.77.0.23:8080" }},
]

[[listener]]
name = "web"
bind = "{VIP}:80"
pool = "web"

[[vrrp]]
name = "vip1"
interface = "eth0"
vrid = 51
priority = {priority}
advert_interval = "100ms"
virtual_ips = ["{VIP}/24"]
{extra_vrrp}
"#
    )
}

fn wait_state(lab: &Lab, label: &str, state: &str, timeout: Duration) -> Duration {
    lab.wait_for(&format!("{label} {state}"), timeout, || {
        lab.vrrp_state(label, "vip1") == state
    })
}

#[test]
fn election_higher_priority_wins_and_holds_the_address() {
    if !enter("election_higher_priority_wins_and_holds_the_address") {
        return;
    }
    let p = pair("elect");
    let lab = &p.lab;
    lab.tandem("lb1", "lb1", &node_config(150, ""));
    lab.tandem("lb2", "lb2", &node_config(100, ""));
    wait_state(lab, "lb1", "master", Duration::from_secs(5));
    wait_state(lab, "lb2", "backup", Duration::from_secs(5));
    assert!(lab.has_addr("lb1", VIP), "VIP on the master");
    assert!(!lab.has_addr("lb2", VIP), "no VIP on the backup");
    let body = lab
        .in_ns("client", || http_get(vip_addr(), Duration::from_secs(2)))
        .join()
        .expect("client");
    assert!(
        body.as_deref().is_ok_and(|b| b.starts_with("web")),
        "{body:?}"
    );
    assert_eq!(lab.neigh("client", VIP), Some(lab.host("lb1").mac.clone()));
    let s = lab.status("lb2").expect("status");
    let v = &s["vrrp"][0];
    assert_eq!(v["master"], "10.77.0.1");
    assert_eq!(v["effective_priority"], 100);
    assert!(v["adverts_received"].as_u64().unwrap_or(0) > 0);
    assert_eq!(v["peers"][0]["checksum"], "pseudo-header");
}
