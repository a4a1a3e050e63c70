//! Fast path for v9 / IPFIX messages made only of data sets whose templates
//! are known.
//!
//! Why it exists: decoding a data set through netflow_parser builds a
//! `Vec<(field, FieldValue)>` per record and flowy then re-encodes every
//! value to bytes for `RecordBuilder`; that was ~75 % of v9 ingest time and
//! capped v9/IPFIX decoding at under 3 M records/s per core. Here each record
//! is sliced straight out of the datagram with the template's compiled layout
//! (`layout.rs`) and fed to the same `RecordBuilder`, so the records are the
//! ones the slow path produces.
//!
//! Why netflow_parser stays the template authority: it parses every template
//! and options template, handles withdrawal, the template ID namespace shared
//! by data and options templates, LRU eviction, the template store and data
//! held until its template arrives. The fast path only reads data for a
//! template the parser holds at that moment (`has_v9_template` /
//! `has_ipfix_template`), using a layout compiled from the parser's own
//! parse output. Anything else — a template set, an unknown or withdrawn
//! template, reserved set ids, trailing bytes, a message that would exceed
//! the parser's output budget — goes through netflow_parser unchanged.
//!
//! The parser's template LRU is refreshed by data lookups. Templates read
//! here are remembered in order of use and looked up once through the parser
//! (an empty data set each) before it next parses a message, so its eviction
//! order is the one it would have had without the fast path.

use std::net::SocketAddr;

use netflow_parser::{
    DEFAULT_MAX_DECODED_FIELD_VALUES_PER_MESSAGE, DEFAULT_MAX_RECORDS_PER_FLOWSET,
};

use netflow_parser::variable_versions::ipfix::FlowSetBody as IpfixBody;
use netflow_parser::variable_versions::v9::FlowSetBody as V9Body;
use netflow_parser::NetflowPacket;

use super::check::Frame;
use super::exporter::Exporter;
use super::fields::{ExporterOptions, RecordBuilder, RecordContext};
use super::layout::{parser_bytes, Conv, Def, FieldSpec, Kind, Layout, Records};
use super::packets::{record_counts, Ctx};
use super::stats::DecodeStats;
use super::times::HeaderClock;
use crate::record::{ExtrasCache, Record};

const V9_HEADER: usize = 20;
const IPFIX_HEADER: usize = 16;
/// The parser refuses larger v9 frames.
const MAX_V9_FRAME: usize = 65_535;

/// One data set of the message: template id and body byte range.
#[derive(Clone, Copy, Debug)]
pub(super) struct SetRef {
    id: u16,
    start: usize,
    end: usize,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    b.get(at..at + 2).map(|s| u16::from_be_bytes([s[0], s[1]]))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at + 4)
        .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

fn has_template(exp: &Exporter, version: u16, id: u16) -> bool {
    if version == 9 {
        exp.parser.has_v9_template(id)
    } else {
        exp.parser.has_ipfix_template(id)
    }
}

/// Fill `sets` when every set of `msg` is a data set the fast path can decode
/// exactly as netflow_parser would.
fn plan(msg: &[u8], version: u16, exp: &Exporter, sets: &mut Vec<SetRef>) -> bool {
    sets.clear();
    let header = if version == 9 {
        V9_HEADER
    } else {
        IPFIX_HEADER
    };
    if version == 9 && msg.len() > MAX_V9_FRAME {
        return false;
    }
    let mut at = header;
    let mut values = 0usize;
    while at + 4 <= msg.len() {
        let (Some(id), Some(len)) = (u16_at(msg, at), u16_at(msg, at + 2)) else {
            return false;
        };
        let len = usize::from(len);
        if id < 256 || len < 4 || at + len > msg.len() {
            return false;
        }
        let Some(layout) = exp.layouts.get(id) else {
            return false;
        };
        if !has_template(exp, version, id) {
            return false;
        }
        let records = ((len - 4) / layout.min_len).min(DEFAULT_MAX_RECORDS_PER_FLOWSET);
        values = values.saturating_add(records.saturating_mul(layout.fields.len()));
        sets.push(SetRef {
            id,
            start: at + 4,
            end: at + len,
        });
        at += len;
    }
    // Trailing bytes (an error for v9), no sets at all, or more values than
    // the parser decodes per message: leave it to the parser.
    at == msg.len() && !sets.is_empty() && values <= DEFAULT_MAX_DECODED_FIELD_VALUES_PER_MESSAGE
}

/// The bytes the slow path hands to `RecordBuilder` / `ExporterOptions` for
/// one field; `None` when netflow_parser refuses the value.
fn value<'v>(
    f: &FieldSpec,
    raw: &'v [u8],
    one: &'v mut [u8; 1],
    buf: &'v mut Vec<u8>,
) -> Option<&'v [u8]> {
    match &f.conv {
        Conv::Raw => Some(raw),
        Conv::Table(t) => {
            one[0] = t[usize::from(*raw.first()?)];
            Some(&one[..])
        }
        Conv::Parse(dt) => {
            parser_bytes(*dt, raw, buf)?;
            Some(&buf[..])
        }
    }
}

/// Options records: count them and keep what they say about the exporter.
fn learn_options(
    layout: &Layout,
    body: &[u8],
    options: &mut ExporterOptions,
    stats: &mut DecodeStats,
) {
    let mut recs = Records::new(layout, body, DEFAULT_MAX_RECORDS_PER_FLOWSET);
    let mut learned: Vec<(u16, Vec<u8>)> = Vec::new();
    let (mut one, mut buf) = ([0u8; 1], Vec::new());
    loop {
        learned.clear();
        let complete = recs.next_record(|f, raw| {
            let Some(id) = f.id else { return true };
            match value(f, raw, &mut one, &mut buf) {
                Some(v) => {
                    learned.push((id, v.to_vec()));
                    true
                }
                None => false,
            }
        });
        if !complete {
            return;
        }
        stats.options_records += 1;
        for (id, v) in &learned {
            options.learn(*id, v);
        }
    }
}

/// Flow records of one data set; returns how many.
fn data_records(
    layout: &Layout,
    body: &[u8],
    rctx: &RecordContext,
    extras: &mut ExtrasCache,
    buf: &mut Vec<u8>,
    out: &mut Vec<Record>,
) -> usize {
    let mut recs = Records::new(layout, body, DEFAULT_MAX_RECORDS_PER_FLOWSET);
    let mut n = 0;
    let mut one = [0u8; 1];
    loop {
        let mut b = RecordBuilder::new();
        let complete = recs.next_record(|f, raw| {
            let Some(id) = f.id else { return true };
            match value(f, raw, &mut one, buf) {
                Some(v) => {
                    b.set(id, v);
                    true
                }
                None => false,
            }
        });
        if !complete {
            return n;
        }
        out.push(b.finish_shared(rctx, extras));
        n += 1;
    }
}

/// The length of the header plus the template and options template sets
/// that lead `msg` (v9 or IPFIX), when data sets (and only data sets)
/// follow them.
///
/// Why: exporters re-send their templates every few datagrams in front of
/// data (softflowd: every 16th datagram, four templates and an options
/// template). Such a message used to go to netflow_parser whole, its data
/// at four times the fast path's cost per record: a fifth of the decode
/// time of softflowd's stream. Split there (`split`), the parser reads only
/// the templates and the data sets take the fast path, with the templates
/// they just defined, as the parser would have decoded them.
pub(super) fn template_head(msg: &[u8], version: u16) -> Option<usize> {
    let (header, templates) = match version {
        9 if msg.len() <= MAX_V9_FRAME => (V9_HEADER, 0..=1),
        10 => (IPFIX_HEADER, 2..=3),
        _ => return None,
    };
    let mut at = header;
    let mut head = None;
    while at < msg.len() {
        let (id, len) = (u16_at(msg, at)?, usize::from(u16_at(msg, at + 2)?));
        if len < 4 || at + len > msg.len() {
            return None;
        }
        match head {
            None if templates.contains(&id) => {}
            // Reserved set ids, or data before any template: no split.
            None if id < 256 || at == header => return None,
            None => head = Some(at),
            // A template set behind data: no split.
            Some(_) if id < 256 => return None,
            Some(_) => {}
        }
        at += len;
    }
    head
}

/// The two messages `msg` splits into at `head` (see `template_head`): its
/// header with the template sets, and its header with the data sets; an
/// IPFIX header's length is the new message's.
pub(super) fn split(msg: &[u8], version: u16, at: usize, head: &mut Vec<u8>, tail: &mut Vec<u8>) {
    let header = if version == 9 {
        V9_HEADER
    } else {
        IPFIX_HEADER
    };
    head.clear();
    head.extend_from_slice(&msg[..at]);
    tail.clear();
    tail.extend_from_slice(&msg[..header]);
    tail.extend_from_slice(&msg[at..]);
    if version == 10 {
        for m in [head, tail] {
            let len = u16::try_from(m.len()).unwrap_or(u16::MAX);
            m[2..4].copy_from_slice(&len.to_be_bytes());
        }
    }
}

/// Body lengths of the data sets of `msg` whose template the parser lacks:
/// what it may hold when it parses the message.
pub(super) fn unknown_data_sets(msg: &[u8], version: u16, exp: &Exporter, lens: &mut Vec<usize>) {
    lens.clear();
    let mut at = if version == 9 {
        V9_HEADER
    } else {
        IPFIX_HEADER
    };
    while let (Some(id), Some(len)) = (u16_at(msg, at), u16_at(msg, at + 2)) {
        let len = usize::from(len);
        if len < 4 {
            return;
        }
        if id >= 256 && !has_template(exp, version, id) {
            lens.push((len - 4).min(msg.len().saturating_sub(at + 4)));
        }
        at += len;
    }
}

/// Decode `msg` without netflow_parser if it qualifies (see the module
/// comment); `false` leaves everything untouched for the slow path.
#[allow(clippy::too_many_arguments)]
pub(super) fn decode(
    msg: &[u8],
    frame: Frame,
    exp: &mut Exporter,
    from: SocketAddr,
    cfg: (usize, bool),
    stats: &mut DecodeStats,
    sets: &mut Vec<SetRef>,
    buf: &mut Vec<u8>,
    out: &mut Vec<Record>,
) -> bool {
    let version = frame.version;
    if frame.templates.any() || !plan(msg, version, exp, sets) {
        return false;
    }
    let (seq, clock) = if version == 9 {
        let (Some(uptime), Some(secs), Some(seq)) =
            (u32_at(msg, 4), u32_at(msg, 8), u32_at(msg, 12))
        else {
            return false;
        };
        let clock = HeaderClock {
            export_ms: i64::from(secs) * 1000,
            sys_uptime: Some(uptime),
        };
        (seq, clock)
    } else {
        let (Some(secs), Some(seq)) = (u32_at(msg, 4), u32_at(msg, 8)) else {
            return false;
        };
        let clock = HeaderClock {
            export_ms: i64::from(secs) * 1000,
            sys_uptime: None,
        };
        (seq, clock)
    };
    let (cap, apply_sampling) = cfg;
    // As in the slow path, options anywhere in the message apply to all of
    // its flow records.
    let options_before = stats.options_records;
    for s in sets.iter() {
        if let Some(l) = exp.layouts.get(s.id).filter(|l| l.kind == Kind::Options) {
            learn_options(l, &msg[s.start..s.end], &mut exp.options, stats);
        }
    }
    let rctx = RecordContext {
        exporter: from.ip(),
        clock,
        options: exp.options,
        apply_sampling,
    };
    let before = out.len();
    for s in sets.iter() {
        if let Some(l) = exp.layouts.get(s.id).filter(|l| l.kind == Kind::Data) {
            data_records(l, &msg[s.start..s.end], &rctx, &mut exp.extras, buf, out);
        }
    }
    for s in sets.iter() {
        exp.layouts.touch(s.id);
    }
    let n = out.len() - before;
    // v9 sequence numbers count packets; IPFIX counts data records, options
    // data records included (RFC 7011 §2, §3.1).
    let options = stats.options_records.saturating_sub(options_before);
    let advance = if version == 9 {
        1
    } else {
        u32::try_from((n as u64).saturating_add(options)).unwrap_or(u32::MAX)
    };
    let event = exp.seq.observe(seq, Some(advance));
    let ctx = Ctx {
        from,
        cap,
        apply_sampling,
        delta: Default::default(),
        sequence: true,
    };
    record_counts(stats, &ctx, version, n, event);
    true
}

/// Keep the layouts in step with what netflow_parser did with a message it
/// parsed: compile the templates it accepted, forget templates it no longer
/// holds. After a parse error, or when templates came back from the template
/// store (whose definitions the output does not show), start over: layouts
/// return with the next template announcement.
pub(super) fn learn(exp: &mut Exporter, version: u16, packets: &[NetflowPacket], reset: bool) {
    if reset {
        exp.layouts.clear();
    }
    for p in packets {
        match p {
            NetflowPacket::V9(v9) => {
                for fs in &v9.flowsets {
                    match &fs.body {
                        V9Body::Template(ts) => {
                            for t in &ts.templates {
                                exp.note_template(t.template_id, t.fields.len());
                                exp.layouts.learn(t.template_id, Def::V9Data(t));
                            }
                        }
                        V9Body::OptionsTemplate(ts) => {
                            for t in &ts.templates {
                                let n = t.scope_fields.len() + t.option_fields.len();
                                exp.note_template(t.template_id, n);
                                exp.layouts.learn(t.template_id, Def::V9Options(t));
                            }
                        }
                        _ => {}
                    }
                }
            }
            NetflowPacket::IPFix(ix) => {
                for fs in &ix.flowsets {
                    learn_ipfix(exp, &fs.body);
                }
            }
            _ => {}
        }
    }
    exp.retain_templates(version);
}

fn learn_ipfix(exp: &mut Exporter, body: &IpfixBody) {
    match body {
        IpfixBody::Template(t) => {
            learn_one(exp, t.template_id, t.fields.len(), Some(Def::IpfixData(t)))
        }
        IpfixBody::Templates(ts) => ts
            .iter()
            .for_each(|t| learn_one(exp, t.template_id, t.fields.len(), Some(Def::IpfixData(t)))),
        IpfixBody::OptionsTemplate(t) => learn_one(
            exp,
            t.template_id,
            t.fields.len(),
            Some(Def::IpfixOptions(t)),
        ),
        IpfixBody::OptionsTemplates(ts) => ts.iter().for_each(|t| {
            learn_one(
                exp,
                t.template_id,
                t.fields.len(),
                Some(Def::IpfixOptions(t)),
            )
        }),
        // v9-style templates inside IPFIX: left to the slow path.
        IpfixBody::V9Template(t) => learn_one(exp, t.template_id, t.fields.len(), None),
        IpfixBody::V9Templates(ts) => ts
            .iter()
            .for_each(|t| learn_one(exp, t.template_id, t.fields.len(), None)),
        IpfixBody::V9OptionsTemplate(t) => {
            let n = t.scope_fields.len() + t.option_fields.len();
            learn_one(exp, t.template_id, n, None)
        }
        IpfixBody::V9OptionsTemplates(ts) => ts.iter().for_each(|t| {
            let n = t.scope_fields.len() + t.option_fields.len();
            learn_one(exp, t.template_id, n, None)
        }),
        _ => {}
    }
}

/// Note a template the parser accepted; compile it when the fast path can
/// read its data (`def`), else forget any older layout under its id.
fn learn_one(exp: &mut Exporter, id: u16, fields: usize, def: Option<Def<'_>>) {
    exp.note_template(id, fields);
    match def {
        Some(def) => exp.layouts.learn(id, def),
        None => exp.layouts.forget(id),
    }
}

/// Before netflow_parser parses a message, look up the templates the fast
/// path used since, least recently used first, through empty data sets: its
/// LRU then evicts exactly what it would have evicted without the fast path.
pub(super) fn sync_lru(exp: &mut Exporter, version: u16) {
    let ids = exp.layouts.take_touched();
    let ids: Vec<u16> = ids
        .into_iter()
        .filter(|id| has_template(exp, version, *id))
        .collect();
    if ids.is_empty() {
        return;
    }
    let mut msg = Vec::with_capacity(V9_HEADER + 4 * ids.len());
    if version == 9 {
        msg.extend(9u16.to_be_bytes());
        msg.extend(u16::try_from(ids.len()).unwrap_or(u16::MAX).to_be_bytes());
        msg.extend([0u8; 16]);
    } else {
        let len = IPFIX_HEADER + 4 * ids.len();
        let Ok(len) = u16::try_from(len) else {
            return;
        };
        msg.extend(10u16.to_be_bytes());
        msg.extend(len.to_be_bytes());
        msg.extend([0u8; 12]);
    }
    for id in ids {
        msg.extend(id.to_be_bytes());
        msg.extend(4u16.to_be_bytes());
    }
    let _ = exp.parser.parse_bytes(&msg);
}
