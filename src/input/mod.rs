//! Flow files into records: JSON Lines, flow-tools, pcap/pcapng of exports,
//! IPFIX files (RFC 5655), nfdump 1.7 files.

pub mod error;
pub mod flowtools;
pub mod goflow2;
pub mod ipfix;
pub mod jsonl;
pub mod nfcapd;
pub mod nfdump_json;
pub mod pcap;
pub mod source;
pub mod stream;

pub use error::InputError;
pub use source::Source;
pub use stream::stream_inputs;

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::record::{Record, Time};

/// Bytes of a source's start that format detection looks at (enough for
/// the first line of a JSON dialect).
const DETECT_BYTES: usize = 4096;

/// The file formats `flowy query` reads, by their `--input-format` names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum InputFormat {
    Pcap,
    Ipfix,
    FlowTools,
    Nfcapd,
    Jsonl,
    NfdumpJson,
    Goflow2,
}

impl InputFormat {
    pub const ALL: [InputFormat; 7] = [
        InputFormat::Pcap,
        InputFormat::Ipfix,
        InputFormat::FlowTools,
        InputFormat::Nfcapd,
        InputFormat::Jsonl,
        InputFormat::NfdumpJson,
        InputFormat::Goflow2,
    ];

    /// The `--input-format` name.
    pub fn name(self) -> &'static str {
        match self {
            InputFormat::Pcap => "pcap",
            InputFormat::Ipfix => "ipfix",
            InputFormat::FlowTools => "flow-tools",
            InputFormat::Nfcapd => "nfcapd",
            InputFormat::Jsonl => "jsonl",
            InputFormat::NfdumpJson => "nfdump-json",
            InputFormat::Goflow2 => "goflow2",
        }
    }

    /// Guess the format from a file's first bytes.
    pub fn detect(head: &[u8]) -> Option<InputFormat> {
        const PCAP_MAGICS: [[u8; 4]; 5] = [
            [0xA1, 0xB2, 0xC3, 0xD4],
            [0xD4, 0xC3, 0xB2, 0xA1],
            [0xA1, 0xB2, 0x3C, 0x4D],
            [0x4D, 0x3C, 0xB2, 0xA1],
            // pcapng section header block
            [0x0A, 0x0D, 0x0D, 0x0A],
        ];
        // nfdump file header magic 0xA50C, stored little endian.
        const NFCAPD_MAGIC: [u8; 2] = [0x0C, 0xA5];
        const IPFIX_VERSION: [u8; 2] = [0x00, 0x0A];
        let first_text = head
            .strip_prefix(b"\xEF\xBB\xBF")
            .unwrap_or(head)
            .iter()
            .find(|b| !b.is_ascii_whitespace());
        if head.starts_with(&flowtools::MAGIC) {
            Some(InputFormat::FlowTools)
        } else if PCAP_MAGICS.iter().any(|m| head.starts_with(m)) {
            Some(InputFormat::Pcap)
        } else if head.starts_with(&NFCAPD_MAGIC) {
            Some(InputFormat::Nfcapd)
        } else if head.starts_with(&IPFIX_VERSION) {
            Some(InputFormat::Ipfix)
        } else if nfdump_json::looks_like(head) {
            Some(InputFormat::NfdumpJson)
        } else if goflow2::looks_like(head) {
            Some(InputFormat::Goflow2)
        } else if first_text == Some(&b'{') {
            Some(InputFormat::Jsonl)
        } else {
            None
        }
    }
}

impl fmt::Display for InputFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An `--input-format` name that is not one of ours.
#[derive(Debug, thiserror::Error)]
#[error("unknown input format '{0}' (expected one of: pcap, ipfix, flow-tools, nfcapd, jsonl, nfdump-json, goflow2)")]
pub struct UnknownInputFormat(pub String);

impl FromStr for InputFormat {
    type Err = UnknownInputFormat;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "flowtools" | "ft" => Ok(InputFormat::FlowTools),
            "json" | "jsonlines" => Ok(InputFormat::Jsonl),
            "pcapng" => Ok(InputFormat::Pcap),
            _ => InputFormat::ALL
                .into_iter()
                .find(|f| f.name() == s)
                .ok_or_else(|| UnknownInputFormat(s.to_string())),
        }
    }
}

/// Read one file; `format` `None` = detect from content. `rec_id` = index
/// in the file (JSON Lines: line index).
pub fn read_file(path: &Path, format: Option<InputFormat>) -> Result<Vec<Record>, InputError> {
    read_source(&Source::File(path.to_path_buf()), format)
}

/// Read one source whole (gunzipped when it is gzip); `format` `None` =
/// detect from content.
pub fn read_source(src: &Source, format: Option<InputFormat>) -> Result<Vec<Record>, InputError> {
    stream::collect(|emit| stream::stream_source(src, format, emit))
}

/// Decode content already in memory; `path` only labels errors.
pub fn parse(format: InputFormat, path: &Path, data: &[u8]) -> Result<Vec<Record>, InputError> {
    match format {
        InputFormat::FlowTools => flowtools::parse(path, data),
        InputFormat::Jsonl => jsonl::parse(path, data),
        InputFormat::NfdumpJson => nfdump_json::parse(path, data),
        InputFormat::Goflow2 => goflow2::parse(path, data),
        InputFormat::Pcap => pcap::parse(path, data),
        InputFormat::Ipfix => ipfix::parse(path, data),
        InputFormat::Nfcapd => nfcapd::parse(path, data),
    }
}

/// Read several files as one input: records are concatenated in file order
/// and `rec_id`s continue from one file to the next.
pub fn read_files<P: AsRef<Path>>(
    paths: &[P],
    format: Option<InputFormat>,
) -> Result<Vec<Record>, InputError> {
    let args: Vec<PathBuf> = paths.iter().map(|p| p.as_ref().to_path_buf()).collect();
    let opts = InputOptions {
        format,
        ..InputOptions::default()
    };
    Ok(read_inputs(&args, &opts, |_| {})?.0)
}

/// How `flowy query` selects its input (SPEC §3.1).
#[derive(Clone, Debug, Default)]
pub struct InputOptions {
    /// `None` = detect each source's format from its content.
    pub format: Option<InputFormat>,
    /// Keep records with `from <= stime`.
    pub from: Option<Time>,
    /// Keep records with `stime < to`.
    pub to: Option<Time>,
}

impl InputOptions {
    fn keeps(&self, stime: Time) -> bool {
        self.from.is_none_or(|f| f <= stime) && self.to.is_none_or(|t| stime < t)
    }
}

/// What a run read, for its summary line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReadSummary {
    /// Sources read.
    pub files: usize,
    /// Files skipped whole because their stored time range lies outside
    /// `--from`/`--to`.
    pub skipped: usize,
    /// Records read (before `--from`/`--to`).
    pub records: u64,
}

/// Read `--input` arguments (files, directories, `-`) as one input, in
/// order: `rec_id`s continue from one source to the next and count every
/// record read, so a record keeps its id whatever `--from`/`--to` select.
/// `progress` hears each source before it is read. Holds every record:
/// [`stream_inputs`] hands them out one by one instead.
pub fn read_inputs(
    args: &[PathBuf],
    opts: &InputOptions,
    progress: impl FnMut(&Source),
) -> Result<(Vec<Record>, ReadSummary), InputError> {
    let mut all = Vec::new();
    let summary = stream_inputs(args, opts, progress, |r| all.push(r))?;
    Ok((all, summary))
}

/// True when a file's stored time range proves that no flow in it starts
/// in `[from, to)`, so it need not be read: nfcapd's statistics record
/// (first and last flow time) or a flow-tools header's CAP_END (no flow in
/// the file was exported after it). Names never decide it.
fn outside(src: &Source, opts: &InputOptions) -> bool {
    let Source::File(path) = src else {
        return false;
    };
    if opts.from.is_none() && opts.to.is_none() {
        return false;
    }
    let mut head = vec![0u8; flowtools::MAX_HEADER];
    let n = std::fs::File::open(path)
        .and_then(|mut f| read_head(&mut f, &mut head))
        .unwrap_or(0);
    let head = &head[..n];
    if InputFormat::detect(head) == Some(InputFormat::Nfcapd) {
        // A file that cannot tell is read (and its error reported then).
        let Ok(Some((first, last))) = nfcapd::stored_time_range(path) else {
            return false;
        };
        return opts.from.is_some_and(|f| last < f) || opts.to.is_some_and(|t| first >= t);
    }
    let from = opts.from;
    flowtools::capture_end_ms(head).is_some_and(|end| from.is_some_and(|f| end < f))
}

/// Detect a file's format from its first bytes.
pub fn detect_file(path: &Path) -> Result<InputFormat, InputError> {
    let mut head = vec![0u8; DETECT_BYTES];
    let n = std::fs::File::open(path)
        .and_then(|mut f| read_head(&mut f, &mut head))
        .map_err(|source| InputError::Open {
            path: path.to_path_buf(),
            source,
        })?;
    InputFormat::detect(&head[..n]).ok_or_else(|| InputError::UnknownFormat {
        path: path.to_path_buf(),
    })
}

fn read_head(f: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_formats_from_content() {
        let d = InputFormat::detect;
        assert_eq!(d(&[0xCF, 0x10, 1, 3]), Some(InputFormat::FlowTools));
        assert_eq!(d(&[0xD4, 0xC3, 0xB2, 0xA1]), Some(InputFormat::Pcap));
        assert_eq!(d(&[0x0A, 0x0D, 0x0D, 0x0A]), Some(InputFormat::Pcap));
        assert_eq!(d(&[0x00, 0x0A, 0x01, 0x00]), Some(InputFormat::Ipfix));
        assert_eq!(d(&[0x0C, 0xA5, 0x02, 0x00]), Some(InputFormat::Nfcapd));
        assert_eq!(d(b"  {\"stime\":1}"), Some(InputFormat::Jsonl));
        assert_eq!(d(b"hello"), None);
        assert_eq!(d(b""), None);
    }

    #[test]
    fn parses_format_names() {
        for f in InputFormat::ALL {
            assert_eq!(f.name().parse::<InputFormat>().unwrap(), f);
        }
        assert!("csv".parse::<InputFormat>().is_err());
    }

    #[test]
    fn several_files_continue_rec_ids() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.jsonl");
        let b = dir.path().join("b.jsonl");
        std::fs::write(&a, "{\"stime\":1}\n{\"stime\":2}\n").unwrap();
        std::fs::write(&b, "{\"stime\":3}\n").unwrap();
        let recs = read_files(&[&a, &b], None).unwrap();
        assert_eq!(
            recs.iter().map(|r| r.rec_id()).collect::<Vec<_>>(),
            [0, 1, 2]
        );
        assert_eq!(recs[2].stime(), 3);
    }

    #[test]
    fn nfcapd_and_unknown_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let n = dir.path().join("nfcapd.202611230900");
        std::fs::write(&n, [0x0C, 0xA5, 2, 0, 0, 0]).unwrap();
        let e = read_file(&n, None).unwrap_err().to_string();
        assert!(
            e.contains("nfcapd.202611230900") && e.contains("nfdump file header"),
            "{e}"
        );
        let u = dir.path().join("x.bin");
        std::fs::write(&u, b"garbage").unwrap();
        let e = read_file(&u, None).unwrap_err().to_string();
        assert!(e.contains("x.bin") && e.contains("--input-format"), "{e}");
        let e = read_file(&dir.path().join("missing"), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing") && e.contains("cannot open"), "{e}");
    }
}
