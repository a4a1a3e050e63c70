//! The cases of the end-to-end bench (`benches/query_e2e.rs`): each is a
//! set of command lines over the same input, `flowy query` and, where
//! nfdump can express the query, `nfdump`.

pub mod archive;
pub mod flowtools;
pub mod measure;
pub mod table;
pub mod traces;

use std::path::{Path, PathBuf};

use anyhow::Context;
use measure::Cmd;

/// `1M`, `10M`, `100k`, `1.16M`: sizes as the case names carry them.
pub fn label(n: u64) -> String {
    match n {
        n if n >= 1_000_000 && n % 1_000_000 == 0 => format!("{}M", n / 1_000_000),
        n if n >= 1_000_000 => format!("{:.2}M", n as f64 / 1e6),
        n if n >= 1_000 && n % 1_000 == 0 => format!("{}k", n / 1_000),
        n => n.to_string(),
    }
}

/// Where things are: the binary under test, the repository, the data cache.
pub struct Env {
    pub flowy: PathBuf,
    pub repo: PathBuf,
    pub data: PathBuf,
    pub scratch: tempfile::TempDir,
}

impl Env {
    /// `FLOWY_BIN` (default: the binary cargo built with this bench) and
    /// `FLOWY_BENCH_DATA` (default: `target/bench-data`).
    pub fn from_env(flowy_default: &str) -> anyhow::Result<Env> {
        let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let flowy = std::env::var_os("FLOWY_BIN")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(flowy_default));
        anyhow::ensure!(flowy.is_file(), "no flowy binary at {}", flowy.display());
        let data = std::env::var_os("FLOWY_BENCH_DATA")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo.join("target/bench-data"));
        std::fs::create_dir_all(&data).with_context(|| format!("create {}", data.display()))?;
        let scratch = tempfile::Builder::new().prefix("flowy-e2e-").tempdir()?;
        Ok(Env {
            flowy,
            repo,
            data,
            scratch,
        })
    }

    fn query(&self, rel: &str) -> PathBuf {
        self.repo.join(rel)
    }

    /// `flowy query Q --input IN --no-records --output /dev/null`.
    fn flowy_query(&self, query: &Path, input: &Path) -> Cmd {
        Cmd::new("flowy", &self.flowy)
            .arg("query")
            .path_arg(query)
            .arg("--input")
            .path_arg(input)
            .arg("--no-records")
            .arg("--output")
            .arg("/dev/null")
    }
}

/// One row group of the table: commands over the same input.
pub struct Case {
    pub name: String,
    pub what: String,
    pub records: u64,
    pub cmds: Vec<Cmd>,
}

/// Every case, by name, in the order they run.
pub const CASES: [&str; 9] = [
    "filter-1M",
    "filter-10M",
    "http-1x",
    "http-10x",
    "merger-key-100k",
    "merger-key-1M",
    "merger-during-100k",
    "merger-during-1M",
    "library-1x",
];

/// The filter of the filter-only case, in nfdump's syntax.
pub const NFDUMP_FILTER: &str = "proto tcp and dst port 443";

/// Build (or find cached) the input of case `name` and its commands.
pub fn case(env: &Env, name: &str) -> anyhow::Result<Case> {
    let (kind, size) = name
        .rsplit_once('-')
        .with_context(|| format!("bad case name {name}"))?;
    match kind {
        "filter" => {
            let n = if size == "10M" { 10_000_000 } else { 1_000_000 };
            let a = archive::nfcapd_archive(&env.data, n)?;
            let q = env.query("benches/support/e2e/queries/tcp-443.flowy");
            let nfdump = |tool: &str, extra: &[&str]| {
                extra
                    .iter()
                    .fold(
                        Cmd::new(tool, "nfdump").arg("-R").path_arg(&a.dir),
                        |c, x| c.arg(*x),
                    )
                    .arg(NFDUMP_FILTER)
            };
            Ok(Case {
                name: name.into(),
                what: format!(
                    "filter only (TCP to port 443), nfcapd archive of {} files (v9 via UDP, LZ4)",
                    a.files
                ),
                records: a.records,
                cmds: vec![
                    env.flowy_query(&q, &a.dir),
                    nfdump("nfdump -o json", &["-o", "json"]),
                    nfdump("nfdump (line)", &[]),
                ],
            })
        }
        "http" => {
            let q = env.query("config/queries/http-download.flowy");
            let (input, copies) = if size == "10x" {
                (traces::http_dir(&env.data, 10)?, 10)
            } else {
                (traces::http_file(&env.data)?, 1)
            };
            Ok(Case {
                name: name.into(),
                what: format!(
                    "http-download.flowy, synthetic HTTP trace ×{copies} (flow-tools .ftz)"
                ),
                records: (traces::HTTP_RECORDS * copies) as u64,
                cmds: vec![env.flowy_query(&q, &input)],
            })
        }
        "library" => Ok(Case {
            name: name.into(),
            what: "each query of config/queries/ alone, synthetic HTTP trace (flow-tools .ftz)"
                .into(),
            records: traces::HTTP_RECORDS as u64,
            cmds: library_cmds(env, &traces::http_file(&env.data)?)?,
        }),
        _ => {
            // The plans of benches/merger_growth.rs, by their names there.
            let (plan, query) = match kind {
                "merger-key" => ("key+before", "merger-key-before.flowy"),
                "merger-during" => ("during", "merger-during.flowy"),
                _ => anyhow::bail!("unknown case {name}"),
            };
            let n = if size == "1M" { 1_000_000 } else { 100_000 };
            let input = traces::merger_file(&env.data, n)?;
            let q = env.query(&format!("benches/support/e2e/queries/{query}"));
            Ok(Case {
                name: name.into(),
                what: format!(
                    "merger `{plan}` plan, {} groups (one flow each, .ftz)",
                    label(n as u64)
                ),
                records: n as u64,
                cmds: vec![env.flowy_query(&q, &input)],
            })
        }
    }
}

/// `flowy query` of every `config/queries/*.flowy` over `input`, labelled
/// `flowy NAME`, in name order.
fn library_cmds(env: &Env, input: &Path) -> anyhow::Result<Vec<Cmd>> {
    let dir = env.query("config/queries");
    let mut queries: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("read {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "flowy"))
        .collect();
    queries.sort();
    Ok(queries
        .iter()
        .map(|q| {
            let name = q.file_stem().unwrap_or_default().to_string_lossy();
            let mut cmd = env.flowy_query(q, input);
            cmd.tool = format!("flowy {name}");
            cmd
        })
        .collect())
}

/// Names chosen by `FLOWY_E2E_CASES` (comma-separated substrings; default all).
pub fn selected() -> Vec<&'static str> {
    let want: Vec<String> = std::env::var("FLOWY_E2E_CASES")
        .unwrap_or_default()
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    CASES
        .into_iter()
        .filter(|c| want.is_empty() || want.iter().any(|w| c.contains(w.as_str())))
        .collect()
}
