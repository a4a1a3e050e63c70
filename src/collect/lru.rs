//! A small least-recently-used map: per-exporter state must stay bounded
//! however many (possibly spoofed) sources send datagrams.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

#[derive(Debug)]
pub struct Lru<K, V> {
    cap: usize,
    tick: u64,
    map: HashMap<K, (u64, V)>,
    order: BTreeMap<u64, K>,
}

impl<K: Hash + Eq + Clone, V> Lru<K, V> {
    pub fn new(cap: usize) -> Self {
        Self {
            cap: cap.max(1),
            tick: 0,
            map: HashMap::new(),
            order: BTreeMap::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// The entry for `key`, created with `make` if absent; marks it most
    /// recently used. The second value is the evicted entry, if one had to go.
    pub fn get_or_insert_with(
        &mut self,
        key: &K,
        make: impl FnOnce() -> V,
    ) -> (&mut V, Option<(K, V)>) {
        self.tick += 1;
        let tick = self.tick;
        let mut evicted = None;
        if let Some((old, _)) = self.map.get(key) {
            let old = *old;
            self.order.remove(&old);
        } else if self.map.len() >= self.cap {
            evicted = self.evict_oldest();
        }
        self.order.insert(tick, key.clone());
        let slot = self
            .map
            .entry(key.clone())
            .or_insert_with(|| (tick, make()));
        slot.0 = tick;
        (&mut slot.1, evicted)
    }

    fn evict_oldest(&mut self) -> Option<(K, V)> {
        let (_, k) = self.order.pop_first()?;
        self.map.remove(&k).map(|(_, v)| (k, v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_least_recently_used() {
        let mut l = Lru::new(2);
        l.get_or_insert_with(&1, || "a");
        l.get_or_insert_with(&2, || "b");
        l.get_or_insert_with(&1, || "x");
        let (_, ev) = l.get_or_insert_with(&3, || "c");
        assert_eq!(ev, Some((2, "b")));
        assert_eq!(l.len(), 2);
    }
}
