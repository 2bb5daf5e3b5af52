//! The metrics counters (`stint_core::metrics`): one row per (kind, queue,
//! counter name), added to in the transactions that record stint ends and
//! recoveries.

use rusqlite::{params, Connection};
use stint_core::metrics::{self, Metrics, MetricsDelta};
use stint_core::StoreResult;

use crate::db::{db_err, exec};

/// Adds a batch's increments: one upsert per (kind, queue, name).
pub fn record(tx: &Connection, delta: &MetricsDelta) -> StoreResult<()> {
    if delta.is_empty() {
        return Ok(());
    }
    for (kind, queue, name, n) in delta.increments() {
        exec(
            tx,
            "INSERT INTO stint_metrics (kind, queue, name, value) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (kind, queue, name) DO UPDATE SET value = value + excluded.value",
            params![kind, queue, name, n as i64],
        )
        .map_err(db_err)?;
    }
    Ok(())
}

pub fn read(conn: &Connection) -> StoreResult<Metrics> {
    let mut stmt = conn
        .prepare_cached("SELECT kind, queue, name, value FROM stint_metrics")
        .map_err(db_err)?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?.max(0) as u64,
            ))
        })
        .map_err(db_err)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(db_err)?;
    Ok(metrics::from_rows(rows))
}
