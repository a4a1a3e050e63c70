//! A merger branch's stored groups and their indexes: by sequence number
//! (arrival order), by `stime`, by `etime`, and hash indexes on the field
//! lists the join plans probe.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::ops::Bound;
use std::sync::Arc;

use smallvec::SmallVec;

use crate::engine::allen::Endpoint;
use crate::engine::filter::key_value;
use crate::engine::Group;
use crate::query::plan::GroupField;
use crate::value::Value;

pub type HashKey = SmallVec<[Value; 2]>;

struct HashIndex {
    fields: Vec<GroupField>,
    map: HashMap<HashKey, VecDeque<u64>>,
}

impl HashIndex {
    fn key_of(&self, g: &Group) -> Option<HashKey> {
        self.fields
            .iter()
            .map(|f| g.get(*f).map(key_value))
            .collect()
    }
}

/// The groups of one branch that the merger keeps for future joins.
#[derive(Default)]
pub struct BranchStore {
    groups: BTreeMap<u64, Arc<Group>>,
    by_stime: BTreeSet<(i64, u64)>,
    by_etime: BTreeSet<(i64, u64)>,
    hashes: Vec<HashIndex>,
    /// Upper bound of `etime − stime` over stored groups (never shrinks).
    max_duration: i64,
}

impl BranchStore {
    /// Register a hash index on `fields`; returns its number. Must be
    /// called before groups are inserted.
    pub fn hash_index(&mut self, fields: &[GroupField]) -> usize {
        if let Some(i) = self.hashes.iter().position(|h| h.fields == fields) {
            return i;
        }
        self.hashes.push(HashIndex {
            fields: fields.to_vec(),
            map: HashMap::new(),
        });
        self.hashes.len() - 1
    }

    pub fn len(&self) -> usize {
        self.groups.len()
    }

    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    pub fn max_duration(&self) -> i64 {
        self.max_duration
    }

    pub fn insert(&mut self, seq: u64, g: Arc<Group>) {
        self.by_stime.insert((g.stime, seq));
        self.by_etime.insert((g.etime, seq));
        self.max_duration = self.max_duration.max(g.etime.saturating_sub(g.stime));
        for h in &mut self.hashes {
            // A group with an absent key field can never satisfy the equality.
            if let Some(k) = h.key_of(&g) {
                h.map.entry(k).or_default().push_back(seq);
            }
        }
        self.groups.insert(seq, g);
    }

    pub fn remove(&mut self, seq: u64) -> Option<Arc<Group>> {
        let g = self.groups.remove(&seq)?;
        self.by_stime.remove(&(g.stime, seq));
        self.by_etime.remove(&(g.etime, seq));
        for h in &mut self.hashes {
            let Some(k) = h.key_of(&g) else { continue };
            if let Some(seqs) = h.map.get_mut(&k) {
                if let Some(pos) = seqs.iter().position(|s| *s == seq) {
                    seqs.remove(pos);
                }
                if seqs.is_empty() {
                    h.map.remove(&k);
                }
            }
        }
        Some(g)
    }

    /// The stored group with the smallest `etime`, as (etime, seq).
    pub fn earliest_end(&self) -> Option<(i64, u64)> {
        self.by_etime.first().copied()
    }

    pub fn get(&self, seq: u64) -> Option<&Arc<Group>> {
        self.groups.get(&seq)
    }

    pub fn all(&self) -> impl Iterator<Item = &Arc<Group>> + '_ {
        self.groups.values()
    }

    pub fn hash_lookup(
        &self,
        index: usize,
        key: &HashKey,
    ) -> impl Iterator<Item = &Arc<Group>> + '_ {
        self.hashes
            .get(index)
            .and_then(|h| h.map.get(key))
            .into_iter()
            .flatten()
            .filter_map(|s| self.groups.get(s))
    }

    /// Groups whose start (or end) lies in `[lo, hi]`.
    pub fn time_range(
        &self,
        which: Endpoint,
        lo: i64,
        hi: i64,
    ) -> impl Iterator<Item = &Arc<Group>> + '_ {
        let set = match which {
            Endpoint::Start => &self.by_stime,
            Endpoint::End => &self.by_etime,
        };
        let range = (lo <= hi).then(|| {
            set.range((
                Bound::Included((lo, u64::MIN)),
                Bound::Included((hi, u64::MAX)),
            ))
        });
        range
            .into_iter()
            .flatten()
            .filter_map(|(_, s)| self.groups.get(s))
    }
}
