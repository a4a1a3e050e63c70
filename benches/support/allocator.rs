//! The `flowy` binary tunes the allocator before it starts
//! (`src/memory.rs`); the in-process benches run the engine under the same
//! settings. Included with `#[path]` by the benches that need it.

use criterion::Criterion;

/// Criterion's default configuration, after the binary's allocator settings.
pub fn as_the_binary() -> Criterion {
    flowy::memory::tune_allocator();
    Criterion::default()
}
