//! A real exporter: softflowd reads a hand-built capture of known traffic
//! and exports it (NetFlow v5, v9, IPFIX) to the running daemon. The
//! records must describe the traffic, and the daemon's matches must equal
//! the batch engine's on the very datagrams softflowd sent (captured by a
//! relay between the two). softflowd is required: `.ci/run` installs it
//! (`apt-get install -y softflowd`); a missing exporter fails the test.

#[path = "daemon_support/mod.rs"]
mod support;

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;

use support::daemon::{example_query, flowy_query_as_daemon, read_matches, Daemon};
use support::netflow::now_ms;
use support::packets::{write_export_pcap, write_pcap};
use support::softflowd::{
    export_capture, normalised, relay_addr_for_capture, sa, softflowd_available, tcp_session,
    Packet, Relay, CAPTURE,
};

fn traffic(t0: i64) -> Vec<Packet> {
    let mut pk = Vec::new();
    tcp_session(&mut pk, t0, "10.0.0.5:51234", "198.51.100.7:80", 120, 8);
    tcp_session(
        &mut pk,
        t0 + 2_000,
        "10.0.0.6:40000",
        "198.51.100.7:80",
        90,
        12,
    );
    tcp_session(
        &mut pk,
        t0 + 3_000,
        "10.0.0.5:51300",
        "203.0.113.9:22",
        300,
        2,
    );
    tcp_session(
        &mut pk,
        t0 + 4_000,
        "[2001:db8::5]:44444",
        "[2001:db8::80]:80",
        150,
        6,
    );
    for (i, (from, to)) in [
        ("10.0.0.5:5353", "8.8.8.8:53"),
        ("8.8.8.8:53", "10.0.0.5:5353"),
    ]
    .iter()
    .enumerate()
    {
        pk.push(Packet {
            at_ms: t0 + 5_000 + i as i64 * 5,
            src: sa(from),
            dst: sa(to),
            prot: 17,
            payload: 40 + 60 * i,
            flags: 0,
        });
    }
    pk.push(Packet {
        at_ms: t0 + 5_500,
        src: sa("[2001:db8::5]:6000"),
        dst: sa("[2001:db8::53]:53"),
        prot: 17,
        payload: 33,
        flags: 0,
    });
    pk.sort_by_key(|p| p.at_ms);
    pk
}

/// One direction of a flow as a meter would report it.
#[derive(Debug)]
struct Expected {
    src: SocketAddr,
    dst: SocketAddr,
    prot: u8,
    bytes: u64,
    packets: u64,
    stime: i64,
    etime: i64,
}

fn expected_flows(pk: &[Packet]) -> Vec<Expected> {
    let mut out: Vec<Expected> = Vec::new();
    for p in pk {
        match out
            .iter_mut()
            .find(|e| e.src == p.src && e.dst == p.dst && e.prot == p.prot)
        {
            Some(e) => {
                e.bytes += p.ip_len();
                e.packets += 1;
                e.etime = p.at_ms;
            }
            None => out.push(Expected {
                src: p.src,
                dst: p.dst,
                prot: p.prot,
                bytes: p.ip_len(),
                packets: 1,
                stime: p.at_ms,
                etime: p.at_ms,
            }),
        }
    }
    out
}

const ALL_RECORDS: &str = "# Every record is its own match.\nsplitter S {}\nfilter everything {\n    bytes >= 0\n}\n\"input\" -> S\nS branch A -> everything\n";

/// The HTTP-download signature narrowed to downloads: the response carries
/// more bytes than the request.
fn http_bidir(example: &str) -> String {
    example.replace(
        "B oi A OR B d A OR B f A OR B = A",
        "B oi A OR B d A OR B f A OR B = A\n        A.bytes < B.bytes",
    )
}

fn run_version(version: &str, extra: &[&str]) {
    assert!(
        softflowd_available(),
        "softflowd is not installed: `apt-get install -y softflowd` (.ci/run does this)"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let t0 = now_ms() - 30_000;
    let packets = traffic(t0);
    let capture = dir.path().join(CAPTURE);
    write_pcap(
        &capture,
        &packets.iter().map(Packet::frame).collect::<Vec<_>>(),
    );

    let http = std::fs::read_to_string(example_query("http-download")).expect("example");
    let qfiles = [
        ("all-records", ALL_RECORDS.to_string()),
        ("http-download", http.clone()),
        ("http-bidir", http_bidir(&http)),
    ];
    let mut args: Vec<String> = vec![
        "--output".into(),
        dir.path().join("daemon.jsonl").display().to_string(),
    ];
    for (name, src) in &qfiles {
        let p = dir.path().join(format!("{name}.flowy"));
        std::fs::write(&p, src).expect("write query");
        args.extend(["--query".into(), p.display().to_string()]);
    }
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut d = Daemon::start(dir.path(), &argv, &[]);
    let relay = Relay::start(d.udp);

    export_capture(dir.path(), &relay.addr.to_string(), version, extra);

    let ipv4_only = version == "5";
    let expected: Vec<Expected> = expected_flows(&packets)
        .into_iter()
        .filter(|e| !ipv4_only || e.src.is_ipv4())
        .collect();
    d.wait_processed(expected.len() as u64);
    std::thread::sleep(Duration::from_millis(200));
    let datagrams = relay.finish();
    assert!(d.terminate().success());
    let live = read_matches(&dir.path().join("daemon.jsonl"));

    check_records(&live, &expected);

    // The batch engine over exactly what the daemon received.
    let exports = dir.path().join("exports.pcap");
    write_export_pcap(
        &exports,
        relay_addr_for_capture(),
        sa("127.0.0.1:2055"),
        &datagrams,
    );
    for (name, _) in &qfiles[1..] {
        let q = dir.path().join(format!("{name}.flowy"));
        let batch = flowy_query_as_daemon(
            &q,
            &exports,
            &dir.path().join(format!("{name}.batch.jsonl")),
        );
        let daemon: Vec<String> = normalised(live.iter().filter(|m| m["query"] == *name).cloned());
        assert_eq!(daemon, normalised(batch.into_iter()), "{name} (v{version})");
        if *name == "http-bidir" {
            assert_eq!(
                daemon.len(),
                if ipv4_only { 2 } else { 3 },
                "http-bidir matches"
            );
        }
    }
}

fn rfc3339_ms(v: &Value) -> i64 {
    let s = v.as_str().expect("time string");
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .expect("RFC 3339");
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

/// How far a decoded time may be from the capture's: within a second. A v9
/// header carries whole seconds (SPEC §1.1 adds no sub-second part), so its
/// times come out up to 999 ms early; softflowd also reads its clock for the
/// uptime and for the header at slightly different moments (3 ms seen), so
/// the early side allows that much more.
const TIME_ERROR_MS: std::ops::RangeInclusive<i64> = -1_050..=1_000;

fn check_records(live: &[Value], expected: &[Expected]) {
    let records: Vec<&Value> = live
        .iter()
        .filter(|m| m["query"] == "all-records")
        .flat_map(|m| m["records"].as_array().into_iter().flatten())
        .collect();
    assert_eq!(
        records.len(),
        expected.len(),
        "records: {records:#?}\nexpected: {expected:#?}"
    );
    for e in expected {
        let r = records
            .iter()
            .find(|r| {
                r["srcip"] == e.src.ip().to_string()
                    && r["dstip"] == e.dst.ip().to_string()
                    && r["srcport"] == e.src.port()
                    && r["dstport"] == e.dst.port()
            })
            .unwrap_or_else(|| panic!("no record for {e:?} in {records:#?}"));
        assert_eq!(r["prot"], e.prot, "{e:?}");
        assert_eq!(r["bytes"], e.bytes, "{e:?} vs {r}");
        assert_eq!(r["packets"], e.packets, "{e:?} vs {r}");
        assert_eq!(r["exporter"], "127.0.0.1");
        let (st, et) = (rfc3339_ms(&r["stime"]), rfc3339_ms(&r["etime"]));
        assert!(
            TIME_ERROR_MS.contains(&(st - e.stime)),
            "stime {st} vs {} ({e:?})",
            e.stime
        );
        assert!(
            TIME_ERROR_MS.contains(&(et - e.etime)),
            "etime {et} vs {} ({e:?})",
            e.etime
        );
    }
}

#[test]
fn softflowd_netflow_v5() {
    run_version("5", &[]);
}

#[test]
fn softflowd_netflow_v9() {
    run_version("9", &[]);
}

#[test]
fn softflowd_ipfix() {
    // Reading a capture, softflowd reports an uptime of 0, so its default
    // IPFIX times (flowStartSysUpTime) lie before the exporter's start and
    // wrap; absolute milliseconds are what a live exporter is set up with.
    run_version("10", &["-A", "milli"]);
}

/// The daemon as an operator first runs it: `flowy serve` with no
/// arguments (embedded defaults: UDP 2055, the example queries, matches on
/// stdout) prints the HTTP downloads of softflowd's export sent to
/// 127.0.0.1:2055. softflowd exports NetFlow v9 here, so the IPv6 download
/// is reported too.
#[test]
fn serve_with_no_configuration_prints_softflowd_matches() {
    assert!(
        softflowd_available(),
        "softflowd is not installed: `apt-get install -y softflowd` (.ci/run does this)"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let packets = traffic(now_ms() - 30_000);
    write_pcap(
        &dir.path().join(CAPTURE),
        &packets.iter().map(Packet::frame).collect::<Vec<_>>(),
    );
    let mut d = Daemon::start_default(dir.path());
    assert_eq!(d.udp.port(), 2055, "the embedded default port");
    export_capture(dir.path(), "127.0.0.1:2055", "9", &[]);
    d.wait_processed(expected_flows(&packets).len() as u64);
    assert!(d.terminate().success());

    let mut downloads: Vec<(String, String)> = d
        .log_lines()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|m| m["query"] == "http-download")
        .map(|m| {
            let a = m["groups"]
                .as_array()
                .and_then(|gs| gs.iter().find(|g| g["branch"] == "A"))
                .expect("a request group");
            let ip = |k: &str| a["fields"][k].as_str().unwrap_or_default().to_string();
            (ip("srcip"), ip("dstip"))
        })
        .collect();
    downloads.sort();
    let pair = |c: &str, s: &str| (c.to_string(), s.to_string());
    assert_eq!(
        downloads,
        vec![
            pair("10.0.0.5", "198.51.100.7"),
            pair("10.0.0.6", "198.51.100.7"),
            pair("2001:db8::5", "2001:db8::80"),
        ],
        "log:\n{}",
        d.log_lines().join("\n")
    );
}
