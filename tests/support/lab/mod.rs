//! The network-namespace lab: a switch (a bridge in its own namespace) and
//! any number of hosts, each a namespace with one `eth0` plugged into the
//! switch. [`Lab::add_segment`] adds further, separate segments (more
//! bridges in the switch namespace) and [`Lab::plug`] gives a host another
//! interface on one of them. Real `tandem` processes run inside host namespaces; backends and
//! clients run as threads of the test process that entered a namespace.
//!
//! Everything is named with a per-lab prefix so parallel tests never
//! collide, and [`Lab`]'s `Drop` kills every process and deletes every
//! namespace, even when the test panics.
//!
//! Root or not: as root the lab uses `ip netns` directly. As an ordinary
//! user, [`enter`] re-runs the current test inside `unshare -Urnm` (a user,
//! network and mount namespace where the test is root) with a private
//! tmpfs on /run, as measured in PLATFORM.md.
#![allow(dead_code)]

pub mod v6;
pub mod webdriver;

use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tandem::admin::status::Status;

use super::{config, daemon, http_get, Backend, BIN};

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// The first line of every lab test: makes sure the test may build
/// namespaces, or re-runs this very test (by its own function name, so the
/// two cannot drift apart) inside `unshare -Urnm` and returns with that
/// run's verdict. See [`enter`]. `reenter!(ignored)` re-runs it with
/// `--include-ignored` as well.
#[macro_export]
macro_rules! reenter {
    () => {
        $crate::reenter!(@with [])
    };
    (ignored) => {
        $crate::reenter!(@with ["--include-ignored"])
    };
    (@with [$($more:expr),*]) => {
        if !$crate::support::lab::enter_with(&[
            $crate::support::lab::test_name({
                fn here() {}
                std::any::type_name_of_val(&here)
            }),
            "--exact",
            "--nocapture",
            "--test-threads=1",
            $($more),*
        ]) {
            return;
        }
    };
}

/// The test's path for `--exact` from the type name of a function nested
/// in it: `<crate>::<test path>::here` → `<test path>`.
pub fn test_name(here: &'static str) -> &'static str {
    let path = here.strip_suffix("::here").unwrap_or(here);
    path.split_once("::").map_or(path, |(_, rest)| rest)
}

/// Makes sure the caller may build namespaces. Returns false when the test
/// was re-run in a child user namespace (the caller must return: the child
/// already ran the test and its result was asserted here).
pub fn enter(test_name: &str) -> bool {
    enter_with(&[test_name, "--exact", "--nocapture", "--test-threads=1"])
}

/// Like [`enter`], re-running the current executable with `args`.
pub fn enter_with(args: &[&str]) -> bool {
    if nix::unistd::geteuid().is_root() {
        if std::env::var_os("TANDEM_LAB_USERNS").is_some() {
            // Inside `unshare -Urnm`: give `ip netns` a /run of our own.
            let ok = Command::new("mount")
                .args(["-t", "tmpfs", "tmpfs", "/run"])
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            assert!(ok, "cannot mount a private /run inside the user namespace");
        }
        return true;
    }
    if std::env::var_os("TANDEM_LAB_USERNS").is_some() {
        panic!("unshare -Urnm did not make us root in the user namespace");
    }
    let exe = std::env::current_exe().expect("current exe");
    eprintln!("lab: not root, re-running {args:?} inside `unshare -Urnm` (a user namespace)");
    let status = Command::new("unshare")
        .args(["-Urnm", "--"])
        .arg(exe)
        .args(args)
        .env("TANDEM_LAB_USERNS", "1")
        .status();
    match status {
        Ok(s) => assert!(s.success(), "{args:?} failed inside the user namespace"),
        Err(e) => panic!("THIS NEEDS ROOT or unprivileged user namespaces (`unshare -Urnm`): {e}"),
    }
    false
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    out
}

fn must(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ip(args: &[&str]) -> String {
    must(Command::new("ip").args(args))
}

#[derive(Clone, Debug)]
pub struct Host {
    pub name: String,
    pub ns: String,
    /// Name of this host's port on the switch (in the switch namespace).
    pub port: String,
    pub ip: String,
    pub mac: String,
}

/// A further interface of a host, plugged into a segment other than the
/// front one (see [`Lab::plug`]).
#[derive(Clone, Debug)]
pub struct Plug {
    pub host: String,
    /// The interface's name inside the host namespace.
    pub dev: String,
    /// The segment's bridge (in the switch namespace).
    pub bridge: String,
    /// Name of this interface's port on the switch (in the switch namespace).
    pub port: String,
    pub ip: String,
    pub mac: String,
}

pub struct Lab {
    pub prefix: String,
    pub switch_ns: String,
    pub hosts: Vec<Host>,
    /// Extra interfaces on extra segments. They live in the host and switch
    /// namespaces, so deleting those (Drop) removes them too.
    pub plugs: Vec<Plug>,
    pub dir: PathBuf,
    procs: Mutex<Vec<(String, Child)>>,
}

impl Lab {
    /// A switch with no hosts yet.
    pub fn new(tag: &str) -> Lab {
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        // Interface names are limited to 15 bytes: keep the prefix short.
        let prefix = format!("t{:x}{n}", std::process::id() % 0xfffff);
        let switch_ns = format!("{prefix}-sw-{tag}");
        let dir = std::env::temp_dir().join(format!("tandem-lab-{prefix}-{tag}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("lab dir");
        let lab = Lab {
            prefix,
            switch_ns,
            hosts: Vec::new(),
            plugs: Vec::new(),
            dir,
            procs: Mutex::new(Vec::new()),
        };
        ip(&["netns", "add", &lab.switch_ns]);
        lab.bridge("br0");
        lab.sw(&["link", "set", "lo", "up"]);
        lab
    }

    /// A bridge in the switch namespace.
    fn bridge(&self, name: &str) {
        self.sw(&["link", "add", name, "type", "bridge"]);
        // No STP delay and no multicast snooping surprises: a dumb switch.
        self.sw(&[
            "link",
            "set",
            name,
            "type",
            "bridge",
            "forward_delay",
            "0",
            "mcast_snooping",
            "0",
        ]);
        self.sw(&["link", "set", name, "up"]);
    }

    /// Adds a second (third, ...) switch segment, separate from the front one
    /// every host's `eth0` is on: a bridge of its own in the switch namespace
    /// (so the lab's Drop removes it). Returns the bridge's name.
    pub fn add_segment(&mut self, name: &str) -> String {
        let bridge = format!("br-{name}");
        assert!(
            bridge.len() <= 15 && bridge != "br0",
            "bad segment name {name:?}"
        );
        self.bridge(&bridge);
        bridge
    }

    /// Gives `host` another interface `dev` at `ip_cidr`, plugged into the
    /// segment made by [`Lab::add_segment`]`(segment)`.
    pub fn plug(&mut self, host: &str, dev: &str, segment: &str, ip_cidr: &str) -> Plug {
        let ns = self.host(host).ns.clone();
        let bridge = format!("br-{segment}");
        // Unique in the switch namespace: host ports are `<prefix><name>`,
        // these `<prefix>_<n>` ('_' is not used in host names here).
        let port = format!("{}_{}", self.prefix, self.plugs.len());
        assert!(port.len() <= 15, "port name {port:?} too long");
        let mac = self.wire(&ns, dev, &port, &bridge, ip_cidr);
        let plug = Plug {
            host: host.to_string(),
            dev: dev.to_string(),
            bridge,
            port,
            ip: ip_cidr.split('/').next().unwrap_or("").to_string(),
            mac,
        };
        self.plugs.push(plug.clone());
        plug
    }

    /// A veth from switch port `port` on `bridge` to `dev` in namespace `ns`,
    /// addressed `ip_cidr` and up; returns `dev`'s MAC.
    fn wire(&self, ns: &str, dev: &str, port: &str, bridge: &str, ip_cidr: &str) -> String {
        ip(&[
            "-n",
            &self.switch_ns,
            "link",
            "add",
            port,
            "type",
            "veth",
            "peer",
            "name",
            dev,
            "netns",
            ns,
        ]);
        self.sw(&["link", "set", port, "master", bridge]);
        self.sw(&["link", "set", port, "up"]);
        ip(&["-n", ns, "addr", "add", ip_cidr, "dev", dev]);
        ip(&["-n", ns, "link", "set", dev, "up"]);
        ip(&["-n", ns, "-br", "link", "show", dev])
            .split_whitespace()
            .nth(2)
            .unwrap_or("")
            .to_string()
    }

    fn sw(&self, args: &[&str]) -> String {
        let mut a = vec!["-n", &self.switch_ns];
        a.extend_from_slice(args);
        ip(&a)
    }

    /// Adds a host with `eth0` at `ip_cidr` (e.g. "10.77.0.11/24").
    pub fn add_host(&mut self, name: &str, ip_cidr: &str) -> Host {
        let ns = format!("{}-{name}", self.prefix);
        let port = format!("{}{name}", self.prefix);
        let port = port[..port.len().min(15)].to_string();
        ip(&["netns", "add", &ns]);
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        let mac = self.wire(&ns, "eth0", &port, "br0", ip_cidr);
        let host = Host {
            name: name.to_string(),
            ns,
            port,
            ip: ip_cidr.split('/').next().unwrap_or("").to_string(),
            mac,
        };
        self.hosts.push(host.clone());
        host
    }

    pub fn host(&self, name: &str) -> &Host {
        self.hosts
            .iter()
            .find(|h| h.name == name)
            .unwrap_or_else(|| panic!("no host {name}"))
    }

    /// `ip -n <host> ...`
    pub fn ip(&self, host: &str, args: &[&str]) -> String {
        let ns = self.host(host).ns.clone();
        let mut a = vec!["-n", ns.as_str()];
        a.extend_from_slice(args);
        ip(&a)
    }

    /// Runs a command inside a host's namespace and waits for it.
    pub fn exec(&self, host: &str, args: &[&str]) -> Output {
        run(Command::new("ip")
            .args(["netns", "exec", &self.host(host).ns])
            .args(args))
    }

    /// Starts a long-running process inside a host's namespace; it is killed
    /// when the lab is dropped. Output goes to `<lab dir>/<label>.log`.
    pub fn spawn(&self, host: &str, label: &str, args: &[&str]) -> u32 {
        let log = std::fs::File::create(self.dir.join(format!("{label}.log"))).expect("log");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.host(host).ns])
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {args:?}: {e}"));
        let pid = child.id();
        self.procs
            .lock()
            .expect("procs")
            .push((label.to_string(), child));
        pid
    }

    pub fn log(&self, label: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("{label}.log"))).unwrap_or_default()
    }

    /// The PID of a process started with [`spawn`] (`ip netns exec` execs, so it is the
    /// process itself).
    pub fn pid(&self, label: &str) -> u32 {
        let procs = self.procs.lock().expect("procs");
        procs
            .iter()
            .find(|(l, _)| l == label)
            .map(|(_, c)| c.id())
            .unwrap_or_else(|| panic!("no process {label}"))
    }

    /// Sends a signal to a process started with [`spawn`].
    pub fn kill(&self, label: &str, sig: nix::sys::signal::Signal) {
        let procs = self.procs.lock().expect("procs");
        let (_, child) = procs
            .iter()
            .find(|(l, _)| l == label)
            .unwrap_or_else(|| panic!("no process {label}"));
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), sig);
    }

    /// Waits for a spawned process to exit; returns its status.
    pub fn wait(&self, label: &str, timeout: Duration) -> Option<std::process::ExitStatus> {
        let t0 = Instant::now();
        while t0.elapsed() < timeout {
            {
                let mut procs = self.procs.lock().expect("procs");
                if let Some((_, child)) = procs.iter_mut().find(|(l, _)| l == label) {
                    if let Ok(Some(s)) = child.try_wait() {
                        return Some(s);
                    }
                } else {
                    return None;
                }
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    /// Forgets a process that has exited, so its label can be reused.
    pub fn reap(&self, label: &str) {
        let mut procs = self.procs.lock().expect("procs");
        if let Some(i) = procs.iter().position(|(l, _)| l == label) {
            let (_, mut child) = procs.remove(i);
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Unplugs (or plugs back) a host's cable at the switch: to the host it
    /// looks like its carrier going away, to everyone else like host death.
    pub fn cable(&self, host: &str, connected: bool) {
        let port = self.host(host).port.clone();
        self.sw(&["link", "set", &port, if connected { "up" } else { "down" }]);
    }

    /// Like [`Lab::cable`] for one interface of a host: `eth0` or one added
    /// with [`Lab::plug`]. The host's other interfaces stay connected.
    pub fn cable_on(&self, host: &str, dev: &str, connected: bool) {
        let port = if dev == "eth0" {
            self.host(host).port.clone()
        } else {
            self.plugs
                .iter()
                .find(|p| p.host == host && p.dev == dev)
                .unwrap_or_else(|| panic!("no interface {dev} plugged into {host}"))
                .port
                .clone()
        };
        self.sw(&["link", "set", &port, if connected { "up" } else { "down" }]);
    }

    /// Blocks (or unblocks) every frame between two hosts at the switch,
    /// leaving both connected to everyone else: a partition.
    pub fn partition(&self, a: &str, b: &str, blocked: bool) {
        // Bridge port isolation: isolated ports cannot talk to each other
        // but still reach non-isolated ports (the client, the backends).
        for h in [a, b] {
            let port = self.host(h).port.clone();
            self.sw(&[
                "link",
                "set",
                "dev",
                &port,
                "type",
                "bridge_slave",
                "isolated",
                if blocked { "on" } else { "off" },
            ]);
        }
    }

    /// The MAC address the host's neighbour table holds for `ip`, if any.
    pub fn neigh(&self, host: &str, ip: &str) -> Option<String> {
        let out = self.ip(host, &["neigh", "show", ip, "dev", "eth0"]);
        let mut it = out.split_whitespace();
        while let Some(w) = it.next() {
            if w == "lladdr" {
                return it.next().map(String::from);
            }
        }
        None
    }

    /// Addresses on a host's eth0.
    pub fn addrs(&self, host: &str) -> Vec<String> {
        self.ip(host, &["-br", "-4", "addr", "show", "dev", "eth0"])
            .split_whitespace()
            .skip(2)
            .map(String::from)
            .collect()
    }

    pub fn has_addr(&self, host: &str, ip: &str) -> bool {
        self.has_addr_on(host, "eth0", ip)
    }

    pub fn has_addr_on(&self, host: &str, dev: &str, ip: &str) -> bool {
        self.ip(host, &["-br", "-4", "addr", "show", "dev", dev])
            .split_whitespace()
            .skip(2)
            .any(|a| a.split('/').next() == Some(ip))
    }

    /// Runs `f` on a thread that entered the host's network namespace:
    /// sockets it creates live in that namespace.
    pub fn in_ns<T: Send + 'static>(
        &self,
        host: &str,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> JoinHandle<T> {
        let path = format!("/run/netns/{}", self.host(host).ns);
        std::thread::spawn(move || {
            let fd = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            nix::sched::setns(fd.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                .unwrap_or_else(|e| panic!("setns {path}: {e}"));
            f()
        })
    }

    /// Writes a file into the lab directory and returns its path.
    pub fn file(&self, name: &str, body: &str) -> String {
        let p = self.dir.join(name);
        std::fs::write(&p, body).expect("write lab file");
        p.display().to_string()
    }

    /// Starts `tandem run` on a host with the given config body; the admin
    /// socket lives in the lab directory as `<label>.sock`.
    pub fn tandem(&self, host: &str, label: &str, config_body: &str) -> String {
        self.tandem_with(host, label, &[], config_body)
    }

    /// Like [`Lab::tandem`], started through `wrapper` (e.g. `setpriv ... --`).
    pub fn tandem_with(
        &self,
        host: &str,
        label: &str,
        wrapper: &[&str],
        config_body: &str,
    ) -> String {
        let sock = self.dir.join(format!("{label}.sock"));
        let _ = std::fs::remove_file(&sock);
        let cfg = self.write_config(label, config_body);
        let mut argv = wrapper.to_vec();
        argv.extend_from_slice(&[BIN, "run", "-c", &cfg]);
        self.spawn(host, label, &argv);
        super::poll(
            &format!("tandem {label} to start"),
            Duration::from_secs(10),
            Duration::from_millis(20),
            || std::os::unix::net::UnixStream::connect(&sock).is_ok(),
            || self.log(label),
        );
        sock.display().to_string()
    }

    /// Rewrites the config file of the tandem `label` (the same `[global]`
    /// header [`Lab::tandem`] writes, admin socket `<label>.sock`) without
    /// reloading; returns its path.
    pub fn write_config(&self, label: &str, config_body: &str) -> String {
        let sock = self.socket(label);
        self.file(
            &format!("{label}.toml"),
            &config::lab_file(&sock, config_body),
        )
    }

    /// The admin socket of a tandem started with [`Lab::tandem`].
    pub fn socket(&self, label: &str) -> PathBuf {
        self.dir.join(format!("{label}.sock"))
    }

    /// The status document of a tandem started with [`Lab::tandem`], or
    /// None if it does not answer.
    pub fn status(&self, label: &str) -> Option<Status> {
        daemon::status_at(&self.socket(label))
    }

    /// State of a VRRP instance ("master", "backup", ...) or "down" if the
    /// daemon does not answer.
    pub fn vrrp_state(&self, label: &str, instance: &str) -> String {
        self.status(label)
            .and_then(|s| {
                s.vrrp
                    .iter()
                    .find(|v| v.name == instance)
                    .map(|v| v.state.clone())
            })
            .unwrap_or_else(|| "down".into())
    }

    /// Polls `pred` every 5 ms; returns how long it took or panics with
    /// every process's log.
    pub fn wait_for(&self, what: &str, timeout: Duration, pred: impl FnMut() -> bool) -> Duration {
        super::poll(what, timeout, Duration::from_millis(5), pred, || {
            let mut logs = String::new();
            for (label, _) in self.procs.lock().expect("procs").iter() {
                logs.push_str(&format!("---- {label} ----\n{}\n", self.log(label)));
            }
            logs
        })
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Ok(mut procs) = self.procs.lock() {
            for (label, child) in procs.iter_mut() {
                let _ = child.kill();
                let _ = child.wait();
                if std::thread::panicking() {
                    eprintln!("---- {label} ----\n{}", self.log(label));
                }
            }
        }
        for h in &self.hosts {
            let _ = Command::new("ip").args(["netns", "del", &h.ns]).status();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.switch_ns])
            .status();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The standard pair: lb1 (`<net>.1`), lb2 (`.2`), a client (`.50`) and
/// `backends` HTTP backends `be<i>` at `.2<i>`, answering `web<i>` on
/// port 8080, all on the front segment `<net>.0/24`.
pub struct Pair {
    pub lab: Lab,
    pub backends: Vec<Backend>,
}

impl Pair {
    /// `net` is the first three octets, e.g. "10.77.0".
    pub fn new(tag: &str, net: &str, backends: usize) -> Pair {
        let mut lab = Lab::new(tag);
        lab.add_host("lb1", &format!("{net}.1/24"));
        lab.add_host("lb2", &format!("{net}.2/24"));
        lab.add_host("client", &format!("{net}.50/24"));
        for i in 1..=backends {
            lab.add_host(&format!("be{i}"), &format!("{net}.2{i}/24"));
        }
        let backends = (1..=backends)
            .map(|i| Backend::in_lab(&lab, &format!("be{i}"), 8080, &format!("web{i}")))
            .collect();
        Pair { lab, backends }
    }
}

/// What a continuous client saw: one entry per attempt.
#[derive(Debug, Clone)]
pub struct Probe {
    pub at: Instant,
    pub ok: bool,
    pub body: String,
}

/// A client in a host namespace opening a new connection to `addr` every
/// `every`, until stopped (bounded by `max` attempts in any case).
pub struct ProbeClient {
    stop: Arc<AtomicBool>,
    results: Arc<Mutex<Vec<Probe>>>,
    thread: Option<JoinHandle<()>>,
}

impl ProbeClient {
    pub fn start(
        lab: &Lab,
        host: &str,
        addr: SocketAddr,
        every: Duration,
        max: usize,
    ) -> ProbeClient {
        Self::start_with_timeout(lab, host, addr, every, Duration::from_millis(500), max)
    }

    /// Like [`ProbeClient::start`] with a chosen per-request timeout: short
    /// timeouts give a fine-grained view of an outage.
    pub fn start_with_timeout(
        lab: &Lab,
        host: &str,
        addr: SocketAddr,
        every: Duration,
        timeout: Duration,
        max: usize,
    ) -> ProbeClient {
        let stop = Arc::new(AtomicBool::new(false));
        let results = Arc::new(Mutex::new(Vec::new()));
        let (s2, r2) = (stop.clone(), results.clone());
        let thread = lab.in_ns(host, move || {
            for _ in 0..max {
                if s2.load(Ordering::Relaxed) {
                    break;
                }
                let t = Instant::now();
                let r = http_get(addr).timeout(timeout).body();
                let p = Probe {
                    at: t,
                    ok: r.is_ok(),
                    body: r.unwrap_or_else(|e| e),
                };
                if let Ok(mut v) = r2.lock() {
                    v.push(p);
                }
                let spent = t.elapsed();
                if spent < every {
                    std::thread::sleep(every - spent);
                }
            }
        });
        ProbeClient {
            stop,
            results,
            thread: Some(thread),
        }
    }

    pub fn snapshot(&self) -> Vec<Probe> {
        self.results.lock().map(|v| v.clone()).unwrap_or_default()
    }

    pub fn stop(mut self) -> Vec<Probe> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.snapshot()
    }
}

impl Drop for ProbeClient {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Failed probes and the outage window (first failure → first success after
/// it) among probes that started after `since`.
pub fn outage(probes: &[Probe], since: Instant) -> (usize, Duration) {
    let after: Vec<&Probe> = probes.iter().filter(|p| p.at >= since).collect();
    let failed = after.iter().filter(|p| !p.ok).count();
    let first_fail = after.iter().find(|p| !p.ok).map(|p| p.at);
    let gap = match first_fail {
        None => Duration::ZERO,
        Some(f) => after
            .iter()
            .find(|p| p.ok && p.at > f)
            .map(|p| p.at - f)
            .unwrap_or_else(|| after.last().map(|p| p.at - f).unwrap_or_default()),
    };
    (failed, gap)
}

/// (thread name, scheduling policy) of every thread of `pid`, from /proc (stat field 41).
pub fn thread_policies(pid: u32) -> Vec<(String, u32)> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .filter_map(|t| t.ok())
        .filter_map(|t| {
            let stat = std::fs::read_to_string(t.path().join("stat")).ok()?;
            // The name is in parentheses and may hold spaces: count fields after it.
            let (head, rest) = stat.rsplit_once(')')?;
            let comm = head.split_once('(')?.1.to_string();
            let policy = rest.split_whitespace().nth(38)?.parse().ok()?;
            Some((comm, policy))
        })
        .collect()
}
