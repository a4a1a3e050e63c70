//! What the kernel does to the collector sockets, seen by the operator
//! (issue 13): a receive buffer capped by `net.core.rmem_max` is warned
//! about and exported, and datagrams the kernel dropped because flowy did
//! not read them in time are counted in `flowy_socket_drops_total`, equal
//! to the socket's own counter in `/proc/net/udp`. Linux only: both come
//! from the kernel's `/proc`.
#![cfg(target_os = "linux")]

#[path = "daemon_support/mod.rs"]
mod support;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use support::daemon::{example_query, Daemon};
use support::netflow::{http_session, now_ms, v5};

fn rmem_max() -> u64 {
    std::fs::read_to_string("/proc/sys/net/core/rmem_max")
        .expect("rmem_max")
        .trim()
        .parse()
        .expect("rmem_max is a number")
}

fn start(recv_buffer: &str) -> (tempfile::TempDir, Daemon) {
    let dir = tempfile::tempdir().expect("tempdir");
    let q = example_query("http-download");
    let d = Daemon::start(
        dir.path(),
        &["--query", q.to_str().expect("utf-8")],
        &[
            ("FLOWY__COLLECTOR__RECV_BUFFER", recv_buffer),
            ("FLOWY__COLLECTOR__SOCKETS", "1"),
        ],
    );
    (dir, d)
}

/// Sum of the `drops` column of the IPv4 UDP sockets bound to `port`
/// (this test runs in the daemon's network namespace).
fn proc_drops(port: u16) -> u64 {
    let table = std::fs::read_to_string("/proc/net/udp").expect("/proc/net/udp");
    let local = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|cols| cols.get(1).is_some_and(|a| a.ends_with(&local)))
        .map(|cols| cols[12].parse::<u64>().expect("drops column"))
        .sum()
}

#[test]
fn a_receive_buffer_beyond_rmem_max_is_warned_and_its_granted_size_exported() {
    let max = rmem_max();
    let asked = max + (1 << 20);
    let (_dir, mut d) = start(&asked.to_string());
    let socket = format!("udp://{}", d.udp);
    let warn = d.wait_log(
        "receive buffer capped by the kernel",
        Duration::from_secs(5),
    );
    assert!(warn.contains("WARN"), "{warn}");
    assert!(warn.contains(&format!("socket={socket}")), "{warn}");
    assert!(warn.contains(&format!("asked {asked} bytes")), "{warn}");
    assert!(warn.contains(&format!("granted {max} ")), "{warn}");
    assert!(
        warn.contains(&format!("sysctl -w net.core.rmem_max={asked}")),
        "{warn}"
    );
    let m = d.scrape();
    let gauge = format!("flowy_socket_receive_buffer_bytes{{socket=\"{socket}\"}}");
    // Linux reports twice the size set, capped at rmem_max.
    assert_eq!(m.get(&gauge), Some(&(2.0 * max as f64)), "{m:#?}");
    assert_eq!(
        m.get(&format!("flowy_socket_drops_total{{socket=\"{socket}\"}}")),
        Some(&0.0),
        "{m:#?}"
    );
    assert!(d.terminate().success());
    let warns = d
        .log_lines()
        .iter()
        .filter(|l| l.contains("receive buffer capped"))
        .count();
    assert_eq!(warns, 1);
}

#[test]
fn a_burst_into_a_tiny_buffer_is_counted_as_kernel_drops() {
    let (_dir, mut d) = start("4KiB");
    let socket = format!("udp://{}", d.udp);
    let m = d.scrape();
    let gauge = format!("flowy_socket_receive_buffer_bytes{{socket=\"{socket}\"}}");
    assert_eq!(
        m.get(&gauge),
        Some(&8192.0),
        "4 KiB asked, reported doubled"
    );

    let sender = UdpSocket::bind("127.0.0.1:0").expect("bind sender");
    sender.connect(d.udp).expect("connect");
    let sent: u64 = 20_000;
    let t0 = now_ms() - 60_000;
    let started = Instant::now();
    for i in 0..sent {
        let client = format!("10.1.{}.{}", (i / 250) % 250, i % 250 + 1);
        let flows = http_session(&client, 40_000, "198.51.100.7", t0 + i as i64);
        // Loopback refuses nothing on the way out: every datagram is
        // either queued on the daemon's socket or dropped there.
        sender
            .send(&v5(now_ms(), (i * 2) as u32, &flows))
            .expect("send");
    }
    assert!(started.elapsed() < Duration::from_secs(10));

    let drops_series = format!("flowy_socket_drops_total{{socket=\"{socket}\"}}");
    let mut seen = (0.0, 0.0);
    d.wait_until(
        "every datagram read or dropped",
        Duration::from_secs(10),
        |d| {
            let m = d.scrape();
            let received = m
                .get("flowy_datagrams_received_total")
                .copied()
                .unwrap_or(0.0);
            let drops = m.get(&drops_series).copied().unwrap_or(-1.0);
            seen = (received, drops);
            received + drops == sent as f64 && drops == proc_drops(d.udp.port()) as f64
        },
    );
    let (received, drops) = seen;
    assert!(drops > 0.0, "no drops with an 8 KiB buffer: {seen:?}");
    assert!(received > 0.0, "{seen:?}");
    assert!(d.terminate().success());
}
