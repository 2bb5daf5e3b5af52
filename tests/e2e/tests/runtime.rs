//! The worker runtime in this process against each real store: steps, the
//! maximum stint time, retries and dead jobs, panics, queue order and
//! scheduled jobs.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use stint::{
    Backoff, Client, Ctx, Jid, Job, JobDetail, JobError, JobState, Push, RunSummary, Store,
    StoreError, Worker, WorkerBuilder, WorkerHandle,
};
use stint_e2e::harness::{wait_for, TestStore};
use stint_e2e::per_store;
use tokio::task::JoinHandle;

per_store! {
    the_saved_count_matches_the_saved_cursor,
    a_completed_step_is_skipped_by_the_next_stint_and_each_step_runs_once,
    a_job_past_its_max_stint_time_requeues_itself_and_finishes_over_several_stints,
    a_job_that_fails_twice_is_retried_with_backoff_and_succeeds_keeping_its_errors,
    a_job_that_always_fails_is_dead_after_its_max_attempts,
    a_panicking_job_is_a_failed_attempt_and_the_worker_goes_on,
    strict_queues_run_every_job_of_the_first_queue_before_any_of_the_next,
    weighted_queues_serve_both_queues_neither_starves,
    a_scheduled_job_waits_until_due_then_runs,
}

// ---------------------------------------------------------------------------
// What the test jobs did (one key per test and store: tests run at once).

static EVENTS: LazyLock<Mutex<HashMap<String, Vec<String>>>> = LazyLock::new(Default::default);

fn event(key: &str, what: impl Into<String>) {
    EVENTS
        .lock()
        .unwrap()
        .entry(key.to_owned())
        .or_default()
        .push(what.into());
}

fn events(key: &str) -> Vec<String> {
    EVENTS.lock().unwrap().get(key).cloned().unwrap_or_default()
}

// ---------------------------------------------------------------------------
// Test jobs.

/// Two steps; in its first stint it waits between them until it is asked
/// to stop.
#[derive(Serialize, Deserialize)]
struct TwoSteps {
    key: String,
}

impl Job for TwoSteps {
    const KIND: &'static str = "TwoSteps";

    async fn perform(&self, ctx: &mut Ctx) -> Result<(), JobError> {
        let stint = ctx.stint();
        let key = self.key.as_str();
        ctx.step("a", async {
            event(key, format!("a@{stint}"));
            Ok(())
        })
        .await?;
        if stint == 1 {
            event(key, format!("hold@{stint}"));
            ctx.interrupted().cancelled().await;
        }
        ctx.step("b", async {
            event(key, format!("b@{stint}"));
            Ok(())
        })
        .await?;
        Ok(())
    }
}

/// Counts `n` items faster than a flush is due, completes a step, and in
/// its first stint then waits to be stopped.
#[derive(Serialize, Deserialize)]
struct CountThenStep {
    n: u64,
}

impl Job for CountThenStep {
    const KIND: &'static str = "CountThenStep";

    async fn perform(&self, ctx: &mut Ctx) -> Result<(), JobError> {
        let mut next: u64 = ctx.cursor()?.unwrap_or(0);
        while next < self.n {
            next += 1;
            ctx.checkpoint(&next).await?;
        }
        ctx.step("report", async { Ok(()) }).await?;
        if ctx.stint() == 1 {
            ctx.interrupted().cancelled().await;
            return Err(JobError::Interrupted(stint::Interrupt::Shutdown));
        }
        Ok(())
    }
}

/// Counts to `n`, one checkpoint per item, `sleep_ms` per item; records
/// where each stint started and each item it did.
#[derive(Serialize, Deserialize)]
struct Counter {
    key: String,
    n: u64,
    sleep_ms: u64,
}

impl Job for Counter {
    const KIND: &'static str = "Counter";

    async fn perform(&self, ctx: &mut Ctx) -> Result<(), JobError> {
        let mut next: u64 = ctx.cursor()?.unwrap_or(0);
        event(&self.key, format!("start {next}"));
        ctx.set_total(self.n);
        while next < self.n {
            tokio::time::sleep(Duration::from_millis(self.sleep_ms)).await;
            next += 1;
            event(&self.key, "item");
            ctx.checkpoint(&next).await?;
        }
        Ok(())
    }
}

/// An error with a cause, as a real client library returns.
#[derive(Debug)]
struct UploadFailed {
    part: u32,
    source: std::io::Error,
}

impl std::fmt::Display for UploadFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "upload of part {} failed", self.part)
    }
}

impl std::error::Error for UploadFailed {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Fails its first `fail_first` attempts, then succeeds.
#[derive(Serialize, Deserialize)]
struct Flaky {
    key: String,
    fail_first: u32,
}

impl Job for Flaky {
    const KIND: &'static str = "Flaky";

    async fn perform(&self, ctx: &mut Ctx) -> Result<(), JobError> {
        event(&self.key, format!("attempt {}", ctx.attempt()));
        if ctx.attempt() <= self.fail_first {
            return Err(UploadFailed {
                part: 3,
                source: std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "connection reset by peer",
                ),
            }
            .into());
        }
        Ok(())
    }
}

/// Panics on its first attempt.
#[derive(Serialize, Deserialize)]
struct PanicsOnce {
    key: String,
}

impl Job for PanicsOnce {
    const KIND: &'static str = "PanicsOnce";

    async fn perform(&self, ctx: &mut Ctx) -> Result<(), JobError> {
        event(&self.key, format!("attempt {}", ctx.attempt()));
        if ctx.attempt() == 1 {
            panic!("boom: the disk fell off");
        }
        Ok(())
    }
}

/// Records `label` and ends.
#[derive(Serialize, Deserialize, Clone)]
struct Record {
    key: String,
    label: String,
}

impl Job for Record {
    const KIND: &'static str = "Record";

    async fn perform(&self, _ctx: &mut Ctx) -> Result<(), JobError> {
        event(&self.key, self.label.clone());
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Running a worker in this process.

/// A worker with every test job, no signal handlers, and short intervals so
/// that due jobs are promoted quickly.
fn builder(store: &Arc<dyn Store>) -> WorkerBuilder {
    let mut b = Worker::builder(store.clone())
        .register::<TwoSteps>()
        .register::<CountThenStep>()
        .register::<Counter>()
        .register::<Flaky>()
        .register::<PanicsOnce>()
        .register::<Record>()
        .handle_signals(false)
        .shutdown_timeout(Duration::from_secs(5));
    let cfg = b.config_mut();
    cfg.maintenance_interval = Duration::from_millis(100);
    cfg.poll_interval = Duration::from_millis(20);
    b
}

struct Running {
    handle: WorkerHandle,
    task: JoinHandle<Result<RunSummary, StoreError>>,
}

fn start(b: WorkerBuilder) -> Running {
    let worker = b.build();
    let handle = worker.handle();
    Running {
        handle,
        task: tokio::spawn(worker.run()),
    }
}

impl Running {
    async fn stop(self) -> RunSummary {
        self.handle.shutdown();
        tokio::time::timeout(Duration::from_secs(15), self.task)
            .await
            .expect("worker stops within 15 s")
            .expect("worker task")
            .expect("worker ran without a store error")
    }
}

async fn detail(store: &Arc<dyn Store>, jid: &Jid) -> JobDetail {
    store.job(jid).await.unwrap().expect("job exists")
}

async fn wait_state(store: &Arc<dyn Store>, jid: &Jid, state: JobState) -> JobDetail {
    wait_for(
        Duration::from_secs(30),
        &format!("job {jid} to be {state}"),
        || async {
            let d = detail(store, jid).await;
            (d.job.state == state).then_some(d)
        },
    )
    .await
}

fn quick_backoff() -> Backoff {
    Backoff {
        base_ms: 50,
        max_ms: 100,
        jitter: 0.0,
    }
}

// ---------------------------------------------------------------------------
// Steps.

/// A saved count never runs ahead of the saved cursor: items counted since
/// the last recorded cursor are not saved with an older cursor (by a step,
/// or at the end of an interrupted stint), so a resumed job's count stays
/// true.
async fn the_saved_count_matches_the_saved_cursor(ts: TestStore) {
    let store = ts.store.clone();
    let jid = Client::new(store.clone())
        .push(&CountThenStep { n: 10 })
        .await
        .unwrap();
    let first = start(builder(&store));
    let saved = wait_for(Duration::from_secs(10), "the step to be saved", || async {
        let d = detail(&store, &jid).await;
        d.job
            .checkpoint
            .steps
            .contains(&"report".to_string())
            .then_some(d)
    })
    .await;
    let cursor = saved.job.checkpoint.cursor.clone();
    let done = saved.job.checkpoint.done;
    assert_eq!(
        cursor.as_ref().and_then(|c| c.as_u64()).unwrap_or(0),
        done,
        "count matches cursor"
    );
    first.stop().await;
    let d = detail(&store, &jid).await;
    assert_eq!(d.job.checkpoint.cursor, cursor);
    assert_eq!(
        d.job.checkpoint.done, done,
        "an interrupted stint saves the count its cursor covers"
    );

    let second = start(builder(&store));
    let d = wait_state(&store, &jid, JobState::Succeeded).await;
    assert_eq!(
        d.job.checkpoint.done, 10,
        "10 items counted once, not twice"
    );
    second.stop().await;
}

async fn a_completed_step_is_skipped_by_the_next_stint_and_each_step_runs_once(ts: TestStore) {
    let key = &format!("steps-{:?}", ts.backend);
    let store = ts.store.clone();
    let jid = Client::new(store.clone())
        .push(&TwoSteps { key: key.into() })
        .await
        .unwrap();

    let first = start(builder(&store));
    wait_for(
        Duration::from_secs(20),
        "step a done and saved, the job holding before step b",
        || async {
            let saved = detail(&store, &jid).await.job.checkpoint.steps;
            (events(key).contains(&"hold@1".to_string()) && saved == ["a"]).then_some(())
        },
    )
    .await;
    let summary = first.stop().await;
    assert_eq!(summary.handed_back, 1, "the job was interrupted");
    let d = detail(&store, &jid).await;
    assert_eq!(d.job.state, JobState::Enqueued);
    assert_eq!(d.job.checkpoint.steps, ["a"], "step b did not run");
    assert_eq!(d.job.attempts, 0);
    assert_eq!(d.history[0].outcome.as_deref(), Some("interrupted"));

    let second = start(builder(&store));
    let d = wait_state(&store, &jid, JobState::Succeeded).await;
    second.stop().await;
    assert_eq!(
        events(key),
        ["a@1", "hold@1", "b@2"],
        "step a ran in the first stint only, step b in the second only"
    );
    assert_eq!(d.job.checkpoint.steps, ["a", "b"]);
    assert_eq!(d.history.len(), 2);
}

// ---------------------------------------------------------------------------
// Maximum stint time.

async fn a_job_past_its_max_stint_time_requeues_itself_and_finishes_over_several_stints(
    ts: TestStore,
) {
    let key = &format!("max-stint-{:?}", ts.backend);
    let store = ts.store.clone();
    let n = 300;
    // At least 1.5 s of work in stints of 300 ms.
    let jid = Client::new(store.clone())
        .push_with(
            &Counter {
                key: key.into(),
                n,
                sleep_ms: 5,
            },
            Push::new().max_stint(Duration::from_millis(300)),
        )
        .await
        .unwrap();
    let w = start(builder(&store));
    let d = wait_state(&store, &jid, JobState::Succeeded).await;
    w.stop().await;

    let stints = d.history.len();
    assert!(stints >= 3, "several stints: {:?}", d.history);
    for s in &d.history[..stints - 1] {
        assert_eq!(s.outcome.as_deref(), Some("interrupted"), "{s:?}");
        assert_eq!(s.reason.as_deref(), Some("maximum stint time reached"));
    }
    assert_eq!(d.history[stints - 1].outcome.as_deref(), Some("succeeded"));
    assert_eq!(d.job.attempts, 0, "reaching the time limit is no failure");
    assert_eq!(d.job.checkpoint.done, n);

    // Each stint started where the one before stopped: no item twice.
    let ev = events(key);
    let starts: Vec<u64> = ev
        .iter()
        .filter_map(|e| e.strip_prefix("start ")?.parse().ok())
        .collect();
    assert_eq!(starts.len(), stints, "{starts:?}");
    assert_eq!(starts[0], 0);
    for (i, s) in starts.iter().enumerate().skip(1) {
        assert_eq!(
            *s,
            d.history[i - 1].done,
            "stint {} started at the cursor stint {} saved",
            i + 1,
            i
        );
        assert!(*s > starts[i - 1], "progress carried over: {starts:?}");
    }
    let items = ev.iter().filter(|e| *e == "item").count() as u64;
    assert_eq!(items, n, "every item done once over all stints");
}

// ---------------------------------------------------------------------------
// Retries and dead jobs.

async fn a_job_that_fails_twice_is_retried_with_backoff_and_succeeds_keeping_its_errors(
    ts: TestStore,
) {
    let key = &format!("retries-{:?}", ts.backend);
    let store = ts.store.clone();
    let jid = Client::new(store.clone())
        .push_with(
            &Flaky {
                key: key.into(),
                fail_first: 2,
            },
            Push::new().backoff(quick_backoff()),
        )
        .await
        .unwrap();
    let w = start(builder(&store));
    let d = wait_state(&store, &jid, JobState::Succeeded).await;
    w.stop().await;

    assert_eq!(events(key), ["attempt 1", "attempt 2", "attempt 3"]);
    assert_eq!(d.job.attempts, 2, "two failed attempts");
    assert_eq!(d.errors.len(), 2, "{:?}", d.errors);
    for (i, e) in d.errors.iter().enumerate() {
        assert_eq!(e.attempt, i as u32 + 1);
        assert_eq!(e.message, "upload of part 3 failed");
        assert_eq!(e.chain, ["connection reset by peer"], "the source() chain");
    }
    let outcomes: Vec<_> = d.history.iter().map(|s| s.outcome.as_deref()).collect();
    assert_eq!(
        outcomes,
        [Some("failed"), Some("failed"), Some("succeeded")]
    );
    // Each retry waited for its backoff (50 ms, then 100 ms) after the error.
    assert!(d.history[1].started_at_ms >= d.errors[0].at_ms + 50);
    assert!(d.history[2].started_at_ms >= d.errors[1].at_ms + 100);
}

async fn a_job_that_always_fails_is_dead_after_its_max_attempts(ts: TestStore) {
    let key = &format!("dead-{:?}", ts.backend);
    let store = ts.store.clone();
    let jid = Client::new(store.clone())
        .push_with(
            &Flaky {
                key: key.into(),
                fail_first: u32::MAX,
            },
            Push::new().max_attempts(2).backoff(quick_backoff()),
        )
        .await
        .unwrap();
    let w = start(builder(&store));
    let d = wait_state(&store, &jid, JobState::Dead).await;
    // Dead is final: nothing runs it again.
    tokio::time::sleep(Duration::from_millis(300)).await;
    w.stop().await;

    assert_eq!(events(key), ["attempt 1", "attempt 2"]);
    assert_eq!(d.job.attempts, 2);
    let reason = d.job.reason.clone().unwrap_or_default();
    assert!(
        reason.contains("failed 2 of 2 attempts") && reason.contains("upload of part 3 failed"),
        "{reason}"
    );
    assert_eq!(d.errors.len(), 2);
    assert_eq!(d.errors[1].chain, ["connection reset by peer"]);
    assert!(d.job.finished_at_ms.is_some());
}

// ---------------------------------------------------------------------------
// Panics.

async fn a_panicking_job_is_a_failed_attempt_and_the_worker_goes_on(ts: TestStore) {
    let key = &format!("panic-{:?}", ts.backend);
    let store = ts.store.clone();
    let client = Client::new(store.clone());
    let jid = client
        .push_with(
            &PanicsOnce { key: key.into() },
            Push::new().backoff(quick_backoff()),
        )
        .await
        .unwrap();
    let w = start(builder(&store));
    let d = wait_state(&store, &jid, JobState::Succeeded).await;
    assert_eq!(d.job.attempts, 1, "the panic used up one attempt");
    assert_eq!(d.errors.len(), 1);
    let msg = &d.errors[0].message;
    assert!(
        msg.contains("panicked") && msg.contains("boom: the disk fell off"),
        "{msg}"
    );
    assert_eq!(d.history[0].outcome.as_deref(), Some("failed"));

    // The same worker takes new work after the panic.
    let after = client
        .push(&Record {
            key: key.into(),
            label: "after".into(),
        })
        .await
        .unwrap();
    wait_state(&store, &after, JobState::Succeeded).await;
    let summary = w.stop().await;
    assert_eq!(summary.stints, 3);
    assert_eq!(events(key), ["attempt 1", "attempt 2", "after"]);
}

// ---------------------------------------------------------------------------
// Queue order.

fn labelled(key: &str, prefix: &str, n: usize) -> Vec<Record> {
    (0..n)
        .map(|i| Record {
            key: key.into(),
            label: format!("{prefix}-{i}"),
        })
        .collect()
}

async fn strict_queues_run_every_job_of_the_first_queue_before_any_of_the_next(ts: TestStore) {
    let key = &format!("strict-{:?}", ts.backend);
    let store = ts.store.clone();
    let client = Client::new(store.clone());
    // "low" is pushed first: strict order, not age, decides.
    client
        .push_many(&labelled(key, "low", 5), Push::new().queue("low"))
        .await
        .unwrap();
    client
        .push_many(&labelled(key, "high", 5), Push::new().queue("high"))
        .await
        .unwrap();
    let w = start(builder(&store).queues(["high", "low"]).concurrency(1));
    wait_for(Duration::from_secs(20), "all ten jobs to run", || async {
        (events(key).len() == 10).then_some(())
    })
    .await;
    w.stop().await;
    assert_eq!(
        events(key),
        [
            "high-0", "high-1", "high-2", "high-3", "high-4", "low-0", "low-1", "low-2", "low-3",
            "low-4"
        ]
    );
}

async fn weighted_queues_serve_both_queues_neither_starves(ts: TestStore) {
    let key = &format!("weighted-{:?}", ts.backend);
    let store = ts.store.clone();
    let client = Client::new(store.clone());
    let per_queue = 40;
    client
        .push_many(&labelled(key, "low", per_queue), Push::new().queue("low"))
        .await
        .unwrap();
    client
        .push_many(&labelled(key, "high", per_queue), Push::new().queue("high"))
        .await
        .unwrap();
    let w = start(
        builder(&store)
            .weighted_queues([("high", 3), ("low", 1)])
            .concurrency(1),
    );
    wait_for(Duration::from_secs(30), "all jobs to run", || async {
        (events(key).len() == 2 * per_queue).then_some(())
    })
    .await;
    w.stop().await;

    let ev = events(key);
    let first = |q: &str| ev.iter().position(|e| e.starts_with(q)).unwrap();
    let last = |q: &str| ev.iter().rposition(|e| e.starts_with(q)).unwrap();
    println!(
        "first low job ran {}th, last high job {}th",
        first("low") + 1,
        last("high") + 1
    );
    // Each queue was served while the other still had jobs waiting. (With
    // strict order "low" would wait for all of "high"; the chance that a
    // weighted pick leaves it out 40 times running is (3/4)^40 ≈ 1e-5.)
    assert!(first("low") < last("high"), "low starved: {ev:?}");
    assert!(first("high") < last("low"), "high starved: {ev:?}");
}

// ---------------------------------------------------------------------------
// Scheduled jobs.

async fn a_scheduled_job_waits_until_due_then_runs(ts: TestStore) {
    let key = &format!("scheduled-{:?}", ts.backend);
    let store = ts.store.clone();
    let w = start(builder(&store));
    let pushed_at = stint::model::now_ms();
    let jid = Client::new(store.clone())
        .schedule_in(
            &Record {
                key: key.into(),
                label: "ran".into(),
            },
            Duration::from_millis(700),
        )
        .await
        .unwrap();
    let d = detail(&store, &jid).await;
    assert_eq!(d.job.state, JobState::Scheduled);
    assert!(d.job.run_at_ms.unwrap() >= pushed_at + 700);

    let d = wait_state(&store, &jid, JobState::Succeeded).await;
    w.stop().await;
    assert_eq!(events(key), ["ran"]);
    assert_eq!(d.history.len(), 1);
    assert!(
        d.history[0].started_at_ms >= pushed_at + 700,
        "started {} ms after the push, before it was due",
        d.history[0].started_at_ms - pushed_at
    );
}
