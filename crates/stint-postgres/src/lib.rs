//! stint-postgres: the PostgreSQL store.
//!
//! - Every transition is one statement (or one transaction) fenced by the
//!   stint's lease; lease expiry and due times are judged by the database's
//!   `now()`, never a worker's clock.
//! - Workers fetch with `FOR UPDATE SKIP LOCKED`, in batches; an idle fetch
//!   waits on LISTEN/NOTIFY, so a pushed job starts within milliseconds
//!   without the table being polled hard.
//! - A job writes its own rows and its checkpoint in one transaction
//!   ([`CtxExt::checkpoint_pg`], or `ctx.checkpoint_in(&mut PgTx(&tx), …)`),
//!   and a client pushes jobs inside its own transaction ([`push_in`]): the
//!   job exists only if that transaction commits.
//! - Flow control: a job with a limit is admitted by core's `Limit::admit`
//!   under a per-key advisory lock (jobs without one never take it); the
//!   others wait parked, outside the fetch index, until a running job of
//!   their key ends (unparked in the same statement) or their rate window
//!   has room (`promote_due`). Unique keys are claimed in the push's
//!   transaction, the caller's own for [`push_raw_in`].
//! - The schema is versioned and migrated by an explicit call ([`migrate`],
//!   or `stint migrate --store postgres://…`); [`PgStore::connect`] refuses
//!   a database that is not migrated, or migrated by a newer stint.
//!
//! ```no_run
//! # async fn demo() -> Result<(), stint_core::StoreError> {
//! let url = "postgres://stint@127.0.0.1/app";
//! let store = stint_postgres::PgStore::open(url)?;
//! stint_postgres::migrate(&store).await?;        // once per deploy
//! let store = stint_postgres::PgStore::connect(url).await?; // checks the schema
//! # Ok(()) }
//! ```

// The modules by role; each uses only modules of lower levels (the
// crate root uses them all):
//   5  tx           a caller's own transaction: push_in, checkpoint_in
//   4  transitions  push, split
//   3  commands     operator commands (core's CommandSite, one transaction)
//      complete     stint ends, a batch per statement
//      maintenance  promote_due, recover_orphans
//      admin        stats, listings, job detail, queues, metrics
//      leases       fetch, reclaim, checkpoint
//      schema       migrations
//   2  family       split parents and their children, waking a parent
//      limits       jobs with a limit: admitted, parked, unparked; keys
//      unique       unique keys claimed at push
//      processes    processes, their commands, controls
//      listen       LISTEN/NOTIFY
//   1  sql          query, execute, to_json, from_ms
//   0  rows, conn   job rows; URLs, pool, errors
mod admin;
mod commands;
mod complete;
mod conn;
mod family;
mod leases;
mod limits;
mod listen;
mod maintenance;
mod periodic;
mod processes;
mod rows;
mod schema;
mod sql;
#[cfg(test)]
mod tests;
mod transitions;
mod tx;
mod unique;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use deadpool_postgres::Pool;
use stint_core::metrics::Metrics;
use stint_core::model::{
    ChildRecord, Control, Jid, JobDetail, JobRecord, KeyInfo, NewJob, ProcessCommand, ProcessInfo,
    Pushed, Stats,
};
use stint_core::periodic::{ScheduleDef, ScheduleInfo, TickOutcome, TickPush, TickRecord};
use stint_core::store::{
    CommandEffect, Completion, JobFilter, Lease, Leased, Outcome, Recovered, Store,
};
use stint_core::{Checkpoint, JobCommand, StoreResult};

pub use conn::PgOptions;
pub use listen::CHANNEL;
pub use schema::{MigrationReport, SCHEMA_VERSION};
pub use tx::{push_in, push_in_with, push_raw_in, CtxExt, PgTx};

/// Brings the store's database to [`SCHEMA_VERSION`], in one transaction;
/// a no-op when it is there already. Refuses a database migrated by a
/// newer stint.
pub async fn migrate(store: &PgStore) -> StoreResult<MigrationReport> {
    schema::migrate(&mut store.client().await?, store.target(), SCHEMA_VERSION).await
}

/// As [`migrate`], stopping at schema `version` (at most
/// [`SCHEMA_VERSION`]): a database as an older stint left it, for tests of
/// upgrades. A store of this build runs only on [`SCHEMA_VERSION`].
pub async fn migrate_to(store: &PgStore, version: i32) -> StoreResult<MigrationReport> {
    schema::migrate(
        &mut store.client().await?,
        store.target(),
        version.min(SCHEMA_VERSION),
    )
    .await
}

/// The PostgreSQL store. Cheap to clone; clones share one connection pool
/// and one listening connection.
#[derive(Clone)]
pub struct PgStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    config: tokio_postgres::Config,
    options: PgOptions,
    /// `host:port/db`, for messages.
    target: String,
    /// The URL with its password hidden, for messages.
    url: String,
    /// Started by the first fetch: clients that only push need none.
    listener: OnceLock<listen::Listener>,
    /// Per process, the tokens of fetches whose replies were lost with their
    /// connection: the jobs they leased are handed out by the next fetch.
    lost_fetches: Mutex<HashMap<String, Vec<String>>>,
    /// The jids this store leased that have a limit: their completions
    /// take the statement that also unparks the next job of their key.
    limited_leases: Mutex<HashSet<String>>,
}

impl PgStore {
    /// A store for `url` (`postgres://USER[:PASSWORD]@HOST[:PORT]/DB`, with
    /// optional [`PgOptions`] as query parameters). Connects lazily and
    /// checks nothing: use it to [`migrate`]; workers and clients use
    /// [`PgStore::connect`].
    pub fn open(url: &str) -> StoreResult<Self> {
        let (config, options) = conn::parse_url(url)?;
        Self::open_config(config, options, conn::redact(url))
    }

    /// As [`PgStore::open`], with a driver configuration and options.
    pub fn open_config(
        config: tokio_postgres::Config,
        options: PgOptions,
        url_for_messages: String,
    ) -> StoreResult<Self> {
        let pool = conn::pool(&config, &options)?;
        Ok(PgStore {
            inner: Arc::new(Inner {
                pool,
                target: conn::target(&config),
                config,
                options,
                url: url_for_messages,
                listener: OnceLock::new(),
                lost_fetches: Mutex::new(HashMap::new()),
                limited_leases: Mutex::new(HashSet::new()),
            }),
        })
    }

    /// Opens `url` and checks that its schema is this build's: an
    /// unmigrated database, or one migrated by a newer stint, is a
    /// `StoreError::Config` that says to run `stint migrate`.
    pub async fn connect(url: &str) -> StoreResult<Self> {
        let store = Self::open(url)?;
        store.check_schema().await?;
        Ok(store)
    }

    /// Checks the database's schema version (see [`PgStore::connect`]).
    pub async fn check_schema(&self) -> StoreResult<()> {
        schema::check(&self.client().await?, self.target(), &self.inner.url).await
    }

    /// The connection pool, for a job's or an application's own queries on
    /// the store's database (such as the transaction of `checkpoint_pg`).
    pub fn pool(&self) -> &Pool {
        &self.inner.pool
    }

    /// The options in force.
    pub fn options(&self) -> &PgOptions {
        &self.inner.options
    }

    /// `host:port/database`, for messages.
    pub fn target(&self) -> &str {
        &self.inner.target
    }

    pub(crate) async fn client(&self) -> StoreResult<deadpool_postgres::Client> {
        self.inner
            .pool
            .get()
            .await
            .map_err(|e| conn::pool_err(e, &self.inner.target))
    }

    fn listener(&self) -> &listen::Listener {
        self.inner.listener.get_or_init(|| {
            listen::Listener::spawn(self.inner.config.clone(), self.inner.target.clone())
        })
    }

    /// One fetch, remembering its token if its outcome is unknown (the
    /// connection failed: it may have committed).
    async fn fetch_once(
        &self,
        process: &str,
        queues: &[String],
        limit: usize,
    ) -> StoreResult<Vec<Leased>> {
        let token = format!("{:016x}", rand::random::<u64>());
        let mut client = self.client().await?;
        let r = leases::fetch(&mut client, process, queues, limit, &token).await;
        if let Ok(got) = &r {
            self.note_limited(got);
        }
        if let Err(e) = &r {
            if e.is_transient() {
                self.lost_fetches()
                    .entry(process.to_owned())
                    .or_default()
                    .push(token);
            }
        }
        r
    }

    fn limited_leases(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.inner
            .limited_leases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Remembers which of `leased` have a limit (see `limited_leases`).
    fn note_limited(&self, leased: &[Leased]) {
        let mut limited = leased.iter().filter(|l| l.job.options.limit.is_some());
        if let Some(first) = limited.next() {
            let mut set = self.limited_leases();
            set.insert(first.job.jid.to_string());
            set.extend(limited.map(|l| l.job.jid.to_string()));
        }
    }

    fn lost_fetches(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<String>>> {
        self.inner
            .lost_fetches
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Hands out the jobs that fetches with lost replies leased (up to
    /// `limit`; the rest go back to the head of their queues).
    async fn reclaim(&self, process: &str, limit: usize) -> StoreResult<Vec<Leased>> {
        let tokens = match self.lost_fetches().get(process) {
            Some(t) if !t.is_empty() => t.clone(),
            _ => return Ok(vec![]),
        };
        let client = self.client().await?;
        let mut got = leases::reclaim(&client, process, &tokens).await?;
        drop(client);
        self.note_limited(&got);
        if let Some(t) = self.lost_fetches().get_mut(process) {
            t.retain(|x| !tokens.contains(x));
        }
        if got.len() > limit {
            let extra: Vec<Completion> = got
                .split_off(limit)
                .into_iter()
                .map(|l| Completion {
                    lease: l.lease,
                    checkpoint: None,
                    outcome: Outcome::Requeue {
                        reason: "handed back: the reply to its fetch was lost".into(),
                    },
                })
                .collect();
            self.complete(extra).await?;
        }
        if !got.is_empty() {
            tracing::info!(
                jobs = got.len(),
                "PostgreSQL: jobs leased by a fetch whose reply was lost are run now"
            );
        }
        Ok(got)
    }
}

#[async_trait]
impl Store for PgStore {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    async fn push(&self, jobs: Vec<NewJob>) -> StoreResult<Vec<Pushed>> {
        transitions::push(&mut self.client().await?, jobs).await
    }

    async fn register(&self, process: &ProcessInfo, ttl: Duration) -> StoreResult<()> {
        processes::register(&self.client().await?, process, ttl).await
    }

    async fn heartbeat(
        &self,
        process: &str,
        busy: u32,
        quiet: bool,
        ttl: Duration,
    ) -> StoreResult<bool> {
        processes::heartbeat(&self.client().await?, process, busy, quiet, ttl).await
    }

    async fn deregister(&self, process: &str) -> StoreResult<()> {
        self.lost_fetches().remove(process);
        processes::deregister(&self.client().await?, process).await
    }

    async fn expire_process(&self, process: &str) -> StoreResult<()> {
        processes::expire_process(&self.client().await?, process).await
    }

    async fn mark_stopping(&self, process: &str) -> StoreResult<()> {
        processes::mark_stopping(&self.client().await?, process).await
    }

    async fn processes(&self) -> StoreResult<Vec<ProcessInfo>> {
        processes::processes(&self.client().await?).await
    }

    fn fetch_waits_for_jobs(&self) -> bool {
        !self.inner.options.idle_wait.is_zero()
    }

    /// Leases waiting jobs; when there are none, waits up to
    /// `PgOptions::idle_wait` for a NOTIFY of a job pushed to one of
    /// `queues`, and fetches again at once.
    async fn fetch(
        &self,
        process: &str,
        queues: &[String],
        limit: usize,
    ) -> StoreResult<Vec<Leased>> {
        if limit == 0 {
            return Ok(vec![]);
        }
        let reclaimed = self.reclaim(process, limit).await?;
        if !reclaimed.is_empty() {
            return Ok(reclaimed);
        }
        let wake = self.listener().wake.clone();
        let until = Instant::now() + self.inner.options.idle_wait;
        loop {
            let mark = wake.mark(queues);
            let got = self.fetch_once(process, queues, limit).await?;
            if !got.is_empty() || Instant::now() >= until {
                return Ok(got);
            }
            if !wake.wait(queues, mark, until).await {
                return Ok(got);
            }
        }
    }

    async fn checkpoint(
        &self,
        lease: &Lease,
        checkpoint: &Checkpoint,
    ) -> StoreResult<Option<Control>> {
        leases::checkpoint(&self.client().await?, lease, checkpoint).await
    }

    async fn complete(&self, completions: Vec<Completion>) -> StoreResult<Vec<Jid>> {
        if completions.is_empty() {
            return Ok(vec![]);
        }
        let limited = {
            let mut set = self.limited_leases();
            let mut any = false;
            for c in &completions {
                any |= !set.is_empty() && set.remove(c.lease.jid.as_str());
            }
            any
        };
        complete::complete(&mut self.client().await?, &completions, limited).await
    }

    async fn split(
        &self,
        lease: &Lease,
        checkpoint: &Checkpoint,
        step: &str,
        children: Vec<NewJob>,
    ) -> StoreResult<()> {
        self.limited_leases().remove(lease.jid.as_str());
        transitions::split(
            &mut self.client().await?,
            lease,
            checkpoint,
            step,
            &children,
        )
        .await
    }

    async fn children(&self, parent: &Jid) -> StoreResult<Vec<ChildRecord>> {
        family::children(&self.client().await?, parent).await
    }

    async fn controls(&self, process: &str) -> StoreResult<Vec<(Jid, Control)>> {
        processes::controls(&self.client().await?, process).await
    }

    async fn push_tick(&self, tick: &TickPush) -> StoreResult<TickOutcome> {
        periodic::push_tick(&mut self.client().await?, tick).await
    }

    async fn register_schedules(&self, defs: &[ScheduleDef]) -> StoreResult<()> {
        periodic::register_schedules(&mut self.client().await?, defs).await
    }

    async fn schedules(&self) -> StoreResult<Vec<ScheduleInfo>> {
        periodic::schedules(&self.client().await?).await
    }

    async fn ticks(&self, schedule: &str, limit: usize) -> StoreResult<Vec<TickRecord>> {
        periodic::ticks(&self.client().await?, schedule, limit).await
    }

    async fn promote_due(&self) -> StoreResult<u64> {
        maintenance::promote_due(&self.client().await?).await
    }

    async fn recover_orphans(&self, max_recoveries: u32) -> StoreResult<Vec<Recovered>> {
        maintenance::recover_orphans(&mut self.client().await?, max_recoveries).await
    }

    async fn stats(&self) -> StoreResult<Stats> {
        admin::stats(&self.client().await?).await
    }

    async fn jobs(&self, filter: &JobFilter) -> StoreResult<Vec<JobRecord>> {
        admin::jobs(&self.client().await?, filter).await
    }

    async fn job(&self, jid: &Jid) -> StoreResult<Option<JobDetail>> {
        admin::job(&self.client().await?, jid).await
    }

    async fn command(&self, jid: &Jid, command: JobCommand) -> StoreResult<CommandEffect> {
        commands::command(&mut self.client().await?, jid, command).await
    }

    async fn set_queue_paused(&self, queue: &str, paused: bool) -> StoreResult<()> {
        admin::set_queue_paused(&self.client().await?, queue, paused).await
    }

    async fn clear_queue(&self, queue: &str) -> StoreResult<u64> {
        admin::clear_queue(&self.client().await?, queue).await
    }

    async fn command_process(&self, process: &str, command: ProcessCommand) -> StoreResult<()> {
        processes::command_process(&self.client().await?, process, command).await
    }

    async fn process_command(&self, process: &str) -> StoreResult<Option<ProcessCommand>> {
        processes::process_command(&self.client().await?, process).await
    }

    async fn limits(&self) -> StoreResult<Vec<KeyInfo>> {
        limits::limits(&self.client().await?).await
    }

    async fn metrics(&self) -> StoreResult<Metrics> {
        admin::metrics(&self.client().await?).await
    }
}
