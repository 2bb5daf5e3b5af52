//! A store that times the calls a worker makes: fetch (and how many jobs
//! each brought), complete (and how many ends each recorded), and the
//! maintenance that unparks (`promote_due`). Every call goes to the real
//! store underneath; the benchmark prints the tallies with `FLOW_PROBE`, to
//! say where a slow run spends its time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use stint::metrics::Metrics;
use stint::model::{KeyInfo, Pushed};
use stint::periodic::{ScheduleDef, ScheduleInfo, TickOutcome, TickPush, TickRecord};
use stint::{
    Checkpoint, ChildRecord, CommandEffect, Completion, Control, Jid, JobCommand, JobDetail,
    JobFilter, JobRecord, Lease, Leased, NewJob, ProcessCommand, ProcessInfo, Recovered, Stats,
    Store, StoreResult,
};

/// Calls of one method: how many, their total time, the items they
/// carried.
#[derive(Default)]
pub struct Tally {
    calls: AtomicU64,
    nanos: AtomicU64,
    items: AtomicU64,
}

impl Tally {
    fn add(&self, took: Duration, items: usize) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.nanos
            .fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
        self.items.fetch_add(items as u64, Ordering::Relaxed);
    }

    /// "N calls, X ms each, Y items each, Z s in all".
    fn line(&self, items: &str) -> String {
        let calls = self.calls.load(Ordering::Relaxed).max(1) as f64;
        let secs = self.nanos.load(Ordering::Relaxed) as f64 / 1e9;
        format!(
            "{:>7} calls, {:>7.2} ms each, {:>6.1} {items} each, {:>6.1} s in all",
            self.calls.load(Ordering::Relaxed),
            secs * 1e3 / calls,
            self.items.load(Ordering::Relaxed) as f64 / calls,
            secs
        )
    }
}

/// The real store, with its worker-side calls timed.
pub struct Probe {
    inner: Arc<dyn Store>,
    pub fetch: Tally,
    pub empty_fetches: AtomicU64,
    pub complete: Tally,
    pub promote: Tally,
}

impl Probe {
    pub fn new(inner: Arc<dyn Store>) -> Arc<Self> {
        Arc::new(Probe {
            inner,
            fetch: Tally::default(),
            empty_fetches: AtomicU64::new(0),
            complete: Tally::default(),
            promote: Tally::default(),
        })
    }

    /// The tallies, one line each.
    pub fn report(&self) -> String {
        format!(
            "  fetch:       {} ({} empty)\n  complete:    {}\n  promote_due: {}",
            self.fetch.line("jobs"),
            self.empty_fetches.load(Ordering::Relaxed),
            self.complete.line("ends"),
            self.promote.line("unparked")
        )
    }
}

#[async_trait]
impl Store for Probe {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }
    async fn push(&self, jobs: Vec<NewJob>) -> StoreResult<Vec<Pushed>> {
        self.inner.push(jobs).await
    }
    async fn register(&self, process: &ProcessInfo, ttl: Duration) -> StoreResult<()> {
        self.inner.register(process, ttl).await
    }
    async fn heartbeat(
        &self,
        process: &str,
        busy: u32,
        quiet: bool,
        ttl: Duration,
    ) -> StoreResult<bool> {
        self.inner.heartbeat(process, busy, quiet, ttl).await
    }
    async fn deregister(&self, process: &str) -> StoreResult<()> {
        self.inner.deregister(process).await
    }
    async fn mark_stopping(&self, process: &str) -> StoreResult<()> {
        self.inner.mark_stopping(process).await
    }
    async fn expire_process(&self, process: &str) -> StoreResult<()> {
        self.inner.expire_process(process).await
    }
    async fn processes(&self) -> StoreResult<Vec<ProcessInfo>> {
        self.inner.processes().await
    }
    async fn fetch(
        &self,
        process: &str,
        queues: &[String],
        limit: usize,
    ) -> StoreResult<Vec<Leased>> {
        let start = Instant::now();
        let got = self.inner.fetch(process, queues, limit).await;
        let n = got.as_ref().map_or(0, Vec::len);
        self.fetch.add(start.elapsed(), n);
        if n == 0 {
            self.empty_fetches.fetch_add(1, Ordering::Relaxed);
        }
        got
    }
    fn fetch_waits_for_jobs(&self) -> bool {
        self.inner.fetch_waits_for_jobs()
    }
    async fn checkpoint(
        &self,
        lease: &Lease,
        checkpoint: &Checkpoint,
    ) -> StoreResult<Option<Control>> {
        self.inner.checkpoint(lease, checkpoint).await
    }
    async fn complete(&self, completions: Vec<Completion>) -> StoreResult<Vec<Jid>> {
        let start = Instant::now();
        let n = completions.len();
        let r = self.inner.complete(completions).await;
        self.complete.add(start.elapsed(), n);
        r
    }
    async fn controls(&self, process: &str) -> StoreResult<Vec<(Jid, Control)>> {
        self.inner.controls(process).await
    }
    async fn split(
        &self,
        lease: &Lease,
        checkpoint: &Checkpoint,
        step: &str,
        children: Vec<NewJob>,
    ) -> StoreResult<()> {
        self.inner.split(lease, checkpoint, step, children).await
    }
    async fn children(&self, parent: &Jid) -> StoreResult<Vec<ChildRecord>> {
        self.inner.children(parent).await
    }
    async fn push_tick(&self, tick: &TickPush) -> StoreResult<TickOutcome> {
        self.inner.push_tick(tick).await
    }
    async fn register_schedules(&self, defs: &[ScheduleDef]) -> StoreResult<()> {
        self.inner.register_schedules(defs).await
    }
    async fn schedules(&self) -> StoreResult<Vec<ScheduleInfo>> {
        self.inner.schedules().await
    }
    async fn ticks(&self, schedule: &str, limit: usize) -> StoreResult<Vec<TickRecord>> {
        self.inner.ticks(schedule, limit).await
    }
    async fn promote_due(&self) -> StoreResult<u64> {
        let start = Instant::now();
        let r = self.inner.promote_due().await;
        self.promote
            .add(start.elapsed(), *r.as_ref().unwrap_or(&0) as usize);
        r
    }
    async fn recover_orphans(&self, max_recoveries: u32) -> StoreResult<Vec<Recovered>> {
        self.inner.recover_orphans(max_recoveries).await
    }
    async fn stats(&self) -> StoreResult<Stats> {
        self.inner.stats().await
    }
    async fn jobs(&self, filter: &JobFilter) -> StoreResult<Vec<JobRecord>> {
        self.inner.jobs(filter).await
    }
    async fn job(&self, jid: &Jid) -> StoreResult<Option<JobDetail>> {
        self.inner.job(jid).await
    }
    async fn command(&self, jid: &Jid, command: JobCommand) -> StoreResult<CommandEffect> {
        self.inner.command(jid, command).await
    }
    async fn set_queue_paused(&self, queue: &str, paused: bool) -> StoreResult<()> {
        self.inner.set_queue_paused(queue, paused).await
    }
    async fn clear_queue(&self, queue: &str) -> StoreResult<u64> {
        self.inner.clear_queue(queue).await
    }
    async fn delete(&self, jid: &Jid) -> StoreResult<()> {
        self.inner.delete(jid).await
    }
    async fn command_process(&self, process: &str, command: ProcessCommand) -> StoreResult<()> {
        self.inner.command_process(process, command).await
    }
    async fn process_command(&self, process: &str) -> StoreResult<Option<ProcessCommand>> {
        self.inner.process_command(process).await
    }
    async fn limits(&self) -> StoreResult<Vec<KeyInfo>> {
        self.inner.limits().await
    }
    async fn metrics(&self) -> StoreResult<Metrics> {
        self.inner.metrics().await
    }
}
