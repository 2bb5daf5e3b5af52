//! stint-sqlite: the embedded default store. One SQLite file in WAL mode,
//! safe for several worker processes on one machine; every transition is one
//! `BEGIN IMMEDIATE` transaction.
//!
//! A job can write its own rows and its checkpoint in one transaction on the
//! same file ([`CtxExt::checkpoint_tx`]), so each item's effect happens
//! exactly once across interruptions and crashes.

// Modules by role, each importing only those below it:
//   transitions (push, stint ends, split) → commands (operator commands) → queue
//   maintenance (due jobs, recovery) → queue, metrics
//   admin (reads, queue commands) → processes, rows
//   periodic (ticks, schedules) → transitions
//   tx (a job's own transaction) → leases (fetch, checkpoint) → rows
//   transitions, commands, leases, maintenance, rows → flow (unique keys,
//     limits at fetch, parked jobs and their unparking)
//   every module → db (errors, cached statements, JSON columns)
mod admin;
mod commands;
mod db;
mod flow;
mod leases;
mod maintenance;
mod metrics;
mod periodic;
mod processes;
mod queue;
mod rows;
mod schema;
mod transitions;
mod tx;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, TransactionBehavior};
use stint_core::metrics::Metrics;
use stint_core::model::{
    ChildRecord, Control, Jid, JobDetail, JobRecord, KeyInfo, NewJob, ProcessCommand, ProcessInfo,
    Pushed, Stats,
};
use stint_core::periodic::{ScheduleDef, ScheduleInfo, TickOutcome, TickPush, TickRecord};
use stint_core::store::{CommandEffect, Completion, JobFilter, Lease, Leased, Recovered, Store};
use stint_core::{Checkpoint, JobCommand, StoreError, StoreResult};

use crate::db::db_err;

pub use schema::SCHEMA_VERSION;
pub use tx::{CtxExt, SqliteTx};

/// The SQLite store.
#[derive(Clone)]
pub struct SqliteStore {
    path: PathBuf,
    /// The one writer: SQLite serializes writes anyway, and one connection
    /// keeps its statement cache warm.
    conn: Arc<Mutex<Connection>>,
    /// Reads for operators and control polls, so a long listing never
    /// holds up the workers' writes (WAL lets readers run beside a writer).
    reader: Arc<Mutex<Connection>>,
    /// Keeps a temporary directory alive for `open_temp`.
    _temp: Option<Arc<TempDir>>,
}

/// A directory removed on drop (for `open_temp`).
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Opens a connection to a stint SQLite file with the settings the store
/// uses (WAL, a busy timeout, foreign writers tolerated). Jobs use it to
/// open their own connection for `checkpoint_tx`.
pub fn open_connection(path: impl AsRef<Path>) -> Result<Connection, StoreError> {
    let path = path.as_ref();
    let conn = Connection::open(path).map_err(|e| {
        StoreError::Unavailable(format!("cannot open SQLite file {}: {e}", path.display()))
    })?;
    conn.busy_timeout(Duration::from_secs(10)).map_err(db_err)?;
    conn.set_prepared_statement_cache_capacity(64);
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(db_err)?;
    // NORMAL in WAL mode: a commit survives a process crash (kill -9); only
    // a power loss may take back the last commits.
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(db_err)?;
    Ok(conn)
}

impl SqliteStore {
    /// Opens (creating when missing) the store in the file at `path`.
    pub fn open(path: impl AsRef<Path>) -> StoreResult<Self> {
        let path = path.as_ref().to_path_buf();
        let conn = open_connection(&path)?;
        schema::migrate(&conn)?;
        let reader = open_connection(&path)?;
        Ok(SqliteStore {
            path,
            conn: Arc::new(Mutex::new(conn)),
            reader: Arc::new(Mutex::new(reader)),
            _temp: None,
        })
    }

    /// Opens `sqlite://PATH` or `sqlite:PATH`.
    pub fn open_url(url: &str) -> StoreResult<Self> {
        let path = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            .ok_or_else(|| StoreError::Config(format!("{url:?} is not a sqlite:// URL")))?;
        if path.is_empty() {
            return Err(StoreError::Config(
                "sqlite:// URL needs a file path, e.g. sqlite://stint.db".into(),
            ));
        }
        Self::open(path)
    }

    /// A store in a fresh temporary file, removed when the last clone drops.
    pub fn open_temp() -> StoreResult<Self> {
        static OPENED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = OPENED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let nonce: u64 = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let dir =
            std::env::temp_dir().join(format!("stint-sqlite-{}-{n}-{nonce:x}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| {
            StoreError::Unavailable(format!("cannot create {}: {e}", dir.display()))
        })?;
        let mut store = Self::open(dir.join("stint.db"))?;
        store._temp = Some(Arc::new(TempDir(dir)));
        Ok(store)
    }

    /// The file this store lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` in one `BEGIN IMMEDIATE` transaction on a blocking thread.
    pub(crate) async fn write<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Transaction) -> StoreResult<T> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = conn.lock().unwrap_or_else(|p| p.into_inner());
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(db_err)?;
            let out = f(&tx)?;
            tx.commit().map_err(db_err)?;
            Ok(out)
        })
        .await
        .map_err(|e| StoreError::Other(format!("sqlite task failed: {e}")))?
    }

    /// Runs a read-only `f` on the reader connection, on a blocking thread.
    pub(crate) async fn read<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        Self::on(self.reader.clone(), f).await
    }

    /// Runs a single atomic statement `f` on the writer connection.
    pub(crate) async fn statement<T, F>(&self, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        Self::on(self.conn.clone(), f).await
    }

    async fn on<T, F>(conn: Arc<Mutex<Connection>>, f: F) -> StoreResult<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    {
        tokio::task::spawn_blocking(move || {
            let conn = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&conn)
        })
        .await
        .map_err(|e| StoreError::Other(format!("sqlite task failed: {e}")))?
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn kind(&self) -> &'static str {
        "sqlite"
    }

    async fn push(&self, jobs: Vec<NewJob>) -> StoreResult<Vec<Pushed>> {
        self.write(move |tx| transitions::push(tx, &jobs)).await
    }

    async fn register(&self, process: &ProcessInfo, ttl: Duration) -> StoreResult<()> {
        let p = process.clone();
        self.write(move |tx| processes::register(tx, &p, ttl)).await
    }

    async fn heartbeat(
        &self,
        process: &str,
        busy: u32,
        quiet: bool,
        ttl: Duration,
    ) -> StoreResult<bool> {
        let p = process.to_owned();
        self.write(move |tx| processes::heartbeat(tx, &p, busy, quiet, ttl))
            .await
    }

    async fn deregister(&self, process: &str) -> StoreResult<()> {
        let p = process.to_owned();
        self.write(move |tx| processes::deregister(tx, &p)).await
    }

    async fn expire_process(&self, process: &str) -> StoreResult<()> {
        let p = process.to_owned();
        self.write(move |tx| processes::expire_process(tx, &p))
            .await
    }

    async fn mark_stopping(&self, process: &str) -> StoreResult<()> {
        let p = process.to_owned();
        self.write(move |tx| processes::mark_stopping(tx, &p)).await
    }

    async fn processes(&self) -> StoreResult<Vec<ProcessInfo>> {
        self.read(processes::processes).await
    }

    async fn fetch(
        &self,
        process: &str,
        queues: &[String],
        limit: usize,
    ) -> StoreResult<Vec<Leased>> {
        let p = process.to_owned();
        let q = queues.to_vec();
        self.write(move |tx| leases::fetch(tx, &p, &q, limit)).await
    }

    async fn checkpoint(
        &self,
        lease: &Lease,
        checkpoint: &Checkpoint,
    ) -> StoreResult<Option<Control>> {
        let lease = lease.clone();
        let cp = checkpoint.clone();
        // A plain UPDATE is atomic on its own: no explicit transaction.
        self.statement(move |conn| leases::checkpoint(conn, &lease, &cp))
            .await
    }

    async fn complete(&self, completions: Vec<Completion>) -> StoreResult<Vec<Jid>> {
        self.write(move |tx| transitions::complete(tx, &completions))
            .await
    }

    async fn split(
        &self,
        lease: &Lease,
        checkpoint: &Checkpoint,
        step: &str,
        children: Vec<NewJob>,
    ) -> StoreResult<()> {
        let (lease, cp, step) = (lease.clone(), checkpoint.clone(), step.to_owned());
        self.write(move |tx| transitions::split(tx, &lease, &cp, &step, &children))
            .await
    }

    async fn children(&self, parent: &Jid) -> StoreResult<Vec<ChildRecord>> {
        let parent = parent.clone();
        self.read(move |conn| admin::children(conn, &parent)).await
    }

    async fn controls(&self, process: &str) -> StoreResult<Vec<(Jid, Control)>> {
        let p = process.to_owned();
        self.read(move |conn| processes::controls(conn, &p)).await
    }

    async fn push_tick(&self, tick: &TickPush) -> StoreResult<TickOutcome> {
        let t = tick.clone();
        self.write(move |tx| periodic::push_tick(tx, &t)).await
    }

    async fn register_schedules(&self, defs: &[ScheduleDef]) -> StoreResult<()> {
        let d = defs.to_vec();
        self.write(move |tx| periodic::register_schedules(tx, &d))
            .await
    }

    async fn schedules(&self) -> StoreResult<Vec<ScheduleInfo>> {
        self.read(periodic::schedules).await
    }

    async fn ticks(&self, schedule: &str, limit: usize) -> StoreResult<Vec<TickRecord>> {
        let s = schedule.to_owned();
        self.read(move |conn| periodic::ticks(conn, &s, limit))
            .await
    }

    async fn promote_due(&self) -> StoreResult<u64> {
        self.write(|tx| maintenance::promote_due(tx)).await
    }

    async fn recover_orphans(&self, max_recoveries: u32) -> StoreResult<Vec<Recovered>> {
        self.write(move |tx| maintenance::recover_orphans(tx, max_recoveries))
            .await
    }

    async fn stats(&self) -> StoreResult<Stats> {
        self.read(admin::stats).await
    }

    async fn jobs(&self, filter: &JobFilter) -> StoreResult<Vec<JobRecord>> {
        let f = filter.clone();
        self.read(move |conn| admin::jobs(conn, &f)).await
    }

    async fn job(&self, jid: &Jid) -> StoreResult<Option<JobDetail>> {
        let jid = jid.clone();
        self.read(move |conn| admin::job(conn, &jid)).await
    }

    async fn command(&self, jid: &Jid, command: JobCommand) -> StoreResult<CommandEffect> {
        let jid = jid.clone();
        self.write(move |tx| commands::run(tx, &jid, command)).await
    }

    async fn set_queue_paused(&self, queue: &str, paused: bool) -> StoreResult<()> {
        let q = queue.to_owned();
        self.write(move |tx| admin::set_queue_paused(tx, &q, paused))
            .await
    }

    async fn clear_queue(&self, queue: &str) -> StoreResult<u64> {
        let q = queue.to_owned();
        self.write(move |tx| admin::clear_queue(tx, &q)).await
    }

    async fn command_process(&self, process: &str, command: ProcessCommand) -> StoreResult<()> {
        let p = process.to_owned();
        self.write(move |tx| processes::command_process(tx, &p, command))
            .await
    }

    async fn process_command(&self, process: &str) -> StoreResult<Option<ProcessCommand>> {
        let p = process.to_owned();
        self.read(move |conn| processes::process_command(conn, &p))
            .await
    }

    async fn limits(&self) -> StoreResult<Vec<KeyInfo>> {
        self.read(flow::limits).await
    }

    async fn metrics(&self) -> StoreResult<Metrics> {
        self.read(metrics::read).await
    }
}
