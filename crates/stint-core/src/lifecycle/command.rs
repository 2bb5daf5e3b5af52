//! Operator commands: which move a command makes on a job in each state,
//! what it says, and the one driver every store runs its commands through.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{StoreError, StoreResult};
use crate::model::{Control, Jid, JobState};
use crate::store::CommandEffect;

/// A command an operator gives one job (the CLI's `stint pause JID`, the
/// dashboard's buttons, the JSON API's `POST /api/jobs/JID/ACTION`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobCommand {
    /// Park the job with its checkpoint: at once unless it runs; a running
    /// job is asked and stops at its next checkpoint.
    Pause,
    /// Put a paused job back at the head of its queue, or withdraw a pause
    /// a running job has not acted on yet.
    Resume,
    /// Stop the job for good, keeping its checkpoint: at once unless it
    /// runs; a running job is asked and stops at its next checkpoint.
    Cancel,
    /// Enqueue a dead, cancelled, retrying or scheduled job now, with its
    /// checkpoint; a dead job gets its attempts back.
    Retry,
    /// Delete a job that neither runs nor waits, with its history.
    Delete,
}

impl JobCommand {
    /// Every command.
    pub const ALL: [JobCommand; 5] = [
        JobCommand::Pause,
        JobCommand::Resume,
        JobCommand::Cancel,
        JobCommand::Retry,
        JobCommand::Delete,
    ];

    /// The command's word: "pause", "resume", "cancel", "retry", "delete".
    pub fn as_str(self) -> &'static str {
        match self {
            JobCommand::Pause => "pause",
            JobCommand::Resume => "resume",
            JobCommand::Cancel => "cancel",
            JobCommand::Retry => "retry",
            JobCommand::Delete => "delete",
        }
    }
}

impl fmt::Display for JobCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobCommand {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        JobCommand::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| {
                format!("unknown command {s:?}; expected pause, resume, cancel, retry or delete")
            })
    }
}

/// What a command needs to know of a job.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JobView {
    /// Where the job is.
    pub state: JobState,
    /// A pause or cancel a running job has been asked for and not yet acted
    /// on.
    pub control: Option<Control>,
}

/// Which end of its queue a job goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueEnd {
    /// Next to be fetched (a resumed or interrupted job).
    Head,
    /// After every job already waiting (a retried job).
    Tail,
}

/// The change a command makes to one job; the store makes it atomically,
/// guarded by the state it read the job in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Move {
    /// To `paused`, recording [`super::PAUSED_BY_OPERATOR`].
    Pause,
    /// To `cancelled` (final), recording [`super::CANCELLED_BY_OPERATOR`]; a
    /// split child counts as finished for its parent.
    Cancel,
    /// To `enqueued` at one end of its queue, checkpoint kept;
    /// `reset_attempts` gives a dead job its attempts and recoveries back.
    Enqueue {
        /// Which end of the queue.
        at: QueueEnd,
        /// Attempts and recoveries back to 0.
        reset_attempts: bool,
    },
    /// A running job: ask it to pause or cancel at its next checkpoint
    /// (`Some`), or withdraw what it was asked (`None`).
    Control(Option<Control>),
    /// Delete the job, its history and its errors.
    Delete,
}

/// What a command does to a job in a given state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The job is already as the command asks: nothing to write.
    Unchanged(CommandEffect),
    /// Make `to`; when `cascade`, then send the command on to the job's
    /// unfinished children (a waiting parent being cancelled).
    Move {
        /// The change to make.
        to: Move,
        /// What the command then reports.
        effect: CommandEffect,
        /// Send the command on to the unfinished children afterwards.
        cascade: bool,
    },
    /// A split parent waiting for its children: the command goes to its
    /// unfinished children; the parent itself is left as it is.
    Cascade,
}

fn refuse(jid: &Jid, state: JobState, message: &str) -> StoreError {
    StoreError::InvalidState {
        jid: jid.clone(),
        state,
        message: message.to_owned(),
    }
}

fn to(to: Move, effect: CommandEffect) -> Decision {
    Decision::Move {
        to,
        effect,
        cascade: false,
    }
}

/// The rule of every operator command: `cmd` on job `jid` as it is seen in
/// `job` → the move to make, or `InvalidState` with the reason it does not
/// apply. `awaited` says whether the job is an unfinished child of a split
/// parent that waits for it (only `Delete` asks).
pub fn decide(cmd: JobCommand, jid: &Jid, job: JobView, awaited: bool) -> StoreResult<Decision> {
    use CommandEffect::{Done, Requested, Unchanged, Withdrawn};
    use JobState::*;
    let state = job.state;
    let refused = |message: &str| Err(refuse(jid, state, message));
    Ok(match (cmd, state) {
        (JobCommand::Pause, Waiting) => Decision::Cascade,
        (JobCommand::Pause, Enqueued | Scheduled | Retrying) => to(Move::Pause, Done(Paused)),
        (JobCommand::Pause, Paused) => Decision::Unchanged(Unchanged(Paused)),
        (JobCommand::Pause, Running) => match job.control {
            Some(Control::Cancel) => {
                return refused("a cancel is already pending; it stops at its next checkpoint")
            }
            Some(Control::Pause) => Decision::Unchanged(Requested(Control::Pause)),
            None => to(
                Move::Control(Some(Control::Pause)),
                Requested(Control::Pause),
            ),
        },
        (JobCommand::Pause, _) => {
            return refused("it has ended; only a waiting or running job can be paused")
        }

        (JobCommand::Resume, Waiting) => Decision::Cascade,
        (JobCommand::Resume, Paused) => to(
            Move::Enqueue {
                at: QueueEnd::Head,
                reset_attempts: false,
            },
            Done(Enqueued),
        ),
        (JobCommand::Resume, Running) if job.control == Some(Control::Pause) => {
            to(Move::Control(None), Withdrawn)
        }
        (JobCommand::Resume, _) => return refused("it is not paused"),

        // The parent first, so that its children's ends do not wake it.
        (JobCommand::Cancel, Waiting) => Decision::Move {
            to: Move::Cancel,
            effect: CommandEffect::Cascaded { children: 0 },
            cascade: true,
        },
        (JobCommand::Cancel, Enqueued | Scheduled | Retrying | Paused) => {
            to(Move::Cancel, Done(Cancelled))
        }
        (JobCommand::Cancel, Cancelled) => Decision::Unchanged(Unchanged(Cancelled)),
        (JobCommand::Cancel, Running) => match job.control {
            Some(Control::Cancel) => Decision::Unchanged(Requested(Control::Cancel)),
            // A cancel overrides a pending pause.
            _ => to(
                Move::Control(Some(Control::Cancel)),
                Requested(Control::Cancel),
            ),
        },
        (JobCommand::Cancel, _) => return refused("it has ended; there is nothing to cancel"),

        (JobCommand::Retry, Dead | Cancelled | Retrying | Scheduled) => to(
            Move::Enqueue {
                at: QueueEnd::Tail,
                reset_attempts: state == Dead,
            },
            Done(Enqueued),
        ),
        (JobCommand::Retry, Enqueued) => Decision::Unchanged(Unchanged(Enqueued)),
        (JobCommand::Retry, Paused) => return refused("use resume for a paused job"),
        (JobCommand::Retry, _) => {
            return refused("only a dead, cancelled, retrying or scheduled job can be retried")
        }

        (JobCommand::Delete, _) => {
            check_deletable(jid, state, awaited)?;
            to(Move::Delete, CommandEffect::Deleted)
        }
    })
}

/// The rule of deleting: a running job, a split parent waiting for its
/// children, and an unfinished child of a waiting parent (`awaited`)
/// cannot be deleted.
pub fn check_deletable(jid: &Jid, state: JobState, awaited: bool) -> StoreResult<()> {
    let message = match state {
        JobState::Running => "a running job cannot be deleted; cancel it, then delete it",
        JobState::Waiting => "it waits for the children it split into; cancel it, then delete it",
        _ if !state.is_final() && awaited => {
            "its split parent waits for it; cancel it instead (the parent then carries on)"
        }
        _ => return Ok(()),
    };
    Err(refuse(jid, state, message))
}

/// What a command did, in words, for the CLI and the dashboard.
pub fn describe(cmd: JobCommand, jid: &Jid, effect: CommandEffect) -> String {
    use CommandEffect::*;
    match (cmd, effect) {
        (_, Requested(Control::Pause)) => format!(
            "job {jid} is running: pause requested; it stops at its next checkpoint and keeps its progress"
        ),
        (_, Requested(Control::Cancel)) => {
            format!("job {jid} is running: cancel requested; it stops at its next checkpoint")
        }
        (_, Withdrawn) => {
            format!("job {jid} is running: its pending pause was withdrawn; it carries on")
        }
        (JobCommand::Pause, Done(JobState::Paused)) => format!(
            "job {jid} paused; `stint resume {jid}` puts it back at the head of its queue"
        ),
        (JobCommand::Resume, Done(JobState::Enqueued)) => {
            format!("job {jid} resumed: enqueued at the head of its queue, progress kept")
        }
        (JobCommand::Retry, Done(JobState::Enqueued)) => {
            format!("job {jid} enqueued for another try, progress kept")
        }
        (JobCommand::Cancel, Done(JobState::Cancelled)) => format!("job {jid} cancelled"),
        (_, Done(state)) => format!("job {jid} is now {state}"),
        (_, Unchanged(state)) => format!("job {jid} is already {state}; nothing to do"),
        (_, Deleted) => format!("job {jid} deleted"),
        (JobCommand::Cancel, Cascaded { children }) => format!(
            "job {jid} was waiting for its children: cancelled, with its {children} unfinished children"
        ),
        (cmd, Cascaded { children }) => format!(
            "job {jid} waits for its children: {cmd} sent to its {children} unfinished children"
        ),
    }
}

/// The store's side of an operator command: read a job, make a decided
/// move, list a parent's children. Each store implements it for its own
/// transaction (SQLite, PostgreSQL: the job's row locked as it is read) or
/// connection (Redis: a move guarded by where the job was seen, which
/// reports a job that moved meanwhile so the driver reads it again), and
/// runs its commands through [`run_command`].
// Implemented by the store crates for their own transaction types and only
// called through the generic driver, never as `dyn`: whether the futures
// are `Send` follows from each implementation.
#[allow(async_fn_in_trait)]
pub trait CommandSite {
    /// What the store remembers of the job as it read it (the guard of the
    /// move).
    type Seen;

    /// The job as it is now, or `None` when there is no such job.
    async fn read(&mut self, jid: &Jid) -> StoreResult<Option<(JobView, Self::Seen)>>;

    /// Whether the job is an unfinished child of a split parent that waits
    /// for it.
    async fn awaited_by_parent(&mut self, jid: &Jid, seen: &Self::Seen) -> StoreResult<bool>;

    /// Makes `to`, guarded by the job still being as `seen`; `Ok(false)`
    /// when it moved meanwhile (nothing written).
    async fn apply(&mut self, jid: &Jid, seen: &Self::Seen, to: Move) -> StoreResult<bool>;

    /// The children of a split parent that have not finished.
    async fn open_children(&mut self, parent: &Jid) -> StoreResult<Vec<Jid>>;
}

/// How often a command reads a job again that moved while it was decided.
const ATTEMPTS: usize = 10;

/// One command on one job: read, decide, move; read again when the job
/// moved meanwhile. Returns the effect and whether the command goes on to
/// the job's children.
async fn command_one<S: CommandSite>(
    site: &mut S,
    jid: &Jid,
    cmd: JobCommand,
) -> StoreResult<(CommandEffect, bool)> {
    for _ in 0..ATTEMPTS {
        let Some((job, seen)) = site.read(jid).await? else {
            return Err(StoreError::NotFound(jid.clone()));
        };
        let awaited = cmd == JobCommand::Delete
            && !job.state.is_final()
            && site.awaited_by_parent(jid, &seen).await?;
        match decide(cmd, jid, job, awaited)? {
            Decision::Unchanged(effect) => return Ok((effect, false)),
            Decision::Cascade => return Ok((CommandEffect::Cascaded { children: 0 }, true)),
            Decision::Move {
                to,
                effect,
                cascade,
            } => {
                if site.apply(jid, &seen, to).await? {
                    return Ok((effect, cascade));
                }
            }
        }
    }
    Err(StoreError::Conflict(jid.clone()))
}

/// Runs an operator command through a store: decides it by [`decide`],
/// has the store make the move, and sends a command on a waiting split
/// parent to its unfinished children (and theirs, for nested splits).
/// A child the command does not apply to (a resume of one that is not
/// paused) is left as it is; the effect counts the parent's direct
/// children the command reached.
pub async fn run_command<S: CommandSite>(
    site: &mut S,
    jid: &Jid,
    cmd: JobCommand,
) -> StoreResult<CommandEffect> {
    let (effect, cascade) = command_one(site, jid, cmd).await?;
    if !cascade {
        return Ok(effect);
    }
    let mut children = 0;
    let mut todo: Vec<(Jid, bool)> = site
        .open_children(jid)
        .await?
        .into_iter()
        .rev()
        .map(|c| (c, true))
        .collect();
    while let Some((child, direct)) = todo.pop() {
        match command_one(site, &child, cmd).await {
            Ok((_, deeper)) => {
                children += u32::from(direct);
                if deeper {
                    let grandchildren = site.open_children(&child).await?;
                    todo.extend(grandchildren.into_iter().rev().map(|c| (c, false)));
                }
            }
            Err(StoreError::InvalidState { .. } | StoreError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(CommandEffect::Cascaded { children })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(state: JobState, control: Option<Control>) -> JobView {
        JobView { state, control }
    }

    #[test]
    fn every_command_on_every_state_is_decided_or_refused_with_a_reason() {
        let jid = Jid::new();
        for cmd in JobCommand::ALL {
            for state in JobState::ALL {
                for control in [None, Some(Control::Pause), Some(Control::Cancel)] {
                    match decide(cmd, &jid, view(state, control), false) {
                        Ok(_) => {}
                        Err(StoreError::InvalidState {
                            state: s, message, ..
                        }) => {
                            assert_eq!(s, state);
                            assert!(!message.is_empty());
                        }
                        Err(e) => panic!("{cmd} on {state}: unexpected {e}"),
                    }
                }
            }
        }
    }

    #[test]
    fn a_cancel_overrides_a_pending_pause_but_not_the_other_way_round() {
        let jid = Jid::new();
        let running = |c| view(JobState::Running, Some(c));
        assert_eq!(
            decide(JobCommand::Cancel, &jid, running(Control::Pause), false).unwrap(),
            to(
                Move::Control(Some(Control::Cancel)),
                CommandEffect::Requested(Control::Cancel)
            )
        );
        assert!(decide(JobCommand::Pause, &jid, running(Control::Cancel), false).is_err());
    }

    #[test]
    fn an_awaited_child_cannot_be_deleted_but_a_finished_one_can() {
        let jid = Jid::new();
        assert!(decide(
            JobCommand::Delete,
            &jid,
            view(JobState::Enqueued, None),
            true
        )
        .is_err());
        assert!(decide(
            JobCommand::Delete,
            &jid,
            view(JobState::Enqueued, None),
            false
        )
        .is_ok());
        assert!(decide(JobCommand::Delete, &jid, view(JobState::Dead, None), true).is_ok());
    }

    #[test]
    fn commands_parse_from_their_words() {
        for cmd in JobCommand::ALL {
            assert_eq!(cmd.as_str().parse::<JobCommand>().unwrap(), cmd);
        }
        assert!("stop".parse::<JobCommand>().is_err());
    }
}
