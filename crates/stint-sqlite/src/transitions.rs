//! The transitions of a job's own life: pushed, ended stints, and a split
//! into children. The state a stint's end writes is the SQL rendering of
//! `stint_core::lifecycle::after_stint`.

use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, Transaction};
use stint_core::lifecycle::{self, recovery, render, JobCommand, StintEnd};
use stint_core::metrics::MetricsDelta;
use stint_core::model::{now_ms, to_ms, Checkpoint, Control, Jid, JobState, NewJob, Pushed};
use stint_core::store::{Completion, Lease, Outcome};
use stint_core::{StoreError, StoreResult};

use crate::db::{db_err, exec, query_row, to_json};
use crate::flow;
use crate::queue::{head_seq_sql, next_seq, wake_parent};

/// The lease fence of a stint's writes: ?1 jid, ?2 process, ?3 stint.
const FENCE: &str = "jid = ?1 AND state = 'running' AND process = ?2 AND stints = ?3";

/// Pushes `jobs`: each is stored, or, when its unique key is held (by a
/// stored job as its `Unique` rules, or by an earlier job of this push),
/// answered with the holder's jid.
pub fn push(tx: &Connection, jobs: &[NewJob]) -> StoreResult<Vec<Pushed>> {
    if jobs.iter().all(|j| j.options.unique.is_none()) {
        insert_jobs(tx, jobs.iter(), None)?;
        return Ok(jobs.iter().map(|j| Pushed::New(j.jid.clone())).collect());
    }
    let now = now_ms();
    let mut taken: HashMap<&str, &Jid> = HashMap::new();
    let mut answers = Vec::with_capacity(jobs.len());
    for job in jobs {
        let Some(unique) = &job.options.unique else {
            answers.push(Pushed::New(job.jid.clone()));
            continue;
        };
        let holder = match taken.get(unique.key.as_str()) {
            Some(jid) => Some((*jid).clone()),
            None => flow::holder(tx, &unique.key, now)?,
        };
        match holder {
            Some(jid) => answers.push(Pushed::Duplicate {
                jid,
                key: unique.key.clone(),
            }),
            None => {
                taken.insert(&unique.key, &job.jid);
                answers.push(Pushed::New(job.jid.clone()));
            }
        }
    }
    let stored: Vec<&NewJob> = jobs
        .iter()
        .zip(&answers)
        .filter(|(_, a)| !a.is_duplicate())
        .map(|(j, _)| j)
        .collect();
    insert_jobs(tx, stored.into_iter(), None)?;
    for (key, jid) in taken {
        flow::hold(tx, key, jid)?;
    }
    Ok(answers)
}

/// Inserts jobs at the tail of their queues (or scheduled), as children of
/// `parent` (jid, split step) when given. Unique keys are not looked at
/// here: `push` decides them; the children of a split are part of their
/// parent's run and are all stored.
fn insert_jobs<'a>(
    tx: &Connection,
    jobs: impl ExactSizeIterator<Item = &'a NewJob>,
    parent: Option<(&str, &str)>,
) -> StoreResult<()> {
    let now = now_ms();
    let base = next_seq(tx, jobs.len())?;
    let mut stmt = tx
        .prepare_cached(
            "INSERT INTO stint_jobs (jid, kind, queue, args, state, options, created_at, enqueued_at, run_at, seq,
                                     parent, parent_step, limit_key)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        )
        .map_err(db_err)?;
    for (i, job) in jobs.enumerate() {
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
            job.options.limit.as_ref().map(|l| l.key.as_str()),
        ]);
        match r {
            Ok(_) => {}
            Err(rusqlite::Error::SqliteFailure(f, _))
                if f.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                return Err(StoreError::Duplicate(job.jid.clone()));
            }
            Err(e) => return Err(db_err(e)),
        }
    }
    Ok(())
}

/// The end of a stint, one statement for every outcome: ?1-?3 the lease,
/// ?4 the checkpoint (NULL keeps the saved one), ?5 the end's label, ?6
/// now, ?7 attempts used, ?8 the retry time, ?9 the error, ?10 the reason,
/// ?11 the result. The state is `after_stint` of the end and the pending
/// control, rendered by core; an interrupted stint goes to the head of its
/// queue.
static COMPLETE: LazyLock<String> = LazyLock::new(|| {
    let state = render::sql_state_after_label("?5", "control");
    format!(
        "UPDATE stint_jobs SET state = {state},
           finished_at = CASE WHEN {state} IN {finals} THEN ?6 END,
           checkpoint = COALESCE(?4, checkpoint), process = NULL, control = NULL,
           attempts = attempts + ?7, run_at = COALESCE(?8, run_at),
           seq = CASE ?5 WHEN {interrupted} THEN {head} ELSE seq END,
           enqueued_at = CASE ?5 WHEN {interrupted} THEN ?6 ELSE enqueued_at END,
           error = COALESCE(?9, error), reason = ?10,
           result = CASE ?5 WHEN {succeeded} THEN ?11 ELSE result END
         WHERE {FENCE}
         RETURNING kind, queue, limit_key",
        finals = render::sql_final_states(),
        interrupted = quoted(StintEnd::Interrupted.label()),
        succeeded = quoted(StintEnd::Succeeded.label()),
        head = head_seq_sql("stint_jobs.queue"),
    )
});

fn quoted(word: &str) -> String {
    format!("'{word}'")
}

pub fn complete(tx: &Connection, completions: &[Completion]) -> StoreResult<Vec<Jid>> {
    let now = now_ms();
    let mut refused = Vec::new();
    let mut metrics = MetricsDelta::default();
    for c in completions {
        let lease = &c.lease;
        let end = StintEnd::of(&c.outcome);
        let (error, retry_at, result) = match &c.outcome {
            Outcome::Retry { error, retry_at_ms } => (Some(error), Some(*retry_at_ms), None),
            Outcome::Dead { error, .. } => (Some(error), None, None),
            Outcome::Succeeded { result } => (None, None, result.as_ref().map(to_json)),
            Outcome::Snooze { run_at_ms } => (None, Some(*run_at_ms), None),
            _ => (None, None, None),
        };
        let ended: Option<(String, String, Option<String>)> = query_row(
            tx,
            &COMPLETE,
            params![
                lease.jid.as_str(),
                lease.process,
                lease.stint,
                c.checkpoint.as_ref().map(to_json),
                end.label(),
                now,
                u32::from(end.uses_attempt()),
                retry_at,
                error.map(to_json),
                c.outcome.reason(),
                result,
            ],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()
        .map_err(db_err)?;
        let Some((kind, queue, limit_key)) = ended else {
            refused.push(lease.jid.clone());
            continue;
        };
        wake_parent(tx, lease.jid.as_str())?;
        if let Some(key) = limit_key {
            flow::slot_freed(tx, &key)?;
        }
        let done = c.checkpoint.as_ref().map(|cp| cp.done as i64);
        let started: Option<i64> = query_row(tx,
            "UPDATE stint_stints SET ended_at = ?3, outcome = ?4, reason = ?5,
               done = COALESCE(?6, (SELECT json_extract(checkpoint, '$.done') FROM stint_jobs WHERE jid = ?1), done)
             WHERE jid = ?1 AND number = ?2
             RETURNING started_at",
            params![lease.jid.as_str(), lease.stint, now, end.label(), c.outcome.reason(), done],
            |r| r.get(0),
        )
        .optional()
        .map_err(db_err)?;
        let ran = started.map_or(0, |t| (now - t).max(0) as u64);
        metrics.stint_ended(&kind, &queue, &c.outcome, Duration::from_millis(ran));
        if let Some(error) = error {
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

/// Parks the running job of `lease` as `waiting` and inserts its children,
/// fenced by the lease. A pause or cancel asked of the parent while it ran
/// then goes to the tree, as the operator command would.
pub fn split(
    tx: &Transaction,
    lease: &Lease,
    cp: &Checkpoint,
    step: &str,
    children: &[NewJob],
) -> StoreResult<()> {
    let now = now_ms();
    let reason = recovery::fill(
        lifecycle::SPLIT_WAITING,
        &[
            ("n", &children.len().to_string()),
            ("step", &format!("{step:?}")),
        ],
    );
    let fenced = params![lease.jid.as_str(), lease.process, lease.stint];
    let row: Option<(Option<String>, Option<String>)> = query_row(
        tx,
        &format!("SELECT control, limit_key FROM stint_jobs WHERE {FENCE}"),
        fenced,
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()
    .map_err(db_err)?;
    let Some((control, limit_key)) = row else {
        return Err(StoreError::LeaseLost(lease.jid.clone()));
    };
    exec(
        tx,
        &format!(
            "UPDATE stint_jobs SET state = 'waiting', checkpoint = ?4, process = NULL, control = NULL, reason = ?5
             WHERE {FENCE}"
        ),
        params![lease.jid.as_str(), lease.process, lease.stint, to_json(cp), reason],
    )
    .map_err(db_err)?;
    exec(
        tx,
        "UPDATE stint_stints SET ended_at = ?3, outcome = ?4, reason = ?5, done = ?6
         WHERE jid = ?1 AND number = ?2",
        params![
            lease.jid.as_str(),
            lease.stint,
            now,
            StintEnd::Split.label(),
            reason,
            cp.done as i64
        ],
    )
    .map_err(db_err)?;
    if let Some(key) = limit_key {
        flow::slot_freed(tx, &key)?;
    }
    insert_jobs(tx, children.iter(), Some((lease.jid.as_str(), step)))?;
    let command = match control.as_deref().and_then(Control::parse) {
        Some(Control::Cancel) => JobCommand::Cancel,
        Some(Control::Pause) => JobCommand::Pause,
        None => return Ok(()),
    };
    crate::commands::run(tx, &lease.jid, command)?;
    Ok(())
}
