//! Upgrade in place (`tandem upgrade`): the running daemon hands its
//! listening sockets and state to the binary now installed at its path and
//! drains; nothing a client holds breaks, nothing new is refused.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::*;
use tandem::admin::status::Status;

const MARKER: &[u8] = b"TANDEM-BUILD-TAG:";

/// A copy of the tested binary whose version string carries `tag`: the
/// build tag bytes after the marker are patched in place.
fn build_with_tag(dir: &TempDir, tag: &str) -> PathBuf {
    let mut bytes = std::fs::read(BIN).expect("read tandem binary");
    let at = bytes
        .windows(MARKER.len())
        .position(|w| w == MARKER)
        .expect("the binary carries a build tag marker")
        + MARKER.len();
    let slot = &mut bytes[at..at + 31];
    assert!(slot.iter().all(|&b| b == b'-'), "tag slot is blank");
    slot[..tag.len()].copy_from_slice(tag.as_bytes());
    let p = dir.path(&format!("tandem-{tag}"));
    write_exec(&p, &bytes);
    p
}

fn write_exec(p: &Path, bytes: &[u8]) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(p, bytes).expect("write binary");
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// What a package manager does: write next to the target, then rename over
/// it, so the running process keeps its (now unlinked) image.
fn install(from: &Path, to: &Path) {
    let tmp = to.with_extension("new");
    std::fs::copy(from, &tmp).expect("copy binary");
    std::fs::rename(&tmp, to).expect("rename binary");
}

/// Every daemon process the test started or upgraded to; SIGKILLed on drop
/// so a failed test leaves nothing behind.
#[derive(Default)]
struct Pids(Mutex<Vec<u32>>);

impl Pids {
    fn add(&self, pid: u32) {
        self.0.lock().expect("pids").push(pid);
    }
}

impl Drop for Pids {
    fn drop(&mut self) {
        for pid in self.0.lock().map(|v| v.clone()).unwrap_or_default() {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| !s.contains(") Z "))
            .unwrap_or(false)
}

/// `tandem upgrade` through the real CLI: (success, stdout + stderr).
fn upgrade(socket: &Path) -> (bool, String) {
    let out = Command::new(BIN)
        .args(["upgrade", "-s"])
        .arg(socket)
        .output()
        .expect("tandem upgrade");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

fn pid_version(status: &Status) -> (u32, String) {
    (status.pid, status.version.clone())
}

/// wrk for `secs` against `target`: (requests, problems seen).
fn wrk(target: SocketAddr, secs: u32) -> std::thread::JoinHandle<(u64, Vec<String>)> {
    std::thread::spawn(move || {
        let out = Command::new("/usr/bin/wrk")
            .args(["-t1", "-c16", &format!("-d{secs}s"), "--timeout", "3s"])
            .arg(format!("http://{target}/"))
            .output()
            .expect("wrk");
        let raw = String::from_utf8_lossy(&out.stdout).to_string();
        let mut requests = 0;
        let mut problems = Vec::new();
        for line in raw.lines().map(str::trim) {
            if let Some((n, _)) = line.split_once(" requests in") {
                requests = n.trim().parse().unwrap_or(0);
            }
            if line.starts_with("Socket errors:") || line.starts_with("Non-2xx") {
                problems.push(line.to_string());
            }
        }
        if requests == 0 {
            problems.push(format!("wrk reported nothing:\n{raw}"));
        }
        (requests, problems)
    })
}

/// Opens a WebSocket through the HTTP listener; returns the stream after
/// the 101 response.
fn websocket(port: u16) -> (TcpStream, BufReader<TcpStream>) {
    let mut s = TcpStream::connect(addr(port)).expect("ws connect");
    s.set_read_timeout(Some(Duration::from_secs(3)))
        .expect("timeout");
    s.write_all(b"GET /ws HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
        .expect("ws request");
    let mut r = BufReader::new(s.try_clone().expect("clone"));
    let mut line = String::new();
    r.read_line(&mut line).expect("ws status");
    assert!(line.starts_with("HTTP/1.1 101"), "{line}");
    loop {
        line.clear();
        r.read_line(&mut line).expect("ws head");
        if line == "\r\n" || line.is_empty() {
            break;
        }
    }
    (s, r)
}

/// Sends `total` bytes of the test pattern through an echo path at about
/// `rate` bytes/s and checks every byte that comes back.
fn paced_echo(
    port: u16,
    total: u64,
    rate: u64,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Result<u64, String>> {
    std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr(port)).map_err(|e| format!("connect: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        let mut r = s.try_clone().map_err(|e| e.to_string())?;
        let reader = std::thread::spawn(move || -> Result<u64, String> {
            let mut buf = vec![0u8; 256 * 1024];
            let mut off = 0u64;
            while off < total {
                let n = r
                    .read(&mut buf)
                    .map_err(|e| format!("read at {off}: {e}"))?;
                if n == 0 {
                    return Err(format!("closed after {off} of {total} bytes"));
                }
                for (j, &b) in buf[..n].iter().enumerate() {
                    if b != pattern(off + j as u64) {
                        return Err(format!("byte {} differs", off + j as u64));
                    }
                }
                off += n as u64;
            }
            Ok(off)
        });
        let chunk = 256 * 1024u64;
        let t0 = Instant::now();
        let mut buf = vec![0u8; chunk as usize];
        let mut off = 0u64;
        while off < total {
            if stop.load(Ordering::Relaxed) {
                return Err(format!("stopped after {off} bytes"));
            }
            let k = chunk.min(total - off) as usize;
            for (j, b) in buf[..k].iter_mut().enumerate() {
                *b = pattern(off + j as u64);
            }
            s.write_all(&buf[..k])
                .map_err(|e| format!("write at {off}: {e}"))?;
            off += k as u64;
            let due = Duration::from_secs_f64(off as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(t0.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        reader.join().map_err(|_| "reader panicked".to_string())?
    })
}

/// The health check of pool "web".
const TCP_CHECK: &str = r#"{ check = "tcp", interval = "200ms", timeout = "100ms" }"#;

fn config(http: u16, tcp: u16, echo_port: u16, webs: &[&Backend], echo: &Backend) -> String {
    Config::new()
        .pool(Pool::new("web").health(TCP_CHECK).backends(webs))
        .pool(Pool::new("echo").backends(&[echo]))
        .listener(Listener::local("front", http, "web").protocol("http"))
        .listener(Listener::local("l4", tcp, "web"))
        .listener(Listener::local("stream", echo_port, "echo"))
        .render()
}

#[test]
fn ten_upgrades_under_load_lose_nothing() {
    if !tool("/usr/bin/wrk", "wrk") {
        return;
    }
    let dir = TempDir::new("upgrade-load");
    let builds = [
        build_with_tag(&dir, "upgrade-a"),
        build_with_tag(&dir, "upgrade-b"),
    ];
    std::fs::create_dir_all(dir.path("bin")).expect("bin dir");
    let installed = dir.path("bin/tandem");
    install(&builds[0], &installed);

    let webs = [Backend::http("w1"), Backend::http("w2")];
    let refs: Vec<&Backend> = webs.iter().collect();
    let echo = Backend::start("e1", Mode::Echo);
    let (http, tcp, stream) = (free_port(), free_port(), free_port());
    let pids = Pids::default();
    let d = Daemon::start_bin(
        &dir,
        &installed,
        "shutdown_timeout = \"60s\"",
        &config(http, tcp, stream, &refs, &echo),
    );
    pids.add(d.child.id());
    d.wait_for("pool up", Duration::from_secs(5), |d| {
        d.status().pools[0].healthy == 2
    });
    let (mut pid, version) = pid_version(&d.status());
    assert_eq!(pid, d.child.id());
    assert!(version.ends_with("+upgrade-a"), "{version}");

    let stop = Arc::new(AtomicBool::new(false));
    // New connections on both wrk listeners, one request each, all along.
    let (ok, failures) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(Mutex::new(Vec::new())),
    );
    let prober = {
        let (stop, ok, failures) = (stop.clone(), ok.clone(), failures.clone());
        std::thread::spawn(move || {
            let t0 = Instant::now();
            while !stop.load(Ordering::Relaxed) && t0.elapsed() < Duration::from_secs(60) {
                for port in [http, tcp] {
                    match http_get(addr(port)).send() {
                        Ok((200, _, _)) => {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        other => failures
                            .lock()
                            .expect("failures")
                            .push(format!("{port}: {other:?}")),
                    }
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    // A WebSocket that talks every 100 ms for the whole run.
    let ws = {
        let stop = stop.clone();
        std::thread::spawn(move || -> Result<u64, String> {
            let (mut s, mut r) = websocket(http);
            let t0 = Instant::now();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) && t0.elapsed() < Duration::from_secs(60) {
                let msg = format!("message {i:08}");
                s.write_all(msg.as_bytes())
                    .map_err(|e| format!("send {i}: {e}"))?;
                let mut got = vec![0u8; msg.len()];
                r.read_exact(&mut got)
                    .map_err(|e| format!("echo {i}: {e}"))?;
                if got != msg.as_bytes() {
                    return Err(format!("message {i} came back as {got:?}"));
                }
                i += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            Ok(i)
        })
    };
    // 256 MiB through the L4 listener, paced to span the upgrades.
    let total = 256u64 << 20;
    let transfer = paced_echo(stream, total, 24 << 20, stop.clone());
    let loads = [wrk(addr(http), 12), wrk(addr(tcp), 12)];

    let mut took = Vec::new();
    for i in 1..=10 {
        std::thread::sleep(Duration::from_millis(600));
        let next = &builds[i % 2];
        install(next, &installed);
        let t0 = Instant::now();
        let (success, text) = upgrade(&d.socket);
        took.push(t0.elapsed());
        assert!(success, "upgrade {i} failed: {text}");
        let (new_pid, version) = pid_version(&d.status());
        pids.add(new_pid);
        assert_ne!(new_pid, pid, "upgrade {i}: the pid changes ({text})");
        assert!(
            text.contains(&new_pid.to_string()),
            "upgrade {i} names the new pid: {text}"
        );
        let tag = if i % 2 == 0 {
            "+upgrade-a"
        } else {
            "+upgrade-b"
        };
        assert!(version.ends_with(tag), "upgrade {i}: version {version}");
        pid = new_pid;
    }
    let results: Vec<(u64, Vec<String>)> =
        loads.into_iter().map(|h| h.join().expect("wrk")).collect();
    let moved = transfer.join().expect("transfer thread");
    stop.store(true, Ordering::Relaxed);
    prober.join().expect("prober");
    let messages = ws.join().expect("websocket thread");

    for (what, (requests, problems)) in ["http", "tcp"].iter().zip(&results) {
        eprintln!("{what}: {requests} wrk requests through 10 upgrades; {problems:?}");
        assert!(problems.is_empty(), "{what}: {problems:?}");
        assert!(*requests > 1000, "{what}: wrk did too little work");
    }
    let failures = failures.lock().expect("failures").clone();
    eprintln!(
        "new connections: {} ok, {} failed; upgrades took {took:?}",
        ok.load(Ordering::Relaxed),
        failures.len()
    );
    assert!(failures.is_empty(), "failed new connections: {failures:?}");
    assert!(ok.load(Ordering::Relaxed) > 200);
    assert_eq!(
        moved,
        Ok(total),
        "the 256 MiB transfer completes byte-exact"
    );
    let messages = messages.expect("the WebSocket never breaks");
    assert!(messages > 50, "WebSocket exchanged {messages} messages");

    // Every old process exits once its connections are gone; the last one
    // keeps serving.
    let old: Vec<u32> = pids.0.lock().expect("pids").clone();
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(10) && old[..old.len() - 1].iter().any(|&p| alive(p)) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let lingering: Vec<u32> = old[..old.len() - 1]
        .iter()
        .copied()
        .filter(|&p| alive(p))
        .collect();
    assert!(
        lingering.is_empty(),
        "old processes still running: {lingering:?}"
    );
    assert!(alive(pid));
    let (s, _, _) = http_get(addr(http)).send().expect("still serving");
    assert_eq!(s, 200);
}

#[test]
fn a_bad_config_or_broken_binary_is_refused_and_the_old_process_keeps_serving() {
    let dir = TempDir::new("upgrade-refused");
    std::fs::create_dir_all(dir.path("bin")).expect("bin dir");
    let installed = dir.path("bin/tandem");
    install(Path::new(BIN), &installed);
    let w = Backend::http("w1");
    let echo = Backend::start("e1", Mode::Echo);
    let (http, tcp, stream) = (free_port(), free_port(), free_port());
    let pids = Pids::default();
    let body = config(http, tcp, stream, &[&w], &echo);
    let d = Daemon::start_bin(&dir, &installed, "", &body);
    pids.add(d.child.id());
    let (pid, _) = pid_version(&d.status());
    let serving = || {
        assert_eq!(http_get(addr(http)).send().map(|r| r.0), Ok(200));
        assert_eq!(http_get(addr(tcp)).send().map(|r| r.0), Ok(200));
    };
    serving();

    // An invalid config: the new process says what is wrong and where.
    let good = std::fs::read_to_string(&d.config).expect("config");
    std::fs::write(
        &d.config,
        good.replace("pool = \"echo\"", "pool = \"nope\""),
    )
    .expect("write");
    let (success, text) = upgrade(&d.socket);
    assert!(!success, "upgrade with a bad config succeeded: {text}");
    assert!(text.contains("refused"), "{text}");
    assert!(
        text.contains("nope") && text.contains("tandem.toml"),
        "{text}"
    );
    assert_eq!(pid_version(&d.status()).0, pid);
    serving();
    std::fs::write(&d.config, &good).expect("restore config");

    // A binary that starts but is not tandem, and one that cannot start.
    for (what, bytes) in [
        ("a script that exits 3", b"#!/bin/sh\nexit 3\n".to_vec()),
        ("garbage", vec![0x7f, b'E', b'L', b'F', 0, 1, 2, 3]),
    ] {
        let broken = dir.path("broken");
        write_exec(&broken, &bytes);
        install(&broken, &installed);
        let (success, text) = upgrade(&d.socket);
        assert!(!success, "upgrade to {what} succeeded: {text}");
        assert!(text.contains("refused"), "{what}: {text}");
        if what.starts_with("a script") {
            assert!(
                text.contains("exit status: 3"),
                "the exit status is named: {text}"
            );
        }
        eprintln!("{what}: {text}");
        assert_eq!(pid_version(&d.status()).0, pid, "{what}");
        serving();
    }
    // A good binary after all that: the upgrade goes through.
    install(Path::new(BIN), &installed);
    let (success, text) = upgrade(&d.socket);
    assert!(success, "{text}");
    let (new_pid, _) = pid_version(&d.status());
    pids.add(new_pid);
    assert_ne!(new_pid, pid);
    serving();
}

/// The pair in the namespace lab: lb1 is master and upgraded ten times while
/// a client opens a new connection through the VIP every 20 ms. The peer
/// must never notice: no transition, no failed probe, the VIP stays on lb1.
#[test]
fn upgrading_the_master_ten_times_never_moves_the_vip() {
    reenter!();
    const VIP: &str = "10.79.0.100";
    let pair = support::lab::Pair::new("upg", "10.79.0", 1);
    let l = &pair.lab;
    let node = |priority: u8| {
        Node::new("10.79.0", 1, 53, priority)
            .pool(|p| p.health(TCP_CHECK))
            .render()
    };
    let pids = Pids::default();
    let sock1 = l.tandem("lb1", "lb1", &node(150));
    l.wait_for("lb1 master", Duration::from_secs(5), || {
        l.vrrp_state("lb1", "vip1") == "master"
    });
    l.tandem("lb2", "lb2", &node(100));
    l.wait_for("lb2 backup", Duration::from_secs(5), || {
        l.vrrp_state("lb2", "vip1") == "backup"
    });
    let sock1 = PathBuf::from(sock1);
    let transitions = |label: &str| -> u64 { l.status(label).expect("status").vrrp[0].transitions };
    let peer_before = transitions("lb2");
    let (mut pid, _) = pid_version(&l.status("lb1").expect("status"));
    pids.add(pid);

    // How long ago lb2 last heard lb1's advert, and the longest seen.
    let peer_silence = || -> u64 {
        l.status("lb2").expect("status").vrrp[0]
            .peers
            .iter()
            .find(|p| p.address == "10.79.0.1")
            .map_or(u64::MAX, |p| p.last_seen_ms_ago)
    };
    let mut silence = 0u64;
    let vip = SocketAddr::from(([10, 79, 0, 100], 80));
    let probes =
        support::lab::ProbeClient::start(l, "client", vip, Duration::from_millis(20), 2000);
    std::thread::sleep(Duration::from_millis(500));
    let since = Instant::now();
    for i in 1..=10 {
        let (success, text) = upgrade(&sock1);
        assert!(success, "upgrade {i}: {text}\n{}", l.log("lb1"));
        let (new_pid, _) = pid_version(&l.status("lb1").expect("status"));
        pids.add(new_pid);
        assert_ne!(new_pid, pid, "upgrade {i}: {text}");
        pid = new_pid;
        // Watch the VIP, both roles, and how long the peer has not heard
        // lb1 (it must stay far below Master_Down_Interval) until the next
        // upgrade.
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_millis(500) {
            assert!(l.has_addr("lb1", VIP), "upgrade {i}: the VIP left lb1");
            assert!(!l.has_addr("lb2", VIP), "upgrade {i}: lb2 took the VIP");
            silence = silence.max(peer_silence());
            std::thread::sleep(Duration::from_millis(25));
        }
        assert_eq!(l.vrrp_state("lb1", "vip1"), "master", "upgrade {i}");
        assert_eq!(l.vrrp_state("lb2", "vip1"), "backup", "upgrade {i}");
    }
    std::thread::sleep(Duration::from_millis(500));
    let seen = probes.stop();
    let (failed, gap) = support::lab::outage(&seen, since);
    let after = seen.iter().filter(|p| p.at >= since).count();
    eprintln!(
        "{after} probes through 10 upgrades: {failed} failed, outage {gap:?}; \
         the peer heard lb1 at most {silence} ms apart"
    );
    // Adverts every 100 ms, Master_Down_Interval 3 × 100 ms + skew: the
    // hand-over may not leave more than a couple of intervals unheard.
    assert!(
        silence < 250,
        "the peer went {silence} ms without an advert"
    );
    assert!(after > 200, "too few probes: {after}");
    assert_eq!(failed, 0, "failed probes, outage {gap:?}");
    assert_eq!(
        transitions("lb2"),
        peer_before,
        "the peer changed state during the upgrades:\n{}",
        l.log("lb2")
    );
}

/// What an operator set at runtime and what clients were promised carries
/// over: a drained backend stays drained, a runtime weight stays, health
/// is not re-learnt from scratch, and a sticky cookie issued by the old
/// process (per-boot key, no `sticky_secret`) still names its backend.
#[test]
fn runtime_state_and_sticky_cookies_survive_an_upgrade() {
    let dir = TempDir::new("upgrade-state");
    std::fs::create_dir_all(dir.path("bin")).expect("bin dir");
    let installed = dir.path("bin/tandem");
    install(Path::new(BIN), &installed);
    let webs = [
        Backend::http("alpha"),
        Backend::http("bravo"),
        Backend::http("charlie"),
    ];
    let refs: Vec<&Backend> = webs.iter().collect();
    let port = free_port();
    let body = Config::new()
        .pool(
            Pool::new("web")
                .health(TCP_CHECK)
                .backends(&refs)
                .set("sticky", r#"{ mode = "cookie", name = "TANDEM_SRV" }"#),
        )
        .listener(Listener::local("web", port, "web").protocol("http"))
        .render();
    let pids = Pids::default();
    let d = Daemon::start_bin(&dir, &installed, "", &body);
    pids.add(d.child.id());
    d.wait_for("pool up", Duration::from_secs(5), |d| {
        d.status().pools[0].healthy == 3
    });
    let ctl = |args: &[&str]| {
        let (code, text) = cli(&d, args);
        assert_eq!(code, 0, "{args:?}: {text}");
    };
    ctl(&["backend", "drain", "web/charlie"]);
    ctl(&["backend", "weight", "web/bravo", "5"]);
    let (_, h, first) = http_get(addr(port)).send().expect("first");
    let token = header(&h, "set-cookie")
        .expect("sticky cookie")
        .split(';')
        .next()
        .unwrap_or("")
        .to_string();

    let (success, text) = upgrade(&d.socket);
    assert!(success, "{text}");
    let (new_pid, _) = pid_version(&d.status());
    pids.add(new_pid);
    assert_ne!(new_pid, d.child.id());

    let s = d.status();
    assert_eq!(s.backend("web", "charlie").admin, "draining", "{s:?}");
    assert_eq!(s.backend("web", "bravo").weight, 5, "{s:?}");
    for name in ["alpha", "bravo", "charlie"] {
        assert_eq!(
            s.backend("web", name).health,
            "up",
            "health carried over, not re-learnt: {s:?}"
        );
    }
    for _ in 0..5 {
        let (code, h, body) = http_get(addr(port))
            .headers(&format!("Cookie: {token}\r\n"))
            .send()
            .expect("get");
        assert_eq!(code, 200);
        assert_eq!(
            body, first,
            "the old process's cookie still names its backend"
        );
        assert!(
            header(&h, "set-cookie").is_none(),
            "cookie not re-issued: {h:?}"
        );
    }
    // The drained backend gets no new clients from the new process.
    for _ in 0..9 {
        let (_, _, body) = http_get(addr(port)).send().expect("get");
        assert_ne!(body, "charlie");
    }
}
