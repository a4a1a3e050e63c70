//! Per-exporter metrics on a real daemon over UDP on 127.0.0.1: the
//! export-delay histogram puts records with known end times in the right
//! buckets, and an exporter silent for `collector.exporter_idle` is
//! forgotten (its series leave /metrics, its templates are dropped).

#[path = "daemon_support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::net::UdpSocket;
use std::time::{Duration, Instant};

use support::daemon::{sum_metric, Daemon};
use support::netflow::{now_ms, v5, v9, v9_data_set, v9_with_template, Flow};

fn flow(n: u16, stime: i64, etime: i64) -> Flow {
    Flow::tcp(
        "10.7.0.1",
        40_000 + n,
        "192.0.2.7",
        443,
        1_000,
        stime,
        etime,
    )
}

/// The cumulative count of `exporter`'s delay bucket `le`.
fn bucket(m: &BTreeMap<String, f64>, exporter: &str, le: &str) -> f64 {
    let key = format!("flowy_export_delay_seconds_bucket{{exporter=\"{exporter}\",le=\"{le}\"}}");
    *m.get(&key)
        .unwrap_or_else(|| panic!("{key} not exposed: {m:#?}"))
}

#[test]
fn export_delay_lands_in_the_right_buckets() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(dir.path(), &[], &[]);
    // Delays chosen well inside their buckets, so that the few ms between
    // building the datagram and the daemon stamping its receive time do not
    // move them: (1, 2], (5, 10], (30, 60], (120, 300], above 1 h.
    let delays_ms = [1_500, 7_000, 7_500, 45_000, 200_000, 7_200_000];
    let now = now_ms();
    let flows: Vec<Flow> = delays_ms
        .iter()
        .enumerate()
        .map(|(i, delay)| flow(i as u16, now - delay - 1_000, now - delay))
        .collect();
    d.send(&v5(now, 0, &flows));
    // An exporter whose clock is 30 s ahead: its record ends in the future.
    let ahead = now + 30_000;
    d.send(&v5(ahead, 6, &[flow(9, ahead - 1_500, ahead - 500)]));
    d.wait_until("delays observed", Duration::from_secs(10), |d| {
        d.metric("flowy_export_delay_negative_total", "") >= 1.0
    });
    let m = d.scrape();
    let ex = "127.0.0.1";
    let b = |le: &str| bucket(&m, ex, le);
    assert_eq!(b("0.1"), 0.0, "{m:#?}");
    assert_eq!(b("1"), 0.0);
    assert_eq!(b("2"), 1.0, "1.5 s is in (1, 2]");
    assert_eq!(b("5"), 1.0);
    assert_eq!(b("10"), 3.0, "7 s and 7.5 s are in (5, 10]");
    assert_eq!(b("30"), 3.0);
    assert_eq!(b("60"), 4.0, "45 s is in (30, 60]");
    assert_eq!(b("120"), 4.0);
    assert_eq!(b("300"), 5.0, "200 s is in (120, 300]");
    assert_eq!(b("3600"), 5.0);
    assert_eq!(b("+Inf"), 6.0, "2 h is above the last bound");
    let count = m[&format!("flowy_export_delay_seconds_count{{exporter=\"{ex}\"}}")];
    assert_eq!(count, 6.0, "the negative delay is not in the histogram");
    let sum = m[&format!("flowy_export_delay_seconds_sum{{exporter=\"{ex}\"}}")];
    let want: f64 = delays_ms.iter().sum::<i64>() as f64 / 1000.0;
    assert!(
        sum >= want && sum < want + 6.0,
        "sum {sum} s, the delays add up to {want} s (plus latency)"
    );
    assert_eq!(
        sum_metric(
            &m,
            "flowy_export_delay_negative_total",
            "exporter=\"127.0.0.1\""
        ),
        1.0
    );
    assert_eq!(
        sum_metric(
            &m,
            "flowy_exporter_datagrams_total",
            "exporter=\"127.0.0.1\""
        ),
        2.0
    );
    let seen = sum_metric(
        &m,
        "flowy_exporter_last_seen_timestamp_seconds",
        "exporter=\"127.0.0.1\"",
    );
    assert!(
        (seen * 1000.0 - now as f64).abs() < 5_000.0,
        "last seen {seen} s, sent at {now} ms"
    );
}

/// Poll until `f` holds on a scrape; send a keep-alive datagram from
/// `keep` every half second meanwhile.
fn wait_scrape(
    d: &Daemon,
    keep: &UdpSocket,
    what: &str,
    f: impl Fn(&BTreeMap<String, f64>) -> bool,
) -> BTreeMap<String, f64> {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut seq = 100;
    loop {
        let now = now_ms();
        keep.send_to(&v5(now, seq, &[flow(9, now - 2_000, now - 1_000)]), d.udp)
            .expect("send keep-alive");
        seq += 1;
        let m = d.scrape();
        if f(&m) {
            return m;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {m:#?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn series_of<'a>(m: &'a BTreeMap<String, f64>, exporter: &str) -> Vec<&'a String> {
    let label = format!("exporter=\"{exporter}\"");
    m.keys().filter(|k| k.contains(&label)).collect()
}

#[test]
fn a_silent_exporter_ages_out_and_its_series_disappear() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(
        dir.path(),
        &[],
        &[("FLOWY__COLLECTOR__EXPORTER_IDLE", "2s")],
    );
    // 127.0.0.1 sends v9 once (template + data); 127.0.0.2 keeps sending.
    let quiet = UdpSocket::bind("127.0.0.1:0").expect("bind 127.0.0.1");
    let keep = UdpSocket::bind("127.0.0.2:0").expect("bind 127.0.0.2");
    let now = now_ms();
    quiet
        .send_to(
            &v9_with_template(now, 0, &[flow(1, now - 3_000, now - 2_000)]),
            d.udp,
        )
        .expect("send v9");
    let m = wait_scrape(&d, &keep, "both exporters counted", |m| {
        sum_metric(m, "flowy_exporter_templates", "exporter=\"127.0.0.1\"") == 1.0
            && sum_metric(
                m,
                "flowy_exporter_datagrams_total",
                "exporter=\"127.0.0.2\"",
            ) >= 1.0
    });
    let before = series_of(&m, "127.0.0.1");
    for family in [
        "flowy_exporter_datagrams_total",
        "flowy_exporter_templates",
        "flowy_exporter_last_seen_timestamp_seconds",
        "flowy_export_delay_seconds_count",
        "flowy_records_decoded_total",
    ] {
        assert!(
            before.iter().any(|k| k.starts_with(family)),
            "{family} missing for 127.0.0.1: {m:#?}"
        );
    }
    assert_eq!(sum_metric(&m, "flowy_exporters_aged_out_total", ""), 0.0);

    let m = wait_scrape(&d, &keep, "127.0.0.1 aged out", |m| {
        series_of(m, "127.0.0.1").is_empty()
    });
    assert_eq!(
        sum_metric(&m, "flowy_exporters_aged_out_total", ""),
        1.0,
        "{m:#?}"
    );
    assert!(
        !series_of(&m, "127.0.0.2").is_empty(),
        "the exporter that kept sending stays: {m:#?}"
    );
    assert_eq!(
        sum_metric(&m, "flowy_decoder_streams", ""),
        0.0,
        "the v9 stream's state is gone (127.0.0.2 sends v5): {m:#?}"
    );

    // Back after ageing: fresh counters, and its template was forgotten, so
    // data without the template is held as "no template".
    let now = now_ms();
    let data = v9_data_set(now, &[flow(2, now - 3_000, now - 2_000)]);
    quiet
        .send_to(&v9(now, 2, 1, 1, &[data]), d.udp)
        .expect("send v9 data");
    let m = wait_scrape(&d, &keep, "127.0.0.1 counted again", |m| {
        sum_metric(
            m,
            "flowy_exporter_datagrams_total",
            "exporter=\"127.0.0.1\"",
        ) == 1.0
    });
    assert_eq!(
        sum_metric(
            &m,
            "flowy_decode_errors_total",
            "exporter=\"127.0.0.1\",kind=\"no_template\""
        ),
        1.0,
        "{m:#?}"
    );
    assert_eq!(
        sum_metric(&m, "flowy_records_decoded_total", "exporter=\"127.0.0.1\""),
        0.0
    );
}
