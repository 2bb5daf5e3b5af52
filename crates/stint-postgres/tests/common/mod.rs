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

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The worker binary of this crate's end-to-end tests.
pub const WORKER_BIN: &str = env!("CARGO_BIN_EXE_stint-pg-test-worker");

/// A `stint-pg-test-worker` process; its stderr goes to a log file.
pub struct WorkerProc {
    child: Child,
    pub log: PathBuf,
}

impl WorkerProc {
    pub fn start(url: &str, concurrency: usize, env: &[(&str, &str)]) -> Self {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let log =
            std::env::temp_dir().join(format!("stint-pg-worker-{}-{n}.log", std::process::id()));
        let file = std::fs::File::create(&log).expect("log file");
        let mut cmd = Command::new(WORKER_BIN);
        cmd.arg(url)
            .arg(concurrency.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file);
        for (k, v) in env {
            cmd.env(k, v);
        }
        WorkerProc {
            child: cmd.spawn().expect("start worker"),
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, sig: i32) {
        let r = unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
        assert_eq!(r, 0, "signal {sig} to worker {}", self.child.id());
    }

    /// SIGKILL, and waits until the process is gone.
    pub fn kill9(&mut self) {
        self.signal(libc::SIGKILL);
        let _ = self.child.wait();
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
        if !std::thread::panicking() {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

/// Polls `check` every 20 ms until it returns `Some`, or panics after
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
        tokio::time::sleep(Duration::from_millis(20)).await;
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
