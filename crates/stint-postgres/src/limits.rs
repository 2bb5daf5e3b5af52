//! Concurrency and rate limits per key: the fetch's admission of jobs with
//! a limit (core's [`Limit::admit`], under a per-key lock), parked jobs
//! (`enqueued` with `blocked` set, outside the fetch index), unparking
//! them as slots and rate windows free up, and the listing of keys.
//!
//! Jobs without a limit never reach this module's locks: the fetch leases
//! them in its one statement and hands over only the jobs with a limit.

use std::collections::HashMap;
use std::sync::LazyLock;

use deadpool_postgres::Client;
use serde_json::Value;
use stint_core::model::{Admit, JobOptions, KeyInfo, Limit, WaitReason};
use stint_core::{StoreError, StoreResult};
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

use crate::conn::pg_err;
use crate::rows::job_columns;
use crate::sql::{from_ms, query};

/// Schema version 4: parked jobs, unique keys, rate-limit starts.
pub(crate) const MIGRATION: &str = "
-- The key of a job's concurrency and rate limits (JobOptions::limit), and
-- why an enqueued job is parked instead of fetched: 'limit' (it waits for
-- a slot of its key) or 'rate' (it waits until blocked_until). Jobs
-- without a limit leave all three NULL.
ALTER TABLE stint_jobs ADD COLUMN limit_key text,
    ADD COLUMN blocked text CHECK (blocked IN ('limit', 'rate')),
    ADD COLUMN blocked_until timestamptz;
UPDATE stint_jobs SET limit_key = options->'limit'->>'key' WHERE options ? 'limit';
-- Fetches read only fetchable jobs: parked ones are not in the index.
DROP INDEX stint_jobs_fetch;
CREATE INDEX stint_jobs_fetch ON stint_jobs (queue, seq) WHERE state = 'enqueued' AND blocked IS NULL;
-- A key's running jobs (counted by fetches) and its jobs by state.
CREATE INDEX stint_jobs_limit ON stint_jobs (limit_key, state) WHERE limit_key IS NOT NULL;
-- A key's jobs waiting for a slot, oldest first (unparking).
CREATE INDEX stint_jobs_parked ON stint_jobs (limit_key, seq) WHERE blocked = 'limit';
-- Jobs waiting for the rate, by when it has room (promote_due).
CREATE INDEX stint_jobs_rate_due ON stint_jobs (blocked_until) WHERE blocked = 'rate';

-- The job holding each unique key (JobOptions::unique). A push locks the
-- key's row, so concurrent pushes of a key take turns; a deleted holder
-- takes its row along (the key is free). Deferred: the row is written
-- before the job, in the same transaction.
CREATE TABLE stint_unique (
    key text PRIMARY KEY,
    jid text NOT NULL REFERENCES stint_jobs (jid) ON DELETE CASCADE DEFERRABLE INITIALLY DEFERRED
);
CREATE INDEX stint_unique_jid ON stint_unique (jid);

-- The stint starts of keys with a rate limit, each kept until it leaves
-- its key's window (expires_at), then pruned.
CREATE TABLE stint_limit_starts (
    key        text NOT NULL,
    started_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX stint_limit_starts_key ON stint_limit_starts (key, expires_at);
CREATE INDEX stint_limit_starts_expiry ON stint_limit_starts (expires_at);
";

/// The first half of the two-integer advisory lock of a limit key (the
/// second is the key's hash): a fetch holds it while it counts and leases
/// the key's jobs, so two fetches never both fill the same last slot.
const KEY_LOCK_SPACE: i32 = 0x5717_0002;

/// An SQL expression: `UPDATE` that unparks, for each key of the rows of
/// `ended` (a relation with a `limit_key` column, one row per running job
/// that stopped running), as many of the key's oldest jobs waiting for a
/// slot as jobs of the key stopped; returns their queues.
pub(crate) fn unpark_sql(ended: &str) -> String {
    format!(
        "UPDATE stint_jobs p SET blocked = NULL, blocked_until = NULL
    FROM (SELECT x.jid FROM (SELECT limit_key, count(*) AS n FROM {ended}
                             WHERE limit_key IS NOT NULL GROUP BY limit_key) e
          CROSS JOIN LATERAL (SELECT q.jid FROM stint_jobs q
                              WHERE q.limit_key = e.limit_key AND q.blocked = 'limit'
                              ORDER BY q.seq LIMIT e.n FOR UPDATE SKIP LOCKED) x) pick
    WHERE p.jid = pick.jid
    RETURNING p.queue"
    )
}

/// For each entry of $1 (the key of a running job that stopped), unparks
/// the oldest job waiting for a slot of that key; wakes their queues'
/// workers.
pub(crate) static UNPARK_KEYS_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH ended AS (SELECT unnest($1::text[]) AS limit_key), u AS ({})
         SELECT pg_notify('stint_jobs', q) FROM (SELECT DISTINCT queue AS q FROM u) d",
        unpark_sql("ended")
    )
});

/// For `promote_due`: unparks up to $1 jobs whose rate window has room
/// again, and (the safety net for a limit raised, or a slot freed while a
/// fetch was parking) the oldest jobs waiting for a slot of a key while
/// its running and fetchable jobs are fewer than its concurrency (as its
/// newest parked job says); prunes the starts that left their window.
pub(crate) const UNPARK_DUE_SQL: &str = "
WITH rate AS (
    SELECT jid FROM stint_jobs WHERE blocked = 'rate' AND blocked_until <= now()
    ORDER BY blocked_until LIMIT $1 FOR UPDATE SKIP LOCKED
), keys AS (
    SELECT DISTINCT limit_key AS key FROM stint_jobs WHERE blocked = 'limit'
), room AS (
    SELECT k.key, COALESCE(c.concurrency, 0)
           - (SELECT count(*) FROM stint_jobs r WHERE r.limit_key = k.key
              AND (r.state = 'running' OR (r.state = 'enqueued' AND r.blocked IS NULL))) AS free
    FROM keys k CROSS JOIN LATERAL (
        SELECT (o.options->'limit'->>'concurrency')::bigint AS concurrency FROM stint_jobs o
        WHERE o.limit_key = k.key AND o.blocked = 'limit' ORDER BY o.seq DESC LIMIT 1) c
), slot AS (
    SELECT x.jid FROM room CROSS JOIN LATERAL (
        SELECT q.jid FROM stint_jobs q WHERE q.limit_key = room.key AND q.blocked = 'limit'
        ORDER BY q.seq LIMIT greatest(room.free, 0) FOR UPDATE SKIP LOCKED) x
    WHERE room.free > 0
), u AS (
    UPDATE stint_jobs j SET blocked = NULL, blocked_until = NULL
    FROM (SELECT jid FROM rate UNION SELECT jid FROM slot) p WHERE j.jid = p.jid
    RETURNING j.queue
), n AS (
    SELECT pg_notify('stint_jobs', q) FROM (SELECT DISTINCT queue AS q FROM u) d
), pruned AS (
    DELETE FROM stint_limit_starts WHERE expires_at <= now()
)
SELECT (SELECT count(*) FROM u), (SELECT count(*) FROM n)";

/// Leases the jobs `jids` (enqueued, not parked, not locked by another
/// fetch) to `process`, starting their stints; returns them with their
/// `seq`. The jids are looked up alone: their rows were locked by
/// [`CANDIDATES_SQL`] in the same transaction and found fetchable, and a
/// condition on the state would let the planner, with stale statistics,
/// scan the state index instead.
pub(crate) static LEASE_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH j AS (
             UPDATE stint_jobs j SET state = 'running', process = $1, stints = j.stints + 1,
                    run_at = now(), control = NULL, fetch_token = $3,
                    blocked = NULL, blocked_until = NULL
             WHERE j.jid = ANY($2)
             RETURNING {}, j.seq
         ), h AS (
             INSERT INTO stint_stints (jid, number, process, started_at, done)
             SELECT jid, stints, $1, now(), COALESCE((checkpoint->>'done')::bigint, 0) FROM j
             ON CONFLICT (jid, number) DO UPDATE SET process = EXCLUDED.process,
               started_at = EXCLUDED.started_at, ended_at = NULL, outcome = NULL, reason = NULL,
               done = EXCLUDED.done
         )
         SELECT * FROM j",
        job_columns("j")
    )
});

/// The candidates' rows, locked, with whether each is still fetchable
/// (enqueued, not parked). By jid alone, the state checked in the select
/// list: a condition on the state matches the fetch index's predicate, and
/// with the table's statistics stale (a bulk push the planner has not seen
/// yet) the planner would scan that index, every enqueued job, for the few
/// jids: milliseconds per fetch, the limited fetch's main cost.
pub(crate) const CANDIDATES_SQL: &str =
    "SELECT jid, options, seq, state = 'enqueued' AND blocked IS NULL
     FROM stint_jobs WHERE jid = ANY($1)
     FOR UPDATE SKIP LOCKED";

/// A job with a limit that a fetch picked (not leased yet).
pub(crate) struct Candidate {
    pub jid: String,
    pub key: String,
}

/// Decides the fetch's candidates with a limit, in one transaction of two
/// round trips: BEGIN, the keys' advisory locks (in key order) and, read
/// after them, the candidates still fetchable, the keys' running jobs and
/// recent starts, sent together; then core's [`Limit::admit`] per
/// candidate in queue order (counting the ones leased before it), and the
/// leases, the parked jobs, the starts and COMMIT, sent together. Returns
/// the rows of the jobs leased (job columns, then `seq`) and how many jobs
/// were parked.
///
/// The server runs a connection's statements one after another, and in
/// READ COMMITTED each takes its snapshot when it starts: the reads sent
/// behind the locks see every lease that a fetch holding a key's lock
/// before committed.
pub(crate) async fn admit(
    c: &mut Client,
    process: &str,
    token: &str,
    candidates: &[Candidate],
) -> StoreResult<(Vec<Row>, usize)> {
    let decided = admit_in_transaction(c, process, token, candidates).await;
    if decided.is_err() {
        // The transaction may still be open (an error before COMMIT ran):
        // the connection goes back to the pool without it.
        let _ = c.batch_execute("ROLLBACK").await;
    }
    decided
}

/// The keys' locks ($1: KEY_LOCK_SPACE, $2: the keys), and, for the
/// transaction, no bitmap scans: the count of a key's running jobs reads
/// the key's index entries, and every job that ran leaves a dead entry
/// there until vacuum. A plain or index-only scan marks each dead entry it
/// meets as dead (the next count skips it); a bitmap scan visits them all
/// again each time (7 ms per fetch after 80,000 jobs of 100 keys).
const LOCK_KEYS_SQL: &str = "
SELECT set_config('enable_bitmapscan', 'off', true),
       (SELECT count(pg_advisory_xact_lock($1, hashtext(k)))
        FROM (SELECT k FROM unnest($2::text[]) k ORDER BY k) s)";

/// The running jobs of keys $1, and the time.
const RUNNING_SQL: &str = "
SELECT limit_key, count(*), (extract(epoch FROM now()) * 1000)::bigint
FROM stint_jobs WHERE limit_key = ANY($1) AND state = 'running'
GROUP BY limit_key
UNION ALL SELECT NULL, 0, (extract(epoch FROM now()) * 1000)::bigint";

/// The starts of keys $1 still in their rate window.
const STARTS_SQL: &str = "
SELECT key, (extract(epoch FROM started_at) * 1000)::bigint FROM stint_limit_starts
WHERE key = ANY($1) AND expires_at > now()";

/// Parks jobs $1 for reasons $2 (until $3).
const PARK_SQL: &str = "
UPDATE stint_jobs j SET blocked = x.reason, blocked_until = x.until
FROM unnest($1::text[], $2::text[], $3::timestamptz[]) AS x (jid, reason, until)
WHERE j.jid = x.jid";

/// Records starts ($2 keys, $3 times, $4 expiries) and prunes the expired
/// ones of keys $1.
const RECORD_STARTS_SQL: &str = "
WITH pruned AS (
    DELETE FROM stint_limit_starts WHERE key = ANY($1) AND expires_at <= now()
)
INSERT INTO stint_limit_starts (key, started_at, expires_at)
SELECT * FROM unnest($2::text[], $3::timestamptz[], $4::timestamptz[])";

/// Runs prepared statement `st`: sent when first polled.
async fn run(
    c: &Client,
    st: &tokio_postgres::Statement,
    params: &[&(dyn ToSql + Sync)],
) -> StoreResult<Vec<Row>> {
    c.query(st, params).await.map_err(pg_err)
}

async fn admit_in_transaction(
    c: &Client,
    process: &str,
    token: &str,
    candidates: &[Candidate],
) -> StoreResult<(Vec<Row>, usize)> {
    let mut keys: Vec<&str> = candidates.iter().map(|x| x.key.as_str()).collect();
    keys.sort_unstable();
    keys.dedup();
    let jids: Vec<&str> = candidates.iter().map(|x| x.jid.as_str()).collect();
    // Every statement prepared first (from the connection's cache, after
    // its first fetch): a query of a prepared statement is sent when first
    // polled, so the ones joined below go out in the order written.
    let prepare = |sql: &'static str| async move { c.prepare_cached(sql).await.map_err(pg_err) };
    let (lock_keys, fresh_q, running_q, starts_q, lease_q, park_q, record_q) = tokio::try_join!(
        prepare(LOCK_KEYS_SQL),
        prepare(CANDIDATES_SQL),
        prepare(RUNNING_SQL),
        prepare(STARTS_SQL),
        prepare(&LEASE_SQL),
        prepare(PARK_SQL),
        prepare(RECORD_STARTS_SQL),
    )?;
    let lock_params: [&(dyn ToSql + Sync); 2] = [&KEY_LOCK_SPACE, &keys];
    let (by_jid, by_key): ([&(dyn ToSql + Sync); 1], [&(dyn ToSql + Sync); 1]) = ([&jids], [&keys]);
    let (_, _, fresh, running, starts) = tokio::try_join!(
        async { c.batch_execute("BEGIN").await.map_err(pg_err) },
        run(c, &lock_keys, &lock_params),
        run(c, &fresh_q, &by_jid),
        run(c, &running_q, &by_key),
        run(c, &starts_q, &by_key),
    )?;
    let mut now_ms = 0;
    let mut running_of: HashMap<String, u64> = HashMap::new();
    for r in &running {
        now_ms = r.get(2);
        if let Some(k) = r.get::<_, Option<String>>(0) {
            running_of.insert(k, r.get::<_, i64>(1).max(0) as u64);
        }
    }
    let mut starts_of: HashMap<String, Vec<i64>> = HashMap::new();
    for r in &starts {
        starts_of.entry(r.get(0)).or_default().push(r.get(1));
    }

    let mut fresh: Vec<Row> = fresh.into_iter().filter(|r| r.get::<_, bool>(3)).collect();
    fresh.sort_by_key(|r| r.get::<_, i64>(2));
    let mut lease: Vec<String> = Vec::new();
    let mut parked = ParkArgs::default();
    let mut started = StartArgs::default();
    for r in &fresh {
        let jid: String = r.get(0);
        let options: JobOptions = serde_json::from_value(r.get::<_, Value>(1)).map_err(|e| {
            StoreError::Corrupt(format!("job {jid}: stored options are not valid: {e}"))
        })?;
        let Some(limit) = options.limit else {
            lease.push(jid);
            continue;
        };
        let running = running_of.entry(limit.key.clone()).or_default();
        let recent = starts_of.entry(limit.key.clone()).or_default();
        match limit.admit(*running, recent, now_ms) {
            Admit::Start => {
                *running += 1;
                if let Some(rate) = limit.rate {
                    recent.push(now_ms);
                    started.push(&limit, now_ms, rate.period_ms);
                }
                lease.push(jid);
            }
            Admit::Wait(reason) => parked.push(jid, reason, None),
            Admit::WaitUntil(t) => parked.push(jid, WaitReason::Rate, Some(t)),
        }
    }

    // The writes and COMMIT in one round trip (after a failed write the
    // server takes COMMIT for ROLLBACK).
    let lease_params: [&(dyn ToSql + Sync); 3] = [&process, &lease, &token];
    let park_params: [&(dyn ToSql + Sync); 3] = [&parked.jid, &parked.reason, &parked.until];
    let start_params: [&(dyn ToSql + Sync); 4] =
        [&keys, &started.key, &started.at, &started.expires];
    let (rows, _, _, _) = tokio::try_join!(
        async {
            if lease.is_empty() {
                return Ok(vec![]);
            }
            run(c, &lease_q, &lease_params).await
        },
        async {
            if parked.jid.is_empty() {
                return Ok(vec![]);
            }
            run(c, &park_q, &park_params).await
        },
        run(c, &record_q, &start_params),
        async { c.batch_execute("COMMIT").await.map_err(pg_err) },
    )?;
    Ok((rows, parked.jid.len()))
}

/// The jobs a fetch parks, column by column.
#[derive(Default)]
struct ParkArgs {
    jid: Vec<String>,
    reason: Vec<&'static str>,
    until: Vec<Option<std::time::SystemTime>>,
}

impl ParkArgs {
    fn push(&mut self, jid: String, reason: WaitReason, until_ms: Option<i64>) {
        self.jid.push(jid);
        self.reason.push(reason.as_str());
        self.until.push(until_ms.map(from_ms));
    }
}

/// The stint starts a fetch records for rate limits, column by column.
#[derive(Default)]
struct StartArgs {
    key: Vec<String>,
    at: Vec<std::time::SystemTime>,
    expires: Vec<std::time::SystemTime>,
}

impl StartArgs {
    fn push(&mut self, limit: &Limit, at_ms: i64, period_ms: u64) {
        self.key.push(limit.key.clone());
        self.at.push(from_ms(at_ms));
        self.expires
            .push(from_ms(at_ms.saturating_add(period_ms as i64)));
    }
}

/// Every key with running or parked jobs: its limits as its newest such
/// job says, and its counts; sorted by key.
pub async fn limits(c: &Client) -> StoreResult<Vec<KeyInfo>> {
    let rows = query(
        c,
        "SELECT limit_key, (array_agg(options->'limit' ORDER BY id DESC))[1],
                count(*) FILTER (WHERE state = 'running'),
                count(*) FILTER (WHERE state = 'enqueued' AND blocked = 'limit'),
                count(*) FILTER (WHERE state = 'enqueued' AND blocked = 'rate')
         FROM stint_jobs
         WHERE limit_key IS NOT NULL AND (state = 'running' OR blocked IS NOT NULL)
         GROUP BY limit_key ORDER BY limit_key",
        &[],
    )
    .await?;
    rows.iter()
        .map(|r| {
            let key: String = r.get(0);
            let limit: Limit = serde_json::from_value(r.get::<_, Value>(1)).map_err(|e| {
                StoreError::Corrupt(format!("a job of limit key {key}: stored limit: {e}"))
            })?;
            Ok(KeyInfo {
                key,
                concurrency: limit.concurrency,
                rate: limit.rate,
                running: r.get::<_, i64>(2) as u64,
                waiting_limit: r.get::<_, i64>(3) as u64,
                waiting_rate: r.get::<_, i64>(4) as u64,
            })
        })
        .collect()
}
