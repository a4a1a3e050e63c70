//! `flowy serve` as a child process: matches on SIGTERM, the embedded
//! defaults, SIGHUP reloads under load, and draining on shutdown.

#[path = "daemon_support/mod.rs"]
mod support;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::daemon::{example_query, final_counters, read_matches, Daemon};
use support::netflow::{http_session, now_ms, v5, Flow};

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

fn match_clients(matches: &[serde_json::Value], query: &str) -> Vec<String> {
    let mut out: Vec<String> = matches
        .iter()
        .filter(|m| m["query"] == query)
        .map(|m| {
            m["records"]
                .as_array()
                .and_then(|r| r.first())
                .map(|r| r["srcip"].as_str().unwrap_or_default().to_string())
                .unwrap_or_default()
        })
        .collect();
    out.sort();
    out
}

#[test]
fn http_session_match_is_written_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("matches.jsonl");
    let q = example_query("http-download");
    let mut d = Daemon::start(
        dir.path(),
        &["--query", path_str(&q), "--output", path_str(&out)],
        &[],
    );
    let t0 = now_ms() - 20_000;
    d.send(&v5(
        now_ms(),
        0,
        &http_session("10.0.0.5", 51_234, "198.51.100.7", t0),
    ));
    d.wait_processed(2);
    let m = d.scrape();
    assert_eq!(
        support::daemon::sum_metric(&m, "flowy_records_decoded_total", "version=\"5\""),
        2.0
    );
    assert_eq!(
        support::daemon::sum_metric(&m, "flowy_datagrams_received_total", ""),
        1.0
    );
    // Default lateness is 60 s: nothing may be emitted before shutdown.
    assert!(read_matches(&out).is_empty());

    let status = d.terminate();
    assert!(status.success(), "exit status {status:?}");
    let matches = read_matches(&out);
    assert_eq!(matches.len(), 1, "{matches:#?}");
    let m = &matches[0];
    assert_eq!(m["query"], "http-download");
    assert_eq!(m["match"], 1);
    let records = m["records"].as_array().expect("records");
    assert_eq!(records.len(), 2);
    assert_eq!(records[0]["srcip"], "10.0.0.5");
    assert_eq!(records[0]["dstport"], 80);
    assert_eq!(records[0]["bytes"], 612);
    assert_eq!(records[1]["srcip"], "198.51.100.7");
    assert_eq!(records[1]["bytes"], 18_340);
    assert_eq!(records[0]["exporter"], "127.0.0.1");
}

#[test]
fn without_query_files_the_builtin_examples_run_to_stdout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut d = Daemon::start(dir.path(), &[], &[]);
    d.wait_log("built-in example queries", Duration::from_secs(1));
    let t0 = now_ms() - 20_000;
    d.send(&v5(
        now_ms(),
        0,
        &http_session("10.0.0.9", 40_000, "203.0.113.80", t0),
    ));
    d.wait_processed(2);
    assert!(d.terminate().success());
    let line = d.wait_log("\"query\":\"http-download\"", Duration::from_secs(1));
    let m: serde_json::Value = serde_json::from_str(&line).expect("stdout line is JSON");
    assert_eq!(m["records"][0]["srcip"], "10.0.0.9");
}

#[test]
fn invalid_configuration_names_the_key_and_fails() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = std::process::Command::new(support::daemon::BIN)
        .current_dir(dir.path())
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("FLOWY__ENGINE__LATENESS", "soon")
        .env("FLOWY__METRICS__LISTEN", "")
        .output()
        .expect("run flowy");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("engine.lateness"), "{stderr}");
}

/// Background exporter: v5 datagrams of UDP flows (which no test query
/// keeps) every millisecond until stopped.
struct Stream {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

const STREAM_FLOWS: usize = 10;

impl Stream {
    fn start(to: std::net::SocketAddr) -> Stream {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let (s, n) = (stop.clone(), sent.clone());
        let thread = std::thread::spawn(move || {
            let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
            let mut seq = 0u32;
            while !s.load(Ordering::Relaxed) {
                let t = now_ms() - 5_000;
                let flows: Vec<Flow> = (0..STREAM_FLOWS)
                    .map(|i| Flow {
                        prot: 17,
                        ..Flow::tcp(
                            "192.0.2.1",
                            5_000 + i as u16,
                            "192.0.2.2",
                            53,
                            100,
                            t,
                            t + 10,
                        )
                    })
                    .collect();
                if sock.send_to(&v5(now_ms(), seq, &flows), to).is_ok() {
                    n.fetch_add(1, Ordering::Relaxed);
                }
                seq = seq.wrapping_add(STREAM_FLOWS as u32);
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        Stream {
            stop,
            sent,
            thread: Some(thread),
        }
    }

    fn stop(&mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().expect("stream thread");
        }
        self.sent.load(Ordering::Relaxed)
    }
}

#[test]
fn sighup_under_load_keeps_state_rejects_bad_queries_and_sigterm_drains() {
    let dir = tempfile::tempdir().expect("tempdir");
    let qdir = dir.path().join("queries");
    std::fs::create_dir(&qdir).expect("mkdir");
    let http = std::fs::read_to_string(example_query("http-download")).expect("example");
    std::fs::write(qdir.join("http-download.flowy"), &http).expect("write");
    std::fs::write(qdir.join("http2.flowy"), &http).expect("write");
    let out = dir.path().join("matches.jsonl");
    let pattern = format!("{}/*.flowy", qdir.display());
    let mut d = Daemon::start(
        dir.path(),
        &["--output", path_str(&out)],
        &[("FLOWY__QUERIES__PATHS", &pattern)],
    );
    let mut stream = Stream::start(d.udp);
    let t0 = now_ms() - 20_000;
    let [req1, res1] = http_session("10.1.0.1", 41_000, "198.51.100.7", t0);

    // The request half of session 1 before the reload, the response after:
    // only a query that kept its state can join them.
    d.send(&v5(now_ms(), 0, &[req1]));
    d.wait_processed(1);
    std::fs::write(qdir.join("http2.flowy"), format!("{http}\n# changed\n")).expect("write");
    d.signal(libc::SIGHUP);
    d.wait_log("reload complete", Duration::from_secs(10));
    d.send(&v5(now_ms(), 1, &[res1]));

    // A query with a typo is rejected as a whole; the running set stays.
    std::fs::write(
        qdir.join("bad.flowy"),
        "filter f {\n    srcip = scrip\n}\n\"input\" -> S\nS branch A -> f\n",
    )
    .expect("write");
    d.signal(libc::SIGHUP);
    let located = d.wait_log("bad.flowy:", Duration::from_secs(10));
    let after = &located[located.find("bad.flowy:").expect("found") + "bad.flowy:".len()..];
    let digits: String = after
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == ':')
        .collect();
    assert!(
        digits.split(':').filter(|p| !p.is_empty()).count() >= 2,
        "no line:col in {located:?}"
    );
    d.wait_until("reload failure counted", Duration::from_secs(10), |d| {
        d.metric("flowy_reload_failures_total", "") == 1.0
    });
    assert_eq!(d.metric("flowy_reloads_total", ""), 1.0);
    assert_eq!(d.metric("flowy_queries_running", ""), 2.0);

    let [req2, res2] = http_session("10.2.0.2", 42_000, "198.51.100.7", t0 + 1_000);
    d.send(&v5(now_ms(), 2, &[req2, res2]));
    std::thread::sleep(Duration::from_millis(300));
    let live = d.scrape();
    let rx = support::daemon::sum_metric(&live, "flowy_datagrams_received_total", "");
    assert!(rx > 100.0, "stream not flowing: {rx}");

    // SIGTERM while the stream is still running.
    let status = d.terminate();
    let sent = stream.stop();
    assert!(status.success(), "exit status {status:?}");
    let log = d.log_lines();
    let totals = final_counters(&log);
    assert_eq!(totals.get("records"), totals.get("processed"), "{totals:?}");
    let datagrams = totals["datagrams"];
    assert!(
        datagrams > 0 && datagrams <= sent + 3,
        "{datagrams} received, {sent} sent"
    );
    let finished: Vec<&String> = log
        .iter()
        .filter(|l| l.contains("finished: records"))
        .collect();
    // http-download (2 branches), old http2 (2), new http2 (2).
    assert_eq!(finished.len(), 6, "{finished:#?}");
    assert!(
        finished.iter().all(|l| l.contains("groups_open 0")),
        "{finished:#?}"
    );

    let matches = read_matches(&out);
    assert_eq!(
        match_clients(&matches, "http-download"),
        ["10.1.0.1", "10.2.0.2"]
    );
    assert_eq!(match_clients(&matches, "http2"), ["10.2.0.2"]);
}

#[test]
fn memory_limits_close_groups_early_counted_and_warned() {
    let dir = tempfile::tempdir().expect("tempdir");
    let q = example_query("http-download");
    let d = Daemon::start(
        dir.path(),
        &[
            "--query",
            path_str(&q),
            "--output",
            path_str(&dir.path().join("o.jsonl")),
        ],
        &[
            ("FLOWY__ENGINE__MAX_OPEN_GROUPS", "2"),
            ("FLOWY__ENGINE__LATENESS", "0s"),
        ],
    );
    let t0 = now_ms() - 20_000;
    let flows: Vec<Flow> = (0..10u16)
        .flat_map(|i| {
            http_session(
                &format!("10.5.0.{}", i + 1),
                50_000 + i,
                "198.51.100.7",
                t0 + i64::from(i),
            )
        })
        .collect();
    d.send(&v5(now_ms(), 0, &flows[..20]));
    d.wait_processed(20);
    d.wait_until("groups closed early", Duration::from_secs(10), |d| {
        d.metric("flowy_branch_closed_early_total", "branch=\"A\"") > 0.0
    });
    d.wait_log("closed early by a memory limit", Duration::from_secs(5));
}

#[test]
fn sighup_reopens_the_output_file_for_logrotate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("matches.jsonl");
    let rotated = dir.path().join("matches.jsonl.1");
    let q = example_query("http-download");
    let mut d = Daemon::start(
        dir.path(),
        &["--query", path_str(&q), "--output", path_str(&out)],
        &[("FLOWY__ENGINE__LATENESS", "0s")],
    );
    // Both sessions lie in the past (a flow time after the export time
    // would read as an uptime wrap).
    let t0 = now_ms() - 120_000;
    d.send(&v5(
        now_ms(),
        0,
        &http_session("10.8.0.1", 41_000, "198.51.100.7", t0),
    ));
    // W = max stime: the next session moves it past the first one.
    d.send(&v5(
        now_ms(),
        2,
        &http_session("10.8.0.2", 41_001, "198.51.100.7", t0 + 60_000),
    ));
    d.wait_until("first match written", Duration::from_secs(20), |_| {
        read_matches(&out).len() == 1
    });
    std::fs::rename(&out, &rotated).expect("rotate");
    d.signal(libc::SIGHUP);
    d.wait_log("output reopened", Duration::from_secs(10));
    assert!(d.terminate().success());
    assert_eq!(
        match_clients(&read_matches(&rotated), "http-download"),
        ["10.8.0.1"]
    );
    assert_eq!(
        match_clients(&read_matches(&out), "http-download"),
        ["10.8.0.2"]
    );
}
