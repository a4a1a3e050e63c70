//! Single-branch queries whose answers are easy to compute by hand from the
//! decoded records, run through the real binary.

mod support;

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;

use flowy::input;
use support::{flowy, json_lines, ms, repo, trace};

#[test]
fn every_tcp_port_80_record_is_a_match() {
    let path = trace("trace-2009.ftz");
    let recs = input::read_file(&path, None).unwrap();
    let mut expected: Vec<u64> = recs
        .iter()
        .filter(|r| r.prot() == Some(6) && r.dstport() == Some(80))
        .map(|r| r.rec_id())
        .collect();
    expected.sort();
    assert!(!expected.is_empty());

    let q = repo("tests/data/tcp-port80.flowy");
    let out = flowy(&[
        "query",
        q.to_str().unwrap(),
        "--input",
        path.to_str().unwrap(),
    ]);
    let lines = json_lines(&out);
    let mut got: Vec<u64> = Vec::new();
    for (i, m) in lines.iter().enumerate() {
        assert_eq!(m["query"], "tcp-port80");
        assert_eq!(m["match"], i as u64 + 1);
        assert_eq!(m["groups"].as_array().unwrap().len(), 1);
        assert_eq!(m["groups"][0]["count"], 1);
        let records = m["records"].as_array().unwrap();
        assert_eq!(records.len(), 1);
        let r = &records[0];
        assert_eq!(r["branch"], "A");
        assert_eq!(
            (r["prot"].as_u64(), r["dstport"].as_u64()),
            (Some(6), Some(80))
        );
        let rec = &recs[r["rec_id"].as_u64().unwrap() as usize];
        assert_eq!(ms(&r["stime"]), rec.stime());
        assert_eq!(ms(&r["etime"]), rec.etime());
        assert_eq!(
            r["srcip"].as_str(),
            rec.srcip().map(|a| a.to_string()).as_deref()
        );
        assert_eq!(r["bytes"].as_u64(), rec.bytes());
        assert_eq!(r["exporter"], "127.0.0.1");
        // A single-record group carries the record's fields.
        assert_eq!(m["groups"][0]["fields"]["rec_id"], r["rec_id"]);
        got.push(r["rec_id"].as_u64().unwrap());
    }
    got.sort();
    assert_eq!(got, expected);
}

#[derive(Default, Debug, PartialEq)]
struct PerKey {
    count: u64,
    bytes: u64,
    stime: i64,
    etime: i64,
    ports: BTreeSet<u64>,
}

fn add(e: &mut PerKey, r: &flowy::record::Record, port: u64) {
    if e.count == 0 {
        e.stime = r.stime();
        e.etime = r.etime();
    }
    e.count += 1;
    e.bytes += r.bytes().unwrap_or(0);
    e.stime = e.stime.min(r.stime());
    e.etime = e.etime.max(r.etime());
    e.ports.insert(port);
}

#[test]
fn udp_groups_by_source_address() {
    let path = trace("trace-2012.ftz");
    let recs = input::read_file(&path, None).unwrap();
    let mut expected: HashMap<IpAddr, PerKey> = HashMap::new();
    for r in recs.iter().filter(|r| r.prot() == Some(17)) {
        let key = r.srcip().unwrap();
        add(
            expected.entry(key).or_default(),
            r,
            u64::from(r.dstport().unwrap()),
        );
    }
    assert!(expected.len() > 1);

    let q = repo("tests/data/udp-by-srcip.flowy");
    let out = flowy(&[
        "query",
        q.to_str().unwrap(),
        "--input",
        path.to_str().unwrap(),
        "--no-records",
    ]);
    let lines = json_lines(&out);
    let mut got: HashMap<IpAddr, PerKey> = HashMap::new();
    for m in &lines {
        assert!(m.get("records").is_none());
        let g = &m["groups"][0];
        let f = &g["fields"];
        let key: IpAddr = f["srcip"].as_str().unwrap().parse().unwrap();
        assert_eq!(f["n"], g["count"]);
        let entry = PerKey {
            count: g["count"].as_u64().unwrap(),
            bytes: f["bytes"].as_u64().unwrap(),
            stime: ms(&g["stime"]),
            etime: ms(&g["etime"]),
            ports: f["dstports"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p.as_u64().unwrap())
                .collect(),
        };
        assert!(got.insert(key, entry).is_none(), "two groups for {key}");
    }
    assert_eq!(got.len(), expected.len());
    for (k, e) in &expected {
        assert_eq!(got.get(k), Some(e), "srcip {k}");
    }
}

#[test]
fn busy_tcp_ports_pass_the_group_filter() {
    let path = trace("trace-2012.ftz");
    let recs = input::read_file(&path, None).unwrap();
    let mut per_port: HashMap<u64, PerKey> = HashMap::new();
    for r in recs.iter().filter(|r| r.prot() == Some(6)) {
        let port = u64::from(r.dstport().unwrap());
        add(per_port.entry(port).or_default(), r, port);
    }
    per_port.retain(|_, e| e.count >= 50);
    assert!(!per_port.is_empty());

    let q = repo("tests/data/tcp-busy-dstport.flowy");
    let out = flowy(&[
        "query",
        q.to_str().unwrap(),
        "--input",
        path.to_str().unwrap(),
        "--no-records",
    ]);
    let lines = json_lines(&out);
    assert_eq!(lines.len(), per_port.len());
    for m in &lines {
        let g = &m["groups"][0];
        let port = g["fields"]["dstport"].as_u64().unwrap();
        let e = &per_port[&port];
        assert_eq!(g["count"].as_u64(), Some(e.count), "port {port}");
        assert_eq!(g["fields"]["bytes"].as_u64(), Some(e.bytes), "port {port}");
        assert_eq!(ms(&g["stime"]), e.stime);
        assert_eq!(ms(&g["etime"]), e.etime);
        // max(etime) is a time: printed as RFC 3339.
        assert_eq!(ms(&g["fields"]["last_end"]), e.etime);
    }
}

#[test]
fn text_format_has_a_summary_line_per_match() {
    let path = trace("trace-2009.ftz");
    let q = repo("tests/data/tcp-port80.flowy");
    let json = flowy(&[
        "query",
        q.to_str().unwrap(),
        "--input",
        path.to_str().unwrap(),
    ]);
    let matches = json_lines(&json).len();
    let out = flowy(&[
        "query",
        q.to_str().unwrap(),
        "--input",
        path.to_str().unwrap(),
        "--format",
        "text",
    ]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let summaries = text
        .lines()
        .filter(|l| l.starts_with("tcp-port80 #"))
        .count();
    let records = text.lines().filter(|l| l.starts_with("    A ")).count();
    assert_eq!((summaries, records), (matches, matches));
}

/// A batch run's output is one result (SPEC §3.1): a second run replaces
/// the file instead of appending a second `"match":1`.
#[test]
fn output_file_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let out_path = dir.path().join("matches.jsonl");
    let path = trace("trace-2009.ftz");
    let q = repo("tests/data/tcp-port80.flowy");
    let mut runs = Vec::new();
    for _ in 0..2 {
        let o = flowy(&[
            "query",
            q.to_str().unwrap(),
            "--input",
            path.to_str().unwrap(),
            "--output",
            out_path.to_str().unwrap(),
        ]);
        assert!(o.status.success());
        assert!(o.stdout.is_empty());
        runs.push(std::fs::read_to_string(&out_path).unwrap());
    }
    let n = runs[1].lines().count();
    assert!(n > 0);
    assert_eq!(runs[0].lines().count(), n, "the second run appended");
    let firsts = runs[1]
        .lines()
        .filter(|l| l.contains("\"match\":1,"))
        .count();
    assert_eq!(firsts, 1);
}

/// With `--window`, groups do not span tumbling windows (aligned to
/// multiples of the window in epoch time): one group per (srcip, window).
#[test]
fn window_splits_groups_at_window_boundaries() {
    const WINDOW: i64 = 60_000;
    let path = trace("trace-2012.ftz");
    let recs = input::read_file(&path, None).unwrap();
    let mut expected: HashMap<(IpAddr, i64), PerKey> = HashMap::new();
    for r in recs.iter().filter(|r| r.prot() == Some(17)) {
        let key = (r.srcip().unwrap(), r.stime().div_euclid(WINDOW));
        add(
            expected.entry(key).or_default(),
            r,
            u64::from(r.dstport().unwrap()),
        );
    }
    let q = repo("tests/data/udp-by-srcip.flowy");
    let out = flowy(&[
        "query",
        q.to_str().unwrap(),
        "--input",
        path.to_str().unwrap(),
        "--no-records",
        "--window",
        "1m",
    ]);
    let lines = json_lines(&out);
    let mut got: HashMap<(IpAddr, i64), (u64, u64)> = HashMap::new();
    for m in &lines {
        let g = &m["groups"][0];
        let ip: IpAddr = g["fields"]["srcip"].as_str().unwrap().parse().unwrap();
        let key = (ip, ms(&g["stime"]).div_euclid(WINDOW));
        let v = (
            g["count"].as_u64().unwrap(),
            g["fields"]["bytes"].as_u64().unwrap(),
        );
        assert!(got.insert(key, v).is_none(), "two groups for {key:?}");
    }
    let sources: std::collections::HashSet<IpAddr> = expected.keys().map(|k| k.0).collect();
    assert!(
        expected.len() > sources.len(),
        "the trace spans several windows"
    );
    assert_eq!(got.len(), expected.len());
    for (k, e) in &expected {
        assert_eq!(got.get(k), Some(&(e.count, e.bytes)), "{k:?}");
    }
}
