//! One running query: a task per branch (`BranchEngine`) feeding one merger
//! task (`MergerEngine`) whose matches go to the output thread.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::engine::{BranchEngine, BranchStats, EngineConfig, Group, Match, MergerEngine};
use crate::query::plan::Plan;

use super::dispatch::{BranchMsg, Route};
use super::health::{Beat, Health};
use super::metrics::{set, BranchMetrics, MergerMetrics, Metrics};
use super::output::OutputTx;

/// What the merger task receives from its branches.
pub enum MergerMsg {
    /// Closed, groupfilter-passed groups, and the branch's watermark after
    /// producing them (`None` = not moved).
    Groups {
        branch: usize,
        groups: Vec<Arc<Group>>,
        w: Option<i64>,
    },
    /// The branch has finished: no more groups from it.
    Finished { branch: usize },
}

/// Handles of a running query's tasks.
pub struct RunningQuery {
    pub name: String,
    /// The query's source text: a reload keeps the query iff it is unchanged.
    pub source: String,
    pub route: Route,
    pub tasks: Vec<JoinHandle<()>>,
    branch_metrics: Vec<Arc<BranchMetrics>>,
    merger_metrics: Arc<MergerMetrics>,
}

impl RunningQuery {
    /// Spawn the branch and merger tasks of `plan`.
    pub fn start(
        plan: Arc<Plan>,
        source: String,
        cfg: &EngineConfig,
        capacity: usize,
        output: OutputTx,
        metrics: &Metrics,
        health: &Health,
    ) -> Self {
        let n = plan.branches.len();
        // One budget for every query's state; a reload may change its size.
        let budget = metrics.engine_state().clone();
        budget.set_max(cfg.max_state);
        let (merger_tx, merger_rx) = mpsc::channel(capacity);
        let merger_metrics = metrics.register_merger(&plan.name);
        let mut tasks = Vec::with_capacity(n + 1);
        let mut senders = Vec::with_capacity(n);
        let mut branch_metrics = Vec::with_capacity(n);
        for (i, b) in plan.branches.iter().enumerate() {
            let (tx, rx) = mpsc::channel(capacity);
            let m = metrics.register_branch(&plan.name, &b.name);
            let engine = BranchEngine::with_budget(&plan, i, cfg, budget.clone());
            let label = format!("{}/{}", plan.name, b.name);
            let beat = health.register(format!("branch {label}"));
            let task = run_branch(engine, i, label, rx, merger_tx.clone(), m.clone(), beat);
            tasks.push(tokio::spawn(task));
            senders.push(tx);
            branch_metrics.push(m);
        }
        drop(merger_tx);
        let merger = MergerEngine::with_budget(&plan, cfg, budget);
        tasks.push(tokio::spawn(run_merger(
            plan.clone(),
            merger,
            n,
            merger_rx,
            output,
            merger_metrics.clone(),
            health.register(format!("merger {}", plan.name)),
        )));
        RunningQuery {
            name: plan.name.clone(),
            source,
            route: Route {
                query: Arc::from(plan.name.as_str()),
                branches: senders,
            },
            tasks,
            branch_metrics,
            merger_metrics,
        }
    }

    /// Wait for the tasks (after their route was finished) and forget
    /// their metrics.
    pub async fn join(self, metrics: &Metrics) {
        for t in self.tasks {
            if let Err(e) = t.await {
                tracing::error!(query = %self.name, error = %e, "query task failed");
            }
        }
        metrics.unregister(&self.branch_metrics, &self.merger_metrics);
    }
}

fn publish_branch(m: &BranchMetrics, s: BranchStats) {
    set(&m.records_in, s.records_in);
    set(&m.records_passed, s.records_filtered);
    set(&m.groups_open, s.groups_open);
    set(&m.groups_closed, s.groups_closed);
    set(&m.groups_passed, s.groups_passed);
    set(&m.closed_early, s.closed_early + s.reorder_overflow);
    set(&m.late, s.late);
}

async fn run_branch(
    mut engine: BranchEngine,
    branch: usize,
    label: String,
    mut rx: mpsc::Receiver<BranchMsg>,
    merger: mpsc::Sender<MergerMsg>,
    m: Arc<BranchMetrics>,
    beat: Beat,
) {
    let mut out = Vec::new();
    let mut limits = LimitWarning::default();
    loop {
        beat.idle();
        // A closed channel without Finish (dispatcher gone) still finishes,
        // so no open group is lost.
        let msg = rx.recv().await.unwrap_or(BranchMsg::Finish);
        beat.busy();
        let w = match msg {
            BranchMsg::Records {
                recs,
                push_w,
                advance_to,
            } => {
                for r in recs.iter() {
                    engine.push(r, push_w);
                }
                // Groups a limit closed go on now, not when W next moves.
                engine.take_closed(&mut out);
                if let Some(w) = advance_to {
                    engine.advance(w, &mut out);
                }
                advance_to
            }
            BranchMsg::Advance(w) => {
                engine.advance(w, &mut out);
                Some(w)
            }
            BranchMsg::Finish => {
                engine.finish(&mut out);
                let s = engine.stats();
                publish_branch(&m, s);
                tracing::info!(
                    "branch {label} finished: records {} passed {} groups_closed {} groups_passed {} groups_open {} closed_early {}",
                    s.records_in, s.records_filtered, s.groups_closed, s.groups_passed, s.groups_open, s.closed_early
                );
                let groups = std::mem::take(&mut out);
                let _ = merger
                    .send(MergerMsg::Groups {
                        branch,
                        groups,
                        w: None,
                    })
                    .await;
                let _ = merger.send(MergerMsg::Finished { branch }).await;
                return;
            }
        };
        let s = engine.stats();
        publish_branch(&m, s);
        limits.check(
            &label,
            s.closed_early + s.reorder_overflow + s.state_evictions,
        );
        if !out.is_empty() || w.is_some() {
            let groups = std::mem::take(&mut out);
            if merger
                .send(MergerMsg::Groups { branch, groups, w })
                .await
                .is_err()
            {
                return;
            }
        }
    }
}

/// Warns when a memory limit forced state out early, at most once per
/// `LIMIT_WARN_EVERY` per task (the metric counts every case).
#[derive(Default)]
struct LimitWarning {
    seen: u64,
    last: Option<Instant>,
}

const LIMIT_WARN_EVERY: Duration = Duration::from_secs(10);

impl LimitWarning {
    fn check(&mut self, what: &str, closed_early: u64) {
        if closed_early <= self.seen {
            return;
        }
        if self.last.is_some_and(|t| t.elapsed() < LIMIT_WARN_EVERY) {
            return;
        }
        tracing::warn!(
            "{what}: {} groups/records closed early by a memory limit (max_open_groups, max_reorder, max_stored_groups, max_state); results may be incomplete",
            closed_early - self.seen
        );
        self.seen = closed_early;
        self.last = Some(Instant::now());
    }
}

/// Per-branch watermarks; the merger may only advance to their minimum.
struct BranchClocks {
    w: Vec<Option<i64>>,
    last: Option<i64>,
}

impl BranchClocks {
    fn new(n: usize) -> Self {
        BranchClocks {
            w: vec![None; n],
            last: None,
        }
    }

    /// Record branch `b` at `w`; `Some(min)` when the minimum moved forward.
    fn update(&mut self, b: usize, w: i64) -> Option<i64> {
        let slot = self.w.get_mut(b)?;
        *slot = Some(slot.map_or(w, |old| old.max(w)));
        let min = self
            .w
            .iter()
            .copied()
            .collect::<Option<Vec<i64>>>()?
            .into_iter()
            .min()?;
        if self.last.is_some_and(|l| l >= min) {
            return None;
        }
        self.last = Some(min);
        Some(min)
    }
}

async fn run_merger(
    plan: Arc<Plan>,
    mut engine: MergerEngine,
    branches: usize,
    mut rx: mpsc::Receiver<MergerMsg>,
    output: OutputTx,
    m: Arc<MergerMetrics>,
    beat: Beat,
) {
    let mut clocks = BranchClocks::new(branches);
    let mut finished = 0usize;
    let mut matches: Vec<Match> = Vec::new();
    let mut limits = LimitWarning::default();
    // Ends when every branch has finished (their senders drop with them).
    while let Some(msg) = rx.recv().await {
        beat.busy();
        match msg {
            MergerMsg::Groups { branch, groups, w } => {
                for g in groups {
                    engine.push_group(g, &mut matches);
                }
                if let Some(min) = w.and_then(|w| clocks.update(branch, w)) {
                    engine.advance(min, &mut matches);
                }
            }
            MergerMsg::Finished { .. } => finished += 1,
        }
        if finished == branches {
            engine.finish(&mut matches);
        }
        let s = engine.stats();
        set(&m.stored_groups, s.stored_groups);
        set(&m.matches, s.matches);
        set(&m.closed_early, s.closed_early);
        limits.check(&plan.name, s.closed_early + s.state_evictions);
        if !matches.is_empty()
            && !output
                .send(plan.clone(), std::mem::take(&mut matches))
                .await
        {
            tracing::error!(query = %plan.name, "output gone; matches lost");
        }
        if finished == branches {
            break;
        }
        beat.idle();
    }
}

#[cfg(test)]
mod tests {
    use super::BranchClocks;

    #[test]
    fn merger_clock_is_the_minimum_over_branches() {
        let mut c = BranchClocks::new(2);
        assert_eq!(c.update(0, 100), None);
        assert_eq!(c.update(1, 50), Some(50));
        assert_eq!(c.update(1, 40), None);
        assert_eq!(c.update(1, 150), Some(100));
        assert_eq!(c.update(0, 120), Some(120));
        assert_eq!(c.update(5, 1), None);
    }
}
