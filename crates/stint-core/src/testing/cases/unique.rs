//! Unique jobs: a push whose unique key is held answers the holder's jid
//! and stores nothing, exactly when [`Unique::refuses`] says so for the
//! holder's state; a key is freed by its scope, its ttl, or its holder's
//! deletion; a batch and concurrent pushes answer one job per key.
//!
//! Each holder is put in its state through the Store API only, and the
//! store's answer is compared with core's rule for that state.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::model::{now_ms, Jid, JobOptions, JobState, NewJob, Pushed, Unique, UniqueScope};
use crate::store::{CommandEffect, JobFilter, Outcome, Store};
use crate::testing::*;

/// Far enough in the future that nothing becomes due during a case.
const HOUR: Duration = Duration::from_secs(3600);

/// A job of `queue` carrying `unique`.
fn keyed(queue: &str, unique: &Unique, n: u64) -> NewJob {
    job_with(
        JobOptions {
            queue: queue.to_owned(),
            unique: Some(unique.clone()),
            ..JobOptions::default()
        },
        n,
    )
}

/// Pushes `jobs` in one call and returns the store's answers.
async fn push_all(store: &Arc<dyn Store>, jobs: Vec<NewJob>) -> Vec<Pushed> {
    store.push(jobs).await.expect("push")
}

/// Pushes `job` alone and asserts it was stored.
async fn push_new(store: &Arc<dyn Store>, job: NewJob, what: &str) -> Jid {
    let jid = job.jid.clone();
    let answer = push_all(store, vec![job]).await;
    assert_eq!(
        answer,
        vec![Pushed::New(jid.clone())],
        "{what}: the push is stored"
    );
    jid
}

/// Pushes `job` alone and asserts it is a duplicate of `holder` under
/// `key`, and that nothing was stored.
async fn push_duplicate(store: &Arc<dyn Store>, job: NewJob, holder: &Jid, key: &str, what: &str) {
    let jid = job.jid.clone();
    let answer = push_all(store, vec![job]).await;
    assert_eq!(
        answer,
        vec![Pushed::Duplicate {
            jid: holder.clone(),
            key: key.to_owned(),
        }],
        "{what}: the push is a duplicate of the holder"
    );
    assert_not_stored(store, &jid, what).await;
}

/// Asserts the store has no job `jid`.
async fn assert_not_stored(store: &Arc<dyn Store>, jid: &Jid, what: &str) {
    let job = store.job(jid).await.expect("job");
    assert!(
        job.is_none(),
        "{what}: the duplicate {jid} must not be stored, found {job:?}"
    );
}

/// Where a unique case puts the job that holds the key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Holder {
    /// Pushed with `run_at` an hour ahead.
    Scheduled,
    /// Pushed, never fetched.
    Enqueued,
    /// Fetched, then interrupted: enqueued again with a stint behind it.
    Requeued,
    /// Fetched.
    Running,
    /// Its stint failed with a retry an hour ahead.
    Retrying,
    /// Paused by an operator before it ever started.
    Paused,
    /// Its stint ended as paused.
    PausedAfterAStint,
    /// A split parent waiting for its child.
    Waiting,
    /// Its stint succeeded.
    Succeeded,
    /// Its stint failed for good.
    Dead,
    /// Cancelled by an operator before it ever started.
    Cancelled,
}

impl Holder {
    /// The holder's state once placed.
    pub fn state(self) -> JobState {
        match self {
            Holder::Scheduled => JobState::Scheduled,
            Holder::Enqueued | Holder::Requeued => JobState::Enqueued,
            Holder::Running => JobState::Running,
            Holder::Retrying => JobState::Retrying,
            Holder::Paused | Holder::PausedAfterAStint => JobState::Paused,
            Holder::Waiting => JobState::Waiting,
            Holder::Succeeded => JobState::Succeeded,
            Holder::Dead => JobState::Dead,
            Holder::Cancelled => JobState::Cancelled,
        }
    }
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Holder::Requeued => f.write_str("an enqueued holder that ran one stint"),
            Holder::Paused => f.write_str("a holder paused before it started"),
            Holder::PausedAfterAStint => f.write_str("a holder paused after a stint"),
            Holder::Waiting => f.write_str("a waiting split parent holder"),
            other => write!(f, "a {} holder", other.state()),
        }
    }
}

/// Pushes a job of `queue` with `unique` and puts it in `holder`'s state
/// through the Store API; returns its jid.
async fn place(
    store: &Arc<dyn Store>,
    p: &str,
    holder: Holder,
    queue: &str,
    unique: &Unique,
) -> Jid {
    let mut job = keyed(queue, unique, 1);
    if holder == Holder::Scheduled {
        job.run_at = Some(SystemTime::now() + HOUR);
    }
    let jid = push_new(store, job, &format!("the first push of {holder}")).await;
    match holder {
        Holder::Scheduled | Holder::Enqueued => {}
        Holder::Paused => {
            let effect = store.pause(&jid).await.expect("pause");
            assert_eq!(effect, CommandEffect::Done(JobState::Paused));
        }
        Holder::Cancelled => {
            let effect = store.cancel(&jid).await.expect("cancel");
            assert_eq!(effect, CommandEffect::Done(JobState::Cancelled));
        }
        _ => {
            let leased = fetch_one(store, p, queue).await;
            assert_eq!(leased.job.jid, jid, "the holder is fetched");
            let lease = &leased.lease;
            let cp = Some(checkpoint(1, 1));
            match holder {
                Holder::Running => {}
                Holder::Requeued => {
                    let reason = "shutdown".into();
                    complete_ok(store, lease, cp, Outcome::Requeue { reason }).await
                }
                Holder::Retrying => {
                    let outcome = Outcome::Retry {
                        error: error_info("boom", 1),
                        retry_at_ms: now_ms() + HOUR.as_millis() as i64,
                    };
                    complete_ok(store, lease, cp, outcome).await
                }
                Holder::PausedAfterAStint => complete_ok(store, lease, cp, Outcome::Paused).await,
                Holder::Waiting => {
                    let child = job_in(&format!("{queue}-kids"), 1);
                    let mut cp = checkpoint(1, 1);
                    cp.steps.push("parts".into());
                    store
                        .split(lease, &cp, "parts", vec![child])
                        .await
                        .expect("split");
                }
                Holder::Succeeded => {
                    complete_ok(store, lease, cp, Outcome::Succeeded { result: None }).await
                }
                Holder::Dead => {
                    let outcome = Outcome::Dead {
                        error: error_info("boom for good", 1),
                        reason: "boom for good".into(),
                    };
                    complete_ok(store, lease, cp, outcome).await
                }
                _ => unreachable!("{holder:?} is placed without a stint"),
            }
        }
    }
    assert_state(store, &jid, holder.state()).await;
    jid
}

/// For every scope: a holder of a key of that scope is put in `holder`'s
/// state, and a second push of the key must be `Duplicate` naming the
/// holder (nothing stored, the holder untouched) exactly when
/// [`Unique::refuses`] says so for the holder's state and stints, and be
/// stored otherwise.
pub async fn unique_case(store: Arc<dyn Store>, holder: Holder) {
    let p = register(&store, LONG_TTL).await;
    for scope in UniqueScope::ALL {
        let what = format!("a second push of a {scope} key held by {holder}");
        let queue = format!("unique-{scope}");
        let unique = Unique::new(format!("report:{scope}")).scope(scope);
        let holder_jid = place(&store, &p, holder, &queue, &unique).await;
        let held = record(&store, &holder_jid).await;
        assert_eq!(
            held.options.unique.as_ref(),
            Some(&unique),
            "{what}: the holder keeps its unique key in its options"
        );
        let refuses = unique.refuses(held.state, held.stints, held.created_at_ms, now_ms());
        let second = keyed(&queue, &unique, 2);
        if refuses {
            push_duplicate(&store, second, &holder_jid, &unique.key, &what).await;
            assert_eq!(
                record(&store, &holder_jid).await,
                held,
                "{what}: a duplicate push leaves the holder untouched"
            );
        } else {
            let jid = push_new(&store, second, &format!("{what} (core: not refused)")).await;
            assert_state(&store, &jid, JobState::Enqueued).await;
            assert_state(&store, &holder_jid, held.state).await;
        }
    }
}

macro_rules! unique_cases {
    ($($name:ident: $holder:ident;)*) => {
        $(
            #[doc = concat!(
                "A second push of a unique key, in every scope, while its holder is `",
                stringify!($holder), "`, as `Unique::refuses` rules."
            )]
            pub async fn $name(store: Arc<dyn Store>) {
                unique_case(store, Holder::$holder).await
            }
        )*
    };
}

unique_cases! {
    unique_of_scheduled: Scheduled;
    unique_of_enqueued: Enqueued;
    unique_of_requeued: Requeued;
    unique_of_running: Running;
    unique_of_retrying: Retrying;
    unique_of_paused: Paused;
    unique_of_paused_after_a_stint: PausedAfterAStint;
    unique_of_waiting: Waiting;
    unique_of_succeeded: Succeeded;
    unique_of_dead: Dead;
    unique_of_cancelled: Cancelled;
}

/// A key with a ttl is refused while the ttl runs (the holder still
/// enqueued), and freed once it has passed, whatever the holder's state;
/// the job then stored holds the key for its own ttl.
pub async fn unique_ttl_frees_the_key(store: Arc<dyn Store>) {
    const TTL_MS: u64 = 800;
    let unique = Unique::new("digest:daily").ttl(Duration::from_millis(TTL_MS));
    let first = push_new(&store, keyed("ttl", &unique, 1), "the first push").await;
    let held = record(&store, &first).await;
    let second = keyed("ttl", &unique, 2);
    let answer = push_all(&store, vec![second.clone()]).await;
    let after = now_ms();
    assert!(
        after < held.created_at_ms + TTL_MS as i64,
        "the second push ended {} ms after the first: too late to judge the ttl",
        after - held.created_at_ms
    );
    assert_eq!(
        answer,
        vec![Pushed::Duplicate {
            jid: first.clone(),
            key: unique.key.clone(),
        }],
        "a push within the ttl is a duplicate of the holder"
    );
    assert_not_stored(&store, &second.jid, "a push within the ttl").await;

    let wait = (held.created_at_ms + TTL_MS as i64 + 50 - now_ms()).max(0);
    sleep_ms(wait as u64).await;
    assert!(
        !unique.refuses(JobState::Enqueued, 0, held.created_at_ms, now_ms()),
        "core: the ttl has passed"
    );
    let third = push_new(&store, keyed("ttl", &unique, 3), "a push after the ttl").await;
    assert_state(&store, &first, JobState::Enqueued).await;
    push_duplicate(
        &store,
        keyed("ttl", &unique, 4),
        &third,
        &unique.key,
        "a push right after the new holder's",
    )
    .await;
}

/// In one push, a later job with the key of an earlier one of the same
/// batch is its duplicate; jobs without a key and with other keys are
/// stored; the answers are one per job, in order.
pub async fn unique_within_one_batch(store: Arc<dyn Store>) {
    let a = Unique::new("sync:a");
    let b = Unique::new("sync:b");
    let batch = vec![
        keyed("batch", &a, 0),
        keyed("batch", &a, 1),
        job_in("batch", 2),
        keyed("batch", &b, 3),
        keyed("batch", &a, 4),
        job_in("batch", 5),
        keyed("batch", &b, 6),
    ];
    let jid = |i: usize| batch[i].jid.clone();
    let dup = |i: usize, key: &Unique| Pushed::Duplicate {
        jid: jid(i),
        key: key.key.clone(),
    };
    let want = vec![
        Pushed::New(jid(0)),
        dup(0, &a),
        Pushed::New(jid(2)),
        Pushed::New(jid(3)),
        dup(0, &a),
        Pushed::New(jid(5)),
        dup(3, &b),
    ];
    let answer = push_all(&store, batch.clone()).await;
    assert_eq!(answer, want, "one answer per job of the batch, in order");
    for i in [1, 4, 6] {
        assert_not_stored(&store, &jid(i), "a duplicate within the batch").await;
    }
    let p = register_for(&store, &["batch"], LONG_TTL).await;
    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(fetch_one(&store, &p, "batch").await.job.jid);
    }
    assert_eq!(
        got,
        vec![jid(0), jid(2), jid(3), jid(5)],
        "the stored jobs of the batch, in push order"
    );
    assert_nothing_to_fetch(&store, &p, "batch").await;
}

/// A holder that is deleted frees its key at once; so does one that
/// finished (until_done). A key is then held by the job stored after it,
/// not by the old holder; keys are the same in every queue.
pub async fn unique_freed_by_delete_and_by_the_end(store: Arc<dyn Store>) {
    let unique = Unique::new("import:/data/2026-11.csv");
    let first = push_new(&store, keyed("imports", &unique, 1), "the first push").await;
    push_duplicate(
        &store,
        keyed("other-queue", &unique, 2),
        &first,
        &unique.key,
        "a push of the key into another queue",
    )
    .await;
    store.delete(&first).await.expect("delete");
    let second = push_new(
        &store,
        keyed("imports", &unique, 3),
        "a push after the holder was deleted",
    )
    .await;
    push_duplicate(
        &store,
        keyed("imports", &unique, 4),
        &second,
        &unique.key,
        "a push while the new holder waits",
    )
    .await;

    let p = register_for(&store, &["imports"], LONG_TTL).await;
    let leased = fetch_one(&store, &p, "imports").await;
    assert_eq!(leased.job.jid, second);
    complete_ok(
        &store,
        &leased.lease,
        None,
        Outcome::Succeeded { result: None },
    )
    .await;
    let third = push_new(
        &store,
        keyed("imports", &unique, 5),
        "a push after the holder succeeded",
    )
    .await;
    push_duplicate(
        &store,
        keyed("imports", &unique, 6),
        &third,
        &unique.key,
        "a push while the newest holder waits (not the succeeded one)",
    )
    .await;
}

/// Jobs without a unique key never conflict, whatever their kind and
/// args, nor with keyed jobs; different keys never conflict.
pub async fn jobs_without_a_unique_key_never_conflict(store: Arc<dyn Store>) {
    let keyed_job = keyed("plain", &Unique::new("k"), 0);
    let holder = push_new(&store, keyed_job, "a keyed job").await;
    for n in 0..3 {
        // The same kind and args each time.
        push_new(&store, job_in("plain", 7), &format!("plain job {n}")).await;
    }
    push_new(&store, keyed("plain", &Unique::new("k2"), 0), "another key").await;
    let batch: Vec<_> = (0..3).map(|_| job_in("plain", 7)).collect();
    let want: Vec<_> = batch.iter().map(|j| Pushed::New(j.jid.clone())).collect();
    assert_eq!(
        push_all(&store, batch).await,
        want,
        "a batch of identical jobs without keys"
    );
    let listed = store
        .jobs(&JobFilter {
            queue: Some("plain".into()),
            ..JobFilter::default()
        })
        .await
        .expect("jobs");
    assert_eq!(listed.len(), 8, "every job is stored");
    assert_state(&store, &holder, JobState::Enqueued).await;
}

/// Concurrent pushes of one key store exactly one job; every other push is
/// a duplicate naming it.
pub async fn concurrent_pushes_of_a_unique_key_store_one(store: Arc<dyn Store>) {
    const PUSHERS: usize = 8;
    let unique = Unique::new("rebuild:index");
    let mut tasks = Vec::new();
    for n in 0..PUSHERS {
        let store = store.clone();
        let job = keyed("race", &unique, n as u64);
        tasks.push(tokio::spawn(async move {
            let jid = job.jid.clone();
            (jid, push_all(&store, vec![job]).await)
        }));
    }
    let mut stored = Vec::new();
    let mut holders = HashSet::new();
    for t in tasks {
        let (jid, answer) = t.await.expect("pusher task");
        assert_eq!(answer.len(), 1, "one answer for one job");
        match &answer[0] {
            Pushed::New(j) => {
                assert_eq!(j, &jid, "a stored job answers its own jid");
                stored.push(jid);
            }
            Pushed::Duplicate { jid: holder, key } => {
                assert_eq!(key, &unique.key);
                holders.insert(holder.clone());
                assert_not_stored(&store, &jid, "a concurrent duplicate").await;
            }
        }
    }
    assert_eq!(stored.len(), 1, "exactly one push stored: {stored:?}");
    let all: HashSet<_> = stored.iter().cloned().collect();
    assert!(
        holders.is_subset(&all),
        "every duplicate names the stored job {stored:?}; they named {holders:?}"
    );
    let stats = store.stats().await.expect("stats");
    assert_eq!(stats.count(JobState::Enqueued), 1, "one job in the store");
}

#[cfg(test)]
mod tests {
    /// Every case of the flow-control modules (this one, `flow`, `rate`,
    /// `snooze`) is run by `conformance_tests!`.
    #[test]
    fn every_flow_case_is_registered() {
        let registry = include_str!("../mod.rs");
        let sources = [
            include_str!("unique.rs"),
            include_str!("flow.rs"),
            include_str!("rate.rs"),
            include_str!("snooze.rs"),
        ];
        let mut names = Vec::new();
        for src in sources {
            for line in src.lines() {
                let line = line.trim();
                if let Some(rest) = line.strip_prefix("pub async fn ") {
                    if rest.contains("(store: Arc<dyn Store>)") && !rest.starts_with('$') {
                        names.push(rest.split('(').next().unwrap().to_owned());
                    }
                } else if let Some((name, _)) = line.split_once(": ") {
                    let generated =
                        name.starts_with("unique_of_") || name.starts_with("unpark_when_");
                    if generated && line.ends_with(';') {
                        names.push(name.to_owned());
                    }
                }
            }
        }
        assert!(names.len() > 20, "found {names:?}");
        for name in names {
            assert!(
                registry.contains(&format!("            {name},\n")),
                "{name} is not listed in conformance_tests!"
            );
        }
    }
}
