//! Shared bits of the two input grammars: errors with a position, and
//! shell-style globs for keepalived's `include`.

use std::fmt;
use std::path::{Path, PathBuf};

/// Input the importer cannot read: `file:line: message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}:{}: {}", self.file, self.line, self.message)
        }
    }
}

impl std::error::Error for ImportError {}

pub fn err(file: &str, line: usize, message: impl Into<String>) -> ImportError {
    ImportError {
        file: file.to_string(),
        line,
        message: message.into(),
    }
}

/// Shell glob match of one path component: `*`, `?`, `[abc]`, `[a-z]`,
/// `[!x]`. A leading dot must be matched literally, as in sh.
pub fn wild_match(pat: &str, name: &str) -> bool {
    if name.starts_with('.') && !pat.starts_with('.') {
        return false;
    }
    let p: Vec<char> = pat.chars().collect();
    let n: Vec<char> = name.chars().collect();
    fn go(p: &[char], n: &[char]) -> bool {
        match p.first() {
            None => n.is_empty(),
            Some('*') => (0..=n.len()).any(|k| go(&p[1..], &n[k..])),
            Some('?') => !n.is_empty() && go(&p[1..], &n[1..]),
            Some('[') => {
                let Some(close) = p.iter().skip(2).position(|c| *c == ']').map(|i| i + 2) else {
                    return n.first() == Some(&'[') && go(&p[1..], &n[1..]);
                };
                let Some(&c) = n.first() else { return false };
                let mut set = &p[1..close];
                let negate = matches!(set.first(), Some('!') | Some('^'));
                if negate {
                    set = &set[1..];
                }
                let mut hit = false;
                let mut i = 0;
                while i < set.len() {
                    if i + 2 < set.len() && set[i + 1] == '-' {
                        hit |= set[i] <= c && c <= set[i + 2];
                        i += 3;
                    } else {
                        hit |= set[i] == c;
                        i += 1;
                    }
                }
                hit != negate && go(&p[close + 1..], &n[1..])
            }
            Some(c) => n.first() == Some(c) && go(&p[1..], &n[1..]),
        }
    }
    go(&p, &n)
}

pub fn has_wildcard(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Expands a glob into the existing paths it names, sorted (keepalived
/// reads included files in glob order). A pattern without wildcards is
/// returned as is, existing or not.
pub fn glob(pattern: &Path) -> Vec<PathBuf> {
    if !has_wildcard(&pattern.to_string_lossy()) {
        return vec![pattern.to_path_buf()];
    }
    let mut current = vec![PathBuf::new()];
    for comp in pattern.components() {
        let part = comp.as_os_str().to_string_lossy().to_string();
        let mut next = Vec::new();
        for base in &current {
            if has_wildcard(&part) {
                let dir = if base.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    base.as_path()
                };
                let Ok(rd) = std::fs::read_dir(dir) else {
                    continue;
                };
                let mut names: Vec<String> = rd
                    .filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().to_string())
                    .filter(|n| wild_match(&part, n))
                    .collect();
                names.sort();
                next.extend(names.into_iter().map(|n| base.join(n)));
            } else {
                next.push(base.join(comp.as_os_str()));
            }
        }
        current = next;
    }
    current.retain(|p| p.exists());
    current
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        for (p, n, ok) in [
            ("*.conf", "a.conf", true),
            ("*.conf", "a.conf.bak", false),
            ("*.conf", ".hidden.conf", false),
            (".*.conf", ".hidden.conf", true),
            ("vi_?.conf", "vi_1.conf", true),
            ("vi_?.conf", "vi_10.conf", false),
            ("vi_[0-4].conf", "vi_3.conf", true),
            ("vi_[0-4].conf", "vi_7.conf", false),
            ("vi_[!0-4].conf", "vi_7.conf", true),
            ("*", "x", true),
            ("a*b*c", "aXXbYc", true),
            ("a*b*c", "aXXbY", false),
            ("[", "[", true),
        ] {
            assert_eq!(wild_match(p, n), ok, "{p} ~ {n}");
        }
    }

    #[test]
    fn glob_lists_sorted_existing_files() {
        let d = std::env::temp_dir().join(format!("tandem-glob-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("conf.d")).unwrap();
        for f in ["b.conf", "a.conf", "c.txt"] {
            std::fs::write(d.join("conf.d").join(f), "").unwrap();
        }
        let got = glob(&d.join("conf.d/*.conf"));
        assert_eq!(got, vec![d.join("conf.d/a.conf"), d.join("conf.d/b.conf")]);
        assert!(glob(&d.join("nope/*.conf")).is_empty());
        assert_eq!(glob(&d.join("plain.conf")), vec![d.join("plain.conf")]);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
