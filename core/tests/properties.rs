//! Properties over arbitrary inputs: the key layout orders records as documented, and
//! every stored value reads back as written.

use eventkv::keys::{self, StreamKeys};
use eventkv::{
    Codec, EventMetadata, EventStore, KvEventStore, KvSnapshotStore, MemoryKv, NewEvent, Snapshot,
    SnapshotStore, Timestamp, Uuid,
};
use proptest::prelude::*;

fn name() -> impl Strategy<Value = String> {
    // Any Unicode, 1 to 40 characters (the layout takes up to 1024 bytes).
    proptest::string::string_regex("(?s).{1,40}").expect("regex")
}

fn block_on<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
        .block_on(future)
}

/// The order event keys sort in: by type, then id (each by length, then bytes), then
/// version, so each stream is one contiguous run in version order.
fn layout_order(t: &str, i: &str, v: u64) -> (usize, Vec<u8>, usize, Vec<u8>, u64) {
    (
        t.len(),
        t.as_bytes().to_vec(),
        i.len(),
        i.as_bytes().to_vec(),
        v,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn event_keys_sort_as_type_id_version(
        a in (name(), name(), any::<u64>()),
        b in (name(), name(), any::<u64>()),
    ) {
        let key = |(t, i, v): &(String, String, u64)| StreamKeys::new(t, i).expect("valid").event(*v);
        prop_assert_eq!(
            key(&a).cmp(&key(&b)),
            layout_order(&a.0, &a.1, a.2).cmp(&layout_order(&b.0, &b.1, b.2))
        );
        // A stream's range holds its own events and no other stream's.
        let stream_a = StreamKeys::new(&a.0, &a.1).expect("valid");
        prop_assert!(stream_a.all().contains(&key(&a)));
        prop_assert_eq!(stream_a.all().contains(&key(&b)), (&a.0, &a.1) == (&b.0, &b.1));
        // Keys parse back.
        let (parsed, version) = StreamKeys::from_event_key(&key(&a)).expect("event key");
        prop_assert_eq!(version, a.2);
        prop_assert_eq!(parsed.names(), Some((a.0.as_str(), a.1.as_str())));
        let snapshot_key = keys::snapshot(&a.0, &a.1).expect("valid");
        prop_assert_eq!(keys::snapshot_names(&snapshot_key), Some((a.0.as_str(), a.1.as_str())));
    }

    #[test]
    fn events_read_back_as_appended(
        aggregate_type in name(),
        id in name(),
        event_type in name(),
        payload in proptest::collection::vec(any::<u8>(), 0..300),
        correlation in proptest::option::of(any::<u128>()),
        causation in proptest::option::of(any::<u128>()),
        bincode in any::<bool>(),
        shape_version in 1..=u32::MAX,
    ) {
        let store = KvEventStore::new(MemoryKv::new());
        let event = NewEvent {
            event_id: Uuid::new_v4(),
            event_type: event_type.clone(),
            shape_version,
            codec: if bincode { Codec::Bincode } else { Codec::Json },
            payload: payload.clone().into(),
            metadata: EventMetadata {
                correlation_id: correlation.map(Uuid::from_u128),
                causation_id: causation.map(Uuid::from_u128),
            },
        };
        let appended = block_on(store.append(&aggregate_type, &id, 0, std::slice::from_ref(&event)))
            .expect("append");
        let page = block_on(store.read_all(1, 10)).expect("read");
        let stored = page.get(0).expect("one event");
        prop_assert_eq!(stored.aggregate_type(), aggregate_type.as_str());
        prop_assert_eq!(stored.aggregate_id(), id.as_str());
        prop_assert_eq!(stored.position(), appended.first_position);
        prop_assert_eq!(stored.event_id(), event.event_id);
        prop_assert_eq!(stored.event_type(), event_type.as_str());
        prop_assert_eq!(stored.shape_version(), shape_version);
        prop_assert_eq!(stored.codec(), event.codec);
        prop_assert_eq!(stored.payload(), &payload[..]);
        prop_assert_eq!(stored.metadata(), event.metadata);
    }

    #[test]
    fn snapshots_read_back_as_saved(
        aggregate_type in name(),
        id in name(),
        version in 1..u64::MAX,
        schema_version in any::<u32>(),
        anchor in proptest::option::of(1..u128::MAX),
        state in proptest::collection::vec(any::<u8>(), 0..300),
        created in any::<i64>(),
    ) {
        let store = KvSnapshotStore::new(MemoryKv::new());
        let snapshot = Snapshot {
            aggregate_id: id.clone(),
            aggregate_type: aggregate_type.clone(),
            version,
            anchor_event_id: anchor.map(Uuid::from_u128),
            schema_version,
            codec: Codec::Bincode,
            state: state.into(),
            created_at: Timestamp::from_micros(created),
        };
        prop_assert!(block_on(store.save_snapshot(&snapshot)).expect("save"));
        let read = block_on(store.get_snapshot(&aggregate_type, &id)).expect("get");
        prop_assert_eq!(read, Some(snapshot));
    }
}
