//! Scale-out lab (issue 13): a router namespace running BIRD with ECMP in front of three tandem
//! nodes, each with its own BIRD speaking BGP to the router; two backends; a client that reaches
//! the anycast address through the router. Real processes, real BGP, real SIGKILL.

mod support;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use support::lab::*;
use support::*;

const KEY: &str = "ecmp-lab-shared-key-0123456789abcdef";

fn bird_node(id: &str, me: &str, router: &str) -> String {
    format!(
        "router id {me};\nprotocol device {{ scan time 10; }}\nipv4 table tandem4;\n\
         protocol kernel tandem_routes {{ kernel table 100; learn; scan time 2; ipv4 {{ table tandem4; import all; export none; }}; }}\n\
         protocol pipe {{ table master4; peer table tandem4; import all; export none; }}\n\
         protocol bgp up_{id} {{ local {me} as 65001; neighbor {router} as 65000; hold time 3; keepalive time 1; connect retry time 1; \
         ipv4 {{ import none; export where proto = \"tandem_routes\"; next hop self; }}; }}\n"
    )
}

fn bird_router(me: &str, nodes: &[&str]) -> String {
    let mut s = format!(
        "router id {me};\nprotocol device {{ scan time 10; }}\n\
         protocol kernel {{ merge paths on; ipv4 {{ import none; export all; }}; }}\n"
    );
    for (i, n) in nodes.iter().enumerate() {
        s.push_str(&format!(
            "protocol bgp n{i} {{ local {me} as 65000; neighbor {n} as 65001; hold time 3; keepalive time 1; connect retry time 1; \
             ipv4 {{ import all; export none; }}; }}\n"
        ));
    }
    s
}

fn tandem_cfg(vip: &str, me: &str, peers: &[&str], backends: &[&str]) -> String {
    let peers: Vec<String> = peers.iter().map(|p| format!("\"{p}:7480\"")).collect();
    Config::new()
        .pool(
            backends
                .iter()
                .fold(Pool::new("web").algorithm("maglev"), |p, b| {
                    p.backend_table(&format!("{{ address = \"{b}:8080\" }}"))
                })
                .health(r#"{ check = "tcp", interval = "200ms", timeout = "150ms", rise = 1, fall = 2 }"#),
        )
        .listener(Listener::new("web", &format!("{vip}:80"), "web").protocol("http"))
        .raw(&format!(
            r#"[[anycast]]
name = "web"
address = "{vip}"
pools = ["web"]
converge = "1s"
announce_delay = "0s"

[sync]
listen = "{me}:7480"
peers = [{}]
key = "{KEY}"
"#,
            peers.join(", ")
        ))
        .render()
}

/// Next hops the router has for the VIP.
fn nexthops(lab: &Lab, vip: &str) -> Vec<String> {
    let out = lab.ip("r", &["route", "show", vip]);
    out.split_whitespace()
        .collect::<Vec<_>>()
        .windows(2)
        .filter(|w| w[0] == "via")
        .map(|w| w[1].to_string())
        .collect()
}

fn listener_total(lab: &Lab, label: &str) -> u64 {
    lab.status(label)
        .and_then(|s| s.listeners.first().map(|l| l.total))
        .unwrap_or(0)
}

#[test]
fn ecmp_three_nodes_bird_drain_sigkill_and_sync() {
    reenter!();
    if std::process::Command::new("bird")
        .arg("--version")
        .output()
        .is_err()
    {
        panic!("THIS NEEDS BIRD 2: apt-get install bird2 (CI installs it in .ci/run)");
    }
    let mut lab = Lab::new("ecmp");
    let net = 60 + (std::process::id() % 60);
    let a = |h: u32| format!("10.{net}.0.{h}");
    let vip = format!("10.{}.0.1", net + 100);
    lab.add_host("r", &format!("{}/24", a(1)));
    let nodes = ["n1", "n2", "n3"];
    let node_ip: Vec<String> = (0..3).map(|i| a(11 + i)).collect();
    for (n, ip) in nodes.iter().zip(&node_ip) {
        lab.add_host(n, &format!("{ip}/24"));
    }
    lab.add_host("b1", &format!("{}/24", a(21)));
    lab.add_host("b2", &format!("{}/24", a(22)));
    lab.add_host("c", &format!("{}/24", a(99)));
    // The client reaches the VIP only through the router; the router hashes on the 5-tuple and
    // sends no redirects (the nodes share its segment).
    lab.ip("c", &["route", "add", &format!("{vip}/32"), "via", &a(1)]);
    for (k, v) in [
        ("net.ipv4.ip_forward", "1"),
        ("net.ipv4.fib_multipath_hash_policy", "1"),
        ("net.ipv4.conf.all.send_redirects", "0"),
        ("net.ipv4.conf.eth0.send_redirects", "0"),
    ] {
        let out = lab.exec("r", &["sysctl", "-qw", &format!("{k}={v}")]);
        assert!(out.status.success(), "sysctl {k}");
    }
    for n in nodes {
        lab.ip(n, &["route", "add", "default", "via", &a(1)]);
    }
    let _b1 = Backend::in_lab(&lab, "b1", 8080, "b1");
    let _b2 = Backend::in_lab(&lab, "b2", 8080, "b2");
    let refs: Vec<&str> = node_ip.iter().map(String::as_str).collect();
    let conf = lab.file("bird-r.conf", &bird_router(&a(1), &refs));
    let sock = lab.dir.join("bird-r.ctl").display().to_string();
    let pid = lab.dir.join("bird-r.pid").display().to_string();
    lab.spawn(
        "r",
        "bird-r",
        &["bird", "-f", "-c", &conf, "-s", &sock, "-P", &pid],
    );
    let backends = [a(21), a(22)];
    let brefs: Vec<&str> = backends.iter().map(String::as_str).collect();
    for (i, n) in nodes.iter().enumerate() {
        let conf = lab.file(&format!("bird-{n}.conf"), &bird_node(n, &node_ip[i], &a(1)));
        let sock = lab.dir.join(format!("bird-{n}.ctl")).display().to_string();
        let pid = lab.dir.join(format!("bird-{n}.pid")).display().to_string();
        lab.spawn(
            n,
            &format!("bird-{n}"),
            &["bird", "-f", "-c", &conf, "-s", &sock, "-P", &pid],
        );
        let peers: Vec<&str> = node_ip
            .iter()
            .filter(|p| **p != node_ip[i])
            .map(String::as_str)
            .collect();
        lab.tandem(n, n, &tandem_cfg(&vip, &node_ip[i], &peers, &brefs));
    }

    // 1. All three announced: the router holds three equal paths.
    let t = lab.wait_for(
        "three ECMP paths on the router",
        Duration::from_secs(20),
        || nexthops(&lab, &vip).len() == 3,
    );
    eprintln!("ecmp: three paths installed {t:?} after the last node started");
    let st = lab.status("n1").expect("status");
    assert!(st.anycast[0].announced, "{st:?}");

    // 2. Flows from many source ports spread over all three nodes; every node picks the same
    // backend for this client (maglev over the same config).
    let target: SocketAddr = format!("{vip}:80").parse().expect("addr");
    let before: Vec<u64> = nodes.iter().map(|n| listener_total(&lab, n)).collect();
    let bodies = lab
        .in_ns("c", move || {
            (0..150)
                .map(|_| http_get(target).timeout(Duration::from_secs(2)).body())
                .collect::<Vec<_>>()
        })
        .join()
        .expect("client");
    let failed = bodies.iter().filter(|b| b.is_err()).count();
    assert_eq!(failed, 0, "{bodies:?}");
    let per_node: Vec<u64> = nodes
        .iter()
        .zip(&before)
        .map(|(n, b)| listener_total(&lab, n) - b)
        .collect();
    eprintln!("ecmp: 150 connections per node {per_node:?}");
    assert!(per_node.iter().all(|&c| c >= 20), "{per_node:?}");
    let first = bodies[0].clone().expect("ok");
    assert!(
        bodies.iter().all(|b| b.as_ref().ok() == Some(&first)),
        "one client, one backend, whichever node served it"
    );

    // 3. Drain n1: withdrawn before it stops accepting, no failed new connection.
    let probe = ProbeClient::start_with_timeout(
        &lab,
        "c",
        target,
        Duration::from_millis(10),
        Duration::from_millis(500),
        3000,
    );
    std::thread::sleep(Duration::from_millis(300));
    let t0 = Instant::now();
    let out = std::process::Command::new(BIN)
        .args(["anycast", "drain", "web", "-s"])
        .arg(lab.dir.join("n1.sock"))
        .output()
        .expect("tandem anycast drain");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let n1 = node_ip[0].clone();
    let drained = lab.wait_for("n1 withdrawn", Duration::from_secs(10), || {
        !nexthops(&lab, &vip).contains(&n1)
    });
    std::thread::sleep(Duration::from_millis(500));
    let st = lab.status("n1").expect("status");
    assert!(!st.anycast[0].announced);
    assert!(st.anycast[0].reason.contains("drained"), "{st:?}");
    let probes = probe.stop();
    let (failed, _) = outage(&probes, t0);
    eprintln!(
        "ecmp: drain withdrew n1 from the router in {drained:?}; {failed} failed of {} connections",
        probes.len()
    );
    // New connections never fail after the withdraw. One short connection
    // that is mid-handshake in the instant the router swaps its nexthops
    // can be re-hashed to another node (Linux ECMP is hash-threshold, not
    // connection-tracking) and reset: seen once in ~10 CI runs.
    assert!(failed <= 1, "{failed} failed during the drain");

    // 4. SIGKILL n2 (its BIRD stays up): the TUN device dies with it, the route goes.
    let probe = ProbeClient::start_with_timeout(
        &lab,
        "c",
        target,
        Duration::from_millis(10),
        Duration::from_millis(300),
        3000,
    );
    std::thread::sleep(Duration::from_millis(300));
    let n2 = node_ip[1].clone();
    let t0 = Instant::now();
    lab.kill("n2", Signal::SIGKILL);
    let gone = lab.wait_for(
        "n2 withdrawn after SIGKILL",
        Duration::from_secs(10),
        || !nexthops(&lab, &vip).contains(&n2),
    );
    std::thread::sleep(Duration::from_millis(700));
    let probes = probe.stop();
    let (failed, gap) = outage(&probes, t0);
    eprintln!("ecmp: SIGKILL of n2: route gone from the router in {gone:?}; {failed} failed connections of {}, outage {gap:?}", probes.len());
    assert!(gone < Duration::from_secs(3), "within the BGP hold time");
    let after: Vec<&Probe> = probes
        .iter()
        .filter(|p| p.at > t0 + gone + Duration::from_millis(100))
        .collect();
    assert!(
        !after.is_empty() && after.iter().all(|p| p.ok),
        "the live node carries on"
    );
    assert!(
        after.iter().all(|p| p.body == first),
        "flows on live nodes keep their backend"
    );

    // 5. Sync: garbage, a wrong key and an authentic-but-malformed body are dropped and counted.
    let n1_sync: SocketAddr = format!("{}:7480", node_ip[0]).parse().expect("addr");
    let signed_bad = {
        let k = tandem::sync::codec::key(KEY.as_bytes());
        let mut b = b"TSY1".to_vec();
        b.extend_from_slice(&[0; 24]);
        b.extend_from_slice(&1u16.to_be_bytes());
        b.extend_from_slice(&[9, 0, 0, 0]);
        let tag = ring::hmac::sign(&k, &b);
        b.extend_from_slice(tag.as_ref());
        b
    };
    let wrong_key = {
        let k = tandem::sync::codec::key(b"not the key, but just as long as the real one");
        let mut seq = 0;
        tandem::sync::codec::encode(
            &k,
            1,
            &mut seq,
            0,
            &[tandem::sync::codec::Record::Forget {
                pool: "web".into(),
                session: "x".into(),
            }],
        )
        .remove(0)
    };
    lab.in_ns("n3", move || {
        let s = UdpSocket::bind("0.0.0.0:0").expect("udp");
        for d in [b"hello".to_vec(), wrong_key, signed_bad] {
            s.send_to(&d, n1_sync).expect("send");
        }
    })
    .join()
    .expect("sender");
    lab.wait_for("rejections counted", Duration::from_secs(3), || {
        lab.status("n1").is_some_and(|s| {
            s.sync
                .as_ref()
                .is_some_and(|y| y.rejected_unauthenticated == 2 && y.rejected_malformed == 1)
        })
    });
}
