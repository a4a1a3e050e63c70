//! The engine's memory budget (SPEC §3.2 "Bounded memory"): every byte of
//! engine state — open groups with their members, records in the reorder
//! buffers, stored groups, held tuples — is charged to one account shared by
//! all queries of a process, and that account never exceeds `max_state`.
//!
//! Counts of groups are not enough: late records joining open groups grow
//! member lists without any count limit noticing. So each component charges
//! what it adds as it adds it, and when the budget cannot cover the charge
//! it evicts its own oldest state first (closing open groups early, releasing
//! buffered records early, dropping stored groups or deciding held tuples
//! early), counted per kind.
//!
//! Costs are estimates from `size_of` plus the heap parts the engine can
//! see, rounded up (vector slack, map entries), so the account is an upper
//! bound of what the state really occupies. A record shared by several
//! branches is charged by each of them.
//!
//! Components run on different tasks; to keep the shared atomic off the
//! per-record path, each one reserves from it in chunks ([`StateAccount`])
//! and returns surplus chunks as it shrinks. The shared counter is the sum
//! of all reservations, so it bounds every component's real usage and is
//! what the `flowy_engine_state_bytes` gauge shows.

use std::mem::size_of;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::engine::aggregate::AggState;
use crate::engine::Group;
use crate::record::Record;
use crate::value::Value;

/// What a budget eviction removed, for `flowy_engine_state_evictions_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Eviction {
    /// An open group closed early (it still goes on to the merger).
    OpenGroup,
    /// A buffered record released to its grouper before W passed it.
    Reorder,
    /// A stored group dropped from the merger before its horizon.
    StoredGroup,
    /// A held tuple decided before its deadline.
    HeldTuple,
}

impl Eviction {
    pub const ALL: [Eviction; 4] = [
        Eviction::OpenGroup,
        Eviction::Reorder,
        Eviction::StoredGroup,
        Eviction::HeldTuple,
    ];

    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Eviction::OpenGroup => "open_group",
            Eviction::Reorder => "reorder",
            Eviction::StoredGroup => "stored_group",
            Eviction::HeldTuple => "held_tuple",
        }
    }
}

/// The shared account of one process (or one batch run).
#[derive(Debug)]
pub struct StateBudget {
    max: AtomicUsize,
    used: AtomicUsize,
    evictions: [AtomicU64; 4],
}

impl StateBudget {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(StateBudget {
            max: AtomicUsize::new(max),
            used: AtomicUsize::new(0),
            evictions: Default::default(),
        })
    }

    /// No limit, but still accounted (batch runs: exact results).
    pub fn unlimited() -> Arc<Self> {
        Self::new(usize::MAX)
    }

    /// Bytes reserved by all components together; never above `max`.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    pub fn max(&self) -> usize {
        self.max.load(Ordering::Relaxed)
    }

    /// A reload may change `engine.max_state`; state above a lowered limit
    /// is shed as its owners next grow.
    pub fn set_max(&self, max: usize) {
        self.max.store(max, Ordering::Relaxed);
    }

    pub fn evictions(&self, kind: Eviction) -> u64 {
        self.evictions[kind as usize].load(Ordering::Relaxed)
    }

    /// Every eviction of any kind so far.
    pub fn evictions_total(&self) -> u64 {
        Eviction::ALL.iter().map(|k| self.evictions(*k)).sum()
    }

    fn count(&self, kind: Eviction, n: u64) {
        self.evictions[kind as usize].fetch_add(n, Ordering::Relaxed);
    }

    /// Reserve `n` bytes unless that would pass `max`.
    fn try_reserve(&self, n: usize) -> bool {
        let max = self.max();
        self.used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |u| {
                u.checked_add(n).filter(|v| *v <= max)
            })
            .is_ok()
    }

    /// What a component reserves at a time: at most 1/256 of the budget,
    /// so that the slack components hold back stays small next to it.
    fn chunk(&self) -> usize {
        (self.max() / 256).clamp(1, CHUNK)
    }

    fn release(&self, n: usize) {
        // Saturating: a release never exceeds what was reserved, but a
        // wrapped counter would turn every later charge into an eviction.
        let _ = self
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |u| {
                Some(u.saturating_sub(n))
            });
    }
}

/// Most bytes a component reserves from the shared counter at a time.
const CHUNK: usize = 64 << 10;

/// One component's share of a [`StateBudget`]: its own usage, covered by
/// reservations taken from the shared counter in chunks.
#[derive(Debug)]
pub struct StateAccount {
    budget: Arc<StateBudget>,
    used: usize,
    reserved: usize,
}

impl StateAccount {
    pub fn new(budget: Arc<StateBudget>) -> Self {
        StateAccount {
            budget,
            used: 0,
            reserved: 0,
        }
    }

    /// This component's own bytes.
    pub fn used(&self) -> usize {
        self.used
    }

    pub fn budget(&self) -> &Arc<StateBudget> {
        &self.budget
    }

    /// Charge `n` bytes; false (nothing charged) when the budget cannot
    /// cover them. The caller then evicts its oldest state and retries.
    pub fn try_charge(&mut self, n: usize) -> bool {
        let want = self.used.saturating_add(n);
        if want > self.reserved {
            let need = want - self.reserved;
            let grab = need.max(self.budget.chunk());
            let got = if self.budget.try_reserve(grab) {
                grab
            } else if grab > need && self.budget.try_reserve(need) {
                need
            } else {
                return false;
            };
            self.reserved += got;
        }
        self.used = want;
        true
    }

    /// `n` bytes of this component's state are gone.
    pub fn credit(&mut self, n: usize) {
        self.used = self.used.saturating_sub(n);
        let spare = self.reserved - self.used.min(self.reserved);
        let chunk = self.budget.chunk();
        if spare > 2 * chunk {
            let back = spare - chunk;
            self.reserved -= back;
            self.budget.release(back);
        }
    }

    /// Count `n` evictions of `kind`.
    pub fn evicted(&self, kind: Eviction, n: u64) {
        if n > 0 {
            self.budget.count(kind, n);
        }
    }
}

impl Drop for StateAccount {
    fn drop(&mut self) {
        self.budget.release(self.reserved);
    }
}

/// Allocator and bookkeeping slack per heap block (header, rounding).
const HEAP_BLOCK: usize = 16;
/// An `Arc`'s two reference counts.
const ARC_HEADER: usize = 2 * size_of::<usize>();

/// Heap bytes of a value beyond its inline size.
pub fn value_heap(v: &Value) -> usize {
    match v {
        Value::Text(s) => ARC_HEADER + HEAP_BLOCK + s.len(),
        Value::Set(s) => {
            HEAP_BLOCK
                + ARC_HEADER
                + s.iter()
                    .map(|m| size_of::<Value>() + value_heap(m))
                    .sum::<usize>()
        }
        _ => 0,
    }
}

/// One record behind an `Arc`: the struct, its counts, its extra elements.
pub fn record_cost(r: &Record) -> usize {
    let extra: usize = r.extra().iter().map(|(_, v)| value_heap(v)).sum();
    let aside = match r.aside_bytes() {
        0 => 0,
        n => n + 2 * HEAP_BLOCK,
    };
    size_of::<Record>() + ARC_HEADER + HEAP_BLOCK + aside + extra
}

/// A record in a group's member list, whose vector may carry up to as much
/// slack as content, plus what each `union` accumulator may gain from it.
pub fn member_cost(r: &Record, unions: usize) -> usize {
    record_cost(r) + 2 * size_of::<Arc<Record>>() + unions * 2 * size_of::<Value>()
}

/// An open group before its members: the slab slot, its handles in the
/// creation queue, key index and close schedule (each with slack), its key
/// values and accumulators.
pub fn open_group_overhead(open_group_size: usize, slots: usize) -> usize {
    let handle = 2 * size_of::<u64>();
    open_group_size
        + 3 * 2 * (handle + size_of::<i64>())
        + 64
        + slots * (size_of::<Option<Value>>() + size_of::<AggState>())
        + 4 * HEAP_BLOCK
}

/// A closed group behind an `Arc`, with its members and values.
pub fn group_cost(g: &Group) -> usize {
    let members: usize = g.members.iter().map(|r| record_cost(r)).sum();
    let values: usize = g
        .values
        .iter()
        .map(|v| v.as_ref().map_or(0, value_heap))
        .sum();
    size_of::<Group>()
        + ARC_HEADER
        + 2 * HEAP_BLOCK
        + g.members.capacity() * size_of::<Arc<Record>>()
        + members
        + g.values.capacity() * size_of::<Option<Value>>()
        + values
}

/// A record waiting in a reorder buffer (entry with vector slack).
pub fn pending_cost(r: &Record, entry_size: usize) -> usize {
    record_cost(r) + 2 * entry_size
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_counter_never_passes_max_and_returns_on_drop() {
        let max = 3 * CHUNK;
        let b = StateBudget::new(max);
        let chunk = b.chunk();
        assert_eq!(chunk, max / 256);
        let mut x = StateAccount::new(b.clone());
        let mut y = StateAccount::new(b.clone());
        assert!(x.try_charge(10));
        assert_eq!(b.used(), chunk, "x reserves one chunk");
        assert!(y.try_charge(max - chunk));
        assert_eq!(b.used(), max);
        // Nothing left: x can only use what it reserved.
        assert!(!x.try_charge(chunk));
        assert!(x.try_charge(chunk - 10));
        assert_eq!(b.used(), max);
        y.credit(max - chunk);
        assert!(b.used() <= 2 * chunk + chunk, "{}", b.used());
        drop(y);
        drop(x);
        assert_eq!(b.used(), 0);
    }

    #[test]
    fn credit_returns_surplus_chunks() {
        let b = StateBudget::unlimited();
        let mut x = StateAccount::new(b.clone());
        assert!(x.try_charge(10 * CHUNK));
        x.credit(10 * CHUNK);
        assert!(b.used() <= 2 * CHUNK, "{}", b.used());
        assert_eq!(x.used(), 0);
    }
}
