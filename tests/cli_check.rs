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
