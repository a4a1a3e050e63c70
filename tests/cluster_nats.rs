//! The flowy cluster on a real NATS JetStream (SPEC §5): one collector
//! receiving softflowd's export, three workers each holding a range of
//! partitions. The union of the workers' matches must equal `flowy query`
//! on the datagrams the collector received, for a keyed two-branch query
//! (HTTP download, key {srcip, dstip}), the pass-through query (any
//! partition) and a global query (one worker). nats-server and softflowd
//! are required: `.ci/run` installs both.

#[path = "daemon_support/mod.rs"]
mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use support::daemon::{example_query, flowy_query_as_daemon, read_matches, Daemon};
use support::nats::NatsServer;
use support::netflow::now_ms;
use support::packets::{write_export_pcap, write_pcap};
use support::softflowd::{
    export_capture, normalised, relay_addr_for_capture, sa, softflowd_available, tcp_session,
    Packet, Relay, CAPTURE,
};

const ALL_RECORDS: &str = "splitter S {}\nfilter everything {\n    bytes >= 0\n}\n\"input\" -> S\nS branch A -> everything\n";

/// No equality among a group's records: one group of all TCP flows per
/// window, so no partition key (a global query).
const TCP_WINDOW: &str = "splitter S {}\nfilter tcp {\n    prot = protocol(\"TCP\")\n}\ngrouper all {\n    module m {\n    }\n    aggregate count(rec_id) as n\n}\ngroupfilter some {\n    n > 3\n}\n\"input\" -> S\nS branch A -> tcp -> all -> some\n";

const PARTITIONS: &str = "8";

/// HTTP downloads between many host pairs, and DNS on the side.
fn traffic(t0: i64) -> Vec<Packet> {
    let mut pk = Vec::new();
    for i in 0..24u16 {
        let client = format!("10.1.{}.{}:{}", i / 10, i % 10 + 1, 40_000 + i);
        let server = format!("198.51.100.{}:80", i % 5 + 1);
        let chunks = 2 + usize::from(i % 4);
        tcp_session(
            &mut pk,
            t0 + i64::from(i) * 400,
            &client,
            &server,
            100 + usize::from(i),
            chunks,
        );
    }
    for i in 0..6u16 {
        pk.push(Packet {
            at_ms: t0 + 200 + i64::from(i) * 900,
            src: sa(&format!("10.1.9.{}:5353", i + 1)),
            dst: sa("8.8.8.8:53"),
            prot: 17,
            payload: 40,
            flags: 0,
        });
    }
    pk.sort_by_key(|p| p.at_ms);
    pk
}

fn write_queries(dir: &Path) -> Vec<(String, std::path::PathBuf)> {
    let http = std::fs::read_to_string(example_query("http-download")).expect("example");
    [
        ("all-records", ALL_RECORDS.to_string()),
        ("http-download", http),
        ("tcp-window", TCP_WINDOW.to_string()),
    ]
    .into_iter()
    .map(|(name, src)| {
        let p = dir.join(format!("{name}.flowy"));
        std::fs::write(&p, src).expect("write query");
        (name.to_string(), p)
    })
    .collect()
}

fn metric(d: &Daemon, name: &str) -> f64 {
    d.metric(name, "")
}

#[test]
fn three_workers_give_the_matches_of_flowy_query() {
    assert!(
        softflowd_available(),
        "softflowd is not installed: `apt-get install -y softflowd` (.ci/run does this)"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let nats = NatsServer::start(&dir.path().join("nats"));
    let url = nats.url();
    let t0 = now_ms() - 30_000;
    let packets = traffic(t0);
    write_pcap(
        &dir.path().join(CAPTURE),
        &packets.iter().map(Packet::frame).collect::<Vec<_>>(),
    );
    let queries = write_queries(dir.path());
    let mut qargs: Vec<String> = Vec::new();
    for (_, p) in &queries {
        qargs.extend(["--query".into(), p.display().to_string()]);
    }
    let env_of = |role: &'static str| {
        vec![
            ("FLOWY__CLUSTER__ROLE", role.to_string()),
            ("FLOWY__CLUSTER__NATS", url.clone()),
            ("FLOWY__CLUSTER__PARTITIONS", PARTITIONS.to_string()),
        ]
    };
    let as_refs = |v: &[(&'static str, String)]| -> Vec<(&'static str, String)> { v.to_vec() };

    let mut workers: Vec<Daemon> = ["0-2", "3-5", "6-7"]
        .iter()
        .enumerate()
        .map(|(i, range)| {
            let mut args = qargs.clone();
            args.extend([
                "--partitions".into(),
                range.to_string(),
                "--output".into(),
                dir.path().join(format!("w{i}.jsonl")).display().to_string(),
            ]);
            let argv: Vec<&str> = args.iter().map(String::as_str).collect();
            let env = as_refs(&env_of("worker"));
            let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
            Daemon::start_worker(dir.path(), &argv, &env)
        })
        .collect();

    let argv: Vec<&str> = qargs.iter().map(String::as_str).collect();
    let env = env_of("collector");
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut collector = Daemon::start(dir.path(), &argv, &env);

    let relay = Relay::start(collector.udp);
    export_capture(dir.path(), &relay.addr.to_string(), "9", &[]);
    collector.wait_until("records decoded", Duration::from_secs(30), |d| {
        metric(d, "flowy_records_received_total") > 0.0
    });
    std::thread::sleep(Duration::from_millis(300));
    let datagrams = relay.finish();
    let exports = dir.path().join("exports.pcap");
    write_export_pcap(
        &exports,
        relay_addr_for_capture(),
        sa("127.0.0.1:2055"),
        &datagrams,
    );
    // Three lanes, each carrying the records its queries' filters accept.
    let expected = published_per_lane(&exports, &queries);
    assert_eq!(
        metric(&collector, "flowy_records_received_total"),
        expected.iter().copied().max().unwrap_or(0) as f64,
        "the pass-through lane carries every record"
    );
    // Lanes in query order: all-records, http-download, tcp-window.
    assert!(
        expected[1] < expected[0] && expected[2] < expected[0],
        "selective lanes carry fewer records: {expected:?}"
    );
    let expected: f64 = expected.iter().sum::<u64>() as f64;
    collector.wait_until("records published", Duration::from_secs(30), |d| {
        metric(d, "flowy_cluster_published_records_total") >= expected
    });
    let published = metric(&collector, "flowy_cluster_published_records_total");
    assert_eq!(published, expected);
    assert!(collector.terminate().success());

    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let consumed: f64 = workers
            .iter()
            .map(|w| metric(w, "flowy_cluster_consumed_records_total"))
            .sum();
        if consumed >= published {
            assert_eq!(consumed, published, "records consumed by the workers");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "workers consumed {consumed} of {published} records"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    for w in &mut workers {
        assert!(w.terminate().success());
    }

    let outputs: Vec<Vec<Value>> = (0..3)
        .map(|i| read_matches(&dir.path().join(format!("w{i}.jsonl"))))
        .collect();
    // Partitions really split the work: every worker reports pass-through
    // matches, and the global query runs only on the holder of partition 0.
    for (i, out) in outputs.iter().enumerate() {
        assert!(
            out.iter().any(|m| m["query"] == "all-records"),
            "worker {i} has no records"
        );
        if i > 0 {
            assert!(
                !out.iter().any(|m| m["query"] == "tcp-window"),
                "worker {i}"
            );
        }
    }
    // No match is reported twice across the workers.
    let ids: Vec<&str> = outputs
        .iter()
        .flatten()
        .map(|m| m["match_id"].as_str().expect("match_id"))
        .collect();
    assert_eq!(ids.len(), ids.iter().collect::<BTreeSet<_>>().len());

    for (name, q) in &queries {
        let batch =
            flowy_query_as_daemon(q, &exports, &dir.path().join(format!("{name}.batch.jsonl")));
        let cluster = normalised(
            outputs
                .iter()
                .flatten()
                .filter(|m| m["query"] == *name)
                .cloned(),
        );
        assert!(!batch.is_empty(), "{name}: the trace must give matches");
        assert_eq!(cluster, normalised(batch.into_iter()), "{name}");
    }
}

/// Per lane of `queries`, how many records of the capture it carries.
fn published_per_lane(capture: &Path, queries: &[(String, std::path::PathBuf)]) -> Vec<u64> {
    let records = flowy::input::read_file(capture, None).expect("the export capture reads");
    let plans: Vec<_> = queries
        .iter()
        .map(|(_, q)| flowy::query::compile_file(q).expect("compiles"))
        .collect();
    flowy::cluster::lane::routes(plans.iter())
        .iter()
        .map(|r| records.iter().filter(|rec| r.carries(rec)).count() as u64)
        .collect()
}

/// Publish raw payloads on record subjects, as a broken or hostile
/// publisher would.
fn publish_raw(url: &str, msgs: &[(&str, Vec<u8>)]) {
    use flowy::cluster::bus::RecordBus;
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let bus = flowy::cluster::nats::NatsBus::connect(url, "FLOWY")
            .await
            .expect("connect");
        for (i, (subject, payload)) in msgs.iter().enumerate() {
            bus.publish(
                subject.to_string(),
                format!("test-{i}"),
                bytes::Bytes::from(payload.clone()),
            )
            .await
            .expect("publish");
        }
    });
}

fn record(rec_id: u64, stime: i64) -> flowy::record::Record {
    flowy::record::Record::from(flowy::record::RecordFields {
        rec_id,
        srcip: Some("10.0.0.1".parse().expect("literal")),
        dstip: Some("10.0.0.2".parse().expect("literal")),
        bytes: Some(100),
        packets: Some(1),
        stime,
        etime: stime + 10,
        ..Default::default()
    })
}

#[test]
fn undecodable_messages_are_counted_and_skipped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let nats = NatsServer::start(&dir.path().join("nats"));
    let url = nats.url();
    let q = dir.path().join("all-records.flowy");
    std::fs::write(&q, ALL_RECORDS).expect("write query");
    let out = dir.path().join("w.jsonl");
    let args = [
        "--query",
        q.to_str().expect("utf-8"),
        "--output",
        out.to_str().expect("utf-8"),
    ];
    let env = [
        ("FLOWY__CLUSTER__ROLE", "worker"),
        ("FLOWY__CLUSTER__NATS", url.as_str()),
        ("FLOWY__CLUSTER__PARTITIONS", "4"),
    ];
    let mut worker = Daemon::start_worker(dir.path(), &args, &env);

    let t = now_ms() - 10_000;
    let mut good = Vec::new();
    flowy::cluster::codec::encode_batch(7, t, [record(1, t), record(2, t + 5)].iter(), &mut good);
    let mut wrong_version = good.clone();
    wrong_version[0] = wrong_version[0].wrapping_add(1);
    let truncated = good[..good.len() / 2].to_vec();
    publish_raw(
        &url,
        &[
            ("flowy.records.any.1", wrong_version),
            ("flowy.records.any.1", truncated),
            ("flowy.records.any.1", b"not a batch".to_vec()),
            ("flowy.records.any.1", good),
        ],
    );
    worker.wait_until("messages consumed", Duration::from_secs(20), |d| {
        metric(d, "flowy_cluster_consumed_messages_total") >= 4.0
    });
    assert_eq!(metric(&worker, "flowy_cluster_bad_messages_total"), 3.0);
    assert_eq!(metric(&worker, "flowy_cluster_consumed_records_total"), 2.0);
    assert!(worker.terminate().success());
    let matches = read_matches(&out);
    let ids: Vec<u64> = matches
        .iter()
        .flat_map(|m| m["records"].as_array().into_iter().flatten())
        .map(|r| r["rec_id"].as_u64().expect("rec_id"))
        .collect();
    assert_eq!(ids, vec![1, 2]);
    assert!(worker
        .log_lines()
        .iter()
        .any(|l| l.contains("undecodable record batch skipped")));
}

/// nats-server goes away for a few seconds while the collector receives:
/// the collector keeps what it received (within its publish buffer),
/// retries, and once the server is back every record reaches the worker.
#[test]
fn the_collector_rides_out_a_bus_outage() {
    use support::netflow::{http_session, v5};
    let dir = tempfile::tempdir().expect("tempdir");
    let mut nats = NatsServer::start(&dir.path().join("nats"));
    let url = nats.url();
    let q = dir.path().join("all-records.flowy");
    std::fs::write(&q, ALL_RECORDS).expect("write query");
    let out = dir.path().join("w.jsonl");
    let qarg = q.to_str().expect("utf-8");
    let env_of = |role| {
        [
            ("FLOWY__CLUSTER__ROLE", role),
            ("FLOWY__CLUSTER__NATS", url.as_str()),
            ("FLOWY__CLUSTER__PARTITIONS", "2"),
        ]
    };
    let mut collector = Daemon::start(dir.path(), &["--query", qarg], &env_of("collector"));
    let mut worker = Daemon::start_worker(
        dir.path(),
        &["--query", qarg, "--output", out.to_str().expect("utf-8")],
        &env_of("worker"),
    );
    let t0 = now_ms() - 20_000;
    let send = |from: u32, to: u32| {
        for i in from..to {
            let flows = http_session(
                &format!("10.2.0.{}", i + 1),
                40_000,
                "192.0.2.80",
                t0 + i64::from(i) * 100,
            );
            collector.send(&v5(now_ms(), i, &flows));
        }
    };
    send(0, 10);
    worker.wait_until("first records", Duration::from_secs(20), |d| {
        metric(d, "flowy_cluster_consumed_records_total") >= 20.0
    });

    nats.stop();
    send(10, 30);
    collector.wait_until("records decoded", Duration::from_secs(10), |d| {
        metric(d, "flowy_records_received_total") >= 60.0
    });
    collector.wait_until("failed publishes", Duration::from_secs(20), |d| {
        metric(d, "flowy_cluster_publish_retries_total") > 0.0
    });
    std::thread::sleep(Duration::from_secs(2));
    nats.restart();

    worker.wait_until(
        "every record after the outage",
        Duration::from_secs(60),
        |d| metric(d, "flowy_cluster_consumed_records_total") >= 60.0,
    );
    assert_eq!(
        metric(&collector, "flowy_cluster_dropped_records_total"),
        0.0
    );
    assert_eq!(
        metric(&collector, "flowy_cluster_published_records_total"),
        60.0
    );
    assert!(collector.terminate().success());
    assert!(worker.terminate().success());
    let records: usize = read_matches(&out)
        .iter()
        .map(|m| m["records"].as_array().map_or(0, Vec::len))
        .sum();
    assert_eq!(records, 60);
}

/// No `match_id` twice in `matches`, and per query the same matches as
/// `flowy query` on the datagrams `sent` (rec_ids aside).
fn assert_matches_flowy_query(
    dir: &Path,
    queries: &[(String, std::path::PathBuf)],
    sent: &[(i64, Vec<u8>)],
    matches: &[Value],
) {
    let ids: Vec<&str> = matches
        .iter()
        .map(|m| m["match_id"].as_str().expect("match_id"))
        .collect();
    assert_eq!(
        ids.len(),
        ids.iter().collect::<BTreeSet<_>>().len(),
        "a match reported twice"
    );
    let exports = dir.join("exports.pcap");
    write_export_pcap(&exports, sa("127.0.0.1:9995"), sa("127.0.0.1:2055"), sent);
    for (name, q) in queries {
        let batch = flowy_query_as_daemon(q, &exports, &dir.join(format!("{name}.batch.jsonl")));
        assert!(!batch.is_empty(), "{name}: the trace must give matches");
        let cluster = normalised(matches.iter().filter(|m| m["query"] == *name).cloned());
        assert_eq!(cluster, normalised(batch.into_iter()), "{name}");
    }
}

/// Wait until a worker has taken no record for a while.
fn wait_quiet(w: &Daemon) {
    let mut last = -1.0;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        std::thread::sleep(Duration::from_millis(1_500));
        let now = metric(w, "flowy_cluster_consumed_records_total");
        if now == last && now > 0.0 {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "worker never settled");
        last = now;
    }
}

/// Send `http_session`s `from..to` (client `10.<net>.i/50.i%50+1`, one
/// datagram each, 700 ms apart in flow time) to the collector, 60 ms
/// apart so that each becomes its own batch (the collector flushes every
/// 50 ms) and acknowledgements can cover part of the stream; keep what was
/// sent for the reference run.
fn send_sessions(
    collector: &Daemon,
    sent: &mut Vec<(i64, Vec<u8>)>,
    net: u8,
    range: std::ops::Range<u32>,
    t0: i64,
) {
    use support::netflow::{http_session, v5};
    for i in range {
        let client = format!("10.{net}.{}.{}", i / 50, i % 50 + 1);
        let port = 40_000 + u16::from(net) * 1_000 + i as u16;
        let flows = http_session(&client, port, "192.0.2.80", t0 + i64::from(i) * 700);
        let d = v5(now_ms(), i, &flows);
        collector.send(&d);
        sent.push((now_ms(), d));
        std::thread::sleep(Duration::from_millis(60));
    }
}

/// `kill -9` a worker while it holds open groups, restart it on the same
/// output: the output then holds every match of `flowy query` on the same
/// datagrams, each once.
#[test]
fn a_worker_killed_mid_stream_loses_no_match_and_repeats_none() {
    let dir = tempfile::tempdir().expect("tempdir");
    let nats = NatsServer::start(&dir.path().join("nats"));
    let url = nats.url();
    let queries: Vec<(String, std::path::PathBuf)> = write_queries(dir.path())
        .into_iter()
        .filter(|(n, _)| n != "tcp-window")
        .collect();
    let mut qargs: Vec<String> = Vec::new();
    for (_, p) in &queries {
        qargs.extend(["--query".into(), p.display().to_string()]);
    }
    let out = dir.path().join("w.jsonl");
    let mut wargs = qargs.clone();
    wargs.extend(["--output".into(), out.display().to_string()]);
    let wargs: Vec<&str> = wargs.iter().map(String::as_str).collect();
    let cargs: Vec<&str> = qargs.iter().map(String::as_str).collect();
    let env_of = |role| {
        [
            ("FLOWY__CLUSTER__ROLE", role),
            ("FLOWY__CLUSTER__NATS", url.as_str()),
            ("FLOWY__CLUSTER__PARTITIONS", "4"),
            ("FLOWY__ENGINE__LATENESS", "1s"),
        ]
    };
    let collector = Daemon::start(dir.path(), &cargs, &env_of("collector"));
    let mut worker = Daemon::start_worker(dir.path(), &wargs, &env_of("worker"));

    let t0 = now_ms() - 60_000;
    let mut sent: Vec<(i64, Vec<u8>)> = Vec::new();
    send_sessions(&collector, &mut sent, 3, 0..40, t0);
    wait_quiet(&worker);
    assert!(
        metric(&worker, "flowy_cluster_acked_messages_total") > 0.0,
        "some messages acknowledged before the crash"
    );
    worker.signal(9);
    worker.wait_exit(Duration::from_secs(10));
    let before = read_matches(&out).len();
    assert!(before > 0, "matches written before the crash");

    send_sessions(&collector, &mut sent, 3, 40..80, t0);
    let mut worker = Daemon::start_worker(dir.path(), &wargs, &env_of("worker"));
    wait_quiet(&worker);
    assert!(
        metric(&worker, "flowy_cluster_redelivered_messages_total") > 0.0,
        "the restarted worker replays what the killed one held"
    );
    assert!(worker.terminate().success());

    let written = read_matches(&out);
    assert_matches_flowy_query(dir.path(), &queries, &sent, &written);
}

/// SIGHUP with a changed query: the collector publishes to the new
/// query's lane, the worker drains the old lane and consumes the new one.
#[test]
fn sighup_moves_collector_and_worker_to_the_new_lanes() {
    use support::netflow::{http_session, v5};
    let dir = tempfile::tempdir().expect("tempdir");
    let nats = NatsServer::start(&dir.path().join("nats"));
    let url = nats.url();
    let q = dir.path().join("q.flowy");
    std::fs::write(&q, ALL_RECORDS).expect("write query");
    let out = dir.path().join("w.jsonl");
    let qarg = q.to_str().expect("utf-8");
    let env_of = |role| {
        [
            ("FLOWY__CLUSTER__ROLE", role),
            ("FLOWY__CLUSTER__NATS", url.as_str()),
            ("FLOWY__CLUSTER__PARTITIONS", "3"),
        ]
    };
    let collector = Daemon::start(dir.path(), &["--query", qarg], &env_of("collector"));
    let worker = Daemon::start_worker(
        dir.path(),
        &["--query", qarg, "--output", out.to_str().expect("utf-8")],
        &env_of("worker"),
    );
    let t0 = now_ms() - 30_000;
    let session = |i: u16| {
        http_session(
            &format!("10.4.0.{}", i + 1),
            41_000 + i,
            "192.0.2.80",
            t0 + i64::from(i) * 3_000,
        )
    };
    for i in 0..3u16 {
        collector.send(&v5(now_ms(), u32::from(i), &session(i)));
    }
    worker.wait_until("pass-through records", Duration::from_secs(20), |d| {
        metric(d, "flowy_cluster_consumed_records_total") >= 6.0
    });

    let http = std::fs::read_to_string(example_query("http-download")).expect("example");
    std::fs::write(&q, http).expect("rewrite query");
    collector.signal(libc::SIGHUP);
    worker.signal(libc::SIGHUP);
    collector.wait_log("reload complete", Duration::from_secs(10));
    worker.wait_log("reload complete", Duration::from_secs(10));
    let lane_line = collector.wait_log("publishing lane", Duration::from_secs(1));
    assert!(lane_line.contains("any partition"), "{lane_line}");
    collector.wait_until("key lane published", Duration::from_secs(5), |d| {
        d.log_lines()
            .iter()
            .any(|l| l.contains("publishing lane") && l.contains("{srcip, dstip}"))
    });
    for i in 3..6u16 {
        collector.send(&v5(now_ms(), u32::from(i), &session(i)));
    }
    worker.wait_until("keyed records", Duration::from_secs(20), |d| {
        metric(d, "flowy_cluster_consumed_records_total") >= 12.0
    });
    let mut collector = collector;
    let mut worker = worker;
    assert!(collector.terminate().success());
    assert!(worker.terminate().success());
    let matches = read_matches(&out);
    let by = |name: &str| matches.iter().filter(|m| m["query"] == name).count();
    // The query keeps its name ("q"): pass-through matches (one record
    // each) before the reload, HTTP downloads (two records each) after.
    let sizes: Vec<usize> = matches
        .iter()
        .map(|m| m["records"].as_array().map_or(0, Vec::len))
        .collect();
    assert_eq!(by("q"), matches.len());
    assert_eq!(sizes.iter().filter(|&&n| n == 1).count(), 6, "{sizes:?}");
    assert_eq!(sizes.iter().filter(|&&n| n == 2).count(), 3, "{sizes:?}");
}

/// Records that no query accepts are not published, but their time is:
/// a partition whose only records are long past sees W pass them through
/// the collector's mark and closes its group, with the idle advance far
/// away (an hour).
#[test]
fn a_quiet_partition_closes_its_groups_by_the_collectors_mark() {
    use support::netflow::{v5, Flow};
    let dir = tempfile::tempdir().expect("tempdir");
    let nats = NatsServer::start(&dir.path().join("nats"));
    let url = nats.url();
    let q = dir.path().join("web.flowy");
    std::fs::write(
        &q,
        "splitter S {}\nfilter web {\n    dstport = 80\n}\ngrouper per-host {\n    module g {\n        srcip = srcip\n        etime < stime rdelta 1s\n    }\n    aggregate srcip, count(rec_id) as n\n}\n\"input\" -> S\nS branch A -> web -> per-host\n",
    )
    .expect("write query");
    let out = dir.path().join("w.jsonl");
    let qarg = q.to_str().expect("utf-8");
    let env_of = |role| {
        [
            ("FLOWY__CLUSTER__ROLE", role),
            ("FLOWY__CLUSTER__NATS", url.as_str()),
            ("FLOWY__CLUSTER__PARTITIONS", "4"),
            ("FLOWY__ENGINE__LATENESS", "1s"),
            ("FLOWY__ENGINE__IDLE_ADVANCE", "1h"),
        ]
    };
    let mut collector = Daemon::start(dir.path(), &["--query", qarg], &env_of("collector"));
    let mut worker = Daemon::start_worker(
        dir.path(),
        &["--query", qarg, "--output", out.to_str().expect("utf-8")],
        &env_of("worker"),
    );
    let t0 = now_ms() - 30_000;
    let web = |i: u16| {
        Flow::tcp(
            "10.5.0.1",
            40_000 + i,
            "192.0.2.80",
            80,
            900,
            t0 + i64::from(i),
            t0 + 100,
        )
    };
    collector.send(&v5(now_ms(), 0, &[web(0), web(1)]));
    // Later traffic that no filter accepts, from other hosts.
    let t1 = now_ms() - 5_000;
    let other: Vec<Flow> = (0..20u16)
        .map(|i| {
            Flow::tcp(
                &format!("10.6.0.{}", i + 1),
                50_000,
                "192.0.2.1",
                443,
                500,
                t1,
                t1 + 10,
            )
        })
        .collect();
    collector.send(&v5(now_ms(), 2, &other));
    collector.wait_until("records not published", Duration::from_secs(10), |d| {
        metric(d, "flowy_cluster_unrouted_records_total") >= 20.0
    });
    // The two web records leave with their partition's next batch, which
    // may go out after the unrouted ones were counted.
    collector.wait_until("web records published", Duration::from_secs(10), |d| {
        metric(d, "flowy_cluster_published_records_total") >= 2.0
    });
    assert_eq!(
        metric(&collector, "flowy_cluster_published_records_total"),
        2.0
    );
    // The group closes while everything still runs: no drain involved.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let matches = loop {
        let m = read_matches(&out);
        if !m.is_empty() || std::time::Instant::now() > deadline {
            break m;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(matches.len(), 1, "the web host's group closed: {matches:?}");
    assert_eq!(matches[0]["records"].as_array().map_or(0, Vec::len), 2);
    assert!(collector.terminate().success());
    assert!(worker.terminate().success());
}

/// Every match on the bus (`flowy.matches.*`), as JSON.
fn bus_matches(url: &str) -> Vec<Value> {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let client = async_nats::connect(url).await.expect("connect");
        let js = async_nats::jetstream::new(client);
        let mut stream = js
            .get_stream("FLOWY_MATCHES")
            .await
            .expect("matches stream");
        let last = stream.info().await.expect("info").state.last_sequence;
        let mut out = Vec::new();
        for seq in 1..=last {
            if let Ok(m) = stream.get_raw_message(seq).await {
                out.push(serde_json::from_slice(&m.payload).expect("match JSON"));
            }
        }
        out
    })
}

/// Two workers share the partitions by lease; one is killed mid-stream
/// and the other takes its partitions over once the lease expires. The
/// matches on the bus are those of `flowy query`, each once.
#[test]
fn a_dead_workers_partitions_are_taken_over_by_lease() {
    let dir = tempfile::tempdir().expect("tempdir");
    let nats = NatsServer::start(&dir.path().join("nats"));
    let url = nats.url();
    let queries: Vec<(String, std::path::PathBuf)> = write_queries(dir.path())
        .into_iter()
        .filter(|(n, _)| n != "tcp-window")
        .collect();
    let mut qargs: Vec<String> = Vec::new();
    for (_, p) in &queries {
        qargs.extend(["--query".into(), p.display().to_string()]);
    }
    let env_of = |role| {
        [
            ("FLOWY__CLUSTER__ROLE", role),
            ("FLOWY__CLUSTER__NATS", url.as_str()),
            ("FLOWY__CLUSTER__PARTITIONS", "4"),
            ("FLOWY__CLUSTER__LEASE", "2s"),
            ("FLOWY__CLUSTER__PUBLISH_MATCHES", "true"),
            ("FLOWY__ENGINE__LATENESS", "1s"),
        ]
    };
    let cargs: Vec<&str> = qargs.iter().map(String::as_str).collect();
    let collector = Daemon::start(dir.path(), &cargs, &env_of("collector"));
    let start_worker = |name: &str| {
        let mut a = qargs.clone();
        a.extend([
            "--output".into(),
            dir.path().join(name).display().to_string(),
        ]);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        Daemon::start_worker(dir.path(), &a, &env_of("worker"))
    };
    let mut a = start_worker("a.jsonl");
    let b = start_worker("b.jsonl");
    // Two lanes of four partitions: shared out between the two.
    b.wait_until("partitions shared", Duration::from_secs(20), |b| {
        let (ha, hb) = (
            metric(&a, "flowy_cluster_partitions_held"),
            metric(b, "flowy_cluster_partitions_held"),
        );
        ha > 0.0 && hb > 0.0 && ha + hb == 8.0
    });

    let t0 = now_ms() - 60_000;
    let mut sent: Vec<(i64, Vec<u8>)> = Vec::new();
    send_sessions(&collector, &mut sent, 5, 0..30, t0);
    std::thread::sleep(Duration::from_millis(500));
    a.signal(9);
    a.wait_exit(Duration::from_secs(10));
    send_sessions(&collector, &mut sent, 5, 30..60, t0);
    b.wait_until("takeover", Duration::from_secs(30), |b| {
        metric(b, "flowy_cluster_partitions_held") == 8.0
    });
    wait_quiet(&b);
    let mut b = b;
    assert!(b.terminate().success());
    assert!(b
        .log_lines()
        .iter()
        .any(|l| l.contains("taking over an expired lease")));

    let on_bus = bus_matches(&url);
    assert_matches_flowy_query(dir.path(), &queries, &sent, &on_bus);
}
