//! Real worker processes on a test store — SQLite, PostgreSQL or Redis —
//! and ways to wait for what the store says.
//!
//! A test written once as `async fn name(ts: TestStore)` runs on every
//! store with `per_store!`: the SQLite store lives in a temporary
//! directory; the PostgreSQL and Redis stores are a fresh database (a fresh
//! Redis database number) on one private server per test binary
//! (`stint_testkit`), stopped by its watchdog when the binary exits. The
//! test jobs record what they did in a SQLite file in the test's directory
//! whatever the store (`TestStore::db`).

use std::ops::{Deref, DerefMut};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};

use stint::sqlite::SqliteStore;
use stint::{Jid, JobDetail, Store};
pub use stint_testkit::worker::{wait_for, Worker};
use stint_testkit::{postgres::PgServer, redis::RedisServer};

/// Which store a test runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
    Redis,
}

impl Backend {
    /// Whether a job can commit its own writes with its checkpoint
    /// (`checkpoint_tx` on SQLite, `checkpoint_pg` on PostgreSQL).
    pub fn transactional_checkpoints(self) -> bool {
        matches!(self, Backend::Sqlite | Backend::Postgres)
    }
}

/// Redis logical databases of the private server: one per test.
const REDIS_DATABASES: u32 = 1000;

/// The test binary's private PostgreSQL server.
pub fn pg_server() -> &'static PgServer {
    static SERVER: OnceLock<PgServer> = OnceLock::new();
    SERVER.get_or_init(|| PgServer::start().expect("start a private PostgreSQL server"))
}

/// The test binary's private redis-server.
pub fn redis_server() -> &'static RedisServer {
    static SERVER: OnceLock<RedisServer> = OnceLock::new();
    SERVER.get_or_init(|| {
        RedisServer::start_with(&["--databases", &REDIS_DATABASES.to_string()])
            .expect("start a private redis-server")
    })
}

/// A fresh store for one test, and the SQLite file its jobs record in.
pub struct TestStore {
    pub backend: Backend,
    pub dir: tempfile::TempDir,
    /// The SQLite file the test jobs record in: the store's own file on
    /// SQLite, a file beside the store otherwise.
    pub db: String,
    pub url: String,
    pub store: Arc<dyn Store>,
}

impl TestStore {
    /// A SQLite store in a temporary directory.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = dir.path().join("stint.db").to_string_lossy().into_owned();
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&db).expect("open store"));
        init_records(&db);
        let url = format!("sqlite://{db}");
        TestStore {
            backend: Backend::Sqlite,
            dir,
            db,
            url,
            store,
        }
    }

    /// A fresh store of `backend`.
    pub async fn open(backend: Backend) -> Self {
        if backend == Backend::Sqlite {
            return Self::new();
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let db = dir.path().join("records.db").to_string_lossy().into_owned();
        init_records(&db);
        let url = match backend {
            Backend::Sqlite => unreachable!(),
            Backend::Postgres => {
                let url = tokio::task::block_in_place(|| {
                    pg_server().fresh_database().expect("create a database")
                });
                let store = stint::postgres::PgStore::open(&url).expect("open");
                stint::postgres::migrate(&store).await.expect("migrate");
                let pg = pg_client(&url).await;
                pg.batch_execute(crate::jobs::PG_ROWS_TABLE)
                    .await
                    .expect("create e2e_rows");
                url
            }
            Backend::Redis => {
                static NEXT: AtomicU32 = AtomicU32::new(1);
                let n = NEXT.fetch_add(1, Ordering::Relaxed);
                assert!(n < REDIS_DATABASES, "out of Redis databases");
                let server = tokio::task::block_in_place(redis_server);
                server.url_db(n)
            }
        };
        let store = stint::connect(&url).await.expect("connect the store");
        TestStore {
            backend,
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

    /// One value from the records file: `sql` with `?1` bound to `jid`.
    pub fn query<T: rusqlite::types::FromSql>(&self, sql: &str, jid: &Jid) -> T {
        stint::sqlite::open_connection(&self.db)
            .unwrap()
            .query_row(sql, [jid.as_str()], |r| r.get(0))
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    /// An `InsertRows` job writing where this store allows the rows and the
    /// checkpoint in one transaction: the store's own SQLite file, or its
    /// PostgreSQL database; the records file on Redis.
    pub fn insert_rows(
        &self,
        n: u64,
        batch: u64,
        sleep_ms: u64,
        transactional: bool,
    ) -> crate::jobs::InsertRows {
        crate::jobs::InsertRows {
            n,
            batch,
            sleep_ms,
            db: self.db.clone(),
            transactional,
            pg: (self.backend == Backend::Postgres).then(|| self.url.clone()),
        }
    }

    /// (rows, distinct numbers, smallest, largest) `InsertRows` job `jid`
    /// wrote (see `insert_rows`).
    pub async fn row_counts(&self, jid: &Jid) -> (u64, u64, i64, i64) {
        const SQL: &str = "SELECT COUNT(*), COUNT(DISTINCT n), COALESCE(MIN(n), -1), \
                           COALESCE(MAX(n), -1) FROM e2e_rows WHERE jid = ";
        if self.backend == Backend::Postgres {
            let pg = pg_client(&self.url).await;
            let r = pg
                .query_one(&format!("{SQL}$1"), &[&jid.as_str()])
                .await
                .expect("count e2e_rows");
            return (
                r.get::<_, i64>(0) as u64,
                r.get::<_, i64>(1) as u64,
                r.get(2),
                r.get(3),
            );
        }
        let conn = stint::sqlite::open_connection(&self.db).unwrap();
        conn.query_row(&format!("{SQL}?1"), [jid.as_str()], |r| {
            Ok((
                r.get::<_, i64>(0)? as u64,
                r.get::<_, i64>(1)? as u64,
                r.get(2)?,
                r.get(3)?,
            ))
        })
        .unwrap()
    }
}

impl Default for TestStore {
    fn default() -> Self {
        Self::new()
    }
}

/// The tables the test jobs record in.
fn init_records(db: &str) {
    crate::jobs::init_tables(db);
    crate::split_jobs::init_tables(db);
}

/// A connection of the test's own to PostgreSQL database `url`.
async fn pg_client(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect to PostgreSQL");
    tokio::spawn(conn);
    client
}

/// A worker process (the `stint-test-worker` binary); see
/// `stint_testkit::worker::Worker` for what it can do.
pub struct WorkerProc(Worker);

impl WorkerProc {
    /// Starts `bin STORE_URL CONCURRENCY` with extra environment `env`;
    /// its stderr goes to a log file in the test's directory.
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

/// Runs test bodies `async fn NAME(ts: TestStore)` once per store, as
/// `sqlite::NAME`, `postgres::NAME` and `redis::NAME`:
///
/// ```ignore
/// per_store! {
///     sigterm_hands_the_job_back,
///     a_case_with_a_known_bug [redis = "why it is ignored on Redis"],
/// }
/// ```
///
/// A store named in brackets gets that instance `#[ignore = "…"]`.
#[macro_export]
macro_rules! per_store {
    ($($test:ident $([$($store:ident = $why:literal),* $(,)?])?),* $(,)?) => {
        mod sqlite {
            $($crate::per_store!(@test sqlite, Sqlite, $test, [$($($store = $why),*)?]);)*
        }
        mod postgres {
            $($crate::per_store!(@test postgres, Postgres, $test, [$($($store = $why),*)?]);)*
        }
        mod redis {
            $($crate::per_store!(@test redis, Redis, $test, [$($($store = $why),*)?]);)*
        }
    };
    (@test sqlite, $backend:ident, $test:ident, [sqlite = $why:literal $(, $($rest:tt)*)?]) => {
        $crate::per_store!(@emit $backend, $test, #[ignore = $why]);
    };
    (@test postgres, $backend:ident, $test:ident, [postgres = $why:literal $(, $($rest:tt)*)?]) => {
        $crate::per_store!(@emit $backend, $test, #[ignore = $why]);
    };
    (@test redis, $backend:ident, $test:ident, [redis = $why:literal $(, $($rest:tt)*)?]) => {
        $crate::per_store!(@emit $backend, $test, #[ignore = $why]);
    };
    (@test $s:ident, $backend:ident, $test:ident, [$other:ident = $why:literal $(, $($rest:tt)*)?]) => {
        $crate::per_store!(@test $s, $backend, $test, [$($($rest)*)?]);
    };
    (@test $s:ident, $backend:ident, $test:ident, []) => {
        $crate::per_store!(@emit $backend, $test,);
    };
    (@emit $backend:ident, $test:ident, $(#[$attr:meta])?) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        $(#[$attr])?
        async fn $test() {
            super::$test(
                $crate::harness::TestStore::open($crate::harness::Backend::$backend).await,
            )
            .await
        }
    };
}
