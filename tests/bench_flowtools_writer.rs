//! The end-to-end bench's flow-tools writer (benches/support/e2e/flowtools.rs)
//! writes files that `flowy query` reads back field for field, and names
//! them as flow-tools rotates, so that `--input DIR` takes them in order.

mod support;

use std::collections::BTreeMap;
use std::net::IpAddr;

use flowy::record::{Record, RecordFields};
use support::{flowy, json_lines, parse_ms, trace_gen};

#[allow(dead_code)]
#[path = "../benches/support/e2e/flowtools.rs"]
mod flowtools;

/// Every record its own match, with all its fields.
const PASS_ALL: &str =
    "splitter S {}\nungrouper U {}\n\"input\" -> S\nS branch A -> U\nU -> \"output\"\n";

/// The records `flowy query` read from `input`, by rec_id.
fn read_back(dir: &std::path::Path, input: &std::path::Path) -> BTreeMap<u64, serde_json::Value> {
    let q = dir.join("all.flowy");
    std::fs::write(&q, PASS_ALL).unwrap();
    let lines = json_lines(&flowy(&[
        "query",
        q.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--no-records",
    ]));
    lines
        .into_iter()
        .map(|m| {
            let f = m["groups"][0]["fields"].clone();
            (f["rec_id"].as_u64().unwrap(), f)
        })
        .collect()
}

fn ip(a: Option<IpAddr>) -> String {
    a.unwrap().to_string()
}

#[test]
fn written_records_read_back_field_for_field() {
    let dir = tempfile::tempdir().unwrap();
    let records = trace_gen::generate(3_000, 120_000, 50, 7);
    let path = dir.path().join("trace.ftz");
    flowtools::write(&path, &records).unwrap();
    let got = read_back(dir.path(), &path);
    assert_eq!(got.len(), records.len());
    for (i, r) in records.iter().enumerate() {
        // rec_id is the index in the file, which is the trace's order.
        let f = &got[&(i as u64)];
        assert_eq!(f["srcip"], ip(r.srcip()), "record {i}");
        assert_eq!(f["dstip"], ip(r.dstip()), "record {i}");
        assert_eq!(f["exporter"], ip(r.exporter()), "record {i}");
        assert_eq!(f["srcport"], r.srcport().unwrap(), "record {i}");
        assert_eq!(f["dstport"], r.dstport().unwrap(), "record {i}");
        assert_eq!(f["prot"], r.prot().unwrap(), "record {i}");
        assert_eq!(f["bytes"], r.bytes().unwrap(), "record {i}");
        assert_eq!(f["packets"], r.packets().unwrap(), "record {i}");
        assert_eq!(f["tcp_flags"], r.tcp_flags().unwrap(), "record {i}");
        assert_eq!(
            parse_ms(f["stime"].as_str().unwrap()),
            r.stime(),
            "record {i}"
        );
        assert_eq!(
            parse_ms(f["etime"].as_str().unwrap()),
            r.etime(),
            "record {i}"
        );
    }
}

#[test]
fn rotation_names_order_the_files_of_a_directory() {
    assert_eq!(
        flowtools::rotation_name(1_795_420_800_000 + 3_723_000).unwrap(),
        "ft-v05.2026-11-23.090203+0000"
    );
    let dir = tempfile::tempdir().unwrap();
    let flows = dir.path().join("flows");
    std::fs::create_dir(&flows).unwrap();
    let base: Vec<Record> = trace_gen::generate(500, 10_000, 20, 3);
    let first = base.iter().map(|r| r.stime()).min().unwrap();
    let shift = 3_600_000;
    // Written newest first: only the names can put them in order.
    for k in (0..3i64).rev() {
        let copy: Vec<Record> = base
            .iter()
            .map(|r| {
                Record::from(RecordFields {
                    stime: r.stime() + k * shift,
                    etime: r.etime() + k * shift,
                    ..r.clone().fields()
                })
            })
            .collect();
        let name = flowtools::rotation_name(first + k * shift).unwrap();
        flowtools::write(&flows.join(name), &copy).unwrap();
    }
    let got = read_back(dir.path(), &flows);
    assert_eq!(got.len(), 3 * base.len());
    // rec_id counts records in reading order: the k-th file's records
    // carry ids k·n.. and its times.
    for (id, f) in &got {
        let k = (*id / base.len() as u64) as i64;
        let r = &base[*id as usize % base.len()];
        assert_eq!(
            parse_ms(f["stime"].as_str().unwrap()),
            r.stime() + k * shift,
            "rec_id {id}"
        );
    }
}
