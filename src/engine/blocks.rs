//! A sorted set of (time, seq) kept as a deque of small sorted blocks, for
//! a merger store's time indexes. A `BTreeSet` allocated a node per few
//! entries and chased a pointer per level on every probe; with a million
//! stored groups that missed the cache on each level and dominated the
//! merger. Here a probe binary-searches the compact array of block minima
//! (small enough to stay cached) and then one block. Groups arrive roughly
//! in time order, so inserts mostly append to the last block, and expiry
//! removes from the first; an insert out of order costs one block shift
//! (and a split when the block overflows), never a shift of the whole set.

use std::collections::VecDeque;

type Entry = (i64, u64);

/// Entries per block: small enough that an insert or removal inside a
/// block shifts at most a few cache lines, large enough that the minima
/// array stays a small fraction of the set.
const CAP: usize = 128;

#[derive(Default)]
pub(crate) struct SortedBlocks {
    /// First entry of each block, in block order.
    mins: VecDeque<Entry>,
    /// Non-empty sorted blocks; every entry of a block precedes every
    /// entry of the next.
    blocks: VecDeque<Vec<Entry>>,
}

impl SortedBlocks {
    pub(crate) fn first(&self) -> Option<Entry> {
        self.blocks.front()?.first().copied()
    }

    /// The block that holds, or would take, `x`: the last whose first
    /// entry is not after `x` (the first block when `x` precedes all).
    fn block_of(&self, x: &Entry) -> usize {
        // Inserts and probes mostly concern recent times: search backwards
        // from the last block in growing steps, so that they touch only
        // the end of the minima instead of a binary search's spread.
        let n = self.mins.len();
        let mut lo = n;
        let mut step = 1;
        while lo > 0 {
            let cand = lo.saturating_sub(step);
            if self.mins.get(cand).is_some_and(|m| m <= x) {
                return self.last_not_after(cand, lo, x);
            }
            lo = cand;
            step *= 2;
        }
        0
    }

    /// The last block in `a..b` whose minimum is not after `x`, given that
    /// block `a`'s is not.
    fn last_not_after(&self, mut a: usize, mut b: usize, x: &Entry) -> usize {
        while b - a > 1 {
            let mid = a + (b - a) / 2;
            if self.mins.get(mid).is_some_and(|m| m <= x) {
                a = mid;
            } else {
                b = mid;
            }
        }
        a
    }

    pub(crate) fn insert(&mut self, x: Entry) {
        let i = self.block_of(&x);
        let last = self.blocks.len().saturating_sub(1);
        let Some(block) = self.blocks.get_mut(i) else {
            self.push_block(x);
            return;
        };
        if i == last && block.last().is_none_or(|y| *y <= x) {
            if block.len() < CAP {
                block.push(x);
            } else {
                self.push_block(x);
            }
            return;
        }
        let pos = block.partition_point(|y| *y < x);
        block.insert(pos, x);
        if pos == 0 {
            if let Some(m) = self.mins.get_mut(i) {
                *m = x;
            }
        }
        if block.len() > CAP {
            let tail = block.split_off(block.len() / 2);
            if let Some(&m) = tail.first() {
                self.mins.insert(i + 1, m);
                self.blocks.insert(i + 1, tail);
            }
        }
    }

    fn push_block(&mut self, x: Entry) {
        let mut block = Vec::with_capacity(CAP);
        block.push(x);
        self.mins.push_back(x);
        self.blocks.push_back(block);
    }

    /// Remove `x`; false when it was not there.
    pub(crate) fn remove(&mut self, x: Entry) -> bool {
        // Expiry removes the oldest entries: when `x` precedes the second
        // block it is in the first, which spares the search from the end
        // across the whole minima.
        let i = if self.mins.get(1).is_none_or(|m| *m > x) {
            0
        } else {
            self.block_of(&x)
        };
        let Some(block) = self.blocks.get_mut(i) else {
            return false;
        };
        let Ok(pos) = block.binary_search(&x) else {
            return false;
        };
        block.remove(pos);
        match block.first() {
            None => {
                self.blocks.remove(i);
                self.mins.remove(i);
            }
            Some(&m) if pos == 0 => {
                if let Some(slot) = self.mins.get_mut(i) {
                    *slot = m;
                }
            }
            Some(_) => {}
        }
        true
    }

    /// Every entry, in order.
    pub(crate) fn iter(&self) -> Iter<'_> {
        Iter {
            blocks: &self.blocks,
            block: 0,
            pos: 0,
        }
    }

    /// Entries with a time in `[lo, hi]`, in order.
    pub(crate) fn range(&self, lo: i64, hi: i64) -> impl Iterator<Item = Entry> + '_ {
        let start = (lo, u64::MIN);
        let block = self.block_of(&start);
        let pos = self
            .blocks
            .get(block)
            .map_or(0, |b| b.partition_point(|y| *y < start));
        Iter {
            blocks: &self.blocks,
            block,
            pos,
        }
        .take_while(move |(t, _)| *t <= hi)
    }
}

/// `partition_point` for a query that is usually near the end of a long
/// sorted slice (recent times): steps back from the end in growing strides,
/// then binary-searches the last stride, so a probe touches the cache lines
/// near the end instead of a full binary search's spread.
pub(crate) fn partition_point_from_end<T>(v: &[T], pred: impl Fn(&T) -> bool) -> usize {
    let mut hi = v.len();
    let mut step = 1;
    while hi > 0 {
        let lo = hi.saturating_sub(step);
        if v.get(lo).is_some_and(&pred) {
            let tail = v.get(lo + 1..hi).unwrap_or(&[]);
            return lo + 1 + tail.partition_point(&pred);
        }
        hi = lo;
        step *= 2;
    }
    0
}

pub(crate) struct Iter<'a> {
    blocks: &'a VecDeque<Vec<Entry>>,
    block: usize,
    pos: usize,
}

impl Iterator for Iter<'_> {
    type Item = Entry;

    fn next(&mut self) -> Option<Entry> {
        loop {
            let b = self.blocks.get(self.block)?;
            if let Some(x) = b.get(self.pos) {
                self.pos += 1;
                return Some(*x);
            }
            self.block += 1;
            self.pos = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// Pseudo-random inserts and removals agree with a `BTreeSet`.
    #[test]
    fn matches_btreeset() {
        let mut s = SortedBlocks::default();
        let mut r = BTreeSet::new();
        let mut x: u64 = 12345;
        for i in 0..20_000u64 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let t = ((x >> 33) % 500) as i64 + (i / 8) as i64;
            if x.is_multiple_of(5) {
                if let Some(&e) = r.iter().nth((x >> 20) as usize % r.len().max(1)) {
                    assert!(s.remove(e));
                    r.remove(&e);
                }
                assert!(!s.remove((t, u64::MAX)));
            } else {
                s.insert((t, i));
                r.insert((t, i));
            }
            if i % 997 == 0 {
                assert_eq!(
                    s.iter().collect::<Vec<_>>(),
                    r.iter().copied().collect::<Vec<_>>()
                );
                let (lo, hi) = (t - 50, t + 20);
                let want: Vec<_> = r
                    .iter()
                    .copied()
                    .filter(|e| lo <= e.0 && e.0 <= hi)
                    .collect();
                assert_eq!(s.range(lo, hi).collect::<Vec<_>>(), want);
            }
            assert_eq!(s.first(), r.first().copied());
            let v: Vec<_> = r.iter().copied().collect();
            let p = |e: &Entry| e.0 < t;
            assert_eq!(partition_point_from_end(&v, p), v.partition_point(p));
        }
    }
}
