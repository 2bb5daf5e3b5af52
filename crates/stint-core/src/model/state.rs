//! Where a job is, and what an operator asked of a running job or a
//! process.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Where a job is in its lifecycle (see `docs/design.md`, "Job lifecycle").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Scheduled,
    Enqueued,
    Running,
    /// A parent that split itself: parked, holding no worker slot, until
    /// every child has finished.
    Waiting,
    Paused,
    Retrying,
    Succeeded,
    Dead,
    Cancelled,
}

impl JobState {
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
    Pause,
    Cancel,
}

impl Control {
    pub fn as_str(self) -> &'static str {
        match self {
            Control::Pause => "pause",
            Control::Cancel => "cancel",
        }
    }
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
    pub fn as_str(self) -> &'static str {
        match self {
            ProcessCommand::Quiet => "quiet",
            ProcessCommand::Stop => "stop",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "quiet" => Some(ProcessCommand::Quiet),
            "stop" => Some(ProcessCommand::Stop),
            _ => None,
        }
    }
}
