//! HA pair in a network-namespace lab: real `tandem` processes elect a
//! master for a virtual IP, and the tests kill, unplug, partition and stop
//! them for real.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use support::lab::*;
use support::*;

const VIP: &str = "10.77.0.100";

fn vip_addr() -> SocketAddr {
    SocketAddr::from(([10, 77, 0, 100], 80))
}

/// The standard pair: switch, lb1/lb2, a client and three HTTP backends.
fn pair(tag: &str) -> Pair {
    Pair::new(tag, "10.77.0", 3)
}

/// The health check of the standard pool.
const HTTP_CHECK: &str =
    r#"{ check = "http", path = "/", interval = "200ms", timeout = "100ms", rise = 1, fall = 2 }"#;

/// The three standard backends web1-3.
const WEB123: [(&str, &str); 3] = [
    ("web1", "10.77.0.21:8080"),
    ("web2", "10.77.0.22:8080"),
    ("web3", "10.77.0.23:8080"),
];

/// A node: vip1 on eth0 (VRID 51, 100 ms adverts, preempt at once), a
/// listener on it, pool "web" (round robin, HTTP checks) of `backends`.
fn node(priority: u8, extra_vrrp: &str, backends: &[(&str, &str)]) -> Node {
    Node::new("10.77.0", 0, 51, priority)
        .pool(|p| {
            backends.iter().fold(
                p.algorithm("round_robin").health(HTTP_CHECK),
                |p, (name, address)| p.backend(name, address),
            )
        })
        .vrrp(|v| v.preempt_delay("0s").raw(extra_vrrp))
}

/// A node config: one VIP on eth0, a listener on it, a pool of 3 backends.
fn node_config(priority: u8, extra_vrrp: &str) -> String {
    node(priority, extra_vrrp, &WEB123).render()
}

fn wait_state(lab: &Lab, label: &str, state: &str, timeout: Duration) -> Duration {
    wait_instance(lab, label, "vip1", state, timeout)
}

fn wait_instance(
    lab: &Lab,
    label: &str,
    instance: &str,
    state: &str,
    timeout: Duration,
) -> Duration {
    lab.wait_for(&format!("{label}/{instance} {state}"), timeout, || {
        lab.vrrp_state(label, instance) == state
    })
}

/// Starts lb1 (priority 150) and lb2 (100) and waits for the election.
fn elect(lab: &Lab, extra1: &str, extra2: &str) {
    lab.tandem("lb1", "lb1", &node_config(150, extra1));
    wait_state(lab, "lb1", "master", Duration::from_secs(5));
    lab.tandem("lb2", "lb2", &node_config(100, extra2));
    wait_state(lab, "lb2", "backup", Duration::from_secs(5));
    // The client has talked to the VIP, so it has a neighbour entry that
    // only a gratuitous ARP can move (arp_accept=0 ignores unknown IPs).
    let r = lab
        .in_ns("client", || {
            http_get(vip_addr()).timeout(Duration::from_secs(2)).body()
        })
        .join()
        .expect("client");
    assert!(r.is_ok(), "client reaches the VIP: {r:?}");
}

fn report(what: &str, probes: &[Probe], since: Instant) -> (usize, Duration) {
    let (failed, gap) = outage(probes, since);
    eprintln!(
        "{what}: {} probes after the event, {failed} failed, gap {:.0} ms",
        probes.iter().filter(|p| p.at >= since).count(),
        gap.as_secs_f64() * 1000.0
    );
    (failed, gap)
}

#[test]
fn election_higher_priority_wins_and_holds_the_address() {
    reenter!();
    let p = pair("elect");
    let lab = &p.lab;
    lab.tandem("lb1", "lb1", &node_config(150, ""));
    lab.tandem("lb2", "lb2", &node_config(100, ""));
    wait_state(lab, "lb1", "master", Duration::from_secs(5));
    wait_state(lab, "lb2", "backup", Duration::from_secs(5));
    assert!(lab.has_addr("lb1", VIP), "VIP on the master");
    assert!(!lab.has_addr("lb2", VIP), "no VIP on the backup");
    let body = lab
        .in_ns("client", || {
            http_get(vip_addr()).timeout(Duration::from_secs(2)).body()
        })
        .join()
        .expect("client");
    assert!(
        body.as_deref().is_ok_and(|b| b.starts_with("web")),
        "{body:?}"
    );
    assert_eq!(lab.neigh("client", VIP), Some(lab.host("lb1").mac.clone()));
    let s = lab.status("lb2").expect("status");
    let v = &s.vrrp[0];
    assert_eq!(v.master.as_deref(), Some("10.77.0.1"));
    assert_eq!(v.effective_priority, 100);
    assert!(v.adverts_received > 0);
    assert_eq!(v.peers[0].checksum, "pseudo-header");
}

#[test]
fn sigkill_of_master_fails_over_with_gratuitous_arp() {
    reenter!();
    let p = pair("kill");
    let lab = &p.lab;
    elect(lab, "vip_lifetime = \"2s\"", "vip_lifetime = \"2s\"");
    assert_eq!(lab.neigh("client", VIP), Some(lab.host("lb1").mac.clone()));
    let client = ProbeClient::start(lab, "client", vip_addr(), Duration::from_millis(10), 3000);
    std::thread::sleep(Duration::from_millis(300));
    let killed = Instant::now();
    lab.kill("lb1", Signal::SIGKILL);
    let takeover = wait_state(lab, "lb2", "master", Duration::from_secs(3));
    // Master_Down_Interval at 100 ms adverts, priority 100: 360.9 ms.
    assert!(
        takeover < Duration::from_millis(800),
        "takeover after {takeover:?}"
    );
    // Gratuitous ARP moved the client's neighbour entry: no ARP expiry wait.
    lab.wait_for(
        "client neighbour entry on lb2",
        Duration::from_secs(1),
        || lab.neigh("client", VIP) == Some(lab.host("lb2").mac.clone()),
    );
    // HTTP through the VIP works again.
    lab.wait_for("HTTP via lb2", Duration::from_secs(2), || {
        client
            .snapshot()
            .last()
            .is_some_and(|p| p.ok && p.at > killed + takeover)
    });
    // The dead node's address expires by its lifetime (self-fencing).
    let gone = lab.wait_for("lb1's VIP to expire", Duration::from_secs(4), || {
        !lab.has_addr("lb1", VIP)
    });
    assert!(
        killed.elapsed() < Duration::from_millis(3500),
        "VIP lingered {:?}",
        killed.elapsed()
    );
    std::thread::sleep(Duration::from_millis(200));
    let probes = client.stop();
    let (_, gap) = report("SIGKILL failover", &probes, killed);
    assert!(gap < Duration::from_secs(1), "outage {gap:?}");
    eprintln!("takeover {takeover:?}; dead node's VIP gone {gone:?} after the takeover was seen");
    let s = lab.status("lb2").expect("status");
    assert_eq!(s.vrrp[0].reason, "master down timer expired");
}

#[test]
fn link_down_of_master_is_host_death() {
    reenter!();
    let p = pair("link");
    let lab = &p.lab;
    elect(lab, "", "");
    let cut = Instant::now();
    lab.cable("lb1", false);
    let takeover = wait_state(lab, "lb2", "master", Duration::from_secs(3));
    let s = lab.status("lb2").expect("status");
    let mdi = Duration::from_millis(s.vrrp[0].master_down_interval_ms);
    eprintln!("link down: lb2 master after {takeover:?} (Master_Down_Interval {mdi:?})");
    assert!(
        takeover <= mdi + Duration::from_millis(250),
        "{takeover:?} > {mdi:?}"
    );
    assert!(lab.has_addr("lb2", VIP));
    let r = lab
        .in_ns("client", || {
            http_get(vip_addr()).timeout(Duration::from_secs(2)).body()
        })
        .join()
        .expect("client");
    assert!(r.is_ok(), "{r:?}");
    // lb1 saw its carrier go: it is in fault and dropped the address.
    wait_state(lab, "lb1", "fault", Duration::from_secs(2));
    assert!(!lab.has_addr("lb1", VIP));
    // Cable back: lb1 preempts (priority 150).
    lab.cable("lb1", true);
    wait_state(lab, "lb1", "master", Duration::from_secs(5));
    wait_state(lab, "lb2", "backup", Duration::from_secs(2));
    let _ = cut;
}

#[test]
fn graceful_stop_hands_over_without_failed_connections() {
    reenter!();
    let p = pair("term");
    let lab = &p.lab;
    elect(lab, "", "");
    let client = ProbeClient::start(lab, "client", vip_addr(), Duration::from_millis(2), 20000);
    std::thread::sleep(Duration::from_millis(300));
    let stopped = Instant::now();
    lab.kill("lb1", Signal::SIGTERM);
    let takeover = wait_state(lab, "lb2", "master", Duration::from_secs(3));
    let exit = lab.wait("lb1", Duration::from_secs(6)).expect("lb1 exits");
    assert!(exit.success(), "lb1 exit {exit:?}");
    std::thread::sleep(Duration::from_millis(300));
    let probes = client.stop();
    let (failed, _) = report("graceful stop", &probes, stopped);
    // No outage: nothing is refused, nothing times out. The one thing an
    // L2 switchover cannot save is a connection in flight at the instant
    // the client's ARP entry flips (its next segment reaches the new
    // master, which resets it): with a new connection every 2 ms, at most
    // one such connection exists.
    let bad: Vec<&Probe> = probes.iter().filter(|p| p.at >= stopped && !p.ok).collect();
    assert!(
        failed <= 1,
        "failed connections during a planned stop: {bad:?}"
    );
    for p in &bad {
        assert!(
            p.body.contains("reset"),
            "only a reset at the ARP flip is acceptable: {p:?}"
        );
    }
    assert!(
        probes.iter().filter(|p| p.at > stopped).count() > 50,
        "client kept going"
    );
    // Skew_Time at priority 100 and 100 ms adverts is 60.9 ms.
    assert!(
        takeover < Duration::from_millis(300),
        "new master after {takeover:?}"
    );
    assert!(!lab.has_addr("lb1", VIP));
    eprintln!("graceful stop: lb2 master after {takeover:?}");
}

#[test]
fn preemption_and_preempt_false() {
    reenter!();
    let p = pair("preempt");
    let lab = &p.lab;
    elect(lab, "", "");
    lab.kill("lb1", Signal::SIGKILL);
    wait_state(lab, "lb2", "master", Duration::from_secs(3));
    lab.reap("lb1");
    // The old master returns and takes the address back (preempt default).
    lab.tandem("lb1", "lb1", &node_config(150, ""));
    wait_state(lab, "lb1", "master", Duration::from_secs(5));
    wait_state(lab, "lb2", "backup", Duration::from_secs(2));
    assert!(!lab.has_addr("lb2", VIP));
    // With preempt = false on lb1 it stays backup behind lb2.
    lab.kill("lb1", Signal::SIGKILL);
    wait_state(lab, "lb2", "master", Duration::from_secs(3));
    lab.reap("lb1");
    lab.tandem("lb1", "lb1", &node_config(150, "preempt = false"));
    wait_state(lab, "lb1", "backup", Duration::from_secs(5));
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(lab.vrrp_state("lb1", "vip1"), "backup");
    assert_eq!(lab.vrrp_state("lb2", "vip1"), "master");
    let s = lab.status("lb1").expect("status");
    let why = s.vrrp[0].reason.to_string();
    assert!(why.contains("preempt disabled"), "{why}");
}

#[test]
fn tracking_moves_the_address_when_the_pool_dies() {
    reenter!();
    let p = pair("track");
    let lab = &p.lab;
    // Each node fronts its own app servers: lb1 → web1, lb2 → web2 + web3.
    let cfg = |prio: u8, backends: &[(&str, &str)]| {
        node(prio, "track = [{ pool = \"web\", weight = -60 }]", backends).render()
    };
    lab.tandem("lb1", "lb1", &cfg(150, &WEB123[..1]));
    wait_state(lab, "lb1", "master", Duration::from_secs(5));
    lab.tandem("lb2", "lb2", &cfg(100, &WEB123[1..]));
    wait_state(lab, "lb2", "backup", Duration::from_secs(5));
    // Stop lb1's only backend: 150 - 60 = 90 < 100, lb2 preempts.
    let Pair { lab, mut backends } = p;
    drop(backends.remove(0));
    let t = wait_state(&lab, "lb2", "master", Duration::from_secs(5));
    wait_state(&lab, "lb1", "backup", Duration::from_secs(2));
    eprintln!("tracking: address moved {t:?} after the backend died");
    let s = lab.status("lb1").expect("status");
    assert_eq!(s.vrrp[0].effective_priority, 90);
    assert!(lab.has_addr("lb2", VIP) && !lab.has_addr("lb1", VIP));
    let r = lab
        .in_ns("client", || {
            http_get(vip_addr()).timeout(Duration::from_secs(2)).body()
        })
        .join()
        .expect("client");
    assert!(
        r.as_deref().is_ok_and(|b| b == "web2" || b == "web3"),
        "{r:?}"
    );
    // Backend back: priority restored, lb1 preempts again.
    backends.insert(0, Backend::in_lab(&lab, "be1", 8080, "web1"));
    wait_state(&lab, "lb1", "master", Duration::from_secs(5));
}

#[test]
fn tracking_without_weight_means_fault() {
    reenter!();
    let p = pair("trackf");
    let lab = &p.lab;
    let cfg = node(
        150,
        "track = [{ pool = \"web\" }]",
        &[("gone", "10.77.0.29:8080")],
    )
    .render();
    lab.tandem("lb1", "lb1", &cfg);
    wait_state(lab, "lb1", "fault", Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(lab.vrrp_state("lb1", "vip1"), "fault");
    assert!(
        !lab.has_addr("lb1", VIP),
        "an instance in FAULT never holds the address"
    );
}

fn active_active_config(p1: u8, p2: u8) -> String {
    node(p1, "", &WEB123)
        .config()
        .listener(Listener::new("web2", "10.77.0.101:80", "web"))
        .vrrp(
            Vrrp::new("vip2", 52, p2)
                .advert("100ms")
                .vip("10.77.0.101/24")
                .preempt_delay("0s"),
        )
        .render()
}

#[test]
fn active_active_each_node_masters_one_and_survivor_holds_both() {
    reenter!();
    let p = pair("aa");
    let lab = &p.lab;
    lab.tandem("lb1", "lb1", &active_active_config(150, 100));
    lab.tandem("lb2", "lb2", &active_active_config(100, 150));
    wait_instance(lab, "lb1", "vip1", "master", Duration::from_secs(5));
    wait_instance(lab, "lb2", "vip2", "master", Duration::from_secs(5));
    wait_instance(lab, "lb1", "vip2", "backup", Duration::from_secs(5));
    wait_instance(lab, "lb2", "vip1", "backup", Duration::from_secs(5));
    assert!(lab.has_addr("lb1", VIP) && !lab.has_addr("lb1", "10.77.0.101"));
    assert!(lab.has_addr("lb2", "10.77.0.101") && !lab.has_addr("lb2", VIP));
    for vip in [[10, 77, 0, 100], [10, 77, 0, 101]] {
        let r = lab
            .in_ns("client", move || {
                http_get(SocketAddr::from((vip, 80)))
                    .timeout(Duration::from_secs(2))
                    .body()
            })
            .join()
            .expect("client");
        assert!(r.is_ok(), "{vip:?}: {r:?}");
    }
    lab.kill("lb1", Signal::SIGKILL);
    wait_instance(lab, "lb2", "vip1", "master", Duration::from_secs(3));
    assert_eq!(lab.vrrp_state("lb2", "vip2"), "master");
    assert!(lab.has_addr("lb2", VIP) && lab.has_addr("lb2", "10.77.0.101"));
    for vip in [[10, 77, 0, 100], [10, 77, 0, 101]] {
        let ok = lab
            .in_ns("client", move || {
                let t0 = Instant::now();
                while t0.elapsed() < Duration::from_secs(3) {
                    if http_get(SocketAddr::from((vip, 80)))
                        .timeout(Duration::from_millis(300))
                        .body()
                        .is_ok()
                    {
                        return true;
                    }
                }
                false
            })
            .join()
            .expect("client");
        assert!(ok, "{vip:?} served by the survivor");
    }
}

#[test]
fn partition_then_heal_leaves_one_master_and_fixes_arp() {
    reenter!();
    let p = pair("split");
    let lab = &p.lab;
    elect(lab, "", "");
    lab.partition("lb1", "lb2", true);
    // lb2 no longer hears lb1: both masters (split brain); lb2's GARP moved
    // the client to lb2.
    wait_state(lab, "lb2", "master", Duration::from_secs(3));
    assert_eq!(lab.vrrp_state("lb1", "vip1"), "master");
    lab.wait_for("client on lb2", Duration::from_secs(2), || {
        lab.neigh("client", VIP) == Some(lab.host("lb2").mac.clone())
    });
    let healed = Instant::now();
    lab.partition("lb1", "lb2", false);
    let t = wait_state(lab, "lb2", "backup", Duration::from_secs(3));
    assert_eq!(lab.vrrp_state("lb1", "vip1"), "master");
    // The surviving master re-asserted with gratuitous ARP: the client's
    // cache points at it again without waiting for ARP expiry.
    lab.wait_for("client back on lb1", Duration::from_secs(2), || {
        lab.neigh("client", VIP) == Some(lab.host("lb1").mac.clone())
    });
    assert!(!lab.has_addr("lb2", VIP));
    let r = lab
        .in_ns("client", || {
            http_get(vip_addr()).timeout(Duration::from_secs(2)).body()
        })
        .join()
        .expect("client");
    assert!(r.is_ok(), "{r:?}");
    eprintln!(
        "partition healed: one master again after {t:?} ({:?} since heal)",
        healed.elapsed()
    );
    assert!(
        lab.log("lb1").contains("re-asserting"),
        "lb1 logged the re-assertion"
    );
}

/// Sends a raw VRRP payload from `host` with the given TTL.
fn inject(lab: &Lab, host: &str, payload: Vec<u8>, ttl: u32) {
    lab.in_ns(host, move || {
        use socket2::{Domain, Protocol, Socket, Type};
        let s =
            Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::from(112))).expect("raw socket");
        s.set_multicast_ttl_v4(ttl).expect("ttl");
        s.set_ttl_v4(ttl).expect("ttl");
        // Hosts have no default route: name the interface for multicast.
        s.set_multicast_if_v4(&"10.77.0.66".parse().expect("ip"))
            .expect("mcast if");
        let dst: SocketAddr = "224.0.0.18:0".parse().expect("addr");
        s.send_to(&payload, &dst.into()).expect("send");
    })
    .join()
    .expect("inject");
}

#[test]
fn malformed_and_hostile_adverts_are_counted_and_ignored() {
    reenter!();
    use tandem::vrrp::packet::{encode, Advert, ChecksumForm, Version};
    let mut p = pair("hostile");
    p.lab.add_host("evil", "10.77.0.66/24");
    let lab = &p.lab;
    elect(lab, "", "");
    let src = "10.77.0.66".parse().expect("ip");
    let dst = "224.0.0.18".parse().expect("ip");
    let adv = |vrid: u8, prio: u8, vips: Vec<&str>| Advert {
        version: Version::V3,
        vrid,
        priority: prio,
        interval_cs: 10,
        addrs: vips.iter().map(|v| v.parse().expect("ip")).collect(),
    };
    let good = encode(
        &adv(51, 254, vec![VIP]),
        src,
        dst,
        ChecksumForm::PseudoHeader,
    );
    let mut bad_sum = good.clone();
    bad_sum[6] ^= 0xff;
    let mut evil255 = encode(
        &adv(51, 255, vec![VIP]),
        src,
        dst,
        ChecksumForm::PseudoHeader,
    );
    evil255[7] ^= 0x01;
    let wrong_vrid = encode(
        &adv(99, 254, vec![VIP]),
        src,
        dst,
        ChecksumForm::PseudoHeader,
    );
    let wrong_vips = encode(
        &adv(51, 254, vec!["10.77.0.200"]),
        src,
        dst,
        ChecksumForm::PseudoHeader,
    );
    let before1 = lab.status("lb1").expect("status").vrrp[0].transitions;
    let before2 = lab.status("lb2").expect("status").vrrp[0].transitions;
    for _ in 0..20 {
        inject(lab, "evil", bad_sum.clone(), 255);
        inject(lab, "evil", evil255.clone(), 255);
        inject(lab, "evil", good.clone(), 64); // TTL 64: routed, not link-local
        inject(lab, "evil", good[..5].to_vec(), 255); // truncated
        inject(lab, "evil", wrong_vrid.clone(), 255);
        inject(lab, "evil", wrong_vips.clone(), 255);
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
    for label in ["lb1", "lb2"] {
        let s = lab.status(label).expect("status");
        let d = &s.vrrp[0].dropped;
        for reason in ["checksum", "ttl", "truncated", "vrid", "addresses"] {
            let n = d.get(reason).copied().unwrap_or(0);
            let want = if reason == "checksum" { 40 } else { 20 };
            assert!(
                n >= want,
                "{label}: dropped[{reason}] = {n}, want ≥ {want}: {d:?}"
            );
        }
    }
    assert_eq!(lab.vrrp_state("lb1", "vip1"), "master");
    assert_eq!(lab.vrrp_state("lb2", "vip1"), "backup");
    assert_eq!(lab.status("lb1").expect("s").vrrp[0].transitions, before1);
    assert_eq!(lab.status("lb2").expect("s").vrrp[0].transitions, before2);
    // Logged once per peer and reason, not once per packet.
    let log = lab.log("lb2");
    let lines = log.matches("dropped VRRP packet").count();
    assert!(lines <= 6, "{lines} drop log lines: rate limiting failed");
}

fn keepalived_config(lab: &Lab, name: &str, priority: u8) -> String {
    lab.file(
        &format!("{name}.conf"),
        &format!(
            r#"global_defs {{
    vrrp_version 3
    script_user root
    enable_script_security
}}
vrrp_instance vip1 {{
    state BACKUP
    interface eth0
    virtual_router_id 51
    priority {priority}
    advert_int 0.1
    virtual_ipaddress {{
        {VIP}/24
    }}
}}
"#
        ),
    )
}

fn keepalived(lab: &Lab, host: &str, label: &str, priority: u8) {
    let conf = keepalived_config(lab, label, priority);
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

#[test]
fn interoperates_with_keepalived_both_ways() {
    reenter!();
    assert!(
        std::process::Command::new("keepalived")
            .arg("--version")
            .output()
            .is_ok(),
        "THIS TEST NEEDS keepalived (apt install keepalived; .ci/run installs it)"
    );
    let p = pair("kad");
    let lab = &p.lab;
    // tandem 150 vs keepalived 100: tandem is master; kill it, keepalived takes over.
    lab.tandem("lb1", "lb1", &node_config(150, ""));
    wait_state(lab, "lb1", "master", Duration::from_secs(5));
    keepalived(lab, "lb2", "ka2", 100);
    lab.wait_for(
        "keepalived sees tandem as master",
        Duration::from_secs(5),
        || lab.log("ka2").contains("Entering BACKUP STATE"),
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(!lab.has_addr("lb2", VIP), "keepalived must stay backup");
    // A backup keepalived is silent; it staying backup past its
    // Master_Down_Interval proves it accepts our adverts and checksum.
    assert!(!lab.log("ka2").contains("Entering MASTER STATE"));
    assert_eq!(lab.vrrp_state("lb1", "vip1"), "master");
    lab.kill("lb1", Signal::SIGKILL);
    lab.wait_for("keepalived takes over", Duration::from_secs(3), || {
        lab.has_addr("lb2", VIP)
    });
    lab.kill("ka2", Signal::SIGKILL);
    lab.reap("ka2");
    lab.reap("lb1");
    // keepalived may leave its VIP behind after SIGKILL; clear it for round two.
    let _ = lab.exec(
        "lb2",
        &["ip", "addr", "del", &format!("{VIP}/24"), "dev", "eth0"],
    );
    let _ = lab.exec(
        "lb1",
        &["ip", "addr", "del", &format!("{VIP}/24"), "dev", "eth0"],
    );

    // keepalived 150 vs tandem 100: keepalived is master; kill it, tandem takes over.
    keepalived(lab, "lb1", "ka1", 150);
    lab.wait_for("keepalived master", Duration::from_secs(5), || {
        lab.has_addr("lb1", VIP)
    });
    lab.tandem("lb2", "lb2", &node_config(100, ""));
    wait_state(lab, "lb2", "backup", Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(lab.vrrp_state("lb2", "vip1"), "backup");
    let s = lab.status("lb2").expect("status");
    assert_eq!(s.vrrp[0].master.as_deref(), Some("10.77.0.1"));
    assert_eq!(s.vrrp[0].peers[0].address, "10.77.0.1");
    assert_eq!(
        s.vrrp[0].peers[0].checksum, "pseudo-header",
        "keepalived's checksum form"
    );
    lab.kill("ka1", Signal::SIGKILL);
    let t = wait_state(lab, "lb2", "master", Duration::from_secs(3));
    eprintln!("tandem took over from keepalived after {t:?}");
    assert!(lab.has_addr("lb2", VIP));
}

#[test]
fn unicast_mode_elects_without_multicast() {
    reenter!();
    let p = pair("ucast");
    let lab = &p.lab;
    lab.tandem(
        "lb1",
        "lb1",
        &node_config(150, "unicast_peers = [\"10.77.0.2\"]"),
    );
    wait_state(lab, "lb1", "master", Duration::from_secs(5));
    lab.tandem(
        "lb2",
        "lb2",
        &node_config(100, "unicast_peers = [\"10.77.0.1\"]"),
    );
    wait_state(lab, "lb2", "backup", Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        lab.vrrp_state("lb2", "vip1"),
        "backup",
        "unicast adverts keep lb2 backup"
    );
    let s = lab.status("lb2").expect("status");
    assert_eq!(s.vrrp[0].master.as_deref(), Some("10.77.0.1"));
    // A stranger on the segment is not a peer: its adverts are dropped.
    lab.kill("lb1", Signal::SIGKILL);
    wait_state(lab, "lb2", "master", Duration::from_secs(3));
    assert!(lab.has_addr("lb2", VIP));
}

#[test]
fn notify_hooks_run_in_order() {
    reenter!();
    let p = pair("notify");
    let lab = &p.lab;
    let out = lab.dir.join("transitions.txt");
    let hook = lab.file(
        "hook.sh",
        &format!(
            "#!/bin/sh\n# Slow on purpose: transitions must still be reported one at a time, in order.\nsleep 0.05\necho \"$1 $2 $TANDEM_PREVIOUS_STATE\" >> {}\n",
            out.display()
        ),
    );
    std::process::Command::new("chmod")
        .args(["+x", &hook])
        .status()
        .expect("chmod");
    lab.tandem(
        "lb2",
        "lb2",
        &node_config(100, &format!("notify = \"{hook}\"")),
    );
    wait_state(lab, "lb2", "master", Duration::from_secs(5));
    lab.tandem("lb1", "lb1", &node_config(150, ""));
    wait_state(lab, "lb2", "backup", Duration::from_secs(5));
    lab.kill("lb2", Signal::SIGTERM);
    let _ = lab.wait("lb2", Duration::from_secs(5));
    lab.wait_for("hook output", Duration::from_secs(3), || {
        std::fs::read_to_string(&out)
            .map(|s| s.lines().count() >= 4)
            .unwrap_or(false)
    });
    let text = std::fs::read_to_string(&out).expect("hook output");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        vec![
            "vip1 backup initialize",
            "vip1 master backup",
            "vip1 backup master",
            "vip1 stopped backup",
        ],
        "transitions in order"
    );
}

// Sync groups. Instance A (vip1) is on eth0, the front segment; instance B
// (vip2) on eth1, a back segment of its own (a second bridge). Cutting only
// lb1's back cable faults B on lb1 directly; A's own link stays fine, so
// only the sync group can move A. The control runs the same cut without
// the group and A must stay on lb1.

const VIP_B: &str = "10.78.0.100";

/// The standard pair plus a back segment with lb1 and lb2 on it (eth1).
fn two_segments(tag: &str) -> Pair {
    let mut p = pair(tag);
    p.lab.add_segment("back");
    p.lab.plug("lb1", "eth1", "back", "10.78.0.1/24");
    p.lab.plug("lb2", "eth1", "back", "10.78.0.2/24");
    p
}

/// vip1 (A) on eth0 as in [`node_config`], vip2 (B) on eth1; both in sync
/// group "g" when `grouped`, otherwise two independent instances.
fn two_segment_config(priority: u8, grouped: bool) -> String {
    let group = if grouped { "sync_group = \"g\"" } else { "" };
    node(priority, group, &WEB123)
        .config()
        .vrrp(
            Vrrp::new("vip2", 52, priority)
                .interface("eth1")
                .advert("100ms")
                .vip(&format!("{VIP_B}/24"))
                .preempt_delay("0s")
                .raw(group),
        )
        .render()
}

/// Where the two VIPs are, as (lb1 has A, lb1 has B, lb2 has A, lb2 has B).
fn vips(lab: &Lab) -> (bool, bool, bool, bool) {
    (
        lab.has_addr_on("lb1", "eth0", VIP),
        lab.has_addr_on("lb1", "eth1", VIP_B),
        lab.has_addr_on("lb2", "eth0", VIP),
        lab.has_addr_on("lb2", "eth1", VIP_B),
    )
}

fn states(lab: &Lab) -> [String; 4] {
    [
        lab.vrrp_state("lb1", "vip1"),
        lab.vrrp_state("lb1", "vip2"),
        lab.vrrp_state("lb2", "vip1"),
        lab.vrrp_state("lb2", "vip2"),
    ]
}

/// Starts lb1 (150) and lb2 (100) on both segments and waits until lb1 is
/// master of both instances and holds both VIPs.
fn elect_two_segments(lab: &Lab, grouped: bool) {
    lab.tandem("lb1", "lb1", &two_segment_config(150, grouped));
    wait_instance(lab, "lb1", "vip1", "master", Duration::from_secs(5));
    wait_instance(lab, "lb1", "vip2", "master", Duration::from_secs(5));
    lab.tandem("lb2", "lb2", &two_segment_config(100, grouped));
    wait_instance(lab, "lb2", "vip1", "backup", Duration::from_secs(5));
    wait_instance(lab, "lb2", "vip2", "backup", Duration::from_secs(5));
    lab.wait_for("both VIPs on lb1 only", Duration::from_secs(2), || {
        vips(lab) == (true, true, false, false)
    });
    let r = lab
        .in_ns("client", || {
            http_get(vip_addr()).timeout(Duration::from_secs(2)).body()
        })
        .join()
        .expect("client");
    assert!(r.is_ok(), "client reaches VIP A: {r:?}");
}

/// lb1's eth1 is cut at the back switch: B's own interface loses carrier,
/// eth0 (A's interface) does not. Returns when lb1/vip2 is in fault and
/// lb2/vip2 master.
fn cut_lb1_back(lab: &Lab) -> Instant {
    let t0 = Instant::now();
    lab.cable_on("lb1", "eth1", false);
    let f = wait_instance(lab, "lb1", "vip2", "fault", Duration::from_secs(2));
    let m = wait_instance(lab, "lb2", "vip2", "master", Duration::from_secs(3));
    eprintln!("back cut: lb1/vip2 fault after {f:?}, lb2/vip2 master after {m:?}");
    let link = |dev: &str| lab.ip("lb1", &["-br", "link", "show", "dev", dev]);
    assert!(
        link("eth1").contains("NO-CARRIER"),
        "lb1 eth1 lost its carrier: {}",
        link("eth1")
    );
    assert!(
        !link("eth0").contains("NO-CARRIER") && link("eth0").contains(" UP "),
        "lb1 eth0 (instance A's link) is untouched: {}",
        link("eth0")
    );
    t0
}

#[test]
fn sync_group_moves_a_healthy_member_when_another_faults_on_its_own_segment() {
    reenter!();
    let p = two_segments("sync");
    let lab = &p.lab;
    let lb2_mac = lab.host("lb2").mac.clone();
    elect_two_segments(lab, true);

    let t0 = cut_lb1_back(lab);
    // A's link is fine; only the group takes it out of master on lb1.
    lab.wait_for(
        "lb1/vip1 follows the group out of master",
        Duration::from_secs(2),
        || matches!(lab.vrrp_state("lb1", "vip1").as_str(), "fault" | "backup"),
    );
    let a1 = t0.elapsed();
    wait_instance(lab, "lb2", "vip1", "master", Duration::from_secs(3));
    let a2 = t0.elapsed();
    lab.wait_for("both VIPs on lb2 only", Duration::from_secs(2), || {
        vips(lab) == (false, false, true, true)
    });
    let s = lab.status("lb1").expect("lb1 status");
    let a = s.instance("vip1");
    eprintln!(
        "sync group: lb1/vip1 {} after {a1:?} ({}), lb2/vip1 master after {a2:?}",
        a.state, a.reason
    );
    if a.state == "fault" {
        assert!(
            a.reason.contains("sync group"),
            "the status says why a healthy member left master: {a:?}"
        );
    }
    // It holds while lb1's back cable stays out.
    let until = Instant::now() + Duration::from_millis(800);
    while Instant::now() < until {
        let st = states(lab);
        assert!(
            st[0] != "master" && st[1] == "fault" && st[2] == "master" && st[3] == "master",
            "while cut: {st:?}"
        );
        assert_eq!(vips(lab), (false, false, true, true), "while cut");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The front client follows A to lb2 (gratuitous ARP) and is served.
    let r = lab
        .in_ns("client", || {
            http_get(vip_addr()).timeout(Duration::from_secs(2)).body()
        })
        .join()
        .expect("client");
    assert!(r.is_ok(), "client reaches VIP A on lb2: {r:?}");
    assert_eq!(
        lab.neigh("client", VIP).as_deref(),
        Some(lb2_mac.as_str()),
        "client's ARP entry for VIP A moved to lb2"
    );

    // Plug back: lb1 preempts (priority 150 > 100) with both members.
    let t1 = Instant::now();
    lab.cable_on("lb1", "eth1", true);
    let (mut b_at, mut a_at) = (None, None);
    lab.wait_for("lb1 master of both again", Duration::from_secs(5), || {
        let st = states(lab);
        if st[0] == "master" && a_at.is_none() {
            a_at = Some(t1.elapsed());
        }
        if st[1] == "master" && b_at.is_none() {
            b_at = Some(t1.elapsed());
        }
        st[0] == "master" && st[1] == "master"
    });
    wait_instance(lab, "lb2", "vip1", "backup", Duration::from_secs(3));
    wait_instance(lab, "lb2", "vip2", "backup", Duration::from_secs(3));
    lab.wait_for("both VIPs back on lb1 only", Duration::from_secs(2), || {
        vips(lab) == (true, true, false, false)
    });
    eprintln!("plugged back: lb1/vip1 master after {a_at:?}, lb1/vip2 after {b_at:?}");
    let until = Instant::now() + Duration::from_millis(500);
    while Instant::now() < until {
        assert_eq!(
            states(lab),
            ["master", "master", "backup", "backup"],
            "after plugging back"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The control for the test above: same topology and cut, no sync group.
/// B moves, A stays on lb1; so in the test above only the group moved A.
#[test]
fn sync_group_control_without_the_group_a_stays_master_on_lb1() {
    reenter!();
    let p = two_segments("nosync");
    let lab = &p.lab;
    elect_two_segments(lab, false);
    let transitions = |label: &str| {
        lab.status(label).and_then(|s| {
            s.vrrp
                .iter()
                .find(|i| i.name == "vip1")
                .map(|i| i.transitions)
        })
    };
    let (tr1, tr2) = (transitions("lb1"), transitions("lb2"));

    cut_lb1_back(lab);
    lab.wait_for("VIP B on lb2 only", Duration::from_secs(2), || {
        let v = vips(lab);
        !v.1 && v.3
    });
    // Longer than lb2's Master_Down_Interval (3 × 100 ms + skew) several
    // times over: A would have moved by now if anything moved it.
    let until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < until {
        let st = states(lab);
        assert_eq!(
            st,
            ["master", "fault", "backup", "master"],
            "without the group only B moves"
        );
        assert_eq!(vips(lab), (true, false, false, true), "without the group");
        std::thread::sleep(Duration::from_millis(20));
    }
    let r = lab
        .in_ns("client", || {
            http_get(vip_addr()).timeout(Duration::from_secs(2)).body()
        })
        .join()
        .expect("client");
    assert!(r.is_ok(), "client still reaches VIP A on lb1: {r:?}");

    lab.cable_on("lb1", "eth1", true);
    wait_instance(lab, "lb1", "vip2", "master", Duration::from_secs(5));
    wait_instance(lab, "lb2", "vip2", "backup", Duration::from_secs(3));
    lab.wait_for("both VIPs back on lb1 only", Duration::from_secs(2), || {
        vips(lab) == (true, true, false, false)
    });
    assert_eq!(states(lab), ["master", "master", "backup", "backup"]);
    assert_eq!(
        (transitions("lb1"), transitions("lb2")),
        (tr1, tr2),
        "instance A never changed state on either node"
    );
}

#[test]
fn missing_interface_is_waited_for() {
    reenter!();
    let p = pair("wait");
    let lab = &p.lab;
    // lb1's instance lives on eth1, which does not exist yet.
    let cfg = node(150, "", &WEB123)
        .vrrp(|v| v.interface("eth1"))
        .render();
    lab.tandem("lb1", "lb1", &cfg);
    lab.wait_for("waiting state", Duration::from_secs(3), || {
        lab.vrrp_state("lb1", "vip1") == "waiting"
    });
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(lab.vrrp_state("lb1", "vip1"), "waiting");
    assert!(
        lab.log("lb1")
            .matches("waiting: interface does not exist yet")
            .count()
            == 1,
        "logged once"
    );
    // The interface appears (renamed eth0 → eth1): the instance starts.
    lab.ip("lb1", &["link", "set", "eth0", "down"]);
    lab.ip("lb1", &["link", "set", "eth0", "name", "eth1"]);
    lab.ip("lb1", &["link", "set", "eth1", "up"]);
    wait_state(lab, "lb1", "master", Duration::from_secs(5));
    assert!(lab.has_addr_on("lb1", "eth1", VIP));
}

#[test]
fn planned_switchover_by_runtime_priority() {
    reenter!();
    let p = pair("maint");
    let lab = &p.lab;
    elect(lab, "", "");
    let client = ProbeClient::start(lab, "client", vip_addr(), Duration::from_millis(2), 20000);
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    let out = std::process::Command::new(BIN)
        .args(["vrrp", "priority", "vip1", "50", "-s"])
        .arg(lab.dir.join("lb1.sock"))
        .output()
        .expect("tandem vrrp");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let took = wait_state(lab, "lb2", "master", Duration::from_secs(3));
    wait_state(lab, "lb1", "backup", Duration::from_secs(2));
    std::thread::sleep(Duration::from_millis(300));
    let probes = client.stop();
    let (failed, _) = report("planned switchover", &probes, t);
    // As for a graceful stop: no outage; only a connection caught in flight
    // at the ARP flip can be reset.
    assert!(failed <= 1, "failed connections: {failed}");
    assert!(probes
        .iter()
        .filter(|p| p.at >= t && !p.ok)
        .all(|p| p.body.contains("reset")));
    let s = lab.status("lb1").expect("status");
    assert_eq!(s.vrrp[0].priority_override, Some(50));
    assert_eq!(s.vrrp[0].effective_priority, 50);
    eprintln!("planned switchover: lb2 master after {took:?}");
    // Back to the configured priority: lb1 preempts again.
    let out = std::process::Command::new(BIN)
        .args(["vrrp", "priority", "vip1", "config", "-s"])
        .arg(lab.dir.join("lb1.sock"))
        .output()
        .expect("tandem vrrp");
    assert!(out.status.success());
    wait_state(lab, "lb1", "master", Duration::from_secs(3));
}

/// chromedriver in the client's namespace, or a loud skip outside CI.
fn chromedriver(lab: &Lab) -> Option<String> {
    if !std::path::Path::new("/usr/bin/chromedriver").exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install chromium and chromium-driver"
        );
        eprintln!("SKIPPED: status page test needs Debian's chromium and chromium-driver");
        return None;
    }
    lab.spawn(
        "client",
        "chromedriver",
        &["/usr/bin/chromedriver", "--port=9515"],
    );
    let ready = lab
        .in_ns("client", || {
            let t0 = Instant::now();
            while t0.elapsed() < Duration::from_secs(15) {
                if std::net::TcpStream::connect("127.0.0.1:9515").is_ok() {
                    return true;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            false
        })
        .join()
        .expect("wait chromedriver");
    assert!(
        ready,
        "chromedriver did not start: {}",
        lab.log("chromedriver")
    );
    Some("127.0.0.1:9515".into())
}

#[test]
fn status_page_in_headless_chromium() {
    reenter!();
    let mut p = pair("page");
    let lab = &p.lab;
    let Some(driver) = chromedriver(lab) else {
        return;
    };
    for (node, prio) in [("lb1", 150), ("lb2", 100)] {
        let ip = lab.host(node).ip.clone();
        let cfg = format!("metrics_listen = \"{ip}:9100\"\n{}", node_config(prio, ""));
        lab.tandem(node, node, &cfg);
    }
    wait_state(lab, "lb1", "master", Duration::from_secs(5));
    wait_state(lab, "lb2", "backup", Duration::from_secs(5));
    lab.wait_for("3 backends up", Duration::from_secs(5), || {
        lab.status("lb1").is_some_and(|s| s.pools[0].healthy == 3)
    });
    let artifacts = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/ci-artifacts");
    let _ = std::fs::create_dir_all(&artifacts);
    let profile = lab.dir.join("chromium-profile").display().to_string();
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let (seen_tx, seen_rx) = std::sync::mpsc::channel::<String>();
    let browser = lab.in_ns("client", move || {
        let s = webdriver::Session::new(&driver, &profile);
        let mut shots = Vec::new();
        // The backup's page first: a person sees BACKUP and who is master.
        s.goto("http://10.77.0.2:9100/");
        assert_eq!(s.script("return document.title"), "tandem status");
        let row = s.text("#vrrp tr[data-instance=\"vip1\"]");
        assert!(
            row.contains("BACKUP") && row.contains("10.77.0.1"),
            "lb2 row: {row:?}"
        );
        s.goto("http://10.77.0.1:9100/");
        let row = s.text("#vrrp tr[data-instance=\"vip1\"]");
        assert!(
            row.contains("MASTER") && row.contains("10.77.0.100"),
            "lb1 row: {row:?}"
        );
        let web3 = s.text("tr[data-backend=\"web3\"]");
        assert!(
            web3.contains("UP") && web3.contains("10.77.0.23:8080"),
            "{web3:?}"
        );
        assert!(s.text("h3").contains("3/3 healthy"), "{}", s.text("h3"));
        // The badges are styled, not just text: the page's CSS applied.
        let bg = s.script(
            "return getComputedStyle(document.querySelector('#vrrp .badge')).backgroundColor",
        );
        assert_ne!(bg, "rgba(0, 0, 0, 0)", "badge has a colour");
        shots.push(("status-page-master.png", s.screenshot_png()));
        let _ = seen_tx.send(web3);
        // The test stops web3; the open page must show it without a reload.
        rx.recv().expect("backend stopped");
        let t0 = Instant::now();
        let mut last = String::new();
        while t0.elapsed() < Duration::from_secs(8) {
            last = s.text("tr[data-backend=\"web3\"]");
            if last.contains("DOWN") {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let h3 = s.text("h3");
        let live = s.text("#live");
        shots.push(("status-page-backend-down.png", s.screenshot_png()));
        (last, h3, live, t0.elapsed(), shots)
    });
    let before = seen_rx
        .recv_timeout(Duration::from_secs(90))
        .unwrap_or_else(|_| panic!("browser thread failed: {:?}", lab.log("chromedriver")));
    eprintln!("web3 row before: {before:?}");
    drop(p.backends.pop());
    let _ = tx.send(());
    let (row, h3, live, took, shots) = browser.join().expect("browser checks");
    for (name, png) in shots {
        assert!(png.starts_with(b"\x89PNG"), "{name} is a PNG");
        std::fs::write(artifacts.join(name), png).expect("save screenshot");
        eprintln!("screenshot: target/ci-artifacts/{name}");
    }
    assert!(row.contains("DOWN"), "web3 row after it died: {row:?}");
    assert!(h3.contains("2/3 healthy"), "{h3:?}");
    assert!(live.contains("updated"), "refreshed in place: {live:?}");
    eprintln!("status page showed web3 DOWN {took:?} after it was stopped");
}
