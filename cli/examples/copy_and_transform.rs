//! Copy-and-transform: copies a store into a new one through a projection that writes
//! the events as the application's upcasters read them, so the new store holds current
//! shapes only. `eventkv copy` cannot do this (it knows no upcasters); an application can,
//! in a few lines.
//!
//! ```text
//! cargo run -p eventkv-cli --example copy_and_transform -- sqlite:old.db sqlite:new.db
//! eventkv verify sqlite:new.db
//! ```
//!
//! The projection runs on the source store: its checkpoint and its note of each stream's
//! version in the new store live there, written in one batch per page. A copy stopped at
//! any point and run again appends nothing twice: it appends each event again at the
//! version it noted, with the same event id, which the new store answers as already
//! stored. Events keep their ids (the second and later events an upcaster split one into
//! get ids derived from it), types, metadata and codecs; they get new positions and
//! timestamps.
#![allow(clippy::print_stdout)]

use eventkv::{
    BoxError, DynKv, EventStore, KvEventStore, NewEvent, Projection, ProjectionError,
    ProjectionRunner, ReadModel, RecordedEvent, Upcasters, Uuid,
};

/// Appends every event `source` reads (upcast, when it has upcasters) to `target`.
pub struct CopyUpcasted<'t> {
    /// Where the events go.
    pub target: &'t KvEventStore<DynKv>,
}

/// The read model key of a stream's version in the new store.
fn stream_key(event: &RecordedEvent) -> Vec<u8> {
    let mut key = b"v".to_vec();
    key.extend_from_slice(&(event.aggregate_type.len() as u64).to_be_bytes());
    key.extend_from_slice(event.aggregate_type.as_bytes());
    key.extend_from_slice(event.aggregate_id.as_bytes());
    key
}

/// The read model key of the last position copied and how many events it gave.
const LAST: &[u8] = b"last";

fn be_u64(bytes: Option<&[u8]>) -> Result<u64, BoxError> {
    match bytes {
        None => Ok(0),
        Some(bytes) => Ok(u64::from_be_bytes(bytes.try_into()?)),
    }
}

impl Projection for CopyUpcasted<'_> {
    fn name(&self) -> &'static str {
        "copy-and-transform"
    }

    async fn apply(
        &self,
        event: &RecordedEvent,
        model: &mut ReadModel<'_>,
    ) -> Result<(), BoxError> {
        // The how-manieth event of its stored event this is (an upcaster may split one).
        let last = model.get(LAST).await?;
        let last = last.as_deref().unwrap_or(&[0; 16]);
        let (position, count) = last.split_at(8);
        let nth = if be_u64(Some(position))? == event.position {
            be_u64(Some(count))?
        } else {
            0
        };
        let event_id = match nth {
            0 => event.event_id,
            n => Uuid::new_v5(&event.event_id, &n.to_be_bytes()),
        };
        let key = stream_key(event);
        let version = be_u64(model.get(&key).await?.as_deref())?;
        let new = NewEvent {
            event_id,
            event_type: event.event_type.clone(),
            shape_version: event.shape_version,
            codec: event.codec,
            payload: event.payload.clone(),
            metadata: event.metadata,
        };
        self.target
            .append(&event.aggregate_type, &event.aggregate_id, version, &[new])
            .await?;
        model.put(&key, (version + 1).to_be_bytes().to_vec());
        let mut last = event.position.to_be_bytes().to_vec();
        last.extend_from_slice(&(nth + 1).to_be_bytes());
        model.put(LAST, last);
        Ok(())
    }
}

/// Copies `source`, read through its upcasters, into `target`; returns the last position
/// of `source` copied.
pub async fn copy_upcasted(
    source: &KvEventStore<DynKv>,
    target: &KvEventStore<DynKv>,
) -> Result<u64, ProjectionError> {
    ProjectionRunner::new(source, CopyUpcasted { target })
        .catch_up()
        .await
}

/// The example's application: "Renamed" events of shape 1 stored `{"name": …}`, shape 2
/// stores `{"new_name": …}`.
fn upcasters() -> Upcasters {
    Upcasters::new().register("Renamed", 1, |old: serde_json::Value, out| {
        out.emit("Renamed", 2, serde_json::json!({ "new_name": old["name"] }));
        Ok(())
    })
}

#[allow(dead_code)] // the tests include this file for `copy_upcasted`
#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let mut args = std::env::args().skip(1);
    let (Some(from), Some(to)) = (args.next(), args.next()) else {
        return Err("usage: copy_and_transform SOURCE_URL TARGET_URL".into());
    };
    let source =
        KvEventStore::new(eventkv_backends::open(&from).await?).with_upcasters(upcasters());
    let target = KvEventStore::new(eventkv_backends::open(&to).await?);
    let last = copy_upcasted(&source, &target).await?;
    println!("copied {from} up to position {last} into {to}, upcast");
    Ok(())
}
