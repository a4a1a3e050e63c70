//! The systemd notify protocol, observed on a NOTIFY_SOCKET of our own:
//! READY after the sockets are bound, RELOADING (with MONOTONIC_USEC) then
//! READY around SIGHUP, STATUS lines, STOPPING on SIGTERM.

#[path = "daemon_support/mod.rs"]
mod support;

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use support::daemon::{example_query, Daemon};

fn next_message(sock: &UnixDatagram, deadline: Instant) -> Option<String> {
    let mut buf = [0u8; 4096];
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return None;
    }
    sock.set_read_timeout(Some(left)).expect("timeout");
    let n = sock.recv(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// Messages until one contains `needle` (panics with what came otherwise).
fn expect_message(sock: &UnixDatagram, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut seen = Vec::new();
    while let Some(m) = next_message(sock, deadline) {
        if m.contains(needle) {
            return m;
        }
        seen.push(m);
    }
    panic!("no notify message with {needle:?}; got {seen:?}");
}

#[test]
fn notify_ready_reloading_status_stopping() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).expect("bind notify socket");
    let q = example_query("http-download");
    let mut d = Daemon::start(
        dir.path(),
        &["--query", q.to_str().expect("utf-8")],
        &[("NOTIFY_SOCKET", path.to_str().expect("utf-8"))],
    );
    expect_message(&sock, "READY=1");
    expect_message(&sock, "STATUS=");

    d.signal(libc::SIGHUP);
    let reloading = expect_message(&sock, "RELOADING=1");
    let usec: u64 = reloading
        .lines()
        .find_map(|l| l.strip_prefix("MONOTONIC_USEC="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no MONOTONIC_USEC in {reloading:?}"));
    assert!(usec > 0);
    expect_message(&sock, "READY=1");

    d.signal(libc::SIGTERM);
    expect_message(&sock, "STOPPING=1");
    assert!(d.wait_exit(Duration::from_secs(20)).success());
}
