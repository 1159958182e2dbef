//! Configuration errors: every one names `file:line:col`, so that `check`,
//! start-up and a refused reload all point the operator at the same place.

use std::fmt;
use std::path::{Path, PathBuf};

/// One problem found in a routes file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based; 0 when the problem has no position (e.g. the file is unreadable).
    pub line: usize,
    pub col: usize,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(f, "{}:{}:{}: {}", self.file.display(), self.line, self.col, self.message)
        }
    }
}

/// All the problems found in one file (compilation collects rather than stopping at the first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Turns byte offsets into `file:line:col` errors for one source text.
#[derive(Debug)]
pub struct Locator<'a> {
    file: &'a Path,
    text: &'a str,
    /// Byte offset of the start of each line, for O(log n) lookups.
    line_starts: Vec<usize>,
}

impl<'a> Locator<'a> {
    pub fn new(file: &'a Path, text: &'a str) -> Self {
        let line_starts = std::iter::once(0)
            .chain(text.bytes().enumerate().filter(|(_, b)| *b == b'\n').map(|(i, _)| i + 1))
            .collect();
        Locator { file, text, line_starts }
    }

    /// 1-based line and column of byte `offset`.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&s| s <= offset);
        (line, offset - self.line_starts[line - 1] + 1)
    }

    pub fn text(&self) -> &'a str {
        self.text
    }

    pub fn file(&self) -> &'a Path {
        self.file
    }

    /// An error at byte `offset` of the text (`None`: no position).
    pub fn error(&self, offset: Option<usize>, message: impl Into<String>) -> ConfigError {
        let (line, col) = match offset {
            Some(off) => self.line_col(off),
            None => (0, 0),
        };
        ConfigError { file: self.file.to_path_buf(), line, col, message: message.into() }
    }
}

/// 1-based line and column of byte `offset` in `text`.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text.as_bytes()[..offset];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
    (line, offset - line_start + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_from_one() {
        let t = "a = 1\nbb = 2\n";
        assert_eq!(line_col(t, 0), (1, 1));
        assert_eq!(line_col(t, 6), (2, 1));
        assert_eq!(line_col(t, 8), (2, 3));
        let loc = Locator::new(Path::new("f"), t);
        for off in 0..=t.len() {
            assert_eq!(loc.line_col(off), line_col(t, off), "offset {off}");
        }
    }
}
