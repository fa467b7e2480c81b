//! The JavaScript API (`EventStore`) on IndexedDB in headless Chromium: results as JS sees
//! them, and every error `code`.
#![cfg(target_arch = "wasm32")]
#![allow(clippy::needless_pass_by_value)] // JS values, as the API takes them

use bytes::Bytes;
use eventkv::{
    Codec, EventMetadata, EventStore as _, KvEventStore, KvSnapshotStore, NewEvent, Snapshot,
    SnapshotStore as _, Timestamp, Uuid,
};
use eventkv_wasm::{Durability, IndexedDbKv, JsEventStore};
use idb::DatabaseEvent as _;
use js_sys::{Array, Function, JSON, Object, Promise, Reflect};
use serde_json::{Value, json};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::wasm_bindgen_test;

wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

/// A fresh database, deleted when the test is done with it.
struct TestDb {
    name: String,
    store: JsEventStore,
}

impl TestDb {
    async fn new() -> TestDb {
        let name = format!("eventkv-js-test-{}", Uuid::new_v4());
        let store = JsEventStore::connect(name.clone(), Durability::Strict)
            .await
            .expect("open");
        TestDb { name, store }
    }

    async fn delete(self) {
        self.store.close();
        delete_database(&self.name).await.expect("delete database");
    }
}

async fn delete_database(name: &str) -> Result<JsValue, JsValue> {
    JsFuture::from(JsEventStore::delete_database(name.into())).await
}

fn js(value: Value) -> JsValue {
    JSON::parse(&value.to_string()).expect("JSON.parse")
}

fn rust(value: &JsValue) -> Value {
    let text = JSON::stringify(value).expect("JSON.stringify");
    serde_json::from_str(&text.as_string().expect("a string")).expect("JSON")
}

async fn ok(promise: Promise) -> Value {
    rust(&JsFuture::from(promise).await.expect("the promise resolves"))
}

/// The rejection of `promise`: its `code`, its message, and the whole error.
async fn rejected(promise: Promise) -> (String, String, JsValue) {
    let error = JsFuture::from(promise)
        .await
        .expect_err("the promise rejects");
    (code_of(&error), message_of(&error), error)
}

fn code_of(error: &JsValue) -> String {
    assert!(
        error.is_instance_of::<js_sys::Error>(),
        "an Error: {error:?}"
    );
    let name = Reflect::get(error, &"name".into()).expect("name");
    assert_eq!(name.as_string().as_deref(), Some("EventKvError"));
    Reflect::get(error, &"code".into())
        .expect("code")
        .as_string()
        .expect("code is a string")
}

fn message_of(error: &JsValue) -> String {
    Reflect::get(error, &"message".into())
        .expect("message")
        .as_string()
        .expect("message is a string")
}

fn deposits(amounts: &[i64]) -> JsValue {
    js(Value::Array(
        amounts
            .iter()
            .map(|amount| json!({ "type": "Deposited", "data": { "amount": amount } }))
            .collect(),
    ))
}

fn events(store: &JsEventStore, id: &str, expected: f64, amounts: &[i64]) -> Promise {
    store.append(
        "Account".into(),
        id.into(),
        expected.into(),
        deposits(amounts),
    )
}

#[wasm_bindgen_test]
async fn append_read_stream_and_read_all_round_trip_json() {
    let db = TestDb::new().await;
    let correlation = Uuid::new_v4();
    let first = js(json!([{
        "type": "Opened",
        "data": { "owner": "Ada", "tags": ["a", "b"], "limit": 1.5, "note": null },
        "correlationId": correlation,
    }]));
    let appended = ok(db
        .store
        .append("Account".into(), "a1".into(), 0.into(), first))
    .await;
    assert_eq!(
        appended,
        json!({ "firstVersion": 1, "lastVersion": 1, "firstPosition": 1, "lastPosition": 1, "pending": false })
    );
    ok(events(&db.store, "b1", 0.0, &[5])).await;
    ok(events(&db.store, "a1", 1.0, &[10, 20])).await;

    let stream = ok(db
        .store
        .read_stream("Account".into(), "a1".into(), None, None))
    .await;
    let stream = stream.as_array().expect("an array");
    assert_eq!(stream.len(), 3);
    assert_eq!(stream[0]["type"], "Opened");
    assert_eq!(
        stream[0]["data"],
        json!({ "owner": "Ada", "tags": ["a", "b"], "limit": 1.5, "note": null })
    );
    assert_eq!(stream[0]["correlationId"], json!(correlation));
    assert_eq!(stream[0]["causationId"], Value::Null);
    assert!(stream[0]["timestamp"].as_f64().expect("a number") > 1.7e12);
    Uuid::parse_str(stream[0]["eventId"].as_str().expect("a string")).expect("a UUID");
    let versions: Vec<_> = stream
        .iter()
        .map(|event| event["version"].clone())
        .collect();
    assert_eq!(versions, [json!(1), json!(2), json!(3)]);
    assert_eq!(stream[2]["data"], json!({ "amount": 20 }));
    assert_eq!(stream[2]["position"], 4);

    let page = ok(db.store.read_stream(
        "Account".into(),
        "a1".into(),
        Some(2.into()),
        Some(1.into()),
    ))
    .await;
    assert_eq!(page.as_array().map(Vec::len), Some(1));
    assert_eq!(page[0]["version"], 2);

    let version = ok(db.store.current_version("Account".into(), "a1".into())).await;
    assert_eq!(version, 3);
    let none = ok(db.store.current_version("Account".into(), "nobody".into())).await;
    assert_eq!(none, 0);

    let all = ok(db.store.read_all(Some(2.into()), None)).await;
    let order: Vec<_> = all
        .as_array()
        .expect("an array")
        .iter()
        .map(|event| (event["position"].clone(), event["aggregateId"].clone()))
        .collect();
    assert_eq!(
        order,
        [
            (json!(2), json!("b1")),
            (json!(3), json!("a1")),
            (json!(4), json!("a1"))
        ]
    );
    db.delete().await;
}

#[wasm_bindgen_test]
async fn a_conflict_names_both_versions_and_writes_nothing() {
    let db = TestDb::new().await;
    ok(events(&db.store, "a1", 0.0, &[1, 2])).await;
    let (code, message, error) = rejected(events(&db.store, "a1", 1.0, &[3])).await;
    assert_eq!(code, "Conflict");
    assert!(
        message.contains("expected version 1, actual version 2"),
        "{message}"
    );
    assert_eq!(
        rust(&Reflect::get(&error, &"expected".into()).expect("expected")),
        1
    );
    assert_eq!(
        rust(&Reflect::get(&error, &"actual".into()).expect("actual")),
        2
    );
    let version = ok(db.store.current_version("Account".into(), "a1".into())).await;
    assert_eq!(version, 2);
    db.delete().await;
}

/// A JS value written in JavaScript.
fn ev(source: &str) -> JsValue {
    js_sys::eval(source).expect("eval")
}

/// Each promise rejects with `InvalidInput` and a one-line message containing the text.
async fn all_invalid(cases: Vec<(Promise, &str)>) {
    for (promise, expected) in cases {
        let (code, message, _) = rejected(promise).await;
        assert_eq!(code, "InvalidInput", "{message}");
        assert!(
            message.contains(expected),
            "{message:?} should say {expected:?}"
        );
        assert!(
            !message.contains('\n') && message.len() < 300,
            "one short line: {message:?}"
        );
    }
}

#[wasm_bindgen_test]
async fn arguments_of_the_wrong_type_reject_with_invalid_input_naming_them() {
    let db = TestDb::new().await;
    let store = &db.store;
    let ok_events = || deposits(&[1]);
    let append = |kind: JsValue, id: JsValue| store.append(kind, id, 0.into(), ok_events());
    all_invalid(vec![
        (
            append(42.into(), "a1".into()),
            "aggregateType must be a string, not the number 42",
        ),
        (
            append("Account".into(), ev("({})")),
            "aggregateId must be a string, not an object",
        ),
        (
            append("Account".into(), true.into()),
            "aggregateId must be a string, not the boolean true",
        ),
        (
            append(ev("Symbol('x')"), "a1".into()),
            "aggregateType must be a string, not a Symbol",
        ),
        (
            append(JsValue::UNDEFINED, "a1".into()),
            "aggregateType is missing",
        ),
        (
            append("Account".into(), JsValue::NULL),
            "aggregateId must be a string, not null",
        ),
        (
            append("Account".into(), ev("1n")),
            "aggregateId must be a string, not a BigInt",
        ),
        (
            store.read_stream(42.into(), "a1".into(), None, None),
            "aggregateType must be a string",
        ),
        (
            store.current_version("Account".into(), ev("['a1']")),
            "aggregateId must be a string, not an array",
        ),
        (
            store.load(ev("() => 1"), "a1".into(), 1.into()),
            "aggregateType must be a string, not a function",
        ),
        (
            store.get_snapshot(ev("({})"), "a1".into()),
            "aggregateType must be a string",
        ),
        (
            store.delete_snapshot("Account".into(), 7.into()),
            "aggregateId must be a string",
        ),
        (
            store.delete_snapshots(42.into(), None),
            "aggregateType must be a string",
        ),
        (
            JsEventStore::open(42.into(), None),
            "name must be a string, not the number 42",
        ),
        (
            JsEventStore::open("x".into(), Some(ev("({ durability: 'eventual' })"))),
            "options.durability must be \"strict\", \"relaxed\" or \"default\"",
        ),
        (
            JsEventStore::open("x".into(), Some(ev("({ durable: true })"))),
            "options has an unknown field \"durable\"",
        ),
        (
            JsEventStore::delete_database(ev("({})")),
            "name must be a string, not an object",
        ),
    ])
    .await;
    assert_eq!(
        ok(store.read_all(None, None)).await,
        json!([]),
        "nothing was written"
    );
    db.delete().await;
}

#[wasm_bindgen_test]
async fn only_a_whole_js_number_is_a_version_or_a_limit() {
    let db = TestDb::new().await;
    let store = &db.store;
    let append =
        |expected: JsValue| store.append("Account".into(), "a1".into(), expected, deposits(&[1]));
    all_invalid(vec![
        (append("1".into()), "expectedVersion must be a whole number from 0 to 2^53 - 1, not the string \"1\""),
        (append(true.into()), "not the boolean true"),
        (append(ev("[1]")), "expectedVersion must be a whole number from 0 to 2^53 - 1, not an array"),
        (append(ev("1n")), "not a BigInt"),
        (append((-1.0).into()), "not -1"),
        (append(0.5.into()), "not 0.5"),
        (append(f64::NAN.into()), "not NaN"),
        (append(9_007_199_254_740_992.0.into()), "not 9007199254740992"),
        (append(JsValue::UNDEFINED), "expectedVersion is missing"),
        // The version left out: the events took its place.
        (store.append("Account".into(), "a1".into(), deposits(&[1]), JsValue::UNDEFINED), "expectedVersion is missing: append(aggregateType, aggregateId, expectedVersion, events)"),
        (store.read_stream("Account".into(), "a1".into(), Some(f64::NAN.into()), None), "fromVersion"),
        (store.read_stream("Account".into(), "a1".into(), Some("2".into()), None), "fromVersion must be a whole number"),
        (store.read_all(None, Some((-5.0).into())), "limit"),
        (store.read_all(None, Some(10_001.into())), "limit must be at most 10000"),
        (store.read_all(None, Some(9_007_199_254_740_991.0.into())), "limit must be at most 10000"),
        (store.read_stream("Account".into(), "a1".into(), Some(1.into()), Some(ev("'10'"))), "limit must be a whole number"),
        (store.delete_snapshots("Account".into(), Some(4_294_967_296.0.into())), "schemaVersionBelow"),
        (store.delete_snapshots("Account".into(), Some("1".into())), "schemaVersionBelow must be a whole number"),
        (store.load("Account".into(), "a1".into(), (-1.0).into()), "schemaVersion"),
        (store.load("Account".into(), "a1".into(), JsValue::UNDEFINED), "schemaVersion is missing"),
    ])
    .await;
    assert_eq!(
        ok(store.current_version("Account".into(), "a1".into())).await,
        0,
        "nothing was written"
    );
    // Left out, or null: the documented defaults.
    ok(events(store, "a1", 0.0, &[1, 2])).await;
    let all = ok(store.read_stream("Account".into(), "a1".into(), None, None)).await;
    assert_eq!(all.as_array().map(Vec::len), Some(2));
    db.delete().await;
}

#[wasm_bindgen_test]
async fn strings_that_are_not_valid_unicode_are_refused_not_merged() {
    let db = TestDb::new().await;
    let store = &db.store;
    let event_type = |kind: &str| ev(&format!("[{{ type: {kind}, data: 1 }}]"));
    all_invalid(vec![
        (
            store.append("Account".into(), ev("'y\\uD800'"), 0.into(), deposits(&[1])),
            "aggregateId is not valid Unicode: a lone surrogate \\uD800 at index 1",
        ),
        (
            store.append("Account".into(), ev("'y\\uDFFF'"), 0.into(), deposits(&[1])),
            "aggregateId is not valid Unicode: a lone surrogate \\uDFFF at index 1",
        ),
        (
            store.append(ev("'\\uD83D'"), "a1".into(), 0.into(), deposits(&[1])),
            "aggregateType is not valid Unicode",
        ),
        (
            store.append(
                "Account".into(),
                "a1".into(),
                0.into(),
                event_type("'Dep\\uDC00osited'"),
            ),
            "events[0].type is not valid Unicode: a lone surrogate \\uDC00 at index 3",
        ),
        (
            store.current_version("Account".into(), ev("'y\\uD800'")),
            "aggregateId is not valid Unicode",
        ),
    ])
    .await;
    // A real U+FFFD, and a surrogate pair, are valid names of their own streams.
    ok(store.append("Account".into(), ev("'y\\uFFFD'"), 0.into(), deposits(&[1]))).await;
    ok(store.append(
        "Account".into(),
        ev("'y\\uD83D\\uDE00'"),
        0.into(),
        event_type("'\\uD83D\\uDE00'"),
    ))
    .await;
    let stream = ok(store.read_stream("Account".into(), "y😀".into(), None, None)).await;
    assert_eq!(stream[0]["type"], "😀");
    assert_eq!(
        ok(store.current_version("Account".into(), "y\u{FFFD}".into())).await,
        1
    );
    db.delete().await;
}

#[wasm_bindgen_test]
async fn bad_events_and_snapshots_are_named_in_one_line() {
    let db = TestDb::new().await;
    let store = &db.store;
    let append = |events: &str| store.append("Account".into(), "a1".into(), 0.into(), ev(events));
    let save = |snapshot: &str| store.save_snapshot(ev(&format!("({snapshot})")));
    all_invalid(vec![
        (append("[{ type: 'X', data: 1 }, { type: 'X', data: { n: 1n } }]"), "events[1].data: a BigInt cannot be stored as JSON"),
        (append("(() => { const a = {}; a.self = a; return [{ type: 'X', data: a }]; })()"), "events[0].data: an object that contains itself cannot be stored as JSON"),
        (append("[{ type: 'X', data: { toJSON() { throw new RangeError('nope\\nsecond line'); } } }]"), "events[0].data: JSON.stringify refused it: nope"),
        (append("[{ type: 'X' }]"), "events[0].data is missing"),
        (append("[{ type: 'X', data: () => 1 }]"), "events[0].data must be a JSON value, not a function"),
        (append("[{ data: 1 }]"), "events[0].type is missing"),
        (append("[{ type: 7, data: 1 }]"), "events[0].type must be a string, not the number 7"),
        (append("[5]"), "events[0] must be an object { type, data, shapeVersion, eventId, correlationId, causationId }, not the number 5"),
        (append("[null]"), "events[0] must be an object"),
        (append("[{ type: 'X', data: 1, payload: 2 }]"), "events[0] has an unknown field \"payload\""),
        (append("[{ type: 'X', data: 1, eventId: 'nope' }]"), "events[0].eventId must be a UUID"),
        (append("[{ type: 'X', data: 1, causationId: 12 }]"), "events[0].causationId must be a string"),
        (append("({ type: 'X', data: 1 })"), "events must be an array of events, not an object"),
        (append("[]"), "at least one event"),
        (append("[{ type: '', data: 1 }]"), "event type"),
        (save("{ aggregateType: 'Account', aggregateId: 'a1', version: 0, schemaVersion: 1, state: {} }"), "version 0"),
        (save("{ aggregateType: 'Account', aggregateId: 'a1', version: 1, state: {} }"), "snapshot.schemaVersion is missing"),
        (save("{ aggregateType: 'Account', aggregateId: 'a1', version: '1', schemaVersion: 1, state: {} }"), "snapshot.version must be a whole number"),
        (save("{ aggregateType: 'Account', aggregateId: 'a1', version: 1, schemaVersion: 1, state: 1n }"), "snapshot.state: a BigInt cannot be stored as JSON"),
        (save("{ aggregateType: 'Account', aggregateId: 'a1', version: 1, schemaVersion: 1, state: {}, extra: 1 }"), "snapshot has an unknown field \"extra\""),
        (store.save_snapshot(JsValue::UNDEFINED), "snapshot is missing"),
    ])
    .await;
    assert_eq!(
        ok(store.current_version("Account".into(), "a1".into())).await,
        0,
        "nothing was written"
    );
    db.delete().await;
}

fn snapshot(id: &str, version: u64, schema_version: u32, balance: i64) -> JsValue {
    js(json!({
        "aggregateType": "Account",
        "aggregateId": id,
        "version": version,
        "schemaVersion": schema_version,
        "state": { "balance": balance },
    }))
}

#[wasm_bindgen_test]
async fn snapshots_are_saved_read_and_deleted() {
    let db = TestDb::new().await;
    let store = &db.store;
    assert_eq!(
        ok(store.get_snapshot("Account".into(), "a1".into())).await,
        Value::Null
    );
    // A snapshot is taken at a stored event: none above the stream's head.
    let (code, message, _) = rejected(store.save_snapshot(snapshot("a1", 5, 1, 50))).await;
    assert_eq!(code, "InvalidInput");
    assert!(message.contains("no event at version 5"), "{message}");
    for id in ["a1", "a2", "a3", "a4"] {
        ok(events(store, id, 0.0, &[10, 10, 10, 10, 10])).await;
    }
    for (version, expected) in [
        (50, "no event at version 50"),
        (
            9_007_199_254_740_994,
            "snapshot.version must be a whole number",
        ),
    ] {
        let (code, message, _) =
            rejected(store.save_snapshot(snapshot("a1", version, 1, 50))).await;
        assert_eq!(code, "InvalidInput");
        assert!(message.contains(expected), "{message}");
    }
    assert_eq!(
        ok(store.save_snapshot(snapshot("a1", 5, 1, 50))).await,
        true
    );
    assert_eq!(
        ok(store.save_snapshot(snapshot("a1", 3, 1, 30))).await,
        false,
        "older"
    );
    let stored = ok(store.get_snapshot("Account".into(), "a1".into())).await;
    assert_eq!(stored["version"], 5);
    assert_eq!(stored["schemaVersion"], 1);
    assert_eq!(stored["state"], json!({ "balance": 50 }));
    assert!(stored["createdAt"].as_f64().expect("a number") > 1.7e12);

    ok(store.save_snapshot(snapshot("a2", 1, 2, 0))).await;
    ok(store.save_snapshot(snapshot("a3", 1, 3, 0))).await;
    assert_eq!(
        ok(store.delete_snapshots("Account".into(), Some(3.into()))).await,
        2
    );
    assert_eq!(
        ok(store.delete_snapshot("Account".into(), "a3".into())).await,
        true
    );
    assert_eq!(
        ok(store.delete_snapshot("Account".into(), "a3".into())).await,
        false
    );
    ok(store.save_snapshot(snapshot("a4", 1, 9, 0))).await;
    assert_eq!(ok(store.delete_snapshots("Account".into(), None)).await, 1);
    db.delete().await;
}

#[wasm_bindgen_test]
async fn load_starts_from_a_usable_snapshot_and_says_why_not_otherwise() {
    let db = TestDb::new().await;
    let store = &db.store;
    let (code, _, _) = rejected(store.load("Account".into(), "a1".into(), 1.into())).await;
    assert_eq!(code, "NotFound");

    ok(events(store, "a1", 0.0, &[1, 2, 3, 4, 5])).await;
    let full = ok(store.load("Account".into(), "a1".into(), 1.into())).await;
    assert_eq!(full["version"], 5);
    assert_eq!(full["snapshot"], Value::Null);
    assert_eq!(full["snapshotMiss"], Value::Null);
    assert_eq!(full["events"].as_array().map(Vec::len), Some(5));

    ok(store.save_snapshot(snapshot("a1", 3, 1, 6))).await;
    let fast = ok(store.load("Account".into(), "a1".into(), 1.into())).await;
    assert_eq!(fast["version"], 5);
    assert_eq!(fast["snapshot"]["version"], 3);
    assert_eq!(fast["snapshot"]["state"], json!({ "balance": 6 }));
    let after: Vec<_> = fast["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|event| event["version"].clone())
        .collect();
    assert_eq!(after, [json!(4), json!(5)]);
    assert_eq!(fast["snapshotMiss"], Value::Null);

    let other_schema = ok(store.load("Account".into(), "a1".into(), 2.into())).await;
    assert_eq!(other_schema["snapshot"], Value::Null);
    assert_eq!(other_schema["snapshotMiss"], "SchemaMismatch");
    assert_eq!(other_schema["events"].as_array().map(Vec::len), Some(5));

    // Written by another writer (the JS API refuses it): a snapshot ahead of the stream,
    // then one of another history at a version the stream has.
    let (_, snapshots) = core_stores(&db.name).await;
    for (version, anchor_event_id, miss) in [
        (9, None, "AheadOfStream"),
        (4, Some(Uuid::new_v4()), "ForeignHistory"),
    ] {
        let unusable = Snapshot {
            aggregate_id: "a1".into(),
            aggregate_type: "Account".into(),
            version,
            anchor_event_id,
            schema_version: 1,
            codec: Codec::Json,
            state: Bytes::from_static(b"{\"balance\":99}"),
            created_at: Timestamp::now(),
        };
        snapshots.save_snapshot(&unusable).await.expect("save");
        let loaded = ok(store.load("Account".into(), "a1".into(), 1.into())).await;
        assert_eq!(loaded["snapshotMiss"], miss);
        assert_eq!(loaded["snapshot"], Value::Null);
        assert_eq!(loaded["version"], 5);
        assert_eq!(loaded["events"].as_array().map(Vec::len), Some(5));
        assert_eq!(
            ok(store.get_snapshot("Account".into(), "a1".into())).await,
            Value::Null,
            "{miss}: deleted, so it never blocks a later snapshot"
        );
    }
    drop(snapshots);
    assert_eq!(
        ok(store.save_snapshot(snapshot("a1", 5, 1, 15))).await,
        true
    );
    let current = ok(store.load("Account".into(), "a1".into(), 1.into())).await;
    assert_eq!(current["version"], 5);
    assert_eq!(current["events"], json!([]));
    db.delete().await;
}

/// The core stores on a second connection to the same database, to write what the JS API
/// would refuse to.
async fn core_stores(name: &str) -> (KvEventStore<IndexedDbKv>, KvSnapshotStore<IndexedDbKv>) {
    let events = KvEventStore::new(IndexedDbKv::open(name).await.expect("open"));
    let snapshots = KvSnapshotStore::new(IndexedDbKv::open(name).await.expect("open"));
    (events, snapshots)
}

fn raw_event(codec: Codec, payload: &'static [u8]) -> NewEvent {
    NewEvent {
        event_id: Uuid::new_v4(),
        event_type: "Deposited".into(),
        shape_version: 1,
        codec,
        payload: Bytes::from_static(payload),
        metadata: EventMetadata::default(),
    }
}

#[wasm_bindgen_test]
async fn stored_values_javascript_cannot_read_are_named() {
    let db = TestDb::new().await;
    let (events, snapshots) = core_stores(&db.name).await;
    events
        .append(
            "Account",
            "bad-json",
            0,
            &[raw_event(Codec::Json, b"{\"amount\": ")],
        )
        .await
        .expect("append");
    events
        .append(
            "Account",
            "bincode",
            0,
            &[raw_event(Codec::Bincode, b"\x02")],
        )
        .await
        .expect("append");

    let (code, message, _) =
        rejected(
            db.store
                .read_stream("Account".into(), "bad-json".into(), None, None),
        )
        .await;
    assert_eq!(code, "Corrupt");
    assert!(
        message.contains("event 1 of Account \"bad-json\""),
        "{message}"
    );
    let (code, _, _) = rejected(db.store.load("Account".into(), "bad-json".into(), 1.into())).await;
    assert_eq!(code, "Corrupt");
    let (code, message, _) = rejected(db.store.read_all(None, None)).await;
    assert_eq!(code, "Corrupt", "{message}");
    let (code, message, _) =
        rejected(
            db.store
                .read_stream("Account".into(), "bincode".into(), None, None),
        )
        .await;
    assert_eq!(code, "Unsupported");
    assert!(message.contains("bincode"), "{message}");

    // A snapshot whose state is not JSON: get names it, load replays every event instead.
    ok(events_for(&db.store, "good", &[7])).await;
    let broken = Snapshot {
        aggregate_id: "good".into(),
        aggregate_type: "Account".into(),
        version: 1,
        anchor_event_id: None,
        schema_version: 1,
        codec: Codec::Json,
        state: Bytes::from_static(b"{not json"),
        created_at: Timestamp::now(),
    };
    snapshots.save_snapshot(&broken).await.expect("save");
    let (code, _, _) = rejected(db.store.get_snapshot("Account".into(), "good".into())).await;
    assert_eq!(code, "Corrupt");
    let loaded = ok(db.store.load("Account".into(), "good".into(), 1.into())).await;
    assert_eq!(loaded["snapshotMiss"], "Undecodable");
    assert_eq!(loaded["events"][0]["data"], json!({ "amount": 7 }));

    let bincode = Snapshot {
        codec: Codec::Bincode,
        state: Bytes::from_static(b"\x0e"),
        version: 1,
        ..broken
    };
    snapshots
        .delete_snapshot("Account", "good")
        .await
        .expect("delete");
    snapshots.save_snapshot(&bincode).await.expect("save");
    let (code, _, _) = rejected(db.store.get_snapshot("Account".into(), "good".into())).await;
    assert_eq!(code, "Unsupported");
    let loaded = ok(db.store.load("Account".into(), "good".into(), 1.into())).await;
    assert_eq!(loaded["snapshotMiss"], "UnknownCodec");
    drop((events, snapshots));
    db.delete().await;
}

/// The same failures, through the Rust API and the JS API on one IndexedDB database, are
/// named the same: the JS `code` is the Rust error's kind.
#[wasm_bindgen_test]
async fn a_failure_has_the_same_kind_in_rust_and_javascript() {
    let db = TestDb::new().await;
    let (core, snapshots) = core_stores(&db.name).await;
    ok(events_for(&db.store, "a1", &[1])).await;
    let rust_conflict = core
        .append("Account", "a1", 0, &[raw_event(Codec::Json, b"{}")])
        .await
        .expect_err("stale");
    let (js_conflict, _, _) = rejected(events_for(&db.store, "a1", &[2])).await;
    let rust_invalid = core
        .append("", "a1", 1, &[raw_event(Codec::Json, b"{}")])
        .await
        .expect_err("no type");
    let (js_invalid, _, _) = rejected(events(&db.store, "", 1.0, &[2])).await;
    core.append(
        "Account",
        "bad",
        0,
        &[raw_event(Codec::Json, b"{\"amount\": ")],
    )
    .await
    .expect("append");
    let (js_corrupt, _, _) =
        rejected(
            db.store
                .read_stream("Account".into(), "bad".into(), None, None),
        )
        .await;
    let rust_corrupt = eventkv::RecordedEvent::from(
        core.read_stream("Account", "bad", 1, 1, 1)
            .await
            .expect("read")
            .get(0)
            .expect("event"),
    )
    .decode::<Value>()
    .expect_err("not JSON");
    for (rust, js) in [
        (rust_conflict.kind(), js_conflict),
        (rust_invalid.kind(), js_invalid),
        (rust_corrupt.kind(), js_corrupt),
    ] {
        assert_eq!(rust.name(), js, "{rust:?}");
    }
    assert_eq!(
        [
            rust_conflict.kind(),
            rust_invalid.kind(),
            rust_corrupt.kind()
        ],
        [
            eventkv::ErrorKind::Conflict,
            eventkv::ErrorKind::InvalidInput,
            eventkv::ErrorKind::Corrupt
        ]
    );
    drop((core, snapshots));
    db.delete().await;
}

fn events_for(store: &JsEventStore, id: &str, amounts: &[i64]) -> Promise {
    events(store, id, 0.0, amounts)
}

#[wasm_bindgen_test]
async fn a_closed_store_rejects_with_closed() {
    let db = TestDb::new().await;
    db.store.close();
    let (code, _, _) = rejected(events(&db.store, "a1", 0.0, &[1])).await;
    assert_eq!(code, "Closed");
    db.delete().await;
}

/// Opens (creating or upgrading) a database of another application, with a store "notes".
async fn foreign_database(name: &str, version: u32) -> idb::Database {
    let factory = idb::Factory::new().expect("IndexedDB");
    let mut request = factory.open(name, Some(version)).expect("open");
    request.on_upgrade_needed(|event| {
        let db = event.database().expect("database");
        if !db.store_names().iter().any(|store| store == "notes") {
            db.create_object_store("notes", idb::ObjectStoreParams::new())
                .expect("create store");
        }
    });
    request.await.expect("open a foreign database")
}

async fn note(db: &idb::Database, write: Option<&str>) -> Option<String> {
    let mode = match write {
        Some(_) => idb::TransactionMode::ReadWrite,
        None => idb::TransactionMode::ReadOnly,
    };
    let tx = db.transaction(&["notes"], mode).expect("transaction");
    let notes = tx.object_store("notes").expect("store");
    if let Some(text) = write {
        notes
            .put(&text.into(), Some(&"k".into()))
            .expect("put")
            .await
            .expect("put");
    }
    let value = notes
        .get(JsValue::from("k"))
        .expect("get")
        .await
        .expect("get");
    tx.await.expect("commit");
    value.and_then(|value| value.as_string())
}

/// Opening `name` is refused with a message containing `reason`, and the foreign
/// database at `version` still holds its note.
async fn refused_untouched(name: &str, version: u32, reason: &str) {
    let error = JsEventStore::connect(name.to_owned(), Durability::Strict)
        .await
        .err()
        .expect("refused");
    assert_eq!(code_of(&error), "Unsupported");
    let message = message_of(&error);
    assert!(
        message.contains(reason),
        "{message:?} should say {reason:?}"
    );
    let reopened = foreign_database(name, version).await;
    assert_eq!(note(&reopened, None).await.as_deref(), Some("keep me"));
    reopened.close();
}

#[wasm_bindgen_test]
async fn deleting_the_database_elsewhere_closes_an_open_store_instead_of_waiting() {
    let db = TestDb::new().await;
    ok(events(&db.store, "a1", 0.0, &[1])).await;
    // As another tab would: the open store does not block the deletion.
    delete_database(&db.name)
        .await
        .expect("deleted while a store is open");
    let (code, message, _) = rejected(events(&db.store, "a1", 1.0, &[2])).await;
    assert_eq!(code, "Closed");
    assert!(message.contains("open it again"), "{message}");
    let reopened = JsEventStore::connect(db.name.clone(), Durability::Strict)
        .await
        .expect("reopen");
    let version = ok(reopened.current_version("Account".into(), "a1".into())).await;
    assert_eq!(version, 0, "the database was deleted");
    reopened.close();
    db.delete().await;
}

#[wasm_bindgen_test]
async fn a_database_of_another_schema_is_refused_untouched() {
    let name = format!("eventkv-foreign-{}", Uuid::new_v4());
    let foreign = foreign_database(&name, 1).await;
    note(&foreign, Some("keep me")).await;
    foreign.close();
    refused_untouched(&name, 1, "[\"notes\"]").await;

    // A newer IndexedDB version than eventkv's.
    foreign_database(&name, 2).await.close();
    refused_untouched(&name, 2, "newer").await;
    delete_database(&name).await.expect("delete");
}

#[wasm_bindgen_test]
async fn without_indexeddb_open_rejects_with_unavailable() {
    let global = js_sys::global();
    let key = JsValue::from_str("indexedDB");
    let saved = Object::get_own_property_descriptor(&global, &key);
    let hidden = js(json!({ "configurable": true, "writable": true }));
    Reflect::set(&hidden, &"value".into(), &JsValue::UNDEFINED).expect("descriptor");
    Object::define_property(&global, &key, &hidden.into());

    let result = JsFuture::from(JsEventStore::open("eventkv-unavailable".into(), None)).await;

    if saved.is_undefined() {
        Reflect::delete_property(&global, &key).expect("restore");
    } else {
        Object::define_property(&global, &key, &saved.into());
    }
    let error = result.expect_err("refused");
    assert_eq!(code_of(&error), "Unavailable");
    assert!(
        message_of(&error).contains("no indexedDB"),
        "{}",
        message_of(&error)
    );
    let db = TestDb::new().await;
    db.delete().await;
}

#[wasm_bindgen_test]
async fn writes_are_strict_unless_the_app_opts_out_at_open() {
    // Records the durability of every readwrite transaction the browser opens.
    ev("globalThis.__durabilities = [];
        globalThis.__transaction ??= IDBDatabase.prototype.transaction;
        IDBDatabase.prototype.transaction = function (...args) {
            const tx = globalThis.__transaction.apply(this, args);
            if (tx.mode === 'readwrite') globalThis.__durabilities.push(tx.durability);
            return tx;
        };");
    let recorded = || rust(&ev("globalThis.__durabilities.splice(0)"));
    let name = format!("eventkv-js-durability-{}", Uuid::new_v4());
    for (options, expected) in [
        ("undefined", "strict"),
        ("({})", "strict"),
        ("({ durability: 'strict' })", "strict"),
        ("({ durability: 'relaxed' })", "relaxed"),
        ("({ durability: 'default' })", "default"),
    ] {
        let store = JsFuture::from(JsEventStore::open(name.as_str().into(), Some(ev(options))))
            .await
            .expect("open");
        recorded();
        let append = Reflect::get(&store, &"append".into()).expect("append");
        let args = Array::of4(
            &"Account".into(),
            &"a1".into(),
            &JsValue::UNDEFINED,
            &deposits(&[1]),
        );
        let current = Reflect::get(&store, &"currentVersion".into()).expect("currentVersion");
        let version = JsFuture::from(Promise::from(
            Function::from(current)
                .call2(&store, &"Account".into(), &"a1".into())
                .expect("call"),
        ))
        .await
        .expect("currentVersion");
        args.set(2, version);
        JsFuture::from(Promise::from(
            Reflect::apply(&Function::from(append), &store, &args).expect("call"),
        ))
        .await
        .expect("append");
        assert_eq!(recorded(), json!([expected]), "options {options}");
        let close = Reflect::get(&store, &"close".into()).expect("close");
        Function::from(close).call0(&store).expect("close");
    }
    ev("IDBDatabase.prototype.transaction = globalThis.__transaction;");
    delete_database(&name).await.expect("delete");
}

#[wasm_bindgen_test]
async fn a_retried_append_is_a_no_op_and_other_ids_still_conflict() {
    let db = TestDb::new().await;
    let store = &db.store;
    let ids = [Uuid::new_v4(), Uuid::new_v4()];
    let with_ids = |ids: &[Uuid]| {
        js(Value::Array(
            ids.iter()
                .map(|id| json!({ "type": "Deposited", "data": { "amount": 1 }, "eventId": id }))
                .collect(),
        ))
    };
    ok(events(store, "a1", 0.0, &[5])).await;
    let first = ok(store.append("Account".into(), "a1".into(), 1.into(), with_ids(&ids))).await;
    ok(events(store, "b1", 0.0, &[5])).await;
    // The same events at the same versions: the first append's result, nothing written.
    let again = ok(store.append("Account".into(), "a1".into(), 1.into(), with_ids(&ids))).await;
    assert_eq!(again, first);
    assert_eq!(first["lastVersion"], 3);
    assert_eq!(
        ok(store.current_version("Account".into(), "a1".into())).await,
        3
    );
    let (code, _, _) = rejected(store.append(
        "Account".into(),
        "a1".into(),
        1.into(),
        with_ids(&[ids[0], Uuid::new_v4()]),
    ))
    .await;
    assert_eq!(code, "Conflict", "another id at version 3");
    let (code, message, _) = rejected(store.append(
        "Account".into(),
        "a1".into(),
        3.into(),
        with_ids(&[ids[0], ids[0]]),
    ))
    .await;
    assert_eq!(code, "InvalidInput");
    assert!(message.contains(&ids[0].to_string()), "{message}");
    assert_eq!(
        ok(store.read_all(None, None))
            .await
            .as_array()
            .map(Vec::len),
        Some(4)
    );
    db.delete().await;
}

#[wasm_bindgen_test]
async fn reads_and_loads_page_through_long_streams() {
    let db = TestDb::new().await;
    let store = &db.store;
    let amounts: Vec<i64> = (1..=10_000).collect();
    ok(events(store, "a1", 0.0, &amounts)).await;
    ok(events(store, "b1", 0.0, &[1])).await;
    let versions = |events: &Value| -> Vec<u64> {
        events
            .as_array()
            .expect("an array")
            .iter()
            .map(|event| event["version"].as_u64().expect("a version"))
            .collect()
    };
    // More than one page (4,096 events) each, in order, without a gap.
    let stream = ok(store.read_stream(
        "Account".into(),
        "a1".into(),
        Some(2.into()),
        Some(9_000.into()),
    ))
    .await;
    assert_eq!(versions(&stream), (2..=9_001).collect::<Vec<_>>());
    let all = ok(store.read_all(None, Some(10_000.into()))).await;
    assert_eq!(all.as_array().map(Vec::len), Some(10_000));
    let tail = ok(store.read_all(Some(9_999.into()), Some(10_000.into()))).await;
    let positions: Vec<_> = tail
        .as_array()
        .expect("events")
        .iter()
        .map(|event| event["position"].clone())
        .collect();
    assert_eq!(
        positions,
        [json!(9_999), json!(10_000), json!(10_001)],
        "fewer only at the end"
    );
    let loaded = ok(store.load("Account".into(), "a1".into(), 1.into())).await;
    assert_eq!(
        versions(&loaded["events"]),
        (1..=10_000).collect::<Vec<_>>()
    );
    assert_eq!(loaded["events"][9_999]["data"], json!({ "amount": 10_000 }));
    ok(store.save_snapshot(snapshot("a1", 1_000, 1, 0))).await;
    let loaded = ok(store.load("Account".into(), "a1".into(), 1.into())).await;
    assert_eq!(
        versions(&loaded["events"]),
        (1_001..=10_000).collect::<Vec<_>>()
    );
    assert_eq!(loaded["version"], 10_000);
    db.delete().await;
}

/// Waits for `promise`, which resolves to nothing.
async fn done(promise: Promise) {
    let value = JsFuture::from(promise).await.expect("the promise resolves");
    assert!(value.is_undefined(), "resolves to undefined: {value:?}");
}

/// Sleeps `ms` milliseconds on the browser's timer.
async fn sleep(ms: i32) {
    let promise = Promise::new(&mut |resolve, _| {
        let window = web_sys_window();
        let _ = Reflect::apply(
            &Reflect::get(&window, &"setTimeout".into())
                .expect("setTimeout")
                .into(),
            &window,
            &Array::of2(&resolve, &JsValue::from(ms)),
        );
    });
    JsFuture::from(promise).await.expect("timer");
}

fn web_sys_window() -> JsValue {
    js_sys::global().into()
}

/// A JS `onEvents` that keeps the positions it is given, and resolves after each batch.
fn collector() -> (Function, std::rc::Rc<std::cell::RefCell<Vec<u64>>>) {
    let seen = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let kept = std::rc::Rc::clone(&seen);
    let on_events = wasm_bindgen::closure::Closure::<dyn FnMut(JsValue) -> JsValue>::new(
        move |events: JsValue| {
            for event in Array::from(&events).iter() {
                let position = Reflect::get(&event, &"position".into()).expect("position");
                kept.borrow_mut()
                    .push(position.as_f64().expect("a number") as u64);
            }
            Promise::resolve(&JsValue::UNDEFINED).into()
        },
    );
    (on_events.into_js_value().unchecked_into(), seen)
}

/// Waits (at most 10 s) until `seen` holds `count` positions.
async fn until_seen(seen: &std::cell::RefCell<Vec<u64>>, count: usize) {
    for _ in 0..1000 {
        if seen.borrow().len() >= count {
            return;
        }
        sleep(10).await;
    }
    panic!("only {:?} of {count} events were delivered", seen.borrow());
}

#[wasm_bindgen_test]
async fn subscribe_catches_up_then_follows_appends_until_unsubscribed() {
    let db = TestDb::new().await;
    ok(events(&db.store, "a", 0.0, &[1, 2, 3])).await;
    let (on_events, seen) = collector();
    let unsubscribe: Function = db
        .store
        .subscribe(JsValue::from(2), on_events.into(), None)
        .expect("subscribe")
        .unchecked_into();
    until_seen(&seen, 2).await;
    ok(events(&db.store, "b", 0.0, &[4])).await;
    ok(events(&db.store, "a", 3.0, &[5, 6])).await;
    until_seen(&seen, 5).await;
    assert_eq!(
        *seen.borrow(),
        vec![2, 3, 4, 5, 6],
        "in position order, each once"
    );

    unsubscribe.call0(&JsValue::NULL).expect("unsubscribe");
    ok(events(&db.store, "b", 1.0, &[7])).await;
    sleep(200).await;
    assert_eq!(seen.borrow().len(), 5, "nothing after unsubscribing");

    // Another EventStore of the database (another tab) is told through its channel.
    let other = JsEventStore::connect(db.name.clone(), Durability::Strict)
        .await
        .expect("open again");
    let (on_events, theirs) = collector();
    other
        .subscribe(JsValue::from(7), on_events.into(), None)
        .expect("subscribe");
    until_seen(&theirs, 1).await;
    ok(events(&db.store, "b", 2.0, &[8])).await;
    until_seen(&theirs, 2).await;
    assert_eq!(*theirs.borrow(), vec![7, 8]);
    other.close();
    let closed = other.subscribe(JsValue::UNDEFINED, Function::new_no_args("").into(), None);
    assert_eq!(code_of(&closed.expect_err("closed")), "Closed");
    db.delete().await;
}

#[wasm_bindgen_test]
async fn a_failing_on_events_stops_the_subscription_with_handler() {
    let db = TestDb::new().await;
    ok(events(&db.store, "a", 0.0, &[1])).await;
    let errors = Array::new();
    let on_error = Function::new_with_args("error", "this.push(error)").bind0(&errors);
    let options = Object::new();
    Reflect::set(&options, &"onError".into(), &on_error).expect("set");
    let throwing = Function::new_with_args("events", "throw new Error('no handler')");
    db.store
        .subscribe(JsValue::from(1), throwing.into(), Some(options.into()))
        .expect("subscribe");
    for _ in 0..500 {
        if errors.length() > 0 {
            break;
        }
        sleep(10).await;
    }
    let error = errors.get(0);
    assert_eq!(code_of(&error), "Handler");
    assert!(
        message_of(&error).contains("no handler"),
        "{}",
        message_of(&error)
    );

    let wrong = db
        .store
        .subscribe(JsValue::from(1), JsValue::from("f"), None);
    let error = wrong.expect_err("not a function");
    assert_eq!(code_of(&error), "InvalidInput");
    assert!(
        message_of(&error).contains("onEvents"),
        "{}",
        message_of(&error)
    );
    db.delete().await;
}

/// An append that no channel announces (another writer of the database) reaches a
/// subscription by its poll: within its `pollInterval`, not the 30 s default.
#[wasm_bindgen_test]
async fn a_poll_interval_finds_unannounced_appends() {
    let db = TestDb::new().await;
    let options = Object::new();
    Reflect::set(&options, &"pollInterval".into(), &50.into()).expect("set");
    let (on_events, seen) = collector();
    db.store
        .subscribe(JsValue::from(1), on_events.into(), Some(options.into()))
        .expect("subscribe");
    let (events, _) = core_stores(&db.name).await;
    let event = raw_event(Codec::Json, br#"{"Deposited":{"amount":1}}"#);
    events
        .append("Account", "quiet", 0, &[event])
        .await
        .expect("append through the core store");
    // `until_seen` waits at most 10 s: the default poll would not come in time.
    until_seen(&seen, 1).await;
    assert_eq!(*seen.borrow(), vec![1]);

    for (poll, expected) in [
        (
            JsValue::from(0),
            "options.pollInterval must be from 1 to 2147483647 (milliseconds",
        ),
        (JsValue::from(2_147_483_648_u32), "not 2147483648"),
        (
            JsValue::from(1.5),
            "options.pollInterval must be a whole number",
        ),
        (
            JsValue::from("50"),
            "options.pollInterval must be a whole number",
        ),
    ] {
        let options = Object::new();
        Reflect::set(&options, &"pollInterval".into(), &poll).expect("set");
        let refused = db.store.subscribe(
            JsValue::from(1),
            Function::new_no_args("").into(),
            Some(options.into()),
        );
        let error = refused.expect_err("refused");
        assert_eq!(code_of(&error), "InvalidInput");
        assert!(
            message_of(&error).contains(expected),
            "{}",
            message_of(&error)
        );
    }
    db.delete().await;
}

#[wasm_bindgen_test]
async fn a_read_model_is_saved_with_its_checkpoint_and_refuses_a_stale_save() {
    let db = TestDb::new().await;
    assert_eq!(ok(db.store.read_model("totals".into())).await, Value::Null);
    ok(events(&db.store, "a", 0.0, &[1, 2, 3])).await;
    done(
        db.store
            .save_read_model("totals".into(), 0.into(), 2.into(), js(json!({"sum": 3}))),
    )
    .await;
    assert_eq!(
        ok(db.store.read_model("totals".into())).await,
        json!({"position": 2, "state": {"sum": 3}})
    );
    assert_eq!(ok(db.store.checkpoint("totals".into())).await, json!(2));
    let (code, message, _) =
        rejected(
            db.store
                .save_read_model("totals".into(), 0.into(), 3.into(), js(json!({}))),
        )
        .await;
    assert_eq!(code, "Conflict", "{message}");
    let (code, _, _) =
        rejected(
            db.store
                .save_read_model("totals".into(), 2.into(), 9.into(), js(json!({}))),
        )
        .await;
    assert_eq!(code, "InvalidInput", "past the last event");
    done(
        db.store
            .save_read_model("totals".into(), 2.into(), 3.into(), js(json!({"sum": 6}))),
    )
    .await;
    assert_eq!(
        ok(db.store.read_model("totals".into())).await,
        json!({"position": 3, "state": {"sum": 6}})
    );
    done(db.store.save_checkpoint("mailer".into(), 1.into())).await;
    assert_eq!(ok(db.store.checkpoint("mailer".into())).await, json!(1));
    db.delete().await;
}

#[wasm_bindgen_test]
async fn sync_options_are_checked_and_a_replica_is_never_mixed_with_local_appends() {
    let open = |name: &str, options: Value| JsEventStore::open(name.into(), Some(js(options)));
    let name = format!("eventkv-js-test-{}", Uuid::new_v4());
    for (options, message) in [
        (
            json!({ "sync": { "url": "ftp://example" } }),
            "http:// or https://",
        ),
        (json!({ "sync": {} }), "options.sync.url"),
        (
            json!({ "sync": { "url": "http://127.0.0.1:9", "rebase": 1 } }),
            "options.sync.rebase",
        ),
        (
            json!({ "sync": { "url": "http://127.0.0.1:9", "tokens": "x" } }),
            "unknown field",
        ),
    ] {
        let (code, text, _) = rejected(open(&name, options.clone())).await;
        assert_eq!(code, "InvalidInput", "{options}: {text}");
        assert!(text.contains(message), "{options}: {text}");
    }
    // A database with events of its own cannot become a replica of a server's log.
    let db = TestDb::new().await;
    ok(events(&db.store, "a", 0.0, &[1])).await;
    let (code, text, _) = rejected(open(
        &db.name,
        json!({ "sync": { "url": "http://127.0.0.1:9" } }),
    ))
    .await;
    assert_eq!(code, "InvalidInput", "{text}");
    assert!(text.contains("appended without sync"), "{text}");
    db.delete().await;

    // A replica (here: with an append waiting in its outbox; the server never answers)
    // takes appends only with `{ sync }`. Called as JavaScript calls it.
    let replica = JsFuture::from(open(
        &name,
        json!({ "sync": { "url": "http://127.0.0.1:9" } }),
    ))
    .await
    .expect("open synced");
    let call = |method: &str, args: Vec<JsValue>| -> Promise {
        let function: Function = Reflect::get(&replica, &method.into())
            .expect("method")
            .unchecked_into();
        function
            .apply(&replica, &args.into_iter().collect::<Array>())
            .expect("call")
            .unchecked_into()
    };
    let deposits = |expected: u32, amounts: &[i64]| {
        let events: Vec<Value> = amounts
            .iter()
            .map(|amount| json!({ "type": "Deposited", "data": { "amount": amount } }))
            .collect();
        vec![
            "Account".into(),
            "a".into(),
            expected.into(),
            js(json!(events)),
        ]
    };
    let appended = ok(call("append", deposits(0, &[1, 2]))).await;
    assert_eq!(
        appended,
        json!({ "firstVersion": 1, "lastVersion": 2, "firstPosition": null, "lastPosition": null, "pending": true })
    );
    let loaded = ok(call("load", vec!["Account".into(), "a".into(), 1.into()])).await;
    assert_eq!(loaded["version"], 2);
    assert_eq!(loaded["events"][1]["pending"], true);
    assert_eq!(loaded["events"][1]["position"], Value::Null);
    let version = ok(call("currentVersion", vec!["Account".into(), "a".into()])).await;
    assert_eq!(version, 2);
    assert_eq!(
        ok(call("readAll", vec![])).await,
        json!([]),
        "the log grows by pulls only"
    );
    let (code, _, _) = rejected(call("append", deposits(0, &[3]))).await;
    assert_eq!(code, "Conflict", "the optimistic version is 2");
    let sync = Reflect::get(&replica, &"sync".into()).expect("sync");
    let status: Function = Reflect::get(&sync, &"status".into())
        .expect("status")
        .unchecked_into();
    let status = rust(&status.call0(&sync).expect("status()"));
    assert_eq!(status["pending"], 1, "{status}");
    let close: Function = Reflect::get(&replica, &"close".into())
        .expect("close")
        .unchecked_into();
    close.call0(&replica).expect("close()");
    let plain = JsEventStore::connect(name.clone(), Durability::Strict)
        .await
        .expect("open");
    let (code, text, _) = rejected(events(&plain, "b", 0.0, &[1])).await;
    assert_eq!(code, "InvalidInput", "{text}");
    assert!(text.contains("sync replica"), "{text}");
    plain.close();
    delete_database(&name).await.expect("delete");
}

/// Upcasters given to `open` as JavaScript functions: old shapes are read as current ones
/// by `readStream`, `readAll` and `load`; one split in two keeps its version; a missing
/// upcaster rejects naming the type and shape; a bad option is refused at `open`.
#[wasm_bindgen_test]
async fn upcasters_given_at_open_run_on_every_read() {
    let db = TestDb::new().await;
    let old = js(json!([
        { "type": "Opened", "data": { "owner": "Ada" } },
        { "type": "Deposited", "data": { "cents": "700" } },
        { "type": "Corrected", "data": { "took": 3, "gave": 1 } },
        { "type": "Deposited", "shapeVersion": 2, "data": { "amount": 5 } },
    ]));
    ok(db
        .store
        .append("Account".into(), "a1".into(), 0.into(), old))
    .await;
    let upcasters = ev("({ upcasters: [
        { type: 'Deposited', shapeVersion: 1,
          upcast: (data) => [{ type: 'Deposited', shapeVersion: 2, data: { amount: Number(data.cents) / 100 } }] },
        { type: 'Corrected', shapeVersion: 1,
          upcast: (data) => [{ type: 'Withdrawn', data: { amount: data.took } },
                             { type: 'Deposited', shapeVersion: 2, data: { amount: data.gave } }] },
    ] })");
    let store = JsEventStore::open_from(&db.name.clone().into(), &upcasters)
        .await
        .expect("open with upcasters");
    let seen = |events: &Value| -> Vec<(String, u64, u64, Value)> {
        events
            .as_array()
            .expect("an array")
            .iter()
            .map(|e| {
                (
                    e["type"].as_str().unwrap_or_default().to_owned(),
                    e["shapeVersion"].as_u64().unwrap_or_default(),
                    e["version"].as_u64().unwrap_or_default(),
                    e["data"].clone(),
                )
            })
            .collect()
    };
    let expected = vec![
        ("Opened".to_owned(), 1, 1, json!({ "owner": "Ada" })),
        ("Deposited".to_owned(), 2, 2, json!({ "amount": 7 })),
        ("Withdrawn".to_owned(), 1, 3, json!({ "amount": 3 })),
        ("Deposited".to_owned(), 2, 3, json!({ "amount": 1 })),
        ("Deposited".to_owned(), 2, 4, json!({ "amount": 5 })),
    ];
    let stream = ok(store.read_stream("Account".into(), "a1".into(), None, None)).await;
    assert_eq!(seen(&stream), expected);
    let all = ok(store.read_all(None, None)).await;
    assert_eq!(seen(&all), expected);
    let loaded = ok(store.load("Account".into(), "a1".into(), 1.into())).await;
    assert_eq!(loaded["version"], 4, "{loaded}");
    assert_eq!(seen(&loaded["events"]), expected);
    // The store opened without upcasters reads them as stored.
    let raw = ok(db
        .store
        .read_stream("Account".into(), "a1".into(), None, None))
    .await;
    assert_eq!(seen(&raw)[1].3, json!({ "cents": "700" }));
    store.close();

    let missing =
        ev("({ upcasters: [{ type: 'Deposited', shapeVersion: 2, upcast: (d) => [] }] })");
    let store = JsEventStore::open_from(&db.name.clone().into(), &missing)
        .await
        .expect("open");
    let (code, message, _) =
        rejected(store.read_stream("Account".into(), "a1".into(), None, None)).await;
    assert_eq!(code, "Unsupported", "{message}");
    assert!(
        message.contains("\"Deposited\"") && message.contains("shape version 1"),
        "{message}"
    );
    store.close();
    all_invalid(vec![
        (
            JsEventStore::open(
                "x".into(),
                Some(ev("({ upcasters: [{ type: 'A', upcast: (d) => [] }] })")),
            ),
            "options.upcasters[0].shapeVersion is missing",
        ),
        (
            JsEventStore::open(
                "x".into(),
                Some(ev("({ upcasters: [{ type: 'A', shapeVersion: 1 }] })")),
            ),
            "options.upcasters[0].upcast is missing",
        ),
    ])
    .await;
    db.delete().await;
}
