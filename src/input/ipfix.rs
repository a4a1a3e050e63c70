//! IPFIX files (RFC 5655): a plain sequence of IPFIX messages, each starting
//! with version 10 and its 16-bit length, decoded by the collector's `Decoder`.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;

use super::InputError;
use crate::collect::{Decoder, DecoderConfig};
use crate::record::Record;

/// True if the bytes start like an IPFIX message (format detection).
pub fn looks_like_ipfix(head: &[u8]) -> bool {
    matches!(head, [0, 10, hi, lo, ..] if u16::from_be_bytes([*hi, *lo]) >= 16)
}

/// Records of every message in the file; rec_id = index. Files carry no
/// exporter address, so `exporter` is absent.
pub fn read(path: &Path) -> Result<Vec<Record>, InputError> {
    let data = std::fs::read(path).map_err(|source| InputError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    parse(path, &data)
}

/// Decode an IPFIX file already in memory; `path` only labels errors.
pub fn parse(path: &Path, data: &[u8]) -> Result<Vec<Record>, InputError> {
    let mut decoder = Decoder::new(DecoderConfig::default());
    let from = SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0));
    let mut out = Vec::new();
    for msg in messages(data) {
        let (offset, msg) = msg.map_err(|(offset, reason)| InputError::Malformed {
            path: path.to_path_buf(),
            offset: offset as u64,
            reason,
        })?;
        let before = decoder.stats().errors.clone();
        decoder.decode(msg, from, 0, &mut out);
        let after = &decoder.stats().errors;
        // A message the decoder refuses is a malformed file, not lost data.
        if after.total() > before.total() && after.no_template == before.no_template {
            return Err(InputError::Malformed {
                path: path.to_path_buf(),
                offset: offset as u64,
                reason: format!("undecodable IPFIX message ({after:?})"),
            });
        }
    }
    for (i, r) in out.iter_mut().enumerate() {
        r.rec_id = i as u64;
        r.exporter = None;
    }
    Ok(out)
}

/// Split a file image into messages: (offset, message) or (offset, reason).
pub fn messages(data: &[u8]) -> impl Iterator<Item = Result<(usize, &[u8]), (usize, String)>> {
    let mut at = 0usize;
    let mut failed = false;
    std::iter::from_fn(move || {
        if failed || at >= data.len() {
            return None;
        }
        let head = data.get(at..at + 4);
        let result = match head {
            None => Err((
                at,
                format!(
                    "{} trailing bytes, too short for a message header",
                    data.len() - at
                ),
            )),
            Some([hi, lo, l1, l0]) => {
                let version = u16::from_be_bytes([*hi, *lo]);
                let len = usize::from(u16::from_be_bytes([*l1, *l0]));
                if version != 10 {
                    Err((at, format!("expected IPFIX version 10, found {version}")))
                } else if len < 16 {
                    Err((
                        at,
                        format!("message length {len} is shorter than its header"),
                    ))
                } else if at + len > data.len() {
                    Err((
                        at,
                        format!("message length {len} runs past the end of the file"),
                    ))
                } else {
                    Ok((at, &data[at..at + len]))
                }
            }
            Some(_) => Err((at, "unreadable message header".to_string())),
        };
        match &result {
            Ok((_, m)) => at += m.len(),
            Err(_) => failed = true,
        }
        Some(result)
    })
}
