//! The ungrouper (SPEC §3.3): a match's groups back to flow records.

use std::sync::Arc;

use crate::engine::fasthash::FastSet;
use crate::engine::Group;
use crate::record::Record;

/// Members of `groups` (given in the export module's branch order), each
/// `rec_id` once, attributed to the first group holding it, ordered by
/// (`stime`, `rec_id`).
pub fn ungroup(groups: &[Arc<Group>]) -> Vec<(usize, Arc<Record>)> {
    // Members lie scattered over the heap: reading them all first lets
    // their cache misses overlap instead of stalling one after another.
    for g in groups {
        g.members.iter().for_each(|r| touch(r));
    }
    let mut out: Vec<(usize, Arc<Record>)> = match groups {
        // One grouper never puts a record in a group twice: nothing to dedup.
        [g] => g.members.iter().map(|r| (g.branch, r.clone())).collect(),
        // A match has few members: a linear scan beats hashing.
        _ if groups.iter().map(|g| g.members.len()).sum::<usize>() <= 32 => {
            let mut out: Vec<(usize, Arc<Record>)> = Vec::new();
            for g in groups {
                for r in &g.members {
                    if !out.iter().any(|(_, x)| x.rec_id() == r.rec_id()) {
                        out.push((g.branch, r.clone()));
                    }
                }
            }
            out
        }
        _ => {
            let mut seen = FastSet::default();
            groups
                .iter()
                .flat_map(|g| g.members.iter().map(move |r| (g.branch, r)))
                .filter(|(_, r)| seen.insert(r.rec_id()))
                .map(|(b, r)| (b, r.clone()))
                .collect()
        }
    };
    // Members join in stime order, so this is usually sorted already.
    let key = |(_, r): &(usize, Arc<Record>)| (r.stime(), r.rec_id());
    if !out.is_sorted_by_key(key) {
        out.sort_by_key(key);
    }
    out
}

/// Load what the ungrouper reads of a record (its `rec_id`, `stime` and
/// reference count).
#[inline]
fn touch(r: &Record) {
    std::hint::black_box((r.rec_id(), r.stime(), r.bytes()));
}
