//! `eventkv`: copy a store between engines, verify it, see what is in it, prune its
//! snapshots, export and import its events, follow its global log.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use std::fmt::Write as _;

use eventkv::{ErrorKind, KvEventStore};
use eventkv_cli::{CliError, Progress};
use serde::Serialize;

#[derive(Parser)]
#[command(
    name = "eventkv",
    version,
    about = "Operate eventkv stores: copy between engines, verify, stats, snapshots, export, import, tail, serve"
)]
struct Cli {
    /// Print the result as JSON (one object; `export` and `tail` always print JSON lines).
    #[arg(long, global = true)]
    json: bool,
    /// Draw no progress bar.
    #[arg(long, global = true)]
    no_progress: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Copy every event and snapshot, byte for byte, into an empty store.
    Copy {
        /// The store to read.
        source: String,
        /// The store to write: empty, or holding an interrupted copy (with --resume).
        destination: String,
        /// Go on with an interrupted copy into DESTINATION.
        #[arg(long)]
        resume: bool,
    },
    /// Read everything and check the store is whole; exit 1 if a problem is found.
    Verify {
        /// The store to check.
        url: String,
        /// Also compare it, record by record, with this store (e.g. after a copy).
        #[arg(long, value_name = "OTHER_URL")]
        against: Option<String>,
    },
    /// Count aggregates, events, snapshots and bytes.
    Stats {
        /// The store.
        url: String,
    },
    /// List or prune snapshots.
    Snapshots {
        #[command(subcommand)]
        command: SnapshotsCommand,
    },
    /// Print events as JSON lines, in global order.
    Export {
        /// The store.
        url: String,
        /// Only events of this aggregate type.
        #[arg(long = "type", value_name = "TYPE")]
        aggregate_type: Option<String>,
    },
    /// Append events from JSON lines on standard input (as `export` prints them).
    Import {
        /// The store to append to.
        url: String,
    },
    /// Print the global log as JSON lines, and with --follow wait for more.
    Tail {
        /// The store.
        url: String,
        /// The first position to print.
        #[arg(long, default_value_t = 1, value_name = "POSITION")]
        from: u64,
        /// Keep waiting for new events (stop with Ctrl-C).
        #[arg(long)]
        follow: bool,
        /// How often --follow polls for new events, in milliseconds.
        #[arg(long, default_value_t = 500, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..))]
        interval_ms: u64,
    },
    /// Serve the sync protocol (push, pull, info; docs/sync.md) to browsers and other
    /// replicas, until Ctrl-C or SIGTERM. Prints `listening on http://ADDR` when ready.
    Serve {
        /// The store.
        url: String,
        /// The address to listen on (port 0: any free port).
        #[arg(long, default_value = "127.0.0.1:7411", value_name = "ADDR")]
        listen: std::net::SocketAddr,
        /// A JSON file of bearer tokens and what each may read and write. Without it,
        /// anyone who reaches the server may do anything: it listens on loopback only.
        #[arg(long, value_name = "FILE")]
        auth: Option<std::path::PathBuf>,
        /// An origin whose pages may call the server (CORS), e.g. http://localhost:8080;
        /// repeat for more.
        #[arg(long = "allow-origin", value_name = "ORIGIN")]
        allow_origins: Vec<String>,
    },
}

#[derive(Subcommand)]
enum SnapshotsCommand {
    /// List snapshots: aggregate, version, schema version, codec, when made, size.
    List {
        /// The store.
        url: String,
        /// Only snapshots of this aggregate type.
        #[arg(long = "type", value_name = "TYPE")]
        aggregate_type: Option<String>,
    },
    /// Delete snapshots: of a type, all or those below a schema version; or, with
    /// --keep N, every aggregate's older snapshots beyond its newest N.
    Prune(PruneArgs),
    /// List the aggregates of a type whose snapshot is more than N events behind (or that
    /// have none): those the application's `Repository::snapshot_stale` would snapshot.
    /// The command cannot take them itself: a snapshot is the state the aggregate's code
    /// folds, which the command does not have.
    Stale {
        /// The store.
        url: String,
        /// The aggregate type.
        #[arg(long = "type", value_name = "TYPE")]
        aggregate_type: String,
        /// How many events behind its head a snapshot may be.
        #[arg(long, value_name = "N", default_value_t = 0)]
        events_behind: u64,
    },
}

#[derive(Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["schema_below", "all", "keep"])))]
struct PruneArgs {
    /// The store.
    url: String,
    /// The aggregate type (required with --schema-below and --all).
    #[arg(long = "type", value_name = "TYPE")]
    aggregate_type: Option<String>,
    /// Delete those whose schema version is below N.
    #[arg(long, value_name = "N")]
    schema_below: Option<u32>,
    /// Delete all of them.
    #[arg(long)]
    all: bool,
    /// Keep each aggregate's newest N snapshots (its latest and N - 1 older ones).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    keep: Option<u64>,
}

fn main() -> ExitCode {
    let help = format!(
        "STORE URLs: {}\nExit codes: 0 success, 1 a check failed or the work failed, 2 bad usage.",
        eventkv_backends::accepted_urls()
    );
    let matches = Cli::command().after_help(help).get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|error| error.exit());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("eventkv: cannot start: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(&cli)) {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            eprintln!("eventkv: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}

/// Runs the command; the exit code when it completed (1 when a check failed).
async fn run(cli: &Cli) -> Result<u8, CliError> {
    match &cli.command {
        Command::Copy {
            source,
            destination,
            resume,
        } => copy(cli, source, destination, *resume).await,
        Command::Verify { url, against } => verify(cli, url, against.as_deref()).await,
        Command::Stats { url } => stats(cli, url).await,
        Command::Snapshots {
            command:
                SnapshotsCommand::List {
                    url,
                    aggregate_type,
                },
        } => list_snapshots(cli, url, aggregate_type.as_deref()).await,
        Command::Snapshots {
            command: SnapshotsCommand::Prune(args),
        } => prune_snapshots(cli, args).await,
        Command::Snapshots {
            command:
                SnapshotsCommand::Stale {
                    url,
                    aggregate_type,
                    events_behind,
                },
        } => stale_snapshots(cli, url, aggregate_type, *events_behind).await,
        Command::Export {
            url,
            aggregate_type,
        } => export(cli, url, aggregate_type.as_deref()).await,
        Command::Import { url } => import(cli, url).await,
        Command::Tail {
            url,
            from,
            follow,
            interval_ms,
        } => tail(url, *from, *follow, *interval_ms).await,
        Command::Serve {
            url,
            listen,
            auth,
            allow_origins,
        } => {
            let options = eventkv_cli::ServeOptions {
                url: url.clone(),
                listen: *listen,
                auth: auth.clone(),
                allowed_origins: allow_origins.clone(),
            };
            serve(&options).await
        }
    }
}

/// `eventkv serve`: logs through tracing on stderr (`RUST_LOG` filters, `info` by
/// default), the address on stdout.
async fn serve(options: &eventkv_cli::ServeOptions) -> Result<u8, CliError> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let listening = |address| {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "listening on http://{address}");
        let _ = out.flush();
    };
    eventkv_cli::serve(options, listening, shutdown_signal()).await?;
    Ok(0)
}

/// Completes at Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = interrupt => {}
                    _ = terminate.recv() => {}
                }
            }
            Err(_) => {
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}

/// A progress bar of `total` `unit`s, unless --no-progress.
fn progress(cli: &Cli, total: Option<u64>, unit: &str) -> Progress {
    if cli.no_progress {
        Progress::hidden()
    } else {
        Progress::new(total, unit)
    }
}

/// `eventkv copy`.
async fn copy(cli: &Cli, source: &str, destination: &str, resume: bool) -> Result<u8, CliError> {
    eventkv_cli::check_distinct(source, destination)?;
    let from = eventkv_cli::open_existing(source).await?;
    let to = eventkv_cli::open_lasting(destination).await?;
    let total = eventkv_cli::head_position(&from).await?;
    let report =
        eventkv_cli::copy(&from, &to, resume, &progress(cli, Some(total), "events")).await?;
    print(cli, &report, || {
        let resumed = report
            .resumed_after
            .as_ref()
            .map(|key| format!(" (resumed after {key})"))
            .unwrap_or_default();
        format!(
            "copied {} records{resumed}: {} events, {} snapshots, {} bytes in {:.2} s ({:.0} events/s)",
            report.records,
            report.events,
            report.snapshots,
            report.bytes,
            report.seconds,
            report.events_per_second
        )
    })?;
    Ok(0)
}

/// `eventkv verify`.
async fn verify(cli: &Cli, url: &str, against: Option<&str>) -> Result<u8, CliError> {
    let kv = eventkv_cli::open_existing(url).await?;
    let other = match against {
        Some(other) => Some(eventkv_cli::open_existing(other).await?),
        None => None,
    };
    let total = eventkv_cli::head_position(&kv).await?;
    let report = eventkv_cli::verify(&kv, &progress(cli, Some(total), "events")).await?;
    let comparison = match &other {
        Some(other) => Some(eventkv_cli::compare(&kv, other).await?),
        None => None,
    };
    let failed =
        report.problem_count > 0 || comparison.as_ref().is_some_and(|c| c.difference_count > 0);
    #[derive(Serialize)]
    struct Output<'a> {
        ok: bool,
        #[serde(flatten)]
        report: &'a eventkv_cli::VerifyReport,
        comparison: Option<&'a eventkv_cli::Comparison>,
    }
    let output = Output {
        ok: !failed,
        report: &report,
        comparison: comparison.as_ref(),
    };
    print(cli, &output, || verify_text(&report, comparison.as_ref()))?;
    Ok(u8::from(failed))
}

/// `eventkv stats`.
async fn stats(cli: &Cli, url: &str) -> Result<u8, CliError> {
    let kv = eventkv_cli::open_existing(url).await?;
    let total = eventkv_cli::head_position(&kv).await?;
    let stats = eventkv_cli::stats(&kv, &progress(cli, Some(total), "events")).await?;
    print(cli, &stats, || stats_text(&stats))?;
    Ok(0)
}

/// `eventkv snapshots list`.
async fn list_snapshots(
    cli: &Cli,
    url: &str,
    aggregate_type: Option<&str>,
) -> Result<u8, CliError> {
    let kv = eventkv_cli::open_existing(url).await?;
    let mut out = std::io::stdout().lock();
    let json = cli.json;
    let listed = eventkv_cli::list_snapshots(&kv, aggregate_type, |info| {
        if json {
            serde_json::to_writer(&mut out, &info)
                .map_err(|error| CliError::failed(ErrorKind::Unexpected, error))?;
            writeln!(out)?;
        } else {
            writeln!(
                out,
                "{}/{}\tversion {}\tschema {}\t{}\t{}\t{} bytes",
                info.aggregate_type,
                info.aggregate_id,
                info.version,
                info.schema_version,
                info.codec,
                info.created_at,
                info.state_bytes
            )?;
        }
        Ok(())
    })
    .await?;
    if !json {
        writeln!(out, "{listed} snapshots")?;
    }
    Ok(0)
}

/// `eventkv snapshots prune`.
async fn prune_snapshots(cli: &Cli, args: &PruneArgs) -> Result<u8, CliError> {
    #[derive(Serialize)]
    struct Output {
        deleted: u64,
    }
    let kv = eventkv_cli::open_existing(&args.url).await?;
    let of = args.aggregate_type.as_deref();
    if let Some(keep) = args.keep {
        let keep = usize::try_from(keep).unwrap_or(usize::MAX);
        let deleted = eventkv_cli::prune_snapshot_history(&kv, of, keep).await?;
        return print(cli, &Output { deleted }, || {
            format!(
                "deleted {deleted} older snapshots, keeping the newest {keep} of each aggregate"
            )
        })
        .map(|()| 0);
    }
    let Some(aggregate_type) = of else {
        return Err(CliError::usage(
            "--type is required with --schema-below and --all",
        ));
    };
    let below = if args.all { None } else { args.schema_below };
    let deleted = eventkv_cli::prune_snapshots(&kv, aggregate_type, below).await?;
    print(cli, &Output { deleted }, || {
        format!("deleted {deleted} snapshots of {aggregate_type}")
    })?;
    Ok(0)
}

/// `eventkv snapshots stale`.
async fn stale_snapshots(
    cli: &Cli,
    url: &str,
    aggregate_type: &str,
    events_behind: u64,
) -> Result<u8, CliError> {
    let kv = eventkv_cli::open_existing(url).await?;
    let mut out = std::io::stdout().lock();
    let json = cli.json;
    let found = eventkv_cli::stale_snapshots(&kv, aggregate_type, events_behind, |stale| {
        if json {
            serde_json::to_writer(&mut out, &stale)
                .map_err(|error| CliError::failed(ErrorKind::Unexpected, error))?;
            writeln!(out)?;
        } else {
            writeln!(
                out,
                "{aggregate_type}/{}\thead {}\tsnapshot {}",
                stale.aggregate_id, stale.head, stale.snapshot_version
            )?;
        }
        Ok(())
    })
    .await?;
    if !json {
        writeln!(
            out,
            "{found} aggregates more than {events_behind} events past their snapshot"
        )?;
    }
    Ok(0)
}

/// `eventkv export`.
async fn export(cli: &Cli, url: &str, aggregate_type: Option<&str>) -> Result<u8, CliError> {
    let kv = eventkv_cli::open_existing(url).await?;
    let total = eventkv_cli::head_position(&kv).await?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let written = eventkv_cli::write_log(
        &KvEventStore::new(kv),
        1,
        aggregate_type,
        None,
        &mut out,
        &progress(cli, Some(total), "events"),
    )
    .await?;
    out.flush()?;
    eprintln!("exported {written} events");
    Ok(0)
}

/// `eventkv import`.
async fn import(cli: &Cli, url: &str) -> Result<u8, CliError> {
    let kv = eventkv_cli::open_lasting(url).await?;
    let input = std::io::stdin().lock();
    let report = eventkv_cli::import(&kv, input, &progress(cli, None, "events")).await?;
    print(cli, &report, || {
        format!(
            "imported {} events from {} lines",
            report.events, report.lines
        )
    })?;
    Ok(0)
}

/// `eventkv tail`.
async fn tail(url: &str, from: u64, follow: bool, interval_ms: u64) -> Result<u8, CliError> {
    let kv = eventkv_cli::open_existing(url).await?;
    let interval = follow.then(|| Duration::from_millis(interval_ms));
    let mut out = std::io::stdout().lock();
    let store = KvEventStore::new(kv);
    eventkv_cli::write_log(&store, from, None, interval, &mut out, &Progress::hidden()).await?;
    Ok(0)
}

/// Prints `value` as JSON with --json, else `text()`.
fn print<T: Serialize>(
    cli: &Cli,
    value: &T,
    text: impl FnOnce() -> String,
) -> Result<(), CliError> {
    let line = if cli.json {
        serde_json::to_string(value)
            .map_err(|error| CliError::failed(ErrorKind::Unexpected, error))?
    } else {
        text()
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    Ok(())
}

fn verify_text(
    report: &eventkv_cli::VerifyReport,
    comparison: Option<&eventkv_cli::Comparison>,
) -> String {
    let mut text = String::new();
    for problem in &report.problems {
        let _ = writeln!(text, "problem: {}: {}", problem.key, problem.problem);
    }
    if let Some(comparison) = comparison {
        for difference in &comparison.differences {
            let _ = writeln!(
                text,
                "difference: {}: {}",
                difference.key, difference.problem
            );
        }
    }
    let _ = write!(
        text,
        "read {} records: {} events in {} streams, {} log entries, {} snapshots, {} checkpoints, {} read model entries; head {}",
        report.records,
        report.events,
        report.streams,
        report.log_entries,
        report.snapshots,
        report.checkpoints,
        report.read_model_entries,
        report
            .head
            .map_or("missing".to_owned(), |head| head.to_string())
    );
    let _ = match report.problem_count {
        0 => write!(text, "\nno problems"),
        count => write!(
            text,
            "\n{count} problems (the first {} listed)",
            report.problems.len()
        ),
    };
    if let Some(comparison) = comparison {
        let _ = match comparison.difference_count {
            0 => write!(
                text,
                "\nthe two stores hold the same {} records",
                comparison.records
            ),
            count => write!(text, "\n{count} records differ between the two stores"),
        };
    }
    text
}

fn stats_text(stats: &eventkv_cli::Stats) -> String {
    let mut text = format!("global position {}\n", stats.global_position);
    text += "aggregate type\taggregates\tevents\n";
    for (name, totals) in &stats.types {
        let _ = writeln!(text, "{name}\t{}\t{}", totals.aggregates, totals.events);
    }
    text += "longest streams\n";
    for stream in &stats.longest_streams {
        let _ = writeln!(
            text,
            "  {}/{}\t{} events",
            stream.aggregate_type, stream.aggregate_id, stream.events
        );
    }
    text += "snapshots (type, schema version: count)\n";
    for (name, schemas) in &stats.snapshots {
        for (schema, count) in schemas {
            let _ = writeln!(text, "  {name}\tschema {schema}\t{count}");
        }
    }
    let _ = writeln!(text, "events behind snapshots (most {})", stats.most_behind);
    for (bucket, count) in &stats.events_behind_snapshots {
        let _ = writeln!(text, "  {bucket}\t{count}");
    }
    text += "checkpoints (name: last position handled)\n";
    for (name, position) in &stats.checkpoints {
        let _ = writeln!(text, "  {name}\t{position}");
    }
    text += "bytes\n";
    for (kind, bytes) in &stats.bytes {
        let _ = writeln!(text, "  {kind}\t{bytes}");
    }
    if stats.unknown_records > 0 {
        let _ = writeln!(text, "records of unknown kinds: {}", stats.unknown_records);
    }
    text.trim_end().to_owned()
}
