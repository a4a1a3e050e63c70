//! The README documents every metric family a running daemon exposes, and
//! names none that the code does not have.

#[path = "daemon_support/mod.rs"]
mod support;

use std::collections::BTreeSet;
use std::path::Path;

use support::daemon::Daemon;
use support::netflow::{http_session, now_ms, v5};

/// Metric names (`flowy_…`, `process_…`) in `text`; a trailing `*`
/// (`flowy_pending_*`) is kept.
fn names(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for prefix in ["flowy_", "process_"] {
        let mut rest = text;
        while let Some(at) = rest.find(prefix) {
            let tail = &rest[at..];
            let end = tail
                .find(|c: char| !(c.is_ascii_lowercase() || c == '_' || c == '*'))
                .unwrap_or(tail.len());
            // `process_` inside a longer word is not a metric name.
            let word_start = at == 0 || {
                let b = rest.as_bytes()[at - 1];
                !(b.is_ascii_alphanumeric() || b == b'_')
            };
            if word_start && end > prefix.len() {
                out.insert(tail[..end].to_string());
            }
            rest = &tail[end.max(1)..];
        }
    }
    out
}

/// The metric family of a sample name (a histogram's `_bucket`, `_sum` and
/// `_count` series belong to the histogram; no other flowy metric ends so).
fn family(sample: &str) -> &str {
    let name = sample.split('{').next().unwrap_or(sample);
    ["_bucket", "_sum", "_count"]
        .iter()
        .find_map(|s| name.strip_suffix(s))
        .unwrap_or(name)
}

fn documented(readme: &BTreeSet<String>, fam: &str) -> bool {
    readme.contains(fam)
        || readme
            .iter()
            .filter_map(|n| n.strip_suffix('*'))
            .any(|prefix| fam.starts_with(prefix))
}

/// The metric families of a running daemon that has seen traffic, a
/// malformed datagram and an implausible record (so that the labelled
/// families have series).
fn exposed_families() -> BTreeSet<String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = Daemon::start(dir.path(), &[], &[]);
    let t0 = now_ms() - 120_000;
    d.send(&v5(
        now_ms(),
        0,
        &http_session("10.9.0.1", 40_000, "192.0.2.80", t0),
    ));
    let future = now_ms() + 86_400_000;
    // An exporter whose clock is a day ahead: every record implausible.
    d.send(&v5(
        future,
        2,
        &http_session("10.9.0.2", 40_001, "192.0.2.80", future - 5_000),
    ));
    d.send(&[0, 5, 0]);
    d.wait_processed(2);
    d.wait_until(
        "implausible records counted",
        std::time::Duration::from_secs(10),
        |d| d.metric("flowy_records_implausible_total", "") > 0.0,
    );
    // The decode thread publishes its samples at most every 50 ms: wait
    // for the malformed datagram's error series too.
    d.wait_until(
        "decode error counted",
        std::time::Duration::from_secs(10),
        |d| d.metric("flowy_decode_errors_total", "") > 0.0,
    );
    d.scrape().keys().map(|k| family(k).to_string()).collect()
}

#[test]
fn every_metric_the_grafana_dashboard_queries_is_exposed() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(root.join("config/grafana/flowy.json")).expect("dashboard");
    let dash: serde_json::Value = serde_json::from_str(&text).expect("dashboard JSON");
    let panels = dash["panels"].as_array().expect("panels");
    let mut queried = BTreeSet::new();
    for p in panels {
        for t in p["targets"].as_array().expect("targets") {
            queried.extend(names(t["expr"].as_str().expect("expr")));
        }
    }
    assert!(queried.len() >= 20, "{queried:?}");
    let exposed = exposed_families();
    let missing: Vec<&String> = queried
        .iter()
        .filter(|q| !exposed.contains(family(q)))
        .collect();
    assert!(
        missing.is_empty(),
        "queried by the dashboard, not exposed: {missing:?}"
    );
}

/// The first metric name in a table cell (the one in its first backquotes).
fn first_name(cell: &str) -> Option<String> {
    let quoted = cell.split('`').nth(1)?;
    names(quoted).into_iter().next()
}

/// The README's "Renamed in this version" table: its rows, and the README
/// without them (the old names are gone from the code).
fn rename_table(readme: &str) -> (Vec<(String, Option<String>)>, String) {
    let Some(at) = readme.find("*Renamed in this version*") else {
        return (Vec::new(), readme.to_string());
    };
    let mut rest = readme[..at].to_string();
    let mut rows = Vec::new();
    // Only the first table after the heading: later tables stay checked.
    let mut table_over = false;
    for line in readme[at..].lines() {
        if line.starts_with('|') && !table_over {
            let mut cells = line.split('|').skip(1);
            if let (Some(old), Some(new)) = (cells.next(), cells.next()) {
                if let Some(old) = first_name(old) {
                    rows.push((old, first_name(new)));
                }
            }
            continue;
        }
        table_over |= !rows.is_empty();
        rest.push_str(line);
        rest.push('\n');
    }
    (rows, rest)
}

fn readme() -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(root.join("README.md")).expect("README")
}

/// The README without its rename table.
fn readme_text() -> String {
    rename_table(&readme()).1
}

#[test]
fn renamed_metrics_are_gone_and_their_successors_exposed() {
    let (table, _) = rename_table(&readme());
    assert!(table.len() >= 8, "{table:?}");
    let exposed = exposed_families();
    for (old, new) in &table {
        // A row whose name stays (only its labels changed) is not a rename.
        if new.as_ref() != Some(old) {
            assert!(!exposed.contains(old), "{old} is still exposed");
        }
        // Cluster families exist on cluster members only.
        if let Some(new) = new.as_ref().filter(|n| !n.starts_with("flowy_cluster_")) {
            assert!(exposed.contains(new), "{new} (for {old}) is not exposed");
        }
    }
}

#[test]
fn every_exposed_metric_is_in_the_readme() {
    let readme = names(&readme_text());
    let exposed = exposed_families();
    assert!(exposed.len() > 40, "{exposed:?}");
    let missing: Vec<&String> = exposed.iter().filter(|f| !documented(&readme, f)).collect();
    assert!(
        missing.is_empty(),
        "exposed but not in the README: {missing:?}"
    );
}

#[test]
fn every_metric_the_readme_names_exists_in_the_code() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = names(&readme_text());
    let mut code = String::new();
    let mut dirs = vec![root.join("src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("src dir").flatten() {
            let p = entry.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|e| e == "rs") {
                code.push_str(&std::fs::read_to_string(&p).expect("source"));
            }
        }
    }
    let unknown: Vec<&String> = readme
        .iter()
        .filter(|n| !code.contains(n.trim_end_matches('*')))
        .collect();
    assert!(
        unknown.is_empty(),
        "named in the README, not in the code: {unknown:?}"
    );
}
