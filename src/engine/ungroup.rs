//! The ungrouper (SPEC §3.3): a match's groups back to flow records.

use std::collections::HashSet;
use std::sync::Arc;

use crate::engine::Group;
use crate::record::Record;

/// Members of `groups` (given in the export module's branch order), each
/// `rec_id` once, attributed to the first group holding it, ordered by
/// (`stime`, `rec_id`).
pub fn ungroup(groups: &[Arc<Group>]) -> Vec<(usize, Arc<Record>)> {
    let mut seen = HashSet::new();
    let mut out: Vec<(usize, Arc<Record>)> = Vec::new();
    for g in groups {
        for r in &g.members {
            if seen.insert(r.rec_id) {
                out.push((g.branch, r.clone()));
            }
        }
    }
    out.sort_by_key(|(_, r)| (r.stime, r.rec_id));
    out
}
