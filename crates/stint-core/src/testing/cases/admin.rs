//! The dashboard's commands: clearing a queue, deleting a job, and quiet or
//! stop for a whole worker process.

use std::sync::Arc;
use std::time::Duration;

use crate::error::StoreError;
use crate::model::{Checkpoint, JobState, ProcessCommand};
use crate::store::{JobFilter, Outcome, Store};
use crate::testing::*;

/// `clear_queue` deletes the queue's enqueued jobs and nothing else: not
/// the running, paused or scheduled jobs of that queue, not other queues,
/// not the children a waiting split parent needs.
pub async fn clear_queue_deletes_only_its_enqueued_jobs(store: Arc<dyn Store>) {
    let p = register_for(&store, &["a", "b", "c"], LONG_TTL).await;
    let running = push_one(&store, job_in("a", 0)).await;
    assert_eq!(fetch_one(&store, &p, "a").await.job.jid, running);
    let waiting = push_each(&store, (1..=3).map(|n| job_in("a", n)).collect()).await;
    let paused = push_one(&store, job_in("a", 4)).await;
    store.pause(&paused).await.expect("pause");
    let scheduled = push_one(&store, scheduled_in("a", 5, Duration::from_secs(3600))).await;
    let other = push_one(&store, job_in("b", 6)).await;

    // A split parent in "c" whose child waits in "a".
    push_one(&store, job_in("c", 7)).await;
    let parent = fetch_one(&store, &p, "c").await;
    let child = job_in("a", 8);
    let child_jid = child.jid.clone();
    store
        .split(&parent.lease, &Checkpoint::default(), "s", vec![child])
        .await
        .expect("split");

    let cleared = store.clear_queue("a").await.expect("clear_queue");
    assert_eq!(cleared, 3, "the three enqueued jobs of a");
    for jid in &waiting {
        assert!(
            store.job(jid).await.expect("job").is_none(),
            "cleared job {jid} is gone"
        );
    }
    assert_state(&store, &running, JobState::Running).await;
    assert_state(&store, &paused, JobState::Paused).await;
    assert_state(&store, &scheduled, JobState::Scheduled).await;
    assert_state(&store, &other, JobState::Enqueued).await;
    assert_state(&store, &child_jid, JobState::Enqueued).await;
    assert_eq!(
        jids(&fetch(&store, &p, "a", 10).await),
        vec![child_jid],
        "only the child of the waiting parent is left to fetch in a"
    );
    let stats = store.stats().await.expect("stats");
    let a = stats.queues.iter().find(|q| q.name == "a").map(|q| q.size);
    assert!(matches!(a, None | Some(0)), "queue a is empty: {a:?}");

    assert_eq!(store.clear_queue("nothing-here").await.expect("clear"), 0);
}

/// `delete` removes a job that is not running nor waiting, with its
/// history; it refuses a running job, a waiting parent and an unfinished
/// child of one, and says NotFound for an unknown jid.
pub async fn delete_removes_a_job_that_is_not_running(store: Arc<dyn Store>) {
    let p = register(&store, LONG_TTL).await;
    let succeeded = push_one(&store, job_in("default", 1)).await;
    let dead = push_one(&store, job_in("default", 2)).await;
    let running = push_one(&store, job_in("default", 3)).await;
    // `dead` gets a stint and an error first.
    let first = fetch_one(&store, &p, "default").await;
    assert_eq!(first.job.jid, succeeded);
    complete_ok(
        &store,
        &first.lease,
        None,
        Outcome::Requeue {
            reason: "shutdown".into(),
        },
    )
    .await;
    let again = fetch_one(&store, &p, "default").await;
    assert_eq!(again.job.jid, succeeded, "requeued at the head");
    complete_ok(
        &store,
        &again.lease,
        None,
        Outcome::Succeeded { result: None },
    )
    .await;
    let d = fetch_one(&store, &p, "default").await;
    assert_eq!(d.job.jid, dead);
    complete_ok(
        &store,
        &d.lease,
        None,
        Outcome::Dead {
            error: error_info("boom", 1),
            reason: "boom".into(),
        },
    )
    .await;
    assert_eq!(fetch_one(&store, &p, "default").await.job.jid, running);
    let queued = push_one(&store, job_in("default", 9)).await;

    for jid in [&succeeded, &dead, &queued] {
        store.delete(jid).await.expect("delete");
        assert!(store.job(jid).await.expect("job").is_none(), "{jid} gone");
    }
    let listed = store
        .jobs(&JobFilter::default())
        .await
        .expect("jobs")
        .into_iter()
        .map(|j| j.jid)
        .collect::<Vec<_>>();
    assert_eq!(
        listed,
        vec![running.clone()],
        "only the running job is left"
    );
    assert_nothing_to_fetch(&store, &p, "default").await;
    let stats = store.stats().await.expect("stats");
    assert_eq!(
        (
            stats.count(JobState::Succeeded),
            stats.count(JobState::Dead)
        ),
        (0, 0)
    );

    match store.delete(&running).await {
        Err(StoreError::InvalidState { jid, state, .. }) => {
            assert_eq!((jid, state.as_str()), (running.clone(), "running"))
        }
        other => panic!("deleting a running job should be InvalidState, got {other:?}"),
    }
    assert_state(&store, &running, JobState::Running).await;

    match store.delete(&succeeded).await {
        Err(StoreError::NotFound(jid)) => assert_eq!(jid, succeeded),
        other => panic!("deleting a deleted job should be NotFound, got {other:?}"),
    }

    // A waiting parent and its unfinished child are refused.
    push_one(&store, job_in("default", 4)).await;
    let parent = fetch_one(&store, &p, "default").await;
    let child = job_in("kids", 5);
    let child_jid = child.jid.clone();
    store
        .split(&parent.lease, &Checkpoint::default(), "s", vec![child])
        .await
        .expect("split");
    for (jid, what) in [(&parent.job.jid, "waiting parent"), (&child_jid, "child")] {
        let r = store.delete(jid).await;
        assert!(
            matches!(r, Err(StoreError::InvalidState { .. })),
            "deleting the {what} should be InvalidState, got {r:?}"
        );
        assert!(store.job(jid).await.expect("job").is_some(), "{what} kept");
    }
    // Once cancelled, the child can go.
    store.cancel(&child_jid).await.expect("cancel child");
    store
        .delete(&child_jid)
        .await
        .expect("delete cancelled child");
}

/// An operator's quiet or stop is kept for the process and read back by
/// it; a stop is never replaced by a quiet; an unknown process is an error.
pub async fn process_commands_are_kept_for_the_process(store: Arc<dyn Store>) {
    let a = register(&store, LONG_TTL).await;
    let b = register(&store, LONG_TTL).await;
    assert_eq!(store.process_command(&a).await.expect("command"), None);

    store
        .command_process(&a, ProcessCommand::Quiet)
        .await
        .expect("quiet");
    assert_eq!(
        store.process_command(&a).await.expect("command"),
        Some(ProcessCommand::Quiet)
    );
    assert_eq!(
        store.process_command(&b).await.expect("command"),
        None,
        "only the process it was given to"
    );
    // The heartbeat keeps it.
    assert!(store.heartbeat(&a, 0, true, LONG_TTL).await.expect("beat"));
    assert_eq!(
        store.process_command(&a).await.expect("command"),
        Some(ProcessCommand::Quiet)
    );

    store
        .command_process(&a, ProcessCommand::Stop)
        .await
        .expect("stop");
    store
        .command_process(&a, ProcessCommand::Quiet)
        .await
        .expect("quiet after stop");
    assert_eq!(
        store.process_command(&a).await.expect("command"),
        Some(ProcessCommand::Stop),
        "a stop is not downgraded"
    );

    match store
        .command_process("no-such-host:1:000000000000", ProcessCommand::Stop)
        .await
    {
        Err(StoreError::NoProcess(id)) => assert_eq!(id, "no-such-host:1:000000000000"),
        other => panic!("a command to an unknown process should be NoProcess, got {other:?}"),
    }
    store.deregister(&a).await.expect("deregister");
    let r = store.command_process(&a, ProcessCommand::Quiet).await;
    assert!(
        matches!(r, Err(StoreError::NoProcess(_))),
        "a command to a stopped process should be NoProcess, got {r:?}"
    );
}
