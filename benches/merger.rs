//! The merger alone (push_group + finish) on synthetic groups (plans and
//! groups in `support/merger_fixtures.rs`), at 10k, 100k and 1M groups.
//! Growth from 10k to 1M groups should stay near linear. `merger` runs
//! them in batch configuration (every group stays stored to the end);
//! `merger_streaming` as the daemon does (1 s horizon, W advancing), with
//! the same matches. A last group measures one branch (filter → reorder →
//! grouper) on a record stream. `merger_growth` measures the 100k → 1M
//! growth itself, with the sizes interleaved.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::net::{IpAddr, Ipv4Addr};

use flowy::engine::{Engine, EngineConfig, Group};
use flowy::query::plan::*;
use flowy::record::{Field, Record, RecordFields};
use flowy::value::Value;

#[path = "support/merger_fixtures.rs"]
mod fixtures;
use fixtures::{branch, groups, plans, run, run_streaming};

type Runner = fn(&Arc<Plan>, &[Arc<Group>]) -> usize;

fn bench(c: &mut Criterion) {
    merger_group(c, "merger", run, false);
    // The same groups and plans through a streaming merger (horizon,
    // advancing W): the same matches as the batch run, from a bounded store.
    merger_group(c, "merger_streaming", run_streaming, true);
}

/// Every plan at 10k, 100k and 1M groups through `runner`; with
/// `check_against_batch` it must first find the batch run's matches.
fn merger_group(c: &mut Criterion, label: &str, runner: Runner, check_against_batch: bool) {
    let mut group = c.benchmark_group(label);
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for (name, p) in plans() {
        for n in [10_000usize, 100_000, 1_000_000] {
            let gs = groups(n);
            if check_against_batch {
                assert_eq!(
                    runner(&p, &gs),
                    run(&p, &gs),
                    "{label}/{name}/{n}: matches differ"
                );
            }
            group.throughput(Throughput::Elements(n as u64));
            group.bench_with_input(BenchmarkId::new(name, n), &gs, |b, gs| {
                b.iter(|| black_box(runner(&p, gs)))
            });
        }
    }
    group.finish();
}

/// Records for the branch pipeline: 64 hosts talking to 8 servers, in
/// stime order with a little disorder.
fn records(n: usize) -> Vec<Arc<Record>> {
    (0..n)
        .map(|i| {
            let stime = 1_000_000 + i as i64 * 3 - (i as i64 * 7919 % 5);
            Arc::new(Record::from(RecordFields {
                rec_id: i as u64,
                srcip: Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, (i % 64) as u8))),
                dstip: Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, (i % 8) as u8))),
                srcport: Some(40_000 + (i % 1000) as u16),
                dstport: Some(if i % 3 == 0 { 53 } else { 443 }),
                prot: Some(6),
                bytes: Some(100 + (i % 1400) as u64),
                packets: Some(1),
                stime,
                etime: stime + (i % 50) as i64,
                ..RecordFields::default()
            }))
        })
        .collect()
}

/// filter (dstport = 443) → grouper (srcip = srcip, dstip = dstip,
/// etime < stime rdelta 1s; sum, union) → no group filter.
fn branch_plan() -> Arc<Plan> {
    let key = |f| GroupRule {
        left: f,
        op: CmpOp::Eq,
        right: f,
        delta: None,
    };
    let grouper = GrouperPlan {
        name: "g".into(),
        modules: vec![ModulePlan {
            name: "m".into(),
            rules: vec![
                key(Field::SrcIp),
                key(Field::DstIp),
                GroupRule {
                    left: Field::Etime,
                    op: CmpOp::Lt,
                    right: Field::Stime,
                    delta: Some(Delta {
                        amount: 1000,
                        reference: Reference::Last,
                    }),
                },
            ],
        }],
        keys: vec![Field::SrcIp, Field::DstIp],
        aggregates: vec![
            AggregatePlan {
                name: "bytes".into(),
                func: AggFunc::Sum,
                field: Field::Bytes,
                module: None,
            },
            AggregatePlan {
                name: "ports".into(),
                func: AggFunc::Union,
                field: Field::SrcPort,
                module: None,
            },
        ],
    };
    let filter = FilterPlan {
        name: "f".into(),
        rule: Rule::Cmp(Cmp {
            lhs: Operand::Field(Field::DstPort),
            op: CmpOp::Eq,
            rhs: Operand::Lit(Value::Uint(443)),
        }),
    };
    Arc::new(Plan {
        name: "bench".into(),
        branches: vec![BranchPlan {
            filter: Some(Arc::new(filter)),
            grouper: Some(Arc::new(grouper)),
            ..branch("A")
        }],
        merger: None,
    })
}

fn bench_branch(c: &mut Criterion) {
    let mut group = c.benchmark_group("branch");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    let plan = branch_plan();
    for n in [100_000usize, 1_000_000] {
        let recs = records(n);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("filter+grouper", n), &recs, |b, recs| {
            b.iter(|| {
                let cfg = EngineConfig {
                    lateness: Some(10),
                    window: Some(300_000),
                    horizon: Some(300_000),
                    ..EngineConfig::default()
                };
                let mut e = Engine::new(plan.clone(), cfg);
                let mut out = Vec::new();
                for r in recs {
                    e.push(r.clone(), &mut out);
                }
                e.finish(&mut out);
                black_box(out.len())
            })
        });
    }
    group.finish();
}

#[path = "support/allocator.rs"]
mod allocator;

criterion_group! {
    name = benches;
    config = allocator::as_the_binary();
    targets = bench, bench_branch
}
criterion_main!(benches);
