//! A small TOML writer for the generated file. We write the text ourselves
//! (rather than serialize the config structs) so that the output keeps the
//! layout of etc/tandem/tandem.toml: inline tables, one backend or route a
//! line, and the importer's comments next to what they explain.

use std::time::Duration;

/// A TOML value.
#[derive(Debug, Clone, PartialEq)]
pub enum V {
    S(String),
    I(i64),
    B(bool),
    A(Vec<V>),
    /// Inline table, keys in this order.
    T(Vec<(String, V)>),
}

impl V {
    pub fn s(s: impl Into<String>) -> V {
        V::S(s.into())
    }
    pub fn dur(d: Duration) -> V {
        V::S(duration(d))
    }
    pub fn strs<I: IntoIterator<Item = S>, S: Into<String>>(items: I) -> V {
        V::A(items.into_iter().map(|s| V::S(s.into())).collect())
    }
}

/// One `[[kind]]` (or `[global]`) table with comment lines above it.
#[derive(Debug, Clone, Default)]
pub struct Table {
    pub kind: &'static str,
    /// The input section it was made from (see report::Note::owner).
    pub owner: String,
    pub comments: Vec<String>,
    pub keys: Vec<(String, V)>,
}

impl Table {
    pub fn new(kind: &'static str) -> Table {
        Table {
            kind,
            ..Table::default()
        }
    }
    pub fn set(&mut self, key: &str, v: V) {
        match self.keys.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = v,
            None => self.keys.push((key.to_string(), v)),
        }
    }
    pub fn get(&self, key: &str) -> Option<&V> {
        self.keys.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
}

#[derive(Debug, Clone, Default)]
pub struct Doc {
    pub header: Vec<String>,
    pub global: Table,
    pub tables: Vec<Table>,
    /// Notes that belong to no table (e.g. whole unsupported sections).
    pub footer: Vec<String>,
}

/// `"5s"`, `"250ms"`, `"2m"`, `"0"`: the largest unit that is exact.
pub fn duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        "0".into()
    } else if d.subsec_nanos() % 1_000_000 != 0 {
        format!("{}us", d.as_micros())
    } else if ms % 3_600_000 == 0 {
        format!("{}h", ms / 3_600_000)
    } else if ms % 60_000 == 0 {
        format!("{}m", ms / 60_000)
    } else if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// A TOML basic string.
pub fn string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\u{:04X}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

pub fn key(k: &str) -> String {
    if !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        k.to_string()
    } else {
        string(k)
    }
}

pub fn value(v: &V) -> String {
    match v {
        V::S(s) => string(s),
        V::I(i) => i.to_string(),
        V::B(b) => b.to_string(),
        V::A(items) => {
            let parts: Vec<String> = items.iter().map(value).collect();
            format!("[{}]", parts.join(", "))
        }
        V::T(kv) => {
            if kv.is_empty() {
                return "{}".into();
            }
            let parts: Vec<String> = kv
                .iter()
                .map(|(k, v)| format!("{} = {}", key(k), value(v)))
                .collect();
            format!("{{ {} }}", parts.join(", "))
        }
    }
}

fn comment_lines(out: &mut String, lines: &[String]) {
    for l in lines {
        if l.is_empty() {
            out.push_str("#\n");
        }
        for part in l.lines() {
            if part.is_empty() {
                out.push_str("#\n");
            } else {
                out.push_str("# ");
                out.push_str(part);
                out.push('\n');
            }
        }
    }
}

fn table(out: &mut String, t: &Table, header: &str) {
    comment_lines(out, &t.comments);
    out.push_str(header);
    out.push('\n');
    for (k, v) in &t.keys {
        match v {
            // Lists of tables (backends, routes) one element a line.
            V::A(items) if items.iter().any(|i| matches!(i, V::T(_))) => {
                out.push_str(&format!("{} = [\n", key(k)));
                for i in items {
                    out.push_str(&format!("  {},\n", value(i)));
                }
                out.push_str("]\n");
            }
            _ => out.push_str(&format!("{} = {}\n", key(k), value(v))),
        }
    }
}

pub fn render(doc: &Doc) -> String {
    let mut out = String::new();
    comment_lines(&mut out, &doc.header);
    out.push('\n');
    table(&mut out, &doc.global, "[global]");
    for t in &doc.tables {
        out.push('\n');
        table(&mut out, t, &format!("[[{}]]", t.kind));
    }
    if !doc.footer.is_empty() {
        out.push('\n');
        comment_lines(&mut out, &doc.footer);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_use_the_largest_exact_unit() {
        for (ms, s) in [
            (0, "0"),
            (250, "250ms"),
            (1000, "1s"),
            (1500, "1500ms"),
            (90_000, "90s"),
            (120_000, "2m"),
            (7_200_000, "2h"),
        ] {
            assert_eq!(duration(Duration::from_millis(ms)), s);
            assert_eq!(
                crate::config::duration::parse(s).unwrap(),
                Duration::from_millis(ms)
            );
        }
    }

    #[test]
    fn strings_and_keys_are_escaped() {
        assert_eq!(string("a\"b\\c\n"), "\"a\\\"b\\\\c\\n\"");
        assert_eq!(key("X-Real-IP"), "X-Real-IP");
        assert_eq!(key("a.b"), "\"a.b\"");
        assert_eq!(key(""), "\"\"");
    }

    #[test]
    fn render_round_trips_through_toml() {
        let mut t = Table::new("pool");
        t.comments.push("from h.cfg:3".into());
        t.set("name", V::s("web"));
        t.set(
            "backends",
            V::A(vec![V::T(vec![
                ("name".into(), V::s("w1")),
                ("weight".into(), V::I(2)),
                ("backup".into(), V::B(true)),
            ])]),
        );
        t.set("x", V::strs(["a"]));
        let doc = Doc {
            header: vec!["head".into(), String::new()],
            global: Table::new("global"),
            tables: vec![t],
            footer: vec!["tail".into()],
        };
        let text = render(&doc);
        assert_eq!(
            text,
            "# head\n#\n\n[global]\n\n# from h.cfg:3\n[[pool]]\nname = \"web\"\nbackends = [\n  { name = \"w1\", weight = 2, backup = true },\n]\nx = [\"a\"]\n\n# tail\n"
        );
        let v: toml::Value = toml::from_str(&text).unwrap();
        assert_eq!(v["pool"][0]["backends"][0]["weight"].as_integer(), Some(2));
    }
}
