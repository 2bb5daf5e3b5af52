//! A process's leases on running jobs: fetching (`FOR UPDATE SKIP
//! LOCKED`, stints started in the same statement), handing out again the
//! leases of a fetch whose reply was lost, and checkpoints fenced by the
//! lease.

use std::sync::LazyLock;

use deadpool_postgres::Client;
use stint_core::model::{Checkpoint, Control};
use stint_core::store::{Lease, Leased};
use stint_core::{StoreError, StoreResult};
use tokio_postgres::types::Type;
use tokio_postgres::Row;

use crate::limits::{self, Candidate};
use crate::rows::{job_columns, job_from_row, N_COLUMNS};
use crate::sql::{query, to_json};

/// Leases up to $3 waiting jobs of queue $2 (unless the queue is paused),
/// oldest first, skipping rows other fetchers hold and parked jobs;
/// starts their stints. Jobs with a limit among them are not leased here:
/// they come back as candidates (job columns NULL, then `seq`, their jid
/// and key) for [`limits::admit`].
static FETCH_SQL: LazyLock<String> = LazyLock::new(|| {
    let nulls = vec!["NULL"; N_COLUMNS].join(", ");
    format!(
        "WITH picked AS (
             SELECT jid, seq, limit_key FROM stint_jobs
             WHERE state = 'enqueued' AND blocked IS NULL AND queue = $2
               AND NOT EXISTS (SELECT 1 FROM stint_queues q WHERE q.name = $2 AND q.paused)
             ORDER BY seq LIMIT $3
             FOR UPDATE SKIP LOCKED
         ), j AS (
             UPDATE stint_jobs j SET state = 'running', process = $1, stints = j.stints + 1,
                    run_at = now(), control = NULL, fetch_token = $4
             FROM picked WHERE j.jid = picked.jid AND picked.limit_key IS NULL
             RETURNING {}, j.seq
         ), h AS (
             INSERT INTO stint_stints (jid, number, process, started_at, done)
             SELECT jid, stints, $1, now(), COALESCE((checkpoint->>'done')::bigint, 0) FROM j
             ON CONFLICT (jid, number) DO UPDATE SET process = EXCLUDED.process,
               started_at = EXCLUDED.started_at, ended_at = NULL, outcome = NULL, reason = NULL,
               done = EXCLUDED.done
         )
         SELECT j.*, NULL::text AS limited, NULL::text AS limit_key FROM j
         UNION ALL
         SELECT {nulls}, seq, jid, limit_key FROM picked WHERE limit_key IS NOT NULL",
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

/// Rounds of picking per queue while picked jobs with a limit are parked
/// instead of leased (each round parks them for good, so the next one
/// reaches the jobs behind them): a queue headed by many jobs of a full
/// key is worked through over a few fetches, not one long call.
const MAX_ROUNDS: usize = 32;

/// Leases up to `limit` jobs from `queues`, in the order given. `token`
/// marks the leases, so that a fetch whose reply was lost can be found.
/// Jobs with a limit are admitted by [`limits::admit`]; when some of the
/// jobs picked were parked, the queue is picked again for the rest (not
/// when a round moved nothing: its candidates were another fetch's).
pub async fn fetch(
    c: &mut Client,
    process: &str,
    queues: &[String],
    limit: usize,
    token: &str,
) -> StoreResult<Vec<Leased>> {
    let mut out = Vec::new();
    for queue in queues {
        for _ in 0..MAX_ROUNDS {
            let want = limit.saturating_sub(out.len());
            if want == 0 {
                break;
            }
            let rows = query(&*c, &FETCH_SQL, &[&process, queue, &(want as i64), &token]).await?;
            let picked = rows.len();
            let mut parked = 0;
            let (mut got, candidates): (Vec<Row>, Vec<Row>) = rows
                .into_iter()
                .partition(|r| r.get::<_, Option<&str>>(N_COLUMNS + 1).is_none());
            if !candidates.is_empty() {
                let candidates: Vec<Candidate> = candidates
                    .iter()
                    .map(|r| Candidate {
                        jid: r.get(N_COLUMNS + 1),
                        key: r.get(N_COLUMNS + 2),
                    })
                    .collect();
                let (rows, n) = limits::admit(c, process, token, &candidates).await?;
                got.extend(rows);
                parked = n;
            }
            got.sort_by_key(|r| r.get::<_, i64>(N_COLUMNS));
            let leased_now = got.len();
            out.extend(leased(&got, process)?);
            if picked < want || leased_now == picked || leased_now + parked == 0 {
                break;
            }
        }
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

/// Saves a running job's checkpoint, fenced by its lease (read by the jid
/// alone: see the fence of `complete.rs`); progress clears
/// the recovery count (recovery gives up only on a job whose process keeps
/// dying without it getting any further). Returns the pending operator
/// command.
pub(crate) const CHECKPOINT_SQL: &str = "
UPDATE stint_jobs SET checkpoint = $1::jsonb,
  recoveries = CASE WHEN ($1::jsonb->>'done')::bigint > COALESCE((checkpoint->>'done')::bigint, 0)
               THEN 0 ELSE recoveries END
WHERE jid = $2 AND (state, process, stints) IS NOT DISTINCT FROM ('running', $3, $4)
RETURNING control";

/// The types of `CHECKPOINT_SQL`'s parameters (for `query_typed`).
pub(crate) const CHECKPOINT_TYPES: [Type; 4] = [Type::JSONB, Type::TEXT, Type::TEXT, Type::INT4];

/// What `CHECKPOINT_SQL` returned: the pending command, or the lease lost.
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
