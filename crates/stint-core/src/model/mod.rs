//! The job model: what a store holds about a job, its checkpoint, its stints
//! and the processes that run it. Every store maps these types to its own
//! layout; nothing here knows about any one store.

mod flow;
mod jid;
mod job;
mod process;
mod state;
mod stats;

use std::time::{SystemTime, UNIX_EPOCH};

pub use flow::{
    Admit, Blocked, KeyInfo, Limit, Pushed, RateLimit, Unique, UniqueScope, WaitReason,
};
pub use jid::Jid;
pub use job::{
    Backoff, Checkpoint, ErrorInfo, JobDetail, JobOptions, JobRecord, NewJob, StintRecord,
};
pub use process::ProcessInfo;
pub use state::{Control, JobState, ProcessCommand};
pub use stats::{ChildRecord, QueueInfo, Stats, TreeProgress};

/// Milliseconds since the Unix epoch, by this machine's clock.
pub fn now_ms() -> i64 {
    to_ms(SystemTime::now())
}

/// Milliseconds since the Unix epoch of `t` (0 before the epoch).
pub fn to_ms(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    }
}
