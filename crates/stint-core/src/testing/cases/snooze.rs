//! Snoozing: a stint that ends with `Outcome::Snooze` schedules its job
//! at the time asked, with its checkpoint, using no attempt.

use std::sync::Arc;

use crate::lifecycle::SNOOZED;
use crate::model::{now_ms, JobState};
use crate::store::{Outcome, Store};
use crate::testing::*;

/// A stint that snoozes: the job is scheduled at the time asked, its
/// attempts unchanged, its checkpoint saved, the stint recorded as
/// "snoozed"; it is not fetched before the time, and `promote_due` after
/// it enqueues it, to be fetched with its checkpoint.
pub async fn snooze_schedules_the_job_with_its_checkpoint(store: Arc<dyn Store>) {
    let p = register_for(&store, &["sleepy"], LONG_TTL).await;
    let jid = push_one(&store, job_in("sleepy", 1)).await;
    let leased = fetch_one(&store, &p, "sleepy").await;
    let run_at_ms = now_ms() + 400;
    complete_ok(
        &store,
        &leased.lease,
        Some(checkpoint(4, 4)),
        Outcome::Snooze { run_at_ms },
    )
    .await;
    let d = detail(&store, &jid).await;
    assert_eq!(
        d.job.state,
        JobState::Scheduled,
        "a snoozed job is scheduled"
    );
    assert_ms(d.job.run_at_ms, run_at_ms, "the snoozed job's run_at_ms");
    assert_eq!(d.job.attempts, 0, "a snooze uses no attempt");
    assert_eq!(
        d.job.checkpoint,
        checkpoint(4, 4),
        "the checkpoint is saved"
    );
    assert_eq!(d.job.process, None, "no lease held");
    let stint = d.history.iter().find(|s| s.number == leased.lease.stint);
    assert_eq!(
        stint.map(|s| (s.outcome.as_deref(), s.reason.as_deref())),
        Some((Some("snoozed"), Some(SNOOZED))),
        "the stint history's (outcome, reason); history {:?}",
        d.history
    );

    store.promote_due().await.expect("promote_due");
    if now_ms() < run_at_ms {
        assert_state(&store, &jid, JobState::Scheduled).await;
        assert_nothing_to_fetch(&store, &p, "sleepy").await;
    }
    sleep_ms((run_at_ms - now_ms() + 30).clamp(0, 1200) as u64).await;
    store.promote_due().await.expect("promote_due");
    assert_state(&store, &jid, JobState::Enqueued).await;
    let again = fetch_one(&store, &p, "sleepy").await;
    assert_eq!(again.job.jid, jid);
    assert_eq!(again.lease.stint, 2, "the next stint");
    assert_eq!(
        again.job.checkpoint,
        checkpoint(4, 4),
        "with its checkpoint"
    );
    assert_eq!(again.job.attempts, 0);
}
