//! SPEC §4.5 "Liveness" and one daemon per address, with real `flowy
//! serve` children: a panic in a pipeline thread ends the process with a
//! non-zero status; WATCHDOG=1 is sent only while every stage makes
//! progress; a second daemon on a held address refuses to start.

#[path = "daemon_support/mod.rs"]
mod support;

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::daemon::{example_query, Daemon, Stdout, BIN};
use support::netflow::{http_session, now_ms, v5, Flow};

#[test]
fn a_panic_in_the_decode_thread_ends_the_process() {
    let dir = tempfile::tempdir().expect("tempdir");
    let q = example_query("http-download");
    let mut d = Daemon::start(
        dir.path(),
        &["--query", q.to_str().expect("utf-8")],
        &[("FLOWY_DEBUG_PANIC", "decode")],
    );
    d.send(&v5(
        now_ms(),
        0,
        &http_session("10.0.0.5", 51_234, "198.51.100.7", now_ms() - 20_000),
    ));
    // Before the fix the receive tasks went on and the process stayed up.
    let status = d.wait_exit(Duration::from_secs(20));
    assert_eq!(status.code(), Some(101), "{status:?}");
    let log = d.log_lines();
    assert!(
        log.iter()
            .any(|l| l.contains("ERROR") && l.contains("panic in thread flowy-decode")),
        "{}",
        log.join("\n")
    );
}

fn watchdog_pings(sock: &UnixDatagram, window: Duration) -> usize {
    let deadline = Instant::now() + window;
    let mut buf = [0u8; 4096];
    let mut n = 0;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return n;
        }
        sock.set_read_timeout(Some(left)).expect("timeout");
        match sock.recv(&mut buf) {
            Ok(len) if String::from_utf8_lossy(&buf[..len]).contains("WATCHDOG=1") => n += 1,
            Ok(_) => {}
            Err(_) => return n,
        }
    }
}

#[test]
fn watchdog_pings_stop_while_the_output_is_stuck_and_resume_after() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).expect("bind notify socket");
    let q = example_query("http-download");
    let mut d = Daemon::start_with(
        dir.path(),
        &["--query", q.to_str().expect("utf-8")],
        &[
            ("NOTIFY_SOCKET", path.to_str().expect("utf-8")),
            ("WATCHDOG_USEC", "400000"),
            ("FLOWY__ENGINE__LATENESS", "0s"),
        ],
        Stdout::Hold,
    );
    assert!(
        watchdog_pings(&sock, Duration::from_secs(1)) >= 2,
        "idle is healthy"
    );

    // Far more matches than a pipe holds, and nobody reads the pipe.
    let t0 = now_ms() - 200_000;
    let mut flows: Vec<Flow> = (0..600u16)
        .flat_map(|i| {
            let client = format!("10.9.{}.{}", i / 250, i % 250 + 1);
            http_session(&client, 40_000 + i, "198.51.100.7", t0 + i64::from(i))
        })
        .collect();
    flows.extend(http_session(
        "10.9.255.1",
        39_999,
        "198.51.100.7",
        t0 + 100_000,
    ));
    for (seq, chunk) in flows.chunks(30).enumerate() {
        d.send(&v5(now_ms(), (seq * 30) as u32, chunk));
    }
    let stalled = d.wait_log("withholding WATCHDOG=1", Duration::from_secs(20));
    assert!(stalled.contains("output writer"), "{stalled}");
    watchdog_pings(&sock, Duration::from_millis(100)); // what was in flight
    assert_eq!(watchdog_pings(&sock, Duration::from_millis(1500)), 0);

    // The reader goes away: the writes fail, the writer is free again.
    d.close_stdout();
    assert!(watchdog_pings(&sock, Duration::from_secs(2)) >= 2);
    let status = d.terminate();
    assert_eq!(status.code(), Some(1), "matches were lost: {status:?}");
}

/// Start a second `flowy serve` on `addr` and wait for it to end; panics if
/// it gets ready instead.
fn second_daemon(dir: &std::path::Path, addr: &str, sockets: &str) -> (i32, String) {
    let mut child = Command::new(BIN)
        .current_dir(dir)
        .args(["serve", "--listen", addr, "--output", "-"])
        .env_remove("RUST_LOG")
        .env_remove("NOTIFY_SOCKET")
        .env("FLOWY__METRICS__LISTEN", "")
        .env("FLOWY__COLLECTOR__SOCKETS", sockets)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn second flowy");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            let out = child.wait_with_output().expect("stderr");
            let err = String::from_utf8_lossy(&out.stderr).into_owned();
            return (status.code().unwrap_or(-1), err);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("stderr");
            panic!(
                "second daemon on {addr} kept running:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_second_daemon_on_a_held_address_refuses_to_start() {
    for sockets in ["1", "2"] {
        let dir = tempfile::tempdir().expect("tempdir");
        let q = example_query("http-download");
        let mut first = Daemon::start(
            dir.path(),
            &["--query", q.to_str().expect("utf-8")],
            &[("FLOWY__COLLECTOR__SOCKETS", sockets)],
        );
        let addr = first.udp.to_string();
        let (code, stderr) = second_daemon(dir.path(), &addr, sockets);
        assert_ne!(code, 0, "sockets={sockets}: {stderr}");
        assert!(
            stderr.contains(&addr) && stderr.contains("in use"),
            "sockets={sockets}: {stderr}"
        );
        // The first one still has every datagram.
        first.send(&v5(
            now_ms(),
            0,
            &http_session("10.0.0.5", 51_234, "198.51.100.7", now_ms() - 20_000),
        ));
        first.wait_processed(2);
        assert!(first.terminate().success());
    }
}
