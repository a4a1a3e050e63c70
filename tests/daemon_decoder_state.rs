//! The decoder's state budget seen from outside (SPEC §4.5): a template
//! flood over many observation domains keeps `flowy_decoder_state_bytes`
//! within `decoder.max_state`, the evictions are counted by reason, and data
//! held for a template that never comes expires after `decoder.pending_ttl`.

#[path = "daemon_support/mod.rs"]
mod support;

use std::net::UdpSocket;
use std::time::Duration;

use support::daemon::{example_query, sum_metric, Daemon};

const MAX_STATE: f64 = 256.0 * 1024.0;

fn be16(v: u16) -> [u8; 2] {
    v.to_be_bytes()
}

fn set(id: u16, body: &[u8]) -> Vec<u8> {
    let mut s = be16(id).to_vec();
    s.extend(be16(body.len() as u16 + 4));
    s.extend(body);
    s
}

fn ipfix(domain: u32, sets: &[Vec<u8>]) -> Vec<u8> {
    let body = sets.concat();
    let mut b = be16(10).to_vec();
    b.extend(be16(16 + body.len() as u16));
    b.extend(1_700_000_000u32.to_be_bytes());
    b.extend(0u32.to_be_bytes());
    b.extend(domain.to_be_bytes());
    b.extend(body);
    b
}

/// 32 templates of 64 one-byte fields: ~60 KiB accounted per domain.
fn templates() -> Vec<u8> {
    let mut body = Vec::new();
    for t in 0..32u16 {
        body.extend(be16(256 + t));
        body.extend(be16(64));
        for _ in 0..64 {
            body.extend([0, 203, 0, 1]);
        }
    }
    set(2, &body)
}

#[test]
fn template_flood_stays_within_max_state_and_held_data_expires() {
    let dir = tempfile::tempdir().expect("tempdir");
    let q = example_query("http-download");
    let d = Daemon::start(
        dir.path(),
        &["--query", q.to_str().expect("utf-8"), "--output", "-"],
        &[
            ("FLOWY__DECODER__MAX_STATE", "256KiB"),
            ("FLOWY__DECODER__PENDING_TTL", "1s"),
        ],
    );
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind");
    // The flood, then data for a template that never comes (the most
    // recently used stream, so the budget does not take it first).
    let flood = templates();
    for domain in 0..40 {
        sock.send_to(&ipfix(100 + domain, std::slice::from_ref(&flood)), d.udp)
            .expect("send");
    }
    sock.send_to(&ipfix(1, &[set(999, &[0; 40])]), d.udp)
        .expect("send");
    d.wait_until("the flood decoded", Duration::from_secs(10), |d| {
        d.metric("flowy_exporter_datagrams_total", "") >= 41.0
    });
    // No further datagram: the idle decode thread sweeps on its own.
    d.wait_until("held data expired", Duration::from_secs(10), |d| {
        d.metric("flowy_pending_expired_total", "") >= 1.0
    });
    let m = d.scrape();
    let state = sum_metric(&m, "flowy_decoder_state_bytes", "");
    assert!(state > 0.0 && state <= MAX_STATE, "{m:#?}");
    assert!(
        sum_metric(&m, "flowy_decoder_evictions_total", "reason=\"max_state\"") > 0.0,
        "{m:#?}"
    );
    assert_eq!(
        sum_metric(&m, "flowy_decoder_evictions_total", "reason=\"per_source\""),
        0.0
    );
    assert!(sum_metric(&m, "flowy_pending_held_total", "") >= 1.0);
}
