//! Worker processes: registration and heartbeats (whose expiry decides
//! when a process's jobs are recovered), the operators' commands to a
//! process, and the pending pause or cancel of the jobs a process runs.

use std::time::{Duration, SystemTime};

use deadpool_postgres::Client;
use serde_json::Value;
use stint_core::model::{to_ms, Control, Jid, ProcessCommand, ProcessInfo};
use stint_core::{StoreError, StoreResult};

use crate::sql::{from_ms, query, to_json};

fn ttl_ms(ttl: Duration) -> f64 {
    ttl.as_millis().min(i64::MAX as u128) as f64
}

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
            &ttl_ms(ttl),
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
        &[&id, &ttl_ms(ttl), &(busy as i32), &quiet],
    )
    .await?;
    Ok(!rows.is_empty())
}

pub async fn deregister(c: &Client, id: &str) -> StoreResult<()> {
    query(c, "DELETE FROM stint_processes WHERE id = $1", &[&id]).await?;
    Ok(())
}

/// Marks a process as stopping (`Store::mark_stopping`).
pub async fn mark_stopping(c: &Client, id: &str) -> StoreResult<()> {
    query(
        c,
        "UPDATE stint_processes SET stopping = true WHERE id = $1",
        &[&id],
    )
    .await?;
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

/// The live processes.
pub async fn processes(c: &Client) -> StoreResult<Vec<ProcessInfo>> {
    let rows = query(
        c,
        "SELECT id, hostname, pid, queues, concurrency, started_at, beat_at, busy, quiet
         FROM stint_processes WHERE expires_at >= now() ORDER BY started_at, id",
        &[],
    )
    .await?;
    Ok(rows
        .iter()
        .map(|r| ProcessInfo {
            id: r.get(0),
            hostname: r.get(1),
            pid: r.get::<_, i64>(2) as u32,
            queues: serde_json::from_value(r.get::<_, Value>(3)).unwrap_or_default(),
            concurrency: r.get::<_, i32>(4).max(0) as u32,
            started_at_ms: to_ms(r.get::<_, SystemTime>(5)),
            beat_at_ms: to_ms(r.get::<_, SystemTime>(6)),
            busy: r.get::<_, i32>(7).max(0) as u32,
            quiet: r.get(8),
        })
        .collect())
}

/// Records an operator's command to a live process; a stop is never
/// downgraded to a quiet.
pub async fn command_process(
    c: &Client,
    process: &str,
    command: ProcessCommand,
) -> StoreResult<()> {
    let rows = query(
        c,
        "UPDATE stint_processes SET command = CASE WHEN command = 'stop' THEN 'stop' ELSE $2 END
         WHERE id = $1 AND expires_at >= now() RETURNING 1",
        &[&process, &command.as_str()],
    )
    .await?;
    if rows.is_empty() {
        return Err(StoreError::NoProcess(process.to_owned()));
    }
    Ok(())
}

pub async fn process_command(c: &Client, process: &str) -> StoreResult<Option<ProcessCommand>> {
    let rows = query(
        c,
        "SELECT command FROM stint_processes WHERE id = $1",
        &[&process],
    )
    .await?;
    Ok(rows
        .first()
        .and_then(|r| r.get::<_, Option<&str>>(0))
        .and_then(ProcessCommand::parse))
}

/// The pending pause or cancel of each job `process` runs.
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
