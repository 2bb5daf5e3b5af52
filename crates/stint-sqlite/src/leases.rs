//! Leases: taking jobs from their queues into a process's hands, and the
//! checkpoints a stint saves under its lease.

use std::collections::HashSet;
use std::sync::LazyLock;

use rusqlite::{params, Connection, OptionalExtension};
use stint_core::model::{now_ms, Checkpoint, Control};
use stint_core::store::{Lease, Leased};
use stint_core::{StoreError, StoreResult};

use crate::db::{db_err, to_json};
use crate::flow;
use crate::rows::{job_from_row, JOB_COLUMNS, JOB_COLUMN_COUNT};

/// Leases up to `limit` jobs from `queues`. Per queue, one statement leases
/// the ready jobs ahead of the first one with a limit; from there the next
/// ready jobs are read in queue order and the limited ones put to
/// `Limit::admit` (`flow::Admission`: leased, or parked), and the admitted
/// leased in one statement; then the queue is read on (up to
/// `JUDGED_PER_FETCH` judged jobs in all). Jobs without a limit are leased
/// as before flow control: no statement of their own.
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
    let mut admission = flow::Admission::new(now);
    let mut out = Vec::new();
    let mut judged = 0;
    for queue in queues {
        if paused.contains(queue) {
            continue;
        }
        loop {
            let want = limit - out.len();
            if want == 0 {
                break;
            }
            let taken = take(
                tx,
                &LEASE_READY,
                params![process, now, queue, want as i64],
                process,
                now,
                &mut out,
            )?;
            if taken == want || judged >= JUDGED_PER_FETCH {
                break;
            }
            // The queue ended, or its next ready job has a limit.
            let ready = flow::next_ready(tx, queue, (want - taken).min(JUDGED_PER_FETCH - judged))?;
            if ready.is_empty() {
                break;
            }
            let mut admitted: Vec<String> = Vec::with_capacity(ready.len());
            for (jid, job_limit) in ready {
                match job_limit {
                    None => admitted.push(jid),
                    Some(job_limit) => {
                        judged += 1;
                        if admission.judge(tx, &jid, &job_limit)? {
                            admitted.push(jid);
                        }
                    }
                }
            }
            if !admitted.is_empty() {
                let listed = serde_json::to_string(&admitted).expect("jids serialize");
                take(
                    tx,
                    &LEASE_LISTED,
                    params![process, now, listed],
                    process,
                    now,
                    &mut out,
                )?;
            }
        }
    }
    Ok(out)
}

/// How many jobs with a limit one fetch judges at most: a queue whose head
/// holds many jobs of a full key has them parked over several fetches, so
/// that no single transaction holds the file's writers off for long.
const JUDGED_PER_FETCH: usize = 256;

/// The lease of a job: `SET` and `RETURNING` of the lease statements.
const LEASE: &str =
    "UPDATE stint_jobs SET state = 'running', process = ?1, stints = stints + 1, run_at = ?2, control = NULL";

/// Leases the first ?4 ready jobs of queue ?3 that come before its first
/// ready job with a limit.
static LEASE_READY: LazyLock<String> = LazyLock::new(|| {
    format!(
        "{LEASE}
         WHERE jid IN (SELECT jid FROM stint_jobs
                       WHERE state = 'enqueued' AND blocked IS NULL AND queue = ?3
                         AND seq < COALESCE((SELECT MIN(seq) FROM stint_jobs
                                             WHERE state = 'enqueued' AND blocked IS NULL
                                               AND limit_key IS NOT NULL AND queue = ?3),
                                            9223372036854775807)
                       ORDER BY seq LIMIT ?4)
         RETURNING {JOB_COLUMNS}, seq"
    )
});

/// Leases the jobs listed in ?3, a JSON array of jids (read ready in this
/// transaction, and admitted by their limits).
static LEASE_LISTED: LazyLock<String> = LazyLock::new(|| {
    format!("{LEASE} WHERE jid IN (SELECT value FROM json_each(?3)) RETURNING {JOB_COLUMNS}, seq")
});

/// Runs a lease statement, records each leased job's stint start in its
/// history, and appends the leases to `out` in queue order. Returns how
/// many it leased.
fn take<P: rusqlite::Params>(
    tx: &Connection,
    sql: &str,
    params: P,
    process: &str,
    now: i64,
    out: &mut Vec<Leased>,
) -> StoreResult<usize> {
    let mut stmt = tx.prepare_cached(sql).map_err(db_err)?;
    let rows = stmt
        .query_map(params, |r| {
            Ok((job_from_row(r)?, r.get::<_, i64>(JOB_COLUMN_COUNT)?))
        })
        .map_err(db_err)?;
    let mut batch: Vec<_> = rows.collect::<Result<_, _>>().map_err(db_err)?;
    batch.sort_by_key(|(_, seq)| *seq);
    let mut hist = tx
        .prepare_cached(
            "INSERT OR REPLACE INTO stint_stints (jid, number, process, started_at, done) VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .map_err(db_err)?;
    let n = batch.len();
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
    Ok(n)
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The plan SQLite makes for `sql`, one line per step.
    pub(crate) fn plan(conn: &Connection, sql: &str) -> String {
        let mut stmt = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .expect("plan");
        let unbound = std::iter::repeat_n(rusqlite::types::Null, stmt.parameter_count());
        let rows = stmt
            .query_map(rusqlite::params_from_iter(unbound), |r| {
                r.get::<_, String>(3)
            })
            .expect("plan rows");
        rows.map(|r| r.expect("plan row"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn fetch_reads_ready_jobs_by_index_and_never_scans_parked_ones() {
        let dir = tempfile::tempdir().expect("tempdir");
        let conn = crate::open_connection(dir.path().join("plan.db")).expect("open");
        crate::schema::migrate(&conn).expect("migrate");
        let lease = plan(&conn, &LEASE_READY);
        assert!(
            lease.contains("USING INDEX stint_jobs_ready (queue=? AND seq<?)")
                || lease.contains("USING INDEX stint_jobs_ready (queue=?)"),
            "the lease reads the ready index:\n{lease}"
        );
        assert!(
            lease.contains("stint_jobs_ready_limited"),
            "the first limited job is found by its index:\n{lease}"
        );
        assert!(!lease.contains("SCAN"), "no scan in the lease:\n{lease}");
        let listed = plan(&conn, &LEASE_LISTED);
        assert!(
            listed.contains("INDEX sqlite_autoindex_stint_jobs_1 (jid=?)")
                || listed.contains("USING PRIMARY KEY (jid=?)"),
            "the admitted jobs are leased by jid:\n{listed}"
        );
        assert!(
            !listed.contains("SCAN stint_jobs"),
            "no scan of the jobs:\n{listed}"
        );
        let unpark = plan(
            &conn,
            "SELECT jid FROM stint_jobs WHERE blocked = 'limit' AND limit_key = 'k' ORDER BY seq LIMIT 1",
        );
        assert!(
            unpark.contains("USING INDEX stint_jobs_parked") && !unpark.contains("TEMP B-TREE"),
            "the oldest parked job of a key is the first of its index range:\n{unpark}"
        );
    }
}
