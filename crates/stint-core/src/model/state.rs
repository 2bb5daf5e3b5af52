//! Where a job is, and what an operator asked of a running job or a
//! process.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Where a job is in its lifecycle (see `docs/design.md`, "Job lifecycle").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    /// Pushed to run later: waits for its time, then goes to its queue.
    Scheduled,
    /// In its queue, waiting for a worker.
    Enqueued,
    /// Leased by a worker process, in a stint.
    Running,
    /// A parent that split itself: parked, holding no worker slot, until
    /// every child has finished.
    Waiting,
    /// Parked by an operator with its checkpoint, until resumed.
    Paused,
    /// Failed with attempts left: waits for its backoff, then goes to its queue.
    Retrying,
    /// Finished: `perform` returned `Ok`.
    Succeeded,
    /// Failed for good (no attempts left, a fatal error, a poison pill); kept for `stint retry`.
    Dead,
    /// Stopped for good by an operator, checkpoint kept.
    Cancelled,
}

impl JobState {
    /// Every state, in lifecycle order.
    pub const ALL: [JobState; 9] = [
        JobState::Scheduled,
        JobState::Enqueued,
        JobState::Running,
        JobState::Waiting,
        JobState::Paused,
        JobState::Retrying,
        JobState::Succeeded,
        JobState::Dead,
        JobState::Cancelled,
    ];

    /// The state's name, as stores write it.
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Scheduled => "scheduled",
            JobState::Enqueued => "enqueued",
            JobState::Running => "running",
            JobState::Waiting => "waiting",
            JobState::Paused => "paused",
            JobState::Retrying => "retrying",
            JobState::Succeeded => "succeeded",
            JobState::Dead => "dead",
            JobState::Cancelled => "cancelled",
        }
    }

    /// True for states a job never leaves on its own.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Dead | JobState::Cancelled
        )
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for JobState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        JobState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<_> = JobState::ALL.iter().map(|s| s.as_str()).collect();
                format!("unknown state {s:?}; expected one of {}", names.join(", "))
            })
    }
}

/// What an operator asked of a running job; seen at its next checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Control {
    /// Stop at the next checkpoint and park the job as `paused`.
    Pause,
    /// Stop at the next checkpoint and end the job as `cancelled`.
    Cancel,
}

impl Control {
    /// The word stores write.
    pub fn as_str(self) -> &'static str {
        match self {
            Control::Pause => "pause",
            Control::Cancel => "cancel",
        }
    }
    /// The command a stored word names; `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pause" => Some(Control::Pause),
            "cancel" => Some(Control::Cancel),
            _ => None,
        }
    }
}

/// What an operator asked of a whole worker process (the dashboard's
/// "quiet" and "stop"); the process reads it with its heartbeat.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProcessCommand {
    /// Take no new jobs; running ones go on (as SIGTSTP).
    Quiet,
    /// Stop gracefully: running jobs checkpoint and go back to their
    /// queues (as SIGTERM).
    Stop,
}

impl ProcessCommand {
    /// The word stores write.
    pub fn as_str(self) -> &'static str {
        match self {
            ProcessCommand::Quiet => "quiet",
            ProcessCommand::Stop => "stop",
        }
    }
    /// The command a stored word names; `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "quiet" => Some(ProcessCommand::Quiet),
            "stop" => Some(ProcessCommand::Stop),
            _ => None,
        }
    }
}
