//! Maintenance any process may run: due jobs to their queues, and the jobs
//! of processes that died taken back as `stint_core::lifecycle::recover`
//! rules.

use rusqlite::{params, Connection};
use stint_core::lifecycle::recovery::{self, STINT_ENDED, STINT_LABEL};
use stint_core::metrics::MetricsDelta;
use stint_core::model::{now_ms, Control, Jid};
use stint_core::store::Recovered;
use stint_core::StoreResult;

use crate::db::{db_err, exec, query_row};
use crate::flow;
use crate::queue::{head_seq, next_seq, wake_parent};

/// Moves due scheduled and retrying jobs to the tail of their queues
/// (returns how many), and unparks the parked jobs that may start now
/// (`flow::unpark_due`).
pub fn promote_due(tx: &Connection) -> StoreResult<u64> {
    let now = now_ms();
    flow::unpark_due(tx, now)?;
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
    let n = exec(
        tx,
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
    control: Option<Control>,
    /// Its limit's key: its end frees a slot of the key.
    limit_key: Option<String>,
    /// Its process had been told to stop (`Store::mark_stopping`).
    stopping: bool,
}

fn orphans(tx: &Connection, now: i64) -> StoreResult<Vec<Orphan>> {
    let mut stmt = tx
        .prepare_cached(
            "SELECT j.jid, j.kind, j.process, j.recoveries, j.stints, j.queue, j.control,
                    COALESCE((SELECT p.stopping FROM stint_processes p WHERE p.id = j.process), 0),
                    j.limit_key
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
                control: r
                    .get::<_, Option<String>>(6)?
                    .as_deref()
                    .and_then(Control::parse),
                stopping: r.get::<_, i64>(7)? != 0,
                limit_key: r.get(8)?,
            })
        })
        .map_err(db_err)?;
    rows.collect::<Result<_, _>>().map_err(db_err)
}

pub fn recover_orphans(tx: &Connection, max_recoveries: u32) -> StoreResult<Vec<Recovered>> {
    let now = now_ms();
    let mut out = Vec::new();
    let mut metrics = MetricsDelta::default();
    for orphan in orphans(tx, now)? {
        let verdict = recovery::recover(
            orphan.recoveries,
            orphan.control,
            max_recoveries,
            &orphan.process,
            orphan.stopping,
        );
        let seq = head_seq(tx, &orphan.queue)?;
        let finished = verdict.state.is_final().then_some(now);
        exec(
            tx,
            "UPDATE stint_jobs SET state = ?3, recoveries = ?4, process = NULL, control = NULL,
               seq = ?5, enqueued_at = ?6, finished_at = ?7, reason = ?8
             WHERE jid = ?1 AND state = 'running' AND stints = ?2",
            params![
                orphan.jid,
                orphan.stint,
                verdict.state.as_str(),
                verdict.recoveries,
                seq,
                now,
                finished,
                verdict.reason
            ],
        )
        .map_err(db_err)?;
        exec(tx,
            "UPDATE stint_stints SET ended_at = ?3, outcome = ?4, reason = ?5,
               done = COALESCE((SELECT json_extract(checkpoint, '$.done') FROM stint_jobs WHERE jid = ?1), done)
             WHERE jid = ?1 AND number = ?2",
            params![
                orphan.jid,
                orphan.stint,
                now,
                STINT_LABEL,
                recovery::fill(STINT_ENDED, &[("process", &orphan.process)])
            ],
        )
        .map_err(db_err)?;
        if verdict.state.is_final() {
            wake_parent(tx, &orphan.jid)?;
        }
        if let Some(key) = &orphan.limit_key {
            flow::slot_freed(tx, key)?;
        }
        metrics.recovered(&orphan.kind, &orphan.queue);
        out.push(Recovered {
            jid: Jid::parse(&orphan.jid).unwrap_or_default(),
            kind: orphan.kind,
            process: orphan.process,
            recoveries: verdict.recoveries,
            state: verdict.state,
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
