//! tandem: a high-availability load balancer. One process per node runs a
//! VRRP election for virtual IPs and forwards traffic to backend pools.

pub mod accesslog;
pub mod admin;
pub mod anycast;
pub mod balance;
pub mod caps;
pub mod config;
pub mod dataplane;
pub mod health;
pub mod import;
pub mod logging;
pub mod net;
pub mod pool;
pub mod preflight;
pub mod runtime;
pub mod sd;
pub mod stats;
pub mod sync;
pub mod vrrp;

/// Room for a build tag, patched into a built binary by packagers and by
/// the upgrade tests (which need two binaries that report different
/// versions); all dashes means untagged.
static BUILD_TAG: [u8; 48] = *b"TANDEM-BUILD-TAG:-------------------------------";

/// The version this binary reports: the crate version, plus the build tag when one was set.
pub fn version() -> String {
    // Read through black_box: the bytes are meant to be patched after the build.
    let tag = std::hint::black_box(&BUILD_TAG);
    let tag = String::from_utf8_lossy(&tag[17..]);
    let tag = tag.trim_end_matches('-');
    if tag.is_empty() {
        env!("CARGO_PKG_VERSION").to_string()
    } else {
        format!("{}+{tag}", env!("CARGO_PKG_VERSION"))
    }
}
