//! Allocations per request on the HTTP/1.1 keep-alive fast path.
//!
//! A counting global allocator wraps the system allocator for this whole
//! process; tandem's daemon runs in-process (one data-plane worker) in
//! front of a backend that answers every request with a fixed 100-byte
//! response from a fixed buffer, and a client that sends requests one after
//! another on one keep-alive connection, also from fixed buffers. After a
//! warm-up (pools, buffers and caches reach their steady size), the
//! allocations counted over the next requests, divided by their number, are
//! what each proxied request costs. The client and the backend allocate
//! nothing per request, so every allocation counted is tandem's.
//!
//!   cargo bench --bench allocs            (prints the figure)
//!   cargo bench --bench allocs -- --max N (fails above N per request)

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

static TRACE_AT: AtomicU64 = AtomicU64::new(u64::MAX);

thread_local! {
    static IN_TRACE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// With ALLOCS_TRACE=1, prints where one steady-state allocation comes from.
fn maybe_trace() {
    let n = ALLOCS.load(Ordering::Relaxed);
    if n == TRACE_AT.load(Ordering::Relaxed) && !IN_TRACE.with(|t| t.replace(true)) {
        eprintln!(
            "allocation #{n}:\n{}",
            std::backtrace::Backtrace::force_capture()
        );
        IN_TRACE.with(|t| t.set(false));
    }
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        maybe_trace();
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nContent-Type: text/plain\r\n\r\nxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\n";

/// Reads one request head (no bodies here) and answers it, forever.
fn backend(l: TcpListener) {
    for s in l.incoming() {
        let Ok(mut s) = s else { continue };
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            let mut have = 0;
            loop {
                match s.read(&mut buf[have..]) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => have += n,
                }
                while let Some(end) = buf[..have].windows(4).position(|w| w == b"\r\n\r\n") {
                    if s.write_all(RESPONSE).is_err() {
                        return;
                    }
                    buf.copy_within(end + 4..have, 0);
                    have -= end + 4;
                }
            }
        });
    }
}

/// Sends `n` requests on `s` and reads each 100-byte response.
fn requests(s: &mut TcpStream, n: u64) {
    let req =
        b"GET /item?id=7 HTTP/1.1\r\nHost: bench.test\r\nUser-Agent: allocs\r\nAccept: */*\r\n\r\n";
    let mut buf = [0u8; 4096];
    for _ in 0..n {
        s.write_all(req).expect("write");
        let mut have = 0;
        loop {
            let k = s.read(&mut buf[have..]).expect("read");
            assert!(k > 0, "proxy closed the connection");
            have += k;
            if let Some(end) = buf[..have].windows(4).position(|w| w == b"\r\n\r\n") {
                if have >= end + 4 + 100 {
                    assert!(buf.starts_with(b"HTTP/1.1 200"), "not a 200");
                    break;
                }
            }
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let max: Option<f64> = args
        .iter()
        .position(|a| a == "--max")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok());
    let back = TcpListener::bind("127.0.0.1:0").expect("bind backend");
    let back_addr = back.local_addr().expect("addr");
    std::thread::spawn(move || backend(back));
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let dir = std::env::temp_dir().join(format!("tandem-allocs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let cfg_path = dir.join("tandem.toml");
    std::fs::write(
        &cfg_path,
        format!(
            r#"[global]
admin_socket = "{admin}"
workers = 1
log_level = "error"

[[pool]]
name = "web"
health = {{ check = "none" }}
backends = [{{ address = "{back_addr}" }}]

[[listener]]
name = "web"
bind = "127.0.0.1:{port}"
protocol = "http"
pool = "web"
request_id = ""
"#,
            admin = dir.join("admin.sock").display()
        ),
    )
    .expect("write config");
    let cfg = tandem::preflight::load(&cfg_path).expect("config");
    tandem::dataplane::worker::start(1).expect("worker");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let _daemon = rt
        .block_on(tandem::runtime::Daemon::start(&cfg_path, cfg, None))
        .expect("start");
    let mut s = None;
    for _ in 0..100 {
        if let Ok(c) = TcpStream::connect(("127.0.0.1", port)) {
            s = Some(c);
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut s = s.expect("connect to tandem");
    s.set_nodelay(true).expect("nodelay");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    requests(&mut s, 2_000);
    const N: u64 = 20_000;
    let before = ALLOCS.load(Ordering::Relaxed);
    if std::env::var_os("ALLOCS_TRACE").is_some() {
        TRACE_AT.store(before + 100, Ordering::Relaxed);
    }
    requests(&mut s, N);
    let after = ALLOCS.load(Ordering::Relaxed);
    let per = (after - before) as f64 / N as f64;
    println!(
        "HTTP/1.1 keep-alive fast path: {per:.3} allocations per request ({} over {N} requests)",
        after - before
    );
    let _ = std::fs::remove_dir_all(&dir);
    if let Some(m) = max {
        if per > m {
            eprintln!("allocs: {per:.3} allocations per request is above --max {m}");
            std::process::exit(1);
        }
    }
    std::process::exit(0);
}
