//! Loading the query set (at start and on SIGHUP) and deciding which running
//! queries a new set keeps, restarts or retires.
//!
//! Everything is read and compiled before anything changes: a reload either
//! replaces the set as a whole or leaves it untouched.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::query::compile_source;
use crate::query::plan::Plan;

use super::config::{query_files, ConfigError, QuerySource, Settings};

/// Example queries compiled into the binary, used when the default query
/// pattern matches nothing (the daemon started outside the source tree):
/// the same set as `config/queries/`, so that a daemon runs the same
/// detections wherever it starts.
pub const EMBEDDED_QUERIES: &[(&str, &str)] = &[
    (
        "http-download",
        include_str!("../../config/queries/http-download.flowy"),
    ),
    (
        "ipv6-failure",
        include_str!("../../config/queries/ipv6-failure.flowy"),
    ),
    ("skype", include_str!("../../config/queries/skype.flowy")),
    (
        "syn-scan",
        include_str!("../../config/queries/syn-scan.flowy"),
    ),
    (
        "ssh-bruteforce",
        include_str!("../../config/queries/ssh-bruteforce.flowy"),
    ),
    (
        "dns-amplification",
        include_str!("../../config/queries/dns-amplification.flowy"),
    ),
    (
        "lopsided-transfer",
        include_str!("../../config/queries/lopsided-transfer.flowy"),
    ),
];

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot read query file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no query files match {0:?} (queries.paths)")]
    NoQueries(Vec<String>),
    #[error("two query files are named '{name}': {first} and {second}")]
    Duplicate {
        name: String,
        first: String,
        second: String,
    },
    #[error("configuration key `queries.{name}`: no query is named '{name}'{hint}; the queries are: {known}")]
    UnknownQuery {
        name: String,
        /// ` (did you mean 'x'?)` or empty.
        hint: String,
        known: String,
    },
    /// Every diagnostic of every failing file, rustc-style.
    #[error("query compilation failed:\n{0}")]
    Compile(String),
}

/// One query's text, before compiling.
#[derive(Clone, Debug, PartialEq)]
pub struct QueryText {
    pub name: String,
    /// How diagnostics name the file.
    pub label: String,
    pub source: String,
}

#[derive(Clone, Debug)]
pub struct Compiled {
    pub text: QueryText,
    pub plan: Arc<Plan>,
}

/// The query's name: its file name without the extension.
fn stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// Read the query texts the settings name. The second value is true when
/// the embedded examples stand in for an empty default pattern.
pub fn read_texts(settings: &Settings) -> Result<(Vec<QueryText>, bool), LoadError> {
    let files = query_files(&settings.queries)?;
    if files.is_empty() {
        if settings.uses_default_queries() {
            return Ok((embedded(), true));
        }
        let patterns = match &settings.queries {
            QuerySource::Globs(g) => g.clone(),
            QuerySource::Files(f) => f.iter().map(|p| p.display().to_string()).collect(),
        };
        return Err(LoadError::NoQueries(patterns));
    }
    let mut seen: HashMap<String, String> = HashMap::new();
    let mut out = Vec::with_capacity(files.len());
    for path in files {
        let source = std::fs::read_to_string(&path).map_err(|source| LoadError::Io {
            path: path.clone(),
            source,
        })?;
        let text = QueryText {
            name: stem(&path),
            label: path.display().to_string(),
            source,
        };
        if let Some(first) = seen.insert(text.name.clone(), text.label.clone()) {
            return Err(LoadError::Duplicate {
                name: text.name,
                first,
                second: text.label,
            });
        }
        out.push(text);
    }
    Ok((out, false))
}

pub fn embedded() -> Vec<QueryText> {
    EMBEDDED_QUERIES
        .iter()
        .map(|(name, source)| QueryText {
            name: name.to_string(),
            label: format!("<built-in>/{name}.flowy"),
            source: source.to_string(),
        })
        .collect()
}

/// Compile every text; fail with all diagnostics of all files if any fails.
pub fn compile_all(texts: Vec<QueryText>) -> Result<Vec<Compiled>, LoadError> {
    let mut errors = Vec::new();
    let mut out = Vec::with_capacity(texts.len());
    for text in texts {
        match compile_source(&text.name, &text.label, &text.source) {
            Ok(plan) => out.push(Compiled {
                text,
                plan: Arc::new(plan),
            }),
            Err(d) => errors.push(d.to_string()),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(LoadError::Compile(errors.join("\n")))
    }
}

/// Read and compile the whole set.
pub fn load(settings: &Settings) -> Result<(Vec<Compiled>, bool), LoadError> {
    let (texts, fallback) = read_texts(settings)?;
    check_query_outputs(settings, &texts)?;
    Ok((compile_all(texts)?, fallback))
}

/// Every `[queries.NAME]` must name a query of the set.
fn check_query_outputs(settings: &Settings, texts: &[QueryText]) -> Result<(), LoadError> {
    let names: Vec<&str> = texts.iter().map(|t| t.name.as_str()).collect();
    for name in settings.query_outputs.keys() {
        if names.contains(&name.as_str()) {
            continue;
        }
        let hint = crate::query::suggest::did_you_mean(name, names.iter().copied())
            .map(|h| format!(" ({h})"))
            .unwrap_or_default();
        return Err(LoadError::UnknownQuery {
            name: name.clone(),
            hint,
            known: names.join(", "),
        });
    }
    Ok(())
}

/// How a new set relates to the running one, by index.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Diff {
    /// Running queries kept as they are (same name, same source text).
    pub keep: Vec<usize>,
    /// Running queries to finish (removed or changed).
    pub retire: Vec<usize>,
    /// New queries to start (added or changed).
    pub start: Vec<usize>,
}

/// Compare (name, source) pairs of the running and the new set.
pub fn diff(running: &[(&str, &str)], new: &[(&str, &str)]) -> Diff {
    let mut d = Diff::default();
    for (i, (name, source)) in running.iter().enumerate() {
        if new.iter().any(|(n, s)| n == name && s == source) {
            d.keep.push(i);
        } else {
            d.retire.push(i);
        }
    }
    for (j, (name, source)) in new.iter().enumerate() {
        if !running.iter().any(|(n, s)| n == name && s == source) {
            d.start.push(j);
        }
    }
    d
}

/// What a reload does with a changed setting it cannot simply apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Bound at start (sockets, decoder, watermark, queue): next restart.
    Restart,
    /// Per query: the queries this reload starts take it, kept ones do not.
    NewQueries,
}

/// Changed settings a reload does not apply everywhere, by key. Output
/// format, records, path and policy, and the shutdown timeout, are applied
/// by the reload and not listed.
pub fn unapplied(old: &Settings, new: &Settings) -> Vec<(&'static str, Effect)> {
    use Effect::*;
    let (c, n) = (&old.collector, &new.collector);
    let (e, f) = (&old.engine, &new.engine);
    let checks: [(&'static str, bool, Effect); 23] = [
        ("collector.listen", c.listen != n.listen, Restart),
        ("collector.sockets", c.sockets != n.sockets, Restart),
        (
            "collector.recv_buffer",
            c.recv_buffer != n.recv_buffer,
            Restart,
        ),
        (
            "collector.template_scope",
            c.template_scope != n.template_scope,
            Restart,
        ),
        (
            "collector.apply_sampling",
            c.apply_sampling != n.apply_sampling,
            Restart,
        ),
        (
            "collector.template_store",
            c.template_store != n.template_store,
            Restart,
        ),
        ("collector.allow", c.allow != n.allow, Restart),
        (
            "collector.exporter_idle",
            c.exporter_idle != n.exporter_idle,
            Restart,
        ),
        (
            "collector.max_future",
            c.max_future != n.max_future,
            Restart,
        ),
        ("decoder", old.decoder != new.decoder, Restart),
        ("engine.lateness", e.lateness != f.lateness, Restart),
        (
            "engine.idle_advance",
            e.idle_advance != f.idle_advance,
            Restart,
        ),
        ("engine.late", e.late != f.late, Restart),
        ("engine.window", e.window != f.window, NewQueries),
        ("engine.horizon", e.horizon != f.horizon, NewQueries),
        (
            "engine.max_open_groups",
            e.max_open_groups != f.max_open_groups,
            NewQueries,
        ),
        (
            "engine.max_stored_groups",
            e.max_stored_groups != f.max_stored_groups,
            NewQueries,
        ),
        (
            "engine.max_reorder",
            e.max_reorder != f.max_reorder,
            NewQueries,
        ),
        ("engine.max_state", e.max_state != f.max_state, NewQueries),
        (
            "engine.channel_capacity",
            e.channel_capacity != f.channel_capacity,
            NewQueries,
        ),
        (
            "output.buffer",
            old.output.buffer != new.output.buffer,
            Restart,
        ),
        (
            "metrics.listen",
            old.metrics_listen != new.metrics_listen,
            Restart,
        ),
        ("log.level", old.log_level != new.log_level, Restart),
    ];
    checks
        .into_iter()
        .filter(|(_, changed, _)| *changed)
        .map(|(key, _, effect)| (key, effect))
        .collect()
}

/// Log one warning per changed key the reload does not fully apply.
pub fn warn_unapplied(old: &Settings, new: &Settings, kept: usize) {
    for (key, effect) in unapplied(old, new) {
        match effect {
            Effect::Restart => {
                tracing::warn!("{key} changed: a reload cannot apply it; it takes effect at the next restart")
            }
            Effect::NewQueries => tracing::warn!(
                "{key} changed: queries started by this reload use it; {kept} unchanged queries keep the old value until they change or the daemon restarts"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unapplied_names_each_changed_key() {
        let old = settings_with(QuerySource::Globs(vec!["x".into()]));
        let mut new = old.clone();
        assert!(unapplied(&old, &new).is_empty());
        new.engine.lateness = Some(1);
        new.engine.window = Some(1);
        new.output.format = super::super::config::Format::Text;
        new.output.path = "elsewhere".into();
        assert_eq!(
            unapplied(&old, &new),
            vec![
                ("engine.lateness", Effect::Restart),
                ("engine.window", Effect::NewQueries)
            ]
        );
    }

    #[test]
    fn diff_keeps_unchanged_restarts_changed_retires_removed() {
        let running = [("a", "x"), ("b", "y"), ("c", "z")];
        let new = [("a", "x"), ("b", "y2"), ("d", "w")];
        let d = diff(&running, &new);
        assert_eq!(d.keep, vec![0]);
        assert_eq!(d.retire, vec![1, 2]);
        assert_eq!(d.start, vec![1, 2]);
    }

    #[test]
    fn embedded_queries_compile() {
        let compiled = compile_all(embedded()).expect("built-in queries compile");
        assert_eq!(compiled.len(), EMBEDDED_QUERIES.len());
        assert!(compiled.iter().any(|c| c.plan.name == "http-download"));
    }

    /// The fallback runs what the default pattern would have found.
    #[test]
    fn embedded_queries_are_the_query_directory() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/queries");
        let mut on_disk: Vec<(String, String)> = std::fs::read_dir(&dir)
            .expect("config/queries")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|x| x == "flowy"))
            .map(|p| {
                let name = p.file_stem().expect("stem").to_string_lossy().into_owned();
                (name, std::fs::read_to_string(&p).expect("query text"))
            })
            .collect();
        on_disk.sort();
        let mut built_in: Vec<(String, String)> = EMBEDDED_QUERIES
            .iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect();
        built_in.sort();
        assert_eq!(built_in, on_disk);
    }

    #[test]
    fn duplicate_stems_are_rejected() {
        let dir = tempfile::tempdir().expect("tempdir");
        for sub in ["one", "two"] {
            std::fs::create_dir(dir.path().join(sub)).expect("mkdir");
            std::fs::write(dir.path().join(sub).join("q.flowy"), "").expect("write");
        }
        let settings = settings_with(QuerySource::Globs(vec![format!(
            "{}/*/q.flowy",
            dir.path().display()
        )]));
        let err = read_texts(&settings).expect_err("duplicate");
        assert!(matches!(err, LoadError::Duplicate { .. }), "{err}");
    }

    #[test]
    fn empty_custom_pattern_is_an_error() {
        let settings = settings_with(QuerySource::Globs(vec!["/nonexistent/*.flowy".into()]));
        let err = read_texts(&settings).expect_err("nothing matches");
        assert!(err.to_string().contains("queries.paths"), "{err}");
    }

    fn settings_with(queries: QuerySource) -> Settings {
        let mut s = super::super::config::load_with_env(&Default::default(), Some(HashMap::new()))
            .expect("defaults");
        s.queries = queries;
        s
    }
}
