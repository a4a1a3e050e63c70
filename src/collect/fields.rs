//! Information elements (v9 field types and IPFIX IEs share numbers for every
//! field flowy maps) → `Record`. Values arrive as raw big-endian wire bytes so
//! that one mapping serves v9, IPFIX and any value width an exporter picks.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use super::times::{self, HeaderClock, TimeFields};
use crate::iana;
use smallvec::SmallVec;

use crate::record::{ExtrasCache, FieldType, Record};
use crate::value::Value;

/// Element ids used below (IANA "IPFIX Information Elements"; the v9 field
/// types 1–127 carry the same numbers).
pub mod ie {
    pub const OCTET_DELTA: u16 = 1;
    pub const PACKET_DELTA: u16 = 2;
    pub const PROTOCOL: u16 = 4;
    pub const TOS: u16 = 5;
    pub const TCP_FLAGS: u16 = 6;
    pub const SRC_PORT: u16 = 7;
    pub const SRC_V4: u16 = 8;
    pub const SRC_MASK: u16 = 9;
    pub const INPUT: u16 = 10;
    pub const DST_PORT: u16 = 11;
    pub const DST_V4: u16 = 12;
    pub const DST_MASK: u16 = 13;
    pub const OUTPUT: u16 = 14;
    pub const NEXTHOP_V4: u16 = 15;
    pub const SRC_AS: u16 = 16;
    pub const DST_AS: u16 = 17;
    pub const END_SYSUPTIME: u16 = 21;
    pub const START_SYSUPTIME: u16 = 22;
    pub const SRC_V6: u16 = 27;
    pub const DST_V6: u16 = 28;
    pub const ICMP_TYPE_CODE_V4: u16 = 32;
    pub const SAMPLING_INTERVAL: u16 = 34;
    pub const SAMPLER_RANDOM_INTERVAL: u16 = 50;
    pub const NEXTHOP_V6: u16 = 62;
    pub const OCTET_TOTAL: u16 = 85;
    pub const PACKET_TOTAL: u16 = 86;
    pub const ICMP_TYPE_CODE_V6: u16 = 139;
    pub const START_SECONDS: u16 = 150;
    pub const END_SECONDS: u16 = 151;
    pub const START_MILLIS: u16 = 152;
    pub const END_MILLIS: u16 = 153;
    pub const START_MICROS: u16 = 154;
    pub const END_MICROS: u16 = 155;
    pub const START_NANOS: u16 = 156;
    pub const END_NANOS: u16 = 157;
    pub const START_DELTA_US: u16 = 158;
    pub const END_DELTA_US: u16 = 159;
    pub const SYSTEM_INIT_MS: u16 = 160;
    pub const DURATION_MS: u16 = 161;
    pub const DURATION_US: u16 = 162;
    pub const ICMP_TYPE_V4: u16 = 176;
    pub const ICMP_CODE_V4: u16 = 177;
    pub const ICMP_TYPE_V6: u16 = 178;
    pub const ICMP_CODE_V6: u16 = 179;
    pub const SAMPLING_PACKET_INTERVAL: u16 = 305;
}

/// Unsigned big-endian integer of 1–8 bytes (reduced-size encoding allowed).
pub fn be_uint(raw: &[u8]) -> Option<u64> {
    if raw.is_empty() || raw.len() > 8 {
        return None;
    }
    Some(raw.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
}

fn ip(raw: &[u8]) -> Option<IpAddr> {
    match raw.len() {
        4 => <[u8; 4]>::try_from(raw)
            .ok()
            .map(|b| IpAddr::V4(Ipv4Addr::from(b))),
        16 => <[u8; 16]>::try_from(raw)
            .ok()
            .map(|b| IpAddr::V6(Ipv6Addr::from(b))),
        _ => None,
    }
}

fn narrow<T: TryFrom<u64>>(raw: &[u8]) -> Option<T> {
    be_uint(raw).and_then(|v| T::try_from(v).ok())
}

/// Per-exporter facts learned from options data, applied to later records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExporterOptions {
    pub sampling: Option<u32>,
    pub system_init_ms: Option<u64>,
}

impl ExporterOptions {
    /// Keep what an options record says about sampling and the exporter clock.
    pub fn learn(&mut self, id: u16, raw: &[u8]) {
        match id {
            ie::SAMPLING_INTERVAL | ie::SAMPLER_RANDOM_INTERVAL | ie::SAMPLING_PACKET_INTERVAL => {
                if let Some(v) = narrow::<u32>(raw).filter(|v| *v > 0) {
                    self.sampling = Some(v);
                }
            }
            ie::SYSTEM_INIT_MS => self.system_init_ms = be_uint(raw),
            _ => {}
        }
    }
}

/// What the message around a record contributes.
#[derive(Clone, Copy, Debug)]
pub struct RecordContext {
    pub exporter: IpAddr,
    pub clock: HeaderClock,
    pub options: ExporterOptions,
    pub apply_sampling: bool,
}

/// Accumulates one data record's fields, then yields the `Record`.
#[derive(Debug, Default)]
pub struct RecordBuilder {
    rec: Record,
    times: TimeFields,
    total_bytes: Option<u64>,
    total_packets: Option<u64>,
    icmp_type_code: Option<u16>,
    icmp_type: Option<u8>,
    icmp_code: Option<u8>,
    sampling: Option<u32>,
    /// IANA extras, given to the record at `finish`.
    extra: SmallVec<[(u16, Value); 4]>,
}

impl RecordBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// One field of the record, by element id, as wire bytes.
    pub fn set(&mut self, id: u16, raw: &[u8]) {
        if self.set_canonical(id, raw) || self.set_time(id, raw) {
            return;
        }
        self.set_extra(id, raw);
    }

    fn set_canonical(&mut self, id: u16, raw: &[u8]) -> bool {
        let r = &mut self.rec;
        match id {
            ie::OCTET_DELTA => r.set_bytes(be_uint(raw)),
            ie::PACKET_DELTA => r.set_packets(be_uint(raw)),
            ie::OCTET_TOTAL => self.total_bytes = be_uint(raw),
            ie::PACKET_TOTAL => self.total_packets = be_uint(raw),
            ie::PROTOCOL => r.set_prot(narrow(raw)),
            ie::TOS => r.set_tos(narrow(raw)),
            ie::TCP_FLAGS => r.set_tcp_flags(narrow(raw)),
            ie::SRC_PORT => r.set_srcport(narrow(raw)),
            ie::DST_PORT => r.set_dstport(narrow(raw)),
            ie::SRC_V4 | ie::SRC_V6 => r.set_srcip(prefer_specified(ip(raw), r.srcip())),
            ie::DST_V4 | ie::DST_V6 => r.set_dstip(prefer_specified(ip(raw), r.dstip())),
            ie::NEXTHOP_V4 | ie::NEXTHOP_V6 => {
                r.set_nexthop(prefer_specified(ip(raw), r.nexthop()))
            }
            ie::SRC_MASK => r.set_src_mask(narrow(raw)),
            ie::DST_MASK => r.set_dst_mask(narrow(raw)),
            ie::INPUT => r.set_input(narrow(raw)),
            ie::OUTPUT => r.set_output(narrow(raw)),
            ie::SRC_AS => r.set_src_as(narrow(raw)),
            ie::DST_AS => r.set_dst_as(narrow(raw)),
            ie::SAMPLING_INTERVAL | ie::SAMPLER_RANDOM_INTERVAL | ie::SAMPLING_PACKET_INTERVAL => {
                self.sampling = narrow::<u32>(raw).filter(|v| *v > 0)
            }
            ie::ICMP_TYPE_V4 | ie::ICMP_TYPE_V6 => self.icmp_type = narrow(raw),
            ie::ICMP_CODE_V4 | ie::ICMP_CODE_V6 => self.icmp_code = narrow(raw),
            ie::ICMP_TYPE_CODE_V4 | ie::ICMP_TYPE_CODE_V6 => {
                self.icmp_type_code = narrow(raw);
                return false; // also queryable by its IANA name
            }
            _ => return false,
        }
        true
    }

    fn set_time(&mut self, id: u16, raw: &[u8]) -> bool {
        let t = &mut self.times;
        let v = be_uint(raw);
        match id {
            ie::START_MILLIS => t.start_ms = v.map(times::u64_to_ms),
            ie::END_MILLIS => t.end_ms = v.map(times::u64_to_ms),
            ie::START_SECONDS => t.start_ms = v.map(times::secs_to_ms),
            ie::END_SECONDS => t.end_ms = v.map(times::secs_to_ms),
            ie::START_MICROS | ie::START_NANOS => t.start_ms = ntp(raw),
            ie::END_MICROS | ie::END_NANOS => t.end_ms = ntp(raw),
            ie::START_SYSUPTIME => t.start_uptime = v,
            ie::END_SYSUPTIME => t.end_uptime = v,
            ie::SYSTEM_INIT_MS => t.system_init_ms = v,
            ie::START_DELTA_US => t.start_delta_us = v,
            ie::END_DELTA_US => t.end_delta_us = v,
            ie::DURATION_MS => t.duration_ms = v,
            ie::DURATION_US => t.duration_ms = v.map(|us| us / 1000),
            _ => return false,
        }
        true
    }

    fn set_extra(&mut self, id: u16, raw: &[u8]) {
        let Some(el) = iana::by_id(id) else { return };
        if let Some(v) = extra_value(el.ty, id, raw) {
            self.extra.push((id, v));
        }
    }

    /// The finished record: times resolved, ICMP ports normalised, sampling applied.
    pub fn finish(self, ctx: &RecordContext) -> Record {
        self.finish_shared(ctx, &mut ExtrasCache::default())
    }

    /// [`RecordBuilder::finish`], the extras shared with recent records of
    /// the exporter that carry the same (`cache`).
    pub fn finish_shared(mut self, ctx: &RecordContext, cache: &mut ExtrasCache) -> Record {
        let mut times = self.times;
        if times.system_init_ms.is_none() {
            times.system_init_ms = ctx.options.system_init_ms;
        }
        let (stime, etime) = times.resolve(ctx.clock);
        let r = &mut self.rec;
        r.set_times(stime, etime);
        r.set_exporter(Some(ctx.exporter));
        r.set_bytes(r.bytes().or(self.total_bytes));
        r.set_packets(r.packets().or(self.total_packets));
        normalise_icmp(r, self.icmp_type_code, self.icmp_type, self.icmp_code);
        let sampling = self.sampling.or(ctx.options.sampling);
        apply_sampling(r, sampling, ctx.apply_sampling);
        r.set_extra_shared(&self.extra, cache);
        self.rec
    }
}

fn ntp(raw: &[u8]) -> Option<i64> {
    (raw.len() == 8).then(|| be_uint(raw).map(times::ntp_raw_to_ms))?
}

/// ICMP: srcport 0, dstport = type·256 + code (SPEC §1.1), from whichever
/// element the exporter used.
fn normalise_icmp(r: &mut Record, type_code: Option<u16>, ty: Option<u8>, code: Option<u8>) {
    if !matches!(r.prot(), Some(1) | Some(58)) {
        return;
    }
    let from_parts = ty.map(|t| u16::from(t) << 8 | u16::from(code.unwrap_or(0)));
    let tc = type_code.or(from_parts);
    let dst = match (r.dstport(), tc) {
        (Some(0) | None, Some(tc)) => Some(tc),
        (d, _) => d,
    };
    r.set_dstport(dst);
    if r.dstport().is_some() {
        r.set_srcport(Some(0));
    }
}

/// v5 ICMP records: some exporters put type·256+code in srcport instead of
/// dstport; move it so every ICMP record follows SPEC §1.1.
pub fn normalise_v5_icmp(r: &mut Record) {
    if matches!(r.prot(), Some(1) | Some(58)) && r.dstport() == Some(0) {
        r.set_dstport(r.srcport());
        r.set_srcport(Some(0));
    } else if matches!(r.prot(), Some(1) | Some(58)) {
        r.set_srcport(Some(0));
    }
}

/// `Record::sampling` is set whenever the interval is known; counters are
/// scaled only when the operator asked for it.
pub fn apply_sampling(r: &mut Record, sampling: Option<u32>, apply: bool) {
    let Some(s) = sampling.filter(|s| *s > 0) else {
        return;
    };
    r.set_sampling(Some(s));
    if apply && s > 1 {
        r.set_bytes(r.bytes().map(|b| b.saturating_mul(u64::from(s))));
        r.set_packets(r.packets().map(|p| p.saturating_mul(u64::from(s))));
    }
}

const MAC_ELEMENTS: &[u16] = &[56, 57, 80, 81];

fn extra_value(ty: FieldType, id: u16, raw: &[u8]) -> Option<Value> {
    match ty {
        FieldType::Ip => ip(raw).map(Value::Ip),
        FieldType::Text if MAC_ELEMENTS.contains(&id) && raw.len() == 6 => {
            let s: Vec<String> = raw.iter().map(|b| format!("{b:02x}")).collect();
            Some(Value::Text(Arc::from(s.join(":"))))
        }
        FieldType::Text => {
            let s = String::from_utf8_lossy(raw);
            Some(Value::Text(Arc::from(s.trim_end_matches('\0'))))
        }
        _ => be_uint(raw).map(Value::Uint),
    }
}

/// Templates often carry both the IPv4 and the IPv6 element of an address,
/// the unused one zero-filled: an unspecified address (`0.0.0.0`, `::`)
/// must not replace one already decoded from the other family.
fn prefer_specified(new: Option<IpAddr>, old: Option<IpAddr>) -> Option<IpAddr> {
    match (new, old) {
        (Some(n), Some(o)) if n.is_unspecified() => Some(o),
        (n, o) => n.or(o),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::RecordFields;

    fn ctx() -> RecordContext {
        RecordContext {
            exporter: IpAddr::V4(Ipv4Addr::LOCALHOST),
            clock: HeaderClock {
                export_ms: 5_000,
                sys_uptime: None,
            },
            options: ExporterOptions::default(),
            apply_sampling: true,
        }
    }

    #[test]
    fn icmp_type_code_fills_dstport() {
        let mut b = RecordBuilder::new();
        b.set(ie::PROTOCOL, &[1]);
        b.set(ie::ICMP_TYPE_CODE_V4, &[8, 0]);
        let r = b.finish(&ctx());
        assert_eq!((r.srcport(), r.dstport()), (Some(0), Some(0x0800)));
        assert_eq!(r.get(crate::record::Field::IcmpType), Some(Value::Uint(8)));
    }

    #[test]
    fn v5_icmp_in_srcport_moves_to_dstport() {
        let mut r = Record::from(RecordFields {
            prot: Some(1),
            srcport: Some(0x0303),
            dstport: Some(0),
            ..RecordFields::default()
        });
        normalise_v5_icmp(&mut r);
        assert_eq!((r.srcport(), r.dstport()), (Some(0), Some(0x0303)));
    }

    #[test]
    fn totals_when_deltas_absent_and_sampling_scales() {
        let mut b = RecordBuilder::new();
        b.set(ie::OCTET_TOTAL, &[0, 0, 1, 0]);
        b.set(ie::PACKET_TOTAL, &[2]);
        b.set(ie::SAMPLING_INTERVAL, &[0, 10]);
        let r = b.finish(&ctx());
        assert_eq!(
            (r.bytes(), r.packets(), r.sampling()),
            (Some(2560), Some(20), Some(10))
        );
    }

    #[test]
    fn extras_by_iana_type() {
        let mut b = RecordBuilder::new();
        b.set(58, &[0, 42]);
        b.set(56, &[0, 1, 2, 3, 4, 5]);
        b.set(9999, &[1]);
        let r = b.finish(&ctx());
        assert_eq!(r.extra().len(), 2);
        assert_eq!(r.extra()[0], (58, Value::Uint(42)));
        assert_eq!(
            r.extra()[1],
            (56, Value::Text(Arc::from("00:01:02:03:04:05")))
        );
    }
}
