//! Property: the indexed grouper with early close forms exactly the groups
//! of a naive grouper that scans every open group of the window oldest
//! first (SPEC §2.4, restated independently here).

mod engine_support;

use engine_support::*;
use std::sync::Arc;

use flowy::engine::{run_batch, Engine, EngineConfig};
use flowy::query::plan::*;
use flowy::record::{Field, Record, RecordFields};
use proptest::prelude::*;

const FIELDS: [Field; 4] = [Field::SrcPort, Field::Bytes, Field::Stime, Field::Etime];
/// The ordering operators: every one but `in`, which grouper rules lack.
const OPS: &[CmpOp] = CmpOp::ALL.split_at(6).0;

fn field(r: &Record, f: Field) -> Option<i128> {
    match f {
        Field::SrcPort => r.srcport().map(i128::from),
        Field::Bytes => r.bytes().map(i128::from),
        Field::Stime => Some(i128::from(r.stime())),
        Field::Etime => Some(i128::from(r.etime())),
        _ => None,
    }
}

fn ref_rule(rule: &GroupRule, first: &Record, last: &Record, r: &Record) -> bool {
    let reference = match rule.delta {
        Some(Delta {
            reference: Reference::Last,
            ..
        }) => last,
        _ => first,
    };
    let (Some(x), Some(y)) = (field(reference, rule.left), field(r, rule.right)) else {
        return false;
    };
    match rule.delta {
        None => match rule.op {
            CmpOp::Eq => x == y,
            CmpOp::Ne => x != y,
            CmpOp::Lt => x < y,
            CmpOp::Le => x <= y,
            CmpOp::Gt => x > y,
            CmpOp::Ge => x >= y,
            CmpOp::In => false,
        },
        Some(d) => {
            let (diff, d) = (y - x, i128::from(d.amount));
            match rule.op {
                CmpOp::Lt => diff < d,
                CmpOp::Le => diff <= d,
                CmpOp::Gt => -diff < d,
                CmpOp::Ge => -diff <= d,
                CmpOp::Eq => diff.abs() <= d,
                CmpOp::Ne => diff.abs() > d,
                CmpOp::In => false,
            }
        }
    }
}

fn reference(g: &GrouperPlan, window: Option<i64>, recs: &[Record]) -> Vec<Vec<u64>> {
    let mut sorted: Vec<&Record> = recs.iter().collect();
    sorted.sort_by_key(|r| (r.stime(), r.rec_id()));
    let win = |t: i64| window.map_or(0, |w| t.div_euclid(w));
    let mut groups: Vec<Vec<&Record>> = Vec::new();
    for r in sorted {
        let found = if g.modules.is_empty() {
            None
        } else {
            groups.iter().position(|members| {
                let (first, last) = (members[0], members[members.len() - 1]);
                win(first.stime()) == win(r.stime())
                    && g.modules
                        .iter()
                        .any(|m| m.rules.iter().all(|rule| ref_rule(rule, first, last, r)))
            })
        };
        match found {
            Some(i) => groups[i].push(r),
            None => groups.push(vec![r]),
        }
    }
    let mut out: Vec<Vec<u64>> = groups
        .iter()
        .map(|m| m.iter().map(|r| r.rec_id()).collect())
        .collect();
    out.sort();
    out
}

fn rule() -> impl Strategy<Value = GroupRule> {
    (0usize..4, 0usize..6, 0usize..4, 0u8..3, 0u64..12).prop_map(|(l, op, r, d, amount)| {
        GroupRule {
            left: FIELDS[l],
            op: OPS[op],
            right: FIELDS[r],
            delta: match d {
                0 => None,
                1 => Some(Delta {
                    amount,
                    reference: Reference::First,
                }),
                _ => Some(Delta {
                    amount,
                    reference: Reference::Last,
                }),
            },
        }
    })
}

/// Key rules (`x = x`) are frequent in real groupers: bias towards them.
fn module_rules() -> impl Strategy<Value = Vec<GroupRule>> {
    (
        prop::collection::vec(rule(), 0..3),
        prop::option::of(0usize..2),
    )
        .prop_map(|(mut rules, key)| {
            if let Some(k) = key {
                let f = [Field::SrcPort, Field::Bytes][k];
                rules.insert(0, grule(f, CmpOp::Eq, f));
            }
            rules
        })
}

fn record() -> impl Strategy<Value = (i64, i64, Option<u16>, u64)> {
    (
        0i64..120,
        0i64..15,
        prop::option::weighted(0.9, 0u16..3),
        0u64..6,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn indexed_grouper_equals_naive_grouper(
        modules in prop::collection::vec(module_rules(), 0..3),
        raw in prop::collection::vec(record(), 0..30),
        window in prop::option::of(20i64..60),
    ) {
        let modules: Vec<ModulePlan> = modules
            .into_iter()
            .enumerate()
            .map(|(i, rules)| module(&format!("m{i}"), rules))
            .collect();
        let g = grouper(modules, vec![], vec![]);
        let recs: Vec<Record> = raw
            .iter()
            .enumerate()
            .map(|(i, (stime, dur, port, bytes))| Record::from(RecordFields {
                srcport: *port,
                bytes: Some(*bytes),
                ..rec(i as u64, *stime, stime + dur).fields()
            }))
            .collect();
        let expected = reference(&g, window, &recs);
        let plan = single(branch("A", None, Some(g), None));
        let mut got: Vec<Vec<u64>> = run_batch(plan, recs, window)
            .iter()
            .map(|m| m.groups[0].members.iter().map(|r| r.rec_id()).collect())
            .collect();
        got.sort();
        prop_assert_eq!(got, expected);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Streaming with lateness covering the disorder gives the batch groups.
    #[test]
    fn streaming_grouper_equals_batch(
        modules in prop::collection::vec(module_rules(), 1..3),
        raw in prop::collection::vec((record(), 0i64..10), 0..30),
        window in prop::option::of(20i64..60),
        lateness in 10i64..40,
    ) {
        let modules: Vec<ModulePlan> = modules
            .into_iter()
            .enumerate()
            .map(|(i, rules)| module(&format!("m{i}"), rules))
            .collect();
        let plan = single(branch("A", None, Some(grouper(modules, vec![], vec![])), None));
        // Arrival order: stime order disturbed by less than the lateness.
        let mut recs: Vec<(i64, Record)> = raw
            .iter()
            .enumerate()
            .map(|(i, ((stime, dur, port, bytes), jitter))| {
                let r = Record::from(RecordFields {
                    srcport: *port,
                    bytes: Some(*bytes),
                    ..rec(i as u64, *stime, stime + dur).fields()
                });
                (stime + jitter, r)
            })
            .collect();
        recs.sort_by_key(|(arrival, r)| (*arrival, r.rec_id()));
        let recs: Vec<Record> = recs.into_iter().map(|(_, r)| r).collect();
        let groups = |ms: &[flowy::engine::Match]| {
            let mut v: Vec<Vec<u64>> = ms
                .iter()
                .map(|m| m.groups[0].members.iter().map(|r| r.rec_id()).collect())
                .collect();
            v.sort();
            v
        };
        let batch = run_batch(plan.clone(), recs.clone(), window);
        let cfg = EngineConfig {
            lateness: Some(lateness),
            window,
            horizon: None,
            ..EngineConfig::default()
        };
        let mut e = Engine::new(plan, cfg);
        let mut out = Vec::new();
        for r in recs {
            e.push(Arc::new(r), &mut out);
        }
        e.finish(&mut out);
        prop_assert_eq!(e.branch(0).map(|b| b.stats().late), Some(0));
        prop_assert_eq!(groups(&out), groups(&batch));
    }
}
