//! Per-stream decoder state with limits that are fair between senders.
//!
//! UDP sources are spoofable and the v9 source id / IPFIX observation domain
//! is chosen by the sender, so one source address can open any number of
//! streams. A global least-recently-used order would let such a source push
//! a quiet exporter's templates out. Here every limit — the byte budget, the
//! number of streams, the streams per source — takes from the source address
//! holding the most (bytes for the budget, streams for the counts), and within
//! that source its least recently used stream goes first. A sender churning
//! domains or template ids therefore evicts its own state, never another's.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::Hash;
use std::net::IpAddr;

/// Why a stream's state was dropped (`flowy_decoder_evictions_total{reason}`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum EvictReason {
    /// All state together exceeded `decoder.max_state`.
    Budget,
    /// More streams than `max_exporters`.
    Streams,
    /// More streams from one source address than `max_streams_per_source`.
    PerSource,
}

#[derive(Clone, Copy, Debug)]
pub(super) struct Limits {
    pub(super) max_streams: usize,
    pub(super) max_per_source: usize,
    pub(super) max_bytes: usize,
}

#[derive(Debug)]
struct Slot<V> {
    tick: u64,
    source: IpAddr,
    bytes: usize,
    value: V,
}

/// One source address: its bytes and its streams, least recently used first.
#[derive(Debug)]
struct Source<K> {
    bytes: usize,
    order: BTreeMap<u64, K>,
}

#[derive(Debug)]
pub(super) struct FairTable<K, V> {
    limits: Limits,
    tick: u64,
    total: usize,
    slots: HashMap<K, Slot<V>>,
    sources: HashMap<IpAddr, Source<K>>,
    by_bytes: BTreeSet<(usize, IpAddr)>,
    by_streams: BTreeSet<(usize, IpAddr)>,
}

impl<K: Hash + Eq + Clone, V> FairTable<K, V> {
    pub(super) fn new(limits: Limits) -> Self {
        Self {
            limits: Limits {
                max_streams: limits.max_streams.max(1),
                max_per_source: limits.max_per_source.max(1),
                max_bytes: limits.max_bytes,
            },
            tick: 0,
            total: 0,
            slots: HashMap::new(),
            sources: HashMap::new(),
            by_bytes: BTreeSet::new(),
            by_streams: BTreeSet::new(),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.slots.len()
    }

    /// Accounted bytes of all streams.
    pub(super) fn total_bytes(&self) -> usize {
        self.total
    }

    /// The state of `key` (from `source`), created with `make` if absent, and
    /// marked most recently used. Streams evicted to make room are appended
    /// to `evicted`.
    pub(super) fn get_or_insert_with(
        &mut self,
        key: &K,
        source: IpAddr,
        make: impl FnOnce() -> V,
        evicted: &mut Vec<(K, V, EvictReason)>,
    ) -> &mut V {
        self.tick += 1;
        let tick = self.tick;
        if let Some(slot) = self.slots.get_mut(key) {
            let old = std::mem::replace(&mut slot.tick, tick);
            if let Some(src) = self.sources.get_mut(&slot.source) {
                src.order.remove(&old);
                src.order.insert(tick, key.clone());
            }
        } else {
            self.make_room(source, evicted);
            self.slots.insert(
                key.clone(),
                Slot {
                    tick,
                    source,
                    bytes: 0,
                    value: make(),
                },
            );
            let before = self.source_stats(source);
            let src = self.sources.entry(source).or_insert_with(|| Source {
                bytes: 0,
                order: BTreeMap::new(),
            });
            src.order.insert(tick, key.clone());
            self.reindex(source, before);
        }
        match self.slots.get_mut(key) {
            Some(slot) => &mut slot.value,
            None => unreachable!("the slot was found or inserted above"),
        }
    }

    #[cfg(test)]
    pub(super) fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        self.slots.get_mut(key).map(|s| &mut s.value)
    }

    /// Set the accounted size of `key`'s state.
    pub(super) fn set_bytes(&mut self, key: &K, bytes: usize) {
        let Some(slot) = self.slots.get_mut(key) else {
            return;
        };
        let (old, source) = (std::mem::replace(&mut slot.bytes, bytes), slot.source);
        self.total = self.total - old + bytes;
        let before = self.source_stats(source);
        if let Some(src) = self.sources.get_mut(&source) {
            src.bytes = src.bytes - old + bytes;
        }
        self.reindex(source, before);
    }

    /// Evict streams of the heaviest source until all state fits the budget.
    pub(super) fn shrink_to_budget(&mut self, evicted: &mut Vec<(K, V, EvictReason)>) {
        while self.total > self.limits.max_bytes {
            let Some(&(_, source)) = self.by_bytes.last() else {
                return;
            };
            match self.evict_oldest_of(source) {
                Some((k, v)) => evicted.push((k, v, EvictReason::Budget)),
                None => return,
            }
        }
    }

    /// Remove `key`'s state (it is dropped by the caller).
    pub(super) fn remove(&mut self, key: &K) -> Option<V> {
        let slot = self.slots.remove(key)?;
        self.total -= slot.bytes;
        let before = self.source_stats(slot.source);
        if let Some(src) = self.sources.get_mut(&slot.source) {
            src.bytes -= slot.bytes;
            src.order.remove(&slot.tick);
        }
        self.reindex(slot.source, before);
        if self
            .sources
            .get(&slot.source)
            .is_some_and(|s| s.order.is_empty())
        {
            self.sources.remove(&slot.source);
        }
        Some(slot.value)
    }

    /// Remove every stream of `source`.
    pub(super) fn remove_source(&mut self, source: IpAddr) -> Vec<(K, V)> {
        let keys: Vec<K> = self
            .sources
            .get(&source)
            .map(|s| s.order.values().cloned().collect())
            .unwrap_or_default();
        keys.into_iter()
            .filter_map(|k| self.remove(&k).map(|v| (k, v)))
            .collect()
    }

    /// Every stream with its source address.
    pub(super) fn iter(&self) -> impl Iterator<Item = (IpAddr, &V)> {
        self.slots.values().map(|s| (s.source, &s.value))
    }

    /// Run `f` on every stream; where it returns a new size, account it.
    pub(super) fn update_all(&mut self, mut f: impl FnMut(&mut V) -> Option<usize>) {
        let changed: Vec<(K, usize)> = self
            .slots
            .iter_mut()
            .filter_map(|(k, s)| f(&mut s.value).map(|b| (k.clone(), b)))
            .collect();
        for (k, b) in changed {
            self.set_bytes(&k, b);
        }
    }

    /// A new stream of `source` is coming: keep the count limits.
    fn make_room(&mut self, source: IpAddr, evicted: &mut Vec<(K, V, EvictReason)>) {
        let own = self.sources.get(&source).map_or(0, |s| s.order.len());
        if own >= self.limits.max_per_source {
            if let Some((k, v)) = self.evict_oldest_of(source) {
                evicted.push((k, v, EvictReason::PerSource));
            }
        }
        while self.slots.len() >= self.limits.max_streams {
            let Some(&(_, heaviest)) = self.by_streams.last() else {
                return;
            };
            match self.evict_oldest_of(heaviest) {
                Some((k, v)) => evicted.push((k, v, EvictReason::Streams)),
                None => return,
            }
        }
    }

    fn evict_oldest_of(&mut self, source: IpAddr) -> Option<(K, V)> {
        let key = self.sources.get(&source)?.order.values().next()?.clone();
        let value = self.remove(&key)?;
        Some((key, value))
    }

    fn source_stats(&self, source: IpAddr) -> Option<(usize, usize)> {
        self.sources.get(&source).map(|s| (s.bytes, s.order.len()))
    }

    /// Move `source` in the two orderings after its bytes or streams changed.
    fn reindex(&mut self, source: IpAddr, before: Option<(usize, usize)>) {
        if let Some((bytes, streams)) = before {
            self.by_bytes.remove(&(bytes, source));
            self.by_streams.remove(&(streams, source));
        }
        if let Some((bytes, streams)) = self.source_stats(source) {
            if streams > 0 {
                self.by_bytes.insert((bytes, source));
                self.by_streams.insert((streams, source));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    fn limits(streams: usize, per_source: usize, bytes: usize) -> Limits {
        Limits {
            max_streams: streams,
            max_per_source: per_source,
            max_bytes: bytes,
        }
    }

    #[test]
    fn the_source_with_most_streams_loses_its_oldest() {
        let mut t = FairTable::new(limits(3, 10, usize::MAX));
        let mut ev = Vec::new();
        t.get_or_insert_with(&1, ip(1), || "quiet", &mut ev);
        t.get_or_insert_with(&2, ip(2), || "a", &mut ev);
        t.get_or_insert_with(&3, ip(2), || "b", &mut ev);
        t.get_or_insert_with(&4, ip(2), || "c", &mut ev);
        assert_eq!(ev, [(2, "a", EvictReason::Streams)]);
        assert_eq!(t.get_mut(&1), Some(&mut "quiet"));
        // Touching 3 makes 4 the oldest of source 2.
        t.get_or_insert_with(&3, ip(2), || "x", &mut ev);
        t.get_or_insert_with(&5, ip(2), || "d", &mut ev);
        assert_eq!(ev[1], (4, "c", EvictReason::Streams));
        assert_eq!(t.len(), 3);
    }

    #[test]
    fn per_source_limit_and_budget() {
        let mut t = FairTable::new(limits(100, 2, 100));
        let mut ev = Vec::new();
        t.get_or_insert_with(&1, ip(1), || (), &mut ev);
        t.set_bytes(&1, 40);
        for k in 2..5 {
            t.get_or_insert_with(&k, ip(2), || (), &mut ev);
            t.set_bytes(&k, 20);
        }
        assert_eq!(ev, [(2, (), EvictReason::PerSource)]);
        assert_eq!(t.total_bytes(), 80);
        // Source 2 holds 20 + 50 > source 1's 40: its oldest goes.
        t.set_bytes(&4, 50);
        t.shrink_to_budget(&mut ev);
        assert_eq!(ev[1], (3, (), EvictReason::Budget));
        assert_eq!(t.total_bytes(), 90);
        assert!(t.get_mut(&1).is_some());
        assert_eq!(t.remove(&4), Some(()));
        assert_eq!(t.total_bytes(), 40);
    }
}
