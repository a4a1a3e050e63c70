//! `flowy serve` as a child process on ephemeral 127.0.0.1 ports, with its
//! Prometheus metrics scraped over plain HTTP/1.0.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};

/// The binary under test: `FLOWY_BIN`, else the one cargo built for this bench.
pub fn binary() -> PathBuf {
    std::env::var_os("FLOWY_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_flowy")))
}

pub struct Flowy {
    child: Child,
    pub udp: SocketAddr,
    pub metrics: SocketAddr,
}

/// The match output file, in the run's directory.
pub const OUTPUT: &str = "matches.jsonl";

/// The config: everything default except addresses, buffer, queries, output.
fn config(dir: &Path, queries: &str, recv_buffer: u64, records: bool) -> String {
    format!(
        r#"[collector]
listen = ["127.0.0.1:0"]
recv_buffer = {recv_buffer}
[queries]
paths = ["{queries}"]
[output]
path = "{out}"
records = {records}
[metrics]
listen = "127.0.0.1:0"
[log]
level = "info"
"#,
        out = dir.join(OUTPUT).display(),
    )
}

fn address_after(line: &str, marker: &str) -> Option<SocketAddr> {
    let rest = &line[line.find(marker)? + marker.len()..];
    let end = rest
        .find(|c: char| c == '/' || c.is_whitespace())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

impl Flowy {
    /// Start the daemon running the query files matching `queries` (a glob)
    /// and wait until it reports ready.
    /// `records`: whether match lines carry their flow records.
    pub fn start(
        dir: &Path,
        queries: &str,
        recv_buffer: u64,
        records: bool,
    ) -> anyhow::Result<Flowy> {
        let cfg = dir.join("flowy.toml");
        std::fs::write(&cfg, config(dir, queries, recv_buffer, records))?;
        let mut child = Command::new(binary())
            .current_dir(dir)
            .arg("serve")
            .arg("--config")
            .arg(&cfg)
            .env_remove("RUST_LOG")
            .env_remove("NOTIFY_SOCKET")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("spawn {}", binary().display()))?;
        let stderr = child.stderr.take().ok_or_else(|| anyhow!("no stderr"))?;
        let (tx, rx) = mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("WARN") || line.contains("ERROR") {
                    eprintln!("  flowy: {line}");
                }
                if tx.send(line).is_err() {
                    // Nobody listens after start-up: keep draining the pipe.
                }
            }
        });
        let (mut udp, mut metrics) = (None, None);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx
                .recv_timeout(left)
                .map_err(|_| anyhow!("flowy serve did not become ready within 20 s"))?;
            udp = udp.or_else(|| address_after(&line, "udp://"));
            metrics = metrics.or_else(|| address_after(&line, "http://"));
            if line.contains("flowy ready") {
                break;
            }
        }
        let (Some(udp), Some(metrics)) = (udp, metrics) else {
            bail!("flowy serve did not log its addresses");
        };
        Ok(Flowy {
            child,
            udp,
            metrics,
        })
    }

    /// Scrape /metrics: every series with its value.
    pub fn scrape(&self) -> anyhow::Result<Vec<(String, f64)>> {
        let mut s = TcpStream::connect(self.metrics)?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n")?;
        let mut body = String::new();
        s.read_to_string(&mut body)?;
        let (_, text) = body
            .split_once("\r\n\r\n")
            .ok_or_else(|| anyhow!("not an HTTP response"))?;
        Ok(flowy::daemon::metrics::parse_text(text))
    }

    /// CPU time the daemon has used so far.
    pub fn cpu(&self) -> Option<Duration> {
        super::kernel::process_cpu(self.child.id())
    }

    /// CPU time of its decode thread so far: one thread decodes every
    /// datagram, so its time per record bounds the ingest rate.
    pub fn decode_cpu(&self) -> Option<Duration> {
        super::kernel::thread_cpu(self.child.id(), "flowy-decode")
    }

    /// SIGTERM, then wait for the orderly shutdown (bounded).
    pub fn stop(mut self) -> anyhow::Result<()> {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.child.kill()?;
        bail!("flowy did not exit within 60 s of SIGTERM")
    }
}

/// Sum of the series named `name` (any labels).
pub fn total(samples: &[(String, f64)], name: &str) -> u64 {
    samples
        .iter()
        .filter(|(s, _)| s == name || s.strip_prefix(name).is_some_and(|r| r.starts_with('{')))
        .map(|(_, v)| *v as u64)
        .sum()
}

/// Smallest value over the series named `name` (`None` when there is none).
pub fn min(samples: &[(String, f64)], name: &str) -> Option<u64> {
    samples
        .iter()
        .filter(|(s, _)| s.strip_prefix(name).is_some_and(|r| r.starts_with('{')))
        .map(|(_, v)| *v as u64)
        .min()
}
