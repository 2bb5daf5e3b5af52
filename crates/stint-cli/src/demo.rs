//! `stint demo`: a resumable import of a synthetic data set into the SQLite
//! file, split into chunks that run at once. Each page of rows and the
//! chunk's checkpoint commit in one transaction, so however the demo is
//! stopped — Ctrl-C, SIGTERM, `kill -9` — running it again resumes each chunk
//! where it stopped, and at the end every row is there exactly once.
//!
//! On a store that is not the SQLite file (`--store redis://…`) the rows go
//! to a local SQLite file of their own (`--data`), and the checkpoint is a
//! plain `ctx.checkpoint()` after each committed page: after a crash the
//! pages since the last saved checkpoint are imported again (at least
//! once), and the table's (run, id) key keeps each row once.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use stint::sqlite::{open_connection, CtxExt, SqliteStore};
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
    #[arg(long, default_value = "demo-data.db")]
    pub data: String,
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
}

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

fn demo_db(store_url: &str) -> anyhow::Result<String> {
    let path = store_url
        .strip_prefix("sqlite://")
        .or_else(|| store_url.strip_prefix("sqlite:"))
        .with_context(|| {
            format!("the demo imports into the store's SQLite file: give --store sqlite://PATH (got {store_url})")
        })?;
    Ok(path.to_owned())
}

/// Runs the demo against the store at `store_url`; returns the exit code.
pub async fn run(store_url: &str, args: DemoArgs) -> anyhow::Result<i32> {
    let (store, db, keyed): (Arc<dyn Store>, String, bool) = match demo_db(store_url) {
        Ok(db) => (Arc::new(SqliteStore::open(&db)?), db, false),
        Err(_) => {
            let store = stint::connect(store_url)
                .await
                .with_context(|| format!("cannot open {store_url}"))?;
            (store, args.data.clone(), true)
        }
    };
    let conn = open_connection(&db)?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS demo_rows (run INTEGER NOT NULL, id INTEGER NOT NULL, value INTEGER NOT NULL);
         CREATE INDEX IF NOT EXISTS demo_rows_run ON demo_rows (run);",
    )?;
    if keyed {
        conn.execute_batch(
            "CREATE UNIQUE INDEX IF NOT EXISTS demo_rows_key ON demo_rows (run, id);",
        )?;
    }

    let chunks = resume_or_start(&store, &db, keyed, &args).await?;
    let run = chunks[0].1.run;
    let rows: u64 = chunks.iter().map(|(_, c)| c.end).max().unwrap_or(0);

    let worker = Worker::builder(store.clone())
        .register::<DemoImport>()
        .queues([QUEUE])
        .concurrency(chunks.len())
        .shutdown_timeout(Duration::from_secs(2))
        .build();
    let handle = worker.handle();

    let bar = ProgressBar::new(rows);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} rows  {per_sec}  ETA {eta}",
        )?
        .progress_chars("█▉▊▋▌▍▎▏ "),
    );
    let watcher = {
        let store = store.clone();
        let bar = bar.clone();
        let handle = handle.clone();
        let jids: Vec<_> = chunks.iter().map(|(j, _)| j.clone()).collect();
        tokio::spawn(async move {
            loop {
                if let Ok(jobs) = demo_jobs(&store, run).await {
                    let done: u64 = jobs.iter().map(|j| j.checkpoint.done).sum();
                    bar.set_position(done);
                    let ours = jobs.iter().filter(|j| jids.contains(&j.jid));
                    if ours.clone().count() == jids.len()
                        && ours.clone().all(|j| j.state.is_final())
                    {
                        handle.shutdown();
                        return;
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };

    let summary = worker.run().await?;
    watcher.abort();
    let jobs = demo_jobs(&store, run).await?;
    let done: u64 = jobs.iter().map(|j| j.checkpoint.done).sum();
    bar.set_position(done);
    bar.abandon();

    if !jobs.iter().all(|j| j.state == JobState::Succeeded) {
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
        println!("run `stint demo` again to resume from there");
        return Ok(130);
    }

    verify(&conn, run, rows, keyed)
}

/// The chunks of the unfinished run, or a new run's freshly pushed chunks.
async fn resume_or_start(
    store: &Arc<dyn Store>,
    db: &str,
    keyed: bool,
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
            db: db.to_owned(),
            keyed,
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

/// Checks that every row of the run is there exactly once with its value.
fn verify(conn: &rusqlite::Connection, run: u64, rows: u64, keyed: bool) -> anyhow::Result<i32> {
    let (count, distinct, sum): (i64, i64, i64) = conn.query_row(
        "SELECT COUNT(*), COUNT(DISTINCT id), COALESCE(SUM(value), 0) FROM demo_rows WHERE run = ?1",
        [run as i64],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
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
        Ok(0)
    } else if ok {
        println!("every row was imported exactly once");
        Ok(0)
    } else {
        println!("CHECK FAILED: rows are missing, doubled or wrong");
        Ok(1)
    }
}
