//! Property: the indexed merger finds exactly the tuples a straightforward
//! nested-loop evaluation of the same merger plan finds, set difference
//! included. The reference evaluator here is written independently of the
//! engine's join and rule code (SPEC §2.5 restated).

mod engine_support;

use std::collections::BTreeSet;
use std::sync::Arc;

use engine_support::*;
use flowy::engine::{EngineConfig, Group, MergerEngine};
use flowy::query::plan::*;
use flowy::value::Value;
use proptest::prelude::*;

const ALL: [AllenOp; 13] = [
    AllenOp::Before,
    AllenOp::After,
    AllenOp::Meets,
    AllenOp::MetBy,
    AllenOp::Overlaps,
    AllenOp::OverlappedBy,
    AllenOp::Starts,
    AllenOp::StartedBy,
    AllenOp::During,
    AllenOp::Contains,
    AllenOp::Finishes,
    AllenOp::FinishedBy,
    AllenOp::Equals,
];

// ---------------------------------------------------------------- reference

/// SPEC §2.5: D is the delta, 0 when absent; `<`/`>` bound their gap by D
/// only when a delta is given.
fn ref_allen(op: AllenOp, x: &Group, y: &Group, delta: Option<u64>) -> bool {
    let (xs, xe, ys, ye) = (x.stime, x.etime, y.stime, y.etime);
    let d = delta.unwrap_or(0) as i64;
    let close = |a: i64, b: i64| (a - b).abs() <= d;
    let gap_bounded = |gap: i64| match delta {
        None => true,
        Some(d) => gap <= d as i64,
    };
    match op {
        AllenOp::Before => xe < ys && gap_bounded(ys - xe),
        AllenOp::After => ye < xs && gap_bounded(xs - ye),
        AllenOp::Meets => close(ys, xe),
        AllenOp::MetBy => close(xs, ye),
        AllenOp::Overlaps => xs < ys && ys < xe && xe < ye,
        AllenOp::OverlappedBy => ys < xs && xs < ye && ye < xe,
        AllenOp::Starts => close(xs, ys) && xe < ye,
        AllenOp::StartedBy => close(xs, ys) && xe > ye,
        AllenOp::During => ys < xs && xe < ye,
        AllenOp::Contains => xs < ys && ye < xe,
        AllenOp::Finishes => close(xe, ye) && xs > ys,
        AllenOp::FinishedBy => close(xe, ye) && xs < ys,
        AllenOp::Equals => close(xs, ys) && close(xe, ye),
    }
}

fn slot(g: &Group, f: GroupField) -> Option<Value> {
    match f {
        GroupField::Slot(i) => g.values.get(i).cloned().flatten(),
        _ => None,
    }
}

fn ref_operand(op: &MergeOperand, bind: &[Option<&Group>]) -> Option<Value> {
    match op {
        MergeOperand::Field { branch, field } => slot(bind[*branch]?, *field),
        MergeOperand::Lit(v) => Some(v.clone()),
        _ => None,
    }
}

fn num(v: &Value) -> Option<i64> {
    match v {
        Value::Uint(u) => Some(*u as i64),
        _ => None,
    }
}

fn ref_field(f: &FieldRule, bind: &[Option<&Group>]) -> bool {
    let (Some(l), Some(r)) = (ref_operand(&f.lhs, bind), ref_operand(&f.rhs, bind)) else {
        return false;
    };
    if let Some(d) = f.delta {
        let (Some(a), Some(b)) = (num(&l), num(&r)) else {
            return false;
        };
        let diff = b - a;
        let d = d as i64;
        return match f.op {
            CmpOp::Lt => diff < d,
            CmpOp::Eq => diff.abs() <= d,
            _ => false,
        };
    }
    match f.op {
        CmpOp::Eq => match (&l, &r) {
            (Value::Set(a), Value::Set(b)) => a == b,
            (Value::Uint(a), Value::Uint(b)) => a == b,
            _ => false,
        },
        CmpOp::Lt => matches!((num(&l), num(&r)), (Some(a), Some(b)) if a < b),
        CmpOp::In => matches!(&r, Value::Set(s) if s.contains(&l)),
        _ => false,
    }
}

fn ref_rule(r: &MergeRule, bind: &[Option<&Group>]) -> bool {
    match r {
        MergeRule::Allen(a) => match (bind[a.x], bind[a.y]) {
            (Some(x), Some(y)) => ref_allen(a.op, x, y, a.delta),
            _ => false,
        },
        MergeRule::Field(f) => ref_field(f, bind),
        MergeRule::And(rs) => rs.iter().all(|r| ref_rule(r, bind)),
        MergeRule::Or(rs) => rs.iter().any(|r| ref_rule(r, bind)),
        MergeRule::Not(r) => !ref_rule(r, bind),
    }
}

/// Every assignment of groups to `branches` extending `bind`; `f` sees each.
fn each_assignment<'a>(
    branches: &[usize],
    groups: &'a [Vec<Arc<Group>>],
    bind: &mut Vec<Option<&'a Group>>,
    f: &mut dyn FnMut(&[Option<&'a Group>]),
) {
    let Some((&b, rest)) = branches.split_first() else {
        f(bind);
        return;
    };
    for g in &groups[b] {
        bind[b] = Some(g.as_ref());
        each_assignment(rest, groups, bind, f);
    }
    bind[b] = None;
}

fn reference(plan: &MergerPlan, groups: &[Vec<Arc<Group>>]) -> Vec<Vec<(usize, u64)>> {
    let export = &plan.modules[plan.export];
    let mut out = Vec::new();
    let mut bind = vec![None; groups.len()];
    each_assignment(&export.branches, groups, &mut bind, &mut |b| {
        if !export.rules.iter().all(|r| ref_rule(r, b)) {
            return;
        }
        for (i, m) in plan.modules.iter().enumerate() {
            if i == plan.export || !m.branches.iter().any(|x| export.branches.contains(x)) {
                continue;
            }
            let others: Vec<usize> = m
                .branches
                .iter()
                .copied()
                .filter(|x| !export.branches.contains(x))
                .collect();
            let mut inner = b.to_vec();
            let mut extended = false;
            each_assignment(&others, groups, &mut inner, &mut |full| {
                extended |= m.rules.iter().all(|r| ref_rule(r, full));
            });
            if extended {
                return;
            }
        }
        out.push(
            export
                .branches
                .iter()
                .map(|x| (*x, b[*x].map_or(u64::MAX, |g| g.id)))
                .collect(),
        );
    });
    out.sort();
    out
}

// ---------------------------------------------------------------- generators

#[derive(Clone, Debug)]
struct RawRule {
    kind: u8,
    a: usize,
    b: usize,
    op: usize,
    delta: u64,
    /// Allen delta: absent, zero (before/after never hold) or positive.
    adelta: Option<u64>,
    wrap: u8,
}

fn raw_rule() -> impl Strategy<Value = RawRule> {
    let adelta = prop_oneof![Just(None), Just(Some(0)), (1u64..25).prop_map(Some)];
    (
        0u8..9,
        0usize..3,
        0usize..3,
        0usize..13,
        0u64..4,
        adelta,
        0u8..8,
    )
        .prop_map(|(kind, a, b, op, delta, adelta, wrap)| RawRule {
            kind,
            a,
            b,
            op,
            delta,
            adelta,
            wrap,
        })
}

fn make_rule(r: &RawRule, branches: &[usize]) -> MergeRule {
    let n = branches.len();
    let x = branches[r.a % n];
    let mut y = branches[r.b % n];
    if x == y && n > 1 {
        y = branches[(r.a + 1) % n];
    }
    let s = GroupField::Slot;
    let atom = match r.kind {
        0..=2 => allen(x, ALL[r.op], y, r.adelta),
        3 => frule(bf(x, s(0)), CmpOp::Eq, bf(y, s(0)), None),
        4 => frule(
            bf(x, s(2)),
            CmpOp::Lt,
            bf(y, s(2)),
            (r.delta > 0).then_some(r.delta * 3),
        ),
        5 => frule(bf(x, s(2)), CmpOp::Eq, bf(y, s(2)), Some(r.delta * 2)),
        6 => frule(bf(x, s(1)), CmpOp::Eq, bf(y, s(1)), None),
        7 => frule(bf(x, s(0)), CmpOp::In, bf(y, s(1)), None),
        _ => frule(
            bf(x, s(0)),
            CmpOp::Eq,
            MergeOperand::Lit(Value::Uint(r.delta % 3)),
            None,
        ),
    };
    match r.wrap {
        0 => MergeRule::Not(Box::new(atom)),
        1 => MergeRule::Or(vec![atom, allen(x, AllenOp::Equals, y, Some(1))]),
        2 => MergeRule::And(vec![atom, allen(y, ALL[(r.op + 5) % 13], x, None)]),
        3 => MergeRule::Or(vec![
            atom,
            allen(x, ALL[(r.op + 3) % 13], y, r.adelta),
            allen(y, ALL[(r.op + 7) % 13], x, None),
        ]),
        _ => atom,
    }
}

fn branches_of(mask: u8, n: usize) -> Vec<usize> {
    let v: Vec<usize> = (0..n).filter(|i| mask & (1 << i) != 0).collect();
    if v.is_empty() {
        vec![0]
    } else {
        v
    }
}

#[derive(Clone, Debug)]
struct RawGroup {
    stime: i64,
    dur: i64,
    k: Option<u64>,
    set: u8,
    n: u64,
}

fn raw_group() -> impl Strategy<Value = RawGroup> {
    (
        0i64..30,
        prop_oneof![Just(0i64), 0i64..8],
        prop::option::weighted(0.85, 0u64..3),
        0u8..8,
        0u64..12,
    )
        .prop_map(|(stime, dur, k, set, n)| RawGroup {
            stime,
            dur,
            k,
            set,
            n,
        })
}

fn build_group(branch: usize, id: u64, r: &RawGroup) -> Arc<Group> {
    let set: std::collections::BTreeSet<Value> = (0..3u64)
        .filter(|i| r.set & (1 << i) != 0)
        .map(Value::Uint)
        .collect();
    group(
        branch,
        id,
        r.stime,
        r.stime + r.dur,
        vec![
            r.k.map(Value::Uint),
            Some(Value::Set(set.into_iter().collect())),
            Some(Value::Uint(r.n)),
        ],
    )
}

#[derive(Clone, Debug)]
struct Case {
    n: usize,
    export_mask: u8,
    export_rules: Vec<RawRule>,
    diffs: Vec<(u8, Vec<RawRule>)>,
    groups: Vec<Vec<RawGroup>>,
    order_keys: Vec<u32>,
}

fn case() -> impl Strategy<Value = Case> {
    (2usize..=3).prop_flat_map(|n| {
        (
            Just(n),
            1u8..(1 << n),
            prop::collection::vec(raw_rule(), 1..4),
            prop::collection::vec(
                (1u8..(1 << n), prop::collection::vec(raw_rule(), 1..3)),
                0..3,
            ),
            prop::collection::vec(prop::collection::vec(raw_group(), 0..7), n),
            prop::collection::vec(any::<u32>(), 24),
        )
            .prop_map(
                |(n, export_mask, export_rules, diffs, groups, order_keys)| Case {
                    n,
                    export_mask,
                    export_rules,
                    diffs,
                    groups,
                    order_keys,
                },
            )
    })
}

fn merger_plan(c: &Case) -> MergerPlan {
    let eb = branches_of(c.export_mask, c.n);
    let mut modules = vec![mmodule(
        "export",
        eb.clone(),
        c.export_rules.iter().map(|r| make_rule(r, &eb)).collect(),
    )];
    for (i, (mask, rules)) in c.diffs.iter().enumerate() {
        let b = branches_of(*mask, c.n);
        modules.push(mmodule(
            &format!("d{i}"),
            b.clone(),
            rules.iter().map(|r| make_rule(r, &b)).collect(),
        ));
    }
    MergerPlan {
        name: "m".into(),
        modules,
        export: 0,
    }
}

/// Cases whose export module joins only through an `OR` of Allen relations
/// (the time-range union path).
fn or_case() -> impl Strategy<Value = Case> {
    case().prop_map(|mut c| {
        c.export_mask = (1 << c.n) - 1;
        for r in &mut c.export_rules {
            r.kind %= 3;
            r.wrap = 3;
        }
        c
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn or_of_allen_relations_equals_nested_loop(c in or_case()) {
        check_or(&c)?;
    }

    #[test]
    fn indexed_merger_equals_nested_loop(c in case()) {
        check(&c, Arrival::Shuffled)?;
    }

    /// Groups arriving in `stime` order, the merger told before each one
    /// that nothing earlier can still come (the driver's frontier): the
    /// stored groups its relations let it drop change no tuple.
    #[test]
    fn dropping_groups_the_relations_rule_out_loses_no_tuple(c in case()) {
        check(&c, Arrival::ByStartWithFrontier)?;
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Arrival {
    Shuffled,
    ByStartWithFrontier,
}

fn check_or(c: &Case) -> Result<(), TestCaseError> {
    check(c, Arrival::Shuffled)?;
    check(c, Arrival::ByStartWithFrontier)
}

fn check(c: &Case, arrival: Arrival) -> Result<(), TestCaseError> {
    {
        let mp = merger_plan(c);
        let groups: Vec<Vec<Arc<Group>>> = c
            .groups
            .iter()
            .enumerate()
            .map(|(b, gs)| {
                gs.iter()
                    .enumerate()
                    .map(|(i, r)| build_group(b, i as u64, r))
                    .collect()
            })
            .collect();
        let expected = reference(&mp, &groups);

        let branches = (0..c.n)
            .map(|i| branch(&format!("B{i}"), None, None, None))
            .collect();
        let plan = Arc::new(Plan {
            name: "q".into(),
            branches,
            merger: Some(mp),
        });
        let mut m = MergerEngine::new(&plan, &EngineConfig::batch(None));
        // Arrival order: a random interleaving of all groups.
        let mut all: Vec<Arc<Group>> = groups.iter().flatten().cloned().collect();
        let mut keyed: Vec<(u32, usize)> = (0..all.len())
            .map(|i| (c.order_keys[i % 24] ^ (i as u32), i))
            .collect();
        keyed.sort();
        let mut ordered: Vec<Arc<Group>> = keyed.iter().map(|(_, i)| all[*i].clone()).collect();
        all.clear();
        if arrival == Arrival::ByStartWithFrontier {
            // Stable: equal starts keep their shuffled order.
            ordered.sort_by_key(|g| g.stime);
        }
        let mut out = Vec::new();
        for g in ordered {
            if arrival == Arrival::ByStartWithFrontier {
                m.expire_unreachable(g.stime);
            }
            m.push_group(g, &mut out);
        }
        m.finish(&mut out);
        let got: Vec<Vec<(usize, u64)>> = {
            let mut v: Vec<Vec<(usize, u64)>> = out
                .iter()
                .map(|t| t.groups.iter().map(|g| (g.branch, g.id)).collect())
                .collect();
            v.sort();
            v
        };
        // No tuple twice, and exactly the reference set.
        let uniq: BTreeSet<_> = got.iter().cloned().collect();
        prop_assert_eq!(uniq.len(), got.len());
        prop_assert_eq!(got, expected);
    }
    Ok(())
}
