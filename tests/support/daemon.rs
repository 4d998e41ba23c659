//! A real `tandem` process on loopback with a guard that kills it on drop,
//! its status document (typed), and the CLI run against it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tandem::admin::status::{BackendStatus, ListenerStatus, PoolStatus, Status, VrrpStatus};

use super::config;
use super::{TempDir, BIN};

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

/// `tandem status --json -s SOCKET`: the status document as it travels,
/// or None if the daemon does not answer.
pub fn status_json_at(socket: &Path) -> Option<serde_json::Value> {
    let out = Command::new(BIN)
        .args(["status", "--json", "-s"])
        .arg(socket)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

/// [`status_json_at`], typed.
pub fn status_at(socket: &Path) -> Option<Status> {
    status_json_at(socket).map(|v| serde_json::from_value(v).expect("status document"))
}

/// Look-ups by name in a status document; each panics naming what is missing.
pub trait StatusExt {
    fn listener(&self, name: &str) -> &ListenerStatus;
    fn pool(&self, name: &str) -> &PoolStatus;
    fn backend(&self, pool: &str, name: &str) -> &BackendStatus;
    /// The VRRP instance `name`.
    fn instance(&self, name: &str) -> &VrrpStatus;
}

/// The item of `items` called `name`.
fn named<'a, T>(items: &'a [T], name: &str, of: impl Fn(&T) -> &str) -> Option<&'a T> {
    items.iter().find(|i| of(i) == name)
}

impl StatusExt for Status {
    fn listener(&self, name: &str) -> &ListenerStatus {
        named(&self.listeners, name, |l| &l.name)
            .unwrap_or_else(|| panic!("no listener {name} in {self:?}"))
    }
    fn pool(&self, name: &str) -> &PoolStatus {
        named(&self.pools, name, |p| &p.name)
            .unwrap_or_else(|| panic!("no pool {name} in {self:?}"))
    }
    fn backend(&self, pool: &str, name: &str) -> &BackendStatus {
        named(&self.pool(pool).backends, name, |b| &b.name)
            .unwrap_or_else(|| panic!("no backend {pool}/{name} in {self:?}"))
    }
    fn instance(&self, name: &str) -> &VrrpStatus {
        named(&self.vrrp, name, |v| &v.name)
            .unwrap_or_else(|| panic!("no VRRP instance {name} in {self:?}"))
    }
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
        let full = config::daemon_file(&socket, global_extra, config_body);
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
        super::poll(
            "tandem to start",
            Duration::from_secs(10),
            Duration::from_millis(20),
            || {
                let Ok(mut s) = std::os::unix::net::UnixStream::connect(&self.socket) else {
                    return false;
                };
                let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                let mut first = [0u8; 12];
                s.write_all(b"GET /v1/status HTTP/1.1\r\nHost: tandem\r\nConnection: close\r\n\r\n")
                    .is_ok()
                    && s.read_exact(&mut first).is_ok()
                    && first.starts_with(b"HTTP/1.1 ")
            },
            || format!("log:\n{}", self.log_text()),
        );
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Rewrites the config (keeping the [global] header) without reloading.
    pub fn write_config(&self, config_body: &str) {
        let full = config::daemon_file(&self.socket, "", config_body);
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

    /// `GET /v1/status` through the real CLI, typed.
    pub fn status(&self) -> Status {
        serde_json::from_value(self.status_json()).expect("status document")
    }

    /// `GET /v1/status` through the real CLI, as raw JSON: for checks of
    /// the wire shape itself.
    pub fn status_json(&self) -> serde_json::Value {
        status_json_at(&self.socket)
            .unwrap_or_else(|| panic!("tandem status failed; log:\n{}", self.log_text()))
    }

    pub fn health(&self, pool: &str, name: &str) -> String {
        self.status().backend(pool, name).health.clone()
    }

    /// Polls until `pred` holds, or panics after `timeout` with the log.
    pub fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        mut pred: impl FnMut(&Daemon) -> bool,
    ) -> Duration {
        super::poll(
            what,
            timeout,
            Duration::from_millis(25),
            || pred(self),
            || format!("log:\n{}", self.log_text()),
        )
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
