//! The batch composition of the driver: one [`Admission`] and one
//! [`QueryDriver`] run inline on the caller's thread (SPEC §3.1: a batch
//! run is the streaming evaluation whose input ends). With infinite
//! lateness nothing is released before `finish`, so a whole input may be
//! filtered in parallel chunks; every branch still sees its records in
//! input order and the merger its groups in plan order, so nothing depends
//! on scheduling: a batch run is deterministic. That holds with the
//! merger on a thread of its own too ([`Engine::with_merger_thread`]): it
//! gets the same calls in the same order.

use std::sync::{Arc, Mutex};

use crate::engine::branch::{BranchEngine, FilterSharing};
use crate::engine::budget::StateBudget;
use crate::engine::clock::Watermark;
use crate::engine::config::EngineConfig;
use crate::engine::driver::query::take;
use crate::engine::driver::{Admission, AdmissionStats, Drain, QueryDriver};
use crate::engine::merger::MergerStats;
use crate::engine::Match;
use crate::query::plan::Plan;
use crate::record::Record;

pub struct Engine {
    admission: Admission,
    driver: QueryDriver,
    /// No W ever exists: nothing is released before `finish`.
    infinite_lateness: bool,
}

impl Engine {
    /// An engine whose branches and merger share a budget of
    /// `cfg.max_state` bytes.
    pub fn new(plan: Arc<Plan>, cfg: EngineConfig) -> Self {
        let budget = StateBudget::new(cfg.max_state);
        Self::with_budget(plan, cfg, budget)
    }

    /// Like [`Engine::new`], with the merger on a thread of its own (see
    /// [`QueryDriver::with_merger_thread`]): for a batch run whose
    /// branches and merger both have work to do.
    pub fn with_merger_thread(plan: Arc<Plan>, cfg: EngineConfig) -> Self {
        let budget = StateBudget::new(cfg.max_state);
        Engine {
            admission: Admission::new(Watermark::new(cfg.lateness, i64::MAX), cfg.late),
            driver: QueryDriver::with_merger_thread(plan, &cfg, budget),
            infinite_lateness: cfg.lateness.is_none(),
        }
    }

    /// Like [`Engine::new`], charging all state to `budget` (which other
    /// engines may share; `cfg.max_state` is then not consulted).
    pub fn with_budget(plan: Arc<Plan>, cfg: EngineConfig, budget: Arc<StateBudget>) -> Self {
        Engine {
            // Event time only: no wall clock, so no idle advance.
            admission: Admission::new(Watermark::new(cfg.lateness, i64::MAX), cfg.late),
            driver: QueryDriver::new(plan, &cfg, budget),
            infinite_lateness: cfg.lateness.is_none(),
        }
    }

    pub fn push(&mut self, rec: Arc<Record>, out: &mut Vec<Match>) {
        let mut batch = vec![rec];
        let step = self.admission.admit(&mut batch, 0);
        self.driver.step_shared(&batch, step, out);
    }

    /// Like [`Engine::push`] for a record the caller owns.
    pub fn push_owned(&mut self, rec: Record, out: &mut Vec<Match>) {
        self.push_batch(vec![rec], out);
    }

    /// Admit and run one batch: records in it are late only when they lie
    /// behind the W that held before it, and W moves after it.
    pub fn push_batch(&mut self, mut batch: Vec<Record>, out: &mut Vec<Match>) {
        let step = self.admission.admit(&mut batch, 0);
        self.driver.step_owned(batch, step, out);
    }

    /// End infinite lateness: W trails the largest `stime` by `lateness`
    /// from the next batch on (see [`Admission::set_lateness`]).
    pub fn set_lateness(&mut self, lateness: i64) {
        self.admission.set_lateness(lateness);
        self.infinite_lateness = false;
    }

    /// Move W to `w` (no effect unless it is higher than the current W):
    /// e.g. an idle advance computed by the caller from wall time.
    pub fn advance(&mut self, w: i64, out: &mut Vec<Match>) {
        if let Some(w) = self.admission.raise(w) {
            self.driver.advance(w, out);
        }
    }

    pub fn finish(&mut self, out: &mut Vec<Match>) {
        self.driver.finish(out);
    }

    /// [`Engine::finish`], calling `drain` whenever `out` has collected a
    /// few hundred matches (the last ones stay in `out`).
    pub fn finish_with(&mut self, out: &mut Vec<Match>, drain: Drain<'_>) {
        self.driver.finish_with(out, drain);
    }

    /// The current W (`None` before any release, or with infinite lateness).
    pub fn watermark(&self) -> Option<i64> {
        self.admission.current()
    }

    /// Late records, disorder: for the end-of-run report.
    pub fn admission(&self) -> AdmissionStats {
        self.admission.stats()
    }

    pub fn plan(&self) -> &Arc<Plan> {
        self.driver.plan()
    }

    pub fn branch(&self, i: usize) -> Option<&BranchEngine> {
        self.driver.branches().get(i)
    }

    /// The merger's counters (see [`QueryDriver::merger_stats`]).
    pub fn merger_stats(&mut self) -> MergerStats {
        self.driver.merger_stats()
    }

    /// Whether the merger runs on a thread of its own (until `finish`).
    pub fn merger_threaded(&self) -> bool {
        self.driver.merger_threaded()
    }

    /// The state budget this engine charges (shared or its own).
    pub fn budget(&self) -> &Arc<StateBudget> {
        self.driver.budget()
    }
}

/// Run `plan` once over `records` (batch semantics, SPEC §3.1).
pub fn run_batch(plan: Arc<Plan>, records: Vec<Record>, window: Option<i64>) -> Vec<Match> {
    let mut matches = Vec::new();
    run_batch_with(plan, records, window, |m| matches.push(m));
    matches
}

/// Like [`run_batch`], but each match goes to `sink` in emission order as
/// soon as the merger has found it, so a run with millions of matches never
/// holds them all: `flowy query` formats and drops them as they come.
pub fn run_batch_with(
    plan: Arc<Plan>,
    records: Vec<Record>,
    window: Option<i64>,
    mut sink: impl FnMut(Match),
) {
    let mut engine = Engine::new(plan, EngineConfig::batch(window));
    let mut out = Vec::new();
    engine.push_all(records, &mut out);
    let mut drain = |out: &mut Vec<Match>| out.drain(..).for_each(&mut sink);
    drain(&mut out);
    engine.finish_with(&mut out, &mut drain);
    drain(&mut out);
    drop_in_background(engine);
}

/// The engine's stores hold every group and record of a batch; freeing
/// them is pure cleanup the caller need not wait for. If no thread can be
/// started, the refused closure (and with it the engine) is freed here.
fn drop_in_background(engine: Engine) {
    let _ = std::thread::Builder::new()
        .name("flowy-drop".into())
        .spawn(move || drop(engine));
}

/// Below this many records a batch is filtered on the calling thread.
const PARALLEL_FILTER_MIN: usize = 1 << 16;

impl Engine {
    /// Push a whole input. With infinite lateness nothing is released
    /// before `finish`, so filtering (and wrapping the records that pass)
    /// runs on chunks in parallel; each branch then gets its records in
    /// input order, exactly as record-by-record pushes would give them.
    fn push_all(&mut self, records: Vec<Record>, out: &mut Vec<Match>) {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
        if !self.infinite_lateness || threads < 2 || records.len() < PARALLEL_FILTER_MIN {
            self.push_batch(records, out);
            return;
        }
        self.push_parallel(records, threads);
    }

    fn push_parallel(&mut self, mut records: Vec<Record>, threads: usize) {
        self.admission
            .admit_unwatermarked(records.iter().map(|r| r.stime()));
        let size = records.len().div_ceil(threads);
        // A helper takes its chunk out of the cell; if no thread can be
        // started the chunk stays there and is filtered here instead.
        let cells: Vec<Mutex<Option<&mut [Record]>>> = records
            .chunks_mut(size)
            .map(|c| Mutex::new(Some(c)))
            .collect();
        let (branches, sharing) = self.driver.branches_mut();
        let filtered: Vec<Filtered> = {
            let (branches, sharing): (&[BranchEngine], &FilterSharing) = (branches, sharing);
            std::thread::scope(|scope| {
                let helpers: Vec<_> = cells
                    .iter()
                    .map(|cell| {
                        std::thread::Builder::new()
                            .name("flowy-filter".into())
                            .spawn_scoped(scope, move || {
                                filter_chunk(branches, sharing, take(cell))
                            })
                            .ok()
                    })
                    .collect();
                helpers
                    .into_iter()
                    .zip(&cells)
                    .map(|(h, cell)| match h {
                        Some(handle) => handle
                            .join()
                            .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
                        None => filter_chunk(branches, sharing, take(cell)),
                    })
                    .collect()
            })
        };
        let (branches, _) = self.driver.branches_mut();
        for f in filtered {
            for (b, (passed, rejected)) in branches.iter_mut().zip(f.per_branch) {
                b.count_rejected_n(rejected);
                for r in &passed {
                    b.push_accepted(r, None);
                }
            }
        }
    }
}

/// One chunk's records per branch: those passing its filter (in input
/// order) and how many it rejected.
struct Filtered {
    per_branch: Vec<(Vec<Arc<Record>>, u64)>,
}

/// Records no filter lets in stay behind (dropped with the input).
fn filter_chunk(
    branches: &[BranchEngine],
    sharing: &FilterSharing,
    chunk: Option<&mut [Record]>,
) -> Filtered {
    let mut per_branch: Vec<(Vec<Arc<Record>>, u64)> =
        branches.iter().map(|_| (Vec::new(), 0)).collect();
    for rec in chunk.into_iter().flatten() {
        let accepted = sharing.verdicts(branches, rec);
        if !accepted.contains(&true) {
            per_branch.iter_mut().for_each(|(_, n)| *n += 1);
            continue;
        }
        let rec = Arc::new(std::mem::take(rec));
        for ((passed, rejected), ok) in per_branch.iter_mut().zip(&accepted) {
            if *ok {
                passed.push(rec.clone());
            } else {
                *rejected += 1;
            }
        }
    }
    Filtered { per_branch }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;
    use crate::record::RecordFields;

    /// Requests to port 80 and their responses between a few hosts, plus
    /// records no filter wants; `n` records, not in `stime` order.
    fn records(n: usize) -> Vec<Record> {
        let ip = |x: u64| Some(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + (x % 40) as u32)));
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        (0..n)
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let (client, server) = (x % 97, 1000 + (x >> 8) % 7);
                let port = 1024 + (x >> 16) % 5;
                let (src, dst, sport, dport) = match (x >> 24) % 3 {
                    0 => (client, server, port, 80),
                    1 => (server, client, 80, port),
                    _ => (client, server, port, 443),
                };
                let stime = (i as i64) * 37 - ((x >> 32) % 3000) as i64;
                Record::from(RecordFields {
                    rec_id: i as u64,
                    srcip: ip(src),
                    dstip: ip(dst),
                    srcport: Some(sport as u16),
                    dstport: Some(dport as u16),
                    prot: Some(6),
                    tcp_flags: Some(((x >> 40) % 64) as u16),
                    bytes: Some((x >> 44) % 5000),
                    stime,
                    etime: stime + ((x >> 50) % 900) as i64,
                    ..RecordFields::default()
                })
            })
            .collect()
    }

    /// Per match: (branch, id, member rec_ids) of its groups, and its records.
    type Summary = (Vec<(usize, u64, Vec<u64>)>, Vec<(usize, u64)>);

    fn summary(out: &[Match]) -> Vec<Summary> {
        out.iter()
            .map(|m| {
                let groups = m
                    .groups
                    .iter()
                    .map(|g| {
                        (
                            g.branch,
                            g.id,
                            g.members.iter().map(|r| r.rec_id()).collect(),
                        )
                    })
                    .collect();
                let recs = m.records().iter().map(|(b, r)| (*b, r.rec_id())).collect();
                (groups, recs)
            })
            .collect()
    }

    /// The parallel batch path gives exactly what record-by-record pushes give.
    #[test]
    fn parallel_batch_equals_sequential_pushes() -> Result<(), String> {
        let source = include_str!("../../config/queries/http-download.flowy");
        let plan = crate::query::compile_source("http-download", "http-download.flowy", source)
            .map_err(|d| d.to_string())?;
        let plan = Arc::new(plan);
        let recs = records(2 * PARALLEL_FILTER_MIN + 123);
        let parallel = run_batch(plan.clone(), recs.clone(), None);
        let mut engine = Engine::new(plan, EngineConfig::batch(None));
        let mut sequential = Vec::new();
        for r in recs {
            engine.push(Arc::new(r), &mut sequential);
        }
        engine.finish(&mut sequential);
        assert!(!sequential.is_empty());
        assert_eq!(summary(&parallel), summary(&sequential));
        Ok(())
    }

    /// Branches sharing a filter (ipv6-failure's logins) get the verdict
    /// each would give on its own.
    #[test]
    fn shared_filter_verdicts_equal_each_branchs_own() -> Result<(), String> {
        let source = include_str!("../../config/queries/ipv6-failure.flowy");
        let plan = crate::query::compile_source("ipv6-failure", "ipv6-failure.flowy", source)
            .map_err(|d| d.to_string())?;
        let mut engine = Engine::new(Arc::new(plan), EngineConfig::batch(None));
        let (branches, sharing) = engine.driver.branches_mut();
        let mut rec = records(1).pop().ok_or("no record")?;
        let mut passed = 0;
        for (prot, port) in [(6, 22), (6, 993), (17, 5353), (6, 80), (17, 22)] {
            rec.set_prot(Some(prot));
            rec.set_dstport(Some(port));
            let got = sharing.verdicts(branches, &rec);
            let want: Vec<bool> = branches.iter().map(|b| b.accepts(&rec)).collect();
            assert_eq!(got.as_slice(), want.as_slice(), "{prot}/{port}");
            passed += want.iter().filter(|v| **v).count();
        }
        assert_eq!(passed, 3 + 3 + 1);
        Ok(())
    }
}
