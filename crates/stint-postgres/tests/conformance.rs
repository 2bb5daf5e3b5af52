//! The store conformance suite of stint-core, run against the PostgreSQL
//! store (a fresh database on a private server per case).

mod common;

use std::sync::Arc;

use stint_core::Store;

stint_core::conformance_tests!(|| async {
    // A short idle wait: the cases that assert an empty fetch need not wait
    // the production half second each time.
    let (store, _) = common::fresh_store("idle_wait_ms=20").await;
    Arc::new(store) as Arc<dyn Store>
});
