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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::global::tests::{check, ok, Row, BASE, POOL};
    use super::*;

    /// [`BASE`] with `keys` appended to the pool (line 4 on), before the listener.
    fn p(keys: &str) -> String {
        format!("{POOL}{keys}\n{}", &BASE[POOL.len()..])
    }

    /// A pool `web` with these backends (line 3) and the base listener.
    fn backends(list: &str) -> String {
        format!(
            "[[pool]]\nname = \"web\"\nbackends = [{list}]\n{}",
            &BASE[POOL.len()..]
        )
    }

    #[test]
    fn pool_errors() {
        let rows: Vec<Row> = vec![
            // Names.
            ("[[pool]]\nname = \"web pool\"\nbackends = [{ address = \"10.0.0.1:80\" }]\n".into(), "pool[0].name", "invalid name \"web pool\"", 2),
            ("[[pool]]\nname = \"\"\nbackends = [{ address = \"10.0.0.1:80\" }]\n".into(), "pool[0].name", "use 1-64 letters", 2),
            (format!("[[pool]]\nname = \"{}\"\nbackends = [{{ address = \"10.0.0.1:80\" }}]\n", "a".repeat(65)), "pool[0].name", "invalid name", 2),
            // A pool without the backends key at all: reported where the pool starts.
            ("[[pool]]\nname = \"web\"\n".into(), "pool[0].backends", "a pool needs at least one backend", 1),
            // Backends.
            (backends("{ address = \"10.0.0.1:80\" }, { address = \"10.0.0.1:80\" }"), "pool[0].backends[1].address", "backend 10.0.0.1:80 appears twice in this pool", 3),
            (backends("{ address = \"10.0.0.1:80\", name = \"a b\" }"), "pool[0].backends[0].name", "invalid name \"a b\"", 3),
            (backends("{ address = \"10.0.0.1:80\", name = \"a\" }, { address = \"10.0.0.2:80\", name = \"a\" }"), "pool[0].backends[1].name", "duplicate backend name \"a\"", 3),
            // The default name is the address: a named backend may not take another's address as name.
            (backends("{ address = \"10.0.0.1:80\" }, { address = \"10.0.0.2:80\", name = \"10.0.0.1:80\" }"), "pool[0].backends[1].name", "duplicate backend name \"10.0.0.1:80\"", 3),
            (backends("{ address = \"[2001:db8::1]\" }"), "pool[0].backends[0].address", "is not an address with a port", 3),
            (backends("{ address = \"10.0.0.1:80\", max_connections = 10000001 }"), "pool[0].backends[0].max_connections", "10000001 is out of range 0..=10000000", 3),
            // Algorithm, timeouts, queues.
            (p("algorithm = \"RoundRobin\""), "pool[0].algorithm", "expected one of round_robin, weighted_round_robin, least_connections, least_response_time, source_hash, random_two_choices, maglev", 4),
            (p("connect_timeout = \"0\""), "pool[0].connect_timeout", "must be greater than 0", 4),
            (p("connect_timeout = \"0ms\""), "pool[0].connect_timeout", "must be greater than 0", 4),
            (p("retries = 17"), "pool[0].retries", "17 is out of range 0..=16", 4),
            (p("queue_size = 1000001"), "pool[0].queue_size", "out of range 0..=1000000", 4),
            (p("queue_timeout = \"5 s\""), "pool[0].queue_timeout", "invalid duration", 4),
            (p("passive_failures = 1001"), "pool[0].passive_failures", "out of range 0..=1000", 4),
            (p("algorithm = \"round_robin\"\nslow_start = \"10s\""), "pool[0].slow_start", "round_robin ignores weights", 5),
            (p("algorithm = \"least_connections\"\nslow_start = \"10\""), "pool[0].slow_start", "missing unit", 5),
            // Outlier ejection.
            (p("outlier = { ejection_time = \"0\" }"), "pool[0].outlier.ejection_time", "must be greater than 0", 4),
            (p("outlier = { ejection_time = \"ten\" }"), "pool[0].outlier.ejection_time", "invalid duration", 4),
            (p("outlier = { max_ejection_time = \"5s\" }"), "pool[0].outlier.max_ejection_time", "must not be shorter than ejection_time", 4),
            (p("outlier = { max_ejection_time = \"x\" }"), "pool[0].outlier.max_ejection_time", "invalid duration", 4),
            (p("outlier = { consecutive_5xx = 10001 }"), "pool[0].outlier.consecutive_5xx", "10001 is out of range 0..=10000", 4),
            (p("outlier = { consecutive_failures = 10001 }"), "pool[0].outlier.consecutive_failures", "out of range 0..=10000", 4),
            (p("outlier = { max_ejected_percent = 0 }"), "pool[0].outlier.max_ejected_percent", "0 is out of range 1..=100", 4),
            (p("outlier = { max_ejected_percent = 101 }"), "pool[0].outlier.max_ejected_percent", "101 is out of range 1..=100", 4),
            // Health check kinds and their keys.
            (p("health = { check = \"TCP\" }"), "pool[0].health.check", "unknown check \"TCP\"", 4),
            (p("health = { check = \"tcp\", verify = \"none\" }"), "pool[0].health.verify", "only valid with check = \"https\", not \"tcp\"", 4),
            (p("health = { sni = \"a.test\" }"), "pool[0].health.sni", "only valid with check = \"https\", not \"tcp\"", 4),
            (p("health = { check = \"none\", host = \"a.test\" }"), "pool[0].health.host", "only valid with check = \"http\" or \"https\", not \"none\"", 4),
            (p("health = { expect_status = [200] }"), "pool[0].health.expect_status", "only valid with check = \"http\" or \"https\", not \"tcp\"", 4),
            (p("health = { check = \"tcp\", expect_body = \"ok\" }"), "pool[0].health.expect_body", "only valid with check = \"http\"", 4),
            (p("health = { check = \"http\", path = \"health\" }"), "pool[0].health.path", "\"health\" must start with '/' and contain no spaces", 4),
            (p("health = { check = \"http\", path = \"/a b\" }"), "pool[0].health.path", "must start with '/' and contain no spaces", 4),
            (p("health = { check = \"http\", expect_status = [] }"), "pool[0].health.expect_status", "needs at least one status code", 4),
            (p("health = { check = \"http\", expect_status = [200, 600] }"), "pool[0].health.expect_status[1]", "600 is not an HTTP status (100..=599)", 4),
            (p("health = { check = \"https\", expect_status = [99] }\ntls = { verify = \"none\" }"), "pool[0].health.expect_status[0]", "99 is not an HTTP status", 4),
            // Health timers and counters.
            (p("health = { interval = \"5ms\", timeout = \"1ms\" }"), "pool[0].health.interval", "must be at least 10ms", 4),
            (p("health = { interval = \"2\" }"), "pool[0].health.interval", "missing unit", 4),
            (p("health = { timeout = \"0\" }"), "pool[0].health.timeout", "must be greater than 0", 4),
            // Against the default interval (2s).
            (p("health = { timeout = \"2s\" }"), "pool[0].health.timeout", "timeout (2s) must be shorter than interval (2s)", 4),
            (p("health = { interval = \"500ms\" }"), "pool[0].health.timeout", "timeout (1s) must be shorter than interval (500ms)", 4),
            (p("health = { port = 0 }"), "pool[0].health.port", "0 is out of range 1..=65535", 4),
            (p("health = { port = 65536 }"), "pool[0].health.port", "65536 is out of range 1..=65535", 4),
            (p("health = { rise = 101 }"), "pool[0].health.rise", "101 is out of range 1..=100", 4),
            (p("health = { fall = 101 }"), "pool[0].health.fall", "101 is out of range 1..=100", 4),
        ];
        check(&rows);
    }

    #[test]
    fn pool_errors_in_the_second_pool_point_at_it() {
        let src = format!("{POOL}[[pool]]\nname = \"api\"\nbackends = [{{ address = \"10.0.0.2:80\", weight = 0 }}]\nretries = 20\n");
        check(&[
            (
                src.clone(),
                "pool[1].backends[0].weight",
                "out of range 1..=256",
                6,
            ),
            (src, "pool[1].retries", "out of range", 7),
        ]);
    }

    #[test]
    fn pool_defaults() {
        let c = ok(BASE);
        let pool = &c.pools[0];
        assert_eq!(pool.name, "web");
        assert_eq!(pool.algorithm, Algorithm::RoundRobin);
        assert_eq!(pool.connect_timeout, defaults::POOL_CONNECT_TIMEOUT);
        assert_eq!(pool.retries as u64, defaults::POOL_RETRIES.default);
        assert_eq!(pool.queue_size as u64, defaults::POOL_QUEUE_SIZE.default);
        assert_eq!(pool.queue_timeout, defaults::POOL_QUEUE_TIMEOUT);
        assert_eq!(
            pool.passive_failures as u64,
            defaults::POOL_PASSIVE_FAILURES.default
        );
        assert_eq!(pool.slow_start, defaults::POOL_SLOW_START);
        assert_eq!(pool.outlier, None);
        let b = &pool.backends[0];
        assert_eq!(b.name, "10.0.0.1:80");
        assert_eq!(b.address, "10.0.0.1:80".parse().expect("addr"));
        assert_eq!(b.weight as u64, defaults::POOL_WEIGHT.default);
        assert_eq!(
            b.max_connections as u64,
            defaults::POOL_MAX_CONNECTIONS.default
        );
        assert!(!b.backup);
        let h = &pool.health;
        assert_eq!(h.check, HealthCheck::Tcp);
        assert_eq!(h.interval, defaults::HEALTH_INTERVAL);
        assert_eq!(h.timeout, defaults::HEALTH_TIMEOUT);
        assert_eq!(h.rise as u64, defaults::HEALTH_RISE.default);
        assert_eq!(h.fall as u64, defaults::HEALTH_FALL.default);
        assert_eq!(h.port, None);
    }

    #[test]
    fn pool_valid_values() {
        let c = ok(&p(concat!(
            "algorithm = \"weighted_round_robin\"\n",
            "slow_start = \"1m30s\"\n",
            "connect_timeout = \"250ms\"\n",
            "retries = 0\n",
            "queue_size = 0\n",
            "queue_timeout = \"1.5s\"\n",
            "passive_failures = 0\n",
            "health = { check = \"none\", interval = \"10ms\", timeout = \"9ms\", rise = 100, fall = 1, port = 65535 }",
        )));
        let pool = &c.pools[0];
        assert_eq!(pool.algorithm, Algorithm::WeightedRoundRobin);
        assert_eq!(pool.slow_start, Duration::from_secs(90));
        assert_eq!(pool.connect_timeout, Duration::from_millis(250));
        assert_eq!(
            (pool.retries, pool.queue_size, pool.passive_failures),
            (0, 0, 0)
        );
        assert_eq!(pool.queue_timeout, Duration::from_millis(1500));
        let h = &pool.health;
        assert_eq!(h.check, HealthCheck::None);
        assert_eq!(
            (h.interval, h.timeout),
            (Duration::from_millis(10), Duration::from_millis(9))
        );
        assert_eq!((h.rise, h.fall, h.port), (100, 1, Some(65535)));

        let c = ok(&backends(
            "{ address = \"[2001:db8::1]:80\", name = \"v6\", weight = 256, backup = true, max_connections = 10000000 }, { address = \"10.0.0.1:80\" }",
        ));
        let b = &c.pools[0].backends;
        assert_eq!(
            (
                b[0].name.as_str(),
                b[0].weight,
                b[0].backup,
                b[0].max_connections
            ),
            ("v6", 256, true, 10_000_000)
        );
        assert_eq!(b[1].name, "10.0.0.1:80");
        // Every algorithm but round_robin takes a slow start.
        for a in Algorithm::ALL
            .iter()
            .filter(|a| **a != Algorithm::RoundRobin)
        {
            let c = ok(&p(&format!(
                "algorithm = \"{}\"\nslow_start = \"5s\"",
                a.name()
            )));
            assert_eq!(c.pools[0].algorithm, *a);
        }
    }

    #[test]
    fn pool_outlier_defaults() {
        let o = ok(&p("outlier = {}")).pools[0].outlier.expect("outlier");
        assert_eq!(o.ejection_time, defaults::OUTLIER_EJECTION_TIME);
        // 30 × ejection_time, at least 5 minutes.
        assert_eq!(o.max_ejection_time, Duration::from_secs(300));
        assert_eq!(
            o.consecutive_5xx as u64,
            defaults::OUTLIER_CONSECUTIVE_5XX.default
        );
        assert_eq!(
            o.consecutive_failures as u64,
            defaults::OUTLIER_CONSECUTIVE_FAILURES.default
        );
        assert_eq!(
            o.max_ejected_percent as u64,
            defaults::OUTLIER_MAX_EJECTED_PERCENT.default
        );
        let o = ok(&p(
            "outlier = { ejection_time = \"20s\", consecutive_5xx = 0 }",
        ))
        .pools[0]
            .outlier
            .expect("outlier");
        assert_eq!(o.max_ejection_time, Duration::from_secs(600));
        assert_eq!((o.consecutive_5xx, o.consecutive_failures), (0, 5));
        let o = ok(&p("outlier = { ejection_time = \"1s\", max_ejection_time = \"1s\", consecutive_failures = 0, max_ejected_percent = 100 }")).pools[0]
            .outlier
            .expect("outlier");
        assert_eq!(
            (o.ejection_time, o.max_ejection_time),
            (Duration::from_secs(1), Duration::from_secs(1))
        );
        assert_eq!((o.consecutive_failures, o.max_ejected_percent), (0, 100));
    }

    #[test]
    fn pool_http_health_checks() {
        let h = ok(&p("health = { check = \"http\" }")).pools[0]
            .health
            .clone();
        assert_eq!(
            h.check,
            HealthCheck::Http {
                path: "/".into(),
                host: None,
                expect_status: vec![200],
                expect_body: None,
                tls: None,
            }
        );
        let h = ok(&p("health = { check = \"http\", path = \"/healthz?x=1\", host = \"a.test\", expect_status = [200, 204, 100, 599], expect_body = \"ok\" }")).pools[0].health.clone();
        assert_eq!(
            h.check,
            HealthCheck::Http {
                path: "/healthz?x=1".into(),
                host: Some("a.test".into()),
                expect_status: vec![200, 204, 100, 599],
                expect_body: Some("ok".into()),
                tls: None,
            }
        );
        // https takes verify and server name from the pool's tls unless it has its own.
        let h = ok(&p("health = { check = \"https\" }\ntls = { verify = \"/etc/ca.pem\", server_name = \"b.test\" }")).pools[0].health.clone();
        let HealthCheck::Http { tls: Some(t), .. } = &h.check else {
            panic!("{h:?}")
        };
        assert_eq!(t.verify.as_deref(), Some(Path::new("/etc/ca.pem")));
        assert_eq!(t.server_name.as_deref(), Some("b.test"));
        let h = ok(&p("health = { check = \"https\", verify = \"none\", sni = \"c.test\" }\ntls = { verify = \"/etc/ca.pem\", server_name = \"b.test\" }")).pools[0].health.clone();
        let HealthCheck::Http { tls: Some(t), .. } = &h.check else {
            panic!("{h:?}")
        };
        assert_eq!(t.verify, None);
        assert_eq!(t.server_name.as_deref(), Some("c.test"));
    }
}
