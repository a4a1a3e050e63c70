use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    flowy::memory::tune_allocator();
    let cli = flowy::cli::Cli::parse();
    match flowy::cli::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(flowy::cli::EXIT_FAILURE)
        }
    }
}
