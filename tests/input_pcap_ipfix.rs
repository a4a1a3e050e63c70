//! Capture and IPFIX-file inputs on real files.
use std::borrow::Cow;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionBlock;
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::DataLink;

use flowy::input::{ipfix, pcap, InputError};
use flowy::record::Record;

/// The shared nfql traces: CI checks the repository out with `shared/`
/// beside it; a developer worktree may sit deeper, so the nearest ancestor wins.
fn trace_dir() -> std::path::PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    root.ancestors()
        .skip(1)
        .map(|dir| dir.join("shared/data/nfql-traces"))
        .find(|dir| dir.is_dir())
        .unwrap_or_else(|| root.join("../shared/data/nfql-traces"))
}

/// The fields compared between the two decodings of the trace.
type Key = (
    Option<IpAddr>,
    Option<IpAddr>,
    Option<u16>,
    Option<u16>,
    Option<u8>,
    Option<u64>,
    Option<u64>,
    i64,
    i64,
);

/// Minimal flow-tools v3 reader (layout: shared/formats/flow-tools.md) so the
/// IPFIX file is checked against an independent decoding of the same trace.
fn flowtools_v5(path: &Path) -> Vec<Key> {
    let data = std::fs::read(path).unwrap_or_default();
    let header_len = u32::from_le_bytes([data[4], data[5], data[6], data[7]]) as usize;
    let mut plain = Vec::new();
    flate2::read::ZlibDecoder::new(&data[header_len..])
        .read_to_end(&mut plain)
        .unwrap_or_default();
    let u32_at = |r: &[u8], o: usize| u32::from_le_bytes([r[o], r[o + 1], r[o + 2], r[o + 3]]);
    let u16_at = |r: &[u8], o: usize| u16::from_le_bytes([r[o], r[o + 1]]);
    plain
        .chunks_exact(64)
        .map(|r| {
            let boot = i64::from(u32_at(r, 0)) * 1000 + i64::from(u32_at(r, 4)) / 1_000_000
                - i64::from(u32_at(r, 8));
            let prot = r[52];
            (
                Some(IpAddr::V4(Ipv4Addr::from(u32_at(r, 16)))),
                Some(IpAddr::V4(Ipv4Addr::from(u32_at(r, 20)))),
                // ICMP: srcport 0 (SPEC §1.1).
                Some(if prot == 1 { 0 } else { u16_at(r, 48) }),
                Some(u16_at(r, 50)),
                Some(prot),
                Some(u64::from(u32_at(r, 36))),
                Some(u64::from(u32_at(r, 32))),
                boot + i64::from(u32_at(r, 40)),
                boot + i64::from(u32_at(r, 44)),
            )
        })
        .collect()
}

fn key(r: &Record) -> Key {
    (
        r.srcip(),
        r.dstip(),
        r.srcport(),
        r.dstport(),
        r.prot(),
        r.bytes(),
        r.packets(),
        r.stime(),
        r.etime(),
    )
}

#[test]
fn ipfix_trace_2009_matches_flowtools() -> Result<(), InputError> {
    let recs = ipfix::read(&trace_dir().join("trace-2009.ipfix"))?;
    assert_eq!(recs.len(), 556);
    let ft = flowtools_v5(&trace_dir().join("trace-2009.ftz"));
    assert_eq!(ft.len(), 556);
    let mut a: Vec<_> = recs.iter().map(key).collect();
    let mut b = ft;
    // Documented first record (shared/formats/flow-tools.md).
    assert!(
        a.iter()
            .any(|k| k.7 == 1_260_226_734_835
                && k.1 == Some(IpAddr::V4(Ipv4Addr::new(224, 0, 0, 22))))
    );
    a.sort();
    b.sort();
    let differing: Vec<_> = a.iter().zip(&b).filter(|(x, y)| x != y).take(3).collect();
    assert!(differing.is_empty(), "{differing:?}");
    assert!(recs
        .iter()
        .enumerate()
        .all(|(i, r)| r.rec_id() == i as u64 && r.exporter().is_none()));
    Ok(())
}

/// A v5 export datagram with `n` flows (sequence `seq`).
fn v5_payload(n: u16, seq: u32) -> Vec<u8> {
    let mut b = vec![0, 5];
    b.extend(n.to_be_bytes());
    b.extend(10_000u32.to_be_bytes());
    b.extend(1_700_000_000u32.to_be_bytes());
    b.extend(0u32.to_be_bytes());
    b.extend(seq.to_be_bytes());
    b.extend([0; 4]);
    for i in 0..n {
        b.extend([10, 0, 0, 1, 10, 0, 0, 2, 0, 0, 0, 0]);
        b.extend([0; 4]);
        b.extend(1u32.to_be_bytes());
        b.extend((100 + u32::from(i)).to_be_bytes());
        b.extend(5_000u32.to_be_bytes());
        b.extend(6_000u32.to_be_bytes());
        b.extend(1234u16.to_be_bytes());
        b.extend(80u16.to_be_bytes());
        b.extend([0, 0, 6, 0, 0, 0, 0, 0, 24, 24, 0, 0]);
    }
    b
}

fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = sport.to_be_bytes().to_vec();
    u.extend(dport.to_be_bytes());
    u.extend(((payload.len() + 8) as u16).to_be_bytes());
    u.extend([0, 0]);
    u.extend(payload);
    u
}

fn ipv4_udp(src: [u8; 4], payload: &[u8]) -> Vec<u8> {
    let u = udp(2055, 9995, payload);
    let mut ip = vec![0x45, 0];
    ip.extend(((u.len() + 20) as u16).to_be_bytes());
    ip.extend([0, 0, 0x40, 0, 64, 17, 0, 0]);
    ip.extend(src);
    ip.extend([192, 0, 2, 200]);
    ip.extend(u);
    ip
}

fn ipv6_udp(src: Ipv6Addr, payload: &[u8]) -> Vec<u8> {
    let u = udp(4739, 4739, payload);
    let mut ip = vec![0x60, 0, 0, 0];
    ip.extend((u.len() as u16).to_be_bytes());
    ip.extend([17, 64]);
    ip.extend(src.octets());
    ip.extend(Ipv6Addr::LOCALHOST.octets());
    ip.extend(u);
    ip
}

fn ethernet(ip: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; 12];
    f.extend([0x81, 0x00, 0, 5]); // one VLAN tag
    f.extend([0x08, 0x00]);
    f.extend(ip);
    f
}

fn write_pcap(path: &Path, frames: &[(Duration, Vec<u8>)]) {
    let file = std::fs::File::create(path).ok();
    let header = PcapHeader {
        datalink: DataLink::ETHERNET,
        ..PcapHeader::default()
    };
    let mut w = file.and_then(|f| PcapWriter::with_header(f, header).ok());
    for (ts, f) in frames {
        if let Some(w) = w.as_mut() {
            w.write_packet(&PcapPacket::new(*ts, f.len() as u32, f))
                .ok();
        }
    }
}

fn eth_capture(path: &Path) {
    let frames: Vec<_> = (0..3u32)
        .map(|i| {
            let ts = Duration::from_millis(1_700_000_000_000 + u64::from(i) * 20);
            (
                ts,
                ethernet(&ipv4_udp([192, 0, 2, 1 + i as u8], &v5_payload(2, 2 * i))),
            )
        })
        .collect();
    write_pcap(path, &frames);
}

#[test]
fn pcap_ethernet_vlan_ipv4() -> Result<(), InputError> {
    let dir = tempfile::tempdir().map_err(|e| InputError::Open {
        path: trace_dir(),
        source: e,
    })?;
    let path = dir.path().join("v5.pcap");
    eth_capture(&path);
    let recs = pcap::read(&path)?;
    assert_eq!(recs.len(), 6);
    assert_eq!(
        recs[0].exporter(),
        Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)))
    );
    assert_eq!(
        recs[5].exporter(),
        Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 3)))
    );
    assert_eq!(recs[1].bytes(), Some(101));
    assert_eq!(recs[0].stime(), 1_700_000_000_000 - 5_000);
    assert!(recs.iter().enumerate().all(|(i, r)| r.rec_id() == i as u64));
    Ok(())
}

#[test]
fn pcapng_linux_cooked_and_raw_ipv6() -> Result<(), InputError> {
    let dir = tempfile::tempdir().map_err(|e| InputError::Open {
        path: trace_dir(),
        source: e,
    })?;
    let path = dir.path().join("mixed.pcapng");
    let v6: Ipv6Addr = "2001:db8::5".parse().unwrap_or(Ipv6Addr::LOCALHOST);
    let mut sll = vec![0u8; 14];
    sll.extend([0x08, 0x00]);
    sll.extend(ipv4_udp([198, 51, 100, 9], &v5_payload(1, 0)));
    if let Some(mut w) = std::fs::File::create(&path)
        .ok()
        .and_then(|f| PcapNgWriter::new(f).ok())
    {
        for link in [DataLink::LINUX_SLL, DataLink::RAW] {
            let idb = InterfaceDescriptionBlock {
                linktype: link,
                snaplen: 65535,
                options: vec![],
            };
            w.write_pcapng_block(idb).ok();
        }
        for (iface, data) in [(0u32, sll), (1, ipv6_udp(v6, &v5_payload(3, 0)))] {
            let epb = EnhancedPacketBlock {
                interface_id: iface,
                timestamp: Duration::from_secs(1_700_000_000),
                original_len: data.len() as u32,
                data: Cow::Owned(data),
                options: vec![],
            };
            w.write_pcapng_block(epb).ok();
        }
    }
    let grams = pcap::datagrams(&path)?;
    assert_eq!(grams.len(), 2);
    assert_eq!(grams[1].src, SocketAddr::new(IpAddr::V6(v6), 4739));
    let recs = pcap::read(&path)?;
    assert_eq!(recs.len(), 4);
    assert_eq!(recs[3].exporter(), Some(IpAddr::V6(v6)));
    Ok(())
}

#[test]
fn malformed_capture_names_file_and_offset() -> std::io::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("cut.pcap");
    eth_capture(&path);
    let full = std::fs::read(&path)?;
    std::fs::write(&path, &full[..full.len() - 10])?;
    let err = pcap::read(&path)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("cut.pcap") && err.contains("offset"), "{err}");
    std::fs::write(&path, b"definitely not a capture")?;
    let err = pcap::read(&path)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("offset 0"), "{err}");
    Ok(())
}

#[test]
fn malformed_ipfix_file_names_offset() -> std::io::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("bad.ipfix");
    let good = std::fs::read(trace_dir().join("trace-2009.ipfix"))?;
    let first_len = usize::from(u16::from_be_bytes([good[2], good[3]]));
    // One good message, then a header with the wrong version.
    let mut img = good[..first_len].to_vec();
    img.extend([0, 9, 0, 20]);
    std::fs::write(&path, &img)?;
    let err = ipfix::read(&path)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("bad.ipfix") && err.contains(&format!("offset {first_len}")),
        "{err}"
    );
    assert!(err.contains("version"), "{err}");
    Ok(())
}

#[tokio::test]
async fn replay_sends_every_datagram() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("v5.pcap");
    eth_capture(&path);
    let rx = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    let to = rx.local_addr()?;
    let sent = flowy::collect::replay(&path, to, Some(100.0)).await?;
    assert_eq!(sent, 3);
    let mut d = flowy::collect::Decoder::new(flowy::collect::DecoderConfig::default());
    let mut out = Vec::new();
    let mut buf = vec![0u8; 65536];
    for _ in 0..3 {
        let (n, from) =
            tokio::time::timeout(Duration::from_secs(5), rx.recv_from(&mut buf)).await??;
        d.decode(&buf[..n], from, 0, &mut out);
    }
    assert_eq!(out.len(), 6);
    assert!(
        flowy::collect::replay(&dir.path().join("missing.pcap"), to, None)
            .await
            .is_err()
    );
    let garbage = dir.path().join("garbage.pcap");
    std::fs::write(&garbage, b"not a capture at all")?;
    let err = flowy::collect::replay(&garbage, to, None).await.err();
    let msg = err.map(|e| e.to_string()).unwrap_or_default();
    assert!(
        msg.contains("garbage.pcap") && msg.contains("offset 0"),
        "{msg}"
    );
    Ok(())
}
