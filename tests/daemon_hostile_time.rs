//! Spoofed times and sources (SPEC §4.5): one datagram from the year 2096
//! must not blind the daemon, times that overflow never reach a query, and
//! `collector.allow` refuses other sources before decoding.

#[path = "daemon_support/mod.rs"]
mod support;

use std::collections::BTreeSet;
use std::net::UdpSocket;
use std::path::Path;
use std::time::Duration;

use support::daemon::{example_query, read_matches, Daemon};
use support::netflow::{http_session, now_ms, v5, v9, v9_template_set, Flow};

/// The header: `unix_secs = 4 000 000 000` (2096-10-02).
const Y2096_SECS: i64 = 4_000_000_000;

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// A v5 datagram whose header claims the year 2096.
fn v5_from_2096() -> Vec<u8> {
    let export = Y2096_SECS * 1000;
    let t = export - 60_000;
    v5(
        export,
        0,
        &[Flow::tcp("10.66.0.1", 4444, "10.66.0.2", 80, 100, t, t + 1)],
    )
}

/// A v9 datagram with an 8-byte FIRST_SWITCHED: one record whose start
/// lies 2⁴⁰ ms after boot (far future), one whose start overflows.
fn v9_wide_first_switched(now: i64) -> Vec<u8> {
    let fields = [
        (8u16, 4u16),
        (12, 4),
        (7, 2),
        (11, 2),
        (4, 1),
        (22, 8),
        (21, 4),
    ];
    let mut body = Vec::new();
    for first in [1u64 << 40, u64::MAX] {
        body.extend_from_slice(&[10, 66, 0, 3, 10, 66, 0, 4]);
        body.extend_from_slice(&4445u16.to_be_bytes());
        body.extend_from_slice(&80u16.to_be_bytes());
        body.push(6);
        body.extend_from_slice(&first.to_be_bytes());
        body.extend_from_slice(&1_000u32.to_be_bytes());
    }
    let mut data = 256u16.to_be_bytes().to_vec();
    data.extend_from_slice(&((4 + body.len()) as u16).to_be_bytes());
    data.extend_from_slice(&body);
    v9(now, 0, 77, 3, &[v9_template_set(256, &fields), data])
}

/// An IPFIX message whose flowStartMilliseconds (element 152) and
/// flowEndMilliseconds (153) lie in 2096.
fn ipfix_from_2096(now: i64) -> Vec<u8> {
    let mut tmpl = Vec::new();
    tmpl.extend_from_slice(&2u16.to_be_bytes());
    let fields = [
        (8u16, 4u16),
        (12, 4),
        (7, 2),
        (11, 2),
        (4, 1),
        (152, 8),
        (153, 8),
    ];
    tmpl.extend_from_slice(&((8 + 4 * fields.len()) as u16).to_be_bytes());
    tmpl.extend_from_slice(&300u16.to_be_bytes());
    tmpl.extend_from_slice(&(fields.len() as u16).to_be_bytes());
    for (id, len) in fields {
        tmpl.extend_from_slice(&id.to_be_bytes());
        tmpl.extend_from_slice(&len.to_be_bytes());
    }
    let t = (Y2096_SECS * 1000) as u64;
    let mut rec = vec![10, 66, 0, 5, 10, 66, 0, 6];
    rec.extend_from_slice(&4446u16.to_be_bytes());
    rec.extend_from_slice(&80u16.to_be_bytes());
    rec.push(6);
    rec.extend_from_slice(&t.to_be_bytes());
    rec.extend_from_slice(&(t + 1_000).to_be_bytes());
    let mut data = 300u16.to_be_bytes().to_vec();
    data.extend_from_slice(&((4 + rec.len()) as u16).to_be_bytes());
    data.extend_from_slice(&rec);
    let mut msg = 10u16.to_be_bytes().to_vec();
    msg.extend_from_slice(&((16 + tmpl.len() + data.len()) as u16).to_be_bytes());
    msg.extend_from_slice(&((now / 1000) as u32).to_be_bytes());
    msg.extend_from_slice(&0u32.to_be_bytes());
    msg.extend_from_slice(&9u32.to_be_bytes());
    msg.extend_from_slice(&tmpl);
    msg.extend_from_slice(&data);
    msg
}

/// Client addresses of the HTTP sessions in a set of matches.
fn clients(matches: &[serde_json::Value]) -> BTreeSet<String> {
    matches
        .iter()
        .map(|m| {
            let g = m["groups"].as_array().expect("groups");
            // `branches B, A`: A (the requests) is the second group.
            g[1]["fields"]["srcip"].as_str().expect("srcip").to_string()
        })
        .collect()
}

/// Sessions spread over a few seconds, all in the recent past.
fn trace(now: i64) -> Vec<(String, [Flow; 2])> {
    (0..12u16)
        .map(|i| {
            let client = format!("10.1.0.{}", i + 1);
            let t0 = now - 30_000 + i64::from(i) * 2_000;
            let flows = http_session(&client, 40_000 + i, "198.51.100.80", t0);
            (client, flows)
        })
        .collect()
}

#[test]
fn a_datagram_from_2096_does_not_blind_the_queries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("matches.jsonl");
    let q = example_query("http-download");
    let mut d = Daemon::start(
        dir.path(),
        &["--query", path_str(&q), "--output", path_str(&out)],
        &[
            // Drop is the decisive setting: with W in 2096, every record
            // would be late and dropped.
            ("FLOWY__ENGINE__LATE", "drop"),
            ("FLOWY__ENGINE__LATENESS", "2s"),
            ("FLOWY__ENGINE__IDLE_ADVANCE", "1s"),
        ],
    );
    let now = now_ms();
    // Three spoofers, one per export format, before the real exporter.
    for hostile in [
        v5_from_2096(),
        v9_wide_first_switched(now),
        ipfix_from_2096(now),
    ] {
        d.send(&hostile);
    }
    d.wait_until(
        "implausible records counted",
        Duration::from_secs(10),
        |d| d.metric("flowy_records_implausible_total", "") >= 4.0,
    );
    let sessions = trace(now);
    let exporter = UdpSocket::bind("127.0.0.1:0").expect("bind exporter");
    for (seq, (_, flows)) in sessions.iter().enumerate() {
        let dg = v5(now_ms(), seq as u32 * 2, flows);
        exporter.send_to(&dg, d.udp).expect("send");
    }
    let want: BTreeSet<String> = sessions.iter().map(|(c, _)| c.clone()).collect();
    // Written while the daemon runs (W advances), not only at shutdown.
    d.wait_until("every session matched", Duration::from_secs(30), |_| {
        clients(&read_matches(&out)) == want
    });
    let m = d.scrape();
    let count =
        |labels: &str| support::daemon::sum_metric(&m, "flowy_records_implausible_total", labels);
    assert_eq!(count("reason=\"future\""), 3.0, "{m:#?}");
    assert_eq!(count("reason=\"overflow\""), 1.0, "{m:#?}");
    assert_eq!(count("exporter=\"127.0.0.1\""), 4.0, "{m:#?}");
    assert_eq!(
        support::daemon::sum_metric(&m, "flowy_records_dropped_total", ""),
        0.0
    );
    let w = support::daemon::sum_metric(&m, "flowy_watermark_seconds", "");
    assert!(
        w > 0.0 && w * 1000.0 <= now_ms() as f64,
        "W {w} s is ahead of the wall clock"
    );
    let status = d.terminate();
    assert!(status.success(), "{status:?}");
    let matches = read_matches(&out);
    assert_eq!(matches.len(), want.len(), "{matches:#?}");
    assert_eq!(clients(&matches), want);
    for m in &matches {
        for r in m["records"].as_array().expect("records") {
            for k in ["stime", "etime"] {
                let t = r[k].as_str().expect("time string");
                assert!(t.len() == 24 && t.ends_with('Z'), "{k} {t} is not RFC 3339");
            }
        }
    }
}

#[test]
fn sources_outside_the_allow_list_are_refused_before_decoding() {
    let dir = tempfile::tempdir().expect("tempdir");
    let q = example_query("http-download");
    let mut d = Daemon::start(
        dir.path(),
        &["--query", path_str(&q), "--output", "-"],
        &[("FLOWY__COLLECTOR__ALLOW", "127.0.0.2/32,192.0.2.0/24")],
    );
    let now = now_ms();
    let session = http_session("10.2.0.1", 50_000, "198.51.100.80", now - 20_000);
    // From 127.0.0.1: refused, never decoded.
    d.send(&v5(now, 0, &session));
    d.send(&v5(now, 2, &session));
    d.wait_until("two datagrams refused", Duration::from_secs(10), |d| {
        d.metric("flowy_datagrams_refused_total", "") == 2.0
    });
    // From 127.0.0.2 (inside the list): decoded.
    let allowed = UdpSocket::bind("127.0.0.2:0").expect("bind 127.0.0.2");
    allowed.send_to(&v5(now, 4, &session), d.udp).expect("send");
    d.wait_processed(2);
    let m = d.scrape();
    let sum = |name: &str| support::daemon::sum_metric(&m, name, "");
    assert_eq!(sum("flowy_records_received_total"), 2.0);
    assert_eq!(sum("flowy_exporter_datagrams_total"), 1.0);
    assert_eq!(sum("flowy_datagrams_refused_total"), 2.0);
    assert_eq!(sum("flowy_datagrams_received_total"), 3.0);
    assert!(d.terminate().success());
}
