//! Real worker processes on a temporary SQLite store, and ways to wait for
//! what the store says.

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use stint::sqlite::SqliteStore;
use stint::{Jid, JobDetail, Store};

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

/// A worker process (the `stint-test-worker` binary).
pub struct WorkerProc {
    child: Child,
    pub log: PathBuf,
}

impl WorkerProc {
    /// Starts `bin STORE_URL CONCURRENCY` with extra environment `env`;
    /// its stderr goes to a log file next to the store.
    pub fn start(bin: &str, store: &TestStore, concurrency: usize, env: &[(&str, &str)]) -> Self {
        let log = store
            .dir
            .path()
            .join(format!("worker-{}.log", rand_suffix()));
        let file = std::fs::File::create(&log).expect("log file");
        let mut cmd = Command::new(bin);
        cmd.arg(&store.url)
            .arg(concurrency.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start worker");
        WorkerProc { child, log }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, sig: i32) {
        let r = unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
        assert_eq!(r, 0, "signal {sig} to worker {}", self.child.id());
    }

    /// Waits for the process to exit, up to `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for WorkerProc {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn rand_suffix() -> String {
    let n = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{n:x}")
}

/// Polls `check` every 50 ms until it returns `Some`, or panics after
/// `timeout` saying what did not happen.
pub async fn wait_for<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
