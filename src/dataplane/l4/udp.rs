//! UDP forwarding with a per-client flow table.
//!
//! The first datagram from a client address leases a backend and opens a
//! connected socket towards it; the flow's reply task sends the backend's
//! answers back to that client from the listener's own socket (so the client
//! sees replies from the address it talked to). Flows expire after
//! `idle_timeout`; the table is bounded by `max_flows`. A datagram with no
//! backend to go to, or no room in the table, is dropped and counted.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use super::tcp::ListenerRt;
use crate::balance::client_key;
use crate::pool::Lease;
use crate::stats::ListenerStats;

const MAX_DATAGRAM: usize = 65535;

struct Flow {
    sock: Arc<UdpSocket>,
    lease: Lease,
    last_ms: Arc<AtomicU64>,
    cancel: CancellationToken,
}

impl Drop for Flow {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

pub async fn serve(
    socket: UdpSocket,
    rt: Arc<ArcSwap<ListenerRt>>,
    stats: Arc<ListenerStats>,
    stop: CancellationToken,
) {
    let socket = Arc::new(socket);
    let start = Instant::now();
    let mut flows: HashMap<SocketAddr, Flow> = HashMap::new();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let mut sweep = tokio::time::interval(Duration::from_secs(1));
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let (n, client) = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            _ = sweep.tick() => {
                let idle = rt.load().cfg.idle_timeout.as_millis() as u64;
                let now = start.elapsed().as_millis() as u64;
                flows.retain(|_, f| now.saturating_sub(f.last_ms.load(Ordering::Relaxed)) < idle);
                stats.active.store(flows.len() as u64, Ordering::Relaxed);
                continue;
            }
            r = socket.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::debug!(error = %e, "udp receive error");
                    continue;
                }
            },
        };
        let now_ms = start.elapsed().as_millis() as u64;
        stats.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
        // A flow whose backend went down is re-balanced on its next datagram.
        if flows
            .get(&client)
            .is_some_and(|f| !f.lease.state.is_healthy())
        {
            flows.remove(&client);
        }
        if !flows.contains_key(&client) {
            let snap = rt.load();
            // A denied client never gets a flow (nor a backend).
            if !snap.policy.acl.permits(client.ip()) {
                stats
                    .policy
                    .count(crate::dataplane::policy::Refusal::Denied);
                continue;
            }
            if flows.len() >= snap.cfg.max_flows as usize {
                let idle = snap.cfg.idle_timeout.as_millis() as u64;
                flows
                    .retain(|_, f| now_ms.saturating_sub(f.last_ms.load(Ordering::Relaxed)) < idle);
                if flows.len() >= snap.cfg.max_flows as usize {
                    stats.dropped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
            }
            match open_flow(&snap, client, &socket, &stats, start).await {
                Some(f) => {
                    stats.total.fetch_add(1, Ordering::Relaxed);
                    flows.insert(client, f);
                    stats.active.store(flows.len() as u64, Ordering::Relaxed);
                }
                None => {
                    stats.dropped.fetch_add(1, Ordering::Relaxed);
                    stats.no_backend.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
            }
        }
        if let Some(f) = flows.get(&client) {
            f.last_ms.store(now_ms, Ordering::Relaxed);
            f.lease
                .state
                .bytes_out
                .fetch_add(n as u64, Ordering::Relaxed);
            if let Err(e) = f.sock.send(&buf[..n]).await {
                // ECONNREFUSED here is the ICMP port-unreachable of an
                // earlier datagram: count it against the backend.
                f.lease.failed(&e.to_string());
                stats.dropped.fetch_add(1, Ordering::Relaxed);
                flows.remove(&client);
            }
        }
    }
}

async fn open_flow(
    rt: &ListenerRt,
    client: SocketAddr,
    listener: &Arc<UdpSocket>,
    stats: &Arc<ListenerStats>,
    start: Instant,
) -> Option<Flow> {
    let lease = rt.pool.try_lease(client_key(client.ip()), &[]).ok()?;
    let local: SocketAddr = match lease.addr.ip() {
        IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        IpAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let sock = match UdpSocket::bind(local).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot open UDP socket towards backend");
            return None;
        }
    };
    if let Err(e) = sock.connect(lease.addr).await {
        lease.failed(&e.to_string());
        return None;
    }
    let sock = Arc::new(sock);
    let last_ms = Arc::new(AtomicU64::new(start.elapsed().as_millis() as u64));
    let cancel = CancellationToken::new();
    let state = lease.state.clone();
    {
        let (sock, listener, stats, last_ms, cancel) = (
            sock.clone(),
            listener.clone(),
            stats.clone(),
            last_ms.clone(),
            cancel.clone(),
        );
        tokio::spawn(async move {
            let mut buf = vec![0u8; MAX_DATAGRAM];
            loop {
                let r = tokio::select! {
                    _ = cancel.cancelled() => return,
                    r = sock.recv(&mut buf) => r,
                };
                match r {
                    Ok(n) => {
                        last_ms.store(start.elapsed().as_millis() as u64, Ordering::Relaxed);
                        state.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
                        stats.bytes_out.fetch_add(n as u64, Ordering::Relaxed);
                        let _ = listener.send_to(&buf[..n], client).await;
                    }
                    Err(_) => {
                        // ICMP errors surface here; the next datagram from the
                        // client re-checks health and may re-balance.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
        });
    }
    Some(Flow {
        sock,
        lease,
        last_ms,
        cancel,
    })
}
