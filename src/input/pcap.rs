//! Captures (pcap or pcapng) of export datagrams: UDP payloads → the
//! collector's `Decoder`, the packet's source address as the exporter.
//! Also the datagram source for `flowy replay`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use pcap_file::pcap::PcapParser;
use pcap_file::pcapng::{Block, PcapNgParser};
use pcap_file::{DataLink, PcapError};

use super::InputError;
use crate::collect::{Decoder, DecoderConfig, TemplateScope};
use crate::record::Record;

/// One UDP datagram found in a capture.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Datagram {
    /// Capture timestamp (since the epoch).
    pub ts: Duration,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub payload: Vec<u8>,
}

const PCAP_MAGICS: [[u8; 4]; 4] = [
    [0xd4, 0xc3, 0xb2, 0xa1],
    [0xa1, 0xb2, 0xc3, 0xd4],
    [0x4d, 0x3c, 0xb2, 0xa1],
    [0xa1, 0xb2, 0x3c, 0x4d],
];
const PCAPNG_MAGIC: [u8; 4] = [0x0a, 0x0d, 0x0d, 0x0a];

/// True if the bytes start like a pcap or pcapng file (format detection).
pub fn looks_like_capture(head: &[u8]) -> bool {
    head.get(..4)
        .is_some_and(|m| PCAP_MAGICS.iter().any(|p| p == m) || m == PCAPNG_MAGIC)
}

/// Records of every export datagram in the capture; rec_id = index.
pub fn read(path: &Path) -> Result<Vec<Record>, InputError> {
    let data = read_bytes(path)?;
    parse(path, &data)
}

/// Decode a capture already in memory; `path` only labels errors.
pub fn parse(path: &Path, data: &[u8]) -> Result<Vec<Record>, InputError> {
    let datagrams = datagrams_in(path, data)?;
    let mut decoder = Decoder::new(DecoderConfig {
        template_scope: TemplateScope::AddressPort,
        ..DecoderConfig::default()
    });
    let mut out = Vec::new();
    for d in &datagrams {
        let now_ms = i64::try_from(d.ts.as_millis()).unwrap_or(i64::MAX);
        decoder.decode(&d.payload, d.src, now_ms, &mut out);
    }
    for (i, r) in out.iter_mut().enumerate() {
        r.rec_id = i as u64;
    }
    Ok(out)
}

/// Every UDP datagram of a capture, in file order. Packets that are not UDP
/// over IPv4/IPv6 (or later IP fragments) are skipped.
pub fn datagrams(path: &Path) -> Result<Vec<Datagram>, InputError> {
    datagrams_in(path, &read_bytes(path)?)
}

fn read_bytes(path: &Path) -> Result<Vec<u8>, InputError> {
    std::fs::read(path).map_err(|source| InputError::Open {
        path: path.to_path_buf(),
        source,
    })
}

/// The UDP datagrams of a capture already in memory; `path` only labels errors.
pub fn datagrams_in(path: &Path, data: &[u8]) -> Result<Vec<Datagram>, InputError> {
    let bad = |offset: usize, reason: String| InputError::Malformed {
        path: path.to_path_buf(),
        offset: offset as u64,
        reason,
    };
    if data.get(..4) == Some(PCAPNG_MAGIC.as_slice()) {
        read_pcapng(data).map_err(|(o, r)| bad(o, r))
    } else if looks_like_capture(data) {
        read_pcap(data).map_err(|(o, r)| bad(o, r))
    } else {
        Err(bad(
            0,
            "not a pcap or pcapng capture (unknown magic number)".into(),
        ))
    }
}

type Failure = (usize, String);

fn describe(e: PcapError) -> String {
    match e {
        PcapError::IncompleteBuffer => "capture ends in the middle of a record".into(),
        other => other.to_string(),
    }
}

fn read_pcap(data: &[u8]) -> Result<Vec<Datagram>, Failure> {
    let (mut rest, parser) = PcapParser::new(data).map_err(|e| (0, describe(e)))?;
    let link = parser.header().datalink;
    let mut out = Vec::new();
    while !rest.is_empty() {
        let offset = data.len() - rest.len();
        let (next, pkt) = parser
            .next_packet(rest)
            .map_err(|e| (offset, describe(e)))?;
        push_udp(&mut out, link, pkt.timestamp, &pkt.data);
        rest = next;
    }
    Ok(out)
}

fn read_pcapng(data: &[u8]) -> Result<Vec<Datagram>, Failure> {
    let (mut rest, mut parser) = PcapNgParser::new(data).map_err(|e| (0, describe(e)))?;
    let mut out = Vec::new();
    while !rest.is_empty() {
        let offset = data.len() - rest.len();
        let (next, block) = parser.next_block(rest).map_err(|e| (offset, describe(e)))?;
        match block {
            Block::EnhancedPacket(epb) => {
                let link = parser
                    .packet_interface(&epb)
                    .map(|i| i.linktype)
                    .ok_or_else(|| {
                        (
                            offset,
                            format!("packet names unknown interface {}", epb.interface_id),
                        )
                    })?;
                push_udp(&mut out, link, epb.timestamp, &epb.data);
            }
            Block::SimplePacket(spb) => {
                let link = parser
                    .interfaces()
                    .first()
                    .map(|i| i.linktype)
                    .ok_or_else(|| (offset, "simple packet before any interface".to_string()))?;
                push_udp(&mut out, link, Duration::ZERO, &spb.data);
            }
            _ => {}
        }
        rest = next;
    }
    Ok(out)
}

fn push_udp(out: &mut Vec<Datagram>, link: DataLink, ts: Duration, frame: &[u8]) {
    if let Some((src, dst, payload)) = udp_in_frame(link, frame) {
        out.push(Datagram {
            ts,
            src,
            dst,
            payload: payload.to_vec(),
        });
    }
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    b.get(at..at + 2).map(|s| u16::from_be_bytes([s[0], s[1]]))
}

/// The UDP datagram inside a link-layer frame, if there is one.
pub fn udp_in_frame(link: DataLink, frame: &[u8]) -> Option<(SocketAddr, SocketAddr, &[u8])> {
    let ip = match link {
        DataLink::ETHERNET => ethernet_payload(frame)?,
        DataLink::LINUX_SLL => frame.get(16..)?,
        DataLink::LINUX_SLL2 => frame.get(20..)?,
        DataLink::NULL | DataLink::LOOP => frame.get(4..)?,
        DataLink::RAW | DataLink::IPV4 | DataLink::IPV6 => frame,
        _ => return None,
    };
    match ip.first()? >> 4 {
        4 => ipv4_udp(ip),
        6 => ipv6_udp(ip),
        _ => None,
    }
}

fn ethernet_payload(frame: &[u8]) -> Option<&[u8]> {
    let mut at = 12;
    let mut ethertype = u16_at(frame, at)?;
    // 802.1Q / 802.1ad tags.
    while ethertype == 0x8100 || ethertype == 0x88a8 {
        at += 4;
        ethertype = u16_at(frame, at)?;
    }
    match ethertype {
        0x0800 | 0x86dd => frame.get(at + 2..),
        _ => None,
    }
}

fn ipv4_udp(ip: &[u8]) -> Option<(SocketAddr, SocketAddr, &[u8])> {
    let ihl = usize::from(ip.first()? & 0x0f) * 4;
    let frag = u16_at(ip, 6)?;
    if ip.get(9)? != &17 || ihl < 20 || frag & 0x1fff != 0 {
        return None;
    }
    let total = usize::from(u16_at(ip, 2)?).min(ip.len());
    let src = Ipv4Addr::from(<[u8; 4]>::try_from(ip.get(12..16)?).ok()?);
    let dst = Ipv4Addr::from(<[u8; 4]>::try_from(ip.get(16..20)?).ok()?);
    udp(IpAddr::V4(src), IpAddr::V4(dst), ip.get(ihl..total)?)
}

fn ipv6_udp(ip: &[u8]) -> Option<(SocketAddr, SocketAddr, &[u8])> {
    let src = Ipv6Addr::from(<[u8; 16]>::try_from(ip.get(8..24)?).ok()?);
    let dst = Ipv6Addr::from(<[u8; 16]>::try_from(ip.get(24..40)?).ok()?);
    let end = (40 + usize::from(u16_at(ip, 4)?)).min(ip.len());
    let mut next = *ip.get(6)?;
    let mut at = 40;
    // Hop-by-hop, routing and destination options precede the UDP header.
    while matches!(next, 0 | 43 | 60) {
        next = *ip.get(at)?;
        at += (usize::from(*ip.get(at + 1)?) + 1) * 8;
    }
    if next != 17 {
        return None;
    }
    udp(IpAddr::V6(src), IpAddr::V6(dst), ip.get(at..end)?)
}

fn udp(src: IpAddr, dst: IpAddr, seg: &[u8]) -> Option<(SocketAddr, SocketAddr, &[u8])> {
    let sport = u16_at(seg, 0)?;
    let dport = u16_at(seg, 2)?;
    let len = usize::from(u16_at(seg, 4)?);
    if len < 8 {
        return None;
    }
    let payload = seg.get(8..len.min(seg.len()))?;
    Some((
        SocketAddr::new(src, sport),
        SocketAddr::new(dst, dport),
        payload,
    ))
}
