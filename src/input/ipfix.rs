//! IPFIX files (RFC 5655): a plain sequence of IPFIX messages, each starting
//! with version 10 and its 16-bit length, decoded by the collector's `Decoder`.

use std::io::{BufReader, Read};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;

use super::stream::{collect, read_full};
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
    let file = std::fs::File::open(path).map_err(|source| InputError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    collect(|emit| stream(path, BufReader::new(file), emit))
}

/// Decode an IPFIX file already in memory; `path` only labels errors.
pub fn parse(path: &Path, data: &[u8]) -> Result<Vec<Record>, InputError> {
    collect(|emit| stream(path, data, emit))
}

/// Decode an IPFIX file message by message (`rec_id` = index in the file).
pub fn stream<R: Read>(
    path: &Path,
    mut r: R,
    emit: &mut dyn FnMut(Record),
) -> Result<(), InputError> {
    let bad = |offset: u64, reason: String| InputError::Malformed {
        path: path.to_path_buf(),
        offset,
        reason,
    };
    let mut decoder = Decoder::new(DecoderConfig::default());
    let from = SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0));
    let mut msg = Vec::with_capacity(usize::from(u16::MAX));
    let mut out = Vec::new();
    let mut next_id = 0u64;
    let mut offset = 0u64;
    loop {
        if !next_message(&mut r, &mut msg).map_err(|(o, why)| bad(offset + o, why))? {
            return Ok(());
        }
        let before = decoder.stats().errors.clone();
        decoder.decode(&msg, from, 0, &mut out);
        let after = &decoder.stats().errors;
        // A message the decoder refuses is a malformed file, not lost data.
        if after.total() > before.total() && after.no_template == before.no_template {
            return Err(bad(
                offset,
                format!("undecodable IPFIX message ({after:?})"),
            ));
        }
        for mut rec in out.drain(..) {
            rec.set_rec_id(next_id);
            rec.set_exporter(None);
            next_id += 1;
            emit(rec);
        }
        offset += msg.len() as u64;
    }
}

/// Read the next message into `msg`; false at the end of the file. Errors
/// are relative to the message's start.
fn next_message(r: &mut impl Read, msg: &mut Vec<u8>) -> Result<bool, (u64, String)> {
    let cannot = |e: std::io::Error| (0, format!("cannot read: {e}"));
    msg.resize(4, 0);
    let got = read_full(r, &mut msg[..4]).map_err(cannot)?;
    let [hi, lo, l1, l0] = [msg[0], msg[1], msg[2], msg[3]];
    match got {
        0 => return Ok(false),
        1..=3 => {
            return Err((
                0,
                format!("{got} trailing bytes, too short for a message header"),
            ))
        }
        _ => {}
    }
    let version = u16::from_be_bytes([hi, lo]);
    let len = usize::from(u16::from_be_bytes([l1, l0]));
    if version != 10 {
        return Err((0, format!("expected IPFIX version 10, found {version}")));
    }
    if len < 16 {
        return Err((
            0,
            format!("message length {len} is shorter than its header"),
        ));
    }
    msg.resize(len, 0);
    if read_full(r, &mut msg[4..]).map_err(cannot)? < len - 4 {
        return Err((
            0,
            format!("message length {len} runs past the end of the file"),
        ));
    }
    Ok(true)
}
