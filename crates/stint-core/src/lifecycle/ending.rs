//! How a stint ends: the outcome the runtime reports, and the state the job
//! goes to when an operator's pause or cancel is still pending.

use crate::error::{Interrupt, JobError};
use crate::model::{Control, ErrorInfo, JobRecord, JobState};
use crate::store::Outcome;

/// How a stint ended, as far as the job's next state goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StintEnd {
    /// `perform` returned `Ok`.
    Succeeded,
    /// It failed with attempts left.
    Failed,
    /// It failed for good (no attempts left, or an error retrying cannot
    /// fix).
    Dead,
    /// It was interrupted by a shutdown, its maximum stint time, or handed
    /// back before it started.
    Interrupted,
    /// It stopped because an operator paused it.
    Paused,
    /// It stopped because an operator cancelled it.
    Cancelled,
    /// It split itself into children and waits for them.
    Split,
    /// It snoozed (`Ctx::snooze`): scheduled again, attempts unchanged.
    Snoozed,
    /// Another process holds the job now: the stint writes nothing.
    LeaseLost,
}

impl StintEnd {
    /// Every end.
    pub const ALL: [StintEnd; 9] = [
        StintEnd::Succeeded,
        StintEnd::Failed,
        StintEnd::Dead,
        StintEnd::Interrupted,
        StintEnd::Paused,
        StintEnd::Cancelled,
        StintEnd::Split,
        StintEnd::Snoozed,
        StintEnd::LeaseLost,
    ];

    /// The end an outcome reports.
    pub fn of(outcome: &Outcome) -> StintEnd {
        match outcome {
            Outcome::Succeeded { .. } => StintEnd::Succeeded,
            Outcome::Retry { .. } => StintEnd::Failed,
            Outcome::Dead { .. } => StintEnd::Dead,
            Outcome::Requeue { .. } => StintEnd::Interrupted,
            Outcome::Paused => StintEnd::Paused,
            Outcome::Cancelled => StintEnd::Cancelled,
            Outcome::Snooze { .. } => StintEnd::Snoozed,
        }
    }

    /// The word the stint history records (the label of the outcome).
    pub fn label(self) -> &'static str {
        match self {
            StintEnd::Succeeded => "succeeded",
            StintEnd::Failed => "failed",
            StintEnd::Dead => "dead",
            StintEnd::Interrupted => "interrupted",
            StintEnd::Paused => "paused",
            StintEnd::Cancelled => "cancelled",
            StintEnd::Split => "split",
            StintEnd::Snoozed => "snoozed",
            StintEnd::LeaseLost => "lease lost",
        }
    }

    /// Whether the stint counts as one attempt used.
    pub fn uses_attempt(self) -> bool {
        matches!(self, StintEnd::Failed | StintEnd::Dead)
    }
}

/// The rule of a stint's end: the state its job goes to when the stint
/// ended as `end` while an operator's `pending` pause or cancel had not
/// been acted on. A pending command wins over a retry, a requeue or a
/// snooze (the operator asked for it; the stint just did not reach a
/// checkpoint in time); an end the stint chose itself stands. `None`: nothing is written
/// (the lease was lost).
pub fn after_stint(end: StintEnd, pending: Option<Control>) -> Option<JobState> {
    Some(match end {
        StintEnd::LeaseLost => return None,
        StintEnd::Succeeded => JobState::Succeeded,
        StintEnd::Dead => JobState::Dead,
        StintEnd::Paused => JobState::Paused,
        StintEnd::Cancelled => JobState::Cancelled,
        StintEnd::Split => JobState::Waiting,
        StintEnd::Failed | StintEnd::Interrupted | StintEnd::Snoozed => match pending {
            Some(Control::Pause) => JobState::Paused,
            Some(Control::Cancel) => JobState::Cancelled,
            None if end == StintEnd::Failed => JobState::Retrying,
            None if end == StintEnd::Snoozed => JobState::Scheduled,
            None => JobState::Enqueued,
        },
    })
}

/// The outcome of a stint stopped by `why` at a checkpoint (or before it
/// started, `reason` saying so): paused or cancelled for an operator, back
/// to the head of its queue for a shutdown or a time limit; `None` when
/// there is nothing to record (the lease was lost, or the job split).
pub fn interrupted(why: Interrupt, reason: &str) -> Option<Outcome> {
    Some(match why {
        Interrupt::LeaseLost | Interrupt::Split => return None,
        Interrupt::Pause => Outcome::Paused,
        Interrupt::Cancel => Outcome::Cancelled,
        Interrupt::Shutdown | Interrupt::MaxStintTime => Outcome::Requeue {
            reason: reason.to_owned(),
        },
    })
}

/// The rule of a failed stint: `error` (already numbered with its
/// attempt) ends attempt `error.attempt` of `job`. A fatal error is dead at
/// once; the last attempt is dead, naming the count; any other is retried
/// after the job's backoff, counted from `now_ms`.
pub fn failure(job: &JobRecord, err: &JobError, error: ErrorInfo, now_ms: i64) -> Outcome {
    let attempt = error.attempt;
    match err {
        JobError::Fatal(_) => Outcome::Dead {
            reason: error.message.clone(),
            error,
        },
        _ if attempt >= job.options.max_attempts => Outcome::Dead {
            reason: format!(
                "failed {attempt} of {} attempts: {}",
                job.options.max_attempts, error.message
            ),
            error,
        },
        _ => Outcome::Retry {
            retry_at_ms: now_ms + job.options.backoff.delay(attempt).as_millis() as i64,
            error,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pending_command_wins_over_a_retry_or_requeue_only() {
        for end in StintEnd::ALL {
            let alone = after_stint(end, None);
            for c in [Control::Pause, Control::Cancel] {
                let with = after_stint(end, Some(c));
                match end {
                    StintEnd::Failed | StintEnd::Interrupted | StintEnd::Snoozed => {
                        assert_eq!(
                            with,
                            Some(if c == Control::Pause {
                                JobState::Paused
                            } else {
                                JobState::Cancelled
                            })
                        )
                    }
                    _ => assert_eq!(with, alone, "{end:?} with {c:?}"),
                }
            }
        }
    }

    #[test]
    fn outcomes_map_to_their_ends() {
        assert_eq!(
            StintEnd::of(&Outcome::Requeue { reason: "x".into() }),
            StintEnd::Interrupted
        );
        assert_eq!(
            interrupted(Interrupt::Shutdown, "shutdown"),
            Some(Outcome::Requeue {
                reason: "shutdown".into()
            })
        );
        assert_eq!(interrupted(Interrupt::LeaseLost, ""), None);
    }
}
