//! Bad input gets a clear error, loses nothing and never crashes the worker.

use std::time::Duration;

use stint::{Backoff, Client, Jid, JobOptions, JobState, NewJob};
use stint_e2e::harness::{wait_for, TestStore, WorkerProc};
use stint_e2e::jobs::Count;
use stint_e2e::per_store;

const BIN: &str = env!("CARGO_BIN_EXE_stint-test-worker");

per_store! {
    bad_payload_unknown_kind_and_stale_checkpoint_each_end_dead_with_a_clear_error,
}

fn raw(kind: &str, args: serde_json::Value, max_attempts: u32) -> NewJob {
    NewJob {
        jid: Jid::new(),
        kind: kind.into(),
        args,
        options: JobOptions {
            max_attempts,
            backoff: Backoff {
                base_ms: 100,
                max_ms: 200,
                jitter: 0.0,
            },
            ..JobOptions::default()
        },
        run_at: None,
    }
}

async fn bad_payload_unknown_kind_and_stale_checkpoint_each_end_dead_with_a_clear_error(
    ts: TestStore,
) {
    let client = Client::new(ts.store.clone());

    // 1. Arguments that do not deserialize for the kind: dead at once.
    let bad_args = raw("Count", serde_json::json!({"n": "many"}), 25);
    // 2. A kind no worker knows: retried, then dead.
    let unknown = raw("NoSuchKind", serde_json::json!({}), 3);
    let (bad_jid, unknown_jid) = (bad_args.jid.clone(), unknown.jid.clone());
    client.push_raw(vec![bad_args, unknown]).await.unwrap();
    // 3. A checkpoint written by one version of the code...
    let stale_jid = client
        .push(&Count {
            n: 100_000,
            sleep_ms: 1,
            db: ts.db.clone(),
        })
        .await
        .unwrap();

    let mut w = WorkerProc::start(BIN, &ts, 4, &[]);
    wait_for(
        Duration::from_secs(20),
        "the counting job to checkpoint",
        || async { (ts.job(&stale_jid).await.job.checkpoint.done > 5).then_some(()) },
    )
    .await;
    w.signal(libc::SIGTERM);
    assert!(w.wait(Duration::from_secs(10)).unwrap().success());

    let d = ts.job(&bad_jid).await;
    assert_eq!(d.job.state, JobState::Dead);
    let reason = d.job.reason.clone().unwrap();
    assert!(
        reason.contains(bad_jid.as_str()) && reason.contains("do not deserialize"),
        "{reason}"
    );
    assert_eq!(d.history.len(), 1, "no retry storm: one stint only");

    // ...read by the next version, whose cursor type changed.
    let mut w2 = WorkerProc::start(BIN, &ts, 4, &[("STINT_E2E_CURSOR_V2", "1")]);
    let d = wait_for(
        Duration::from_secs(20),
        "the stale checkpoint to stop its job",
        || async {
            let d = ts.job(&stale_jid).await;
            (d.job.state == JobState::Dead).then_some(d)
        },
    )
    .await;
    let reason = d.job.reason.clone().unwrap();
    assert!(
        reason.contains(stale_jid.as_str()),
        "names the job: {reason}"
    );
    assert!(
        reason.contains("cursor") && reason.contains("CursorV2"),
        "names the cursor: {reason}"
    );
    assert!(d.job.checkpoint.cursor.is_some(), "the checkpoint is kept");

    let d = wait_for(
        Duration::from_secs(20),
        "the unknown kind to be dead after its attempts",
        || async {
            let d = ts.job(&unknown_jid).await;
            (d.job.state == JobState::Dead).then_some(d)
        },
    )
    .await;
    assert_eq!(d.job.attempts, 3);
    assert_eq!(d.errors.len(), 3, "one error per attempt");
    assert!(
        d.errors[0].message.contains("NoSuchKind"),
        "{:?}",
        d.errors[0]
    );

    // The worker survived all of it and stops cleanly.
    assert!(
        w2.wait(Duration::from_millis(100)).is_none(),
        "worker still running"
    );
    w2.signal(libc::SIGTERM);
    assert!(
        w2.wait(Duration::from_secs(10)).unwrap().success(),
        "log:\n{}",
        w2.log_text()
    );
}
