//! Per-exporter-stream state: one `netflow_parser` parser (templates, held
//! data), the sequence tracker and options learned from the exporter, and
//! what that state costs in bytes.
//!
//! netflow_parser does not expose the size of its caches, so the cost is an
//! upper bound computed from what went in: per template its field count
//! (the parser's copy, the compiled layout and its signature), per held data
//! set its length. The constants are calibrated against the allocator in
//! `tests/decode_state.rs`, which checks that the accounted bytes never fall
//! short of the heap the state really takes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use netflow_parser::{NetflowParser, PendingFlowsConfig, TemplateStore};

use super::check::MAX_TEMPLATE_FIELDS;
use super::fields::ExporterOptions;
use super::layout::LayoutCache;
use super::sequence::SequenceTracker;
use super::stats::DecodeStats;
use super::templates::FileTemplateStore;
use super::DecoderConfig;
use crate::record::ExtrasCache;

/// Templates cached per exporter stream and per parser cache (v9 data and
/// options; IPFIX data, options and their v9-style variants). Real exporters
/// use a handful; the bound keeps spoofed template floods small.
const TEMPLATES_PER_EXPORTER: usize = 64;

/// Bytes of held data per held data set, for the per-stream byte cap.
const HELD_SET_BYTES: usize = 1536;

/// Largest data set netflow_parser holds (its `max_entry_size_bytes`).
const MAX_HELD_SET: usize = u16::MAX as usize - 4;

/// Accounted bytes of a stream with no templates and nothing held: the
/// boxed state, the parser's pending-data cache, the table entry (~4.2 KiB
/// measured), and the fast path's list of used template ids (≤ 2 KiB).
const STREAM_BYTES: usize = 8 * 1024;
/// Per template: cache entries, `Arc`, vectors' headers.
const TEMPLATE_BYTES: usize = 512;
/// Per template field: the parser's field (with its type enum), the layout's
/// `FieldSpec` and signature entry, vectors grown by doubling.
const FIELD_BYTES: usize = 112;
/// Per held data set beyond its bytes: entry, timestamp, allocation slack.
const HELD_SET_OVERHEAD: usize = 128;

/// Where one exporter stream's templates and counters live.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct ScopeKey {
    /// Port 0 under `TemplateScope::Address`.
    pub(super) addr: SocketAddr,
    pub(super) version: u16,
    pub(super) domain: u32,
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
    collisions: u64,
    pending_cached: u64,
    pending_replayed: u64,
    pending_dropped: u64,
}

/// State of one exporter stream.
pub(super) struct Exporter {
    pub(super) parser: NetflowParser,
    pub(super) seq: SequenceTracker,
    pub(super) options: ExporterOptions,
    /// Templates the parser holds, compiled for the fast path.
    pub(super) layouts: LayoutCache,
    /// Parser metrics already added to the global stats.
    seen: Seen,
    pub(super) cache_size: u64,
    /// 9 or 10: the parser cache this stream uses.
    version: u16,
    /// Field count of each template the parser holds, by id.
    template_fields: HashMap<u16, usize>,
    pub(super) held: Held,
    /// Recent extras of this exporter's records, shared by records that
    /// repeat them.
    pub(super) extras: ExtrasCache,
}

/// What the parser holds for templates that have not arrived, as far as
/// flowy can tell from outside: an upper bound on its bytes.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Held {
    /// Data sets held now.
    pub(super) sets: usize,
    /// Bytes of every set held since the cache was last empty.
    sum: usize,
    /// The largest of those sets.
    largest: usize,
    /// `now_ms` when a set was last held.
    newest_ms: i64,
}

impl Held {
    fn bytes(&self) -> usize {
        let per_set = self.largest + HELD_SET_OVERHEAD;
        self.sum.min(self.sets.saturating_mul(per_set))
    }

    /// The parser held `lens` (upper bounds of the set sizes) at `now_ms`
    /// and holds `sets` sets in all afterwards.
    fn note(&mut self, lens: impl Iterator<Item = usize>, sets: usize, now_ms: i64) {
        let mut any = false;
        for len in lens {
            any = true;
            self.sum = self.sum.saturating_add(len + HELD_SET_OVERHEAD);
            self.largest = self.largest.max(len);
        }
        if any {
            self.newest_ms = now_ms;
        }
        self.sets = sets;
        if sets == 0 {
            *self = Held::default();
        }
    }
}

/// A parser that cannot be built from the configuration falls back to the
/// library defaults rather than refusing datagrams.
fn new_exporter_fallback(version: u16) -> Exporter {
    Exporter {
        version,
        parser: NetflowParser::default(),
        seq: SequenceTracker::default(),
        options: ExporterOptions::default(),
        layouts: LayoutCache::default(),
        seen: Seen::default(),
        cache_size: 0,
        template_fields: HashMap::new(),
        held: Held::default(),
        extras: ExtrasCache::default(),
    }
}

impl Exporter {
    /// Upper bound on the bytes this stream's state takes.
    pub(super) fn state_bytes(&self) -> usize {
        let template = |fields: usize| TEMPLATE_BYTES + fields * FIELD_BYTES;
        let known: usize = self.template_fields.values().map(|n| template(*n)).sum();
        // Templates read back from the template store are not in the parse
        // output: count them at the largest size the parser accepts.
        let unknown = usize::try_from(self.cache_size)
            .unwrap_or(usize::MAX)
            .saturating_sub(self.template_fields.len());
        STREAM_BYTES
            + known
            + unknown.saturating_mul(template(MAX_TEMPLATE_FIELDS))
            + self.held.bytes()
    }

    /// The parser accepted a template of `fields` fields under `id`.
    pub(super) fn note_template(&mut self, id: u16, fields: usize) {
        self.template_fields.insert(id, fields);
    }

    /// Forget the layouts and sizes of templates the parser no longer holds.
    pub(super) fn retain_templates(&mut self, version: u16) {
        let parser = &self.parser;
        let holds = |id: u16| {
            if version == 9 {
                parser.has_v9_template(id)
            } else {
                parser.has_ipfix_template(id)
            }
        };
        self.layouts.retain(holds);
        self.template_fields.retain(|id, _| holds(*id));
    }

    /// Drop held data once nothing was held for `ttl_ms`; the number of sets
    /// dropped.
    pub(super) fn expire_held(&mut self, now_ms: i64, ttl_ms: i64) -> usize {
        if self.held.sets == 0 || now_ms.saturating_sub(self.held.newest_ms) < ttl_ms {
            return 0;
        }
        let sets = self.held.sets;
        let info = if self.version == 9 {
            self.parser.clear_v9_pending_flows();
            self.parser.v9_cache_info()
        } else {
            self.parser.clear_ipfix_pending_flows();
            self.parser.ipfix_cache_info()
        };
        // The parser counts the cleared sets as dropped; they are reported
        // as expired instead.
        self.seen.pending_dropped =
            info.metrics.pending_dropped + info.metrics.pending_replay_failed;
        self.held = Held::default();
        sets
    }
}

pub(super) fn new_exporter(
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
        p.max_entry_size_bytes = MAX_HELD_SET;
        // No stream may take more than a quarter of the global budget.
        p.max_total_bytes = cfg
            .max_pending
            .saturating_mul(HELD_SET_BYTES)
            .min(cfg.max_state / 4)
            .max(MAX_HELD_SET);
        // Exact per-set expiry by the wall clock; `expire_held` frees the
        // memory of streams that went quiet.
        p.ttl = u64::try_from(cfg.pending_ttl_ms)
            .ok()
            .filter(|ms| *ms > 0)
            .map(Duration::from_millis);
        // A stream is one version: the other cache would be allocated unused.
        b = if key.version == 9 {
            b.with_v9_pending_flows(p)
        } else {
            b.with_ipfix_pending_flows(p)
        };
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
            ..new_exporter_fallback(key.version)
        },
        Err(e) => {
            tracing::warn!(error = %e, "invalid parser configuration; using defaults");
            new_exporter_fallback(key.version)
        }
    }
}

/// What the parser did with held data during one datagram.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct PendingDelta {
    pub(super) held: u64,
    pub(super) replayed: u64,
}

/// Add the parser's metric increments since the last datagram to the stats.
/// `held_lens` are the sizes of the message's data sets whose template the
/// parser lacked before it parsed the message (the candidates for holding).
pub(super) fn sync_metrics(
    exp: &mut Exporter,
    version: u16,
    held_lens: &mut [usize],
    now_ms: i64,
    stats: &mut DecodeStats,
) -> PendingDelta {
    let info = if version == 9 {
        exp.parser.v9_cache_info()
    } else {
        exp.parser.ipfix_cache_info()
    };
    let m = info.metrics;
    let d = |now: u64, before: u64| now.saturating_sub(before);
    stats.template_misses += d(m.misses, exp.seen.misses);
    stats.template_collisions += d(m.collisions, exp.seen.collisions);
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
        collisions: m.collisions,
        pending_cached: m.pending_cached,
        pending_replayed: m.pending_replayed,
        pending_dropped: dropped,
    };
    let size = info.current_size as u64;
    stats.template_cache_size = stats.template_cache_size.saturating_sub(exp.cache_size) + size;
    exp.cache_size = size;
    // The sets held are some of the candidates; count the largest.
    held_lens.sort_unstable_by(|a, b| b.cmp(a));
    let n = usize::try_from(delta.held).unwrap_or(usize::MAX);
    let lens = held_lens
        .iter()
        .copied()
        .chain(std::iter::repeat(MAX_HELD_SET))
        .take(n);
    exp.held.note(lens, info.pending_flow_count, now_ms);
    delta
}
