//! Who may use a listener: client-address ACLs, per-client rate and
//! connection limits, and the PROXY header an upstream L4 balancer puts in
//! front of its connections (`accept_proxy`). L4 and L7 listeners share it;
//! everything is decided before a backend is touched.
//!
//! The rate table is one per listener, shared by every worker thread of the
//! node (an operator's limit is per node, not per core), split into shards
//! so two workers rarely meet on the same lock, and bounded: when a shard
//! is full the longest-idle client without open connections is forgotten.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

pub use crate::config::policy::{AcceptProxyConfig, AclConfig, RateLimitConfig};
use crate::dataplane::proxy_protocol::{self, Decoded};
pub use crate::stats::{PolicyStats, Refusal};

const SHARDS: usize = 16;

#[derive(Debug)]
struct Entry {
    tokens: f64,
    last: Instant,
    conns: u32,
}

/// Per-client token buckets and connection counts.
#[derive(Debug)]
pub struct RateLimiter {
    cfg: RateLimitConfig,
    shards: Vec<Mutex<HashMap<IpAddr, Entry>>>,
}

/// An open connection counted against its client; released on drop.
#[derive(Debug)]
pub struct ConnTicket {
    limiter: Arc<RateLimiter>,
    ip: IpAddr,
}

impl Drop for ConnTicket {
    fn drop(&mut self) {
        self.limiter.release(self.ip);
    }
}

fn shard_of(ip: IpAddr) -> usize {
    let x = match ip {
        IpAddr::V4(a) => u32::from(a) as u64,
        IpAddr::V6(a) => {
            let v = u128::from(a);
            (v as u64) ^ ((v >> 64) as u64)
        }
    };
    (x.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 60) as usize % SHARDS
}

impl RateLimiter {
    pub fn new(cfg: RateLimitConfig) -> RateLimiter {
        RateLimiter {
            cfg,
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    pub fn config(&self) -> &RateLimitConfig {
        &self.cfg
    }

    /// Client addresses currently tracked.
    pub fn tracked(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map(|m| m.len()).unwrap_or(0))
            .sum()
    }

    fn per_shard(&self) -> usize {
        (self.cfg.max_clients as usize).div_ceil(SHARDS).max(1)
    }

    /// Runs `f` on the client's entry, creating it (and making room) first.
    /// None when the shard is full of clients with open connections.
    fn with_entry<T>(
        &self,
        ip: IpAddr,
        now: Instant,
        f: impl FnOnce(&mut Entry) -> T,
    ) -> Option<T> {
        let ip = ip.to_canonical();
        let mut m = self.shards[shard_of(ip)].lock().ok()?;
        if !m.contains_key(&ip) && m.len() >= self.per_shard() {
            let victim = m
                .iter()
                .filter(|(_, e)| e.conns == 0)
                .min_by_key(|(_, e)| e.last)
                .map(|(k, _)| *k)?;
            m.remove(&victim);
        }
        let e = m.entry(ip).or_insert(Entry {
            tokens: self.cfg.burst as f64,
            last: now,
            conns: 0,
        });
        Some(f(e))
    }

    /// Takes one token from the client's bucket: false when over the rate.
    pub fn take(&self, ip: IpAddr, now: Instant) -> bool {
        if self.cfg.rate == 0 {
            return true;
        }
        let (rate, burst) = (self.cfg.rate as f64, self.cfg.burst as f64);
        self.with_entry(ip, now, |e| {
            let dt = now.saturating_duration_since(e.last).as_secs_f64();
            e.tokens = (e.tokens + dt * rate).min(burst);
            e.last = now;
            if e.tokens >= 1.0 {
                e.tokens -= 1.0;
                true
            } else {
                false
            }
        })
        .unwrap_or(false)
    }

    /// Counts an open connection: None when the client is at its limit
    /// (or the table is full of busy clients).
    pub fn open(self: &Arc<Self>, ip: IpAddr, now: Instant) -> Option<ConnTicket> {
        let max = self.cfg.max_connections;
        let ok = self.with_entry(ip, now, |e| {
            if max != 0 && e.conns >= max {
                return false;
            }
            e.conns += 1;
            e.last = now;
            true
        })?;
        ok.then(|| ConnTicket {
            limiter: self.clone(),
            ip: ip.to_canonical(),
        })
    }

    fn release(&self, ip: IpAddr) {
        if let Ok(mut m) = self.shards[shard_of(ip)].lock() {
            if let Some(e) = m.get_mut(&ip) {
                e.conns = e.conns.saturating_sub(1);
            }
        }
    }
}

/// One listener's admission policy, built per config generation; the rate
/// table carries over a reload while its settings stay the same.
#[derive(Debug, Default)]
pub struct ClientPolicy {
    pub acl: AclConfig,
    pub accept_proxy: Option<AcceptProxyConfig>,
    pub limiter: Option<Arc<RateLimiter>>,
}

/// What an admitted connection carries: the client's address (from the
/// PROXY header when there is one) and its connection ticket.
#[derive(Debug)]
pub struct Admitted {
    pub peer: SocketAddr,
    /// The original destination the PROXY header named, if any.
    pub local: Option<SocketAddr>,
    pub _ticket: Option<ConnTicket>,
}

impl ClientPolicy {
    pub fn new(
        acl: AclConfig,
        accept_proxy: Option<AcceptProxyConfig>,
        rate: Option<RateLimitConfig>,
        previous: Option<&ClientPolicy>,
    ) -> ClientPolicy {
        let limiter = rate.map(|r| match previous.and_then(|p| p.limiter.as_ref()) {
            Some(l) if *l.config() == r => l.clone(),
            _ => Arc::new(RateLimiter::new(r)),
        });
        ClientPolicy {
            acl,
            accept_proxy,
            limiter,
        }
    }

    pub fn is_open(&self) -> bool {
        self.acl.is_empty() && self.accept_proxy.is_none() && self.limiter.is_none()
    }

    /// The ACL and the connection-level limits for a client address.
    pub fn check(&self, ip: IpAddr, l4: bool) -> Result<Option<ConnTicket>, Refusal> {
        if !self.acl.permits(ip) {
            return Err(Refusal::Denied);
        }
        let Some(l) = &self.limiter else {
            return Ok(None);
        };
        let now = Instant::now();
        // On L4 listeners the rate counts new connections.
        if l4 && !l.take(ip, now) {
            return Err(Refusal::RateLimited);
        }
        l.open(ip, now).map(Some).ok_or(Refusal::TooManyConnections)
    }

    /// L7: one request of `ip`; false when over its rate.
    pub fn request(&self, ip: IpAddr) -> bool {
        self.limiter
            .as_ref()
            .is_none_or(|l| l.take(ip, Instant::now()))
    }

    /// Everything that happens on a new TCP connection before the listener
    /// serves it: the PROXY header (read and consumed when accepted), then
    /// the ACL and limits on the resulting client address.
    pub async fn admit(
        &self,
        stream: &TcpStream,
        peer: SocketAddr,
        l4: bool,
        stats: &PolicyStats,
    ) -> Result<Admitted, Refusal> {
        let mut client = peer;
        let mut local = None;
        if let Some(ap) = &self.accept_proxy {
            if !ap.trusted.is_empty() && !ap.trusted.iter().any(|c| c.contains(peer.ip())) {
                tracing::debug!(peer = %peer, "PROXY header from an untrusted peer refused");
                stats.count(Refusal::BadProxy);
                return Err(Refusal::BadProxy);
            }
            match read_proxy_header(stream, ap.timeout).await {
                Ok(Decoded::Proxied { src, dst }) => {
                    client = src;
                    local = Some(dst);
                }
                Ok(Decoded::Local) => {}
                Err(e) => {
                    tracing::debug!(peer = %peer, error = %e, "PROXY header refused");
                    stats.count(Refusal::BadProxy);
                    return Err(Refusal::BadProxy);
                }
            }
        }
        match self.check(client.ip(), l4) {
            Ok(ticket) => Ok(Admitted {
                peer: client,
                local,
                _ticket: ticket,
            }),
            Err(r) => {
                stats.count(r);
                Err(r)
            }
        }
    }
}

/// Reads exactly the PROXY header off the socket (peeking first, so not a
/// byte of the client's own stream is consumed), within `timeout`.
pub async fn read_proxy_header(stream: &TcpStream, timeout: Duration) -> std::io::Result<Decoded> {
    use std::io::{Error, ErrorKind};
    let work = async {
        let mut buf = vec![0u8; proxy_protocol::V2_MAX];
        let mut seen = 0;
        loop {
            let n = stream.peek(&mut buf).await?;
            if n == 0 {
                return Err(Error::new(
                    ErrorKind::UnexpectedEof,
                    "closed before a PROXY header",
                ));
            }
            match proxy_protocol::decode(&buf[..n]) {
                Ok(Some((d, len))) => {
                    let mut left = len;
                    while left > 0 {
                        stream.readable().await?;
                        match stream.try_read(&mut buf[..left]) {
                            Ok(0) => return Err(ErrorKind::UnexpectedEof.into()),
                            Ok(k) => left -= k,
                            Err(e) if e.kind() == ErrorKind::WouldBlock => continue,
                            Err(e) => return Err(e),
                        }
                    }
                    return Ok(d);
                }
                Ok(None) if n == buf.len() => {
                    return Err(Error::new(ErrorKind::InvalidData, "PROXY header too long"))
                }
                Ok(None) => {
                    // peek returns at once while bytes are queued: wait
                    // for more to arrive instead of spinning on the same ones.
                    if n == seen {
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                    seen = n;
                }
                Err(e) => return Err(Error::new(ErrorKind::InvalidData, e.to_string())),
            }
        }
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "PROXY header timeout"))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Cidr;

    fn cidr(s: &str) -> Cidr {
        Cidr::parse(s).expect("cidr")
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn acl_deny_wins_and_empty_allow_allows_all() {
        let open = AclConfig::default();
        assert!(open.permits(ip("203.0.113.9")));
        let acl = AclConfig {
            allow: vec![cidr("10.0.0.0/8"), cidr("2001:db8::/32")],
            deny: vec![cidr("10.9.0.0/16")],
        };
        for (a, want) in [
            ("10.1.2.3", true),
            ("10.9.1.1", false),
            ("192.0.2.1", false),
            ("2001:db8::5", true),
            ("2001:db9::5", false),
            // An IPv4 client on a dual-stack socket is matched as IPv4.
            ("::ffff:10.1.2.3", true),
            ("::ffff:10.9.0.1", false),
        ] {
            assert_eq!(acl.permits(ip(a)), want, "{a}");
        }
        let deny_only = AclConfig {
            allow: vec![],
            deny: vec![cidr("192.0.2.0/24")],
        };
        assert!(!deny_only.permits(ip("192.0.2.7")));
        assert!(deny_only.permits(ip("192.0.3.7")));
    }

    fn limiter(rate: u32, burst: u32, conns: u32, clients: u32) -> Arc<RateLimiter> {
        Arc::new(RateLimiter::new(RateLimitConfig {
            rate,
            burst,
            max_connections: conns,
            max_clients: clients,
        }))
    }

    #[test]
    fn token_bucket_allows_burst_then_the_rate() {
        let l = limiter(10, 5, 0, 1000);
        let t0 = Instant::now();
        let a = ip("192.0.2.1");
        for _ in 0..5 {
            assert!(l.take(a, t0));
        }
        assert!(!l.take(a, t0), "burst spent");
        // Another client has its own bucket.
        assert!(l.take(ip("192.0.2.2"), t0));
        // 100 ms at 10/s refills one token.
        assert!(l.take(a, t0 + Duration::from_millis(100)));
        assert!(!l.take(a, t0 + Duration::from_millis(100)));
        // A long pause refills only up to the burst.
        let later = t0 + Duration::from_secs(60);
        for _ in 0..5 {
            assert!(l.take(a, later));
        }
        assert!(!l.take(a, later));
        // rate = 0 is no rate limit.
        let off = limiter(0, 0, 1, 10);
        for _ in 0..100 {
            assert!(off.take(a, t0));
        }
    }

    #[test]
    fn connection_limit_is_per_client_and_released_on_drop() {
        let l = limiter(0, 0, 2, 1000);
        let t0 = Instant::now();
        let a = ip("2001:db8::1");
        let t1 = l.open(a, t0).expect("first");
        let _t2 = l.open(a, t0).expect("second");
        assert!(l.open(a, t0).is_none(), "third refused");
        assert!(l.open(ip("2001:db8::2"), t0).is_some());
        drop(t1);
        assert!(l.open(a, t0).is_some(), "a slot came back");
    }

    #[test]
    fn table_is_bounded_and_evicts_idle_clients_first() {
        // 16 shards of one entry each.
        let l = limiter(1, 1, 0, 16);
        let t0 = Instant::now();
        let v4 = |i: u32| IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
        for i in 0..2000u32 {
            assert!(l.take(v4(i), t0 + Duration::from_millis(i as u64)));
        }
        assert!(l.tracked() <= 16, "tracked {}", l.tracked());
        // A client with an open connection is never evicted, so a newcomer
        // to its full shard is refused until the connection closes.
        let busy = v4(5000);
        let ticket = l.open(busy, t0).expect("open");
        let newcomer = (5001..)
            .map(v4)
            .find(|a| shard_of(*a) == shard_of(busy))
            .expect("same shard");
        assert!(!l.take(newcomer, t0));
        assert!(l.take(busy, t0 + Duration::from_secs(3)));
        drop(ticket);
        assert!(l.take(newcomer, t0));
    }

    #[test]
    fn policy_check_applies_acl_then_limits() {
        let p = ClientPolicy::new(
            AclConfig {
                allow: vec![],
                deny: vec![cidr("192.0.2.66")],
            },
            None,
            Some(RateLimitConfig {
                rate: 1,
                burst: 2,
                max_connections: 10,
                max_clients: 100,
            }),
            None,
        );
        assert_eq!(p.check(ip("192.0.2.66"), true).err(), Some(Refusal::Denied));
        let a = ip("192.0.2.1");
        let _k1 = p.check(a, true).expect("1");
        let _k2 = p.check(a, true).expect("2");
        assert_eq!(p.check(a, true).err(), Some(Refusal::RateLimited));
        // L7 connections do not spend request tokens.
        let b = ip("192.0.2.2");
        for _ in 0..5 {
            assert!(p.check(b, false).is_ok());
        }
        assert!(p.request(b) && p.request(b));
        assert!(!p.request(b));
        // The table carries over a reload with the same settings.
        let q = ClientPolicy::new(
            AclConfig::default(),
            None,
            p.limiter.as_ref().map(|l| *l.config()),
            Some(&p),
        );
        assert!(!q.request(b));
    }
}
