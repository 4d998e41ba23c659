//! The BIRD announcer: a host route per announced address in a dedicated kernel routing table,
//! which BIRD's `kernel` protocol learns (`learn`) and its BGP sessions export.
//!
//! The route points at a TUN device that this process creates *without* making it persistent:
//! the kernel destroys the device when its last file descriptor closes — when tandem exits, also
//! by SIGKILL or a crash — and every route through it goes with it; BIRD sees the route vanish
//! (netlink) and withdraws it from its peers. No cleanup hook has to run for a dead node to stop
//! attracting traffic, unlike a plain route that would outlive the process (and unlike a
//! control-socket command, which needs a living process to send it). `tandem cleanup` removes
//! what a stop leaves behind: the service addresses on their interface.
//!
//! The table is not used for forwarding (no `ip rule` points at it): it is only the channel to
//! BIRD. The address itself lives on `interface` (loopback by default), where it stays while
//! withdrawn so that flows still arriving during convergence are served.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use netlink_packet_route::route::{RouteProtocol, RouteScope};
use rtnetlink::{Handle, LinkUnspec, RouteMessageBuilder};

use super::Announcer;
use crate::config::AnycastConfig;
use crate::net::{self, NetError};

/// The TUN device holding the signal routes; one per network namespace.
pub const DEVICE: &str = "tandem-anycast";
/// rtm_protocol of our routes (116 = 't', as for our addresses): `ip route show proto 116`.
pub const ROUTE_PROTO: u8 = 116;

pub struct KernelRoutes {
    handle: Handle,
    /// Keeps the device alive; dropped (closed) only when the process ends.
    _tun: OwnedFd,
    tun_index: u32,
}

impl KernelRoutes {
    /// Creates the TUN device and brings it up.
    pub async fn open(handle: Handle) -> Result<KernelRoutes, NetError> {
        let tun = open_tun(DEVICE)?;
        let tun_index = net::ifindex(DEVICE)?;
        handle
            .link()
            .set(LinkUnspec::new_with_index(tun_index).up().build())
            .execute()
            .await
            .map_err(|e| net::netlink_error("set up", DEVICE.into(), e))?;
        Ok(KernelRoutes {
            handle,
            _tun: tun,
            tun_index,
        })
    }

    fn route(&self, a: &AnycastConfig) -> netlink_packet_route::route::RouteMessage {
        match a.address {
            IpAddr::V4(ip) => RouteMessageBuilder::<Ipv4Addr>::new()
                .destination_prefix(ip, 32)
                .output_interface(self.tun_index)
                .table_id(a.table)
                .protocol(RouteProtocol::from(ROUTE_PROTO))
                .scope(RouteScope::Link)
                .build(),
            IpAddr::V6(ip) => RouteMessageBuilder::<Ipv6Addr>::new()
                .destination_prefix(ip, 128)
                .output_interface(self.tun_index)
                .table_id(a.table)
                .protocol(RouteProtocol::from(ROUTE_PROTO))
                .build(),
        }
    }
}

fn target(a: &AnycastConfig) -> String {
    format!("{}/{} table {}", a.address, a.prefix_len(), a.table)
}

impl Announcer for KernelRoutes {
    fn name(&self) -> &'static str {
        "bird-kernel-table"
    }

    async fn prepare(&mut self, a: &AnycastConfig) -> Result<(), NetError> {
        let index = net::ifindex(&a.interface)?;
        net::add_vip(&self.handle, index, a.address, a.prefix_len(), None).await
    }

    async fn announce(&mut self, a: &AnycastConfig) -> Result<(), NetError> {
        self.handle
            .route()
            .add(self.route(a))
            .replace()
            .execute()
            .await
            .map_err(|e| net::netlink_error("add route", target(a), e))
    }

    async fn withdraw(&mut self, a: &AnycastConfig) -> Result<(), NetError> {
        match self.handle.route().del(self.route(a)).execute().await {
            Ok(()) => Ok(()),
            Err(e) if net::netlink_errno(&e) == Some(libc::ESRCH) => Ok(()),
            Err(e) => Err(net::netlink_error("delete route", target(a), e)),
        }
    }

    async fn forget(&mut self, a: &AnycastConfig) -> Result<(), NetError> {
        self.withdraw(a).await?;
        let index = net::ifindex(&a.interface)?;
        net::del_vip(&self.handle, index, a.address, a.prefix_len()).await
    }
}

/// Opens a non-persistent TUN device (`IFF_TUN | IFF_NO_PI`).
fn open_tun(name: &str) -> Result<OwnedFd, NetError> {
    let err = |op: &'static str, source: std::io::Error| NetError::Io {
        op,
        target: format!("TUN device {name} (/dev/net/tun)"),
        source,
    };
    // SAFETY: a plain open(2) of a constant path; the result is checked.
    let fd = unsafe { libc::open(c"/dev/net/tun".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(err("open", std::io::Error::last_os_error()));
    }
    // SAFETY: fd was just returned by open(2) and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    #[repr(C)]
    struct IfReq {
        name: [u8; libc::IFNAMSIZ],
        flags: libc::c_short,
        _pad: [u8; 22],
    }
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        flags: (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short,
        _pad: [0; 22],
    };
    let n = name.len().min(libc::IFNAMSIZ - 1);
    req.name[..n].copy_from_slice(&name.as_bytes()[..n]);
    // TUNSETIFF = _IOW('T', 202, int)
    const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
    // SAFETY: TUNSETIFF reads a struct ifreq (40 bytes, matched by IfReq) from the pointer.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFF as _, &mut req as *mut IfReq) };
    if rc < 0 {
        return Err(err("create", std::io::Error::last_os_error()));
    }
    Ok(fd)
}
