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
