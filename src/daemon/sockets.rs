//! The kernel's side of the collector sockets as metrics: the receive
//! buffer it granted and the datagrams it dropped because flowy did not read
//! them in time. Drops are read from `/proc` by a task of their own, so the
//! receive path gains no system call.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::sync::watch;

use crate::collect::{recv_buffer_size, udp_drops};

use super::metrics::{set, Metrics, SocketMetrics};

/// How often the drop counters are read: often enough that a scrape after a
/// burst sees it, rarely enough that a host with many UDP sockets does not
/// notice the table reads.
const DROPS_EVERY: Duration = Duration::from_secs(1);

/// The sockets of one collector address and the metrics they feed.
struct Watched {
    inodes: Vec<u64>,
    metrics: Arc<SocketMetrics>,
}

#[derive(Default)]
pub struct SocketWatch {
    watched: Vec<Watched>,
}

impl SocketWatch {
    /// Register the sockets bound for one address, labelled `udp://ADDR`:
    /// sets the receive buffer gauge and remembers the sockets' inodes.
    pub fn add(&mut self, metrics: &Metrics, label: &str, socks: &[UdpSocket]) {
        let m = metrics.register_socket(label);
        if let Some(granted) = socks.iter().filter_map(|s| recv_buffer_size(s).ok()).min() {
            set(&m.receive_buffer, granted as u64);
        }
        match socks
            .iter()
            .map(udp_drops::socket_inode)
            .collect::<std::io::Result<Vec<u64>>>()
        {
            Ok(inodes) => self.watched.push(Watched { inodes, metrics: m }),
            Err(e) => tracing::warn!(socket = label, error = %e, "kernel drops not measurable"),
        }
    }

    /// Copy the kernel's drop counters into the metrics.
    pub fn refresh(&self) -> std::io::Result<()> {
        let drops = udp_drops::read_drops()?;
        for w in &self.watched {
            // A socket missing from the table keeps its last count.
            let counts: Option<Vec<u64>> = w.inodes.iter().map(|i| drops.get(i).copied()).collect();
            if let Some(counts) = counts {
                set(&w.metrics.drops, counts.iter().sum());
                w.metrics.drops_known.store(true, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    /// Read the counters now (so the first scrape has them), then once a
    /// [`DROPS_EVERY`] until `stop` flips. Gives up with one WARN when the
    /// tables cannot be read.
    pub fn start(self, mut stop: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
        let watch = Arc::new(self);
        let first = if watch.watched.is_empty() {
            Ok(())
        } else {
            watch.refresh()
        };
        tokio::spawn(async move {
            if let Err(e) = first {
                tracing::warn!(error = %e, "cannot read the kernel's UDP drop counters");
                return;
            }
            if watch.watched.is_empty() {
                return;
            }
            loop {
                tokio::select! {
                    biased;
                    _ = stop.changed() => break,
                    _ = tokio::time::sleep(DROPS_EVERY) => {}
                }
                let w = watch.clone();
                let read = tokio::task::spawn_blocking(move || w.refresh()).await;
                if let Ok(Err(e)) = read {
                    tracing::warn!(error = %e, "cannot read the kernel's UDP drop counters");
                    break;
                }
            }
        })
    }
}
