//! The table mode: every command of every case run `runs` times,
//! interleaved (run 1 of each command, then run 2, …) so that a slow phase
//! of the shared machine hits all of them alike; median wall, median CPU
//! (user + sys), peak RSS (largest over the runs), and each tool's own
//! count of what it read and matched.

use std::path::Path;
use std::process::Command;

use anyhow::Context;

use super::measure::{self, Cmd, Sample};
use super::{Case, NFDUMP_FILTER};

/// Measure every case and print the table and the commands.
pub fn run(cases: &[Case], runs: usize, scratch: &Path) -> anyhow::Result<()> {
    println!("| case | records | tool | wall s (median, min–max) | CPU s | CPU/wall | peak RSS MB | records/s | tool says |");
    println!("|---|---:|---|---|---:|---:|---:|---:|---|");
    for case in cases {
        let samples = measure_case(case, runs, scratch)?;
        for (cmd, (ss, said)) in case.cmds.iter().zip(samples) {
            print_row(case, cmd, &ss, &said);
        }
    }
    println!();
    for case in cases {
        println!("{} — {}:", case.name, case.what);
        for cmd in &case.cmds {
            println!("    {cmd}");
        }
    }
    Ok(())
}

type Measured = (Vec<Sample>, String);

fn measure_case(case: &Case, runs: usize, scratch: &Path) -> anyhow::Result<Vec<Measured>> {
    let mut out: Vec<Measured> = case
        .cmds
        .iter()
        .map(|_| (Vec::new(), String::new()))
        .collect();
    let stderr = |i: usize| scratch.join(format!("stderr-{i}"));
    for _ in 0..runs {
        for (i, cmd) in case.cmds.iter().enumerate() {
            out[i].0.push(measure::run(cmd, &stderr(i))?);
        }
    }
    for (i, cmd) in case.cmds.iter().enumerate() {
        out[i].1 = what_it_said(cmd, &stderr(i), case)?;
    }
    Ok(out)
}

/// flowy: its summary line (records read, matches); nfdump: the flows its
/// filter matched, counted in a separate, unmeasured run.
fn what_it_said(cmd: &Cmd, stderr: &Path, case: &Case) -> anyhow::Result<String> {
    if cmd.tool == "flowy" || cmd.tool.starts_with("flowy ") {
        let text = std::fs::read_to_string(stderr)?;
        // SPEC §3.1's summary line; a reworded one is shown, not checked.
        let Some(summary) = text.lines().rfind(|l| l.starts_with("flowy query:")) else {
            return Ok("(no summary line)".into());
        };
        let read = summary
            .split(", ")
            .find_map(|p| p.strip_suffix(" records read"))
            .and_then(|n| n.parse::<u64>().ok());
        let Some(read) = read else {
            return Ok(summary.to_string());
        };
        anyhow::ensure!(
            read == case.records,
            "`{cmd}` read {read} records, the input holds {}: {summary}",
            case.records
        );
        let matches = summary
            .split(", ")
            .find(|p| p.ends_with(" matches"))
            .unwrap_or("? matches");
        return Ok(matches.to_string());
    }
    let dir = cmd
        .args
        .iter()
        .skip_while(|a| *a != "-R")
        .nth(1)
        .context("nfdump command without -R")?;
    let out = Command::new("nfdump")
        .arg("-R")
        .arg(dir)
        .args(["-q", "-o", "fmt:%ts", NFDUMP_FILTER])
        .output()
        .context("nfdump count")?;
    let n = out.stdout.iter().filter(|&&b| b == b'\n').count();
    Ok(format!("{n} flows matched"))
}

fn print_row(case: &Case, cmd: &Cmd, ss: &[Sample], said: &str) {
    let walls: Vec<f64> = ss.iter().map(|s| s.wall.as_secs_f64()).collect();
    let cpus: Vec<f64> = ss.iter().map(|s| s.cpu.as_secs_f64()).collect();
    let (lo, hi) = walls
        .iter()
        .fold((f64::INFINITY, 0f64), |(l, h), &w| (l.min(w), h.max(w)));
    let wall = measure::median(walls);
    let cpu = measure::median(cpus);
    let rss = ss.iter().map(|s| s.max_rss_kib).max().unwrap_or(0) as f64 / 1024.0;
    println!(
        "| {} | {} | {} | {wall:.2} ({lo:.2}–{hi:.2}) | {cpu:.2} | {:.2} | {rss:.0} | {:.2} M | {said} |",
        case.name,
        super::label(case.records),
        cmd.tool,
        cpu / wall,
        case.records as f64 / wall / 1e6,
    );
}
