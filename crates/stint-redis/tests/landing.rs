//! Wake on any push: an idle worker's blocking pops (`landing.rs`) take a
//! job LPUSHed by any client, as a Ruby app's `Sidekiq::Client.push` does
//! without announcing it, into the worker's landing list; the waiting fetch
//! leases it. What landed for a process that died goes back to the head of
//! its queue, and what landed in a queue paused meanwhile is handed back.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;
use serde_json::json;
use stint_core::model::ProcessInfo;
use stint_core::{Jid, Store};
use stint_redis::RedisStore;
use stint_testkit::redis::RedisServer;

async fn conn(url: &str) -> ConnectionManager {
    ConnectionManager::new(redis::Client::open(url).expect("url"))
        .await
        .expect("connect")
}

/// A job as Ruby's Sidekiq client writes it.
fn ruby_job(jid: &Jid, queue: &str) -> String {
    json!({"class": "HardWorker", "args": [1], "retry": true, "queue": queue,
        "jid": jid.as_str(), "created_at": 1_700_000_000.5, "enqueued_at": 1_700_000_000.5})
    .to_string()
}

async fn lrange(c: &mut ConnectionManager, key: &str) -> Vec<String> {
    redis::cmd("LRANGE")
        .arg(key)
        .arg(0)
        .arg(-1)
        .query_async(c)
        .await
        .expect("lrange")
}

/// A fetch that found nothing is woken by a plain LPUSH (no announcement
/// on `stint:pushed`) on any of its queues and returns the job in that
/// same call, where it used to wait out its 100 ms and return nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_lpushed_by_any_client_wakes_an_idle_fetch() {
    let server = RedisServer::start().expect("redis-server");
    let url = server.url();
    let worker: Arc<dyn Store> = Arc::new(RedisStore::connect(&url).await.expect("connect"));
    let p = ProcessInfo::for_this_process(vec!["critical".into(), "default".into()], 1);
    worker
        .register(&p, Duration::from_secs(60))
        .await
        .expect("register");
    let queues = vec!["critical".to_string(), "default".to_string()];
    // The first empty fetch arms the blocking pops.
    assert!(worker
        .fetch(&p.id, &queues, 1)
        .await
        .expect("fetch")
        .is_empty());
    for queue in ["default", "critical", "default"] {
        let jid = Jid::new();
        let payload = ruby_job(&jid, queue);
        let key = format!("queue:{queue}");
        let pusher = {
            let url = url.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(30)).await;
                let mut c = conn(&url).await;
                let _: () = redis::cmd("LPUSH")
                    .arg(key)
                    .arg(payload)
                    .query_async(&mut c)
                    .await
                    .expect("lpush");
            })
        };
        let got = worker.fetch(&p.id, &queues, 1).await.expect("fetch");
        pusher.await.expect("pusher");
        assert_eq!(got.len(), 1, "the job LPUSHed to {queue} during the wait");
        assert_eq!(got[0].job.jid, jid);
        assert_eq!(got[0].job.queue, queue);
    }
    let mut c = conn(&url).await;
    for queue in ["critical", "default"] {
        assert!(lrange(&mut c, &format!("stint:landing:{}:{queue}", p.id))
            .await
            .is_empty());
    }
}

/// A process that died with a job in its landing list: the recovery sweep
/// puts the job back at the head of its queue (ahead of what was pushed
/// since), once the process's lease expired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_landed_for_a_dead_process_go_back_to_the_head_of_their_queue() {
    let server = RedisServer::start().expect("redis-server");
    let url = server.url();
    let store: Arc<dyn Store> = Arc::new(RedisStore::connect(&url).await.expect("connect"));
    let dead = ProcessInfo::for_this_process(vec!["default".into()], 1);
    store
        .register(&dead, Duration::from_secs(60))
        .await
        .expect("register");
    let (older, newer, later) = (Jid::new(), Jid::new(), Jid::new());
    let mut c = conn(&url).await;
    // What its blocking pops had moved (the oldest at the right), and a job
    // pushed since.
    let landing = format!("stint:landing:{}:default", dead.id);
    let _: () = redis::pipe()
        .lpush(&landing, ruby_job(&older, "default"))
        .lpush(&landing, ruby_job(&newer, "default"))
        .sadd(format!("stint:landings:{}", dead.id), "default")
        .sadd("stint:holders", &dead.id)
        .lpush("queue:default", ruby_job(&later, "default"))
        .query_async(&mut c)
        .await
        .expect("set up");
    assert!(store.recover_orphans(3).await.expect("recover").is_empty());
    assert_eq!(
        lrange(&mut c, &landing).await.len(),
        2,
        "alive: still its own"
    );
    store.expire_process(&dead.id).await.expect("expire");
    store.recover_orphans(3).await.expect("recover");
    assert!(lrange(&mut c, &landing).await.is_empty());
    let alive = ProcessInfo::for_this_process(vec!["default".into()], 1);
    store
        .register(&alive, Duration::from_secs(60))
        .await
        .expect("register");
    let got = store
        .fetch(&alive.id, &["default".to_string()], 3)
        .await
        .expect("fetch");
    let order: Vec<&Jid> = got.iter().map(|l| &l.job.jid).collect();
    assert_eq!(
        order,
        vec![&older, &newer, &later],
        "oldest first, landed ahead"
    );
}

/// A job that landed before its queue was paused is handed back to the
/// head of the queue by the next fetch, not leased; after the resume it is
/// the first one taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_landed_in_a_queue_paused_meanwhile_is_handed_back() {
    let server = RedisServer::start().expect("redis-server");
    let url = server.url();
    let store: Arc<dyn Store> = Arc::new(RedisStore::connect(&url).await.expect("connect"));
    let p = ProcessInfo::for_this_process(vec!["default".into()], 1);
    store
        .register(&p, Duration::from_secs(60))
        .await
        .expect("register");
    let (landed, queued) = (Jid::new(), Jid::new());
    let mut c = conn(&url).await;
    let landing = format!("stint:landing:{}:default", p.id);
    let _: () = redis::pipe()
        .lpush(&landing, ruby_job(&landed, "default"))
        .sadd(format!("stint:landings:{}", p.id), "default")
        .lpush("queue:default", ruby_job(&queued, "default"))
        .query_async(&mut c)
        .await
        .expect("set up");
    store
        .set_queue_paused("default", true)
        .await
        .expect("pause");
    let queues = vec!["default".to_string()];
    assert!(store
        .fetch(&p.id, &queues, 5)
        .await
        .expect("fetch")
        .is_empty());
    assert!(lrange(&mut c, &landing).await.is_empty(), "handed back");
    let in_queue = lrange(&mut c, "queue:default").await;
    assert_eq!(in_queue.len(), 2);
    assert!(
        in_queue[1].contains(landed.as_str()),
        "at the head: {in_queue:?}"
    );
    store
        .set_queue_paused("default", false)
        .await
        .expect("resume");
    let got = store.fetch(&p.id, &queues, 1).await.expect("fetch");
    assert_eq!(got[0].job.jid, landed);
}

/// A job in a landing list (taken by a blocking pop, not leased yet) is
/// found by a lookup, as enqueued in its queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_landed_job_is_found_by_a_lookup() {
    let server = RedisServer::start().expect("redis-server");
    let url = server.url();
    let store: Arc<dyn Store> = Arc::new(RedisStore::connect(&url).await.expect("connect"));
    let p = ProcessInfo::for_this_process(vec!["default".into()], 1);
    store
        .register(&p, Duration::from_secs(60))
        .await
        .expect("register");
    let landed = Jid::new();
    let mut c = conn(&url).await;
    let _: () = redis::pipe()
        .lpush(
            format!("stint:landing:{}:default", p.id),
            ruby_job(&landed, "default"),
        )
        .sadd(format!("stint:landings:{}", p.id), "default")
        .sadd("stint:holders", &p.id)
        .query_async(&mut c)
        .await
        .expect("set up");
    let job = store.job(&landed).await.expect("job").expect("found").job;
    assert_eq!(job.state, stint_core::JobState::Enqueued);
    assert_eq!(job.queue, "default");
}
