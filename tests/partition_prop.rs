//! Property: the partition key the compiler derives (SPEC §5) is sound.
//!
//! For random queries (one to three branches; groupers with several
//! modules, empty modules, deltas and plain aggregates of non-key fields;
//! merger equalities straight, swapped, chained and under `OR`; Allen
//! rules; difference modules) over random traces:
//! 1. every record of every match has the same key values (compared as
//!    values, not only as hashes), and a match of an `Any` query is one
//!    record;
//! 2. splitting the trace by `partition(rec, n)` for n in 1..=4 and running
//!    each part on its own gives exactly the whole run's matches (as a
//!    multiset of `Match::id`s) — what the cluster relies on.
//!
//! The shipped example queries are checked the same way over the synthetic
//! HTTP trace.

#[path = "support/trace_gen.rs"]
mod trace_gen;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use flowy::engine::{run_batch, Match};
use flowy::query::plan::Plan;
use flowy::query::{compile_source, KeyPart, KeySpec, PartitionKey};
use flowy::record::{Field, Record, RecordFields};
use flowy::value::Value;
use proptest::prelude::*;
use trace_gen::Rng;

// ------------------------------------------------------------ query source

const IP_FIELDS: [&str; 2] = ["srcip", "dstip"];
const NUM_FIELDS: [&str; 4] = ["srcport", "dstport", "prot", "bytes"];
const BRANCHES: [&str; 3] = ["A", "B", "C"];

fn pick<'a>(rng: &mut Rng, from: &[&'a str]) -> &'a str {
    from[rng.range(0, from.len() as u64) as usize]
}

fn chance(rng: &mut Rng, percent: u64) -> bool {
    rng.range(0, 100) < percent
}

fn is_ip(f: &str) -> bool {
    IP_FIELDS.contains(&f)
}

/// One branch's stages and the record fields its group records offer the
/// merger.
struct BranchGen {
    stages: String,
    line: String,
    /// Field names the merger may compare (keys, plain aggregates, or any
    /// field of single-record groups).
    fields: Vec<&'static str>,
}

fn branch(rng: &mut Rng, name: &str) -> BranchGen {
    let mut stages = String::new();
    let mut line = format!("S branch {name}");
    if chance(rng, 50) {
        let rule = pick(
            rng,
            &[
                "prot = 6",
                "dstport = 80",
                "srcport = 80",
                "prot = 17",
                "srcport != 80",
            ],
        );
        stages.push_str(&format!("filter f{name} {{ {rule} }}\n"));
        line.push_str(&format!(" -> f{name}"));
    }
    let all: Vec<&'static str> = IP_FIELDS.iter().chain(&NUM_FIELDS).copied().collect();
    let fields = if chance(rng, 75) {
        let (text, fields) = grouper(rng, name, &all);
        stages.push_str(&text);
        line.push_str(&format!(" -> g{name}"));
        fields
    } else {
        all
    };
    if chance(rng, 20) {
        stages.push_str(&format!("groupfilter gf{name} {{ count >= 2 }}\n"));
        line.push_str(&format!(" -> gf{name}"));
    }
    BranchGen {
        stages,
        line,
        fields,
    }
}

/// A grouper: its text and the fields its group records carry.
fn grouper(rng: &mut Rng, name: &str, all: &[&'static str]) -> (String, Vec<&'static str>) {
    let n_modules = rng.range(0, 4);
    let mut modules: Vec<Vec<String>> = Vec::new();
    let mut keyed_in: Vec<Vec<&str>> = Vec::new();
    for _ in 0..n_modules {
        let mut rules = Vec::new();
        let mut keys = Vec::new();
        if !chance(rng, 10) {
            for f in all {
                if chance(rng, 45) {
                    rules.push(format!("{f} = {f}"));
                    keys.push(*f);
                }
            }
            if chance(rng, 40) {
                let d = rng.range(0, 3_000);
                rules.push(format!("etime < stime rdelta {d}ms"));
            }
            if chance(rng, 20) {
                let f = pick(rng, &["srcport", "dstport", "bytes"]);
                rules.push(format!("{f} = {f} delta {}", rng.range(0, 3)));
            }
            if chance(rng, 15) {
                rules.push("srcip = dstip".into());
            }
        }
        modules.push(rules);
        keyed_in.push(keys);
    }
    let mut text = format!("grouper g{name} {{\n");
    for (i, rules) in modules.iter().enumerate() {
        text.push_str(&format!("  module m{i} {{ {} }}\n", rules.join("\n    ")));
    }
    if modules.is_empty() {
        text.push_str("  aggregate count(rec_id) as n\n}\n");
        return (text, all.to_vec());
    }
    let mut fields: Vec<&'static str> = all
        .iter()
        .copied()
        .filter(|f| keyed_in.iter().all(|k| k.contains(f)))
        .collect();
    // Plain aggregates of non-key fields: the first member's value, which
    // the merger may compare but which is not shared by the group.
    let mut aggs = vec!["count(rec_id) as n".to_string()];
    for f in all {
        if !fields.contains(f) && chance(rng, 30) {
            aggs.push((*f).to_string());
            fields.push(f);
        }
    }
    text.push_str(&format!("  aggregate {}\n}}\n", aggs.join(", ")));
    (text, fields)
}

/// An equality between two fields of the same type of branches x and y.
fn equality(rng: &mut Rng, x: &str, fx: &[&str], y: &str, fy: &[&str]) -> Option<String> {
    if fx.is_empty() {
        return None;
    }
    let f = pick(rng, fx);
    let same: Vec<&str> = fy
        .iter()
        .copied()
        .filter(|g| is_ip(g) == is_ip(f))
        .collect();
    if same.is_empty() {
        return None;
    }
    let g = if fy.contains(&f) && chance(rng, 60) {
        f
    } else {
        pick(rng, &same)
    };
    Some(format!("{x}.{f} = {y}.{g}"))
}

const ALLEN: &[&str] = &[
    "{x} < {y}",
    "{x} o {y} OR {y} o {x} OR {x} d {y} OR {y} d {x} OR {x} eq {y} OR {x} s {y} OR {x} f {y}",
    "NOT {x} > {y}",
    "{x} m {y} delta 5s OR {x} < {y}",
];

/// Rule lines of a merger module over `members` (indexes into `gens`).
fn module_rules(rng: &mut Rng, members: &[usize], gens: &[BranchGen]) -> Vec<String> {
    let mut lines = Vec::new();
    let n = rng.range(1, 5);
    for _ in 0..n {
        let i = members[rng.range(0, members.len() as u64) as usize];
        let mut j = members[rng.range(0, members.len() as u64) as usize];
        if i == j {
            j = members[(members.iter().position(|m| *m == i).unwrap_or(0) + 1) % members.len()];
        }
        let (x, y) = (BRANCHES[i], BRANCHES[j]);
        let (fx, fy) = (&gens[i].fields, &gens[j].fields);
        match rng.range(0, 10) {
            0..=4 => lines.extend(equality(rng, x, fx, y, fy)),
            5 | 6 => {
                // A swapped address pair (both addresses on both sides).
                let both = |f: &[&str]| f.contains(&"srcip") && f.contains(&"dstip");
                if both(fx) && both(fy) {
                    lines.push(format!("{x}.srcip = {y}.dstip"));
                    lines.push(format!("{x}.dstip = {y}.srcip"));
                } else {
                    lines.extend(equality(rng, x, fx, y, fy));
                }
            }
            7 => {
                let a = equality(rng, x, fx, y, fy);
                let b = equality(rng, x, fx, y, fy);
                if let (Some(a), Some(b)) = (a, b) {
                    lines.push(format!("{a} OR {b}"));
                }
            }
            8 => {
                let rule = pick(rng, ALLEN);
                lines.push(rule.replace("{x}", x).replace("{y}", y));
            }
            _ => lines.push(format!("{x}.count >= {y}.count")),
        }
    }
    lines
}

/// A random query that compiles.
fn query(seed: u64) -> String {
    let mut rng = Rng::new(seed);
    let n = rng.range(1, 4) as usize;
    let merged = n > 1 || chance(&mut rng, 20);
    let mut gens: Vec<BranchGen> = (0..n).map(|i| branch(&mut rng, BRANCHES[i])).collect();
    if !merged && !gens[0].line.contains("->") {
        // A branch line needs a stage.
        gens[0].stages.push_str("filter fA { prot = 6 }\n");
        gens[0].line.push_str(" -> fA");
    }
    let mut src = String::new();
    for g in &gens {
        src.push_str(&g.stages);
    }
    if merged {
        src.push_str("merger M {\n");
        // With three branches, C is sometimes only a difference module's.
        let veto = n == 3 && chance(&mut rng, 35);
        let export: Vec<usize> = if veto { vec![0, 1] } else { (0..n).collect() };
        let names: Vec<&str> = export.iter().map(|i| BRANCHES[*i]).collect();
        let rules = if export.len() > 1 {
            module_rules(&mut rng, &export, &gens)
        } else {
            vec!["A.count >= 1".to_string()]
        };
        src.push_str(&format!(
            "  module m1 {{ branches {}\n    {}\n  }}\n",
            names.join(", "),
            rules.join("\n    ")
        ));
        if veto {
            let rules = module_rules(&mut rng, &[0, 2], &gens);
            src.push_str(&format!(
                "  module veto {{ branches A, C\n    {}\n  }}\n",
                rules.join("\n    ")
            ));
        }
        src.push_str("  export m1\n}\nungroup U {}\n");
    }
    for g in &gens {
        src.push_str(&g.line);
        src.push_str(if merged { " -> M\n" } else { "\n" });
    }
    if merged {
        src.push_str("M -> U -> \"out\"\n");
    }
    src
}

fn compile(src: &str) -> Arc<Plan> {
    match compile_source("q", "q.flowy", src) {
        Ok(p) => Arc::new(p),
        Err(d) => panic!("the generated query does not compile:\n{d}\n{src}"),
    }
}

// ------------------------------------------------------------------- traces

fn addr(rng: &mut Rng) -> Option<IpAddr> {
    Some(match rng.range(0, 12) {
        0 => return None,
        1 => IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
        n => IpAddr::V4(Ipv4Addr::new(10, 0, 0, (n % 4) as u8)),
    })
}

fn port(rng: &mut Rng) -> Option<u16> {
    [None, Some(80), Some(80), Some(1024), Some(1025), Some(53)][rng.range(0, 6) as usize]
}

/// Small value domains so that groups and joins form; some fields absent.
fn trace(seed: u64, n: usize) -> Vec<Record> {
    let mut rng = Rng::new(seed ^ 0x9e37_79b9_7f4a_7c15);
    let mut t = 1_700_000_000_000i64;
    (0..n)
        .map(|i| {
            t += rng.range(0, 1_500) as i64;
            let len = rng.range(0, 4_000) as i64;
            Record::from(RecordFields {
                rec_id: i as u64,
                srcip: addr(&mut rng),
                dstip: addr(&mut rng),
                srcport: port(&mut rng),
                dstport: port(&mut rng),
                prot: [None, Some(6), Some(6), Some(17)][rng.range(0, 4) as usize],
                bytes: Some(rng.range(40, 44)),
                packets: Some(1),
                stime: t,
                etime: t + len,
                ..RecordFields::default()
            })
        })
        .collect()
}

// ------------------------------------------------------------------- checks

/// The key's values of a record, computed here from the parts: a field's
/// value, or the two values of a pair sorted (structurally).
fn values(k: &KeySpec, r: &Record) -> Vec<Vec<Option<Value>>> {
    k.parts()
        .iter()
        .map(|p| match p {
            KeyPart::Field(f) => vec![r.get(*f)],
            KeyPart::Unordered(a, b) => {
                let mut v = vec![r.get(*a), r.get(*b)];
                v.sort();
                v
            }
        })
        .collect()
}

fn members(m: &Match) -> impl Iterator<Item = &Record> {
    m.groups
        .iter()
        .flat_map(|g| g.members.iter().map(AsRef::as_ref))
        .chain(m.records().iter().map(|(_, r)| r.as_ref()))
}

fn ids(plan: &Plan, ms: &[Match]) -> Vec<u64> {
    let mut v: Vec<u64> = ms.iter().map(|m| m.id(&plan.name)).collect();
    v.sort_unstable();
    v
}

/// Above this many matches a run is not split (a cross product, slow).
const MAX_MATCHES: usize = 20_000;

/// Check both properties; the number of matches of the whole run, or
/// `None` when the query is global (nothing to check).
fn check(plan: &Arc<Plan>, recs: &[Record], window: Option<i64>) -> Result<Option<usize>, String> {
    let key = plan.partition_key();
    let split: Option<&KeySpec> = match &key {
        PartitionKey::Global(_) => return Ok(None),
        PartitionKey::Keyed(k) => Some(k),
        PartitionKey::Any => None,
    };
    let whole = run_batch(plan.clone(), recs.to_vec(), window);
    for m in &whole {
        match split {
            None => {
                let n = members(m)
                    .map(|r| r.rec_id())
                    .collect::<std::collections::BTreeSet<_>>();
                if n.len() != 1 {
                    return Err(format!("an Any query has a match of records {n:?}"));
                }
            }
            Some(k) => {
                let first = members(m).next().ok_or("a match without records")?;
                let (want, hash) = (values(k, first), k.hash(first));
                for r in members(m) {
                    if values(k, r) != want || k.hash(r) != hash {
                        return Err(format!(
                            "key {k}: record {} has {:?}, record {} has {:?}",
                            first.rec_id(),
                            want,
                            r.rec_id(),
                            values(k, r)
                        ));
                    }
                }
            }
        }
    }
    if whole.len() > MAX_MATCHES {
        return Ok(Some(whole.len()));
    }
    let want = ids(plan, &whole);
    for n in 1..=4u32 {
        let mut parts: Vec<Vec<Record>> = vec![Vec::new(); n as usize];
        for (i, r) in recs.iter().enumerate() {
            // `Any` may go anywhere: spread round robin.
            let p = split.map_or(i as u32 % n, |k| k.partition(r, n));
            parts[p as usize].push(r.clone());
        }
        let mut got: Vec<Match> = Vec::new();
        for part in parts {
            got.extend(run_batch(plan.clone(), part, window));
        }
        let got = ids(plan, &got);
        if got != want {
            return Err(format!(
                "key {key}, {n} partitions: {} matches against {} in one run",
                got.len(),
                want.len()
            ));
        }
    }
    Ok(Some(whole.len()))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn partitioned_runs_find_exactly_the_matches_of_one_run(
        seed in any::<u64>(),
        n in 10usize..300,
        window in prop::option::of(4_000i64..40_000),
    ) {
        let src = query(seed);
        let plan = compile(&src);
        // Three-branch joins grow as the cube of the groups: fewer records.
        let n = if plan.branches.len() == 3 { n / 2 } else { n };
        let recs = trace(seed, n);
        if let Err(e) = check(&plan, &recs, window) {
            return Err(TestCaseError::fail(format!("{e}\nkey: {}\n{src}", plan.partition_key())));
        }
    }
}

/// The generator is not vacuous: it makes every kind of key, and keyed
/// queries that find matches of several records spread over partitions.
#[test]
fn the_generator_covers_every_kind_of_key() {
    let (mut any, mut ordered, mut pair, mut global, mut keyed_multi) = (0, 0, 0, 0, 0);
    for seed in 1..=400u64 {
        let src = query(seed);
        let plan = compile(&src);
        match plan.partition_key() {
            PartitionKey::Any => any += 1,
            PartitionKey::Global(_) => global += 1,
            PartitionKey::Keyed(k) => {
                if k.parts()
                    .iter()
                    .any(|p| matches!(p, KeyPart::Unordered(..)))
                {
                    pair += 1;
                } else {
                    ordered += 1;
                }
                let recs = trace(seed, 60);
                let whole = run_batch(plan.clone(), recs, None);
                let spread = whole.iter().any(|m| {
                    let ids: std::collections::BTreeSet<u64> =
                        members(m).map(|r| r.rec_id()).collect();
                    ids.len() > 1
                });
                keyed_multi += usize::from(spread);
            }
        }
    }
    let counts = format!(
        "any {any}, ordered {ordered}, pair {pair}, global {global}, keyed with multi-record matches {keyed_multi}"
    );
    eprintln!("{counts}");
    assert!(
        any >= 10 && ordered >= 40 && pair >= 5 && global >= 40,
        "{counts}"
    );
    assert!(keyed_multi >= 30, "{counts}");
}

/// A key the plan does not imply breaks exactness, and the check sees it:
/// the test above would catch an unsound derivation.
#[test]
fn a_wrong_key_is_caught() {
    let plan = example("http-download");
    let recs = trace_gen::generate(3_000, 600_000, 40, 5);
    let wrong = KeySpec::new(vec![KeyPart::Field(Field::SrcIp)]).expect("a key");
    let whole = ids(&plan, &run_batch(plan.clone(), recs.clone(), None));
    let mut parts: Vec<Vec<Record>> = vec![Vec::new(); 4];
    for r in &recs {
        parts[wrong.partition(r, 4) as usize].push(r.clone());
    }
    let split: Vec<Match> = parts
        .into_iter()
        .flat_map(|p| run_batch(plan.clone(), p, None))
        .collect();
    assert!(!whole.is_empty());
    assert_ne!(ids(&plan, &split), whole);
}

fn example(name: &str) -> Arc<Plan> {
    let path = format!("{}/config/queries/{name}.flowy", env!("CARGO_MANIFEST_DIR"));
    let source = std::fs::read_to_string(&path).expect("example query");
    Arc::new(compile_source(name, &path, &source).expect("compiles"))
}

/// The shipped examples over the synthetic HTTP trace (client/server pairs,
/// DNS, noise), with and without windows.
#[test]
fn shipped_examples_split_exactly() {
    for (name, want) in [
        ("http-download", "{srcip, dstip}"),
        ("skype", "srcip"),
        ("ipv6-failure", "srcip"),
    ] {
        let plan = example(name);
        assert_eq!(plan.partition_key().to_string(), want, "{name}");
        for (seed, window) in [(1, None), (2, Some(60_000))] {
            let recs = trace_gen::generate(4_000, 900_000, 60, seed);
            match check(&plan, &recs, window) {
                Ok(Some(n)) => assert!(name != "http-download" || n > 20, "{name}: {n} matches"),
                Ok(None) => panic!("{name} is global"),
                Err(e) => panic!("{name}: {e}"),
            }
        }
    }
}
