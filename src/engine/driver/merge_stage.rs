//! Where a query's merger runs: inline on the driver's thread, or on a
//! thread of its own (`flowy query`), so that the branches' work on one
//! batch overlaps the merger's on the groups of the batch before.
//!
//! The threaded stage gets the calls the inline one would get, in the same
//! order, over a channel, and hands back the matches of each call in that
//! order: the matches and their order are the inline ones. Only when they
//! reach the caller differs (a step hands on the matches found so far;
//! `finish` all of them).
//!
//! The calls' channel is bounded, so the branches wait when the merger
//! lags and memory stays bounded; the matches' channel is not, so the
//! merger never waits on the driver and the two cannot deadlock. The
//! merger finds its matches while working through a bounded queue of
//! calls, so what waits in that channel is bounded too.

use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use crate::engine::budget::StateBudget;
use crate::engine::config::EngineConfig;
use crate::engine::merger::{MergerEngine, MergerStats};
use crate::engine::{Group, Match};
use crate::query::plan::Plan;

use super::query::Drain;

/// Matches collected in the output buffer before `finish` hands them on.
pub(super) const DRAIN_AT: usize = 256;

/// Calls waiting for the merger thread.
const QUEUE: usize = 4;

/// Groups per call when a branch's final groups go to the merger thread:
/// its work starts before the whole list has been sent.
const FEED_CHUNK: usize = 1024;

pub(super) enum MergerStage {
    Inline(Box<MergerEngine>),
    Thread(Remote),
}

pub(super) struct Remote {
    calls: SyncSender<Call>,
    /// Behind a lock only so that the driver stays `Sync` (the cluster
    /// worker's tasks need it); only `get_mut` reaches it.
    matches: Mutex<Receiver<Vec<Match>>>,
    handle: Option<JoinHandle<MergerEngine>>,
}

/// One call of the inline merger's API (or a question about its state).
enum Call {
    /// Push the groups in order; then, if given, advance to W and drop the
    /// stored groups nothing from the frontier on can join.
    Step {
        groups: Vec<Arc<Group>>,
        advance: Option<(i64, i64)>,
    },
    BranchFinished(usize),
    /// Decide the held tuples and hand the merger back.
    Finish,
    Inspect(SyncSender<(MergerStats, Option<i64>)>),
    #[cfg(test)]
    Panic,
}

impl MergerStage {
    /// On a thread of its own if `thread`, the plan has a merger and the
    /// budget is unlimited (a limited one is shared with the branches, and
    /// which side gets evicted would depend on timing); inline otherwise,
    /// or if no thread can be started.
    pub(super) fn new(
        plan: &Arc<Plan>,
        cfg: &EngineConfig,
        budget: Arc<StateBudget>,
        thread: bool,
    ) -> Self {
        if thread && plan.merger.is_some() && cfg.max_state == usize::MAX {
            if let Some(remote) = Remote::start(plan, cfg, &budget) {
                return MergerStage::Thread(remote);
            }
        }
        MergerStage::Inline(Box::new(MergerEngine::with_budget(plan, cfg, budget)))
    }

    pub(super) fn is_threaded(&self) -> bool {
        matches!(self, MergerStage::Thread(_))
    }

    /// Push `groups` (leaving it empty), then advance to `(w, frontier)`
    /// if given. Matches found by now go to `out`.
    pub(super) fn step(
        &mut self,
        groups: &mut Vec<Arc<Group>>,
        advance: Option<(i64, i64)>,
        out: &mut Vec<Match>,
    ) {
        match self {
            MergerStage::Inline(m) => {
                for g in groups.drain(..) {
                    m.push_group(g, out);
                }
                if let Some((w, frontier)) = advance {
                    m.advance(w, out);
                    m.expire_unreachable(frontier);
                }
            }
            MergerStage::Thread(r) => {
                if !groups.is_empty() || advance.is_some() {
                    let groups = std::mem::take(groups);
                    r.call(Call::Step { groups, advance });
                }
                r.collect(out);
            }
        }
    }

    /// Hand branch `i`'s final groups to the merger; it can send no more.
    /// The merger then stops storing groups no later group could join.
    pub(super) fn feed(
        &mut self,
        i: usize,
        groups: Vec<Arc<Group>>,
        out: &mut Vec<Match>,
        drain: Drain<'_>,
    ) {
        match self {
            MergerStage::Inline(m) => {
                for g in groups {
                    m.push_group(g, out);
                    if out.len() >= DRAIN_AT {
                        drain(out);
                    }
                }
                m.branch_finished(i);
            }
            MergerStage::Thread(r) => {
                let mut groups = groups.into_iter();
                loop {
                    let chunk: Vec<Arc<Group>> = groups.by_ref().take(FEED_CHUNK).collect();
                    if chunk.is_empty() {
                        break;
                    }
                    r.call(Call::Step {
                        groups: chunk,
                        advance: None,
                    });
                    r.collect(out);
                    if out.len() >= DRAIN_AT {
                        drain(out);
                    }
                }
                r.call(Call::BranchFinished(i));
            }
        }
    }

    /// End of input: every match goes to `out`, `drain` taking them on
    /// whenever a few hundred have collected (the last ones stay in
    /// `out`). A threaded merger comes back to this thread.
    pub(super) fn finish(&mut self, out: &mut Vec<Match>, drain: Drain<'_>) {
        match self {
            MergerStage::Inline(m) => m.finish(out),
            MergerStage::Thread(r) => {
                let merger = r.finish(out, drain);
                *self = MergerStage::Inline(Box::new(merger));
            }
        }
    }

    /// The merger's counters after every call so far (a threaded merger's
    /// matches among them may not have reached the caller yet).
    pub(super) fn stats(&mut self) -> MergerStats {
        match self {
            MergerStage::Inline(m) => m.stats(),
            MergerStage::Thread(r) => r.inspect().0,
        }
    }

    /// See [`MergerEngine::oldest_stored_stime`].
    pub(super) fn oldest_stored_stime(&mut self) -> Option<i64> {
        match self {
            MergerStage::Inline(m) => m.oldest_stored_stime(),
            MergerStage::Thread(r) => r.inspect().1,
        }
    }

    #[cfg(test)]
    fn panic_on_thread(&mut self) {
        if let MergerStage::Thread(r) = self {
            r.call(Call::Panic);
        }
    }
}

impl Remote {
    /// The merger is built on its thread: if the thread cannot be started
    /// the caller builds one inline (nothing has been charged yet).
    fn start(plan: &Arc<Plan>, cfg: &EngineConfig, budget: &Arc<StateBudget>) -> Option<Self> {
        let (calls, call_rx) = mpsc::sync_channel(QUEUE);
        let (match_tx, matches) = mpsc::channel();
        let (plan, cfg, budget) = (plan.clone(), cfg.clone(), budget.clone());
        let handle = std::thread::Builder::new()
            .name("flowy-merge".into())
            .spawn(move || {
                let merger = MergerEngine::with_budget(&plan, &cfg, budget);
                serve(merger, call_rx, match_tx)
            })
            .ok()?;
        Some(Remote {
            calls,
            matches: Mutex::new(matches),
            handle: Some(handle),
        })
    }

    /// Queue a call, waiting while the queue is full.
    fn call(&mut self, call: Call) {
        if self.calls.send(call).is_err() {
            self.failed();
        }
    }

    /// Move the matches that are ready to `out`, without waiting.
    fn collect(&mut self, out: &mut Vec<Match>) {
        loop {
            match self.receiver().try_recv() {
                Ok(mut found) => out.append(&mut found),
                Err(TryRecvError::Empty) => return,
                Err(TryRecvError::Disconnected) => self.failed(),
            }
        }
    }

    fn receiver(&mut self) -> &mut Receiver<Vec<Match>> {
        self.matches
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn inspect(&mut self) -> (MergerStats, Option<i64>) {
        let (tx, rx) = mpsc::sync_channel(1);
        self.call(Call::Inspect(tx));
        rx.recv().unwrap_or_else(|_| self.failed())
    }

    fn finish(&mut self, out: &mut Vec<Match>, drain: Drain<'_>) -> MergerEngine {
        self.call(Call::Finish);
        // The thread drops its sender when it returns, after its last
        // matches.
        while let Ok(mut found) = self.receiver().recv() {
            out.append(&mut found);
            if out.len() >= DRAIN_AT {
                drain(out);
            }
        }
        match self.handle.take().map(JoinHandle::join) {
            Some(Ok(merger)) => merger,
            Some(Err(panic)) => std::panic::resume_unwind(panic),
            None => unreachable!("a finished merger stage is inline"),
        }
    }

    /// The thread stopped taking calls before `finish`: it panicked, and
    /// its panic goes on here.
    fn failed(&mut self) -> ! {
        match self.handle.take().map(JoinHandle::join) {
            Some(Err(panic)) => std::panic::resume_unwind(panic),
            _ => panic!("the merger thread stopped before the end of input"),
        }
    }
}

/// The merger thread: the calls in order, each one's matches sent back as
/// one batch. Ends at `Finish` (returning the merger) or when the driver
/// is gone (then the merger is dropped here).
fn serve(
    mut merger: MergerEngine,
    calls: Receiver<Call>,
    matches: mpsc::Sender<Vec<Match>>,
) -> MergerEngine {
    let mut out = Vec::new();
    for call in calls {
        let finish = matches!(call, Call::Finish);
        match call {
            Call::Step { groups, advance } => {
                for g in groups {
                    merger.push_group(g, &mut out);
                }
                if let Some((w, frontier)) = advance {
                    merger.advance(w, &mut out);
                    merger.expire_unreachable(frontier);
                }
            }
            Call::BranchFinished(i) => merger.branch_finished(i),
            Call::Finish => merger.finish(&mut out),
            Call::Inspect(reply) => {
                let _ = reply.send((merger.stats(), merger.oldest_stored_stime()));
            }
            #[cfg(test)]
            Call::Panic => panic!("merger thread test panic"),
        }
        if !out.is_empty() && matches.send(std::mem::take(&mut out)).is_err() {
            break;
        }
        if finish {
            break;
        }
    }
    merger
}

#[cfg(test)]
mod tests {
    use std::panic::{catch_unwind, AssertUnwindSafe};

    use super::*;

    fn plan() -> Result<Arc<Plan>, String> {
        let source = include_str!("../../../config/queries/http-download.flowy");
        crate::query::compile_source("http-download", "http-download.flowy", source)
            .map(Arc::new)
            .map_err(|d| d.to_string())
    }

    fn threaded(plan: &Arc<Plan>) -> MergerStage {
        let cfg = EngineConfig::batch(None);
        MergerStage::new(plan, &cfg, StateBudget::new(cfg.max_state), true)
    }

    /// A panic on the merger thread comes out of the driver's next call
    /// (here: a step that has to wait for the thread) with its payload.
    #[test]
    fn merger_thread_panic_reaches_the_driver() -> Result<(), String> {
        let plan = plan()?;
        let mut stage = threaded(&plan);
        assert!(stage.is_threaded());
        stage.panic_on_thread();
        let caught = catch_unwind(AssertUnwindSafe(|| {
            let mut out = Vec::new();
            // The thread may still be alive for the first calls; an
            // inspection waits for its answer.
            stage.step(&mut Vec::new(), Some((1, 1)), &mut out);
            stage.stats()
        }));
        let panic = caught.err().ok_or("the driver went on")?;
        let msg = panic.downcast_ref::<&str>().copied().unwrap_or_default();
        assert_eq!(msg, "merger thread test panic");
        Ok(())
    }
}
