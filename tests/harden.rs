//! Hardening through real `tandem` processes on loopback (issue 17): holes closed from
//! outside (forged sticky cookies, unbounded admin/metrics connections), faults (fd
//! exhaustion, many idle connections) and paths no other suite reaches.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::web::{get, header, Web};
use common::*;

fn pool(name: &str, webs: &[&Web], extra: &str) -> String {
    let list: Vec<String> = webs
        .iter()
        .map(|w| format!("{{ name = \"{}\", address = \"{}\" }}", w.name, w.addr))
        .collect();
    format!(
        "[[pool]]\nname = \"{name}\"\nalgorithm = \"round_robin\"\nhealth = {{ check = \"tcp\", interval = \"200ms\", timeout = \"100ms\" }}\nbackends = [{}]\n{extra}\n",
        list.join(", ")
    )
}

fn http_listener(port: u16, body: &str) -> String {
    format!(
        "[[listener]]\nname = \"web\"\nbind = \"127.0.0.1:{port}\"\nprotocol = \"http\"\n{body}\n"
    )
}

// ------------------------------------------------------------- sticky ---

/// The `NAME=VALUE` part of a Set-Cookie for TANDEM_SRV, if any.
fn issued(h: &[(String, String)]) -> Option<String> {
    header(h, "set-cookie")
        .filter(|c| c.starts_with("TANDEM_SRV="))
        .and_then(|c| c.split(';').next())
        .map(str::to_string)
}

/// A sticky tandem on a fresh port with `secret`, and backend → cookie as it issues them.
fn sticky_node(
    tag: &str,
    webs: &[&Web],
    secret: &str,
) -> (Daemon, TempDir, u16, BTreeMap<String, String>) {
    let dir = TempDir::new(tag);
    let port = free_port();
    let cfg = pool(
        "web",
        webs,
        "sticky = { mode = \"cookie\", name = \"TANDEM_SRV\" }",
    ) + &http_listener(port, "pool = \"web\"");
    let d = Daemon::start_with_global(&dir, &format!("sticky_secret = \"{secret}\""), &cfg);
    let mut cookies = BTreeMap::new();
    // Round robin: fresh clients visit every backend within a few requests.
    for _ in 0..(4 * webs.len()) {
        let (s, h, body) = get(addr(port), "/", "").expect("fresh request");
        assert_eq!(s, 200);
        let c = issued(&h).unwrap_or_else(|| panic!("no sticky cookie for a fresh client: {h:?}"));
        if let Some(old) = cookies.insert(body.clone(), c.clone()) {
            assert_eq!(old, c, "one token per backend");
        }
    }
    assert_eq!(cookies.len(), webs.len(), "every backend seen: {cookies:?}");
    (d, dir, port, cookies)
}

#[test]
fn sticky_cookie_cannot_be_forged() {
    let (a, b, c) = (
        Web::start("alpha"),
        Web::start("bravo"),
        Web::start("charlie"),
    );
    let webs = [&a, &b, &c];
    let secret = "pair-shared-secret-0123456789";
    let (_n1, _d1, p1, tokens1) = sticky_node("sticky1", &webs, secret);
    let (_n2, _d2, p2, tokens2) = sticky_node("sticky2", &webs, secret);
    let (_n3, _d3, _p3, tokens3) = sticky_node("sticky3", &webs, "another-secret-entirely-42");
    assert_eq!(
        tokens1, tokens2,
        "two nodes with one secret issue the same cookies"
    );
    for (backend, t) in &tokens1 {
        assert_ne!(
            Some(t),
            tokens3.get(backend),
            "another secret, other cookies"
        );
        // A valid cookie pins, on either node, and is not re-issued.
        for port in [p1, p2] {
            for _ in 0..6 {
                let (_, h, body) = get(addr(port), "/", &format!("Cookie: {t}\r\n")).expect("get");
                assert_eq!(&body, backend, "valid cookie {t} pins on :{port}");
                assert_eq!(issued(&h), None, "a valid cookie is not re-issued");
            }
        }
    }
    // Forgeries: every edit of a real token, a token from another secret, junk. None pins:
    // each is re-issued a real cookie and the balancer spreads them.
    let real = tokens1["bravo"].clone();
    let value = real.trim_start_matches("TANDEM_SRV=").to_string();
    let mut forged: Vec<String> = (0..value.len())
        .step_by(5)
        .map(|i| {
            let mut v = value.clone().into_bytes();
            v[i] = if v[i] == b'f' { b'0' } else { b'f' };
            format!("TANDEM_SRV={}", String::from_utf8(v).unwrap())
        })
        .collect();
    forged.push(tokens3["bravo"].clone());
    forged.push("TANDEM_SRV=bravo".into());
    forged.push(format!("TANDEM_SRV={}", "0".repeat(32)));
    forged.push(format!("TANDEM_SRV={}", &value[..16]));
    let mut served = BTreeSet::new();
    for f in &forged {
        let (s, h, body) = get(addr(p1), "/", &format!("Cookie: {f}\r\n")).expect("forged");
        assert_eq!(s, 200);
        let reissued = issued(&h).unwrap_or_else(|| panic!("forged {f} not re-issued"));
        assert_eq!(
            reissued, tokens1[&body],
            "re-issued the real cookie of {body}"
        );
        served.insert(body);
    }
    assert_eq!(served.len(), 3, "forged cookies do not pin: {served:?}");
}
