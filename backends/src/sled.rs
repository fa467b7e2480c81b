//! [`SledKv`]: a sled database. A batch is one sled transaction, flushed before it returns.
//!
//! sled makes a transaction visible before it is durable: when its log write or the flush
//! that follows fails (a full disk, an I/O error), the batch may be applied (and may or may
//! not survive a crash), so the error is [`KvError::Ambiguous`], never "nothing landed".

use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use eventkv::raw::{BoxFuture, Mutation, first_failed_check};
use eventkv::{
    ContextError, DynKv, Direction, ErrorKind, KeyRange, KvError, KvPage, OrderedKv, WriteBatch,
};
use sled::transaction::{ConflictableTransactionError, TransactionError};

use crate::blocking;
use crate::engines::{EngineParts, Scratch, Target};
use crate::error::{OpenError, shared};
use crate::held::{Held, held_here, released_here_within};
use crate::url::{Location, Params, file_path, parse_url, remove_path};

const ENGINE: &str = "sled";

/// sled's error as a [`KvError`]: a full disk is [`KvError::StorageFull`]; a damaged
/// directory is corrupt. After an I/O error sled refuses every later call of the process
/// with it, so none is retryable.
fn engine_error(error: sled::Error) -> KvError {
    let kind = match &error {
        sled::Error::Io(io) if io.kind() == std::io::ErrorKind::StorageFull => {
            return KvError::storage_full(ENGINE, error);
        }
        sled::Error::Corruption { .. } => ErrorKind::Corrupt,
        sled::Error::Unsupported(_) => ErrorKind::Unsupported,
        _ => ErrorKind::Unexpected,
    };
    KvError::engine(ENGINE, kind, error)
}

/// An engine on one sled directory: embedded, one process at a time. Every batch is
/// flushed to disk before `write` returns.
#[derive(Clone)]
pub struct SledKv {
    tree: sled::Tree,
    path: Arc<PathBuf>,
    _held: Arc<Held>,
}

impl std::fmt::Debug for SledKv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledKv")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SledKv {
    /// Opens (or creates) the sled database in directory `path`.
    pub async fn open(path: &Path) -> Result<Self, OpenError> {
        let owned = path.to_path_buf();
        let db = blocking::run(ENGINE, move || open_blocking(&owned)).await?;
        let tree = db
            .open_tree("eventkv")
            .map_err(|error| open_error(path, error))?;
        Ok(SledKv {
            tree,
            path: Arc::new(path.to_path_buf()),
            _held: Arc::new(Held::new(path)),
        })
    }

    /// The database directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Opens the database; when this process dropped its last handle a moment ago, waits
/// (up to [`LINGER`]) for sled's background threads to let go of the directory's lock.
fn open_blocking(path: &Path) -> Result<sled::Db, OpenError> {
    let started = Instant::now();
    loop {
        // Every batch is flushed before it returns: no periodic flusher thread, which
        // would also keep the directory locked for a while after the last handle.
        let opened = sled::Config::new().path(path).flush_every_ms(None).open();
        match opened {
            Err(error)
                if is_lock_error(&error)
                    && !held_here(path)
                    && released_here_within(path, LINGER)
                    && started.elapsed() < LINGER =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            other => return other.map_err(|error| open_error(path, error)),
        }
    }
}

/// How long sled may keep a directory locked after this process dropped it.
const LINGER: Duration = Duration::from_secs(3);

fn is_lock_error(error: &sled::Error) -> bool {
    matches!(error, sled::Error::Io(_)) && error.to_string().contains("could not acquire lock")
}

fn open_error(path: &Path, error: sled::Error) -> OpenError {
    match error {
        _ if is_lock_error(&error) && held_here(path) => OpenError::OpenInThisProcess {
            engine: ENGINE,
            path: path.to_path_buf(),
        },
        _ if is_lock_error(&error) => OpenError::Locked {
            engine: ENGINE,
            path: path.to_path_buf(),
            source: shared(error),
        },
        sled::Error::Io(ref io) if io.kind() == std::io::ErrorKind::PermissionDenied => {
            let context = path.display().to_string();
            OpenError::engine(
                ENGINE,
                ErrorKind::PermissionDenied,
                ContextError::new(context, error),
            )
        }
        _ => OpenError::NotADatabase {
            engine: ENGINE,
            path: path.to_path_buf(),
            source: shared(error),
        },
    }
}

fn scan_blocking(
    tree: &sled::Tree,
    range: &KeyRange,
    direction: Direction,
    limit: usize,
) -> Result<KvPage, KvError> {
    let mut page = KvPage::default();
    if range.is_empty() || limit == 0 {
        return Ok(page);
    }
    let bounds: (Bound<Bytes>, Bound<Bytes>) = (range.start.clone(), range.end.clone());
    let entries = tree.range::<Bytes, _>(bounds);
    let push = |page: &mut KvPage, (key, value): (sled::IVec, sled::IVec)| {
        page.push(&key, &value);
    };
    let entries = entries.map(|entry| entry.map_err(engine_error));
    match direction {
        Direction::Forward => page.fill(entries, limit, push)?,
        Direction::Reverse => page.fill(entries.rev(), limit, push)?,
    }
    Ok(page)
}

fn write_blocking(tree: &sled::Tree, batch: &WriteBatch) -> Result<(), KvError> {
    // sled may run the closure again when transactions collide: it only reads and stages.
    let result = tree.transaction(|tx| {
        if let Some(key) = first_failed_check(batch.checks(), |key| tx.get(key))? {
            return Err(ConflictableTransactionError::Abort(key.clone()));
        }
        for mutation in batch.mutations() {
            match mutation {
                Mutation::Put { key, value } => {
                    tx.insert(&key[..], &value[..])?;
                }
                Mutation::Delete { key } => {
                    tx.remove(&key[..])?;
                }
            }
        }
        Ok(())
    });
    match result {
        Ok(()) => {}
        Err(TransactionError::Abort(key)) => return Err(KvError::Conflict { key }),
        // sled applies a transaction to its in-memory tree before its log write can
        // fail: after a storage error the batch may be visible (seen on a full disk).
        Err(TransactionError::Storage(error)) => {
            return Err(KvError::ambiguous(
                ENGINE,
                "sled failed while committing the transaction",
                error,
            ));
        }
    }
    // The transaction is applied and visible: a failed flush leaves its durability
    // unknown, which the caller must not read as "nothing landed".
    tree.flush().map_err(|error| {
        KvError::ambiguous(
            ENGINE,
            "the batch is applied but flushing it to disk failed, so its durability is unknown",
            error,
        )
    })?;
    Ok(())
}

impl OrderedKv for SledKv {
    async fn get(&self, key: &[u8]) -> Result<Option<Bytes>, KvError> {
        let tree = self.tree.clone();
        let key = key.to_vec();
        blocking::run(ENGINE, move || {
            let value = tree.get(&key).map_err(engine_error)?;
            Ok(value.map(|value| Bytes::copy_from_slice(&value)))
        })
        .await
    }

    async fn scan(
        &self,
        range: &KeyRange,
        direction: Direction,
        limit: usize,
    ) -> Result<KvPage, KvError> {
        let tree = self.tree.clone();
        let range = range.clone();
        blocking::run(ENGINE, move || {
            scan_blocking(&tree, &range, direction, limit)
        })
        .await
    }

    async fn write(&self, batch: WriteBatch) -> Result<(), KvError> {
        let tree = self.tree.clone();
        blocking::run(ENGINE, move || write_blocking(&tree, &batch)).await
    }

    async fn get_many<'a>(&'a self, keys: &'a [Bytes]) -> Result<KvPage, KvError> {
        let tree = self.tree.clone();
        let keys = keys.to_vec();
        blocking::run(ENGINE, move || {
            let mut page = KvPage::default();
            for key in &keys {
                if page.is_full() {
                    break;
                }
                if let Some(value) = tree.get(key).map_err(engine_error)? {
                    page.push(key, &value);
                }
            }
            Ok(page)
        })
        .await
    }
}

/// sled in the list of engines: `sled:PATH`, a directory.
pub(crate) const ENTRY: EngineParts = EngineParts {
    forms: "sled:PATH",
    parse: |text| {
        let url = &parse_url(text)?;
        Params::of(url).only(&[])?;
        Ok(Box::new(SledUrl {
            path: file_path(url)?,
        }))
    },
    scratch: Scratch::Path {
        url: |directory, unique| format!("sled:{directory}/{unique}.sled"),
    },
    shared_by_processes: false,
};

/// `sled:PATH`
#[derive(Debug, PartialEq, Eq)]
struct SledUrl {
    path: PathBuf,
}

impl Target for SledUrl {
    fn location(&self) -> Location {
        Location::Path(self.path.clone())
    }

    fn open(&self, _existing: bool) -> BoxFuture<'_, Result<DynKv, OpenError>> {
        Box::pin(async { Ok(DynKv::new(SledKv::open(&self.path).await?)) })
    }

    fn destroy(&self) -> BoxFuture<'_, Result<(), OpenError>> {
        Box::pin(async { remove_path(ENGINE, &self.path) })
    }
}

#[cfg(test)]
mod url_tests {
    use super::*;

    #[test]
    fn urls_name_a_directory() {
        let parsed = |text: &str| crate::EngineUrl::parse(text).map(|url| url.location());
        assert_eq!(
            parsed("sled:relative/dir").ok(),
            Some(Location::Path("relative/dir".into()))
        );
        for (url, needle) in [
            ("sled:x?cache=1", "unknown parameter \"cache\""),
            ("sled://host/x", "a file path has no host"),
        ] {
            let message = parsed(url).expect_err(url).to_string();
            assert!(message.contains(needle), "{url}: {message}");
            assert!(message.contains("sled:PATH"), "{url}: lists the forms: {message}");
        }
    }
}
