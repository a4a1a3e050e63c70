//! Merger (SPEC §2.5), set difference, horizon, ungrouper (§3.3) and
//! streaming/batch equivalence (§3.2).

mod engine_support;

use std::collections::BTreeSet;
use std::sync::Arc;

use engine_support::*;
use flowy::engine::{run_batch, Engine, EngineConfig, Group, Match, MergerEngine};
use flowy::query::plan::*;
use flowy::record::{Field, Record, RecordFields};
use flowy::value::{Prefix, Value};

const K: GroupField = GroupField::Slot(0);
const N: GroupField = GroupField::Slot(1);

fn plain_branches(n: usize) -> Vec<BranchPlan> {
    (0..n)
        .map(|i| branch(&format!("B{i}"), None, None, None))
        .collect()
}

fn merger_only(
    modules: Vec<MergeModule>,
    export: usize,
    n: usize,
    horizon: Option<i64>,
) -> MergerEngine {
    let plan = merged(plain_branches(n), modules, export);
    let cfg = EngineConfig {
        horizon,
        ..EngineConfig::batch(None)
    };
    MergerEngine::new(&plan, &cfg)
}

fn run(m: &mut MergerEngine, groups: Vec<Arc<Group>>) -> Vec<Match> {
    let mut out = Vec::new();
    for g in groups {
        m.push_group(g, &mut out);
    }
    m.finish(&mut out);
    out
}

fn u(v: u64) -> Option<Value> {
    Some(Value::Uint(v))
}

#[test]
fn equality_and_allen_join() {
    // A.k = B.k and A < B.
    let rules = vec![
        frule(bf(0, K), CmpOp::Eq, bf(1, K), None),
        allen(0, AllenOp::Before, 1, None),
    ];
    let mut m = merger_only(vec![mmodule("m", vec![0, 1], rules)], 0, 2, None);
    let groups = vec![
        group(0, 0, 0, 10, vec![u(1)]),
        group(1, 0, 11, 20, vec![u(1)]), // joins A0
        group(1, 1, 5, 20, vec![u(1)]),  // overlaps A0: no
        group(1, 2, 30, 40, vec![u(2)]), // other key
        group(0, 1, 12, 13, vec![u(2)]), // before B2
        group(0, 2, 1, 2, vec![u(1)]),   // before B0 and B1
        group(0, 3, 1, 2, vec![None]),   // absent key never joins
    ];
    let out = run(&mut m, groups);
    assert_eq!(
        tuple_ids(&out),
        vec![
            vec![(0, 0), (1, 0)],
            vec![(0, 1), (1, 2)],
            vec![(0, 2), (1, 0)],
            vec![(0, 2), (1, 1)],
        ]
    );
    // Groups come in the module's branch order whichever arrived last.
    assert!(out
        .iter()
        .all(|t| t.groups[0].branch == 0 && t.groups[1].branch == 1));
}

#[test]
fn before_after_with_delta_zero_never_join_while_no_delta_is_unbounded() {
    // Gaps of 1, 5 and 100 ms between A and the Bs (and the Bs and A for `>`).
    let groups = || {
        vec![
            group(0, 0, 0, 10, vec![]),
            group(1, 0, 11, 20, vec![]),
            group(1, 1, 15, 20, vec![]),
            group(1, 2, 110, 120, vec![]),
            group(0, 1, 130, 140, vec![]),
        ]
    };
    let ids = |op, delta| {
        let rules = vec![allen(0, op, 1, delta)];
        let mut m = merger_only(vec![mmodule("m", vec![0, 1], rules)], 0, 2, None);
        tuple_ids(&run(&mut m, groups()))
    };
    let all_before = vec![
        vec![(0, 0), (1, 0)],
        vec![(0, 0), (1, 1)],
        vec![(0, 0), (1, 2)],
    ];
    assert_eq!(ids(AllenOp::Before, None), all_before);
    assert_eq!(ids(AllenOp::Before, Some(5)), all_before[..2].to_vec());
    assert!(ids(AllenOp::Before, Some(0)).is_empty());
    let all_after = vec![
        vec![(0, 1), (1, 0)],
        vec![(0, 1), (1, 1)],
        vec![(0, 1), (1, 2)],
    ];
    assert_eq!(ids(AllenOp::After, None), all_after);
    assert_eq!(ids(AllenOp::After, Some(10)), vec![vec![(0, 1), (1, 2)]]);
    assert!(ids(AllenOp::After, Some(0)).is_empty());
}

#[test]
fn set_equality_membership_and_prefixes() {
    let s = |v: &[u64]| Some(Value::Set(set(v)));
    // A.k = B.k where k are union sets; B.n in A.k; A.n in {7, 8}.
    let rules = vec![
        frule(bf(0, K), CmpOp::Eq, bf(1, K), None),
        frule(bf(1, N), CmpOp::In, bf(0, K), None),
        frule(bf(0, N), CmpOp::In, MergeOperand::Set(set(&[7, 8])), None),
    ];
    let mut m = merger_only(vec![mmodule("m", vec![0, 1], rules)], 0, 2, None);
    let groups = vec![
        group(0, 0, 0, 1, vec![s(&[1, 2]), u(7)]),
        group(1, 0, 0, 1, vec![s(&[2, 1]), u(2)]), // equal set, 2 ∈ {1,2}
        group(1, 1, 0, 1, vec![s(&[1]), u(1)]),    // subset: not equal
        group(1, 2, 0, 1, vec![s(&[1, 2]), u(3)]), // 3 ∉ {1,2}
        group(0, 1, 0, 1, vec![s(&[1, 2]), u(9)]), // 9 ∉ {7,8}
    ];
    assert_eq!(tuple_ids(&run(&mut m, groups)), vec![vec![(0, 0), (1, 0)]]);

    // Prefix membership on an address slot.
    let p = Prefix {
        addr: ip(10, 0, 0, 0),
        len: 8,
    };
    let rules = vec![
        frule(bf(0, K), CmpOp::In, MergeOperand::Prefix(p), None),
        frule(bf(0, K), CmpOp::Ne, bf(1, K), None),
    ];
    let mut m = merger_only(vec![mmodule("m", vec![0, 1], rules)], 0, 2, None);
    let a = |x| Some(Value::Ip(x));
    let groups = vec![
        group(0, 0, 0, 1, vec![a(ip(10, 1, 1, 1))]),
        group(0, 1, 0, 1, vec![a(ip(11, 1, 1, 1))]),
        group(1, 0, 0, 1, vec![a(ip(10, 1, 1, 1))]),
        group(1, 1, 0, 1, vec![a(ip(10, 1, 1, 2))]),
    ];
    assert_eq!(tuple_ids(&run(&mut m, groups)), vec![vec![(0, 0), (1, 1)]]);
}

#[test]
fn field_deltas_use_difference_semantics_with_lhs_as_reference() {
    // A.k = B.k delta 1 (|B.k − A.k| ≤ 1) and A.n < B.n delta 5 (B.n − A.n < 5).
    let rules = vec![
        frule(bf(0, K), CmpOp::Eq, bf(1, K), Some(1)),
        frule(bf(0, N), CmpOp::Lt, bf(1, N), Some(5)),
    ];
    let mut m = merger_only(vec![mmodule("m", vec![0, 1], rules)], 0, 2, None);
    let groups = vec![
        group(0, 0, 0, 1, vec![u(10), u(100)]),
        group(1, 0, 0, 1, vec![u(11), u(104)]), // yes
        group(1, 1, 0, 1, vec![u(9), u(50)]),   // yes (negative difference)
        group(1, 2, 0, 1, vec![u(12), u(100)]), // |2| > 1
        group(1, 3, 0, 1, vec![u(10), u(105)]), // 5 is not < 5
    ];
    assert_eq!(
        tuple_ids(&run(&mut m, groups)),
        vec![vec![(0, 0), (1, 0)], vec![(0, 0), (1, 1)]]
    );
}

#[test]
fn or_and_not_rules_and_three_branches() {
    // B oi A OR B d A;  NOT A.k = C.k;  A < C.
    let rules = vec![
        MergeRule::Or(vec![
            allen(1, AllenOp::OverlappedBy, 0, None),
            allen(1, AllenOp::During, 0, None),
        ]),
        MergeRule::Not(Box::new(frule(bf(0, K), CmpOp::Eq, bf(2, K), None))),
        allen(0, AllenOp::Before, 2, None),
    ];
    let mut m = merger_only(vec![mmodule("m", vec![0, 1, 2], rules)], 0, 3, None);
    let groups = vec![
        group(2, 0, 100, 110, vec![u(1)]),
        group(2, 1, 100, 110, vec![u(2)]),
        group(1, 0, 15, 25, vec![]), // oi A0
        group(1, 1, 12, 18, vec![]), // d A0
        group(1, 2, 0, 30, vec![]),  // contains A0: neither
        group(0, 0, 10, 20, vec![u(1)]),
    ];
    assert_eq!(
        tuple_ids(&run(&mut m, groups)),
        vec![vec![(0, 0), (1, 0), (2, 1)], vec![(0, 0), (1, 1), (2, 1)]]
    );
}

fn diff_modules() -> Vec<MergeModule> {
    // m1 {A, B: A.k = B.k} minus m2 {A, C: A.k = C.k, C d A}.
    vec![
        mmodule(
            "m1",
            vec![0, 1],
            vec![frule(bf(0, K), CmpOp::Eq, bf(1, K), None)],
        ),
        mmodule(
            "m2",
            vec![0, 2],
            vec![
                frule(bf(0, K), CmpOp::Eq, bf(2, K), None),
                allen(2, AllenOp::During, 0, None),
            ],
        ),
    ]
}

#[test]
fn set_difference_removes_extended_tuples() {
    let mut m = merger_only(diff_modules(), 0, 3, None);
    let groups = vec![
        group(0, 0, 0, 100, vec![u(1)]),
        group(1, 0, 0, 1, vec![u(1)]),
        group(0, 1, 0, 100, vec![u(2)]),
        group(1, 1, 0, 1, vec![u(2)]),
        group(0, 2, 0, 100, vec![u(3)]),
        group(1, 2, 0, 1, vec![u(3)]),
        // Arrives after the tuples formed: still extends (A0, B0).
        group(2, 0, 10, 20, vec![u(1)]),
        // Same key as A1 but not during it: no extension.
        group(2, 1, 100, 200, vec![u(2)]),
        group(2, 2, 5, 6, vec![u(9)]),
    ];
    assert_eq!(
        tuple_ids(&run(&mut m, groups)),
        vec![vec![(0, 1), (1, 1)], vec![(0, 2), (1, 2)]]
    );
    // An extension that is already stored removes the tuple at once.
    let mut m = merger_only(diff_modules(), 0, 3, None);
    let mut out = Vec::new();
    m.push_group(group(2, 0, 10, 20, vec![u(1)]), &mut out);
    m.push_group(group(0, 0, 0, 100, vec![u(1)]), &mut out);
    m.push_group(group(1, 0, 0, 1, vec![u(1)]), &mut out);
    assert_eq!(m.stats().extended, 1);
    assert_eq!(m.stats().held_tuples, 0);
    m.finish(&mut out);
    assert!(out.is_empty());
}

#[test]
fn horizon_holds_difference_tuples_and_expires_groups() {
    let mut m = merger_only(diff_modules(), 0, 3, Some(50));
    let mut out = Vec::new();
    m.push_group(group(0, 0, 0, 100, vec![u(1)]), &mut out);
    m.push_group(group(1, 0, 0, 110, vec![u(1)]), &mut out);
    m.push_group(group(0, 1, 0, 100, vec![u(2)]), &mut out);
    m.push_group(group(1, 1, 0, 120, vec![u(2)]), &mut out);
    assert!(out.is_empty(), "held until W passes latest etime + horizon");
    assert_eq!(m.stats().held_tuples, 2);
    m.push_group(group(2, 0, 10, 20, vec![u(1)]), &mut out);
    m.advance(160, &mut out); // 110 + 50 < 160: (A0,B0) decided — extended
    assert!(out.is_empty());
    m.advance(170, &mut out); // 120 + 50 = 170 is not passed yet
    assert!(out.is_empty());
    m.advance(171, &mut out);
    assert_eq!(tuple_ids(&out), vec![vec![(0, 1), (1, 1)]]);
    // Groups with etime + 50 < 171 are gone: a late partner finds nothing.
    assert_eq!(m.stats().stored_groups, 0);
    m.push_group(group(1, 2, 0, 200, vec![u(1)]), &mut out);
    m.finish(&mut out);
    assert_eq!(out.len(), 1);
}

#[test]
fn stored_group_limit_drops_the_oldest() {
    let rules = vec![frule(bf(0, K), CmpOp::Eq, bf(1, K), None)];
    let plan = merged(plain_branches(2), vec![mmodule("m", vec![0, 1], rules)], 0);
    let cfg = EngineConfig {
        max_stored_groups: 2,
        ..EngineConfig::batch(None)
    };
    let mut m = MergerEngine::new(&plan, &cfg);
    let groups = vec![
        group(0, 0, 0, 1, vec![u(1)]),
        group(0, 1, 0, 1, vec![u(2)]),
        group(0, 2, 0, 1, vec![u(3)]), // A0 dropped
        group(1, 0, 0, 1, vec![u(1)]), // finds nothing; A1 dropped
        group(1, 1, 0, 1, vec![u(3)]),
    ];
    let out = run(&mut m, groups);
    assert_eq!(tuple_ids(&out), vec![vec![(0, 2), (1, 1)]]);
    assert_eq!(m.stats().closed_early, 3);
    assert_eq!(m.stats().stored_groups, 2);
}

fn member(id: u64, stime: i64) -> Arc<Record> {
    Arc::new(rec(id, stime, stime + 1))
}

#[test]
fn ungrouper_dedups_attributes_and_orders() {
    // Export module lists branch 1 first: shared records belong to branch 1.
    let rules = vec![frule(bf(0, K), CmpOp::Eq, bf(1, K), None)];
    let mut m = merger_only(vec![mmodule("m", vec![1, 0], rules)], 0, 2, None);
    let g0 = Arc::new(Group {
        branch: 0,
        id: 0,
        stime: 5,
        etime: 30,
        members: vec![member(7, 20), member(3, 5), member(4, 10)],
        values: vec![u(1)],
    });
    let g1 = Arc::new(Group {
        branch: 1,
        id: 0,
        stime: 10,
        etime: 30,
        members: vec![member(4, 10), member(9, 10), member(7, 20)],
        values: vec![u(1)],
    });
    let out = run(&mut m, vec![g0, g1]);
    assert_eq!(out.len(), 1);
    assert_eq!(
        out[0].groups.iter().map(|g| g.branch).collect::<Vec<_>>(),
        vec![1, 0]
    );
    let recs: Vec<(usize, u64, i64)> = out[0]
        .records()
        .iter()
        .map(|(b, r)| (*b, r.rec_id(), r.stime()))
        .collect();
    assert_eq!(recs, vec![(0, 3, 5), (1, 4, 10), (1, 9, 10), (1, 7, 20)]);
}

#[test]
fn single_branch_module_with_literal_rules() {
    let rules = vec![frule(
        bf(0, GroupField::Count),
        CmpOp::Ge,
        MergeOperand::Lit(Value::Uint(2)),
        None,
    )];
    let mut m = merger_only(vec![mmodule("m", vec![0], rules)], 0, 1, None);
    let big = Arc::new(Group {
        branch: 0,
        id: 1,
        stime: 0,
        etime: 1,
        members: vec![member(1, 0), member(2, 0)],
        values: vec![],
    });
    let out = run(&mut m, vec![group(0, 0, 0, 1, vec![]), big]);
    assert_eq!(tuple_ids(&out), vec![vec![(0, 1)]]);
}

/// A deterministic pseudo-random record stream for two branches.
fn trace(n: u64) -> Vec<Record> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut t = 1_000_000i64;
    (0..n)
        .map(|id| {
            t += (next() % 400) as i64;
            // Out of order by up to 3 s, as exporters deliver.
            let stime = t - (next() % 3000) as i64;
            let dur = (next() % 2000) as i64;
            let host = ip(10, 0, 0, (next() % 4) as u8);
            let srv = ip(192, 0, 2, (next() % 3) as u8);
            let dport = [80u16, 443, 53][(next() % 3) as usize];
            let outbound = next() % 2 == 0;
            let (s, d) = if outbound { (host, srv) } else { (srv, host) };
            Record::from(RecordFields {
                srcport: Some(if outbound {
                    40_000 + (next() % 5) as u16
                } else {
                    dport
                }),
                dstport: Some(if outbound {
                    dport
                } else {
                    40_000 + (next() % 5) as u16
                }),
                ..flow(id, stime, stime + dur, s, d, 0, 100 + next() % 900).fields()
            })
        })
        .collect()
}

fn two_branch_plan() -> Arc<Plan> {
    let req = filter(cmp(
        fld(Field::DstPort),
        CmpOp::In,
        Operand::Set(set(&[80, 443])),
    ));
    let res = filter(cmp(
        fld(Field::SrcPort),
        CmpOp::In,
        Operand::Set(set(&[80, 443])),
    ));
    let g = |src: Field, dst: Field| {
        grouper(
            vec![module(
                "g",
                vec![
                    grule(src, CmpOp::Eq, src),
                    grule(dst, CmpOp::Eq, dst),
                    grule_d(Field::Etime, CmpOp::Lt, Field::Stime, 1500, Reference::Last),
                ],
            )],
            vec![src, dst],
            vec![agg("bytes", AggFunc::Sum, Field::Bytes)],
        )
    };
    let a = branch("A", Some(req), Some(g(Field::SrcIp, Field::DstIp)), None);
    let b = branch("B", Some(res), Some(g(Field::SrcIp, Field::DstIp)), None);
    let c = branch("C", None, None, None);
    let s0 = GroupField::Slot(0);
    let s1 = GroupField::Slot(1);
    let m1 = mmodule(
        "m1",
        vec![0, 1],
        vec![
            frule(bf(0, s0), CmpOp::Eq, bf(1, s1), None),
            frule(bf(0, s1), CmpOp::Eq, bf(1, s0), None),
            MergeRule::Or(vec![
                allen(1, AllenOp::OverlappedBy, 0, None),
                allen(1, AllenOp::During, 0, None),
                allen(0, AllenOp::Before, 1, Some(2000)),
            ]),
        ],
    );
    // Difference: a DNS flow from the client during the request group.
    let m2 = mmodule(
        "m2",
        vec![0, 2],
        vec![
            frule(
                bf(0, s0),
                CmpOp::Eq,
                bf(2, GroupField::Record(Field::SrcIp)),
                None,
            ),
            frule(
                bf(2, GroupField::Record(Field::DstPort)),
                CmpOp::Eq,
                MergeOperand::Lit(Value::Uint(53)),
                None,
            ),
            allen(2, AllenOp::During, 0, None),
        ],
    );
    merged(vec![a, b, c], vec![m1, m2], 0)
}

fn canonical(ms: &[Match]) -> BTreeSet<Vec<Vec<u64>>> {
    ms.iter()
        .map(|m| {
            m.groups
                .iter()
                .map(|g| g.members.iter().map(|r| r.rec_id()).collect())
                .collect()
        })
        .collect()
}

#[test]
fn streaming_equals_batch_with_large_bounds() {
    let plan = two_branch_plan();
    let recs = trace(600);
    let batch = run_batch(plan.clone(), recs.clone(), None);
    assert!(
        batch.len() >= 3,
        "the trace must produce matches ({})",
        batch.len()
    );
    let cfg = EngineConfig {
        lateness: Some(10_000_000),
        window: Some(100_000_000),
        horizon: Some(100_000_000),
        ..EngineConfig::default()
    };
    let mut e = Engine::new(plan, cfg);
    let mut out = Vec::new();
    for r in recs {
        e.push(Arc::new(r), &mut out);
    }
    e.finish(&mut out);
    assert_eq!(out.len(), batch.len());
    assert_eq!(canonical(&out), canonical(&batch));
    // Every match's records are its groups' members, once each.
    for m in &out {
        let n: usize = m.groups.iter().map(|g| g.members.len()).sum();
        assert!(m.records().len() <= n);
        assert!(m
            .records()
            .windows(2)
            .all(|w| (w[0].1.stime(), w[0].1.rec_id()) <= (w[1].1.stime(), w[1].1.rec_id())));
    }
}

#[test]
fn streaming_with_lateness_covering_disorder_equals_batch() {
    // Disorder is under 3 s and groups stay open until their rdelta bound
    // passes, so lateness 5 s with unbounded window/horizon is exact.
    let plan = two_branch_plan();
    let recs = trace(600);
    let batch = run_batch(plan.clone(), recs.clone(), None);
    let cfg = EngineConfig {
        lateness: Some(5_000),
        window: None,
        horizon: None,
        ..EngineConfig::default()
    };
    let mut e = Engine::new(plan, cfg);
    let mut out = Vec::new();
    for r in recs {
        e.push(Arc::new(r), &mut out);
    }
    // Tuples wait for the difference decision (no horizon: until the end),
    // but groups were closed and joined while streaming.
    assert!(out.is_empty());
    assert!(e.merger_stats().held_tuples > 0);
    e.finish(&mut out);
    assert_eq!(canonical(&out), canonical(&batch));
    assert_eq!(e.branch(0).map(|b| b.stats().late), Some(0));
}

#[test]
fn streaming_with_windows_equals_batch_with_the_same_window() {
    let plan = two_branch_plan();
    let recs = trace(600);
    let batch = run_batch(plan.clone(), recs.clone(), Some(20_000));
    let unwindowed = run_batch(plan.clone(), recs.clone(), None);
    assert!(!batch.is_empty());
    // Windows cut some groups that span a window end.
    assert_ne!(canonical(&batch), canonical(&unwindowed));
    let cfg = EngineConfig {
        lateness: Some(5_000),
        window: Some(20_000),
        horizon: None,
        ..EngineConfig::default()
    };
    let mut e = Engine::new(plan, cfg);
    let mut out = Vec::new();
    for r in recs {
        e.push(Arc::new(r), &mut out);
    }
    e.finish(&mut out);
    assert_eq!(canonical(&out), canonical(&batch));
}

#[test]
fn held_tuple_limit_decides_the_earliest_early() {
    let plan = merged(plain_branches(3), diff_modules(), 0);
    let cfg = EngineConfig {
        max_stored_groups: 3,
        ..EngineConfig::batch(None)
    };
    let mut m = MergerEngine::new(&plan, &cfg);
    let mut out = Vec::new();
    m.push_group(group(0, 0, 0, 100, vec![u(1)]), &mut out);
    m.push_group(group(0, 1, 0, 100, vec![u(1)]), &mut out);
    m.push_group(group(1, 0, 0, 1, vec![u(1)]), &mut out);
    assert!(out.is_empty());
    m.push_group(group(1, 1, 0, 1, vec![u(1)]), &mut out);
    // Four tuples formed, only three may wait: the first was decided at once.
    assert_eq!(tuple_ids(&out), vec![vec![(0, 0), (1, 0)]]);
    assert_eq!(m.stats().held_tuples, 3);
    m.finish(&mut out);
    assert_eq!(out.len(), 4);
}

#[test]
fn engines_can_move_between_threads() {
    fn assert_send<T: Send>() {}
    assert_send::<flowy::engine::BranchEngine>();
    assert_send::<MergerEngine>();
    assert_send::<Engine>();
    assert_send::<Match>();
}

#[test]
fn single_group_records_are_sorted_by_stime_then_rec_id() {
    // A late record joins after later ones: the ungrouper still sorts.
    let plan = single(branch("A", None, None, None));
    let mut m = MergerEngine::new(&plan, &EngineConfig::batch(None));
    let g = Arc::new(Group {
        branch: 0,
        id: 0,
        stime: 5,
        etime: 21,
        members: vec![member(4, 10), member(2, 20), member(3, 5), member(1, 10)],
        values: vec![],
    });
    let out = run(&mut m, vec![g]);
    let ids: Vec<u64> = out[0].records().iter().map(|(_, r)| r.rec_id()).collect();
    assert_eq!(ids, vec![3, 1, 4, 2]);
}

/// A group of `n` members whose second slot holds a set of `ports`
/// elements, so that groups cost different amounts.
fn sized_group(branch: usize, id: u64, stime: i64, etime: i64, key: u64, n: u64) -> Arc<Group> {
    let ports: Vec<u64> = (0..id % 5).collect();
    Arc::new(Group {
        branch,
        id,
        stime,
        etime,
        members: (0..n)
            .map(|i| Arc::new(rec(branch as u64 * 1_000_000 + id * 100 + i, stime, etime)))
            .collect(),
        values: vec![u(key), Some(Value::Set(set(&ports)))],
    })
}

/// Whichever way a stored group or held tuple leaves (decided, expired,
/// dropped for the group limit, at the end), the merger releases what it
/// charged for it: once everything has left, it accounts nothing.
#[test]
fn state_bytes_are_released_as_charged() {
    for max_stored in [4, usize::MAX] {
        let plan = merged(plain_branches(3), diff_modules(), 0);
        let cfg = EngineConfig {
            horizon: Some(50),
            max_stored_groups: max_stored,
            ..EngineConfig::batch(None)
        };
        let mut m = MergerEngine::new(&plan, &cfg);
        let mut out = Vec::new();
        let mut peak = 0;
        for i in 0..90u64 {
            let stime = i as i64 * 7;
            let etime = stime + 20 + (i % 5) as i64 * 10;
            // Each three consecutive groups (A, B, C) share a key.
            let g = sized_group((i % 3) as usize, i, stime, etime, i / 3 % 4, 1 + i % 6);
            m.push_group(g, &mut out);
            peak = peak.max(m.stats().state_bytes);
            if i % 10 == 9 {
                m.advance(stime, &mut out);
            }
        }
        assert!(peak > 0);
        m.finish(&mut out);
        m.advance(i64::MAX, &mut out);
        let s = m.stats();
        assert!(s.matches > 0, "{s:?}");
        assert!(max_stored < usize::MAX || s.extended > 0, "{s:?}");
        assert_eq!((s.stored_groups, s.held_tuples), (0, 0), "{max_stored}");
        assert_eq!(s.state_bytes, 0, "{max_stored}");
    }
}
