//! Located diagnostics in the style of rustc:
//!
//! ```text
//! q.flowy:12:13: error: unknown field 'scrip'
//!    |
//! 12 |     srcip = scrip
//!    |             ^^^^^
//!    = help: did you mean 'srcip'?
//! ```

use std::collections::HashSet;
use std::fmt;
use std::path::PathBuf;

use crate::query::ast::Span;

/// One error, already resolved to line and column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub col: usize,
    pub message: String,
    pub help: Option<String>,
    /// The offending source line (without its newline).
    pub source_line: String,
    /// Width of the underline, in characters (at least 1).
    pub width: usize,
}

/// Every error found in one file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostics {
    pub file: String,
    pub errors: Vec<Diagnostic>,
}

/// Error of [`crate::query::compile_file`].
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    #[error("cannot read query file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(Diagnostics),
}

impl Diagnostics {
    pub fn len(&self) -> usize {
        self.errors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// The one-line headers (`FILE:LINE:COL: error: MESSAGE`) of every error.
    pub fn headers(&self) -> Vec<String> {
        self.errors.iter().map(|d| self.header(d)).collect()
    }

    fn header(&self, d: &Diagnostic) -> String {
        format!("{}:{}:{}: error: {}", self.file, d.line, d.col, d.message)
    }
}

impl std::error::Error for Diagnostics {}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            render(f, &self.header(d), d)?;
        }
        if self.errors.len() > 1 {
            write!(f, "\n{}: {} errors", self.file, self.errors.len())?;
        }
        Ok(())
    }
}

fn render(f: &mut fmt::Formatter<'_>, header: &str, d: &Diagnostic) -> fmt::Result {
    let num = d.line.to_string();
    let pad = " ".repeat(num.len());
    writeln!(f, "{header}")?;
    writeln!(f, "{pad} |")?;
    writeln!(f, "{num} | {}", d.source_line)?;
    // Keep tabs so the caret lines up under tab-indented source.
    let lead: String = d
        .source_line
        .chars()
        .take(d.col.saturating_sub(1))
        .map(|c| if c == '\t' { '\t' } else { ' ' })
        .collect();
    write!(f, "{pad} | {lead}{}", "^".repeat(d.width.max(1)))?;
    if let Some(help) = &d.help {
        write!(f, "\n{pad} = help: {help}")?;
    }
    writeln!(f)
}

/// Collects diagnostics for one source text, turning byte spans into
/// line/column positions.
pub struct Sink<'a> {
    file: String,
    source: &'a str,
    errors: Vec<(Span, String, Option<String>)>,
    seen: HashSet<(usize, usize, String)>,
}

impl<'a> Sink<'a> {
    pub fn new(file: &str, source: &'a str) -> Self {
        Sink {
            file: file.to_string(),
            source,
            errors: Vec::new(),
            seen: HashSet::new(),
        }
    }

    pub fn error(&mut self, span: Span, message: impl Into<String>) {
        self.push(span, message.into(), None);
    }

    pub fn error_help(&mut self, span: Span, message: impl Into<String>, help: Option<String>) {
        self.push(span, message.into(), help);
    }

    fn push(&mut self, span: Span, message: String, help: Option<String>) {
        // A stage shared by several branches is checked once per branch;
        // report each problem once.
        if self.seen.insert((span.start, span.end, message.clone())) {
            self.errors.push((span, message, help));
        }
    }

    pub fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }

    pub fn count(&self) -> usize {
        self.errors.len()
    }

    /// All diagnostics in source order.
    pub fn finish(self) -> Diagnostics {
        let mut errs = self.errors;
        errs.sort_by_key(|(s, ..)| (s.start, s.end));
        let errors = errs
            .into_iter()
            .map(|(span, message, help)| locate(self.source, span, message, help))
            .collect();
        Diagnostics {
            file: self.file,
            errors,
        }
    }
}

fn locate(source: &str, span: Span, message: String, help: Option<String>) -> Diagnostic {
    let start = floor_char_boundary(source, span.start.min(source.len()));
    let line_start = source[..start].rfind('\n').map_or(0, |i| i + 1);
    let line_end = source[start..]
        .find('\n')
        .map_or(source.len(), |i| start + i);
    let line = source[..start].matches('\n').count() + 1;
    let col = source[line_start..start].chars().count() + 1;
    let source_line = source[line_start..line_end]
        .trim_end_matches('\r')
        .to_string();
    let end = floor_char_boundary(source, span.end.clamp(start, line_end));
    let width = source[start..end].chars().count().max(1);
    Diagnostic {
        line,
        col,
        message,
        help,
        source_line,
        width,
    }
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_location_caret_and_help() {
        let src = "filter f {\n    srcip = scrip\n}\n";
        let mut sink = Sink::new("q.flowy", src);
        let at = src.find("scrip\n").unwrap_or(0);
        sink.error_help(
            Span::new(at, at + 5),
            "unknown field 'scrip'",
            Some("did you mean 'srcip'?".into()),
        );
        let text = sink.finish().to_string();
        assert!(text.starts_with("q.flowy:2:13: error: unknown field 'scrip'\n"));
        assert!(text.contains("2 |     srcip = scrip\n"));
        assert!(text.contains("  |             ^^^^^\n"));
        assert!(text.contains("  = help: did you mean 'srcip'?"));
    }

    #[test]
    fn error_at_end_of_file_is_located() {
        let src = "filter f {";
        let mut sink = Sink::new("q", src);
        sink.error(Span::new(10, 10), "unexpected end of file");
        let d = sink.finish();
        assert_eq!(d.headers(), vec!["q:1:11: error: unexpected end of file"]);
    }
}
