//! Flow files into records: JSON Lines, flow-tools, pcap/pcapng of exports,
//! IPFIX files (RFC 5655).

pub mod error;
pub mod flowtools;
pub mod ipfix;
pub mod jsonl;
pub mod pcap;

pub use error::InputError;
