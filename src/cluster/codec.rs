//! The wire format of record batches on the cluster bus (SPEC §5): what a
//! collector publishes to `flowy.records.*` and a worker decodes.
//!
//! # Layout (version 1)
//!
//! All fixed-width integers are little-endian. A *varint* is unsigned LEB128
//! (at most 10 bytes); a *zigzag* is a signed value mapped to a varint
//! (0, −1, 1, −2, … → 0, 1, 2, 3, …).
//!
//! Header, [`HEADER_LEN`] bytes, fixed so that [`peek_header`] costs nothing:
//!
//! | offset | size | field |
//! |---:|---:|---|
//! | 0 | 1 | version ([`VERSION`]) |
//! | 1 | 2 | collector id |
//! | 3 | 6 | `first_seq`: low 48 bits of the first record's `rec_id` (0 when empty) |
//! | 9 | 4 | record count |
//! | 13 | 8 | `sent_ms` (i64) |
//! | 21 | 8 | `mark_ms` (i64): the latest record start the collector had seen when it published the batch, `i64::MIN` for none (version 2 only) |
//!
//! The mark carries time to a worker whose partition got no record (or
//! few): records that no query of the lane accepts are not published, but
//! the watermark must move as it would have with them (SPEC §3.2). A
//! version 1 batch (header 21 bytes, no mark) is still read.
//!
//! Then `count` records, nothing after them. Each record:
//!
//! 1. presence bits, 3 bytes (24 bits, see [`bits`]): one per optional
//!    field, an IPv6 flag per address, "has extras", and "same exporter as
//!    the previous record";
//! 2. `rec_id` as zigzag(`rec_id − previous rec_id − 1`), wrapping; the
//!    first record's previous is `cluster_rec_id(collector, first_seq) − 1`,
//!    so consecutive sequences cost one byte;
//! 3. `stime` as zigzag(`stime − previous stime`), wrapping; the first
//!    record's previous is `sent_ms`, close to it in practice;
//! 4. `etime` as zigzag(`etime − stime`), wrapping;
//! 5. the present fields in struct order: addresses 4 or 16 bytes (the
//!    exporter omitted when it repeats), ports 2 bytes, `prot`/`tos`/masks
//!    1 byte, the other integers varints;
//! 6. with extras: a varint count, then per element a varint id and a tagged
//!    value (tag byte: 0 uint varint, 1 IPv4, 2 IPv6, 3 float as its 8-byte
//!    bit pattern, 4 text as varint length + UTF-8, 5 set as varint count +
//!    tagged members).
//!
//! Wrapping deltas make every `i64`/`u64` round-trip exactly; records need
//! not be sorted, and a batch may hold any subset of a collector's records.
//!
//! Decoding assumes hostile bytes: it never panics, never preallocates more
//! than the remaining bytes could hold, and every error names the byte offset.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use crate::record::{Record, Time};
use crate::value::{Value, ValueSet, F64};

/// The batch format this build writes and reads.
pub const VERSION: u8 = 2;

/// The previous version, still read: its header ends before `mark_ms`.
pub const VERSION_1: u8 = 1;

/// Bytes of the fixed header this build writes.
pub const HEADER_LEN: usize = 29;

/// Bytes of a version 1 header.
const HEADER_LEN_V1: usize = 21;

/// `mark_ms` of a batch that carries no mark.
const NO_MARK: i64 = i64::MIN;

/// Bits of a sequence number inside a cluster `rec_id` (SPEC §5).
pub const SEQ_BITS: u32 = 48;

/// Mask of the sequence part of a cluster `rec_id`.
pub const SEQ_MASK: u64 = (1 << SEQ_BITS) - 1;

/// Deepest nesting of set values a batch may carry. Record extras never hold
/// sets in practice; the bound keeps a hostile batch from recursing deeply.
pub const MAX_DEPTH: usize = 16;

/// The fewest bytes a record takes: presence bits and three one-byte varints.
const MIN_RECORD_LEN: usize = 6;

/// The fewest bytes an extra element or set member takes (id or tag, value).
const MIN_VALUE_LEN: usize = 2;

/// Offsets of the header fields (in the order they follow each other).
const AT_COLLECTOR: usize = 1;
const AT_FIRST_SEQ: usize = 3;
const AT_COUNT: usize = 9;

/// Value tags of extras.
const TAG_UINT: u8 = 0;
const TAG_V4: u8 = 1;
const TAG_V6: u8 = 2;
const TAG_FLOAT: u8 = 3;
const TAG_TEXT: u8 = 4;
const TAG_SET: u8 = 5;

/// The presence bits of a record, in the order the fields follow them.
pub mod bits {
    pub const EXPORTER: u32 = 1 << 0;
    pub const SRCIP: u32 = 1 << 1;
    pub const DSTIP: u32 = 1 << 2;
    pub const NEXTHOP: u32 = 1 << 3;
    pub const SRCPORT: u32 = 1 << 4;
    pub const DSTPORT: u32 = 1 << 5;
    pub const PROT: u32 = 1 << 6;
    pub const TCP_FLAGS: u32 = 1 << 7;
    pub const TOS: u32 = 1 << 8;
    pub const BYTES: u32 = 1 << 9;
    pub const PACKETS: u32 = 1 << 10;
    pub const INPUT: u32 = 1 << 11;
    pub const OUTPUT: u32 = 1 << 12;
    pub const SRC_AS: u32 = 1 << 13;
    pub const DST_AS: u32 = 1 << 14;
    pub const SRC_MASK: u32 = 1 << 15;
    pub const DST_MASK: u32 = 1 << 16;
    pub const SAMPLING: u32 = 1 << 17;
    /// IPv6 flags: set when the address whose presence bit sits
    /// `V6_SHIFT` places lower is IPv6 (16 bytes instead of 4).
    pub const EXPORTER_V6: u32 = 1 << 18;
    pub const SRCIP_V6: u32 = 1 << 19;
    pub const DSTIP_V6: u32 = 1 << 20;
    pub const NEXTHOP_V6: u32 = 1 << 21;
    /// Distance from an address's presence bit to its IPv6 flag.
    pub const V6_SHIFT: u32 = 18;
    pub const EXTRA: u32 = 1 << 22;
    /// The exporter is the previous record's (present, no address follows).
    pub const EXPORTER_SAME: u32 = 1 << 23;
}

/// Why a batch was refused. Offsets count from the first byte of the batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error(
        "record batch version {0} is unknown (this build reads versions {VERSION_1} and {VERSION})"
    )]
    UnknownVersion(u8),
    #[error("record batch truncated at byte {offset}: {what} missing")]
    Truncated { offset: usize, what: &'static str },
    #[error("record batch byte {offset}: {what} has unknown tag {tag}")]
    BadTag {
        offset: usize,
        what: &'static str,
        tag: u8,
    },
    #[error("record batch byte {offset}: presence bits {bits:#08x} are inconsistent: {why}")]
    BadPresence {
        offset: usize,
        bits: u32,
        why: &'static str,
    },
    #[error("record batch byte {offset}: {what} overflows its type")]
    Overflow { offset: usize, what: &'static str },
    #[error("record batch byte {offset}: {what} {count} cannot fit in the {remaining} bytes left")]
    TooMany {
        offset: usize,
        what: &'static str,
        count: u64,
        remaining: usize,
    },
    #[error("record batch byte {offset}: text is not UTF-8")]
    BadUtf8 { offset: usize },
    #[error("record batch byte {offset}: sets nested deeper than {MAX_DEPTH}")]
    TooDeep { offset: usize },
    #[error(
        "record batch byte {offset}: the first record's sequence {record} is not the header's first_seq {header}"
    )]
    FirstSeqMismatch {
        offset: usize,
        header: u64,
        record: u64,
    },
    #[error("record batch byte {offset}: {len} bytes after the last record")]
    Trailing { offset: usize, len: usize },
}

impl DecodeError {
    /// The byte of the batch the error is about.
    pub fn offset(&self) -> usize {
        match self {
            DecodeError::UnknownVersion(_) => 0,
            DecodeError::Truncated { offset, .. }
            | DecodeError::BadTag { offset, .. }
            | DecodeError::BadPresence { offset, .. }
            | DecodeError::Overflow { offset, .. }
            | DecodeError::TooMany { offset, .. }
            | DecodeError::BadUtf8 { offset }
            | DecodeError::TooDeep { offset }
            | DecodeError::FirstSeqMismatch { offset, .. }
            | DecodeError::Trailing { offset, .. } => *offset,
        }
    }
}

/// Header of a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchHeader {
    pub collector: u16,
    /// Low 48 bits of the first record's `rec_id` (its sequence in a
    /// cluster); 0 for an empty batch.
    pub first_seq: u64,
    pub count: u32,
    /// The collector's clock when it published the batch (bus latency).
    pub sent_ms: i64,
    /// The latest record start the collector had seen (of any record, not
    /// only of those it published): the worker's watermark may move to it.
    pub mark_ms: Option<i64>,
}

impl BatchHeader {
    /// Where the records start.
    fn len(&self, version: u8) -> usize {
        if version == VERSION_1 {
            HEADER_LEN_V1
        } else {
            HEADER_LEN
        }
    }
}

/// A cluster `rec_id`: collector id in the high 16 bits, sequence in the low
/// 48 (SPEC §5). The sequence is taken modulo 2⁴⁸.
#[inline]
pub fn cluster_rec_id(collector: u16, seq: u64) -> u64 {
    (u64::from(collector) << SEQ_BITS) | (seq & SEQ_MASK)
}

/// The (collector id, sequence) of a cluster `rec_id`.
#[inline]
pub fn split_rec_id(rec_id: u64) -> (u16, u64) {
    ((rec_id >> SEQ_BITS) as u16, rec_id & SEQ_MASK)
}

/// Append one batch of `records` to `out`.
///
/// Takes any iterator of borrowed records, so a collector can publish a
/// subset of its batch (`indices.iter().map(|&i| &batch[i])`) or records
/// behind `Arc`s without copying them.
///
/// # Panics
///
/// With more than `u32::MAX` records (the header's count is 32 bits).
pub fn encode_batch<'a, I>(collector: u16, sent_ms: i64, records: I, out: &mut Vec<u8>)
where
    I: IntoIterator<Item = &'a Record>,
{
    encode_marked_batch(collector, sent_ms, None, records, out);
}

/// [`encode_batch`] with a time mark (see [`BatchHeader::mark_ms`]).
pub fn encode_marked_batch<'a, I>(
    collector: u16,
    sent_ms: i64,
    mark_ms: Option<i64>,
    records: I,
    out: &mut Vec<u8>,
) where
    I: IntoIterator<Item = &'a Record>,
{
    let mut records = records.into_iter().peekable();
    let first_seq = records.peek().map_or(0, |r| r.rec_id() & SEQ_MASK);
    let start = out.len();
    out.reserve(HEADER_LEN + records.size_hint().0 * 48);
    out.push(VERSION);
    out.extend_from_slice(&collector.to_le_bytes());
    out.extend_from_slice(&first_seq.to_le_bytes()[..6]);
    out.extend_from_slice(&[0; 4]); // the count, once known
    out.extend_from_slice(&sent_ms.to_le_bytes());
    out.extend_from_slice(&mark_ms.unwrap_or(NO_MARK).to_le_bytes());
    let mut prev = Prev::new(collector, first_seq, sent_ms);
    let mut count: u64 = 0;
    for r in records {
        put_record(out, r, &mut prev);
        count += 1;
    }
    let count = u32::try_from(count).expect("at most u32::MAX records in a batch");
    out[start + AT_COUNT..start + AT_COUNT + 4].copy_from_slice(&count.to_le_bytes());
}

/// Decode a whole batch: its header and records.
pub fn decode_batch(buf: &[u8]) -> Result<(BatchHeader, Vec<Record>), DecodeError> {
    let header = peek_header(buf)?;
    let mut r = Reader {
        buf,
        pos: header.len(buf[0]),
    };
    let count = header.count as usize;
    if count > r.remaining() / MIN_RECORD_LEN {
        return Err(DecodeError::TooMany {
            offset: AT_COUNT,
            what: "record count",
            count: u64::from(header.count),
            remaining: r.remaining(),
        });
    }
    // Filled in place: building each Record and moving it into the vector
    // cost a third of the decoding time in copies.
    let mut records: Vec<Record> = Vec::with_capacity(count);
    records.resize_with(count, Record::default);
    let mut prev = Prev::new(header.collector, header.first_seq, header.sent_ms);
    for (i, rec) in records.iter_mut().enumerate() {
        let at = r.pos;
        get_record(&mut r, &mut prev, rec)?;
        if i == 0 && rec.rec_id() & SEQ_MASK != header.first_seq {
            return Err(DecodeError::FirstSeqMismatch {
                offset: at,
                header: header.first_seq,
                record: rec.rec_id() & SEQ_MASK,
            });
        }
    }
    if count == 0 && header.first_seq != 0 {
        return Err(DecodeError::FirstSeqMismatch {
            offset: AT_FIRST_SEQ,
            header: header.first_seq,
            record: 0,
        });
    }
    if r.remaining() > 0 {
        return Err(DecodeError::Trailing {
            offset: r.pos,
            len: r.remaining(),
        });
    }
    Ok((header, records))
}

/// Read only the header (routing, latency, message ids); the body is not
/// checked.
pub fn peek_header(buf: &[u8]) -> Result<BatchHeader, DecodeError> {
    match buf.first() {
        None => {
            return Err(DecodeError::Truncated {
                offset: 0,
                what: "version",
            })
        }
        Some(&v) if v != VERSION && v != VERSION_1 => return Err(DecodeError::UnknownVersion(v)),
        Some(_) => {}
    }
    let version = buf[0];
    let mut r = Reader {
        buf,
        pos: AT_COLLECTOR,
    };
    let collector = u16::from_le_bytes(r.array("collector id")?);
    let [a, b, c, d, e, f] = r.array("first_seq")?;
    let first_seq = u64::from_le_bytes([a, b, c, d, e, f, 0, 0]);
    let count = u32::from_le_bytes(r.array("record count")?);
    let sent_ms = i64::from_le_bytes(r.array("sent_ms")?);
    let mark_ms = if version == VERSION_1 {
        None
    } else {
        Some(i64::from_le_bytes(r.array("mark_ms")?)).filter(|&m| m != NO_MARK)
    };
    Ok(BatchHeader {
        collector,
        first_seq,
        count,
        sent_ms,
        mark_ms,
    })
}

/// What the next record's deltas are taken against.
struct Prev {
    rec_id: u64,
    stime: Time,
    exporter: Option<IpAddr>,
}

impl Prev {
    fn new(collector: u16, first_seq: u64, sent_ms: i64) -> Self {
        Prev {
            rec_id: cluster_rec_id(collector, first_seq).wrapping_sub(1),
            stime: sent_ms,
            exporter: None,
        }
    }
}

// ---- encoding ----

#[inline]
fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

#[inline]
fn unzigzag(u: u64) -> i64 {
    ((u >> 1) as i64) ^ -((u & 1) as i64)
}

/// Where encoded bytes go: the batch itself, or [`Fixed`].
trait Sink {
    fn byte(&mut self, b: u8);
    fn bytes(&mut self, b: &[u8]);
}

impl Sink for Vec<u8> {
    #[inline]
    fn byte(&mut self, b: u8) {
        self.push(b);
    }
    #[inline]
    fn bytes(&mut self, b: &[u8]) {
        self.extend_from_slice(b);
    }
}

/// Most bytes a record takes before its extras: presence bits, three
/// 10-byte varints, four IPv6 addresses, ports, the one-byte fields, and
/// the counters' varints (u16 3 bytes, u64 10, u32 5).
const MAX_FIXED: usize = 3 + 3 * 10 + 4 * 16 + 2 * 2 + 4 + 3 + 2 * 10 + 5 * 5;

/// A record's fixed part, assembled on the stack and appended to the
/// batch at once, rather than pushed byte by byte onto the batch's `Vec`
/// with a capacity check each (a fifth of the collector's encoding time).
struct Fixed {
    buf: [u8; MAX_FIXED],
    len: usize,
}

impl Fixed {
    fn new() -> Self {
        Fixed {
            buf: [0; MAX_FIXED],
            len: 0,
        }
    }

    fn as_slice(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Sink for Fixed {
    #[inline]
    fn byte(&mut self, b: u8) {
        self.buf[self.len] = b;
        self.len += 1;
    }
    #[inline]
    fn bytes(&mut self, b: &[u8]) {
        self.buf[self.len..self.len + b.len()].copy_from_slice(b);
        self.len += b.len();
    }
}

#[inline]
fn put_varint(out: &mut impl Sink, mut v: u64) {
    while v >= 0x80 {
        out.byte(v as u8 | 0x80);
        v >>= 7;
    }
    out.byte(v as u8);
}

/// Presence bit of an address plus its IPv6 flag.
#[inline]
fn ip_bits(ip: Option<IpAddr>, bit: u32) -> u32 {
    match ip {
        None => 0,
        Some(IpAddr::V4(_)) => bit,
        Some(IpAddr::V6(_)) => bit | (bit << bits::V6_SHIFT),
    }
}

fn presence(r: &Record, exporter_same: bool) -> u32 {
    let b = |present: bool, bit: u32| if present { bit } else { 0 };
    let exporter = if exporter_same {
        bits::EXPORTER | bits::EXPORTER_SAME
    } else {
        ip_bits(r.exporter(), bits::EXPORTER)
    };
    exporter
        | ip_bits(r.srcip(), bits::SRCIP)
        | ip_bits(r.dstip(), bits::DSTIP)
        | ip_bits(r.nexthop(), bits::NEXTHOP)
        | b(r.srcport().is_some(), bits::SRCPORT)
        | b(r.dstport().is_some(), bits::DSTPORT)
        | b(r.prot().is_some(), bits::PROT)
        | b(r.tcp_flags().is_some(), bits::TCP_FLAGS)
        | b(r.tos().is_some(), bits::TOS)
        | b(r.bytes().is_some(), bits::BYTES)
        | b(r.packets().is_some(), bits::PACKETS)
        | b(r.input().is_some(), bits::INPUT)
        | b(r.output().is_some(), bits::OUTPUT)
        | b(r.src_as().is_some(), bits::SRC_AS)
        | b(r.dst_as().is_some(), bits::DST_AS)
        | b(r.src_mask().is_some(), bits::SRC_MASK)
        | b(r.dst_mask().is_some(), bits::DST_MASK)
        | b(r.sampling().is_some(), bits::SAMPLING)
        | b(!r.extra().is_empty(), bits::EXTRA)
}

#[inline]
fn put_ip(out: &mut impl Sink, ip: Option<IpAddr>) {
    match ip {
        None => {}
        Some(IpAddr::V4(a)) => out.bytes(&a.octets()),
        Some(IpAddr::V6(a)) => out.bytes(&a.octets()),
    }
}

#[inline]
fn put_opt_varint(out: &mut impl Sink, v: Option<u64>) {
    if let Some(v) = v {
        put_varint(out, v);
    }
}

fn put_record(out: &mut Vec<u8>, r: &Record, prev: &mut Prev) {
    let exporter_same = r.exporter().is_some() && r.exporter() == prev.exporter;
    let mut f = Fixed::new();
    f.bytes(&presence(r, exporter_same).to_le_bytes()[..3]);
    put_varint(
        &mut f,
        zigzag(r.rec_id().wrapping_sub(prev.rec_id).wrapping_sub(1) as i64),
    );
    put_varint(&mut f, zigzag(r.stime().wrapping_sub(prev.stime)));
    put_varint(&mut f, zigzag(r.etime().wrapping_sub(r.stime())));
    if !exporter_same {
        put_ip(&mut f, r.exporter());
    }
    put_ip(&mut f, r.srcip());
    put_ip(&mut f, r.dstip());
    put_ip(&mut f, r.nexthop());
    put_counters(&mut f, r);
    out.extend_from_slice(f.as_slice());
    if !r.extra().is_empty() {
        put_varint(out, r.extra().len() as u64);
        for (id, v) in r.extra() {
            put_varint(out, u64::from(*id));
            put_value(out, v);
        }
    }
    prev.rec_id = r.rec_id();
    prev.stime = r.stime();
    prev.exporter = r.exporter();
}

/// The fields after the addresses, in presence-bit order.
#[inline]
fn put_counters(out: &mut impl Sink, r: &Record) {
    if let Some(p) = r.srcport() {
        out.bytes(&p.to_le_bytes());
    }
    if let Some(p) = r.dstport() {
        out.bytes(&p.to_le_bytes());
    }
    if let Some(b) = r.prot() {
        out.byte(b);
    }
    put_opt_varint(out, r.tcp_flags().map(u64::from));
    if let Some(b) = r.tos() {
        out.byte(b);
    }
    put_opt_varint(out, r.bytes());
    put_opt_varint(out, r.packets());
    put_opt_varint(out, r.input().map(u64::from));
    put_opt_varint(out, r.output().map(u64::from));
    put_opt_varint(out, r.src_as().map(u64::from));
    put_opt_varint(out, r.dst_as().map(u64::from));
    if let Some(b) = r.src_mask() {
        out.byte(b);
    }
    if let Some(b) = r.dst_mask() {
        out.byte(b);
    }
    put_opt_varint(out, r.sampling().map(u64::from));
}

fn put_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Uint(u) => {
            out.push(TAG_UINT);
            put_varint(out, *u);
        }
        Value::Ip(IpAddr::V4(a)) => {
            out.push(TAG_V4);
            out.extend_from_slice(&a.octets());
        }
        Value::Ip(IpAddr::V6(a)) => {
            out.push(TAG_V6);
            out.extend_from_slice(&a.octets());
        }
        Value::Float(f) => {
            out.push(TAG_FLOAT);
            out.extend_from_slice(&f.0.to_bits().to_le_bytes());
        }
        Value::Text(s) => {
            out.push(TAG_TEXT);
            put_varint(out, s.len() as u64);
            out.extend_from_slice(s.as_bytes());
        }
        Value::Set(set) => {
            out.push(TAG_SET);
            put_varint(out, set.len() as u64);
            for m in set {
                put_value(out, m);
            }
        }
    }
}

// ---- decoding ----

/// A cursor over the batch; every read checks the bounds and reports the
/// offset it failed at.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    #[inline]
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    #[inline]
    fn truncated(&self, what: &'static str) -> DecodeError {
        DecodeError::Truncated {
            offset: self.pos,
            what,
        }
    }

    #[inline(always)]
    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        let bytes = self
            .buf
            .get(self.pos..self.pos + N)
            .ok_or_else(|| self.truncated(what))?;
        self.pos += N;
        let mut a = [0u8; N];
        a.copy_from_slice(bytes);
        Ok(a)
    }

    #[inline(always)]
    fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        let b = *self.buf.get(self.pos).ok_or_else(|| self.truncated(what))?;
        self.pos += 1;
        Ok(b)
    }

    fn bytes(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        let bytes = end
            .and_then(|e| self.buf.get(self.pos..e))
            .ok_or_else(|| self.truncated(what))?;
        self.pos += n;
        Ok(bytes)
    }

    #[inline(always)]
    fn varint(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        let start = self.pos;
        let mut v = 0u64;
        let mut shift = 0u32;
        loop {
            let b = self.u8(what)?;
            // The tenth byte holds bit 63 only.
            if shift == 63 && b > 1 {
                return Err(DecodeError::Overflow {
                    offset: start,
                    what,
                });
            }
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
            shift += 7;
        }
    }

    /// A varint that must fit `T` (a field narrower than 64 bits).
    #[inline(always)]
    fn varint_as<T: TryFrom<u64>>(&mut self, what: &'static str) -> Result<T, DecodeError> {
        let start = self.pos;
        let v = self.varint(what)?;
        T::try_from(v).map_err(|_| DecodeError::Overflow {
            offset: start,
            what,
        })
    }

    /// A count of items each at least `min_len` bytes long: refused before
    /// anything is allocated for it when the rest of the batch cannot hold
    /// that many.
    fn count(&mut self, what: &'static str, min_len: usize) -> Result<usize, DecodeError> {
        let start = self.pos;
        let n = self.varint(what)?;
        let remaining = self.remaining();
        match usize::try_from(n) {
            Ok(k) if k <= remaining / min_len => Ok(k),
            _ => Err(DecodeError::TooMany {
                offset: start,
                what,
                count: n,
                remaining,
            }),
        }
    }

    #[inline(always)]
    fn ip(&mut self, v6: bool, what: &'static str) -> Result<IpAddr, DecodeError> {
        Ok(if v6 {
            IpAddr::V6(Ipv6Addr::from(self.array::<16>(what)?))
        } else {
            IpAddr::V4(Ipv4Addr::from(self.array::<4>(what)?))
        })
    }

    /// The address of presence bit `bit`, if present.
    #[inline(always)]
    fn opt_ip(
        &mut self,
        presence: u32,
        bit: u32,
        what: &'static str,
    ) -> Result<Option<IpAddr>, DecodeError> {
        if presence & bit == 0 {
            return Ok(None);
        }
        self.ip(presence & (bit << bits::V6_SHIFT) != 0, what)
            .map(Some)
    }
}

/// Run `read` when the presence bit is set.
#[inline(always)]
fn opt<T>(
    presence: u32,
    bit: u32,
    read: impl FnOnce() -> Result<T, DecodeError>,
) -> Result<Option<T>, DecodeError> {
    if presence & bit == 0 {
        Ok(None)
    } else {
        read().map(Some)
    }
}

/// Refuse bit combinations the encoder never writes, so that every accepted
/// batch means one thing.
fn check_presence(presence: u32, offset: usize, prev: &Prev) -> Result<(), DecodeError> {
    let bad = |why| {
        Err(DecodeError::BadPresence {
            offset,
            bits: presence,
            why,
        })
    };
    let addresses = bits::EXPORTER | bits::SRCIP | bits::DSTIP | bits::NEXTHOP;
    let v6 = (presence >> bits::V6_SHIFT) & addresses;
    if v6 & !presence != 0 {
        return bad("an IPv6 flag without its address");
    }
    if presence & bits::EXPORTER_SAME != 0 {
        if presence & bits::EXPORTER == 0 || presence & bits::EXPORTER_V6 != 0 {
            return bad("a repeated exporter must be present and carry no IPv6 flag");
        }
        if prev.exporter.is_none() {
            return bad("the exporter repeats the previous record's, which has none");
        }
    }
    Ok(())
}

/// Decode one record into `rec`, a default record.
fn get_record(r: &mut Reader<'_>, prev: &mut Prev, rec: &mut Record) -> Result<(), DecodeError> {
    let at = r.pos;
    let [b0, b1, b2] = r.array::<3>("presence bits")?;
    let p = u32::from_le_bytes([b0, b1, b2, 0]);
    check_presence(p, at, prev)?;
    rec.set_rec_id(
        prev.rec_id
            .wrapping_add(1)
            .wrapping_add(unzigzag(r.varint("rec_id")?) as u64),
    );
    let stime = prev.stime.wrapping_add(unzigzag(r.varint("stime")?));
    rec.set_times(stime, stime.wrapping_add(unzigzag(r.varint("etime")?)));
    rec.set_exporter(if p & bits::EXPORTER_SAME != 0 {
        prev.exporter
    } else {
        r.opt_ip(p, bits::EXPORTER, "exporter")?
    });
    rec.set_srcip(r.opt_ip(p, bits::SRCIP, "srcip")?);
    rec.set_dstip(r.opt_ip(p, bits::DSTIP, "dstip")?);
    rec.set_nexthop(r.opt_ip(p, bits::NEXTHOP, "nexthop")?);
    get_counters(r, p, rec)?;
    if p & bits::EXTRA != 0 {
        rec.set_extra(get_extras(r)?);
    }
    prev.rec_id = rec.rec_id();
    prev.stime = rec.stime();
    prev.exporter = rec.exporter();
    Ok(())
}

/// The fields after the addresses, in presence-bit order.
#[inline]
fn get_counters(r: &mut Reader<'_>, p: u32, rec: &mut Record) -> Result<(), DecodeError> {
    use bits::*;
    rec.set_srcport(opt(p, SRCPORT, || {
        r.array("srcport").map(u16::from_le_bytes)
    })?);
    rec.set_dstport(opt(p, DSTPORT, || {
        r.array("dstport").map(u16::from_le_bytes)
    })?);
    rec.set_prot(opt(p, PROT, || r.u8("prot"))?);
    rec.set_tcp_flags(opt(p, TCP_FLAGS, || r.varint_as("tcp_flags"))?);
    rec.set_tos(opt(p, TOS, || r.u8("tos"))?);
    rec.set_bytes(opt(p, BYTES, || r.varint("bytes"))?);
    rec.set_packets(opt(p, PACKETS, || r.varint("packets"))?);
    rec.set_input(opt(p, INPUT, || r.varint_as("input"))?);
    rec.set_output(opt(p, OUTPUT, || r.varint_as("output"))?);
    rec.set_src_as(opt(p, SRC_AS, || r.varint_as("src_as"))?);
    rec.set_dst_as(opt(p, DST_AS, || r.varint_as("dst_as"))?);
    rec.set_src_mask(opt(p, SRC_MASK, || r.u8("src_mask"))?);
    rec.set_dst_mask(opt(p, DST_MASK, || r.u8("dst_mask"))?);
    rec.set_sampling(opt(p, SAMPLING, || r.varint_as("sampling"))?);
    Ok(())
}

fn get_extras(r: &mut Reader<'_>) -> Result<Vec<(u16, Value)>, DecodeError> {
    let n = r.count("extra count", MIN_VALUE_LEN)?;
    let mut extra = Vec::with_capacity(n);
    for _ in 0..n {
        let id = r.varint_as("extra element id")?;
        extra.push((id, get_value(r, 0)?));
    }
    Ok(extra)
}

fn get_value(r: &mut Reader<'_>, depth: usize) -> Result<Value, DecodeError> {
    let at = r.pos;
    Ok(match r.u8("value tag")? {
        TAG_UINT => Value::Uint(r.varint("uint value")?),
        TAG_V4 => Value::Ip(r.ip(false, "IPv4 value")?),
        TAG_V6 => Value::Ip(r.ip(true, "IPv6 value")?),
        TAG_FLOAT => Value::Float(F64(f64::from_bits(u64::from_le_bytes(
            r.array("float value")?,
        )))),
        TAG_TEXT => {
            let n = r.count("text length", 1)?;
            let text_at = r.pos;
            let bytes = r.bytes(n, "text")?;
            let s =
                std::str::from_utf8(bytes).map_err(|_| DecodeError::BadUtf8 { offset: text_at })?;
            Value::Text(Arc::from(s))
        }
        TAG_SET => {
            if depth >= MAX_DEPTH {
                return Err(DecodeError::TooDeep { offset: at });
            }
            let n = r.count("set size", MIN_VALUE_LEN)?;
            let mut members = Vec::with_capacity(n);
            for _ in 0..n {
                members.push(get_value(r, depth + 1)?);
            }
            Value::Set(ValueSet::from_vec(members))
        }
        tag => {
            return Err(DecodeError::BadTag {
                offset: at,
                what: "value",
                tag,
            })
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::test_addrs::{v4, v6};
    use crate::record::RecordFields;

    fn full(seq: u64) -> Record {
        Record::from(RecordFields {
            rec_id: cluster_rec_id(7, seq),
            exporter: v4(192, 0, 2, 1),
            srcip: v4(10, 0, 0, 1),
            dstip: v6(2),
            nexthop: v4(0, 0, 0, 0),
            srcport: Some(51_000),
            dstport: Some(443),
            prot: Some(6),
            tcp_flags: Some(0x1b),
            tos: Some(0),
            bytes: Some(123_456_789_012),
            packets: Some(1000),
            stime: 1_795_392_000_000 + seq as i64,
            etime: 1_795_392_000_250 + seq as i64,
            input: Some(1),
            output: Some(u32::MAX),
            src_as: Some(64_512),
            dst_as: Some(15_169),
            src_mask: Some(24),
            dst_mask: Some(64),
            sampling: Some(100),
            extra: vec![
                (1000, Value::Uint(u64::MAX)),
                (1001, Value::Ip(v4(1, 2, 3, 4).unwrap())),
                (1002, Value::Ip(v6(9).unwrap())),
                (1003, Value::Float(F64(-0.0))),
                (1004, Value::Text("eth0 ✓".into())),
                (
                    u16::MAX,
                    Value::Set(ValueSet::from_vec(vec![
                        Value::Uint(3),
                        Value::Text("x".into()),
                        Value::Set(ValueSet::from_vec(vec![Value::Float(F64(f64::NAN))])),
                    ])),
                ),
            ],
        })
    }

    fn bare(rec_id: u64, stime: i64, etime: i64) -> Record {
        Record::from(RecordFields {
            rec_id,
            stime,
            etime,
            ..RecordFields::default()
        })
    }

    fn encode(collector: u16, sent: i64, records: &[Record]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_batch(collector, sent, records, &mut out);
        out
    }

    fn round_trip(collector: u16, sent: i64, records: &[Record]) -> BatchHeader {
        let buf = encode(collector, sent, records);
        let (h, got) = decode_batch(&buf).expect("decodes");
        assert_eq!(got, records);
        assert_eq!(peek_header(&buf).expect("header"), h);
        h
    }

    #[test]
    fn rec_id_splits_into_collector_and_sequence() {
        let id = cluster_rec_id(0xbeef, 0x1234_5678_9abc);
        assert_eq!(id, 0xbeef_1234_5678_9abc);
        assert_eq!(split_rec_id(id), (0xbeef, 0x1234_5678_9abc));
        // The sequence wraps modulo 2^48 instead of spilling into the id.
        assert_eq!(cluster_rec_id(1, SEQ_MASK + 5), cluster_rec_id(1, 4));
        assert_eq!(split_rec_id(u64::MAX), (u16::MAX, SEQ_MASK));
    }

    #[test]
    fn header_fields_sit_at_their_documented_offsets() {
        let recs = [full(0x0102_0304_0506)];
        let buf = encode(0xa1b2, -2, &recs);
        assert_eq!(buf[0], VERSION);
        assert_eq!(buf[1..3], [0xb2, 0xa1]);
        assert_eq!(buf[3..9], [6, 5, 4, 3, 2, 1]);
        assert_eq!(buf[9..13], [1, 0, 0, 0]);
        assert_eq!(buf[13..21], (-2i64).to_le_bytes());
        assert_eq!(buf[21..29], i64::MIN.to_le_bytes());
        let h = round_trip(0xa1b2, -2, &recs);
        assert_eq!(
            h,
            BatchHeader {
                collector: 0xa1b2,
                first_seq: 0x0102_0304_0506,
                count: 1,
                sent_ms: -2,
                mark_ms: None,
            }
        );
    }

    #[test]
    fn a_cut_header_names_the_field_it_cut() {
        let buf = encode(1, 0, &[]);
        let cases = [
            (0, 0, "version"),
            (2, 1, "collector id"),
            (5, 3, "first_seq"),
        ];
        for (cut, offset, what) in cases {
            assert_eq!(
                peek_header(&buf[..cut]).unwrap_err(),
                DecodeError::Truncated { offset, what }
            );
        }
        assert_eq!(
            decode_batch(&buf[..HEADER_LEN - 1]).unwrap_err(),
            DecodeError::Truncated {
                offset: 21,
                what: "mark_ms"
            }
        );
    }

    #[test]
    fn an_empty_batch_is_just_the_header() {
        let buf = encode(3, 99, &[]);
        assert_eq!(buf.len(), HEADER_LEN);
        let (h, recs) = decode_batch(&buf).expect("decodes");
        assert!(recs.is_empty());
        assert_eq!(
            (h.collector, h.first_seq, h.count, h.sent_ms),
            (3, 0, 0, 99)
        );
    }

    #[test]
    fn every_field_and_value_kind_round_trips() {
        let mut recs: Vec<Record> = (0..5).map(full).collect();
        recs.push(bare(cluster_rec_id(7, 9), 0, 0));
        recs[2].set_exporter(v6(1));
        recs[3].set_exporter(None);
        round_trip(7, 1_795_392_100_000, &recs);
    }

    #[test]
    fn extreme_times_and_ids_round_trip() {
        let recs = [
            bare(u64::MAX, i64::MIN, i64::MAX),
            bare(0, i64::MAX, i64::MIN),
            bare(5, -1, 0),
            bare(4, 0, -1),
        ];
        round_trip(0, i64::MIN, &recs);
        round_trip(u16::MAX, i64::MAX, &recs);
    }

    #[test]
    fn a_subset_of_consecutive_records_costs_little() {
        let recs: Vec<Record> = (100..200).step_by(3).map(full).collect();
        let subset: Vec<&Record> = recs.iter().collect();
        let mut buf = Vec::new();
        encode_batch(7, 1_795_392_000_000, subset.iter().copied(), &mut buf);
        let (_, got) = decode_batch(&buf).expect("decodes");
        assert_eq!(got, recs);
        // A repeated exporter costs no address bytes; alternating ones do.
        let same = encode(7, 0, &recs).len();
        let alternating: Vec<Record> = recs
            .iter()
            .enumerate()
            .map(|(i, r)| {
                Record::from(RecordFields {
                    exporter: v4(192, 0, 2, (i % 2) as u8),
                    ..r.clone().fields()
                })
            })
            .collect();
        assert_eq!(
            encode(7, 0, &alternating).len(),
            same + 4 * (recs.len() - 1)
        );
    }

    #[test]
    fn a_wrong_version_is_named() {
        let mut buf = encode(1, 0, &[full(1)]);
        buf[0] = 3;
        assert_eq!(
            decode_batch(&buf).unwrap_err(),
            DecodeError::UnknownVersion(3)
        );
        assert_eq!(
            peek_header(&buf[..1]).unwrap_err(),
            DecodeError::UnknownVersion(3)
        );
    }

    #[test]
    fn the_mark_round_trips_and_an_empty_marked_batch_is_only_a_header() {
        let mut buf = Vec::new();
        encode_marked_batch(4, 10, Some(-7), &[], &mut buf);
        assert_eq!(buf.len(), HEADER_LEN);
        let (h, recs) = decode_batch(&buf).expect("decodes");
        assert!(recs.is_empty());
        assert_eq!(h.mark_ms, Some(-7));
        buf.clear();
        encode_marked_batch(4, 10, Some(99), &[full(1)], &mut buf);
        assert_eq!(decode_batch(&buf).expect("decodes").0.mark_ms, Some(99));
    }

    #[test]
    fn a_version_1_batch_is_still_read() {
        let recs = [full(5), full(6)];
        let v2 = encode(7, 50, &recs);
        // Version 1 is version 2 without the mark.
        let mut v1 = vec![VERSION_1];
        v1.extend_from_slice(&v2[1..21]);
        v1.extend_from_slice(&v2[HEADER_LEN..]);
        let (h, got) = decode_batch(&v1).expect("a version 1 batch decodes");
        assert_eq!(got, recs);
        assert_eq!(
            (h.collector, h.count, h.sent_ms, h.mark_ms),
            (7, 2, 50, None)
        );
    }

    #[test]
    fn every_truncation_is_an_error_at_or_before_the_cut() {
        let buf = encode(1, 0, &[full(1), full(2), bare(cluster_rec_id(1, 3), 1, 2)]);
        for cut in 0..buf.len() {
            let err = decode_batch(&buf[..cut]).expect_err("a cut batch is refused");
            assert!(err.offset() <= cut, "cut {cut}: {err}");
        }
    }

    #[test]
    fn trailing_bytes_are_refused_where_they_start() {
        let mut buf = encode(1, 0, &[full(1)]);
        let end = buf.len();
        buf.push(0);
        assert_eq!(
            decode_batch(&buf).unwrap_err(),
            DecodeError::Trailing {
                offset: end,
                len: 1
            }
        );
    }

    #[test]
    fn a_huge_record_count_is_refused_before_allocating() {
        let mut buf = encode(1, 0, &[bare(cluster_rec_id(1, 0), 0, 0)]);
        buf[AT_COUNT..AT_COUNT + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        let err = decode_batch(&buf).unwrap_err();
        assert!(
            matches!(err, DecodeError::TooMany { offset: AT_COUNT, count, .. } if count == u64::from(u32::MAX)),
            "{err:?}"
        );
    }

    /// A batch of one bare record followed by `tail` as its extras.
    fn with_extras(tail: &[u8]) -> Vec<u8> {
        let mut buf = encode(1, 0, &[bare(cluster_rec_id(1, 0), 0, 0)]);
        buf[HEADER_LEN + 2] = (bits::EXTRA >> 16) as u8;
        buf.extend_from_slice(tail);
        buf
    }

    /// Where the extras of `with_extras` start.
    const EXTRAS_AT: usize = HEADER_LEN + MIN_RECORD_LEN;

    #[test]
    fn hostile_extras_are_refused_with_their_offset() {
        let cases: [(&[u8], DecodeError); 6] = [
            (
                &[1, 9, 77, 0],
                DecodeError::BadTag {
                    offset: EXTRAS_AT + 2,
                    what: "value",
                    tag: 77,
                },
            ),
            (
                &[0xff, 0xff, 0xff, 0xff, 0x0f],
                DecodeError::TooMany {
                    offset: EXTRAS_AT,
                    what: "extra count",
                    count: 0xffff_ffff,
                    remaining: 0,
                },
            ),
            (
                &[1, 9, TAG_TEXT, 2, 0xc3, 0x28],
                DecodeError::BadUtf8 {
                    offset: EXTRAS_AT + 4,
                },
            ),
            (
                &[1, 0xff, 0xff, 0x04, TAG_UINT, 0],
                DecodeError::Overflow {
                    offset: EXTRAS_AT + 1,
                    what: "extra element id",
                },
            ),
            (
                &[
                    1, 9, TAG_UINT, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2,
                ],
                DecodeError::Overflow {
                    offset: EXTRAS_AT + 3,
                    what: "uint value",
                },
            ),
            (
                &[1, 9, TAG_V6, 1, 2, 3],
                DecodeError::Truncated {
                    offset: EXTRAS_AT + 3,
                    what: "IPv6 value",
                },
            ),
        ];
        for (tail, want) in cases {
            assert_eq!(
                decode_batch(&with_extras(tail)).unwrap_err(),
                want,
                "{tail:?}"
            );
        }
    }

    #[test]
    fn sets_nested_too_deep_are_refused() {
        let mut tail = vec![1, 9];
        for _ in 0..=MAX_DEPTH {
            tail.extend([TAG_SET, 1]);
        }
        tail.extend([TAG_UINT, 0]);
        let err = decode_batch(&with_extras(&tail)).unwrap_err();
        assert_eq!(
            err,
            DecodeError::TooDeep {
                offset: EXTRAS_AT + 2 + 2 * MAX_DEPTH
            }
        );
    }

    #[test]
    fn inconsistent_presence_bits_are_refused() {
        let at = HEADER_LEN;
        // An IPv6 flag on an absent source address.
        let mut buf = encode(1, 0, &[bare(cluster_rec_id(1, 0), 0, 0)]);
        buf[at + 2] = (bits::SRCIP_V6 >> 16) as u8;
        assert!(matches!(
            decode_batch(&buf).unwrap_err(),
            DecodeError::BadPresence { offset, .. } if offset == at
        ));
        // "Same exporter" in the first record, which has no previous one.
        let mut buf = encode(1, 0, &[bare(cluster_rec_id(1, 0), 0, 0)]);
        buf[at] = bits::EXPORTER as u8;
        buf[at + 2] = (bits::EXPORTER_SAME >> 16) as u8;
        assert!(matches!(
            decode_batch(&buf).unwrap_err(),
            DecodeError::BadPresence { offset, .. } if offset == at
        ));
    }

    #[test]
    fn a_narrow_field_overflowing_is_refused() {
        let mut r = bare(cluster_rec_id(1, 0), 0, 0);
        r.set_bytes(Some(u64::from(u32::MAX) + 1));
        let mut buf = encode(1, 0, &[r]);
        // Relabel the 64-bit `bytes` as the 32-bit `input`.
        let p = bits::INPUT.to_le_bytes();
        buf[HEADER_LEN..HEADER_LEN + 3].copy_from_slice(&p[..3]);
        assert_eq!(
            decode_batch(&buf).unwrap_err(),
            DecodeError::Overflow {
                offset: EXTRAS_AT,
                what: "input"
            }
        );
    }

    #[test]
    fn the_header_first_seq_must_be_the_first_records() {
        let mut buf = encode(7, 0, &[full(5)]);
        // The first record's id delta, 0, becomes zigzag 2 = +1.
        assert_eq!(buf[HEADER_LEN + 3], 0);
        buf[HEADER_LEN + 3] = 2;
        assert_eq!(
            decode_batch(&buf).unwrap_err(),
            DecodeError::FirstSeqMismatch {
                offset: HEADER_LEN,
                header: 5,
                record: 6
            }
        );
        let mut empty = encode(1, 0, &[]);
        empty[AT_FIRST_SEQ] = 1;
        assert_eq!(decode_batch(&empty).unwrap_err().offset(), AT_FIRST_SEQ);
    }

    #[test]
    fn errors_say_where() {
        let e = DecodeError::Truncated {
            offset: 42,
            what: "srcip",
        };
        assert_eq!(
            e.to_string(),
            "record batch truncated at byte 42: srcip missing"
        );
        assert_eq!(e.offset(), 42);
    }
}
