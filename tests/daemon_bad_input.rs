//! A barrage of malformed exports: the daemon keeps serving, counts each
//! kind, stays within its memory limits, and still matches a valid export.

#[path = "daemon_support/mod.rs"]
mod support;

use std::time::Duration;

use support::daemon::{example_query, read_matches, sum_metric, Daemon};
use support::netflow::{
    http_session, now_ms, v5, v9, v9_data_set, v9_template_set, v9_with_template,
};

/// Deterministic xorshift, so a failure replays exactly.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

fn truncated() -> Vec<Vec<u8>> {
    let now = now_ms();
    let v5_full = v5(
        now,
        0,
        &http_session("10.9.0.1", 1_000, "10.9.0.2", now - 10_000),
    );
    let v9_full = v9_with_template(
        now,
        0,
        &http_session("10.9.0.1", 1_000, "10.9.0.2", now - 10_000),
    );
    vec![
        vec![0, 5],
        v5_full[..10].to_vec(),
        v5_full[..24 + 30].to_vec(),
        v9_full[..12].to_vec(),
        v9_full[..v9_full.len() - 7].to_vec(),
    ]
}

fn lying_lengths() -> Vec<Vec<u8>> {
    let now = now_ms();
    let mut v5_count = v5(
        now,
        0,
        &http_session("10.9.0.1", 1_000, "10.9.0.2", now - 10_000),
    );
    v5_count[2..4].copy_from_slice(&30u16.to_be_bytes());
    let mut set_too_long = v9_template_set(300, &[(8, 4), (12, 4)]);
    set_too_long[2..4].copy_from_slice(&0xfff0u16.to_be_bytes());
    let mut set_zero = v9_template_set(301, &[(8, 4)]);
    set_zero[2..4].copy_from_slice(&0u16.to_be_bytes());
    let mut ipfix = vec![0, 10, 0xff, 0xff];
    ipfix.extend_from_slice(&[0; 12]);
    vec![
        v5_count,
        v9(now, 1, 7, 1, &[set_too_long]),
        v9(now, 2, 7, 1, &[set_zero]),
        ipfix,
    ]
}

fn absurd_templates() -> Vec<Vec<u8>> {
    let now = now_ms();
    // Announces 65 535 fields; as many as fit in a datagram follow.
    let fields: Vec<(u16, u16)> = (0..16_000u32).map(|i| ((i % 300) as u16 + 1, 4)).collect();
    let mut huge = v9_template_set(400, &fields);
    huge[6..8].copy_from_slice(&u16::MAX.to_be_bytes());
    let zero_len = v9_template_set(401, &[(8, 0), (12, 0), (1, 0)]);
    let mut data = vec![0x01, 0x91, 0, 8];
    data.extend_from_slice(&[0; 4]);
    vec![
        v9(now, 3, 8, 1, &[huge]),
        v9(now, 4, 8, 2, &[zero_len, data]),
        // Data for a template that never comes.
        v9(
            now,
            5,
            9,
            1,
            &[v9_data_set(
                now,
                &http_session("10.9.0.1", 1_000, "10.9.0.2", now),
            )],
        ),
    ]
}

fn unknown_versions() -> Vec<Vec<u8>> {
    [0u16, 1, 7, 42, 0xffff]
        .iter()
        .map(|v| {
            let mut d = v.to_be_bytes().to_vec();
            d.extend_from_slice(&[0; 30]);
            d
        })
        .collect()
}

fn random(rng: &mut Rng, n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|_| {
            let len = (rng.next() % 1_400) as usize + 1;
            let mut d = rng.bytes(len);
            // Half of them look like real exports on the surface.
            if rng.next().is_multiple_of(2) && len >= 2 {
                let v = [5u8, 9, 10][(rng.next() % 3) as usize];
                d[0] = 0;
                d[1] = v;
            }
            d
        })
        .collect()
}

const FLOOD_SOURCES: u16 = 300;
const MAX_EXPORTERS: &str = "50";

/// Templates from many source ports (each its own template scope).
fn template_flood(d: &Daemon) {
    let now = now_ms();
    for i in 0..FLOOD_SOURCES {
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let sets: Vec<Vec<u8>> = (0..20u16)
            .map(|t| v9_template_set(256 + t, &[(8, 4), (12, 4), (1, 4), (22, 4), (21, 4)]))
            .collect();
        let dg = v9(now, u32::from(i), u32::from(i), 20, &sets);
        sock.send_to(&dg, d.udp).expect("send");
    }
}

#[test]
fn bad_input_barrage_is_counted_and_survived() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("matches.jsonl");
    let q = example_query("http-download");
    let mut d = Daemon::start(
        dir.path(),
        &[
            "--query",
            q.to_str().expect("utf-8"),
            "--output",
            out.to_str().expect("utf-8"),
        ],
        &[
            ("FLOWY__COLLECTOR__TEMPLATE_SCOPE", "address+port"),
            ("FLOWY__COLLECTOR__MAX_EXPORTERS", MAX_EXPORTERS),
        ],
    );
    let rss_start = d.rss_kib();
    let mut rng = Rng(0x5eed_f10e);
    let mut bad: Vec<Vec<u8>> = Vec::new();
    bad.extend(truncated());
    bad.extend(lying_lengths());
    bad.extend(absurd_templates());
    bad.extend(unknown_versions());
    bad.extend(random(&mut rng, 500));
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    for (i, dg) in bad.iter().enumerate() {
        sock.send_to(dg, d.udp).expect("send");
        if i % 50 == 0 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    for _ in 0..3 {
        template_flood(&d);
    }
    let expected = (bad.len() + 3 * FLOOD_SOURCES as usize) as f64;
    d.wait_until("every datagram read", Duration::from_secs(30), |d| {
        d.metric("flowy_exporter_datagrams_total", "") >= expected
    });

    let m = d.scrape();
    assert_eq!(
        sum_metric(&m, "flowy_datagrams_received_total", ""),
        expected
    );
    let kind = |k: &str| sum_metric(&m, "flowy_decode_errors_total", &format!("kind=\"{k}\""));
    assert!(kind("bad_version") >= 5.0, "{m:#?}");
    assert!(kind("truncated") + kind("bad_length") >= 9.0, "{m:#?}");
    assert!(kind("too_many_fields") + kind("template") >= 1.0, "{m:#?}");
    assert!(
        sum_metric(&m, "flowy_decode_errors_total", "") >= 20.0,
        "{m:#?}"
    );
    let max: f64 = MAX_EXPORTERS.parse().expect("number");
    assert!(sum_metric(&m, "flowy_decoder_streams", "") <= max, "{m:#?}");
    assert!(
        sum_metric(&m, "flowy_decoder_evictions_total", "") > 0.0,
        "{m:#?}"
    );
    assert!(
        sum_metric(&m, "flowy_exporter_templates", "") <= max * 25.0,
        "{m:#?}"
    );
    // Per-exporter series are capped too: at most max_exporters addresses
    // and the overflow entry (0.0.0.0).
    let exporter_series = m
        .keys()
        .filter(|k| k.starts_with("flowy_exporter_datagrams_total{"))
        .count();
    assert!(exporter_series as f64 <= max + 1.0, "{m:#?}");
    let rss = d.rss_kib();
    assert!(
        rss < rss_start + 64 * 1024,
        "RSS grew from {rss_start} KiB to {rss} KiB"
    );

    // Still serving: a valid v9 export (template + data) matches.
    let now = now_ms();
    d.send(&v9_with_template(
        now,
        100,
        &http_session("10.7.0.1", 45_000, "198.51.100.9", now - 20_000),
    ));
    d.wait_until("valid records decoded", Duration::from_secs(10), |d| {
        d.metric("flowy_records_decoded_total", "version=\"9\"") >= 2.0
    });
    d.wait_processed(2);
    assert!(d.terminate().success());
    let matches = read_matches(&out);
    let clients: Vec<&str> = matches
        .iter()
        .filter_map(|m| m["records"][0]["srcip"].as_str())
        .collect();
    assert!(clients.contains(&"10.7.0.1"), "{matches:#?}");
}
