//! The merger alone (push_group + finish) on synthetic groups: a
//! two-branch module joined on an equality key plus an Allen relation
//! (`A.k = B.k`, `A < B delta 200ms`), an Allen-only join (`B d A`)
//! that goes through the time index, and `B d A` on a key with only two
//! values (hash buckets narrowed by time). Growth from 10k to 1M groups should
//! stay near linear.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use flowy::engine::{EngineConfig, Group, Match, MergerEngine};
use flowy::query::plan::*;
use flowy::value::Value;

fn branch(name: &str) -> BranchPlan {
    BranchPlan {
        name: name.into(),
        filter: None,
        grouper: None,
        groupfilter: None,
        schema: Arc::new(GroupSchema::default()),
    }
}

fn plan(rules: Vec<MergeRule>) -> Arc<Plan> {
    Arc::new(Plan {
        name: "bench".into(),
        branches: vec![branch("A"), branch("B")],
        merger: Some(MergerPlan {
            name: "m".into(),
            modules: vec![MergeModule {
                name: "m".into(),
                branches: vec![0, 1],
                rules,
            }],
            export: 0,
        }),
    })
}

fn keyed_plan() -> Arc<Plan> {
    let k = |branch| MergeOperand::Field {
        branch,
        field: GroupField::Slot(0),
    };
    plan(vec![
        MergeRule::Field(FieldRule {
            lhs: k(0),
            op: CmpOp::Eq,
            rhs: k(1),
            delta: None,
        }),
        MergeRule::Allen(AllenRule {
            x: 0,
            op: AllenOp::Before,
            y: 1,
            delta: 200,
        }),
    ])
}

/// Few keys, many groups each: the equality alone would leave large
/// buckets; the Allen relation narrows each probe to a time range.
fn hot_key_plan() -> Arc<Plan> {
    let k = |branch| MergeOperand::Field {
        branch,
        field: GroupField::Slot(1),
    };
    plan(vec![
        MergeRule::Field(FieldRule {
            lhs: k(0),
            op: CmpOp::Eq,
            rhs: k(1),
            delta: None,
        }),
        MergeRule::Allen(AllenRule {
            x: 1,
            op: AllenOp::During,
            y: 0,
            delta: 0,
        }),
    ])
}

fn during_plan() -> Arc<Plan> {
    plan(vec![MergeRule::Allen(AllenRule {
        x: 1,
        op: AllenOp::During,
        y: 0,
        delta: 0,
    })])
}

/// `n` groups alternating between the branches, 10 ms apart; every key is
/// shared by 4 consecutive groups of each branch.
fn groups(n: usize) -> Vec<Arc<Group>> {
    (0..n)
        .map(|i| {
            let branch = i % 2;
            let stime = i as i64 * 10;
            let dur = if branch == 0 { 60 } else { 5 + (i as i64 % 7) };
            Arc::new(Group {
                branch,
                id: i as u64,
                stime,
                etime: stime + dur,
                members: Vec::new(),
                values: vec![
                    Some(Value::Uint((i / 8) as u64)),
                    Some(Value::Uint((i % 4 / 2) as u64)),
                ],
            })
        })
        .collect()
}

fn run(plan: &Arc<Plan>, gs: &[Arc<Group>]) -> usize {
    let mut m = MergerEngine::new(plan, &EngineConfig::batch(None));
    let mut out: Vec<Match> = Vec::new();
    for g in gs {
        m.push_group(g.clone(), &mut out);
    }
    m.finish(&mut out);
    out.len()
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("merger");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    let plans = [
        ("key+before", keyed_plan()),
        ("during", during_plan()),
        ("hotkey+during", hot_key_plan()),
    ];
    for (name, p) in plans {
        for n in [10_000usize, 100_000, 1_000_000] {
            let gs = groups(n);
            group.throughput(Throughput::Elements(n as u64));
            group.bench_with_input(BenchmarkId::new(name, n), &gs, |b, gs| {
                b.iter(|| black_box(run(&p, gs)))
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
