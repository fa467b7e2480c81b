//! Events as JSON lines: `eventkv export`, `eventkv tail` and `eventkv import`.
//!
//! One line per event:
//! `{"position":1,"aggregate_type":"Account","aggregate_id":"a-1","version":1,
//! "event_id":"…","event_type":"Opened","timestamp":"2026-11-30T05:43:30.123456Z",
//! "correlation_id":null,"causation_id":null,"codec":"json","payload":{…}}`.
//! A JSON payload is the JSON itself; a bincode payload is a base64 string. An event of a
//! shape other than 1 has `"shape_version":N`.

use std::collections::HashMap;
use std::io::{BufRead, Write};
use std::time::Duration;

use eventkv::{
    ContextError, DynKv, ErrorKind, EventStore, EventStoreError, KvEventStore, NewEvent,
    StoredEvent, Uuid,
};
use eventkv_sync::protocol::JsonEvent;
use serde::Serialize;

use crate::{CliError, Progress};

/// How many events one read of the global log asks for.
const PAGE: usize = 1000;

/// One event, as a JSON line: the sync protocol's [`JsonEvent`].
pub type EventLine = JsonEvent;

/// The event a line appends, checked; `line` numbers the error.
fn new_event(event: &EventLine, line: u64) -> Result<NewEvent, CliError> {
    event
        .to_new_event()
        .map_err(|why| CliError::usage(format!("line {line}: {why}")))
}

/// The line of a stored event.
fn line_of(event: &StoredEvent<'_>) -> Result<EventLine, CliError> {
    JsonEvent::of(event).map_err(|why| CliError::failed(ErrorKind::Corrupt, why))
}

/// Writes every event of `store` from `from` on (of `aggregate_type`, if given) to `out`
/// as JSON lines, in position order. With `follow`, then waits for new events, polling
/// every `interval`, and never returns but on an error.
///
/// The lines are the events as `store` reads them: a store given the application's
/// upcasters ([`KvEventStore::with_upcasters`]) exports current shapes; the `eventkv`
/// command knows no upcasters and exports them as stored, each with its shape version.
pub async fn write_log(
    store: &KvEventStore<DynKv>,
    from: u64,
    aggregate_type: Option<&str>,
    follow: Option<Duration>,
    out: &mut impl Write,
    progress: &Progress,
) -> Result<u64, CliError> {
    let mut next = from.max(1);
    let mut written = 0;
    loop {
        let page = store.read_all(next, PAGE).await?;
        if let Some(through) = page.read_through() {
            progress.advance(through + 1 - next);
            next = through + 1;
        }
        for event in page.iter() {
            if aggregate_type.is_some_and(|name| name != event.aggregate_type()) {
                continue;
            }
            serde_json::to_writer(&mut *out, &line_of(&event)?)
                .map_err(|error| CliError::failed(ErrorKind::Unexpected, error))?;
            out.write_all(b"\n")?;
            written += 1;
        }
        if page.may_have_more() {
            continue;
        }
        out.flush()?;
        if let Some(interval) = follow {
            tokio::time::sleep(interval).await;
        } else {
            progress.finish();
            return Ok(written);
        }
    }
}

/// What an import did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ImportReport {
    /// Lines read.
    pub lines: u64,
    /// Events imported (or found already stored, when an import runs again).
    pub events: u64,
}

/// What the first pass of an import saw of one stream.
struct StreamSoFar {
    /// The version of its last line.
    version: u64,
    /// The line of each of its event ids.
    event_ids: HashMap<Uuid, u64>,
}

/// The most events of one aggregate appended at once.
const MAX_RUN: usize = 1000;

/// Imports JSON lines into `kv`.
///
/// Every line is parsed and checked before anything is written, for everything an append
/// checks: a line that does not parse, names an aggregate or event type that cannot be
/// stored, repeats an event id of its aggregate, or whose version does not follow the
/// line before of the same aggregate, fails the import with its line number and nothing
/// written. Then each run of consecutive
/// lines of one aggregate (up to 1,000) is one append, at the version its first line
/// names: events get new positions and timestamps, and keep their ids, types, metadata,
/// codecs and payloads. An append refused by the store (its stream is not at that
/// version) stops the import; appends before it stay. Running the same import again
/// finishes it: events already stored are recognized by id and version, not duplicated.
pub async fn import(
    kv: &DynKv,
    input: impl BufRead,
    progress: &Progress,
) -> Result<ImportReport, CliError> {
    let mut spool = tempfile::tempfile()?;
    let mut report = ImportReport::default();
    let mut streams = HashMap::<(String, String), StreamSoFar>::new();
    for (number, line) in (1u64..).zip(input.lines()) {
        let line = line.map_err(|error| match error.kind() {
            std::io::ErrorKind::InvalidData => {
                CliError::usage(format!("line {number}: not UTF-8 text"))
            }
            _ => CliError::from(error),
        })?;
        report.lines = number;
        if line.trim().is_empty() {
            continue;
        }
        let event: EventLine = serde_json::from_str(&line)
            .map_err(|error| CliError::usage(format!("line {number}: {error}")))?;
        new_event(&event, number)?;
        let stream = streams
            .entry((event.aggregate_type.clone(), event.aggregate_id.clone()))
            .or_insert_with(|| StreamSoFar {
                version: event.version - 1,
                event_ids: HashMap::new(),
            });
        if event.version != stream.version + 1 {
            return Err(CliError::usage(format!(
                "line {number}: {}/{} version {} does not follow version {} of the lines before",
                event.aggregate_type, event.aggregate_id, event.version, stream.version
            )));
        }
        if let Some(first) = stream.event_ids.insert(event.event_id, number) {
            return Err(CliError::usage(format!(
                "line {number}: event id {} of {}/{} is on line {first} too: an event is stored once",
                event.event_id, event.aggregate_type, event.aggregate_id
            )));
        }
        stream.version = event.version;
        writeln!(spool, "{line}")?;
    }
    drop(streams);
    std::io::Seek::rewind(&mut spool)?;
    let store = KvEventStore::new(kv.clone());
    let mut run: Vec<(u64, EventLine)> = Vec::new();
    let lines = std::io::BufReader::new(spool).lines();
    for (number, line) in (1u64..).zip(lines) {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let event: EventLine = serde_json::from_str(&line).map_err(|error| {
            let context = format!("line {number} of the spooled input");
            CliError::failed(ErrorKind::Unexpected, ContextError::new(context, error))
        })?;
        let joins = run.last().is_some_and(|(_, last)| {
            last.aggregate_type == event.aggregate_type && last.aggregate_id == event.aggregate_id
        });
        if !joins || run.len() == MAX_RUN {
            append_run(&store, &mut run, &mut report, progress).await?;
        }
        run.push((number, event));
    }
    append_run(&store, &mut run, &mut report, progress).await?;
    progress.finish();
    Ok(report)
}

async fn append_run(
    store: &KvEventStore<DynKv>,
    run: &mut Vec<(u64, EventLine)>,
    report: &mut ImportReport,
    progress: &Progress,
) -> Result<(), CliError> {
    let Some((first_line, first)) = run.first() else {
        return Ok(());
    };
    let events = run
        .iter()
        .map(|(number, line)| new_event(line, *number))
        .collect::<Result<Vec<_>, _>>()?;
    let expected = first.version - 1;
    match store
        .append(
            &first.aggregate_type,
            &first.aggregate_id,
            expected,
            &events,
        )
        .await
    {
        Ok(_) => {}
        Err(EventStoreError::Conflict { actual, .. }) => {
            return Err(CliError::failed(
                ErrorKind::Conflict,
                format!(
                    "line {first_line}: {}/{} is at version {actual} in the destination, not {expected}: nothing from this line on was imported",
                    first.aggregate_type, first.aggregate_id
                ),
            ));
        }
        Err(error) => {
            let context = format!("line {first_line} (nothing from this line on was imported)");
            return Err(CliError::failed(
                error.kind(),
                ContextError::new(context, error),
            ));
        }
    }
    report.events += events.len() as u64;
    progress.advance(events.len() as u64);
    run.clear();
    Ok(())
}
