//! stint-core: the job model, the `Job` trait and `Ctx`, the worker runtime,
//! the `Store` trait every backend implements, and (feature "testing") the
//! conformance suite that holds every store to the same lifecycle rules.
//!
//! Most users depend on the `stint` facade crate instead.

#![warn(missing_docs)]

mod client;
mod ctx;
pub mod display;
mod error;
mod interrupt;
mod job;
pub mod lifecycle;
pub mod metrics;
pub mod model;
pub mod periodic;
mod runtime;
mod split;
pub mod store;
pub mod trace;
pub mod url;

#[cfg(feature = "testing")]
pub mod testing;

pub use client::{Client, Push};
pub use ctx::Ctx;
pub use error::{Interrupt, JobError, StoreError, StoreResult};
pub use job::{Job, Registry};
pub use lifecycle::JobCommand;
pub use metrics::{Histogram, KindMetrics, Metrics};
pub use model::{
    Backoff, Checkpoint, ChildRecord, Control, ErrorInfo, Jid, JobDetail, JobOptions, JobRecord,
    JobState, NewJob, ProcessCommand, ProcessInfo, QueueInfo, Stats, StintRecord, TreeProgress,
};
pub use periodic::{Missed, Overlap, Periodic};
pub use runtime::{
    shutdown_signal, QueueOrder, RunSummary, Worker, WorkerBuilder, WorkerConfig, WorkerHandle,
};
pub use split::{ChildResult, SplitPolicy};
pub use store::{
    BlockingCheckpointTx, CheckpointTx, CommandEffect, Completion, JobFilter, Lease, Leased,
    Outcome, Recovered, Store,
};
