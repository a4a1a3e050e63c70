//! Datagram → records. One `netflow_parser` parser per template scope
//! (exporter address or address+port, plus v9 source id / IPFIX observation
//! domain).
//!
//! Choices worth knowing:
//! - All decoder state is one budget in bytes (`max_state`, SPEC §4.5):
//!   templates, compiled layouts and held data of every stream, accounted as
//!   an upper bound after each datagram. The budget and the count limits
//!   (`max_exporters`, `max_streams_per_source`) take from the source address
//!   holding the most (`fair.rs`), so a sender churning observation domains
//!   or template ids loses its own state, never a quiet exporter's. With a
//!   template store, the store takes a quarter of the budget (`templates.rs`).
//! - Learning a template costs O(its fields): one-byte normalised fields
//!   share one conversion table per data type (`layout.rs`).
//! - Data that arrives before its template is held by the parser's pending-flow
//!   cache (per exporter stream, `max_pending` sets per template, within the
//!   budget) and decoded when the template arrives, with the header of the
//!   message that brought the
//!   template. For v9 uptime stamps that is exact up to the header's 1 s
//!   granularity (wall clock and uptime advance together); IPFIX absolute times
//!   are exact; only IPFIX `…DeltaMicroseconds` and records without any time
//!   field are anchored to the later export time. Held data expires after
//!   `pending_ttl_ms`: per set by the wall clock inside the parser, and a
//!   stream that held nothing new for that long (by `now_ms`) is emptied.
//! - Options data is not a flow record: it only updates the exporter's
//!   sampling interval and `systemInitTimeMilliseconds`.
//! - Sequence numbers are tracked per exporter stream; a forward jump of more
//!   than 2²⁰ or a step back is a restart (`sequence_resets`), not loss.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use netflow_parser::static_versions::v5::V5;
use netflow_parser::{NetflowError, NetflowPacket, NetflowParser};

use super::check::{self, Frame, Malformed};
use super::exporter::{new_exporter, sync_metrics, Exporter, ScopeKey};
use super::fair::{EvictReason, FairTable, Limits};
use super::fastpath;
use super::packets::{ipfix_packet, v9_packet, Ctx};
use super::sequence::{SeqEvent, SequenceTracker};
use super::stats::{bump, entry_capped, DecodeStats, OVERFLOW_IP};
use super::templates::FileTemplateStore;
use super::times;
use super::{DecoderConfig, TemplateScope};
use crate::record::Record;

/// How often (in `now_ms`) streams are checked for expired held data.
const SWEEP_EVERY_MS: i64 = 1000;

type V5Key = (SocketAddr, u8, u8);

pub struct Decoder {
    cfg: DecoderConfig,
    v5: NetflowParser,
    v5_seq: FairTable<V5Key, SequenceTracker>,
    /// Boxed: a stream's state is 1.5 KB inline, and the table's spare
    /// capacity should not multiply that.
    exporters: FairTable<ScopeKey, Box<Exporter>>,
    evicted: Vec<(ScopeKey, Box<Exporter>, EvictReason)>,
    held_lens: Vec<usize>,
    next_sweep_ms: i64,
    /// Exporters aged out since the caller last took them (`take_aged`).
    aged: Vec<IpAddr>,
    store: Option<Arc<FileTemplateStore>>,
    stats: DecodeStats,
    buf: Vec<u8>,
    /// Decode data sets of known templates without netflow_parser (`fastpath`).
    fast_path: bool,
    sets: Vec<fastpath::SetRef>,
    /// A message split after its templates: header + templates, header + data.
    head: Vec<u8>,
    tail: Vec<u8>,
    /// Messages the fast path decoded.
    #[cfg(test)]
    pub(super) fast_messages: u64,
    /// Messages split after their templates whose data took the fast path.
    #[cfg(test)]
    pub(super) split_messages: u64,
}

impl Decoder {
    pub fn new(cfg: DecoderConfig) -> Self {
        // The template store takes a quarter of the budget; the streams the rest.
        let store_bytes = cfg.max_state / 4;
        let store = cfg
            .template_store
            .as_deref()
            .map(|p| load_store(p, store_bytes));
        let v5 = NetflowParser::builder()
            .with_allowed_versions(&[5])
            .build()
            .unwrap_or_default();
        let limits = Limits {
            max_streams: cfg.max_exporters,
            max_per_source: cfg.max_streams_per_source,
            max_bytes: cfg.max_state - store.as_ref().map_or(0, |_| store_bytes),
        };
        Self {
            v5,
            v5_seq: FairTable::new(limits),
            exporters: FairTable::new(limits),
            evicted: Vec::new(),
            held_lens: Vec::new(),
            next_sweep_ms: i64::MIN,
            aged: Vec::new(),
            store,
            stats: DecodeStats::default(),
            buf: Vec::with_capacity(64),
            fast_path: true,
            sets: Vec::new(),
            head: Vec::new(),
            tail: Vec::new(),
            #[cfg(test)]
            fast_messages: 0,
            #[cfg(test)]
            split_messages: 0,
            cfg,
        }
    }

    /// Switch the data-set fast path off (or on again): every message then
    /// goes through netflow_parser. For tests and benchmarks comparing both.
    #[doc(hidden)]
    pub fn set_fast_path(&mut self, on: bool) {
        self.fast_path = on;
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
        // Flow times come from the export headers; `now_ms` only ages held
        // data and exporters, and is the receive time of the export delay.
        self.expire_held(now_ms);
        let errors_before = self.stats.errors.clone();
        let first = out.len();
        self.decode_messages(datagram, from, now_ms, out);
        let cap = self.cfg.max_exporters;
        let exp = entry_capped(&mut self.stats.by_exporter, from.ip(), cap);
        exp.datagrams += 1;
        exp.last_seen_ms = now_ms;
        exp.errors.add_delta(&self.stats.errors, &errors_before);
        for r in &out[first..] {
            // 0 is "no time field": no delay to measure.
            if r.etime() > 0 {
                exp.delay.observe(now_ms.saturating_sub(r.etime()));
            }
        }
    }

    fn decode_messages(
        &mut self,
        datagram: &[u8],
        from: SocketAddr,
        now_ms: i64,
        out: &mut Vec<Record>,
    ) {
        self.stats.datagrams += 1;
        self.stats.bytes += datagram.len() as u64;
        let mut rest = datagram;
        // RFC 7011 allows several IPFIX messages back to back in one datagram.
        while !rest.is_empty() {
            let frame = match check::check(rest) {
                Ok(f) => f,
                Err(kind) => return self.count_malformed(kind),
            };
            self.stats.errors.too_many_fields += u64::from(frame.templates.oversized);
            self.stats.errors.template += u64::from(frame.templates.invalid);
            let (msg, tail) = rest.split_at(frame.len);
            if frame.version == 5 {
                self.decode_v5(msg, from, out);
            } else {
                self.decode_templated(msg, frame, from, now_ms, out);
            }
            if frame.version != 10 {
                break;
            }
            rest = tail;
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
        let mut evicted = Vec::new();
        let seq =
            self.v5_seq
                .get_or_insert_with(&key, from.ip(), SequenceTracker::default, &mut evicted);
        let event = seq.observe(h.flow_sequence, Some(u32::from(h.count)));
        for (_, _, reason) in evicted {
            count_eviction(&mut self.stats, reason);
        }
        self.count_seq(from.ip(), event);
        let export_ms = times::v5_export_ms(h.unix_secs, h.unix_nsecs);
        let interval = u32::from(h.sampling_interval & 0x3fff);
        let sampling = (interval > 0).then_some(interval);
        for f in &v5.flowsets {
            let mut r = Record::default();
            r.set_exporter(Some(from.ip()));
            r.set_srcip(Some(IpAddr::V4(f.src_addr)));
            r.set_dstip(Some(IpAddr::V4(f.dst_addr)));
            r.set_nexthop(Some(IpAddr::V4(f.next_hop)));
            r.set_srcport(Some(f.src_port));
            r.set_dstport(Some(f.dst_port));
            r.set_prot(Some(f.protocol_number));
            r.set_tcp_flags(Some(u16::from(f.tcp_flags)));
            r.set_tos(Some(f.tos));
            r.set_bytes(Some(u64::from(f.d_octets)));
            r.set_packets(Some(u64::from(f.d_pkts)));
            r.set_input(Some(u32::from(f.input)));
            r.set_output(Some(u32::from(f.output)));
            r.set_src_as(Some(u32::from(f.src_as)));
            r.set_dst_as(Some(u32::from(f.dst_as)));
            r.set_src_mask(Some(f.src_mask));
            r.set_dst_mask(Some(f.dst_mask));
            r.set_times(
                times::uptime_to_ms(export_ms, h.sys_up_time, f.first),
                times::uptime_to_ms(export_ms, h.sys_up_time, f.last),
            );
            super::fields::normalise_v5_icmp(&mut r);
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
        now_ms: i64,
        out: &mut Vec<Record>,
    ) {
        let key = self.scope_key(from, frame);
        let (cfg, store) = (&self.cfg, self.store.as_ref());
        let exp = self.exporters.get_or_insert_with(
            &key,
            from.ip(),
            || Box::new(new_exporter(cfg, store, &key)),
            &mut self.evicted,
        );
        let fast_cfg = (self.cfg.max_exporters, self.cfg.apply_sampling);
        let whole_fast = self.fast_path
            && fastpath::decode(
                msg,
                frame,
                exp,
                from,
                fast_cfg,
                &mut self.stats,
                &mut self.sets,
                &mut self.buf,
                out,
            );
        // Refused templates leave the whole message to the parser, as ever.
        let head = match self.fast_path && !whole_fast && !frame.templates.any() {
            true => fastpath::template_head(msg, frame.version),
            false => None,
        };
        // netflow_parser for `m` (observing its sequence number or not).
        macro_rules! slow {
            ($m:expr, $frame:expr, $sequence:expr) => {
                slow_path(
                    exp,
                    $m,
                    $frame,
                    (from, now_ms, $sequence),
                    &self.cfg,
                    store,
                    (&mut self.held_lens, &mut self.buf),
                    &mut self.stats,
                    out,
                )
            };
        }
        if whole_fast {
            #[cfg(test)]
            {
                self.fast_messages += 1;
            }
        } else if let Some(head) = head {
            // Templates through the parser, then the data sets behind the
            // same header through the fast path; the sequence number is
            // observed once, with the data.
            fastpath::split(msg, frame.version, head, &mut self.head, &mut self.tail);
            let head = Frame {
                len: self.head.len(),
                ..frame
            };
            slow!(&self.head, head, false);
            let tail = Frame {
                len: self.tail.len(),
                ..frame
            };
            let data_fast = fastpath::decode(
                &self.tail,
                tail,
                exp,
                from,
                fast_cfg,
                &mut self.stats,
                &mut self.sets,
                &mut self.buf,
                out,
            );
            if !data_fast {
                slow!(&self.tail, tail, true);
            }
            #[cfg(test)]
            {
                self.split_messages += u64::from(data_fast);
            }
        } else {
            slow!(msg, frame, true);
        }
        // The fast path learns nothing: the stream's size is unchanged.
        if !whole_fast {
            let bytes = exp.state_bytes();
            self.exporters.set_bytes(&key, bytes);
        }
        self.exporters.shrink_to_budget(&mut self.evicted);
        self.settle_evictions();
    }

    /// Count the streams dropped by a limit and forget their templates.
    fn settle_evictions(&mut self) {
        for (_, gone, reason) in self.evicted.drain(..) {
            count_eviction(&mut self.stats, reason);
            self.stats.template_cache_size = self
                .stats
                .template_cache_size
                .saturating_sub(gone.cache_size);
        }
        self.stats.exporters = self.exporters.len() as u64;
        self.stats.state_bytes = self.state_bytes() as u64;
    }

    /// At most once a second: empty the held data of streams that held
    /// nothing new for `pending_ttl_ms`. `decode` calls it; a caller whose
    /// exporters may all fall silent calls it on its own clock too.
    pub fn expire_held(&mut self, now_ms: i64) {
        if now_ms < self.next_sweep_ms {
            return;
        }
        self.next_sweep_ms = now_ms.saturating_add(SWEEP_EVERY_MS);
        let ttl = self.cfg.pending_ttl_ms;
        let mut expired = 0u64;
        self.exporters.update_all(|exp| {
            let n = exp.expire_held(now_ms, ttl);
            expired += n as u64;
            (n > 0).then(|| exp.state_bytes())
        });
        self.stats.pending_expired += expired;
        self.age_out(now_ms);
        self.stats.state_bytes = self.state_bytes() as u64;
    }

    /// Forget every exporter address that sent nothing for
    /// `exporter_idle_ms`: its counters, templates and sequence state, so
    /// its metric series disappear and the maps do not keep what spoofed or
    /// retired exporters left behind.
    fn age_out(&mut self, now_ms: i64) {
        let idle = self.cfg.exporter_idle_ms;
        if idle <= 0 {
            return;
        }
        let gone: Vec<IpAddr> = self
            .stats
            .by_exporter
            .iter()
            .filter(|(_, e)| now_ms.saturating_sub(e.last_seen_ms) >= idle)
            .map(|(ip, _)| *ip)
            .collect();
        for ip in gone {
            self.forget_exporter(ip);
            self.aged.push(ip);
        }
    }

    fn forget_exporter(&mut self, ip: IpAddr) {
        let s = &mut self.stats;
        s.by_exporter.remove(&ip);
        s.records.retain(|(e, _), _| *e != ip);
        s.sequence_gaps.remove(&ip);
        s.exporters_aged_out += 1;
        for (_, gone) in self.exporters.remove_source(ip) {
            s.template_cache_size = s.template_cache_size.saturating_sub(gone.cache_size);
        }
        self.v5_seq.remove_source(ip);
        if let Some(store) = &self.store {
            store.forget_exporter(ip);
        }
        s.exporters = self.exporters.len() as u64;
    }

    /// Exporter addresses aged out since the last call (for the caller's
    /// own per-exporter state).
    pub fn take_aged(&mut self) -> Vec<IpAddr> {
        std::mem::take(&mut self.aged)
    }

    /// Set each exporter's template count from its streams (before a
    /// scrape: streams change on many paths, the count is wanted rarely).
    pub fn refresh_templates(&mut self) {
        let cap = self.cfg.max_exporters;
        let by_exporter = &mut self.stats.by_exporter;
        for e in by_exporter.values_mut() {
            e.templates = 0;
        }
        for (ip, exp) in self.exporters.iter() {
            if exp.cache_size > 0 {
                entry_capped(by_exporter, ip, cap).templates += exp.cache_size;
            }
        }
    }

    /// Accounted bytes of all decoder state now (see `DecoderConfig::max_state`).
    pub fn state_bytes(&self) -> usize {
        let store = self.store.as_ref().map_or(0, |s| s.bytes());
        self.exporters.total_bytes() + store
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

/// netflow_parser decodes `msg`: templates, held data, everything the fast
/// path does not take.
#[allow(clippy::too_many_arguments)]
fn slow_path(
    exp: &mut Exporter,
    msg: &[u8],
    frame: Frame,
    (from, now_ms, sequence): (SocketAddr, i64, bool),
    cfg: &DecoderConfig,
    store: Option<&Arc<FileTemplateStore>>,
    (held_lens, buf): (&mut Vec<usize>, &mut Vec<u8>),
    stats: &mut DecodeStats,
    out: &mut Vec<Record>,
) {
    fastpath::sync_lru(exp, frame.version);
    let restored = |s: Option<&Arc<FileTemplateStore>>| {
        s.map(|s| s.restored.load(std::sync::atomic::Ordering::Relaxed))
    };
    let restored_before = restored(store);
    fastpath::unknown_data_sets(msg, frame.version, exp, held_lens);
    let result = exp.parser.parse_bytes(msg);
    let reset = result.error.is_some() || restored(store) != restored_before;
    fastpath::learn(exp, frame.version, &result.packets, reset);
    if let Some(err) = &result.error {
        // Refused templates were counted already; their parse error is the same fault.
        if !frame.templates.any() {
            classify(stats, err);
        }
    }
    let delta = sync_metrics(exp, frame.version, held_lens, now_ms, stats);
    // Held data sets leave the parser's output; they count as "no template".
    stats.errors.no_template += delta.held;
    let ctx = Ctx {
        from,
        cap: cfg.max_exporters,
        apply_sampling: cfg.apply_sampling,
        delta,
        sequence,
    };
    for p in &result.packets {
        match p {
            NetflowPacket::V9(v9) => v9_packet(v9, exp, &ctx, stats, buf, out),
            NetflowPacket::IPFix(ix) => ipfix_packet(ix, exp, &ctx, stats, buf, out),
            _ => stats.errors.other += 1,
        }
    }
    if let Some(store) = store {
        stats.template_store_errors = store.refused.load(std::sync::atomic::Ordering::Relaxed);
    }
}

fn count_eviction(stats: &mut DecodeStats, reason: EvictReason) {
    stats.exporters_evicted += 1;
    let e = &mut stats.evictions;
    match reason {
        EvictReason::Budget => e.max_state += 1,
        EvictReason::Streams => e.max_exporters += 1,
        EvictReason::PerSource => e.per_source += 1,
    }
}

fn load_store(path: &Path, max_bytes: usize) -> Arc<FileTemplateStore> {
    let store = match FileTemplateStore::load(path) {
        Ok(s) => {
            tracing::info!(path = %path.display(), templates = s.len(), "template store loaded");
            s
        }
        Err(e) => {
            tracing::warn!(error = %e, "template store unreadable; starting without it");
            FileTemplateStore::default()
        }
    };
    Arc::new(store.with_max_bytes(max_bytes))
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
