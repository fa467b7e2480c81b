//! A replica on an engine with small batches (as etcd's): a large pulled page is written
//! in several batches, each moving the cursor to its last event, and outbox entries are
//! confirmed in whichever batch brings their events back.

use bytes::Bytes;
use eventkv::replica::Replica;
use eventkv::{
    Codec, Direction, EventStore, KeyRange, KvError, KvEventStore, KvPage, MemoryKv, NewEvent,
    OrderedKv, RecordedEvent, WriteBatch, WriteLimits,
};

/// Memory, refusing batches over small limits, as a consensus engine does.
struct Small(MemoryKv);

const LIMITS: WriteLimits = WriteLimits {
    max_checks: 8,
    max_mutations: 40,
    max_bytes: 16 * 1024,
};

impl OrderedKv for Small {
    async fn get(&self, key: &[u8]) -> Result<Option<Bytes>, KvError> {
        self.0.get(key).await
    }

    async fn scan(
        &self,
        range: &KeyRange,
        direction: Direction,
        limit: usize,
    ) -> Result<KvPage, KvError> {
        self.0.scan(range, direction, limit).await
    }

    async fn write(&self, batch: WriteBatch) -> Result<(), KvError> {
        if let Some(what) = LIMITS.exceeded_by(&batch) {
            return Err(KvError::TooLarge {
                engine: "small",
                what,
            });
        }
        self.0.write(batch).await
    }

    fn limits(&self) -> WriteLimits {
        LIMITS
    }
}

fn event(n: u64) -> NewEvent {
    NewEvent::encode("Added", &serde_json::json!({ "n": n }), Codec::Json).expect("encode")
}

#[tokio::test]
async fn a_large_page_is_written_in_batches_that_fit() {
    let replica = Replica::new(KvEventStore::new(Small(MemoryKv::new())));
    let server = KvEventStore::new(MemoryKv::new());
    // Two local appends, pushed; the server stores them among others' events.
    let mine = [event(1000), event(1001)];
    let late = [event(2000)];
    replica
        .append_pending("Ledger", "mine", 0, &mine)
        .await
        .expect("append");
    replica
        .append_pending("Ledger", "late", 0, &late)
        .await
        .expect("append");
    for n in 0..150 {
        server
            .append("Ledger", &format!("a{}", n % 7), n / 7, &[event(n)])
            .await
            .expect("append");
        if n == 20 {
            server
                .append("Ledger", "mine", 0, &mine)
                .await
                .expect("push");
        }
    }
    server
        .append("Ledger", "late", 0, &late)
        .await
        .expect("push");
    let pulled: Vec<RecordedEvent> = server
        .read_all(1, 1000)
        .await
        .expect("read")
        .iter()
        .map(RecordedEvent::from)
        .collect();
    let head = pulled.last().expect("events").position;
    let applied = replica
        .apply_pulled(0, &pulled, head)
        .await
        .expect("written in batches that fit");
    assert_eq!(applied.events, pulled.len());
    assert_eq!(
        applied.confirmed,
        [1, 2],
        "both entries confirmed, in their batches"
    );
    assert_eq!(replica.cursor().await.expect("cursor"), head);
    let local: Vec<RecordedEvent> = replica
        .store()
        .read_all(1, 1000)
        .await
        .expect("read")
        .iter()
        .map(RecordedEvent::from)
        .collect();
    assert_eq!(local, pulled);
    assert!(replica.outbox(0, 10).await.expect("outbox").is_empty());
    assert_eq!(
        replica
            .optimistic_version("Ledger", "mine")
            .await
            .expect("version"),
        2
    );
}
