//! Split jobs: a parent parked (`waiting`) while its children run, woken at
//! the head of its queue when the last of them finishes.

use deadpool_postgres::{Client, Transaction};
use stint_core::model::{Checkpoint, ChildRecord, Jid, NewJob};
use stint_core::store::Lease;
use stint_core::{StoreError, StoreResult};

use crate::operator::{self, Command};
use crate::pg_err;
use crate::rows::{job_columns, job_from_row, N_COLUMNS};
use crate::transitions::{push_err, query, to_json, PushArgs, PUSH_SQL};

/// Parks the parent and enqueues its children, in one transaction fenced
/// by the parent's lease; a pause or cancel asked of the parent while it
/// ran goes to the tree.
pub async fn split(
    c: &mut Client,
    lease: &Lease,
    cp: &Checkpoint,
    step: &str,
    children: &[NewJob],
) -> StoreResult<()> {
    let tx = c.transaction().await.map_err(pg_err)?;
    let jid = lease.jid.as_str();
    let stint = lease.stint as i32;
    let held = tx
        .query_opt(
            "SELECT control FROM stint_jobs
             WHERE jid = $1 AND state = 'running' AND process = $2 AND stints = $3 FOR UPDATE",
            &[&jid, &lease.process, &stint],
        )
        .await
        .map_err(pg_err)?;
    let Some(held) = held else {
        return Err(StoreError::LeaseLost(lease.jid.clone()));
    };
    let control: Option<String> = held.get(0);
    let reason = format!("waiting for {} children of split {step:?}", children.len());
    tx.execute(
        "UPDATE stint_jobs SET state = 'waiting', checkpoint = $2, process = NULL, control = NULL,
           reason = $3, fetch_token = NULL
         WHERE jid = $1",
        &[&jid, &to_json(cp), &reason],
    )
    .await
    .map_err(pg_err)?;
    tx.execute(
        "UPDATE stint_stints SET ended_at = now(), outcome = 'split', reason = $3, done = $4
         WHERE jid = $1 AND number = $2",
        &[&jid, &stint, &reason, &(cp.done as i64)],
    )
    .await
    .map_err(pg_err)?;
    let args = PushArgs::children_of(children, Some((jid, step)))?;
    let st = tx.prepare_cached(PUSH_SQL).await.map_err(pg_err)?;
    tx.query(&st, &args.params()).await.map_err(push_err)?;
    match control.as_deref() {
        Some("cancel") => {
            operator::apply(&tx, &lease.jid, Command::Cancel).await?;
        }
        Some("pause") => {
            operator::apply(&tx, &lease.jid, Command::Pause).await?;
        }
        _ => {}
    }
    tx.commit().await.map_err(pg_err)
}

/// The children of `parent`, in the order they were pushed.
pub async fn children(c: &Client, parent: &Jid) -> StoreResult<Vec<ChildRecord>> {
    let sql = format!(
        "SELECT {}, parent_step, result FROM stint_jobs WHERE parent = $1 ORDER BY id",
        job_columns("")
    );
    let rows = query(c, &sql, &[&parent.as_str()]).await?;
    rows.iter()
        .map(|r| {
            Ok(ChildRecord {
                job: job_from_row(r)?,
                step: r.get::<_, Option<String>>(N_COLUMNS).unwrap_or_default(),
                result: r.get(N_COLUMNS + 1),
            })
        })
        .collect()
}

/// Jids of the children of `parent` that have not finished.
pub async fn open_children(tx: &Transaction<'_>, parent: &Jid) -> StoreResult<Vec<Jid>> {
    let st = tx
        .prepare_cached(
            "SELECT jid FROM stint_jobs
             WHERE parent = $1 AND state NOT IN ('succeeded', 'dead', 'cancelled') ORDER BY id",
        )
        .await
        .map_err(pg_err)?;
    let rows = tx.query(&st, &[&parent.as_str()]).await.map_err(pg_err)?;
    rows.iter()
        .map(|r| Jid::parse(r.get::<_, &str>(0)).map_err(StoreError::Corrupt))
        .collect()
}

/// After a child of `parent` reached a final state (in this transaction,
/// or in one that committed): when it was the last unfinished child of a
/// waiting parent, the parent goes to the head of its queue.
///
/// The parent's row is locked first and the children are read by a later
/// statement: of several children finishing at once in different
/// transactions, the last to take the lock sees the others' commits, so
/// the parent is never left waiting.
pub async fn wake_parent(tx: &Transaction<'_>, parent: &str) -> StoreResult<()> {
    let st = tx
        .prepare_cached("SELECT 1 FROM stint_jobs WHERE jid = $1 AND state = 'waiting' FOR UPDATE")
        .await
        .map_err(pg_err)?;
    if tx.query(&st, &[&parent]).await.map_err(pg_err)?.is_empty() {
        return Ok(());
    }
    let st = tx
        .prepare_cached(
            "WITH p AS (
                 UPDATE stint_jobs SET state = 'enqueued', enqueued_at = now(),
                   reason = 'its children finished', seq = nextval('stint_head_seq')
                 WHERE jid = $1 AND state = 'waiting'
                   AND NOT EXISTS (SELECT 1 FROM stint_jobs o WHERE o.parent = $1
                                   AND o.state NOT IN ('succeeded', 'dead', 'cancelled'))
                 RETURNING queue
             )
             SELECT pg_notify('stint_jobs', queue) FROM p",
        )
        .await
        .map_err(pg_err)?;
    tx.query(&st, &[&parent]).await.map_err(pg_err)?;
    Ok(())
}

/// `wake_parent` for the parent of `child`, if it has one.
pub async fn wake_parent_of(tx: &Transaction<'_>, child: &Jid) -> StoreResult<()> {
    let st = tx
        .prepare_cached("SELECT parent FROM stint_jobs WHERE jid = $1")
        .await
        .map_err(pg_err)?;
    let parent: Option<String> = tx
        .query_opt(&st, &[&child.as_str()])
        .await
        .map_err(pg_err)?
        .and_then(|r| r.get(0));
    match parent {
        Some(p) => wake_parent(tx, &p).await,
        None => Ok(()),
    }
}
