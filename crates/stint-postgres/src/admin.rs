//! What operators read — counts, listings, a job with its history — and
//! their commands on whole queues: pausing one, clearing one. The metrics
//! counters are kept by `complete` and `maintenance` in their own
//! statements; here they are read.

use std::collections::HashMap;
use std::time::SystemTime;

use deadpool_postgres::Client;
use stint_core::metrics::{self, Metrics};
use stint_core::model::{
    to_ms, ErrorInfo, Jid, JobDetail, JobState, QueueInfo, Stats, StintRecord,
};
use stint_core::store::JobFilter;
use stint_core::{JobRecord, StoreError, StoreResult};

use crate::processes::processes;
use crate::rows::{job_columns, job_from_row};
use crate::sql::query;

pub async fn stats(c: &Client) -> StoreResult<Stats> {
    let rows = query(
        c,
        "SELECT state, count(*) FROM stint_jobs GROUP BY state",
        &[],
    )
    .await?;
    let counts: HashMap<String, i64> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    let states = JobState::ALL
        .into_iter()
        .map(|s| (s, counts.get(s.as_str()).copied().unwrap_or(0) as u64))
        .collect();
    let rows = query(
        c,
        "SELECT q.name, COALESCE(w.size, 0), COALESCE(p.paused, false),
                (extract(epoch FROM now() - w.oldest) * 1000)::bigint
         FROM (SELECT DISTINCT queue AS name FROM stint_jobs UNION SELECT name FROM stint_queues) q
         LEFT JOIN (SELECT queue, count(*) AS size, min(enqueued_at) AS oldest
                    FROM stint_jobs WHERE state = 'enqueued' GROUP BY queue) w ON w.queue = q.name
         LEFT JOIN stint_queues p ON p.name = q.name
         ORDER BY q.name",
        &[],
    )
    .await?;
    let queues = rows
        .iter()
        .map(|r| QueueInfo {
            name: r.get(0),
            size: r.get::<_, i64>(1) as u64,
            paused: r.get(2),
            latency_ms: r.get::<_, Option<i64>>(3).map(|ms| ms.max(0)),
        })
        .collect();
    Ok(Stats {
        states,
        queues,
        processes: processes(c).await?,
    })
}

pub async fn jobs(c: &Client, f: &JobFilter) -> StoreResult<Vec<JobRecord>> {
    let limit = if f.limit == 0 { 100 } else { f.limit } as i64;
    let sql = format!(
        "SELECT {} FROM stint_jobs
         WHERE ($1::text IS NULL OR state = $1) AND ($2::text IS NULL OR queue = $2)
           AND ($3::text IS NULL OR kind = $3)
         ORDER BY created_at DESC, id DESC LIMIT $4",
        job_columns("")
    );
    let state = f.state.map(|s| s.as_str());
    let rows = query(c, &sql, &[&state, &f.queue, &f.kind, &limit]).await?;
    rows.iter().map(job_from_row).collect()
}

pub async fn job(c: &Client, jid: &Jid) -> StoreResult<Option<JobDetail>> {
    let sql = format!("SELECT {} FROM stint_jobs WHERE jid = $1", job_columns(""));
    let rows = query(c, &sql, &[&jid.as_str()]).await?;
    let Some(row) = rows.first() else {
        return Ok(None);
    };
    let job = job_from_row(row)?;
    let rows = query(
        c,
        "SELECT number, process, started_at, ended_at, outcome, reason, done
         FROM stint_stints WHERE jid = $1 ORDER BY number",
        &[&jid.as_str()],
    )
    .await?;
    let history = rows
        .iter()
        .map(|r| StintRecord {
            number: r.get::<_, i32>(0).max(0) as u32,
            process: r.get(1),
            started_at_ms: to_ms(r.get::<_, SystemTime>(2)),
            ended_at_ms: r.get::<_, Option<SystemTime>>(3).map(to_ms),
            outcome: r.get(4),
            reason: r.get(5),
            done: r.get::<_, i64>(6).max(0) as u64,
        })
        .collect();
    let rows = query(
        c,
        "SELECT info FROM stint_errors WHERE jid = $1 ORDER BY id",
        &[&jid.as_str()],
    )
    .await?;
    let errors = rows
        .iter()
        .map(|r| {
            serde_json::from_value::<ErrorInfo>(r.get(0)).map_err(|e| {
                StoreError::Corrupt(format!("job {jid}: a stored error is not valid: {e}"))
            })
        })
        .collect::<StoreResult<_>>()?;
    Ok(Some(JobDetail {
        job,
        history,
        errors,
    }))
}

/// Pauses or resumes a whole queue; a resumed queue's workers are woken.
pub async fn set_queue_paused(c: &Client, queue: &str, paused: bool) -> StoreResult<()> {
    query(
        c,
        "WITH q AS (
             INSERT INTO stint_queues (name, paused) VALUES ($1, $2)
             ON CONFLICT (name) DO UPDATE SET paused = EXCLUDED.paused
             RETURNING name, paused
         )
         SELECT pg_notify('stint_jobs', name) FROM q WHERE NOT paused",
        &[&queue, &paused],
    )
    .await?;
    Ok(())
}

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
