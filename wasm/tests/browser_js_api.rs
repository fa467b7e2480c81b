//! The JavaScript API (`EventStore`) on IndexedDB in headless Chromium: results as JS sees
//! them, and every error `code`.
#![cfg(target_arch = "wasm32")]

use bytes::Bytes;
use eventkv::{
    Codec, EventMetadata, EventStore as _, KvEventStore, KvSnapshotStore, NewEvent, Snapshot,
    SnapshotStore as _, Timestamp, Uuid,
};
use eventkv_wasm::{IndexedDbKv, JsEventStore};
use idb::DatabaseEvent as _;
use js_sys::{JSON, Object, Promise, Reflect};
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
        let store = JsEventStore::open(name.clone()).await.expect("open");
        TestDb { name, store }
    }

    async fn delete(self) {
        self.store.close();
        JsEventStore::delete_database(self.name)
            .await
            .expect("delete database");
    }
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
    store.append("Account".into(), id.into(), expected, deposits(amounts))
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
    let appended = ok(db.store.append("Account".into(), "a1".into(), 0.0, first)).await;
    assert_eq!(
        appended,
        json!({ "firstVersion": 1, "lastVersion": 1, "firstPosition": 1, "lastPosition": 1 })
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

    let page = ok(db
        .store
        .read_stream("Account".into(), "a1".into(), Some(2.0), Some(1.0)))
    .await;
    assert_eq!(page.as_array().map(Vec::len), Some(1));
    assert_eq!(page[0]["version"], 2);

    let version = ok(db.store.current_version("Account".into(), "a1".into())).await;
    assert_eq!(version, 3);
    let none = ok(db.store.current_version("Account".into(), "nobody".into())).await;
    assert_eq!(none, 0);

    let all = ok(db.store.read_all(Some(2.0), None)).await;
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

#[wasm_bindgen_test]
async fn invalid_arguments_reject_with_invalid_input() {
    let db = TestDb::new().await;
    let store = &db.store;
    let bigint = js_sys::eval("[{ type: 'X', data: { n: 1n } }]").expect("eval");
    let cases: Vec<(Promise, &str)> = vec![
        (events(store, "a1", -1.0, &[1]), "expectedVersion"),
        (events(store, "a1", 0.5, &[1]), "expectedVersion"),
        (events(store, "", 0.0, &[1]), "aggregate id"),
        (store.append("Account".into(), "a1".into(), 0.0, js(json!([]))), "at least one event"),
        (store.append("Account".into(), "a1".into(), 0.0, js(json!({}))), "events"),
        (store.append("Account".into(), "a1".into(), 0.0, JsValue::UNDEFINED), "events is missing"),
        (store.append("Account".into(), "a1".into(), 0.0, js(json!([{ "data": 1 }]))), "missing field `type`"),
        (store.append("Account".into(), "a1".into(), 0.0, js(json!([{ "type": "X" }]))), "missing field `data`"),
        (store.append("Account".into(), "a1".into(), 0.0, js(json!([{ "type": "X", "data": 1, "payload": 2 }]))), "unknown field `payload`"),
        (store.append("Account".into(), "a1".into(), 0.0, js(json!([{ "type": "X", "data": 1, "eventId": "nope" }]))), "UUID"),
        (store.append("Account".into(), "a1".into(), 0.0, bigint), "JSON.stringify threw"),
        (store.read_stream("Account".into(), "a1".into(), Some(f64::NAN), None), "fromVersion"),
        (store.read_all(None, Some(-5.0)), "limit"),
        (store.save_snapshot(js(json!({ "aggregateType": "Account", "aggregateId": "a1", "version": 0, "schemaVersion": 1, "state": {} }))), "version 0"),
        (store.save_snapshot(js(json!({ "aggregateType": "Account", "aggregateId": "a1", "version": 1, "state": {} }))), "schemaVersion"),
        (store.delete_snapshots("Account".into(), Some(4294967296.0)), "schemaVersionBelow"),
        (store.load("Account".into(), "a1".into(), -1.0), "schemaVersion"),
    ];
    for (promise, expected) in cases {
        let (code, message, _) = rejected(promise).await;
        assert_eq!(code, "InvalidInput", "{message}");
        assert!(
            message.contains(expected),
            "{message:?} should name {expected:?}"
        );
    }
    let version = ok(store.current_version("Account".into(), "a1".into())).await;
    assert_eq!(version, 0, "nothing was written");
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
        ok(store.delete_snapshots("Account".into(), Some(3.0))).await,
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
    let (code, _, _) = rejected(store.load("Account".into(), "a1".into(), 1.0)).await;
    assert_eq!(code, "NotFound");

    ok(events(store, "a1", 0.0, &[1, 2, 3, 4, 5])).await;
    let full = ok(store.load("Account".into(), "a1".into(), 1.0)).await;
    assert_eq!(full["version"], 5);
    assert_eq!(full["snapshot"], Value::Null);
    assert_eq!(full["snapshotMiss"], Value::Null);
    assert_eq!(full["events"].as_array().map(Vec::len), Some(5));

    ok(store.save_snapshot(snapshot("a1", 3, 1, 6))).await;
    let fast = ok(store.load("Account".into(), "a1".into(), 1.0)).await;
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

    let other_schema = ok(store.load("Account".into(), "a1".into(), 2.0)).await;
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
        let loaded = ok(store.load("Account".into(), "a1".into(), 1.0)).await;
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
    let current = ok(store.load("Account".into(), "a1".into(), 1.0)).await;
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
    let (code, _, _) = rejected(db.store.load("Account".into(), "bad-json".into(), 1.0)).await;
    assert_eq!(code, "Corrupt");
    let (code, message, _) = rejected(db.store.read_all(None, None)).await;
    assert_eq!(code, "Corrupt", "{message}");
    let (code, message, _) =
        rejected(
            db.store
                .read_stream("Account".into(), "bincode".into(), None, None),
        )
        .await;
    assert_eq!(code, "UnsupportedCodec");
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
    let loaded = ok(db.store.load("Account".into(), "good".into(), 1.0)).await;
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
    assert_eq!(code, "UnsupportedCodec");
    let loaded = ok(db.store.load("Account".into(), "good".into(), 1.0)).await;
    assert_eq!(loaded["snapshotMiss"], "UnknownCodec");
    drop((events, snapshots));
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
    let error = JsEventStore::open(name.to_owned())
        .await
        .err()
        .expect("refused");
    assert_eq!(code_of(&error), "IncompatibleDatabase");
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
    JsEventStore::delete_database(db.name.clone())
        .await
        .expect("deleted while a store is open");
    let (code, message, _) = rejected(events(&db.store, "a1", 1.0, &[2])).await;
    assert_eq!(code, "Closed");
    assert!(message.contains("open it again"), "{message}");
    let reopened = JsEventStore::open(db.name.clone()).await.expect("reopen");
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
    JsEventStore::delete_database(name).await.expect("delete");
}

#[wasm_bindgen_test]
async fn without_indexeddb_open_rejects_with_unavailable() {
    let global = js_sys::global();
    let key = JsValue::from_str("indexedDB");
    let saved = Object::get_own_property_descriptor(&global, &key);
    let hidden = js(json!({ "configurable": true, "writable": true }));
    Reflect::set(&hidden, &"value".into(), &JsValue::UNDEFINED).expect("descriptor");
    Object::define_property(&global, &key, &hidden.into());

    let result = JsEventStore::open("eventkv-unavailable".into()).await;

    if saved.is_undefined() {
        Reflect::delete_property(&global, &key).expect("restore");
    } else {
        Object::define_property(&global, &key, &saved.into());
    }
    let error = result.err().expect("refused");
    assert_eq!(code_of(&error), "Unavailable");
    assert!(
        message_of(&error).contains("no indexedDB"),
        "{}",
        message_of(&error)
    );
    let db = TestDb::new().await;
    db.delete().await;
}
