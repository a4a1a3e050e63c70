//! Exact by default (SPEC §3.1): the run must allow for the input's
//! disorder, how far any record lies behind the largest `stime` read
//! before it. With that lateness no record is late, so every group sees
//! every record it would in the evaluation that holds the whole input.
//!
//! The engine starts with no W (infinite lateness, nothing released). If
//! its state reaches [`HOLD_STATE`] before the disorder is known, it goes
//! on under a lateness guessed from the disorder seen so far
//! ([`speculate`]). How the guess is checked depends on the output:
//!
//! - **An output that can be taken back** (a file, which the run replaces
//!   anyway, standard output redirected to a file, or `/dev/null`): the
//!   run itself checks it. A record the guess
//!   made late voids the attempt; the rest of the input is only measured,
//!   the output is emptied and the run starts over under the measured
//!   lateness. A single pass when the guess holds.
//! - **Any other output** (a pipe, a terminal): a first pass measures the
//!   disorder on a thread of its own while the second feeds the engine.
//!   Until the measurement confirms the guess every match is held back (at
//!   most [`HOLD_OUTPUT`] member records' worth; past that the run waits);
//!   if it refutes it, nothing has been written and the run starts over.
//!
//! Memory stays bounded either way, and on a large file the measuring and
//! the evaluation overlap instead of adding up.

use crate::engine::{self, Match};
use crate::input::{self, stream_inputs, InputOptions};
use crate::sanity::TimeSanity;

/// State the engine may build up with no W while the disorder is unknown:
/// tens of thousands of records, enough to have seen an exporter's export
/// delay, and little enough that the burst of closing when the guess comes
/// stays in cache (at 16 MB the HTTP bench ran 20 % slower, at twice the
/// peak memory).
pub(super) const HOLD_STATE: usize = 4 << 20;

/// Member records of the matches held back while a guessed lateness is
/// unconfirmed (about 16 MB of records).
const HOLD_OUTPUT: usize = 128 << 10;

/// Room a guessed lateness leaves beyond twice the disorder seen so far: a
/// wrong guess costs a second run, a generous one only state.
const SPECULATION_SLACK: i64 = 10_000;

/// The lateness to run under when `seen` is the disorder of the records
/// read so far.
fn speculate(seen: i64) -> i64 {
    seen.saturating_mul(2).saturating_add(SPECULATION_SLACK)
}

/// The first pass, on its thread.
enum Scan {
    Measuring(std::thread::JoinHandle<Result<i64, input::InputError>>),
    /// No thread could be started: measured before the second pass.
    Measured(Result<i64, input::InputError>),
}

impl Scan {
    fn start(inputs: &[std::path::PathBuf], opts: &InputOptions) -> Self {
        let (owned_inputs, owned_opts) = (inputs.to_vec(), opts.clone());
        let spawned = std::thread::Builder::new()
            .name("flowy-scan".into())
            .spawn(move || {
                debug_delay();
                measure_disorder(&owned_inputs, &owned_opts)
            });
        match spawned {
            Ok(handle) => Scan::Measuring(handle),
            Err(_) => Scan::Measured(measure_disorder(inputs, opts)),
        }
    }

    fn is_done(&self) -> bool {
        match self {
            Scan::Measuring(handle) => handle.is_finished(),
            Scan::Measured(_) => true,
        }
    }

    fn wait(self) -> Result<i64, input::InputError> {
        match self {
            Scan::Measuring(handle) => handle
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            Scan::Measured(result) => result,
        }
    }
}

/// Test-only: `FLOWY_DEBUG_SCAN_DELAY_MS=N` starts the first pass N ms
/// late, so that tests reach the guessed lateness on small inputs.
fn debug_delay() {
    let ms = std::env::var("FLOWY_DEBUG_SCAN_DELAY_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(ms) = ms {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
}

/// Test-only: `FLOWY_DEBUG_HOLD_STATE=BYTES` replaces [`HOLD_STATE`].
pub(super) fn hold_state() -> usize {
    std::env::var("FLOWY_DEBUG_HOLD_STATE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(HOLD_STATE)
}

/// The largest distance a record's `stime` lies behind the largest `stime`
/// read before it (records whose times are implausible left out, as the
/// second pass leaves them out).
fn measure_disorder(
    inputs: &[std::path::PathBuf],
    opts: &InputOptions,
) -> Result<i64, input::InputError> {
    let sanity = TimeSanity::files();
    let mut meter = Meter::default();
    stream_inputs(
        inputs,
        opts,
        |_| {},
        |rec| {
            if sanity.check(rec.stime(), rec.etime(), 0).is_ok() {
                meter.observe(rec.stime());
            }
        },
    )?;
    Ok(meter.behind)
}

/// What the run must do after [`FirstPass::settle`] or [`FirstPass::end`].
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Settled {
    /// Go on (the lateness is known, or the measurement is still coming).
    Running,
    /// The guessed lateness was too short: start over under the measured
    /// one, emptying the output first if `retract`.
    Restart {
        measured: i64,
        guessed: i64,
        retract: bool,
    },
}

/// The disorder of the records seen so far: how far any `stime` lay
/// behind the largest one before it.
#[derive(Default)]
struct Meter {
    max_stime: Option<i64>,
    behind: i64,
}

impl Meter {
    fn observe(&mut self, stime: i64) {
        if let Some(m) = self.max_stime {
            self.behind = self.behind.max(m.saturating_sub(stime));
        }
        self.max_stime = Some(self.max_stime.map_or(stime, |m| m.max(stime)));
    }
}

/// How the lateness is learned.
enum Mode {
    /// Given, or of no consequence: nothing to learn.
    Known,
    /// A first pass measures it (`None` once its measurement is applied).
    Scan(Option<Scan>),
    /// The run checks its own guess; the output can be taken back.
    Verify { meter: Meter, refuted: bool },
}

/// The first pass while it runs, or the run's check of its own guess, and
/// the matches held back meanwhile.
pub(super) struct FirstPass {
    mode: Mode,
    /// The lateness the engine runs under before the measurement is in.
    guessed: Option<i64>,
    held: Vec<Match>,
    held_members: usize,
    hold_state: usize,
}

impl FirstPass {
    fn with(mode: Mode) -> Self {
        FirstPass {
            mode,
            guessed: None,
            held: Vec::new(),
            held_members: 0,
            hold_state: hold_state(),
        }
    }

    /// Measure the disorder of `inputs` on a thread of its own.
    pub(super) fn start(inputs: &[std::path::PathBuf], opts: &InputOptions) -> Self {
        Self::with(Mode::Scan(Some(Scan::start(inputs, opts))))
    }

    /// Guess, and let the run check its guess (the output can be taken
    /// back if the guess fails).
    pub(super) fn verify() -> Self {
        Self::with(Mode::Verify {
            meter: Meter::default(),
            refuted: false,
        })
    }

    /// No first pass: the lateness was given or cannot matter.
    pub(super) fn none() -> Self {
        Self::with(Mode::Known)
    }

    /// Matches may be written now (nothing the first pass says can void
    /// them, or the output can be taken back).
    pub(super) fn settled(&self) -> bool {
        !matches!(self.mode, Mode::Scan(Some(_)))
    }

    /// The engine still has to evaluate records (not after a failed guess,
    /// when the rest of the input is only measured).
    pub(super) fn evaluating(&self) -> bool {
        !matches!(self.mode, Mode::Verify { refuted: true, .. })
    }

    /// Note the records of a batch about to be admitted.
    pub(super) fn observe(&mut self, batch: &[crate::record::Record]) {
        if let Mode::Verify { meter, .. } = &mut self.mode {
            batch.iter().for_each(|r| meter.observe(r.stime()));
        }
    }

    /// After a batch: a record the guess made late voids the attempt.
    pub(super) fn check(&mut self, engine: &engine::Engine) {
        if let Mode::Verify { refuted, .. } = &mut self.mode {
            *refuted = engine.admission().late > 0;
        }
    }

    /// Keep `out`'s matches until the measurement is in.
    pub(super) fn hold(&mut self, out: &mut Vec<Match>) {
        self.held_members += out
            .iter()
            .flat_map(|m| &m.groups)
            .map(|g| g.members.len())
            .sum::<usize>();
        self.held.append(out);
    }

    /// The matches held back, once they may be written.
    pub(super) fn release(&mut self) -> Vec<Match> {
        self.held_members = 0;
        std::mem::take(&mut self.held)
    }

    /// Before a batch: guess a lateness when the engine's state is full
    /// and the disorder still unknown; apply the first pass's measurement
    /// once it is in (waiting for it if `wait`, or once the held matches
    /// reach their bound).
    pub(super) fn settle(
        &mut self,
        engine: &mut engine::Engine,
        wait: bool,
    ) -> Result<Settled, input::InputError> {
        let guessing = match &self.mode {
            Mode::Known => return Ok(Settled::Running),
            Mode::Scan(None) => return Ok(Settled::Running),
            Mode::Scan(Some(scan)) => !(wait || self.held_members >= HOLD_OUTPUT || scan.is_done()),
            Mode::Verify { .. } => true,
        };
        if guessing {
            if self.guessed.is_none() && engine.budget().used() >= self.hold_state {
                let guess = speculate(engine.admission().max_behind);
                engine.set_lateness(guess);
                self.guessed = Some(guess);
            }
            return Ok(Settled::Running);
        }
        let Mode::Scan(scan) = &mut self.mode else {
            return Ok(Settled::Running);
        };
        let Some(scan) = scan.take() else {
            return Ok(Settled::Running);
        };
        let measured = scan.wait()?;
        match self.guessed {
            None => engine.set_lateness(measured),
            Some(guessed) if measured > guessed => {
                return Ok(Settled::Restart {
                    measured,
                    guessed,
                    retract: false,
                })
            }
            // No record lies further behind than the guess allowed: none
            // was late, the run is exact.
            Some(_) => {}
        }
        Ok(Settled::Running)
    }

    /// At the end of the input: the first pass's verdict (waiting for it),
    /// or the run's own.
    pub(super) fn end(
        &mut self,
        engine: &mut engine::Engine,
    ) -> Result<Settled, input::InputError> {
        match &self.mode {
            Mode::Verify {
                meter,
                refuted: true,
            } => Ok(Settled::Restart {
                measured: meter.behind,
                guessed: self.guessed.unwrap_or(0),
                retract: true,
            }),
            // No record was late: the guess (if any) covered the disorder.
            Mode::Verify { .. } | Mode::Known => Ok(Settled::Running),
            Mode::Scan(_) => self.settle(engine, true),
        }
    }
}
