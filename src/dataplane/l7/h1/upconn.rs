//! Idle keep-alive connections to backends, one set per worker thread.
//!
//! A worker's connections are only ever used by that worker's tasks, so the
//! table is a thread-local: checking a connection out or in touches no lock
//! and no memory another worker writes. Connections are keyed by the
//! upstream settings they were dialled with (a pool's TLS or timeouts change
//! on reload → a new key) and the backend address; the most recently used
//! is reused first (warm in every cache), and a sweeper drops those idle
//! longer than the pool's `upstream_idle_timeout`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use bytes::BytesMut;

use super::head::ResponseHead;
use crate::dataplane::l7::upstream::{Stream, Upstream};

/// Read buffer of a backend connection; response heads and body pieces.
const BUF: usize = 16 * 1024;

pub struct UpConn {
    pub io: Stream,
    pub buf: BytesMut,
    pub head: ResponseHead,
    expires: Instant,
}

impl UpConn {
    pub fn new(io: Stream) -> UpConn {
        UpConn {
            io,
            buf: BytesMut::with_capacity(BUF),
            head: ResponseHead::default(),
            expires: Instant::now(),
        }
    }

    /// Whether the backend has not closed (or written to) the idle
    /// connection. A TLS connection may legitimately have bytes waiting (a
    /// session ticket); only a plain one must be silent.
    fn alive(&self) -> bool {
        let fd = self.io.tcp().as_raw_fd();
        let mut probe = [0u8; 1];
        let flags = nix::sys::socket::MsgFlags::MSG_PEEK | nix::sys::socket::MsgFlags::MSG_DONTWAIT;
        match nix::sys::socket::recv(fd, &mut probe, flags) {
            Err(nix::errno::Errno::EAGAIN) => true,
            Ok(0) | Err(_) => false,
            Ok(_) => matches!(self.io, Stream::Tls(_)),
        }
    }
}

type Key = (u64, SocketAddr);

#[derive(Default)]
struct Idle {
    map: HashMap<Key, Vec<UpConn>>,
    sweeping: bool,
}

thread_local! {
    static IDLE: RefCell<Idle> = RefCell::new(Idle::default());
}

/// A live idle connection to `addr` dialled with `up`'s settings, if any.
pub fn checkout(up: &Upstream, addr: SocketAddr) -> Option<UpConn> {
    IDLE.with(|idle| {
        let mut idle = idle.borrow_mut();
        let list = idle.map.get_mut(&(up.id, addr))?;
        let now = Instant::now();
        while let Some(c) = list.pop() {
            if c.expires > now && c.alive() {
                return Some(c);
            }
        }
        None
    })
}

/// Keeps `conn` for reuse, unless the worker already holds `max_idle`
/// idle connections to that backend.
pub fn checkin(up: &Upstream, addr: SocketAddr, mut conn: UpConn, max_idle: usize, ttl: Duration) {
    if max_idle == 0 || !conn.buf.is_empty() {
        return;
    }
    conn.expires = Instant::now() + ttl;
    let start_sweeper = IDLE.with(|idle| {
        let mut idle = idle.borrow_mut();
        let list = idle.map.entry((up.id, addr)).or_default();
        if list.len() < max_idle {
            list.push(conn);
        }
        !std::mem::replace(&mut idle.sweeping, true)
    });
    if start_sweeper {
        // Runs on this worker's runtime, so it sees this thread's table.
        tokio::spawn(async {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let now = Instant::now();
                IDLE.with(|idle| {
                    let mut idle = idle.borrow_mut();
                    idle.map.retain(|_, list| {
                        list.retain(|c| c.expires > now);
                        !list.is_empty()
                    });
                });
            }
        });
    }
}

/// Idle connections this worker holds (for tests and status).
pub fn idle_count() -> usize {
    IDLE.with(|idle| idle.borrow().map.values().map(Vec::len).sum())
}
