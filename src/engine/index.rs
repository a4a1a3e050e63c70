//! A merger branch's stored groups and their indexes: by sequence number,
//! by `stime`, by `etime`, and hash indexes on the field lists the join
//! plans probe. Each hash bucket is itself ordered by `stime` and by
//! `etime`, so an equality join that also has an Allen relation only visits
//! the bucket's groups in the relation's time range (a heavy-hitter key
//! does not make every probe scan its whole bucket).

use std::hash::BuildHasher;
use std::num::NonZeroU32;
use std::sync::Arc;

use smallvec::SmallVec;

use crate::engine::allen::Endpoint;
use crate::engine::blocks::{partition_point_from_end, SortedBlocks};
use crate::engine::chunked::Chunked;
use crate::engine::filter::key_value;
use crate::engine::keytable::{tag, KeyTable};
use crate::engine::seqslots::SeqSlots;
use crate::engine::Group;
use crate::query::plan::GroupField;
use crate::value::Value;

/// Inline room for the usual few join fields: probing allocates nothing.
pub type HashKey = SmallVec<[Value; 4]>;

/// A key as an index keeps it, one per distinct key: room for the usual
/// one or two fields keeps the entries small (a million-group store holds
/// hundreds of thousands); hashed and compared as a slice, like [`HashKey`].
type StoredKey = SmallVec<[Value; 2]>;

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
    /// Slots of `entries` by a tag of their key's hash. With a million
    /// stored groups a table of keys or buckets outgrew the caches, so
    /// every probe missed in it; slot numbers alone kept it small, but then
    /// growing the table and every candidate a probe rejected had to read
    /// `entries` at random. (tag, slot) pairs let both happen within the
    /// table, and [`KeyTable`] keeps a probe to one cache line.
    table: KeyTable,
    /// (key, bucket), densely; `free` lists emptied slots.
    entries: Chunked<(StoredKey, Bucket)>,
    free: Vec<u32>,
}

impl HashIndex {
    fn new(fields: &[GroupField]) -> Self {
        HashIndex {
            fields: fields.to_vec(),
            state: foldhash::fast::RandomState::default(),
            table: KeyTable::default(),
            entries: Chunked::default(),
            free: Vec::new(),
        }
    }

    fn hash(&self, key: &[Value]) -> u64 {
        self.state.hash_one(key)
    }

    /// The slot holding `key`, whose hash is `h`. A 32-bit tag match is
    /// almost always the key itself, so the entry is read about once.
    fn find(&self, h: u64, key: &[Value]) -> Option<u32> {
        let entries = &self.entries;
        self.table.find(tag(h), |e| {
            entries
                .get(e as usize)
                .is_some_and(|(k, _)| k.as_slice() == key)
        })
    }

    /// Where `key` is filed, if it is.
    fn locate(&self, key: &[Value]) -> Option<Filed> {
        let h = self.hash(key);
        self.find(h, key).map(|e| Filed::new(e, h))
    }

    fn bucket(&self, key: &[Value]) -> Option<&Bucket> {
        let e = self.find(self.hash(key), key)?;
        self.entries.get(e as usize).map(|(_, b)| b)
    }

    /// `g`'s key and its hash, with the table line a lookup of it starts
    /// at on its way into the cache.
    fn prepare(&self, g: &Group) -> Option<(StoredKey, u64)> {
        let key = self.key_of(g)?;
        let h = self.hash(&key);
        self.table.prefetch(tag(h));
        Some((key, h))
    }

    /// File `g` under `key`, whose hash is `h`; returns the slot of its
    /// entry, which stays the key's until its last group is removed.
    fn insert(&mut self, key: StoredKey, h: u64, g: &Group, seq: u64) -> u32 {
        if let Some(e) = self.find(h, &key) {
            if let Some((_, b)) = self.entries.get_mut(e as usize) {
                b.insert(g, seq);
            }
            return e;
        }
        let mut b = Bucket::default();
        b.insert(g, seq);
        let e = match self.free.pop() {
            Some(e) => {
                if let Some(slot) = self.entries.get_mut(e as usize) {
                    *slot = (key, b);
                }
                e
            }
            None => {
                // Slot numbers are u32: more than 4 billion distinct keys
                // cannot be stored in memory anyway.
                let e = u32::try_from(self.entries.len()).unwrap_or(u32::MAX);
                self.entries.push((key, b));
                e
            }
        };
        self.table.insert(tag(h), e);
        e
    }

    /// Unfile `g` from the entry in slot `e`, filed under tag `t` (what
    /// `insert` gave and saw): no key to rebuild, hash or compare.
    fn remove(&mut self, Filed { slot: e, tag: t }: Filed, g: &Group, seq: u64) {
        let t = t.get();
        let Some((_, b)) = self.entries.get_mut(e as usize) else {
            return;
        };
        b.remove(g, seq);
        if !b.by_stime.is_empty() {
            return;
        }
        // Free the key's memory now; the slot is reused by a later key.
        if let Some(slot) = self.entries.get_mut(e as usize) {
            *slot = (StoredKey::new(), Bucket::default());
        }
        self.free.push(e);
        self.table.remove(t, e);
    }

    fn key_of(&self, g: &Group) -> Option<StoredKey> {
        let mut key = StoredKey::new();
        for f in &self.fields {
            key.push(key_value(g.get(*f)?));
        }
        Some(key)
    }
}

/// A group's keys in each hash index of a store, with their hashes.
#[derive(Default)]
pub struct Filing(SmallVec<[Option<(StoredKey, u64)>; 2]>);

/// Where a stored group sits in one hash index: its key's entry slot and
/// the tag the slot is filed under in the table. Non-zero, so that an
/// absent one costs no room.
#[derive(Clone, Copy)]
struct Filed {
    slot: u32,
    tag: NonZeroU32,
}

impl Filed {
    fn new(slot: u32, h: u64) -> Self {
        // `tag` keeps 0 and 1 for its markers: the fallback never happens.
        let tag = NonZeroU32::new(tag(h)).unwrap_or(NonZeroU32::MIN);
        Filed { slot, tag }
    }
}

/// Hash indexes whose place a stored group remembers; removal works out
/// its place in any further ones from its key. Stores rarely have more:
/// every stored group pays for this room.
const FILED: usize = 2;

/// A stored group with what its removal needs, worked out once when it
/// was stored: the owner's charge for it, and its place in the first
/// hash indexes (`None` where a key field is absent).
struct Stored {
    group: Arc<Group>,
    charge: usize,
    filed: [Option<Filed>; FILED],
}

/// The groups of one branch that the merger keeps for future joins.
#[derive(Default)]
pub struct BranchStore {
    groups: SeqSlots<Stored>,
    next_seq: u64,
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
        self.groups.len() == 0
    }

    pub fn max_duration(&self) -> i64 {
        self.max_duration
    }

    /// The keys `g` is to be filed under in this store's hash indexes. The
    /// merger works them out before it probes the other branches, so the
    /// index lines they need arrive in the cache while the probes wait for
    /// theirs: with a million stored groups each costs a memory access.
    pub fn prepare(&self, g: &Group) -> Filing {
        Filing(self.hashes.iter().map(|h| h.prepare(g)).collect())
    }

    /// Store `g` under the keys this store's `prepare(&g)` gave; returns
    /// its sequence number in this store (arrival order, dense, which
    /// [`SeqSlots`] relies on). `charge` is the owner's: `remove` hands
    /// it back, so what was charged for a group is exactly what is
    /// released.
    pub fn insert(&mut self, g: Arc<Group>, filing: Filing, charge: usize) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.by_stime.insert((g.stime, seq));
        self.by_etime.insert((g.etime, seq));
        self.max_duration = self.max_duration.max(g.etime.saturating_sub(g.stime));
        // A group with an absent key field can never satisfy the equality.
        let mut filed = [None; FILED];
        for (i, (h, key)) in self.hashes.iter_mut().zip(filing.0).enumerate() {
            let Some((k, hash)) = key else { continue };
            let slot = h.insert(k, hash, &g, seq);
            if let Some(f) = filed.get_mut(i) {
                *f = Some(Filed::new(slot, hash));
            }
        }
        self.groups.insert(
            seq,
            Stored {
                group: g,
                charge,
                filed,
            },
        );
        seq
    }

    /// Remove a stored group; returns it with the charge it was stored
    /// with.
    pub fn remove(&mut self, seq: u64) -> Option<(Arc<Group>, usize)> {
        let Stored {
            group: g,
            charge,
            filed,
        } = self.groups.remove(seq)?;
        self.by_stime.remove((g.stime, seq));
        self.by_etime.remove((g.etime, seq));
        for (i, h) in self.hashes.iter_mut().enumerate() {
            let at = match filed.get(i) {
                Some(f) => *f,
                None => h.key_of(&g).and_then(|k| h.locate(&k)),
            };
            if let Some(f) = at {
                h.remove(f, &g, seq);
            }
        }
        Some((g, charge))
    }

    /// The stored group with the smallest `etime`, as (etime, seq).
    pub fn earliest_end(&self) -> Option<(i64, u64)> {
        self.by_etime.first()
    }

    pub fn get(&self, seq: u64) -> Option<&Arc<Group>> {
        self.groups.get(seq).map(|s| &s.group)
    }

    pub fn contains(&self, seq: u64) -> bool {
        self.groups.contains(seq)
    }

    /// Every stored group, by (`stime`, arrival).
    pub fn all(&self) -> impl Iterator<Item = &Arc<Group>> + '_ {
        self.by_stime.iter().filter_map(|(_, s)| self.get(s))
    }

    /// The groups filed under `key` in hash index `index`, found once and
    /// then walked per time range (see [`Keyed::range`]).
    pub(crate) fn keyed(&self, index: usize, key: &HashKey) -> Keyed<'_> {
        Keyed {
            store: self,
            bucket: self.hashes.get(index).and_then(|h| h.bucket(key)),
        }
    }

    /// Groups whose start (or end) lies in `[lo, hi]`.
    pub fn time_range(&self, (which, lo, hi): TimeRange) -> impl Iterator<Item = &Arc<Group>> + '_ {
        let set = match which {
            Endpoint::Start => &self.by_stime,
            Endpoint::End => &self.by_etime,
        };
        let range = (lo <= hi).then(|| set.range(lo, hi));
        range.into_iter().flatten().filter_map(|(_, s)| self.get(s))
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
        let store = self.store;
        self.bucket
            .into_iter()
            .flat_map(move |b| b.range(range))
            .filter_map(move |s| store.get(s))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// A group with `key` in slot 0 (absent when `None`) and its id's
    /// parity in slot 1.
    fn group(id: u64, key: Option<u64>) -> Arc<Group> {
        Arc::new(Group {
            branch: 0,
            id,
            stime: id as i64,
            etime: id as i64 + 5,
            members: Vec::new(),
            values: vec![key.map(Value::Uint), Some(Value::Uint(id % 2))],
        })
    }

    /// Ids of the groups filed under `key`, in order; checks that the
    /// bucket holds no entries of removed groups (which lookups skip).
    fn ids(store: &BranchStore, index: usize, key: &HashKey) -> Vec<u64> {
        let mut ids: Vec<u64> = store.keyed(index, key).range(None).map(|g| g.id).collect();
        ids.sort_unstable();
        let filed = store.hashes.get(index).and_then(|h| h.bucket(key));
        let lens = filed.map_or((0, 0), |b| {
            (b.by_stime.live().len(), b.by_etime.live().len())
        });
        assert_eq!(lens, (ids.len(), ids.len()), "stale entries");
        ids
    }

    /// Removal goes to the index entry remembered at insertion, so that
    /// must stay right while keys empty and their slots pass to other
    /// keys (and, past the remembered indexes, find it by key); and each
    /// group comes back with the charge it was stored with.
    #[test]
    fn removal_by_remembered_slot_matches_a_model() {
        const KEYS: u64 = 11;
        let mut store = BranchStore::default();
        let index = store.hash_index(&[GroupField::Slot(0)]);
        store.hash_index(&[GroupField::Slot(1)]);
        let beyond = store.hash_index(&[GroupField::Slot(1), GroupField::Slot(0)]);
        assert_eq!((index, beyond), (0, FILED));
        // seq → (group id, key, charge)
        let mut model: BTreeMap<u64, (u64, Option<u64>, usize)> = BTreeMap::new();
        let mut x: u64 = 7;
        for step in 0..3000u64 {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let r = x >> 33;
            if r % 5 < 3 || model.is_empty() {
                let key = (!r.is_multiple_of(13)).then_some(r % KEYS);
                let g = group(step, key);
                let filing = store.prepare(&g);
                let charge = 100 + (r % 50) as usize;
                let seq = store.insert(g, filing, charge);
                model.insert(seq, (step, key, charge));
            } else {
                let nth = if r.is_multiple_of(2) {
                    0
                } else {
                    r as usize % model.len()
                };
                let seq = *model.keys().nth(nth).expect("non-empty model");
                let (id, _, charge) = model.remove(&seq).expect("in the model");
                let (g, got) = store.remove(seq).expect("stored");
                assert_eq!((g.id, got), (id, charge), "step {step}");
                assert!(store.remove(seq).is_none());
            }
            assert_eq!(store.len(), model.len());
            for key in 0..KEYS {
                let probe: HashKey = smallvec::smallvec![Value::Uint(key)];
                let want: Vec<u64> = model
                    .values()
                    .filter(|(_, k, _)| *k == Some(key))
                    .map(|(id, _, _)| *id)
                    .collect();
                assert_eq!(ids(&store, index, &probe), want, "step {step}, key {key}");
                let probe: HashKey = smallvec::smallvec![Value::Uint(1), Value::Uint(key)];
                let want: Vec<u64> = want.into_iter().filter(|id| id % 2 == 1).collect();
                assert_eq!(ids(&store, beyond, &probe), want, "step {step}, key {key}");
            }
        }
    }
}
