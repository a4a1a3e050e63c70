//! Per-exporter-stream state: one `netflow_parser` parser (templates, held
//! data), the sequence tracker and options learned from the exporter.

use std::net::SocketAddr;
use std::sync::Arc;

use netflow_parser::{NetflowParser, PendingFlowsConfig, TemplateStore};

use super::check::MAX_TEMPLATE_FIELDS;
use super::fields::ExporterOptions;
use super::layout::LayoutCache;
use super::sequence::SequenceTracker;
use super::stats::DecodeStats;
use super::templates::FileTemplateStore;
use super::DecoderConfig;

/// Templates cached per exporter stream and per parser cache (v9 data and
/// options; IPFIX data, options and their v9-style variants). Real exporters
/// use a handful; the bound keeps spoofed template floods small.
const TEMPLATES_PER_EXPORTER: usize = 64;

/// Bytes of held data per held data set, for the per-exporter byte budget.
const HELD_SET_BYTES: usize = 1536;

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
}

/// A parser that cannot be built from the configuration falls back to the
/// library defaults rather than refusing datagrams.
fn new_exporter_fallback() -> Exporter {
    Exporter {
        parser: NetflowParser::default(),
        seq: SequenceTracker::default(),
        options: ExporterOptions::default(),
        layouts: LayoutCache::default(),
        seen: Seen::default(),
        cache_size: 0,
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
        p.max_total_bytes = cfg
            .max_pending
            .saturating_mul(HELD_SET_BYTES)
            .max(64 * 1024);
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

/// What the parser did with held data during one datagram.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct PendingDelta {
    pub(super) held: u64,
    pub(super) replayed: u64,
}

/// Add the parser's metric increments since the last datagram to the stats.
pub(super) fn sync_metrics(
    exp: &mut Exporter,
    version: u16,
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
    delta
}
