//! `[[pool]]`: backends, balancing, retries and queueing, outlier ejection, health checks.

// The model types, `raw` and the shared Validator helpers all live in the parent.
use super::*;

impl Validator<'_> {
    pub(super) fn pool(&mut self, i: usize, mut p: raw::Pool) -> Option<PoolConfig> {
        let at = |k: &str| format!("pool[{i}].{k}");
        self.name(&at("name"), &p.name);
        let algorithm = match p.algorithm.as_deref() {
            None => Algorithm::RoundRobin,
            Some(s) => Algorithm::from_name(s).unwrap_or_else(|| {
                let all: Vec<&str> = Algorithm::ALL.iter().map(|a| a.name()).collect();
                self.err(
                    &at("algorithm"),
                    format!(
                        "unknown algorithm {s:?}; expected one of {}",
                        all.join(", ")
                    ),
                );
                Algorithm::RoundRobin
            }),
        };
        if p.backends.is_empty() {
            self.err(&at("backends"), "a pool needs at least one backend");
        }
        let mut backends = Vec::new();
        let mut names = HashSet::new();
        let mut addrs = HashSet::new();
        for (j, b) in std::mem::take(&mut p.backends).into_iter().enumerate() {
            let bat = |k: &str| format!("pool[{i}].backends[{j}].{k}");
            let address = match parse_socket_addr(&b.address) {
                Ok(a) => a,
                Err(e) => {
                    self.err(&bat("address"), e);
                    continue;
                }
            };
            if !addrs.insert(address) {
                self.err(
                    &bat("address"),
                    format!("backend {address} appears twice in this pool"),
                );
            }
            let name = b.name.unwrap_or_else(|| address.to_string());
            self.name(&bat("name"), &name);
            if !names.insert(name.clone()) {
                self.err(&bat("name"), format!("duplicate backend name {name:?}"));
            }
            backends.push(BackendConfig {
                name,
                address,
                weight: self.int(&bat("weight"), b.weight, defaults::POOL_WEIGHT) as u32,
                backup: b.backup.unwrap_or(false),
                max_connections: self.int(
                    &bat("max_connections"),
                    b.max_connections,
                    defaults::POOL_MAX_CONNECTIONS,
                ) as u32,
            });
        }
        let http = self.http_pool(i, &mut p);
        let health = self.health(i, p.health.take().unwrap_or_default(), http.tls.as_ref());
        let connect_timeout = self.duration(
            &at("connect_timeout"),
            p.connect_timeout.as_deref(),
            defaults::POOL_CONNECT_TIMEOUT,
        );
        if connect_timeout.is_zero() {
            self.err(&at("connect_timeout"), "must be greater than 0");
        }
        if p.slow_start.is_some() && algorithm == Algorithm::RoundRobin {
            self.err(
                &at("slow_start"),
                "round_robin ignores weights, so a slow start cannot ramp; use weighted_round_robin, least_connections or another weighted algorithm",
            );
        }
        let cfg = PoolConfig {
            http,
            name: p.name,
            algorithm,
            backends,
            health,
            connect_timeout,
            retries: self.int(&at("retries"), p.retries, defaults::POOL_RETRIES) as u32,
            queue_size: self.int(&at("queue_size"), p.queue_size, defaults::POOL_QUEUE_SIZE) as u32,
            queue_timeout: self.duration(
                &at("queue_timeout"),
                p.queue_timeout.as_deref(),
                defaults::POOL_QUEUE_TIMEOUT,
            ),
            passive_failures: self.int(
                &at("passive_failures"),
                p.passive_failures,
                defaults::POOL_PASSIVE_FAILURES,
            ) as u32,
            slow_start: self.duration(
                &at("slow_start"),
                p.slow_start.as_deref(),
                defaults::POOL_SLOW_START,
            ),
            outlier: p.outlier.take().map(|o| self.outlier(i, o)),
        };
        Some(cfg)
    }

    fn outlier(&mut self, i: usize, o: raw::Outlier) -> OutlierConfig {
        let at = |k: &str| format!("pool[{i}].outlier.{k}");
        let ejection_time = self.duration(
            &at("ejection_time"),
            o.ejection_time.as_deref(),
            defaults::OUTLIER_EJECTION_TIME,
        );
        if ejection_time.is_zero() {
            self.err(&at("ejection_time"), "must be greater than 0");
        }
        let max_ejection_time = self.duration(
            &at("max_ejection_time"),
            o.max_ejection_time.as_deref(),
            (ejection_time * 30).max(Duration::from_secs(300)),
        );
        if max_ejection_time < ejection_time {
            self.err(
                &at("max_ejection_time"),
                "must not be shorter than ejection_time",
            );
        }
        let c = OutlierConfig {
            consecutive_5xx: self.int(
                &at("consecutive_5xx"),
                o.consecutive_5xx,
                defaults::OUTLIER_CONSECUTIVE_5XX,
            ) as u32,
            consecutive_failures: self.int(
                &at("consecutive_failures"),
                o.consecutive_failures,
                defaults::OUTLIER_CONSECUTIVE_FAILURES,
            ) as u32,
            ejection_time,
            max_ejection_time,
            max_ejected_percent: self.int(
                &at("max_ejected_percent"),
                o.max_ejected_percent,
                defaults::OUTLIER_MAX_EJECTED_PERCENT,
            ) as u32,
        };
        if c.consecutive_5xx == 0 && c.consecutive_failures == 0 {
            self.err(
                &at("consecutive_5xx"),
                "consecutive_5xx and consecutive_failures are both 0: nothing would eject",
            );
        }
        c
    }
    fn health(
        &mut self,
        i: usize,
        h: raw::Health,
        pool_tls: Option<&UpstreamTlsConfig>,
    ) -> HealthConfig {
        let at = |k: &str| format!("pool[{i}].health.{k}");
        let kind = h.check.as_deref().unwrap_or("tcp");
        let tls = if kind == "https" {
            let verify = match (h.verify.as_deref(), pool_tls) {
                (Some("none"), _) => None,
                (Some(path), _) => Some(PathBuf::from(path)),
                (None, Some(t)) => t.verify.clone(),
                (None, None) => {
                    self.err(
                        &at("verify"),
                        "check = \"https\" needs verify (a CA file, or \"none\" to skip verification) when the pool has no tls",
                    );
                    None
                }
            };
            Some(UpstreamTlsConfig {
                verify,
                server_name: h
                    .sni
                    .clone()
                    .or_else(|| pool_tls.and_then(|t| t.server_name.clone())),
                client_cert: pool_tls.and_then(|t| t.client_cert.clone()),
                client_key: pool_tls.and_then(|t| t.client_key.clone()),
            })
        } else {
            for (k, set) in [("verify", h.verify.is_some()), ("sni", h.sni.is_some())] {
                if set {
                    self.err(
                        &at(k),
                        format!("only valid with check = \"https\", not {kind:?}"),
                    );
                }
            }
            None
        };
        let check = match kind {
            "none" => HealthCheck::None,
            "tcp" => HealthCheck::Tcp,
            "http" | "https" => {
                let path = h.path.clone().unwrap_or_else(|| "/".into());
                if !path.starts_with('/') || path.chars().any(|c| c.is_whitespace()) {
                    self.err(
                        &at("path"),
                        format!("{path:?} must start with '/' and contain no spaces"),
                    );
                }
                let expect_status = h.expect_status.clone().unwrap_or_else(|| vec![200]);
                if expect_status.is_empty() {
                    self.err(&at("expect_status"), "needs at least one status code");
                }
                for (k, s) in expect_status.iter().enumerate() {
                    if !(100..=599).contains(s) {
                        self.err(
                            &format!("pool[{i}].health.expect_status[{k}]"),
                            format!("{s} is not an HTTP status (100..=599)"),
                        );
                    }
                }
                HealthCheck::Http {
                    path,
                    host: h.host.clone(),
                    expect_status,
                    expect_body: h.expect_body.clone(),
                    tls,
                }
            }
            other => {
                self.err(
                    &at("check"),
                    format!("unknown check {other:?}; expected tcp, http, https or none"),
                );
                HealthCheck::Tcp
            }
        };
        if !matches!(check, HealthCheck::Http { .. }) {
            for (k, set) in [
                ("path", h.path.is_some()),
                ("host", h.host.is_some()),
                ("expect_status", h.expect_status.is_some()),
                ("expect_body", h.expect_body.is_some()),
            ] {
                if set {
                    self.err(
                        &at(k),
                        format!("only valid with check = \"http\" or \"https\", not {kind:?}"),
                    );
                }
            }
        }
        let interval = self.duration(
            &at("interval"),
            h.interval.as_deref(),
            defaults::HEALTH_INTERVAL,
        );
        let timeout = self.duration(
            &at("timeout"),
            h.timeout.as_deref(),
            defaults::HEALTH_TIMEOUT,
        );
        if interval < Duration::from_millis(10) {
            self.err(&at("interval"), "must be at least 10ms");
        }
        if timeout.is_zero() {
            self.err(&at("timeout"), "must be greater than 0");
        } else if timeout >= interval {
            self.err(
                &at("timeout"),
                format!(
                    "timeout ({}) must be shorter than interval ({})",
                    duration::format(timeout),
                    duration::format(interval)
                ),
            );
        }
        let port = h
            .port
            .map(|p| self.int(&at("port"), Some(p), defaults::HEALTH_PORT) as u16);
        HealthConfig {
            check,
            interval,
            timeout,
            rise: self.int(&at("rise"), h.rise, defaults::HEALTH_RISE) as u32,
            fall: self.int(&at("fall"), h.fall, defaults::HEALTH_FALL) as u32,
            port,
        }
    }
}
