//! flowy: stream-based flow queries over NetFlow v5/v9 and IPFIX.
//!
//! Data flows one way: input → decode → record → branch (filter → grouper →
//! groupfilter) → merger → ungrouper → output.

pub mod cli;
pub mod cluster;
pub mod collect;
pub mod daemon;
pub mod engine;
#[doc(hidden)]
pub mod fuzzing;
pub mod iana;
pub mod input;
pub mod memory;
pub mod output;
pub mod query;
pub mod record;
pub mod sanity;
pub mod value;
