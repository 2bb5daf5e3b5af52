//! Operator commands: the store's side of [`lifecycle::run_command`]. The
//! rules are core's; here each command is one transaction that reads the
//! job's row `FOR UPDATE` (so a command and a stint's end never interleave,
//! and a decided move always applies) and writes the move core decided.

use deadpool_postgres::{Client, Transaction};
use stint_core::lifecycle::{self, render, CommandSite, JobCommand, JobView, Move, QueueEnd};
use stint_core::model::{Control, Jid, JobState};
use stint_core::store::CommandEffect;
use stint_core::{StoreError, StoreResult};

use crate::conn::pg_err;
use crate::family::{open_children, wake_parent_of};
use crate::sql::{execute, query};

/// Runs `command` on `jid` in one transaction.
pub async fn command(c: &mut Client, jid: &Jid, command: JobCommand) -> StoreResult<CommandEffect> {
    let tx = c.transaction().await.map_err(pg_err)?;
    let effect = command_in(&tx, jid, command).await?;
    tx.commit().await.map_err(pg_err)?;
    Ok(effect)
}

/// Runs `command` on `jid` inside `tx` (a split uses it for a pause or
/// cancel its parent was asked for while it ran).
pub async fn command_in(
    tx: &Transaction<'_>,
    jid: &Jid,
    command: JobCommand,
) -> StoreResult<CommandEffect> {
    lifecycle::run_command(&mut TxSite(tx), jid, command).await
}

/// A transaction as the place where commands are carried out.
struct TxSite<'a, 'c>(&'a Transaction<'c>);

/// How a command read the job (its row is locked until the transaction
/// ends, so every move applies).
struct Seen {
    /// Its split parent waits for it.
    awaited: bool,
}

impl CommandSite for TxSite<'_, '_> {
    type Seen = Seen;

    async fn read(&mut self, jid: &Jid) -> StoreResult<Option<(JobView, Seen)>> {
        let rows = query(
            self.0,
            "SELECT j.state, j.control,
                    EXISTS (SELECT 1 FROM stint_jobs p WHERE p.jid = j.parent AND p.state = 'waiting')
             FROM stint_jobs j WHERE j.jid = $1 FOR UPDATE OF j",
            &[&jid.as_str()],
        )
        .await?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let state: JobState = row
            .get::<_, &str>(0)
            .parse()
            .map_err(|e: String| StoreError::Corrupt(format!("job {jid}: {e}")))?;
        let control = row.get::<_, Option<&str>>(1).and_then(Control::parse);
        let seen = Seen {
            awaited: row.get(2),
        };
        Ok(Some((JobView { state, control }, seen)))
    }

    async fn awaited_by_parent(&mut self, _: &Jid, seen: &Seen) -> StoreResult<bool> {
        Ok(seen.awaited)
    }

    async fn apply(&mut self, jid: &Jid, _: &Seen, to: Move) -> StoreResult<bool> {
        let tx = self.0;
        let jid_str = jid.as_str();
        match to {
            Move::Pause | Move::Cancel => {
                let (state, reason) = render::stopped(to).expect("a move that stops the job");
                set_state(tx, jid, state, reason).await?;
                if state.is_final() {
                    wake_parent_of(tx, jid).await?;
                }
            }
            Move::Enqueue { at, reset_attempts } => {
                let at_head = at == QueueEnd::Head;
                query(tx, ENQUEUE_SQL, &[&jid_str, &at_head, &reset_attempts]).await?;
            }
            Move::Control(control) => {
                let control = control.map(Control::as_str);
                execute(
                    tx,
                    "UPDATE stint_jobs SET control = $2 WHERE jid = $1",
                    &[&jid_str, &control],
                )
                .await?;
            }
            Move::Delete => {
                // Its history and errors go with it (foreign keys cascade).
                execute(tx, "DELETE FROM stint_jobs WHERE jid = $1", &[&jid_str]).await?;
            }
        }
        Ok(true)
    }

    async fn open_children(&mut self, parent: &Jid) -> StoreResult<Vec<Jid>> {
        open_children(self.0, parent).await
    }
}

/// Moves a job to `state` (finished now when it is final), with `reason`;
/// a parked job leaves the parked set.
async fn set_state(
    tx: &Transaction<'_>,
    jid: &Jid,
    state: JobState,
    reason: &str,
) -> StoreResult<()> {
    execute(
        tx,
        "UPDATE stint_jobs SET state = $2,
           finished_at = CASE WHEN $3 THEN now() ELSE finished_at END, reason = $4,
           blocked = NULL, blocked_until = NULL
         WHERE jid = $1",
        &[&jid.as_str(), &state.as_str(), &state.is_final(), &reason],
    )
    .await?;
    Ok(())
}

/// Enqueues job $1 at the head ($2) or the tail of its queue, attempts and
/// recoveries back to 0 when $3, not parked (the fetch judges its limit
/// again), and wakes the queue's workers.
const ENQUEUE_SQL: &str = "
WITH j AS (
    UPDATE stint_jobs SET state = 'enqueued',
      seq = CASE WHEN $2 THEN nextval('stint_head_seq') ELSE nextval('stint_tail_seq') END,
      enqueued_at = now(), run_at = NULL, finished_at = NULL, blocked = NULL, blocked_until = NULL,
      attempts = CASE WHEN $3 THEN 0 ELSE attempts END,
      recoveries = CASE WHEN $3 THEN 0 ELSE recoveries END
    WHERE jid = $1 RETURNING queue
)
SELECT pg_notify('stint_jobs', queue) FROM j";
