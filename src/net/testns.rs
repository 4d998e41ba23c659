//! Test-only lab: uniquely named network namespaces joined by veth pairs, removed
//! on drop (also on panic), and a way to run async test bodies inside them.
//! Nothing here touches the host's own interfaces: every veth is created
//! directly inside a lab namespace.

use std::future::Future;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

static COUNTER: AtomicU32 = AtomicU32::new(0);

pub struct Lab {
    names: Vec<String>,
}

impl Lab {
    /// Creates `n` namespaces with loopback up and IPv6 DAD off (so test
    /// addresses are usable at once). Without the privilege to do so the test
    /// fails loudly, unless TANDEM_ALLOW_SKIP_ROOT=1 turns that into a loud skip
    /// (`None`).
    pub fn new(n: usize) -> Option<Lab> {
        let mut lab = Lab { names: Vec::new() };
        for _ in 0..n {
            let name = format!(
                "tnd-{}-{}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            );
            let out = Command::new("ip").args(["netns", "add", &name]).output();
            match out {
                Ok(o) if o.status.success() => lab.names.push(name),
                other => {
                    let why = match other {
                        Ok(o) => String::from_utf8_lossy(&o.stderr).into_owned(),
                        Err(e) => e.to_string(),
                    };
                    let msg = format!(
                        "THIS TEST NEEDS ROOT (or `unshare -Urnm` + tmpfs on /run): \
                         cannot create network namespace {name}: {}",
                        why.trim()
                    );
                    if std::env::var("TANDEM_ALLOW_SKIP_ROOT").as_deref() == Ok("1") {
                        eprintln!("!!!!! SKIPPED: {msg} (TANDEM_ALLOW_SKIP_ROOT=1)");
                        return None;
                    }
                    panic!("{msg}; set TANDEM_ALLOW_SKIP_ROOT=1 to skip instead");
                }
            }
        }
        for name in &lab.names {
            ip(&format!("-n {name} link set lo up"));
            let sh = "echo 0 > /proc/sys/net/ipv6/conf/all/accept_dad; \
                      echo 0 > /proc/sys/net/ipv6/conf/default/accept_dad";
            run("ip", &["netns", "exec", name, "sh", "-c", sh]);
        }
        Some(lab)
    }

    pub fn ns(&self, i: usize) -> &str {
        &self.names[i]
    }

    /// `ip -n <ns i> ARGS` (ARGS split on whitespace); panics on failure.
    pub fn ip(&self, i: usize, args: &str) -> String {
        ip(&format!("-n {} {args}", self.names[i]))
    }

    /// A veth pair with end `a` in namespace `i` and end `b` in namespace `j`, both down.
    pub fn veth(&self, i: usize, a: &str, j: usize, b: &str) {
        self.ip(
            i,
            &format!(
                "link add {a} type veth peer name {b} netns {}",
                self.names[j]
            ),
        );
    }

    /// Runs the async body on a fresh thread that has entered namespace `i`, on a
    /// current-thread runtime, so sockets and netlink handles it creates belong
    /// to that namespace. The body may `enter` other lab namespaces.
    pub fn run<F, Fut, T>(&self, i: usize, body: F) -> T
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = T>,
        T: Send + 'static,
    {
        let name = self.names[i].clone();
        let t = std::thread::spawn(move || {
            enter(&name);
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime");
            rt.block_on(body())
        });
        match t.join() {
            Ok(v) => v,
            Err(p) => std::panic::resume_unwind(p),
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for name in &self.names {
            // Deleting a namespace destroys its veth ends (and their peers).
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}

/// Moves the calling thread into the named namespace. Only for threads started by
/// `Lab::run`: a test harness thread must never change namespace.
pub fn enter(name: &str) {
    let f = std::fs::File::open(format!("/run/netns/{name}")).expect("open netns");
    nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
}

/// An rtnetlink handle for the calling thread's current namespace.
pub fn netlink() -> rtnetlink::Handle {
    let (h, drive) = super::netlink_connect().expect("rtnetlink connection");
    tokio::spawn(drive);
    h
}

fn run(cmd: &str, args: &[&str]) -> String {
    let o = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(
        o.status.success(),
        "{cmd} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `ip ARGS` (split on whitespace); panics on failure.
pub fn ip(args: &str) -> String {
    run("ip", &args.split_whitespace().collect::<Vec<_>>())
}

pub fn parse_mac(s: &str) -> [u8; 6] {
    let v: Vec<u8> = s
        .split(':')
        .map(|b| u8::from_str_radix(b, 16).expect("mac byte"))
        .collect();
    v.try_into().expect("6-byte mac")
}

pub fn mac_of(ns: &str, dev: &str) -> [u8; 6] {
    let out = ip(&format!("-n {ns} -o link show dev {dev}"));
    let mut it = out.split_whitespace().skip_while(|w| *w != "link/ether");
    it.next();
    parse_mac(it.next().expect("link/ether in ip output"))
}

/// The MAC in `ns`'s neighbour entry for `addr` on `dev`, if any.
pub fn neigh_mac(ns: &str, dev: &str, addr: &str) -> Option<[u8; 6]> {
    let out = ip(&format!("-n {ns} neigh show {addr} dev {dev}"));
    let mut it = out.split_whitespace().skip_while(|w| *w != "lladdr");
    it.next();
    it.next().map(parse_mac)
}
