//! Kernel view of a UDP socket (/proc/net/udp): bytes waiting in its
//! receive queue and datagrams the kernel dropped because it was full.

use std::net::UdpSocket;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SocketStats {
    pub rx_queue: u64,
    pub drops: u64,
}

/// Stats of every socket bound to 127.0.0.1:`port`, summed (SO_REUSEPORT
/// groups have several); `None` when none is bound.
pub fn udp_socket(port: u16) -> Option<SocketStats> {
    let text = std::fs::read_to_string("/proc/net/udp").ok()?;
    let local = format!("0100007F:{port:04X}");
    let mut found = None::<SocketStats>;
    for line in text.lines().skip(1) {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.get(1) != Some(&local.as_str()) {
            continue;
        }
        let rx = cols
            .get(4)
            .and_then(|q| q.split_once(':'))
            .and_then(|(_, rx)| u64::from_str_radix(rx, 16).ok())
            .unwrap_or(0);
        let drops = cols.last().and_then(|d| d.parse().ok()).unwrap_or(0);
        let s = found.get_or_insert_with(SocketStats::default);
        s.rx_queue += rx;
        s.drops += drops;
    }
    found
}

/// A UDP port on 127.0.0.1 that was free a moment ago.
pub fn free_udp_port() -> std::io::Result<u16> {
    Ok(UdpSocket::bind("127.0.0.1:0")?.local_addr()?.port())
}

pub fn rmem_max() -> Option<u64> {
    std::fs::read_to_string("/proc/sys/net/core/rmem_max")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// CPU time (user + system) process `pid` has used so far, all threads,
/// from /proc/PID/stat; `None` once it is gone.
pub fn process_cpu(pid: u32) -> Option<std::time::Duration> {
    stat_cpu(&format!("/proc/{pid}/stat"))
}

/// CPU time of the threads of `pid` named `comm` (e.g. `flowy-decode`).
pub fn thread_cpu(pid: u32, comm: &str) -> Option<std::time::Duration> {
    let mut sum = None;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
    {
        let named =
            std::fs::read_to_string(task.path().join("comm")).is_ok_and(|c| c.trim_end() == comm);
        if named {
            let t = stat_cpu(&task.path().join("stat").to_string_lossy())?;
            sum = Some(sum.unwrap_or_default() + t);
        }
    }
    sum
}

fn stat_cpu(path: &str) -> Option<std::time::Duration> {
    let stat = std::fs::read_to_string(path).ok()?;
    // Fields after the command name (which may hold spaces) close with ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let cols: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 here.
    let ticks: u64 = cols.get(11)?.parse::<u64>().ok()? + cols.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = u64::try_from(hz).ok().filter(|h| *h > 0)?;
    Some(std::time::Duration::from_millis(ticks * 1000 / hz))
}
