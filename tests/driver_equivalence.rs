//! One driver (SPEC §3.1, §3.2): the daemon's arrangement of the driver
//! (one `Admission` in the dispatcher, a `QueryDriver` per query fed the
//! shared batches), the batch arrangement (`Engine`, owned records) and the
//! reference evaluation (every record seen before any group closes:
//! `run_batch`) agree.
//!
//! Traces come out in flow-end order, as exporters send them, so records
//! are out of `stime` order; lateness, window and batch boundaries are
//! random, and so are idle advances. Whatever the lateness, the two
//! arrangements give the same matches in the same order. When the lateness
//! covers the trace's disorder (and nothing advances W by wall time), both
//! give exactly the reference's matches: groups closed early by time-bound
//! rules and stored groups dropped early by the merger's relations lose
//! nothing.

#[path = "support/trace_gen.rs"]
mod trace_gen;

use std::sync::Arc;

use flowy::engine::driver::{Admission, QueryDriver};
use flowy::engine::{run_batch, Engine, EngineConfig, LatePolicy, Match, StateBudget, Watermark};
use flowy::query::plan::Plan;
use flowy::record::Record;
use proptest::prelude::*;

fn plan(name: &str) -> Arc<Plan> {
    let path = format!("{}/config/queries/{name}.flowy", env!("CARGO_MANIFEST_DIR"));
    let source = std::fs::read_to_string(&path).expect("example query");
    Arc::new(flowy::query::compile_source(name, &path, &source).expect("compiles"))
}

/// A match as comparable data: per group (branch, member rec_ids), and the
/// ungrouped (branch, rec_id)s.
type Key = (Vec<(usize, Vec<u64>)>, Vec<(usize, u64)>);

fn keys(ms: &[Match]) -> Vec<Key> {
    ms.iter()
        .map(|m| {
            let groups = m
                .groups
                .iter()
                .map(|g| (g.branch, g.members.iter().map(|r| r.rec_id()).collect()))
                .collect();
            let recs = m.records().iter().map(|(b, r)| (*b, r.rec_id())).collect();
            (groups, recs)
        })
        .collect()
}

fn sorted(mut k: Vec<Key>) -> Vec<Key> {
    k.sort();
    k
}

/// Where the input is cut into batches, and after which batches W gets an
/// idle advance of how much (ms beyond the current W).
#[derive(Clone, Debug)]
struct Schedule {
    cuts: Vec<usize>,
    idle: Vec<(usize, i64)>,
}

fn batches(recs: &[Record], cuts: &[usize]) -> Vec<Vec<Record>> {
    let mut out = Vec::new();
    let mut rest = recs;
    for &c in cuts.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (a, b) = rest.split_at(c.clamp(1, rest.len()));
        out.push(a.to_vec());
        rest = b;
    }
    out
}

fn idle_after(s: &Schedule, i: usize) -> Option<i64> {
    s.idle.iter().find(|(at, _)| *at == i).map(|(_, d)| *d)
}

/// The daemon's arrangement: the dispatcher's admission, shared batches.
fn daemon_way(plan: &Arc<Plan>, cfg: &EngineConfig, recs: &[Record], s: &Schedule) -> Vec<Match> {
    let mut admission = Admission::new(Watermark::new(cfg.lateness, i64::MAX), cfg.late);
    let mut driver = QueryDriver::new(plan.clone(), cfg, StateBudget::new(cfg.max_state));
    let mut out = Vec::new();
    for (i, batch) in batches(recs, &s.cuts).into_iter().enumerate() {
        let mut shared: Vec<Arc<Record>> = batch.into_iter().map(Arc::new).collect();
        let step = admission.admit(&mut shared, 0);
        driver.step_shared(&shared, step, &mut out);
        if let (Some(d), Some(w)) = (idle_after(s, i), admission.current()) {
            if let Some(w) = admission.raise(w + d) {
                driver.advance(w, &mut out);
            }
        }
    }
    driver.finish(&mut out);
    out
}

/// The batch command's arrangement: `Engine` on owned records.
fn batch_way(plan: &Arc<Plan>, cfg: &EngineConfig, recs: &[Record], s: &Schedule) -> Vec<Match> {
    let mut e = Engine::new(plan.clone(), cfg.clone());
    let mut out = Vec::new();
    for (i, batch) in batches(recs, &s.cuts).into_iter().enumerate() {
        e.push_batch(batch, &mut out);
        if let (Some(d), Some(w)) = (idle_after(s, i), e.watermark()) {
            e.advance(w + d, &mut out);
        }
    }
    e.finish(&mut out);
    out
}

fn schedule(with_idle: bool) -> impl Strategy<Value = Schedule> {
    let idle = if with_idle {
        prop::collection::vec((0usize..40, 0i64..20_000), 0..4).boxed()
    } else {
        Just(Vec::new()).boxed()
    };
    (prop::collection::vec(1usize..200, 1..6), idle)
        .prop_map(|(cuts, idle)| Schedule { cuts, idle })
}

fn streaming(
    lateness: i64,
    window: Option<i64>,
    horizon: Option<i64>,
    late: LatePolicy,
) -> EngineConfig {
    EngineConfig {
        lateness: Some(lateness),
        window,
        horizon,
        late,
        ..EngineConfig::batch(window)
    }
}

const QUERIES: [&str; 3] = ["http-download", "skype", "ipv6-failure"];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]

    /// Any lateness (records beyond it included), windows, horizons, late
    /// policies and idle advances: the two arrangements agree exactly.
    #[test]
    fn daemon_and_batch_arrangements_agree(
        seed in any::<u64>(),
        n in 100usize..1500,
        q in 0usize..3,
        lateness in prop_oneof![0i64..2_000, 2_000i64..60_000],
        window in prop::option::of(5_000i64..120_000),
        horizon in prop::option::of(1_000i64..120_000),
        drop in any::<bool>(),
        s in schedule(true),
    ) {
        let recs = trace_gen::generate(n, 600_000, 40, seed);
        let plan = plan(QUERIES[q]);
        let late = if drop { LatePolicy::Drop } else { LatePolicy::Process };
        let cfg = streaming(lateness, window, horizon, late);
        let daemon = keys(&daemon_way(&plan, &cfg, &recs, &s));
        let batch = keys(&batch_way(&plan, &cfg, &recs, &s));
        prop_assert_eq!(daemon, batch);
    }

    /// Lateness covering the disorder, no idle advance: both arrangements
    /// give the reference's matches (as a set: they emit as they go, the
    /// reference at the end), with and without windows.
    #[test]
    fn exact_lateness_gives_the_reference(
        seed in any::<u64>(),
        n in 100usize..1500,
        q in 0usize..3,
        slack in 0i64..5_000,
        window in prop::option::of(5_000i64..120_000),
        s in schedule(false),
    ) {
        let recs = trace_gen::generate(n, 600_000, 40, seed);
        let plan = plan(QUERIES[q]);
        let reference = sorted(keys(&run_batch(plan.clone(), recs.clone(), window)));
        let cfg = streaming(trace_gen::disorder(&recs) + slack, window, None, LatePolicy::Process);
        let daemon = sorted(keys(&daemon_way(&plan, &cfg, &recs, &s)));
        let batch = sorted(keys(&batch_way(&plan, &cfg, &recs, &s)));
        prop_assert_eq!(&daemon, &reference);
        prop_assert_eq!(&batch, &reference);
    }

    /// `flowy query`'s overlapped first pass: the engine starts with
    /// infinite lateness and learns the measured disorder after some
    /// batches (`Engine::set_lateness`); it still gives the reference.
    #[test]
    fn lateness_learned_midway_gives_the_reference(
        seed in any::<u64>(),
        n in 100usize..1500,
        q in 0usize..3,
        learned_after in 0usize..6,
        window in prop::option::of(5_000i64..120_000),
        s in schedule(false),
    ) {
        let recs = trace_gen::generate(n, 600_000, 40, seed);
        let plan = plan(QUERIES[q]);
        let reference = sorted(keys(&run_batch(plan.clone(), recs.clone(), window)));
        let mut e = Engine::new(plan.clone(), EngineConfig::batch(window));
        let mut out = Vec::new();
        for (i, batch) in batches(&recs, &s.cuts).into_iter().enumerate() {
            if i == learned_after {
                e.set_lateness(trace_gen::disorder(&recs));
            }
            e.push_batch(batch, &mut out);
        }
        e.finish(&mut out);
        prop_assert_eq!(e.admission().late, 0);
        prop_assert_eq!(sorted(keys(&out)), reference);
    }
}

/// The exact streaming run holds less than the whole trace: groups that
/// time-bound rules closed and stored groups the relations rule out are
/// gone before the end (the reference holds every group until then).
#[test]
fn exact_streaming_frees_state_as_it_goes() {
    let recs = trace_gen::generate(20_000, 3_600_000, 200, 7);
    let plan = plan("http-download");
    let cfg = streaming(trace_gen::disorder(&recs), None, None, LatePolicy::Process);
    let mut e = Engine::new(plan.clone(), cfg);
    let mut out = Vec::new();
    let mut peak_stored = 0;
    for chunk in recs.chunks(500) {
        e.push_batch(chunk.to_vec(), &mut out);
        peak_stored = peak_stored.max(e.merger().stats().stored_groups);
    }
    let emitted_before_end = out.len();
    e.finish(&mut out);
    let reference = run_batch(plan, recs, None);
    assert_eq!(sorted(keys(&out)), sorted(keys(&reference)));
    assert!(
        out.len() > 100,
        "the trace has HTTP downloads: {}",
        out.len()
    );
    assert!(
        emitted_before_end * 10 > out.len() * 9,
        "most matches come out while the input is read: {emitted_before_end} of {}",
        out.len()
    );
    let groups_passed: u64 = (0..2)
        .filter_map(|i| e.branch(i))
        .map(|b| b.stats().groups_passed)
        .sum();
    assert!(
        peak_stored * 10 < groups_passed,
        "the merger stores a fraction of the groups: peak {peak_stored} of {groups_passed}"
    );
}
