//! `POST /push`: each append answered on its own; the appends of one aggregate in order,
//! those of different aggregates at once (they share the store's group commits).

use std::collections::HashMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::HeaderMap;
use eventkv::{EventStore, EventStoreError, KvError, NewEvent, OrderedKv};
use futures_util::future::join_all;
use serde::Deserialize;

use super::{ApiError, Principal, Shared, check_protocol};
use crate::protocol::{
    AppendResult, ErrorCode, JsonEvent, PushAppend, PushRequest, PushResponse, RejectReason,
};

pub(crate) async fn push<K: OrderedKv + Clone + Send + Sync + 'static>(
    State(shared): State<Arc<Shared<K>>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<PushResponse>, ApiError> {
    let principal = shared.principal(&headers)?;
    let request = parse(body, &shared.limits)?;
    let timeout = shared.limits.push_timeout;
    let results = tokio::time::timeout(timeout, push_all(&shared, &principal, &request))
        .await
        .map_err(|_| {
            ApiError::new(
                ErrorCode::Ambiguous,
                format!(
                    "the push ran out of time ({} ms) and some of its appends may be stored: push them again (a retry stores each once and says where)",
                    timeout.as_millis()
                ),
            )
        })??;
    let count = |status: fn(&AppendResult) -> bool| results.iter().filter(|r| status(r)).count();
    tracing::info!(
        principal = principal.name,
        appends = results.len(),
        applied = count(|r| matches!(r, AppendResult::Applied(_))),
        duplicate = count(|r| matches!(r, AppendResult::Duplicate(_))),
        conflict = count(|r| matches!(r, AppendResult::Conflict { .. })),
        "push"
    );
    Ok(Json(PushResponse {
        protocol: crate::protocol::PROTOCOL,
        results,
    }))
}

/// The request, checked against the protocol and the limits.
fn parse(
    body: Result<Bytes, BytesRejection>,
    limits: &super::SyncLimits,
) -> Result<PushRequest, ApiError> {
    let body = body.map_err(|rejection| {
        if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                ErrorCode::TooLarge,
                format!(
                    "the body is over {} bytes: push fewer appends at a time",
                    limits.max_body_bytes
                ),
            )
        } else {
            ApiError::new(ErrorCode::MalformedBody, rejection.body_text())
        }
    })?;
    let request: PushRequest = serde_json::from_slice(&body).map_err(|error| {
        // A body of another protocol version is named as such, whatever its shape.
        #[derive(Deserialize)]
        struct Version {
            protocol: u32,
        }
        serde_json::from_slice::<Version>(&body)
            .ok()
            .and_then(|version| check_protocol(version.protocol).err())
            .unwrap_or_else(|| malformed(&error))
    })?;
    check_protocol(request.protocol)?;
    if request.appends.len() > limits.max_appends_per_push {
        return Err(ApiError::new(
            ErrorCode::TooLarge,
            format!(
                "{} appends in one push: the most is {}",
                request.appends.len(),
                limits.max_appends_per_push
            ),
        ));
    }
    let events: usize = request.appends.iter().map(|a| a.events.len()).sum();
    if events > limits.max_events_per_push {
        return Err(ApiError::new(
            ErrorCode::TooLarge,
            format!(
                "{events} events in one push: the most is {}",
                limits.max_events_per_push
            ),
        ));
    }
    Ok(request)
}

fn malformed(error: &serde_json::Error) -> ApiError {
    ApiError::new(
        ErrorCode::MalformedBody,
        format!("the body is not a push request: {error}"),
    )
}

/// Every append's result, in request order; a failure of the store fails the push.
async fn push_all<K: OrderedKv + Clone + Send + Sync + 'static>(
    shared: &Shared<K>,
    principal: &Principal,
    request: &PushRequest,
) -> Result<Vec<AppendResult>, ApiError> {
    // The appends of each aggregate, in request order.
    let mut chains: Vec<Vec<usize>> = Vec::new();
    let mut chain_of: HashMap<(&str, &str), usize> = HashMap::new();
    for (index, append) in request.appends.iter().enumerate() {
        let stream = (append.aggregate_type.as_str(), append.aggregate_id.as_str());
        let chain = *chain_of.entry(stream).or_insert_with(|| {
            chains.push(Vec::new());
            chains.len() - 1
        });
        chains[chain].push(index);
    }
    let runs = chains.iter().map(|chain| async move {
        let mut results = Vec::with_capacity(chain.len());
        for &index in chain {
            if results.last().is_some_and(|(_, result)| !is_stored(result)) {
                results.push((index, AppendResult::Skipped));
                continue;
            }
            let result = push_one(shared, principal, &request.appends[index]).await?;
            results.push((index, result));
        }
        Ok::<_, ApiError>(results)
    });
    let mut answered: Vec<Option<AppendResult>> = vec![None; request.appends.len()];
    for run in join_all(runs).await {
        for (index, result) in run? {
            answered[index] = Some(result);
        }
    }
    Ok(answered
        .into_iter()
        .map(|result| result.unwrap_or(AppendResult::Skipped))
        .collect())
}

fn is_stored(result: &AppendResult) -> bool {
    matches!(
        result,
        AppendResult::Applied(_) | AppendResult::Duplicate(_)
    )
}

fn rejected(reason: RejectReason, message: impl Into<String>) -> AppendResult {
    AppendResult::Rejected {
        reason,
        message: message.into(),
    }
}

async fn push_one<K: OrderedKv + Clone + Send + Sync + 'static>(
    shared: &Shared<K>,
    principal: &Principal,
    append: &PushAppend,
) -> Result<AppendResult, ApiError> {
    let (aggregate_type, aggregate_id) = (&append.aggregate_type, &append.aggregate_id);
    if !principal.write.contains(aggregate_type) {
        return Ok(rejected(
            RejectReason::Forbidden,
            format!(
                "{} may not write aggregates of type {aggregate_type:?}",
                principal.name
            ),
        ));
    }
    let events = match append
        .events
        .iter()
        .enumerate()
        .map(|(n, event)| {
            event
                .to_new_event()
                .map_err(|why| format!("event {n}: {why}"))
        })
        .collect::<Result<Vec<NewEvent>, String>>()
    {
        Ok(events) => events,
        Err(why) => return Ok(rejected(RejectReason::Invalid, why)),
    };
    let store = &shared.store;
    match store
        .append(
            aggregate_type,
            aggregate_id,
            append.expected_version,
            &events,
        )
        .await
    {
        Ok(appended) if appended.duplicate => Ok(AppendResult::Duplicate(appended.into())),
        Ok(appended) => Ok(AppendResult::Applied(appended.into())),
        Err(EventStoreError::Conflict { actual, .. }) => {
            conflict(shared, principal, append, actual).await
        }
        Err(error @ EventStoreError::Kv(KvError::TooLarge { .. })) => {
            Ok(rejected(RejectReason::TooLarge, error.to_string()))
        }
        Err(error @ (EventStoreError::InvalidName(_) | EventStoreError::InvalidInput(_))) => {
            Ok(rejected(RejectReason::Invalid, error.to_string()))
        }
        Err(error) => Err(ApiError::store(&error)),
    }
}

/// The conflict answer: the stream's version and its events after the expected one (a
/// page of them, when the caller may read the type).
async fn conflict<K: OrderedKv + Clone + Send + Sync + 'static>(
    shared: &Shared<K>,
    principal: &Principal,
    append: &PushAppend,
    actual: u64,
) -> Result<AppendResult, ApiError> {
    let (aggregate_type, aggregate_id) = (&append.aggregate_type, &append.aggregate_id);
    let mut events = Vec::new();
    let mut more = false;
    if principal.read.contains(aggregate_type) {
        let from = append.expected_version.saturating_add(1);
        let page = shared
            .store
            .read_stream(
                aggregate_type,
                aggregate_id,
                from,
                actual,
                shared.limits.max_page,
            )
            .await
            .map_err(|error| ApiError::store(&error))?;
        events = page
            .iter()
            .map(|event| JsonEvent::of(&event))
            .collect::<Result<_, _>>()
            .map_err(|why| ApiError::new(ErrorCode::Internal, why))?;
        more = page.may_have_more();
    }
    Ok(AppendResult::Conflict {
        actual_version: actual,
        events,
        more,
    })
}
