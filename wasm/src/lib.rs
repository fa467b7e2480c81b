//! eventkv in the browser.
//!
//! - `IndexedDbKv`, an IndexedDB engine (through `idb`) for the ordered-KV trait, so the
//!   event store, snapshot store and repository of `eventkv` run unchanged in a page or a
//!   worker;
//! - `EventStore`, a JavaScript API (wasm-bindgen) of JSON events and snapshots for apps
//!   that keep their reducer in JavaScript, with TypeScript types; `wasm-pack build
//!   --target web` makes it an npm package. See `docs/browser.md`.
//!
//! Built for `wasm32-unknown-unknown`; on other targets this crate is empty.

// wasm-bindgen exports take their JavaScript arguments by value; a method path in place of
// a closure over a borrowed event is not general over the page's lifetime (rust#70263).
#![allow(
    clippy::needless_pass_by_value,
    clippy::redundant_closure_for_method_calls
)]

#[cfg(target_arch = "wasm32")]
mod indexeddb;
#[cfg(target_arch = "wasm32")]
mod js_api;
#[cfg(target_arch = "wasm32")]
mod js_error;
#[cfg(target_arch = "wasm32")]
mod js_follow;
#[cfg(target_arch = "wasm32")]
mod js_input;
#[cfg(target_arch = "wasm32")]
mod js_sync;
#[cfg(target_arch = "wasm32")]
mod js_types;

#[cfg(target_arch = "wasm32")]
pub use indexeddb::{Durability, IndexedDbKv, OpenError};
#[cfg(target_arch = "wasm32")]
pub use js_api::JsEventStore;
#[cfg(target_arch = "wasm32")]
pub use js_sync::JsSync;
