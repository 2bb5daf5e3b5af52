//! The lifecycle transitions of clients and workers. Each is one statement
//! (a data-modifying CTE: the job, its stint history, its errors and the
//! NOTIFY of a newly waiting job move together), fenced by the lease where a
//! stint writes. Times that decide anything — due, lease expiry — are the
//! database's `now()`, never a worker's clock.

use std::sync::LazyLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use deadpool_postgres::Client;
use serde_json::Value;
use stint_core::model::{Checkpoint, Control, Jid, NewJob, ProcessInfo};
use stint_core::store::{Lease, Leased, Recovered};
use stint_core::{JobState, StoreError, StoreResult};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::Row;

use crate::pg_err;
use crate::rows::{job_columns, job_from_row, N_COLUMNS};

/// Runs `sql` through the connection's statement cache.
pub(crate) async fn query(
    c: &Client,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> StoreResult<Vec<Row>> {
    let st = c.prepare_cached(sql).await.map_err(pg_err)?;
    c.query(&st, params).await.map_err(pg_err)
}

pub(crate) fn to_json<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).expect("model types serialize")
}

pub(crate) fn from_ms(ms: i64) -> SystemTime {
    if ms >= 0 {
        UNIX_EPOCH + Duration::from_millis(ms as u64)
    } else {
        UNIX_EPOCH - Duration::from_millis(ms.unsigned_abs())
    }
}

fn ttl_ms(ttl: Duration) -> i64 {
    ttl.as_millis().min(i64::MAX as u128) as i64
}

// ---- push ----

/// Inserts jobs at the tail of their queues (or scheduled), in the order
/// given, and notifies their queues on commit.
pub(crate) const PUSH_SQL: &str = "
WITH ins AS (
    INSERT INTO stint_jobs (jid, kind, queue, args, state, options, created_at, enqueued_at, run_at, seq,
                            parent, parent_step)
    SELECT j.jid, j.kind, j.queue, j.args,
           CASE WHEN j.run_at > now() THEN 'scheduled' ELSE 'enqueued' END,
           j.options, now(),
           CASE WHEN j.run_at > now() THEN NULL ELSE now() END,
           CASE WHEN j.run_at > now() THEN j.run_at END,
           nextval('stint_tail_seq'), $7, $8
    FROM unnest($1::text[], $2::text[], $3::text[], $4::jsonb[], $5::jsonb[], $6::timestamptz[])
         WITH ORDINALITY AS j (jid, kind, queue, args, options, run_at, ord)
    ORDER BY j.ord
    RETURNING queue, state
), n AS (
    SELECT pg_notify('stint_jobs', q) FROM (SELECT DISTINCT queue AS q FROM ins WHERE state = 'enqueued') d
)
SELECT (SELECT count(*) FROM ins), (SELECT count(*) FROM n)";

/// The types of `PUSH_SQL`'s parameters (for `query_typed`).
pub(crate) const PUSH_TYPES: [Type; 8] = [
    Type::TEXT_ARRAY,
    Type::TEXT_ARRAY,
    Type::TEXT_ARRAY,
    Type::JSONB_ARRAY,
    Type::JSONB_ARRAY,
    Type::TIMESTAMPTZ_ARRAY,
    Type::TEXT,
    Type::TEXT,
];

/// `PUSH_SQL`'s parameters, column by column.
pub(crate) struct PushArgs {
    jids: Vec<String>,
    kinds: Vec<String>,
    queues: Vec<String>,
    args: Vec<Value>,
    options: Vec<Value>,
    run_at: Vec<Option<SystemTime>>,
    /// The split parent's jid and step, for children.
    parent: Option<String>,
    step: Option<String>,
}

impl PushArgs {
    pub(crate) fn new(jobs: &[NewJob]) -> StoreResult<Self> {
        Self::children_of(jobs, None)
    }

    /// As `new`, for the children of split step `parent.1` of `parent.0`.
    pub(crate) fn children_of(jobs: &[NewJob], parent: Option<(&str, &str)>) -> StoreResult<Self> {
        for job in jobs {
            if job.kind.is_empty() || job.options.queue.is_empty() {
                return Err(StoreError::Other(format!(
                    "job {} ({:?}): kind and queue must not be empty; nothing in this push was stored",
                    job.jid, job.kind
                )));
            }
        }
        Ok(PushArgs {
            jids: jobs.iter().map(|j| j.jid.to_string()).collect(),
            kinds: jobs.iter().map(|j| j.kind.clone()).collect(),
            queues: jobs.iter().map(|j| j.options.queue.clone()).collect(),
            args: jobs.iter().map(|j| j.args.clone()).collect(),
            options: jobs.iter().map(|j| to_json(&j.options)).collect(),
            run_at: jobs.iter().map(|j| j.run_at).collect(),
            parent: parent.map(|p| p.0.to_owned()),
            step: parent.map(|p| p.1.to_owned()),
        })
    }

    pub(crate) fn params(&self) -> [&(dyn ToSql + Sync); 8] {
        [
            &self.jids,
            &self.kinds,
            &self.queues,
            &self.args,
            &self.options,
            &self.run_at,
            &self.parent,
            &self.step,
        ]
    }
}

/// A push's error: a jid that exists already is named.
pub(crate) fn push_err(e: tokio_postgres::Error) -> StoreError {
    if let Some(db) = e.as_db_error() {
        if *db.code() == SqlState::UNIQUE_VIOLATION {
            let jid = db
                .detail()
                .and_then(|d| {
                    d.split_once("=(")?
                        .1
                        .split_once(')')
                        .map(|(j, _)| j.to_owned())
                })
                .unwrap_or_else(|| "?".into());
            return StoreError::Other(format!(
                "job {jid} already exists; push it with a fresh jid (nothing in this push was stored)"
            ));
        }
    }
    pg_err(e)
}

pub async fn push(c: &Client, jobs: &[NewJob]) -> StoreResult<()> {
    if jobs.is_empty() {
        return Ok(());
    }
    let args = PushArgs::new(jobs)?;
    let st = c.prepare_cached(PUSH_SQL).await.map_err(pg_err)?;
    c.query(&st, &args.params()).await.map_err(push_err)?;
    Ok(())
}

// ---- processes ----

pub async fn register(c: &Client, p: &ProcessInfo, ttl: Duration) -> StoreResult<()> {
    query(
        c,
        "INSERT INTO stint_processes
           (id, hostname, pid, queues, concurrency, started_at, beat_at, expires_at, busy, quiet)
         VALUES ($1, $2, $3, $4, $5, $6, now(), now() + $7 * interval '1 millisecond', $8, $9)
         ON CONFLICT (id) DO UPDATE SET hostname = EXCLUDED.hostname, pid = EXCLUDED.pid,
           queues = EXCLUDED.queues, concurrency = EXCLUDED.concurrency, started_at = EXCLUDED.started_at,
           beat_at = EXCLUDED.beat_at, expires_at = EXCLUDED.expires_at, busy = EXCLUDED.busy,
           quiet = EXCLUDED.quiet",
        &[
            &p.id,
            &p.hostname,
            &(p.pid as i64),
            &to_json(&p.queues),
            &(p.concurrency as i32),
            &from_ms(p.started_at_ms),
            &(ttl_ms(ttl) as f64),
            &(p.busy as i32),
            &p.quiet,
        ],
    )
    .await?;
    Ok(())
}

pub async fn heartbeat(
    c: &Client,
    id: &str,
    busy: u32,
    quiet: bool,
    ttl: Duration,
) -> StoreResult<bool> {
    let rows = query(
        c,
        "UPDATE stint_processes SET beat_at = now(), expires_at = now() + $2 * interval '1 millisecond',
           busy = $3, quiet = $4
         WHERE id = $1 RETURNING 1",
        &[&id, &(ttl_ms(ttl) as f64), &(busy as i32), &quiet],
    )
    .await?;
    Ok(!rows.is_empty())
}

pub async fn deregister(c: &Client, id: &str) -> StoreResult<()> {
    query(c, "DELETE FROM stint_processes WHERE id = $1", &[&id]).await?;
    Ok(())
}

pub async fn expire_process(c: &Client, id: &str) -> StoreResult<()> {
    query(
        c,
        "UPDATE stint_processes SET expires_at = '-infinity' WHERE id = $1",
        &[&id],
    )
    .await?;
    Ok(())
}

// ---- fetch ----

/// Leases up to $3 waiting jobs of queue $2 (unless the queue is paused),
/// oldest first, skipping rows other fetchers hold; starts their stints.
static FETCH_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH picked AS (
             SELECT jid FROM stint_jobs
             WHERE state = 'enqueued' AND queue = $2
               AND NOT EXISTS (SELECT 1 FROM stint_queues q WHERE q.name = $2 AND q.paused)
             ORDER BY seq LIMIT $3
             FOR UPDATE SKIP LOCKED
         ), j AS (
             UPDATE stint_jobs j SET state = 'running', process = $1, stints = j.stints + 1,
                    run_at = now(), control = NULL, fetch_token = $4
             FROM picked WHERE j.jid = picked.jid
             RETURNING {}, j.seq
         ), h AS (
             INSERT INTO stint_stints (jid, number, process, started_at, done)
             SELECT jid, stints, $1, now(), COALESCE((checkpoint->>'done')::bigint, 0) FROM j
             ON CONFLICT (jid, number) DO UPDATE SET process = EXCLUDED.process,
               started_at = EXCLUDED.started_at, ended_at = NULL, outcome = NULL, reason = NULL,
               done = EXCLUDED.done
         )
         SELECT * FROM j ORDER BY seq",
        job_columns("j")
    )
});

fn leased(rows: &[Row], process: &str) -> StoreResult<Vec<Leased>> {
    rows.iter()
        .map(|r| {
            let job = job_from_row(r)?;
            let lease = Lease {
                jid: job.jid.clone(),
                process: process.to_owned(),
                stint: job.stints,
            };
            Ok(Leased { job, lease })
        })
        .collect()
}

/// Leases up to `limit` jobs from `queues`, in the order given. `token`
/// marks the leases, so that a fetch whose reply was lost can be found.
pub async fn fetch(
    c: &Client,
    process: &str,
    queues: &[String],
    limit: usize,
    token: &str,
) -> StoreResult<Vec<Leased>> {
    let mut out = Vec::new();
    for queue in queues {
        let want = limit.saturating_sub(out.len());
        if want == 0 {
            break;
        }
        let rows = query(c, &FETCH_SQL, &[&process, queue, &(want as i64), &token]).await?;
        out.extend(leased(&rows, process)?);
    }
    Ok(out)
}

/// The jobs leased to `process` by fetches whose replies never arrived.
pub async fn reclaim(c: &Client, process: &str, tokens: &[String]) -> StoreResult<Vec<Leased>> {
    let sql = format!(
        "UPDATE stint_jobs SET fetch_token = NULL
         WHERE state = 'running' AND process = $1 AND fetch_token = ANY($2)
         RETURNING {}, seq",
        job_columns("")
    );
    let mut rows = query(c, &sql, &[&process, &tokens]).await?;
    rows.sort_by_key(|r| r.get::<_, i64>(N_COLUMNS));
    leased(&rows, process)
}

// ---- checkpoints ----

/// Saves a running job's checkpoint, fenced by its lease; progress clears
/// the recovery count (a poison pill is a job whose process keeps dying
/// without it getting any further). Returns the pending operator command.
pub(crate) const CHECKPOINT_SQL: &str = "
UPDATE stint_jobs SET checkpoint = $1::jsonb,
  recoveries = CASE WHEN ($1::jsonb->>'done')::bigint > COALESCE((checkpoint->>'done')::bigint, 0)
               THEN 0 ELSE recoveries END
WHERE jid = $2 AND state = 'running' AND process = $3 AND stints = $4
RETURNING control";

pub(crate) const CHECKPOINT_TYPES: [Type; 4] = [Type::JSONB, Type::TEXT, Type::TEXT, Type::INT4];

pub(crate) fn checkpoint_result(rows: &[Row], lease: &Lease) -> StoreResult<Option<Control>> {
    match rows.first() {
        None => Err(StoreError::LeaseLost(lease.jid.clone())),
        Some(r) => Ok(r
            .get::<_, Option<String>>(0)
            .as_deref()
            .and_then(Control::parse)),
    }
}

pub async fn checkpoint(
    c: &Client,
    lease: &Lease,
    cp: &Checkpoint,
) -> StoreResult<Option<Control>> {
    let rows = query(
        c,
        CHECKPOINT_SQL,
        &[
            &to_json(cp),
            &lease.jid.as_str(),
            &lease.process,
            &(lease.stint as i32),
        ],
    )
    .await?;
    checkpoint_result(&rows, lease)
}

pub async fn controls(c: &Client, process: &str) -> StoreResult<Vec<(Jid, Control)>> {
    let rows = query(
        c,
        "SELECT jid, control FROM stint_jobs
         WHERE state = 'running' AND process = $1 AND control IS NOT NULL",
        &[&process],
    )
    .await?;
    Ok(rows
        .iter()
        .filter_map(|r| {
            let jid = Jid::parse(r.get::<_, &str>(0)).ok()?;
            Some((jid, Control::parse(r.get::<_, &str>(1))?))
        })
        .collect())
}

// ---- maintenance ----

/// Due jobs moved per statement.
const PROMOTE_BATCH: i64 = 5_000;

pub async fn promote_due(c: &Client) -> StoreResult<u64> {
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
/// database's clock), each to the head of its queue or, past the limit, to
/// `dead`; a pending operator command wins. Rows a live transaction holds
/// (a job's own `checkpoint_in`) are left for the next sweep.
const RECOVER_SQL: &str = "
WITH gone AS (
    SELECT j.jid, j.process AS old_process FROM stint_jobs j
    WHERE j.state = 'running'
      AND NOT EXISTS (SELECT 1 FROM stint_processes p WHERE p.id = j.process AND p.expires_at >= now())
    FOR UPDATE OF j SKIP LOCKED
), rec AS (
    UPDATE stint_jobs j SET
        recoveries = j.recoveries + 1,
        state = CASE j.control WHEN 'cancel' THEN 'cancelled' WHEN 'pause' THEN 'paused'
                ELSE CASE WHEN j.recoveries + 1 > $1 THEN 'dead' ELSE 'enqueued' END END,
        reason = CASE j.control
            WHEN 'cancel' THEN 'cancelled by operator (its process died first)'
            WHEN 'pause' THEN 'paused by operator (its process died first)'
            ELSE CASE WHEN j.recoveries + 1 > $1
                 THEN 'poison pill: recovered ' || (j.recoveries + 1)
                      || ' times; its process died while running it each time'
                 ELSE 'recovered from process ' || COALESCE(gone.old_process, '?') || ', which died' END
            END,
        finished_at = CASE WHEN j.control = 'cancel' OR (j.control IS NULL AND j.recoveries + 1 > $1)
                      THEN now() END,
        process = NULL, control = NULL, seq = nextval('stint_head_seq'), enqueued_at = now(),
        fetch_token = NULL
    FROM gone WHERE j.jid = gone.jid
    RETURNING j.jid, j.kind, gone.old_process, j.recoveries, j.state, j.stints, j.queue,
              (j.checkpoint->>'done')::bigint AS done, j.parent
), h AS (
    UPDATE stint_stints s SET ended_at = now(), outcome = 'recovered',
           reason = 'process ' || COALESCE(rec.old_process, '?') || ' died',
           done = COALESCE(rec.done, s.done)
    FROM rec WHERE s.jid = rec.jid AND s.number = rec.stints
), n AS (
    SELECT pg_notify('stint_jobs', q) FROM (SELECT DISTINCT queue AS q FROM rec WHERE state = 'enqueued') d
), m AS (
    INSERT INTO stint_metrics (kind, queue, name, value)
    SELECT kind, queue, 'recovered', count(*) FROM rec GROUP BY kind, queue ORDER BY kind, queue
    ON CONFLICT (kind, queue, name) DO UPDATE SET value = stint_metrics.value + EXCLUDED.value
), x AS (
    DELETE FROM stint_processes WHERE expires_at < now()
)
SELECT jid, kind, old_process, recoveries, state, parent, (SELECT count(*) FROM n) FROM rec";

pub async fn recover_orphans(c: &mut Client, max_recoveries: u32) -> StoreResult<Vec<Recovered>> {
    let max = max_recoveries.min(i32::MAX as u32) as i32;
    let rows = query(c, RECOVER_SQL, &[&max]).await?;
    // Children that ended (dead, cancelled) may wake their parents: after
    // the children's commit, under the parent's lock (see `wake_parent`).
    let mut parents: Vec<String> = rows
        .iter()
        .filter(|r| {
            r.get::<_, &str>(4)
                .parse::<JobState>()
                .is_ok_and(|s| s.is_final())
        })
        .filter_map(|r| r.get::<_, Option<String>>(5))
        .collect();
    parents.sort_unstable();
    parents.dedup();
    for parent in parents {
        let tx = c.transaction().await.map_err(pg_err)?;
        crate::split::wake_parent(&tx, &parent).await?;
        tx.commit().await.map_err(pg_err)?;
    }
    rows.iter()
        .map(|r| {
            let state: &str = r.get(4);
            Ok(Recovered {
                jid: Jid::parse(r.get::<_, &str>(0)).map_err(StoreError::Corrupt)?,
                kind: r.get(1),
                process: r.get::<_, Option<String>>(2).unwrap_or_default(),
                recoveries: r.get::<_, i32>(3).max(0) as u32,
                state: state.parse::<JobState>().map_err(StoreError::Corrupt)?,
            })
        })
        .collect()
}
