//! Pushing and fetching: what a fetch returns, in which order, from which
//! queues, and that no job is ever leased twice.

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::json;

use crate::model::{Backoff, Checkpoint, JobOptions, JobState};
use crate::store::Store;
use crate::testing::*;

/// A pushed job is enqueued; a fetch leases it (running, stint 1, held by
/// the fetching process) and a second fetch finds nothing.
pub async fn push_then_fetch(store: Arc<dyn Store>) {
    let p = register(&store, LONG_TTL).await;
    let options = JobOptions {
        queue: "mail".into(),
        max_attempts: 7,
        backoff: Backoff {
            base_ms: 1234,
            max_ms: 99_000,
            jitter: 0.0,
        },
        max_stint_ms: Some(60_000),
        ..Default::default()
    };
    let new = crate::model::NewJob {
        kind: "SendMail".into(),
        args: json!({ "to": "ada@example.com", "ids": [1, 2, 3] }),
        ..job_with(options.clone(), 0)
    };
    let jid = push_one(&store, new.clone()).await;

    let waiting = assert_state(&store, &jid, JobState::Enqueued).await;
    assert_eq!(waiting.kind, "SendMail");
    assert_eq!(waiting.queue, "mail");
    assert_eq!(waiting.args, new.args);
    assert_eq!(waiting.options, options, "options are kept as pushed");
    assert_eq!(waiting.stints, 0, "no stint before the first fetch");
    assert_eq!(waiting.attempts, 0);
    assert_eq!(waiting.recoveries, 0);
    assert_eq!(waiting.checkpoint, Checkpoint::default());
    assert!(waiting.created_at_ms > 0, "created_at_ms is set");
    assert!(waiting.enqueued_at_ms.is_some(), "enqueued_at_ms is set");

    assert_nothing_to_fetch(&store, &p, "default").await;

    let leased = fetch_one(&store, &p, "mail").await;
    let job = &leased.job;
    assert_eq!(job.jid, jid);
    assert_eq!(job.kind, "SendMail");
    assert_eq!(job.args, new.args);
    assert_eq!(job.queue, "mail");
    assert_eq!(job.state, JobState::Running, "a leased job is running");
    assert_eq!(job.stints, 1, "the first fetch starts stint 1");
    assert_eq!(job.process.as_deref(), Some(p.as_str()));
    assert_eq!(leased.lease.jid, jid);
    assert_eq!(leased.lease.stint, 1);
    assert_eq!(leased.lease.process, p);

    let stored = assert_state(&store, &jid, JobState::Running).await;
    assert_eq!(stored.stints, 1);
    assert_eq!(stored.process.as_deref(), Some(p.as_str()));

    assert_nothing_to_fetch(&store, &p, "mail").await;
}

/// Within a queue, jobs are fetched oldest first.
pub async fn fetch_is_fifo_within_a_queue(store: Arc<dyn Store>) {
    let p = register(&store, LONG_TTL).await;
    let pushed = push_each(&store, (0..5).map(|n| job_in("q", n)).collect()).await;
    let mut got = Vec::new();
    for _ in 0..5 {
        got.push(fetch_one(&store, &p, "q").await.job.jid);
    }
    assert_eq!(got, pushed, "fetch order should be push order");
    assert_nothing_to_fetch(&store, &p, "q").await;
}

/// Queues are taken in the order given: a later queue gives jobs only when
/// the earlier ones are empty (strict priority).
pub async fn fetch_takes_queues_in_order(store: Arc<dyn Store>) {
    let p = register_for(&store, &["high", "low"], LONG_TTL).await;
    let low = push_each(&store, (0..3).map(|n| job_in("low", n)).collect()).await;
    let high = push_each(&store, (0..3).map(|n| job_in("high", n)).collect()).await;
    let order = queues(&["high", "low"]);

    let got = store.fetch(&p, &order, 4).await.expect("fetch");
    let got: HashSet<_> = jids(&got).into_iter().collect();
    let mut want: HashSet<_> = high.iter().cloned().collect();
    want.insert(low[0].clone());
    assert_eq!(
        got, want,
        "fetch(limit 4) from [high, low] should take all 3 high jobs and the oldest low one"
    );

    let next = store.fetch(&p, &order, 1).await.expect("fetch");
    assert_eq!(jids(&next), vec![low[1].clone()]);

    // The other order gives the other priority.
    let h = push_one(&store, job_in("high", 9)).await;
    let next = store
        .fetch(&p, &queues(&["low", "high"]), 1)
        .await
        .expect("fetch");
    assert_eq!(
        jids(&next),
        vec![low[2].clone()],
        "low first when listed first"
    );
    let next = store
        .fetch(&p, &queues(&["low", "high"]), 1)
        .await
        .expect("fetch");
    assert_eq!(jids(&next), vec![h]);
}

/// A fetch returns at most `limit` jobs, the oldest.
pub async fn fetch_respects_limit(store: Arc<dyn Store>) {
    let p = register(&store, LONG_TTL).await;
    let pushed = push_each(&store, (0..5).map(|n| job_in("q", n)).collect()).await;

    assert!(
        fetch(&store, &p, "q", 0).await.is_empty(),
        "limit 0 leases nothing"
    );
    let first = fetch(&store, &p, "q", 3).await;
    assert_eq!(first.len(), 3, "limit 3 of 5 waiting");
    let first: HashSet<_> = jids(&first).into_iter().collect();
    assert_eq!(first, pushed[..3].iter().cloned().collect::<HashSet<_>>());

    let rest = fetch(&store, &p, "q", 10).await;
    assert_eq!(rest.len(), 2, "only 2 left");
    let rest: HashSet<_> = jids(&rest).into_iter().collect();
    assert_eq!(rest, pushed[3..].iter().cloned().collect::<HashSet<_>>());
}

/// A paused queue gives no jobs (running ones go on); it gives them again
/// once unpaused.
pub async fn fetch_skips_paused_queue(store: Arc<dyn Store>) {
    let p = register_for(&store, &["a", "b"], LONG_TTL).await;
    let a = push_each(&store, (0..2).map(|n| job_in("a", n)).collect()).await;
    let running = fetch_one(&store, &p, "a").await;
    assert_eq!(running.job.jid, a[0]);
    let b = push_one(&store, job_in("b", 0)).await;

    store
        .set_queue_paused("a", true)
        .await
        .expect("pause queue");
    let got = store
        .fetch(&p, &queues(&["a", "b"]), 10)
        .await
        .expect("fetch");
    assert_eq!(
        jids(&got),
        vec![b],
        "only queue b gives jobs while a is paused"
    );
    assert_nothing_to_fetch(&store, &p, "a").await;
    assert_state(&store, &a[1], JobState::Enqueued).await;

    // The running job of the paused queue goes on.
    let ack = store
        .checkpoint(&running.lease, &checkpoint(1, 1))
        .await
        .expect("checkpoint in a paused queue");
    assert_eq!(ack, None);

    store
        .set_queue_paused("a", false)
        .await
        .expect("resume queue");
    let got = fetch(&store, &p, "a", 10).await;
    assert_eq!(jids(&got), vec![a[1].clone()], "queue a gives jobs again");
}

/// Eight fetchers racing over 200 jobs lease each exactly once.
pub async fn concurrent_fetchers_never_share_a_job(store: Arc<dyn Store>) {
    const JOBS: u64 = 200;
    const FETCHERS: usize = 8;
    let pushed: Vec<_> = (0..JOBS).map(|n| job_in("race", n)).collect();
    let all: HashSet<_> = pushed.iter().map(|j| j.jid.clone()).collect();
    store.push(pushed).await.expect("push");

    let mut tasks = Vec::new();
    for _ in 0..FETCHERS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let p = register_for(&store, &["race"], LONG_TTL).await;
            let mut got = Vec::new();
            loop {
                let batch = fetch(&store, &p, "race", 3).await;
                if batch.is_empty() {
                    break;
                }
                for l in &batch {
                    assert_eq!(l.lease.process, p, "lease held by the fetching process");
                    assert_eq!(l.lease.stint, 1);
                }
                got.extend(jids(&batch));
                tokio::task::yield_now().await;
            }
            got
        }));
    }
    let mut seen = HashSet::new();
    let mut total = 0;
    for t in tasks {
        for jid in t.await.expect("fetcher task") {
            total += 1;
            assert!(seen.insert(jid.clone()), "job {jid} was leased twice");
        }
    }
    assert_eq!(total, JOBS as usize, "every job leased once");
    assert_eq!(seen, all);
    let stats = store.stats().await.expect("stats");
    assert_eq!(stats.count(JobState::Running), JOBS);
    assert_eq!(stats.count(JobState::Enqueued), 0);
}

/// A thousand jobs pushed in one call are all enqueued; an empty push is
/// fine.
pub async fn push_many_in_one_call(store: Arc<dyn Store>) {
    store.push(vec![]).await.expect("empty push");
    let pushed: Vec<_> = (0..1000).map(|n| job_in("bulk", n)).collect();
    let all: HashSet<_> = pushed.iter().map(|j| j.jid.clone()).collect();
    store.push(pushed).await.expect("push 1000");

    let stats = store.stats().await.expect("stats");
    assert_eq!(stats.count(JobState::Enqueued), 1000);
    let bulk = stats.queues.iter().find(|q| q.name == "bulk");
    assert_eq!(
        bulk.map(|q| q.size),
        Some(1000),
        "queue bulk has 1000 waiting"
    );

    let p = register_for(&store, &["bulk"], LONG_TTL).await;
    let mut seen = HashSet::new();
    loop {
        let batch = fetch(&store, &p, "bulk", 100).await;
        if batch.is_empty() {
            break;
        }
        for jid in jids(&batch) {
            assert!(seen.insert(jid.clone()), "job {jid} leased twice");
        }
    }
    assert_eq!(seen, all, "all 1000 fetched");
}

/// Jobs pushed in one call go to the tail of their queue in the order
/// given, and a job pushed right after the batch comes after all of it.
pub async fn push_batch_keeps_order(store: Arc<dyn Store>) {
    let pushed: Vec<_> = (0..20).map(|n| job_in("batch", n)).collect();
    let want: Vec<_> = pushed.iter().map(|j| j.jid.clone()).collect();
    store.push(pushed).await.expect("push");
    let p = register(&store, LONG_TTL).await;
    let mut got = Vec::new();
    for _ in 0..want.len() {
        got.push(fetch_one(&store, &p, "batch").await.job.jid);
    }
    assert_eq!(got, want, "fetch order should be the order within the push");

    let big: Vec<_> = (0..2000).map(|n| job_in("big", n)).collect();
    let last_of_batch = big[big.len() - 1].jid.clone();
    store.push(big).await.expect("push 2000");
    let after = push_one(&store, job_in("big", 9999)).await;
    let first = fetch(&store, &p, "big", 2000).await;
    assert_eq!(first.len(), 2000);
    assert!(
        !jids(&first).contains(&after),
        "a job pushed after a batch of 2000 was fetched before some of the batch"
    );
    assert_eq!(first[first.len() - 1].job.jid, last_of_batch);
    assert_eq!(fetch_one(&store, &p, "big").await.job.jid, after);
}

/// A push reusing the jid of a job the store knows (running, succeeded, or
/// twice in the same push) is `Duplicate` and stores nothing of that push;
/// the known job is untouched.
pub async fn push_of_a_known_jid_is_a_duplicate(store: Arc<dyn Store>) {
    let running = push_one(&store, job_in("default", 1)).await;
    let finished = push_one(&store, job_in("default", 2)).await;
    let p = register(&store, LONG_TTL).await;
    let leased = fetch(&store, &p, "default", 2).await;
    assert_eq!(jids(&leased), vec![running.clone(), finished.clone()]);
    let done = leased.iter().find(|l| l.job.jid == finished).unwrap();
    complete_ok(
        &store,
        &done.lease,
        Some(checkpoint(2, 2)),
        crate::store::Outcome::Succeeded { result: None },
    )
    .await;
    let fresh = job_in("default", 3);
    for (what, used) in [("running", &running), ("succeeded", &finished)] {
        let mut again = job_in("other", 4);
        again.jid = used.clone();
        match store.push(vec![fresh.clone(), again]).await {
            Err(crate::error::StoreError::Duplicate(jid)) => assert_eq!(&jid, used, "{what}"),
            other => panic!("a push reusing a {what} job's jid: {other:?}"),
        }
    }
    let mut twice = job_in("default", 5);
    twice.jid = fresh.jid.clone();
    match store.push(vec![fresh.clone(), twice]).await {
        Err(crate::error::StoreError::Duplicate(jid)) => assert_eq!(jid, fresh.jid),
        other => panic!("a push with a jid twice: {other:?}"),
    }
    assert_eq!(
        store.job(&fresh.jid).await.expect("job"),
        None,
        "nothing stored"
    );
    assert_nothing_to_fetch(&store, &p, "default").await;
    assert_nothing_to_fetch(&store, &p, "other").await;
    assert_eq!(record(&store, &running).await.state, JobState::Running);
    assert_eq!(record(&store, &finished).await.state, JobState::Succeeded);
}
