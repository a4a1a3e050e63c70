//! The dispatcher: the daemon's one [`Admission`] (watermark, late policy)
//! and the owner of the fan-out set.
//!
//! Every record passes through here exactly once, in `rec_id` order, and is
//! sent to every query task of the set current at that moment, with the
//! [`Step`] it was admitted under. A reload swaps the set between two
//! batches, so each record goes either to the old or to the new set —
//! never to neither.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::engine::driver::{Admission, Step};

use super::health::Beat;
use super::ingest::{now_ms, Batch};
use super::metrics::{add, Metrics};

/// What a query task receives.
pub enum QueryMsg {
    /// Records in arrival order, admitted under `step`.
    Records { recs: Arc<Batch>, step: Step },
    /// The watermark moved without new records (idle advance).
    Advance(i64),
    /// End of this query: release everything, close every group.
    Finish,
}

/// The channel of one running query.
#[derive(Clone)]
pub struct Route {
    pub query: Arc<str>,
    pub tx: mpsc::Sender<QueryMsg>,
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
    admission: Admission,
    metrics: Arc<Metrics>,
    beat: Beat,
}

/// How often W is re-evaluated against the wall clock (idle advance).
pub const TICK: Duration = Duration::from_secs(1);

impl Dispatcher {
    pub fn new(
        routes: Vec<Route>,
        admission: Admission,
        metrics: Arc<Metrics>,
        beat: Beat,
    ) -> Self {
        Dispatcher {
            routes,
            admission,
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
                let _ = done.send(self.admission.current());
            }
        }
    }

    async fn dispatch(&mut self, mut batch: Batch) {
        let before = self.admission.stats();
        let step = self.admission.admit(&mut batch, now_ms());
        let after = self.admission.stats();
        add(&self.metrics.records_late, after.late - before.late);
        add(
            &self.metrics.records_dropped,
            after.dropped - before.dropped,
        );
        add(
            &self.metrics.records_processed,
            after.records - before.records,
        );
        if let Some(w) = step.advance_to {
            self.metrics.set_watermark(Some(w));
        }
        let recs = Arc::new(batch);
        for route in &self.routes {
            // A closed channel means the query task died; its query is
            // already broken and logged, the others must go on.
            let _ = route
                .tx
                .send(QueryMsg::Records {
                    recs: recs.clone(),
                    step,
                })
                .await;
        }
    }

    async fn tick(&mut self) {
        if let Some(w) = self.admission.tick(now_ms()) {
            self.metrics.set_watermark(Some(w));
            for route in &self.routes {
                let _ = route.tx.send(QueryMsg::Advance(w)).await;
            }
        }
    }
}

pub async fn finish_routes(routes: &[Route]) {
    for route in routes {
        let _ = route.tx.send(QueryMsg::Finish).await;
    }
}
