//! Errors of the file readers: always name the file, the offset and the reason.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("{path}: cannot open: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The content is wrong at a byte offset (or line, for text formats).
    #[error("{path}: at offset {offset}: {reason}")]
    Malformed {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    #[error("{path}: line {line}: {reason}")]
    BadLine {
        path: PathBuf,
        line: u64,
        reason: String,
    },
    #[error("{path}: cannot tell the input format; give --input-format (pcap, ipfix, flow-tools, nfcapd, jsonl, nfdump-json, goflow2)")]
    UnknownFormat { path: PathBuf },
}
