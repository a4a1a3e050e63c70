//! The engine: runs a compiled [`Plan`](crate::query::plan::Plan) over a
//! stream of records. Event time only: the watermark is the engine's sole
//! notion of time, so the batch command and the daemon share this code.

pub mod aggregate;
pub mod allen;
pub mod branch;
pub mod clock;
pub mod config;
pub mod filter;
pub mod group;
pub mod grouper;
pub mod index;
pub mod join;
pub mod merger;
pub mod mergerule;
pub mod pipeline;
pub mod ungroup;

pub use branch::{BranchEngine, BranchStats};
pub use clock::Watermark;
pub use config::{EngineConfig, LatePolicy};
pub use group::Group;
pub use merger::{MergerEngine, MergerStats};
pub use pipeline::{run_batch, Engine};

use std::sync::Arc;

use crate::record::Record;

/// One match: a tuple of groups (one per branch of the exported merger
/// module, in its `branches` order; the single branch's group when the
/// query has no merger) and the ungrouped records behind it.
#[derive(Clone, Debug)]
pub struct Match {
    pub groups: Vec<Arc<Group>>,
    /// Ungrouper output (SPEC §3.3): (branch index, record), deduplicated by
    /// `rec_id`, ordered by `stime` then `rec_id`.
    pub records: Vec<(usize, Arc<Record>)>,
}
