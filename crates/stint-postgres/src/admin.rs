//! The dashboard's commands — clearing a queue, deleting a job, quiet or
//! stop for a worker process — and the metrics counters (kept by
//! `transitions::complete` and `recover_orphans` in their own statements).

use deadpool_postgres::Client;
use stint_core::metrics::{self, Metrics};
use stint_core::model::{Jid, JobState, ProcessCommand};
use stint_core::{StoreError, StoreResult};

use crate::pg_err;
use crate::transitions::query;

/// Deletes the enqueued jobs of `queue`, with their history and errors
/// (foreign keys cascade). Children of a split parent that waits for them
/// stay: deleting them would leave the parent waiting forever.
pub async fn clear_queue(c: &Client, queue: &str) -> StoreResult<u64> {
    let rows = query(
        c,
        "WITH d AS (
             DELETE FROM stint_jobs j
             WHERE j.state = 'enqueued' AND j.queue = $1
               AND NOT EXISTS (SELECT 1 FROM stint_jobs p WHERE p.jid = j.parent AND p.state = 'waiting')
             RETURNING 1
         )
         SELECT count(*) FROM d",
        &[&queue],
    )
    .await?;
    Ok(rows[0].get::<_, i64>(0) as u64)
}

/// Deletes a job that is not running, not a waiting split parent and not an
/// unfinished child of one; in one transaction on the locked row.
pub async fn delete(c: &mut Client, jid: &Jid) -> StoreResult<()> {
    let tx = c.transaction().await.map_err(pg_err)?;
    let row = tx
        .query_opt(
            "SELECT j.state, (SELECT p.state FROM stint_jobs p WHERE p.jid = j.parent)
             FROM stint_jobs j WHERE j.jid = $1 FOR UPDATE OF j",
            &[&jid.as_str()],
        )
        .await
        .map_err(pg_err)?
        .ok_or_else(|| StoreError::NotFound(jid.clone()))?;
    let state: JobState = row.get::<_, &str>(0).parse().map_err(StoreError::Corrupt)?;
    let parent_state: Option<&str> = row.get(1);
    stint_core::lifecycle::check_deletable(jid, state, parent_state == Some("waiting"))?;
    tx.execute("DELETE FROM stint_jobs WHERE jid = $1", &[&jid.as_str()])
        .await
        .map_err(pg_err)?;
    tx.commit().await.map_err(pg_err)
}

/// Records an operator's command to a live process; a stop is never
/// downgraded to a quiet.
pub async fn command_process(
    c: &Client,
    process: &str,
    command: ProcessCommand,
) -> StoreResult<()> {
    let rows = query(
        c,
        "UPDATE stint_processes SET command = CASE WHEN command = 'stop' THEN 'stop' ELSE $2 END
         WHERE id = $1 AND expires_at >= now() RETURNING 1",
        &[&process, &command.as_str()],
    )
    .await?;
    if rows.is_empty() {
        return Err(StoreError::NoProcess(process.to_owned()));
    }
    Ok(())
}

pub async fn process_command(c: &Client, process: &str) -> StoreResult<Option<ProcessCommand>> {
    let rows = query(
        c,
        "SELECT command FROM stint_processes WHERE id = $1",
        &[&process],
    )
    .await?;
    Ok(rows
        .first()
        .and_then(|r| r.get::<_, Option<&str>>(0))
        .and_then(ProcessCommand::parse))
}

pub async fn metrics(c: &Client) -> StoreResult<Metrics> {
    let rows = query(c, "SELECT kind, queue, name, value FROM stint_metrics", &[]).await?;
    Ok(metrics::from_rows(rows.iter().map(|r| {
        (
            r.get::<_, String>(0),
            r.get::<_, String>(1),
            r.get::<_, String>(2),
            r.get::<_, i64>(3).max(0) as u64,
        )
    })))
}
