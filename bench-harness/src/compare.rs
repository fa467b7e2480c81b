//! The same workload on eventsource-py 0.15.1 (bench-harness/compare/eventsource_py.py).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// What the script reports.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct PyReport {
    pub library: String,
    pub version: String,
    pub python: String,
    pub results: Vec<PyRow>,
}

/// One engine and event count.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct PyRow {
    pub engine: String,
    pub events: u64,
    pub without_ms: PyStats,
    pub with_ms: PyStats,
    pub behind_ms: PyStats,
}

/// Load times in milliseconds.
#[derive(Clone, Copy, Debug, Deserialize, Serialize)]
pub struct PyStats {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

/// The comparison script shipped with the harness.
pub fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("compare/eventsource_py.py")
}

/// Runs the script with `python` on the same event counts. `Ok(None)` when it reports
/// that Python 3.13 or the package is missing (it says which on stderr).
pub fn run(python: &Path, events: &[u64], quick: bool) -> anyhow::Result<Option<PyReport>> {
    let counts: Vec<String> = events.iter().map(u64::to_string).collect();
    let mut command = Command::new(python);
    command
        .arg(script())
        .args(["--events", &counts.join(","), "--engines", "memory,sqlite"]);
    if quick {
        command.arg("--quick");
    }
    let output = command
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", python.display()))?;
    match output.status.code() {
        Some(0) => parse(&output.stdout).map(Some),
        Some(3) => Ok(None),
        _ => anyhow::bail!(
            "{} {} failed: {}",
            python.display(),
            script().display(),
            output.status
        ),
    }
}

/// Reads a report the script printed earlier.
pub fn load(file: &Path) -> anyhow::Result<PyReport> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    parse(&bytes)
        .with_context(|| format!("{} is not a report of eventsource_py.py", file.display()))
}

fn parse(bytes: &[u8]) -> anyhow::Result<PyReport> {
    Ok(serde_json::from_slice(bytes)?)
}
