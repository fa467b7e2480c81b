//! The embedded databases this process holds open, so that opening one twice is named as
//! what it is (and not as "another process").

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

static HELD: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());
/// When each path was last released by this process.
static RELEASED: Mutex<BTreeMap<PathBuf, Instant>> = Mutex::new(BTreeMap::new());

/// Marks a database file or directory as open in this process while it lives.
#[derive(Debug)]
pub(crate) struct Held(PathBuf);

impl Held {
    /// Records that `path` (which exists: it was just opened) is open here.
    pub(crate) fn new(path: &Path) -> Self {
        let path = canonical(path);
        HELD.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(path.clone());
        Held(path)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        HELD.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.0);
        RELEASED
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(self.0.clone(), Instant::now());
    }
}

/// Whether this process holds `path` open.
pub(crate) fn held_here(path: &Path) -> bool {
    HELD.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .contains(&canonical(path))
}

fn canonical(path: &Path) -> PathBuf {
    path.canonicalize().unwrap_or_else(|_| path.to_path_buf())
}

#[cfg(feature = "sled")]
/// Whether this process released `path` within `within`: an engine's background threads
/// may still hold its lock for a moment after the last handle is dropped.
pub(crate) fn released_here_within(path: &Path, within: std::time::Duration) -> bool {
    RELEASED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&canonical(path))
        .is_some_and(|released| released.elapsed() < within)
}
