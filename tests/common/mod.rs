//! Shared helpers for integration tests: a real `tandem` process with a
//! guard that kills it on drop, temp configs, and small backends running as
//! tasks on real loopback sockets.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
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

/// `tandem ARGS -s SOCKET` through the real CLI: (exit code, stdout + stderr).
pub fn cli(d: &Daemon, args: &[&str]) -> (i32, String) {
    let out = Command::new(BIN)
        .args(args)
        .arg("-s")
        .arg(&d.socket)
        .output()
        .expect("tandem");
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// A running daemon; killed (SIGKILL) on drop if still alive.
pub struct Daemon {
    pub child: Child,
    pub config: PathBuf,
    pub socket: PathBuf,
    pub log: PathBuf,
}

impl Daemon {
    pub fn start(dir: &TempDir, config_body: &str) -> Daemon {
        Daemon::start_with_global(dir, "", config_body)
    }

    /// Like [`Daemon::start`], with extra `[global]` lines.
    pub fn start_with_global(dir: &TempDir, global_extra: &str, config_body: &str) -> Daemon {
        Daemon::start_bin(dir, Path::new(BIN), global_extra, config_body)
    }

    /// Like [`Daemon::start_with_global`], running the binary at `bin`; a
    /// default `[global]` key that `global_extra` sets is left out.
    pub fn start_bin(dir: &TempDir, bin: &Path, global_extra: &str, config_body: &str) -> Daemon {
        let socket = dir.path("admin.sock");
        let config = dir.path("tandem.toml");
        let defaults: String = [
            "workers = 2",
            "shutdown_timeout = \"5s\"",
            "log_level = \"debug\"",
        ]
        .iter()
        .filter(|d| {
            let key = d.split(' ').next().unwrap_or("");
            !global_extra
                .lines()
                .any(|l| l.trim_start().starts_with(key))
        })
        .map(|d| format!("{d}\n"))
        .collect();
        let full = format!(
            "[global]\nadmin_socket = \"{}\"\n{defaults}{global_extra}\n\n{config_body}",
            socket.display()
        );
        std::fs::write(&config, full).expect("write config");
        let log = dir.path("tandem.log");
        let logf = std::fs::File::create(&log).expect("log file");
        let child = Command::new(bin)
            .args(["run", "-c"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(logf)
            .spawn()
            .expect("spawn tandem");
        let d = Daemon {
            child,
            config,
            socket,
            log,
        };
        d.wait_ready();
        d
    }

    /// The admin socket accepts (queues) as soon as it is bound, before the
    /// listeners are; it answers only once the daemon has started them all,
    /// so a served request is the sign that every listener is up.
    fn wait_ready(&self) {
        use std::io::{Read, Write};
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(mut s) = std::os::unix::net::UnixStream::connect(&self.socket) {
                let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                let mut first = [0u8; 12];
                if s.write_all(
                    b"GET /v1/status HTTP/1.1\r\nHost: tandem\r\nConnection: close\r\n\r\n",
                )
                .is_ok()
                    && s.read_exact(&mut first).is_ok()
                    && first.starts_with(b"HTTP/1.1 ")
                {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("tandem did not start; log:\n{}", self.log_text());
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Rewrites the config (keeping the [global] header) without reloading.
    pub fn write_config(&self, config_body: &str) {
        let full = format!(
            "[global]\nadmin_socket = \"{}\"\nworkers = 2\nshutdown_timeout = \"5s\"\nlog_level = \"debug\"\n\n{config_body}",
            self.socket.display()
        );
        std::fs::write(&self.config, full).expect("write config");
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    /// `GET /v1/status` through the real CLI, as JSON.
    pub fn status(&self) -> serde_json::Value {
        let out = Command::new(BIN)
            .args(["status", "--json", "-s"])
            .arg(&self.socket)
            .output()
            .expect("tandem status");
        assert!(
            out.status.success(),
            "tandem status failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("status json")
    }

    /// Counter `key` of listener `name` in the status.
    pub fn listener_stat(&self, name: &str, key: &str) -> u64 {
        self.status()["listeners"]
            .as_array()
            .and_then(|ls| ls.iter().find(|l| l["name"] == name))
            .and_then(|l| l[key].as_u64())
            .unwrap_or_else(|| panic!("no {key} for listener {name}"))
    }

    pub fn backend<'a>(
        status: &'a serde_json::Value,
        pool: &str,
        name: &str,
    ) -> &'a serde_json::Value {
        status["pools"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["name"] == pool))
            .and_then(|p| p["backends"].as_array())
            .and_then(|bs| bs.iter().find(|b| b["name"] == name))
            .unwrap_or_else(|| panic!("no backend {pool}/{name} in {status}"))
    }

    pub fn health(&self, pool: &str, name: &str) -> String {
        let s = self.status();
        Self::backend(&s, pool, name)["health"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    /// Polls until `pred` holds, or panics after `timeout` with the log.
    pub fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        mut pred: impl FnMut(&Daemon) -> bool,
    ) -> Duration {
        let t0 = Instant::now();
        while t0.elapsed() < timeout {
            if pred(self) {
                return t0.elapsed();
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!(
            "timed out after {timeout:?} waiting for {what}; log:\n{}",
            self.log_text()
        );
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let t0 = Instant::now();
        while t0.elapsed() < timeout {
            if let Ok(Some(s)) = self.child.try_wait() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- tandem log ----\n{}", self.log_text());
        }
    }
}

/// A TCP backend on its own thread: answers each line-less request chunk
/// with its name, or echoes, depending on the mode. Stops on drop.
pub struct Backend {
    pub addr: SocketAddr,
    pub name: String,
    stop: Arc<AtomicBool>,
    pub accepted: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Clone, Copy)]
pub enum Mode {
    /// Minimal HTTP: replies `200` with the backend name as the body.
    Http,
    /// Echo every byte back until EOF, then close.
    Echo,
    /// Read until the client half-closes, then reply `got N bytes` and close.
    Sink,
}

impl Backend {
    pub fn start(name: &str, mode: Mode) -> Backend {
        Self::start_on(name, mode, 0)
    }

    pub fn start_on(name: &str, mode: Mode, port: u16) -> Backend {
        let l = TcpListener::bind(("127.0.0.1", port)).expect("backend bind");
        l.set_nonblocking(true).expect("nonblocking");
        let addr = l.local_addr().expect("addr");
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicU64::new(0));
        let (s2, a2, n2) = (stop.clone(), accepted.clone(), name.to_string());
        let thread = std::thread::spawn(move || {
            let mut conns: Vec<JoinHandle<()>> = Vec::new();
            while !s2.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((s, _)) => {
                        a2.fetch_add(1, Ordering::Relaxed);
                        let _ = s.set_nonblocking(false);
                        let n = n2.clone();
                        let stop = s2.clone();
                        conns.push(std::thread::spawn(move || serve(s, mode, &n, &stop)));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
                conns.retain(|h| !h.is_finished());
            }
        });
        Backend {
            addr,
            name: name.to_string(),
            stop,
            accepted,
            thread: Some(thread),
        }
    }
}

fn serve(mut s: TcpStream, mode: Mode, name: &str, stop: &AtomicBool) {
    let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
    match mode {
        Mode::Echo => {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match s.read(&mut buf) {
                    Ok(0) => return,
                    Ok(n) => {
                        if s.write_all(&buf[..n]).is_err() {
                            return;
                        }
                    }
                    Err(e)
                        if e.kind() == std::io::ErrorKind::WouldBlock
                            || e.kind() == std::io::ErrorKind::TimedOut =>
                    {
                        if stop.load(Ordering::Relaxed) {
                            return;
                        }
                    }
                    Err(_) => return,
                }
            }
        }
        Mode::Sink => {
            let _ = s.set_read_timeout(None);
            let mut n = 0usize;
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                match s.read(&mut buf) {
                    Ok(0) => break,
                    Ok(k) => n += k,
                    Err(_) => return,
                }
            }
            let _ = s.write_all(format!("got {n} bytes\n").as_bytes());
        }
        Mode::Http => {
            let mut req = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                match s.read(&mut buf) {
                    Ok(0) => return,
                    Ok(n) => {
                        req.extend_from_slice(&buf[..n]);
                        while let Some(end) = req.windows(4).position(|w| w == b"\r\n\r\n") {
                            req.drain(..end + 4);
                            let body = format!("{name}\n");
                            let resp = format!(
                                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                                body.len()
                            );
                            if s.write_all(resp.as_bytes()).is_err() {
                                return;
                            }
                        }
                    }
                    Err(e)
                        if e.kind() == std::io::ErrorKind::WouldBlock
                            || e.kind() == std::io::ErrorKind::TimedOut =>
                    {
                        if stop.load(Ordering::Relaxed) {
                            return;
                        }
                    }
                    Err(_) => return,
                }
            }
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One HTTP GET over a fresh connection; returns the body or an error text.
pub fn http_get(addr: SocketAddr) -> Result<String, String> {
    let mut s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(3)))
        .map_err(|e| e.to_string())?;
    s.write_all(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut resp = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                resp.extend_from_slice(&buf[..n]);
                if let Some(end) = resp.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&resp[..end]).to_string();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("Content-Length: "))
                        .and_then(|v| v.trim().parse().ok())
                        .unwrap_or(0);
                    if resp.len() >= end + 4 + len {
                        return Ok(String::from_utf8_lossy(&resp[end + 4..end + 4 + len])
                            .trim()
                            .to_string());
                    }
                }
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    Err(format!(
        "incomplete response: {:?}",
        String::from_utf8_lossy(&resp)
    ))
}

pub fn wait_port(addr: SocketAddr) {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(5) {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{addr} never accepted");
}

pub fn config_path_exists(p: &Path) -> bool {
    p.exists()
}
pub mod tls;
pub mod web;
