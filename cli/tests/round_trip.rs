//! A store moved sled → redb → SQLite → PostgreSQL → memory, checked at every step: the
//! destination verifies whole, holds the same records byte for byte, and counts the same.

mod common;

use eventkv_cli::{Progress, compare, copy, stats, verify};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_moves_through_every_engine_unchanged() {
    let dir = tempfile::tempdir().expect("temp dir");
    let with_postgres =
        common::postgres_available("a_store_moves_through_every_engine_unchanged").await;
    let schema = common::unique_schema("eventkv_cli_trip");
    let mut urls = vec![
        format!("sled:{}", dir.path().join("trip.sled").display()),
        format!("redb:{}", dir.path().join("trip.redb").display()),
        format!("sqlite:{}", dir.path().join("trip.sqlite").display()),
    ];
    if with_postgres {
        urls.push(common::postgres_store(&schema));
    }
    urls.push("memory:".to_owned());

    let first = eventkv_cli::open(&urls[0])
        .await
        .expect("open the first store");
    common::seed(&first).await;
    let seeded = stats(&first, &Progress::hidden()).await.expect("stats");
    assert_eq!(seeded.global_position, common::EVENTS);
    assert_eq!(
        seeded.types["Account"].events,
        common::ACCOUNTS * common::ACCOUNT_EVENTS
    );
    assert_eq!(seeded.types["Document"].aggregates, common::DOCUMENTS);
    assert!(
        seeded.snapshots["Account"][&1] >= common::ACCOUNTS,
        "bincode snapshots"
    );
    assert!(
        seeded.snapshots["Document"][&1] >= common::DOCUMENTS,
        "JSON snapshots"
    );

    let mut source = first;
    for pair in urls.windows(2) {
        let destination = eventkv_cli::open(&pair[1])
            .await
            .expect("open the destination");
        let report = copy(&source, &destination, false, &Progress::hidden())
            .await
            .unwrap_or_else(|error| panic!("{} -> {}: {error}", pair[0], pair[1]));
        assert_eq!(report.events, common::EVENTS, "{} -> {}", pair[0], pair[1]);
        let checked = verify(&destination, &Progress::hidden())
            .await
            .expect("verify");
        assert_eq!(checked.problems, Vec::new(), "{}: whole", pair[1]);
        assert_eq!(checked.events, common::EVENTS);
        let comparison = compare(&source, &destination).await.expect("compare");
        assert_eq!(
            (comparison.difference_count, comparison.records),
            (0, report.records),
            "{} -> {}: the same records",
            pair[0],
            pair[1]
        );
        let counted = stats(&destination, &Progress::hidden())
            .await
            .expect("stats");
        assert_eq!(counted, seeded, "{}: the same stats", pair[1]);
        eprintln!(
            "{} -> {}: {} records in {:.2} s ({:.0} events/s)",
            eventkv_backends::redact(&pair[0]),
            eventkv_backends::redact(&pair[1]),
            report.records,
            report.seconds,
            report.events_per_second
        );
        source = destination;
    }
    if with_postgres {
        common::drop_schema(&schema).await;
    }
}
