//! The dispatcher: the single owner of the watermark and of the fan-out set.
//!
//! Every record passes through here exactly once, in `rec_id` order, and is
//! sent to every (query, branch) task of the set current at that moment. A
//! reload swaps the set between two batches, so each record goes either to
//! the old or to the new set — never to neither.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::engine::clock::Watermark;

use super::config::Late;
use super::health::Beat;
use super::ingest::{now_ms, Batch};
use super::metrics::{add, Metrics};

/// What a branch task receives.
pub enum BranchMsg {
    /// Records in arrival order; push each with `push_w` (the watermark they
    /// arrived under), then advance to `advance_to` if given.
    Records {
        recs: Arc<Batch>,
        push_w: Option<i64>,
        advance_to: Option<i64>,
    },
    /// The watermark moved without new records (idle advance).
    Advance(i64),
    /// End of this branch: release everything, close every group.
    Finish,
}

/// The channels of one running query, one per branch.
#[derive(Clone)]
pub struct Route {
    pub query: Arc<str>,
    pub branches: Vec<mpsc::Sender<BranchMsg>>,
}

pub enum Control {
    /// Install `routes` as the fan-out set and finish `retire` (in that
    /// order relative to records: nothing dispatched after the swap reaches
    /// a retired query). `done` fires once the swap is in effect.
    Swap {
        routes: Vec<Route>,
        retire: Vec<Route>,
        done: oneshot::Sender<Option<i64>>,
    },
}

pub struct Dispatcher {
    routes: Vec<Route>,
    watermark: Watermark,
    last_sent: Option<i64>,
    late: Late,
    metrics: Arc<Metrics>,
    beat: Beat,
}

/// How often W is re-evaluated against the wall clock (idle advance).
pub const TICK: Duration = Duration::from_secs(1);

impl Dispatcher {
    pub fn new(
        routes: Vec<Route>,
        watermark: Watermark,
        late: Late,
        metrics: Arc<Metrics>,
        beat: Beat,
    ) -> Self {
        Dispatcher {
            routes,
            watermark,
            last_sent: None,
            late,
            metrics,
            beat,
        }
    }

    /// Run until the record stream ends (shutdown), then finish every query.
    pub async fn run(
        mut self,
        mut records: mpsc::Receiver<Batch>,
        mut control: mpsc::Receiver<Control>,
    ) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut control_open = true;
        loop {
            tokio::select! {
                biased;
                msg = control.recv(), if control_open => match msg {
                    Some(msg) => {
                        self.beat.busy();
                        self.control(msg).await;
                    }
                    None => control_open = false,
                },
                batch = records.recv() => match batch {
                    Some(batch) => {
                        self.beat.busy();
                        self.dispatch(batch).await;
                    }
                    None => break,
                },
                _ = tick.tick() => {
                    self.beat.busy();
                    self.tick().await;
                }
            }
            self.beat.idle();
        }
        let routes = std::mem::take(&mut self.routes);
        finish_routes(&routes).await;
    }

    async fn control(&mut self, msg: Control) {
        match msg {
            Control::Swap {
                routes,
                retire,
                done,
            } => {
                finish_routes(&retire).await;
                self.routes = routes;
                let _ = done.send(self.last_sent);
            }
        }
    }

    async fn dispatch(&mut self, batch: Batch) {
        let push_w = self.watermark.current();
        let now = now_ms();
        let mut kept = Vec::with_capacity(batch.len());
        let mut dropped = 0u64;
        for rec in batch {
            if push_w.is_some_and(|w| rec.stime < w) {
                add(&self.metrics.records_late, 1);
                if self.late == Late::Drop {
                    dropped += 1;
                    continue;
                }
            }
            self.watermark.observe(rec.stime, now);
            kept.push(rec);
        }
        add(&self.metrics.records_dropped, dropped);
        let advance_to = self.advanced(self.watermark.current());
        let n = kept.len() as u64;
        let recs = Arc::new(kept);
        for route in &self.routes {
            for tx in &route.branches {
                let msg = BranchMsg::Records {
                    recs: recs.clone(),
                    push_w,
                    advance_to,
                };
                // A closed channel means the branch task died; its query is
                // already broken and logged, the others must go on.
                let _ = tx.send(msg).await;
            }
        }
        add(&self.metrics.records_processed, n + dropped);
    }

    async fn tick(&mut self) {
        let w = self.watermark.tick(now_ms());
        if let Some(w) = self.advanced(w) {
            for route in &self.routes {
                for tx in &route.branches {
                    let _ = tx.send(BranchMsg::Advance(w)).await;
                }
            }
        }
    }

    /// `Some(w)` when W moved past what the branches last heard.
    fn advanced(&mut self, w: Option<i64>) -> Option<i64> {
        let w = w?;
        if self.last_sent.is_some_and(|last| last >= w) {
            return None;
        }
        self.last_sent = Some(w);
        self.metrics.set_watermark(Some(w));
        Some(w)
    }
}

pub async fn finish_routes(routes: &[Route]) {
    for route in routes {
        for tx in &route.branches {
            let _ = tx.send(BranchMsg::Finish).await;
        }
    }
}
