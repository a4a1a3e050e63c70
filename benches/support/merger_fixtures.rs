//! The merger benches' plans and groups (`merger` through criterion,
//! `merger_growth` interleaving sizes): a two-branch module joined on an
//! equality key plus an Allen relation (`A.k = B.k`, `A < B delta 200ms`),
//! an Allen-only join (`B d A`) that goes through the time index, and
//! `B d A` on a key with only two values (hash buckets narrowed by time).
//! [`run`] is the batch configuration (every group stays stored to the
//! end); [`run_streaming`] is the daemon's (1 s horizon, W advancing), with
//! the same matches. Included with `#[path]`.

use std::sync::Arc;

use flowy::engine::{EngineConfig, Group, Match, MergerEngine};
use flowy::query::plan::*;
use flowy::value::Value;

/// The three plans, by the names the benches report.
pub fn plans() -> [(&'static str, Arc<Plan>); 3] {
    [
        ("key+before", keyed_plan()),
        ("during", during_plan()),
        ("hotkey+during", hot_key_plan()),
    ]
}

pub fn branch(name: &str) -> BranchPlan {
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

/// `A.slot = B.slot` and an Allen relation.
fn key_plan(slot: usize, allen: AllenRule) -> Arc<Plan> {
    let k = |branch| MergeOperand::Field {
        branch,
        field: GroupField::Slot(slot),
    };
    plan(vec![
        MergeRule::Field(FieldRule {
            lhs: k(0),
            op: CmpOp::Eq,
            rhs: k(1),
            delta: None,
        }),
        MergeRule::Allen(allen),
    ])
}

fn keyed_plan() -> Arc<Plan> {
    key_plan(
        0,
        AllenRule {
            x: 0,
            op: AllenOp::Before,
            y: 1,
            delta: Some(200),
        },
    )
}

/// Few keys, many groups each: the equality alone would leave large
/// buckets; the Allen relation narrows each probe to a time range.
fn hot_key_plan() -> Arc<Plan> {
    key_plan(
        1,
        AllenRule {
            x: 1,
            op: AllenOp::During,
            y: 0,
            delta: None,
        },
    )
}

fn during_plan() -> Arc<Plan> {
    plan(vec![MergeRule::Allen(AllenRule {
        x: 1,
        op: AllenOp::During,
        y: 0,
        delta: None,
    })])
}

/// `n` groups alternating between the branches, 10 ms apart; every key is
/// shared by 4 consecutive groups of each branch.
pub fn groups(n: usize) -> Vec<Arc<Group>> {
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

/// Matches are consumed as they come, as both callers of the engine do (the
/// daemon's output task, `flowy query` through `run_batch_with`): the bench
/// counts and drops them instead of holding a million.
fn consume(out: &mut Vec<Match>) -> usize {
    let n = out.len();
    out.clear();
    n
}

pub fn run(plan: &Arc<Plan>, gs: &[Arc<Group>]) -> usize {
    let mut m = MergerEngine::new(plan, &EngineConfig::batch(None));
    let mut out: Vec<Match> = Vec::new();
    let mut n = 0;
    for g in gs {
        m.push_group(g.clone(), &mut out);
        n += consume(&mut out);
    }
    m.finish(&mut out);
    n + consume(&mut out)
}

/// The daemon's way: a 1 s horizon and W advanced every 256 groups to
/// 100 ms behind the latest group's start, so stored groups expire and the
/// store stays small whatever the stream's length.
pub fn run_streaming(plan: &Arc<Plan>, gs: &[Arc<Group>]) -> usize {
    let cfg = EngineConfig {
        lateness: Some(100),
        horizon: Some(1_000),
        ..EngineConfig::default()
    };
    let mut m = MergerEngine::new(plan, &cfg);
    let mut out: Vec<Match> = Vec::new();
    let mut n = 0;
    for (i, g) in gs.iter().enumerate() {
        let stime = g.stime;
        m.push_group(g.clone(), &mut out);
        if i % 256 == 255 {
            m.advance(stime - 100, &mut out);
        }
        n += consume(&mut out);
    }
    m.finish(&mut out);
    n + consume(&mut out)
}
