//! Catch-up subscriptions: the global log from a position, then each new event as it is
//! appended, in position order, each once.
//!
//! The global log is gap-free and in commit order (a position is given under the engine's
//! write lock, in the batch that commits it), so a reader that goes on from the last
//! position it saw never skips an event committed late, and never sees one twice.

use std::time::Duration;

use backon::ExponentialBackoff;
use futures_util::future::{Either, select};
use futures_util::{Stream, StreamExt, stream};

use crate::backoff;
use crate::event_store::{EventPage, EventStoreError, KvEventStore};
use crate::kv::{MaybeSend, OrderedKv};
use crate::recorded::RecordedEvent;

/// The first pause after a failed read (before jitter); pauses double up to
/// [`LONGEST_RETRY_PAUSE`].
const FIRST_RETRY_PAUSE: Duration = Duration::from_millis(100);
/// The longest pause between two failed reads (before jitter).
pub const LONGEST_RETRY_PAUSE: Duration = Duration::from_secs(5);

/// The longest poll interval: 2^31 - 1 ms (about 24.8 days), the longest timer a browser
/// keeps (a longer one fires at once).
pub const MAX_POLL_INTERVAL: Duration = Duration::from_millis(i32::MAX as u64);

/// How a subscription reads and waits.
#[derive(Clone, Debug)]
pub struct SubscribeOptions {
    pub(crate) poll_interval: Duration,
    pub(crate) page_size: usize,
    aggregate_type: Option<String>,
}

impl Default for SubscribeOptions {
    /// Polls every 500 ms, reads pages of 1,000 events, every aggregate type.
    fn default() -> Self {
        SubscribeOptions {
            poll_interval: Duration::from_millis(500),
            page_size: 1000,
            aggregate_type: None,
        }
    }
}

impl SubscribeOptions {
    /// How often a subscription that caught up looks for events appended by other
    /// processes (or other stores on the same engine). Appends through the same store
    /// wake it at once. At least 1 ms, at most [`MAX_POLL_INTERVAL`].
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval.clamp(Duration::from_millis(1), MAX_POLL_INTERVAL);
        self
    }

    /// How many events one read of the log asks for (1 to 4,096).
    pub fn page_size(mut self, events: usize) -> Self {
        self.page_size = events.clamp(1, crate::kv::MAX_SCAN_ENTRIES);
        self
    }

    /// Only the events of aggregates of this type. The others are passed over unread:
    /// the global log names each append's stream, so only the log is scanned for them.
    pub fn aggregate_type(mut self, aggregate_type: impl Into<String>) -> Self {
        self.aggregate_type = Some(aggregate_type.into());
        self
    }

    /// The next page of the global log from `from_position` for these options.
    pub(crate) async fn read<K: OrderedKv>(
        &self,
        store: &KvEventStore<K>,
        from_position: u64,
    ) -> Result<EventPage, EventStoreError> {
        let wanted = self.aggregate_type.as_deref();
        store
            .read_all_where(from_position, self.page_size, |aggregate_type| {
                wanted.is_none_or(|wanted| wanted == aggregate_type)
            })
            .await
    }
}

/// Where a subscription is.
struct Follow<'s, K> {
    store: &'s KvEventStore<K>,
    options: SubscribeOptions,
    /// The position of the next event to read.
    next: u64,
    /// The pauses after failed reads, while reads fail.
    retries: Option<ExponentialBackoff>,
    /// To wait before the next read.
    pause: Option<Duration>,
    /// A failure that reading again cannot heal was handed out: the stream ends.
    ended: bool,
}

impl<K: OrderedKv> KvEventStore<K> {
    /// The events of the global log from `from_position` (positions start at 1), then
    /// each event appended after them, for as long as the stream is polled: see
    /// [`subscribe`](Self::subscribe).
    pub fn subscribe_all(
        &self,
        from_position: u64,
    ) -> impl Stream<Item = Result<RecordedEvent, EventStoreError>> + MaybeSend + '_ {
        self.subscribe(from_position, SubscribeOptions::default())
    }

    /// The events of the global log from `from_position`, in position order, each once;
    /// once caught up, it waits for new ones: woken at once by appends through this store
    /// (or a clone of it), and looking every [`SubscribeOptions::poll_interval`] for those
    /// of other processes. It ends only after a failure that reading again cannot heal:
    /// drop it to stop.
    ///
    /// A read that fails is handed out as an `Err` item. A retryable failure
    /// ([`EventStoreError::is_retryable`]: the engine was unavailable) is then tried again
    /// from the same position after a pause (from 100 ms, doubling up to
    /// [`LONGEST_RETRY_PAUSE`], with jitter): nothing is skipped or repeated. Any other
    /// (corrupt data) ends the stream after its `Err` item: reading again would only find
    /// it again.
    pub fn subscribe(
        &self,
        from_position: u64,
        options: SubscribeOptions,
    ) -> impl Stream<Item = Result<RecordedEvent, EventStoreError>> + MaybeSend + '_ {
        self.subscribe_pages(from_position, options)
            .flat_map(|page| {
                let items: Vec<_> = match page {
                    Ok(events) => events.into_iter().map(Ok).collect(),
                    Err(error) => vec![Err(error)],
                };
                stream::iter(items)
            })
    }

    /// [`subscribe`](Self::subscribe), a page of events at a time (never empty): each
    /// item is one read of the log, finished before it is handed out. For consumers that
    /// handle events in batches, or that must not leave a read of the engine half done
    /// while they wait for something else (an IndexedDB transaction ends as soon as it
    /// waits for anything but its own requests).
    pub fn subscribe_pages(
        &self,
        from_position: u64,
        options: SubscribeOptions,
    ) -> impl Stream<Item = Result<Vec<RecordedEvent>, EventStoreError>> + MaybeSend + '_ {
        let follow = Follow {
            store: self,
            options,
            next: from_position.max(1),
            retries: None,
            pause: None,
            ended: false,
        };
        stream::unfold(follow, |mut follow| async move {
            if follow.ended {
                return None;
            }
            let page = follow.next_page().await;
            Some((page, follow))
        })
    }
}

impl<K: OrderedKv> Follow<'_, K> {
    async fn next_page(&mut self) -> Result<Vec<RecordedEvent>, EventStoreError> {
        loop {
            if let Some(pause) = self.pause.take() {
                futures_timer::Delay::new(pause).await;
            }
            // Listening before the read: an append committed after it wakes the wait.
            let appended = self.store.appended().listen();
            let page = match self.options.read(self.store, self.next).await {
                Ok(page) => page,
                Err(error) => {
                    let retries = self.retries.get_or_insert_with(retry_pauses);
                    self.pause = Some(retries.next().unwrap_or(LONGEST_RETRY_PAUSE));
                    self.ended = !error.is_retryable();
                    return Err(error);
                }
            };
            self.retries = None;
            let Some(through) = page.read_through() else {
                let poll = futures_timer::Delay::new(self.options.poll_interval);
                if let Either::Left(((), _)) = select(poll, appended).await {
                    tracing::trace!(position = self.next, "polling the global log");
                }
                continue;
            };
            self.next = through.saturating_add(1);
            if !page.is_empty() {
                return Ok(page.iter().map(RecordedEvent::from).collect());
            }
        }
    }
}

/// The pauses between failed reads of a subscription or a projection: from 100 ms,
/// doubling up to [`LONGEST_RETRY_PAUSE`], jittered, without end.
pub(crate) fn retry_pauses() -> ExponentialBackoff {
    backoff::endless(FIRST_RETRY_PAUSE, LONGEST_RETRY_PAUSE)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{MAX_POLL_INTERVAL, SubscribeOptions};

    #[test]
    fn poll_intervals_are_kept_within_what_timers_take() {
        let interval = |d| SubscribeOptions::default().poll_interval(d).poll_interval;
        assert_eq!(interval(Duration::ZERO), Duration::from_millis(1));
        assert_eq!(interval(Duration::from_secs(2)), Duration::from_secs(2));
        assert_eq!(interval(Duration::MAX), MAX_POLL_INTERVAL);
    }
}
