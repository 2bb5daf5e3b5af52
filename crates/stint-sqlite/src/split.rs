//! Split jobs: a parent parked while its children run, woken when the last
//! of them finishes.

use rusqlite::{params, Connection, OptionalExtension, Transaction};
use stint_core::model::{now_ms, Checkpoint, ChildRecord, Jid, NewJob};
use stint_core::store::Lease;
use stint_core::{StoreError, StoreResult};

use crate::rows::{job_from_row, JOB_COLUMNS};
use crate::{db_err, exec};

pub fn split(
    tx: &Transaction,
    lease: &Lease,
    cp: &Checkpoint,
    step: &str,
    children: &[NewJob],
) -> StoreResult<()> {
    let now = now_ms();
    let reason = format!("waiting for {} children of split {step:?}", children.len());
    // Read the pending command, then park: one transaction, fenced.
    let fence = "jid = ?1 AND state = 'running' AND process = ?2 AND stints = ?3";
    let control: Option<Option<String>> = crate::query_row(
        tx,
        &format!("SELECT control FROM stint_jobs WHERE {fence}"),
        params![lease.jid.as_str(), lease.process, lease.stint],
        |r| r.get(0),
    )
    .optional()
    .map_err(db_err)?;
    let Some(control) = control else {
        return Err(StoreError::LeaseLost(lease.jid.clone()));
    };
    exec(
        tx,
        &format!(
            "UPDATE stint_jobs SET state = 'waiting', checkpoint = ?4, process = NULL, control = NULL, reason = ?5
             WHERE {fence}"
        ),
        params![lease.jid.as_str(), lease.process, lease.stint, serde_json::to_string(cp).unwrap(), reason],
    )
    .map_err(db_err)?;
    exec(
        tx,
        "UPDATE stint_stints SET ended_at = ?3, outcome = 'split', reason = ?4, done = ?5
         WHERE jid = ?1 AND number = ?2",
        params![lease.jid.as_str(), lease.stint, now, reason, cp.done as i64],
    )
    .map_err(db_err)?;
    crate::transitions::insert_jobs(tx, children, Some((lease.jid.as_str(), step)))?;
    // A pause or cancel asked of the parent while it ran goes to the tree.
    match control.as_deref() {
        Some("cancel") => {
            crate::operator::cancel(tx, &lease.jid)?;
        }
        Some("pause") => {
            crate::operator::pause(tx, &lease.jid)?;
        }
        _ => {}
    }
    Ok(())
}

pub fn children(conn: &Connection, parent: &Jid) -> StoreResult<Vec<ChildRecord>> {
    let sql = format!(
        "SELECT {JOB_COLUMNS}, parent_step, result FROM stint_jobs WHERE parent = ?1 ORDER BY rowid"
    );
    let mut stmt = conn.prepare_cached(&sql).map_err(db_err)?;
    let rows = stmt
        .query_map([parent.as_str()], |r| {
            let result: Option<String> = r.get(19)?;
            Ok(ChildRecord {
                job: job_from_row(r)?,
                step: r.get::<_, Option<String>>(18)?.unwrap_or_default(),
                result: result.and_then(|t| serde_json::from_str(&t).ok()),
            })
        })
        .map_err(db_err)?;
    rows.collect::<Result<_, _>>().map_err(db_err)
}

/// Jids of the children of `parent` that have not finished.
pub fn open_children(tx: &Connection, parent: &Jid) -> StoreResult<Vec<Jid>> {
    let mut stmt = tx
        .prepare_cached(
            "SELECT jid FROM stint_jobs WHERE parent = ?1 AND state NOT IN ('succeeded', 'dead', 'cancelled')
             ORDER BY rowid",
        )
        .map_err(db_err)?;
    let rows = stmt
        .query_map([parent.as_str()], |r| r.get::<_, String>(0))
        .map_err(db_err)?;
    let mut out = Vec::new();
    for row in rows {
        if let Ok(jid) = Jid::parse(&row.map_err(db_err)?) {
            out.push(jid);
        }
    }
    Ok(out)
}

/// After `child` changed state: when it was the last unfinished child of a
/// waiting parent, the parent goes to the head of its queue.
pub fn wake_parent(tx: &Connection, child: &str) -> StoreResult<()> {
    exec(
        tx,
        "UPDATE stint_jobs AS p
           SET state = 'enqueued', enqueued_at = ?2, reason = 'its children finished',
               seq = (SELECT COALESCE(MIN(q.seq), 0) - 1 FROM stint_jobs q WHERE q.state = 'enqueued' AND q.queue = p.queue)
         WHERE p.jid = (SELECT c.parent FROM stint_jobs c WHERE c.jid = ?1)
           AND p.state = 'waiting'
           AND NOT EXISTS (SELECT 1 FROM stint_jobs o WHERE o.parent = p.jid
                           AND o.state NOT IN ('succeeded', 'dead', 'cancelled'))",
        params![child, now_ms()],
    )
    .map_err(db_err)?;
    Ok(())
}
