//! The data plane: everything a client's connection touches, in one place.
//!
//! [`worker`] runs `workers = N` threads, each a current-thread runtime with its own
//! `SO_REUSEPORT` socket per listener; a connection lives its whole life on the worker
//! that accepted it. On a worker: [`accept`] (the shared accept loop and listener
//! admission), [`policy`] (ACLs, rate limits, the PROXY header a client side sends,
//! decoded by [`proxy_protocol`]), then [`l4`] (TCP/UDP forwarding) or [`l7`] (HTTP/1.1
//! fast path, HTTP/2 through hyper), with [`tls`] for termination and re-encryption.
//!
//! Floors: this module imports config (the leaf), stats, balance and pool below it, and
//! never admin or runtime above it; runtime builds listeners and hands them to workers.

pub mod accept;
pub mod l4;
pub mod l7;
pub mod policy;
pub mod proxy_protocol;
pub mod tls;
pub mod worker;
