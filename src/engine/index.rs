//! A merger branch's stored groups and their indexes: by sequence number,
//! by `stime`, by `etime`, and hash indexes on the field lists the join
//! plans probe. Each hash bucket is itself ordered by `stime` and by
//! `etime`, so an equality join that also has an Allen relation only visits
//! the bucket's groups in the relation's time range (a heavy-hitter key
//! does not make every probe scan its whole bucket).

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::sync::Arc;

use hashbrown::HashTable;
use smallvec::SmallVec;

use crate::engine::allen::Endpoint;
use crate::engine::blocks::{partition_point_from_end, SortedBlocks};
use crate::engine::filter::key_value;
use crate::engine::Group;
use crate::query::plan::GroupField;
use crate::value::Value;

/// Inline room for the usual few join fields: probing allocates nothing.
pub type HashKey = SmallVec<[Value; 4]>;

/// An inclusive range on a group's start or end.
pub type TimeRange = (Endpoint, i64, i64);

/// The groups of one key, as (time, seq) sorted by start and by end.
/// Groups arrive roughly in time order and expire oldest first, so the
/// sorted inserts and removals happen near the runs' ends.
#[derive(Default)]
struct Bucket {
    by_stime: Run,
    by_etime: Run,
}

/// A sorted run of (time, seq). Most keys hold a handful of groups, so the
/// entries live inline (no allocation, nothing to free per key); removals
/// from the front only advance `head`, and the dead prefix is compacted
/// once it is half the run, so expiry stays amortised O(1) per group even
/// for a key holding very many.
#[derive(Default)]
struct Run {
    items: SmallVec<[(i64, u64); 4]>,
    head: usize,
}

impl Run {
    fn live(&self) -> &[(i64, u64)] {
        self.items.get(self.head..).unwrap_or(&[])
    }

    fn is_empty(&self) -> bool {
        self.live().is_empty()
    }

    fn insert(&mut self, x: (i64, u64)) {
        // In-order arrival is the common case: no search.
        if self.items.last().is_none_or(|b| *b <= x) {
            self.items.push(x);
            return;
        }
        let i = self.head + partition_point_from_end(self.live(), |y| *y < x);
        self.items.insert(i, x);
    }

    fn remove(&mut self, x: (i64, u64)) {
        // Expiry removes the oldest first.
        if self.live().first() == Some(&x) {
            self.head += 1;
            if self.head == self.items.len() {
                self.items.clear();
                self.head = 0;
            } else if self.head * 2 >= self.items.len() {
                self.items.drain(..self.head);
                self.head = 0;
            }
            return;
        }
        if let Ok(i) = self.live().binary_search(&x) {
            self.items.remove(self.head + i);
        }
    }
}

impl Bucket {
    fn insert(&mut self, g: &Group, seq: u64) {
        self.by_stime.insert((g.stime, seq));
        self.by_etime.insert((g.etime, seq));
    }

    fn remove(&mut self, g: &Group, seq: u64) {
        self.by_stime.remove((g.stime, seq));
        self.by_etime.remove((g.etime, seq));
    }

    fn range(&self, (which, lo, hi): TimeRange) -> impl Iterator<Item = u64> + '_ {
        let d = match which {
            Endpoint::Start => self.by_stime.live(),
            Endpoint::End => self.by_etime.live(),
        };
        let start = partition_point_from_end(d, |(t, _)| *t < lo);
        d.get(start..)
            .unwrap_or(&[])
            .iter()
            .take_while(move |(t, _)| *t <= hi)
            .map(|(_, s)| *s)
    }
}

struct HashIndex {
    fields: Vec<GroupField>,
    state: foldhash::fast::RandomState,
    /// Slots of `entries` with the high half of their key's hash, found by
    /// that half. With a million stored groups a table of keys or buckets
    /// outgrew the caches, so every probe missed in it; slot numbers alone
    /// kept it small, but then growing the table and every candidate a
    /// probe rejected had to read `entries` at random. The 8-byte (slot,
    /// tag) pairs let both happen within the table.
    table: HashTable<(u32, u32)>,
    /// (hash, key, bucket), densely; `free` lists emptied slots.
    entries: Vec<(u64, HashKey, Bucket)>,
    free: Vec<u32>,
}

impl HashIndex {
    fn new(fields: &[GroupField]) -> Self {
        HashIndex {
            fields: fields.to_vec(),
            state: foldhash::fast::RandomState::default(),
            table: HashTable::new(),
            entries: Vec::new(),
            free: Vec::new(),
        }
    }

    fn hash(&self, key: &HashKey) -> u64 {
        self.state.hash_one(key)
    }

    /// The slot holding `key`, whose hash is `h`.
    fn find(&self, h: u64, key: &HashKey) -> Option<u32> {
        let entries = &self.entries;
        let t = tag(h);
        let hit = |(e, et): &(u32, u32)| {
            *et == t
                && entries
                    .get(*e as usize)
                    .is_some_and(|(eh, k, _)| *eh == h && k == key)
        };
        self.table.find(table_hash(t), hit).map(|(e, _)| *e)
    }

    fn bucket(&self, key: &HashKey) -> Option<&Bucket> {
        let e = self.find(self.hash(key), key)?;
        self.entries.get(e as usize).map(|(_, _, b)| b)
    }

    fn insert(&mut self, key: HashKey, g: &Group, seq: u64) {
        let h = self.hash(&key);
        if let Some(e) = self.find(h, &key) {
            if let Some((_, _, b)) = self.entries.get_mut(e as usize) {
                b.insert(g, seq);
            }
            return;
        }
        let mut b = Bucket::default();
        b.insert(g, seq);
        let e = match self.free.pop() {
            Some(e) => {
                if let Some(slot) = self.entries.get_mut(e as usize) {
                    *slot = (h, key, b);
                }
                e
            }
            None => {
                // Slot numbers are u32: more than 4 billion distinct keys
                // cannot be stored in memory anyway.
                let e = u32::try_from(self.entries.len()).unwrap_or(u32::MAX);
                self.entries.push((h, key, b));
                e
            }
        };
        let t = tag(h);
        self.table
            .insert_unique(table_hash(t), (e, t), |(_, t)| table_hash(*t));
    }

    fn remove(&mut self, key: &HashKey, g: &Group, seq: u64) {
        let h = self.hash(key);
        let Some(e) = self.find(h, key) else {
            return;
        };
        let Some((_, _, b)) = self.entries.get_mut(e as usize) else {
            return;
        };
        b.remove(g, seq);
        if !b.by_stime.is_empty() {
            return;
        }
        // Free the key's memory now; the slot is reused by a later key.
        if let Some(slot) = self.entries.get_mut(e as usize) {
            *slot = (0, HashKey::new(), Bucket::default());
        }
        self.free.push(e);
        if let Ok(found) = self.table.find_entry(table_hash(tag(h)), |(x, _)| *x == e) {
            found.remove();
        }
    }

    fn key_of(&self, g: &Group) -> Option<HashKey> {
        self.fields
            .iter()
            .map(|f| g.get(*f).map(key_value))
            .collect()
    }
}

/// The part of a key's hash the table keeps.
fn tag(h: u64) -> u32 {
    (h >> 32) as u32
}

/// The table's hash, recomputable from the tag alone: the multiply spreads
/// the tag over the high bits (hashbrown's control byte) and keeps its low
/// bits (the bucket position) uniform.
fn table_hash(tag: u32) -> u64 {
    u64::from(tag).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Hashes a store's sequence numbers to themselves (the tag bits taken
/// from their low bits): groups stored close in time sit in neighbouring
/// table slots, so the inserts and the lookups of one key's groups (which
/// arrived close together) share cache lines, where a scattering hash
/// missed the cache on each once the store outgrew it. The live sequence
/// numbers are mostly one recent window, shorter than the table, which the
/// identity maps to distinct slots; the few long-lived groups outside it
/// collide only with each other's slots. Sequence numbers come from the
/// merger, not from input.
#[derive(Default)]
struct SeqHasher(u64);

impl Hasher for SeqHasher {
    fn finish(&self) -> u64 {
        self.0 ^ (self.0 << 57)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_u64(&mut self, x: u64) {
        self.0 = x;
    }
}

type SeqMap<V> = HashMap<u64, V, BuildHasherDefault<SeqHasher>>;

/// The groups of one branch that the merger keeps for future joins.
#[derive(Default)]
pub struct BranchStore {
    groups: SeqMap<Arc<Group>>,
    by_stime: SortedBlocks,
    by_etime: SortedBlocks,
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
        self.hashes.push(HashIndex::new(fields));
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
                h.insert(k, &g, seq);
            }
        }
        self.groups.insert(seq, g);
    }

    pub fn remove(&mut self, seq: u64) -> Option<Arc<Group>> {
        let g = self.groups.remove(&seq)?;
        self.by_stime.remove((g.stime, seq));
        self.by_etime.remove((g.etime, seq));
        for h in &mut self.hashes {
            let Some(k) = h.key_of(&g) else { continue };
            h.remove(&k, &g, seq);
        }
        Some(g)
    }

    /// The stored group with the smallest `etime`, as (etime, seq).
    pub fn earliest_end(&self) -> Option<(i64, u64)> {
        self.by_etime.first()
    }

    pub fn get(&self, seq: u64) -> Option<&Arc<Group>> {
        self.groups.get(&seq)
    }

    pub fn contains(&self, seq: u64) -> bool {
        self.groups.contains_key(&seq)
    }

    /// Every stored group, by (`stime`, arrival).
    pub fn all(&self) -> impl Iterator<Item = &Arc<Group>> + '_ {
        self.by_stime
            .iter()
            .filter_map(|(_, s)| self.groups.get(&s))
    }

    /// The groups filed under `key` in hash index `index`, found once and
    /// then walked per time range (see [`Keyed::range`]).
    pub(crate) fn keyed(&self, index: usize, key: &HashKey) -> Keyed<'_> {
        Keyed {
            store: self,
            bucket: self.hashes.get(index).and_then(|h| h.bucket(key)),
        }
    }

    /// Groups filed under `key` in hash index `index`, by `stime`; with a
    /// range, only those whose start or end lies in it.
    pub fn hash_lookup(
        &self,
        index: usize,
        key: &HashKey,
        range: Option<TimeRange>,
    ) -> impl Iterator<Item = &Arc<Group>> + '_ {
        let range = range.unwrap_or((Endpoint::Start, i64::MIN, i64::MAX));
        self.hashes
            .get(index)
            .and_then(|h| h.bucket(key))
            .into_iter()
            .flat_map(move |b| b.range(range))
            .filter_map(|s| self.groups.get(&s))
    }

    /// Groups whose start (or end) lies in `[lo, hi]`.
    pub fn time_range(&self, (which, lo, hi): TimeRange) -> impl Iterator<Item = &Arc<Group>> + '_ {
        let set = match which {
            Endpoint::Start => &self.by_stime,
            Endpoint::End => &self.by_etime,
        };
        let range = (lo <= hi).then(|| set.range(lo, hi));
        range
            .into_iter()
            .flatten()
            .filter_map(|(_, s)| self.groups.get(&s))
    }
}

/// One key's groups in a store's hash index.
pub(crate) struct Keyed<'a> {
    store: &'a BranchStore,
    bucket: Option<&'a Bucket>,
}

impl<'a> Keyed<'a> {
    /// By `stime`; with a range, only those whose start or end lies in it.
    pub(crate) fn range(
        &self,
        range: Option<TimeRange>,
    ) -> impl Iterator<Item = &'a Arc<Group>> + 'a {
        let range = range.unwrap_or((Endpoint::Start, i64::MIN, i64::MAX));
        let groups = &self.store.groups;
        self.bucket
            .into_iter()
            .flat_map(move |b| b.range(range))
            .filter_map(move |s| groups.get(&s))
    }
}
