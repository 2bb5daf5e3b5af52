//! SIGTSTP quiets a real worker process: it takes no new jobs, while the
//! jobs it already runs go on; SIGTERM then stops it and hands them back.

use std::time::Duration;

use stint::{Client, JobState};
use stint_e2e::harness::{wait_for, TestStore, WorkerProc};
use stint_e2e::jobs::Count;
use stint_e2e::per_store;

const BIN: &str = env!("CARGO_BIN_EXE_stint-test-worker");

per_store! {
    sigtstp_takes_no_new_jobs_while_the_running_one_goes_on_then_sigterm_hands_it_back,
}

async fn sigtstp_takes_no_new_jobs_while_the_running_one_goes_on_then_sigterm_hands_it_back(
    ts: TestStore,
) {
    let client = Client::new(ts.store.clone());
    let running = client
        .push(&Count {
            n: 100_000,
            sleep_ms: 5,
            db: ts.db.clone(),
        })
        .await
        .unwrap();
    // Four slots: without the quiet, a new job would start at once.
    let mut w = WorkerProc::start(BIN, &ts, 4, &[]);
    wait_for(
        Duration::from_secs(20),
        "the first job to make progress",
        || async { (ts.job(&running).await.job.checkpoint.done >= 20).then_some(()) },
    )
    .await;

    w.signal(libc::SIGTSTP);
    // The process reports itself quiet with its next heartbeat: by then the
    // signal was handled.
    wait_for(
        Duration::from_secs(10),
        "the worker to report itself quiet",
        || async {
            let processes = ts.store.processes().await.unwrap();
            processes
                .iter()
                .any(|p| p.pid == w.pid() && p.quiet)
                .then_some(())
        },
    )
    .await;
    assert!(
        w.wait(Duration::from_millis(10)).is_none(),
        "SIGTSTP neither stops nor ends the process"
    );

    let new = client
        .push(&Count {
            n: 3,
            sleep_ms: 0,
            db: ts.db.clone(),
        })
        .await
        .unwrap();
    let before = ts.job(&running).await.job.checkpoint.done;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let waiting = ts.job(&new).await;
    assert_eq!(
        waiting.job.state,
        JobState::Enqueued,
        "a quiet worker takes no new job"
    );
    assert_eq!(waiting.job.stints, 0, "never started");
    let d = ts.job(&running).await;
    assert_eq!(d.job.state, JobState::Running);
    assert!(
        d.job.checkpoint.done > before,
        "the running job goes on: {before} then {}",
        d.job.checkpoint.done
    );

    w.signal(libc::SIGTERM);
    let status = w
        .wait(Duration::from_secs(10))
        .expect("exits after SIGTERM");
    assert_eq!(status.code(), Some(0), "log:\n{}", w.log_text());
    let d = ts.job(&running).await;
    assert_eq!(d.job.state, JobState::Enqueued, "handed back");
    assert_eq!(d.job.attempts, 0);
    assert_eq!(d.history.len(), 1);
    assert_eq!(d.history[0].outcome.as_deref(), Some("interrupted"));
    assert_eq!(d.history[0].reason.as_deref(), Some("shutdown"));
    assert!(d.job.checkpoint.cursor.is_some(), "with its checkpoint");
    assert_eq!(ts.job(&new).await.job.stints, 0, "the new job never ran");
}
