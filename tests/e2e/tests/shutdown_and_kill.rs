//! Real worker processes stopped by SIGTERM and killed by SIGKILL, on
//! every store.

use std::time::{Duration, Instant};

use stint::{Client, Jid, JobState, Push};
use stint_e2e::harness::{wait_for, TestStore, WorkerProc};
use stint_e2e::jobs::{Count, KillSelf, Noop};
use stint_e2e::per_store;

const BIN: &str = env!("CARGO_BIN_EXE_stint-test-worker");

per_store! {
    sigterm_hands_the_job_back_and_the_next_process_resumes_from_its_checkpoint,
    sigterm_aborts_a_job_that_ignores_it_after_the_timeout_and_keeps_its_last_checkpoint,
    sigkill_leased_jobs_are_recovered_by_a_live_process_none_lost,
    sigkill_leased_jobs_are_recovered_by_lease_expiry_alone,
    a_worker_started_after_a_kill_recovers_at_once,
    a_job_that_kills_its_process_every_time_ends_dead_after_the_limit,
}

async fn sigterm_hands_the_job_back_and_the_next_process_resumes_from_its_checkpoint(
    ts: TestStore,
) {
    let client = Client::new(ts.store.clone());
    let jid = client
        .push(&Count {
            n: 600,
            sleep_ms: 5,
            db: ts.db.clone(),
        })
        .await
        .unwrap();

    let mut first = WorkerProc::start(BIN, &ts, 2, &[]);
    wait_for(
        Duration::from_secs(20),
        "the job to checkpoint past item 100",
        || async {
            let d = ts.job(&jid).await;
            (d.job.checkpoint.done >= 100).then_some(())
        },
    )
    .await;
    first.signal(libc::SIGTERM);
    let status = first
        .wait(Duration::from_secs(10))
        .expect("worker exits after SIGTERM");
    assert!(
        status.success(),
        "exit status {status:?}; log:\n{}",
        first.log_text()
    );

    let after = ts.job(&jid).await;
    assert_eq!(
        after.job.state,
        JobState::Enqueued,
        "handed back to its queue"
    );
    assert_eq!(after.job.attempts, 0, "an interruption uses up no attempt");
    let saved: u64 = serde_json::from_value(after.job.checkpoint.cursor.clone().unwrap()).unwrap();
    assert!((100..600).contains(&saved), "saved cursor {saved}");
    assert_eq!(after.job.checkpoint.done, saved, "done matches the cursor");
    assert_eq!(after.history[0].outcome.as_deref(), Some("interrupted"));
    assert_eq!(after.history[0].reason.as_deref(), Some("shutdown"));

    let mut second = WorkerProc::start(BIN, &ts, 2, &[]);
    let done = wait_for(
        Duration::from_secs(30),
        "the job to succeed in the second process",
        || async {
            let d = ts.job(&jid).await;
            (d.job.state == JobState::Succeeded).then_some(d)
        },
    )
    .await;
    assert_eq!(done.job.checkpoint.done, 600);
    let starts = ts.starts(&jid);
    assert_eq!(starts.len(), 2, "two stints: {starts:?}");
    assert_eq!(starts[0].1, None, "the first stint starts from nothing");
    assert_eq!(
        starts[1].1,
        Some(saved),
        "the second stint starts from the saved cursor"
    );
    assert_eq!(starts[1].2, second.pid(), "in the second process");
    second.signal(libc::SIGTERM);
    assert!(second.wait(Duration::from_secs(10)).unwrap().success());
}

async fn sigterm_aborts_a_job_that_ignores_it_after_the_timeout_and_keeps_its_last_checkpoint(
    ts: TestStore,
) {
    let client = Client::new(ts.store.clone());
    // One item takes 3 s: the job cannot reach a checkpoint within the 500 ms
    // shutdown timeout.
    let jid = client
        .push(&Count {
            n: 5,
            sleep_ms: 3_000,
            db: ts.db.clone(),
        })
        .await
        .unwrap();
    let mut w = WorkerProc::start(BIN, &ts, 1, &[("STINT_SHUTDOWN_TIMEOUT_MS", "500")]);
    wait_for(
        Duration::from_secs(20),
        "the job to save a checkpoint",
        || async { (ts.job(&jid).await.job.checkpoint.done >= 1).then_some(()) },
    )
    .await;
    w.signal(libc::SIGTERM);
    let status = w
        .wait(Duration::from_secs(5))
        .expect("exits soon after the timeout");
    assert!(status.success(), "log:\n{}", w.log_text());
    let d = ts.job(&jid).await;
    assert_eq!(d.job.state, JobState::Enqueued);
    assert!(d.job.checkpoint.done >= 1, "last saved checkpoint kept");
    assert_eq!(d.job.attempts, 0);
    assert!(
        d.history[0]
            .reason
            .as_deref()
            .unwrap_or("")
            .contains("aborted"),
        "{:?}",
        d.history
    );
}

async fn sigkill_leased_jobs_are_recovered_by_a_live_process_none_lost(ts: TestStore) {
    sigkill_recovery(ts, &[]).await;
}

/// As across machines: no process can see the dead one's pid, only its
/// lease expiring (default TTL) tells.
async fn sigkill_leased_jobs_are_recovered_by_lease_expiry_alone(ts: TestStore) {
    sigkill_recovery(ts, &[("STINT_NO_REAP", "1")]).await;
}

async fn sigkill_recovery(ts: TestStore, env: &[(&str, &str)]) {
    let client = Client::new(ts.store.clone());
    let jobs: Vec<Count> = (0..40)
        .map(|_| Count {
            n: 200,
            sleep_ms: 10,
            db: ts.db.clone(),
        })
        .collect();
    let jids: Vec<Jid> = client.push_many(&jobs, Push::new()).await.unwrap();

    // The first process takes all 40 jobs.
    let mut doomed = WorkerProc::start(BIN, &ts, 40, env);
    wait_for(
        Duration::from_secs(20),
        "all 40 jobs running with progress",
        || async {
            let running = ts
                .store
                .jobs(&stint::JobFilter {
                    state: Some(JobState::Running),
                    limit: 1000,
                    ..Default::default()
                })
                .await
                .unwrap();
            (running.len() == 40 && running.iter().all(|j| j.checkpoint.done > 0)).then_some(())
        },
    )
    .await;
    // A live process with free slots, started after the queue emptied.
    let survivor = WorkerProc::start(BIN, &ts, 40, env);
    tokio::time::sleep(Duration::from_millis(300)).await;

    doomed.signal(libc::SIGKILL);
    doomed.wait(Duration::from_secs(5)).expect("killed");
    let killed_at = Instant::now();

    // Recovered within the default bound of 15 s, without any restart.
    wait_for(
        Duration::from_secs(15),
        "every job recovered from the killed process",
        || async {
            let mut all = true;
            for jid in &jids {
                let d = ts.job(jid).await;
                all &= d.job.recoveries == 1
                    || d.job.state == JobState::Succeeded && d.history.len() > 1;
            }
            all.then_some(())
        },
    )
    .await;
    println!(
        "all 40 jobs recovered {:?} after SIGKILL",
        killed_at.elapsed()
    );

    wait_for(Duration::from_secs(60), "every job to succeed", || async {
        let mut all = true;
        for jid in &jids {
            all &= ts.job(jid).await.job.state == JobState::Succeeded;
        }
        all.then_some(())
    })
    .await;
    for jid in &jids {
        let d = ts.job(jid).await;
        assert_eq!(d.job.checkpoint.done, 200, "job {jid} completed every item");
        assert_eq!(
            d.history.len(),
            2,
            "one stint killed, one finished: {:?}",
            d.history
        );
        assert_eq!(d.history[0].outcome.as_deref(), Some("recovered"));
        let starts = ts.starts(jid);
        assert!(
            starts[1].1.unwrap_or(0) > 0,
            "job {jid} resumed from its checkpoint, not from zero: {starts:?}"
        );
        assert_eq!(starts[1].2, survivor.pid());
    }
}

async fn a_worker_started_after_a_kill_recovers_at_once(ts: TestStore) {
    let client = Client::new(ts.store.clone());
    let jids = client
        .push_many(&vec![Noop {}; 2000], Push::new())
        .await
        .unwrap();
    let count_jid = client
        .push(&Count {
            n: 100_000,
            sleep_ms: 1,
            db: ts.db.clone(),
        })
        .await
        .unwrap();
    let mut w = WorkerProc::start(BIN, &ts, 10, &[]);
    wait_for(Duration::from_secs(20), "the long job to run", || async {
        (ts.job(&count_jid).await.job.checkpoint.done > 10).then_some(())
    })
    .await;
    w.signal(libc::SIGKILL);
    w.wait(Duration::from_secs(5)).unwrap();
    let _next = WorkerProc::start(BIN, &ts, 10, &[]);
    wait_for(
        Duration::from_secs(30),
        "every no-op job to succeed",
        || async {
            let stats = ts.store.stats().await.unwrap();
            (stats.count(JobState::Succeeded) >= jids.len() as u64).then_some(())
        },
    )
    .await;
    let d = wait_for(
        Duration::from_secs(15),
        "the long job to be recovered",
        || async {
            let d = ts.job(&count_jid).await;
            (d.job.recoveries == 1 && d.job.state == JobState::Running).then_some(d)
        },
    )
    .await;
    assert_eq!(d.history[0].outcome.as_deref(), Some("recovered"));
}

/// A poison pill: a job that kills its process (SIGKILL) every time it
/// starts. Each next process recovers it at start (the dead pid is gone),
/// without progress; after the limit (3 recoveries) the fourth recovery
/// sends it to `dead`, and the processes after that live on, running the
/// other jobs.
async fn a_job_that_kills_its_process_every_time_ends_dead_after_the_limit(ts: TestStore) {
    let client = Client::new(ts.store.clone());
    let pill = client.push(&KillSelf { db: ts.db.clone() }).await.unwrap();
    let mut deaths = 0;
    let last = loop {
        assert!(deaths <= 4, "the job killed {deaths} processes");
        let mut w = WorkerProc::start(BIN, &ts, 2, &[]);
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = w.wait(Duration::ZERO) {
                break Some(status);
            }
            if ts.job(&pill).await.job.state == JobState::Dead {
                break None;
            }
            assert!(
                Instant::now() < deadline,
                "the worker neither died nor buried the pill; log:\n{}",
                w.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        match status {
            Some(status) => {
                use std::os::unix::process::ExitStatusExt;
                assert_eq!(
                    status.signal(),
                    Some(libc::SIGKILL),
                    "{status:?}; log:\n{}",
                    w.log_text()
                );
                deaths += 1;
            }
            None => break w,
        }
    };
    assert_eq!(
        deaths, 4,
        "it ran once, then once per recovery up to the limit"
    );
    let d = ts.job(&pill).await;
    let reason = d.job.reason.clone().unwrap_or_default();
    assert!(
        reason.contains("poison pill: recovered 4 times"),
        "{reason}"
    );
    assert_eq!(d.job.recoveries, 4);
    assert_eq!(d.job.attempts, 0, "a kill uses up no attempt");
    let starts = ts.starts(&pill);
    assert_eq!(starts.len(), 4, "{starts:?}");

    // The process that buried it goes on and runs other jobs.
    let other = client
        .push(&Count {
            n: 3,
            sleep_ms: 0,
            db: ts.db.clone(),
        })
        .await
        .unwrap();
    let mut last = last;
    wait_for(
        Duration::from_secs(10),
        "another job to succeed",
        || async { (ts.job(&other).await.job.state == JobState::Succeeded).then_some(()) },
    )
    .await;
    assert_eq!(ts.job(&pill).await.job.state, JobState::Dead, "still dead");
    last.signal(libc::SIGTERM);
    assert!(
        last.wait(Duration::from_secs(10)).unwrap().success(),
        "log:\n{}",
        last.log_text()
    );
}
