//! Concurrency limits per key: a fetch leases a limited job only when
//! [`Limit::admit`] lets it start and parks the others in their queue's
//! order (`enqueued`, `blocked` set, not fetched again); every way a
//! running job of the key stops running unparks the key's oldest parked
//! job in the same step; operator commands take parked jobs out of the
//! parked set; `limits()` counts them. (Rate limits: `rate.rs`.)

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use crate::model::{
    now_ms, Blocked, Jid, JobOptions, JobRecord, JobState, KeyInfo, Limit, NewJob, WaitReason,
};
use crate::store::{CommandEffect, JobFilter, Leased, Outcome, Store};
use crate::testing::*;

/// The queue of the limited jobs.
const LIM: &str = "limited";
/// Far enough in the future that nothing becomes due during a case.
const HOUR_MS: i64 = 3_600_000;

/// A job of `queue` counting towards `limit`.
pub(crate) fn limited(queue: &str, limit: &Limit, n: u64) -> NewJob {
    job_with(
        JobOptions {
            queue: queue.to_owned(),
            limit: Some(limit.clone()),
            ..JobOptions::default()
        },
        n,
    )
}

/// What a job parked for `key`'s concurrency limit shows.
fn waits_for_a_slot(key: &str) -> Option<Blocked> {
    Some(Blocked {
        reason: WaitReason::Limit,
        key: key.to_owned(),
        until_ms: None,
    })
}

/// Asserts the job is enqueued and parked for `key`'s concurrency limit,
/// in `job()` and in `jobs()`; returns its record.
async fn assert_parked(store: &Arc<dyn Store>, jid: &Jid, key: &str, what: &str) -> JobRecord {
    let job = record(store, jid).await;
    assert_eq!(
        job.state,
        JobState::Enqueued,
        "{what}: a parked job stays enqueued"
    );
    assert_eq!(
        job.blocked,
        waits_for_a_slot(key),
        "{what}: job({jid}).blocked of a parked job"
    );
    let listed = listed(store, jid, &job.queue).await;
    assert_eq!(
        listed.blocked, job.blocked,
        "{what}: jobs() shows {jid} blocked as job() does"
    );
    job
}

/// Asserts the job is enqueued and not parked (fetchable).
pub(crate) async fn assert_unparked(store: &Arc<dyn Store>, jid: &Jid, what: &str) {
    let job = assert_state(store, jid, JobState::Enqueued).await;
    assert_eq!(job.blocked, None, "{what}: job({jid}) is no longer blocked");
    let listed = listed(store, jid, &job.queue).await;
    assert_eq!(listed.blocked, None, "{what}: jobs() shows {jid} unblocked");
}

/// The job as `jobs()` lists it among its queue's jobs.
pub(crate) async fn listed(store: &Arc<dyn Store>, jid: &Jid, queue: &str) -> JobRecord {
    let all = store
        .jobs(&JobFilter {
            queue: Some(queue.to_owned()),
            limit: 1000,
            ..JobFilter::default()
        })
        .await
        .expect("jobs");
    all.into_iter()
        .find(|j| &j.jid == jid)
        .unwrap_or_else(|| panic!("jobs() of queue {queue:?} should list {jid}"))
}

/// The `limits()` entry of `key`; panics when it is missing.
pub(crate) async fn key_info(store: &Arc<dyn Store>, key: &str) -> KeyInfo {
    let all = store.limits().await.expect("limits");
    all.iter()
        .find(|k| k.key == key)
        .cloned()
        .unwrap_or_else(|| panic!("limits() should list key {key:?}; it lists {all:?}"))
}

/// Asserts `limits()`'s counts of `key`: (running, waiting_limit,
/// waiting_rate).
async fn assert_counts(store: &Arc<dyn Store>, key: &str, want: (u64, u64, u64), what: &str) {
    let k = key_info(store, key).await;
    assert_eq!(
        (k.running, k.waiting_limit, k.waiting_rate),
        want,
        "{what}: limits() of {key}: (running, waiting_limit, waiting_rate)"
    );
}

/// Five jobs of key `tenant:b` (concurrency 2) in queue order, interleaved
/// with jobs of key `tenant:a` (concurrency 5) and jobs without a limit:
/// one fetch of 10 leases the two oldest of `tenant:b` and every other job,
/// and parks the three newest of `tenant:b` (enqueued, blocked, shown so
/// by `job()`, `jobs()` and `limits()`). A second fetch leases nothing and
/// leaves the parked jobs as they were; so does `promote_due` (its safety
/// net unparks only while the key has room).
pub async fn concurrency_limit_parks_the_excess(store: Arc<dyn Store>) {
    let b = Limit::key("tenant:b").concurrency(2);
    let a = Limit::key("tenant:a").concurrency(5);
    let p = register_for(&store, &[LIM], LONG_TTL).await;
    let jobs = vec![
        limited(LIM, &b, 1),
        limited(LIM, &a, 2),
        limited(LIM, &b, 3),
        job_in(LIM, 4),
        limited(LIM, &b, 5),
        limited(LIM, &a, 6),
        limited(LIM, &b, 7),
        job_in(LIM, 8),
        limited(LIM, &b, 9),
    ];
    let pushed = push_each(&store, jobs).await;
    let (bs, others): (Vec<_>, Vec<_>) = pushed
        .iter()
        .enumerate()
        .partition(|(i, _)| [0, 2, 4, 6, 8].contains(i));
    let bs: Vec<Jid> = bs.into_iter().map(|(_, j)| j.clone()).collect();
    let others: HashSet<Jid> = others.into_iter().map(|(_, j)| j.clone()).collect();

    let got: HashSet<Jid> = jids(&fetch(&store, &p, LIM, 10).await)
        .into_iter()
        .collect();
    let mut want = others.clone();
    want.extend(bs[..2].iter().cloned());
    assert_eq!(
        got, want,
        "a fetch of 10 leases the two oldest jobs of tenant:b (concurrency 2) and every other job"
    );
    let mut parked = Vec::new();
    for jid in &bs[2..] {
        parked.push(assert_parked(&store, jid, "tenant:b", "after the first fetch").await);
    }
    for jid in &bs[..2] {
        assert_eq!(
            record(&store, jid).await.blocked,
            None,
            "a running job is not blocked"
        );
    }

    assert_nothing_to_fetch(&store, &p, LIM).await;
    store.promote_due().await.expect("promote_due");
    for (jid, before) in bs[2..].iter().zip(&parked) {
        assert_eq!(
            &record(&store, jid).await,
            before,
            "a fetch, and promote_due while the key is full, leave a parked job as it was"
        );
    }

    let keys = store.limits().await.expect("limits");
    let want = vec![
        KeyInfo {
            key: "tenant:a".into(),
            concurrency: Some(5),
            rate: None,
            running: 2,
            waiting_limit: 0,
            waiting_rate: 0,
        },
        KeyInfo {
            key: "tenant:b".into(),
            concurrency: Some(2),
            rate: None,
            running: 2,
            waiting_limit: 3,
            waiting_rate: 0,
        },
    ];
    assert_eq!(keys, want, "limits(): every key with jobs, sorted by key");
}

/// How the first running job of a busy key stops running.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// `Outcome::Succeeded`.
    Succeeded,
    /// `Outcome::Retry`, an hour ahead.
    Retried,
    /// `Outcome::Dead`.
    Dead,
    /// `Outcome::Requeue`: back to the head of its queue.
    Requeued,
    /// `Outcome::Paused`.
    Paused,
    /// `Outcome::Cancelled`.
    Cancelled,
    /// `Outcome::Snooze`, an hour ahead.
    Snoozed,
    /// `Store::split`: the job waits for its child.
    Split,
    /// Its process expired and `recover_orphans` took the job back to the
    /// head of its queue.
    Recovered,
}

impl Stop {
    /// The state the stopped job is in.
    fn state(self) -> JobState {
        match self {
            Stop::Succeeded => JobState::Succeeded,
            Stop::Retried => JobState::Retrying,
            Stop::Dead => JobState::Dead,
            Stop::Requeued | Stop::Recovered => JobState::Enqueued,
            Stop::Paused => JobState::Paused,
            Stop::Cancelled => JobState::Cancelled,
            Stop::Snoozed => JobState::Scheduled,
            Stop::Split => JobState::Waiting,
        }
    }

    /// The outcome completing the stint, for the ends that `complete`
    /// writes.
    fn outcome(self) -> Option<Outcome> {
        Some(match self {
            Stop::Succeeded => Outcome::Succeeded { result: None },
            Stop::Retried => Outcome::Retry {
                error: error_info("boom", 1),
                retry_at_ms: now_ms() + HOUR_MS,
            },
            Stop::Dead => Outcome::Dead {
                error: error_info("boom for good", 1),
                reason: "boom for good".into(),
            },
            Stop::Requeued => Outcome::Requeue {
                reason: "shutdown".into(),
            },
            Stop::Paused => Outcome::Paused,
            Stop::Cancelled => Outcome::Cancelled,
            Stop::Snoozed => Outcome::Snooze {
                run_at_ms: now_ms() + HOUR_MS,
            },
            Stop::Split | Stop::Recovered => return None,
        })
    }
}

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Stop::Succeeded => "succeeds",
            Stop::Retried => "fails with a retry",
            Stop::Dead => "fails for good",
            Stop::Requeued => "is interrupted (requeued)",
            Stop::Paused => "ends as paused",
            Stop::Cancelled => "ends as cancelled",
            Stop::Snoozed => "snoozes",
            Stop::Split => "splits",
            Stop::Recovered => "is recovered from its dead process",
        };
        f.write_str(s)
    }
}

/// A key `k` (concurrency 2) with five jobs: the oldest leased by process
/// `a`, the second by process `b`, the three others parked.
struct BusyKey {
    a: String,
    b: String,
    first: Leased,
    second: Leased,
    parked: Vec<Jid>,
}

/// Pushes five jobs of key `k` (concurrency 2) and leases two of them, by
/// two processes; the other three are parked.
async fn busy_key(store: &Arc<dyn Store>) -> BusyKey {
    let k = Limit::key("k").concurrency(2);
    let a = register_for(store, &[LIM], LONG_TTL).await;
    let b = register_for(store, &[LIM], LONG_TTL).await;
    let pushed = push_each(store, (1..=5).map(|n| limited(LIM, &k, n)).collect()).await;
    let first = fetch_one(store, &a, LIM).await;
    assert_eq!(first.job.jid, pushed[0], "the oldest job is fetched first");
    let mut got = fetch(store, &b, LIM, 10).await;
    assert_eq!(
        jids(&got),
        vec![pushed[1].clone()],
        "with one job of k running, a fetch of 10 leases one more (concurrency 2)"
    );
    let second = got.pop().unwrap();
    let parked = pushed[2..].to_vec();
    for jid in &parked {
        assert_parked(store, jid, "k", "with two jobs of k running").await;
    }
    assert_counts(store, "k", (2, 3, 0), "two running, three parked").await;
    BusyKey {
        a,
        b,
        first,
        second,
        parked,
    }
}

/// The first running job of a busy key stops running as `stop` says: in
/// the same step exactly the oldest parked job of the key is unparked (the
/// others untouched), and it is fetched next, before a job pushed after
/// it. A job that went back to the head of the queue (requeued,
/// recovered) is fetched first instead, and the unparked one is parked
/// again by that fetch's rule.
pub async fn unpark_case(store: Arc<dyn Store>, stop: Stop) {
    let what = format!("a running job of k {stop}");
    let busy = busy_key(&store).await;
    let stopped = busy.first.job.jid.clone();
    let before_rest = [
        record(&store, &busy.parked[1]).await,
        record(&store, &busy.parked[2]).await,
    ];

    match stop.outcome() {
        Some(outcome) => {
            complete_ok(&store, &busy.first.lease, Some(checkpoint(1, 1)), outcome).await
        }
        None if stop == Stop::Split => {
            let mut cp = checkpoint(1, 1);
            cp.steps.push("parts".into());
            let child = job_in("limited-kids", 1);
            store
                .split(&busy.first.lease, &cp, "parts", vec![child])
                .await
                .expect("split");
        }
        None => {
            store.expire_process(&busy.a).await.expect("expire_process");
            let recovered = store.recover_orphans(3).await.expect("recover_orphans");
            let got: Vec<_> = recovered.iter().map(|r| r.jid.clone()).collect();
            assert_eq!(got, vec![stopped.clone()], "{what}: the dead process's job");
        }
    }
    let job = assert_state(&store, &stopped, stop.state()).await;
    assert_eq!(job.blocked, None, "{what}: the stopped job is not blocked");
    assert_unparked(
        &store,
        &busy.parked[0],
        &format!("{what}: the oldest parked job"),
    )
    .await;
    for (jid, before) in busy.parked[1..].iter().zip(&before_rest) {
        assert_eq!(
            &record(&store, jid).await,
            before,
            "{what}: only the oldest parked job is unparked; {jid} stays as it was"
        );
    }
    assert_counts(&store, "k", (1, 2, 0), &what).await;

    let later = push_one(&store, job_in(LIM, 99)).await;
    let back_at_head = matches!(stop, Stop::Requeued | Stop::Recovered);
    let next = fetch_one(&store, &busy.b, LIM).await.job.jid;
    let rest = jids(&fetch(&store, &busy.b, LIM, 10).await);
    if back_at_head {
        assert_eq!(
            next, stopped,
            "{what}: the stopped job is back at the head of its queue and fetched first"
        );
        assert_eq!(
            rest,
            vec![later],
            "{what}: k is full again: the unparked job is parked again, the later job leased"
        );
        assert_parked(
            &store,
            &busy.parked[0],
            "k",
            &format!("{what}: parked again"),
        )
        .await;
    } else {
        assert_eq!(
            next, busy.parked[0],
            "{what}: the unparked job is fetched next, before a job pushed after it"
        );
        assert_eq!(rest, vec![later], "{what}: then the later job");
    }
    let parked_after = if back_at_head { 3 } else { 2 };
    let after = format!("{what}, then two fetches");
    assert_counts(&store, "k", (2, parked_after, 0), &after).await;
}

macro_rules! unpark_cases {
    ($($name:ident: $stop:ident;)*) => {
        $(
            #[doc = concat!(
                "A running job of a key at its concurrency limit stops (`",
                stringify!($stop), "`): the key's oldest parked job is unparked."
            )]
            pub async fn $name(store: Arc<dyn Store>) {
                unpark_case(store, Stop::$stop).await
            }
        )*
    };
}

unpark_cases! {
    unpark_when_a_running_job_succeeds: Succeeded;
    unpark_when_a_running_job_retries: Retried;
    unpark_when_a_running_job_dies: Dead;
    unpark_when_a_running_job_is_requeued: Requeued;
    unpark_when_a_running_job_pauses: Paused;
    unpark_when_a_running_job_is_cancelled: Cancelled;
    unpark_when_a_running_job_snoozes: Snoozed;
    unpark_when_a_running_job_splits: Split;
    unpark_when_a_running_job_is_recovered: Recovered;
}

/// A parked job that is paused leaves the parked set: the next slot goes
/// to the next parked job. Resumed, it is at the head of its queue and
/// fetchable, judged again by the fetch.
pub async fn pause_and_resume_of_a_parked_job(store: Arc<dyn Store>) {
    let busy = busy_key(&store).await;
    let [p0, p1, p2] = [&busy.parked[0], &busy.parked[1], &busy.parked[2]];
    assert_eq!(
        store.pause(p0).await.expect("pause"),
        CommandEffect::Done(JobState::Paused)
    );
    let job = assert_state(&store, p0, JobState::Paused).await;
    assert_eq!(job.blocked, None, "a paused job is not blocked");
    assert_counts(&store, "k", (2, 2, 0), "one parked job paused").await;

    complete_ok(
        &store,
        &busy.first.lease,
        None,
        Outcome::Succeeded { result: None },
    )
    .await;
    assert_unparked(&store, p1, "the oldest job still parked").await;
    assert_parked(&store, p2, "k", "the newest parked job").await;
    assert_state(&store, p0, JobState::Paused).await;

    assert_eq!(
        store.resume(p0).await.expect("resume"),
        CommandEffect::Done(JobState::Enqueued)
    );
    assert_unparked(&store, p0, "a resumed job").await;
    let got = jids(&fetch(&store, &busy.b, LIM, 10).await);
    assert_eq!(
        got,
        vec![p0.clone()],
        "the resumed job (at the head) takes the free slot; the unparked one is parked again"
    );
    assert_parked(&store, p1, "k", "parked again by the fetch").await;
    assert_parked(&store, p2, "k", "still parked").await;
    assert_counts(&store, "k", (2, 2, 0), "after the fetch").await;
}

/// Cancelling or deleting a parked job takes it out of the parked set;
/// the remaining one gets the next slot. With nothing running nor parked,
/// the key leaves `limits()`.
pub async fn cancel_and_delete_of_parked_jobs(store: Arc<dyn Store>) {
    let busy = busy_key(&store).await;
    let [p0, p1, p2] = [&busy.parked[0], &busy.parked[1], &busy.parked[2]];
    assert_eq!(
        store.cancel(p0).await.expect("cancel"),
        CommandEffect::Done(JobState::Cancelled)
    );
    let job = assert_state(&store, p0, JobState::Cancelled).await;
    assert_eq!(job.blocked, None, "a cancelled job is not blocked");
    store.delete(p1).await.expect("delete");
    assert!(store.job(p1).await.expect("job").is_none(), "deleted");
    assert_counts(
        &store,
        "k",
        (2, 1, 0),
        "one parked job cancelled, one deleted",
    )
    .await;

    complete_ok(
        &store,
        &busy.first.lease,
        None,
        Outcome::Succeeded { result: None },
    )
    .await;
    assert_unparked(&store, p2, "the only job still parked").await;
    let got = fetch(&store, &busy.b, LIM, 10).await;
    assert_eq!(
        jids(&got),
        vec![p2.clone()],
        "the remaining job takes the slot"
    );
    for l in got.iter().chain([&busy.second]) {
        complete_ok(&store, &l.lease, None, Outcome::Succeeded { result: None }).await;
    }
    let keys = store.limits().await.expect("limits");
    assert!(
        keys.iter().all(|k| k.key != "k"),
        "a key with nothing running or parked is not listed: {keys:?}"
    );
}

/// Clearing a queue deletes its parked jobs too; the running jobs of the
/// key then end with nothing to unpark.
pub async fn clear_queue_takes_parked_jobs(store: Arc<dyn Store>) {
    let busy = busy_key(&store).await;
    assert_eq!(store.clear_queue(LIM).await.expect("clear_queue"), 3);
    for jid in &busy.parked {
        assert!(
            store.job(jid).await.expect("job").is_none(),
            "{jid} cleared"
        );
    }
    assert_counts(&store, "k", (2, 0, 0), "the parked jobs cleared").await;
    for l in [&busy.first, &busy.second] {
        complete_ok(&store, &l.lease, None, Outcome::Succeeded { result: None }).await;
    }
    let later = push_one(&store, limited(LIM, &Limit::key("k").concurrency(2), 9)).await;
    assert_eq!(jids(&fetch(&store, &busy.b, LIM, 10).await), vec![later]);
}

/// Processes fetching at once never lease more jobs of a key than its
/// concurrency.
pub async fn concurrent_fetchers_respect_the_concurrency_limit(store: Arc<dyn Store>) {
    const FETCHERS: usize = 6;
    let k = Limit::key("k").concurrency(2);
    let jobs: Vec<_> = (0..12).map(|n| limited(LIM, &k, n)).collect();
    store.push(jobs).await.expect("push");
    let mut tasks = Vec::new();
    for _ in 0..FETCHERS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let p = register_for(&store, &[LIM], LONG_TTL).await;
            let mut got = Vec::new();
            for _ in 0..3 {
                got.extend(jids(&fetch(&store, &p, LIM, 2).await));
                tokio::task::yield_now().await;
            }
            got
        }));
    }
    let mut leased = Vec::new();
    for t in tasks {
        leased.extend(t.await.expect("fetcher task"));
    }
    assert_eq!(leased.len(), 2, "leased {leased:?}: concurrency 2");
    let stats = store.stats().await.expect("stats");
    assert_eq!(stats.count(JobState::Running), 2);
    let k = key_info(&store, "k").await;
    assert_eq!(k.running, 2, "limits() of k after the race: {k:?}");
}
