//! Redis goes away mid-run (SIGKILL) and comes back on the same data (AOF):
//! the worker keeps running the jobs it holds, says once that Redis is
//! unreachable, reconnects with backoff, and loses nothing.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use common::{conn, start_worker, wait_for};
use serde_json::json;
use stint_core::model::{JobOptions, NewJob};
use stint_core::{Jid, JobState, Store};
use stint_redis::RedisStore;
use stint_testkit::redis::RedisServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_job_completes_when_redis_restarts_mid_run() {
    const JOBS: usize = 3_000;
    let server = RedisServer::start().expect("redis-server");
    let url = server.url();
    let store: Arc<dyn Store> = Arc::new(RedisStore::connect(&url).await.expect("connect"));
    let jobs: Vec<NewJob> = (0..JOBS)
        .map(|_| NewJob {
            jid: Jid::new(),
            kind: "Sleepy".into(),
            args: json!({ "ms": 20 }),
            options: JobOptions::default(),
            run_at: None,
        })
        .collect();
    let jids: Vec<Jid> = jobs.iter().map(|j| j.jid.clone()).collect();
    store.push(jobs).await.expect("push");

    // The store's own lines at info: "unreachable" and "reachable again".
    let mut worker = start_worker(
        server.dir(),
        &url,
        20,
        &[("RUST_LOG", "warn,stint_redis=info")],
    );
    wait_for(
        Duration::from_secs(60),
        "a third of the jobs done",
        || async {
            let s = store.stats().await.ok()?;
            (s.count(JobState::Succeeded) >= JOBS as u64 / 3).then_some(())
        },
    )
    .await;
    server.kill();
    // Long enough for every running job to finish and every loop of the
    // worker (fetch, completions, heartbeat, commands, maintenance) to
    // find Redis gone.
    tokio::time::sleep(Duration::from_secs(3)).await;
    server
        .restart()
        .expect("redis-server comes back on its AOF");

    wait_for(
        Duration::from_secs(120),
        "every job to succeed after the restart",
        || async {
            let s = store.stats().await.ok()?;
            (s.count(JobState::Succeeded) >= JOBS as u64).then_some(())
        },
    )
    .await;
    let mut c = conn(&url).await;
    let runs: HashMap<String, u64> = redis::cmd("HGETALL")
        .arg("test:runs")
        .query_async(&mut c)
        .await
        .expect("runs");
    let twice = jids
        .iter()
        .filter(|j| runs.get(j.as_str()).copied().unwrap_or(0) > 1)
        .count();
    for jid in &jids {
        assert!(
            runs.get(jid.as_str()).copied().unwrap_or(0) >= 1,
            "job {jid} never ran"
        );
    }
    let s = store.stats().await.expect("stats");
    assert_eq!(s.count(JobState::Succeeded), JOBS as u64);
    assert_eq!(
        s.count(JobState::Enqueued) + s.count(JobState::Running) + s.count(JobState::Retrying),
        0,
        "{s:?}"
    );

    worker.signal(libc::SIGTERM);
    assert!(worker
        .wait(Duration::from_secs(30))
        .is_some_and(|st| st.success()));
    let log = worker.log_text();
    let said = log.matches("redis unreachable").count();
    let back = log.matches("redis reachable again").count();
    let warnings = log.lines().filter(|l| l.contains("WARN")).count();
    println!(
        "{JOBS} jobs through a Redis restart: all succeeded, {twice} ran twice; \
         the log says \"redis unreachable\" {said}x, {warnings} warning lines in all:\n{log}"
    );
    assert_eq!(
        said, 1,
        "the outage is said once, not once per job or per call"
    );
    assert_eq!(back, 1, "and its end once");
    assert!(
        warnings < 20,
        "{warnings} warning lines for one outage: the log repeats itself"
    );
}
