//! A hand-built plan and match shaped like the HTTP-download query, for the
//! output tests.

use std::sync::Arc;

use crate::engine::{Group, Match};
use crate::query::plan::{BranchPlan, GroupField, GroupSchema, Plan};
use crate::record::{FieldType, Record, RecordFields, SetOf};
use crate::value::{Value, ValueSet, F64};

fn schema(ports: &str) -> GroupSchema {
    let slots = [
        ("srcip", FieldType::Ip),
        ("dstip", FieldType::Ip),
        ("bytes", FieldType::Uint),
        ("n", FieldType::Uint),
        ("flags", FieldType::Uint),
        (ports, FieldType::Set(SetOf::Uint)),
        ("avg", FieldType::Float),
    ];
    let mut names: Vec<(String, GroupField, FieldType)> = vec![
        ("stime".into(), GroupField::Stime, FieldType::Time),
        ("etime".into(), GroupField::Etime, FieldType::Time),
        ("count".into(), GroupField::Count, FieldType::Uint),
    ];
    names.extend(
        slots
            .iter()
            .enumerate()
            .map(|(i, (n, t))| (n.to_string(), GroupField::Slot(i), *t)),
    );
    GroupSchema {
        names,
        slots: slots.len(),
        slot_names: slots.iter().map(|(n, _)| n.to_string()).collect(),
        singleton: false,
    }
}

pub(crate) fn http_plan() -> Plan {
    let branch = |name: &str, ports: &str| BranchPlan {
        name: name.into(),
        filter: None,
        grouper: None,
        groupfilter: None,
        schema: Arc::new(schema(ports)),
    };
    Plan {
        name: "http-download".into(),
        branches: vec![branch("A", "srcports"), branch("B", "dstports")],
        merger: None,
    }
}

fn rec(rec_id: u64, src: &str, dst: &str, sport: u16, dport: u16, stime: i64) -> Arc<Record> {
    Arc::new(Record::from(RecordFields {
        rec_id,
        exporter: "192.0.2.1".parse().ok(),
        srcip: src.parse().ok(),
        dstip: dst.parse().ok(),
        srcport: Some(sport),
        dstport: Some(dport),
        prot: Some(6),
        bytes: Some(612),
        packets: Some(5),
        tcp_flags: Some(27),
        stime,
        etime: stime + 1115,
        ..RecordFields::default()
    }))
}

fn ports(p: &[u64]) -> Value {
    Value::Set(p.iter().map(|&u| Value::Uint(u)).collect::<ValueSet>())
}

pub(crate) fn http_match() -> Match {
    let t0 = 1_795_424_381_003;
    let a1 = rec(1021, "10.0.0.5", "198.51.100.7", 51234, 80, t0);
    let a2 = rec(1025, "10.0.0.5", "198.51.100.7", 51236, 80, t0 + 500);
    let b1 = rec(1022, "198.51.100.7", "10.0.0.5", 80, 51234, t0 + 10);
    let ip = |s: &str| s.parse().ok().map(Value::Ip);
    let a = Group {
        branch: 0,
        id: 0,
        stime: t0,
        etime: t0 + 1615,
        members: vec![a1.clone(), a2.clone()],
        values: vec![
            ip("10.0.0.5"),
            ip("198.51.100.7"),
            Some(Value::Uint(1834)),
            Some(Value::Uint(2)),
            Some(Value::Uint(27)),
            Some(ports(&[51236, 51234])),
            Some(Value::Float(F64(917.0))),
        ],
    };
    let b = Group {
        branch: 1,
        id: 0,
        stime: t0 + 10,
        etime: t0 + 1125,
        members: vec![b1.clone()],
        values: vec![
            ip("198.51.100.7"),
            ip("10.0.0.5"),
            Some(Value::Uint(9000)),
            Some(Value::Uint(1)),
            Some(Value::Uint(19)),
            Some(ports(&[51234])),
            None,
        ],
    };
    Match::with_records(
        vec![Arc::new(a), Arc::new(b)],
        vec![(0, a1), (1, b1), (0, a2)],
    )
}
