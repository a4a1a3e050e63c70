//! Numbering and formatting matches into output lines, and opening the output.

use std::io::Write;

use super::{json, now_ms, text, OutputFormat};
use crate::engine::Match;
use crate::query::plan::Plan;

/// Numbers the matches of one query 1, 2, … and formats each as a line.
pub struct MatchFormatter {
    query: String,
    format: OutputFormat,
    records: bool,
    numbered: u64,
}

impl MatchFormatter {
    pub fn new(query_name: impl Into<String>, format: OutputFormat, records: bool) -> Self {
        MatchFormatter {
            query: query_name.into(),
            format,
            records,
            numbered: 0,
        }
    }

    /// Number the match and append its line to `out`. The number counts as
    /// used even if the caller's write then fails, so a gap in the
    /// numbering shows the loss.
    pub fn append(&mut self, plan: &Plan, m: &Match, out: &mut Vec<u8>) {
        let number = self.numbered + 1;
        match self.format {
            OutputFormat::Json => {
                let header = json::Header {
                    query: &self.query,
                    number,
                    emitted: now_ms(),
                    records: self.records,
                };
                json::write_match(out, &header, plan, m);
            }
            OutputFormat::Text => {
                text::write_match(out, &self.query, number, plan, m, self.records)
            }
        }
        self.numbered = number;
    }

    /// Number of matches formatted so far.
    pub fn numbered(&self) -> u64 {
        self.numbered
    }
}

/// Lines are written in chunks of up to this many bytes (a few hundred
/// matches): one system call per line cost as much as formatting the line.
/// Whatever is at hand when the producer pauses is written at once.
pub const WRITE_CHUNK: usize = 1 << 20;

/// `-` is stdout; anything else is a file opened for appending (created if
/// missing).
pub fn open_output(path: &str) -> std::io::Result<Box<dyn Write + Send>> {
    if path == "-" {
        return Ok(Box::new(std::io::stdout()));
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    Ok(Box::new(file))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::testutil::{http_match, http_plan};

    #[test]
    fn numbers_matches_and_appends_to_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        let p = path.to_str().unwrap();
        std::fs::write(&path, "earlier line\n").unwrap();
        let mut f = MatchFormatter::new("http-download", OutputFormat::Json, true);
        let (plan, m) = (http_plan(), http_match());
        let mut buf = Vec::new();
        f.append(&plan, &m, &mut buf);
        f.append(&plan, &m, &mut buf);
        assert_eq!(f.numbered(), 2);
        open_output(p).unwrap().write_all(&buf).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0], "earlier line");
        for (i, line) in lines[1..].iter().enumerate() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(v["match"], i as u64 + 1);
        }
    }
}
