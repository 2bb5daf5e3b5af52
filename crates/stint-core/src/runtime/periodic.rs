//! The scheduler of periodic jobs (`WorkerBuilder::periodic`): sleeps until
//! the next tick of any schedule, then pushes that tick with
//! `Store::push_tick`, which enqueues it once however many processes push
//! it. Every process computes the same tick instants from the schedules,
//! so there is no leader: a process whose clock is behind finds its ticks
//! done.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::model::now_ms;
use crate::periodic::{Missed, Periodic, Schedule, TickOutcome};

use super::Shared;

/// After a failed push, how long before the scheduler tries again.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// A scheduler that wakes late (a loaded host) pushes the ticks it slept
/// through in order, up to this many; when more are due (a suspended
/// host), only the latest.
const CATCH_UP: usize = 10;

/// Starts the scheduler when the worker has schedules; it ends when the
/// worker stops.
pub(crate) fn spawn(shared: Arc<Shared>) -> Option<JoinHandle<()>> {
    let schedules: Vec<Periodic> = shared
        .config
        .periodic
        .iter()
        .filter(|p| {
            let ok = p.kind().is_some();
            if !ok {
                tracing::error!(
                    schedule = p.name(),
                    "periodic job without a job (.job(&value)): not scheduled"
                );
            }
            ok
        })
        .cloned()
        .collect();
    if schedules.is_empty() {
        return None;
    }
    Some(tokio::spawn(run(shared, schedules)))
}

async fn run(shared: Arc<Shared>, schedules: Vec<Periodic>) {
    let store = shared.store.clone();
    let now = now_ms();
    let defs: Vec<_> = schedules.iter().map(|p| p.def(now)).collect();
    if let Err(e) = store.register_schedules(&defs).await {
        tracing::warn!(error = %e, "could not register the periodic schedules (listed once a tick gets through)");
    }
    // The next tick of each schedule, in ms since the epoch.
    let mut next: Vec<Option<i64>> = schedules
        .iter()
        .map(|p| p.schedule().next_after(now))
        .collect();
    for (i, p) in schedules.iter().enumerate() {
        if p.missed_policy() == Missed::RunOnce {
            if let Some(latest) = p.schedule().latest_at_or_before(now) {
                if missed(&shared, p, latest).await {
                    push(&shared, p, latest).await;
                }
            }
            next[i] = p.schedule().next_after(now);
        }
    }
    tracing::info!(schedules = ?schedules.iter().map(|p| p.name()).collect::<Vec<_>>(), "periodic jobs scheduled");
    // When to push each schedule's next tick: the tick itself, or later
    // after a failed push.
    let mut wake = next.clone();
    loop {
        let Some(due) = wake.iter().flatten().min().copied() else {
            return; // no schedule ticks again
        };
        let wait = Duration::from_millis((due - now_ms()).max(0) as u64);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shared.stop.cancelled() => return,
        }
        let now = now_ms();
        if now < due {
            continue; // woke early (the clock moved back)
        }
        for (i, p) in schedules.iter().enumerate() {
            if wake[i].is_none_or(|t| t > now) {
                continue;
            }
            let due = due_ticks(p.schedule(), next[i], now);
            for tick in due {
                if push(&shared, p, tick).await {
                    next[i] = p.schedule().next_after(tick);
                    wake[i] = next[i];
                } else {
                    // The same tick again later (it is still not done).
                    next[i] = Some(tick);
                    wake[i] = Some(now + RETRY_AFTER.as_millis() as i64);
                    break;
                }
            }
        }
    }
}

/// The ticks to push at `now`, from `next` on: in order (a process
/// pushing a later tick first would make the earlier ones done), or only
/// the latest when more than `CATCH_UP` are due (after a long sleep).
fn due_ticks(schedule: &Schedule, next: Option<i64>, now: i64) -> Vec<i64> {
    let mut due = Vec::new();
    let mut t = next;
    while let Some(tick) = t.filter(|t| *t <= now) {
        if due.len() == CATCH_UP {
            return schedule.latest_at_or_before(now).into_iter().collect();
        }
        due.push(tick);
        t = schedule.next_after(tick);
    }
    due
}

/// True when the schedule has a recorded tick older than `latest` (a
/// schedule never ticked before has missed nothing).
async fn missed(shared: &Shared, p: &Periodic, latest: i64) -> bool {
    match shared.store.schedules().await {
        Ok(all) => all
            .iter()
            .find(|s| s.name == p.name())
            .and_then(|s| s.last_tick_ms)
            .is_some_and(|last| last < latest),
        Err(e) => {
            tracing::warn!(schedule = p.name(), error = %e, "could not read the schedule's last tick: missed ticks not run");
            false
        }
    }
}

/// Pushes one tick; false when the store could not be reached.
async fn push(shared: &Shared, p: &Periodic, tick_ms: i64) -> bool {
    let push = match p.tick(tick_ms) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(schedule = p.name(), error = %e, "periodic job not pushed");
            return true;
        }
    };
    match shared.store.push_tick(&push).await {
        Ok(TickOutcome::Enqueued(jid)) => {
            tracing::info!(schedule = p.name(), tick_ms, %jid, "periodic job enqueued");
            true
        }
        Ok(TickOutcome::Skipped { unfinished }) => {
            tracing::info!(schedule = p.name(), tick_ms, %unfinished,
                "periodic tick skipped: the previous run has not finished");
            true
        }
        Ok(TickOutcome::AlreadyDone { .. }) => {
            tracing::debug!(schedule = p.name(), tick_ms, "periodic tick already pushed");
            true
        }
        Err(e) => {
            tracing::warn!(schedule = p.name(), tick_ms, error = %e, "could not push a periodic tick; trying again");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_late_wake_up_pushes_the_ticks_it_slept_through_in_order() {
        let s = Schedule::Every(Duration::from_secs(1));
        assert_eq!(due_ticks(&s, Some(5_000), 4_999), Vec::<i64>::new());
        assert_eq!(due_ticks(&s, Some(5_000), 5_000), [5_000]);
        assert_eq!(due_ticks(&s, Some(5_000), 7_500), [5_000, 6_000, 7_000]);
        // More than CATCH_UP due: only the latest.
        assert_eq!(due_ticks(&s, Some(5_000), 60_500), [60_000]);
        assert_eq!(due_ticks(&s, None, 60_500), Vec::<i64>::new());
    }
}
