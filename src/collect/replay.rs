//! `flowy replay` (being written)
use std::net::SocketAddr;
use std::path::Path;

pub async fn replay(pcap: &Path, to: SocketAddr, speed: Option<f64>) -> anyhow::Result<u64> {
    let _ = (pcap, to, speed);
    Ok(0)
}
