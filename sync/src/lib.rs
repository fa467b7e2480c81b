//! eventkv sync: browsers and other replicas append offline, a server orders everything,
//! every replica converges.
//!
//! [`protocol`] is the wire format (HTTP + JSON, versioned; `docs/sync.md` specifies
//! it): a **push** sends appends, each answered on its own (`applied`, `duplicate`,
//! `conflict` with the events the client missed, `skipped`, `rejected`); a **pull** reads
//! the server's global log after a position, filtered to what the caller may read, and
//! can wait for new events (long poll).
//!
//! [`server`] (feature `server`, on by default) serves it on any engine with axum:
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//!
//! use eventkv::{KvEventStore, MemoryKv};
//! use eventkv_sync::server::SyncServer;
//!
//! let server = SyncServer::new(KvEventStore::new(Arc::new(MemoryKv::new())));
//! let app = axum::Router::new().nest("/sync", server.router());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:7411").await?;
//! axum::serve(listener, app).await?;
//! # Ok(())
//! # }
//! ```

pub mod protocol;
#[cfg(feature = "server")]
pub mod server;
