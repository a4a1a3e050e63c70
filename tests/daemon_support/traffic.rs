//! Packet-level traffic for the query library's tests: the attacks the
//! library detects, their near misses and ordinary traffic, as packets
//! softflowd can meter from a capture; and a minimal flow meter that turns
//! the same packets into NetFlow v5 export datagrams for `flowy query`.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use super::netflow::{v5, Flow};
use super::packets::{write_export_pcap, ACK, FIN, PSH, RST, SYN};
use super::softflowd::{sa, tcp_session, Packet};

const TCP: u8 = 6;
const UDP: u8 = 17;

fn push(
    out: &mut Vec<Packet>,
    at_ms: i64,
    src: SocketAddr,
    dst: SocketAddr,
    prot: u8,
    payload: usize,
    flags: u8,
) {
    out.push(Packet {
        at_ms,
        src,
        dst,
        prot,
        payload,
        flags,
    });
}

fn at(ip: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip.parse().expect("literal address"), port)
}

/// A SYN scan of `ports` on one target, 20 ms apart, from one source port
/// (as nmap does). Closed ports answer RST/ACK; the ports in `open` answer
/// SYN/ACK and the scanner resets them.
pub fn syn_scan(
    out: &mut Vec<Packet>,
    t: i64,
    scanner: &str,
    target: &str,
    ports: &[u16],
    open: &[u16],
) {
    let s = at(scanner, 40_000);
    for (i, &port) in ports.iter().enumerate() {
        let ts = t + 20 * i as i64;
        let d = at(target, port);
        push(out, ts, s, d, TCP, 0, SYN);
        if open.contains(&port) {
            push(out, ts + 1, d, s, TCP, 0, SYN | ACK);
            push(out, ts + 2, s, d, TCP, 0, RST);
        } else {
            push(out, ts + 1, d, s, TCP, 0, RST | ACK);
        }
    }
}

/// A sweep of one port over `hosts` addresses `prefix.1`, `prefix.2`, …:
/// every other host answers RST/ACK, the rest stay silent and the scanner
/// retransmits its SYN once.
pub fn syn_sweep(out: &mut Vec<Packet>, t: i64, scanner: &str, prefix: &str, hosts: u8, port: u16) {
    let s = at(scanner, 40_001);
    for h in 1..=hosts {
        let ts = t + 20 * i64::from(h);
        let d = at(&format!("{prefix}.{h}"), port);
        push(out, ts, s, d, TCP, 0, SYN);
        if h % 2 == 0 {
            push(out, ts + 1, d, s, TCP, 0, RST | ACK);
        } else {
            push(out, ts + 1_000, s, d, TCP, 0, SYN);
        }
    }
}

/// One SSH connection that fails to log in: handshake, version strings
/// and key exchange, a few password tries, the server closes.
pub fn ssh_attempt(out: &mut Vec<Packet>, t: i64, client: SocketAddr, server: SocketAddr) {
    let mut p = |dt: i64, from_client: bool, payload: usize, flags: u8| {
        let (src, dst) = if from_client {
            (client, server)
        } else {
            (server, client)
        };
        push(out, t + dt, src, dst, TCP, payload, flags);
    };
    p(0, true, 0, SYN);
    p(5, false, 0, SYN | ACK);
    p(10, true, 0, ACK);
    p(20, false, 40, PSH | ACK); // server version
    p(30, true, 40, PSH | ACK); // client version
    p(40, true, 1_400, PSH | ACK); // key exchange init
    p(50, false, 1_000, PSH | ACK);
    for i in 0..3 {
        p(200 + 300 * i, true, 100, PSH | ACK); // a password
        p(450 + 300 * i, false, 60, PSH | ACK); // refused
    }
    p(1_200, false, 0, FIN | ACK);
    p(1_205, true, 0, FIN | ACK);
    p(1_210, false, 0, ACK);
}

/// `n` failed SSH logins from `client`, `spacing_ms` apart, each from the
/// next source port.
pub fn ssh_attempts(
    out: &mut Vec<Packet>,
    t: i64,
    client: &str,
    server: &str,
    n: u16,
    spacing_ms: i64,
) {
    for i in 0..n {
        let c = at(client, 50_000 + i);
        ssh_attempt(out, t + spacing_ms * i64::from(i), c, at(server, 22));
    }
}

/// How the spoofed queries behind DNS responses chose the victim's port.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum VictimPort {
    /// One port for everything: one flow per resolver.
    Fixed,
    /// A new port per query, as a stub resolver does: one flow per response.
    PerQuery,
}

/// DNS responses of `size` payload bytes from `resolvers` addresses
/// `prefix.1`, … to `victim`, `per_resolver` each, 10 ms apart.
pub fn dns_responses(
    out: &mut Vec<Packet>,
    t: i64,
    (prefix, resolvers): (&str, u8),
    victim: &str,
    (per_resolver, size): (u16, usize),
    ports: VictimPort,
) {
    for r in 1..=resolvers {
        let src = at(&format!("{prefix}.{r}"), 53);
        for k in 0..per_resolver {
            let port = match ports {
                VictimPort::Fixed => 4_444,
                VictimPort::PerQuery => 20_000 + u16::from(r) * 100 + k,
            };
            let ts = t + 10 * i64::from(k) + i64::from(r);
            push(out, ts, src, at(victim, port), UDP, size, 0);
        }
    }
}

/// A TCP transfer: `up` full segments from `a` to `b` (each acknowledged
/// every second segment) and `down` full segments back, 2 ms apart.
pub fn transfer(out: &mut Vec<Packet>, t: i64, a: &str, b: &str, up: u32, down: u32) {
    let (a, b) = (sa(a), sa(b));
    push(out, t, a, b, TCP, 0, SYN);
    push(out, t + 1, b, a, TCP, 0, SYN | ACK);
    push(out, t + 2, a, b, TCP, 0, ACK);
    let mut ts = t + 3;
    for i in 0..up.max(down) {
        ts += 2;
        if i < up {
            push(out, ts, a, b, TCP, 1_448, PSH | ACK);
            if i % 2 == 1 && i >= down {
                push(out, ts + 1, b, a, TCP, 0, ACK);
            }
        }
        if i < down {
            push(out, ts + 1, b, a, TCP, 1_448, PSH | ACK);
        }
    }
    push(out, ts + 10, a, b, TCP, 0, FIN | ACK);
    push(out, ts + 11, b, a, TCP, 0, FIN | ACK);
    push(out, ts + 12, a, b, TCP, 0, ACK);
}

/// Ordinary traffic: web downloads, name lookups, an administrator's few
/// SSH logins.
pub fn ordinary(out: &mut Vec<Packet>, t: i64) {
    tcp_session(out, t, "10.1.0.5:51000", "198.51.100.7:80", 120, 8);
    tcp_session(out, t + 700, "10.1.0.6:51001", "198.51.100.8:443", 300, 20);
    for (i, c) in ["10.1.0.5", "10.1.0.6", "10.1.0.7"].iter().enumerate() {
        let port = 33_000 + i as u16;
        let ts = t + 1_000 + 30 * i as i64;
        push(out, ts, at(c, port), at("192.0.2.53", 53), UDP, 40, 0);
        push(out, ts + 5, at("192.0.2.53", 53), at(c, port), UDP, 120, 0);
    }
    ssh_attempts(out, t + 2_000, "10.1.0.7", "192.0.2.22", 3, 4_000);
}

/// Sort by time (stable: the order within one millisecond is kept).
pub fn sorted(mut pk: Vec<Packet>) -> Vec<Packet> {
    pk.sort_by_key(|p| p.at_ms);
    pk
}

/// One direction of a flow, as a unidirectional meter counts it.
type FlowKey = (SocketAddr, SocketAddr, u8);

/// The flows a meter reports for `pk` (one per direction of each 5-tuple,
/// in order of first appearance in `pk`, which need not be sorted); IPv4
/// only, as NetFlow v5 carries.
pub fn meter(pk: &[Packet]) -> Vec<Flow> {
    let mut order: Vec<FlowKey> = Vec::new();
    let mut flows: BTreeMap<FlowKey, Flow> = BTreeMap::new();
    for p in pk {
        let (IpAddr::V4(src), IpAddr::V4(dst)) = (p.src.ip(), p.dst.ip()) else {
            panic!("the library's test traffic is IPv4");
        };
        let key = (p.src, p.dst, p.prot);
        let f = flows.entry(key).or_insert_with(|| {
            order.push(key);
            Flow {
                src,
                dst,
                sport: p.src.port(),
                dport: p.dst.port(),
                prot: p.prot,
                bytes: 0,
                packets: 0,
                stime: p.at_ms,
                etime: p.at_ms,
                tcp_flags: 0,
            }
        });
        f.bytes += p.ip_len() as u32;
        f.packets += 1;
        f.stime = f.stime.min(p.at_ms);
        f.etime = f.etime.max(p.at_ms);
        f.tcp_flags |= p.flags;
    }
    order.iter().filter_map(|k| flows.remove(k)).collect()
}

/// A capture of NetFlow v5 datagrams (30 flows each, exported a second
/// after the last flow ended) reporting `flows`.
pub fn write_v5_capture(path: &Path, flows: &[Flow]) {
    let export_ms = flows.iter().map(|f| f.etime).max().unwrap_or(0) + 1_000;
    let datagrams: Vec<(i64, Vec<u8>)> = flows
        .chunks(30)
        .enumerate()
        .map(|(i, chunk)| (export_ms, v5(export_ms, (30 * i) as u32, chunk)))
        .collect();
    write_export_pcap(path, sa("127.0.0.1:9995"), sa("127.0.0.1:2055"), &datagrams);
}
