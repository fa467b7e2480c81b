//! `GET /pull`: the global log after a position, filtered to what the caller may read; a
//! pull with `wait_ms` waits (long poll) until there is something for it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use eventkv::OrderedKv;
use tokio::time::Instant;

use super::{ApiError, Shared, check_protocol};
use crate::protocol::{ErrorCode, JsonEvent, PROTOCOL, PullResponse};

/// How many events a pull returns when it does not say.
const DEFAULT_PAGE: usize = 1000;

/// A pull's query, checked.
struct PullQuery {
    after: u64,
    limit: usize,
    wait: Duration,
}

pub(crate) async fn pull<K: OrderedKv + Clone + Send + Sync + 'static>(
    State(shared): State<Arc<Shared<K>>>,
    headers: HeaderMap,
    query: Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<PullResponse>, ApiError> {
    let principal = shared.principal(&headers)?;
    let query = query
        .map_err(|rejection| ApiError::new(ErrorCode::InvalidRequest, rejection.body_text()))?;
    let query = parse(&query.0, &shared.limits)?;
    if principal.read.is_empty() {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            format!("{} may not read any aggregate type", principal.name),
        ));
    }
    let readable = |aggregate_type: &str| principal.read.contains(aggregate_type);
    let store = &shared.store;
    let deadline = Instant::now() + query.wait;
    let mut closing = shared.closing.clone();
    let mut cursor = query.after;
    loop {
        let appended = store.next_append();
        let page = store
            .read_all_where(cursor.saturating_add(1), query.limit, readable)
            .await
            .map_err(|error| ApiError::store(&error))?;
        if let Some(through) = page.read_through() {
            cursor = through;
        }
        let waiting = Instant::now() < deadline && !*closing.borrow();
        if page.is_empty() && waiting {
            if !page.may_have_more() {
                // Caught up: wait for an append here, a look for those of other
                // processes, the deadline, or shutdown.
                let poll = Instant::now() + shared.limits.poll_interval;
                tokio::select! {
                    () = appended => {}
                    () = tokio::time::sleep_until(poll.min(deadline)) => {}
                    _ = closing.changed() => {}
                }
            }
            continue;
        }
        let events = page
            .iter()
            .map(|event| JsonEvent::of(&event))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|why| ApiError::new(ErrorCode::Internal, why))?;
        let head = store
            .last_position()
            .await
            .map_err(|error| ApiError::store(&error))?;
        return Ok(Json(PullResponse {
            protocol: PROTOCOL,
            events,
            cursor,
            head,
            more: page.may_have_more(),
        }));
    }
}

fn parse(
    query: &HashMap<String, String>,
    limits: &super::SyncLimits,
) -> Result<PullQuery, ApiError> {
    let number = |name: &str| -> Result<Option<u64>, ApiError> {
        query
            .get(name)
            .map(|text| {
                text.parse::<u64>().map_err(|_| {
                    ApiError::new(
                        ErrorCode::InvalidRequest,
                        format!("{name}={text:?} is not a whole number"),
                    )
                })
            })
            .transpose()
    };
    if let Some(unknown) = query
        .keys()
        .find(|name| !["protocol", "after", "limit", "wait_ms"].contains(&name.as_str()))
    {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            format!(
                "unknown parameter {unknown:?}: a pull takes protocol, after, limit and wait_ms"
            ),
        ));
    }
    let Some(protocol) = number("protocol")? else {
        return Err(ApiError::new(
            ErrorCode::UnsupportedProtocol,
            format!("the protocol parameter is missing: this server speaks version {PROTOCOL}"),
        ));
    };
    check_protocol(u32::try_from(protocol).unwrap_or(u32::MAX))?;
    let limit = number("limit")?.unwrap_or(DEFAULT_PAGE as u64);
    if limit == 0 || limit > limits.max_page as u64 {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            format!(
                "limit={limit}: a pull returns 1 to {} events",
                limits.max_page
            ),
        ));
    }
    let wait_ms = number("wait_ms")?.unwrap_or(0);
    let max_wait = limits.max_wait.as_millis();
    if u128::from(wait_ms) > max_wait {
        return Err(ApiError::new(
            ErrorCode::InvalidRequest,
            format!("wait_ms={wait_ms}: a pull waits at most {max_wait} ms"),
        ));
    }
    Ok(PullQuery {
        after: number("after")?.unwrap_or(0),
        limit: limit as usize,
        wait: Duration::from_millis(wait_ms),
    })
}
