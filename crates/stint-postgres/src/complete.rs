//! The ends of stints: a whole batch of completions applied in one
//! statement, each row fenced by its own lease, with the stint history,
//! errors and metrics counters in the same statement.

use std::collections::HashSet;
use std::sync::LazyLock;
use std::time::SystemTime;

use deadpool_postgres::Client;
use serde_json::Value;
use stint_core::lifecycle::{render, StintEnd};
use stint_core::model::Jid;
use stint_core::store::{Completion, Outcome};
use stint_core::StoreResult;
use tokio_postgres::types::ToSql;

use crate::family::wake_parents;
use crate::limits::{unpark_sql, UNPARK_KEYS_SQL};
use crate::sql::{from_ms, query, to_json};

/// Applies a batch of stint ends in one statement: each row is fenced by
/// its own lease (a stale one matches nothing and is reported refused),
/// the job's next state is core's rule ([`render::sql_state_after_label`]:
/// a pending pause or cancel wins over a retry, a requeue or a snooze; a
/// snoozed job is scheduled at its time, using no attempt), a requeued
/// job goes to the head of its queue (and wakes idle workers), and the
/// stint history, errors and metrics move with the job. With `unpark`,
/// each job with a limit unparks the oldest job waiting for a slot of its
/// key in the same statement (a batch of jobs without limits skips that
/// part: a second update of the jobs table in the statement costs every
/// completion). Returns the jid, the parent to wake, and the limit key.
fn complete_sql(unpark: bool) -> String {
    let state = render::sql_state_after_label("c.label", "t.control");
    let finals = render::sql_final_states();
    let attempt = labels(StintEnd::uses_attempt);
    let succeeded = labels(|e| e == StintEnd::Succeeded);
    let interrupted = labels(|e| e == StintEnd::Interrupted);
    let due_later = labels(|e| matches!(e, StintEnd::Failed | StintEnd::Snoozed));
    let (unpark, unparked) = if unpark {
        let sql = unpark_sql("j");
        (
            format!(
                "), u AS (
    -- each job that stopped running frees a slot of its key
    {sql}"
            ),
            " UNION SELECT queue FROM u",
        )
    } else {
        (String::new(), "")
    };
    format!(
        "
WITH c AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::int4[], $4::jsonb[], $5::text[], $6::text[],
                         $7::jsonb[], $8::jsonb[], $9::timestamptz[])
         AS c (jid, process, stint, checkpoint, label, reason, result, error, retry_at)
), j AS (
    UPDATE stint_jobs t SET
        state = {state},
        finished_at = CASE WHEN {state} IN {finals} THEN now() END,
        checkpoint = COALESCE(c.checkpoint, t.checkpoint),
        process = NULL, control = NULL, fetch_token = NULL, reason = c.reason,
        result = CASE WHEN c.label IN {succeeded} THEN c.result ELSE t.result END,
        attempts = t.attempts + CASE WHEN c.label IN {attempt} THEN 1 ELSE 0 END,
        error = CASE WHEN c.label IN {attempt} THEN c.error ELSE t.error END,
        run_at = CASE WHEN c.label IN {due_later} THEN c.retry_at ELSE t.run_at END,
        seq = CASE WHEN c.label IN {interrupted} THEN nextval('stint_head_seq') ELSE t.seq END,
        enqueued_at = CASE WHEN c.label IN {interrupted} THEN now() ELSE t.enqueued_at END
    FROM c
    -- Each row by its jid; the lease's fence (running, in this process,
    -- this stint) as a row comparison no index serves: written as plain
    -- equalities, it matched the partial index of running jobs by process,
    -- which the planner, with statistics from before the jobs ran, took
    -- for one row a process and read for every end, all of the process's
    -- running jobs each time (30 ms for a batch of 500 ends).
    WHERE t.jid = c.jid
      AND (t.state, t.process, t.stints) IS NOT DISTINCT FROM ('running', c.process, c.stint)
    RETURNING t.jid, t.kind, t.state, t.queue, t.parent, t.stints,
              (t.checkpoint->>'done')::bigint AS done, c.label, c.reason, c.error, t.limit_key
{unpark}
), h AS (
    UPDATE stint_stints s SET ended_at = now(), outcome = j.label, reason = j.reason,
           done = COALESCE(j.done, s.done)
    FROM j WHERE s.jid = j.jid AND s.number = j.stints
    RETURNING s.jid, greatest((extract(epoch FROM now() - s.started_at) * 1000)::bigint, 0) AS ran_ms
), m AS (
    -- Counted per (kind, queue, name), in one lock order for every batch.
    INSERT INTO stint_metrics (kind, queue, name, value)
    SELECT kind, queue, name, sum(v) FROM (
        SELECT j.kind, j.queue, CASE WHEN j.label IN {succeeded} THEN 'processed'
                                     WHEN j.label IN {attempt} THEN 'failed'
                                     ELSE 'interrupted' END AS name, 1::bigint AS v
        FROM j
        UNION ALL SELECT j.kind, j.queue, x.name, x.v
        FROM j JOIN h ON h.jid = j.jid,
             LATERAL (VALUES ('stint_count', 1::bigint), ('stint_sum_ms', h.ran_ms),
                             ('stint_bucket_' || (SELECT count(*) FROM unnest($10::float8[]) b
                                                  WHERE b * 1000 < h.ran_ms), 1::bigint)) AS x (name, v)
    ) inc
    GROUP BY kind, queue, name ORDER BY kind, queue, name
    ON CONFLICT (kind, queue, name) DO UPDATE SET value = stint_metrics.value + EXCLUDED.value
), e AS (
    INSERT INTO stint_errors (jid, info) SELECT jid, error FROM j WHERE error IS NOT NULL
), n AS (
    SELECT pg_notify('stint_jobs', q)
    FROM (SELECT DISTINCT queue AS q FROM j WHERE state = 'enqueued'{unparked}) d
)
SELECT jid, CASE WHEN state IN {finals} THEN parent END, (SELECT count(*) FROM n), limit_key
FROM j"
    )
}

/// `complete_sql` for batches with a job of a limit.
static COMPLETE_UNPARK_SQL: LazyLock<String> = LazyLock::new(|| complete_sql(true));
/// `complete_sql` for batches of jobs without limits.
static COMPLETE_SQL: LazyLock<String> = LazyLock::new(|| complete_sql(false));

/// The labels of the ends `pick` chooses, as an SQL list.
fn labels(pick: impl Fn(StintEnd) -> bool) -> String {
    let names: Vec<String> = StintEnd::ALL
        .into_iter()
        .filter(|e| pick(*e))
        .map(|e| format!("'{}'", e.label()))
        .collect();
    format!("({})", names.join(", "))
}

/// The histogram's bucket bounds, in seconds (`COMPLETE_SQL`'s $10).
static BUCKETS: LazyLock<Vec<f64>> =
    LazyLock::new(|| stint_core::metrics::STINT_SECONDS_BUCKETS.to_vec());

/// `COMPLETE_SQL`'s parameters, column by column.
#[derive(Default)]
struct CompleteArgs {
    jid: Vec<String>,
    process: Vec<String>,
    stint: Vec<i32>,
    checkpoint: Vec<Option<Value>>,
    label: Vec<&'static str>,
    reason: Vec<Option<String>>,
    result: Vec<Option<Value>>,
    error: Vec<Option<Value>>,
    retry_at: Vec<Option<SystemTime>>,
}

impl CompleteArgs {
    fn new(completions: &[Completion]) -> Self {
        let mut a = CompleteArgs::default();
        for c in completions {
            a.jid.push(c.lease.jid.to_string());
            a.process.push(c.lease.process.clone());
            a.stint.push(c.lease.stint as i32);
            a.checkpoint.push(c.checkpoint.as_ref().map(to_json));
            a.label.push(c.outcome.label());
            a.reason.push(c.outcome.reason());
            let (result, error, retry_at) = match &c.outcome {
                Outcome::Succeeded { result } => (result.clone(), None, None),
                Outcome::Retry { error, retry_at_ms } => {
                    (None, Some(to_json(error)), Some(from_ms(*retry_at_ms)))
                }
                Outcome::Dead { error, .. } => (None, Some(to_json(error)), None),
                Outcome::Snooze { run_at_ms } => (None, None, Some(from_ms(*run_at_ms))),
                _ => (None, None, None),
            };
            a.result.push(result);
            a.error.push(error);
            a.retry_at.push(retry_at);
        }
        a
    }

    fn params(&self) -> [&(dyn ToSql + Sync); 10] {
        [
            &self.jid,
            &self.process,
            &self.stint,
            &self.checkpoint,
            &self.label,
            &self.reason,
            &self.result,
            &self.error,
            &self.retry_at,
            &*BUCKETS,
        ]
    }
}

/// Applies a batch of stint ends (one statement, one round trip); then the
/// parents whose last children just finished wake. `limited`: some job of
/// the batch has a limit (as its fetch said), so the statement unparks.
/// Should a job with a limit come in a batch not marked so, its key's
/// parked jobs are unparked by a second statement. Returns the refused
/// jids.
pub async fn complete(
    c: &mut Client,
    completions: &[Completion],
    limited: bool,
) -> StoreResult<Vec<Jid>> {
    let args = CompleteArgs::new(completions);
    let sql = if limited {
        &COMPLETE_UNPARK_SQL
    } else {
        &COMPLETE_SQL
    };
    let rows = query(&*c, sql, &args.params()).await?;
    if !limited {
        let keys: Vec<&str> = rows.iter().filter_map(|r| r.get(3)).collect();
        if !keys.is_empty() {
            query(&*c, &UNPARK_KEYS_SQL, &[&keys]).await?;
        }
    }
    let applied: HashSet<&str> = rows.iter().map(|r| r.get(0)).collect();
    wake_parents(c, rows.iter().filter_map(|r| r.get(1)).collect()).await?;
    Ok(completions
        .iter()
        .filter(|cmp| !applied.contains(cmp.lease.jid.as_str()))
        .map(|cmp| cmp.lease.jid.clone())
        .collect())
}
