//! The ends of stints: success, retry, dead, requeue, each with the
//! checkpoint it carries or the one the store already has.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::model::{now_ms, JobState};
use crate::store::{Completion, Outcome, Store};
use crate::testing::*;

/// A checkpoint is saved and read back; success makes the job succeeded
/// with its final checkpoint, a finish time and a stint in its history.
pub async fn checkpoint_then_succeed(store: Arc<dyn Store>) {
    let p = register(&store, LONG_TTL).await;
    let jid = push_one(&store, job_in("default", 1)).await;
    let leased = fetch_one(&store, &p, "default").await;

    let ack = store
        .checkpoint(&leased.lease, &checkpoint(10, 10))
        .await
        .expect("checkpoint");
    assert_eq!(ack, None, "no operator command pending");
    let job = assert_state(&store, &jid, JobState::Running).await;
    assert_eq!(job.checkpoint, checkpoint(10, 10), "checkpoint read back");

    let fin = checkpoint(20, 20);
    complete_ok(
        &store,
        &leased.lease,
        Some(fin.clone()),
        Outcome::Succeeded {
            result: Some(json!({ "rows": 20 })),
        },
    )
    .await;

    let d = detail(&store, &jid).await;
    assert_eq!(d.job.state, JobState::Succeeded);
    assert_eq!(
        d.job.checkpoint, fin,
        "the completion's checkpoint is saved"
    );
    assert!(d.job.finished_at_ms.is_some(), "finished_at_ms is set");
    assert_eq!(d.job.process, None, "no process holds a finished job");
    assert!(d.errors.is_empty());
    let stint = d
        .history
        .iter()
        .find(|s| s.number == 1)
        .unwrap_or_else(|| panic!("history should have stint 1: {:?}", d.history));
    assert_eq!(stint.outcome.as_deref(), Some("succeeded"));
    assert_eq!(stint.process, p);
    assert!(stint.ended_at_ms.is_some(), "stint 1 has ended");
    assert_eq!(stint.done, 20, "done when stint 1 ended");

    assert_nothing_to_fetch(&store, &p, "default").await;
}

/// A completion without a checkpoint keeps the one the store has.
pub async fn complete_without_checkpoint_keeps_saved_one(store: Arc<dyn Store>) {
    let p = register(&store, LONG_TTL).await;
    let jid = push_one(&store, job_in("default", 1)).await;
    let leased = fetch_one(&store, &p, "default").await;
    store
        .checkpoint(&leased.lease, &checkpoint(5, 5))
        .await
        .expect("checkpoint");
    complete_ok(
        &store,
        &leased.lease,
        None,
        Outcome::Succeeded { result: None },
    )
    .await;
    let job = assert_state(&store, &jid, JobState::Succeeded).await;
    assert_eq!(job.checkpoint, checkpoint(5, 5));
}

/// A failure with attempts left retries at the given time (attempts + 1,
/// error kept with its chain); a failure for good is dead with its reason;
/// every error is listed.
pub async fn retry_then_dead(store: Arc<dyn Store>) {
    let p = register(&store, LONG_TTL).await;
    let jid = push_one(&store, job_in("default", 1)).await;
    let first = fetch_one(&store, &p, "default").await;

    let err1 = error_info("boom", 1);
    let retry_at = now_ms() + 300;
    complete_ok(
        &store,
        &first.lease,
        Some(checkpoint(3, 3)),
        Outcome::Retry {
            error: err1.clone(),
            retry_at_ms: retry_at,
        },
    )
    .await;
    let job = assert_state(&store, &jid, JobState::Retrying).await;
    assert_eq!(job.attempts, 1, "a failure uses an attempt");
    assert_eq!(job.error.as_ref(), Some(&err1), "error kept with its chain");
    assert_ms(job.run_at_ms, retry_at, "run_at_ms (the retry time)");
    assert_eq!(job.checkpoint, checkpoint(3, 3));
    assert_nothing_to_fetch(&store, &p, "default").await;
    assert_eq!(
        store.promote_due().await.expect("promote"),
        0,
        "not due yet"
    );
    assert_state(&store, &jid, JobState::Retrying).await;

    sleep_ms(500).await;
    assert_eq!(store.promote_due().await.expect("promote"), 1, "now due");
    let job = assert_state(&store, &jid, JobState::Enqueued).await;
    assert_eq!(job.attempts, 1);

    let second = fetch_one(&store, &p, "default").await;
    assert_eq!(second.job.jid, jid);
    assert_eq!(second.lease.stint, 2);
    assert_eq!(
        second.job.checkpoint,
        checkpoint(3, 3),
        "resumes from checkpoint"
    );

    let err2 = error_info("bad input", 2);
    complete_ok(
        &store,
        &second.lease,
        None,
        Outcome::Dead {
            error: err2.clone(),
            reason: "invalid arguments".into(),
        },
    )
    .await;
    let d = detail(&store, &jid).await;
    assert_eq!(d.job.state, JobState::Dead);
    let reason = d.job.reason.clone().unwrap_or_default();
    assert!(
        reason.contains("invalid arguments"),
        "dead reason {reason:?} should contain the outcome's reason"
    );
    assert_eq!(d.job.error.as_ref(), Some(&err2));
    assert!(d.job.finished_at_ms.is_some(), "finished_at_ms is set");
    assert_eq!(d.errors, vec![err1, err2], "every error, oldest first");
    let outcomes: Vec<_> = d
        .history
        .iter()
        .map(|s| (s.number, s.outcome.clone()))
        .collect();
    assert!(
        outcomes.contains(&(1, Some("failed".into())))
            && outcomes.contains(&(2, Some("dead".into()))),
        "history should have stint 1 failed and stint 2 dead: {outcomes:?}"
    );
    assert_nothing_to_fetch(&store, &p, "default").await;
}

/// An interrupted stint puts its job back at the head of its queue, ahead of
/// jobs that waited longer, with attempts unchanged and its checkpoint.
pub async fn requeue_goes_to_head(store: Arc<dyn Store>) {
    let p = register(&store, LONG_TTL).await;
    // An older job that is scheduled while the interrupted one runs, then
    // waits in the queue (created before the interrupted job).
    let older = push_one(
        &store,
        scheduled_in("default", 0, Duration::from_millis(200)),
    )
    .await;
    let jid = push_one(&store, job_in("default", 1)).await;
    let leased = fetch_one(&store, &p, "default").await;
    assert_eq!(leased.job.jid, jid);
    sleep_ms(400).await;
    assert_eq!(store.promote_due().await.expect("promote"), 1);
    let newer = push_one(&store, job_in("default", 2)).await;

    store
        .checkpoint(&leased.lease, &checkpoint(4, 4))
        .await
        .expect("checkpoint");
    complete_ok(
        &store,
        &leased.lease,
        Some(checkpoint(7, 7)),
        Outcome::Requeue {
            reason: "shutdown".into(),
        },
    )
    .await;
    let job = assert_state(&store, &jid, JobState::Enqueued).await;
    assert_eq!(job.attempts, 0, "an interruption uses no attempt");
    assert_eq!(
        job.checkpoint,
        checkpoint(7, 7),
        "the completion's checkpoint"
    );
    assert_eq!(job.process, None, "no process holds an enqueued job");
    let d = detail(&store, &jid).await;
    let s1 = d.history.iter().find(|s| s.number == 1);
    assert_eq!(
        s1.and_then(|s| s.outcome.as_deref()),
        Some("interrupted"),
        "history: {:?}",
        d.history
    );

    let again = fetch_one(&store, &p, "default").await;
    assert_eq!(
        again.job.jid, jid,
        "the interrupted job is fetched before jobs that waited longer"
    );
    assert_eq!(again.lease.stint, 2);
    assert_eq!(again.job.checkpoint, checkpoint(7, 7));
    assert_eq!(fetch_one(&store, &p, "default").await.job.jid, older);
    assert_eq!(fetch_one(&store, &p, "default").await.job.jid, newer);

    // Requeued without a checkpoint: the store's last one is kept.
    store
        .checkpoint(&again.lease, &checkpoint(9, 9))
        .await
        .expect("checkpoint");
    complete_ok(
        &store,
        &again.lease,
        None,
        Outcome::Requeue {
            reason: "aborted".into(),
        },
    )
    .await;
    let job = assert_state(&store, &jid, JobState::Enqueued).await;
    assert_eq!(job.checkpoint, checkpoint(9, 9));
    assert_eq!(job.attempts, 0);
}

/// Two jobs requeued one after the other: the later one is at the head.
pub async fn requeue_is_lifo_at_head(store: Arc<dyn Store>) {
    let p = register(&store, LONG_TTL).await;
    let pushed = push_each(&store, (0..4).map(|n| job_in("default", n)).collect()).await;
    let (a, b) = (
        fetch_one(&store, &p, "default").await,
        fetch_one(&store, &p, "default").await,
    );
    assert_eq!((&a.job.jid, &b.job.jid), (&pushed[0], &pushed[1]));
    let requeue = || Outcome::Requeue {
        reason: "shutdown".into(),
    };
    complete_ok(&store, &a.lease, None, requeue()).await;
    complete_ok(&store, &b.lease, None, requeue()).await;
    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(fetch_one(&store, &p, "default").await.job.jid);
    }
    let want = vec![
        pushed[1].clone(),
        pushed[0].clone(),
        pushed[2].clone(),
        pushed[3].clone(),
    ];
    assert_eq!(got, want, "the last job put at the head comes first");
}

/// `complete` applies each completion on its own: a refused one does not
/// stop the others.
pub async fn completion_batch_is_applied_per_job(store: Arc<dyn Store>) {
    let p = register(&store, LONG_TTL).await;
    push_each(&store, (0..3).map(|n| job_in("default", n)).collect()).await;
    let leased = fetch(&store, &p, "default", 3).await;
    assert_eq!(leased.len(), 3);
    let mut stale = leased[1].lease.clone();
    stale.stint += 1;
    let completions = vec![
        Completion {
            lease: leased[0].lease.clone(),
            checkpoint: None,
            outcome: Outcome::Succeeded { result: None },
        },
        Completion {
            lease: stale,
            checkpoint: None,
            outcome: Outcome::Succeeded { result: None },
        },
        Completion {
            lease: leased[2].lease.clone(),
            checkpoint: Some(checkpoint(1, 1)),
            outcome: Outcome::Requeue {
                reason: "shutdown".into(),
            },
        },
    ];
    let refused = store.complete(completions).await.expect("complete");
    assert_eq!(refused, vec![leased[1].job.jid.clone()]);
    assert_state(&store, &leased[0].job.jid, JobState::Succeeded).await;
    assert_state(&store, &leased[1].job.jid, JobState::Running).await;
    assert_state(&store, &leased[2].job.jid, JobState::Enqueued).await;
}
