//! Rate limits per key: a fetch parks the jobs of a key whose starts in
//! the sliding window are used up, with the time the window has room
//! again; `promote_due` unparks them once that time has come. Every stint
//! start counts; a key's concurrency limit is judged before its rate.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use super::flow::{assert_unparked, key_info, limited, listed};
use crate::model::{now_ms, Jid, JobRecord, JobState, Limit, RateLimit, WaitReason};
use crate::store::{Outcome, Store};
use crate::testing::*;

/// Rate 2 per second on key `r`, four jobs: a fetch leases two and parks
/// two with reason `rate` until the window has room (the first start + 1
/// s); `promote_due` before then unparks none, after it unparks both, and
/// the next fetch leases them.
pub async fn rate_limit_parks_until_the_window_has_room(store: Arc<dyn Store>) {
    let r = Limit::key("r").rate(2, Duration::from_secs(1));
    let p = register_for(&store, &["rated"], LONG_TTL).await;
    let pushed = push_each(&store, (1..=4).map(|n| limited("rated", &r, n)).collect()).await;
    let before = now_ms();
    let got: HashSet<Jid> = jids(&fetch(&store, &p, "rated", 10).await)
        .into_iter()
        .collect();
    let after = now_ms();
    assert_eq!(
        got,
        pushed[..2].iter().cloned().collect(),
        "rate 2 per second: a fetch of 10 leases the two oldest"
    );
    let mut until = Vec::new();
    for jid in &pushed[2..] {
        let job = assert_state(&store, jid, JobState::Enqueued).await;
        let blocked = job
            .blocked
            .unwrap_or_else(|| panic!("{jid} should be parked for the rate"));
        assert_eq!(
            (blocked.reason, blocked.key.as_str()),
            (WaitReason::Rate, "r"),
            "a job over the rate waits for the rate of r"
        );
        let t = blocked.until_ms.expect("a rate-parked job says until when");
        assert!(
            (before + 1000 - 2..=after + 1000 + 2).contains(&t),
            "until_ms {t} should be the first start + 1 s (starts within {before}..={after})"
        );
        assert_eq!(listed(&store, jid, "rated").await.blocked, Some(blocked));
        until.push(t);
    }
    let k = key_info(&store, "r").await;
    assert_eq!(
        (k.rate, k.running, k.waiting_limit, k.waiting_rate),
        (
            Some(RateLimit {
                limit: 2,
                period_ms: 1000
            }),
            2,
            0,
            2
        ),
        "limits() of r: (rate, running, waiting_limit, waiting_rate)"
    );

    store.promote_due().await.expect("promote_due");
    if now_ms() < until[0] {
        for jid in &pushed[2..] {
            let job = record(&store, jid).await;
            assert!(
                job.blocked.is_some(),
                "promote_due before the time leaves {jid} parked"
            );
        }
        assert_nothing_to_fetch(&store, &p, "rated").await;
    }
    let last = *until.iter().max().unwrap();
    sleep_ms((last - now_ms() + 30).clamp(0, 1200) as u64).await;
    store.promote_due().await.expect("promote_due");
    for jid in &pushed[2..] {
        assert_unparked(&store, jid, "promote_due after the window").await;
    }
    let got: HashSet<Jid> = jids(&fetch(&store, &p, "rated", 10).await)
        .into_iter()
        .collect();
    assert_eq!(
        got,
        pushed[2..].iter().cloned().collect(),
        "the window has room again: both are leased"
    );
}

/// The reason and key a parked job shows.
fn parked_for(job: &JobRecord) -> Option<(WaitReason, &str)> {
    job.blocked.as_ref().map(|b| (b.reason, b.key.as_str()))
}

/// Every stint start counts towards the rate, a second stint of the same
/// job too: rate 2 per minute, one job run twice (interrupted once), then
/// a new job of the key is parked for the rate.
pub async fn rate_counts_every_stint_start(store: Arc<dyn Store>) {
    let r = Limit::key("r").rate(2, Duration::from_secs(60));
    let p = register_for(&store, &["rated"], LONG_TTL).await;
    let first = push_one(&store, limited("rated", &r, 1)).await;
    let leased = fetch_one(&store, &p, "rated").await;
    let reason = "shutdown".into();
    complete_ok(&store, &leased.lease, None, Outcome::Requeue { reason }).await;
    let again = fetch_one(&store, &p, "rated").await;
    assert_eq!(
        (&again.job.jid, again.lease.stint),
        (&first, 2),
        "the second stint of the job starts (2 starts of 2)"
    );
    let second = push_one(&store, limited("rated", &r, 2)).await;
    assert_nothing_to_fetch(&store, &p, "rated").await;
    let job = assert_state(&store, &second, JobState::Enqueued).await;
    assert_eq!(
        parked_for(&job),
        Some((WaitReason::Rate, "r")),
        "two stint starts of one job used up the rate of 2 per minute"
    );
    let k = key_info(&store, "r").await;
    assert_eq!((k.running, k.waiting_rate), (1, 1), "limits() of r: {k:?}");
}

/// A key with both limits: the concurrency is judged first (a job over it
/// waits for a slot even when the rate has room), and a job waiting for
/// the rate is not unparked when a running job of its key ends: only its
/// time unparks it.
pub async fn concurrency_and_rate_on_one_key(store: Arc<dyn Store>) {
    let p = register_for(&store, &["both", "both-rated"], LONG_TTL).await;

    let slot = Limit::key("c1")
        .concurrency(1)
        .rate(5, Duration::from_secs(60));
    let pushed = push_each(&store, (1..=3).map(|n| limited("both", &slot, n)).collect()).await;
    let got = fetch(&store, &p, "both", 10).await;
    assert_eq!(
        jids(&got),
        vec![pushed[0].clone()],
        "concurrency 1: one leased"
    );
    for jid in &pushed[1..] {
        let job = record(&store, jid).await;
        assert_eq!(
            parked_for(&job),
            Some((WaitReason::Limit, "c1")),
            "concurrency 1 is full, the rate of 5 is not: {jid} waits for a slot"
        );
    }
    complete_ok(
        &store,
        &got[0].lease,
        None,
        Outcome::Succeeded { result: None },
    )
    .await;
    assert_unparked(&store, &pushed[1], "the slot freed").await;
    let next = fetch(&store, &p, "both", 10).await;
    assert_eq!(
        jids(&next),
        vec![pushed[1].clone()],
        "the next job takes the slot"
    );

    let rate = Limit::key("c2")
        .concurrency(5)
        .rate(1, Duration::from_secs(60));
    let pushed = push_each(
        &store,
        (1..=2).map(|n| limited("both-rated", &rate, n)).collect(),
    )
    .await;
    let got = fetch(&store, &p, "both-rated", 10).await;
    assert_eq!(
        jids(&got),
        vec![pushed[0].clone()],
        "rate 1 per minute: one leased"
    );
    let waiting = record(&store, &pushed[1]).await;
    assert_eq!(
        parked_for(&waiting),
        Some((WaitReason::Rate, "c2")),
        "concurrency 5 has room, the rate of 1 does not: the job waits for the rate"
    );
    complete_ok(
        &store,
        &got[0].lease,
        None,
        Outcome::Succeeded { result: None },
    )
    .await;
    store.promote_due().await.expect("promote_due");
    assert_eq!(
        record(&store, &pushed[1]).await,
        waiting,
        "a job waiting for the rate stays parked when a running job of its key ends"
    );
    assert_nothing_to_fetch(&store, &p, "both-rated").await;
}
