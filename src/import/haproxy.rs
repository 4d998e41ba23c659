//! haproxy.cfg lexer and section parser.
//!
//! Grammar (HAProxy configuration manual §2.1-2.3): one statement a line
//! (HAProxy has no line continuation); words separated by blanks; `#`
//! outside quotes starts a comment; `\` escapes the next character outside
//! single quotes (`\ `, `\#`, `\\`, `\'`, `\"`, and `\t`, `\n`, `\r`,
//! `\xNN`); `"..."` is weak quoting (escapes and `$VAR`/`${VAR}` from the
//! environment are interpreted), `'...'` is strong quoting (nothing is);
//! quoted and bare parts glued together make one word.

use std::path::Path;

use super::report::Loc;
use super::syntax::{err, ImportError};

#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub words: Vec<String>,
    pub loc: Loc,
}

impl Line {
    pub fn text(&self) -> String {
        self.words.join(" ")
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Section {
    /// global, defaults, frontend, backend, listen, peers, ...
    pub kind: String,
    /// Name and further words of the section line.
    pub args: Vec<String>,
    pub loc: Loc,
    pub lines: Vec<Line>,
}

impl Section {
    pub fn name(&self) -> Option<&str> {
        self.args.first().map(String::as_str)
    }
}

pub const SECTIONS: &[&str] = &[
    "global",
    "defaults",
    "frontend",
    "backend",
    "listen",
    "peers",
    "resolvers",
    "userlist",
    "mailers",
    "program",
    "cache",
    "http-errors",
    "ring",
    "log-forward",
    "fcgi-app",
    "crt-store",
    "traces",
    "acme",
];

/// Splits one line into words. `env` resolves `$NAME` inside double quotes.
pub fn words(
    line: &str,
    file: &str,
    no: usize,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<String>, ImportError> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = line.chars().peekable();
    #[derive(PartialEq)]
    enum Q {
        None,
        Double,
        Single,
    }
    let mut q = Q::None;
    let escape = |chars: &mut std::iter::Peekable<std::str::Chars>,
                  cur: &mut String|
     -> Result<(), ImportError> {
        match chars.next() {
            None => Err(err(
                file,
                no,
                "a backslash at the end of a line (HAProxy has no line continuation)",
            )),
            Some('t') => {
                cur.push('\t');
                Ok(())
            }
            Some('n') => {
                cur.push('\n');
                Ok(())
            }
            Some('r') => {
                cur.push('\r');
                Ok(())
            }
            Some('x') => {
                let h: String = (0..2).filter_map(|_| chars.next()).collect();
                let v = u8::from_str_radix(&h, 16).map_err(|_| {
                    err(
                        file,
                        no,
                        format!("bad escape \\x{h}: two hex digits expected"),
                    )
                })?;
                cur.push(v as char);
                Ok(())
            }
            Some(c) => {
                cur.push(c);
                Ok(())
            }
        }
    };
    while let Some(c) = chars.next() {
        match q {
            Q::Single => {
                if c == '\'' {
                    q = Q::None;
                } else {
                    cur.push(c);
                }
            }
            Q::Double => match c {
                '"' => q = Q::None,
                '\\' => escape(&mut chars, &mut cur)?,
                '$' => {
                    let braced = chars.peek() == Some(&'{');
                    if braced {
                        chars.next();
                    }
                    let mut name = String::new();
                    while let Some(&n) = chars.peek() {
                        if n.is_ascii_alphanumeric() || n == '_' {
                            name.push(n);
                            chars.next();
                        } else {
                            break;
                        }
                    }
                    if braced && chars.next() != Some('}') {
                        return Err(err(file, no, "unterminated ${...} variable"));
                    }
                    if name.is_empty() {
                        cur.push('$');
                    } else {
                        match env(&name) {
                            Some(v) => cur.push_str(&v),
                            None => {
                                return Err(err(file, no, format!("environment variable {name} is not set (HAProxy would use an empty string; set it for the import)")))
                            }
                        }
                    }
                }
                c => cur.push(c),
            },
            Q::None => match c {
                '#' => break,
                '\'' => {
                    q = Q::Single;
                    in_word = true;
                }
                '"' => {
                    q = Q::Double;
                    in_word = true;
                }
                '\\' => {
                    escape(&mut chars, &mut cur)?;
                    in_word = true;
                }
                c if c == ' ' || c == '\t' => {
                    if in_word {
                        out.push(std::mem::take(&mut cur));
                        in_word = false;
                    }
                }
                c => {
                    cur.push(c);
                    in_word = true;
                }
            },
        }
    }
    if q != Q::None {
        return Err(err(file, no, "unterminated quoted string"));
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

pub fn parse_str(
    file: &str,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<Section>, ImportError> {
    let mut out: Vec<Section> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let no = i + 1;
        let w = words(raw.trim_end_matches('\r'), file, no, env)?;
        let Some(first) = w.first() else { continue };
        let loc = Loc {
            file: file.to_string(),
            line: no,
        };
        if first.starts_with('.') {
            match first.as_str() {
                ".diag" | ".notice" | ".warning" | ".alert" => continue,
                _ => {
                    return Err(err(file, no, format!("{first}: conditional blocks are not supported by the importer; resolve them first")))
                }
            }
        }
        if SECTIONS.contains(&first.as_str()) {
            out.push(Section {
                kind: first.clone(),
                args: w[1..].to_vec(),
                loc,
                lines: Vec::new(),
            });
            continue;
        }
        match out.last_mut() {
            Some(s) => s.lines.push(Line { words: w, loc }),
            None => return Err(err(file, no, format!("`{first}` outside of any section (expected global, defaults, frontend, backend or listen first)"))),
        }
    }
    Ok(out)
}

pub fn parse_file(path: &Path) -> Result<Vec<Section>, ImportError> {
    let name = path.display().to_string();
    let text =
        std::fs::read_to_string(path).map_err(|e| err(&name, 0, format!("cannot read: {e}")))?;
    parse_str(&name, &text, &|k| std::env::var(k).ok())
}

/// HAProxy time: a number with an optional unit (us, ms, s, m, h, d);
/// no unit means milliseconds.
pub fn time(s: &str) -> Option<std::time::Duration> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().ok()?;
    let us = match unit {
        "us" => 1,
        "" | "ms" => 1000,
        "s" => 1_000_000,
        "m" => 60_000_000,
        "h" => 3_600_000_000,
        "d" => 86_400_000_000,
        _ => return None,
    };
    n.checked_mul(us).map(std::time::Duration::from_micros)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(k: &str) -> Option<String> {
        match k {
            "PORT" => Some("8080".into()),
            "NAME" => Some("web app".into()),
            _ => None,
        }
    }

    #[test]
    fn words_follow_haproxy_quoting() {
        let cases: &[(&str, &[&str])] = &[
            ("bind :80", &["bind", ":80"]),
            ("  option   httplog  # comment", &["option", "httplog"]),
            ("a\\ b c", &["a b", "c"]),
            ("a\\#b #c", &["a#b"]),
            ("'a b' \"c d\"", &["a b", "c d"]),
            ("\"%{+Q}o %t\"' %s'\\ %{-Q}r", &["%{+Q}o %t %s %{-Q}r"]),
            (
                "'$PORT' \"$PORT\" \"${PORT}x\" $PORT",
                &["$PORT", "8080", "8080x", "$PORT"],
            ),
            ("\"a\\\"b\" 'it\\s'", &["a\"b", "it\\s"]),
            ("\"tab\\there\" \\x41", &["tab\there", "A"]),
            ("\"$NAME\"", &["web app"]),
            ("\"\"", &[""]),
            ("'#' \"#\" x#y", &["#", "#", "x"]),
            ("", &[]),
        ];
        for (src, want) in cases {
            let got = words(src, "h.cfg", 1, &env).unwrap_or_else(|e| panic!("{src:?}: {e}"));
            assert_eq!(got, *want, "{src:?}");
        }
    }

    #[test]
    fn word_errors_name_file_and_line() {
        for (src, want) in [
            ("a 'b", "h.cfg:7: unterminated quoted string"),
            ("a \"b", "h.cfg:7: unterminated quoted string"),
            ("a \\", "h.cfg:7: a backslash at the end of a line (HAProxy has no line continuation)"),
            ("\"$NOPE\"", "h.cfg:7: environment variable NOPE is not set (HAProxy would use an empty string; set it for the import)"),
            ("\\xZZ", "h.cfg:7: bad escape \\xZZ: two hex digits expected"),
        ] {
            let e = words(src, "h.cfg", 7, &env).unwrap_err();
            assert_eq!(e.to_string(), want, "{src:?}");
        }
    }

    #[test]
    fn sections_collect_their_lines() {
        let text = "# top\nglobal\n  maxconn 100\n\ndefaults\n mode http\nfrontend fe\n bind :80\nbackend be\n server s1 127.0.0.1:1\n";
        let s = parse_str("h.cfg", text, &env).unwrap();
        let got: Vec<(String, Vec<String>, usize, usize)> = s
            .iter()
            .map(|s| (s.kind.clone(), s.args.clone(), s.loc.line, s.lines.len()))
            .collect();
        assert_eq!(
            got,
            [
                ("global".to_string(), vec![], 2, 1),
                ("defaults".into(), vec![], 5, 1),
                ("frontend".into(), vec!["fe".to_string()], 7, 1),
                ("backend".into(), vec!["be".to_string()], 9, 1),
            ]
        );
        assert_eq!(s[3].lines[0].loc.line, 10);
        let e = parse_str("h.cfg", "\n  bind :80\n", &env).unwrap_err();
        assert_eq!(e.to_string(), "h.cfg:2: `bind` outside of any section (expected global, defaults, frontend, backend or listen first)");
        let e = parse_str("h.cfg", "global\n.if defined(X)\n.endif\n", &env).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("h.cfg:2: .if: conditional blocks"),
            "{e}"
        );
    }

    #[test]
    fn times_default_to_milliseconds() {
        use std::time::Duration;
        for (s, d) in [
            ("5000", Some(Duration::from_secs(5))),
            ("5s", Some(Duration::from_secs(5))),
            ("250ms", Some(Duration::from_millis(250))),
            ("1m", Some(Duration::from_secs(60))),
            ("2h", Some(Duration::from_secs(7200))),
            ("10us", Some(Duration::from_micros(10))),
            ("5x", None),
            ("s", None),
        ] {
            assert_eq!(time(s), d, "{s}");
        }
    }
}
