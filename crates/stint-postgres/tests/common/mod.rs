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

use std::ops::{Deref, DerefMut};
use std::process::Command;

#[allow(unused_imports)] // not every test file waits
pub use stint_testkit::worker::{wait_for, Worker};

/// A process of the test worker (`stint-test-worker`, built by
/// `stint_testkit::worker::test_worker_bin`); see
/// `stint_testkit::worker::Worker`.
pub struct WorkerProc(Worker);

impl WorkerProc {
    pub fn start(url: &str, concurrency: usize, env: &[(&str, &str)]) -> Self {
        let mut cmd = Command::new(stint_testkit::worker::test_worker_bin());
        cmd.arg(url).arg(concurrency.to_string());
        for (k, v) in env {
            cmd.env(k, v);
        }
        WorkerProc(Worker::spawn(cmd, &std::env::temp_dir()))
    }
}

impl Deref for WorkerProc {
    type Target = Worker;
    fn deref(&self) -> &Worker {
        &self.0
    }
}

impl DerefMut for WorkerProc {
    fn deref_mut(&mut self) -> &mut Worker {
        &mut self.0
    }
}

impl Drop for WorkerProc {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_file(&self.0.log);
        }
    }
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
