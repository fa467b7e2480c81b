//! `eventkv serve`: the sync protocol over HTTP, on a store of any engine.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;

use axum::http::HeaderValue;
use eventkv::{ErrorKind, KvEventStore};
use eventkv_sync::server::{SyncServer, Tokens};

use crate::CliError;

/// How `eventkv serve` serves a store.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// The store's URL.
    pub url: String,
    /// The address to listen on (port 0: any free port).
    pub listen: SocketAddr,
    /// The token file; without one, anyone who reaches the server may read and write
    /// everything, so it listens on loopback only.
    pub auth: Option<PathBuf>,
    /// Origins whose pages may call the server from a browser (CORS).
    pub allowed_origins: Vec<String>,
}

/// Serves the store until `shutdown` completes, then stops gracefully: pulls waiting for
/// events are answered at once, requests in flight finish. `listening` is told the
/// address once the server accepts connections.
pub async fn serve(
    options: &ServeOptions,
    listening: impl FnOnce(SocketAddr),
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), CliError> {
    if options.auth.is_none() && !options.listen.ip().is_loopback() {
        return Err(CliError::usage(format!(
            "{} is not a loopback address: without --auth anyone who reaches the server may read and write the whole store; give --auth FILE or listen on 127.0.0.1",
            options.listen
        )));
    }
    let origins = options
        .allowed_origins
        .iter()
        .map(|origin| {
            HeaderValue::from_str(origin).map_err(|_| {
                CliError::usage(format!("--allow-origin {origin:?} is not a valid origin"))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let kv = crate::open(&options.url).await?;
    let mut server = SyncServer::new(KvEventStore::new(kv)).with_allowed_origins(origins);
    if let Some(path) = &options.auth {
        let tokens = Tokens::load(path).map_err(CliError::usage)?;
        tracing::info!(tokens = tokens.len(), file = %path.display(), "bearer tokens loaded");
        server = server.with_auth(tokens);
    } else {
        tracing::warn!(
            "no --auth: every request may read and write everything; listening on loopback only"
        );
    }
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .map_err(|error| {
            CliError::failed(
                ErrorKind::Unavailable,
                format!("cannot listen on {}: {error}", options.listen),
            )
        })?;
    let address = listener.local_addr()?;
    tracing::info!(%address, store = %eventkv_backends::redact(&options.url), "serving the sync protocol");
    listening(address);
    let stop_waiting = server.waiting_stopper();
    axum::serve(listener, server.router())
        .with_graceful_shutdown(async move {
            shutdown.await;
            tracing::info!("shutting down: answering waiting pulls, finishing requests");
            stop_waiting();
        })
        .await?;
    Ok(())
}
