//! Background duties of a live worker: heartbeats that keep its leases
//! (and bring an operator's quiet or stop for the process), operator
//! commands for its running jobs, due jobs promoted, and the jobs
//! of dead processes recovered.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::error::Interrupt;
use crate::model::{Control, ProcessCommand};

use super::trouble::Trouble;
use super::Shared;

pub(crate) struct Upkeep {
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Upkeep {
    /// Stops the tasks at once, dropping a store call under way (the worker
    /// is exiting: nothing it would write matters any more).
    pub(crate) async fn stop(self) {
        self.stop.cancel();
        for t in self.tasks {
            t.abort();
            let _ = t.await;
        }
    }
}

/// Running stints are stopped (at their next checkpoint) when no heartbeat
/// has reached the store for this fraction of the lease TTL...
const FENCE_AT: f64 = 0.7;
/// ... and ended at once at this fraction, before the store can consider
/// their leases expired and let another process run the jobs.
const KILL_AT: f64 = 0.85;

/// Whether this process's leases may be about to expire: no heartbeat has
/// reached the store for `KILL_AT` of the lease TTL (on the monotonic clock,
/// which runs on while the process is stopped). A stint's code is never run
/// past that moment (see `executor`), even before `lease_watch` gets to it:
/// in a process resumed after a pause (SIGSTOP, a frozen VM) every timer
/// fires at once, and the job's own may come first.
pub(crate) fn leases_overdue(shared: &Shared) -> bool {
    shared.renewed.lock().unwrap().elapsed() >= shared.config.lease_ttl.mul_f64(KILL_AT)
}

pub(crate) fn spawn(shared: Arc<Shared>) -> Upkeep {
    let stop = CancellationToken::new();
    let tasks = vec![
        tokio::spawn(heartbeat(shared.clone(), stop.clone())),
        tokio::spawn(controls(shared.clone(), stop.clone())),
        tokio::spawn(maintenance(shared.clone(), stop.clone())),
        tokio::spawn(lease_watch(shared, stop.clone())),
    ];
    Upkeep { stop, tasks }
}

/// Ticks every `every` until stopped.
struct Ticker {
    interval: tokio::time::Interval,
    stop: CancellationToken,
}

impl Ticker {
    fn new(every: Duration, stop: CancellationToken) -> Self {
        let mut interval = tokio::time::interval(every);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Ticker { interval, stop }
    }

    /// Waits for the next tick; false once stopped.
    async fn tick(&mut self) -> bool {
        tokio::select! {
            _ = self.interval.tick() => true,
            _ = self.stop.cancelled() => false,
        }
    }
}

async fn heartbeat(shared: Arc<Shared>, stop: CancellationToken) {
    let mut trouble = Trouble::new("heartbeat");
    let mut commands = Trouble::new("process commands");
    let mut ticker = Ticker::new(shared.config.heartbeat_interval, stop);
    while ticker.tick().await {
        // An operator's quiet or stop (the dashboard) first, so that this
        // beat already reports the quiet.
        let command = shared.store.process_command(&shared.process.id).await;
        if let Some(Some(command)) = commands.result(command) {
            obey(&shared, command);
        }
        let busy = shared.busy.load(Ordering::SeqCst);
        let quiet = shared.quiet.load(Ordering::SeqCst) || shared.stop.is_cancelled();
        // The leases are renewed from some moment after this one.
        let sent = Instant::now();
        let beat = shared
            .store
            .heartbeat(&shared.process.id, busy, quiet, shared.config.lease_ttl)
            .await;
        let renewed = match trouble.result(beat) {
            Some(true) => true,
            Some(false) => {
                tracing::warn!(process = %shared.process.id,
                    "the store had expired this process (missed heartbeats); registering again; \
                     jobs recovered meanwhile refuse the writes of stints still running here");
                // Their leases are gone (their jobs recovered, or about to
                // be): the stints still here stop at once, before the new
                // registration lets anything run again.
                for s in shared.running.lock().unwrap().values() {
                    s.kill();
                }
                shared
                    .store
                    .register(&shared.process, shared.config.lease_ttl)
                    .await
                    .is_ok()
            }
            None => false,
        };
        // Fetching resumes only on a beat that renewed the leases with time
        // to spare (a beat that took most of the lease to answer does not).
        let fresh = sent.elapsed() < shared.config.lease_ttl.mul_f64(FENCE_AT);
        if renewed {
            *shared.renewed.lock().unwrap() = sent;
        }
        if renewed && fresh && shared.fenced.swap(false, Ordering::SeqCst) {
            tracing::info!(process = %shared.process.id,
                "heartbeat through again: fetching jobs again");
            shared.wake.notify_one();
        }
    }
}

/// Stops this process's stints before their leases can expire when no
/// heartbeat gets through: at `FENCE_AT` of the lease TTL after the last
/// renewal each stops at its next checkpoint, writing nothing, and nothing
/// new is fetched or started; at `KILL_AT` what still runs is dropped. So a
/// job never runs here and in the process that recovers it at once. The
/// heartbeat lifts the fence when it gets through.
async fn lease_watch(shared: Arc<Shared>, stop: CancellationToken) {
    let ttl = shared.config.lease_ttl;
    let every = (ttl / 40).clamp(Duration::from_millis(10), Duration::from_millis(250));
    let mut ticker = Ticker::new(every, stop);
    while ticker.tick().await {
        let since = shared.renewed.lock().unwrap().elapsed();
        if since < ttl.mul_f64(FENCE_AT) {
            continue;
        }
        let kill = since >= ttl.mul_f64(KILL_AT);
        if !shared.fenced.swap(true, Ordering::SeqCst) {
            tracing::warn!(process = %shared.process.id, since_ms = since.as_millis() as u64,
                lease_ttl_ms = ttl.as_millis() as u64,
                "no heartbeat has reached the store lately: stopping running jobs before their \
                 leases expire (they go back to their queues); fetching again once the store answers");
        }
        let running: Vec<_> = shared.running.lock().unwrap().values().cloned().collect();
        for s in running {
            if kill {
                s.kill();
            } else if !s.fenced() {
                s.fence();
            }
        }
    }
}

/// Acts on an operator's command to this process, once.
fn obey(shared: &Shared, command: ProcessCommand) {
    match command {
        ProcessCommand::Quiet => {
            if !shared.quiet.swap(true, Ordering::SeqCst) {
                tracing::info!(process = %shared.process.id,
                    "quieted by an operator: taking no new jobs, running ones go on");
                shared.wake.notify_one();
            }
        }
        ProcessCommand::Stop => {
            if !shared.stop.is_cancelled() {
                tracing::info!(process = %shared.process.id,
                    "stopped by an operator: running jobs checkpoint and are handed back");
                shared.stop.cancel();
            }
        }
    }
}

async fn controls(shared: Arc<Shared>, stop: CancellationToken) {
    let mut trouble = Trouble::new("operator commands");
    let mut ticker = Ticker::new(shared.config.control_interval, stop);
    while ticker.tick().await {
        if shared.running.lock().unwrap().is_empty() {
            continue;
        }
        let r = shared.store.controls(&shared.process.id).await;
        for (jid, control) in trouble.result(r).unwrap_or_default() {
            let why = match control {
                Control::Pause => Interrupt::Pause,
                Control::Cancel => Interrupt::Cancel,
            };
            shared.signal_running(&jid, why);
        }
    }
}

async fn maintenance(shared: Arc<Shared>, stop: CancellationToken) {
    let mut trouble = Trouble::new("maintenance");
    let mut last_pid_check: Option<Instant> = None;
    let mut ticker = Ticker::new(shared.config.maintenance_interval, stop);
    while ticker.tick().await {
        if last_pid_check.is_none_or(|t| t.elapsed() >= Duration::from_secs(5)) {
            last_pid_check = Some(Instant::now());
            look_at_processes(&shared).await;
        }
        if let Some(n) = trouble.result(shared.store.promote_due().await) {
            if n > 0 {
                tracing::debug!(jobs = n, "promoted due jobs");
            }
        }
        let recovered = shared
            .store
            .recover_orphans(shared.config.max_recoveries)
            .await;
        for r in trouble.result(recovered).unwrap_or_default() {
            tracing::warn!(jid = %r.jid, kind = %r.kind, dead_process = %r.process,
                recoveries = r.recoveries, state = %r.state,
                "recovered a job from a process that died");
        }
    }
}

/// Counts the live processes that take jobs from a queue of this one
/// (`Shared::peers`); and, with `reap_local_processes`, expires those on
/// this host whose pid no longer exists: they are dead for sure, and their
/// jobs need not wait for their leases to expire.
async fn look_at_processes(shared: &Shared) {
    let Ok(processes) = shared.store.processes().await else {
        return;
    };
    let mine = &shared.process.queues;
    let peers = processes
        .iter()
        .filter(|p| p.id == shared.process.id || p.queues.iter().any(|q| mine.contains(q)))
        .count();
    shared.peers.store(peers.max(1), Ordering::Relaxed);
    if !shared.config.reap_local_processes {
        return;
    }
    for p in processes {
        if p.hostname != shared.process.hostname || p.id == shared.process.id {
            continue;
        }
        if !pid_alive(p.pid) {
            tracing::info!(process = %p.id, pid = p.pid, "process is gone from this host; recovering its jobs now");
            let _ = shared.store.expire_process(&p.id).await;
        }
    }
}

fn pid_alive(pid: u32) -> bool {
    // kill(pid, 0) checks existence without sending anything. EPERM means it
    // exists under another user.
    let r = unsafe { libc::kill(pid as libc::pid_t, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}
