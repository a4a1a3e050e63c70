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

/// A buffered record, ordered by (stime, rec_id).
struct Pending(Arc<Record>);

impl Pending {
    fn key(&self) -> (i64, u64) {
        (self.0.stime, self.0.rec_id)
    }
}
impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
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
        self.key().cmp(&other.key())
    }
}

pub struct BranchEngine {
    filter: Option<Arc<FilterPlan>>,
    groupfilter: Option<Arc<GroupFilterPlan>>,
    reorder: BinaryHeap<Reverse<Pending>>,
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
            reorder: BinaryHeap::new(),
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
        self.stats.records_in += 1;
        if !self.valid {
            return;
        }
        if let Some(f) = &self.filter {
            if !eval_rule(&f.rule, rec.as_ref()) {
                return;
            }
        }
        self.stats.records_filtered += 1;
        if watermark.is_some_and(|w| rec.stime < w) {
            self.stats.late += 1;
            match self.late {
                LatePolicy::Drop => self.stats.late_dropped += 1,
                LatePolicy::Process => self.grouper.offer(rec.clone()),
            }
            return;
        }
        self.reorder.push(Reverse(Pending(rec.clone())));
        if self.reorder.len() > self.max_reorder {
            if let Some(Reverse(Pending(r))) = self.reorder.pop() {
                self.stats.reorder_overflow += 1;
                self.release(r);
            }
        }
    }

    fn release(&mut self, rec: Arc<Record>) {
        // Groups that cannot take this record cannot take any later one.
        self.grouper.close_before(rec.stime);
        self.grouper.offer(rec);
    }

    /// W advanced to `w`: release records with `stime < w`, close groups
    /// that can no longer grow, append those passing the groupfilter.
    pub fn advance(&mut self, w: i64, out: &mut Vec<Arc<Group>>) {
        while self.reorder.peek().is_some_and(|Reverse(p)| p.0.stime < w) {
            if let Some(Reverse(Pending(r))) = self.reorder.pop() {
                self.release(r);
            }
        }
        self.grouper.close_before(w);
        self.drain(out);
    }

    /// End of input: release everything and close every group.
    pub fn finish(&mut self, out: &mut Vec<Arc<Group>>) {
        while let Some(Reverse(Pending(r))) = self.reorder.pop() {
            self.release(r);
        }
        self.grouper.close_all();
        self.drain(out);
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
