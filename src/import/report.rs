//! What the importer did with every input statement, for the summary on
//! stderr and the comments in the generated file.

use std::fmt;

/// A position in an input file, as the operator named it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loc {
    pub file: String,
    pub line: usize,
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Same behaviour in tandem.
    Imported,
    /// Mapped onto the closest tandem setting; `detail` says what changes.
    Approximated,
    /// Left out; `detail` says why.
    NotImported,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub kind: Kind,
    pub loc: Loc,
    pub what: String,
    pub detail: String,
    /// The input section the note belongs to (its comment goes above the
    /// table made from it); empty for global settings.
    pub owner: String,
}

impl Note {
    /// The comment line placed in the generated TOML.
    pub fn comment(&self) -> String {
        let tag = match self.kind {
            Kind::Imported => "imported",
            Kind::Approximated => "approximated",
            Kind::NotImported => "not imported",
        };
        if self.detail.is_empty() {
            format!("{tag} ({}): {}", self.loc, self.what)
        } else {
            format!("{tag} ({}): {}: {}", self.loc, self.what, self.detail)
        }
    }
}

#[derive(Debug, Default, Clone)]
pub struct Report {
    pub notes: Vec<Note>,
    /// Owner given to the notes added from now on.
    pub owner: String,
}

impl Report {
    pub fn add(
        &mut self,
        kind: Kind,
        loc: &Loc,
        what: impl Into<String>,
        detail: impl Into<String>,
    ) {
        self.notes.push(Note {
            kind,
            loc: loc.clone(),
            what: what.into(),
            detail: detail.into(),
            owner: self.owner.clone(),
        });
    }

    pub fn count(&self, kind: Kind) -> usize {
        self.notes.iter().filter(|n| n.kind == kind).count()
    }

    /// The summary printed on stderr: three lists, each line `file:line what: detail`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (kind, title) in [
            (Kind::Imported, "imported"),
            (Kind::Approximated, "approximated (behaviour changes)"),
            (Kind::NotImported, "not imported"),
        ] {
            let n = self.count(kind);
            out.push_str(&format!("{title}: {n}\n"));
            for note in self.notes.iter().filter(|x| x.kind == kind) {
                if note.detail.is_empty() {
                    out.push_str(&format!("  {} {}\n", note.loc, note.what));
                } else {
                    out.push_str(&format!("  {} {}: {}\n", note.loc, note.what, note.detail));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_groups_by_kind_in_input_order() {
        let mut r = Report::default();
        let at = |line| Loc {
            file: "h.cfg".into(),
            line,
        };
        r.add(Kind::NotImported, &at(3), "option forwardfor", "why");
        r.add(Kind::Imported, &at(1), "backend app", "");
        r.add(Kind::Approximated, &at(2), "balance uri", "hash lost");
        assert_eq!(
            r.render(),
            "imported: 1\n  h.cfg:1 backend app\napproximated (behaviour changes): 1\n  h.cfg:2 balance uri: hash lost\nnot imported: 1\n  h.cfg:3 option forwardfor: why\n"
        );
        assert_eq!(
            r.notes[0].comment(),
            "not imported (h.cfg:3): option forwardfor: why"
        );
    }
}
