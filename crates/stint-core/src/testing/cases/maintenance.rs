//! Maintenance: scheduled and retrying jobs promoted when due.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::model::{to_ms, JobState};
use crate::store::Store;
use crate::testing::*;

/// A job pushed with a future `run_at` is scheduled and not fetched; once
/// due, `promote_due` enqueues it. A `run_at` in the past enqueues at once.
pub async fn scheduled_job_waits_until_due(store: Arc<dyn Store>) {
    let p = register(&store, LONG_TTL).await;
    let at = SystemTime::now() + Duration::from_millis(300);
    let jid = push_one(&store, job_at("default", 0, at)).await;
    let job = assert_state(&store, &jid, JobState::Scheduled).await;
    assert_ms(job.run_at_ms, to_ms(at), "run_at_ms (the pushed run_at)");
    assert_nothing_to_fetch(&store, &p, "default").await;
    assert_eq!(
        store.promote_due().await.expect("promote"),
        0,
        "not due yet"
    );
    assert_state(&store, &jid, JobState::Scheduled).await;
    let stats = store.stats().await.expect("stats");
    assert_eq!(stats.count(JobState::Scheduled), 1);
    assert_eq!(stats.count(JobState::Enqueued), 0);

    sleep_ms(500).await;
    assert_nothing_to_fetch(&store, &p, "default").await;
    assert_eq!(store.promote_due().await.expect("promote"), 1, "due now");
    assert_eq!(store.promote_due().await.expect("promote"), 0, "idempotent");
    assert_state(&store, &jid, JobState::Enqueued).await;
    let leased = fetch_one(&store, &p, "default").await;
    assert_eq!(leased.job.jid, jid);
    assert_eq!(leased.lease.stint, 1);

    let past = SystemTime::now() - Duration::from_secs(60);
    let jid = push_one(&store, job_at("default", 1, past)).await;
    assert_state(&store, &jid, JobState::Enqueued).await;
    assert_eq!(fetch_one(&store, &p, "default").await.job.jid, jid);
}

/// A promoted job goes to the tail of its queue: jobs enqueued before it
/// was due come first, even though it was pushed earlier.
pub async fn promote_due_appends_to_tail(store: Arc<dyn Store>) {
    let p = register(&store, LONG_TTL).await;
    let scheduled = push_one(
        &store,
        scheduled_in("default", 0, Duration::from_millis(200)),
    )
    .await;
    let enqueued = push_each(&store, (1..3).map(|n| job_in("default", n)).collect()).await;
    sleep_ms(400).await;
    assert_eq!(store.promote_due().await.expect("promote"), 1);
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(fetch_one(&store, &p, "default").await.job.jid);
    }
    assert_eq!(
        got,
        vec![enqueued[0].clone(), enqueued[1].clone(), scheduled],
        "the promoted job comes after the jobs already waiting"
    );
}
