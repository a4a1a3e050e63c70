//! Collector: UDP sockets, datagram → record decoding (NetFlow v5, v9,
//! IPFIX via `netflow_parser`), templates, replay of captures.

mod check;
pub mod decode;
mod exporter;
mod fair;
mod fastpath;
#[cfg(test)]
mod fastpath_tests;
pub mod fields;
mod layout;
mod packets;
pub mod replay;
pub mod sequence;
pub mod socket;
#[cfg(test)]
mod state_tests;
pub mod stats;
pub mod templates;
pub mod times;
pub mod udp_drops;

use std::path::PathBuf;

pub use check::MAX_TEMPLATE_FIELDS;
pub use decode::Decoder;
pub use replay::replay;
pub use socket::{bind_udp, recv_buffer_size, RecvBuffer};
pub use stats::{DecodeStats, ErrorCounts, Evictions};

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

impl std::str::FromStr for TemplateScope {
    type Err = String;

    /// The configuration spelling (SPEC §4.2): `address` or `address+port`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "address" => Ok(TemplateScope::Address),
            "address+port" => Ok(TemplateScope::AddressPort),
            other => Err(format!(
                "template_scope must be \"address\" or \"address+port\", not {other:?}"
            )),
        }
    }
}

#[derive(Clone, Debug)]
pub struct DecoderConfig {
    pub template_scope: TemplateScope,
    /// Scale bytes/packets by the sampling interval.
    pub apply_sampling: bool,
    /// Data sets held per exporter stream and template while the template is
    /// unknown; 0 disables holding. All held data together is bounded by
    /// `max_state`.
    pub max_pending: usize,
    /// Exporter streams with state (templates, sequence, options). Beyond
    /// this, the source address with the most streams loses its least
    /// recently used one.
    pub max_exporters: usize,
    /// Streams one source address may open (observation domains / source
    /// ids are chosen by the sender); beyond this it loses its oldest.
    pub max_streams_per_source: usize,
    /// Bytes of templates, compiled layouts and held data of all exporters
    /// (an upper bound of what they take); beyond this, streams of the source
    /// address holding the most are dropped (SPEC §4.5).
    pub max_state: usize,
    /// Held data is dropped once its stream held nothing new for this long
    /// (ms, by the `now_ms` the decoder is given).
    pub pending_ttl_ms: i64,
    /// File where templates persist across restarts.
    pub template_store: Option<PathBuf>,
    /// An exporter address that sent nothing for this long (ms, by `now_ms`)
    /// is forgotten: counters, templates, sequence state. 0 = never (the
    /// default, for files read once; the daemon sets
    /// `collector.exporter_idle`).
    pub exporter_idle_ms: i64,
}

impl Default for DecoderConfig {
    fn default() -> Self {
        Self {
            template_scope: TemplateScope::Address,
            apply_sampling: false,
            max_pending: 256,
            max_exporters: 4096,
            max_streams_per_source: 1024,
            max_state: 256 << 20,
            pending_ttl_ms: 60_000,
            template_store: None,
            exporter_idle_ms: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::TemplateScope;

    #[test]
    fn scope_from_config_text() {
        assert_eq!("address".parse(), Ok(TemplateScope::Address));
        assert_eq!("address+port".parse(), Ok(TemplateScope::AddressPort));
        assert!("port".parse::<TemplateScope>().is_err());
    }
}
