//! Worker processes: registration and heartbeats, their expiry, the
//! operator's quiet or stop for a process, and the pending pause or cancel
//! of the jobs a process runs.

use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};
use stint_core::model::{now_ms, Control, Jid, ProcessCommand, ProcessInfo};
use stint_core::{StoreError, StoreResult};

use crate::db::{db_err, exec, query_row, to_json};

pub fn register(tx: &Connection, p: &ProcessInfo, ttl: Duration) -> StoreResult<()> {
    let now = now_ms();
    exec(
        tx,
        "INSERT OR REPLACE INTO stint_processes
           (id, hostname, pid, queues, concurrency, started_at, beat_at, expires_at, busy, quiet)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            p.id,
            p.hostname,
            p.pid,
            to_json(&p.queues),
            p.concurrency,
            p.started_at_ms,
            now,
            now + ttl.as_millis() as i64,
            p.busy,
            p.quiet
        ],
    )
    .map_err(db_err)?;
    Ok(())
}

pub fn heartbeat(
    tx: &Connection,
    id: &str,
    busy: u32,
    quiet: bool,
    ttl: Duration,
) -> StoreResult<bool> {
    let now = now_ms();
    let n = exec(
        tx,
        "UPDATE stint_processes SET beat_at = ?2, expires_at = ?3, busy = ?4, quiet = ?5 WHERE id = ?1",
        params![id, now, now + ttl.as_millis() as i64, busy, quiet],
    )
    .map_err(db_err)?;
    Ok(n > 0)
}

pub fn deregister(tx: &Connection, id: &str) -> StoreResult<()> {
    exec(tx, "DELETE FROM stint_processes WHERE id = ?1", [id]).map_err(db_err)?;
    Ok(())
}

/// Marks a process as stopping (`Store::mark_stopping`).
pub fn mark_stopping(tx: &Connection, id: &str) -> StoreResult<()> {
    exec(
        tx,
        "UPDATE stint_processes SET stopping = 1 WHERE id = ?1",
        [id],
    )
    .map_err(db_err)?;
    Ok(())
}

pub fn expire_process(tx: &Connection, id: &str) -> StoreResult<()> {
    exec(
        tx,
        "UPDATE stint_processes SET expires_at = 0 WHERE id = ?1",
        [id],
    )
    .map_err(db_err)?;
    Ok(())
}

/// The live processes.
pub fn processes(conn: &Connection) -> StoreResult<Vec<ProcessInfo>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT id, hostname, pid, queues, concurrency, started_at, beat_at, busy, quiet
             FROM stint_processes WHERE expires_at >= ?1 ORDER BY started_at",
        )
        .map_err(db_err)?;
    let rows = stmt
        .query_map([now_ms()], |r| {
            let queues: String = r.get(3)?;
            Ok(ProcessInfo {
                id: r.get(0)?,
                hostname: r.get(1)?,
                pid: r.get(2)?,
                queues: serde_json::from_str(&queues).unwrap_or_default(),
                concurrency: r.get(4)?,
                started_at_ms: r.get(5)?,
                beat_at_ms: r.get(6)?,
                busy: r.get(7)?,
                quiet: r.get(8)?,
            })
        })
        .map_err(db_err)?;
    rows.collect::<Result<_, _>>().map_err(db_err)
}

pub fn command_process(tx: &Connection, process: &str, command: ProcessCommand) -> StoreResult<()> {
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

/// The pending pause or cancel commands of the jobs `process` runs.
pub fn controls(conn: &Connection, process: &str) -> StoreResult<Vec<(Jid, Control)>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT jid, control FROM stint_jobs WHERE state = 'running' AND process = ?1 AND control IS NOT NULL",
        )
        .map_err(db_err)?;
    let rows = stmt
        .query_map([process], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })
        .map_err(db_err)?;
    let mut out = Vec::new();
    for row in rows {
        let (jid, control) = row.map_err(db_err)?;
        if let (Ok(jid), Some(c)) = (Jid::parse(&jid), Control::parse(&control)) {
            out.push((jid, c));
        }
    }
    Ok(out)
}
