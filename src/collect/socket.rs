//! UDP listening sockets for the collector.

use std::net::SocketAddr;

use socket2::{Domain, Protocol, Socket, Type};

/// Bind `sockets` UDP sockets to `addr` with SO_REUSEADDR and SO_REUSEPORT
/// (so the kernel spreads exporters over them), SO_RCVBUF = `recv_buffer`,
/// non-blocking, as tokio sockets. Must be called inside a tokio runtime.
pub fn bind_udp(
    addr: SocketAddr,
    sockets: usize,
    recv_buffer: usize,
) -> std::io::Result<Vec<tokio::net::UdpSocket>> {
    let mut out = Vec::with_capacity(sockets.max(1));
    let mut bound = addr;
    for _ in 0..sockets.max(1) {
        let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        s.set_reuse_address(true)?;
        #[cfg(all(unix, not(any(target_os = "solaris", target_os = "illumos"))))]
        s.set_reuse_port(true)?;
        if recv_buffer > 0 {
            // The kernel may clamp the size (net.core.rmem_max); that is not fatal.
            if let Err(e) = s.set_recv_buffer_size(recv_buffer) {
                tracing::warn!(%addr, error = %e, "cannot set SO_RCVBUF");
            }
        }
        s.set_nonblocking(true)?;
        s.bind(&bound.into())?;
        // With port 0 every further socket must join the port the first one got.
        if let Some(local) = s.local_addr()?.as_socket() {
            bound = local;
        }
        let std_sock: std::net::UdpSocket = s.into();
        out.push(tokio::net::UdpSocket::from_std(std_sock)?);
    }
    Ok(out)
}
