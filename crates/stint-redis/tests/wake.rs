//! An idle worker's fetch waits for announced pushes: a job pushed while a
//! fetch waits is taken at once, not at the next poll.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use stint_core::model::{JobOptions, NewJob, ProcessInfo};
use stint_core::{Jid, Store};
use stint_redis::RedisStore;
use stint_testkit::redis::RedisServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_wakes_a_waiting_fetch() {
    let server = RedisServer::start().expect("redis-server");
    let worker: Arc<dyn Store> =
        Arc::new(RedisStore::connect(&server.url()).await.expect("connect"));
    let client: Arc<dyn Store> =
        Arc::new(RedisStore::connect(&server.url()).await.expect("connect"));
    assert!(worker.fetch_waits_for_jobs());
    let p = ProcessInfo::for_this_process(vec!["default".into()], 1);
    worker
        .register(&p, Duration::from_secs(60))
        .await
        .expect("register");
    let queues = vec!["default".to_string()];
    // Warm up: the first empty fetch starts the subscriber.
    assert!(worker
        .fetch(&p.id, &queues, 1)
        .await
        .expect("fetch")
        .is_empty());

    let mut waits = Vec::new();
    for _ in 0..5 {
        let job = NewJob {
            jid: Jid::new(),
            kind: "Test".into(),
            args: json!([]),
            options: JobOptions::default(),
            run_at: None,
        };
        let jid = job.jid.clone();
        let pusher = {
            let client = client.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(30)).await;
                client.push(vec![job]).await.expect("push");
                Instant::now()
            })
        };
        let got = worker.fetch(&p.id, &queues, 1).await.expect("fetch");
        let pushed_at = pusher.await.expect("pusher");
        assert_eq!(got.len(), 1, "the job pushed during the fetch's wait");
        assert_eq!(got[0].job.jid, jid);
        waits.push(pushed_at.elapsed());
    }
    waits.sort();
    println!("push to fetch: {waits:?}");
    // The fetch waits at most 100 ms for a push: a median far below that
    // means the push woke it.
    assert!(
        waits[2] < Duration::from_millis(40),
        "woken by the push: {waits:?}"
    );
}
