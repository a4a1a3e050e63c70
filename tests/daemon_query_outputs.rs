//! Per-query outputs (`[queries.NAME.output]`) and time-rotated files
//! (`output.rotate`) in a real `flowy serve` fed over UDP: each query's
//! matches land in its own sink, SIGHUP reopens and re-routes sinks, an
//! unknown query name is a configuration error, and a rotated output
//! spreads whole lines over files without losing or repeating one.

#[path = "daemon_support/mod.rs"]
mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::daemon::{example_query, read_matches, sum_metric, Daemon, BIN};
use support::netflow::{http_session, now_ms, v5, Flow};

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

/// The queries of these tests: the HTTP-download example and a filter
/// that makes every TCP record to port 80 a match of its own.
fn queries(dir: &Path) -> (PathBuf, PathBuf) {
    let http = dir.join("http-download.flowy");
    std::fs::copy(example_query("http-download"), &http).expect("copy query");
    let port80 = dir.join("tcp-port80.flowy");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tcp-port80.flowy");
    std::fs::copy(src, &port80).expect("copy query");
    (http, port80)
}

/// One HTTP session of client `10.7.0.{n}`, starting at `t`: one match of
/// http-download (once a later session closes it) and one of tcp-port80.
fn session(d: &Daemon, n: u8, t: i64) {
    let client = format!("10.7.0.{n}");
    d.send(&v5(
        now_ms(),
        u32::from(n) * 2,
        &http_session(&client, 40_000 + u16::from(n), "198.51.100.7", t),
    ));
}

/// (query, client) of each match in a JSON Lines file.
fn matches(path: &Path) -> Vec<(String, String)> {
    read_matches(path)
        .iter()
        .map(|m| {
            let client = m["records"]
                .as_array()
                .and_then(|r| r.iter().find(|r| r["dstport"] == 80))
                .and_then(|r| r["srcip"].as_str())
                .unwrap_or("")
                .to_string();
            (m["query"].as_str().unwrap_or("").to_string(), client)
        })
        .collect()
}

fn clients(ms: &[(String, String)], query: &str) -> Vec<String> {
    assert!(
        ms.iter().all(|(q, _)| q == query),
        "only {query}'s matches expected: {ms:?}"
    );
    ms.iter().map(|(_, c)| c.clone()).collect()
}

fn client(n: u8) -> String {
    format!("10.7.0.{n}")
}

#[test]
fn each_query_writes_to_its_own_sink_and_sighup_reopens_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (http, port80) = queries(dir.path());
    let out = dir.path().join("matches.jsonl");
    let own = dir.path().join("http.jsonl");
    let rotated = dir.path().join("http.jsonl.1");
    let config = dir.path().join("flowy.toml");
    std::fs::write(
        &config,
        format!(
            "[engine]\nlateness = \"0s\"\n[output]\npath = \"{}\"\n\
             [queries.http-download]\noutput = \"{}\"\n",
            out.display(),
            own.display()
        ),
    )
    .expect("config");
    let mut d = Daemon::start(
        dir.path(),
        &[
            "--config",
            path_str(&config),
            "--query",
            path_str(&http),
            "--query",
            path_str(&port80),
        ],
        &[],
    );
    let t0 = now_ms() - 240_000;
    session(&d, 1, t0);
    // W = max stime (lateness 0): each session closes the one before.
    session(&d, 2, t0 + 60_000);
    d.wait_until(
        "first HTTP match in its own file",
        Duration::from_secs(20),
        |_| matches(&own).len() == 1,
    );
    let m = d.scrape();
    let own_sink = format!("sink=\"{}\"", own.display());
    assert_eq!(sum_metric(&m, "flowy_output_lines_total", &own_sink), 1.0);
    assert_eq!(
        sum_metric(&m, "flowy_output_matches_total", &own_sink),
        1.0,
        "{m:#?}"
    );

    std::fs::rename(&own, &rotated).expect("rotate");
    d.signal(libc::SIGHUP);
    // One line per sink.
    d.wait_log_count("output reopened", 2, Duration::from_secs(10));
    session(&d, 3, t0 + 120_000);
    d.wait_until(
        "an HTTP match in the new file",
        Duration::from_secs(20),
        |_| matches(&own).len() == 1,
    );
    assert!(d.terminate().success());

    assert_eq!(clients(&matches(&rotated), "http-download"), [client(1)]);
    assert_eq!(
        clients(&matches(&own), "http-download"),
        [client(2), client(3)]
    );
    assert_eq!(
        clients(&matches(&out), "tcp-port80"),
        [client(1), client(2), client(3)]
    );
    let log = d.log_lines().join("\n");
    assert!(
        log.contains("query output") && log.contains("http.jsonl"),
        "{log}"
    );
}

#[test]
fn sighup_adds_and_removes_query_outputs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (http, port80) = queries(dir.path());
    let out = dir.path().join("matches.jsonl");
    let own = dir.path().join("port80.jsonl");
    let config = dir.path().join("flowy.toml");
    let write_config = |own_output: bool| {
        let mut text = format!(
            "[engine]\nlateness = \"0s\"\n[output]\npath = \"{}\"\n",
            out.display()
        );
        if own_output {
            text += &format!(
                "[queries.tcp-port80.output]\npath = \"{}\"\n",
                own.display()
            );
        }
        std::fs::write(&config, text).expect("config");
    };
    write_config(false);
    let mut d = Daemon::start(
        dir.path(),
        &[
            "--config",
            path_str(&config),
            "--query",
            path_str(&http),
            "--query",
            path_str(&port80),
        ],
        &[],
    );
    let port80_in = |p: &Path| -> Vec<String> {
        matches(p)
            .into_iter()
            .filter(|(q, _)| q == "tcp-port80")
            .map(|(_, c)| c)
            .collect()
    };
    let t0 = now_ms() - 300_000;
    session(&d, 1, t0);
    session(&d, 2, t0 + 60_000);
    // A filter-only query's match is written as its record arrives.
    d.wait_until(
        "port 80 matches in [output]",
        Duration::from_secs(20),
        |_| port80_in(&out).len() == 2,
    );

    write_config(true);
    d.signal(libc::SIGHUP);
    d.wait_log("reload complete", Duration::from_secs(10));
    session(&d, 3, t0 + 120_000);
    d.wait_until(
        "port 80 matches in their own file",
        Duration::from_secs(20),
        |_| port80_in(&own).len() == 1,
    );

    write_config(false);
    d.signal(libc::SIGHUP);
    d.wait_log_count("reload complete", 2, Duration::from_secs(10));
    session(&d, 4, t0 + 180_000);
    d.wait_until(
        "port 80 matches back in [output]",
        Duration::from_secs(20),
        |_| port80_in(&out).len() == 3,
    );
    assert!(d.terminate().success());

    assert_eq!(port80_in(&out), [client(1), client(2), client(4)]);
    assert_eq!(clients(&matches(&own), "tcp-port80"), [client(3)]);
    // http-download never had a sink of its own.
    let http_clients: Vec<String> = matches(&out)
        .into_iter()
        .filter(|(q, _)| q == "http-download")
        .map(|(_, c)| c)
        .collect();
    assert_eq!(http_clients, [client(1), client(2), client(3), client(4)]);
}

fn check_config(dir: &Path, config: &Path, queries: &[&Path]) -> std::process::Output {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir)
        .args(["serve", "--check-config", "--config"])
        .arg(config)
        .env_remove("RUST_LOG");
    for q in queries {
        cmd.arg("--query").arg(q);
    }
    cmd.output().expect("run flowy serve --check-config")
}

#[test]
fn an_unknown_query_name_is_a_configuration_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (http, port80) = queries(dir.path());
    let config = dir.path().join("flowy.toml");
    std::fs::write(
        &config,
        "[queries.http-downlaod]\noutput = \"/tmp/never-written.jsonl\"\n",
    )
    .expect("config");
    let run = check_config(dir.path(), &config, &[&http, &port80]);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("queries.http-downlaod")
            && stderr.contains("no query is named 'http-downlaod'")
            && stderr.contains("did you mean 'http-download'?"),
        "{stderr}"
    );

    // The same file naming the query right: each query's sink is listed.
    let own = dir.path().join("h/%Y%m%d/%H%M.jsonl");
    std::fs::write(
        &config,
        format!(
            "[queries.http-download.output]\npath = \"{}\"\nrotate = \"5m\"\n",
            own.display()
        ),
    )
    .expect("config");
    let run = check_config(dir.path(), &config, &[&http, &port80]);
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{stdout}");
    assert!(
        stdout.contains(&format!("http-download → {} (every 5m)", own.display()))
            && stdout.contains("tcp-port80 → stdout"),
        "{stdout}"
    );
}

/// Every file below `dir`, recursively.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).expect("read dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

#[test]
fn a_rotated_output_spreads_whole_lines_over_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_, port80) = queries(dir.path());
    let out_dir = dir.path().join("out");
    let config = dir.path().join("flowy.toml");
    std::fs::write(
        &config,
        format!(
            "[engine]\nlateness = \"0s\"\n[output]\npath = \"{}/%Y%m%d/%H%M/m-%S.jsonl\"\nrotate = \"1s\"\n",
            out_dir.display()
        ),
    )
    .expect("config");
    let mut d = Daemon::start(
        dir.path(),
        &["--config", path_str(&config), "--query", path_str(&port80)],
        &[],
    );
    // 40 flows to port 80 over about 2.4 s: each is released (and written)
    // when the next one arrives.
    let n: u16 = 40;
    let t0 = now_ms() - 60_000;
    for i in 0..n {
        let t = t0 + i64::from(i) * 100;
        let flow = Flow::tcp("10.6.0.1", 30_000 + i, "198.51.100.9", 80, 700, t, t + 50);
        d.send(&v5(now_ms(), u32::from(i), &[flow]));
        std::thread::sleep(Duration::from_millis(60));
    }
    d.wait_processed(u64::from(n));
    assert!(d.terminate().success());

    // The daemon opens the current slot's file when it starts: if that
    // second ends before the first match, the file stays empty (seen on a
    // loaded machine). Empty files hold no cut line; the rest are checked.
    let files: Vec<_> = files(&out_dir)
        .into_iter()
        .filter(|f| std::fs::metadata(f).is_ok_and(|m| m.len() > 0))
        .collect();
    assert!(files.len() >= 2, "one file per second expected: {files:?}");
    let mut ports = Vec::new();
    let mut numbers = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).expect("read");
        assert!(
            text.ends_with('\n'),
            "{}: a cut line ({} bytes, ends {:?})",
            f.display(),
            text.len(),
            &text[text.len().saturating_sub(80)..]
        );
        let name = f.strip_prefix(&out_dir).expect("below");
        assert!(
            name.to_string_lossy().contains("/m-") && name.components().count() == 3,
            "{name:?} does not follow the template"
        );
        for line in text.lines() {
            let m: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{}: bad line {line:?}: {e}", f.display()));
            ports.push(m["records"][0]["srcport"].as_u64().expect("srcport"));
            numbers.push(m["match"].as_u64().expect("match number"));
        }
    }
    let sent: BTreeSet<u64> = (0..u64::from(n)).map(|i| 30_000 + i).collect();
    assert_eq!(
        ports.len(),
        sent.len(),
        "a match lost or repeated: {ports:?}"
    );
    assert_eq!(ports.iter().copied().collect::<BTreeSet<u64>>(), sent);
    // Numbering goes on across files; files in name order are time order.
    assert_eq!(numbers, (1..=u64::from(n)).collect::<Vec<_>>());
}
