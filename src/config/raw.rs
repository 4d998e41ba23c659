//! Raw serde shapes of the TOML file. Every struct denies unknown keys so a
//! typo is an error, never a silently ignored setting. Optional fields stay
//! `Option` here; defaults and ranges are applied by the validator, which
//! knows the key path to blame.

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Global {
    pub admin_socket: Option<String>,
    pub workers: Option<u64>,
    pub shutdown_timeout: Option<String>,
    pub log_level: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pool {
    pub name: String,
    pub algorithm: Option<String>,
    #[serde(default)]
    pub backends: Vec<Backend>,
    pub health: Option<Health>,
    pub connect_timeout: Option<String>,
    pub retries: Option<u64>,
    pub queue_size: Option<u64>,
    pub queue_timeout: Option<String>,
    pub passive_failures: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backend {
    pub address: String,
    pub name: Option<String>,
    pub weight: Option<u64>,
    pub backup: Option<bool>,
    pub max_connections: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Health {
    pub check: Option<String>,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub rise: Option<u64>,
    pub fall: Option<u64>,
    pub port: Option<u64>,
    pub path: Option<String>,
    pub host: Option<String>,
    pub expect_status: Option<Vec<u16>>,
    pub expect_body: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    pub name: String,
    pub bind: String,
    pub protocol: Option<String>,
    pub pool: Option<String>,
    pub max_connections: Option<u64>,
    pub queue_size: Option<u64>,
    pub queue_timeout: Option<String>,
    pub idle_timeout: Option<String>,
    pub send_proxy: Option<String>,
    pub splice: Option<String>,
    pub backlog: Option<u64>,
    pub max_flows: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vrrp {
    pub name: String,
    pub interface: String,
    pub vrid: u64,
    pub priority: Option<u64>,
    pub advert_interval: Option<String>,
    #[serde(default)]
    pub virtual_ips: Vec<String>,
    pub preempt: Option<bool>,
    pub preempt_delay: Option<String>,
    pub version: Option<u64>,
    pub checksum: Option<String>,
    pub unicast_peers: Option<Vec<String>>,
    pub unicast_source: Option<String>,
    #[serde(default)]
    pub track: Vec<Track>,
    #[serde(default)]
    pub track_interfaces: Vec<String>,
    pub notify: Option<String>,
    pub notify_timeout: Option<String>,
    pub sync_group: Option<String>,
    pub garp_count: Option<u64>,
    pub garp_interval: Option<String>,
    pub garp_refresh: Option<String>,
    pub vip_lifetime: Option<String>,
    pub handover_timeout: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Track {
    pub pool: String,
    pub weight: Option<i64>,
}
