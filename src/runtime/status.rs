//! The daemon's status: every plane's typed snapshot mapped to the admin wire types.

use std::sync::atomic::Ordering;

use super::Daemon;
use crate::admin::status::{ListenerStatus, PoolStatus, RouteStatus, Status};

impl Daemon {
    pub fn status(&self) -> Status {
        let snap = self.snapshot.load();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let listeners = snap
            .listeners
            .iter()
            .map(|(l, s, http)| {
                let routes = http.as_ref().map(|h| {
                    let h = h.load();
                    h.router
                        .routes()
                        .iter()
                        .zip(&h.route_stats)
                        .map(|(r, st)| RouteStatus {
                            name: r.name.clone(),
                            requests: st.requests.load(Ordering::Relaxed),
                            by_class: std::array::from_fn(|i| {
                                st.by_class[i].load(Ordering::Relaxed)
                            }),
                        })
                        .collect()
                });
                ListenerStatus::from_stats(l, s, routes)
            })
            .collect();
        let pools = snap
            .config
            .pools
            .iter()
            .filter_map(|pc| snap.pools.get(&pc.name))
            .map(|p| PoolStatus::from_snapshot(p.snapshot(), now))
            .collect();
        let mut status = Status {
            version: crate::version(),
            pid: std::process::id(),
            config_file: self.config_path.display().to_string(),
            generation: self.generation(),
            uptime_seconds: self.started.elapsed().as_secs(),
            listeners,
            pools,
            vrrp: self
                .vrrp_service()
                .map(|v| v.status().iter().map(Into::into).collect())
                .unwrap_or_default(),
            anycast: Vec::new(),
            sync: None,
        };
        if let Some(s) = self.scaleout.get() {
            s.status(&mut status);
        }
        status
    }
}
