//! eventkv in the browser: [`IndexedDbKv`], an IndexedDB engine (through rexie) for the
//! ordered-KV trait, so the event store, snapshot store and repository of `eventkv` run
//! unchanged in a page or a worker.
//!
//! Built for `wasm32-unknown-unknown`; on other targets this crate is empty.

#[cfg(target_arch = "wasm32")]
mod indexeddb;

#[cfg(target_arch = "wasm32")]
pub use indexeddb::IndexedDbKv;
