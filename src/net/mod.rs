//! Linux networking layer: virtual IP addresses (netlink), interface state and
//! change notifications, gratuitous ARP / unsolicited NA, and the raw VRRP socket.
//!
//! Everything here is a thin wrapper over kernel objects; errors are values of
//! [`NetError`] that name the interface/address involved and, when the kernel
//! refused for lack of privilege, the capability the process is missing.

pub mod garp;
pub mod link;
#[cfg(test)]
mod testns;
pub mod vip;
pub mod vrrp_socket;

use std::fmt;
use std::future::Future;
use std::io;

pub use garp::{arp_reply_frame, arp_request_frame, unsolicited_na, GarpSender, NaSender};
pub use link::{
    get_link, ifindex, is_link_local_v6, link_local_ipv6, primary_ipv4, Link, LinkWatcher, NetEvent,
};
pub use vip::{add_vip, del_vip, has_vip, list_addrs, list_marked_vips, TANDEM_ADDR_PROTO};
pub use vrrp_socket::{Received, VrrpSocket, VRRP_GROUP_V4, VRRP_PROTO};

pub type Result<T, E = NetError> = std::result::Result<T, E>;

/// The capability an operation needs; named in permission errors so the operator
/// knows what to add to `AmbientCapabilities=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capability {
    /// Netlink address/link changes.
    NetAdmin,
    /// Raw IP sockets and AF_PACKET sockets.
    NetRaw,
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Capability::NetAdmin => "CAP_NET_ADMIN",
            Capability::NetRaw => "CAP_NET_RAW",
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("{op} {target}: permission denied (the process needs {cap})")]
    PermissionDenied {
        op: &'static str,
        target: String,
        cap: Capability,
    },
    #[error("interface {0} does not exist")]
    NoSuchInterface(String),
    #[error("{op} {target}: {source}")]
    Io {
        op: &'static str,
        target: String,
        #[source]
        source: io::Error,
    },
    /// A netlink failure that carries no errno (request channel closed, decode error).
    #[error("{op} {target}: netlink: {detail}")]
    Netlink {
        op: &'static str,
        target: String,
        detail: String,
    },
    #[error("{op} {target}: received {len}-byte datagram did not fit the {cap}-byte buffer")]
    Truncated {
        op: &'static str,
        target: String,
        len: usize,
        cap: usize,
    },
}

impl NetError {
    /// The errno behind this error, if the kernel gave one.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            NetError::PermissionDenied { .. } => Some(libc::EPERM),
            NetError::Io { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

/// Whether `e` (or an error it wraps) is this host running out of descriptors, buffers or
/// memory. Such a failure says nothing about the peer: a backend must not be marked down
/// or ejected for it, and a health check must not count it.
pub fn local_shortage(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<io::Error>() {
            if matches!(
                io.raw_os_error(),
                Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
            ) {
                return true;
            }
        }
        cur = err.source();
    }
    false
}

/// Turns an OS error into a [`NetError`], singling out EPERM/EACCES so the
/// message names the missing capability instead of a bare "Operation not permitted".
pub(crate) fn os_error(
    op: &'static str,
    target: String,
    cap: Capability,
    err: io::Error,
) -> NetError {
    match err.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => NetError::PermissionDenied { op, target, cap },
        _ => NetError::Io {
            op,
            target,
            source: err,
        },
    }
}

/// Same as [`os_error`] for rtnetlink failures; netlink changes need CAP_NET_ADMIN.
pub(crate) fn netlink_error(op: &'static str, target: String, err: rtnetlink::Error) -> NetError {
    match err {
        rtnetlink::Error::NetlinkError(msg) if msg.raw_code() != 0 => {
            os_error(op, target, Capability::NetAdmin, msg.to_io())
        }
        other => NetError::Netlink {
            op,
            target,
            detail: other.to_string(),
        },
    }
}

/// The errno inside an rtnetlink error, if any (netlink reports it negated).
pub(crate) fn netlink_errno(err: &rtnetlink::Error) -> Option<i32> {
    match err {
        rtnetlink::Error::NetlinkError(msg) if msg.raw_code() != 0 => Some(msg.raw_code().abs()),
        _ => None,
    }
}

/// "eth0 (ifindex 3)" when the name resolves in this thread's namespace, so
/// messages stay readable although the API is index-based.
pub(crate) fn iface_label(ifindex: u32) -> String {
    match nix::net::if_::if_indextoname(ifindex) {
        Ok(name) => format!("{} (ifindex {ifindex})", name.to_string_lossy()),
        Err(_) => format!("ifindex {ifindex}"),
    }
}

/// Opens an rtnetlink request connection in the calling thread's network
/// namespace. The returned future drives the socket and must be spawned
/// (`tokio::spawn(driver)`); the handle stops working when it ends.
pub fn netlink_connect() -> Result<(rtnetlink::Handle, impl Future<Output = ()> + Send + 'static)> {
    let (conn, handle, _unsolicited) = rtnetlink::new_connection()
        .map_err(|e| os_error("open", "rtnetlink socket".into(), Capability::NetAdmin, e))?;
    Ok((handle, conn))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eperm_names_the_capability() {
        let e = os_error(
            "add address",
            "10.0.0.1/24 on eth0 (ifindex 2)".into(),
            Capability::NetAdmin,
            io::Error::from_raw_os_error(libc::EPERM),
        );
        assert!(matches!(
            e,
            NetError::PermissionDenied {
                cap: Capability::NetAdmin,
                ..
            }
        ));
        assert_eq!(
            e.to_string(),
            "add address 10.0.0.1/24 on eth0 (ifindex 2): permission denied (the process needs CAP_NET_ADMIN)"
        );

        let e = os_error(
            "open raw VRRP socket on",
            "eth0".into(),
            Capability::NetRaw,
            io::Error::from_raw_os_error(libc::EACCES),
        );
        assert!(
            e.to_string().ends_with("(the process needs CAP_NET_RAW)"),
            "{e}"
        );

        let e = os_error(
            "bind",
            "eth0".into(),
            Capability::NetRaw,
            io::Error::from_raw_os_error(libc::ENODEV),
        );
        assert!(matches!(e, NetError::Io { .. }));
        assert_eq!(e.raw_os_error(), Some(libc::ENODEV));
        assert!(!e.to_string().contains("CAP_"), "{e}");
    }

    /// Clears this thread's effective capabilities (Linux capabilities are
    /// per thread), so the kernel itself refuses what follows.
    fn drop_effective_caps() {
        #[repr(C)]
        struct Header {
            version: u32,
            pid: i32,
        }
        #[repr(C)]
        #[derive(Clone, Copy)]
        struct Data {
            effective: u32,
            permitted: u32,
            inheritable: u32,
        }
        const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
        let mut hdr = Header {
            version: LINUX_CAPABILITY_VERSION_3,
            pid: 0,
        };
        let zero = Data {
            effective: 0,
            permitted: 0,
            inheritable: 0,
        };
        let mut data = [zero; 2];
        // SAFETY: header and two data structs as capget/capset(2) expect for version 3.
        unsafe {
            assert_eq!(
                libc::syscall(libc::SYS_capget, &mut hdr, data.as_mut_ptr()),
                0
            );
            data[0].effective = 0;
            data[1].effective = 0;
            assert_eq!(libc::syscall(libc::SYS_capset, &hdr, data.as_ptr()), 0);
        }
    }

    #[test]
    fn kernel_eperm_names_the_capability() {
        use std::net::Ipv4Addr;
        let Some(lab) = testns::Lab::new(1) else {
            return;
        };
        lab.ip(0, "link add a0 type veth peer name b0");
        lab.ip(0, "addr add 10.77.0.1/24 dev a0");
        lab.run(0, || async {
            let idx = link::ifindex("a0").unwrap();
            drop_effective_caps();
            let h = testns::netlink();
            let vip = "10.77.0.100".parse().unwrap();
            let e = add_vip(&h, idx, vip, 24, None).await.unwrap_err();
            assert!(
                matches!(
                    e,
                    NetError::PermissionDenied {
                        cap: Capability::NetAdmin,
                        ..
                    }
                ),
                "{e}"
            );
            assert!(e.to_string().contains("10.77.0.100/24 on a0"), "{e}");
            eprintln!("{e}");
            let e = del_vip(&h, idx, "10.77.0.1".parse().unwrap(), 24)
                .await
                .unwrap_err();
            assert!(e.to_string().ends_with("needs CAP_NET_ADMIN)"), "{e}");

            let local = Ipv4Addr::new(10, 77, 0, 1);
            let e = VrrpSocket::open("a0", idx, local, true).err().unwrap();
            assert!(
                matches!(
                    e,
                    NetError::PermissionDenied {
                        cap: Capability::NetRaw,
                        ..
                    }
                ),
                "{e}"
            );
            eprintln!("{e}");
            let e = GarpSender::open(idx).err().unwrap();
            assert!(e.to_string().ends_with("needs CAP_NET_RAW)"), "{e}");
            eprintln!("{e}");
            let e = NaSender::open("a0", idx).err().unwrap();
            assert!(e.to_string().ends_with("needs CAP_NET_RAW)"), "{e}");
        });
    }

    #[test]
    fn netlink_eperm_maps_to_cap_net_admin() {
        let mut msg = rtnetlink::packet_core::ErrorMessage::default();
        msg.code = std::num::NonZeroI32::new(-libc::EPERM);
        let e = netlink_error(
            "delete address",
            "10.0.0.1/24 on ifindex 2".into(),
            rtnetlink::Error::NetlinkError(msg),
        );
        assert_eq!(
            e.to_string(),
            "delete address 10.0.0.1/24 on ifindex 2: permission denied (the process needs CAP_NET_ADMIN)"
        );
        let e = netlink_error("add address", "x".into(), rtnetlink::Error::RequestFailed);
        assert!(matches!(e, NetError::Netlink { .. }), "{e}");
    }
}
