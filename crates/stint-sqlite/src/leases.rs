//! Leases: taking jobs from their queues into a process's hands, and the
//! checkpoints a stint saves under its lease.

use std::collections::HashSet;

use rusqlite::{params, Connection, OptionalExtension};
use stint_core::model::{now_ms, Checkpoint, Control};
use stint_core::store::{Lease, Leased};
use stint_core::{StoreError, StoreResult};

use crate::db::{db_err, to_json};
use crate::rows::{job_from_row, JOB_COLUMNS};

pub fn fetch(
    tx: &Connection,
    process: &str,
    queues: &[String],
    limit: usize,
) -> StoreResult<Vec<Leased>> {
    let paused: HashSet<String> = {
        let mut stmt = tx
            .prepare_cached("SELECT name FROM stint_queues WHERE paused = 1")
            .map_err(db_err)?;
        let rows = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(db_err)?;
        rows.collect::<Result<_, _>>().map_err(db_err)?
    };
    let now = now_ms();
    let mut out = Vec::new();
    let sql = format!(
        "UPDATE stint_jobs SET state = 'running', process = ?1, stints = stints + 1, run_at = ?2, control = NULL
         WHERE jid IN (SELECT jid FROM stint_jobs WHERE state = 'enqueued' AND queue = ?3 ORDER BY seq LIMIT ?4)
         RETURNING {JOB_COLUMNS}, seq"
    );
    for queue in queues {
        let want = limit - out.len();
        if want == 0 {
            break;
        }
        if paused.contains(queue) {
            continue;
        }
        let mut stmt = tx.prepare_cached(&sql).map_err(db_err)?;
        let rows = stmt
            .query_map(params![process, now, queue, want as i64], |r| {
                Ok((job_from_row(r)?, r.get::<_, i64>(18)?))
            })
            .map_err(db_err)?;
        let mut batch: Vec<_> = rows.collect::<Result<_, _>>().map_err(db_err)?;
        batch.sort_by_key(|(_, seq)| *seq);
        let mut hist = tx
            .prepare_cached(
                "INSERT OR REPLACE INTO stint_stints (jid, number, process, started_at, done) VALUES (?1, ?2, ?3, ?4, ?5)",
            )
            .map_err(db_err)?;
        for (job, _) in batch {
            hist.execute(params![
                job.jid.as_str(),
                job.stints,
                process,
                now,
                job.checkpoint.done as i64
            ])
            .map_err(db_err)?;
            let lease = Lease {
                jid: job.jid.clone(),
                process: process.to_owned(),
                stint: job.stints,
            };
            out.push(Leased { job, lease });
        }
    }
    Ok(out)
}

/// Saves a running job's checkpoint, fenced by its lease. Shared by the
/// store and by `checkpoint_tx` in a job's own transaction.
pub fn checkpoint(
    conn: &Connection,
    lease: &Lease,
    cp: &Checkpoint,
) -> StoreResult<Option<Control>> {
    let control: Option<Option<String>> = conn
        .prepare_cached(
            // Progress clears the recovery count: only a job whose process
            // keeps dying without it getting any further is given up on.
            "UPDATE stint_jobs SET checkpoint = ?1,
               recoveries = CASE WHEN json_extract(?1, '$.done') > COALESCE(json_extract(checkpoint, '$.done'), 0)
                            THEN 0 ELSE recoveries END
             WHERE jid = ?2 AND state = 'running' AND process = ?3 AND stints = ?4
             RETURNING control",
        )
        .and_then(|mut s| {
            s.query_row(
                params![to_json(cp), lease.jid.as_str(), lease.process, lease.stint],
                |r| r.get(0),
            )
            .optional()
        })
        .map_err(db_err)?;
    match control {
        None => Err(StoreError::LeaseLost(lease.jid.clone())),
        Some(c) => Ok(c.as_deref().and_then(Control::parse)),
    }
}
