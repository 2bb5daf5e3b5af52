//! The chaos test's job (`tests/e2e/tests/chaos.rs`): numbered rows written
//! in batches, as `InsertRows` does, each row tagged with the stint and the
//! process that wrote it, and each batch's start recorded on the side (which
//! process began which items when), so the test can tell whether two stints
//! of one job ever ran at once.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use stint::postgres::CtxExt as _;
use stint::sqlite::{open_connection, CtxExt as _};
use stint::{Ctx, Job, JobError};

/// Writes the rows `0..n` into `chaos_rows` (`jid`, `n`, `stint`, `pid`),
/// `batch` rows per transaction, after `sleep_ms` of "work" per batch.
///
/// Before each batch it records in `chaos_batches` of the SQLite file `db`
/// (on a connection of its own, committed at once) the stint, the process,
/// the items and the wall-clock time (µs) at which the batch began: when the
/// job's code resumed from the await before it. (A process frozen in the
/// synchronous code after that finishes the batch when it is thawed, as no
/// runtime can prevent; it must not begin another.)
///
/// The rows go to the SQLite file `db` (the store's own file on the SQLite
/// store), or to the PostgreSQL database `pg`. With `transactional`, each
/// batch commits with its checkpoint (`checkpoint_tx`, `checkpoint_pg`):
/// every row exactly once. Without, the checkpoint is a plain
/// `checkpoint_n` after the commit (at least once; Redis).
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct ChaosRows {
    pub n: u64,
    pub batch: u64,
    pub sleep_ms: u64,
    pub db: String,
    pub transactional: bool,
    #[serde(default)]
    pub pg: Option<String>,
}

/// `chaos_rows` in a PostgreSQL database.
pub const PG_ROWS_TABLE: &str = "CREATE TABLE IF NOT EXISTS chaos_rows \
     (jid text NOT NULL, n bigint NOT NULL, stint integer NOT NULL, pid integer NOT NULL)";

/// Creates `chaos_rows` and `chaos_batches` in the SQLite file `db`.
pub fn init_tables(db: &str) {
    let conn = open_connection(db).expect("open the records file");
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS chaos_rows (jid TEXT NOT NULL, n INTEGER NOT NULL,
                                                 stint INTEGER NOT NULL, pid INTEGER NOT NULL);
         CREATE INDEX IF NOT EXISTS chaos_rows_jid ON chaos_rows (jid);
         CREATE TABLE IF NOT EXISTS chaos_batches (jid TEXT NOT NULL, stint INTEGER NOT NULL,
                                                   pid INTEGER NOT NULL, first INTEGER NOT NULL,
                                                   upto INTEGER NOT NULL, begun_us INTEGER NOT NULL);",
    )
    .expect("create the chaos tables");
}

/// Now, in µs since the epoch.
pub fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

impl ChaosRows {
    /// Records that the batch `first..upto` began at `begun_us`.
    fn record_batch(
        conn: &rusqlite::Connection,
        ctx: &Ctx,
        first: u64,
        upto: u64,
        begun_us: i64,
    ) -> Result<(), JobError> {
        tokio::task::block_in_place(|| {
            conn.execute(
                "INSERT INTO chaos_batches (jid, stint, pid, first, upto, begun_us)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                rusqlite::params![
                    ctx.jid().as_str(),
                    ctx.stint(),
                    std::process::id(),
                    first as i64,
                    upto as i64,
                    begun_us
                ],
            )
        })?;
        Ok(())
    }

    async fn perform_pg(&self, url: &str, ctx: &mut Ctx) -> Result<(), JobError> {
        let mut next: u64 = ctx.cursor()?.unwrap_or(0);
        ctx.set_total(self.n);
        let (mut client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
        let driver = tokio::spawn(conn);
        let jid = ctx.jid().as_str().to_owned();
        let (stint, pid) = (ctx.stint() as i32, std::process::id() as i32);
        let side = open_connection(&self.db)?;
        while next < self.n {
            tokio::time::sleep(Duration::from_millis(self.sleep_ms)).await;
            // The batch begins as the job's code resumes from its last await.
            let begun = now_us();
            let upto = (next + self.batch.max(1)).min(self.n);
            Self::record_batch(&side, ctx, next, upto, begun)?;
            let tx = client.transaction().await?;
            tx.execute(
                "INSERT INTO chaos_rows (jid, n, stint, pid) \
                 SELECT $1, generate_series($2::bigint, $3::bigint - 1), $4, $5",
                &[&jid, &(next as i64), &(upto as i64), &stint, &pid],
            )
            .await?;
            if self.transactional {
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

impl Job for ChaosRows {
    const KIND: &'static str = "ChaosRows";

    async fn perform(&self, ctx: &mut Ctx) -> Result<(), JobError> {
        if let Some(url) = &self.pg {
            return self.perform_pg(url, ctx).await;
        }
        let mut next: u64 = ctx.cursor()?.unwrap_or(0);
        ctx.set_total(self.n);
        let mut conn = open_connection(&self.db)?;
        let jid = ctx.jid().as_str().to_owned();
        let (stint, pid) = (ctx.stint(), std::process::id());
        let side = open_connection(&self.db)?;
        while next < self.n {
            tokio::time::sleep(Duration::from_millis(self.sleep_ms)).await;
            // The batch begins as the job's code resumes from its last await.
            let begun = now_us();
            let upto = (next + self.batch.max(1)).min(self.n);
            Self::record_batch(&side, ctx, next, upto, begun)?;
            tokio::task::block_in_place(|| -> Result<(), JobError> {
                let tx =
                    conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                {
                    let mut insert = tx.prepare_cached(
                        "INSERT INTO chaos_rows (jid, n, stint, pid) VALUES (?1, ?2, ?3, ?4)",
                    )?;
                    for i in next..upto {
                        insert.execute(rusqlite::params![jid, i as i64, stint, pid])?;
                    }
                }
                if self.transactional {
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
