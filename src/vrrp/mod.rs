//! VRRP: VRRPv3 (RFC 5798, RFC 9568) and VRRPv2 (RFC 3768).
//!
//! Sans-I/O core: [`packet`] turns bytes into [`packet::Advert`]s and back,
//! [`receive`] is the RFC 5798 §7.1 policy that admits or drops each received
//! advert (and keeps the peer table), and [`machine::Router`] is the election state machine, fed with received
//! adverts and caller-supplied `Instant`s and drained for adverts to send and
//! events. [`instance`] is the thin driver that owns sockets, timers and
//! addresses; [`service`] runs every instance on a dedicated thread.

pub mod farewell;
pub mod instance;
pub mod machine;
pub mod packet;
pub mod receive;
pub mod service;
pub mod status;

#[cfg(test)]
mod sim;
