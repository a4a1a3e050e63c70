//! flowy: stream-based flow queries over NetFlow v5/v9 and IPFIX.
//!
//! Data flows one way: input → decode → record → branch (filter → grouper →
//! groupfilter) → merger → ungrouper → output.

pub mod engine;
pub mod iana;
pub mod query;
pub mod record;
pub mod value;
