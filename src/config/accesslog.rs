//! `access_log`: where request and connection lines go and how they look (the template
//! grammar lives here so a bad placeholder is a config error; `crate::accesslog` writes).

use std::path::PathBuf;

use serde::Serialize;

/// How a line looks.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum LogFormat {
    /// The structured `tracing` event (target `tandem::access`), as before.
    Tracing,
    Json,
    /// NCSA Common Log Format (L4 lines use the same shape, with `-` for
    /// the request).
    Common,
    /// `{name}` placeholders from [`FIELDS`], any other text verbatim.
    Template(String),
}

/// `access_log = true` or `{ format = ..., path = ... }`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AccessLogConfig {
    pub format: LogFormat,
    /// None: the line goes to the daemon's own log (journal).
    pub path: Option<PathBuf>,
}

/// Placeholders a template may use.
pub const FIELDS: &[&str] = &[
    "time",
    "time_unix",
    "listener",
    "protocol",
    "client",
    "client_ip",
    "client_port",
    "method",
    "path",
    "status",
    "route",
    "backend",
    "duration_ms",
    "bytes_in",
    "bytes_out",
    "reason",
];

/// Checks a template's placeholders; the error names the bad one.
pub fn check_template(t: &str) -> Result<(), String> {
    let mut rest = t;
    while let Some(i) = rest.find('{') {
        let after = &rest[i + 1..];
        let Some(j) = after.find('}') else {
            return Err(format!("unclosed '{{' in template {t:?}"));
        };
        let name = &after[..j];
        if !FIELDS.contains(&name) {
            return Err(format!(
                "unknown placeholder {{{name}}}; expected one of {}",
                FIELDS.join(", ")
            ));
        }
        rest = &after[j + 1..];
    }
    Ok(())
}
