//! One command as the user runs it: a child process, timed from spawn to
//! exit, with its CPU time (user + sys) and peak resident set as GNU
//! `/usr/bin/time` reports them for the whole process, every thread.
//!
//! Why `time` and not `wait4` on our own child: Linux carries the peak RSS
//! of the address space a process replaces at `execve` into its own
//! `ru_maxrss`, and a child spawned from this bench starts in (a copy of)
//! the bench's address space, which held the generated traces: every tool
//! would report at least the bench's own peak. `time` is small and forks
//! the command from itself.

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// A command line of the bench: the tool's label, its program and
/// arguments, and where its standard output goes.
#[derive(Clone, Debug)]
pub struct Cmd {
    pub tool: String,
    pub program: PathBuf,
    pub args: Vec<OsString>,
    /// `None`: /dev/null.
    pub stdout: Option<PathBuf>,
}

impl Cmd {
    pub fn new(tool: &str, program: impl Into<PathBuf>) -> Cmd {
        Cmd {
            tool: tool.into(),
            program: program.into(),
            args: Vec::new(),
            stdout: None,
        }
    }

    pub fn arg(mut self, a: impl Into<OsString>) -> Cmd {
        self.args.push(a.into());
        self
    }

    pub fn path_arg(self, p: &Path) -> Cmd {
        self.arg(p.as_os_str().to_owned())
    }
}

/// The shell line that does the same (arguments with spaces quoted).
impl fmt::Display for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.program.display())?;
        for a in &self.args {
            let a = a.to_string_lossy();
            if a.contains([' ', '*', '\'']) {
                write!(f, " '{a}'")?;
            } else {
                write!(f, " {a}")?;
            }
        }
        match &self.stdout {
            None => write!(f, " > /dev/null"),
            Some(p) => write!(f, " > {}", p.display()),
        }
    }
}

/// What one run cost.
#[derive(Clone, Copy, Debug)]
pub struct Sample {
    pub wall: Duration,
    pub cpu: Duration,
    pub max_rss_kib: u64,
}

/// Run `cmd` once; its standard error goes to `stderr_to` (the caller
/// reads the tool's summary from it). A failing command is an error.
pub fn run(cmd: &Cmd, stderr_to: &Path) -> anyhow::Result<Sample> {
    let out = match &cmd.stdout {
        None => std::fs::File::create("/dev/null")?,
        Some(p) => std::fs::File::create(p).with_context(|| format!("create {}", p.display()))?,
    };
    let err = std::fs::File::create(stderr_to)?;
    let usage = stderr_to.with_extension("time");
    let start = Instant::now();
    let status = Command::new("/usr/bin/time")
        .args(["-f", "%U %S %M", "-o"])
        .arg(&usage)
        .arg(&cmd.program)
        .args(&cmd.args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .status()
        .with_context(|| format!("spawn /usr/bin/time {cmd}"))?;
    let wall = start.elapsed();
    if !status.success() {
        let text = std::fs::read_to_string(stderr_to).unwrap_or_default();
        bail!("`{cmd}` failed ({status}):\n{text}");
    }
    let text = std::fs::read_to_string(&usage)?;
    let parsed = text.lines().last().and_then(|l| {
        let v: Vec<&str> = l.split_whitespace().collect();
        let secs = |i: usize| v.get(i)?.parse::<f64>().ok();
        Some((secs(0)? + secs(1)?, v.get(2)?.parse::<u64>().ok()?))
    });
    let Some((cpu, max_rss_kib)) = parsed else {
        bail!("cannot read /usr/bin/time's output for `{cmd}`: {text:?}");
    };
    Ok(Sample {
        wall,
        cpu: Duration::from_secs_f64(cpu),
        max_rss_kib,
    })
}

/// Median of `xs` (the upper one of an even count).
pub fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs.get(xs.len() / 2).copied().unwrap_or(f64::NAN)
}
