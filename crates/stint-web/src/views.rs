//! What the pages and the JSON API show, built from the store: jobs with
//! their progress (a split parent's summed over its children), a job's
//! detail, counts, queues and processes. The API serializes these as they
//! are, so a page and its API always agree.

use std::sync::Arc;

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
use stint_core::metrics::Metrics;
use stint_core::model::{
    now_ms, ChildRecord, ErrorInfo, Jid, JobRecord, JobState, KeyInfo, ProcessCommand, ProcessInfo,
    QueueInfo, StintRecord, TreeProgress,
};
use stint_core::store::JobFilter;
use stint_core::{Store, StoreResult};

/// How far a job is: its own checkpoint's counters, or, for a split
/// parent, its children's summed.
#[derive(Clone, Debug, Serialize)]
pub struct Progress {
    pub done: u64,
    pub total: Option<u64>,
    /// 0..=1, when the total is known.
    pub fraction: Option<f64>,
    /// Items per second over the current (or last) stint.
    pub rate: Option<f64>,
    /// Seconds left at that rate; only while the job runs.
    pub eta_s: Option<f64>,
    /// Run time over all stints, in milliseconds.
    pub run_time_ms: u64,
}

impl Progress {
    fn of(job: &JobRecord, tree: Option<&TreeProgress>) -> Self {
        let cp = &job.checkpoint;
        match tree {
            Some(t) => Progress {
                done: t.done,
                total: Some(t.total),
                fraction: (t.total > 0).then(|| (t.done as f64 / t.total as f64).min(1.0)),
                rate: None,
                eta_s: None,
                run_time_ms: cp.run_time_ms,
            },
            None => Progress {
                done: cp.done,
                total: cp.total,
                fraction: cp.fraction(),
                rate: cp.rate,
                eta_s: (job.state == JobState::Running)
                    .then(|| cp.eta())
                    .flatten()
                    .map(|d| d.as_secs_f64()),
                run_time_ms: cp.run_time_ms,
            },
        }
    }
}

/// A job as the dashboard lists it.
#[derive(Clone, Debug, Serialize)]
pub struct JobView {
    #[serde(flatten)]
    pub job: JobRecord,
    pub progress: Progress,
    /// A split parent's children, summed.
    pub tree: Option<TreeProgress>,
    /// How long the current stint has run, in ms (running jobs).
    pub stint_ms: Option<i64>,
}

impl JobView {
    pub fn new(job: JobRecord, tree: Option<TreeProgress>) -> Self {
        let progress = Progress::of(&job, tree.as_ref());
        let stint_ms = (job.state == JobState::Running)
            .then_some(job.run_at_ms)
            .flatten()
            .map(|t| (now_ms() - t).max(0));
        JobView {
            job,
            progress,
            tree,
            stint_ms,
        }
    }
}

/// Jobs a filter selects, newest first; waiting parents with their
/// children's summed progress.
pub async fn jobs(store: &Arc<dyn Store>, filter: &JobFilter) -> StoreResult<Vec<JobView>> {
    let jobs = store.jobs(filter).await?;
    let mut out = Vec::with_capacity(jobs.len());
    for job in jobs {
        let tree = if job.state == JobState::Waiting {
            Some(TreeProgress::of(&store.children(&job.jid).await?))
        } else {
            None
        };
        out.push(JobView::new(job, tree));
    }
    Ok(out)
}

/// A child of a split job.
#[derive(Clone, Debug, Serialize)]
pub struct ChildView {
    pub step: String,
    pub result: Option<serde_json::Value>,
    pub job: JobView,
}

/// One job with everything the store knows about it.
#[derive(Clone, Debug, Serialize)]
pub struct DetailView {
    pub job: JobView,
    /// Its stints, oldest first, each with why it ended.
    pub history: Vec<StintRecord>,
    /// Every error it had, oldest first, each with its chain of causes.
    pub errors: Vec<ErrorInfo>,
    pub children: Vec<ChildView>,
    /// The counts of the job's limit key (`Store::limits`), when it has a
    /// limit and the key has jobs running or parked.
    pub limit_counts: Option<KeyInfo>,
}

pub async fn detail(store: &Arc<dyn Store>, jid: &Jid) -> StoreResult<Option<DetailView>> {
    let Some(d) = store.job(jid).await? else {
        return Ok(None);
    };
    let children: Vec<ChildRecord> = store.children(jid).await?;
    let tree = (!children.is_empty()).then(|| TreeProgress::of(&children));
    // The key's counts complete the page; a store that cannot list them
    // leaves them out rather than failing the page.
    let limit_counts = match &d.job.options.limit {
        Some(l) => match store.limits().await {
            Ok(keys) => keys.into_iter().find(|k| k.key == l.key),
            Err(e) => {
                tracing::debug!(error = %e, "no limit counts for job {jid}");
                None
            }
        },
        None => None,
    };
    Ok(Some(DetailView {
        job: JobView::new(d.job, tree),
        history: d.history,
        errors: d.errors,
        children: children
            .into_iter()
            .map(|c| ChildView {
                step: c.step,
                result: c.result,
                job: JobView::new(c.job, None),
            })
            .collect(),
        limit_counts,
    }))
}

/// A live worker process, with the command an operator gave it.
#[derive(Clone, Debug, Serialize)]
pub struct ProcessView {
    #[serde(flatten)]
    pub process: ProcessInfo,
    /// `quiet` or `stop`, once an operator asked.
    pub command: Option<ProcessCommand>,
}

pub async fn processes(store: &Arc<dyn Store>) -> StoreResult<Vec<ProcessView>> {
    with_commands(store, store.processes().await?).await
}

async fn with_commands(
    store: &Arc<dyn Store>,
    list: Vec<ProcessInfo>,
) -> StoreResult<Vec<ProcessView>> {
    let mut out = Vec::with_capacity(list.len());
    for process in list {
        let command = store.process_command(&process.id).await?;
        out.push(ProcessView { process, command });
    }
    Ok(out)
}

/// Job counts by state, serialized as an object in lifecycle order.
#[derive(Clone, Debug)]
pub struct Counts(pub Vec<(JobState, u64)>);

impl Serialize for Counts {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (state, n) in &self.0 {
            map.serialize_entry(state.as_str(), n)?;
        }
        map.end()
    }
}

/// Counters summed over every kind and queue; the overview computes its
/// "per minute" rates from two samples of these.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Totals {
    pub processed: u64,
    pub failed: u64,
    pub interrupted: u64,
    pub recovered: u64,
}

/// The overview: counts, queues, processes, totals.
#[derive(Clone, Debug, Serialize)]
pub struct StatsView {
    /// The store's clock is not read: this machine's time of the sample.
    pub at_ms: i64,
    pub counts: Counts,
    pub queues: Vec<QueueInfo>,
    pub processes: Vec<ProcessView>,
    /// `None` when the store keeps no counters (see `metrics_error`).
    pub totals: Option<Totals>,
    pub metrics_error: Option<String>,
}

pub async fn stats(store: &Arc<dyn Store>) -> StoreResult<StatsView> {
    let s = store.stats().await?;
    let (totals, metrics_error) = match store.metrics().await {
        Ok(m) => (Some(totals(&m)), None),
        Err(e) => (None, Some(e.to_string())),
    };
    Ok(StatsView {
        at_ms: now_ms(),
        counts: Counts(s.states),
        queues: s.queues,
        processes: with_commands(store, s.processes).await?,
        totals,
        metrics_error,
    })
}

pub fn totals(m: &Metrics) -> Totals {
    let t = m.totals();
    Totals {
        processed: t.processed,
        failed: t.failed,
        interrupted: t.interrupted,
        recovered: t.recovered,
    }
}
