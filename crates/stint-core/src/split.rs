//! Splitting a job into resumable children, and resuming the parent with
//! their results once every child has finished (`Ctx::split`).

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::client::{Client, Push};
use crate::ctx::Ctx;
use crate::error::{Interrupt, JobError, StoreError};
use crate::job::Job;
use crate::model::{ChildRecord, ErrorInfo, Jid, JobState};

/// What a parent does about a child that ended `dead` or `cancelled`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SplitPolicy {
    /// The parent fails for good (`dead`), naming the children that did
    /// not succeed.
    #[default]
    FailParent,
    /// The parent resumes with every child's outcome and decides.
    Collect,
}

/// How one child ended, as `Ctx::split` returns it to its parent.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ChildResult {
    /// The child's jid (for `stint show`, or to retry it).
    pub jid: Jid,
    /// The child's final state: `succeeded`, `dead` or `cancelled`.
    pub state: JobState,
    /// What the child returned (`Ctx::set_result`), when it succeeded.
    pub value: Option<Value>,
    /// Why it is dead or cancelled.
    pub reason: Option<String>,
    /// The child's last error, with its chain of causes, if it had one.
    pub error: Option<ErrorInfo>,
}

impl ChildResult {
    /// True when the child succeeded (its `value` is then what it returned).
    pub fn succeeded(&self) -> bool {
        self.state == JobState::Succeeded
    }

    /// The child's result as `R`: `None` when it set none (or did not
    /// succeed); a fatal error naming the child when the value does not
    /// deserialize as `R`.
    pub fn value<R: DeserializeOwned>(&self) -> Result<Option<R>, JobError> {
        match &self.value {
            None => Ok(None),
            Some(v) => serde_json::from_value(v.clone()).map(Some).map_err(|e| {
                JobError::fatal(format!(
                    "child {}: result {v} does not deserialize as {}: {e}",
                    self.jid,
                    std::any::type_name::<R>()
                ))
            }),
        }
    }

    fn from_record(c: ChildRecord) -> Self {
        ChildResult {
            jid: c.job.jid,
            state: c.job.state,
            value: c.result,
            reason: c.job.reason,
            error: c.job.error,
        }
    }
}

impl Ctx {
    /// Splits the job into children, one per item `children()` returns, each
    /// an ordinary resumable job; the parent's stint ends here, holding no
    /// worker slot. When every child has finished, the parent runs again,
    /// and this same call returns the children's results so it can merge
    /// them. A parent resumed after an interruption or a crash never
    /// enqueues its children twice: the split is one atomic step.
    ///
    /// Children that end dead or cancelled fail the parent; see
    /// `split_with` for the other policy.
    ///
    /// ```no_run
    /// # use serde::{Deserialize, Serialize};
    /// # use stint_core::{Ctx, Job, JobError};
    /// # #[derive(Serialize, Deserialize)] struct Chunk { from: u64, to: u64 }
    /// # impl Job for Chunk { const KIND: &'static str = "Chunk";
    /// #   async fn perform(&self, _: &mut Ctx) -> Result<(), JobError> { Ok(()) } }
    /// # async fn parent(ctx: &mut Ctx) -> Result<(), JobError> {
    /// let results = ctx
    ///     .split("chunks", || (0..8).map(|i| Chunk { from: i * 1000, to: (i + 1) * 1000 }).collect())
    ///     .await?;
    /// let total: u64 = results.iter().map(|r| r.value::<u64>().unwrap_or_default().unwrap_or(0)).sum();
    /// # Ok(()) }
    /// ```
    pub async fn split<J, F>(
        &mut self,
        step: &str,
        children: F,
    ) -> Result<Vec<ChildResult>, JobError>
    where
        J: Job,
        F: FnOnce() -> Vec<J>,
    {
        self.split_with(step, SplitPolicy::FailParent, Push::new(), children)
            .await
    }

    /// As `split`, with a policy for failed children and push options for
    /// the children (queue, attempts, …).
    pub async fn split_with<J, F>(
        &mut self,
        step: &str,
        policy: SplitPolicy,
        push: Push,
        children: F,
    ) -> Result<Vec<ChildResult>, JobError>
    where
        J: Job,
        F: FnOnce() -> Vec<J>,
    {
        if self.step_done(step) {
            return self.split_results(step, policy).await;
        }
        if let Some(reason) = self.signal.get() {
            self.flush().await;
            return Err(JobError::Interrupted(reason));
        }
        let push = push.clear_jid();
        let new = children()
            .iter()
            .map(|c| Client::prepare(c, &push))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| JobError::Failed(Box::new(e)))?;
        let mut cp = self.checkpoint.clone();
        cp.steps.push(step.to_owned());
        self.stamp(&mut cp);
        if new.is_empty() {
            self.checkpoint = cp;
            self.dirty = true;
            self.flush().await;
            return Ok(Vec::new());
        }
        let n = new.len();
        match self.store.split(&self.lease, &cp, step, new).await {
            Ok(()) => {
                self.checkpoint = cp;
                self.dirty = false;
                tracing::info!(jid = %self.jid, kind = %self.kind, step, children = n,
                    "split: waiting for the children to finish");
                Err(JobError::Interrupted(Interrupt::Split))
            }
            Err(StoreError::LeaseLost(_)) => {
                self.lease_lost();
                Err(JobError::Interrupted(Interrupt::LeaseLost))
            }
            Err(e) => Err(JobError::Failed(Box::new(e))),
        }
    }

    async fn split_results(
        &self,
        step: &str,
        policy: SplitPolicy,
    ) -> Result<Vec<ChildResult>, JobError> {
        let children = self
            .store
            .children(&self.jid)
            .await
            .map_err(|e| JobError::Failed(Box::new(e)))?;
        let results: Vec<ChildResult> = children
            .into_iter()
            .filter(|c| c.step == step)
            .map(ChildResult::from_record)
            .collect();
        if let Some(open) = results.iter().find(|r| !r.state.is_final()) {
            // Only when an operator retried a child after the parent resumed.
            return Err(JobError::msg(format!(
                "job {}: split {step:?}: child {} is {} again; the merge waits for it",
                self.jid, open.jid, open.state
            )));
        }
        if policy == SplitPolicy::FailParent {
            let failed: Vec<String> = results
                .iter()
                .filter(|r| !r.succeeded())
                .map(|r| {
                    format!(
                        "{} {} ({})",
                        r.jid,
                        r.state,
                        r.reason.as_deref().unwrap_or("no reason")
                    )
                })
                .collect();
            if !failed.is_empty() {
                return Err(JobError::fatal(format!(
                    "job {} ({}): split {step:?}: {} of {} children did not succeed: {}; \
                     `stint retry` them and then the parent, or split with SplitPolicy::Collect",
                    self.jid,
                    self.kind,
                    failed.len(),
                    results.len(),
                    failed.join("; ")
                )));
            }
        }
        Ok(results)
    }
}
