//! Data-plane workers: `workers = N` OS threads, each running its own
//! current-thread tokio runtime.
//!
//! Every TCP and HTTP listener has one `SO_REUSEPORT` socket per worker, so
//! the kernel spreads new connections over the workers and a connection
//! lives its whole life on the thread that accepted it: its task, its
//! buffers, the worker's idle backend connections (`l7::h1::upconn`) are
//! touched by that thread alone. The control plane (config, reload, health
//! checks, admin, metrics) runs on its own runtime, and the VRRP election
//! on its own thread, so a saturated data plane cannot starve either.

use std::cell::Cell;
use std::sync::OnceLock;

use tokio::runtime::Handle;

pub struct Workers {
    handles: Vec<Handle>,
}

static WORKERS: OnceLock<Workers> = OnceLock::new();

thread_local! {
    static INDEX: Cell<usize> = const { Cell::new(0) };
}

/// Starts `n` workers (once per process; later calls return the first set).
pub fn start(n: usize) -> std::io::Result<&'static Workers> {
    if let Some(w) = WORKERS.get() {
        return Ok(w);
    }
    let n = n.max(1);
    let mut handles = Vec::with_capacity(n);
    for i in 0..n {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        handles.push(rt.handle().clone());
        std::thread::Builder::new()
            .name(format!("tandem-w{i}"))
            .spawn(move || {
                INDEX.with(|x| x.set(i));
                // Runs the worker's tasks until the process exits.
                rt.block_on(give_back_memory());
            })?;
    }
    Ok(WORKERS.get_or_init(|| Workers { handles }))
}

/// How often a worker returns the memory its freed connections left behind.
const TRIM_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// The allocator keeps freed pages for reuse; after 10,000 connections close
/// that would pin their memory for good. Every [`TRIM_EVERY`] the worker asks
/// its own thread's heap to give unused pages back (a walk over the heap's
/// pages: microseconds, against the cost of a connection).
async fn give_back_memory() {
    loop {
        tokio::time::sleep(TRIM_EVERY).await;
        trim_thread_heap();
    }
}

/// Returns this thread's free allocator pages to the OS.
pub fn trim_thread_heap() {
    #[cfg(feature = "mimalloc")]
    // SAFETY: mi_collect walks and releases the calling thread's own heap (and, forced,
    // segments that exited threads abandoned); it takes no pointers.
    unsafe {
        libmimalloc_sys::mi_collect(true);
    }
    #[cfg(not(feature = "mimalloc"))]
    // SAFETY: glibc's malloc_trim takes no pointers.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The running workers, starting one if none were started (tests, tools).
pub fn get() -> &'static Workers {
    match WORKERS.get() {
        Some(w) => w,
        None => match start(1) {
            Ok(w) => w,
            Err(e) => panic!("cannot start a data-plane worker thread: {e}"),
        },
    }
}

impl Workers {
    pub fn len(&self) -> usize {
        self.handles.len()
    }

    pub fn is_empty(&self) -> bool {
        self.handles.is_empty()
    }

    pub fn handle(&self, i: usize) -> &Handle {
        &self.handles[i % self.handles.len()]
    }
}

/// Index of the worker this code runs on (0 off the workers).
pub fn index() -> usize {
    INDEX.with(Cell::get)
}
