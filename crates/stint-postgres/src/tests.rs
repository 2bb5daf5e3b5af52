//! A fetch whose reply was lost with its connection (it may have
//! committed): the jobs it leased are handed out by the process's next
//! fetch instead of staying leased to a live process that never ran them.

use std::sync::OnceLock;

use stint_core::store::Store;
use stint_core::testing::{job_in, LONG_TTL};
use stint_core::{JobState, ProcessInfo, StoreError};
use stint_testkit::postgres::PgServer;

use crate::{leases, migrate, PgStore};

fn server() -> &'static PgServer {
    static SERVER: OnceLock<PgServer> = OnceLock::new();
    SERVER.get_or_init(|| PgServer::start().expect("a private PostgreSQL server"))
}

/// A store on a fresh database of the shared server, migrated.
async fn fresh_store() -> PgStore {
    let url = server().fresh_database().unwrap();
    let store = PgStore::open(&format!("{url}?idle_wait_ms=0")).unwrap();
    migrate(&store).await.unwrap();
    store
}

#[tokio::test]
async fn jobs_of_a_fetch_whose_reply_was_lost_are_handed_out_again() {
    let store = fresh_store().await;
    let p = ProcessInfo::for_this_process(vec!["default".into()], 2);
    store.register(&p, LONG_TTL).await.unwrap();
    let jobs: Vec<_> = (0..3).map(|n| job_in("default", n)).collect();
    store.push(jobs.clone()).await.unwrap();

    // A fetch committed; its reply never reached the worker.
    let queues = vec!["default".to_owned()];
    let mut client = store.client().await.unwrap();
    let lost = leases::fetch(&mut client, &p.id, &queues, 2, "lost-token")
        .await
        .unwrap();
    drop(client);
    assert_eq!(lost.len(), 2);
    store
        .lost_fetches()
        .entry(p.id.clone())
        .or_default()
        .push("lost-token".into());

    // The next fetch, for one job, hands out the first lost lease as it was
    // (same stint); the other goes back to the head of the queue.
    let got = store.fetch(&p.id, &queues, 1).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].lease, lost[0].lease,
        "the lease the lost reply carried"
    );
    let other = store.job(&lost[1].job.jid).await.unwrap().unwrap().job;
    assert_eq!(other.state, JobState::Enqueued, "handed back");
    let next = store.fetch(&p.id, &queues, 1).await.unwrap();
    assert_eq!(
        next[0].job.jid, lost[1].job.jid,
        "at the head, before the third job"
    );
    let third = store.fetch(&p.id, &queues, 1).await.unwrap();
    assert_eq!(third[0].job.jid, jobs[2].jid);
    assert!(store.fetch(&p.id, &queues, 1).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_push_reusing_a_jid_is_a_duplicate_and_stores_nothing() {
    let store = fresh_store().await;
    let first = job_in("default", 0);
    store.push(vec![first.clone()]).await.unwrap();
    let fresh = job_in("default", 1);
    let err = store
        .push(vec![fresh.clone(), first.clone()])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::Duplicate(jid) if *jid == first.jid),
        "{err:?}"
    );
    assert!(
        store.job(&fresh.jid).await.unwrap().is_none(),
        "nothing stored"
    );
}

/// The limited fetch's candidates are looked up by jid even when the
/// planner's statistics say the queue is empty (analyzed before a bulk
/// push): not by a walk of the fetch index over every enqueued job.
#[tokio::test]
async fn limited_candidates_are_read_by_jid_with_stale_statistics() {
    let store = fresh_store().await;
    let client = store.client().await.unwrap();
    client.batch_execute("ANALYZE stint_jobs").await.unwrap();
    let jobs: Vec<_> = (0..3000).map(|n| job_in("default", n)).collect();
    store.push(jobs.clone()).await.unwrap();
    let jids: Vec<&str> = jobs[..10].iter().map(|j| j.jid.as_str()).collect();
    let plan = explain(&client, crate::limits::CANDIDATES_SQL, &[&jids]).await;
    assert!(plan.contains("stint_jobs_pkey"), "{plan}");
    assert!(!plan.contains("stint_jobs_fetch"), "{plan}");
    let lease = explain(&client, &crate::limits::LEASE_SQL, &[&"p", &jids, &"t"]).await;
    assert!(lease.contains("stint_jobs_pkey"), "{lease}");
}

/// The plan PostgreSQL makes for `sql` with `params`, one line per step.
async fn explain(
    client: &deadpool_postgres::Client,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> String {
    let rows = client
        .query(&format!("EXPLAIN {sql}"), params)
        .await
        .unwrap();
    rows.iter()
        .map(|r| r.get::<_, String>(0))
        .collect::<Vec<_>>()
        .join("\n")
}

/// A lease's fence reads the job by its jid even when the planner's
/// statistics are from before the jobs ran: not by the partial index of
/// running jobs by process, every running job of the process each time.
#[tokio::test]
async fn a_lease_fence_reads_the_job_by_jid_with_stale_statistics() {
    let store = fresh_store().await;
    let client = store.client().await.unwrap();
    client.batch_execute("ANALYZE stint_jobs").await.unwrap();
    let p = ProcessInfo::for_this_process(vec!["default".into()], 2);
    store.register(&p, LONG_TTL).await.unwrap();
    let jobs: Vec<_> = (0..3000).map(|n| job_in("default", n)).collect();
    store.push(jobs.clone()).await.unwrap();
    let queues = vec!["default".to_owned()];
    let leased = store.fetch(&p.id, &queues, 3000).await.unwrap();
    let lease = &leased[0].lease;
    let cp = serde_json::json!({"done": 1});
    let plan = explain(
        &client,
        leases::CHECKPOINT_SQL,
        &[
            &cp,
            &lease.jid.as_str(),
            &lease.process,
            &(lease.stint as i32),
        ],
    )
    .await;
    assert!(plan.contains("stint_jobs_pkey"), "{plan}");
    assert!(!plan.contains("stint_jobs_process"), "{plan}");
}
