//! The fetcher: leases jobs from the store while slots are free and starts
//! their stints, until the worker stops; then hands back what it holds and
//! waits for running stints to stop, aborting them after the shutdown
//! timeout.
//!
//! A fetch costs a round trip whatever its size, and short jobs finish
//! faster than a round trip. So while stints are ending quickly, the
//! fetcher keeps a small buffer of leased jobs ahead of the slots (up to
//! `WorkerConfig::prefetch`, about as many as the slots finish within
//! `PREFETCH_HORIZON`), and the next fetch runs while the last batch does.
//! When stints are long, or every slot is held by one, the buffer is empty:
//! a job waits in the queue, where any process can take it, not behind this
//! process's busy slots. A buffered job that has not started within
//! `PREFETCH_HOLD` is handed back to the head of its queue.
//!
//! Jobs with a concurrency limit are buffered as deep as their keys allow:
//! a buffered job holds its key's slot, and a process that buffered deeply
//! would have the store park the jobs behind it, each a write to park and
//! another to unpark, and keep other processes from the key. So after a
//! fetch that brought such jobs, the buffer is `LIMITED_PREFETCH_PER_SLOT`
//! per slot, or deeper as far as `holds` allows: no more than the slots of
//! the keys held that this process does not hold, scaled by the share of
//! those keys not held to their limit. When a limited job's end is
//! recorded the fetcher fetches at once, without waiting out its idle poll:
//! the store may have unparked a job of the key.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::error::{Interrupt, StoreError};
use crate::interrupt::StopSignal;
use crate::store::Leased;

use super::completer::Done;
use super::{executor, trouble, Shared};

/// Buffered jobs are about as many as the slots finish within this long.
const PREFETCH_HORIZON: Duration = Duration::from_millis(10);
/// The stint-end rate is measured over windows of this length.
const RATE_WINDOW: Duration = Duration::from_millis(20);
/// Jobs with a concurrency limit are buffered at least this many per slot
/// (when the pace asks for as many), more as the keys held allow.
const LIMITED_PREFETCH_PER_SLOT: usize = 4;
/// A buffered job not started within this long goes back to its queue.
const PREFETCH_HOLD: Duration = Duration::from_millis(250);

/// A leased job waiting for a slot.
struct Buffered {
    leased: Leased,
    signal: Arc<StopSignal>,
    backlog: OwnedSemaphorePermit,
    since: Instant,
}

/// How fast this process's stints end, measured over the last window.
struct Pace {
    window_start: Instant,
    ends_at_start: u64,
    /// Stint ends per second in the last full window.
    rate: f64,
}

impl Pace {
    fn new(shared: &Shared) -> Self {
        Pace {
            window_start: Instant::now(),
            ends_at_start: shared.ends.load(Ordering::Relaxed),
            rate: 0.0,
        }
    }

    /// Jobs worth buffering ahead of the slots now.
    fn target(&mut self, shared: &Shared) -> usize {
        let max = shared.config.prefetch;
        if max == 0 {
            return 0;
        }
        let elapsed = self.window_start.elapsed();
        if elapsed >= RATE_WINDOW {
            let ends = shared.ends.load(Ordering::Relaxed);
            self.rate = (ends - self.ends_at_start) as f64 / elapsed.as_secs_f64();
            self.window_start = Instant::now();
            self.ends_at_start = ends;
        }
        ((self.rate * PREFETCH_HORIZON.as_secs_f64()) as usize).min(max)
    }
}

type Fetch = BoxFuture<'static, Result<Vec<Leased>, StoreError>>;

struct Fetcher {
    shared: Arc<Shared>,
    done_tx: mpsc::UnboundedSender<Done>,
    slots: Arc<Semaphore>,
    /// Jobs leased whose stint end the store has not recorded yet: when the
    /// store falls behind, the worker stops taking jobs rather than pile up
    /// leases it has finished.
    unrecorded: Arc<Semaphore>,
    buffer: VecDeque<Buffered>,
    /// The last jobs fetched included jobs with a concurrency limit.
    limited: bool,
}

pub(crate) async fn run(shared: Arc<Shared>, done_tx: mpsc::UnboundedSender<Done>) {
    let cfg = &shared.config;
    let mut f = Fetcher {
        slots: Arc::new(Semaphore::new(cfg.concurrency)),
        unrecorded: Arc::new(Semaphore::new((cfg.concurrency * 4).max(64) + cfg.prefetch)),
        buffer: VecDeque::new(),
        limited: false,
        done_tx,
        shared: shared.clone(),
    };
    let mut pace = Pace::new(&shared);
    let mut trouble = trouble::Trouble::new("fetch");
    let mut backoff = Duration::from_millis(100);
    let mut in_flight: Option<Fetch> = None;
    // No fetch before this (poll interval after an empty fetch, backoff
    // after a failed one).
    let mut not_before = Instant::now();
    // When few slots are free, the fetch waits until this for more.
    let mut coalesce_until: Option<Instant> = None;

    loop {
        f.start_buffered();
        f.hand_back_stale();
        if shared.stop.is_cancelled() {
            break;
        }
        let mut wake_at = f.buffer.front().map(|b| b.since + PREFETCH_HOLD);
        // While fenced (the leases could not be renewed), nothing is
        // fetched until a heartbeat gets through again.
        if in_flight.is_none()
            && !shared.quiet.load(Ordering::SeqCst)
            && !shared.fenced.load(Ordering::SeqCst)
        {
            let now = Instant::now();
            if shared.limit_freed.swap(false, Ordering::SeqCst) {
                not_before = not_before.min(now);
            }
            let mut target = pace.target(&shared);
            if f.limited {
                target = target.min(cfg.concurrency * LIMITED_PREFETCH_PER_SLOT).max(
                    shared.holds.allow(
                        target,
                        f.buffer.len(),
                        shared.peers.load(Ordering::Relaxed),
                    ),
                );
            }
            let want = (f.slots.available_permits() + target)
                .saturating_sub(f.buffer.len())
                .min(f.unrecorded.available_permits());
            if now < not_before {
                wake_at = earliest(wake_at, not_before);
            } else if want > 0 {
                // A fetch costs a round trip whatever its size: when only a
                // few would be taken, give more slots a moment to free up.
                // While stints end quickly, the next fetch starts early (when
                // an eighth of slots and buffer can be refilled), so that one
                // is always under way.
                let enough = if target > 0 {
                    (cfg.concurrency + target).div_ceil(8)
                } else {
                    cfg.concurrency.div_ceil(2)
                };
                let until = *coalesce_until.get_or_insert(now + cfg.fetch_coalesce);
                if want >= enough || now >= until {
                    coalesce_until = None;
                    let store = shared.store.clone();
                    let process = shared.process.id.clone();
                    let queues = cfg.queues.for_fetch();
                    in_flight = Some(Box::pin(async move {
                        store.fetch(&process, &queues, want).await
                    }));
                } else {
                    wake_at = earliest(wake_at, until);
                }
            }
        }
        let fetched = tokio::select! {
            fetched = fetch_result(&mut in_flight) => Some(fetched),
            _ = shared.wake.notified() => None,
            _ = shared.stop.cancelled() => None,
            _ = sleep_until(wake_at) => None,
        };
        if let Some(fetched) = fetched {
            in_flight = None;
            match trouble.result(fetched) {
                Some(jobs) => {
                    backoff = Duration::from_millis(100);
                    if jobs.is_empty() && !shared.store.fetch_waits_for_jobs() {
                        not_before = Instant::now() + cfg.poll_interval;
                    }
                    f.take(jobs);
                }
                None => {
                    // Running jobs go on; fetching retries with backoff.
                    not_before = Instant::now() + backoff;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    // Stopping: a fetch under way is waited for (its jobs are leased), and
    // every job not started is handed back at once. (If the worker gives up
    // on the store first, what that fetch leased is recovered by lease
    // expiry.)
    if let Some(fetch) = in_flight {
        if let Some(jobs) = shared.bounded(fetch).await.and_then(|r| trouble.result(r)) {
            f.take(jobs);
        }
    }
    let left: Vec<Buffered> = f.buffer.drain(..).collect();
    f.hand_back_all(
        left,
        "handed back before it started: the worker is stopping",
    );
    f.stop_running().await;
}

/// The key and concurrency of a job's concurrency limit, if it has one.
fn concurrency_limit(job: &crate::model::JobRecord) -> Option<(&str, u32)> {
    let l = job.options.limit.as_ref()?;
    Some((l.key.as_str(), l.concurrency?))
}

/// The key whose slot a job holds, if it has a concurrency limit.
fn limit_key(job: &crate::model::JobRecord) -> Option<String> {
    concurrency_limit(job).map(|(k, _)| k.to_owned())
}

fn earliest(a: Option<Instant>, b: Instant) -> Option<Instant> {
    Some(a.map_or(b, |a| a.min(b)))
}

/// The result of the fetch in flight; never ready when there is none.
async fn fetch_result(in_flight: &mut Option<Fetch>) -> Result<Vec<Leased>, StoreError> {
    match in_flight {
        Some(fetch) => fetch.await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl Fetcher {
    /// Puts freshly leased jobs in the buffer; the operator's commands reach
    /// them from now on.
    fn take(&mut self, jobs: Vec<Leased>) {
        let now = Instant::now();
        if !jobs.is_empty() {
            self.limited = jobs.iter().any(|l| concurrency_limit(&l.job).is_some());
        }
        for leased in jobs {
            if let Some((key, n)) = concurrency_limit(&leased.job) {
                self.shared.holds.take(key, n);
            }
            let backlog = self
                .unrecorded
                .clone()
                .try_acquire_owned()
                .expect("room in the backlog: a fetch takes no more");
            let signal = Arc::new(StopSignal::new());
            self.shared
                .running
                .lock()
                .unwrap()
                .insert(leased.job.jid.clone(), signal.clone());
            self.buffer.push_back(Buffered {
                leased,
                signal,
                backlog,
                since: now,
            });
        }
    }

    /// Starts buffered jobs, oldest first, in the free slots.
    fn start_buffered(&mut self) {
        while !self.buffer.is_empty() {
            let Ok(slot) = self.slots.clone().try_acquire_owned() else {
                return;
            };
            let b = self.buffer.pop_front().expect("not empty");
            let limit_key = limit_key(&b.leased.job);
            let shared = self.shared.clone();
            let tx = self.done_tx.clone();
            shared.busy.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let jid = b.leased.job.jid.clone();
                let completion = executor::run_stint(shared.clone(), b.leased, b.signal).await;
                shared.running.lock().unwrap().remove(&jid);
                shared.busy.fetch_sub(1, Ordering::SeqCst);
                shared.ends.fetch_add(1, Ordering::Relaxed);
                let _ = tx.send(Done {
                    jid,
                    completion,
                    backlog: b.backlog,
                    limit_key,
                });
                drop(slot);
                shared.wake.notify_one();
            });
        }
    }

    /// Hands back buffered jobs that waited too long for a slot: another
    /// process may be free to run them.
    fn hand_back_stale(&mut self) {
        let stale = self
            .buffer
            .iter()
            .take_while(|b| b.since.elapsed() >= PREFETCH_HOLD)
            .count();
        let stale: Vec<Buffered> = self.buffer.drain(..stale).collect();
        self.hand_back_all(
            stale,
            "handed back before it started: every slot stayed busy",
        );
    }

    /// Hands back jobs taken from the head of their queues, the newest
    /// first, so that the oldest is at the head again.
    fn hand_back_all(&self, jobs: Vec<Buffered>, reason: &str) {
        for b in jobs.into_iter().rev() {
            self.hand_back(b, reason);
        }
    }

    /// Ends a buffered job's stint without running it: back to the head of
    /// its queue with its checkpoint, or paused/cancelled when an operator
    /// asked for that meanwhile.
    fn hand_back(&self, b: Buffered, reason: &str) {
        let jid = b.leased.job.jid.clone();
        self.shared.running.lock().unwrap().remove(&jid);
        tracing::debug!(%jid, reason, "buffered job handed back");
        let limit_key = limit_key(&b.leased.job);
        let _ = self.done_tx.send(Done {
            jid,
            completion: executor::unstarted(b.leased.lease, &b.signal, reason),
            backlog: b.backlog,
            limit_key,
        });
    }

    /// Asks every running stint to stop at its next checkpoint and waits
    /// for them, aborting what still runs after the shutdown timeout.
    async fn stop_running(self) {
        let cfg = &self.shared.config;
        let running: Vec<Arc<StopSignal>> = self
            .shared
            .running
            .lock()
            .unwrap()
            .values()
            .cloned()
            .collect();
        if !running.is_empty() {
            tracing::info!(
                running = running.len(),
                timeout_s = cfg.shutdown_timeout.as_secs_f64(),
                "stopping: asking running jobs to checkpoint and stop"
            );
        }
        for s in running {
            s.raise(Interrupt::Shutdown);
        }
        drop(self.done_tx);
        let all = cfg.concurrency as u32;
        let timed_out = tokio::select! {
            waited = tokio::time::timeout(cfg.shutdown_timeout, self.slots.acquire_many(all)) => waited.is_err(),
            // A second signal: abort at once.
            _ = self.shared.abort.cancelled() => true,
        };
        if timed_out {
            tracing::warn!(
                "aborting the jobs still running (shutdown timeout passed, or a second signal)"
            );
            self.shared.abort.cancel();
            // An aborted stint ends at its next await; one that never awaits
            // is left behind when the worker gives up.
            let _ = self.shared.bounded(self.slots.acquire_many(all)).await;
        }
    }
}
