//! A big import split into resumable chunks that run in parallel, and a
//! merge that writes a summary once every chunk is done.
//!
//! ```sh
//! cargo run -p stint --example split_import -- [ROWS] [CHUNKS] [DB]
//! ```
//!
//! Each chunk inserts its rows and its checkpoint in one SQLite transaction,
//! so a chunk stopped by a deploy or a crash resumes exactly where it
//! stopped. The parent splits itself once (an atomic step: never twice),
//! waits without holding a worker slot, and merges the chunks' results.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use stint::sqlite::{open_connection, CtxExt, SqliteStore};
use stint::{Client, Ctx, Job, JobError, JobState, Worker};

/// The parent: split `rows` into `chunks`, then merge.
#[derive(Serialize, Deserialize)]
struct BigImport {
    rows: u64,
    chunks: u64,
    db: String,
}

/// One chunk: rows `from..to`.
#[derive(Serialize, Deserialize)]
struct ImportChunk {
    from: u64,
    to: u64,
    db: String,
}

/// What a chunk returns to the merge.
#[derive(Serialize, Deserialize, Default)]
struct ChunkSummary {
    rows: u64,
    sum: u64,
}

impl Job for BigImport {
    const KIND: &'static str = "BigImport";

    async fn perform(&self, ctx: &mut Ctx) -> Result<(), JobError> {
        ctx.step("create table", async {
            open_connection(&self.db)?.execute_batch(
                "CREATE TABLE IF NOT EXISTS items (id INTEGER NOT NULL, value INTEGER NOT NULL);
                 CREATE TABLE IF NOT EXISTS import_summary (rows INTEGER, sum INTEGER, chunks INTEGER);",
            )?;
            Ok(())
        })
        .await?;

        let per = self.rows.div_ceil(self.chunks);
        let results = ctx
            .split("chunks", || {
                (0..self.chunks)
                    .map(|i| ImportChunk {
                        from: i * per,
                        to: ((i + 1) * per).min(self.rows),
                        db: self.db.clone(),
                    })
                    .collect()
            })
            .await?;

        // The merge: runs once, after every chunk succeeded.
        let mut total = ChunkSummary::default();
        for r in &results {
            let s: ChunkSummary = r.value()?.unwrap_or_default();
            total.rows += s.rows;
            total.sum += s.sum;
        }
        open_connection(&self.db)?.execute(
            "INSERT INTO import_summary (rows, sum, chunks) VALUES (?1, ?2, ?3)",
            rusqlite::params![total.rows as i64, total.sum as i64, results.len() as i64],
        )?;
        println!(
            "merged {} chunks: {} rows, sum {}",
            results.len(),
            total.rows,
            total.sum
        );
        Ok(())
    }
}

impl Job for ImportChunk {
    const KIND: &'static str = "ImportChunk";

    async fn perform(&self, ctx: &mut Ctx) -> Result<(), JobError> {
        let mut next: u64 = ctx.cursor()?.unwrap_or(self.from);
        ctx.set_total(self.to - self.from);
        let mut conn = open_connection(&self.db)?;
        while next < self.to {
            let upto = (next + 500).min(self.to);
            tokio::task::block_in_place(|| -> Result<(), JobError> {
                let tx =
                    conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                for id in next..upto {
                    tx.execute(
                        "INSERT INTO items (id, value) VALUES (?1, ?2)",
                        [id as i64, (id * 7 % 1000) as i64],
                    )?;
                }
                ctx.checkpoint_tx(&tx, &upto, upto - next)?;
                tx.commit()?;
                Ok(())
            })?;
            next = upto;
            tokio::task::yield_now().await;
        }
        // The chunk's summary, read back from what it committed.
        let (rows, sum): (i64, i64) = conn.query_row(
            "SELECT COUNT(*), COALESCE(SUM(value), 0) FROM items WHERE id >= ?1 AND id < ?2",
            [self.from as i64, self.to as i64],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        ctx.set_result(&ChunkSummary {
            rows: rows as u64,
            sum: sum as u64,
        })?;
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().with_env_filter("warn").init();
    let mut args = std::env::args().skip(1);
    let rows: u64 = args
        .next()
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(100_000);
    let chunks: u64 = args.next().map(|a| a.parse()).transpose()?.unwrap_or(8);
    let dir = tempfile_dir();
    let db = args
        .next()
        .unwrap_or_else(|| format!("{dir}/split-import.db"));

    let store = std::sync::Arc::new(SqliteStore::open(&db)?);
    let jid = Client::new(store.clone())
        .push(&BigImport {
            rows,
            chunks,
            db: db.clone(),
        })
        .await?;
    let worker = Worker::builder(store.clone())
        .register::<BigImport>()
        .register::<ImportChunk>()
        .concurrency(chunks as usize)
        .build();
    let handle = worker.handle();
    let running = tokio::spawn(worker.run());
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let job = stint::Store::job(store.as_ref(), &jid)
            .await?
            .expect("the parent exists");
        if job.job.state.is_final() {
            println!("parent {jid}: {}", job.job.state);
            handle.shutdown();
            running.await??;
            if job.job.state != JobState::Succeeded {
                return Err(format!("the import did not succeed: {:?}", job.job.reason).into());
            }
            break;
        }
    }
    let conn = open_connection(&db)?;
    let (count, distinct): (i64, i64) =
        conn.query_row("SELECT COUNT(*), COUNT(DISTINCT id) FROM items", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
    println!("items table: {count} rows, {distinct} distinct (expected {rows})");
    if count as u64 != rows || distinct as u64 != rows {
        return Err("rows missing or doubled".into());
    }
    Ok(())
}

/// A fresh directory under the system's temp dir.
fn tempfile_dir() -> String {
    let dir = std::env::temp_dir().join(format!("stint-example-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir.to_string_lossy().into_owned()
}
