//! Encode and decode throughput of the cluster record-batch codec
//! (`flowy::cluster::codec`, SPEC §5) on the nfql 2009 trace as a collector
//! would publish it: cluster `rec_id`s, one exporter, all 556 records in one
//! batch. Run: `cargo bench --bench cluster_codec`; elements/s = records/s.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use flowy::cluster::codec::{cluster_rec_id, decode_batch, encode_batch};
use flowy::record::{Record, RecordFields};

/// The shared traces beside the repository (or an ancestor's `shared/`).
fn trace(name: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    root.ancestors()
        .skip(1)
        .map(|dir| dir.join("shared/data/nfql-traces"))
        .find(|dir| dir.is_dir())
        .unwrap_or_else(|| root.join("../shared/data/nfql-traces"))
        .join(name)
}

fn batch() -> Vec<Record> {
    let records = flowy::input::read_file(&trace("trace-2009.ftz"), None).expect("the trace reads");
    records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            Record::from(RecordFields {
                rec_id: cluster_rec_id(3, 1_000_000 + i as u64),
                exporter: r
                    .exporter()
                    .or(Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)))),
                ..r.clone().fields()
            })
        })
        .collect()
}

fn codec(c: &mut Criterion) {
    let records = batch();
    let sent = records.iter().map(|r| r.etime()).max().unwrap_or(0) + 5_000;
    let mut wire = Vec::new();
    encode_batch(3, sent, &records, &mut wire);
    eprintln!(
        "{} records, {} bytes: {:.1} bytes/record (size_of::<Record>() = {})",
        records.len(),
        wire.len(),
        wire.len() as f64 / records.len() as f64,
        std::mem::size_of::<Record>()
    );
    let mut g = c.benchmark_group("cluster_codec/trace-2009");
    g.throughput(Throughput::Elements(records.len() as u64));
    g.bench_function("encode", |b| {
        let mut out = Vec::with_capacity(wire.len());
        b.iter(|| {
            out.clear();
            encode_batch(3, sent, black_box(&records), &mut out);
            black_box(out.len())
        })
    });
    g.bench_function("decode", |b| {
        b.iter(|| {
            let (_, recs) = decode_batch(black_box(&wire)).expect("decodes");
            black_box(recs.len())
        })
    });
    g.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
