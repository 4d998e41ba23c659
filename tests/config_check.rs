//! `tandem check`: every class of invalid config gives FILE:LINE:COL, the
//! key path and what is wrong, with exit code 1; the shipped example passes.

mod support;

use std::process::Command;

use support::{TempDir, BIN};

const POOL: &str = "[[pool]]\nname = \"web\"\nbackends = [{ address = \"10.0.0.1:80\" }]\n";
const LISTENER: &str = "[[listener]]\nname = \"l\"\nbind = \"127.0.0.1:8080\"\npool = \"web\"\n";

fn check(body: &str) -> (i32, String, String) {
    let dir = TempDir::new("check");
    let path = dir.path("t.toml");
    std::fs::write(&path, body).expect("write");
    let out = Command::new(BIN)
        .args(["check", "-c"])
        .arg(&path)
        .output()
        .expect("run tandem check");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        path.display().to_string(),
    )
}

/// Every case fails `tandem check` with exit 1 and a line starting
/// "FILE:{position}" that contains the message; all failures are listed.
fn assert_reported(cases: &[(String, &str, &str)]) {
    let mut failures = Vec::new();
    for (body, want_pos, want_msg) in cases {
        let (code, stderr, path) = check(body);
        let want_prefix = format!("{path}:{want_pos}");
        let ok = code == 1
            && stderr
                .lines()
                .any(|l| l.starts_with(&want_prefix) && l.contains(want_msg));
        if !ok {
            failures.push(format!(
                "config:\n{body}\nwant exit 1 and a line starting {want_prefix:?} containing {want_msg:?}\ngot exit {code}:\n{stderr}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n-----\n"));
}

#[test]
fn example_config_passes() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/etc/tandem/tandem.toml");
    let out = Command::new(BIN)
        .args(["check", "-c", example])
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_invalid_class_is_reported_with_position() {
    // (config, expected "LINE:COL: key", expected message fragment)
    let cases: Vec<(String, &str, &str)> = vec![
        // Unknown keys, at every level.
        (format!("[global]\nworkerz = 2\n{POOL}"), "2:1: global.workerz", "unknown key `workerz`"),
        (
            format!("{POOL}colour = \"red\"\n"),
            "4:1: pool[0].colour",
            "unknown key `colour`",
        ),
        (
            "[[pool]]\nname = \"web\"\nbackends = [{ address = \"10.0.0.1:80\", wieght = 2 }]\n".into(),
            "3:40: pool[0].backends[0].wieght",
            "unknown key `wieght`",
        ),
        (format!("[frontend]\nx = 1\n{POOL}"), "1:1: frontend", "unknown section `frontend`"),
        // Duplicate names.
        (format!("{POOL}{POOL}"), "5:8: pool[1].name", "duplicate pool name \"web\""),
        (
            format!("{POOL}{LISTENER}{LISTENER}"),
            "9:8: listener[1].name",
            "duplicate listener name \"l\"",
        ),
        // References to pools that do not exist.
        (
            format!("{POOL}[[listener]]\nname = \"l\"\nbind = \"127.0.0.1:80\"\npool = \"api\"\n"),
            "7:8: listener[0].pool",
            "no pool named \"api\"",
        ),
        // Unparsable addresses.
        (
            "[[pool]]\nname = \"web\"\nbackends = [{ address = \"10.0.0.1\" }]\n".into(),
            "3:25: pool[0].backends[0].address",
            "is not an address with a port",
        ),
        (
            format!("{POOL}[[listener]]\nname = \"l\"\nbind = \"localhost:80\"\npool = \"web\"\n"),
            "6:8: listener[0].bind",
            "is not an address with a port",
        ),
        // Out-of-range numbers.
        (
            "[[pool]]\nname = \"web\"\nbackends = [{ address = \"10.0.0.1:80\", weight = 0 }]\n".into(),
            "3:49: pool[0].backends[0].weight",
            "0 is out of range 1..=256",
        ),
        (
            "[[pool]]\nname = \"web\"\nbackends = [{ address = \"10.0.0.1:80\", weight = 257 }]\n".into(),
            "3:49: pool[0].backends[0].weight",
            "257 is out of range 1..=256",
        ),
        (
            format!("{POOL}health = {{ rise = 0 }}\n"),
            "4:19: pool[0].health.rise",
            "0 is out of range 1..=100",
        ),
        (
            format!("{POOL}health = {{ fall = 0 }}\n"),
            "4:19: pool[0].health.fall",
            "0 is out of range 1..=100",
        ),
        (
            format!("{POOL}health = {{ interval = \"1s\", timeout = \"1s\" }}\n"),
            "4:39: pool[0].health.timeout",
            "must be shorter than interval",
        ),
        (format!("{POOL}retries = 99\n"), "4:11: pool[0].retries", "out of range 0..=16"),
        // Bad values of known keys.
        (
            format!("{POOL}algorithm = \"fastest\"\n"),
            "4:13: pool[0].algorithm",
            "unknown algorithm \"fastest\"",
        ),
        (
            format!("{POOL}connect_timeout = \"3 parsecs\"\n"),
            "4:19: pool[0].connect_timeout",
            "invalid duration",
        ),
        (
            format!("{POOL}health = {{ check = \"tcp\", path = \"/x\" }}\n"),
            "4:34: pool[0].health.path",
            "only valid with check = \"http\"",
        ),
        (
            "[[pool]]\nname = \"web\"\nbackends = []\n".into(),
            "3:12: pool[0].backends",
            "at least one backend",
        ),
        (
            format!("{POOL}[[listener]]\nname = \"l\"\nbind = \"127.0.0.1:53\"\nprotocol = \"sctp\"\npool = \"web\"\n"),
            "7:12: listener[0].protocol",
            "unknown protocol \"sctp\"",
        ),
        (
            format!("{POOL}{LISTENER}[[listener]]\nname = \"l2\"\nbind = \"127.0.0.1:8080\"\npool = \"web\"\n"),
            "10:8: listener[1].bind",
            "is already used by listener \"l\" on 127.0.0.1:8080",
        ),
        // Wrong types and syntax.
        (format!("{POOL}retries = \"two\"\n"), "4:11: pool[0].retries", "invalid type"),
        ("[[pool]\nname = 1\n".into(), "1:8:", "TOML syntax"),
        ("[global]\nworkers = 1\nworkers = 2\n".into(), "3:1:", "TOML syntax"),
    ];
    assert_reported(&cases);
}

#[test]
fn all_errors_are_reported_not_just_the_first() {
    let body = format!(
        "{POOL}retries = 99\n[[pool]]\nname = \"api\"\nalgorithm = \"nope\"\nbackends = [{{ address = \"x\" }}]\n{LISTENER}"
    );
    let (code, stderr, _) = check(&body);
    assert_eq!(code, 1);
    assert_eq!(stderr.lines().count(), 3, "{stderr}");
}

#[test]
fn missing_file_is_an_error_not_a_pass() {
    let out = Command::new(BIN)
        .args(["check", "-c", "/nonexistent/tandem.toml"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("/nonexistent/tandem.toml:1:1: (document): cannot read file"));
}

#[test]
fn json_diagnostics() {
    let dir = TempDir::new("checkjson");
    let path = dir.path("t.toml");
    std::fs::write(&path, format!("{POOL}retries = 99\n")).expect("write");
    let out = Command::new(BIN)
        .args(["check", "--json", "-c"])
        .arg(&path)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["ok"], false);
    assert_eq!(v["errors"][0]["key"], "pool[0].retries");
    assert_eq!(v["errors"][0]["line"], 4);
}

#[test]
fn daemon_refuses_to_start_on_a_bad_config() {
    let dir = TempDir::new("badstart");
    let path = dir.path("t.toml");
    std::fs::write(&path, format!("{POOL}retries = 99\n")).expect("write");
    let out = Command::new(BIN)
        .args(["run", "-c"])
        .arg(&path)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("pool[0].retries") && err.contains("not starting"),
        "{err}"
    );
}

#[test]
fn shipped_examples_pass_check() {
    let dir = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/examples"));
    let mut n = 0;
    for entry in std::fs::read_dir(dir).expect("examples") {
        let path = entry.expect("entry").path();
        // The BIRD snippet shipped beside the tandem examples is BIRD's config.
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let out = Command::new(BIN)
            .args(["check", "-c"])
            .arg(&path)
            .output()
            .expect("run");
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        if path.file_name().is_some_and(|f| f == "https.toml") {
            // Valid apart from the certificate files an operator provides.
            assert!(!out.status.success());
            assert!(
                err.lines()
                    .all(|l| l.contains("cannot read /etc/tandem/tls/")),
                "{}: {err}",
                path.display()
            );
        } else {
            assert!(out.status.success(), "{}: {err}", path.display());
        }
        n += 1;
    }
    assert!(n >= 6, "examples found: {n}");
    let default = concat!(env!("CARGO_MANIFEST_DIR"), "/packaging/tandem.toml");
    let out = Command::new(BIN)
        .args(["check", "-c", default])
        .output()
        .expect("run");
    assert!(out.status.success(), "the packaged default config passes");
}

/// Waits at most 10 s for `tandem check`: a config naming a device must not hang it.
fn check_bounded(body: &str) -> (i32, String, String) {
    let dir = TempDir::new("checkb");
    let path = dir.path("t.toml");
    std::fs::write(&path, body).expect("write");
    let mut child = Command::new(BIN)
        .args(["check", "-c"])
        .arg(&path)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run tandem check");
    let t0 = std::time::Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if t0.elapsed() > std::time::Duration::from_secs(10) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("tandem check hung on:\n{body}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        path.display().to_string(),
    )
}

fn listener(name: &str, bind: &str, protocol: &str) -> String {
    format!("[[listener]]\nname = \"{name}\"\nbind = \"{bind}\"\nprotocol = \"{protocol}\"\npool = \"web\"\n")
}

#[test]
fn binds_that_run_would_fail_on_are_config_errors() {
    // The bind value of the second listener is at line 11, column 8 (after POOL, 3 lines, and
    // a 5-line listener); of the first at line 6.
    let p = support::free_port();
    let (any, lo, any6) = (
        format!("0.0.0.0:{p}"),
        format!("127.0.0.1:{p}"),
        format!("[::]:{p}"),
    );
    let cases = [
        (
            POOL.to_string() + &listener("any", &any, "tcp") + &listener("lo", &lo, "http"),
            "11:8: listener[1].bind",
            format!("tcp {lo} is already used by listener \"any\" on {any} (a wildcard bind"),
        ),
        (
            POOL.to_string() + &listener("lo", &lo, "https") + &listener("any", &any, "tcp"),
            "11:8: listener[1].bind",
            format!("tcp {any} is already used by listener \"lo\" on {lo}"),
        ),
        (
            POOL.to_string() + &listener("a", &lo, "tcp") + &listener("b", &lo, "http"),
            "11:8: listener[1].bind",
            format!("tcp {lo} is already used by listener \"a\" on {lo}: `run` would fail with EADDRINUSE"),
        ),
        (
            format!("[global]\nmetrics_listen = \"{lo}\"\n{POOL}") + &listener("any", &any, "http"),
            "8:8: listener[0].bind",
            format!("tcp {any} is already used by metrics_listen on {lo}"),
        ),
        (
            POOL.to_string() + &listener("u1", &lo, "udp") + &listener("u2", &lo, "udp"),
            "11:8: listener[1].bind",
            format!("udp {lo} is already used by listener \"u1\""),
        ),
    ];
    let mut failures = Vec::new();
    for (body, want_pos, want_msg) in &cases {
        let (code, stderr, path) = check(body);
        let want_prefix = format!("{path}:{want_pos}");
        if !(code == 1
            && stderr
                .lines()
                .any(|l| l.starts_with(&want_prefix) && l.contains(want_msg.as_str())))
        {
            failures.push(format!(
                "config:\n{body}\nwant a line starting {want_prefix:?} containing {want_msg:?}\ngot exit {code}:\n{stderr}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n-----\n"));

    // No false alarm: what check accepts here, run really binds (IPv6 listeners are v6-only,
    // UDP with SO_REUSEADDR may overlap a TCP port and a UDP wildcard).
    let pool = "[[pool]]\nname = \"web\"\nbackends = [{ address = \"127.0.0.1:1\" }]\n";
    let body = pool.to_string()
        + &listener("any", &any, "tcp")
        + &listener("any6", &any6, "http")
        + &listener("udp-any", &any, "udp")
        + &listener("udp-lo", &lo, "udp");
    let (code, stderr, _) = check(&body);
    assert_eq!(code, 0, "{stderr}");
    let dir = TempDir::new("bindsok");
    let mut d = support::Daemon::start(&dir, &body);
    assert!(
        d.wait_exit(std::time::Duration::from_millis(500)).is_none(),
        "run failed on a config check accepted:\n{}",
        d.log_text()
    );
}

#[test]
fn certificate_and_key_paths_must_be_small_regular_files() {
    let dir = TempDir::new("pemfiles");
    let huge = dir.path("huge.pem");
    std::fs::File::create(&huge)
        .and_then(|f| f.set_len(64 << 20))
        .expect("sparse file");
    let https = |cert: &str, key: &str| {
        format!(
            "{POOL}[[listener]]\nname = \"s\"\nbind = \"127.0.0.1:8443\"\nprotocol = \"https\"\npool = \"web\"\ntls = {{ certificates = [{{ cert = \"{cert}\", key = \"{key}\" }}] }}\n"
        )
    };
    let upstream = |tls: &str| {
        format!("[[pool]]\nname = \"web\"\nbackends = [{{ address = \"10.0.0.1:80\" }}]\ntls = {{ {tls} }}\n")
    };
    let h = huge.display().to_string();
    let cases = [
        (
            https("/dev/zero", "/dev/zero"),
            "listener[0].tls.certificates[0]",
            "/dev/zero is not a regular file".to_string(),
        ),
        (
            https("/dev/stdin", "/dev/stdin"),
            "listener[0].tls.certificates[0]",
            "is not a regular file".into(),
        ),
        (
            https(&h, &h),
            "listener[0].tls.certificates[0]",
            format!("{h} is 67108864 bytes: larger than"),
        ),
        (
            https("/tmp", "/tmp"),
            "listener[0].tls.certificates[0]",
            "/tmp is not a regular file".into(),
        ),
        (
            upstream("verify = \"/dev/zero\""),
            "pool[0].tls.verify",
            "/dev/zero is not a regular file".into(),
        ),
        (
            upstream(
                "verify = \"none\", client_cert = \"/dev/urandom\", client_key = \"/dev/urandom\"",
            ),
            "pool[0].tls.client_cert",
            "/dev/urandom is not a regular file".into(),
        ),
    ];
    for (body, key, msg) in &cases {
        let (code, stderr, path) = check_bounded(body);
        assert_eq!(code, 1, "{body}\n{stderr}");
        assert!(
            stderr.lines().any(|l| l.starts_with(&path)
                && l.contains(&format!(": {key}"))
                && l.contains(msg.as_str())),
            "want {key}: {msg}\n{body}\ngot:\n{stderr}"
        );
    }
}

#[test]
fn sticky_secret_must_not_be_trivial() {
    let (code, stderr, path) = check(&format!("[global]\nsticky_secret = \"short\"\n{POOL}"));
    assert_eq!(code, 1);
    assert!(
        stderr.starts_with(&format!("{path}:2:17: global.sticky_secret"))
            && stderr.contains("at least 16 characters"),
        "{stderr}"
    );
    let (code, stderr, _) = check(&format!(
        "[global]\nsticky_secret = \"0123456789abcdef\"\n{POOL}"
    ));
    assert_eq!(code, 0, "{stderr}");
}

/// IPv6 VRRP instances: one address family per instance, and the keys that
/// have no meaning over IPv6, each with its position; a dual-stack pair of
/// instances sharing a VRID passes.
#[test]
fn ipv6_vrrp_errors_are_reported_with_position() {
    let vrrp = |vrid: u8, extra: &str| {
        format!(
            "[[vrrp]]\nname = \"v{vrid}{}\"\ninterface = \"eth0\"\nvrid = {vrid}\n{extra}\n",
            extra.len()
        )
    };
    let cases: Vec<(String, &str, &str)> = vec![
        (
            vrrp(1, "virtual_ips = [\"10.0.0.100/24\", \"2001:db8::100/64\"]"),
            "5:33: vrrp[0].virtual_ips[1]",
            "one address family per instance",
        ),
        (
            vrrp(1, "virtual_ips = [\"2001:db8::100/64\", \"10.0.0.100/24\"]"),
            "5:36: vrrp[0].virtual_ips[1]",
            "is IPv4 but the first virtual IP of this instance (2001:db8::100) is IPv6",
        ),
        (
            vrrp(1, "version = 2\nvirtual_ips = [\"2001:db8::100/64\"]"),
            "6:16: vrrp[0].virtual_ips[0]",
            "VRRPv2 (RFC 3768) is IPv4 only",
        ),
        (
            vrrp(
                1,
                "checksum = \"plain\"\nvirtual_ips = [\"2001:db8::100/64\"]",
            ),
            "5:12: vrrp[0].checksum",
            "single checksum form",
        ),
        (
            vrrp(
                1,
                "unicast_peers = [\"fe80::2\"]\nvirtual_ips = [\"2001:db8::100/64\"]",
            ),
            "5:17: vrrp[0].unicast_peers",
            "unicast VRRP is IPv4 only",
        ),
        (
            format!(
                "{}{}",
                vrrp(1, "virtual_ips = [\"2001:db8::100/64\"]"),
                vrrp(1, "virtual_ips = [\"2001:db8::200/64\"]")
            ),
            "9:8: vrrp[1].vrid",
            "already used on eth0 by another IPv6 instance",
        ),
    ];
    assert_reported(&cases);
    // The keepalived-style dual-stack pair: same VRID, one instance per
    // family, one sync group.
    let ok = format!(
        "{}{}",
        vrrp(
            51,
            "sync_group = \"site\"\nvirtual_ips = [\"10.0.0.100/24\"]"
        ),
        vrrp(
            51,
            "sync_group = \"site\"\nvirtual_ips = [\"2001:db8::100/64\", \"fe80::100/64\"]"
        )
    );
    let (code, stderr, _) = check(&ok);
    assert_eq!(code, 0, "{ok}\n{stderr}");
}

#[test]
fn operator_parity_keys_are_checked_with_position() {
    // POOL is lines 1-3, LISTENER lines 4-7; extra keys start on line 8.
    let http = "[[listener]]\nname = \"h\"\nbind = \"127.0.0.1:8081\"\nprotocol = \"http\"\n";
    let cases: Vec<(String, &str, &str)> = vec![
        (
            format!("{POOL}{LISTENER}allow = [\"10.0.0.0/33\"]\n"),
            "8:10: listener[0].allow[0]",
            "prefix must be 0..=32",
        ),
        (
            format!("{POOL}{LISTENER}deny = [\"nope\"]\n"),
            "8:9: listener[0].deny[0]",
            "is not an address",
        ),
        (
            format!("{POOL}{LISTENER}accept_proxy_from = [\"10.0.0.1\"]\n"),
            "8:",
            "listener[0].accept_proxy_from: only valid with accept_proxy = true",
        ),
        (
            format!("{POOL}[[listener]]\nname = \"u\"\nbind = \"127.0.0.1:53\"\nprotocol = \"udp\"\npool = \"web\"\naccept_proxy = true\n"),
            "9:",
            "listener[0].accept_proxy: only valid on tcp, http and https",
        ),
        (
            format!("{POOL}{LISTENER}rate_limit = {{ burst = 5 }}\n"),
            "8:",
            "listener[0].rate_limit.rate: set rate, max_connections or both",
        ),
        (
            format!("{POOL}{LISTENER}rate_limit = {{ rate = 5, brust = 5 }}\n"),
            "8:",
            "unknown key `brust`",
        ),
        (
            format!("{POOL}slow_start = \"30s\"\n"),
            "4:",
            "pool[0].slow_start: round_robin ignores weights",
        ),
        (
            format!("{POOL}outlier = {{ consecutive_5xx = 0, consecutive_failures = 0 }}\n"),
            "4:",
            "nothing would eject",
        ),
        (
            format!("{POOL}outlier = {{ ejection_time = \"10s\", max_ejection_time = \"1s\" }}\n"),
            "4:",
            "pool[0].outlier.max_ejection_time: must not be shorter than ejection_time",
        ),
        (
            format!("{POOL}{http}routes = [{{ split = [{{ pool = \"web\", weight = 1 }}, {{ pool = \"nope\", weight = 1 }}] }}]\n"),
            "8:",
            "listener[0].routes[0].split[1].pool: no pool named \"nope\"",
        ),
        (
            format!("{POOL}{http}routes = [{{ split = [{{ pool = \"web\", weight = 0 }}] }}]\n"),
            "8:",
            "at least one weight must be greater than 0",
        ),
        (
            format!("{POOL}{http}routes = [{{ pool = \"web\", split = [{{ pool = \"web\", weight = 1 }}] }}]\n"),
            "8:",
            "exactly one of pool, split, redirect, respond",
        ),
        (
            format!("{POOL}{http}routes = [{{ pool = \"web\", split_sticky = true }}]\n"),
            "8:",
            "split_sticky: only valid with split",
        ),
        (
            format!("{POOL}{http}routes = [{{ pool = \"web\", compress = {{ types = [\"html\"] }} }}]\n"),
            "8:",
            "listener[0].routes[0].compress.types[0]: \"html\" is not a media type",
        ),
        (
            format!("{POOL}{http}routes = [{{ respond = {{ status = 200 }}, compress = true }}]\n"),
            "8:",
            "compress: only applies to routes with a pool or split",
        ),
        (
            format!("{POOL}{http}routes = [{{ match = {{ source = [\"10.0.0.0/8\", \"x\"] }}, pool = \"web\" }}]\n"),
            "8:",
            "listener[0].routes[0].match.source[1]",
        ),
    ];
    assert_reported(&cases);
}

#[test]
fn tls_options_are_checked_with_position() {
    let dir = TempDir::new("tlsopts");
    let ca = support::tls::certs::ca();
    let (cert, key, _) = support::tls::certs::leaf(&ca, &["a.test"]);
    let (c, k) = (dir.path("c.pem"), dir.path("c.key"));
    std::fs::write(&c, cert).expect("write");
    std::fs::write(&k, key).expect("write");
    let https = |tls_extra: &str| {
        format!(
            "{POOL}[[listener]]\nname = \"s\"\nbind = \"127.0.0.1:8443\"\nprotocol = \"https\"\npool = \"web\"\ntls = {{ certificates = [{{ cert = \"{}\", key = \"{}\" }}]{tls_extra} }}\n",
            c.display(),
            k.display()
        )
    };
    let cases = [
        (https(", min_version = \"1.1\""), "listener[0].tls.min_version", "expected \"1.2\" or \"1.3\""),
        (https(", cipher_suites = [\"TLS_RSA_WITH_RC4\"]"), "listener[0].tls.cipher_suites", "unknown cipher suite"),
        (https(", groups = [\"ffdhe1024\"]"), "listener[0].tls.groups", "unknown group"),
        (
            https(", min_version = \"1.3\", cipher_suites = [\"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256\"]"),
            "listener[0].tls.cipher_suites",
            "no cipher suite left",
        ),
        (https(", client_auth = \"optional\""), "listener[0].tls.client_auth", "only valid with client_ca"),
        (https(", client_ca = \"/nonexistent/ca.pem\""), "listener[0].tls.client_ca", ""),
        (https(", client_ca = \"/dev/zero\""), "listener[0].tls.client_ca", ""),
    ];
    let mut failures = Vec::new();
    for (body, key, msg) in &cases {
        let (code, stderr, _) = check(body);
        let ok = code == 1 && stderr.lines().any(|l| l.contains(key) && l.contains(msg));
        if !ok {
            failures.push(format!("want {key} {msg:?}, got exit {code}:\n{stderr}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n-----\n"));
    // And a valid set passes.
    let (code, stderr, _) = check(&https(", min_version = \"1.3\", groups = [\"X25519\"]"));
    assert_eq!(code, 0, "{stderr}");
}

#[test]
fn https_health_check_keys_are_checked() {
    let https_pool = |health: &str| {
        format!("[[pool]]\nname = \"web\"\nhealth = {{ {health} }}\nbackends = [{{ address = \"10.0.0.1:443\" }}]\n")
    };
    let cases = [
        (
            https_pool("check = \"https\""),
            "pool[0].health.verify",
            "needs verify",
        ),
        (
            https_pool("check = \"http\", sni = \"a\""),
            "pool[0].health.sni",
            "only valid with check = \"https\"",
        ),
        (
            https_pool("check = \"https\", verify = \"/nonexistent.pem\""),
            "pool[0].health.verify",
            "",
        ),
        (
            https_pool("check = \"tls\""),
            "pool[0].health.check",
            "expected tcp, http, https or none",
        ),
    ];
    for (body, key, msg) in &cases {
        let (code, stderr, _) = check(body);
        assert!(
            code == 1 && stderr.lines().any(|l| l.contains(key) && l.contains(msg)),
            "want {key} {msg:?}, got exit {code}:\n{stderr}"
        );
    }
    let (code, stderr, _) = check(&https_pool(
        "check = \"https\", verify = \"none\", sni = \"a.test\"",
    ));
    assert_eq!(code, 0, "{stderr}");
}
