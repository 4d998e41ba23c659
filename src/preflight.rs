//! What a config needs beyond its own rules, checked wherever a config is about to be used
//! (`tandem check`, start, reload, upgrade) rather than while it is parsed: every route
//! compiles into the router's matchers, the TLS options are ones rustls can build, and every
//! certificate, key and CA file named is a readable PEM file of sane size (a device path
//! would hang the check). `config/` stays a leaf that imports no plane and reads no file but
//! the config itself; this step is where the planes get their say, with the same
//! `file:line:col: key: message` diagnostics as the parser's. Privileges are the other
//! preflight (`caps.rs`).

use std::path::Path;

use crate::config::{self, Config, ConfigErrors, Diagnostic, HealthCheck, SpanIndex};

/// Reads, parses and preflights a config file.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let src = config::read(path)?;
    parse(path, &src)
}

/// Parses and preflights config text.
pub fn parse(path: &Path, src: &str) -> Result<Config, ConfigErrors> {
    let (cfg, idx) = config::parse_spanned(path, src)?;
    let mut errors = check(&cfg, &idx);
    if errors.is_empty() {
        return Ok(cfg);
    }
    errors.sort_by_key(|d| (d.line, d.col));
    errors.dedup();
    Err(ConfigErrors(errors))
}

/// Every problem of a config that parsed. Key paths use the config's own indices: a config
/// that parsed has every `[[listener]]` and `[[pool]]` (and their routes) in file order.
fn check(cfg: &Config, idx: &SpanIndex) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let mut err = |path: String, msg: String| out.push(idx.at_path(&path, msg));
    for (i, l) in cfg.listeners.iter().enumerate() {
        let Some(h) = &l.http else { continue };
        for (ri, r) in h.routes.iter().enumerate() {
            if let Err((k, m)) = crate::dataplane::l7::router::build_route(r) {
                err(format!("listener[{i}].routes[{ri}].{k}"), m);
            }
        }
        if let Some(certs) = &h.tls {
            if let Err((k, e)) = crate::dataplane::tls::check_options(&h.tls_opts) {
                err(format!("listener[{i}].tls.{k}"), e);
            }
            for (k, c) in certs.iter().enumerate() {
                if let Err(e) = crate::dataplane::tls::check_cert(c) {
                    err(format!("listener[{i}].tls.certificates[{k}]"), e);
                }
            }
        }
    }
    for (i, p) in cfg.pools.iter().enumerate() {
        let pool_tls = p.http.tls.as_ref();
        if let Some(t) = pool_tls {
            for (key, path) in [
                ("verify", &t.verify),
                ("client_cert", &t.client_cert),
                ("client_key", &t.client_key),
            ] {
                if let Some(Err(e)) = path.as_deref().map(crate::dataplane::tls::check_pem_file) {
                    err(format!("pool[{i}].tls.{key}"), e);
                }
            }
        }
        if let HealthCheck::Http { tls: Some(t), .. } = &p.health.check {
            // A CA inherited from the pool's tls is reported there, once.
            let inherited = pool_tls.is_some_and(|pt| pt.verify == t.verify);
            if let (Some(ca), false) = (&t.verify, inherited) {
                if let Err(e) = crate::dataplane::tls::check_pem_file(ca) {
                    err(format!("pool[{i}].health.verify"), e);
                }
            }
        }
    }
    out
}
