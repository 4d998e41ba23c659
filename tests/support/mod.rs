//! The one test-support world for the integration tests, the demo and the
//! failover bench (each declares it once: `mod support;`, or
//! `#[path = "../tests/support/mod.rs"] mod support;` from `benches/`):
//!
//! - [`daemon`]: a real `tandem` process ([`Daemon`]) killed on drop, its
//!   typed [`Status`](tandem::admin::status::Status) and [`StatusExt`]
//!   look-ups, and [`cli`];
//! - [`backend`]: the one toy backend ([`Backend`], [`Mode`]) on loopback
//!   or inside a lab namespace;
//! - [`http`]: the one client GET ([`http_get`]) and raw exchanges;
//! - [`config`]: the TOML config builder ([`Config`], [`Pool`],
//!   [`Listener`], [`Vrrp`]) and the `[global]` headers;
//! - [`lab`]: the network-namespace lab and its probes;
//! - [`tls`]: test CAs and a permissive verifier;
//! - here: scratch directories, free ports and [`wait_for`].
#![allow(dead_code)]

pub mod backend;
pub mod config;
pub mod daemon;
pub mod http;
pub mod lab;
pub mod tls;

#[allow(unused_imports)]
pub use backend::{pattern, Backend, Mode};
#[allow(unused_imports)]
pub use config::{Config, Listener, Node, Pool, Vrrp};
#[allow(unused_imports)]
pub use daemon::{cli, Daemon, StatusExt};
#[allow(unused_imports)]
pub use http::{header, http_get, read_response, request, Headers};

use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_tandem");

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A scratch directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("tandem-test-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// 127.0.0.1:`port`.
pub fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A free loopback port (bound then released; fine for tests).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free udp port")
}

/// A tool from a Debian package the test cannot do without: CI must have
/// it (`.ci/run` installs it); elsewhere the test says loudly it skipped.
pub fn tool(path: &str, package: &str) -> bool {
    if Path::new(path).exists() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must install {package} ({path} missing)"
    );
    eprintln!("SKIPPED: this test needs {path} (apt install {package})");
    false
}

/// Polls `cond` every 10 ms until it holds; returns how long that took, or
/// panics after `timeout` saying what it waited for.
pub fn wait_for(what: &str, timeout: Duration, cond: impl FnMut() -> bool) -> Duration {
    poll(what, timeout, Duration::from_millis(10), cond, String::new)
}

/// [`wait_for`] with a chosen poll interval, and `context` (logs, the last
/// value seen) appended to the panic message on timeout.
pub fn poll(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut cond: impl FnMut() -> bool,
    context: impl FnOnce() -> String,
) -> Duration {
    let t0 = Instant::now();
    while t0.elapsed() < timeout {
        if cond() {
            return t0.elapsed();
        }
        std::thread::sleep(every);
    }
    panic!(
        "timed out after {timeout:?} waiting for {what}\n{}",
        context()
    );
}

/// Waits until `addr` accepts a TCP connection (5 s).
pub fn wait_port(addr: SocketAddr) {
    poll(
        &format!("{addr} to accept"),
        Duration::from_secs(5),
        Duration::from_millis(20),
        || TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok(),
        String::new,
    );
}
