//! The client: push jobs (one, many, scheduled) and steer them.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::error::{StoreError, StoreResult};
use crate::job::Job;
use crate::model::{Backoff, Jid, JobOptions, Limit, NewJob, Pushed, Unique};
use crate::store::Store;

/// How one push differs from the kind's defaults (`Job::options`).
#[derive(Clone, Debug, Default)]
pub struct Push {
    queue: Option<String>,
    max_attempts: Option<u32>,
    backoff: Option<Backoff>,
    max_stint: Option<Duration>,
    at: Option<SystemTime>,
    jid: Option<Jid>,
    unique: Option<Unique>,
    limit: Option<Limit>,
}

impl Push {
    /// Options that change nothing: the job's kind decides everything
    /// (`Job::options`), and the job gets a fresh jid and runs now.
    pub fn new() -> Self {
        Self::default()
    }
    /// The queue to push to, instead of the kind's (`"default"` unless
    /// `Job::options` says otherwise).
    pub fn queue(mut self, q: impl Into<String>) -> Self {
        self.queue = Some(q.into());
        self
    }
    /// Attempts in all, the first included (1 = no retries).
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = Some(n.max(1));
        self
    }
    /// The delays between retries of a failed job (default: 15 s doubling
    /// each attempt, at most 6 h, ±25 % jitter).
    pub fn backoff(mut self, b: Backoff) -> Self {
        self.backoff = Some(b);
        self
    }
    /// Each stint checkpoints and re-queues itself after this long.
    pub fn max_stint(mut self, d: Duration) -> Self {
        self.max_stint = Some(d);
        self
    }
    /// Runs no earlier than `t`.
    pub fn at(mut self, t: SystemTime) -> Self {
        self.at = Some(t);
        self
    }
    /// Runs no earlier than `d` from now.
    pub fn delay(mut self, d: Duration) -> Self {
        self.at = Some(SystemTime::now() + d);
        self
    }
    /// Makes the job unique by `unique.key`: while a job holding the key
    /// is in `unique.scope`, this push stores nothing and answers the
    /// holder's jid (`Pushed::Duplicate`).
    pub fn unique(mut self, unique: Unique) -> Self {
        self.unique = Some(unique);
        self
    }
    /// Counts the job towards `limit.key`'s concurrency and rate limits:
    /// it starts only when the key has room, waiting without a worker slot
    /// meanwhile.
    pub fn limit(mut self, limit: Limit) -> Self {
        self.limit = Some(limit);
        self
    }
    /// Uses this jid instead of a fresh one.
    pub fn jid(mut self, jid: Jid) -> Self {
        self.jid = Some(jid);
        self
    }

    /// The same options without a fixed jid (for pushes of many jobs).
    pub(crate) fn clear_jid(self) -> Self {
        Push { jid: None, ..self }
    }

    pub(crate) fn apply(&self, mut o: JobOptions) -> JobOptions {
        if let Some(q) = &self.queue {
            o.queue = q.clone();
        }
        if let Some(n) = self.max_attempts {
            o.max_attempts = n;
        }
        if let Some(b) = &self.backoff {
            o.backoff = b.clone();
        }
        if let Some(d) = self.max_stint {
            o.max_stint_ms = Some(d.as_millis() as u64);
        }
        if let Some(u) = &self.unique {
            o.unique = Some(u.clone());
        }
        if let Some(l) = &self.limit {
            o.limit = Some(l.clone());
        }
        o
    }
}

/// Pushes jobs to a store. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    store: Arc<dyn Store>,
}

impl Client {
    /// A client pushing to `store` (as `stint::connect` opens it); any
    /// number of clients and workers may share one store.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Client { store }
    }

    /// The store this client pushes to, for operations beyond pushing
    /// (`Store::pause`, `Store::job`, …).
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Builds the record a push stores, without pushing it.
    pub fn prepare<J: Job>(job: &J, push: &Push) -> StoreResult<NewJob> {
        let args = serde_json::to_value(job).map_err(|e| {
            StoreError::Other(format!(
                "arguments of a {} job do not serialize: {e}",
                J::KIND
            ))
        })?;
        let mut options = J::options();
        if let Some(u) = job.unique() {
            options.unique = Some(u);
        }
        if let Some(l) = job.limit() {
            options.limit = Some(l);
        }
        Ok(NewJob {
            jid: push.jid.clone().unwrap_or_default(),
            kind: J::KIND.to_owned(),
            args,
            options: push.apply(options),
            run_at: push.at,
        })
    }

    /// Enqueues a job now with its kind's options. Returns its jid.
    pub async fn push<J: Job>(&self, job: &J) -> StoreResult<Jid> {
        self.push_with(job, Push::new()).await
    }

    /// Enqueues a job with options of this push. Returns the jid that
    /// runs it: a unique job whose key is held answers the holder's jid
    /// (logged; `push_detailed` tells the two apart).
    pub async fn push_with<J: Job>(&self, job: &J, push: Push) -> StoreResult<Jid> {
        let pushed = self.push_detailed(job, push).await?;
        if let Pushed::Duplicate { jid, key } = &pushed {
            tracing::info!(kind = J::KIND, %jid, key, "not pushed: job {jid} holds the unique key {key}");
        }
        Ok(pushed.jid().clone())
    }

    /// Enqueues a job with options of this push, and says whether it was
    /// stored (`Pushed::New`) or a job holding its unique key already
    /// exists (`Pushed::Duplicate`, with that job's jid).
    pub async fn push_detailed<J: Job>(&self, job: &J, push: Push) -> StoreResult<Pushed> {
        let new = Self::prepare(job, &push)?;
        let mut pushed = self.store.push(vec![new]).await?;
        pushed
            .pop()
            .ok_or_else(|| StoreError::Other("the store answered no push result".into()))
    }

    /// Enqueues many jobs in one round trip. Returns the jids that run
    /// them, in order (a holder's jid for a unique job whose key is held).
    pub async fn push_many<J: Job>(&self, jobs: &[J], push: Push) -> StoreResult<Vec<Jid>> {
        let push = push.clear_jid();
        let new: Vec<NewJob> = jobs
            .iter()
            .map(|j| Self::prepare(j, &push))
            .collect::<StoreResult<_>>()?;
        let pushed = self.store.push(new).await?;
        Ok(pushed.into_iter().map(|p| p.jid().clone()).collect())
    }

    /// Runs a job no earlier than `at`.
    pub async fn schedule_at<J: Job>(&self, job: &J, at: SystemTime) -> StoreResult<Jid> {
        self.push_with(job, Push::new().at(at)).await
    }

    /// Runs a job no earlier than `delay` from now.
    pub async fn schedule_in<J: Job>(&self, job: &J, delay: Duration) -> StoreResult<Jid> {
        self.push_with(job, Push::new().delay(delay)).await
    }

    /// Pushes prepared records (any kind, e.g. from another language).
    pub async fn push_raw(&self, jobs: Vec<NewJob>) -> StoreResult<Vec<Pushed>> {
        self.store.push(jobs).await
    }
}
