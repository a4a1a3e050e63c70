//! Files may lie (issue 10 "Bad input"): every reader is fed truncated,
//! corrupted and lying versions of real files. Each one either reads or
//! fails with an error that names the file and where (offset or line) —
//! never a panic — and `flowy query` exits 1 on it.

#[path = "daemon_support/packets.rs"]
#[allow(dead_code)]
mod packets;
mod support;

use std::path::Path;

use flowy::input::{self, InputFormat};
use support::{flowy, repo, trace};

/// Deterministic xorshift, so a failure replays exactly.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// One sample of each format, as (format, file name, bytes).
fn samples(dir: &Path) -> Vec<(InputFormat, &'static str, Vec<u8>)> {
    let ipfix = std::fs::read(trace("trace-2009.ipfix")).expect("trace");
    // A capture of the IPFIX file's messages, one datagram each.
    let exporter = "192.0.2.1:4739".parse().expect("addr");
    let collector = "192.0.2.9:4739".parse().expect("addr");
    let mut datagrams = Vec::new();
    let mut at = 0usize;
    while at + 4 <= ipfix.len() && datagrams.len() < 40 {
        let len = usize::from(u16::from_be_bytes([ipfix[at + 2], ipfix[at + 3]]));
        datagrams.push((1_260_000_000_000 + at as i64, ipfix[at..at + len].to_vec()));
        at += len;
    }
    let pcap_path = dir.join("exports.pcap");
    packets::write_export_pcap(&pcap_path, exporter, collector, &datagrams);
    let jsonl = "{\"srcip\":\"10.0.0.1\",\"dstip\":\"10.0.0.2\",\"prot\":6,\"dstport\":80,\"stime\":1700000000000,\"etime\":1700000001000}\n".repeat(20);
    let nfdump = "[\n{\n\t\"type\" : \"FLOW\",\n\t\"first\" : \"2026-12-04T23:34:47.000\",\n\t\"last\" : \"2026-12-04T23:34:49.000\",\n\t\"in_bytes\" : 612,\n\t\"proto\" : 6,\n\t\"tcp_flags\" : \"...AP.SF\",\n\t\"src4_addr\" : \"10.0.0.1\"\n}]\n";
    let goflow2 = "{\"type\":\"IPFIX\",\"time_received_ns\":1,\"sampler_address\":\"192.0.2.1\",\"time_flow_start_ns\":1767324720000000000,\"time_flow_end_ns\":1767324721000000000,\"bytes\":143,\"proto\":\"UDP\",\"src_addr\":\"10.0.0.1\",\"src_net\":\"10.0.0.0/8\"}\n".repeat(5);
    vec![
        (
            InputFormat::FlowTools,
            "t.ftz",
            std::fs::read(trace("trace-2009.ftz")).expect("trace"),
        ),
        (InputFormat::Ipfix, "t.ipfix", ipfix),
        (
            InputFormat::Pcap,
            "t.pcap",
            std::fs::read(&pcap_path).expect("pcap"),
        ),
        (InputFormat::Jsonl, "t.jsonl", jsonl.into_bytes()),
        (
            InputFormat::NfdumpJson,
            "t.json",
            nfdump.as_bytes().to_vec(),
        ),
        (InputFormat::Goflow2, "t.goflow2", goflow2.into_bytes()),
    ]
}

/// The error names the file and a position.
fn check_error(e: &input::InputError, path: &Path, what: &str) {
    let text = e.to_string();
    assert!(
        text.starts_with(&path.display().to_string()),
        "{what}: error does not name the file: {text}"
    );
    let located = text.contains(": at offset ")
        || text.contains(": line ")
        || text.contains("cannot tell the input format");
    assert!(located, "{what}: error does not say where: {text}");
}

fn variants(data: &[u8], rng: &mut Rng) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let n = data.len();
    for cut in [1, 2, 7, 16, 24, n / 3, n / 2, n.saturating_sub(1)] {
        if cut < n {
            out.push((format!("cut at {cut}"), data[..cut].to_vec()));
        }
    }
    for i in 0..40 {
        let mut d = data.to_vec();
        let flips = 1 + (rng.next() % 4) as usize;
        for _ in 0..flips {
            let at = (rng.next() % n as u64) as usize;
            d[at] = rng.next() as u8;
        }
        out.push((format!("corruption #{i}"), d));
    }
    // Length fields that lie: 0xff bytes over the first header words.
    for at in [2, 4, 6, 8, 16, 20] {
        if at + 2 <= n {
            let mut d = data.to_vec();
            d[at] = 0xff;
            d[at + 1] = 0xff;
            out.push((format!("0xffff at {at}"), d));
        }
    }
    out
}

#[test]
fn every_reader_survives_truncated_corrupted_and_lying_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut rng = Rng(0x5eed_f10e);
    let mut errors = 0;
    for (format, name, data) in samples(dir.path()) {
        let path = dir.path().join(name);
        std::fs::write(&path, &data).expect("write");
        let good = input::read_file(&path, None).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!good.is_empty(), "{name} has records");
        for (what, bad) in variants(&data, &mut rng) {
            std::fs::write(&path, &bad).expect("write");
            let what = format!("{name} ({format}), {what}");
            // Both with detection and with the format forced.
            for forced in [None, Some(format)] {
                if let Err(e) = input::read_file(&path, forced) {
                    check_error(&e, &path, &what);
                    errors += 1;
                }
            }
        }
    }
    assert!(errors > 100, "only {errors} variants were refused");
}

#[test]
fn flowy_query_exits_1_naming_file_and_offset() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = std::fs::read(trace("trace-2009.ipfix")).expect("trace");
    let cut = dir.path().join("cut.ipfix");
    std::fs::write(&cut, &data[..data.len() - 5]).expect("write");
    let q = repo("tests/data/tcp-port80.flowy");
    let o = flowy(&[
        "query",
        q.to_str().expect("utf-8"),
        "--input",
        cut.to_str().expect("utf-8"),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.starts_with(&format!("error: {}: at offset ", cut.display())),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
}
