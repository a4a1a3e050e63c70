//! The records inside an expanded block (nfxV3.h, exporter.h): flow records
//! (V3, a header plus typed extension elements), and the exporter and
//! sampler records that flows refer to by the exporter's sysid.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use smallvec::SmallVec;

use crate::record::{ExtrasCache, Record, Value};

const EXPORTER_INFO: u16 = 7;
const SAMPLER_LEGACY: u16 = 9;
const V3_RECORD: u16 = 11;
const SAMPLER: u16 = 15;

const V3_HEADER_LEN: usize = 12;
const V3_FLAG_SAMPLED: u8 = 2;

const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

/// nfdump's sampler ids for samplers that are not the exporter's own.
const SAMPLER_OVERWRITE: i64 = -3;
const SAMPLER_DEFAULT: i64 = -2;
const SAMPLER_GENERIC: i64 = -1;

/// A failure at a byte position of the expanded block.
pub type Fail = (usize, String);

/// What the file told us about its exporters so far, by sysid.
#[derive(Debug, Default)]
pub struct Exporters {
    ips: HashMap<u16, IpAddr>,
    /// (sampler id, packet interval, packet space) per exporter.
    samplers: HashMap<u16, Vec<(i64, u32, u32)>>,
    /// The extras of the records decoded last, shared by the next records
    /// that carry the same.
    extras: ExtrasCache,
}

impl Exporters {
    /// The sampling interval nfdump applied to a sampled record of this
    /// exporter: the sampler it prefers (overwrite, generic, default) or
    /// else the exporter's first one.
    fn sampling(&self, sysid: u16) -> Option<u32> {
        let list = self.samplers.get(&sysid)?;
        let pick = [SAMPLER_OVERWRITE, SAMPLER_GENERIC, SAMPLER_DEFAULT]
            .iter()
            .find_map(|id| list.iter().find(|s| s.0 == *id))
            .or_else(|| list.first())?;
        let (_, packets, space) = *pick;
        let total = u64::from(packets) + u64::from(space);
        let interval = total / u64::from(packets.max(1));
        Some(u32::try_from(interval).unwrap_or(u32::MAX).max(1))
    }
}

/// Decode the `count` records of one expanded block, appending flows.
pub fn decode_block(
    data: &[u8],
    count: u32,
    exporters: &mut Exporters,
    out: &mut Vec<Record>,
) -> Result<(), Fail> {
    let mut pos = 0usize;
    for n in 0..count {
        let rest = &data[pos..];
        if rest.len() < 4 {
            return Err((
                pos,
                format!(
                    "block says {count} records but ends after {n} (no room for a record header)"
                ),
            ));
        }
        let kind = le16(rest, 0);
        let size = usize::from(le16(rest, 2));
        if size < 4 || size > rest.len() {
            return Err((
                pos,
                format!(
                    "record {n} (type {kind}) has size {size}, but {} bytes are left in the block",
                    rest.len()
                ),
            ));
        }
        let rec = &rest[..size];
        let at = |(o, r): Fail| (pos + o, format!("record {n} (type {kind}): {r}"));
        match kind {
            V3_RECORD => out.push(decode_v3(rec, exporters).map_err(at)?),
            EXPORTER_INFO => exporter_info(rec, exporters).map_err(at)?,
            SAMPLER => sampler(rec, exporters).map_err(at)?,
            SAMPLER_LEGACY => sampler_legacy(rec, exporters).map_err(at)?,
            // statistics, interface and VRF names, legacy 1.6 record types
            _ => {}
        }
        pos += size;
    }
    Ok(())
}

/// The appendix's statistics record (type 0x8002, 18 u64 counters) holds
/// the file's first and last flow time in ms at counters 15 and 16.
const STAT_RECORD: u16 = 0x8002;
const STAT_RECORD_LEN: usize = 4 + 18 * 8;

/// First and last flow time from an expanded appendix block, if it has a
/// statistics record. Damaged records end the walk: the range is a hint.
pub fn stat_range(data: &[u8], count: u32) -> Option<(i64, i64)> {
    let mut pos = 0usize;
    for _ in 0..count {
        let rest = data.get(pos..)?;
        if rest.len() < 4 {
            return None;
        }
        let size = usize::from(le16(rest, 2));
        if size < 4 || size > rest.len() {
            return None;
        }
        if le16(rest, 0) == STAT_RECORD && size == STAT_RECORD_LEN {
            let first = i64::try_from(le64(rest, 4 + 15 * 8)).ok()?;
            let last = i64::try_from(le64(rest, 4 + 16 * 8)).ok()?;
            return Some((first, last));
        }
        pos += size;
    }
    None
}

fn need(rec: &[u8], len: usize, what: &str) -> Result<(), Fail> {
    if rec.len() < len {
        Err((
            0,
            format!("{what} needs {len} bytes, the record has {}", rec.len()),
        ))
    } else {
        Ok(())
    }
}

fn exporter_info(rec: &[u8], exporters: &mut Exporters) -> Result<(), Fail> {
    need(rec, 32, "an exporter record")?;
    let family = le16(rec, 24);
    let sysid = le16(rec, 26);
    let ip = match family {
        AF_INET => IpAddr::V4(Ipv4Addr::from(le32(rec, 16))),
        AF_INET6 => ipv6(rec, 8),
        f => {
            return Err((
                24,
                format!("exporter address family {f} is neither IPv4 nor IPv6"),
            ))
        }
    };
    exporters.ips.insert(sysid, ip);
    Ok(())
}

fn sampler(rec: &[u8], exporters: &mut Exporters) -> Result<(), Fail> {
    need(rec, 24, "a sampler record")?;
    let sysid = le16(rec, 4);
    let id = le64(rec, 8) as i64;
    let entry = (id, le32(rec, 16), le32(rec, 20));
    exporters.samplers.entry(sysid).or_default().push(entry);
    Ok(())
}

fn sampler_legacy(rec: &[u8], exporters: &mut Exporters) -> Result<(), Fail> {
    need(rec, 16, "a sampler record")?;
    let id = i64::from(le32(rec, 4) as i32);
    let interval = le32(rec, 8);
    let sysid = le16(rec, 14);
    let entry = (id, 1, interval.saturating_sub(1));
    exporters.samplers.entry(sysid).or_default().push(entry);
    Ok(())
}

/// One flow: the V3 header, then `numElements` (type, length) elements.
fn decode_v3(rec: &[u8], exporters: &mut Exporters) -> Result<Record, Fail> {
    need(rec, V3_HEADER_LEN, "a flow record header")?;
    let elements = le16(rec, 4);
    let sysid = le16(rec, 8);
    let flags = rec[10];
    let mut r = Record::default();
    r.set_exporter(exporters.ips.get(&sysid).copied());
    if flags & V3_FLAG_SAMPLED != 0 {
        r.set_sampling(exporters.sampling(sysid));
    }
    let mut extra = Extras::new();
    let mut pos = V3_HEADER_LEN;
    for i in 0..elements {
        let rest = &rec[pos..];
        if rest.len() < 4 {
            return Err((
                pos,
                format!("header says {elements} elements, the record ends after {i}"),
            ));
        }
        let (kind, len) = (le16(rest, 0), usize::from(le16(rest, 2)));
        if len < 4 || len > rest.len() {
            return Err((
                pos,
                format!(
                    "element {i} (type {kind}) has length {len}, {} bytes are left",
                    rest.len()
                ),
            ));
        }
        element(&mut r, &mut extra, kind, &rest[4..len]).map_err(|reason| (pos, reason))?;
        pos += len;
    }
    r.set_extra_shared(&extra, &mut exporters.extras);
    if matches!(r.prot(), Some(1) | Some(58)) {
        // SPEC §1.1: ICMP type·256 + code is the destination port.
        r.set_srcport(Some(0));
    }
    Ok(r)
}

/// Size of each element's payload that we read.
fn element_len(kind: u16) -> usize {
    match kind {
        1 => 48,
        2 => 8,
        3 => 32,
        4 => 12,
        5 => 24,
        6 | 7 => 8,
        8 | 10 => 4,
        9 | 11 => 16,
        _ => 0,
    }
}

/// A record's IANA extras while its elements are read.
type Extras = SmallVec<[(u16, Value); 4]>;

fn element(r: &mut Record, extra: &mut Extras, kind: u16, e: &[u8]) -> Result<(), String> {
    let want = element_len(kind);
    if e.len() < want {
        return Err(format!(
            "element type {kind} needs {want} bytes, has {}",
            e.len()
        ));
    }
    match kind {
        1 => generic_flow(r, e)?,
        2 => {
            r.set_srcip(Some(IpAddr::V4(Ipv4Addr::from(le32(e, 0)))));
            r.set_dstip(Some(IpAddr::V4(Ipv4Addr::from(le32(e, 4)))));
        }
        3 => {
            r.set_srcip(Some(ipv6(e, 0)));
            r.set_dstip(Some(ipv6(e, 16)));
        }
        4 => {
            r.set_input(Some(le32(e, 0)));
            r.set_output(Some(le32(e, 4)));
            r.set_src_mask(Some(e[8]));
            r.set_dst_mask(Some(e[9]));
            extra.push((61, Value::Uint(u64::from(e[10]))));
            extra.push((55, Value::Uint(u64::from(e[11]))));
        }
        5 => {
            extra.push((24, Value::Uint(le64(e, 8))));
            extra.push((23, Value::Uint(le64(e, 16))));
        }
        6 => {
            extra.push((58, Value::Uint(u64::from(le32(e, 0)))));
            extra.push((59, Value::Uint(u64::from(le32(e, 4)))));
        }
        7 => {
            r.set_src_as(Some(le32(e, 0)));
            r.set_dst_as(Some(le32(e, 4)));
        }
        8 => extra.push((18, Value::Ip(IpAddr::V4(Ipv4Addr::from(le32(e, 0)))))),
        9 => extra.push((63, Value::Ip(ipv6(e, 0)))),
        10 => r.set_nexthop(Some(IpAddr::V4(Ipv4Addr::from(le32(e, 0))))),
        11 => r.set_nexthop(Some(ipv6(e, 0))),
        // NSEL/NEL, MPLS, MAC, latency, payload and the rest: not in SPEC §1.1
        _ => {}
    }
    Ok(())
}

fn generic_flow(r: &mut Record, e: &[u8]) -> Result<(), String> {
    let ms = |v: u64, what: &str| {
        i64::try_from(v).map_err(|_| format!("{what} {v} ms is beyond any representable time"))
    };
    r.set_times(ms(le64(e, 0), "msecFirst")?, ms(le64(e, 8), "msecLast")?);
    r.set_packets(Some(le64(e, 24)));
    r.set_bytes(Some(le64(e, 32)));
    r.set_srcport(Some(le16(e, 40)));
    r.set_dstport(Some(le16(e, 42)));
    r.set_prot(Some(e[44]));
    r.set_tcp_flags(Some(u16::from(e[45])));
    r.set_tos(Some(e[47]));
    Ok(())
}

/// nfdump keeps an IPv6 address as two host-order (little endian) u64s,
/// the high half first.
fn ipv6(b: &[u8], at: usize) -> IpAddr {
    let hi = u128::from(le64(b, at));
    let lo = u128::from(le64(b, at + 8));
    IpAddr::V6(Ipv6Addr::from(hi << 64 | lo))
}

// Callers check the length first; the slices below are in range.
fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn le64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}
