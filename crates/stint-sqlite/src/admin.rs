//! What operators and the dashboard read (counts, listings, one job with
//! its history, a split parent's children) and their queue-wide commands
//! (pausing a queue, clearing it).

use rusqlite::{params, Connection, OptionalExtension};
use stint_core::model::{
    now_ms, ChildRecord, ErrorInfo, Jid, JobDetail, JobState, QueueInfo, Stats, StintRecord,
};
use stint_core::store::JobFilter;
use stint_core::{JobRecord, StoreResult};

use crate::db::{db_err, exec, query_row};
use crate::processes::processes;
use crate::rows::{job_from_row, JOB_COLUMNS, JOB_COLUMN_COUNT};

pub fn stats(conn: &Connection) -> StoreResult<Stats> {
    let mut counts = std::collections::HashMap::new();
    {
        let mut stmt = conn
            .prepare_cached("SELECT state, COUNT(*) FROM stint_jobs GROUP BY state")
            .map_err(db_err)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
            .map_err(db_err)?;
        for row in rows {
            let (state, n) = row.map_err(db_err)?;
            counts.insert(state, n as u64);
        }
    }
    let states = JobState::ALL
        .into_iter()
        .map(|s| (s, counts.get(s.as_str()).copied().unwrap_or(0)))
        .collect();
    let now = now_ms();
    let mut stmt = conn
        .prepare_cached(
            // Ready and parked jobs apart: each part reads its own index.
            "SELECT q.name,
                    (SELECT COUNT(*) FROM stint_jobs j
                      WHERE j.state = 'enqueued' AND j.blocked IS NULL AND j.queue = q.name)
                    + (SELECT COUNT(*) FROM stint_jobs j
                        WHERE j.state = 'enqueued' AND j.blocked IS NOT NULL AND j.queue = q.name),
                    COALESCE((SELECT paused FROM stint_queues p WHERE p.name = q.name), 0),
                    (SELECT MIN(t) FROM (
                       SELECT MIN(enqueued_at) AS t FROM stint_jobs j
                        WHERE j.state = 'enqueued' AND j.blocked IS NULL AND j.queue = q.name
                       UNION ALL
                       SELECT MIN(enqueued_at) FROM stint_jobs j
                        WHERE j.state = 'enqueued' AND j.blocked IS NOT NULL AND j.queue = q.name))
             FROM (SELECT DISTINCT queue AS name FROM stint_jobs UNION SELECT name FROM stint_queues) q
             ORDER BY q.name",
        )
        .map_err(db_err)?;
    let queues = stmt
        .query_map([], |r| {
            let oldest: Option<i64> = r.get(3)?;
            Ok(QueueInfo {
                name: r.get(0)?,
                size: r.get::<_, i64>(1)? as u64,
                paused: r.get(2)?,
                latency_ms: oldest.map(|t| (now - t).max(0)),
            })
        })
        .map_err(db_err)?
        .collect::<Result<_, _>>()
        .map_err(db_err)?;
    Ok(Stats {
        states,
        queues,
        processes: processes(conn)?,
    })
}

pub fn jobs(conn: &Connection, f: &JobFilter) -> StoreResult<Vec<JobRecord>> {
    let limit = if f.limit == 0 { 100 } else { f.limit } as i64;
    let sql = format!(
        "SELECT {JOB_COLUMNS} FROM stint_jobs
         WHERE (?1 IS NULL OR state = ?1) AND (?2 IS NULL OR queue = ?2) AND (?3 IS NULL OR kind = ?3)
         ORDER BY created_at DESC, rowid DESC LIMIT ?4"
    );
    let mut stmt = conn.prepare_cached(&sql).map_err(db_err)?;
    let rows = stmt
        .query_map(
            params![f.state.map(|s| s.as_str()), f.queue, f.kind, limit],
            job_from_row,
        )
        .map_err(db_err)?;
    rows.collect::<Result<_, _>>().map_err(db_err)
}

pub fn job(conn: &Connection, jid: &Jid) -> StoreResult<Option<JobDetail>> {
    let job = query_row(
        conn,
        &format!("SELECT {JOB_COLUMNS} FROM stint_jobs WHERE jid = ?1"),
        [jid.as_str()],
        job_from_row,
    )
    .optional()
    .map_err(db_err)?;
    let Some(job) = job else {
        return Ok(None);
    };
    let mut stmt = conn
        .prepare_cached(
            "SELECT number, process, started_at, ended_at, outcome, reason, done
             FROM stint_stints WHERE jid = ?1 ORDER BY number",
        )
        .map_err(db_err)?;
    let history = stmt
        .query_map([jid.as_str()], |r| {
            Ok(StintRecord {
                number: r.get(0)?,
                process: r.get(1)?,
                started_at_ms: r.get(2)?,
                ended_at_ms: r.get(3)?,
                outcome: r.get(4)?,
                reason: r.get(5)?,
                done: r.get::<_, i64>(6)? as u64,
            })
        })
        .map_err(db_err)?
        .collect::<Result<_, _>>()
        .map_err(db_err)?;
    let mut stmt = conn
        .prepare_cached(
            "SELECT at, attempt, message, chain FROM stint_errors WHERE jid = ?1 ORDER BY rowid",
        )
        .map_err(db_err)?;
    let errors = stmt
        .query_map([jid.as_str()], |r| {
            let chain: String = r.get(3)?;
            Ok(ErrorInfo {
                at_ms: r.get(0)?,
                attempt: r.get(1)?,
                message: r.get(2)?,
                chain: serde_json::from_str(&chain).unwrap_or_default(),
            })
        })
        .map_err(db_err)?
        .collect::<Result<_, _>>()
        .map_err(db_err)?;
    Ok(Some(JobDetail {
        job,
        history,
        errors,
    }))
}

/// The children of a split job, in the order they were pushed.
pub fn children(conn: &Connection, parent: &Jid) -> StoreResult<Vec<ChildRecord>> {
    let sql = format!(
        "SELECT {JOB_COLUMNS}, parent_step, result FROM stint_jobs WHERE parent = ?1 ORDER BY rowid"
    );
    let mut stmt = conn.prepare_cached(&sql).map_err(db_err)?;
    let rows = stmt
        .query_map([parent.as_str()], |r| {
            let result: Option<String> = r.get(JOB_COLUMN_COUNT + 1)?;
            Ok(ChildRecord {
                job: job_from_row(r)?,
                step: r
                    .get::<_, Option<String>>(JOB_COLUMN_COUNT)?
                    .unwrap_or_default(),
                result: result.and_then(|t| serde_json::from_str(&t).ok()),
            })
        })
        .map_err(db_err)?;
    rows.collect::<Result<_, _>>().map_err(db_err)
}

pub fn set_queue_paused(tx: &Connection, queue: &str, paused: bool) -> StoreResult<()> {
    exec(
        tx,
        "INSERT INTO stint_queues (name, paused) VALUES (?1, ?2)
         ON CONFLICT (name) DO UPDATE SET paused = excluded.paused",
        params![queue, paused],
    )
    .map_err(db_err)?;
    Ok(())
}

/// Deletes the enqueued jobs of `queue`, with their history and errors.
/// Children of a split parent that waits for them stay: deleting them would
/// leave the parent waiting forever.
pub fn clear_queue(tx: &Connection, queue: &str) -> StoreResult<u64> {
    let doomed = "SELECT j.jid FROM stint_jobs j
         WHERE j.state = 'enqueued' AND j.queue = ?1
           AND NOT EXISTS (SELECT 1 FROM stint_jobs p WHERE p.jid = j.parent AND p.state = 'waiting')";
    for table in ["stint_stints", "stint_errors"] {
        exec(
            tx,
            &format!("DELETE FROM {table} WHERE jid IN ({doomed})"),
            [queue],
        )
        .map_err(db_err)?;
    }
    let n = exec(
        tx,
        &format!("DELETE FROM stint_jobs WHERE jid IN ({doomed})"),
        [queue],
    )
    .map_err(db_err)?;
    Ok(n as u64)
}
