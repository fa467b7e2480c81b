//! What the sync tests share: a real server on a loopback port over a store of each
//! engine, and requests through a real HTTP client.
#![allow(dead_code)]

use std::net::SocketAddr;

use eventkv::{DynKv, KvEventStore, Uuid};
use eventkv_sync::server::{Authenticate, SyncLimits, SyncServer};
use serde_json::{Value, json};

/// A store of each engine of this build, named `name`: under `dir` for file engines, on
/// the engine's server when it answers (else it is left out, loudly; under CI that fails).
pub async fn stores(dir: &std::path::Path, name: &str) -> Vec<(&'static str, String)> {
    let mut urls = Vec::new();
    let directory = dir.display().to_string();
    let unique = format!("sync_{}_{name}", std::process::id());
    for engine in eventkv_backends::ENGINES {
        match engine.scratch_store(&directory, &unique).await {
            None => {}
            Some(Ok(url)) => urls.push((engine.name, url)),
            Some(Err(why)) => {
                let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
                assert!(
                    !ci,
                    "the {} server is required under CI=true: {why}",
                    engine.name
                );
                eprintln!(
                    "\n!!!!!!!! SKIPPED the {} engine: {why} (under CI=true this fails).\n",
                    engine.name
                );
            }
        }
    }
    urls
}

/// A sync server on a loopback port, over one store; stopped when dropped.
pub struct Served {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// The store's URL.
    pub url: String,
    /// The store, for checks behind the server's back.
    pub kv: DynKv,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What a test adds to the server it starts (its authentication).
pub type Setup = Box<dyn FnOnce(SyncServer<DynKv>) -> SyncServer<DynKv>>;

/// Serves the store at `url` with `auth` (none: anyone) and `limits`.
pub async fn serve(url: &str, auth: Option<Setup>, limits: SyncLimits) -> Served {
    let kv = eventkv_backends::open(url).await.expect("open the store");
    let mut server = SyncServer::new(KvEventStore::new(kv.clone())).with_limits(limits);
    if let Some(auth) = auth {
        server = auth(server);
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address: SocketAddr = listener.local_addr().expect("address");
    let router = server.router();
    let task = tokio::spawn(async move {
        axum::serve(listener, router).await.expect("serve");
    });
    Served {
        base: format!("http://{address}"),
        url: url.to_owned(),
        kv,
        task,
    }
}

/// The authentication of `auth`, for [`serve`].
pub fn with_auth(auth: impl Authenticate) -> Setup {
    Box::new(move |server| server.with_auth(auth))
}

/// A client of one server, with a bearer token or none.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
}

impl Client {
    pub fn new(served: &Served, token: Option<&str>) -> Self {
        Client {
            http: reqwest::Client::new(),
            base: served.base.clone(),
            token: token.map(str::to_owned),
        }
    }

    fn authorized(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// POSTs `body` (raw bytes) to /push: the status and the JSON answer.
    pub async fn push_raw(&self, body: Vec<u8>) -> (u16, Value) {
        let request = self.http.post(format!("{}/push", self.base)).body(body);
        answer(self.authorized(request).send().await.expect("push")).await
    }

    /// Pushes `appends` (protocol 1): the status and the JSON answer.
    pub async fn push(&self, appends: Value) -> (u16, Value) {
        let body = json!({ "protocol": 1, "appends": appends });
        self.push_raw(serde_json::to_vec(&body).expect("json"))
            .await
    }

    /// Pushes and expects a 200: the results.
    pub async fn push_ok(&self, appends: Value) -> Vec<Value> {
        let (status, body) = self.push(appends).await;
        assert_eq!(status, 200, "{body}");
        body["results"].as_array().expect("results").clone()
    }

    /// GET /pull with `query` (e.g. `protocol=1&after=0`): the status and JSON answer.
    pub async fn pull_raw(&self, query: &str) -> (u16, Value) {
        let request = self.http.get(format!("{}/pull?{query}", self.base));
        answer(self.authorized(request).send().await.expect("pull")).await
    }

    /// Pulls everything after `after`, page by page: the events, the last cursor.
    pub async fn pull_all(&self, mut after: u64) -> (Vec<Value>, u64) {
        let mut events = Vec::new();
        loop {
            let (status, body) = self
                .pull_raw(&format!("protocol=1&after={after}&limit=500"))
                .await;
            assert_eq!(status, 200, "{body}");
            events.extend(body["events"].as_array().expect("events").iter().cloned());
            after = body["cursor"].as_u64().expect("cursor");
            if !body["more"].as_bool().expect("more") {
                return (events, after);
            }
        }
    }
}

async fn answer(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    let value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text:?}"));
    (status, value)
}

/// An append of `events` (type names) to one aggregate, as JSON.
pub fn append(aggregate_type: &str, id: &str, expected: u64, events: &[Value]) -> Value {
    json!({
        "aggregate_type": aggregate_type,
        "aggregate_id": id,
        "expected_version": expected,
        "events": events,
    })
}

/// An event with a fresh id.
pub fn event(event_type: &str, payload: &Value) -> Value {
    json!({ "event_id": Uuid::new_v4(), "event_type": event_type, "payload": payload })
}
