//! tandem: a high-availability load balancer. One process per node runs a
//! VRRP election for virtual IPs and forwards traffic to backend pools.

pub mod balance;
pub mod config;
pub mod health;
pub mod l4;
pub mod pool;
pub mod admin;
pub mod runtime;
pub mod logging;
