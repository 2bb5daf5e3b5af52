//! Split jobs for the end-to-end tests: a parent summing `0..n` through
//! chunk children, recording each chunk's stints and each merge, so a test
//! can see that chunks resume from their checkpoints and that the merge
//! runs exactly once.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use stint::sqlite::open_connection;
use stint::{Ctx, Job, JobError, Push, SplitPolicy};

pub fn init_tables(db: &str) {
    open_connection(db)
        .expect("open test db")
        .execute_batch(
            "CREATE TABLE IF NOT EXISTS e2e_chunk_starts (jid TEXT NOT NULL, stint INTEGER NOT NULL,
                                                           from_n INTEGER NOT NULL, cursor INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS e2e_merges (jid TEXT NOT NULL, total INTEGER NOT NULL,
                                                     succeeded INTEGER NOT NULL, failed INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS e2e_split_starts (jid TEXT NOT NULL, stint INTEGER NOT NULL);",
        )
        .expect("create split tables");
}

/// Sums `0..n` by splitting into `chunks` children.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct SplitSum {
    pub n: u64,
    pub chunks: u64,
    pub sleep_ms: u64,
    pub db: String,
    /// Resume with the failures listed instead of failing.
    pub collect: bool,
    /// This chunk fails for good.
    pub failing_chunk: Option<u64>,
}

/// One chunk of `SplitSum`: sums `from..to`, one checkpoint per item.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct SumChunk {
    pub from: u64,
    pub to: u64,
    pub sleep_ms: u64,
    pub db: String,
    pub fail: bool,
}

impl Job for SplitSum {
    const KIND: &'static str = "SplitSum";

    async fn perform(&self, ctx: &mut Ctx) -> Result<(), JobError> {
        open_connection(&self.db)?.execute(
            "INSERT INTO e2e_split_starts (jid, stint) VALUES (?1, ?2)",
            rusqlite::params![ctx.jid().as_str(), ctx.stint()],
        )?;
        let per = self.n.div_ceil(self.chunks);
        let policy = if self.collect {
            SplitPolicy::Collect
        } else {
            SplitPolicy::FailParent
        };
        let push = Push::new().max_attempts(1);
        let results = ctx
            .split_with("chunks", policy, push, || {
                (0..self.chunks)
                    .map(|i| SumChunk {
                        from: i * per,
                        to: ((i + 1) * per).min(self.n),
                        sleep_ms: self.sleep_ms,
                        db: self.db.clone(),
                        fail: self.failing_chunk == Some(i),
                    })
                    .collect()
            })
            .await?;
        let mut total = 0u64;
        let mut failed = 0;
        for r in &results {
            match r.value::<u64>()? {
                Some(v) if r.succeeded() => total += v,
                _ => failed += 1,
            }
        }
        open_connection(&self.db)?.execute(
            "INSERT INTO e2e_merges (jid, total, succeeded, failed) VALUES (?1, ?2, ?3, ?4)",
            rusqlite::params![
                ctx.jid().as_str(),
                total as i64,
                (results.len() - failed) as i64,
                failed as i64
            ],
        )?;
        Ok(())
    }
}

impl Job for SumChunk {
    const KIND: &'static str = "SumChunk";

    async fn perform(&self, ctx: &mut Ctx) -> Result<(), JobError> {
        if self.fail {
            return Err(JobError::fatal(format!(
                "chunk {}..{} cannot be read",
                self.from, self.to
            )));
        }
        let (mut next, mut sum): (u64, u64) = ctx.cursor()?.unwrap_or((self.from, 0));
        open_connection(&self.db)?.execute(
            "INSERT INTO e2e_chunk_starts (jid, stint, from_n, cursor) VALUES (?1, ?2, ?3, ?4)",
            rusqlite::params![
                ctx.jid().as_str(),
                ctx.stint(),
                self.from as i64,
                next as i64
            ],
        )?;
        ctx.set_total(self.to - self.from);
        while next < self.to {
            if self.sleep_ms > 0 {
                tokio::time::sleep(Duration::from_millis(self.sleep_ms)).await;
            }
            sum += next;
            next += 1;
            ctx.checkpoint(&(next, sum)).await?;
        }
        ctx.set_result(&sum)?;
        Ok(())
    }
}
