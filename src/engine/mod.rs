//! The engine: runs a compiled [`Plan`](crate::query::plan::Plan) over a
//! stream of records. Event time only: the watermark is the engine's sole
//! notion of time, so the batch command and the daemon share this code.
//!
//! Data flow per branch: [`BranchEngine`] (filter → reorder buffer →
//! grouper → groupfilter), then [`MergerEngine`] (merger → ungrouper).
//! [`Engine`] composes them single-threaded, or with the merger on a
//! thread of its own ([`Engine::with_merger_thread`], `flowy query`: same
//! matches, same order); [`run_batch`] runs it once ([`run_batch_with`]
//! hands matches on as they are found).
//!
//! Choices where the specification leaves room (kept here so operators and
//! the docs can refer to them):
//! - A record joining a group counts for every module-qualified aggregate
//!   whose module's rules it satisfies against that group; the founding
//!   record counts for every module (every rule is relative to it).
//! - Aggregates skip absent values: `sum`/`count` of nothing are 0, `avg`,
//!   `min`, `max`, `first`, `last`, `bitOR`, `bitAND` of nothing are absent,
//!   `union` of nothing is the empty set; `plain` is the first member's
//!   value even when absent.
//! - `x in v` with a single value `v` (not a set or prefix) means `x = v`.
//! - An Allen delta is `None` when the rule has none: `X < Y` / `X > Y` then
//!   put no bound on the gap, while an explicit `delta 0` bounds it to 0 and
//!   so never holds (SPEC §2.5, evaluated literally); the join finds no
//!   candidates for it. Every other relation reads no delta as D = 0.
//! - Windows: a group closes once W reaches its window's end (every record
//!   of the window has been released by then).
//! - Limits: when `max_open_groups` is hit the oldest open group is closed
//!   early; when `max_reorder` is hit the oldest buffered record is released
//!   early; when `max_stored_groups` is hit the oldest stored group is
//!   dropped. Each is counted in the stats.
//! - With a finite horizon, a group of a branch that only difference modules
//!   use is kept past `etime + horizon` until every held tuple formed before
//!   it arrived has been decided, so no held tuple misses an extension that
//!   arrived before its deadline.
//! - Output order: see [`pipeline`] and [`merger`]; it depends only on the
//!   input order, never on scheduling.

pub mod aggregate;
pub mod allen;
mod blocks;
pub mod branch;
pub mod budget;
mod chunked;
pub mod clock;
pub mod config;
pub mod driver;
mod fasthash;
pub mod filter;
pub mod group;
pub mod grouper;
pub mod index;
pub mod join;
mod keytable;
pub mod merger;
pub mod mergerule;
pub mod pipeline;
mod reach;
mod seqslots;
pub mod ungroup;

pub use branch::{BranchEngine, BranchStats};
pub use budget::{Eviction, StateBudget};
pub use clock::Watermark;
pub use config::{EngineConfig, LatePolicy};
pub use group::Group;
pub use merger::{MergerEngine, MergerStats};
pub use pipeline::{run_batch, run_batch_with, Engine};

use std::hash::Hasher as _;

use fnv::FnvHasher;
use std::sync::{Arc, OnceLock};

use crate::record::Record;

/// One match: a tuple of groups (one per branch of the exported merger
/// module, in its `branches` order; the single branch's group when the
/// query has no merger) and the ungrouped records behind it.
#[derive(Clone, Debug)]
pub struct Match {
    pub groups: Vec<Arc<Group>>,
    /// The ungrouper's output, made when first asked for: by the thread
    /// that writes the match, and not at all for an output without records.
    records: OnceLock<Vec<(usize, Arc<Record>)>>,
}

impl Match {
    pub fn new(groups: Vec<Arc<Group>>) -> Self {
        Match {
            groups,
            records: OnceLock::new(),
        }
    }

    /// A match whose ungrouped records are given (tests, hand-made matches).
    pub fn with_records(groups: Vec<Arc<Group>>, records: Vec<(usize, Arc<Record>)>) -> Self {
        Match {
            groups,
            records: OnceLock::from(records),
        }
    }

    /// Ungrouper output (SPEC §3.3): (branch index, record), deduplicated by
    /// `rec_id`, ordered by `stime` then `rec_id`.
    pub fn records(&self) -> &[(usize, Arc<Record>)] {
        self.records.get_or_init(|| ungroup::ungroup(&self.groups))
    }

    /// A deterministic id of this match of query `query`: FNV-1a (64 bit)
    /// over the query name and, per group in tuple order, its branch and
    /// its members' `rec_id`s in ascending order (the order members joined
    /// may differ between runs whose records arrived differently). The same
    /// records matched the same way give the same id in every run, process
    /// and platform, so consumers can drop a match they already have.
    pub fn id(&self, query: &str) -> u64 {
        let mut h = FnvHasher::default();
        h.write(query.as_bytes());
        let mut ids: Vec<u64> = Vec::new();
        for g in &self.groups {
            h.write(&(g.branch as u64).to_le_bytes());
            h.write(&(g.members.len() as u64).to_le_bytes());
            ids.clear();
            ids.extend(g.members.iter().map(|r| r.rec_id()));
            ids.sort_unstable();
            for id in &ids {
                h.write(&id.to_le_bytes());
            }
        }
        h.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::RecordFields;

    fn group(branch: usize, ids: &[u64]) -> Arc<Group> {
        let members = ids
            .iter()
            .map(|&rec_id| {
                Arc::new(Record::from(RecordFields {
                    rec_id,
                    ..RecordFields::default()
                }))
            })
            .collect();
        Arc::new(Group {
            branch,
            id: 0,
            stime: 0,
            etime: 0,
            members,
            values: Vec::new(),
        })
    }

    /// The id is part of the output contract (consumers store it): pinned.
    #[test]
    fn match_id_is_fnv1a_of_query_branches_and_rec_ids() {
        let m = Match::new(vec![group(1, &[3, 7]), group(0, &[5])]);
        assert_eq!(m.id("q"), m.id("q"));
        assert_ne!(m.id("q"), m.id("r"));
        let swapped = Match::new(vec![group(0, &[3, 7]), group(1, &[5])]);
        assert_ne!(m.id("q"), swapped.id("q"));
        // Members count as a set: the order they joined in does not matter.
        let reordered = Match::new(vec![group(1, &[7, 3]), group(0, &[5])]);
        assert_eq!(m.id("q"), reordered.id("q"));
        // FNV-1a of "" is the offset basis; of "a" the published value.
        let empty = Match::new(Vec::new());
        assert_eq!(empty.id(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(empty.id("a"), 0xaf63_dc4c_8601_ec8c);
    }
}
