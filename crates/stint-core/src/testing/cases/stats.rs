//! What operators read: counts per state, queues, processes, job lists.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::model::{JobState, ProcessInfo};
use crate::store::{JobFilter, Outcome, Store};
use crate::testing::*;

/// `stats` counts jobs per state (every state listed) and lists queues with
/// their sizes and paused flags.
pub async fn stats_counts_states_and_queues(store: Arc<dyn Store>) {
    let empty = store.stats().await.expect("stats");
    for state in JobState::ALL {
        assert!(
            empty.states.iter().any(|(s, _)| *s == state),
            "stats.states should list {state} even when there are none"
        );
        assert_eq!(empty.count(state), 0);
    }

    let p = register_for(&store, &["a", "b"], LONG_TTL).await;
    push_each(&store, (0..6).map(|n| job_in("a", n)).collect()).await;
    let b = push_each(&store, (0..2).map(|n| job_in("b", n)).collect()).await;
    push_one(&store, scheduled_in("a", 9, Duration::from_secs(3600))).await;
    let done = fetch_one(&store, &p, "a").await;
    complete_ok(
        &store,
        &done.lease,
        None,
        Outcome::Succeeded { result: None },
    )
    .await;
    fetch_one(&store, &p, "a").await;
    store.pause(&b[0]).await.expect("pause");
    store
        .set_queue_paused("b", true)
        .await
        .expect("pause queue");

    let stats = store.stats().await.expect("stats");
    let want = [
        (JobState::Scheduled, 1),
        (JobState::Enqueued, 5),
        (JobState::Running, 1),
        (JobState::Paused, 1),
        (JobState::Retrying, 0),
        (JobState::Succeeded, 1),
        (JobState::Dead, 0),
        (JobState::Cancelled, 0),
    ];
    for (state, n) in want {
        assert_eq!(
            stats.count(state),
            n,
            "count of {state}: {:?}",
            stats.states
        );
    }
    assert_eq!(stats.states.len(), JobState::ALL.len(), "each state once");

    let queue = |name: &str| {
        stats
            .queues
            .iter()
            .find(|q| q.name == name)
            .unwrap_or_else(|| panic!("stats.queues should list {name:?}: {:?}", stats.queues))
            .clone()
    };
    let a = queue("a");
    assert_eq!((a.size, a.paused), (4, false), "queue a: {a:?}");
    assert!(a.latency_ms.is_some(), "queue a has a waiting job: {a:?}");
    let qb = queue("b");
    assert_eq!((qb.size, qb.paused), (1, true), "queue b: {qb:?}");

    store
        .set_queue_paused("b", false)
        .await
        .expect("resume queue");
    let stats = store.stats().await.expect("stats");
    let qb = stats
        .queues
        .iter()
        .find(|q| q.name == "b")
        .expect("queue b");
    assert!(!qb.paused, "queue b unpaused: {qb:?}");
}

/// A registered process is listed (in `processes` and `stats`) with what it
/// said in its heartbeat, until it deregisters.
pub async fn processes_are_listed_until_deregistered(store: Arc<dyn Store>) {
    let info = ProcessInfo::for_this_process(queues(&["a", "b"]), 7);
    store.register(&info, LONG_TTL).await.expect("register");
    let other = register(&store, LONG_TTL).await;

    let listed = store.processes().await.expect("processes");
    let me = listed
        .iter()
        .find(|p| p.id == info.id)
        .unwrap_or_else(|| panic!("{} should be listed: {listed:?}", info.id));
    assert_eq!(me.hostname, info.hostname);
    assert_eq!(me.pid, info.pid);
    assert_eq!(me.queues, info.queues);
    assert_eq!(me.concurrency, 7);
    assert!(listed.iter().any(|p| p.id == other));

    assert!(store
        .heartbeat(&info.id, 3, true, LONG_TTL)
        .await
        .expect("heartbeat"));
    let listed = store.processes().await.expect("processes");
    let me = listed.iter().find(|p| p.id == info.id).expect("listed");
    assert_eq!(
        (me.busy, me.quiet),
        (3, true),
        "the heartbeat's busy and quiet"
    );
    let stats = store.stats().await.expect("stats");
    assert!(stats.processes.iter().any(|p| p.id == info.id));

    store.deregister(&info.id).await.expect("deregister");
    let listed = store.processes().await.expect("processes");
    assert!(
        !listed.iter().any(|p| p.id == info.id),
        "a deregistered process is gone: {listed:?}"
    );
    assert!(listed.iter().any(|p| p.id == other), "the other stays");
    let stats = store.stats().await.expect("stats");
    assert!(!stats.processes.iter().any(|p| p.id == info.id));
    assert!(
        !store
            .heartbeat(&info.id, 0, false, LONG_TTL)
            .await
            .expect("heartbeat"),
        "the heartbeat of a deregistered process returns false"
    );
}

/// `jobs` filters by state, queue and kind, lists newest first, and
/// respects its limit (0 = 100).
pub async fn jobs_filter_and_limit(store: Arc<dyn Store>) {
    let p = register_for(&store, &["a", "b"], LONG_TTL).await;
    let mut a = Vec::new();
    for n in 0..3 {
        a.push(push_one(&store, new_job("Alpha", json!({ "n": n }), "a")).await);
        sleep_ms(5).await;
    }
    let b = push_one(&store, new_job("Beta", json!({}), "b")).await;
    let bulk: Vec<_> = (0..150).map(|n| new_job("Bulk", json!(n), "c")).collect();
    store.push(bulk).await.expect("push");
    let running = fetch_one(&store, &p, "a").await;
    assert_eq!(running.job.jid, a[0]);

    let list = |f: JobFilter| {
        let store = store.clone();
        async move { store.jobs(&f).await.expect("jobs") }
    };
    let set =
        |v: &[crate::model::JobRecord]| v.iter().map(|j| j.jid.clone()).collect::<HashSet<_>>();

    let alpha = list(JobFilter {
        kind: Some("Alpha".into()),
        ..Default::default()
    })
    .await;
    let got: Vec<_> = alpha.iter().map(|j| j.jid.clone()).collect();
    assert_eq!(
        got,
        vec![a[2].clone(), a[1].clone(), a[0].clone()],
        "newest first"
    );

    let in_b = list(JobFilter {
        queue: Some("b".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(set(&in_b), HashSet::from([b.clone()]));

    let running_jobs = list(JobFilter {
        state: Some(JobState::Running),
        ..Default::default()
    })
    .await;
    assert_eq!(set(&running_jobs), HashSet::from([a[0].clone()]));
    assert!(running_jobs.iter().all(|j| j.state == JobState::Running));

    let enqueued_in_a = list(JobFilter {
        state: Some(JobState::Enqueued),
        queue: Some("a".into()),
        kind: Some("Alpha".into()),
        limit: 0,
    })
    .await;
    assert_eq!(
        set(&enqueued_in_a),
        HashSet::from([a[1].clone(), a[2].clone()])
    );

    let two = list(JobFilter {
        kind: Some("Alpha".into()),
        limit: 2,
        ..Default::default()
    })
    .await;
    let got: Vec<_> = two.iter().map(|j| j.jid.clone()).collect();
    assert_eq!(
        got,
        vec![a[2].clone(), a[1].clone()],
        "limit 2, newest first"
    );

    let default_limit = list(JobFilter {
        queue: Some("c".into()),
        ..Default::default()
    })
    .await;
    assert_eq!(default_limit.len(), 100, "limit 0 means 100");
    let all_c = list(JobFilter {
        queue: Some("c".into()),
        limit: 1000,
        ..Default::default()
    })
    .await;
    assert_eq!(all_c.len(), 150);
    assert!(all_c.iter().all(|j| j.kind == "Bulk" && j.queue == "c"));
}
