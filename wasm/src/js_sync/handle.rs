//! `store.sync`: the JavaScript handle of a store's sync.

use std::rc::Rc;

use eventkv::replica::{OutboxEntry, OutboxState};
use js_sys::Promise;
use serde::Serialize;
use wasm_bindgen::prelude::*;

use super::Syncer;
use super::leader::PendingJson;
use crate::js_api::to_js;
use crate::js_error::ApiError;
use crate::js_input;

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
