//! `[global]`: workers, timeouts, the admin and metrics endpoints.

// The model types, `raw` and the shared Validator helpers all live in the parent.
use super::*;

impl Validator<'_> {
    pub(super) fn global(&mut self, g: raw::Global) -> Global {
        let admin_socket = PathBuf::from(
            g.admin_socket
                .as_deref()
                .unwrap_or("/run/tandem/admin.sock"),
        );
        if !admin_socket.is_absolute() {
            self.err("global.admin_socket", "must be an absolute path");
        }
        let workers = self.int("global.workers", g.workers, defaults::GLOBAL_WORKERS) as usize;
        let shutdown_timeout = self.duration(
            "global.shutdown_timeout",
            g.shutdown_timeout.as_deref(),
            defaults::GLOBAL_SHUTDOWN_TIMEOUT,
        );
        let log_level = g.log_level.unwrap_or_else(|| "info".into());
        if !matches!(
            log_level.as_str(),
            "error" | "warn" | "info" | "debug" | "trace"
        ) {
            self.err(
                "global.log_level",
                format!("unknown level {log_level:?}; expected error, warn, info, debug or trace"),
            );
        }
        let mut addr = |key: &str, v: Option<String>| {
            v.and_then(|s| match parse_socket_addr(&s) {
                Ok(a) => Some(a),
                Err(e) => {
                    self.err(&format!("global.{key}"), e);
                    None
                }
            })
        };
        let admin_listen = addr("admin_listen", g.admin_listen);
        let metrics_listen = addr("metrics_listen", g.metrics_listen);
        let admin_token = g.admin_token;
        if admin_listen.is_some() && admin_token.as_ref().is_none_or(|t| t.len() < 16) {
            self.err(
                "global.admin_token",
                "admin_listen exposes the admin API over TCP: set admin_token (at least 16 characters)",
            );
        }
        let sticky_secret = g.sticky_secret.and_then(|s| {
            if s.len() < 16 {
                self.err(
                    "global.sticky_secret",
                    "too short to key sticky cookies: use at least 16 characters (the same on both nodes)",
                );
                return None;
            }
            Some(StickySecret::new(&s))
        });
        Global {
            admin_socket,
            admin_listen,
            admin_token,
            sticky_secret,
            metrics_listen,
            workers,
            shutdown_timeout,
            log_level,
        }
    }
}
