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
            .map(|(l, s, http)| ListenerStatus {
                request_seconds: http.as_ref().map(|_| s.request_seconds.snapshot()),
                routes: http
                    .as_ref()
                    .map(|h| {
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
                    })
                    .unwrap_or_default(),
                name: l.name.clone(),
                bind: l.bind.to_string(),
                protocol: l.protocol.name().into(),
                pool: l.pool.clone(),
                active: s.active.load(Ordering::Relaxed),
                total: s.total.load(Ordering::Relaxed),
                queued: s.queued.load(Ordering::Relaxed),
                rejected: s.rejected.load(Ordering::Relaxed),
                no_backend: s.no_backend.load(Ordering::Relaxed),
                dropped: s.dropped.load(Ordering::Relaxed),
                denied: s.policy.denied.load(Ordering::Relaxed),
                rate_limited: s.policy.rate_limited.load(Ordering::Relaxed),
                proxy_errors: s.policy.proxy_errors.load(Ordering::Relaxed),
                bytes_in: s.bytes_in.load(Ordering::Relaxed),
                bytes_out: s.bytes_out.load(Ordering::Relaxed),
                spliced_bytes: s.spliced.load(Ordering::Relaxed),
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
