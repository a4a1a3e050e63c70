//! `flowy replay` and capture input through the real binary: a pcap of
//! NetFlow v5 export datagrams built here, sent to a real UDP socket on
//! 127.0.0.1, and read back by `flowy query`.

mod support;

use std::net::UdpSocket;
use std::time::Duration;

use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::DataLink;

use support::{flowy, json_lines, ms, repo, stderr};

const UNIX_SECS: u32 = 1_795_424_400; // 2026-11-23T09:00:00Z
const UPTIME: u32 = 100_000;

/// One v5 flow: (src last octet, dst port, First, Last, bytes).
type Flow = (u8, u16, u32, u32, u32);

fn v5_datagram(seq: u32, flows: &[Flow]) -> Vec<u8> {
    let mut d = Vec::new();
    d.extend(5u16.to_be_bytes());
    d.extend((flows.len() as u16).to_be_bytes());
    d.extend(UPTIME.to_be_bytes());
    d.extend(UNIX_SECS.to_be_bytes());
    d.extend(0u32.to_be_bytes());
    d.extend(seq.to_be_bytes());
    d.extend([0, 0, 0, 0]);
    for &(src, dport, first, last, bytes) in flows {
        d.extend([10, 0, 0, src]);
        d.extend([192, 0, 2, 80]);
        d.extend([0, 0, 0, 0]);
        d.extend(1u16.to_be_bytes());
        d.extend(2u16.to_be_bytes());
        d.extend(3u32.to_be_bytes());
        d.extend(bytes.to_be_bytes());
        d.extend(first.to_be_bytes());
        d.extend(last.to_be_bytes());
        d.extend(40_000u16.to_be_bytes());
        d.extend(dport.to_be_bytes());
        d.extend([0, 0x1b, 6, 0]);
        d.extend([0, 0, 0, 0, 24, 24, 0, 0]);
    }
    d
}

/// Ethernet + IPv4 + UDP from 192.0.2.1:9995 to 192.0.2.2:2055.
fn frame(payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0x08, 0x00];
    let total = (20 + 8 + payload.len()) as u16;
    f.extend([0x45, 0]);
    f.extend(total.to_be_bytes());
    f.extend([0, 0, 0, 0, 64, 17, 0, 0]);
    f.extend([192, 0, 2, 1, 192, 0, 2, 2]);
    f.extend(9995u16.to_be_bytes());
    f.extend(2055u16.to_be_bytes());
    f.extend(((8 + payload.len()) as u16).to_be_bytes());
    f.extend([0, 0]);
    f.extend_from_slice(payload);
    f
}

fn write_capture(path: &std::path::Path, datagrams: &[Vec<u8>]) {
    let file = std::fs::File::create(path).unwrap();
    let header = PcapHeader {
        datalink: DataLink::ETHERNET,
        ..PcapHeader::default()
    };
    let mut w = PcapWriter::with_header(file, header).unwrap();
    for (i, d) in datagrams.iter().enumerate() {
        let data = frame(d);
        let ts = Duration::from_millis(u64::from(UNIX_SECS) * 1000 + i as u64 * 10);
        w.write_packet(&PcapPacket::new(ts, data.len() as u32, &data))
            .unwrap();
    }
}

fn flows() -> Vec<Vec<Flow>> {
    vec![
        vec![(1, 80, 90_000, 91_000, 500), (2, 53, 90_500, 90_600, 70)],
        vec![(3, 80, 95_000, 99_000, 9_000)],
    ]
}

#[test]
fn replay_sends_every_datagram_of_a_capture() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("exports.pcap");
    let datagrams: Vec<Vec<u8>> = flows()
        .iter()
        .enumerate()
        .map(|(i, f)| v5_datagram(i as u32, f))
        .collect();
    write_capture(&pcap, &datagrams);
    let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
    rx.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let to = rx.local_addr().unwrap().to_string();
    let o = flowy(&["replay", pcap.to_str().unwrap(), "--to", &to]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut buf = [0u8; 2048];
    for d in &datagrams {
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], &d[..]);
    }
}

#[test]
fn replay_of_a_missing_capture_fails_cleanly() {
    let o = flowy(&["replay", "/nonexistent/x.pcap", "--to", "127.0.0.1:9"]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("x.pcap") && !err.contains("panicked"), "{err}");
}

#[test]
fn query_reads_a_capture_of_exports() {
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("exports.pcap");
    let datagrams: Vec<Vec<u8>> = flows()
        .iter()
        .enumerate()
        .map(|(i, f)| v5_datagram(i as u32, f))
        .collect();
    write_capture(&pcap, &datagrams);
    let q = repo("tests/data/tcp-port80.flowy");
    let o = flowy(&[
        "query",
        q.to_str().unwrap(),
        "--input",
        pcap.to_str().unwrap(),
    ]);
    let lines = json_lines(&o);
    let boot_ms = i64::from(UNIX_SECS) * 1000 - i64::from(UPTIME);
    let mut expected: Vec<(String, i64, i64, u64)> = flows()
        .concat()
        .into_iter()
        .filter(|f| f.1 == 80)
        .map(|(src, _, first, last, bytes)| {
            (
                format!("10.0.0.{src}"),
                boot_ms + i64::from(first),
                boot_ms + i64::from(last),
                u64::from(bytes),
            )
        })
        .collect();
    expected.sort();
    let mut got: Vec<(String, i64, i64, u64)> = lines
        .iter()
        .map(|m| {
            let r = &m["records"][0];
            assert_eq!(r["exporter"], "192.0.2.1");
            (
                r["srcip"].as_str().unwrap().to_string(),
                ms(&r["stime"]),
                ms(&r["etime"]),
                r["bytes"].as_u64().unwrap(),
            )
        })
        .collect();
    got.sort();
    assert_eq!(got, expected);
}
