//! A read model built by a projection: each account's balance, caught up from the global
//! log, then following live appends. Commands run through `Repository::execute`, which
//! decides again when another writer saved first.
//!
//! Run it with `cargo run -p eventkv --example projection`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use eventkv::{
    Aggregate, BoxError, CommandError, DomainEvent, KvEventStore, KvRepository, MemoryKv,
    Projection, ProjectionRunner, ReadModel, RecordedEvent, Repository,
};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize)]
enum AccountEvent {
    Deposited { amount: u64 },
    Withdrawn { amount: u64 },
}

impl DomainEvent for AccountEvent {
    fn event_type(&self) -> &'static str {
        match self {
            AccountEvent::Deposited { .. } => "MoneyDeposited",
            AccountEvent::Withdrawn { .. } => "MoneyWithdrawn",
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Account {
    balance: u64,
}

impl Aggregate for Account {
    const TYPE: &'static str = "Account";
    const SCHEMA_VERSION: u32 = 1;
    type Event = AccountEvent;

    fn apply(&mut self, event: &AccountEvent) {
        match event {
            AccountEvent::Deposited { amount } => self.balance += amount,
            AccountEvent::Withdrawn { amount } => self.balance -= amount,
        }
    }
}

/// The read model: each account's balance, as a big-endian u64 under the account's id.
/// Its name carries a version: a new version rebuilds from the first event beside it.
struct Balances;

impl Projection for Balances {
    fn name(&self) -> &'static str {
        "balances-v1"
    }

    async fn apply(
        &self,
        event: &RecordedEvent,
        model: &mut ReadModel<'_>,
    ) -> Result<(), BoxError> {
        let key = event.aggregate_id.as_bytes();
        let balance = match model.get(key).await? {
            Some(value) => u64::from_be_bytes(value[..].try_into()?),
            None => 0,
        };
        let balance = match event.decode::<AccountEvent>()? {
            AccountEvent::Deposited { amount } => balance + amount,
            AccountEvent::Withdrawn { amount } => balance - amount,
        };
        model.put(key, balance.to_be_bytes().to_vec());
        Ok(())
    }
}

/// A withdrawal: refused when the balance is too low.
async fn withdraw(
    repo: &KvRepository<Account, Arc<MemoryKv>>,
    id: &str,
    amount: u64,
) -> Result<(), CommandError<String>> {
    repo.execute(id, |account: &Account| {
        if account.balance < amount {
            Err(format!(
                "{id} holds {}, cannot withdraw {amount}",
                account.balance
            ))
        } else {
            Ok(vec![AccountEvent::Withdrawn { amount }])
        }
    })
    .await
    .map(drop)
}

async fn print_balances(store: &KvEventStore<Arc<MemoryKv>>) -> Result<(), BoxError> {
    let checkpoint = store.checkpoint("balances-v1").await?;
    println!("balances at position {checkpoint}:");
    for (id, balance) in store.read_model_entries("balances-v1", None, 100).await? {
        let balance = u64::from_be_bytes(balance[..].try_into()?);
        println!("  {}: {balance}", String::from_utf8_lossy(&id));
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let kv = Arc::new(MemoryKv::new());
    let repo: KvRepository<Account, _> = Repository::on(kv.clone());
    let store = Arc::new(KvEventStore::new(kv));

    // History, written by commands before the read model exists.
    for (id, amount) in [("alice", 100), ("bob", 50), ("alice", 20)] {
        repo.execute(id, |_: &Account| {
            Ok::<_, String>(vec![AccountEvent::Deposited { amount }])
        })
        .await?;
    }
    if let Err(refused) = withdraw(&repo, "bob", 80).await {
        println!("refused: {refused}");
    }
    withdraw(&repo, "alice", 30).await?;

    // Catch up: the read model is built from the whole log.
    let caught_up = ProjectionRunner::new(&store, Balances).catch_up().await?;
    println!("caught up to position {caught_up}");
    print_balances(&store).await?;

    // Follow: the runner applies new events as they are appended.
    let follower = tokio::spawn({
        let store = Arc::clone(&store);
        async move { ProjectionRunner::new(&store, Balances).run().await }
    });
    let started = Instant::now();
    repo.execute("carol", |_: &Account| {
        Ok::<_, String>(vec![AccountEvent::Deposited { amount: 75 }])
    })
    .await?;
    let head = store.last_position().await?;
    let applied = async {
        while store.checkpoint("balances-v1").await? < head {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        Ok::<_, BoxError>(())
    };
    tokio::time::timeout(Duration::from_secs(10), applied)
        .await
        .map_err(|_| "the projection did not apply the append within 10 s")??;
    println!("applied live {:?} after the append", started.elapsed());
    print_balances(&store).await?;
    follower.abort();
    Ok(())
}
