//! `output.format = "csv"` in a real `flowy serve`: one header per file,
//! none repeated when SIGHUP reopens the same file, a new one after
//! logrotate moved the file away.

#[path = "daemon_support/mod.rs"]
mod support;

use std::path::Path;
use std::time::Duration;

use support::daemon::{example_query, Daemon};
use support::netflow::{http_session, now_ms, v5};

const HEADER: &str = "query,match,match_id,branch,rec_id,";

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

/// One HTTP session of client `10.9.0.{n}`, starting at `t`.
fn session(d: &Daemon, n: u8, t: i64) {
    let client = format!("10.9.0.{n}");
    d.send(&v5(
        now_ms(),
        u32::from(n) * 2,
        &http_session(&client, 42_000 + u16::from(n), "198.51.100.7", t),
    ));
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// The match numbers of the file's rows; the header must be its first
/// line and only there.
fn matches(path: &Path) -> Vec<u64> {
    let lines = lines(path);
    assert!(lines[0].starts_with(HEADER), "{lines:?}");
    let mut numbers: Vec<u64> = lines[1..]
        .iter()
        .map(|l| {
            assert!(!l.starts_with(HEADER), "a second header: {lines:?}");
            l.split(',')
                .nth(1)
                .expect("a match column")
                .parse()
                .expect("a number")
        })
        .collect();
    numbers.dedup();
    numbers
}

#[test]
fn one_header_per_file_across_reopens() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("matches.csv");
    let rotated = dir.path().join("matches.csv.1");
    let q = example_query("http-download");
    let mut d = Daemon::start(
        dir.path(),
        &["--query", path_str(&q), "--output", path_str(&out)],
        &[
            ("FLOWY__ENGINE__LATENESS", "0s"),
            ("FLOWY__OUTPUT__FORMAT", "csv"),
        ],
    );
    let t0 = now_ms() - 240_000;
    session(&d, 1, t0);
    // W = max stime (lateness 0): each session closes the one before.
    session(&d, 2, t0 + 60_000);
    d.wait_until("first match written", Duration::from_secs(20), |_| {
        lines(&out).len() >= 2
    });

    // Reopening the same file continues it: no second header.
    d.signal(libc::SIGHUP);
    d.wait_log("output reopened", Duration::from_secs(10));
    session(&d, 3, t0 + 120_000);
    d.wait_until("second match written", Duration::from_secs(20), |_| {
        lines(&out).len() >= 3 && matches(&out).len() == 2
    });

    std::fs::rename(&out, &rotated).expect("rotate");
    d.signal(libc::SIGHUP);
    d.wait_log_count("output reopened", 2, Duration::from_secs(10));
    session(&d, 4, t0 + 180_000);
    d.wait_until("a match in the new file", Duration::from_secs(20), |_| {
        lines(&out).len() >= 2
    });
    assert!(d.terminate().success());
    assert_eq!(matches(&rotated), [1, 2]);
    // Shutdown closes the last session: match 4.
    assert_eq!(matches(&out), [3, 4]);
}
