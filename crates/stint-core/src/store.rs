//! The store interface: every transition of the job lifecycle as one named,
//! atomic operation. SQLite, Redis and PostgreSQL each implement it, and the
//! conformance suite (`testing`, feature "testing") holds them all to the
//! same rules.
//!
//! Stable: the meaning of each method. Not yet stable: the exact set of
//! methods, which grows with the features that need them.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::StoreResult;
use crate::lifecycle::{self, JobCommand, StintEnd};
use crate::metrics::Metrics;
use crate::model::{
    Checkpoint, ChildRecord, Control, ErrorInfo, Jid, JobDetail, JobRecord, JobState, KeyInfo,
    NewJob, ProcessCommand, ProcessInfo, Pushed, Stats,
};
use crate::periodic::{ScheduleDef, ScheduleInfo, TickOutcome, TickPush, TickRecord};

/// A stint's claim on a running job. Every write the stint makes is
/// conditional on the lease still being current (the job is running, held by
/// `process`, in stint number `stint`); a stale lease's writes are refused
/// with `StoreError::LeaseLost`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The job.
    pub jid: Jid,
    /// The process holding it.
    pub process: String,
    /// The stint's number: a later stint of the same job fences this one out.
    pub stint: u32,
}

/// A job a process has just leased.
#[derive(Clone, Debug)]
pub struct Leased {
    /// The job, already in state `running`, `stints` counting this one.
    pub job: JobRecord,
    /// The lease every write of the stint names.
    pub lease: Lease,
}

/// What a stint's end does to its job.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Done. `result` is kept for whoever waits on the job.
    Succeeded {
        /// The value the job set with `Ctx::set_result`, if any.
        result: Option<Value>,
    },
    /// Failed with attempts left: `retrying` until `retry_at_ms`, attempts + 1.
    Retry {
        /// The error, numbered with its attempt.
        error: ErrorInfo,
        /// When the job goes back to its queue, in ms since the epoch.
        retry_at_ms: i64,
    },
    /// Failed for good: `dead`, attempts + 1.
    Dead {
        /// The error, numbered with its attempt.
        error: ErrorInfo,
        /// Why the job is dead, in words.
        reason: String,
    },
    /// Interrupted (shutdown, max stint time): back to the *head* of its
    /// queue; attempts unchanged.
    Requeue {
        /// Why, in words (the stint history records it).
        reason: String,
    },
    /// Paused by an operator: `paused`, checkpoint kept.
    Paused,
    /// Cancelled by an operator: `cancelled`, checkpoint kept.
    Cancelled,
    /// The job snoozed (`Ctx::snooze`): `scheduled` until `run_at_ms`,
    /// attempts unchanged, checkpoint kept.
    Snooze {
        /// When the job goes back to its queue, in ms since the epoch.
        run_at_ms: i64,
    },
}

impl Outcome {
    /// The word stint history records for it.
    pub fn label(&self) -> &'static str {
        StintEnd::of(self).label()
    }

    /// The state the job is in afterwards when no operator command is
    /// pending (see [`lifecycle::after_stint`]).
    pub fn next_state(&self) -> JobState {
        lifecycle::after_stint(StintEnd::of(self), None).expect("an outcome writes a state")
    }

    /// The reason stint history records for it.
    pub fn reason(&self) -> Option<String> {
        match self {
            Outcome::Succeeded { .. } => None,
            Outcome::Retry { error, .. } => Some(error.message.clone()),
            Outcome::Dead { reason, .. } => Some(reason.clone()),
            Outcome::Requeue { reason } => Some(reason.clone()),
            Outcome::Paused => Some(lifecycle::PAUSED_BY_OPERATOR.into()),
            Outcome::Cancelled => Some(lifecycle::CANCELLED_BY_OPERATOR.into()),
            Outcome::Snooze { .. } => Some(lifecycle::SNOOZED.into()),
        }
    }
}

/// The end of one stint, as the runtime reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct Completion {
    /// The stint's lease.
    pub lease: Lease,
    /// The checkpoint to save with the transition; `None` keeps the one the
    /// store has (the job's writes were transactional, or it was aborted).
    pub checkpoint: Option<Checkpoint>,
    /// How it ended.
    pub outcome: Outcome,
}

/// A job taken back from a process that died.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Recovered {
    /// The job.
    pub jid: Jid,
    /// Its kind.
    pub kind: String,
    /// The process that died.
    pub process: String,
    /// Times recovered, this one included.
    pub recoveries: u32,
    /// `enqueued` (at the head of its queue), `dead` (poison pill), or
    /// `paused` / `cancelled` when an operator had asked for that.
    pub state: JobState,
}

/// What an operator command did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandEffect {
    /// The job changed state at once.
    Done(JobState),
    /// The job already was as the command asked (a pause of a paused job,
    /// a cancel of a cancelled one): nothing was changed.
    Unchanged(JobState),
    /// The job was deleted with its history.
    Deleted,
    /// The job is running: it was asked, and acts at its next checkpoint.
    Requested(Control),
    /// A running job's pending pause was withdrawn before it took effect.
    Withdrawn,
    /// The job waits for its children (it split): the command went to each
    /// of its `children` that had not finished.
    Cascaded {
        /// How many of its children the command reached.
        children: u32,
    },
}

/// Which jobs `Store::jobs` lists.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct JobFilter {
    /// Only jobs in this state.
    pub state: Option<JobState>,
    /// Only jobs of this queue.
    pub queue: Option<String>,
    /// Only jobs of this kind.
    pub kind: Option<String>,
    /// At most this many, newest first; 0 = the store's default (100).
    pub limit: usize,
}

/// The store interface. Every method is one atomic operation in the store.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// A short name for messages: "sqlite", "redis", "postgres".
    fn kind(&self) -> &'static str;

    // ---- clients ----

    /// Pushes jobs in one round trip: `enqueued` at the tail of their
    /// queues, or `scheduled` when `run_at` is in the future. A job with a
    /// unique key (`JobOptions::unique`) whose key is held by another job
    /// (as [`crate::model::Unique::refuses`] rules, the holder's state read
    /// in the same atomic step) is not stored: its answer is
    /// `Pushed::Duplicate` with the holder's jid; so is a later job of the
    /// same push with the key of an earlier one. Answers one `Pushed` per
    /// job, in order.
    async fn push(&self, jobs: Vec<NewJob>) -> StoreResult<Vec<Pushed>>;

    // ---- worker processes ----

    /// Records a live process whose leases expire `ttl` after its last beat.
    async fn register(&self, process: &ProcessInfo, ttl: Duration) -> StoreResult<()>;

    /// Renews the process's leases for `ttl`. Returns false when the store
    /// no longer knows the process (its leases expired and were recovered);
    /// the caller registers again.
    async fn heartbeat(
        &self,
        process: &str,
        busy: u32,
        quiet: bool,
        ttl: Duration,
    ) -> StoreResult<bool>;

    /// Removes a process that is stopping; its jobs must already be handed
    /// back.
    async fn deregister(&self, process: &str) -> StoreResult<()>;

    /// Marks the process as stopping: it was told to stop (SIGTERM, a
    /// deploy) and is handing its jobs back. A stopping process killed
    /// before it finishes (SIGKILL after the grace period) was killed by
    /// whoever stopped it, not by its jobs: the recovery of its leases does
    /// not count towards the poison pill (`lifecycle::recover`'s
    /// `stopping`). The first store call of a shutdown; a process the store
    /// does not know is left alone.
    async fn mark_stopping(&self, process: &str) -> StoreResult<()>;

    /// Marks a process as dead now (it is known to be gone, such as a pid
    /// that no longer exists on this host), so that its jobs are recovered
    /// at the next sweep without waiting for its lease to expire.
    async fn expire_process(&self, process: &str) -> StoreResult<()>;

    /// Live processes.
    async fn processes(&self) -> StoreResult<Vec<ProcessInfo>>;

    /// Moves up to `limit` jobs from the queues (taken in the order given;
    /// paused queues skipped; oldest first within a queue) into leases held
    /// by `process`, atomically: a job is never leased twice.
    ///
    /// A job with a `JobOptions::limit` is leased only when
    /// [`crate::model::Limit::admit`] says `Start` for its key (counting the
    /// key's running jobs and recent stint starts, this fetch's included);
    /// otherwise it is parked in its queue's order as `enqueued` with
    /// `blocked` set, and not fetched again until the key has room: when a
    /// running job of the key ends (any stint end, a split, a recovery) the
    /// key's oldest job waiting for a slot is unparked in the same atomic
    /// step; a job waiting for the rate is unparked by `promote_due` once
    /// its time comes. Every command that moves a parked job elsewhere
    /// (pause, cancel, delete, clear) unparks it.
    async fn fetch(
        &self,
        process: &str,
        queues: &[String],
        limit: usize,
    ) -> StoreResult<Vec<Leased>>;

    /// True when `fetch` itself waits a while for jobs to arrive before it
    /// returns empty (PostgreSQL's LISTEN/NOTIFY): an idle worker then asks
    /// again at once instead of sleeping its poll interval.
    fn fetch_waits_for_jobs(&self) -> bool {
        false
    }

    /// Saves a running job's checkpoint (fenced by the lease); when it has
    /// more items done than the saved one, clears `recoveries`. Returns the
    /// operator's pending pause or cancel, if any.
    async fn checkpoint(
        &self,
        lease: &Lease,
        checkpoint: &Checkpoint,
    ) -> StoreResult<Option<Control>>;

    /// Applies the ends of stints, each atomically and fenced by its lease.
    /// A pause or cancel still pending when a stint ends as `Requeue` or
    /// `Retry` wins: the job goes to `paused` or `cancelled`.
    /// Returns the jids whose lease was no longer current (nothing written).
    async fn complete(&self, completions: Vec<Completion>) -> StoreResult<Vec<Jid>>;

    /// Pending pause or cancel commands for the jobs `process` runs.
    async fn controls(&self, process: &str) -> StoreResult<Vec<(Jid, Control)>>;

    // ---- split jobs ----

    /// Parks the running job of `lease` as `waiting` (its stint ends, its
    /// checkpoint — which records the split step as done — is saved) and
    /// enqueues `children` as its children of split step `step`, all in one
    /// atomic operation fenced by the lease: after a crash either all the
    /// children exist and the parent waits, or none does and the parent
    /// runs the split again.
    ///
    /// When the last child reaches a final state (succeeded, dead,
    /// cancelled) the parent goes to the head of its queue. Pausing,
    /// resuming or cancelling a waiting parent goes to its unfinished
    /// children (`CommandEffect::Cascaded`); cancelling it also cancels it.
    async fn split(
        &self,
        lease: &Lease,
        checkpoint: &Checkpoint,
        step: &str,
        children: Vec<NewJob>,
    ) -> StoreResult<()>;

    /// The children of a split job, in the order they were pushed.
    async fn children(&self, parent: &Jid) -> StoreResult<Vec<ChildRecord>>;

    // ---- periodic jobs ----

    /// Pushes one tick of a periodic schedule, atomically: a tick at or
    /// before the schedule's last recorded tick writes nothing
    /// (`AlreadyDone`), so however many processes push the same tick, it
    /// is enqueued once. Otherwise, with `Overlap::Skip` while the
    /// schedule's last run is not in a final state, the tick is recorded
    /// as skipped (`Skipped`); else its job is pushed and recorded as the
    /// schedule's last run (`Enqueued`). Either way the schedule's spec,
    /// next run and counters are updated, and its last `KEPT_TICKS` ticks
    /// kept (`ticks`).
    async fn push_tick(&self, tick: &TickPush) -> StoreResult<TickOutcome>;

    /// Records (or updates) the definitions of schedules a worker serves,
    /// keeping their history and counters, so operators can list them.
    async fn register_schedules(&self, defs: &[ScheduleDef]) -> StoreResult<()>;

    /// Every schedule ever registered or ticked, by name.
    async fn schedules(&self) -> StoreResult<Vec<ScheduleInfo>>;

    /// A schedule's recorded ticks, newest first, at most `limit` (0: all
    /// kept).
    async fn ticks(&self, schedule: &str, limit: usize) -> StoreResult<Vec<TickRecord>>;

    // ---- maintenance (any process may run these; they are idempotent) ----

    /// Moves scheduled and retrying jobs that are due to the tail of their
    /// queues. Returns how many moved.
    async fn promote_due(&self) -> StoreResult<u64>;

    /// Takes back the running jobs of processes whose leases expired: each
    /// goes to the head of its queue with its checkpoint and `recoveries`
    /// + 1, or to `dead` ("poison pill: recovered N times") once recovered
    /// more than `max_recoveries` times in a row without progress (a
    /// checkpoint with more items done than the last one resets the count,
    /// so a long job survives any number of deploys that kill it). The
    /// jobs of a process that was stopping (`mark_stopping`) go to the head
    /// of their queues with `recoveries` unchanged.
    async fn recover_orphans(&self, max_recoveries: u32) -> StoreResult<Vec<Recovered>>;

    // ---- operators ----

    /// Jobs per state, queues, live processes (`stint status`).
    async fn stats(&self) -> StoreResult<Stats>;
    /// Jobs matching `filter`, newest first.
    async fn jobs(&self, filter: &JobFilter) -> StoreResult<Vec<JobRecord>>;
    /// One job with its history and errors; `None` when there is no such job.
    async fn job(&self, jid: &Jid) -> StoreResult<Option<JobDetail>>;

    /// Runs an operator command on one job, atomically, as
    /// [`lifecycle::decide`] rules (stores run it through
    /// [`lifecycle::run_command`]). `NotFound` when there is no such job;
    /// `InvalidState` with the reason when the command does not apply.
    async fn command(&self, jid: &Jid, command: JobCommand) -> StoreResult<CommandEffect>;

    /// Pauses a job: at once when waiting; at its next checkpoint when
    /// running.
    async fn pause(&self, jid: &Jid) -> StoreResult<CommandEffect> {
        self.command(jid, JobCommand::Pause).await
    }
    /// Resumes a paused job (to the head of its queue, checkpoint kept), or
    /// withdraws a pause a running job has not acted on yet.
    async fn resume(&self, jid: &Jid) -> StoreResult<CommandEffect> {
        self.command(jid, JobCommand::Resume).await
    }
    /// Cancels a job: at once unless running; at its next checkpoint when
    /// running.
    async fn cancel(&self, jid: &Jid) -> StoreResult<CommandEffect> {
        self.command(jid, JobCommand::Cancel).await
    }
    /// Enqueues a dead, cancelled, retrying or scheduled job now, keeping its
    /// checkpoint; a dead job gets its attempts and recoveries back.
    async fn retry(&self, jid: &Jid) -> StoreResult<CommandEffect> {
        self.command(jid, JobCommand::Retry).await
    }
    /// Pauses or resumes a whole queue: workers take no jobs from a paused
    /// queue; running jobs go on.
    async fn set_queue_paused(&self, queue: &str, paused: bool) -> StoreResult<()>;

    // ---- dashboard ----

    /// Deletes every enqueued job of `queue` (jobs running, paused,
    /// scheduled or retrying stay). Returns how many were deleted.
    async fn clear_queue(&self, queue: &str) -> StoreResult<u64>;

    /// Deletes a job with its history and errors. Refused with
    /// `InvalidState` for a job that is running (cancel it first), for a
    /// split parent waiting for its children, and for an unfinished child
    /// of a waiting parent (which would wait for it forever: cancel the
    /// child instead); `NotFound` when there is no such job.
    async fn delete(&self, jid: &Jid) -> StoreResult<()> {
        self.command(jid, JobCommand::Delete).await.map(drop)
    }

    /// Records an operator's command to a live worker process, which acts
    /// on it at its next heartbeat (`process_command`). A `Stop` is never
    /// replaced by a `Quiet`. `NoProcess` when no live process has the id.
    async fn command_process(&self, process: &str, command: ProcessCommand) -> StoreResult<()>;

    /// The command an operator gave `process`, if any; the runtime polls it
    /// with every heartbeat.
    async fn process_command(&self, process: &str) -> StoreResult<Option<ProcessCommand>>;

    /// Every key with limits that has jobs running or waiting: its limits
    /// and counts, sorted by key.
    async fn limits(&self) -> StoreResult<Vec<KeyInfo>>;

    /// The counters of stint ends and recoveries by job kind and queue
    /// (see [`crate::metrics`]), kept in the same transactions as the
    /// transitions they count.
    async fn metrics(&self) -> StoreResult<Metrics>;
}

/// A caller's own database transaction that a checkpoint can be written in
/// (`Ctx::checkpoint_in`), so the job's writes and its progress commit
/// together. Implemented by the SQL stores for their async transaction
/// types (PostgreSQL).
pub trait CheckpointTx: Send {
    /// Writes the checkpoint of the stint holding `lease` in this
    /// transaction. Refused with `StoreError::LeaseLost` when the lease is no
    /// longer current. Returns the operator's pending pause or cancel.
    fn write_checkpoint<'a>(
        &'a mut self,
        lease: &'a Lease,
        checkpoint: &'a Checkpoint,
    ) -> impl std::future::Future<Output = StoreResult<Option<Control>>> + Send + 'a;
}

/// As `CheckpointTx`, for a blocking database API whose transactions cannot
/// be held across an `.await` (SQLite through rusqlite):
/// `Ctx::checkpoint_in_blocking`.
pub trait BlockingCheckpointTx {
    /// As `CheckpointTx::write_checkpoint`, blocking.
    fn write_checkpoint(
        &mut self,
        lease: &Lease,
        checkpoint: &Checkpoint,
    ) -> StoreResult<Option<Control>>;
}
