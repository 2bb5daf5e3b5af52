//! Periodic jobs: each tick of a schedule recorded once, with its push, in
//! one transaction (`Store::push_tick`); schedules' definitions and
//! counters for listings.

use rusqlite::{params, Connection, OptionalExtension};
use stint_core::model::{now_ms, Jid, JobState};
use stint_core::periodic::{
    Overlap, ScheduleDef, ScheduleInfo, TickOutcome, TickPush, TickRecord, KEPT_TICKS,
};
use stint_core::{StoreError, StoreResult};

use crate::db::{db_err, exec, query_row};
use crate::transitions;

/// The tables (created with the others by `schema::migrate`).
pub(crate) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS stint_schedules (
    name        TEXT PRIMARY KEY,
    spec        TEXT NOT NULL,
    next_run_at INTEGER,
    -- the last tick recorded, enqueued or skipped: no tick at or before it
    -- is pushed again
    last_tick   INTEGER,
    -- the last run enqueued
    last_jid    TEXT,
    enqueued    INTEGER NOT NULL DEFAULT 0,
    skipped     INTEGER NOT NULL DEFAULT 0,
    updated_at  INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS stint_ticks (
    schedule TEXT NOT NULL,
    tick     INTEGER NOT NULL,
    jid      TEXT NOT NULL,
    skipped  INTEGER NOT NULL,
    PRIMARY KEY (schedule, tick)
) WITHOUT ROWID;
"#;

fn upsert_def(
    tx: &Connection,
    name: &str,
    spec: &str,
    next: Option<i64>,
    now: i64,
) -> rusqlite::Result<usize> {
    exec(
        tx,
        "INSERT INTO stint_schedules (name, spec, next_run_at, updated_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (name) DO UPDATE SET spec = excluded.spec,
           next_run_at = CASE WHEN spec <> excluded.spec THEN excluded.next_run_at
                              ELSE MAX(COALESCE(next_run_at, excluded.next_run_at),
                                       COALESCE(excluded.next_run_at, next_run_at)) END,
           updated_at = excluded.updated_at",
        params![name, spec, next, now],
    )
}

pub fn push_tick(tx: &Connection, t: &TickPush) -> StoreResult<TickOutcome> {
    let now = now_ms();
    upsert_def(tx, &t.schedule, &t.spec, t.next_run_ms, now).map_err(db_err)?;
    let (last_tick, last_jid): (Option<i64>, Option<String>) = query_row(
        tx,
        "SELECT last_tick, last_jid FROM stint_schedules WHERE name = ?1",
        [&t.schedule],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .map_err(db_err)?;
    if last_tick.is_some_and(|l| l >= t.tick_ms) {
        let jid: Option<String> = query_row(
            tx,
            "SELECT jid FROM stint_ticks WHERE schedule = ?1 AND tick = ?2",
            params![t.schedule, t.tick_ms],
            |r| r.get(0),
        )
        .optional()
        .map_err(db_err)?;
        return Ok(TickOutcome::AlreadyDone {
            jid: jid.and_then(|j| Jid::parse(&j).ok()),
        });
    }
    if t.overlap == Overlap::Skip {
        if let Some(last) = &last_jid {
            let state: Option<String> = query_row(
                tx,
                "SELECT state FROM stint_jobs WHERE jid = ?1",
                [last],
                |r| r.get(0),
            )
            .optional()
            .map_err(db_err)?;
            let unfinished = state
                .and_then(|s| s.parse::<JobState>().ok())
                .is_some_and(|s| !s.is_final());
            if unfinished {
                record(tx, t, last, true)?;
                exec(
                    tx,
                    "UPDATE stint_schedules SET last_tick = ?2, skipped = skipped + 1 WHERE name = ?1",
                    params![t.schedule, t.tick_ms],
                )
                .map_err(db_err)?;
                let unfinished = Jid::parse(last).map_err(StoreError::Corrupt)?;
                return Ok(TickOutcome::Skipped { unfinished });
            }
        }
    }
    // A tick whose job has a held unique key is the holder's run.
    let pushed = transitions::push(tx, std::slice::from_ref(&t.job))?;
    let jid = pushed
        .first()
        .map_or_else(|| t.job.jid.clone(), |p| p.jid().clone());
    record(tx, t, jid.as_str(), false)?;
    exec(
        tx,
        "UPDATE stint_schedules SET last_tick = ?2, last_jid = ?3, enqueued = enqueued + 1 WHERE name = ?1",
        params![t.schedule, t.tick_ms, jid.as_str()],
    )
    .map_err(db_err)?;
    Ok(TickOutcome::Enqueued(jid))
}

/// Records the tick and trims the schedule's ticks to the last `KEPT_TICKS`.
fn record(tx: &Connection, t: &TickPush, jid: &str, skipped: bool) -> StoreResult<()> {
    exec(
        tx,
        "INSERT INTO stint_ticks (schedule, tick, jid, skipped) VALUES (?1, ?2, ?3, ?4)",
        params![t.schedule, t.tick_ms, jid, skipped],
    )
    .map_err(db_err)?;
    exec(
        tx,
        "DELETE FROM stint_ticks WHERE schedule = ?1 AND tick <= (
           SELECT tick FROM stint_ticks WHERE schedule = ?1 ORDER BY tick DESC LIMIT 1 OFFSET ?2)",
        params![t.schedule, KEPT_TICKS as i64],
    )
    .map_err(db_err)?;
    Ok(())
}

pub fn register_schedules(tx: &Connection, defs: &[ScheduleDef]) -> StoreResult<()> {
    let now = now_ms();
    for d in defs {
        upsert_def(tx, &d.name, &d.spec, d.next_run_ms, now).map_err(db_err)?;
    }
    Ok(())
}

pub fn schedules(conn: &Connection) -> StoreResult<Vec<ScheduleInfo>> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT s.name, s.spec, s.next_run_at, s.last_tick, s.last_jid, j.state, s.enqueued, s.skipped
             FROM stint_schedules s LEFT JOIN stint_jobs j ON j.jid = s.last_jid
             ORDER BY s.name",
        )
        .map_err(db_err)?;
    let rows = stmt
        .query_map([], |r| {
            let jid: Option<String> = r.get(4)?;
            let state: Option<String> = r.get(5)?;
            Ok(ScheduleInfo {
                name: r.get(0)?,
                spec: r.get(1)?,
                next_run_ms: r.get(2)?,
                last_tick_ms: r.get(3)?,
                last_jid: jid.and_then(|j| Jid::parse(&j).ok()),
                last_state: state.and_then(|s| s.parse().ok()),
                enqueued: r.get::<_, i64>(6)? as u64,
                skipped: r.get::<_, i64>(7)? as u64,
            })
        })
        .map_err(db_err)?;
    rows.collect::<rusqlite::Result<_>>().map_err(db_err)
}

pub fn ticks(conn: &Connection, schedule: &str, limit: usize) -> StoreResult<Vec<TickRecord>> {
    let limit = if limit == 0 { -1 } else { limit as i64 };
    let mut stmt = conn
        .prepare_cached(
            "SELECT tick, skipped, jid FROM stint_ticks WHERE schedule = ?1 ORDER BY tick DESC LIMIT ?2",
        )
        .map_err(db_err)?;
    let rows = stmt
        .query_map(params![schedule, limit], |r| {
            let jid: String = r.get(2)?;
            Ok((r.get::<_, i64>(0)?, r.get::<_, bool>(1)?, jid))
        })
        .map_err(db_err)?;
    let mut out = Vec::new();
    for row in rows {
        let (tick_ms, skipped, jid) = row.map_err(db_err)?;
        out.push(TickRecord {
            tick_ms,
            skipped,
            jid: Jid::parse(&jid).map_err(StoreError::Corrupt)?,
        });
    }
    Ok(out)
}
