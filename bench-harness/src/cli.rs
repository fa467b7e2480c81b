//! Command-line arguments, checked before any work starts.

use std::path::PathBuf;

use std::collections::BTreeMap;

use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, ValueEnum};
use eventkv::Codec;
use eventkv_backends::{ENGINES, Engine, Scratch};

/// Reproduces the event-count / load-time table on eventkv's engines, with sweeps over
/// snapshot thresholds, snapshot codecs and append batch sizes.
#[derive(Debug, Parser)]
#[command(name = "eventkv-bench", version)]
#[allow(clippy::struct_excessive_bools)] // command-line flags
pub struct Args {
    /// Event counts of the aggregate, comma-separated [default: 100,1000,10000,100000;
    /// with --quick: 100,1000].
    #[arg(long, value_delimiter = ',', value_parser = parse_count)]
    pub events: Option<Vec<u64>>,

    /// Engines, comma-separated. Default: every engine compiled in, those on a server
    /// (postgres, …) when the server of their option (--postgres URL, …) is reachable.
    #[arg(long, value_delimiter = ',', value_parser = parse_engine)]
    pub engines: Option<Vec<EngineName>>,

    /// The server of each server engine, by engine name: its option `--NAME URL`, else
    /// its environment variable, else its default. Filled by [`parse`].
    #[arg(skip)]
    pub servers: BTreeMap<&'static str, String>,

    /// Snapshot thresholds to sweep (`none` or a number), comma-separated.
    #[arg(long, value_delimiter = ',', value_parser = parse_threshold)]
    pub thresholds: Option<Vec<Threshold>>,

    /// Snapshot codecs to compare, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub codecs: Option<Vec<CodecName>>,

    /// Measure append throughput (1 and 1,000 events per save).
    #[arg(long)]
    pub append: bool,

    /// Concurrent writers: appends per second and latency with these writer counts,
    /// comma-separated [with --all: 1,8,32].
    #[arg(long, value_delimiter = ',', value_parser = parse_writers)]
    pub writers: Option<Vec<usize>>,

    /// Following the global log: subscription catch-up speed over a log of this many
    /// events (appends of 1 and of 100), and live delivery latency [with --all:
    /// 1000000; with --quick: 20000].
    #[arg(long, value_name = "EVENTS", value_parser = parse_count)]
    pub catch_up: Option<u64>,

    /// Everything: all sweeps, the append throughput, the concurrent writers and
    /// following the global log.
    #[arg(long)]
    pub all: bool,

    /// A smoke run in seconds: small counts, few samples.
    #[arg(long)]
    pub quick: bool,

    /// Write results.json, results.md and chart.svg to this directory.
    #[arg(long)]
    pub out: Option<PathBuf>,

    /// Python >= 3.13 with eventsource-py 0.15.1 installed: runs
    /// bench-harness/compare/eventsource_py.py and adds the ratios to the table.
    #[arg(long, value_name = "PYTHON")]
    pub eventsource_py: Option<PathBuf>,

    /// The JSON a previous run of eventsource_py.py printed, instead of running it.
    #[arg(long, value_name = "FILE", conflicts_with = "eventsource_py")]
    pub eventsource_py_json: Option<PathBuf>,

    /// No progress bar.
    #[arg(long)]
    pub no_progress: bool,

    /// Internal: run as the appending process of the live-delivery case, on this URL.
    #[arg(long, hide = true)]
    pub live_child: Option<String>,

    /// Internal: run as the second process of the two-process writers case, on this URL.
    #[arg(long, hide = true, requires_all = ["writer_child_start", "writer_child_writers", "writer_child_millis"])]
    pub writer_child: Option<String>,

    /// Internal: when the second process starts appending (Unix milliseconds).
    #[arg(long, hide = true)]
    pub writer_child_start: Option<u64>,

    /// Internal: the second process's writer count.
    #[arg(long, hide = true)]
    pub writer_child_writers: Option<usize>,

    /// Internal: how long the second process appends, in milliseconds.
    #[arg(long, hide = true)]
    pub writer_child_millis: Option<u64>,
}

/// Parses the command line: [`Args`], and a `--NAME URL` option for each engine of the
/// list that runs on a server (`--postgres`, …).
pub fn parse() -> Args {
    let matches = with_server_options(Args::command()).get_matches();
    from_matches(&matches).unwrap_or_else(|error| error.exit())
}

/// [`parse`] of `args`, for tests.
#[cfg(test)]
fn try_parse_from<'a>(args: impl IntoIterator<Item = &'a str>) -> Result<Args, clap::Error> {
    from_matches(&with_server_options(Args::command()).try_get_matches_from(args)?)
}

fn server_engines() -> impl Iterator<Item = (&'static Engine, &'static str, &'static str)> {
    ENGINES.iter().filter_map(|engine| match engine.scratch() {
        Some(Scratch::Server { var, default, .. }) => Some((engine, var, default)),
        _ => None,
    })
}

fn with_server_options(command: clap::Command) -> clap::Command {
    server_engines().fold(command, |command, (engine, var, default)| {
        command.arg(
            clap::Arg::new(engine.name)
                .long(engine.name)
                .value_name("URL")
                .env(var)
                .default_value(default)
                .help(format!(
                    "The {} server of the {} engine",
                    engine.name, engine.name
                )),
        )
    })
}

fn from_matches(matches: &ArgMatches) -> Result<Args, clap::Error> {
    let mut args = Args::from_arg_matches(matches)?;
    for (engine, _, _) in server_engines() {
        if let Some(url) = matches.get_one::<String>(engine.name) {
            args.servers.insert(engine.name, url.clone());
        }
    }
    Ok(args)
}

/// An engine of the benchmark: one of the list, compiled in.
#[derive(Clone, Copy, Debug)]
pub struct EngineName(pub &'static Engine);

impl EngineName {
    /// The engine named `name`; panics if it is not compiled in (for the harness's own
    /// choices, such as `memory`).
    pub fn named(name: &str) -> Self {
        parse_engine(name).unwrap_or_else(|error| panic!("{error}"))
    }

    /// The name used in tables and URLs.
    pub fn name(self) -> &'static str {
        self.0.name
    }
}

impl PartialEq for EngineName {
    fn eq(&self, other: &Self) -> bool {
        self.name() == other.name()
    }
}

impl Eq for EngineName {}

impl serde::Serialize for EngineName {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

fn parse_engine(text: &str) -> Result<EngineName, String> {
    let compiled_in = || {
        ENGINES
            .iter()
            .filter(|engine| engine.is_compiled_in())
            .map(|engine| engine.name)
            .collect::<Vec<_>>()
            .join(", ")
    };
    match eventkv_backends::engine(text.trim()) {
        Some(engine) if engine.is_compiled_in() => Ok(EngineName(engine)),
        Some(engine) => Err(format!(
            "{} is not compiled in (cargo feature \"{}\"); engines: {}",
            engine.name,
            engine.name,
            compiled_in()
        )),
        None => Err(format!(
            "unknown engine {text:?}; engines: {}",
            compiled_in()
        )),
    }
}

/// A snapshot codec of the benchmark.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum CodecName {
    /// bincode 2
    Bincode,
    /// JSON
    Json,
}

impl CodecName {
    /// The codec.
    pub fn codec(self) -> Codec {
        match self {
            CodecName::Bincode => Codec::Bincode,
            CodecName::Json => Codec::Json,
        }
    }
}

/// A snapshot threshold: none, or every N events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Threshold(pub Option<u64>);

impl std::fmt::Display for Threshold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            None => f.write_str("none"),
            Some(n) => write!(f, "{n}"),
        }
    }
}

fn parse_count(text: &str) -> Result<u64, String> {
    match text.trim().replace('_', "").parse::<u64>() {
        Ok(0) => Err("an event count must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("{text:?} is not a whole number of events")),
    }
}

fn parse_writers(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(n) if (1..=1024).contains(&n) => Ok(n),
        _ => Err(format!("{text:?} is not a writer count (1 to 1024)")),
    }
}

fn parse_threshold(text: &str) -> Result<Threshold, String> {
    match text.trim() {
        "none" | "off" => Ok(Threshold(None)),
        number => parse_count(number)
            .map(|n| Threshold(Some(n)))
            .map_err(|_| format!("{text:?} is not a threshold (none or a whole number)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_input_is_refused_with_a_reason() {
        let parse = |args: &[&str]| {
            try_parse_from(std::iter::once("eventkv-bench").chain(args.iter().copied()))
        };
        let args = parse(&[]).expect("no arguments");
        assert!(args.servers.contains_key("postgres"), "{:?}", args.servers);
        let args = parse(&["--postgres", "postgres://elsewhere/db"]).expect("a server");
        assert_eq!(args.servers["postgres"], "postgres://elsewhere/db");
        let error = parse(&["--events", "100,lots"])
            .expect_err("non-numeric count")
            .to_string();
        assert!(error.contains("\"lots\" is not a whole number"), "{error}");
        let error = parse(&["--engines", "memory,mongodb"])
            .expect_err("unknown engine")
            .to_string();
        assert!(
            error.contains("mongodb") && error.contains("redb"),
            "{error}"
        );
        let error = parse(&["--codecs", "protobuf"])
            .expect_err("unknown codec")
            .to_string();
        assert!(
            error.contains("protobuf") && error.contains("bincode"),
            "{error}"
        );
        let error = parse(&["--thresholds", "none,ten"])
            .expect_err("bad threshold")
            .to_string();
        assert!(error.contains("not a threshold"), "{error}");
        let args = parse(&["--thresholds", "none,10", "--events", "1_000"]).expect("valid");
        assert_eq!(
            args.thresholds,
            Some(vec![Threshold(None), Threshold(Some(10))])
        );
        assert_eq!(args.events, Some(vec![1000]));
        let error = parse(&["--writers", "1,0"])
            .expect_err("no writers")
            .to_string();
        assert!(error.contains("not a writer count"), "{error}");
        let args = parse(&["--writers", "1,8,32"]).expect("valid");
        assert_eq!(args.writers, Some(vec![1, 8, 32]));
    }
}
