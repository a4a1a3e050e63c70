//! `flowy check` and `flowy query`: compile, read files, run the engine once,
//! write the matches.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use indicatif::ProgressBar;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;

use super::{CheckArgs, QueryArgs, EXIT_BAD_QUERY, EXIT_FAILURE};
use crate::engine;
use crate::input;
use crate::input::{InputOptions, ReadSummary, Source};
use crate::output::{open_output, MatchFormatter, WRITE_CHUNK};
use crate::query::{self, plan::Plan, CompileError};
use crate::sanity::{ImplausibleCounts, TimeSanity};

/// Compile every query, print each plan; every error of every file goes to
/// stderr and the exit code is 2 if any failed.
pub(super) fn check(args: &CheckArgs) -> ExitCode {
    let mut failed = false;
    let mut out = std::io::stdout().lock();
    let mut print = true;
    for path in &args.queries {
        match query::compile_file(path) {
            // A reader that went away (`| head`) is not an error of ours;
            // later files are still checked.
            Ok(plan) => print = print && writeln!(out, "{}", query::explain(&plan)).is_ok(),
            Err(e) => {
                failed = true;
                report_compile_error(path, &e);
            }
        }
    }
    if failed {
        ExitCode::from(EXIT_BAD_QUERY)
    } else {
        ExitCode::SUCCESS
    }
}

fn report_compile_error(path: &Path, e: &CompileError) {
    match e {
        CompileError::Invalid(_) => eprintln!("{e}"),
        CompileError::Io { .. } => eprintln!("error: {}: {e}", path.display()),
    }
}

/// Run a query over files: bad query → 2, unreadable input → 1.
pub(super) fn query(args: &QueryArgs) -> anyhow::Result<ExitCode> {
    let plan: Plan = match query::compile_file(&args.query) {
        Ok(plan) => plan,
        Err(e) => {
            report_compile_error(&args.query, &e);
            return Ok(ExitCode::from(EXIT_BAD_QUERY));
        }
    };
    let started = Instant::now();
    let progress = Progress::new();
    let opts = InputOptions {
        format: args.input_format,
        from: args.from,
        to: args.to,
    };
    let (mut records, read) =
        match input::read_inputs(&args.input, &opts, |src| progress.reading(src)) {
            Ok(r) => r,
            Err(e) => {
                progress.clear();
                eprintln!("error: {e}");
                return Ok(ExitCode::from(EXIT_FAILURE));
            }
        };
    progress.evaluating(records.len());
    drop_unwritable_times(&mut records);
    let sink = open_batch_output(&args.output)
        .with_context(|| format!("cannot open output '{}'", args.output))?;
    let plan = Arc::new(plan);
    let formatter = MatchFormatter::new(plan.name.clone(), args.format, !args.no_records);
    let mut writer = ChunkWriter::new(sink, formatter, Arc::clone(&plan));
    engine::run_batch_with(Arc::clone(&plan), records, args.window, |m| {
        writer.append(&m)
    });
    let matches = writer.matches;
    let written = writer.finish();
    progress.clear();
    written.with_context(|| format!("cannot write to '{}'", args.output))?;
    eprintln!("{}", summary_line(&read, matches, started.elapsed()));
    Ok(ExitCode::SUCCESS)
}

/// The run's one summary line on stderr (SPEC §3.1).
fn summary_line(read: &ReadSummary, matches: u64, took: Duration) -> String {
    let skipped = match read.skipped {
        0 => String::new(),
        n => format!(" ({n} skipped by --from/--to)"),
    };
    format!(
        "flowy query: {} input{}{skipped}, {} records read, 0 late, {matches} matches, {:.2} s",
        read.files,
        if read.files == 1 { "" } else { "s" },
        read.records,
        took.as_secs_f64()
    )
}

/// A batch run's output is one result: a file is replaced, not appended to
/// (SPEC §3.1); `-` is stdout.
fn open_batch_output(path: &str) -> std::io::Result<Box<dyn Write + Send>> {
    if path == "-" {
        return open_output(path);
    }
    Ok(Box::new(std::fs::File::create(path)?))
}

/// Progress on a terminal (hidden otherwise): which input is being read,
/// then the evaluation.
struct Progress(ProgressBar);

impl Progress {
    fn new() -> Self {
        let bar = if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new_spinner();
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        } else {
            ProgressBar::hidden()
        };
        Progress(bar)
    }

    fn reading(&self, src: &Source) {
        self.0
            .set_message(format!("reading {}", src.label().display()));
    }

    fn evaluating(&self, records: usize) {
        self.0
            .set_message(format!("evaluating the query over {records} records"));
    }

    fn clear(&self) {
        self.0.finish_and_clear();
    }
}

/// Records whose times cannot be computed or written (SPEC §4.5: every
/// time written is RFC 3339) are left out, and the run says how many.
fn drop_unwritable_times(records: &mut Vec<crate::record::Record>) {
    let mut counts = ImplausibleCounts::default();
    TimeSanity::files().retain(records, 0, &mut counts);
    if counts.total() == 0 {
        return;
    }
    let reasons: Vec<String> = counts
        .by_reason()
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(why, n)| format!("{n} {}", why.label()))
        .collect();
    eprintln!(
        "warning: {} records left out: their times cannot be computed or written ({})",
        counts.total(),
        reasons.join(", ")
    );
}

/// Formats matches as the engine hands them over and writes them in chunks
/// of about [`WRITE_CHUNK`] bytes. The first write error ends the writing;
/// the run goes on (the engine cannot be stopped midway) and `finish`
/// reports the error.
struct ChunkWriter {
    sink: Box<dyn Write>,
    formatter: MatchFormatter,
    plan: Arc<Plan>,
    buf: Vec<u8>,
    state: std::io::Result<()>,
    matches: u64,
}

impl ChunkWriter {
    fn new(sink: Box<dyn Write>, formatter: MatchFormatter, plan: Arc<Plan>) -> Self {
        ChunkWriter {
            sink,
            formatter,
            plan,
            buf: Vec::with_capacity(WRITE_CHUNK),
            state: Ok(()),
            matches: 0,
        }
    }

    fn append(&mut self, m: &engine::Match) {
        self.matches += 1;
        if self.state.is_err() {
            return;
        }
        self.formatter.append(&self.plan, m, &mut self.buf);
        if self.buf.len() >= WRITE_CHUNK {
            self.write();
        }
    }

    fn write(&mut self) {
        self.state = self
            .sink
            .write_all(&self.buf)
            .and_then(|()| self.sink.flush());
        self.buf.clear();
    }

    /// Write what is left. A reader that went away (`flowy query … | head`)
    /// is not an error: there is nothing more to do.
    fn finish(mut self) -> std::io::Result<()> {
        if self.state.is_ok() {
            self.write();
        }
        match self.state {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            other => other,
        }
    }
}
