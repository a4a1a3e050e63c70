//! `engine.max_state` in the daemon (SPEC §3.2 "Bounded memory"): an
//! exporter re-sending old flows makes late records join open groups; the
//! engine state gauge stays within the budget, the open groups given up
//! early are counted by kind, and a rate-limited warning says so.

#[path = "daemon_support/mod.rs"]
mod support;

use std::path::Path;
use std::time::Duration;

use support::daemon::{example_query, Daemon};
use support::netflow::{now_ms, v5, Flow};

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

const MAX: f64 = 256.0 * 1024.0;
const PAIRS: u16 = 8;

/// Requests of a few client pairs to one web server, `n` of them, from
/// `t0` on, `step` ms apart.
fn requests(first: u32, n: u32, t0: i64, step: i64) -> Vec<Flow> {
    (0..n)
        .map(|i| {
            let pair = (first + i) as u16 % PAIRS;
            let t = t0 + i64::from(i) * step;
            Flow::tcp(
                &format!("10.9.0.{}", pair + 1),
                42_000 + pair,
                "198.51.100.7",
                80,
                600,
                t,
                t + 50,
            )
        })
        .collect()
}

#[test]
fn late_records_joining_open_groups_are_bounded_by_max_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let q = example_query("http-download");
    let mut d = Daemon::start(
        dir.path(),
        &[
            "--query",
            path_str(&q),
            "--output",
            path_str(&dir.path().join("o.jsonl")),
        ],
        &[
            ("FLOWY__ENGINE__MAX_STATE", "256KiB"),
            ("FLOWY__ENGINE__LATENESS", "1s"),
            ("FLOWY__ENGINE__WINDOW", "none"),
        ],
    );
    let t0 = now_ms() - 60_000;
    // Current flows: one open group per pair, W = t0 + 20 s - 1 s.
    let current = requests(0, 40, t0, 500);
    let mut seq = 0;
    for chunk in current.chunks(30) {
        d.send(&v5(now_ms(), seq, chunk));
        seq += chunk.len() as u32;
    }
    d.wait_processed(40);
    assert_eq!(d.metric("flowy_engine_state_max_bytes", ""), MAX);
    assert_eq!(
        d.metric("flowy_engine_state_evictions_total", "kind=\"open_group\""),
        0.0
    );
    // The exporter re-sends old flows: all late, all joining open groups.
    let old = requests(0, 3_000, t0, 3);
    for (i, chunk) in old.chunks(30).enumerate() {
        d.send(&v5(now_ms(), seq, chunk));
        seq += chunk.len() as u32;
        if i % 10 == 9 {
            let used = d.metric("flowy_engine_state_bytes", "");
            assert!(used <= MAX, "engine state {used} > max_state {MAX}");
            // Paced so the socket buffer never overflows.
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    d.wait_processed(3_040);
    d.wait_until("open groups closed early", Duration::from_secs(20), |d| {
        d.metric("flowy_engine_state_evictions_total", "kind=\"open_group\"") > 0.0
    });
    let m = d.scrape();
    let used = m
        .get("flowy_engine_state_bytes")
        .copied()
        .unwrap_or(f64::MAX);
    assert!(used > 0.0 && used <= MAX, "engine state {used}");
    d.wait_log("max_state", Duration::from_secs(10));
    assert!(d.terminate().success());
}
