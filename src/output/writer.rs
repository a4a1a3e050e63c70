//! The match writer: numbers matches, formats them and flushes each one.

use std::io::Write;

use super::{json, now_ms, text, OutputFormat};
use crate::engine::Match;
use crate::query::plan::Plan;

/// Writes the matches of one query to a sink, numbering them 1, 2, …
pub struct MatchWriter {
    query: String,
    format: OutputFormat,
    records: bool,
    sink: Box<dyn Write + Send>,
    written: u64,
    /// Reused for every match: one allocation for the writer's lifetime.
    buf: Vec<u8>,
}

impl MatchWriter {
    pub fn new(
        query_name: impl Into<String>,
        format: OutputFormat,
        records: bool,
        sink: Box<dyn Write + Send>,
    ) -> Self {
        MatchWriter {
            query: query_name.into(),
            format,
            records,
            sink,
            written: 0,
            buf: Vec::with_capacity(4096),
        }
    }

    /// Write one match and flush, so that readers see it at once.
    pub fn write(&mut self, plan: &Plan, m: &Match) -> std::io::Result<()> {
        let number = self.written + 1;
        self.buf.clear();
        match self.format {
            OutputFormat::Json => {
                let header = json::Header {
                    query: &self.query,
                    number,
                    emitted: now_ms(),
                    records: self.records,
                };
                json::write_match(&mut self.buf, &header, plan, m);
            }
            OutputFormat::Text => {
                text::write_match(&mut self.buf, &self.query, number, plan, m, self.records)
            }
        }
        self.sink.write_all(&self.buf)?;
        self.sink.flush()?;
        self.written = number;
        Ok(())
    }

    /// Number of matches written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Swap the sink (e.g. the output file reopened after SIGHUP); the match
    /// numbering continues.
    pub fn set_sink(&mut self, sink: Box<dyn Write + Send>) {
        self.sink = sink;
    }
}

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
        let mut w = MatchWriter::new(
            "http-download",
            OutputFormat::Json,
            true,
            open_output(p).unwrap(),
        );
        let (plan, m) = (http_plan(), http_match());
        w.write(&plan, &m).unwrap();
        w.write(&plan, &m).unwrap();
        assert_eq!(w.written(), 2);
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
