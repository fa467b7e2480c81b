//! Sync with an `eventkv serve` server (docs/sync.md): a store opened with `{ sync }` is
//! a replica of the server's log plus an outbox. Appends land in the outbox (one
//! IndexedDB transaction with the aggregate's tip); one tab per origin, the leader (a Web
//! Lock), pushes the outbox and pulls the log; the others follow through a
//! `BroadcastChannel`. Conflicts go to the app's `rebase` callback, else are parked.

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::Duration;

use eventkv::replica::{OutboxEntry, OutboxState, Replica};
use eventkv::{Codec, ErrorKind, EventStore as _, NewEvent, RecordedEvent};
use eventkv_sync::protocol::{
    AppendResult, ErrorResponse, JsonEvent, PROTOCOL, PullResponse, PushAppend, PushEvent,
    PushRequest, PushResponse,
};
use js_sys::{Function, Object, Promise, Reflect};
use serde::Serialize;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{JsFuture, spawn_local};
use web_sys::{AbortController, BroadcastChannel, MessageEvent, RequestInit, Response};

use crate::indexeddb::{Durability, IndexedDbKv};
use crate::js_api::{Stores, to_js};
use crate::js_error::ApiError;
use crate::js_follow::Announcer;
use crate::js_input::{self, SyncInput};
use crate::js_types::StoredEventJson;

/// The most appends one push carries (the server's default limit is 10,000).
const PUSH_APPENDS: usize = 1000;
/// The most events one pull asks for.
const PULL_PAGE: u64 = 4096;
/// How long a pull waits for new events when there is nothing to push.
const LONG_POLL: Duration = Duration::from_secs(20);
/// The first pause after a failed round, doubled up to [`LONGEST_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(250);
const LONGEST_PAUSE: Duration = Duration::from_secs(4);

#[wasm_bindgen]
extern "C" {
    /// The global `fetch` (a page's or a worker's).
    #[wasm_bindgen(js_name = fetch)]
    fn global_fetch(url: &str, init: &RequestInit) -> Promise;
}

/// What the sync handle reports.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Status {
    /// Whether the last exchange with the server succeeded (`None` before the first).
    online: Option<bool>,
    /// Whether this tab is the one that pushes and pulls.
    leader: bool,
    /// Whether a push is under way.
    pushing: bool,
    /// The server position the replica has pulled up to.
    pulled_up_to: u64,
    /// The server's last position, when it last said.
    head: u64,
    /// Local appends not yet confirmed by a pull.
    pending: u64,
    /// Appends set aside (a conflict without rebase, a refusal).
    parked: u64,
    /// The last failure, for people.
    last_error: Option<String>,
    /// Whether the sync was stopped.
    stopped: bool,
}

/// The sync of one store: shared by the store, its `Sync` handle and the leader loop.
pub(crate) struct Syncer {
    /// The replica on the store's own connection (local appends, reads).
    replica: Replica<Arc<IndexedDbKv>>,
    /// The replica on a connection of relaxed durability, for pulled pages.
    pulls: Replica<Arc<IndexedDbKv>>,
    input: SyncInput,
    status: RefCell<Status>,
    listeners: RefCell<Vec<Function>>,
    /// Wakes the leader loop (a local append, `syncNow`, `stop`).
    wake: event_listener::Event,
    /// Aborts the pull in flight, so that a local append is pushed at once.
    pull_abort: RefCell<Option<AbortController>>,
    /// Set by a local append (or `syncNow`) since the round began: the round's pull must
    /// not wait.
    poked: Cell<bool>,
    stopped: Cell<bool>,
    /// Resolves the promise that holds the leader lock.
    release: RefCell<Option<Function>>,
    /// Between the tabs of this store: "outbox" (a follower appended) and statuses.
    channel: Option<BroadcastChannel>,
    /// Tells the other tabs' subscriptions of pulled events.
    announce: Option<Announcer>,
    /// The JavaScript callbacks, kept alive as long as the sync.
    handlers: RefCell<Handlers>,
}

/// The callbacks the browser holds: the channel's `onmessage`, the lock's grant.
#[derive(Default)]
struct Handlers {
    message: Option<Closure<dyn FnMut(MessageEvent)>>,
    lock: Option<Closure<dyn FnMut(JsValue) -> Promise>>,
    /// The browser's `online` and `offline` events.
    network: Option<Closure<dyn FnMut(web_sys::Event)>>,
}

impl Syncer {
    /// Starts syncing the store `name`: asks for the leader lock, and follows the leader
    /// until it is granted.
    pub(crate) async fn start(
        name: &str,
        stores: &Rc<Stores>,
        input: SyncInput,
        announce: Option<Announcer>,
    ) -> Result<Rc<Syncer>, ApiError> {
        let relaxed = IndexedDbKv::open_with(name, Durability::Relaxed).await?;
        // One thread in a browser: the `Arc` is never sent (see `JsEventStore::connect`).
        #[allow(clippy::arc_with_non_send_sync)]
        let relaxed = Arc::new(relaxed);
        let channel = BroadcastChannel::new(&format!("eventkv-sync:{name}")).ok();
        let syncer = Rc::new(Syncer {
            replica: Replica::new(stores.events.clone()),
            pulls: Replica::new(eventkv::KvEventStore::new(relaxed)),
            input,
            status: RefCell::default(),
            listeners: RefCell::default(),
            wake: event_listener::Event::new(),
            pull_abort: RefCell::default(),
            poked: Cell::new(false),
            stopped: Cell::new(false),
            release: RefCell::default(),
            channel,
            announce,
            handlers: RefCell::default(),
        });
        if let Some(channel) = &syncer.channel {
            let weak = Rc::downgrade(&syncer);
            let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |event: MessageEvent| {
                if let Some(syncer) = weak.upgrade() {
                    syncer.heard(&event.data());
                }
            });
            channel.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
            syncer.handlers.borrow_mut().message = Some(on_message);
        }
        Syncer::watch_network(&syncer);
        let weak = Rc::downgrade(&syncer);
        spawn_local(async move {
            if let Some(syncer) = weak.upgrade() {
                syncer.refresh_counts().await;
            }
        });
        Syncer::request_lock(&syncer, name);
        Ok(syncer)
    }

    /// Going offline cuts the long poll short (its connection may hang on); coming back
    /// online syncs at once instead of after the pause between retries.
    fn watch_network(syncer: &Rc<Syncer>) {
        let weak = Rc::downgrade(syncer);
        let on_network = Closure::<dyn FnMut(web_sys::Event)>::new(move |event: web_sys::Event| {
            let Some(syncer) = weak.upgrade() else { return };
            if event.type_() == "offline" {
                syncer.update(|status| status.online = Some(false));
            }
            syncer.poke();
        });
        if let Ok(target) = js_sys::global().dyn_into::<web_sys::EventTarget>() {
            for name in ["online", "offline"] {
                let _ = target
                    .add_event_listener_with_callback(name, on_network.as_ref().unchecked_ref());
            }
        }
        syncer.handlers.borrow_mut().network = Some(on_network);
    }

    /// Asks for the Web Lock `eventkv-sync:NAME`; the tab holding it leads. Where there
    /// are no Web Locks, this tab leads.
    fn request_lock(syncer: &Rc<Syncer>, name: &str) {
        let weak = Rc::downgrade(syncer);
        let on_lock = Closure::<dyn FnMut(JsValue) -> Promise>::new(move |_lock: JsValue| {
            let Some(syncer) = weak.upgrade() else {
                return Promise::resolve(&JsValue::UNDEFINED);
            };
            if syncer.stopped.get() {
                return Promise::resolve(&JsValue::UNDEFINED);
            }
            // Held until `stop` resolves it, or until the tab goes away.
            let held = Promise::new(&mut |resolve, _reject| {
                *syncer.release.borrow_mut() = Some(resolve);
            });
            spawn_local(lead(Rc::downgrade(&syncer)));
            held
        });
        let locks = Reflect::get(&js_sys::global(), &"navigator".into())
            .and_then(|navigator| Reflect::get(&navigator, &"locks".into()))
            .ok()
            .filter(|locks| !locks.is_undefined() && !locks.is_null());
        let requested = locks.and_then(|locks| {
            let request = Reflect::get(&locks, &"request".into()).ok()?;
            let request = request.dyn_into::<Function>().ok()?;
            request
                .call2(
                    &locks,
                    &JsValue::from_str(&format!("eventkv-sync:{name}")),
                    on_lock.as_ref().unchecked_ref(),
                )
                .ok()
        });
        if requested.is_none() {
            spawn_local(lead(Rc::downgrade(syncer)));
        }
        syncer.handlers.borrow_mut().lock = Some(on_lock);
    }

    /// A message of another tab: an append to push (for the leader), or the leader's
    /// status (for the others).
    fn heard(&self, data: &JsValue) {
        if data.as_string().as_deref() == Some("outbox") {
            self.poke();
            return;
        }
        if self.status.borrow().leader {
            return;
        }
        if let Some(json) = data.as_string()
            && let Ok(status) = serde_json::from_str::<LeaderStatus>(&json)
        {
            self.update(|mine| {
                mine.online = status.online;
                mine.pushing = status.pushing;
                mine.head = status.head;
                mine.pulled_up_to = status.pulled_up_to;
                mine.last_error = status.last_error;
            });
        }
    }

    /// A local append: push it now (this tab leads) or tell the leader.
    pub(crate) fn appended(self: &Rc<Self>) {
        if self.status.borrow().leader {
            self.poke();
        } else if let Some(channel) = &self.channel {
            let _ = channel.post_message(&JsValue::from_str("outbox"));
        }
        let syncer = Rc::clone(self);
        spawn_local(async move { syncer.refresh_counts().await });
    }

    /// Wakes the leader loop and cuts its long poll short.
    fn poke(&self) {
        self.poked.set(true);
        self.wake.notify(usize::MAX);
        if let Some(abort) = self.pull_abort.borrow_mut().take() {
            abort.abort();
        }
    }

    /// Stops syncing: the loop ends, the lock is released (another tab may lead).
    pub(crate) fn stop(&self) {
        if self.stopped.replace(true) {
            return;
        }
        self.poke();
        if let Some(release) = self.release.borrow_mut().take() {
            let _ = release.call0(&JsValue::UNDEFINED);
        }
        if let Some(channel) = &self.channel {
            channel.set_onmessage(None);
            channel.close();
        }
        if let (Ok(target), Some(on_network)) = (
            js_sys::global().dyn_into::<web_sys::EventTarget>(),
            self.handlers.borrow().network.as_ref(),
        ) {
            for name in ["online", "offline"] {
                let _ = target
                    .remove_event_listener_with_callback(name, on_network.as_ref().unchecked_ref());
            }
        }
        self.update(|status| {
            status.stopped = true;
            status.leader = false;
            status.pushing = false;
        });
    }

    pub(crate) fn status(&self) -> Status {
        self.status.borrow().clone()
    }

    /// Changes the status; tells the listeners (and the other tabs) when it changed.
    fn update(&self, change: impl FnOnce(&mut Status)) {
        let status = {
            let mut status = self.status.borrow_mut();
            let before = status.clone();
            change(&mut status);
            if *status == before {
                return;
            }
            status.clone()
        };
        if status.leader
            && let Some(channel) = &self.channel
            && let Ok(json) = serde_json::to_string(&LeaderStatus::of(&status))
        {
            let _ = channel.post_message(&JsValue::from_str(&json));
        }
        let Ok(value) = to_js(&status) else {
            return;
        };
        for listener in self.listeners.borrow().iter() {
            let _ = listener.call1(&JsValue::NULL, &value);
        }
    }

    /// Counts the outbox's pending and parked entries into the status.
    async fn refresh_counts(&self) {
        let Ok(entries) = self.all_entries().await else {
            return;
        };
        let parked = entries
            .iter()
            .filter(|entry| matches!(entry.state, OutboxState::Parked { .. }))
            .count() as u64;
        let pending = entries.len() as u64 - parked;
        let cursor = self.replica.cursor().await.unwrap_or(0);
        self.update(|status| {
            status.pending = pending;
            status.parked = parked;
            status.pulled_up_to = status.pulled_up_to.max(cursor);
        });
    }

    pub(crate) async fn all_entries(&self) -> Result<Vec<OutboxEntry>, ApiError> {
        let mut entries = Vec::new();
        loop {
            let from = entries.last().map_or(0, |last: &OutboxEntry| last.seq + 1);
            let page = self.replica.outbox(from, 1000).await?;
            let full = page.len() == 1000;
            entries.extend(page);
            if !full {
                return Ok(entries);
            }
        }
    }

    pub(crate) fn replica(&self) -> &Replica<Arc<IndexedDbKv>> {
        &self.replica
    }

    pub(crate) fn on_status(&self, listener: Function) {
        self.listeners.borrow_mut().push(listener);
    }

    pub(crate) fn off_status(&self, listener: &Function) {
        self.listeners
            .borrow_mut()
            .retain(|known| !Object::is(known, listener));
    }
}

/// The part of the leader's status the other tabs show.
#[derive(Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct LeaderStatus {
    online: Option<bool>,
    pushing: bool,
    head: u64,
    pulled_up_to: u64,
    last_error: Option<String>,
}

impl LeaderStatus {
    fn of(status: &Status) -> Self {
        LeaderStatus {
            online: status.online,
            pushing: status.pushing,
            head: status.head,
            pulled_up_to: status.pulled_up_to,
            last_error: status.last_error.clone(),
        }
    }
}

/// A failure of one round with the server.
enum RoundError {
    /// The pull was cut short to push a local append: not a failure.
    Poked,
    /// The server could not be reached, or answered with an error.
    Failed(String),
}

impl From<ApiError> for RoundError {
    fn from(error: ApiError) -> Self {
        RoundError::Failed(error.message().to_owned())
    }
}

impl From<eventkv::EventStoreError> for RoundError {
    fn from(error: eventkv::EventStoreError) -> Self {
        RoundError::Failed(format!("the local store failed: {error}"))
    }
}

/// The leader loop: push, pull, repeat, until stopped.
async fn lead(syncer: Weak<Syncer>) {
    let Some(me) = syncer.upgrade() else { return };
    me.update(|status| status.leader = true);
    drop(me);
    let mut pause = FIRST_PAUSE;
    loop {
        let Some(me) = syncer.upgrade() else { return };
        if me.stopped.get() {
            return;
        }
        let woken = me.wake.listen();
        match round(&me).await {
            Ok(()) | Err(RoundError::Poked) => {
                pause = FIRST_PAUSE;
                me.update(|status| {
                    status.online = Some(true);
                    status.last_error = None;
                    status.pushing = false;
                });
            }
            Err(RoundError::Failed(why)) => {
                me.update(|status| {
                    status.online = Some(false);
                    status.last_error = Some(why);
                    status.pushing = false;
                });
                drop(me);
                let timer = futures_timer::Delay::new(pause);
                futures_util::future::select(timer, woken).await;
                pause = (pause * 2).min(LONGEST_PAUSE);
            }
        }
    }
}

/// One round: push everything pending, then one pull: a long poll when nothing is left
/// to push and the server answered before (the first pull answers at once, so that the
/// status says online).
async fn round(syncer: &Syncer) -> Result<(), RoundError> {
    // An append from here on is either seen by the push or cuts the pull short.
    syncer.poked.set(false);
    push_pending(syncer).await?;
    let nothing_to_push = syncer
        .all_entries()
        .await?
        .iter()
        .all(|entry| entry.state != OutboxState::Pending);
    let answered_before = syncer.status.borrow().online == Some(true);
    let wait = if nothing_to_push && answered_before {
        LONG_POLL
    } else {
        Duration::ZERO
    };
    pull(syncer, wait).await
}

/// Pushes the pending entries, a batch at a time, and handles each answer.
async fn push_pending(syncer: &Syncer) -> Result<(), RoundError> {
    loop {
        let pending: Vec<OutboxEntry> = syncer
            .all_entries()
            .await?
            .into_iter()
            .filter(|entry| entry.state == OutboxState::Pending)
            .take(PUSH_APPENDS)
            .collect();
        if pending.is_empty() || syncer.stopped.get() {
            syncer.refresh_counts().await;
            return Ok(());
        }
        syncer.update(|status| status.pushing = true);
        let request = PushRequest {
            protocol: PROTOCOL,
            appends: pending.iter().map(push_append).collect::<Result<_, _>>()?,
        };
        let body = serde_json::to_string(&request)
            .map_err(|error| RoundError::Failed(format!("encoding a push: {error}")))?;
        let text = exchange(syncer, "POST", "/push", Some(&body), None).await?;
        let response: PushResponse = serde_json::from_str(&text)
            .map_err(|error| RoundError::Failed(format!("the server's push answer: {error}")))?;
        if response.results.len() != pending.len() {
            return Err(RoundError::Failed(format!(
                "the server answered {} of {} appends",
                response.results.len(),
                pending.len()
            )));
        }
        let mut conflicted = Vec::new();
        let mut pushed = Vec::new();
        for (entry, result) in pending.iter().zip(response.results) {
            match result {
                AppendResult::Applied(placed) | AppendResult::Duplicate(placed) => {
                    pushed.push((entry.seq, placed.first_position, placed.last_position));
                }
                AppendResult::Conflict { actual_version, .. } => {
                    let stream = (entry.aggregate_type.clone(), entry.aggregate_id.clone());
                    if !conflicted.iter().any(|(s, _)| *s == stream) {
                        conflicted.push((stream, actual_version));
                    }
                }
                AppendResult::Skipped => {}
                AppendResult::Rejected { reason, message } => {
                    let reason = format!("refused by the server ({reason:?}): {message}");
                    syncer
                        .replica
                        .park(&entry.aggregate_type, &entry.aggregate_id, &reason)
                        .await?;
                }
            }
        }
        syncer.replica.mark_pushed(&pushed).await?;
        if !conflicted.is_empty() {
            // The server's events first: the rebase runs on the confirmed state.
            pull(syncer, Duration::ZERO).await?;
            for ((aggregate_type, aggregate_id), actual) in conflicted {
                resolve(syncer, &aggregate_type, &aggregate_id, actual).await?;
            }
        }
        syncer.refresh_counts().await;
    }
}

fn push_append(entry: &OutboxEntry) -> Result<PushAppend, RoundError> {
    Ok(PushAppend {
        aggregate_type: entry.aggregate_type.clone(),
        aggregate_id: entry.aggregate_id.clone(),
        expected_version: entry.expected_version,
        events: entry
            .events
            .iter()
            .map(|event| {
                Ok::<_, RoundError>(PushEvent {
                    event_id: event.event_id,
                    event_type: event.event_type.clone(),
                    codec: event.codec.name().to_owned(),
                    payload: serde_json::from_slice(&event.payload).map_err(|error| {
                        RoundError::Failed(format!("outbox entry {}: {error}", entry.seq))
                    })?,
                    correlation_id: event.metadata.correlation_id,
                    causation_id: event.metadata.causation_id,
                })
            })
            .collect::<Result<_, RoundError>>()?,
    })
}

/// A conflict on one aggregate: the app's `rebase` gives the events to push instead (or
/// none, dropping them); without it, or when it returns null or throws, they are parked.
async fn resolve(
    syncer: &Syncer,
    aggregate_type: &str,
    aggregate_id: &str,
    actual: u64,
) -> Result<(), RoundError> {
    let entries: Vec<OutboxEntry> = syncer
        .replica
        .entries_of(aggregate_type, aggregate_id)
        .await?
        .into_iter()
        .filter(|entry| entry.state == OutboxState::Pending)
        .collect();
    let Some(first) = entries.first() else {
        return Ok(());
    };
    let park_reason = format!(
        "conflict: {aggregate_type} {aggregate_id:?} is at version {actual} on the server, these events were made on version {}",
        first.expected_version
    );
    let Some(rebase) = syncer.input.rebase.clone() else {
        syncer
            .replica
            .park(aggregate_type, aggregate_id, &park_reason)
            .await?;
        return Ok(());
    };
    let store = syncer.replica.store();
    let version = store
        .current_version(aggregate_type, aggregate_id)
        .await
        .map_err(ApiError::from)?;
    let server_events = store
        .read_stream(
            aggregate_type,
            aggregate_id,
            first.expected_version + 1,
            u64::MAX,
            4096,
        )
        .await
        .map_err(ApiError::from)?;
    let server_json = server_events
        .iter()
        .map(|event| StoredEventJson::new(&event))
        .collect::<Result<Vec<_>, _>>()?;
    let pending: Vec<&NewEvent> = entries.iter().flat_map(|entry| &entry.events).collect();
    let conflict = to_js(&ConflictJson {
        aggregate_type,
        aggregate_id,
        version,
        server_events: server_json,
        pending: pending
            .iter()
            .map(|event| PendingJson::of(event))
            .collect::<Result<_, _>>()?,
    })?;
    let answer = match rebase.call1(&JsValue::NULL, &conflict) {
        Ok(value) => match value.dyn_ref::<Promise>() {
            Some(promise) => JsFuture::from(promise.clone()).await,
            None => Ok(value),
        },
        Err(thrown) => Err(thrown),
    };
    match answer {
        Ok(events) if events.is_null() || events.is_undefined() => {
            syncer
                .replica
                .park(aggregate_type, aggregate_id, &park_reason)
                .await?;
        }
        Ok(events) => match js_input::new_events(&events) {
            Ok(events) => {
                syncer
                    .replica
                    .rebase(aggregate_type, aggregate_id, &events)
                    .await?;
            }
            Err(error) => {
                let reason = format!(
                    "{park_reason}; rebase returned bad events: {}",
                    error.message()
                );
                syncer
                    .replica
                    .park(aggregate_type, aggregate_id, &reason)
                    .await?;
            }
        },
        Err(thrown) => {
            let reason = format!(
                "{park_reason}; rebase threw: {}",
                js_input::describe(&thrown)
            );
            syncer
                .replica
                .park(aggregate_type, aggregate_id, &reason)
                .await?;
        }
    }
    Ok(())
}

/// What `rebase` is given.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ConflictJson<'a> {
    aggregate_type: &'a str,
    aggregate_id: &'a str,
    /// The aggregate's confirmed version: the new events are made on it.
    version: u64,
    /// The server's events since the pending ones were made.
    server_events: Vec<StoredEventJson<'a>>,
    /// The pending events, in order.
    pending: Vec<PendingJson<'a>>,
}

/// A pending event as the JS API shows it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PendingJson<'a> {
    event_id: eventkv::Uuid,
    #[serde(rename = "type")]
    event_type: &'a str,
    data: &'a serde_json::value::RawValue,
    correlation_id: Option<eventkv::Uuid>,
    causation_id: Option<eventkv::Uuid>,
}

impl<'a> PendingJson<'a> {
    pub(crate) fn of(event: &'a NewEvent) -> Result<Self, ApiError> {
        if event.codec != Codec::Json {
            return Err(ApiError::new(
                ErrorKind::Unsupported,
                "a pending event that is not JSON",
            ));
        }
        Ok(PendingJson {
            event_id: event.event_id,
            event_type: &event.event_type,
            data: serde_json::from_slice(&event.payload).map_err(|error| {
                ApiError::new(
                    ErrorKind::Corrupt,
                    format!("a pending event's JSON: {error}"),
                )
            })?,
            correlation_id: event.metadata.correlation_id,
            causation_id: event.metadata.causation_id,
        })
    }
}

/// Pulls after the replica's cursor, the first request waiting up to `wait`, until the
/// server has nothing more at once; writes each page as it comes. While one page is
/// written, the next is on its way.
async fn pull(syncer: &Syncer, wait: Duration) -> Result<(), RoundError> {
    let mut after = syncer.replica.cursor().await?;
    let mut page = fetch_page(syncer, after, wait, true).await?;
    loop {
        if !page.more {
            return apply_page(syncer, after, page).await;
        }
        let cursor = page.cursor;
        let (applied, next) = futures_util::future::join(
            apply_page(syncer, after, page),
            fetch_page(syncer, cursor, Duration::ZERO, false),
        )
        .await;
        applied?;
        page = next?;
        after = cursor;
    }
}

/// The page after `after`; a pull that may wait is cut short by a local append
/// (`abortable`).
async fn fetch_page(
    syncer: &Syncer,
    after: u64,
    wait: Duration,
    abortable: bool,
) -> Result<PulledPage, RoundError> {
    let abort = if abortable {
        AbortController::new().ok()
    } else {
        None
    };
    if abortable {
        syncer.pull_abort.borrow_mut().clone_from(&abort);
    }
    // An append made before the controller was there did not abort it: do not wait.
    let wait = if abortable && syncer.poked.get() {
        Duration::ZERO
    } else {
        wait
    };
    let path = format!(
        "/pull?protocol={PROTOCOL}&after={after}&limit={PULL_PAGE}&wait_ms={}",
        wait.as_millis()
    );
    let text = exchange(syncer, "GET", &path, None, abort.as_ref()).await;
    if abortable {
        syncer.pull_abort.borrow_mut().take();
    }
    let page: PullResponse = serde_json::from_str(&text?)
        .map_err(|error| RoundError::Failed(format!("the server's pull answer: {error}")))?;
    let events = page
        .events
        .iter()
        .map(JsonEvent::to_recorded)
        .collect::<Result<Vec<RecordedEvent>, String>>()
        .map_err(RoundError::Failed)?;
    Ok(PulledPage {
        events,
        cursor: page.cursor,
        head: page.head,
        more: page.more,
    })
}

/// A page of the server's log, decoded.
struct PulledPage {
    events: Vec<RecordedEvent>,
    cursor: u64,
    head: u64,
    more: bool,
}

/// Writes a pulled page (written with relaxed durability: a page an OS crash loses is
/// pulled again, the cursor being in the same transaction), then tells this tab's and
/// the other tabs' subscriptions.
async fn apply_page(syncer: &Syncer, after: u64, page: PulledPage) -> Result<(), RoundError> {
    if page.cursor > after || !page.events.is_empty() {
        syncer
            .pulls
            .apply_pulled(after, &page.events, page.cursor)
            .await
            .map_err(ApiError::from)?;
    }
    syncer.update(|status| {
        status.pulled_up_to = page.cursor;
        status.head = page.head;
    });
    if !page.events.is_empty() {
        syncer.replica.store().notify_appended();
        if let Some(announce) = &syncer.announce {
            announce.appended(page.cursor);
        }
        syncer.refresh_counts().await;
    }
    Ok(())
}

/// One request to the server: the answer's text, or why there is none.
async fn exchange(
    syncer: &Syncer,
    method: &str,
    path: &str,
    body: Option<&str>,
    abort: Option<&AbortController>,
) -> Result<String, RoundError> {
    let init = RequestInit::new();
    init.set_method(method);
    let headers = Object::new();
    if let Some(token) = &syncer.input.token {
        let _ = Reflect::set(
            &headers,
            &"authorization".into(),
            &format!("Bearer {token}").into(),
        );
    }
    if let Some(body) = body {
        let _ = Reflect::set(&headers, &"content-type".into(), &"application/json".into());
        init.set_body(&JsValue::from_str(body));
    }
    init.set_headers(&headers);
    if let Some(abort) = abort {
        init.set_signal(Some(&abort.signal()));
    }
    let url = format!("{}{path}", syncer.input.url.trim_end_matches('/'));
    let response = JsFuture::from(global_fetch(&url, &init))
        .await
        .map_err(|error| {
            if abort.is_some_and(|abort| abort.signal().aborted()) {
                RoundError::Poked
            } else {
                RoundError::Failed(format!(
                    "{url} cannot be reached: {}",
                    js_input::describe(&error)
                ))
            }
        })?;
    let response: Response = response
        .dyn_into()
        .map_err(|_| RoundError::Failed("fetch did not answer a Response".to_owned()))?;
    let text = match response.text() {
        Ok(promise) => JsFuture::from(promise).await.map_err(|error| {
            if abort.is_some_and(|abort| abort.signal().aborted()) {
                RoundError::Poked
            } else {
                RoundError::Failed(format!(
                    "reading the answer of {url}: {}",
                    js_input::describe(&error)
                ))
            }
        })?,
        Err(error) => return Err(RoundError::Failed(js_input::describe(&error))),
    };
    let text = text.as_string().unwrap_or_default();
    if response.ok() {
        syncer.update(|status| {
            status.online = Some(true);
            status.last_error = None;
        });
        return Ok(text);
    }
    let why = serde_json::from_str::<ErrorResponse>(&text).map_or_else(
        |_| format!("{url} answered {}: {text}", response.status()),
        |error| {
            format!(
                "{url} answered {}: {}",
                response.status(),
                error.error.message
            )
        },
    );
    Err(RoundError::Failed(why))
}

/// The JavaScript handle of a store's sync: `store.sync`.
#[wasm_bindgen(js_name = Sync)]
pub struct JsSync {
    pub(crate) syncer: Rc<Syncer>,
}

#[wasm_bindgen(js_class = Sync)]
impl JsSync {
    /// The sync's status now (this tab's view; a follower shows the leader's).
    #[wasm_bindgen(unchecked_return_type = "SyncStatus")]
    pub fn status(&self) -> Result<JsValue, JsValue> {
        Ok(to_js(&self.syncer.status())?)
    }

    /// Calls `listener` with the status each time it changes; returns the function that
    /// stops it.
    #[wasm_bindgen(js_name = onStatus, unchecked_return_type = "() => void")]
    pub fn on_status(
        &self,
        #[wasm_bindgen(unchecked_param_type = "(status: SyncStatus) => void")] listener: JsValue,
    ) -> Result<JsValue, JsValue> {
        let listener = js_input::function("listener", &listener)?;
        self.syncer.on_status(listener.clone());
        let weak = Rc::downgrade(&self.syncer);
        let off = Closure::<dyn FnMut()>::new(move || {
            if let Some(syncer) = weak.upgrade() {
                syncer.off_status(&listener);
            }
        });
        Ok(off.into_js_value())
    }

    /// The outbox: local appends waiting to be confirmed (`pending`, `pushed`) and those
    /// set aside (`parked`, with the reason), in push order.
    #[wasm_bindgen(unchecked_return_type = "Promise<OutboxEntry[]>")]
    pub fn outbox(&self) -> Promise {
        let syncer = Rc::clone(&self.syncer);
        wasm_bindgen_futures::future_to_promise(async move {
            let entries = syncer.all_entries().await?;
            let json = entries
                .iter()
                .map(OutboxEntryJson::of)
                .collect::<Result<Vec<_>, _>>()?;
            Ok(to_js(&json)?)
        })
    }

    /// Removes a parked entry (the app has dealt with it); resolves to whether it was
    /// there. Rejects for an entry that is not parked.
    #[wasm_bindgen(unchecked_return_type = "Promise<boolean>")]
    pub fn discard(
        &self,
        #[wasm_bindgen(unchecked_param_type = "number")] seq: JsValue,
    ) -> Promise {
        let syncer = Rc::clone(&self.syncer);
        let seq = js_input::whole_number("seq", &seq, None);
        wasm_bindgen_futures::future_to_promise(async move {
            let discarded = syncer.replica.discard(seq?).await.map_err(ApiError::from)?;
            syncer.refresh_counts().await;
            Ok(JsValue::from_bool(discarded))
        })
    }

    /// Pushes and pulls now, without waiting for the current long poll.
    #[wasm_bindgen(js_name = syncNow)]
    pub fn sync_now(&self) {
        if self.syncer.status.borrow().leader {
            self.syncer.poke();
        } else if let Some(channel) = &self.syncer.channel {
            let _ = channel.post_message(&JsValue::from_str("outbox"));
        }
    }

    /// Stops syncing (the store stays open, its appends wait in the outbox); another tab
    /// may take the lead.
    pub fn stop(&self) {
        self.syncer.stop();
    }
}

/// An `OutboxEntry` for `JSON.parse`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OutboxEntryJson<'a> {
    seq: u64,
    aggregate_type: &'a str,
    aggregate_id: &'a str,
    expected_version: u64,
    events: Vec<PendingJson<'a>>,
    state: &'static str,
    reason: Option<&'a str>,
}

impl<'a> OutboxEntryJson<'a> {
    fn of(entry: &'a OutboxEntry) -> Result<Self, ApiError> {
        let (state, reason) = match &entry.state {
            OutboxState::Pending => ("pending", None),
            OutboxState::Pushed { .. } => ("pushed", None),
            OutboxState::Parked { reason } => ("parked", Some(reason.as_str())),
        };
        Ok(OutboxEntryJson {
            seq: entry.seq,
            aggregate_type: &entry.aggregate_type,
            aggregate_id: &entry.aggregate_id,
            expected_version: entry.expected_version,
            events: entry
                .events
                .iter()
                .map(PendingJson::of)
                .collect::<Result<_, _>>()?,
            state,
            reason,
        })
    }
}
