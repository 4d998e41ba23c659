//! Listener admission settings (`allow`/`deny`, `rate_limit`, `accept_proxy`): the values
//! `crate::dataplane::policy` enforces.

use std::net::IpAddr;
use std::time::Duration;

use serde::Serialize;

use super::Cidr;

/// Allow/deny lists of one listener. Deny wins; an empty allow list allows
/// everyone not denied.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AclConfig {
    pub allow: Vec<Cidr>,
    pub deny: Vec<Cidr>,
}

impl AclConfig {
    pub fn is_empty(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty()
    }

    pub fn permits(&self, ip: IpAddr) -> bool {
        !self.deny.iter().any(|c| c.contains(ip))
            && (self.allow.is_empty() || self.allow.iter().any(|c| c.contains(ip)))
    }
}

/// `rate_limit = { rate = 100, burst = 200, max_connections = 20 }`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RateLimitConfig {
    /// Sustained requests (L7) or new connections (L4) per second per
    /// client address; 0 = no rate limit.
    pub rate: u32,
    /// Bucket size: how many may come at once after a quiet spell.
    pub burst: u32,
    /// Open connections per client address; 0 = unlimited.
    pub max_connections: u32,
    /// Client addresses tracked at once (bounds the table's memory).
    pub max_clients: u32,
}

/// `accept_proxy = true` with optional `accept_proxy_from = [cidrs]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct AcceptProxyConfig {
    /// Peers allowed to send a header; empty = any peer.
    pub trusted: Vec<Cidr>,
    /// How long the header may take to arrive.
    pub timeout: Duration,
}
