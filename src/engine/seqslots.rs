//! A merger store's groups by sequence number. A store numbers its groups
//! densely in arrival order and drops them roughly oldest first, so they
//! live in chunks of consecutive slots: a lookup is two indexings, with no
//! hashing, and a million groups take 8 bytes each instead of a hash
//! map's 16 bytes and control byte at up to twice the table size (and its
//! rehash of the whole table as it grew).
//!
//! A group that outlives the groups around it (a long horizon, a branch
//! only difference modules use) must not keep every later chunk alive: once
//! the chunks are mostly empty, the front chunk's remaining entries move to
//! a small side map, so memory stays proportional to the groups stored.

use std::collections::VecDeque;

use crate::engine::fasthash::FastMap;

/// Slots per chunk.
const CHUNK: usize = 1024;

struct Chunk<T> {
    slots: Box<[Option<T>]>,
    live: usize,
}

impl<T> Chunk<T> {
    fn new() -> Self {
        Chunk {
            slots: (0..CHUNK).map(|_| None).collect(),
            live: 0,
        }
    }
}

pub(crate) struct SeqSlots<T> {
    /// Sequence number of the first slot of the first chunk.
    base: u64,
    chunks: VecDeque<Chunk<T>>,
    /// Entries older than `base` that were still live when their chunk
    /// was released.
    stragglers: FastMap<u64, T>,
    len: usize,
}

impl<T> Default for SeqSlots<T> {
    fn default() -> Self {
        SeqSlots {
            base: 0,
            chunks: VecDeque::new(),
            stragglers: FastMap::default(),
            len: 0,
        }
    }
}

impl<T> SeqSlots<T> {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The chunk and slot of `seq`, when it is not older than `base`.
    fn position(&self, seq: u64) -> Option<(usize, usize)> {
        let i = usize::try_from(seq.checked_sub(self.base)?).ok()?;
        Some((i / CHUNK, i % CHUNK))
    }

    pub(crate) fn get(&self, seq: u64) -> Option<&T> {
        match self.position(seq) {
            Some((c, s)) => self.chunks.get(c)?.slots.get(s)?.as_ref(),
            None if self.stragglers.is_empty() => None,
            None => self.stragglers.get(&seq),
        }
    }

    pub(crate) fn contains(&self, seq: u64) -> bool {
        self.get(seq).is_some()
    }

    /// Sequence numbers are expected to grow densely; one older than every
    /// chunk is kept aside rather than refused.
    pub(crate) fn insert(&mut self, seq: u64, x: T) {
        if self.chunks.is_empty() {
            // Every straggler is older than the current base.
            self.base = self.base.max(seq - seq % CHUNK as u64);
        }
        let Some((c, s)) = self.position(seq) else {
            if self.stragglers.insert(seq, x).is_none() {
                self.len += 1;
            }
            return;
        };
        while self.chunks.len() <= c {
            self.chunks.push_back(Chunk::new());
        }
        let Some(chunk) = self.chunks.get_mut(c) else {
            return;
        };
        let Some(slot) = chunk.slots.get_mut(s) else {
            return;
        };
        if slot.replace(x).is_none() {
            chunk.live += 1;
            self.len += 1;
        }
    }

    pub(crate) fn remove(&mut self, seq: u64) -> Option<T> {
        let x = match self.position(seq) {
            Some((c, s)) => {
                let chunk = self.chunks.get_mut(c)?;
                let x = chunk.slots.get_mut(s)?.take()?;
                chunk.live -= 1;
                x
            }
            None => self.stragglers.remove(&seq)?,
        };
        self.len -= 1;
        self.release_front();
        Some(x)
    }

    /// Drop empty chunks at the front; while the chunks are mostly empty,
    /// move the front one's entries aside and drop it too.
    fn release_front(&mut self) {
        loop {
            let sparse = self.chunks.len() > 2 * (self.len / CHUNK) + 2;
            let Some(front) = self.chunks.front_mut() else {
                break;
            };
            if front.live > 0 && !sparse {
                break;
            }
            let base = self.base;
            for (i, slot) in front.slots.iter_mut().enumerate() {
                if let Some(x) = slot.take() {
                    self.stragglers.insert(base + i as u64, x);
                }
            }
            self.chunks.pop_front();
            self.base += CHUNK as u64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// Pseudo-random inserts (growing seqs) and removals (mostly oldest
    /// first, some long-lived) agree with a map, and the chunks kept stay
    /// proportional to the live entries.
    #[test]
    fn matches_a_map_and_stays_compact() {
        let mut s = SeqSlots::default();
        let mut r = BTreeMap::new();
        let mut x: u64 = 99;
        for seq in 0..200_000u64 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            s.insert(seq, seq * 3);
            r.insert(seq, seq * 3);
            // Expire the oldest, but keep every 1000th seq for long.
            while r.len() > 3000 {
                let (&old, _) = r.iter().find(|(k, _)| *k % 1000 != 0).unwrap_or((&0, &0));
                assert_eq!(s.remove(old), r.remove(&old));
            }
            if x.is_multiple_of(7) {
                let victim = seq.saturating_sub(x >> 60);
                assert_eq!(s.remove(victim), r.remove(&victim));
            }
            if seq % 4999 == 0 {
                for (k, v) in &r {
                    assert_eq!(s.get(*k), Some(v));
                }
                assert_eq!(s.get(seq + 1), None);
                assert_eq!(s.len(), r.len());
                assert!(s.chunks.len() <= 2 * (s.len() / CHUNK) + 3);
            }
        }
        for k in r.keys().copied().collect::<Vec<_>>() {
            assert_eq!(s.remove(k), r.remove(&k));
        }
        assert_eq!(s.len(), 0);
        assert!(s.chunks.is_empty() && s.stragglers.is_empty());
    }
}
