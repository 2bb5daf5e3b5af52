//! Operator commands: pause, resume, cancel and retry of jobs, at once when
//! the job waits, at its next checkpoint when it runs.

use std::sync::Arc;
use std::time::Duration;

use crate::error::StoreError;
use crate::model::{now_ms, Control, Jid, JobState};
use crate::store::{CommandEffect, Outcome, Store};
use crate::testing::*;

/// Pausing a waiting job takes it out of its queue at once; resuming puts
/// it back with its checkpoint.
pub async fn pause_and_resume_waiting_job(store: Arc<dyn Store>) {
    let p = register(&store, LONG_TTL).await;
    let jid = push_one(&store, job_in("default", 1)).await;
    // One interrupted stint, so that the job has a checkpoint.
    let first = fetch_one(&store, &p, "default").await;
    complete_ok(
        &store,
        &first.lease,
        Some(checkpoint(5, 5)),
        Outcome::Requeue {
            reason: "shutdown".into(),
        },
    )
    .await;

    let effect = store.pause(&jid).await.expect("pause");
    assert_eq!(effect, CommandEffect::Done(JobState::Paused));
    let job = assert_state(&store, &jid, JobState::Paused).await;
    assert_eq!(job.checkpoint, checkpoint(5, 5));
    assert_nothing_to_fetch(&store, &p, "default").await;
    let stats = store.stats().await.expect("stats");
    assert_eq!(stats.count(JobState::Paused), 1);
    assert_eq!(stats.count(JobState::Enqueued), 0);

    let effect = store.resume(&jid).await.expect("resume");
    assert_eq!(effect, CommandEffect::Done(JobState::Enqueued));
    assert_state(&store, &jid, JobState::Enqueued).await;
    let again = fetch_one(&store, &p, "default").await;
    assert_eq!(again.job.jid, jid);
    assert_eq!(again.lease.stint, 2);
    assert_eq!(again.job.checkpoint, checkpoint(5, 5), "checkpoint kept");
}

/// A resumed job goes to the head of its queue, ahead of jobs that waited
/// longer.
pub async fn resume_puts_job_at_head(store: Arc<dyn Store>) {
    let p = register(&store, LONG_TTL).await;
    let older = push_one(&store, job_in("default", 0)).await;
    let jid = push_one(&store, job_in("default", 1)).await;
    assert_eq!(
        store.pause(&jid).await.expect("pause"),
        CommandEffect::Done(JobState::Paused)
    );
    assert_eq!(
        store.resume(&jid).await.expect("resume"),
        CommandEffect::Done(JobState::Enqueued)
    );
    assert_eq!(
        fetch_one(&store, &p, "default").await.job.jid,
        jid,
        "the resumed job is at the head"
    );
    assert_eq!(fetch_one(&store, &p, "default").await.job.jid, older);
}

/// Pausing a running job asks it: the command shows in `controls` and in
/// the answer to its checkpoints; the job then ends its stint as paused, and
/// resumes later from that checkpoint.
pub async fn pause_running_job(store: Arc<dyn Store>) {
    let p = register(&store, LONG_TTL).await;
    let jid = push_one(&store, job_in("default", 1)).await;
    let leased = fetch_one(&store, &p, "default").await;
    assert!(store.controls(&p).await.expect("controls").is_empty());

    let effect = store.pause(&jid).await.expect("pause");
    assert_eq!(effect, CommandEffect::Requested(Control::Pause));
    let job = assert_state(&store, &jid, JobState::Running).await;
    assert_eq!(job.control, Some(Control::Pause), "the pending command");
    assert_eq!(
        store.controls(&p).await.expect("controls"),
        vec![(jid.clone(), Control::Pause)]
    );
    let other = register(&store, LONG_TTL).await;
    assert!(
        store.controls(&other).await.expect("controls").is_empty(),
        "controls lists only the jobs the process runs"
    );
    let ack = store
        .checkpoint(&leased.lease, &checkpoint(4, 4))
        .await
        .expect("checkpoint");
    assert_eq!(
        ack,
        Some(Control::Pause),
        "the checkpoint answers the pause"
    );
    assert_eq!(record(&store, &jid).await.checkpoint, checkpoint(4, 4));

    complete_ok(
        &store,
        &leased.lease,
        Some(checkpoint(8, 8)),
        Outcome::Paused,
    )
    .await;
    let d = detail(&store, &jid).await;
    assert_eq!(d.job.state, JobState::Paused);
    assert_eq!(d.job.checkpoint, checkpoint(8, 8), "checkpoint kept");
    assert_eq!(d.job.control, None, "the command was acted on");
    assert_eq!(d.job.attempts, 0, "a pause uses no attempt");
    let s1 = d.history.iter().find(|s| s.number == 1);
    assert_eq!(
        s1.and_then(|s| s.outcome.as_deref()),
        Some("paused"),
        "history: {:?}",
        d.history
    );
    assert!(store.controls(&p).await.expect("controls").is_empty());
    assert_nothing_to_fetch(&store, &p, "default").await;

    let effect = store.resume(&jid).await.expect("resume");
    assert_eq!(effect, CommandEffect::Done(JobState::Enqueued));
    let again = fetch_one(&store, &p, "default").await;
    assert_eq!(again.job.jid, jid);
    assert_eq!(again.lease.stint, 2);
    assert_eq!(again.job.checkpoint, checkpoint(8, 8));
    let ack = store
        .checkpoint(&again.lease, &checkpoint(9, 9))
        .await
        .expect("checkpoint");
    assert_eq!(ack, None, "no command pending in the new stint");
}

/// Resuming a running job whose pause is still pending withdraws the pause.
pub async fn withdraw_pending_pause(store: Arc<dyn Store>) {
    let p = register(&store, LONG_TTL).await;
    let jid = push_one(&store, job_in("default", 1)).await;
    let leased = fetch_one(&store, &p, "default").await;
    assert_eq!(
        store.pause(&jid).await.expect("pause"),
        CommandEffect::Requested(Control::Pause)
    );
    assert_eq!(
        store.resume(&jid).await.expect("resume"),
        CommandEffect::Withdrawn
    );
    assert!(
        store.controls(&p).await.expect("controls").is_empty(),
        "a withdrawn pause is no longer listed"
    );
    let job = assert_state(&store, &jid, JobState::Running).await;
    assert_eq!(job.control, None);
    let ack = store
        .checkpoint(&leased.lease, &checkpoint(1, 1))
        .await
        .expect("checkpoint");
    assert_eq!(ack, None, "the checkpoint no longer answers a pause");
}

/// Cancelling a waiting job is done at once; a running one is asked, and
/// ends its stint as cancelled with its checkpoint.
pub async fn cancel_waiting_and_running_jobs(store: Arc<dyn Store>) {
    let p = register(&store, LONG_TTL).await;
    let running = push_one(&store, job_in("default", 0)).await;
    let waiting = push_one(&store, job_in("default", 1)).await;
    let paused = push_one(&store, job_in("default", 2)).await;
    let leased = fetch_one(&store, &p, "default").await;
    assert_eq!(leased.job.jid, running);

    assert_eq!(
        store.cancel(&waiting).await.expect("cancel"),
        CommandEffect::Done(JobState::Cancelled)
    );
    assert_state(&store, &waiting, JobState::Cancelled).await;
    store.pause(&paused).await.expect("pause");
    assert_eq!(
        store.cancel(&paused).await.expect("cancel"),
        CommandEffect::Done(JobState::Cancelled)
    );
    assert_state(&store, &paused, JobState::Cancelled).await;
    assert_nothing_to_fetch(&store, &p, "default").await;

    assert_eq!(
        store.cancel(&running).await.expect("cancel"),
        CommandEffect::Requested(Control::Cancel)
    );
    let job = assert_state(&store, &running, JobState::Running).await;
    assert_eq!(job.control, Some(Control::Cancel));
    assert_eq!(
        store.controls(&p).await.expect("controls"),
        vec![(running.clone(), Control::Cancel)]
    );
    let ack = store
        .checkpoint(&leased.lease, &checkpoint(3, 3))
        .await
        .expect("checkpoint");
    assert_eq!(ack, Some(Control::Cancel));
    complete_ok(&store, &leased.lease, None, Outcome::Cancelled).await;
    let job = assert_state(&store, &running, JobState::Cancelled).await;
    assert_eq!(job.checkpoint, checkpoint(3, 3), "checkpoint kept");
    assert!(store.controls(&p).await.expect("controls").is_empty());
    let stats = store.stats().await.expect("stats");
    assert_eq!(stats.count(JobState::Cancelled), 3);
}

/// A scheduled job can be paused: it is not promoted while paused, and
/// resumes to its queue.
pub async fn pause_scheduled_job(store: Arc<dyn Store>) {
    let p = register(&store, LONG_TTL).await;
    let jid = push_one(
        &store,
        scheduled_in("default", 1, Duration::from_millis(200)),
    )
    .await;
    assert_eq!(
        store.pause(&jid).await.expect("pause"),
        CommandEffect::Done(JobState::Paused)
    );
    sleep_ms(400).await;
    assert_eq!(store.promote_due().await.expect("promote"), 0);
    assert_state(&store, &jid, JobState::Paused).await;
    assert_nothing_to_fetch(&store, &p, "default").await;
    assert_eq!(
        store.resume(&jid).await.expect("resume"),
        CommandEffect::Done(JobState::Enqueued)
    );
    assert_eq!(fetch_one(&store, &p, "default").await.job.jid, jid);
}

/// Retrying a dead job enqueues it with its checkpoint, its attempts and
/// recoveries back to 0.
pub async fn retry_dead_job(store: Arc<dyn Store>) {
    let jid = push_one(&store, job_in("default", 1)).await;
    // A recovery...
    let a = register(&store, LONG_TTL).await;
    fetch_one(&store, &a, "default").await;
    store.expire_process(&a).await.expect("expire");
    assert_eq!(store.recover_orphans(3).await.expect("recover").len(), 1);
    // ...a failure with a retry...
    let b = register(&store, LONG_TTL).await;
    let second = fetch_one(&store, &b, "default").await;
    complete_ok(
        &store,
        &second.lease,
        Some(checkpoint(2, 2)),
        Outcome::Retry {
            error: error_info("boom", 1),
            retry_at_ms: now_ms() - 1,
        },
    )
    .await;
    assert_eq!(store.promote_due().await.expect("promote"), 1);
    // ...and a failure for good.
    let third = fetch_one(&store, &b, "default").await;
    complete_ok(
        &store,
        &third.lease,
        Some(checkpoint(6, 6)),
        Outcome::Dead {
            error: error_info("boom again", 2),
            reason: "attempts exhausted".into(),
        },
    )
    .await;
    let dead = assert_state(&store, &jid, JobState::Dead).await;
    assert!(dead.attempts >= 1 && dead.recoveries == 1, "{dead:?}");

    assert_eq!(
        store.retry(&jid).await.expect("retry"),
        CommandEffect::Done(JobState::Enqueued)
    );
    let job = assert_state(&store, &jid, JobState::Enqueued).await;
    assert_eq!(job.attempts, 0, "a retried dead job gets its attempts back");
    assert_eq!(job.recoveries, 0, "and its recoveries");
    assert_eq!(job.checkpoint, checkpoint(6, 6), "checkpoint kept");
    let again = fetch_one(&store, &b, "default").await;
    assert_eq!(again.job.jid, jid);
    assert_eq!(again.job.checkpoint, checkpoint(6, 6));
    assert_eq!(again.lease.stint, 4);
}

/// Retrying a retrying, scheduled or cancelled job enqueues it now.
pub async fn retry_retrying_and_scheduled_jobs(store: Arc<dyn Store>) {
    let p = register(&store, LONG_TTL).await;
    let hour = Duration::from_secs(3600);
    let retrying = push_one(&store, job_in("default", 0)).await;
    let leased = fetch_one(&store, &p, "default").await;
    complete_ok(
        &store,
        &leased.lease,
        Some(checkpoint(1, 1)),
        Outcome::Retry {
            error: error_info("boom", 1),
            retry_at_ms: now_ms() + 3_600_000,
        },
    )
    .await;
    let scheduled = push_one(&store, scheduled_in("default", 1, hour)).await;
    let cancelled = push_one(&store, scheduled_in("default", 2, hour)).await;
    store.cancel(&cancelled).await.expect("cancel");
    assert_state(&store, &cancelled, JobState::Cancelled).await;

    for jid in [&retrying, &scheduled, &cancelled] {
        assert_eq!(
            store.retry(jid).await.expect("retry"),
            CommandEffect::Done(JobState::Enqueued),
            "retry of {jid}"
        );
        assert_state(&store, jid, JobState::Enqueued).await;
    }
    assert_eq!(record(&store, &retrying).await.checkpoint, checkpoint(1, 1));
    let got = fetch(&store, &p, "default", 10).await;
    let mut got = jids(&got);
    got.sort();
    let mut want = vec![retrying, scheduled, cancelled];
    want.sort();
    assert_eq!(got, want, "all three are fetchable now");
}

fn assert_not_found<T: std::fmt::Debug>(r: Result<T, StoreError>, jid: &Jid, what: &str) {
    match r {
        Err(StoreError::NotFound(j)) => assert_eq!(&j, jid),
        other => panic!("{what} of an unknown job should be Err(NotFound), got {other:?}"),
    }
}

fn assert_invalid<T: std::fmt::Debug>(
    r: Result<T, StoreError>,
    jid: &Jid,
    state: JobState,
    what: &str,
) {
    match r {
        Err(StoreError::InvalidState {
            jid: j, state: s, ..
        }) => {
            assert_eq!(&j, jid, "{what}: InvalidState names the job");
            assert_eq!(s, state, "{what}: InvalidState names its state");
        }
        other => panic!("{what} of a {state} job should be Err(InvalidState), got {other:?}"),
    }
}

/// Commands on an unknown job are `NotFound`; commands that do not apply to
/// the job's state are `InvalidState` and change nothing.
pub async fn unknown_and_invalid_commands(store: Arc<dyn Store>) {
    let nobody = Jid::new();
    assert!(store.job(&nobody).await.expect("job").is_none());
    assert_not_found(store.pause(&nobody).await, &nobody, "pause");
    assert_not_found(store.resume(&nobody).await, &nobody, "resume");
    assert_not_found(store.cancel(&nobody).await, &nobody, "cancel");
    assert_not_found(store.retry(&nobody).await, &nobody, "retry");

    let p = register(&store, LONG_TTL).await;
    let done = push_one(&store, job_in("default", 0)).await;
    let leased = fetch_one(&store, &p, "default").await;
    complete_ok(
        &store,
        &leased.lease,
        None,
        Outcome::Succeeded { result: None },
    )
    .await;
    let s = JobState::Succeeded;
    assert_invalid(store.resume(&done).await, &done, s, "resume");
    assert_invalid(store.pause(&done).await, &done, s, "pause");
    assert_invalid(store.retry(&done).await, &done, s, "retry");
    assert_state(&store, &done, JobState::Succeeded).await;

    let waiting = push_one(&store, job_in("default", 1)).await;
    let e = JobState::Enqueued;
    assert_invalid(store.resume(&waiting).await, &waiting, e, "resume");
    assert_state(&store, &waiting, JobState::Enqueued).await;

    let running = fetch_one(&store, &p, "default").await;
    let r = JobState::Running;
    let jid = running.job.jid;
    assert_invalid(store.retry(&jid).await, &jid, r, "retry");
    assert_state(&store, &jid, JobState::Running).await;
}

/// A pause or cancel the running stint never acted on (it was interrupted
/// or failed first) still holds when the stint ends.
pub async fn pending_command_outlives_the_stint(store: Arc<dyn Store>) {
    let p = register(&store, LONG_TTL).await;
    let paused = push_one(&store, job_in("default", 1)).await;
    let cancelled = push_one(&store, job_in("default", 2)).await;
    let a = fetch_one(&store, &p, "default").await;
    let b = fetch_one(&store, &p, "default").await;
    assert_eq!(a.job.jid, paused);
    assert_eq!(
        store.pause(&paused).await.unwrap(),
        CommandEffect::Requested(Control::Pause)
    );
    assert_eq!(
        store.cancel(&cancelled).await.unwrap(),
        CommandEffect::Requested(Control::Cancel)
    );
    complete_ok(
        &store,
        &a.lease,
        Some(checkpoint(3, 3)),
        Outcome::Requeue {
            reason: "shutdown".into(),
        },
    )
    .await;
    complete_ok(
        &store,
        &b.lease,
        None,
        Outcome::Retry {
            error: error_info("boom", 1),
            retry_at_ms: now_ms() + 60_000,
        },
    )
    .await;
    let job = assert_state(&store, &paused, JobState::Paused).await;
    assert_eq!(
        job.checkpoint,
        checkpoint(3, 3),
        "checkpoint of the interrupted stint kept"
    );
    assert_eq!(job.control, None);
    assert_state(&store, &cancelled, JobState::Cancelled).await;
    assert_nothing_to_fetch(&store, &p, "default").await;
}
