//! Parsed v9 / IPFIX messages → records, options and sequence accounting.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::OnceLock;

use netflow_parser::variable_versions::ipfix::lookup::{IANAIPFixField, IPFixField};
use netflow_parser::variable_versions::ipfix::{FlowSetBody as IpfixBody, IPFix};
use netflow_parser::variable_versions::v9::{FlowSetBody as V9Body, V9};
use netflow_parser::{FieldValue, V9Field};

use super::exporter::{Exporter, PendingDelta};
use super::fields::{RecordBuilder, RecordContext};
use super::sequence::SeqEvent;
use super::stats::{bump, DecodeStats, OVERFLOW_IP};
use super::times::HeaderClock;
use crate::record::Record;

pub(super) struct Ctx {
    pub(super) from: SocketAddr,
    /// Bound on per-exporter stats entries.
    pub(super) cap: usize,
    pub(super) apply_sampling: bool,
    pub(super) delta: PendingDelta,
    /// Observe the message's sequence number. False for the template sets
    /// of a message whose data sets are decoded (and its sequence number
    /// observed) separately, see `fastpath::template_head`.
    pub(super) sequence: bool,
}

fn raw<'b>(buf: &'b mut Vec<u8>, v: &FieldValue) -> &'b [u8] {
    buf.clear();
    if v.write_be_bytes(buf).is_err() {
        buf.clear();
    }
    buf
}

pub(super) fn v9_packet(
    v9: &V9,
    exp: &mut Exporter,
    ctx: &Ctx,
    stats: &mut DecodeStats,
    buf: &mut Vec<u8>,
    out: &mut Vec<Record>,
) {
    let h = &v9.header;
    for fs in &v9.flowsets {
        if let V9Body::OptionsData(o) = &fs.body {
            for rec in &o.fields {
                stats.options_records += 1;
                for (f, v) in &rec.options_fields {
                    exp.options.learn(u16::from(*f), raw(buf, v));
                }
            }
        }
    }
    let rctx = RecordContext {
        exporter: ctx.from.ip(),
        clock: HeaderClock {
            export_ms: i64::from(h.unix_secs) * 1000,
            sys_uptime: Some(h.sys_up_time),
        },
        options: exp.options,
        apply_sampling: ctx.apply_sampling,
    };
    let before = out.len();
    for fs in &v9.flowsets {
        match &fs.body {
            V9Body::Data(d) => {
                for rec in &d.fields {
                    out.push(v9_record(rec, &rctx, buf));
                }
            }
            V9Body::NoTemplate(_) => stats.errors.no_template += 1,
            _ => {}
        }
    }
    let n = out.len() - before;
    let event = if ctx.sequence {
        exp.seq.observe(h.sequence_number, Some(1))
    } else {
        SeqEvent::InOrder
    };
    record_counts(stats, ctx, 9, n, event);
}

fn v9_record(rec: &[(V9Field, FieldValue)], rctx: &RecordContext, buf: &mut Vec<u8>) -> Record {
    let mut b = RecordBuilder::new();
    for (f, v) in rec {
        b.set(u16::from(*f), raw(buf, v));
    }
    b.finish(rctx)
}

pub(super) fn record_counts(
    stats: &mut DecodeStats,
    ctx: &Ctx,
    version: u16,
    n: usize,
    event: SeqEvent,
) {
    let (ip, cap) = (ctx.from.ip(), ctx.cap);
    if n > 0 {
        bump(
            &mut stats.records,
            (ip, version),
            n as u64,
            cap,
            (OVERFLOW_IP, version),
        );
    }
    match event {
        SeqEvent::InOrder => {}
        SeqEvent::Gap(g) => bump(&mut stats.sequence_gaps, ip, g, cap, OVERFLOW_IP),
        SeqEvent::Reset => stats.sequence_resets += 1,
    }
}

/// Multiply-rotate hasher for the field-id table: keys are small enum values
/// looked up once per field of every record, where SipHash dominated.
#[derive(Default)]
struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_u16(&mut self, v: u16) {
        self.write_u64(u64::from(v));
    }
    fn write_isize(&mut self, v: isize) {
        self.write_u64(v as u64);
    }
}

type IdTable = HashMap<IANAIPFixField, u16, std::hash::BuildHasherDefault<IdHasher>>;

/// Numeric element id of an IANA IPFIX field (enterprise fields have none
/// flowy maps).
pub(super) fn ipfix_id(f: &IPFixField) -> Option<u16> {
    static IDS: OnceLock<IdTable> = OnceLock::new();
    match f {
        IPFixField::IANA(IANAIPFixField::Unknown(n)) => Some(*n),
        IPFixField::IANA(x) => IDS
            .get_or_init(|| {
                (0..=u16::MAX)
                    .map(|n| (IANAIPFixField::from(n), n))
                    .collect()
            })
            .get(x)
            .copied(),
        _ => None,
    }
}

pub(super) fn ipfix_packet(
    ix: &IPFix,
    exp: &mut Exporter,
    ctx: &Ctx,
    stats: &mut DecodeStats,
    buf: &mut Vec<u8>,
    out: &mut Vec<Record>,
) {
    learn_ipfix_options(ix, exp, stats, buf);
    let h = &ix.header;
    let rctx = RecordContext {
        exporter: ctx.from.ip(),
        clock: HeaderClock {
            export_ms: i64::from(h.export_time) * 1000,
            sys_uptime: None,
        },
        options: exp.options,
        apply_sampling: ctx.apply_sampling,
    };
    // Replayed held data is appended after the message's own sets and
    // belongs to earlier messages' sequence numbers.
    let replayed = usize::try_from(ctx.delta.replayed).unwrap_or(usize::MAX);
    let native_sets = ix.flowsets.len().saturating_sub(replayed);
    let mut native_records = 0u32;
    let mut advance_known = ctx.delta.held == 0;
    let before = out.len();
    for (i, fs) in ix.flowsets.iter().enumerate() {
        let n = match &fs.body {
            IpfixBody::Data(d) => {
                for rec in &d.fields {
                    out.push(ipfix_record(rec, &rctx, buf));
                }
                d.fields.len()
            }
            IpfixBody::V9Data(d) => {
                for rec in &d.fields {
                    out.push(v9_record(rec, &rctx, buf));
                }
                d.fields.len()
            }
            // Options records are Data Records too (RFC 7011 §2): the
            // sequence number counts them (their content was learnt above).
            IpfixBody::OptionsData(o) => o.fields.len(),
            IpfixBody::V9OptionsData(o) => o.fields.len(),
            IpfixBody::NoTemplate(_) => {
                stats.errors.no_template += 1;
                advance_known = false;
                0
            }
            _ => 0,
        };
        if i < native_sets {
            native_records = native_records.saturating_add(u32::try_from(n).unwrap_or(u32::MAX));
        }
    }
    let n = out.len() - before;
    let event = match ctx.sequence {
        true => exp
            .seq
            .observe(h.sequence_number, advance_known.then_some(native_records)),
        false => SeqEvent::InOrder,
    };
    record_counts(stats, ctx, 10, n, event);
}

fn learn_ipfix_options(ix: &IPFix, exp: &mut Exporter, stats: &mut DecodeStats, buf: &mut Vec<u8>) {
    for fs in &ix.flowsets {
        match &fs.body {
            IpfixBody::OptionsData(o) => {
                for rec in &o.fields {
                    stats.options_records += 1;
                    for (f, v) in rec {
                        if let Some(id) = ipfix_id(f) {
                            exp.options.learn(id, raw(buf, v));
                        }
                    }
                }
            }
            IpfixBody::V9OptionsData(o) => {
                for rec in &o.fields {
                    stats.options_records += 1;
                    for (f, v) in &rec.options_fields {
                        exp.options.learn(u16::from(*f), raw(buf, v));
                    }
                }
            }
            _ => {}
        }
    }
}

fn ipfix_record(
    rec: &[(IPFixField, FieldValue)],
    rctx: &RecordContext,
    buf: &mut Vec<u8>,
) -> Record {
    let mut b = RecordBuilder::new();
    for (f, v) in rec {
        if let Some(id) = ipfix_id(f) {
            b.set(id, raw(buf, v));
        }
    }
    b.finish(rctx)
}
