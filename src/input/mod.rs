//! Flow files into records: JSON Lines, flow-tools, pcap/pcapng of exports,
//! IPFIX files (RFC 5655), nfdump 1.7 files.

pub mod error;
pub mod flowtools;
pub mod ipfix;
pub mod jsonl;
pub mod nfcapd;
pub mod pcap;

pub use error::InputError;

use std::fmt;
use std::io::Read;
use std::path::Path;
use std::str::FromStr;

use crate::record::Record;

/// The file formats `flowy query` reads, by their `--input-format` names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum InputFormat {
    Pcap,
    Ipfix,
    FlowTools,
    Nfcapd,
    Jsonl,
}

impl InputFormat {
    pub const ALL: [InputFormat; 5] = [
        InputFormat::Pcap,
        InputFormat::Ipfix,
        InputFormat::FlowTools,
        InputFormat::Nfcapd,
        InputFormat::Jsonl,
    ];

    /// The `--input-format` name.
    pub fn name(self) -> &'static str {
        match self {
            InputFormat::Pcap => "pcap",
            InputFormat::Ipfix => "ipfix",
            InputFormat::FlowTools => "flow-tools",
            InputFormat::Nfcapd => "nfcapd",
            InputFormat::Jsonl => "jsonl",
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
#[error("unknown input format '{0}' (expected one of: pcap, ipfix, flow-tools, nfcapd, jsonl)")]
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
    let format = match format {
        Some(f) => f,
        None => detect_file(path)?,
    };
    match format {
        InputFormat::FlowTools => flowtools::read(path),
        InputFormat::Jsonl => jsonl::read(path),
        InputFormat::Pcap => pcap::read(path),
        InputFormat::Ipfix => ipfix::read(path),
        InputFormat::Nfcapd => nfcapd::read(path),
    }
}

/// Read several files as one input: records are concatenated in file order
/// and `rec_id`s continue from one file to the next.
pub fn read_files<P: AsRef<Path>>(
    paths: &[P],
    format: Option<InputFormat>,
) -> Result<Vec<Record>, InputError> {
    let mut all: Vec<Record> = Vec::new();
    for path in paths {
        let base = all.last().map_or(0, |r| r.rec_id + 1);
        let mut recs = read_file(path.as_ref(), format)?;
        for r in &mut recs {
            r.rec_id += base;
        }
        if all.is_empty() {
            all = recs;
        } else {
            all.append(&mut recs);
        }
    }
    Ok(all)
}

/// Detect a file's format from its first bytes.
pub fn detect_file(path: &Path) -> Result<InputFormat, InputError> {
    let mut head = [0u8; 64];
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
        assert_eq!(recs.iter().map(|r| r.rec_id).collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(recs[2].stime, 3);
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
