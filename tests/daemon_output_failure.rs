//! SPEC §4.5 "Output failure", with a real `flowy serve` child whose
//! standard output is a pipe the test never reads or closes: the shutdown
//! deadline holds, lost matches are logged and counted, the exit status is
//! 1, and `output.when_full = "drop"` drops and counts.

#[path = "daemon_support/mod.rs"]
mod support;

use std::process::ExitStatus;
use std::time::Duration;

use support::daemon::{example_query, Daemon, Stdout};
use support::netflow::{http_session, now_ms, v5, Flow};

/// Send `n` HTTP sessions of distinct clients starting at `t0` (1 ms
/// apart), then one more session `clock_ms` later whose stime moves W
/// (lateness 0) past all of them, so their matches are emitted at once.
/// `net` keeps the clients of separate calls apart.
fn send_sessions(d: &Daemon, net: u8, n: u16, t0: i64, clock_ms: i64) {
    let mut flows: Vec<Flow> = (0..n)
        .flat_map(|i| {
            let client = format!("10.{net}.{}.{}", i / 250, i % 250 + 1);
            http_session(&client, 40_000 + i, "198.51.100.7", t0 + i64::from(i))
        })
        .collect();
    flows.extend(http_session(
        &format!("10.{net}.255.1"),
        39_999,
        "198.51.100.7",
        t0 + clock_ms,
    ));
    for (seq, chunk) in flows.chunks(30).enumerate() {
        d.send(&v5(now_ms(), (seq * 30) as u32, chunk));
    }
}

fn start(env: &[(&str, &str)]) -> (tempfile::TempDir, Daemon) {
    let dir = tempfile::tempdir().expect("tempdir");
    let q = example_query("http-download");
    let mut all = vec![("FLOWY__ENGINE__LATENESS", "0s")];
    all.extend_from_slice(env);
    let d = Daemon::start_with(
        dir.path(),
        &["--query", q.to_str().expect("utf-8")],
        &all,
        Stdout::Hold,
    );
    (dir, d)
}

/// The final log line: it must be an ERROR saying `N matches not written`;
/// returns N and the (dropped, failed, queued) break-down.
fn final_loss(d: &Daemon) -> (u64, [u64; 3]) {
    let log = d.log_lines();
    let last = log.last().expect("some log");
    assert!(
        last.contains("ERROR") && last.contains("matches not written"),
        "final line is not the loss report: {last}\nlog:\n{}",
        log.join("\n")
    );
    // "... N matches not written (D dropped ..., F lost ..., P still queued ...)"
    let at = last.find(" matches not written").expect("loss report");
    let n: u64 = last[..at]
        .rsplit(' ')
        .next()
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("no count before 'matches not written': {last}"));
    let words: Vec<&str> = last[at..].split_whitespace().collect();
    let after = |w: &str| -> u64 {
        let i = words.iter().position(|x| *x == w).expect(w);
        words[i - 1].trim_start_matches('(').parse().expect(w)
    };
    let parts = [after("dropped"), after("lost"), after("still")];
    assert_eq!(n, parts.iter().sum::<u64>(), "{last}");
    (n, parts)
}

fn exit_code(s: ExitStatus) -> Option<i32> {
    s.code()
}

#[test]
fn sigterm_with_a_stalled_stdout_ends_within_the_deadline_and_reports_the_loss() {
    let (_dir, mut d) = start(&[("FLOWY__DAEMON__SHUTDOWN_TIMEOUT", "2s")]);
    let n = 1_000;
    send_sessions(&d, 1, n, now_ms() - 200_000, 100_000);
    d.wait_until("matches formed", Duration::from_secs(30), |d| {
        d.metric("flowy_merger_matches_total", "") >= f64::from(n)
    });
    std::thread::sleep(Duration::from_millis(500));
    let m = d.scrape();

    d.signal(libc::SIGTERM);
    // Before the fix the process never ended; bounded here by the helper.
    let status = d.wait_exit(Duration::from_secs(20));
    assert_eq!(exit_code(status), Some(1), "{status:?}");
    assert!(
        support::daemon::sum_metric(&m, "flowy_output_queue_bytes", "") > 0.0,
        "{m:#?}"
    );
    let written = support::daemon::sum_metric(&m, "flowy_output_lines_total", "");
    assert!(written < f64::from(n), "nobody reads: {written} written");
    let (lost, [dropped, failed, queued]) = final_loss(&d);
    assert_eq!((dropped, failed), (0, 0));
    // Every match not in the pipe's buffer is reported; the clock
    // session's match comes at shutdown.
    assert!(lost >= u64::from(n) - written as u64, "{lost} lost");
    assert!(lost <= u64::from(n) + 1, "{lost} lost");
    assert_eq!(queued, lost);
    assert!(d
        .log_lines()
        .iter()
        .any(|l| l.contains("did not finish within daemon.shutdown_timeout")));
}

#[test]
fn a_reader_that_goes_away_is_an_error_with_the_count_and_exit_status_1() {
    let (_dir, mut d) = start(&[]);
    let t0 = now_ms() - 300_000;
    let first = 40;
    send_sessions(&d, 2, first, t0, 60_000);
    d.wait_until("first matches written", Duration::from_secs(30), |d| {
        d.metric("flowy_output_lines_total", "") == f64::from(first)
    });
    d.close_stdout();

    let second = 100;
    send_sessions(&d, 3, second, t0 + 120_000, 60_000);
    // The second batch and the first batch's clock session match now.
    let lost_now = f64::from(second) + 1.0;
    d.wait_until("write errors counted", Duration::from_secs(30), |d| {
        d.metric("flowy_output_write_errors_total", "") == lost_now
    });
    let not_written = d.metric("flowy_output_not_written_total", "");

    let status = d.terminate();
    assert_eq!(exit_code(status), Some(1), "{status:?}");
    assert_eq!(not_written, lost_now);
    let logged = d.wait_log("output write failed", Duration::from_secs(5));
    assert!(
        logged.contains("ERROR") && logged.contains("matches not written"),
        "{logged}"
    );
    let (lost, [dropped, failed, queued]) = final_loss(&d);
    // Plus the second batch's clock session, emitted at shutdown.
    assert_eq!(lost, u64::from(second) + 2);
    assert_eq!((dropped, failed, queued), (0, lost, 0));
}

#[test]
fn when_full_drop_drops_and_counts_instead_of_stalling() {
    let (_dir, mut d) = start(&[
        ("FLOWY__OUTPUT__WHEN_FULL", "drop"),
        ("FLOWY__OUTPUT__BUFFER", "16KiB"),
        ("FLOWY__DAEMON__SHUTDOWN_TIMEOUT", "2s"),
    ]);
    let n = 1_000;
    send_sessions(&d, 4, n, now_ms() - 200_000, 100_000);
    d.wait_until(
        "matches handed to the output",
        Duration::from_secs(30),
        |d| d.metric("flowy_output_matches_total", "") >= f64::from(n),
    );
    let m = d.scrape();
    let dropped = support::daemon::sum_metric(&m, "flowy_output_dropped_total", "");
    assert!(dropped > 0.0, "{m:#?}");
    assert!(support::daemon::sum_metric(&m, "flowy_output_queue_bytes", "") <= 16_384.0 * 2.0);
    assert_eq!(
        support::daemon::sum_metric(&m, "flowy_output_not_written_total", ""),
        dropped
    );
    // Dropping keeps the pipeline moving: everything received is processed.
    d.wait_processed(2 * u64::from(n) + 2);

    d.signal(libc::SIGTERM);
    let status = d.wait_exit(Duration::from_secs(20));
    assert_eq!(exit_code(status), Some(1), "{status:?}");
    let (lost, [final_dropped, failed, _queued]) = final_loss(&d);
    assert!(final_dropped >= dropped as u64);
    assert_eq!(failed, 0);
    assert!(lost >= final_dropped);
    let warned = d.wait_log("output queue full", Duration::from_secs(1));
    assert!(warned.contains("matches not written"), "{warned}");
}

#[test]
fn when_full_block_holds_the_queue_at_its_bound_and_drops_nothing() {
    let (_dir, mut d) = start(&[
        ("FLOWY__OUTPUT__BUFFER", "16KiB"),
        ("FLOWY__DAEMON__SHUTDOWN_TIMEOUT", "2s"),
    ]);
    let n = 1_000;
    send_sessions(&d, 5, n, now_ms() - 200_000, 100_000);
    d.wait_until("matches formed", Duration::from_secs(30), |d| {
        d.metric("flowy_merger_matches_total", "") >= f64::from(n)
    });
    // The queue fills to its bound and stays there: the formatter waits.
    d.wait_until("a full queue", Duration::from_secs(10), |d| {
        d.metric("flowy_output_queue_bytes", "") >= 8_192.0
    });
    std::thread::sleep(Duration::from_millis(300));
    let m = d.scrape();
    let queued = support::daemon::sum_metric(&m, "flowy_output_queue_bytes", "");
    // One chunk holds at most 16 KiB plus the match that crossed it.
    assert!(queued <= 32_768.0, "{queued} bytes queued");
    assert_eq!(
        support::daemon::sum_metric(&m, "flowy_output_dropped_total", ""),
        0.0
    );
    let handed = support::daemon::sum_metric(&m, "flowy_output_matches_total", "");
    let written = support::daemon::sum_metric(&m, "flowy_output_lines_total", "");
    assert!(written < handed, "{written} of {handed} written");

    d.signal(libc::SIGTERM);
    let status = d.wait_exit(Duration::from_secs(20));
    assert_eq!(exit_code(status), Some(1), "{status:?}");
    let (lost, [dropped, failed, queued]) = final_loss(&d);
    assert_eq!((dropped, failed), (0, 0));
    assert!(lost >= (handed - written) as u64, "{lost}");
    assert_eq!(queued, lost);
}
