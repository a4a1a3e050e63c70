//! Time-rotated output files, like nfcapd's `-t` and pmacct's strftime
//! paths: `output.path = "/var/log/flowy/%Y/%m/%d/matches-%H%M.jsonl"`
//! with `output.rotate = "5m"` writes each match into the file of the
//! rotation slot current when it is written (UTC wall-clock time floored
//! to a multiple of the interval since the epoch).
//!
//! A sink switches files only between two writes, and every write holds
//! whole matches, so no line is ever split across files.

use std::fmt::Write as _;
use std::path::Path;

use super::writer::{LineSink, WriteFailure};

/// A path with strftime-style conversions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathTemplate {
    parts: Vec<Part>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Literal(String),
    /// The conversion's letter (`Y` for `%Y`).
    Time(char),
}

/// The conversions a path may use.
pub const CONVERSIONS: &str = "%Y %y %m %d %j %H %M %S %s %F %T %%";

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("unknown conversion '%{0}' (known: {CONVERSIONS})")]
    Unknown(char),
    #[error("a lone '%' at the end (write a literal '%' as '%%')")]
    Trailing,
}

impl PathTemplate {
    pub fn parse(path: &str) -> Result<PathTemplate, TemplateError> {
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut chars = path.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                lit.push(c);
                continue;
            }
            match chars.next() {
                None => return Err(TemplateError::Trailing),
                Some('%') => lit.push('%'),
                Some(k) if "YymdjHMSsFT".contains(k) => {
                    if !lit.is_empty() {
                        parts.push(Part::Literal(std::mem::take(&mut lit)));
                    }
                    parts.push(Part::Time(k));
                }
                Some(k) => return Err(TemplateError::Unknown(k)),
            }
        }
        if !lit.is_empty() {
            parts.push(Part::Literal(lit));
        }
        Ok(PathTemplate { parts })
    }

    /// True when the path changes with time (has a conversion other than `%%`).
    pub fn varies(&self) -> bool {
        self.parts.iter().any(|p| matches!(p, Part::Time(_)))
    }

    /// The path for the instant `ms` (since the epoch, UTC).
    pub fn format(&self, ms: i64) -> String {
        let t = time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        let mut out = String::new();
        for p in &self.parts {
            // Writing to a String cannot fail.
            let _ = match p {
                Part::Literal(s) => out.write_str(s),
                Part::Time('Y') => write!(out, "{:04}", t.year()),
                Part::Time('y') => write!(out, "{:02}", t.year().rem_euclid(100)),
                Part::Time('m') => write!(out, "{:02}", u8::from(t.month())),
                Part::Time('d') => write!(out, "{:02}", t.day()),
                Part::Time('j') => write!(out, "{:03}", t.ordinal()),
                Part::Time('H') => write!(out, "{:02}", t.hour()),
                Part::Time('M') => write!(out, "{:02}", t.minute()),
                Part::Time('S') => write!(out, "{:02}", t.second()),
                Part::Time('s') => write!(out, "{}", t.unix_timestamp()),
                Part::Time('F') => write!(
                    out,
                    "{:04}-{:02}-{:02}",
                    t.year(),
                    u8::from(t.month()),
                    t.day()
                ),
                Part::Time('T') => {
                    write!(out, "{:02}:{:02}:{:02}", t.hour(), t.minute(), t.second())
                }
                Part::Time(_) => Ok(()),
            };
        }
        out
    }
}

/// The start (ms since the epoch) of the rotation slot of `every_ms` that
/// holds `now_ms`: slots are aligned to the epoch, so a 5-minute slot
/// starts at :00, :05, … of every hour.
pub fn slot_start(now_ms: i64, every_ms: i64) -> i64 {
    now_ms.div_euclid(every_ms.max(1)) * every_ms.max(1)
}

/// Where a sink writes: a fixed path (`-` = stdout), or a path template
/// and the rotation interval in ms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub path: String,
    pub rotate: Option<i64>,
}

impl Target {
    /// The file written at `now_ms`.
    pub fn file_at(&self, now_ms: i64) -> std::io::Result<String> {
        let Some(every) = self.rotate else {
            return Ok(self.path.clone());
        };
        let template = PathTemplate::parse(&self.path)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        Ok(template.format(slot_start(now_ms, every)))
    }
}

/// Wall-clock time in ms since the epoch; tests pass a fake one.
pub type Clock = Box<dyn Fn() -> i64 + Send>;

/// The system clock.
pub fn system_clock() -> Clock {
    Box::new(super::now_ms)
}

/// A [`LineSink`] that moves to the next slot's file between writes.
pub struct RotatingSink {
    target: Target,
    /// The slot the open file belongs to (0 without rotation).
    slot: i64,
    sink: LineSink,
    clock: Clock,
    /// The slot whose file could not be opened (logged once per slot).
    failed_slot: Option<i64>,
}

impl RotatingSink {
    pub fn open(target: &Target, clock: Clock) -> std::io::Result<RotatingSink> {
        let now = clock();
        let path = target.file_at(now)?;
        if target.rotate.is_some() {
            create_parent(&path)?;
        }
        Ok(RotatingSink {
            slot: target.rotate.map_or(0, |every| slot_start(now, every)),
            sink: LineSink::open(&path)?,
            target: target.clone(),
            clock,
            failed_slot: None,
        })
    }

    /// The file being written.
    pub fn path(&self) -> &str {
        self.sink.path()
    }

    /// SIGHUP: open `target`'s current file (logrotate moved the old one
    /// away, or the configuration changed). On an error the old file stays.
    pub fn reopen(&mut self, target: &Target) -> std::io::Result<()> {
        let now = (self.clock)();
        let path = target.file_at(now)?;
        if target.rotate.is_some() {
            create_parent(&path)?;
        }
        self.sink = self.sink.reopen(&path)?;
        self.target = target.clone();
        self.slot = target.rotate.map_or(0, |every| slot_start(now, every));
        self.failed_slot = None;
        Ok(())
    }

    /// Write whole matches (see [`LineSink::write_lines`]) into the file of
    /// the current slot.
    pub fn write_lines(
        &mut self,
        header: Option<&[u8]>,
        buf: &[u8],
        ends: &[usize],
    ) -> Result<(), WriteFailure> {
        self.roll();
        self.sink.write_lines(header, buf, ends)
    }

    /// Move to the current slot's file if the slot changed. A file that
    /// cannot be opened (a full disk, permissions) is logged and the
    /// previous one goes on taking the matches: nothing is lost, and the
    /// next write tries again.
    fn roll(&mut self) {
        let Some(every) = self.target.rotate else {
            return;
        };
        let slot = slot_start((self.clock)(), every);
        if slot == self.slot {
            return;
        }
        let opened = self.target.file_at(slot).and_then(|path| {
            create_parent(&path)?;
            self.sink.reopen(&path)
        });
        match opened {
            Ok(sink) => {
                tracing::debug!(path = sink.path(), "output rotated");
                self.sink = sink;
                self.slot = slot;
                self.failed_slot = None;
            }
            Err(e) => {
                if self.failed_slot != Some(slot) {
                    tracing::error!(
                        error = %e,
                        old = self.sink.path(),
                        "cannot open the next rotated output file; writing on to the old one"
                    );
                    self.failed_slot = Some(slot);
                }
            }
        }
    }
}

fn create_parent(path: &str) -> std::io::Result<()> {
    match Path::new(path).parent() {
        Some(dir) if !dir.as_os_str().is_empty() => std::fs::create_dir_all(dir),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicI64, Ordering};
    use std::sync::Arc;

    /// 2026-12-06T01:02:03.456Z
    const T: i64 = 1_796_518_923_456;

    #[test]
    fn formats_utc_conversions() {
        let t = PathTemplate::parse("/l/%Y/%m/%d/m-%H%M%S.%j.%y.jsonl").unwrap();
        assert_eq!(t.format(T), "/l/2026/12/06/m-010203.340.26.jsonl");
        let t = PathTemplate::parse("%F_%T_%s_100%%").unwrap();
        assert_eq!(t.format(T), "2026-12-06_01:02:03_1796518923_100%");
        assert!(t.varies());
        assert!(!PathTemplate::parse("/a/100%%.log").unwrap().varies());
        assert_eq!(
            PathTemplate::parse("/a/%q"),
            Err(TemplateError::Unknown('q'))
        );
        assert_eq!(PathTemplate::parse("/a/%"), Err(TemplateError::Trailing));
    }

    #[test]
    fn slots_are_aligned_to_the_epoch() {
        let five = 300_000;
        // 01:02:03.456 lies in the slot of 01:00:00.
        assert_eq!(slot_start(T, five), T - 123_456);
        assert_eq!(slot_start(T - 123_456, five), T - 123_456);
        assert_eq!(slot_start(T - 123_457, five), T - 123_456 - five);
        let target = Target {
            path: "/l/%Y%m%d/m-%H%M.jsonl".into(),
            rotate: Some(five),
        };
        assert_eq!(target.file_at(T).unwrap(), "/l/20261206/m-0100.jsonl");
        assert_eq!(
            target.file_at(T + 180_000).unwrap(),
            "/l/20261206/m-0105.jsonl"
        );
        let fixed = Target {
            path: "/l/m.jsonl".into(),
            rotate: None,
        };
        assert_eq!(fixed.file_at(T).unwrap(), "/l/m.jsonl");
    }

    fn fake_clock(at: i64) -> (Arc<AtomicI64>, Clock) {
        let now = Arc::new(AtomicI64::new(at));
        let read = now.clone();
        (now, Box::new(move || read.load(Ordering::Relaxed)))
    }

    #[test]
    fn switches_files_between_writes_with_a_header_in_each() {
        let dir = tempfile::tempdir().unwrap();
        let target = Target {
            path: format!("{}/%H/m-%M.csv", dir.path().display()),
            rotate: Some(60_000),
        };
        let (now, clock) = fake_clock(T);
        let mut sink = RotatingSink::open(&target, clock).unwrap();
        let h: Option<&[u8]> = Some(b"h\n");
        sink.write_lines(h, b"a\nb\n", &[2, 4]).unwrap();
        // 01:02:53: the same slot, the same file.
        now.store(T + 50_000, Ordering::Relaxed);
        sink.write_lines(h, b"c\n", &[2]).unwrap();
        now.store(T + 120_000, Ordering::Relaxed);
        sink.write_lines(h, b"d\n", &[2]).unwrap();
        assert!(sink.path().ends_with("/01/m-04.csv"), "{}", sink.path());
        let read = |rel: &str| std::fs::read_to_string(dir.path().join(rel)).unwrap();
        assert_eq!(read("01/m-02.csv"), "h\na\nb\nc\n");
        // 01:03 had no write: no file.
        assert!(!dir.path().join("01/m-03.csv").exists());
        assert_eq!(read("01/m-04.csv"), "h\nd\n");
        // Back in a slot whose file exists (a clock step back): it goes on
        // without a second header.
        now.store(T, Ordering::Relaxed);
        sink.write_lines(h, b"e\n", &[2]).unwrap();
        assert_eq!(read("01/m-02.csv"), "h\na\nb\nc\ne\n");
    }

    #[test]
    fn a_file_that_cannot_be_opened_leaves_the_old_one_in_use() {
        let dir = tempfile::tempdir().unwrap();
        // The next slot's directory is a file: create_dir_all fails.
        std::fs::write(dir.path().join("02"), "").unwrap();
        let target = Target {
            path: format!("{}/%M/m.jsonl", dir.path().display()),
            rotate: Some(60_000),
        };
        let (now, clock) = fake_clock(T - 60_000);
        let mut sink = RotatingSink::open(&target, clock).unwrap();
        sink.write_lines(None, b"a\n", &[2]).unwrap();
        now.store(T, Ordering::Relaxed);
        sink.write_lines(None, b"b\n", &[2]).unwrap();
        let old = dir.path().join("01/m.jsonl");
        assert_eq!(std::fs::read_to_string(old).unwrap(), "a\nb\n");
    }

    #[test]
    fn reopen_follows_a_changed_target() {
        let dir = tempfile::tempdir().unwrap();
        let fixed = Target {
            path: format!("{}/fixed.jsonl", dir.path().display()),
            rotate: None,
        };
        let (_, clock) = fake_clock(T);
        let mut sink = RotatingSink::open(&fixed, clock).unwrap();
        sink.write_lines(None, b"a\n", &[2]).unwrap();
        let rotated = Target {
            path: format!("{}/r-%H%M.jsonl", dir.path().display()),
            rotate: Some(300_000),
        };
        sink.reopen(&rotated).unwrap();
        sink.write_lines(None, b"b\n", &[2]).unwrap();
        let read = |rel: &str| std::fs::read_to_string(dir.path().join(rel)).unwrap();
        assert_eq!(read("fixed.jsonl"), "a\n");
        assert_eq!(read("r-0100.jsonl"), "b\n");
    }
}
