//! Pause, resume and cancel a job running in a real worker process, on
//! every store.

use std::time::Duration;

use stint::{Client, CommandEffect, Control, JobState};
use stint_e2e::harness::{wait_for, TestStore, WorkerProc};
use stint_e2e::jobs::Count;
use stint_e2e::per_store;

const BIN: &str = env!("CARGO_BIN_EXE_stint-test-worker");

per_store! {
    pause_then_resume_a_running_job_continues_from_its_checkpoint,
    cancel_a_running_job_stops_it_at_its_next_checkpoint,
    a_paused_queue_is_not_served_until_resumed,
}

async fn pause_then_resume_a_running_job_continues_from_its_checkpoint(ts: TestStore) {
    let jid = Client::new(ts.store.clone())
        .push(&Count {
            n: 400,
            sleep_ms: 5,
            db: ts.db.clone(),
        })
        .await
        .unwrap();
    let mut w = WorkerProc::start(BIN, &ts, 2, &[]);
    wait_for(Duration::from_secs(20), "progress", || async {
        (ts.job(&jid).await.job.checkpoint.done >= 50).then_some(())
    })
    .await;

    let effect = ts.store.pause(&jid).await.unwrap();
    assert_eq!(effect, CommandEffect::Requested(Control::Pause));
    let paused = wait_for(Duration::from_secs(3), "the job to stop paused", || async {
        let d = ts.job(&jid).await;
        (d.job.state == JobState::Paused).then_some(d)
    })
    .await;
    let at: u64 = serde_json::from_value(paused.job.checkpoint.cursor.clone().unwrap()).unwrap();
    assert!((50..400).contains(&at));
    // It stays paused: nothing runs it.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let still = ts.job(&jid).await;
    assert_eq!(still.job.state, JobState::Paused);
    assert_eq!(still.job.checkpoint.done, at, "no progress while paused");

    assert_eq!(
        ts.store.resume(&jid).await.unwrap(),
        CommandEffect::Done(JobState::Enqueued)
    );
    wait_for(
        Duration::from_secs(20),
        "the job to finish after resume",
        || async { (ts.job(&jid).await.job.state == JobState::Succeeded).then_some(()) },
    )
    .await;
    let starts = ts.starts(&jid);
    assert_eq!(starts.len(), 2, "{starts:?}");
    assert_eq!(starts[1].1, Some(at), "resumed from the paused checkpoint");
    let d = ts.job(&jid).await;
    assert_eq!(d.history[0].outcome.as_deref(), Some("paused"));
    assert_eq!(d.job.attempts, 0);
    w.signal(libc::SIGTERM);
    assert!(w.wait(Duration::from_secs(10)).unwrap().success());
}

async fn cancel_a_running_job_stops_it_at_its_next_checkpoint(ts: TestStore) {
    let jid = Client::new(ts.store.clone())
        .push(&Count {
            n: 100_000,
            sleep_ms: 2,
            db: ts.db.clone(),
        })
        .await
        .unwrap();
    let mut w = WorkerProc::start(BIN, &ts, 2, &[]);
    wait_for(Duration::from_secs(20), "progress", || async {
        (ts.job(&jid).await.job.checkpoint.done >= 20).then_some(())
    })
    .await;
    assert_eq!(
        ts.store.cancel(&jid).await.unwrap(),
        CommandEffect::Requested(Control::Cancel)
    );
    let d = wait_for(
        Duration::from_secs(3),
        "the job to be cancelled",
        || async {
            let d = ts.job(&jid).await;
            (d.job.state == JobState::Cancelled).then_some(d)
        },
    )
    .await;
    assert!(d.job.checkpoint.done >= 20, "checkpoint kept");
    assert!(d.job.finished_at_ms.is_some());
    // The worker goes on and takes other work; it exits cleanly.
    w.signal(libc::SIGTERM);
    assert!(w.wait(Duration::from_secs(10)).unwrap().success());
}

async fn a_paused_queue_is_not_served_until_resumed(ts: TestStore) {
    ts.store.set_queue_paused("default", true).await.unwrap();
    let jid = Client::new(ts.store.clone())
        .push(&Count {
            n: 3,
            sleep_ms: 0,
            db: ts.db.clone(),
        })
        .await
        .unwrap();
    let _w = WorkerProc::start(BIN, &ts, 2, &[]);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(ts.job(&jid).await.job.state, JobState::Enqueued);
    ts.store.set_queue_paused("default", false).await.unwrap();
    wait_for(
        Duration::from_secs(10),
        "the job to run once the queue is resumed",
        || async { (ts.job(&jid).await.job.state == JobState::Succeeded).then_some(()) },
    )
    .await;
}
