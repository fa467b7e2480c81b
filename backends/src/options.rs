//! Engine options, named in URLs and in code.

use std::fmt;

/// When a redb commit is durable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RedbDurability {
    /// Durable when the commit returns (fsync). The default.
    #[default]
    Immediate,
    /// Not persisted until a later durable commit: fast, loses recent commits on a crash.
    None,
}

/// How a redb database is opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RedbOptions {
    /// When commits are durable.
    pub durability: RedbDurability,
    /// redb's page cache, in MiB (`?cache_mib=`). redb's own default is 1 GiB, which a
    /// paged load of a large file fills; eventkv's default is [`Self::DEFAULT_CACHE_MIB`].
    pub cache_mib: usize,
}

impl RedbOptions {
    /// The default cache: enough for the working set of appends and snapshot loads.
    pub const DEFAULT_CACHE_MIB: usize = 64;
}

impl Default for RedbOptions {
    fn default() -> Self {
        RedbOptions {
            durability: RedbDurability::default(),
            cache_mib: Self::DEFAULT_CACHE_MIB,
        }
    }
}

/// SQLite's `synchronous` pragma, in WAL mode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SqliteSynchronous {
    /// fsync on every commit: a committed batch survives power loss. The default.
    #[default]
    Full,
    /// fsync at checkpoints only: consistent after power loss, but the last commits may
    /// be lost. Never loses data on a process crash.
    Normal,
}

/// Where in PostgreSQL the engine keeps its table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PostgresOptions {
    /// The schema (created if missing). Default `public`.
    pub schema: String,
    /// The table (created if missing). Default `eventkv`.
    pub table: String,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        PostgresOptions {
            schema: "public".into(),
            table: "eventkv".into(),
        }
    }
}

impl PostgresOptions {
    /// Checks that `name` can be a schema or table name: letters, digits and `_`, not
    /// starting with a digit, at most 63 bytes.
    pub fn validate_identifier(name: &str) -> Result<(), String> {
        let valid = !name.is_empty()
            && name.len() <= 63
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            && !name.as_bytes()[0].is_ascii_digit();
        if valid {
            Ok(())
        } else {
            Err(format!(
                "{name:?} is not a valid schema or table name (letters, digits and _, not starting with a digit, at most 63 bytes)"
            ))
        }
    }
}

impl fmt::Display for RedbDurability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RedbDurability::Immediate => "immediate",
            RedbDurability::None => "none",
        })
    }
}
