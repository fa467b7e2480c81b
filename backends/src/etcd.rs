//! [`EtcdKv`]: a key prefix on an etcd cluster, replicated by Raft. A batch is one etcd
//! transaction: its checks are the transaction's compares, its puts and deletes the
//! success branch, and the failure branch reads the checked keys to name the one that
//! failed.
//!
//! The engine talks to every member given and routes around those that do not answer: a
//! request that certainly did not apply (a refused connection, a member without a leader)
//! goes to the next member, until the engine's timeout; a write whose answer was lost (a
//! member killed mid-request, a timeout after sending, a leader change) is
//! [`KvError::Ambiguous`]. Reads are linearizable (they go through the leader).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, GetOptions, GetResponse, KvClient,
    Txn, TxnOp, TxnOpResponse,
};
use eventkv::raw::{BoxFuture, FinalMutations, MAX_SCAN_ENTRIES, Mutation, first_failed_check};
use eventkv::{
    Check, ContextError, Direction, DynKv, ErrorKind, KeyRange, KvError, KvPage, OrderedKv,
    WriteBatch, WriteLimits,
};
use tokio::time::Instant;

use crate::engines::{EngineParts, Scratch, Target};
use crate::error::OpenError;
use crate::url::Location;

const ENGINE: &str = "etcd";
/// etcd's default `--max-txn-ops`.
const DEFAULT_MAX_TXN_OPS: usize = 128;
/// etcd's default `--max-request-bytes` (1.5 MiB).
const DEFAULT_MAX_REQUEST_BYTES: usize = 1536 * 1024;
/// What a request adds to its keys and values (operations, compares, framing): kept
/// free below `--max-request-bytes`.
const REQUEST_OVERHEAD: usize = 64 * 1024;
/// The default time an operation waits for the cluster, across members and retries.
const DEFAULT_TIMEOUT: Duration = Duration::from_millis(1500);
/// How long a member that refused a connection is passed by.
const DOWN_FOR: Duration = Duration::from_secs(1);
/// How long connecting to one member may take.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
/// The size of an entry a forward read expects before it has read any.
const FIRST_ENTRY_BYTES: usize = 1024;
/// A reverse scan reads a window forward once it holds at most this many keys.
const WINDOW_KEYS: usize = 512;

/// How an [`EtcdKv`] talks to its cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EtcdOptions {
    /// How long an operation waits for the cluster (across members and retries) before it
    /// fails: `Unavailable` when nothing was applied, `Ambiguous` for a write that may
    /// have been. `?timeout_ms=`; default 1.5 s.
    pub timeout: Duration,
    /// The cluster's `--max-txn-ops` (`?max_txn_ops=`; default 128).
    pub max_txn_ops: usize,
    /// The cluster's `--max-request-bytes` (`?max_request_bytes=`; default 1.5 MiB).
    pub max_request_bytes: usize,
}

impl Default for EtcdOptions {
    fn default() -> Self {
        EtcdOptions {
            timeout: DEFAULT_TIMEOUT,
            max_txn_ops: DEFAULT_MAX_TXN_OPS,
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
        }
    }
}

/// An engine on a key prefix of an etcd cluster: many processes and machines share it,
/// and it survives losing a minority of the cluster's members.
#[derive(Clone)]
pub struct EtcdKv {
    inner: Arc<Inner>,
}

struct Inner {
    members: Vec<Member>,
    /// The member requests go to first: the last one that answered.
    preferred: AtomicUsize,
    /// Every key of the store starts with this: the prefix and a NUL byte, so no other
    /// prefix's keys fall in the store's range.
    prefix: Vec<u8>,
    /// The first key after the store's range.
    end: Vec<u8>,
    options: EtcdOptions,
    /// The average size of the entries the last forward read returned.
    entry_bytes: AtomicUsize,
    /// Where members' down marks count from.
    epoch: Instant,
}

impl Inner {
    /// Milliseconds since [`Inner::epoch`], from 1.
    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX).max(1)
    }

    fn is_down(&self, member: &Member) -> bool {
        self.now() < member.down_until.load(Ordering::Relaxed)
    }

    fn set_down(&self, member: &Member, down: bool) {
        let until = if down {
            self.now() + DOWN_FOR.as_millis() as u64
        } else {
            0
        };
        if member.down_until.load(Ordering::Relaxed) != until {
            member.down_until.store(until, Ordering::Relaxed);
        }
    }
}

struct Member {
    endpoint: String,
    kv: KvClient,
    /// Until when (milliseconds after [`Inner::epoch`]; 0: not) requests pass this member
    /// by: it refused a connection. (The client then reconnects in the background, and a
    /// request sent to it meanwhile waits.)
    down_until: AtomicU64,
}

impl fmt::Debug for EtcdKv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let endpoints: Vec<&str> = self.inner.members.iter().map(|m| &*m.endpoint).collect();
        f.debug_struct("EtcdKv")
            .field("endpoints", &endpoints)
            .field("prefix", &String::from_utf8_lossy(self.prefix_name()))
            .field("options", &self.inner.options)
            .finish()
    }
}

/// Entries read in one request, and whether the range has more.
struct Chunk {
    entries: Vec<(Vec<u8>, Vec<u8>)>,
    more: bool,
    /// The cluster's revision the read saw.
    revision: i64,
}

/// A key `start` such that `[start, end)` holds at least one key and few enough to read,
/// found at `revision`.
struct Window {
    start: Vec<u8>,
    revision: i64,
    /// Every key of `[start, end)`, in order, when finding the window read them all.
    keys: Option<Vec<Vec<u8>>>,
}

impl Window {
    fn read(start: Vec<u8>, revision: i64, entries: Vec<(Vec<u8>, Vec<u8>)>) -> Self {
        let keys = entries.into_iter().map(|(key, _)| key).collect();
        Window {
            start,
            revision,
            keys: Some(keys),
        }
    }
}

/// Whether a request may have been applied when it failed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Sent {
    /// Certainly not: it never reached a member, or one refused it before proposing it.
    No,
    /// Perhaps: its answer was lost.
    Maybe,
}

/// A failed attempt at a request: its error, and what to do next.
struct Failure {
    error: etcd_client::Error,
    /// The error as text, which is where etcd and the client say what happened.
    text: String,
    /// Whether another member (or a later attempt) may succeed.
    retry_elsewhere: bool,
    sent: Sent,
}

/// Whether an error's text says a read's revision was compacted away.
fn is_compacted(text: &str) -> bool {
    text.contains("required revision has been compacted")
}

/// Whether an error's text says the connection to a member was refused or failed.
fn refused_connection(text: &str) -> bool {
    ["tcp connect error", "Connection refused", "error trying to connect"]
        .iter()
        .any(|needle| text.contains(needle))
}

impl Failure {
    fn of(error: etcd_client::Error) -> Self {
        let text = error.to_string();
        let status = match &error {
            etcd_client::Error::GRpcStatus(status) => Some(status.code()),
            _ => None,
        };
        let not_sent = text.contains("no leader")
            || text.contains("too many requests")
            || text.contains("not capable")
            || refused_connection(&text);
        let sent = if not_sent { Sent::No } else { Sent::Maybe };
        let retry_elsewhere = not_sent
            || matches!(
                status,
                Some(
                    tonic::Code::Unavailable
                        | tonic::Code::DeadlineExceeded
                        | tonic::Code::Cancelled
                        | tonic::Code::Unknown
                )
            )
            || matches!(
                error,
                etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_)
            );
        Failure {
            error,
            text,
            retry_elsewhere,
            sent,
        }
    }

    /// Whether a member answered it (with one of etcd's errors, such as `no leader`).
    fn is_server_answer(&self) -> bool {
        self.text.contains("etcdserver:")
    }

    /// The error of a request that failed for good.
    fn into_kv_error(self, write: bool) -> KvError {
        let text = &self.text;
        if text.contains("database space exceeded") {
            return KvError::storage_full(
                ENGINE,
                ContextError::new(
                    "the cluster's space quota (--quota-backend-bytes) is used up: compact and defragment the cluster, then disarm the NOSPACE alarm (docs/engines.md, etcd)",
                    self.error,
                ),
            );
        }
        if write && self.sent == Sent::Maybe && self.retry_elsewhere {
            return KvError::ambiguous(ENGINE, "the transaction's answer", self.error);
        }
        let kind = if self.retry_elsewhere || is_compacted(text) {
            ErrorKind::Unavailable
        } else if text.contains("permission denied") || text.contains("authentication") {
            ErrorKind::PermissionDenied
        } else if text.contains("too large") || text.contains("too many operations") {
            ErrorKind::InvalidInput
        } else {
            ErrorKind::Unexpected
        };
        KvError::engine(ENGINE, kind, self.error)
    }
}

impl EtcdKv {
    /// Connects to the cluster of `endpoints` (`HOST:PORT`, in the order to try them) and
    /// uses the keys under `prefix` (not empty, no NUL byte). Fails when no member
    /// answers with a leader within the options' timeout.
    pub async fn connect(
        endpoints: &[String],
        prefix: &str,
        options: EtcdOptions,
    ) -> Result<Self, OpenError> {
        Ok(Self::connect_counting(endpoints, prefix, options).await?.0)
    }

    /// [`connect`](Self::connect), and how many keys the store holds (the request that
    /// checks the cluster answers).
    async fn connect_counting(
        endpoints: &[String],
        prefix: &str,
        options: EtcdOptions,
    ) -> Result<(Self, u64), OpenError> {
        validate_prefix(prefix).map_err(|reason| OpenError::Malformed {
            url: format!("etcd://{}/{prefix}", endpoints.join(",")),
            reason,
        })?;
        let connect_options = ConnectOptions::new()
            .with_require_leader(true)
            .with_connect_timeout(CONNECT_TIMEOUT)
            .with_timeout(options.timeout);
        let decoding = 2 * options.max_request_bytes.max(eventkv::raw::MAX_SCAN_BYTES) + (1 << 20);
        let mut members = Vec::with_capacity(endpoints.len());
        for endpoint in endpoints {
            let client = Client::connect([format!("http://{endpoint}")], Some(connect_options.clone()))
                .await
                .map_err(|error| OpenError::engine(ENGINE, ErrorKind::InvalidInput, ContextError::new(format!("the endpoint {endpoint}"), error)))?;
            members.push(Member {
                endpoint: endpoint.clone(),
                kv: client
                    .kv_client()
                    .max_decoding_message_size(decoding)
                    .max_encoding_message_size(options.max_request_bytes + REQUEST_OVERHEAD),
                down_until: AtomicU64::new(0),
            });
        }
        let mut prefix_key = prefix.as_bytes().to_vec();
        let mut end = prefix_key.clone();
        prefix_key.push(0);
        end.push(1);
        let kv = EtcdKv {
            inner: Arc::new(Inner {
                members,
                preferred: AtomicUsize::new(0),
                prefix: prefix_key,
                end,
                options,
                entry_bytes: AtomicUsize::new(FIRST_ENTRY_BYTES),
                epoch: Instant::now(),
            }),
        };
        // The cluster must answer with a leader now: a wrong address fails here.
        let keys = kv.count_keys().await.map_err(|error| {
            OpenError::engine(
                ENGINE,
                error.kind(),
                ContextError::new("connecting to the cluster", error),
            )
        })?;
        Ok((kv, keys))
    }

    /// The store's prefix, as given.
    pub fn prefix_name(&self) -> &[u8] {
        &self.inner.prefix[..self.inner.prefix.len() - 1]
    }

    /// How many keys the store holds (a count the cluster makes, not a read of them).
    pub async fn count_keys(&self) -> Result<u64, KvError> {
        let options = GetOptions::new()
            .with_range(self.inner.end.clone())
            .with_count_only();
        let key = self.inner.prefix.clone();
        let response = self
            .call(false, move |mut kv| {
                let (key, options) = (key.clone(), options.clone());
                async move { kv.get(key, Some(options)).await }
            })
            .await?;
        Ok(u64::try_from(response.count()).unwrap_or_default())
    }

    /// Removes every key of the store, in one request.
    pub async fn delete_all(&self) -> Result<(), KvError> {
        let key = self.inner.prefix.clone();
        let options = DeleteOptions::new().with_range(self.inner.end.clone());
        self.call(true, move |mut kv| {
            let (key, options) = (key.clone(), options.clone());
            async move { kv.delete(key, Some(options)).await }
        })
        .await
        .map(drop)
    }

    /// Runs `request` on the preferred member, then on the others while attempts fail in
    /// a way another member or a moment may mend, until the timeout. A `write` whose
    /// answer was lost is [`KvError::Ambiguous`] at once: it is not sent again.
    async fn call<T, F, Fut>(&self, write: bool, request: F) -> Result<T, KvError>
    where
        F: Fn(KvClient) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let inner = &*self.inner;
        let deadline = Instant::now() + inner.options.timeout;
        let count = inner.members.len();
        let mut at = inner.preferred.load(Ordering::Relaxed) % count;
        let mut tried = 0;
        // Whether any member answered at all (else none could be reached, or all were
        // silent).
        let mut reached = false;
        let mut pause = Duration::from_millis(20);
        loop {
            // Pass by members that refused a connection a moment ago, while another is up.
            if let Some(up) = (0..count)
                .map(|step| (at + step) % count)
                .find(|&index| !inner.is_down(&inner.members[index]))
            {
                at = up;
            }
            let member = &inner.members[at];
            let left = deadline.saturating_duration_since(Instant::now());
            // A read gives a silent member a share of the time, then asks another.
            let budget = if write || count == 1 { left } else { left.min(inner.options.timeout / 2) };
            let failure = match tokio::time::timeout(budget, request(member.kv.clone())).await {
                Ok(Ok(answer)) => {
                    inner.preferred.store(at, Ordering::Relaxed);
                    inner.set_down(member, false);
                    return Ok(answer);
                }
                Ok(Err(error)) => Failure::of(error),
                Err(_) => {
                    let text = format!(
                        "{} did not answer within {} ms: the cluster may have no quorum (fewer than a majority of its members up), be electing a leader, or the member may be cut off",
                        member.endpoint,
                        budget.as_millis()
                    );
                    Failure {
                        error: etcd_client::Error::Internal(text.clone()),
                        text,
                        retry_elsewhere: true,
                        sent: Sent::Maybe,
                    }
                }
            };
            let ambiguous = write && failure.sent == Sent::Maybe;
            reached |= failure.is_server_answer();
            if refused_connection(&failure.text) {
                inner.set_down(member, true);
            }
            if failure.retry_elsewhere {
                // Later requests start with the next member.
                at = (at + 1) % count;
                inner.preferred.store(at, Ordering::Relaxed);
            }
            if !failure.retry_elsewhere || ambiguous || Instant::now() >= deadline {
                return Err(self.gave_up(failure, write, reached));
            }
            tried += 1;
            if tried % count == 0 {
                // Every member failed once: a leader election takes a moment.
                tokio::time::sleep(pause.min(deadline.saturating_duration_since(Instant::now()))).await;
                pause = (pause * 2).min(Duration::from_millis(200));
            }
        }
    }

    /// The error of a request that failed for good, saying what the cluster lacks when it
    /// is unavailable: a quorum when some member answered (`reached`), else any member.
    fn gave_up(&self, failure: Failure, write: bool, reached: bool) -> KvError {
        let unavailable = failure.retry_elsewhere && !(write && failure.sent == Sent::Maybe);
        if !unavailable || failure.text.contains("database space exceeded") {
            return failure.into_kv_error(write);
        }
        let endpoints: Vec<&str> = self.inner.members.iter().map(|m| &*m.endpoint).collect();
        let timeout = self.inner.options.timeout.as_millis();
        let what = if reached {
            format!(
                "no member of {} answered with a leader within {timeout} ms: the cluster has no quorum (fewer than a majority of its members up) or is electing a leader; nothing was applied",
                endpoints.join(",")
            )
        } else {
            format!(
                "no member of {} could be reached within {timeout} ms (is the cluster running at these addresses?); nothing was applied",
                endpoints.join(",")
            )
        };
        KvError::engine(
            ENGINE,
            ErrorKind::Unavailable,
            ContextError::new(what, failure.error),
        )
    }

    /// `key` under the store's prefix.
    fn full(&self, key: &[u8]) -> Vec<u8> {
        let mut full = Vec::with_capacity(self.inner.prefix.len() + key.len());
        full.extend_from_slice(&self.inner.prefix);
        full.extend_from_slice(key);
        full
    }

    /// A stored key without the store's prefix.
    fn strip<'k>(&self, key: &'k [u8]) -> Result<&'k [u8], KvError> {
        key.strip_prefix(&self.inner.prefix[..]).ok_or_else(|| {
            KvError::engine(ENGINE, ErrorKind::Unexpected, format!("the cluster answered a key outside the store's prefix ({} bytes)", key.len()))
        })
    }

    /// `range` as the cluster's keys: its first key and the first key after it.
    fn bounds(&self, range: &KeyRange) -> (Vec<u8>, Vec<u8>) {
        use std::ops::Bound;
        let (start, end) = range.as_slices();
        let start = match start {
            Bound::Included(key) => self.full(key),
            Bound::Excluded(key) => {
                let mut key = self.full(key);
                key.push(0);
                key
            }
            Bound::Unbounded => self.inner.prefix.clone(),
        };
        let end = match end {
            Bound::Excluded(key) => self.full(key),
            Bound::Included(key) => {
                let mut key = self.full(key);
                key.push(0);
                key
            }
            Bound::Unbounded => self.inner.end.clone(),
        };
        (start, end)
    }

    /// At most `limit` entries of `[start, end)`, in key order (with values, or keys only),
    /// in one request. Asks for fewer when the answer would pass the client's message
    /// limit. Returns the entries and whether the range has more.
    /// At the cluster's revision `at` (its latest when `None`).
    async fn read_chunk_at(
        &self,
        start: &[u8],
        end: &[u8],
        limit: usize,
        keys_only: bool,
        at: Option<i64>,
    ) -> Result<Chunk, KvError> {
        let mut limit = limit.max(1);
        loop {
            let mut options = GetOptions::new()
                .with_range(end.to_vec())
                .with_limit(i64::try_from(limit).unwrap_or(i64::MAX));
            if keys_only {
                options = options.with_keys_only();
            }
            if let Some(revision) = at {
                options = options.with_revision(revision);
            }
            let key = start.to_vec();
            let read = self
                .call(false, move |mut kv| {
                    let (key, options) = (key.clone(), options.clone());
                    async move { kv.get(key, Some(options)).await }
                })
                .await;
            match read {
                Ok(mut response) => {
                    let revision = response
                        .header()
                        .map_or(0, etcd_client::ResponseHeader::revision);
                    let more = response.more();
                    let entries = response
                        .take_kvs()
                        .into_iter()
                        .map(etcd_client::KeyValue::into_key_value)
                        .collect();
                    return Ok(Chunk {
                        entries,
                        more,
                        revision,
                    });
                }
                Err(error) if limit > 1 && error.to_string().contains("message length too large") => {
                    limit /= 2;
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// A page of `range` in key order. Each read asks for as many entries as fill the
    /// rest of the page at the size of the entries read last (by this engine), so a page
    /// of small entries is one request and a page of large ones does not ask for
    /// thousands.
    async fn scan_forward(&self, range: &KeyRange, limit: usize) -> Result<KvPage, KvError> {
        let (mut start, end) = self.bounds(range);
        let mut page = KvPage::default();
        while page.len() < limit && !page.is_full() && start < end {
            let typical = self.inner.entry_bytes.load(Ordering::Relaxed).max(1);
            let room = eventkv::raw::MAX_SCAN_BYTES.saturating_sub(page.bytes());
            let wanted = (room / typical + 1)
                .min(limit - page.len())
                .min(MAX_SCAN_ENTRIES);
            let Chunk { entries, more, .. } = self
                .read_chunk_at(&start, &end, wanted, false, None)
                .await?;
            let Some((last, _)) = entries.last() else { break };
            start.clone_from(last);
            start.push(0);
            let bytes: usize = entries.iter().map(|(k, v)| k.len() + v.len()).sum();
            self.inner
                .entry_bytes
                .store(bytes / entries.len(), Ordering::Relaxed);
            for (key, value) in &entries {
                if page.len() >= limit || page.is_full() {
                    break;
                }
                page.push(self.strip(key)?, value);
            }
            if !more {
                break;
            }
        }
        Ok(page)
    }

    /// The last entries of `range`, last first, found without sorting the range: probes
    /// narrow the key space to a window near its end that holds few keys, which is read
    /// forward; then the part before the window, while the page wants more. Every read
    /// is at the revision of the first, so the page is one state of the store.
    async fn scan_reverse(&self, range: &KeyRange, limit: usize) -> Result<KvPage, KvError> {
        let (start, mut end) = self.bounds(range);
        let mut page = KvPage::default();
        let mut at = None;
        while page.len() < limit && !page.is_full() && start < end {
            let Some(window) = self.tail_window(&start, &end, at).await? else {
                break;
            };
            let revision = window.revision;
            at = Some(revision);
            let wanted = limit.saturating_sub(page.len()).min(MAX_SCAN_ENTRIES);
            let keys = match window.keys {
                Some(keys) => keys.into_iter().rev().take(wanted).collect(),
                None => self.last_keys(&window.start, &end, wanted, revision).await?,
            };
            for (key, value) in self.values_of(&keys, Some(revision)).await? {
                if page.len() >= limit || page.is_full() {
                    break;
                }
                page.push(self.strip(&key)?, &value);
            }
            end = window.start;
        }
        Ok(page)
    }

    /// The last `wanted` keys of `[start, end)`, last first, read forward (a window that
    /// probes found small; read whole, page by page, if it is not).
    async fn last_keys(
        &self,
        start: &[u8],
        end: &[u8],
        wanted: usize,
        at: i64,
    ) -> Result<Vec<Vec<u8>>, KvError> {
        let mut last: std::collections::VecDeque<Vec<u8>> = std::collections::VecDeque::new();
        let mut from = start.to_vec();
        loop {
            let chunk = self
                .read_chunk_at(&from, end, MAX_SCAN_ENTRIES, true, Some(at))
                .await?;
            for (key, _) in chunk.entries {
                if last.len() == wanted {
                    last.pop_front();
                }
                from.clone_from(&key);
                last.push_back(key);
            }
            if !chunk.more {
                return Ok(last.into_iter().rev().collect());
            }
            from.push(0);
        }
    }

    /// The window at the end of `[start, end)` (read at `at`, or the latest revision);
    /// `None` when `[start, end)` is empty.
    async fn tail_window(
        &self,
        start: &[u8],
        end: &[u8],
        at: Option<i64>,
    ) -> Result<Option<Window>, KvError> {
        let first = self
            .read_chunk_at(start, end, WINDOW_KEYS, true, at)
            .await?;
        let revision = at.unwrap_or(first.revision);
        let Some((first_key, _)) = first.entries.first() else {
            return Ok(None);
        };
        if !first.more {
            return Ok(Some(Window::read(first_key.clone(), revision, first.entries)));
        }
        // Dense from the start: probe from the last key read, far then near.
        let mut low = first.entries.last().map(|(key, _)| key.clone()).unwrap_or_default();
        let mut high = end.to_vec();
        let probes = self.inner.options.max_txn_ops.clamp(1, 120);
        let mut geometric = true;
        loop {
            let points = if geometric {
                probe_points_geometric(&low, &high, probes)
            } else {
                probe_points_uniform(&low, &high, probes)
            };
            geometric = false;
            if points.is_empty() {
                // Nothing to split: the window is read whole.
                return Ok(Some(Window {
                    start: low,
                    revision,
                    keys: None,
                }));
            }
            let found = self.first_keys_from(&points, &high, revision).await?;
            // The last point with a key at or after it brackets the end.
            let (window_low, window_high) = match found.iter().rposition(Option::is_some) {
                Some(index) => (
                    found[index].clone().unwrap_or_default(),
                    points.get(index + 1).cloned().unwrap_or_else(|| high.clone()),
                ),
                None => (low.clone(), points[0].clone()),
            };
            let window = self
                .read_chunk_at(&window_low, &window_high, WINDOW_KEYS, true, Some(revision))
                .await?;
            if !window.more {
                // No key lies between `window_high` and the end: these are all of them.
                let first = window.entries.first().map_or(window_low, |(key, _)| key.clone());
                return Ok(Some(Window::read(first, revision, window.entries)));
            }
            low = window_low;
            high = window_high;
        }
    }

    /// For each of `points` (ascending), the first key at or after it before `end`, in
    /// one transaction of reads.
    async fn first_keys_from(
        &self,
        points: &[Vec<u8>],
        end: &[u8],
        at: i64,
    ) -> Result<Vec<Option<Vec<u8>>>, KvError> {
        let operations: Vec<TxnOp> = points
            .iter()
            .map(|point| {
                let options = GetOptions::new()
                    .with_range(end.to_vec())
                    .with_limit(1)
                    .with_keys_only()
                    .with_revision(at);
                TxnOp::get(point.clone(), Some(options))
            })
            .collect();
        let response = self
            .call(false, move |mut kv| {
                let txn = Txn::new().and_then(operations.clone());
                async move { kv.txn(txn).await }
            })
            .await?;
        Ok(response
            .op_responses()
            .into_iter()
            .map(|answer| match answer {
                TxnOpResponse::Get(mut get) => get.take_kvs().into_iter().next().map(|kv| kv.key().to_vec()),
                _ => None,
            })
            .collect())
    }

    /// The values of `keys` (full keys) that have one, in order, read in transactions
    /// within the cluster's limits; a transaction whose answer would be too large is
    /// asked again in halves.
    async fn values_of(
        &self,
        keys: &[Vec<u8>],
        at: Option<i64>,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>, KvError> {
        let mut found = Vec::with_capacity(keys.len());
        let mut rest = keys;
        let mut chunk = self.inner.options.max_txn_ops.clamp(1, 64);
        let mut bytes = 0;
        while !rest.is_empty() && bytes < eventkv::raw::MAX_SCAN_BYTES {
            let take = chunk.min(rest.len());
            let operations: Vec<TxnOp> = rest[..take]
                .iter()
                .map(|key| {
                    let options = at.map(|revision| GetOptions::new().with_revision(revision));
                    TxnOp::get(key.clone(), options)
                })
                .collect();
            let read = self
                .call(false, move |mut kv| {
                    let txn = Txn::new().and_then(operations.clone());
                    async move { kv.txn(txn).await }
                })
                .await;
            match read {
                Ok(response) => {
                    for answer in response.op_responses() {
                        if let TxnOpResponse::Get(mut get) = answer {
                            for kv in get.take_kvs() {
                                bytes += kv.key().len() + kv.value().len();
                                found.push(kv.into_key_value());
                            }
                        }
                    }
                    rest = &rest[take..];
                }
                Err(error) if take > 1 && error.to_string().contains("message length too large") => {
                    chunk = take / 2;
                }
                Err(error) => return Err(error),
            }
        }
        Ok(found)
    }

    /// Refuses a batch the cluster would refuse: more operations or bytes than one
    /// transaction takes.
    fn check_limits(&self, batch: &WriteBatch) -> Result<(), KvError> {
        match self.limits().exceeded_by(batch) {
            None => Ok(()),
            Some(what) => Err(KvError::TooLarge {
                engine: ENGINE,
                what: format!(
                    "{what}; one etcd transaction takes at most --max-txn-ops {} operations and --max-request-bytes {} bytes (tell the engine the cluster's values with ?max_txn_ops= and ?max_request_bytes=)",
                    self.inner.options.max_txn_ops, self.inner.options.max_request_bytes
                ),
            }),
        }
    }
}

/// Keys between `low` and `high` at `low` plus each power of two up to their distance:
/// where the keys after `low` end, within a factor of two.
fn probe_points_geometric(low: &[u8], high: &[u8], count: usize) -> Vec<Vec<u8>> {
    let (common, low_n, high_n) = as_numbers(low, high);
    let distance = high_n.saturating_sub(low_n);
    if distance < 2 {
        return Vec::new();
    }
    let top = 127 - distance.leading_zeros() as usize;
    let lowest = top.saturating_sub(count.saturating_sub(1));
    (lowest..=top)
        .map(|bit| low_n + (1u128 << bit))
        .filter(|&n| n > low_n && n < high_n)
        .map(|n| key_of(&common, n))
        .collect()
}

/// `count` keys evenly spread between `low` and `high`.
fn probe_points_uniform(low: &[u8], high: &[u8], count: usize) -> Vec<Vec<u8>> {
    let (common, low_n, high_n) = as_numbers(low, high);
    let distance = high_n.saturating_sub(low_n);
    if distance < 2 {
        return Vec::new();
    }
    let step = (distance / (count as u128 + 1)).max(1);
    let mut points: Vec<u128> = (1..=count as u128)
        .map(|i| low_n.saturating_add(step.saturating_mul(i)))
        .filter(|&n| n > low_n && n < high_n)
        .collect();
    points.dedup();
    points.into_iter().map(|n| key_of(&common, n)).collect()
}

/// `low` and `high` as their common prefix and the 16 bytes after it, as numbers.
fn as_numbers(low: &[u8], high: &[u8]) -> (Vec<u8>, u128, u128) {
    let common = low.iter().zip(high).take_while(|(a, b)| a == b).count();
    let number = |key: &[u8]| {
        let mut digits = [0u8; 16];
        for (digit, byte) in digits.iter_mut().zip(key.iter().skip(common)) {
            *digit = *byte;
        }
        u128::from_be_bytes(digits)
    };
    (low[..common].to_vec(), number(low), number(high))
}

fn key_of(common: &[u8], n: u128) -> Vec<u8> {
    let mut key = common.to_vec();
    key.extend_from_slice(&n.to_be_bytes());
    key
}

fn validate_prefix(prefix: &str) -> Result<(), String> {
    if prefix.is_empty() {
        Err("the key prefix is missing: write etcd://HOST:PORT[,HOST:PORT…]/PREFIX".into())
    } else if prefix.contains('\0') {
        Err("the key prefix may not hold a NUL byte".into())
    } else {
        Ok(())
    }
}

impl OrderedKv for EtcdKv {
    async fn get(&self, key: &[u8]) -> Result<Option<Bytes>, KvError> {
        let key = self.full(key);
        let mut response: GetResponse = self
            .call(false, move |mut kv| {
                let key = key.clone();
                async move { kv.get(key, None).await }
            })
            .await?;
        Ok(response
            .take_kvs()
            .into_iter()
            .next()
            .map(|kv| Bytes::from(kv.into_key_value().1)))
    }

    async fn scan(
        &self,
        range: &KeyRange,
        direction: Direction,
        limit: usize,
    ) -> Result<KvPage, KvError> {
        if limit == 0 || range.is_empty() {
            return Ok(KvPage::default());
        }
        match direction {
            Direction::Forward => self.scan_forward(range, limit).await,
            Direction::Reverse => {
                // Its reads are pinned to one revision, which a compaction may remove
                // meanwhile: read again at the latest.
                let mut attempts = 0;
                loop {
                    match self.scan_reverse(range, limit).await {
                        Err(error) if attempts < 3 && is_compacted(&error.to_string()) => {
                            attempts += 1;
                        }
                        other => return other,
                    }
                }
            }
        }
    }

    async fn get_many<'a>(&'a self, keys: &'a [Bytes]) -> Result<KvPage, KvError> {
        let mut page = KvPage::default();
        let full: Vec<Vec<u8>> = keys.iter().map(|key| self.full(key)).collect();
        let mut asked = &full[..];
        while !asked.is_empty() && !page.is_full() {
            let take = asked.len().min(MAX_SCAN_ENTRIES);
            let found = self.values_of(&asked[..take], None).await?;
            // `values_of` stops at a page of bytes: ask again after the last one read.
            let mut read = 0;
            for (key, value) in &found {
                while asked.get(read).is_some_and(|asked| asked != key) {
                    read += 1;
                }
                read += 1;
                if page.is_full() {
                    break;
                }
                page.push(self.strip(key)?, value);
            }
            if found.is_empty() || read >= take {
                asked = &asked[take..];
            } else {
                asked = &asked[read..];
            }
        }
        Ok(page)
    }

    fn limits(&self) -> WriteLimits {
        let options = &self.inner.options;
        WriteLimits {
            max_checks: options.max_txn_ops,
            max_mutations: options.max_txn_ops,
            max_bytes: options.max_request_bytes.saturating_sub(REQUEST_OVERHEAD),
        }
    }

    async fn write(&self, batch: WriteBatch) -> Result<(), KvError> {
        if batch.is_empty() {
            return Ok(());
        }
        let (checks, mutations) = batch.into_parts();
        // etcd refuses a transaction that writes one key twice: the last write wins.
        let last = FinalMutations::new(mutations);
        let mut collapsed = WriteBatch::new();
        for (key, check) in &checks {
            collapsed.check(key.clone(), check.clone());
        }
        for (key, value) in &last.upserts {
            collapsed.put(key.clone(), value.clone());
        }
        for key in &last.deletes {
            collapsed.delete(key.clone());
        }
        self.check_limits(&collapsed)?;
        let (checks, mutations) = collapsed.into_parts();
        let compares: Vec<Compare> = checks
            .iter()
            .map(|(key, check)| match check {
                Check::Absent => Compare::version(self.full(key), CompareOp::Equal, 0),
                Check::Present => Compare::version(self.full(key), CompareOp::Greater, 0),
                Check::Equals(value) => Compare::value(self.full(key), CompareOp::Equal, value.to_vec()),
            })
            .collect();
        let success: Vec<TxnOp> = mutations
            .iter()
            .map(|mutation| match mutation {
                Mutation::Put { key, value } => TxnOp::put(self.full(key), value.to_vec(), None),
                Mutation::Delete { key } => TxnOp::delete(self.full(key), None),
            })
            .collect();
        // On failure, read what was checked (keys only where a presence is checked).
        let failure: Vec<TxnOp> = checks
            .iter()
            .map(|(key, check)| {
                let options = match check {
                    Check::Equals(_) => GetOptions::new(),
                    Check::Absent | Check::Present => GetOptions::new().with_keys_only(),
                };
                TxnOp::get(self.full(key), Some(options))
            })
            .collect();
        let response = self
            .call(true, move |mut kv| {
                let txn = Txn::new()
                    .when(compares.clone())
                    .and_then(success.clone())
                    .or_else(failure.clone());
                async move { kv.txn(txn).await }
            })
            .await?;
        if response.succeeded() {
            return Ok(());
        }
        let current: Vec<Option<Vec<u8>>> = response
            .op_responses()
            .into_iter()
            .map(|answer| match answer {
                TxnOpResponse::Get(mut get) => get.take_kvs().into_iter().next().map(|kv| kv.into_key_value().1),
                _ => None,
            })
            .collect();
        let mut answers = current.into_iter();
        let failed = first_failed_check(&checks, |_| Ok::<_, KvError>(answers.next().flatten()))?;
        let key = failed
            .or_else(|| checks.first().map(|(key, _)| key))
            .cloned()
            .unwrap_or_default();
        Err(KvError::Conflict { key })
    }
}

/// etcd in the list of engines: a key prefix on a cluster.
pub(crate) const ENTRY: EngineParts = EngineParts {
    forms: "etcd://HOST:PORT[,HOST:PORT…]/PREFIX[?timeout_ms=N&max_txn_ops=N&max_request_bytes=N]",
    parse: |text| Ok(Box::new(parse(text)?)),
    scratch: Scratch::Server {
        var: "EVENTKV_ETCD_URL",
        default: "etcd://127.0.0.1:23791,127.0.0.1:23792,127.0.0.1:23793?max_txn_ops=16384&max_request_bytes=10485760",
        url: |server, unique| {
            let (base, query) = server.split_once('?').map_or((server, ""), |(b, q)| (b, q));
            let base = base.trim_end_matches('/');
            let separator = if query.is_empty() { "" } else { "?" };
            format!("{base}/eventkv_scratch/{unique}{separator}{query}")
        },
    },
    shared_by_processes: true,
};

/// `etcd://HOST:PORT[,HOST:PORT…]/PREFIX[?…]`
#[derive(Debug, PartialEq, Eq)]
struct EtcdUrl {
    endpoints: Vec<String>,
    prefix: String,
    options: EtcdOptions,
}

fn parse(text: &str) -> Result<EtcdUrl, String> {
    let form = "write etcd://HOST:PORT[,HOST:PORT…]/PREFIX";
    let rest = text
        .strip_prefix("etcd://")
        .ok_or_else(|| format!("expected etcd://: {form}"))?;
    let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    if authority.contains('@') {
        return Err("user names and passwords are not supported: connect to a cluster without authentication, over a private network".into());
    }
    let mut endpoints = Vec::new();
    for endpoint in authority.split(',') {
        let (host, port) = endpoint
            .rsplit_once(':')
            .ok_or_else(|| format!("the member {endpoint:?} has no port: {form}"))?;
        if host.is_empty() || port.parse::<u16>().is_err() {
            return Err(format!("{endpoint:?} is not HOST:PORT: {form}"));
        }
        endpoints.push(endpoint.to_owned());
    }
    let prefix = percent_encoding::percent_decode_str(path)
        .decode_utf8()
        .map_err(|_| "the prefix is not UTF-8 once percent-decoded".to_owned())?
        .into_owned();
    validate_prefix(&prefix)?;
    let mut options = EtcdOptions::default();
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        let number = || {
            value
                .parse::<usize>()
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| format!("{key} must be a whole number above 0, not {value:?}"))
        };
        match &*key {
            "timeout_ms" => options.timeout = Duration::from_millis(number()? as u64),
            "max_txn_ops" => options.max_txn_ops = number()?,
            "max_request_bytes" => options.max_request_bytes = number()?,
            other => {
                return Err(format!(
                    "unknown parameter {other:?} (known: timeout_ms, max_txn_ops, max_request_bytes)"
                ));
            }
        }
    }
    Ok(EtcdUrl {
        endpoints,
        prefix,
        options,
    })
}

impl Target for EtcdUrl {
    fn location(&self) -> Location {
        Location::Prefix {
            endpoints: self.endpoints.join(","),
            prefix: self.prefix.clone(),
        }
    }

    fn open(&self, existing: bool) -> BoxFuture<'_, Result<DynKv, OpenError>> {
        Box::pin(async move {
            let (kv, keys) =
                EtcdKv::connect_counting(&self.endpoints, &self.prefix, self.options.clone())
                    .await?;
            if existing && keys == 0 {
                return Err(OpenError::Missing {
                    engine: ENGINE,
                    location: self.location().to_string(),
                });
            }
            Ok(DynKv::new(kv))
        })
    }

    fn destroy(&self) -> BoxFuture<'_, Result<(), OpenError>> {
        Box::pin(async move {
            let kv = EtcdKv::connect(&self.endpoints, &self.prefix, self.options.clone()).await?;
            kv.delete_all()
                .await
                .map_err(|error| OpenError::engine(ENGINE, error.kind(), error))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_members_prefix_and_limits() {
        assert_eq!(
            parse("etcd://10.0.0.1:2379,10.0.0.2:2379/apps%2Fledger?max_txn_ops=1024&timeout_ms=500"),
            Ok(EtcdUrl {
                endpoints: vec!["10.0.0.1:2379".into(), "10.0.0.2:2379".into()],
                prefix: "apps/ledger".into(),
                options: EtcdOptions {
                    timeout: Duration::from_millis(500),
                    max_txn_ops: 1024,
                    ..EtcdOptions::default()
                },
            })
        );
        crate::url::assert_refused(parse, &[
            ("etcd://h:1", "the key prefix is missing"),
            ("etcd://h:1/", "the key prefix is missing"),
            ("etcd://h/x", "has no port"),
            ("etcd://h:port/x", "is not HOST:PORT"),
            ("etcd://h:1/x?max_txn_ops=0", "max_txn_ops must be a whole number above 0"),
            ("etcd://h:1/x?lease=1", "unknown parameter \"lease\""),
            ("etcd://u:p@h:1/x", "not supported"),
        ]);
    }

    #[test]
    fn probes_fall_between_their_bounds_in_order() {
        let low = b"L\0\0\0\0\0\0\0\x01".to_vec();
        let high = b"L\0\0\0\0\0\x01\x86\xa1".to_vec();
        for points in [
            probe_points_geometric(&low, &high, 120),
            probe_points_uniform(&low, &high, 120),
        ] {
            assert!(!points.is_empty());
            assert!(points.windows(2).all(|pair| pair[0] < pair[1]), "ascending");
            assert!(points.iter().all(|point| &low < point && point < &high));
        }
        assert!(probe_points_uniform(b"a", b"a\0", 10).is_empty(), "nothing between");
    }
}
