//! `eventkv verify`: reads every record and checks that the store is whole.

use bytes::Bytes;
use eventkv::inspect::{self, Record, RecordKind};
use eventkv::keys::{self, StreamKeys};
use eventkv::raw::DisplayKey;
use eventkv::{Direction, DynKv, KeyRange, OrderedKv};
use serde::Serialize;

use crate::pages::Pages;
use crate::{CliError, Progress};

/// The most problems a report lists; the rest are counted.
pub const MAX_LISTED: usize = 1000;

/// One thing wrong with a store, at a key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The key, printable.
    pub key: String,
    /// What is wrong.
    pub problem: String,
}

/// What a verification found.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct VerifyReport {
    /// Records read.
    pub records: u64,
    /// Events read.
    pub events: u64,
    /// Streams (aggregates with events).
    pub streams: u64,
    /// Global log entries read.
    pub log_entries: u64,
    /// Snapshots read.
    pub snapshots: u64,
    /// Checkpoints read.
    pub checkpoints: u64,
    /// Read model entries of projections read.
    pub read_model_entries: u64,
    /// The global head, if stored.
    pub head: Option<u64>,
    /// How many problems were found.
    pub problem_count: u64,
    /// The first [`MAX_LISTED`] of them.
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    fn problem(&mut self, key: &[u8], problem: impl Into<String>) {
        self.problem_count += 1;
        if self.problems.len() < MAX_LISTED {
            self.problems.push(Problem {
                key: DisplayKey(key).to_string(),
                problem: problem.into(),
            });
        }
    }
}

/// What is known of each global position: which event holds it (a checksum of its key),
/// and whether a log entry covers it. 5 bytes per position.
#[derive(Default)]
struct Positions {
    key_sums: Vec<u32>,
    states: Vec<u8>,
}

const FREE: u8 = 0;
const HELD: u8 = 1;
const COVERED: u8 = 2;

impl Positions {
    /// The index of `position`, if an event holds it or held a position above it.
    fn index(&self, position: u64) -> Option<usize> {
        let index = usize::try_from(position.checked_sub(1)?).ok()?;
        (index < self.states.len()).then_some(index)
    }

    /// The index of `position`, growing the table to it.
    fn slot(&mut self, position: u64) -> Option<usize> {
        let index = usize::try_from(position.checked_sub(1)?).ok()?;
        if index >= self.states.len() {
            self.states.resize(index + 1, FREE);
            self.key_sums.resize(index + 1, 0);
        }
        Some(index)
    }
}

/// Positions further than this beyond the events read so far are named, not indexed: a
/// wild position must not make verification allocate without bound.
const MAX_POSITION_LEAD: u64 = 1 << 24;

/// Reads every record of `kv` and checks it:
/// - every value decodes (format version, codec, checksum);
/// - every stream is contiguous from version 1;
/// - the global log holds every event exactly once, its entries are contiguous from
///   position 1 and point at the events that hold those positions;
/// - the global head equals the last position;
/// - every snapshot is anchored: its version exists in its stream and, where it records
///   one, the event there has its anchor id;
/// - no checkpoint is past the last position.
///
/// Memory: 5 bytes per global position, plus one page.
pub async fn verify(kv: &DynKv, progress: &Progress) -> Result<VerifyReport, CliError> {
    let mut report = VerifyReport::default();
    let mut positions = Positions::default();
    let mut stream: Option<(StreamKeys, u64)> = None;
    let mut next_log_position = 1u64;
    let mut checkpoints = Vec::new();
    let mut pages = Pages::new(KeyRange::all());
    while let Some(page) = pages.next(kv).await? {
        for (key, value) in page.iter() {
            report.records += 1;
            let value = Bytes::copy_from_slice(value);
            let record = match inspect::decode(key, &value) {
                Ok(record) => record,
                Err(error) => {
                    if RecordKind::of(key) == Some(RecordKind::Event) {
                        report.events += 1;
                        progress.advance(1);
                    }
                    report.problem(key, error.problem);
                    continue;
                }
            };
            match record {
                Record::Event(event) => {
                    report.events += 1;
                    progress.advance(1);
                    check_event(&mut report, &mut positions, &mut stream, key, &event);
                }
                Record::LogEntry {
                    position,
                    count,
                    first_event_key,
                } => {
                    report.log_entries += 1;
                    check_log_entry(
                        &mut report,
                        &mut positions,
                        &mut next_log_position,
                        key,
                        position,
                        count,
                        &first_event_key,
                    );
                }
                Record::Head { position } => report.head = Some(position),
                Record::Snapshot(snapshot) => {
                    report.snapshots += 1;
                    check_snapshot(kv, &mut report, key, &snapshot).await?;
                }
                Record::Checkpoint { name, position } => {
                    report.checkpoints += 1;
                    checkpoints.push((Bytes::copy_from_slice(key), name, position));
                }
                Record::ReadModel { .. } => report.read_model_entries += 1,
            }
        }
    }
    let last_position = next_log_position - 1;
    let head_key = keys::global_head();
    match report.head {
        None if report.events > 0 || report.log_entries > 0 => {
            report.problem(&head_key, "the global head is missing");
        }
        Some(head) if head != last_position => report.problem(
            &head_key,
            format!(
                "the global head is {head}, but the global log ends at position {last_position}"
            ),
        ),
        _ => {}
    }
    for (key, name, position) in checkpoints {
        if position > last_position {
            report.problem(
                &key,
                format!(
                    "checkpoint {name:?} is at position {position}, past the last event ({last_position})"
                ),
            );
        }
    }
    name_uncovered_events(kv, &mut report, &positions).await?;
    progress.finish();
    Ok(report)
}

fn check_event(
    report: &mut VerifyReport,
    positions: &mut Positions,
    stream: &mut Option<(StreamKeys, u64)>,
    key: &[u8],
    event: &inspect::EventRecord,
) {
    let previous = match stream {
        Some((keys, last)) if *keys == event.stream => *last,
        _ => {
            report.streams += 1;
            0
        }
    };
    // Keys sort by version: a version at or below the previous one is only version 0.
    let next = previous.saturating_add(1);
    if event.version == 0 {
        report.problem(key, "an event at version 0: versions start at 1");
    } else if event.version != next {
        let missing = match event.version - 1 {
            last_missing if last_missing == next => format!("version {next} is missing"),
            last_missing => format!("versions {next} to {last_missing} are missing"),
        };
        report.problem(key, format!("a gap in the stream: {missing}"));
    }
    *stream = Some((event.stream.clone(), event.version));
    if event.position > report.events.saturating_add(MAX_POSITION_LEAD) {
        report.problem(
            key,
            format!(
                "position {} is far beyond the events stored",
                event.position
            ),
        );
        return;
    }
    let Some(slot) = positions.slot(event.position) else {
        report.problem(key, "position 0 is never given");
        return;
    };
    if positions.states[slot] != FREE {
        report.problem(
            key,
            format!("position {} is held by another event too", event.position),
        );
        return;
    }
    positions.states[slot] = HELD;
    positions.key_sums[slot] = crc32c::crc32c(key);
}

fn check_log_entry(
    report: &mut VerifyReport,
    positions: &mut Positions,
    next_log_position: &mut u64,
    key: &[u8],
    position: u64,
    count: u32,
    first_event_key: &[u8],
) {
    if position == 0 {
        report.problem(key, "position 0 is never given");
        return;
    }
    if count == 0 {
        report.problem(key, "the entry holds no event");
        return;
    }
    if position > *next_log_position {
        report.problem(
            key,
            format!(
                "the global log has no entry for positions {} to {}",
                next_log_position,
                position - 1
            ),
        );
    } else if position < *next_log_position {
        report.problem(
            key,
            format!(
                "this entry overlaps the previous one, which ends at position {}",
                *next_log_position - 1
            ),
        );
    }
    *next_log_position = position
        .saturating_add(u64::from(count))
        .max(*next_log_position);
    let Some((stream, first_version)) = StreamKeys::from_event_key(first_event_key) else {
        report.problem(key, "the entry does not point at an event key");
        return;
    };
    if first_version == 0 {
        report.problem(key, "the entry points at version 0: versions start at 1");
        return;
    }
    if first_version.checked_add(u64::from(count) - 1).is_none() {
        report.problem(
            key,
            format!(
                "the entry's {count} events from version {first_version} run past the largest version"
            ),
        );
        return;
    }
    let known = positions.states.len() as u64;
    let end = position.saturating_add(u64::from(count));
    if end > known.saturating_add(1) {
        report.problem(
            key,
            format!(
                "the entry covers positions up to {}, beyond every event's position (the last is {known})",
                end - 1
            ),
        );
    }
    for offset in 0..u64::from(count).min(known.saturating_sub(position.saturating_sub(1))) {
        let event_key = stream.event(first_version + offset);
        let at = position + offset;
        let Some(slot) = positions.index(at) else {
            report.problem(key, format!("position {at} is never given"));
            continue;
        };
        let held_by_it = positions.states[slot] != FREE
            && positions.key_sums[slot] == crc32c::crc32c(&event_key);
        match positions.states[slot] {
            COVERED => report.problem(
                key,
                format!("position {at} is covered by another log entry too"),
            ),
            HELD if held_by_it => positions.states[slot] = COVERED,
            HELD => report.problem(
                key,
                format!(
                    "position {at} should be the event {} but another event holds it",
                    DisplayKey(&event_key)
                ),
            ),
            _ => report.problem(
                key,
                format!(
                    "position {at} should be the event {}, which is missing or has another position",
                    DisplayKey(&event_key)
                ),
            ),
        }
    }
}

async fn check_snapshot(
    kv: &DynKv,
    report: &mut VerifyReport,
    key: &[u8],
    snapshot: &inspect::SnapshotRecord,
) -> Result<(), CliError> {
    let stream = match StreamKeys::new(&snapshot.aggregate_type, &snapshot.aggregate_id) {
        Ok(stream) => stream,
        Err(error) => {
            report.problem(key, error.to_string());
            return Ok(());
        }
    };
    let event_key = stream.event(snapshot.version);
    let Some(value) = kv.get(&event_key).await? else {
        let last = kv.scan(&stream.all(), Direction::Reverse, 1).await?;
        let last = last.last_key().and_then(keys::event_version).unwrap_or(0);
        report.problem(
            key,
            format!(
                "the snapshot is at version {}, but its stream ends at version {last}",
                snapshot.version
            ),
        );
        return Ok(());
    };
    let Some(anchor) = snapshot.anchor else {
        return Ok(());
    };
    match inspect::decode(&event_key, &value) {
        Ok(Record::Event(event)) if event.event_id == anchor => {}
        Ok(Record::Event(event)) => report.problem(
            key,
            format!(
                "the snapshot was taken from another history: its anchor is event {anchor}, the stream's event at version {} is {}",
                snapshot.version, event.event_id
            ),
        ),
        // The event's own problem is reported where it is read.
        _ => {}
    }
    Ok(())
}

/// Names, by their keys, the events that hold a position no log entry covers (a second
/// pass over the events, only when there are such positions).
async fn name_uncovered_events(
    kv: &DynKv,
    report: &mut VerifyReport,
    positions: &Positions,
) -> Result<(), CliError> {
    if !positions.states.contains(&HELD) {
        return Ok(());
    }
    let mut pages = Pages::new(KeyRange::prefix(Bytes::from_static(b"e")));
    while let Some(page) = pages.next(kv).await? {
        for (key, value) in page.iter() {
            let Ok(Record::Event(event)) = inspect::decode(key, &Bytes::copy_from_slice(value))
            else {
                continue;
            };
            let index = event
                .position
                .checked_sub(1)
                .and_then(|i| usize::try_from(i).ok());
            let uncovered = index
                .and_then(|index| positions.states.get(index))
                .is_some_and(|&state| state == HELD);
            if uncovered {
                report.problem(
                    key,
                    format!(
                        "no global log entry covers this event (position {})",
                        event.position
                    ),
                );
            }
        }
    }
    Ok(())
}

/// How two stores differ.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Comparison {
    /// Records compared (the union of both stores' keys).
    pub records: u64,
    /// How many keys are missing from one or hold different values.
    pub difference_count: u64,
    /// The first [`MAX_LISTED`] of them.
    pub differences: Vec<Problem>,
}

/// Compares every record of `a` and `b`, walking both in key order.
pub async fn compare(a: &DynKv, b: &DynKv) -> Result<Comparison, CliError> {
    let mut comparison = Comparison::default();
    let mut left = Records::new(a);
    let mut right = Records::new(b);
    let differ = |comparison: &mut Comparison, key: &[u8], what: &str| {
        comparison.difference_count += 1;
        if comparison.differences.len() < MAX_LISTED {
            comparison.differences.push(Problem {
                key: DisplayKey(key).to_string(),
                problem: what.to_owned(),
            });
        }
    };
    loop {
        let (l, r) = (left.peek().await?, right.peek().await?);
        let step = match (l, r) {
            (None, None) => return Ok(comparison),
            (Some((lk, _)), None) => {
                differ(&mut comparison, &lk, "only in the first store");
                (true, false)
            }
            (None, Some((rk, _))) => {
                differ(&mut comparison, &rk, "only in the second store");
                (false, true)
            }
            (Some((lk, lv)), Some((rk, rv))) => match lk.cmp(&rk) {
                std::cmp::Ordering::Less => {
                    differ(&mut comparison, &lk, "only in the first store");
                    (true, false)
                }
                std::cmp::Ordering::Greater => {
                    differ(&mut comparison, &rk, "only in the second store");
                    (false, true)
                }
                std::cmp::Ordering::Equal => {
                    if lv != rv {
                        differ(&mut comparison, &lk, "the stores hold different values");
                    }
                    (true, true)
                }
            },
        };
        comparison.records += 1;
        if step.0 {
            left.advance();
        }
        if step.1 {
            right.advance();
        }
    }
}

/// A store's records in key order, read a page at a time.
struct Records<'a> {
    kv: &'a DynKv,
    pages: Pages,
    page: Vec<(Bytes, Bytes)>,
    at: usize,
}

impl<'a> Records<'a> {
    fn new(kv: &'a DynKv) -> Self {
        Records {
            kv,
            pages: Pages::new(KeyRange::all()),
            page: Vec::new(),
            at: 0,
        }
    }

    /// The next record, without moving past it.
    async fn peek(&mut self) -> Result<Option<(Bytes, Bytes)>, CliError> {
        while self.at == self.page.len() {
            let Some(page) = self.pages.next(self.kv).await? else {
                return Ok(None);
            };
            self.page = page
                .iter()
                .map(|(k, v)| (Bytes::copy_from_slice(k), Bytes::copy_from_slice(v)))
                .collect();
            self.at = 0;
        }
        Ok(self.page.get(self.at).cloned())
    }

    fn advance(&mut self) {
        self.at += 1;
    }
}
