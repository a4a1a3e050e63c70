//! Helpers for the daemon tests: export builders, capture writers and a
//! handle on a running `flowy serve` child process.
// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

pub mod daemon;
pub mod nats;
pub mod netflow;
pub mod packets;
pub mod softflowd;
pub mod traffic;
