//! The store conformance suite: the lifecycle rules of `docs/design.md` as tests
//! that every store runs against itself (as River's `riverdrivertest` does
//! for its drivers). A behaviour is defined here once and held by every
//! store.
//!
//! # Using it from a store crate
//!
//! Enable the `testing` feature of `stint-core` for the store's tests and add
//! `tokio` as a dev-dependency (the generated tests are `#[tokio::test]`s and
//! name `::tokio` directly):
//!
//! ```toml
//! [dev-dependencies]
//! stint-core = { workspace = true, features = ["testing"] }
//! tokio = { workspace = true }
//! ```
//!
//! Then, in `tests/conformance.rs`:
//!
//! ```ignore
//! use std::sync::Arc;
//! use stint_core::Store;
//!
//! stint_core::conformance_tests!(|| async {
//!     Arc::new(MyStore::open_temp().unwrap()) as Arc<dyn Store>
//! });
//! ```
//!
//! The argument is a closure (or a path to a function) returning a future of
//! a fresh, empty `Arc<dyn Store>`; every test gets its own. The macro
//! expands into one `#[tokio::test]` per case in [`cases`]. A store crate can
//! also call the cases one by one: each is `pub async fn
//! name(store: Arc<dyn Store>)` and panics on the first broken rule.
//!
//! The cases use real time for leases and schedules (sleeps of a few hundred
//! milliseconds up to about 1.5 s), judged by the store's clock, so the store
//! under test must run on this machine or one with a synchronised clock.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};

use crate::model::{
    Checkpoint, ErrorInfo, Jid, JobDetail, JobOptions, JobRecord, JobState, NewJob, ProcessInfo,
};
use crate::store::{Completion, Lease, Leased, Outcome, Store};

pub mod cases;

/// How long one case may take before it is failed as hung.
pub const CASE_TIMEOUT: Duration = Duration::from_secs(60);

/// Expands into one `#[tokio::test]` per conformance case, each run on a
/// fresh store made by `$make` (a closure or function returning a future of
/// `Arc<dyn Store>`). See the [`testing`](crate::testing) module.
#[macro_export]
macro_rules! conformance_tests {
    ($make:expr $(,)?) => {
        $crate::__conformance_cases!(
            $make;
            // push_fetch.rs
            push_then_fetch,
            fetch_is_fifo_within_a_queue,
            fetch_takes_queues_in_order,
            fetch_respects_limit,
            fetch_skips_paused_queue,
            concurrent_fetchers_never_share_a_job,
            push_many_in_one_call,
            push_batch_keeps_order,
            push_of_a_known_jid_is_a_duplicate,
            // completion.rs
            checkpoint_then_succeed,
            complete_without_checkpoint_keeps_saved_one,
            retry_then_dead,
            requeue_goes_to_head,
            requeue_is_lifo_at_head,
            completion_batch_is_applied_per_job,
            // leases.rs
            stale_lease_is_fenced,
            stale_lease_of_same_process_is_fenced,
            finished_job_refuses_its_lease,
            orphans_are_recovered,
            expire_process_makes_recovery_immediate,
            heartbeat_of_unknown_process_is_false,
            poison_pill_goes_dead,
            progress_between_recoveries_resets_the_count,
            // maintenance.rs
            scheduled_job_waits_until_due,
            promote_due_appends_to_tail,
            // operator.rs
            pause_and_resume_waiting_job,
            resume_puts_job_at_head,
            pause_running_job,
            withdraw_pending_pause,
            cancel_waiting_and_running_jobs,
            pause_scheduled_job,
            retry_dead_job,
            retry_retrying_and_scheduled_jobs,
            pending_command_outlives_the_stint,
            unknown_and_invalid_commands,
            // split.rs
            split_parks_parent_and_enqueues_children,
            parent_wakes_when_the_last_child_finishes,
            split_is_fenced,
            commands_on_a_waiting_parent_reach_its_children,
            tree_progress_sums_the_children,
            // stats.rs
            stats_counts_states_and_queues,
            processes_are_listed_until_deregistered,
            jobs_filter_and_limit,
            // admin.rs
            clear_queue_deletes_only_its_enqueued_jobs,
            delete_removes_a_job_that_is_not_running,
            process_commands_are_kept_for_the_process,
            // metrics.rs
            metrics_count_stint_ends_by_kind_and_queue,
            // periodic.rs
            a_tick_is_enqueued_once,
            concurrent_pushes_of_a_tick_enqueue_it_once,
            skip_while_the_previous_run_is_unfinished,
            skip_counts_only_unfinished_runs,
            allow_enqueues_while_the_previous_run_is_unfinished,
            schedules_list_last_run_and_counters,
            ticks_are_trimmed_to_the_last_kept,
            skip_sees_a_run_deep_in_its_queue,
            a_tick_whose_unique_key_is_held_is_the_holders_run,
            // unique.rs
            unique_of_scheduled,
            unique_of_enqueued,
            unique_of_requeued,
            unique_of_running,
            unique_of_retrying,
            unique_of_paused,
            unique_of_paused_after_a_stint,
            unique_of_waiting,
            unique_of_succeeded,
            unique_of_dead,
            unique_of_cancelled,
            unique_ttl_frees_the_key,
            unique_within_one_batch,
            unique_freed_by_delete_and_by_the_end,
            jobs_without_a_unique_key_never_conflict,
            concurrent_pushes_of_a_unique_key_store_one,
            // flow.rs
            concurrency_limit_parks_the_excess,
            unpark_when_a_running_job_succeeds,
            unpark_when_a_running_job_retries,
            unpark_when_a_running_job_dies,
            unpark_when_a_running_job_is_requeued,
            unpark_when_a_running_job_pauses,
            unpark_when_a_running_job_is_cancelled,
            unpark_when_a_running_job_snoozes,
            unpark_when_a_running_job_splits,
            unpark_when_a_running_job_is_recovered,
            pause_and_resume_of_a_parked_job,
            cancel_and_delete_of_parked_jobs,
            clear_queue_takes_parked_jobs,
            concurrent_fetchers_respect_the_concurrency_limit,
            // rate.rs
            rate_limit_parks_until_the_window_has_room,
            rate_counts_every_stint_start,
            concurrency_and_rate_on_one_key,
            // snooze.rs
            snooze_schedules_the_job_with_its_checkpoint,
            // lifecycle.rs
            pause_of_scheduled,
            pause_of_enqueued,
            pause_of_running,
            pause_of_running_pause_pending,
            pause_of_running_cancel_pending,
            pause_of_waiting,
            pause_of_nested_waiting,
            pause_of_paused,
            pause_of_retrying,
            pause_of_succeeded,
            pause_of_dead,
            pause_of_cancelled,
            pause_of_child_enqueued,
            pause_of_child_running,
            pause_of_child_paused,
            pause_of_child_succeeded,
            pause_of_child_cancelled,
            resume_of_scheduled,
            resume_of_enqueued,
            resume_of_running,
            resume_of_running_pause_pending,
            resume_of_running_cancel_pending,
            resume_of_waiting,
            resume_of_nested_waiting,
            resume_of_paused,
            resume_of_retrying,
            resume_of_succeeded,
            resume_of_dead,
            resume_of_cancelled,
            resume_of_child_enqueued,
            resume_of_child_running,
            resume_of_child_paused,
            resume_of_child_succeeded,
            resume_of_child_cancelled,
            cancel_of_scheduled,
            cancel_of_enqueued,
            cancel_of_running,
            cancel_of_running_pause_pending,
            cancel_of_running_cancel_pending,
            cancel_of_waiting,
            cancel_of_nested_waiting,
            cancel_of_paused,
            cancel_of_retrying,
            cancel_of_succeeded,
            cancel_of_dead,
            cancel_of_cancelled,
            cancel_of_child_enqueued,
            cancel_of_child_running,
            cancel_of_child_paused,
            cancel_of_child_succeeded,
            cancel_of_child_cancelled,
            retry_of_scheduled,
            retry_of_enqueued,
            retry_of_running,
            retry_of_running_pause_pending,
            retry_of_running_cancel_pending,
            retry_of_waiting,
            retry_of_nested_waiting,
            retry_of_paused,
            retry_of_retrying,
            retry_of_succeeded,
            retry_of_dead,
            retry_of_cancelled,
            retry_of_child_enqueued,
            retry_of_child_running,
            retry_of_child_paused,
            retry_of_child_succeeded,
            retry_of_child_cancelled,
            delete_of_scheduled,
            delete_of_enqueued,
            delete_of_running,
            delete_of_running_pause_pending,
            delete_of_running_cancel_pending,
            delete_of_waiting,
            delete_of_nested_waiting,
            delete_of_paused,
            delete_of_retrying,
            delete_of_succeeded,
            delete_of_dead,
            delete_of_cancelled,
            delete_of_child_enqueued,
            delete_of_child_running,
            delete_of_child_paused,
            delete_of_child_succeeded,
            delete_of_child_cancelled,
            end_succeeded,
            end_succeeded_pause_pending,
            end_succeeded_cancel_pending,
            end_failed,
            end_failed_pause_pending,
            end_failed_cancel_pending,
            end_dead,
            end_dead_pause_pending,
            end_dead_cancel_pending,
            end_interrupted,
            end_interrupted_pause_pending,
            end_interrupted_cancel_pending,
            end_paused,
            end_paused_pause_pending,
            end_paused_cancel_pending,
            end_cancelled,
            end_cancelled_pause_pending,
            end_cancelled_cancel_pending,
            end_snoozed,
            end_snoozed_pause_pending,
            end_snoozed_cancel_pending,
            child_end_succeeded,
            child_end_succeeded_pause_pending,
            child_end_succeeded_cancel_pending,
            child_end_failed,
            child_end_failed_pause_pending,
            child_end_failed_cancel_pending,
            child_end_dead,
            child_end_dead_pause_pending,
            child_end_dead_cancel_pending,
            child_end_interrupted,
            child_end_interrupted_pause_pending,
            child_end_interrupted_cancel_pending,
            child_end_paused,
            child_end_paused_pause_pending,
            child_end_paused_cancel_pending,
            child_end_cancelled,
            child_end_cancelled_pause_pending,
            child_end_cancelled_cancel_pending,
            child_end_snoozed,
            child_end_snoozed_pause_pending,
            child_end_snoozed_cancel_pending,
            every_command_of_an_unknown_job,
            cancel_of_last_child_enqueued,
            cancel_of_last_child_paused,
            end_split,
            end_split_pause_pending,
            end_split_cancel_pending,
            end_lease_lost,
            end_lease_lost_pause_pending,
            end_lease_lost_cancel_pending,
            recover_nothing_pending,
            recover_pause_pending,
            recover_cancel_pending,
            recover_past_the_limit,
            recover_past_the_limit_pause_pending,
            recover_past_the_limit_cancel_pending,
            recover_none_allowed,
            recover_stopping_never_poison_pill,
            recover_stopping_then_dying,
            recover_stopping_pause_pending,
            child_recover_nothing_pending,
            child_recover_pause_pending,
            child_recover_cancel_pending,
            child_recover_none_allowed,
        );
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_cases {
    ($make:expr; $($case:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let store: ::std::sync::Arc<dyn $crate::Store> = ($make)().await;
                $crate::testing::run_case(
                    ::core::stringify!($case),
                    $crate::testing::cases::$case(store),
                )
                .await;
            }
        )*
    };
}

/// Runs one case, failing it when it takes longer than [`CASE_TIMEOUT`]
/// (a store that deadlocks should fail, not hang the test run).
pub async fn run_case(name: &str, case: impl Future<Output = ()>) {
    if tokio::time::timeout(CASE_TIMEOUT, case).await.is_err() {
        panic!("conformance case {name} did not finish within {CASE_TIMEOUT:?}");
    }
}

// ---- building jobs ----

/// A job of `kind` with `args` in `queue`, enqueued now, default options.
pub fn new_job(kind: &str, args: Value, queue: &str) -> NewJob {
    NewJob {
        jid: Jid::new(),
        kind: kind.to_owned(),
        args,
        options: JobOptions {
            queue: queue.to_owned(),
            ..JobOptions::default()
        },
        run_at: None,
    }
}

/// A job of kind "Test" in `queue` whose args say `{"n": n}`.
pub fn job_in(queue: &str, n: u64) -> NewJob {
    new_job("Test", json!({ "n": n }), queue)
}

/// A job as [`job_in`], with its own options (their queue is used).
pub fn job_with(options: JobOptions, n: u64) -> NewJob {
    NewJob {
        options,
        ..job_in("default", n)
    }
}

/// A job as [`job_in`] that runs no earlier than `delay` from now.
pub fn scheduled_in(queue: &str, n: u64, delay: Duration) -> NewJob {
    job_at(queue, n, SystemTime::now() + delay)
}

/// A job as [`job_in`] that runs no earlier than `at`.
pub fn job_at(queue: &str, n: u64, at: SystemTime) -> NewJob {
    NewJob {
        run_at: Some(at),
        ..job_in(queue, n)
    }
}

/// Pushes one job; returns its jid.
pub async fn push_one(store: &Arc<dyn Store>, job: NewJob) -> Jid {
    let jid = job.jid.clone();
    store.push(vec![job]).await.expect("push");
    jid
}

/// Pushes jobs one call each (so that their order is unambiguous); returns
/// their jids in order.
pub async fn push_each(store: &Arc<dyn Store>, jobs: Vec<NewJob>) -> Vec<Jid> {
    let mut jids = Vec::with_capacity(jobs.len());
    for job in jobs {
        jids.push(push_one(store, job).await);
    }
    jids
}

/// Queue names as `fetch` takes them.
pub fn queues(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

/// A checkpoint with a numeric cursor and `done` items.
pub fn checkpoint(cursor: u64, done: u64) -> Checkpoint {
    Checkpoint {
        cursor: Some(json!(cursor)),
        steps: vec![],
        done,
        total: Some(1000),
        rate: None,
        run_time_ms: 10 * done,
    }
}

/// An error with a chain of causes, as a failed stint reports it.
pub fn error_info(message: &str, attempt: u32) -> ErrorInfo {
    ErrorInfo::new(
        message,
        vec!["reading row 17".into(), "connection reset by peer".into()],
        attempt,
    )
}

// ---- processes ----

/// Registers a fresh process (random id) with this `ttl`; returns its id.
pub async fn register(store: &Arc<dyn Store>, ttl: Duration) -> String {
    register_for(store, &["default"], ttl).await
}

/// Registers a fresh process for `queues` with this `ttl`; returns its id.
pub async fn register_for(store: &Arc<dyn Store>, queues: &[&str], ttl: Duration) -> String {
    let info = ProcessInfo::for_this_process(self::queues(queues), 5);
    store.register(&info, ttl).await.expect("register");
    info.id
}

/// A long ttl: the process stays live for the whole case.
pub const LONG_TTL: Duration = Duration::from_secs(300);

// ---- fetching and completing ----

/// Fetches up to `limit` jobs from `queue` for `process`.
pub async fn fetch(
    store: &Arc<dyn Store>,
    process: &str,
    queue: &str,
    limit: usize,
) -> Vec<Leased> {
    store
        .fetch(process, &queues(&[queue]), limit)
        .await
        .expect("fetch")
}

/// Fetches exactly one job from `queue`; panics when there is none.
pub async fn fetch_one(store: &Arc<dyn Store>, process: &str, queue: &str) -> Leased {
    let mut got = fetch(store, process, queue, 1).await;
    assert_eq!(
        got.len(),
        1,
        "fetch(limit 1) from queue {queue:?} should return one job, got {}",
        got.len()
    );
    got.pop().unwrap()
}

/// Asserts that nothing can be fetched from `queue`.
pub async fn assert_nothing_to_fetch(store: &Arc<dyn Store>, process: &str, queue: &str) {
    let got = fetch(store, process, queue, 10).await;
    let jids: Vec<_> = got.iter().map(|l| l.job.jid.to_string()).collect();
    assert!(
        got.is_empty(),
        "queue {queue:?} should have nothing to fetch, got {jids:?}"
    );
}

/// Completes one stint; returns the refused jids.
pub async fn complete(
    store: &Arc<dyn Store>,
    lease: &Lease,
    checkpoint: Option<Checkpoint>,
    outcome: Outcome,
) -> Vec<Jid> {
    store
        .complete(vec![Completion {
            lease: lease.clone(),
            checkpoint,
            outcome,
        }])
        .await
        .expect("complete")
}

/// Completes one stint and asserts the store accepted it.
pub async fn complete_ok(
    store: &Arc<dyn Store>,
    lease: &Lease,
    checkpoint: Option<Checkpoint>,
    outcome: Outcome,
) {
    let label = outcome.label();
    let refused = complete(store, lease, checkpoint, outcome).await;
    assert!(
        refused.is_empty(),
        "completing the current lease {lease:?} ({label}) was refused"
    );
}

// ---- reading back ----

/// The job's detail; panics when the store does not know it.
pub async fn detail(store: &Arc<dyn Store>, jid: &Jid) -> JobDetail {
    store
        .job(jid)
        .await
        .expect("job")
        .unwrap_or_else(|| panic!("job {jid} should exist"))
}

/// The job's record; panics when the store does not know it.
pub async fn record(store: &Arc<dyn Store>, jid: &Jid) -> JobRecord {
    detail(store, jid).await.job
}

/// Asserts the job's state.
pub async fn assert_state(store: &Arc<dyn Store>, jid: &Jid, state: JobState) -> JobRecord {
    let job = record(store, jid).await;
    assert_eq!(job.state, state, "job {jid} state");
    job
}

/// Jids of leased jobs, in the order the store returned them.
pub fn jids(leased: &[Leased]) -> Vec<Jid> {
    leased.iter().map(|l| l.job.jid.clone()).collect()
}

/// Sleeps `ms` milliseconds.
pub async fn sleep_ms(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

/// Asserts a time in ms is `want`, give or take a millisecond (a store may
/// keep times as float seconds, as Sidekiq's layout does).
pub fn assert_ms(got: Option<i64>, want: i64, what: &str) {
    match got {
        Some(got) if (got - want).abs() <= 1 => {}
        other => panic!("{what} should be Some({want}), got {other:?}"),
    }
}
