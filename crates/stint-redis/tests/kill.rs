//! Real worker processes killed with SIGKILL: no job is lost, and only
//! jobs that were in flight at a kill run twice.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{conn, start_worker, wait_for};
use serde_json::json;
use stint_core::model::{JobOptions, NewJob};
use stint_core::{Jid, JobState, Store};
use stint_redis::RedisStore;
use stint_testkit::redis::RedisServer;

fn sleepy(ms: u64) -> NewJob {
    NewJob {
        jid: Jid::new(),
        kind: "Sleepy".into(),
        args: json!({ "ms": ms }),
        options: JobOptions::default(),
        run_at: None,
    }
}

async fn succeeded(store: &Arc<dyn Store>) -> u64 {
    store
        .stats()
        .await
        .expect("stats")
        .count(JobState::Succeeded)
}

/// 10,000 jobs; the worker is killed with SIGKILL three times mid-run and a
/// fresh one started each time. Every job completes; a job runs twice only
/// when it was in flight at a kill (it was recovered from the dead
/// process).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_jobs_survive_three_sigkills() {
    const JOBS: usize = 10_000;
    const CONCURRENCY: usize = 50;
    let server = RedisServer::start().expect("redis-server");
    let store: Arc<dyn Store> =
        Arc::new(RedisStore::connect(&server.url()).await.expect("connect"));
    let mut jids = Vec::with_capacity(JOBS);
    for chunk in 0..JOBS / 1000 {
        let batch: Vec<NewJob> = (0..1000).map(|_| sleepy(15)).collect();
        jids.extend(batch.iter().map(|j| j.jid.clone()));
        store
            .push(batch)
            .await
            .unwrap_or_else(|e| panic!("push {chunk}: {e}"));
    }

    let mut worker = start_worker(server.dir(), &server.url(), CONCURRENCY, &[]);
    let mut killed = Vec::new();
    for round in 1..=3u64 {
        let at = round * JOBS as u64 / 4;
        wait_for(
            Duration::from_secs(120),
            &format!("{at} jobs done"),
            || async { (succeeded(&store).await >= at).then_some(()) },
        )
        .await;
        let running = store.stats().await.expect("stats").count(JobState::Running);
        worker.kill9();
        killed.push(running);
        println!("kill {round}: SIGKILL with {running} jobs in flight after {at} done");
        worker = start_worker(server.dir(), &server.url(), CONCURRENCY, &[]);
    }
    let start = Instant::now();
    wait_for(Duration::from_secs(180), "every job to succeed", || async {
        (succeeded(&store).await >= JOBS as u64).then_some(())
    })
    .await;
    println!(
        "the last {} jobs took {:?} after the third kill",
        JOBS / 4,
        start.elapsed()
    );

    // Every job succeeded and ran at least once; those that ran twice were
    // recovered from a killed process.
    let mut c = conn(&server.url()).await;
    let runs: HashMap<String, u64> = redis::cmd("HGETALL")
        .arg("test:runs")
        .query_async(&mut c)
        .await
        .expect("runs");
    let mut twice = Vec::new();
    for jid in &jids {
        let n = runs.get(jid.as_str()).copied().unwrap_or(0);
        assert!(n >= 1, "job {jid} never ran");
        if n > 1 {
            twice.push(jid.clone());
        }
    }
    for jid in &twice {
        let d = store.job(jid).await.expect("job").expect("exists");
        assert_eq!(d.job.state, JobState::Succeeded, "{jid}");
        assert!(
            d.history
                .iter()
                .any(|s| s.outcome.as_deref() == Some("recovered")),
            "job {jid} ran twice without having been in flight at a kill: {:?}",
            d.history
        );
    }
    let stats = store.stats().await.expect("stats");
    assert_eq!(stats.count(JobState::Succeeded), JOBS as u64);
    assert_eq!(
        stats.count(JobState::Enqueued) + stats.count(JobState::Running),
        0
    );
    let recovered = store.metrics().await.expect("metrics").totals().recovered;
    println!(
        "{JOBS} jobs, 3 kills with {killed:?} in flight: every job done; {} ran twice ({recovered} recovered)",
        twice.len()
    );
    assert!(
        recovered > 0,
        "the kills hit no job in flight: the test proved nothing"
    );
    assert!(
        twice.len() as u64 <= killed.iter().sum::<u64>(),
        "more jobs ran twice ({}) than were in flight at the kills ({killed:?})",
        twice.len()
    );
    worker.signal(libc::SIGTERM);
    assert!(worker
        .wait(Duration::from_secs(30))
        .is_some_and(|s| s.success()));
}

/// Across machines only lease expiry finds a dead process: its jobs are
/// back and running within 15 s with the default lease (4 s), and not
/// before it expired (a heartbeat, 1 s, before the kill at the earliest).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_expiry_recovers_a_dead_process_jobs_within_15_s() {
    let server = RedisServer::start().expect("redis-server");
    let store: Arc<dyn Store> =
        Arc::new(RedisStore::connect(&server.url()).await.expect("connect"));
    let jobs: Vec<NewJob> = (0..5).map(|_| sleepy(1_500)).collect();
    let jids: Vec<Jid> = jobs.iter().map(|j| j.jid.clone()).collect();
    store.push(jobs).await.expect("push");
    let env = [("STINT_NO_REAP", "1")];
    let mut first = start_worker(server.dir(), &server.url(), 5, &env);
    wait_for(Duration::from_secs(20), "5 jobs running", || async {
        let s = store.stats().await.expect("stats");
        (s.count(JobState::Running) == 5).then_some(())
    })
    .await;
    first.kill9();
    let killed = Instant::now();
    let _second = start_worker(server.dir(), &server.url(), 5, &env);
    wait_for(
        Duration::from_secs(15),
        "the dead process's jobs to be recovered",
        || async {
            let mut all = true;
            for jid in &jids {
                let d = store.job(jid).await.expect("job").expect("exists");
                all &= d.job.recoveries == 1
                    || d.job.state == JobState::Succeeded && d.job.stints == 2;
            }
            all.then_some(())
        },
    )
    .await;
    let took = killed.elapsed();
    println!(
        "recovered {} jobs {took:?} after SIGKILL (default lease 4 s)",
        jids.len()
    );
    assert!(
        took >= Duration::from_secs(3),
        "recovered before the lease could expire: {took:?}"
    );
    wait_for(Duration::from_secs(20), "every job to succeed", || async {
        (succeeded(&store).await == 5).then_some(())
    })
    .await;
}
