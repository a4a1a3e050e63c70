//! Exact by default (SPEC §3.1): a first pass measures how far any record
//! lies behind the largest `stime` read before it, and that is the
//! lateness: no record is then late, so every group sees every record it
//! would in the evaluation that holds the whole input.
//!
//! The first pass runs on a thread of its own while the second already
//! feeds the engine. The engine starts with no W (infinite lateness,
//! nothing released). If its state reaches [`HOLD_STATE`] before the
//! measurement is in, it goes on under a lateness guessed from the disorder
//! it has seen so far ([`speculate`]) instead of waiting. Until the
//! measurement confirms the guess, every match is held back (at most
//! [`HOLD_OUTPUT`] member records' worth; past that the run waits): if the
//! measured disorder exceeds the guess, nothing has been written, and the
//! run starts over under the measured lateness. Memory stays bounded, and
//! on a single large file the two passes overlap instead of adding up.

use crate::engine::{self, Match};
use crate::input::{self, stream_inputs, InputOptions};
use crate::sanity::TimeSanity;

/// State the engine may build up with no W while the disorder is unknown.
pub(super) const HOLD_STATE: usize = 16 << 20;

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
    let mut max_stime: Option<i64> = None;
    let mut behind = 0i64;
    stream_inputs(
        inputs,
        opts,
        |_| {},
        |rec| {
            if sanity.check(rec.stime(), rec.etime(), 0).is_err() {
                return;
            }
            if let Some(m) = max_stime {
                behind = behind.max(m.saturating_sub(rec.stime()));
            }
            max_stime = Some(max_stime.map_or(rec.stime(), |m| m.max(rec.stime())));
        },
    )?;
    Ok(behind)
}

/// What the run must do after [`FirstPass::settle`].
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Settled {
    /// Go on (the lateness is known, or the measurement is still coming).
    Running,
    /// The guessed lateness was too short: start over under this one.
    Restart { measured: i64, guessed: i64 },
}

/// The first pass while it runs, and the matches held back meanwhile.
pub(super) struct FirstPass {
    scan: Option<Scan>,
    /// The lateness the engine runs under before the measurement is in.
    guessed: Option<i64>,
    held: Vec<Match>,
    held_members: usize,
    hold_state: usize,
}

impl FirstPass {
    /// Measure the disorder of `inputs` on a thread of its own.
    pub(super) fn start(inputs: &[std::path::PathBuf], opts: &InputOptions) -> Self {
        FirstPass {
            scan: Some(Scan::start(inputs, opts)),
            guessed: None,
            held: Vec::new(),
            held_members: 0,
            hold_state: hold_state(),
        }
    }

    /// No first pass: the lateness was given or cannot matter.
    pub(super) fn none() -> Self {
        FirstPass {
            scan: None,
            guessed: None,
            held: Vec::new(),
            held_members: 0,
            hold_state: HOLD_STATE,
        }
    }

    /// Matches may be written now (nothing the first pass says can change
    /// them any more).
    pub(super) fn settled(&self) -> bool {
        self.scan.is_none()
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

    /// Apply the measurement to `engine` once it is in (waiting for it if
    /// `wait`, or once held matches or, with no guess yet, the engine's
    /// state would otherwise grow past their bounds); guess a lateness
    /// when the state is full and the measurement is still coming.
    pub(super) fn settle(
        &mut self,
        engine: &mut engine::Engine,
        wait: bool,
    ) -> Result<Settled, input::InputError> {
        let Some(scan) = self.scan.take() else {
            return Ok(Settled::Running);
        };
        let full = engine.budget().used() >= self.hold_state;
        let must_wait = wait || self.held_members >= HOLD_OUTPUT;
        if !must_wait && !scan.is_done() {
            if full && self.guessed.is_none() {
                let guess = speculate(engine.admission().max_behind);
                engine.set_lateness(guess);
                self.guessed = Some(guess);
            }
            self.scan = Some(scan);
            return Ok(Settled::Running);
        }
        let measured = scan.wait()?;
        match self.guessed {
            None => engine.set_lateness(measured),
            Some(guessed) if measured > guessed => {
                return Ok(Settled::Restart { measured, guessed })
            }
            // No record lies further behind than the guess allowed: none
            // was late, the run is exact.
            Some(_) => {}
        }
        Ok(Settled::Running)
    }
}
