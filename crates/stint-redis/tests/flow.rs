//! Flow control in Redis's layout (the conformance suite's `flow`, `rate`
//! and `unique` cases prove the behaviour): a parked job is out of
//! Sidekiq's queue list and comes back at its head (its right end), and
//! `promote_due`'s safety net unparks jobs when a key has room that no
//! job's end announced (a limit raised, a running entry whose lease is
//! gone).

use std::sync::Arc;

use redis::AsyncCommands;
use stint_core::model::{Jid, JobOptions, Limit, NewJob};
use stint_core::store::{Lease, Outcome, Store};
use stint_core::testing::*;
use stint_redis::RedisStore;
use stint_testkit::redis::RedisServer;

const Q: &str = "limited";

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

fn limited(limit: &Limit, n: u64) -> NewJob {
    job_with(
        JobOptions {
            queue: Q.to_owned(),
            limit: Some(limit.clone()),
            ..JobOptions::default()
        },
        n,
    )
}

/// Three jobs of key `k` (concurrency 1) pushed and fetched: the first
/// runs, the two others are parked. Returns the process, the lease and
/// the jids.
async fn one_running_two_parked(store: &Arc<dyn Store>) -> (String, Lease, Vec<Jid>) {
    let k = Limit::key("k").concurrency(1);
    let p = register_for(store, &[Q], LONG_TTL).await;
    let pushed = push_each(store, (1..=3).map(|n| limited(&k, n)).collect()).await;
    let mut got = fetch(store, &p, Q, 10).await;
    assert_eq!(
        jids(&got),
        vec![pushed[0].clone()],
        "concurrency 1: one leased"
    );
    for jid in &pushed[1..] {
        assert!(record(store, jid).await.blocked.is_some(), "{jid} parked");
    }
    (p, got.pop().unwrap().lease, pushed)
}

async fn queue_len(conn: &mut redis::aio::MultiplexedConnection) -> usize {
    conn.llen(format!("queue:{Q}")).await.unwrap()
}

#[tokio::test]
async fn parked_jobs_leave_the_queue_list_and_come_back_at_its_head() {
    let server = RedisServer::start().expect("private redis-server");
    let (store, mut conn) = store(&server).await;
    let (_p, lease, pushed) = one_running_two_parked(&store).await;
    assert_eq!(
        queue_len(&mut conn).await,
        0,
        "parked jobs are not in Sidekiq's queue list (no worker takes them)"
    );
    let parked: Vec<String> = conn.zrange("stint:limit-parked:k", 0, -1).await.unwrap();
    assert_eq!(
        parked,
        vec![pushed[1].to_string(), pushed[2].to_string()],
        "parked for k's concurrency, in queue order"
    );
    let later = push_each(&store, vec![job_in(Q, 9)]).await;
    complete_ok(&store, &lease, None, Outcome::Succeeded { result: None }).await;
    assert_eq!(
        queue_len(&mut conn).await,
        2,
        "the later job and the unparked one"
    );
    let head: String = conn.lindex(format!("queue:{Q}"), -1).await.unwrap();
    assert!(
        head.contains(pushed[1].as_str()),
        "the unparked job is at the head (right end) of queue:{Q}: {head}"
    );
    let tail: String = conn.lindex(format!("queue:{Q}"), 0).await.unwrap();
    assert!(tail.contains(later[0].as_str()), "the later job behind it");
}

#[tokio::test]
async fn promote_due_unparks_when_the_limit_is_raised() {
    let server = RedisServer::start().expect("private redis-server");
    let (store, _conn) = store(&server).await;
    let (p, _lease, pushed) = one_running_two_parked(&store).await;
    // A job of k saying concurrency 3 runs: k's limit is 3 from now on.
    let raised = push_each(&store, vec![limited(&Limit::key("k").concurrency(3), 4)]).await;
    assert_eq!(jids(&fetch(&store, &p, Q, 10).await), raised);
    let k = store.limits().await.expect("limits");
    assert_eq!(
        k.iter()
            .map(|k| (k.concurrency, k.running))
            .collect::<Vec<_>>(),
        vec![(Some(3), 2)],
        "k's concurrency as its jobs last said"
    );
    store.promote_due().await.expect("promote_due");
    assert_eq!(
        record(&store, &pushed[1]).await.blocked,
        None,
        "two running of three allowed: the oldest parked job is unparked"
    );
    assert!(
        record(&store, &pushed[2]).await.blocked.is_some(),
        "one slot: the newer parked job stays parked"
    );
    store.promote_due().await.expect("promote_due");
    assert!(
        record(&store, &pushed[2]).await.blocked.is_some(),
        "the unparked job not fetched yet counts: still no room"
    );
}

#[tokio::test]
async fn promote_due_drops_a_running_entry_whose_lease_is_gone() {
    let server = RedisServer::start().expect("private redis-server");
    let (store, mut conn) = store(&server).await;
    let (p, _lease, pushed) = one_running_two_parked(&store).await;
    // The lease ends without a stint end that frees k's slot (as a lease
    // written off by hand would).
    let _: () = conn
        .hdel(format!("stint:leases:{p}"), pushed[0].as_str())
        .await
        .unwrap();
    store.promote_due().await.expect("promote_due");
    let k = store.limits().await.expect("limits");
    assert_eq!(
        k.iter()
            .map(|k| (k.key.as_str(), k.running, k.waiting_limit))
            .collect::<Vec<_>>(),
        vec![("k", 0, 1)],
        "the lost running entry is dropped and one parked job unparked"
    );
    assert_eq!(record(&store, &pushed[1]).await.blocked, None);
    assert_eq!(
        jids(&fetch(&store, &p, Q, 10).await),
        vec![pushed[1].clone()]
    );
}

#[tokio::test]
async fn a_fetch_that_parks_jobs_goes_on_to_the_jobs_behind_them() {
    let server = RedisServer::start().expect("private redis-server");
    let (store, _conn) = store(&server).await;
    let k = Limit::key("k").concurrency(1);
    let p = register_for(&store, &[Q], LONG_TTL).await;
    let mut jobs: Vec<NewJob> = (1..=5).map(|n| limited(&k, n)).collect();
    jobs.push(job_in(Q, 6));
    let pushed = push_each(&store, jobs).await;
    let got = jids(&fetch(&store, &p, Q, 2).await);
    assert_eq!(
        got,
        vec![pushed[0].clone(), pushed[5].clone()],
        "a fetch of 2 leases the one job k allows and the job behind the four it parks"
    );
}

/// A fetch larger than one script's share runs several scripts: each job's
/// recorded start is the time its own script leased it, the time its key's
/// rate window counted (a job given a later script's time would look as if
/// it started after the window let the next jobs in).
#[tokio::test]
async fn a_stint_start_is_recorded_as_its_rate_window_counted_it() {
    let server = RedisServer::start().expect("private redis-server");
    let (store, mut conn) = store(&server).await;
    let r = Limit::key("r").rate(100_000, std::time::Duration::from_secs(60));
    let p = register_for(&store, &[Q], LONG_TTL).await;
    let pushed = push_each(&store, (1..=1_500).map(|n| limited(&r, n)).collect()).await;
    let got = fetch(&store, &p, Q, 1_500).await;
    assert_eq!(got.len(), 1_500, "the rate lets them all start");
    let ends = got
        .iter()
        .map(|l| stint_core::store::Completion {
            lease: l.lease.clone(),
            checkpoint: Some(Default::default()),
            outcome: Outcome::Succeeded { result: None },
        })
        .collect();
    assert!(store.complete(ends).await.expect("complete").is_empty());
    for jid in &pushed {
        let counted: f64 = conn
            .zscore("stint:limit-starts:r", format!("{jid}#1"))
            .await
            .unwrap();
        let history = detail(&store, jid).await.history;
        assert_eq!(
            history.iter().map(|s| s.started_at_ms).collect::<Vec<_>>(),
            vec![counted as i64],
            "{jid}: the start its rate window counted"
        );
    }
}

/// A payload pushed by another writer (Ruby, a hand-written LPUSH) need not
/// open with stint's `"stint"` object: its limit is read wherever the
/// top-level object has it, and a "stint" object nested in its arguments
/// is no limit.
#[tokio::test]
async fn a_limit_is_read_wherever_the_payload_has_it_and_only_at_its_top_level() {
    let server = RedisServer::start().expect("private redis-server");
    let (store, mut conn) = store(&server).await;
    let p = register_for(&store, &[Q], LONG_TTL).await;
    let jid = |n: u32| format!("{n:024x}");
    let payloads = [
        // Keys in another order, the limit last: the second is parked.
        format!(
            r#"{{"args":[],"class":"X","jid":"{}","queue":"{Q}","stint":{{"limit":{{"concurrency":1,"key":"k"}}}}}}"#,
            jid(1)
        ),
        format!(
            r#"{{"args":[],"class":"X","jid":"{}","queue":"{Q}","stint":{{"max_stint_ms":9,"limit":{{"key":"k","concurrency":1}}}}}}"#,
            jid(2)
        ),
        // The shape stint writes, but inside the arguments: not limited.
        format!(
            r#"{{"args":[{{"stint":{{"limit":{{"key":"k","concurrency":1}}}}}}],"class":"X","jid":"{}","queue":"{Q}"}}"#,
            jid(3)
        ),
    ];
    for payload in &payloads {
        let _: () = conn.lpush(format!("queue:{Q}"), payload).await.unwrap();
    }
    let _: () = conn.sadd("queues", Q).await.unwrap();
    let got: Vec<String> = jids(&fetch(&store, &p, Q, 10).await)
        .iter()
        .map(|j| j.to_string())
        .collect();
    assert_eq!(got, vec![jid(1), jid(3)], "the second job of k is parked");
    let parked: Vec<String> = conn.zrange("stint:limit-parked:k", 0, -1).await.unwrap();
    assert_eq!(parked, vec![jid(2)]);
}

/// A key noted before stint:limits existed (a hash stint:limit:KEY) is
/// listed with its limits until a job of it notes them anew.
#[tokio::test]
async fn a_key_noted_in_the_earlier_layout_keeps_its_limits() {
    let server = RedisServer::start().expect("private redis-server");
    let (store, mut conn) = store(&server).await;
    let (_p, _lease, _pushed) = one_running_two_parked(&store).await;
    let _: () = conn.hdel("stint:limits", "k").await.unwrap();
    let _: () = conn
        .hset_multiple(
            "stint:limit:k",
            &[("concurrency", "7"), ("rate", ""), ("period", "")],
        )
        .await
        .unwrap();
    let k = store.limits().await.expect("limits");
    assert_eq!(
        k.iter()
            .map(|k| (k.key.as_str(), k.concurrency, k.running, k.waiting_limit))
            .collect::<Vec<_>>(),
        vec![("k", Some(7), 1, 2)]
    );
}
