//! A `flowy serve` child process: started on ephemeral 127.0.0.1 ports
//! (read back from its log), scraped, signalled and reaped.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_flowy");

/// The repository's example query directory.
pub fn example_query(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("config/queries")
        .join(format!("{name}.flowy"))
}

type Log = Arc<(Mutex<Vec<String>>, Condvar)>;

/// What the test does with the daemon's standard output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stdout {
    /// Read it into the log, line by line.
    Read,
    /// Keep the pipe open and never read it (a stalled consumer), until
    /// [`Daemon::close_stdout`].
    Hold,
}

pub struct Daemon {
    child: Child,
    log: Log,
    held_stdout: Option<ChildStdout>,
    pub udp: SocketAddr,
    pub metrics: SocketAddr,
}

fn collect_lines(stream: impl Read + Send + 'static, log: Log) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { break };
            let (lines, cv) = &*log;
            lines.lock().expect("log lock").push(line);
            cv.notify_all();
        }
    });
}

/// The address a log line announces after `marker`, e.g. `udp://`.
fn address_after(line: &str, marker: &str) -> Option<SocketAddr> {
    let rest = &line[line.find(marker)? + marker.len()..];
    let end = rest
        .find(|c: char| c == '/' || c.is_whitespace())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

impl Daemon {
    /// Start `flowy serve` with `args` (plus ephemeral listen and metrics
    /// addresses) in `cwd`, and wait until it is ready.
    pub fn start(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Daemon {
        Daemon::start_with(cwd, args, env, Stdout::Read)
    }

    /// [`Daemon::start`] with a choice of what happens to standard output.
    pub fn start_with(cwd: &Path, args: &[&str], env: &[(&str, &str)], out: Stdout) -> Daemon {
        let mut cmd = Command::new(BIN);
        cmd.current_dir(cwd)
            .arg("serve")
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .env_remove("RUST_LOG")
            .env_remove("NOTIFY_SOCKET") // tests that want it pass it in `env`
            .env("FLOWY__METRICS__LISTEN", "127.0.0.1:0");
        for (k, v) in env {
            cmd.env(k, v);
        }
        Daemon::spawn_with(cmd, out)
    }

    /// Start `flowy serve` as a cluster worker (no UDP socket): `env` must
    /// set the role and the NATS server.
    pub fn start_worker(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Daemon {
        let mut cmd = Command::new(BIN);
        cmd.current_dir(cwd)
            .arg("serve")
            .args(args)
            .env_remove("RUST_LOG")
            .env_remove("NOTIFY_SOCKET")
            .env("FLOWY__METRICS__LISTEN", "127.0.0.1:0");
        for (k, v) in env {
            cmd.env(k, v);
        }
        Daemon::spawn_as(cmd, Stdout::Read, false)
    }

    /// Start `flowy serve` exactly as an operator first does: no arguments,
    /// no configuration file, no `FLOWY__` variables (embedded defaults:
    /// UDP 2055, metrics on 127.0.0.1:9555, the example queries, stdout).
    pub fn start_default(cwd: &Path) -> Daemon {
        let mut cmd = Command::new(BIN);
        cmd.current_dir(cwd).arg("serve").env_clear();
        Daemon::spawn(cmd)
    }

    fn spawn(cmd: Command) -> Daemon {
        Daemon::spawn_with(cmd, Stdout::Read)
    }

    fn spawn_with(cmd: Command, out: Stdout) -> Daemon {
        Daemon::spawn_as(cmd, out, true)
    }

    fn spawn_as(mut cmd: Command, out: Stdout, listens: bool) -> Daemon {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn flowy serve");
        let log: Log = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        collect_lines(child.stderr.take().expect("stderr piped"), log.clone());
        let stdout = child.stdout.take().expect("stdout piped");
        let held_stdout = match out {
            Stdout::Read => {
                collect_lines(stdout, log.clone());
                None
            }
            Stdout::Hold => Some(stdout),
        };
        let mut d = Daemon {
            child,
            log,
            held_stdout,
            udp: "0.0.0.0:0".parse().expect("literal"),
            metrics: "0.0.0.0:0".parse().expect("literal"),
        };
        if listens {
            let udp = d.wait_log("collector listening on udp://", Duration::from_secs(30));
            d.udp = address_after(&udp, "udp://").expect("udp address in log");
        }
        let m = d.wait_log("metrics on http://", Duration::from_secs(10));
        d.metrics = address_after(&m, "http://").expect("metrics address in log");
        d.wait_log("flowy ready", Duration::from_secs(10));
        d
    }

    /// Close the read end of a held standard output (the consumer died).
    pub fn close_stdout(&mut self) {
        self.held_stdout = None;
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn log_lines(&self) -> Vec<String> {
        self.log.0.lock().expect("log lock").clone()
    }

    /// Wait for a log line containing `needle` (panics with the log on timeout).
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> String {
        self.wait_log_count(needle, 1, timeout)
    }

    /// Wait until `n` log lines contain `needle`; returns the n-th.
    pub fn wait_log_count(&self, needle: &str, n: usize, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        let (lines, cv) = &*self.log;
        let mut guard = lines.lock().expect("log lock");
        loop {
            let hits: Vec<&String> = guard.iter().filter(|l| l.contains(needle)).collect();
            if hits.len() >= n {
                return hits[n - 1].clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                panic!(
                    "no log line with {needle:?} (x{n}) within {timeout:?}; log:\n{}",
                    guard.join("\n")
                );
            }
            guard = cv.wait_timeout(guard, left).expect("log lock").0;
        }
    }

    pub fn send(&self, datagram: &[u8]) {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind sender");
        sock.send_to(datagram, self.udp).expect("send datagram");
    }

    /// Scrape /metrics: series (name + labels) → value.
    pub fn scrape(&self) -> BTreeMap<String, f64> {
        let mut s = TcpStream::connect(self.metrics).expect("connect metrics");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n")
            .expect("request");
        let mut body = String::new();
        s.read_to_string(&mut body).expect("response");
        let (_, text) = body.split_once("\r\n\r\n").expect("http response");
        flowy::daemon::metrics::parse_text(text)
            .into_iter()
            .collect()
    }

    /// Sum of every series of metric `name` whose labels contain `labels`.
    pub fn metric(&self, name: &str, labels: &str) -> f64 {
        sum_metric(&self.scrape(), name, labels)
    }

    /// Poll until `f` holds (panics with `what` on timeout).
    pub fn wait_until(&self, what: &str, timeout: Duration, mut f: impl FnMut(&Daemon) -> bool) {
        let deadline = Instant::now() + timeout;
        while !f(self) {
            if Instant::now() > deadline {
                panic!(
                    "timed out waiting for {what}; metrics:\n{:#?}\nlog:\n{}",
                    self.scrape(),
                    self.log_lines().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Wait until the daemon has processed every record it received and
    /// at least `records` of them.
    pub fn wait_processed(&self, records: u64) {
        self.wait_until("records processed", Duration::from_secs(30), |d| {
            let m = d.scrape();
            let rx = sum_metric(&m, "flowy_records_received_total", "");
            rx >= records as f64 && sum_metric(&m, "flowy_records_processed_total", "") == rx
        });
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid has no memory effects.
        let rc = unsafe { libc::kill(self.pid(), sig) };
        assert_eq!(rc, 0, "kill({sig}) failed");
    }

    /// SIGTERM and wait for the exit (panics on timeout).
    pub fn terminate(&mut self) -> ExitStatus {
        self.signal(libc::SIGTERM);
        self.wait_exit(Duration::from_secs(30))
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                // Let the reader threads take the last lines.
                std::thread::sleep(Duration::from_millis(100));
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "daemon did not exit within {timeout:?}; log:\n{}",
                    self.log_lines().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Resident set size in KiB, from /proc.
    pub fn rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS line")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub fn sum_metric(m: &BTreeMap<String, f64>, name: &str, labels: &str) -> f64 {
    m.iter()
        .filter(|(k, _)| {
            let (n, rest) = k.split_once('{').unwrap_or((k.as_str(), ""));
            n == name && rest.contains(labels)
        })
        .map(|(_, v)| v)
        .sum()
}

/// The final "shutdown complete" counters the daemon logs: name → value.
pub fn final_counters(log: &[String]) -> BTreeMap<String, u64> {
    let line = log
        .iter()
        .rev()
        .find(|l| l.contains("shutdown complete"))
        .expect("shutdown summary line");
    let words: Vec<&str> = line[line.find("shutdown complete").expect("found")..]
        .split_whitespace()
        .collect();
    words
        .windows(2)
        .filter_map(|w| Some((w[0].to_string(), w[1].trim_end_matches(',').parse().ok()?)))
        .collect()
}

/// Matches in a JSON Lines output file: its complete lines (a test that
/// polls the file while the daemon writes may catch the last one half
/// written, as `tail -f` would).
pub fn read_matches(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let complete = text.rfind('\n').map_or("", |end| &text[..end]);
    complete
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad output line {l:?}: {e}")))
        .collect()
}

/// `flowy query QUERY --input INPUT --output OUT` (JSON Lines); returns the
/// matches.
pub fn flowy_query(query: &Path, input: &Path, out: &Path) -> Vec<serde_json::Value> {
    flowy_query_with(query, input, out, &[])
}

/// The daemon's default tumbling window (`engine.window`): a daemon
/// compared with `flowy query` starts a new group at every multiple of it,
/// so the batch run must use the same window whenever a trace may cross one.
pub const DAEMON_WINDOW: &str = "5m";

/// [`flowy_query`] with the daemon's default window.
pub fn flowy_query_as_daemon(query: &Path, input: &Path, out: &Path) -> Vec<serde_json::Value> {
    flowy_query_with(query, input, out, &["--window", DAEMON_WINDOW])
}

/// [`flowy_query`] with more arguments.
pub fn flowy_query_with(
    query: &Path,
    input: &Path,
    out: &Path,
    extra: &[&str],
) -> Vec<serde_json::Value> {
    let status = Command::new(BIN)
        .arg("query")
        .arg(query)
        .arg("--input")
        .arg(input)
        .args(["--input-format", "pcap", "--output"])
        .arg(out)
        .args(extra)
        .status()
        .expect("run flowy query");
    assert!(status.success(), "flowy query {} failed", query.display());
    read_matches(out)
}

/// `flowy replay PCAP --to ADDR [--speed X]`.
pub fn flowy_replay(pcap: &Path, to: SocketAddr, speed: Option<f64>) {
    let mut cmd = Command::new(BIN);
    cmd.arg("replay").arg(pcap).args(["--to", &to.to_string()]);
    if let Some(s) = speed {
        cmd.args(["--speed", &s.to_string()]);
    }
    let out = cmd.output().expect("run flowy replay");
    assert!(
        out.status.success(),
        "flowy replay: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
