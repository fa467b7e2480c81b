//! Pulling the server's log into the replica, and the HTTP exchanges with the server.

use std::time::Duration;

use eventkv::RecordedEvent;
use eventkv_sync::protocol::{ErrorResponse, JsonEvent, PROTOCOL, PullResponse};
use js_sys::{Object, Promise, Reflect};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::{AbortController, RequestInit, Response};

use super::Syncer;
use super::leader::RoundError;
use crate::js_error::ApiError;
use crate::js_input;

#[wasm_bindgen]
extern "C" {
    /// The global `fetch` (a page's or a worker's).
    #[wasm_bindgen(js_name = fetch)]
    fn global_fetch(url: &str, init: &RequestInit) -> Promise;
}

/// The most events one pull asks for.
const PULL_PAGE: u64 = 4096;

/// Pulls after the replica's cursor, the first request waiting up to `wait`, until the
/// server has nothing more at once; writes each page as it comes. While one page is
/// written, the next is on its way.
pub(super) async fn pull(syncer: &Syncer, wait: Duration) -> Result<(), RoundError> {
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
pub(super) async fn exchange(
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
    // A fetch that failed because a local append aborted it is no failure.
    let failed = |error: &JsValue, what: &str| {
        if abort.is_some_and(|abort| abort.signal().aborted()) {
            RoundError::Poked
        } else {
            RoundError::Failed(format!("{url} {what}: {}", js_input::describe(error)))
        }
    };
    let response = JsFuture::from(global_fetch(&url, &init))
        .await
        .map_err(|error| failed(&error, "cannot be reached"))?;
    let response: Response = response
        .dyn_into()
        .map_err(|_| RoundError::Failed("fetch did not answer a Response".to_owned()))?;
    let text = match response.text() {
        Ok(promise) => JsFuture::from(promise)
            .await
            .map_err(|error| failed(&error, "broke off its answer"))?,
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
    if response.status() == 413 {
        return Err(RoundError::TooLarge(why));
    }
    Err(RoundError::Failed(why))
}
