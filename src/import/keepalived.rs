//! keepalived.conf: lexer, block parser and the mapping onto tandem's
//! `[[vrrp]]`, `[[pool]]` and `[[listener]]` tables.
//!
//! Grammar (keepalived.conf(5)): words separated by blanks; `#` or `!`
//! outside double quotes starts a comment; `"..."` is one word; `{` and `}`
//! open and close blocks (also when glued to a word); a trailing `\`
//! continues the line; `include GLOB` splices files in, relative paths
//! relative to the including file.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use super::emit::{Table, V};
use super::report::{Kind, Loc, Report};
use super::syntax::{err, glob, ImportError};
use super::{sanitize_name, Names};

#[derive(Debug, Clone, PartialEq)]
struct Tok {
    text: String,
    quoted: bool,
    file: usize,
    line: usize,
}

impl Tok {
    fn is(&self, s: &str) -> bool {
        !self.quoted && self.text == s
    }
}

/// One statement: `key args... [{ children }]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub key: String,
    pub args: Vec<String>,
    pub children: Option<Vec<Node>>,
    pub loc: Loc,
}

impl Node {
    fn kids(&self) -> &[Node] {
        self.children.as_deref().unwrap_or(&[])
    }
    /// Every word of a list block (`unicast_peer { a b }`), one statement a
    /// line or several on one line.
    fn words(&self) -> Vec<(String, Loc)> {
        let mut out = Vec::new();
        for k in self.kids() {
            out.push((k.key.clone(), k.loc.clone()));
            for a in &k.args {
                out.push((a.clone(), k.loc.clone()));
            }
        }
        out
    }
}

/// Splits one line into words. Returns the words and whether the line ends
/// with a continuation backslash.
fn lex_line(
    line: &str,
    file: usize,
    name: &str,
    no: usize,
    out: &mut Vec<Tok>,
) -> Result<bool, ImportError> {
    let mut chars = line.chars().peekable();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quoted = false;
    let flush = |cur: &mut String, in_word: &mut bool, quoted: &mut bool, out: &mut Vec<Tok>| {
        if *in_word {
            out.push(Tok {
                text: std::mem::take(cur),
                quoted: *quoted,
                file,
                line: no,
            });
        }
        *in_word = false;
        *quoted = false;
    };
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                let mut s = String::new();
                let mut closed = false;
                for q in chars.by_ref() {
                    if q == '"' {
                        closed = true;
                        break;
                    }
                    s.push(q);
                }
                if !closed {
                    return Err(err(name, no, "unterminated quoted string"));
                }
                cur.push_str(&s);
                in_word = true;
                quoted = true;
            }
            '#' | '!' => break,
            '{' | '}' => {
                flush(&mut cur, &mut in_word, &mut quoted, out);
                out.push(Tok {
                    text: c.to_string(),
                    quoted: false,
                    file,
                    line: no,
                });
            }
            '\\' if chars.peek().is_none() => {
                flush(&mut cur, &mut in_word, &mut quoted, out);
                return Ok(true);
            }
            c if c.is_whitespace() => flush(&mut cur, &mut in_word, &mut quoted, out),
            c => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    flush(&mut cur, &mut in_word, &mut quoted, out);
    Ok(false)
}

struct Lexer {
    files: Vec<String>,
    toks: Vec<Tok>,
}

impl Lexer {
    fn file(
        &mut self,
        path: &Path,
        depth: usize,
        from: Option<(usize, usize)>,
    ) -> Result<(), ImportError> {
        let name = path.display().to_string();
        if depth > 8 {
            let (f, l) = from.unwrap_or((0, 0));
            return Err(err(
                &self.files[f],
                l,
                format!("include nesting deeper than 8 at {name} (a loop?)"),
            ));
        }
        let text = std::fs::read_to_string(path).map_err(|e| match from {
            Some((f, l)) => err(
                &self.files[f],
                l,
                format!("cannot read included file {name}: {e}"),
            ),
            None => err(&name, 0, format!("cannot read: {e}")),
        })?;
        let id = self.files.len();
        self.files.push(name.clone());
        let mut cont: Option<usize> = None;
        let mut start = self.toks.len();
        for (i, line) in text.lines().enumerate() {
            if cont.is_none() {
                start = self.toks.len();
            }
            let no = cont.unwrap_or(i + 1);
            let continues = lex_line(line, id, &name, no, &mut self.toks)?;
            cont = continues.then_some(no);
            // `include` is a line of its own wherever it appears.
            if cont.is_none() && self.toks.len() > start && self.toks[start].is("include") {
                let args: Vec<Tok> = self.toks.drain(start..).collect();
                if args.len() != 2 {
                    return Err(err(&name, no, "include takes one path or glob"));
                }
                let pat = Path::new(&args[1].text);
                let pat = if pat.is_absolute() {
                    pat.to_path_buf()
                } else {
                    path.parent().unwrap_or(Path::new("")).join(pat)
                };
                for p in glob(&pat) {
                    self.file(&p, depth + 1, Some((id, no)))?;
                }
            }
        }
        Ok(())
    }
}

fn parse_block(
    toks: &[Tok],
    pos: &mut usize,
    files: &[String],
    open: Option<&Tok>,
) -> Result<Vec<Node>, ImportError> {
    let mut out = Vec::new();
    loop {
        let Some(t) = toks.get(*pos) else {
            if let Some(o) = open {
                return Err(err(
                    &files[o.file],
                    o.line,
                    "block opened here is never closed (missing `}`)",
                ));
            }
            return Ok(out);
        };
        *pos += 1;
        if t.is("}") {
            if open.is_none() {
                return Err(err(&files[t.file], t.line, "`}` without a matching `{`"));
            }
            return Ok(out);
        }
        if t.is("{") {
            return Err(err(
                &files[t.file],
                t.line,
                "`{` without a keyword before it",
            ));
        }
        let mut args = Vec::new();
        while let Some(a) = toks.get(*pos) {
            if a.file != t.file || a.line != t.line || a.is("{") || a.is("}") {
                break;
            }
            args.push(a.text.clone());
            *pos += 1;
        }
        let children = match toks.get(*pos) {
            Some(b) if b.is("{") => {
                *pos += 1;
                Some(parse_block(toks, pos, files, Some(b))?)
            }
            _ => None,
        };
        out.push(Node {
            key: t.text.clone(),
            args,
            children,
            loc: Loc {
                file: files[t.file].clone(),
                line: t.line,
            },
        });
    }
}

/// Reads a keepalived.conf and its includes into a statement tree.
pub fn parse_file(path: &Path) -> Result<Vec<Node>, ImportError> {
    let mut lx = Lexer {
        files: Vec::new(),
        toks: Vec::new(),
    };
    lx.file(path, 0, None)?;
    let mut pos = 0;
    parse_block(&lx.toks, &mut pos, &lx.files, None)
}

/// Parses config text (no includes resolved relative to a real file).
pub fn parse_str(name: &str, text: &str) -> Result<Vec<Node>, ImportError> {
    let mut toks = Vec::new();
    let mut cont: Option<usize> = None;
    for (i, line) in text.lines().enumerate() {
        let no = cont.unwrap_or(i + 1);
        cont = lex_line(line, 0, name, no, &mut toks)?.then_some(no);
    }
    let mut pos = 0;
    parse_block(&toks, &mut pos, &[name.to_string()], None)
}

// ---------------------------------------------------------------------------
// Mapping
// ---------------------------------------------------------------------------

/// keepalived durations are seconds, possibly fractional ("0.5").
fn seconds(s: &str) -> Option<Duration> {
    let v: f64 = s.parse().ok()?;
    ((0.0..1e9).contains(&v)).then(|| Duration::from_micros((v * 1e6).round() as u64))
}

fn int(s: &str) -> Option<i64> {
    s.parse().ok()
}

struct Script {
    cmd: String,
    weight: i64,
    local_proxy: bool,
    loc: Loc,
}

/// A check that only asks "is the local HAProxy running / answering": tandem
/// is that proxy, and tracking its pools is the equivalent.
pub fn checks_local_proxy(cmd: &str) -> bool {
    let words: Vec<&str> = cmd.split_whitespace().collect();
    let Some(prog) = words.first().map(|w| w.rsplit('/').next().unwrap_or(w)) else {
        return false;
    };
    let mentions = |s: &str| {
        words
            .iter()
            .any(|w| w.rsplit('/').next() == Some(s) || *w == s)
    };
    let proc_check = matches!(
        prog,
        "killall" | "pidof" | "pgrep" | "systemctl" | "service"
    ) && (mentions("haproxy") || mentions("haproxy.service"));
    let local_probe = matches!(prog, "curl" | "wget" | "nc")
        && words.iter().any(|w| {
            w.contains("127.0.0.1") || w.contains("localhost") || w.contains("[::1]") || *w == "::1"
        });
    proc_check || local_probe
}

/// The result of mapping a keepalived config.
#[derive(Default)]
pub struct Mapped {
    pub tables: Vec<Table>,
    pub global: Vec<String>,
}

struct Ctx<'a> {
    version: Option<(u64, Loc)>,
    checksum_plain: bool,
    strict: Option<Loc>,
    scripts: HashMap<String, Script>,
    groups: HashMap<String, String>,
    proxy_pools: &'a [String],
}

fn not_imported(r: &mut Report, n: &Node, why: &str) {
    r.add(Kind::NotImported, &n.loc, stmt(n), why);
}

fn stmt(n: &Node) -> String {
    let mut s = n.key.clone();
    for a in &n.args {
        s.push(' ');
        s.push_str(a);
    }
    if n.children.is_some() {
        s.push_str(" {...}");
    }
    s
}

pub fn map(nodes: &[Node], proxy_pools: &[String], names: &mut Names, r: &mut Report) -> Mapped {
    let mut ctx = Ctx {
        version: None,
        checksum_plain: false,
        strict: None,
        scripts: HashMap::new(),
        groups: HashMap::new(),
        proxy_pools,
    };
    let mut out = Mapped::default();
    // Pass 1: definitions that instances refer to.
    for n in nodes {
        match n.key.as_str() {
            "global_defs" => global_defs(n, &mut ctx, r),
            "vrrp_script" | "vrrp_track_process" => {
                let Some(name) = n.args.first() else {
                    not_imported(r, n, "needs a name");
                    continue;
                };
                let mut cmd = String::new();
                let mut weight = 0;
                for k in n.kids() {
                    match (k.key.as_str(), k.args.first()) {
                        ("script", Some(_)) => cmd = k.args.join(" ").trim().to_string(),
                        ("process", Some(c)) => cmd = format!("pidof {c}"),
                        ("weight", Some(w)) => weight = int(w).unwrap_or(0),
                        _ => {}
                    }
                }
                let local_proxy = checks_local_proxy(&cmd);
                ctx.scripts.insert(
                    name.clone(),
                    Script {
                        cmd,
                        weight,
                        local_proxy,
                        loc: n.loc.clone(),
                    },
                );
            }
            "vrrp_sync_group" => {
                let Some(g) = n.args.first() else {
                    not_imported(r, n, "needs a name");
                    continue;
                };
                let gname = sanitize_name(g);
                for k in n.kids() {
                    match k.key.as_str() {
                        "group" => {
                            for (m, _) in k.words() {
                                ctx.groups.insert(m, gname.clone());
                            }
                        }
                        _ => not_imported(r, k, "tandem sync groups only change state together; hooks and tracking are per instance"),
                    }
                }
                r.add(
                    Kind::Imported,
                    &n.loc,
                    format!("vrrp_sync_group {g}"),
                    format!("sync_group = \"{gname}\" on its instances"),
                );
            }
            _ => {}
        }
    }
    // Pass 2: instances and virtual servers, in file order; their notes
    // go into the comments of the tables they produce.
    for n in nodes {
        r.owner = n.loc.to_string();
        match n.key.as_str() {
            "global_defs" | "vrrp_script" | "vrrp_track_process" | "vrrp_sync_group" => {}
            "vrrp_instance" => {
                if let Some(t) = instance(n, &ctx, names, r) {
                    out.tables.push(t);
                }
            }
            "virtual_server" => virtual_server(n, names, r, &mut out),
            "virtual_server_group" => not_imported(r, n, "tandem listeners bind one address:port each; write one virtual_server per address"),
            "static_ipaddress" | "static_routes" | "static_rules" => not_imported(r, n, "tandem manages only the virtual IPs of its instances; configure static addresses and routes with the system's network tools"),
            "vrrp_track_file" | "track_file" | "vrrp_track_bfd" | "bfd_instance" => not_imported(r, n, "tandem tracks pools and interfaces, not files or BFD sessions"),
            _ => not_imported(r, n, "no tandem equivalent"),
        }
    }
    r.owner.clear();
    out
}

fn global_defs(n: &Node, ctx: &mut Ctx, r: &mut Report) {
    for k in n.kids() {
        match (k.key.as_str(), k.args.first()) {
            ("vrrp_version", Some(v)) => match int(v) {
                Some(v @ (2 | 3)) => {
                    ctx.version = Some((v as u64, k.loc.clone()));
                    r.add(
                        Kind::Imported,
                        &k.loc,
                        stmt(k),
                        "version of every instance without its own",
                    );
                }
                _ => not_imported(r, k, "VRRP version must be 2 or 3"),
            },
            ("vrrp_strict", _) => {
                ctx.strict = Some(k.loc.clone());
                r.add(Kind::Approximated, &k.loc, stmt(k), "tandem has no strict mode: it accepts and sends RFC packets, does not refuse unicast or VRRPv2 settings, and installs no firewall rules for the VIPs");
            }
            ("v3_checksum_as_v2", _) => {
                ctx.checksum_plain = true;
                r.add(
                    Kind::Imported,
                    &k.loc,
                    stmt(k),
                    "checksum = \"plain\" on VRRPv3 instances",
                );
            }
            ("router_id", _) => r.add(
                Kind::NotImported,
                &k.loc,
                stmt(k),
                "tandem needs no router id (logs carry the host name)",
            ),
            (
                "notification_email"
                | "notification_email_from"
                | "smtp_server"
                | "smtp_connect_timeout",
                _,
            ) => not_imported(
                r,
                k,
                "tandem sends no e-mail; alert on its metrics or a notify program instead",
            ),
            ("enable_script_security" | "script_user", _) => not_imported(
                r,
                k,
                "tandem runs notify programs as its own user (the tandem system user)",
            ),
            _ => not_imported(r, k, "no tandem equivalent"),
        }
    }
}

#[derive(Default)]
struct Vip {
    addr: String,
}

fn vips(block: &Node, iface: Option<&str>, r: &mut Report) -> Vec<Vip> {
    const OPT_VALUE: &[&str] = &[
        "dev",
        "label",
        "brd",
        "broadcast",
        "scope",
        "preferred_lft",
        "valid_lft",
        "peer",
        "track_group",
        "metric",
    ];
    const OPT_FLAG: &[&str] = &[
        "no_track",
        "home",
        "nodad",
        "noprefixroute",
        "autojoin",
        "mngtmpaddr",
        "-",
    ];
    let mut out = Vec::new();
    for line in block.kids() {
        let mut words: Vec<&str> = vec![line.key.as_str()];
        words.extend(line.args.iter().map(String::as_str));
        let mut i = 0;
        // One VIP and its options; several VIPs may share a line.
        while i < words.len() {
            let addr = words[i];
            i += 1;
            let mut dev = None;
            let mut extras = Vec::new();
            while i < words.len() {
                let w = words[i];
                if OPT_VALUE.contains(&w) {
                    let v = words.get(i + 1).copied().unwrap_or("");
                    if w == "dev" {
                        dev = Some(v);
                    } else {
                        extras.push(format!("{w} {v}"));
                    }
                    i += 2;
                } else if OPT_FLAG.contains(&w) {
                    extras.push(w.to_string());
                    i += 1;
                } else {
                    break;
                }
            }
            let vip = match crate::config::parse_cidr(addr) {
                Ok(v) => v,
                Err(_) => {
                    r.add(
                        Kind::NotImported,
                        &line.loc,
                        format!("virtual_ipaddress {addr}"),
                        "not an address",
                    );
                    continue;
                }
            };
            if vip.addr.is_ipv6() {
                r.add(
                    Kind::NotImported,
                    &line.loc,
                    format!("virtual_ipaddress {addr}"),
                    "tandem does not support IPv6 virtual addresses yet",
                );
                continue;
            }
            if let (Some(d), Some(i)) = (dev, iface) {
                if d != i {
                    r.add(Kind::NotImported, &line.loc, format!("virtual_ipaddress {addr} dev {d}"), format!("tandem adds every VIP of an instance on its interface ({i}); make a separate instance on {d}"));
                    continue;
                }
            }
            if !extras.is_empty() {
                r.add(Kind::Approximated, &line.loc, format!("virtual_ipaddress {addr} {}", extras.join(" ")), "the address is added without these options (tandem sets the prefix and the interface only)");
            }
            out.push(Vip {
                addr: vip.to_string(),
            });
        }
    }
    out
}

fn instance(n: &Node, ctx: &Ctx, names: &mut Names, r: &mut Report) -> Option<Table> {
    let Some(raw_name) = n.args.first() else {
        not_imported(r, n, "vrrp_instance needs a name");
        return None;
    };
    let mut t = Table::new("vrrp");
    t.owner = r.owner.clone();
    let name = names.unique("vrrp", &sanitize_name(raw_name));
    t.comments
        .push(format!("from {} vrrp_instance {raw_name}", n.loc));
    let kid = |k: &str| n.kids().iter().find(|c| c.key == k);
    let iface = kid("interface").and_then(|c| c.args.first()).cloned();
    let Some(iface) = iface else {
        not_imported(r, n, "no `interface`");
        return None;
    };
    let vrid = kid("virtual_router_id")
        .and_then(|c| c.args.first())
        .and_then(|v| int(v));
    let Some(vrid) = vrid.filter(|v| (1..=255).contains(v)) else {
        not_imported(r, n, "virtual_router_id missing or not 1..=255");
        return None;
    };
    let mut priority = 100;
    let mut version = ctx.version.as_ref().map(|v| v.0).unwrap_or(2);
    let mut advert = Duration::from_secs(1);
    let mut vip_list = Vec::new();
    let mut preempt = true;
    let mut preempt_delay = Duration::ZERO;
    let mut peers: Vec<String> = Vec::new();
    let mut src: Option<String> = None;
    let mut track_ifaces: Vec<String> = Vec::new();
    let mut track: Vec<(String, Option<i64>)> = Vec::new();
    let mut notify: Option<String> = None;
    let mut checksum_plain = ctx.checksum_plain;
    let mut garp_count = None;
    let mut garp_refresh = None;
    let mut own_version = false;
    let mut priority_bonus = 0;
    for k in n.kids() {
        let a0 = k.args.first().map(String::as_str);
        match k.key.as_str() {
            "interface" | "virtual_router_id" => {}
            "state" => match a0 {
                Some("BACKUP") => {}
                Some("MASTER") => r.add(Kind::Approximated, &k.loc, stmt(k), "tandem has no initial state: every instance starts as backup and the priority election decides (keepalived's MASTER claimed the VIPs at once)"),
                _ => not_imported(r, k, "state must be MASTER or BACKUP"),
            },
            "priority" => match a0.and_then(int) {
                Some(p) if (1..=255).contains(&p) => priority = p,
                _ => not_imported(r, k, "priority must be 1..=255; tandem's default 100 applies"),
            },
            "advert_int" => match a0.and_then(seconds) {
                Some(d) if !d.is_zero() => advert = d,
                _ => not_imported(r, k, "advert_int must be a positive number of seconds"),
            },
            "virtual_ipaddress" | "virtual_ipaddress_excluded" => {
                if k.key == "virtual_ipaddress_excluded" {
                    r.add(Kind::Approximated, &k.loc, "virtual_ipaddress_excluded", "these addresses are listed in tandem's adverts too (keepalived leaves them out)");
                }
                vip_list.extend(vips(k, Some(&iface), r));
            }
            "nopreempt" => preempt = false,
            "preempt" => preempt = true,
            "preempt_delay" => match a0.and_then(seconds) {
                Some(d) => preempt_delay = d,
                None => not_imported(r, k, "preempt_delay must be seconds"),
            },
            "unicast_src_ip" => match a0.map(|a| a.parse::<IpAddr>()) {
                Some(Ok(ip)) if ip.is_ipv4() => src = Some(ip.to_string()),
                _ => not_imported(r, k, "tandem supports IPv4 unicast sources only"),
            },
            "unicast_peer" => {
                let words = k.words();
                let mut i = 0;
                while i < words.len() {
                    let (w, loc) = &words[i];
                    i += 1;
                    if matches!(w.as_str(), "min_ttl" | "max_ttl") {
                        i += 1;
                        r.add(Kind::Approximated, loc, format!("unicast_peer ... {w}"), "tandem checks TTL 255 on multicast only; unicast adverts are accepted from the listed peers whatever their TTL");
                        continue;
                    }
                    match w.parse::<IpAddr>() {
                        Ok(ip) if ip.is_ipv4() => peers.push(ip.to_string()),
                        _ => r.add(Kind::NotImported, loc, format!("unicast_peer {w}"), "tandem supports IPv4 unicast peers only"),
                    }
                }
            }
            "track_interface" => {
                for line in k.kids() {
                    track_ifaces.push(line.key.clone());
                    if line.args.iter().any(|a| a == "weight") {
                        r.add(Kind::Approximated, &line.loc, stmt(line), "tandem puts the instance in FAULT when a tracked interface is down (no weight)");
                    }
                }
            }
            "track_script" | "track_process" => {
                for line in k.kids() {
                    let sname = &line.key;
                    let over = line.args.iter().position(|a| a == "weight").and_then(|i| line.args.get(i + 1)).and_then(|w| int(w));
                    let Some(s) = ctx.scripts.get(sname) else {
                        r.add(Kind::NotImported, &line.loc, format!("{} {sname}", k.key), "no such vrrp_script / vrrp_track_process");
                        continue;
                    };
                    let w = over.unwrap_or(s.weight);
                    if !s.local_proxy {
                        r.add(Kind::NotImported, &line.loc, format!("{} {sname}", k.key), format!("`{}` ({}) is not a check of the local proxy; tandem tracks pools and interfaces, not scripts", s.cmd, s.loc));
                        continue;
                    }
                    if ctx.proxy_pools.is_empty() {
                        r.add(Kind::Imported, &line.loc, format!("{} {sname}", k.key), format!("`{}` only checks the local proxy; tandem is the proxy and its VRRP stops with it, so nothing to track", s.cmd));
                        t.comments.push(format!("{} {sname} (`{}`) checked only the local proxy: tandem is the proxy, its VRRP stops with it", k.key, s.cmd));
                        continue;
                    }
                    let weight = match w {
                        0 => None,
                        w if w < 0 => Some(w.max(-254)),
                        w => {
                            priority_bonus = priority_bonus.max(w);
                            Some(-w.min(254))
                        }
                    };
                    for p in ctx.proxy_pools {
                        if !track.iter().any(|(tp, _)| tp == p) {
                            track.push((p.clone(), weight));
                        }
                    }
                    let effect = match weight {
                        None => "FAULT".to_string(),
                        Some(x) => format!("priority {x}"),
                    };
                    t.comments.push(format!("{} {sname} (`{}`) checked only the local proxy: tandem tracks the pools it serves instead (a pool without a healthy backend: {effect})", k.key, s.cmd));
                    let kind = if w > 0 || (weight.is_some() && ctx.proxy_pools.len() > 1) { Kind::Approximated } else { Kind::Imported };
                    let detail = if w > 0 {
                        format!("tracks pools {}: priority raised by {w} and lowered by {w} while a pool has no healthy backend (keepalived added {w} while the script succeeded)", ctx.proxy_pools.join(", "))
                    } else if kind == Kind::Approximated {
                        format!("tracks pools {}: each pool without a healthy backend changes the priority by {w} (the script changed it once)", ctx.proxy_pools.join(", "))
                    } else {
                        format!("tracks pools {}", ctx.proxy_pools.join(", "))
                    };
                    r.add(kind, &line.loc, format!("{} {sname}", k.key), detail);
                }
            }
            "notify" => {
                let cmd = k.args.join(" ");
                if k.args.len() == 1 && cmd.starts_with('/') && !cmd.contains(' ') {
                    notify = Some(cmd);
                    r.add(Kind::Approximated, &k.loc, stmt(k), "tandem runs it as PROG INSTANCE STATE (keepalived: PROG INSTANCE NAME STATE PRIORITY); TANDEM_* environment variables carry the rest");
                } else {
                    not_imported(r, k, "tandem's notify is one absolute program path without arguments");
                }
            }
            "notify_master" | "notify_backup" | "notify_fault" | "notify_stop" | "notify_deleted" | "notify_master_rx_lower_pri" => {
                not_imported(r, k, "tandem runs one notify program with the new state as its second argument: write a wrapper that dispatches on it and set notify = \"/path/to/wrapper\"")
            }
            "version" => match a0.and_then(int) {
                Some(v @ (2 | 3)) => {
                    version = v as u64;
                    own_version = true;
                }
                _ => not_imported(r, k, "VRRP version must be 2 or 3"),
            },
            "v3_checksum_as_v2" => checksum_plain = true,
            "authentication" => not_imported(r, k, "tandem does not implement VRRPv2 authentication (RFC 3768 removed it; it protects nothing on the wire); keepalived peers must drop it too"),
            "garp_master_repeat" => garp_count = a0.and_then(int).filter(|v| (1..=100).contains(v)),
            "garp_master_refresh" => garp_refresh = a0.and_then(seconds),
            "mcast_src_ip" => not_imported(r, k, "tandem sends multicast adverts from the interface's primary address"),
            "dont_track_primary" | "smtp_alert" | "debug" | "garp_master_delay" | "garp_lower_prio_repeat" | "garp_lower_prio_delay" | "accept" | "no_accept" | "native_ipv6" | "lvs_sync_daemon_interface" | "strict_mode" | "use_vmac" | "vmac_xmit_base" | "virtual_routes" | "virtual_rules" | "track_file" | "track_bfd" => {
                not_imported(r, k, "no tandem equivalent")
            }
            _ => not_imported(r, k, "unknown vrrp_instance keyword"),
        }
    }
    if vip_list.is_empty() {
        not_imported(r, n, "no IPv4 virtual address could be imported");
        return None;
    }
    // Version-specific interval limits (v2: whole seconds; v3: centiseconds).
    let adv = if version == 2 {
        let secs = advert.as_secs_f64().ceil().clamp(1.0, 255.0) as u64;
        Duration::from_secs(secs)
    } else {
        let cs = (advert.as_millis() as f64 / 10.0)
            .round()
            .clamp(1.0, 4095.0) as u64;
        Duration::from_millis(cs * 10)
    };
    if adv != advert {
        r.add(
            Kind::Approximated,
            &n.loc,
            format!("vrrp_instance {raw_name} advert_int"),
            format!(
                "VRRPv{version} cannot send {}; using {}",
                super::emit::duration(advert),
                super::emit::duration(adv)
            ),
        );
    }
    if priority_bonus > 0 {
        priority = (priority + priority_bonus).min(254);
    }
    t.set("name", V::s(name.clone()));
    t.set("interface", V::s(iface.clone()));
    t.set("vrid", V::I(vrid));
    t.set("priority", V::I(priority));
    t.set("advert_interval", V::dur(adv));
    t.set("virtual_ips", V::strs(vip_list.into_iter().map(|v| v.addr)));
    if !preempt {
        t.set("preempt", V::B(false));
    } else if preempt_delay.is_zero() {
        t.comments.push("preempt_delay = \"0\" keeps keepalived's behaviour (preempt at once); tandem's default, 30s, stops a crash-looping node from taking the VIP back again and again".into());
        t.set("preempt_delay", V::s("0"));
    } else {
        t.set("preempt_delay", V::dur(preempt_delay));
    }
    if !preempt && !preempt_delay.is_zero() {
        r.add(
            Kind::NotImported,
            &n.loc,
            format!("vrrp_instance {raw_name} preempt_delay"),
            "meaningless with nopreempt",
        );
    }
    t.set("version", V::I(version as i64));
    if !own_version && ctx.version.is_none() {
        t.comments
            .push("version = 2: keepalived's default when vrrp_version is not set".into());
    }
    if version == 3 && checksum_plain {
        t.set("checksum", V::s("plain"));
    }
    if !peers.is_empty() {
        t.set("unicast_peers", V::strs(peers));
        if let Some(s) = src {
            t.set("unicast_source", V::s(s));
        }
    } else if src.is_some() {
        r.add(
            Kind::NotImported,
            &n.loc,
            format!("vrrp_instance {raw_name} unicast_src_ip"),
            "without unicast_peer the instance uses multicast",
        );
    }
    if !track.is_empty() {
        t.set(
            "track",
            V::A(
                track
                    .into_iter()
                    .map(|(p, w)| {
                        let mut kv = vec![("pool".to_string(), V::s(p))];
                        if let Some(w) = w {
                            kv.push(("weight".into(), V::I(w)));
                        }
                        V::T(kv)
                    })
                    .collect(),
            ),
        );
    }
    if !track_ifaces.is_empty() {
        t.set("track_interfaces", V::strs(track_ifaces));
    }
    if let Some(nf) = notify {
        t.set("notify", V::s(nf));
    }
    if let Some(g) = ctx.groups.get(raw_name) {
        t.set("sync_group", V::s(g.clone()));
    }
    if let Some(c) = garp_count {
        t.set("garp_count", V::I(c));
    }
    if let Some(d) = garp_refresh {
        t.set("garp_refresh", V::dur(d));
    }
    r.add(
        Kind::Imported,
        &n.loc,
        format!("vrrp_instance {raw_name}"),
        format!("[[vrrp]] {name:?} (VRID {vrid} on {iface}, priority {priority})"),
    );
    Some(t)
}

/// IPVS `virtual_server IP PORT { ... real_server IP PORT { CHECK {...} } }`
/// becomes an L4 listener and its pool. tandem proxies the connections
/// (like lb_kind NAT with a full proxy) rather than routing packets.
fn virtual_server(n: &Node, names: &mut Names, r: &mut Report, out: &mut Mapped) {
    let (ip, port) = match (n.args.first(), n.args.get(1)) {
        (Some(a), _) if a == "fwmark" || a == "group" => {
            not_imported(r, n, "tandem listeners bind one address:port; fwmark and group services have no equivalent");
            return;
        }
        (Some(ip), Some(port)) => (ip.clone(), port.clone()),
        _ => {
            not_imported(r, n, "expected virtual_server IP PORT");
            return;
        }
    };
    let Ok(ipa) = ip.parse::<IpAddr>() else {
        not_imported(r, n, "not an IP address");
        return;
    };
    let Some(portn) = port.parse::<u16>().ok().filter(|p| *p != 0) else {
        not_imported(r, n, "port 0 (all ports) has no tandem equivalent");
        return;
    };
    let bind = std::net::SocketAddr::new(ipa, portn).to_string();
    let base = sanitize_name(&format!("vs-{ip}-{port}"));
    let pool_name = names.unique("pool", &base);
    let listener_name = names.unique("listener", &base);
    let mut pool = Table::new("pool");
    pool.comments
        .push(format!("from {} virtual_server {ip} {port}", n.loc));
    pool.owner = r.owner.clone();
    let mut listener = Table::new("listener");
    listener.owner = r.owner.clone();
    listener
        .comments
        .push(format!("from {} virtual_server {ip} {port}", n.loc));
    let mut algorithm = "round_robin";
    let mut protocol = "tcp";
    let mut delay_loop = Duration::from_secs(60);
    let mut backends = Vec::new();
    let mut health: Option<(Vec<(String, V)>, Loc)> = None;
    let mut timeout = Duration::from_secs(5);
    let mut fall: Option<i64> = None;
    for k in n.kids() {
        let a0 = k.args.first().map(String::as_str);
        match k.key.as_str() {
            "delay_loop" => match a0.and_then(seconds) {
                Some(d) if d >= Duration::from_millis(10) => delay_loop = d,
                _ => not_imported(r, k, "delay_loop must be seconds"),
            },
            "lb_algo" | "lvs_sched" => {
                let (alg, approx) = match a0.unwrap_or("") {
                    "rr" => ("round_robin", None),
                    "wrr" => ("weighted_round_robin", None),
                    "lc" => ("least_connections", None),
                    "wlc" => ("least_connections", Some("weights no longer scale the connection counts")),
                    "sh" => ("source_hash", None),
                    "mh" => ("source_hash", Some("tandem's source hash is not Maglev: a different share of clients moves when backends change")),
                    "sed" | "nq" => ("least_connections", Some("plain least connections instead of the shortest expected delay")),
                    "dh" | "lblc" | "lblcr" => ("round_robin", Some("destination-based scheduling has no meaning for a proxy listening on one address")),
                    _ => ("round_robin", Some("unknown scheduler")),
                };
                algorithm = alg;
                match approx {
                    None => r.add(Kind::Imported, &k.loc, stmt(k), format!("algorithm = \"{alg}\"")),
                    Some(why) => r.add(Kind::Approximated, &k.loc, stmt(k), format!("algorithm = \"{alg}\": {why}")),
                }
            }
            "lb_kind" | "lvs_method" => match a0 {
                Some("NAT") => r.add(Kind::Approximated, &k.loc, stmt(k), "tandem proxies connections: backends see connections from the balancer's address, not the client's (use send_proxy if they speak PROXY protocol)"),
                _ => r.add(Kind::Approximated, &k.loc, stmt(k), "tandem proxies connections instead of direct routing/tunnelling: replies flow back through tandem, backends see the balancer's address and need no VIP on loopback"),
            },
            "persistence_timeout" => {
                algorithm = "source_hash";
                r.add(Kind::Approximated, &k.loc, stmt(k), "algorithm = \"source_hash\": a client keeps its backend while the pool does not change, with no timeout (IPVS forgot it after the timeout)");
            }
            "protocol" => match a0 {
                Some("TCP") => {}
                Some("UDP") => protocol = "udp",
                _ => not_imported(r, k, "tandem listeners are TCP or UDP"),
            },
            "real_server" => {
                if let Some((b, h)) = real_server(k, r) {
                    backends.push(b);
                    if let Some((h, to, f)) = h {
                        match &health {
                            None => {
                                health = Some((h, k.loc.clone()));
                                if let Some(to) = to {
                                    timeout = to;
                                }
                                fall = f;
                            }
                            Some((prev, at)) if *prev != h => r.add(Kind::Approximated, &k.loc, format!("real_server {} check", k.args.join(" ")), format!("tandem checks a pool's backends alike: using the check of {at}")),
                            _ => {}
                        }
                    }
                }
            }
            "sorry_server" => match (k.args.first(), k.args.get(1)) {
                (Some(ip), Some(port)) => match format!("{ip}:{port}").parse::<std::net::SocketAddr>() {
                    Ok(a) => {
                        backends.push(V::T(vec![("name".into(), V::s("sorry")), ("address".into(), V::s(a.to_string())), ("backup".into(), V::B(true))]));
                        r.add(Kind::Imported, &k.loc, stmt(k), "a backup backend: serves only while no real server is healthy");
                    }
                    Err(_) => not_imported(r, k, "not IP PORT"),
                },
                _ => not_imported(r, k, "expected sorry_server IP PORT"),
            },
            "quorum" | "hysteresis" | "quorum_up" | "quorum_down" | "ha_suspend" | "alpha" | "omega" | "inhibit_on_failure" | "virtualhost" | "ops" | "one_packet_scheduler" | "persistence_granularity" | "retry" | "delay_before_retry" | "warmup" => {
                not_imported(r, k, "no tandem equivalent")
            }
            _ => not_imported(r, k, "unknown virtual_server keyword"),
        }
    }
    if backends.is_empty() {
        not_imported(r, n, "no real_server could be imported");
        return;
    }
    pool.set("name", V::s(pool_name.clone()));
    pool.set("algorithm", V::s(algorithm));
    let mut h = match health {
        Some((h, _)) => h,
        None => vec![("check".into(), V::s("none"))],
    };
    if protocol == "udp" && !matches!(h.first(), Some((_, V::S(s))) if s == "none") {
        r.add(
            Kind::Approximated,
            &n.loc,
            format!("virtual_server {ip} {port} checks"),
            "the UDP service's backends are probed over TCP as configured",
        );
    }
    if !matches!(h.first(), Some((_, V::S(s))) if s == "none") {
        h.push(("interval".into(), V::dur(delay_loop)));
        let to = if timeout >= delay_loop {
            delay_loop / 2
        } else {
            timeout
        };
        h.push(("timeout".into(), V::dur(to)));
        h.push(("rise".into(), V::I(1)));
        if let Some(f) = fall {
            h.push(("fall".into(), V::I(f.clamp(1, 100))));
        }
    }
    pool.set("health", V::T(h));
    pool.set("backends", V::A(backends));
    listener.set("name", V::s(listener_name.clone()));
    listener.set("bind", V::s(bind.clone()));
    listener.set("protocol", V::s(protocol));
    listener.set("pool", V::s(pool_name.clone()));
    r.add(
        Kind::Imported,
        &n.loc,
        format!("virtual_server {ip} {port}"),
        format!("listener {listener_name:?} ({protocol} {bind}) and pool {pool_name:?}"),
    );
    out.tables.push(pool);
    out.tables.push(listener);
}

type Health = (Vec<(String, V)>, Option<Duration>, Option<i64>);

fn real_server(n: &Node, r: &mut Report) -> Option<(V, Option<Health>)> {
    let addr = match (n.args.first(), n.args.get(1)) {
        (Some(ip), Some(port)) => match (ip.parse::<IpAddr>(), port.parse::<u16>()) {
            (Ok(ip), Ok(port)) if port != 0 => std::net::SocketAddr::new(ip, port),
            _ => {
                not_imported(r, n, "expected real_server IP PORT");
                return None;
            }
        },
        _ => {
            not_imported(r, n, "expected real_server IP PORT (tandem needs the port)");
            return None;
        }
    };
    let mut b = vec![("address".to_string(), V::s(addr.to_string()))];
    let mut health = None;
    for k in n.kids() {
        let a0 = k.args.first().map(String::as_str);
        match k.key.as_str() {
            "weight" => match a0.and_then(int) {
                Some(w) if (1..=256).contains(&w) => {
                    if w != 1 {
                        b.push(("weight".into(), V::I(w)));
                    }
                }
                Some(0) => r.add(Kind::Approximated, &k.loc, stmt(k), "weight 0 (quiesced) becomes weight 1: drain it at runtime with `tandem backend drain POOL/BACKEND`"),
                _ => not_imported(r, k, "weight must be 1..=256"),
            },
            "TCP_CHECK" | "HTTP_GET" | "SSL_GET" | "MISC_CHECK" | "SMTP_CHECK" | "DNS_CHECK" | "BFD_CHECK" | "UDP_CHECK" | "PING_CHECK" | "FILE_CHECK" => {
                if health.is_none() {
                    health = Some(check(k, addr.port(), r));
                }
            }
            "inhibit_on_failure" | "notify_up" | "notify_down" | "uthreshold" | "lthreshold" | "alpha" | "delay_loop" | "smtp_alert" | "virtualhost" => not_imported(r, k, "no tandem equivalent"),
            _ => not_imported(r, k, "unknown real_server keyword"),
        }
    }
    Some((V::T(b), health))
}

fn check(k: &Node, port: u16, r: &mut Report) -> Health {
    let mut kv: Vec<(String, V)> = Vec::new();
    let mut timeout = None;
    let mut fall = None;
    let mut cport = None;
    let mut path = None;
    let mut statuses: Vec<i64> = Vec::new();
    for c in k.kids() {
        let a0 = c.args.first().map(String::as_str);
        match c.key.as_str() {
            "connect_timeout" => timeout = a0.and_then(seconds),
            "connect_port" => cport = a0.and_then(|p| p.parse::<u16>().ok()),
            "retry" | "nb_get_retry" => fall = a0.and_then(int).map(|v| v.max(1)),
            "delay_before_retry" | "connect_ip" | "bindto" | "bind_port" | "warmup" => {
                if c.key != "delay_before_retry" {
                    not_imported(r, c, "tandem probes the backend's own address")
                }
            }
            "url" => {
                if path.is_some() {
                    r.add(
                        Kind::Approximated,
                        &c.loc,
                        "url {...}",
                        "tandem probes one path per pool: only the first url is checked",
                    );
                    continue;
                }
                for u in c.kids() {
                    match (u.key.as_str(), u.args.first()) {
                        ("path", Some(p)) => path = Some(p.clone()),
                        ("status_code", Some(s)) => {
                            for part in s.split(',') {
                                match part.split_once('-') {
                                    Some((a, b)) => {
                                        if let (Some(a), Some(b)) = (int(a), int(b)) {
                                            statuses.extend(a..=b.min(a + 100));
                                        }
                                    }
                                    None => statuses.extend(int(part)),
                                }
                            }
                        }
                        ("digest", _) => not_imported(
                            r,
                            u,
                            "tandem cannot compare an MD5 digest of the body; use expect_body",
                        ),
                        _ => not_imported(r, u, "no tandem equivalent"),
                    }
                }
            }
            _ => not_imported(r, c, "no tandem equivalent"),
        }
    }
    match k.key.as_str() {
        "TCP_CHECK" => kv.push(("check".into(), V::s("tcp"))),
        "HTTP_GET" => {
            kv.push(("check".into(), V::s("http")));
            kv.push(("path".into(), V::s(path.unwrap_or_else(|| "/".into()))));
            if statuses.is_empty() {
                // keepalived accepts any 2xx when no status_code is set.
                statuses = vec![200, 201, 202, 203, 204, 205, 206];
            }
            kv.push((
                "expect_status".into(),
                V::A(statuses.into_iter().map(V::I).collect()),
            ));
        }
        other => {
            kv.push(("check".into(), V::s("tcp")));
            let why = if other == "SSL_GET" {
                "tandem's HTTP probe does not speak TLS: a TCP connect check instead"
            } else {
                "a TCP connect check instead"
            };
            r.add(Kind::Approximated, &k.loc, other, why);
        }
    }
    if let Some(p) = cport.filter(|p| *p != port) {
        kv.push(("port".into(), V::I(p as i64)));
    }
    (kv, timeout, fall)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(nodes: &[Node]) -> Vec<String> {
        nodes
            .iter()
            .map(|n| format!("{}@{}", stmt(n), n.loc.line))
            .collect()
    }

    #[test]
    fn grammar_edge_cases() {
        let cases: &[(&str, &[&str])] = &[
            ("a b c\n", &["a b c@1"]),
            ("# c\n! c\na 1 # tail\nb 2 ! tail\n", &["a 1@3", "b 2@4"]),
            ("x \"one # two\" y\n", &["x one # two y@1"]),
            ("blk {\n k v\n}\n", &["blk {...}@1"]),
            ("blk{k v}\n", &["blk {...}@1"]),
            ("blk\n{\n k v\n}\n", &["blk {...}@1"]),
            ("a 1 \\\n  2 3\nb\n", &["a 1 2 3@1", "b@3"]),
            ("\n\n   \t\nz\n", &["z@4"]),
        ];
        for (src, want) in cases {
            let got = parse_str("k.conf", src).unwrap_or_else(|e| panic!("{src:?}: {e}"));
            assert_eq!(keys(&got), *want, "{src:?}");
        }
        let inline = parse_str("k", "unicast_peer { 10.0.0.2 10.0.0.3 }\n").unwrap();
        let words: Vec<String> = inline[0].words().into_iter().map(|w| w.0).collect();
        assert_eq!(words, ["10.0.0.2", "10.0.0.3"]);
        let nested = parse_str("k", "a {\n b {\n  c 1\n }\n d\n}\n").unwrap();
        assert_eq!(nested[0].kids()[0].kids()[0].args, ["1"]);
        assert_eq!(nested[0].kids()[1].loc.line, 5);
    }

    #[test]
    fn grammar_errors_name_file_and_line() {
        for (src, want) in [
            (
                "a {\n b\n",
                "k.conf:1: block opened here is never closed (missing `}`)",
            ),
            ("a\n}\n", "k.conf:2: `}` without a matching `{`"),
            ("a \"open\n", "k.conf:1: unterminated quoted string"),
            ("{\n", "k.conf:1: `{` without a keyword before it"),
        ] {
            let e = parse_str("k.conf", src).unwrap_err();
            assert_eq!(e.to_string(), want, "{src:?}");
        }
    }

    #[test]
    fn includes_are_relative_to_the_including_file_and_globbed() {
        let d = std::env::temp_dir().join(format!("tandem-ka-inc-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("conf.d")).unwrap();
        std::fs::write(
            d.join("keepalived.conf"),
            "global_defs {\n}\ninclude conf.d/*.conf\nlast\n",
        )
        .unwrap();
        std::fs::write(d.join("conf.d/b.conf"), "from_b\n").unwrap();
        std::fs::write(
            d.join("conf.d/a.conf"),
            "\nfrom_a {\n include ../inner.inc\n}\n",
        )
        .unwrap();
        std::fs::write(d.join("inner.inc"), "inner 1\n").unwrap();
        let nodes = parse_file(&d.join("keepalived.conf")).unwrap();
        let got: Vec<(String, String)> = nodes
            .iter()
            .map(|n| {
                (
                    n.key.clone(),
                    n.loc.to_string().replace(&d.display().to_string(), "D"),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("global_defs".to_string(), "D/keepalived.conf:1".to_string()),
                ("from_a".into(), "D/conf.d/a.conf:2".into()),
                ("from_b".into(), "D/conf.d/b.conf:1".into()),
                ("last".into(), "D/keepalived.conf:4".into()),
            ]
        );
        assert_eq!(nodes[1].kids()[0].key, "inner");
        std::fs::write(d.join("conf.d/c.conf"), "include ../missing.conf\n").unwrap();
        let e = parse_file(&d.join("keepalived.conf")).unwrap_err();
        assert!(
            e.to_string()
                .contains("c.conf:1: cannot read included file"),
            "{e}"
        );
        std::fs::write(d.join("conf.d/c.conf"), "include ../keepalived.conf\n").unwrap();
        let e = parse_file(&d.join("keepalived.conf")).unwrap_err();
        assert!(
            e.to_string().contains("include nesting deeper than 8"),
            "{e}"
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn local_proxy_checks() {
        for (cmd, ok) in [
            ("killall -0 haproxy", true),
            ("/usr/bin/killall -0 haproxy", true),
            ("pidof haproxy", true),
            ("pgrep -x haproxy", true),
            ("systemctl is-active --quiet haproxy", true),
            ("curl -sf http://127.0.0.1:8404/healthz", true),
            ("nc -z localhost 443", true),
            ("curl -sf http://10.0.0.5/", false),
            ("/etc/keepalived/check_haproxy.sh", false),
            ("killall -0 nginx", false),
            ("ping -c1 10.0.0.1", false),
            ("", false),
        ] {
            assert_eq!(checks_local_proxy(cmd), ok, "{cmd}");
        }
    }

    fn map_str(src: &str, pools: &[String]) -> (Vec<Table>, Report) {
        let nodes = parse_str("k.conf", src).unwrap();
        let mut r = Report::default();
        let mut names = Names::default();
        let m = map(&nodes, pools, &mut names, &mut r);
        (m.tables, r)
    }

    #[test]
    fn instance_defaults_follow_keepalived() {
        let (t, r) = map_str(
            "vrrp_instance VI_1 {\n interface eth0\n virtual_router_id 7\n virtual_ipaddress {\n  10.0.0.10\n }\n}\n",
            &[],
        );
        assert_eq!(t.len(), 1, "{}", r.render());
        assert_eq!(t[0].get("version"), Some(&V::I(2)));
        assert_eq!(t[0].get("priority"), Some(&V::I(100)));
        assert_eq!(t[0].get("preempt_delay"), Some(&V::s("0")));
        assert_eq!(t[0].get("virtual_ips"), Some(&V::strs(["10.0.0.10/32"])));
    }

    #[test]
    fn vip_options_and_foreign_devices() {
        let (t, r) = map_str(
            "vrrp_instance A {\n interface eth1\n virtual_router_id 1\n version 3\n advert_int 0.5\n virtual_ipaddress {\n  10.0.0.1/24 dev eth1 label eth1:vip\n  10.0.0.2/24 dev eth2\n  2001:db8::1/64\n  10.0.0.3 10.0.0.4/28\n }\n}\n",
            &[],
        );
        assert_eq!(
            t[0].get("virtual_ips"),
            Some(&V::strs(["10.0.0.1/24", "10.0.0.3/32", "10.0.0.4/28"]))
        );
        assert_eq!(t[0].get("advert_interval"), Some(&V::s("500ms")));
        let text = r.render();
        assert!(
            text.contains("k.conf:8 virtual_ipaddress 10.0.0.2/24 dev eth2: tandem adds every VIP"),
            "{text}"
        );
        assert!(
            text.contains(
                "k.conf:9 virtual_ipaddress 2001:db8::1/64: tandem does not support IPv6"
            ),
            "{text}"
        );
        assert!(text.contains("k.conf:7 virtual_ipaddress 10.0.0.1/24 label eth1:vip: the address is added without"), "{text}");
    }

    #[test]
    fn v2_intervals_round_up_to_seconds() {
        let (t, r) = map_str(
            "vrrp_instance A {\n interface eth1\n virtual_router_id 1\n advert_int 0.3\n virtual_ipaddress {\n 10.0.0.1\n }\n}\n",
            &[],
        );
        assert_eq!(t[0].get("advert_interval"), Some(&V::s("1s")));
        assert!(r.render().contains("VRRPv2 cannot send 300ms; using 1s"));
    }

    #[test]
    fn scripts_become_pool_tracking_only_for_local_proxy_checks() {
        let src = "vrrp_script chk_haproxy {\n script \"killall -0 haproxy\"\n weight -30\n}\nvrrp_script chk_db {\n script \"/usr/local/bin/db-ok\"\n}\nvrrp_instance A {\n interface eth1\n virtual_router_id 1\n virtual_ipaddress {\n 10.0.0.1\n }\n track_script {\n  chk_haproxy\n  chk_db\n  nope\n }\n}\n";
        let (t, r) = map_str(src, &["web".to_string()]);
        assert_eq!(
            t[0].get("track"),
            Some(&V::A(vec![V::T(vec![
                ("pool".into(), V::s("web")),
                ("weight".into(), V::I(-30))
            ])]))
        );
        assert!(t[0]
            .comments
            .iter()
            .any(|c| c.contains("checked only the local proxy")));
        let text = r.render();
        assert!(text.contains("k.conf:16 track_script chk_db: `/usr/local/bin/db-ok` (k.conf:5) is not a check of the local proxy"), "{text}");
        assert!(
            text.contains("k.conf:17 track_script nope: no such vrrp_script"),
            "{text}"
        );
        // A positive weight: raised priority, negative track weight.
        let src = src.replace("weight -30", "weight 20");
        let (t, _) = map_str(&src, &["web".to_string()]);
        assert_eq!(t[0].get("priority"), Some(&V::I(120)));
        assert_eq!(
            t[0].get("track"),
            Some(&V::A(vec![V::T(vec![
                ("pool".into(), V::s("web")),
                ("weight".into(), V::I(-20))
            ])]))
        );
    }

    #[test]
    fn instance_without_vip_or_vrid_is_not_imported() {
        let (t, r) = map_str(
            "vrrp_instance A {\n interface eth1\n virtual_router_id 300\n}\n",
            &[],
        );
        assert!(t.is_empty());
        assert!(r
            .render()
            .contains("k.conf:1 vrrp_instance A {...}: virtual_router_id missing or not 1..=255"));
    }
}
