//! The PostgreSQL crate's exactly-once and restart tests' job: numbered
//! rows written into a table of the job's own, with the checkpoint in each
//! batch's transaction (`checkpoint_pg`) or, for contrast, a plain
//! `checkpoint_n` after each commit.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use stint::postgres::CtxExt as _;
use stint::{Ctx, Job, JobError};
use tokio_postgres::NoTls;

/// Writes the numbers `0..n` into `table` (column `n`), `batch` rows per
/// transaction, sleeping `sleep_ms` inside each transaction (so that a kill
/// often lands in the middle of one).
#[derive(Serialize, Deserialize)]
pub struct InsertNumbers {
    pub db: String,
    pub table: String,
    pub n: u64,
    pub batch: u64,
    pub sleep_ms: u64,
    /// The checkpoint in the batch's own transaction (exactly once), or a
    /// plain checkpoint after the commit (at least once).
    pub transactional: bool,
}

impl Job for InsertNumbers {
    const KIND: &'static str = "InsertNumbers";

    async fn perform(&self, ctx: &mut Ctx) -> Result<(), JobError> {
        if !self
            .table
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(JobError::fatal(format!(
                "job {}: table {:?} is not a plain identifier",
                ctx.jid(),
                self.table
            )));
        }
        let (mut client, conn) = tokio_postgres::connect(&self.db, NoTls).await?;
        let driver = tokio::spawn(conn);
        let mut next: u64 = ctx.cursor()?.unwrap_or(0);
        ctx.set_total(self.n);
        let insert = format!(
            "INSERT INTO {} (n) SELECT generate_series($1::bigint, $2::bigint - 1)",
            self.table
        );
        while next < self.n {
            let upto = (next + self.batch.max(1)).min(self.n);
            let tx = client.transaction().await?;
            tx.execute(&insert, &[&(next as i64), &(upto as i64)])
                .await?;
            tokio::time::sleep(Duration::from_millis(self.sleep_ms)).await;
            if self.transactional {
                // The rows and the progress commit together, or not at all.
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
