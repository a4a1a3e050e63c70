//! Located diagnostics in the style of rustc:
//!
//! ```text
//! q.flowy:12:13: error: unknown field 'scrip'
//!    |
//! 12 |     srcip = scrip
//!    |             ^^^^^
//!    = help: did you mean 'srcip'?
//! ```

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;

use smallvec::SmallVec;

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

    /// The rendering (as `to_string`), written into a buffer sized for it
    /// up front: fuzzed files render megabytes of diagnostics.
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let estimate: usize = self
            .errors
            .iter()
            .map(|d| {
                self.file.len()
                    + d.message.len()
                    + d.help.as_ref().map_or(0, String::len)
                    + 2 * d.source_line.len()
                    + d.width
                    + 64
            })
            .sum();
        let mut out = String::with_capacity(estimate + self.file.len() + 32);
        let _ = write!(out, "{self}");
        out
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
            render(f, &self.file, d)?;
        }
        if self.errors.len() > 1 {
            write!(f, "\n{}: {} errors", self.file, self.errors.len())?;
        }
        Ok(())
    }
}

fn render(f: &mut fmt::Formatter<'_>, file: &str, d: &Diagnostic) -> fmt::Result {
    // Written piece by piece: fuzzed files render thousands of diagnostics,
    // and intermediate strings per line were a tenth of a compile.
    let (mut line_buf, mut col_buf) = (itoa::Buffer::new(), itoa::Buffer::new());
    let (line, col) = (line_buf.format(d.line), col_buf.format(d.col));
    let num = line.len();
    for piece in [file, ":", line, ":", col, ": error: ", &d.message, "\n"] {
        f.write_str(piece)?;
    }
    repeat(f, ' ', num)?;
    for piece in [" |\n", line, " | ", &d.source_line] {
        f.write_str(piece)?;
    }
    f.write_str("\n")?;
    repeat(f, ' ', num)?;
    f.write_str(" | ")?;
    lead(f, &d.source_line, d.col.saturating_sub(1))?;
    repeat(f, '^', d.width.max(1))?;
    if let Some(help) = &d.help {
        f.write_str("\n")?;
        repeat(f, ' ', num)?;
        f.write_str(" = help: ")?;
        f.write_str(help)?;
    }
    f.write_str("\n")
}

/// Blanks under the first `chars` characters of `line`. Tabs are kept so
/// that the caret lines up under tab-indented source.
fn lead(f: &mut fmt::Formatter<'_>, line: &str, chars: usize) -> fmt::Result {
    // Most lines have no tab: then only the count matters, and counting
    // (unlike walking the characters) is one call into the standard library.
    if !line.as_bytes().contains(&b'\t') {
        return repeat(f, ' ', chars.min(line.chars().count()));
    }
    let mut spaces = 0;
    for c in line.chars().take(chars) {
        if c == '\t' {
            repeat(f, ' ', spaces)?;
            spaces = 0;
            f.write_str("\t")?;
        } else {
            spaces += 1;
        }
    }
    repeat(f, ' ', spaces)
}

/// `n` copies of `c` (a space or a caret), in chunks.
fn repeat(f: &mut fmt::Formatter<'_>, c: char, mut n: usize) -> fmt::Result {
    const SPACES: &str = "                                                                ";
    const CARETS: &str = "^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^";
    let run = if c == '^' { CARETS } else { SPACES };
    while n > 0 {
        let k = n.min(run.len());
        f.write_str(&run[..k])?;
        n -= k;
    }
    Ok(())
}

/// Collects diagnostics for one source text, turning byte spans into
/// line/column positions.
pub struct Sink<'a> {
    file: String,
    source: &'a str,
    errors: Vec<(Span, String, Option<String>)>,
    /// Indices into `errors` by span, to drop repeats without copying
    /// every message into a set.
    seen: HashMap<(usize, usize), SmallVec<[usize; 1]>, foldhash::fast::RandomState>,
}

impl<'a> Sink<'a> {
    pub fn new(file: &str, source: &'a str) -> Self {
        Sink {
            file: file.to_string(),
            source,
            errors: Vec::new(),
            seen: HashMap::default(),
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
        let same_span = self.seen.entry((span.start, span.end)).or_default();
        if same_span.iter().any(|&i| self.errors[i].1 == message) {
            return;
        }
        same_span.push(self.errors.len());
        self.errors.push((span, message, help));
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
        let lines = Lines::new(self.source);
        let errors = errs
            .into_iter()
            .map(|(span, message, help)| lines.locate(span, message, help))
            .collect();
        Diagnostics {
            file: self.file,
            errors,
        }
    }
}

/// Where the lines of a source text start, so that a span is located
/// without rescanning the text before it.
struct Lines<'a> {
    source: &'a str,
    /// Byte offsets of every `\n`.
    newlines: Vec<usize>,
}

impl<'a> Lines<'a> {
    fn new(source: &'a str) -> Self {
        let newlines = source.match_indices('\n').map(|(i, _)| i).collect();
        Lines { source, newlines }
    }

    fn locate(&self, span: Span, message: String, help: Option<String>) -> Diagnostic {
        let source = self.source;
        let start = floor_char_boundary(source, span.start.min(source.len()));
        // Newlines before `start`: the 0-based line index.
        let before = self.newlines.partition_point(|&nl| nl < start);
        let line_start = before.checked_sub(1).map_or(0, |i| self.newlines[i] + 1);
        let line_end = self.newlines.get(before).copied().unwrap_or(source.len());
        let col = source[line_start..start].chars().count() + 1;
        let source_line = source[line_start..line_end]
            .trim_end_matches('\r')
            .to_string();
        let end = floor_char_boundary(source, span.end.clamp(start, line_end));
        let width = source[start..end].chars().count().max(1);
        Diagnostic {
            line: before + 1,
            col,
            message,
            help,
            source_line,
            width,
        }
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
    fn caret_keeps_tabs_and_counts_characters() {
        let src = "filter f {\n\t\u{e9}t\u{e9} = x\u{e9}y\n}\n";
        let mut sink = Sink::new("q", src);
        let at = src.find("x\u{e9}y").unwrap_or(0);
        sink.error(Span::new(at, at + "x\u{e9}y".len()), "unknown field");
        sink.error(Span::new(0, 6), "first");
        let d = sink.finish();
        let text = d.to_string();
        assert!(text.contains("2 | \t\u{e9}t\u{e9} = x\u{e9}y\n  | \t      ^^^\n"));
        assert!(text.starts_with("q:1:1: error: first\n  |\n1 | filter f {\n  | ^^^^^^\n"));
        assert!(text.ends_with("\nq: 2 errors"));
        assert_eq!(d.render(), text);
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
