//! The worker runtime: fetches jobs, runs stints, records how they end,
//! keeps its leases alive and stops cleanly.
//!
//! Pieces, one module each: `fetcher` (leases jobs, starts stints, stops
//! them at shutdown), `executor` (one stint), `completer` (records stint
//! ends in batches), `upkeep` (heartbeat, operator commands, due jobs,
//! orphan recovery), `signals` (SIGTERM, SIGINT, SIGTSTP).

mod completer;
mod executor;
mod fetcher;
mod holds;
mod periodic;
mod signals;
mod trouble;
mod upkeep;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

use crate::error::{Interrupt, StoreError};
use crate::interrupt::StopSignal;
use crate::job::{Job, Registry};
use crate::model::{Jid, ProcessInfo};
use crate::store::Store;

pub use signals::shutdown_signal;

/// How the worker orders its queues for each fetch.
#[derive(Clone, Debug, PartialEq)]
pub enum QueueOrder {
    /// Always in the given order: a queue is served only when those before
    /// it are empty.
    Strict(Vec<String>),
    /// A random order each fetch, each queue first with a chance
    /// proportional to its weight (Sidekiq's weighted queues).
    Weighted(Vec<(String, u32)>),
}

impl QueueOrder {
    fn names(&self) -> Vec<String> {
        match self {
            QueueOrder::Strict(q) => q.clone(),
            QueueOrder::Weighted(q) => q.iter().map(|(n, _)| n.clone()).collect(),
        }
    }

    fn for_fetch(&self) -> Vec<String> {
        match self {
            QueueOrder::Strict(q) => q.clone(),
            QueueOrder::Weighted(q) => {
                let mut left: Vec<(String, u32)> = q.clone();
                let mut out = Vec::with_capacity(left.len());
                while !left.is_empty() {
                    let total: u64 = left.iter().map(|(_, w)| (*w).max(1) as u64).sum();
                    let mut pick = rand::random_range(0..total);
                    let idx = left
                        .iter()
                        .position(|(_, w)| {
                            let w = (*w).max(1) as u64;
                            if pick < w {
                                true
                            } else {
                                pick -= w;
                                false
                            }
                        })
                        .unwrap_or(0);
                    out.push(left.remove(idx).0);
                }
                out
            }
        }
    }
}

/// Settings of a worker process. The defaults suit production.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// The queues this process takes jobs from, and in what order (default:
    /// `"default"` only).
    pub queues: QueueOrder,
    /// Stints run at once.
    pub concurrency: usize,
    /// How long a stopping worker waits for its jobs to checkpoint.
    pub shutdown_timeout: Duration,
    /// A process's leases expire this long after its last heartbeat; its
    /// jobs are then recovered by any live process. A process whose
    /// heartbeats do not get through (the store is down or stalled) stops
    /// its running jobs at 70% of this, before another process may take
    /// them: a longer TTL rides out longer store stalls, and recovers a
    /// killed process's jobs later.
    pub lease_ttl: Duration,
    /// How often the process renews its leases (and reads an operator's
    /// quiet or stop for it); keep it well under `lease_ttl`.
    pub heartbeat_interval: Duration,
    /// How often running jobs' pending pause/cancel commands are read.
    pub control_interval: Duration,
    /// How often due jobs are promoted and orphans recovered.
    pub maintenance_interval: Duration,
    /// How long an idle worker waits before asking its queues again.
    pub poll_interval: Duration,
    /// When only a few slots are free while others are busy, how long the
    /// fetcher waits for more to free up, so that one fetch (one round
    /// trip) takes many short jobs at once instead of one each.
    pub fetch_coalesce: Duration,
    /// Leased jobs a process may hold beyond its free slots, while its
    /// stints end faster than a fetch's round trip (short jobs): the next
    /// jobs are at hand when a slot frees. About as many as the slots
    /// finish in 10 ms are buffered, at most this many; none while stints
    /// are long. A buffered job not started within 250 ms goes back to the
    /// head of its queue, and so do all of them at shutdown. 0 turns
    /// prefetching off.
    pub prefetch: usize,
    /// How often a running job's checkpoint is written at most.
    pub flush_interval: Duration,
    /// Recoveries after which a job is a poison pill and goes to `dead`.
    pub max_recoveries: u32,
    /// Install handlers for SIGTERM/SIGINT (stop) and SIGTSTP (quiet).
    pub handle_signals: bool,
    /// Recover at once the jobs of processes on this host whose pid is gone,
    /// rather than waiting for their leases to expire.
    pub reap_local_processes: bool,
    /// Periodic jobs this process schedules (`WorkerBuilder::periodic`).
    pub periodic: Vec<crate::periodic::Periodic>,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            queues: QueueOrder::Strict(vec!["default".into()]),
            concurrency: 10,
            shutdown_timeout: Duration::from_secs(25),
            // A killed process's jobs run again elsewhere within about 4.5 s
            // (lease expiry plus a sweep), whatever the host; the price is a
            // heartbeat write a second per process, and running jobs stop
            // when no heartbeat gets through for 2.8 s (see `lease_ttl`).
            lease_ttl: Duration::from_secs(4),
            heartbeat_interval: Duration::from_secs(1),
            control_interval: Duration::from_millis(250),
            maintenance_interval: Duration::from_millis(500),
            poll_interval: Duration::from_millis(100),
            fetch_coalesce: Duration::from_millis(2),
            prefetch: 1000,
            flush_interval: Duration::from_secs(1),
            max_recoveries: 3,
            handle_signals: true,
            reap_local_processes: true,
            periodic: Vec::new(),
        }
    }
}

/// Builds a `Worker` (from `Worker::builder`): the job kinds it runs, its
/// queues, its concurrency and the other `WorkerConfig` settings.
pub struct WorkerBuilder {
    store: Arc<dyn Store>,
    registry: Registry,
    config: WorkerConfig,
}

impl WorkerBuilder {
    /// Registers the handler of job kind `J`.
    pub fn register<J: Job>(mut self) -> Self {
        self.registry.register::<J>();
        self
    }

    /// Queues served in strict priority: the first non-empty one wins.
    pub fn queues<I: IntoIterator<Item = S>, S: Into<String>>(mut self, queues: I) -> Self {
        self.config.queues = QueueOrder::Strict(queues.into_iter().map(Into::into).collect());
        self
    }

    /// Queues served in weighted random order.
    pub fn weighted_queues<I: IntoIterator<Item = (S, u32)>, S: Into<String>>(
        mut self,
        queues: I,
    ) -> Self {
        self.config.queues =
            QueueOrder::Weighted(queues.into_iter().map(|(q, w)| (q.into(), w)).collect());
        self
    }

    /// Stints run at once (default 10; at least 1). Each is a tokio task:
    /// CPU-heavy work belongs in `spawn_blocking`.
    pub fn concurrency(mut self, n: usize) -> Self {
        self.config.concurrency = n.max(1);
        self
    }

    /// How long a stopping worker waits for its jobs to checkpoint and stop
    /// (default 25 s); what still runs then is aborted and handed back with
    /// its last saved checkpoint.
    pub fn shutdown_timeout(mut self, d: Duration) -> Self {
        self.config.shutdown_timeout = d;
        self
    }

    /// Lease time-to-live; recovery of a killed process's jobs happens
    /// within about this long plus the maintenance interval.
    pub fn lease_ttl(mut self, d: Duration) -> Self {
        self.config.lease_ttl = d;
        self.config.heartbeat_interval = self.config.heartbeat_interval.min(d / 3);
        self
    }

    /// Jobs leased ahead of free slots at most while stints are short (see
    /// `WorkerConfig::prefetch`); 0 turns prefetching off.
    pub fn prefetch(mut self, n: usize) -> Self {
        self.config.prefetch = n;
        self
    }

    /// The poison-pill limit (default 3): a job whose process dies more than
    /// `n` times in a row without progress goes to `dead` instead of back to
    /// its queue. A checkpoint that gets further resets the count.
    pub fn max_recoveries(mut self, n: u32) -> Self {
        self.config.max_recoveries = n;
        self
    }

    /// Whether the worker installs its own signal handlers (default: yes).
    pub fn handle_signals(mut self, yes: bool) -> Self {
        self.config.handle_signals = yes;
        self
    }

    /// Schedules a periodic job (a cron expression or an interval, see
    /// [`crate::periodic`]): this process pushes each of its ticks, and
    /// every tick is enqueued once however many processes schedule it.
    pub fn periodic(mut self, periodic: crate::periodic::Periodic) -> Self {
        self.config.periodic.push(periodic);
        self
    }

    /// Replaces the whole configuration.
    pub fn config(mut self, config: WorkerConfig) -> Self {
        self.config = config;
        self
    }

    /// The configuration so far, to change settings without a builder
    /// method of their own.
    pub fn config_mut(&mut self) -> &mut WorkerConfig {
        &mut self.config
    }

    /// The worker, with a fresh process identity (`hostname:pid:<12 hex>`);
    /// nothing reaches the store until `Worker::run`.
    pub fn build(self) -> Worker {
        let names = self.config.queues.names();
        let process = ProcessInfo::for_this_process(names, self.config.concurrency as u32);
        Worker {
            shared: Arc::new(Shared {
                store: self.store,
                registry: self.registry,
                config: self.config,
                process,
                running: Mutex::new(HashMap::new()),
                busy: AtomicU32::new(0),
                ends: AtomicU64::new(0),
                quiet: AtomicBool::new(false),
                stop: CancellationToken::new(),
                abort: CancellationToken::new(),
                exit: CancellationToken::new(),
                renewed: Mutex::new(std::time::Instant::now()),
                fenced: AtomicBool::new(false),
                wake: Notify::new(),
                limit_freed: AtomicBool::new(false),
                holds: holds::Holds::default(),
                peers: AtomicUsize::new(1),
            }),
        }
    }
}

/// State shared by the worker's tasks.
pub(crate) struct Shared {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) registry: Registry,
    pub(crate) config: WorkerConfig,
    pub(crate) process: ProcessInfo,
    /// The stop signal of every running stint, by jid.
    pub(crate) running: Mutex<HashMap<Jid, Arc<StopSignal>>>,
    pub(crate) busy: AtomicU32,
    /// Stints ended so far (the fetcher's measure of pace).
    pub(crate) ends: AtomicU64,
    pub(crate) quiet: AtomicBool,
    /// Stop fetching and ask every job to stop.
    pub(crate) stop: CancellationToken,
    /// The shutdown timeout passed: abort what still runs.
    pub(crate) abort: CancellationToken,
    /// Give up on the store and exit: a second stop signal, or the
    /// shutdown timeout plus `FINAL_WRITES_GRACE` passed. Store calls of the
    /// shutdown path end at once; leases left behind expire and their jobs
    /// are recovered.
    pub(crate) exit: CancellationToken,
    /// When the last heartbeat that reached the store was sent (monotonic
    /// clock): the leases are good until at least this plus the lease TTL.
    pub(crate) renewed: Mutex<std::time::Instant>,
    /// The leases could not be renewed in time: running stints were
    /// stopped, and nothing is fetched until a heartbeat gets through.
    pub(crate) fenced: AtomicBool,
    /// Wakes the fetcher (quiet lifted, slot freed).
    pub(crate) wake: Notify,
    /// The end of a stint of a job with a limit was recorded: its key has a
    /// slot again, and the store may have unparked a job for it, so the
    /// fetcher need not wait out its idle poll.
    pub(crate) limit_freed: AtomicBool,
    /// The slots of limit keys this process holds (the fetcher's measure
    /// of how deep to buffer jobs with a concurrency limit).
    pub(crate) holds: holds::Holds,
    /// Live processes taking jobs from a queue of this one, this one
    /// included (refreshed by the maintenance task): they share the slots
    /// of the keys.
    pub(crate) peers: AtomicUsize,
}

/// After the shutdown timeout, how long a stopping worker goes on trying to
/// record the ends of its stints before it gives up on the store and exits.
pub(crate) const FINAL_WRITES_GRACE: Duration = Duration::from_secs(3);

impl Shared {
    /// Runs `call`, a store call of the shutdown path, unless the worker
    /// gives up on the store first (`exit`): then `None`.
    pub(crate) async fn bounded<T>(&self, call: impl std::future::Future<Output = T>) -> Option<T> {
        tokio::select! {
            biased;
            v = call => Some(v),
            _ = self.exit.cancelled() => None,
        }
    }

    pub(crate) fn signal_running(&self, jid: &Jid, why: Interrupt) {
        if let Some(s) = self.running.lock().unwrap().get(jid) {
            s.raise(why);
        }
    }
}

/// A handle to steer a running worker from elsewhere.
#[derive(Clone)]
pub struct WorkerHandle {
    shared: Arc<Shared>,
}

impl WorkerHandle {
    /// Starts a graceful shutdown, as SIGTERM does.
    pub fn shutdown(&self) {
        self.shared.stop.cancel();
    }

    /// Stops or restarts fetching new jobs, as SIGTSTP does.
    pub fn set_quiet(&self, quiet: bool) {
        self.shared.quiet.store(quiet, Ordering::SeqCst);
        self.shared.wake.notify_one();
    }

    /// This process's identity in the store.
    pub fn process_id(&self) -> &str {
        &self.shared.process.id
    }

    /// Stints running now.
    pub fn busy(&self) -> u32 {
        self.shared.busy.load(Ordering::SeqCst)
    }
}

/// What a worker did before it stopped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunSummary {
    /// Stints that ended (any outcome).
    pub stints: u64,
    /// Jobs that were handed back at shutdown (interrupted or aborted).
    pub handed_back: u64,
}

/// A worker process: many concurrent stints fed from a store.
pub struct Worker {
    shared: Arc<Shared>,
}

impl Worker {
    /// A builder for a worker on `store`, with the default `WorkerConfig`
    /// and no job kinds registered yet.
    pub fn builder(store: Arc<dyn Store>) -> WorkerBuilder {
        WorkerBuilder {
            store,
            registry: Registry::new(),
            config: WorkerConfig::default(),
        }
    }

    /// A handle to stop or quiet this worker from another task once it
    /// runs; take it before calling `run`, which consumes the worker.
    pub fn handle(&self) -> WorkerHandle {
        WorkerHandle {
            shared: self.shared.clone(),
        }
    }

    /// Runs until SIGTERM or SIGINT (when signals are handled) or until
    /// `WorkerHandle::shutdown`, then stops gracefully.
    pub async fn run(self) -> Result<RunSummary, StoreError> {
        self.run_until(std::future::pending()).await
    }

    /// Runs until `stop` completes (or a signal or `shutdown` arrives), then
    /// stops gracefully: no new jobs, every running job asked to stop at its
    /// next checkpoint, up to `shutdown_timeout`, then the rest aborted and
    /// handed back with their last saved checkpoint.
    pub async fn run_until<F>(self, stop: F) -> Result<RunSummary, StoreError>
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let shared = self.shared;
        let cfg = &shared.config;
        shared
            .store
            .register(&shared.process, cfg.lease_ttl)
            .await?;
        tracing::info!(process = %shared.process.id, store = shared.store.kind(),
            concurrency = cfg.concurrency, queues = ?cfg.queues.names(), "worker started");

        *shared.renewed.lock().unwrap() = std::time::Instant::now();
        {
            let s = shared.clone();
            tokio::spawn(async move {
                tokio::select! {
                    _ = stop => s.stop.cancel(),
                    _ = s.stop.cancelled() => {}
                }
                // The first store call of the stop: the process is marked
                // stopping, so that if whoever stopped it kills it before it
                // is done (SIGKILL after a deploy's grace period) its jobs'
                // recoveries do not count towards the poison pill.
                {
                    let s = s.clone();
                    tokio::spawn(async move {
                        match s.bounded(s.store.mark_stopping(&s.process.id)).await {
                            Some(Ok(())) => {
                                tracing::debug!(process = %s.process.id, "marked stopping")
                            }
                            Some(Err(e)) => {
                                tracing::warn!(error = %e, "could not mark this process stopping")
                            }
                            None => {}
                        }
                    });
                }
                // The shutdown budget: whatever the store does, the worker
                // exits within the shutdown timeout and a little more.
                let budget = s.config.shutdown_timeout + FINAL_WRITES_GRACE;
                tokio::select! {
                    _ = tokio::time::sleep(budget) => {
                        if !s.exit.is_cancelled() {
                            tracing::warn!(budget_s = budget.as_secs_f64(),
                                "shutdown budget spent; exiting without waiting for the store any longer: \
                                 jobs not handed back are recovered when their leases expire");
                            s.exit.cancel();
                        }
                    }
                    _ = s.exit.cancelled() => {}
                }
            });
        }
        if cfg.handle_signals {
            signals::install(shared.clone())?;
        }

        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let completer = tokio::spawn(completer::run(shared.clone(), done_rx));
        let upkeep = upkeep::spawn(shared.clone());
        let scheduler = periodic::spawn(shared.clone());

        // The fetcher runs on the runtime's worker threads, beside the
        // stints it starts (not on a thread blocked on `run`, which would
        // hand every wake-up across threads).
        let fetcher = tokio::spawn(fetcher::run(shared.clone(), done_tx));
        if let Err(e) = fetcher.await {
            tracing::error!(error = %e, "the fetcher task failed");
        }

        // Every stint has ended and sent its completion; the completer
        // drains the channel and ends.
        let (stints, handed_back) = completer.await.unwrap_or_default();
        upkeep.stop().await;
        if let Some(s) = scheduler {
            s.abort();
        }
        match shared
            .bounded(shared.store.deregister(&shared.process.id))
            .await
        {
            Some(Ok(())) => {}
            Some(Err(e)) => {
                tracing::warn!(error = %e, "could not deregister this process; its record expires on its own")
            }
            None => {
                tracing::warn!("gave up deregistering this process; its record expires on its own")
            }
        }
        // Stopped: the shutdown budget's timer has nothing left to bound.
        shared.exit.cancel();
        tracing::info!(process = %shared.process.id, stints, handed_back, "worker stopped");
        Ok(RunSummary {
            stints,
            handed_back,
        })
    }
}
