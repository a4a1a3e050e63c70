//! UDP listening sockets for the collector.
//!
//! The first socket of an address is bound *without* SO_REUSEADDR or
//! SO_REUSEPORT, so the bind fails with "address in use" whenever any other
//! socket — a second flowy, another collector — already holds the address.
//! Only once that exclusive bind has succeeded is SO_REUSEPORT switched on
//! (Linux accepts it on a bound socket and makes it the head of a reuseport
//! group), and the daemon's further sockets join that group. A later
//! process that binds without SO_REUSEPORT therefore fails, and a second
//! flowy always does (its own first bind is exclusive). What remains
//! possible is a *foreign* program of the same user that sets SO_REUSEPORT
//! itself after flowy started; with `sockets = 1` flowy never sets
//! SO_REUSEPORT, so not even that can share the address.
//!
//! SO_RCVBUF is read back after it is set: the kernel silently caps it at
//! `net.core.rmem_max`, and an operator who sized `collector.recv_buffer`
//! for a burst must learn that the burst will be dropped anyway.

use std::net::SocketAddr;

use socket2::{Domain, Protocol, SockRef, Socket, Type};

/// How much more than the size set Linux reports for SO_RCVBUF: it doubles
/// the value to leave room for its own bookkeeping (socket(7)).
const REPORTED_FACTOR: usize = if cfg!(target_os = "linux") { 2 } else { 1 };

/// Where Linux keeps the cap on SO_RCVBUF.
const RMEM_MAX: &str = "/proc/sys/net/core/rmem_max";

/// A receive buffer size asked for and the one the kernel granted, as
/// `getsockopt(SO_RCVBUF)` reports it (on Linux twice the usable size).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecvBuffer {
    pub asked: usize,
    pub granted: usize,
}

impl RecvBuffer {
    /// What the kernel reports when it grants `asked` in full.
    pub fn expected(&self) -> usize {
        self.asked.saturating_mul(REPORTED_FACTOR)
    }

    /// True when the kernel gave less than asked (capped by rmem_max).
    pub fn clamped(&self) -> bool {
        self.asked > 0 && self.granted < self.expected()
    }
}

/// The receive buffer size the kernel reports for `sock` (getsockopt).
pub fn recv_buffer_size(sock: &tokio::net::UdpSocket) -> std::io::Result<usize> {
    SockRef::from(sock).recv_buffer_size()
}

/// Bind `sockets` UDP sockets to `addr` (see the module comment for how
/// they share it), SO_RCVBUF = `recv_buffer`, non-blocking, as tokio
/// sockets. Logs one WARN for the address when the kernel capped the
/// receive buffer. Must be called inside a tokio runtime.
pub fn bind_udp(
    addr: SocketAddr,
    sockets: usize,
    recv_buffer: usize,
) -> std::io::Result<Vec<tokio::net::UdpSocket>> {
    let count = sockets.max(1);
    let first = new_socket(addr, recv_buffer)?;
    first.bind(&addr.into())?;
    // With port 0 every further socket must join the port the first one got.
    let bound = first.local_addr()?.as_socket().unwrap_or(addr);
    let mut raw = Vec::with_capacity(count);
    if count > 1 {
        set_reuse_port(&first)?;
    }
    raw.push(first);
    for _ in 1..count {
        let s = new_socket(bound, recv_buffer)?;
        set_reuse_port(&s)?;
        s.bind(&bound.into())?;
        raw.push(s);
    }
    warn_if_clamped(bound, &raw, recv_buffer);
    raw.into_iter()
        .map(|s| tokio::net::UdpSocket::from_std(s.into()))
        .collect()
}

fn new_socket(addr: SocketAddr, recv_buffer: usize) -> std::io::Result<Socket> {
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if recv_buffer > 0 {
        // The kernel may clamp the size (net.core.rmem_max); that is not fatal.
        if let Err(e) = s.set_recv_buffer_size(recv_buffer) {
            tracing::warn!(%addr, error = %e, "cannot set SO_RCVBUF");
        }
    }
    s.set_nonblocking(true)?;
    Ok(s)
}

/// The sockets of one address all asked for the same size under the same
/// limit, so one WARN per address says it all.
fn warn_if_clamped(addr: SocketAddr, sockets: &[Socket], recv_buffer: usize) {
    let granted = sockets
        .iter()
        .filter_map(|s| s.recv_buffer_size().ok())
        .min();
    let Some(granted) = granted else { return };
    let rb = RecvBuffer {
        asked: recv_buffer,
        granted,
    };
    if !rb.clamped() {
        return;
    }
    let limit = std::fs::read_to_string(RMEM_MAX)
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "?".to_string());
    tracing::warn!(
        socket = %format_args!("udp://{addr}"),
        "receive buffer capped by the kernel: collector.recv_buffer asked {} bytes, \
         granted {} (net.core.rmem_max = {limit}; SO_RCVBUF reads back {}); bursts beyond it are dropped. \
         Fix: `sysctl -w net.core.rmem_max={}` or lower collector.recv_buffer",
        rb.asked,
        rb.granted / REPORTED_FACTOR,
        rb.granted,
        rb.asked,
    );
}

#[cfg(all(unix, not(any(target_os = "solaris", target_os = "illumos"))))]
fn set_reuse_port(s: &Socket) -> std::io::Result<()> {
    s.set_reuse_port(true)
}

/// Without SO_REUSEPORT a second socket on the same address cannot bind:
/// the bind error says so.
#[cfg(not(all(unix, not(any(target_os = "solaris", target_os = "illumos")))))]
fn set_reuse_port(_: &Socket) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    }

    #[test]
    fn a_held_address_is_refused_whatever_the_socket_count() {
        rt().block_on(async {
            for (first, second) in [(1, 1), (1, 3), (3, 1), (3, 3)] {
                let held = bind_udp("127.0.0.1:0".parse().expect("lit"), first, 0).expect("bind");
                let addr = held[0].local_addr().expect("addr");
                assert_eq!(held.len(), first);
                let err = bind_udp(addr, second, 0).expect_err("address is held");
                assert_eq!(
                    err.kind(),
                    std::io::ErrorKind::AddrInUse,
                    "{first}/{second}"
                );
            }
        });
    }

    /// Log lines written by `tracing` while `f` runs.
    #[cfg(target_os = "linux")]
    fn logged<T>(f: impl FnOnce() -> T) -> (T, String) {
        #[derive(Clone, Default)]
        struct Capture(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl std::io::Write for Capture {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().expect("log lock").extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let cap = Capture::default();
        let w = cap.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || w.clone())
            .finish();
        let out = tracing::subscriber::with_default(subscriber, f);
        let text = String::from_utf8_lossy(&cap.0.lock().expect("log lock")).into_owned();
        (out, text)
    }

    #[cfg(target_os = "linux")]
    fn rmem_max() -> usize {
        std::fs::read_to_string(RMEM_MAX)
            .expect("rmem_max")
            .trim()
            .parse()
            .expect("rmem_max is a number")
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_buffer_beyond_rmem_max_is_capped_and_warned_once_per_address() {
        let max = rmem_max();
        let asked = max + (1 << 20);
        let ((addr, granted), log) = logged(|| {
            rt().block_on(async {
                let socks = bind_udp("127.0.0.1:0".parse().expect("lit"), 2, asked).expect("bind");
                let granted: Vec<usize> = socks
                    .iter()
                    .map(|s| recv_buffer_size(s).expect("SO_RCVBUF"))
                    .collect();
                (socks[0].local_addr().expect("addr"), granted)
            })
        });
        assert_eq!(granted, vec![2 * max, 2 * max]);
        let warns: Vec<&str> = log.lines().filter(|l| l.contains("WARN")).collect();
        assert_eq!(warns.len(), 1, "{log}");
        let w = warns[0];
        for part in [
            format!("socket=udp://{addr}"),
            format!("asked {asked} bytes"),
            format!("granted {max} "),
            format!("net.core.rmem_max = {max}"),
            format!("reads back {}", 2 * max),
            format!("sysctl -w net.core.rmem_max={asked}"),
            "lower collector.recv_buffer".to_string(),
        ] {
            assert!(w.contains(&part), "{part:?} not in {w}");
        }
        assert!(RecvBuffer {
            asked,
            granted: granted[0]
        }
        .clamped());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_buffer_within_rmem_max_is_granted_in_full_without_a_warning() {
        let asked = (rmem_max() / 2).min(256 << 10);
        let (granted, log) = logged(|| {
            rt().block_on(async {
                let socks = bind_udp("127.0.0.1:0".parse().expect("lit"), 1, asked).expect("bind");
                recv_buffer_size(&socks[0]).expect("SO_RCVBUF")
            })
        });
        assert_eq!(granted, 2 * asked);
        assert!(!RecvBuffer { asked, granted }.clamped());
        assert!(!log.contains("WARN"), "{log}");
    }

    #[test]
    fn a_plain_socket_cannot_join_a_group() {
        rt().block_on(async {
            let held = bind_udp("127.0.0.1:0".parse().expect("lit"), 2, 0).expect("bind");
            let addr = held[0].local_addr().expect("addr");
            assert!(std::net::UdpSocket::bind(addr).is_err());
        });
    }
}
