//! `tandem import` through the real binary:
//! - the corpus in tests/import/*/ (keepalived.conf and/or haproxy.cfg,
//!   real-world shapes): the output must equal expected.toml byte for
//!   byte and pass `tandem check`; `TANDEM_BLESS=1` rewrites the goldens;
//! - end to end: real HAProxy with an ACL-routing config and tandem with
//!   the imported one, on the same loopback ports, answer a fixed set of
//!   requests from the same backends.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::*;

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/import")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read corpus dir") {
        let e = e.expect("entry");
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else if e.file_name() != "expected.toml" {
            std::fs::copy(&p, to.join(e.file_name())).expect("copy");
        }
    }
}

/// A throw-away certificate and key in one PEM, as HAProxy's `crt` wants.
fn write_site_pem(path: &Path) {
    let key = rcgen::KeyPair::generate().expect("key");
    let params =
        rcgen::CertificateParams::new(vec!["www.example.com".to_string()]).expect("params");
    let cert = params.self_signed(&key).expect("cert");
    std::fs::write(path, format!("{}{}", cert.pem(), key.serialize_pem())).expect("write pem");
}

fn import(dir: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["import"];
    if dir.join("keepalived.conf").exists() {
        args.extend(["--keepalived", "keepalived.conf"]);
    }
    if dir.join("haproxy.cfg").exists() {
        args.extend(["--haproxy", "haproxy.cfg"]);
    }
    args.extend(extra);
    Command::new(BIN)
        .args(&args)
        .current_dir(dir)
        .output()
        .expect("run tandem import")
}

#[test]
fn corpus_matches_golden_files_and_passes_check() {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(corpus())
        .expect("tests/import")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(cases.len() >= 8, "corpus is missing cases: {cases:?}");
    let bless = std::env::var_os("TANDEM_BLESS").is_some();
    let mut failures = Vec::new();
    for case in &cases {
        let name = case.file_name().unwrap().to_string_lossy().to_string();
        let tmp = TempDir::new(&format!("import-{name}"));
        copy_dir(case, &tmp.0);
        if name == "hap-tls" {
            write_site_pem(&tmp.path("site.pem"));
        }
        let out = import(&tmp.0, &["-o", "tandem.toml"]);
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(out.status.success(), "{name}: import failed:\n{stderr}");
        for heading in [
            "imported: ",
            "approximated (behaviour changes): ",
            "not imported: ",
            "tandem.toml: ok (",
        ] {
            assert!(
                stderr.contains(heading),
                "{name}: summary lacks {heading:?}:\n{stderr}"
            );
        }
        let got = std::fs::read_to_string(tmp.path("tandem.toml")).expect("output");
        let golden = case.join("expected.toml");
        if bless {
            std::fs::write(&golden, &got).expect("bless");
        } else {
            let want = std::fs::read_to_string(&golden).unwrap_or_default();
            if got != want {
                failures.push(format!(
                    "{name}: output differs from {}:\n{got}",
                    golden.display()
                ));
            }
        }
        let check = Command::new(BIN)
            .args(["check", "-c", "tandem.toml"])
            .current_dir(&tmp.0)
            .output()
            .expect("tandem check");
        assert!(
            check.status.success(),
            "{name}: tandem check rejects the import:\n{}",
            String::from_utf8_lossy(&check.stderr)
        );
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn unreadable_input_is_a_positioned_error() {
    let tmp = TempDir::new("import-bad");
    std::fs::write(
        tmp.path("haproxy.cfg"),
        "global\n  maxconn 10\nfrontend fe\n  bind \"127.0.0.1:80\n",
    )
    .unwrap();
    let out = import(&tmp.0, &[]);
    assert_eq!(out.status.code(), Some(1));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains("haproxy.cfg:4: unterminated quoted string"),
        "{e}"
    );
    std::fs::remove_file(tmp.path("haproxy.cfg")).unwrap();
    std::fs::write(
        tmp.path("keepalived.conf"),
        "vrrp_instance A {\n  interface eth0\n",
    )
    .unwrap();
    let out = import(&tmp.0, &[]);
    assert_eq!(out.status.code(), Some(1));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains("keepalived.conf:1: block opened here is never closed"),
        "{e}"
    );
    // Neither input: a usage error.
    let out = Command::new(BIN).args(["import"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// A child process killed on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn haproxy_bin() -> PathBuf {
    for p in [
        "/usr/sbin/haproxy",
        "/usr/bin/haproxy",
        "/usr/local/sbin/haproxy",
    ] {
        if Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    panic!("haproxy is not installed: `apt-get install haproxy` (CI installs it in .ci/run); this test compares tandem against the real HAProxy and cannot run without it");
}

/// (method, path, host) → the backend that answered (X-Backend), or the status.
fn answers(front: std::net::SocketAddr, reqs: &[(&str, &str, &str)]) -> Vec<String> {
    reqs.iter()
        .map(|(m, p, h)| {
            let raw = format!(
                "{m} {p} HTTP/1.1\r\nHost: {h}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            match request(front, &raw) {
                Ok((200, hdrs, _)) => header(&hdrs, "x-backend").unwrap_or("?").to_string(),
                Ok((s, _, _)) => format!("status {s}"),
                Err(e) => format!("error {e}"),
            }
        })
        .collect()
}

#[test]
fn imported_config_routes_like_haproxy() {
    let haproxy = haproxy_bin();
    let api = Backend::http("api");
    let admin = Backend::http("admin");
    let web1 = Backend::http("web");
    let front = free_port();
    let tmp = TempDir::new("import-e2e");
    let cfg = format!(
        "global\n    maxconn 256\n\ndefaults\n    mode http\n    timeout connect 2s\n    timeout client 10s\n    timeout server 10s\n    option forwardfor\n\nfrontend www\n    bind 127.0.0.1:{front}\n    acl is_api path_beg /api/\n    acl is_admin hdr(host) -i admin.test\n    acl is_write method POST PUT\n    acl legacy path /old\n    http-request redirect prefix http://new.test code 301 if {{ hdr(host) -i old.test }}\n    use_backend admin if is_admin\n    use_backend api if is_api is_write\n    use_backend admin if legacy\n    default_backend web\n\nbackend api\n    server api1 {} check inter 500ms\n\nbackend admin\n    server adm1 {} check inter 500ms\n\nbackend web\n    balance roundrobin\n    server web1 {} check inter 500ms\n",
        api.addr, admin.addr, web1.addr
    );
    std::fs::write(tmp.path("haproxy.cfg"), &cfg).unwrap();
    let reqs: &[(&str, &str, &str)] = &[
        ("GET", "/", "www.test"),
        ("GET", "/api/users", "www.test"),
        ("POST", "/api/users", "www.test"),
        ("PUT", "/api/users/1", "www.test"),
        ("POST", "/other", "www.test"),
        ("GET", "/anything", "admin.test"),
        ("GET", "/anything", "ADMIN.test"),
        ("GET", "/old", "www.test"),
        ("GET", "/old/x", "www.test"),
        ("GET", "/x", "old.test"),
    ];
    let expected: Vec<String> = [
        "web",
        "web",
        "api",
        "api",
        "web",
        "admin",
        "admin",
        "admin",
        "web",
        "status 301",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();

    let check = Command::new(&haproxy)
        .args(["-c", "-f"])
        .arg(tmp.path("haproxy.cfg"))
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "haproxy -c: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    let hap_answers = {
        let _h = Proc(
            Command::new(&haproxy)
                .args(["-db", "-f"])
                .arg(tmp.path("haproxy.cfg"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start haproxy"),
        );
        wait_port(addr(front));
        answers(addr(front), reqs)
    };
    assert_eq!(
        hap_answers, expected,
        "HAProxy itself does not route as the test expects"
    );

    // The same ports with tandem and the imported config.
    let out = Command::new(BIN)
        .args(["import", "--haproxy", "haproxy.cfg", "-o", "tandem.toml"])
        .current_dir(&tmp.0)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "import: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(tmp.path("tandem.toml")).unwrap();
    let sock = tmp.path("admin.sock");
    let text = text.replacen(
        "[global]\n",
        &format!("[global]\nadmin_socket = \"{}\"\n", sock.display()),
        1,
    );
    std::fs::write(tmp.path("tandem.toml"), &text).unwrap();
    let log = std::fs::File::create(tmp.path("tandem.log")).unwrap();
    let _t = Proc(
        Command::new(BIN)
            .args(["run", "-c"])
            .arg(tmp.path("tandem.toml"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start tandem"),
    );
    wait_port(addr(front));
    // First probes mark backends up; wait until every route answers.
    wait_for(
        "tandem to route to all three backends",
        Duration::from_secs(10),
        || {
            answers(addr(front), &reqs[..6])
                .iter()
                .all(|a| !a.starts_with("status") && !a.starts_with("error"))
        },
    );
    let tandem_answers = answers(addr(front), reqs);
    assert_eq!(
        tandem_answers,
        hap_answers,
        "tandem with the imported config answers differently; config:\n{text}\nlog:\n{}",
        std::fs::read_to_string(tmp.path("tandem.log")).unwrap_or_default()
    );
}
