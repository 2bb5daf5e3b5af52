//! Real worker processes on a temporary SQLite store, and ways to wait for
//! what the store says.

use std::ops::{Deref, DerefMut};
use std::process::Command;
use std::sync::Arc;

use stint::sqlite::SqliteStore;
use stint::{Jid, JobDetail, Store};
pub use stint_testkit::worker::{wait_for, Worker};

/// A store in a temporary directory, with the test tables.
pub struct TestStore {
    pub dir: tempfile::TempDir,
    pub db: String,
    pub url: String,
    pub store: Arc<dyn Store>,
}

impl TestStore {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = dir.path().join("stint.db").to_string_lossy().into_owned();
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&db).expect("open store"));
        crate::jobs::init_tables(&db);
        crate::split_jobs::init_tables(&db);
        let url = format!("sqlite://{db}");
        TestStore {
            dir,
            db,
            url,
            store,
        }
    }

    pub async fn job(&self, jid: &Jid) -> JobDetail {
        self.store
            .job(jid)
            .await
            .expect("read job")
            .expect("job exists")
    }

    /// (stint, cursor at start, pid) of every stint of `jid`, in order.
    pub fn starts(&self, jid: &Jid) -> Vec<(u32, Option<u64>, u32)> {
        let conn = stint::sqlite::open_connection(&self.db).unwrap();
        let mut stmt = conn
            .prepare("SELECT stint, cursor, pid FROM e2e_starts WHERE jid = ?1 ORDER BY rowid")
            .unwrap();
        stmt.query_map([jid.as_str()], |r| {
            Ok((
                r.get(0)?,
                r.get::<_, Option<i64>>(1)?.map(|c| c as u64),
                r.get(2)?,
            ))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
    }
}

impl Default for TestStore {
    fn default() -> Self {
        Self::new()
    }
}

/// A worker process (the `stint-test-worker` binary); see
/// `stint_testkit::worker::Worker` for what it can do.
pub struct WorkerProc(Worker);

impl WorkerProc {
    /// Starts `bin STORE_URL CONCURRENCY` with extra environment `env`;
    /// its stderr goes to a log file next to the store.
    pub fn start(bin: &str, store: &TestStore, concurrency: usize, env: &[(&str, &str)]) -> Self {
        let mut cmd = Command::new(bin);
        cmd.arg(&store.url).arg(concurrency.to_string());
        for (k, v) in env {
            cmd.env(k, v);
        }
        WorkerProc(Worker::spawn(cmd, store.dir.path()))
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
