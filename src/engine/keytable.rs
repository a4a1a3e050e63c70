//! The lookup table of a merger hash index: 32-bit hash tags → entry
//! slots, laid out so that a lookup reads one cache line.
//!
//! With a million stored groups the table is megabytes and every probe
//! misses the cache. A general-purpose table (hashbrown) keeps its control
//! bytes and its entries in separate arrays, so each probe missed twice;
//! here a cache line holds eight (tag, slot) pairs and the tag comparison
//! happens in the line that also holds the slot. A key's home line is
//! derived from its tag alone, so the table grows without reading the
//! index's entries.

/// Pairs per line: 8 × 8 bytes = one 64-byte cache line.
const WAYS: usize = 8;

/// Tags 0 and 1 mark a never-used and a vacated pair.
const EMPTY: u32 = 0;
const VACATED: u32 = 1;

#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([(u32, u32); WAYS]);

const EMPTY_LINE: Line = Line([(EMPTY, 0); WAYS]);

#[derive(Default)]
pub(crate) struct KeyTable {
    /// A power of two of them, or none before the first insert.
    lines: Vec<Line>,
    /// Pairs in use, live or vacated; a lookup only stops at a line with a
    /// never-used pair, so vacated ones count towards the load.
    used: usize,
    live: usize,
}

/// The tag kept for hash `h`: its high half, off the two markers.
pub(crate) fn tag(h: u64) -> u32 {
    ((h >> 32) as u32).max(VACATED + 1)
}

impl KeyTable {
    /// The home line of `tag` in a table of `n` lines (a power of two):
    /// the multiply spreads every tag bit into the high bits used.
    fn home(tag: u32, n: usize) -> usize {
        let bits = n.trailing_zeros();
        if bits == 0 {
            return 0;
        }
        (u64::from(tag).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - bits)) as usize
    }

    /// The lines a lookup for `tag` visits, in order.
    fn probe(&self, tag: u32) -> impl Iterator<Item = usize> {
        let n = self.lines.len();
        let home = Self::home(tag, n);
        (0..n).map(move |i| (home + i) & (n - 1))
    }

    /// The slot filed under `tag` for which `is_key` holds. A key is filed
    /// in the first line of its probe with a free pair at the time, and a
    /// never-used pair never becomes used again before a rebuild: a line
    /// that still has one ends the search.
    pub(crate) fn find(&self, tag: u32, mut is_key: impl FnMut(u32) -> bool) -> Option<u32> {
        for l in self.probe(tag) {
            let line = &self.lines.get(l)?.0;
            for &(t, slot) in line {
                if t == tag && is_key(slot) {
                    return Some(slot);
                }
            }
            if line.iter().any(|(t, _)| *t == EMPTY) {
                return None;
            }
        }
        None
    }

    /// File `slot` under `tag`; the caller knows the key is not filed yet.
    pub(crate) fn insert(&mut self, tag: u32, slot: u32) {
        if (self.used + 1) * 8 > self.lines.len() * WAYS * 7 {
            self.rebuild();
        }
        let n = self.lines.len();
        let home = Self::home(tag, n);
        for i in 0..n {
            let Some(line) = self.lines.get_mut((home + i) & (n - 1)) else {
                return;
            };
            if let Some(pair) = line.0.iter_mut().find(|(t, _)| *t <= VACATED) {
                if pair.0 == EMPTY {
                    self.used += 1;
                }
                *pair = (tag, slot);
                self.live += 1;
                return;
            }
        }
    }

    /// Start fetching the line where a lookup for `tag` begins, so that a
    /// lookup made a little later, after other work, finds it cached.
    pub(crate) fn prefetch(&self, tag: u32) {
        if self.lines.is_empty() {
            return;
        }
        if let Some(line) = self.lines.get(Self::home(tag, self.lines.len())) {
            prefetch_line(line);
        }
    }

    /// Unfile `slot` from under `tag`.
    pub(crate) fn remove(&mut self, tag: u32, slot: u32) {
        let n = self.lines.len();
        let home = Self::home(tag, n);
        for i in 0..n {
            let Some(line) = self.lines.get_mut((home + i) & (n - 1)) else {
                return;
            };
            if let Some(pair) = line.0.iter_mut().find(|p| **p == (tag, slot)) {
                pair.0 = VACATED;
                self.live -= 1;
                return;
            }
            if line.0.iter().any(|(t, _)| *t == EMPTY) {
                return;
            }
        }
    }

    /// Refile every live pair into a table sized for twice as many (vacated
    /// pairs are dropped, so a table that only churns keeps its size).
    fn rebuild(&mut self) {
        let want = ((self.live + 1) * 2).div_ceil(WAYS).next_power_of_two();
        let old = std::mem::replace(&mut self.lines, vec![EMPTY_LINE; want.max(1)]);
        self.used = 0;
        self.live = 0;
        for line in old {
            for (t, slot) in line.0 {
                if t > VACATED {
                    self.insert(t, slot);
                }
            }
        }
    }
}

#[inline]
fn prefetch_line(line: &Line) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch is only a hint to the cache: it reads nothing
    // into the program and cannot fault; the pointer comes from a live
    // reference, and `sse` is part of the x86_64 baseline.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>((line as *const Line).cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = line;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Random inserts and removals, with colliding tags, agree with a map;
    /// churn does not grow the table without bound.
    #[test]
    fn matches_a_map() {
        let mut t = KeyTable::default();
        let mut r: HashMap<u32, u32> = HashMap::new();
        let mut x: u64 = 7;
        let mut next_slot = 0u32;
        for i in 0..200_000u32 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            // Few distinct tags: many slots share one.
            let tg = tag(((x >> 40) % 3000) << 32);
            if x.is_multiple_of(3) && !r.is_empty() {
                let victim = (x >> 20) as u32 % next_slot;
                if let Some(vt) = r.remove(&victim) {
                    t.remove(vt, victim);
                }
            } else {
                t.insert(tg, next_slot);
                r.insert(next_slot, tg);
                next_slot += 1;
            }
            if i % 9973 == 0 {
                for (&slot, &tg) in &r {
                    assert_eq!(t.find(tg, |s| s == slot), Some(slot));
                }
                assert_eq!(t.find(tg, |_| false), None);
                assert_eq!(t.live, r.len());
                assert!(t.lines.len() * WAYS <= 4 * r.len().max(WAYS) * 2);
            }
        }
        assert_eq!(
            t.find(tag(0), |_| true).is_some(),
            r.values().any(|v| *v == tag(0))
        );
    }
}
