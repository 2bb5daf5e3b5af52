//! Periodic jobs on every store: three worker processes scheduling the
//! same 1 s interval, one of them SIGKILLed mid-way, enqueue each tick
//! once (one job per tick instant, none missing while a worker lives);
//! with `Overlap::Skip` and a job longer than the period, two runs never
//! overlap and the ticks that fall during a run are recorded as skipped.
//! In process: a cron schedule with seconds, and the missed-tick policies.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use stint::model::now_ms;
use stint::periodic::{Missed, Overlap, Periodic, TickOutcome, TickRecord};
use stint::{Jid, JobFilter, JobState, Worker};
use stint_e2e::harness::{wait_for, TestStore, WorkerProc};
use stint_e2e::jobs::Noop;
use stint_e2e::per_store;

const BIN: &str = env!("CARGO_BIN_EXE_stint-test-worker");

per_store! {
    three_workers_one_killed_enqueue_every_tick_once,
    skip_never_runs_two_at_once_and_records_the_ticks_it_skips,
    a_cron_schedule_with_seconds_ticks_each_second,
    missed_ticks_run_once_or_are_skipped,
}

/// The schedule's recorded ticks, oldest first.
async fn ticks(ts: &TestStore, schedule: &str) -> Vec<TickRecord> {
    let mut t = ts.store.ticks(schedule, 0).await.expect("ticks");
    t.reverse();
    t
}

async fn wait_ticks(ts: &TestStore, schedule: &str, n: usize) {
    wait_for(
        Duration::from_secs(40),
        &format!("{n} ticks of {schedule}"),
        || async { (ticks(ts, schedule).await.len() >= n).then_some(()) },
    )
    .await;
}

/// No tick missing or twice: consecutive recorded ticks are one period
/// apart.
fn assert_contiguous(ticks: &[TickRecord], period_ms: i64) {
    for w in ticks.windows(2) {
        assert_eq!(
            w[1].tick_ms - w[0].tick_ms,
            period_ms,
            "consecutive ticks {} and {} should be one period apart: {ticks:?}",
            w[0].tick_ms,
            w[1].tick_ms
        );
    }
    for t in ticks {
        assert_eq!(
            t.tick_ms % period_ms,
            0,
            "a tick on the schedule's instants"
        );
    }
}

fn stop_all(workers: &mut [WorkerProc]) {
    for w in workers.iter() {
        w.signal(libc::SIGTERM);
    }
    for w in workers.iter_mut() {
        w.wait(Duration::from_secs(30))
            .expect("a worker stops on SIGTERM");
    }
}

async fn three_workers_one_killed_enqueue_every_tick_once(ts: TestStore) {
    let env = [("STINT_PERIODIC", "beat:1000:Noop:allow")];
    let mut workers: Vec<WorkerProc> = (0..3)
        .map(|_| WorkerProc::start(BIN, &ts, 4, &env))
        .collect();
    wait_ticks(&ts, "beat", 5).await;
    workers[0].kill9();
    wait_ticks(&ts, "beat", 12).await;
    stop_all(&mut workers[1..]);

    let ticks = ticks(&ts, "beat").await;
    assert!(ticks.len() >= 12, "{ticks:?}");
    assert!(ticks.iter().all(|t| !t.skipped), "Allow skips nothing");
    assert_contiguous(&ticks, 1000);
    // One job per tick, and no other: a tick pushed twice would show as a
    // job of no recorded tick.
    let tick_jids: BTreeSet<&Jid> = ticks.iter().map(|t| &t.jid).collect();
    assert_eq!(tick_jids.len(), ticks.len(), "a jid per tick");
    let jobs = ts
        .store
        .jobs(&JobFilter {
            kind: Some("Noop".into()),
            limit: 10_000,
            ..JobFilter::default()
        })
        .await
        .expect("jobs");
    let job_jids: BTreeSet<&Jid> = jobs.iter().map(|j| &j.jid).collect();
    assert_eq!(job_jids, tick_jids, "the jobs are the ticks' runs");
    let info = ts.store.schedules().await.expect("schedules");
    let beat = info.iter().find(|s| s.name == "beat").expect("listed");
    assert_eq!((beat.enqueued, beat.skipped), (ticks.len() as u64, 0));
    assert_eq!(beat.spec, "every 1s, overlap allowed");
    assert_eq!(beat.last_tick_ms, ticks.last().map(|t| t.tick_ms));
}

async fn skip_never_runs_two_at_once_and_records_the_ticks_it_skips(ts: TestStore) {
    // 25 items of 100 ms: a run takes about 2.5 s, the period is 1 s.
    let env = [(
        "STINT_PERIODIC",
        r#"slow:1000:Count:skip:{"n":25,"sleep_ms":100}"#,
    )];
    let mut workers: Vec<WorkerProc> = (0..3)
        .map(|_| WorkerProc::start(BIN, &ts, 4, &env))
        .collect();
    wait_ticks(&ts, "slow", 5).await;
    workers[1].kill9();
    wait_ticks(&ts, "slow", 12).await;
    // Let the last run finish before stopping, so that every run has ended.
    wait_for(
        Duration::from_secs(30),
        "the last run to finish",
        || async {
            let info = ts.store.schedules().await.expect("schedules");
            let s = info.into_iter().find(|s| s.name == "slow")?;
            (s.last_state == Some(JobState::Succeeded)).then_some(())
        },
    )
    .await;
    let mut alive: Vec<WorkerProc> = workers
        .into_iter()
        .enumerate()
        .filter(|(i, _)| *i != 1)
        .map(|(_, w)| w)
        .collect();
    stop_all(&mut alive);

    let ticks = ticks(&ts, "slow").await;
    assert_contiguous(&ticks, 1000);
    let runs: Vec<&TickRecord> = ticks.iter().filter(|t| !t.skipped).collect();
    let skipped = ticks.iter().filter(|t| t.skipped).count();
    assert!(runs.len() >= 2 && skipped >= 2, "runs and skips: {ticks:?}");
    // Each run's stints, from the store: (first start, last end).
    let mut spans: HashMap<Jid, (i64, i64)> = HashMap::new();
    let mut runs = runs;
    for (n, r) in runs.clone().iter().enumerate() {
        let d = ts.job(&r.jid).await;
        let Some(first) = d.history.first().map(|s| s.started_at_ms) else {
            // Only the last run, enqueued after the wait above, may not
            // have started before the workers stopped.
            assert_eq!(n, runs.len() - 1, "run of tick {} never started", r.tick_ms);
            runs.pop();
            break;
        };
        let last = d
            .history
            .iter()
            .map(|s| s.ended_at_ms.expect("every stint ended"))
            .max()
            .unwrap();
        spans.insert(r.jid.clone(), (first, last));
    }
    for w in runs.windows(2) {
        let (prev, next) = (spans[&w[0].jid], spans[&w[1].jid]);
        assert!(
            next.0 >= prev.1,
            "run of tick {} started at {} before the run of tick {} ended at {}",
            w[1].tick_ms,
            next.0,
            w[0].tick_ms,
            prev.1
        );
    }
    // A skipped tick names the run before it, which had not finished then.
    let mut last_run: Option<&TickRecord> = None;
    for t in &ticks {
        if !t.skipped {
            last_run = Some(t);
            continue;
        }
        let run = last_run.expect("a skipped tick follows a run");
        assert_eq!(
            t.jid, run.jid,
            "tick {} skipped for the run before it",
            t.tick_ms
        );
        if let Some(&(_, ended)) = spans.get(&run.jid) {
            assert!(
                ended >= t.tick_ms,
                "tick {} skipped while its run had ended at {ended}",
                t.tick_ms
            );
        }
    }
    let info = ts.store.schedules().await.expect("schedules");
    let slow = info.iter().find(|s| s.name == "slow").expect("listed");
    assert_eq!(
        (slow.enqueued, slow.skipped),
        ((ticks.len() - skipped) as u64, skipped as u64)
    );
}

async fn a_cron_schedule_with_seconds_ticks_each_second(ts: TestStore) {
    let worker = Worker::builder(ts.store.clone())
        .register::<Noop>()
        .handle_signals(false)
        .periodic(
            Periodic::cron("each-second", "*/1 * * * * *")
                .unwrap()
                .job(&Noop {})
                .unwrap()
                .overlap(Overlap::Allow),
        )
        .build();
    worker
        .run_until(tokio::time::sleep(Duration::from_millis(3500)))
        .await
        .expect("run");
    let ticks = ticks(&ts, "each-second").await;
    assert!(ticks.len() >= 2, "{ticks:?}");
    assert_contiguous(&ticks, 1000);
    let info = ts.store.schedules().await.expect("schedules");
    assert_eq!(info[0].spec, "cron \"*/1 * * * * *\" UTC, overlap allowed");
    assert!(info[0].next_run_ms > ticks.last().map(|t| t.tick_ms));
}

async fn missed_ticks_run_once_or_are_skipped(ts: TestStore) {
    let hourly = |name: &str, missed: Missed| {
        Periodic::every(name, Duration::from_secs(3600))
            .job(&Noop {})
            .unwrap()
            .missed(missed)
    };
    let schedules = [
        hourly("catch-up", Missed::RunOnce),
        hourly("no-catch-up", Missed::Skip),
        // Never ticked before: missed nothing, listed from the start.
        hourly("fresh", Missed::RunOnce),
    ];
    // Each ran last two hours ago: one tick (the last hour's) was missed.
    let now = now_ms();
    let latest = schedules[0].schedule().latest_at_or_before(now).unwrap();
    for p in &schedules[..2] {
        let old = p.tick(latest - 2 * 3_600_000).unwrap();
        let out = ts.store.push_tick(&old).await.unwrap();
        assert!(matches!(out, TickOutcome::Enqueued(_)));
    }
    let mut b = Worker::builder(ts.store.clone())
        .register::<Noop>()
        .handle_signals(false);
    for p in schedules {
        b = b.periodic(p);
    }
    b.build()
        .run_until(tokio::time::sleep(Duration::from_millis(1500)))
        .await
        .expect("run");
    let caught: Vec<i64> = ticks(&ts, "catch-up")
        .await
        .iter()
        .map(|t| t.tick_ms)
        .collect();
    assert_eq!(
        caught,
        [latest - 2 * 3_600_000, latest],
        "RunOnce pushes the latest missed tick at start, once"
    );
    let skipped = ticks(&ts, "no-catch-up").await;
    assert_eq!(skipped.len(), 1, "Skip pushes nothing missed: {skipped:?}");
    assert!(
        ticks(&ts, "fresh").await.is_empty(),
        "a new schedule missed nothing"
    );
    let listed = ts.store.schedules().await.expect("schedules");
    let fresh = listed
        .iter()
        .find(|s| s.name == "fresh")
        .expect("a worker registers its schedules when it starts");
    assert_eq!(fresh.spec, "every 1h, missed: run once");
    assert_eq!(fresh.next_run_ms, Some(latest + 3_600_000));
    assert_eq!((fresh.last_tick_ms, fresh.enqueued), (None, 0));
}
