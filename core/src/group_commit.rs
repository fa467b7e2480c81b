//! Group commit: concurrent appends to one [`KvEventStore`] share engine writes.
//!
//! An append that finds no write in flight leads: it writes its own events, together with
//! every append that queued meanwhile, and those that queue until its batch is built
//! (under the engine's write lock, where it has one). An append that finds a write in
//! flight queues and waits; when the write is done, the leader hands each its result, and
//! hands the lead to the first append still queued, which writes the next batch. Every
//! engine write (and every fsync) thus carries as many appends as arrived while the
//! previous one ran.
//!
//! A caller may give up at any await (a timeout, a dropped HTTP handler): its own append is
//! then left unanswered, and nobody else's. A queued append dropped after it was handed the
//! lead passes the lead on; a leader dropped mid-write puts the appends it carried back at
//! the head of the queue, and the next leader writes them, or finds them written (appends
//! are idempotent by event id), and answers them as usual.
//!
//! Each append keeps its own checks: one whose stream moved fails alone (`Conflict`), the
//! others land. A batch holds at most one append per stream, so that each is checked
//! against the stream as the previous batches left it. Positions are given in batch
//! order, and a batch is one atomic engine write: gap-free, unique, in commit order.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use futures_channel::oneshot;

use crate::backoff::Backoff;
use crate::envelope::{self, EventHeader};
use crate::event_store::{Appended, EventStoreError, KvEventStore, NewEvent, corrupt};
use crate::keys::{self, StreamKeys};
use crate::kv::{BatchRoom, Check, KvError, OrderedKv, WriteBatch, WriteLimits};
use crate::timestamp::Timestamp;

/// The most events one batch carries (an append with more is written alone).
const MAX_BATCH_EVENTS: usize = 8192;
/// The most appends one batch carries.
const MAX_BATCH_APPENDS: usize = 512;
/// The most bytes an event's envelope adds to its key, type and payload (with both
/// metadata ids), with room to spare.
const EVENT_ENVELOPE: usize = 96;

/// The room a batch of `requests` leaves under `limits`: the batch itself checks and
/// puts the global head (its key and a position).
fn batch_room<'r, 'a: 'r>(
    limits: &WriteLimits,
    requests: impl IntoIterator<Item = &'r AppendRequest<'a>>,
) -> BatchRoom {
    let mut room = limits.room();
    let head = keys::global_head().len();
    room.add(1, 1, 2 * head + 2 * 8);
    for request in requests {
        let (checks, mutations, bytes) = request.batch_share();
        room.add(checks, mutations, bytes);
    }
    room
}

/// One append, validated: its stream, the version it expects, its events (at least one,
/// at most `u32::MAX`, their versions within `u64`).
pub(crate) struct AppendRequest<'a> {
    pub stream: StreamKeys,
    pub expected_version: u64,
    pub events: Cow<'a, [NewEvent]>,
}

impl AppendRequest<'_> {
    /// Adds what this append puts in a batch to `room` if it fits there.
    fn admitted(&self, room: &mut BatchRoom) -> bool {
        let (checks, mutations, bytes) = self.batch_share();
        room.admit(checks, mutations, bytes)
    }

    /// What this append puts in a batch: its two checks, a put per event and its log
    /// entry, and their bytes (events at their largest envelope).
    fn batch_share(&self) -> (usize, usize, usize) {
        let key = self.stream.event(1).len();
        let events: usize = self
            .events
            .iter()
            .map(|event| key + EVENT_ENVELOPE + event.event_type.len() + event.payload.len())
            .sum();
        let log_entry = 2 * key;
        (2, self.events.len() + 1, 2 * key + events + log_entry)
    }

    /// How many events (validated to fit).
    fn count(&self) -> u32 {
        u32::try_from(self.events.len()).unwrap_or(u32::MAX)
    }

    fn into_owned(self) -> AppendRequest<'static> {
        AppendRequest {
            events: Cow::Owned(self.events.into_owned()),
            ..self
        }
    }

    fn names(&self) -> (String, String) {
        let (aggregate_type, aggregate_id) = self.stream.names().unwrap_or_default();
        (aggregate_type.to_owned(), aggregate_id.to_owned())
    }

    fn conflict(&self, actual: u64) -> EventStoreError {
        let (aggregate_type, aggregate_id) = self.names();
        EventStoreError::Conflict {
            aggregate_type,
            aggregate_id,
            expected: self.expected_version,
            actual,
        }
    }

    fn contended(&self, attempts: u32) -> EventStoreError {
        let (aggregate_type, aggregate_id) = self.names();
        EventStoreError::Contended {
            aggregate_type,
            aggregate_id,
            attempts,
        }
    }
}

/// The appends waiting for the write in flight, shared by the clones of one store.
#[derive(Debug, Default)]
pub(crate) struct AppendQueue {
    state: Mutex<QueueState>,
}

#[derive(Debug, Default)]
struct QueueState {
    /// Whether an append is leading (writing a batch).
    leading: bool,
    waiting: VecDeque<Waiting>,
    /// The latest version this store saw of recently written streams. Versions only
    /// grow, so an append expecting less cannot land: it is answered without a write.
    seen: HashMap<StreamKeys, u64>,
}

/// The most streams [`QueueState::seen`] remembers before it starts over.
const MAX_SEEN_STREAMS: usize = 4096;

struct Waiting {
    request: AppendRequest<'static>,
    turn: oneshot::Sender<Turn>,
}

impl std::fmt::Debug for Waiting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Waiting")
            .field("stream", &self.request.stream)
            .finish_non_exhaustive()
    }
}

/// What a queued append is told.
enum Turn {
    /// Its batch was written (or failed).
    Done(Result<Appended, EventStoreError>),
    /// It leads the next batch, starting with its own request.
    Lead(AppendRequest<'static>),
}

impl AppendQueue {
    fn lock(&self) -> MutexGuard<'_, QueueState> {
        // The state stays consistent between statements: a panic elsewhere cannot leave
        // it half-changed.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Removes the queued appends that go into a batch led by `own`: in queue order, at
    /// most one per stream, within the batch bounds. Appends whose caller gave up are
    /// dropped unwritten.
    fn take_batch(&self, own: &AppendRequest<'_>, limits: &WriteLimits) -> Vec<Waiting> {
        let mut streams = HashSet::from([own.stream.clone()]);
        let mut room = batch_room(limits, [own]);
        self.take(&mut streams, &mut room, 1, own.events.len())
    }

    /// Removes the queued appends that fit beside a batch of `appends` appends and
    /// `events` events on `streams` (the stream of each append looked at is added to it),
    /// within the engine's `room`, in queue order. Appends whose caller gave up are
    /// dropped unwritten.
    fn take(
        &self,
        streams: &mut HashSet<StreamKeys>,
        room: &mut BatchRoom,
        mut appends: usize,
        mut events: usize,
    ) -> Vec<Waiting> {
        let mut state = self.lock();
        if state.waiting.is_empty() {
            return Vec::new();
        }
        let mut batch = Vec::new();
        let mut kept = VecDeque::with_capacity(state.waiting.len());
        for waiting in state.waiting.drain(..) {
            if waiting.turn.is_canceled() {
                continue;
            }
            // A stream's appends keep their order: once one stays queued, so do those
            // behind it.
            let first_of_its_stream = streams.insert(waiting.request.stream.clone());
            let fits = first_of_its_stream
                && appends < MAX_BATCH_APPENDS
                && events + waiting.request.events.len() <= MAX_BATCH_EVENTS
                && waiting.request.admitted(room);
            if fits {
                appends += 1;
                events += waiting.request.events.len();
                batch.push(waiting);
            } else {
                kept.push_back(waiting);
            }
        }
        state.waiting = kept;
        batch
    }

    /// Puts `appends` back at the head of the queue, in their order.
    fn put_back(&self, appends: Vec<Waiting>) {
        self.lock().put_back(appends);
    }

    /// Which of `requests` expect a version their stream is known to be past.
    fn known_past(&self, requests: &[&AppendRequest<'_>]) -> Vec<bool> {
        let state = self.lock();
        requests
            .iter()
            .map(|request| {
                state
                    .seen
                    .get(&request.stream)
                    .is_some_and(|&version| version > request.expected_version)
            })
            .collect()
    }

    /// Remembers the versions this store's writes took streams to (at least those).
    fn wrote<'a>(&self, written: impl Iterator<Item = (&'a StreamKeys, u64)>) {
        let mut state = self.lock();
        for (stream, version) in written {
            remember(&mut state.seen, stream, |seen| seen.max(version));
        }
    }

    /// Remembers that `stream` is at `version` (just read: a store replaced behind this
    /// one's back may be behind what it saw before).
    fn read(&self, stream: &StreamKeys, version: u64) {
        remember(&mut self.lock().seen, stream, |_| version);
    }

    /// Gives the lead to the first queued append whose caller still waits, or ends it.
    fn hand_over(&self) {
        self.lock().hand_over();
    }

    /// Ends a lead: `unanswered` (appends it carried but did not answer, in queue order) go
    /// back to the head of the queue, and the lead passes on.
    fn resign(&self, unanswered: Vec<Waiting>) {
        let mut state = self.lock();
        state.put_back(unanswered);
        state.hand_over();
    }
}

impl QueueState {
    fn put_back(&mut self, appends: Vec<Waiting>) {
        for waiting in appends.into_iter().rev() {
            self.waiting.push_front(waiting);
        }
    }

    fn hand_over(&mut self) {
        while let Some(next) = self.waiting.pop_front() {
            if next.turn.send(Turn::Lead(next.request)).is_ok() {
                return;
            }
        }
        self.leading = false;
    }
}

fn remember(
    seen: &mut HashMap<StreamKeys, u64>,
    stream: &StreamKeys,
    update: impl FnOnce(u64) -> u64,
) {
    if seen.len() >= MAX_SEEN_STREAMS && !seen.contains_key(stream) {
        seen.clear();
    }
    let version = seen.entry(stream.clone()).or_default();
    *version = update(*version);
}

/// A queued append's wait for its turn. Dropped (its caller gave up) after it was handed
/// the lead but before it took it, it passes the lead on.
struct Ticket<'q> {
    queue: &'q AppendQueue,
    turn: oneshot::Receiver<Turn>,
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        // After `close`, a leader's `send` either fails (and it hands over to the next)
        // or left its message here to be found.
        self.turn.close();
        if let Ok(Some(Turn::Lead(_))) = self.turn.try_recv() {
            self.queue.hand_over();
        }
    }
}

/// The lead of one batch. Dropped (the leader's caller gave up, or the batch is done), it
/// puts the appends of the batch it has not answered back at the head of the queue, and
/// hands over the lead.
struct Leading<'q> {
    queue: &'q AppendQueue,
    /// Appends queued before the batch was formed, answered when the write is done.
    members: Vec<Waiting>,
    /// Appends that joined the batch when the write built it; answered by that write.
    joined: Vec<Waiting>,
}

impl Drop for Leading<'_> {
    fn drop(&mut self) {
        let mut unanswered = std::mem::take(&mut self.members);
        unanswered.append(&mut self.joined);
        self.queue.resign(unanswered);
    }
}

/// The answer to an append that lost its place in the queue (it cannot happen: every
/// queued append is answered, re-queued or handed the lead).
fn unanswered() -> EventStoreError {
    EventStoreError::Kv(KvError::ambiguous(
        "eventkv",
        "the append queue dropped this append unanswered",
        "unanswered",
    ))
}

impl<K: OrderedKv> KvEventStore<K> {
    /// Appends `request`, in the next batch of this store.
    pub(crate) async fn append_grouped(
        &self,
        request: AppendRequest<'_>,
    ) -> Result<Appended, EventStoreError> {
        // The lock is held in this block only: never across an await.
        let ticket = {
            let mut state = self.queue().lock();
            if state.leading {
                let (turn, waiting) = oneshot::channel();
                state.waiting.push_back(Waiting {
                    request: request.into_owned(),
                    turn,
                });
                Ok(Ticket {
                    queue: self.queue(),
                    turn: waiting,
                })
            } else {
                state.leading = true;
                Err(request)
            }
        };
        let mut ticket = match ticket {
            Ok(ticket) => ticket,
            Err(request) => return self.lead(request).await,
        };
        match (&mut ticket.turn).await {
            Ok(Turn::Done(result)) => result,
            // Taking the lead starts the batch's guard before this future can be dropped.
            Ok(Turn::Lead(own)) => self.lead(own).await,
            Err(oneshot::Canceled) => Err(unanswered()),
        }
    }

    /// Writes `own` and the appends queued meanwhile as one batch; hands each its result.
    async fn lead(&self, own: AppendRequest<'_>) -> Result<Appended, EventStoreError> {
        let mut leading = Leading {
            queue: self.queue(),
            members: self.queue().take_batch(&own, &self.kv().limits()),
            joined: Vec::new(),
        };
        let requests: Vec<&AppendRequest<'_>> = std::iter::once(&own)
            .chain(leading.members.iter().map(|waiting| &waiting.request))
            .collect();
        let results = self.write_batch(&requests, &mut leading.joined).await;
        let mut results = results.into_iter();
        let own = results.next();
        for (member, result) in leading.members.drain(..).zip(results) {
            let _ = member.turn.send(Turn::Done(result));
        }
        drop(leading);
        own.unwrap_or_else(|| Err(unanswered()))
    }

    /// Writes `requests` in one engine write, each with its own checks. A request whose
    /// check fails is answered alone (already stored, or `Conflict`) and the rest written
    /// again at once; a lost race for the global head (another process, another store on
    /// this engine) is retried after a pause. Returns one result per request, in order.
    async fn write_batch(
        &self,
        requests: &[&AppendRequest<'_>],
        joined: &mut Vec<Waiting>,
    ) -> Vec<Result<Appended, EventStoreError>> {
        let mut results: Vec<Option<Result<Appended, EventStoreError>>> =
            requests.iter().map(|_| None).collect();
        let mut pending: Vec<usize> = Vec::with_capacity(requests.len());
        // Appends expecting a version their stream is known to be past are answered by
        // reading (a retry of stored events, or a conflict), without a write that fails.
        for (index, past) in self.queue().known_past(requests).into_iter().enumerate() {
            if !past {
                pending.push(index);
                continue;
            }
            let request = requests[index];
            match self.refused(request).await {
                // What this store saw is gone (the engine's data was replaced): write it.
                Err(EventStoreError::Conflict { actual, .. })
                    if actual == request.expected_version =>
                {
                    pending.push(index);
                }
                answer => results[index] = Some(answer),
            }
        }
        let mut backoff = Backoff::new();
        let mut refused = HashSet::new();
        while !pending.is_empty() {
            let attempt = self
                .write_once(requests, &pending, &mut refused, joined)
                .await;
            match attempt {
                Ok(None) => {}
                Ok(Some(appended)) => {
                    self.appended().notify(usize::MAX);
                    let written = pending.iter().zip(&appended);
                    self.queue().wrote(written.map(|(&index, appended)| {
                        (&requests[index].stream, appended.last_version)
                    }));
                    for (index, appended) in pending.drain(..).zip(appended) {
                        results[index] = Some(Ok(appended));
                    }
                }
                Err(EventStoreError::Kv(KvError::Conflict { key }))
                    if key == keys::global_head() =>
                {
                    if !backoff.pause().await {
                        for index in pending.drain(..) {
                            results[index] =
                                Some(Err(requests[index].contended(backoff.attempts())));
                        }
                    }
                }
                Err(EventStoreError::Kv(KvError::Conflict { key })) => {
                    let stream = StreamKeys::from_event_key(&key).map(|(stream, _)| stream);
                    let owner = pending
                        .iter()
                        .position(|&index| Some(&requests[index].stream) == stream.as_ref());
                    if let Some(at) = owner {
                        let index = pending.remove(at);
                        results[index] = Some(self.refused(requests[index]).await);
                    } else {
                        let error = EventStoreError::Kv(KvError::Conflict { key });
                        for index in pending.drain(..) {
                            results[index] = Some(Err(error.clone()));
                        }
                    }
                }
                Err(error) => {
                    for index in pending.drain(..) {
                        results[index] = Some(Err(error.clone()));
                    }
                }
            }
        }
        results
            .into_iter()
            .map(|result| result.unwrap_or_else(|| Err(unanswered())))
            .collect()
    }

    /// One engine write of the `pending` requests, at the global head as the write finds
    /// it (read under the engine's write lock, where it has one). The appends that queued
    /// while the write waited for that lock join the batch when it is built (except those
    /// on `refused` streams): each is answered here. `Ok(None)`: one of those failed its
    /// check; they are back in the queue and the write is to be made again.
    async fn write_once(
        &self,
        requests: &[&AppendRequest<'_>],
        pending: &[usize],
        refused: &mut HashSet<StreamKeys>,
        joined: &mut Vec<Waiting>,
    ) -> Result<Option<Vec<Appended>>, EventStoreError> {
        let mut outcome = None;
        let (built, late) = (&mut outcome, &mut *joined);
        let excluded = &*refused;
        let limits = self.kv().limits();
        let build = move |values: &[Option<Bytes>]| {
            let head = values.first().and_then(Option::as_ref);
            let mut streams: HashSet<StreamKeys> = excluded.clone();
            let mut events = 0;
            for &index in pending {
                streams.insert(requests[index].stream.clone());
                events += requests[index].events.len();
            }
            let mut room = batch_room(&limits, pending.iter().map(|&index| requests[index]));
            *late = self
                .queue()
                .take(&mut streams, &mut room, pending.len(), events);
            let batch = pending.iter().map(|&index| requests[index]).chain(
                late.iter()
                    .map(|waiting| -> &AppendRequest<'_> { &waiting.request }),
            );
            match append_batch(batch, head) {
                Ok((batch, appended)) => {
                    *built = Some(Ok(appended));
                    Some(batch)
                }
                Err(error) => {
                    *built = Some(Err(error));
                    None
                }
            }
        };
        let written = self
            .kv()
            .write_with(vec![keys::global_head()], Box::new(build))
            .await;
        match written {
            Ok(_) => {}
            Err(KvError::Conflict { key }) => {
                let stream = StreamKeys::from_event_key(&key).map(|(stream, _)| stream);
                let theirs = joined
                    .iter()
                    .any(|waiting| Some(&waiting.request.stream) == stream.as_ref());
                self.queue().put_back(std::mem::take(joined));
                if let (true, Some(stream)) = (theirs, stream) {
                    refused.insert(stream);
                    return Ok(None);
                }
                return Err(KvError::Conflict { key }.into());
            }
            Err(error) => {
                let error = EventStoreError::Kv(error);
                for waiting in joined.drain(..) {
                    let _ = waiting.turn.send(Turn::Done(Err(error.clone())));
                }
                return Err(error);
            }
        }
        let mut appended = match outcome {
            Some(Ok(appended)) => appended,
            Some(Err(error)) => {
                self.queue().put_back(std::mem::take(joined));
                return Err(error);
            }
            None => {
                self.queue().put_back(std::mem::take(joined));
                return Err(corrupt(
                    &keys::global_head(),
                    "the write never built its batch",
                ));
            }
        };
        let theirs = appended.split_off(pending.len());
        self.queue().wrote(
            joined
                .iter()
                .zip(&theirs)
                .map(|(waiting, appended)| (&waiting.request.stream, appended.last_version)),
        );
        for (waiting, appended) in joined.drain(..).zip(theirs) {
            let _ = waiting.turn.send(Turn::Done(Ok(appended)));
        }
        Ok(Some(appended))
    }

    /// The answer to a request whose check failed: where its events are, if an earlier
    /// attempt stored them; else a conflict with the stream's version.
    async fn refused(&self, request: &AppendRequest<'_>) -> Result<Appended, EventStoreError> {
        let stored = self
            .already_appended(&request.stream, request.expected_version, &request.events)
            .await?;
        if let Some(appended) = stored {
            tracing::debug!("these events are already stored: nothing written");
            return Ok(appended);
        }
        let actual = self.current_version_impl(&request.stream).await?;
        self.queue().read(&request.stream, actual);
        Err(request.conflict(actual))
    }
}

/// The batch that appends `requests`, in order, after global position `head` (the head
/// key's value; none for an empty store), and where each lands.
fn append_batch<'r, 'a: 'r>(
    requests: impl Iterator<Item = &'r AppendRequest<'a>>,
    head: Option<&Bytes>,
) -> Result<(WriteBatch, Vec<Appended>), EventStoreError> {
    let head_key = keys::global_head();
    let mut position = match head {
        Some(value) => envelope::decode_head(value).map_err(|e| corrupt(&head_key, e))?,
        None => 0,
    };
    let timestamp = Timestamp::now();
    let mut batch = WriteBatch::new();
    let mut appended = Vec::new();
    for request in requests {
        let (stream, expected) = (&request.stream, request.expected_version);
        if expected > 0 {
            batch.check(stream.event(expected), Check::Present);
        }
        let first_key = stream.event(expected + 1);
        batch.check(first_key.clone(), Check::Absent);
        let too_large = || corrupt(&head_key, "the global head is too large to append");
        let first_position = position.checked_add(1).ok_or_else(too_large)?;
        let last_position = position
            .checked_add(u64::from(request.count()))
            .ok_or_else(too_large)?;
        for (offset, event) in (0..).zip(request.events.iter()) {
            let key = stream.event(expected + 1 + offset);
            let header = EventHeader {
                codec: event.codec,
                position: first_position + offset,
                event_id: event.event_id,
                timestamp,
                event_type: &event.event_type,
                shape_version: event.shape_version,
                metadata: event.metadata,
            };
            let value = envelope::encode_event(&key, &header, &event.payload);
            batch.put(key, value);
        }
        batch.put(
            keys::global_log(first_position),
            envelope::encode_log_entry(request.count(), &first_key),
        );
        appended.push(Appended {
            first_version: expected + 1,
            last_version: expected + u64::from(request.count()),
            first_position,
            last_position,
            duplicate: false,
        });
        position = last_position;
    }
    batch.put(head_key, envelope::encode_head(position));
    Ok((batch, appended))
}
