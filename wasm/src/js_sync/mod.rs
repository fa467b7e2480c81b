//! Sync with an `eventkv serve` server (docs/sync.md): a store opened with `{ sync }` is
//! a replica of the server's log plus an outbox. Appends land in the outbox (one
//! IndexedDB transaction with the aggregate's tip); one tab per origin, the leader (a Web
//! Lock), pushes the outbox and pulls the log; the others follow through a
//! `BroadcastChannel`. Conflicts go to the app's `rebase` callback, else are parked.

mod handle;
mod leader;
mod pull;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;

use eventkv::replica::{OutboxEntry, OutboxState, Replica};
use js_sys::{Function, Object, Promise, Reflect};
use serde::Serialize;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::spawn_local;
use web_sys::{AbortController, BroadcastChannel, MessageEvent};

use crate::indexeddb::{Durability, IndexedDbKv};
use crate::js_api::{Stores, to_js};
use crate::js_error::ApiError;
use crate::js_follow::Announcer;
use crate::js_input::SyncInput;
pub use handle::JsSync;
use leader::lead;

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
        Ok(self.replica.outbox(0, usize::MAX).await?)
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
