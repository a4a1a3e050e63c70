//! The query driver (SPEC §3.1, §3.2): one place for each rule that turns
//! a record stream into matches. [`Admission`] owns the watermark and the
//! late policy; [`QueryDriver`] owns one query's stages (filter sharing,
//! reorder, group closing, the merger's clock, finishing). A batch run
//! composes them inline ([`Engine`](crate::engine::Engine)); the daemon's
//! dispatcher owns the one `Admission` and runs a `QueryDriver` per query
//! task. Only the clock (`now_ms`) and the source differ.

pub mod admission;
mod merge_stage;
pub mod query;

pub use admission::{Admission, AdmissionStats, Step};
pub use query::{Drain, QueryDriver};
