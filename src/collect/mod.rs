//! Collector: UDP sockets, datagram → record decoding (NetFlow v5, v9,
//! IPFIX via `netflow_parser`), templates, replay of captures.

mod check;
pub mod decode;
pub mod fields;
mod lru;
pub mod replay;
pub mod sequence;
pub mod socket;
pub mod stats;
pub mod templates;
pub mod times;

use std::path::PathBuf;

pub use check::MAX_TEMPLATE_FIELDS;
pub use decode::Decoder;
pub use replay::replay;
pub use socket::bind_udp;
pub use stats::{DecodeStats, ErrorCounts};

/// Which templates an exporter shares (SPEC §4.2 `template_scope`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum TemplateScope {
    /// Templates belong to the exporter's IP address (and v9 source id /
    /// IPFIX observation domain).
    #[default]
    Address,
    /// … to its IP address and UDP source port.
    AddressPort,
}

#[derive(Clone, Debug)]
pub struct DecoderConfig {
    pub template_scope: TemplateScope,
    /// Scale bytes/packets by the sampling interval.
    pub apply_sampling: bool,
    /// Data sets held per exporter while their template is unknown.
    pub max_pending: usize,
    /// Exporter streams with state (templates, sequence, options); LRU beyond.
    pub max_exporters: usize,
    /// File where templates persist across restarts.
    pub template_store: Option<PathBuf>,
}

impl Default for DecoderConfig {
    fn default() -> Self {
        Self {
            template_scope: TemplateScope::Address,
            apply_sampling: false,
            max_pending: 1024,
            max_exporters: 10_000,
            template_store: None,
        }
    }
}
