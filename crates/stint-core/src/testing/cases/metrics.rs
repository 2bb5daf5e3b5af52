//! Metrics counters: stint ends and recoveries counted by kind and queue,
//! in the transitions themselves, with a histogram of stint durations.

use std::sync::Arc;

use serde_json::json;

use crate::metrics::STINT_SECONDS_BUCKETS;
use crate::model::JobState;
use crate::store::{Completion, Outcome, Store};
use crate::testing::*;

/// Every stint end is counted once by its outcome (succeeded → processed;
/// retry or dead → failed; requeue, paused, cancelled → interrupted), every
/// recovery as recovered, by kind and queue; refused completions are not
/// counted; durations land in the right buckets.
pub async fn metrics_count_stint_ends_by_kind_and_queue(store: Arc<dyn Store>) {
    let empty = store.metrics().await.expect("metrics");
    assert_eq!(empty.totals().processed, 0, "a new store counts nothing");

    let p = register_for(&store, &["q1", "q2"], LONG_TTL).await;
    let a_jobs: Vec<_> = (0..6)
        .map(|n| new_job("Alpha", json!({ "n": n }), "q1"))
        .collect();
    store.push(a_jobs).await.expect("push");
    push_one(&store, new_job("Beta", json!({}), "q2")).await;

    // One batch of six completions of Alpha in q1, one of each outcome,
    // after about 150 ms of running.
    let leased = fetch(&store, &p, "q1", 6).await;
    assert_eq!(leased.len(), 6);
    sleep_ms(150).await;
    let outcomes = [
        Outcome::Succeeded { result: None },
        Outcome::Retry {
            error: error_info("flaky", 1),
            retry_at_ms: crate::model::now_ms() + 3_600_000,
        },
        Outcome::Dead {
            error: error_info("broken", 1),
            reason: "broken".into(),
        },
        Outcome::Requeue {
            reason: "shutdown".into(),
        },
        Outcome::Paused,
        Outcome::Cancelled,
    ];
    let batch: Vec<Completion> = leased
        .iter()
        .zip(outcomes)
        .map(|(l, outcome)| Completion {
            lease: l.lease.clone(),
            checkpoint: None,
            outcome,
        })
        .collect();
    let stale = batch[0].lease.clone();
    assert!(store.complete(batch).await.expect("complete").is_empty());
    // A second end of the same stint is refused, and not counted.
    let refused = complete(&store, &stale, None, Outcome::Succeeded { result: None }).await;
    assert_eq!(refused, vec![stale.jid.clone()]);

    // Beta in q2: its process dies, the job is recovered, then succeeds
    // quickly.
    let dying = register_for(&store, &["q2"], LONG_TTL).await;
    let beta = fetch_one(&store, &dying, "q2").await;
    store.expire_process(&dying).await.expect("expire");
    let recovered = store.recover_orphans(3).await.expect("recover");
    assert_eq!(recovered.len(), 1);
    assert_eq!(recovered[0].jid, beta.job.jid);
    let again = fetch_one(&store, &p, "q2").await;
    complete_ok(
        &store,
        &again.lease,
        None,
        Outcome::Succeeded { result: None },
    )
    .await;
    assert_state(&store, &beta.job.jid, JobState::Succeeded).await;

    let m = store.metrics().await.expect("metrics");
    let a = m
        .get("Alpha", "q1")
        .unwrap_or_else(|| panic!("counters for (Alpha, q1): {m:?}"));
    assert_eq!(
        (a.processed, a.failed, a.interrupted, a.recovered),
        (1, 2, 3, 0),
        "Alpha in q1: {a:?}"
    );
    let h = &a.stint_seconds;
    assert_eq!(h.count, 6, "six stints timed: {h:?}");
    assert!(
        h.sum_ms >= 6 * 140 && h.sum_ms < 6 * 30_000,
        "six stints of about 150 ms: {h:?}"
    );
    let cumulative = h.cumulative();
    assert_eq!(cumulative.len(), STINT_SECONDS_BUCKETS.len() + 1);
    assert_eq!(cumulative[0], 0, "none took 0.1 s or less: {h:?}");
    assert_eq!(*cumulative.last().unwrap(), 6, "+Inf counts them all");
    assert!(
        cumulative.windows(2).all(|w| w[0] <= w[1]),
        "cumulative: {cumulative:?}"
    );

    let b = m
        .get("Beta", "q2")
        .unwrap_or_else(|| panic!("counters for (Beta, q2): {m:?}"));
    assert_eq!(
        (b.processed, b.failed, b.interrupted, b.recovered),
        (1, 0, 0, 1),
        "Beta in q2: {b:?}"
    );
    assert_eq!(b.stint_seconds.count, 1, "a recovery is not a timed stint");
    assert!(m.get("Alpha", "q2").is_none() && m.get("Beta", "q1").is_none());

    let t = m.totals();
    assert_eq!((t.processed, t.failed, t.recovered), (2, 2, 1));
    assert_eq!(t.stint_seconds.count, 7);
}
