//! `Ctx`: what a running job sees of its stint — its cursor, checkpoints,
//! steps, progress and the signal to stop.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::error::{Interrupt, JobError, StoreError};
use crate::interrupt::StopSignal;
use crate::model::{Checkpoint, Control, Jid, JobRecord};
use crate::store::{BlockingCheckpointTx, CheckpointTx, Lease, Store};

/// The context of one stint. `Job::perform` gets it as `&mut Ctx`.
pub struct Ctx {
    pub(crate) jid: Jid,
    pub(crate) kind: String,
    attempt: u32,
    pub(crate) lease: Lease,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) signal: Arc<StopSignal>,
    /// The progress as last handed to the store (or about to be).
    pub(crate) checkpoint: Checkpoint,
    /// Items done since `checkpoint.cursor` was last recorded: they count in
    /// the cursor's `done` only once the cursor that covers them is.
    pending: u64,
    /// Checkpoint calls since the last write reached the store.
    pub(crate) dirty: bool,
    /// The job used `checkpoint_in`: the store's copy, written in the job's
    /// own transactions, is the truth; the runtime must not overwrite it.
    transactional: bool,
    flush_every: Duration,
    /// When the next write is due, on the coarse clock (`coarse_ms`).
    next_flush_ms: u64,
    started: Instant,
    done_at_start: u64,
    run_time_at_start_ms: u64,
    /// The store refused or failed the last write; said once in the log.
    store_trouble: bool,
    /// What the job returns to a parent that split into it.
    pub(crate) result: Option<serde_json::Value>,
}

impl Ctx {
    pub(crate) fn new(
        job: &JobRecord,
        lease: Lease,
        store: Arc<dyn Store>,
        signal: Arc<StopSignal>,
        flush_every: Duration,
    ) -> Self {
        let now = Instant::now();
        Ctx {
            jid: job.jid.clone(),
            kind: job.kind.clone(),
            attempt: job.attempts + 1,
            lease,
            store,
            signal,
            checkpoint: job.checkpoint.clone(),
            dirty: false,
            transactional: false,
            flush_every,
            next_flush_ms: coarse_ms() + flush_every.as_millis() as u64,
            started: now,
            done_at_start: job.checkpoint.done,
            run_time_at_start_ms: job.checkpoint.run_time_ms,
            store_trouble: false,
            result: None,
            pending: 0,
        }
    }

    /// The id of the job this stint runs, for logs and for keys the job
    /// writes elsewhere.
    pub fn jid(&self) -> &Jid {
        &self.jid
    }

    /// The kind of the job (`Job::KIND`), as it was pushed.
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// Which attempt this is (1 on the first, counting failures only).
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// This stint's number (1 on the first stint).
    pub fn stint(&self) -> u32 {
        self.lease.stint
    }

    /// The lease of this stint (for stores' `CheckpointTx` helpers).
    pub fn lease(&self) -> &Lease {
        &self.lease
    }

    /// The saved cursor: `None` on the first stint. A stored cursor that no
    /// longer deserializes as `C` is a fatal error naming the job and the
    /// cursor: the job goes to `dead` with its checkpoint kept.
    pub fn cursor<C: DeserializeOwned>(&self) -> Result<Option<C>, JobError> {
        match &self.checkpoint.cursor {
            None => Ok(None),
            Some(v) => serde_json::from_value(v.clone()).map(Some).map_err(|e| {
                JobError::fatal(format!(
                    "job {} ({}): saved cursor {} does not deserialize as {}: {e}; \
                     the checkpoint is kept: deploy code that reads it, then `stint retry {}`",
                    self.jid,
                    self.kind,
                    v,
                    std::any::type_name::<C>(),
                    self.jid
                ))
            }),
        }
    }

    /// Sets the value this job returns when it succeeds; a parent that split
    /// into this job reads it from `Ctx::split`'s results.
    pub fn set_result<R: Serialize + ?Sized>(&mut self, result: &R) -> Result<(), JobError> {
        self.result = Some(serde_json::to_value(result).map_err(|e| {
            JobError::fatal(format!(
                "job {} ({}): result does not serialize to JSON: {e}",
                self.jid, self.kind
            ))
        })?);
        Ok(())
    }

    /// Progress so far: done (this stint's latest count included), total,
    /// rate, steps, run time.
    pub fn progress(&self) -> Checkpoint {
        let mut cp = self.checkpoint.clone();
        cp.done += self.pending;
        cp
    }

    /// Sets the number of items in all (for progress and ETA).
    pub fn set_total(&mut self, total: u64) {
        self.checkpoint.total = Some(total);
        self.dirty = true;
    }

    /// Sets the number of items done, when the job counts them itself.
    pub fn set_done(&mut self, done: u64) {
        self.checkpoint.done = done;
        self.pending = 0;
        self.dirty = true;
    }

    /// A token cancelled when the job must stop, for code that waits on I/O:
    /// `tokio::select!` on `ctx.interrupted().cancelled()`.
    pub fn interrupted(&self) -> CancellationToken {
        self.signal.token()
    }

    /// Why the job must stop, if it must.
    pub fn stop_reason(&self) -> Option<Interrupt> {
        self.signal.get()
    }

    /// Records `cursor` ("everything before it is done") and one more item
    /// done. Writes to the store at most once per flush interval, and always
    /// when the job must stop, in which case it returns
    /// `Err(Interrupted(reason))` for `?` to end the stint.
    ///
    /// When nothing is due this is a clock read and an atomic load.
    #[inline]
    pub async fn checkpoint<C: Serialize + ?Sized>(&mut self, cursor: &C) -> Result<(), JobError> {
        self.checkpoint_n(cursor, 1).await
    }

    /// As `checkpoint`, for `n` items done at once.
    pub async fn checkpoint_n<C: Serialize + ?Sized>(
        &mut self,
        cursor: &C,
        n: u64,
    ) -> Result<(), JobError> {
        self.pending += n;
        self.dirty = true;
        let stop = self.signal.get();
        if stop.is_none() && coarse_ms() < self.next_flush_ms {
            return Ok(());
        }
        if stop == Some(Interrupt::LeaseLost) {
            // Nothing may be written: the lease is gone, or may be by now.
            return Err(JobError::Interrupted(Interrupt::LeaseLost));
        }
        // The cursor and the count it covers move together.
        self.set_cursor(cursor)?;
        self.checkpoint.done += std::mem::take(&mut self.pending);
        self.flush().await;
        match self.signal.get() {
            Some(reason) => Err(JobError::Interrupted(reason)),
            None => Ok(()),
        }
    }

    /// Writes the checkpoint in the caller's own transaction `tx`, so the
    /// job's writes and its progress commit together: after a crash the job
    /// resumes exactly after the last committed batch, and no item runs
    /// twice. `n` items are counted done.
    ///
    /// When the job must stop, this returns `Err(Interrupted)` *before*
    /// writing: `?` drops (rolls back) the transaction, and the next stint
    /// redoes that batch from the last committed cursor.
    pub async fn checkpoint_in<T: CheckpointTx, C: Serialize + ?Sized>(
        &mut self,
        tx: &mut T,
        cursor: &C,
        n: u64,
    ) -> Result<(), JobError> {
        let next = self.tx_checkpoint(cursor, n)?;
        let written = tx.write_checkpoint(&self.lease, &next).await;
        self.tx_written(written, next)
    }

    /// As `checkpoint_in`, for a blocking transaction (SQLite); see
    /// `stint_sqlite::CtxExt::checkpoint_tx`.
    pub fn checkpoint_in_blocking<T: BlockingCheckpointTx, C: Serialize + ?Sized>(
        &mut self,
        tx: &mut T,
        cursor: &C,
        n: u64,
    ) -> Result<(), JobError> {
        let next = self.tx_checkpoint(cursor, n)?;
        let written = tx.write_checkpoint(&self.lease, &next);
        self.tx_written(written, next)
    }

    /// The checkpoint a transactional write will save, unless the job must
    /// stop first.
    fn tx_checkpoint<C: Serialize + ?Sized>(
        &mut self,
        cursor: &C,
        n: u64,
    ) -> Result<Checkpoint, JobError> {
        if let Some(reason) = self.signal.get() {
            return Err(JobError::Interrupted(reason));
        }
        self.transactional = true;
        let mut next = self.checkpoint.clone();
        next.done += n;
        next.cursor = Some(self.cursor_value(cursor)?);
        self.stamp(&mut next);
        Ok(next)
    }

    fn tx_written(
        &mut self,
        written: Result<Option<Control>, StoreError>,
        next: Checkpoint,
    ) -> Result<(), JobError> {
        match written {
            Ok(control) => {
                self.checkpoint = next;
                self.dirty = false;
                self.apply_control(control);
                Ok(())
            }
            Err(StoreError::LeaseLost(_)) => {
                self.lease_lost();
                Err(JobError::Interrupted(Interrupt::LeaseLost))
            }
            Err(e) => Err(JobError::Failed(Box::new(e))),
        }
    }

    /// Runs `step` once: a step that completed in an earlier stint is
    /// skipped (its future dropped unpolled). Completing a step saves the
    /// checkpoint at once.
    pub async fn step<F>(&mut self, name: &str, step: F) -> Result<(), JobError>
    where
        F: Future<Output = Result<(), JobError>>,
    {
        if self.checkpoint.steps.iter().any(|s| s == name) {
            return Ok(());
        }
        if let Some(reason) = self.signal.get() {
            if reason != Interrupt::LeaseLost {
                self.flush().await;
            }
            return Err(JobError::Interrupted(reason));
        }
        step.await?;
        self.checkpoint.steps.push(name.to_owned());
        self.dirty = true;
        self.flush().await;
        match self.signal.get() {
            Some(reason) => Err(JobError::Interrupted(reason)),
            None => Ok(()),
        }
    }

    /// Ends the stint and runs the job again no earlier than `delay` from
    /// now: it goes back to `scheduled` with its checkpoint (as of its
    /// last `checkpoint` call), and no attempt is used. For a job that
    /// finds it cannot go on yet (an API says "slow down", a file is not
    /// there yet). Use it as `return ctx.snooze(delay);` or
    /// `ctx.snooze(delay)?`. A pending pause or cancel wins.
    pub fn snooze(&self, delay: Duration) -> Result<(), JobError> {
        Err(JobError::Snooze(delay))
    }

    /// Whether step `name` completed in this or an earlier stint.
    pub fn step_done(&self, name: &str) -> bool {
        self.checkpoint.steps.iter().any(|s| s == name)
    }

    fn cursor_value<C: Serialize + ?Sized>(
        &self,
        cursor: &C,
    ) -> Result<serde_json::Value, JobError> {
        serde_json::to_value(cursor).map_err(|e| {
            JobError::fatal(format!(
                "job {} ({}): cursor does not serialize to JSON: {e}",
                self.jid, self.kind
            ))
        })
    }

    fn set_cursor<C: Serialize + ?Sized>(&mut self, cursor: &C) -> Result<(), JobError> {
        self.checkpoint.cursor = Some(self.cursor_value(cursor)?);
        Ok(())
    }

    /// Fills in run time and rate from this stint's clock.
    pub(crate) fn stamp(&self, cp: &mut Checkpoint) {
        let elapsed = self.started.elapsed();
        cp.run_time_ms = self.run_time_at_start_ms + elapsed.as_millis() as u64;
        let secs = elapsed.as_secs_f64();
        let done = cp.done.saturating_sub(self.done_at_start);
        if secs >= 0.2 && done > 0 {
            cp.rate = Some(done as f64 / secs);
        }
    }

    /// Sends the checkpoint to the store. A refused lease raises `LeaseLost`;
    /// an unreachable store is logged once and tried again at the next flush.
    pub(crate) async fn flush(&mut self) {
        self.next_flush_ms = coarse_ms() + self.flush_every.as_millis() as u64;
        if self.signal.get() == Some(Interrupt::LeaseLost) {
            return;
        }
        if self.transactional && !self.dirty {
            return;
        }
        let mut cp = self.checkpoint.clone();
        self.stamp(&mut cp);
        self.checkpoint.run_time_ms = cp.run_time_ms;
        self.checkpoint.rate = cp.rate;
        if self.transactional {
            // The cursor is committed by the job's own transactions; only
            // the counters may move here, and that must not race them.
            return;
        }
        match self.store.checkpoint(&self.lease, &cp).await {
            Ok(control) => {
                self.dirty = false;
                if self.store_trouble {
                    tracing::info!(jid = %self.jid, kind = %self.kind, "checkpoint saved again");
                    self.store_trouble = false;
                }
                self.apply_control(control);
            }
            Err(StoreError::LeaseLost(_)) => self.lease_lost(),
            Err(e) => {
                if !self.store_trouble {
                    tracing::warn!(jid = %self.jid, kind = %self.kind, error = %e,
                        "checkpoint not saved; the job runs on and the next checkpoint tries again");
                    self.store_trouble = true;
                }
            }
        }
    }

    fn apply_control(&self, control: Option<Control>) {
        match control {
            Some(Control::Pause) => self.signal.raise(Interrupt::Pause),
            Some(Control::Cancel) => self.signal.raise(Interrupt::Cancel),
            None => {}
        }
    }

    pub(crate) fn lease_lost(&self) {
        tracing::warn!(jid = %self.jid, kind = %self.kind, stint = self.lease.stint,
            "lease lost: another process holds this job now; stopping this stint without writing");
        self.signal.raise(Interrupt::LeaseLost);
    }

    /// The checkpoint the runtime saves with the stint's end: `None` when
    /// the store's copy is the truth (transactional checkpoints). A job that
    /// succeeded counts every item; otherwise the count is the one its last
    /// recorded cursor covers, so that the next stint's count stays true.
    pub(crate) fn final_checkpoint(&self, succeeded: bool) -> Option<Checkpoint> {
        if self.transactional {
            return None;
        }
        let mut cp = self.checkpoint.clone();
        if succeeded {
            cp.done += self.pending;
        }
        self.stamp(&mut cp);
        Some(cp)
    }
}

/// Milliseconds on the kernel's coarse monotonic clock: a few nanoseconds
/// to read (no hardware counter), with the tick's resolution (1–4 ms), which
/// is plenty to tell whether a once-a-second write is due.
#[inline]
fn coarse_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC_COARSE
    // exists on every Linux since 2.6.32.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}
