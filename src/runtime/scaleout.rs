//! Glue between the daemon and the scale-out planes: the anycast announcer and the sticky
//! sync. Both are started once with the daemon; they read the running config through the
//! daemon (so reloads reach them) and hold it weakly (the daemon owns them).

use std::sync::{Arc, Weak};

use tokio_util::sync::CancellationToken;

use crate::admin::status::Status;
use crate::anycast::{self, AnycastHandle};
use crate::runtime::Daemon;
use crate::sync::{self, SyncHandle};

pub struct ScaleOut {
    pub anycast: Option<Arc<AnycastHandle>>,
    pub sync: Option<Arc<SyncHandle>>,
    stop: CancellationToken,
}

impl ScaleOut {
    /// Starts what the config asks for. `[[anycast]]` and `[sync]` are read here once for
    /// *whether* to run; the announcer follows reloads of the sections' contents.
    pub async fn start(daemon: &Arc<Daemon>) -> Result<ScaleOut, String> {
        let cfg = daemon.config();
        let stop = CancellationToken::new();
        let weak: Weak<Daemon> = Arc::downgrade(daemon);
        let anycast = if cfg.anycast.is_empty() {
            None
        } else {
            let (nl, conn) = crate::net::netlink_connect().map_err(|e| e.to_string())?;
            tokio::spawn(conn);
            let announcer = anycast::kernel::KernelRoutes::open(nl)
                .await
                .map_err(|e| format!("anycast: {e}"))?;
            let (w1, w2) = (weak.clone(), weak.clone());
            Some(anycast::start(
                announcer,
                Arc::new(move || {
                    w1.upgrade()
                        .map(|d| d.config().anycast.clone())
                        .unwrap_or_default()
                }),
                Arc::new(move |pool: &str| w2.upgrade()?.pool(pool).map(|p| p.any_serving())),
                stop.clone(),
            ))
        };
        let sync = match &cfg.sync {
            None => None,
            Some(s) => {
                let w = weak.clone();
                let tables: sync::Tables =
                    Arc::new(move || w.upgrade().map(|d| d.sticky_tables()).unwrap_or_default());
                let err = |e: std::io::Error| format!("sync: cannot bind {}: {e}", s.listen);
                // After an upgrade the old process's socket is adopted: no datagram is lost.
                let key = format!("sync {}", s.listen);
                let sock = match crate::runtime::upgrade::take(&key).into_iter().next() {
                    Some(fd) => {
                        let std = std::net::UdpSocket::from(fd);
                        std.set_nonblocking(true).map_err(err)?;
                        tokio::net::UdpSocket::from_std(std).map_err(err)?
                    }
                    None => tokio::net::UdpSocket::bind(s.listen).await.map_err(err)?,
                };
                daemon.hold_socket(key, &sock);
                Some(sync::start(s.clone(), sock, tables, stop.clone()))
            }
        };
        Ok(ScaleOut {
            anycast,
            sync,
            stop,
        })
    }

    /// First step of a graceful stop: withdraw the routes and let the routers converge while
    /// the listeners still serve.
    pub async fn shutdown(&self) {
        if let Some(a) = &self.anycast {
            a.withdraw_all().await;
        }
    }

    /// An upgraded process took over: stop without withdrawing anything
    /// (the new process announces the same routes).
    pub fn stop(&self) {
        self.stop.cancel();
    }

    /// Fills the scale-out parts of a status document.
    pub fn status(&self, s: &mut Status) {
        s.anycast = self
            .anycast
            .as_ref()
            .map(|a| a.status())
            .unwrap_or_default();
        s.sync = self.sync.as_ref().map(|x| x.status());
    }
}

impl Drop for ScaleOut {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
