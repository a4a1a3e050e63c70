//! Match output alone: `MatchFormatter::append` of one realistic
//! HTTP-download match (two groups with a union set, ~10 records with every
//! v5 field) into a reused buffer, as JSON and as text, with and without
//! records.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

use flowy::engine::{run_batch, Match};
use flowy::output::{MatchFormatter, OutputFormat};
use flowy::query::plan::Plan;
use flowy::record::{Record, RecordFields};

const QUERY: &str = include_str!("../config/queries/http-download.flowy");
const T0: i64 = 1_795_424_381_003;

fn ip(a: u8, b: u8, c: u8, d: u8) -> Option<IpAddr> {
    Some(IpAddr::V4(Ipv4Addr::new(a, b, c, d)))
}

/// A flow with every NetFlow v5 field set.
fn flow(rec_id: u64, request: bool, port: u16, stime: i64) -> Record {
    let (client, server) = (ip(10, 0, 0, 5), ip(198, 51, 100, 7));
    let (srcip, dstip, srcport, dstport) = if request {
        (client, server, port, 80)
    } else {
        (server, client, 80, port)
    };
    Record::from(RecordFields {
        rec_id,
        exporter: ip(192, 0, 2, 1),
        srcip,
        dstip,
        nexthop: ip(192, 0, 2, 254),
        srcport: Some(srcport),
        dstport: Some(dstport),
        prot: Some(6),
        tcp_flags: Some(27),
        tos: Some(0),
        bytes: Some(612 + rec_id * 1000),
        packets: Some(5 + rec_id),
        stime,
        etime: stime + 1115,
        input: Some(2),
        output: Some(3),
        src_as: Some(64500),
        dst_as: Some(64501),
        src_mask: Some(24),
        dst_mask: Some(16),
        sampling: None,
        extra: Vec::new(),
    })
}

/// Five request flows and five responses between one host pair, chained
/// closely enough that each branch forms one group and the merger pairs them.
fn http_match() -> (Plan, Match) {
    let plan = match flowy::query::compile_source("http-download", "http-download.flowy", QUERY) {
        Ok(p) => p,
        Err(e) => panic!("bench query does not compile: {e}"),
    };
    let mut records = Vec::new();
    for i in 0..5u16 {
        let t = T0 + i64::from(i) * 300;
        let port = 51234 + i;
        records.push(flow(records.len() as u64, true, port, t));
        records.push(flow(records.len() as u64, false, port, t + 10));
    }
    let plan = Arc::new(plan);
    let mut matches = run_batch(plan.clone(), records, None);
    let m = matches.pop().expect("the bench records form one match");
    assert_eq!(m.groups.len(), 2, "two groups per match");
    (Plan::clone(&plan), m)
}

fn bench(c: &mut Criterion) {
    let (plan, m) = http_match();
    let mut g = c.benchmark_group("output");
    g.throughput(Throughput::Elements(1));
    for (label, format, records) in [
        ("json", OutputFormat::Json, true),
        ("json_no_records", OutputFormat::Json, false),
        ("text", OutputFormat::Text, true),
    ] {
        let mut f = MatchFormatter::new("http-download", format, records);
        let mut buf = Vec::with_capacity(1 << 16);
        g.bench_function(label, |b| {
            b.iter(|| {
                buf.clear();
                f.append(black_box(&plan), black_box(&m), &mut buf);
                black_box(buf.len())
            });
        });
    }
    g.finish();
}

#[path = "support/allocator.rs"]
mod allocator;

criterion_group! {
    name = benches;
    config = allocator::as_the_binary();
    targets = bench
}
criterion_main!(benches);
