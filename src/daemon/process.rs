//! The standard process metrics (Prometheus' `process_*` family, read from
//! `/proc/self` on Linux) and `flowy_build_info`. Read at scrape time: a
//! scrape costs a few small file reads.

use super::metrics::Sample;

fn gauge(name: &'static str, help: &'static str, value: u64) -> Sample {
    Sample::gauge(name, help, Vec::new(), value)
}

pub fn samples() -> Vec<Sample> {
    let mut out = vec![Sample::gauge(
        "flowy_build_info",
        "always 1; the labels say which build runs",
        vec![("version", env!("CARGO_PKG_VERSION").to_string())],
        1,
    )];
    // SAFETY: sysconf has no preconditions.
    let page = u64::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
    if let Some((virt, rss)) = statm() {
        out.push(gauge(
            "process_virtual_memory_bytes",
            "virtual memory size in bytes",
            virt * page,
        ));
        out.push(gauge(
            "process_resident_memory_bytes",
            "resident memory size in bytes",
            rss * page,
        ));
    }
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        out.push(gauge(
            "process_open_fds",
            "number of open file descriptors",
            dir.count() as u64,
        ));
    }
    if let Some(max) = max_fds() {
        out.push(gauge(
            "process_max_fds",
            "maximum number of open file descriptors",
            max,
        ));
    }
    if let Some(start) = start_time() {
        out.push(gauge(
            "process_start_time_seconds",
            "start time of the process since the epoch, in seconds",
            start,
        ));
    }
    out
}

/// (size, resident) in pages.
fn statm() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/self/statm").ok()?;
    let mut f = text.split_whitespace().map(|v| v.parse::<u64>().ok());
    Some((f.next()??, f.next()??))
}

fn max_fds() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct we own.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    (rc == 0).then_some(lim.rlim_cur)
}

/// Boot time plus the process's start in clock ticks after boot.
fn start_time() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) in parentheses;
    // starttime is field 22 of the whole line, the 20th after ')'.
    let after = stat.rsplit_once(')')?.1;
    let ticks: u64 = after.split_whitespace().nth(19)?.parse().ok()?;
    let boot: u64 = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).ok()?;
    Some(boot + ticks / hz.max(1))
}

#[cfg(test)]
mod tests {
    use super::samples;

    #[test]
    fn the_process_reports_itself() {
        let s = samples();
        let get = |n: &str| {
            s.iter()
                .find(|x| x.name == n)
                .map(|x| x.value.as_f64() as u64)
        };
        assert_eq!(get("flowy_build_info"), Some(1));
        assert!(get("process_resident_memory_bytes").is_some_and(|v| v > 1 << 20));
        assert!(get("process_open_fds").is_some_and(|v| v >= 3));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        // Started within the last hour (this test binary) and not in the future.
        assert!(get("process_start_time_seconds").is_some_and(|t| t <= now + 1 && t + 3600 > now));
    }
}
