//! tandem: a high-availability load balancer. One process per node runs a
//! VRRP election for virtual IPs and forwards traffic to backend pools.

pub mod accept;
pub mod admin;
pub mod anycast;
pub mod balance;
pub mod caps;
pub mod config;
pub mod health;
pub mod import;
pub mod l4;
pub mod l7;
pub mod logging;
pub mod net;
pub mod pool;
pub mod runtime;
pub mod scaleout;
pub mod sd;
pub mod stats;
pub mod sync;
pub mod tls;
pub mod vrrp;
pub mod worker;
