//! The sweeps any process may run (they are idempotent): due jobs to their
//! queues, and the running jobs of dead processes taken back.

use std::sync::LazyLock;

use deadpool_postgres::Client;
use stint_core::lifecycle::{recovery, render};
use stint_core::model::{Jid, JobState};
use stint_core::store::Recovered;
use stint_core::{StoreError, StoreResult};

use crate::conn::pg_err;
use crate::family::wake_parents;
use crate::limits::{unpark_sql, UNPARK_DUE_SQL};
use crate::sql::query;

/// Due jobs moved per statement.
const PROMOTE_BATCH: i64 = 5_000;

/// Moves due scheduled and retrying jobs to the tail of their queues, and
/// unparks the jobs whose rate window has room again (and, as a safety
/// net, jobs waiting for a slot of a key that has room). Returns how many
/// due jobs moved.
pub async fn promote_due(c: &Client) -> StoreResult<u64> {
    query(c, UNPARK_DUE_SQL, &[&PROMOTE_BATCH]).await?;
    let mut total = 0;
    loop {
        let rows = query(
            c,
            // To the tail, in the order they came due (nextval runs after the sort).
            "WITH due AS (
                 SELECT jid, nextval('stint_tail_seq') AS s FROM stint_jobs
                 WHERE state IN ('scheduled', 'retrying') AND run_at <= now()
                 ORDER BY run_at, seq LIMIT $1
                 FOR UPDATE SKIP LOCKED
             ), j AS (
                 UPDATE stint_jobs j SET state = 'enqueued', enqueued_at = now(), seq = due.s, run_at = NULL
                 FROM due WHERE j.jid = due.jid
                 RETURNING j.queue
             ), n AS (
                 SELECT pg_notify('stint_jobs', q) FROM (SELECT DISTINCT queue AS q FROM j) d
             )
             SELECT (SELECT count(*) FROM j), (SELECT count(*) FROM n)",
            &[&PROMOTE_BATCH],
        )
        .await?;
        let n = rows.first().map(|r| r.get::<_, i64>(0)).unwrap_or(0);
        total += n as u64;
        if n < PROMOTE_BATCH {
            return Ok(total);
        }
    }
}

/// Takes back the running jobs of processes whose leases expired (by the
/// database's clock), as core's recovery rule says
/// ([`render::sql_recovery`]: to the head of its queue, to `dead` past the
/// limit $1, or as a pending operator command asked; a process that was
/// stopping adds no recovery). Rows a live
/// transaction holds (a job's own `checkpoint_in`) are left for the next
/// sweep.
static RECOVER_SQL: LazyLock<String> = LazyLock::new(|| {
    let process = "COALESCE(gone.old_process, '?')";
    let (recoveries, state, reason) =
        render::sql_recovery("j.recoveries", "j.control", "$1", process, "gone.stopping");
    let stint_reason = render::sql_recovered_stint("COALESCE(rec.old_process, '?')");
    let finals = render::sql_final_states();
    let label = recovery::STINT_LABEL;
    let unpark = unpark_sql("rec");
    format!(
        "
WITH gone AS (
    SELECT j.jid, j.process AS old_process,
           COALESCE((SELECT p.stopping FROM stint_processes p WHERE p.id = j.process), false) AS stopping
    FROM stint_jobs j
    WHERE j.state = 'running'
      AND NOT EXISTS (SELECT 1 FROM stint_processes p WHERE p.id = j.process AND p.expires_at >= now())
    FOR UPDATE OF j SKIP LOCKED
), rec AS (
    UPDATE stint_jobs j SET
        recoveries = {recoveries},
        state = {state},
        reason = {reason},
        finished_at = CASE WHEN {state} IN {finals} THEN now() END,
        process = NULL, control = NULL, seq = nextval('stint_head_seq'), enqueued_at = now(),
        fetch_token = NULL
    FROM gone WHERE j.jid = gone.jid
    RETURNING j.jid, j.kind, gone.old_process, j.recoveries, j.state, j.stints, j.queue,
              (j.checkpoint->>'done')::bigint AS done, j.parent, j.limit_key
), u AS (
    -- each recovered job frees a slot of its key
    {unpark}
), h AS (
    UPDATE stint_stints s SET ended_at = now(), outcome = '{label}', reason = {stint_reason},
           done = COALESCE(rec.done, s.done)
    FROM rec WHERE s.jid = rec.jid AND s.number = rec.stints
), n AS (
    SELECT pg_notify('stint_jobs', q)
    FROM (SELECT queue AS q FROM rec WHERE state = 'enqueued' UNION SELECT queue FROM u) d
), m AS (
    INSERT INTO stint_metrics (kind, queue, name, value)
    SELECT kind, queue, 'recovered', count(*) FROM rec GROUP BY kind, queue ORDER BY kind, queue
    ON CONFLICT (kind, queue, name) DO UPDATE SET value = stint_metrics.value + EXCLUDED.value
), x AS (
    DELETE FROM stint_processes WHERE expires_at < now()
)
SELECT jid, kind, old_process, recoveries, state, CASE WHEN state IN {finals} THEN parent END,
       (SELECT count(*) FROM n)
FROM rec"
    )
});

pub async fn recover_orphans(c: &mut Client, max_recoveries: u32) -> StoreResult<Vec<Recovered>> {
    let max = max_recoveries.min(i32::MAX as u32) as i32;
    // No bitmap scans (as in the limits' admission): the running jobs are
    // read from an index where every job that ran left a dead entry; a
    // plain index scan marks those it meets as dead, a bitmap scan visits
    // them all again at every tick (40 ms a tick after 100,000 jobs).
    let tx = c.transaction().await.map_err(pg_err)?;
    query(
        &tx,
        "SELECT set_config('enable_bitmapscan', 'off', true)",
        &[],
    )
    .await?;
    let rows = query(&tx, &RECOVER_SQL, &[&max]).await?;
    tx.commit().await.map_err(pg_err)?;
    // Children that ended (dead, cancelled) may wake their parents.
    wake_parents(c, rows.iter().filter_map(|r| r.get(5)).collect()).await?;
    rows.iter()
        .map(|r| {
            Ok(Recovered {
                jid: Jid::parse(r.get::<_, &str>(0)).map_err(StoreError::Corrupt)?,
                kind: r.get(1),
                process: r.get::<_, Option<String>>(2).unwrap_or_default(),
                recoveries: r.get::<_, i32>(3).max(0) as u32,
                state: r
                    .get::<_, &str>(4)
                    .parse::<JobState>()
                    .map_err(StoreError::Corrupt)?,
            })
        })
        .collect()
}
