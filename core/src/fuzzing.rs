//! Entry points for the fuzz targets in `core/fuzz/` (feature `fuzzing`): each feeds
//! arbitrary bytes to one decoder of stored bytes and checks what must hold for any input:
//! no panic, no unbounded allocation, and a value that decodes encodes back to itself.
#![allow(missing_docs, clippy::unwrap_used)]

use bytes::Bytes;

use crate::codec::Codec;
use crate::envelope::{self, EventHeader, EventValue, SnapshotFields};
use crate::keys::{self, StreamKeys};

/// Splits fuzz input into a key (its length is the first byte) and a value.
fn key_and_value(data: &[u8]) -> (&[u8], &[u8]) {
    let Some((&len, rest)) = data.split_first() else {
        return (&[], &[]);
    };
    rest.split_at(usize::from(len).min(rest.len()))
}

/// The event envelope reader.
pub fn event(data: &[u8]) {
    let (key, value) = key_and_value(data);
    let Ok(event) = EventValue::parse(key, value) else {
        return;
    };
    let header = EventHeader {
        codec: event.codec(),
        position: event.position(),
        event_id: event.event_id(),
        timestamp: event.timestamp(),
        event_type: event.event_type(),
        shape_version: event.shape_version(),
        metadata: event.metadata(),
    };
    let _ = event.timestamp().to_system_time();
    if value.first() == Some(&envelope::FORMAT_VERSION) {
        let again = envelope::encode_event(key, &header, event.payload());
        assert_eq!(
            &again[..],
            value,
            "an event that decodes encodes back to itself"
        );
    }
}

/// The snapshot envelope readers (header and whole value).
pub fn snapshot(data: &[u8]) {
    let (key, value) = key_and_value(data);
    let header = envelope::snapshot_header(key, value);
    let value = Bytes::copy_from_slice(value);
    let Ok(fields) = envelope::decode_snapshot(key, &value) else {
        return;
    };
    assert_eq!(
        header.ok(),
        Some((fields.version, fields.schema_version)),
        "the header reader agrees with the full reader"
    );
    if value.first() == Some(&envelope::FORMAT_VERSION) {
        let again = envelope::encode_snapshot(key, &fields);
        assert_eq!(
            again, value,
            "a snapshot that decodes encodes back to itself"
        );
    }
}

/// The global log entry and head readers.
pub fn log_entry(data: &[u8]) {
    if let Ok((count, first_key)) = envelope::decode_log_entry(data) {
        assert_eq!(envelope::encode_log_entry(count, first_key), data);
    }
    if let Ok(head) = envelope::decode_head(data) {
        assert_eq!(envelope::encode_head(head), data);
    }
}

/// The key parsers.
pub fn keys(data: &[u8]) {
    if let Some((stream, version)) = StreamKeys::from_event_key(data) {
        assert_eq!(
            &stream.event(version)[..],
            data,
            "an event key rebuilds itself"
        );
        let (aggregate_type, aggregate_id) = stream.names().unwrap();
        let rebuilt = StreamKeys::new(aggregate_type, aggregate_id);
        if let Ok(rebuilt) = rebuilt {
            assert_eq!(rebuilt.event(version), stream.event(version));
        }
    }
    let _ = keys::event_version(data);
    if let Some(position) = keys::global_log_position(data) {
        assert_eq!(&keys::global_log(position)[..], data);
    }
    if let Some((aggregate_type, aggregate_id, older)) = keys::snapshot_parts(data) {
        let rebuilt = match older {
            None => keys::snapshot(aggregate_type, aggregate_id),
            Some(version) => keys::older_snapshot(aggregate_type, aggregate_id, version),
        };
        if let Ok(key) = rebuilt {
            assert_eq!(&key[..], data, "a snapshot key rebuilds itself");
        }
    }
}

/// The codec decoders, on a state shaped like real aggregates.
pub fn codecs(data: &[u8]) {
    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct State {
        owner: String,
        balance: u64,
        history: Vec<(i32, Option<String>)>,
        flags: std::collections::BTreeMap<String, bool>,
    }
    let Some((&tag, bytes)) = data.split_first() else {
        return;
    };
    let Ok(codec) = Codec::from_tag(tag) else {
        return;
    };
    if let Ok(state) = codec.decode::<State>(bytes) {
        let again = codec.encode(&state).unwrap();
        let decoded: State = codec.decode(&again).unwrap();
        assert_eq!(decoded, state, "a decoded state round-trips");
    }
    let _ = codec.decode::<serde_json::Value>(bytes);
}

/// Valid inputs of each target, as seeds of its corpus.
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let stream = StreamKeys::new("Account", "acc-1").unwrap();
    let key = stream.event(7);
    let with_key = |key: &[u8], value: &[u8]| {
        let mut data = vec![u8::try_from(key.len()).unwrap()];
        data.extend_from_slice(key);
        data.extend_from_slice(value);
        data
    };
    let header = EventHeader {
        codec: Codec::Json,
        position: 42,
        event_id: uuid::Uuid::from_u128(0x1234),
        timestamp: crate::Timestamp::from_micros(1_700_000_000_000_000),
        event_type: "Deposited",
        shape_version: 2,
        metadata: crate::EventMetadata {
            correlation_id: Some(uuid::Uuid::from_u128(5)),
            causation_id: None,
        },
    };
    let event = envelope::encode_event(&key, &header, br#"{"Deposited":{"amount":5}}"#);
    let snapshot_key = keys::snapshot("Account", "acc-1").unwrap();
    let snapshot = envelope::encode_snapshot(
        &snapshot_key,
        &SnapshotFields {
            codec: Codec::Bincode,
            version: 7,
            schema_version: 1,
            created_at: crate::Timestamp::from_micros(1),
            anchor: Some(uuid::Uuid::from_u128(9)),
            state: Bytes::from_static(b"\x03Ada\x05\x00\x00"),
        },
    );
    let mut json = vec![Codec::Json.tag()];
    json.extend_from_slice(
        br#"{"owner":"Ada","balance":5,"history":[[1,null],[2,"x"]],"flags":{"a":true}}"#,
    );
    let mut bincode = vec![Codec::Bincode.tag()];
    bincode.extend_from_slice(b"\x03Ada\x05\x01\x02\x00\x01\x01x\x01\x01a\x01");
    vec![
        ("event", with_key(&key, &event)),
        ("snapshot", with_key(&snapshot_key, &snapshot)),
        ("log_entry", envelope::encode_log_entry(3, &key).to_vec()),
        ("log_entry", envelope::encode_head(42).to_vec()),
        ("keys", key.to_vec()),
        ("keys", snapshot_key.to_vec()),
        ("keys", keys::global_log(42).to_vec()),
        ("codecs", json),
        ("codecs", bincode),
    ]
}

#[cfg(test)]
mod tests {
    /// Found by the fuzzer: the key of an older snapshot (with its version) rebuilds
    /// itself.
    #[test]
    fn an_older_snapshot_key_rebuilds_itself() {
        let key = [
            115, 0, 7, 65, 99, 99, 111, 117, 110, 116, 0, 5, 65, 110, 116, 0, 5, 255, 255, 255,
            255, 36, 5, 45, 48,
        ];
        keys(&key);
        assert_eq!(
            keys::snapshot_parts(&key).map(|(t, _, v)| (t, v)),
            Some(("Account", Some(0xffff_ffff_2405_2d30)))
        );
    }

    use super::*;

    /// The seed corpus in `fuzz/corpus/<target>/seed-<n>` is these seeds; with
    /// `EVENTKV_WRITE_FUZZ_SEEDS=1` the test writes them instead.
    #[test]
    fn the_committed_seed_corpus_is_current() {
        let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
        let write = std::env::var("EVENTKV_WRITE_FUZZ_SEEDS").is_ok_and(|v| v == "1");
        for (n, (target, seed)) in seeds().into_iter().enumerate() {
            let path = corpus.join(target).join(format!("seed-{n}"));
            if write {
                std::fs::create_dir_all(corpus.join(target)).unwrap();
                std::fs::write(&path, &seed).unwrap();
            }
            let committed = std::fs::read(&path).unwrap_or_default();
            assert!(
                committed == seed,
                "{} is stale: run with EVENTKV_WRITE_FUZZ_SEEDS=1",
                path.display()
            );
        }
    }

    #[test]
    fn every_seed_passes_its_target() {
        for (target, seed) in seeds() {
            match target {
                "event" => event(&seed),
                "snapshot" => snapshot(&seed),
                "log_entry" => log_entry(&seed),
                "keys" => keys(&seed),
                "codecs" => codecs(&seed),
                other => panic!("no target {other}"),
            }
        }
    }
}
