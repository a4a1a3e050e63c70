//! Compiler tests: the example queries, the seed dialect and its typos,
//! literals, and one located error per malformed query.

use std::path::{Path, PathBuf};

use std::net::IpAddr;

use flowy::query::plan::{
    AggFunc, AllenOp, AllenRule, CmpOp, GroupField, MergeOperand, MergeRule, Operand, Plan,
    Reference, Rule,
};
use flowy::query::{compile_file, compile_source, explain, CompileError, Diagnostics};
use flowy::record::{Field, FieldType};
use flowy::value::{Prefix, Value};

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
    let text = explain(&plan);
    for line in [
        "query http-download",
        "branch A (#0)",
        "  filter www_req: (dstport = 80 AND prot = 6)",
        "    module g1: srcip = srcip, dstip = dstip, etime < stime rdelta 1000ms",
        "    keys: srcip, dstip",
        "  groupfilter ggf: bytes > 0",
        "  module m1 (exported): branches B, A",
        "    (B oi (overlapped by) A OR B d (during) A OR B f (finishes) A OR B eq (equals) A)",
        "  export m1",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "explain lacks {line:?}:\n{text}"
        );
    }
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
    assert!(matches!(&rules[3], MergeRule::Or(v) if v.len() == 4));
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

/// Each malformed query, the location of its (first) error and a piece of
/// the message. Every check of SPEC §2.8 appears at least once.
const MALFORMED: &[(&str, &str, &str)] = &[
    // syntax
    ("syntax-missing-brace", "4:1", "unexpected 'grouper'"),
    ("syntax-missing-operand", "3:1", "unexpected '}'"),
    ("syntax-unterminated-string", "2:21", "unterminated string"),
    ("syntax-bad-ipv4", "2:13", "invalid IPv4 address '10.0.0'"),
    (
        "syntax-bad-prefix-length",
        "2:14",
        "invalid prefix length '33'",
    ),
    ("syntax-unexpected-char", "2:18", "unexpected character '$'"),
    ("syntax-dangling-arrow", "4:1", "unexpected end of file"),
    ("syntax-bad-duration", "2:38", "invalid number '5parsecs'"),
    // duplicate names
    ("dup-filter", "2:8", "duplicate filter 'f'"),
    ("dup-branch", "6:10", "duplicate branch 'A'"),
    (
        "dup-aggregate",
        "3:48",
        "aggregate name 'n' is already used",
    ),
    ("dup-grouper-module", "3:12", "duplicate module 'g1'"),
    ("dup-splitter", "2:10", "second splitter 'T'"),
    (
        "aggregate-name-clash",
        "3:32",
        "aggregate name 'count' is already used by an implicit",
    ),
    // unknown names
    ("unknown-stage", "3:15", "unknown stage 'wwww'"),
    ("unknown-field", "2:5", "unknown field 'dstprot'"),
    ("unknown-function", "2:12", "unknown function 'protokol'"),
    ("unknown-protocol", "2:21", "unknown protocol name \"TPC\""),
    (
        "unknown-aggregate-function",
        "3:15",
        "unknown aggregate function 'summ'",
    ),
    ("unknown-aggregate-module", "3:19", "unknown module 'g2'"),
    ("unknown-branch-in-merger", "3:17", "unknown branch 'C'"),
    ("unknown-allen-op", "4:7", "unknown Allen relation 'ovr'"),
    (
        "unknown-groupfilter-field",
        "5:18",
        "unknown group field 'byts'",
    ),
    ("unknown-splitter", "4:1", "unknown splitter 'T'"),
    // types
    (
        "type-address-vs-number",
        "2:5",
        "cannot compare an address with a number",
    ),
    (
        "type-in-needs-prefix",
        "2:5",
        "'in' needs a prefix or a set",
    ),
    (
        "type-prefix-family",
        "2:5",
        "an IPv4 address is never in an IPv6 prefix",
    ),
    (
        "type-prefix-without-in",
        "2:5",
        "a prefix can only be tested with 'in'",
    ),
    (
        "type-string-vs-number",
        "2:5",
        "cannot compare a number with a string",
    ),
    (
        "type-delta-non-numeric",
        "2:31",
        "a delta needs numeric fields",
    ),
    (
        "type-merger-address-vs-number",
        "7:5",
        "cannot compare an address with a number",
    ),
    (
        "type-set-mixed",
        "2:21",
        "set mixes a number and an address",
    ),
    ("type-sum-of-address", "3:15", "cannot aggregate 'srcip'"),
    // merger structure
    (
        "branch-not-wired",
        "5:10",
        "branch 'B' is not wired to a merger",
    ),
    (
        "allen-outside-module",
        "5:13",
        "branch 'C' is not in module 'm1'",
    ),
    ("export-no-module", "4:12", "export names no module: 'm2'"),
    (
        "merger-field-not-produced",
        "7:17",
        "unknown field 'dstip' of branch 'B' (grouper 'g' does not produce it)",
    ),
    ("merger-no-export", "2:8", "several modules but no 'export'"),
    (
        "merger-bare-field",
        "4:5",
        "expected BRANCH.field, found 'srcip'",
    ),
    ("merger-not-allen-op", "4:7", "not an Allen relation"),
    ("merger-unwired", "2:8", "merger 'M' is not wired"),
    (
        "merger-disjoint-difference",
        "4:12",
        "module 'm2' shares no branch with the exported module 'm1'",
    ),
    ("implicit-splitter-typo", "6:1", "unknown splitter 's'"),
    (
        "groupfilter-unused-type-error",
        "2:18",
        "cannot compare an address with a number",
    ),
    // wiring
    (
        "wiring-order",
        "4:20",
        "filter 'f' cannot come after grouper 'g'",
    ),
    ("wiring-no-branch", "3:1", "the query wires no branch"),
    (
        "wiring-filter-after-merger-line",
        "6:6",
        "filter 'f' cannot come after merger 'M'",
    ),
    (
        "wiring-bad-endpoint",
        "3:20",
        "the output name \"out\" must end the line",
    ),
    // constructs in the wrong stage
    (
        "filter-qualified-name",
        "2:5",
        "qualified name 'A.srcip' is not allowed in a filter",
    ),
    (
        "filter-allen",
        "2:5",
        "Allen relations are only allowed in a merger",
    ),
    ("filter-delta", "2:19", "'delta' is not allowed in a filter"),
    ("grouper-or", "2:17", "grouper rules cannot use OR"),
    (
        "grouper-literal",
        "2:27",
        "grouper rules compare two record fields",
    ),
    // the seed listings' typos
    ("seed-srcip-typo", "25:17", "unknown field 'scrip'"),
    ("seed-port-typo", "18:5", "unknown field 'port'"),
    (
        "seed-pkt-sum",
        "54:16",
        "unknown field 'pckt-sum' of branch 'LOGIN1'",
    ),
    (
        "three-errors",
        "4:5",
        "cannot compare an address with a number",
    ),
];

fn malformed(name: &str) -> PathBuf {
    root().join("tests/malformed").join(format!("{name}.flowy"))
}

#[test]
fn every_malformed_query_reports_a_located_error() {
    for (name, at, message) in MALFORMED {
        let d = errors_of(&malformed(name));
        let want = format!("/{name}.flowy:{at}: error: ");
        let first = d.headers().into_iter().next().unwrap_or_default();
        let rest = first.find(&want).map(|i| &first[i + want.len()..]);
        assert!(
            rest.is_some_and(|m| m.contains(message)),
            "{name}: expected first error at {at} containing {message:?}, got:\n{d}"
        );
        let text = d.to_string();
        assert!(
            text.contains(&want),
            "{name}: rendered text lacks the location"
        );
        assert!(text.contains('^'), "{name}: rendered text lacks the caret");
    }
}

#[test]
fn every_file_in_malformed_is_checked() {
    let mut on_disk: Vec<String> = std::fs::read_dir(root().join("tests/malformed"))
        .expect("tests/malformed exists")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "flowy"))
        .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = MALFORMED.iter().map(|m| m.0.to_string()).collect();
    listed.sort();
    assert_eq!(on_disk, listed);
    assert!(listed.len() >= 30);
}

#[test]
fn seed_srcip_typo_suggests_srcip() {
    let d = errors_of(&malformed("seed-srcip-typo"));
    assert_eq!(d.len(), 1, "{d}");
    let e = &d.errors[0];
    assert_eq!((e.line, e.col), (25, 17));
    assert_eq!(e.help.as_deref(), Some("did you mean 'srcip'?"));
    let text = d.to_string();
    assert!(text.contains("seed-srcip-typo.flowy:25:17: error: unknown field 'scrip'"));
    assert!(text.contains("25 |         srcip = scrip\n"));
    assert!(text.contains("   |                 ^^^^^\n"));
    assert!(text.contains("= help: did you mean 'srcip'?"));
}

#[test]
fn seed_port_typo_suggests_port_fields() {
    let d = errors_of(&malformed("seed-port-typo"));
    assert_eq!(d.len(), 1, "{d}");
    let e = &d.errors[0];
    assert_eq!((e.line, e.col), (18, 5));
    let help = e.help.as_deref().unwrap_or("");
    for name in ["'dstport'", "'srcport'", "'prot'"] {
        assert!(help.contains(name), "help {help:?} lacks {name}");
    }
    assert!(help.starts_with("did you mean "));
}

#[test]
fn seed_pkt_sum_typo_suggests_the_aggregate() {
    let d = errors_of(&malformed("seed-pkt-sum"));
    assert_eq!(d.len(), 1, "{d}");
    assert!(d.headers()[0].ends_with("seed-pkt-sum.flowy:54:16: error: unknown field 'pckt-sum' of branch 'LOGIN1' (grouper 'g-login' does not produce it)"));
    assert_eq!(d.errors[0].help.as_deref(), Some("did you mean 'pkt-sum'?"));
}

#[test]
fn missing_brace_is_pointed_out() {
    let d = errors_of(&malformed("syntax-missing-brace"));
    assert_eq!(
        d.errors[0].help.as_deref(),
        Some("a new statement starts here: is a '}' missing before it?")
    );
}

#[test]
fn all_errors_of_a_file_are_reported() {
    let d = errors_of(&malformed("three-errors"));
    let at: Vec<(usize, usize)> = d.errors.iter().map(|e| (e.line, e.col)).collect();
    assert_eq!(at, vec![(4, 5), (8, 19), (11, 25)], "{d}");
    assert!(d.to_string().ends_with("3 errors"));
}

#[test]
fn several_syntax_errors_are_reported() {
    let src = "filter f {\n    dstport = \n}\nfilter g {\n    srcip = = 1\n}\nungrouper U {}\nS branch A -> f -> U\n";
    let d = src_errors(src);
    let at: Vec<(usize, usize)> = d.errors.iter().map(|e| (e.line, e.col)).collect();
    assert_eq!(at, vec![(3, 1), (5, 13)], "{d}");
    assert!(d.errors[0]
        .help
        .as_deref()
        .is_some_and(|h| h.starts_with("expected")));
}

/// A minimal query around one filter body.
fn with_filter(body: &str) -> String {
    format!("filter f {{\n{body}\n}}\nungrouper U {{}}\nS branch A -> f -> U\n")
}

fn filter_rule(body: &str) -> Rule<Field> {
    match compile_source("q", "q.flowy", &with_filter(body)) {
        Ok(p) => p.branches[0].filter.as_ref().expect("filter").rule.clone(),
        Err(d) => panic!("{body}: {d}"),
    }
}

fn lit_rhs(body: &str) -> Operand<Field> {
    match filter_rule(body) {
        Rule::And(v) => match &v[0] {
            Rule::Cmp(c) => c.rhs.clone(),
            other => panic!("not a comparison: {other:?}"),
        },
        other => panic!("not a rule list: {other:?}"),
    }
}

#[test]
fn hyphenated_names_and_arrows_lex_apart() {
    let src = "filter f-mDNS { dstport = 5353 }\ngrouper g { module m { srcip = srcip } }\nungroup U {}\nS br A -> f-mDNS->g->U\n";
    let plan = compile_source("q", "q", src).unwrap_or_else(|d| panic!("{d}"));
    let b = &plan.branches[0];
    assert_eq!(b.filter.as_ref().map(|f| f.name.as_str()), Some("f-mDNS"));
    assert_eq!(b.grouper.as_ref().map(|g| g.name.as_str()), Some("g"));
    assert!(plan.merger.is_none());
}

#[test]
fn duration_literals_are_milliseconds() {
    let delta_of = |d: &str| {
        let src = format!("grouper g {{ module m {{ etime < stime rdelta {d} }} }}\nungrouper U {{}}\nS branch A -> g -> U\n");
        let plan = compile_source("q", "q", &src).unwrap_or_else(|e| panic!("{e}"));
        let g = plan.branches[0].grouper.clone().expect("grouper");
        g.modules[0].rules[0].delta.expect("delta")
    };
    assert_eq!(delta_of("1 sec").amount, 1000);
    assert_eq!(delta_of("1s").amount, 1000);
    assert_eq!(delta_of("1440min").amount, 86_400_000);
    assert_eq!(delta_of("500ms").amount, 500);
    assert_eq!(delta_of("2h").amount, 7_200_000);
    assert_eq!(delta_of("250").amount, 250);
    assert_eq!(delta_of("1s").reference, Reference::Last);
    assert_eq!(lit_rhs("duration > 2 sec"), Operand::Lit(Value::Uint(2000)));
}

#[test]
fn time_literals_are_epoch_milliseconds() {
    assert_eq!(
        lit_rhs("stime >= 2012-04-30T07:51:00Z"),
        Operand::Lit(Value::Uint(1_335_772_260_000))
    );
    assert_eq!(
        lit_rhs("etime < 2012-04-30T09:51:00.250+02:00"),
        Operand::Lit(Value::Uint(1_335_772_260_250))
    );
    for (body, col, what) in [
        (
            "stime >= 2012-04-30T07:51:00",
            10,
            "invalid time '2012-04-30T07:51:00'",
        ),
        ("stime >= 2012-13-30T07:51:00Z", 10, "invalid time"),
        ("stime >= 1969-12-31T23:59:59Z", 10, "not before 1970"),
    ] {
        let d = src_errors(&with_filter(body));
        let e = &d.errors[0];
        assert_eq!((e.line, e.col), (2, col), "{d}");
        assert!(e.message.contains(what), "{d}");
    }
    // Still type-checked: a time is not an address.
    let d = src_errors(&with_filter("srcip = 2012-04-30T07:51:00Z"));
    assert!(
        d.errors[0]
            .message
            .contains("cannot compare an address with a number"),
        "{d}"
    );
}

#[test]
fn address_and_prefix_literals() {
    let ip = |s: &str| -> IpAddr { s.parse().expect("test address") };
    assert_eq!(
        lit_rhs("srcip = 2001:db8::1"),
        Operand::Lit(Value::Ip(ip("2001:db8::1")))
    );
    assert_eq!(lit_rhs("srcip = ::1"), Operand::Lit(Value::Ip(ip("::1"))));
    assert_eq!(
        lit_rhs("srcip = 10.0.0.1"),
        Operand::Lit(Value::Ip(ip("10.0.0.1")))
    );
    assert_eq!(
        lit_rhs("srcip in 10.0.0.0/8"),
        Operand::Prefix(Prefix {
            addr: ip("10.0.0.0"),
            len: 8
        })
    );
    assert_eq!(
        lit_rhs("dstip in 2001:db8::/32"),
        Operand::Prefix(Prefix {
            addr: ip("2001:db8::"),
            len: 32
        })
    );
    assert_eq!(
        lit_rhs("dstip in fe80::/10"),
        Operand::Prefix(Prefix {
            addr: ip("fe80::"),
            len: 10
        })
    );
    assert_eq!(lit_rhs("tcp_flags = 0x12"), Operand::Lit(Value::Uint(18)));
}

#[test]
fn protocol_names_fold_to_numbers() {
    for (name, n) in [
        ("TCP", 6),
        ("udp", 17),
        ("ICMP", 1),
        ("IPv6-ICMP", 58),
        ("icmpv6", 58),
        ("gre", 47),
        ("ESP", 50),
        ("AH", 51),
        ("SCTP", 132),
        ("IGMP", 2),
    ] {
        assert_eq!(
            lit_rhs(&format!("prot = protocol(\"{name}\")")),
            Operand::Lit(Value::Uint(n)),
            "{name}"
        );
    }
}

#[test]
fn rules_nest_and_juxtapose() {
    let rule = filter_rule("dstport in {80, 443}\nNOT (srcip in 10.0.0.0/8 OR srcip in 192.168.0.0/16) AND prot = 6\nbitAND(tcp_flags, 2) = 2");
    let Rule::And(lines) = rule else {
        panic!("lines are ANDed")
    };
    assert_eq!(lines.len(), 3);
    assert!(
        matches!(&lines[0], Rule::Cmp(c) if c.op == CmpOp::In && matches!(&c.rhs, Operand::Set(s) if s.len() == 2))
    );
    assert!(
        matches!(&lines[1], Rule::And(v) if v.len() == 2 && matches!(&v[0], Rule::Not(inner) if matches!(**inner, Rule::Or(ref o) if o.len() == 2)))
    );
    assert!(matches!(&lines[2], Rule::Cmp(c) if matches!(c.lhs, Operand::BitAnd(..))));
    assert_eq!(filter_rule(""), Rule::True);
}

#[test]
fn single_branch_without_grouper_is_singleton() {
    let src = "filter f { dstport = 53 }\ngroupfilter gf { srcaddr in 10.0.0.0/8 count = 1 }\nS branch A -> f -> gf\n";
    let plan = compile_source("dns", "dns.flowy", src).unwrap_or_else(|d| panic!("{d}"));
    assert!(plan.merger.is_none());
    let b = &plan.branches[0];
    assert!(b.grouper.is_none());
    assert!(b.schema.singleton);
    assert_eq!(b.schema.slots, 0);
    assert_eq!(
        b.schema.lookup("srcaddr").map(|x| x.0),
        Some(GroupField::Record(Field::SrcIp))
    );
    assert_eq!(
        b.schema.lookup("count").map(|x| x.0),
        Some(GroupField::Count)
    );
    let gf = b.groupfilter.as_ref().expect("groupfilter");
    assert!(matches!(&gf.rule, Rule::And(v) if v.len() == 2));
}

#[test]
fn grouper_schema_rules() {
    let src = "grouper g {\n module a { srcip = srcip dstip = dstip dstport = dstport delta 5 }\n module b { srcip = srcip dstport = dstport }\n aggregate srcip, count(rec_id) as n, sum(a.bytes) as ab, avg(bytes) as avgb, min(stime) as first_seen\n}\nmodule_less_ok {}\n";
    // The trailing garbage line above is a syntax error; use a clean one.
    let src = src.replace(
        "module_less_ok {}\n",
        "ungrouper U {}\nS branch A -> g -> U\n",
    );
    let plan = compile_source("q", "q", &src).unwrap_or_else(|d| panic!("{d}"));
    let g = plan.branches[0].grouper.clone().expect("grouper");
    // Only srcip is `x = x` without delta in every module.
    assert_eq!(g.keys, vec![Field::SrcIp]);
    // `srcip` as a plain aggregate of a key adds no second slot.
    let names: Vec<&str> = g.aggregates.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["n", "ab", "avgb", "first_seen"]);
    assert_eq!(g.aggregates[1].module, Some(0));
    assert_eq!(g.aggregates[0].func, AggFunc::Count);
    let s = &plan.branches[0].schema;
    assert_eq!(s.slots, 5);
    assert_eq!(s.lookup("n"), Some((GroupField::Slot(1), FieldType::Uint)));
    assert_eq!(
        s.lookup("avgb"),
        Some((GroupField::Slot(3), FieldType::Float))
    );
    assert_eq!(
        s.lookup("first_seen"),
        Some((GroupField::Slot(4), FieldType::Time))
    );
    assert!(s.lookup("bytes").is_none());
    assert!(!s.singleton);
}

#[test]
fn grouper_without_modules_is_singleton() {
    let src = "grouper g { aggregate sum(bytes) as b }\nungrouper U {}\nS branch A -> g -> U\n";
    let plan = compile_source("q", "q", src).unwrap_or_else(|d| panic!("{d}"));
    let s = &plan.branches[0].schema;
    assert!(s.singleton);
    assert_eq!(s.lookup("b").map(|x| x.0), Some(GroupField::Slot(0)));
    assert_eq!(
        s.lookup("dstport").map(|x| x.0),
        Some(GroupField::Record(Field::DstPort))
    );
}

#[test]
fn merger_modules_difference_and_symbolic_allen() {
    let src = r#"
filter f { prot = 6 }
grouper g { module m { srcip = srcip } aggregate union(dstport) as ports }
merger M {
    module found { branches A, B
        A.srcip = B.srcip
        A < B delta 5s
        B.ports = A.ports
        A.count >= 2 OR 443 in A.ports
    }
    module veto { branches A, C
        A = C
    }
    export found
}
ungrouper U {}
S branch A -> f -> g -> M
S branch B -> f -> g -> M
S branch C -> f -> M
M -> U -> "output"
"#;
    let plan = compile_source("q", "q", src).unwrap_or_else(|d| panic!("{d}"));
    let m = plan.merger.as_ref().expect("merger");
    assert_eq!(m.export, 0);
    assert_eq!(m.modules[1].branches, vec![0, 2]);
    let r = &m.modules[0].rules;
    assert_eq!(
        r[1],
        MergeRule::Allen(AllenRule {
            x: 0,
            op: AllenOp::Before,
            y: 1,
            delta: Some(5000)
        })
    );
    assert!(
        matches!(&m.modules[1].rules[0], MergeRule::Allen(a) if a.op == AllenOp::Equals && a.y == 2)
    );
    assert!(
        matches!(&r[3], MergeRule::Or(v) if matches!(&v[0], MergeRule::Field(f) if f.lhs == MergeOperand::Field { branch: 0, field: GroupField::Count }))
    );
    assert!(
        matches!(&r[3], MergeRule::Or(v) if matches!(&v[1], MergeRule::Field(f) if f.op == CmpOp::In && f.lhs == MergeOperand::Lit(Value::Uint(443))))
    );
    // Branch C has no grouper: single-record groups.
    assert!(plan.branches[2].schema.singleton);
    let text = explain(&plan);
    assert!(text.contains("module found (exported): branches A, B"));
    assert!(text.contains("module veto (difference): branches A, C"));
    assert!(text.contains("A < (before) B delta 5000ms"));
}

/// `delta 0` on before/after is kept (it can never hold, SPEC §2.5) and is
/// distinct from no delta at all.
#[test]
fn before_after_delta_zero_compiles_and_differs_from_no_delta() {
    for (text, op) in [("<", AllenOp::Before), (">", AllenOp::After)] {
        for (clause, delta) in [(" delta 0", Some(0)), ("", None)] {
            let src = format!(
                "filter f {{ dstport = 80 }}\nmerger M {{ branches A, B\n A {text} B{clause}\n}}\nungrouper U {{}}\nS branch A -> f -> M\nS branch B -> f -> M\nM -> U -> \"output\"\n"
            );
            let plan =
                compile_source("q", "q", &src).unwrap_or_else(|d| panic!("{text}{clause}: {d}"));
            let m = plan.merger.as_ref().expect("merger");
            assert_eq!(
                m.modules[0].rules,
                vec![MergeRule::Allen(AllenRule {
                    x: 0,
                    op,
                    y: 1,
                    delta,
                })],
                "A {text} B{clause}"
            );
            let shown = explain(&plan);
            assert_eq!(shown.contains(" delta 0ms"), delta.is_some(), "{shown}");
        }
    }
}

#[test]
fn compile_file_reports_missing_files() {
    let missing = root().join("tests/malformed/does-not-exist.flowy");
    match compile_file(&missing) {
        Err(CompileError::Io { path, .. }) => assert_eq!(path, missing),
        other => panic!("expected an I/O error, got {other:?}"),
    }
}

#[test]
fn truncated_queries_never_panic() {
    for name in ["http-download.flowy", "skype.flowy", "ipv6-failure.flowy"] {
        let src =
            std::fs::read_to_string(root().join("config/queries").join(name)).expect("example");
        let cuts = src.char_indices().map(|(i, _)| i).step_by(3);
        for cut in cuts {
            if let Err(d) = compile_source("q", "q", &src[..cut]) {
                assert!(!d.is_empty());
                assert!(d.headers().iter().all(|h| h.starts_with("q:")));
            }
        }
    }
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    const PIECES: &[&str] = &[
        "filter",
        "grouper",
        "groupfilter",
        "merger",
        "ungrouper",
        "splitter",
        "module",
        "aggregate",
        "as",
        "branches",
        "branch",
        "br",
        "export",
        "delta",
        "rdelta",
        "OR",
        "AND",
        "NOT",
        "in",
        "{",
        "}",
        "(",
        ")",
        ",",
        ".",
        "->",
        "=",
        "!=",
        "<",
        "<=",
        ">",
        ">=",
        "\"input\"",
        "\"output\"",
        "S",
        "A",
        "B",
        "M",
        "U",
        "f",
        "g",
        "m1",
        "srcip",
        "dstport",
        "bytes",
        "count",
        "sum(",
        "protocol(\"TCP\")",
        "80",
        "1s",
        "1 sec",
        "10.0.0.0/8",
        "2001:db8::1",
        "::1",
        "{80, 443}",
        "oi",
        "d",
        "#c\n",
        "\n",
        "0x1f",
        "1.5",
        "$",
        "\"",
    ];

    fn soup() -> impl Strategy<Value = String> {
        prop::collection::vec(prop::sample::select(PIECES), 0..60).prop_map(|v| v.join(" "))
    }

    proptest! {
        #[test]
        fn token_soup_never_panics(src in soup()) {
            match compile_source("q", "q", &src) {
                Ok(plan) => prop_assert!(!plan.branches.is_empty()),
                Err(d) => {
                    prop_assert!(!d.is_empty());
                    for e in &d.errors {
                        prop_assert!(e.line >= 1 && e.col >= 1);
                    }
                }
            }
        }

        #[test]
        fn arbitrary_text_never_panics(src in "\\PC{0,200}") {
            if let Err(d) = compile_source("q", "q", &src) {
                prop_assert!(d.to_string().starts_with("q:"));
            }
        }

        #[test]
        fn mutated_examples_never_panic(at in 0usize..2000, len in 0usize..12, junk in "[ -~]{0,4}") {
            let src = std::fs::read_to_string(root().join("config/queries/http-download.flowy")).expect("example");
            // Cut on byte offsets: a cut through a multi-byte character
            // leaves invalid UTF-8, replaced as a file reader would.
            let bytes = src.as_bytes();
            let at = at.min(bytes.len());
            let end = (at + len).min(bytes.len());
            let mutated = String::from_utf8_lossy(&[&bytes[..at], junk.as_bytes(), &bytes[end..]].concat()).into_owned();
            if let Err(d) = compile_source("q", "q", &mutated) {
                prop_assert!(!d.is_empty());
            }
        }
    }
}

#[test]
fn long_chains_compile_and_deep_nesting_is_refused() {
    let chain = vec!["dstport = 80"; 20_000].join(" OR ");
    let rule = filter_rule(&chain);
    assert!(matches!(&rule, Rule::And(v) if matches!(&v[0], Rule::Or(o) if o.len() == 20_000)));
    let deep = format!("{}dstport = 80{}", "(".repeat(300), ")".repeat(300));
    let d = src_errors(&with_filter(&deep));
    assert_eq!(d.len(), 1);
    assert!(d.headers()[0].starts_with("q.flowy:2:256: error: the query nests too deeply"));
}

#[test]
fn every_allen_operator_name() {
    let ops = [
        ("m", AllenOp::Meets),
        ("mi", AllenOp::MetBy),
        ("o", AllenOp::Overlaps),
        ("oi", AllenOp::OverlappedBy),
        ("s", AllenOp::Starts),
        ("si", AllenOp::StartedBy),
        ("d", AllenOp::During),
        ("di", AllenOp::Contains),
        ("f", AllenOp::Finishes),
        ("fi", AllenOp::FinishedBy),
        ("eq", AllenOp::Equals),
        ("=", AllenOp::Equals),
        ("<", AllenOp::Before),
        (">", AllenOp::After),
    ];
    for (name, op) in ops {
        // Branch and field names that look like Allen operators stay names.
        let src = format!(
            "filter d {{ dstport = 80 }}\nmerger m {{ branches o, s\n o {name} s delta 2s\n}}\nungrouper U {{}}\nS branch o -> d -> m\nS branch s -> d -> m\n"
        );
        let plan = compile_source("q", "q", &src).unwrap_or_else(|d| panic!("{name}: {d}"));
        let m = plan.merger.expect("merger");
        assert_eq!(
            m.modules[0].rules,
            vec![MergeRule::Allen(AllenRule {
                x: 0,
                op,
                y: 1,
                delta: Some(2000)
            })],
            "{name}"
        );
    }
}
