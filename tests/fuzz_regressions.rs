//! Replays, on stable, what the fuzz targets run on nightly: every committed
//! seed in `fuzz/corpus/<target>/` and every crash found, kept in
//! `fuzz/regressions/<target>/`, through the same harness functions
//! (`flowy::fuzzing`).
//!
//! A harness panics when the code under test panics or breaks one of its
//! invariants. Seeds named `ok-*` are valid inputs and must decode to records
//! (or compile); seeds named `err-*` must be refused with an error.

use std::fs;
use std::path::{Path, PathBuf};

use flowy::fuzzing;

/// Outcome of one harness run, as far as this test needs it.
#[derive(Debug, PartialEq)]
enum Outcome {
    /// Records decoded / branches compiled.
    Accepted(usize),
    Refused,
}

/// A target's name and how to run its harness.
type Target = (&'static str, fn(&[u8]) -> Outcome);

const TARGETS: [Target; 10] = [
    ("collector", |d| {
        Outcome::Accepted(fuzzing::collector(d).len())
    }),
    ("flowtools", |d| outcome(fuzzing::flowtools(d))),
    ("pcap", |d| outcome(fuzzing::pcap(d))),
    ("ipfix_file", |d| outcome(fuzzing::ipfix_file(d))),
    ("jsonl", |d| outcome(fuzzing::jsonl(d))),
    ("nfcapd", |d| outcome(fuzzing::nfcapd(d))),
    ("nfdump_json", |d| outcome(fuzzing::nfdump_json(d))),
    ("goflow2", |d| outcome(fuzzing::goflow2(d))),
    ("cluster_batch", |d| outcome(fuzzing::cluster_batch(d))),
    ("query", |d| match fuzzing::query(d) {
        Ok(branches) => Outcome::Accepted(branches),
        Err(_) => Outcome::Refused,
    }),
];

fn outcome<T, E>(r: Result<Vec<T>, E>) -> Outcome {
    match r {
        Ok(records) => Outcome::Accepted(records.len()),
        Err(_) => Outcome::Refused,
    }
}

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// The files of `fuzz/<kind>/<target>/`, sorted; none if it is absent.
fn files(kind: &str, target: &str) -> Vec<PathBuf> {
    let Ok(dir) = fs::read_dir(fuzz_dir().join(kind).join(target)) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = dir
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    out
}

fn name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[test]
fn committed_seeds_replay_with_their_expected_outcome() {
    for (target, run) in TARGETS {
        let seeds = files("corpus", target);
        let valid = seeds.iter().filter(|p| name(p).starts_with("ok-")).count();
        assert!(valid > 0, "{target}: no valid seed in fuzz/corpus/{target}");
        for seed in &seeds {
            let data = fs::read(seed).expect("read seed");
            let got = run(&data);
            let n = name(seed);
            if n.starts_with("ok-") {
                assert!(
                    matches!(got, Outcome::Accepted(k) if k > 0),
                    "{target}/{n}: a valid seed gave {got:?}"
                );
            } else if n.starts_with("err-") {
                assert_eq!(got, Outcome::Refused, "{target}/{n}: must be refused");
            }
        }
    }
}

#[test]
fn every_crash_found_by_the_fuzzers_replays_without_a_panic() {
    let dir = fuzz_dir().join("regressions");
    // Every regression directory names a target (a typo would skip its files).
    for entry in fs::read_dir(&dir).expect("fuzz/regressions exists") {
        let path = entry.expect("dir entry").path();
        if !path.is_dir() {
            continue;
        }
        let target = name(&path);
        assert!(
            TARGETS.iter().any(|(t, _)| *t == target),
            "fuzz/regressions/{target} is not a fuzz target"
        );
    }
    for (target, run) in TARGETS {
        for case in files("regressions", target) {
            let data = fs::read(&case).expect("read regression");
            // The assertion is the harness itself: it panics on the bug.
            let _ = run(&data);
        }
    }
}

/// The collector input format splits into the datagrams it was built from,
/// so the seeds really are multi-datagram, multi-source sequences.
#[test]
fn collector_input_round_trips() {
    let a = [5u8, 0, 1, 2];
    let b = [9u8; 300];
    let bytes = fuzzing::collector_input(3, &[(2, 7, &a[..]), (1, 0, &b[..])]);
    let input = fuzzing::CollectorInput::new(&bytes);
    let parts: Vec<_> = input
        .map(|(from, adv, d)| (from, adv, d.to_vec()))
        .collect();
    assert_eq!(parts.len(), 2);
    assert_eq!((parts[0].1, parts[0].2.as_slice()), (7, &a[..]));
    assert_eq!((parts[1].1, parts[1].2.as_slice()), (0, &b[..]));
    assert_ne!(parts[0].0, parts[1].0, "two different sources");
}
