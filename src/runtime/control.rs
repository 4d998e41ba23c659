//! The daemon as the admin API's [`Control`]: status, reload, runtime changes to backends and
//! VRRP priorities, anycast drain, upgrade in place.

use std::sync::atomic::Ordering;

use super::Daemon;
use crate::admin::control::{BackendAction, Control, ControlError, Reloaded, Reply, Upgraded};
use crate::admin::status::Status;
use crate::config;

impl Control for Daemon {
    fn status(&self) -> Status {
        Daemon::status(self)
    }

    fn reload(&self) -> Reply<'_, Result<Reloaded, Vec<String>>> {
        Box::pin(async move {
            let (generation, changes) = Daemon::reload(self).await?;
            Ok(Reloaded {
                generation,
                changes: changes.iter().map(|c| c.to_string()).collect(),
            })
        })
    }

    fn upgrade(&self) -> Reply<'_, Result<Upgraded, ControlError>> {
        Box::pin(async move {
            match Daemon::upgrade(self).await {
                Ok((new_pid, version)) => Ok(Upgraded {
                    old_pid: std::process::id(),
                    new_pid,
                    version,
                }),
                Err(e) => {
                    tracing::error!(error = %e, "upgrade refused: this process keeps serving");
                    Err(ControlError::Refused(e))
                }
            }
        })
    }

    fn anycast_drain(&self, name: &str, drain: bool) -> Result<String, ControlError> {
        let Some(a) = self.scaleout().and_then(|s| s.anycast.clone()) else {
            return Err(ControlError::NotFound(
                "no [[anycast]] is configured".into(),
            ));
        };
        a.set_drained(name, drain)
            .map_err(|(_, msg)| ControlError::NotFound(msg))
    }

    fn backend_action(
        &self,
        pool: &str,
        backend: &str,
        action: BackendAction,
    ) -> Result<String, ControlError> {
        let p = self
            .pool(pool)
            .ok_or_else(|| ControlError::NotFound(format!("no pool named {pool:?}")))?;
        let b = p
            .backends
            .iter()
            .find(|b| b.cfg.name == backend)
            .ok_or_else(|| {
                ControlError::NotFound(format!("pool {pool:?} has no backend named {backend:?}"))
            })?;
        let st = b.state.clone();
        let active = || st.active.load(Ordering::Relaxed);
        let msg = match action {
            BackendAction::Drain => {
                st.set_admin(crate::pool::AdminState::Draining);
                format!("{pool}/{backend} draining: {} connections remain", active())
            }
            BackendAction::Enable => {
                st.set_admin(crate::pool::AdminState::Enabled);
                format!("{pool}/{backend} enabled")
            }
            BackendAction::Disable { grace } => {
                st.set_admin(crate::pool::AdminState::Disabled);
                let st2 = st.clone();
                let (pool_s, backend_s) = (pool.to_string(), backend.to_string());
                tokio::spawn(async move {
                    tokio::time::sleep(grace).await;
                    if st2.admin() == crate::pool::AdminState::Disabled {
                        let n = st2.active.load(Ordering::Relaxed);
                        if n > 0 {
                            tracing::info!(pool = %pool_s, backend = %backend_s, connections = n, "grace period over: closing connections of disabled backend");
                        }
                        st2.cut_connections();
                    }
                });
                format!(
                    "{pool}/{backend} disabled: {} open connections close in {}",
                    active(),
                    config::duration::format(grace)
                )
            }
            BackendAction::Weight(w) => {
                if let Some(w) = w {
                    if !(1..=256).contains(&w) {
                        return Err(ControlError::Invalid(format!(
                            "weight {w} is out of range 1..=256"
                        )));
                    }
                }
                st.set_weight_override(w);
                match w {
                    Some(w) => format!("{pool}/{backend} weight {w} (configured {})", b.cfg.weight),
                    None => format!(
                        "{pool}/{backend} weight back to the configured {}",
                        b.cfg.weight
                    ),
                }
            }
        };
        tracing::info!(pool, backend, action = ?action, "{msg}");
        Ok(msg)
    }

    /// Runtime VRRP priority (maintenance), or None for the configured one.
    fn vrrp_priority<'a>(
        &'a self,
        instance: &'a str,
        priority: Option<u8>,
    ) -> Reply<'a, Result<String, ControlError>> {
        Box::pin(async move {
            if priority == Some(0) {
                return Err(ControlError::Invalid(
                    "priority must be 1..=255 (0 is the resign signal)".into(),
                ));
            }
            let svc = self
                .vrrp_service()
                .ok_or_else(|| ControlError::NotFound("no VRRP instance is configured".into()))?;
            if !svc.set_priority(instance, priority).await {
                return Err(ControlError::NotFound(format!(
                    "no VRRP instance named {instance:?}"
                )));
            }
            Ok(match priority {
                Some(p) => format!("{instance}: priority {p} (set at runtime)"),
                None => format!("{instance}: priority back to the configured one"),
            })
        })
    }
}
