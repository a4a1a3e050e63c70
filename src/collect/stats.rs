//! Decoder counters (SPEC §4.4). Plain public fields: the daemon reads them and
//! exports Prometheus metrics; nothing here does I/O.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};

/// Decode errors by kind. Each malformed datagram (or set) counts once.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ErrorCounts {
    /// Shorter than its header, or than the records its header announces.
    pub truncated: u64,
    /// Version other than 5, 9, 10.
    pub bad_version: u64,
    /// A length field that contradicts the datagram (set lengths, message length).
    pub bad_length: u64,
    /// A template (or options template) the parser rejected.
    pub template: u64,
    /// A template announcing more fields than `MAX_TEMPLATE_FIELDS`.
    pub too_many_fields: u64,
    /// Data sets whose template was unknown when they arrived (held or lost).
    pub no_template: u64,
    /// Anything else the parser refused.
    pub other: u64,
}

impl ErrorCounts {
    /// Add what `after` counts beyond `before` (the same counters read
    /// around one datagram), so one exporter is charged its own errors.
    pub fn add_delta(&mut self, after: &ErrorCounts, before: &ErrorCounts) {
        let d = |a: u64, b: u64| a.saturating_sub(b);
        self.truncated += d(after.truncated, before.truncated);
        self.bad_version += d(after.bad_version, before.bad_version);
        self.bad_length += d(after.bad_length, before.bad_length);
        self.template += d(after.template, before.template);
        self.too_many_fields += d(after.too_many_fields, before.too_many_fields);
        self.no_template += d(after.no_template, before.no_template);
        self.other += d(after.other, before.other);
    }

    /// (label, count) of every kind, in a fixed order.
    pub fn by_kind(&self) -> [(&'static str, u64); 7] {
        [
            ("truncated", self.truncated),
            ("bad_version", self.bad_version),
            ("bad_length", self.bad_length),
            ("template", self.template),
            ("too_many_fields", self.too_many_fields),
            ("no_template", self.no_template),
            ("other", self.other),
        ]
    }

    pub fn total(&self) -> u64 {
        self.truncated
            + self.bad_version
            + self.bad_length
            + self.template
            + self.too_many_fields
            + self.no_template
            + self.other
    }
}

/// Upper bounds (ms) of the export-delay buckets: 0.1 s to 1 h, so that
/// both a router exporting at once and one with a 30 min active timeout
/// land inside the range; one more bucket (+Inf) follows.
pub const DELAY_BOUNDS_MS: [i64; 14] = [
    100, 250, 500, 1_000, 2_000, 5_000, 10_000, 30_000, 60_000, 120_000, 300_000, 600_000,
    1_800_000, 3_600_000,
];

/// Export delay (receive time − record `etime`) of one exporter's records.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DelayHistogram {
    /// Records per bucket (not cumulative); the last one is above 1 h.
    pub buckets: [u64; DELAY_BOUNDS_MS.len() + 1],
    /// Sum of the observed delays, ms.
    pub sum_ms: u64,
    /// Records whose `etime` was after their receive time (the exporter's
    /// clock runs ahead): counted here, not in the buckets.
    pub negative: u64,
}

impl DelayHistogram {
    /// Count one delay. A linear scan of 14 bounds: cheaper than a binary
    /// search for delays that mostly fall in the first few buckets.
    pub fn observe(&mut self, delay_ms: i64) {
        if delay_ms < 0 {
            self.negative += 1;
            return;
        }
        let i = DELAY_BOUNDS_MS
            .iter()
            .position(|b| delay_ms <= *b)
            .unwrap_or(DELAY_BOUNDS_MS.len());
        self.buckets[i] += 1;
        self.sum_ms = self.sum_ms.saturating_add(delay_ms.unsigned_abs());
    }

    /// Records in the buckets.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }
}

/// What the decoder counts per exporter address (datagrams, errors, times).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExporterStats {
    pub datagrams: u64,
    pub errors: ErrorCounts,
    /// Templates cached for the exporter's streams now (set by
    /// `Decoder::refresh_templates`).
    pub templates: u64,
    /// Receive time (ms since the epoch) of its last datagram.
    pub last_seen_ms: i64,
    pub delay: DelayHistogram,
}

/// Exporter streams evicted, by the limit that forced it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Evictions {
    /// `decoder.max_state`: the source holding the most bytes lost a stream.
    pub max_state: u64,
    /// `max_exporters`: the source with the most streams lost one.
    pub max_exporters: u64,
    /// `max_streams_per_source`: the source lost its own oldest stream.
    pub per_source: u64,
}

/// Everything the decoder counts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DecodeStats {
    pub datagrams: u64,
    pub bytes: u64,
    pub errors: ErrorCounts,
    /// Flow records produced, by (exporter, protocol version 5/9/10).
    pub records: HashMap<(IpAddr, u16), u64>,
    /// Options data records seen (not flow records; used for sampling/clock).
    pub options_records: u64,
    /// Templates currently cached over all exporters.
    pub template_cache_size: u64,
    /// Template lookups that missed.
    pub template_misses: u64,
    /// Templates redefined with a different layout under the same id.
    pub template_collisions: u64,
    /// Data sets held for a template that had not arrived yet.
    pub pending_held: u64,
    /// Held data sets decoded once their template arrived.
    pub pending_replayed: u64,
    /// Held data sets dropped (per-stream limits, or a parse that failed).
    pub pending_dropped: u64,
    /// Held data sets dropped because their template did not come within
    /// `pending_ttl`.
    pub pending_expired: u64,
    /// Missing flows (v5), packets (v9) or records (IPFIX), by exporter.
    pub sequence_gaps: HashMap<IpAddr, u64>,
    /// Sequence restarts, duplicates and reorderings (counting resynchronised).
    pub sequence_resets: u64,
    /// Exporter streams with state now.
    pub exporters: u64,
    /// Exporter streams whose state was dropped to stay within a limit (the
    /// sum of `evictions`).
    pub exporters_evicted: u64,
    /// Those evictions by the limit that forced them.
    pub evictions: Evictions,
    /// Accounted bytes of all decoder state (templates, layouts, held data);
    /// at most `max_state` after every datagram.
    pub state_bytes: u64,
    /// Template store read/write failures (the store is best-effort).
    pub template_store_errors: u64,
    /// Per exporter address; at most `max_exporters` entries, later ones
    /// counted under `OVERFLOW_IP`.
    pub by_exporter: HashMap<IpAddr, ExporterStats>,
    /// Exporters forgotten after `exporter_idle` without a datagram.
    pub exporters_aged_out: u64,
}

/// Per-exporter maps are capped so that spoofed sources cannot grow them
/// without bound; beyond the cap counts go to the unspecified address.
pub(crate) fn bump<K2>(map: &mut HashMap<K2, u64>, key: K2, by: u64, cap: usize, overflow: K2)
where
    K2: std::hash::Hash + Eq,
{
    if let Some(v) = map.get_mut(&key) {
        *v += by;
        return;
    }
    let key = if map.len() >= cap { overflow } else { key };
    *map.entry(key).or_insert(0) += by;
}

pub(crate) const OVERFLOW_IP: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

/// The entry of `ip` in a per-exporter map capped at `cap` entries; beyond
/// the cap, the overflow entry.
pub(crate) fn entry_capped<V: Default>(
    map: &mut HashMap<IpAddr, V>,
    ip: IpAddr,
    cap: usize,
) -> &mut V {
    let key = if map.len() >= cap && !map.contains_key(&ip) {
        OVERFLOW_IP
    } else {
        ip
    };
    map.entry(key).or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_land_in_their_buckets() {
        let mut h = DelayHistogram::default();
        for ms in [0, 100, 101, 4_000, 3_600_000, 3_600_001, -5] {
            h.observe(ms);
        }
        assert_eq!(h.buckets[0], 2, "0 and 100 ms are within 0.1 s");
        assert_eq!(h.buckets[1], 1);
        assert_eq!(h.buckets[5], 1, "4 s is in (2 s, 5 s]");
        assert_eq!(h.buckets[13], 1);
        assert_eq!(h.buckets[14], 1, "over an hour");
        assert_eq!(h.negative, 1);
        assert_eq!(h.count(), 6);
        assert_eq!(h.sum_ms, 100 + 101 + 4_000 + 3_600_000 + 3_600_001);
    }

    #[test]
    fn capped_entries_overflow() {
        let mut m: HashMap<IpAddr, u64> = HashMap::new();
        let ip = |n: u8| IpAddr::V4(Ipv4Addr::new(10, 0, 0, n));
        *entry_capped(&mut m, ip(1), 2) += 1;
        *entry_capped(&mut m, ip(2), 2) += 1;
        *entry_capped(&mut m, ip(3), 2) += 1;
        *entry_capped(&mut m, ip(1), 2) += 1;
        assert_eq!(m.get(&ip(1)), Some(&2));
        assert_eq!(m.get(&ip(3)), None);
        assert_eq!(m.get(&OVERFLOW_IP), Some(&1));
    }
}
