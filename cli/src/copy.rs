//! `eventkv copy`: every record of one store into another, byte for byte, page by page.

use std::time::Instant;

use eventkv::inspect::RecordKind;
use eventkv::raw::DisplayKey;
use eventkv::{Direction, DynKv, ErrorKind, KeyRange, OrderedKv, WriteBatch};
use serde::Serialize;

use crate::pages::Pages;
use crate::{CliError, Progress};

/// What a copy did.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct CopyReport {
    /// Records written (every key).
    pub records: u64,
    /// Events among them.
    pub events: u64,
    /// Snapshots among them.
    pub snapshots: u64,
    /// Bytes of keys and values written.
    pub bytes: u64,
    /// The last record the destination held before, when the copy resumed.
    pub resumed_after: Option<String>,
    /// How long it took.
    pub seconds: f64,
    /// Events copied per second.
    pub events_per_second: f64,
}

/// Copies every record of `source` into `destination`, in key order, one page (of at most
/// [`eventkv::raw::MAX_SCAN_ENTRIES`]) per atomic batch: memory stays bounded, and an interrupted copy
/// leaves the destination holding a prefix of the source in key order. The destination
/// must be empty, or, with `resume`, hold such a prefix: the copy goes on after it.
///
/// The records are copied as stored (versions, positions, ids, timestamps, metadata,
/// codecs, checksums). Copy a store nobody writes to meanwhile.
pub async fn copy(
    source: &DynKv,
    destination: &DynKv,
    resume: bool,
    progress: &Progress,
) -> Result<CopyReport, CliError> {
    let started = Instant::now();
    let mut report = CopyReport::default();
    let mut range = KeyRange::all();
    let last = destination.scan(&range, Direction::Reverse, 1).await?;
    if let Some((key, value)) = last.iter().next() {
        let shown = DisplayKey(key).to_string();
        if !resume {
            return Err(CliError::usage(format!(
                "the destination is not empty (its last record is {shown}): copy into an empty store, or pass --resume to go on with an interrupted copy"
            )));
        }
        if source.get(key).await?.as_deref() != Some(value) {
            return Err(CliError::failed(
                ErrorKind::Conflict,
                format!(
                    "cannot resume: the destination's last record {shown} is not in the source as it is, so the destination is not a partial copy of this source"
                ),
            ));
        }
        range = range.after_page(key, Direction::Forward);
        report.resumed_after = Some(shown);
    }
    let mut pages = Pages::new(range);
    let limits = destination.limits();
    while let Some(page) = pages.next(source).await? {
        let mut batch = WriteBatch::new();
        let mut room = limits.room();
        let mut events = 0;
        for (key, value) in page.iter() {
            // The destination's writes are bounded (a consensus log's entry): a page may
            // take several, each whole, in key order, so a resume finds a prefix copied.
            if !room.admit(0, 1, key.len() + value.len()) {
                destination.write(std::mem::take(&mut batch)).await?;
                room = limits.room();
                room.admit(0, 1, key.len() + value.len());
            }
            match RecordKind::of(key) {
                Some(RecordKind::Event) => events += 1,
                Some(RecordKind::Snapshot) => report.snapshots += 1,
                _ => {}
            }
            report.records += 1;
            report.bytes += (key.len() + value.len()) as u64;
            batch.put(
                bytes::Bytes::copy_from_slice(key),
                bytes::Bytes::copy_from_slice(value),
            );
        }
        if !batch.is_empty() {
            destination.write(batch).await?;
        }
        report.events += events;
        progress.advance(events);
    }
    progress.finish();
    report.seconds = started.elapsed().as_secs_f64();
    report.events_per_second = report.events as f64 / report.seconds.max(1e-9);
    Ok(report)
}
