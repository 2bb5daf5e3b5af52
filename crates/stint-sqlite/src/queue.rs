//! Where jobs sit in their queues: positions at the tail and the head, and
//! the wake-up of a split parent whose last child finished (back to the
//! head of its queue).

use std::sync::LazyLock;

use rusqlite::{params, Connection};
use stint_core::lifecycle::{self, render};
use stint_core::model::now_ms;
use stint_core::StoreResult;

use crate::db::{db_err, exec, query_row};

/// The `seq` that puts a job at the head of the queue named by the SQL
/// expression `queue`, as an SQL expression: ahead of every job fetch
/// reads (parked jobs are not read, and keep their own positions).
pub(crate) fn head_seq_sql(queue: &str) -> String {
    format!(
        "(SELECT COALESCE(MIN(h.seq), 0) - 1 FROM stint_jobs h
          WHERE h.state = 'enqueued' AND h.blocked IS NULL AND h.queue = {queue})"
    )
}

/// Reserves `n` tail positions; returns the first. A counter, not the
/// clock: queue order holds however the clocks of processes differ.
pub(crate) fn next_seq(tx: &Connection, n: usize) -> StoreResult<i64> {
    let last: i64 = query_row(
        tx,
        "UPDATE stint_counters SET value = value + ?1 WHERE name = 'seq' RETURNING value",
        [n as i64],
        |r| r.get(0),
    )
    .map_err(db_err)?;
    Ok(last - n as i64 + 1)
}

/// The `seq` that puts a job at the head of `queue`.
pub(crate) fn head_seq(tx: &Connection, queue: &str) -> StoreResult<i64> {
    static SQL: LazyLock<String> = LazyLock::new(|| format!("SELECT {}", head_seq_sql("?1")));
    query_row(tx, &SQL, [queue], |r| r.get(0)).map_err(db_err)
}

/// After `child` changed state: when it was the last unfinished child of a
/// waiting parent, the parent goes to the head of its queue.
pub(crate) fn wake_parent(tx: &Connection, child: &str) -> StoreResult<()> {
    static SQL: LazyLock<String> = LazyLock::new(|| {
        format!(
            "UPDATE stint_jobs AS p
               SET state = 'enqueued', enqueued_at = ?2, reason = ?3,
                   seq = {head}
             WHERE p.jid = (SELECT c.parent FROM stint_jobs c WHERE c.jid = ?1)
               AND p.state = 'waiting'
               AND NOT EXISTS (SELECT 1 FROM stint_jobs o WHERE o.parent = p.jid
                               AND o.state NOT IN {finals})",
            head = head_seq_sql("p.queue"),
            finals = render::sql_final_states(),
        )
    });
    exec(
        tx,
        &SQL,
        params![child, now_ms(), lifecycle::CHILDREN_FINISHED],
    )
    .map_err(db_err)?;
    Ok(())
}
