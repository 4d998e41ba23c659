//! The Vagrant scenario, run in the namespace lab from the built package's
//! own files: the binary, the example configs (the ones vagrant/ installs)
//! and the systemd unit's ExecStart/ExecStopPost command lines, all taken
//! from `dpkg-deb -x` of the .deb. The daemon runs as an unprivileged user
//! holding exactly the unit's ambient capabilities (setpriv).
//!
//! Needs the extracted package in $TANDEM_DEB_ROOT and real root:
//! `bash tests/package.sh` provides both (CI runs it).

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use support::lab::*;
use support::*;

const VIP: &str = "192.168.56.100";

/// `Key=` lines of the unit, in order.
fn unit_lines(unit: &str, key: &str) -> Vec<String> {
    unit.lines()
        .filter_map(|l| l.strip_prefix(&format!("{key}=")))
        .map(String::from)
        .collect()
}

struct Pkg {
    root: PathBuf,
    unit: String,
}

impl Pkg {
    fn bin(&self) -> String {
        self.root.join("usr/sbin/tandem").display().to_string()
    }

    /// A unit command line with the package paths rewritten into the
    /// extracted root and the per-node config.
    fn command(&self, key: &str, config: &str) -> Vec<String> {
        let line = unit_lines(&self.unit, key)
            .into_iter()
            .next()
            .unwrap_or_else(|| panic!("unit has no {key}="));
        line.split_whitespace()
            .map(|w| match w {
                "/usr/sbin/tandem" => self.bin(),
                "/etc/tandem/tandem.toml" => config.to_string(),
                other => other.to_string(),
            })
            .collect()
    }

    /// The unit's ambient capabilities, as setpriv wants them.
    fn caps(&self) -> String {
        let line = unit_lines(&self.unit, "AmbientCapabilities").join(" ");
        line.split_whitespace()
            .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase()))
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Runs `argv` in `host` as nobody with the given capabilities.
fn as_nobody(caps: &str, argv: &[String]) -> Vec<String> {
    let mut v: Vec<String> = [
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        &format!("--inh-caps=-all,{caps}"),
        &format!("--ambient-caps=-all,{caps}"),
        &format!("--bounding-set=-all,{caps}"),
        "--",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.extend_from_slice(argv);
    v
}

fn node_config(lab: &Lab, pkg: &Pkg, example: &str, node: &str) -> String {
    let text =
        std::fs::read_to_string(pkg.root.join("usr/share/doc/tandem/examples").join(example))
            .unwrap_or_else(|e| panic!("{example} in the package: {e}"));
    // Two nodes share this machine's filesystem: one admin socket each.
    let text = text.replace(
        "/run/tandem/admin.sock",
        &lab.dir.join(format!("{node}.sock")).display().to_string(),
    );
    lab.file(&format!("{node}.toml"), &text)
}

fn main() {
    let Some(root) = std::env::var_os("TANDEM_DEB_ROOT").map(PathBuf::from) else {
        eprintln!(
            "package_lab: set TANDEM_DEB_ROOT to an extracted .deb (bash tests/package.sh does)"
        );
        std::process::exit(1);
    };
    assert!(
        nix::unistd::geteuid().is_root() && std::env::var_os("TANDEM_LAB_USERNS").is_none(),
        "THIS TEST NEEDS REAL ROOT: it runs tandem as another user with setpriv"
    );
    let unit = std::fs::read_to_string(root.join("usr/lib/systemd/system/tandem.service"))
        .expect("unit in the package");
    let pkg = Pkg { root, unit };
    let caps = pkg.caps();
    assert_eq!(caps, "+net_admin,+net_raw,+net_bind_service,+sys_nice");

    let mut lab = Lab::new("pkg");
    for (h, ip) in [
        ("lb1", "192.168.56.11/24"),
        ("lb2", "192.168.56.12/24"),
        ("web1", "192.168.56.21/24"),
        ("web2", "192.168.56.22/24"),
        ("client", "192.168.56.50/24"),
    ] {
        lab.add_host(h, ip);
    }
    // Vagrant's private network is eth1 on the VMs; the examples say eth1.
    for h in ["lb1", "lb2"] {
        lab.ip(h, &["link", "set", "eth0", "down"]);
        lab.ip(h, &["link", "set", "eth0", "name", "eth1"]);
        lab.ip(h, &["link", "set", "eth1", "up"]);
    }
    let _b1 = Backend::in_lab(&lab, "web1", 8080, "web1");
    let _b2 = Backend::in_lab(&lab, "web2", 8080, "web2");
    // nobody must be able to create its admin socket in the lab directory.
    Command::new("chmod")
        .arg("0777")
        .arg(&lab.dir)
        .status()
        .expect("chmod");

    let cfg1 = node_config(&lab, &pkg, "active-passive-lb1.toml", "lb1");
    let cfg2 = node_config(&lab, &pkg, "active-passive-lb2.toml", "lb2");
    let t0 = Instant::now();

    // The unit's ExecStartPre (tandem check) must pass on the node configs.
    for cfg in [&cfg1, &cfg2] {
        let argv = pkg.command("ExecStartPre", cfg);
        let out = Command::new(&argv[0])
            .args(&argv[1..])
            .output()
            .expect("check");
        assert!(
            out.status.success(),
            "ExecStartPre: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Start both exactly as the unit does, as nobody with the unit's caps.
    let start = |node: &str, cfg: &str| {
        let argv = as_nobody(&caps, &pkg.command("ExecStart", cfg));
        let refs: Vec<&str> = argv.iter().map(|s| s.as_str()).collect();
        lab.spawn(node, node, &refs);
    };
    start("lb1", &cfg1);
    lab.wait_for("lb1 master", Duration::from_secs(10), || {
        lab.vrrp_state("lb1", "web-vip") == "master"
    });
    start("lb2", &cfg2);
    lab.wait_for("lb2 backup", Duration::from_secs(10), || {
        lab.vrrp_state("lb2", "web-vip") == "backup"
    });
    assert!(
        lab.has_addr_on("lb1", "eth1", VIP),
        "nobody + CAP_NET_ADMIN claimed the VIP"
    );
    let vip = SocketAddr::from(([192, 168, 56, 100], 80));
    let r = lab
        .in_ns("client", move || {
            http_get(vip).timeout(Duration::from_secs(2)).body()
        })
        .join()
        .expect("client");
    assert!(
        r.as_deref().is_ok_and(|b| b.starts_with("web")),
        "HTTP on :80 through the VIP: {r:?}"
    );
    // The client learned lb1's MAC for the VIP.
    let lb1_mac = lab.host("lb1").mac.clone();
    assert_eq!(lab.neigh("client", VIP), Some(lb1_mac));
    let uid = std::fs::read_to_string(format!("/proc/{}/status", pid_of_tandem(&lab, "lb1")))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .map(String::from)
        .unwrap_or_default();
    assert!(uid.contains("65534"), "runs as nobody: {uid}");
    // With the unit's CAP_SYS_NICE the election thread, and only it, runs SCHED_RR.
    let policies = thread_policies(pid_of_tandem(&lab, "lb1"));
    let rr: Vec<&String> = policies
        .iter()
        .filter(|(_, p)| *p == libc::SCHED_RR as u32)
        .map(|(c, _)| c)
        .collect();
    assert_eq!(rr, vec!["tandem-vrrp"], "threads at SCHED_RR: {policies:?}");

    // Kill the master; systemd then runs ExecStopPost: lb1 holds no VIP.
    lab.kill("lb1", Signal::SIGKILL);
    let killed = Instant::now();
    lab.wait_for("lb2 master", Duration::from_secs(3), || {
        lab.vrrp_state("lb2", "web-vip") == "master"
    });
    let argv = as_nobody(&caps, &pkg.command("ExecStopPost", &cfg1));
    let mut full = vec![
        "ip".to_string(),
        "netns".into(),
        "exec".into(),
        lab.host("lb1").ns.clone(),
    ];
    full.extend(argv);
    let out = Command::new(&full[0])
        .args(&full[1..])
        .output()
        .expect("cleanup");
    assert!(
        out.status.success(),
        "ExecStopPost: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !lab.has_addr_on("lb1", "eth1", VIP),
        "ExecStopPost removed the dead node's VIP"
    );
    assert!(
        killed.elapsed() < Duration::from_secs(2),
        "removed before the address lifetime"
    );
    // The client's neighbour entry moved to lb2 (gratuitous ARP from nobody + CAP_NET_RAW).
    let lb2_mac = lab.host("lb2").mac.clone();
    lab.wait_for("client on lb2", Duration::from_secs(2), || {
        lab.neigh("client", VIP) == Some(lb2_mac.clone())
    });
    let r = lab
        .in_ns("client", move || {
            http_get(vip).timeout(Duration::from_secs(2)).body()
        })
        .join()
        .expect("client");
    assert!(r.is_ok(), "served by lb2: {r:?}");
    lab.reap("lb1");

    // Missing capability: a clear error naming it, exit 1.
    let argv = as_nobody(
        "+net_admin,+net_bind_service",
        &pkg.command("ExecStart", &cfg1),
    );
    let mut full = vec![
        "ip".to_string(),
        "netns".into(),
        "exec".into(),
        lab.host("lb1").ns.clone(),
    ];
    full.extend(argv);
    let out = Command::new(&full[0])
        .args(&full[1..])
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("missing capability CAP_NET_RAW"), "{err}");
    let argv = as_nobody("+net_admin,+net_raw", &pkg.command("ExecStart", &cfg1));
    let mut full = vec![
        "ip".to_string(),
        "netns".into(),
        "exec".into(),
        lab.host("lb1").ns.clone(),
    ];
    full.extend(argv);
    let out = Command::new(&full[0])
        .args(&full[1..])
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("missing capability CAP_NET_BIND_SERVICE"),
        "{err}"
    );
    println!(
        "package lab scenario passed in {:.1}s",
        t0.elapsed().as_secs_f64()
    );
    let _ = Path::new("");
}

fn pid_of_tandem(lab: &Lab, label: &str) -> u32 {
    // setpriv execs tandem in place, so the spawned pid is tandem's.
    let out = Command::new("pgrep")
        .args(["-f", &format!("{}.toml", lab.dir.join(label).display())])
        .output()
        .expect("pgrep");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse::<u32>().ok())
        .find(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "tandem")
        })
        .unwrap_or(0)
}
