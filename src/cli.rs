//! Command-line interface: argument definitions and the handlers of the
//! four commands (SPEC §4.1). `main.rs` only parses and calls [`run`].

mod batch;
mod firstpass;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::engine::LatePolicy;
use crate::input::InputFormat;
use crate::output::OutputFormat;

#[derive(Debug, Parser)]
#[command(
    name = "flowy",
    version,
    about = "Stream-based flow queries over NetFlow v5/v9 and IPFIX",
    after_help = "Examples:
  flowy serve --config /etc/flowy/flowy.toml
  flowy serve --check-config --config /etc/flowy/flowy.toml
  flowy query config/queries/http-download.flowy --input /var/cache/nfdump --from 2026-12-04T07:00:00Z
  flowy check config/queries/*.flowy
  flowy completions bash > /etc/bash_completion.d/flowy

Exit codes: 0 success, 1 runtime failure, 2 usage error, 3 a query does not compile."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon (defaults: UDP 2055, the queries of config/queries/, stdout).
    Serve(ServeArgs),
    /// Run a query once over flow files.
    Query(QueryArgs),
    /// Compile queries and print each one's plan and partition key.
    Check(CheckArgs),
    /// Send the UDP payloads of a capture of exports to a collector.
    Replay(ReplayArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions {
        #[arg(value_name = "SHELL")]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), generated from these definitions.
    Man,
}

/// `flowy serve`: flags given here replace the configured values.
#[derive(Debug, Clone, Default, Args)]
pub struct ServeArgs {
    /// Configuration file (TOML); without it the embedded defaults apply.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// UDP address to collect on (repeatable).
    #[arg(long, value_name = "ADDR")]
    pub listen: Vec<String>,
    /// Query file to run (repeatable).
    #[arg(long, value_name = "FILE")]
    pub query: Vec<PathBuf>,
    /// Output path; `-` is stdout.
    #[arg(long, value_name = "FILE")]
    pub output: Option<String>,
    /// Cluster worker: the partitions to consume, A-B or A
    /// (cluster.worker_partitions).
    #[arg(long, value_name = "A-B")]
    pub partitions: Option<String>,
    /// Load the configuration and compile the queries, print what would
    /// run, and exit (no socket is bound, no file is opened).
    #[arg(long)]
    pub check_config: bool,
}

/// `flowy query`.
#[derive(Debug, Clone, Args)]
pub struct QueryArgs {
    /// The query file.
    #[arg(value_name = "QUERY")]
    pub query: PathBuf,
    /// Flow files, directories of rotated flow files (nfcapd.*, ft-v05.*,
    /// in rotation order, recursively) or `-` for standard input, read in
    /// order as one input; gzip-compressed content is recognised.
    #[arg(long, value_name = "PATH", required = true, num_args = 1..)]
    pub input: Vec<PathBuf>,
    /// pcap, ipfix, flow-tools, nfcapd, jsonl, nfdump-json or goflow2
    /// (default: detect from content).
    #[arg(long, value_name = "F")]
    pub input_format: Option<InputFormat>,
    /// Keep records with stime >= T (RFC 3339 or epoch ms).
    #[arg(long, value_name = "T", value_parser = parse_time)]
    pub from: Option<i64>,
    /// Keep records with stime < T (RFC 3339 or epoch ms).
    #[arg(long, value_name = "T", value_parser = parse_time)]
    pub to: Option<i64>,
    /// Output path; `-` is stdout, a file is replaced.
    #[arg(long, value_name = "FILE", default_value = "-")]
    pub output: String,
    /// json (JSON Lines), text, or csv (one row per record of a match).
    #[arg(long, value_name = "F", default_value = "json")]
    pub format: OutputFormat,
    /// Tumbling window length (`5m`, `300s`, `1h`; bare numbers are ms).
    #[arg(long, value_name = "D", value_parser = parse_duration)]
    pub window: Option<i64>,
    /// Records more than D behind the latest stime read are late (see
    /// --late); memory then follows D. Default: exact, the disorder is
    /// measured by a first pass over the input.
    #[arg(long, value_name = "D", value_parser = parse_duration)]
    pub lateness: Option<i64>,
    /// Late records: process (out of order) or drop.
    #[arg(long, value_name = "P", default_value = "process")]
    pub late: LatePolicy,
    /// Leave the records out of each match.
    #[arg(long)]
    pub no_records: bool,
    /// At most N records per match; a match with more carries the first N
    /// and "records_omitted".
    #[arg(long, value_name = "N", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_records: u64,
}

/// `flowy check`.
#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    /// Query files.
    #[arg(value_name = "QUERY", required = true)]
    pub queries: Vec<PathBuf>,
}

/// `flowy replay`.
#[derive(Debug, Clone, Args)]
pub struct ReplayArgs {
    /// A pcap or pcapng capture of export datagrams.
    #[arg(value_name = "PCAP")]
    pub pcap: PathBuf,
    /// The collector to send to.
    #[arg(long, value_name = "ADDR")]
    pub to: SocketAddr,
    /// Time scale: 2 replays twice as fast; absent = as fast as possible.
    #[arg(long, value_name = "X")]
    pub speed: Option<f64>,
}

/// Exit code for a usage error: clap's own (bad flags, a bad value), and a
/// query file that cannot be read.
pub const EXIT_USAGE: u8 = 2;
/// Exit code for a query that does not compile.
pub const EXIT_BAD_QUERY: u8 = 3;
/// Exit code for unreadable input and other runtime failures.
pub const EXIT_FAILURE: u8 = 1;

/// Run a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Check(args) => Ok(batch::check(&args)),
        Command::Query(args) => batch::query(&args),
        Command::Serve(args) => serve(args),
        Command::Replay(args) => replay(&args),
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "flowy", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Man => {
            let cmd = <Cli as clap::CommandFactory>::command();
            clap_mangen::Man::new(cmd).render(&mut std::io::stdout())?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `flowy serve` exits 1 when any match was not written (SPEC §4.5), 3 when
/// a query does not compile at startup.
fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let outcome = if args.check_config {
        crate::daemon::check_config(args).map(|summary| {
            println!("{summary}");
            crate::daemon::Outcome::Clean
        })
    } else {
        crate::daemon::run(args)
    };
    match outcome {
        Ok(crate::daemon::Outcome::Clean) => Ok(ExitCode::SUCCESS),
        Ok(crate::daemon::Outcome::MatchesLost(_)) => Ok(ExitCode::from(EXIT_FAILURE)),
        Err(e) if crate::daemon::is_compile_error(&e) => {
            eprintln!("error: {e:#}");
            Ok(ExitCode::from(EXIT_BAD_QUERY))
        }
        Err(e) => Err(e),
    }
}

fn replay(args: &ReplayArgs) -> anyhow::Result<ExitCode> {
    if let Some(speed) = args.speed {
        anyhow::ensure!(
            speed.is_finite() && speed > 0.0,
            "--speed must be a positive number, got {speed}"
        );
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let sent = runtime.block_on(crate::collect::replay::replay(
        &args.pcap, args.to, args.speed,
    ))?;
    eprintln!("sent {sent} datagrams to {}", args.to);
    Ok(ExitCode::SUCCESS)
}

/// A duration: a number with an optional unit `ms`, `s`/`sec`, `m`/`min`,
/// `h`, `d`; a bare number is milliseconds. Returns milliseconds.
/// `--from`/`--to`: RFC 3339 (`2012-04-30T07:51:00Z`) or epoch ms.
pub fn parse_time(s: &str) -> Result<i64, String> {
    use time::format_description::well_known::Rfc3339;
    let t = s.trim();
    if let Ok(ms) = t.parse::<i64>() {
        return Ok(ms);
    }
    let at = time::OffsetDateTime::parse(t, &Rfc3339).map_err(|_| {
        format!("'{s}' is not a time (RFC 3339 like 2012-04-30T07:51:00Z, or epoch ms)")
    })?;
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000)
        .map_err(|_| format!("'{s}' is out of range"))
}

pub fn parse_duration(s: &str) -> Result<i64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !c.is_ascii_digit() && c != '_')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: i64 = num
        .replace('_', "")
        .parse()
        .map_err(|_| format!("'{s}' is not a duration (e.g. 5m, 300s, 1h, 250ms)"))?;
    let scale = match unit.trim() {
        "" | "ms" => 1,
        "s" | "sec" => 1_000,
        "m" | "min" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        u => {
            return Err(format!(
                "unknown duration unit '{u}' in '{s}' (ms, s, m, h, d)"
            ))
        }
    };
    n.checked_mul(scale)
        .filter(|ms| *ms > 0)
        .ok_or_else(|| format!("duration '{s}' out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5m"), Ok(300_000));
        assert_eq!(parse_duration("300s"), Ok(300_000));
        assert_eq!(parse_duration("1h"), Ok(3_600_000));
        assert_eq!(parse_duration("1500"), Ok(1_500));
        assert_eq!(parse_duration("250ms"), Ok(250));
        assert_eq!(parse_duration("1 sec"), Ok(1_000));
        assert_eq!(parse_duration("1440min"), Ok(86_400_000));
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("m").is_err());
        assert!(parse_duration("0").is_err());
    }

    #[test]
    fn parses_the_query_command() {
        let cli = Cli::try_parse_from([
            "flowy",
            "query",
            "q.flowy",
            "--input",
            "a.ftz",
            "b.ftz",
            "--input-format",
            "flow-tools",
            "--format",
            "text",
            "--window",
            "5m",
            "--no-records",
        ])
        .unwrap();
        let Command::Query(q) = cli.command else {
            panic!("not a query command");
        };
        assert_eq!(q.input.len(), 2);
        assert_eq!(q.input_format, Some(InputFormat::FlowTools));
        assert_eq!(q.format, OutputFormat::Text);
        assert_eq!(q.window, Some(300_000));
        assert!(q.no_records);
        assert_eq!(q.output, "-");
        assert!(Cli::try_parse_from(["flowy", "query", "q.flowy"]).is_err());
        assert!(Cli::try_parse_from([
            "flowy",
            "query",
            "q",
            "--input",
            "a",
            "--input-format",
            "csv"
        ])
        .is_err());
    }

    #[test]
    fn parses_serve_and_replay() {
        let cli = Cli::try_parse_from([
            "flowy",
            "serve",
            "--listen",
            "127.0.0.1:2055",
            "--listen",
            "[::1]:2055",
            "--query",
            "a.flowy",
            "--output",
            "-",
        ])
        .unwrap();
        let Command::Serve(s) = cli.command else {
            panic!("not serve");
        };
        assert_eq!(s.listen.len(), 2);
        assert_eq!(s.output.as_deref(), Some("-"));
        assert!(s.config.is_none());
        let cli =
            Cli::try_parse_from(["flowy", "replay", "x.pcap", "--to", "127.0.0.1:2055"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Replay(ReplayArgs { speed: None, .. })
        ));
    }
}
