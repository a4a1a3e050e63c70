//! One branch: filter → reorder buffer → grouper → groupfilter (SPEC §3.2).

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::sync::Arc;

use crate::engine::config::{EngineConfig, LatePolicy};
use crate::engine::filter::eval_rule;
use crate::engine::grouper::Grouper;
use crate::engine::Group;
use crate::query::plan::{FilterPlan, GroupFilterPlan, Plan};
use crate::record::Record;

/// Counters of one branch (SPEC §4.4).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BranchStats {
    pub records_in: u64,
    /// Records that passed the filter.
    pub records_filtered: u64,
    pub groups_open: u64,
    pub groups_closed: u64,
    pub groups_passed: u64,
    /// Groups closed before their time because `max_open_groups` was hit.
    pub closed_early: u64,
    /// Records released before W passed them because `max_reorder` was hit.
    pub reorder_overflow: u64,
    /// Records with `stime < W` on arrival (processed or dropped).
    pub late: u64,
    pub late_dropped: u64,
}

/// A buffered record with its (stime, rec_id) order key copied out, so
/// ordering never dereferences the record.
struct Pending {
    key: (i64, u64),
    rec: Arc<Record>,
}

impl Pending {
    fn new(rec: &Arc<Record>) -> Self {
        Pending {
            key: (rec.stime, rec.rec_id),
            rec: rec.clone(),
        }
    }
}
impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Pending {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key.cmp(&other.key)
    }
}

/// The reorder buffer. Records pile up in a plain Vec until something
/// must come out before the end (W passed a buffered record, or the buffer
/// overflowed); only then is the pile moved into the heap. A batch run
/// never pays for heap maintenance: `finish` sorts the pile once.
struct Reorder {
    pile: Vec<Pending>,
    /// Smallest stime in `pile`.
    pile_min: i64,
    heap: BinaryHeap<Reverse<Pending>>,
}

impl Reorder {
    fn new() -> Self {
        Reorder {
            pile: Vec::new(),
            pile_min: i64::MAX,
            heap: BinaryHeap::new(),
        }
    }

    fn len(&self) -> usize {
        self.pile.len() + self.heap.len()
    }

    fn push(&mut self, p: Pending) {
        if self.heap.is_empty() {
            self.pile_min = self.pile_min.min(p.key.0);
            self.pile.push(p);
        } else {
            self.heap.push(Reverse(p));
        }
    }

    fn heapify(&mut self) {
        if !self.pile.is_empty() {
            self.heap.extend(self.pile.drain(..).map(Reverse));
            self.pile_min = i64::MAX;
        }
    }

    /// Remove and return the earliest record.
    fn pop(&mut self) -> Option<Arc<Record>> {
        self.heapify();
        self.heap.pop().map(|Reverse(p)| p.rec)
    }

    /// Remove and return the earliest record if its stime is below `w`.
    fn pop_before(&mut self, w: i64) -> Option<Arc<Record>> {
        if self.heap.is_empty() && self.pile_min >= w {
            return None;
        }
        self.heapify();
        if self.heap.peek().is_some_and(|Reverse(p)| p.key.0 < w) {
            self.heap.pop().map(|Reverse(p)| p.rec)
        } else {
            None
        }
    }

    /// Everything, in (stime, rec_id) order; the buffer is left empty.
    fn take_sorted(&mut self) -> Vec<Pending> {
        let mut recs = std::mem::take(&mut self.pile);
        recs.extend(
            std::mem::take(&mut self.heap)
                .into_vec()
                .into_iter()
                .map(|Reverse(p)| p),
        );
        self.pile_min = i64::MAX;
        // Stable, so equal keys (duplicate rec_ids) keep arrival order.
        if !recs.is_sorted_by_key(|p| p.key) {
            recs.sort_by_key(|p| p.key);
        }
        recs
    }
}

/// How many records `release_sorted` reads at once.
const BATCH: usize = 16;

/// Load the parts of a record the grouper reads first.
#[inline]
fn touch(r: &Record) {
    std::hint::black_box((r.bytes, r.stime, r.srcip, r.dstip));
}

pub struct BranchEngine {
    filter: Option<Arc<FilterPlan>>,
    groupfilter: Option<Arc<GroupFilterPlan>>,
    reorder: Reorder,
    grouper: Grouper,
    late: LatePolicy,
    max_reorder: usize,
    stats: BranchStats,
    valid: bool,
}

impl BranchEngine {
    /// State for branch `branch` of `plan`. An out-of-range index yields a
    /// branch that passes nothing (the compiler never produces one).
    pub fn new(plan: &Arc<Plan>, branch: usize, cfg: &EngineConfig) -> Self {
        let bp = plan.branches.get(branch);
        BranchEngine {
            filter: bp.and_then(|b| b.filter.clone()),
            groupfilter: bp.and_then(|b| b.groupfilter.clone()),
            reorder: Reorder::new(),
            grouper: Grouper::new(
                bp.and_then(|b| b.grouper.clone()),
                branch,
                cfg.window,
                cfg.max_open_groups,
            ),
            late: cfg.late,
            max_reorder: cfg.max_reorder.max(1),
            stats: BranchStats::default(),
            valid: bp.is_some(),
        }
    }

    /// Filter the record; keep it in the reorder buffer if it passes.
    pub fn push(&mut self, rec: &Arc<Record>, watermark: Option<i64>) {
        if self.accepts(rec) {
            self.push_accepted(rec, watermark);
        } else {
            self.count_rejected();
        }
    }

    /// Would the filter let `rec` in? Lets a caller that owns the record
    /// skip wrapping it in an `Arc` when no branch wants it.
    pub(crate) fn accepts(&self, rec: &Record) -> bool {
        self.valid && self.filter.as_ref().is_none_or(|f| eval_rule(&f.rule, rec))
    }

    /// A record the filter has let in (see [`BranchEngine::accepts`]).
    pub(crate) fn push_accepted(&mut self, rec: &Arc<Record>, watermark: Option<i64>) {
        self.stats.records_in += 1;
        self.stats.records_filtered += 1;
        if watermark.is_some_and(|w| rec.stime < w) {
            self.stats.late += 1;
            match self.late {
                LatePolicy::Drop => self.stats.late_dropped += 1,
                LatePolicy::Process => self.grouper.offer(rec.clone()),
            }
            return;
        }
        self.reorder.push(Pending::new(rec));
        if self.reorder.len() > self.max_reorder {
            if let Some(r) = self.reorder.pop() {
                self.stats.reorder_overflow += 1;
                self.release(r);
            }
        }
    }

    /// `n` records the filter rejected.
    pub(crate) fn count_rejected_n(&mut self, n: u64) {
        self.stats.records_in += n;
    }

    /// A record the filter rejected: only counted.
    pub(crate) fn count_rejected(&mut self) {
        self.stats.records_in += 1;
    }

    fn release(&mut self, rec: Arc<Record>) {
        // Groups that cannot take this record cannot take any later one.
        self.grouper.close_before(rec.stime);
        self.grouper.offer(rec);
    }

    /// W advanced to `w`: release records with `stime < w`, close groups
    /// that can no longer grow, append those passing the groupfilter.
    pub fn advance(&mut self, w: i64, out: &mut Vec<Arc<Group>>) {
        while let Some(r) = self.reorder.pop_before(w) {
            self.release(r);
        }
        self.grouper.close_before(w);
        self.drain(out);
    }

    /// End of input: release everything and close every group.
    pub fn finish(&mut self, out: &mut Vec<Arc<Group>>) {
        let recs = self.reorder.take_sorted();
        self.release_sorted(recs);
        self.grouper.close_all();
        self.drain(out);
    }

    /// Release records in order. Sorted records lie scattered over the
    /// heap, so the grouper would stall on a cache miss for each one;
    /// reading a batch of them first lets those misses overlap.
    fn release_sorted(&mut self, recs: Vec<Pending>) {
        let mut recs = recs.into_iter();
        let mut batch: Vec<Arc<Record>> = Vec::with_capacity(BATCH);
        loop {
            batch.extend(recs.by_ref().take(BATCH).map(|p| p.rec));
            if batch.is_empty() {
                return;
            }
            batch.iter().for_each(|r| touch(r));
            for r in batch.drain(..) {
                self.release(r);
            }
        }
    }

    fn drain(&mut self, out: &mut Vec<Arc<Group>>) {
        let gf = self.groupfilter.clone();
        for g in self.grouper.drain_closed() {
            if gf.as_ref().is_none_or(|f| eval_rule(&f.rule, &g)) {
                self.stats.groups_passed += 1;
                out.push(Arc::new(g));
            }
        }
    }

    pub fn stats(&self) -> BranchStats {
        let g = self.grouper.stats();
        BranchStats {
            groups_open: self.grouper.open_count() as u64,
            groups_closed: g.groups_closed,
            closed_early: g.closed_early,
            ..self.stats
        }
    }

    /// Records waiting in the reorder buffer.
    pub fn buffered(&self) -> usize {
        self.reorder.len()
    }
}
