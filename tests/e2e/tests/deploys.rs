//! Deploys never make a poison pill: a process told to stop (SIGTERM) and
//! killed before it is done (SIGKILL after the grace period, as a deploy
//! does) is not counted against the job it was running, on every store.

use std::time::Duration;

use stint::{Client, JobState};
use stint_e2e::harness::{wait_for, TestStore, WorkerProc};
use stint_e2e::jobs::Count;
use stint_e2e::per_store;

const BIN: &str = env!("CARGO_BIN_EXE_stint-test-worker");

per_store! {
    a_job_killed_by_five_deploys_before_its_first_checkpoint_is_not_a_poison_pill,
}

async fn a_job_killed_by_five_deploys_before_its_first_checkpoint_is_not_a_poison_pill(
    ts: TestStore,
) {
    let client = Client::new(ts.store.clone());
    // Its first checkpoint comes 2.5 s into each stint: every deploy below
    // kills it before that.
    let jid = client
        .push(&Count {
            n: 2,
            sleep_ms: 2_500,
            db: ts.db.clone(),
        })
        .await
        .unwrap();
    // A short lease: the next process recovers the job soon after a kill.
    let env = [("STINT_LEASE_TTL_MS", "1500"), ("RUST_LOG", "info")];
    for deploy in 1..=5usize {
        let mut w = WorkerProc::start(BIN, &ts, 1, &env);
        wait_for(
            Duration::from_secs(30),
            &format!("stint {deploy} to start"),
            || async { (ts.starts(&jid).len() >= deploy).then_some(()) },
        )
        .await;
        // The deploy: SIGTERM, then SIGKILL after a (short) grace period.
        w.signal(libc::SIGTERM);
        tokio::time::sleep(Duration::from_millis(400)).await;
        w.kill9();
        let d = ts.job(&jid).await;
        assert_eq!(
            d.job.checkpoint.done,
            0,
            "deploy {deploy}: killed before its first checkpoint; log:\n{}",
            w.log_text()
        );
        assert_ne!(d.job.state, JobState::Dead, "deploy {deploy}");
    }
    let mut last = WorkerProc::start(BIN, &ts, 1, &env);
    let d = wait_for(
        Duration::from_secs(40),
        "the job to finish after the deploys",
        || async {
            let d = ts.job(&jid).await;
            assert_ne!(
                d.job.state,
                JobState::Dead,
                "a poison pill: {:?}",
                d.job.reason
            );
            (d.job.state == JobState::Succeeded).then_some(d)
        },
    )
    .await;
    assert_eq!(d.job.recoveries, 0, "no recovery counted");
    assert_eq!(d.job.attempts, 0);
    let recovered = d
        .history
        .iter()
        .filter(|s| s.outcome.as_deref() == Some("recovered"))
        .count();
    assert_eq!(recovered, 5, "{:?}", d.history);
    assert_eq!(ts.starts(&jid).len(), 6);
    last.signal(libc::SIGTERM);
    assert!(
        last.wait(Duration::from_secs(10)).unwrap().success(),
        "log:\n{}",
        last.log_text()
    );
}
