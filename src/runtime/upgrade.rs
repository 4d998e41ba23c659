//! Upgrade in place: the running daemon starts the new binary and hands it
//! every listening socket, the VRRP role of each instance and the runtime
//! state of the backends; then it stops accepting, drains its own
//! connections and exits, without resigning and without removing a VIP.
//!
//! The hand-over runs over a `SOCK_SEQPACKET` socket pair whose child end is
//! inherited by the new process (`TANDEM_UPGRADE_FD`): message boundaries are
//! kept, so each message is one JSON document with its descriptors
//! (`SCM_RIGHTS`) attached.
//!
//! ```text
//! old                                  new (same argv, same unit cgroup)
//!  | Fds{n} × k, State(Carried)  ──▶   | adopts the sockets, loads and checks the config,
//!  |                                   | starts everything with accepting held back
//!  |   ◀── Ready{pid, version} or Refused{error}
//!  | MAINPID=new to systemd, Go  ──▶   | accepts; READY=1
//!  |   ◀── Running
//!  | stops accepting, VRRP detached, drains, exits 0
//! ```
//!
//! Until `Running` arrives the old process has changed nothing: on any error
//! it kills the new one (which has accepted nothing) and keeps serving.

use std::collections::HashMap;
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use nix::sys::socket::{
    recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags,
    SockFlag, SockType,
};
use serde::{Deserialize, Serialize};

use crate::pool::AdminState;

/// The environment variable naming the inherited hand-over descriptor.
pub const ENV_FD: &str = "TANDEM_UPGRADE_FD";
/// Config validation, certificates, binding what is new, starting VRRP.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
const RUNNING_TIMEOUT: Duration = Duration::from_secs(10);
/// Below the kernel's SCM_MAX_FD (253) per message.
const FDS_PER_MESSAGE: usize = 200;
const MAX_MESSAGE: usize = 1 << 20;

/// What the old process hands over besides the sockets.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Carried {
    pub from_pid: u32,
    pub from_version: String,
    /// Socket keys in the order their descriptors were sent, with how many each.
    pub sockets: Vec<(String, usize)>,
    pub vrrp: Vec<CarriedInstance>,
    pub backends: Vec<CarriedBackend>,
    /// The per-boot cookie key (used when `sticky_secret` is not set), so
    /// sticky clients keep their backend across the upgrade.
    #[serde(default)]
    pub sticky_boot_secret: Option<[u8; 32]>,
}

/// One VRRP instance as the old process ran it. The role is resumed only
/// when the new config runs the same virtual router (name, interface,
/// VRID and addresses).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CarriedInstance {
    pub name: String,
    pub interface: String,
    pub vrid: u8,
    pub virtual_ips: Vec<String>,
    pub master: bool,
    pub priority_override: Option<u8>,
}

/// Runtime state of one backend, matched in the new config by pool name and address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CarriedBackend {
    pub pool: String,
    pub address: std::net::SocketAddr,
    pub admin: AdminState,
    pub weight: Option<u32>,
    pub healthy: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "msg", rename_all = "snake_case")]
enum Msg {
    Fds { count: usize },
    State(Box<Carried>),
    Ready { pid: u32, version: String },
    Refused { error: String },
    Go,
    Running,
}

/// The key under which a socket is handed over.
pub fn listener_key(stream: bool, addr: std::net::SocketAddr) -> String {
    format!("listener {} {addr}", if stream { "tcp" } else { "udp" })
}

// ---------------------------------------------------------------- wire

fn send(sock: &UnixStream, msg: &Msg, fds: &[RawFd]) -> Result<(), String> {
    let bytes = serde_json::to_vec(msg).map_err(|e| e.to_string())?;
    let iov = [IoSlice::new(&bytes)];
    let rights = [ControlMessage::ScmRights(fds)];
    let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &rights };
    sendmsg::<()>(sock.as_raw_fd(), &iov, cmsgs, MsgFlags::empty(), None)
        .map(|_| ())
        .map_err(|e| format!("hand-over socket: {e}"))
}

/// One message and the descriptors that came with it (close-on-exec).
/// `Ok(None)`: the other side closed.
fn recv(sock: &UnixStream) -> Result<Option<(Msg, Vec<OwnedFd>)>, String> {
    let mut buf = vec![0u8; MAX_MESSAGE];
    let mut cmsg = nix::cmsg_space!([RawFd; FDS_PER_MESSAGE]);
    let (len, fds) = {
        let mut iov = [IoSliceMut::new(&mut buf)];
        let r = recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(|e| match e {
            nix::errno::Errno::EAGAIN => "timed out".to_string(),
            e => format!("hand-over socket: {e}"),
        })?;
        let mut fds = Vec::new();
        for c in r.cmsgs().map_err(|e| e.to_string())? {
            if let ControlMessageOwned::ScmRights(v) = c {
                // SAFETY: the kernel just installed these descriptors for us; nobody else owns them.
                fds.extend(v.into_iter().map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }));
            }
        }
        (r.bytes, fds)
    };
    if len == 0 {
        return Ok(None);
    }
    let msg = serde_json::from_slice(&buf[..len])
        .map_err(|e| format!("hand-over message is not understood: {e}"))?;
    Ok(Some((msg, fds)))
}

fn pair() -> Result<(UnixStream, UnixStream), String> {
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| format!("socketpair: {e}"))?;
    Ok((UnixStream::from(a), UnixStream::from(b)))
}

/// Sends the sockets (in chunks the kernel accepts) and then the state.
fn send_all(
    sock: &UnixStream,
    mut carried: Carried,
    sockets: &[(String, Vec<OwnedFd>)],
) -> Result<(), String> {
    carried.sockets = sockets.iter().map(|(k, v)| (k.clone(), v.len())).collect();
    let all: Vec<RawFd> = sockets
        .iter()
        .flat_map(|(_, v)| v.iter().map(|f| f.as_raw_fd()))
        .collect();
    for chunk in all.chunks(FDS_PER_MESSAGE) {
        send(sock, &Msg::Fds { count: chunk.len() }, chunk)?;
    }
    send(sock, &Msg::State(Box::new(carried)), &[])
}

/// Receives what [`send_all`] sent: the state and the sockets by key.
fn recv_all(sock: &UnixStream) -> Result<(Carried, HashMap<String, Vec<OwnedFd>>), String> {
    let mut fds: Vec<OwnedFd> = Vec::new();
    loop {
        match recv(sock)? {
            None => return Err("the old process closed the hand-over socket".into()),
            Some((Msg::Fds { count }, got)) => {
                if got.len() != count {
                    return Err(format!("expected {count} sockets, got {}", got.len()));
                }
                fds.extend(got);
            }
            Some((Msg::State(carried), _)) => {
                let want: usize = carried.sockets.iter().map(|(_, n)| n).sum();
                if want != fds.len() {
                    return Err(format!("expected {want} sockets, got {}", fds.len()));
                }
                let mut it = fds.into_iter();
                let map = carried
                    .sockets
                    .iter()
                    .map(|(k, n)| (k.clone(), it.by_ref().take(*n).collect()))
                    .collect();
                return Ok((*carried, map));
            }
            Some((other, _)) => return Err(format!("unexpected hand-over message {other:?}")),
        }
    }
}

/// Waits for one message; a timeout or the other side closing is an error
/// that says what was awaited.
fn expect(sock: &UnixStream, timeout: Duration, what: &str) -> Result<Msg, String> {
    sock.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    match recv(sock) {
        Ok(Some((m, _))) => Ok(m),
        Ok(None) => Err(format!(
            "the other process closed the hand-over socket while {what}"
        )),
        Err(e) => Err(format!("{e} while {what}")),
    }
}

// ---------------------------------------------------------------- new process side

/// Sockets inherited from the old process, taken by key as the daemon
/// binds; what is left over (listeners the new config dropped) is closed
/// once start-up is done.
static INHERITED: Mutex<Option<HashMap<String, Vec<OwnedFd>>>> = Mutex::new(None);

/// The inherited sockets under `key` (empty when none).
pub fn take(key: &str) -> Vec<OwnedFd> {
    INHERITED
        .lock()
        .ok()
        .and_then(|mut m| m.as_mut().and_then(|m| m.remove(key)))
        .unwrap_or_default()
}

/// Closes what the new config did not adopt.
pub fn release_unused() -> Vec<String> {
    INHERITED
        .lock()
        .ok()
        .and_then(|mut m| m.take())
        .map(|m| m.into_keys().collect())
        .unwrap_or_default()
}

/// The new process's end of a hand-over in progress.
pub struct Handoff {
    sock: UnixStream,
    pub carried: Carried,
}

impl Handoff {
    /// When started by `tandem upgrade`: receives the sockets and the state.
    /// `Ok(None)` for an ordinary start.
    pub fn from_env() -> Result<Option<Handoff>, String> {
        let Some(v) = std::env::var_os(ENV_FD) else {
            return Ok(None);
        };
        // Hooks and a later upgrade must not inherit the variable.
        std::env::remove_var(ENV_FD);
        let fd: RawFd = v
            .to_str()
            .and_then(|s| s.parse().ok())
            .filter(|fd| *fd > 2)
            .ok_or_else(|| format!("{ENV_FD}={v:?} is not a descriptor"))?;
        // SAFETY: the old process passed this descriptor to us (and only us) for the hand-over.
        let sock = UnixStream::from(unsafe { OwnedFd::from_raw_fd(fd) });
        // Keep it from leaking into hook processes.
        let _ = nix::fcntl::fcntl(
            &sock,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        );
        sock.set_read_timeout(Some(READY_TIMEOUT))
            .map_err(|e| e.to_string())?;
        let (carried, sockets) = recv_all(&sock)?;
        if let Ok(mut m) = INHERITED.lock() {
            *m = Some(sockets);
        }
        Ok(Some(Handoff { sock, carried }))
    }

    /// The new process cannot run (bad config, cannot start): the old one
    /// keeps serving and reports `error`.
    pub fn refuse(&self, error: &str) {
        let _ = send(
            &self.sock,
            &Msg::Refused {
                error: error.to_string(),
            },
            &[],
        );
    }

    /// Started, not yet accepting: tell the old process, wait for its go.
    pub fn ready(&self) -> Result<(), String> {
        send(
            &self.sock,
            &Msg::Ready {
                pid: std::process::id(),
                version: crate::version(),
            },
            &[],
        )?;
        match expect(&self.sock, READY_TIMEOUT, "waiting for the go")? {
            Msg::Go => Ok(()),
            m => Err(format!("unexpected hand-over message {m:?}")),
        }
    }

    /// Accepting now: the old process may stop.
    pub fn running(self) {
        let _ = send(&self.sock, &Msg::Running, &[]);
    }
}

// ---------------------------------------------------------------- old process side

/// The binary to start: the path this one was started by (after a package
/// upgrade that path holds the new binary, while /proc/self/exe still names
/// the deleted old one).
pub fn binary() -> Result<PathBuf, String> {
    let argv0 = std::env::args_os().next().map(PathBuf::from);
    match argv0 {
        Some(p) if p.components().count() > 1 => Ok(p),
        _ => {
            let exe = std::env::current_exe().map_err(|e| e.to_string())?;
            let s = exe.to_string_lossy();
            Ok(PathBuf::from(s.strip_suffix(" (deleted)").unwrap_or(&s)))
        }
    }
}

/// A new process that is ready but not yet accepting.
pub struct Pending {
    sock: UnixStream,
    child: std::process::Child,
    pub pid: u32,
    pub version: String,
}

/// Starts the new binary with this process's arguments and hands it the
/// sockets and state. On any failure the new process is killed and the
/// error says why (the config's errors when it refused).
pub fn launch(carried: Carried, sockets: Vec<(String, Vec<OwnedFd>)>) -> Result<Pending, String> {
    use std::os::unix::process::CommandExt;
    let exe = binary()?;
    let (ours, theirs) = pair()?;
    let child_fd = theirs.as_raw_fd();
    let mut cmd = std::process::Command::new(&exe);
    cmd.args(std::env::args_os().skip(1))
        .env(ENV_FD, child_fd.to_string())
        // The watchdog belongs to whichever process systemd tracks; the new
        // one pings once it is the main process.
        .env_remove("WATCHDOG_PID")
        .stdin(std::process::Stdio::null());
    // SAFETY: between fork and exec only async-signal-safe fcntl runs.
    unsafe {
        cmd.pre_exec(move || {
            if libc::fcntl(child_fd, libc::F_SETFD, 0) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
    // Only the child holds its end now: its exit reads as end of file.
    drop(theirs);
    let fail = |child: &mut std::process::Child, why: String| -> String {
        // A new process that died on its own says more than the socket error.
        for _ in 0..20 {
            if let Ok(Some(st)) = child.try_wait() {
                return format!("{why}: the new process exited ({st}) before it was ready");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
        why
    };
    if let Err(e) = send_all(&ours, carried, &sockets) {
        return Err(fail(&mut child, format!("{}: {e}", exe.display())));
    }
    drop(sockets);
    match expect(&ours, READY_TIMEOUT, "waiting for the new process to start") {
        Ok(Msg::Ready { pid, version }) => Ok(Pending {
            sock: ours,
            child,
            pid,
            version,
        }),
        Ok(Msg::Refused { error }) => Err(fail(&mut child, error)),
        Ok(m) => Err(fail(
            &mut child,
            format!("unexpected hand-over message {m:?}"),
        )),
        Err(e) => Err(fail(&mut child, format!("{}: {e}", exe.display()))),
    }
}

impl Pending {
    /// Lets the new process accept and waits until it does.
    pub fn go(mut self) -> Result<u32, String> {
        let r = send(&self.sock, &Msg::Go, &[]).and_then(|_| {
            match expect(
                &self.sock,
                RUNNING_TIMEOUT,
                "waiting for the new process to accept",
            )? {
                Msg::Running => Ok(()),
                m => Err(format!("unexpected hand-over message {m:?}")),
            }
        });
        match r {
            Ok(()) => Ok(self.pid),
            Err(e) => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                Err(e)
            }
        }
    }

    /// Gives up on the new process (it has accepted nothing).
    pub fn abort(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn carried() -> Carried {
        Carried {
            from_pid: 7,
            from_version: "0.1.0".into(),
            sockets: vec![],
            vrrp: vec![CarriedInstance {
                name: "vi".into(),
                interface: "eth0".into(),
                vrid: 51,
                virtual_ips: vec!["10.0.0.100/24".into()],
                master: true,
                priority_override: Some(50),
            }],
            backends: vec![CarriedBackend {
                pool: "web".into(),
                address: "127.0.0.1:80".parse().unwrap(),
                admin: AdminState::Draining,
                weight: Some(3),
                healthy: false,
            }],
            sticky_boot_secret: Some([9; 32]),
        }
    }

    #[test]
    fn sockets_and_state_cross_a_real_socket_pair_by_key() {
        let (a, b) = pair().unwrap();
        // 450 descriptors: more than two messages' worth.
        let listeners: Vec<std::net::TcpListener> = (0..3)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        let addrs: Vec<_> = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
        let mut sockets = Vec::new();
        for (i, l) in listeners.iter().enumerate() {
            let n = [1, 249, 200][i];
            let fds = (0..n)
                .map(|_| OwnedFd::from(l.try_clone().unwrap()))
                .collect();
            sockets.push((listener_key(true, addrs[i]), fds));
        }
        let sender = std::thread::spawn(move || send_all(&a, carried(), &sockets));
        let (got, mut map) = recv_all(&b).unwrap();
        sender.join().unwrap().unwrap();
        assert_eq!(got.vrrp, carried().vrrp);
        assert_eq!(got.backends, carried().backends);
        assert_eq!(map.len(), 3);
        // Each key's descriptors are that listener: a connection to it is accepted through them.
        for (i, addr) in addrs.iter().enumerate() {
            let fds = map.remove(&listener_key(true, *addr)).unwrap();
            assert_eq!(fds.len(), [1, 249, 200][i]);
            let l = std::net::TcpListener::from(fds.into_iter().last().unwrap());
            let mut c = std::net::TcpStream::connect(addr).unwrap();
            let (mut s, _) = l.accept().unwrap();
            s.write_all(b"hi").unwrap();
            let mut buf = [0u8; 2];
            c.read_exact(&mut buf).unwrap();
            assert_eq!(&buf, b"hi");
        }
    }

    #[test]
    fn a_closed_or_confused_peer_is_an_error_not_a_hang() {
        let (a, b) = pair().unwrap();
        send(&a, &Msg::Go, &[]).unwrap();
        assert!(recv_all(&b).unwrap_err().contains("unexpected"));
        drop(a);
        assert!(recv_all(&b).unwrap_err().contains("closed"));
        let (a, b) = pair().unwrap();
        let e = expect(&b, Duration::from_millis(50), "waiting").unwrap_err();
        assert!(e.contains("timed out while waiting"), "{e}");
        drop(a);
        // A message that does not parse.
        let (a, b) = pair().unwrap();
        sendmsg::<()>(
            a.as_raw_fd(),
            &[IoSlice::new(b"{nope")],
            &[],
            MsgFlags::empty(),
            None,
        )
        .unwrap();
        assert!(recv(&b).unwrap_err().contains("not understood"));
    }

    #[test]
    fn messages_round_trip() {
        for m in [
            Msg::Fds { count: 3 },
            Msg::State(Box::new(carried())),
            Msg::Ready {
                pid: 1,
                version: "x".into(),
            },
            Msg::Refused {
                error: "bad".into(),
            },
            Msg::Go,
            Msg::Running,
        ] {
            let s = serde_json::to_string(&m).unwrap();
            assert_eq!(serde_json::from_str::<Msg>(&s).unwrap(), m);
        }
    }
}
