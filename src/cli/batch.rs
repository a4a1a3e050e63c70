//! `flowy check` and `flowy query`: compile, read files, run the engine once,
//! write the matches.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;

use super::{CheckArgs, QueryArgs, EXIT_BAD_QUERY, EXIT_FAILURE};
use crate::engine;
use crate::input;
use crate::output::{open_output, MatchFormatter, WRITE_CHUNK};
use crate::query::{self, plan::Plan, CompileError};

/// Compile every query, print each plan; every error of every file goes to
/// stderr and the exit code is 2 if any failed.
pub(super) fn check(args: &CheckArgs) -> ExitCode {
    let mut failed = false;
    for path in &args.queries {
        match query::compile_file(path) {
            Ok(plan) => println!("{}", query::explain(&plan)),
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
    let records = match input::read_files(&args.input, args.input_format) {
        Ok(records) => records,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(EXIT_FAILURE));
        }
    };
    let mut sink = open_output(&args.output)
        .with_context(|| format!("cannot open output '{}'", args.output))?;
    let plan = Arc::new(plan);
    let mut formatter = MatchFormatter::new(plan.name.clone(), args.format, !args.no_records);
    let mut buf = Vec::with_capacity(WRITE_CHUNK);
    let matches = engine::run_batch(Arc::clone(&plan), records, args.window);
    let last = matches.len();
    for (i, m) in matches.iter().enumerate() {
        formatter.append(&plan, m, &mut buf);
        if buf.len() < WRITE_CHUNK && i + 1 < last {
            continue;
        }
        match sink.write_all(&buf).and_then(|()| sink.flush()) {
            Ok(()) => buf.clear(),
            // The reader went away (`flowy query … | head`): nothing more to do.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => break,
            Err(e) => return Err(e).with_context(|| format!("cannot write to '{}'", args.output)),
        }
    }
    Ok(ExitCode::SUCCESS)
}
