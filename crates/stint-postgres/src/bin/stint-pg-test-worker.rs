//! A worker process for this crate's end-to-end tests (feature
//! `test-worker`): `stint-pg-test-worker STORE_URL [CONCURRENCY]`.
//!
//! Jobs: `InsertNumbers` writes numbered rows into a table of its own, with
//! its checkpoint in the same transaction (`checkpoint_pg`) or, for
//! contrast, a plain `checkpoint_n` after each commit; `Count` counts with a
//! plain checkpoint per item. `STINT_LEASE_TTL_MS`, `STINT_POLL_MS` and
//! `STINT_FLUSH_MS` shorten the lease, the idle poll and the flush interval.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use stint_core::{Ctx, Job, JobError, Worker};
use stint_postgres::{CtxExt, PgStore};
use tokio_postgres::NoTls;

/// Writes the numbers `0..n` into `table` (column `n`), `batch` rows per
/// transaction, sleeping `sleep_ms` inside each transaction (so that a kill
/// often lands in the middle of one).
#[derive(Serialize, Deserialize)]
struct InsertNumbers {
    db: String,
    table: String,
    n: u64,
    batch: u64,
    sleep_ms: u64,
    /// The checkpoint in the batch's own transaction (exactly once), or a
    /// plain checkpoint after the commit (at least once).
    transactional: bool,
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

/// Counts to `n`, one plain checkpoint per item, `sleep_ms` per item.
#[derive(Serialize, Deserialize)]
struct Count {
    n: u64,
    sleep_ms: u64,
}

impl Job for Count {
    const KIND: &'static str = "Count";

    async fn perform(&self, ctx: &mut Ctx) -> Result<(), JobError> {
        let mut next: u64 = ctx.cursor()?.unwrap_or(0);
        ctx.set_total(self.n);
        while next < self.n {
            tokio::time::sleep(Duration::from_millis(self.sleep_ms)).await;
            next += 1;
            ctx.checkpoint(&next).await?;
        }
        Ok(())
    }
}

fn env_ms(name: &str) -> Option<Duration> {
    std::env::var(name)
        .ok()?
        .parse()
        .ok()
        .map(Duration::from_millis)
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .expect("usage: stint-pg-test-worker STORE_URL [CONCURRENCY]");
    let concurrency: usize = args
        .next()
        .map(|c| c.parse().expect("concurrency"))
        .unwrap_or(10);
    let store = match PgStore::connect(&url).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    let mut builder = Worker::builder(std::sync::Arc::new(store))
        .register::<InsertNumbers>()
        .register::<Count>()
        .queues(["default"])
        .concurrency(concurrency);
    if let Some(ttl) = env_ms("STINT_LEASE_TTL_MS") {
        builder = builder.lease_ttl(ttl);
    }
    if let Some(poll) = env_ms("STINT_POLL_MS") {
        builder.config_mut().poll_interval = poll;
    }
    if let Some(flush) = env_ms("STINT_FLUSH_MS") {
        builder.config_mut().flush_interval = flush;
    }
    let worker = builder.build();
    eprintln!("READY {}", worker.handle().process_id());
    match worker.run().await {
        Ok(s) => eprintln!("EXIT stints={} handed_back={}", s.stints, s.handed_back),
        Err(e) => {
            eprintln!("worker failed: {e}");
            std::process::exit(1);
        }
    }
}
