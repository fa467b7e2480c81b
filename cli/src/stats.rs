//! `eventkv stats`: what a store holds, counted in one pass.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};

use bytes::Bytes;
use eventkv::inspect::{self, Record, RecordKind};
use eventkv::keys::{self, StreamKeys};
use eventkv::{Direction, DynKv, KeyRange, OrderedKv};
use serde::Serialize;

use crate::pages::Pages;
use crate::{CliError, Progress};

/// How many of the longest streams are listed.
pub const LONGEST: usize = 10;

/// What a store holds.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Stats {
    /// Per aggregate type: aggregates (streams) and events.
    pub types: BTreeMap<String, TypeStats>,
    /// The longest streams, longest first.
    pub longest_streams: Vec<StreamLength>,
    /// Snapshots per aggregate type, then per schema version.
    pub snapshots: BTreeMap<String, BTreeMap<u32, u64>>,
    /// How many events each snapshot is behind its stream's last event, in buckets
    /// (`0`, `1-9`, `10-99`, `100-999`, `1000+`).
    pub events_behind_snapshots: BTreeMap<&'static str, u64>,
    /// The most events a snapshot is behind.
    pub most_behind: u64,
    /// Keys and values, in bytes, per kind of record.
    pub bytes: BTreeMap<&'static str, u64>,
    /// Records of kinds eventkv does not write.
    pub unknown_records: u64,
    /// The last global position (the head).
    pub global_position: u64,
    /// Checkpoints, by name: the position of the last event each consumer handled.
    pub checkpoints: BTreeMap<String, u64>,
}

/// Streams and events of one aggregate type.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TypeStats {
    /// Aggregates with events.
    pub aggregates: u64,
    /// Events.
    pub events: u64,
}

/// One stream's length.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct StreamLength {
    /// Its events.
    pub events: u64,
    /// The aggregate type.
    pub aggregate_type: String,
    /// The aggregate id.
    pub aggregate_id: String,
}

const BUCKETS: [(u64, &str); 5] = [
    (0, "0"),
    (1, "1-9"),
    (10, "10-99"),
    (100, "100-999"),
    (1000, "1000+"),
];

/// Counts what `kv` holds, reading every record once (and each snapshot's stream end).
/// Memory: the type names and the [`LONGEST`] longest streams.
pub async fn stats(kv: &DynKv, progress: &Progress) -> Result<Stats, CliError> {
    let mut stats = Stats::default();
    let mut longest: BinaryHeap<Reverse<StreamLength>> = BinaryHeap::new();
    let mut current: Option<(StreamKeys, u64)> = None;
    let mut pages = Pages::new(KeyRange::all());
    while let Some(page) = pages.next(kv).await? {
        for (key, value) in page.iter() {
            let kind = RecordKind::of(key);
            let size = (key.len() + value.len()) as u64;
            match kind {
                Some(kind) => *stats.bytes.entry(kind.name()).or_default() += size,
                None => stats.unknown_records += 1,
            }
            match kind {
                Some(RecordKind::Event) => {
                    progress.advance(1);
                    let Some((stream, _)) = StreamKeys::from_event_key(key) else {
                        continue;
                    };
                    match &mut current {
                        Some((keys, events)) if *keys == stream => *events += 1,
                        _ => {
                            if let Some(done) = current.take() {
                                finish_stream(&mut stats, &mut longest, done);
                            }
                            current = Some((stream, 1));
                        }
                    }
                }
                Some(RecordKind::Head) => {
                    if let Ok(Record::Head { position }) =
                        inspect::decode(key, &Bytes::copy_from_slice(value))
                    {
                        stats.global_position = position;
                    }
                }
                Some(RecordKind::Checkpoint) => {
                    if let Ok(Record::Checkpoint { name, position }) =
                        inspect::decode(key, &Bytes::copy_from_slice(value))
                    {
                        stats.checkpoints.insert(name, position);
                    }
                }
                Some(RecordKind::Snapshot) => {
                    if let Some(done) = current.take() {
                        finish_stream(&mut stats, &mut longest, done);
                    }
                    let Ok(Record::Snapshot(snapshot)) =
                        inspect::decode(key, &Bytes::copy_from_slice(value))
                    else {
                        continue;
                    };
                    *stats
                        .snapshots
                        .entry(snapshot.aggregate_type.clone())
                        .or_default()
                        .entry(snapshot.schema_version)
                        .or_default() += 1;
                    let behind = events_behind(kv, &snapshot).await?;
                    stats.most_behind = stats.most_behind.max(behind);
                    let bucket = BUCKETS
                        .iter()
                        .rev()
                        .find(|(from, _)| behind >= *from)
                        .map_or("0", |(_, name)| name);
                    *stats.events_behind_snapshots.entry(bucket).or_default() += 1;
                }
                _ => {}
            }
        }
    }
    if let Some(done) = current.take() {
        finish_stream(&mut stats, &mut longest, done);
    }
    stats.longest_streams = longest
        .into_sorted_vec()
        .into_iter()
        .map(|Reverse(s)| s)
        .collect();
    progress.finish();
    Ok(stats)
}

fn finish_stream(
    stats: &mut Stats,
    longest: &mut BinaryHeap<Reverse<StreamLength>>,
    (stream, events): (StreamKeys, u64),
) {
    let Some((aggregate_type, aggregate_id)) = stream.names() else {
        return;
    };
    let totals = stats.types.entry(aggregate_type.to_owned()).or_default();
    totals.aggregates += 1;
    totals.events += events;
    longest.push(Reverse(StreamLength {
        events,
        aggregate_type: aggregate_type.to_owned(),
        aggregate_id: aggregate_id.to_owned(),
    }));
    if longest.len() > LONGEST {
        longest.pop();
    }
}

/// How many events the stream has after `snapshot`'s version.
async fn events_behind(kv: &DynKv, snapshot: &inspect::SnapshotRecord) -> Result<u64, CliError> {
    let Ok(stream) = StreamKeys::new(&snapshot.aggregate_type, &snapshot.aggregate_id) else {
        return Ok(0);
    };
    let last = kv.scan(&stream.all(), Direction::Reverse, 1).await?;
    let last = last.last_key().and_then(keys::event_version).unwrap_or(0);
    Ok(last.saturating_sub(snapshot.version))
}
