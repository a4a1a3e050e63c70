//! Single-threaded composition of branches and merger, used by the batch
//! command and tests. Matches come out in emission order: groups are fed to
//! the merger branch by branch (plan order) each time W advances, and at
//! `finish`; the merger's own order is documented in `merger.rs`. Nothing
//! depends on threads or timing, so a batch run is deterministic.

use std::sync::Arc;

use smallvec::SmallVec;

use crate::engine::branch::BranchEngine;
use crate::engine::clock::Watermark;
use crate::engine::config::EngineConfig;
use crate::engine::merger::MergerEngine;
use crate::engine::{Group, Match};
use crate::query::plan::Plan;
use crate::record::Record;

pub struct Engine {
    plan: Arc<Plan>,
    branches: Vec<BranchEngine>,
    merger: MergerEngine,
    watermark: Watermark,
    /// The highest W released so far (event time or an explicit `advance`).
    released: Option<i64>,
    groups: Vec<Arc<Group>>,
}

impl Engine {
    pub fn new(plan: Arc<Plan>, cfg: EngineConfig) -> Self {
        let branches = (0..plan.branches.len())
            .map(|i| BranchEngine::new(&plan, i, &cfg))
            .collect();
        Engine {
            merger: MergerEngine::new(&plan, &cfg),
            branches,
            // Event time only: no wall clock, so no idle advance.
            watermark: Watermark::new(cfg.lateness, i64::MAX),
            released: None,
            groups: Vec::new(),
            plan,
        }
    }

    pub fn push(&mut self, rec: Arc<Record>, out: &mut Vec<Match>) {
        for b in &mut self.branches {
            b.push(&rec, self.released);
        }
        self.observe(rec.stime, out);
    }

    /// Like [`Engine::push`] for a record the caller owns: it is wrapped
    /// in an `Arc` only if some branch's filter lets it in (in a typical
    /// query most records pass no filter).
    pub fn push_owned(&mut self, rec: Record, out: &mut Vec<Match>) {
        let stime = rec.stime;
        let accepted: SmallVec<[bool; 4]> = self.branches.iter().map(|b| b.accepts(&rec)).collect();
        if accepted.contains(&true) {
            let rec = Arc::new(rec);
            for (b, ok) in self.branches.iter_mut().zip(&accepted) {
                if *ok {
                    b.push_accepted(&rec, self.released);
                } else {
                    b.count_rejected();
                }
            }
        } else {
            self.branches
                .iter_mut()
                .for_each(BranchEngine::count_rejected);
        }
        self.observe(stime, out);
    }

    fn observe(&mut self, stime: i64, out: &mut Vec<Match>) {
        self.watermark.observe(stime, 0);
        if let Some(w) = self.watermark.current() {
            self.advance(w, out);
        }
    }

    /// Move W to `w` (no effect unless it is higher than the current W):
    /// e.g. an idle advance computed by the caller from wall time.
    pub fn advance(&mut self, w: i64, out: &mut Vec<Match>) {
        if self.released.is_some_and(|r| r >= w) {
            return;
        }
        self.released = Some(w);
        for b in &mut self.branches {
            b.advance(w, &mut self.groups);
        }
        for g in self.groups.drain(..) {
            self.merger.push_group(g, out);
        }
        self.merger.advance(w, out);
    }

    pub fn finish(&mut self, out: &mut Vec<Match>) {
        // Same group order as finishing every branch first (a branch's
        // finish does not depend on the merger), but the merger learns
        // which branches can send nothing more and stops storing groups
        // no later group could join.
        for (i, b) in self.branches.iter_mut().enumerate() {
            b.finish(&mut self.groups);
            for g in self.groups.drain(..) {
                self.merger.push_group(g, out);
            }
            self.merger.branch_finished(i);
        }
        self.merger.finish(out);
    }

    /// The current W (`None` before any release, or with infinite lateness).
    pub fn watermark(&self) -> Option<i64> {
        self.released
    }

    pub fn plan(&self) -> &Arc<Plan> {
        &self.plan
    }

    pub fn branch(&self, i: usize) -> Option<&BranchEngine> {
        self.branches.get(i)
    }

    pub fn merger(&self) -> &MergerEngine {
        &self.merger
    }
}

/// Run `plan` once over `records` (batch semantics, SPEC §3.1).
pub fn run_batch(plan: Arc<Plan>, records: Vec<Record>, window: Option<i64>) -> Vec<Match> {
    let mut engine = Engine::new(plan, EngineConfig::batch(window));
    let mut out = Vec::new();
    for r in records {
        engine.push_owned(r, &mut out);
    }
    engine.finish(&mut out);
    out
}
