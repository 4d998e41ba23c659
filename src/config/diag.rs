//! Config diagnostics: every error carries file, line, column and key path.
//!
//! The TOML document is parsed once into a spanned tree; [`SpanIndex`] maps
//! each key path (`pool[0].backends[1].weight`) to where it sits in the file,
//! so both serde's structural errors (which only know a byte span) and our
//! semantic checks (which only know a key path) can point at the same place.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// One problem in a config file, printed as `FILE:LINE:COL: key.path: message`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Diagnostic {
    pub file: PathBuf,
    pub line: usize,
    pub col: usize,
    pub key: String,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = if self.key.is_empty() {
            "(document)"
        } else {
            &self.key
        };
        write!(
            f,
            "{}:{}:{}: {}: {}",
            self.file.display(),
            self.line,
            self.col,
            key,
            self.message
        )
    }
}

/// All problems found in one config file. Never empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<Diagnostic>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

#[derive(Debug, Clone)]
struct Entry {
    path: String,
    key: Option<Range<usize>>,
    value: Range<usize>,
}

/// Key path → source position, built from the spanned TOML tree.
#[derive(Debug, Clone)]
pub struct SpanIndex {
    file: PathBuf,
    line_starts: Vec<usize>,
    src_len: usize,
    src: String,
    entries: Vec<Entry>,
}

impl SpanIndex {
    pub fn new(file: &Path, src: &str, root: &Spanned<DeTable<'_>>) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(src.match_indices('\n').map(|(i, _)| i + 1));
        let mut idx = SpanIndex {
            file: file.to_path_buf(),
            line_starts,
            src_len: src.len(),
            src: src.to_string(),
            entries: Vec::new(),
        };
        idx.entries.push(Entry {
            path: String::new(),
            key: None,
            value: root.span(),
        });
        idx.walk_table("", root.get_ref());
        idx
    }

    /// An index for a file that did not even parse: positions only.
    pub fn bare(file: &Path, src: &str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(src.match_indices('\n').map(|(i, _)| i + 1));
        SpanIndex {
            file: file.to_path_buf(),
            line_starts,
            src_len: src.len(),
            src: src.to_string(),
            entries: Vec::new(),
        }
    }

    fn walk_table(&mut self, prefix: &str, table: &DeTable<'_>) {
        for (k, v) in table.iter() {
            let path = if prefix.is_empty() {
                k.get_ref().to_string()
            } else {
                format!("{prefix}.{}", k.get_ref())
            };
            self.entries.push(Entry {
                path: path.clone(),
                key: Some(k.span()),
                value: v.span(),
            });
            self.walk_value(&path, v);
        }
    }

    fn walk_value(&mut self, path: &str, v: &Spanned<DeValue<'_>>) {
        match v.get_ref() {
            DeValue::Table(t) => self.walk_table(path, t),
            DeValue::Array(a) => {
                for (i, item) in a.iter().enumerate() {
                    let p = format!("{path}[{i}]");
                    self.entries.push(Entry {
                        path: p.clone(),
                        key: None,
                        value: item.span(),
                    });
                    self.walk_value(&p, item);
                }
            }
            _ => {}
        }
    }

    fn position(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.src_len);
        let line = match self.line_starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i.saturating_sub(1),
        };
        let start = self.line_starts[line];
        let col = self
            .src
            .get(start..offset)
            .map(|s| s.chars().count())
            .unwrap_or(0);
        (line + 1, col + 1)
    }

    /// Diagnostic at a key path; falls back to the nearest existing parent
    /// (a missing key is reported where its table is).
    pub fn at_path(&self, path: &str, message: impl Into<String>) -> Diagnostic {
        let mut p = path;
        let offset = loop {
            if let Some(e) = self.entries.iter().find(|e| e.path == p) {
                // Point at the value for a present key: that is what is wrong.
                break e.value.start;
            }
            match p.rfind(['.', '[']) {
                Some(i) => p = &p[..i],
                None => break 0,
            }
        };
        let (line, col) = self.position(offset);
        Diagnostic {
            file: self.file.clone(),
            line,
            col,
            key: path.to_string(),
            message: message.into(),
        }
    }

    /// Diagnostic for a byte span (serde errors): the key path is the
    /// innermost entry whose key or value contains the span.
    pub fn at_span(&self, span: Option<Range<usize>>, message: impl Into<String>) -> Diagnostic {
        let start = span.as_ref().map(|s| s.start).unwrap_or(0);
        let mut best: Option<&Entry> = None;
        for e in &self.entries {
            let inside =
                e.value.contains(&start) || e.key.as_ref().is_some_and(|k| k.contains(&start));
            if inside {
                let width = e.value.end - e.value.start;
                if best.is_none_or(|b| width <= b.value.end - b.value.start) {
                    best = Some(e);
                }
            }
        }
        let (line, col) = self.position(start);
        Diagnostic {
            file: self.file.clone(),
            line,
            col,
            key: best.map(|e| e.path.clone()).unwrap_or_default(),
            message: message.into(),
        }
    }

    pub fn file(&self) -> &Path {
        &self.file
    }
}

/// serde's messages are written for programmers; reword the common ones
/// for operators and drop toml's own position prefix (we print our own).
pub fn clean_serde_message(msg: &str) -> String {
    let first = msg.trim().lines().next().unwrap_or("").trim();
    first
        .replace("unknown field", "unknown key")
        .replace("missing field", "missing required key")
        .replace(", expected one of", "; expected one of")
        .replace(", expected", "; expected")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_lines_and_columns() {
        let src = "[global]\nworkers = 2\n\n[[pool]]\nname = \"web\"\n";
        let root = DeTable::parse(src).expect("parse");
        let idx = SpanIndex::new(Path::new("t.toml"), src, &root);
        let d = idx.at_path("global.workers", "bad");
        assert_eq!((d.line, d.col), (2, 11));
        let d = idx.at_path("pool[0].name", "bad");
        assert_eq!((d.line, d.col), (5, 8));
        // Missing key: reported at its parent table.
        let d = idx.at_path("pool[0].health.interval", "missing");
        assert_eq!(d.line, 4);
        assert_eq!(d.key, "pool[0].health.interval");
        assert_eq!(
            d.to_string(),
            format!("t.toml:4:{}: pool[0].health.interval: missing", d.col)
        );
    }

    #[test]
    fn span_lookup_finds_innermost_key() {
        let src = "[[pool]]\nname = \"a\"\nhealth = { interval = \"2s\" }\n";
        let root = DeTable::parse(src).expect("parse");
        let idx = SpanIndex::new(Path::new("t.toml"), src, &root);
        let off = src.find("\"2s\"").expect("needle");
        let d = idx.at_span(Some(off..off + 4), "x");
        assert_eq!(d.key, "pool[0].health.interval");
        assert_eq!(d.line, 3);
    }
}
