//! `--format csv`: the rows say what the JSON output's records say, read
//! back with the `csv` crate (an RFC 4180 reader that is not ours).

mod support;

use std::collections::BTreeMap;

use serde_json::Value as Json;
use support::{flowy, json_lines, repo, stderr, trace};

/// The columns a record's field may have; any other field is an extra.
const RECORD_COLUMNS: [&str; 21] = [
    "rec_id",
    "exporter",
    "srcip",
    "dstip",
    "nexthop",
    "srcport",
    "dstport",
    "prot",
    "tcp_flags",
    "tos",
    "bytes",
    "packets",
    "input",
    "output",
    "src_as",
    "dst_as",
    "src_mask",
    "dst_mask",
    "sampling",
    "stime",
    "etime",
];

/// One row as column name → cell.
type Row = BTreeMap<String, String>;

fn run(query: &str, input: &str, extra_args: &[&str], format: &str) -> std::process::Output {
    let mut args = vec!["query", query, "--input", input, "--format", format];
    args.extend_from_slice(extra_args);
    flowy(&args)
}

/// The rows of a successful CSV run; the header must be its first line and
/// appear only there.
fn csv_rows(o: &std::process::Output) -> (Vec<String>, Vec<Row>) {
    assert!(o.status.success(), "flowy failed: {}", stderr(o));
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(&o.stdout[..]);
    let header: Vec<String> = reader
        .headers()
        .expect("a header line")
        .iter()
        .map(str::to_string)
        .collect();
    let mut rows = Vec::new();
    for rec in reader.records() {
        let rec = rec.expect("a well-formed row");
        assert_eq!(rec.len(), header.len(), "{rec:?}");
        assert_ne!(rec.iter().collect::<Vec<_>>(), header, "a second header");
        rows.push(
            header
                .iter()
                .cloned()
                .zip(rec.iter().map(str::to_string))
                .collect(),
        );
    }
    (header, rows)
}

fn cell(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        Json::Number(n) => n.to_string(),
        other => panic!("a record value that is neither string nor number: {other}"),
    }
}

fn unescape(s: &str) -> String {
    s.replace("%3B", ";").replace("%25", "%")
}

/// The `extra` cell as name → value.
fn extras(cell: &str) -> BTreeMap<String, String> {
    if cell.is_empty() {
        return BTreeMap::new();
    }
    cell.split(';')
        .map(|pair| {
            let (k, v) = pair.split_once('=').expect("name=value");
            (k.to_string(), unescape(v))
        })
        .collect()
}

/// The rows the JSON lines call for, `extra` as a map beside them.
fn expected_rows(lines: &[Json]) -> Vec<(Row, BTreeMap<String, String>)> {
    let mut out = Vec::new();
    for m in lines {
        let omitted = m.get("records_omitted").map_or(0, |n| n.as_u64().unwrap());
        for r in m["records"].as_array().expect("records") {
            let r = r.as_object().unwrap();
            let mut row = Row::new();
            row.insert("query".into(), cell(&m["query"]));
            row.insert("match".into(), cell(&m["match"]));
            row.insert("match_id".into(), cell(&m["match_id"]));
            row.insert("branch".into(), cell(&r["branch"]));
            for c in RECORD_COLUMNS {
                row.insert(c.into(), r.get(c).map(cell).unwrap_or_default());
            }
            row.insert("records_omitted".into(), omitted.to_string());
            let extra = r
                .iter()
                .filter(|(k, _)| *k != "branch" && !RECORD_COLUMNS.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), cell(v)))
                .collect();
            out.push((row, extra));
        }
    }
    out
}

/// Runs `query` over `input` in both formats and checks row for row.
/// Returns the number of rows.
fn csv_equals_json(query: &str, input: &str, args: &[&str]) -> usize {
    let lines = json_lines(&run(query, input, args, "json"));
    let (header, rows) = csv_rows(&run(query, input, args, "csv"));
    assert_eq!(&header[..4], ["query", "match", "match_id", "branch"]);
    let expected = expected_rows(&lines);
    assert_eq!(rows.len(), expected.len());
    for (mut got, (want, want_extra)) in rows.into_iter().zip(expected) {
        let extra = extras(&got.remove("extra").expect("an extra column"));
        assert_eq!(got, want);
        assert_eq!(extra, want_extra, "extras of {want:?}");
    }
    expected_len(&lines)
}

fn expected_len(lines: &[Json]) -> usize {
    lines
        .iter()
        .map(|m| m["records"].as_array().map_or(0, Vec::len))
        .sum()
}

/// A grouped query: several rows per match, some matches cut by
/// `--max-records` (their rows say how many records were left out).
#[test]
fn grouped_rows_equal_the_json_records() {
    let q = repo("tests/data/udp-by-srcip.flowy");
    let input = trace("trace-2009.ftz");
    let (q, input) = (q.to_str().unwrap(), input.to_str().unwrap());
    let lines = json_lines(&run(q, input, &["--max-records", "3"], "json"));
    assert!(
        lines.iter().any(|m| m.get("records_omitted").is_some()),
        "the test wants matches cut by --max-records"
    );
    let n = csv_equals_json(q, input, &["--max-records", "3"]);
    assert!(n > lines.len(), "{n} rows for {} matches", lines.len());
}

/// nfcapd records with next hops, AS numbers, masks and IANA extras
/// (VLANs, BGP next hops).
#[test]
fn rows_with_extras_equal_the_json_records() {
    let dir = tempfile::tempdir().unwrap();
    let q = dir.path().join("everything.flowy");
    std::fs::write(
        &q,
        "splitter S {}\nfilter all {\n    bytes >= 0\n}\n\"input\" -> S\nS branch A -> all\n",
    )
    .unwrap();
    let input = repo("tests/data/nfcapd/ipfix-ext.nfcapd");
    let n = csv_equals_json(q.to_str().unwrap(), input.to_str().unwrap(), &[]);
    assert!(n > 0);
    let (_, rows) = csv_rows(&run(
        q.to_str().unwrap(),
        input.to_str().unwrap(),
        &[],
        "csv",
    ));
    assert!(
        rows.iter().any(|r| r["extra"].contains("vlanId=")),
        "{rows:?}"
    );
}

/// Text values that need CSV quoting and extra escaping survive the trip.
#[test]
fn awkward_text_survives() {
    let dir = tempfile::tempdir().unwrap();
    let q = dir.path().join("q, \"quoted\".flowy");
    std::fs::write(
        &q,
        "splitter S {}\nfilter all {\n    bytes >= 0\n}\n\"input\" -> S\nS branch A -> all\n",
    )
    .unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(
        &input,
        concat!(
            r#"{"srcip":"10.0.0.1","dstip":"10.0.0.2","stime":1000,"etime":1500,"bytes":1,"interfaceName":"eth0, \"up\"; 5%\nx"}"#,
            "\n",
            r#"{"srcip":"2001:db8::1","stime":2000,"bytes":2}"#,
            "\n"
        ),
    )
    .unwrap();
    let (q, input) = (q.to_str().unwrap(), input.to_str().unwrap());
    assert_eq!(csv_equals_json(q, input, &[]), 2);
    let (_, rows) = csv_rows(&run(q, input, &[], "csv"));
    assert_eq!(rows[0]["query"], "q, \"quoted\"");
    assert_eq!(rows[0]["extra"], "interfaceName=eth0, \"up\"%3B 5%25\nx");
    assert_eq!(rows[1]["srcip"], "2001:db8::1");
    assert_eq!(rows[1]["dstip"], "");
    assert_eq!(rows[1]["stime"], "1970-01-01T00:00:02.000Z");
}

#[test]
fn without_records_one_row_per_match() {
    let q = repo("tests/data/udp-by-srcip.flowy");
    let input = trace("trace-2009.ftz");
    let (q, input) = (q.to_str().unwrap(), input.to_str().unwrap());
    let lines = json_lines(&run(q, input, &["--no-records"], "json"));
    let (header, rows) = csv_rows(&run(q, input, &["--no-records"], "csv"));
    assert!(!lines.is_empty());
    assert_eq!(rows.len(), lines.len());
    for (row, m) in rows.iter().zip(&lines) {
        assert_eq!(row["match"], cell(&m["match"]));
        assert_eq!(row["match_id"], cell(&m["match_id"]));
        for c in &header[3..] {
            assert_eq!(row[c], "", "{c}");
        }
    }
}

#[test]
fn an_empty_result_is_the_header_alone() {
    let dir = tempfile::tempdir().unwrap();
    let q = dir.path().join("none.flowy");
    std::fs::write(
        &q,
        "splitter S {}\nfilter none {\n    bytes > 18446744073709551614\n}\n\"input\" -> S\nS branch A -> none\n",
    )
    .unwrap();
    let input = trace("trace-2009.ftz");
    let o = run(q.to_str().unwrap(), input.to_str().unwrap(), &[], "csv");
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8(o.stdout).unwrap();
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(
        out.starts_with("query,match,match_id,branch,rec_id,"),
        "{out}"
    );
}

#[test]
fn the_daemon_accepts_csv() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("flowy.toml");
    std::fs::write(&cfg, "[output]\nformat = \"csv\"\n").unwrap();
    let o = flowy(&["serve", "--check-config", "--config", cfg.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    std::fs::write(&cfg, "[output]\nformat = \"xml\"\n").unwrap();
    let o = flowy(&["serve", "--check-config", "--config", cfg.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("\"csv\""), "{}", stderr(&o));
}
