//! The results: markdown tables, JSON, and an SVG chart.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use plotters::coord::Shift;
use plotters::prelude::*;
use serde::Serialize;

use crate::cases::{AppendRow, CodecRow, LoadRow, ThresholdRow};
use crate::cli::EngineName;
use crate::compare::PyReport;
use crate::follow::{CROSS_PROCESS_POLL, CatchUpRow, DeliveryRow};
use crate::measure::format_ms;
use crate::writers::{Scenario, WritersRow};

/// Where and with what the numbers were measured.
#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub memory_gib: f64,
    pub os: String,
    pub eventkv: String,
    pub rustc: String,
    pub profile: String,
    pub unix_time: u64,
}

impl Machine {
    /// Reads the machine's description (Linux `/proc`, falling back to "unknown").
    pub fn describe() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|line| {
                line.strip_prefix("model name")
                    .and_then(|rest| rest.split(':').nth(1))
            })
            .map_or_else(|| "unknown".to_owned(), |name| name.trim().to_owned());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_kib: f64 = meminfo
            .lines()
            .find_map(|line| line.strip_prefix("MemTotal:"))
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
            .unwrap_or(0.0);
        let rustc = std::process::Command::new("rustc")
            .arg("--version")
            .output()
            .ok()
            .and_then(|output| String::from_utf8(output.stdout).ok())
            .map_or_else(|| "unknown".to_owned(), |version| version.trim().to_owned());
        Machine {
            cpu,
            cores: std::thread::available_parallelism().map_or(1, usize::from),
            memory_gib: memory_kib / 1024.0 / 1024.0,
            os: format!("{} {}", std::env::consts::OS, std::env::consts::ARCH),
            eventkv: env!("CARGO_PKG_VERSION").to_owned(),
            rustc,
            profile: if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            }
            .to_owned(),
            unix_time: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |since| since.as_secs()),
        }
    }
}

/// Everything a run measured.
#[derive(Clone, Debug, Serialize)]
pub struct Results {
    pub machine: Machine,
    pub notes: Vec<String>,
    pub loads: Vec<LoadRow>,
    pub thresholds: Vec<ThresholdRow>,
    pub codecs: Vec<CodecRow>,
    pub appends: Vec<AppendRow>,
    pub writers: Vec<WritersRow>,
    pub catch_ups: Vec<CatchUpRow>,
    pub deliveries: Vec<DeliveryRow>,
    pub eventsource_py: Option<PyReport>,
}

impl Results {
    /// No rows yet.
    pub fn new(machine: Machine, notes: Vec<String>) -> Self {
        Results {
            machine,
            notes,
            loads: Vec::new(),
            thresholds: Vec::new(),
            codecs: Vec::new(),
            appends: Vec::new(),
            writers: Vec::new(),
            catch_ups: Vec::new(),
            deliveries: Vec::new(),
            eventsource_py: None,
        }
    }
}

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// A writers row's rate against one writer of the same engine (own aggregates), or, for
/// two processes, against one process of as many writers as each of them, or, for sync
/// clients, against as many writers in process (the cost of HTTP); found in `rows`.
fn against_one(rows: &[WritersRow], row: &WritersRow) -> Option<f64> {
    let base_writers = match row.scenario {
        Scenario::OwnAggregate => 1,
        Scenario::TwoProcesses => row.writers / 2,
        Scenario::SyncPush => row.writers,
        Scenario::SameAggregate => return None,
    };
    let base = rows.iter().find(|base| {
        base.engine == row.engine
            && base.scenario == Scenario::OwnAggregate
            && base.writers == base_writers
    })?;
    (base.appends_per_second > 0.0).then(|| row.appends_per_second / base.appends_per_second)
}

/// A markdown section: `title`, then a table of `rows` under `headers`; nothing without
/// rows.
fn table(md: &mut String, title: &str, headers: &[&str], rows: impl Iterator<Item = Vec<String>>) {
    let mut rows = rows.peekable();
    if rows.peek().is_none() {
        return;
    }
    let _ = writeln!(md, "## {title}\n");
    let _ = writeln!(md, "| {} |", headers.join(" | "));
    let _ = writeln!(md, "|{}", "---|".repeat(headers.len()));
    for row in rows {
        let _ = writeln!(md, "| {} |", row.join(" | "));
    }
    let _ = writeln!(md);
}

/// Each engine once, in the order of first appearance.
fn engines_of(engines: impl Iterator<Item = EngineName>) -> Vec<EngineName> {
    let mut unique: Vec<EngineName> = Vec::new();
    for engine in engines {
        if !unique.contains(&engine) {
            unique.push(engine);
        }
    }
    unique
}

/// A log-log chart of the report.
type LogChart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<LogCoord<f64>, LogCoord<f64>>>;

/// Draws the legend at `position` and writes the file.
fn finish<'a, 'b: 'a>(
    chart: &mut LogChart<'a, 'b>,
    root: &DrawingArea<SVGBackend<'b>, Shift>,
    position: SeriesLabelPosition,
) -> anyhow::Result<()> {
    chart
        .configure_series_labels()
        .position(position)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(plot_error)?;
    root.present().map_err(plot_error)?;
    Ok(())
}

impl Results {
    /// The report in markdown.
    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let m = &self.machine;
        let _ = writeln!(md, "# eventkv benchmark\n");
        let _ = writeln!(
            md,
            "{} ({} cores, {:.0} GiB), {}; eventkv {}, {}, {} build. Median of repeated loads \
             after a warm-up, each case on a fresh store; events are JSON, snapshots bincode.\n",
            m.cpu, m.cores, m.memory_gib, m.os, m.eventkv, m.rustc, m.profile
        );
        for note in &self.notes {
            let _ = writeln!(md, "> {note}\n");
        }
        for engine in engines_of(self.loads.iter().map(|row| row.engine)) {
            let _ = writeln!(md, "## {}\n", engine.name());
            let _ = writeln!(
                md,
                "| Event Count | Without Snapshot | With Snapshot (every 100) | Improvement |"
            );
            let _ = writeln!(md, "|---|---|---|---|");
            for row in self.loads.iter().filter(|row| row.engine == engine) {
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {:.0}x |",
                    thousands(row.events),
                    format_ms(row.without.median_ms),
                    format_ms(row.with_every_100.median_ms),
                    row.improvement()
                );
            }
            let _ = writeln!(
                md,
                "\n| Event Count | without: min – max | with: min – max | snapshot 99 behind | limit (hand-written replay) | framework overhead |"
            );
            let _ = writeln!(md, "|---|---|---|---|---|---|");
            for row in self.loads.iter().filter(|row| row.engine == engine) {
                let _ = writeln!(
                    md,
                    "| {} | {} – {} | {} – {} | {} | {} | {:+.0}% |",
                    thousands(row.events),
                    format_ms(row.without.min_ms),
                    format_ms(row.without.max_ms),
                    format_ms(row.with_every_100.min_ms),
                    format_ms(row.with_every_100.max_ms),
                    format_ms(row.snapshot_99_behind.median_ms),
                    format_ms(row.limit.median_ms),
                    row.overhead() * 100.0
                );
            }
            let _ = writeln!(md);
        }
        self.markdown_eventsource_py(&mut md);
        self.markdown_sweeps(&mut md);
        md
    }

    fn markdown_eventsource_py(&self, md: &mut String) {
        let Some(py) = &self.eventsource_py else {
            return;
        };
        let _ = writeln!(
            md,
            "## Side by side with {} {} (Python {})\n",
            py.library, py.version, py.python
        );
        let _ = writeln!(
            md,
            "Ratios are eventsource-py's median over eventkv's: how many times faster eventkv is.\n"
        );
        let _ = writeln!(
            md,
            "| Engine | Event Count | Without: eventsource-py | eventkv | ratio | Every 100: eventsource-py | eventkv | ratio | 99 behind: eventsource-py | eventkv | ratio |"
        );
        let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|---|");
        for py_row in &py.results {
            let ours = self
                .loads
                .iter()
                .find(|row| row.engine.name() == py_row.engine && row.events == py_row.events);
            let Some(ours) = ours else { continue };
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {:.0}x | {} | {} | {:.1}x | {} | {} | {:.1}x |",
                py_row.engine,
                thousands(py_row.events),
                format_ms(py_row.without_ms.median),
                format_ms(ours.without.median_ms),
                py_row.without_ms.median / ours.without.median_ms,
                format_ms(py_row.with_ms.median),
                format_ms(ours.with_every_100.median_ms),
                py_row.with_ms.median / ours.with_every_100.median_ms,
                format_ms(py_row.behind_ms.median),
                format_ms(ours.snapshot_99_behind.median_ms),
                py_row.behind_ms.median / ours.snapshot_99_behind.median_ms,
            );
        }
        let _ = writeln!(md);
    }

    fn markdown_sweeps(&self, md: &mut String) {
        table(
            md,
            "Snapshot thresholds (saves of 10 events, sync mode)",
            &[
                "Engine",
                "Events",
                "Threshold",
                "Load",
                "Save (mean)",
                "Snapshots written",
                "Stored bytes",
            ],
            self.thresholds.iter().map(|row| {
                vec![
                    row.engine.name().to_owned(),
                    thousands(row.events),
                    row.threshold.to_string(),
                    format_ms(row.load.median_ms),
                    format_ms(row.save_ms),
                    row.snapshots_written.to_string(),
                    thousands(row.stored_bytes),
                ]
            }),
        );
        table(
            md,
            "Snapshot codecs (memory engine; state: totals and the last 100 deposits)",
            &[
                "Codec",
                "State size",
                "Encode",
                "Decode",
                "Event size",
                "Load (snapshot 99 behind)",
            ],
            self.codecs.iter().map(|row| {
                vec![
                    row.codec.clone(),
                    format!("{} B", row.snapshot_bytes),
                    format!("{:.0} ns", row.encode_ns),
                    format!("{:.0} ns", row.decode_ns),
                    format!("{} B", row.event_bytes),
                    format_ms(row.load.median_ms),
                ]
            }),
        );
        table(
            md,
            "Append throughput",
            &["Engine", "Events per save", "Events per second"],
            self.appends.iter().map(|row| {
                vec![
                    row.engine.name().to_owned(),
                    thousands(row.events_per_save),
                    thousands(row.events_per_second.round() as u64),
                ]
            }),
        );
        table(
            md,
            "Concurrent writers (one event per append, durable defaults)",
            &[
                "Engine",
                "Writers",
                "Where",
                "Appends per second",
                "Against one",
                "p50",
                "p99",
                "Conflicts retried",
            ],
            self.writers.iter().map(|row| {
                vec![
                    row.engine.name().to_owned(),
                    row.writers.to_string(),
                    row.scenario.label().to_owned(),
                    thousands(row.appends_per_second.round() as u64),
                    against_one(&self.writers, row)
                        .map_or_else(|| "–".to_owned(), |ratio| format!("{ratio:.2}x")),
                    format_ms(row.p50_ms),
                    format_ms(row.p99_ms),
                    thousands(row.conflicts),
                ]
            }),
        );
        table(
            md,
            "Catching up on the global log (a subscription from position 1)",
            &["Engine", "Events", "Events per append", "Events per second"],
            self.catch_ups.iter().map(|row| {
                vec![
                    row.engine.name().to_owned(),
                    thousands(row.events),
                    thousands(row.events_per_append),
                    thousands(row.events_per_second.round() as u64),
                ]
            }),
        );
        let polled = format!(
            "another process (polled every {} ms)",
            CROSS_PROCESS_POLL.as_millis()
        );
        table(
            md,
            "Live delivery (from an append to its delivery to a caught-up subscription)",
            &["Engine", "Appended by", "Events", "p50", "p99"],
            self.deliveries.iter().map(|row| {
                vec![
                    row.engine.name().to_owned(),
                    if row.cross_process {
                        polled.clone()
                    } else {
                        "the same store".to_owned()
                    },
                    thousands(row.events),
                    format_ms(row.p50_ms),
                    format_ms(row.p99_ms),
                ]
            }),
        );
    }

    /// Writes results.json, results.md, chart.svg and (with concurrent writers)
    /// writers.svg into `dir`.
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let json = serde_json::to_string_pretty(self)?;
        std::fs::write(dir.join("results.json"), json + "\n").context("writing results.json")?;
        std::fs::write(dir.join("results.md"), self.markdown()).context("writing results.md")?;
        self.chart(&dir.join("chart.svg"))?;
        self.writers_chart(&dir.join("writers.svg"))
    }

    /// Appends per second by writer count, per engine (each writer on its own aggregate);
    /// log scales.
    fn writers_chart(&self, path: &Path) -> anyhow::Result<()> {
        let rows: Vec<&WritersRow> = self
            .writers
            .iter()
            .filter(|row| row.scenario == Scenario::OwnAggregate)
            .collect();
        if rows.is_empty() {
            return Ok(());
        }
        let (low, high) = rows.iter().fold((f64::MAX, f64::MIN), |(lo, hi), row| {
            (
                lo.min(row.appends_per_second),
                hi.max(row.appends_per_second),
            )
        });
        let most = rows.iter().map(|row| row.writers).max().unwrap_or(1) as f64;
        let root = SVGBackend::new(path, (960, 600)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let mut chart = ChartBuilder::on(&root)
            .caption("eventkv: appends per second by writers", ("sans-serif", 24))
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(80)
            .build_cartesian_2d(
                (0.8..most * 1.25).log_scale(),
                (low.max(1.0) * 0.5..high * 2.0).log_scale(),
            )
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .x_desc("concurrent writers, each on its own aggregate")
            .x_label_formatter(&|writers| format!("{}", writers.round() as u64))
            .y_desc("appends per second (one event each)")
            .y_label_formatter(&|rate| thousands(rate.round() as u64))
            .draw()
            .map_err(plot_error)?;
        let engines = engines_of(rows.iter().map(|row| row.engine));
        for (index, engine) in engines.iter().enumerate() {
            let color = Palette99::pick(index).to_rgba();
            let points: Vec<(f64, f64)> = rows
                .iter()
                .filter(|row| row.engine == *engine)
                .map(|row| (row.writers as f64, row.appends_per_second))
                .collect();
            chart
                .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
                .map_err(plot_error)?
                .label(engine.name())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
            chart
                .draw_series(
                    points
                        .iter()
                        .map(|&point| Circle::new(point, 3, color.filled())),
                )
                .map_err(plot_error)?;
        }
        finish(&mut chart, &root, SeriesLabelPosition::LowerRight)
    }

    /// Event count against load time, per engine, with and without snapshots; log scales.
    fn chart(&self, path: &Path) -> anyhow::Result<()> {
        if self.loads.is_empty() {
            return Ok(());
        }
        let points = self
            .loads
            .iter()
            .flat_map(|row| [row.without.median_ms, row.with_every_100.median_ms]);
        let (low, high) = points.fold((f64::MAX, f64::MIN), |(lo, hi), ms| {
            (lo.min(ms), hi.max(ms))
        });
        let events = self.loads.iter().map(|row| row.events as f64);
        let (first, last) = events.fold((f64::MAX, f64::MIN), |(lo, hi), n| (lo.min(n), hi.max(n)));
        let root = SVGBackend::new(path, (960, 600)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let mut chart = ChartBuilder::on(&root)
            .caption("eventkv: load time by event count", ("sans-serif", 24))
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(72)
            .build_cartesian_2d(
                (first * 0.8..last * 1.25).log_scale(),
                (low * 0.5..high * 2.0).log_scale(),
            )
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .x_desc("events in the aggregate")
            .x_label_formatter(&|events| format!("{}", *events as u64))
            .y_desc("load time (ms, median)")
            .draw()
            .map_err(plot_error)?;
        let engines = engines_of(self.loads.iter().map(|row| row.engine));
        for (index, engine) in engines.iter().enumerate() {
            let color = Palette99::pick(index).to_rgba();
            let rows: Vec<&LoadRow> = self
                .loads
                .iter()
                .filter(|row| row.engine == *engine)
                .collect();
            let without: Vec<(f64, f64)> = rows
                .iter()
                .map(|r| (r.events as f64, r.without.median_ms))
                .collect();
            let with: Vec<(f64, f64)> = rows
                .iter()
                .map(|r| (r.events as f64, r.with_every_100.median_ms))
                .collect();
            chart
                .draw_series(LineSeries::new(without.clone(), color.stroke_width(2)))
                .map_err(plot_error)?
                .label(format!("{} without snapshot", engine.name()))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
            chart
                .draw_series(
                    without
                        .iter()
                        .map(|&point| Circle::new(point, 3, color.filled())),
                )
                .map_err(plot_error)?;
            chart
                .draw_series(DashedLineSeries::new(
                    with.clone(),
                    6,
                    4,
                    color.stroke_width(2),
                ))
                .map_err(plot_error)?
                .label(format!("{} snapshot every 100", engine.name()))
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(1))
                });
            chart
                .draw_series(
                    with.iter()
                        .map(|&point| TriangleMarker::new(point, 4, color.filled())),
                )
                .map_err(plot_error)?;
        }
        finish(&mut chart, &root, SeriesLabelPosition::UpperLeft)
    }
}

fn plot_error(error: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("drawing the chart: {error}")
}

#[cfg(test)]
mod tests {
    use super::{against_one, thousands};
    use crate::cli::EngineName;
    use crate::writers::{Scenario, WritersRow};

    fn row(engine: EngineName, scenario: Scenario, writers: usize, rate: f64) -> WritersRow {
        WritersRow {
            engine,
            scenario,
            writers,
            appends_per_second: rate,
            p50_ms: 1.0,
            p99_ms: 2.0,
            conflicts: 0,
        }
    }

    #[test]
    fn writers_are_compared_with_one_writer_or_one_process() {
        let (sqlite, redb) = (EngineName::named("sqlite"), EngineName::named("redb"));
        let rows = vec![
            row(sqlite, Scenario::OwnAggregate, 1, 1000.0),
            row(sqlite, Scenario::OwnAggregate, 8, 4000.0),
            row(sqlite, Scenario::SameAggregate, 8, 500.0),
            row(sqlite, Scenario::TwoProcesses, 16, 6000.0),
            row(redb, Scenario::OwnAggregate, 1, 3000.0),
            row(redb, Scenario::OwnAggregate, 32, 30000.0),
        ];
        let ratios: Vec<Option<f64>> = rows.iter().map(|r| against_one(&rows, r)).collect();
        assert_eq!(
            ratios,
            [Some(1.0), Some(4.0), None, Some(1.5), Some(1.0), Some(10.0)]
        );
        // Without its base row, a row has no ratio.
        assert_eq!(against_one(&rows[3..], &rows[3]), None);
    }

    #[test]
    fn thousands_are_separated() {
        assert_eq!(thousands(100), "100");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(100_000), "100,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
