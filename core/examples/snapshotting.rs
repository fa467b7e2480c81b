//! The snapshotting tutorial, complete: an `Account` aggregate, what snapshots save at
//! load time, the three snapshot modes, and schema versioning.
//!
//! Run it with `cargo run --release -p eventkv --example snapshotting`.

use std::time::Instant;

use eventkv::{
    Aggregate, DomainEvent, KvEventStore, KvSnapshotStore, MemoryKv, Repository, RepositoryError,
    SnapshotMode, SnapshotStore,
};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// What happens to an account.
#[derive(Clone, Debug, Serialize, Deserialize)]
enum AccountEvent {
    Opened { owner: String },
    Deposited { amount: u64 },
    Withdrawn { amount: u64 },
}

impl DomainEvent for AccountEvent {
    fn event_type(&self) -> &'static str {
        match self {
            AccountEvent::Opened { .. } => "AccountOpened",
            AccountEvent::Deposited { .. } => "MoneyDeposited",
            AccountEvent::Withdrawn { .. } => "MoneyWithdrawn",
        }
    }
}

/// An account's state, schema version 1: the balance in whole units.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Account {
    owner: String,
    balance: u64,
    transactions: u64,
}

impl Aggregate for Account {
    const TYPE: &'static str = "Account";
    const SCHEMA_VERSION: u32 = 1;
    type Event = AccountEvent;

    fn apply(&mut self, event: &AccountEvent) {
        match event {
            AccountEvent::Opened { owner } => self.owner.clone_from(owner),
            AccountEvent::Deposited { amount } => {
                self.balance += amount;
                self.transactions += 1;
            }
            AccountEvent::Withdrawn { amount } => {
                self.balance -= amount;
                self.transactions += 1;
            }
        }
    }
}

/// The same aggregate after its state changed shape (schema version 2): it now also keeps
/// the largest deposit, which a version 1 snapshot does not have.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct AccountV2 {
    owner: String,
    balance: u64,
    transactions: u64,
    largest_deposit: u64,
}

impl Aggregate for AccountV2 {
    const TYPE: &'static str = "Account";
    const SCHEMA_VERSION: u32 = 2;
    type Event = AccountEvent;

    fn apply(&mut self, event: &AccountEvent) {
        match event {
            AccountEvent::Opened { owner } => self.owner.clone_from(owner),
            AccountEvent::Deposited { amount } => {
                self.balance += amount;
                self.transactions += 1;
                self.largest_deposit = self.largest_deposit.max(*amount);
            }
            AccountEvent::Withdrawn { amount } => {
                self.balance -= amount;
                self.transactions += 1;
            }
        }
    }
}

type Store = Arc<MemoryKv>;
type Repo<A> = Repository<A, KvEventStore<Store>, KvSnapshotStore<Store>>;

fn repository<A: Aggregate>(kv: &Store) -> Repo<A> {
    Repository::new(
        KvEventStore::new(kv.clone()),
        KvSnapshotStore::new(kv.clone()),
    )
}

/// Opens an account and records `transactions` deposits and withdrawals, saving once.
async fn open_account<A: Aggregate<Event = AccountEvent>>(
    repo: &Repo<A>,
    id: &str,
    transactions: u64,
) -> Result<(), RepositoryError> {
    let mut account = repo.create_new(id);
    account.record(AccountEvent::Opened {
        owner: "Alice".into(),
    });
    for i in 0..transactions {
        let event = if i % 3 == 2 {
            AccountEvent::Withdrawn { amount: 5 }
        } else {
            AccountEvent::Deposited { amount: 10 + i % 7 }
        };
        account.record(event);
    }
    repo.save(&mut account).await?;
    Ok(())
}

/// The mean time of `loads` loads, in milliseconds.
async fn mean_load_ms<A: Aggregate>(
    repo: &Repo<A>,
    id: &str,
    loads: u32,
) -> Result<f64, RepositoryError> {
    let start = Instant::now();
    for _ in 0..loads {
        repo.load(id).await?;
    }
    Ok(start.elapsed().as_secs_f64() * 1000.0 / f64::from(loads))
}

async fn performance() -> Result<(), Box<dyn std::error::Error>> {
    println!("== Performance: 200 transactions, 10 loads ==");
    let kv = Store::default();
    let repo = repository::<Account>(&kv);
    open_account(&repo, "perf", 200).await?;
    let without = mean_load_ms(&repo, "perf", 10).await?;
    let loaded = repo.load("perf").await?;
    repo.create_snapshot(&loaded).await?;
    let with = mean_load_ms(&repo, "perf", 10).await?;
    let again = repo.load("perf").await?;
    println!(
        "without snapshot: {without:.4} ms per load ({} events replayed)",
        loaded.load_info().events_replayed
    );
    println!(
        "with snapshot:    {with:.4} ms per load (from version {}, {} events replayed)",
        again.load_info().snapshot_version.unwrap_or(0),
        again.load_info().events_replayed
    );
    println!("speed-up:         {:.1}x", without / with);
    println!(
        "balance {} after {} transactions",
        again.state().balance,
        again.state().transactions
    );
    Ok(())
}

async fn modes() -> Result<(), Box<dyn std::error::Error>> {
    println!("\n== Snapshot modes (threshold 10) ==");
    for mode in [
        SnapshotMode::Sync,
        SnapshotMode::Background,
        SnapshotMode::Manual,
    ] {
        let kv = Store::default();
        let repo = repository::<Account>(&kv)
            .with_snapshot_threshold(10)
            .with_snapshot_mode(mode);
        let mut account = repo.create_new("modes");
        account.record(AccountEvent::Opened {
            owner: "Bob".into(),
        });
        repo.save(&mut account).await?;
        for _ in 0..15 {
            account.record(AccountEvent::Deposited { amount: 100 });
            repo.save(&mut account).await?;
        }
        let store = repo.snapshot_store();
        let right_after = store.snapshot_exists(Account::TYPE, "modes").await?;
        println!(
            "{mode:?}: version {}, snapshot right after save: {right_after}",
            account.version()
        );
        match mode {
            SnapshotMode::Sync => {}
            SnapshotMode::Background => {
                println!(
                    "  pending background snapshots: {}",
                    repo.pending_snapshot_count()
                );
                repo.await_pending_snapshots().await;
                let snapshot = store.get_snapshot(Account::TYPE, "modes").await?;
                println!(
                    "  after await_pending_snapshots: version {:?}",
                    snapshot.map(|s| s.version)
                );
            }
            SnapshotMode::Manual => {
                repo.create_snapshot(&account).await?;
                let snapshot = store.get_snapshot(Account::TYPE, "modes").await?;
                println!(
                    "  after create_snapshot: version {:?}",
                    snapshot.map(|s| s.version)
                );
            }
        }
    }
    Ok(())
}

async fn schema_versioning() -> Result<(), Box<dyn std::error::Error>> {
    println!("\n== Schema versioning ==");
    let kv = Store::default();
    let v1 = repository::<Account>(&kv).with_snapshot_threshold(10);
    open_account(&v1, "schema", 24).await?;
    let snapshot = v1
        .snapshot_store()
        .get_snapshot(Account::TYPE, "schema")
        .await?;
    println!(
        "v1 snapshot: {:?}",
        snapshot.map(|s| (s.version, s.schema_version))
    );

    let v2 = repository::<AccountV2>(&kv).with_snapshot_threshold(10);
    let mut account = v2.load("schema").await?;
    println!(
        "v2 load: snapshot used: {}, {} events replayed, largest deposit {}",
        account.load_info().snapshot_version.is_some(),
        account.load_info().events_replayed,
        account.state().largest_deposit
    );
    println!(
        "v2 snapshots ignored for their schema: {}",
        v2.metrics().miss_schema_mismatch
    );
    for _ in 0..5 {
        account.record(AccountEvent::Deposited { amount: 50 });
    }
    v2.save(&mut account).await?;
    let snapshot = v2
        .snapshot_store()
        .get_snapshot(Account::TYPE, "schema")
        .await?;
    println!(
        "after the next save: {:?}",
        snapshot.map(|s| (s.version, s.schema_version))
    );
    let reloaded = v2.load("schema").await?;
    println!(
        "v2 load: from snapshot version {:?}",
        reloaded.load_info().snapshot_version
    );

    open_account(&v1, "old", 12).await?;
    let deleted = v2
        .snapshot_store()
        .delete_snapshots_by_type(Account::TYPE, Some(2))
        .await?;
    println!("deleted {deleted} snapshot(s) below schema version 2");
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    performance().await?;
    modes().await?;
    schema_versioning().await?;
    Ok(())
}
