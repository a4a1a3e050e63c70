//! The HTTP-download query end to end (compile + batch run) over a synthetic
//! trace of about 1.16 M records, and the flow-tools reader on trace-2012.
//!
//! Run: `cargo bench --bench http_query`

use std::path::{Path, PathBuf};
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};

#[path = "../tests/support/trace_gen.rs"]
mod trace_gen;

const RECORDS: usize = 1_160_000;

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn http_query(c: &mut Criterion) {
    let query = repo("config/queries/http-download.flowy");
    let source = std::fs::read_to_string(&query).expect("config/queries/http-download.flowy");
    // One hour of flow time from 20 000 clients.
    let records = trace_gen::generate(RECORDS, 3_600_000, 20_000, 42);
    let mut group = c.benchmark_group("http_query");
    group.sample_size(10);
    group.bench_function(format!("http-download {} records", records.len()), |b| {
        b.iter_batched(
            || records.clone(),
            |recs| {
                let plan =
                    flowy::query::compile_source("http-download", "http-download.flowy", &source)
                        .expect("the query compiles");
                flowy::engine::run_batch(Arc::new(plan), recs, None)
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

fn read_flow_tools(c: &mut Criterion) {
    let trace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|d| d.join("shared/data/nfql-traces/trace-2012.ftz"))
        .find(|p| p.is_file());
    let Some(trace) = trace else {
        eprintln!("trace-2012.ftz not found beside the repository; skipping the reader bench");
        return;
    };
    let mut group = c.benchmark_group("read");
    group.sample_size(20);
    group.bench_function("flow-tools trace-2012.ftz (276 449 records)", |b| {
        b.iter(|| flowy::input::read_file(&trace, None).expect("the trace reads"))
    });
    group.finish();
}

#[path = "support/allocator.rs"]
mod allocator;

criterion_group! {
    name = benches;
    config = allocator::as_the_binary();
    targets = http_query, read_flow_tools
}
criterion_main!(benches);
