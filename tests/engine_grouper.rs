//! Grouper semantics (SPEC §2.4, §3.2): rule forms, first fit, modules,
//! aggregates, windows, early close, late records and limits.

mod engine_support;

use std::sync::Arc;

use engine_support::*;
use flowy::engine::{run_batch, Engine, EngineConfig, LatePolicy, Match};
use flowy::query::plan::*;
use flowy::record::{Field, Record, RecordFields};
use flowy::value::{Value, F64};

fn groups_of(plan: Arc<Plan>, recs: Vec<Record>) -> Vec<Vec<u64>> {
    let mut g: Vec<Vec<u64>> = run_batch(plan, recs, None)
        .iter()
        .map(|m| m.groups[0].members.iter().map(|r| r.rec_id()).collect())
        .collect();
    g.sort();
    g
}

fn one_module(rules: Vec<GroupRule>) -> Arc<Plan> {
    single(branch(
        "A",
        None,
        Some(grouper(vec![module("m", rules)], vec![], vec![])),
        None,
    ))
}

fn with_bytes(id: u64, stime: i64, bytes: u64) -> Record {
    Record::from(RecordFields {
        bytes: Some(bytes),
        ..rec(id, stime, stime + 10).fields()
    })
}

/// Does a record with `cand` bytes join the group founded by one with `reference` bytes?
fn joins(rule: GroupRule, reference: u64, cand: u64) -> bool {
    let g = groups_of(
        one_module(vec![rule]),
        vec![with_bytes(0, 0, reference), with_bytes(1, 1, cand)],
    );
    g.len() == 1
}

#[test]
fn plain_rules_compare_reference_with_candidate() {
    let r = |op| grule(Field::Bytes, op, Field::Bytes);
    assert!(joins(r(CmpOp::Eq), 100, 100));
    assert!(!joins(r(CmpOp::Eq), 100, 101));
    assert!(joins(r(CmpOp::Ne), 100, 101));
    assert!(!joins(r(CmpOp::Ne), 100, 100));
    // op(ref.x, r.y): 100 < 150.
    assert!(joins(r(CmpOp::Lt), 100, 150));
    assert!(!joins(r(CmpOp::Lt), 100, 100));
    assert!(joins(r(CmpOp::Le), 100, 100));
    assert!(!joins(r(CmpOp::Le), 100, 99));
    assert!(joins(r(CmpOp::Gt), 100, 99));
    assert!(!joins(r(CmpOp::Gt), 100, 100));
    assert!(joins(r(CmpOp::Ge), 100, 100));
    assert!(!joins(r(CmpOp::Ge), 100, 101));
}

#[test]
fn delta_rules_bound_the_difference() {
    // Reference 100, D = 10; candidates and the expected verdict per op.
    let cands = [95u64, 105, 110, 111, 89, 90];
    let table: [(CmpOp, [bool; 6]); 6] = [
        (CmpOp::Lt, [true, true, false, false, true, true]),
        (CmpOp::Le, [true, true, true, false, true, true]),
        (CmpOp::Gt, [true, true, true, true, false, false]),
        (CmpOp::Ge, [true, true, true, true, false, true]),
        (CmpOp::Eq, [true, true, true, false, false, true]),
        (CmpOp::Ne, [false, false, false, true, true, false]),
    ];
    for (op, expect) in table {
        for (c, e) in cands.iter().zip(expect) {
            for reference in [Reference::First, Reference::Last] {
                let rule = grule_d(Field::Bytes, op, Field::Bytes, 10, reference);
                assert_eq!(joins(rule, 100, *c), e, "{op:?} delta 10: 100 vs {c}");
            }
        }
    }
}

#[test]
fn delta_reads_first_member_and_rdelta_the_last() {
    let recs = || {
        vec![
            rec(0, 0, 500),
            rec(1, 1400, 1600),
            rec(2, 2000, 2100),
            rec(3, 3000, 3050),
        ]
    };
    let r = |reference| grule_d(Field::Etime, CmpOp::Lt, Field::Stime, 1000, reference);
    // rdelta: 1400−500, 2000−1600, 3000−2100 are all < 1000: one chain.
    assert_eq!(
        groups_of(one_module(vec![r(Reference::Last)]), recs()),
        vec![vec![0, 1, 2, 3]]
    );
    // delta: 2000−500 ≥ 1000 opens a group; 3000−2100 < 1000 joins it.
    assert_eq!(
        groups_of(one_module(vec![r(Reference::First)]), recs()),
        vec![vec![0, 1], vec![2, 3]]
    );
}

fn port_rec(id: u64, stime: i64, dst: u8, sport: u16, bytes: u64) -> Record {
    Record::from(RecordFields {
        dstip: Some(ip(10, 0, 0, dst)),
        srcport: Some(sport),
        bytes: Some(bytes),
        ..rec(id, stime, stime + 1).fields()
    })
}

#[test]
fn record_joins_the_oldest_admitting_group() {
    let recs = || {
        vec![
            port_rec(0, 0, 1, 1, 0),
            port_rec(1, 1, 1, 1, 0), // 1 != 1 fails: new group
            port_rec(2, 2, 1, 2, 0), // admitted by both: joins the oldest
            port_rec(3, 3, 1, 1, 0), // admitted by neither
        ]
    };
    let ne = grule(Field::SrcPort, CmpOp::Ne, Field::SrcPort);
    let expect = vec![vec![0, 2], vec![1], vec![3]];
    // Scanned module (no equality rule).
    assert_eq!(groups_of(one_module(vec![ne.clone()]), recs()), expect);
    // Indexed module: all groups in one bucket, still oldest first.
    let eq = grule(Field::DstIp, CmpOp::Eq, Field::DstIp);
    assert_eq!(groups_of(one_module(vec![eq, ne]), recs()), expect);
}

#[test]
fn oldest_group_across_modules() {
    let m1 = module(
        "m1",
        vec![
            grule(Field::DstIp, CmpOp::Eq, Field::DstIp),
            grule(Field::SrcPort, CmpOp::Eq, Field::SrcPort),
        ],
    );
    let m2 = module("m2", vec![grule(Field::Bytes, CmpOp::Eq, Field::Bytes)]);
    let plan = single(branch(
        "A",
        None,
        Some(grouper(vec![m1, m2], vec![], vec![])),
        None,
    ));
    let recs = vec![
        port_rec(0, 0, 1, 1, 10),
        port_rec(1, 1, 1, 2, 20),
        // m1 admits it into group 1, m2 into group 0: the oldest wins.
        port_rec(2, 2, 1, 2, 10),
    ];
    assert_eq!(groups_of(plan, recs), vec![vec![0, 2], vec![1]]);
}

#[test]
fn modules_are_alternatives_and_qualified_aggregates_count_per_module() {
    let m1 = module("m1", vec![grule(Field::SrcIp, CmpOp::Eq, Field::SrcIp)]);
    let m2 = module("m2", vec![grule(Field::DstIp, CmpOp::Eq, Field::DstIp)]);
    let mut c1 = agg("n1", AggFunc::Count, Field::RecId);
    c1.module = Some(0);
    let mut c2 = agg("n2", AggFunc::Count, Field::RecId);
    c2.module = Some(1);
    let mut s2 = agg("b2", AggFunc::Sum, Field::Bytes);
    s2.module = Some(1);
    let aggs = vec![c1, c2, s2, agg("n", AggFunc::Count, Field::RecId)];
    let plan = single(branch(
        "A",
        None,
        Some(grouper(vec![m1, m2], vec![], aggs)),
        None,
    ));
    let (a, b, c) = (ip(1, 0, 0, 1), ip(1, 0, 0, 2), ip(1, 0, 0, 3));
    let (x, y, z) = (ip(2, 0, 0, 1), ip(2, 0, 0, 2), ip(2, 0, 0, 3));
    let recs = vec![
        flow(0, 0, 1, a, x, 80, 1),
        flow(1, 1, 2, b, x, 80, 10),   // via m2 only
        flow(2, 2, 3, a, y, 80, 100),  // via m1 only
        flow(3, 3, 4, c, z, 80, 1000), // new group
        flow(4, 4, 5, a, x, 80, 5),    // via both
    ];
    let ms = run_batch(plan, recs, None);
    let mut got: Vec<(Vec<u64>, Vec<Option<Value>>)> = ms
        .iter()
        .map(|m| {
            let g = &m.groups[0];
            (
                g.members.iter().map(|r| r.rec_id()).collect(),
                g.values.clone(),
            )
        })
        .collect();
    got.sort_by(|p, q| p.0.cmp(&q.0));
    let u = |v| Some(Value::Uint(v));
    assert_eq!(
        got,
        vec![
            // The founding record counts for every module.
            (vec![0, 1, 2, 4], vec![u(3), u(3), u(16), u(4)]),
            (vec![3], vec![u(1), u(1), u(1000), u(1)]),
        ]
    );
}

#[test]
fn every_aggregate_function() {
    let aggs = vec![
        agg("sum", AggFunc::Sum, Field::Bytes),
        agg("cnt", AggFunc::Count, Field::Bytes),
        agg("min", AggFunc::Min, Field::Bytes),
        agg("max", AggFunc::Max, Field::Bytes),
        agg("avg", AggFunc::Avg, Field::Bytes),
        agg("ports", AggFunc::Union, Field::SrcPort),
        agg("or", AggFunc::BitOr, Field::TcpFlags),
        agg("and", AggFunc::BitAnd, Field::TcpFlags),
        agg("first", AggFunc::First, Field::Bytes),
        agg("last", AggFunc::Last, Field::Bytes),
        agg("bytes", AggFunc::Plain, Field::Bytes),
        agg("srcport", AggFunc::Plain, Field::SrcPort),
    ];
    // A module without rules: one group for everything.
    let plan = single(branch(
        "A",
        None,
        Some(grouper(vec![module("all", vec![])], vec![], aggs)),
        None,
    ));
    let r = |id, stime, bytes: Option<u64>, flags: Option<u16>, port| {
        Record::from(RecordFields {
            bytes,
            tcp_flags: flags,
            srcport: Some(port),
            ..rec(id, stime, stime + 5).fields()
        })
    };
    let recs = vec![
        r(3, 30, Some(20), None, 9),
        r(0, 0, None, Some(0x02), 5),
        r(2, 20, Some(30), Some(0x13), 5),
        r(1, 10, Some(10), Some(0x12), 7),
    ];
    let ms = run_batch(plan, recs, None);
    assert_eq!(ms.len(), 1);
    let g = &ms[0].groups[0];
    assert_eq!(
        g.members.iter().map(|r| r.rec_id()).collect::<Vec<_>>(),
        vec![0, 1, 2, 3]
    );
    assert_eq!((g.stime, g.etime), (0, 35));
    let u = |v| Some(Value::Uint(v));
    assert_eq!(
        g.values,
        vec![
            u(60),
            u(3),
            u(10),
            u(30),
            Some(Value::Float(F64(20.0))),
            Some(Value::Set(set(&[5, 7, 9]))),
            u(0x13),
            u(0x02),
            u(10),
            u(20),
            None, // plain: the first member has no bytes
            u(5),
        ]
    );
    assert_eq!(g.get(GroupField::Count), u(4));
    assert_eq!(g.get(GroupField::Duration), u(35));
}

#[test]
fn implicit_keys_come_from_the_first_member() {
    let g = grouper(
        vec![module(
            "m",
            vec![
                grule(Field::SrcIp, CmpOp::Eq, Field::SrcIp),
                grule(Field::DstIp, CmpOp::Eq, Field::DstIp),
            ],
        )],
        vec![Field::SrcIp, Field::DstIp],
        vec![agg("bytes", AggFunc::Sum, Field::Bytes)],
    );
    let plan = single(branch("A", None, Some(g), None));
    let (a, b, x) = (ip(1, 0, 0, 1), ip(1, 0, 0, 2), ip(2, 0, 0, 1));
    let recs = vec![
        flow(0, 0, 1, a, x, 80, 1),
        flow(1, 1, 2, b, x, 80, 2),
        flow(2, 2, 3, a, x, 80, 4),
    ];
    let ms = run_batch(plan, recs, None);
    let vals: Vec<Vec<Option<Value>>> = ms.iter().map(|m| m.groups[0].values.clone()).collect();
    assert!(vals.contains(&vec![
        Some(Value::Ip(a)),
        Some(Value::Ip(x)),
        Some(Value::Uint(5))
    ]));
    assert!(vals.contains(&vec![
        Some(Value::Ip(b)),
        Some(Value::Ip(x)),
        Some(Value::Uint(2))
    ]));
    assert_eq!(ms.len(), 2);
}

#[test]
fn no_grouper_and_empty_grouper_make_singletons() {
    let recs = || vec![rec(0, 0, 1), rec(1, 0, 1), rec(2, 5, 6)];
    let none = single(branch("A", None, None, None));
    assert_eq!(groups_of(none, recs()), vec![vec![0], vec![1], vec![2]]);
    let empty = single(branch(
        "A",
        None,
        Some(grouper(
            vec![],
            vec![],
            vec![agg("n", AggFunc::Count, Field::RecId)],
        )),
        None,
    ));
    let ms = run_batch(empty, recs(), None);
    assert_eq!(ms.len(), 3);
    assert!(ms
        .iter()
        .all(|m| m.groups[0].values == vec![Some(Value::Uint(1))]));
}

#[test]
fn windows_split_groups_and_close_at_window_end() {
    let g = grouper(
        vec![module(
            "m",
            vec![grule(Field::SrcIp, CmpOp::Eq, Field::SrcIp)],
        )],
        vec![Field::SrcIp],
        vec![],
    );
    let plan = single(branch("A", None, Some(g), None));
    let a = ip(1, 0, 0, 1);
    let r = |id, st| flow(id, st, st + 10_000, a, a, 80, 1);
    let recs = || vec![r(0, 100), r(1, 900), r(2, 1100), r(3, 1999), r(4, 2000)];
    let mut batch: Vec<Vec<u64>> = run_batch(plan.clone(), recs(), Some(1000))
        .iter()
        .map(|m| m.groups[0].members.iter().map(|r| r.rec_id()).collect())
        .collect();
    batch.sort();
    assert_eq!(batch, vec![vec![0, 1], vec![2, 3], vec![4]]);
    // Streaming, lateness 0: window [0,1000) closes once W reaches 1000.
    let cfg = EngineConfig {
        lateness: Some(0),
        window: Some(1000),
        ..EngineConfig::default()
    };
    let mut e = Engine::new(plan, cfg);
    let mut out: Vec<Match> = Vec::new();
    let mut it = recs().into_iter();
    for r in it.by_ref().take(3) {
        e.push(Arc::new(r), &mut out);
    }
    // W = 1100: records 0 and 1 released, window 0 closed; record 2 waits.
    assert_eq!(match_ids(&out), vec![vec![vec![0, 1]]]);
    for r in it {
        e.push(Arc::new(r), &mut out);
    }
    assert_eq!(out.len(), 2); // W = 2000 closed window 1
    e.finish(&mut out);
    assert_eq!(
        match_ids(&out),
        vec![vec![vec![0, 1]], vec![vec![2, 3]], vec![vec![4]]]
    );
}

fn streaming(lateness: i64) -> EngineConfig {
    EngineConfig {
        lateness: Some(lateness),
        window: None,
        horizon: None,
        ..EngineConfig::default()
    }
}

#[test]
fn early_close_on_rdelta_bound() {
    let plan = one_module(vec![grule_d(
        Field::Etime,
        CmpOp::Lt,
        Field::Stime,
        1000,
        Reference::Last,
    )]);
    let mut e = Engine::new(plan.clone(), streaming(0));
    let mut out = Vec::new();
    let recs = vec![
        rec(0, 0, 100),
        rec(1, 1099, 1200),
        rec(2, 2199, 2199),
        rec(3, 5000, 5000),
    ];
    for r in recs.clone().into_iter().take(3) {
        e.push(Arc::new(r), &mut out);
    }
    // The group can still take a record starting before 2199 + 999.
    assert!(out.is_empty());
    e.push(Arc::new(recs[3].clone()), &mut out);
    // W = 5000 > last.etime + 999 = 3198: closed without waiting for the end.
    assert_eq!(match_ids(&out), vec![vec![vec![0, 1, 2]]]);
    e.finish(&mut out);
    assert_eq!(match_ids(&out), vec![vec![vec![0, 1, 2]], vec![vec![3]]]);
    assert_eq!(groups_of(plan, recs), vec![vec![0, 1, 2], vec![3]]);
}

#[test]
fn early_close_on_delta_from_first_member() {
    let plan = one_module(vec![grule_d(
        Field::Stime,
        CmpOp::Lt,
        Field::Stime,
        500,
        Reference::First,
    )]);
    let mut e = Engine::new(plan, streaming(0));
    let mut out = Vec::new();
    e.push(Arc::new(rec(0, 0, 0)), &mut out);
    e.push(Arc::new(rec(1, 300, 300)), &mut out);
    e.push(Arc::new(rec(2, 499, 499)), &mut out);
    assert!(out.is_empty());
    // W = 500 > first.stime + 499: nothing later can join.
    e.push(Arc::new(rec(3, 500, 500)), &mut out);
    assert_eq!(match_ids(&out), vec![vec![vec![0, 1, 2]]]);
    assert_eq!(e.branch(0).map(|b| b.stats().groups_open), Some(0));
}

#[test]
fn no_early_close_when_a_module_is_unbounded() {
    let bounded = module(
        "b",
        vec![grule_d(
            Field::Stime,
            CmpOp::Lt,
            Field::Stime,
            500,
            Reference::First,
        )],
    );
    let unbounded = module("u", vec![grule(Field::SrcIp, CmpOp::Eq, Field::SrcIp)]);
    let plan = single(branch(
        "A",
        None,
        Some(grouper(vec![bounded, unbounded], vec![], vec![])),
        None,
    ));
    let mut e = Engine::new(plan, streaming(0));
    let mut out = Vec::new();
    e.push(Arc::new(rec(0, 0, 0)), &mut out);
    e.push(Arc::new(rec(1, 10_000, 10_000)), &mut out);
    assert!(out.is_empty());
    e.finish(&mut out);
    // Records without srcip: the second cannot join via either module.
    assert_eq!(match_ids(&out), vec![vec![vec![0]], vec![vec![1]]]);
}

#[test]
fn late_records_are_counted_and_processed_or_dropped() {
    for (policy, expect) in [
        (LatePolicy::Process, vec![vec![vec![0]], vec![vec![1]]]),
        (LatePolicy::Drop, vec![vec![vec![0]]]),
    ] {
        let plan = single(branch("A", None, None, None));
        let cfg = EngineConfig {
            late: policy,
            ..streaming(0)
        };
        let mut e = Engine::new(plan, cfg);
        let mut out = Vec::new();
        e.push(Arc::new(rec(0, 1000, 1000)), &mut out);
        e.push(Arc::new(rec(1, 500, 500)), &mut out);
        e.finish(&mut out);
        let mut got = match_ids(&out);
        got.sort();
        assert_eq!(got, expect, "{policy:?}");
        // Admission counts a late record once, whatever the policy; the
        // branch only sees (and counts) the ones it processes.
        let admitted = e.admission();
        assert_eq!(admitted.late, 1, "{policy:?}");
        let (dropped, processed_late) = match policy {
            LatePolicy::Process => (0, 1),
            LatePolicy::Drop => (1, 0),
        };
        assert_eq!(admitted.dropped, dropped, "{policy:?}");
        let stats = e.branch(0).map(|b| b.stats());
        assert_eq!(stats.map(|s| s.late), Some(processed_late));
    }
}

#[test]
fn open_group_limit_closes_the_oldest() {
    let g = grouper(
        vec![module(
            "m",
            vec![grule(Field::SrcIp, CmpOp::Eq, Field::SrcIp)],
        )],
        vec![],
        vec![],
    );
    let plan = single(branch("A", None, Some(g), None));
    let cfg = EngineConfig {
        max_open_groups: 2,
        ..EngineConfig::batch(None)
    };
    let mut e = Engine::new(plan, cfg);
    let mut out = Vec::new();
    let ips = [
        ip(1, 0, 0, 1),
        ip(1, 0, 0, 2),
        ip(1, 0, 0, 3),
        ip(1, 0, 0, 1),
    ];
    for (i, a) in ips.iter().enumerate() {
        e.push(
            Arc::new(flow(i as u64, i as i64, i as i64, *a, *a, 80, 1)),
            &mut out,
        );
    }
    e.finish(&mut out);
    let mut got = match_ids(&out);
    got.sort();
    // The group of 1.0.0.1 was closed early when the third opened; record 3
    // starts a new one.
    assert_eq!(
        got,
        vec![vec![vec![0]], vec![vec![1]], vec![vec![2]], vec![vec![3]]]
    );
    assert_eq!(e.branch(0).map(|b| b.stats().closed_early), Some(2));
}

#[test]
fn reorder_buffer_releases_in_stime_then_rec_id_order() {
    let plan = one_module(vec![grule_d(
        Field::Stime,
        CmpOp::Le,
        Field::Stime,
        100,
        Reference::First,
    )]);
    let cfg = streaming(1_000);
    let mut e = Engine::new(plan, cfg);
    let mut out = Vec::new();
    for r in [
        rec(2, 150, 150),
        rec(1, 50, 50),
        rec(0, 50, 50),
        rec(3, 5000, 5000),
    ] {
        e.push(Arc::new(r), &mut out);
    }
    e.finish(&mut out);
    let got = match_ids(&out);
    // 0 and 1 (stime 50) found the group, 150 − 50 ≤ 100 joins.
    assert_eq!(got[0], vec![vec![0, 1, 2]]);
    assert_eq!(got.len(), 2);
}

#[test]
fn branch_engine_api_and_stats() {
    use flowy::engine::BranchEngine;
    let f = filter(cmp(fld(Field::DstPort), CmpOp::Eq, Operand::Lit(lit(80))));
    let g = grouper(
        vec![module(
            "m",
            vec![grule(Field::SrcIp, CmpOp::Eq, Field::SrcIp)],
        )],
        vec![Field::SrcIp],
        vec![],
    );
    let gf = cmp(
        Operand::Field(GroupField::Count),
        CmpOp::Ge,
        Operand::Lit(lit(2)),
    );
    let plan = single(branch("A", Some(f), Some(g), Some(gf)));
    let cfg = EngineConfig {
        window: Some(1000),
        ..streaming(0)
    };
    let mut b = BranchEngine::new(&plan, 0, &cfg);
    let (a, c, d) = (ip(1, 0, 0, 1), ip(1, 0, 0, 2), ip(9, 9, 9, 9));
    let recs = [
        flow(0, 100, 150, a, d, 80, 1),
        flow(1, 300, 350, a, d, 80, 1),
        flow(2, 400, 450, c, d, 80, 1),
        flow(3, 500, 550, a, d, 22, 1), // filtered
        flow(4, 1200, 1250, c, d, 80, 1),
    ];
    for r in &recs {
        b.push(&Arc::new(r.clone()), None);
    }
    assert_eq!(b.buffered(), 4);
    let mut out = Vec::new();
    b.advance(1000, &mut out);
    // Window [0,1000) closed: {0,1} passes count >= 2, {2} does not.
    assert_eq!(out.len(), 1);
    assert_eq!(
        out[0]
            .members
            .iter()
            .map(|r| r.rec_id())
            .collect::<Vec<_>>(),
        vec![0, 1]
    );
    let s = b.stats();
    assert_eq!((s.records_in, s.records_filtered), (5, 4));
    assert_eq!((s.groups_closed, s.groups_passed, s.groups_open), (2, 1, 0));
    assert_eq!(b.buffered(), 1);
    // A record behind W is late; by default still processed.
    b.push(&Arc::new(flow(5, 900, 950, c, d, 80, 1)), Some(1000));
    b.finish(&mut out);
    let s = b.stats();
    assert_eq!(s.late, 1);
    assert_eq!(s.groups_closed, 4);
    assert_eq!(out.len(), 1, "{{5}} and {{4}} are single-member groups");
}

#[test]
fn reorder_limit_releases_the_oldest_early() {
    use flowy::engine::BranchEngine;
    let plan = single(branch("A", None, None, None));
    let cfg = EngineConfig {
        max_reorder: 2,
        ..streaming(0)
    };
    let mut b = BranchEngine::new(&plan, 0, &cfg);
    for (i, t) in [30i64, 10, 20].iter().enumerate() {
        b.push(&Arc::new(rec(i as u64, *t, *t)), None);
    }
    assert_eq!(b.buffered(), 2);
    assert_eq!(b.stats().reorder_overflow, 1);
    let mut out = Vec::new();
    b.finish(&mut out);
    let order: Vec<u64> = out.iter().map(|g| g.members[0].rec_id()).collect();
    // The oldest (stime 10) went first; the rest in stime order.
    assert_eq!(order, vec![1, 2, 0]);
}

#[test]
fn explicit_advance_releases_like_event_time() {
    let plan = one_module(vec![grule_d(
        Field::Stime,
        CmpOp::Lt,
        Field::Stime,
        100,
        Reference::First,
    )]);
    let mut e = Engine::new(plan, streaming(1_000_000));
    let mut out = Vec::new();
    for r in [rec(0, 0, 0), rec(1, 50, 50), rec(2, 500, 500)] {
        e.push(Arc::new(r), &mut out);
    }
    assert!(out.is_empty(), "lateness holds everything back");
    assert_eq!(e.watermark(), Some(500 - 1_000_000));
    // An idle advance to 400: records 0 and 1 released, their group can take
    // nothing starting at or after 100, so it closes.
    e.advance(400, &mut out);
    assert_eq!(match_ids(&out), vec![vec![vec![0, 1]]]);
    assert_eq!(e.watermark(), Some(400));
    // W never moves back; a record behind it is late.
    e.advance(10, &mut out);
    assert_eq!(e.watermark(), Some(400));
    e.push(Arc::new(rec(3, 300, 300)), &mut out);
    assert_eq!(e.branch(0).map(|b| b.stats().late), Some(1));
    e.finish(&mut out);
    assert_eq!(out.len(), 3);
}
