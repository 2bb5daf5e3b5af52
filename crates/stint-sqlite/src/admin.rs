//! The dashboard's commands: clearing a queue, deleting a job, and quiet or
//! stop for a worker process, each one transaction.

use rusqlite::{params, Connection, OptionalExtension, Transaction};
use stint_core::model::{now_ms, Jid, JobState, ProcessCommand};
use stint_core::{StoreError, StoreResult};

use crate::{db_err, exec, query_row};

/// Deletes the enqueued jobs of `queue`, with their history and errors.
/// Children of a split parent that waits for them stay: deleting them would
/// leave the parent waiting forever.
pub fn clear_queue(tx: &Transaction, queue: &str) -> StoreResult<u64> {
    let doomed = "SELECT j.jid FROM stint_jobs j
         WHERE j.state = 'enqueued' AND j.queue = ?1
           AND NOT EXISTS (SELECT 1 FROM stint_jobs p WHERE p.jid = j.parent AND p.state = 'waiting')";
    for table in ["stint_stints", "stint_errors"] {
        exec(
            tx,
            &format!("DELETE FROM {table} WHERE jid IN ({doomed})"),
            [queue],
        )
        .map_err(db_err)?;
    }
    let n = exec(
        tx,
        &format!("DELETE FROM stint_jobs WHERE jid IN ({doomed})"),
        [queue],
    )
    .map_err(db_err)?;
    Ok(n as u64)
}

pub fn delete(tx: &Transaction, jid: &Jid) -> StoreResult<()> {
    let row: Option<(String, Option<String>)> = query_row(
        tx,
        "SELECT j.state, (SELECT p.state FROM stint_jobs p WHERE p.jid = j.parent)
         FROM stint_jobs j WHERE j.jid = ?1",
        [jid.as_str()],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()
    .map_err(db_err)?;
    let Some((state, parent_state)) = row else {
        return Err(StoreError::NotFound(jid.clone()));
    };
    let state: JobState = state.parse().map_err(StoreError::Corrupt)?;
    stint_core::lifecycle::check_deletable(jid, state, parent_state.as_deref() == Some("waiting"))?;
    for table in ["stint_stints", "stint_errors", "stint_jobs"] {
        exec(
            tx,
            &format!("DELETE FROM {table} WHERE jid = ?1"),
            [jid.as_str()],
        )
        .map_err(db_err)?;
    }
    Ok(())
}

pub fn command_process(
    tx: &Transaction,
    process: &str,
    command: ProcessCommand,
) -> StoreResult<()> {
    // A stop is never downgraded to a quiet.
    let n = exec(
        tx,
        "UPDATE stint_processes SET command = CASE WHEN command = 'stop' THEN 'stop' ELSE ?2 END
         WHERE id = ?1 AND expires_at >= ?3",
        params![process, command.as_str(), now_ms()],
    )
    .map_err(db_err)?;
    if n == 0 {
        return Err(StoreError::NoProcess(process.to_owned()));
    }
    Ok(())
}

pub fn process_command(conn: &Connection, process: &str) -> StoreResult<Option<ProcessCommand>> {
    let command: Option<Option<String>> = query_row(
        conn,
        "SELECT command FROM stint_processes WHERE id = ?1",
        [process],
        |r| r.get(0),
    )
    .optional()
    .map_err(db_err)?;
    Ok(command.flatten().as_deref().and_then(ProcessCommand::parse))
}
