//! Periodic jobs: each tick of a schedule enqueued once however many
//! processes push it (`Store::push_tick`), the overlap policy, and the
//! listing of schedules with their last run and counters (docs/design.md,
//! "Periodic jobs").

use std::sync::Arc;

use serde_json::json;

use crate::model::{Jid, JobState};
use crate::periodic::{Overlap, ScheduleDef, TickOutcome, TickPush};
use crate::store::{Outcome, Store};
use crate::testing::*;

/// The push of `schedule`'s tick at `tick_ms`, a fresh job of kind "Tick"
/// in queue "cron" each time (as every process builds it).
fn tick(schedule: &str, tick_ms: i64, overlap: Overlap) -> TickPush {
    TickPush {
        schedule: schedule.to_owned(),
        spec: "every 1s".into(),
        tick_ms,
        next_run_ms: Some(tick_ms + 1000),
        overlap,
        job: new_job("Tick", json!({}), "cron"),
    }
}

async fn push_tick(store: &Arc<dyn Store>, t: &TickPush) -> TickOutcome {
    store.push_tick(t).await.expect("push_tick")
}

fn enqueued(outcome: &TickOutcome, what: &str) -> Jid {
    match outcome {
        TickOutcome::Enqueued(jid) => jid.clone(),
        other => panic!("{what} should be enqueued, got {other:?}"),
    }
}

async fn queued(store: &Arc<dyn Store>) -> usize {
    store
        .jobs(&JobFilter {
            queue: Some("cron".into()),
            ..JobFilter::default()
        })
        .await
        .expect("jobs")
        .len()
}

use crate::store::JobFilter;

/// The same tick pushed twice (each push with its own fresh jid, as two
/// processes build it) is enqueued once; the second push finds it done and
/// names its run. An older tick after a newer one is not pushed either.
pub async fn a_tick_is_enqueued_once(store: Arc<dyn Store>) {
    let first = push_tick(&store, &tick("every-second", 10_000, Overlap::Allow)).await;
    let jid = enqueued(&first, "the first push of a tick");
    assert_state(&store, &jid, JobState::Enqueued).await;
    let again = push_tick(&store, &tick("every-second", 10_000, Overlap::Allow)).await;
    assert_eq!(
        again,
        TickOutcome::AlreadyDone {
            jid: Some(jid.clone())
        },
        "a second push of the same tick"
    );
    let older = push_tick(&store, &tick("every-second", 9_000, Overlap::Allow)).await;
    assert!(
        matches!(older, TickOutcome::AlreadyDone { .. }),
        "a tick older than the last recorded one should not be pushed, got {older:?}"
    );
    assert_eq!(queued(&store).await, 1, "one job for the tick");
    // Another schedule's tick at the same instant is its own.
    let other = push_tick(&store, &tick("other", 10_000, Overlap::Allow)).await;
    enqueued(&other, "another schedule's tick at the same instant");
    let ticks = store.ticks("every-second", 0).await.expect("ticks");
    assert_eq!(ticks.len(), 1, "one recorded tick: {ticks:?}");
    assert_eq!((ticks[0].tick_ms, ticks[0].skipped), (10_000, false));
    assert_eq!(ticks[0].jid, jid);
}

/// Many tasks pushing the same ticks at once: each tick enqueued once.
pub async fn concurrent_pushes_of_a_tick_enqueue_it_once(store: Arc<dyn Store>) {
    for n in 0..5 {
        let tick_ms = 1_000_000 + n * 1000;
        let tasks: Vec<_> = (0..4)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move {
                    store
                        .push_tick(&tick("busy", tick_ms, Overlap::Allow))
                        .await
                        .expect("push_tick")
                })
            })
            .collect();
        let mut done = 0;
        let mut winners = Vec::new();
        for t in tasks {
            match t.await.expect("task") {
                TickOutcome::Enqueued(jid) => winners.push(jid),
                TickOutcome::AlreadyDone { .. } => done += 1,
                other => panic!("a concurrent push of a tick: {other:?}"),
            }
        }
        assert_eq!(
            (winners.len(), done),
            (1, 3),
            "tick {tick_ms}: one push enqueues it, three find it done"
        );
    }
    assert_eq!(queued(&store).await, 5, "one job per tick");
    let info = store.schedules().await.expect("schedules");
    assert_eq!(info.len(), 1);
    assert_eq!((info[0].enqueued, info[0].skipped), (5, 0));
}

/// With `Overlap::Skip`, a tick while the previous run is unfinished
/// (enqueued, then running) is recorded as skipped, naming that run; once
/// the run has finished, the next tick goes through.
pub async fn skip_while_the_previous_run_is_unfinished(store: Arc<dyn Store>) {
    let first = push_tick(&store, &tick("nightly", 1_000, Overlap::Skip)).await;
    let run = enqueued(&first, "the first tick");
    let skipped = push_tick(&store, &tick("nightly", 2_000, Overlap::Skip)).await;
    assert_eq!(
        skipped,
        TickOutcome::Skipped {
            unfinished: run.clone()
        },
        "a tick while the previous run is enqueued"
    );
    let p = register_for(&store, &["cron"], LONG_TTL).await;
    let leased = fetch_one(&store, &p, "cron").await;
    assert_eq!(leased.job.jid, run);
    let skipped = push_tick(&store, &tick("nightly", 3_000, Overlap::Skip)).await;
    assert!(
        matches!(skipped, TickOutcome::Skipped { .. }),
        "a tick while the previous run is running should be skipped, got {skipped:?}"
    );
    // The skipped tick is done: pushing it again writes nothing.
    let again = push_tick(&store, &tick("nightly", 3_000, Overlap::Skip)).await;
    assert_eq!(
        again,
        TickOutcome::AlreadyDone {
            jid: Some(run.clone())
        }
    );
    complete_ok(
        &store,
        &leased.lease,
        None,
        Outcome::Succeeded { result: None },
    )
    .await;
    let next = push_tick(&store, &tick("nightly", 4_000, Overlap::Skip)).await;
    let second = enqueued(&next, "a tick after the previous run finished");
    assert_ne!(second, run);
    assert_eq!(queued(&store).await, 2, "two runs in all");
    let ticks = store.ticks("nightly", 0).await.expect("ticks");
    let got: Vec<(i64, bool)> = ticks.iter().map(|t| (t.tick_ms, t.skipped)).collect();
    assert_eq!(
        got,
        vec![(4_000, false), (3_000, true), (2_000, true), (1_000, false)],
        "the ticks, newest first"
    );
    assert_eq!(store.ticks("nightly", 2).await.expect("ticks").len(), 2);
}

/// A previous run that ended dead or cancelled has finished too; a failed
/// run waiting to be retried has not.
pub async fn skip_counts_only_unfinished_runs(store: Arc<dyn Store>) {
    let p = register_for(&store, &["cron"], LONG_TTL).await;
    let run = enqueued(
        &push_tick(&store, &tick("s", 1_000, Overlap::Skip)).await,
        "the first tick",
    );
    let leased = fetch_one(&store, &p, "cron").await;
    complete_ok(
        &store,
        &leased.lease,
        None,
        Outcome::Retry {
            error: error_info("flaky", 1),
            retry_at_ms: crate::model::now_ms() + 3_600_000,
        },
    )
    .await;
    let t = push_tick(&store, &tick("s", 2_000, Overlap::Skip)).await;
    assert_eq!(
        t,
        TickOutcome::Skipped {
            unfinished: run.clone()
        },
        "a retrying run is unfinished"
    );
    store.cancel(&run).await.expect("cancel");
    let t = push_tick(&store, &tick("s", 3_000, Overlap::Skip)).await;
    enqueued(&t, "a tick after the previous run was cancelled");
}

/// With `Overlap::Allow`, every tick is enqueued whatever the previous run
/// is doing.
pub async fn allow_enqueues_while_the_previous_run_is_unfinished(store: Arc<dyn Store>) {
    let a = push_tick(&store, &tick("often", 1_000, Overlap::Allow)).await;
    let b = push_tick(&store, &tick("often", 2_000, Overlap::Allow)).await;
    let (a, b) = (
        enqueued(&a, "the first tick"),
        enqueued(&b, "the second tick"),
    );
    assert_ne!(a, b);
    assert_state(&store, &a, JobState::Enqueued).await;
    assert_eq!(queued(&store).await, 2);
}

/// A tick whose job has a unique key that another job holds stores
/// nothing: the holder is the tick's run (as any push of the key answers
/// the holder), recorded as such; once the holder is done, the next tick
/// is a run of its own, which holds the key.
pub async fn a_tick_whose_unique_key_is_held_is_the_holders_run(store: Arc<dyn Store>) {
    let unique = || crate::model::Unique::new("nightly-sync");
    let mut holder = new_job("Sync", json!({}), "cron");
    holder.options.unique = Some(unique());
    let holder = push_each(&store, vec![holder]).await.remove(0);
    let mut t = tick("sync", 1_000, Overlap::Allow);
    t.job.options.unique = Some(unique());
    let first = push_tick(&store, &t).await;
    assert_eq!(
        first,
        TickOutcome::Enqueued(holder.clone()),
        "the key's holder is the tick's run"
    );
    assert_eq!(queued(&store).await, 1, "nothing stored for the tick");
    assert_eq!(
        store.ticks("sync", 0).await.expect("ticks")[0].jid,
        holder,
        "the tick recorded with the holder as its run"
    );
    assert!(
        store.job(&t.job.jid).await.expect("job").is_none(),
        "the tick's own job was not stored"
    );

    let p = register_for(&store, &["cron"], LONG_TTL).await;
    let lease = fetch_one(&store, &p, "cron").await.lease;
    complete_ok(&store, &lease, None, Outcome::Succeeded { result: None }).await;
    let mut t = tick("sync", 2_000, Overlap::Allow);
    t.job.options.unique = Some(unique());
    let second = enqueued(
        &push_tick(&store, &t).await,
        "the tick after the holder is done",
    );
    assert_eq!(second, t.job.jid, "a run of its own");
    assert_state(&store, &second, JobState::Enqueued).await;
    let mut again = new_job("Sync", json!({}), "cron");
    again.options.unique = Some(unique());
    let pushed = store.push(vec![again]).await.expect("push");
    assert_eq!(
        pushed[0].jid(),
        &second,
        "the tick's run holds the key: a push of it answers the run"
    );
}

/// Registered definitions are listed before any tick; the listing shows
/// each schedule's spec, next run, last tick, last run and its state now,
/// and its counters. Registering again keeps the history.
pub async fn schedules_list_last_run_and_counters(store: Arc<dyn Store>) {
    let defs = vec![
        ScheduleDef {
            name: "b-hourly".into(),
            spec: "cron \"0 * * * *\" UTC".into(),
            next_run_ms: Some(3_600_000),
        },
        ScheduleDef {
            name: "a-second".into(),
            spec: "every 1s".into(),
            next_run_ms: Some(1_000),
        },
    ];
    store.register_schedules(&defs).await.expect("register");
    let listed = store.schedules().await.expect("schedules");
    let names: Vec<&str> = listed.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["a-second", "b-hourly"], "sorted by name");
    assert_eq!(listed[1].spec, "cron \"0 * * * *\" UTC");
    assert_eq!(listed[1].next_run_ms, Some(3_600_000));
    assert_eq!(
        (
            listed[0].last_tick_ms,
            &listed[0].last_jid,
            listed[0].enqueued
        ),
        (None, &None, 0)
    );

    let run = enqueued(
        &push_tick(&store, &tick("a-second", 5_000, Overlap::Skip)).await,
        "a tick",
    );
    push_tick(&store, &tick("a-second", 6_000, Overlap::Skip)).await;
    store
        .register_schedules(&defs)
        .await
        .expect("register again");
    let s = store.schedules().await.expect("schedules").remove(0);
    assert_eq!(s.name, "a-second");
    assert_eq!(s.last_tick_ms, Some(6_000), "the last tick, skipped or not");
    assert_eq!(s.last_jid, Some(run.clone()), "the last run");
    assert_eq!(s.last_state, Some(JobState::Enqueued));
    assert_eq!((s.enqueued, s.skipped), (1, 1));
    assert_eq!(
        s.next_run_ms,
        Some(7_000),
        "the next run after the last tick"
    );

    let p = register_for(&store, &["cron"], LONG_TTL).await;
    let leased = fetch_one(&store, &p, "cron").await;
    complete_ok(
        &store,
        &leased.lease,
        None,
        Outcome::Succeeded { result: None },
    )
    .await;
    let s = store.schedules().await.expect("schedules").remove(0);
    assert_eq!(
        s.last_state,
        Some(JobState::Succeeded),
        "the last run's state now"
    );

    // An older next run registered again does not move it back (a process
    // whose clock is behind)…
    let behind = ScheduleDef {
        next_run_ms: Some(2_000),
        ..defs[1].clone()
    };
    store.register_schedules(&[behind]).await.expect("register");
    let s = store.schedules().await.expect("schedules").remove(0);
    assert_eq!(
        s.next_run_ms,
        Some(7_000),
        "the next run only moves forward"
    );
    // … unless the spec changed (a new deploy).
    let changed = ScheduleDef {
        name: "a-second".into(),
        spec: "every 1h".into(),
        next_run_ms: Some(3_600_000),
    };
    store
        .register_schedules(&[changed])
        .await
        .expect("register");
    let changed_back = ScheduleDef {
        name: "a-second".into(),
        spec: "every 1s".into(),
        next_run_ms: Some(2_000),
    };
    store
        .register_schedules(&[changed_back])
        .await
        .expect("register");
    let s = store.schedules().await.expect("schedules").remove(0);
    assert_eq!(
        (s.spec.as_str(), s.next_run_ms),
        ("every 1s", Some(2_000)),
        "a changed spec's next run"
    );
}

/// A schedule keeps its last `KEPT_TICKS` ticks; older ones are trimmed,
/// and are never pushed again all the same.
pub async fn ticks_are_trimmed_to_the_last_kept(store: Arc<dyn Store>) {
    use crate::periodic::KEPT_TICKS;
    let n = KEPT_TICKS as i64 + 5;
    for i in 1..=n {
        push_tick(&store, &tick("often", i * 1000, Overlap::Allow)).await;
    }
    let kept = store.ticks("often", 0).await.expect("ticks");
    assert_eq!(
        kept.len(),
        KEPT_TICKS,
        "the last {KEPT_TICKS} ticks are kept"
    );
    assert_eq!(kept[0].tick_ms, n * 1000, "newest first");
    assert_eq!(kept[KEPT_TICKS - 1].tick_ms, 6_000, "the oldest kept");
    let again = push_tick(&store, &tick("often", 1_000, Overlap::Allow)).await;
    assert_eq!(
        again,
        TickOutcome::AlreadyDone { jid: None },
        "a trimmed tick is not pushed again"
    );
    let info = store.schedules().await.expect("schedules");
    assert_eq!(info[0].enqueued, n as u64, "the counters count every tick");
}

/// A previous run still waiting deep in a long queue (thousands of jobs
/// pushed on both sides of it) is unfinished: the tick is skipped.
pub async fn skip_sees_a_run_deep_in_its_queue(store: Arc<dyn Store>) {
    let older: Vec<_> = (0..2_500).map(|n| job_in("cron", n)).collect();
    store.push(older).await.expect("push");
    let run = enqueued(
        &push_tick(&store, &tick("deep", 1_000, Overlap::Skip)).await,
        "the first tick",
    );
    let newer: Vec<_> = (0..2_500).map(|n| job_in("cron", n)).collect();
    store.push(newer).await.expect("push");
    let t = push_tick(&store, &tick("deep", 2_000, Overlap::Skip)).await;
    assert_eq!(
        t,
        TickOutcome::Skipped {
            unfinished: run.clone()
        },
        "a tick while the previous run waits in the middle of its queue"
    );
    let info = store.schedules().await.expect("schedules");
    assert_eq!(
        info[0].last_state,
        Some(JobState::Enqueued),
        "its state, listed"
    );
}
