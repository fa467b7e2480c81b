//! The benchmark cases. The workload is the conformance suite's `Account` aggregate:
//! opened, then deposits, saved 1,000 events at a time, events in JSON (the default).

use std::time::Instant;

use anyhow::Context;
use eventkv::testkit::aggregates::{Account, AccountEvent, seed_account};
use eventkv::{
    Aggregate, Codec, Direction, DynKv, EventStore, KvEventStore, KvSnapshotStore, OrderedKv,
    Repository, SnapshotStore,
};
use serde::Serialize;

use crate::cli::{EngineName, Threshold};
use crate::measure::{Budget, Stats, sample};
use crate::stores::{Stores, stored_bytes};

type Repo = Repository<Account, KvEventStore<DynKv>, KvSnapshotStore<DynKv>>;

const ID: &str = "acc";

fn repository(kv: &DynKv) -> Repo {
    Repository::new(
        KvEventStore::new(kv.clone()),
        KvSnapshotStore::new(kv.clone()),
    )
}

/// One row of the main table: loads of an aggregate of `events` events.
#[derive(Clone, Debug, Serialize)]
pub struct LoadRow {
    pub engine: EngineName,
    pub events: u64,
    /// Full replay, no snapshot.
    pub without: Stats,
    /// Snapshots every 100 events (threshold 100): the snapshot is at the last event.
    pub with_every_100: Stats,
    /// A snapshot 99 events behind the stream.
    pub snapshot_99_behind: Stats,
    /// The same stored events scanned and decoded by hand, without the repository.
    pub limit: Stats,
}

impl LoadRow {
    /// How many times faster the load with snapshots is.
    pub fn improvement(&self) -> f64 {
        self.without.median_ms / self.with_every_100.median_ms
    }

    /// What the repository adds to the hand-written replay, as a share of it.
    pub fn overhead(&self) -> f64 {
        self.without.median_ms / self.limit.median_ms - 1.0
    }
}

/// One row of the threshold sweep.
#[derive(Clone, Debug, Serialize)]
pub struct ThresholdRow {
    pub engine: EngineName,
    pub threshold: Threshold,
    pub events: u64,
    /// Mean time of a save of 10 events, snapshot included when one is due (sync mode).
    pub save_ms: f64,
    /// Load of the aggregate.
    pub load: Stats,
    /// Snapshots written while saving.
    pub snapshots_written: u64,
    /// Bytes of every key and value the engine holds afterwards.
    pub stored_bytes: u64,
}

/// One row of the codec comparison.
#[derive(Clone, Debug, Serialize)]
pub struct CodecRow {
    pub codec: String,
    /// Encoded size of the aggregate's state.
    pub snapshot_bytes: usize,
    /// Mean time to encode the state, in nanoseconds.
    pub encode_ns: f64,
    /// Mean time to decode the state, in nanoseconds.
    pub decode_ns: f64,
    /// Encoded size of one event.
    pub event_bytes: usize,
    /// Load with a snapshot in this codec, 99 events behind (memory engine).
    pub load: Stats,
}

/// One row of the append throughput.
#[derive(Clone, Debug, Serialize)]
pub struct AppendRow {
    pub engine: EngineName,
    pub events_per_save: u64,
    pub events_per_second: f64,
}

/// Runs cases on fresh stores.
pub struct Runner {
    pub stores: Stores,
    pub budget: Budget,
    pub quick: bool,
    /// The writer counts of the concurrent-writers cases.
    pub writer_counts: Vec<usize>,
}

impl Runner {
    async fn load_stats(&self, repo: &Repo) -> anyhow::Result<Stats> {
        sample(self.budget, || async {
            std::hint::black_box(repo.load(ID).await?);
            Ok(())
        })
        .await
    }

    /// The main table's row for `engine` and `events`.
    pub async fn load_row(&self, engine: EngineName, events: u64) -> anyhow::Result<LoadRow> {
        let kv = self.stores.fresh(engine).await?;
        let plain = repository(&kv);
        seed_account(&plain, ID, events, None)
            .await
            .context("seeding")?;
        let without = self.load_stats(&plain).await?;
        let limit = sample(self.budget, || async {
            let state = hand_written_replay(&kv, events).await?;
            std::hint::black_box(state);
            Ok(())
        })
        .await?;

        let kv = self.stores.fresh(engine).await?;
        let every_100 = repository(&kv).with_snapshot_threshold(100);
        seed_account(&every_100, ID, events, None)
            .await
            .context("seeding")?;
        let with_every_100 = self.load_stats(&every_100).await?;

        let kv = self.stores.fresh(engine).await?;
        let behind = repository(&kv);
        seed_account(&behind, ID, events + 99, Some(99))
            .await
            .context("seeding")?;
        let snapshot_99_behind = self.load_stats(&behind).await?;
        let loaded = behind.load(ID).await?;
        anyhow::ensure!(
            loaded.load_info().events_replayed == 99,
            "the snapshot must be 99 events behind"
        );

        Ok(LoadRow {
            engine,
            events,
            without,
            with_every_100,
            snapshot_99_behind,
            limit,
        })
    }

    /// The threshold sweep's row: `events` events saved 10 at a time in sync mode.
    pub async fn threshold_row(
        &self,
        engine: EngineName,
        threshold: Threshold,
        events: u64,
    ) -> anyhow::Result<ThresholdRow> {
        let kv = self.stores.fresh(engine).await?;
        let repo = repository(&kv).with_snapshot_threshold(threshold.0.unwrap_or(0));
        let mut account = repo.create_new(ID);
        account.record(AccountEvent::Opened { owner: ID.into() });
        let mut saves = 0u32;
        let started = Instant::now();
        for i in 1..events {
            account.record(AccountEvent::Deposited { amount: i % 100 });
            if account.pending().len() == 10 {
                repo.save(&mut account).await?;
                saves += 1;
            }
        }
        repo.save(&mut account).await?;
        saves += 1;
        let save_ms = started.elapsed().as_secs_f64() * 1000.0 / f64::from(saves);
        let load = self.load_stats(&repo).await?;
        Ok(ThresholdRow {
            engine,
            threshold,
            events,
            save_ms,
            load,
            snapshots_written: repo.metrics().snapshots_written,
            stored_bytes: stored_bytes(&kv).await?,
        })
    }

    /// The codec comparison's row, on the memory engine, with the [`History`] aggregate
    /// (a state of realistic size: the last 100 deposits beside the totals).
    pub async fn codec_row(&self, codec: Codec, events: u64) -> anyhow::Result<CodecRow> {
        let kv = self.stores.fresh(EngineName::named("memory")).await?;
        let repo: Repository<History, _, _> = Repository::new(
            KvEventStore::new(kv.clone()),
            KvSnapshotStore::new(kv.clone()),
        )
        .with_snapshot_codec(codec);
        let mut history = repo.create_new(ID);
        history.record(AccountEvent::Opened { owner: ID.into() });
        for i in 1..events {
            history.record(AccountEvent::Deposited {
                amount: i * 7 % 1000,
            });
            if history.pending().len() == 1000 {
                repo.save(&mut history).await?;
            }
        }
        repo.save(&mut history).await?;
        repo.create_snapshot(&history).await?;
        for amount in 0..99 {
            history.record(AccountEvent::Deposited { amount });
        }
        repo.save(&mut history).await?;
        let snapshot = repo
            .snapshot_store()
            .get_snapshot(History::TYPE, ID)
            .await?
            .context("the snapshot exists")?;
        anyhow::ensure!(snapshot.codec == codec, "the snapshot is in {codec}");
        let state: History = codec.decode(&snapshot.state)?;
        let iterations: u32 = if self.quick { 2_000 } else { 50_000 };
        let started = Instant::now();
        for _ in 0..iterations {
            std::hint::black_box(codec.encode(std::hint::black_box(&state))?);
        }
        let encode_ns = started.elapsed().as_nanos() as f64 / f64::from(iterations);
        let started = Instant::now();
        for _ in 0..iterations {
            std::hint::black_box(codec.decode::<History>(std::hint::black_box(&snapshot.state))?);
        }
        let decode_ns = started.elapsed().as_nanos() as f64 / f64::from(iterations);
        let event_bytes = codec.encode(&AccountEvent::Deposited { amount: 42 })?.len();
        let load = sample(self.budget, || async {
            std::hint::black_box(repo.load(ID).await?);
            Ok(())
        })
        .await?;
        Ok(CodecRow {
            codec: codec.name().to_owned(),
            snapshot_bytes: snapshot.state.len(),
            encode_ns,
            decode_ns,
            event_bytes,
            load,
        })
    }

    /// Append throughput with `per_save` events per save.
    pub async fn append_row(&self, engine: EngineName, per_save: u64) -> anyhow::Result<AppendRow> {
        let kv = self.stores.fresh(engine).await?;
        let repo = repository(&kv);
        let saves = match (self.quick, per_save) {
            (true, 1) => 20,
            (true, _) => 2,
            (false, 1) => 500,
            (false, _) => 30,
        };
        let mut account = repo.create_new(ID);
        account.record(AccountEvent::Opened { owner: ID.into() });
        repo.save(&mut account).await?;
        let started = Instant::now();
        for _ in 0..saves {
            for amount in 0..per_save {
                account.record(AccountEvent::Deposited { amount });
            }
            repo.save(&mut account).await?;
        }
        let seconds = started.elapsed().as_secs_f64();
        Ok(AppendRow {
            engine,
            events_per_save: per_save,
            events_per_second: (saves * per_save) as f64 / seconds,
        })
    }
}

/// An account that also keeps its last 100 deposits: a snapshot state of realistic size
/// for comparing codecs.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct History {
    owner: String,
    balance: u64,
    transactions: u64,
    recent: std::collections::VecDeque<Deposit>,
}

/// One deposit a [`History`] remembers.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Deposit {
    transaction: u64,
    amount: u64,
}

impl Aggregate for History {
    const TYPE: &'static str = "History";
    const SCHEMA_VERSION: u32 = 1;
    type Event = AccountEvent;

    fn apply(&mut self, event: &AccountEvent) {
        match event {
            AccountEvent::Opened { owner } => self.owner.clone_from(owner),
            AccountEvent::Deposited { amount } => {
                self.balance += amount;
                self.transactions += 1;
                if self.recent.len() == 100 {
                    self.recent.pop_front();
                }
                self.recent.push_back(Deposit {
                    transaction: self.transactions,
                    amount: *amount,
                });
            }
            AccountEvent::Withdrawn { amount } => {
                self.balance = self.balance.saturating_sub(*amount);
                self.transactions += 1;
            }
        }
    }
}

/// What a hand-written reader of the same bytes does: scan the stream in pages, find each
/// payload by the documented envelope layout (docs/format.md), decode it, apply it.
async fn hand_written_replay(kv: &DynKv, events: u64) -> anyhow::Result<Account> {
    const PAGE: usize = 2048;
    let stream = eventkv::keys::StreamKeys::new(Account::TYPE, ID)?;
    let mut range = stream.all();
    let mut state = Account::default();
    let mut seen = 0;
    loop {
        let page = kv.scan(&range, Direction::Forward, PAGE).await?;
        for (key, value) in page.iter() {
            let payload = payload_of(key, value).context("a malformed event envelope")?;
            let event: AccountEvent = serde_json::from_slice(payload)?;
            state.apply(&event);
            seen += 1;
        }
        match page.last_key() {
            Some(last) if page.may_have_more(PAGE) => {
                range = range.after_page(last, Direction::Forward);
            }
            _ => break,
        }
    }
    anyhow::ensure!(seen == events, "replayed {seen} events, expected {events}");
    Ok(state)
}

/// The payload of an event envelope of format 2, per docs/format.md: between the
/// metadata ids and the 4-byte checksum, once the checksum (CRC-32C of key and value, big
/// endian) is verified: a reader of format 2 that skips it would apply flipped bytes.
fn payload_of<'a>(key: &[u8], value: &'a [u8]) -> Option<&'a [u8]> {
    let (body, stored) = value.split_at(value.len().checked_sub(4)?);
    let computed = crc32c::crc32c_append(crc32c::crc32c(key), body);
    if computed != u32::from_be_bytes(stored.try_into().ok()?) {
        return None;
    }
    let type_len = usize::from(u16::from_be_bytes(body.get(34..36)?.try_into().ok()?));
    // Format 3 stores the shape version (4 bytes) after the type; format 2 does not.
    let shape_len = if *body.first()? == 3 { 4 } else { 0 };
    let flags_at = 36 + type_len + shape_len;
    let flags = *body.get(flags_at)?;
    let ids = (flags & 1) as usize + ((flags >> 1) & 1) as usize;
    body.get(flags_at + 1 + 16 * ids..)
}

/// Checks that the workload's events are stored as the harness expects (JSON).
pub async fn check_workload(stores: &Stores) -> anyhow::Result<()> {
    let kv = stores.fresh(EngineName::named("memory")).await?;
    let repo = repository(&kv);
    seed_account(&repo, ID, 3, None).await?;
    let page = repo
        .event_store()
        .read_stream(Account::TYPE, ID, 1, 3, 3)
        .await?;
    anyhow::ensure!(
        page.iter().all(|e| e.codec() == Codec::Json),
        "events are JSON"
    );
    let state = hand_written_replay(&kv, 3).await?;
    anyhow::ensure!(
        state == *repo.load(ID).await?.state(),
        "the hand-written replay agrees with the repository"
    );
    Ok(())
}
