//! `flowy query` streams (SPEC §3.1): exact by default (a first pass
//! measures the input's disorder), `--lateness D` bounds the reorder and
//! the run reports the late records and the lateness that would have been
//! exact; standard input is read once and still exact.

mod support;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use flowy::engine::run_batch;
use flowy::record::Record;
use serde_json::Value as Json;
use support::{flowy, json_lines, repo, stderr, trace_gen};

/// HTTP sessions and noise in flow-end (export) order, as JSON Lines.
fn write_trace(path: &Path, recs: &[Record]) {
    let mut out = String::new();
    for r in recs {
        let ip = |a: Option<std::net::IpAddr>| a.map(|a| a.to_string()).unwrap_or_default();
        out.push_str(&format!(
            "{{\"srcip\":\"{}\",\"dstip\":\"{}\",\"srcport\":{},\"dstport\":{},\"prot\":{},\"bytes\":{},\"packets\":{},\"tcp_flags\":{},\"stime\":{},\"etime\":{}}}\n",
            ip(r.srcip()),
            ip(r.dstip()),
            r.srcport().unwrap_or(0),
            r.dstport().unwrap_or(0),
            r.prot().unwrap_or(0),
            r.bytes().unwrap_or(0),
            r.packets().unwrap_or(0),
            r.tcp_flags().unwrap_or(0),
            r.stime(),
            r.etime()
        ));
    }
    std::fs::write(path, out).expect("write the trace");
}

/// Each match as its sorted member rec_ids.
fn matches_of(lines: &[Json]) -> Vec<Vec<u64>> {
    let mut v: Vec<Vec<u64>> = lines
        .iter()
        .map(|m| {
            let mut ids: Vec<u64> = m["records"]
                .as_array()
                .expect("records")
                .iter()
                .filter_map(|r| r["rec_id"].as_u64())
                .collect();
            ids.sort();
            ids
        })
        .collect();
    v.sort();
    v
}

/// The definition: every record seen before any group closes.
fn reference(recs: Vec<Record>) -> Vec<Vec<u64>> {
    let q = repo("config/queries/http-download.flowy");
    let plan = flowy::query::compile_file(&q).expect("compiles");
    let mut v: Vec<Vec<u64>> = run_batch(Arc::new(plan), recs, None)
        .iter()
        .map(|m| {
            let mut ids: Vec<u64> = m.records().iter().map(|(_, r)| r.rec_id()).collect();
            ids.sort();
            ids
        })
        .collect();
    v.sort();
    v
}

struct Case {
    _dir: tempfile::TempDir,
    file: String,
    recs: Vec<Record>,
}

fn case() -> Case {
    let dir = tempfile::tempdir().expect("tempdir");
    let recs = trace_gen::generate(6_000, 600_000, 60, 11);
    let path = dir.path().join("trace.jsonl");
    write_trace(&path, &recs);
    Case {
        file: path.to_string_lossy().into_owned(),
        _dir: dir,
        recs,
    }
}

fn query(file: &str, extra: &[&str]) -> std::process::Output {
    let q = repo("config/queries/http-download.flowy");
    let mut args = vec!["query", q.to_str().expect("utf-8"), "--input", file];
    args.extend_from_slice(extra);
    flowy(&args)
}

#[test]
fn exact_by_default_on_an_input_out_of_order() {
    let c = case();
    assert!(
        trace_gen::disorder(&c.recs) > 1_000,
        "the trace is out of order"
    );
    let out = query(&c.file, &[]);
    let got = matches_of(&json_lines(&out));
    let want = reference(c.recs.clone());
    assert!(want.len() > 50, "the trace has downloads: {}", want.len());
    assert_eq!(got, want);
    assert!(stderr(&out).contains(" 0 late,"), "{}", stderr(&out));
}

#[test]
fn a_short_lateness_reports_late_records_and_the_exact_lateness() {
    let c = case();
    let exact = trace_gen::disorder(&c.recs);
    let hint = if exact % 1000 == 0 {
        format!("{}s", exact / 1000)
    } else {
        format!("{exact}ms")
    };
    let out = query(&c.file, &["--lateness", "200ms"]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("more than --lateness 200ms behind")
            && err.contains("processed out of order")
            && err.contains(&format!("--lateness {hint} would have made the run exact")),
        "{err}"
    );
    assert!(!err.contains(" 0 late,"), "{err}");

    let dropped = query(&c.file, &["--lateness", "200ms", "--late", "drop"]);
    let err = stderr(&dropped);
    assert!(err.contains("were dropped (--late drop)"), "{err}");
    // Dropping the late records changes the result on this trace.
    let kept = matches_of(&json_lines(&dropped));
    assert_ne!(kept, reference(c.recs.clone()));

    // The lateness the report names is exact.
    let out = query(&c.file, &["--lateness", &hint]);
    assert!(stderr(&out).contains(" 0 late,"), "{}", stderr(&out));
    assert_eq!(matches_of(&json_lines(&out)), reference(c.recs));
}

#[test]
fn standard_input_is_read_once_and_exact() {
    let c = case();
    let q = repo("config/queries/http-download.flowy");
    let mut child = Command::new(env!("CARGO_BIN_EXE_flowy"))
        .args(["query", q.to_str().expect("utf-8"), "--input", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("flowy runs");
    let data = std::fs::read(&c.file).expect("trace");
    let mut stdin = child.stdin.take().expect("stdin");
    let writer = std::thread::spawn(move || stdin.write_all(&data));
    let out = child.wait_with_output().expect("flowy ends");
    writer.join().expect("writer").expect("written");
    assert_eq!(matches_of(&json_lines(&out)), reference(c.recs));
}

/// Every match carries a `match_id` made of the query and its records
/// (the same in every run) and the run's id (the same on every line of a
/// run, different between runs).
#[test]
fn match_ids_are_stable_across_runs_and_runs_are_told_apart() {
    let c = case();
    let ids_and_run = |o: &std::process::Output| {
        let lines = json_lines(o);
        let runs: std::collections::BTreeSet<String> = lines
            .iter()
            .map(|m| m["run"].as_str().expect("run").to_owned())
            .collect();
        assert_eq!(runs.len(), 1, "one run id per run");
        let ids: Vec<String> = lines
            .iter()
            .map(|m| m["match_id"].as_str().expect("match_id").to_owned())
            .collect();
        assert!(ids
            .iter()
            .all(|i| i.len() == 16 && i.bytes().all(|b| b.is_ascii_hexdigit())));
        let mut sorted = ids.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), ids.len(), "no two matches share an id");
        (sorted, runs.into_iter().next().unwrap_or_default())
    };
    let (ids1, run1) = ids_and_run(&query(&c.file, &["--no-records"]));
    let (ids2, run2) = ids_and_run(&query(&c.file, &[]));
    assert!(ids1.len() > 50);
    assert_eq!(ids1, ids2);
    assert_ne!(run1, run2);
}

/// `--max-records N`: a match with more records carries the first N (in
/// the usual stime, rec_id order) and `records_omitted`.
#[test]
fn long_matches_carry_the_first_records_and_a_count_of_the_rest() {
    let q = repo("tests/data/udp-by-srcip.flowy");
    let input = support::trace("trace-2012.ftz");
    let run = |extra: &[&str]| {
        let mut args = vec![
            "query",
            q.to_str().expect("utf-8"),
            "--input",
            input.to_str().expect("utf-8"),
        ];
        args.extend_from_slice(extra);
        json_lines(&flowy(&args))
    };
    let full = run(&["--max-records", "1000000"]);
    let cut = run(&["--max-records", "2"]);
    // The default (10 000) cuts trace-2012's busiest host.
    let default = run(&[]);
    assert!(default
        .iter()
        .any(|m| m["records_omitted"].as_u64() > Some(0)));
    assert_eq!(full.len(), cut.len());
    let mut omitted_somewhere = false;
    for (f, c) in full.iter().zip(&cut) {
        let all = f["records"].as_array().expect("records");
        let kept = c["records"].as_array().expect("records");
        assert_eq!(kept.as_slice(), &all[..all.len().min(2)]);
        match all.len().checked_sub(2).filter(|n| *n > 0) {
            Some(n) => {
                omitted_somewhere = true;
                assert_eq!(c["records_omitted"].as_u64(), Some(n as u64));
            }
            None => assert!(c.get("records_omitted").is_none()),
        }
        assert!(f.get("records_omitted").is_none());
    }
    assert!(omitted_somewhere);
    let o = flowy(&[
        "query",
        q.to_str().expect("utf-8"),
        "--input",
        "x",
        "--max-records",
        "0",
    ]);
    assert_eq!(o.status.code(), Some(2));
}

/// `flowy query` with the test knobs that make it guess a lateness after
/// its first batch, before its (delayed) first pass is in; `extra`
/// arguments after the input.
fn query_guessing(file: &str, extra: &[&str]) -> std::process::Output {
    let q = repo("config/queries/http-download.flowy");
    Command::new(env!("CARGO_BIN_EXE_flowy"))
        .args(["query", q.to_str().expect("utf-8"), "--input", file])
        .args(extra)
        .env("FLOWY_DEBUG_HOLD_STATE", "1")
        .env("FLOWY_DEBUG_SCAN_DELAY_MS", "400")
        .current_dir(repo(""))
        .output()
        .expect("the flowy binary runs")
}

/// HTTP sessions in `stime` order but for one early record moved into the
/// third batch (4096 records each), far behind everything read before it:
/// a lateness guessed after the first batch is too short, and W (which
/// exists from the second batch on) has passed the record when it comes.
fn trace_with_a_straggler(dir: &Path) -> (String, Vec<Record>) {
    let mut recs = trace_gen::generate(12_000, 600_000, 60, 5);
    recs.sort_by_key(|r| (r.stime(), r.rec_id()));
    let early = recs.remove(0);
    recs.insert(10_000, early);
    for (i, r) in recs.iter_mut().enumerate() {
        r.set_rec_id(i as u64);
    }
    let behind = trace_gen::disorder(&recs);
    assert!(
        behind > 60_000,
        "the moved record lies far behind: {behind}"
    );
    let path = dir.join("late.jsonl");
    write_trace(&path, &recs);
    (path.to_string_lossy().into_owned(), recs)
}

/// The JSON lines of an output file.
fn lines_of(path: &Path) -> Vec<Json> {
    std::fs::read_to_string(path)
        .expect("the output file")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

fn match_numbers(lines: &[Json]) -> Vec<u64> {
    lines.iter().filter_map(|m| m["match"].as_u64()).collect()
}

/// `got` is the exact result `want` and nothing else (no match of a
/// voided attempt), numbered from 1.
fn assert_exactly(got: &[Json], want: &[Vec<u64>]) {
    assert_eq!(got.len(), want.len(), "no match of the first attempt stays");
    assert_eq!(matches_of(got), want);
    assert_eq!(
        match_numbers(got),
        (1..=want.len() as u64).collect::<Vec<_>>()
    );
}

/// The first pass confirms the lateness the run guessed from its first
/// records: the held-back matches are written, the run is exact.
#[test]
fn a_guessed_lateness_the_first_pass_confirms_is_exact() {
    let c = case();
    let out = query_guessing(&c.file, &[]);
    let err = stderr(&out);
    assert_eq!(matches_of(&json_lines(&out)), reference(c.recs.clone()));
    assert!(err.contains(" 0 late,"), "{err}");
    assert!(!err.contains("evaluating again"), "{err}");
}

/// A record far behind everything read before it, after the first batch:
/// the guess from the first records is too short, the first pass says so,
/// and the run starts over under the measured lateness, writing nothing
/// of its first attempt.
#[test]
fn a_guessed_lateness_the_first_pass_refutes_starts_over() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (file, recs) = trace_with_a_straggler(dir.path());
    let out = query_guessing(&file, &[]);
    let err = stderr(&out);
    assert!(err.contains("evaluating again"), "{err}");
    assert!(err.contains(" 0 late,"), "{err}");
    assert_exactly(&json_lines(&out), &reference(recs));
}

/// Into a file, the run checks its guess itself (no first pass): the
/// straggler is late under the guess, the file is emptied and the run
/// starts over; the file then holds exactly the exact result, numbered
/// from 1.
#[test]
fn into_a_file_a_guess_the_run_finds_late_is_taken_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (file, recs) = trace_with_a_straggler(dir.path());
    let result = dir.path().join("out.jsonl");
    let out = query_guessing(&file, &["--output", result.to_str().expect("utf-8")]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("evaluating again"), "{err}");
    let got = lines_of(&result);
    let want = reference(recs);
    assert!(
        err.contains(&format!(" 0 late, {} matches", want.len())),
        "{err}"
    );
    assert_exactly(&got, &want);
}

/// Into a file, a guess no record contradicts stands: one pass, exact.
#[test]
fn into_a_file_a_guess_no_record_contradicts_is_exact() {
    let c = case();
    let dir = tempfile::tempdir().expect("tempdir");
    let result = dir.path().join("out.jsonl");
    let out = query_guessing(&c.file, &["--output", result.to_str().expect("utf-8")]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(!err.contains("evaluating again"), "{err}");
    assert!(err.contains(" 0 late,"), "{err}");
    assert_eq!(matches_of(&lines_of(&result)), reference(c.recs.clone()));
}

/// `/dev/null` keeps nothing: a run into it starts over the same way and
/// counts only the matches of the exact run.
#[test]
fn into_dev_null_a_failed_guess_counts_only_the_exact_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (file, recs) = trace_with_a_straggler(dir.path());
    let out = query_guessing(&file, &["--output", "/dev/null"]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("evaluating again"), "{err}");
    let want = reference(recs).len();
    assert!(err.contains(&format!(" 0 late, {want} matches")), "{err}");
}

/// Standard output appended to a file (`>> log`): a failed guess takes
/// back only what this run wrote; what the file held before stays.
#[test]
fn appended_to_a_file_a_failed_guess_keeps_what_was_there() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (file, recs) = trace_with_a_straggler(dir.path());
    let log = dir.path().join("log.jsonl");
    std::fs::write(&log, "{\"before\":true}\n").expect("write the log");
    let append = std::fs::OpenOptions::new()
        .append(true)
        .open(&log)
        .expect("open the log");
    let q = repo("config/queries/http-download.flowy");
    let out = Command::new(env!("CARGO_BIN_EXE_flowy"))
        .args(["query", q.to_str().expect("utf-8"), "--input", &file])
        .env("FLOWY_DEBUG_HOLD_STATE", "1")
        .stdout(Stdio::from(append))
        .current_dir(repo(""))
        .output()
        .expect("the flowy binary runs");
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("evaluating again"), "{err}");
    let lines = lines_of(&log);
    assert_eq!(
        lines[0]["before"],
        Json::Bool(true),
        "the earlier line stays"
    );
    assert_exactly(&lines[1..], &reference(recs));
}
