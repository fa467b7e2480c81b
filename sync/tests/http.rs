//! The sync protocol through real HTTP, on a store of every engine of the build
//! (PostgreSQL in a schema of its own): pushes and their answers, pulls and long polls,
//! authentication, bad requests, and concurrent clients.

mod common;

use std::collections::{BTreeSet, HashSet};
use std::time::{Duration, Instant};

use common::{Client, append, event, serve, stores, with_auth};
use eventkv_sync::server::{Principal, SyncLimits, Tokens, TypeSet};
use serde_json::{Value, json};

/// Runs `case` on a fresh store of each engine, then removes the store.
macro_rules! on_every_engine {
    ($name:literal, |$served:ident| $case:expr) => {{
        let dir = tempfile::tempdir().expect("temp dir");
        let engines = stores(dir.path(), $name).await;
        assert!(!engines.is_empty(), "no engine in this build");
        for (engine, url) in engines {
            eprintln!("{}: {engine}", $name);
            {
                let $served = serve(&url, None, SyncLimits::default()).await;
                $case;
            }
            let _ = eventkv_backends::destroy(&url).await;
        }
    }};
}

fn status(result: &Value) -> &str {
    result["status"].as_str().expect("status")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_are_answered_one_by_one_and_replays_are_duplicates() {
    on_every_engine!("answers", |served| {
        let client = Client::new(&served, None);
        let first = [
            event("Opened", &json!({"owner": "ann"})),
            event("Deposited", &json!({"amount": 5})),
        ];
        let other = [event("Opened", &json!({"owner": "bob"}))];
        let appends = json!([
            append("Account", "a", 0, &first),
            append("Account", "b", 0, &other),
        ]);
        let results = client.push_ok(appends.clone()).await;
        assert_eq!(status(&results[0]), "applied", "{results:?}");
        assert_eq!(
            status(&results[1]),
            "applied",
            "unrelated aggregates never conflict"
        );
        assert_eq!(results[0]["first_version"], 1);
        assert_eq!(results[0]["last_version"], 2);
        let positions: BTreeSet<u64> = results
            .iter()
            .flat_map(|r| {
                let (a, b) = (
                    r["first_position"].as_u64().expect("present"),
                    r["last_position"].as_u64().expect("present"),
                );
                a..=b
            })
            .collect();
        assert_eq!(positions, (1..=3).collect(), "gap-free positions");

        // The same push again (its answer was lost): duplicates, the original places.
        let again = client.push_ok(appends).await;
        for (result, original) in again.iter().zip(&results) {
            assert_eq!(status(result), "duplicate", "{result}");
            for field in [
                "first_version",
                "last_version",
                "first_position",
                "last_position",
            ] {
                assert_eq!(result[field], original[field], "{field}");
            }
        }
        let (events, cursor) = client.pull_all(0).await;
        assert_eq!((events.len(), cursor), (3, 3), "nothing stored twice");

        // A conflict carries the events after the expected version; the later appends
        // of the same aggregate are skipped, another aggregate's still land.
        let late = [event("Deposited", &json!({"amount": 7}))];
        let then = [event("Withdrawn", &json!({"amount": 1}))];
        let results = client
            .push_ok(json!([
                append("Account", "a", 1, &late),
                append("Account", "a", 2, &then),
                append("Account", "c", 0, &other_event()),
            ]))
            .await;
        assert_eq!(status(&results[0]), "conflict", "{results:?}");
        assert_eq!(results[0]["actual_version"], 2);
        let missed = results[0]["events"].as_array().expect("events");
        assert_eq!(missed.len(), 1, "the events after version 1");
        assert_eq!(missed[0]["version"], 2);
        assert_eq!(missed[0]["event_id"], first[1]["event_id"]);
        assert_eq!(missed[0]["payload"], json!({"amount": 5}));
        assert_eq!(results[0]["more"], false);
        assert_eq!(
            status(&results[1]),
            "skipped",
            "made on top of a refused append"
        );
        assert_eq!(status(&results[2]), "applied");
        let (events, _) = client.pull_all(0).await;
        assert_eq!(events.len(), 4, "the skipped append was not stored");

        // Rejected for good: a bad name, an empty append, a payload of the wrong shape.
        let results = client
            .push_ok(json!([
                append("", "x", 0, &other_event()),
                append("Account", "empty", 0, &[]),
                append(
                    "Account",
                    "bin",
                    0,
                    &[json!({
                        "event_id": eventkv::Uuid::new_v4(), "event_type": "Raw",
                        "codec": "bincode", "payload": {"not": "base64"}
                    })]
                ),
            ]))
            .await;
        for result in &results {
            assert_eq!(status(result), "rejected", "{result}");
            assert_eq!(result["reason"], "invalid", "{result}");
        }
        assert!(
            results[2]["message"]
                .as_str()
                .expect("present")
                .contains("base64"),
            "{results:?}"
        );
    });
}

fn other_event() -> [Value; 1] {
    [event("Opened", &json!({"owner": "cy"}))]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_poll_returns_as_soon_as_another_client_pushes() {
    on_every_engine!("long_poll", |served| {
        let reader = Client::new(&served, None);
        let writer = Client::new(&served, None);
        // Nothing new: a pull that waits 300 ms answers after about that, empty.
        let started = Instant::now();
        let (code, body) = reader.pull_raw("protocol=1&after=0&wait_ms=300").await;
        assert_eq!(code, 200, "{body}");
        assert!(started.elapsed() >= Duration::from_millis(290), "it waited");
        assert_eq!(body["events"], json!([]));
        assert_eq!(body["cursor"], 0);

        let waiting = tokio::spawn({
            let reader = reader.clone();
            async move {
                let started = Instant::now();
                let answer = reader.pull_raw("protocol=1&after=0&wait_ms=20000").await;
                (answer, started.elapsed())
            }
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!waiting.is_finished(), "the pull waits for an event");
        let results = writer
            .push_ok(json!([append(
                "Ledger",
                "l",
                0,
                &[event("Added", &json!({"n": 1}))]
            )]))
            .await;
        assert_eq!(status(&results[0]), "applied");
        let ((code, body), waited) = waiting.await.expect("pull");
        assert_eq!(code, 200, "{body}");
        assert_eq!(body["events"].as_array().map(Vec::len), Some(1), "{body}");
        assert_eq!(
            (body["cursor"].as_u64(), body["head"].as_u64()),
            (Some(1), Some(1))
        );
        assert!(
            waited < Duration::from_secs(5),
            "woken by the push, not by the timeout: {waited:?}"
        );
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_of_another_process_wake_a_long_poll_by_polling() {
    // A second store on the same engine (another process's writes): no wake-up call
    // reaches the server, its poll finds them.
    let dir = tempfile::tempdir().expect("temp dir");
    for (engine, url) in stores(dir.path(), "other_process").await {
        if !eventkv_backends::engine(engine)
            .is_some_and(eventkv_backends::Engine::is_shared_by_processes)
        {
            continue;
        }
        eprintln!("other_process: {engine}");
        let served = serve(&url, None, SyncLimits::default()).await;
        let other = eventkv::KvEventStore::new(eventkv_backends::open(&url).await.expect("open"));
        let reader = Client::new(&served, None);
        let waiting =
            tokio::spawn(async move { reader.pull_raw("protocol=1&after=0&wait_ms=20000").await });
        tokio::time::sleep(Duration::from_millis(100)).await;
        let event = eventkv::NewEvent::encode("Added", &json!({"n": 1}), eventkv::Codec::Json)
            .expect("encode");
        eventkv::EventStore::append(&other, "Ledger", "elsewhere", 0, &[event])
            .await
            .expect("append");
        let started = Instant::now();
        let (code, body) = waiting.await.expect("pull");
        assert_eq!(code, 200, "{engine}: {body}");
        assert_eq!(
            body["events"].as_array().map(Vec::len),
            Some(1),
            "{engine}: {body}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{engine}: found by polling"
        );
        drop(served);
        let _ = eventkv_backends::destroy(&url).await;
    }
}

const ALICE: &str = "alice-token-0123456789";
const BOB: &str = "bob-token-0123456789abc";
const NOBODY: &str = "nobody-token-0123456789";

fn tokens() -> Tokens {
    let mut tokens = Tokens::new();
    let principal = |name: &str, read: &[&str], write: &[&str]| Principal {
        name: name.to_owned(),
        read: TypeSet::of(read),
        write: TypeSet::of(write),
    };
    tokens
        .insert(
            ALICE,
            principal("alice", &["Ledger", "Shared"], &["Ledger"]),
        )
        .expect("alice");
    tokens
        .insert(BOB, principal("bob", &["*"], &["Secret", "Shared"]))
        .expect("bob");
    tokens
        .insert(NOBODY, principal("nobody", &[], &[]))
        .expect("nobody");
    tokens
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_filter_pulls_and_refuse_pushes_outside_a_principals_types() {
    let dir = tempfile::tempdir().expect("temp dir");
    for (engine, url) in stores(dir.path(), "auth").await {
        let served = serve(&url, Some(with_auth(tokens())), SyncLimits::default()).await;
        let alice = Client::new(&served, Some(ALICE));
        let bob = Client::new(&served, Some(BOB));

        // Bob writes secrets around a shared event; Alice may not write them.
        let mut appends = Vec::new();
        for n in 0..5 {
            appends.push(append(
                "Secret",
                &format!("s{n}"),
                0,
                &[event("Hidden", &json!({"n": n}))],
            ));
        }
        appends.push(append("Shared", "s", 0, &[event("Seen", &json!({}))]));
        for n in 5..10 {
            appends.push(append(
                "Secret",
                &format!("s{n}"),
                0,
                &[event("Hidden", &json!({"n": n}))],
            ));
        }
        let results = bob.push_ok(Value::Array(appends)).await;
        assert!(
            results.iter().all(|r| status(r) == "applied"),
            "{engine}: {results:?}"
        );
        let results = alice
            .push_ok(json!([
                append("Secret", "mine", 0, &[event("Hidden", &json!({}))]),
                append("Ledger", "l", 0, &[event("Added", &json!({}))]),
            ]))
            .await;
        assert_eq!(status(&results[0]), "rejected", "{engine}");
        assert_eq!(results[0]["reason"], "forbidden", "{engine}");
        assert_eq!(status(&results[1]), "applied", "{engine}");

        // Alice's pulls see only her types, and the cursor moves past the rest.
        let (code, body) = alice.pull_raw("protocol=1&after=0&limit=3").await;
        assert_eq!(code, 200, "{engine}: {body}");
        assert_eq!(body["events"], json!([]), "{engine}: no secret leaks");
        assert_eq!(body["cursor"], 3, "{engine}: past what she may not see");
        assert_eq!(body["more"], true, "{engine}");
        let (events, cursor) = alice.pull_all(0).await;
        let types: Vec<&str> = events
            .iter()
            .map(|e| e["aggregate_type"].as_str().expect("present"))
            .collect();
        assert_eq!(types, ["Shared", "Ledger"], "{engine}");
        assert_eq!(cursor, 12, "{engine}: the cursor reaches the head");
        let (everything, _) = bob.pull_all(0).await;
        assert_eq!(everything.len(), 12, "{engine}");
        // A long poll that only secrets would wake answers at its deadline, past them.
        let (code, body) = alice.pull_raw("protocol=1&after=12&wait_ms=400").await;
        assert_eq!((code, body["events"].clone()), (200, json!([])), "{engine}");

        // No token, an unknown token, a principal that may read nothing.
        let anonymous = Client::new(&served, None);
        let (code, body) = anonymous.pull_raw("protocol=1").await;
        assert_eq!(
            (code, body["error"]["code"].as_str()),
            (401, Some("unauthorized")),
            "{engine}"
        );
        let stranger = Client::new(&served, Some("stranger-token-0123456789"));
        let (code, body) = stranger.push(json!([])).await;
        assert_eq!(
            (code, body["error"]["code"].as_str()),
            (401, Some("unauthorized")),
            "{engine}"
        );
        let nobody = Client::new(&served, Some(NOBODY));
        let (code, body) = nobody.pull_raw("protocol=1").await;
        assert_eq!(
            (code, body["error"]["code"].as_str()),
            (403, Some("forbidden")),
            "{engine}"
        );
        drop(served);
        let _ = eventkv_backends::destroy(&url).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_coded_answers_and_store_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    for (engine, url) in stores(dir.path(), "bad").await {
        let limits = SyncLimits {
            max_body_bytes: 64 * 1024,
            max_appends_per_push: 10,
            max_events_per_push: 20,
            ..SyncLimits::default()
        };
        let served = serve(&url, None, limits).await;
        let client = Client::new(&served, None);
        let coded = |expected_status: u16, expected_code: &str, (code, body): (u16, Value)| {
            assert_eq!(code, expected_status, "{engine}: {body}");
            assert_eq!(body["error"]["code"], expected_code, "{engine}: {body}");
            let message = body["error"]["message"].as_str().expect("message");
            assert!(
                !message.is_empty() && !message.contains('\n'),
                "{engine}: one line: {message:?}"
            );
        };
        coded(
            400,
            "malformed_body",
            client.push_raw(b"{not json".to_vec()).await,
        );
        coded(
            400,
            "malformed_body",
            client
                .push_raw(br#"{"protocol":1,"appends":[{"aggregate_type":"A"}]}"#.to_vec())
                .await,
        );
        coded(
            400,
            "malformed_body",
            client
                .push_raw(br#"{"protocol":1,"appends":[],"extra":true}"#.to_vec())
                .await,
        );
        coded(
            400,
            "unsupported_protocol",
            client
                .push_raw(br#"{"protocol":2,"operations":[]}"#.to_vec())
                .await,
        );
        coded(
            400,
            "unsupported_protocol",
            client.pull_raw("protocol=7").await,
        );
        coded(
            400,
            "unsupported_protocol",
            client.pull_raw("after=0").await,
        );
        coded(
            400,
            "invalid_request",
            client.pull_raw("protocol=1&after=-1").await,
        );
        coded(
            400,
            "invalid_request",
            client.pull_raw("protocol=1&limit=0").await,
        );
        coded(
            400,
            "invalid_request",
            client.pull_raw("protocol=1&limit=5000").await,
        );
        coded(
            400,
            "invalid_request",
            client.pull_raw("protocol=1&wait_ms=99999999").await,
        );
        coded(
            400,
            "invalid_request",
            client.pull_raw("protocol=1&from=3").await,
        );
        let big = json!({"protocol": 1, "appends": [append("A", "big", 0, &[event("Big", &json!("x".repeat(100 * 1024)))])]});
        coded(
            413,
            "too_large",
            client
                .push_raw(serde_json::to_vec(&big).expect("present"))
                .await,
        );
        let many: Vec<Value> = (0..11)
            .map(|n| append("A", &format!("m{n}"), 0, &[event("E", &json!(n))]))
            .collect();
        coded(413, "too_large", client.push(Value::Array(many)).await);
        let events: Vec<Value> = (0..21).map(|n| event("E", &json!(n))).collect();
        coded(
            413,
            "too_large",
            client.push(json!([append("A", "e", 0, &events)])).await,
        );
        let request = reqwest::Client::new()
            .get(format!("{}/nowhere", served.base))
            .send()
            .await
            .expect("present");
        assert_eq!(request.status().as_u16(), 404, "{engine}");
        let request = reqwest::Client::new()
            .delete(format!("{}/push", served.base))
            .send()
            .await
            .expect("present");
        assert_eq!(request.status().as_u16(), 405, "{engine}");
        let (events, cursor) = client.pull_all(0).await;
        assert_eq!((events.len(), cursor), (0, 0), "{engine}: nothing stored");
        drop(served);
        let _ = eventkv_backends::destroy(&url).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_clients_pushing_to_shared_and_own_aggregates_lose_nothing() {
    on_every_engine!("eight", |served| {
        const CLIENTS: usize = 8;
        const ROUNDS: u64 = 15;
        let tasks: Vec<_> = (0..CLIENTS)
            .map(|n| {
                let client = Client::new(&served, None);
                tokio::spawn(async move {
                    let mut ids = Vec::new();
                    let mut shared_version = 0;
                    for round in 0..ROUNDS {
                        // Its own aggregate: never a conflict.
                        let own = event("Own", &json!({"client": n, "round": round}));
                        ids.push(own["event_id"].as_str().expect("present").to_owned());
                        let results = client
                            .push_ok(json!([append("Own", &format!("c{n}"), round, &[own])]))
                            .await;
                        assert_eq!(status(&results[0]), "applied", "{results:?}");
                        // The shared aggregate: rebase on conflicts until it lands.
                        let shared = event("Shared", &json!({"client": n, "round": round}));
                        ids.push(shared["event_id"].as_str().expect("present").to_owned());
                        loop {
                            let results = client
                                .push_ok(json!([append(
                                    "Shared",
                                    "all",
                                    shared_version,
                                    std::slice::from_ref(&shared)
                                )]))
                                .await;
                            match status(&results[0]) {
                                "applied" => {
                                    shared_version =
                                        results[0]["last_version"].as_u64().expect("present");
                                    break;
                                }
                                "conflict" => {
                                    let actual =
                                        results[0]["actual_version"].as_u64().expect("present");
                                    let missed = results[0]["events"].as_array().expect("present");
                                    assert_eq!(
                                        missed.len() as u64,
                                        actual - shared_version,
                                        "{results:?}"
                                    );
                                    shared_version = actual;
                                }
                                other => panic!("client {n}: {other}: {results:?}"),
                            }
                        }
                    }
                    ids
                })
            })
            .collect();
        let mut pushed = HashSet::new();
        for task in tasks {
            pushed.extend(task.await.expect("client"));
        }
        let (events, cursor) = Client::new(&served, None).pull_all(0).await;
        let total = CLIENTS * ROUNDS as usize * 2;
        assert_eq!(events.len(), total, "every event, once");
        assert_eq!(cursor, total as u64);
        let positions: Vec<u64> = events
            .iter()
            .map(|e| e["position"].as_u64().expect("present"))
            .collect();
        assert_eq!(
            positions,
            (1..=total as u64).collect::<Vec<_>>(),
            "gap-free, in order"
        );
        let pulled: HashSet<String> = events
            .iter()
            .map(|e| e["event_id"].as_str().expect("present").to_owned())
            .collect();
        assert_eq!(pulled, pushed);
        let shared: Vec<u64> = events
            .iter()
            .filter(|e| e["aggregate_type"] == "Shared")
            .map(|e| e["version"].as_u64().expect("present"))
            .collect();
        assert_eq!(shared, (1..=(CLIENTS as u64 * ROUNDS)).collect::<Vec<_>>());
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_of_allowed_origins_may_call_the_server_and_no_others() {
    let origin = "http://127.0.0.1:8000";
    let setup: common::Setup =
        Box::new(move |server| server.with_allowed_origins(vec![origin.parse().expect("origin")]));
    let served = serve("memory:", Some(setup), SyncLimits::default()).await;
    let http = reqwest::Client::new();
    let preflight = |from: &'static str| {
        http.request(reqwest::Method::OPTIONS, format!("{}/push", served.base))
            .header("origin", from)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization, content-type",
            )
            .send()
    };
    let allowed = preflight(origin).await.expect("preflight");
    assert_eq!(
        allowed
            .headers()
            .get("access-control-allow-origin")
            .map(|v| v.to_str().expect("text")),
        Some(origin)
    );
    let other = preflight("http://elsewhere.example")
        .await
        .expect("preflight");
    assert!(
        other.headers().get("access-control-allow-origin").is_none(),
        "another origin is not allowed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_hangs_up_mid_push_leaves_nothing_half_done() {
    on_every_engine!("hang_up", |served| {
        let client = Client::new(&served, None);
        let appends: Vec<Value> = (0..300)
            .map(|n| {
                let events = [
                    event("Added", &json!({ "n": n })),
                    event("Added", &json!({ "n": n })),
                ];
                append("Ledger", &format!("h{}", n % 30), (n / 30) * 2, &events)
            })
            .collect();
        let appends = Value::Array(appends);
        // The client gives up after a few milliseconds: the server drops the handler
        // wherever it is (some appends stored, others not).
        let gave_up =
            tokio::time::timeout(Duration::from_millis(3), client.push(appends.clone())).await;
        assert!(gave_up.is_err(), "the push was cut short");
        tokio::time::sleep(Duration::from_millis(200)).await;
        let (stored, _) = client.pull_all(0).await;
        eprintln!(
            "hang_up: {} of 600 events stored before the client gave up",
            stored.len()
        );
        // The same push again: each append is stored now or was before, once.
        let results = client.push_ok(appends.clone()).await;
        for result in &results {
            assert!(
                ["applied", "duplicate"].contains(&status(result)),
                "{result}"
            );
        }
        let (events, cursor) = client.pull_all(0).await;
        assert_eq!(events.len(), 600, "every event once");
        assert_eq!(cursor, 600);
        let pushed: HashSet<&str> = appends
            .as_array()
            .expect("appends")
            .iter()
            .flat_map(|a| a["events"].as_array().expect("events"))
            .map(|e| e["event_id"].as_str().expect("id"))
            .collect();
        let pulled: HashSet<&str> = events
            .iter()
            .map(|e| e["event_id"].as_str().expect("id"))
            .collect();
        assert_eq!(pulled, pushed);
    });
}
