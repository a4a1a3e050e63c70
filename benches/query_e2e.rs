//! `flowy query` end to end, as a user runs it, next to nfdump on the same
//! files (issue 11): the whole command as a child process, reading its
//! input included.
//!
//! Cases (inputs built once and cached under `target/bench-data/`, or
//! `FLOWY_BENCH_DATA`):
//! - `filter-1M`, `filter-10M`: a filter-only query (TCP to port 443) over
//!   an nfcapd archive that Debian's `nfcapd` stored from NetFlow v9 sent
//!   over UDP; next to `nfdump -R DIR 'proto tcp and dst port 443'`.
//! - `http-1x`, `http-10x`: `config/queries/http-download.flowy` over the
//!   HTTP-heavy trace of `benches/http_query.rs` (1.16 M records) as one
//!   flow-tools file, and over ten consecutive copies in ten files.
//! - `merger-key-*`, `merger-during-*`: the `key+before` and `during`
//!   plans of `benches/merger_growth.rs` as queries, 100 k and 1 M groups.
//!
//! Two modes:
//! - `cargo bench --bench query_e2e` — criterion, 10 samples of each
//!   command (wall time only).
//! - `cargo bench --bench query_e2e -- --table` (what `benches/compare.sh`
//!   runs) — a Markdown table with median wall, CPU and peak RSS per
//!   command, `FLOWY_E2E_RUNS` runs each (default 5), and the commands.
//!
//! `FLOWY_E2E_CASES` picks cases by substring (`filter,http-1x`);
//! `FLOWY_BIN` measures another flowy binary (default: the one cargo
//! builds for this bench, target/release/flowy).

use std::time::Duration;

use criterion::{Criterion, SamplingMode};

#[allow(dead_code)]
#[path = "support/capture.rs"]
mod capture;
#[path = "support/e2e/mod.rs"]
mod e2e;
#[allow(dead_code)]
#[path = "support/flows.rs"]
mod flows;
#[allow(dead_code)]
#[path = "support/kernel.rs"]
mod kernel;
#[allow(dead_code)]
#[path = "support/nfcapd.rs"]
mod nfcapd;
#[allow(dead_code)]
#[path = "support/sender.rs"]
mod sender;
#[path = "../tests/support/trace_gen.rs"]
mod trace_gen;

use e2e::{measure, Case, Env};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    // `cargo test --benches` runs bench targets without `--bench`: skip.
    if !args.iter().any(|a| a == "--bench") {
        println!("query_e2e: run it with `cargo bench --bench query_e2e [-- --table]`");
        return Ok(());
    }
    anyhow::ensure!(
        nfcapd::available(),
        "nfcapd and nfdump are needed (apt-get install nfdump)"
    );
    let env = Env::from_env(env!("CARGO_BIN_EXE_flowy"))?;
    print_setting(&env);
    let cases = e2e::selected()
        .into_iter()
        .map(|name| e2e::case(&env, name))
        .collect::<anyhow::Result<Vec<Case>>>()?;
    if args.iter().any(|a| a == "--table") {
        let runs = std::env::var("FLOWY_E2E_RUNS")
            .ok()
            .and_then(|r| r.parse().ok())
            .unwrap_or(5usize)
            .max(1);
        println!("{runs} runs of each command, interleaved\n");
        e2e::table::run(&cases, runs, env.scratch.path())?;
    } else {
        criterion_mode(&env, &cases);
    }
    println!("\nafter: {}", busy_processes());
    Ok(())
}

/// Each command as one criterion benchmark, a run per iteration.
fn criterion_mode(env: &Env, cases: &[Case]) {
    let mut c = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(1))
        .configure_from_args();
    let stderr = env.scratch.path().join("stderr");
    for case in cases {
        let mut g = c.benchmark_group(&case.name);
        // Runs of seconds: one per sample, no linear ramp of iterations.
        g.sampling_mode(SamplingMode::Flat);
        for cmd in &case.cmds {
            g.bench_function(cmd.tool.as_str(), |b| {
                b.iter_custom(|iters| {
                    (0..iters)
                        .map(|_| match measure::run(cmd, &stderr) {
                            Ok(s) => s.wall,
                            Err(e) => panic!("{e:#}"),
                        })
                        .sum()
                })
            });
        }
        g.finish();
    }
    c.final_summary();
}

/// The binary, the tools' versions, the commit, and who else uses the CPU.
fn print_setting(env: &Env) {
    let sh = |cmd: &str| {
        std::process::Command::new("sh")
            .args(["-c", cmd])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    };
    println!("flowy: {}", env.flowy.display());
    println!(
        "commit: {} ({} files changed in the work tree)",
        sh(&format!(
            "git -C '{}' rev-parse --short HEAD",
            env.repo.display()
        )),
        sh(&format!(
            "git -C '{}' status --porcelain --untracked-files=no | wc -l",
            env.repo.display()
        ))
    );
    println!("nfdump: {}", sh("nfdump -V"));
    println!("cpus: {}; bench data: {}", sh("nproc"), env.data.display());
    println!("before: {}", busy_processes());
}

/// Processes that used above 20% of a CPU over their lifetime (`ps`'s
/// %CPU): a fuzzer holding one core shows as ~100%.
fn busy_processes() -> String {
    let out = std::process::Command::new("ps")
        .args(["-eo", "pcpu=,args=", "--sort=-pcpu"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let busy: Vec<String> = out
        .lines()
        .filter_map(|l| {
            let (cpu, comm) = l.trim().split_once(' ')?;
            let comm: String = comm.trim().chars().take(70).collect();
            (cpu.parse::<f64>().ok()? > 20.0).then(|| format!("[{comm}] {cpu}%"))
        })
        .collect();
    if busy.is_empty() {
        "no other process above 20% CPU".into()
    } else {
        format!("busy processes: {}", busy.join(", "))
    }
}
