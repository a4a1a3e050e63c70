//! Datagram → records. One `netflow_parser` parser per template scope
//! (exporter address or address+port, plus v9 source id / IPFIX observation
//! domain), bounded by `max_exporters` with LRU eviction.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, OnceLock};

use netflow_parser::static_versions::v5::V5;
use netflow_parser::variable_versions::ipfix::lookup::{IANAIPFixField, IPFixField};
use netflow_parser::variable_versions::ipfix::{FlowSetBody as IpfixBody, IPFix};
use netflow_parser::variable_versions::v9::{FlowSetBody as V9Body, V9};
use netflow_parser::{
    FieldValue, NetflowError, NetflowPacket, NetflowParser, PendingFlowsConfig, TemplateStore,
    V9Field,
};

use super::check::{self, Frame, Malformed, MAX_TEMPLATE_FIELDS};
use super::fields::{ExporterOptions, RecordBuilder, RecordContext};
use super::lru::Lru;
use super::sequence::{SeqEvent, SequenceTracker};
use super::stats::{bump, DecodeStats, OVERFLOW_IP};
use super::templates::FileTemplateStore;
use super::times::{self, HeaderClock};
use super::{DecoderConfig, TemplateScope};
use crate::record::Record;

/// Templates cached per exporter stream (each of v9/IPFIX, data/options).
const TEMPLATES_PER_EXPORTER: usize = 512;

/// Where one exporter stream's templates and counters live.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct ScopeKey {
    /// Port 0 under `TemplateScope::Address`.
    addr: SocketAddr,
    version: u16,
    domain: u32,
}

impl ScopeKey {
    fn store_scope(&self) -> String {
        format!("{}/{}/{}", self.addr, self.version, self.domain)
    }
}

/// Parser metric values already added to the global stats.
#[derive(Clone, Copy, Debug, Default)]
struct Seen {
    misses: u64,
    pending_cached: u64,
    pending_replayed: u64,
    pending_dropped: u64,
}

/// State of one exporter stream.
struct Exporter {
    parser: NetflowParser,
    seq: SequenceTracker,
    options: ExporterOptions,
    /// Parser metrics already added to the global stats.
    seen: Seen,
    cache_size: u64,
}

pub struct Decoder {
    cfg: DecoderConfig,
    v5: NetflowParser,
    v5_seq: Lru<(SocketAddr, u8, u8), SequenceTracker>,
    exporters: Lru<ScopeKey, Exporter>,
    store: Option<Arc<FileTemplateStore>>,
    stats: DecodeStats,
    buf: Vec<u8>,
}

impl Decoder {
    pub fn new(cfg: DecoderConfig) -> Self {
        let store = cfg.template_store.as_deref().map(load_store);
        let v5 = NetflowParser::builder()
            .with_allowed_versions(&[5])
            .build()
            .unwrap_or_default();
        Self {
            v5,
            v5_seq: Lru::new(cfg.max_exporters),
            exporters: Lru::new(cfg.max_exporters),
            store,
            stats: DecodeStats::default(),
            buf: Vec::with_capacity(64),
            cfg,
        }
    }

    pub fn stats(&self) -> &DecodeStats {
        &self.stats
    }

    /// Write the template store file (no-op when none is configured).
    pub fn save_templates(&self) -> std::io::Result<()> {
        match (&self.store, &self.cfg.template_store) {
            (Some(store), Some(path)) => store.save(path),
            _ => Ok(()),
        }
    }

    /// Decode one datagram from `from`; append records (rec_id left 0,
    /// exporter = from.ip()). Malformed input is counted by kind, never fatal.
    pub fn decode(
        &mut self,
        datagram: &[u8],
        from: SocketAddr,
        now_ms: i64,
        out: &mut Vec<Record>,
    ) {
        let _ = now_ms; // flow times come from the export headers
        self.stats.datagrams += 1;
        self.stats.bytes += datagram.len() as u64;
        let frame = match check::check(datagram) {
            Ok(f) => f,
            Err(kind) => return self.count_malformed(kind),
        };
        self.stats.errors.too_many_fields += u64::from(frame.oversized_templates);
        let msg = &datagram[..frame.len];
        if frame.version == 5 {
            self.decode_v5(msg, from, out);
        } else {
            self.decode_templated(msg, frame, from, out);
        }
    }

    fn count_malformed(&mut self, kind: Malformed) {
        let e = &mut self.stats.errors;
        match kind {
            Malformed::Truncated => e.truncated += 1,
            Malformed::BadVersion => e.bad_version += 1,
            Malformed::BadLength => e.bad_length += 1,
        }
    }

    fn decode_v5(&mut self, msg: &[u8], from: SocketAddr, out: &mut Vec<Record>) {
        let result = self.v5.parse_bytes(msg);
        if let Some(err) = &result.error {
            classify(&mut self.stats, err);
        }
        for p in result.packets {
            if let NetflowPacket::V5(v5) = p {
                self.v5_records(&v5, from, out);
            }
        }
    }

    fn v5_records(&mut self, v5: &V5, from: SocketAddr, out: &mut Vec<Record>) {
        let h = &v5.header;
        let key = (from, h.engine_type, h.engine_id);
        let (seq, evicted) = self
            .v5_seq
            .get_or_insert_with(&key, SequenceTracker::default);
        let event = seq.observe(h.flow_sequence, Some(u32::from(h.count)));
        self.stats.exporters_evicted += u64::from(evicted.is_some());
        self.count_seq(from.ip(), event);
        let export_ms = times::v5_export_ms(h.unix_secs, h.unix_nsecs);
        let interval = u32::from(h.sampling_interval & 0x3fff);
        let sampling = (interval > 0).then_some(interval);
        for f in &v5.flowsets {
            let mut r = Record {
                exporter: Some(from.ip()),
                srcip: Some(IpAddr::V4(f.src_addr)),
                dstip: Some(IpAddr::V4(f.dst_addr)),
                nexthop: Some(IpAddr::V4(f.next_hop)),
                srcport: Some(f.src_port),
                dstport: Some(f.dst_port),
                prot: Some(f.protocol_number),
                tcp_flags: Some(u16::from(f.tcp_flags)),
                tos: Some(f.tos),
                bytes: Some(u64::from(f.d_octets)),
                packets: Some(u64::from(f.d_pkts)),
                stime: times::uptime_to_ms(export_ms, h.sys_up_time, f.first),
                etime: times::uptime_to_ms(export_ms, h.sys_up_time, f.last),
                input: Some(u32::from(f.input)),
                output: Some(u32::from(f.output)),
                src_as: Some(u32::from(f.src_as)),
                dst_as: Some(u32::from(f.dst_as)),
                src_mask: Some(f.src_mask),
                dst_mask: Some(f.dst_mask),
                ..Record::default()
            };
            super::fields::apply_sampling(&mut r, sampling, self.cfg.apply_sampling);
            out.push(r);
        }
        self.count_records(from.ip(), 5, v5.flowsets.len());
    }

    fn scope_key(&self, from: SocketAddr, frame: Frame) -> ScopeKey {
        let addr = match self.cfg.template_scope {
            TemplateScope::Address => SocketAddr::new(from.ip(), 0),
            TemplateScope::AddressPort => from,
        };
        ScopeKey {
            addr,
            version: frame.version,
            domain: frame.domain,
        }
    }

    fn decode_templated(
        &mut self,
        msg: &[u8],
        frame: Frame,
        from: SocketAddr,
        out: &mut Vec<Record>,
    ) {
        let key = self.scope_key(from, frame);
        let (cfg, store) = (&self.cfg, self.store.as_ref());
        let (exp, evicted) = self
            .exporters
            .get_or_insert_with(&key, || new_exporter(cfg, store, &key));
        if let Some((_, gone)) = evicted {
            self.stats.exporters_evicted += 1;
            self.stats.template_cache_size = self
                .stats
                .template_cache_size
                .saturating_sub(gone.cache_size);
        }
        let result = exp.parser.parse_bytes(msg);
        if let Some(err) = &result.error {
            if frame.oversized_templates == 0 {
                classify(&mut self.stats, err);
            }
        }
        let delta = sync_metrics(exp, frame.version, &mut self.stats);
        // Held data sets leave the parser's output; they count as "no template".
        self.stats.errors.no_template += delta.held;
        let ctx = Ctx {
            from,
            cap: self.cfg.max_exporters,
            apply_sampling: self.cfg.apply_sampling,
            delta,
        };
        for p in &result.packets {
            match p {
                NetflowPacket::V9(v9) => {
                    v9_packet(v9, exp, &ctx, &mut self.stats, &mut self.buf, out)
                }
                NetflowPacket::IPFix(ix) => {
                    ipfix_packet(ix, exp, &ctx, &mut self.stats, &mut self.buf, out)
                }
                _ => self.stats.errors.other += 1,
            }
        }
        self.stats.exporters = self.exporters.len() as u64;
        if let Some(store) = &self.store {
            self.stats.template_store_errors =
                store.refused.load(std::sync::atomic::Ordering::Relaxed);
        }
    }

    fn count_seq(&mut self, ip: IpAddr, event: SeqEvent) {
        match event {
            SeqEvent::InOrder => {}
            SeqEvent::Gap(n) => {
                let cap = self.cfg.max_exporters;
                bump(&mut self.stats.sequence_gaps, ip, n, cap, OVERFLOW_IP);
            }
            SeqEvent::Reset => self.stats.sequence_resets += 1,
        }
    }

    fn count_records(&mut self, ip: IpAddr, version: u16, n: usize) {
        if n > 0 {
            let cap = self.cfg.max_exporters;
            bump(
                &mut self.stats.records,
                (ip, version),
                n as u64,
                cap,
                (OVERFLOW_IP, version),
            );
        }
    }
}

/// A parser that cannot be built from the configuration falls back to the
/// library defaults rather than refusing datagrams.
fn new_exporter_fallback() -> Exporter {
    Exporter {
        parser: NetflowParser::default(),
        seq: SequenceTracker::default(),
        options: ExporterOptions::default(),
        seen: Seen::default(),
        cache_size: 0,
    }
}

fn new_exporter(
    cfg: &DecoderConfig,
    store: Option<&Arc<FileTemplateStore>>,
    key: &ScopeKey,
) -> Exporter {
    let mut b = NetflowParser::builder()
        .with_allowed_versions(&[9, 10])
        .with_cache_size(TEMPLATES_PER_EXPORTER)
        .with_max_field_count(MAX_TEMPLATE_FIELDS);
    if cfg.max_pending > 0 {
        let mut p = PendingFlowsConfig::new(cfg.max_pending.min(TEMPLATES_PER_EXPORTER));
        p.max_entries_per_template = cfg.max_pending;
        p.max_total_bytes = cfg.max_pending.saturating_mul(2048).max(64 * 1024);
        b = b.with_pending_flows(p);
    }
    if let Some(store) = store {
        let dyn_store: Arc<dyn TemplateStore> = store.clone();
        b = b
            .with_template_store(dyn_store)
            .with_template_store_scope(key.store_scope());
    }
    match b.build() {
        Ok(parser) => Exporter {
            parser,
            ..new_exporter_fallback()
        },
        Err(e) => {
            tracing::warn!(error = %e, "invalid parser configuration; using defaults");
            new_exporter_fallback()
        }
    }
}

fn load_store(path: &Path) -> Arc<FileTemplateStore> {
    match FileTemplateStore::load(path) {
        Ok(s) => {
            tracing::info!(path = %path.display(), templates = s.len(), "template store loaded");
            Arc::new(s)
        }
        Err(e) => {
            tracing::warn!(error = %e, "template store unreadable; starting without it");
            Arc::new(FileTemplateStore::default())
        }
    }
}

fn classify(stats: &mut DecodeStats, err: &NetflowError) {
    let e = &mut stats.errors;
    match err {
        NetflowError::Incomplete { .. } => e.truncated += 1,
        NetflowError::UnsupportedVersion { .. } | NetflowError::FilteredVersion { .. } => {
            e.bad_version += 1
        }
        NetflowError::ParseError { context, kind, .. } => {
            let text = format!("{context} {kind}").to_ascii_lowercase();
            if text.contains("template") {
                e.template += 1;
            } else if text.contains("length") {
                e.bad_length += 1;
            } else {
                e.other += 1;
            }
        }
        _ => e.other += 1,
    }
}

/// What the parser did with held data during one datagram.
#[derive(Clone, Copy, Debug, Default)]
struct PendingDelta {
    held: u64,
    replayed: u64,
}

/// Add the parser's metric increments since the last datagram to the stats.
fn sync_metrics(exp: &mut Exporter, version: u16, stats: &mut DecodeStats) -> PendingDelta {
    let info = if version == 9 {
        exp.parser.v9_cache_info()
    } else {
        exp.parser.ipfix_cache_info()
    };
    let m = info.metrics;
    let d = |now: u64, before: u64| now.saturating_sub(before);
    stats.template_misses += d(m.misses, exp.seen.misses);
    let delta = PendingDelta {
        held: d(m.pending_cached, exp.seen.pending_cached),
        replayed: d(m.pending_replayed, exp.seen.pending_replayed),
    };
    stats.pending_held += delta.held;
    stats.pending_replayed += delta.replayed;
    let dropped = m.pending_dropped + m.pending_replay_failed;
    stats.pending_dropped += d(dropped, exp.seen.pending_dropped);
    exp.seen = Seen {
        misses: m.misses,
        pending_cached: m.pending_cached,
        pending_replayed: m.pending_replayed,
        pending_dropped: dropped,
    };
    let size = info.current_size as u64;
    stats.template_cache_size = stats.template_cache_size.saturating_sub(exp.cache_size) + size;
    exp.cache_size = size;
    delta
}

struct Ctx {
    from: SocketAddr,
    /// Bound on per-exporter stats entries.
    cap: usize,
    apply_sampling: bool,
    delta: PendingDelta,
}

fn raw<'b>(buf: &'b mut Vec<u8>, v: &FieldValue) -> &'b [u8] {
    buf.clear();
    if v.write_be_bytes(buf).is_err() {
        buf.clear();
    }
    buf
}

fn v9_packet(
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
    let event = exp.seq.observe(h.sequence_number, Some(1));
    record_counts(stats, ctx, 9, n, event);
}

fn v9_record(rec: &[(V9Field, FieldValue)], rctx: &RecordContext, buf: &mut Vec<u8>) -> Record {
    let mut b = RecordBuilder::new();
    for (f, v) in rec {
        b.set(u16::from(*f), raw(buf, v));
    }
    b.finish(rctx)
}

fn record_counts(stats: &mut DecodeStats, ctx: &Ctx, version: u16, n: usize, event: SeqEvent) {
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

/// Numeric element id of an IANA IPFIX field (enterprise fields have none
/// flowy maps).
fn ipfix_id(f: &IPFixField) -> Option<u16> {
    static IDS: OnceLock<HashMap<IANAIPFixField, u16>> = OnceLock::new();
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

fn ipfix_packet(
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
    let event = exp
        .seq
        .observe(h.sequence_number, advance_known.then_some(native_records));
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
