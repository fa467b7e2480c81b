//! Opening stores by URL, and telling whether two URLs name the same one.

use std::path::{Path, PathBuf};

use eventkv::DynKv;
use eventkv_backends::{EngineUrl, Location};

use crate::CliError;

/// Opens the store `url` names, creating it if it does not exist (a destination).
pub async fn open(url: &str) -> Result<DynKv, CliError> {
    Ok(eventkv_backends::open(url).await?)
}

/// Opens a store that must already exist: a file, directory or PostgreSQL table that is
/// not there is named, rather than created empty (a mistyped source would read as an
/// empty store).
pub async fn open_existing(url: &str) -> Result<DynKv, CliError> {
    Ok(eventkv_backends::open_existing(url).await?)
}

/// Opens a store that a command writes to and that must outlive it: `memory:` (gone when
/// the command exits) is refused.
pub async fn open_lasting(url: &str) -> Result<DynKv, CliError> {
    if identity(url)?.is_none() {
        return Err(CliError::usage(format!(
            "{url} lives only as long as this command: write to a store that lasts (a file or a server)"
        )));
    }
    open(url).await
}

/// Refuses `source` and `destination` when they name the same store.
pub fn check_distinct(source: &str, destination: &str) -> Result<(), CliError> {
    match (identity(source)?, identity(destination)?) {
        (Some(a), Some(b)) if a == b => Err(CliError::usage(format!(
            "source and destination are the same store ({a}): name another destination"
        ))),
        _ => Ok(()),
    }
}

/// Where a URL's data lives (`None`: a new in-memory store, never the same as another).
fn identity(url: &str) -> Result<Option<String>, CliError> {
    Ok(match EngineUrl::parse(url)?.location() {
        Location::Memory => None,
        Location::Path(path) => Some(format!("the file {}", canonical(&path).display())),
        other => Some(other.to_string()),
    })
}

/// `path` made absolute with links resolved, also when the file does not exist yet.
fn canonical(path: &Path) -> PathBuf {
    if let Ok(path) = path.canonicalize() {
        return path;
    }
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) => {
            let parent = if parent.as_os_str().is_empty() {
                Path::new(".")
            } else {
                parent
            };
            parent
                .canonicalize()
                .map_or_else(|_| path.to_path_buf(), |parent| parent.join(name))
        }
        _ => path.to_path_buf(),
    }
}
