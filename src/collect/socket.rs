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

use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

/// Bind `sockets` UDP sockets to `addr` (see the module comment for how
/// they share it), SO_RCVBUF = `recv_buffer`, non-blocking, as tokio
/// sockets. Must be called inside a tokio runtime.
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

    #[test]
    fn a_plain_socket_cannot_join_a_group() {
        rt().block_on(async {
            let held = bind_udp("127.0.0.1:0".parse().expect("lit"), 2, 0).expect("bind");
            let addr = held[0].local_addr().expect("addr");
            assert!(std::net::UdpSocket::bind(addr).is_err());
        });
    }
}
