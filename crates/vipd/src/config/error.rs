//! Diagnostics: the problems found in a config file, each with file:line:col.

use std::fmt;

/// A 1-based line and column (columns count characters, not bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Location {
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file, as it was named to [`super::load`] or [`super::parse`].
    pub file: String,
    /// Where the offending value starts; `None` for problems with the whole file (e.g. it
    /// cannot be read).
    pub location: Option<Location>,
    /// What is wrong, naming the offending value.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.location {
            Some(at) => write!(f, "{}:{}: {}", self.file, at, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// Every problem found in a config file, in file order. Never empty when returned as an
/// error.
#[derive(Debug, Clone, Default, PartialEq, Eq, thiserror::Error)]
#[error("{}", render(.0))]
pub struct Diagnostics(Vec<Diagnostic>);

fn render(all: &[Diagnostic]) -> String {
    all.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

impl Diagnostics {
    /// The diagnostics, in file order.
    pub fn iter(&self) -> std::slice::Iter<'_, Diagnostic> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn into_vec(self) -> Vec<Diagnostic> {
        self.0
    }
}

impl From<Vec<Diagnostic>> for Diagnostics {
    fn from(all: Vec<Diagnostic>) -> Self {
        Diagnostics(all)
    }
}

impl IntoIterator for Diagnostics {
    type Item = Diagnostic;
    type IntoIter = std::vec::IntoIter<Diagnostic>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a Diagnostics {
    type Item = &'a Diagnostic;
    type IntoIter = std::slice::Iter<'a, Diagnostic>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// Collects diagnostics while a file is checked: turns byte offsets into line:col.
pub(crate) struct Reporter<'t> {
    file: String,
    text: &'t str,
    /// Byte offset of the start of each line.
    line_starts: Vec<usize>,
    /// (byte offset, diagnostic); sorted by offset on [`Reporter::finish`].
    found: Vec<(Option<usize>, Diagnostic)>,
}

impl<'t> Reporter<'t> {
    pub(crate) fn new(file: String, text: &'t str) -> Self {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Reporter {
            file,
            text,
            line_starts,
            found: Vec::new(),
        }
    }

    /// The line and column of a byte offset (clamped to the text).
    pub(crate) fn location(&self, offset: usize) -> Location {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = self.line_starts.partition_point(|&s| s <= offset);
        let start = self.line_starts[line - 1];
        let column = self.text[start..offset].chars().count() + 1;
        Location { line, column }
    }

    /// The file, as messages name it.
    pub(crate) fn file(&self) -> &str {
        &self.file
    }

    /// `file:line:col` of a byte offset, for messages that point at a second place.
    pub(crate) fn place(&self, offset: Option<usize>) -> String {
        match offset {
            Some(o) => format!("{}:{}", self.file, self.location(o)),
            None => self.file.clone(),
        }
    }

    /// Records a problem at a byte offset (`None`: the whole file).
    pub(crate) fn error(&mut self, at: Option<usize>, message: impl Into<String>) {
        let diagnostic = Diagnostic {
            file: self.file.clone(),
            location: at.map(|o| self.location(o)),
            message: message.into(),
        };
        self.found.push((at, diagnostic));
    }

    /// The diagnostics in file order (whole-file ones first), or `None` if there are none.
    pub(crate) fn finish(mut self) -> Option<Diagnostics> {
        if self.found.is_empty() {
            return None;
        }
        self.found.sort_by_key(|(at, _)| *at);
        Some(Diagnostics(
            self.found.into_iter().map(|(_, d)| d).collect(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_become_one_based_lines_and_character_columns() {
        let r = Reporter::new("f.toml".into(), "ab\n\u{e9}x = 1\n\nz");
        assert_eq!(r.location(0), Location { line: 1, column: 1 });
        assert_eq!(r.location(2), Location { line: 1, column: 3 });
        assert_eq!(r.location(3), Location { line: 2, column: 1 });
        // 'é' is two bytes but one column.
        assert_eq!(r.location(5), Location { line: 2, column: 2 });
        assert_eq!(r.location(12), Location { line: 4, column: 1 });
        // Past the end: clamped to the end.
        assert_eq!(r.location(100), Location { line: 4, column: 2 });
    }

    #[test]
    fn diagnostics_come_out_in_file_order_one_per_line() {
        let mut r = Reporter::new("f.toml".into(), "a = 1\nb = 2\n");
        r.error(Some(6), "second");
        r.error(Some(4), "first");
        r.error(None, "whole file");
        let d = r.finish().unwrap();
        assert_eq!(
            d.to_string(),
            "f.toml: whole file\nf.toml:1:5: first\nf.toml:2:1: second"
        );
        assert_eq!(d.len(), 3);
    }

    #[test]
    fn no_diagnostics_is_none() {
        assert!(Reporter::new("f".into(), "").finish().is_none());
    }
}
