//! A fetch whose reply was lost (Redis went away before answering) is
//! replayed by the process's next fetch: the jobs that call leased are
//! returned then, and only the ones the process has not been given yet.

use std::sync::Arc;
use std::time::Duration;

use stint_core::model::{JobState, ProcessInfo};
use stint_core::store::{Outcome, Store};
use stint_core::testing::*;
use stint_redis::RedisStore;
use stint_testkit::redis::RedisServer;

/// A process whose stint of a job could not record its end (Redis was
/// away) still remembers that stint; the job, recovered meanwhile by
/// another process, is leased again by this process's next fetch, a replay
/// after a failed call. That lease is new to the process and is returned:
/// it used to be taken for the remembered stint's and dropped, so the job
/// stayed leased to a process that never ran it until recovery took it
/// back again, each time counting towards the poison-pill limit (the chaos
/// test saw a job go dead so).
#[tokio::test]
async fn a_replayed_fetch_returns_a_new_stint_of_a_job_whose_last_stint_end_is_pending() {
    let server = RedisServer::start().expect("redis-server");
    let url = server.url();
    let worker: Arc<dyn Store> = Arc::new(RedisStore::connect(&url).await.expect("connect"));
    let other: Arc<dyn Store> = Arc::new(RedisStore::connect(&url).await.expect("connect"));
    let info = ProcessInfo::for_this_process(queues(&["default"]), 3);
    worker
        .register(&info, Duration::from_secs(60))
        .await
        .expect("register");
    let jid = push_one(&worker, job_in("default", 1)).await;
    let first = fetch_one(&worker, &info.id, "default").await;
    assert_eq!(first.lease.stint, 1);

    // The stint's end is not recorded; the process's leases expire and
    // another process recovers the job to the head of its queue.
    other.expire_process(&info.id).await.expect("expire");
    let recovered = other.recover_orphans(5).await.expect("recover");
    assert_eq!(recovered.len(), 1);
    assert_eq!(record(&other, &jid).await.state, JobState::Enqueued);

    // The process registers again; its next fetch fails on a dropped
    // connection (no reply: the next one replays it).
    worker
        .register(&info, Duration::from_secs(60))
        .await
        .expect("register again");
    let mut admin = redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: () = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("normal")
        .arg("SKIPME")
        .arg("yes")
        .query_async(&mut admin)
        .await
        .unwrap();
    let lost = worker.fetch(&info.id, &queues(&["default"]), 1).await;
    assert!(
        lost.is_err(),
        "the fetch on a killed connection fails: {lost:?}"
    );

    let got = worker
        .fetch(&info.id, &queues(&["default"]), 1)
        .await
        .expect("fetch");
    assert_eq!(
        jids(&got),
        vec![jid.clone()],
        "the job's new stint is returned"
    );
    assert_eq!(got[0].lease.stint, 2);

    // The old stint's end is refused; the new one's is recorded.
    let refused = complete(
        &worker,
        &first.lease,
        None,
        Outcome::Succeeded { result: None },
    )
    .await;
    assert_eq!(refused, vec![jid.clone()]);
    complete_ok(
        &worker,
        &got[0].lease,
        None,
        Outcome::Succeeded { result: None },
    )
    .await;
    let d = detail(&worker, &jid).await;
    assert_eq!((d.job.state, d.history.len()), (JobState::Succeeded, 2));
}
