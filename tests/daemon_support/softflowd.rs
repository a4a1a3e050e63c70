//! A real exporter in tests: traffic captures for softflowd to read, the
//! softflowd run that exports them, a relay that keeps a copy of every
//! datagram on its way to a daemon, and match normalisation for comparing
//! runs whose rec_ids differ.

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::Value;

use super::netflow::now_ms;
use super::packets::{tcp_frame, udp_frame, Frame, ACK, FIN, PSH, SYN};

/// One packet of the traffic, and what a flow meter should count for it.
pub struct Packet {
    pub at_ms: i64,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub prot: u8,
    pub payload: usize,
    pub flags: u8,
}

impl Packet {
    pub fn ip_len(&self) -> u64 {
        let l4 = if self.prot == 6 { 20 } else { 8 };
        let ip = if self.src.is_ipv4() { 20 } else { 40 };
        (ip + l4 + self.payload) as u64
    }

    pub fn frame(&self) -> Frame {
        let data = if self.prot == 6 {
            tcp_frame(self.src, self.dst, self.flags, self.payload)
        } else {
            udp_frame(self.src, self.dst, &vec![0u8; self.payload])
        };
        Frame {
            at_ms: self.at_ms,
            data,
        }
    }
}

pub fn sa(s: &str) -> SocketAddr {
    s.parse().expect("literal socket address")
}

/// A TCP connection: handshake, a request, `chunks` response segments, FIN.
pub fn tcp_session(
    out: &mut Vec<Packet>,
    t: i64,
    client: &str,
    server: &str,
    request: usize,
    chunks: usize,
) {
    let (c, s) = (sa(client), sa(server));
    let mut p = |dt: i64, from_client: bool, payload: usize, flags: u8| {
        let (src, dst) = if from_client { (c, s) } else { (s, c) };
        out.push(Packet {
            at_ms: t + dt,
            src,
            dst,
            prot: 6,
            payload,
            flags,
        });
    };
    p(0, true, 0, SYN);
    p(10, false, 0, SYN | ACK);
    p(20, true, 0, ACK);
    p(30, true, request, PSH | ACK);
    for i in 0..chunks {
        p(100 + 50 * i as i64, false, 1_000, PSH | ACK);
    }
    let end = 100 + 50 * chunks as i64;
    p(end, true, 0, ACK);
    p(end + 10, false, 0, FIN | ACK);
    p(end + 20, true, 0, FIN | ACK);
    p(end + 30, false, 0, ACK);
}

/// Datagrams with their arrival time (ms).
pub type Captured = Arc<Mutex<Vec<(i64, Vec<u8>)>>>;

/// Forwards every datagram from softflowd to the daemon, keeping a copy.
pub struct Relay {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    seen: Captured,
    thread: Option<JoinHandle<()>>,
}

impl Relay {
    pub fn start(to: SocketAddr) -> Relay {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind relay");
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        let addr = sock.local_addr().expect("relay address");
        let stop = Arc::new(AtomicBool::new(false));
        let seen: Captured = Arc::new(Mutex::new(Vec::new()));
        let (s, v) = (stop.clone(), seen.clone());
        let thread = std::thread::spawn(move || {
            let mut buf = vec![0u8; 65_535];
            while !s.load(Ordering::Relaxed) {
                if let Ok((n, _)) = sock.recv_from(&mut buf) {
                    sock.send_to(&buf[..n], to).expect("forward");
                    v.lock().expect("lock").push((now_ms(), buf[..n].to_vec()));
                }
            }
        });
        Relay {
            addr,
            stop,
            seen,
            thread: Some(thread),
        }
    }

    pub fn finish(mut self) -> Vec<(i64, Vec<u8>)> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().expect("relay thread");
        }
        let seen = self.seen.lock().expect("lock");
        seen.clone()
    }
}

pub const CAPTURE: &str = "t.pcap";

pub fn softflowd_available() -> bool {
    Command::new("softflowd").arg("-h").output().is_ok()
}

/// Have softflowd read the capture in `dir` and export its flows to `to` as
/// NetFlow `version`. softflowd truncates long path arguments: it runs in
/// the temp dir with short relative names.
pub fn export_capture(dir: &Path, to: &str, version: &str, extra: &[&str]) {
    let status = Command::new("softflowd")
        .current_dir(dir)
        .args(["-d", "-r", CAPTURE, "-p", "sf.pid", "-c", "sf.ctl"])
        .args(["-n", to, "-v", version])
        .args(extra)
        .output()
        .expect("run softflowd");
    assert!(
        status.status.success(),
        "softflowd: {}",
        String::from_utf8_lossy(&status.stderr)
    );
}

/// The relay forwards from 127.0.0.1, so that is the exporter both see.
pub fn relay_addr_for_capture() -> SocketAddr {
    sa("127.0.0.1:9995")
}

/// Matches without their number, emission time, run, and rec_ids (and the
/// match_id made of them): records may
/// arrive in another order than the relay saw them (the relay forwards each
/// datagram before it stores it), so arrival counters can differ.
pub fn normalised(ms: impl Iterator<Item = Value>) -> Vec<String> {
    let mut v: Vec<String> = ms
        .map(|mut m| {
            if let Some(o) = m.as_object_mut() {
                o.remove("match");
                o.remove("emitted");
                // Both derive from rec_ids or the run: not comparable here.
                o.remove("match_id");
                o.remove("run");
            }
            if let Some(rs) = m["records"].as_array_mut() {
                for r in rs {
                    if let Some(o) = r.as_object_mut() {
                        o.remove("rec_id");
                    }
                }
            }
            m.to_string()
        })
        .collect();
    v.sort();
    v
}
