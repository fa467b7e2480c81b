//! Bad input: a clear one-line error naming what was wrong, exit code 2 for bad usage and
//! 1 for a failure, and nothing written.

mod common;

use common::{described, eventkv};

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[cfg(all(feature = "sqlite", feature = "redb"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_urls_and_stores_are_named() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("a.sqlite");
    let url = format!("sqlite:{}", file.display());
    common::seed(&eventkv_cli::open(&url).await.expect("open")).await;

    let missing = format!("sqlite:{}", dir.path().join("typo.sqlite").display());
    let absent = eventkv(&["copy", &missing, &format!("{url}-copy")], None);
    assert_eq!(absent.status.code(), Some(2), "{}", described(&absent));
    assert!(
        stderr(&absent).contains("there is no sqlite store at"),
        "{}",
        described(&absent)
    );
    assert!(
        !dir.path().join("typo.sqlite").exists(),
        "a missing source is not created"
    );

    let unknown = eventkv(&["stats", "mongodb://x"], None);
    assert_eq!(unknown.status.code(), Some(2), "{}", described(&unknown));
    assert!(
        stderr(&unknown).contains("unknown engine URL"),
        "{}",
        described(&unknown)
    );

    // The same file, spelled two ways.
    let relative = format!(
        "sqlite:{}/../{}/a.sqlite",
        dir.path().display(),
        dir.path().file_name().expect("name").to_string_lossy()
    );
    let same = eventkv(&["copy", &url, &relative], None);
    assert_eq!(same.status.code(), Some(2), "{}", described(&same));
    assert!(
        stderr(&same).contains("the same store"),
        "{}",
        described(&same)
    );

    let memory = eventkv(&["copy", &url, "memory:"], None);
    assert_eq!(memory.status.code(), Some(2), "{}", described(&memory));
    assert!(stderr(&memory).contains("lives only as long as this command"));

    let unreachable = eventkv(&["stats", "postgres://postgres@127.0.0.1:1/test"], None);
    assert_eq!(
        unreachable.status.code(),
        Some(1),
        "{}",
        described(&unreachable)
    );
    assert!(
        stderr(&unreachable).contains("cannot reach"),
        "{}",
        described(&unreachable)
    );

    if common::postgres_available("bad_urls_and_stores_are_named").await {
        let schema = common::unique_schema("eventkv_cli_absent");
        let absent = common::postgres_store(&schema);
        let table = eventkv(&["stats", &absent], None);
        assert_eq!(table.status.code(), Some(2), "{}", described(&table));
        assert!(
            stderr(&table).contains("there is no postgres store at"),
            "{}",
            described(&table)
        );
        // Nothing was created: the schema is still absent.
        assert_eq!(eventkv(&["stats", &absent], None).status.code(), Some(2));
        common::drop_schema(&schema).await;
    }

    let target = format!("redb:{}", dir.path().join("b.redb").display());
    let copied = eventkv(&["copy", &url, &target], None);
    assert!(copied.status.success(), "{}", described(&copied));
    let again = eventkv(&["copy", &url, &target], None);
    assert_eq!(again.status.code(), Some(2), "{}", described(&again));
    assert!(
        stderr(&again).contains("not empty"),
        "{}",
        described(&again)
    );

    let prune = eventkv(&["snapshots", "prune", &url, "--type", "Account"], None);
    assert_eq!(
        prune.status.code(),
        Some(2),
        "--all or --schema-below is required"
    );
}

/// The event id of a JSON line.
fn id_of(line: &str) -> String {
    let value: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
    value["event_id"].as_str().expect("an event id").to_owned()
}

/// `line` with event id `id`.
fn with_id(line: &str, id: &str) -> String {
    line.replace(&id_of(line), id)
}

#[cfg(feature = "sqlite")]
#[test]
fn an_import_with_a_bad_line_imports_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite:{}", dir.path().join("import.sqlite").display());
    let line = |version: u64| {
        format!(
            r#"{{"aggregate_type":"T","aggregate_id":"a","version":{version},"event_id":"{}","event_type":"E","codec":"json","payload":{{"n":{version}}}}}"#,
            eventkv::Uuid::new_v4()
        )
    };
    let cases = [
        (format!("{}\n{}\n{{not json\n", line(1), line(2)), "line 3:"),
        (
            format!("{}\n{}\n", line(1), line(3)),
            "line 2: T/a version 3 does not follow version 1",
        ),
        (line(1).replace("\"json\"", "\"yaml\""), "line 1:"),
        (
            line(1).replace(
                "\"json\",\"payload\":{\"n\":1}",
                "\"bincode\",\"payload\":\"%%%\"",
            ),
            "line 1: payload is not base64",
        ),
        (
            line(1).replace("\"version\":1", "\"version\":1,\"extra\":1"),
            "line 1: unknown field",
        ),
        (
            format!("{}\n{}\n", line(1), line(2).replace("\"E\"", "\"\"")),
            "line 2: event type must be 1 to 65535 bytes, got 0 bytes",
        ),
        (
            format!(
                "{}\n{}\n",
                line(1),
                line(2).replace("\"E\"", &format!("\"{}\"", "e".repeat(65_536)))
            ),
            "line 2: event type must be 1 to 65535 bytes, got 65536 bytes",
        ),
        (
            // The same event id twice in one run of lines (one append).
            {
                let first = line(1);
                let second = with_id(&line(2), &id_of(&first));
                format!("{first}\n{second}\n")
            },
            "line 2: event id",
        ),
        (
            // The same event id in two runs of one aggregate (two appends).
            {
                let first = line(1);
                let other = line(1).replace("\"a\"", "\"b\"");
                let third = with_id(&line(2), &id_of(&first));
                format!("{first}\n{other}\n{third}\n")
            },
            "line 3: event id",
        ),
    ];
    let mut binary = format!("{}\n", line(1)).into_bytes();
    binary.extend_from_slice(b"\xff\xfe not text\n");
    let output = eventkv(&["import", &url], Some(&binary));
    assert_eq!(output.status.code(), Some(2), "{}", described(&output));
    assert!(
        stderr(&output).contains("line 2: not UTF-8"),
        "{}",
        described(&output)
    );
    for (input, expected) in cases {
        let output = eventkv(&["import", &url], Some(input.as_bytes()));
        assert_eq!(output.status.code(), Some(2), "{}", described(&output));
        assert!(
            stderr(&output).contains(expected),
            "{expected}: {}",
            described(&output)
        );
        let exported = eventkv(&["export", &url], None);
        assert!(
            exported.stdout.is_empty(),
            "nothing imported: {}",
            described(&exported)
        );
    }
}

/// A destination engine this build left out is named, with its cargo feature.
#[cfg(all(feature = "sqlite", not(feature = "redb")))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compiled_out_engine_is_named() {
    let dir = tempfile::tempdir().expect("temp dir");
    let source = format!("sqlite:{}", dir.path().join("source.sqlite").display());
    drop(eventkv_cli::open(&source).await.expect("create the source"));
    let target = format!("redb:{}", dir.path().join("target.redb").display());
    let output = eventkv(&["copy", &source, &target], None);
    assert_eq!(output.status.code(), Some(2), "{}", described(&output));
    assert!(
        stderr(&output).contains("not compiled in") && stderr(&output).contains("\"redb\""),
        "{}",
        described(&output)
    );
}
