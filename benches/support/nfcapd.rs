//! Debian's `nfcapd` (package nfdump) as the reference collector: started on
//! a loopback port, stopped with SIGTERM, its intake read from the stat line
//! it logs when it closes a file (`Ident: 'none' Flows: N, Packets: …`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};

use super::kernel;

pub struct Nfcapd {
    child: Child,
    pub port: u16,
    log: PathBuf,
}

/// What nfcapd stored, summed over the files it closed.
#[derive(Debug, Default)]
pub struct Intake {
    pub flows: u64,
    pub packets: u64,
    pub sequence_errors: u64,
}

pub fn available() -> bool {
    Command::new("nfcapd")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl Nfcapd {
    pub fn start(dir: &Path, recv_buffer: u64) -> anyhow::Result<Nfcapd> {
        Nfcapd::start_with(dir, &dir.join("nfcapd.log"), recv_buffer, &["-t", "3600"])
    }

    /// Store into `dir`, log to `log` (outside `dir` when `dir` is to be
    /// read back as an archive: `nfcapd.log` looks like a flow file), with
    /// `extra` options such as the rotation (`-t`) and compression (`-y`).
    pub fn start_with(
        dir: &Path,
        log: &Path,
        recv_buffer: u64,
        extra: &[&str],
    ) -> anyhow::Result<Nfcapd> {
        let port = kernel::free_udp_port()?;
        let log = log.to_path_buf();
        let out = std::fs::File::create(&log)?;
        let child = Command::new("nfcapd")
            .arg("-w")
            .arg(dir)
            .args(["-b", "127.0.0.1", "-p", &port.to_string()])
            .args(["-B", &recv_buffer.to_string()])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .context("spawn nfcapd")?;
        let n = Nfcapd { child, port, log };
        let deadline = Instant::now() + Duration::from_secs(10);
        while kernel::udp_socket(port).is_none() {
            if Instant::now() > deadline {
                bail!("nfcapd did not bind 127.0.0.1:{port}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(n)
    }

    /// CPU time nfcapd has used so far.
    pub fn cpu(&self) -> Option<Duration> {
        kernel::process_cpu(self.child.id())
    }

    /// SIGTERM (nfcapd closes and flushes its file), wait, read the stats.
    pub fn stop(mut self) -> anyhow::Result<Intake> {
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                self.child.kill()?;
                bail!("nfcapd did not exit within 30 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let text = std::fs::read_to_string(&self.log)?;
        parse_stats(&text).ok_or_else(|| anyhow!("no stat line in nfcapd's log:\n{text}"))
    }
}

fn number_after(line: &str, key: &str) -> Option<u64> {
    let rest = &line[line.find(key)? + key.len()..];
    let digits: String = rest
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// Sum of every `Ident: … Flows: N, Packets: N, … Sequence Errors: N` line.
fn parse_stats(log: &str) -> Option<Intake> {
    let mut found = None::<Intake>;
    for line in log
        .lines()
        .filter(|l| l.contains("Ident:") && l.contains("Flows:"))
    {
        let i = found.get_or_insert_with(Intake::default);
        i.flows += number_after(line, "Flows:")?;
        i.packets += number_after(line, "Packets:").unwrap_or(0);
        i.sequence_errors += number_after(line, "Sequence Errors:").unwrap_or(0);
    }
    found
}
