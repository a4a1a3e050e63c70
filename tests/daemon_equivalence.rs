//! SPEC §3.2 equivalence: replaying a capture into the daemon, with window,
//! horizon and lateness larger than the trace, gives the matches of the
//! batch engine (`flowy query`) on the same capture (`flowy replay`).

#[path = "daemon_support/mod.rs"]
mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde_json::Value;

use support::daemon::{example_query, flowy_query, flowy_replay, read_matches, Daemon};
use support::netflow::{now_ms, v5, v9, v9_data_set, v9_template_set, Flow, V9_FIELDS};
use support::packets::write_export_pcap;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// HTTP sessions (some split into chained flows), UDP noise, busy and quiet
/// TCP ports, spread over ten minutes half an hour ago.
fn trace(rng: &mut Rng) -> Vec<Flow> {
    let base = now_ms() - 30 * 60_000;
    let mut flows = Vec::new();
    for i in 0..30u16 {
        let client = format!("10.0.{}.{}", i % 5, 10 + i);
        let server = format!("198.51.100.{}", i % 3 + 1);
        let t = base + i64::from(i) * 7_000 + rng.below(3_000) as i64;
        let cport = 40_000 + i;
        flows.push(Flow::tcp(&client, cport, &server, 80, 400, t, t + 900));
        flows.push(Flow::tcp(
            &server,
            80,
            &client,
            cport,
            9_000,
            t + 50,
            t + 1_200,
        ));
        if i % 2 == 0 {
            // A second request/response pair chained < 1 s after the first.
            flows.push(Flow::tcp(
                &client,
                cport,
                &server,
                80,
                300,
                t + 1_500,
                t + 2_000,
            ));
            flows.push(Flow::tcp(
                &server,
                80,
                &client,
                cport,
                7_000,
                t + 1_550,
                t + 2_600,
            ));
        }
    }
    for i in 0..100u64 {
        let t = base + rng.below(600_000) as i64;
        flows.push(Flow {
            prot: 17,
            ..Flow::tcp(
                &format!("172.16.0.{}", i % 5),
                5_000 + i as u16,
                "8.8.8.8",
                53,
                80 + i as u32,
                t,
                t + 20,
            )
        });
    }
    for i in 0..140u64 {
        let t = base + rng.below(600_000) as i64;
        let dport = if i < 120 { 443 } else { 22 };
        flows.push(Flow::tcp(
            "10.3.0.1",
            30_000 + i as u16,
            "203.0.113.5",
            dport,
            1_000 + i as u32,
            t,
            t + 3_000,
        ));
    }
    // Exporters do not send in stime order: shuffle locally.
    flows.sort_by_key(|f| f.stime);
    for i in 0..flows.len() {
        let j = (i + rng.below(8) as usize).min(flows.len() - 1);
        flows.swap(i, j);
    }
    flows
}

/// 20 flows per datagram, alternating v5 and v9 (the v9 template only in
/// the first v9 datagram), 2 ms apart.
fn datagrams(flows: &[Flow]) -> Vec<(i64, Vec<u8>)> {
    let start = now_ms() - 60_000;
    flows
        .chunks(20)
        .enumerate()
        .map(|(i, chunk)| {
            let at = start + 2 * i as i64;
            let export = chunk.iter().map(|f| f.etime).max().unwrap_or(at) + 1_000;
            let d = if i % 2 == 0 {
                v5(export, (i * 20) as u32, chunk)
            } else {
                let mut sets = Vec::new();
                if i == 1 {
                    sets.push(v9_template_set(256, V9_FIELDS));
                }
                sets.push(v9_data_set(export, chunk));
                v9(
                    export,
                    i as u32,
                    1,
                    chunk.len() as u16 + u16::from(i == 1),
                    &sets,
                )
            };
            (at, d)
        })
        .collect()
}

fn queries(dir: &Path) -> Vec<PathBuf> {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let sources = [
        example_query("http-download"),
        data.join("udp-by-srcip.flowy"),
        data.join("tcp-busy-dstport.flowy"),
    ];
    sources
        .iter()
        .map(|src| {
            let dst = dir.join(src.file_name().expect("file name"));
            std::fs::copy(src, &dst).expect("copy query");
            dst
        })
        .collect()
}

/// A match without what legitimately differs between runs: its number
/// (emission order differs between the batch and the streaming merger), the
/// batch run's id and its emission time.
fn normalise(mut m: Value) -> String {
    if let Some(o) = m.as_object_mut() {
        o.remove("match");
        o.remove("emitted");
        // Only `flowy query` has a run; match_id (query and rec_ids) stays.
        o.remove("run");
    }
    m.to_string()
}

fn match_set(matches: Vec<Value>) -> Vec<String> {
    let mut v: Vec<String> = matches.into_iter().map(normalise).collect();
    v.sort();
    v
}

#[test]
fn replayed_capture_gives_the_batch_matches() {
    replay_and_compare("1d");
}

/// A lateness that covers the capture's disorder but not its span: W moves
/// while records keep coming, groups close on their time bounds and the
/// merger drops the stored groups its relations rule out, during the
/// replay. The matches are still the batch ones.
#[test]
fn watermark_moving_during_the_replay_gives_the_batch_matches() {
    replay_and_compare("60s");
}

fn replay_and_compare(lateness: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rng = Rng(0xf10e_0001);
    let flows = trace(&mut rng);
    let pcap = dir.path().join("exports.pcap");
    // Exported from 127.0.0.1, as the replay will appear to the daemon.
    let exporter: SocketAddr = "127.0.0.1:9995".parse().expect("literal");
    let collector: SocketAddr = "127.0.0.1:2055".parse().expect("literal");
    write_export_pcap(&pcap, exporter, collector, &datagrams(&flows));

    let qs = queries(dir.path());
    let out = dir.path().join("daemon.jsonl");
    let mut args: Vec<&str> = vec!["--output", out.to_str().expect("utf-8")];
    for q in &qs {
        args.extend(["--query", q.to_str().expect("utf-8")]);
    }
    let mut d = Daemon::start(
        dir.path(),
        &args,
        &[
            ("FLOWY__ENGINE__LATENESS", lateness),
            ("FLOWY__ENGINE__WINDOW", "none"),
            ("FLOWY__ENGINE__HORIZON", "none"),
        ],
    );
    flowy_replay(&pcap, d.udp, Some(1.0));
    d.wait_processed(flows.len() as u64);
    assert!(d.terminate().success());
    let live = read_matches(&out);

    let mut expected = Vec::new();
    for q in &qs {
        let bout = dir.path().join(format!(
            "{}.batch.jsonl",
            q.display().to_string().replace('/', "_")
        ));
        expected.extend(flowy_query(q, &pcap, &bout));
    }
    // By construction: 30 sessions, 5 UDP sources, one TCP port (443) with
    // at least 50 records.
    let count = |n: &str| expected.iter().filter(|m| m["query"] == n).count();
    assert_eq!(
        [
            count("http-download"),
            count("udp-by-srcip"),
            count("tcp-busy-dstport")
        ],
        [30, 5, 1]
    );
    let (live, expected) = (match_set(live), match_set(expected));
    assert_eq!(live.len(), expected.len());
    assert_eq!(live, expected);
}
