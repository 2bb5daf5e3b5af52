//! What operators read: queues, split-job progress, counts per state.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{JobRecord, JobState, ProcessInfo};

/// One queue as the store sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QueueInfo {
    /// The queue's name.
    pub name: String,
    /// Jobs waiting (enqueued).
    pub size: u64,
    /// True when workers take no jobs from it.
    pub paused: bool,
    /// Age of the oldest waiting job, in ms.
    pub latency_ms: Option<i64>,
}

/// A child of a split job, as its parent and operators see it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChildRecord {
    /// The child job.
    pub job: JobRecord,
    /// The split step that created it.
    pub step: String,
    /// What the child's last stint returned (`Ctx::set_result`), once
    /// succeeded.
    pub result: Option<Value>,
}

/// The progress of a split job: the sum of its children's.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TreeProgress {
    /// How many children.
    pub children: u32,
    /// Children in a final state.
    pub finished: u32,
    /// Items done, summed over the children.
    pub done: u64,
    /// Sum of the totals the children know.
    pub total: u64,
}

impl TreeProgress {
    /// The summed progress of `children`.
    pub fn of(children: &[ChildRecord]) -> Self {
        let mut t = TreeProgress::default();
        for c in children {
            t.children += 1;
            t.finished += c.job.state.is_final() as u32;
            t.done += c.job.checkpoint.done;
            t.total += c.job.checkpoint.total.unwrap_or(0);
        }
        t
    }
}

/// Counts for `stint status`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Jobs per state; every state is present.
    pub states: Vec<(JobState, u64)>,
    /// Every queue with jobs or a pause.
    pub queues: Vec<QueueInfo>,
    /// Live worker processes.
    pub processes: Vec<ProcessInfo>,
}

impl Stats {
    /// How many jobs are in `state`.
    pub fn count(&self, state: JobState) -> u64 {
        self.states
            .iter()
            .find(|(s, _)| *s == state)
            .map(|(_, n)| *n)
            .unwrap_or(0)
    }
}
