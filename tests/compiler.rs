//! Compiler tests: the example queries, the seed dialect and its typos,
//! literals, and one located error per malformed query.

use std::path::{Path, PathBuf};

use flowy::query::plan::{AggFunc, AllenOp, GroupField, MergeRule, Plan};
use flowy::query::{compile_file, compile_source, explain, CompileError, Diagnostics};
use flowy::record::{Field, FieldType};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn example(name: &str) -> Plan {
    let path = root().join("config/queries").join(name);
    match compile_file(&path) {
        Ok(p) => p,
        Err(e) => panic!("{} does not compile:\n{e}", path.display()),
    }
}

fn errors_of(path: &Path) -> Diagnostics {
    match compile_file(path) {
        Ok(_) => panic!("{} compiled but should not", path.display()),
        Err(CompileError::Invalid(d)) => d,
        Err(e) => panic!("{}: {e}", path.display()),
    }
}

fn src_errors(src: &str) -> Diagnostics {
    match compile_source("q", "q.flowy", src) {
        Ok(p) => panic!("compiled but should not:\n{}", explain(&p)),
        Err(d) => d,
    }
}

#[test]
fn http_download_plan_shape() {
    let plan = example("http-download.flowy");
    println!("{}", explain(&plan));
    assert_eq!(plan.name, "http-download");
    let names: Vec<&str> = plan.branches.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names, ["A", "B"]);
    let m = plan.merger.as_ref().expect("two branches need a merger");
    assert_eq!(m.modules.len(), 1);
    assert_eq!(m.modules[m.export].name, "m1");
    assert_eq!(m.modules[0].branches, vec![1, 0]);
    let a = &plan.branches[0];
    assert!(!a.schema.singleton);
    assert_eq!(
        a.schema.slot_names,
        ["srcip", "dstip", "srcports", "bytes", "n", "flags"]
    );
    assert_eq!(
        a.schema.lookup("srcaddr").map(|x| x.0),
        Some(GroupField::Slot(0))
    );
    assert_eq!(
        a.schema.lookup("count").map(|x| x.0),
        Some(GroupField::Count)
    );
    assert_eq!(
        a.schema.lookup("td").map(|x| x.0),
        Some(GroupField::Duration)
    );
    assert!(matches!(
        a.schema.lookup("srcports"),
        Some((GroupField::Slot(2), FieldType::Set(_)))
    ));
    let g = a.grouper.as_ref().expect("grouper");
    assert_eq!(g.keys, vec![Field::SrcIp, Field::DstIp]);
    assert_eq!(g.aggregates.len(), 4);
    assert_eq!(g.aggregates[0].func, AggFunc::Union);
    let rules = &m.modules[0].rules;
    assert_eq!(rules.len(), 4);
    assert!(matches!(&rules[3], MergeRule::Or(v) if v.len() == 3));
    assert!(
        matches!(&rules[3], MergeRule::Or(v) if matches!(v[0], MergeRule::Allen(a) if a.op == AllenOp::OverlappedBy && a.x == 1 && a.y == 0))
    );
}

#[test]
fn skype_plan_shape() {
    let plan = example("skype.flowy");
    println!("{}", explain(&plan));
    assert_eq!(plan.branches.len(), 2);
    let m = plan.merger.as_ref().expect("merger");
    // The shorthand is one implicit module named after the merger, exported.
    assert_eq!(m.modules.len(), 1);
    assert_eq!(m.modules[0].name, "M");
    assert_eq!(m.export, 0);
    assert_eq!(m.modules[0].branches, vec![0, 1]);
    let s = &plan.branches[0].schema;
    assert_eq!(s.slot_names, ["srcip", "n", "bytes"]);
    let gf = plan.branches[0].groupfilter.as_ref().expect("groupfilter");
    assert_eq!(gf.name, "gf-burst");
}

#[test]
fn ipv6_failure_plan_shape() {
    let plan = example("ipv6-failure.flowy");
    println!("{}", explain(&plan));
    let names: Vec<&str> = plan.branches.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names, ["MDNS", "LOGIN1", "LOGIN2", "LOGIN3"]);
    assert_eq!(
        plan.branches[0].filter.as_ref().map(|f| f.name.as_str()),
        Some("f-mDNS")
    );
    assert_eq!(
        plan.branches[0].grouper.as_ref().map(|g| g.name.as_str()),
        Some("g-mDNS")
    );
    let login = &plan.branches[1].schema;
    assert_eq!(
        login.slot_names,
        ["srcip", "dstip", "srcport", "pkt-sum", "byte-sum"]
    );
    let m = plan.merger.as_ref().expect("merger");
    assert_eq!(m.modules[0].branches, vec![0, 1, 2, 3]);
    assert_eq!(m.modules[0].rules.len(), 12);
}
