//! One query's stages behind [`Admission`](super::admission::Admission):
//! filter (shared where branches name one filter), reorder, group, close,
//! merge, finish. The batch command runs it inline; the daemon runs one in
//! a task per query and feeds it the batches its dispatcher admitted. Both
//! release groups to the merger the same way: branch by branch in plan
//! order each time W moves, and at the end, so the matches and their order
//! depend only on the admitted batches, never on scheduling. The merger
//! may run on a thread of its own ([`QueryDriver::with_merger_thread`]);
//! it then gets the same calls in the same order.

use std::sync::{Arc, Mutex};

use crate::engine::branch::{BranchEngine, FilterSharing};
use crate::engine::budget::StateBudget;
use crate::engine::config::EngineConfig;
use crate::engine::merger::MergerStats;
use crate::engine::{Group, Match};
use crate::query::plan::Plan;
use crate::record::Record;

use super::admission::Step;
use super::merge_stage::MergerStage;

pub struct QueryDriver {
    plan: Arc<Plan>,
    branches: Vec<BranchEngine>,
    sharing: FilterSharing,
    merger: MergerStage,
    /// The highest W the stages were advanced to.
    released: Option<i64>,
    /// Scratch: groups on their way to the merger.
    groups: Vec<Arc<Group>>,
    budget: Arc<StateBudget>,
}

/// Takes the matches found so far out of an output buffer.
pub type Drain<'a> = &'a mut dyn FnMut(&mut Vec<Match>);

impl QueryDriver {
    /// Stages charging all state to `budget` (which other queries may share).
    pub fn new(plan: Arc<Plan>, cfg: &EngineConfig, budget: Arc<StateBudget>) -> Self {
        Self::build(plan, cfg, budget, false)
    }

    /// Like [`QueryDriver::new`], with the merger on a thread of its own
    /// (named `flowy-merge`) so that its work overlaps the branches'. Same
    /// matches in the same order; they reach `out` a step or so later,
    /// and all of them at `finish`. Stays inline if the plan has no merger,
    /// the budget is limited (evictions would depend on timing) or no
    /// thread can be started: see [`QueryDriver::merger_threaded`].
    pub fn with_merger_thread(
        plan: Arc<Plan>,
        cfg: &EngineConfig,
        budget: Arc<StateBudget>,
    ) -> Self {
        Self::build(plan, cfg, budget, true)
    }

    fn build(plan: Arc<Plan>, cfg: &EngineConfig, budget: Arc<StateBudget>, thread: bool) -> Self {
        let branches: Vec<BranchEngine> = (0..plan.branches.len())
            .map(|i| BranchEngine::with_budget(&plan, i, cfg, budget.clone()))
            .collect();
        QueryDriver {
            merger: MergerStage::new(&plan, cfg, budget.clone(), thread),
            budget,
            sharing: FilterSharing::new(&branches),
            branches,
            released: None,
            groups: Vec::new(),
            plan,
        }
    }

    /// Run one admitted batch whose records others share (the daemon's).
    pub fn step_shared(&mut self, recs: &[Arc<Record>], step: Step, out: &mut Vec<Match>) {
        for rec in recs {
            let accepted = self.sharing.verdicts(&self.branches, rec);
            for (b, ok) in self.branches.iter_mut().zip(&accepted) {
                if *ok {
                    b.push_accepted(rec, step.push_w);
                } else {
                    b.count_rejected();
                }
            }
        }
        self.end_step(step, out);
    }

    /// Run one admitted batch of records the caller owns: a record is
    /// wrapped in an `Arc` only if some branch's filter lets it in (in a
    /// typical query most records pass no filter).
    pub fn step_owned(
        &mut self,
        recs: impl IntoIterator<Item = Record>,
        step: Step,
        out: &mut Vec<Match>,
    ) {
        for rec in recs {
            let accepted = self.sharing.verdicts(&self.branches, &rec);
            if !accepted.contains(&true) {
                self.branches
                    .iter_mut()
                    .for_each(BranchEngine::count_rejected);
                continue;
            }
            let rec = Arc::new(rec);
            for (b, ok) in self.branches.iter_mut().zip(&accepted) {
                if *ok {
                    b.push_accepted(&rec, step.push_w);
                } else {
                    b.count_rejected();
                }
            }
        }
        self.end_step(step, out);
    }

    /// Groups a limit closed while records were pushed go to the merger
    /// now: W may not move for a long time (an exporter re-sending old
    /// flows), and until they are merged they are nobody's state. A
    /// threaded merger gets them with the groups W releases, in one call:
    /// the same pushes in the same order, since the branches' advance does
    /// not depend on the merger's state (its budget is unlimited).
    fn end_step(&mut self, step: Step, out: &mut Vec<Match>) {
        for b in &mut self.branches {
            b.take_closed(&mut self.groups);
        }
        if !self.merger.is_threaded() {
            self.merger.step(&mut self.groups, None, out);
        }
        match step.advance_to {
            Some(w) => self.advance(w, out),
            None => self.merger.step(&mut self.groups, None, out),
        }
    }

    /// Move W to `w` (no effect unless it is higher than the last W).
    pub fn advance(&mut self, w: i64, out: &mut Vec<Match>) {
        if self.released.is_some_and(|r| r >= w) {
            // Closed groups a threaded merger has not had yet go now.
            self.merger.step(&mut self.groups, None, out);
            return;
        }
        self.released = Some(w);
        for b in &mut self.branches {
            b.advance(w, &mut self.groups);
        }
        let frontier = self.branches.iter().map(|b| b.group_frontier(w)).min();
        let frontier = frontier.unwrap_or(w);
        self.merger.step(&mut self.groups, Some((w, frontier)), out);
    }

    pub fn finish(&mut self, out: &mut Vec<Match>) {
        self.finish_with(out, &mut |_| {});
    }

    /// [`QueryDriver::finish`], calling `drain` whenever `out` has collected
    /// a few hundred matches (the last ones stay in `out`).
    pub fn finish_with(&mut self, out: &mut Vec<Match>, drain: Drain<'_>) {
        // Branches finish independently (each sorts its buffer and runs its
        // grouper), so all but the first finish on helper threads while the
        // first one's groups go through the merger. Groups still reach the
        // merger branch by branch in plan order, so the output is the same
        // as finishing one branch after another.
        let merger = &mut self.merger;
        let mut branches = self.branches.iter_mut();
        let first = branches.next();
        // A helper takes its branch out of the cell; if no thread can be
        // started the branch stays there and is finished here instead.
        let cells: Vec<Mutex<Option<&mut BranchEngine>>> =
            branches.map(|b| Mutex::new(Some(b))).collect();
        std::thread::scope(|scope| {
            let helpers: Vec<_> = cells
                .iter()
                .map(|cell| {
                    std::thread::Builder::new()
                        .name("flowy-branch".into())
                        .spawn_scoped(scope, move || finish_branch(take(cell)))
                        .ok()
                })
                .collect();
            merger.feed(0, finish_branch(first), out, drain);
            for (i, (h, cell)) in helpers.into_iter().zip(&cells).enumerate() {
                let groups = match h {
                    Some(handle) => handle
                        .join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
                    None => finish_branch(take(cell)),
                };
                merger.feed(i + 1, groups, out, drain);
            }
        });
        self.merger.finish(out, drain);
    }

    /// A time before which no record the stages hold can start: every
    /// record with `stime` below it has left the query's state (filtered
    /// out, or in a group that was emitted or discarded). `None` before the
    /// first advance, when anything may still be held. A cluster worker
    /// acknowledges a record to the bus only once it starts before this.
    pub fn held_from(&mut self) -> Option<i64> {
        let w = self.released?;
        // Buffered records start at or after W (earlier ones were released
        // or joined a group on arrival); grouped ones at or after the
        // oldest open group's start.
        let branches = self.branches.iter().map(|b| b.group_frontier(w)).min();
        let stored = self.merger.oldest_stored_stime();
        Some(branches.unwrap_or(w).min(stored.unwrap_or(i64::MAX)))
    }

    /// Note the span of every group the branches close from now on (see
    /// [`BranchEngine::track_closed_spans`]).
    pub fn track_closed_spans(&mut self) {
        self.branches
            .iter_mut()
            .for_each(BranchEngine::track_closed_spans);
    }

    /// (first, last member start) of the groups closed since the last call.
    pub fn take_closed_spans(&mut self, out: &mut Vec<(i64, i64)>) {
        for b in &mut self.branches {
            b.take_closed_spans(out);
        }
    }

    /// The W the stages were last advanced to.
    pub fn watermark(&self) -> Option<i64> {
        self.released
    }

    pub fn plan(&self) -> &Arc<Plan> {
        &self.plan
    }

    pub fn branches(&self) -> &[BranchEngine] {
        &self.branches
    }

    pub(crate) fn branches_mut(&mut self) -> (&mut [BranchEngine], &FilterSharing) {
        (&mut self.branches, &self.sharing)
    }

    /// The merger's counters (a threaded merger is asked and answers
    /// once it has worked through every earlier call).
    pub fn merger_stats(&mut self) -> MergerStats {
        self.merger.stats()
    }

    /// Whether the merger runs on a thread of its own (until `finish`).
    pub fn merger_threaded(&self) -> bool {
        self.merger.is_threaded()
    }

    /// The state budget this query charges (shared or its own).
    pub fn budget(&self) -> &Arc<StateBudget> {
        &self.budget
    }
}

pub(crate) fn take<T>(cell: &Mutex<Option<T>>) -> Option<T> {
    cell.lock()
        .map_or_else(|poisoned| poisoned.into_inner().take(), |mut b| b.take())
}

fn finish_branch(b: Option<&mut BranchEngine>) -> Vec<Arc<Group>> {
    let mut groups = Vec::new();
    if let Some(b) = b {
        b.finish(&mut groups);
    }
    groups
}
