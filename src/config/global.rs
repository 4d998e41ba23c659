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
                Ok(a) if a.port() == 0 => {
                    self.err(&format!("global.{key}"), "port 0 is not a listening port");
                    None
                }
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

/// Shared by the per-section test modules (`super::global::tests::…`): a minimal valid config
/// and a table runner over `crate::config::parse`.
#[cfg(test)]
pub(super) mod tests {
    use std::path::Path;
    use std::time::Duration;

    use super::super::defaults;
    use crate::config::{parse, Config, Diagnostic};

    /// A pool `web`: lines 1-3.
    pub(crate) const POOL: &str =
        "[[pool]]\nname = \"web\"\nbackends = [{ address = \"10.0.0.1:80\" }]\n";
    /// [`POOL`] and a tcp listener `l` on it: lines 1-7, so a key appended to the listener
    /// is on line 8.
    pub(crate) const BASE: &str = "[[pool]]\nname = \"web\"\nbackends = [{ address = \"10.0.0.1:80\" }]\n[[listener]]\nname = \"l\"\nbind = \"127.0.0.1:8080\"\npool = \"web\"\n";

    /// One row: config text, expected key path, a fragment of the message, and the expected
    /// line (0: not checked).
    pub(crate) type Row = (String, &'static str, &'static str, usize);

    /// The diagnostics of an invalid config (panics if it is accepted).
    pub(crate) fn errors(src: &str) -> Vec<Diagnostic> {
        match parse(Path::new("t.toml"), src) {
            Ok(_) => panic!("accepted, expected an error:\n{src}"),
            Err(e) => e.0,
        }
    }

    /// The parsed config of a valid one (panics with the diagnostics otherwise).
    pub(crate) fn ok(src: &str) -> Config {
        parse(Path::new("t.toml"), src).unwrap_or_else(|e| panic!("rejected:\n{src}\n{e}"))
    }

    /// Every row must yield a diagnostic with exactly that key, whose message contains the
    /// fragment (and on that line); all failures are reported together.
    pub(crate) fn check(rows: &[Row]) {
        let mut failures = Vec::new();
        for (src, key, msg, line) in rows {
            let got = match parse(Path::new("t.toml"), src) {
                Ok(_) => {
                    failures.push(format!("accepted, want {key}: {msg}\n{src}"));
                    continue;
                }
                Err(e) => e.0,
            };
            let hit = got.iter().any(|d| {
                d.key == *key && d.message.contains(msg) && (*line == 0 || d.line == *line)
            });
            if !hit {
                let got: Vec<String> = got.iter().map(|d| d.to_string()).collect();
                failures.push(format!(
                    "want line {line} {key}: {msg}\n{src}\ngot:\n{}",
                    got.join("\n")
                ));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n-----\n"));
    }

    /// `[global]` with `keys` (from line 2) above [`BASE`].
    fn g(keys: &str) -> String {
        format!("[global]\n{keys}\n{BASE}")
    }

    #[test]
    fn global_errors() {
        let rows: Vec<Row> = vec![
            (
                g("admin_socket = \"run/admin.sock\""),
                "global.admin_socket",
                "must be an absolute path",
                2,
            ),
            (
                g("workers = 257"),
                "global.workers",
                "257 is out of range 0..=256",
                2,
            ),
            (
                g("workers = 100000"),
                "global.workers",
                "out of range 0..=256",
                2,
            ),
            (
                g("shutdown_timeout = \"10\""),
                "global.shutdown_timeout",
                "missing unit after 10",
                2,
            ),
            (
                g("shutdown_timeout = \"soon\""),
                "global.shutdown_timeout",
                "invalid duration \"soon\"",
                2,
            ),
            (
                g("shutdown_timeout = \"\""),
                "global.shutdown_timeout",
                "empty duration",
                2,
            ),
            (
                g("log_level = \"verbose\""),
                "global.log_level",
                "unknown level \"verbose\"",
                2,
            ),
            (
                g("log_level = \"INFO\""),
                "global.log_level",
                "expected error, warn, info, debug or trace",
                2,
            ),
            (
                g("admin_listen = \"localhost:9000\""),
                "global.admin_listen",
                "is not an address with a port",
                2,
            ),
            (
                g("admin_listen = \"127.0.0.1\"\nadmin_token = \"0123456789abcdef\""),
                "global.admin_listen",
                "is not an address with a port",
                2,
            ),
            (
                g("metrics_listen = \"9100\""),
                "global.metrics_listen",
                "is not an address with a port",
                2,
            ),
            // admin_listen needs a token: a missing one is reported at its table.
            (
                g("admin_listen = \"127.0.0.1:9000\""),
                "global.admin_token",
                "set admin_token (at least 16 characters)",
                1,
            ),
            (
                g("admin_listen = \"127.0.0.1:9000\"\nadmin_token = \"0123456789abcde\""),
                "global.admin_token",
                "at least 16 characters",
                3,
            ),
            (
                g("sticky_secret = \"\""),
                "global.sticky_secret",
                "too short to key sticky cookies",
                2,
            ),
        ];
        check(&rows);
    }

    #[test]
    fn global_every_error_is_reported() {
        let errs = errors(&g(
            "workers = 999\nlog_level = \"loud\"\nadmin_socket = \"x\"",
        ));
        let keys: Vec<&str> = errs.iter().map(|d| d.key.as_str()).collect();
        assert_eq!(
            keys,
            ["global.workers", "global.log_level", "global.admin_socket"],
            "sorted by line: {errs:?}"
        );
        assert_eq!(errs.iter().map(|d| d.line).collect::<Vec<_>>(), [2, 3, 4]);
    }

    #[test]
    fn global_defaults() {
        let c = ok(BASE);
        let gl = &c.global;
        assert_eq!(gl.workers as u64, defaults::GLOBAL_WORKERS.default);
        assert_eq!(gl.shutdown_timeout, defaults::GLOBAL_SHUTDOWN_TIMEOUT);
        assert_eq!(gl.admin_socket, Path::new("/run/tandem/admin.sock"));
        assert_eq!(gl.log_level, "info");
        assert_eq!(gl.admin_listen, None);
        assert_eq!(gl.admin_token, None);
        assert_eq!(gl.metrics_listen, None);
        assert_eq!(gl.sticky_secret, None);
        // An empty [global] is the same as none.
        assert_eq!(ok(&g_empty()).global, c.global);
    }

    fn g_empty() -> String {
        format!("[global]\n{BASE}")
    }

    #[test]
    fn global_valid_values() {
        let c = ok(&g(concat!(
            "workers = 256\n",
            "shutdown_timeout = \"1m30s\"\n",
            "log_level = \"debug\"\n",
            "admin_socket = \"/tmp/t.sock\"\n",
            "admin_listen = \"[::1]:9000\"\n",
            "admin_token = \"0123456789abcdef\"\n",
            "metrics_listen = \"127.0.0.1:9100\"\n",
            "sticky_secret = \"fedcba9876543210\"",
        )));
        let gl = &c.global;
        assert_eq!(gl.workers, 256);
        assert_eq!(gl.shutdown_timeout, Duration::from_secs(90));
        assert_eq!(gl.log_level, "debug");
        assert_eq!(gl.admin_socket, Path::new("/tmp/t.sock"));
        assert_eq!(gl.admin_listen, Some("[::1]:9000".parse().expect("addr")));
        assert_eq!(gl.admin_token.as_deref(), Some("0123456789abcdef"));
        assert_eq!(
            gl.metrics_listen,
            Some("127.0.0.1:9100".parse().expect("addr"))
        );
        assert_eq!(
            gl.sticky_secret.as_ref().map(|s| s.bytes()),
            Some(&b"fedcba9876543210"[..])
        );
        // The sticky secret reaches every pool.
        assert_eq!(c.pools[0].http.sticky_secret, gl.sticky_secret);
        // Range ends and the bare "0" duration.
        let c = ok(&g(
            "workers = 0\nshutdown_timeout = \"0\"\nlog_level = \"trace\"",
        ));
        assert_eq!(c.global.workers, 0);
        assert_eq!(c.global.shutdown_timeout, Duration::ZERO);
        // A token alone (no admin_listen) is allowed.
        ok(&g("admin_token = \"x\""));
    }

    #[test]
    fn global_listen_port_zero() {
        check(&[
            (
                g("metrics_listen = \"127.0.0.1:0\""),
                "global.metrics_listen",
                "port 0",
                2,
            ),
            (
                g("admin_listen = \"127.0.0.1:0\"\nadmin_token = \"0123456789abcdef\""),
                "global.admin_listen",
                "port 0",
                2,
            ),
        ]);
    }
}
