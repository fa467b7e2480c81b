//! Aggregates the suite saves and loads.

use serde::{Deserialize, Serialize};

use crate::aggregate::{Aggregate, DomainEvent};

/// The events of [`Account`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AccountEvent {
    Opened { owner: String },
    Deposited { amount: u64 },
    Withdrawn { amount: u64 },
}

impl DomainEvent for AccountEvent {
    fn event_type(&self) -> &'static str {
        match self {
            AccountEvent::Opened { .. } => "Opened",
            AccountEvent::Deposited { .. } => "Deposited",
            AccountEvent::Withdrawn { .. } => "Withdrawn",
        }
    }
}

/// A bank account: an owner, a balance, and how many transactions it saw.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub owner: String,
    pub balance: u64,
    pub transactions: u64,
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
                self.balance = self.balance.saturating_sub(*amount);
                self.transactions += 1;
            }
        }
    }
}

/// The same aggregate type as [`Account`] after a change of its state's shape.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountV2 {
    pub owner: String,
    pub balance_cents: u128,
    pub transactions: u64,
}

impl Aggregate for AccountV2 {
    const TYPE: &'static str = "Account";
    const SCHEMA_VERSION: u32 = 2;
    type Event = AccountEvent;

    fn apply(&mut self, event: &AccountEvent) {
        match event {
            AccountEvent::Opened { owner } => self.owner.clone_from(owner),
            AccountEvent::Deposited { amount } => {
                self.balance_cents += u128::from(*amount) * 100;
                self.transactions += 1;
            }
            AccountEvent::Withdrawn { amount } => {
                self.balance_cents = self.balance_cents.saturating_sub(u128::from(*amount) * 100);
                self.transactions += 1;
            }
        }
    }
}

/// The events of [`Document`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum DocumentEvent {
    Set {
        field: String,
        value: serde_json::Value,
    },
}

impl DomainEvent for DocumentEvent {
    fn event_type(&self) -> &'static str {
        "Set"
    }
}

/// A state bincode cannot round-trip: it holds `serde_json::Value`s.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Document {
    pub fields: serde_json::Map<String, serde_json::Value>,
}

impl Aggregate for Document {
    const TYPE: &'static str = "Document";
    const SCHEMA_VERSION: u32 = 1;
    type Event = DocumentEvent;

    fn apply(&mut self, event: &DocumentEvent) {
        let DocumentEvent::Set { field, value } = event;
        self.fields.insert(field.clone(), value.clone());
    }
}

/// `n` deposits of 1, 2, 3, ...
pub fn deposits(range: std::ops::RangeInclusive<u64>) -> impl Iterator<Item = AccountEvent> {
    range.map(|amount| AccountEvent::Deposited { amount })
}

/// Saves an account of `events` events (opened, then deposits) in saves of 1,000 events;
/// with `snapshot_behind`, snapshots it that many events before the end. For benchmarks.
pub async fn seed_account<E, S>(
    repo: &crate::Repository<Account, E, S>,
    id: &str,
    events: u64,
    snapshot_behind: Option<u64>,
) -> Result<(), crate::RepositoryError>
where
    E: crate::EventStore + 'static,
    S: crate::SnapshotStore + 'static,
{
    let snapshot_at = snapshot_behind.and_then(|behind| events.checked_sub(behind));
    let mut account = repo.create_new(id);
    account.record(AccountEvent::Opened { owner: id.into() });
    for i in 1..events {
        account.record(AccountEvent::Deposited { amount: i % 100 });
        let version = account.version() + account.pending().len() as u64;
        if Some(version) == snapshot_at {
            repo.save(&mut account).await?;
            repo.create_snapshot(&account).await?;
        } else if account.pending().len() == 1000 {
            repo.save(&mut account).await?;
        }
    }
    repo.save(&mut account).await?;
    Ok(())
}
