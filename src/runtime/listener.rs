//! One listener enum per stage of a listener's life, each with one variant per protocol,
//! so an impossible pairing (a UDP socket under the HTTP engine, an HTTP snapshot stored
//! into an L4 listener) cannot be written:
//!
//! - [`Fresh`]: the first snapshot of a listener, built while a start or reload prepares
//!   (TLS certificates are read here), before any socket is touched;
//! - [`Prepared`]: a fresh snapshot with its sockets bound (or adopted from an upgrade);
//! - [`Engine`]: a running listener's engine, holding the snapshot a reload swaps;
//! - [`Renewal`]: a new snapshot for a running listener, paired with the cell it goes into.

use std::collections::{BTreeMap, HashMap};
use std::os::fd::OwnedFd;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;

use super::plan::listener_key as key_of;
use super::{dup, opened, upgrade, Daemon, Inner, ListenerEntry, StartError};
use crate::config::{ListenerConfig, Protocol};
use crate::dataplane::l4::tcp::ListenerRt;
use crate::dataplane::l7::server::{HttpPool, HttpRt};
use crate::pool::Pool;
use crate::stats::ListenerStats;

pub(super) enum Fresh {
    Tcp(Box<ListenerRt>),
    Udp(Box<ListenerRt>),
    Http(Box<HttpRt>),
}

pub(super) enum Prepared {
    /// One socket per data-plane worker; registered with the worker's runtime when the
    /// worker starts serving it.
    Tcp(Vec<std::net::TcpListener>, Box<ListenerRt>),
    Udp(tokio::net::UdpSocket, Box<ListenerRt>),
    Http(Vec<std::net::TcpListener>, Box<HttpRt>),
}

#[derive(Clone)]
pub(super) enum Engine {
    Tcp(Arc<ArcSwap<ListenerRt>>),
    Udp(Arc<ArcSwap<ListenerRt>>),
    Http(Arc<ArcSwap<HttpRt>>),
}

pub(super) enum Renewal {
    L4(Arc<ArcSwap<ListenerRt>>, Arc<ListenerRt>),
    Http(Arc<ArcSwap<HttpRt>>, Arc<HttpRt>),
}

impl Renewal {
    pub(super) fn commit(self) {
        match self {
            Renewal::L4(cell, rt) => cell.store(rt),
            Renewal::Http(cell, rt) => cell.store(rt),
        }
    }
}

fn listener_err(l: &ListenerConfig) -> impl Fn(String) -> StartError + '_ {
    move |message| StartError::Listener {
        name: l.name.clone(),
        message,
    }
}

fn l4_rt(
    l: &ListenerConfig,
    pools: &BTreeMap<String, Arc<Pool>>,
    prev: Option<&ListenerRt>,
) -> Result<Box<ListenerRt>, StartError> {
    let pool = pools
        .get(&l.pool)
        .cloned()
        .ok_or_else(|| listener_err(l)(format!("no pool named {:?}", l.pool)))?;
    Ok(Box::new(ListenerRt::new(l.clone(), pool, prev)))
}

/// The HTTP engine's snapshot (TLS certificates are read here, so a reload picks up
/// renewed certificates).
fn http_rt(
    l: &ListenerConfig,
    http_pools: &HashMap<String, Arc<HttpPool>>,
    prev: Option<&HttpRt>,
) -> Result<Box<HttpRt>, StartError> {
    let err = listener_err(l);
    let h = l
        .http
        .as_ref()
        .ok_or_else(|| err("an http listener without its http settings".into()))?;
    let tls = match &h.tls {
        None => None,
        Some(certs) => {
            use crate::dataplane::tls;
            let specs: Vec<_> = certs.iter().map(tls::spec).collect();
            let default = certs.iter().position(|c| c.default);
            Some(
                tls::server_config_with(&specs, default, h.http2, &h.tls_opts)
                    .map_err(|e| err(e.to_string()))?,
            )
        }
    };
    Ok(Box::new(
        HttpRt::new(l.clone(), http_pools, tls, prev).map_err(&err)?,
    ))
}

impl Fresh {
    pub(super) fn build(
        l: &ListenerConfig,
        pools: &BTreeMap<String, Arc<Pool>>,
        http_pools: &HashMap<String, Arc<HttpPool>>,
    ) -> Result<Fresh, StartError> {
        Ok(match l.protocol {
            Protocol::Tcp => Fresh::Tcp(l4_rt(l, pools, None)?),
            Protocol::Udp => Fresh::Udp(l4_rt(l, pools, None)?),
            Protocol::Http | Protocol::Https => Fresh::Http(http_rt(l, http_pools, None)?),
        })
    }

    /// Binds the listener's sockets, or adopts the ones an upgrade's old process handed
    /// over (already listening: no connection waiting in their queues is lost).
    pub(super) fn bind(self, l: &ListenerConfig) -> Result<Prepared, StartError> {
        let err = |source| StartError::Bind {
            name: l.name.clone(),
            proto: l.protocol.name(),
            addr: l.bind,
            source,
        };
        let inherited = upgrade::take(&upgrade::listener_key(l.protocol.is_stream(), l.bind));
        let stream = |inherited: Vec<OwnedFd>| {
            if inherited.is_empty() {
                let n = crate::dataplane::worker::get().len();
                crate::dataplane::l4::bind_tcp_n(l.bind, l.backlog, n)
            } else {
                adopt_stream(l, inherited)
            }
        };
        Ok(match self {
            Fresh::Tcp(rt) => Prepared::Tcp(stream(inherited).map_err(err)?, rt),
            Fresh::Http(rt) => Prepared::Http(stream(inherited).map_err(err)?, rt),
            Fresh::Udp(rt) => {
                let std = match inherited.into_iter().next() {
                    Some(fd) => {
                        let s = std::net::UdpSocket::from(fd);
                        s.set_nonblocking(true).map_err(err)?;
                        s
                    }
                    None => crate::dataplane::l4::bind_udp(l.bind).map_err(err)?,
                };
                Prepared::Udp(tokio::net::UdpSocket::from_std(std).map_err(err)?, rt)
            }
        })
    }
}

fn adopt_stream(
    l: &ListenerConfig,
    fds: Vec<OwnedFd>,
) -> std::io::Result<Vec<std::net::TcpListener>> {
    fds.into_iter()
        .map(|fd| {
            let s = std::net::TcpListener::from(fd);
            // A new backlog applies to a listening socket in place.
            socket2::SockRef::from(&s).listen(l.backlog as i32)?;
            s.set_nonblocking(true)?;
            Ok(s)
        })
        .collect()
}

impl Engine {
    /// The HTTP engine's snapshot cell (status reads route counters from it).
    pub(super) fn http(&self) -> Option<Arc<ArcSwap<HttpRt>>> {
        match self {
            Engine::Http(r) => Some(r.clone()),
            Engine::Tcp(_) | Engine::Udp(_) => None,
        }
    }

    /// A new snapshot for this running engine from the listener's new settings (a change
    /// of engine is a rebind, never a renewal: see `plan::listener_fate`).
    pub(super) fn renew(
        &self,
        l: &ListenerConfig,
        pools: &BTreeMap<String, Arc<Pool>>,
        http_pools: &HashMap<String, Arc<HttpPool>>,
    ) -> Result<Renewal, StartError> {
        Ok(match self {
            Engine::Tcp(cell) | Engine::Udp(cell) => {
                let prev = cell.load_full();
                Renewal::L4(cell.clone(), Arc::from(l4_rt(l, pools, Some(&prev))?))
            }
            Engine::Http(cell) => {
                let prev = cell.load_full();
                Renewal::Http(
                    cell.clone(),
                    Arc::from(http_rt(l, http_pools, Some(&prev))?),
                )
            }
        })
    }
}

impl Daemon {
    /// One accept loop per worker socket, on that worker's runtime, once
    /// the upgrade gate opens. Tracked like the connections: a drain must
    /// not end while an accept that raced the stop is being handed on.
    fn spawn_accept_loops<S, F>(
        &self,
        name: &str,
        socks: Vec<std::net::TcpListener>,
        stop: &CancellationToken,
        serve: S,
    ) where
        S: Fn(tokio::net::TcpListener) -> F + Clone + Send + 'static,
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        for (i, sock) in socks.into_iter().enumerate() {
            let (name, gate, stop, serve) = (
                name.to_string(),
                self.gate.clone(),
                stop.clone(),
                serve.clone(),
            );
            let accepting = self.conns.track_future(async move {
                if !opened(&gate, &stop).await {
                    return;
                }
                match tokio::net::TcpListener::from_std(sock) {
                    Ok(l) => serve(l).await,
                    Err(e) => {
                        tracing::error!(listener = %name, error = %e, "cannot register listener")
                    }
                }
            });
            crate::dataplane::worker::get().handle(i).spawn(accepting);
        }
    }

    pub(super) fn spawn_listener(&self, inner: &mut Inner, cfg: ListenerConfig, p: Prepared) {
        let stats = Arc::new(ListenerStats::default());
        let stop = CancellationToken::new();
        let (conns, stats2, stop2) = (self.conns.clone(), stats.clone(), stop.clone());
        let (engine, fds) = match p {
            Prepared::Tcp(socks, rt) => {
                let fds = socks.iter().flat_map(dup).collect();
                let cell = Arc::new(ArcSwap::from(Arc::<ListenerRt>::from(rt)));
                let rt2 = cell.clone();
                self.spawn_accept_loops(&cfg.name, socks, &stop, move |l| {
                    crate::dataplane::l4::tcp::serve(
                        l,
                        rt2.clone(),
                        stats2.clone(),
                        stop2.clone(),
                        conns.clone(),
                    )
                });
                (Engine::Tcp(cell), fds)
            }
            Prepared::Udp(sock, rt) => {
                let fds = dup(&sock);
                let cell = Arc::new(ArcSwap::from(Arc::<ListenerRt>::from(rt)));
                let (gate, rt2) = (self.gate.clone(), cell.clone());
                self.conns.spawn(async move {
                    if opened(&gate, &stop2).await {
                        crate::dataplane::l4::udp::serve(sock, rt2, stats2, stop2).await
                    }
                });
                (Engine::Udp(cell), fds)
            }
            Prepared::Http(socks, rt) => {
                let fds = socks.iter().flat_map(dup).collect();
                let cell = Arc::new(ArcSwap::from(Arc::<HttpRt>::from(rt)));
                let rt2 = cell.clone();
                self.spawn_accept_loops(&cfg.name, socks, &stop, move |l| {
                    crate::dataplane::l7::server::serve(
                        l,
                        rt2.clone(),
                        stats2.clone(),
                        stop2.clone(),
                        conns.clone(),
                    )
                });
                (Engine::Http(cell), fds)
            }
        };
        tracing::info!(listener = %cfg.name, bind = %cfg.bind, protocol = cfg.protocol.name(), "listening");
        inner.listeners.insert(
            key_of(&cfg),
            ListenerEntry {
                cfg,
                engine,
                stats,
                stop,
                fds,
            },
        );
    }
}
