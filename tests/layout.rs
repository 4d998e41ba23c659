//! The module floors the README's "Layout" section promises, checked on the source: no
//! import circle between modules (at the top level and one level down, e.g.
//! `dataplane::l4` vs `dataplane::l7`), no plane importing `admin` or `runtime`, and
//! `config` importing no other module of the crate (it is the leaf everyone reads).
//! Imports are read from `crate::…` paths outside comments and `#[cfg(test)]` modules.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Graph = BTreeMap<String, BTreeSet<String>>;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read src") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// `src/dataplane/l4/tcp.rs` → ["dataplane", "l4", "tcp"]; `mod.rs`/`lib.rs`/`main.rs` name their folder.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file
        .strip_prefix(src)
        .expect("under src")
        .with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The code of a file without comments and without its `#[cfg(test)]` tail (tests may
/// reach anywhere).
fn code(text: &str) -> String {
    let body = match text.find("#[cfg(test)]") {
        Some(i) => &text[..i],
        None => text,
    };
    body.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `crate::a::b::c` paths in the code, as their segments.
fn crate_paths(code: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        let after = &rest[i + "crate::".len()..];
        let end = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(after.len());
        let segs: Vec<String> = after[..end]
            .split("::")
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        if !segs.is_empty() {
            out.push(segs);
        }
        rest = &after[end..];
    }
    out
}

/// Module-to-module imports, modules cut to `depth` segments; a module's imports of its
/// own ancestors or descendants are not edges.
fn graph(depth: usize) -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut g = Graph::new();
    for f in files {
        let me = module_of(&src, &f);
        if me.is_empty() {
            continue;
        }
        let me = me[..me.len().min(depth)].join("::");
        let text = std::fs::read_to_string(&f).expect("read");
        for p in crate_paths(&code(&text)) {
            let to = p[..p.len().min(depth)].join("::");
            let related = to == me
                || to.starts_with(&format!("{me}::"))
                || me.starts_with(&format!("{to}::"));
            // A path's last segment may be an item (`crate::version`), not a module.
            let is_module =
                src.join(p[0].as_str()).is_dir() || src.join(format!("{}.rs", p[0])).is_file();
            if !related && is_module {
                g.entry(me.clone()).or_default().insert(to);
            }
        }
    }
    g
}

/// Every cycle's members (strongly connected components with more than one module).
fn cycles(g: &Graph) -> Vec<BTreeSet<String>> {
    let nodes: BTreeSet<&String> = g.keys().chain(g.values().flatten()).collect();
    let reach = |from: &String| {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.clone()];
        while let Some(n) = todo.pop() {
            for m in g.get(&n).into_iter().flatten() {
                if seen.insert(m.clone()) {
                    todo.push(m.clone());
                }
            }
        }
        seen
    };
    let reaches: BTreeMap<&String, BTreeSet<String>> =
        nodes.iter().map(|n| (*n, reach(n))).collect();
    let mut out: Vec<BTreeSet<String>> = Vec::new();
    for n in &nodes {
        let scc: BTreeSet<String> = nodes
            .iter()
            .filter(|m| m != &n && reaches[n].contains(**m) && reaches[*m].contains(*n))
            .map(|m| (*m).clone())
            .chain(std::iter::once((*n).clone()))
            .collect();
        if scc.len() > 1 && !out.contains(&scc) {
            out.push(scc);
        }
    }
    out
}

#[test]
fn module_imports_have_no_circle() {
    for depth in [1, 2, 3] {
        let g = graph(depth);
        assert!(g.len() > 10, "the import reader found too little: {g:?}");
        let found = cycles(&g);
        assert!(
            found.is_empty(),
            "import circles at depth {depth}: {found:?}"
        );
    }
}

#[test]
fn no_plane_imports_admin_or_runtime_and_config_imports_nothing() {
    let g = graph(1);
    // Above the planes: admin reports them, runtime assembles everything, main is the CLI,
    // import writes configs.
    let above = ["admin", "runtime", "main", "import"];
    for (from, to) in &g {
        if above.contains(&from.as_str()) {
            continue;
        }
        for t in ["admin", "runtime"] {
            assert!(!to.contains(t), "{from} imports {t}: {to:?}");
        }
    }
    assert_eq!(
        g.get("config").cloned().unwrap_or_default(),
        BTreeSet::new(),
        "config/ must be a leaf"
    );
    assert!(
        g.get("dataplane").is_some_and(|t| t.contains("config")),
        "the reader sees dataplane → config: {g:?}"
    );
}

#[test]
fn the_reader_finds_a_circle_when_there_is_one() {
    let mut g = Graph::new();
    g.entry("a".into()).or_default().insert("b".into());
    g.entry("b".into()).or_default().insert("c".into());
    g.entry("c".into()).or_default().insert("a".into());
    g.entry("c".into()).or_default().insert("d".into());
    let found = cycles(&g);
    assert_eq!(found.len(), 1);
    assert_eq!(
        found[0],
        ["a", "b", "c"].iter().map(|s| s.to_string()).collect()
    );
    assert_eq!(
        crate_paths("use crate::dataplane::l4::tcp;\nlet x = crate::version();"),
        vec![
            vec!["dataplane".to_string(), "l4".into(), "tcp".into()],
            vec!["version".to_string()]
        ]
    );
}
