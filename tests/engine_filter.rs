//! Filter, group filter and watermark semantics (SPEC §2.3, §3.2).

mod engine_support;

use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;

use engine_support::*;
use flowy::engine::filter::eval_rule;
use flowy::engine::{run_batch, Watermark};
use flowy::query::plan::*;
use flowy::record::{Field, Record, RecordFields};
use flowy::value::{Prefix, Value};

fn sample() -> Record {
    Record::from(RecordFields {
        tcp_flags: Some(0x12),
        ..flow(1, 1000, 2000, ip(10, 1, 2, 3), ip(192, 168, 0, 1), 80, 500).fields()
    })
}

fn holds(rule: Rule<Field>, r: &Record) -> bool {
    eval_rule(&rule, r)
}

#[test]
fn comparisons_on_present_fields() {
    let r = sample();
    let l = |v| Operand::Lit(lit(v));
    assert!(holds(cmp(fld(Field::DstPort), CmpOp::Eq, l(80)), &r));
    assert!(!holds(cmp(fld(Field::DstPort), CmpOp::Ne, l(80)), &r));
    assert!(holds(cmp(fld(Field::Bytes), CmpOp::Lt, l(501)), &r));
    assert!(!holds(cmp(fld(Field::Bytes), CmpOp::Lt, l(500)), &r));
    assert!(holds(cmp(fld(Field::Bytes), CmpOp::Le, l(500)), &r));
    assert!(holds(cmp(fld(Field::Bytes), CmpOp::Gt, l(499)), &r));
    assert!(holds(cmp(fld(Field::Bytes), CmpOp::Ge, l(500)), &r));
    assert!(!holds(cmp(fld(Field::Bytes), CmpOp::Gt, l(500)), &r));
    assert!(holds(cmp(fld(Field::Duration), CmpOp::Eq, l(1000)), &r));
    assert!(holds(
        cmp(fld(Field::Stime), CmpOp::Lt, fld(Field::Etime)),
        &r
    ));
}

#[test]
fn absent_field_makes_every_comparison_false_and_not_true() {
    let r = sample(); // no src_as, no vlanId-style extras
    let c = |op| cmp(fld(Field::SrcAs), op, Operand::Lit(lit(5)));
    for op in CmpOp::ALL {
        assert!(!holds(c(op), &r), "{op:?} with absent field must be false");
        assert!(
            holds(Rule::Not(Box::new(c(op))), &r),
            "NOT {op:?} must be true"
        );
    }
    let extra = cmp(fld(Field::Extra(58)), CmpOp::Eq, Operand::Lit(lit(1)));
    assert!(!holds(extra.clone(), &r));
    let with_extra = Record::from(RecordFields {
        extra: vec![(58, lit(1))],
        ..sample().fields()
    });
    assert!(holds(extra, &with_extra));
}

#[test]
fn in_prefix_same_family_only() {
    let r = sample();
    let p8 = Prefix {
        addr: ip(10, 0, 0, 0),
        len: 8,
    };
    let v6 = Prefix {
        addr: IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        len: 0,
    };
    assert!(holds(
        cmp(fld(Field::SrcIp), CmpOp::In, Operand::Prefix(p8)),
        &r
    ));
    assert!(!holds(
        cmp(fld(Field::DstIp), CmpOp::In, Operand::Prefix(p8)),
        &r
    ));
    // ::/0 contains every IPv6 address but no IPv4 address.
    assert!(!holds(
        cmp(fld(Field::SrcIp), CmpOp::In, Operand::Prefix(v6)),
        &r
    ));
    let r6 = Record::from(RecordFields {
        srcip: Some(IpAddr::V6(Ipv6Addr::LOCALHOST)),
        ..sample().fields()
    });
    assert!(holds(
        cmp(fld(Field::SrcIp), CmpOp::In, Operand::Prefix(v6)),
        &r6
    ));
    // IPv4 and IPv6 addresses are never equal.
    let mapped: IpAddr = "::ffff:10.1.2.3"
        .parse()
        .unwrap_or(IpAddr::V6(Ipv6Addr::LOCALHOST));
    let eq6 = cmp(
        fld(Field::SrcIp),
        CmpOp::Eq,
        Operand::Lit(Value::Ip(mapped)),
    );
    assert!(!holds(eq6.clone(), &r));
    let ne6 = cmp(
        fld(Field::SrcIp),
        CmpOp::Ne,
        Operand::Lit(Value::Ip(mapped)),
    );
    assert!(holds(ne6, &r));
}

#[test]
fn in_set_and_bit_functions() {
    let r = sample();
    assert!(holds(
        cmp(
            fld(Field::DstPort),
            CmpOp::In,
            Operand::Set(set(&[80, 443]))
        ),
        &r
    ));
    assert!(!holds(
        cmp(
            fld(Field::DstPort),
            CmpOp::In,
            Operand::Set(set(&[22, 443]))
        ),
        &r
    ));
    let syn = Operand::BitAnd(
        Box::new(fld(Field::TcpFlags)),
        Box::new(Operand::Lit(lit(0x02))),
    );
    assert!(holds(cmp(syn, CmpOp::Eq, Operand::Lit(lit(2))), &r));
    let fin = Operand::BitAnd(
        Box::new(fld(Field::TcpFlags)),
        Box::new(Operand::Lit(lit(0x01))),
    );
    assert!(holds(cmp(fin, CmpOp::Eq, Operand::Lit(lit(0))), &r));
    let or = Operand::BitOr(
        Box::new(fld(Field::TcpFlags)),
        Box::new(Operand::Lit(lit(0x01))),
    );
    assert!(holds(cmp(or, CmpOp::Eq, Operand::Lit(lit(0x13))), &r));
    // bitAND over an absent field is absent: false.
    let absent = Operand::BitAnd(Box::new(fld(Field::Tos)), Box::new(Operand::Lit(lit(1))));
    assert!(!holds(cmp(absent, CmpOp::Eq, Operand::Lit(lit(0))), &r));
}

#[test]
fn boolean_structure() {
    let r = sample();
    let t = cmp(fld(Field::DstPort), CmpOp::Eq, Operand::Lit(lit(80)));
    let f = cmp(fld(Field::DstPort), CmpOp::Eq, Operand::Lit(lit(81)));
    assert!(holds(Rule::Or(vec![f.clone(), t.clone()]), &r));
    assert!(!holds(Rule::And(vec![f.clone(), t.clone()]), &r));
    assert!(holds(
        Rule::And(vec![t.clone(), Rule::Not(Box::new(f))]),
        &r
    ));
    assert!(holds(Rule::True, &r));
    assert!(holds(Rule::And(vec![]), &r));
}

#[test]
fn filter_and_groupfilter_in_a_plan() {
    // Filter: dstport = 80. Group filter: count >= 2 (grouper on srcip).
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
    let a = ip(10, 0, 0, 1);
    let b = ip(10, 0, 0, 2);
    let d = ip(1, 1, 1, 1);
    let recs = vec![
        flow(0, 100, 200, a, d, 80, 1),
        flow(1, 110, 200, b, d, 80, 1),
        flow(2, 120, 200, a, d, 80, 1),
        flow(3, 130, 200, b, d, 443, 1), // filtered out: b's group has one member
        flow(4, 140, 200, a, d, 80, 1),
    ];
    let ms = run_batch(plan, recs, None);
    assert_eq!(match_ids(&ms), vec![vec![vec![0, 2, 4]]]);
    assert_eq!(ms[0].groups[0].values, vec![Some(Value::Ip(a))]);
}

#[test]
fn groupfilter_on_slots_and_record_fields() {
    // No grouper: groups are single records and record fields are group fields.
    let gf = cmp(
        Operand::Field(GroupField::Record(Field::Bytes)),
        CmpOp::Gt,
        Operand::Lit(lit(10)),
    );
    let plan = single(branch("A", None, None, Some(gf)));
    let d = ip(1, 1, 1, 1);
    let recs = vec![
        flow(0, 100, 200, d, d, 80, 5),
        flow(1, 100, 200, d, d, 80, 50),
    ];
    let ms = run_batch(plan, recs, None);
    assert_eq!(match_ids(&ms), vec![vec![vec![1]]]);
}

#[test]
fn watermark_lateness_and_idle_advance() {
    let mut w = Watermark::new(Some(1000), 10_000);
    assert_eq!(w.current(), None);
    w.observe(5000, 0);
    assert_eq!(w.current(), Some(4000));
    w.observe(4500, 100); // older record: W stays
    assert_eq!(w.current(), Some(4000));
    // Idle for 10.1 s of wall time: W advances by the 0.1 s beyond idle_advance.
    assert_eq!(w.tick(100 + 10_000), Some(4000));
    assert_eq!(w.tick(100 + 10_100), Some(4100));
    // A new record below the advanced W does not move W backwards.
    w.observe(5000, 20_000);
    assert_eq!(w.tick(20_000), Some(4100));
    w.observe(6000, 20_001);
    assert_eq!(w.current(), Some(5000));
    // Infinite lateness: no watermark at all.
    let mut inf = Watermark::new(None, 10);
    inf.observe(5, 0);
    assert_eq!(inf.tick(1_000_000), None);
}

#[test]
fn records_shared_across_branches_are_filtered_per_branch() {
    let p80 = filter(cmp(fld(Field::DstPort), CmpOp::Eq, Operand::Lit(lit(80))));
    let plan = Arc::new(Plan {
        name: "q".into(),
        branches: vec![branch("A", Some(p80), None, None)],
        merger: None,
    });
    let d = ip(1, 1, 1, 1);
    let ms = run_batch(
        plan,
        vec![flow(0, 1, 2, d, d, 80, 1), flow(1, 1, 2, d, d, 22, 1)],
        None,
    );
    assert_eq!(ms.len(), 1);
    assert_eq!(ms[0].records().len(), 1);
    assert_eq!(ms[0].records()[0].0, 0);
}
