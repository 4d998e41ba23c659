//! The status page served at `/` on the metrics listener.
//!
//! Rendered on the server, so it is legible with JavaScript off; a few
//! lines of plain JavaScript fetch `/?fragment=1` every second and swap
//! the tables in place, so counters and states update live.

use std::fmt::Write;

use super::status::{human_bytes, Status};

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn badge(text: &str) -> String {
    let class = match text {
        "master" | "up" | "enabled" => "ok",
        "backup" | "draining" | "leaving" | "waiting" | "initialize" => "info",
        _ => "bad",
    };
    format!("<span class=\"badge {class}\">{}</span>", esc(text))
}

/// The part of the page that refreshes.
pub fn fragment(s: &Status) -> String {
    let mut o = String::new();
    let _ = write!(
        o,
        "<p class=\"meta\">tandem {} &middot; pid {} &middot; up {} s &middot; config generation {}</p>",
        esc(&s.version),
        s.pid,
        s.uptime_seconds,
        s.generation
    );
    if !s.vrrp.is_empty() {
        o.push_str("<h2>Virtual IPs (VRRP)</h2><table id=\"vrrp\"><tr><th>Instance</th><th>State</th><th>Priority</th><th>Master</th><th>Virtual IPs</th><th>Adverts sent / received</th><th>Why</th></tr>");
        for v in &s.vrrp {
            let prio = if v.priority == v.effective_priority {
                v.priority.to_string()
            } else {
                format!("{} (configured {})", v.effective_priority, v.priority)
            };
            let _ = write!(
                o,
                "<tr data-instance=\"{}\" data-family=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} / {}</td><td>{}</td></tr>",
                esc(&v.name),
                esc(&v.family),
                esc(&v.name),
                badge(&v.state),
                esc(&prio),
                esc(v.master.as_deref().unwrap_or("-")),
                esc(&v.virtual_ips.join(", ")),
                v.adverts_sent,
                v.adverts_received,
                esc(&v.reason)
            );
        }
        o.push_str("</table>");
    }
    o.push_str("<h2>Pools</h2>");
    for p in &s.pools {
        let _ = write!(
            o,
            "<h3>{} <small>{} &middot; {}/{} healthy</small></h3><table class=\"pool\" data-pool=\"{}\"><tr><th>Backend</th><th>Address</th><th>Health</th><th>State</th><th>Weight</th><th>Active</th><th>Total</th><th>Failures</th><th>Last check</th></tr>",
            esc(&p.name),
            esc(&p.algorithm),
            p.healthy,
            p.backends.len(),
            esc(&p.name)
        );
        for b in &p.backends {
            let _ = write!(
                o,
                "<tr data-backend=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&b.name),
                esc(&b.name),
                esc(&b.address),
                badge(&b.health),
                badge(&b.admin),
                b.weight,
                b.active,
                b.total,
                b.connect_failures,
                esc(&b.last_check)
            );
        }
        o.push_str("</table>");
    }
    o.push_str("<h2>Listeners</h2><table id=\"listeners\"><tr><th>Name</th><th>Bind</th><th>Active</th><th>Total</th><th>Refused</th><th>In</th><th>Out</th></tr>");
    for l in &s.listeners {
        let _ = write!(
            o,
            "<tr><td>{}</td><td>{} ({})</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&l.name),
            esc(&l.bind),
            esc(&l.protocol),
            l.active,
            l.total,
            l.rejected + l.no_backend + l.dropped,
            human_bytes(l.bytes_in, " "),
            human_bytes(l.bytes_out, " ")
        );
    }
    o.push_str("</table>");
    o
}

/// The whole page.
pub fn page(s: &Status) -> String {
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>tandem status</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 1.5rem; color: #222; }}
h1 {{ font-size: 1.4rem; margin: 0 0 .2rem; }}
h2 {{ font-size: 1.1rem; margin: 1.4rem 0 .4rem; }}
h3 {{ font-size: 1rem; margin: 1rem 0 .3rem; }} h3 small {{ color: #666; font-weight: normal; }}
table {{ border-collapse: collapse; min-width: 40rem; }}
th, td {{ text-align: left; padding: .25rem .7rem; border-bottom: 1px solid #ddd; }}
th {{ background: #f4f4f4; }}
.meta {{ color: #666; }}
.badge {{ padding: .05rem .45rem; border-radius: .6rem; font-weight: 600; text-transform: uppercase; font-size: .8rem; }}
.ok {{ background: #d8f3dc; color: #1b5e20; }} .info {{ background: #e3ecfa; color: #0d3c7a; }} .bad {{ background: #fde2e1; color: #8a1c1c; }}
#live {{ color: #666; font-size: .85rem; }}
</style></head>
<body>
<h1>tandem</h1>
<div id="live">live: refreshes every second</div>
<main id="status">{}</main>
<script>
// Plain JavaScript: re-fetch the server-rendered tables and swap them in.
async function refresh() {{
  try {{
    const r = await fetch('/?fragment=1', {{ cache: 'no-store' }});
    if (r.ok) {{
      document.getElementById('status').innerHTML = await r.text();
      document.getElementById('live').textContent = 'live: updated ' + new Date().toLocaleTimeString();
    }}
  }} catch (e) {{
    document.getElementById('live').textContent = 'live: cannot reach tandem (' + e + ')';
  }}
}}
setInterval(refresh, 1000);
</script>
</body></html>
"#,
        fragment(s)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin::status::{BackendStatus, PoolStatus, VrrpStatus};

    #[test]
    fn renders_states_and_escapes() {
        let s = Status {
            vrrp: vec![VrrpStatus {
                name: "vip<1>".into(),
                state: "master".into(),
                ..Default::default()
            }],
            pools: vec![PoolStatus {
                name: "web".into(),
                backends: vec![BackendStatus {
                    name: "w1".into(),
                    health: "down".into(),
                    admin: "enabled".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        let html = page(&s);
        assert!(html.contains("vip&lt;1&gt;"));
        assert!(html.contains("<span class=\"badge ok\">master</span>"));
        assert!(html.contains("<span class=\"badge bad\">down</span>"));
        assert!(html.contains("setInterval(refresh, 1000)"));
    }
}
