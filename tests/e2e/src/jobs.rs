//! Jobs the test worker runs, whatever the store. Each records what it did
//! in tables of the SQLite file given by `db` (the store's own file on the
//! SQLite store, a file beside the store otherwise), on its own connection,
//! so a test can see where every stint started.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use stint::postgres::CtxExt as _;
use stint::sqlite::{open_connection, CtxExt as _};
use stint::{Ctx, Job, JobError};

/// Counts to `n`, one checkpoint per item, `sleep_ms` per item; records
/// each stint's start in `db` unless it is empty.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct Count {
    pub n: u64,
    pub sleep_ms: u64,
    #[serde(default)]
    pub db: String,
}

/// The cursor of `Count` as a later version of the code expects it (a
/// struct), to test a checkpoint that no longer deserializes.
#[derive(Serialize, Deserialize, Debug)]
pub struct CursorV2 {
    pub page: u64,
}

pub fn init_tables(db: &str) {
    let conn = open_connection(db).expect("open test db");
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS e2e_starts (jid TEXT NOT NULL, stint INTEGER NOT NULL, cursor INTEGER,
                                                 pid INTEGER NOT NULL);
         -- rows written by InsertRows; no unique key, so a row written twice shows
         CREATE TABLE IF NOT EXISTS e2e_rows (jid TEXT NOT NULL, n INTEGER NOT NULL);
         CREATE INDEX IF NOT EXISTS e2e_rows_jid ON e2e_rows (jid);",
    )
    .expect("create e2e tables");
}

fn record_start(db: &str, ctx: &Ctx, cursor: Option<u64>) -> Result<(), JobError> {
    if db.is_empty() {
        return Ok(());
    }
    let conn = open_connection(db)?;
    conn.execute(
        "INSERT INTO e2e_starts (jid, stint, cursor, pid) VALUES (?1, ?2, ?3, ?4)",
        rusqlite::params![
            ctx.jid().as_str(),
            ctx.stint(),
            cursor.map(|c| c as i64),
            std::process::id()
        ],
    )?;
    Ok(())
}

impl Job for Count {
    const KIND: &'static str = "Count";

    async fn perform(&self, ctx: &mut Ctx) -> Result<(), JobError> {
        let mut next: u64 = if std::env::var_os("STINT_E2E_CURSOR_V2").is_some() {
            ctx.cursor::<CursorV2>()?.map(|c| c.page).unwrap_or(0)
        } else {
            ctx.cursor()?.unwrap_or(0)
        };
        record_start(&self.db, ctx, ctx.cursor::<u64>().ok().flatten())?;
        ctx.set_total(self.n);
        while next < self.n {
            if self.sleep_ms > 0 {
                tokio::time::sleep(Duration::from_millis(self.sleep_ms)).await;
            }
            next += 1;
            ctx.checkpoint(&next).await?;
        }
        Ok(())
    }
}

/// Does nothing (throughput and recovery tests).
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct Noop {}

impl Job for Noop {
    const KIND: &'static str = "Noop";
    async fn perform(&self, _ctx: &mut Ctx) -> Result<(), JobError> {
        Ok(())
    }
}

/// Inserts rows numbered `0..n` into `e2e_rows` (tagged with its jid), in
/// batches of `batch`, each batch one `BEGIN IMMEDIATE` transaction, with a
/// pause of `sleep_ms` before each batch.
///
/// With `transactional`, each batch's checkpoint is written in the batch's
/// own transaction (`checkpoint_tx`): whatever kills the process, every
/// number ends up in the table exactly once. Without, the batch commits on
/// its own and the progress is saved by a plain `checkpoint_n`, at most once
/// per flush interval: after a kill the batches since the last save are
/// written again (at least once).
///
/// With `pg` (the PostgreSQL store's own database URL) the rows go to the
/// table `e2e_rows` of that database instead, and a transactional
/// checkpoint is `checkpoint_pg` in the batch's transaction.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct InsertRows {
    pub n: u64,
    pub batch: u64,
    pub sleep_ms: u64,
    pub db: String,
    pub transactional: bool,
    #[serde(default)]
    pub pg: Option<String>,
}

/// The table `InsertRows` writes to in a PostgreSQL database.
pub const PG_ROWS_TABLE: &str =
    "CREATE TABLE IF NOT EXISTS e2e_rows (jid text NOT NULL, n bigint NOT NULL)";

impl InsertRows {
    async fn perform_pg(&self, url: &str, ctx: &mut Ctx) -> Result<(), JobError> {
        let mut next: u64 = ctx.cursor()?.unwrap_or(0);
        record_start(&self.db, ctx, ctx.cursor::<u64>().ok().flatten())?;
        ctx.set_total(self.n);
        let (mut client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
        let driver = tokio::spawn(conn);
        let jid = ctx.jid().as_str().to_owned();
        let stop = ctx.interrupted();
        while next < self.n {
            if self.sleep_ms > 0 {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(self.sleep_ms)) => {}
                    _ = stop.cancelled() => {}
                }
            }
            let upto = (next + self.batch.max(1)).min(self.n);
            let tx = client.transaction().await?;
            tx.execute(
                "INSERT INTO e2e_rows (jid, n) SELECT $1, generate_series($2::bigint, $3::bigint - 1)",
                &[&jid, &(next as i64), &(upto as i64)],
            )
            .await?;
            if self.transactional {
                // Rows and progress commit together, or not at all.
                ctx.checkpoint_pg(&tx, &upto, upto - next).await?;
                tx.commit().await?;
            } else {
                tx.commit().await?;
                ctx.checkpoint_n(&upto, upto - next).await?;
            }
            next = upto;
        }
        driver.abort();
        Ok(())
    }
}

impl Job for InsertRows {
    const KIND: &'static str = "InsertRows";

    async fn perform(&self, ctx: &mut Ctx) -> Result<(), JobError> {
        if let Some(url) = &self.pg {
            return self.perform_pg(url, ctx).await;
        }
        let mut next: u64 = ctx.cursor()?.unwrap_or(0);
        record_start(&self.db, ctx, ctx.cursor::<u64>().ok().flatten())?;
        ctx.set_total(self.n);
        let mut conn = open_connection(&self.db)?;
        let jid = ctx.jid().as_str().to_owned();
        let stop = ctx.interrupted();
        while next < self.n {
            if self.sleep_ms > 0 {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(self.sleep_ms)) => {}
                    _ = stop.cancelled() => {}
                }
            }
            let upto = (next + self.batch.max(1)).min(self.n);
            tokio::task::block_in_place(|| -> Result<(), JobError> {
                let tx =
                    conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                {
                    let mut insert =
                        tx.prepare_cached("INSERT INTO e2e_rows (jid, n) VALUES (?1, ?2)")?;
                    for i in next..upto {
                        insert.execute(rusqlite::params![jid, i as i64])?;
                    }
                }
                if self.transactional {
                    // Rows and progress commit together, or not at all.
                    ctx.checkpoint_tx(&tx, &upto, upto - next)?;
                }
                tx.commit()?;
                Ok(())
            })?;
            if !self.transactional {
                ctx.checkpoint_n(&upto, upto - next).await?;
            }
            next = upto;
        }
        Ok(())
    }
}

/// Kills its own process (SIGKILL) at the start of every stint, without a
/// checkpoint: a poison pill. Records each start in `db` first.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct KillSelf {
    pub db: String,
}

impl Job for KillSelf {
    const KIND: &'static str = "KillSelf";

    async fn perform(&self, ctx: &mut Ctx) -> Result<(), JobError> {
        record_start(&self.db, ctx, None)?;
        // SAFETY: kill(2) on this very process.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
        std::future::pending().await
    }
}
