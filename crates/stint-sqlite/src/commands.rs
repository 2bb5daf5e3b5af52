//! Operator commands: the store's side of `stint_core::lifecycle`. Core
//! decides what a command does to a job; this module reads the job and
//! makes the decided move, all in the caller's `BEGIN IMMEDIATE`
//! transaction (which holds every other writer off, so a job never moves
//! between its read and its write).

use std::sync::LazyLock;

use rusqlite::{params, Connection, OptionalExtension, Transaction};
use stint_core::lifecycle::{self, render, CommandSite, JobCommand, JobView, Move, QueueEnd};
use stint_core::model::{now_ms, Control, Jid, JobState};
use stint_core::store::CommandEffect;
use stint_core::{StoreError, StoreResult};

use crate::db::{db_err, exec, query_row};
use crate::flow;
use crate::queue::{head_seq, next_seq, wake_parent};

/// Runs `command` on `jid` (and, for a waiting split parent, on its
/// unfinished children) in the transaction `tx`.
pub(crate) fn run(tx: &Transaction, jid: &Jid, command: JobCommand) -> StoreResult<CommandEffect> {
    // Every step of the site is a blocking call on `tx`: the driver's
    // future never pends, so it completes in its first poll.
    futures::executor::block_on(lifecycle::run_command(&mut Site(tx), jid, command))
}

/// A write transaction as the site of operator commands. `BEGIN IMMEDIATE`
/// holds every other writer off until it commits: a job read in it stays
/// as it was read.
struct Site<'a, 'conn>(&'a Transaction<'conn>);

/// What a move needs of the job as it was read.
struct Seen {
    state: JobState,
    queue: String,
    parent: Option<String>,
    /// Its limit's key: a running job that stops running frees a slot.
    limit_key: Option<String>,
}

impl CommandSite for Site<'_, '_> {
    type Seen = Seen;

    async fn read(&mut self, jid: &Jid) -> StoreResult<Option<(JobView, Seen)>> {
        type Row = (
            String,
            Option<String>,
            String,
            Option<String>,
            Option<String>,
        );
        let row: Option<Row> = query_row(
            self.0,
            "SELECT state, control, queue, parent, limit_key FROM stint_jobs WHERE jid = ?1",
            [jid.as_str()],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .optional()
        .map_err(db_err)?;
        let Some((state, control, queue, parent, limit_key)) = row else {
            return Ok(None);
        };
        let state: JobState = state
            .parse()
            .map_err(|e| StoreError::Corrupt(format!("job {jid}: {e}")))?;
        let view = JobView {
            state,
            control: control.as_deref().and_then(Control::parse),
        };
        let seen = Seen {
            state,
            queue,
            parent,
            limit_key,
        };
        Ok(Some((view, seen)))
    }

    async fn awaited_by_parent(&mut self, _jid: &Jid, seen: &Seen) -> StoreResult<bool> {
        let Some(parent) = &seen.parent else {
            return Ok(false);
        };
        query_row(
            self.0,
            "SELECT EXISTS (SELECT 1 FROM stint_jobs WHERE jid = ?1 AND state = 'waiting')",
            [parent],
            |r| r.get(0),
        )
        .map_err(db_err)
    }

    async fn apply(&mut self, jid: &Jid, seen: &Seen, to: Move) -> StoreResult<bool> {
        let tx = self.0;
        match to {
            Move::Pause => {
                set_state(tx, jid, JobState::Paused, lifecycle::PAUSED_BY_OPERATOR)?;
            }
            Move::Cancel => {
                set_state(
                    tx,
                    jid,
                    JobState::Cancelled,
                    lifecycle::CANCELLED_BY_OPERATOR,
                )?;
                wake_parent(tx, jid.as_str())?;
            }
            Move::Enqueue { at, reset_attempts } => {
                let seq = match at {
                    QueueEnd::Head => head_seq(tx, &seen.queue)?,
                    QueueEnd::Tail => next_seq(tx, 1)?,
                };
                exec(
                    tx,
                    "UPDATE stint_jobs SET state = 'enqueued', seq = ?2, enqueued_at = ?3, run_at = NULL,
                       finished_at = NULL, blocked = NULL, blocked_until = NULL,
                       attempts = CASE WHEN ?4 THEN 0 ELSE attempts END,
                       recoveries = CASE WHEN ?4 THEN 0 ELSE recoveries END
                     WHERE jid = ?1",
                    params![jid.as_str(), seq, now_ms(), reset_attempts],
                )
                .map_err(db_err)?;
            }
            Move::Control(control) => {
                exec(
                    tx,
                    "UPDATE stint_jobs SET control = ?2 WHERE jid = ?1",
                    params![jid.as_str(), control.map(Control::as_str)],
                )
                .map_err(db_err)?;
            }
            Move::Delete => {
                for table in ["stint_stints", "stint_errors", "stint_jobs"] {
                    exec(
                        tx,
                        &format!("DELETE FROM {table} WHERE jid = ?1"),
                        [jid.as_str()],
                    )
                    .map_err(db_err)?;
                }
            }
        }
        if seen.state == JobState::Running && !matches!(to, Move::Control(_)) {
            if let Some(key) = &seen.limit_key {
                flow::slot_freed(tx, key)?;
            }
        }
        // Nothing else writes in the transaction: the job was still as it
        // was read.
        Ok(true)
    }

    async fn open_children(&mut self, parent: &Jid) -> StoreResult<Vec<Jid>> {
        static SQL: LazyLock<String> = LazyLock::new(|| {
            format!(
                "SELECT jid FROM stint_jobs WHERE parent = ?1 AND state NOT IN {} ORDER BY rowid",
                render::sql_final_states()
            )
        });
        let mut stmt = self.0.prepare_cached(&SQL).map_err(db_err)?;
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
}

/// Moves a job to `state`, recording `reason`; a final state stamps
/// `finished_at`. A parked job leaves the parked set.
fn set_state(tx: &Connection, jid: &Jid, state: JobState, reason: &str) -> StoreResult<()> {
    let finished = state.is_final().then(now_ms);
    exec(
        tx,
        "UPDATE stint_jobs SET state = ?2, finished_at = COALESCE(?3, finished_at), reason = ?4,
           blocked = NULL, blocked_until = NULL
         WHERE jid = ?1",
        params![jid.as_str(), state.as_str(), finished, reason],
    )
    .map_err(db_err)?;
    Ok(())
}
