//! Fresh stores for every case, on every engine, removed afterwards.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context;
use eventkv::{Direction, DynKv, KeyRange, OrderedKv};
use eventkv_backends::redact;

use crate::cli::EngineName;

/// Makes fresh, empty stores by each engine's scratch URL: a new file or directory per
/// store in a temporary directory, a new store of its own on a server, removed by
/// [`Stores::cleanup`].
pub struct Stores {
    dir: tempfile::TempDir,
    servers: BTreeMap<&'static str, String>,
    run: String,
    next: AtomicUsize,
    on_servers: Mutex<Vec<String>>,
}

impl Stores {
    /// Stores under a new temporary directory and on `servers` (by engine name).
    pub fn new(servers: BTreeMap<&'static str, String>) -> anyhow::Result<Self> {
        Ok(Stores {
            dir: tempfile::tempdir().context("creating a temporary directory")?,
            servers,
            run: format!("bench_{}", std::process::id()),
            next: AtomicUsize::new(0),
            on_servers: Mutex::new(Vec::new()),
        })
    }

    /// The URL of a new, empty store of `engine`.
    pub fn url(&self, engine: EngineName) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let server = self.servers.get(engine.name());
        let url = engine
            .0
            .scratch_url(
                &self.dir.path().display().to_string(),
                server.map(String::as_str),
                &format!("{}_{n}", self.run),
            )
            .unwrap_or_else(|| format!("{}: not compiled in", engine.name()));
        if server.is_some() {
            self.on_servers
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(url.clone());
        }
        url
    }

    /// A new, empty store of `engine`.
    pub async fn fresh(&self, engine: EngineName) -> anyhow::Result<DynKv> {
        let url = self.url(engine);
        eventkv_backends::open(&url)
            .await
            .with_context(|| format!("opening {}", redact(&url)))
    }

    /// Checks that `engine`'s store opens within a few seconds (its server answers).
    pub async fn reachable(&self, engine: EngineName) -> anyhow::Result<()> {
        let url = self.url(engine);
        tokio::time::timeout(Duration::from_secs(5), eventkv_backends::open(&url))
            .await
            .map_err(|_| anyhow::anyhow!("{} did not answer within 5 s", redact(&url)))?
            .with_context(|| format!("{} is unreachable", redact(&url)))?;
        Ok(())
    }

    /// Removes the stores made on servers.
    pub async fn cleanup(&self) {
        let made = std::mem::take(
            &mut *self
                .on_servers
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for url in made {
            if let Err(error) = eventkv_backends::destroy(&url).await {
                eprintln!("could not remove {}: {error}", redact(&url));
            }
        }
    }
}

/// The bytes of every key and value `kv` holds.
pub async fn stored_bytes(kv: &DynKv) -> anyhow::Result<u64> {
    let mut range = KeyRange::all();
    let mut bytes = 0;
    loop {
        let page = kv.scan(&range, Direction::Forward, 4096).await?;
        bytes += page
            .iter()
            .map(|(key, value)| (key.len() + value.len()) as u64)
            .sum::<u64>();
        match page.last_key() {
            Some(last) if page.may_have_more(4096) => {
                range = range.after_page(last, Direction::Forward);
            }
            _ => return Ok(bytes),
        }
    }
}
