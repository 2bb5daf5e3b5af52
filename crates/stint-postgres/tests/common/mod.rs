//! What the tests of this crate share: one private PostgreSQL server per
//! test binary, and a fresh migrated database per test.

#![allow(dead_code)]

use std::sync::OnceLock;

use stint_postgres::PgStore;
use stint_testkit::postgres::PgServer;

/// The test binary's private server (stopped by its watchdog when the
/// binary exits).
pub fn server() -> &'static PgServer {
    static SERVER: OnceLock<PgServer> = OnceLock::new();
    SERVER.get_or_init(|| PgServer::start().expect("start a private PostgreSQL server"))
}

/// The URL of a fresh, empty database on the shared server.
pub fn fresh_url() -> String {
    server().fresh_database().expect("create a database")
}

/// A migrated store on a fresh database; `params` are URL query parameters.
pub async fn fresh_store(params: &str) -> (PgStore, String) {
    let url = fresh_url();
    let full = if params.is_empty() {
        url.clone()
    } else {
        format!("{url}?{params}")
    };
    let store = PgStore::open(&full).expect("open");
    stint_postgres::migrate(&store).await.expect("migrate");
    let store = PgStore::connect(&full).await.expect("connect");
    (store, url)
}

// ---- worker processes ----

#[allow(unused_imports)] // not every test file waits
pub use stint_testkit::worker::{wait_for, Worker};

/// Starts the test worker on `url` (see `stint_testkit::worker::Worker`).
pub fn start_worker(url: &str, concurrency: usize, env: &[(&str, &str)]) -> Worker {
    Worker::test_worker(&std::env::temp_dir(), url, concurrency, env)
}

/// Runs one SQL statement on `store`'s database; returns its rows.
pub async fn sql(store: &PgStore, statement: &str) -> Vec<tokio_postgres::Row> {
    let client = store.pool().get().await.expect("a connection");
    client
        .query(statement, &[])
        .await
        .unwrap_or_else(|e| panic!("{statement}: {e}"))
}

/// A small pseudo-random sequence (xorshift), seeded from the clock and
/// printed, so that a failing run can be repeated in thought.
pub struct Rng(u64);

impl Rng {
    pub fn from_clock() -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
            | 1;
        println!("random seed {seed}");
        Rng(seed)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}
