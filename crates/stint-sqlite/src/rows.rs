//! Reading stored rows back into the job model.

use rusqlite::Row;
use stint_core::model::{Checkpoint, Control, ErrorInfo, Jid, JobOptions, JobRecord, JobState};

/// The columns `job_from_row` reads, in its order.
pub const JOB_COLUMNS: &str =
    "jid, kind, queue, args, state, options, attempts, recoveries, stints, \
     checkpoint, created_at, enqueued_at, run_at, finished_at, process, control, error, reason, \
     blocked, limit_key, blocked_until";

/// How many columns `JOB_COLUMNS` names: a query's own columns after them
/// start at this index.
pub const JOB_COLUMN_COUNT: usize = 21;

fn json<T: serde::de::DeserializeOwned>(row: &Row, idx: usize, what: &str) -> rusqlite::Result<T> {
    let text: String = row.get(idx)?;
    serde_json::from_str(&text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(
            idx,
            rusqlite::types::Type::Text,
            format!("stored {what} is not valid: {e}").into(),
        )
    })
}

pub fn job_from_row(row: &Row) -> rusqlite::Result<JobRecord> {
    let jid: String = row.get(0)?;
    let state: String = row.get(4)?;
    let state: JobState = state.parse().map_err(|e: String| {
        rusqlite::Error::FromSqlConversionFailure(4, rusqlite::types::Type::Text, e.into())
    })?;
    let options: JobOptions = json(row, 5, "options")?;
    let checkpoint: Checkpoint = json(row, 9, "checkpoint")?;
    let control: Option<String> = row.get(15)?;
    let error: Option<String> = row.get(16)?;
    Ok(JobRecord {
        jid: Jid::parse(&jid).unwrap_or_default(),
        kind: row.get(1)?,
        queue: row.get(2)?,
        args: json(row, 3, "args")?,
        state,
        options,
        attempts: row.get(6)?,
        recoveries: row.get(7)?,
        stints: row.get(8)?,
        checkpoint,
        created_at_ms: row.get(10)?,
        enqueued_at_ms: row.get(11)?,
        run_at_ms: row.get(12)?,
        finished_at_ms: row.get(13)?,
        process: row.get(14)?,
        control: control.as_deref().and_then(Control::parse),
        error: error.and_then(|e| serde_json::from_str::<ErrorInfo>(&e).ok()),
        reason: row.get(17)?,
        traceparent: None,
        blocked: crate::flow::blocked(row.get(18)?, row.get(19)?, row.get(20)?),
    })
}
