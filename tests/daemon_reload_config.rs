//! SIGHUP (SPEC §4.3) with a real `flowy serve` child: the output is
//! reopened on every SIGHUP, even one whose queries fail to compile; output
//! settings are applied; settings a reload cannot apply are warned about
//! once, by key.

#[path = "daemon_support/mod.rs"]
mod support;

use std::path::Path;
use std::time::Duration;

use support::daemon::{example_query, read_matches, Daemon};
use support::netflow::{http_session, now_ms, v5};

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

/// One HTTP session of client `10.8.0.{n}`, starting at `t`.
fn session(d: &Daemon, n: u8, t: i64) {
    let client = format!("10.8.0.{n}");
    d.send(&v5(
        now_ms(),
        u32::from(n) * 2,
        &http_session(&client, 41_000 + u16::from(n), "198.51.100.7", t),
    ));
}

fn clients(path: &Path) -> Vec<String> {
    read_matches(path)
        .iter()
        .map(|m| m["records"][0]["srcip"].as_str().unwrap_or("").to_string())
        .collect()
}

#[test]
fn sighup_with_a_broken_query_still_reopens_the_output() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("matches.jsonl");
    let rotated = dir.path().join("matches.jsonl.1");
    let q = dir.path().join("http-download.flowy");
    std::fs::copy(example_query("http-download"), &q).expect("copy query");
    let mut d = Daemon::start(
        dir.path(),
        &["--query", path_str(&q), "--output", path_str(&out)],
        &[("FLOWY__ENGINE__LATENESS", "0s")],
    );
    let t0 = now_ms() - 240_000;
    session(&d, 1, t0);
    // W = max stime (lateness 0): each session closes the one before.
    session(&d, 2, t0 + 60_000);
    d.wait_until("first match written", Duration::from_secs(20), |_| {
        read_matches(&out).len() == 1
    });

    std::fs::rename(&out, &rotated).expect("rotate");
    std::fs::write(&q, "filter f { nonsense }\n").expect("break the query");
    d.signal(libc::SIGHUP);
    d.wait_log("reload rejected", Duration::from_secs(10));
    d.wait_log("output reopened", Duration::from_secs(10));

    session(&d, 3, t0 + 120_000);
    d.wait_until("a match in the new file", Duration::from_secs(20), |_| {
        read_matches(&out).len() == 1
    });
    assert!(d.terminate().success());
    assert_eq!(clients(&rotated), ["10.8.0.1"]);
    assert_eq!(clients(&out), ["10.8.0.2", "10.8.0.3"]);
}

#[test]
fn sighup_applies_output_settings_and_warns_once_per_unapplied_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("matches.out");
    let config = dir.path().join("flowy.toml");
    let write_config = |format: &str, records: bool, lateness: &str, window: &str| {
        let text = format!(
            "[engine]\nlateness = \"{lateness}\"\nwindow = \"{window}\"\n\
             [output]\nformat = \"{format}\"\nrecords = {records}\n"
        );
        std::fs::write(&config, text).expect("write config");
    };
    write_config("json", true, "0s", "5m");
    let q = example_query("http-download");
    let mut d = Daemon::start(
        dir.path(),
        &[
            "--config",
            path_str(&config),
            "--query",
            path_str(&q),
            "--output",
            path_str(&out),
        ],
        &[],
    );
    let t0 = now_ms() - 240_000;
    session(&d, 1, t0);
    session(&d, 2, t0 + 60_000);
    d.wait_until("first match written", Duration::from_secs(20), |_| {
        std::fs::read_to_string(&out).is_ok_and(|t| t.lines().count() >= 1)
    });

    write_config("text", false, "5s", "10m");
    d.signal(libc::SIGHUP);
    d.wait_log("reload complete", Duration::from_secs(10));
    // A second SIGHUP with nothing changed repeats no warning.
    d.signal(libc::SIGHUP);
    d.wait_log_count("reload complete", 2, Duration::from_secs(10));

    // Lateness stays 0 (a reload cannot move the shared watermark), so the
    // next session closes the second one, now written as text.
    session(&d, 3, t0 + 120_000);
    d.wait_until("second match written", Duration::from_secs(20), |_| {
        std::fs::read_to_string(&out).is_ok_and(|t| t.lines().count() >= 2)
    });
    assert!(d.terminate().success());

    let text = std::fs::read_to_string(&out).expect("output");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    let first: serde_json::Value = serde_json::from_str(lines[0]).expect("json before");
    assert_eq!(first["match"], 1);
    assert!(first["records"].is_array());
    // Text, numbering goes on, no record lines.
    assert!(lines[1].starts_with("http-download #2:"), "{text}");
    assert!(lines[2].starts_with("http-download #3:"), "{text}");

    let log = d.log_lines();
    let warned = |key: &str| {
        log.iter()
            .filter(|l| l.contains("WARN") && l.contains(key))
            .count()
    };
    assert_eq!(warned("engine.lateness changed"), 1, "{}", log.join("\n"));
    assert_eq!(warned("engine.window changed"), 1, "{}", log.join("\n"));
    assert_eq!(warned("output.format"), 0);
}
