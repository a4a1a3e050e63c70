//! `flowy check` over the shipped example queries and the test queries.

mod support;

use support::{flowy, repo, stderr};

fn flowy_files(dir: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(repo(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "flowy"))
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn every_example_query_compiles() {
    let files = flowy_files("config/queries");
    assert!(files.iter().any(|f| f.ends_with("http-download.flowy")));
    let mut args = vec!["check"];
    args.extend(files.iter().map(String::as_str));
    let o = flowy(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!o.stdout.is_empty());
}

#[test]
fn test_queries_compile() {
    let files: Vec<String> = flowy_files("tests/data")
        .into_iter()
        .filter(|f| !f.ends_with("broken.flowy"))
        .collect();
    for f in &files {
        let o = flowy(&["check", f]);
        assert!(o.status.success(), "{f}: {}", stderr(&o));
    }
}

#[test]
fn check_reports_errors_of_every_file() {
    let good = repo("tests/data/tcp-port80.flowy");
    let bad = repo("tests/data/broken.flowy");
    let o = flowy(&["check", good.to_str().unwrap(), bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(3));
    let err = stderr(&o);
    assert!(err.contains("broken.flowy:5:"), "{err}");
    assert!(err.contains("did you mean 'srcip'"), "{err}");
    assert!(
        !o.stdout.is_empty(),
        "the good query's plan is still printed"
    );
}

/// The `partition key:` line `flowy check` prints for one query file.
fn key_line(path: &str) -> String {
    let o = flowy(&["check", path]);
    assert!(o.status.success(), "{path}: {}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let keys: Vec<&str> = out
        .lines()
        .filter_map(|l| l.strip_prefix("partition key: "))
        .collect();
    assert_eq!(keys.len(), 1, "one key line per query:\n{out}");
    keys[0].to_string()
}

#[test]
fn check_prints_each_query_partition_key() {
    for (file, want) in [
        ("config/queries/http-download.flowy", "{srcip, dstip}"),
        ("config/queries/skype.flowy", "srcip"),
        ("config/queries/ipv6-failure.flowy", "srcip"),
        ("config/queries/syn-scan.flowy", "srcip"),
        ("config/queries/ssh-bruteforce.flowy", "srcip"),
        ("config/queries/dns-amplification.flowy", "dstip"),
        ("config/queries/lopsided-transfer.flowy", "{srcip, dstip}"),
        ("tests/data/udp-by-srcip.flowy", "srcip"),
        ("tests/data/tcp-busy-dstport.flowy", "dstport"),
        (
            "tests/data/tcp-port80.flowy",
            "any partition (every match is one record)",
        ),
    ] {
        let path = repo(file);
        assert_eq!(key_line(path.to_str().unwrap()), want, "{file}");
    }
    // Several files: one key line each, in order.
    let files = flowy_files("config/queries");
    let mut args = vec!["check"];
    args.extend(files.iter().map(String::as_str));
    let o = flowy(&args);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let keys = out
        .lines()
        .filter(|l| l.starts_with("partition key: "))
        .count();
    assert_eq!(keys, files.len(), "{out}");
}

#[test]
fn check_says_why_a_query_is_global() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("time-only.flowy");
    std::fs::write(
        &path,
        "grouper g { module m { srcip = srcip } }\nmerger M { branches A, B\n A < B }\nungroup U {}\nS branch A -> g -> M\nS branch B -> g -> M\nM -> U -> \"out\"\n",
    )
    .expect("write");
    assert_eq!(
        key_line(path.to_str().unwrap()),
        "global: merger 'M' relates A, B by time and comparisons only (no 'A.x = B.x' rule outside OR)"
    );
    // The published HTTP listing equates only A.srcip = B.dstip.
    let seed = repo("../shared/seed-listings/http-download.flowy");
    let line = key_line(seed.to_str().unwrap());
    assert!(
        line.starts_with("global: merger 'M' module 'm1' equates no key field"),
        "{line}"
    );
    assert!(
        line.contains("a swapped pair needs B.srcip = A.dstip too"),
        "{line}"
    );
}
