//! The conformance suite on IndexedDB, in a real browser (headless Chromium through
//! wasm-bindgen-test-runner): `cargo test -p eventkv-wasm --target wasm32-unknown-unknown`.
#![cfg(target_arch = "wasm32")]

use std::cell::RefCell;

use eventkv::testkit::EngineFactory;
use eventkv_wasm::IndexedDbKv;
use wasm_bindgen_test::wasm_bindgen_test;

wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

/// Makes a new database per engine, named uniquely, and deletes them all when dropped.
#[derive(Default)]
struct IndexedDbFactory {
    names: RefCell<Vec<String>>,
}

impl EngineFactory for IndexedDbFactory {
    type Kv = IndexedDbKv;

    async fn create(&self) -> IndexedDbKv {
        let name = format!("eventkv-test-{}", eventkv::Uuid::new_v4());
        self.names.borrow_mut().push(name.clone());
        IndexedDbKv::open(&name).await.expect("open IndexedDB")
    }
}

impl Drop for IndexedDbFactory {
    fn drop(&mut self) {
        for name in self.names.take() {
            wasm_bindgen_futures::spawn_local(async move {
                let _ = IndexedDbKv::delete(&name).await;
            });
        }
    }
}

eventkv::conformance_tests!(wasm_bindgen_test, IndexedDbFactory::default());
