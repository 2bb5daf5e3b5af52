//! Leases: fencing of stale stints, heartbeats, and the recovery of jobs
//! whose process died, up to the poison-pill limit.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use crate::error::StoreError;
use crate::model::{Jid, JobState};
use crate::store::{Lease, Outcome, Store};
use crate::testing::*;

/// Asserts that a checkpoint under `lease` is refused as `LeaseLost`.
async fn assert_checkpoint_refused(store: &Arc<dyn Store>, lease: &Lease, why: &str) {
    match store.checkpoint(lease, &checkpoint(99, 99)).await {
        Err(StoreError::LeaseLost(jid)) => assert_eq!(jid, lease.jid),
        other => panic!("checkpoint of {why} should be Err(LeaseLost), got {other:?}"),
    }
}

/// Asserts that completing under `lease` is refused and writes nothing.
async fn assert_complete_refused(store: &Arc<dyn Store>, lease: &Lease, why: &str) {
    let before = detail(store, &lease.jid).await;
    let refused = complete(
        store,
        lease,
        Some(checkpoint(99, 99)),
        Outcome::Succeeded { result: None },
    )
    .await;
    assert_eq!(
        refused,
        vec![lease.jid.clone()],
        "completing {why} should be refused"
    );
    let after = detail(store, &lease.jid).await;
    assert_eq!(
        after.job, before.job,
        "a refused completion changes nothing"
    );
}

/// A process whose lease was taken from it (expired, job recovered and
/// leased again as stint 2) has its checkpoint and completion refused; the
/// new holder goes on.
pub async fn stale_lease_is_fenced(store: Arc<dyn Store>) {
    let a = register(&store, LONG_TTL).await;
    let jid = push_one(&store, job_in("default", 1)).await;
    let old = fetch_one(&store, &a, "default").await;
    store
        .checkpoint(&old.lease, &checkpoint(1, 1))
        .await
        .expect("checkpoint");

    store.expire_process(&a).await.expect("expire");
    let recovered = store.recover_orphans(3).await.expect("recover");
    assert_eq!(recovered.len(), 1, "the job of the expired process");
    assert_checkpoint_refused(&store, &old.lease, "a recovered job (enqueued)").await;
    assert_complete_refused(&store, &old.lease, "a recovered job (enqueued)").await;

    let b = register(&store, LONG_TTL).await;
    let new = fetch_one(&store, &b, "default").await;
    assert_eq!(new.job.jid, jid);
    assert_eq!(new.lease.stint, 2, "the second stint");
    assert_eq!(new.lease.process, b);
    assert_eq!(new.job.checkpoint, checkpoint(1, 1));

    assert_checkpoint_refused(&store, &old.lease, "a lease taken by another process").await;
    assert_complete_refused(&store, &old.lease, "a lease taken by another process").await;
    let job = assert_state(&store, &jid, JobState::Running).await;
    assert_eq!(job.process.as_deref(), Some(b.as_str()));
    assert_eq!(job.stints, 2);
    assert_eq!(
        job.checkpoint,
        checkpoint(1, 1),
        "the stale write was not saved"
    );

    let ack = store
        .checkpoint(&new.lease, &checkpoint(2, 2))
        .await
        .expect("the current lease checkpoints");
    assert_eq!(ack, None);
    complete_ok(
        &store,
        &new.lease,
        None,
        Outcome::Succeeded { result: None },
    )
    .await;
    let job = assert_state(&store, &jid, JobState::Succeeded).await;
    assert_eq!(job.checkpoint, checkpoint(2, 2));
}

/// The lease token is the stint, not only the process: the same process's
/// earlier stint is refused once it leased the job again.
pub async fn stale_lease_of_same_process_is_fenced(store: Arc<dyn Store>) {
    let p = register(&store, LONG_TTL).await;
    let jid = push_one(&store, job_in("default", 1)).await;
    let first = fetch_one(&store, &p, "default").await;
    complete_ok(
        &store,
        &first.lease,
        Some(checkpoint(1, 1)),
        Outcome::Requeue {
            reason: "shutdown".into(),
        },
    )
    .await;
    let second = fetch_one(&store, &p, "default").await;
    assert_eq!(second.job.jid, jid);
    assert_eq!(second.lease.stint, 2);
    assert_checkpoint_refused(&store, &first.lease, "stint 1 while stint 2 runs").await;
    assert_complete_refused(&store, &first.lease, "stint 1 while stint 2 runs").await;

    let other = Lease {
        process: "someone-else".into(),
        ..second.lease.clone()
    };
    assert_checkpoint_refused(&store, &other, "a lease naming another process").await;
    assert_complete_refused(&store, &other, "a lease naming another process").await;

    let unknown = Lease {
        jid: Jid::new(),
        ..second.lease.clone()
    };
    assert!(
        store.checkpoint(&unknown, &checkpoint(1, 1)).await.is_err(),
        "a checkpoint of an unknown job is an error"
    );
}

/// Once a stint has ended, its lease writes nothing more: a second
/// completion of the same stint is refused.
pub async fn finished_job_refuses_its_lease(store: Arc<dyn Store>) {
    let p = register(&store, LONG_TTL).await;
    let jid = push_one(&store, job_in("default", 1)).await;
    let leased = fetch_one(&store, &p, "default").await;
    complete_ok(
        &store,
        &leased.lease,
        Some(checkpoint(3, 3)),
        Outcome::Succeeded { result: None },
    )
    .await;
    assert_checkpoint_refused(&store, &leased.lease, "a succeeded job").await;
    let refused = complete(
        &store,
        &leased.lease,
        None,
        Outcome::Retry {
            error: error_info("late", 1),
            retry_at_ms: 0,
        },
    )
    .await;
    assert_eq!(refused, vec![jid.clone()], "a second completion is refused");
    let job = assert_state(&store, &jid, JobState::Succeeded).await;
    assert_eq!(job.attempts, 0);
    assert_eq!(job.checkpoint, checkpoint(3, 3));
}

/// Jobs of a process that stops beating are recovered to the head of their
/// queue with their checkpoints once its ttl passes; a process that beats
/// keeps its jobs.
pub async fn orphans_are_recovered(store: Arc<dyn Store>) {
    // Jobs created first but due later: they wait in the queue, behind the
    // recovered ones.
    let late = push_each(
        &store,
        (0..2)
            .map(|n| scheduled_in("default", 100 + n, Duration::from_millis(300)))
            .collect(),
    )
    .await;
    let a = register(&store, Duration::from_secs(1)).await;
    let b = register(&store, Duration::from_secs(1)).await;
    push_each(&store, (0..7).map(|n| job_in("default", n)).collect()).await;
    let of_a = fetch(&store, &a, "default", 5).await;
    assert_eq!(of_a.len(), 5);
    let of_b = fetch(&store, &b, "default", 2).await;
    assert_eq!(of_b.len(), 2);
    for (i, l) in of_a.iter().enumerate() {
        store
            .checkpoint(&l.lease, &checkpoint(i as u64, i as u64))
            .await
            .expect("checkpoint");
    }
    let early = store.recover_orphans(3).await.expect("recover");
    assert!(
        early.is_empty(),
        "no lease expired yet, recovered {early:?}"
    );

    sleep_ms(500).await;
    assert!(
        store
            .heartbeat(&b, 2, false, Duration::from_secs(30))
            .await
            .expect("heartbeat"),
        "a live process's heartbeat is known"
    );
    sleep_ms(800).await;
    assert_eq!(store.promote_due().await.expect("promote"), 2);

    let recovered = store.recover_orphans(3).await.expect("recover");
    let want: HashSet<_> = jids(&of_a).into_iter().collect();
    let got: HashSet<_> = recovered.iter().map(|r| r.jid.clone()).collect();
    assert_eq!(got, want, "exactly the jobs of the silent process");
    for r in &recovered {
        assert_eq!(r.process, a);
        assert_eq!(r.kind, "Test");
        assert_eq!(r.recoveries, 1);
        assert_eq!(r.state, JobState::Enqueued);
    }
    let again = store.recover_orphans(3).await.expect("recover");
    assert!(again.is_empty(), "recovery is idempotent, got {again:?}");

    for (i, l) in of_a.iter().enumerate() {
        let job = assert_state(&store, &l.job.jid, JobState::Enqueued).await;
        assert_eq!(job.recoveries, 1);
        assert_eq!(job.attempts, 0, "a recovery uses no attempt");
        assert_eq!(job.checkpoint, checkpoint(i as u64, i as u64));
        let d = detail(&store, &l.job.jid).await;
        let s1 = d.history.iter().find(|s| s.number == 1);
        assert_eq!(
            s1.and_then(|s| s.outcome.as_deref()),
            Some("recovered"),
            "history: {:?}",
            d.history
        );
    }
    for l in &of_b {
        assert_state(&store, &l.job.jid, JobState::Running).await;
    }

    assert!(
        !store
            .heartbeat(&a, 0, false, Duration::from_secs(1))
            .await
            .expect("heartbeat"),
        "the heartbeat of a process whose jobs were recovered returns false"
    );
    let live: Vec<_> = store
        .processes()
        .await
        .expect("processes")
        .into_iter()
        .map(|p| p.id)
        .collect();
    assert!(
        !live.contains(&a),
        "an expired process is not live: {live:?}"
    );
    assert!(live.contains(&b), "a beating process is live: {live:?}");

    let c = register(&store, LONG_TTL).await;
    let refetched = fetch(&store, &c, "default", 7).await;
    assert_eq!(refetched.len(), 7);
    let head: HashSet<_> = jids(&refetched[..5]).into_iter().collect();
    let tail: HashSet<_> = jids(&refetched[5..]).into_iter().collect();
    let late: HashSet<_> = late.into_iter().collect();
    assert_eq!(
        (head, tail),
        (want, late),
        "recovered jobs are at the head, ahead of jobs that waited"
    );
    for l in &refetched[..5] {
        assert_eq!(l.lease.stint, 2);
    }
}

/// `expire_process` makes a live process's jobs recoverable at once.
pub async fn expire_process_makes_recovery_immediate(store: Arc<dyn Store>) {
    let p = register(&store, LONG_TTL).await;
    let jid = push_one(&store, job_in("default", 1)).await;
    fetch_one(&store, &p, "default").await;
    assert!(store.recover_orphans(3).await.expect("recover").is_empty());
    store.expire_process(&p).await.expect("expire");
    let recovered = store.recover_orphans(3).await.expect("recover");
    assert_eq!(recovered.len(), 1);
    assert_eq!(recovered[0].jid, jid);
    assert_eq!(recovered[0].process, p);
    assert_eq!(recovered[0].state, JobState::Enqueued);
    assert_state(&store, &jid, JobState::Enqueued).await;
}

/// The heartbeat of a process the store does not know returns false; of a
/// registered one, true.
pub async fn heartbeat_of_unknown_process_is_false(store: Arc<dyn Store>) {
    let known = store
        .heartbeat("nobody:1:000000000000", 0, false, Duration::from_secs(5))
        .await
        .expect("heartbeat");
    assert!(!known, "heartbeat of an unknown process");
    let p = register(&store, LONG_TTL).await;
    let known = store
        .heartbeat(&p, 0, false, LONG_TTL)
        .await
        .expect("heartbeat");
    assert!(known, "heartbeat of a registered process");
}

/// A job recovered more than `max_recoveries` times goes to dead, with a
/// reason that says why.
pub async fn poison_pill_goes_dead(store: Arc<dyn Store>) {
    let jid = push_one(&store, job_in("default", 1)).await;
    for round in 1..=4u32 {
        let p = register(&store, LONG_TTL).await;
        let leased = fetch_one(&store, &p, "default").await;
        assert_eq!(leased.job.jid, jid);
        assert_eq!(leased.lease.stint, round);
        store.expire_process(&p).await.expect("expire");
        let recovered = store.recover_orphans(3).await.expect("recover");
        assert_eq!(recovered.len(), 1, "round {round}");
        assert_eq!(recovered[0].recoveries, round, "round {round}");
        let want = if round <= 3 {
            JobState::Enqueued
        } else {
            JobState::Dead
        };
        assert_eq!(recovered[0].state, want, "round {round}");
        let job = assert_state(&store, &jid, want).await;
        assert_eq!(job.recoveries, round);
    }
    let job = record(&store, &jid).await;
    let reason = job.reason.unwrap_or_default();
    assert!(
        reason.contains("poison pill: recovered 4 times"),
        "dead reason {reason:?} should say \"poison pill: recovered 4 times\""
    );
    let p = register(&store, LONG_TTL).await;
    assert_nothing_to_fetch(&store, &p, "default").await;
}

/// Only recoveries in a row without progress count toward the poison-pill
/// limit: a long job killed by many deploys, advancing between them, is
/// not a poison pill. A checkpoint that does not advance changes nothing.
pub async fn progress_between_recoveries_resets_the_count(store: Arc<dyn Store>) {
    let jid = push_one(&store, job_in("default", 1)).await;
    let mut done = 0;
    for round in 1..=6u32 {
        let p = register(&store, LONG_TTL).await;
        let leased = fetch_one(&store, &p, "default").await;
        done += 10;
        store
            .checkpoint(&leased.lease, &checkpoint(done, done))
            .await
            .expect("checkpoint");
        // The same progress again is not progress.
        store
            .checkpoint(&leased.lease, &checkpoint(done, done))
            .await
            .expect("checkpoint");
        store.expire_process(&p).await.expect("expire");
        let recovered = store.recover_orphans(3).await.expect("recover");
        assert_eq!(recovered.len(), 1, "round {round}");
        assert_eq!(
            recovered[0].recoveries, 1,
            "round {round}: progress reset the count"
        );
        assert_eq!(recovered[0].state, JobState::Enqueued, "round {round}");
    }
    // Now it stops advancing: dead after the limit.
    for round in 2..=4u32 {
        let p = register(&store, LONG_TTL).await;
        let leased = fetch_one(&store, &p, "default").await;
        store
            .checkpoint(&leased.lease, &checkpoint(done, done))
            .await
            .expect("checkpoint");
        store.expire_process(&p).await.expect("expire");
        let recovered = store.recover_orphans(3).await.expect("recover");
        assert_eq!(recovered[0].recoveries, round);
        let want = if round <= 3 {
            JobState::Enqueued
        } else {
            JobState::Dead
        };
        assert_eq!(recovered[0].state, want, "round {round}");
    }
    let reason = record(&store, &jid).await.reason.unwrap_or_default();
    assert!(
        reason.contains("poison pill: recovered 4 times"),
        "{reason}"
    );
}
