//! [`RedbKv`]: a redb file. A batch is one write transaction; its checks are read inside it.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use eventkv::raw::{BoxFuture, Mutation, first_failed_check};
use eventkv::{
    ContextError, DynKv, Direction, ErrorKind, KeyRange, KvError, KvPage, OrderedKv, WriteBatch,
};
use redb::{Database, DatabaseError, ReadableDatabase, ReadableTable, TableDefinition, TableError};

use crate::blocking;
use crate::engines::{EngineParts, Scratch, Target};
use crate::error::{OpenError, shared};
use crate::held::{Held, held_here};
use crate::url::{Location, Params, file_path, parse_url, remove_path};

const ENGINE: &str = "redb";
const TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("eventkv");

/// redb's error as a [`KvError`]: a full disk is [`KvError::StorageFull`]; a database an
/// earlier I/O error left unusable is closed (open it again); a damaged file is corrupt.
fn engine_error(error: impl Into<redb::Error>) -> KvError {
    let error: redb::Error = error.into();
    let kind = match &error {
        redb::Error::Io(io) if io.kind() == std::io::ErrorKind::StorageFull => {
            return KvError::storage_full(ENGINE, error);
        }
        redb::Error::PreviousIo => {
            return KvError::engine(
                ENGINE,
                ErrorKind::Closed,
                "an earlier I/O error (such as a full disk) left the database unusable until it is opened again: drop every handle of it and open it again",
            );
        }
        redb::Error::Corrupted(_) => ErrorKind::Corrupt,
        _ => ErrorKind::Unexpected,
    };
    KvError::engine(ENGINE, kind, error)
}

/// An engine on one redb file: embedded, one process at a time, durable commits by default.
#[derive(Clone)]
pub struct RedbKv {
    db: Arc<Database>,
    durability: RedbDurability,
    path: Arc<PathBuf>,
    _held: Arc<Held>,
}

impl std::fmt::Debug for RedbKv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbKv")
            .field("path", &self.path)
            .field("durability", &self.durability)
            .finish_non_exhaustive()
    }
}

impl RedbKv {
    /// Opens (or creates) the database file at `path`.
    pub async fn open(path: &Path, options: RedbOptions) -> Result<Self, OpenError> {
        let owned = path.to_path_buf();
        let cache_bytes = options.cache_mib.saturating_mul(1024 * 1024);
        let db = blocking::run(ENGINE, move || open_blocking(&owned, cache_bytes)).await?;
        let durability = options.durability;
        Ok(RedbKv {
            db: Arc::new(db),
            durability,
            path: Arc::new(path.to_path_buf()),
            _held: Arc::new(Held::new(path)),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn open_blocking(path: &Path, cache_bytes: usize) -> Result<Database, OpenError> {
    let db = Database::builder()
        .set_cache_size(cache_bytes)
        .create(path)
        .map_err(|error| match error {
            DatabaseError::DatabaseAlreadyOpen if held_here(path) => OpenError::OpenInThisProcess {
                engine: ENGINE,
                path: path.to_path_buf(),
            },
            DatabaseError::DatabaseAlreadyOpen => OpenError::Locked {
                engine: ENGINE,
                path: path.to_path_buf(),
                source: shared(error),
            },
            DatabaseError::Storage(redb::StorageError::Io(ref io))
                if matches!(
                    io.kind(),
                    std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::NotFound
                ) =>
            {
                let context = path.display().to_string();
                OpenError::engine(
                    ENGINE,
                    ErrorKind::PermissionDenied,
                    ContextError::new(context, error),
                )
            }
            other => OpenError::NotADatabase {
                engine: ENGINE,
                path: path.to_path_buf(),
                source: shared(other),
            },
        })?;
    let create_table = || -> Result<(), redb::Error> {
        let txn = db.begin_write()?;
        txn.open_table(TABLE)?;
        txn.commit()?;
        Ok(())
    };
    create_table().map_err(|error| OpenError::NotADatabase {
        engine: ENGINE,
        path: path.to_path_buf(),
        source: shared(error),
    })?;
    Ok(db)
}

/// One entry of a redb range: its key and value.
type RangeItem<'a> = (
    redb::AccessGuard<'a, &'static [u8]>,
    redb::AccessGuard<'a, &'static [u8]>,
);

fn scan_blocking(
    db: &Database,
    range: &KeyRange,
    direction: Direction,
    limit: usize,
) -> Result<KvPage, KvError> {
    let mut page = KvPage::default();
    if range.is_empty() || limit == 0 {
        return Ok(page);
    }
    let txn = db.begin_read().map_err(engine_error)?;
    let table = match txn.open_table(TABLE) {
        Ok(table) => table,
        Err(TableError::TableDoesNotExist(_)) => return Ok(page),
        Err(error) => return Err(engine_error(error)),
    };
    let entries = table
        .range::<&[u8]>(range.as_slices())
        .map_err(engine_error)?;
    let push = |page: &mut KvPage, (key, value): RangeItem<'_>| {
        page.push(key.value(), value.value());
    };
    let entries = entries.map(|entry| entry.map_err(engine_error));
    match direction {
        Direction::Forward => page.fill(entries, limit, push)?,
        Direction::Reverse => page.fill(entries.rev(), limit, push)?,
    }
    Ok(page)
}

fn write_blocking(
    db: &Database,
    durability: RedbDurability,
    batch: WriteBatch,
) -> Result<(), KvError> {
    let mut txn = db.begin_write().map_err(engine_error)?;
    let durability = match durability {
        RedbDurability::Immediate => redb::Durability::Immediate,
        RedbDurability::None => redb::Durability::None,
    };
    txn.set_durability(durability).map_err(engine_error)?;
    {
        let mut table = txn.open_table(TABLE).map_err(engine_error)?;
        let (checks, mutations) = batch.into_parts();
        let failed = first_failed_check(&checks, |key| {
            let value = table.get(key).map_err(engine_error)?;
            Ok::<_, KvError>(value.map(|guard| guard.value().to_vec()))
        })?;
        if let Some(key) = failed {
            // Dropping the transaction aborts it: nothing of the batch is applied.
            return Err(KvError::Conflict { key: key.clone() });
        }
        for mutation in &mutations {
            match mutation {
                Mutation::Put { key, value } => {
                    table.insert(&key[..], &value[..]).map_err(engine_error)?;
                }
                Mutation::Delete { key } => {
                    table.remove(&key[..]).map_err(engine_error)?;
                }
            }
        }
    }
    // A commit that failed while writing may have reached the file.
    txn.commit().map_err(|error| {
        engine_error(error).unconfirmed("the commit failed while it was being written")
    })
}

impl OrderedKv for RedbKv {
    async fn get(&self, key: &[u8]) -> Result<Option<Bytes>, KvError> {
        let db = Arc::clone(&self.db);
        let key = key.to_vec();
        blocking::run(ENGINE, move || {
            let txn = db.begin_read().map_err(engine_error)?;
            let table = match txn.open_table(TABLE) {
                Ok(table) => table,
                Err(TableError::TableDoesNotExist(_)) => return Ok(None),
                Err(error) => return Err(engine_error(error)),
            };
            let value = table.get(&key[..]).map_err(engine_error)?;
            Ok(value.map(|guard| Bytes::copy_from_slice(guard.value())))
        })
        .await
    }

    async fn scan(
        &self,
        range: &KeyRange,
        direction: Direction,
        limit: usize,
    ) -> Result<KvPage, KvError> {
        let db = Arc::clone(&self.db);
        let range = range.clone();
        blocking::run(ENGINE, move || scan_blocking(&db, &range, direction, limit)).await
    }

    async fn write(&self, batch: WriteBatch) -> Result<(), KvError> {
        let db = Arc::clone(&self.db);
        let durability = self.durability;
        blocking::run(ENGINE, move || write_blocking(&db, durability, batch)).await
    }

    /// One read transaction.
    async fn get_many<'a>(&'a self, keys: &'a [Bytes]) -> Result<KvPage, KvError> {
        let db = Arc::clone(&self.db);
        let keys = keys.to_vec();
        blocking::run(ENGINE, move || {
            let mut page = KvPage::default();
            let txn = db.begin_read().map_err(engine_error)?;
            let table = match txn.open_table(TABLE) {
                Ok(table) => table,
                Err(TableError::TableDoesNotExist(_)) => return Ok(page),
                Err(error) => return Err(engine_error(error)),
            };
            for key in &keys {
                if page.is_full() {
                    break;
                }
                if let Some(value) = table.get(&key[..]).map_err(engine_error)? {
                    page.push(key, value.value());
                }
            }
            Ok(page)
        })
        .await
    }
}

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

impl fmt::Display for RedbDurability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RedbDurability::Immediate => "immediate",
            RedbDurability::None => "none",
        })
    }
}

/// redb in the list of engines: `redb:PATH`, a file.
pub(crate) const ENTRY: EngineParts = EngineParts {
    forms: "redb:PATH[?durability=immediate|none&cache_mib=N]",
    parse: |text| Ok(Box::new(parse(text)?)),
    scratch: Scratch::Path {
        url: |directory, unique| format!("redb:{directory}/{unique}.redb"),
    },
    shared_by_processes: false,
};

/// `redb:PATH[?durability=immediate|none&cache_mib=N]`
#[derive(Debug, PartialEq, Eq)]
struct RedbUrl {
    path: PathBuf,
    options: RedbOptions,
}

fn parse(text: &str) -> Result<RedbUrl, String> {
    let url = &parse_url(text)?;
    let params = Params::of(url);
    params.only(&["durability", "cache_mib"])?;
    let durability = match params.get("durability") {
        None | Some("immediate") => RedbDurability::Immediate,
        Some("none") => RedbDurability::None,
        Some(other) => {
            return Err(format!(
                "durability must be immediate or none, not {other:?}"
            ));
        }
    };
    let cache_mib = match params.get("cache_mib") {
        None => RedbOptions::DEFAULT_CACHE_MIB,
        Some(mib) => mib.parse().ok().filter(|&mib| mib > 0).ok_or_else(|| {
            format!("cache_mib must be a whole number of MiB above 0, not {mib:?}")
        })?,
    };
    Ok(RedbUrl {
        path: file_path(url)?,
        options: RedbOptions {
            durability,
            cache_mib,
        },
    })
}

impl Target for RedbUrl {
    fn location(&self) -> Location {
        Location::Path(self.path.clone())
    }

    fn open(&self, _existing: bool) -> BoxFuture<'_, Result<DynKv, OpenError>> {
        Box::pin(async { Ok(DynKv::new(RedbKv::open(&self.path, self.options).await?)) })
    }

    fn destroy(&self) -> BoxFuture<'_, Result<(), OpenError>> {
        Box::pin(async { remove_path(ENGINE, &self.path) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_with_their_options() {
        assert_eq!(
            parse("redb:data.redb?durability=none"),
            Ok(RedbUrl {
                path: "data.redb".into(),
                options: RedbOptions {
                    durability: RedbDurability::None,
                    cache_mib: RedbOptions::DEFAULT_CACHE_MIB
                }
            })
        );
        assert_eq!(
            parse("redb:/data/what%3F%20now.redb"),
            Ok(RedbUrl {
                path: "/data/what? now.redb".into(),
                options: RedbOptions::default()
            })
        );
        crate::url::assert_refused(parse, &[
            ("redb:", "the path is missing"),
            ("redb:x?durability=sometimes", "durability must be immediate or none"),
            ("redb:x?cache_mib=0", "cache_mib must be a whole number"),
            ("redb://host/x", "a file path has no host"),
        ]);
    }
}
