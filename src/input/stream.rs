//! Reading `flowy query`'s input incrementally (SPEC §3.1 "Bounded
//! memory"): source by source, and within a source block by block (message,
//! line, packet), each record handed on as soon as it is decoded. What is
//! held at a time is one block plus bounded buffers, whatever the input's size.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use super::source::{self, Opened, Source};
use super::{
    flowtools, goflow2, ipfix, jsonl, nfcapd, nfdump_json, outside, pcap, InputError, InputFormat,
    InputOptions, ReadSummary, DETECT_BYTES,
};
use crate::record::Record;

/// Read buffer of a source: large enough that reading is not the cost.
const READ_BUFFER: usize = 64 * 1024;

/// Read `--input` arguments (files, directories, `-`) as one input, in
/// order, calling `emit` with each record `opts` keeps, as it is decoded:
/// `rec_id`s continue from one source to the next and count every record
/// read, so a record keeps its id whatever `--from`/`--to` select.
/// `progress` hears each source before it is read.
///
/// Nothing is consumed beyond the sources themselves, so the same
/// arguments can be read again (a first pass), except standard input.
/// On an error the records emitted so far stand; the run should stop.
pub fn stream_inputs(
    args: &[std::path::PathBuf],
    opts: &InputOptions,
    mut progress: impl FnMut(&Source),
    mut emit: impl FnMut(Record),
) -> Result<ReadSummary, InputError> {
    let mut summary = ReadSummary::default();
    let mut base = 0u64;
    for src in source::expand(args)? {
        progress(&src);
        if outside(&src, opts) {
            summary.skipped += 1;
            continue;
        }
        let (mut read, mut next_id) = (0u64, 0u64);
        stream_source(&src, opts.format, &mut |mut r: Record| {
            read += 1;
            next_id = r.rec_id() + 1;
            if opts.keeps(r.stime()) {
                r.set_rec_id(r.rec_id() + base);
                emit(r);
            }
        })?;
        summary.files += 1;
        summary.records += read;
        base += next_id;
    }
    Ok(summary)
}

/// Decode one source (gunzipped when it is gzip), record by record;
/// `format` `None` = detect from its first bytes. `rec_id` = the record's
/// id in the source.
pub fn stream_source(
    src: &Source,
    format: Option<InputFormat>,
    emit: &mut dyn FnMut(Record),
) -> Result<(), InputError> {
    stream_opened(&src.label(), source::open(src)?, format, emit)
}

/// Decode an opened source record by record; `path` only labels errors.
pub fn stream_opened(
    path: &Path,
    opened: Opened,
    format: Option<InputFormat>,
    emit: &mut dyn FnMut(Record),
) -> Result<(), InputError> {
    let Opened {
        reader,
        fault,
        gzip,
    } = opened;
    let result = decode(path, reader, format, gzip, emit);
    // A failure below the format reader (I/O, gzip) is the cause of
    // whatever the format reader made of it.
    match fault.take() {
        Some(e) => Err(e),
        None => result,
    }
}

/// Detect the format (unless given) and decode. `verify_rest` (gzip
/// content): when the format fails, the rest is read through anyway, so a
/// damaged gzip stream, the cause, is found.
fn decode(
    path: &Path,
    mut reader: Box<dyn Read>,
    format: Option<InputFormat>,
    verify_rest: bool,
    emit: &mut dyn FnMut(Record),
) -> Result<(), InputError> {
    let io_err = |source| InputError::Open {
        path: path.to_path_buf(),
        source,
    };
    let (format, reader) = match format {
        Some(f) => (f, reader),
        None => {
            let mut head = Vec::with_capacity(DETECT_BYTES);
            (&mut reader)
                .take(DETECT_BYTES as u64)
                .read_to_end(&mut head)
                .map_err(io_err)?;
            let f = InputFormat::detect(&head).ok_or_else(|| InputError::UnknownFormat {
                path: path.to_path_buf(),
            })?;
            let rest: Box<dyn Read> = Box::new(std::io::Cursor::new(head).chain(reader));
            (f, rest)
        }
    };
    let mut r = BufReader::with_capacity(READ_BUFFER, reader);
    let decoded = stream_format(format, path, &mut r, emit);
    if decoded.is_err() && verify_rest {
        // Its own failure, if any, is kept by the source's fault.
        let _ = std::io::copy(&mut r, &mut std::io::sink());
    }
    decoded?;
    // Whatever follows the last record is read too, so a damaged gzip
    // trailer is found as when the source was read whole.
    std::io::copy(&mut r, &mut std::io::sink()).map_err(io_err)?;
    Ok(())
}

/// Decode `r` as `format`, record by record.
pub fn stream_format(
    format: InputFormat,
    path: &Path,
    r: &mut dyn BufRead,
    emit: &mut dyn FnMut(Record),
) -> Result<(), InputError> {
    match format {
        InputFormat::FlowTools => flowtools::stream(path, r, emit),
        InputFormat::Jsonl => jsonl::stream(path, r, emit),
        InputFormat::NfdumpJson => nfdump_json::stream(path, r, emit),
        InputFormat::Goflow2 => goflow2::stream(path, r, emit),
        InputFormat::Pcap => pcap::stream(path, r, emit),
        InputFormat::Ipfix => ipfix::stream(path, r, emit),
        InputFormat::Nfcapd => nfcapd::stream(path, r, emit),
    }
}

/// Collect a streaming reader's records (the whole-buffer entry points).
pub(super) fn collect(
    read: impl FnOnce(&mut dyn FnMut(Record)) -> Result<(), InputError>,
) -> Result<Vec<Record>, InputError> {
    let mut out = Vec::new();
    read(&mut |r| out.push(r))?;
    Ok(out)
}

/// Fill `buf` as far as the input goes; the count is short only at its end.
pub(super) fn read_full(r: &mut (impl Read + ?Sized), buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// A read that failed below the format (its cause is usually kept by the
/// source's fault); `offset` is where the reader was.
pub(super) fn read_failed(path: &Path, offset: u64, e: &std::io::Error) -> InputError {
    InputError::Malformed {
        path: path.to_path_buf(),
        offset,
        reason: format!("cannot read: {e}"),
    }
}

/// Call `f(index, offset, line)` for each line of a text input, with its
/// 0-based index, its byte offset and its bytes without the line end (`\n`
/// or `\r\n`). Holds one line at a time.
pub(super) fn each_line<R: BufRead>(
    path: &Path,
    mut r: R,
    mut f: impl FnMut(u64, u64, &[u8]) -> Result<(), InputError>,
) -> Result<(), InputError> {
    let mut buf = Vec::new();
    let (mut index, mut offset) = (0u64, 0u64);
    loop {
        buf.clear();
        let n = r
            .read_until(b'\n', &mut buf)
            .map_err(|e| InputError::BadLine {
                path: path.to_path_buf(),
                line: index + 1,
                reason: format!("cannot read: {e}"),
            })?;
        if n == 0 {
            return Ok(());
        }
        let line = match buf.strip_suffix(b"\n") {
            Some(l) => l.strip_suffix(b"\r").unwrap_or(l),
            None => &buf,
        };
        f(index, offset, line)?;
        index += 1;
        offset += n as u64;
    }
}
