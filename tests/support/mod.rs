//! Helpers shared by the end-to-end tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// A file of the shared nfql traces. CI checks the repository out with
/// `shared/` beside it (`../shared` from the repository root); a developer's
/// worktree may sit deeper, so the nearest ancestor holding it wins.
pub fn trace(name: &str) -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    root.ancestors()
        .skip(1)
        .map(|dir| dir.join("shared/data/nfql-traces"))
        .find(|dir| dir.is_dir())
        .unwrap_or_else(|| root.join("../shared/data/nfql-traces"))
        .join(name)
}

/// An RFC 3339 time as epoch ms.
pub fn parse_ms(s: &str) -> i64 {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .expect("an RFC 3339 time");
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

/// A file of the repository (queries, fixtures).
pub fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

pub mod brute;
pub mod trace_gen;

use std::process::{Command, Output};

use brute::GroupSig;
use serde_json::Value as Json;

/// Run the real binary.
pub fn flowy(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flowy"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("the flowy binary runs")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The JSON lines of a successful run.
pub fn json_lines(o: &Output) -> Vec<Json> {
    assert!(o.status.success(), "flowy failed: {}", stderr(o));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("each output line is JSON"))
        .collect()
}

/// Epoch ms of an RFC 3339 output time.
pub fn ms(v: &Json) -> i64 {
    let s = v.as_str().expect("a time string");
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .expect("RFC 3339");
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

fn ip(v: &Json) -> Option<std::net::IpAddr> {
    v.as_str().map(|s| s.parse().expect("an address string"))
}

/// The group signatures of one output match.
pub fn match_sig(m: &Json) -> Vec<GroupSig> {
    m["groups"]
        .as_array()
        .expect("groups array")
        .iter()
        .map(|g| GroupSig {
            branch: g["branch"].as_str().expect("branch").to_string(),
            stime: ms(&g["stime"]),
            etime: ms(&g["etime"]),
            count: g["count"].as_u64().expect("count") as usize,
            srcip: ip(&g["fields"]["srcip"]),
            dstip: ip(&g["fields"]["dstip"]),
        })
        .collect()
}

/// Every match's signature, sorted (match order is not part of the answer).
pub fn match_sigs(lines: &[Json]) -> Vec<Vec<GroupSig>> {
    let mut v: Vec<Vec<GroupSig>> = lines.iter().map(match_sig).collect();
    v.sort();
    v
}
