//! `flowy replay`: send the export datagrams of a capture to a collector.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use anyhow::Context;

use crate::input::pcap::datagrams;

/// Send every UDP payload of `pcap` to `to`. With `speed`, gaps between
/// capture timestamps are divided by it (2.0 = twice as fast); without, as
/// fast as possible. Returns the number of datagrams sent.
pub async fn replay(pcap: &Path, to: SocketAddr, speed: Option<f64>) -> anyhow::Result<u64> {
    let speed = match speed {
        Some(s) if !(s.is_finite() && s > 0.0) => {
            anyhow::bail!("--speed must be a positive number, not {s}")
        }
        other => other,
    };
    let grams = datagrams(pcap)?;
    let local: SocketAddr = match to {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let sock = tokio::net::UdpSocket::bind(local)
        .await
        .with_context(|| format!("cannot bind a UDP socket to send to {to}"))?;
    let start = tokio::time::Instant::now();
    let first_ts = grams.first().map(|d| d.ts).unwrap_or_default();
    let mut sent = 0u64;
    for d in &grams {
        if let Some(speed) = speed {
            let offset = d.ts.saturating_sub(first_ts).as_secs_f64() / speed;
            if let Ok(wait) = Duration::try_from_secs_f64(offset) {
                tokio::time::sleep_until(start + wait).await;
            }
        }
        sock.send_to(&d.payload, to)
            .await
            .with_context(|| format!("sending datagram {sent} of {} to {to}", pcap.display()))?;
        sent += 1;
    }
    Ok(sent)
}
