//! `flowy check` and `flowy query`: compile, read files, run the engine once,
//! write the matches.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use indicatif::ProgressBar;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;

use super::firstpass::{FirstPass, Settled};
use super::{CheckArgs, QueryArgs, EXIT_BAD_QUERY, EXIT_FAILURE, EXIT_USAGE};
use crate::engine;
use crate::engine::driver::AdmissionStats;
use crate::engine::EngineConfig;
use crate::input;
use crate::input::{stream_inputs, InputOptions, ReadSummary, Source};
use crate::output::{open_output, MatchFormatter, WRITE_CHUNK};
use crate::query::{self, plan::Plan, CompileError};
use crate::record::Record;
use crate::sanity::{ImplausibleCounts, TimeSanity};

/// Compile every query, print each plan; every error of every file goes to
/// stderr. Exit 3 if any query does not compile, else 2 if a file could not
/// be read.
pub(super) fn check(args: &CheckArgs) -> ExitCode {
    let mut worst: Option<u8> = None;
    let mut out = std::io::stdout().lock();
    let mut print = true;
    for path in &args.queries {
        match query::compile_file(path) {
            // A reader that went away (`| head`) is not an error of ours;
            // later files are still checked.
            Ok(plan) => print = print && writeln!(out, "{}", query::explain(&plan)).is_ok(),
            Err(e) => {
                let code = report_compile_error(path, &e);
                worst = worst.max(Some(code));
            }
        }
    }
    worst.map_or(ExitCode::SUCCESS, ExitCode::from)
}

/// Print a compile error; its exit code: a query file that cannot be read
/// is a usage error (2), one that does not compile is 3.
fn report_compile_error(path: &Path, e: &CompileError) -> u8 {
    match e {
        CompileError::Invalid(_) => {
            eprintln!("{e}");
            EXIT_BAD_QUERY
        }
        CompileError::Io { .. } => {
            eprintln!("error: {}: {e}", path.display());
            EXIT_USAGE
        }
    }
}

/// Run a query over files: unreadable query file → 2, query that does not
/// compile → 3, unreadable input → 1.
pub(super) fn query(args: &QueryArgs) -> anyhow::Result<ExitCode> {
    let plan: Plan = match query::compile_file(&args.query) {
        Ok(plan) => plan,
        Err(e) => return Ok(ExitCode::from(report_compile_error(&args.query, &e))),
    };
    let started = Instant::now();
    let progress = Progress::new();
    let opts = InputOptions {
        format: args.input_format,
        from: args.from,
        to: args.to,
    };
    let (sink, retract) = open_batch_output(&args.output)
        .with_context(|| format!("cannot open output '{}'", args.output))?;
    let mut first = FirstPass::none();
    let mut lateness = match args.lateness {
        Some(d) => Some(d),
        // Single-record groups, no merger: nothing depends on order.
        None if order_free(&plan) => Some(0),
        // Standard input can only be read once: held until the end.
        None if reads_stdin(&args.input) => None,
        None => {
            first = match retract {
                Some(_) => FirstPass::verify(),
                None => FirstPass::start(&args.input, &opts),
            };
            None
        }
    };
    let plan = Arc::new(plan);
    let formatter = MatchFormatter::new(plan.name.clone(), args.format, !args.no_records)
        .with_run(run_id())
        .with_max_records(usize::try_from(args.max_records).unwrap_or(usize::MAX));
    let mut writer = Output::start(ChunkWriter::new(
        sink,
        retract,
        formatter,
        Arc::clone(&plan),
        args.format.header(),
    ));
    let (run, read) = loop {
        let cfg = EngineConfig {
            lateness,
            late: args.late,
            ..EngineConfig::batch(args.window)
        };
        let engine = if merger_thread_pays(&plan) {
            engine::Engine::with_merger_thread(Arc::clone(&plan), cfg)
        } else {
            engine::Engine::new(Arc::clone(&plan), cfg)
        };
        let mut run = StreamingRun {
            engine,
            writer,
            out: Vec::new(),
            implausible: ImplausibleCounts::default(),
            first,
            failed: None,
            restart: None,
        };
        let read = read_into(&args.input, &opts, &progress, &mut run)
            .and_then(|read| run.end_first_pass().map(|()| read));
        let read = match read {
            Ok(read) => read,
            Err(e) => return Ok(input_failed(&progress, &e)),
        };
        match run.restart {
            // Nothing of the attempt stays written: the run starts over,
            // exact this time.
            Some((measured, guessed, retract)) => {
                eprintln!(
                    "note: the input lies up to {} out of order, more than the {} its first records suggested: evaluating again",
                    duration_arg(measured),
                    duration_arg(guessed)
                );
                lateness = Some(measured);
                first = FirstPass::none();
                writer = run.writer;
                if retract {
                    writer.retract();
                }
            }
            None => break (run, read),
        }
    };
    let (admitted, matches, written) = run.finish();
    progress.clear();
    written.with_context(|| format!("cannot write to '{}'", args.output))?;
    report_late(args.lateness, &admitted);
    // Without --lateness no record was late: the lateness covered the
    // disorder, or (order-free plans) order could not change the result.
    let late = if args.lateness.is_some() {
        admitted.late
    } else {
        0
    };
    eprintln!("{}", summary_line(&read, late, matches, started.elapsed()));
    Ok(ExitCode::SUCCESS)
}

/// This run's id: when it started (RFC 3339, ms) and the process id, so
/// that two runs, even started in the same millisecond on one host, differ.
fn run_id() -> String {
    format!(
        "{}-{}",
        crate::output::format_time(crate::output::now_ms()),
        std::process::id()
    )
}

fn input_failed(progress: &Progress, e: &input::InputError) -> ExitCode {
    progress.clear();
    eprintln!("error: {e}");
    ExitCode::from(EXIT_FAILURE)
}

/// Records admitted to the engine a batch at a time: W moves once per
/// batch (SPEC §3.2), and a batch is small enough to stay in cache.
const BATCH: usize = 4096;

/// A plan whose every branch passes single records (no grouper) and that
/// has no merger gives the same matches in any record order.
fn order_free(plan: &Plan) -> bool {
    plan.merger.is_none() && plan.branches.iter().all(|b| b.grouper.is_none())
}

/// The merger gets a thread of its own when there is one (a plan with a
/// merger, a second core): its work then overlaps the branches', which
/// otherwise take turns with it on the engine's thread.
fn merger_thread_pays(plan: &Plan) -> bool {
    plan.merger.is_some() && std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2)
}

fn reads_stdin(inputs: &[std::path::PathBuf]) -> bool {
    inputs.iter().any(|p| p.as_os_str() == input::source::STDIN)
}

/// Read the inputs on a thread of their own while this one runs the engine
/// (decoding and evaluating overlap), in batches of [`BATCH`] records, in
/// input order. Without a thread, the reading runs here.
fn read_into(
    inputs: &[std::path::PathBuf],
    opts: &InputOptions,
    progress: &Progress,
    run: &mut StreamingRun,
) -> Result<ReadSummary, input::InputError> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Record>>(READ_AHEAD);
    let read = move |send: &mut dyn FnMut(Vec<Record>)| {
        let mut batch = Vec::with_capacity(BATCH);
        let summary = stream_inputs(
            inputs,
            opts,
            |src| progress.reading(src),
            |rec| {
                batch.push(rec);
                if batch.len() >= BATCH {
                    send(std::mem::replace(&mut batch, Vec::with_capacity(BATCH)));
                }
            },
        );
        if !batch.is_empty() {
            send(batch);
        }
        summary
    };
    std::thread::scope(|scope| {
        let reader = std::thread::Builder::new()
            .name("flowy-read".into())
            .spawn_scoped(scope, move || {
                // The receiver outlives the sender: a send cannot fail.
                read(&mut |b| {
                    let _ = tx.send(b);
                })
            });
        match reader {
            Ok(handle) => {
                for batch in rx {
                    run.push_batch(batch);
                }
                handle
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            }
            Err(_) => read(&mut |b| run.push_batch(b)),
        }
    })
}

/// Batches read ahead of the engine: bounds the memory of a reader faster
/// than the evaluation.
const READ_AHEAD: usize = 4;

/// The second pass: records go to the engine as they are read, matches to
/// the output as they are found (once the first pass allows).
struct StreamingRun {
    engine: engine::Engine,
    writer: Output,
    out: Vec<engine::Match>,
    implausible: ImplausibleCounts,
    first: FirstPass,
    /// The first pass failed: the run stops with its error.
    failed: Option<input::InputError>,
    /// The lateness guessed was too short: (measured, guessed, whether
    /// matches were written). The rest of the input is not evaluated; the
    /// run starts over.
    restart: Option<(i64, i64, bool)>,
}

impl StreamingRun {
    /// Records whose times cannot be computed or written (SPEC §4.5: every
    /// time written is RFC 3339) are left out, and the run says how many.
    fn push_batch(&mut self, mut batch: Vec<Record>) {
        if self.failed.is_some() || self.restart.is_some() {
            return;
        }
        self.settle(false);
        if self.failed.is_some() || self.restart.is_some() {
            return;
        }
        let implausible = &mut self.implausible;
        batch.retain(
            |r| match TimeSanity::files().check(r.stime(), r.etime(), 0) {
                Ok(()) => true,
                Err(why) => {
                    implausible.count(r.exporter(), why);
                    false
                }
            },
        );
        self.first.observe(&batch);
        if self.first.evaluating() {
            self.engine.push_batch(batch, &mut self.out);
            self.first.check(&self.engine);
            self.emit();
        }
    }

    /// Hand the matches found to the output, or hold them back while the
    /// first pass may still void them.
    fn emit(&mut self) {
        if self.first.settled() {
            self.writer.send(&mut self.out);
        } else {
            self.first.hold(&mut self.out);
        }
    }

    /// After the second pass: the first pass's failure, if it failed, is
    /// the run's; otherwise wait for it (its thread must not outlive the run).
    fn end_first_pass(&mut self) -> Result<(), input::InputError> {
        if self.failed.is_none() && self.restart.is_none() {
            let verdict = self.first.end(&mut self.engine);
            self.apply(verdict);
        }
        match self.failed.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Apply the first pass's measurement once it is there (waiting for it
    /// if `wait`); matches held back meanwhile then go to the output.
    fn settle(&mut self, wait: bool) {
        let verdict = self.first.settle(&mut self.engine, wait);
        self.apply(verdict);
    }

    fn apply(&mut self, verdict: Result<Settled, input::InputError>) {
        match verdict {
            Ok(Settled::Running) => {}
            Ok(Settled::Restart {
                measured,
                guessed,
                retract,
            }) => {
                self.restart = Some((measured, guessed, retract));
                return;
            }
            Err(e) => {
                self.failed = Some(e);
                return;
            }
        }
        if self.first.settled() {
            self.writer.send(&mut self.first.release());
        }
    }

    fn finish(mut self) -> (AdmissionStats, u64, std::io::Result<()>) {
        let writer = &mut self.writer;
        let mut drain = |out: &mut Vec<engine::Match>| writer.send(out);
        self.engine.finish_with(&mut self.out, &mut drain);
        drain(&mut self.out);
        report_implausible(&self.implausible);
        let admitted = self.engine.admission();
        let (matches, written) = self.writer.finish();
        (admitted, matches, written)
    }
}

/// With `--lateness`, say how many records came later than it allowed and
/// what lateness would have made the run exact (SPEC §3.1).
fn report_late(lateness: Option<i64>, a: &AdmissionStats) {
    let Some(d) = lateness else { return };
    if a.late == 0 {
        return;
    }
    let what = if a.dropped > 0 {
        "dropped (--late drop)"
    } else {
        "processed out of order"
    };
    eprintln!(
        "warning: {} records lay more than --lateness {} behind the latest stime read and were {what}; --lateness {} would have made the run exact",
        a.late,
        duration_arg(d),
        duration_arg(a.max_behind),
    );
}

/// A duration as `--lateness` takes it.
fn duration_arg(ms: i64) -> String {
    if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// The run's one summary line on stderr (SPEC §3.1).
fn summary_line(read: &ReadSummary, late: u64, matches: u64, took: Duration) -> String {
    let skipped = match read.skipped {
        0 => String::new(),
        n => format!(" ({n} skipped by --from/--to)"),
    };
    format!(
        "flowy query: {} input{}{skipped}, {} records read, {late} late, {matches} matches, {:.2} s",
        read.files,
        if read.files == 1 { "" } else { "s" },
        read.records,
        took.as_secs_f64()
    )
}

/// A batch run's output is one result: a file is replaced, not appended to
/// (SPEC §3.1); `-` is stdout. With it, how the output can be emptied
/// again, if it can.
fn open_batch_output(path: &str) -> std::io::Result<(Box<dyn Write + Send>, Option<Retract>)> {
    if path == "-" {
        return Ok((open_output(path)?, stdout_retract()));
    }
    let file = std::fs::File::create(path)?;
    let retract = retract_for(file.try_clone()?);
    Ok((Box::new(file), retract))
}

/// Standard output redirected to a file (`> out.jsonl`, `>> log`) or to
/// `/dev/null` can be taken back too; a pipe or a terminal cannot.
fn stdout_retract() -> Option<Retract> {
    use std::os::fd::AsFd;
    let fd = std::io::stdout().as_fd().try_clone_to_owned().ok()?;
    retract_for(std::fs::File::from(fd))
}

/// How `file` (open for writing, at the offset the run's output starts)
/// can be emptied again, if it can.
fn retract_for(mut file: std::fs::File) -> Option<Retract> {
    use std::io::Seek;
    let meta = file.metadata().ok()?;
    if meta.is_file() {
        // An appending descriptor writes at the end, whatever its offset.
        let start = if appends(&file) {
            meta.len()
        } else {
            file.stream_position().ok()?
        };
        Some(Retract::Truncate { file, start })
    } else if discards(&meta) {
        Some(Retract::Nothing)
    } else {
        None
    }
}

/// The descriptor was opened with `O_APPEND` (`>>`).
fn appends(file: &std::fs::File) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: F_GETFL only reads the flags of a descriptor `file` owns.
    let flags = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETFL) };
    flags >= 0 && flags & libc::O_APPEND != 0
}

/// `/dev/null` (whatever name it is reached by): what went there is gone.
fn discards(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    meta.file_type().is_char_device()
        && std::fs::metadata("/dev/null").is_ok_and(|null| null.rdev() == meta.rdev())
}

/// How an output is emptied for a run that starts over.
enum Retract {
    /// A regular file (the same open file as the sink): cut back to where
    /// the run's output began (0, or the end of what `>>` appends to).
    Truncate { file: std::fs::File, start: u64 },
    /// An output that keeps nothing.
    Nothing,
}

impl Retract {
    fn apply(&mut self) -> std::io::Result<()> {
        use std::io::Seek;
        match self {
            Retract::Truncate { file, start } => {
                file.set_len(*start)?;
                // The sink shares this file's offset.
                file.seek(std::io::SeekFrom::Start(*start)).map(|_| ())
            }
            Retract::Nothing => Ok(()),
        }
    }
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
            .set_message(format!("evaluating over {}", src.label().display()));
    }

    fn clear(&self) {
        self.0.finish_and_clear();
    }
}

fn report_implausible(counts: &ImplausibleCounts) {
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

/// Where the matches go: a thread of its own that formats and writes them
/// (formatting a filter-only query's matches costs about what finding them
/// does), or this thread if none can be started.
enum Output {
    Thread {
        tx: std::sync::mpsc::SyncSender<ToWriter>,
        handle: std::thread::JoinHandle<Option<ChunkWriter>>,
    },
    Inline(ChunkWriter),
}

/// Batches of matches on their way to the output thread: bounds what a
/// slow output holds.
const WRITE_AHEAD: usize = 8;

enum ToWriter {
    Matches(Vec<engine::Match>),
    /// Empty the output: the run starts over.
    Retract,
}

impl Output {
    fn start(writer: ChunkWriter) -> Self {
        let (tx, rx) = std::sync::mpsc::sync_channel::<ToWriter>(WRITE_AHEAD);
        // The writer is handed over once the thread exists: a refused
        // spawn would otherwise take it down with the closure.
        let (hand_over, handed) = std::sync::mpsc::channel::<ChunkWriter>();
        let spawned = std::thread::Builder::new()
            .name("flowy-write".into())
            .spawn(move || {
                let mut writer = handed.recv().ok()?;
                for msg in rx {
                    match msg {
                        ToWriter::Matches(batch) => batch.iter().for_each(|m| writer.append(m)),
                        ToWriter::Retract => writer.retract(),
                    }
                }
                Some(writer)
            });
        match spawned {
            Ok(handle) => match hand_over.send(writer) {
                Ok(()) => Output::Thread { tx, handle },
                Err(std::sync::mpsc::SendError(writer)) => Output::Inline(writer),
            },
            Err(_) => Output::Inline(writer),
        }
    }

    /// Hand on the matches in `out`, leaving it empty.
    fn send(&mut self, out: &mut Vec<engine::Match>) {
        if out.is_empty() {
            return;
        }
        match self {
            Output::Thread { tx, .. } => {
                // The thread lives until `finish` drops the sender.
                let _ = tx.send(ToWriter::Matches(std::mem::take(out)));
            }
            Output::Inline(writer) => out.drain(..).for_each(|m| writer.append(&m)),
        }
    }

    /// Empty the output (after the matches sent before).
    fn retract(&mut self) {
        match self {
            Output::Thread { tx, .. } => {
                let _ = tx.send(ToWriter::Retract);
            }
            Output::Inline(writer) => writer.retract(),
        }
    }

    /// Matches written and the outcome of writing them.
    fn finish(self) -> (u64, std::io::Result<()>) {
        let writer = match self {
            Output::Thread { tx, handle } => {
                drop(tx);
                handle
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            }
            Output::Inline(writer) => Some(writer),
        };
        match writer {
            Some(w) => (w.matches, w.finish()),
            None => (0, Ok(())),
        }
    }
}

/// Formats matches as the engine hands them over and writes them in chunks
/// of about [`WRITE_CHUNK`] bytes. The first write error ends the writing;
/// the run goes on (the engine cannot be stopped midway) and `finish`
/// reports the error.
struct ChunkWriter {
    sink: Box<dyn Write + Send>,
    retract: Option<Retract>,
    header: Vec<u8>,
    formatter: MatchFormatter,
    plan: Arc<Plan>,
    buf: Vec<u8>,
    state: std::io::Result<()>,
    matches: u64,
}

impl ChunkWriter {
    /// `header` (CSV's column names) starts the output even if no match
    /// follows: an empty result still names its columns.
    fn new(
        sink: Box<dyn Write + Send>,
        retract: Option<Retract>,
        formatter: MatchFormatter,
        plan: Arc<Plan>,
        header: Option<&[u8]>,
    ) -> Self {
        let header = header.unwrap_or_default().to_vec();
        let mut buf = Vec::with_capacity(WRITE_CHUNK);
        buf.extend_from_slice(&header);
        ChunkWriter {
            sink,
            retract,
            header,
            formatter,
            plan,
            buf,
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

    /// Start the output over: nothing written so far stays, numbering
    /// starts at 1 again. Only for outputs that can be emptied.
    fn retract(&mut self) {
        self.buf.clear();
        self.buf.extend_from_slice(&self.header);
        self.matches = 0;
        self.formatter.restart_numbering();
        self.state = match &mut self.retract {
            Some(r) => r.apply(),
            None => Err(std::io::Error::other("this output cannot be emptied")),
        };
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
