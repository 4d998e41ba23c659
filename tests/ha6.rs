//! Dual stack in the namespace lab: VRRPv3 over IPv6 (RFC 5798 §5.1.2) with
//! real `tandem` processes, an IPv4 and an IPv6 instance in one sync group,
//! unsolicited neighbour advertisements moving a client's neighbour entry,
//! hostile IPv6 adverts, keepalived over IPv6 both ways and Wireshark's
//! dissector reading our adverts; plus the IPv6 data plane (listeners on an
//! IPv6 VIP, IPv6 backends and health checks, X-Forwarded-For / Forwarded,
//! PROXY v1, source-hash stickiness) through a real tandem process.

mod support;

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use support::lab::v6::*;
use support::lab::*;
use support::*;
use tandem::admin::status::VrrpStatus;

const VIP4: &str = "10.77.0.100";
const VIP6: &str = "2001:db8:77::100";

fn vip4() -> SocketAddr {
    SocketAddr::new(VIP4.parse().expect("ip"), 80)
}

fn vip6(port: u16) -> SocketAddr {
    SocketAddr::new(VIP6.parse().expect("ip"), port)
}

/// lb1, lb2, a client and two backends, all dual-stack; the backends echo
/// what the proxy told them, on [::]:8080 (IPv4 and IPv6).
fn pair(tag: &str) -> Pair {
    let mut lab = Lab::new(tag);
    add_dual_host(&mut lab, "lb1", "10.77.0.1/24", "2001:db8:77::1/64");
    add_dual_host(&mut lab, "lb2", "10.77.0.2/24", "2001:db8:77::2/64");
    add_dual_host(&mut lab, "client", "10.77.0.50/24", "2001:db8:77::50/64");
    for i in 1..=2 {
        add_dual_host(
            &mut lab,
            &format!("be{i}"),
            &format!("10.77.0.2{i}/24"),
            &format!("2001:db8:77::2{i}/64"),
        );
    }
    let backends = (1..=2)
        .map(|i| {
            Backend::spec(&format!("web{i}"))
                .mode(Mode::Forwarded)
                .bind("[::]:8080".parse().expect("addr"))
                .in_ns(&lab, &format!("be{i}"))
                .start()
        })
        .collect();
    Pair { lab, backends }
}

/// A dual-stack node: an IPv4 and an IPv6 instance in one sync group (same
/// VRID: VRIDs are per address family), listeners on both VIPs in front of
/// IPv6 backends health-checked over IPv6.
fn node_config(priority: u8, extra_vrrp: &str) -> String {
    let instance = |name: &str, vip: String| {
        Vrrp::new(name, 51, priority)
            .advert("100ms")
            .vip(&vip)
            .preempt_delay("0s")
            .set("sync_group", "\"site\"")
            .raw(extra_vrrp)
    };
    Config::new()
        .pool(web6_pool("round_robin"))
        .listener(Listener::new("web4", &format!("{VIP4}:80"), "web"))
        .listener(Listener::new("web6", &format!("[{VIP6}]:80"), "web"))
        .vrrp(instance("v4", format!("{VIP4}/24")))
        .vrrp(instance("v6", format!("{VIP6}/64")))
        .render()
}

/// Pool "web" over the two IPv6 backends, health-checked over IPv6.
fn web6_pool(algorithm: &str) -> Pool {
    Pool::new("web")
        .algorithm(algorithm)
        .health(r#"{ check = "http", path = "/", interval = "200ms", timeout = "100ms", rise = 1, fall = 2 }"#)
        .backend("web1", "[2001:db8:77::21]:8080")
        .backend("web2", "[2001:db8:77::22]:8080")
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

fn instance(lab: &Lab, label: &str, name: &str) -> VrrpStatus {
    lab.status(label).expect("status").instance(name).clone()
}

fn get(lab: &Lab, addr: SocketAddr) -> Result<String, String> {
    lab.in_ns("client", move || {
        http_get(addr).timeout(Duration::from_secs(2)).body()
    })
    .join()
    .expect("client")
}

/// lb1 (150) master of both, lb2 (100) backup of both; the client has
/// talked to both VIPs, so it holds neighbour entries that only an
/// announcement can move.
fn elect(lab: &Lab, extra: &str) {
    lab.tandem("lb1", "lb1", &node_config(150, extra));
    for i in ["v4", "v6"] {
        wait_instance(lab, "lb1", i, "master", Duration::from_secs(5));
    }
    lab.tandem("lb2", "lb2", &node_config(100, extra));
    for i in ["v4", "v6"] {
        wait_instance(lab, "lb2", i, "backup", Duration::from_secs(5));
    }
    lab.wait_for("backends healthy", Duration::from_secs(5), || {
        get(lab, vip6(80)).is_ok() && get(lab, vip4()).is_ok()
    });
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
fn dual_stack_pair_moves_both_families_together() {
    reenter!();
    let p = pair("ds");
    let lab = &p.lab;
    elect(lab, "vip_lifetime = \"2s\"");
    let (mac1, mac2) = (lab.host("lb1").mac.clone(), lab.host("lb2").mac.clone());
    assert!(has_addr6(lab, "lb1", VIP6) && lab.has_addr("lb1", VIP4));
    assert!(!has_addr6(lab, "lb2", VIP6) && !lab.has_addr("lb2", VIP4));
    // The client reaches the IPv6 backends over both VIPs.
    for addr in [vip4(), vip6(80)] {
        let body = get(lab, addr).expect("HTTP via the VIP");
        assert!(body.starts_with("web"), "{addr}: {body:?}");
    }
    assert_eq!(lab.neigh("client", VIP6), Some(mac1.clone()));
    // Status: the IPv6 instance, its address, and lb1's link-local address
    // as the master lb2 hears.
    let ll1 = link_local(lab, "lb1").to_string();
    lab.wait_for(
        "lb2 hears lb1's IPv6 adverts",
        Duration::from_secs(2),
        || instance(lab, "lb2", "v6").adverts_received > 5,
    );
    let v6 = instance(lab, "lb2", "v6");
    assert_eq!(v6.virtual_ips[0], format!("{VIP6}/64"));
    assert_eq!(v6.master.as_deref(), Some(ll1.as_str()), "{v6:?}");
    assert_eq!(v6.peers[0].address, ll1.as_str());
    assert_eq!(v6.peers[0].checksum, "pseudo-header");
    assert!(v6.adverts_received > 5, "{v6:?}");
    assert_eq!(
        instance(lab, "lb2", "v4").master.as_deref(),
        Some("10.77.0.1")
    );

    // SIGKILL: both instances move to lb2.
    let client = ProbeClient::start_with_timeout(
        lab,
        "client",
        vip6(80),
        Duration::from_millis(10),
        Duration::from_millis(200),
        3000,
    );
    std::thread::sleep(Duration::from_millis(300));
    let killed = Instant::now();
    lab.kill("lb1", Signal::SIGKILL);
    let t6 = wait_instance(lab, "lb2", "v6", "master", Duration::from_secs(3));
    let t4 = wait_instance(lab, "lb2", "v4", "master", Duration::from_secs(3));
    eprintln!("SIGKILL: lb2 v6 master after {t6:?}, v4 after {t4:?}");
    assert!(t6 < Duration::from_millis(900), "v6 takeover after {t6:?}");
    assert!(has_addr6(lab, "lb2", VIP6) && lab.has_addr("lb2", VIP4));
    // The unsolicited NA moved the client's entry: no neighbour
    // unreachability detection (5 s DELAY, then probes) was waited for.
    let flip = lab.wait_for(
        "client's IPv6 neighbour entry on lb2",
        Duration::from_secs(1),
        || lab.neigh("client", VIP6) == Some(mac2.clone()),
    );
    let state = neigh_state(lab, "client", VIP6);
    eprintln!(
        "client's entry for {VIP6} points at lb2 {flip:?} after lb2 was seen master ({state})"
    );
    lab.wait_for("HTTP over IPv6 via lb2", Duration::from_secs(2), || {
        client
            .snapshot()
            .last()
            .is_some_and(|p| p.ok && p.at > killed + t6)
    });
    // The dead node's IPv6 address expires by its lifetime (self-fencing).
    lab.wait_for("lb1's IPv6 VIP to expire", Duration::from_secs(4), || {
        !has_addr6(lab, "lb1", VIP6)
    });
    std::thread::sleep(Duration::from_millis(200));
    let probes = client.stop();
    let (_, gap) = report("IPv6 SIGKILL failover", &probes, killed);
    assert!(gap < Duration::from_secs(1), "outage {gap:?}");
    lab.reap("lb1");

    // `tandem cleanup` (ExecStopPost) removes the IPv6 VIP a killed daemon left.
    lab.kill("lb2", Signal::SIGKILL);
    lab.wait("lb2", Duration::from_secs(2));
    assert!(
        has_addr6(lab, "lb2", VIP6),
        "SIGKILL left the address behind"
    );
    let cfg = lab.dir.join("lb2.toml").display().to_string();
    let out = lab.exec("lb2", &[BIN, "cleanup", "-c", &cfg]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!has_addr6(lab, "lb2", VIP6), "cleanup removed the IPv6 VIP");
    assert!(!lab.has_addr("lb2", VIP4), "cleanup removed the IPv4 VIP");
}

/// A planned stop over IPv6 fails no new connection. It used to lose one in
/// about half the runs: the IPv6 VIP, in the backends' /64, was picked by
/// source address selection for lb1's upstream connections, so a request in
/// flight on one when the VIP moved never got its answer (the backend replied
/// to the VIP, now on lb2) and the client timed out. IPv6 VIPs are now added
/// deprecated (preferred_lft 0) and are never a source (`net::vip::add_vip`).
#[test]
fn ipv6_graceful_stop_fails_no_new_connection() {
    reenter!();
    let p = pair("term6");
    let lab = &p.lab;
    elect(lab, "");
    // Graceful stop: no new IPv6 connection fails.
    let client = ProbeClient::start(lab, "client", vip6(80), Duration::from_millis(2), 20000);
    std::thread::sleep(Duration::from_millis(300));
    let stopped = Instant::now();
    lab.kill("lb1", Signal::SIGTERM);
    let t = wait_instance(lab, "lb2", "v6", "master", Duration::from_secs(3));
    let exit = lab.wait("lb1", Duration::from_secs(6)).expect("lb1 exits");
    assert!(exit.success(), "lb1 exit {exit:?}");
    std::thread::sleep(Duration::from_millis(300));
    let probes = client.stop();
    let (failed, _) = report("IPv6 graceful stop", &probes, stopped);
    let bad: Vec<&Probe> = probes.iter().filter(|p| p.at >= stopped && !p.ok).collect();
    // As for IPv4 (tests/ha.rs): only a connection in flight at the instant
    // the neighbour entry flips can be reset; none may be refused or time out.
    assert!(
        failed <= 1,
        "failed connections during a planned stop: {bad:?}"
    );
    for p in &bad {
        assert!(p.body.contains("reset"), "only a reset at the flip: {p:?}");
    }
    assert!(probes.iter().filter(|p| p.at > stopped).count() > 50);
    eprintln!("IPv6 graceful stop: lb2 master after {t:?}");
    assert!(!has_addr6(lab, "lb1", VIP6), "lb1 released its IPv6 VIP");
    assert_eq!(instance(lab, "lb2", "v4").state, "master");
}

#[test]
fn ipv6_data_plane_through_tandem() {
    reenter!();
    let p = pair("dp6");
    let lab = &p.lab;
    lab.tandem(
        "lb1",
        "lb1",
        &Config::new()
            .pool(web6_pool("source_hash"))
            .listener(
                Listener::bare("http6", &format!("[{VIP6}]:80"))
                    .protocol("http")
                    .set("forwarded", "true")
                    .set("pool", "\"web\""),
            )
            .listener(
                Listener::bare("tcp6", &format!("[{VIP6}]:81"))
                    .set("send_proxy", "\"v1\"")
                    .set("pool", "\"web\""),
            )
            .vrrp(
                Vrrp::new("v6", 7, 150)
                    .advert("100ms")
                    .vip(&format!("{VIP6}/64")),
            )
            .render(),
    );
    wait_instance(lab, "lb1", "v6", "master", Duration::from_secs(5));
    lab.wait_for("both IPv6 backends healthy", Duration::from_secs(5), || {
        lab.status("lb1").is_some_and(|s| {
            s.pools[0]
                .backends
                .iter()
                .filter(|b| b.health == "up")
                .count()
                == 2
        })
    });
    // HTTP: the backend hears the IPv6 client in both headers; Forwarded
    // quotes the bracketed address (RFC 7239 §4, §6).
    let body = get(lab, vip6(80)).expect("HTTP over IPv6");
    assert!(body.contains("xff=2001:db8:77::50\n"), "{body}");
    assert!(
        body.contains("forwarded=for=\"[2001:db8:77::50]\""),
        "{body}"
    );
    // Source hash: one IPv6 client always lands on the same backend.
    let first = body.lines().next().unwrap_or("").to_string();
    for _ in 0..10 {
        let b = get(lab, vip6(80)).expect("HTTP");
        assert_eq!(b.lines().next(), Some(first.as_str()), "sticky: {b}");
    }
    // L4 with PROXY v1: TCP6, client and VIP addresses and ports.
    let body = get(lab, vip6(81)).expect("TCP over IPv6");
    let proxy = body
        .lines()
        .find_map(|l| l.strip_prefix("proxy="))
        .unwrap_or("");
    let f: Vec<&str> = proxy.split(' ').collect();
    assert_eq!(f.len(), 6, "{proxy:?}");
    assert_eq!(
        &f[..4],
        &["PROXY", "TCP6", "2001:db8:77::50", VIP6],
        "{proxy:?}"
    );
    assert_eq!(f[5], "81");
    // Status and metrics show the IPv6 instance and address.
    let v6 = instance(lab, "lb1", "v6");
    assert_eq!(v6.virtual_ips[0], format!("{VIP6}/64"));
    assert_eq!(v6.family, "ipv6", "{v6:?}");
    assert_eq!(
        v6.source,
        Some(link_local(lab, "lb1").to_string()),
        "{v6:?}"
    );
}

#[test]
fn hostile_ipv6_adverts_are_counted_and_dropped() {
    reenter!();
    use tandem::vrrp::packet::{encode, Advert, ChecksumForm, Version, VRRP_GROUP_V6};
    let mut p = pair("evil6");
    add_dual_host(&mut p.lab, "evil", "10.77.0.66/24", "2001:db8:77::66/64");
    let lab = &p.lab;
    elect(lab, "");
    let group = IpAddr::V6(VRRP_GROUP_V6);
    let evil_mac: [u8; 6] = {
        let m: Vec<u8> = lab
            .host("evil")
            .mac
            .split(':')
            .map(|b| u8::from_str_radix(b, 16).expect("mac"))
            .collect();
        m.try_into().expect("6 bytes")
    };
    let ll: std::net::Ipv6Addr = link_local(lab, "evil");
    let global: std::net::Ipv6Addr = "2001:db8:77::66".parse().expect("ip");
    // Priority 254 beats both nodes: admitted, any of these would move the master.
    let adv = |vrid: u8| Advert {
        version: Version::V3,
        vrid,
        priority: 254,
        interval_cs: 10,
        addrs: vec![VIP6.parse().expect("ip")],
    };
    let good_from = |src: std::net::Ipv6Addr, vrid: u8| {
        encode(
            &adv(vrid),
            IpAddr::V6(src),
            group,
            ChecksumForm::PseudoHeader,
        )
    };
    let mut bad_sum = good_from(ll, 51);
    bad_sum[6] ^= 0x5a;
    let frames = vec![
        vrrp6_frame(evil_mac, ll, VRRP_GROUP_V6, 254, &good_from(ll, 51)),
        vrrp6_frame(evil_mac, global, VRRP_GROUP_V6, 255, &good_from(global, 51)),
        vrrp6_frame(evil_mac, ll, VRRP_GROUP_V6, 255, &bad_sum),
        vrrp6_frame(evil_mac, ll, VRRP_GROUP_V6, 255, &good_from(ll, 99)),
    ];
    let before: Vec<u64> = ["lb1", "lb2"]
        .iter()
        .map(|l| instance(lab, l, "v6").transitions)
        .collect();
    for _ in 0..20 {
        send_frames(lab, "evil", frames.clone());
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
    for (k, label) in ["lb1", "lb2"].iter().enumerate() {
        let v = instance(lab, label, "v6");
        let d = &v.dropped;
        for reason in ["hop_limit", "source", "checksum", "vrid"] {
            let n = d.get(reason).copied().unwrap_or(0);
            assert!(
                n >= 20,
                "{label}: dropped[{reason}] = {n}, want ≥ 20: {d:?}"
            );
        }
        assert_eq!(v.transitions, before[k], "{label} changed state: {v:?}");
        assert!(
            v.peers.iter().all(|p| p.priority != 254),
            "{label}: the attacker became a peer: {v:?}"
        );
    }
    assert_eq!(lab.vrrp_state("lb1", "v6"), "master");
    assert_eq!(lab.vrrp_state("lb2", "v6"), "backup");
    // The control: the same advert, well-formed, is admitted and wins.
    send_frames(
        lab,
        "evil",
        vec![vrrp6_frame(
            evil_mac,
            ll,
            VRRP_GROUP_V6,
            255,
            &good_from(ll, 51),
        )],
    );
    wait_instance(lab, "lb1", "v6", "backup", Duration::from_secs(2));
}

fn keepalived6(lab: &Lab, host: &str, label: &str, priority: u8) {
    let conf = lab.file(
        &format!("{label}.conf"),
        &format!(
            r#"global_defs {{
    vrrp_version 3
    script_user root
    enable_script_security
}}
vrrp_instance vip6 {{
    state BACKUP
    interface eth0
    virtual_router_id 52
    priority {priority}
    advert_int 0.1
    virtual_ipaddress {{
        {VIP6}/64
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

fn tandem6(priority: u8) -> String {
    Config::new()
        .vrrp(
            Vrrp::new("vip6", 52, priority)
                .advert("100ms")
                .vip(&format!("{VIP6}/64"))
                .preempt_delay("0s"),
        )
        .render()
}

fn need(tool: &str, arg: &str) {
    assert!(
        std::process::Command::new(tool).arg(arg).output().is_ok(),
        "THIS TEST NEEDS {tool} (apt install {tool}; .ci/run installs it)"
    );
}

#[test]
fn interoperates_with_keepalived_over_ipv6_both_ways() {
    reenter!();
    need("keepalived", "--version");
    need("tshark", "--version");
    let p = pair("kad6");
    let lab = &p.lab;
    // tandem 150 vs keepalived 100: tandem is master, keepalived stays backup.
    lab.tandem("lb1", "lb1", &tandem6(150));
    wait_instance(lab, "lb1", "vip6", "master", Duration::from_secs(5));
    // Wireshark's dissector reads tandem's adverts, checksum Good.
    let pcap = lab.dir.join("adverts6.pcap").display().to_string();
    let out = lab.exec(
        "lb2",
        &[
            "tshark",
            "-q",
            "-i",
            "eth0",
            "-f",
            "ip6 proto 112",
            "-c",
            "5",
            "-a",
            "duration:5",
            "-w",
            &pcap,
        ],
    );
    assert!(
        out.status.success(),
        "capture: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = lab.exec("lb2", &["tshark", "-r", &pcap, "-V", "-Y", "vrrp"]);
    let text = String::from_utf8_lossy(&out.stdout);
    let ll1 = link_local(lab, "lb1").to_string();
    assert!(
        text.contains("Virtual Router Redundancy Protocol"),
        "{text}"
    );
    assert!(text.contains("Version 3"), "{text}");
    assert!(text.contains(&format!("Source Address: {ll1}")), "{text}");
    assert!(text.contains("Destination Address: ff02::12"), "{text}");
    assert!(text.contains("Hop Limit: 255"), "{text}");
    assert!(text.contains(&format!("IPv6 Address: {VIP6}")), "{text}");
    let good = text.matches("[Checksum Status: Good]").count();
    assert!(good >= 5, "{good} adverts with a Good checksum:\n{text}");
    assert!(!text.contains("Checksum Status: Bad"), "{text}");
    eprintln!("tshark: {good} of tandem's IPv6 adverts decoded, checksum Good");

    keepalived6(lab, "lb2", "ka2", 100);
    lab.wait_for("keepalived backup", Duration::from_secs(5), || {
        lab.log("ka2").contains("Entering BACKUP STATE")
    });
    // Past keepalived's Master_Down_Interval (≈ 0.36 s) several times over:
    // it accepts our IPv6 adverts (its kernel verifies the checksum).
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        !lab.log("ka2").contains("Entering MASTER STATE"),
        "{}",
        lab.log("ka2")
    );
    assert!(!has_addr6(lab, "lb2", VIP6), "keepalived must stay backup");
    assert_eq!(lab.vrrp_state("lb1", "vip6"), "master");
    lab.kill("lb1", Signal::SIGKILL);
    let t0 = Instant::now();
    lab.wait_for("keepalived takes over", Duration::from_secs(3), || {
        has_addr6(lab, "lb2", VIP6)
    });
    eprintln!(
        "keepalived took the IPv6 VIP from tandem after {:?}",
        t0.elapsed()
    );
    lab.kill("ka2", Signal::SIGKILL);
    lab.reap("ka2");
    lab.reap("lb1");
    for h in ["lb1", "lb2"] {
        let _ = lab.exec(
            h,
            &[
                "ip",
                "-6",
                "addr",
                "del",
                &format!("{VIP6}/64"),
                "dev",
                "eth0",
            ],
        );
    }

    // keepalived 150 vs tandem 100: tandem stays backup, then takes over.
    keepalived6(lab, "lb1", "ka1", 150);
    lab.wait_for("keepalived master", Duration::from_secs(5), || {
        has_addr6(lab, "lb1", VIP6)
    });
    lab.tandem("lb2", "lb2", &tandem6(100));
    wait_instance(lab, "lb2", "vip6", "backup", Duration::from_secs(5));
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(lab.vrrp_state("lb2", "vip6"), "backup");
    let v = instance(lab, "lb2", "vip6");
    assert_eq!(v.master.as_deref(), Some(ll1.as_str()), "{v:?}");
    assert_eq!(v.peers[0].address, ll1.as_str(), "{v:?}");
    assert!(v.dropped.is_empty(), "keepalived's adverts dropped: {v:?}");
    lab.kill("ka1", Signal::SIGKILL);
    let t = wait_instance(lab, "lb2", "vip6", "master", Duration::from_secs(3));
    eprintln!("tandem took the IPv6 VIP from keepalived after {t:?}");
    assert!(has_addr6(lab, "lb2", VIP6));
}
