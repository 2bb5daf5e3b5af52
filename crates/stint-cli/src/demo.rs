//! `stint demo`: a resumable import of a synthetic data set into the
//! store's own database — the SQLite file, or PostgreSQL
//! (`--store postgres://…`) — split into chunks that run at once. Each page
//! of rows and the chunk's checkpoint commit in one transaction
//! (`checkpoint_tx`, `checkpoint_pg`), so however the demo is stopped —
//! Ctrl-C, SIGTERM, `kill -9` — running it again resumes each chunk where it
//! stopped, and at the end every row is there exactly once.
//!
//! On a store without tables of its own (`--store redis://…`) the rows go
//! to a local SQLite file of their own (`--data`), and the checkpoint is a
//! plain `ctx.checkpoint()` after each committed page: after a crash the
//! pages since the last saved checkpoint are imported again (at least
//! once), and the table's (run, id) key keeps each row once.

use std::collections::VecDeque;
use std::io::IsTerminal;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use stint::postgres::{CtxExt as _, PgStore};
use stint::sqlite::{open_connection, CtxExt as _, SqliteStore};
use stint::{
    Client, Ctx, Job, JobError, JobFilter, JobOptions, JobRecord, JobState, Push, Store, Worker,
};

#[derive(Args, Debug, Clone)]
pub struct DemoArgs {
    /// Rows to import.
    #[arg(long, default_value_t = 2_000_000)]
    pub rows: u64,
    /// Chunks the import is split into, all run at once.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Simulated latency of the source, per page of 1,000 rows.
    #[arg(long, default_value_t = 100)]
    pub page_latency_ms: u64,
    /// The SQLite file the rows go to when the store is not a SQLite file
    /// (with a SQLite store they go to the store's own file).
    #[arg(long, default_value = DEFAULT_DATA)]
    pub data: String,
    /// Without a terminal, a progress line every this many milliseconds.
    #[arg(long, default_value_t = 5_000, hide = true)]
    pub progress_every_ms: u64,
}

const DEFAULT_ROWS: u64 = 2_000_000;
const DEFAULT_CONCURRENCY: usize = 4;
const DEFAULT_LATENCY_MS: u64 = 100;
const DEFAULT_DATA: &str = "demo-data.db";

impl DemoArgs {
    /// The flags of this run that differ from the defaults, as typed.
    fn flags(&self) -> Vec<String> {
        let mut flags = Vec::new();
        if self.rows != DEFAULT_ROWS {
            flags.push(format!("--rows {}", self.rows));
        }
        if self.concurrency != DEFAULT_CONCURRENCY {
            flags.push(format!("--concurrency {}", self.concurrency));
        }
        if self.page_latency_ms != DEFAULT_LATENCY_MS {
            flags.push(format!("--page-latency-ms {}", self.page_latency_ms));
        }
        if self.data != DEFAULT_DATA {
            flags.push(format!("--data {}", crate::format::shell_quote(&self.data)));
        }
        flags
    }
}

/// The command that runs this demo again: the same store (when it was given
/// with `--store`; its password hidden) and the same flags.
pub fn again(store_flag: Option<&str>, args: &DemoArgs) -> String {
    let mut cmd = String::from("stint");
    if let Some(url) = store_flag {
        cmd.push_str(" --store ");
        cmd.push_str(&crate::format::shell_quote(&crate::format::redact_url(url)));
    }
    cmd.push_str(" demo");
    for flag in args.flags() {
        cmd.push(' ');
        cmd.push_str(&flag);
    }
    cmd
}

const KIND: &str = "DemoImport";
const PAGE: u64 = 1_000;
const QUEUE: &str = "demo";

/// One chunk of the import: rows `start..end` of run `run`.
#[derive(Serialize, Deserialize, Debug, Clone)]
struct DemoImport {
    run: u64,
    start: u64,
    end: u64,
    page_latency_ms: u64,
    db: String,
    /// The rows' file is not the store's: pages are keyed by (run, id) and
    /// checkpointed after they commit (at least once).
    #[serde(default)]
    keyed: bool,
    /// The rows go to the PostgreSQL store's own database (`db` unused),
    /// each page with its checkpoint (`checkpoint_pg`).
    #[serde(default)]
    pg: bool,
}

/// The PostgreSQL store of this process, whose database the chunks write
/// to (a job's arguments hold no connection URL: it may carry a password).
static PG_STORE: OnceLock<PgStore> = OnceLock::new();

/// The synthetic value of row `id`: what the import computes from the
/// source row (a mixing function, so a checksum catches any row missing,
/// doubled or wrong).
fn value_of(id: u64) -> i64 {
    let mut z = id.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ((z ^ (z >> 31)) % 1_000_000_007) as i64
}

impl Job for DemoImport {
    const KIND: &'static str = KIND;

    fn options() -> JobOptions {
        JobOptions {
            queue: QUEUE.into(),
            ..JobOptions::default()
        }
    }

    async fn perform(&self, ctx: &mut Ctx) -> Result<(), JobError> {
        let mut next: u64 = ctx.cursor()?.unwrap_or(self.start);
        ctx.set_total(self.end - self.start);
        if self.pg {
            return self.perform_pg(ctx, next).await;
        }
        let mut conn = open_connection(&self.db)?;
        let stop = ctx.interrupted();
        while next < self.end {
            // Fetch a page from the (simulated) source; stop waiting at once
            // when asked to stop.
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(self.page_latency_ms)) => {}
                _ = stop.cancelled() => {}
            }
            let upto = (next + PAGE).min(self.end);
            if self.keyed {
                self.import_keyed(&mut conn, next, upto)?;
                ctx.checkpoint_n(&upto, upto - next).await?;
                next = upto;
                continue;
            }
            // The page's rows and the chunk's checkpoint in one transaction.
            tokio::task::block_in_place(|| -> Result<(), JobError> {
                let tx =
                    conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                {
                    let mut insert = tx.prepare_cached(
                        "INSERT INTO demo_rows (run, id, value) VALUES (?1, ?2, ?3)",
                    )?;
                    for id in next..upto {
                        insert.execute(rusqlite::params![
                            self.run as i64,
                            id as i64,
                            value_of(id)
                        ])?;
                    }
                }
                ctx.checkpoint_tx(&tx, &upto, upto - next)?;
                tx.commit()?;
                Ok(())
            })?;
            next = upto;
        }
        Ok(())
    }
}

impl DemoImport {
    /// The PostgreSQL import: each page's rows and the chunk's checkpoint
    /// in one transaction on the store's database.
    async fn perform_pg(&self, ctx: &mut Ctx, mut next: u64) -> Result<(), JobError> {
        let store = PG_STORE
            .get()
            .ok_or_else(|| JobError::msg("this process has no PostgreSQL store to import into"))?;
        let mut client = store.pool().get().await?;
        let stop = ctx.interrupted();
        while next < self.end {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(self.page_latency_ms)) => {}
                _ = stop.cancelled() => {}
            }
            let upto = (next + PAGE).min(self.end);
            let ids: Vec<i64> = (next..upto).map(|id| id as i64).collect();
            let values: Vec<i64> = (next..upto).map(value_of).collect();
            let tx = client.transaction().await?;
            tx.execute(
                "INSERT INTO demo_rows (run, id, value)
                 SELECT $1, id, value FROM unnest($2::bigint[], $3::bigint[]) AS t (id, value)",
                &[&(self.run as i64), &ids, &values],
            )
            .await?;
            ctx.checkpoint_pg(&tx, &upto, upto - next).await?;
            tx.commit().await?;
            next = upto;
        }
        Ok(())
    }

    /// Writes rows `from..upto` in one transaction; a row already there
    /// (a page imported again after a crash) is left as it is.
    fn import_keyed(
        &self,
        conn: &mut rusqlite::Connection,
        from: u64,
        upto: u64,
    ) -> Result<(), JobError> {
        tokio::task::block_in_place(|| -> Result<(), JobError> {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            {
                let mut insert = tx.prepare_cached(
                    "INSERT OR IGNORE INTO demo_rows (run, id, value) VALUES (?1, ?2, ?3)",
                )?;
                for id in from..upto {
                    insert.execute(rusqlite::params![self.run as i64, id as i64, value_of(id)])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
    }
}

/// Where the rows go.
enum Rows {
    /// A SQLite file: the store's own (exactly once), or a file of its own
    /// next to a store without tables (`keyed`: at least once, kept once
    /// by the table's key).
    Sqlite {
        conn: rusqlite::Connection,
        db: String,
        keyed: bool,
    },
    /// The PostgreSQL store's database (exactly once).
    Postgres(PgStore),
}

/// The file a `sqlite://PATH` URL names.
fn sqlite_path(store_url: &str) -> Option<&str> {
    store_url
        .strip_prefix("sqlite://")
        .or_else(|| store_url.strip_prefix("sqlite:"))
}

/// Opens the store and the rows' table.
async fn open(store_url: &str, args: &DemoArgs) -> anyhow::Result<(Arc<dyn Store>, Rows)> {
    let scheme = store_url.split(':').next().unwrap_or_default();
    if let Some(db) = sqlite_path(store_url) {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(db)?);
        let conn = sqlite_table(db, false)?;
        return Ok((
            store,
            Rows::Sqlite {
                conn,
                db: db.to_owned(),
                keyed: false,
            },
        ));
    }
    if matches!(scheme, "postgres" | "postgresql") {
        let pg = PgStore::open(store_url)?;
        // The demo is the whole deploy: it migrates the store itself.
        match stint::postgres::migrate(&pg).await {
            Err(stint::StoreError::Unavailable(msg)) => {
                let shown = crate::format::redact_url(store_url);
                return Err(crate::format::unreachable(&shown, &msg));
            }
            r => r.with_context(|| format!("cannot migrate {}", pg.target()))?,
        };
        pg.check_schema().await?;
        let client = pg.pool().get().await?;
        client
            .batch_execute(
                "SET client_min_messages = warning;
                 CREATE TABLE IF NOT EXISTS demo_rows (run bigint NOT NULL, id bigint NOT NULL, value bigint NOT NULL);
                 CREATE INDEX IF NOT EXISTS demo_rows_run ON demo_rows (run);
                 RESET client_min_messages;",
            )
            .await
            .with_context(|| format!("cannot create the demo's table in {}", pg.target()))?;
        drop(client);
        let _ = PG_STORE.set(pg.clone());
        return Ok((Arc::new(pg.clone()), Rows::Postgres(pg)));
    }
    let shown = crate::format::redact_url(store_url);
    let store = stint::connect(store_url).await.map_err(|e| match e {
        stint::StoreError::Unavailable(msg) => crate::format::unreachable(&shown, &msg),
        e => anyhow::anyhow!("cannot open {shown}: {e}"),
    })?;
    let conn = sqlite_table(&args.data, true)?;
    Ok((
        store,
        Rows::Sqlite {
            conn,
            db: args.data.clone(),
            keyed: true,
        },
    ))
}

fn sqlite_table(db: &str, keyed: bool) -> anyhow::Result<rusqlite::Connection> {
    let conn = open_connection(db)?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS demo_rows (run INTEGER NOT NULL, id INTEGER NOT NULL, value INTEGER NOT NULL);
         CREATE INDEX IF NOT EXISTS demo_rows_run ON demo_rows (run);",
    )?;
    if keyed {
        conn.execute_batch(
            "CREATE UNIQUE INDEX IF NOT EXISTS demo_rows_key ON demo_rows (run, id);",
        )?;
    }
    Ok(conn)
}

/// Rate and ETA from this run's progress only: rows imported by an earlier
/// run (before a resume) move the position, never the rate.
struct Meter {
    total: u64,
    /// (when, rows done) over the last `WINDOW`, oldest first; starts with
    /// this run's start.
    samples: VecDeque<(Instant, u64)>,
}

impl Meter {
    const WINDOW: Duration = Duration::from_secs(10);

    fn new(total: u64, done_before: u64, now: Instant) -> Self {
        Meter {
            total,
            samples: VecDeque::from([(now, done_before)]),
        }
    }

    fn record(&mut self, done: u64, now: Instant) {
        self.samples.push_back((now, done));
        while self.samples.len() > 2 && now.duration_since(self.samples[1].0) >= Self::WINDOW {
            self.samples.pop_front();
        }
    }

    /// Rows per second over the window; none before a second of this run.
    fn rate(&self) -> Option<f64> {
        let (t0, d0) = *self.samples.front()?;
        let (t1, d1) = *self.samples.back()?;
        let secs = t1.duration_since(t0).as_secs_f64();
        (secs >= 1.0).then(|| d1.saturating_sub(d0) as f64 / secs)
    }

    fn eta(&self) -> Option<Duration> {
        let done = self.samples.back()?.1;
        let left = self.total.saturating_sub(done);
        if left == 0 {
            return Some(Duration::ZERO);
        }
        let rate = self.rate().filter(|r| *r > 0.0)?;
        Some(Duration::from_secs_f64(left as f64 / rate))
    }

    /// "2.0k/s  ETA 13m 46s"; "-" for what is not known yet.
    fn text(&self) -> String {
        format!(
            "{}  ETA {}",
            crate::format::rate(self.rate()),
            self.eta()
                .map(crate::format::duration)
                .unwrap_or_else(|| "-".into())
        )
    }
}

/// Runs the demo against the store at `store_url` (`store_flag`: the URL
/// when given with `--store`, for the hint to run it again); returns the
/// exit code.
pub async fn run(store_url: &str, store_flag: Option<&str>, args: DemoArgs) -> anyhow::Result<i32> {
    let (store, rows_to) = open(store_url, &args).await?;
    let (db, keyed, pg) = match &rows_to {
        Rows::Sqlite { db, keyed, .. } => (db.clone(), *keyed, false),
        Rows::Postgres(pg) => (pg.target().to_owned(), false, true),
    };

    let chunks = resume_or_start(&store, &db, keyed, pg, &args).await?;
    let run = chunks[0].1.run;
    let rows: u64 = chunks.iter().map(|(_, c)| c.end).max().unwrap_or(0);
    let done_before: u64 = demo_jobs(&store, run)
        .await?
        .iter()
        .map(|j| j.checkpoint.done)
        .sum();

    let worker = Worker::builder(store.clone())
        .register::<DemoImport>()
        .queues([QUEUE])
        .concurrency(chunks.len())
        .shutdown_timeout(Duration::from_secs(2))
        .build();
    let handle = worker.handle();

    // A live bar on a terminal; without one, a progress line every few
    // seconds (for logs).
    let tty = std::io::stdout().is_terminal() && std::io::stderr().is_terminal();
    let bar = if tty {
        ProgressBar::new(rows)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} rows  {msg}",
        )?
        .progress_chars("█▉▊▋▌▍▎▏ "),
    );
    bar.set_position(done_before);
    let every = Duration::from_millis(args.progress_every_ms.max(100));
    let watcher = {
        let store = store.clone();
        let bar = bar.clone();
        let handle = handle.clone();
        let jids: Vec<_> = chunks.iter().map(|(j, _)| j.clone()).collect();
        tokio::spawn(async move {
            let ctrl_c = tokio::signal::ctrl_c();
            tokio::pin!(ctrl_c);
            let mut meter = Meter::new(rows, done_before, Instant::now());
            let mut printed = Instant::now();
            loop {
                if let Ok(jobs) = demo_jobs(&store, run).await {
                    let done: u64 = jobs.iter().map(|j| j.checkpoint.done).sum();
                    meter.record(done, Instant::now());
                    bar.set_position(done);
                    bar.set_message(meter.text());
                    if !tty && printed.elapsed() >= every {
                        printed = Instant::now();
                        println!(
                            "progress: {done}/{rows} rows ({:.1}%)  {}",
                            done as f64 * 100.0 / rows.max(1) as f64,
                            meter.text()
                        );
                    }
                    let ours = jobs.iter().filter(|j| jids.contains(&j.jid));
                    if ours.clone().count() == jids.len()
                        && ours.clone().all(|j| j.state.is_final())
                    {
                        handle.shutdown();
                        return;
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                    // Ctrl-C: the worker stops the chunks; the bar goes at
                    // once rather than stand still while they save.
                    _ = &mut ctrl_c => {
                        bar.finish_and_clear();
                        println!("stopping: each chunk saves its checkpoint (Ctrl-C again aborts at once)");
                        return;
                    }
                }
            }
        })
    };

    let summary = worker.run().await?;
    watcher.abort();
    let _ = watcher.await;
    let jobs = demo_jobs(&store, run).await?;
    let done: u64 = jobs.iter().map(|j| j.checkpoint.done).sum();

    if !jobs.iter().all(|j| j.state == JobState::Succeeded) {
        // Stopped: no progress line outlives the stop.
        bar.finish_and_clear();
        if jobs
            .iter()
            .any(|j| matches!(j.state, JobState::Dead | JobState::Cancelled))
        {
            for j in jobs
                .iter()
                .filter(|j| matches!(j.state, JobState::Dead | JobState::Cancelled))
            {
                eprintln!(
                    "chunk {} is {}: {}",
                    j.jid,
                    j.state,
                    j.reason.clone().unwrap_or_default()
                );
            }
            eprintln!("the import cannot complete; `stint retry JID` the chunk, or start over with a new file");
            return Ok(1);
        }
        let mut at: Vec<u64> = jobs
            .iter()
            .filter(|j| !j.state.is_final())
            .filter_map(|j| {
                let chunk: DemoImport = serde_json::from_value(j.args.clone()).ok()?;
                Some(
                    j.checkpoint
                        .cursor
                        .as_ref()
                        .and_then(|c| c.as_u64())
                        .unwrap_or(chunk.start),
                )
            })
            .collect();
        at.sort_unstable();
        let at: Vec<String> = at.iter().map(|r| format!("row {r}")).collect();
        println!(
            "stopped: {done} of {rows} rows imported ({} handed back); chunks resume at {}",
            summary.handed_back,
            at.join(", ")
        );
        println!(
            "run `{}` again to resume from there",
            again(store_flag, &args)
        );
        return Ok(130);
    }
    bar.set_position(done);
    bar.set_message(format!(
        "done in {}",
        crate::format::duration(bar.elapsed())
    ));
    bar.abandon();

    let (count, distinct, sum) = match &rows_to {
        Rows::Sqlite { conn, .. } => conn.query_row(
            "SELECT COUNT(*), COUNT(DISTINCT id), COALESCE(SUM(value), 0) FROM demo_rows WHERE run = ?1",
            [run as i64],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?,
        Rows::Postgres(pg) => {
            let client = pg.pool().get().await?;
            let row = client
                .query_one(
                    "SELECT COUNT(*), COUNT(DISTINCT id), COALESCE(SUM(value), 0)::bigint FROM demo_rows WHERE run = $1",
                    &[&(run as i64)],
                )
                .await?;
            (row.get(0), row.get(1), row.get(2))
        }
    };
    Ok(verify(count, distinct, sum, rows, keyed))
}

/// The chunks of the unfinished run, or a new run's freshly pushed chunks.
async fn resume_or_start(
    store: &Arc<dyn Store>,
    db: &str,
    keyed: bool,
    pg: bool,
    args: &DemoArgs,
) -> anyhow::Result<Vec<(stint::Jid, DemoImport)>> {
    let all = store
        .jobs(&JobFilter {
            kind: Some(KIND.into()),
            limit: 10_000,
            ..Default::default()
        })
        .await?;
    let latest_run = all
        .iter()
        .filter_map(|j| serde_json::from_value::<DemoImport>(j.args.clone()).ok())
        .map(|c| c.run)
        .max();
    if let Some(run) = latest_run {
        let chunks: Vec<(stint::Jid, DemoImport, JobState)> = all
            .iter()
            .filter_map(|j| {
                let c: DemoImport = serde_json::from_value(j.args.clone()).ok()?;
                (c.run == run).then(|| (j.jid.clone(), c, j.state))
            })
            .collect();
        if chunks.iter().any(|(_, _, s)| !s.is_final()) {
            let rows = chunks.iter().map(|(_, c, _)| c.end).max().unwrap_or(0);
            let done: u64 = all
                .iter()
                .filter(|j| chunks.iter().any(|(jid, _, _)| *jid == j.jid))
                .map(|j| j.checkpoint.done)
                .sum();
            println!(
                "resuming the import of {rows} rows in {} chunks: {done} rows already imported",
                chunks.len()
            );
            if rows != args.rows {
                println!(
                    "(the unfinished run has {rows} rows; --rows {} applies to the next run)",
                    args.rows
                );
            }
            return Ok(chunks.into_iter().map(|(j, c, _)| (j, c)).collect());
        }
    }

    let run = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as u64;
    let n = args.concurrency.max(1) as u64;
    let per = args.rows.div_ceil(n).max(1);
    let chunks: Vec<DemoImport> = (0..n)
        .map(|i| DemoImport {
            run,
            start: (i * per).min(args.rows),
            end: ((i + 1) * per).min(args.rows),
            page_latency_ms: args.page_latency_ms,
            db: if pg { String::new() } else { db.to_owned() },
            keyed,
            pg,
        })
        .filter(|c| c.end > c.start)
        .collect();
    let jids = Client::new(store.clone())
        .push_many(&chunks, Push::new())
        .await?;
    println!(
        "importing {} rows in {} chunks into {db}; Ctrl-C stops it, running it again resumes",
        args.rows,
        chunks.len()
    );
    Ok(jids.into_iter().zip(chunks).collect())
}

async fn demo_jobs(store: &Arc<dyn Store>, run: u64) -> anyhow::Result<Vec<JobRecord>> {
    let all = store
        .jobs(&JobFilter {
            kind: Some(KIND.into()),
            limit: 10_000,
            ..Default::default()
        })
        .await?;
    Ok(all
        .into_iter()
        .filter(|j| {
            serde_json::from_value::<DemoImport>(j.args.clone()).is_ok_and(|c| c.run == run)
        })
        .collect())
}

/// Checks that every row of the run is there exactly once with its value,
/// from the table's count, distinct ids and checksum; returns the exit code.
fn verify(count: i64, distinct: i64, sum: i64, rows: u64, keyed: bool) -> i32 {
    let expected: i64 = (0..rows).map(value_of).sum();
    let ok = count as u64 == rows && distinct as u64 == rows && sum == expected;
    println!(
        "check: {count} rows imported (expected {rows}), {distinct} distinct, checksum {sum} (expected {expected})"
    );
    if ok && keyed {
        println!(
            "every row is there once: pages after the last saved checkpoint may have been \
             imported again after a crash (at least once), and the (run, id) key kept one of each"
        );
        0
    } else if ok {
        println!("every row was imported exactly once");
        0
    } else {
        println!("CHECK FAILED: rows are missing, doubled or wrong");
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_and_eta_count_only_this_runs_rows() {
        // Resumed at 352,000 of 2,000,000; this run imports 2,000 rows/s.
        let t0 = Instant::now();
        let mut m = Meter::new(2_000_000, 352_000, t0);
        m.record(352_000, t0 + Duration::from_millis(10));
        assert_eq!(m.rate(), None, "no rate before a second of this run");
        m.record(356_000, t0 + Duration::from_secs(2));
        assert_eq!(m.rate(), Some(2_000.0));
        assert_eq!(m.eta(), Some(Duration::from_secs(822)));
        assert_eq!(m.text(), "2000/s  ETA 13m 42s");
        // The window moves on: the rate follows the recent pace.
        for s in 3..=30 {
            m.record(356_000 + (s - 2) * 1_000, t0 + Duration::from_secs(s));
        }
        let rate = m.rate().unwrap();
        assert!((rate - 1_000.0).abs() < 1.0, "{rate}");
    }

    #[test]
    fn the_hint_to_run_again_keeps_the_flags_given() {
        let args = DemoArgs {
            rows: DEFAULT_ROWS,
            concurrency: DEFAULT_CONCURRENCY,
            page_latency_ms: DEFAULT_LATENCY_MS,
            data: DEFAULT_DATA.into(),
            progress_every_ms: 5_000,
        };
        assert_eq!(again(None, &args), "stint demo");
        let args = DemoArgs {
            rows: 30_000,
            concurrency: 2,
            data: "my data.db".into(),
            ..args
        };
        assert_eq!(
            again(Some("postgres://app:s3cret@db.example/app"), &args),
            "stint --store 'postgres://app:***@db.example/app' demo --rows 30000 --concurrency 2 --data 'my data.db'"
        );
    }
}
