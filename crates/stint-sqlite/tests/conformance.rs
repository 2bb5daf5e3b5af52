//! The store conformance suite of stint-core, run against the SQLite store.

use std::sync::Arc;

use stint_core::Store;
use stint_sqlite::SqliteStore;

stint_core::conformance_tests!(|| async {
    Arc::new(SqliteStore::open_temp().expect("open a temporary SQLite store")) as Arc<dyn Store>
});
