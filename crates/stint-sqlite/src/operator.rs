//! What operators read and the commands they give, each command one
//! transaction.

use rusqlite::{params, Connection, OptionalExtension, Transaction};
use stint_core::model::{
    now_ms, Control, ErrorInfo, Jid, JobDetail, JobState, ProcessInfo, QueueInfo, Stats,
    StintRecord,
};
use stint_core::store::{CommandEffect, JobFilter};
use stint_core::{JobRecord, StoreError, StoreResult};

use crate::rows::{job_from_row, JOB_COLUMNS};
use crate::{db_err, exec, query_row};

pub fn processes(conn: &Connection) -> StoreResult<Vec<ProcessInfo>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT id, hostname, pid, queues, concurrency, started_at, beat_at, busy, quiet
             FROM stint_processes WHERE expires_at >= ?1 ORDER BY started_at",
        )
        .map_err(db_err)?;
    let rows = stmt
        .query_map([now_ms()], |r| {
            let queues: String = r.get(3)?;
            Ok(ProcessInfo {
                id: r.get(0)?,
                hostname: r.get(1)?,
                pid: r.get(2)?,
                queues: serde_json::from_str(&queues).unwrap_or_default(),
                concurrency: r.get(4)?,
                started_at_ms: r.get(5)?,
                beat_at_ms: r.get(6)?,
                busy: r.get(7)?,
                quiet: r.get(8)?,
            })
        })
        .map_err(db_err)?;
    rows.collect::<Result<_, _>>().map_err(db_err)
}

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
            "SELECT q.name,
                    (SELECT COUNT(*) FROM stint_jobs j WHERE j.state = 'enqueued' AND j.queue = q.name),
                    COALESCE((SELECT paused FROM stint_queues p WHERE p.name = q.name), 0),
                    (SELECT MIN(enqueued_at) FROM stint_jobs j WHERE j.state = 'enqueued' AND j.queue = q.name)
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

fn load(conn: &Connection, jid: &Jid) -> StoreResult<JobRecord> {
    query_row(
        conn,
        &format!("SELECT {JOB_COLUMNS} FROM stint_jobs WHERE jid = ?1"),
        [jid.as_str()],
        job_from_row,
    )
    .optional()
    .map_err(db_err)?
    .ok_or_else(|| StoreError::NotFound(jid.clone()))
}

pub fn job(conn: &Connection, jid: &Jid) -> StoreResult<Option<JobDetail>> {
    let job = match load(conn, jid) {
        Ok(j) => j,
        Err(StoreError::NotFound(_)) => return Ok(None),
        Err(e) => return Err(e),
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

fn invalid(job: &JobRecord, message: &str) -> StoreError {
    StoreError::InvalidState {
        jid: job.jid.clone(),
        state: job.state,
        message: message.to_owned(),
    }
}

fn set_state(
    tx: &Transaction,
    jid: &Jid,
    state: JobState,
    reason: Option<&str>,
) -> StoreResult<()> {
    let now = now_ms();
    let finished = state.is_final().then_some(now);
    exec(tx,
        "UPDATE stint_jobs SET state = ?2, finished_at = COALESCE(?3, finished_at), reason = COALESCE(?4, reason)
         WHERE jid = ?1",
        params![jid.as_str(), state.as_str(), finished, reason],
    )
    .map_err(db_err)?;
    Ok(())
}

fn set_control(tx: &Transaction, jid: &Jid, control: Option<Control>) -> StoreResult<()> {
    exec(
        tx,
        "UPDATE stint_jobs SET control = ?2 WHERE jid = ?1",
        params![jid.as_str(), control.map(|c| c.as_str())],
    )
    .map_err(db_err)?;
    Ok(())
}

/// Moves a job to the head or tail of its queue.
fn enqueue(
    tx: &Transaction,
    job: &JobRecord,
    at_head: bool,
    reset_attempts: bool,
) -> StoreResult<()> {
    let now = now_ms();
    let seq = if at_head {
        crate::transitions::head_seq(tx, &job.queue)?
    } else {
        crate::transitions::next_seq(tx, 1)?
    };
    exec(tx,
        "UPDATE stint_jobs SET state = 'enqueued', seq = ?2, enqueued_at = ?3, run_at = NULL, finished_at = NULL,
           attempts = CASE WHEN ?4 THEN 0 ELSE attempts END,
           recoveries = CASE WHEN ?4 THEN 0 ELSE recoveries END
         WHERE jid = ?1",
        params![job.jid.as_str(), seq, now, reset_attempts],
    )
    .map_err(db_err)?;
    Ok(())
}

/// Applies `command` to every unfinished child of a waiting parent.
fn cascade(
    tx: &Transaction,
    parent: &Jid,
    command: fn(&Transaction, &Jid) -> StoreResult<CommandEffect>,
) -> StoreResult<CommandEffect> {
    let mut children = 0;
    for child in crate::split::open_children(tx, parent)? {
        match command(tx, &child) {
            Ok(_) => children += 1,
            // A child the command does not apply to (a resume of one that
            // is not paused) is left as it is.
            Err(StoreError::InvalidState { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(CommandEffect::Cascaded { children })
}

pub fn pause(tx: &Transaction, jid: &Jid) -> StoreResult<CommandEffect> {
    let job = load(tx, jid)?;
    match job.state {
        JobState::Waiting => cascade(tx, jid, pause),
        JobState::Enqueued | JobState::Scheduled | JobState::Retrying => {
            set_state(tx, jid, JobState::Paused, Some("paused by operator"))?;
            Ok(CommandEffect::Done(JobState::Paused))
        }
        JobState::Paused => Ok(CommandEffect::Done(JobState::Paused)),
        JobState::Running => {
            if job.control == Some(Control::Cancel) {
                return Err(invalid(
                    &job,
                    "a cancel is already pending; it stops at its next checkpoint",
                ));
            }
            set_control(tx, jid, Some(Control::Pause))?;
            Ok(CommandEffect::Requested(Control::Pause))
        }
        _ => Err(invalid(
            &job,
            "it has ended; only a waiting or running job can be paused",
        )),
    }
}

pub fn resume(tx: &Transaction, jid: &Jid) -> StoreResult<CommandEffect> {
    let job = load(tx, jid)?;
    match job.state {
        JobState::Waiting => cascade(tx, jid, resume),
        JobState::Paused => {
            enqueue(tx, &job, true, false)?;
            Ok(CommandEffect::Done(JobState::Enqueued))
        }
        JobState::Running if job.control == Some(Control::Pause) => {
            set_control(tx, jid, None)?;
            Ok(CommandEffect::Withdrawn)
        }
        _ => Err(invalid(&job, "it is not paused")),
    }
}

pub fn cancel(tx: &Transaction, jid: &Jid) -> StoreResult<CommandEffect> {
    let job = load(tx, jid)?;
    match job.state {
        JobState::Waiting => {
            // The parent first, so that its children's ends do not wake it.
            set_state(tx, jid, JobState::Cancelled, Some("cancelled by operator"))?;
            cascade(tx, jid, cancel)
        }
        JobState::Enqueued | JobState::Scheduled | JobState::Retrying | JobState::Paused => {
            set_state(tx, jid, JobState::Cancelled, Some("cancelled by operator"))?;
            crate::split::wake_parent(tx, jid.as_str())?;
            Ok(CommandEffect::Done(JobState::Cancelled))
        }
        JobState::Cancelled => Ok(CommandEffect::Done(JobState::Cancelled)),
        JobState::Running => {
            set_control(tx, jid, Some(Control::Cancel))?;
            Ok(CommandEffect::Requested(Control::Cancel))
        }
        _ => Err(invalid(&job, "it has ended; there is nothing to cancel")),
    }
}

pub fn retry(tx: &Transaction, jid: &Jid) -> StoreResult<CommandEffect> {
    let job = load(tx, jid)?;
    match job.state {
        JobState::Dead | JobState::Cancelled | JobState::Retrying | JobState::Scheduled => {
            enqueue(tx, &job, false, job.state == JobState::Dead)?;
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

pub fn set_queue_paused(tx: &Transaction, queue: &str, paused: bool) -> StoreResult<()> {
    exec(
        tx,
        "INSERT INTO stint_queues (name, paused) VALUES (?1, ?2)
         ON CONFLICT (name) DO UPDATE SET paused = excluded.paused",
        params![queue, paused],
    )
    .map_err(db_err)?;
    Ok(())
}
