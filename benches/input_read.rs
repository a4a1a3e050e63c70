//! Reading throughput of `flowy query`'s input (SPEC §3.1): the large nfql
//! trace (flow-tools, zlib) read into a Vec (`read_inputs`) and streamed
//! record by record without holding them (`stream_inputs`).
//! Run: `cargo bench --bench input_read`; elements/s = records/s.

use std::path::{Path, PathBuf};

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use flowy::input::{self, InputOptions};

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

fn reading(c: &mut Criterion) {
    let args = [trace("trace-2012.ftz")];
    let opts = InputOptions::default();
    let records = input::read_inputs(&args, &opts, |_| {})
        .expect("the trace reads")
        .0
        .len();
    let mut g = c.benchmark_group("trace-2012.ftz");
    g.throughput(Throughput::Elements(records as u64));
    g.sample_size(20);
    g.bench_function("read_inputs", |b| {
        b.iter(|| {
            black_box(
                input::read_inputs(&args, &opts, |_| {})
                    .expect("read")
                    .0
                    .len(),
            )
        })
    });
    g.bench_function("stream_inputs", |b| {
        b.iter(|| {
            let mut n = 0u64;
            input::stream_inputs(&args, &opts, |_| {}, |r| n += black_box(r).rec_id() & 1)
                .expect("read");
            black_box(n)
        })
    });
    g.finish();
}

criterion_group!(benches, reading);
criterion_main!(benches);
