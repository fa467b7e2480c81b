//! The sync server: `POST /push`, `GET /pull`, `GET /info` on an axum [`Router`], over
//! any engine. `eventkv serve` runs it; an app mounts [`SyncServer::router`] in its own
//! router (e.g. under `/sync` with `Router::nest`).

mod auth;
mod error;
mod pull;
mod push;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::routing::{get, post};
use axum::{Json, Router};
use eventkv::{KvEventStore, OrderedKv};
use tokio::sync::watch;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::trace::TraceLayer;

pub use auth::{Anyone, Authenticate, MIN_TOKEN_LEN, Principal, Tokens, TypeSet, bearer_token};
pub use error::ApiError;

use crate::protocol::{ErrorCode, InfoResponse, LimitsInfo, PROTOCOL};

/// What a server takes in one request, and how long it waits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyncLimits {
    /// The largest request body (default 8 MiB).
    pub max_body_bytes: usize,
    /// The most appends in one push (default 10,000).
    pub max_appends_per_push: usize,
    /// The most events in one push, all appends together (default 10,000).
    pub max_events_per_push: usize,
    /// The most events one pull returns (default 4,096, the most one read of the log
    /// covers); a pull asks for 1,000 unless it says otherwise.
    pub max_page: usize,
    /// The longest a pull waits for new events (default 25 s).
    pub max_wait: Duration,
    /// How often a waiting pull looks for events appended by other processes on the same
    /// store (default 250 ms); appends through this server wake it at once.
    pub poll_interval: Duration,
    /// The longest a push may take (default 30 s): then it is answered `ambiguous`
    /// (pushing it again is safe).
    pub push_timeout: Duration,
}

impl Default for SyncLimits {
    fn default() -> Self {
        SyncLimits {
            max_body_bytes: 8 << 20,
            max_appends_per_push: 10_000,
            max_events_per_push: 10_000,
            max_page: eventkv::raw::MAX_SCAN_ENTRIES,
            max_wait: Duration::from_secs(25),
            poll_interval: Duration::from_millis(250),
            push_timeout: Duration::from_secs(30),
        }
    }
}

/// A sync server for one store: build it, then take its [`router`](Self::router).
pub struct SyncServer<K> {
    store: KvEventStore<K>,
    auth: Arc<dyn Authenticate>,
    limits: SyncLimits,
    origins: Vec<HeaderValue>,
    closing: watch::Sender<bool>,
}

/// What the handlers share.
pub(crate) struct Shared<K> {
    pub(crate) store: KvEventStore<K>,
    pub(crate) auth: Arc<dyn Authenticate>,
    pub(crate) limits: SyncLimits,
    pub(crate) closing: watch::Receiver<bool>,
}

impl<K: OrderedKv + Clone + Send + Sync + 'static> SyncServer<K> {
    /// A server for `store`, without authentication ([`Anyone`]), with the default
    /// limits. Appends through other clones of `store` wake waiting pulls at once.
    pub fn new(store: KvEventStore<K>) -> Self {
        SyncServer {
            store,
            auth: Arc::new(Anyone),
            limits: SyncLimits::default(),
            origins: Vec::new(),
            closing: watch::Sender::new(false),
        }
    }

    /// Who may read and write what (e.g. [`Tokens`]).
    pub fn with_auth(mut self, auth: impl Authenticate) -> Self {
        self.auth = Arc::new(auth);
        self
    }

    /// Other limits.
    pub fn with_limits(mut self, limits: SyncLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Lets pages of these origins (e.g. `http://localhost:8080`) call the server from
    /// a browser (CORS). None by default: same origin only.
    pub fn with_allowed_origins(mut self, origins: Vec<HeaderValue>) -> Self {
        self.origins = origins;
        self
    }

    /// Answers the pulls waiting for new events at once, and every later one without
    /// waiting: call it when shutting down, so that a graceful shutdown does not wait for
    /// long polls.
    pub fn stop_waiting(&self) {
        self.closing.send_replace(true);
    }

    /// A handle that does [`stop_waiting`](Self::stop_waiting) later, from anywhere.
    pub fn waiting_stopper(&self) -> impl Fn() + Send + Sync + 'static {
        let closing = self.closing.clone();
        move || {
            closing.send_replace(true);
        }
    }

    /// The routes: `POST /push`, `GET /pull`, `GET /info`; anything else is a coded
    /// `not_found` or `method_not_allowed`.
    pub fn router(&self) -> Router {
        let shared = Arc::new(Shared {
            store: self.store.clone(),
            auth: Arc::clone(&self.auth),
            limits: self.limits,
            closing: self.closing.subscribe(),
        });
        let router = Router::new()
            .route("/push", post(push::push::<K>))
            .route("/pull", get(pull::pull::<K>))
            .route("/info", get(info::<K>))
            .fallback(not_found)
            .method_not_allowed_fallback(method_not_allowed)
            .layer(DefaultBodyLimit::max(self.limits.max_body_bytes))
            .with_state(shared);
        let router = if self.origins.is_empty() {
            router
        } else {
            router.layer(
                CorsLayer::new()
                    .allow_origin(AllowOrigin::list(self.origins.clone()))
                    .allow_methods([Method::GET, Method::POST])
                    .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
                    .max_age(Duration::from_secs(600)),
            )
        };
        router.layer(TraceLayer::new_for_http())
    }
}

impl<K> Shared<K> {
    /// The principal behind a request, or `unauthorized`.
    pub(crate) fn principal(&self, headers: &HeaderMap) -> Result<Principal, ApiError> {
        self.auth.authenticate(headers).ok_or_else(|| {
            let why = if bearer_token(headers).is_some() {
                "the bearer token is not known to this server"
            } else {
                "no bearer token: send `Authorization: Bearer TOKEN`"
            };
            ApiError::new(ErrorCode::Unauthorized, why)
        })
    }
}

/// Refuses a request written for another protocol version.
pub(crate) fn check_protocol(protocol: u32) -> Result<(), ApiError> {
    if protocol == PROTOCOL {
        return Ok(());
    }
    Err(ApiError::new(
        ErrorCode::UnsupportedProtocol,
        format!(
            "protocol version {protocol} is not spoken here: this server speaks version {PROTOCOL}"
        ),
    ))
}

async fn info<K>(
    axum::extract::State(shared): axum::extract::State<Arc<Shared<K>>>,
    headers: HeaderMap,
) -> Result<Json<InfoResponse>, ApiError> {
    let principal = shared.principal(&headers)?;
    let limits = &shared.limits;
    Ok(Json(InfoResponse {
        protocols: vec![PROTOCOL],
        principal: principal.name,
        read: principal.read.names(),
        write: principal.write.names(),
        limits: LimitsInfo {
            max_body_bytes: limits.max_body_bytes,
            max_appends_per_push: limits.max_appends_per_push,
            max_events_per_push: limits.max_events_per_push,
            max_page: limits.max_page,
            max_wait_ms: u64::try_from(limits.max_wait.as_millis()).unwrap_or(u64::MAX),
        },
    }))
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        ErrorCode::NotFound,
        format!(
            "no route {}: the sync server answers POST /push, GET /pull and GET /info",
            uri.path()
        ),
    )
}

async fn method_not_allowed(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        format!(
            "{} does not take {method}: push is POST, pull and info are GET",
            uri.path()
        ),
    )
}
