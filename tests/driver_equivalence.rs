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
//! nothing. With the merger on a thread of its own (`flowy query`), the
//! batch arrangement gives the inline one's matches in the same order, and
//! its merger's counters after every batch.

#[path = "support/trace_gen.rs"]
mod trace_gen;

use std::sync::Arc;

use flowy::engine::driver::{Admission, QueryDriver};
use flowy::engine::merger::MergerStats;
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

/// http-download whose downloads must not contain a large response of the
/// server to the client as a single flow (branch C, a difference module):
/// tuples are held for the difference decision, so the merger emits at its
/// `advance` and `finish` too.
fn difference_plan() -> Arc<Plan> {
    let path = format!(
        "{}/config/queries/http-download.flowy",
        env!("CARGO_MANIFEST_DIR")
    );
    let source = std::fs::read_to_string(&path).expect("example query");
    let edits = [
        (
            "groupfilter ggf {",
            "filter www_big {\n srcport = 80\n prot = protocol(\"TCP\")\n bytes > 2000\n}\n\ngroupfilter ggf {",
        ),
        (
            "    export m1",
            "    module m2 {\n branches A, C\n C.srcip = A.dstip\n C.dstip = A.srcip\n C d A OR C f A OR C = A\n }\n export m1",
        ),
        ("M -> U", "S branch C -> www_big -> M\nM -> U"),
    ];
    let source = edits.iter().fold(source, |s, (from, to)| {
        assert!(s.contains(from), "{from}");
        s.replacen(from, to, 1)
    });
    let plan =
        flowy::query::compile_source("http-download-diff", &path, &source).expect("compiles");
    assert_eq!(plan.merger.as_ref().map(|m| m.modules.len()), Some(2));
    Arc::new(plan)
}

/// What a batch run gives: its matches in order, and the merger's
/// counters after each batch and after the end.
type Run = (Vec<Key>, Vec<MergerStats>);

/// `flowy query`'s way of driving an engine: batches, idle advances, the
/// lateness learned after some batches (if it starts infinite), and
/// `finish_with` handing matches on as they come.
fn query_way(mut e: Engine, recs: &[Record], s: &Schedule, learn: Option<(usize, i64)>) -> Run {
    let mut out = Vec::new();
    let mut stats = Vec::new();
    for (i, batch) in batches(recs, &s.cuts).into_iter().enumerate() {
        if let Some((_, lateness)) = learn.filter(|(at, _)| *at == i) {
            e.set_lateness(lateness);
        }
        e.push_batch(batch, &mut out);
        if let (Some(d), Some(w)) = (idle_after(s, i), e.watermark()) {
            e.advance(w + d, &mut out);
        }
        stats.push(e.merger_stats());
    }
    let mut drained = Vec::new();
    e.finish_with(&mut out, &mut |o: &mut Vec<Match>| drained.append(o));
    drained.append(&mut out);
    stats.push(e.merger_stats());
    (keys(&drained), stats)
}

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

    /// The merger on a thread of its own: the same matches in the same
    /// order as inline, and the same merger counters after every batch,
    /// whatever the lateness (infinite, learned midway, or beyond which
    /// records come late), window, horizon, late policy, batch cuts and
    /// idle advances; with and without difference modules. (The traces are
    /// web traffic: skype and ipv6-failure find nothing in them and check
    /// only the counters, so the others are drawn more often.)
    #[test]
    fn threaded_merger_gives_the_inline_sequence(
        seed in any::<u64>(),
        n in 100usize..2500,
        q in 0usize..6,
        lateness in prop_oneof![
            Just(None),
            (0i64..2_000).prop_map(Some),
            (2_000i64..60_000).prop_map(Some),
        ],
        learned_after in prop::option::of(0usize..8),
        window in prop::option::of(5_000i64..120_000),
        horizon in prop::option::of(1_000i64..120_000),
        drop in any::<bool>(),
        s in schedule(true),
    ) {
        let recs = trace_gen::generate(n, 600_000, 40, seed);
        let plan = match q {
            0 | 1 => plan("http-download"),
            2 | 3 => difference_plan(),
            4 => plan("skype"),
            _ => plan("ipv6-failure"),
        };
        let late = if drop { LatePolicy::Drop } else { LatePolicy::Process };
        let cfg = EngineConfig {
            lateness,
            window,
            horizon,
            late,
            ..EngineConfig::batch(window)
        };
        let learn = learned_after
            .filter(|_| lateness.is_none())
            .map(|at| (at, trace_gen::disorder(&recs)));
        let threaded = Engine::with_merger_thread(plan.clone(), cfg.clone());
        prop_assert!(threaded.merger_threaded());
        let inline = Engine::new(plan.clone(), cfg);
        prop_assert!(!inline.merger_threaded());
        let (want, want_stats) = query_way(inline, &recs, &s, learn);
        let (got, got_stats) = query_way(threaded, &recs, &s, learn);
        prop_assert_eq!(got, want);
        prop_assert_eq!(got_stats, want_stats);
    }
}

/// The threaded merger's run over a trace with many matches, in small
/// batches: the matches of the inline run, in its order (most of them
/// handed on while the input is read), and the merger is back on the
/// caller's thread after `finish`.
#[test]
fn threaded_merger_streams_the_inline_matches() {
    let recs = trace_gen::generate(20_000, 3_600_000, 200, 11);
    let plan = plan("http-download");
    let cfg = streaming(trace_gen::disorder(&recs), None, None, LatePolicy::Process);
    let run = |mut e: Engine| {
        let mut out = Vec::new();
        for chunk in recs.chunks(300) {
            e.push_batch(chunk.to_vec(), &mut out);
        }
        let before_end = out.len();
        e.finish(&mut out);
        (e, out, before_end)
    };
    let (_, inline, _) = run(Engine::new(plan.clone(), cfg.clone()));
    let (threaded, out, before_end) = run(Engine::with_merger_thread(plan, cfg));
    assert!(!threaded.merger_threaded(), "finish brings the merger back");
    assert!(
        inline.len() > 100,
        "the trace has HTTP downloads: {}",
        inline.len()
    );
    assert_eq!(keys(&out), keys(&inline));
    assert!(
        before_end * 2 > out.len(),
        "matches come out while the input is read: {before_end} of {}",
        out.len()
    );
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
        peak_stored = peak_stored.max(e.merger_stats().stored_groups);
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
