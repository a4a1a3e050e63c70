//! The HTTP-download query end to end, checked against a plain reference
//! computation of its meaning (tests/support/brute.rs) over the same records.

mod engine_support;
mod support;

use std::collections::BTreeSet;

use engine_support::match_ids;
use flowy::input;
use support::brute::{self, GroupSig};
use support::{flowy, json_lines, match_sig, match_sigs, ms, repo, trace, trace_gen};

const QUERY: &str = "config/queries/http-download.flowy";

fn run(trace_name: &str, extra: &[&str]) -> Vec<serde_json::Value> {
    let q = repo(QUERY);
    let path = trace(trace_name);
    let mut args = vec![
        "query",
        q.to_str().unwrap(),
        "--input",
        path.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    json_lines(&flowy(&args))
}

fn check_trace(name: &str) -> usize {
    let recs = input::read_file(&trace(name), None).unwrap();
    let expected = brute::http_download(&recs);
    let lines = run(name, &["--no-records"]);
    for (i, m) in lines.iter().enumerate() {
        assert_eq!(m["query"], "http-download");
        assert_eq!(m["match"], i as u64 + 1);
    }
    let got = match_sigs(&lines);
    assert_eq!(got.len(), expected.len(), "number of matches on {name}");
    assert_eq!(got, expected, "matches on {name}");
    got.len()
}

#[test]
fn http_download_on_trace_2009() {
    check_trace("trace-2009.ftz");
}

#[test]
fn http_download_on_trace_2012() {
    let n = check_trace("trace-2012.ftz");
    assert!(n > 0, "the 2012 trace holds HTTP downloads");
}

/// The IPFIX file of the 2009 trace (another exporter format, another
/// reader) gives the same matches as its flow-tools file.
#[test]
fn http_download_same_on_ipfix_and_flow_tools() {
    let ftz = match_sigs(&run("trace-2009.ftz", &["--no-records"]));
    let ipfix = match_sigs(&run("trace-2009.ipfix", &["--no-records"]));
    assert!(!ftz.is_empty());
    assert_eq!(ftz, ipfix);
}

/// The ungrouper: each match's records are exactly its groups' members,
/// once each, ordered by (stime, rec_id), labelled with the first branch
/// (in the module's order B, A) whose group holds them.
#[test]
fn http_download_records_are_the_groups_members() {
    let name = "trace-2012.ftz";
    let recs = input::read_file(&trace(name), None).unwrap();
    let lines = run(name, &[]);
    assert!(!lines.is_empty());
    for m in &lines {
        let sig: Vec<GroupSig> = match_sig(m);
        let records = m["records"].as_array().unwrap();
        let ids: Vec<u64> = records
            .iter()
            .map(|r| r["rec_id"].as_u64().unwrap())
            .collect();
        let unique: BTreeSet<u64> = ids.iter().copied().collect();
        assert_eq!(unique.len(), ids.len(), "records deduplicated");
        let keys: Vec<(i64, u64)> = records
            .iter()
            .map(|r| (ms(&r["stime"]), r["rec_id"].as_u64().unwrap()))
            .collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted, "records ordered by stime, rec_id");
        for (branch, g) in ["B", "A"].iter().zip(&sig) {
            assert_eq!(g.branch, *branch);
            let members: Vec<&serde_json::Value> =
                records.iter().filter(|r| r["branch"] == *branch).collect();
            assert_eq!(members.len(), g.count);
            let st = members.iter().map(|r| ms(&r["stime"])).min().unwrap();
            let et = members.iter().map(|r| ms(&r["etime"])).max().unwrap();
            assert_eq!((st, et), (g.stime, g.etime));
        }
        for r in records {
            let rec = &recs[r["rec_id"].as_u64().unwrap() as usize];
            assert_eq!(ms(&r["stime"]), rec.stime());
            let port = if r["branch"] == "A" {
                &r["dstport"]
            } else {
                &r["srcport"]
            };
            assert_eq!(port, 80);
        }
    }
}

/// The library path (compile + run_batch) on a synthetic trace with many
/// sessions, against the same reference.
#[test]
fn http_download_on_a_synthetic_trace() {
    let recs = trace_gen::generate(30_000, 600_000, 300, 7);
    let expected = brute::http_download(&recs);
    assert!(expected.len() > 100, "the generator makes downloads");
    let plan = flowy::query::compile_file(&repo(QUERY)).unwrap();
    let plan = std::sync::Arc::new(plan);
    let matches = flowy::engine::run_batch(plan.clone(), recs.clone(), None);
    let mut got: Vec<Vec<GroupSig>> = matches
        .iter()
        .map(|m| {
            m.groups
                .iter()
                .map(|g| {
                    let first = &g.members[0];
                    GroupSig {
                        branch: plan.branches[g.branch].name.clone(),
                        stime: g.stime,
                        etime: g.etime,
                        count: g.members.len(),
                        srcip: first.srcip(),
                        dstip: first.dstip(),
                    }
                })
                .collect()
        })
        .collect();
    got.sort();
    assert_eq!(got, expected);
}

/// `flowy query` takes matches from the engine as they are found: the
/// merger's buffer is handed over every few hundred matches while the
/// branches' groups are still being fed in, and nothing changes in what or
/// in which order matches come out.
#[test]
fn batch_matches_are_handed_over_while_the_run_goes_on() {
    use flowy::engine::{Engine, EngineConfig, Match};
    let recs = trace_gen::generate(30_000, 600_000, 300, 7);
    let plan = std::sync::Arc::new(flowy::query::compile_file(&repo(QUERY)).unwrap());
    let run = |drain: &mut dyn FnMut(&mut Vec<Match>)| {
        let mut e = Engine::new(plan.clone(), EngineConfig::batch(None));
        let mut out = Vec::new();
        for r in recs.clone() {
            e.push(std::sync::Arc::new(r), &mut out);
        }
        e.finish_with(&mut out, drain);
        out
    };
    let all = run(&mut |_| {});
    assert!(
        all.len() > 1_000,
        "the trace must give many matches ({})",
        all.len()
    );
    let mut handed: Vec<Match> = Vec::new();
    let mut calls = 0;
    let rest = run(&mut |out: &mut Vec<Match>| {
        calls += 1;
        handed.append(out);
    });
    assert!(calls > 1, "handed over {calls} times");
    assert!(rest.len() < 256, "{} matches left at the end", rest.len());
    handed.extend(rest);
    assert_eq!(match_ids(&handed), match_ids(&all));
    let mut streamed = Vec::new();
    flowy::engine::run_batch_with(plan.clone(), recs.clone(), None, |m| streamed.push(m));
    assert_eq!(match_ids(&streamed), match_ids(&all));
}
