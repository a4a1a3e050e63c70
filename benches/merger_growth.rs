//! How the merger's time grows from 100k to 1M groups, for every plan of
//! the `merger` bench, batch and streaming.
//!
//! This VM's speed drifts by up to half within minutes, so criterion's
//! separate per-size measurements can compare a fast 100k phase with a slow
//! 1M one (the `merger` bench gave 8× and 15× for the same code). Here each
//! round times five runs at 100k, one at 1M and five more at 100k, and the
//! growth is the median over rounds of 1M / mean(100k).
//!
//! `cargo bench --bench merger_growth [-- FILTER]`; `FLOWY_GROWTH_ROUNDS`
//! sets the rounds (default 7).

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use flowy::engine::Group;
use flowy::query::plan::Plan;

#[path = "support/merger_fixtures.rs"]
mod fixtures;
use fixtures::{groups, plans, run, run_streaming};

type Runner = fn(&Arc<Plan>, &[Arc<Group>]) -> usize;

fn main() {
    // `cargo test --benches` runs bench targets without `--bench`: skip.
    if !std::env::args().any(|a| a == "--bench") {
        println!("merger_growth: run it with `cargo bench --bench merger_growth`");
        return;
    }
    flowy::memory::tune_allocator();
    let rounds: usize = std::env::var("FLOWY_GROWTH_ROUNDS")
        .ok()
        .and_then(|x| x.parse().ok())
        .unwrap_or(7)
        .max(1);
    // cargo passes `--bench`; any other argument filters the plans.
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let small = groups(100_000);
    let big = groups(1_000_000);
    println!("plan           mode        100k ms    1M ms  growth (median, min–max over {rounds} rounds)");
    for (name, p) in plans() {
        if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        let runners: [(&str, Runner); 2] = [("batch", run), ("streaming", run_streaming)];
        for (mode, f) in runners {
            let r = growth(&p, &small, &big, f, rounds);
            println!(
                "{name:14} {mode:10} {:8.2} {:8.1}  {:5.2}× ({:.2}–{:.2})",
                r.small_ms, r.big_ms, r.median, r.min, r.max
            );
        }
    }
}

struct Growth {
    small_ms: f64,
    big_ms: f64,
    median: f64,
    min: f64,
    max: f64,
}

fn growth(
    p: &Arc<Plan>,
    small: &[Arc<Group>],
    big: &[Arc<Group>],
    f: Runner,
    rounds: usize,
) -> Growth {
    let time = |gs: &[Arc<Group>], reps: usize| {
        let t = Instant::now();
        for _ in 0..reps {
            black_box(f(p, gs));
        }
        t.elapsed().as_secs_f64() * 1e3 / reps as f64
    };
    time(small, 1);
    time(big, 1);
    let mut smalls = Vec::new();
    let mut bigs = Vec::new();
    let mut ratios = Vec::new();
    for _ in 0..rounds {
        let before = time(small, 5);
        let b = time(big, 1);
        let s = (before + time(small, 5)) / 2.0;
        smalls.push(s);
        bigs.push(b);
        ratios.push(b / s);
    }
    Growth {
        small_ms: median(&mut smalls),
        big_ms: median(&mut bigs),
        min: ratios.iter().copied().fold(f64::INFINITY, f64::min),
        max: ratios.iter().copied().fold(0.0, f64::max),
        median: median(&mut ratios),
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}
