//! Payloads other clients push (as an attacker would): a jid another job
//! already has, a jid nested in the arguments, a jid that is no jid, no
//! queue; and looking jobs up in big queues. Each is kept visible as a job
//! of its own and never touches another job.

use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::AsyncCommands;
use serde_json::{json, Value};
use stint_core::model::{Jid, JobState};
use stint_core::store::{JobFilter, Outcome, Store};
use stint_core::testing::*;
use stint_redis::RedisStore;
use stint_testkit::redis::RedisServer;

mod common;

async fn store(server: &RedisServer) -> (Arc<dyn Store>, redis::aio::MultiplexedConnection) {
    let store: Arc<dyn Store> =
        Arc::new(RedisStore::connect(&server.url()).await.expect("connect"));
    let conn = redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    (store, conn)
}

/// The dead jobs, by jid, with their first argument (the kept text).
async fn dead(store: &Arc<dyn Store>) -> Vec<(Jid, String, String)> {
    let filter = JobFilter {
        state: Some(JobState::Dead),
        ..Default::default()
    };
    let mut out = Vec::new();
    for j in store.jobs(&filter).await.expect("jobs") {
        let d = store
            .job(&j.jid)
            .await
            .expect("job")
            .expect("a dead job is visible");
        let text = d.job.args[0].as_str().unwrap_or_default().to_owned();
        out.push((j.jid, text, d.job.reason.unwrap_or_default()));
    }
    out
}

async fn lpush(conn: &mut redis::aio::MultiplexedConnection, queue: &str, payload: &str) {
    let _: () = conn.lpush(format!("queue:{queue}"), payload).await.unwrap();
}

#[tokio::test]
async fn a_payload_reusing_a_known_jid_is_kept_as_a_dead_job_of_its_own() {
    let server = RedisServer::start().expect("redis-server");
    let (store, mut conn) = store(&server).await;
    let p = register(&store, Duration::from_secs(60)).await;
    let running = push_one(&store, job_in("default", 1)).await;
    let leased = fetch_one(&store, &p, "default").await;
    let paused = push_one(&store, job_in("default", 2)).await;
    store.pause(&paused).await.expect("pause");

    // Another client pushes payloads under those jids (Ruby's
    // Sidekiq::Client.push with "jid"), and twice the same new jid.
    let foreign = |jid: &str| {
        json!({"class": "X", "queue": "default", "args": ["dup"], "jid": jid}).to_string()
    };
    lpush(&mut conn, "default", &foreign(running.as_str())).await;
    lpush(&mut conn, "default", &foreign(paused.as_str())).await;
    let twice = "00000000000000000000000a";
    lpush(&mut conn, "default", &foreign(twice)).await;
    lpush(&mut conn, "default", &foreign(twice).replace("dup", "dup2")).await;

    let got = fetch(&store, &p, "default", 10).await;
    assert_eq!(
        jids(&got),
        vec![Jid::parse(twice).unwrap()],
        "only the first new jid is leased"
    );

    // The running job is untouched: its lease holds, it ends as it would.
    let d = detail(&store, &running).await;
    assert_eq!(
        (d.job.state, d.job.kind.as_str()),
        (JobState::Running, "Test")
    );
    complete_ok(
        &store,
        &leased.lease,
        Some(checkpoint(1, 1)),
        Outcome::Succeeded { result: None },
    )
    .await;
    assert_state(&store, &running, JobState::Succeeded).await;
    assert_state(&store, &paused, JobState::Paused).await;

    let dead = dead(&store).await;
    assert_eq!(dead.len(), 3, "{dead:?}");
    for (used, state) in [
        (running.as_str(), "running"),
        (paused.as_str(), "paused"),
        (twice, "running"),
    ] {
        let (jid, text, reason) = dead
            .iter()
            .find(|(_, text, _)| text.contains(used))
            .unwrap_or_else(|| panic!("a dead job keeps the payload with jid {used}: {dead:?}"));
        assert_ne!(jid.as_str(), used);
        let kind = if used == twice { "X" } else { "Test" };
        let want = format!(
            "jid {used} is already used by job {used} (kind {kind}, state {state}); this payload was kept under jid {jid}"
        );
        assert!(reason.starts_with(&want), "{reason}\nwant {want}");
        let kept: Value = serde_json::from_str(text).unwrap();
        assert_eq!(kept["jid"], used);
    }
}

#[tokio::test]
async fn a_payload_whose_only_jid_is_nested_is_kept_as_a_dead_job_of_its_own() {
    let server = RedisServer::start().expect("redis-server");
    let (store, mut conn) = store(&server).await;
    let p = register(&store, Duration::from_secs(60)).await;
    let existing = push_one(&store, job_in("default", 1)).await;
    let leased = fetch_one(&store, &p, "default").await;
    let nested_known = json!({"args": [{"class": "N", "jid": existing.as_str()}]}).to_string();
    let unknown = "0000000000000000000000bb";
    let nested_unknown = json!({"args": [{"class": "N", "jid": unknown}]}).to_string();
    lpush(&mut conn, "default", &nested_known).await;
    lpush(&mut conn, "default", &nested_unknown).await;

    assert!(fetch(&store, &p, "default", 10).await.is_empty());
    assert_eq!(detail(&store, &existing).await.job.state, JobState::Running);
    complete_ok(
        &store,
        &leased.lease,
        Some(checkpoint(1, 1)),
        Outcome::Succeeded { result: None },
    )
    .await;
    assert_state(&store, &existing, JobState::Succeeded).await;
    assert!(store
        .job(&Jid::parse(unknown).unwrap())
        .await
        .unwrap()
        .is_none());

    let dead = dead(&store).await;
    assert_eq!(dead.len(), 2, "{dead:?}");
    for text in [&nested_known, &nested_unknown] {
        let (jid, _, reason) = dead
            .iter()
            .find(|(_, t, _)| t == text)
            .unwrap_or_else(|| panic!("{text} kept: {dead:?}"));
        assert_ne!(jid, &existing);
        assert_ne!(jid.as_str(), unknown);
        assert!(reason.contains("jid"), "{reason}");
    }
}

#[tokio::test]
async fn a_jid_that_is_no_jid_is_kept_visible_and_cannot_be_looked_up() {
    let server = RedisServer::start().expect("redis-server");
    let (store, mut conn) = store(&server).await;
    let p = register(&store, Duration::from_secs(60)).await;
    let payload = json!({"class": "X", "queue": "default", "args": [], "jid": "a\"b"}).to_string();
    lpush(&mut conn, "default", &payload).await;
    assert!(fetch(&store, &p, "default", 10).await.is_empty());
    let dead = dead(&store).await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0].1, payload);
    assert!(dead[0].2.contains("no usable \"jid\""), "{}", dead[0].2);
    let e = Jid::parse("a\"b").unwrap_err();
    assert!(e.contains("is not a jid"), "{e}");
    // Another system's jid of jid characters is leased and found as it is.
    let uuid = "6f9619ff-8b86-d011-b42d-00c04fc964ff";
    lpush(
        &mut conn,
        "default",
        &json!({"class": "X", "queue": "default", "args": [], "jid": uuid}).to_string(),
    )
    .await;
    let got = fetch(&store, &p, "default", 10).await;
    assert_eq!(jids(&got), vec![Jid::parse(uuid).unwrap()]);
    assert_eq!(
        detail(&store, &got[0].job.jid).await.job.state,
        JobState::Running
    );
}

#[tokio::test]
async fn a_payload_without_queue_stays_in_the_queue_it_came_from() {
    let server = RedisServer::start().expect("redis-server");
    let (store, mut conn) = store(&server).await;
    let p = register_for(&store, &["imports"], Duration::from_secs(60)).await;
    let jid = "0000000000000000000000cc";
    lpush(
        &mut conn,
        "imports",
        &json!({"class": "X", "args": [1], "jid": jid}).to_string(),
    )
    .await;
    let leased = fetch_one(&store, &p, "imports").await;
    assert_eq!(leased.job.queue, "imports");
    complete_ok(
        &store,
        &leased.lease,
        None,
        Outcome::Retry {
            error: error_info("boom", 1),
            retry_at_ms: stint_core::model::now_ms(),
        },
    )
    .await;
    let d = detail(&store, &leased.job.jid).await;
    assert_eq!(
        (d.job.state, d.job.queue.as_str()),
        (JobState::Retrying, "imports")
    );
    sleep_ms(10).await;
    assert_eq!(store.promote_due().await.expect("promote"), 1);
    let again = fetch_one(&store, &p, "imports").await;
    assert_eq!(again.job.jid.as_str(), jid);
    let in_default: i64 = conn.llen("queue:default").await.unwrap();
    assert_eq!(in_default, 0);
}

#[tokio::test]
async fn looking_a_job_up_reads_a_bounded_part_of_a_big_queue() {
    let server = RedisServer::start().expect("redis-server");
    let (store, mut conn) = store(&server).await;
    // 300,000 payloads of another client, one of them in the middle.
    let n = 300_000;
    let deep = "ffffffffffffffffffffffdd";
    for chunk in 0..(n / 10_000) {
        let list: Vec<String> = (0..10_000)
            .map(|i| {
                let k = chunk * 10_000 + i;
                let jid = if k == n / 2 {
                    deep.to_owned()
                } else {
                    format!("{k:024x}")
                };
                json!({"class": "X", "queue": "big", "args": [k], "jid": jid}).to_string()
            })
            .collect();
        let _: () = conn.lpush("queue:big", list).await.unwrap();
    }
    let _: () = conn.sadd("queues", "big").await.unwrap();
    let _: () = redis::cmd("SLOWLOG")
        .arg("RESET")
        .query_async(&mut conn)
        .await
        .unwrap();
    let missing = Jid::new();
    let t = Instant::now();
    assert!(store.job(&missing).await.unwrap().is_none());
    let missing_ms = t.elapsed().as_secs_f64() * 1000.0;
    // Not read: the job deep in the queue is not yet seen by stint.
    assert!(store
        .job(&Jid::parse(deep).unwrap())
        .await
        .unwrap()
        .is_none());
    // Read: the jobs at either end of the queue.
    for k in [0, n - 1] {
        let jid = Jid::parse(&format!("{k:024x}")).unwrap();
        let d = store
            .job(&jid)
            .await
            .unwrap()
            .expect("a job at an end of the queue is found");
        assert_eq!(d.job.state, JobState::Enqueued);
    }
    let slow: Vec<redis::Value> = redis::cmd("SLOWLOG")
        .arg("GET")
        .arg(10)
        .query_async(&mut conn)
        .await
        .unwrap_or_default();
    eprintln!("looking up a missing jid with {n} jobs queued: {missing_ms:.1} ms (slowlog entries over 10 ms: {})", slow.len());
}

/// The attack as a Ruby app makes it: `Sidekiq::Client.push` with the jid
/// of a job a stint worker process is running. The running job finishes as
/// if nothing happened; the Ruby payload is a dead job of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ruby_push_reusing_a_running_jid_leaves_the_running_job_alone() {
    let server = RedisServer::start().expect("redis-server");
    let url = server.url();
    let (store, _conn) = store(&server).await;
    let mut job = job_in("default", 1);
    job.kind = "Count".into();
    job.args = json!({"n": 30, "sleep_ms": 50, "db": ""});
    let jid = job.jid.clone();
    store.push(vec![job]).await.expect("push");
    let dir = tempfile::tempdir().unwrap();
    let mut worker = common::start_worker(dir.path(), &url, 2, &[]);
    common::wait_for(Duration::from_secs(20), "the job to run", || async {
        let d = store.job(&jid).await.ok()??;
        (d.job.state == JobState::Running).then_some(())
    })
    .await;
    let pushed = common::ruby(&url, "push_jid.rb", &["X", "default", jid.as_str()]);
    assert_eq!(pushed.trim(), jid.as_str());
    let d = common::wait_for(Duration::from_secs(30), "the job to succeed", || async {
        let d = store.job(&jid).await.ok()??;
        (d.job.state == JobState::Succeeded).then_some(d)
    })
    .await;
    assert_eq!((d.job.kind.as_str(), d.job.attempts), ("Count", 0));
    assert_eq!(d.job.checkpoint.done, 30);
    let dead = dead(&store).await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    let (kept, text, reason) = &dead[0];
    assert_ne!(kept, &jid);
    assert!(text.contains("\"dup\""), "{text}");
    assert!(
        reason.starts_with(&format!(
            "jid {jid} is already used by job {jid} (kind Count, state running); this payload was kept under jid {kept}"
        )),
        "{reason}"
    );
    worker.signal(libc::SIGTERM);
    assert!(
        worker
            .wait(Duration::from_secs(10))
            .is_some_and(|s| s.success()),
        "log:\n{}",
        worker.log_text()
    );
}

/// A payload of another client with the jid of a job that waits in the
/// same queue, and that is fetched first (pushed to the head: Sidekiq's
/// own shutdown requeues with RPUSH), is kept as a dead job of its own:
/// the job itself is leased by that same fetch, with its checkpoint, and
/// runs on. (The fetch used to judge the job by the payload taken before
/// it, "a payload earlier in this batch", though that payload was not
/// leased: the job was moved to `dead` as a JidTaken payload and lost.)
#[tokio::test]
async fn a_payload_reusing_a_jid_fetched_before_its_job_leaves_the_job_to_run() {
    let server = RedisServer::start().expect("redis-server");
    let (store, mut conn) = store(&server).await;
    let p = register(&store, Duration::from_secs(60)).await;
    let jid = push_one(&store, job_in("default", 1)).await;
    let first = fetch_one(&store, &p, "default").await;
    // Handed back with its checkpoint: enqueued at the head of its queue.
    complete_ok(
        &store,
        &first.lease,
        Some(checkpoint(3, 3)),
        Outcome::Requeue {
            reason: "handed back".into(),
        },
    )
    .await;
    let foreign =
        json!({"class": "X", "queue": "default", "args": ["dup"], "jid": jid.as_str()}).to_string();
    let _: () = conn.rpush("queue:default", &foreign).await.unwrap();

    let got = fetch(&store, &p, "default", 10).await;
    assert_eq!(jids(&got), vec![jid.clone()], "the job itself is leased");
    assert_eq!(
        (
            got[0].lease.stint,
            got[0].job.kind.as_str(),
            got[0].job.checkpoint.done
        ),
        (2, "Test", 3)
    );
    let dead = dead(&store).await;
    assert_eq!(dead.len(), 1, "only the foreign payload is dead: {dead:?}");
    let (kept, text, reason) = &dead[0];
    assert_eq!(text, &foreign);
    let want = format!(
        "jid {jid} is already used by job {jid} (kind Test, state enqueued); this payload was kept under jid {kept}"
    );
    assert!(reason.starts_with(&want), "{reason}\nwant {want}");
    complete_ok(
        &store,
        &got[0].lease,
        Some(checkpoint(4, 4)),
        Outcome::Succeeded { result: None },
    )
    .await;
    assert_eq!(record(&store, &jid).await.state, JobState::Succeeded);
}

/// As the chaos test found it: a process dies holding a job's lease and,
/// in its landing list (its blocking pop took it while it waited), a
/// payload of another client with that job's jid. Recovery puts the job at
/// the head of its queue and what landed ahead of it; the next fetch takes
/// both, leases the job and keeps the payload as a dead job of its own.
#[tokio::test]
async fn a_reused_jid_landed_for_a_dead_process_does_not_take_its_job_recovered() {
    let server = RedisServer::start().expect("redis-server");
    let (store, mut conn) = store(&server).await;
    let dying = register(&store, Duration::from_secs(60)).await;
    let jid = push_one(&store, job_in("default", 1)).await;
    let leased = fetch_one(&store, &dying, "default").await;
    assert_eq!(leased.job.jid, jid);
    let foreign =
        json!({"class": "X", "queue": "default", "args": ["dup"], "jid": jid.as_str()}).to_string();
    lpush(&mut conn, "default", &foreign).await;
    // The dying process's blocking pop (landing.rs) takes it.
    let landing = format!("stint:landing:{dying}:default");
    let _: () = conn
        .sadd(format!("stint:landings:{dying}"), "default")
        .await
        .unwrap();
    let moved: Option<String> = redis::cmd("BLMOVE")
        .arg("queue:default")
        .arg(&landing)
        .arg("RIGHT")
        .arg("LEFT")
        .arg(1)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(moved.as_deref(), Some(foreign.as_str()));

    store.expire_process(&dying).await.expect("expire");
    let recovered = store.recover_orphans(5).await.expect("recover");
    assert_eq!(recovered.len(), 1);
    let head: Vec<String> = conn.lrange("queue:default", 0, -1).await.unwrap();
    assert_eq!(
        head.last(),
        Some(&foreign),
        "the landed payload is at the head"
    );

    let p = register(&store, Duration::from_secs(60)).await;
    let got = fetch(&store, &p, "default", 10).await;
    assert_eq!(jids(&got), vec![jid.clone()], "the recovered job is leased");
    assert_eq!(got[0].lease.stint, 2);
    let dead = dead(&store).await;
    assert_eq!(dead.len(), 1, "only the foreign payload is dead: {dead:?}");
    assert_eq!(dead[0].1, foreign);
}
