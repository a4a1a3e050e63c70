//! flow-tools files (stream version 3, NetFlow v5 records), as described in
//! `shared/formats/flow-tools.md`: a small TLV header, then fixed-size
//! records, zlib-compressed when the header says so.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use flate2::{Decompress, FlushDecompress, Status};

use super::stream::{collect, read_failed, read_full};
use super::InputError;
use crate::record::{Record, V5Flow};

/// First two bytes of every flow-tools file.
pub const MAGIC: [u8; 2] = [0xCF, 0x10];

const TLV_EX_VER: u16 = 0x02;
const TLV_HEADER_FLAGS: u16 = 0x08;
const FLAG_COMPRESS: u32 = 0x02;
/// Size of a NetFlow v5 record in a flow-tools stream.
const V5_RECORD_LEN: usize = 64;

/// Read a whole flow-tools file into records (`rec_id` = index in the file).
pub fn read(path: &Path) -> Result<Vec<Record>, InputError> {
    let file = std::fs::File::open(path).map_err(|source| InputError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    collect(|emit| stream(path, BufReader::new(file), emit))
}

/// Decode a flow-tools file already in memory; `path` only labels errors.
pub fn parse(path: &Path, data: &[u8]) -> Result<Vec<Record>, InputError> {
    collect(|emit| stream(path, data, emit))
}

/// Decode a flow-tools stream record by record (`rec_id` = index in the
/// file): the header, then the records, inflated a buffer at a time when
/// the header says they are compressed.
pub fn stream<R: BufRead>(
    path: &Path,
    mut r: R,
    emit: &mut dyn FnMut(Record),
) -> Result<(), InputError> {
    let err = |offset: u64, reason: String| InputError::Malformed {
        path: path.to_path_buf(),
        offset,
        reason,
    };
    let (head, file_len) = read_header(&mut r).map_err(|e| read_failed(path, 0, &e))?;
    let header = Header::parse(&head, file_len).map_err(|(o, r)| err(o as u64, r))?;
    let order = ByteOrder(header.little_endian);
    let body_offset = header.len as u64;
    if header.flags & FLAG_COMPRESS != 0 {
        inflate_records(&mut r, body_offset, order, emit).map_err(|(o, r)| err(o, r))
    } else {
        decode_records(&mut r, order, emit).map_err(|(o, r)| err(body_offset + o, r))
    }
}

/// flow-tools writes headers of a few hundred bytes; one said to be longer
/// than this is refused without being held.
const MAX_HEADER_LEN: usize = 1 << 20;

/// The header's bytes (all of them when the file ends inside the header)
/// and the file's length as far as the header's checks need it.
fn read_header(r: &mut impl Read) -> std::io::Result<(Vec<u8>, usize)> {
    let mut head = Vec::with_capacity(512);
    r.take(8).read_to_end(&mut head)?;
    let order = match head.get(2) {
        Some(1) => ByteOrder(true),
        Some(2) => ByteOrder(false),
        _ => {
            // `Header::parse` says what is wrong.
            let n = head.len();
            return Ok((head, n));
        }
    };
    if head.len() < 8 || head[..2] != MAGIC || head[3] != 3 {
        let n = head.len();
        return Ok((head, n));
    }
    let len = order.u32(&head, 4) as usize;
    if (8..=MAX_HEADER_LEN).contains(&len) {
        r.take(len as u64 - 8).read_to_end(&mut head)?;
        let n = head.len();
        return Ok((head, n));
    }
    // Refused either way; the message names the file's length.
    let rest = std::io::copy(r, &mut std::io::sink())?;
    Ok((head, 8 + rest as usize))
}

/// An error position (relative to the slice being decoded) and its reason.
type Fail = (usize, String);

/// What the reader needs from the stream-version-3 header.
#[derive(Debug, PartialEq, Eq)]
struct Header {
    little_endian: bool,
    /// Total header length: records (or the zlib stream) start here.
    len: usize,
    flags: u32,
}

impl Header {
    /// `data` holds the header (or the whole file, when it ends inside
    /// the header); `file_len` is the file's length as far as it is known.
    fn parse(data: &[u8], file_len: usize) -> Result<Header, Fail> {
        if data.len() < 8 {
            return Err((
                data.len(),
                format!(
                    "file too short for a flow-tools header ({} bytes)",
                    data.len()
                ),
            ));
        }
        if data[..2] != MAGIC {
            return Err((0, "not a flow-tools file (magic is not CF 10)".into()));
        }
        let little_endian = match data[2] {
            1 => true,
            2 => false,
            b => return Err((2, format!("unknown byte order {b} (expected 1 or 2)"))),
        };
        match data[3] {
            3 => {}
            1 => {
                return Err((
                    3,
                    "flow-tools stream version 1 is not supported (only version 3)".into(),
                ))
            }
            v => return Err((3, format!("unknown flow-tools stream version {v}"))),
        }
        let order = ByteOrder(little_endian);
        let len = order.u32(data, 4) as usize;
        if len < 8 || len > file_len {
            return Err((
                4,
                format!("header length {len} out of range (file has {file_len} bytes)"),
            ));
        }
        if len > data.len() {
            return Err((
                4,
                format!(
                    "header length {len} is beyond any flow-tools header ({MAX_HEADER_LEN} bytes)"
                ),
            ));
        }
        let (ex_ver, flags) = parse_tlvs(&data[..len], order)?;
        match ex_ver {
            Some(5) => Ok(Header {
                little_endian,
                len,
                flags: flags.unwrap_or(0),
            }),
            Some(v) => Err((
                8,
                format!("export version {v} is not supported (only NetFlow v5)"),
            )),
            None => Err((8, "header has no export version (EX_VER) TLV".into())),
        }
    }
}

/// Walk the TLV list; returns (EX_VER, HEADER_FLAGS) when present.
fn parse_tlvs(header: &[u8], order: ByteOrder) -> Result<(Option<u16>, Option<u32>), Fail> {
    let (mut ex_ver, mut flags) = (None, None);
    let mut pos = 8;
    while pos + 4 <= header.len() {
        let ty = order.u16(header, pos);
        let len = usize::from(order.u16(header, pos + 2));
        let value = header
            .get(pos + 4..pos + 4 + len)
            .ok_or_else(|| (pos, format!("header TLV type {ty} runs past the header")))?;
        match (ty, len) {
            (TLV_EX_VER, 2) => ex_ver = Some(order.u16(value, 0)),
            (TLV_HEADER_FLAGS, 4) => flags = Some(order.u32(value, 0)),
            (TLV_EX_VER | TLV_HEADER_FLAGS, _) => {
                return Err((pos, format!("header TLV type {ty} has bad length {len}")))
            }
            _ => {}
        }
        pos += 4 + len;
    }
    Ok((ex_ver, flags))
}

/// flow-tools' v5 streams compress about 5:1; only crafted input (a
/// "zip bomb" of zeros) comes near this, and it would otherwise fill memory
/// with records.
const MAX_INFLATE_RATIO: u64 = 256;

fn inflate_bound(compressed: u64) -> u64 {
    compressed
        .saturating_mul(MAX_INFLATE_RATIO)
        .saturating_add(1 << 20)
}

/// Bytes of a file's start that hold any real header (flow-tools writes a
/// few hundred).
pub const MAX_HEADER: usize = 16 * 1024;

const TLV_CAP_END: u16 = 0x07;

/// The header's CAP_END (capture end, the last export the file holds) in
/// epoch ms, from a file's first bytes; `None` when absent or unreadable.
pub fn capture_end_ms(head: &[u8]) -> Option<i64> {
    if head.len() < 8 || head[..2] != MAGIC || head[3] != 3 {
        return None;
    }
    let order = match head[2] {
        1 => ByteOrder(true),
        2 => ByteOrder(false),
        _ => return None,
    };
    let len = (order.u32(head, 4) as usize).min(head.len());
    let mut pos = 8;
    while pos + 4 <= len {
        let ty = order.u16(head, pos);
        let tlv_len = usize::from(order.u16(head, pos + 2));
        if ty == TLV_CAP_END && tlv_len == 4 && pos + 8 <= len {
            let end = order.u32(head, pos + 4);
            return (end != 0).then(|| i64::from(end) * 1000);
        }
        pos += 4 + tlv_len;
    }
    None
}

/// An error position in the file (or, for a partial record of a
/// compressed stream, in the decompressed stream) and its reason.
type Fail64 = (u64, String);

/// Inflate one or more concatenated zlib streams and decode the records as
/// they come out, so the decompressed stream never sits in memory. Errors
/// carry file offsets (`body_offset` = where the stream starts), except a
/// trailing partial record, which is located in the decompressed stream.
/// The inflated bytes are bounded by the compressed bytes read so far.
fn inflate_records<R: BufRead>(
    r: &mut R,
    body_offset: u64,
    order: ByteOrder,
    emit: &mut dyn FnMut(Record),
) -> Result<(), Fail64> {
    // Room for the records of a few hundred KiB of stream at a time.
    let mut buf = vec![0u8; INFLATE_BUFFER];
    let mut filled = 0usize;
    let mut out_total = 0u64;
    let mut next_id = 0u64;
    // Compressed bytes consumed before the current zlib stream.
    let mut pos = 0u64;
    loop {
        let more = r
            .fill_buf()
            .map_err(|e| (body_offset + pos, format!("cannot read: {e}")))?;
        if more.is_empty() {
            break;
        }
        let mut z = Decompress::new(true);
        loop {
            let (in_before, out_before) = (z.total_in(), z.total_out());
            let at = pos + in_before;
            let input = r
                .fill_buf()
                .map_err(|e| (body_offset + at, format!("cannot read: {e}")))?;
            let status = z.decompress(input, &mut buf[filled..], FlushDecompress::None);
            let used = (z.total_in() - in_before) as usize;
            r.consume(used);
            let status = status.map_err(|e| {
                let o = body_offset + pos + z.total_in();
                (o, format!("corrupt zlib stream: {e}"))
            })?;
            let produced = (z.total_out() - out_before) as usize;
            filled += produced;
            out_total += produced as u64;
            if out_total > inflate_bound(pos + z.total_in()) {
                return Err((
                    body_offset + at,
                    format!(
                        "zlib stream inflates beyond {MAX_INFLATE_RATIO}× the compressed bytes read: refused as a decompression bomb"
                    ),
                ));
            }
            filled = drain_records(&mut buf, filled, order, &mut next_id, emit);
            if status == Status::StreamEnd {
                pos += z.total_in();
                break;
            }
            // With room in the buffer, no progress means the input ran out.
            if used == 0 && produced == 0 {
                return Err((
                    body_offset + at,
                    "zlib stream truncated (file ends inside it)".into(),
                ));
            }
        }
    }
    if filled != 0 {
        return Err((
            out_total - filled as u64,
            format!(
                "truncated record: {filled} of {V5_RECORD_LEN} bytes \
                 (offset in the decompressed record stream)"
            ),
        ));
    }
    Ok(())
}

/// Decompressed bytes decoded at a time (a multiple of the record size).
const INFLATE_BUFFER: usize = 4096 * V5_RECORD_LEN;

/// Decode the whole records in `buf[..filled]`, move the partial tail to
/// the front; returns the tail's length.
fn drain_records(
    buf: &mut [u8],
    filled: usize,
    order: ByteOrder,
    next_id: &mut u64,
    emit: &mut dyn FnMut(Record),
) -> usize {
    let whole = filled - filled % V5_RECORD_LEN;
    for raw in buf[..whole].chunks_exact(V5_RECORD_LEN) {
        emit(decode_v5(raw, order, *next_id));
        *next_id += 1;
    }
    buf.copy_within(whole..filled, 0);
    filled - whole
}

/// Decode a plain array of 64-byte v5 records; offsets are relative to
/// the array's start.
fn decode_records(
    r: &mut impl Read,
    order: ByteOrder,
    emit: &mut dyn FnMut(Record),
) -> Result<(), Fail64> {
    let mut buf = vec![0u8; INFLATE_BUFFER];
    let mut next_id = 0u64;
    let mut offset = 0u64;
    loop {
        let n = read_full(r, &mut buf).map_err(|e| (offset, format!("cannot read: {e}")))?;
        let whole = n - n % V5_RECORD_LEN;
        for raw in buf[..whole].chunks_exact(V5_RECORD_LEN) {
            emit(decode_v5(raw, order, next_id));
            next_id += 1;
        }
        offset += whole as u64;
        if n < buf.len() {
            let rest = n - whole;
            if rest != 0 {
                return Err((
                    offset,
                    format!("truncated record: {rest} of {V5_RECORD_LEN} bytes"),
                ));
            }
            return Ok(());
        }
    }
}

fn decode_v5(raw: &[u8], o: ByteOrder, rec_id: u64) -> Record {
    let unix_secs = i64::from(o.u32(raw, 0));
    let unix_nsecs = i64::from(o.u32(raw, 4));
    let sys_uptime = i64::from(o.u32(raw, 8));
    // Exactly flow-tools' ftltime(): no uptime wraparound correction.
    let boot_ms = unix_secs * 1000 + unix_nsecs / 1_000_000 - sys_uptime;
    Record::from_v5(&V5Flow {
        rec_id,
        exporter: o.u32(raw, 12),
        srcip: o.u32(raw, 16),
        dstip: o.u32(raw, 20),
        nexthop: o.u32(raw, 24),
        input: o.u16(raw, 28),
        output: o.u16(raw, 30),
        packets: o.u32(raw, 32),
        bytes: o.u32(raw, 36),
        srcport: o.u16(raw, 48),
        dstport: o.u16(raw, 50),
        prot: raw[52],
        tos: raw[53],
        tcp_flags: raw[54],
        src_mask: raw[58],
        dst_mask: raw[59],
        src_as: o.u16(raw, 60),
        dst_as: o.u16(raw, 62),
        stime: boot_ms + i64::from(o.u32(raw, 40)),
        etime: boot_ms + i64::from(o.u32(raw, 44)),
    })
}

/// The file's byte order (true = little endian). Callers guarantee the
/// bounds: every read is inside a slice whose length was checked.
#[derive(Clone, Copy)]
struct ByteOrder(bool);

impl ByteOrder {
    #[inline]
    fn u16(self, b: &[u8], at: usize) -> u16 {
        let v = [b[at], b[at + 1]];
        if self.0 {
            u16::from_le_bytes(v)
        } else {
            u16::from_be_bytes(v)
        }
    }

    #[inline]
    fn u32(self, b: &[u8], at: usize) -> u32 {
        let v = [b[at], b[at + 1], b[at + 2], b[at + 3]];
        if self.0 {
            u32::from_le_bytes(v)
        } else {
            u32::from_be_bytes(v)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::ZlibEncoder;
    use flate2::Compression;
    use std::io::Write;
    use std::net::{IpAddr, Ipv4Addr};

    fn u32_bytes(little: bool, v: u32) -> [u8; 4] {
        if little {
            v.to_le_bytes()
        } else {
            v.to_be_bytes()
        }
    }

    fn u16_bytes(little: bool, v: u16) -> [u8; 2] {
        if little {
            v.to_le_bytes()
        } else {
            v.to_be_bytes()
        }
    }

    fn header(little: bool, ex_ver: u16, flags: u32) -> Vec<u8> {
        let o = |v: u32| u32_bytes(little, v);
        let o16 = |v: u16| u16_bytes(little, v);
        let mut h = vec![0xCF, 0x10, if little { 1 } else { 2 }, 3];
        h.extend_from_slice(&o(24));
        h.extend_from_slice(&o16(TLV_EX_VER));
        h.extend_from_slice(&o16(2));
        h.extend_from_slice(&o16(ex_ver));
        h.extend_from_slice(&o16(TLV_HEADER_FLAGS));
        h.extend_from_slice(&o16(4));
        h.extend_from_slice(&o(flags));
        h.extend_from_slice(&[0, 0]);
        h
    }

    /// A v5 record with the times of the doc's first trace-2009 record.
    fn record(little: bool, src: [u8; 4], dport: u16) -> Vec<u8> {
        let o = |v: u32| u32_bytes(little, v);
        let o16 = |v: u16| u16_bytes(little, v);
        let mut r = Vec::new();
        for v in [1_260_226_804, 6_027_000, 1_048_581_001, 0x7f00_0001] {
            r.extend_from_slice(&o(v));
        }
        r.extend_from_slice(&o(u32::from_be_bytes(src)));
        r.extend_from_slice(&o(0xe000_0016));
        r.extend_from_slice(&o(0));
        r.extend_from_slice(&o16(3));
        r.extend_from_slice(&o16(4));
        for v in [1, 56, 1_048_511_830, 1_048_511_840] {
            r.extend_from_slice(&o(v));
        }
        r.extend_from_slice(&o16(1234));
        r.extend_from_slice(&o16(dport));
        r.extend_from_slice(&[6, 0, 0x1b, 0, 0, 0, 24, 16]);
        r.extend_from_slice(&o16(65000));
        r.extend_from_slice(&o16(65001));
        assert_eq!(r.len(), V5_RECORD_LEN);
        r
    }

    fn zlib(data: &[u8]) -> Vec<u8> {
        let mut e = ZlibEncoder::new(Vec::new(), Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn decodes_both_byte_orders_uncompressed() {
        for little in [true, false] {
            let mut f = header(little, 5, 1);
            f.extend(record(little, [10, 0, 0, 1], 80));
            f.extend(record(little, [10, 0, 0, 2], 443));
            let recs = parse(Path::new("x.ft"), &f).unwrap();
            assert_eq!(recs.len(), 2);
            let r = &recs[0];
            assert_eq!(r.rec_id(), 0);
            assert_eq!(recs[1].rec_id(), 1);
            assert_eq!(r.srcip(), Some("10.0.0.1".parse().unwrap()));
            assert_eq!(r.dstip(), Some("224.0.0.22".parse().unwrap()));
            assert_eq!(r.exporter(), Some("127.0.0.1".parse().unwrap()));
            assert_eq!(r.stime(), 1_260_226_734_835);
            assert_eq!(r.etime(), 1_260_226_734_845);
            assert_eq!((r.input(), r.output()), (Some(3), Some(4)));
            assert_eq!((r.packets(), r.bytes()), (Some(1), Some(56)));
            assert_eq!(
                (r.srcport(), r.dstport(), r.prot()),
                (Some(1234), Some(80), Some(6))
            );
            assert_eq!(
                (r.tcp_flags(), r.src_mask(), r.dst_mask()),
                (Some(0x1b), Some(24), Some(16))
            );
            assert_eq!((r.src_as(), r.dst_as()), (Some(65000), Some(65001)));
            assert_eq!(recs[1].dstport(), Some(443));
        }
    }

    #[test]
    fn decodes_concatenated_zlib_streams() {
        let mut f = header(true, 5, 0x0A);
        f.extend(zlib(&record(true, [10, 0, 0, 1], 80)));
        f.extend(zlib(&record(true, [10, 0, 0, 2], 81)));
        let recs = parse(Path::new("x.ftz"), &f).unwrap();
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[1].dstport(), Some(81));
    }

    #[test]
    fn refuses_other_export_versions() {
        let mut f = header(true, 7, 0);
        f.extend(record(true, [10, 0, 0, 1], 80));
        let e = parse(Path::new("x.ft"), &f).unwrap_err().to_string();
        assert!(e.contains("export version 7"), "{e}");
        assert!(e.contains("x.ft"), "{e}");
    }

    #[test]
    fn partial_record_names_its_offset() {
        let mut f = header(true, 5, 0);
        f.extend(record(true, [10, 0, 0, 1], 80));
        f.extend_from_slice(&[0; 10]);
        let e = parse(Path::new("x.ft"), &f).unwrap_err().to_string();
        assert!(e.contains("at offset 88"), "{e}");
        assert!(e.contains("truncated record"), "{e}");
    }

    #[test]
    fn partial_record_in_compressed_stream() {
        let mut f = header(true, 5, 2);
        let mut plain = record(true, [10, 0, 0, 1], 80);
        plain.extend_from_slice(&[7; 10]);
        f.extend(zlib(&plain));
        let e = parse(Path::new("x.ftz"), &f).unwrap_err().to_string();
        assert!(
            e.contains("at offset 64") && e.contains("decompressed"),
            "{e}"
        );
    }

    #[test]
    fn many_records_cross_buffer_boundaries() {
        let plain: Vec<u8> = (0..10_000u32)
            .flat_map(|i| record(false, i.to_be_bytes(), (i % 65_000) as u16))
            .collect();
        let mut f = header(false, 5, 2);
        f.extend(zlib(&plain));
        let recs = parse(Path::new("x.ftz"), &f).unwrap();
        assert_eq!(recs.len(), 10_000);
        for (i, r) in recs.iter().enumerate() {
            assert_eq!(r.rec_id(), i as u64);
            assert_eq!(r.srcip(), Some(IpAddr::V4(Ipv4Addr::from(i as u32))));
        }
    }

    #[test]
    fn truncated_zlib_stream_is_an_error() {
        let mut f = header(true, 5, 2);
        let z = zlib(
            &[
                record(true, [10, 0, 0, 1], 80),
                record(true, [1, 2, 3, 4], 9),
            ]
            .concat(),
        );
        f.extend_from_slice(&z[..z.len() - 6]);
        let e = parse(Path::new("x.ftz"), &f).unwrap_err().to_string();
        assert!(e.contains("zlib"), "{e}");
    }

    #[test]
    fn a_zlib_bomb_is_refused() {
        let mut f = header(true, 5, 2);
        // 32 MiB of zero records compress to about 32 KiB.
        f.extend_from_slice(&zlib(&vec![0u8; 32 << 20]));
        let e = parse(Path::new("bomb.ftz"), &f).unwrap_err().to_string();
        assert!(e.contains("decompression bomb"), "{e}");
        assert!(e.starts_with("bomb.ftz: at offset "), "{e}");
    }

    #[test]
    fn a_header_said_to_be_huge_is_refused_unheld() {
        let mut f = header(true, 5, 0);
        f[4..8].copy_from_slice(&(2u32 << 20).to_le_bytes());
        f.resize(3 << 20, 0);
        let e = parse(Path::new("h.ft"), &f).unwrap_err().to_string();
        assert!(
            e.starts_with("h.ft: at offset 4: header length 2097152 is beyond any"),
            "{e}"
        );
        f.truncate(1 << 20);
        let e = parse(Path::new("h.ft"), &f).unwrap_err().to_string();
        assert!(e.contains("out of range (file has 1048576 bytes)"), "{e}");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for bad in [
            &[][..],
            &[0xCF, 0x10, 1, 3][..],
            &[0xCF, 0x10, 1, 3, 0xff, 0xff, 0, 0][..],
            &[0xCF, 0x10, 9, 3, 8, 0, 0, 0][..],
            &[0xCF, 0x10, 1, 1, 8, 0, 0, 0][..],
            &[0xCF, 0x10, 1, 3, 12, 0, 0, 0, 2, 0, 9, 0][..],
            &[0xCF, 0x10, 1, 3, 8, 0, 0, 0][..],
        ] {
            assert!(parse(Path::new("g"), bad).is_err(), "{bad:?}");
        }
        let mut f = header(true, 5, 2);
        f.extend_from_slice(b"not zlib at all");
        let e = parse(Path::new("g"), &f).unwrap_err().to_string();
        assert!(
            e.contains("corrupt zlib stream") && e.contains("at offset 2"),
            "{e}"
        );
    }
}
