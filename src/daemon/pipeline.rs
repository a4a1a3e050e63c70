//! One running query: a task running the query's [`QueryDriver`] over the
//! batches the dispatcher admitted, its matches going to the output thread.
//! Queries run in parallel, each on its own task; within a query the
//! driver's stages run in the order the batch command runs them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::engine::driver::QueryDriver;
use crate::engine::{BranchStats, EngineConfig, Match};
use crate::query::plan::Plan;

use super::dispatch::{QueryMsg, Route};
use super::health::{Beat, Health};
use super::metrics::{set, BranchMetrics, MergerMetrics, Metrics};
use super::output::OutputTx;

/// Handles of a running query's task.
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
    /// Spawn the task running `plan`.
    pub fn start(
        plan: Arc<Plan>,
        source: String,
        cfg: &EngineConfig,
        capacity: usize,
        output: OutputTx,
        metrics: &Metrics,
        health: &Health,
    ) -> Self {
        // One budget for every query's state; a reload may change its size.
        let budget = metrics.engine_state().clone();
        budget.set_max(cfg.max_state);
        let (tx, rx) = mpsc::channel(capacity);
        let merger_metrics = metrics.register_merger(&plan.name);
        let branch_metrics: Vec<Arc<BranchMetrics>> = plan
            .branches
            .iter()
            .map(|b| metrics.register_branch(&plan.name, &b.name))
            .collect();
        let task = QueryTask {
            driver: QueryDriver::new(plan.clone(), cfg, budget),
            output,
            branch_metrics: branch_metrics.clone(),
            merger_metrics: merger_metrics.clone(),
            beat: health.register(format!("query {}", plan.name)),
            limits: LimitWarning::default(),
            matches: Vec::new(),
        };
        RunningQuery {
            name: plan.name.clone(),
            source,
            route: Route {
                query: Arc::from(plan.name.as_str()),
                tx,
            },
            tasks: vec![tokio::spawn(task.run(rx))],
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

struct QueryTask {
    driver: QueryDriver,
    output: OutputTx,
    branch_metrics: Vec<Arc<BranchMetrics>>,
    merger_metrics: Arc<MergerMetrics>,
    beat: Beat,
    limits: LimitWarning,
    matches: Vec<Match>,
}

impl QueryTask {
    async fn run(mut self, mut rx: mpsc::Receiver<QueryMsg>) {
        loop {
            self.beat.idle();
            // A closed channel without Finish (dispatcher gone) still
            // finishes, so no open group is lost.
            let msg = rx.recv().await.unwrap_or(QueryMsg::Finish);
            self.beat.busy();
            let finished = matches!(msg, QueryMsg::Finish);
            match msg {
                QueryMsg::Records { recs, step } => {
                    self.driver.step_shared(&recs, step, &mut self.matches)
                }
                QueryMsg::Advance(w) => self.driver.advance(w, &mut self.matches),
                QueryMsg::Finish => self.driver.finish(&mut self.matches),
            }
            self.publish(finished);
            if !self.matches.is_empty() {
                let plan = self.driver.plan().clone();
                let matches = std::mem::take(&mut self.matches);
                if !self.output.send(plan.clone(), matches).await {
                    tracing::error!(query = %plan.name, "output gone; matches lost");
                }
            }
            if finished {
                return;
            }
        }
    }

    fn publish(&mut self, finished: bool) {
        let plan = self.driver.plan().clone();
        let name = &plan.name;
        let mut early = 0;
        let branches = self.driver.branches().iter().zip(&plan.branches);
        for ((b, bp), m) in branches.zip(&self.branch_metrics) {
            let s = b.stats();
            publish_branch(m, s);
            early += s.closed_early + s.reorder_overflow + s.state_evictions;
            if finished {
                tracing::info!(
                    "branch {name}/{} finished: records {} passed {} groups_closed {} groups_passed {} groups_open {} closed_early {}",
                    bp.name, s.records_in, s.records_filtered, s.groups_closed, s.groups_passed, s.groups_open, s.closed_early
                );
            }
        }
        let s = self.driver.merger_stats();
        set(&self.merger_metrics.stored_groups, s.stored_groups);
        set(&self.merger_metrics.matches, s.matches);
        set(&self.merger_metrics.closed_early, s.closed_early);
        early += s.closed_early + s.state_evictions;
        self.limits.check(name, early);
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
