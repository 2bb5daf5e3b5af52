//! What operators read, and the commands they give: each command one
//! transaction that locks the job's row first (`SELECT … FOR UPDATE`), so a
//! command and a stint's end never interleave.

use std::collections::HashMap;
use std::time::SystemTime;

use deadpool_postgres::{Client, Transaction};
use futures::future::BoxFuture;
use serde_json::Value;
use stint_core::model::{
    to_ms, Control, ErrorInfo, Jid, JobDetail, JobState, ProcessInfo, QueueInfo, Stats, StintRecord,
};
use stint_core::store::{CommandEffect, JobFilter};
use stint_core::{JobRecord, StoreError, StoreResult};
use tokio_postgres::types::ToSql;

use crate::pg_err;
use crate::rows::{job_columns, job_from_row};
use crate::transitions::query;

pub async fn processes(c: &Client) -> StoreResult<Vec<ProcessInfo>> {
    let rows = query(
        c,
        "SELECT id, hostname, pid, queues, concurrency, started_at, beat_at, busy, quiet
         FROM stint_processes WHERE expires_at >= now() ORDER BY started_at, id",
        &[],
    )
    .await?;
    Ok(rows
        .iter()
        .map(|r| ProcessInfo {
            id: r.get(0),
            hostname: r.get(1),
            pid: r.get::<_, i64>(2) as u32,
            queues: serde_json::from_value(r.get::<_, Value>(3)).unwrap_or_default(),
            concurrency: r.get::<_, i32>(4).max(0) as u32,
            started_at_ms: to_ms(r.get::<_, SystemTime>(5)),
            beat_at_ms: to_ms(r.get::<_, SystemTime>(6)),
            busy: r.get::<_, i32>(7).max(0) as u32,
            quiet: r.get(8),
        })
        .collect())
}

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

/// An operator command on one job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    Pause,
    Resume,
    Cancel,
    Retry,
}

/// Runs `command` in one transaction on the locked job.
pub async fn run(c: &mut Client, jid: &Jid, command: Command) -> StoreResult<CommandEffect> {
    let tx = c.transaction().await.map_err(pg_err)?;
    let effect = apply(&tx, jid, command).await?;
    tx.commit().await.map_err(pg_err)?;
    Ok(effect)
}

/// Applies `command` inside `tx` (a waiting parent's command goes on to
/// its children, hence the boxed recursion).
pub fn apply<'a>(
    tx: &'a Transaction<'a>,
    jid: &'a Jid,
    command: Command,
) -> BoxFuture<'a, StoreResult<CommandEffect>> {
    Box::pin(async move {
        let job = load(tx, jid).await?;
        match command {
            Command::Pause => pause(tx, job).await,
            Command::Resume => resume(tx, job).await,
            Command::Cancel => cancel(tx, job).await,
            Command::Retry => retry(tx, job).await,
        }
    })
}

/// The job, its row locked until the transaction ends.
async fn load(tx: &Transaction<'_>, jid: &Jid) -> StoreResult<JobRecord> {
    let sql = format!(
        "SELECT {} FROM stint_jobs WHERE jid = $1 FOR UPDATE",
        job_columns("")
    );
    let st = tx.prepare_cached(&sql).await.map_err(pg_err)?;
    let row = tx
        .query_opt(&st, &[&jid.as_str()])
        .await
        .map_err(pg_err)?
        .ok_or_else(|| StoreError::NotFound(jid.clone()))?;
    job_from_row(&row)
}

/// Applies `command` to every unfinished child of a waiting parent.
async fn cascade(
    tx: &Transaction<'_>,
    parent: &Jid,
    command: Command,
) -> StoreResult<CommandEffect> {
    let mut children = 0;
    for child in crate::split::open_children(tx, parent).await? {
        match apply(tx, &child, command).await {
            Ok(_) => children += 1,
            // A child the command does not apply to (a resume of one that
            // is not paused) is left as it is.
            Err(StoreError::InvalidState { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(CommandEffect::Cascaded { children })
}

async fn exec(tx: &Transaction<'_>, sql: &str, params: &[&(dyn ToSql + Sync)]) -> StoreResult<()> {
    let st = tx.prepare_cached(sql).await.map_err(pg_err)?;
    tx.execute(&st, params).await.map_err(pg_err)?;
    Ok(())
}

fn invalid(job: &JobRecord, message: &str) -> StoreError {
    StoreError::InvalidState {
        jid: job.jid.clone(),
        state: job.state,
        message: message.to_owned(),
    }
}

async fn set_state(
    tx: &Transaction<'_>,
    jid: &Jid,
    state: JobState,
    reason: &str,
) -> StoreResult<()> {
    exec(
        tx,
        "UPDATE stint_jobs SET state = $2,
           finished_at = CASE WHEN $3 THEN now() ELSE finished_at END, reason = $4
         WHERE jid = $1",
        &[&jid.as_str(), &state.as_str(), &state.is_final(), &reason],
    )
    .await
}

async fn set_control(tx: &Transaction<'_>, jid: &Jid, control: Option<Control>) -> StoreResult<()> {
    exec(
        tx,
        "UPDATE stint_jobs SET control = $2 WHERE jid = $1",
        &[&jid.as_str(), &control.map(|c| c.as_str())],
    )
    .await
}

/// Enqueues a job at the head or the tail of its queue, and wakes workers.
async fn enqueue(tx: &Transaction<'_>, jid: &Jid, at_head: bool, reset: bool) -> StoreResult<()> {
    exec(
        tx,
        "WITH j AS (
             UPDATE stint_jobs SET state = 'enqueued',
               seq = CASE WHEN $2 THEN nextval('stint_head_seq') ELSE nextval('stint_tail_seq') END,
               enqueued_at = now(), run_at = NULL, finished_at = NULL,
               attempts = CASE WHEN $3 THEN 0 ELSE attempts END,
               recoveries = CASE WHEN $3 THEN 0 ELSE recoveries END
             WHERE jid = $1 RETURNING queue
         )
         SELECT pg_notify('stint_jobs', queue) FROM j",
        &[&jid.as_str(), &at_head, &reset],
    )
    .await
}

async fn pause(tx: &Transaction<'_>, job: JobRecord) -> StoreResult<CommandEffect> {
    match job.state {
        JobState::Waiting => cascade(tx, &job.jid, Command::Pause).await,
        JobState::Enqueued | JobState::Scheduled | JobState::Retrying => {
            set_state(tx, &job.jid, JobState::Paused, "paused by operator").await?;
            Ok(CommandEffect::Done(JobState::Paused))
        }
        JobState::Paused => Ok(CommandEffect::Done(JobState::Paused)),
        JobState::Running if job.control == Some(Control::Cancel) => Err(invalid(
            &job,
            "a cancel is already pending; it stops at its next checkpoint",
        )),
        JobState::Running => {
            set_control(tx, &job.jid, Some(Control::Pause)).await?;
            Ok(CommandEffect::Requested(Control::Pause))
        }
        _ => Err(invalid(
            &job,
            "it has ended; only a waiting or running job can be paused",
        )),
    }
}

async fn resume(tx: &Transaction<'_>, job: JobRecord) -> StoreResult<CommandEffect> {
    match job.state {
        JobState::Waiting => cascade(tx, &job.jid, Command::Resume).await,
        JobState::Paused => {
            enqueue(tx, &job.jid, true, false).await?;
            Ok(CommandEffect::Done(JobState::Enqueued))
        }
        JobState::Running if job.control == Some(Control::Pause) => {
            set_control(tx, &job.jid, None).await?;
            Ok(CommandEffect::Withdrawn)
        }
        _ => Err(invalid(&job, "it is not paused")),
    }
}

async fn cancel(tx: &Transaction<'_>, job: JobRecord) -> StoreResult<CommandEffect> {
    match job.state {
        JobState::Waiting => {
            // The parent first, so that its children's ends do not wake it.
            set_state(tx, &job.jid, JobState::Cancelled, "cancelled by operator").await?;
            cascade(tx, &job.jid, Command::Cancel).await
        }
        JobState::Enqueued | JobState::Scheduled | JobState::Retrying | JobState::Paused => {
            set_state(tx, &job.jid, JobState::Cancelled, "cancelled by operator").await?;
            crate::split::wake_parent_of(tx, &job.jid).await?;
            Ok(CommandEffect::Done(JobState::Cancelled))
        }
        JobState::Cancelled => Ok(CommandEffect::Done(JobState::Cancelled)),
        JobState::Running => {
            set_control(tx, &job.jid, Some(Control::Cancel)).await?;
            Ok(CommandEffect::Requested(Control::Cancel))
        }
        _ => Err(invalid(&job, "it has ended; there is nothing to cancel")),
    }
}

async fn retry(tx: &Transaction<'_>, job: JobRecord) -> StoreResult<CommandEffect> {
    match job.state {
        JobState::Dead | JobState::Cancelled | JobState::Retrying | JobState::Scheduled => {
            enqueue(tx, &job.jid, false, job.state == JobState::Dead).await?;
            Ok(CommandEffect::Done(JobState::Enqueued))
        }
        JobState::Enqueued => Ok(CommandEffect::Done(JobState::Enqueued)),
        JobState::Paused => Err(invalid(&job, "use resume for a paused job")),
        _ => Err(invalid(
            &job,
            "only a dead, cancelled, retrying or scheduled job can be retried",
        )),
    }
}

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
