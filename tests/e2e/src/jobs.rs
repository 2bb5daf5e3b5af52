//! Jobs the test worker runs. Each records what it did in tables of the
//! SQLite file given by `db`, on its own connection, so a test can see
//! where every stint started.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use stint::sqlite::open_connection;
use stint::{Ctx, Job, JobError};

/// Counts to `n`, one checkpoint per item, `sleep_ms` per item.
#[derive(Serialize, Deserialize, Debug, Clone)]
pub struct Count {
    pub n: u64,
    pub sleep_ms: u64,
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
                                                 pid INTEGER NOT NULL);",
    )
    .expect("create e2e tables");
}

fn record_start(db: &str, ctx: &Ctx, cursor: Option<u64>) -> Result<(), JobError> {
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
