//! Daemon configuration (SPEC §4.2): embedded defaults, an optional TOML file,
//! `FLOWY__SECTION__KEY` environment overrides and command-line overrides,
//! merged in that order and validated into typed values.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use config::{Config, Environment, File, FileFormat};
use serde::Deserialize;

pub use crate::engine::LatePolicy;
use crate::output::rotate::{PathTemplate, Target, CONVERSIONS};
use crate::value::Prefix;

/// The configuration compiled into the binary (also the documented example).
pub const DEFAULT_TOML: &str = include_str!("../../config/flowy.toml");

/// The query pattern of the embedded configuration; when it matches nothing
/// the daemon falls back to the embedded example queries.
pub const DEFAULT_QUERY_GLOB: &str = "config/queries/*.flowy";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    // Not a `#[source]`: the message already says it, and `{:#}` would
    // print it a second time.
    #[error("configuration: {0}")]
    Load(config::ConfigError),
    #[error("configuration key `{key}`: {message}")]
    Invalid { key: String, message: String },
}

impl From<config::ConfigError> for ConfigError {
    fn from(e: config::ConfigError) -> Self {
        ConfigError::Load(e)
    }
}

fn invalid(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        message: message.into(),
    }
}

/// Values given on the command line; each replaces the configured one.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub config: Option<PathBuf>,
    pub listen: Vec<String>,
    pub query: Vec<PathBuf>,
    pub output: Option<String>,
    /// `--partitions A-B`: `cluster.worker_partitions`.
    pub partitions: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    Address,
    AddressPort,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Json,
    Text,
    Csv,
}

#[derive(Clone, Debug, PartialEq)]
pub struct CollectorSettings {
    pub listen: Vec<SocketAddr>,
    pub sockets: usize,
    pub recv_buffer: usize,
    pub template_scope: Scope,
    pub apply_sampling: bool,
    pub template_store: Option<PathBuf>,
    pub max_pending: usize,
    pub max_exporters: usize,
    pub queue: usize,
    /// Source prefixes whose datagrams are decoded; empty = any (§4.5).
    pub allow: Vec<Prefix>,
    /// ms ahead of the host clock beyond which a record time is implausible.
    pub max_future: i64,
    /// ms without a datagram after which an exporter is forgotten; `None`
    /// = never.
    pub exporter_idle: Option<i64>,
}

/// The decoder's global state budget (SPEC §4.5).
#[derive(Clone, Debug, PartialEq)]
pub struct DecoderSettings {
    /// Bytes for templates, layouts and held data of all exporters.
    pub max_state: usize,
    /// ms after which held data for an unknown template is dropped.
    pub pending_ttl: i64,
}

/// What the output does when its queue is full (SPEC §4.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WhenFull {
    /// Backpressure: the pipeline waits, the kernel drops datagrams.
    Block,
    /// Matches are dropped and counted.
    Drop,
}

#[derive(Clone, Debug, PartialEq)]
pub struct DaemonSettings {
    /// ms SIGTERM may spend draining before it gives up.
    pub shutdown_timeout: i64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct EngineSettings {
    /// ms; `None` = infinite.
    pub lateness: Option<i64>,
    pub window: Option<i64>,
    pub horizon: Option<i64>,
    pub idle_advance: i64,
    pub late: LatePolicy,
    pub max_open_groups: usize,
    pub max_stored_groups: usize,
    pub max_reorder: usize,
    pub channel_capacity: usize,
    /// Bytes of all engine state together (§3.2).
    pub max_state: usize,
}

/// Where the query files come from.
#[derive(Clone, Debug, PartialEq)]
pub enum QuerySource {
    /// Glob patterns from `queries.paths`.
    Globs(Vec<String>),
    /// Files named with `--query` (each must exist).
    Files(Vec<PathBuf>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct OutputSettings {
    pub path: String,
    pub format: Format,
    pub records: bool,
    /// Records written per match at most (the rest are counted).
    pub max_records: usize,
    /// Bytes the output queue may hold.
    pub buffer: usize,
    pub when_full: WhenFull,
    /// Rotation interval in ms (`path` is then a strftime template).
    pub rotate: Option<i64>,
}

impl OutputSettings {
    /// Where the sink writes.
    pub fn target(&self) -> Target {
        Target {
            path: self.path.clone(),
            rotate: self.rotate,
        }
    }

    /// How metrics and logs name the sink: its path (template), or "stdout".
    pub fn label(&self) -> &str {
        if self.path == "-" {
            "stdout"
        } else {
            &self.path
        }
    }
}

/// The validated daemon configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    pub collector: CollectorSettings,
    pub decoder: DecoderSettings,
    pub engine: EngineSettings,
    pub queries: QuerySource,
    pub output: OutputSettings,
    /// Queries with a sink of their own (`[queries.NAME.output]`), by name;
    /// the others write to `output`.
    pub query_outputs: BTreeMap<String, OutputSettings>,
    /// `None` = metrics disabled.
    pub metrics_listen: Option<SocketAddr>,
    pub log_level: String,
    pub daemon: DaemonSettings,
    pub cluster: ClusterSettings,
}

/// What this process is in a flowy cluster (SPEC §5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Standalone,
    Collector,
    Worker,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ClusterSettings {
    pub role: Role,
    pub nats: String,
    pub stream: String,
    pub partitions: u32,
    /// Inclusive range; `None` = every partition.
    /// Inclusive range; `None` = claimed through leases.
    pub worker_partitions: Option<(u32, u32)>,
    pub collector_id: u16,
    /// ms a worker's claim on a partition lasts without renewal.
    pub lease: i64,
    /// This worker's name in leases ("" in the file: host name and pid).
    pub worker_id: String,
    /// Worker: also publish every match to `flowy.matches.<query>`.
    pub publish_matches: bool,
    pub batch: usize,
    pub max_inflight: usize,
}

/// A duration or size: TOML integer or a string with a unit.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
enum Human {
    Int(i64),
    Str(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCollector {
    listen: Vec<String>,
    sockets: i64,
    recv_buffer: Human,
    template_scope: String,
    apply_sampling: bool,
    template_store: String,
    max_pending: i64,
    max_exporters: i64,
    queue: i64,
    allow: Vec<String>,
    max_future: Human,
    exporter_idle: Human,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDecoder {
    max_state: Human,
    pending_ttl: Human,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDaemon {
    shutdown_timeout: Human,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEngine {
    lateness: Human,
    window: Human,
    horizon: Human,
    idle_advance: Human,
    late: String,
    max_open_groups: i64,
    max_stored_groups: i64,
    max_reorder: i64,
    channel_capacity: i64,
    max_state: Human,
}

#[derive(Debug, Deserialize)]
struct RawQueries {
    paths: Vec<String>,
    /// `[queries.NAME]` tables: checked by hand, for messages that name
    /// the query (serde cannot deny unknown fields next to a flatten).
    #[serde(flatten)]
    each: HashMap<String, config::Value>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOutput {
    path: String,
    format: String,
    records: bool,
    max_records: u64,
    buffer: Human,
    when_full: String,
    rotate: Human,
}

/// A query's own output: each key absent falls back to `[output]`'s.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQueryOutput {
    path: Option<String>,
    format: Option<String>,
    records: Option<bool>,
    max_records: Option<u64>,
    buffer: Option<Human>,
    when_full: Option<String>,
    rotate: Option<Human>,
}

impl RawQueryOutput {
    fn over(self, base: &RawOutput) -> RawOutput {
        let b = base.clone();
        RawOutput {
            path: self.path.unwrap_or(b.path),
            format: self.format.unwrap_or(b.format),
            records: self.records.unwrap_or(b.records),
            max_records: self.max_records.unwrap_or(b.max_records),
            buffer: self.buffer.unwrap_or(b.buffer),
            when_full: self.when_full.unwrap_or(b.when_full),
            rotate: self.rotate.unwrap_or(b.rotate),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    listen: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    level: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCluster {
    role: String,
    nats: String,
    stream: String,
    partitions: i64,
    worker_partitions: String,
    collector_id: i64,
    lease: Human,
    worker_id: String,
    publish_matches: bool,
    batch: i64,
    max_inflight: i64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    collector: RawCollector,
    decoder: RawDecoder,
    engine: RawEngine,
    queries: RawQueries,
    output: RawOutput,
    metrics: RawMetrics,
    log: RawLog,
    daemon: RawDaemon,
    cluster: RawCluster,
}

/// Load the configuration from the process environment.
pub fn load(overrides: &Overrides) -> Result<Settings, ConfigError> {
    load_with_env(overrides, None)
}

/// Load with an explicit environment map (`None` = the process environment);
/// the map form keeps tests independent of the real environment.
pub fn load_with_env(
    overrides: &Overrides,
    env: Option<HashMap<String, String>>,
) -> Result<Settings, ConfigError> {
    let mut builder = Config::builder().add_source(File::from_str(DEFAULT_TOML, FileFormat::Toml));
    if let Some(path) = &overrides.config {
        builder = builder.add_source(File::from(path.as_path()).format(FileFormat::Toml));
    }
    let env_source = Environment::with_prefix("FLOWY")
        .separator("__")
        .try_parsing(true)
        .list_separator(",")
        .with_list_parse_key("collector.listen")
        .with_list_parse_key("collector.allow")
        .with_list_parse_key("queries.paths")
        .source(env);
    let raw: Raw = builder.add_source(env_source).build()?.try_deserialize()?;
    let mut settings = validate(raw)?;
    apply_overrides(&mut settings, overrides)?;
    check_sinks(&settings)?;
    Ok(settings)
}

fn apply_overrides(s: &mut Settings, o: &Overrides) -> Result<(), ConfigError> {
    if !o.listen.is_empty() {
        s.collector.listen = parse_addrs("--listen", &o.listen)?;
    }
    if !o.query.is_empty() {
        s.queries = QuerySource::Files(o.query.clone());
    }
    if let Some(out) = &o.output {
        s.output.path = out.clone();
        // `--output FILE` names one file: a configured rotation applies
        // only to a path that varies with time.
        let varies = PathTemplate::parse(out).is_ok_and(|t| t.varies());
        if !varies {
            s.output.rotate = None;
        }
    }
    if let Some(p) = &o.partitions {
        s.cluster.worker_partitions =
            parse_partitions(p, s.cluster.partitions).map_err(|m| invalid("--partitions", m))?;
    }
    Ok(())
}

fn validate(raw: Raw) -> Result<Settings, ConfigError> {
    let query_outputs = validate_query_outputs(raw.queries.each, &raw.output)?;
    Ok(Settings {
        collector: validate_collector(raw.collector)?,
        decoder: validate_decoder(raw.decoder)?,
        engine: validate_engine(raw.engine)?,
        queries: validate_queries(raw.queries.paths)?,
        output: validate_output(raw.output, "output")?,
        query_outputs,
        metrics_listen: parse_optional_addr("metrics.listen", &raw.metrics.listen)?,
        log_level: raw.log.level,
        daemon: DaemonSettings {
            shutdown_timeout: duration("daemon.shutdown_timeout", &raw.daemon.shutdown_timeout)?,
        },
        cluster: validate_cluster(raw.cluster)?,
    })
}

fn validate_cluster(c: RawCluster) -> Result<ClusterSettings, ConfigError> {
    let role = match c.role.as_str() {
        "standalone" => Role::Standalone,
        "collector" => Role::Collector,
        "worker" => Role::Worker,
        other => {
            return Err(invalid(
                "cluster.role",
                format!("\"{other}\": expected \"standalone\", \"collector\" or \"worker\""),
            ))
        }
    };
    let partitions = u32::try_from(c.partitions)
        .ok()
        .filter(|p| (1..=4096).contains(p))
        .ok_or_else(|| invalid("cluster.partitions", "must be 1 to 4096"))?;
    let worker_partitions = parse_partitions(&c.worker_partitions, partitions)
        .map_err(|m| invalid("cluster.worker_partitions", m))?;
    let collector_id = u16::try_from(c.collector_id)
        .map_err(|_| invalid("cluster.collector_id", "must be 0 to 65535"))?;
    if c.stream.is_empty() || c.stream.contains(['.', '*', '>', ' ']) {
        return Err(invalid(
            "cluster.stream",
            "a JetStream stream name: not empty, without '.', '*', '>' or spaces",
        ));
    }
    let positive = |key, v: i64| {
        usize::try_from(v)
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| invalid(key, "must be positive"))
    };
    let lease = duration("cluster.lease", &c.lease)?;
    if lease < 1_000 {
        return Err(invalid("cluster.lease", "must be at least 1s"));
    }
    let worker_id = if c.worker_id.is_empty() {
        default_worker_id()
    } else if c.worker_id.contains(char::is_whitespace) {
        return Err(invalid("cluster.worker_id", "must not contain spaces"));
    } else {
        c.worker_id
    };
    Ok(ClusterSettings {
        lease,
        worker_id,
        publish_matches: c.publish_matches,
        role,
        nats: c.nats,
        stream: c.stream,
        partitions,
        worker_partitions,
        collector_id,
        batch: positive("cluster.batch", c.batch)
            .ok()
            .filter(|b| *b <= MAX_BATCH)
            .ok_or_else(|| invalid("cluster.batch", format!("must be 1 to {MAX_BATCH}")))?,
        max_inflight: positive("cluster.max_inflight", c.max_inflight)?,
    })
}

/// Records per published message at most: a message stays well within
/// NATS's default 1 MiB payload, and a batch's count within its u32.
const MAX_BATCH: usize = 16_384;

/// Host name and process id: unique among running workers.
fn default_worker_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().replace(char::is_whitespace, "_"))
        .unwrap_or_else(|_| "worker".into());
    format!("{host}-{}", std::process::id())
}

/// `"A-B"`, `"A"` or `""` (claimed through leases), within `0..partitions`.
pub fn parse_partitions(s: &str, partitions: u32) -> Result<Option<(u32, u32)>, String> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    let num = |t: &str| {
        t.trim()
            .parse::<u32>()
            .map_err(|_| format!("\"{s}\": expected A-B or A (partition numbers)"))
    };
    let (a, b) = match s.split_once('-') {
        Some((a, b)) => (num(a)?, num(b)?),
        None => (num(s)?, num(s)?),
    };
    if a > b || b >= partitions {
        return Err(format!(
            "\"{s}\": partitions are 0 to {} (cluster.partitions = {partitions})",
            partitions - 1
        ));
    }
    Ok(Some((a, b)))
}

fn validate_decoder(d: RawDecoder) -> Result<DecoderSettings, ConfigError> {
    Ok(DecoderSettings {
        max_state: size("decoder.max_state", &d.max_state)?,
        pending_ttl: duration("decoder.pending_ttl", &d.pending_ttl)?,
    })
}

/// A duration that must be finite.
fn duration(key: &str, v: &Human) -> Result<i64, ConfigError> {
    optional_duration(key, v)?.ok_or_else(|| invalid(key, "must be a duration, not \"none\""))
}

fn validate_collector(c: RawCollector) -> Result<CollectorSettings, ConfigError> {
    let listen = parse_addrs("collector.listen", &c.listen)?;
    if listen.is_empty() {
        return Err(invalid(
            "collector.listen",
            "at least one address is needed",
        ));
    }
    let template_scope = match c.template_scope.as_str() {
        "address" => Scope::Address,
        "address+port" => Scope::AddressPort,
        other => {
            return Err(invalid(
                "collector.template_scope",
                format!("'{other}' is not \"address\" or \"address+port\""),
            ))
        }
    };
    let store = c.template_store.trim();
    Ok(CollectorSettings {
        listen,
        sockets: positive("collector.sockets", c.sockets, 1024)?,
        recv_buffer: size("collector.recv_buffer", &c.recv_buffer)?,
        template_scope,
        apply_sampling: c.apply_sampling,
        template_store: (!store.is_empty()).then(|| PathBuf::from(store)),
        max_pending: positive("collector.max_pending", c.max_pending, usize::MAX)?,
        max_exporters: positive("collector.max_exporters", c.max_exporters, usize::MAX)?,
        queue: positive("collector.queue", c.queue, 1 << 24)?,
        allow: c
            .allow
            .iter()
            .map(|p| p.trim())
            .filter(|p| !p.is_empty())
            .map(|p| p.parse().map_err(|m| invalid("collector.allow", m)))
            .collect::<Result<_, _>>()?,
        max_future: duration("collector.max_future", &c.max_future)?,
        exporter_idle: match optional_duration("collector.exporter_idle", &c.exporter_idle)? {
            Some(0) => {
                return Err(invalid(
                    "collector.exporter_idle",
                    "must be positive (or \"none\")",
                ))
            }
            v => v,
        },
    })
}

fn validate_engine(e: RawEngine) -> Result<EngineSettings, ConfigError> {
    let late: LatePolicy = e.late.parse().map_err(|why| invalid("engine.late", why))?;
    let window = optional_duration("engine.window", &e.window)?;
    if window == Some(0) {
        return Err(invalid("engine.window", "must be positive (or \"none\")"));
    }
    let idle_advance = optional_duration("engine.idle_advance", &e.idle_advance)?
        .ok_or_else(|| invalid("engine.idle_advance", "must be a duration"))?;
    Ok(EngineSettings {
        lateness: optional_duration("engine.lateness", &e.lateness)?,
        window,
        horizon: optional_duration("engine.horizon", &e.horizon)?,
        idle_advance,
        late,
        max_open_groups: positive("engine.max_open_groups", e.max_open_groups, usize::MAX)?,
        max_stored_groups: positive("engine.max_stored_groups", e.max_stored_groups, usize::MAX)?,
        max_reorder: positive("engine.max_reorder", e.max_reorder, usize::MAX)?,
        channel_capacity: positive("engine.channel_capacity", e.channel_capacity, 1 << 20)?,
        max_state: size("engine.max_state", &e.max_state)?,
    })
}

fn validate_queries(paths: Vec<String>) -> Result<QuerySource, ConfigError> {
    let paths: Vec<String> = paths
        .into_iter()
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect();
    for p in &paths {
        glob::Pattern::new(p)
            .map_err(|e| invalid("queries.paths", format!("bad pattern '{p}': {e}")))?;
    }
    Ok(QuerySource::Globs(paths))
}

fn validate_output(o: RawOutput, prefix: &str) -> Result<OutputSettings, ConfigError> {
    let key = |k: &str| format!("{prefix}.{k}");
    let format = match o.format.as_str() {
        "json" => Format::Json,
        "text" => Format::Text,
        "csv" => Format::Csv,
        other => {
            return Err(invalid(
                &key("format"),
                format!("'{other}' is not \"json\", \"text\" or \"csv\""),
            ))
        }
    };
    if o.path.trim().is_empty() {
        return Err(invalid(&key("path"), "empty (use \"-\" for stdout)"));
    }
    let when_full = match o.when_full.as_str() {
        "block" => WhenFull::Block,
        "drop" => WhenFull::Drop,
        other => {
            return Err(invalid(
                &key("when_full"),
                format!("'{other}' is not \"block\" or \"drop\""),
            ))
        }
    };
    if o.max_records == 0 {
        return Err(invalid(&key("max_records"), "must be at least 1"));
    }
    let rotate = optional_duration(&key("rotate"), &o.rotate)?;
    if rotate.is_some_and(|ms| ms < 1_000) {
        return Err(invalid(&key("rotate"), "must be at least 1s (or \"none\")"));
    }
    Ok(OutputSettings {
        path: o.path,
        format,
        records: o.records,
        max_records: usize::try_from(o.max_records).unwrap_or(usize::MAX),
        buffer: size(&key("buffer"), &o.buffer)?,
        when_full,
        rotate,
    })
}

/// `[queries.NAME]` tables: `output = "PATH"` or an `output` table with
/// the keys of `[output]`, each absent one taken from `[output]`.
fn validate_query_outputs(
    each: HashMap<String, config::Value>,
    base: &RawOutput,
) -> Result<BTreeMap<String, OutputSettings>, ConfigError> {
    let mut out = BTreeMap::new();
    for (name, value) in each {
        let prefix = format!("queries.{name}");
        let mut table = value.into_table().map_err(|_| {
            invalid(
                &prefix,
                "expected a table naming the query's output ([queries.NAME] output = \"PATH\"); \
                 query files are listed in queries.paths",
            )
        })?;
        let output = table
            .remove("output")
            .ok_or_else(|| invalid(&prefix, "expected an `output` key"))?;
        if let Some(other) = table.keys().next() {
            return Err(invalid(
                &format!("{prefix}.{other}"),
                "unknown key (a query's table holds `output`)",
            ));
        }
        let prefix = format!("{prefix}.output");
        let part = match output.kind {
            config::ValueKind::String(path) => RawQueryOutput {
                path: Some(path),
                ..RawQueryOutput::default()
            },
            config::ValueKind::Table(_) => output
                .try_deserialize::<RawQueryOutput>()
                .map_err(|e| invalid(&prefix, e.to_string()))?,
            _ => {
                return Err(invalid(
                    &prefix,
                    "expected a path or a table with the keys of [output]",
                ))
            }
        };
        out.insert(name, validate_output(part.over(base), &prefix)?);
    }
    Ok(out)
}

/// Every sink: a rotation needs a path that varies with time and a path
/// with conversions needs a rotation; no two sinks share a path.
fn check_sinks(s: &Settings) -> Result<(), ConfigError> {
    let sinks = std::iter::once(("output".to_string(), &s.output)).chain(
        s.query_outputs
            .iter()
            .map(|(name, o)| (format!("queries.{name}.output"), o)),
    );
    let mut seen: Vec<(String, &str)> = Vec::new();
    for (prefix, o) in sinks {
        check_rotation(&prefix, o)?;
        if let Some((first, _)) = seen.iter().find(|(_, p)| *p == o.path) {
            return Err(invalid(
                &format!("{prefix}.path"),
                format!(
                    "'{}' is also {first}.path: every sink needs a file of its own \
                     (a query without its own output writes to [output])",
                    o.path
                ),
            ));
        }
        seen.push((prefix, &o.path));
    }
    Ok(())
}

fn check_rotation(prefix: &str, o: &OutputSettings) -> Result<(), ConfigError> {
    let key = format!("{prefix}.path");
    match o.rotate {
        Some(_) if o.path == "-" => Err(invalid(
            &format!("{prefix}.rotate"),
            "stdout cannot rotate: name a file",
        )),
        Some(_) => match PathTemplate::parse(&o.path) {
            Err(e) => Err(invalid(&key, format!("'{}': {e}", o.path))),
            Ok(t) if !t.varies() => Err(invalid(
                &key,
                format!(
                    "'{}' has no time conversion, so {prefix}.rotate would write one file; \
                     use e.g. %Y%m%d-%H%M (known: {CONVERSIONS})",
                    o.path
                ),
            )),
            Ok(_) => Ok(()),
        },
        None if o.path.contains('%') => Err(invalid(
            &key,
            format!(
                "'{}' holds '%' conversions but {prefix}.rotate is not set; \
                 set it (e.g. rotate = \"5m\") or leave '%' out of the path",
                o.path
            ),
        )),
        None => Ok(()),
    }
}

fn parse_addrs(key: &str, list: &[String]) -> Result<Vec<SocketAddr>, ConfigError> {
    list.iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<SocketAddr>()
                .map_err(|e| invalid(key, format!("'{s}' is not an IP:port address: {e}")))
        })
        .collect()
}

fn parse_optional_addr(key: &str, s: &str) -> Result<Option<SocketAddr>, ConfigError> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    s.parse()
        .map(Some)
        .map_err(|e| invalid(key, format!("'{s}' is not an IP:port address: {e}")))
}

fn positive(key: &str, v: i64, max: usize) -> Result<usize, ConfigError> {
    match usize::try_from(v) {
        Ok(n) if n >= 1 && n <= max => Ok(n),
        _ => Err(invalid(key, format!("{v} is not in 1..={max}"))),
    }
}

fn size(key: &str, v: &Human) -> Result<usize, ConfigError> {
    let bytes = match v {
        Human::Int(n) => u64::try_from(*n).map_err(|_| invalid(key, "negative size"))?,
        Human::Str(s) => parse_size(s).map_err(|m| invalid(key, m))?,
    };
    usize::try_from(bytes).map_err(|_| invalid(key, "size too large"))
}

fn optional_duration(key: &str, v: &Human) -> Result<Option<i64>, ConfigError> {
    match v {
        Human::Int(n) if *n >= 0 => Ok(Some(*n)),
        Human::Int(n) => Err(invalid(key, format!("negative duration {n}"))),
        Human::Str(s) => parse_duration(s).map_err(|m| invalid(key, m)),
    }
}

/// Split "8MiB" into (8, "MiB"); the unit may be separated by spaces.
fn split_number(s: &str) -> Result<(u64, &str), String> {
    let s = s.trim();
    let end = s
        .find(|c: char| !c.is_ascii_digit() && c != '_')
        .unwrap_or(s.len());
    let digits: String = s[..end].chars().filter(|c| *c != '_').collect();
    let n = digits
        .parse::<u64>()
        .map_err(|_| format!("'{s}' does not start with a number"))?;
    Ok((n, s[end..].trim()))
}

/// A duration in ms; `None` for "none"/"off"/"infinite".
pub fn parse_duration(s: &str) -> Result<Option<i64>, String> {
    if matches!(s.trim(), "none" | "off" | "infinite") {
        return Ok(None);
    }
    let (n, unit) = split_number(s)?;
    let mult: u64 = match unit {
        "" | "ms" => 1,
        "s" | "sec" => 1_000,
        "m" | "min" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        other => return Err(format!("unknown duration unit '{other}' in '{s}'")),
    };
    n.checked_mul(mult)
        .and_then(|v| i64::try_from(v).ok())
        .map(Some)
        .ok_or_else(|| format!("duration '{s}' is too large"))
}

/// A size in bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let (n, unit) = split_number(s)?;
    let mult: u64 = match unit {
        "" | "B" => 1,
        "KB" | "kB" | "K" | "k" => 1_000,
        "MB" | "M" => 1_000_000,
        "GB" | "G" => 1_000_000_000,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        other => return Err(format!("unknown size unit '{other}' in '{s}'")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size '{s}' is too large"))
}

impl Settings {
    /// True when the query source is the embedded default pattern, which is
    /// the only case where the built-in examples may stand in for files.
    pub fn uses_default_queries(&self) -> bool {
        matches!(&self.queries, QuerySource::Globs(g) if g.len() == 1 && g[0] == DEFAULT_QUERY_GLOB)
    }
}

/// Paths the query source names, sorted (stable across reloads).
pub fn query_files(source: &QuerySource) -> Result<Vec<PathBuf>, ConfigError> {
    match source {
        QuerySource::Files(files) => Ok(files.clone()),
        QuerySource::Globs(patterns) => {
            let mut out = Vec::new();
            for p in patterns {
                let paths = glob::glob(p)
                    .map_err(|e| invalid("queries.paths", format!("bad pattern '{p}': {e}")))?;
                out.extend(paths.filter_map(Result::ok).filter(|p| is_file(p)));
            }
            out.sort();
            out.dedup();
            Ok(out)
        }
    }
}

fn is_file(p: &Path) -> bool {
    p.metadata().map(|m| m.is_file()).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Option<HashMap<String, String>> {
        Some(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    fn load_env(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        load_with_env(&Overrides::default(), env(pairs))
    }

    #[test]
    fn embedded_defaults_match_the_spec() {
        let s = load_env(&[]).expect("embedded config is valid");
        assert_eq!(
            s.collector.listen,
            vec!["0.0.0.0:2055".parse::<SocketAddr>().expect("literal")]
        );
        assert_eq!(s.collector.sockets, 1);
        assert_eq!(s.collector.recv_buffer, 8 << 20);
        assert_eq!(s.collector.template_scope, Scope::Address);
        assert!(!s.collector.apply_sampling);
        assert_eq!(s.collector.template_store, None);
        assert_eq!(s.engine.lateness, Some(60_000));
        assert_eq!(s.engine.window, Some(300_000));
        assert_eq!(s.engine.horizon, Some(300_000));
        assert_eq!(s.engine.idle_advance, 10_000);
        assert_eq!(s.engine.late, LatePolicy::Process);
        assert_eq!(s.engine.max_open_groups, 1_000_000);
        assert_eq!(s.engine.max_stored_groups, 1_000_000);
        assert!(s.uses_default_queries());
        assert_eq!(s.output.path, "-");
        assert_eq!(s.output.format, Format::Json);
        assert!(s.output.records);
        assert_eq!(s.output.max_records, 10_000);
        assert_eq!(
            s.metrics_listen,
            Some("127.0.0.1:9555".parse().expect("lit"))
        );
        assert_eq!(s.log_level, "info");
        assert!(s.collector.allow.is_empty());
        assert_eq!(s.collector.max_future, 600_000);
        assert_eq!(s.collector.exporter_idle, Some(86_400_000));
        assert_eq!(s.decoder.max_state, 256 << 20);
        assert_eq!(s.decoder.pending_ttl, 60_000);
        assert_eq!(s.engine.max_state, 2 << 30);
        assert_eq!(s.output.buffer, 64 << 20);
        assert_eq!(s.output.when_full, WhenFull::Block);
        assert_eq!(s.daemon.shutdown_timeout, 30_000);
    }

    #[test]
    fn hostile_input_keys_parse_and_reject_nonsense() {
        let s = load_env(&[
            (
                "FLOWY__COLLECTOR__ALLOW",
                "10.0.0.0/8,2001:db8::/32,192.0.2.7",
            ),
            ("FLOWY__OUTPUT__WHEN_FULL", "drop"),
            ("FLOWY__DECODER__MAX_STATE", "1MiB"),
        ])
        .expect("valid");
        let allow: Vec<String> = s.collector.allow.iter().map(|p| p.to_string()).collect();
        assert_eq!(allow, ["10.0.0.0/8", "2001:db8::/32", "192.0.2.7/32"]);
        assert_eq!(s.output.when_full, WhenFull::Drop);
        assert_eq!(s.decoder.max_state, 1 << 20);
        for (key, value, named) in [
            ("FLOWY__COLLECTOR__ALLOW", "10.0.0.0/33", "collector.allow"),
            ("FLOWY__OUTPUT__WHEN_FULL", "wait", "output.when_full"),
            (
                "FLOWY__DAEMON__SHUTDOWN_TIMEOUT",
                "none",
                "daemon.shutdown_timeout",
            ),
        ] {
            let err = load_env(&[(key, value)]).expect_err(value);
            assert!(err.to_string().contains(named), "{err}");
        }
    }

    #[test]
    fn environment_overrides_keys() {
        let s = load_env(&[
            ("FLOWY__ENGINE__LATENESS", "90s"),
            ("FLOWY__ENGINE__LATE", "drop"),
            ("FLOWY__ENGINE__MAX_OPEN_GROUPS", "12"),
            ("FLOWY__COLLECTOR__LISTEN", "127.0.0.1:1,127.0.0.1:2"),
            ("FLOWY__OUTPUT__RECORDS", "false"),
            ("FLOWY__METRICS__LISTEN", ""),
        ])
        .expect("valid overrides");
        assert_eq!(s.engine.lateness, Some(90_000));
        assert_eq!(s.engine.late, LatePolicy::Drop);
        assert_eq!(s.engine.max_open_groups, 12);
        assert_eq!(s.collector.listen.len(), 2);
        assert!(!s.output.records);
        assert_eq!(s.metrics_listen, None);
    }

    #[test]
    fn file_then_cli_overrides() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f.toml");
        std::fs::write(
            &path,
            "[engine]\nwindow = \"none\"\n[output]\npath = \"/tmp/x.jsonl\"\nformat = \"text\"\n",
        )
        .expect("write");
        let o = Overrides {
            config: Some(path),
            listen: vec!["127.0.0.1:0".into()],
            query: vec![PathBuf::from("q.flowy")],
            output: Some("-".into()),
            partitions: None,
        };
        let s = load_with_env(&o, env(&[])).expect("valid");
        assert_eq!(s.engine.window, None);
        assert_eq!(s.output.format, Format::Text);
        assert_eq!(s.output.path, "-");
        assert_eq!(
            s.collector.listen,
            vec!["127.0.0.1:0".parse().expect("lit")]
        );
        assert_eq!(
            s.queries,
            QuerySource::Files(vec![PathBuf::from("q.flowy")])
        );
    }

    #[test]
    fn exporter_idle_may_be_none() {
        let s = load_env(&[("FLOWY__COLLECTOR__EXPORTER_IDLE", "none")]).expect("valid");
        assert_eq!(s.collector.exporter_idle, None);
        let s = load_env(&[("FLOWY__COLLECTOR__EXPORTER_IDLE", "2s")]).expect("valid");
        assert_eq!(s.collector.exporter_idle, Some(2_000));
    }

    #[test]
    fn csv_is_an_output_format() {
        let s = load_env(&[("FLOWY__OUTPUT__FORMAT", "csv")]).expect("valid");
        assert_eq!(s.output.format, Format::Csv);
    }

    #[test]
    fn errors_name_the_key() {
        let cases = [
            ("FLOWY__ENGINE__LATENESS", "ten seconds", "engine.lateness"),
            (
                "FLOWY__COLLECTOR__EXPORTER_IDLE",
                "0",
                "collector.exporter_idle",
            ),
            ("FLOWY__ENGINE__LATE", "keep", "engine.late"),
            (
                "FLOWY__COLLECTOR__RECV_BUFFER",
                "8XB",
                "collector.recv_buffer",
            ),
            ("FLOWY__COLLECTOR__LISTEN", "nowhere", "collector.listen"),
            ("FLOWY__COLLECTOR__SOCKETS", "0", "collector.sockets"),
            ("FLOWY__OUTPUT__FORMAT", "xml", "output.format"),
            ("FLOWY__OUTPUT__MAX_RECORDS", "0", "output.max_records"),
            ("FLOWY__METRICS__LISTEN", "localhost", "metrics.listen"),
            ("FLOWY__OUTPUT__RECORDS", "maybe", "records"),
        ];
        for (k, v, key) in cases {
            let err = load_env(&[(k, v)]).expect_err(k).to_string();
            assert!(err.contains(key), "{k}={v}: '{err}' does not name {key}");
        }
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f.toml");
        std::fs::write(&path, "[engine]\nlatenes = \"1s\"\n").expect("write");
        let o = Overrides {
            config: Some(path),
            ..Overrides::default()
        };
        let err = load_with_env(&o, env(&[])).expect_err("typo").to_string();
        assert!(err.contains("latenes"), "{err}");
    }

    fn load_file(text: &str) -> Result<Settings, ConfigError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f.toml");
        std::fs::write(&path, text).expect("write");
        let o = Overrides {
            config: Some(path),
            ..Overrides::default()
        };
        load_with_env(&o, env(&[]))
    }

    #[test]
    fn query_outputs_fall_back_to_output() {
        let s = load_file(
            "[output]\nformat = \"csv\"\nrecords = false\n\
             [queries.http-download]\noutput = \"/tmp/http.jsonl\"\n\
             [queries.skype.output]\npath = \"/tmp/s/%Y%m%d-%H%M%S.txt\"\nformat = \"text\"\nrotate = \"2s\"\n",
        )
        .expect("valid");
        assert!(s.uses_default_queries());
        let http = &s.query_outputs["http-download"];
        assert_eq!(http.path, "/tmp/http.jsonl");
        assert_eq!(http.format, Format::Csv);
        assert!(!http.records);
        assert_eq!(http.rotate, None);
        let skype = &s.query_outputs["skype"];
        assert_eq!(skype.format, Format::Text);
        assert_eq!(skype.rotate, Some(2_000));
        assert_eq!(skype.buffer, s.output.buffer);
        assert_eq!(s.query_outputs.len(), 2);
        assert_eq!(s.output.rotate, None);
    }

    #[test]
    fn rotation_and_sink_paths_are_checked() {
        let cases = [
            (
                "[output]\npath = \"/tmp/m.jsonl\"\nrotate = \"5m\"\n",
                "output.path",
                "no time conversion",
            ),
            (
                "[output]\npath = \"/tmp/m-%H.jsonl\"\n",
                "output.path",
                "rotate is not set",
            ),
            (
                "[output]\npath = \"/tmp/m-%Q.jsonl\"\nrotate = \"1h\"\n",
                "output.path",
                "unknown conversion '%Q'",
            ),
            (
                "[output]\nrotate = \"1h\"\n",
                "output.rotate",
                "stdout cannot rotate",
            ),
            (
                "[output]\npath = \"/tmp/m-%S\"\nrotate = \"500ms\"\n",
                "output.rotate",
                "at least 1s",
            ),
            (
                "[queries.a]\noutput = \"-\"\n",
                "queries.a.output.path",
                "also output.path",
            ),
            (
                "[queries.a.output]\nformat = \"csv\"\n",
                "queries.a.output.path",
                "also output.path",
            ),
            (
                "[queries.a.output]\npth = \"/tmp/x\"\n",
                "queries.a.output",
                "pth",
            ),
            ("[queries.a]\nsink = \"/tmp/x\"\n", "queries.a", "output"),
            (
                "[queries.a.output]\npath = \"/tmp/a-%M\"\n",
                "queries.a.output.path",
                "rotate is not set",
            ),
            (
                "[queries.a.output]\nformat = \"xml\"\npath = \"/tmp/a\"\n",
                "queries.a.output.format",
                "xml",
            ),
        ];
        for (text, key, says) in cases {
            let err = load_file(text).expect_err(text).to_string();
            assert!(err.contains(key) && err.contains(says), "{text}: {err}");
        }
        // --output replaces the path; a fixed file does not rotate.
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f.toml");
        std::fs::write(&path, "[output]\npath = \"/tmp/m-%H%M\"\nrotate = \"5m\"\n")
            .expect("write");
        let o = Overrides {
            config: Some(path),
            output: Some("-".into()),
            ..Overrides::default()
        };
        let s = load_with_env(&o, env(&[])).expect("valid");
        assert_eq!((s.output.path.as_str(), s.output.rotate), ("-", None));
    }

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("60s"), Ok(Some(60_000)));
        assert_eq!(parse_duration("5m"), Ok(Some(300_000)));
        assert_eq!(parse_duration("1 h"), Ok(Some(3_600_000)));
        assert_eq!(parse_duration("250ms"), Ok(Some(250)));
        assert_eq!(parse_duration("1_000"), Ok(Some(1_000)));
        assert_eq!(parse_duration("none"), Ok(None));
        assert!(parse_duration("5 fortnights").is_err());
        assert!(parse_duration("99999999999999999999s").is_err());
        assert_eq!(parse_size("8MiB"), Ok(8 << 20));
        assert_eq!(parse_size("2 KB"), Ok(2_000));
        assert_eq!(parse_size("4096"), Ok(4_096));
        assert!(parse_size("MiB").is_err());
    }
}
