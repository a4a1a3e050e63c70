//! Ethernet/IP/UDP/TCP frames and pcap files, built by hand.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use pcap_file::pcap::{PcapPacket, PcapWriter};

fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for chunk in data.chunks(2) {
        let word = u16::from_be_bytes([chunk[0], *chunk.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn ethernet(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01];
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn ip_packet(src: IpAddr, dst: IpAddr, proto: u8, l4: &[u8]) -> Vec<u8> {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let total = 20 + l4.len();
            let mut h = vec![0x45, 0];
            h.extend_from_slice(&(total as u16).to_be_bytes());
            h.extend_from_slice(&[0, 1, 0x40, 0, 64, proto, 0, 0]);
            h.extend_from_slice(&s.octets());
            h.extend_from_slice(&d.octets());
            let c = checksum(&h);
            h[10..12].copy_from_slice(&c.to_be_bytes());
            h.extend_from_slice(l4);
            ethernet(0x0800, &h)
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            let mut h = vec![0x60, 0, 0, 0];
            h.extend_from_slice(&(l4.len() as u16).to_be_bytes());
            h.extend_from_slice(&[proto, 64]);
            h.extend_from_slice(&s.octets());
            h.extend_from_slice(&d.octets());
            h.extend_from_slice(l4);
            ethernet(0x86dd, &h)
        }
        _ => panic!("mixed address families in a test packet"),
    }
}

/// An Ethernet frame carrying a UDP datagram (checksum 0: optional for IPv4).
pub fn udp_frame(src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let mut u = Vec::with_capacity(8 + payload.len());
    u.extend_from_slice(&src.port().to_be_bytes());
    u.extend_from_slice(&dst.port().to_be_bytes());
    u.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    ip_packet(src.ip(), dst.ip(), 17, &u)
}

pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const PSH: u8 = 0x08;
pub const ACK: u8 = 0x10;

/// An Ethernet frame carrying a TCP segment with `payload_len` zero bytes.
pub fn tcp_frame(src: SocketAddr, dst: SocketAddr, flags: u8, payload_len: usize) -> Vec<u8> {
    let mut t = Vec::with_capacity(20 + payload_len);
    t.extend_from_slice(&src.port().to_be_bytes());
    t.extend_from_slice(&dst.port().to_be_bytes());
    t.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1]); // seq, ack
    t.extend_from_slice(&[0x50, flags]);
    t.extend_from_slice(&[0xff, 0xff, 0, 0, 0, 0]); // window, checksum, urgent
    t.resize(20 + payload_len, 0);
    ip_packet(src.ip(), dst.ip(), 6, &t)
}

/// A frame with its capture time (ms since the epoch).
pub struct Frame {
    pub at_ms: i64,
    pub data: Vec<u8>,
}

pub fn write_pcap(path: &Path, frames: &[Frame]) {
    let file = std::fs::File::create(path).expect("create pcap");
    let mut w = PcapWriter::new(std::io::BufWriter::new(file)).expect("pcap header");
    for f in frames {
        let ts = Duration::from_millis(f.at_ms as u64);
        w.write_packet(&PcapPacket::new(ts, f.data.len() as u32, &f.data))
            .expect("write packet");
    }
}

/// A capture of export datagrams sent from `exporter` to `collector`.
pub fn write_export_pcap(
    path: &Path,
    exporter: SocketAddr,
    collector: SocketAddr,
    datagrams: &[(i64, Vec<u8>)],
) {
    let frames: Vec<Frame> = datagrams
        .iter()
        .map(|(at, d)| Frame {
            at_ms: *at,
            data: udp_frame(exporter, collector, d),
        })
        .collect();
    write_pcap(path, &frames);
}
