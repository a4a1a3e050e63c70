//! The engine state budget (SPEC §3.2 "Bounded memory"): late records that
//! keep joining open groups grow member lists no count limit sees; with
//! `max_state` the accounted bytes stay within the budget, the oldest state
//! is given up early and counted, and no record is lost on the way.
//! Also: hostile times (near `i64::MIN`/`i64::MAX`) never overflow.

mod engine_support;

use std::net::IpAddr;
use std::sync::Arc;

use engine_support::*;
use flowy::engine::{Engine, EngineConfig, Eviction, Match, MergerEngine, StateBudget};
use flowy::query::plan::*;
use flowy::record::{Field, Record, RecordFields};

const PAIRS: u8 = 20;

/// One group per (srcip, dstip) pair, within 5-minute windows.
fn pair_plan() -> Arc<Plan> {
    single(branch(
        "A",
        None,
        Some(grouper(
            vec![module(
                "m",
                vec![
                    grule(Field::SrcIp, CmpOp::Eq, Field::SrcIp),
                    grule(Field::DstIp, CmpOp::Eq, Field::DstIp),
                ],
            )],
            vec![Field::SrcIp, Field::DstIp],
            vec![agg("bytes", AggFunc::Sum, Field::Bytes)],
        )),
        None,
    ))
}

fn cfg(max_state: usize) -> EngineConfig {
    EngineConfig {
        lateness: Some(10_000),
        window: Some(300_000),
        horizon: Some(300_000),
        max_state,
        ..EngineConfig::default()
    }
}

/// Like `flow`, for any number of records (its source port wraps).
fn tcp(id: u64, stime: i64, etime: i64, src: IpAddr, dst: IpAddr, dport: u16) -> Record {
    Record::from(RecordFields {
        srcip: Some(src),
        dstip: Some(dst),
        srcport: Some(1024 + (id % 60_000) as u16),
        dstport: Some(dport),
        prot: Some(6),
        bytes: Some(100),
        packets: Some(1),
        ..rec(id, stime, etime).fields()
    })
}

fn pair_flow(id: u64, stime: i64) -> Record {
    let p = (id % u64::from(PAIRS)) as u8;
    tcp(id, stime, stime + 100, ip(10, 0, 0, p), ip(10, 1, 0, p), 80)
}

/// The finding's scenario, scaled down: current flows open a group per
/// pair and move W to 10 s; then an exporter re-sends old flows (stime
/// 0–5 s, all late) which keep joining those groups: W never moves again,
/// so nothing closes them. Calls `each` after every push.
fn replay_old_flows(
    e: &mut Engine,
    late: u64,
    out: &mut Vec<Match>,
    mut each: impl FnMut(&Engine),
) -> u64 {
    let mut id = 0;
    for t in 0..400 {
        e.push(Arc::new(pair_flow(id, i64::from(t) * 50)), out);
        id += 1;
        each(e);
    }
    for i in 0..late {
        e.push(Arc::new(pair_flow(id, ((i * 37) % 5_000) as i64)), out);
        id += 1;
        each(e);
    }
    id
}

fn members(out: &[Match]) -> u64 {
    out.iter()
        .flat_map(|m| &m.groups)
        .map(|g| g.members.len() as u64)
        .sum()
}

#[test]
fn late_records_joining_open_groups_stay_within_max_state() {
    const LATE: u64 = 100_000;
    const MAX: usize = 1 << 20;

    // Without a budget (as before: every limit counted groups) the state
    // grows with every late record, far past 1 MiB, while the number of
    // open groups stays at PAIRS.
    let mut unbounded = Engine::new(pair_plan(), cfg(usize::MAX));
    let mut out = Vec::new();
    let mut peak = 0;
    replay_old_flows(&mut unbounded, LATE, &mut out, |e| {
        peak = peak.max(e.budget().used());
    });
    let open = unbounded.branch(0).map(|b| b.stats().groups_open);
    assert_eq!(open, Some(u64::from(PAIRS)));
    // (100 400 records at about 136 accounted bytes each.)
    assert!(peak > 10 * MAX, "unbounded state only reached {peak} bytes");
    assert_eq!(unbounded.budget().evictions_total(), 0);

    // With max_state = 1 MiB: the account never passes it.
    let mut bounded = Engine::new(pair_plan(), cfg(MAX));
    let mut out = Vec::new();
    let mut peak = 0;
    let total = replay_old_flows(&mut bounded, LATE, &mut out, |e| {
        let used = e.budget().used();
        assert!(used <= MAX, "accounted {used} > max_state {MAX}");
        peak = peak.max(used);
    });
    assert!(peak > MAX / 2, "the budget was never used: peak {peak}");
    let budget = bounded.budget().clone();
    let early = budget.evictions(Eviction::OpenGroup);
    assert!(early > 0, "no open group was closed early");
    let stats = bounded.branch(0).map(|b| b.stats());
    assert_eq!(stats.map(|s| s.state_evictions), Some(early));
    assert!(stats.is_some_and(|s| s.state_bytes as usize <= MAX));

    // Results degrade gracefully: groups closed early still come out, so
    // every record is in exactly one group.
    bounded.finish(&mut out);
    assert_eq!(members(&out), total);
    drop(bounded);
    assert_eq!(
        budget.used(),
        0,
        "state left charged after the engine is gone"
    );
}

/// http-download (a merger query): late request/response flows of a few
/// host pairs. Open groups and stored groups share the budget; the total
/// stays within it and matches keep coming.
#[test]
fn merger_query_shares_the_budget() -> Result<(), String> {
    const MAX: usize = 512 << 10;
    let source = include_str!("../config/queries/http-download.flowy");
    let plan = flowy::query::compile_source("http-download", "http-download.flowy", source)
        .map_err(|d| d.to_string())?;
    let mut e = Engine::new(Arc::new(plan), cfg(MAX));
    let mut out = Vec::new();
    let mut id = 0u64;
    let mut push = |e: &mut Engine, out: &mut Vec<Match>, stime: i64| {
        let (c, s) = (ip(10, 0, 0, (id % 8) as u8), ip(192, 0, 2, 1));
        let port = 40_000 + (id % 8) as u16;
        let req = Record::from(RecordFields {
            srcport: Some(port),
            ..tcp(id, stime, stime + 200, c, s, 80).fields()
        });
        let res = Record::from(RecordFields {
            srcport: Some(80),
            bytes: Some(5_000),
            ..tcp(id + 1, stime + 10, stime + 150, s, c, port).fields()
        });
        e.push(Arc::new(req), out);
        e.push(Arc::new(res), out);
        id += 2;
        let used = e.budget().used();
        assert!(used <= MAX, "accounted {used} > max_state {MAX}");
    };
    // Sessions a second apart: groups close as W passes, the merger
    // stores and joins them.
    for t in 0..200 {
        push(&mut e, &mut out, t * 1_500);
    }
    // Then old flows again and again, all late, joining open groups.
    for i in 0..40_000i64 {
        push(&mut e, &mut out, 280_000 + (i * 13) % 10_000);
    }
    e.finish(&mut out);
    let b = e.budget().clone();
    // Both kinds of state gave way: the branches' open groups and the
    // merger's stored groups.
    assert!(b.evictions(Eviction::OpenGroup) > 0);
    assert!(b.evictions(Eviction::StoredGroup) > 0);
    assert_eq!(
        e.merger_stats().state_evictions,
        b.evictions(Eviction::StoredGroup) + b.evictions(Eviction::HeldTuple)
    );
    assert!(!out.is_empty(), "no match at all");
    Ok(())
}

/// Held tuples (an export module with a difference module, no horizon:
/// every tuple waits until the end) count against the budget too: once no
/// stored group is left to drop, the earliest held tuples are decided at
/// once. Many branches' engines may share one budget.
#[test]
fn held_tuples_are_decided_early_within_the_budget() {
    const MAX: usize = 64 << 10;
    let k = GroupField::Slot(0);
    let modules = vec![
        mmodule(
            "m1",
            vec![0, 1],
            vec![frule(bf(0, k), CmpOp::Eq, bf(1, k), None)],
        ),
        mmodule(
            "m2",
            vec![0, 2],
            vec![
                frule(bf(0, k), CmpOp::Eq, bf(2, k), None),
                allen(2, AllenOp::During, 0, None),
            ],
        ),
    ];
    let plain = |n: &str| branch(n, None, None, None);
    let plan = merged(vec![plain("A"), plain("B"), plain("C")], modules, 0);
    let budget = StateBudget::new(MAX);
    let cfg = EngineConfig {
        horizon: None,
        ..EngineConfig::batch(None)
    };
    let mut m = MergerEngine::with_budget(&plan, &cfg, budget.clone());
    let mut out = Vec::new();
    for i in 0..2_000u64 {
        let t = i as i64 * 10;
        m.push_group(
            group((i % 2) as usize, i, t, t + 5, vec![Some(lit((i / 2) % 4))]),
            &mut out,
        );
        assert!(budget.used() <= MAX, "accounted {} > {MAX}", budget.used());
    }
    assert!(budget.evictions(Eviction::HeldTuple) > 0);
    assert!(budget.evictions(Eviction::StoredGroup) > 0);
    let s = m.stats();
    assert!(s.state_bytes as usize <= MAX);
    assert_eq!(
        s.state_evictions,
        budget.evictions(Eviction::HeldTuple) + budget.evictions(Eviction::StoredGroup)
    );
    // Decided early means emitted now (nothing extends them), not lost.
    assert!(!out.is_empty());
    m.finish(&mut out);
    assert_eq!(m.stats().held_tuples, 0);
    assert_eq!(m.stats().matches as usize, out.len());
}

/// Times at the ends of the i64 range pass through the whole engine
/// (reorder, windows, early close, groupfilter on duration, merger with a
/// horizon) without an overflow: a debug build panicked on the group
/// duration (`etime - stime`) before.
#[test]
fn extreme_times_never_overflow() {
    let gf = cmp(
        Operand::Field(GroupField::Duration),
        CmpOp::Ge,
        Operand::Lit(lit(0)),
    );
    let g = || {
        Some(grouper(
            vec![module(
                "m",
                vec![
                    grule(Field::SrcIp, CmpOp::Eq, Field::SrcIp),
                    grule_d(
                        Field::Etime,
                        CmpOp::Lt,
                        Field::Stime,
                        1_000,
                        Reference::Last,
                    ),
                ],
            )],
            vec![Field::SrcIp],
            vec![],
        ))
    };
    let plan = merged(
        vec![
            branch("A", None, g(), Some(gf.clone())),
            branch("B", None, g(), Some(gf)),
        ],
        vec![mmodule(
            "m",
            vec![0, 1],
            vec![allen(0, AllenOp::Equals, 1, Some(u64::MAX))],
        )],
        0,
    );
    let a = ip(10, 0, 0, 1);
    let times = [
        (i64::MIN, i64::MAX),
        (i64::MIN, i64::MIN),
        (i64::MIN + 1, 0),
        (0, i64::MAX),
        (i64::MAX, i64::MAX),
        (i64::MAX - 1, i64::MAX),
        (-1, i64::MAX),
    ];
    for c in [
        cfg(1 << 20),
        EngineConfig {
            lateness: Some(i64::MAX),
            window: Some(i64::MAX),
            horizon: Some(i64::MAX),
            ..EngineConfig::default()
        },
        EngineConfig::batch(Some(1)),
    ] {
        let mut e = Engine::new(plan.clone(), c);
        let mut out = Vec::new();
        for (i, (s, t)) in times.iter().chain(times.iter().rev()).enumerate() {
            e.push(Arc::new(flow(i as u64, *s, *t, a, a, 80, 1)), &mut out);
        }
        e.advance(i64::MAX, &mut out);
        e.finish(&mut out);
        assert!(!out.is_empty());
        let widest = out
            .iter()
            .flat_map(|m| &m.groups)
            .filter_map(|g| g.get(GroupField::Duration))
            .max();
        assert_eq!(widest, Some(lit(i64::MAX as u64)));
    }
}
