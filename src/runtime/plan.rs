//! What a reload changes, as data: `diff(old, new)` lists every listener, pool, health checker
//! and VRRP instance that a new config adds, rebinds, swaps, reconfigures or removes, and every
//! field that only a restart applies. Pure, so each rule has a table test; `Daemon::apply`
//! follows the same rules (it calls the same classifiers), logs the list and `tandem reload`
//! prints it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;

use crate::config::{Config, ListenerConfig, PoolConfig, Protocol, VrrpConfig};
use crate::vrrp::service::needs_restart;

/// One effect of a reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A new address: a socket is bound before anything else changes.
    ListenerAdd {
        name: String,
        bind: SocketAddr,
        protocol: Protocol,
    },
    /// Same address, but the socket cannot be kept (see [`Rebind`]).
    ListenerRebind {
        name: String,
        bind: SocketAddr,
        why: Rebind,
    },
    /// Same socket, new settings (routes, pool, limits, certificates): open connections keep
    /// the snapshot they started with.
    ListenerSwap {
        name: String,
        bind: SocketAddr,
    },
    /// No longer accepting; open connections finish.
    ListenerRemove {
        name: String,
        bind: SocketAddr,
    },
    PoolAdd {
        name: String,
    },
    /// Backends, weights, algorithm or timeouts changed; backend state is kept by address.
    PoolUpdate {
        name: String,
    },
    PoolRemove {
        name: String,
    },
    CheckerStart {
        pool: String,
        backend: SocketAddr,
    },
    CheckerStop {
        pool: String,
        backend: SocketAddr,
    },
    VrrpStart {
        name: String,
    },
    /// Priority, tracking, timers, hooks: applied to the running instance, no state change.
    VrrpReconfigure {
        name: String,
    },
    /// Interface, VRID, addresses, version or peers changed: the instance is stopped
    /// (gracefully, handing its VIPs over) and started again.
    VrrpRestart {
        name: String,
    },
    VrrpStop {
        name: String,
    },
    /// A field that the running daemon does not re-read: it takes effect at the next restart.
    NeedsRestart {
        field: &'static str,
    },
}

/// Why a listener on an unchanged address needs a new socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rebind {
    /// The listen backlog is fixed when the socket starts listening.
    Backlog,
    /// TCP ⇄ HTTP: another accept loop owns the socket.
    Engine,
}

impl fmt::Display for Rebind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Rebind::Backlog => "backlog changed",
            Rebind::Engine => "engine changed (tcp/http)",
        })
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::ListenerAdd {
                name,
                bind,
                protocol,
            } => write!(f, "listener {name}: add {} {bind}", protocol.name()),
            Change::ListenerRebind { name, bind, why } => {
                write!(f, "listener {name}: rebind {bind} ({why})")
            }
            Change::ListenerSwap { name, bind } => {
                write!(f, "listener {name}: new settings on {bind}")
            }
            Change::ListenerRemove { name, bind } => write!(f, "listener {name}: remove {bind}"),
            Change::PoolAdd { name } => write!(f, "pool {name}: add"),
            Change::PoolUpdate { name } => write!(f, "pool {name}: update"),
            Change::PoolRemove { name } => write!(f, "pool {name}: remove"),
            Change::CheckerStart { pool, backend } => {
                write!(f, "health check {pool}/{backend}: start")
            }
            Change::CheckerStop { pool, backend } => {
                write!(f, "health check {pool}/{backend}: stop")
            }
            Change::VrrpStart { name } => write!(f, "vrrp {name}: start"),
            Change::VrrpReconfigure { name } => write!(f, "vrrp {name}: reconfigure in place"),
            Change::VrrpRestart { name } => write!(f, "vrrp {name}: restart (hand over, start)"),
            Change::VrrpStop { name } => write!(f, "vrrp {name}: stop (hand over)"),
            Change::NeedsRestart { field } => {
                write!(f, "{field}: changed, takes effect at the next restart")
            }
        }
    }
}

/// What identifies a listener's socket across reloads: its address and whether it streams.
pub type ListenerKey = (SocketAddr, bool);

pub fn listener_key(l: &ListenerConfig) -> ListenerKey {
    (l.bind, l.protocol.is_stream())
}

/// What happens to a listener whose address was already served by `old`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    Keep,
    Swap,
    Rebind(Rebind),
}

pub fn listener_fate(old: &ListenerConfig, new: &ListenerConfig) -> Fate {
    if old.http.is_some() != new.http.is_some() {
        Fate::Rebind(Rebind::Engine)
    } else if old.backlog != new.backlog {
        Fate::Rebind(Rebind::Backlog)
    } else if old == new {
        Fate::Keep
    } else {
        Fate::Swap
    }
}

/// The health checkers a config runs: one per (pool, backend address), with its settings.
fn checkers(cfg: &Config) -> BTreeMap<(String, SocketAddr), &crate::config::HealthConfig> {
    cfg.pools
        .iter()
        .flat_map(|p| {
            p.backends
                .iter()
                .map(move |b| ((p.name.clone(), b.address), &p.health))
        })
        .collect()
}

fn global_restart_fields(old: &Config, new: &Config) -> Vec<&'static str> {
    let (a, b) = (&old.global, &new.global);
    let mut out = Vec::new();
    let mut field = |changed: bool, name: &'static str| {
        if changed {
            out.push(name);
        }
    };
    field(a.admin_socket != b.admin_socket, "global.admin_socket");
    field(a.admin_listen != b.admin_listen, "global.admin_listen");
    field(a.admin_token != b.admin_token, "global.admin_token");
    field(a.sticky_secret != b.sticky_secret, "global.sticky_secret");
    field(
        a.metrics_listen != b.metrics_listen,
        "global.metrics_listen",
    );
    field(a.workers != b.workers, "global.workers");
    field(
        a.shutdown_timeout != b.shutdown_timeout,
        "global.shutdown_timeout",
    );
    field(a.log_level != b.log_level, "global.log_level");
    field(old.anycast != new.anycast, "anycast");
    field(old.sync != new.sync, "sync");
    // Anything else in [global] that a future field adds: still reported, never silent.
    if a != b && !out.iter().any(|f| f.starts_with("global.")) {
        out.insert(0, "global");
    }
    out
}

/// Every change from `old` to `new`, in the order they are applied: restart-only fields, then
/// listeners (adds first, so a failed bind changes nothing), pools, checkers, VRRP.
pub fn diff(old: &Config, new: &Config) -> Vec<Change> {
    let mut out: Vec<Change> = global_restart_fields(old, new)
        .into_iter()
        .map(|field| Change::NeedsRestart { field })
        .collect();

    let before: BTreeMap<ListenerKey, &ListenerConfig> =
        old.listeners.iter().map(|l| (listener_key(l), l)).collect();
    let after: BTreeSet<ListenerKey> = new.listeners.iter().map(listener_key).collect();
    let mut rest = Vec::new();
    for l in &new.listeners {
        let (name, bind) = (l.name.clone(), l.bind);
        match before.get(&listener_key(l)) {
            None => out.push(Change::ListenerAdd {
                name,
                bind,
                protocol: l.protocol,
            }),
            Some(o) => match listener_fate(o, l) {
                Fate::Keep => {}
                Fate::Swap => rest.push(Change::ListenerSwap { name, bind }),
                Fate::Rebind(why) => rest.push(Change::ListenerRebind { name, bind, why }),
            },
        }
    }
    out.extend(rest);
    for l in &old.listeners {
        if !after.contains(&listener_key(l)) {
            out.push(Change::ListenerRemove {
                name: l.name.clone(),
                bind: l.bind,
            });
        }
    }

    let pools_before: BTreeMap<&str, &PoolConfig> =
        old.pools.iter().map(|p| (p.name.as_str(), p)).collect();
    let pools_after: BTreeSet<&str> = new.pools.iter().map(|p| p.name.as_str()).collect();
    for p in &new.pools {
        match pools_before.get(p.name.as_str()) {
            None => out.push(Change::PoolAdd {
                name: p.name.clone(),
            }),
            Some(o) if *o != p => out.push(Change::PoolUpdate {
                name: p.name.clone(),
            }),
            Some(_) => {}
        }
    }
    for p in &old.pools {
        if !pools_after.contains(p.name.as_str()) {
            out.push(Change::PoolRemove {
                name: p.name.clone(),
            });
        }
    }

    let (ca, cb) = (checkers(old), checkers(new));
    for ((pool, backend), hc) in &ca {
        if cb.get(&(pool.clone(), *backend)) != Some(hc) {
            out.push(Change::CheckerStop {
                pool: pool.clone(),
                backend: *backend,
            });
        }
    }
    for ((pool, backend), hc) in &cb {
        if ca.get(&(pool.clone(), *backend)) != Some(hc) {
            out.push(Change::CheckerStart {
                pool: pool.clone(),
                backend: *backend,
            });
        }
    }

    let vrrp_before: BTreeMap<&str, &VrrpConfig> =
        old.vrrp.iter().map(|v| (v.name.as_str(), v)).collect();
    let vrrp_after: BTreeSet<&str> = new.vrrp.iter().map(|v| v.name.as_str()).collect();
    for v in &old.vrrp {
        if !vrrp_after.contains(v.name.as_str()) {
            out.push(Change::VrrpStop {
                name: v.name.clone(),
            });
        }
    }
    for v in &new.vrrp {
        let name = v.name.clone();
        match vrrp_before.get(v.name.as_str()) {
            None => out.push(Change::VrrpStart { name }),
            Some(o) if needs_restart(o, v) => out.push(Change::VrrpRestart { name }),
            Some(o) if *o != v => out.push(Change::VrrpReconfigure { name }),
            Some(_) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const BASE: &str = r#"
[global]
admin_socket = "/run/tandem-plan-test.sock"

[[pool]]
name = "web"
backends = [{ address = "127.0.0.1:8081" }, { address = "127.0.0.1:8082" }]

[[listener]]
name = "http"
bind = "127.0.0.1:8080"
protocol = "http"
pool = "web"

[[listener]]
name = "db"
bind = "127.0.0.1:5432"
protocol = "tcp"
pool = "web"

[[vrrp]]
name = "vi1"
interface = "eth0"
vrid = 51
priority = 150
virtual_ips = ["192.0.2.100/24"]
"#;

    fn parse(src: &str) -> Config {
        match crate::config::parse(Path::new("plan.toml"), src) {
            Ok(c) => c,
            Err(e) => panic!("test config does not parse: {e}\n{src}"),
        }
    }

    fn changes(edit: impl Fn(&str) -> String) -> Vec<Change> {
        diff(&parse(BASE), &parse(&edit(BASE)))
    }

    fn s(x: &str) -> String {
        x.to_string()
    }

    fn a(x: &str) -> SocketAddr {
        x.parse().expect("address")
    }

    #[test]
    fn the_same_config_changes_nothing() {
        assert_eq!(changes(|b| b.to_string()), vec![]);
    }

    #[test]
    fn every_change_has_its_rule() {
        let http = "bind = \"127.0.0.1:8080\"\nprotocol = \"http\"";
        type Edit = Box<dyn Fn(&str) -> String>;
        let cases: Vec<(&str, Edit, Vec<Change>)> = vec![
            (
                "new address",
                Box::new(|b| b.replace("127.0.0.1:5432", "127.0.0.1:5433")),
                vec![
                    Change::ListenerAdd {
                        name: s("db"),
                        bind: a("127.0.0.1:5433"),
                        protocol: Protocol::Tcp,
                    },
                    Change::ListenerRemove {
                        name: s("db"),
                        bind: a("127.0.0.1:5432"),
                    },
                ],
            ),
            (
                "tcp becomes http on the same address",
                Box::new(|b| {
                    b.replace(
                        "bind = \"127.0.0.1:5432\"\nprotocol = \"tcp\"",
                        "bind = \"127.0.0.1:5432\"\nprotocol = \"http\"",
                    )
                }),
                vec![Change::ListenerRebind {
                    name: s("db"),
                    bind: a("127.0.0.1:5432"),
                    why: Rebind::Engine,
                }],
            ),
            (
                "backlog",
                Box::new(move |b| b.replace(http, &format!("{http}\nbacklog = 64"))),
                vec![Change::ListenerRebind {
                    name: s("http"),
                    bind: a("127.0.0.1:8080"),
                    why: Rebind::Backlog,
                }],
            ),
            (
                "a listener setting",
                Box::new(move |b| b.replace(http, &format!("{http}\nidle_timeout = \"7s\""))),
                vec![Change::ListenerSwap {
                    name: s("http"),
                    bind: a("127.0.0.1:8080"),
                }],
            ),
            (
                "renamed listener on the same address keeps its socket",
                Box::new(|b| b.replace("name = \"http\"", "name = \"front\"")),
                vec![Change::ListenerSwap {
                    name: s("front"),
                    bind: a("127.0.0.1:8080"),
                }],
            ),
            (
                "backend added: pool update and one more checker",
                Box::new(|b| {
                    b.replace(
                        "{ address = \"127.0.0.1:8082\" }]",
                        "{ address = \"127.0.0.1:8082\" }, { address = \"127.0.0.1:8083\" }]",
                    )
                }),
                vec![
                    Change::PoolUpdate { name: s("web") },
                    Change::CheckerStart {
                        pool: s("web"),
                        backend: a("127.0.0.1:8083"),
                    },
                ],
            ),
            (
                "health settings restart every checker of the pool",
                Box::new(|b| {
                    b.replace(
                        "name = \"web\"\n",
                        "name = \"web\"\nhealth = { check = \"tcp\", interval = \"3s\" }\n",
                    )
                }),
                vec![
                    Change::PoolUpdate { name: s("web") },
                    Change::CheckerStop {
                        pool: s("web"),
                        backend: a("127.0.0.1:8081"),
                    },
                    Change::CheckerStop {
                        pool: s("web"),
                        backend: a("127.0.0.1:8082"),
                    },
                    Change::CheckerStart {
                        pool: s("web"),
                        backend: a("127.0.0.1:8081"),
                    },
                    Change::CheckerStart {
                        pool: s("web"),
                        backend: a("127.0.0.1:8082"),
                    },
                ],
            ),
            (
                "pool added and removed",
                Box::new(|b| {
                    b.replace("name = \"web\"", "name = \"app\"")
                        .replace("pool = \"web\"", "pool = \"app\"")
                }),
                vec![
                    Change::ListenerSwap {
                        name: s("http"),
                        bind: a("127.0.0.1:8080"),
                    },
                    Change::ListenerSwap {
                        name: s("db"),
                        bind: a("127.0.0.1:5432"),
                    },
                    Change::PoolAdd { name: s("app") },
                    Change::PoolRemove { name: s("web") },
                    Change::CheckerStop {
                        pool: s("web"),
                        backend: a("127.0.0.1:8081"),
                    },
                    Change::CheckerStop {
                        pool: s("web"),
                        backend: a("127.0.0.1:8082"),
                    },
                    Change::CheckerStart {
                        pool: s("app"),
                        backend: a("127.0.0.1:8081"),
                    },
                    Change::CheckerStart {
                        pool: s("app"),
                        backend: a("127.0.0.1:8082"),
                    },
                ],
            ),
            (
                "vrrp priority: in place",
                Box::new(|b| b.replace("priority = 150", "priority = 90")),
                vec![Change::VrrpReconfigure { name: s("vi1") }],
            ),
            (
                "vrrp addresses: restart",
                Box::new(|b| b.replace("192.0.2.100/24", "192.0.2.101/24")),
                vec![Change::VrrpRestart { name: s("vi1") }],
            ),
            (
                "vrrp vrid: restart",
                Box::new(|b| b.replace("vrid = 51", "vrid = 52")),
                vec![Change::VrrpRestart { name: s("vi1") }],
            ),
            (
                "vrrp instance renamed: stop the old, start the new",
                Box::new(|b| b.replace("name = \"vi1\"", "name = \"vi2\"")),
                vec![
                    Change::VrrpStop { name: s("vi1") },
                    Change::VrrpStart { name: s("vi2") },
                ],
            ),
            (
                "global fields that need a restart",
                Box::new(|b| {
                    b.replace(
                        "[global]\n",
                        "[global]\nworkers = 3\nshutdown_timeout = \"5s\"\n",
                    )
                }),
                vec![
                    Change::NeedsRestart {
                        field: "global.workers",
                    },
                    Change::NeedsRestart {
                        field: "global.shutdown_timeout",
                    },
                ],
            ),
            (
                "admin socket",
                Box::new(|b| b.replace("tandem-plan-test.sock", "tandem-other.sock")),
                vec![Change::NeedsRestart {
                    field: "global.admin_socket",
                }],
            ),
        ];
        let mut failures = Vec::new();
        for (what, edit, want) in cases {
            let got = changes(edit);
            if got != want {
                failures.push(format!("{what}:\n  want {want:?}\n  got  {got:?}"));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[test]
    fn removing_everything_lists_every_removal() {
        let empty = parse("[global]\nadmin_socket = \"/run/tandem-plan-test.sock\"\n");
        let got = diff(&parse(BASE), &empty);
        let text: Vec<String> = got.iter().map(|c| c.to_string()).collect();
        assert_eq!(
            text,
            vec![
                "listener http: remove 127.0.0.1:8080",
                "listener db: remove 127.0.0.1:5432",
                "pool web: remove",
                "health check web/127.0.0.1:8081: stop",
                "health check web/127.0.0.1:8082: stop",
                "vrrp vi1: stop (hand over)",
            ]
        );
        // And back: everything is added, listeners first.
        let back = diff(&empty, &parse(BASE));
        assert!(matches!(back[0], Change::ListenerAdd { .. }));
        assert!(back.contains(&Change::VrrpStart { name: s("vi1") }));
    }

    #[test]
    fn fates() {
        let cfg = parse(BASE);
        let l = &cfg.listeners[0];
        assert_eq!(listener_fate(l, l), Fate::Keep);
        let mut m = l.clone();
        m.max_connections += 1;
        assert_eq!(listener_fate(l, &m), Fate::Swap);
        m.backlog += 1;
        assert_eq!(listener_fate(l, &m), Fate::Rebind(Rebind::Backlog));
        m.http = None;
        assert_eq!(listener_fate(l, &m), Fate::Rebind(Rebind::Engine));
    }
}
