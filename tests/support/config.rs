//! tandem TOML configs for the tests: the `[global]` header every test
//! daemon gets, and a builder for the body ([`Config`] of [`Pool`]s,
//! [`Listener`]s, [`Vrrp`] instances and raw TOML), rendered in the same
//! shape the tests used to write by hand.
//!
//! ```ignore
//! let body = Config::new()
//!     .pool(Pool::new("web").health(r#"{ check = "tcp" }"#).backend("web1", "10.78.0.21:8080"))
//!     .listener(Listener::new("web", "10.78.0.100:80", "web"))
//!     .vrrp(Vrrp::new("vip1", 52, 150).vip("10.78.0.100/24"))
//!     .render();
//! ```

use std::fmt::Write as _;
use std::path::Path;

use super::Backend;

/// The `[global]` defaults of a loopback [`Daemon`](super::Daemon).
pub const DAEMON_GLOBAL: [&str; 3] = [
    "workers = 2",
    "shutdown_timeout = \"5s\"",
    "log_level = \"debug\"",
];

/// The `[global]` defaults of a tandem in the lab.
pub const LAB_GLOBAL: [&str; 3] = [
    "workers = 1",
    "shutdown_timeout = \"3s\"",
    "log_level = \"debug\"",
];

/// A whole config file: `[global]` with the admin socket, each default
/// whose key `global_extra` does not set, `global_extra`, then `body`.
pub fn file(socket: &Path, defaults: &[&str], global_extra: &str, body: &str) -> String {
    let defaults: String = defaults
        .iter()
        .filter(|d| {
            let key = d.split(' ').next().unwrap_or("");
            !global_extra
                .lines()
                .any(|l| l.trim_start().starts_with(key))
        })
        .map(|d| format!("{d}\n"))
        .collect();
    format!(
        "[global]\nadmin_socket = \"{}\"\n{defaults}{global_extra}\n\n{body}",
        socket.display()
    )
}

/// [`file`] with [`DAEMON_GLOBAL`].
pub fn daemon_file(socket: &Path, global_extra: &str, body: &str) -> String {
    file(socket, &DAEMON_GLOBAL, global_extra, body)
}

/// [`file`] with [`LAB_GLOBAL`].
pub fn lab_file(socket: &Path, body: &str) -> String {
    file(socket, &LAB_GLOBAL, "", body)
}

/// A TOML string literal.
fn quote(s: &str) -> String {
    format!("{s:?}")
}

/// A config body: sections in the order they were added.
#[derive(Clone, Default)]
#[must_use]
pub struct Config {
    out: String,
}

impl Config {
    pub fn new() -> Config {
        Config::default()
    }

    pub fn pool(self, p: Pool) -> Config {
        self.raw(&p.render())
    }

    pub fn listener(self, l: Listener) -> Config {
        self.raw(&l.render())
    }

    pub fn vrrp(self, v: Vrrp) -> Config {
        self.raw(&v.render())
    }

    /// Any other TOML (sections, comments), as is.
    pub fn raw(mut self, toml: &str) -> Config {
        self.out.push('\n');
        self.out.push_str(toml.trim_matches('\n'));
        self.out.push('\n');
        self
    }

    pub fn render(&self) -> String {
        self.out.clone()
    }
}

impl std::fmt::Display for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.out)
    }
}

/// A section alone, e.g. `pool(..).to_string() + &listener(..).to_string()`.
macro_rules! display_section {
    ($($t:ty),*) => {$(
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.render())
            }
        }
    )*};
}
display_section!(Pool, Listener, Vrrp);

/// `set` and `raw`, the same for every section.
macro_rules! section_lines {
    ($($t:ty),*) => {$(
        impl $t {
            /// Any other key; `value` is TOML.
            pub fn set(mut self, key: &str, value: &str) -> $t {
                self.lines.set(key, value);
                self
            }

            /// Raw TOML lines at the end of the section (`extra_vrrp` and
            /// the like of the tests; they may open a sub-table).
            pub fn raw(mut self, toml: &str) -> $t {
                self.lines.raw(toml);
                self
            }
        }
    )*};
}
section_lines!(Pool, Listener, Vrrp);

/// Pool `name` of `backends` with health check `health` and the raw TOML
/// `extra` after them: the shape of the loopback tests' pools.
pub fn checked_pool(name: &str, health: &str, backends: &[&Backend], extra: &str) -> Pool {
    Pool::new(name).health(health).backends(backends).raw(extra)
}

/// The usual lab node on `<net>.0/24`: pool "web" of `backends` backends
/// web1.. at `<net>.21:8080`.., listener "web" on `<net>.100:80` in front of
/// it, and VRRP instance vip1 on eth0 (VRID `vrid`, 100 ms adverts) holding
/// `<net>.100/24`. Each part can be changed before rendering.
#[must_use]
pub struct Node {
    pool: Pool,
    listener: Listener,
    vrrp: Vrrp,
}

impl Node {
    pub fn new(net: &str, backends: usize, vrid: u8, priority: u8) -> Node {
        let pool = (1..=backends).fold(Pool::new("web"), |p, i| {
            p.backend(&format!("web{i}"), &format!("{net}.2{i}:8080"))
        });
        Node {
            pool,
            listener: Listener::new("web", &format!("{net}.100:80"), "web"),
            vrrp: Vrrp::new("vip1", vrid, priority)
                .advert("100ms")
                .vip(&format!("{net}.100/24")),
        }
    }

    pub fn pool(mut self, f: impl FnOnce(Pool) -> Pool) -> Node {
        self.pool = f(self.pool);
        self
    }

    pub fn listener(mut self, f: impl FnOnce(Listener) -> Listener) -> Node {
        self.listener = f(self.listener);
        self
    }

    pub fn vrrp(mut self, f: impl FnOnce(Vrrp) -> Vrrp) -> Node {
        self.vrrp = f(self.vrrp);
        self
    }

    /// The three sections, for more to be added.
    pub fn config(self) -> Config {
        Config::new()
            .pool(self.pool)
            .listener(self.listener)
            .vrrp(self.vrrp)
    }

    pub fn render(self) -> String {
        self.config().render()
    }
}

/// The HTTP listener "web" on 127.0.0.1:`port`, `body` its further lines
/// (routes, or `pool = ".."`).
pub fn http_listener(port: u16, body: &str) -> String {
    Listener::bare("web", &format!("127.0.0.1:{port}"))
        .protocol("http")
        .raw(body)
        .to_string()
}

/// A section's further lines: `key = value` (value already TOML) after its
/// fixed keys, and raw TOML last of all (it may open a sub-table).
#[derive(Clone, Default)]
struct Lines {
    keys: String,
    tail: String,
}

impl Lines {
    fn set(&mut self, key: &str, value: &str) {
        let _ = writeln!(self.keys, "{key} = {value}");
    }
    fn raw(&mut self, toml: &str) {
        let t = toml.trim_matches('\n');
        if !t.is_empty() {
            self.tail.push_str(t);
            self.tail.push('\n');
        }
    }
}

/// `[[pool]]`.
#[derive(Clone)]
#[must_use]
pub struct Pool {
    name: String,
    backends: Vec<String>,
    lines: Lines,
}

impl Pool {
    pub fn new(name: &str) -> Pool {
        Pool {
            name: name.to_string(),
            backends: Vec::new(),
            lines: Lines::default(),
        }
    }

    pub fn algorithm(self, a: &str) -> Pool {
        self.set("algorithm", &quote(a))
    }

    /// `health = <table>`, e.g. `{ check = "tcp", interval = "200ms" }`.
    pub fn health(self, table: &str) -> Pool {
        self.set("health", table)
    }

    /// `{ name = .., address = .. }` in `backends`.
    pub fn backend(self, name: &str, address: &str) -> Pool {
        self.backend_with(name, address, "")
    }

    /// A backend with more keys of its inline table, e.g. `weight = 3`.
    pub fn backend_with(self, name: &str, address: &str, more: &str) -> Pool {
        let more = if more.is_empty() {
            String::new()
        } else {
            format!(", {more}")
        };
        self.backend_table(&format!(
            "{{ name = {}, address = {}{more} }}",
            quote(name),
            quote(address)
        ))
    }

    /// Each running backend by its name and address.
    pub fn backends(self, backends: &[&Backend]) -> Pool {
        backends
            .iter()
            .fold(self, |p, b| p.backend(&b.name, &b.addr.to_string()))
    }

    /// A backend as a whole inline table, e.g. `{ address = "10.0.0.1:80" }`.
    pub fn backend_table(mut self, table: &str) -> Pool {
        self.backends.push(table.to_string());
        self
    }

    fn render(&self) -> String {
        let mut s = format!("[[pool]]\nname = {}\n", quote(&self.name));
        s.push_str(&self.lines.keys);
        match self.backends.as_slice() {
            [] => {}
            [one] => {
                let _ = writeln!(s, "backends = [{one}]");
            }
            many => {
                s.push_str("backends = [\n");
                for b in many {
                    let _ = writeln!(s, "  {b},");
                }
                s.push_str("]\n");
            }
        }
        s.push_str(&self.lines.tail);
        s
    }
}

/// `[[listener]]`.
#[derive(Clone)]
#[must_use]
pub struct Listener {
    name: String,
    bind: String,
    lines: Lines,
}

impl Listener {
    /// A listener on `bind` in front of `pool` (TCP unless [`Listener::protocol`]).
    pub fn new(name: &str, bind: &str, pool: &str) -> Listener {
        Listener::bare(name, bind).set("pool", &quote(pool))
    }

    /// A listener on 127.0.0.1:`port` in front of `pool`.
    pub fn local(name: &str, port: u16, pool: &str) -> Listener {
        Listener::new(name, &format!("127.0.0.1:{port}"), pool)
    }

    /// A listener with no pool line (HTTP routes, or keys given by hand).
    pub fn bare(name: &str, bind: &str) -> Listener {
        Listener {
            name: name.to_string(),
            bind: bind.to_string(),
            lines: Lines::default(),
        }
    }

    pub fn protocol(self, p: &str) -> Listener {
        self.set("protocol", &quote(p))
    }

    fn render(&self) -> String {
        format!(
            "[[listener]]\nname = {}\nbind = {}\n{}{}",
            quote(&self.name),
            quote(&self.bind),
            self.lines.keys,
            self.lines.tail
        )
    }
}

/// `[[vrrp]]`, on `eth0` unless told otherwise.
#[derive(Clone)]
#[must_use]
pub struct Vrrp {
    name: String,
    interface: String,
    vrid: u8,
    priority: u8,
    advert: Option<String>,
    vips: Vec<String>,
    lines: Lines,
}

impl Vrrp {
    pub fn new(name: &str, vrid: u8, priority: u8) -> Vrrp {
        Vrrp {
            name: name.to_string(),
            interface: "eth0".into(),
            vrid,
            priority,
            advert: None,
            vips: Vec::new(),
            lines: Lines::default(),
        }
    }

    pub fn name(mut self, name: &str) -> Vrrp {
        self.name = name.to_string();
        self
    }

    pub fn interface(mut self, dev: &str) -> Vrrp {
        self.interface = dev.to_string();
        self
    }

    /// `advert_interval`.
    pub fn advert(mut self, interval: &str) -> Vrrp {
        self.advert = Some(interval.to_string());
        self
    }

    /// One more of `virtual_ips` (CIDR).
    pub fn vip(mut self, cidr: &str) -> Vrrp {
        self.vips.push(cidr.to_string());
        self
    }

    pub fn preempt_delay(self, d: &str) -> Vrrp {
        self.set("preempt_delay", &quote(d))
    }

    fn render(&self) -> String {
        let mut s = format!(
            "[[vrrp]]\nname = {}\ninterface = {}\nvrid = {}\npriority = {}\n",
            quote(&self.name),
            quote(&self.interface),
            self.vrid,
            self.priority
        );
        if let Some(a) = &self.advert {
            let _ = writeln!(s, "advert_interval = {}", quote(a));
        }
        if !self.vips.is_empty() {
            let vips: Vec<String> = self.vips.iter().map(|v| quote(v)).collect();
            let _ = writeln!(s, "virtual_ips = [{}]", vips.join(", "));
        }
        s.push_str(&self.lines.keys);
        s.push_str(&self.lines.tail);
        s
    }
}
