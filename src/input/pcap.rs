//! Captures (pcap or pcapng) of export datagrams: UDP payloads → the
//! collector's `Decoder`, the packet's source address as the exporter.
//! Also the datagram source for `flowy replay`.

use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use pcap_file::pcap::PcapParser;
use pcap_file::pcapng::{Block, PcapNgParser};
use pcap_file::{DataLink, PcapError};

use super::stream::collect;
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
    let file = open(path)?;
    collect(|emit| stream(path, file, emit))
}

/// Decode a capture already in memory; `path` only labels errors.
pub fn parse(path: &Path, data: &[u8]) -> Result<Vec<Record>, InputError> {
    collect(|emit| stream(path, data, emit))
}

/// Decode a capture packet by packet: each export datagram goes through
/// the collector's `Decoder` as it is read (rec_id = index in the file).
pub fn stream<R: Read>(path: &Path, r: R, emit: &mut dyn FnMut(Record)) -> Result<(), InputError> {
    let mut decoder = Decoder::new(DecoderConfig {
        template_scope: TemplateScope::AddressPort,
        ..DecoderConfig::default()
    });
    let mut out = Vec::new();
    let mut next_id = 0u64;
    each_datagram(path, r, |ts, src, _dst, payload| {
        let now_ms = i64::try_from(ts.as_millis()).unwrap_or(i64::MAX);
        decoder.decode(payload, src, now_ms, &mut out);
        for mut rec in out.drain(..) {
            rec.set_rec_id(next_id);
            next_id += 1;
            emit(rec);
        }
    })
}

/// Every UDP datagram of a capture, in file order. Packets that are not UDP
/// over IPv4/IPv6 (or later IP fragments) are skipped.
pub fn datagrams(path: &Path) -> Result<Vec<Datagram>, InputError> {
    collect_datagrams(path, open(path)?)
}

fn open(path: &Path) -> Result<std::fs::File, InputError> {
    std::fs::File::open(path).map_err(|source| InputError::Open {
        path: path.to_path_buf(),
        source,
    })
}

/// The UDP datagrams of a capture already in memory; `path` only labels errors.
pub fn datagrams_in(path: &Path, data: &[u8]) -> Result<Vec<Datagram>, InputError> {
    collect_datagrams(path, data)
}

fn collect_datagrams(path: &Path, r: impl Read) -> Result<Vec<Datagram>, InputError> {
    let mut out = Vec::new();
    each_datagram(path, r, |ts, src, dst, payload| {
        out.push(Datagram {
            ts,
            src,
            dst,
            payload: payload.to_vec(),
        })
    })?;
    Ok(out)
}

/// Call `f(timestamp, source, destination, payload)` for each UDP
/// datagram of a capture, reading it packet by packet.
pub fn each_datagram<R: Read>(
    path: &Path,
    r: R,
    mut f: impl FnMut(Duration, SocketAddr, SocketAddr, &[u8]),
) -> Result<(), InputError> {
    let bad = |offset: u64, reason: String| InputError::Malformed {
        path: path.to_path_buf(),
        offset,
        reason,
    };
    let mut w = Window::new(r);
    let magic = w.head(4).map_err(|(o, r)| bad(o, r))?;
    let mut on_frame = |link: DataLink, ts: Duration, frame: &[u8]| {
        if let Some((src, dst, payload)) = udp_in_frame(link, frame) {
            f(ts, src, dst, payload);
        }
    };
    if magic == PCAPNG_MAGIC {
        read_pcapng(&mut w, &mut on_frame).map_err(|(o, r)| bad(o, r))
    } else if looks_like_capture(&magic) {
        read_pcap(&mut w, &mut on_frame).map_err(|(o, r)| bad(o, r))
    } else {
        Err(bad(
            0,
            "not a pcap or pcapng capture (unknown magic number)".into(),
        ))
    }
}

/// A file offset and what is wrong there.
type Failure = (u64, String);

/// Why a step over the buffered bytes failed.
enum Step {
    Pcap(PcapError),
    Bad(String),
}

impl From<PcapError> for Step {
    fn from(e: PcapError) -> Self {
        Step::Pcap(e)
    }
}

fn describe(e: PcapError) -> String {
    match e {
        PcapError::IncompleteBuffer => "capture ends in the middle of a record".into(),
        other => other.to_string(),
    }
}

/// pcap-file's slice parsers over a window of the input that slides and
/// grows as they ask for more: one packet (block) is held at a time, and
/// every error knows its file offset.
struct Window<R> {
    inner: R,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// File offset of `buf[start]`.
    offset: u64,
    eof: bool,
}

/// Initial window; it grows to hold the largest packet.
const WINDOW: usize = 64 * 1024;
/// No capture record is larger (pcap-file's own reader holds 8 MB).
const MAX_RECORD: usize = 16 << 20;

impl<R: Read> Window<R> {
    fn new(inner: R) -> Self {
        Window {
            inner,
            buf: vec![0; WINDOW],
            start: 0,
            end: 0,
            offset: 0,
            eof: false,
        }
    }

    /// The input's first `n` bytes (fewer when it is shorter), unconsumed.
    fn head(&mut self, n: usize) -> Result<Vec<u8>, Failure> {
        while self.end - self.start < n && !self.eof {
            self.more()?;
        }
        let have = n.min(self.end - self.start);
        Ok(self.buf[self.start..self.start + have].to_vec())
    }

    /// True when every byte has been consumed.
    fn at_end(&mut self) -> Result<bool, Failure> {
        if self.start == self.end && !self.eof {
            self.more()?;
        }
        Ok(self.start == self.end)
    }

    /// Run `step` on the buffered bytes, reading more while it needs more;
    /// `step` returns the bytes it used and its value.
    fn step<T>(
        &mut self,
        mut step: impl FnMut(&[u8]) -> Result<(usize, T), Step>,
    ) -> Result<T, Failure> {
        loop {
            match step(&self.buf[self.start..self.end]) {
                Ok((used, value)) => {
                    self.start += used;
                    self.offset += used as u64;
                    return Ok(value);
                }
                Err(Step::Pcap(PcapError::IncompleteBuffer)) if !self.eof => self.more()?,
                Err(Step::Pcap(e)) => return Err((self.offset, describe(e))),
                Err(Step::Bad(reason)) => return Err((self.offset, reason)),
            }
        }
    }

    /// Read more input behind the buffered bytes (growing the window when
    /// they fill it).
    fn more(&mut self) -> Result<(), Failure> {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            if self.buf.len() >= MAX_RECORD {
                return Err((
                    self.offset,
                    format!("capture record larger than {MAX_RECORD} bytes: refused"),
                ));
            }
            self.buf.resize(self.buf.len() * 2, 0);
        }
        let n = loop {
            match self.inner.read(&mut self.buf[self.end..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err((self.offset, format!("cannot read: {e}"))),
            }
        };
        self.end += n;
        self.eof = n == 0;
        Ok(())
    }
}

/// How many bytes of `before` a parser left as `rest`.
fn used(before: &[u8], rest: &[u8]) -> usize {
    before.len() - rest.len()
}

fn read_pcap<R: Read>(
    w: &mut Window<R>,
    on_frame: &mut impl FnMut(DataLink, Duration, &[u8]),
) -> Result<(), Failure> {
    let parser = w.step(|data| {
        let (rest, parser) = PcapParser::new(data)?;
        Ok((used(data, rest), parser))
    })?;
    let link = parser.header().datalink;
    while !w.at_end()? {
        w.step(|data| {
            let (rest, pkt) = parser.next_packet(data)?;
            on_frame(link, pkt.timestamp, &pkt.data);
            Ok((used(data, rest), ()))
        })?;
    }
    Ok(())
}

fn read_pcapng<R: Read>(
    w: &mut Window<R>,
    on_frame: &mut impl FnMut(DataLink, Duration, &[u8]),
) -> Result<(), Failure> {
    let mut parser = w.step(|data| {
        let (rest, parser) = PcapNgParser::new(data)?;
        Ok((used(data, rest), parser))
    })?;
    while !w.at_end()? {
        w.step(|data| {
            let (rest, block) = parser.next_block(data)?;
            match block {
                Block::EnhancedPacket(epb) => {
                    let link = parser
                        .packet_interface(&epb)
                        .map(|i| i.linktype)
                        .ok_or_else(|| {
                            Step::Bad(format!(
                                "packet names unknown interface {}",
                                epb.interface_id
                            ))
                        })?;
                    on_frame(link, epb.timestamp, &epb.data);
                }
                Block::SimplePacket(spb) => {
                    let link = parser
                        .interfaces()
                        .first()
                        .map(|i| i.linktype)
                        .ok_or_else(|| Step::Bad("simple packet before any interface".into()))?;
                    on_frame(link, Duration::ZERO, &spb.data);
                }
                _ => {}
            }
            Ok((used(data, rest), ()))
        })?;
    }
    Ok(())
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
