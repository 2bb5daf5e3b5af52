//! Jobs coming into the store: pushed by clients (one statement per push,
//! the NOTIFY of their queues with it), or by a running job splitting into
//! children while it parks as `waiting`.

use std::time::SystemTime;

use deadpool_postgres::Client;
use serde_json::Value;
use stint_core::lifecycle::recovery::fill;
use stint_core::lifecycle::{after_stint, JobCommand, StintEnd, SPLIT_WAITING};
use stint_core::model::{Checkpoint, Control, Jid, NewJob, Pushed};
use stint_core::store::Lease;
use stint_core::{StoreError, StoreResult};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{ToSql, Type};

use crate::commands::command_in;
use crate::conn::pg_err;
use crate::limits::UNPARK_KEYS_SQL;
use crate::sql::{execute, query, to_json};
use crate::unique;

/// Inserts jobs at the tail of their queues (or scheduled), in the order
/// given, and notifies their queues on commit.
pub(crate) const PUSH_SQL: &str = "
WITH ins AS (
    INSERT INTO stint_jobs (jid, kind, queue, args, state, options, created_at, enqueued_at, run_at, seq,
                            parent, parent_step, limit_key)
    SELECT j.jid, j.kind, j.queue, j.args,
           CASE WHEN j.run_at > now() THEN 'scheduled' ELSE 'enqueued' END,
           j.options, now(),
           CASE WHEN j.run_at > now() THEN NULL ELSE now() END,
           CASE WHEN j.run_at > now() THEN j.run_at END,
           nextval('stint_tail_seq'), $7, $8, j.options->'limit'->>'key'
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

/// A push's error: a jid that exists already is `Duplicate`.
pub(crate) fn push_err(e: tokio_postgres::Error) -> StoreError {
    let duplicate = e
        .as_db_error()
        .filter(|db| *db.code() == SqlState::UNIQUE_VIOLATION)
        // "Key (jid)=(…) already exists."
        .and_then(|db| db.detail()?.strip_prefix("Key (jid)=(")?.split_once(')'))
        .and_then(|(jid, _)| Jid::parse(jid).ok());
    match duplicate {
        Some(jid) => StoreError::Duplicate(jid),
        None => pg_err(e),
    }
}

/// Pushes `jobs` in one statement; a push with unique keys runs in a
/// transaction with their claim ([`unique::claim`]), and stores only the
/// jobs the claim lets through.
pub async fn push(c: &mut Client, jobs: Vec<NewJob>) -> StoreResult<Vec<Pushed>> {
    if jobs.is_empty() {
        return Ok(vec![]);
    }
    if !unique::any_unique(&jobs) {
        let args = PushArgs::new(&jobs)?;
        let st = c.prepare_cached(PUSH_SQL).await.map_err(pg_err)?;
        c.query(&st, &args.params()).await.map_err(push_err)?;
        return Ok(jobs.into_iter().map(|j| Pushed::New(j.jid)).collect());
    }
    PushArgs::new(&jobs)?; // bad jobs refused before any key is claimed
    let tx = c.transaction().await.map_err(pg_err)?;
    let claimed = unique::claim(&tx, jobs).await?;
    if !claimed.stored.is_empty() {
        let args = PushArgs::new(&claimed.stored)?;
        let st = tx.prepare_cached(PUSH_SQL).await.map_err(pg_err)?;
        tx.query(&st, &args.params()).await.map_err(push_err)?;
    }
    tx.commit().await.map_err(pg_err)?;
    Ok(claimed.answers)
}

/// Parks the parent and enqueues its children, in one transaction fenced
/// by the parent's lease; a pause or cancel asked of the parent while it
/// ran goes to the tree.
pub async fn split(
    c: &mut Client,
    lease: &Lease,
    cp: &Checkpoint,
    step: &str,
    children: &[NewJob],
) -> StoreResult<()> {
    let tx = c.transaction().await.map_err(pg_err)?;
    let jid = lease.jid.as_str();
    let stint = lease.stint as i32;
    let held = query(
        &tx,
        "SELECT control, limit_key FROM stint_jobs
         WHERE jid = $1 AND (state, process, stints) IS NOT DISTINCT FROM ('running', $2, $3)
         FOR UPDATE",
        &[&jid, &lease.process, &stint],
    )
    .await?;
    let Some(held) = held.first() else {
        return Err(StoreError::LeaseLost(lease.jid.clone()));
    };
    let control = held.get::<_, Option<&str>>(0).and_then(Control::parse);
    let state = after_stint(StintEnd::Split, control).expect("a split writes a state");
    let reason = fill(
        SPLIT_WAITING,
        &[
            ("n", &children.len().to_string()),
            ("step", &format!("{step:?}")),
        ],
    );
    execute(
        &tx,
        "UPDATE stint_jobs SET state = $4, checkpoint = $2, process = NULL, control = NULL,
           reason = $3, fetch_token = NULL
         WHERE jid = $1",
        &[&jid, &to_json(cp), &reason, &state.as_str()],
    )
    .await?;
    execute(
        &tx,
        "UPDATE stint_stints SET ended_at = now(), outcome = $5, reason = $3, done = $4
         WHERE jid = $1 AND number = $2",
        &[
            &jid,
            &stint,
            &reason,
            &(cp.done as i64),
            &StintEnd::Split.label(),
        ],
    )
    .await?;
    // The parent stopped running: a job waiting for a slot of its key goes.
    if let Some(key) = held.get::<_, Option<&str>>(1) {
        query(&tx, &UNPARK_KEYS_SQL, &[&vec![key]]).await?;
    }
    let args = PushArgs::children_of(children, Some((jid, step)))?;
    let st = tx.prepare_cached(PUSH_SQL).await.map_err(pg_err)?;
    tx.query(&st, &args.params()).await.map_err(push_err)?;
    let pending = control.map(|c| match c {
        Control::Pause => JobCommand::Pause,
        Control::Cancel => JobCommand::Cancel,
    });
    if let Some(command) = pending {
        command_in(&tx, &lease.jid, command).await?;
    }
    tx.commit().await.map_err(pg_err)
}
