//! Following the global log from JavaScript: `subscribe` (catch up, then follow appends
//! of this page at once and of other tabs through a `BroadcastChannel`), checkpoints, and
//! read models whose state is saved with their checkpoint in one transaction.

use std::pin::pin;
use std::rc::{Rc, Weak};
use std::time::Duration;

use bytes::Bytes;
use eventkv::{EventStoreError, KvError, RecordedEvent, SubscribeOptions};
use futures_util::StreamExt;
use futures_util::future::{AbortHandle, Abortable};
use js_sys::{Function, Promise};
use serde::Serialize;
use serde_json::value::RawValue;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{JsFuture, spawn_local};
use web_sys::{BroadcastChannel, MessageEvent};

use crate::js_api::{JsEventStore, Stores, to_js};
use crate::js_error::ApiError;
use crate::js_input;
use crate::js_types::StoredEventJson;
use eventkv::ErrorKind;

/// How many events one `onEvents` call receives at most.
const BATCH: usize = 1000;
/// How often a subscription looks at the log without being told of an append, unless its
/// `pollInterval` says otherwise: appends of this page wake it at once, and those of other
/// tabs through the channel, so this only covers a message that never came.
const SAFETY_POLL: Duration = Duration::from_secs(30);
/// The read model key holding the state `saveReadModel` saves.
const STATE: &[u8] = b"state";

/// The `BroadcastChannel` named after the database: each append through this store is
/// announced on it, and an announcement from another tab wakes this store's
/// subscriptions.
pub(crate) struct AppendChannel {
    channel: BroadcastChannel,
    _on_message: Closure<dyn FnMut(MessageEvent)>,
}

/// Announces appends on a channel.
pub(crate) struct Announcer(BroadcastChannel);

impl Announcer {
    pub(crate) fn appended(&self, last_position: u64) {
        // A tab that misses it still polls: a failed post loses no event.
        let _ = self
            .0
            .post_message(&JsValue::from_f64(last_position as f64));
    }
}

impl AppendChannel {
    /// The channel of database `name`, or `None` where there is no `BroadcastChannel`
    /// (subscriptions then only poll for other tabs' appends).
    pub(crate) fn open(name: &str, stores: Weak<Stores>) -> Option<Self> {
        let channel = BroadcastChannel::new(&format!("eventkv:{name}")).ok()?;
        let on_message = Closure::<dyn FnMut(MessageEvent)>::new(move |_: MessageEvent| {
            if let Some(stores) = stores.upgrade() {
                stores.events.notify_appended();
            }
        });
        channel.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
        Some(AppendChannel {
            channel,
            _on_message: on_message,
        })
    }

    pub(crate) fn sender(&self) -> Announcer {
        Announcer(self.channel.clone())
    }

    pub(crate) fn close(&self) {
        self.channel.set_onmessage(None);
        self.channel.close();
    }
}

#[wasm_bindgen(js_class = EventStore)]
impl JsEventStore {
    /// Calls `onEvents` with the events of the global log from `fromPosition` (default
    /// 1), in position order, in batches, each event once; then with each new event as it
    /// is appended: at once from this page, and from other tabs through a
    /// `BroadcastChannel`. A promise `onEvents` returns is awaited before the next batch.
    /// A failed read is passed to `options.onError`; a retryable one (the database was
    /// unavailable) is tried again from where it was, any other stops the subscription,
    /// as `onEvents` throwing or rejecting does (code `Handler`). Returns
    /// the function that stops it; `close` stops them all.
    #[wasm_bindgen(unchecked_return_type = "() => void")]
    pub fn subscribe(
        &self,
        #[wasm_bindgen(js_name = fromPosition, unchecked_param_type = "number | undefined")]
        from_position: JsValue,
        #[wasm_bindgen(js_name = onEvents, unchecked_param_type = "OnEvents")] on_events: JsValue,
        #[wasm_bindgen(unchecked_optional_param_type = "SubscribeOptions")] options: Option<
            JsValue,
        >,
    ) -> Result<JsValue, JsValue> {
        let from = js_input::whole_number("fromPosition", &from_position, Some(1))?;
        let on_events = js_input::function("onEvents", &on_events)?;
        let input = js_input::subscribe_options(&options.unwrap_or_default())?;
        let stores = self.stores()?;
        let mut options = SubscribeOptions::default()
            .poll_interval(input.poll_interval.unwrap_or(SAFETY_POLL))
            .page_size(BATCH);
        if let Some(aggregate_type) = input.aggregate_type {
            options = options.aggregate_type(aggregate_type);
        }
        let (handle, registration) = AbortHandle::new_pair();
        let follow = follow(stores, from, options, on_events, input.on_error);
        spawn_local(async move {
            let _stopped = Abortable::new(follow, registration).await;
        });
        let mut subscriptions = self.subscriptions.borrow_mut();
        subscriptions.retain(|running| !running.is_aborted());
        subscriptions.push(handle.clone());
        let unsubscribe = Closure::<dyn FnMut()>::new(move || handle.abort());
        Ok(unsubscribe.into_js_value())
    }

    /// The position of the last event the consumer `name` handled; 0 when none.
    #[wasm_bindgen(unchecked_return_type = "Promise<number>")]
    pub fn checkpoint(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] name: JsValue,
    ) -> Promise {
        let name = js_input::string("name", &name);
        self.run(move |stores| async move {
            let position = stores.events.checkpoint(&name?).await?;
            Ok(JsValue::from_f64(position as f64))
        })
    }

    /// Records that the consumer `name` handled every event up to `position` (0 forgets
    /// it). Rejects a position past the last event.
    #[wasm_bindgen(js_name = saveCheckpoint, unchecked_return_type = "Promise<void>")]
    pub fn save_checkpoint(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] name: JsValue,
        #[wasm_bindgen(unchecked_param_type = "number")] position: JsValue,
    ) -> Promise {
        let input = js_input::string("name", &name)
            .and_then(|name| Ok((name, js_input::whole_number("position", &position, None)?)));
        self.run(move |stores| async move {
            let (name, position) = input?;
            stores.events.save_checkpoint(&name, position).await?;
            Ok(JsValue::UNDEFINED)
        })
    }

    /// The read model `name` as `saveReadModel` left it, or null when it was never saved.
    #[wasm_bindgen(js_name = readModel, unchecked_return_type = "Promise<ReadModelState | null>")]
    pub fn read_model(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] name: JsValue,
    ) -> Promise {
        let name = js_input::string("name", &name);
        self.run(move |stores| async move {
            let name = name?;
            let position = stores.events.checkpoint(&name).await?;
            let state = stores.events.read_model_get(&name, STATE).await?;
            if position == 0 && state.is_none() {
                return Ok(JsValue::NULL);
            }
            let state = match &state {
                Some(json) => Some(serde_json::from_slice::<&RawValue>(json).map_err(|error| {
                    ApiError::new(
                        ErrorKind::Corrupt,
                        format!("the state of read model {name:?} does not parse: {error}"),
                    )
                })?),
                None => None,
            };
            to_js(&ReadModelJson { position, state })
        })
    }

    /// Saves the state of the read model `name`, which folds the events up to `position`,
    /// with its checkpoint, in one transaction: only if it is still at `fromPosition` (0
    /// for the first save), else rejects with `Conflict` (another tab saved it first: read
    /// it again) and saves nothing.
    #[wasm_bindgen(js_name = saveReadModel, unchecked_return_type = "Promise<void>")]
    pub fn save_read_model(
        &self,
        #[wasm_bindgen(unchecked_param_type = "string")] name: JsValue,
        #[wasm_bindgen(js_name = fromPosition, unchecked_param_type = "number")]
        from_position: JsValue,
        #[wasm_bindgen(unchecked_param_type = "number")] position: JsValue,
        #[wasm_bindgen(unchecked_param_type = "unknown")] state: JsValue,
    ) -> Promise {
        let input = (|| -> Result<_, ApiError> {
            Ok((
                js_input::string("name", &name)?,
                js_input::whole_number("fromPosition", &from_position, None)?,
                js_input::whole_number("position", &position, None)?,
                js_input::json("state", &state)?,
            ))
        })();
        self.run(move |stores| async move {
            let (name, from, to, state) = input?;
            let change = (Bytes::from_static(STATE), Some(Bytes::from(state)));
            let saved = stores
                .events
                .commit_read_model(&name, from, to, [change])
                .await;
            match saved {
                Err(EventStoreError::Kv(KvError::Conflict { .. })) => Err(ApiError::new(
                    ErrorKind::Conflict,
                    format!(
                        "the read model {name:?} is no longer at position {from}: another tab saved it first; read it again"
                    ),
                )),
                saved => Ok(saved.map(|()| JsValue::UNDEFINED)?),
            }
        })
    }
}

/// A `ReadModelState` for `JSON.parse`.
#[derive(Serialize)]
struct ReadModelJson<'a> {
    position: u64,
    state: Option<&'a RawValue>,
}

/// Hands the events of the subscription to `on_events`, batch by batch, until it throws.
async fn follow(
    stores: Rc<Stores>,
    from: u64,
    options: SubscribeOptions,
    on_events: Function,
    on_error: Option<Function>,
) {
    // Whole pages: a read left half done while `onEvents` runs would find its IndexedDB
    // transaction ended.
    let mut pages = pin!(stores.events.subscribe_pages(from, options));
    while let Some(page) = pages.next().await {
        match page {
            Ok(events) => {
                if let Err(stop) = deliver(&on_events, &events).await {
                    return report(on_error.as_ref(), stop);
                }
            }
            Err(error) => report(on_error.as_ref(), error.into()),
        }
    }
}

/// Calls `on_events` with `events` (if any), and awaits the promise it returns.
async fn deliver(on_events: &Function, events: &[RecordedEvent]) -> Result<(), ApiError> {
    if events.is_empty() {
        return Ok(());
    }
    let json = events
        .iter()
        .map(StoredEventJson::recorded)
        .collect::<Result<Vec<_>, _>>()?;
    let handler = |thrown: JsValue| {
        ApiError::new(
            ErrorKind::Handler,
            format!(
                "onEvents failed on the events at positions {} to {}, and the subscription stopped: {}",
                events[0].position,
                events[events.len() - 1].position,
                thrown.dyn_ref::<js_sys::Error>().map_or_else(
                    || js_input::describe(&thrown),
                    |error| error.message().into()
                )
            ),
        )
    };
    let returned = on_events
        .call1(&JsValue::NULL, &to_js(&json)?)
        .map_err(handler)?;
    if let Some(promise) = returned.dyn_ref::<Promise>() {
        JsFuture::from(promise.clone()).await.map_err(handler)?;
    }
    Ok(())
}

/// Hands `error` to `on_error`, or logs it.
fn report(on_error: Option<&Function>, error: ApiError) {
    let error = JsValue::from(error);
    match on_error {
        Some(on_error) => {
            let _ = on_error.call1(&JsValue::NULL, &error);
        }
        None => web_sys::console::error_1(&error),
    }
}
