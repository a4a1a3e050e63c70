//! Bad input and bad queries through the real binary: clear errors, the
//! documented exit codes, never a panic.

mod support;

use std::io::Write;

use support::{flowy, repo, stderr, trace};

fn assert_clean_failure(o: &std::process::Output, code: i32) -> String {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(code), "stderr: {err}");
    assert!(!err.contains("panicked"), "{err}");
    err
}

#[test]
fn truncated_flow_tools_file_names_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("cut.ftz");
    let good = std::fs::read(trace("trace-2009.ftz")).unwrap();
    std::fs::write(&bad, &good[..good.len() / 2]).unwrap();
    let q = repo("tests/data/tcp-port80.flowy");
    let o = flowy(&[
        "query",
        q.to_str().unwrap(),
        "--input",
        bad.to_str().unwrap(),
    ]);
    let err = assert_clean_failure(&o, 1);
    assert!(err.contains("cut.ftz") && err.contains("offset"), "{err}");
    assert!(o.stdout.is_empty());
}

#[test]
fn garbage_after_flow_tools_magic_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("garbage.ft");
    let mut f = std::fs::File::create(&bad).unwrap();
    f.write_all(&[0xCF, 0x10, 1, 3, 0xff, 0xff, 0xff, 0x7f, 1, 2, 3])
        .unwrap();
    let q = repo("tests/data/tcp-port80.flowy");
    let o = flowy(&[
        "query",
        q.to_str().unwrap(),
        "--input",
        bad.to_str().unwrap(),
    ]);
    let err = assert_clean_failure(&o, 1);
    assert!(
        err.contains("garbage.ft") && err.contains("at offset 4"),
        "{err}"
    );
}

#[test]
fn unknown_content_asks_for_a_format() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("mystery.bin");
    std::fs::write(&bad, b"\x01\x02\x03 not a flow file").unwrap();
    let q = repo("tests/data/tcp-port80.flowy");
    let o = flowy(&[
        "query",
        q.to_str().unwrap(),
        "--input",
        bad.to_str().unwrap(),
    ]);
    let err = assert_clean_failure(&o, 1);
    assert!(
        err.contains("mystery.bin") && err.contains("--input-format"),
        "{err}"
    );
}

#[test]
fn bad_json_line_names_file_and_line() {
    let q = repo("tests/data/tcp-port80.flowy");
    let data = repo("tests/data/bad-line.jsonl");
    let o = flowy(&[
        "query",
        q.to_str().unwrap(),
        "--input",
        data.to_str().unwrap(),
    ]);
    let err = assert_clean_failure(&o, 1);
    assert!(
        err.contains("bad-line.jsonl") && err.contains("line 2"),
        "{err}"
    );
}

#[test]
fn missing_input_file_is_an_error() {
    let q = repo("tests/data/tcp-port80.flowy");
    let o = flowy(&[
        "query",
        q.to_str().unwrap(),
        "--input",
        "/nonexistent/flows.ftz",
    ]);
    let err = assert_clean_failure(&o, 1);
    assert!(err.contains("/nonexistent/flows.ftz"), "{err}");
}

#[test]
fn broken_query_exits_3_with_location() {
    let q = repo("tests/data/broken.flowy");
    let o = flowy(&["check", q.to_str().unwrap()]);
    let err = assert_clean_failure(&o, 3);
    assert!(err.contains("broken.flowy:5:"), "{err}");
    assert!(err.contains("scrip"), "{err}");

    // The query command refuses it before reading any input.
    let o = flowy(&[
        "query",
        q.to_str().unwrap(),
        "--input",
        "/nonexistent/flows.ftz",
    ]);
    let err = assert_clean_failure(&o, 3);
    assert!(err.contains("broken.flowy:5:"), "{err}");
}

/// Exit codes as documented: 2 for usage (clap's errors, a query file that
/// cannot be read), 3 for a query that does not compile.
#[test]
fn usage_errors_exit_2_and_compile_errors_3() {
    let missing = flowy(&["check", "/nonexistent/q.flowy"]);
    let err = assert_clean_failure(&missing, 2);
    assert!(err.contains("/nonexistent/q.flowy"), "{err}");
    let o = flowy(&["query", "/nonexistent/q.flowy", "--input", "x"]);
    assert_clean_failure(&o, 2);
    assert_clean_failure(&flowy(&["query", "--no-such-flag"]), 2);
    assert_clean_failure(&flowy(&["frobnicate"]), 2);
    // A missing file beside a broken one: the compile error wins.
    let broken = repo("tests/data/broken.flowy");
    let o = flowy(&["check", "/nonexistent/q.flowy", broken.to_str().unwrap()]);
    assert_clean_failure(&o, 3);
    // The daemon refuses to start on it, with the same code.
    let o = flowy(&[
        "serve",
        "--query",
        broken.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--output",
        "-",
    ]);
    let err = assert_clean_failure(&o, 3);
    assert!(err.contains("broken.flowy:5:"), "{err}");
}

#[test]
fn jsonl_input_runs_a_query() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("flows.jsonl");
    std::fs::write(
        &data,
        concat!(
            "{\"srcip\":\"10.0.0.1\",\"dstip\":\"10.0.0.2\",\"proto\":6,\"dstport\":80,",
            "\"stime\":\"2026-11-23T08:59:41.003Z\",\"etime\":1795424382118,\"bytes\":612}\n",
            "{\"srcip\":\"10.0.0.1\",\"dstip\":\"10.0.0.2\",\"proto\":17,\"dstport\":80,\"stime\":5}\n",
        ),
    )
    .unwrap();
    let q = repo("tests/data/tcp-port80.flowy");
    let o = flowy(&[
        "query",
        q.to_str().unwrap(),
        "--input",
        data.to_str().unwrap(),
    ]);
    let lines = support::json_lines(&o);
    assert_eq!(lines.len(), 1);
    let r = &lines[0]["records"][0];
    assert_eq!(r["rec_id"], 0);
    assert_eq!(r["stime"], "2026-11-23T08:59:41.003Z");
    assert_eq!(r["etime"], "2026-11-23T08:59:42.118Z");
    assert_eq!(r["bytes"], 612);
}

/// `flowy query … | head -1`: the reader goes away after the first line
/// while matches are still being written; flowy stops writing and exits 0
/// without an error message, as `grep` or `nfdump` piped into `head` do.
#[test]
fn reader_going_away_is_not_an_error() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let q = repo("config/queries/http-download.flowy");
    let input = trace("trace-2012.ftz");
    let mut child = Command::new(env!("CARGO_BIN_EXE_flowy"))
        .args(["query", q.to_str().unwrap(), "--input"])
        .arg(&input)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut first = String::new();
    BufReader::new(stdout).read_line(&mut first).unwrap();
    assert!(first.starts_with("{\"query\":\"http-download\""), "{first}");
    // The pipe's read end is closed here; 3 024 matches with their records
    // are far more than a pipe buffer, so flowy's next writes fail.
    let o = child.wait_with_output().unwrap();
    let err = assert_clean_failure(&o, 0);
    // Nothing but the run's summary line.
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("flowy query: 1 input, 276449 records read"),
        "{err}"
    );
}

/// `flowy check A B | head -1`: the plans stop printing when the reader goes
/// away, but every file is still checked (a broken one still gives 2), and
/// nothing panics.
#[test]
fn check_into_a_closed_pipe_still_checks_every_file() {
    use std::process::{Command, Stdio};
    let good = repo("config/queries/http-download.flowy");
    let bad = repo("tests/malformed/seed-srcip-typo.flowy");
    let mut args = vec!["check".to_string()];
    // Enough plans to overflow a pipe buffer, then the broken file.
    for _ in 0..64 {
        args.push(good.to_string_lossy().into_owned());
    }
    args.push(bad.to_string_lossy().into_owned());
    let mut child = Command::new(env!("CARGO_BIN_EXE_flowy"))
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let o = child.wait_with_output().unwrap();
    let err = assert_clean_failure(&o, 3);
    assert!(err.contains("unknown field 'scrip'"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// Times that cannot be written as RFC 3339 (SPEC §4.5) never reach the
/// output: such records are left out with a warning, the others still match.
#[test]
fn unwritable_times_are_left_out_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("times.jsonl");
    let line = |stime: &str, etime: &str| {
        format!(
            "{{\"srcip\":\"10.0.0.1\",\"dstip\":\"10.0.0.2\",\"prot\":6,\"dstport\":80,\"stime\":{stime},\"etime\":{etime}}}\n"
        )
    };
    let text = [
        line("1700000000000", "1700000001000"),
        line("1700000000000", "9223372036854775807"),
        line("1700000000000", "253402300800000"),
        line("1700000002000", "1700000001000"),
        line("-9223372036854775808", "1700000001000"),
        line("1700000003000", "1700000004000"),
    ]
    .concat();
    std::fs::write(&input, text).unwrap();
    let q = repo("tests/data/tcp-port80.flowy");
    let o = flowy(&[
        "query",
        q.to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
    ]);
    let err = assert_clean_failure(&o, 0);
    assert!(
        err.contains("warning: 4 records left out: their times cannot be computed or written (1 reversed, 3 overflow)"),
        "{err}"
    );
    let out = String::from_utf8(o.stdout).unwrap();
    let ids: Vec<u64> = out
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let r = &v["records"][0];
            assert!(r["etime"].as_str().unwrap().ends_with('Z'), "{l}");
            r["rec_id"].as_u64().unwrap()
        })
        .collect();
    assert_eq!(ids, [0, 5]);
}

/// `flowy serve --check-config` loads the configuration and compiles the
/// queries without starting anything; a configuration error is printed
/// once.
#[test]
fn serve_check_config_validates_without_running() {
    let ok = flowy(&["serve", "--check-config", "--listen", "127.0.0.1:2999"]);
    let out = String::from_utf8_lossy(&ok.stdout).into_owned();
    assert!(ok.status.success(), "{}", stderr(&ok));
    assert!(
        out.contains("configuration ok: 7 queries") && out.contains("127.0.0.1:2999"),
        "{out}"
    );

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[engine]\nlatenes = \"5s\"\n").unwrap();
    let o = flowy(&["serve", "--check-config", "--config", bad.to_str().unwrap()]);
    let err = assert_clean_failure(&o, 1);
    assert_eq!(err.matches("unknown field `latenes`").count(), 1, "{err}");

    let broken = repo("tests/data/broken.flowy");
    let o = flowy(&[
        "serve",
        "--check-config",
        "--query",
        broken.to_str().unwrap(),
    ]);
    let err = assert_clean_failure(&o, 3);
    assert!(err.contains("broken.flowy:5:"), "{err}");
}
