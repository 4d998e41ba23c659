//! The shipped documents against the code, without a daemon:
//! - `packaging/grafana-dashboard.json` only queries metric families that
//!   `src/admin/metrics.rs` declares, and covers every area;
//! - `packaging/openapi.yaml` documents exactly the routes `src/admin/mod.rs`
//!   serves, and its status schemas have the serde field names of
//!   `src/admin/status.rs`;
//! - both files are in the .deb.

use std::collections::{BTreeMap, BTreeSet};

use regex::Regex;

fn read(rel: &str) -> String {
    let path = format!("{}/{rel}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

/// Metric families declared in `FAMILIES` of src/admin/metrics.rs: name → type.
fn families() -> BTreeMap<String, String> {
    let src = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/admin/metrics.rs"))
        .expect("src/admin/metrics.rs");
    let start = src
        .find("const FAMILIES")
        .expect("src/admin/metrics.rs has no `const FAMILIES`: update tests/docs.rs");
    let end = start + src[start..].find("\n];").expect("end of FAMILIES");
    let re = Regex::new(r#"\(\s*"(tandem_[a-z0-9_]+)"\s*,\s*"([a-z]+)"\s*,"#).unwrap();
    let map: BTreeMap<String, String> = re
        .captures_iter(&src[start..end])
        .map(|c| (c[1].to_string(), c[2].to_string()))
        .collect();
    assert!(
        map.len() >= 10,
        "found only {} families in FAMILIES: the scan in tests/docs.rs is out of date",
        map.len()
    );
    map
}

/// Every panel (rows' nested panels included) of a dashboard.
fn all_panels<'a>(list: &'a serde_json::Value, out: &mut Vec<&'a serde_json::Value>) {
    for p in list.as_array().into_iter().flatten() {
        out.push(p);
        all_panels(&p["panels"], out);
    }
}

/// The family a metric name in an expression belongs to, and whether it
/// is a histogram series (`_bucket`, `_sum`, `_count`).
fn family_of<'a>(name: &'a str, fams: &BTreeMap<String, String>) -> Option<(&'a str, bool)> {
    if fams.contains_key(name) {
        return Some((name, false));
    }
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = name.strip_suffix(suffix) {
            if fams.get(base).map(String::as_str) == Some("histogram") {
                return Some((base, true));
            }
        }
    }
    None
}

#[test]
fn dashboard_uses_only_declared_metrics_and_covers_every_area() {
    let fams = families();
    let text = read("packaging/grafana-dashboard.json");
    let d: serde_json::Value = serde_json::from_str(&text).expect("dashboard is valid JSON");
    let metric = Regex::new(r"\btandem_[a-z0-9_]+").unwrap();
    let mut problems = Vec::new();

    // Importable: a Prometheus input, and the variables the panels use.
    assert!(
        d["__inputs"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|i| i["name"] == "DS_PROMETHEUS" && i["pluginId"] == "prometheus"),
        "no DS_PROMETHEUS input"
    );
    assert!(
        d["schemaVersion"].as_u64().unwrap_or(0) >= 36,
        "schemaVersion"
    );
    let vars: BTreeMap<&str, &serde_json::Value> = d["templating"]["list"]
        .as_array()
        .expect("templating.list")
        .iter()
        .map(|v| (v["name"].as_str().unwrap_or(""), v))
        .collect();
    let ds = vars.get("datasource").expect("a `datasource` variable");
    assert_eq!(ds["type"], "datasource");
    assert_eq!(ds["query"], "prometheus");
    for v in ["instance", "listener", "pool"] {
        assert_eq!(
            vars.get(v).map(|v| &v["type"]),
            Some(&serde_json::json!("query")),
            "variable {v}"
        );
    }

    // (where, expression) pairs: panel targets, variable queries, annotations.
    let mut exprs: Vec<(String, String, bool)> = Vec::new();
    let mut panels = Vec::new();
    all_panels(&d["panels"], &mut panels);
    let mut ids = BTreeSet::new();
    let mut areas: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for p in &panels {
        let title = p["title"].as_str().unwrap_or("?").to_string();
        if let Some(id) = p["id"].as_u64() {
            if !ids.insert(id) {
                problems.push(format!("panel {title:?}: duplicate id {id}"));
            }
        }
        if p["type"] == "row" {
            continue;
        }
        let targets = p["targets"].as_array().cloned().unwrap_or_default();
        if targets.is_empty() {
            problems.push(format!("panel {title:?} has no query"));
        }
        for t in &targets {
            let expr = t["expr"].as_str().unwrap_or("").to_string();
            if expr.is_empty() {
                problems.push(format!("panel {title:?}: a target has no expr"));
            }
            let uid = t["datasource"]["uid"]
                .as_str()
                .or(p["datasource"]["uid"].as_str());
            if uid != Some("${datasource}") {
                problems.push(format!(
                    "panel {title:?}: datasource {uid:?}, not ${{datasource}}"
                ));
            }
            for m in metric.find_iter(&expr) {
                let area = match m.as_str() {
                    n if n.starts_with("tandem_vrrp_") => "vrrp",
                    n if n.starts_with("tandem_listener_") => "listener",
                    n if n.starts_with("tandem_route_") || n.starts_with("tandem_http_") => "route",
                    n if n.starts_with("tandem_pool_") => "pool",
                    n if n.starts_with("tandem_backend_") => "backend",
                    _ => continue,
                };
                areas.entry(area).or_default().push(title.clone());
            }
            exprs.push((format!("panel {title:?}"), expr, true));
        }
    }
    for (name, v) in &vars {
        let q = match &v["query"] {
            serde_json::Value::String(s) => s.clone(),
            q => q["query"].as_str().unwrap_or("").to_string(),
        };
        exprs.push((format!("variable {name}"), q, false));
    }
    for a in d["annotations"]["list"].as_array().into_iter().flatten() {
        if let Some(e) = a["expr"].as_str() {
            exprs.push((format!("annotation {:?}", a["name"]), e.to_string(), true));
        }
    }

    let mut used = BTreeSet::new();
    for (place, expr, is_query) in &exprs {
        for m in metric.find_iter(expr) {
            let name = m.as_str();
            match family_of(name, &fams) {
                None => problems.push(format!(
                    "{place}: {name} is not declared in src/admin/metrics.rs FAMILIES"
                )),
                Some((base, histogram_series)) => {
                    used.insert(base.to_string());
                    let ty = fams[base].as_str();
                    if ty == "histogram" && !histogram_series {
                        problems.push(format!(
                            "{place}: {name} is a histogram: query {name}_bucket/_sum/_count"
                        ));
                    }
                    if *is_query
                        && name.ends_with("_bucket")
                        && !expr.contains("histogram_quantile(")
                    {
                        problems.push(format!("{place}: {name} outside histogram_quantile()"));
                    }
                    if *is_query
                        && (ty == "counter" || histogram_series)
                        && !["rate(", "increase(", "changes("]
                            .iter()
                            .any(|f| expr.contains(f))
                    {
                        problems.push(format!(
                            "{place}: {name} is a counter: use rate() or increase()"
                        ));
                    }
                }
            }
        }
    }
    for area in ["vrrp", "listener", "route", "pool", "backend"] {
        if !areas.contains_key(area) {
            problems.push(format!("no panel shows a tandem_{area}_* metric"));
        }
    }
    assert!(
        problems.is_empty(),
        "packaging/grafana-dashboard.json:\n  {}",
        problems.join("\n  ")
    );
    assert!(used.len() >= 10, "the dashboard uses only {used:?}");
}

/// `paths:` of openapi.yaml as (METHOD, path) pairs, from the text: a path
/// is a key at indentation 2, an operation a key at indentation 4.
fn openapi_operations(yaml: &str) -> BTreeSet<(String, String)> {
    let mut ops = BTreeSet::new();
    let mut in_paths = false;
    let mut path: Option<String> = None;
    let mut paths_seen = BTreeSet::new();
    for line in yaml.lines() {
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        if !line.starts_with(' ') {
            in_paths = line.trim_end() == "paths:";
            path = None;
            continue;
        }
        if !in_paths {
            continue;
        }
        if let Some(key) = line.strip_prefix("  ").filter(|l| !l.starts_with(' ')) {
            let key = key
                .trim_end()
                .strip_suffix(':')
                .unwrap_or_else(|| panic!("openapi.yaml: unexpected line under paths: {line:?}"));
            let key = key.trim_matches(|c| c == '"' || c == '\'');
            assert!(key.starts_with('/'), "openapi.yaml: path {key:?}");
            paths_seen.insert(key.to_string());
            path = Some(key.to_string());
        } else if let Some(key) = line.strip_prefix("    ").filter(|l| !l.starts_with(' ')) {
            let key = key.split(':').next().unwrap_or("");
            if [
                "get", "put", "post", "delete", "patch", "head", "options", "trace",
            ]
            .contains(&key)
            {
                let p = path.clone().expect("operation before any path");
                ops.insert((key.to_uppercase(), p));
            }
        }
    }
    for p in &paths_seen {
        assert!(
            ops.iter().any(|(_, q)| q == p),
            "openapi.yaml: {p} has no operation"
        );
    }
    assert!(!ops.is_empty(), "openapi.yaml: no paths found");
    ops
}

/// The text of `fn NAME(` up to its closing brace at column 0.
fn fn_body<'a>(src: &'a str, name: &str) -> &'a str {
    let start = Regex::new(&format!(r"\bfn {name}\s*(<[^>]*>)?\("))
        .unwrap()
        .find(src)
        .unwrap_or_else(|| panic!("src/admin/mod.rs has no fn {name}: update tests/docs.rs"))
        .start();
    let end = src[start..].find("\n}").map_or(src.len(), |e| start + e);
    &src[start..end]
}

/// `{pool}` and `{p}` are the same route.
fn normalize(path: &str) -> String {
    Regex::new(r"\{[^}]*\}")
        .unwrap()
        .replace_all(path, "{}")
        .into_owned()
}

/// The admin API routes of src/admin/mod.rs as (METHOD, path):
/// - `(&Method::GET, "/v1/status") =>` arms of `route`;
/// - slice patterns `["v1", "vrrp", instance, "priority"] if req.method() == Method::PUT =>`;
/// - a slice pattern ending in a variable (`action`) without a method guard
///   is dispatched by the function it calls, which has `action: &str` and
///   arms `(Method::POST, "drain") =>`.
fn admin_routes(src: &str) -> BTreeSet<(String, String)> {
    let route = fn_body(src, "route");
    let mut out = BTreeSet::new();
    let full = Regex::new(r#"\(\s*&?Method::([A-Z]+)\s*,\s*"(/[^"]*)"\s*\)\s*=>"#).unwrap();
    for c in full.captures_iter(route) {
        out.insert((c[1].to_string(), c[2].to_string()));
    }
    // Any other "/v1/..." string (e.g. a `(_, "/v1/x")` arm) must be a
    // documented path too, with some method.
    let any = Regex::new(r#""(/v1/[^"]*)""#).unwrap();
    for line in route.lines().filter(|l| !l.trim_start().starts_with("//")) {
        for c in any.captures_iter(line) {
            if !out.iter().any(|(_, p)| *p == c[1]) {
                out.insert(("?".into(), c[1].to_string()));
            }
        }
    }
    let slice = Regex::new(r#"\[\s*"v1"\s*,([^\]]*)\]\s*(if\s[^{}]*?)?=>"#).unwrap();
    let ident = Regex::new(r"^[a-z_][a-z0-9_]*$").unwrap();
    let guard_method = Regex::new(r"Method::([A-Z]+)").unwrap();
    let fns = Regex::new(r"fn (\w+)\s*(?:<[^>]*>)?\(([^)]*)\)").unwrap();
    let action_arm =
        Regex::new(r#"\(\s*&?Method::([A-Z]+)\s*,\s*"([a-z][a-z0-9_-]*)"\s*\)\s*=>"#).unwrap();
    let mut slices = 0;
    for c in slice.captures_iter(route) {
        slices += 1;
        let mut path = String::from("/v1");
        let mut last_var = None;
        for seg in c[1].split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if let Some(lit) = seg.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
                path.push('/');
                path.push_str(lit);
                last_var = None;
            } else if ident.is_match(seg) && seg != "_" {
                path.push_str(&format!("/{{{seg}}}"));
                last_var = Some(seg.to_string());
            } else {
                panic!("src/admin/mod.rs: route pattern segment {seg:?} in {:?}: teach tests/docs.rs about it", &c[0]);
            }
        }
        if let Some(guard) = c.get(2) {
            let m = guard_method
                .captures(guard.as_str())
                .unwrap_or_else(|| panic!("route guard without a method: {:?}", &c[0]));
            out.insert((m[1].to_string(), path));
            continue;
        }
        // No guard: the last variable segment is an operation name that the
        // called function matches on.
        let var = last_var.unwrap_or_else(|| {
            panic!(
                "route pattern {:?} has no method guard and no operation segment",
                &c[0]
            )
        });
        let arm_end = c.get(0).unwrap().end();
        let arm = &route[arm_end..(arm_end + 300).min(route.len())];
        let handlers: Vec<&str> = fns
            .captures_iter(src)
            .filter(|f| {
                f[2].contains(&format!("{var}: &str")) && arm.contains(&format!("{}(", &f[1]))
            })
            .map(|f| f.get(1).unwrap().as_str())
            .collect();
        assert_eq!(
            handlers.len(),
            1,
            "cannot tell which function dispatches {var} of {:?}",
            &c[0]
        );
        let prefix = path
            .strip_suffix(&format!("/{{{var}}}"))
            .unwrap()
            .to_string();
        let ops = operations_fn(src, handlers[0], &var);
        let mut n = 0;
        for a in action_arm.captures_iter(fn_body(src, &ops)) {
            out.insert((a[1].to_string(), format!("{prefix}/{}", &a[2])));
            n += 1;
        }
        assert!(n > 0, "no (Method::X, \"op\") arms in fn {ops}");
    }
    assert!(slices > 0, "no [\"v1\", ...] route patterns in fn route");
    out
}

/// The function whose `(Method::X, "op")` arms name the operations that
/// `handler` dispatches on `var`: `handler` itself, or the one function taking
/// `var: &str` that it hands the operation to (a pure parser, say).
fn operations_fn(src: &str, handler: &str, var: &str) -> String {
    let arms = Regex::new(r#"\(\s*&?Method::[A-Z]+\s*,\s*""#).unwrap();
    let body = fn_body(src, handler);
    if arms.is_match(body) {
        return handler.to_string();
    }
    let fns = Regex::new(r"fn (\w+)\s*(?:<[^>]*>)?\(([^)]*)\)").unwrap();
    let callees: Vec<String> = fns
        .captures_iter(src)
        .filter(|f| {
            &f[1] != handler
                && f[2].contains(&format!("{var}: &str"))
                && body.contains(&format!("{}(", &f[1]))
        })
        .map(|f| f[1].to_string())
        .collect();
    assert_eq!(
        callees.len(),
        1,
        "fn {handler} has no (Method::X, \"op\") arms and no single function it hands {var} to"
    );
    callees[0].clone()
}

/// Paths served by `metrics_route` (GET and HEAD).
fn metrics_routes(src: &str) -> BTreeSet<String> {
    let body = fn_body(src, "metrics_route");
    let re = Regex::new(r#""(/[^"]*)"\s*(?:if\s[^=]*)?=>"#).unwrap();
    let out: BTreeSet<String> = re.captures_iter(body).map(|c| c[1].to_string()).collect();
    assert!(!out.is_empty(), "no paths found in fn metrics_route");
    out
}

/// Differences between the routes served by `src` (src/admin/mod.rs) and
/// the operations documented in `yaml` (openapi.yaml).
fn route_problems(src: &str, yaml: &str) -> Vec<String> {
    let ops = openapi_operations(yaml);
    let mut problems = Vec::new();

    let code: BTreeSet<(String, String)> = admin_routes(src)
        .into_iter()
        .map(|(m, p)| (m, normalize(&p)))
        .collect();
    let doc: BTreeSet<(String, String)> = ops
        .iter()
        .filter(|(_, p)| p.starts_with("/v1/"))
        .map(|(m, p)| (m.clone(), normalize(p)))
        .collect();
    for (m, p) in &code {
        let documented = if m == "?" {
            doc.iter().any(|(_, q)| q == p)
        } else {
            doc.contains(&(m.clone(), p.clone()))
        };
        if !documented {
            problems.push(format!(
                "src/admin/mod.rs serves {m} {p}, openapi.yaml does not document it"
            ));
        }
    }
    for (m, p) in &doc {
        if !code.contains(&(m.clone(), p.clone())) {
            problems.push(format!(
                "openapi.yaml documents {m} {p}, src/admin/mod.rs does not serve it"
            ));
        }
    }

    let served = metrics_routes(src);
    let doc_other: BTreeSet<&(String, String)> =
        ops.iter().filter(|(_, p)| !p.starts_with("/v1/")).collect();
    for p in &served {
        if !doc_other.contains(&("GET".to_string(), p.clone())) {
            problems.push(format!(
                "the metrics listener serves GET {p}, openapi.yaml does not document it"
            ));
        }
    }
    for (m, p) in doc_other {
        if !served.contains(p) || !(m == "GET" || m == "HEAD") {
            problems.push(format!(
                "openapi.yaml documents {m} {p}, neither the admin API nor the metrics listener serves it"
            ));
        }
    }
    problems
}

#[test]
fn openapi_documents_exactly_the_served_routes() {
    let src = read("src/admin/mod.rs");
    let yaml = read("packaging/openapi.yaml");
    let problems = route_problems(&src, &yaml);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The scan is a real check: a route added to (or removed from) either side
/// in the shapes mod.rs uses is reported.
#[test]
fn route_scan_notices_undocumented_changes() {
    let src = read("src/admin/mod.rs");
    let yaml = read("packaging/openapi.yaml");
    let insert_before = |text: &str, re: &str, what: &str| -> String {
        let at = Regex::new(re).unwrap().find(text).expect(re).start();
        format!("{}{what}{}", &text[..at], &text[at..])
    };
    let route = fn_body(&src, "route");
    let route_at = src.find(route).unwrap();
    let in_route = |re: &str, what: &str| -> String {
        let changed = insert_before(route, re, what);
        format!(
            "{}{changed}{}",
            &src[..route_at],
            &src[route_at + route.len()..]
        )
    };
    let backend = fn_body(&src, &operations_fn(&src, "backend_route", "action"));
    let backend_at = src.find(backend).unwrap();
    let in_backend = |re: &str, what: &str| -> String {
        let changed = insert_before(backend, re, what);
        format!(
            "{}{changed}{}",
            &src[..backend_at],
            &src[backend_at + backend.len()..]
        )
    };
    let mutations = [
        (
            "a full-path arm",
            in_route(r"\(\s*&Method::", "(&Method::DELETE, \"/v1/cache\") => todo!(),\n"),
            yaml.clone(),
            "DELETE /v1/cache",
        ),
        (
            "a slice pattern with a method guard",
            in_route(
                r#"\[\s*"v1""#,
                "[\"v1\", \"pools\", pool, \"reset\"] if req.method() == Method::POST => todo!(),\n",
            ),
            yaml.clone(),
            "POST /v1/pools/{}/reset",
        ),
        (
            "a backend operation",
            in_backend(r#"\(\s*&?Method::[A-Z]+\s*,\s*""#, "(&Method::POST, \"pause\") => todo!(),\n"),
            yaml.clone(),
            "POST /v1/backends/{}/{}/pause",
        ),
        (
            "a documented path nobody serves",
            src.clone(),
            yaml.replacen("\npaths:\n", "\npaths:\n  /v1/bogus:\n    get:\n      summary: x\n", 1),
            "GET /v1/bogus",
        ),
        (
            "an undocumented route",
            src.clone(),
            yaml.replacen("\n  /v1/reload:\n", "\n  /v1/reload-is-gone:\n", 1),
            "POST /v1/reload",
        ),
    ];
    for (what, src, yaml, expect) in mutations {
        let problems = route_problems(&src, &yaml);
        assert!(
            problems.iter().any(|p| p.contains(expect)),
            "{what}: expected a problem about {expect}, got {problems:?}"
        );
    }
}

/// Property names of `components.schemas.NAME` (keys at indentation 8
/// under `      properties:`).
fn schema_properties(yaml: &str, name: &str) -> BTreeSet<String> {
    let header = format!("\n    {name}:\n");
    let start = yaml
        .find(&header)
        .unwrap_or_else(|| panic!("openapi.yaml has no schema {name}"))
        + header.len();
    let mut props = BTreeSet::new();
    let mut in_props = false;
    for line in yaml[start..].lines() {
        let indent = line.len() - line.trim_start().len();
        if line.trim().is_empty() {
            continue;
        }
        if indent <= 4 {
            break;
        }
        if indent == 6 {
            in_props = line.trim() == "properties:";
        } else if indent == 8 && in_props {
            if let Some(k) = line.trim().strip_suffix(':') {
                props.insert(k.to_string());
            }
        }
    }
    props
}

fn serde_keys<T: serde::Serialize>(v: T) -> BTreeSet<String> {
    match serde_json::to_value(v).expect("serialize") {
        serde_json::Value::Object(m) => m.keys().cloned().collect(),
        other => panic!("not an object: {other}"),
    }
}

#[test]
fn openapi_status_schemas_match_the_serde_field_names() {
    use tandem::admin::metrics::HistogramSnapshot;
    use tandem::admin::status::*;
    let yaml = read("packaging/openapi.yaml");
    let cases = [
        ("Status", serde_keys(Status::default())),
        ("ListenerStatus", serde_keys(ListenerStatus::default())),
        ("RouteStatus", serde_keys(RouteStatus::default())),
        ("PoolStatus", serde_keys(PoolStatus::default())),
        ("BackendStatus", serde_keys(BackendStatus::default())),
        ("VrrpStatus", serde_keys(VrrpStatus::default())),
        ("PeerStatus", serde_keys(PeerStatus::default())),
        ("Histogram", serde_keys(HistogramSnapshot::default())),
    ];
    let mut problems = Vec::new();
    for (schema, fields) in cases {
        let doc = schema_properties(&yaml, schema);
        for f in fields.difference(&doc) {
            problems.push(format!("schema {schema} lacks the field {f}"));
        }
        for f in doc.difference(&fields) {
            problems.push(format!("schema {schema} has {f}, which status.rs does not"));
        }
    }
    assert!(
        problems.is_empty(),
        "packaging/openapi.yaml vs src/admin/status.rs:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn both_documents_are_in_the_deb() {
    let cargo = read("Cargo.toml");
    for (file, dest) in [
        (
            "packaging/openapi.yaml",
            "usr/share/doc/tandem/openapi.yaml",
        ),
        (
            "packaging/grafana-dashboard.json",
            "usr/share/doc/tandem/grafana-dashboard.json",
        ),
    ] {
        let line = format!(r#"["{file}", "{dest}", "644"]"#);
        assert!(
            cargo.contains(&line),
            "Cargo.toml [package.metadata.deb] assets lacks {line}"
        );
    }
}

/// Every test the README names (`file::test_name`) exists in tests/<file>.rs, so a claim
/// never points at a test that was renamed or removed.
#[test]
fn tests_named_in_the_readme_exist() {
    let readme = read("README.md");
    let re = Regex::new(r"`([a-z0-9_]+)::([a-z0-9_]+)`").unwrap();
    let mut named = 0;
    let mut missing = Vec::new();
    for c in re.captures_iter(&readme) {
        let path = format!("tests/{}.rs", &c[1]);
        let Ok(src) =
            std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(&path))
        else {
            continue;
        };
        named += 1;
        if !src.contains(&format!("fn {}(", &c[2])) {
            missing.push(format!("{path}: no fn {}", &c[2]));
        }
    }
    assert!(named >= 20, "only {named} tests named in the README");
    assert!(
        missing.is_empty(),
        "README names tests that do not exist:\n{}",
        missing.join("\n")
    );
}
