//! Split parents and their children: listing them, and waking a waiting
//! parent at the head of its queue when the last of its children finishes.

use std::sync::LazyLock;

use deadpool_postgres::{Client, Transaction};
use stint_core::lifecycle::{self, render::sql_final_states};
use stint_core::model::{ChildRecord, Jid};
use stint_core::{StoreError, StoreResult};

use crate::conn::pg_err;
use crate::rows::{job_columns, job_from_row, N_COLUMNS};
use crate::sql::query;

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

static OPEN_CHILDREN_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT jid FROM stint_jobs WHERE parent = $1 AND state NOT IN {} ORDER BY id",
        sql_final_states()
    )
});

/// Jids of the children of `parent` that have not finished.
pub async fn open_children(tx: &Transaction<'_>, parent: &Jid) -> StoreResult<Vec<Jid>> {
    let rows = query(tx, &OPEN_CHILDREN_SQL, &[&parent.as_str()]).await?;
    rows.iter()
        .map(|r| Jid::parse(r.get::<_, &str>(0)).map_err(StoreError::Corrupt))
        .collect()
}

/// Wakes the parent $1 (reason $2) when it waits and none of its children
/// is unfinished; notifies its queue.
static WAKE_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH p AS (
             UPDATE stint_jobs SET state = 'enqueued', enqueued_at = now(),
               reason = $2, seq = nextval('stint_head_seq')
             WHERE jid = $1 AND state = 'waiting'
               AND NOT EXISTS (SELECT 1 FROM stint_jobs o WHERE o.parent = $1
                               AND o.state NOT IN {})
             RETURNING queue
         )
         SELECT pg_notify('stint_jobs', queue) FROM p",
        sql_final_states()
    )
});

/// After a child of `parent` reached a final state (in this transaction,
/// or in one that committed): when it was the last unfinished child of a
/// waiting parent, the parent goes to the head of its queue.
///
/// The parent's row is locked first and the children are read by a later
/// statement: of several children finishing at once in different
/// transactions, the last to take the lock sees the others' commits, so
/// the parent is never left waiting.
pub async fn wake_parent(tx: &Transaction<'_>, parent: &str) -> StoreResult<()> {
    let waits = query(
        tx,
        "SELECT 1 FROM stint_jobs WHERE jid = $1 AND state = 'waiting' FOR UPDATE",
        &[&parent],
    )
    .await?;
    if !waits.is_empty() {
        query(tx, &WAKE_SQL, &[&parent, &lifecycle::CHILDREN_FINISHED]).await?;
    }
    Ok(())
}

/// `wake_parent` for the parent of `child`, if it has one.
pub async fn wake_parent_of(tx: &Transaction<'_>, child: &Jid) -> StoreResult<()> {
    let rows = query(
        tx,
        "SELECT parent FROM stint_jobs WHERE jid = $1",
        &[&child.as_str()],
    )
    .await?;
    match rows.first().and_then(|r| r.get::<_, Option<String>>(0)) {
        Some(p) => wake_parent(tx, &p).await,
        None => Ok(()),
    }
}

/// After children ended in a statement that has committed: each of their
/// `parents` wakes if it was waiting for them last, each in its own
/// transaction under the parent's lock (see [`wake_parent`]).
pub async fn wake_parents(c: &mut Client, mut parents: Vec<String>) -> StoreResult<()> {
    parents.sort_unstable();
    parents.dedup();
    for parent in parents {
        let tx = c.transaction().await.map_err(pg_err)?;
        wake_parent(&tx, &parent).await?;
        tx.commit().await.map_err(pg_err)?;
    }
    Ok(())
}
