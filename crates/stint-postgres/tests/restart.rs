//! PostgreSQL restarts under a running worker: the server is stopped
//! mid-run and started again two seconds later; the worker reconnects with
//! backoff, says so once in its log, and every job completes — the
//! transactional ones with each row exactly once.

mod common;

use std::time::Duration;

use serde_json::json;
use stint_core::model::{Backoff, JobOptions, NewJob};
use stint_core::{JobState, Store};
use stint_postgres::PgStore;
use stint_testkit::postgres::PgServer;

use common::{sql, start_worker, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_job_completes_when_postgres_restarts_mid_run() {
    let server = PgServer::start().expect("a private PostgreSQL server");
    let url = server.url();
    let store = PgStore::open(&url).unwrap();
    stint_postgres::migrate(&store).await.unwrap();

    // Failed stints (their own queries failed while the server was down)
    // come back quickly.
    let options = JobOptions {
        backoff: Backoff {
            base_ms: 200,
            max_ms: 1_000,
            jitter: 0.25,
        },
        ..JobOptions::default()
    };
    let mut jobs = Vec::new();
    for i in 0..4 {
        let table = format!("rows_{i}");
        sql(&store, &format!("CREATE TABLE {table} (n bigint NOT NULL)")).await;
        jobs.push((
            Some(table.clone()),
            NewJob {
                kind: "InsertNumbers".into(),
                args: json!({
                    "db": url, "table": table, "n": 6_000, "batch": 100, "sleep_ms": 50,
                    "transactional": true,
                }),
                options: options.clone(),
                ..stint_core::testing::job_in("default", 0)
            },
        ));
    }
    for _ in 0..4 {
        jobs.push((
            None,
            NewJob {
                kind: "Count".into(),
                args: json!({ "n": 60, "sleep_ms": 50 }),
                options: options.clone(),
                ..stint_core::testing::job_in("default", 0)
            },
        ));
    }
    store
        .push(jobs.iter().map(|(_, j)| j.clone()).collect())
        .await
        .unwrap();

    let mut worker = start_worker(&url, 8, &[]);
    wait_for(
        Duration::from_secs(20),
        "every job to make progress",
        || async {
            let running = store.jobs(&Default::default()).await.unwrap();
            running
                .iter()
                .all(|j| j.state == JobState::Running && j.checkpoint.done > 0)
                .then_some(())
        },
    )
    .await;

    server.stop().expect("stop the server");
    tokio::time::sleep(Duration::from_secs(2)).await;
    server.start_again().expect("start the server again");

    wait_for(Duration::from_secs(60), "every job to succeed", || async {
        let all = store.jobs(&Default::default()).await.ok()?;
        for j in &all {
            assert!(
                !matches!(j.state, JobState::Dead | JobState::Cancelled),
                "job {} ended {}: {:?}",
                j.jid,
                j.state,
                j.reason
            );
        }
        all.iter()
            .all(|j| j.state == JobState::Succeeded)
            .then_some(())
    })
    .await;
    for (table, job) in &jobs {
        let Some(table) = table else { continue };
        let rows = sql(
            &store,
            &format!("SELECT count(*), count(DISTINCT n) FROM {table}"),
        )
        .await;
        let (n, distinct): (i64, i64) = (rows[0].get(0), rows[0].get(1));
        assert_eq!(
            (n, distinct),
            (6_000, 6_000),
            "job {}: each row once",
            job.jid
        );
    }

    worker.signal(libc::SIGTERM);
    let status = worker.wait(Duration::from_secs(15));
    let log = worker.log_text();
    assert!(
        status.is_some_and(|s| s.success()),
        "worker exit: {status:?}\n{log}"
    );
    for line in log
        .lines()
        .filter(|l| l.contains("WARN") || l.contains("again"))
    {
        println!("worker: {line}");
    }
    let lost = log.matches("PostgreSQL: connection lost").count();
    let back = log.matches("PostgreSQL: reconnected").count();
    assert_eq!((lost, back), (1, 1), "said once each:\n{log}");
}
