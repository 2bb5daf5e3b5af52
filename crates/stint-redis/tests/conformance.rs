//! The store conformance suite of stint-core, run against the Redis store
//! on a private redis-server: one logical database per case.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};

use stint_core::Store;
use stint_redis::RedisStore;
use stint_testkit::redis::RedisServer;

static SERVER: OnceLock<RedisServer> = OnceLock::new();
static NEXT_DB: AtomicU32 = AtomicU32::new(0);

async fn fresh() -> Arc<dyn Store> {
    let server = SERVER.get_or_init(|| {
        RedisServer::start_with(&["--databases", "256"]).expect("start a private redis-server")
    });
    let db = NEXT_DB.fetch_add(1, Ordering::SeqCst);
    assert!(db < 256, "more cases than databases");
    Arc::new(
        RedisStore::connect(&server.url_db(db))
            .await
            .expect("connect to the private redis-server"),
    )
}

stint_core::conformance_tests!(fresh);
