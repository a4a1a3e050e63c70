//! Allocator settings for a long-running, allocation-heavy process.
//!
//! The engine allocates and frees group state, record batches and output
//! buffers at a high rate while its total footprint stays roughly level.
//! glibc's defaults hand freed memory back to the kernel as soon as 128 KiB
//! sit free at the top of a heap and serve buffers above a (moving) size
//! threshold with their own `mmap`; every such round trip comes back as
//! fresh pages the kernel must fault in and zero. Profiles of `flowy serve`
//! under load showed a fifth of the engine's CPU in `clear_page_erms` from
//! exactly that churn. Keeping freed memory in the process trades a bounded
//! amount of resident memory for that work.

/// Free memory kept at the top of a heap before it is returned to the kernel.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_THRESHOLD: libc::c_int = 256 << 20;
/// Extra memory requested whenever a heap grows, so that growth is rare.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TOP_PAD: libc::c_int = 16 << 20;
/// Allocations at least this large get their own mapping; setting it also
/// stops glibc from moving the threshold on its own.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 32 << 20;

/// Apply the settings above. Call once, before the process starts threads;
/// a no-op on platforms without glibc.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; called before any
    // other thread exists, so nothing allocates concurrently.
    unsafe {
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
        libc::mallopt(libc::M_TOP_PAD, TOP_PAD);
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
    }
}
