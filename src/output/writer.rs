//! Numbering and formatting matches into output lines, and opening the output.

use std::io::Write;

use super::{csv, json, now_ms, text, OutputFormat};
use crate::engine::Match;
use crate::query::plan::Plan;

/// Numbers the matches of one query 1, 2, … and formats each as a line.
pub struct MatchFormatter {
    query: String,
    format: OutputFormat,
    records: bool,
    numbered: u64,
    run: Option<String>,
    /// Records written per match at most; the rest are counted.
    max_records: usize,
}

impl MatchFormatter {
    pub fn new(query_name: impl Into<String>, format: OutputFormat, records: bool) -> Self {
        MatchFormatter {
            query: query_name.into(),
            format,
            records,
            numbered: 0,
            run: None,
            max_records: usize::MAX,
        }
    }

    /// Write at most `n` records per match (at least one): a match of a
    /// group with every flow of a busy host would otherwise be a line of
    /// megabytes, which log shippers cut or drop.
    pub fn with_max_records(mut self, n: usize) -> Self {
        self.set_max_records(n);
        self
    }

    pub fn set_max_records(&mut self, n: usize) {
        self.max_records = n.max(1);
    }

    /// Stamp every line with this run id (`flowy query`: one result per
    /// run, so consumers can tell two runs' lines apart).
    pub fn with_run(mut self, run: String) -> Self {
        self.run = Some(run);
        self
    }

    /// Number the next match 1 again (a batch run that starts over).
    pub fn restart_numbering(&mut self) {
        self.numbered = 0;
    }

    /// Number the match and append its line to `out` (CSV: its rows; the
    /// header is the caller's, see [`OutputFormat::header`], since one
    /// output may hold several queries' matches). The number counts as
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
                    run: self.run.as_deref(),
                    max_records: self.max_records,
                };
                json::write_match(out, &header, plan, m);
            }
            OutputFormat::Text => {
                let records = self.records.then_some(self.max_records);
                text::write_match(out, &self.query, number, plan, m, records)
            }
            OutputFormat::Csv => {
                let header = csv::Header {
                    query: &self.query,
                    number,
                    records: self.records,
                    max_records: self.max_records,
                };
                csv::write_match(out, &header, plan, m);
            }
        }
        self.numbered = number;
    }

    /// Change the format of the lines to come; the numbering goes on.
    pub fn set_format(&mut self, format: OutputFormat, records: bool) {
        self.format = format;
        self.records = records;
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

/// A write that failed part-way: how many whole matches reached the sink
/// before it, and the error.
#[derive(Debug)]
pub struct WriteFailure {
    pub written: usize,
    pub error: std::io::Error,
}

/// The daemon's output: `-` (a duplicate of stdout's descriptor, unbuffered)
/// or a file opened for appending. Matches are written whole or not at all.
pub struct LineSink {
    file: std::fs::File,
    /// A regular file: a match cut by an error can be truncated away.
    regular: bool,
    path: String,
    /// The next lines of a format with a header (CSV) need it first: the
    /// sink is an empty file or a pipe or terminal nothing was written to,
    /// or the last lines written were of a format without one.
    header_due: bool,
}

impl LineSink {
    pub fn open(path: &str) -> std::io::Result<Self> {
        let file = if path == "-" {
            use std::os::fd::AsFd;
            std::fs::File::from(std::io::stdout().as_fd().try_clone_to_owned()?)
        } else {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?
        };
        let meta = file.metadata().ok();
        let regular = meta.as_ref().is_some_and(|m| m.is_file());
        let empty = meta.is_some_and(|m| m.is_file() && m.len() == 0);
        Ok(LineSink {
            file,
            regular,
            path: path.to_string(),
            // A file that holds lines already continues them.
            header_due: empty || !regular,
        })
    }

    /// The path this sink writes (`-`: stdout).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Open `path` to replace this sink (SIGHUP). The same path, still
    /// holding what was written (no rotation) or not a file (stdout, a
    /// pipe), carries on where this sink was: no second header.
    pub fn reopen(&self, path: &str) -> std::io::Result<Self> {
        let mut new = LineSink::open(path)?;
        let emptied = new.regular && new.header_due;
        if path == self.path && !emptied {
            new.header_due = self.header_due;
        }
        Ok(new)
    }

    /// [`write_matches`](Self::write_matches) for lines of a format whose
    /// output starts with `header` (`None`: a format without one). A due
    /// header goes out as part of the first match, so it is written exactly
    /// when that match is; a failure before it leaves it due.
    pub fn write_lines(
        &mut self,
        header: Option<&[u8]>,
        buf: &[u8],
        ends: &[usize],
    ) -> Result<(), WriteFailure> {
        let Some(header) = header.filter(|_| self.header_due && !ends.is_empty()) else {
            if header.is_none() && !ends.is_empty() {
                self.header_due = true;
            }
            return self.write_matches(buf, ends);
        };
        // Rare (once per file): one copy of the chunk is cheaper than a
        // second write path that knows about headers.
        let mut joined = Vec::with_capacity(header.len() + buf.len());
        joined.extend_from_slice(header);
        joined.extend_from_slice(buf);
        let ends: Vec<usize> = ends.iter().map(|e| e + header.len()).collect();
        let result = self.write_matches(&joined, &ends);
        if !matches!(result, Err(WriteFailure { written: 0, .. })) {
            self.header_due = false;
        }
        result
    }

    /// Write `buf`, whose matches end at the offsets `ends` (ascending, the
    /// last one `buf.len()`). On an error the part of a match that got out
    /// is truncated away from a regular file. A pipe cannot take bytes back,
    /// but there the only errors that stop a write half-way mean the reader
    /// is gone (EPIPE), so no reader sees the cut line; a full non-blocking
    /// pipe is waited on rather than abandoned.
    pub fn write_matches(&mut self, buf: &[u8], ends: &[usize]) -> Result<(), WriteFailure> {
        let mut off = 0;
        while off < buf.len() {
            match self.file.write(&buf[off..]) {
                Ok(0) => return Err(self.cut(off, ends, std::io::ErrorKind::WriteZero.into())),
                Ok(n) => off += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => self.wait_writable(),
                Err(e) => return Err(self.cut(off, ends, e)),
            }
        }
        Ok(())
    }

    fn cut(&mut self, off: usize, ends: &[usize], error: std::io::Error) -> WriteFailure {
        let written = ends.partition_point(|&e| e <= off);
        let line_start = written.checked_sub(1).map_or(0, |i| ends[i]);
        let torn = (off - line_start) as u64;
        if torn > 0 && self.regular {
            let undone = self
                .file
                .metadata()
                .and_then(|m| self.file.set_len(m.len().saturating_sub(torn)));
            if let Err(e) = undone {
                tracing::error!(error = %e, "cannot truncate a partly written match");
            }
        }
        WriteFailure { written, error }
    }

    fn wait_writable(&self) {
        use std::os::fd::AsRawFd;
        let mut fds = libc::pollfd {
            fd: self.file.as_raw_fd(),
            events: libc::POLLOUT,
            revents: 0,
        };
        // SAFETY: one valid pollfd for the duration of the call.
        unsafe { libc::poll(&mut fds, 1, 1000) };
    }
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

    #[test]
    fn a_failed_write_leaves_no_partial_match_in_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        let mut sink = LineSink::open(path.to_str().unwrap()).unwrap();
        sink.write_matches(b"one\ntwo\n", &[4, 8]).unwrap();
        // As if a write of "three\nfour\n" stopped after "three\nfo".
        sink.file.write_all(b"three\nfo").unwrap();
        let f = sink.cut(8, &[6, 11], std::io::ErrorKind::StorageFull.into());
        assert_eq!(f.written, 1);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "one\ntwo\nthree\n");
    }

    const H: Option<&[u8]> = Some(b"h\n");

    #[test]
    fn a_header_once_per_new_file_and_none_for_one_continued() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.csv");
        let p = path.to_str().unwrap();
        let mut sink = LineSink::open(p).unwrap();
        sink.write_lines(H, b"a\n", &[2]).unwrap();
        sink.write_lines(H, b"b\nc\n", &[2, 4]).unwrap();
        // SIGHUP without rotation: the same file goes on.
        let mut sink = sink.reopen(p).unwrap();
        sink.write_lines(H, b"d\n", &[2]).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "h\na\nb\nc\nd\n");
        // logrotate moved it away: the new file gets its own header.
        let moved = dir.path().join("out.csv.1");
        std::fs::rename(&path, &moved).unwrap();
        let mut sink = sink.reopen(p).unwrap();
        sink.write_lines(H, b"e\n", &[2]).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "h\ne\n");
        // A daemon started on a file that holds rows continues it.
        drop(sink);
        let mut sink = LineSink::open(p).unwrap();
        sink.write_lines(H, b"f\n", &[2]).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "h\ne\nf\n");
        // An empty chunk writes no header.
        let other = dir.path().join("other.csv");
        let mut sink = sink.reopen(other.to_str().unwrap()).unwrap();
        sink.write_lines(H, b"", &[]).unwrap();
        assert_eq!(std::fs::read_to_string(&other).unwrap(), "");
    }

    #[test]
    fn a_switch_back_to_csv_repeats_the_header() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        let p = path.to_str().unwrap();
        let mut sink = LineSink::open(p).unwrap();
        sink.write_lines(H, b"a\n", &[2]).unwrap();
        sink.write_lines(None, b"{}\n", &[3]).unwrap();
        // A reload that switched the format reopens the same path.
        let mut sink = sink.reopen(p).unwrap();
        sink.write_lines(H, b"b\n", &[2]).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "h\na\n{}\nh\nb\n");
    }

    #[test]
    fn a_pipe_gets_the_header_once_across_reopens() {
        let (mut rx, tx) = std::io::pipe().unwrap();
        use std::os::fd::AsRawFd;
        let p = format!("/proc/self/fd/{}", tx.as_raw_fd());
        let mut first = LineSink::open(&p).unwrap();
        first.write_lines(H, b"a\n", &[2]).unwrap();
        let mut second = first.reopen(&p).unwrap();
        second.write_lines(H, b"b\n", &[2]).unwrap();
        // Every write end must be closed for the read to end.
        drop((first, second, tx));
        let mut got = String::new();
        std::io::Read::read_to_string(&mut rx, &mut got).unwrap();
        assert_eq!(got, "h\na\nb\n");
    }
}
