//! Runtime control through the CLI and the admin API: drain, disable,
//! weight, and their survival across reloads.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use support::*;

/// No active health checks: the backends' accept counters then count only
/// proxied connections.
fn config(a: &Backend, b: &Backend, port: u16, wb: u32) -> String {
    Config::new()
        .pool(
            Pool::new("p")
                .algorithm("weighted_round_robin")
                .health(r#"{ check = "none" }"#)
                .backend("a", &a.addr.to_string())
                .backend_with("b", &b.addr.to_string(), &format!("weight = {wb}")),
        )
        .listener(Listener::local("l", port, "p"))
        .render()
}

fn echo_once(c: &mut TcpStream, msg: &[u8]) -> std::io::Result<()> {
    c.write_all(msg)?;
    let mut buf = vec![0u8; msg.len()];
    c.read_exact(&mut buf)?;
    assert_eq!(buf, msg);
    Ok(())
}

#[test]
fn drain_lets_open_connections_finish_and_sends_new_ones_elsewhere() {
    let dir = TempDir::new("drain");
    let a = Backend::start("a", Mode::Echo);
    let b = Backend::start("b", Mode::Echo);
    let port = free_port();
    let d = Daemon::start(&dir, &config(&a, &b, port, 1));
    d.wait_for("both up", Duration::from_secs(3), |d| {
        d.health("p", "a") == "up" && d.health("p", "b") == "up"
    });
    // Open a long-lived connection on each backend.
    let mut conns: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut c = TcpStream::connect(addr(port)).expect("connect");
            c.set_read_timeout(Some(Duration::from_secs(3))).expect("t");
            echo_once(&mut c, b"hi").expect("echo");
            c
        })
        .collect();
    assert_eq!(a.connections.load(std::sync::atomic::Ordering::Relaxed), 1);
    let (code, out) = cli(&d, &["backend", "drain", "p/a"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("p/a draining: 1 connections remain"), "{out}");
    let s = d.status();
    let ba = s.backend("p", "a");
    assert_eq!(ba.admin, "draining");
    assert_eq!(ba.active, 1);
    assert!(ba.runtime);
    // New connections all go to b; the open one on a keeps working.
    for _ in 0..6 {
        let mut c = TcpStream::connect(addr(port)).expect("connect");
        c.set_read_timeout(Some(Duration::from_secs(3))).expect("t");
        echo_once(&mut c, b"new").expect("echo");
    }
    assert_eq!(a.connections.load(std::sync::atomic::Ordering::Relaxed), 1);
    for c in conns.iter_mut() {
        echo_once(c, b"still here").expect("open connection keeps working while draining");
    }
    // The drain survives a reload that does not change the backend.
    d.signal("HUP");
    d.wait_for("generation 2", Duration::from_secs(3), |d| {
        d.status().generation == 2
    });
    assert_eq!(d.status().backend("p", "a").admin, "draining");
    // Status counts down to 0 as the drained connection ends.
    drop(conns);
    d.wait_for("a drained", Duration::from_secs(3), |d| {
        d.status().backend("p", "a").active == 0
    });
    let (code, out) = cli(&d, &["backend", "enable", "p/a"]);
    assert_eq!(code, 0, "{out}");
    for _ in 0..4 {
        let mut c = TcpStream::connect(addr(port)).expect("connect");
        c.set_read_timeout(Some(Duration::from_secs(3))).expect("t");
        echo_once(&mut c, b"x").expect("echo");
    }
    assert!(
        a.connections.load(std::sync::atomic::Ordering::Relaxed) > 1,
        "a serves again"
    );
}

#[test]
fn disable_closes_open_connections_after_the_grace_period() {
    let dir = TempDir::new("disable");
    let a = Backend::start("a", Mode::Echo);
    let b = Backend::start("b", Mode::Echo);
    let port = free_port();
    let d = Daemon::start(&dir, &config(&a, &b, port, 1));
    d.wait_for("both up", Duration::from_secs(3), |d| {
        d.health("p", "a") == "up" && d.health("p", "b") == "up"
    });
    let mut c = TcpStream::connect(addr(port)).expect("connect");
    c.set_read_timeout(Some(Duration::from_secs(3))).expect("t");
    echo_once(&mut c, b"hi").expect("echo");
    let on = if a.connections.load(std::sync::atomic::Ordering::Relaxed) == 1 {
        "a"
    } else {
        "b"
    };
    let (code, out) = cli(
        &d,
        &["backend", "disable", &format!("p/{on}"), "--grace", "500ms"],
    );
    assert_eq!(code, 0, "{out}");
    echo_once(&mut c, b"during grace").expect("open connection works during the grace period");
    std::thread::sleep(Duration::from_millis(800));
    let mut buf = [0u8; 8];
    let r = c.write_all(b"after").and_then(|_| c.read(&mut buf));
    assert!(
        matches!(r, Ok(0) | Err(_)),
        "connection must be closed after the grace period: {r:?}"
    );
    assert_eq!(d.status().backend("p", on).admin, "disabled");
}

#[test]
fn runtime_weight_changes_the_split_until_the_config_changes_it() {
    let dir = TempDir::new("weight");
    let a = Backend::start("a", Mode::Plain);
    let b = Backend::start("b", Mode::Plain);
    let port = free_port();
    let d = Daemon::start(&dir, &config(&a, &b, port, 1));
    d.wait_for("both up", Duration::from_secs(3), |d| {
        d.health("p", "a") == "up" && d.health("p", "b") == "up"
    });
    let split = || {
        let mut n = std::collections::HashMap::new();
        for _ in 0..40 {
            *n.entry(http_get(addr(port)).body().expect("get"))
                .or_insert(0) += 1;
        }
        n
    };
    let (code, out) = cli(&d, &["backend", "weight", "p/b", "3"]);
    assert_eq!(code, 0, "{out}");
    let n = split();
    assert_eq!(
        (n.get("a"), n.get("b")),
        (Some(&10), Some(&30)),
        "3:1 with the runtime weight"
    );
    let b_status = d.status().backend("p", "b").clone();
    assert_eq!(b_status.weight, 3);
    assert_eq!(b_status.configured_weight, 1);
    // A reload that leaves b alone keeps the runtime weight...
    d.signal("HUP");
    d.wait_for("generation 2", Duration::from_secs(3), |d| {
        d.status().generation == 2
    });
    assert_eq!(d.status().backend("p", "b").weight, 3);
    // ...one that changes b's config replaces it.
    d.write_config(&config(&a, &b, port, 2));
    d.signal("HUP");
    d.wait_for("generation 3", Duration::from_secs(3), |d| {
        d.status().generation == 3
    });
    let s = d.status();
    assert_eq!(s.backend("p", "b").weight, 2);
    assert!(!s.backend("p", "b").runtime);
    // Bad input: clear errors, nothing changes.
    let (code, out) = cli(&d, &["backend", "weight", "p/b", "999"]);
    assert_eq!(code, 1);
    assert!(out.contains("out of range"), "{out}");
    let (code, out) = cli(&d, &["backend", "drain", "p/nope"]);
    assert_eq!(code, 1);
    assert!(out.contains("no backend named \"nope\""), "{out}");
    let (code, _) = cli(&d, &["backend", "drain", "nopool"]);
    assert_eq!(code, 2, "malformed target is a usage error");
}
