//! `eventkv-bench`: reproduces the event-count / load-time table (with and without
//! snapshots) on eventkv's engines, with sweeps over snapshot thresholds, snapshot codecs
//! and append batch sizes, and a side-by-side with eventsource-py.
//!
//! `cargo run --release -p eventkv-bench -- --help` lists the options.

mod cases;
mod cli;
mod compare;
mod follow;
mod measure;
mod report;
mod stores;
mod sync_push;
mod writers;

use std::process::ExitCode;

use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::cases::Runner;
use crate::cli::{Args, CodecName, EngineName, Threshold};
use crate::measure::Budget;
use crate::report::{Machine, Results};
use crate::stores::Stores;

const DEFAULT_EVENTS: [u64; 4] = [100, 1_000, 10_000, 100_000];
const QUICK_EVENTS: [u64; 2] = [100, 1_000];
const DEFAULT_THRESHOLDS: [Threshold; 4] = [
    Threshold(None),
    Threshold(Some(10)),
    Threshold(Some(100)),
    Threshold(Some(1000)),
];

/// One case of the plan.
enum Case {
    Load(EngineName, u64),
    Threshold(EngineName, Threshold, u64),
    Codec(CodecName, u64),
    Append(EngineName, u64),
    Writers(EngineName),
    CatchUp(EngineName, u64, u64),
    Delivery(EngineName, bool),
}

impl Case {
    fn label(&self) -> String {
        match self {
            Case::Load(engine, events) => format!("{} load, {events} events", engine.name()),
            Case::Threshold(engine, threshold, events) => {
                format!("{} threshold {threshold}, {events} events", engine.name())
            }
            Case::Codec(codec, events) => format!("{codec:?} snapshots, {events} events"),
            Case::Append(engine, per_save) => {
                format!("{} append, {per_save} per save", engine.name())
            }
            Case::Writers(engine) => format!("{} concurrent writers", engine.name()),
            Case::CatchUp(engine, events, per_append) => format!(
                "{} catch-up over {events} events in appends of {per_append}",
                engine.name()
            ),
            Case::Delivery(engine, cross_process) => format!(
                "{} live delivery{}",
                engine.name(),
                if *cross_process {
                    " from another process"
                } else {
                    ""
                }
            ),
        }
    }
}

fn main() -> ExitCode {
    let args = cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("eventkv-bench: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let work = async {
        if let Some(url) = &args.live_child {
            return follow::live_child(url).await;
        }
        match &args.writer_child {
            Some(url) => {
                writers::child(
                    url,
                    args.writer_child_start.unwrap_or_default(),
                    args.writer_child_writers.unwrap_or(1),
                    args.writer_child_millis.unwrap_or_default(),
                )
                .await
            }
            None => run(args).await,
        }
    };
    match runtime.block_on(work) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("eventkv-bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let stores = Stores::new(args.servers.clone())?;
    let mut notes = Vec::new();
    let engines = choose_engines(&args, &stores, &mut notes).await?;
    let plan = plan(&args, &engines);
    if let Some(python) = &args.eventsource_py {
        std::process::Command::new(python)
            .arg("--version")
            .output()
            .with_context(|| format!("--eventsource-py {}: cannot run it", python.display()))?;
    }
    if let Some(out) = &args.out {
        std::fs::create_dir_all(out)
            .with_context(|| format!("--out {}: cannot create it", out.display()))?;
    }
    cases::check_workload(&stores).await?;

    let progress = ProgressBar::new(plan.cases.len() as u64);
    if args.no_progress {
        progress.set_draw_target(ProgressDrawTarget::hidden());
    }
    progress.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let runner = Runner {
        stores,
        budget: Budget::new(args.quick),
        quick: args.quick,
        writer_counts: plan.writer_counts,
    };
    let mut results = Results::new(Machine::describe(), notes);
    let outcome = execute(&runner, &plan.cases, &progress, &mut results).await;
    progress.finish_and_clear();
    runner.stores.cleanup().await;
    outcome?;
    report(&args, &plan.events, results)
}

/// The engines of the run: those asked for (a server engine's server must answer), or
/// every engine compiled in, a server engine when its server answers (else a note says
/// why it was left out).
async fn choose_engines(
    args: &Args,
    stores: &Stores,
    notes: &mut Vec<String>,
) -> anyhow::Result<Vec<EngineName>> {
    if let Some(list) = &args.engines {
        let mut engines = list.clone();
        engines.dedup();
        for &engine in &engines {
            if args.servers.contains_key(engine.name()) {
                stores.reachable(engine).await?;
            }
        }
        return Ok(engines);
    }
    let mut engines = Vec::new();
    for engine in eventkv_backends::ENGINES
        .iter()
        .filter(|engine| engine.is_compiled_in())
    {
        let engine = EngineName(engine);
        if !args.servers.contains_key(engine.name()) {
            engines.push(engine);
            continue;
        }
        match stores.reachable(engine).await {
            Ok(()) => engines.push(engine),
            Err(error) => notes.push(format!("{} left out: {error:#}", engine.name())),
        }
    }
    Ok(engines)
}

/// The cases of a run, in order, and what they share.
struct Plan {
    cases: Vec<Case>,
    /// The event counts of the load table.
    events: Vec<u64>,
    /// The writer counts of the concurrent-writers cases.
    writer_counts: Vec<usize>,
}

/// The cases the arguments ask for on `engines`.
fn plan(args: &Args, engines: &[EngineName]) -> Plan {
    let events = match (&args.events, args.quick) {
        (Some(events), _) => events.clone(),
        (None, true) => QUICK_EVENTS.to_vec(),
        (None, false) => DEFAULT_EVENTS.to_vec(),
    };
    let sweep_events = if args.quick {
        500
    } else {
        events.iter().copied().max().unwrap_or(10_000).min(10_000)
    };
    let thresholds = args
        .thresholds
        .clone()
        .or_else(|| args.all.then(|| DEFAULT_THRESHOLDS.to_vec()));
    let codecs = args
        .codecs
        .clone()
        .or_else(|| args.all.then(|| vec![CodecName::Bincode, CodecName::Json]));
    let writer_counts = args
        .writers
        .clone()
        .or_else(|| args.all.then(|| vec![1, 8, 32]));
    let catch_up = args.catch_up.or_else(|| {
        args.all
            .then_some(if args.quick { 20_000 } else { 1_000_000 })
    });

    let mut cases = Vec::new();
    for &engine in engines {
        cases.extend(events.iter().map(|&n| Case::Load(engine, n)));
    }
    for &threshold in thresholds.iter().flatten() {
        cases.extend(
            engines
                .iter()
                .map(|&engine| Case::Threshold(engine, threshold, sweep_events)),
        );
    }
    cases.extend(
        codecs
            .iter()
            .flatten()
            .map(|&codec| Case::Codec(codec, sweep_events)),
    );
    if args.append || args.all {
        for &engine in engines {
            cases.extend([1, 1000].map(|per_save| Case::Append(engine, per_save)));
        }
    }
    if writer_counts.is_some() {
        cases.extend(engines.iter().map(|&engine| Case::Writers(engine)));
    }
    if let Some(events) = catch_up {
        for &engine in engines {
            cases.extend([1, 100].map(|per_append| Case::CatchUp(engine, events, per_append)));
            cases.push(Case::Delivery(engine, false));
            if engine.0.is_shared_by_processes() {
                cases.push(Case::Delivery(engine, true));
            }
        }
    }
    Plan {
        cases,
        events,
        writer_counts: writer_counts.unwrap_or_default(),
    }
}

/// Adds eventsource-py's figures, prints the tables and writes the files asked for.
fn report(args: &Args, events: &[u64], mut results: Results) -> anyhow::Result<()> {
    if let Some(python) = &args.eventsource_py {
        eprintln!("running {} ...", compare::script().display());
        match compare::run(python, events, args.quick)? {
            Some(report) => results.eventsource_py = Some(report),
            None => results
                .notes
                .push("eventsource-py comparison skipped (see the message above)".into()),
        }
    } else if let Some(file) = &args.eventsource_py_json {
        results.eventsource_py = Some(compare::load(file)?);
    }
    print!("{}", results.markdown());
    if let Some(out) = &args.out {
        results.write(out)?;
        eprintln!(
            "wrote {}/results.json, results.md and chart.svg",
            out.display()
        );
    }
    Ok(())
}

async fn execute(
    runner: &Runner,
    plan: &[Case],
    progress: &ProgressBar,
    results: &mut Results,
) -> anyhow::Result<()> {
    for case in plan {
        progress.set_message(case.label());
        let context = || case.label();
        match *case {
            Case::Load(engine, events) => results.loads.push(
                runner
                    .load_row(engine, events)
                    .await
                    .with_context(context)?,
            ),
            Case::Threshold(engine, threshold, events) => results.thresholds.push(
                runner
                    .threshold_row(engine, threshold, events)
                    .await
                    .with_context(context)?,
            ),
            Case::Codec(codec, events) => results.codecs.push(
                runner
                    .codec_row(codec.codec(), events)
                    .await
                    .with_context(context)?,
            ),
            Case::Append(engine, per_save) => results.appends.push(
                runner
                    .append_row(engine, per_save)
                    .await
                    .with_context(context)?,
            ),
            Case::CatchUp(engine, events, per_append) => results.catch_ups.push(
                follow::catch_up_row(&runner.stores, engine, events, per_append)
                    .await
                    .with_context(context)?,
            ),
            Case::Delivery(engine, cross_process) => results.deliveries.push(
                follow::delivery_row(&runner.stores, engine, cross_process)
                    .await
                    .with_context(context)?,
            ),
            Case::Writers(engine) => results.writers.extend(
                writers::rows(&runner.stores, engine, &runner.writer_counts, runner.quick)
                    .await
                    .with_context(context)?,
            ),
        }
        progress.inc(1);
    }
    Ok(())
}
