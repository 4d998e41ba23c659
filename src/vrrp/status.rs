//! What an instance reports, typed: the election's own `State` and `Reason`, addresses and
//! durations as values. The admin API maps it to its wire form (`admin::status::VrrpStatus`);
//! the plane never imports admin.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use super::machine::{Reason, State};
use super::packet::ChecksumForm;
use crate::config::{VirtualIp, VrrpConfig};

#[derive(Debug, Clone)]
pub struct InstanceStatus {
    pub name: String,
    pub interface: String,
    pub ipv6: bool,
    /// Where adverts go out from (IPv6: the link-local address); unknown before the interface.
    pub source: Option<IpAddr>,
    pub vrid: u8,
    pub priority: u8,
    /// Set at runtime with `tandem vrrp priority`.
    pub priority_override: Option<u8>,
    pub effective_priority: u8,
    pub state: State,
    /// Set while the instance waits for its interface or address (why), before any election.
    pub waiting: Option<String>,
    pub master: Option<IpAddr>,
    pub reason: Reason,
    pub virtual_ips: Vec<VirtualIp>,
    pub advert_interval: Duration,
    pub master_down_interval: Duration,
    pub skew: Duration,
    pub adverts_sent: u64,
    pub adverts_received: u64,
    pub transitions: u64,
    /// Dropped adverts by receive-policy reason (see `receive::Drop`).
    pub dropped: BTreeMap<&'static str, u64>,
    pub peers: Vec<PeerSnapshot>,
    pub timer_lateness_max: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSnapshot {
    pub address: IpAddr,
    pub priority: u8,
    /// The checksum variant it sends (tells a keepalived flavour apart).
    pub checksum: ChecksumForm,
    pub adverts: u64,
    pub last_seen_ago: Duration,
}

impl InstanceStatus {
    /// Before the instance has run: configured values, `Initialize`, not started.
    pub fn new(cfg: &VrrpConfig) -> InstanceStatus {
        InstanceStatus {
            name: cfg.name.clone(),
            interface: cfg.interface.clone(),
            ipv6: cfg.is_ipv6(),
            source: None,
            vrid: cfg.vrid,
            priority: cfg.priority,
            priority_override: None,
            effective_priority: cfg.priority,
            state: State::Initialize,
            waiting: None,
            master: None,
            reason: Reason::NotStarted,
            virtual_ips: cfg.virtual_ips.clone(),
            advert_interval: cfg.advert_interval,
            master_down_interval: Duration::ZERO,
            skew: Duration::ZERO,
            adverts_sent: 0,
            adverts_received: 0,
            transitions: 0,
            dropped: BTreeMap::new(),
            peers: Vec::new(),
            timer_lateness_max: Duration::ZERO,
        }
    }
}
