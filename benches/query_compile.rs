//! The `query` fuzz target's work on its corpus: `flowy::fuzzing::query`
//! (compile, then explain or render the diagnostics) of every file of
//! `fuzz/corpus/query/` and, when present, of the grown corpus in
//! `/tmp/fuzzwork/query/` (or the directories listed in
//! `FLOWY_QUERY_CORPUS`, separated by `:`).
//!
//! Run: `cargo bench --bench query_compile`; criterion reports elements/s =
//! files compiled per second, the rate libFuzzer can reach at best.
//! Profile: `cargo bench --bench query_compile -- --profile-time 30` under
//! `perf record -g`.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn corpus_dirs() -> Vec<PathBuf> {
    if let Ok(dirs) = std::env::var("FLOWY_QUERY_CORPUS") {
        return dirs.split(':').map(PathBuf::from).collect();
    }
    let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/query");
    vec![seeds, PathBuf::from("/tmp/fuzzwork/query")]
}

/// Every regular file of the corpus directories, in a stable order.
fn corpus() -> Vec<Vec<u8>> {
    let mut paths: Vec<PathBuf> = corpus_dirs()
        .iter()
        .filter_map(|dir| std::fs::read_dir(dir).ok())
        .flatten()
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.is_file())
        .collect();
    paths.sort();
    paths
        .iter()
        .filter_map(|path| std::fs::read(path).ok())
        .collect()
}

fn query_compile(c: &mut Criterion) {
    let files = corpus();
    assert!(!files.is_empty(), "no query corpus found");
    let bytes: usize = files.iter().map(Vec::len).sum();
    eprintln!("query corpus: {} files, {bytes} bytes", files.len());
    let mut group = c.benchmark_group("query_compile");
    group.throughput(Throughput::Elements(files.len() as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    group.bench_function("fuzz_corpus", |b| {
        b.iter(|| {
            for file in &files {
                let _ = black_box(flowy::fuzzing::query(black_box(file)));
            }
        })
    });
    group.finish();
}

criterion_group!(benches, query_compile);
criterion_main!(benches);
