//! Hand-built plans, schemas and records for the engine tests (no compiler
//! is involved: the engine only accepts `Plan`s).
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use flowy::engine::{Group, Match};
use flowy::query::plan::*;
use flowy::record::{Field, FieldType, Record, RecordFields};
use flowy::value::{Value, ValueSet};

pub fn ip(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

/// A record with id and times; other fields set by the caller.
pub fn rec(id: u64, stime: i64, etime: i64) -> Record {
    Record::from(RecordFields {
        rec_id: id,
        stime,
        etime,
        ..RecordFields::default()
    })
}

/// A TCP-ish record with addresses, ports and bytes.
pub fn flow(
    id: u64,
    stime: i64,
    etime: i64,
    src: IpAddr,
    dst: IpAddr,
    dport: u16,
    bytes: u64,
) -> Record {
    Record::from(RecordFields {
        srcip: Some(src),
        dstip: Some(dst),
        srcport: Some(1000 + id as u16),
        dstport: Some(dport),
        prot: Some(6),
        bytes: Some(bytes),
        packets: Some(1),
        ..rec(id, stime, etime).fields()
    })
}

pub fn cmp<F>(lhs: Operand<F>, op: CmpOp, rhs: Operand<F>) -> Rule<F> {
    Rule::Cmp(Cmp { lhs, op, rhs })
}

pub fn fld(f: Field) -> Operand<Field> {
    Operand::Field(f)
}

pub fn lit(v: u64) -> Value {
    Value::Uint(v)
}

pub fn set(vals: &[u64]) -> ValueSet {
    vals.iter().map(|v| Value::Uint(*v)).collect()
}

pub fn filter(rule: Rule<Field>) -> Arc<FilterPlan> {
    Arc::new(FilterPlan {
        name: "f".into(),
        rule,
    })
}

pub fn grule(left: Field, op: CmpOp, right: Field) -> GroupRule {
    GroupRule {
        left,
        op,
        right,
        delta: None,
    }
}

pub fn grule_d(
    left: Field,
    op: CmpOp,
    right: Field,
    amount: u64,
    reference: Reference,
) -> GroupRule {
    GroupRule {
        left,
        op,
        right,
        delta: Some(Delta { amount, reference }),
    }
}

pub fn module(name: &str, rules: Vec<GroupRule>) -> ModulePlan {
    ModulePlan {
        name: name.into(),
        rules,
    }
}

pub fn agg(name: &str, func: AggFunc, field: Field) -> AggregatePlan {
    AggregatePlan {
        name: name.into(),
        func,
        field,
        module: None,
    }
}

pub fn grouper(
    modules: Vec<ModulePlan>,
    keys: Vec<Field>,
    aggregates: Vec<AggregatePlan>,
) -> Arc<GrouperPlan> {
    Arc::new(GrouperPlan {
        name: "g".into(),
        modules,
        keys,
        aggregates,
    })
}

/// The group schema SPEC §1.2 derives from a grouper (or its absence).
pub fn schema_for(g: Option<&GrouperPlan>) -> Arc<GroupSchema> {
    let mut names = vec![
        ("stime".to_string(), GroupField::Stime, FieldType::Time),
        ("etime".to_string(), GroupField::Etime, FieldType::Time),
        (
            "duration".to_string(),
            GroupField::Duration,
            FieldType::Duration,
        ),
        ("count".to_string(), GroupField::Count, FieldType::Uint),
    ];
    let mut slot_names = Vec::new();
    let singleton = g.is_none_or(|g| g.modules.is_empty());
    if let Some(g) = g {
        for k in &g.keys {
            names.push((
                k.name().to_string(),
                GroupField::Slot(slot_names.len()),
                k.field_type(),
            ));
            slot_names.push(k.name().to_string());
        }
        for a in &g.aggregates {
            names.push((
                a.name.clone(),
                GroupField::Slot(slot_names.len()),
                a.field.field_type(),
            ));
            slot_names.push(a.name.clone());
        }
    }
    Arc::new(GroupSchema {
        names,
        slots: slot_names.len(),
        slot_names,
        singleton,
    })
}

pub fn branch(
    name: &str,
    f: Option<Arc<FilterPlan>>,
    g: Option<Arc<GrouperPlan>>,
    gf: Option<Rule<GroupField>>,
) -> BranchPlan {
    BranchPlan {
        name: name.into(),
        filter: f,
        schema: schema_for(g.as_deref()),
        grouper: g,
        groupfilter: gf.map(|rule| {
            Arc::new(GroupFilterPlan {
                name: "gf".into(),
                rule,
            })
        }),
    }
}

pub fn single(b: BranchPlan) -> Arc<Plan> {
    Arc::new(Plan {
        name: "q".into(),
        branches: vec![b],
        merger: None,
    })
}

pub fn merged(branches: Vec<BranchPlan>, modules: Vec<MergeModule>, export: usize) -> Arc<Plan> {
    Arc::new(Plan {
        name: "q".into(),
        branches,
        merger: Some(MergerPlan {
            name: "m".into(),
            modules,
            export,
        }),
    })
}

pub fn mmodule(name: &str, branches: Vec<usize>, rules: Vec<MergeRule>) -> MergeModule {
    MergeModule {
        name: name.into(),
        branches,
        rules,
    }
}

pub fn allen(x: usize, op: AllenOp, y: usize, delta: Option<u64>) -> MergeRule {
    MergeRule::Allen(AllenRule { x, op, y, delta })
}

pub fn bf(branch: usize, field: GroupField) -> MergeOperand {
    MergeOperand::Field { branch, field }
}

pub fn frule(lhs: MergeOperand, op: CmpOp, rhs: MergeOperand, delta: Option<u64>) -> MergeRule {
    MergeRule::Field(FieldRule {
        lhs,
        op,
        rhs,
        delta,
    })
}

/// A hand-made group for merger tests.
pub fn group(
    branch: usize,
    id: u64,
    stime: i64,
    etime: i64,
    values: Vec<Option<Value>>,
) -> Arc<Group> {
    Arc::new(Group {
        branch,
        id,
        stime,
        etime,
        members: vec![Arc::new(rec(branch as u64 * 1_000_000 + id, stime, etime))],
        values,
    })
}

/// Member record ids of every group of every match.
pub fn match_ids(ms: &[Match]) -> Vec<Vec<Vec<u64>>> {
    ms.iter()
        .map(|m| {
            m.groups
                .iter()
                .map(|g| g.members.iter().map(|r| r.rec_id()).collect())
                .collect()
        })
        .collect()
}

/// (branch, group id) tuples of the matches, sorted.
pub fn tuple_ids(ms: &[Match]) -> Vec<Vec<(usize, u64)>> {
    let mut v: Vec<Vec<(usize, u64)>> = ms
        .iter()
        .map(|m| m.groups.iter().map(|g| (g.branch, g.id)).collect())
        .collect();
    v.sort();
    v
}
