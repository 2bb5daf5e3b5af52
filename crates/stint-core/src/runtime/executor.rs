//! Runs one leased job for one stint and says how the stint ended.

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt as _;

use crate::ctx::Ctx;
use crate::error::{Interrupt, JobError};
use crate::interrupt::StopSignal;
use crate::lifecycle;
use crate::model::{now_ms, ErrorInfo, JobRecord};
use crate::store::{Completion, Lease, Leased, Outcome};

use super::Shared;

/// Runs the stint and returns the completion to record. Never panics: a
/// panicking job is a failed stint.
///
/// The stint runs in a `stint` span (jid, kind, queue, attempt, stint
/// number): the runtime's events and the job's own carry them, and a
/// tracing-opentelemetry layer exports one span per stint.
pub(crate) async fn run_stint(
    shared: Arc<Shared>,
    leased: Leased,
    signal: Arc<StopSignal>,
) -> Option<Completion> {
    let span = tracing::info_span!(
        "stint",
        jid = %leased.job.jid,
        kind = %leased.job.kind,
        queue = %leased.job.queue,
        attempt = leased.job.attempts + 1,
        stint = leased.lease.stint,
        traceparent = tracing::field::Empty,
    );
    // The pusher's trace (crate::trace): the stint's span is its child.
    if let Some(tp) = &leased.job.traceparent {
        crate::trace::adopt(&span, tp);
    }
    tracing::Instrument::instrument(run_stint_in_span(shared, leased, signal), span).await
}

async fn run_stint_in_span(
    shared: Arc<Shared>,
    leased: Leased,
    signal: Arc<StopSignal>,
) -> Option<Completion> {
    let Leased { job, lease } = leased;
    let Some(handler) = shared.registry.get(&job.kind) else {
        let known = shared.registry.kinds().join(", ");
        let msg = format!(
            "no handler for kind {:?} on this worker (it knows: {known}); \
             register the kind with the worker, or push it to a queue whose workers know it",
            job.kind
        );
        tracing::warn!(jid = %job.jid, kind = %job.kind, "{msg}");
        return Some(failure(&job, lease, JobError::msg(msg)));
    };

    // Asked to stop while it waited for a slot (a prefetched job): it ends
    // before it starts.
    if let Some(why) = signal.get() {
        return unstarted(lease, &signal, &format!("{why} before it started"));
    }

    let ctx = Ctx::new(
        &job,
        lease.clone(),
        shared.store.clone(),
        signal.clone(),
        shared.config.flush_interval,
    );
    let fut = match handler(job.args.clone(), ctx) {
        Ok(fut) => fut,
        Err(e) => {
            let msg = format!(
                "job {} ({}): arguments {} do not deserialize for this kind: {e}; \
                 not retried: fix the payload and push it again",
                job.jid,
                job.kind,
                truncate(&job.args.to_string(), 500)
            );
            tracing::error!(jid = %job.jid, kind = %job.kind, "{msg}");
            return Some(failure(&job, lease, JobError::fatal(msg)));
        }
    };

    tracing::info!(jid = %job.jid, kind = %job.kind, stint = lease.stint, queue = %job.queue, "start");
    let started = std::time::Instant::now();

    // The stint's time limit raises MaxStintTime, like any other stop.
    let limit = job.options.max_stint_ms.map(Duration::from_millis);
    let limit_task = limit.map(|limit| {
        let signal = signal.clone();
        tokio::spawn(async move {
            tokio::time::sleep(limit).await;
            signal.raise(Interrupt::MaxStintTime);
        })
    });

    // The stint runs in this task; a panic is caught as a failed stint, and
    // an abort (shutdown timeout) drops it.
    // So does a kill: its lease may expire before it reaches a checkpoint.
    // The job's code is not polled once its lease may have expired
    // (`upkeep::leases_overdue`): a process resumed after a pause longer than
    // the lease must not take one more step of a stint that another process
    // may have recovered, whichever of its tasks runs first.
    let mut run = std::pin::pin!(std::panic::AssertUnwindSafe(fut).catch_unwind());
    let guarded = std::future::poll_fn(|cx| {
        if super::upkeep::leases_overdue(&shared) {
            signal.kill();
        }
        if signal.is_killed() {
            return std::task::Poll::Pending;
        }
        std::future::Future::poll(run.as_mut(), cx)
    });
    let joined = tokio::select! {
        joined = guarded => Some(joined),
        _ = shared.abort.cancelled() => None,
        _ = signal.killed() => None,
    };
    if let Some(t) = limit_task {
        t.abort();
    }
    let elapsed = started.elapsed();

    if signal.fenced() && !matches!(joined, Some(Ok((_, Ok(()))))) {
        // Stopped by this process before its lease could expire: the job
        // goes back to its queue with its last saved checkpoint, a write
        // fenced by the lease (refused if the job was recovered meanwhile).
        // Info, not a warning: the process said once, as a warning, that it
        // stops its jobs for this reason (upkeep); one line per job would
        // repeat it as many times as it runs jobs.
        tracing::info!(jid = %job.jid, kind = %job.kind, stint = lease.stint,
            "stopped: the store was unreachable for too long to renew this job's lease");
        return Some(fenced(lease));
    }
    let Some(joined) = joined else {
        tracing::warn!(jid = %job.jid, kind = %job.kind,
            "did not stop within the shutdown timeout; aborted and put back with its last saved checkpoint");
        return Some(Completion {
            lease,
            checkpoint: None,
            outcome: Outcome::Requeue {
                reason: "aborted: did not stop within the shutdown timeout".into(),
            },
        });
    };

    match joined {
        Ok((ctx, Ok(()))) => {
            tracing::info!(jid = %job.jid, kind = %job.kind, elapsed_ms = elapsed.as_millis() as u64, "done");
            Some(Completion {
                lease,
                checkpoint: ctx.final_checkpoint(true),
                outcome: Outcome::Succeeded {
                    result: ctx.result.clone(),
                },
            })
        }
        Ok((ctx, Err(JobError::Interrupted(reason)))) => {
            let reason = signal.get().unwrap_or(reason);
            let checkpoint = ctx.final_checkpoint(false);
            let done = ctx.progress().done;
            // Nothing to record when another process owns the job, or the
            // store parked it when it split.
            let outcome = lifecycle::interrupted(reason, reason.as_str())?;
            tracing::info!(jid = %job.jid, kind = %job.kind, done, %reason, "stopped at checkpoint");
            Some(Completion {
                lease,
                checkpoint,
                outcome,
            })
        }
        Ok((ctx, Err(JobError::Snooze(delay)))) => {
            // A pause or cancel asked for meanwhile wins (the store applies
            // the rule, `lifecycle::after_stint`).
            let run_at_ms = now_ms() + delay.as_millis() as i64;
            tracing::info!(jid = %job.jid, kind = %job.kind, delay_ms = delay.as_millis() as u64, "snoozed");
            Some(Completion {
                lease,
                checkpoint: ctx.final_checkpoint(false),
                outcome: Outcome::Snooze { run_at_ms },
            })
        }
        Ok((_ctx, Err(e))) => Some(failure(&job, lease, e)),
        Err(panic) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic payload".into());
            Some(failure(
                &job,
                lease,
                JobError::msg(format!("panicked: {msg}")),
            ))
        }
    }
}

/// The end of a stint that never started (a prefetched job): paused or
/// cancelled when an operator asked for it meanwhile, else back to the head
/// of its queue with its checkpoint, saying `reason`; nothing when its lease
/// was lost.
pub(crate) fn unstarted(lease: Lease, signal: &StopSignal, reason: &str) -> Option<Completion> {
    if signal.fenced() {
        return Some(fenced(lease));
    }
    let outcome = match signal.get() {
        Some(Interrupt::LeaseLost | Interrupt::Split) => return None,
        Some(Interrupt::Pause) => Outcome::Paused,
        Some(Interrupt::Cancel) => Outcome::Cancelled,
        _ => Outcome::Requeue {
            reason: reason.into(),
        },
    };
    Some(Completion {
        lease,
        checkpoint: None,
        outcome,
    })
}

/// The end of a stint the process stopped itself because it could not renew
/// its lease in time (`StopSignal::fence`).
fn fenced(lease: Lease) -> Completion {
    Completion {
        lease,
        checkpoint: None,
        outcome: Outcome::Requeue {
            reason: lifecycle::SELF_FENCED.into(),
        },
    }
}

/// The end of a failed stint: a retry while attempts are left, else dead.
fn failure(job: &JobRecord, lease: Lease, err: JobError) -> Completion {
    let attempt = job.attempts + 1;
    let (message, chain) = err.message_and_chain();
    let error = ErrorInfo::new(truncate(&message, 10_000), chain, attempt);
    let outcome = lifecycle::failure(job, &err, error, now_ms());
    match &outcome {
        Outcome::Retry { retry_at_ms, error } => {
            tracing::warn!(jid = %job.jid, kind = %job.kind, attempt, retry_in_ms = retry_at_ms - now_ms(),
                error = %error.message, "failed; will retry")
        }
        Outcome::Dead { reason, .. } => {
            tracing::error!(jid = %job.jid, kind = %job.kind, attempt, %reason, "failed: dead")
        }
        _ => {}
    }
    // The store keeps the checkpoint of the last flush: its count matches
    // its cursor.
    Completion {
        lease,
        checkpoint: None,
        outcome,
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}
