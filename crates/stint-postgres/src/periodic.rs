//! Periodic jobs: each tick of a schedule recorded once, with its push, in
//! one transaction that holds the schedule's row (`Store::push_tick`);
//! schedules' definitions and counters for listings. Tables of migration 2.

use deadpool_postgres::Client;
use stint_core::model::{Jid, JobState};
use stint_core::periodic::{
    Overlap, ScheduleDef, ScheduleInfo, TickOutcome, TickPush, TickRecord, KEPT_TICKS,
};
use stint_core::{StoreError, StoreResult};

use crate::conn::pg_err;
use crate::sql::{execute, query};
use crate::transitions::{push_err, PushArgs, PUSH_SQL};
use crate::unique;

/// Migration 2: schedules and their recorded ticks (instants in ms since
/// the epoch, as the schedules compute them).
pub(crate) const MIGRATION: &str = r#"
CREATE TABLE stint_schedules (
    name        text PRIMARY KEY,
    spec        text NOT NULL,
    next_run_ms bigint,
    -- the last tick recorded, enqueued or skipped: no tick at or before it
    -- is pushed again
    last_tick   bigint,
    -- the last run enqueued
    last_jid    text,
    enqueued    bigint NOT NULL DEFAULT 0,
    skipped     bigint NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE stint_ticks (
    schedule text NOT NULL,
    tick     bigint NOT NULL,
    jid      text NOT NULL,
    skipped  boolean NOT NULL,
    PRIMARY KEY (schedule, tick)
);
"#;

/// Records a schedule's definition; the row lock it takes serializes the
/// pushes of one schedule's ticks. Returns the last tick and last run.
const UPSERT: &str = "
INSERT INTO stint_schedules AS s (name, spec, next_run_ms) VALUES ($1, $2, $3)
ON CONFLICT (name) DO UPDATE SET spec = excluded.spec,
  next_run_ms = CASE WHEN s.spec <> excluded.spec THEN excluded.next_run_ms
                     ELSE GREATEST(s.next_run_ms, excluded.next_run_ms) END,
  updated_at = now()
RETURNING last_tick, last_jid";

pub async fn push_tick(c: &mut Client, t: &TickPush) -> StoreResult<TickOutcome> {
    let tx = c.transaction().await.map_err(pg_err)?;
    let row = query(&tx, UPSERT, &[&t.schedule, &t.spec, &t.next_run_ms]).await?;
    let (last_tick, last_jid): (Option<i64>, Option<String>) = (row[0].get(0), row[0].get(1));
    if last_tick.is_some_and(|l| l >= t.tick_ms) {
        let jid = query(
            &tx,
            "SELECT jid FROM stint_ticks WHERE schedule = $1 AND tick = $2",
            &[&t.schedule, &t.tick_ms],
        )
        .await?
        .first()
        .and_then(|r| Jid::parse(r.get(0)).ok());
        tx.commit().await.map_err(pg_err)?;
        return Ok(TickOutcome::AlreadyDone { jid });
    }
    if t.overlap == Overlap::Skip {
        if let Some(last) = &last_jid {
            let unfinished = query(&tx, "SELECT state FROM stint_jobs WHERE jid = $1", &[last])
                .await?
                .first()
                .and_then(|r| r.get::<_, &str>(0).parse::<JobState>().ok())
                .is_some_and(|s| !s.is_final());
            if unfinished {
                record(&tx, t, last, true).await?;
                execute(
                    &tx,
                    "UPDATE stint_schedules SET last_tick = $2, skipped = skipped + 1 WHERE name = $1",
                    &[&t.schedule, &t.tick_ms],
                )
                .await?;
                tx.commit().await.map_err(pg_err)?;
                let unfinished = Jid::parse(last).map_err(StoreError::Corrupt)?;
                return Ok(TickOutcome::Skipped { unfinished });
            }
        }
    }
    // A tick whose job has a unique key another job holds stores nothing:
    // the holder is its run.
    let mut jobs = vec![t.job.clone()];
    let mut run = t.job.jid.clone();
    if t.job.options.unique.is_some() {
        let claimed = unique::claim(&tx, jobs).await?;
        run = claimed.answers[0].jid().clone();
        jobs = claimed.stored;
    }
    if !jobs.is_empty() {
        let args = PushArgs::new(&jobs)?;
        let st = tx.prepare_cached(PUSH_SQL).await.map_err(pg_err)?;
        tx.query(&st, &args.params()).await.map_err(push_err)?;
    }
    let jid = run.as_str();
    record(&tx, t, jid, false).await?;
    execute(
        &tx,
        "UPDATE stint_schedules SET last_tick = $2, last_jid = $3, enqueued = enqueued + 1 WHERE name = $1",
        &[&t.schedule, &t.tick_ms, &jid],
    )
    .await?;
    tx.commit().await.map_err(pg_err)?;
    Ok(TickOutcome::Enqueued(run))
}

/// Records the tick and trims the schedule's ticks to the last `KEPT_TICKS`.
async fn record(
    tx: &deadpool_postgres::Transaction<'_>,
    t: &TickPush,
    jid: &str,
    skipped: bool,
) -> StoreResult<()> {
    execute(
        tx,
        "INSERT INTO stint_ticks (schedule, tick, jid, skipped) VALUES ($1, $2, $3, $4)",
        &[&t.schedule, &t.tick_ms, &jid, &skipped],
    )
    .await?;
    execute(
        tx,
        "DELETE FROM stint_ticks WHERE schedule = $1 AND tick <= (
           SELECT tick FROM stint_ticks WHERE schedule = $1 ORDER BY tick DESC LIMIT 1 OFFSET $2)",
        &[&t.schedule, &(KEPT_TICKS as i64)],
    )
    .await?;
    Ok(())
}

pub async fn register_schedules(c: &mut Client, defs: &[ScheduleDef]) -> StoreResult<()> {
    let tx = c.transaction().await.map_err(pg_err)?;
    for d in defs {
        query(&tx, UPSERT, &[&d.name, &d.spec, &d.next_run_ms]).await?;
    }
    tx.commit().await.map_err(pg_err)
}

pub async fn schedules(c: &Client) -> StoreResult<Vec<ScheduleInfo>> {
    let rows = query(
        c,
        "SELECT s.name, s.spec, s.next_run_ms, s.last_tick, s.last_jid, j.state, s.enqueued, s.skipped
         FROM stint_schedules s LEFT JOIN stint_jobs j ON j.jid = s.last_jid
         ORDER BY s.name",
        &[],
    )
    .await?;
    Ok(rows
        .iter()
        .map(|r| ScheduleInfo {
            name: r.get(0),
            spec: r.get(1),
            next_run_ms: r.get(2),
            last_tick_ms: r.get(3),
            last_jid: r.get::<_, Option<&str>>(4).and_then(|j| Jid::parse(j).ok()),
            last_state: r.get::<_, Option<&str>>(5).and_then(|s| s.parse().ok()),
            enqueued: r.get::<_, i64>(6) as u64,
            skipped: r.get::<_, i64>(7) as u64,
        })
        .collect())
}

pub async fn ticks(c: &Client, schedule: &str, limit: usize) -> StoreResult<Vec<TickRecord>> {
    let limit = if limit == 0 { i64::MAX } else { limit as i64 };
    let rows = query(
        c,
        "SELECT tick, skipped, jid FROM stint_ticks WHERE schedule = $1 ORDER BY tick DESC LIMIT $2",
        &[&schedule, &limit],
    )
    .await?;
    rows.iter()
        .map(|r| {
            Ok(TickRecord {
                tick_ms: r.get(0),
                skipped: r.get(1),
                jid: Jid::parse(r.get(2)).map_err(StoreError::Corrupt)?,
            })
        })
        .collect()
}
