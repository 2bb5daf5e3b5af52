//! Reading stored rows back into the job model.

use std::time::SystemTime;

use serde_json::Value;
use stint_core::model::{
    to_ms, Blocked, Checkpoint, Control, ErrorInfo, Jid, JobOptions, JobRecord, JobState,
    WaitReason,
};
use stint_core::{StoreError, StoreResult};
use tokio_postgres::Row;

/// The columns `job_from_row` reads, in its order (prefix them with a
/// table alias through [`job_columns`]).
const COLUMNS: [&str; 21] = [
    "jid",
    "kind",
    "queue",
    "args",
    "state",
    "options",
    "attempts",
    "recoveries",
    "stints",
    "checkpoint",
    "created_at",
    "enqueued_at",
    "run_at",
    "finished_at",
    "process",
    "control",
    "error",
    "reason",
    "blocked",
    "blocked_until",
    "limit_key",
];

/// The job columns as a select list, each prefixed with `alias.` when given.
pub fn job_columns(alias: &str) -> String {
    COLUMNS
        .iter()
        .map(|c| {
            if alias.is_empty() {
                (*c).to_owned()
            } else {
                format!("{alias}.{c}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The number of job columns (the index of the first column after them).
pub const N_COLUMNS: usize = COLUMNS.len();

fn get<'a, T: tokio_postgres::types::FromSql<'a>>(row: &'a Row, idx: usize) -> StoreResult<T> {
    row.try_get(idx).map_err(|e| {
        StoreError::Corrupt(format!(
            "column {} of a stint_jobs row: {e}",
            COLUMNS.get(idx).unwrap_or(&"?")
        ))
    })
}

fn json<T: serde::de::DeserializeOwned>(row: &Row, idx: usize, jid: &str) -> StoreResult<T> {
    let v: Value = get(row, idx)?;
    serde_json::from_value(v).map_err(|e| {
        StoreError::Corrupt(format!(
            "job {jid}: stored {} is not valid: {e}",
            COLUMNS[idx]
        ))
    })
}

fn ms(row: &Row, idx: usize) -> StoreResult<Option<i64>> {
    Ok(get::<Option<SystemTime>>(row, idx)?.map(to_ms))
}

fn count(row: &Row, idx: usize) -> StoreResult<u32> {
    Ok(get::<i32>(row, idx)?.max(0) as u32)
}

pub fn job_from_row(row: &Row) -> StoreResult<JobRecord> {
    let jid: String = get(row, 0)?;
    let state: String = get(row, 4)?;
    let state: JobState = state
        .parse()
        .map_err(|e: String| StoreError::Corrupt(format!("job {jid}: {e}")))?;
    let control: Option<String> = get(row, 15)?;
    let error: Option<Value> = get(row, 16)?;
    // Only an enqueued job is parked; the columns are cleared when it moves.
    let blocked = match get::<Option<String>>(row, 18)?.as_deref() {
        Some(reason) if state == JobState::Enqueued => Some(Blocked {
            reason: WaitReason::parse(reason).ok_or_else(|| {
                StoreError::Corrupt(format!("job {jid}: unknown blocked reason {reason:?}"))
            })?,
            key: get::<Option<String>>(row, 20)?.unwrap_or_default(),
            until_ms: ms(row, 19)?,
        }),
        _ => None,
    };
    Ok(JobRecord {
        jid: Jid::parse(&jid).map_err(StoreError::Corrupt)?,
        kind: get(row, 1)?,
        queue: get(row, 2)?,
        args: get(row, 3)?,
        state,
        options: json::<JobOptions>(row, 5, &jid)?,
        attempts: count(row, 6)?,
        recoveries: count(row, 7)?,
        stints: count(row, 8)?,
        checkpoint: json::<Checkpoint>(row, 9, &jid)?,
        created_at_ms: ms(row, 10)?.unwrap_or(0),
        enqueued_at_ms: ms(row, 11)?,
        run_at_ms: ms(row, 12)?,
        finished_at_ms: ms(row, 13)?,
        process: get(row, 14)?,
        control: control.as_deref().and_then(Control::parse),
        error: error.and_then(|e| serde_json::from_value::<ErrorInfo>(e).ok()),
        reason: get(row, 17)?,
        traceparent: None,
        blocked,
    })
}
