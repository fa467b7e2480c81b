//! Bad input stops the harness with one clear line and a non-zero exit, before any work.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

fn bench(args: &[&str]) -> (Output, Duration) {
    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_eventkv-bench"))
        .args(args)
        .env_remove("EVENTKV_POSTGRES_URL")
        .output()
        .expect("run eventkv-bench");
    (output, started.elapsed())
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn unknown_names_and_non_numeric_counts_are_refused() {
    for (args, needle) in [
        (&["--engines", "memory,mongodb"][..], "mongodb"),
        (&["--codecs", "protobuf"][..], "protobuf"),
        (
            &["--events", "100,many"][..],
            "\"many\" is not a whole number",
        ),
        (&["--thresholds", "often"][..], "not a threshold"),
    ] {
        let (output, _) = bench(args);
        assert!(!output.status.success(), "{args:?} must fail");
        assert!(output.stdout.is_empty(), "{args:?}: no table is printed");
        assert!(
            stderr(&output).contains(needle),
            "{args:?}: {}",
            stderr(&output)
        );
    }
}

#[test]
fn an_unreachable_postgres_is_one_clear_line_before_any_work() {
    let (output, elapsed) = bench(&[
        "--engines",
        "memory,postgres",
        "--postgres",
        "postgres://postgres:s3cret-pw@127.0.0.1:1/test",
    ]);
    assert!(!output.status.success());
    assert!(output.stdout.is_empty(), "no case ran");
    let message = stderr(&output);
    assert_eq!(message.trim().lines().count(), 1, "one line: {message}");
    assert!(
        message.contains("127.0.0.1:1") && message.contains("unreachable"),
        "{message}"
    );
    assert!(
        !message.contains("s3cret-pw") && message.contains("postgres:***@"),
        "the password is hidden: {message}"
    );
    assert!(
        elapsed < Duration::from_secs(10),
        "refused at once, took {elapsed:?}"
    );
}

#[test]
fn a_quick_run_prints_the_table_and_writes_its_files() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("results");
    let (output, _) = bench(&[
        "--quick",
        "--engines",
        "memory,redb",
        "--events",
        "100,200",
        "--no-progress",
        "--out",
        out.to_str().expect("utf-8 path"),
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let table = String::from_utf8(output.stdout).expect("utf-8");
    assert!(
        table.contains(
            "| Event Count | Without Snapshot | With Snapshot (every 100) | Improvement |"
        ),
        "{table}"
    );
    assert!(
        table.contains("## redb") && table.contains("| 200 |"),
        "{table}"
    );
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("results.json")).expect("results.json"))
            .expect("valid JSON");
    assert_eq!(
        json["loads"].as_array().map(Vec::len),
        Some(4),
        "2 engines x 2 counts"
    );
    assert!(
        std::fs::read_to_string(out.join("chart.svg"))
            .expect("chart.svg")
            .starts_with("<svg")
    );
    assert_eq!(
        std::fs::read_to_string(out.join("results.md")).expect("results.md"),
        table
    );
}

#[test]
fn the_eventsource_py_comparison_runs_or_says_why_it_was_skipped() {
    let Ok(found) = Command::new("python3").arg("--version").output() else {
        eprintln!("python3 not found: nothing to run the comparison script with");
        return;
    };
    assert!(found.status.success());
    let (output, _) = bench(&[
        "--quick",
        "--engines",
        "memory,sqlite",
        "--events",
        "100",
        "--no-progress",
        "--eventsource-py",
        "python3",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let table = String::from_utf8(output.stdout.clone()).expect("utf-8");
    let compared = table.contains("## Side by side with eventsource-py");
    let skipped =
        table.contains("eventsource-py comparison skipped") && stderr(&output).contains("skipped");
    assert!(
        compared || skipped,
        "either a comparison or a reason: {table}"
    );
}
