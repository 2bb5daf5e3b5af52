//! The lifecycle transitions of workers and clients, each run inside one
//! `BEGIN IMMEDIATE` transaction (or as one atomic statement).

use std::collections::HashSet;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, Transaction};
use stint_core::metrics::MetricsDelta;
use stint_core::model::{now_ms, to_ms, Checkpoint, Control, Jid, JobState, NewJob, ProcessInfo};
use stint_core::store::{Completion, Lease, Leased, Outcome, Recovered};
use stint_core::{StoreError, StoreResult};

use crate::rows::{job_from_row, JOB_COLUMNS};
use crate::{db_err, exec, query_row};

/// Reserves `n` tail positions; returns the first. A counter, not the
/// clock: queue order holds however the clocks of processes differ.
pub(crate) fn next_seq(tx: &Connection, n: usize) -> StoreResult<i64> {
    let last: i64 = tx
        .prepare_cached(
            "UPDATE stint_counters SET value = value + ?1 WHERE name = 'seq' RETURNING value",
        )
        .and_then(|mut s| s.query_row([n as i64], |r| r.get(0)))
        .map_err(db_err)?;
    Ok(last - n as i64 + 1)
}

fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("model types serialize")
}

/// The `seq` that puts a job at the head of `queue`.
pub(crate) fn head_seq(tx: &Connection, queue: &str) -> StoreResult<i64> {
    query_row(
        tx,
        "SELECT COALESCE(MIN(seq), 0) - 1 FROM stint_jobs WHERE state = 'enqueued' AND queue = ?1",
        [queue],
        |r| r.get(0),
    )
    .map_err(db_err)
}

pub fn push(tx: &Transaction, jobs: &[NewJob]) -> StoreResult<()> {
    insert_jobs(tx, jobs, None)
}

/// Inserts jobs at the tail of their queues (or scheduled), as children of
/// `parent` (jid, split step) when given.
pub(crate) fn insert_jobs(
    tx: &Transaction,
    jobs: &[NewJob],
    parent: Option<(&str, &str)>,
) -> StoreResult<()> {
    let now = now_ms();
    let base = next_seq(tx, jobs.len())?;
    let mut stmt = tx
        .prepare_cached(
            "INSERT INTO stint_jobs (jid, kind, queue, args, state, options, created_at, enqueued_at, run_at, seq,
                                     parent, parent_step)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        )
        .map_err(db_err)?;
    for (i, job) in jobs.iter().enumerate() {
        let run_at = job.run_at.map(to_ms).filter(|t| *t > now);
        let (state, enqueued_at) = match run_at {
            Some(_) => (JobState::Scheduled, None),
            None => (JobState::Enqueued, Some(now)),
        };
        let r = stmt.execute(params![
            job.jid.as_str(),
            job.kind,
            job.options.queue,
            to_json(&job.args),
            state.as_str(),
            to_json(&job.options),
            now,
            enqueued_at,
            run_at,
            base + i as i64,
            parent.map(|p| p.0),
            parent.map(|p| p.1),
        ]);
        match r {
            Ok(_) => {}
            Err(rusqlite::Error::SqliteFailure(f, _))
                if f.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                return Err(StoreError::Other(format!(
                    "job {} already exists; push it with a fresh jid (nothing in this push was stored)",
                    job.jid
                )));
            }
            Err(e) => return Err(db_err(e)),
        }
    }
    Ok(())
}

pub fn register(tx: &Transaction, p: &ProcessInfo, ttl: Duration) -> StoreResult<()> {
    let now = now_ms();
    exec(
        tx,
        "INSERT OR REPLACE INTO stint_processes
           (id, hostname, pid, queues, concurrency, started_at, beat_at, expires_at, busy, quiet)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            p.id,
            p.hostname,
            p.pid,
            to_json(&p.queues),
            p.concurrency,
            p.started_at_ms,
            now,
            now + ttl.as_millis() as i64,
            p.busy,
            p.quiet
        ],
    )
    .map_err(db_err)?;
    Ok(())
}

pub fn heartbeat(
    tx: &Transaction,
    id: &str,
    busy: u32,
    quiet: bool,
    ttl: Duration,
) -> StoreResult<bool> {
    let now = now_ms();
    let n = tx
        .execute(
            "UPDATE stint_processes SET beat_at = ?2, expires_at = ?3, busy = ?4, quiet = ?5 WHERE id = ?1",
            params![id, now, now + ttl.as_millis() as i64, busy, quiet],
        )
        .map_err(db_err)?;
    Ok(n > 0)
}

pub fn deregister(tx: &Transaction, id: &str) -> StoreResult<()> {
    exec(tx, "DELETE FROM stint_processes WHERE id = ?1", [id]).map_err(db_err)?;
    Ok(())
}

pub fn expire_process(tx: &Transaction, id: &str) -> StoreResult<()> {
    exec(
        tx,
        "UPDATE stint_processes SET expires_at = 0 WHERE id = ?1",
        [id],
    )
    .map_err(db_err)?;
    Ok(())
}

pub fn fetch(
    tx: &Transaction,
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
            // Progress clears the recovery count: a poison pill is a job
            // whose process keeps dying without it getting any further.
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

/// The start of a CASE giving the state a pending operator command asks
/// for; the caller ends it with its own state and `END`.
const PENDING_CONTROL_OR: &str =
    "CASE control WHEN 'pause' THEN 'paused' WHEN 'cancel' THEN 'cancelled' ELSE";

pub fn complete(tx: &Transaction, completions: &[Completion]) -> StoreResult<Vec<Jid>> {
    let now = now_ms();
    let mut refused = Vec::new();
    let mut metrics = MetricsDelta::default();
    for c in completions {
        let lease = &c.lease;
        let cp = c.checkpoint.as_ref().map(to_json);
        let fence = "jid = ?1 AND state = 'running' AND process = ?2 AND stints = ?3";
        let base = params![lease.jid.as_str(), lease.process, lease.stint, cp];
        let ended = match &c.outcome {
            Outcome::Succeeded { result } => returning_kind(tx,
                &format!(
                    "UPDATE stint_jobs SET state = 'succeeded', checkpoint = COALESCE(?4, checkpoint),
                       process = NULL, control = NULL, finished_at = ?5, result = ?6, reason = NULL
                     WHERE {fence}"
                ),
                params![base[0], base[1], base[2], base[3], now, result.as_ref().map(to_json)],
            ),
            Outcome::Retry { error, retry_at_ms } => returning_kind(tx,
                &format!(
                    "UPDATE stint_jobs SET state = {PENDING_CONTROL_OR} 'retrying' END,
                       finished_at = CASE control WHEN 'cancel' THEN ?5 END,
                       checkpoint = COALESCE(?4, checkpoint),
                       process = NULL, control = NULL, attempts = attempts + 1, run_at = ?5,
                       error = ?6, reason = ?7
                     WHERE {fence}"
                ),
                params![base[0], base[1], base[2], base[3], retry_at_ms, to_json(error), error.message],
            ),
            Outcome::Dead { error, reason } => returning_kind(tx,
                &format!(
                    "UPDATE stint_jobs SET state = 'dead', checkpoint = COALESCE(?4, checkpoint),
                       process = NULL, control = NULL, attempts = attempts + 1, finished_at = ?5,
                       error = ?6, reason = ?7
                     WHERE {fence}"
                ),
                params![base[0], base[1], base[2], base[3], now, to_json(error), reason],
            ),
            Outcome::Requeue { reason } => {
                let job_queue: Option<String> = query_row(tx, "SELECT queue FROM stint_jobs WHERE jid = ?1", [lease.jid.as_str()], |r| r.get(0))
                    .optional()
                    .map_err(db_err)?;
                let seq = match job_queue {
                    Some(q) => head_seq(tx, &q)?,
                    None => 0,
                };
                // A pause or cancel the stint did not act on still holds.
                returning_kind(tx,
                    &format!(
                        "UPDATE stint_jobs SET state = {PENDING_CONTROL_OR} 'enqueued' END,
                           finished_at = CASE control WHEN 'cancel' THEN ?6 END,
                           checkpoint = COALESCE(?4, checkpoint),
                           process = NULL, control = NULL, seq = ?5, enqueued_at = ?6, reason = ?7
                         WHERE {fence}"
                    ),
                    params![base[0], base[1], base[2], base[3], seq, now, reason],
                )
            }
            Outcome::Paused | Outcome::Cancelled => {
                let state = c.outcome.next_state();
                let finished = (state == JobState::Cancelled).then_some(now);
                returning_kind(tx,
                    &format!(
                        "UPDATE stint_jobs SET state = ?5, checkpoint = COALESCE(?4, checkpoint),
                           process = NULL, control = NULL, finished_at = ?6, reason = ?7
                         WHERE {fence}"
                    ),
                    params![base[0], base[1], base[2], base[3], state.as_str(), finished, c.outcome.reason()],
                )
            }
        }
        .map_err(db_err)?;
        let Some((kind, queue)) = ended else {
            refused.push(lease.jid.clone());
            continue;
        };
        crate::split::wake_parent(tx, lease.jid.as_str())?;
        let done = c.checkpoint.as_ref().map(|cp| cp.done as i64);
        let started: Option<i64> = query_row(tx,
            "UPDATE stint_stints SET ended_at = ?3, outcome = ?4, reason = ?5,
               done = COALESCE(?6, (SELECT json_extract(checkpoint, '$.done') FROM stint_jobs WHERE jid = ?1), done)
             WHERE jid = ?1 AND number = ?2
             RETURNING started_at",
            params![lease.jid.as_str(), lease.stint, now, c.outcome.label(), c.outcome.reason(), done],
            |r| r.get(0),
        )
        .optional()
        .map_err(db_err)?;
        let ran = started.map_or(0, |t| (now - t).max(0) as u64);
        metrics.stint_ended(&kind, &queue, &c.outcome, Duration::from_millis(ran));
        if let Outcome::Retry { error, .. } | Outcome::Dead { error, .. } = &c.outcome {
            exec(tx,
                "INSERT INTO stint_errors (jid, at, attempt, message, chain) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![lease.jid.as_str(), error.at_ms, error.attempt, error.message, to_json(&error.chain)],
            )
            .map_err(db_err)?;
        }
    }
    crate::metrics::record(tx, &metrics)?;
    Ok(refused)
}

/// Runs a fenced UPDATE of one job, returning its (kind, queue) when it
/// applied (`None`: the lease was not current).
fn returning_kind<P: rusqlite::Params>(
    tx: &Connection,
    sql: &str,
    params: P,
) -> rusqlite::Result<Option<(String, String)>> {
    query_row(tx, &format!("{sql} RETURNING kind, queue"), params, |r| {
        Ok((r.get(0)?, r.get(1)?))
    })
    .optional()
}

pub fn controls(conn: &Connection, process: &str) -> StoreResult<Vec<(Jid, Control)>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT jid, control FROM stint_jobs WHERE state = 'running' AND process = ?1 AND control IS NOT NULL",
        )
        .map_err(db_err)?;
    let rows = stmt
        .query_map([process], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })
        .map_err(db_err)?;
    let mut out = Vec::new();
    for row in rows {
        let (jid, control) = row.map_err(db_err)?;
        if let (Ok(jid), Some(c)) = (Jid::parse(&jid), Control::parse(&control)) {
            out.push((jid, c));
        }
    }
    Ok(out)
}

pub fn promote_due(tx: &Transaction) -> StoreResult<u64> {
    let now = now_ms();
    let due: i64 = query_row(
        tx,
        "SELECT COUNT(*) FROM stint_jobs WHERE state IN ('scheduled', 'retrying') AND run_at <= ?1",
        [now],
        |r| r.get(0),
    )
    .map_err(db_err)?;
    if due == 0 {
        return Ok(0);
    }
    let base = next_seq(tx, due as usize)?;
    // To the tail, in the order they came due.
    let n = tx
        .execute(
            "UPDATE stint_jobs SET state = 'enqueued', enqueued_at = ?1, seq = ?2 + d.rn - 1, run_at = NULL
             FROM (SELECT jid, row_number() OVER (ORDER BY run_at, seq) AS rn FROM stint_jobs
                   WHERE state IN ('scheduled', 'retrying') AND run_at <= ?1) AS d
             WHERE stint_jobs.jid = d.jid",
            params![now, base],
        )
        .map_err(db_err)?;
    Ok(n as u64)
}

/// A running job whose process is gone.
struct Orphan {
    jid: String,
    kind: String,
    process: String,
    recoveries: u32,
    stint: u32,
    queue: String,
    control: Option<String>,
}

pub fn recover_orphans(tx: &Transaction, max_recoveries: u32) -> StoreResult<Vec<Recovered>> {
    let now = now_ms();
    let orphans: Vec<Orphan> = {
        let mut stmt = tx
            .prepare_cached(
                "SELECT j.jid, j.kind, j.process, j.recoveries, j.stints, j.queue, j.control
                 FROM stint_jobs j
                 WHERE j.state = 'running'
                   AND NOT EXISTS (SELECT 1 FROM stint_processes p WHERE p.id = j.process AND p.expires_at >= ?1)",
            )
            .map_err(db_err)?;
        let rows = stmt
            .query_map([now], |r| {
                Ok(Orphan {
                    jid: r.get(0)?,
                    kind: r.get(1)?,
                    process: r.get::<_, Option<String>>(2)?.unwrap_or_default(),
                    recoveries: r.get(3)?,
                    stint: r.get(4)?,
                    queue: r.get(5)?,
                    control: r.get(6)?,
                })
            })
            .map_err(db_err)?;
        rows.collect::<Result<_, _>>().map_err(db_err)?
    };
    let mut out = Vec::new();
    let mut metrics = MetricsDelta::default();
    for Orphan {
        jid,
        kind,
        process,
        recoveries,
        stint,
        queue,
        control,
    } in orphans
    {
        let rec = recoveries + 1;
        let (state, reason) = match control.as_deref().and_then(Control::parse) {
            Some(Control::Cancel) => (JobState::Cancelled, "cancelled by operator (its process died first)".to_owned()),
            Some(Control::Pause) => (JobState::Paused, "paused by operator (its process died first)".to_owned()),
            None if rec > max_recoveries => (
                JobState::Dead,
                format!("poison pill: recovered {rec} times; its process died while running it each time"),
            ),
            None => (JobState::Enqueued, format!("recovered from process {process}, which died")),
        };
        let seq = head_seq(tx, &queue)?;
        let finished = state.is_final().then_some(now);
        exec(
            tx,
            "UPDATE stint_jobs SET state = ?3, recoveries = ?4, process = NULL, control = NULL,
               seq = ?5, enqueued_at = ?6, finished_at = ?7, reason = ?8
             WHERE jid = ?1 AND state = 'running' AND stints = ?2",
            params![jid, stint, state.as_str(), rec, seq, now, finished, reason],
        )
        .map_err(db_err)?;
        exec(tx,
            "UPDATE stint_stints SET ended_at = ?3, outcome = 'recovered', reason = ?4,
               done = COALESCE((SELECT json_extract(checkpoint, '$.done') FROM stint_jobs WHERE jid = ?1), done)
             WHERE jid = ?1 AND number = ?2",
            params![jid, stint, now, format!("process {process} died")],
        )
        .map_err(db_err)?;
        if state.is_final() {
            crate::split::wake_parent(tx, &jid)?;
        }
        metrics.recovered(&kind, &queue);
        out.push(Recovered {
            jid: Jid::parse(&jid).unwrap_or_default(),
            kind,
            process,
            recoveries: rec,
            state,
        });
    }
    crate::metrics::record(tx, &metrics)?;
    exec(
        tx,
        "DELETE FROM stint_processes WHERE expires_at < ?1",
        [now],
    )
    .map_err(db_err)?;
    Ok(out)
}
